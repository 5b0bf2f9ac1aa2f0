//! Planner tests: data-driven cases (desired YAML + compact current state → rendered plan,
//! snapshotted inline) and properties over random states (`proptest`).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{Change, Entry, Plan, applied, diff};
use crate::model::{
    CurrentGroup, CurrentState, DesiredGroup, DesiredState, GroupId, Limit, Limits, Role, Setting,
    UserId,
};
use crate::render::{Style, text};

/// Current state in a compact form: `15: 1=A 10=K 21=E; 27: 5=A`.
fn current(s: &str) -> CurrentState {
    let mut state = CurrentState::default();
    for group in s.split(';').map(str::trim).filter(|g| !g.is_empty()) {
        let (id, members) = group.split_once(':').expect("`ID: members`");
        let g = state
            .groups
            .entry(GroupId::Num(id.trim().parse().unwrap()))
            .or_default();
        for m in members.split_whitespace() {
            let (user, role) = m.split_once('=').expect("`USER=ROLE`");
            let role = match role {
                "A" => Role::Owner,
                "E" => Role::Moderator,
                "K" => Role::Member,
                other => panic!("unknown role {other}"),
            };
            g.members.insert(UserId::Num(user.parse().unwrap()), role);
        }
    }
    state
}

/// A test file's desired state (IDs only).
fn desired_of(file: &str, yaml: &str) -> Result<DesiredState, crate::spec::Diagnostics> {
    crate::spec::parse(file, yaml).and_then(|s| crate::resolve::offline(&s))
}

fn plan_text(desired_yaml: &str, current_state: &str) -> String {
    let desired = desired_of("t.yaml", desired_yaml).expect("test YAML is valid");
    text::plan(
        &diff(&desired, &current(current_state)),
        &Default::default(),
        Style::default(),
    )
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

      group "Marketing" (#15)
        ! #1   owner  skipped: owner (not declared; owners are never removed)
        ~ #10  member -> moderator
        + #22  member
        - #30  member

    Plan: 1 to add, 1 to change, 1 to remove, 1 skipped.
    "#);
}

#[test]
fn in_sync_group_is_no_changes() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    owner: 1\n    members: [21]\n",
        "15: 1=A 21=K",
    );
    insta::assert_snapshot!(out, @r#"No changes."#);
}

#[test]
fn only_skipped_owner_is_no_changes() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    members: [21]\n",
        "15: 1=A 21=K",
    );
    insta::assert_snapshot!(out, @r#"
    roster found nothing to change; for information:

      group #15
        ! #1  owner  skipped: owner (not declared; owners are never removed)

    No changes. 1 skipped.
    "#);
}

#[test]
fn owner_declared_as_moderator_is_not_demoted() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    moderators: [1]\n    members: [2]\n",
        "15: 1=A",
    );
    insta::assert_snapshot!(out, @r#"
    roster will make these changes:

      group #15
        ! #1  owner  skipped: owner (declared as moderator; owners are never demoted)
        + #2  member

    Plan: 1 to add, 0 to change, 0 to remove, 1 skipped.
    "#);
}

#[test]
fn prune_false_keeps_undeclared_members() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    prune: false\n    moderators: [21]\n",
        "15: 1=A 21=K 30=K 31=E",
    );
    insta::assert_snapshot!(out, @r#"
    roster will make these changes:

      group #15
        ~ #21  member -> moderator

    Plan: 0 to add, 1 to change, 0 to remove, 0 skipped.
    "#);
}

#[test]
fn owner_mismatch_is_reported_and_declared_owner_kept() {
    let out = plan_text(
        "version: 1\ngroups:\n  - id: 15\n    owner: 5\n    members: [21]\n",
        "15: 1=A 5=E 21=K",
    );
    insta::assert_snapshot!(out, @r#"
    roster found nothing to change; for information:

      group #15
        ! #1  owner  skipped: owner (not declared; owners are never removed)
        ! owner differs: the file declares #5, the portal has #1 (pass --allow-owner-change to hand the group over)

    No changes. 1 skipped.
    "#);
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

      group #7
        ! #2  owner  skipped: owner (not declared; owners are never removed)
        - #4  member

      group "Sales" (#42)
        + #1  member
        + #3  member
        ! #8  owner  skipped: owner (not declared; owners are never removed)

    Plan: 2 to add, 0 to change, 1 to remove, 2 skipped.
    "#);
}

#[test]
fn json_format_is_stable() {
    let desired = desired_of(
        "t.yaml",
        "version: 1\ngroups:\n  - id: 15\n    name: M\n    owner: 3\n    moderators: [10]\n    members: [22]\n",
    )
    .unwrap();
    let out = crate::render::json::plan(
        &diff(&desired, &current("15: 1=A 10=K 30=E")),
        &Default::default(),
    );
    insta::assert_snapshot!(out, @r#"
    {
      "format_version": "1",
      "has_changes": true,
      "summary": {
        "add": 1,
        "invite": 0,
        "change": 1,
        "remove": 1,
        "owner": 0,
        "skipped": 1,
        "pending": 0
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
          ],
          "departments": []
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
    let desired = desired_of("t.yaml", yaml).unwrap();
    let plan = diff(&desired, &current(cur));
    let users: Vec<Vec<u64>> = plan
        .groups
        .iter()
        .map(|g| g.entries.iter().map(|e| e.user().expect_num()).collect())
        .collect();
    assert_eq!(users, vec![vec![2, 8, 9], vec![1, 4, 5, 6, 7]]);
}

// ---- properties ----

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Moderator), Just(Role::Member)]
}

/// A random portal group (with an owner) and a random desired group over the same small user
/// space, so adds, changes, removals, owner conflicts and protected users all occur often.
fn group_pair() -> impl Strategy<Value = (CurrentGroup, DesiredGroup)> {
    (
        1u64..12,
        prop::collection::btree_map(1u64..12, role(), 0..8),
        prop::collection::btree_map(1u64..12, role(), 0..8),
        any::<bool>(),
        prop::option::of(1u64..12),
        prop::collection::btree_set(1u64..12, 0..3),
        group_limits(),
    )
        .prop_map(
            |(owner, cur, want, prune, declared_owner, protected, limits)| {
                let mut members: BTreeMap<UserId, Role> =
                    cur.into_iter().map(|(u, r)| (UserId::Num(u), r)).collect();
                members.insert(UserId::Num(owner), Role::Owner);
                let mut want: BTreeMap<UserId, Role> =
                    want.into_iter().map(|(u, r)| (UserId::Num(u), r)).collect();
                // The spec loader forbids listing the declared owner as a member too.
                if let Some(o) = declared_owner {
                    want.remove(&UserId::Num(o));
                }
                let desired = DesiredGroup {
                    owner: declared_owner.map(UserId::Num),
                    members: want,
                    prune,
                    protected: protected.into_iter().map(UserId::Num).collect(),
                    limits,
                    ..DesiredGroup::new(GroupId::Num(0))
                };
                (
                    CurrentGroup {
                        members,
                        ..Default::default()
                    },
                    desired,
                )
            },
        )
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        (0u64..6).prop_map(Limit::Count),
        (0u8..=100).prop_map(Limit::Percent)
    ]
}

