//! Resolve tests: a file and what the portal has (compact), the resolved state and the
//! problems as text.

use std::collections::BTreeMap;

use super::{name_mismatches, offline, resolve, wanted};
use crate::model::{AddWith, CurrentGroup, CurrentState, GroupId, Lookups, Person, Role, UserId};
use crate::spec::parse;

/// People in a compact form: `21=anna@example.com 9=bob@x:inactive 40=e@x:extranet 50`.
fn people(s: &str) -> Vec<Person> {
    s.split_whitespace()
        .map(|p| {
            let mut parts = p.split(':');
            let head = parts.next().unwrap();
            let (id, email) = match head.split_once('=') {
                Some((id, e)) => (id, Some(e.to_owned())),
                None => (head, None),
            };
            let flags: Vec<&str> = parts.collect();
            Person {
                id: UserId::Num(id.parse().unwrap()),
                email,
                name: None,
                active: !flags.contains(&"inactive"),
                extranet: flags.contains(&"extranet"),
            }
        })
        .collect()
}

/// Groups by name in a compact form: `Sales=15 Sales=16 sales=17` (name asked = id).
fn groups(s: &str) -> BTreeMap<String, Vec<(GroupId, String)>> {
    let mut out: BTreeMap<String, Vec<(GroupId, String)>> = BTreeMap::new();
    for g in s.split_whitespace() {
        let (name, id) = g.split_once('=').unwrap();
        let (asked, portal) = name.split_once('/').unwrap_or((name, name));
        out.entry(asked.to_owned())
            .or_default()
            .push((GroupId::Num(id.parse().unwrap()), portal.to_owned()));
    }
    out
}

