//! The client against portals that misbehave, over real HTTP: one that accepts connections and
//! never answers, one that refuses them, one that echoes the webhook code, one whose request
//! limit is stricter than configured; and interrupts part-way through an apply. Every report is
//! checked against the sandbox's state file.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use roster::model::{CurrentState, GroupId, OpStatus, Role, UserId};
use roster::plan::Change;
use roster::provider::bitrix24::{Client, Options, RateProfile, Webhook};
use roster::provider::{CancellationToken, FetchError};
use roster::sandbox::bitrix24::state::{self, Portal, RateLimit, State};
use roster::sandbox::bitrix24::{Sandbox, Stats};
use roster::sandbox::scenario::{self, Params};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Short waits, no pacing: the tests below set what they exercise.
fn quick(options: Options) -> Options {
    Options {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..options
    }
}

fn client(url: &str, options: Options) -> Client {
    Client::new(Webhook::parse(url).unwrap(), options).unwrap()
}

fn groups(n: u64) -> Vec<GroupId> {
    (1..=n).map(GroupId::Num).collect()
}

/// A listener that accepts every connection and never answers; counts the connections.
async fn black_hole() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let url = format!("http://{}/rest/1/h4ngc0de/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (url, accepted)
}

/// 2,000 groups (40 batches) against a portal that never answers, with a 200 ms timeout: the
/// first chunks give up after 3 attempts (≈ 3 × 200 ms + backoff) and trip the breaker, so the
/// other 36 batches are never sent; the failure is one line naming the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn an_unresponsive_portal_fails_the_run_once_and_quickly() {
    let (url, accepted) = black_hole().await;
    let c = client(
        &url,
        quick(Options {
            timeout: Duration::from_millis(200),
            rate: None,
            ..Options::default()
        }),
    );
    let started = Instant::now();
    let err = c.fetch(&groups(2000), &|_| {}).await.unwrap_err();
    let took = started.elapsed();
    let text = err.to_string();
    assert!(
        matches!(err, FetchError::RunWide { unread: 2000, .. }),
        "{err:?}"
    );
    assert_eq!(
        text,
        "batch: no answer within 200 ms (--timeout) (2000 group(s) not read)"
    );
    // 4 chunks in flight × 3 attempts; without the breaker all 40 chunks would try 3 times
    // (≈ 6.5 s).
    let connections = accepted.load(Ordering::SeqCst);
    assert!(connections <= 12, "{connections} connections");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(
        c.unreachable(),
        Some("batch: no answer within 200 ms (--timeout)")
    );
}

/// Writes to that portal: the chunk that was sent may have been carried out, and its groups
/// cannot be read again, so its changes are unknown; the others were never sent.
#[tokio::test(flavor = "multi_thread")]
async fn writes_to_an_unresponsive_portal_are_unknown_or_not_sent() {
    let (url, _) = black_hole().await;
    let c = client(
        &url,
        quick(Options {
            timeout: Duration::from_millis(100),
            rate: None,
            concurrency: 1,
            ..Options::default()
        }),
    );
    let changes: Vec<(GroupId, Change)> = groups(120).into_iter().map(|g| (g, remove(7))).collect();
    let started = Instant::now();
    let statuses = c
        .execute(
            &changes,
            &Default::default(),
            &|_| {},
            &CancellationToken::new(),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    for s in &statuses[..50] {
        assert!(
            matches!(s, OpStatus::Unknown { error } if error.contains("no answer within 100 ms")),
            "{s:?}"
        );
    }
    for s in &statuses[50..] {
        assert!(
            matches!(s, OpStatus::Failed { error } if error.starts_with("batch: not sent: an earlier request failed (batch: no answer within 100 ms")),
            "{s:?}"
        );
    }
}

/// A refused connection is one line too, with the count, after 3 quick attempts.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_reported_once() {
    let port = {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client(
        &format!("http://127.0.0.1:{port}/rest/1/c0nnc0de/"),
        quick(Options {
            rate: None,
            ..Options::default()
        }),
    );
    let err = c.fetch(&groups(500), &|_| {}).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("batch: cannot connect: "), "{text}");
    assert!(text.ends_with("(500 group(s) not read)"), "{text}");
    assert!(!text.contains("c0nnc0de"), "{text}");
}

