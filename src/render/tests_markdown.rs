//! Markdown comment tests: every entry kind, both systems, several portals, breaches, folding,
//! the size limit and hostile names (inline snapshots).

use super::markdown::{self, MdOptions, MdSection};
use super::tests::{current, docspace, people, person};
use crate::model::{
    CurrentState, DesiredGroup, DesiredState, Directory, GroupId, Limit, Lookups, Role, System,
    UserId,
};
use crate::plan::{self, BreachRule, BreachScope, LimitBreach, Options, Origin, Plan};

/// Every Bitrix24 entry kind: add, accept, role change, removals, skipped owner, protected and
/// synced users, pending invitation, request and inactive user.
const FILE: &str = "version: 1
protected: [27]
groups:
  - name: Marketing
    moderators: [mod@example.com]
    members: [anna@example.com, asker@example.com, gone@example.com, 27]
  - id: 16
    owner: 5
";

fn bitrix() -> (Plan, Directory) {
    let spec = crate::spec::parse("t.yaml", FILE).unwrap();
    let found = Lookups {
        people: people(),
        groups_by_name: [(
            "Marketing".to_owned(),
            vec![(GroupId::Num(15), "Marketing".to_owned())],
        )]
        .into(),
        ..Lookups::default()
    };
    let r = crate::resolve::resolve(&spec, &found);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let mut cur = current();
    let g = cur.groups.get_mut(&GroupId::Num(15)).unwrap();
    g.members.insert(UserId::Num(23), Role::Member);
    g.members.insert(UserId::Num(27), Role::Moderator);
    g.members.insert(UserId::Num(22), Role::Moderator);
    (
        plan::diff_with(&r.desired, &cur, Options::default()),
        r.directory,
    )
}

fn plain(p: &Plan, dir: &Directory) -> String {
    markdown::plan(p, dir, &[], &MdOptions::default())
}

