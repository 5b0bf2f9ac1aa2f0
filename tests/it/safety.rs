//! Issue 6's promises, tested as a user meets them: the real binary against `sandbox serve` or
//! a hostile listener, checking exit codes, messages and what the portal holds afterwards.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::Workspace;

/// `(group, symbol, user)` of each change, from a JSON plan.
fn planned(json: &str) -> BTreeSet<(u64, char, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let mut out = BTreeSet::new();
    for g in v["groups"].as_array().unwrap() {
        for e in g["entries"].as_array().unwrap() {
            let symbol = match e["action"].as_str().unwrap() {
                "add" => '+',
                "set_role" => '~',
                "remove" => '-',
                _ => continue,
            };
            out.insert((
                g["id"].as_u64().unwrap(),
                symbol,
                e["user"].as_u64().unwrap(),
            ));
        }
    }
    out
}

/// `(status, (group, symbol, user))` of each line of an apply report
/// (`done        group "G" (#7): + #3 member`, or `group #7: …` without a name).
fn reported(stdout: &str) -> Vec<(String, (u64, char, u64))> {
    let digits = |s: &str| -> u64 {
        s.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut out = Vec::new();
    for line in stdout.lines() {
        let Some(at) = line.find("group ") else {
            continue;
        };
        let status = line[..at].trim();
        if status.is_empty()
            || status.contains(' ') && status != "not done" && status != "not started"
        {
            continue;
        }
        let rest = &line[at + "group ".len()..];
        let id_at = if rest.starts_with('#') {
            1
        } else {
            match rest.find("(#") {
                Some(i) => i + 2,
                None => continue,
            }
        };
        let group = digits(&rest[id_at..]);
        let Some(colon) = rest[id_at..].find(": ").map(|c| c + id_at) else {
            continue;
        };
        let change = &rest[colon + 2..];
        let symbol = change.chars().next().unwrap();
        let hash = change.find('#').unwrap_or_else(|| panic!("{line}"));
        let user = digits(&change[hash + 1..]);
        out.push((status.to_owned(), (group, symbol, user)));
    }
    out
}

/// SIGINT in the middle of a paced apply against `sandbox serve`: the run stops sending, reports
/// every change (done / not started / …), exits 130, and what it calls done is exactly what the
/// portal holds: a plan afterwards shows precisely the changes not reported done. A second apply
/// converges.
#[test]
fn an_interrupted_apply_reports_what_the_portal_holds() {
    let ws = Workspace::with_example_portal();
    // A strict, slow portal so the apply takes several seconds.
    let state = ws.generate(
        "gen",
        &[
            "--groups",
            "300",
            "--members",
            "20",
            "--churn",
            "0.1",
            "--seed",
            "3",
        ],
        "rate_limit: { burst: 4, per_second: 4 }\n  latency_ms: 100",
    );
    let served = ws.serve("gen/portal.yaml");
    let portal = format!("--portal={}", served.url);
    let rate = "--rate-limit=4/4";

    let before = ws.roster(&["plan", "gen/groups.yaml", &portal, rate, "--format=json"]);
    assert_eq!(before.code, 0, "{}", before.transcript());
    let all = planned(&before.stdout);
    assert!(all.len() > 500, "{}", all.len());

    let child = ws.spawn(&["apply", "gen/groups.yaml", &portal, rate, "--auto-approve"]);
    // Interrupt once the portal has started changing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while ws.read("gen/portal.yaml") == state {
        assert!(Instant::now() < deadline, "apply never changed the portal");
        std::thread::sleep(Duration::from_millis(20));
    }
    crate::support::interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    let report = reported(&stdout);
    let in_report: BTreeSet<_> = report.iter().map(|(_, c)| *c).collect();
    assert_eq!(in_report, all, "every planned change is reported once");
    assert_eq!(report.len(), all.len());
    let done: BTreeSet<_> = report
        .iter()
        .filter(|(s, _)| s == "done")
        .map(|(_, c)| *c)
        .collect();
    assert!(
        report.iter().any(|(s, _)| s == "not started"),
        "the interrupt came too late to leave anything unsent:\n{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("not started group ")),
        "statuses are padded to one column:\n{stdout}"
    );
    assert!(!done.is_empty(), "{stdout}");
    let unknown = report.iter().filter(|(s, _)| s == "unknown").count();
    assert_eq!(
        unknown, 0,
        "the sandbox stayed up, so every outcome is known:\n{stdout}"
    );

    let after = ws.roster(&["plan", "gen/groups.yaml", &portal, rate, "--format=json"]);
    assert_eq!(after.code, 0, "{}", after.transcript());
    let remaining = planned(&after.stdout);
    let expected: BTreeSet<_> = all.difference(&done).copied().collect();
    assert_eq!(
        remaining, expected,
        "done in the report == held by the portal"
    );

    let again = ws.roster(&["apply", "gen/groups.yaml", &portal, rate, "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    let last = ws.roster(&[
        "plan",
        "gen/groups.yaml",
        &portal,
        rate,
        "--detailed-exitcode",
    ]);
    assert_eq!(last.code, 0, "{}", last.transcript());
}