/// A portal (or proxy) that quotes the webhook code back, JSON-escaped and percent-encoded:
/// none of it reaches an error.
#[tokio::test(flavor = "multi_thread")]
async fn echoed_codes_never_reach_an_error() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                read_request(&mut socket).await;
                let body = r#"{"error":"ERR_\u0063\u0061nary0code","error_description":"no route for %2Frest%2F1%2Fcanary0code%2Fbatch.json, \/rest\/1\/CANARY0CODE\/, %63%61nary0code"}"#;
                let response = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    let c = client(
        &format!("http://{addr}/rest/1/canary0code/"),
        quick(Options {
            rate: None,
            ..Options::default()
        }),
    );
    let text = c.fetch(&groups(3), &|_| {}).await.unwrap_err().to_string();
    assert!(text.contains("no route for"), "{text}");
    assert!(!text.to_lowercase().contains("canary0code"), "{text}");
    assert!(!text.contains("%63%61"), "{text}");
}

/// Read one HTTP request (headers, then `content-length` bytes of body).
async fn read_request(socket: &mut tokio::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return;
            }
        }
    }
}

fn remove(user: u64) -> Change {
    Change::Remove {
        user: UserId::Num(user),
        role: Role::Member,
    }
}

/// A served scenario: the state file's path, the sandbox, and the generated desired groups.
struct Served {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    sandbox: Sandbox,
    desired: roster::model::DesiredState,
}

impl Served {
    async fn start(params: &Params) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario::generate(params);
        let path = dir.path().join("portal.yaml");
        state::save(&path, &s.state).unwrap();
        let desired = roster::spec::parse("desired.yaml", &s.desired_yaml)
            .and_then(|s| roster::resolve::offline(&s))
            .unwrap();
        let sandbox = Sandbox::start(&path, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .unwrap();
        Served {
            _dir: dir,
            path,
            sandbox,
            desired,
        }
    }

    fn client(&self, options: Options) -> Client {
        client(&self.sandbox.webhook_url().unwrap(), options)
    }

    fn groups(&self) -> Vec<GroupId> {
        self.desired.groups.keys().copied().collect()
    }

    fn stats(&self) -> Stats {
        self.sandbox.stats()
    }

    /// The state file as the sandbox wrote it.
    fn state(&self) -> State {
        state::load(&self.path).unwrap()
    }
}

fn portal(rate_limit: Option<RateLimit>) -> Portal {
    Portal {
        rate_limit,
        ..Portal::default()
    }
}

/// Whether the sandbox's state holds `change` (a member role A/E/K, as `user.get` shows it).
fn state_holds(state: &State, group: GroupId, change: &Change) -> bool {
    let g = state.group(group.expect_num() as i64).unwrap();
    let role = g
        .relation(change.user().expect_num() as i64)
        .filter(|m| m.role.is_member())
        .map(|m| m.role.code());
    let code = |r: Role| match r {
        Role::Owner => "A",
        Role::Moderator => "E",
        Role::Member => "K",
    };
    match *change {
        Change::Add { role: r, .. }
        | Change::Accept { role: r, .. }
        | Change::SetRole { to: r, .. } => role == Some(code(r)),
        Change::SetOwner { .. } => role == Some("A"),
        Change::Remove { .. } => role.is_none(),
        // Never planned by these tests (no `add_with: invite`).
        Change::Invite { .. } => false,
    }
}

