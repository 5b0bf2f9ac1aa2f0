//! Issue 8's promises as a user meets them: the real binary against the DocSpace sandbox, and one
//! file with a Bitrix24 portal and a DocSpace portal planned and applied together.

use std::time::{Duration, Instant};

use crate::support::{Workspace, repo};

const DESIGNERS: &str = "d5000000-0000-4000-8000-000000000015";
const WRITERS: &str = "d5000000-0000-4000-8000-000000000027";
const BO: &str = "0a0d0000-0000-4000-8000-000000000010";
const CY: &str = "0a0d0000-0000-4000-8000-000000000021";
const DI: &str = "0a0d0000-0000-4000-8000-000000000022";
const ED: &str = "0a0d0000-0000-4000-8000-000000000023";
const FAY: &str = "0a0d0000-0000-4000-8000-000000000030";

/// A workspace with the DocSpace example: `docs.yaml` (the portal) and `docspace.yaml`.
fn docspace_example() -> Workspace {
    let ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::copy(repo("examples/docspace-sandbox.yaml"), ws.path("docs.yaml")).unwrap();
    std::fs::copy(repo("examples/docspace.yaml"), ws.path("docspace.yaml")).unwrap();
    ws
}

/// A DocSpace group in a sandbox state file: (manager, members in file order).
fn ds_group(ws: &Workspace, state: &str, id: &str) -> (Option<String>, Vec<String>) {
    let v: serde_norway::Value = serde_norway::from_str(&ws.read(state)).unwrap();
    let g = v["docspace"]["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|g| g["id"].as_str() == Some(id))
        .unwrap_or_else(|| panic!("no group {id} in {state}"));
    let manager = g["manager"].as_str().map(str::to_owned);
    let members = g["members"]
        .as_sequence()
        .map(|m| m.iter().map(|u| u.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (manager, members)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const DOCS: &str = "--portal=sandbox:docs.yaml";

/// Acceptance 1: adds, a removal and a skipped manager; apply; then `No changes.`, and the
/// manager was never removed.
#[test]
fn the_docspace_example_plans_applies_and_converges_without_touching_the_manager() {
    let ws = docspace_example();
    let run = ws.roster(&["plan", "docspace.yaml", DOCS, "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{}", run.transcript());
    let out = &run.stdout;
    for want in [
        "Portal \"docs\" (ONLYOFFICE DocSpace):",
        &format!("\"Designers\" ({DESIGNERS})"),
        &format!("+ di@example.com ({DI})"),
        &format!("+ ed@example.com ({ED})"),
        &format!("- fay@example.com ({FAY})"),
        &format!("! bo@example.com ({BO})"),
        "manager  skipped: manager (not declared; managers are never removed)",
        &format!("\"Writers\" ({WRITERS})"),
        &format!("+ cy@example.com ({CY})"),
        "Plan: 3 to add, 0 to change, 1 to remove, 1 skipped.",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let json = ws.roster(&["plan", "docspace.yaml", DOCS, "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.transcript());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["portals"][0]["name"], "docs");
    assert_eq!(v["portals"][0]["system"], "docspace");
    let plan = &v["portals"][0]["plan"];
    assert_eq!(plan["summary"]["add"], 3, "{}", json.stdout);
    let skip = plan["groups"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "skip")
        .unwrap();
    assert_eq!(skip["user"], BO);
    assert_eq!(skip["role"], "manager");
    assert_eq!(skip["reason"], "manager");

    let apply = ws.roster(&["apply", "docspace.yaml", DOCS, "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let (manager, members) = ds_group(&ws, "docs.yaml", DESIGNERS);
    assert_eq!(manager.as_deref(), Some(BO), "the manager stays");
    assert_eq!(
        sorted(members),
        sorted(vec![BO.into(), CY.into(), DI.into(), ED.into()])
    );
    let (manager, members) = ds_group(&ws, "docs.yaml", WRITERS);
    assert_eq!(manager.as_deref(), Some(DI));
    assert_eq!(
        sorted(members),
        sorted(vec![CY.into(), DI.into(), ED.into()])
    );

    let again = ws.roster(&["plan", "docspace.yaml", DOCS, "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    assert!(
        again.stdout.contains("No changes. 1 skipped."),
        "{}",
        again.stdout
    );
}

/// A file naming another manager changes it with one `PUT …/manager`; the old manager stays a
/// member and is reconciled in the same run (here: removed, as the file does not list them).
#[test]
fn a_new_manager_is_set_first_and_the_old_one_reconciled_in_the_same_run() {
    let ws = docspace_example();
    ws.write(
        "m.yaml",
        &format!(
            "version: 1\nportals: {{ docs: {{ docspace: {{}} }} }}\ngroups:\n  - id: {DESIGNERS}\n    manager: cy@example.com\n    members: [fay@example.com]\n"
        ),
    );
    let plan = ws.roster(&["plan", "m.yaml", DOCS]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stdout.contains(&format!(
            "~ manager: bo@example.com ({BO}) → cy@example.com ({CY})"
        )),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("(the former manager)"),
        "{}",
        plan.stdout
    );
    let apply = ws.roster(&["apply", "m.yaml", DOCS, "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let (manager, members) = ds_group(&ws, "docs.yaml", DESIGNERS);
    assert_eq!(manager.as_deref(), Some(CY));
    assert_eq!(sorted(members), sorted(vec![CY.into(), FAY.into()]));
    let again = ws.roster(&["plan", "m.yaml", DOCS, "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
}

/// A guest and a terminated user cannot join a DocSpace group (the portal would skip them
/// silently): the plan shows them as not added, never as changes, so a drift check settles.
#[test]
fn guests_and_terminated_users_are_shown_not_added() {
    let ws = docspace_example();
    ws.write(
        "g.yaml",
        &format!(
            "version: 1\nportals: {{ docs: {{ docspace: {{}} }} }}\ngroups:\n  - id: {WRITERS}\n    manager: di@example.com\n    members: [ed@example.com, gus@example.com, ivy@example.com]\n"
        ),
    );
    let plan = ws.roster(&["plan", "g.yaml", DOCS, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stdout
            .contains("guest: not added (DocSpace does not add guests to groups)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("terminated: not added"),
        "{}",
        plan.stdout
    );
    let state = ws.read("docs.yaml");
    let apply = ws.roster(&["apply", "g.yaml", DOCS, "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_eq!(ws.read("docs.yaml"), state, "nothing to send");
}

/// A wrong key fails the run once, with what to do, and the key is never printed.
#[test]
fn a_wrong_key_fails_once_and_is_not_printed() {
    let ws = docspace_example();
    let key = format!("sk-{}", "e".repeat(64));
    let run = ws.roster_with_env(
        &["plan", "docspace.yaml", DOCS],
        &[("ROSTER_DOCS_API_KEY", key.as_str())],
    );
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("401"), "{}", run.transcript());
    assert!(!run.transcript().contains(&key), "{}", run.transcript());
    assert!(
        !run.transcript().contains(&key[3..20]),
        "{}",
        run.transcript()
    );
}

/// Mistakes that depend on the system are errors at their place, before anything is sent.
#[test]
fn docspace_groups_are_validated_with_positions() {
    let ws = docspace_example();
    ws.write(
        "bad.yaml",
        &format!(
            "version: 1\nportals: {{ docs: {{ docspace: {{}} }} }}\ngroups:\n  - id: {DESIGNERS}\n    moderators: [cy@example.com]\n    members: [21]\n"
        ),
    );
    let run = ws.roster(&["plan", "bad.yaml", DOCS]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr
            .contains("bad.yaml:5:5: groups[0].moderators: a DocSpace group has no moderators"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("bad.yaml:6:15: groups[0].members[0]: a DocSpace user's ID is a UUID"),
        "{}",
        run.stderr
    );
    // A DocSpace sandbox for a plain (Bitrix24) file is refused, saying what to write.
    let plain = ws.write("plain.yaml", "version: 1\ngroups: []\n");
    let _ = plain;
    let run = ws.roster(&["plan", "plain.yaml", DOCS]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("docspace: {}"), "{}", run.stderr);
}

/// Acceptance 2: one file with a Bitrix24 portal and a DocSpace portal: one plan, one apply,
/// convergence on both.
#[test]
fn one_file_with_both_systems_plans_and_applies_both() {
    let ws = docspace_example();
    std::fs::copy(repo("examples/sandbox.yaml"), ws.path("crm.yaml")).unwrap();
    std::fs::copy(repo("examples/both.yaml"), ws.path("both.yaml")).unwrap();
    let portals = [
        "--portal=crm=sandbox:crm.yaml",
        "--portal=docs=sandbox:docs.yaml",
    ];
    let mut args = vec!["plan", "both.yaml", "--detailed-exitcode"];
    args.extend(portals);
    let run = ws.roster(&args);
    assert_eq!(run.code, 2, "{}", run.transcript());
    for want in [
        "Portal \"crm\" (Bitrix24):",
        "\"Marketing\" (#15)",
        "Portal \"docs\" (ONLYOFFICE DocSpace):",
        &format!("\"Designers\" ({DESIGNERS})"),
        "All 2 portals:",
    ] {
        assert!(
            run.stdout.contains(want),
            "missing {want:?} in\n{}",
            run.stdout
        );
    }
    let mut args = vec!["apply", "both.yaml", "--auto-approve"];
    args.extend(portals);
    let apply = ws.roster(&args);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let mut args = vec!["plan", "both.yaml", "--detailed-exitcode"];
    args.extend(portals);
    let again = ws.roster(&args);
    assert_eq!(again.code, 0, "{}", again.transcript());
    // The addresses can come from the environment instead.
    let env = ws.roster_with_env(
        &["plan", "both.yaml", "--detailed-exitcode"],
        &[
            ("ROSTER_CRM_URL", "sandbox:crm.yaml"),
            ("ROSTER_DOCS_URL", "sandbox:docs.yaml"),
        ],
    );
    assert_eq!(env.code, 0, "{}", env.transcript());
    // A missing address is an error naming the variable, before any portal is contacted.
    let missing = ws.roster_with_env(
        &["plan", "both.yaml"],
        &[("ROSTER_CRM_URL", "sandbox:crm.yaml")],
    );
    assert_eq!(missing.code, 1, "{}", missing.transcript());
    assert!(
        missing.stderr.contains("ROSTER_DOCS_URL"),
        "{}",
        missing.stderr
    );
}

/// `(group, symbol, user)` of each change in a JSON plan of a `portals:` file.
fn ds_planned(json: &str) -> std::collections::BTreeSet<(String, char, String)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let mut out = std::collections::BTreeSet::new();
    for p in v["portals"].as_array().unwrap() {
        for g in p["plan"]["groups"].as_array().unwrap() {
            for e in g["entries"].as_array().unwrap() {
                let symbol = match e["action"].as_str().unwrap() {
                    "add" => '+',
                    "remove" => '-',
                    "set_owner" => '~',
                    _ => continue,
                };
                out.insert((
                    g["id"].as_str().unwrap().to_owned(),
                    symbol,
                    e["user"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

/// The UUIDs in a line, in order.
fn uuids(line: &str) -> Vec<String> {
    let b = line.as_bytes();
    (0..b.len().saturating_sub(35))
        .filter(|&i| {
            (i == 0 || !b[i - 1].is_ascii_hexdigit())
                && line
                    .get(i..i + 36)
                    .is_some_and(|t| roster::model::Uuid::parse(t).is_some())
        })
        .map(|i| line[i..i + 36].to_owned())
        .collect()
}

/// `(status, (group, symbol, user))` of each line of an apply report.
fn ds_reported(stdout: &str) -> Vec<(String, (String, char, String))> {
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
        let ids = uuids(line);
        let Some(colon) = line.find("): ") else {
            continue;
        };
        let symbol = line[colon + 3..].chars().next().unwrap();
        // A manager change reads `old → new`: the change is about the new one.
        let user = match line.find('→') {
            Some(arrow) if symbol == '~' => uuids(&line[arrow..]).first().cloned(),
            _ => ids.get(1).cloned(),
        };
        out.push((status.to_owned(), (ids[0].clone(), symbol, user.unwrap())));
    }
    out
}

/// SIGINT in the middle of a DocSpace apply: the run stops sending, reports every change, exits
/// 130, and what it calls done is exactly what the portal holds; a second apply converges.
#[test]
fn an_interrupted_docspace_apply_reports_what_the_portal_holds() {
    let ws = docspace_example();
    let run = ws.roster(&[
        "sandbox",
        "generate",
        "--system",
        "docspace",
        "--out",
        "gen",
        "--groups",
        "80",
        "--members",
        "10",
        "--churn",
        "0.2",
        "--seed",
        "5",
    ]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let state =
        ws.read("gen/portal.yaml")
            .replacen("docspace:\n", "docspace:\n  latency_ms: 150\n", 1);
    ws.write("gen/portal.yaml", &state);
    let portal = "--portal=sandbox:gen/portal.yaml";
    let before = ws.roster(&["plan", "gen/groups.yaml", portal, "--format=json"]);
    assert_eq!(before.code, 0, "{}", before.transcript());
    let all = ds_planned(&before.stdout);
    assert!(all.len() > 100, "{}", all.len());

    let child = ws.spawn(&["apply", "gen/groups.yaml", portal, "--auto-approve"]);
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
    let report = ds_reported(&stdout);
    let in_report: std::collections::BTreeSet<_> = report.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(
        in_report, all,
        "every planned change is reported once:\n{stdout}"
    );
    assert_eq!(report.len(), all.len());
    assert!(report.iter().any(|(s, _)| s == "not started"), "{stdout}");
    let done: std::collections::BTreeSet<_> = report
        .iter()
        .filter(|(s, _)| s == "done")
        .map(|(_, c)| c.clone())
        .collect();
    assert!(!done.is_empty(), "{stdout}");

    let after = ws.roster(&["plan", "gen/groups.yaml", portal, "--format=json"]);
    assert_eq!(after.code, 0, "{}", after.transcript());
    let remaining = ds_planned(&after.stdout);
    let expected: std::collections::BTreeSet<_> = all.difference(&done).cloned().collect();
    assert_eq!(
        remaining, expected,
        "done in the report == held by the portal"
    );
    let again = ws.roster(&["apply", "gen/groups.yaml", portal, "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    let last = ws.roster(&["plan", "gen/groups.yaml", portal, "--detailed-exitcode"]);
    assert_eq!(last.code, 0, "{}", last.transcript());
}

/// The removal limits hold on DocSpace too: a file that empties a group is refused before
/// anything is sent, with the numbers; `--allow-mass-removal` lets it through.
#[test]
fn docspace_removals_are_held_to_the_limits() {
    let ws = docspace_example();
    let run = ws.roster(&[
        "sandbox",
        "generate",
        "--system",
        "docspace",
        "--out",
        "gen",
        "--groups",
        "3",
        "--members",
        "12",
        "--churn",
        "0",
        "--seed",
        "2",
    ]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    // Keep only the manager of each group: every other member would be removed.
    let file = ws.read("gen/groups.yaml");
    let emptied: String = file
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("members:") {
                "    members: []".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    ws.write("gen/empty.yaml", &emptied);
    let portal = "--portal=sandbox:gen/portal.yaml";
    let state = ws.read("gen/portal.yaml");
    let apply = ws.roster(&["apply", "gen/empty.yaml", portal, "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply
            .stderr
            .contains("the plan removes all 11 current non-owner members"),
        "{}",
        apply.stderr
    );
    assert_eq!(ws.read("gen/portal.yaml"), state, "nothing was sent");
    let forced = ws.roster(&[
        "apply",
        "gen/empty.yaml",
        portal,
        "--auto-approve",
        "--allow-mass-removal",
    ]);
    assert_eq!(forced.code, 0, "{}", forced.transcript());
    let again = ws.roster(&["plan", "gen/empty.yaml", portal, "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    // Each group keeps its manager, whom the file declares.
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
}

/// `max_total_removals` is the whole run's, over every portal: two removals on one portal and
/// one on the other break a limit of 2, though neither portal alone does.
#[test]
fn the_run_wide_removal_limit_adds_every_portal_up() {
    let ws = docspace_example();
    std::fs::copy(repo("examples/sandbox.yaml"), ws.path("crm.yaml")).unwrap();
    ws.write(
        "tot.yaml",
        "version: 1\nlimits: { max_total_removals: 2, max_removals: 100%, allow_empty: true }\nportals: { crm: { bitrix24: {} }, docs: { docspace: {} } }\ngroups:\n  - { portal: crm, name: Marketing, members: [bo@example.com] }\n  - { portal: docs, name: Designers, members: [cy@example.com] }\n",
    );
    let (crm, docs) = (ws.read("crm.yaml"), ws.read("docs.yaml"));
    let args = [
        "apply",
        "tot.yaml",
        "--auto-approve",
        "--portal=crm=sandbox:crm.yaml",
        "--portal=docs=sandbox:docs.yaml",
    ];
    let run = ws.roster(&args);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("all portals: ") && run.stderr.contains("3"),
        "{}",
        run.stderr
    );
    assert_eq!(
        (ws.read("crm.yaml"), ws.read("docs.yaml")),
        (crm, docs),
        "nothing was sent"
    );
    let json = ws.roster(&[
        "plan",
        "tot.yaml",
        "--format=json",
        "--portal=crm=sandbox:crm.yaml",
        "--portal=docs=sandbox:docs.yaml",
    ]);
    assert_eq!(json.code, 1, "{}", json.transcript());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        v["limit_breaches"][0]["rule"], "max_total_removals",
        "{}",
        json.stdout
    );
    assert_eq!(v["limit_breaches"][0]["removals"], 3, "{}", json.stdout);
}

/// A Bitrix24 webhook left in ROSTER_PORTAL never becomes a `portals:` file's address (nor
/// receives its DocSpace key); two names for one portal are refused.
#[test]
fn portal_addresses_come_from_where_the_file_says() {
    let ws = docspace_example();
    let run = ws.roster_with_env(
        &["plan", "docspace.yaml"],
        &[("ROSTER_PORTAL", "sandbox:docs.yaml")],
    );
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("ROSTER_DOCS_URL") && run.stderr.contains("only for a file without"),
        "{}",
        run.stderr
    );
    let run = ws.roster_with_env(
        &["plan", "docspace.yaml"],
        &[(
            "ROSTER_DOCS_URL",
            "https://example.bitrix24.com/rest/1/abcdefgh12345678/",
        )],
    );
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("looks like a Bitrix24 webhook"),
        "{}",
        run.stderr
    );
    ws.write(
        "two.yaml",
        &format!(
            "version: 1\nportals: {{ a: {{ docspace: {{}} }}, b: {{ docspace: {{}} }} }}\ngroups:\n  - {{ portal: a, id: {DESIGNERS} }}\n  - {{ portal: b, id: {WRITERS} }}\n"
        ),
    );
    let run = ws.roster(&[
        "plan",
        "two.yaml",
        "--portal=a=sandbox:docs.yaml",
        "--portal=b=sandbox:./docs.yaml",
    ]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("are the same portal"), "{}", run.stderr);
}

/// `sandbox serve` on a DocSpace state serves the DocSpace API (the banner gives its base and
/// key), and a plan against the served portal over HTTP works like the in-process one.
#[test]
fn sandbox_serve_serves_a_docspace_state() {
    let ws = docspace_example();
    let served = ws.serve("docs.yaml");
    assert!(served.url.ends_with("/api/2.0/"), "{}", served.url);
    let base = served.url.trim_end_matches("/api/2.0/").to_owned();
    let key = "sk-5a4d0c0ffee00000000000000000000000000000000000000000000000000001";
    let group = crate::support::http().get(format!("{}group/{DESIGNERS}", served.url));
    let body: serde_json::Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        group
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(body["response"]["name"], "Designers", "{body}");
    let run = ws.roster_with_env(
        &["plan", "docspace.yaml", &format!("--portal={base}")],
        &[("ROSTER_DOCS_API_KEY", key)],
    );
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(run.stdout.contains("Plan: 3 to add"), "{}", run.stdout);
}
