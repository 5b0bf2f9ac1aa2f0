//! Tests of the canonical form: exact outputs, the invariants of `format` (idempotent, meaning
//! kept, every comment kept once), refusals with their positions, hostile scalars, documents
//! built as `roster import` builds them, and random files with comments (proptest).

use proptest::prelude::*;
use saphyr::Scalar;
use saphyr_parser::{Event, Parser};

use super::*;
use crate::model::{GroupId, UserId, Uuid};

/// The comments of a text, sorted.
fn comment_set(text: &str) -> Vec<String> {
    let mut c: Vec<String> = read::comments(text.strip_prefix('\u{FEFF}').unwrap_or(text))
        .expect("comments")
        .into_iter()
        .map(|c| c.text)
        .collect();
    c.sort();
    c
}

/// `format`, with its invariants checked: idempotent, the same meaning, the same comments.
fn fmt(input: &str) -> String {
    let out = match format("t.yaml", input) {
        Ok(out) => out,
        Err(e) => panic!("not formatted: {e}\n--- input\n{input}"),
    };
    let again = format("t.yaml", &out).expect("the output formats");
    assert_eq!(again, out, "not idempotent\n--- input\n{input}");
    let before = spec::parse_allowing_repeats("t.yaml", input.trim_start_matches('\u{FEFF}'))
        .expect("input");
    let after = spec::parse("t.yaml", &out).expect("output");
    assert_eq!(Meaning::of(&before), Meaning::of(&after), "meaning\n{out}");
    assert_eq!(comment_set(input), comment_set(&out), "comments\n{out}");
    out
}

fn check(input: &str, expected: &str) {
    assert_eq!(fmt(input), expected);
}

/// The refusal of a comment: (line, column, message).
fn refused_comment(input: &str) -> (usize, usize, String) {
    match format("t.yaml", input) {
        Err(FormatError::Comment {
            file,
            line,
            column,
            message,
        }) => {
            assert_eq!(file, "t.yaml");
            (line, column, message)
        }
        other => panic!("expected a comment refusal, got {other:?}"),
    }
}