/// Every reported status agrees with the state file: done ⇔ held; not done, failed or not
/// started ⇒ not held. Unknown may be either. Returns how many were confirmed by a re-read.
fn check_against_state(
    state: &State,
    changes: &[(GroupId, Change)],
    statuses: &[OpStatus],
) -> usize {
    assert_eq!(changes.len(), statuses.len());
    let mut confirmed = 0;
    for ((g, change), status) in changes.iter().zip(statuses) {
        let held = state_holds(state, *g, change);
        match status {
            OpStatus::Done | OpStatus::Confirmed => {
                assert!(
                    held,
                    "reported {status:?} but not held: group {g} {change:?}"
                )
            }
            OpStatus::NotDone { .. } | OpStatus::Failed { .. } | OpStatus::NotStarted => {
                assert!(!held, "reported {status:?} but held: group {g} {change:?}")
            }
            OpStatus::Unknown { .. } => {}
        }
        confirmed += usize::from(*status == OpStatus::Confirmed);
    }
    confirmed
}

fn plan_changes(
    desired: &roster::model::DesiredState,
    current: &CurrentState,
) -> Vec<(GroupId, Change)> {
    roster::apply::changes(&roster::plan::diff(desired, current))
}

/// With responses lost after the portal acted (502 pages) and 500s, and few attempts so that
/// some chunks give up, the report never denies a change the portal made nor claims one it did
/// not: checked change by change against the state file, over several seeds.
#[tokio::test(flavor = "multi_thread")]
async fn the_report_agrees_with_the_portal_under_lost_answers() {
    let mut confirmed = 0;
    let mut not_confirmed_by_answer = 0;
    for seed in 1..=4 {
        let mut p = portal(None);
        p.faults = Some(state::Faults {
            seed,
            rate_503: 0.0,
            rate_429: 0.0,
            rate_500: 0.2,
            rate_lost: 0.25,
            ..state::Faults::default()
        });
        let served = Served::start(&Params {
            groups: 80,
            members: 10,
            churn: 0.3,
            seed,
            portal: p,
            ..Params::new(0, 0, 0.0, 0)
        })
        .await;
        // Read patiently; write with two attempts a chunk, so some give up.
        let reader = served.client(quick(Options {
            rate: None,
            max_attempts: 30,
            ..Options::default()
        }));
        let current = reader.fetch(&served.groups(), &|_| {}).await.unwrap();
        let changes = plan_changes(&served.desired, &current);
        assert!(changes.len() > 100, "{}", changes.len());
        let writer = served.client(quick(Options {
            rate: None,
            max_attempts: 2,
            ..Options::default()
        }));
        let progress = AtomicUsize::new(0);
        let statuses = writer
            .execute(
                &changes,
                &Default::default(),
                &|n| {
                    progress.fetch_add(n, Ordering::SeqCst);
                },
                &CancellationToken::new(),
            )
            .await;
        assert_eq!(
            progress.load(Ordering::SeqCst),
            changes.len(),
            "progress counts changes"
        );
        confirmed += check_against_state(&served.state(), &changes, &statuses);
        not_confirmed_by_answer += statuses.iter().filter(|s| **s != OpStatus::Done).count();
        served.sandbox.shutdown().await.unwrap();
    }
    // The faults did hide outcomes, and re-reading found changes the answers did not show.
    assert!(
        not_confirmed_by_answer > 0 && confirmed > 0,
        "{confirmed} / {not_confirmed_by_answer}"
    );
}

/// 200 groups, one removal each (4 chunks), one chunk at a time: cancelling when the first
/// chunk finishes sends nothing more; its changes are done, the rest not started and not held.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupt_sends_no_new_batch() {
    let served = Served::start(&Params {
        groups: 200,
        members: 5,
        churn: 0.0,
        seed: 7,
        portal: portal(None),
        ..Params::new(0, 0, 0.0, 0)
    })
    .await;
    let c = served.client(quick(Options {
        rate: None,
        concurrency: 1,
        ..Options::default()
    }));
    let (changes, before) = removals(&served, &c).await;
    let stop = CancellationToken::new();
    let statuses = c
        .execute(&changes, &Default::default(), &|_| stop.cancel(), &stop)
        .await;
    assert_eq!(served.stats().http_requests - before, 1, "one write batch");
    check_against_state(&served.state(), &changes, &statuses);
    assert!(
        statuses[..50].iter().all(|s| *s == OpStatus::Done),
        "{statuses:?}"
    );
    assert!(
        statuses[50..].iter().all(|s| *s == OpStatus::NotStarted),
        "{statuses:?}"
    );
}

