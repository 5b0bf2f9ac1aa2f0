//! `roster import` and `roster fmt` as a user meets them (issue 9, acceptance 2 and 5): an
//! imported file plans to `No changes.` and is canonical, on both systems and at 500 groups;
//! fmt keeps comments or refuses and changes nothing.

use crate::support::{Workspace, repo};

fn workspace() -> Workspace {
    let ws = Workspace {
        dir: tempfile::tempdir().unwrap(),
    };
    std::fs::copy(repo("examples/sandbox.yaml"), ws.path("crm.yaml")).unwrap();
    std::fs::copy(repo("examples/docspace-sandbox.yaml"), ws.path("docs.yaml")).unwrap();
    ws
}

/// Import, then: the file is canonical, and a plan against the same portal has no changes.
fn import_then_plan(ws: &Workspace, portal: &str, out: &str) -> String {
    let state_before = ws.read(portal.rsplit(':').next().unwrap());
    let import = ws.roster(&["import", "--portal", portal, "--all", "--out", out]);
    assert_eq!(import.code, 0, "{}", import.transcript());
    assert!(import.stderr.contains("imported"), "{}", import.stderr);
    assert_eq!(
        ws.read(portal.rsplit(':').next().unwrap()),
        state_before,
        "import changes nothing on the portal"
    );
    let check = ws.roster(&["fmt", out, "--check"]);
    assert_eq!(check.code, 0, "{}", check.transcript());
    let bare = portal.rsplit_once('=').map_or(portal, |(_, a)| a);
    let plan = ws.roster(&["plan", out, "--portal", bare, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.transcript(), ws.read(out));
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
    ws.read(out)
}

#[test]
fn an_imported_bitrix24_portal_plans_to_no_changes() {
    let ws = workspace();
    let text = import_then_plan(&ws, "sandbox:crm.yaml", "imported.yaml");
    // People by e-mail with their names beside them; groups by ID with their names.
    for want in [
        "- id: 15\n    name: Marketing\n    owner: ada@example.com  # Ada Admin\n",
        "  - id: 27\n    name: Engineering\n",
        "# Written by `roster import` from sandbox:",
        "Pending (not members; roster leaves them alone): 1 invited, not accepted yet; 1 asked to join, waiting for approval.",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains(crate::support::EXAMPLE_CODE), "{text}");
    // To standard output without --out, and only the groups asked for.
    let one = ws.roster(&["import", "--portal", "sandbox:crm.yaml", "--group", "Sales"]);
    assert_eq!(one.code, 0, "{}", one.transcript());
    assert!(one.stdout.contains("name: Sales"), "{}", one.stdout);
    assert!(!one.stdout.contains("Marketing"), "{}", one.stdout);
    // An existing file is not overwritten without --force.
    let again = ws.roster(&[
        "import",
        "--portal",
        "sandbox:crm.yaml",
        "--all",
        "--out",
        "imported.yaml",
    ]);
    assert_eq!(again.code, 1, "{}", again.transcript());
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let unknown = ws.roster(&["import", "--portal", "sandbox:crm.yaml", "--group", "999"]);
    assert_eq!(unknown.code, 1, "{}", unknown.transcript());
    assert!(unknown.stderr.contains("999"), "{}", unknown.stderr);
}

#[test]
fn an_imported_docspace_portal_plans_to_no_changes() {
    let ws = workspace();
    let text = import_then_plan(&ws, "docs=sandbox:docs.yaml", "docs-imported.yaml");
    assert!(
        text.contains("portals:\n  docs:\n    docspace: {}\n"),
        "{text}"
    );
    assert!(text.contains("manager: "), "{text}");
    assert!(!text.contains("owner:"), "{text}");
    assert!(!text.contains("sk-"), "{text}");
    // Without a name the portal is called `docspace`.
    let bare = ws.roster(&["import", "--portal", "sandbox:docs.yaml", "--all"]);
    assert_eq!(bare.code, 0, "{}", bare.transcript());
    assert!(
        bare.stdout.contains("portals:\n  docspace:\n"),
        "{}",
        bare.stdout
    );
}

#[test]
fn an_imported_generated_portal_of_500_groups_plans_to_no_changes() {
    for system in ["bitrix24", "docspace"] {
        let ws = workspace();
        let generated = ws.roster(&[
            "sandbox",
            "generate",
            "--out",
            "gen",
            "--groups",
            "500",
            "--members",
            "12",
            "--system",
            system,
        ]);
        assert_eq!(generated.code, 0, "{}", generated.transcript());
        let text = import_then_plan(&ws, "sandbox:gen/portal.yaml", "all.yaml");
        assert_eq!(text.matches("\n  - id: ").count(), 500, "{system}");
    }
}

const COMMENTED: &str = "# The team's groups.
version: 1
groups:
  - name: Sales   # by name
    members: [zed@example.com, amy@example.com, amy@example.com]  # inline list
  # Marketing comes first once sorted
  - id: 15
    members:
      - 30      # Fay
      - bo@example.com
    # fay stays
";

#[test]
fn fmt_rewrites_canonically_and_keeps_every_comment() {
    let ws = workspace();
    ws.write("team.yaml", COMMENTED);
    let check = ws.roster(&["fmt", "team.yaml", "--check"]);
    assert_eq!(check.code, 1, "{}", check.transcript());
    assert!(
        check.stdout.contains("--- team.yaml (as it is)"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("+++ team.yaml (canonical)"),
        "{}",
        check.stdout
    );
    assert_eq!(ws.read("team.yaml"), COMMENTED, "--check changes nothing");
    let fmt = ws.roster(&["fmt", "team.yaml"]);
    assert_eq!(fmt.code, 0, "{}", fmt.transcript());
    let out = ws.read("team.yaml");
    for line in COMMENTED
        .lines()
        .filter_map(|l| l.find('#').map(|i| &l[i..]))
    {
        assert_eq!(out.matches(line).count(), 1, "{line:?} kept once in\n{out}");
    }
    // Sorted: group 15 before the group given by name; users by ID then e-mail, once.
    assert!(
        out.find("- id: 15").unwrap() < out.find("- name: Sales").unwrap(),
        "{out}"
    );
    assert_eq!(out.matches("amy@example.com").count(), 1, "{out}");
    assert!(
        out.find("amy@").unwrap() < out.find("zed@").unwrap(),
        "{out}"
    );
    let again = ws.roster(&["fmt", "team.yaml", "--check"]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    // Still the same file to roster.
    let valid = ws.roster(&["validate", "team.yaml"]);
    assert_eq!(valid.code, 0, "{}", valid.transcript());
}

#[test]
fn fmt_refuses_what_it_cannot_keep_and_changes_nothing() {
    let ws = workspace();
    let text =
        "version: 1\ngroups:\n  - { id: 15,   # where would this go?\n      members: [1] }\n";
    ws.write("flow.yaml", text);
    let run = ws.roster(&["fmt", "flow.yaml"]);
    assert_eq!(run.code, 1, "{}", run.transcript());
    assert!(run.stderr.contains("flow.yaml:3:"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("keeps every comment or changes nothing"),
        "{}",
        run.stderr
    );
    assert_eq!(ws.read("flow.yaml"), text);
    // An invalid file is refused with its diagnostics.
    ws.write("bad.yaml", "version: 1\ngroups:\n  - id: -3\n");
    let bad = ws.roster(&["fmt", "bad.yaml"]);
    assert_eq!(bad.code, 1, "{}", bad.transcript());
    assert!(bad.stderr.contains("bad.yaml:3:"), "{}", bad.stderr);
    assert_eq!(ws.read("bad.yaml"), "version: 1\ngroups:\n  - id: -3\n");
    // Every shipped example is formatted without losing a comment.
    for example in ["groups.yaml", "docspace.yaml", "both.yaml"] {
        std::fs::copy(repo(&format!("examples/{example}")), ws.path(example)).unwrap();
        let run = ws.roster(&["fmt", example]);
        assert_eq!(run.code, 0, "{example}: {}", run.transcript());
    }
}

/// Group names the file format does not take as `name:` (a batch reference, padding) are
/// written beside the ID; the imported file still plans to `No changes.`
#[test]
fn hostile_group_names_are_imported_beside_the_id() {
    let ws = workspace();
    let state = ws
        .read("crm.yaml")
        .replacen("name: Sales", "name: \"Budget $total\"", 1)
        .replacen("name: Engineering", "name: \" Padded \"", 1);
    ws.write("crm.yaml", &state);
    let text = import_then_plan(&ws, "sandbox:crm.yaml", "imported.yaml");
    assert!(text.contains("- id: 42  # Budget $total\n"), "{text}");
    assert!(text.contains("- id: 27  # Padded\n"), "{text}");
}

/// fmt writes through a symbolic link, and `plan --out` never overwrites a file that is not a
/// plan file.
#[test]
fn files_are_written_through_links_and_never_over_the_desired_state() {
    let ws = workspace();
    ws.write(
        "team.yaml",
        "version: 1\ngroups:\n  - id: 15\n    members: [21, 10]\n",
    );
    std::os::unix::fs::symlink("team.yaml", ws.path("link.yaml")).unwrap();
    let run = ws.roster(&["fmt", "link.yaml"]);
    assert_eq!(run.code, 0, "{}", run.transcript());
    assert!(
        std::fs::symlink_metadata(ws.path("link.yaml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        ws.read("team.yaml"),
        "version: 1\ngroups:\n  - id: 15\n    members:\n      - 10\n      - 21\n"
    );
    let before = ws.read("team.yaml");
    let out = ws.roster(&[
        "plan",
        "team.yaml",
        "--portal=sandbox:crm.yaml",
        "--out",
        "team.yaml",
    ]);
    assert_eq!(out.code, 1, "{}", out.transcript());
    assert!(
        out.stderr.contains("is not a roster plan file"),
        "{}",
        out.stderr
    );
    assert_eq!(ws.read("team.yaml"), before);
    let json_diff = ws.roster(&[
        "plan",
        "team.yaml",
        "--portal=sandbox:crm.yaml",
        "--format=json",
        "--diff",
    ]);
    assert_eq!(json_diff.code, 1, "{}", json_diff.transcript());
}
