//! Planner tests: data-driven cases (desired YAML + compact current state → rendered plan,
//! snapshotted inline) and properties over random states (`proptest`).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{Change, Entry, Plan, applied, diff};
use crate::model::{CurrentGroup, CurrentState, DesiredGroup, DesiredState, GroupId, Role, UserId};
use crate::render::{Style, text};

/// Current state in a compact form: `15: 1=A 10=K 21=E; 27: 5=A`.
fn current(s: &str) -> CurrentState {
    let mut state = CurrentState::default();
    for group in s.split(';').map(str::trim).filter(|g| !g.is_empty()) {
        let (id, members) = group.split_once(':').expect("`ID: members`");
        let g = state
            .groups
            .entry(GroupId(id.trim().parse().unwrap()))
            .or_default();
        for m in members.split_whitespace() {
            let (user, role) = m.split_once('=').expect("`USER=ROLE`");
            let role = match role {
                "A" => Role::Owner,
                "E" => Role::Moderator,
                "K" => Role::Member,
                other => panic!("unknown role {other}"),
            };
            g.members.insert(UserId(user.parse().unwrap()), role);
        }
    }
    state
}

fn plan_text(desired_yaml: &str, current_state: &str) -> String {
    let desired = crate::spec::parse("t.yaml", desired_yaml).expect("test YAML is valid");
    text::plan(&diff(&desired, &current(current_state)), Style::default())
}

#[test]
fn adds_role_change_removal_and_skipped_owner() {
    let out = plan_text(
        "version: 1
groups:
  - id: 15
    name: Marketing
    moderators: [10]
    members: [21, 22]
",
        "15: 1=A 10=K 21=K 30=K",
    );
    insta::assert_snapshot!(out, @r#"
    roster will make these changes:

      group 15 "Marketing"
        ! 1   owner  skipped: owner (not declared; owners are never removed)
        ~ 10  member -> moderator
        + 22  member
        - 30  member

    Plan: 1 to add, 1 to change, 1 to remove, 1 skipped.
    "#);
}

#[test]
fn in_sync_group_is_no_changes() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    owner: 1\n    members: [21]\n",
        "15: 1=A 21=K",
    );
    insta::assert_snapshot!(out, @"No changes.");
}

#[test]
fn only_skipped_owner_is_no_changes() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    members: [21]\n",
        "15: 1=A 21=K",
    );
    insta::assert_snapshot!(out, @"
    roster found nothing to change; for information:

      group 15
        ! 1  owner  skipped: owner (not declared; owners are never removed)

    No changes. 1 skipped.
    ");
}

#[test]
fn owner_declared_as_moderator_is_not_demoted() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    moderators: [1]\n    members: [2]\n",
        "15: 1=A",
    );
    insta::assert_snapshot!(out, @"
    roster will make these changes:

      group 15
        ! 1  owner  skipped: owner (declared as moderator; owners are never demoted)
        + 2  member

    Plan: 1 to add, 0 to change, 0 to remove, 1 skipped.
    ");
}

#[test]
fn prune_false_keeps_undeclared_members() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    prune: false\n    moderators: [21]\n",
        "15: 1=A 21=K 30=K 31=E",
    );
    insta::assert_snapshot!(out, @"
    roster will make these changes:

      group 15
        ~ 21  member -> moderator

    Plan: 0 to add, 1 to change, 0 to remove, 0 skipped.
    ");
}

#[test]
fn owner_mismatch_is_reported_and_declared_owner_kept() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    owner: 5\n    members: [21]\n",
        "15: 1=A 5=E 21=K",
    );
    insta::assert_snapshot!(out, @"
    roster found nothing to change; for information:

      group 15
        ! 1  owner  skipped: owner (not declared; owners are never removed)
        ! owner differs: the file declares user 5, the portal has user 1 (owners are never changed)

    No changes. 1 skipped.
    ");
}

#[test]
fn several_groups_sorted_and_empty_group_added() {
    let out = plan_text(
        "version: 1
groups:
  - id: 42
    name: Sales
    members: [3, 1]
  - id: 7
    moderators: [9]
",
        "7: 2=A 9=E 4=K; 42: 8=A",
    );
    insta::assert_snapshot!(out, @r#"
    roster will make these changes:

      group 7
        ! 2  owner  skipped: owner (not declared; owners are never removed)
        - 4  member

      group 42 "Sales"
        + 1  member
        + 3  member
        ! 8  owner  skipped: owner (not declared; owners are never removed)

    Plan: 2 to add, 0 to change, 1 to remove, 2 skipped.
    "#);
}

#[test]
fn json_format_is_stable() {
    let desired = crate::spec::parse(
        "t.yaml",
        "version: 1\ngroups:\n  - id: 15\n    name: M\n    owner: 3\n    moderators: [10]\n    members: [22]\n",
    )
    .unwrap();
    let out = crate::render::json::plan(&diff(&desired, &current("15: 1=A 10=K 30=E")));
    insta::assert_snapshot!(out, @r#"
    {
      "format_version": "1",
      "has_changes": true,
      "summary": {
        "add": 1,
        "change": 1,
        "remove": 1,
        "skipped": 1
      },
      "groups": [
        {
          "id": 15,
          "name": "M",
          "owner_mismatch": {
            "declared": 3,
            "actual": 1
          },
          "entries": [
            {
              "action": "skip",
              "user": 1,
              "role": "owner",
              "wanted": "remove",
              "reason": "owner"
            },
            {
              "action": "set_role",
              "user": 10,
              "from": "member",
              "to": "moderator"
            },
            {
              "action": "add",
              "user": 22,
              "role": "member"
            },
            {
              "action": "remove",
              "user": 30,
              "role": "moderator"
            }
          ]
        }
      ]
    }
    "#);
}

#[test]
fn plan_is_deterministic() {
    let yaml = "version: 1\ngroups:\n  - id: 3\n    members: [5, 4]\n  - id: 1\n    members: [9]\n";
    let cur = "3: 1=A 7=K 6=E; 1: 2=A 8=K";
    assert_eq!(plan_text(yaml, cur), plan_text(yaml, cur));
    let desired = crate::spec::parse("t.yaml", yaml).unwrap();
    let plan = diff(&desired, &current(cur));
    let users: Vec<Vec<u64>> = plan
        .groups
        .iter()
        .map(|g| g.entries.iter().map(|e| e.user().0).collect())
        .collect();
    assert_eq!(users, vec![vec![2, 8, 9], vec![1, 4, 5, 6, 7]]);
}

// ---- properties ----

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Moderator), Just(Role::Member)]
}