/// The same with a pacer that makes the second chunk wait 100 s for the bucket: the interrupt
/// ends the wait at once, and nothing more is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupt_ends_the_waits() {
    let served = Served::start(&Params {
        groups: 120,
        members: 5,
        churn: 0.0,
        seed: 8,
        portal: portal(None),
        ..Params::new(0, 0, 0.0, 0)
    })
    .await;
    let reader = served.client(quick(Options {
        rate: None,
        ..Options::default()
    }));
    let (changes, before) = removals(&served, &reader).await;
    let slow = served.client(quick(Options {
        // One request at a time, then one per 100 s.
        rate: Some(RateProfile {
            burst: 3.0,
            per_second: 0.01,
        }),
        concurrency: 2,
        ..Options::default()
    }));
    let stop = CancellationToken::new();
    let started = Instant::now();
    let statuses = slow
        .execute(&changes, &Default::default(), &|_| stop.cancel(), &stop)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(served.stats().http_requests - before, 1, "one write batch");
    check_against_state(&served.state(), &changes, &statuses);
    assert_eq!(
        statuses.iter().filter(|s| **s == OpStatus::Done).count(),
        50
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == OpStatus::NotStarted)
            .count(),
        70
    );
}

/// One removal per group (a non-owner member), and the sandbox's request count after reading.
async fn removals(served: &Served, c: &Client) -> (Vec<(GroupId, Change)>, u64) {
    let current = c.fetch(&served.groups(), &|_| {}).await.unwrap();
    let changes = current
        .groups
        .iter()
        .map(|(g, members)| {
            let (user, role) = members
                .members
                .iter()
                .find(|(_, r)| **r != Role::Owner)
                .unwrap();
            (
                *g,
                Change::Remove {
                    user: *user,
                    role: *role,
                },
            )
        })
        .collect();
    (changes, served.stats().http_requests)
}