fn setting<T: std::fmt::Debug + Clone>(
    value: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Setting<T>>> {
    prop::option::of(value.prop_map(|value| Setting { value, line: 1 }))
}

fn group_limits() -> impl Strategy<Value = Limits> {
    (setting(limit()), setting(any::<bool>())).prop_map(|(max_removals, allow_empty)| Limits {
        max_removals,
        allow_empty,
        max_total_removals: None,
    })
}

fn states() -> impl Strategy<Value = (CurrentState, DesiredState)> {
    (
        prop::collection::vec(group_pair(), 1..5),
        prop::collection::btree_set(1u64..12, 0..2),
        (setting(limit()), setting(any::<bool>()), setting(limit())),
    )
        .prop_map(
            |(pairs, protected, (max_removals, allow_empty, max_total))| {
                let mut cur = CurrentState::default();
                let mut want = DesiredState {
                    protected: protected.into_iter().map(UserId::Num).collect(),
                    limits: Limits {
                        max_removals,
                        allow_empty,
                        max_total_removals: max_total,
                    },
                    ..DesiredState::default()
                };
                for (i, (c, mut d)) in pairs.into_iter().enumerate() {
                    let id = GroupId::Num(i as u64 + 1);
                    d.id = id;
                    cur.groups.insert(id, c);
                    want.groups.insert(id, d);
                }
                (cur, want)
            },
        )
}

fn no_changes(plan: &Plan) -> bool {
    !plan.summary().has_changes()
}

fn removals(g: &super::GroupPlan) -> usize {
    g.changes()
        .filter(|c| matches!(c, Change::Remove { .. }))
        .count()
}

proptest! {
    /// Carrying out the plan gives the desired membership, except for owners and protected
    /// users, and planning again finds nothing to change.
    #[test]
    fn applying_the_plan_reaches_the_desired_state((cur, want) in states()) {
        let plan = diff(&want, &cur);
        let after = applied(&cur, &plan);
        for (id, d) in &want.groups {
            let before = &cur.groups[id];
            let got = &after.groups[id].members;
            let owner = before.owner().unwrap();
            let kept = |u: &UserId| *u == owner || want.is_protected(d, *u);
            // The owner is still the owner.
            prop_assert_eq!(got.get(&owner), Some(&Role::Owner));
            // Every declared member has the declared role, unless that would demote a
            // protected user (who keeps the higher role).
            for (u, r) in &d.members {
                if *u == owner {
                    continue;
                }
                match (before.members.get(u), got.get(u)) {
                    (Some(was), Some(now)) if kept(u) && r > was => prop_assert_eq!(now, was),
                    (_, now) => prop_assert_eq!(now, Some(r), "group {} user {}", id, u),
                }
            }
            // Nobody undeclared was added; with prune, only owners and protected users stay.
            for (u, r) in got {
                if d.members.contains_key(u) || *u == owner {
                    continue;
                }
                prop_assert_eq!(before.members.get(u), Some(r), "user {} appeared or changed", u);
                if d.prune {
                    prop_assert!(d.owner == Some(*u) || kept(u), "undeclared user {} kept despite prune", u);
                }
            }
        }
        prop_assert!(no_changes(&diff(&want, &after)), "re-plan is not empty");
    }

    /// Owners and protected users are never removed or demoted, whatever the file says; the
    /// plan says so with a skipped entry, which is never a change.
    #[test]
    fn owners_and_protected_users_are_never_removed_or_demoted((cur, want) in states()) {
        let plan = diff(&want, &cur);
        for g in &plan.groups {
            let before = &cur.groups[&g.id];
            let owner = before.owner().unwrap();
            let d = &want.groups[&g.id];
            for e in &g.entries {
                match e {
                    Entry::Change(c) => {
                        prop_assert_ne!(c.user(), owner);
                        if let Change::Remove { role, .. } | Change::SetRole { from: role, .. } = c {
                            prop_assert_ne!(*role, Role::Owner);
                        }
                        if want.is_protected(d, c.user()) {
                            match *c {
                                Change::Remove { .. } => prop_assert!(false, "protected {} removed", c.user()),
                                Change::SetRole { from, to, .. } => prop_assert!(to < from, "protected {} demoted", c.user()),
                                _ => {}
                            }
                        }
                    }
                    Entry::Skipped(s) => {
                        prop_assert!(s.user == owner || want.is_protected(d, s.user));
                        prop_assert_eq!(Some(&s.role), before.members.get(&s.user));
                    }
                    Entry::Pending(_) => {}
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
            as_current.groups.insert(*id, CurrentGroup { members, ..Default::default() });
        }
        let plan = diff(&want, &as_current);
        prop_assert!(plan.groups.iter().all(|g| g.entries.is_empty()));
    }

    /// A plan that passes `check_limits` removes no more than the limits allow, per group and
    /// in total; and a plan with no removals always passes.
    #[test]
    fn a_plan_within_its_limits_removes_no_more_than_they_allow((cur, want) in states()) {
        let plan = diff(&want, &cur);
        let breaches = super::check_limits(&want, &cur, &plan);
        let total: usize = plan.groups.iter().map(removals).sum();
        if total == 0 {
            prop_assert!(breaches.is_empty());
        }
        if !breaches.is_empty() {
            return Ok(());
        }
        let mut all = 0;
        for g in &plan.groups {
            let d = &want.groups[&g.id];
            let members = &cur.groups[&g.id].members;
            all += members.len();
            let non_owner = members.values().filter(|r| **r != Role::Owner).count();
            prop_assert_eq!(g.current_non_owners, non_owner);
            let n = removals(g);
            let limit = d.limits.max_removals.or(want.limits.max_removals).map_or(Limit::Percent(25), |s| s.value);
            if matches!(limit, Limit::Count(_)) || non_owner >= super::PERCENT_FLOOR {
                prop_assert!(n as u64 <= limit.allowed(non_owner), "group {} removes {} over {}", g.id, n, limit);
            }
            let allow_empty = d.limits.allow_empty.or(want.limits.allow_empty).is_some_and(|s| s.value);
            if !allow_empty && non_owner >= super::EMPTY_FLOOR {
                prop_assert!(n < non_owner, "group {} emptied", g.id);
            }
        }
        let limit = want.limits.max_total_removals.map_or(Limit::Percent(25), |s| s.value);
        if matches!(limit, Limit::Count(_)) || all >= super::PERCENT_FLOOR {
            prop_assert!(total as u64 <= limit.allowed(all));
        }
    }
}

// ---- protected users ----

#[test]
fn protected_users_are_skipped_like_owners() {
    let out = plan_text(
        "version: 1
protected: [7]
groups:
  - id: 15
    protected: [8]
    members: [9, 10, 11]
  - id: 16
    members: [8]
",
        // 7 undeclared (protected everywhere), 8 protected in 15 only, 9 declared as member
        // but moderator today (protected nowhere: demoted), 10 promoted although protected?
        "15: 1=A 7=K 8=E 9=E 10=K; 16: 2=A 7=E 8=E",
    );
    insta::assert_snapshot!(out, @r#"
    roster will make these changes:

      group #15
        ! #1   owner  skipped: owner (not declared; owners are never removed)
        ! #7   member  skipped: protected (not declared; protected users are never removed)
        ! #8   moderator  skipped: protected (not declared; protected users are never removed)
        ~ #9   moderator -> member
        + #11  member

      group #16
        ! #2  owner  skipped: owner (not declared; owners are never removed)
        ! #7  moderator  skipped: protected (not declared; protected users are never removed)
        ~ #8  moderator -> member

    Plan: 1 to add, 2 to change, 0 to remove, 5 skipped.
    "#);
}

#[test]
fn protected_users_are_not_demoted_but_may_be_promoted_or_added() {
    let out = plan_text(
        "version: 1
protected: [5, 6, 7, 1]
groups:
  - id: 15
    moderators: [6, 7]
    members: [5, 1]
",
        "15: 1=A 5=E 6=K",
    );
    insta::assert_snapshot!(out, @r#"
    roster will make these changes:

      group #15
        ! #1  owner  skipped: owner (declared as member; owners are never demoted)
        ! #5  moderator  skipped: protected (declared as member; protected users are never demoted)
        ~ #6  member -> moderator
        + #7  moderator

    Plan: 1 to add, 1 to change, 0 to remove, 2 skipped.
    "#);
    let desired = desired_of(
        "t.yaml",
        "version: 1\nprotected: [5]\ngroups:\n  - id: 15\n    members: [5]\n",
    )
    .unwrap();
    let json = crate::render::json::plan(
        &diff(&desired, &current("15: 1=A 5=E")),
        &Default::default(),
    );
    insta::assert_snapshot!(json, @r#"
    {
      "format_version": "1",
      "has_changes": false,
      "summary": {
        "add": 0,
        "invite": 0,
        "change": 0,
        "remove": 0,
        "owner": 0,
        "skipped": 2,
        "pending": 0
      },
      "groups": [
        {
          "id": 15,
          "name": null,
          "entries": [
            {
              "action": "skip",
              "user": 1,
              "role": "owner",
              "wanted": "remove",
              "reason": "owner"
            },
            {
              "action": "skip",
              "user": 5,
              "role": "moderator",
              "wanted": "member",
              "reason": "protected"
            }
          ],
          "departments": []
        }
      ]
    }
    "#);
}

#[test]
fn prune_false_leaves_protected_users_alone_silently() {
    let out = plan_text(
        "version: 1\nprotected: [7]\ngroups:\n  - id: 15\n    owner: 1\n    prune: false\n",
        "15: 1=A 7=K",
    );
    insta::assert_snapshot!(out, @r#"No changes."#);
}

// ---- mass-removal limits ----

/// One group of a limits scenario: its ID, its current non-owner members (users 2..), how many
/// of them the file drops, and extra YAML lines for the group.
struct G(u64, usize, usize, &'static str);

/// The breaches of a scenario as the shell prints them, or `ok`. `head` goes at the top of the
/// file (`limits:`, `protected:`); every group has owner 1.
fn limits(head: &str, groups: &[G]) -> String {
    let mut yaml = format!("version: 1\n{head}\ngroups:\n");
    let mut cur = String::new();
    for G(id, have, drop, extra) in groups {
        let keep: Vec<String> = (2..2 + have - drop).map(|u| u.to_string()).collect();
        yaml.push_str(&format!(
            "  - id: {id}\n    name: G{id}\n    members: [{}]\n{extra}",
            keep.join(", ")
        ));
        let members: Vec<String> = (2..2 + have).map(|u| format!("{u}=K")).collect();
        cur.push_str(&format!("{id}: 1=A {};", members.join(" ")));
    }
    let desired = desired_of("t.yaml", &yaml).unwrap_or_else(|d| panic!("{d}\n{yaml}"));
    let cur = current(&cur);
    let plan = diff(&desired, &cur);
    let breaches = super::check_limits(&desired, &cur, &plan);
    if breaches.is_empty() {
        "ok".to_owned()
    } else {
        text::limit_breaches(&breaches)
    }
}

#[test]
fn default_percent_applies_from_ten_members() {
    // 9 members: the percent does not apply; removing 8 of 9 is fine (not all).
    assert_eq!(limits("", &[G(15, 9, 8, ""), G(16, 60, 0, "")]), "ok");
    // 10 members: 25 % allows 2 (2.5 rounded down).
    assert_eq!(limits("", &[G(15, 10, 2, ""), G(16, 30, 0, "")]), "ok");
    insta::assert_snapshot!(limits("", &[G(15, 10, 3, ""), G(16, 30, 0, "")]), @r#"error: group "G15" (#15): the plan removes 3 of 10 current non-owner members (30 %), over the limit of 25 % (default; set limits.max_removals in the file or pass --allow-mass-removal for one run)"#);
}

#[test]
fn exactly_the_limit_passes() {
    // 40 members, 25 % = 10: ten pass, eleven do not. Other groups keep the run under 25 %.
    let quiet = G(16, 100, 0, "");
    assert_eq!(limits("", &[G(15, 40, 10, ""), G(16, 100, 0, "")]), "ok");
    insta::assert_snapshot!(limits("", &[G(15, 40, 11, ""), quiet]), @r#"error: group "G15" (#15): the plan removes 11 of 40 current non-owner members (27.5 %), over the limit of 25 % (default; set limits.max_removals in the file or pass --allow-mass-removal for one run)"#);
    // The message rounds the share up, so it never reads as "25 %" over a 25 % limit.
    insta::assert_snapshot!(limits("", &[G(15, 399, 100, ""), G(16, 1000, 0, "")]), @r#"error: group "G15" (#15): the plan removes 100 of 399 current non-owner members (25.1 %), over the limit of 25 % (default; set limits.max_removals in the file or pass --allow-mass-removal for one run)"#);
}

#[test]
fn a_group_of_four_or_more_is_never_emptied() {
    assert_eq!(limits("", &[G(15, 3, 3, ""), G(16, 30, 0, "")]), "ok");
    insta::assert_snapshot!(limits("", &[G(15, 4, 4, ""), G(16, 30, 0, "")]), @r#"error: group "G15" (#15): the plan removes all 4 current non-owner members, and roster does not empty a group of 4 or more (default; set limits.allow_empty: true for the group or pass --allow-mass-removal for one run)"#);
    assert_eq!(limits("", &[G(15, 4, 3, ""), G(16, 30, 0, "")]), "ok");
    // Switched off per group, or for the whole file (a group can switch it back on).
    assert_eq!(
        limits(
            "",
            &[
                G(15, 4, 4, "    limits: { allow_empty: true }\n"),
                G(16, 30, 0, "")
            ]
        ),
        "ok"
    );
    insta::assert_snapshot!(limits(
        "limits: { allow_empty: true }",
        &[G(15, 4, 4, ""), G(17, 5, 5, "    limits: { allow_empty: false }\n"), G(16, 100, 0, "")]
    ), @r#"error: group "G17" (#17): the plan removes all 5 current non-owner members, and roster does not empty a group of 4 or more (the group's limits.allow_empty on line 10; change it there or pass --allow-mass-removal for one run)"#);
    // Both rules at once: 12 of 12 breaks the percent and empties the group.
    insta::assert_snapshot!(limits("", &[G(15, 12, 12, ""), G(16, 100, 0, "")]), @r#"
    error: group "G15" (#15): the plan removes 12 of 12 current non-owner members (100 %), over the limit of 25 % (default; set limits.max_removals in the file or pass --allow-mass-removal for one run)
    error: group "G15" (#15): the plan removes all 12 current non-owner members, and roster does not empty a group of 4 or more (default; set limits.allow_empty: true for the group or pass --allow-mass-removal for one run)
    "#);
}

#[test]
fn counts_apply_at_any_size_and_percents_from_ten() {
    let top = "limits: { max_removals: 2 }";
    assert_eq!(limits(top, &[G(15, 3, 2, ""), G(16, 30, 0, "")]), "ok");
    insta::assert_snapshot!(limits(top, &[G(15, 3, 3, ""), G(16, 30, 0, "")]), @r#"error: group "G15" (#15): the plan removes 3 of 3 current non-owner members (100 %), over the limit of 2 (limits.max_removals on line 2; change it there or pass --allow-mass-removal for one run)"#);
    let top = "limits: { max_removals: 10% }";
    assert_eq!(limits(top, &[G(15, 9, 3, ""), G(16, 60, 0, "")]), "ok");
    insta::assert_snapshot!(limits(top, &[G(15, 10, 2, ""), G(16, 60, 0, "")]), @r#"error: group "G15" (#15): the plan removes 2 of 10 current non-owner members (20 %), over the limit of 10 % (limits.max_removals on line 2; change it there or pass --allow-mass-removal for one run)"#);
    // Zero forbids removals; 100 % allows all (but the empty rule still holds).
    insta::assert_snapshot!(limits("limits: { max_removals: 0 }", &[G(15, 2, 1, ""), G(16, 60, 0, "")]), @r#"error: group "G15" (#15): the plan removes 1 of 2 current non-owner members (50 %), over the limit of 0 (limits.max_removals on line 2; change it there or pass --allow-mass-removal for one run)"#);
    assert_eq!(
        limits(
            "limits: { max_removals: 100%, allow_empty: true, max_total_removals: 100% }",
            &[G(15, 20, 20, "")]
        ),
        "ok"
    );
}

#[test]
fn group_limits_override_the_file() {
    let top = "limits:\n  max_removals: 1";
    let g = "    limits:\n      max_removals: 50%\n";
    assert_eq!(limits(top, &[G(15, 10, 5, g), G(16, 60, 0, "")]), "ok");
    insta::assert_snapshot!(limits(top, &[G(15, 10, 6, g), G(16, 60, 1, ""), G(17, 60, 2, "")]), @r#"
    error: group "G15" (#15): the plan removes 6 of 10 current non-owner members (60 %), over the limit of 50 % (the group's limits.max_removals on line 9; change it there or pass --allow-mass-removal for one run)
    error: group "G17" (#17): the plan removes 2 of 60 current non-owner members (3.4 %), over the limit of 1 (limits.max_removals on line 3; change it there or pass --allow-mass-removal for one run)
    "#);
}

#[test]
fn the_whole_run_has_a_limit_too() {
    // Four groups of 10 (44 memberships with owners) each lose 2 (8 = 18.2 %): fine.
    let four = |drop| {
        [
            G(1, 10, drop, ""),
            G(2, 10, drop, ""),
            G(3, 10, drop, ""),
            G(4, 10, drop, ""),
        ]
    };
    assert_eq!(limits("", &four(2)), "ok");
    insta::assert_snapshot!(limits("limits: { max_total_removals: 15% }", &four(2)), @r#"error: the plan removes 8 of 44 current memberships in this run (18.2 %), over the limit of 15 % (limits.max_total_removals on line 2; change it there or pass --allow-mass-removal for one run)"#);
    // Many small groups under the per-group floor still add up.
    let small: Vec<G> = (1..=10).map(|id| G(id, 3, 1, "")).collect();
    assert_eq!(limits("", &small), "ok", "10 of 40 is exactly 25 %");
    let small: Vec<G> = (1..=10).map(|id| G(id, 2, 1, "")).collect();
    insta::assert_snapshot!(limits("", &small), @r#"error: the plan removes 10 of 30 current memberships in this run (33.4 %), over the limit of 25 % (default; set limits.max_total_removals in the file or pass --allow-mass-removal for one run)"#);
    // A run under 10 memberships is below the percent floor; a count still applies.
    assert_eq!(limits("", &[G(1, 3, 2, "")]), "ok");
    insta::assert_snapshot!(limits("limits: { max_total_removals: 1 }", &[G(1, 3, 2, "")]), @r#"error: the plan removes 2 of 4 current memberships in this run (50 %), over the limit of 1 (limits.max_total_removals on line 2; change it there or pass --allow-mass-removal for one run)"#);
}

#[test]
fn skips_and_demotions_do_not_count_as_removals() {
    // 4 members, all undeclared, but protected: nothing is removed.
    assert_eq!(limits("protected: [2, 3, 4, 5]", &[G(15, 4, 4, "")]), "ok");
    let desired = desired_of(
        "t.yaml",
        "version: 1\ngroups:\n  - id: 15\n    members: [2, 3, 4, 5]\n",
    )
    .unwrap();
    let cur = current("15: 1=A 2=E 3=E 4=E 5=E");
    let plan = diff(&desired, &cur);
    assert_eq!(plan.summary().change, 4);
    assert!(super::check_limits(&desired, &cur, &plan).is_empty());
}

#[test]
fn breaches_in_json_are_an_additive_field() {
    let desired = desired_of(
        "t.yaml",
        "version: 1\nlimits: { max_total_removals: 1 }\ngroups:\n  - id: 15\n    name: M\n    members: [2]\n    limits: { max_removals: 1 }\n",
    )
    .unwrap();
    let cur = current("15: 1=A 2=K 3=K 4=K 5=K");
    let plan = diff(&desired, &cur);
    let breaches = super::check_limits(&desired, &cur, &plan);
    let json = crate::render::json::plan_with_limits(&plan, &Default::default(), &breaches);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    insta::assert_snapshot!(serde_json::to_string_pretty(&v["limit_breaches"]).unwrap(), @r#"
    [
      {
        "allowed": 1,
        "current": 4,
        "group": 15,
        "limit": {
          "count": 1
        },
        "line": 7,
        "name": "M",
        "origin": "group",
        "removals": 3,
        "rule": "max_removals",
        "scope": "group"
      },
      {
        "allowed": 1,
        "current": 5,
        "group": null,
        "limit": {
          "count": 1
        },
        "line": 2,
        "name": null,
        "origin": "file",
        "removals": 3,
        "rule": "max_total_removals",
        "scope": "run"
      }
    ]
    "#);
    // The rest of the document is the plain plan's, field for field.
    let mut without = v.clone();
    without.as_object_mut().unwrap().remove("limit_breaches");
    let plain: serde_json::Value =
        serde_json::from_str(&crate::render::json::plan(&plan, &Default::default())).unwrap();
    assert_eq!(without, plain);
    let none = crate::render::json::plan_with_limits(&plan, &Default::default(), &[]);
    assert!(none.contains("\"limit_breaches\": []"), "{none}");
}

// ---- people as people: invitations, requests, inactive users, owners, synced groups ----

use super::{Options, Pending, PendingKind, SkipReason, diff_with};
use crate::model::AddWith;

/// A current group in a compact form: `1=A 10=K 21=I 22=R dept=8,12 name=Sales perms=E`
/// (`I` invited, `R` asked to join).
fn group(s: &str) -> CurrentGroup {
    let mut g = CurrentGroup::default();
    for t in s.split_whitespace() {
        let (k, v) = t.split_once('=').expect("`KEY=VALUE`");
        match k {
            "dept" => g.departments = v.split(',').map(|d| d.parse().unwrap()).collect(),
            "name" => g.name = Some(v.to_owned()),
            "perms" => g.initiate_perms = Some(role_code(v)),
            _ => {
                let user = UserId::Num(k.parse().unwrap());
                match v {
                    "I" => {
                        g.invited.insert(user);
                    }
                    "R" => {
                        g.requested.insert(user);
                    }
                    code => {
                        g.members.insert(user, role_code(code));
                    }
                }
            }
        }
    }
    g
}

fn role_code(code: &str) -> Role {
    match code {
        "A" => Role::Owner,
        "E" => Role::Moderator,
        "K" => Role::Member,
        other => panic!("unknown role {other}"),
    }
}

/// One desired group from YAML with the users in `inactive` dismissed, planned against
/// `have`; the entries as compact strings.
fn entries(yaml: &str, inactive: &[u64], have: &str, options: Options) -> (Vec<String>, Plan) {
    let spec = crate::spec::parse("t.yaml", yaml).unwrap();
    let wanted = crate::resolve::wanted(&spec);
    let found = crate::model::Lookups {
        people: wanted
            .users
            .iter()
            .map(|u| crate::model::Person {
                id: *u,
                email: None,
                name: None,
                active: !inactive.contains(&u.expect_num()),
                extranet: false,
            })
            .collect(),
        ..Default::default()
    };
    let resolved = crate::resolve::resolve(&spec, &found);
    assert!(resolved.errors.is_empty(), "{:?}", resolved.errors);
    let desired = resolved.desired;
    let id = *desired.groups.keys().next().unwrap();
    let mut cur = CurrentState::default();
    cur.groups.insert(id, group(have));
    let plan = diff_with(&desired, &cur, options);
    let list = plan.groups[0]
        .entries
        .iter()
        .map(|e| match e {
            Entry::Change(c) => format!("{c:?}"),
            Entry::Skipped(s) => format!("skip {} {:?} {:?}", s.user, s.wanted, s.reason),
            Entry::Pending(p) => format!("pending {} {:?}", p.user, p.kind),
        })
        .collect();
    // Convergence: carrying the plan out and planning again changes nothing.
    let again = diff_with(&desired, &applied(&cur, &plan), options);
    assert!(no_changes(&again), "re-plan is not empty: {again:?}");
    (list, plan)
}

const TRANSFER: Options = Options {
    allow_owner_change: true,
};

#[test]
fn invited_users_are_pending_never_invited_again() {
    let (e, plan) = entries(
        "version: 1\nadd_with: invite\ngroups:\n  - id: 1\n    moderators: [5]\n    members: [6, 7]\n",
        &[],
        "1=A 5=I 8=I",
        Options::default(),
    );
    assert_eq!(
        e,
        [
            "skip 1 Remove Owner",
            "pending 5 Invited { declared: Some(Moderator) }",
            "Invite { user: Num(6), role: Member }",
            "Invite { user: Num(7), role: Member }",
            "pending 8 Invited { declared: None }",
        ]
    );
    let s = plan.summary();
    assert_eq!((s.invite, s.add, s.pending, s.skipped), (2, 0, 2, 1));
    assert!(s.has_changes());
    // With add_with: add an invited user is still pending (user.add would skip them).
    let (e, _) = entries(
        "version: 1\ngroups:\n  - id: 1\n    owner: 1\n    members: [5]\n",
        &[],
        "1=A 5=I",
        Options::default(),
    );
    assert_eq!(e, ["pending 5 Invited { declared: Some(Member) }"]);
}

#[test]
fn declared_requests_are_accepted_and_others_shown() {
    // 9 is declared but dismissed, and asked to join: shown once, as inactive.
    let (e, plan) = entries(
        "version: 1\ngroups:\n  - id: 1\n    owner: 1\n    moderators: [5]\n    members: [6, 9]\n",
        &[9],
        "1=A 5=R 7=R 9=R",
        Options::default(),
    );
    assert_eq!(
        e,
        [
            "Accept { user: Num(5), role: Moderator }",
            "Add { user: Num(6), role: Member }",
            "pending 7 Requested",
            "pending 9 Inactive { role: Member }",
        ]
    );
    assert_eq!(
        plan.summary().add,
        2,
        "an accepted request counts as an add"
    );
    assert_eq!(plan.summary().pending, 2);
}

#[test]
fn inactive_declared_users_are_pending_and_never_removed() {
    // 5 dismissed and absent: pending; 6 dismissed but still listed by the portal: left
    // alone; 7 dismissed and invited: shown as invited.
    let (e, plan) = entries(
        "version: 1\ngroups:\n  - id: 1\n    owner: 1\n    moderators: [6]\n    members: [5, 7]\n",
        &[5, 6, 7],
        "1=A 6=K 7=I 8=K",
        Options::default(),
    );
    assert_eq!(
        e,
        [
            "pending 5 Inactive { role: Member }",
            "pending 7 Invited { declared: Some(Member) }",
            "Remove { user: Num(8), role: Member }",
        ]
    );
    assert_eq!(plan.summary().pending, 2);
}

#[test]
fn synced_groups_plan_no_removals_unless_prune_is_written() {
    let yaml = |prune: &str| {
        format!("version: 1\ngroups:\n  - id: 1\n    owner: 1\n    members: [5, 6]\n{prune}")
    };
    let have = "1=A 5=K 7=K 8=E dept=8,12";
    let (e, plan) = entries(&yaml(""), &[], have, Options::default());
    assert_eq!(
        e,
        [
            "Add { user: Num(6), role: Member }",
            "skip 7 Remove DeptSynced",
            "skip 8 Remove DeptSynced",
        ]
    );
    assert!(!plan.groups[0].prune_synced);
    assert_eq!(plan.groups[0].departments, [8, 12]);
    let (e, plan) = entries(&yaml("    prune: true\n"), &[], have, Options::default());
    assert_eq!(
        e,
        [
            "Add { user: Num(6), role: Member }",
            "Remove { user: Num(7), role: Member }",
            "Remove { user: Num(8), role: Moderator }",
        ]
    );
    assert!(plan.groups[0].prune_synced);
    let (e, plan) = entries(&yaml("    prune: false\n"), &[], have, Options::default());
    assert_eq!(e, ["Add { user: Num(6), role: Member }"]);
    assert!(!plan.groups[0].prune_synced);
    // Protected users stay protected (and say so) in a synced group.
    let (e, _) = entries(
        &format!("{}    protected: [7]\n", yaml("")),
        &[],
        have,
        Options::default(),
    );
    assert_eq!(e[1], "skip 7 Remove Protected");
}

#[test]
fn an_inactive_declared_owner_is_never_made_the_owner() {
    // The API would accept it (rules §4: only existence is checked); roster does not.
    let yaml = "version: 1\ngroups:\n  - id: 1\n    owner: 5\n    members: [1]\n";
    let (e, plan) = entries(yaml, &[5], "1=A 6=K", TRANSFER);
    assert_eq!(
        e,
        [
            "skip 1 Demote(Member) Owner",
            "pending 5 Inactive { role: Owner }",
            "Remove { user: Num(6), role: Member }"
        ]
    );
    assert_eq!(plan.summary().owner, 0);
    assert!(
        plan.groups[0].owner_mismatch.is_some(),
        "the mismatch is still reported"
    );
    // Already the owner (the read shows a dismissed owner): nothing to say.
    let (e, _) = entries(yaml, &[5], "5=A 1=K", TRANSFER);
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn owner_transfer_comes_first_and_reconciles_the_old_owner() {
    let yaml = |rest: &str| format!("version: 1\ngroups:\n  - id: 1\n    owner: 5\n{rest}");
    // Old owner not declared: a member after the transfer, then removed.
    let (e, plan) = entries(&yaml("    members: [6]\n"), &[], "1=A 5=K 6=K", TRANSFER);
    assert_eq!(
        e,
        [
            "SetOwner { from: Some(Num(1)), to: Num(5) }",
            "Remove { user: Num(1), role: Member }",
        ]
    );
    assert_eq!(plan.summary().owner, 1);
    assert!(plan.groups[0].owner_mismatch.is_none());
    // Declared as moderator: promoted. As member: kept. Protected: kept.
    let (e, _) = entries(&yaml("    moderators: [1]\n"), &[], "1=A 5=E", TRANSFER);
    assert_eq!(
        e,
        [
            "SetOwner { from: Some(Num(1)), to: Num(5) }",
            "SetRole { user: Num(1), from: Member, to: Moderator }",
        ]
    );
    let (e, _) = entries(&yaml("    members: [1]\n"), &[], "1=A 5=E", TRANSFER);
    assert_eq!(e, ["SetOwner { from: Some(Num(1)), to: Num(5) }"]);
    let (e, _) = entries(&yaml("    protected: [1]\n"), &[], "1=A", TRANSFER);
    assert_eq!(
        e,
        [
            "SetOwner { from: Some(Num(1)), to: Num(5) }",
            "skip 1 Remove Protected",
        ]
    );
    // The new owner invited or asking to join: made owner all the same, nothing else.
    let (e, _) = entries(&yaml("    members: [1]\n"), &[], "1=A 5=I", TRANSFER);
    assert_eq!(e, ["SetOwner { from: Some(Num(1)), to: Num(5) }"]);
    let (e, _) = entries(&yaml("    members: [1]\n"), &[], "1=A 5=R", TRANSFER);
    assert_eq!(e, ["SetOwner { from: Some(Num(1)), to: Num(5) }"]);
    // A group without an owner gets one.
    let (e, _) = entries(&yaml(""), &[], "6=K", TRANSFER);
    assert_eq!(
        e,
        [
            "SetOwner { from: None, to: Num(5) }",
            "Remove { user: Num(6), role: Member }",
        ]
    );
    // Without the option: reported, nothing changes for the owner.
    let (e, plan) = entries(
        &yaml("    members: [1]\n"),
        &[],
        "1=A 5=K",
        Options::default(),
    );
    assert_eq!(e, ["skip 1 Demote(Member) Owner"]);
    assert_eq!(
        plan.groups[0].owner_mismatch,
        Some(super::OwnerMismatch {
            declared: UserId::Num(5),
            actual: Some(UserId::Num(1))
        })
    );
    // The declared owner already owns the group: no change with the option either.
    let (e, _) = entries(&yaml(""), &[], "5=A", TRANSFER);
    assert!(e.is_empty());
}

#[test]
fn the_portal_name_and_the_invitation_text_reach_the_plan() {
    let (_, plan) = entries(
        "version: 1\ninvite_message: Hello\ngroups:\n  - id: 1\n    name: Mine\n",
        &[],
        "name=Theirs",
        Options::default(),
    );
    assert_eq!(plan.groups[0].name.as_deref(), Some("Theirs"));
    assert_eq!(plan.groups[0].invite_message.as_deref(), Some("Hello"));
    let (_, plan) = entries(
        "version: 1\ngroups:\n  - id: 1\n    name: Mine\n",
        &[],
        "",
        Options::default(),
    );
    assert_eq!(plan.groups[0].name.as_deref(), Some("Mine"));
}

// ---- properties over invitations, requests, inactive users, transfers, synced groups ----

/// A random portal group with invitations, requests and departments, and a random desired
/// group with inactive users, add_with and an explicit prune, over one small user space.
fn people_pair() -> impl Strategy<Value = (CurrentGroup, DesiredGroup)> {
    (
        group_pair(),
        prop::collection::btree_map(1u64..12, 0u8..3, 0..6),
        prop::collection::btree_map(1u64..12, role(), 0..3),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |((mut cur, mut want), pending, inactive, (dept, explicit, invite, no_owner))| {
                for (u, kind) in pending {
                    let u = UserId::Num(u);
                    if cur.members.contains_key(&u) {
                        continue;
                    }
                    match kind {
                        0 => cur.invited.insert(u),
                        1 => cur.requested.insert(u),
                        _ => false,
                    };
                }
                for (u, r) in inactive {
                    let u = UserId::Num(u);
                    if want.owner != Some(u) && !want.members.contains_key(&u) {
                        want.inactive.insert(u, r);
                    }
                }
                if dept {
                    cur.departments = vec![8];
                }
                if no_owner {
                    cur.members.retain(|_, r| *r != Role::Owner);
                }
                want.prune_explicit = explicit;
                want.add_with = if invite {
                    AddWith::Invite
                } else {
                    AddWith::Add
                };
                (cur, want)
            },
        )
}

fn people_states() -> impl Strategy<Value = (CurrentState, DesiredState, Options)> {
    (
        prop::collection::vec(people_pair(), 1..4),
        prop::collection::btree_set(1u64..12, 0..2),
        any::<bool>(),
    )
        .prop_map(|(pairs, protected, allow_owner_change)| {
            let mut cur = CurrentState::default();
            let mut want = DesiredState {
                protected: protected.into_iter().map(UserId::Num).collect(),
                ..DesiredState::default()
            };
            for (i, (c, mut d)) in pairs.into_iter().enumerate() {
                let id = GroupId::Num(i as u64 + 1);
                d.id = id;
                cur.groups.insert(id, c);
                want.groups.insert(id, d);
            }
            (cur, want, Options { allow_owner_change })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Everything the issue promises about one group's plan, checked entry by entry.
    #[test]
    fn people_rules_hold((cur, want, options) in people_states()) {
        let plan = diff_with(&want, &cur, options);
        for g in &plan.groups {
            let have = &cur.groups[&g.id];
            let d = &want.groups[&g.id];
            let owner = have.owner();
            let transfer = g.changes().find_map(|c| match *c {
                Change::SetOwner { from, to } => Some((from, to)),
                _ => None,
            });
            // SetOwner only with the option, only where the declared owner differs, first.
            match transfer {
                Some((from, to)) => {
                    prop_assert!(options.allow_owner_change);
                    prop_assert_eq!(Some(to), d.owner);
                    prop_assert_eq!(from, owner);
                    prop_assert_ne!(Some(to), owner);
                    prop_assert!(matches!(g.entries[0], Entry::Change(Change::SetOwner { .. })), "owner change not first");
                    prop_assert!(g.owner_mismatch.is_none());
                }
                None => prop_assert!(
                    !options.allow_owner_change || d.owner.is_none() || d.owner == owner
                ),
            }
            // One entry per user, sorted after the owner change.
            let users: Vec<UserId> = g.entries.iter().skip(usize::from(transfer.is_some())).map(Entry::user).collect();
            let mut sorted = users.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(&users, &sorted, "entries not sorted or a user twice");
            if let Some((_, to)) = transfer {
                prop_assert!(!users.contains(&to), "the new owner has another entry");
            }
            let new_owner = transfer.map(|(_, to)| to);
            let synced = !have.departments.is_empty() && !d.prune_explicit;
            for e in &g.entries {
                let u = e.user();
                if let Entry::Change(c) = e {
                    // Invited users are never invited, added or accepted again.
                    if have.invited.contains(&u) {
                        prop_assert!(matches!(c, Change::SetOwner { .. }), "{:?} for invited {}", c, u);
                    }
                    // Inactive declared users are never a change.
                    prop_assert!(!d.inactive.contains_key(&u) || matches!(c, Change::SetOwner { .. }), "{:?} for inactive {}", c, u);
                    // Removal and demotion never touch the (new) owner or a protected user.
                    let harmful = match *c {
                        Change::Remove { .. } => true,
                        Change::SetRole { from, to, .. } => to > from,
                        _ => false,
                    };
                    if harmful {
                        prop_assert!(!want.is_protected(d, u), "protected {} harmed", u);
                        prop_assert_ne!(Some(u), new_owner.or(owner));
                        prop_assert_ne!(Some(u), d.owner);
                    }
                    if let (None, Change::Remove { role, .. } | Change::SetRole { from: role, .. }) = (transfer, *c) {
                        prop_assert_ne!(role, Role::Owner);
                    }
                    // Department-synced groups plan no removals unless prune is written.
                    if synced {
                        prop_assert!(!matches!(c, Change::Remove { .. }), "removal in a synced group");
                    }
                    // New members come in the declared way; requests are accepted.
                    match *c {
                        Change::Add { .. } => {
                            prop_assert_eq!(d.add_with, AddWith::Add);
                            prop_assert!(!have.requested.contains(&u));
                        }
                        Change::Invite { .. } => {
                            prop_assert_eq!(d.add_with, AddWith::Invite);
                            prop_assert!(!have.requested.contains(&u));
                        }
                        Change::Accept { role, .. } => {
                            prop_assert!(have.requested.contains(&u));
                            prop_assert_eq!(d.members.get(&u), Some(&role));
                        }
                        _ => {}
                    }
                }
                if let Entry::Pending(Pending { kind, .. }) = e {
                    match *kind {
                        PendingKind::Invited { declared } => {
                            prop_assert!(have.invited.contains(&u));
                            let owner = (d.owner == Some(u)).then_some(Role::Owner);
                            prop_assert_eq!(
                                declared,
                                d.members.get(&u).or(d.inactive.get(&u)).copied().or(owner)
                            );
                        }
                        PendingKind::Requested => {
                            prop_assert!(have.requested.contains(&u));
                            prop_assert!(!d.members.contains_key(&u) && !d.inactive.contains_key(&u));
                        }
                        PendingKind::Inactive { role } => {
                            prop_assert_eq!(d.inactive.get(&u), Some(&role));
                            prop_assert!(!have.members.contains_key(&u));
                        }
                    }
                }
                if let Entry::Skipped(s) = e {
                    prop_assert!(
                        Some(u) == owner || want.is_protected(d, u) || (synced && s.reason == SkipReason::DeptSynced),
                        "skipped {:?}", s
                    );
                }
            }
            // Every invitation and request waiting is shown, as an entry of its own or the
            // owner change.
            for u in have.invited.iter().chain(&have.requested) {
                prop_assert!(users.contains(u) || new_owner == Some(*u), "pending {} not shown", u);
            }
            // Declared active members not in the group have a change or are invited.
            for u in d.members.keys() {
                if !have.members.contains_key(u) && new_owner != Some(*u) {
                    prop_assert!(users.contains(u), "declared {} has no entry", u);
                }
            }
        }
        // Pending entries are never changes.
        let s = plan.summary();
        let changes: usize = plan.groups.iter().map(|g| g.changes().count()).sum();
        prop_assert_eq!(s.add + s.invite + s.change + s.remove + s.owner, changes);
    }

    /// Carrying a plan out and planning again finds nothing to do: invitations stay pending
    /// (not changes), owner transfers are not repeated.
    #[test]
    fn people_plans_converge((cur, want, options) in people_states()) {
        let plan = diff_with(&want, &cur, options);
        let after = applied(&cur, &plan);
        let again = diff_with(&want, &after, options);
        prop_assert!(no_changes(&again), "re-plan: {:?}", again);
        for g in &again.groups {
            let d = &want.groups[&g.id];
            let have = &after.groups[&g.id];
            // Invited in the first run: pending in the second.
            for c in plan.groups.iter().filter(|p| p.id == g.id).flat_map(|p| p.changes()) {
                if let Change::Invite { user, role } = *c {
                    let pending = g.entries.iter().any(|e| matches!(e, Entry::Pending(p) if p.user == user && p.kind == PendingKind::Invited { declared: Some(role) }));
                    prop_assert!(pending, "invited {} not pending", user);
                }
            }
            if let (true, Some(o)) = (options.allow_owner_change, d.owner) {
                prop_assert_eq!(have.owner(), Some(o));
            }
        }
    }
}
