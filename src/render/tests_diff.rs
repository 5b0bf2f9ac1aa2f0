//! `--diff` tests: both systems, colour on and off (inline snapshots).

use super::{Style, diff};
use crate::model::{CurrentState, Directory, GroupId, Role, UserId};
use crate::plan::{self, Options, Plan};

fn bitrix() -> (Plan, Directory, CurrentState) {
    super::tests::made(Options {
        allow_owner_change: true,
    })
}

#[test]
fn a_bitrix24_diff_shows_owner_moderators_members_and_relations() {
    let (p, dir, cur) = bitrix();
    insta::assert_snapshot!(diff::group_diff(&cur, &p, &dir, Style::default()), @r#"
    --- Marketing (#15) current
    +++ Marketing (#15) planned
    @@ -1,10 +1,12 @@
    -owner: olga@example.com
    +owner: boss@example.com
     moderators: []
     members:
    +  - asker@example.com
       - 27  # Pavel \u{1b}[31mP
    -  - 30
     invited:
    +  - anna@example.com  # Anna A
    +  - ext@partner.org  # (extranet)
       - invited@example.com
    +  - mod@example.com
     requested:
    -  - asker@example.com
       - 31
    --- Ops (#17) current
    +++ Ops (#17) planned
    @@ -1,4 +1,3 @@
     owner: boss@example.com
     moderators: []
    -members:
    -  - 40
    +members: []
    "#);
}

#[test]
fn a_docspace_diff_has_a_manager_and_members_only() {
    let (p, dir, cur) = super::tests::docspace();
    insta::assert_snapshot!(diff::group_diff(&cur, &p, &dir, Style::default()), @r#"
    --- Designers (d5000000-0000-4000-8000-000000000015) current
    +++ Designers (d5000000-0000-4000-8000-000000000015) planned
    @@ -1,4 +1,3 @@
    -manager: bo@example.com  # Bo Brown
    +manager: cy@example.com  # Cy Chen
     members:
    -  - cy@example.com  # Cy Chen
    -  - fay@example.com  # Fay Fox
    +  - di@example.com  # Di Diaz
    "#);
}

#[test]
fn skipped_owners_stay_and_groups_without_changes_are_left_out() {
    let mut cur = CurrentState::default();
    let g = cur.groups.entry(GroupId::Num(3)).or_default();
    g.members.insert(UserId::Num(1), Role::Owner);
    g.members.insert(UserId::Num(2), Role::Member);
    let g = cur.groups.entry(GroupId::Num(4)).or_default();
    g.members.insert(UserId::Num(1), Role::Owner);
    let mut desired = crate::model::DesiredState::default();
    desired.groups.insert(
        GroupId::Num(3),
        crate::model::DesiredGroup::new(GroupId::Num(3)),
    );
    desired.groups.insert(
        GroupId::Num(4),
        crate::model::DesiredGroup::new(GroupId::Num(4)),
    );
    let p = plan::diff(&desired, &cur);
    let out = diff::group_diff(&cur, &p, &Directory::default(), Style::default());
    insta::assert_snapshot!(out, @r#"
    --- #3 current
    +++ #3 planned
    @@ -1,4 +1,3 @@
     owner: 1
     moderators: []
    -members:
    -  - 2
    +members: []
    "#);
    assert_eq!(
        diff::group_diff(
            &cur,
            &Plan::default(),
            &Directory::default(),
            Style::default()
        ),
        ""
    );
}

#[test]
fn colour_marks_removed_and_added_lines_only_when_asked() {
    let (p, dir, cur) = bitrix();
    let plain = diff::group_diff(&cur, &p, &dir, Style::default());
    assert!(!plain.contains('\x1b'));
    let coloured = diff::group_diff(&cur, &p, &dir, Style { color: true });
    assert!(coloured.contains("\x1b[31m-  - 30\x1b[0m\n"), "{coloured}");
    assert!(
        coloured.contains("\x1b[32m+owner: boss@example.com\x1b[0m\n"),
        "{coloured}"
    );
    assert!(coloured.contains("\x1b[36m@@ "), "{coloured}");
    assert_eq!(
        coloured
            .replace("\x1b[31m", "")
            .replace("\x1b[32m", "")
            .replace("\x1b[36m", "")
            .replace("\x1b[0m", ""),
        plain
    );
}