/// Reading 1,000 groups (20 batches) from a portal with a bucket of 5 draining 2/s, with no
/// rate limit configured, or Enterprise's: the client learns the limit from the first 503s and
/// succeeds, with few refusals (measured 7–11: the requests in flight when the bucket filled,
/// and about a second of measuring the drain rate; a one-off cost, not one per request).
async fn read_under_a_stricter_limit(rate: Option<RateProfile>) -> (Stats, Duration) {
    let served = Served::start(&Params {
        groups: 1000,
        members: 2,
        churn: 0.0,
        seed: 9,
        portal: portal(Some(RateLimit {
            burst: 5.0,
            per_second: 2.0,
        })),
        ..Params::new(0, 0, 0.0, 0)
    })
    .await;
    let c = served.client(Options {
        rate,
        ..Options::default()
    });
    let started = Instant::now();
    let current = c.fetch(&served.groups(), &|_| {}).await.unwrap();
    let took = started.elapsed();
    assert_eq!(current.groups.len(), 1000);
    let stats = served.stats();
    eprintln!("rate {rate:?}: {stats:?} in {took:?}");
    (stats, took)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stricter_limit_than_none_slows_the_run_down() {
    let (stats, _) = read_under_a_stricter_limit(None).await;
    assert!(stats.rejected_503 > 0, "the limit was hit: {stats:?}");
    assert!(stats.rejected_503 <= 16, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stricter_limit_than_enterprise_slows_the_run_down() {
    let (stats, _) = read_under_a_stricter_limit(Some(RateProfile::ENTERPRISE)).await;
    assert!(stats.rejected_503 > 0, "the limit was hit: {stats:?}");
    assert!(stats.rejected_503 <= 16, "{stats:?}");
}

/// A keep-alive server answering the n-th request (0-based) with the JSON `answer(n)`.
async fn scripted(
    code: &str,
    answer: impl Fn(usize) -> String + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    scripted_with_status(code, 200, answer).await
}

/// As `scripted`, every answer with HTTP `status`.
async fn scripted_with_status(
    code: &str,
    status: u16,
    answer: impl Fn(usize) -> String + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let url = format!("http://{}/rest/1/{code}/", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (c, answer) = (c.clone(), answer.clone());
            tokio::spawn(async move {
                loop {
                    read_request(&mut socket).await;
                    let body = answer(c.fetch_add(1, Ordering::SeqCst));
                    let response = format!(
                        "HTTP/1.1 {status} Whatever\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

/// After an interrupt, the re-read that settles unconfirmed changes gets one timeout in all:
/// it does not sit out an operating-time pause (here 300 s) that the last answer announced.
/// (Found by review.)
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_reread_does_not_wait_for_the_operating_budget() {
    let (url, count) = scripted("c0de0000", |n| {
        if n == 0 {
            // The delete answered [] (skipped), so it is re-read; `batch`'s budget is nearly
            // spent and resets in 300 s.
            r#"{"result":{"result":{"c00":[]},"result_error":[],"result_total":[],"result_next":[],"result_time":{}},"time":{"start":1000.0,"finish":1000.1,"operating":479.0,"operating_reset_at":1300}}"#.into()
        } else {
            r#"{"result":{"result":{"c00":[{"USER_ID":"1","ROLE":"A"}]},"result_error":[],"result_total":[],"result_next":[],"result_time":{}},"time":{"start":1000.0,"finish":1000.1}}"#.into()
        }
    })
    .await;
    let c = client(
        &url,
        Options {
            rate: None,
            timeout: Duration::from_secs(1),
            ..Options::default()
        },
    );
    let changes = vec![(GroupId::Num(5), remove(9))];
    let stop = CancellationToken::new();
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        c.execute(&changes, &Default::default(), &|_| stop.cancel(), &stop),
    )
    .await;
    let statuses = out.unwrap_or_else(|_| {
        panic!(
            "still waiting after {:?} ({} requests sent)",
            started.elapsed(),
            count.load(Ordering::SeqCst)
        )
    });
    assert!(
        matches!(statuses[0], OpStatus::NotDone { .. }),
        "{statuses:?}"
    );
}

/// The code is scrubbed from answers before they are read, so a code that could be ordinary
/// answer text (`K`, a role) would corrupt the data: such codes are refused. (Found by review.)
#[test]
fn a_code_short_enough_to_be_data_is_refused() {
    for short in ["K", "ROLE", "USER_ID"] {
        let err = Webhook::parse(&format!("https://portal.example.invalid/rest/1/{short}/"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 8"), "{err}");
        assert!(!err.contains(&format!("/1/{short}")), "{err}");
    }
    assert!(Webhook::parse("https://portal.example.invalid/rest/1/abcd1234/").is_ok());
}

/// A portal that refuses every request for its rate limit is down for us: the run gives up
/// once, with one message, after a bounded number of refusals in a row. (Found by the
/// adversarial campaign: 196 s of near-silence, then one error per group.)
#[tokio::test(flavor = "multi_thread")]
async fn a_portal_that_refuses_everything_fails_the_run_once() {
    let (url, count) = scripted_with_status("c0de0000", 503, |_| {
        r#"{"error":"QUERY_LIMIT_EXCEEDED","error_description":"Too many requests"}"#.into()
    })
    .await;
    let c = client(
        &url,
        Options {
            rate: None,
            // No pacing to learn, so the refusals come as fast as the test can go.
            learn_rate: false,
            ..Options::default()
        },
    );
    let started = Instant::now();
    let err = c.fetch(&groups(200), &|_| {}).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, FetchError::RunWide { unread: 200, .. }),
        "one run-wide failure: {err}"
    );
    let text = err.to_string();
    assert!(text.contains("refused 40 requests in a row"), "{text}");
    let sent = count.load(Ordering::SeqCst);
    assert!((40..50).contains(&sent), "{sent} requests");
}
