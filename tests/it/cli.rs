//! The CLI as a user runs it: the real binary in a temp dir against the sandbox over real HTTP,
//! checking exit codes, stdout, stderr and the portal state afterwards.

use std::net::{Ipv4Addr, SocketAddr};

use roster::sandbox::bitrix24::Sandbox;

use crate::support::{EXAMPLE_CODE, Workspace};

const PORTAL: &str = "--portal=sandbox:portal.yaml";

#[test]
fn plan_shows_adds_a_role_change_a_removal_and_a_skipped_owner() {
    let ws = Workspace::with_example_portal();
    let before = ws.read("portal.yaml");
    let run = ws.roster(&["plan", "groups.yaml", PORTAL]);
    insta::assert_snapshot!(run.transcript(), @r#"
    exit: 0
    --- stdout
    roster will make these changes:

      group "Marketing" (#15)
        ! ada@example.com (#1)   owner  skipped: owner (not declared; owners are never removed)
        ~ bo@example.com (#10)   member -> moderator
        + di@example.com (#22)   member
        - fay@example.com (#30)  member
        ! ivy@example.com (#50)  inactive: not added

      group "Engineering" (#27)
        + fay@example.com (#30)  member
        ! hal@example.com (#40)  asked to join, waiting for approval (not in the file)
        ! jo@example.com (#60)   invited, pending acceptance

      group "Sales" (#42)
        + ed@example.com (#23)  member  (invite)

    Plan: 2 to add, 1 to invite, 1 to change, 1 to remove, 1 skipped, 3 pending.
    --- stderr
    "#);
    assert_eq!(
        ws.read("portal.yaml"),
        before,
        "plan must not change the portal"
    );
}

#[test]
fn detailed_exitcode_before_and_after_apply() {
    let ws = Workspace::with_example_portal();
    let before = ws.roster(&["plan", "groups.yaml", PORTAL, "--detailed-exitcode"]);
    assert_eq!(before.code, 2, "{}", before.transcript());

    let apply = ws.roster(&["apply", "groups.yaml", PORTAL, "--auto-approve"]);
    insta::assert_snapshot!(apply.transcript(), @r#"
    exit: 0
    --- stdout
    roster will make these changes:

      group "Marketing" (#15)
        ! ada@example.com (#1)   owner  skipped: owner (not declared; owners are never removed)
        ~ bo@example.com (#10)   member -> moderator
        + di@example.com (#22)   member
        - fay@example.com (#30)  member
        ! ivy@example.com (#50)  inactive: not added

      group "Engineering" (#27)
        + fay@example.com (#30)  member
        ! hal@example.com (#40)  asked to join, waiting for approval (not in the file)
        ! jo@example.com (#60)   invited, pending acceptance

      group "Sales" (#42)
        + ed@example.com (#23)  member  (invite)

    Plan: 2 to add, 1 to invite, 1 to change, 1 to remove, 1 skipped, 3 pending.

    done        group "Marketing" (#15): ~ bo@example.com (#10) member -> moderator
    done        group "Marketing" (#15): + di@example.com (#22) member
    done        group "Marketing" (#15): - fay@example.com (#30) member
    done        group "Engineering" (#27): + fay@example.com (#30) member
    done        group "Sales" (#42): + ed@example.com (#23) member  (invite)
    Apply: 5 done, 0 not done, 0 failed, 1 skipped.
    --- stderr
    "#);

    let after = ws.roster(&["plan", "groups.yaml", PORTAL, "--detailed-exitcode"]);
    assert_eq!(after.code, 0, "{}", after.transcript());
    assert!(after.stdout.contains("No changes."), "{}", after.stdout);
    assert!(
        after.stdout.contains("skipped: owner"),
        "the owner stays visible: {}",
        after.stdout
    );

    assert_eq!(
        ws.portal_group("portal.yaml", 15),
        ["1=A", "10=E", "21=K", "22=K"]
    );
    assert_eq!(
        ws.portal_group("portal.yaml", 27)[..3],
        ["22=A".to_owned(), "23=E".into(), "31=K".into()]
    );
    assert!(
        ws.portal_group("portal.yaml", 27)
            .contains(&"30=K".to_owned())
    );
    assert_eq!(ws.portal_group("portal.yaml", 42), ["1=A", "22=K", "23=Z"]);
}

#[test]
fn detailed_exitcode_is_1_on_error() {
    let ws = Workspace::with_example_portal();
    ws.write(
        "missing.yaml",
        "version: 1\ngroups:\n  - id: 99\n    members: [10]\n  - id: 15\n",
    );
    let run = ws.roster(&["plan", "missing.yaml", PORTAL, "--detailed-exitcode"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains(
            "error: missing.yaml:3:9: groups[0].id: cannot read group 99: no such group, or the webhook's user cannot see it"
        ),
        "{}",
        run.stderr
    );
    // The other group is still planned.
    assert!(run.stdout.contains("\"Marketing\" (#15)"), "{}", run.stdout);
}

#[test]
fn the_owner_is_never_removed_or_demoted() {
    let ws = Workspace::with_example_portal();
    // Group 42's owner is user 1: list them as a moderator in one group, leave them out of another.
    ws.write(
        "owners.yaml",
        "version: 1\ngroups:\n  - id: 42\n    moderators: [1]\n  - id: 15\n    members: []\n",
    );
    let plan = ws.roster(&["plan", "owners.yaml", PORTAL]);
    assert!(
        plan.stdout.contains(
            "! ada@example.com (#1)  owner  skipped: owner (declared as moderator; owners are never demoted)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("skipped: owner (not declared; owners are never removed)"),
        "{}",
        plan.stdout
    );
    let apply = ws.roster(&["apply", "owners.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(ws.portal_group("portal.yaml", 42), ["1=A"]);
    assert_eq!(ws.portal_group("portal.yaml", 15), ["1=A"]);
}

#[test]
fn apply_without_a_terminal_refuses_and_changes_nothing() {
    let ws = Workspace::with_example_portal();
    let before = ws.read("portal.yaml");
    let run = ws.roster(&["apply", "groups.yaml", PORTAL]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("pass --auto-approve"), "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "Plan: 2 to add, 1 to invite, 1 to change, 1 to remove, 1 skipped, 3 pending."
        ),
        "the plan is shown: {}",
        run.stdout
    );
    assert_eq!(ws.read("portal.yaml"), before);
}

#[test]
fn a_skipped_user_is_reported_and_the_rest_still_applies() {
    let ws = Workspace::with_example_portal();
    // User 40 is banned from group 27: no read shows a ban, so roster plans an add, and the
    // portal silently skips adding a user with any relation. (A pending request, which this
    // used to rely on, is now seen and accepted.)
    let portal = ws.read("portal.yaml").replace(
        "{ user: 40, role: Z, initiated_by: U }",
        "{ user: 40, role: T }",
    );
    ws.write("portal.yaml", &portal);
    ws.write(
        "pending.yaml",
        "version: 1\ngroups:\n  - id: 27\n    moderators: [23]\n    members: [31, 40, 21]\n",
    );
    let run = ws.roster(&["apply", "pending.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stdout
            .contains("done        group \"Engineering\" (#27): + cy@example.com (#21) member"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("not done    group \"Engineering\" (#27): + hal@example.com (#40) member: the portal did not add the user"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Apply: 1 done, 1 not done, 0 failed, 1 skipped."),
        "{}",
        run.stdout
    );
    assert!(
        ws.portal_group("portal.yaml", 27)
            .contains(&"21=K".to_owned())
    );
}

#[test]
fn json_plan_is_versioned() {
    let ws = Workspace::with_example_portal();
    let run = ws.roster(&["plan", "groups.yaml", PORTAL, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["format_version"], "1");
    assert_eq!(v["has_changes"], true);
    assert_eq!(
        v["summary"],
        serde_json::json!({"add": 2, "invite": 1, "change": 1, "remove": 1, "owner": 0, "skipped": 1, "pending": 3})
    );
    assert_eq!(
        v["groups"][0]["entries"][0],
        serde_json::json!({"action": "skip", "user": 1, "email": "ada@example.com", "name": "Ada Admin", "extranet": false, "role": "owner", "wanted": "remove", "reason": "owner"})
    );
}

#[test]
fn invalid_file_exits_1_with_positions() {
    let ws = Workspace::with_example_portal();
    ws.write(
        "bad.yaml",
        "version: 1\ngroups:\n  - id: 15\n    members: [21, 21, x]\n    owners: 1\n  - id: -2\n",
    );
    let run = ws.roster(&["validate", "bad.yaml"]);
    insta::assert_snapshot!(run.transcript(), @r#"
    exit: 1
    --- stdout
    --- stderr
    error: bad.yaml:4:19: groups[0].members[1]: user 21 is listed twice in this group (first under `members` on line 4)
    error: bad.yaml:4:23: groups[0].members[2]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found "x"
    error: bad.yaml:5:5: groups[0].owners: unknown field `owners`; expected one of: id, name, owner, moderators, members, prune, protected, limits, add_with, invite_message, manager, portal
    error: bad.yaml:6:9: groups[1].id: group ID must be a positive integer, found -2
    bad.yaml: 4 problem(s); nothing was sent to any portal
    "#);
    let syntax = ws.write("syntax.yaml", "version: 1\ngroups: [\n");
    let run = ws.roster(&["validate", syntax.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("syntax.yaml:3:1: invalid YAML"),
        "{}",
        run.stderr
    );
}

/// A bad file must not cause a single request: count them at a running sandbox.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_file_makes_no_request() {
    let ws = Workspace::with_example_portal();
    ws.write(
        "bad.yaml",
        "version: 1\ngroups:\n  - id: 15\n    members: [0]\n",
    );
    let sandbox = Sandbox::start(
        &ws.path("portal.yaml"),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    )
    .await
    .unwrap();
    let portal = format!("--portal={}", sandbox.webhook_url().unwrap());
    let ws = std::sync::Arc::new(ws);
    let ws2 = ws.clone();
    let run = tokio::task::spawn_blocking(move || {
        (
            ws2.roster(&["plan", "bad.yaml", &portal]),
            ws2.roster(&["apply", "bad.yaml", &portal, "--auto-approve"]),
        )
    })
    .await
    .unwrap();
    assert_eq!((run.0.code, run.1.code), (1, 1));
    assert!(
        run.0.stderr.contains(
            "bad.yaml:4:15: groups[0].members[0]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found 0"
        ),
        "{}",
        run.0.stderr
    );
    assert_eq!(sandbox.stats().http_requests, 0);
    sandbox.shutdown().await.unwrap();
}

/// The webhook code is a secret: not in output, logs at -vv, or errors.
#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_code_never_appears() {
    let ws = Workspace::with_example_portal();
    let sandbox = Sandbox::start(
        &ws.path("portal.yaml"),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    )
    .await
    .unwrap();
    let url = sandbox.webhook_url().unwrap();
    assert!(url.contains(EXAMPLE_CODE));
    let wrong = url.replace(EXAMPLE_CODE, "wrongcode1234");
    let ws = std::sync::Arc::new(ws);
    let ws2 = ws.clone();
    let runs = tokio::task::spawn_blocking(move || {
        vec![
            ws2.roster(&["plan", "groups.yaml", &format!("--portal={url}"), "-vv"]),
            ws2.roster(&[
                "apply",
                "groups.yaml",
                &format!("--portal={url}"),
                "-vv",
                "--auto-approve",
            ]),
            ws2.roster(&["plan", "groups.yaml", &format!("--portal={wrong}"), "-vv"]),
            ws2.roster(&[
                "plan",
                "groups.yaml",
                "--portal=https://acme.example/rest/1/bad!code/",
            ]),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        runs.iter().map(|r| r.code).collect::<Vec<_>>(),
        [0, 0, 1, 1]
    );
    assert!(
        runs[2].stderr.contains("NO_AUTH_FOUND"),
        "{}",
        runs[2].stderr
    );
    assert!(
        runs[0].stderr.contains("DEBUG"),
        "-vv logs something: {}",
        runs[0].stderr
    );
    for r in &runs {
        for secret in [EXAMPLE_CODE, "wrongcode1234", "bad!code"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{secret} leaked:\n{}",
                r.transcript()
            );
        }
    }
    sandbox.shutdown().await.unwrap();
}

#[test]
fn usage_errors_exit_1() {
    let ws = Workspace::with_example_portal();
    let run = ws.roster(&["plan"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    let run = ws.roster(&["plan", "groups.yaml", "--portal=nonsense"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("invalid Bitrix24 webhook URL"),
        "{}",
        run.stderr
    );
}

/// `roster sandbox serve` as a user runs it: a real process on a loopback port, answering the
/// request styles of curl and the official SDKs (JSON POST, form POST, GET query).
#[test]
fn sandbox_serve_answers_json_form_and_query_requests() {
    let ws = Workspace::with_example_portal();
    let served = ws.serve("portal.yaml");
    let url = served.url.clone();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with(&format!("/rest/1/{EXAMPLE_CODE}/")),
        "{url}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = crate::support::http();
        // JSON POST, like the PHP SDK.
        let r = http
            .post(format!("{url}sonet_group.user.get.json"))
            .json(&serde_json::json!({"ID": 15}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["result"][0], serde_json::json!({"USER_ID": "1", "ROLE": "A"}));
        assert!(v["time"]["duration"].is_number() && v["time"]["date_start"].is_string(), "{v}");
        // Form POST with PHP arrays, like CRest.
        let r = http
            .post(format!("{url}sonet_group.user.add"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("GROUP_ID=42&USER_ID%5B%5D=31&USER_ID%5B%5D=22")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["result"], serde_json::json!(["31"]), "22 is already a member: skipped");
        // GET query, like curl; and the documented error for a missing group.
        let r = http.get(format!("{url}sonet_group.user.get?ID=999")).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v, serde_json::json!({"error": "", "error_description": "Socialnetwork group not found"}));
        let r = http.get(url.replace(EXAMPLE_CODE, "nope") + "user.current").send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v, serde_json::json!({"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}));
    });
    // The change is already on disk while the server runs.
    assert!(
        ws.portal_group("portal.yaml", 42)
            .contains(&"31=K".to_owned())
    );
    drop(served);
}

/// With the portal refusing requests at random, `roster apply` still finishes, exits 0, and its
/// report says how many retries it took.
#[test]
fn apply_report_counts_retries_under_injected_faults() {
    let ws = Workspace::with_example_portal();
    let state = ws.read("portal.yaml").replace(
        "  rate_limit: { burst: 50, per_second: 2 }",
        // Seed 13 refuses the apply's write batch once (the dice are deterministic).
        "  rate_limit: { burst: 50, per_second: 2 }\n  faults: { seed: 13, rate_503: 0.3, rate_500: 0.2 }",
    );
    assert!(
        state.contains("faults"),
        "the example portal's rate_limit line moved"
    );
    ws.write("portal.yaml", &state);
    let run = ws.roster(&["apply", "groups.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stdout.contains(
            "Apply: 5 done, 0 not done, 0 failed, 1 skipped. 1 retried after transient errors."
        ),
        "{}",
        run.stdout
    );
    let after = ws.roster(&["plan", "groups.yaml", PORTAL, "--detailed-exitcode"]);
    assert_eq!(after.code, 0, "{}", after.transcript());
}

#[test]
fn portal_comes_from_the_environment_too() {
    let ws = Workspace::with_example_portal();
    let run = ws.roster_with_env(
        &["plan", "groups.yaml", "--detailed-exitcode"],
        &[
            ("ROSTER_PORTAL", "sandbox:portal.yaml"),
            ("ROSTER_RATE_LIMIT", "enterprise"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.transcript());
    assert!(run.stdout.contains("Plan: 2 to add"), "{}", run.stdout);
    let bad = ws.roster_with_env(
        &["plan", "groups.yaml"],
        &[
            ("ROSTER_PORTAL", "sandbox:portal.yaml"),
            ("ROSTER_RATE_LIMIT", "fast"),
        ],
    );
    assert_eq!(bad.code, 1, "{}", bad.transcript());
    assert!(
        bad.stderr.contains("invalid rate profile"),
        "{}",
        bad.stderr
    );
}

/// A server whose error page quotes the request path (Apache's default 404 does) must not make
/// roster print the code.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_page_echoing_the_path_does_not_leak_the_code() {
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        (
            axum::http::StatusCode::NOT_FOUND,
            format!(
                "<html><body>The requested URL {} was not found on this server.</body></html>",
                uri.path()
            ),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ws = std::sync::Arc::new(Workspace::with_example_portal());
    let portal = format!("--portal=http://{addr}/rest/1/echoedsecret42/");
    let ws2 = ws.clone();
    let run =
        tokio::task::spawn_blocking(move || ws2.roster(&["plan", "groups.yaml", &portal, "-vv"]))
            .await
            .unwrap();
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("The requested URL /rest/1/***/batch.json was not found"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("echoedsecret42") && !run.stdout.contains("echoedsecret42"),
        "{}",
        run.transcript()
    );
}

/// A webhook of a user who is not an administrator may read but not write: apply names every
/// group whose changes the portal would refuse, and refuses before sending anything.
#[test]
fn a_non_admin_webhook_is_refused_before_any_write() {
    let ws = Workspace::with_example_portal();
    let state = ws.read("portal.yaml").replace(
        "  - { user: 1, code: sandboxcode0001 }",
        "  - { user: 10, code: memberscode0010 }",
    );
    assert!(
        state.contains("memberscode0010"),
        "the example portal's webhook line moved"
    );
    ws.write("portal.yaml", &state);
    let before = ws.read("portal.yaml");
    let run = ws.roster(&["apply", "groups.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    for group in [
        "error: group \"Marketing\" (#15): 3 change(s) not allowed",
        "error: group \"Engineering\" (#27): 1 change(s) not allowed",
        "error: group \"Sales\" (#42): 1 change(s) not allowed",
    ] {
        assert!(run.stderr.contains(group), "{group}: {}", run.stderr);
    }
    assert!(
        run.stderr.contains("apply refused") && run.stderr.contains("nothing was sent"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("Apply:"), "{}", run.stdout);
    assert_eq!(ws.read("portal.yaml"), before);
}

/// An address where nothing listens fails fast with the cause, not after a minute of retries.
#[test]
fn an_unreachable_portal_fails_with_the_cause() {
    let ws = Workspace::with_example_portal();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let portal = format!("--portal=http://127.0.0.1:{port}/rest/1/closedport1/");
    let started = std::time::Instant::now();
    let run = ws.roster(&["plan", "groups.yaml", &portal]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    assert!(!run.stderr.contains("closedport1"), "{}", run.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// The confirmation prompt can wait for minutes. If the portal changes meanwhile (here a member
/// the plan removes is made moderator), apply re-reads the groups it would change, shows the
/// new plan and sends nothing: roster keeps its own rules rather than relying on the portal.
#[test]
fn apply_refuses_when_the_portal_moved_during_the_prompt() {
    use std::io::{Read, Write};
    let ws = Workspace::with_example_portal();
    let served = ws.serve("portal.yaml");
    let roster = env!("CARGO_BIN_EXE_roster");
    // script(1) gives roster a terminal, so it asks instead of refusing.
    let mut child = std::process::Command::new("script")
        .args([
            "-qfec",
            &format!(
                "{roster} apply groups.yaml --portal={} --color=never",
                served.url
            ),
            "/dev/null",
        ])
        .current_dir(ws.dir.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Only 'yes' will be accepted") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let v = crate::support::call(
        &served.url,
        "sonet_group.user.update",
        serde_json::json!({"GROUP_ID": 15, "USER_ID": [30], "ROLE": "E"}),
    );
    assert_eq!(v["result"], serde_json::json!(["30"]), "{v}");
    let before = ws.read("portal.yaml");
    child.stdin.take().unwrap().write_all(b"yes\n").unwrap();
    out.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("the portal changed while waiting for confirmation (group(s) 15)"),
        "{text}"
    );
    assert!(
        text.contains("- fay@example.com (#30)  moderator"),
        "the new plan is shown: {text}"
    );
    assert_eq!(ws.read("portal.yaml"), before, "nothing was sent: {text}");
}

/// `sandbox generate` never overwrites a portal silently; `--force` does.
#[test]
fn generate_refuses_to_overwrite_without_force() {
    let ws = Workspace::with_example_portal();
    let args = ["sandbox", "generate", "--out", "gen", "--groups", "2"];
    assert_eq!(ws.roster(&args).code, 0);
    ws.write("gen/portal.yaml", "# mine\n");
    let again = ws.roster(&args);
    assert_eq!(again.code, 1, "{}", again.transcript());
    assert!(
        again.stderr.contains("refusing to overwrite") && again.stderr.contains("--force"),
        "{}",
        again.stderr
    );
    assert_eq!(ws.read("gen/portal.yaml"), "# mine\n");
    let forced = ws.roster(&[&args[..], &["--force"]].concat());
    assert_eq!(forced.code, 0, "{}", forced.transcript());
    assert_ne!(ws.read("gen/portal.yaml"), "# mine\n");
}

/// An error whose message already quotes its cause does not repeat it.
#[test]
fn an_error_names_its_cause_once() {
    let ws = Workspace::with_example_portal();
    let run = ws.roster(&["plan", "groups.yaml", "--portal=sandbox:missing.yaml"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        run.stderr
    );
}

/// `sandbox serve` prints its counters as JSON when it stops.
#[test]
fn sandbox_serve_prints_its_counters_when_it_stops() {
    let ws = Workspace::with_example_portal();
    let mut served = ws.serve("portal.yaml");
    let v = crate::support::call(
        &served.url,
        "sonet_group.user.get",
        serde_json::json!({"ID": 15}),
    );
    assert!(v["result"].is_array(), "{v}");
    assert!(served.interrupt().success());
    let rest = served.output.lock().unwrap().clone();
    let counters = rest
        .iter()
        .find_map(|l| l.strip_prefix("roster sandbox: stopped; counters: "))
        .unwrap_or_else(|| panic!("{rest:?}"));
    let c: serde_json::Value = serde_json::from_str(counters).unwrap();
    assert_eq!(c["http_requests"], 1, "{c}");
    assert_eq!(c["methods"]["sonet_group.user.get"]["commands"], 1, "{c}");
    assert_eq!(c["write_commands"], 0, "{c}");
}
