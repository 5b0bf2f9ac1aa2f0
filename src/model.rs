//! The domain: group and user identities, roles, desired and current membership. Plain data,
//! provider-neutral, ordered (`BTreeMap`) so everything derived from it is deterministic.
//! No I/O and no wire formats here: providers convert their JSON into these types by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A workgroup's ID on the portal (Bitrix24 `GROUP_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct GroupId(pub u64);

/// A portal user's ID (Bitrix24 `USER_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(pub u64);

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A member's role in a group. Ordered from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The group's single owner (Bitrix24 `A`). roster never removes or demotes it.
    Owner,
    /// Bitrix24 `E`.
    Moderator,
    /// Bitrix24 `K`.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the YAML file declares for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGroup {
    pub id: GroupId,
    /// Optional label, shown in plans.
    pub name: Option<String>,
    /// The declared owner, if any: checked against the portal, never changed.
    pub owner: Option<UserId>,
    /// Declared members with their role (moderator or member; never owner).
    pub members: BTreeMap<UserId, Role>,
    /// When true, members present on the portal but not declared are removed (owners never).
    pub prune: bool,
    /// Users never removed or demoted in this group (in addition to `DesiredState::protected`).
    pub protected: BTreeSet<UserId>,
    /// This group's own removal limits; unset fields fall back to the file's, then the defaults.
    /// `max_total_removals` is never set here (the loader accepts it only at the top).
    pub limits: Limits,
    /// 1-based line of the group in its source file, for messages about it.
    pub line: usize,
}

/// The whole desired state: every declared group, by ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub groups: BTreeMap<GroupId, DesiredGroup>,
    /// Users never removed or demoted in any declared group.
    pub protected: BTreeSet<UserId>,
    /// The file's top-level `limits:`: defaults for every group, and the run-wide limit.
    pub limits: Limits,
}

impl DesiredState {
    /// Whether `user` is protected in `group` (at the top or in the group).
    pub fn is_protected(&self, group: &DesiredGroup, user: UserId) -> bool {
        self.protected.contains(&user) || group.protected.contains(&user)
    }
}

/// How many removals a limit allows: a count, or a whole percent (0..=100) of what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u64),
    Percent(u8),
}

impl Limit {
    /// The most removals allowed out of `current`.
    pub fn allowed(self, current: usize) -> u64 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => (current as u64).saturating_mul(u64::from(p)) / 100,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{p} %"),
        }
    }
}

/// A value set in the file, with the 1-based line it was written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub line: usize,
}

/// Mass-removal limits as written in one `limits:` mapping (the file's top or a group's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Removals allowed per group, of its current non-owner members.
    pub max_removals: Option<Setting<Limit>>,
    /// `true` switches off the rule that a plan never removes every non-owner member of a
    /// group that has 4 or more.
    pub allow_empty: Option<Setting<bool>>,
    /// Removals allowed in the whole run, of all current memberships of the declared groups.
    pub max_total_removals: Option<Setting<Limit>>,
}

/// One group's members as the portal reports them (owner included, with `Role::Owner`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentGroup {
    pub members: BTreeMap<UserId, Role>,
}

impl CurrentGroup {
    pub fn owner(&self) -> Option<UserId> {
        self.members
            .iter()
            .find(|(_, role)| **role == Role::Owner)
            .map(|(user, _)| *user)
    }
}

/// The portal's current membership for the groups roster looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentState {
    pub groups: BTreeMap<GroupId, CurrentGroup>,
}

/// What became of one planned change when it was carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    /// The portal confirmed the change.
    Done,
    /// The change is in place: reading the group after apply showed it, though no answer to
    /// roster's own command confirmed it (a lost response, or somebody else made it).
    Confirmed,
    /// The portal answered without error but did not make the change (for example it
    /// silently skipped the user); `reason` says what is known.
    NotDone { reason: String },
    /// The call carrying the change failed and the portal does not hold the change (reading
    /// the group again showed it missing, or the portal refused the call outright); `error` is
    /// the API or transport error.
    Failed { error: String },
    /// Nobody can tell whether the portal made the change: an answer was lost (or refused after
    /// the portal may have acted) and reading the group again failed too. Never counted as done
    /// or as failed; the next `plan` shows the truth.
    Unknown { error: String },
    /// Never sent: the run was interrupted (SIGINT/SIGTERM) before the change's batch started.
    NotStarted,
}

impl OpStatus {
    /// Done or confirmed: the portal holds the change.
    pub fn is_done(&self) -> bool {
        matches!(self, OpStatus::Done | OpStatus::Confirmed)
    }
}
