//! Issue 9's loop as a user meets it: saved plans (`plan --out`, `apply PLAN_FILE`) refusing
//! drift and other portals, `--group`, on both systems, through the real binary.

use crate::support::{Workspace, repo};

const PORTAL: &str = "--portal=sandbox:portal.yaml";

/// Acceptance 1: `plan --out` then `apply plan.json` carries out exactly the saved plan; the
/// next plan has no changes; the same plan file again is refused (its groups moved: it was
/// applied).
#[test]
fn a_saved_plan_is_applied_exactly_and_only_once() {
    let ws = Workspace::with_example_portal();
    let plan = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(
        plan.stderr
            .contains("plan saved to plan.json: 5 change(s) in 3 group(s)"),
        "{}",
        plan.stderr
    );
    let saved = ws.read("plan.json");
    // No secret: the webhook code is nowhere, and the portal is named by its state file.
    assert!(!saved.contains(crate::support::EXAMPLE_CODE), "{saved}");
    let v: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(v["kind"], "roster-saved-plan");
    assert!(
        v["portals"][0]["portal"]
            .as_str()
            .unwrap()
            .ends_with("portal.yaml")
    );
    let before = ws.portal_group("portal.yaml", 15);
    let apply = ws.roster(&["apply", "plan.json", PORTAL]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert!(
        apply.stdout.contains("Applying the saved plan plan.json:"),
        "{}",
        apply.stdout
    );
    assert!(apply.stdout.contains("Apply: 5 done"), "{}", apply.stdout);
    assert_ne!(ws.portal_group("portal.yaml", 15), before);
    let again = ws.roster(&["plan", "groups.yaml", PORTAL, "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    let twice = ws.roster(&["apply", "plan.json", PORTAL]);
    assert_eq!(twice.code, 1, "{}", twice.transcript());
    assert!(
        twice
            .stderr
            .contains("changed on the portal since it was made"),
        "{}",
        twice.stderr
    );
}

/// Acceptance 1: a change on the portal between plan and apply makes apply refuse, naming the
/// group and the member that moved, and nothing is sent.
#[test]
fn drift_between_plan_and_apply_is_refused_with_the_members_named() {
    let ws = Workspace::with_example_portal();
    let plan = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    // Fay, whom the plan removes from Marketing as a member, is made a moderator meanwhile.
    let state = ws.read("portal.yaml");
    let moved = state.replacen("{ user: 30, role: K }", "{ user: 30, role: E }", 1);
    assert_ne!(moved, state);
    ws.write("portal.yaml", &moved);
    let apply = ws.roster(&["apply", "plan.json", PORTAL]);
    assert_eq!(apply.code, 1, "{}", apply.transcript());
    assert!(
        apply.stderr.contains(
            "group \"Marketing\" (#15) changed since the plan was made:\n    fay@example.com (#30): member → moderator"
        ),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stderr.contains("nothing was sent"),
        "{}",
        apply.stderr
    );
    assert_eq!(ws.read("portal.yaml"), moved, "nothing may change");
    assert!(!apply.stdout.contains("done"), "{}", apply.stdout);
}

/// Acceptance 1: a plan file made for one portal is refused on another, before contacting it;
/// and a desired-state file changed since the plan refuses it too.
#[test]
fn a_plan_for_one_portal_is_refused_on_another_and_after_the_file_changed() {
    let ws = Workspace::with_example_portal();
    std::fs::copy(repo("examples/sandbox.yaml"), ws.path("other.yaml")).unwrap();
    let plan = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let other = ws.roster(&["apply", "plan.json", "--portal=sandbox:other.yaml"]);
    assert_eq!(other.code, 1, "{}", other.transcript());
    assert!(
        other.stderr.contains("was made for sandbox:") && other.stderr.contains("other.yaml"),
        "{}",
        other.stderr
    );
    assert_eq!(
        ws.read("other.yaml"),
        std::fs::read_to_string(repo("examples/sandbox.yaml")).unwrap()
    );
    // ROSTER_PORTAL is the address when --portal is not given, and is checked the same way.
    let env = ws.roster_with_env(
        &["apply", "plan.json"],
        &[("ROSTER_PORTAL", "sandbox:other.yaml")],
    );
    assert_eq!(env.code, 1, "{}", env.transcript());
    let mut file = ws.read("groups.yaml");
    file.push_str("# edited after the plan\n");
    ws.write("groups.yaml", &file);
    let edited = ws.roster(&["apply", "plan.json", PORTAL]);
    assert_eq!(edited.code, 1, "{}", edited.transcript());
    assert!(
        edited
            .stderr
            .contains("groups.yaml changed since the plan plan.json was made"),
        "{}",
        edited.stderr
    );
}

/// A plan that apply would refuse writes no plan file, and removes a stale one at that path.
#[test]
fn a_plan_apply_would_refuse_is_not_saved() {
    let ws = Workspace::with_example_portal();
    let ok = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    ws.write(
        "bad.yaml",
        "version: 1\ngroups:\n  - id: 15\n    members: [nobody@example.com]\n",
    );
    let bad = ws.roster(&["plan", "bad.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(bad.code, 1, "{}", bad.transcript());
    assert!(
        bad.stderr
            .contains("no plan written to plan.json (the old one there was removed)"),
        "{}",
        bad.stderr
    );
    assert!(!ws.path("plan.json").exists());
}

/// A damaged or hand-edited plan file is refused with what is wrong, nothing sent.
#[test]
fn an_edited_plan_file_is_refused() {
    let ws = Workspace::with_example_portal();
    let ok = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    let state = ws.read("portal.yaml");
    let text = ws.read("plan.json");
    // Pretend Fay was a moderator when planned: the fingerprint no longer fits.
    let edited = text.replacen("\"role\": \"member\"", "\"role\": \"moderator\"", 1);
    assert_ne!(edited, text);
    ws.write("edited.json", &edited);
    let run = ws.roster(&["apply", "edited.json", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("fingerprint"), "{}", run.stderr);
    ws.write(
        "v2.json",
        &text.replacen("\"format_version\": \"1\"", "\"format_version\": \"2\"", 1),
    );
    let run = ws.roster(&["apply", "v2.json", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("format version 2"), "{}", run.stderr);
    assert_eq!(ws.read("portal.yaml"), state);
    let run = ws.roster(&["apply", "plan.json", PORTAL, "--group", "15"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("--group is for a desired-state file"),
        "{}",
        run.stderr
    );
}

/// DocSpace and a file with both systems: saved, drift-checked and applied the same way.
#[test]
fn saved_plans_cover_docspace_and_several_portals() {
    let ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::copy(repo("examples/docspace-sandbox.yaml"), ws.path("docs.yaml")).unwrap();
    std::fs::copy(repo("examples/sandbox.yaml"), ws.path("crm.yaml")).unwrap();
    std::fs::copy(repo("examples/both.yaml"), ws.path("both.yaml")).unwrap();
    let portals = [
        "--portal=crm=sandbox:crm.yaml",
        "--portal=docs=sandbox:docs.yaml",
    ];
    let mut args = vec!["plan", "both.yaml", "--out", "plan.json"];
    args.extend(portals);
    let plan = ws.roster(&args);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    let text = ws.read("plan.json");
    assert!(
        !text.contains("sk-"),
        "no DocSpace key in the plan file: {text}"
    );
    assert!(
        text.contains("\"key_env\": \"ROSTER_DOCS_API_KEY\""),
        "{text}"
    );
    // The portals swapped: refused.
    let swapped = ws.roster(&[
        "apply",
        "plan.json",
        "--portal=crm=sandbox:docs.yaml",
        "--portal=docs=sandbox:crm.yaml",
    ]);
    assert_eq!(swapped.code, 1, "{}", swapped.transcript());
    let mut args = vec!["apply", "plan.json", "--format", "json"];
    args.extend(portals);
    let apply = ws.roster(&args);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    let report: serde_json::Value =
        serde_json::from_str(&apply.stdout).unwrap_or_else(|e| panic!("{e}: {}", apply.stdout));
    assert_eq!(report["all_done"], true, "{report}");
    // The plan went to stderr, so stdout is the report alone.
    assert!(apply.stderr.contains("Portal \"docs\""), "{}", apply.stderr);
    let mut args = vec!["plan", "both.yaml", "--detailed-exitcode"];
    args.extend(portals);
    let again = ws.roster(&args);
    assert_eq!(again.code, 0, "{}", again.transcript());
}

/// Acceptance 5: `--group` limits plan and apply to the named groups (by name or ID), says so
/// in the plan's header, and a selector naming no group is an error before any request.
#[test]
fn group_limits_a_run_to_the_named_groups() {
    let ws = Workspace::with_example_portal();
    let run = ws.roster(&[
        "plan",
        "groups.yaml",
        PORTAL,
        "--group",
        "marketing",
        "--group",
        "27",
    ]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        run.stdout
            .starts_with("Only the groups given by --group: marketing, 27."),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\"Marketing\" (#15)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("\"Engineering\" (#27)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("Sales"), "{}", run.stdout);
    let json = ws.roster(&[
        "plan",
        "groups.yaml",
        PORTAL,
        "--group",
        "Sales",
        "--format",
        "json",
    ]);
    assert_eq!(json.code, 0, "{}", json.transcript());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["only_groups"], serde_json::json!(["Sales"]));
    assert_eq!(v["groups"].as_array().unwrap().len(), 1, "{v}");
    let before_15 = ws.portal_group("portal.yaml", 15);
    let before_27 = ws.portal_group("portal.yaml", 27);
    let apply = ws.roster(&[
        "apply",
        "groups.yaml",
        PORTAL,
        "--group",
        "27",
        "--auto-approve",
    ]);
    assert_eq!(apply.code, 0, "{}", apply.transcript());
    assert_ne!(
        ws.portal_group("portal.yaml", 27),
        before_27,
        "27 was named"
    );
    assert_eq!(
        ws.portal_group("portal.yaml", 15),
        before_15,
        "15 was not named"
    );
    // The file names Marketing by name only: its portal ID does not select it (the selection
    // is made before anything is read).
    let by_id = ws.roster(&["plan", "groups.yaml", PORTAL, "--group", "15"]);
    assert_eq!(by_id.code, 1, "{}", by_id.transcript());
    assert!(by_id.stderr.contains("by its name"), "{}", by_id.stderr);
    let missing = ws.roster(&["plan", "groups.yaml", PORTAL, "--group", "Nope"]);
    assert_eq!(missing.code, 1, "{}", missing.transcript());
    assert!(
        missing
            .stderr
            .contains("--group Nope: groups.yaml declares no group"),
        "{}",
        missing.stderr
    );
    assert!(missing.stdout.is_empty(), "{}", missing.stdout);
}

/// Completions, the man page and `--version` come from the clap definitions.
#[test]
fn completions_man_page_and_version_are_generated() {
    let ws = Workspace::with_example_portal();
    let v = ws.roster(&["--version"]);
    assert_eq!(v.code, 0, "{}", v.transcript());
    assert_eq!(v.stdout, format!("roster {}\n", env!("CARGO_PKG_VERSION")));
    for (shell, marker) in [
        ("bash", "_roster()"),
        ("zsh", "#compdef roster"),
        ("fish", "complete -c roster"),
        ("elvish", "roster"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = ws.roster(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.transcript());
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        // Every subcommand and the new flags are completed.
        for word in ["import", "fmt", "detailed-exitcode"] {
            assert!(run.stdout.contains(word), "{shell} lacks {word}");
        }
    }
    let man = ws.roster(&["man"]);
    assert_eq!(man.code, 0, "{}", man.transcript());
    assert!(
        man.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &man.stdout[..200]
    );
    assert!(
        man.stdout.contains(".TH roster 1"),
        "{}",
        &man.stdout[..400]
    );
    for word in ["plan", "apply", "import", "fmt", "completions"] {
        assert!(man.stdout.contains(word), "man lacks {word}");
    }
    // Every page the main page refers to is written with --out-dir.
    let dir = ws.roster(&["man", "--out-dir", "man"]);
    assert_eq!(dir.code, 0, "{}", dir.transcript());
    for page in [
        "roster.1",
        "roster-plan.1",
        "roster-apply.1",
        "roster-import.1",
        "roster-fmt.1",
        "roster-sandbox-serve.1",
    ] {
        let text = std::fs::read_to_string(ws.path("man").join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}; {}", dir.stderr));
        assert!(text.contains(".TH "), "{page}");
    }
    let plan_page = std::fs::read_to_string(ws.path("man").join("roster-plan.1")).unwrap();
    assert!(plan_page.contains("detailed\\-exitcode"), "{plan_page}");
    // A usage error exits 1, like every error (2 means "changes" only).
    let bad = ws.roster(&["completions", "tcsh"]);
    assert_eq!(bad.code, 1, "{}", bad.transcript());
    assert!(
        bad.stderr.contains("possible values: bash"),
        "{}",
        bad.stderr
    );
}

/// A plan file whose changes were edited (its recorded states left alone, so every fingerprint
/// still fits) is refused: apply plans the groups again from the file and the portal and sends
/// only a plan identical to the saved one.
#[test]
fn a_plan_file_with_edited_changes_is_refused() {
    let ws = Workspace::with_example_portal();
    let ok = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    let state = ws.read("portal.yaml");
    let mut v: serde_json::Value = serde_json::from_str(&ws.read("plan.json")).unwrap();
    // Also remove Cy (#21), whom the file lists in Marketing.
    v["portals"][0]["groups"][0]["entries"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"action": "remove", "user": "21", "role": "member"}));
    ws.write("edited.json", &v.to_string());
    let run = ws.roster(&["apply", "edited.json", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("the plan file was edited"),
        "{}",
        run.stderr
    );
    // An invitation text changed to something the file format refuses: refused the same way.
    let mut v: serde_json::Value = serde_json::from_str(&ws.read("plan.json")).unwrap();
    let sales = v["portals"][0]["groups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|g| g["id"] == "42")
        .unwrap();
    sales["invite_message"] = "hi $result[x] \u{7}".into();
    ws.write("message.json", &v.to_string());
    let run = ws.roster(&["apply", "message.json", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(
        run.stderr.contains("the plan file was edited"),
        "{}",
        run.stderr
    );
    assert_eq!(ws.read("portal.yaml"), state, "nothing was sent");
    // Run from another directory, the file the plan was made from is not found: refused.
    std::fs::create_dir(ws.path("sub")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["apply", "../plan.json", "--portal=sandbox:../portal.yaml"])
        .current_dir(ws.path("sub"))
        .env_remove("ROSTER_PORTAL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run apply where plan ran"), "{stderr}");
    assert_eq!(ws.read("portal.yaml"), state, "nothing was sent");
}

/// A saved plan applied with a webhook whose user may not make its changes is refused before
/// any write, as `apply FILE` is; and `plan --out` by such a user fails without a plan file.
#[test]
fn a_saved_plan_is_checked_for_the_applying_user_too() {
    let ws = Workspace::with_example_portal();
    let state = ws.read("portal.yaml").replace(
        "webhooks:\n",
        "webhooks:\n  - { user: 10, code: sandboxcode0010 }\n",
    );
    ws.write("portal.yaml", &state);
    let served = ws.serve("portal.yaml");
    let admin = served.url.clone();
    let plain = admin.replace("/1/sandboxcode0001/", "/10/sandboxcode0010/");
    assert_ne!(plain, admin, "{admin}");
    let ok = ws.roster(&[
        "plan",
        "groups.yaml",
        "--portal",
        &admin,
        "--out",
        "plan.json",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    let before = ws.read("portal.yaml");
    let run = ws.roster(&["apply", "plan.json", "--portal", &plain]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("apply refused"), "{}", run.stderr);
    assert!(!run.stdout.contains("done"), "{}", run.stdout);
    assert_eq!(ws.read("portal.yaml"), before, "nothing was sent");
    let by_plain = ws.roster(&[
        "plan",
        "groups.yaml",
        "--portal",
        &plain,
        "--out",
        "plain.json",
        "--detailed-exitcode",
    ]);
    assert_eq!(by_plain.code, 1, "{}", by_plain.transcript());
    assert!(!ws.path("plain.json").exists());
}

/// `apply --format json` prints a report even when there is nothing to do.
#[test]
fn the_json_report_comes_when_nothing_changes() {
    let ws = Workspace::with_example_portal();
    let first = ws.roster(&["apply", "groups.yaml", PORTAL, "--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    let again = ws.roster(&[
        "apply",
        "groups.yaml",
        PORTAL,
        "--auto-approve",
        "--format",
        "json",
    ]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    let v: serde_json::Value =
        serde_json::from_str(&again.stdout).unwrap_or_else(|e| panic!("{e}: {}", again.stdout));
    assert_eq!(v["all_done"], true, "{v}");
    assert_eq!(v["summary"]["done"], 0, "{v}");
    let saved = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "none.json"]);
    assert_eq!(saved.code, 0, "{}", saved.transcript());
    let run = ws.roster(&["apply", "none.json", PORTAL, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    let v: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    assert_eq!(v["kind"], "apply_report", "{v}");
}

/// The Markdown comment says what keeps the plan from being applied, and stays within its cap
/// with `--diff` and many `--group`s.
#[test]
fn the_markdown_comment_shows_problems_and_stays_under_the_cap() {
    let ws = Workspace::with_example_portal();
    ws.write(
        "bad.yaml",
        "version: 1\ngroups:\n  - name: Marketing\n    members: [nobody@example.com]\n  - id: 27\n    name: Engineering\n    owner: di@example.com\n    members: [gus@example.com, ed@example.com]\n",
    );
    let run = ws.roster(&[
        "plan",
        "bad.yaml",
        PORTAL,
        "--format",
        "markdown",
        "--group",
        "#27",
        "--group",
        "Marketing",
    ]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    let md = &run.stdout;
    assert!(md.starts_with("<!-- roster-plan -->\n"), "{md}");
    assert!(
        md.contains("> [!CAUTION]\n> apply would refuse this plan"),
        "{md}"
    );
    assert!(md.contains("nobody@example.com"), "{md}");
    assert!(
        md.contains("Only the groups given by `--group`: \\#27, Marketing."),
        "{md}"
    );
    // A large plan with its diff, and many selectors: never over 65,000 characters.
    let generated = ws.roster(&[
        "sandbox",
        "generate",
        "--out",
        "gen",
        "--groups",
        "300",
        "--members",
        "40",
        "--churn",
        "0.5",
    ]);
    assert_eq!(generated.code, 0, "{}", generated.transcript());
    let mut args = vec![
        "plan",
        "gen/groups.yaml",
        "--portal=sandbox:gen/portal.yaml",
        "--format=markdown",
        "--diff",
        "--allow-mass-removal",
    ];
    let ids: Vec<String> = (1..=300).map(|i| format!("--group={i}")).collect();
    args.extend(ids.iter().map(String::as_str));
    let big = ws.roster(&args);
    assert_eq!(big.code, 0, "{}", &big.stderr);
    let n = big.stdout.chars().count();
    assert!(n <= 65_000, "{n} characters");
    assert!(
        big.stdout
            .contains("more changes not shown; see the job log."),
        "{}",
        &big.stdout[..2000]
    );
    assert!(
        big.stdout.contains(" and 280 more."),
        "{}",
        &big.stdout[..2000]
    );
    assert!(
        big.stdout
            .contains("The membership diff is too long for this comment"),
        "{}",
        &big.stdout[big.stdout.len() - 500..]
    );
}

/// A second review: nothing but a fresh plan of the file's own groups is ever sent — not a
/// group the file's name now points away from, not a group `only_groups` was narrowed to
/// leave out, not a group the file never declared (with a fingerprint recomputed for it) —
/// and what apply shows and reports comes from the portal, not from the plan file's names.
#[test]
fn only_a_fresh_plan_of_the_files_groups_is_sent() {
    let ws = Workspace::with_example_portal();
    // A group 99 "Board" beside the example's.
    let state = ws.read("portal.yaml").replacen(
        "webhooks:\n",
        "  - id: 99\n    name: Board\n    members:\n      - { user: 1, role: A }\n      - { user: 10, role: K }\nwebhooks:\n",
        1,
    );
    ws.write("portal.yaml", &state);
    let ok = ws.roster(&["plan", "groups.yaml", PORTAL, "--out", "plan.json"]);
    assert_eq!(ok.code, 0, "{}", ok.transcript());
    let plan = ws.read("plan.json");
    // 1. On the portal, "Marketing" becomes group 99 and #15 is renamed.
    let renamed = state
        .replacen("name: Marketing", "name: Old Marketing", 1)
        .replacen("name: Board", "name: Marketing", 1);
    ws.write("portal.yaml", &renamed);
    let run = ws.roster(&["apply", "plan.json", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert_eq!(ws.read("portal.yaml"), renamed, "nothing was sent");
    ws.write("portal.yaml", &state);
    // 2A. only_groups narrowed to Marketing, Engineering's entries replaced.
    let mut v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    v["only_groups"] = serde_json::json!(["Marketing"]);
    let eng = v["portals"][0]["groups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|g| g["id"] == "27")
        .unwrap();
    eng["entries"] = serde_json::json!([{"action": "remove", "user": "23", "role": "moderator"}]);
    ws.write("narrowed.json", &v.to_string());
    let run = ws.roster(&["apply", "narrowed.json", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("Engineering"), "{}", run.stderr);
    // 2B. A group the file never declares, with its fingerprint recomputed.
    let mut v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let board_state = roster::saved::SavedState {
        members: vec![
            roster::saved::SavedMember {
                user: "1".into(),
                role: "owner".into(),
            },
            roster::saved::SavedMember {
                user: "10".into(),
                role: "member".into(),
            },
        ],
        invited: vec![],
        requested: vec![],
    };
    let print = roster::saved::fingerprint(roster::model::GroupId::Num(99), &board_state);
    v["portals"][0]["groups"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": "99", "name": "Board", "state_sha256": print,
            "state": serde_json::to_value(&board_state).unwrap(),
            "invite_message": null, "departments": [], "prune_synced": false,
            "current_non_owners": 1, "owner_mismatch": null,
            "entries": [{"action": "remove", "user": "10", "role": "member"}],
        }));
    ws.write("forged.json", &v.to_string());
    let run = ws.roster(&["apply", "forged.json", PORTAL]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("\"Board\" (#99)"), "{}", run.stderr);
    assert_eq!(ws.read("portal.yaml"), state, "nothing was sent");
    // 3. Names in the plan file are not what apply shows or reports.
    let mut v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    for p in v["portals"][0]["people"].as_array_mut().unwrap() {
        if p["id"] == "30" {
            p["email"] = "nobody@example.com".into();
        }
    }
    for g in v["portals"][0]["groups"].as_array_mut().unwrap() {
        g["name"] = "Fake".into();
    }
    ws.write("names.json", &v.to_string());
    let run = ws.roster(&["apply", "names.json", PORTAL, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        !run.stdout.contains("nobody@") && !run.stdout.contains("Fake"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("fay@example.com"), "{}", run.stdout);
    assert!(!run.stderr.contains("nobody@"), "{}", run.stderr);
}
