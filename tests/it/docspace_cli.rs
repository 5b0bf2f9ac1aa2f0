//! Issue 8's promises as a user meets them: the real binary against the DocSpace sandbox, and one
//! file with a Bitrix24 portal and a DocSpace portal planned and applied together.

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

/// A guest and a terminated user cannot join a DocSpace group: the portal skips them silently
/// and the report says so, with the reason, and the exit code is 1.
#[test]
fn users_docspace_skips_silently_are_reported_not_done() {
    let ws = docspace_example();
    ws.write(
        "g.yaml",
        &format!(
            "version: 1\nportals: {{ docs: {{ docspace: {{}} }} }}\ngroups:\n  - id: {WRITERS}\n    manager: di@example.com\n    members: [ed@example.com, gus@example.com]\n"
        ),
    );
    let apply = ws.roster(&["apply", "g.yaml", DOCS, "--auto-approve"]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("not done") && apply.stdout.contains("gus@example.com"),
        "{}",
        apply.transcript()
    );
    assert!(apply.stdout.contains("guest"), "{}", apply.transcript());
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
