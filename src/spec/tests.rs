//! Data-driven tests of spec parsing: each case is YAML in, parsed state or diagnostics out.

use super::parse;

/// The outcome of parsing `yaml`: one line per group, or the diagnostics.
fn render(yaml: &str) -> String {
    match parse("groups.yaml", yaml) {
        Ok(state) => {
            let mut out = String::new();
            for g in state.groups.values() {
                let members: Vec<String> =
                    g.members.iter().map(|(u, r)| format!("{u}:{r}")).collect();
                out.push_str(&format!(
                    "group {} name={:?} owner={:?} prune={} line={} members=[{}]\n",
                    g.id,
                    g.name,
                    g.owner.map(|o| o.0),
                    g.prune,
                    g.line,
                    members.join(" ")
                ));
            }
            out
        }
        Err(diags) => format!("{diags}\n"),
    }
}

fn check(yaml: &str, expected: &str) {
    let actual = render(yaml);
    assert_eq!(
        actual.trim_end(),
        expected.trim_end(),
        "\n--- yaml ---\n{yaml}"
    );
}

#[test]
fn full_group() {
    check(
        "version: 1
groups:
  - id: 15
    name: Marketing
    owner: 1
    moderators: [10]
    members: [21, 22]
  - id: 7
    prune: false
",
        "group 7 name=None owner=None prune=false line=8 members=[]
group 15 name=Some(\"Marketing\") owner=Some(1) prune=true line=3 members=[10:moderator 21:member 22:member]",
    );
}

#[test]
fn empty_groups_is_valid() {
    check("version: 1\ngroups: []\n", "");
    check("version: 1\ngroups:\n", "");
}

#[test]
fn all_errors_at_once() {
    check(
        "version: 1
groups:
  - id: 15
    members: [21, -3, abc]
    colour: blue
  - id: 0
  - id: 15
    moderators: [4]
    members: [4]
",
        "groups.yaml:4:19: groups[0].members[1]: user ID must be a positive integer, found -3
groups.yaml:4:23: groups[0].members[2]: user ID must be a positive integer, found \"abc\"
groups.yaml:5:5: groups[0].colour: unknown field `colour`; expected one of: id, name, owner, moderators, members, prune
groups.yaml:6:9: groups[1].id: group ID must be a positive integer, found 0
groups.yaml:7:9: groups[2].id: duplicate group 15: already declared on line 3
groups.yaml:9:15: groups[2].members[0]: user 4 is listed twice in this group (first under `moderators` on line 8)",
    );
}

#[test]
fn duplicate_group() {
    check(
        "version: 1
groups:
  - id: 15
  - id: 15
",
        "groups.yaml:4:9: groups[1].id: duplicate group 15: already declared on line 3",
    );
}

#[test]
fn owner_listed_as_member_is_a_duplicate() {
    check(
        "version: 1
groups:
  - id: 15
    owner: 1
    members: [1]
",
        "groups.yaml:5:15: groups[0].members[0]: user 1 is listed twice in this group (first under `owner` on line 4)",
    );
}

#[test]
fn wrong_types() {
    check(
        "version: 1
groups:
  - id: \"15\"
    name: [a]
    prune: yes
    members: 21
  - 42
",
        "groups.yaml:3:9: groups[0].id: group ID must be a positive integer, found \"15\"
groups.yaml:4:11: groups[0].name: expected a string, found a list
groups.yaml:5:12: groups[0].prune: expected true or false, found \"yes\"
groups.yaml:6:14: groups[0].members: expected a list of user IDs, found 21
groups.yaml:7:5: groups[1]: expected a mapping, found 42",
    );
}

#[test]
fn version_checks() {
    check(
        "version: 2\ngroups: []\n",
        "groups.yaml:1:10: version: unsupported version 2; this roster understands version 1",
    );
    check(
        "groups: []\n",
        "groups.yaml:1:1: missing field `version` (expected `version: 1`)",
    );
    check("version: 1\n", "groups.yaml:1:1: missing field `groups`");
    check(
        "version: 1\ngroups: []\nextra: 1\n",
        "groups.yaml:3:1: extra: unknown field `extra`; expected one of: version, groups",
    );
}

#[test]
fn missing_id() {
    check(
        "version: 1\ngroups:\n  - name: x\n",
        "groups.yaml:3:5: groups[0]: missing field `id` (the workgroup ID)",
    );
}

#[test]
fn syntax_and_shape_errors() {
    check(
        "",
        "groups.yaml:1:1: the file is empty: expected `version: 1` and `groups:`",
    );
    check(
        "[1, 2]\n",
        "groups.yaml:1:1: expected a mapping, found a list",
    );
    let out = render("version: 1\ngroups: [\n");
    assert!(out.starts_with("groups.yaml:3:1: invalid YAML:"), "{out}");
    let dup = render("version: 1\nversion: 1\ngroups: []\n");
    assert!(
        dup.starts_with("groups.yaml:2:1: invalid YAML: duplicated key"),
        "{dup}"
    );
}

#[test]
fn duplicates_are_found_in_groups_with_other_errors() {
    check(
        "version: 1
groups:
  - id: 15
  - id: 15
    members: [7, 7]
  - name: no id
    members: [0]
",
        "groups.yaml:4:9: groups[1].id: duplicate group 15: already declared on line 3
groups.yaml:5:18: groups[1].members[1]: user 7 is listed twice in this group (first under `members` on line 5)
groups.yaml:6:5: groups[2]: missing field `id` (the workgroup ID)
groups.yaml:7:15: groups[2].members[0]: user ID must be a positive integer, found 0",
    );
}

#[test]
fn numbers_are_quoted_as_written() {
    check(
        "version: 1
groups:
  - id: 99999999999999999999999
    members: [1e3, 2.5, 0x10]
  - id: -1e3	# a comment after a tab
  - id: 0o17
  - id: 15
",
        "groups.yaml:3:9: groups[0].id: group ID must be a positive integer, found 99999999999999999999999
groups.yaml:4:15: groups[0].members[0]: user ID must be a positive integer, found 1e3
groups.yaml:4:20: groups[0].members[1]: user ID must be a positive integer, found 2.5
groups.yaml:5:9: groups[1].id: group ID must be a positive integer, found -1e3
groups.yaml:7:9: groups[3].id: duplicate group 15: already declared on line 6",
    );
}
