//! The planner: `diff(desired, current) -> Plan`, a pure function. No I/O, no clock, no
//! provider knowledge. Two safety rules live here: a group's owner and the file's protected
//! users are never removed or demoted (where the desired state asks for that, the plan carries
//! a visible `Skipped` entry instead of a change), and `check_limits` (in `limits`) refuses
//! plans that remove too many members at once.
//!
//! Entries are sorted by group, then user, so the same inputs always give a byte-identical plan.

use std::collections::BTreeMap;

use crate::model::{AddWith, CurrentGroup, CurrentState, DesiredState, GroupId, Role, UserId};

pub mod access;
mod limits;

pub use access::AccessProblem;
pub use limits::{
    BreachRule, BreachScope, DEFAULT_MAX_REMOVALS, EMPTY_FLOOR, LimitBreach, Origin, PERCENT_FLOOR,
    check_limits, run_breach, run_totals,
};

/// One change roster would make to a group's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the user with this role (moderator or member).
    Add { user: UserId, role: Role },
    /// Invite the user (`add_with: invite`); they become a member when they accept. `role` is
    /// the declared role: a moderator is promoted by a later run, once a member.
    Invite { user: UserId, role: Role },
    /// Admit a user whose request to join is pending, with this role.
    Accept { user: UserId, role: Role },
    /// Change an existing member's role.
    SetRole { user: UserId, from: Role, to: Role },
    /// Remove a member (never the owner) who currently has this role.
    Remove { user: UserId, role: Role },
    /// Make `to` the owner (only with `--allow-owner-change`); the portal makes the old owner
    /// a member, and the rest of the group's plan is made from that state. Always the group's
    /// first change.
    SetOwner { from: Option<UserId>, to: UserId },
}

impl Change {
    /// The user the change is about (for an owner change, the new owner).
    pub fn user(&self) -> UserId {
        match *self {
            Change::Add { user, .. }
            | Change::Invite { user, .. }
            | Change::Accept { user, .. }
            | Change::SetRole { user, .. }
            | Change::Remove { user, .. } => user,
            Change::SetOwner { to, .. } => to,
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
    /// Bitrix24 keeps the group in step with departments (`UF_SG_DEPT`) and would undo the
    /// removal; the file does not say `prune: true` for the group.
    DeptSynced,
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

/// A relation that is not a change: shown so a reviewer sees it, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub user: UserId,
    pub kind: PendingKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    /// Invited by the group, not accepted yet; `declared` is the role the file gives the user
    /// (`None`: not in the file). Never invited again.
    Invited { declared: Option<Role> },
    /// Asked to join and waits for approval; not in the file (declared users are admitted
    /// with `Change::Accept`).
    Requested,
    /// Declared with this role, but the portal reports the user as inactive (dismissed): not
    /// added.
    Inactive { role: Role },
}

/// One line of a group's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Change(Change),
    Skipped(Skipped),
    Pending(Pending),
}

impl Entry {
    pub fn user(&self) -> UserId {
        match self {
            Entry::Change(c) => c.user(),
            Entry::Skipped(s) => s.user,
            Entry::Pending(p) => p.user,
        }
    }
}

/// The declared owner differs from the portal's, and the plan does not change it (no
/// `--allow-owner-change`). Reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerMismatch {
    pub declared: UserId,
    pub actual: Option<UserId>,
}

/// The plan for one declared group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlan {
    pub id: GroupId,
    /// The portal's name for the group when the read told it, else the file's.
    pub name: Option<String>,
    /// Sorted by user.
    pub entries: Vec<Entry>,
    /// Set when the declared owner differs and the plan does not change it (no
    /// `--allow-owner-change`).
    pub owner_mismatch: Option<OwnerMismatch>,
    /// Departments Bitrix24 syncs this group from (`UF_SG_DEPT`), as read.
    pub departments: Vec<u64>,
    /// The group is department-synced and the file says `prune: true` for it: removals are
    /// planned, and Bitrix24 may add those members back.
    pub prune_synced: bool,
    /// The invitation text for this group's `Invite` changes (`invite_message:`).
    pub invite_message: Option<String>,
    /// How many non-owner members the group had in the current state the plan was made from,
    /// counted during the diff so `check_limits` need not walk every membership again.
    pub current_non_owners: usize,
}

impl GroupPlan {
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Change(c) => Some(c),
            Entry::Skipped(_) | Entry::Pending(_) => None,
        })
    }
}

/// Counts of a plan's entries. `add` counts adds and admitted requests; `pending` counts
/// invitations and requests waiting and inactive users, none of which is a change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub add: usize,
    pub invite: usize,
    pub change: usize,
    pub remove: usize,
    pub owner: usize,
    pub skipped: usize,
    pub pending: usize,
}

impl std::ops::AddAssign for Summary {
    fn add_assign(&mut self, o: Summary) {
        self.add += o.add;
        self.invite += o.invite;
        self.change += o.change;
        self.remove += o.remove;
        self.owner += o.owner;
        self.skipped += o.skipped;
        self.pending += o.pending;
    }
}

impl Summary {
    pub fn has_changes(&self) -> bool {
        self.add + self.invite + self.change + self.remove + self.owner > 0
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
                Entry::Change(Change::Add { .. } | Change::Accept { .. }) => s.add += 1,
                Entry::Change(Change::Invite { .. }) => s.invite += 1,
                Entry::Change(Change::SetRole { .. }) => s.change += 1,
                Entry::Change(Change::Remove { .. }) => s.remove += 1,
                Entry::Change(Change::SetOwner { .. }) => s.owner += 1,
                Entry::Skipped(_) => s.skipped += 1,
                Entry::Pending(_) => s.pending += 1,
            }
        }
        s
    }
}

