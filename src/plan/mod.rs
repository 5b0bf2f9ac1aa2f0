//! The planner: `diff(desired, current) -> Plan`, a pure function. No I/O, no clock, no
//! provider knowledge. Two safety rules live here: a group's owner and the file's protected
//! users are never removed or demoted (where the desired state asks for that, the plan carries
//! a visible `Skipped` entry instead of a change), and `check_limits` (in `limits`) refuses
//! plans that remove too many members at once.
//!
//! Entries are sorted by group, then user, so the same inputs always give a byte-identical plan.

use std::collections::BTreeMap;

use crate::model::{CurrentGroup, CurrentState, DesiredState, GroupId, Role, UserId};

mod limits;

pub use limits::{
    BreachRule, BreachScope, DEFAULT_MAX_REMOVALS, EMPTY_FLOOR, LimitBreach, Origin, PERCENT_FLOOR,
    check_limits,
};

/// One change roster would make to a group's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the user with this role (moderator or member).
    Add { user: UserId, role: Role },
    /// Change an existing member's role.
    SetRole { user: UserId, from: Role, to: Role },
    /// Remove a member (never the owner) who currently has this role.
    Remove { user: UserId, role: Role },
}

impl Change {
    pub fn user(&self) -> UserId {
        match *self {
            Change::Add { user, .. }
            | Change::SetRole { user, .. }
            | Change::Remove { user, .. } => user,
        }
    }
}

/// What the desired state asked of a protected member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Not declared, and the group prunes.
    Remove,
    /// Declared with a lesser role.
    Demote(Role),
}

/// Why a wanted change is not planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The user is the group's owner: roster never removes or demotes owners.
    Owner,
    /// The file lists the user under `protected:` (at the top or in the group).
    Protected,
}

/// A change the desired state asks for that roster will not make, shown so nobody wonders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub user: UserId,
    /// The user's current role, which stays.
    pub role: Role,
    pub wanted: Wanted,
    pub reason: SkipReason,
}

/// One line of a group's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Change(Change),
    Skipped(Skipped),
}

impl Entry {
    pub fn user(&self) -> UserId {
        match self {
            Entry::Change(c) => c.user(),
            Entry::Skipped(s) => s.user,
        }
    }
}

/// The declared owner differs from the portal's. Reported, never changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerMismatch {
    pub declared: UserId,
    pub actual: Option<UserId>,
}

/// The plan for one declared group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub id: GroupId,
    pub name: Option<String>,
    /// Sorted by user.
    pub entries: Vec<Entry>,
    pub owner_mismatch: Option<OwnerMismatch>,
    /// How many non-owner members the group had in the current state the plan was made from,
    /// counted during the diff so `check_limits` need not walk every membership again.
    pub current_non_owners: usize,
}

impl GroupPlan {
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Change(c) => Some(c),
            Entry::Skipped(_) => None,
        })
    }
}

/// Counts of a plan's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn has_changes(&self) -> bool {
        self.add + self.change + self.remove > 0
    }
}

/// Every declared group's plan, sorted by group ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub groups: Vec<GroupPlan>,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for e in self.groups.iter().flat_map(|g| &g.entries) {
            match e {
                Entry::Change(Change::Add { .. }) => s.add += 1,
                Entry::Change(Change::SetRole { .. }) => s.change += 1,
                Entry::Change(Change::Remove { .. }) => s.remove += 1,
                Entry::Skipped(_) => s.skipped += 1,
            }
        }
        s
    }
}

/// Compute the plan that takes `current` to `desired`. A declared group missing from `current`
/// is planned as empty: the shell fetches every declared group and fails before planning when
/// the portal does not have one.
pub fn diff(desired: &DesiredState, current: &CurrentState) -> Plan {
    let empty = CurrentGroup::default();
    let groups = desired
        .groups
        .values()
        .map(|want| {
            let have = current.groups.get(&want.id).unwrap_or(&empty);
            let mut entries = Vec::new();
            let mut current_non_owners = 0;
            for (user, have_role, want_role) in merge(&have.members, &want.members) {
                current_non_owners += usize::from(matches!(have_role, Some(r) if r != Role::Owner));
                let declared_owner = want.owner == Some(user);
                let skip = |role, wanted, reason| {
                    Some(Entry::Skipped(Skipped {
                        user,
                        role,
                        wanted,
                        reason,
                    }))
                };
                let entry = match (have_role, want_role) {
                    (None, None) => None,
                    (None, Some(role)) => Some(Entry::Change(Change::Add { user, role })),
                    (Some(Role::Owner), Some(role)) => {
                        skip(Role::Owner, Wanted::Demote(role), SkipReason::Owner)
                    }
                    // Roles are ordered most privileged first: a greater role is a demotion.
                    (Some(from), Some(to)) if to > from && desired.is_protected(want, user) => {
                        skip(from, Wanted::Demote(to), SkipReason::Protected)
                    }
                    (Some(from), Some(to)) if from != to => {
                        Some(Entry::Change(Change::SetRole { user, from, to }))
                    }
                    (Some(_), Some(_)) => None,
                    (Some(_), None) if declared_owner || !want.prune => None,
                    (Some(Role::Owner), None) => {
                        skip(Role::Owner, Wanted::Remove, SkipReason::Owner)
                    }
                    (Some(role), None) if desired.is_protected(want, user) => {
                        skip(role, Wanted::Remove, SkipReason::Protected)
                    }
                    (Some(role), None) => Some(Entry::Change(Change::Remove { user, role })),
                };
                entries.extend(entry);
            }
            let owner_mismatch = want.owner.and_then(|declared| {
                let actual = have.owner();
                (actual != Some(declared)).then_some(OwnerMismatch { declared, actual })
            });
            GroupPlan {
                id: want.id,
                name: want.name.clone(),
                entries,
                owner_mismatch,
                current_non_owners,
            }
        })
        .collect();
    Plan { groups }
}

/// Walk two sorted member maps together: every user in either, in order, with both roles.
fn merge<'a>(
    have: &'a BTreeMap<UserId, Role>,
    want: &'a BTreeMap<UserId, Role>,
) -> impl Iterator<Item = (UserId, Option<Role>, Option<Role>)> + 'a {
    let mut h = have.iter().peekable();
    let mut w = want.iter().peekable();
    std::iter::from_fn(move || match (h.peek(), w.peek()) {
        (None, None) => None,
        (Some((hu, _)), Some((wu, _))) if hu == wu => {
            let (u, hr) = h.next()?;
            let (_, wr) = w.next()?;
            Some((*u, Some(*hr), Some(*wr)))
        }
        (Some((hu, _)), Some((wu, _))) if hu < wu => h.next().map(|(u, r)| (*u, Some(*r), None)),
        (Some(_), None) => h.next().map(|(u, r)| (*u, Some(*r), None)),
        _ => w.next().map(|(u, r)| (*u, None, Some(*r))),
    })
}

/// The membership that results from carrying out every change of `plan` on `current`: the
/// planner's own model of a successful apply. Tests use it to state what a plan means.
pub fn applied(current: &CurrentState, plan: &Plan) -> CurrentState {
    let mut next = current.clone();
    for g in &plan.groups {
        let members = &mut next.groups.entry(g.id).or_default().members;
        for change in g.changes() {
            match *change {
                Change::Add { user, role } => {
                    members.insert(user, role);
                }
                Change::SetRole { user, to, .. } => {
                    members.insert(user, to);
                }
                Change::Remove { user, .. } => {
                    members.remove(&user);
                }
            }
        }
    }
    next
}

#[cfg(test)]
mod tests;