/// The resolved groups, then errors and warnings.
fn check(yaml: &str, who: &str, names: &str) -> String {
    let spec = parse("g.yaml", yaml).unwrap_or_else(|d| panic!("{d}"));
    let found = Lookups {
        people: people(who),
        groups_by_name: groups(names),
        caller: None,
        users_unavailable: None,
        emails_unavailable: None,
    };
    let r = resolve(&spec, &found);
    let mut out = String::new();
    for g in r.desired.groups.values() {
        let list = |m: &BTreeMap<UserId, Role>| {
            m.iter()
                .map(|(u, r)| format!("{u}:{r}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push_str(&format!(
            "group {} name={:?} owner={:?} members=[{}] inactive=[{}] protected={:?}\n",
            g.id,
            g.name,
            g.owner.map(|o| o.expect_num()),
            list(&g.members),
            list(&g.inactive),
            g.protected
                .iter()
                .map(|u| u.expect_num())
                .collect::<Vec<_>>(),
        ));
    }
    if !r.desired.protected.is_empty() {
        out.push_str(&format!(
            "protected {:?}\n",
            r.desired
                .protected
                .iter()
                .map(|u| u.expect_num())
                .collect::<Vec<_>>()
        ));
    }
    for e in &r.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

fn assert_lines(actual: String, expected: &str) {
    assert_eq!(actual.trim_end(), expected.trim_end(), "\n{actual}");
}

#[test]
fn wanted_lists_every_reference() {
    let spec = parse(
        "g.yaml",
        "version: 1
protected: [Boss@Example.com, 7]
groups:
  - name: Sales
    owner: 1
    moderators: [ANNA@example.com]
    members: [3]
    protected: [9]
  - id: 4
    members: [anna@example.COM]
    name: Labelled
",
    )
    .unwrap();
    let w = wanted(&spec);
    assert_eq!(
        w.emails.into_iter().collect::<Vec<_>>(),
        ["anna@example.com", "boss@example.com"]
    );
    assert_eq!(
        w.users
            .into_iter()
            .map(|u| u.expect_num())
            .collect::<Vec<_>>(),
        [1, 3, 7, 9]
    );
    assert_eq!(w.group_names.into_iter().collect::<Vec<_>>(), ["Sales"]);
}

#[test]
fn emails_and_names_resolve_to_ids() {
    assert_lines(
        check(
            "version: 1
groups:
  - name: Marketing
    owner: Anna@Example.com
    moderators: [10]
    members: [b_o%b@x.org, 21]
  - id: 27
",
            "1=anna@example.com 10 21=x@y:extranet 22=b_o%b@x.org",
            "Marketing=15",
        ),
        "group 15 name=Some(\"Marketing\") owner=Some(1) members=[10:moderator 21:member 22:member] inactive=[] protected=[]
group 27 name=None owner=None members=[] inactive=[] protected=[]",
    );
}

#[test]
fn emails_match_exactly_never_as_patterns() {
    // The provider may hand back more than was asked (a LIKE match): only equal addresses
    // count, in any case.
    assert_lines(
        check(
            "version: 1\ngroups:\n  - id: 1\n    members: [a_b@x.org]\n",
            "5=axb@x.org 6=a_b@x.org.evil 7=A_B@X.ORG",
            "",
        ),
        "group 1 name=None owner=None members=[7:member] inactive=[] protected=[]",
    );
}

#[test]
fn unresolvable_entries_are_errors_and_leave_only_their_group_out() {
    assert_lines(
        check(
            "version: 1
groups:
  - id: 1
    members: [nobody@x.org, 2]
  - id: 2
    members: [twice@x.org]
  - id: 3
    members: [9999]
  - name: Nowhere
  - name: Sales
  - id: 4
    members: [2]
  - id: 5
    protected: [ghost@x.org]
",
            "2 3=twice@x.org 4=TWICE@x.org",
            "Sales=15 Sales=16",
        ),
        "group 4 name=None owner=None members=[2:member] inactive=[] protected=[]
error: g.yaml:4:15: groups[0].members[0]: no user on the portal has the e-mail address nobody@x.org
error: g.yaml:6:15: groups[1].members[0]: the e-mail address twice@x.org belongs to 2 users (#3, #4); name the user by ID instead
error: g.yaml:8:15: groups[2].members[0]: no user 9999 on the portal
error: g.yaml:9:11: groups[3].name: no group named \"Nowhere\" on the portal (or none the run's user can see)
error: g.yaml:10:11: groups[4].name: 2 groups are named \"Sales\" (#15, #16); give the group's id instead
error: g.yaml:14:17: groups[6].protected[0]: no user on the portal has the e-mail address ghost@x.org",
    );
}

#[test]
fn an_exact_name_wins_over_other_cases() {
    assert_lines(
        check(
            "version: 1\ngroups:\n  - name: Sales\n",
            "",
            "Sales/SALES=16 Sales/Sales=15",
        ),
        "group 15 name=Some(\"Sales\") owner=None members=[] inactive=[] protected=[]",
    );
    // The same group listed twice by the provider is one group.
    assert_lines(
        check(
            "version: 1\ngroups:\n  - name: Sales\n",
            "",
            "Sales=15 Sales=15",
        ),
        "group 15 name=Some(\"Sales\") owner=None members=[] inactive=[] protected=[]",
    );
}

#[test]
fn inactive_users_are_kept_apart_and_an_inactive_owner_is_a_warning() {
    assert_lines(
        check(
            "version: 1
groups:
  - id: 1
    owner: gone@x.org
    moderators: [left@x.org]
    members: [3, 4]
    protected: [3]
",
            "1=gone@x.org:inactive 2=left@x.org:inactive 3:inactive 4",
            "",
        ),
        "group 1 name=None owner=Some(1) members=[4:member] inactive=[1:owner 2:moderator 3:member] protected=[3]
warning: g.yaml:4:12: groups[0].owner: the declared owner gone@x.org (#1) is inactive (dismissed) on the portal; roster will not make them the owner",
    );
}

#[test]
fn the_same_user_by_email_and_by_id_is_a_duplicate() {
    assert_lines(
        check(
            "version: 1
protected: [21, anna@x.org]
groups:
  - id: 1
    owner: anna@x.org
    members: [21]
  - id: 2
    moderators: [21]
    members: [anna@x.org]
    protected: [anna@x.org, 21]
",
            "21=anna@x.org",
            "",
        ),
        "protected [21]
error: g.yaml:2:17: protected[1]: anna@x.org is user 21, who is already listed in `protected` as 21
error: g.yaml:6:15: groups[0].members[0]: user 21 is already listed in this group as anna@x.org (under `owner` on line 5)
error: g.yaml:9:15: groups[1].members[0]: anna@x.org is user 21, who is already listed in this group as 21 (under `moderators` on line 8)
error: g.yaml:10:29: groups[1].protected[1]: user 21 is already listed in `protected` as anna@x.org",
    );
}

#[test]
fn a_group_by_name_must_not_be_declared_elsewhere() {
    assert_lines(
        check(
            "version: 1
groups:
  - name: Sales
  - id: 15
  - name: Marketing
  - name: marketing
",
            "",
            "Sales=15 Marketing=16 marketing/Marketing=16",
        ),
        "group 15 name=None owner=None members=[] inactive=[] protected=[]
group 16 name=Some(\"Marketing\") owner=None members=[] inactive=[] protected=[]
error: g.yaml:3:11: groups[0].name: group \"Sales\" is group 15 on the portal, which the group on line 4 declares already
error: g.yaml:6:11: groups[3].name: group \"marketing\" is group 16 on the portal, which the group on line 5 declares already",
    );
}

#[test]
fn top_level_protected_errors_keep_the_groups_and_protect_every_candidate() {
    assert_lines(
        check(
            "version: 1
protected: [shared@x.org, nobody@x.org, 404]
groups:
  - id: 1
    members: [5]
",
            "5 6=shared@x.org 7=Shared@x.org",
            "",
        ),
        "group 1 name=None owner=None members=[5:member] inactive=[] protected=[]
protected [6, 7]
error: g.yaml:2:13: protected[0]: the e-mail address shared@x.org belongs to 2 users (#6, #7); name the user by ID instead
error: g.yaml:2:27: protected[1]: no user on the portal has the e-mail address nobody@x.org
error: g.yaml:2:41: protected[2]: no user 404 on the portal",
    );
}

#[test]
fn add_with_and_invite_message_fall_back_to_the_file_and_prune_is_tracked() {
    let spec = parse(
        "g.yaml",
        "version: 1
add_with: invite
invite_message: Welcome
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
    let d = offline(&spec).unwrap();
    let got: Vec<_> = d
        .groups
        .values()
        .map(|g| {
            (
                g.add_with,
                g.invite_message.as_deref(),
                g.prune,
                g.prune_explicit,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (AddWith::Invite, Some("Welcome"), true, false),
            (AddWith::Add, Some("Hi"), true, true),
            (AddWith::Invite, Some("Welcome"), false, true)
        ]
    );
    let plain = offline(&parse("g.yaml", "version: 1\ngroups:\n  - id: 1\n").unwrap()).unwrap();
    let g = &plain.groups[&GroupId::Num(1)];
    assert_eq!(
        (g.add_with, g.invite_message.as_deref()),
        (AddWith::Add, None)
    );
}

#[test]
fn offline_takes_ids_as_active_and_refuses_emails_and_names() {
    let spec = parse(
        "g.yaml",
        "version: 1
protected: [7]
limits: { max_removals: 3 }
groups:
  - id: 15
    name: M
    owner: 1
    moderators: [10]
    members: [21]
    protected: [21]
",
    )
    .unwrap();
    let d = offline(&spec).unwrap();
    let g = &d.groups[&GroupId::Num(15)];
    assert_eq!(g.owner, Some(UserId::Num(1)));
    assert_eq!(g.name.as_deref(), Some("M"));
    assert_eq!(g.members.len(), 2);
    assert!(g.inactive.is_empty());
    assert_eq!(g.line, 5);
    assert!(d.protected.contains(&UserId::Num(7)));
    assert!(d.limits.max_removals.is_some());
    let spec = parse(
        "g.yaml",
        "version: 1\ngroups:\n  - name: Sales\n    members: [a@b.c]\n  - id: 2\n",
    )
    .unwrap();
    let e = offline(&spec).unwrap_err();
    assert_eq!(
        e.to_string(),
        "g.yaml:3:11: groups[0].name: group \"Sales\" is given by name: finding it needs a portal (roster plan looks it up); offline, give its id
g.yaml:4:15: groups[0].members[0]: a@b.c is an e-mail address: finding the user needs a portal (roster plan looks it up); offline, give the user's ID"
    );
}

#[test]
fn errors_are_capped() {
    let members: Vec<String> = (1..=500).map(|i| format!("u{i}@x.org")).collect();
    let yaml = format!(
        "version: 1\ngroups:\n  - id: 1\n    members: [{}]\n",
        members.join(", ")
    );
    let spec = parse("g.yaml", &yaml).unwrap();
    let r = resolve(&spec, &Lookups::default());
    assert_eq!(r.errors.len(), crate::spec::MAX_DIAGNOSTICS);
    assert_eq!(r.errors_omitted, 400);
    assert!(r.desired.groups.is_empty());
    let e = offline(&spec).unwrap_err();
    assert_eq!(e.total(), 500);
}

#[test]
fn the_directory_keeps_everyone_found() {
    let spec = parse("g.yaml", "version: 1\ngroups:\n  - name: S\n").unwrap();
    let found = Lookups {
        people: people("1=a@x 1=a@x 2"),
        groups_by_name: groups("S=15"),
        caller: None,
        users_unavailable: None,
        emails_unavailable: None,
    };
    let r = resolve(&spec, &found);
    assert_eq!(r.directory.users.len(), 2);
    assert_eq!(r.directory.groups[&GroupId::Num(15)], "S");
}

#[test]
fn names_that_differ_from_the_portal_are_warnings() {
    let spec = parse(
        "g.yaml",
        "version: 1
groups:
  - id: 15
    name: Marketing
  - id: 16
    name: Sales
  - id: 17
  - name: Ops
",
    )
    .unwrap();
    let mut current = CurrentState::default();
    let named = |n: &str| CurrentGroup {
        name: Some(n.to_owned()),
        ..Default::default()
    };
    current
        .groups
        .insert(GroupId::Num(15), named("Marketing team"));
    current.groups.insert(GroupId::Num(16), named("Sales"));
    current.groups.insert(GroupId::Num(17), named("X"));
    let w: Vec<String> = name_mismatches(&spec, &current)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        w,
        [
            "g.yaml:4:11: groups[0].name: the portal's name for group 15 is \"Marketing team\", not \"Marketing\" (the id decides; the name here is only a label)"
        ]
    );
}

/// A webhook without the `user` scope: user IDs are taken as they are (as before issue 7),
/// e-mails are errors saying why, and the groups by name still resolve.
#[test]
fn without_the_user_scope_ids_pass_unchecked_and_e_mails_say_why() {
    let spec = parse(
        "g.yaml",
        "version: 1
groups:
  - id: 1
    members: [21, 22]
  - name: Sales
    members: [ann@x.org]
",
    )
    .unwrap();
    let found = Lookups {
        groups_by_name: groups("Sales=42"),
        users_unavailable: Some("user.get: insufficient_scope".to_owned()),
        ..Lookups::default()
    };
    let r = resolve(&spec, &found);
    assert_eq!(r.desired.groups.len(), 1, "{:?}", r.desired);
    let g = &r.desired.groups[&GroupId::Num(1)];
    assert_eq!(g.members.len(), 2);
    assert!(g.inactive.is_empty());
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert_eq!((r.errors[0].line, r.errors[0].column), (6, 15));
    assert!(
        r.errors[0].message.contains("insufficient_scope")
            && r.errors[0].message.contains("`user` scope"),
        "{}",
        r.errors[0].message
    );
}

/// A portal that looks users up by ID but ignored the e-mail filter (a webhook with only
/// `user_brief`, whose answers have no `EMAIL`; rules §1.5 "Scopes"): IDs are checked as
/// usual (an unknown one is an error, a dismissed one inactive), e-mails are errors saying
/// why, never "no user has", and the groups by name still resolve.
#[test]
fn without_e_mails_ids_are_checked_and_e_mails_say_why() {
    let spec = parse(
        "g.yaml",
        "version: 1
groups:
  - id: 1
    members: [21, 22, 99]
  - name: Sales
    members: [ann@x.org]
",
    )
    .unwrap();
    let found = Lookups {
        people: people("21 22:inactive"),
        groups_by_name: groups("Sales=42"),
        emails_unavailable: Some("the portal did not apply the e-mail filter".to_owned()),
        ..Lookups::default()
    };
    let r = resolve(&spec, &found);
    let messages: Vec<(usize, &str)> = r
        .errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (4, "no user 99 on the portal"),
            (
                6,
                "cannot look up the e-mail address ann@x.org: the portal did not apply the e-mail filter; name the user by ID"
            ),
        ]
    );
    // Users without an e-mail are in the directory all the same.
    assert_eq!(r.directory.users.len(), 2);
    assert!(r.directory.users.values().all(|p| p.email.is_none()));
}