/// How a plan may differ from the plain diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// `--allow-owner-change`: where the declared owner differs, plan `Change::SetOwner`.
    pub allow_owner_change: bool,
}

/// Compute the plan that takes `current` to `desired` (no owner changes). A declared group
/// missing from `current` is planned as empty: the shell fetches every declared group and
/// fails before planning when the portal does not have one.
pub fn diff(desired: &DesiredState, current: &CurrentState) -> Plan {
    diff_with(desired, current, Options::default())
}

/// `diff` with options.
pub fn diff_with(desired: &DesiredState, current: &CurrentState, options: Options) -> Plan {
    let empty = CurrentGroup::default();
    let groups = desired
        .groups
        .values()
        .map(|want| {
            let have = current.groups.get(&want.id).unwrap_or(&empty);
            let actual_owner = have.owner();
            let transfer = match want.owner {
                Some(to)
                    if options.allow_owner_change
                        && actual_owner != Some(to)
                        && !want.inactive.contains_key(&to) =>
                {
                    Some(to)
                }
                _ => None,
            };
            // With an owner change, the rest is planned from the state the portal leaves:
            // the old owner a member, the new one the owner (whatever their relation was).
            let moved;
            let members = match transfer {
                None => &have.members,
                Some(to) => {
                    let mut m = have.members.clone();
                    if let Some(from) = actual_owner {
                        m.insert(from, Role::Member);
                    }
                    m.insert(to, Role::Owner);
                    moved = m;
                    &moved
                }
            };
            // Bitrix24 re-adds what roster would remove from a department-synced group.
            let synced = !have.departments.is_empty() && !want.prune_explicit;
            let mut entries = Vec::new();
            let mut current_non_owners = 0;
            for (user, have_role, want_role) in merge(members, &want.members) {
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
                    (None, Some(role)) if have.invited.contains(&user) => {
                        Some(Entry::Pending(Pending {
                            user,
                            kind: PendingKind::Invited {
                                declared: Some(role),
                            },
                        }))
                    }
                    (None, Some(role)) if have.requested.contains(&user) => {
                        Some(Entry::Change(Change::Accept { user, role }))
                    }
                    (None, Some(role)) if want.add_with == AddWith::Invite => {
                        Some(Entry::Change(Change::Invite { user, role }))
                    }
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
                    (Some(_), None)
                        if declared_owner || !want.prune || want.inactive.contains_key(&user) =>
                    {
                        None
                    }
                    (Some(Role::Owner), None) => {
                        skip(Role::Owner, Wanted::Remove, SkipReason::Owner)
                    }
                    (Some(role), None) if desired.is_protected(want, user) => {
                        skip(role, Wanted::Remove, SkipReason::Protected)
                    }
                    (Some(role), None) if synced => {
                        skip(role, Wanted::Remove, SkipReason::DeptSynced)
                    }
                    (Some(role), None) => Some(Entry::Change(Change::Remove { user, role })),
                };
                entries.extend(entry);
            }
            // Relations that are not memberships, and declared users who cannot be added.
            let pending = |user, kind| Entry::Pending(Pending { user, kind });
            let before = entries.len();
            for &user in &have.invited {
                if !want.members.contains_key(&user) && !members.contains_key(&user) {
                    let declared = want
                        .inactive
                        .get(&user)
                        .copied()
                        .or((want.owner == Some(user)).then_some(Role::Owner));
                    entries.push(pending(user, PendingKind::Invited { declared }));
                }
            }
            for &user in &have.requested {
                // A declared but inactive user who asked to join is shown as inactive below.
                if !want.members.contains_key(&user)
                    && !want.inactive.contains_key(&user)
                    && !members.contains_key(&user)
                    && !have.invited.contains(&user)
                {
                    entries.push(pending(user, PendingKind::Requested));
                }
            }
            for (&user, &role) in &want.inactive {
                if !members.contains_key(&user) && !have.invited.contains(&user) {
                    entries.push(pending(user, PendingKind::Inactive { role }));
                }
            }
            if entries.len() > before {
                entries.sort_by_key(Entry::user);
            }
            if let Some(to) = transfer {
                entries.insert(
                    0,
                    Entry::Change(Change::SetOwner {
                        from: actual_owner,
                        to,
                    }),
                );
            }
            let owner_mismatch = match (want.owner, transfer) {
                (Some(declared), None) if actual_owner != Some(declared) => Some(OwnerMismatch {
                    declared,
                    actual: actual_owner,
                }),
                _ => None,
            };
            GroupPlan {
                id: want.id,
                name: have.name.clone().or_else(|| want.name.clone()),
                entries,
                owner_mismatch,
                departments: have.departments.clone(),
                prune_synced: !have.departments.is_empty() && want.prune_explicit && want.prune,
                invite_message: want.invite_message.clone(),
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
        let group = next.groups.entry(g.id).or_default();
        for change in g.changes() {
            match *change {
                Change::Add { user, role } => {
                    group.members.insert(user, role);
                }
                Change::Invite { user, .. } => {
                    group.invited.insert(user);
                }
                Change::Accept { user, role } => {
                    group.requested.remove(&user);
                    group.members.insert(user, role);
                }
                Change::SetRole { user, to, .. } => {
                    group.members.insert(user, to);
                }
                Change::Remove { user, .. } => {
                    group.members.remove(&user);
                }
                Change::SetOwner { from, to } => {
                    if let Some(from) = from {
                        group.members.insert(from, Role::Member);
                    }
                    group.invited.remove(&to);
                    group.requested.remove(&to);
                    group.members.insert(to, Role::Owner);
                }
            }
        }
    }
    next
}

#[cfg(test)]
mod tests;