#[test]
fn a_bitrix24_plan_shows_every_entry_kind_in_a_table() {
    let (p, dir) = bitrix();
    insta::assert_snapshot!(plain(&p, &dir), @r#"
    <!-- roster-plan -->
    ### roster plan

    **Plan: 2 to add, 1 to change, 2 to remove, 3 skipped, 3 pending.**

    > [!WARNING]
    > This plan removes 2 member(s) from 1 group(s).

    **Marketing** (`#15`) — +2 ~1 −2 !5

    | | User | Change | Role |
    |---|---|---|---|
    | ! | olga@example.com (`#1`) | skipped (not declared; owners are never removed) | owner |
    | + | anna@example.com (Anna A, `#21`) | add | member |
    | − | ext@partner.org (`#22`, extranet) | remove | moderator |
    | ~ | mod@example.com (`#23`) | role change | member → moderator |
    | + | asker@example.com (`#24`) | accept their request to join | member |
    | ! | gone@example.com (`#25`) | inactive: not added | member |
    | ! | invited@example.com (`#26`) | invited, pending acceptance (not in the file) | — |
    | ! | Pavel \\u{1b}\[31mP (`#27`) | skipped (protected: declared as member; protected users are never demoted) | moderator |
    | − | `#30` | remove | member |
    | ! | `#31` | asked to join, waiting for approval (not in the file) | — |

    **Sales** (`#16`) — +0 ~0 −0 !1

    Synced by Bitrix24 from departments 8, 12: removals are not planned (set `prune: true` to take the group over).

    | | User | Change | Role |
    |---|---|---|---|
    | ! | `#40` | skipped (synced: not declared; Bitrix24 would add them back from the group's departments) | member |
    "#);
}

#[test]
fn a_docspace_plan_speaks_of_managers_and_guests() {
    let (p, dir, _) = docspace();
    let out = markdown::plans(
        &[MdSection {
            portal: Some(("docs", System::DocSpace)),
            plan: &p,
            dir: &dir,
            breaches: &[],
        }],
        &[],
        &MdOptions::default(),
    );
    insta::assert_snapshot!(out, @r#"
    <!-- roster-plan -->
    ### roster plan

    **Plan: 1 to add, 0 to change, 2 to remove, 1 manager change, 0 skipped, 1 pending.**

    > [!WARNING]
    > This plan removes 2 member(s) from 1 group(s).

    #### Portal "docs" (ONLYOFFICE DocSpace)

    **Designers** (`d5000000-0000-4000-8000-000000000015`) — +1 ~1 −2 !1

    | | User | Change | Role |
    |---|---|---|---|
    | ~ | cy@example.com (Cy Chen, `0a0d0000-0000-4000-8000-000000000021`) | new manager; bo@example.com (Bo Brown, `0a0d0000-0000-4000-8000-000000000010`) becomes a member | manager |
    | − | bo@example.com (Bo Brown, `0a0d0000-0000-4000-8000-000000000010`) | remove (the former manager) | member |
    | + | di@example.com (Di Diaz, `0a0d0000-0000-4000-8000-000000000022`) | add | member |
    | ! | ed@example.com (Ed Guest, `0a0d0000-0000-4000-8000-000000000023`, guest) | guest: not added (DocSpace does not add guests to groups) | member |
    | − | fay@example.com (Fay Fox, `0a0d0000-0000-4000-8000-000000000030`) | remove | member |
    "#);
    assert!(!out.contains("owner"), "{out}");
}

fn breach(scope: BreachScope, rule: BreachRule, removals: usize, current: usize) -> LimitBreach {
    LimitBreach {
        scope,
        rule,
        origin: Origin::Default,
        removals,
        current,
        allowed: 1,
    }
}

#[test]
fn several_portals_have_headings_a_total_and_the_run_wide_breach() {
    let (bp, bdir) = bitrix();
    let (dp, ddir, _) = docspace();
    let run = [breach(
        BreachScope::Run,
        BreachRule::MaxTotalRemovals(Limit::Count(2)),
        5,
        12,
    )];
    let out = markdown::plans(
        &[
            MdSection {
                portal: Some(("crm", System::Bitrix24)),
                plan: &bp,
                dir: &bdir,
                breaches: &[],
            },
            MdSection {
                portal: Some(("docs", System::DocSpace)),
                plan: &dp,
                dir: &ddir,
                breaches: &[],
            },
            MdSection {
                portal: Some(("quiet", System::Bitrix24)),
                plan: &Plan::default(),
                dir: &Directory::default(),
                breaches: &[],
            },
        ],
        &run,
        &MdOptions::default(),
    );
    insta::assert_snapshot!(out, @r#"
    <!-- roster-plan -->
    ### roster plan

    **All 3 portals: Plan: 3 to add, 1 to change, 4 to remove, 1 owner/manager change, 3 skipped, 4 pending.**

    > [!WARNING]
    > This plan removes 4 member(s) from 2 group(s).

    > [!CAUTION]
    > This plan breaks 1 removal limit(s); `roster apply` refuses it:
    > - all portals: the plan removes 5 of 12 current memberships in this run (41.7 %), over the limit of 2 (default; set limits.max\_total\_removals in the file or pass --allow-mass-removal for one run)

    #### Portal "crm" (Bitrix24)

    Plan: 2 to add, 1 to change, 2 to remove, 3 skipped, 3 pending.

    **Marketing** (`#15`) — +2 ~1 −2 !5

    | | User | Change | Role |
    |---|---|---|---|
    | ! | olga@example.com (`#1`) | skipped (not declared; owners are never removed) | owner |
    | + | anna@example.com (Anna A, `#21`) | add | member |
    | − | ext@partner.org (`#22`, extranet) | remove | moderator |
    | ~ | mod@example.com (`#23`) | role change | member → moderator |
    | + | asker@example.com (`#24`) | accept their request to join | member |
    | ! | gone@example.com (`#25`) | inactive: not added | member |
    | ! | invited@example.com (`#26`) | invited, pending acceptance (not in the file) | — |
    | ! | Pavel \\u{1b}\[31mP (`#27`) | skipped (protected: declared as member; protected users are never demoted) | moderator |
    | − | `#30` | remove | member |
    | ! | `#31` | asked to join, waiting for approval (not in the file) | — |

    **Sales** (`#16`) — +0 ~0 −0 !1

    Synced by Bitrix24 from departments 8, 12: removals are not planned (set `prune: true` to take the group over).

    | | User | Change | Role |
    |---|---|---|---|
    | ! | `#40` | skipped (synced: not declared; Bitrix24 would add them back from the group's departments) | member |

    #### Portal "docs" (ONLYOFFICE DocSpace)

    Plan: 1 to add, 0 to change, 2 to remove, 1 manager change, 0 skipped, 1 pending.

    **Designers** (`d5000000-0000-4000-8000-000000000015`) — +1 ~1 −2 !1

    | | User | Change | Role |
    |---|---|---|---|
    | ~ | cy@example.com (Cy Chen, `0a0d0000-0000-4000-8000-000000000021`) | new manager; bo@example.com (Bo Brown, `0a0d0000-0000-4000-8000-000000000010`) becomes a member | manager |
    | − | bo@example.com (Bo Brown, `0a0d0000-0000-4000-8000-000000000010`) | remove (the former manager) | member |
    | + | di@example.com (Di Diaz, `0a0d0000-0000-4000-8000-000000000022`) | add | member |
    | ! | ed@example.com (Ed Guest, `0a0d0000-0000-4000-8000-000000000023`, guest) | guest: not added (DocSpace does not add guests to groups) | member |
    | − | fay@example.com (Fay Fox, `0a0d0000-0000-4000-8000-000000000030`) | remove | member |

    #### Portal "quiet" (Bitrix24)

    No changes.
    "#);
}

#[test]
fn no_changes_is_one_line_under_the_heading() {
    insta::assert_snapshot!(plain(&Plan::default(), &Directory::default()), @r#"
    <!-- roster-plan -->
    ### roster plan

    **No changes.**
    "#);
}

#[test]
fn broken_limits_are_a_caution_block() {
    let (p, dir) = bitrix();
    let breaches = [
        breach(
            BreachScope::Group {
                id: GroupId::Num(15),
                name: Some("Marketing".to_owned()),
            },
            BreachRule::MaxRemovals(Limit::Percent(10)),
            2,
            5,
        ),
        breach(
            BreachScope::Group {
                id: GroupId::Num(15),
                name: Some("Marketing".to_owned()),
            },
            BreachRule::Empties,
            5,
            5,
        ),
    ];
    let out = markdown::plan(&p, &dir, &breaches, &MdOptions::default());
    let head: String = out.lines().take(12).collect::<Vec<_>>().join("\n");
    insta::assert_snapshot!(head, @r#"
    <!-- roster-plan -->
    ### roster plan

    **Plan: 2 to add, 1 to change, 2 to remove, 3 skipped, 3 pending.**

    > [!WARNING]
    > This plan removes 2 member(s) from 1 group(s).

    > [!CAUTION]
    > This plan breaks 2 removal limit(s); `roster apply` refuses it:
    > - group "Marketing" (\#15): the plan removes 2 of 5 current non-owner members (40 %), over the limit of 10 % (default; set limits.max\_removals in the file or pass --allow-mass-removal for one run)
    > - group "Marketing" (\#15): the plan removes all 5 current non-owner members, and roster does not empty a group of 4 or more (default; set limits.allow\_empty: true for the group or pass --allow-mass-removal for one run)
    "#);
}

/// A plan of `n` additions to one group, by users 1..=n, known by e-mail.
fn big(n: u64) -> (Plan, Directory) {
    let mut dir = Directory::default();
    let mut want = DesiredGroup::new(GroupId::Num(7));
    want.name = Some("Everyone".to_owned());
    for u in 1..=n {
        want.members.insert(UserId::Num(u), Role::Member);
        let email = format!("user{u}@example.com");
        dir.users
            .insert(UserId::Num(u), person(u, Some(&email), None, true, false));
    }
    let mut desired = DesiredState::default();
    desired.groups.insert(GroupId::Num(7), want);
    (plan::diff(&desired, &CurrentState::default()), dir)
}

#[test]
fn a_long_plan_is_folded_per_group() {
    let (p, dir) = big(21);
    let out = plain(&p, &dir);
    assert!(
        out.contains(
            "<details><summary>Everyone (<code>#7</code>) — +21 ~0 −0</summary>\n\n| | User |"
        ),
        "{out}"
    );
    assert!(
        out.ends_with("| + | user21@example.com (`#21`) | add | member |\n\n</details>\n"),
        "{out}"
    );
    let (p, dir) = big(20);
    let out = plain(&p, &dir);
    assert!(!out.contains("<details>"), "{out}");
    assert!(
        out.contains("**Everyone** (`#7`) — +20 ~0 −0\n\n| | User |"),
        "{out}"
    );
}

#[test]
fn a_huge_plan_stays_under_the_limit_and_says_how_much_it_left_out() {
    let (p, dir) = big(10_000);
    let out = plain(&p, &dir);
    let chars = out.chars().count();
    assert!(chars <= 65_000, "{chars}");
    assert!(chars > 60_000, "the budget is used: {chars}");
    let rows = out.lines().filter(|l| l.starts_with("| + |")).count();
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        format!(
            "… {} more changes not shown; see the job log.",
            10_000 - rows
        )
    );
    // The table is closed before the line: no half row, no open <details>.
    assert_eq!(
        out.matches("<details>").count(),
        out.matches("</details>").count()
    );
    assert!(
        out.contains("|\n\n</details>\n\n… "),
        "{}",
        &out[out.len() - 300..]
    );
    // A small limit cuts at a row boundary too, and counts exactly.
    let small = markdown::plan(
        &p,
        &dir,
        &[],
        &MdOptions {
            max_chars: 2_000,
            ..MdOptions::default()
        },
    );
    assert!(small.chars().count() <= 2_000);
    let rows = small.lines().filter(|l| l.starts_with("| + |")).count();
    assert!(rows > 0);
    assert!(
        small.ends_with(&format!(
            "</details>\n\n… {} more changes not shown; see the job log.\n",
            10_000 - rows
        )),
        "{small}"
    );
}

#[test]
fn a_plan_that_just_fits_is_not_cut() {
    let (p, dir) = big(30);
    let whole = plain(&p, &dir);
    let n = whole.chars().count();
    let exact = markdown::plan(
        &p,
        &dir,
        &[],
        &MdOptions {
            max_chars: n,
            ..MdOptions::default()
        },
    );
    assert_eq!(exact, whole);
    let less = markdown::plan(
        &p,
        &dir,
        &[],
        &MdOptions {
            max_chars: n - 1,
            ..MdOptions::default()
        },
    );
    assert!(less.chars().count() < n);
    assert!(less.contains("more change"), "{less}");
}

#[test]
fn hostile_names_cannot_break_out() {
    let mut dir = Directory::default();
    let names = [
        "Eve | x | y",
        "</details><script>alert(1)</script>",
        "two\nlines\r\nhere",
        "@everyone",
        "`code` *bold* _it_ [link](http://x) ~~s~~ &amp; #1",
        "back\\slash",
        "esc \u{1b}[31m",
    ];
    let mut want = DesiredGroup::new(GroupId::Num(9));
    want.name = Some("</summary></details><img src=x onerror=alert(1)> @admins".to_owned());
    for (i, name) in names.iter().enumerate() {
        let u = 100 + i as u64;
        want.members.insert(UserId::Num(u), Role::Member);
        dir.users
            .insert(UserId::Num(u), person(u, None, Some(name), true, false));
    }
    let mut desired = DesiredState::default();
    desired.groups.insert(GroupId::Num(9), want);
    let p = plan::diff(&desired, &CurrentState::default());
    let out = plain(&p, &dir);
    insta::assert_snapshot!(out, @r#"
    <!-- roster-plan -->
    ### roster plan

    **Plan: 7 to add, 0 to change, 0 to remove, 0 skipped.**

    **\</summary\>\</details\>\<img src=x onerror=alert(1)\> @&#8203;admins** (`#9`) — +7 ~0 −0

    | | User | Change | Role |
    |---|---|---|---|
    | + | Eve \| x \| y (`#100`) | add | member |
    | + | \</details\>\<script\>alert(1)\</script\> (`#101`) | add | member |
    | + | two lines here (`#102`) | add | member |
    | + | @&#8203;everyone (`#103`) | add | member |
    | + | \`code\` \*bold\* \_it\_ \[link\](http://x) \~\~s\~\~ \&amp; \#1 (`#104`) | add | member |
    | + | back\\slash (`#105`) | add | member |
    | + | esc \\u{1b}\[31m (`#106`) | add | member |
    "#);
    // Every table row has exactly its five unescaped pipes.
    for line in out.lines().filter(|l| l.starts_with("| + ")) {
        let pipes = line
            .match_indices('|')
            .filter(|(i, _)| !line[..*i].ends_with('\\'))
            .count();
        assert_eq!(pipes, 5, "{line}");
    }
    // What is left of the HTML is backslash-escaped, so Markdown shows it as text.
    for bad in [
        "<script",
        "</details>",
        "<img",
        "@everyone",
        "@admins",
        "\u{1b}",
    ] {
        let raw = out
            .match_indices(bad)
            .filter(|(i, _)| !out[..*i].ends_with('\\'))
            .count();
        assert_eq!(raw, 0, "{bad} in {out}");
    }
    // Folded, the group's name sits in <summary> as HTML text.
    let folded = markdown::plan(
        &p,
        &dir,
        &[],
        &MdOptions {
            fold_over: 0,
            ..MdOptions::default()
        },
    );
    assert!(
        folded.contains("<details><summary>&lt;/summary&gt;&lt;/details&gt;&lt;img src=x onerror=alert(1)&gt; @&#8203;admins (<code>#9</code>) — +7 ~0 −0</summary>"),
        "{folded}"
    );
    assert_eq!(folded.matches("</details>").count(), 1, "{folded}");
}

#[test]
fn escaping_keeps_e_mails_and_defuses_mentions() {
    assert_eq!(markdown::escape_md("a_b@example.com"), "a\\_b@example.com");
    assert_eq!(
        markdown::escape_md("@x and (@y)"),
        "@&#8203;x and (@&#8203;y)"
    );
    assert_eq!(markdown::escape_md("a|b\nc"), "a\\|b c");
    assert_eq!(markdown::escape_md("\u{7}"), "\\\\u{7}");
}
