//! Data-driven tests of spec parsing: each case is YAML in, parsed state or diagnostics out.

use super::{GroupRef, MAX_DIAGNOSTICS, MAX_FILE_BYTES, parse, parse_bytes, position_is_inside};
use crate::model::{AddWith, GroupId, Role, System, Uuid};

/// The outcome of parsing `yaml`: one line per group, or the diagnostics.
fn render(yaml: &str) -> String {
    match parse("groups.yaml", yaml) {
        Ok(state) => {
            let mut out = String::new();
            for g in &state.groups {
                let members: Vec<String> = g
                    .users()
                    .filter(|(r, _)| *r != Role::Owner)
                    .map(|(r, u)| format!("{}:{r}", u.value))
                    .collect();
                let group = match &g.group.value {
                    GroupRef::Id(id) => id.to_string(),
                    GroupRef::Name(n) => format!("{n:?}"),
                };
                out.push_str(&format!(
                    "group {group} name={:?} owner={:?} prune={:?} line={} members=[{}]\n",
                    g.name.as_ref().map(|n| &n.value),
                    g.owner.as_ref().map(|o| o.value.to_string()),
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
        "group 15 name=Some(\"Marketing\") owner=Some(\"1\") prune=None line=3 members=[10:moderator 21:member 22:member]
group 7 name=None owner=None prune=Some(false) line=8 members=[]",
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
        "groups.yaml:4:19: groups[0].members[1]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found -3
groups.yaml:4:23: groups[0].members[2]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"abc\"
groups.yaml:5:5: groups[0].colour: unknown field `colour`; expected one of: id, name, owner, moderators, members, prune, protected, limits, add_with, invite_message, manager, portal
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
        "groups.yaml:3:9: groups[0].id: a group ID is a positive integer (Bitrix24) or a UUID such as 3f2b6c1e-8d4a-4e7b-9c0d-1a2b3c4d5e6f (DocSpace), found \"15\"
groups.yaml:4:11: groups[0].name: expected a string, found a list
groups.yaml:5:12: groups[0].prune: expected true or false, found \"yes\"
groups.yaml:6:14: groups[0].members: expected a list of users (IDs or e-mail addresses), found 21
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
        "groups.yaml:3:1: extra: unknown field `extra`; expected one of: version, protected, limits, add_with, invite_message, portals, groups",
    );
}

#[test]
fn missing_id() {
    check(
        "version: 1\ngroups:\n  - prune: true\n",
        "groups.yaml:3:5: groups[0]: missing field `id` or `name` (the workgroup ID, or its exact name on the portal)",
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
    check(
        "version: 1\nversion: 1\ngroups: []\n",
        "groups.yaml:2:1: version: field `version` is given twice (first on line 1)",
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
groups.yaml:7:15: groups[2].members[0]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found 0",
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
groups.yaml:4:15: groups[0].members[0]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found 1e3
groups.yaml:4:20: groups[0].members[1]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found 2.5
groups.yaml:5:9: groups[1].id: group ID must be a positive integer, found -1e3
groups.yaml:7:9: groups[3].id: duplicate group 15: already declared on line 6",
    );
}

// ---- users by e-mail, groups by name, invitations ----

#[test]
fn users_by_email_and_groups_by_name() {
    check(
        "version: 1
groups:
  - name: Marketing
    owner: anna@example.com
    moderators: [Bob@Example.COM]
    members: [21, \"c.d+tag@sub.example.org\"]
  - id: 16
    name: Sales
",
        "group \"Marketing\" name=Some(\"Marketing\") owner=Some(\"anna@example.com\") prune=None line=3 members=[Bob@Example.COM:moderator 21:member c.d+tag@sub.example.org:member]
group 16 name=Some(\"Sales\") owner=None prune=None line=7 members=[]",
    );
}

#[test]
fn references_keep_their_positions() {
    let spec = parse(
        "f.yaml",
        "version: 1\nprotected: [x@y]\ngroups:\n  - name: M\n    owner: 3\n    members: [7, a@b]\n",
    )
    .unwrap();
    let g = &spec.groups[0];
    let at =
        |l: &super::Located<super::UserRef>| format!("{}:{} {}", l.at.line, l.at.column, l.at.path);
    assert_eq!(at(&spec.protected[0]), "2:13 protected[0]");
    assert_eq!(at(g.owner.as_ref().unwrap()), "5:12 groups[0].owner");
    assert_eq!(at(&g.members[1]), "6:18 groups[0].members[1]");
    assert_eq!(
        format!(
            "{}:{} {}",
            g.group.at.line, g.group.at.column, g.group.at.path
        ),
        "4:11 groups[0].name"
    );
    let d = spec.diagnostic(&g.members[1].at, "m".to_owned());
    assert_eq!(d.to_string(), "f.yaml:6:18: groups[0].members[1]: m");
    assert_eq!(spec.memberships(), 3);
}

#[test]
fn bad_emails_are_located_with_the_reason() {
    let long = format!("{}@example.com", "a".repeat(243));
    assert_eq!(long.chars().count(), 255);
    check(
        &format!(
            "version: 1
groups:
  - id: 1
    members: [anna, a@b@c, \"@x\", \"x@\", \"a b@c\", \"a@b\\tc\", \"21\", {long}]
    owner: \"\"
  - id: 2
    members: [{}]
",
            &long[1..]
        ),
        &format!("groups.yaml:4:15: groups[0].members[0]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"anna\"
groups.yaml:4:21: groups[0].members[1]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"a@b@c\" (an e-mail address has exactly one @)
groups.yaml:4:28: groups[0].members[2]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"@x\" (an e-mail address needs a name before the @ and a domain after it)
groups.yaml:4:34: groups[0].members[3]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"x@\" (an e-mail address needs a name before the @ and a domain after it)
groups.yaml:4:40: groups[0].members[4]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"a b@c\" (an e-mail address has no spaces or control characters)
groups.yaml:4:49: groups[0].members[5]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"a@b\\tc\" (an e-mail address has no spaces or control characters)
groups.yaml:4:59: groups[0].members[6]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"21\"
groups.yaml:4:65: groups[0].members[7]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"{}\"… (255 characters) (an e-mail address has at most 254 characters)
groups.yaml:5:12: groups[0].owner: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"\"", "a".repeat(40)),
    );
    // 254 characters is the most, and is accepted.
    assert_eq!(super::email_problem(&long[1..]), None);
    assert_eq!(super::email_problem("a@b"), None);
    assert!(super::email_problem("a\u{7}@b").is_some());
}

#[test]
fn the_same_email_twice_is_a_duplicate_in_any_case() {
    check(
        "version: 1
protected: [a@x.org, A@X.org]
groups:
  - id: 15
    owner: anna@example.com
    moderators: [ANNA@example.com]
    members: [7, 7]
    protected: [b@y, B@Y]
",
        "groups.yaml:2:22: protected[1]: user A@X.org is listed twice in `protected` (first on line 2)
groups.yaml:6:18: groups[0].moderators[0]: user ANNA@example.com is listed twice in this group (first under `owner` on line 5)
groups.yaml:7:18: groups[0].members[1]: user 7 is listed twice in this group (first under `members` on line 7)
groups.yaml:8:22: groups[0].protected[1]: user B@Y is listed twice in `protected` (first on line 8)",
    );
}

#[test]
fn groups_need_an_id_or_a_name_and_are_declared_once() {
    check(
        "version: 1
groups:
  - name: Sales
  - name: Sales
  - id: 15
    name: Sales
  - id: 15
    name: Other
  - name: \"\"
  - name: \"  \"
  - members: [1]
",
        "groups.yaml:4:11: groups[1].name: duplicate group \"Sales\": already declared on line 3
groups.yaml:7:9: groups[3].id: duplicate group 15: already declared on line 5
groups.yaml:9:11: groups[4].name: a group name must not be empty
groups.yaml:10:11: groups[5].name: a group name must not be empty
groups.yaml:11:5: groups[6]: missing field `id` or `name` (the workgroup ID, or its exact name on the portal)",
    );
    // A group given by ID may carry a name that another group (by ID) also has: names are
    // not unique on a portal.
    check(
        "version: 1\ngroups:\n  - {id: 1, name: Team}\n  - {id: 2, name: Team}\n",
        "group 1 name=Some(\"Team\") owner=None prune=None line=3 members=[]
group 2 name=Some(\"Team\") owner=None prune=None line=4 members=[]",
    );
}

#[test]
fn add_with_invite_message_and_prune_are_read_as_written() {
    let spec = parse(
        "f.yaml",
        "version: 1
add_with: invite
invite_message: \"Welcome\"
groups:
  - id: 1
  - id: 2
    add_with: add
    invite_message: Hi
    prune: true
  - id: 3
    prune: false
",
    )
    .unwrap();
    assert_eq!(spec.add_with, Some(AddWith::Invite));
    assert_eq!(spec.invite_message.as_deref(), Some("Welcome"));
    let got: Vec<_> = spec
        .groups
        .iter()
        .map(|g| (g.add_with, g.invite_message.as_deref(), g.prune))
        .collect();
    assert_eq!(
        got,
        [
            (None, None, None),
            (Some(AddWith::Add), Some("Hi"), Some(true)),
            (None, None, Some(false))
        ]
    );
    let long = "x".repeat(super::MAX_TEXT_CHARS + 1);
    check(
        &format!(
            "version: 1\nadd_with: email\ninvite_message: [a]\ngroups:\n  - id: 1\n    add_with: true\n    invite_message: {long}\n"
        ),
        "groups.yaml:2:11: add_with: expected `add` or `invite`, found \"email\"
groups.yaml:3:17: invite_message: expected a string, found a list
groups.yaml:6:15: groups[0].add_with: expected `add` or `invite`, found true
groups.yaml:7:21: groups[0].invite_message: the text has 2001 characters; at most 2000 are allowed",
    );
}

// ---- limits and protected users ----

/// The parsed `protected:` and `limits:` of the file and of each group, or the diagnostics.
fn render_safety(yaml: &str) -> String {
    match parse("groups.yaml", yaml) {
        Ok(state) => {
            let mut out = format!(
                "top protected={:?} limits={:?}\n",
                state
                    .protected
                    .iter()
                    .map(|u| u.value.to_string())
                    .collect::<Vec<_>>(),
                state.limits
            );
            for g in &state.groups {
                out.push_str(&format!(
                    "group {:?} protected={:?} limits={:?}\n",
                    g.group.value,
                    g.protected
                        .iter()
                        .map(|u| u.value.to_string())
                        .collect::<Vec<_>>(),
                    g.limits
                ));
            }
            out
        }
        Err(diags) => format!("{diags}\n"),
    }
}

fn check_safety(yaml: &str, expected: &str) {
    let actual = render_safety(yaml);
    assert_eq!(
        actual.trim_end(),
        expected.trim_end(),
        "\n--- yaml ---\n{yaml}"
    );
}

#[test]
fn limits_and_protected_are_read_with_their_lines() {
    check_safety(
        "version: 1
protected: [7, 3]
limits:
  max_removals: 10%
  max_total_removals: 50
  allow_empty: false
groups:
  - id: 15
    protected: [10]
    limits: { max_removals: 5, allow_empty: true }
  - id: 16
    limits:
      max_removals: 100 %
",
        "top protected=[\"7\", \"3\"] limits=Limits { max_removals: Some(Setting { value: Percent(10), line: 4 }), allow_empty: Some(Setting { value: false, line: 6 }), max_total_removals: Some(Setting { value: Count(50), line: 5 }) }
group Id(Num(15)) protected=[\"10\"] limits=Limits { max_removals: Some(Setting { value: Count(5), line: 10 }), allow_empty: Some(Setting { value: true, line: 10 }), max_total_removals: None }
group Id(Num(16)) protected=[] limits=Limits { max_removals: Some(Setting { value: Percent(100), line: 13 }), allow_empty: None, max_total_removals: None }",
    );
    check_safety(
        "version: 1\ngroups: []\n",
        "top protected=[] limits=Limits { max_removals: None, allow_empty: None, max_total_removals: None }",
    );
    // Zero is a limit too: no removals at all.
    check_safety(
        "version: 1\nlimits: { max_removals: 0, max_total_removals: 0% }\ngroups: []\n",
        "top protected=[] limits=Limits { max_removals: Some(Setting { value: Count(0), line: 2 }), allow_empty: None, max_total_removals: Some(Setting { value: Percent(0), line: 2 }) }",
    );
}

#[test]
fn bad_limits_and_protected_are_located() {
    check_safety(
        "version: 1
protected: [0, 4, 4]
limits:
  max_removals: 101%
  max_total_removals: -1
  allow_empty: yes
  max_deletes: 3
groups:
  - id: 15
    protected: 5
    limits:
      max_removals: 2.5%
      max_total_removals: 10%
  - id: 16
    limits: { max_removals: lots, allow_empty: 1 }
  - id: 17
    limits: 25%
",
        "groups.yaml:2:13: protected[0]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found 0
groups.yaml:2:19: protected[2]: user 4 is listed twice in `protected` (first on line 2)
groups.yaml:4:17: limits.max_removals: expected a count (such as 5) or a percent from 0% to 100% (such as 25%), found \"101%\"
groups.yaml:5:23: limits.max_total_removals: expected a count (such as 5) or a percent from 0% to 100% (such as 25%), found -1
groups.yaml:6:16: limits.allow_empty: expected true or false, found \"yes\"
groups.yaml:7:3: limits.max_deletes: unknown field `max_deletes`; expected one of: max_removals, allow_empty, max_total_removals
groups.yaml:10:16: groups[0].protected: expected a list of users (IDs or e-mail addresses), found 5
groups.yaml:12:21: groups[0].limits.max_removals: expected a count (such as 5) or a percent from 0% to 100% (such as 25%), found \"2.5%\"
groups.yaml:13:27: groups[0].limits.max_total_removals: `max_total_removals` limits the whole run: set it in the top-level `limits:`
groups.yaml:15:29: groups[1].limits.max_removals: expected a count (such as 5) or a percent from 0% to 100% (such as 25%), found \"lots\"
groups.yaml:15:48: groups[1].limits.allow_empty: expected true or false, found 1
groups.yaml:17:13: groups[2].limits: expected a mapping, found \"25%\"",
    );
}

// ---- hostile input ----

/// Diagnostics of `bytes` as text, checking on the way that each lies inside the input.
fn diagnose(bytes: &[u8]) -> String {
    match parse_bytes("h.yaml", bytes) {
        Ok(_) => "ok".to_owned(),
        Err(diags) => {
            if bytes.len() <= MAX_FILE_BYTES {
                for d in &diags.shown {
                    assert!(
                        position_is_inside(bytes, d.line, d.column),
                        "{d} is outside"
                    );
                }
            }
            diags.to_string()
        }
    }
}

/// Run `f` and assert it took less than `secs` (generous: debug builds on a shared machine).
fn within<T>(secs: u64, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    let took = started.elapsed();
    assert!(took.as_secs() < secs, "took {took:?}, over {secs} s");
    out
}

#[test]
fn many_errors_are_capped_and_fast() {
    // 40,000 numeric errors took 9.2 s (quadratic) before.
    let yaml = format!(
        "version: 1\ngroups:\n  - id: 15\n    members: [{}]\n",
        vec!["0"; 40_000].join(", ")
    );
    let diags = within(5, || parse("h.yaml", &yaml)).unwrap_err();
    assert_eq!(diags.shown.len(), MAX_DIAGNOSTICS);
    assert_eq!(diags.total(), 40_000);
    assert_eq!(diags.shown[0].column, 15);
    assert_eq!(diags.shown[99].path, "groups[0].members[99]");
    let text = diags.to_string();
    assert!(
        text.ends_with("\n… and 39900 more problem(s)"),
        "{}",
        &text[text.len() - 80..]
    );
}

#[test]
fn the_first_errors_in_file_order_are_kept() {
    // Groups' duplicate users are found after their fields: order is by position, not by when.
    let mut yaml = "version: 1\ngroups:\n".to_owned();
    for i in 1..=150 {
        yaml.push_str(&format!("  - id: {i}\n    members: [5, 5, 0]\n"));
    }
    let diags = parse("h.yaml", &yaml).unwrap_err();
    assert_eq!(diags.total(), 300);
    let lines: Vec<(usize, usize)> = diags.shown.iter().map(|d| (d.line, d.column)).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
    assert_eq!(lines.last(), Some(&(102, 21)));
}

#[test]
fn a_file_of_max_size_full_of_errors_is_bounded() {
    let mut yaml = String::from("version: 1\ngroups:\n  - id: 15\n    members: [0");
    while yaml.len() < MAX_FILE_BYTES - 8 {
        yaml.push_str(", 0");
    }
    yaml.push_str("]\n");
    // About 3.5 million errors: ~10 s unoptimised on a busy machine. The bound is there to
    // catch a quadratic blow-up (hours at this size), not to time the parser: 60 s, since a
    // test run beside other builds took 36 s once.
    let diags = within(60, || parse("h.yaml", &yaml)).unwrap_err();
    assert_eq!(diags.shown.len(), MAX_DIAGNOSTICS);
    assert!(diags.total() > 3_000_000);
}

#[test]
fn oversized_files_are_refused_without_parsing() {
    let big = vec![b'#'; MAX_FILE_BYTES + 1];
    let out = within(1, || diagnose(&big));
    assert_eq!(
        out,
        "h.yaml:1:1: the file is larger than 10 MiB (spec::MAX_FILE_BYTES), the most roster reads"
    );
    // Exactly the limit is read.
    let mut at_limit = b"version: 1\ngroups: []\n".to_vec();
    at_limit.resize(MAX_FILE_BYTES, b'\n');
    assert_eq!(diagnose(&at_limit), "ok");
}

#[test]
fn non_utf8_is_located_at_the_first_bad_byte() {
    assert_eq!(
        diagnose(b"version: 1\ngroups:\n  - id: 15\n    name: caf\xe9\n"),
        "h.yaml:4:14: the file is not valid UTF-8 (byte 0xE9); roster reads UTF-8 only"
    );
    // Columns count characters, not bytes.
    assert_eq!(
        diagnose(
            "name: é"
                .as_bytes()
                .iter()
                .chain(b"\xff")
                .copied()
                .collect::<Vec<_>>()
                .as_slice()
        ),
        "h.yaml:1:8: the file is not valid UTF-8 (byte 0xFF); roster reads UTF-8 only"
    );
    assert_eq!(
        diagnose(b"\xff\xfev\x00"),
        "h.yaml:1:1: the file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
    );
}

#[test]
fn a_utf8_bom_is_accepted() {
    assert_eq!(diagnose(b"\xef\xbb\xbfversion: 1\ngroups: []\n"), "ok");
}

#[test]
fn text_from_the_file_is_escaped_in_messages() {
    let out = diagnose(b"version: 1\ngroups: []\n\"\\e]0;pwned\\a\\e[31mred\\u202e\": 1\n");
    assert_eq!(
        out,
        "h.yaml:3:1: \\u{1b}]0;pwned\\u{7}\\u{1b}[31mred\\u{202e}: unknown field `\\u{1b}]0;pwned\\u{7}\\u{1b}[31mred\\u{202e}`; expected one of: version, protected, limits, add_with, invite_message, portals, groups"
    );
    assert!(!out.chars().any(|c| c.is_control()));
    // Names and other strings are quoted with escapes.
    let out = diagnose(b"version: 1\ngroups:\n  - id: \"\\e[2J\"\n");
    assert_eq!(
        out,
        "h.yaml:3:9: groups[0].id: a group ID is a positive integer (Bitrix24) or a UUID such as 3f2b6c1e-8d4a-4e7b-9c0d-1a2b3c4d5e6f (DocSpace), found \"\\u{1b}[2J\""
    );
    // And so is the file name.
    let d = parse("evil\x1b[2J.yaml", "").unwrap_err();
    assert!(d.to_string().starts_with("evil\\u{1b}[2J.yaml:1:1:"), "{d}");
}

#[test]
fn aliases_are_refused_not_expanded() {
    // A billion laughs: nine levels of ten aliases each.
    let mut yaml = "version: 1\nbomb:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
    for (prev, cur) in ('a'..='h').zip('b'..='i') {
        yaml.push_str(&format!(
            "  {cur}: &{cur} [{}]\n",
            vec![format!("*{prev}"); 10].join(", ")
        ));
    }
    yaml.push_str("groups: *i\n");
    let out = within(5, || diagnose(yaml.as_bytes()));
    assert_eq!(
        out,
        "h.yaml:2:1: bomb: unknown field `bomb`; expected one of: version, protected, limits, add_with, invite_message, portals, groups
h.yaml:12:9: groups: expected a list of groups, found an alias (aliases are not supported in roster files)"
    );
}

#[test]
fn deep_nesting_is_refused_early() {
    let flow = format!(
        "version: 1\ngroups: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    // The parser stops flow nesting itself, at 255 levels.
    assert_eq!(
        within(5, || diagnose(flow.as_bytes())),
        "h.yaml:2:264: invalid YAML: recursion limit exceeded"
    );
    let maps = format!(
        "version: 1\ngroups: {}1{}\n",
        "{a: ".repeat(10_000),
        "}".repeat(10_000)
    );
    assert_eq!(
        within(5, || diagnose(maps.as_bytes())),
        "h.yaml:2:133: nested more than 32 levels deep; a roster file needs 4"
    );
    // Block nesting has no parser limit of its own: `- - - …` on one line, 5 MiB deep.
    let mut block = "version: 1\ngroups:\n".to_owned();
    block.push_str(&"- ".repeat(MAX_FILE_BYTES / 2 - 16));
    block.push_str("x\n");
    assert_eq!(
        within(5, || diagnose(block.as_bytes())),
        "h.yaml:3:63: nested more than 32 levels deep; a roster file needs 4"
    );
}

#[test]
fn huge_numbers_are_quoted_briefly() {
    let nines = "9".repeat(400);
    let out = diagnose(
        format!("version: 1\ngroups:\n  - id: 1e999999\n  - id: {nines}\n  - id: -{nines}\n")
            .as_bytes(),
    );
    assert_eq!(
        out,
        "h.yaml:3:9: groups[0].id: group ID must be a positive integer, found 1e999999
h.yaml:4:9: groups[1].id: group ID must be a positive integer, found 9999999999999999999999999999999999999999… (400 characters)
h.yaml:5:9: groups[2].id: group ID must be a positive integer, found -999999999999999999999999999999999999999… (401 characters)"
    );
    let long = "x".repeat(1000);
    let out = diagnose(format!("version: 1\ngroups:\n  - id: 1\n    name: [{long}]\n").as_bytes());
    assert!(out.ends_with("found a list"), "{out}");
    let out = diagnose(format!("version: 1\ngroups:\n  - id: {long}\n").as_bytes());
    assert!(
        out.ends_with(&format!("found \"{}\"… (1000 characters)", "x".repeat(40))),
        "{out}"
    );
}

#[test]
fn tabs_duplicate_keys_and_documents_are_clear() {
    assert_eq!(
        diagnose(b"version: 1\ngroups:\n\t- id: 15\n"),
        "h.yaml:3:2: invalid YAML: tabs disallowed within this context (block indentation)"
    );
    assert_eq!(
        diagnose(
            b"version: 1\ngroups:\n  - id: 15\n    id: 16\n    members: []\n    members: [1]\n"
        ),
        "h.yaml:4:5: groups[0].id: field `id` is given twice (first on line 3)
h.yaml:6:5: groups[0].members: field `members` is given twice (first on line 5)"
    );
    assert_eq!(
        diagnose(b"version: 1\ngroups: []\n---\nversion: 1\n"),
        "h.yaml:3:1: expected one YAML document, found several"
    );
    assert_eq!(
        diagnose(b"version: 1\ngroups: [!!int abc, ? [1]]\n"),
        "h.yaml:2:10: groups[0]: expected a mapping, found a value that does not fit its tag !!int
h.yaml:2:21: groups[1]: missing field `id` or `name` (the workgroup ID, or its exact name on the portal)
h.yaml:2:23: groups[1]: expected a field name, found a list"
    );
}

#[test]
fn a_valid_file_of_a_mebibyte_is_quick() {
    let mut yaml = "version: 1\ngroups:\n".to_owned();
    let members: Vec<String> = (2..500).map(|u| u.to_string()).collect();
    let members = members.join(", ");
    let mut id = 0;
    while yaml.len() < 1024 * 1024 {
        id += 1;
        yaml.push_str(&format!("  - id: {id}\n    members: [{members}]\n"));
    }
    let state = within(5, || parse("h.yaml", &yaml)).unwrap();
    assert_eq!(state.groups.len(), id);
}

// ---- mutated files ----

/// A mutation of a file: what is done where (positions are taken modulo the length).
#[derive(Debug, Clone)]
enum Mutation {
    DeleteByte(usize),
    DuplicateLine(usize),
    DeleteLine(usize),
    Insert(usize, &'static str),
    SetByte(usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let punct = prop::sample::select(vec![
        "[",
        "]",
        "{",
        "}",
        ":",
        ": ",
        "- ",
        ",",
        "\"",
        "'",
        "&a ",
        "*a",
        "!!int ",
        "? ",
        "|",
        ">",
        "#",
        "\t",
        "\n",
        "\r",
        "  ",
        "---\n",
        "%",
        "\u{feff}",
        "\u{1b}",
        "é",
        "\u{0}",
        "99999999999999999999",
        "-1",
        "1e999",
        "~",
        "null",
    ]);
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteByte),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), punct).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        let lines = |b: &[u8]| -> Vec<(usize, usize)> {
            let mut out = Vec::new();
            let mut start = 0;
            for (i, &c) in b.iter().enumerate() {
                if c == b'\n' {
                    out.push((start, i + 1));
                    start = i + 1;
                }
            }
            out.push((start, b.len()));
            out
        };
        match *m {
            Mutation::DeleteByte(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Mutation::DuplicateLine(i) => {
                let ls = lines(&bytes);
                let (s, e) = ls[i % ls.len()];
                let line = bytes[s..e].to_vec();
                bytes.splice(s..s, line);
            }
            Mutation::DeleteLine(i) => {
                let ls = lines(&bytes);
                let (s, e) = ls[i % ls.len()];
                bytes.drain(s..e);
            }
            Mutation::Insert(i, s) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, s.bytes());
            }
            Mutation::SetByte(i, b) if !bytes.is_empty() => bytes[i % len] = b,
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            _ => {}
        }
    }
    bytes
}

const EXAMPLES: [&str; 3] = [
    include_str!("../../examples/groups.yaml"),
    "version: 1
protected: [7]
limits: { max_removals: 25%, max_total_removals: 10, allow_empty: false }
groups:
  - id: 15
    name: \"Marketing\"
    owner: 1
    moderators: [10, 11]
    members:
      - 21
      - 22
    protected: [21]
    limits:
      max_removals: 5
  - {id: 16, prune: false, members: [3]}
",
    "version: 1
protected: [boss@example.com]
add_with: invite
invite_message: \"Welcome to the team\"
groups:
  - name: Marketing
    owner: anna@example.com
    moderators: [Bob@Example.com, 10]
    members: [21, c.d+tag@sub.example.org]
    add_with: add
  - id: 16
    name: Sales
    prune: true
    invite_message: Hi
",
];

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// Whatever is done to a valid file, parsing returns (no panic) and every diagnostic points
    /// inside the file.
    #[test]
    fn mutated_files_never_panic_and_errors_point_inside(
        example in 0..EXAMPLES.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let bytes = mutate(EXAMPLES[example].as_bytes().to_vec(), &mutations);
        if let Err(diags) = parse_bytes("m.yaml", &bytes) {
            prop_assert!(!diags.shown.is_empty());
            for d in &diags.shown {
                prop_assert!(
                    position_is_inside(&bytes, d.line, d.column),
                    "{} is outside {:?}", d, String::from_utf8_lossy(&bytes)
                );
                prop_assert!(!d.to_string().chars().any(|c| c.is_control()), "{}", d);
            }
        }
    }
}

#[test]
fn the_examples_are_valid() {
    for e in EXAMPLES {
        parse_bytes("e.yaml", e.as_bytes()).unwrap();
    }
}

#[test]
fn unprintable_characters_are_located_exactly() {
    // Found by `cargo fuzz` (spec_parse): the parser put this error at 1:39, past the line's
    // end (the line has 36 characters, the control character is the 30th).
    let crash: &[u8] = &[
        37, 58, 37, 58, 32, 37, 58, 32, 207, 157, 108, 207, 157, 108, 207, 157, 108, 207, 157, 108,
        115, 32, 37, 58, 32, 207, 157, 108, 207, 157, 108, 207, 157, 108, 207, 157, 108, 1, 0, 0,
        0, 0, 0, 0, 13, 115,
    ];
    assert_eq!(
        diagnose(crash),
        "h.yaml:1:30: the character U+0001 is not allowed in a YAML file (only printable characters, tab and line breaks are)"
    );
    assert_eq!(
        diagnose(b"version: 1\r\ngroups: []\r\nx: \x7f\n"),
        "h.yaml:3:4: the character U+007F is not allowed in a YAML file (only printable characters, tab and line breaks are)"
    );
}

#[test]
fn parser_positions_are_kept_inside_the_file() {
    // The parser reports the end of a file without a final newline on the next line.
    assert_eq!(
        diagnose(b"version: 1\ngroups:\n  - id: 15\n    name: x\n    m"),
        "h.yaml:5:6: invalid YAML: simple key expected"
    );
    // Found by `cargo fuzz`: an empty key after a comment at the end of the file was put on a
    // line that does not exist.
    assert_eq!(
        diagnose(b"? #[ "),
        "h.yaml:1:1: missing field `version` (expected `version: 1`)
h.yaml:1:1: missing field `groups`
h.yaml:1:6: expected a field name, found null"
    );
    let lengths = super::line_lengths("ab\r\ncd\ref\n");
    assert_eq!(lengths, [2, 2, 2, 0]);
    assert_eq!(super::clamp(&lengths, 1, 9), (1, 3));
    assert_eq!(super::clamp(&lengths, 7, 1), (4, 1));
    assert_eq!(super::clamp(&lengths, 2, 2), (2, 2));
    assert_eq!(super::clamp(&lengths, 0, 0), (4, 1));
}

/// Bitrix24's batch replaces `$result[…]`, `$next…`, `$total…`, `$time…` and `$error…`
/// inside every command after decoding, so text holding one would reach the portal changed:
/// refused where it is written. Control characters in an invitation's text are refused too.
#[test]
fn batch_references_and_control_characters_are_refused_in_text_sent_to_the_portal() {
    check(
        "version: 1
invite_message: \"Costs: $Time is money\"
groups:
  - name: \"$result[c00]\"
  - id: 2
    members: [\"$next@example.com\", ok$money@example.com]
    invite_message: \"bell\\u0007\"
  - id: 3
    invite_message: \"two\\nlines\\tand a tab, $5 and $resul\"
",
        "groups.yaml:2:17: invite_message: the text contains $Time, a Bitrix24 batch reference that the portal would replace with another command's result; reword it
groups.yaml:4:11: groups[0].name: the name contains $result, a Bitrix24 batch reference that the portal would replace with another command's result; give the group by `id:`
groups.yaml:6:15: groups[1].members[0]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found \"$next@example.com\" (it contains a `$result`, `$next`, `$total`, `$time` or `$error` reference, which Bitrix24's batch would replace; give the user by ID)
groups.yaml:7:21: groups[1].invite_message: the text has a control character (only line breaks and tabs are allowed)",
    );
}

const DS_GROUP: &str = "3f2b6c1e-8d4a-4e7b-9c0d-1a2b3c4d5e6f";
const DS_USER: &str = "c652dba3-210e-436d-b264-df5ceda0a48e";

#[test]
fn a_file_declares_portals_and_each_group_names_its_own() {
    let yaml = format!(
        "version: 1\nportals:\n  crm: {{ bitrix24: {{ url_env: CRM_HOOK }} }}\n  docs:\n    docspace: {{}}\ngroups:\n  - {{ portal: crm, id: 15, owner: 1, members: [a@x.io] }}\n  - {{ portal: docs, id: {DS_GROUP}, manager: {DS_USER}, members: [a@x.io] }}\n  - {{ portal: docs, name: Marketing }}\n  - {{ portal: crm, name: Marketing }}\n"
    );
    let spec = parse("p.yaml", &yaml).expect("valid");
    assert_eq!(spec.portals.len(), 2);
    assert_eq!(spec.portals[0].url_env, "CRM_HOOK");
    assert_eq!(spec.portals[0].key_env, None);
    assert_eq!(spec.portals[1].system, System::DocSpace);
    assert_eq!(spec.portals[1].url_env, "ROSTER_DOCS_URL");
    assert_eq!(
        spec.portals[1].key_env.as_deref(),
        Some("ROSTER_DOCS_API_KEY")
    );
    let ds = &spec.groups[1];
    assert_eq!(
        ds.group.value,
        GroupRef::Id(GroupId::Uuid(Uuid::parse(DS_GROUP).unwrap()))
    );
    assert_eq!(
        ds.owner.as_ref().unwrap().at.path.to_string(),
        "groups[1].manager"
    );
    let parts = spec.split();
    let names: Vec<(String, usize)> = parts
        .iter()
        .map(|(p, s)| (p.as_ref().unwrap().name.clone(), s.groups.len()))
        .collect();
    assert_eq!(names, [("crm".to_owned(), 2), ("docs".to_owned(), 2)]);
    // Positions keep the group's place in the whole file.
    assert_eq!(
        parts[1].1.groups[1].group.at.path.to_string(),
        "groups[2].name"
    );
}

#[test]
fn a_single_portal_file_needs_no_portal_key_and_a_plain_file_is_bitrix24() {
    let yaml = format!(
        "version: 1\nportals: {{ docs: {{ docspace: {{ key_env: DOCS_KEY }} }} }}\nprotected: [{DS_USER}, 7]\ngroups:\n  - {{ id: {DS_GROUP}, members: [{DS_USER}] }}\n"
    );
    let out = diagnose(yaml.as_bytes());
    assert_eq!(
        out,
        "h.yaml:3:51: protected[1]: 7 is a Bitrix24 user ID, and the file has no Bitrix24 portal"
    );
    let plain = parse(
        "g.yaml",
        "version: 1\ngroups:\n  - { id: 15, members: [21] }\n",
    )
    .unwrap();
    assert_eq!(plain.system_of(&plain.groups[0]), System::Bitrix24);
    assert!(matches!(plain.split().as_slice(), [(None, s)] if s.groups.len() == 1));
}

#[test]
fn each_system_takes_only_its_own_ids_and_fields() {
    let yaml = format!(
        "version: 1\nportals:\n  crm: {{ bitrix24: {{}} }}\n  docs: {{ docspace: {{}} }}\ngroups:\n  - portal: docs\n    id: 15\n    owner: {DS_USER}\n    moderators: [a@x.io]\n    members: [21]\n    add_with: invite\n  - portal: crm\n    id: {DS_GROUP}\n    manager: 1\n    members: [{DS_USER}]\n  - {{ portal: nowhere, id: 16 }}\n  - {{ id: 17 }}\n"
    );
    insta::assert_snapshot!(diagnose(yaml.as_bytes()), @r#"
    h.yaml:7:9: groups[0].id: a DocSpace group's ID is a UUID, found 15
    h.yaml:8:5: groups[0].owner: a DocSpace group has a `manager:` (its head), not an `owner:`
    h.yaml:9:5: groups[0].moderators: a DocSpace group has no moderators: only a `manager:` and `members:`
    h.yaml:10:15: groups[0].members[0]: a DocSpace user's ID is a UUID (or give the e-mail address), found 21
    h.yaml:11:5: groups[0].add_with: DocSpace adds members directly; it has no invitations to a group
    h.yaml:13:9: groups[1].id: a Bitrix24 group's ID is a number, found 3f2b6c1e-8d4a-4e7b-9c0d-1a2b3c4d5e6f
    h.yaml:14:5: groups[1].manager: a Bitrix24 workgroup has an `owner:`, not a `manager:`
    h.yaml:15:15: groups[1].members[0]: a Bitrix24 user's ID is a number (or give the e-mail address), found c652dba3-210e-436d-b264-df5ceda0a48e
    h.yaml:16:15: groups[2].portal: no portal "nowhere" in `portals:`; declared: crm, docs
    h.yaml:17:11: groups[3]: missing field `portal`: the file declares several portals (crm, docs), so each group says which it lives on
    "#);
}

#[test]
fn portals_are_checked() {
    let out = diagnose(
        b"version: 1\nportals:\n  crm: { bitrix24: {}, docspace: {} }\n  'a b': { bitrix24: {} }\n  ok: { docspace: { url_env: 1X, token: y } }\n  none: {}\ngroups: []\n",
    );
    insta::assert_snapshot!(out, @r#"
    h.yaml:3:8: portals.crm: a portal is exactly one system: `bitrix24: {…}` or `docspace: {…}`
    h.yaml:4:3: portals: a portal name is 1 to 64 letters, digits, `_` or `-`, found "a b"
    h.yaml:5:30: portals.ok.docspace.url_env: expected the name of an environment variable (letters, digits and `_`), found "1X"
    h.yaml:5:34: portals.ok.docspace.token: unknown field `token`; expected one of: url_env, key_env
    h.yaml:6:9: portals.none: a portal is exactly one system: `bitrix24: {…}` or `docspace: {…}`
    "#);
}

#[test]
fn the_nil_uuid_is_nobody_and_a_broken_portals_block_is_reported_once() {
    let out = diagnose(
        b"version: 1\nportals: { docs: { docspace: {} } }\ngroups:\n  - id: 00000000-0000-0000-0000-000000000000\n    members: [00000000-0000-0000-0000-000000000000]\n",
    );
    insta::assert_snapshot!(out, @r#"
    h.yaml:4:9: groups[0].id: the empty UUID is DocSpace's "none", not a group
    h.yaml:5:15: groups[0].members[0]: expected a user ID (a positive integer, or a UUID on DocSpace) or an e-mail address, found "00000000-0000-0000-0000-000000000000" (the empty UUID is DocSpace's "nobody")
    "#);
    let out = diagnose(
        b"version: 1\nportals: { docs: { docspace: {}, bitrix24: {} } }\ngroups:\n  - { portal: docs, name: X }\n",
    );
    insta::assert_snapshot!(out, @r"h.yaml:2:18: portals.docs: a portal is exactly one system: `bitrix24: {…}` or `docspace: {…}`");
}

#[test]
fn retain_groups_selects_by_id_name_and_portal() {
    let yaml = "version: 1\nportals:\n  crm: {bitrix24: {}}\n  docs: {docspace: {}}\ngroups:\n  - {id: 15, name: Marketing, portal: crm}\n  - {name: Sales, portal: crm}\n  - {id: 27, portal: crm}\n  - {id: 0a0d0000-0000-0000-0000-000000000001, name: Sales, portal: docs}\n";
    let names = |s: &super::Spec| -> Vec<String> {
        s.groups
            .iter()
            .map(|g| match &g.group.value {
                GroupRef::Id(id) => id.to_string(),
                GroupRef::Name(n) => n.clone(),
            })
            .collect()
    };
    let spec = parse("f.yaml", yaml).unwrap();
    let mut s = spec.clone();
    s.retain_groups(&["marketing".into(), "#27".into()])
        .unwrap();
    assert_eq!(names(&s), ["15", "27"]);
    // A name matches in every portal, unless the portal is given.
    let mut s = spec.clone();
    s.retain_groups(&["Sales".into()]).unwrap();
    assert_eq!(names(&s), ["Sales", "0a0d0000-0000-0000-0000-000000000001"]);
    let mut s = spec.clone();
    s.retain_groups(&["docs/sales".into()]).unwrap();
    assert_eq!(names(&s), ["0a0d0000-0000-0000-0000-000000000001"]);
    // A selector that matches nothing is the error, and nothing is dropped.
    let mut s = spec.clone();
    assert_eq!(
        s.retain_groups(&["15".into(), "Nope".into(), "docs/15".into()]),
        Err(vec!["Nope".to_owned(), "docs/15".to_owned()])
    );
    assert_eq!(s.groups.len(), 4);
    // No selector keeps everything.
    let mut s = spec;
    s.retain_groups(&[]).unwrap();
    assert_eq!(s.groups.len(), 4);
}
