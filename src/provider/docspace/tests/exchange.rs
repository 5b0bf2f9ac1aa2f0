//! Exact request checks against a scripted HTTP server on 127.0.0.1: what goes on the wire (the
//! `Authorization` header, paths, queries, JSON bodies, their order), and what the client makes
//! of answers the sandbox does not give on its own (redirects, 429 headers, lost answers).
//! Each test's script answers every request from what it asked; the server records them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::*;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, e.g. `/api/2.0/group/…?includeMembers=true`.
    target: String,
    authorization: Option<String>,
    body: Option<Value>,
}

impl Seen {
    fn line(&self) -> String {
        match &self.body {
            Some(b) => format!("{} {} {b}", self.method, self.target),
            None => format!("{} {}", self.method, self.target),
        }
    }
}

/// An answer: status, headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);
type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

#[derive(Clone)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
}

async fn handle(
    State(s): State<Server>,
    method: HttpMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.to_string(),
        target: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).ok(),
    };
    let n = {
        let mut all = s.seen.lock().unwrap();
        all.push(seen.clone());
        all.len() - 1
    };
    let (status, headers, body) = (s.script)(&seen, n);
    let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in headers {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    if !r.headers().contains_key("content-type") {
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }
    r
}

/// A client for a server running `script`, and what the server saw.
async fn serve(
    options: Options,
    script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
) -> (Client, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Server {
        seen: seen.clone(),
        script: Arc::new(script),
    };
    let app = axum::Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Client::new(
        &format!("http://{addr}"),
        Auth::ApiKey(Secret::new(KEY)),
        options,
    )
    .unwrap();
    (client, seen)
}

fn quick() -> Options {
    Options {
        timeout: Duration::from_secs(5),
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_attempts: 3,
        concurrent_reads: 1,
        concurrent_writes: 1,
        credentials_source: Some("ROSTER_DOCSPACE_KEY".into()),
        ..Options::default()
    }
}

fn ok(response: Value) -> Reply {
    (
        200,
        vec![],
        json!({"response": response, "count": 1, "links": [], "status": 0, "statusCode": 200})
            .to_string(),
    )
}

fn error(status: u16, message: &str) -> Reply {
    (
        status,
        vec![],
        json!({"error": {"message": message}, "status": 1, "statusCode": status}).to_string(),
    )
}

fn group_json(id: &str, manager: Option<&str>, members: &[&str]) -> Value {
    let mut v = json!({
        "id": id, "name": "Sales", "parent": "00000000-0000-0000-0000-000000000000",
        "isLDAP": false, "membersCount": members.len(),
        "members": members.iter().map(|m| employee_json(m)).collect::<Vec<_>>(),
    });
    if let Some(m) = manager {
        v["manager"] = employee_json(m);
    }
    v
}

fn lines(seen: &Arc<Mutex<Vec<Seen>>>) -> Vec<String> {
    seen.lock().unwrap().iter().map(Seen::line).collect()
}