/// A random portal group (with an owner) and a random desired group over the same small user
/// space, so adds, changes, removals and owner conflicts all occur often.
fn group_pair() -> impl Strategy<Value = (CurrentGroup, DesiredGroup)> {
    (
        1u64..12,
        prop::collection::btree_map(1u64..12, role(), 0..8),
        prop::collection::btree_map(1u64..12, role(), 0..8),
        any::<bool>(),
        prop::option::of(1u64..12),
    )
        .prop_map(|(owner, cur, want, prune, declared_owner)| {
            let mut members: BTreeMap<UserId, Role> =
                cur.into_iter().map(|(u, r)| (UserId(u), r)).collect();
            members.insert(UserId(owner), Role::Owner);
            let mut want: BTreeMap<UserId, Role> =
                want.into_iter().map(|(u, r)| (UserId(u), r)).collect();
            // The spec loader forbids listing the declared owner as a member too.
            if let Some(o) = declared_owner {
                want.remove(&UserId(o));
            }
            let desired = DesiredGroup {
                id: GroupId(0),
                name: None,
                owner: declared_owner.map(UserId),
                members: want,
                prune,
                protected: Default::default(),
                limits: Default::default(),
                line: 1,
            };
            (CurrentGroup { members }, desired)
        })
}

fn states() -> impl Strategy<Value = (CurrentState, DesiredState)> {
    prop::collection::vec(group_pair(), 1..5).prop_map(|pairs| {
        let mut cur = CurrentState::default();
        let mut want = DesiredState::default();
        for (i, (c, mut d)) in pairs.into_iter().enumerate() {
            let id = GroupId(i as u64 + 1);
            d.id = id;
            cur.groups.insert(id, c);
            want.groups.insert(id, d);
        }
        (cur, want)
    })
}

fn no_changes(plan: &Plan) -> bool {
    !plan.summary().has_changes()
}

proptest! {
    /// Carrying out the plan gives the desired membership, owners aside, and planning again
    /// finds nothing to change.
    #[test]
    fn applying_the_plan_reaches_the_desired_state((cur, want) in states()) {
        let plan = diff(&want, &cur);
        let after = applied(&cur, &plan);
        for (id, d) in &want.groups {
            let before = &cur.groups[id];
            let got = &after.groups[id].members;
            let owner = before.owner().unwrap();
            // The owner is still the owner.
            prop_assert_eq!(got.get(&owner), Some(&Role::Owner));
            // Every declared member other than the owner has the declared role.
            for (u, r) in &d.members {
                if *u != owner {
                    prop_assert_eq!(got.get(u), Some(r), "group {} user {}", id, u);
                }
            }
            // Nobody undeclared was added; with prune, only the owner and declared owner stay.
            for (u, r) in got {
                if d.members.contains_key(u) || *u == owner {
                    continue;
                }
                prop_assert_eq!(before.members.get(u), Some(r), "user {} appeared or changed", u);
                if d.prune {
                    prop_assert_eq!(d.owner, Some(*u), "undeclared user {} kept despite prune", u);
                }
            }
        }
        prop_assert!(no_changes(&diff(&want, &after)), "re-plan is not empty");
    }

    /// The owner is never the subject of a change, whatever the file says.
    #[test]
    fn owner_is_never_changed((cur, want) in states()) {
        let plan = diff(&want, &cur);
        for g in &plan.groups {
            let owner = cur.groups[&g.id].owner().unwrap();
            for e in &g.entries {
                if let Entry::Change(c) = e {
                    prop_assert_ne!(c.user(), owner);
                    if let Change::Remove { role, .. } | Change::SetRole { from: role, .. } = c {
                        prop_assert_ne!(*role, Role::Owner);
                    }
                }
            }
        }
    }

    /// A desired state planned against itself (as a portal) has nothing to do.
    #[test]
    fn desired_against_itself_is_empty((_, want) in states()) {
        let mut as_current = CurrentState::default();
        for (id, d) in &want.groups {
            let mut members = d.members.clone();
            if let Some(o) = d.owner {
                members.insert(o, Role::Owner);
            }
            as_current.groups.insert(*id, CurrentGroup { members });
        }
        let plan = diff(&want, &as_current);
        prop_assert!(plan.groups.iter().all(|g| g.entries.is_empty()));
    }
}