fn unsupported(input: &str) -> (usize, usize) {
    match format("t.yaml", input) {
        Err(FormatError::Unsupported { line, column, .. }) => (line, column),
        other => panic!("expected an unsupported refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------- examples

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("example")
}

#[test]
fn every_roster_example_formats_and_keeps_its_comments() {
    // The sandbox files are portal states, not roster files.
    for name in ["groups.yaml", "both.yaml", "docspace.yaml"] {
        let text = example(name);
        let out = fmt(&text);
        assert_eq!(
            comment_set(&text).len(),
            text.lines().filter(|l| l.contains('#')).count(),
            "{name}"
        );
        assert!(out.ends_with('\n') && !out.ends_with("\n\n"), "{name}");
    }
}

#[test]
fn groups_example() {
    insta::assert_snapshot!(fmt(&example("groups.yaml")), @r#"
    # Desired membership for the sandbox portal in examples/sandbox.yaml.
    # Try:  cargo run -- plan examples/groups.yaml --portal sandbox:examples/sandbox.yaml
    # People are named by e-mail (case-insensitive, exact) or by user ID; groups by name or ID.
    version: 1
    groups:
      - id: 27  # by ID: the plan shows the portal's name, "Engineering"
        owner: di@example.com  # checked against the portal; changed only with --allow-owner-change
        moderators:
          - ed@example.com
        members:
          - 30  # fay, by user ID: new, added
          - gus@example.com
          - jo@example.com  # invited already, not accepted yet: left pending

      - name: Marketing  # looked up by its exact name on the portal (group 15)
        # The owner (ada@example.com) is not listed: roster never removes an owner, it reports it.
        moderators:
          - bo@example.com  # a member today: role change
        members:
          - cy@example.com
          - di@example.com  # new: added
          - ivy@example.com  # dismissed on the portal: shown, not added
        # fay@example.com is not listed: removed (prune defaults to true)

      - name: Sales
        members:
          - ed@example.com  # new: invited
        prune: false  # members not listed here are left alone
        add_with: invite  # new members are invited (they join when they accept), not added
        invite_message: "Welcome to Sales: roster manages this group."
    "#);
}

#[test]
fn docspace_example_with_portals_and_uuids() {
    check(
        &example("docspace.yaml"),
        "\
# Desired DocSpace groups for the sandbox portal in examples/docspace-sandbox.yaml:
#   roster plan examples/docspace.yaml --portal sandbox:examples/docspace-sandbox.yaml
# Against a real DocSpace, set ROSTER_DOCS_URL=https://HOST and ROSTER_DOCS_API_KEY=sk-…
# (an API key of a DocSpace administrator, or a personal access token) and run
#   roster plan examples/docspace.yaml
version: 1
portals:
  docs:
    docspace: {}  # url_env: ROSTER_DOCS_URL, key_env: ROSTER_DOCS_API_KEY (defaults)
groups:
  # Designers: Bo, its manager, is not listed and stays (a manager is never removed); Fay
  # is not listed and is removed; Di and Ed are added.
  - id: d5000000-0000-4000-8000-000000000015
    name: Designers
    members:
      - cy@example.com
      - di@example.com
      - ed@example.com

  # Writers, by name: Di stays its manager; Cy is added.
  - name: Writers
    manager: di@example.com
    members:
      - cy@example.com
      - ed@example.com
",
    );
}

// ---------------------------------------------------------------- order and layout

#[test]
fn keys_in_fixed_order_and_block_lists() {
    check(
        "\
groups:
- members: [3, 1]
  limits: {allow_empty: true, max_removals: 5}
  invite_message: Hi
  add_with: invite
  prune: false
  protected: [1]
  moderators: [2]
  owner: 9
  name: Ops
  id: 4
limits: {max_total_removals: 10%, allow_empty: false, max_removals: 25 %}
invite_message: Welcome
add_with: add
protected: [7]
version: 1
",
        "\
version: 1
protected:
  - 7
add_with: add
invite_message: Welcome
limits:
  max_removals: 25%
  allow_empty: false
  max_total_removals: 10%
groups:
  - id: 4
    name: Ops
    owner: 9
    moderators:
      - 2
    members:
      - 1
      - 3
    protected:
      - 1
    prune: false
    add_with: invite
    invite_message: Hi
    limits:
      max_removals: 5
      allow_empty: true
",
    );
}

#[test]
fn groups_sorted_by_portal_then_id_then_name() {
    check(
        "\
version: 1
portals:
  zz:
    bitrix24: {url_env: ZZ_URL}
  docs:
    docspace:
  aa:
    bitrix24: {}
groups:
  - {portal: zz, id: 10}
  - {portal: zz, name: beta}
  - {portal: zz, id: 2}
  - {portal: zz, name: Alpha}
  - {portal: docs, id: D5000000-0000-4000-8000-00000000000B}
  - {portal: docs, id: d5000000-0000-4000-8000-00000000000a}
  - {portal: aa, name: Gamma}
",
        "\
version: 1
portals:
  zz:
    bitrix24:
      url_env: ZZ_URL
  docs:
    docspace: {}
  aa:
    bitrix24: {}
groups:
  - name: Gamma
    portal: aa

  - id: d5000000-0000-4000-8000-00000000000a
    portal: docs

  - id: d5000000-0000-4000-8000-00000000000b
    portal: docs

  - id: 2
    portal: zz

  - id: 10
    portal: zz

  - name: Alpha
    portal: zz

  - name: beta
    portal: zz
",
    );
}

#[test]
fn users_sorted_ids_first_then_emails_ignoring_case() {
    check(
        "version: 1\ngroups:\n  - id: 1\n    members: [b@x.io, 10, A@x.io, 9, c@X.io, 100]\n",
        "\
version: 1
groups:
  - id: 1
    members:
      - 9
      - 10
      - 100
      - A@x.io
      - b@x.io
      - c@X.io
",
    );
}

#[test]
fn empty_lists_and_groups() {
    check("version: 1\ngroups:\n", "version: 1\ngroups: []\n");
    check(
        "version: 1\ngroups:\n- id: 1\n  members:\n  moderators: []\n",
        "version: 1\ngroups:\n  - id: 1\n    moderators: []\n    members: []\n",
    );
}

#[test]
fn document_markers_bom_and_crlf_are_not_kept() {
    check(
        "\u{FEFF}---\r\nversion: 1\r\ngroups: # all\r\n  - id: 1\r\n...\r\n",
        "version: 1\ngroups:  # all\n  - id: 1\n",
    );
}

// ---------------------------------------------------------------- repeats

#[test]
fn repeats_merge_their_comments_onto_the_user_kept() {
    check(
        "\
version: 1
protected: [7, 7]
groups:
  - id: 1
    members:
      - anna@example.com  # Anna
      - 5
      # again
      - Anna@Example.com  # Anna, twice
      - 5  # five
",
        "\
version: 1
protected:
  - 7
groups:
  - id: 1
    members:
      - 5  # five
      # again
      # Anna, twice
      - anna@example.com  # Anna
",
    );
}

#[test]
fn a_user_in_two_roles_stays_an_error() {
    let Err(FormatError::Invalid(d)) = format(
        "t.yaml",
        "version: 1\ngroups:\n  - id: 1\n    moderators: [5]\n    members: [5, 5]\n",
    ) else {
        panic!("expected diagnostics");
    };
    assert_eq!(d.shown.len(), 1, "{d}");
    assert_eq!((d.shown[0].line, d.shown[0].column), (5, 15));
    assert!(d.shown[0].message.contains("listed twice"), "{d}");
}

#[test]
fn an_invalid_file_is_refused_with_its_diagnostics() {
    let Err(e @ FormatError::Invalid(_)) = format("bad.yaml", "version: 2\ngroups:\n  - id: -1\n")
    else {
        panic!("expected diagnostics");
    };
    let text = e.to_string();
    assert!(
        text.contains("bad.yaml:1:10: version: unsupported version 2"),
        "{text}"
    );
    assert!(text.contains("bad.yaml:3:9: groups[0].id:"), "{text}");
}

// ---------------------------------------------------------------- comments kept

#[test]
fn comments_on_keys_items_and_block_ends() {
    check(
        "\
# The file's header.
# Second line.

# About the version.
version: 1  # always 1
groups:  # the groups
  # first group
  - id: 2  # two
    name: Two
    members:  # the members
      # Bo first
      - bo@example.com  # Bo
      - 4
        # deeper than the next item: the end of this list
    # the end of group two
  # before group one
  - id: 1
    members: [5, 6]  # five and six
      # the end of group one's list
  # the end of the groups
# the footer
",
        "\
# The file's header.
# Second line.

# About the version.
version: 1  # always 1
groups:  # the groups
  # before group one
  - id: 1
    members:  # five and six
      - 5
      - 6
    # the end of group one's list

  # first group
  - id: 2  # two
    name: Two
    members:  # the members
      - 4
      # Bo first
      - bo@example.com  # Bo
      # deeper than the next item: the end of this list
    # the end of group two
  # the end of the groups

# the footer
",
    );
}

#[test]
fn comments_in_a_flow_list_that_spans_lines() {
    check(
        "\
version: 1
groups:
  - id: 1
    members: [  # the team
      b@x.io,  # Bo
      # Al next
      a@x.io,
      # nobody else
    ]
    moderators: [
      9]  # nine
",
        "\
version: 1
groups:
  - id: 1
    moderators:
      - 9  # nine
    members:  # the team
      # Al next
      - a@x.io
      - b@x.io  # Bo
      # nobody else
",
    );
}

#[test]
fn comments_in_and_after_flow_mappings_on_one_line() {
    check(
        "\
version: 1
limits: {max_removals: 5}  # one limit
groups:
  - {id: 1, members: [2]}  # a whole group
  - id: 3
    limits: {max_removals: 1, allow_empty: true}  # two limits
",
        "\
version: 1
limits:  # one limit
  max_removals: 5
groups:
  - id: 1  # a whole group
    members:
      - 2

  - id: 3
    limits:  # two limits
      max_removals: 1
      allow_empty: true
",
    );
}

#[test]
fn a_comment_in_an_empty_list_stays_before_it() {
    check(
        "version: 1\ngroups:\n  - id: 1\n    members: [\n      # nobody yet\n      ]\n",
        "version: 1\ngroups:\n  - id: 1\n    # nobody yet\n    members: []\n",
    );
}

#[test]
fn comments_keep_their_text_exactly() {
    check(
        "version: 1 #tight\ngroups: []   #   spaced   \n#\n#\t\ttabs \u{2028} ünï 🎉 # again\n",
        "version: 1  #tight\ngroups: []  #   spaced\n\n#\n#\t\ttabs \u{2028} ünï 🎉 # again\n",
    );
}

#[test]
fn comments_around_portals() {
    check(
        "\
version: 1
portals:  # two systems
  # the CRM
  crm:  # Bitrix24
    bitrix24:  # defaults
  docs:
    docspace:
      key_env: DOCS_KEY  # not the default
      # the address is the default
    # nothing else
  # no third portal
groups:
  - {portal: docs, name: W}
",
        "\
version: 1
portals:  # two systems
  # the CRM
  crm:  # Bitrix24
    bitrix24: {}  # defaults
  docs:
    docspace:
      key_env: DOCS_KEY  # not the default
      # the address is the default
    # nothing else
  # no third portal
groups:
  - name: W
    portal: docs
",
    );
}

#[test]
fn block_scalars_and_quoted_scalars_hide_hashes() {
    check(
        "\
version: 1
invite_message: |  # the text
  Hello # not a comment
  'there'
groups:
  - name: 'a # b'  # c
    id: 3
  - name: \"x\\\" # y\"   # z
",
        "\
version: 1
invite_message: \"Hello # not a comment\\n'there'\\n\"  # the text
groups:
  - id: 3
    name: \"a # b\"  # c

  - name: \"x\\\" # y\"  # z
",
    );
}

// ---------------------------------------------------------------- refusals

#[test]
fn a_comment_inside_a_multi_line_flow_mapping_is_refused() {
    let (line, column, message) = refused_comment(
        "version: 1\ngroups:\n  - id: 1\n    limits: {max_removals: 5,  # five\n      allow_empty: true}\n",
    );
    assert_eq!((line, column), (4, 32));
    assert!(message.contains("flow mapping"), "{message}");
    let (line, column, _) = refused_comment(
        "version: 1\ngroups:\n  - {id: 1,\n     # the members\n     members: [2]}\n",
    );
    assert_eq!((line, column), (4, 6));
}

#[test]
fn a_comment_between_a_key_and_its_value_is_refused() {
    let (line, column, message) =
        refused_comment("version: 1\ngroups:\n  - id: 1\n    name:\n      # the name\n      Ops\n");
    assert_eq!((line, column), (5, 7));
    assert!(message.contains("between a key and its value"), "{message}");
}

#[test]
fn a_comment_on_a_line_without_a_node_is_refused() {
    let (line, column, _) = refused_comment("version: 1\ngroups:\n  - # the group\n    id: 1\n");
    assert_eq!((line, column), (3, 5));
    let (line, column, _) = refused_comment("--- # the document\nversion: 1\ngroups: []\n");
    assert_eq!((line, column), (1, 5));
}

#[test]
fn a_comment_after_items_sharing_a_line_of_a_longer_list_is_refused() {
    let (line, column, message) = refused_comment(
        "version: 1\ngroups:\n  - id: 1\n    members: [\n      1, 2,  # one and two\n      3]\n",
    );
    assert_eq!((line, column), (5, 14));
    assert!(message.contains("several list items"), "{message}");
}

#[test]
fn a_second_comment_for_one_entry_is_refused() {
    let (line, column, message) = refused_comment(
        "version: 1\ngroups:\n  - id: 1\n    members: [  # the team\n      1\n    ]  # end\n",
    );
    assert_eq!((line, column), (6, 8));
    assert!(message.contains("line 4"), "{message}");
}

#[test]
fn anchors_tags_and_directives_are_refused() {
    assert_eq!(unsupported("version: 1\ngroups:\n  - id: &g 1\n"), (3, 9));
    assert_eq!(
        unsupported("version: 1\ngroups:\n  - name: !!str Ops\n"),
        (3, 11)
    );
    assert_eq!(
        unsupported("%YAML 1.2\n---\nversion: 1\ngroups: []\n"),
        (1, 1)
    );
    // An alias is already an error of the file.
    assert!(matches!(
        format(
            "t.yaml",
            "version: 1\nprotected: &p [1]\ngroups:\n  - {id: 1, protected: *p}\n"
        ),
        Err(FormatError::Invalid(_))
    ));
}

#[test]
fn errors_name_the_file_line_and_column() {
    let e = format(
        "dir/my.yaml",
        "version: 1\ngroups:\n  - name:\n      # x\n      Ops\n",
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("dir/my.yaml:4:7: "), "{e}");
}

// ---------------------------------------------------------------- scalars

/// What a one-entry mapping `k: TEXT` and a list item `- TEXT` read back as: the string, if
/// both are strings.
fn reads_back(text: &str) -> Option<String> {
    let mut out = Vec::new();
    let docs = [
        format!("k: {text}\n"),
        format!("- {text}\n"),
        format!("{text}: 1\n"),
    ];
    for (form, doc) in docs.iter().enumerate() {
        let mut strings = Vec::new();
        for ev in Parser::new_from_str(doc) {
            let (ev, _) = ev.ok()?;
            if let Event::Scalar(v, style, _, _) = ev {
                strings.push(Scalar::parse_from_cow_and_metadata(v, style, None)?);
            }
        }
        let value = match (form, strings.as_slice()) {
            (0, [Scalar::String(k), Scalar::String(v)]) if k == "k" => v.to_string(),
            (1, [Scalar::String(v)]) => v.to_string(),
            (2, [Scalar::String(k), Scalar::Integer(1)]) => k.to_string(),
            _ => return None,
        };
        out.push(value);
    }
    out.windows(2).all(|w| w[0] == w[1]).then(|| out.remove(0))
}

#[test]
fn hostile_scalars_are_quoted_only_when_needed() {
    let cases: &[(&str, &str)] = &[
        ("Marketing", "Marketing"),
        ("Sales & Ops", "Sales & Ops"),
        ("a:b", "a:b"),
        ("a#b", "a#b"),
        ("Ünïcødé 🎉", "Ünïcødé 🎉"),
        ("yes", "\"yes\""),
        ("true", "\"true\""),
        ("Null", "\"Null\""),
        ("~", "\"~\""),
        ("123", "\"123\""),
        ("0x1F", "\"0x1F\""),
        ("1e3", "\"1e3\""),
        (".inf", "\".inf\""),
        ("a: b", "\"a: b\""),
        ("a #b", "\"a #b\""),
        ("#x", "\"#x\""),
        ("- x", "\"- x\""),
        ("-x", "\"-x\""),
        ("[x]", "\"[x]\""),
        ("{x}", "\"{x}\""),
        ("*x", "\"*x\""),
        ("&x", "\"&x\""),
        ("!x", "\"!x\""),
        ("%x", "\"%x\""),
        ("@x", "\"@x\""),
        ("`x", "\"`x\""),
        ("'x'", "\"'x'\""),
        ("\"x\"", "\"\\\"x\\\"\""),
        ("x:", "\"x:\""),
        (" lead", "\" lead\""),
        ("trail ", "\"trail \""),
        ("", "\"\""),
        ("a\\b", "a\\b"),
        ("two\nlines", "\"two\\nlines\""),
        ("tab\there", "\"tab\\there\""),
        ("bell\u{7}", "\"bell\\u0007\""),
        ("line\u{2028}sep", "\"line\\u2028sep\""),
        ("nel\u{85}", "\"nel\\u0085\""),
        ("bidi\u{202E}x", "\"bidi\\u202Ex\""),
        ("bom\u{FEFF}", "\"bom\\uFEFF\""),
        ("---", "\"---\""),
    ];
    for (value, written) in cases {
        let text = emit::scalar(value);
        assert_eq!(&text, written, "{value:?}");
        assert_eq!(
            reads_back(&text).as_deref(),
            Some(*value),
            "{value:?} as {text}"
        );
    }
}

#[test]
fn hostile_values_round_trip_through_a_file() {
    let input = "\
version: 1
invite_message: \"Hi,\\n\\tthe team: \\\"ops\\\" # not a comment\\n\"
groups:
  - name: \"true\"
  - name: \"a: b # c\"
    members: ['#odd@example.com', \"x'y@example.com\", 'a:b@example.com', 'ünï@例え.jp']
  - name: \"- Ünïcødé \\u202E\"
  - name: '123'
    id: 5
";
    let out = fmt(input);
    assert!(out.contains("  - \"#odd@example.com\"\n"), "{out}");
    assert!(out.contains("  - ünï@例え.jp\n"), "{out}");
    assert!(out.contains("name: \"- Ünïcødé \\u202E\""), "{out}");
}

proptest! {
    #[test]
    fn any_string_reads_back_as_written(s in r"\PC{0,12}|[ -~\t\n\x{85}\x{2028}\x{202E}é]{0,12}") {
        let text = emit::scalar(&s);
        prop_assert_eq!(reads_back(&text), Some(s.clone()), "{:?} as {}", s, text);
    }

    #[test]
    fn any_group_name_round_trips_through_emit(name in "[^\\x00-\\x1F\\x7F$]{1,20}") {
        prop_assume!(!name.trim().is_empty());
        let mut doc = Document::new();
        doc.groups.groups.push(Group::by_name(&name).comment(&name));
        let text = emit(&doc);
        let spec = spec::parse("t.yaml", &text).expect("parses");
        prop_assert_eq!(spec.groups[0].name.as_ref().map(|n| n.value.clone()), Some(name.clone()));
        prop_assert_eq!(format("t.yaml", &text).expect("formats"), text);
    }
}

// ---------------------------------------------------------------- documents built by import

#[test]
fn an_imported_document_emits_the_file_it_describes() {
    let mut doc = Document::new();
    doc.header = vec![comment("Imported from crm"), comment("")];
    let mut eng = Group::by_id(GroupId::Num(27)).comment("Engineering");
    eng.owner = Some(Item::email("di@example.com").comment("Di Dahl"));
    eng.members = Some(UserList::new([
        Item::email("gus@example.com").comment("Gus Gray"),
        Item::id(UserId::Num(30)).comment("Fay, no e-mail"),
        Item::email("Gus@example.com").comment("Gus again"),
    ]));
    let mut mkt = Group::by_id(GroupId::Num(15));
    mkt.name = Some(Field::new("Marketing".to_owned()).comment("the portal's name"));
    mkt.comments.trailing = Some(comment("both on one line"));
    mkt.moderators = Some(UserList::default());
    doc.groups.groups = vec![eng, mkt];
    let text = emit(&doc);
    assert_eq!(
        text,
        "\
# Imported from crm
#

version: 1
groups:
  - id: 15  # both on one line
    name: Marketing  # the portal's name
    moderators: []

  - id: 27  # Engineering
    owner: di@example.com  # Di Dahl
    members:
      - 30  # Fay, no e-mail
      # Gus again
      - gus@example.com  # Gus Gray
"
    );
    let spec = spec::parse("t.yaml", &text).expect("parses");
    assert_eq!(spec.groups.len(), 2);
    let g = &spec.groups[1];
    assert_eq!(g.group.value, spec::GroupRef::Id(GroupId::Num(27)));
    assert_eq!(
        g.owner.as_ref().map(|o| o.value.clone()),
        Some(UserRef::Email("di@example.com".into()))
    );
    let members: Vec<UserRef> = g.members.iter().map(|m| m.value.clone()).collect();
    assert_eq!(
        members,
        [
            UserRef::Id(UserId::Num(30)),
            UserRef::Email("gus@example.com".into())
        ]
    );
    assert_eq!(format("t.yaml", &text).expect("formats"), text);
}

#[test]
fn an_imported_docspace_document() {
    let uuid = |s: &str| Uuid::parse(s).expect("uuid");
    let mut doc = Document::new();
    let mut docs = Portal::new("docs", System::DocSpace);
    docs.key_env = Some(Field::new("DOCS_KEY".to_owned()));
    doc.portals = Some(Portals {
        portals: vec![docs],
        ..Portals::default()
    });
    let mut g = Group::by_id(GroupId::Uuid(uuid("D5000000-0000-4000-8000-000000000015")))
        .comment("Designers");
    g.portal = Some(Field::new("docs".to_owned()));
    g.manager = Some(Item::id(UserId::Uuid(uuid(
        "0a0d0000-0000-4000-8000-000000000010",
    ))));
    g.members = Some(UserList::new([
        Item::email("cy@example.com").comment("Cy Cole")
    ]));
    doc.groups.groups.push(g);
    let text = emit(&doc);
    assert_eq!(
        text,
        "\
version: 1
portals:
  docs:
    docspace:
      key_env: DOCS_KEY
groups:
  - id: d5000000-0000-4000-8000-000000000015  # Designers
    portal: docs
    manager: 0a0d0000-0000-4000-8000-000000000010
    members:
      - cy@example.com  # Cy Cole
"
    );
    let spec = spec::parse("t.yaml", &text).expect("parses");
    assert_eq!(spec.portals[0].key_env.as_deref(), Some("DOCS_KEY"));
    assert_eq!(spec.system_of(&spec.groups[0]), System::DocSpace);
    assert_eq!(format("t.yaml", &text).expect("formats"), text);
}

#[test]
fn comments_that_could_break_the_file_are_escaped_by_emit() {
    let mut doc = Document::new();
    doc.groups
        .groups
        .push(Group::by_id(GroupId::Num(1)).comment("Anna\nid: 2\u{7}"));
    doc.footer = vec!["no hash".to_owned()];
    let text = emit(&doc);
    assert_eq!(
        text,
        "version: 1\ngroups:\n  - id: 1  # Anna\\u{a}id: 2\\u{7}\n\n# no hash\n"
    );
    assert_eq!(
        spec::parse("t.yaml", &text).expect("parses").groups.len(),
        1
    );
}

// ---------------------------------------------------------------- random files

/// A random valid file with comments in every supported place, written in varied layouts,
/// with the text each comment must stay next to.
#[derive(Debug, Clone)]
struct Generated {
    text: String,
    /// (comment, text on its line or on the next line that is not a comment)
    near: Vec<(String, Option<String>)>,
}

struct Writer<'a> {
    dice: &'a [u8],
    roll: usize,
    text: String,
    near: Vec<(String, Option<String>)>,
    words: &'a [String],
}

impl Writer<'_> {
    fn die(&mut self, sides: u8) -> u8 {
        let d = self.dice[self.roll % self.dice.len()];
        self.roll += 1;
        d % sides
    }

    fn coin(&mut self) -> bool {
        self.die(3) == 0
    }

    fn comment(&mut self, near: Option<&str>) -> String {
        let n = self.near.len();
        let word = &self.words[n % self.words.len()];
        let c = format!("# c{n}: {word}").trim_end().to_owned();
        self.near.push((c.clone(), near.map(str::to_lowercase)));
        c
    }

    fn leading(&mut self, indent: usize, near: &str) {
        for _ in 0..self.die(3) {
            let c = self.comment(Some(near));
            self.text.push_str(&format!("{:indent$}{c}\n", ""));
        }
    }

    fn end_line(&mut self, near: Option<&str>) {
        if self.coin() {
            let c = self.comment(near);
            self.text.push_str(&format!("  {c}"));
        }
        self.text.push('\n');
    }

    /// A list of users under `key` at `indent`.
    fn users(&mut self, indent: usize, key: &str, users: &[String]) {
        self.leading(indent, &format!("{key}:"));
        let pad = "";
        match self.die(3) {
            0 if !users.is_empty() => {
                self.text
                    .push_str(&format!("{pad:indent$}{key}: [{}]", users.join(", ")));
                let near = if users.len() == 1 {
                    users[0].clone()
                } else {
                    format!("{key}:")
                };
                self.end_line(Some(&near));
            }
            _ if users.is_empty() => {
                self.text.push_str(&format!("{pad:indent$}{key}: []"));
                self.end_line(Some(&format!("{key}:")));
            }
            _ => {
                self.text.push_str(&format!("{pad:indent$}{key}:"));
                self.end_line(Some(&format!("{key}:")));
                let item = indent + if self.coin() { 0 } else { 2 };
                for u in users {
                    self.leading(item, u);
                    self.text.push_str(&format!("{pad:item$}- {u}"));
                    self.end_line(Some(u));
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct GenGroup {
    id: Option<u64>,
    name: bool,
    owner: Option<u64>,
    moderators: Vec<u8>,
    members: Vec<u8>,
    prune: Option<bool>,
    max_removals: Option<u8>,
}

fn user_text(n: u8, case: bool, base: u64) -> String {
    if n.is_multiple_of(2) {
        (base + u64::from(n)).to_string()
    } else if case {
        format!("User{n}@Example.com")
    } else {
        format!("user{n}@example.com")
    }
}

fn generate(groups: &[GenGroup], dice: &[u8], words: &[String]) -> Generated {
    let mut w = Writer {
        dice,
        roll: 0,
        text: String::new(),
        near: Vec::new(),
        words,
    };
    if w.coin() {
        let c = w.comment(None);
        w.text.push_str(&format!("{c}\n\n"));
    }
    w.leading(0, "version: 1");
    w.text.push_str("version: 1");
    w.end_line(Some("version: 1"));
    if w.coin() {
        let users: Vec<String> = (0..w.die(3))
            .map(|i| user_text(i * 2, false, 500))
            .collect();
        w.users(0, "protected", &users);
    }
    w.leading(0, "groups:");
    w.text.push_str("groups:");
    w.end_line(Some("groups:"));
    let gi = if w.coin() { 0 } else { 2 };
    for (i, g) in groups.iter().enumerate() {
        let body = gi + 2;
        let key = match (g.id, g.name) {
            (Some(id), _) => format!("id: {}", id * 100 + i as u64),
            (None, _) => format!("name: Team {i}"),
        };
        w.leading(gi, &key);
        w.text.push_str(&format!("{:gi$}- {key}", ""));
        w.end_line(Some(&key));
        if g.id.is_some() && g.name {
            w.leading(body, &format!("name: team {i}"));
            w.text.push_str(&format!("{:body$}name: team {i}", ""));
            w.end_line(Some(&format!("name: team {i}")));
        }
        if let Some(o) = g.owner {
            let line = format!("owner: {}", 900 + o);
            w.leading(body, &line);
            w.text.push_str(&format!("{:body$}{line}", ""));
            w.end_line(Some(&line));
        }
        let case = w.coin();
        let mods: Vec<String> = g
            .moderators
            .iter()
            .map(|&n| user_text(n, case, 100))
            .collect();
        let mems: Vec<String> = g.members.iter().map(|&n| user_text(n, case, 200)).collect();
        let mods = mods
            .iter()
            .map(|u| u.replace("user", "mod").replace("User", "Mod"));
        let mods: Vec<String> = mods.collect();
        if !mods.is_empty() || w.coin() {
            w.users(body, "moderators", &mods);
        }
        w.users(body, "members", &mems);
        if let Some(p) = g.prune {
            w.leading(body, &format!("prune: {p}"));
            w.text.push_str(&format!("{:body$}prune: {p}", ""));
            w.end_line(Some(&format!("prune: {p}")));
        }
        if let Some(m) = g.max_removals {
            w.leading(body, "limits:");
            if w.coin() {
                w.text
                    .push_str(&format!("{:body$}limits: {{max_removals: {m}}}", ""));
                w.end_line(Some("limits:"));
            } else {
                w.text.push_str(&format!("{:body$}limits:", ""));
                w.end_line(Some("limits:"));
                let inner = body + 2;
                w.leading(inner, &format!("max_removals: {m}"));
                w.text.push_str(&format!("{:inner$}max_removals: {m}", ""));
                w.end_line(Some(&format!("max_removals: {m}")));
            }
        }
        if w.coin() {
            let c = w.comment(None);
            w.text.push_str(&format!("{:body$}{c}\n", ""));
        }
        if w.coin() {
            w.text.push('\n');
        }
    }
    if w.coin() {
        let c = w.comment(None);
        w.text.push_str(&format!("{:gi$}{c}\n", ""));
    }
    if w.coin() {
        let c = w.comment(None);
        w.text.push_str(&format!("{c}\n"));
    }
    Generated {
        text: w.text,
        near: w.near,
    }
}

fn gen_group() -> impl Strategy<Value = GenGroup> {
    (
        proptest::option::of(1u64..50),
        any::<bool>(),
        proptest::option::of(0u64..5),
        proptest::collection::vec(0u8..6, 0..4),
        proptest::collection::vec(0u8..12, 0..8),
        proptest::option::of(any::<bool>()),
        proptest::option::of(0u8..10),
    )
        .prop_map(
            |(id, name, owner, moderators, members, prune, max_removals)| GenGroup {
                id,
                name,
                owner,
                moderators,
                members,
                prune,
                max_removals,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_files_keep_meaning_and_every_comment_in_place(
        groups in proptest::collection::vec(gen_group(), 0..5),
        dice in proptest::collection::vec(any::<u8>(), 1..64),
        words in proptest::collection::vec("[ -~ä€🎉]{0,16}", 1..8),
    ) {
        let g = generate(&groups, &dice, &words);
        let out = fmt(&g.text);
        let lines: Vec<&str> = out.lines().collect();
        for (c, near) in &g.near {
            let at: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with(c.as_str()) || l.ends_with(&format!("  {c}")))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(at.len(), 1, "{} in\n{}\n--- from\n{}", c, out, g.text);
            let Some(near) = near else { continue };
            let here = lines[at[0]].to_lowercase();
            let next = lines[at[0]..]
                .iter()
                .find(|l| !l.trim_start().starts_with('#'))
                .map(|l| l.to_lowercase())
                .unwrap_or_default();
            let ok = (here.contains(near.as_str()) && !here.trim_start().starts_with('#'))
                || next.contains(near.as_str());
            prop_assert!(ok, "{} is not next to {:?} in\n{}\n--- from\n{}", c, near, out, g.text);
        }
    }
}

#[test]
fn a_comment_after_a_value_that_spans_lines_stays_with_it() {
    check(
        "\
version: 1
invite_message: \"Welcome,
  all\"  # folded by YAML
groups:
  - name: Big
      Team  # a plain scalar on two lines
    manager: 0A0D0000-0000-4000-8000-000000000010  # by UUID
    portal: docs
portals: {docs: {docspace: {}}}
",
        "\
version: 1
portals:
  docs:
    docspace: {}
invite_message: Welcome, all  # folded by YAML
groups:
  - name: Big Team  # a plain scalar on two lines
    portal: docs
    manager: 0a0d0000-0000-4000-8000-000000000010  # by UUID
",
    );
}

#[test]
fn what_yaml_1_1_reads_otherwise_stays_quoted() {
    for s in [
        "yes",
        "No",
        "ON",
        "off",
        "y",
        "N",
        "<<",
        "~",
        "12:30",
        "1:2:3",
        "2001-12-14",
        "2001-12-14T21:59:43.10-05:00",
    ] {
        assert!(!super::emit::plain_is_safe(s), "{s} must be quoted");
    }
    for s in [
        "Sales",
        "yesterday",
        "a:b",
        "12:30 pm",
        "2001-12",
        "Team 2001-12-14",
        "no way",
    ] {
        assert!(super::emit::plain_is_safe(s), "{s} may stay plain");
    }
    check(
        "version: 1\ngroups:\n  - name: \"yes\"\n  - name: \"12:30\"\n",
        "version: 1\ngroups:\n  - name: \"12:30\"\n\n  - name: \"yes\"\n",
    );
}