fn never() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn reads_send_the_key_as_bearer_and_tell_each_unreadable_group_why() {
    let (client, seen) = serve(quick(), |s, _| {
        if s.target.contains(G1) {
            ok(group_json(G1, Some(U1), &[U1, U2]))
        } else if s.target.contains(G2) {
            error(404, "The group could not be found")
        } else {
            error(403, "Access denied")
        }
    })
    .await;
    let g3 = gid(U3);
    let (state, failed) = client
        .fetch_each(&[gid(G1), gid(G2), g3, GroupId::Num(7)], &|_| {})
        .await
        .unwrap();
    assert_eq!(state.groups[&gid(G1)].owner(), Some(user(U1)));
    assert_eq!(state.groups[&gid(G1)].members.len(), 2);
    let why: BTreeMap<GroupId, String> = failed.into_iter().collect();
    assert_eq!(why[&gid(G2)], "no such group on the DocSpace portal");
    assert_eq!(
        why[&g3],
        "the API key's user may not read groups: Access denied (HTTP 403)"
    );
    assert!(why[&GroupId::Num(7)].contains("not a DocSpace group ID"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for s in seen.iter() {
        assert_eq!(s.method, "GET");
        assert_eq!(
            s.authorization.as_deref(),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(s.target.starts_with("/api/2.0/group/"), "{}", s.target);
        assert!(s.target.ends_with("?includeMembers=true"), "{}", s.target);
    }
    assert_eq!(client.counters().requests, 3);
}

#[tokio::test]
async fn refused_credentials_fail_the_run_once_naming_where_they_came_from() {
    let (client, seen) = serve(quick(), |_, _| (401, vec![], String::new())).await;
    let ids = [gid(G1), gid(G2), gid(U1)];
    let e = client.fetch_each(&ids, &|_| {}).await.unwrap_err();
    let FetchError::RunWide { cause, unread } = &e else {
        panic!("{e}")
    };
    assert_eq!(*unread, 3);
    assert!(
        cause.contains("refused the API key (from ROSTER_DOCSPACE_KEY) (HTTP 401)"),
        "{cause}"
    );
    assert!(!e.to_string().contains("sk-"), "{e}");
    // One request: the others were never sent.
    assert_eq!(seen.lock().unwrap().len(), 1);
    // And nothing more goes for the rest of the run.
    let statuses = client
        .execute(&[(gid(G1), add(U2))], &|_| {}, &never())
        .await;
    assert!(
        matches!(&statuses[0], OpStatus::NotStarted | OpStatus::Failed { .. }),
        "{statuses:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        matches!(client.lookup(&crate::model::Wanted::default()).await, Err(FetchError::Lookup(e)) if e.len() == 1)
    );
}

#[tokio::test]
async fn a_429_waits_its_retry_after_and_holds_the_others() {
    let (client, seen) = serve(
        Options {
            concurrent_reads: 4,
            ..quick()
        },
        |s, n| {
            if n == 0 {
                (429, vec![("retry-after", "1".into())], String::new())
            } else {
                ok(group_json(
                    if s.target.contains(G1) { G1 } else { G2 },
                    None,
                    &[U1],
                ))
            }
        },
    )
    .await;
    let started = std::time::Instant::now();
    let (state, failed) = client.fetch_each(&[gid(G1)], &|_| {}).await.unwrap();
    assert!(failed.is_empty() && state.groups.len() == 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.counters().requests, 2);
    assert_eq!(client.counters().retries, 1);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_429_asking_for_more_than_max_wait_ends_the_run_at_once() {
    let (client, seen) = serve(quick(), |_, _| {
        (
            429,
            vec![
                ("retry-after", "86400".into()),
                ("x-ratelimit-reset", "5".into()),
            ],
            String::new(),
        )
    })
    .await;
    let e = client
        .fetch_each(&[gid(G1), gid(G2)], &|_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("asks roster to wait 86400 s"), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_dead_portal_fails_the_run_once() {
    // Nothing listens on this port (bound, then dropped).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new(
        &format!("http://127.0.0.1:{port}"),
        Auth::Token(Secret::new("a-personal-access-token")),
        quick(),
    )
    .unwrap();
    let ids: Vec<GroupId> = [G1, G2, U1, U2].into_iter().map(gid).collect();
    let e = client.fetch_each(&ids, &|_| {}).await.unwrap_err();
    assert!(
        matches!(&e, FetchError::RunWide { cause, unread: 4 } if cause.contains("cannot connect") && cause.contains("3 attempts")),
        "{e}"
    );
    assert_eq!(client.counters().requests, 3);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (client, seen) = serve(quick(), |_, _| {
        (
            302,
            vec![("location", "https://elsewhere.example/".into())],
            String::new(),
        )
    })
    .await;
    let (_, failed) = client.fetch_each(&[gid(G1)], &|_| {}).await.unwrap();
    assert!(failed[0].1.contains("HTTP 302"), "{failed:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn writes_go_manager_first_then_one_add_and_one_removal_never_of_the_manager() {
    // The group as fetched: U1 manages it; U2 and U4 are members.
    let (client, seen) = serve(quick(), |s, _| {
        match (s.method.as_str(), s.target.as_str()) {
            ("GET", _) => ok(group_json(G1, Some(U1), &[U1, U2, U4])),
            ("PUT", t) if t.ends_with("/manager") => {
                ok(group_json(G1, Some(U3), &[U1, U2, U3, U4]))
            }
            ("PUT", _) => ok(group_json(G1, Some(U3), &[U1, U2, U3, U4, U5])),
            ("DELETE", _) => ok(group_json(G1, Some(U3), &[U3, U5])),
            _ => error(400, "unexpected"),
        }
    })
    .await;
    client.fetch(&[gid(G1)], &|_| {}).await.unwrap();
    let changes = [
        (gid(G1), remove(U1)),
        (gid(G1), add(U5)),
        (gid(G1), set_owner(Some(U1), U3)),
        (gid(G1), remove(U2)),
        (gid(G1), remove(U4)),
    ];
    let progress = AtomicU64::new(0);
    let statuses = client
        .execute(
            &changes,
            &|n| {
                progress.fetch_add(n as u64, Ordering::Relaxed);
            },
            &never(),
        )
        .await;
    assert_eq!(statuses, vec![OpStatus::Done; 5]);
    assert_eq!(progress.load(Ordering::Relaxed), 5);
    let base = format!("/api/2.0/group/{G1}");
    assert_eq!(
        lines(&seen)[1..],
        [
            format!(r#"PUT {base}/manager {{"userId":"{U3}"}}"#),
            format!(r#"PUT {base}/members {{"members":["{U5}"]}}"#),
            format!(r#"DELETE {base}/members {{"members":["{U1}","{U2}","{U4}"]}}"#),
        ]
    );
}

#[tokio::test]
async fn the_old_manager_waits_for_a_confirmed_manager_change_and_the_manager_is_never_removed() {
    // The manager change is silently ignored (U3 is a guest): U1 stays the manager.
    let (client, seen) = serve(quick(), |s, _| {
        match (s.method.as_str(), s.target.as_str()) {
            ("GET", t) if t.contains("/people/") => {
                ok(json!({"id": U3, "status": 1, "isVisitor": true}))
            }
            ("GET", _) => ok(group_json(G1, Some(U1), &[U1, U2])),
            ("PUT", _) => ok(group_json(G1, Some(U1), &[U1, U2])),
            ("DELETE", _) => ok(group_json(G1, Some(U1), &[U1])),
            _ => error(400, "unexpected"),
        }
    })
    .await;
    let changes = [
        (gid(G1), set_owner(Some(U1), U3)),
        (gid(G1), remove(U1)),
        (gid(G1), remove(U2)),
    ];
    // Never fetched: the client reads the group before removing anyone.
    let statuses = client.execute(&changes, &|_| {}, &never()).await;
    assert!(
        matches!(&statuses[0], OpStatus::NotDone { reason } if reason.contains("make the user the manager") && reason.contains("guest")),
        "{statuses:?}"
    );
    assert!(
        matches!(&statuses[1], OpStatus::NotDone { reason } if reason.contains("manager change") && reason.contains("not confirmed")),
        "{statuses:?}"
    );
    assert_eq!(statuses[2], OpStatus::Done);
    let base = format!("/api/2.0/group/{G1}");
    assert_eq!(
        lines(&seen),
        [
            format!(r#"PUT {base}/manager {{"userId":"{U3}"}}"#),
            format!(r#"DELETE {base}/members {{"members":["{U2}"]}}"#),
            format!("GET /api/2.0/people/{U3}"),
        ]
    );

    // A removal of the manager as last read is not sent at all.
    let statuses = client
        .execute(&[(gid(G1), remove(U1))], &|_| {}, &never())
        .await;
    assert!(
        matches!(&statuses[0], OpStatus::NotDone { reason } if reason.contains("never removes a group's manager")),
        "{statuses:?}"
    );
    assert_eq!(lines(&seen).len(), 3);
}

#[tokio::test]
async fn skipped_users_are_not_done_with_why() {
    let (client, seen) = serve(quick(), |s, _| {
        match (s.method.as_str(), s.target.as_str()) {
            ("GET", t) if t.ends_with(U3) => ok(json!({"id": U3, "status": 2, "email": "c@x"})),
            ("GET", t) if t.ends_with(U4) => error(404, "The user could not be found"),
            ("GET", t) if t.ends_with(U5) => ok(json!({"id": U5, "status": 1, "isVisitor": true})),
            ("PUT", _) => ok(group_json(G1, Some(U1), &[U1, U2])),
            _ => error(400, "unexpected"),
        }
    })
    .await;
    let changes = [
        (gid(G1), add(U2)),
        (gid(G1), add(U3)),
        (gid(G1), add(U4)),
        (gid(G1), add(U5)),
    ];
    let statuses = client.execute(&changes, &|_| {}, &never()).await;
    assert_eq!(statuses[0], OpStatus::Done);
    let reason = |i: usize| match &statuses[i] {
        OpStatus::NotDone { reason } => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert!(reason(1).contains("terminated"), "{}", reason(1));
    assert!(reason(2).contains("no such user"), "{}", reason(2));
    assert!(reason(3).contains("guest"), "{}", reason(3));
    // One add for all four, then one lookup per user not known from the run.
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn lost_answers_are_sent_again_and_settled_by_reading_the_group() {
    // The add's answers are all lost (500 after acting); the re-read shows what happened.
    let (client, seen) = serve(quick(), |s, _| {
        match (s.method.as_str(), s.target.as_str()) {
            ("PUT", _) => error(500, "Internal error"),
            ("GET", t) if t.contains(G1) => ok(group_json(G1, Some(U1), &[U1, U2])),
            ("GET", _) => (502, vec![], "<html>bad gateway</html>".into()),
            _ => error(400, "unexpected"),
        }
    })
    .await;
    let changes = [(gid(G1), add(U2)), (gid(G1), add(U3)), (gid(G2), add(U2))];
    let statuses = client.execute(&changes, &|_| {}, &never()).await;
    assert_eq!(statuses[0], OpStatus::Confirmed);
    assert!(
        matches!(&statuses[1], OpStatus::Failed { error } if error.contains("HTTP 500")),
        "{statuses:?}"
    );
    assert!(
        matches!(&statuses[2], OpStatus::Unknown { error } if error.contains("may have made the change")),
        "{statuses:?}"
    );
    let seen = lines(&seen);
    // Each add sent max_attempts times; each group read once again (G2's read: 3 attempts of
    // a 502 trip the breaker, which ends nothing else here).
    assert_eq!(seen.iter().filter(|l| l.starts_with("PUT")).count(), 6);
    assert_eq!(
        seen.iter()
            .filter(|l| l.starts_with("GET") && l.contains(G1))
            .count(),
        1
    );
}

#[tokio::test]
async fn changes_for_a_bitrix24_group_are_refused_unsent() {
    let (client, seen) = serve(quick(), |_, _| error(400, "unexpected")).await;
    let statuses = client
        .execute(
            &[
                (GroupId::Num(7), add(U1)),
                (
                    gid(G1),
                    (Change::Add {
                        user: UserId::Num(3),
                        role: Role::Member,
                    }),
                ),
            ],
            &|_| {},
            &never(),
        )
        .await;
    assert!(
        matches!(&statuses[0], OpStatus::NotDone { reason } if reason.contains("not a DocSpace group ID")),
        "{statuses:?}"
    );
    assert!(
        matches!(&statuses[1], OpStatus::NotDone { reason } if reason.contains("not a DocSpace user ID")),
        "{statuses:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_user_the_portal_will_not_show_is_not_called_unknown() {
    let (client, _) = serve(quick(), |s, _| match s.method.as_str() {
        "PUT" => ok(group_json(G1, None, &[])),
        _ => error(403, "Access denied"),
    })
    .await;
    let statuses = client
        .execute(&[(gid(G1), add(U2))], &|_| {}, &never())
        .await;
    let OpStatus::NotDone { reason } = &statuses[0] else {
        panic!("{statuses:?}")
    };
    assert!(
        reason.contains("looking the user up failed") && reason.contains("Access denied"),
        "{reason}"
    );
    assert!(!reason.contains("no such user"), "{reason}");
}

#[tokio::test]
async fn nothing_is_sent_after_cancel() {
    let (client, seen) = serve(quick(), |_, _| ok(group_json(G1, Some(U1), &[U1]))).await;
    let stop = CancellationToken::new();
    stop.cancel();
    let progress = AtomicU64::new(0);
    let changes = [
        (gid(G1), set_owner(Some(U1), U2)),
        (gid(G1), add(U3)),
        (gid(G1), remove(U1)),
        (gid(G2), remove(U2)),
    ];
    let statuses = client
        .execute(
            &changes,
            &|n| {
                progress.fetch_add(n as u64, Ordering::Relaxed);
            },
            &stop,
        )
        .await;
    assert_eq!(statuses, vec![OpStatus::NotStarted; 4]);
    assert_eq!(progress.load(Ordering::Relaxed), 4);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn lookups_take_the_cheaper_way() {
    // A portal of 150 active users and 30 groups.
    let (client, seen) = serve(
        Options {
            concurrent_reads: 4,
            ..quick()
        },
        |s, _| {
            let t = s.target.as_str();
            let page = |rows: Vec<Value>, total: usize| {
                (
                    200,
                    vec![],
                    json!({"response": rows, "count": 1, "total": total, "status": 0, "statusCode": 200}).to_string(),
                )
            };
            if t.starts_with("/api/2.0/people/@self") {
                ok(json!({"id": U1, "isAdmin": true, "status": 1}))
            } else if let Some(q) = t.strip_prefix("/api/2.0/people?") {
                let start: usize = q.split("startIndex=").nth(1).unwrap().parse().unwrap();
                let rows = (start..150.min(start + 100))
                    .map(|i| json!({"id": format!("00000000-0000-4000-9000-{i:012}"), "email": format!("u{i}@example.com"), "status": 1}))
                    .collect();
                page(rows, 150)
            } else if t.starts_with("/api/2.0/people/email") {
                error(404, "The user could not be found")
            } else if t.starts_with("/api/2.0/people/") {
                ok(json!({"id": t.rsplit('/').next().unwrap(), "status": 2, "email": "gone@example.com"}))
            } else if t.starts_with("/api/2.0/group?") {
                let rows = (0..30)
                    .map(|i| json!({"id": format!("10000000-0000-4000-9000-{i:012}"), "name": if i < 2 { "Sales".to_owned() } else { format!("Team {i}") }}))
                    .collect();
                page(rows, 30)
            } else {
                error(400, "unexpected")
            }
        },
    )
    .await;
    let wanted = crate::model::Wanted {
        // Three on the list (u5 on the first page, u120 and u149 on the second), one not.
        emails: [
            "u5@example.com",
            "U120@example.com",
            "u149@example.com",
            "nobody@example.com",
        ]
        .into_iter()
        .map(str::to_lowercase)
        .collect(),
        // A terminated user: not on the active list.
        users: [user(U4)].into_iter().collect(),
        group_names: ["Sales", "team 7", "Nowhere"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    };
    let found = client.lookup(&wanted).await.unwrap();
    let emails: BTreeSet<String> = found
        .people
        .iter()
        .filter_map(|p| p.email.clone())
        .collect();
    assert_eq!(
        emails,
        [
            "gone@example.com",
            "u120@example.com",
            "u149@example.com",
            "u5@example.com"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    );
    assert!(found.people.iter().any(|p| p.id == user(U4) && !p.active));
    assert_eq!(
        found.caller,
        Some(crate::model::Caller {
            user: user(U1),
            admin: true
        })
    );
    assert_eq!(found.groups_by_name["Sales"].len(), 2);
    assert_eq!(found.groups_by_name["team 7"].len(), 1);
    assert!(found.groups_by_name["Nowhere"].is_empty());
    let mut seen = lines(&seen);
    seen.sort();
    // The caller; the user list's two pages, then the misses one by one; the one group page.
    assert_eq!(
        seen,
        [
            "GET /api/2.0/group?count=100&startIndex=0".to_owned(),
            format!("GET /api/2.0/people/{U4}"),
            "GET /api/2.0/people/@self".to_owned(),
            "GET /api/2.0/people/email?email=nobody%40example.com".to_owned(),
            "GET /api/2.0/people?count=100&startIndex=0".to_owned(),
            "GET /api/2.0/people?count=100&startIndex=100".to_owned(),
        ]
    );
    // People the run met are known without asking again.
    let before = client.counters().requests;
    let people = client.people(&[user(U4), user(U1)]).await.unwrap();
    assert_eq!(people.len(), 2);
    assert_eq!(client.counters().requests, before);
}

#[tokio::test]
async fn emails_refused_are_unavailable_not_an_error() {
    let (client, _) = serve(quick(), |s, _| {
        if s.target.contains("@self") {
            ok(json!({"id": U1, "status": 1}))
        } else {
            error(403, "Access denied")
        }
    })
    .await;
    let wanted = crate::model::Wanted {
        emails: ["a@example.com".to_owned()].into_iter().collect(),
        ..Default::default()
    };
    let found = client.lookup(&wanted).await.unwrap();
    assert!(found.emails_unavailable.unwrap().contains("Access denied"));
    assert_eq!(found.users_unavailable, None);
    assert_eq!(found.caller.map(|c| c.admin), Some(false));
    assert_eq!(client.read_warnings().len(), 1);
}