/// A listener that accepts connections and never answers: `plan` fails within 30 s with
/// `--timeout 5` (three waits and short backoffs), exit 1, naming the timeout, and says on stderr
/// what it is waiting for while it retries.
#[test]
fn a_portal_that_never_answers_fails_within_the_timeout() {
    let ws = Workspace::with_example_portal();
    let port = crate::support::silent_listener();
    let portal = format!("--portal=http://127.0.0.1:{port}/rest/1/silentcode77/");
    let started = Instant::now();
    let run = ws.roster(&["plan", "groups.yaml", &portal, "--timeout", "5"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        took >= Duration::from_secs(10),
        "gave up too early: {took:?}"
    );
    assert!(
        run.stderr.contains("5 s"),
        "names the timeout: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("retrying"),
        "says what it waits for: {}",
        run.stderr
    );
    assert!(
        !run.stderr.to_lowercase().contains("silentcode77"),
        "{}",
        run.stderr
    );
}

/// `http://` to a host that is not loopback is refused before any connection: the webhook code
/// would cross the network in clear text. (`.invalid` never resolves, so nothing can be sent.)
#[test]
fn plain_http_is_refused_for_remote_hosts() {
    let ws = Workspace::with_example_portal();
    // Only names that can never resolve: were the check broken, nothing could be sent anywhere.
    for portal in [
        "--portal=http://portal.roster-test.invalid/rest/1/cleartextcode9/",
        "--portal=http://localhost.roster-test.invalid/rest/1/cleartextcode9/",
    ] {
        let started = Instant::now();
        let run = ws.roster(&["plan", "groups.yaml", portal]);
        assert_eq!(run.code, 1, "{}", run.transcript());
        assert!(run.stderr.contains("https"), "{}", run.stderr);
        assert!(
            !run.stderr.to_lowercase().contains("cleartextcode9"),
            "{}",
            run.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// Two applies on one `sandbox:` state at once, each changing a different group: both changes
/// survive (the second waits for the first's lock), so no update is lost.
#[test]
fn concurrent_applies_on_one_sandbox_lose_no_update() {
    let ws = Workspace::with_example_portal();
    ws.write(
        "a.yaml",
        "version: 1\ngroups:\n  - id: 15\n    prune: false\n    members: [40]\n",
    );
    ws.write(
        "b.yaml",
        "version: 1\ngroups:\n  - id: 42\n    prune: false\n    members: [40]\n",
    );
    let spawn = |file: &str| {
        ws.spawn(&[
            "apply",
            file,
            "--portal=sandbox:portal.yaml",
            "--auto-approve",
        ])
    };
    let (a, b) = (spawn("a.yaml"), spawn("b.yaml"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        ws.portal_group("portal.yaml", 15)
            .contains(&"40=K".to_owned())
    );
    assert!(
        ws.portal_group("portal.yaml", 42)
            .contains(&"40=K".to_owned())
    );
}

/// A second process on a state file that a running sandbox holds waits the stated time, then
/// fails naming the file and the wait; nothing changes.
#[test]
fn a_held_sandbox_state_is_refused_after_the_stated_wait() {
    let ws = Workspace::with_example_portal();
    let _served = ws.serve("portal.yaml");
    let before = ws.read("portal.yaml");
    let started = Instant::now();
    let run = ws.roster_with_env(
        &[
            "apply",
            "groups.yaml",
            "--portal=sandbox:portal.yaml",
            "--auto-approve",
        ],
        &[("ROSTER_SANDBOX_LOCK_WAIT", "1")],
    );
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("portal.yaml"), "{}", run.stderr);
    assert!(run.stderr.contains("in use"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(ws.read("portal.yaml"), before);
}

/// `--rate-limit off` against a portal with a small bucket: the 503s teach the client to pace,
/// and the plan succeeds.
#[test]
fn a_stricter_portal_than_configured_slows_the_run_but_never_fails_it() {
    let ws = Workspace::with_example_portal();
    ws.generate(
        "gen",
        &["--groups", "1000", "--members", "3", "--churn", "0"],
        "rate_limit: { burst: 3, per_second: 4 }",
    );
    for rate in ["off", "enterprise"] {
        let run = ws.roster(&[
            "plan",
            "gen/groups.yaml",
            "--portal=sandbox:gen/portal.yaml",
            &format!("--rate-limit={rate}"),
        ]);
        assert_eq!(run.code, 0, "--rate-limit {rate}: {}", run.transcript());
        assert!(run.stdout.contains("No changes."), "{}", run.stdout);
    }
}

/// Acceptance 1: on a generated 2,000-group sandbox, a file that empties every group is refused
/// by `plan` and by `apply` (exit 1, the limit named, no write request at the sandbox's
/// counters); `--allow-mass-removal` lets it through; protected users and owners stay.
#[test]
fn a_file_that_empties_every_group_is_refused_unless_allowed() {
    let ws = Workspace::with_example_portal();
    // An enterprise-sized bucket keeps the test quick; the guard does not depend on it.
    let state = ws.generate(
        "gen",
        &["--groups", "2000", "--members", "12", "--churn", "0"],
        "rate_limit: { burst: 250, per_second: 5 }",
    );
    // Every group declared with no members: prune removes everyone but owners and the
    // protected user 2.
    let mut empty = String::from("version: 1\nprotected: [2]\ngroups:\n");
    for id in 1..=2000 {
        empty.push_str(&format!("  - id: {id}\n"));
    }
    ws.write("empty.yaml", &empty);
    let served = ws.serve("gen/portal.yaml");
    let portal = format!("--portal={}", served.url);
    let rate = "--rate-limit=enterprise";

    let plan = ws.roster(&["plan", "empty.yaml", &portal, rate]);
    assert_eq!(plan.code, 1, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("Plan: 0 to add, 0 to change,"),
        "the plan is printed first"
    );
    assert!(plan.stderr.contains("max_removals"), "{}", plan.stderr);
    assert!(
        plan.stderr.contains("max_total_removals"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("--allow-mass-removal"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.contains("more group(s) over their limits"),
        "{}",
        plan.stderr
    );
    assert!(
        plan.stderr.lines().count() < 30,
        "a bounded list: {}",
        plan.stderr
    );
    let apply = ws.roster(&["apply", "empty.yaml", &portal, rate, "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.stderr);
    assert!(apply.stderr.contains("apply refused"), "{}", apply.stderr);
    let counted = crate::support::sandbox_stats(&served.url);
    assert_eq!(counted["write_commands"], 0, "{counted}");
    assert!(
        counted["http_requests"].as_u64().unwrap() >= 80,
        "{counted}"
    );
    assert_eq!(ws.read("gen/portal.yaml"), state);

    let allowed = ws.roster(&[
        "apply",
        "empty.yaml",
        &portal,
        rate,
        "--auto-approve",
        "--allow-mass-removal",
    ]);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    assert!(allowed.stderr.contains("warning: "), "{}", allowed.stderr);
    // What is left: each group's owner, plus user 2 where it was a member.
    let before: serde_norway::Value = serde_norway::from_str(&state).unwrap();
    let after: serde_norway::Value = serde_norway::from_str(&ws.read("gen/portal.yaml")).unwrap();
    let rows = |v: &serde_norway::Value, g: usize| -> Vec<(u64, String)> {
        v["groups"][g]["members"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["user"].as_u64().unwrap(),
                    m["role"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    for g in 0..2000 {
        let kept: Vec<_> = rows(&before, g)
            .into_iter()
            .filter(|(u, r)| r == "A" || *u == 2)
            .collect();
        assert_eq!(rows(&after, g), kept, "group {}", g + 1);
    }
}

/// A second SIGINT while apply waits for its requests in flight exits at once, with a one-line
/// warning instead of the report.
#[test]
fn a_second_interrupt_exits_at_once() {
    use std::io::{BufRead, BufReader};
    let ws = Workspace::with_example_portal();
    // Every answer takes 3 s, so the first interrupt always finds a request in flight.
    ws.slow_example_portal(3000);
    let served = ws.serve("portal.yaml");
    let portal = format!("--portal={}", served.url);
    let mut child = ws.spawn(&["apply", "groups.yaml", &portal, "--auto-approve"]);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    // Interrupt once the first write has reached the portal (its answer takes 3 s).
    crate::support::wait_for_counter(&served.url, "write_commands");
    crate::support::interrupt(&child);
    let first = stderr.next().unwrap().unwrap();
    let first = if first.is_empty() {
        stderr.next().unwrap().unwrap()
    } else {
        first
    };
    assert!(first.contains("roster: interrupted:"), "{first}");
    // Signals within a second are one interrupt (timeout(1) signals the process, then its
    // group): the second must come later. The write in flight takes 3 s.
    std::thread::sleep(Duration::from_millis(1200));
    let started = Instant::now();
    crate::support::interrupt(&child);
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("interrupted again: exiting now")),
        "{rest:?}"
    );
}

/// An interrupt while apply still reads the portal ends the run at once with exit 130 and
/// nothing sent.
#[test]
fn an_interrupt_while_reading_sends_nothing() {
    let ws = Workspace::with_example_portal();
    let state = ws.slow_example_portal(3000);
    let served = ws.serve("portal.yaml");
    let portal = format!("--portal={}", served.url);
    let child = ws.spawn(&["apply", "groups.yaml", &portal, "--auto-approve"]);
    crate::support::wait_for_counter(&served.url, "http_requests");
    let started = Instant::now();
    crate::support::interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("interrupted while reading the portal; nothing was sent"),
        "{stderr}"
    );
    assert_eq!(
        crate::support::sandbox_stats(&served.url)["write_commands"],
        0
    );
    assert_eq!(ws.read("portal.yaml"), state);
}

/// Two signals at once (as `timeout` sends them: to the process, then to its group) are one
/// interrupt: the report is still printed. (Found by the adversarial campaign.)
#[test]
fn a_doubled_signal_is_one_interrupt() {
    let ws = Workspace::with_example_portal();
    ws.slow_example_portal(1500);
    let served = ws.serve("portal.yaml");
    let portal = format!("--portal={}", served.url);
    let child = ws.spawn(&["apply", "groups.yaml", &portal, "--auto-approve"]);
    crate::support::wait_for_counter(&served.url, "write_commands");
    crate::support::interrupt(&child);
    crate::support::interrupt(&child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stdout.contains("Apply: "),
        "the report is printed:\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("interrupted again"), "{stderr}");
}
