//! What `execute` sends for a plan, and how it judges the answers: the changes of each group
//! in wire order (the manager first, then one add and one removal request), the changes that
//! cannot be sent at all, the verdict an answer (the group as the portal returned it) gives
//! each change, and how a change no answer confirmed is settled from the group read again.
//! Pure: no I/O; the client sends and reads.

use std::collections::BTreeMap;

use crate::model::{GroupId, OpStatus, Role, UserId, Uuid};
use crate::plan::Change;

use super::wire;

/// One group's changes, by index into the plan's changes, in the order they are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWrites {
    pub group: GroupId,
    /// `PUT group/{id}/manager`, one request each (the planner makes at most one), first.
    /// (index, new manager, old manager)
    pub manager: Vec<(usize, Uuid, Option<Uuid>)>,
    /// One `PUT group/{id}/members` for all of them.
    pub adds: Vec<(usize, Uuid)>,
    /// One `DELETE group/{id}/members` for all of them (less the manager).
    pub removes: Vec<(usize, Uuid)>,
    /// Changes never sent, with their status (DocSpace cannot carry them).
    pub refused: Vec<(usize, OpStatus)>,
}

impl GroupWrites {
    /// Every change of the group, by index.
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.manager
            .iter()
            .map(|(i, _, _)| *i)
            .chain(self.adds.iter().map(|(i, _)| *i))
            .chain(self.removes.iter().map(|(i, _)| *i))
            .chain(self.refused.iter().map(|(i, _)| *i))
    }
}

/// The changes of `changes`, per group (ascending), each group's in plan order within its
/// kind. A change DocSpace cannot carry (invitations, join requests, roles other than member
/// and manager) or one naming a Bitrix24 ID is refused here with the reason, never sent.
pub fn per_group(changes: &[(GroupId, Change)]) -> Vec<GroupWrites> {
    let mut groups: BTreeMap<GroupId, GroupWrites> = BTreeMap::new();
    for (i, (g, change)) in changes.iter().enumerate() {
        let w = groups.entry(*g).or_insert_with(|| GroupWrites {
            group: *g,
            manager: Vec::new(),
            adds: Vec::new(),
            removes: Vec::new(),
            refused: Vec::new(),
        });
        if let Some(reason) = unsendable(*g, change) {
            w.refused.push((i, OpStatus::NotDone { reason }));
            continue;
        }
        let uuid = |u: UserId| u.uuid().expect("unsendable refuses numeric IDs");
        match *change {
            Change::SetOwner { from, to } => {
                w.manager.push((i, uuid(to), from.and_then(|f| f.uuid())))
            }
            Change::Add { user, .. } => w.adds.push((i, uuid(user))),
            Change::Remove { user, .. } => w.removes.push((i, uuid(user))),
            Change::Invite { .. } | Change::Accept { .. } | Change::SetRole { .. } => {
                unreachable!("unsendable refuses them")
            }
        }
    }
    groups.into_values().collect()
}

/// Why a change cannot go to DocSpace at all, if it cannot.
fn unsendable(group: GroupId, change: &Change) -> Option<String> {
    if group.uuid().is_none() {
        return Some(format!(
            "not sent: {group} is not a DocSpace group ID (DocSpace IDs are UUIDs)"
        ));
    }
    let user = change.user();
    if user.uuid().is_none() {
        return Some(format!(
            "not sent: {user} is not a DocSpace user ID (DocSpace IDs are UUIDs)"
        ));
    }
    match *change {
        Change::Invite { .. } => Some(
            "not sent: DocSpace has no invitations to groups (users are added directly)".into(),
        ),
        Change::Accept { .. } => Some("not sent: DocSpace has no requests to join a group".into()),
        Change::SetRole { .. } => Some(
            "not sent: DocSpace has no roles in a group besides its manager and members".into(),
        ),
        Change::Add {
            role: Role::Moderator | Role::Owner,
            ..
        } => {
            Some("not sent: DocSpace has no moderators; a group has one manager and members".into())
        }
        Change::SetOwner { .. } | Change::Add { .. } | Change::Remove { .. } => None,
    }
}

/// How an answer left a change that it shows was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// An added user is not in the group: DocSpace skips unknown, terminated and guest users
    /// silently.
    NotAdded,
    /// A removed user is still in the group.
    NotRemoved,
    /// The manager is not the user asked: DocSpace ignores guests and terminated users.
    NotManager,
}

/// What the write carrying a change learned of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The answer (the group after the write) shows the change made.
    Done,
    /// The answer shows the change not made.
    Missed(Miss),
    /// No usable answer: the error, why the portal may have acted all the same (`uncertain`),
    /// and whether an attempt timed out (so it may still be running).
    Failed {
        error: String,
        uncertain: Option<String>,
        still_running: bool,
    },
    /// The portal answered success, but the answer cannot show the change (no members list,
    /// or not a group): `why`.
    Unverified { why: String },
    /// Decided without an answer: never sent (not started, held back, refused).
    Final(OpStatus),
}

impl Verdict {
    /// Whether the change's group must be read again to settle it.
    pub fn needs_reread(&self) -> bool {
        matches!(self, Verdict::Failed { .. } | Verdict::Unverified { .. })
    }
}

/// Whether `group` shows `change` made. `None` when it cannot tell (no members list, for
/// changes about membership).
pub fn holds(group: &wire::Group, change: &Change) -> Option<bool> {
    match *change {
        Change::SetOwner { to, .. } => Some(group.manager_id() == to.uuid()),
        Change::Add { user, .. } => {
            group.members.as_ref()?;
            Some(user.uuid().is_some_and(|u| group.has(u)))
        }
        Change::Remove { user, .. } => {
            group.members.as_ref()?;
            Some(user.uuid().is_none_or(|u| !group.has(u)))
        }
        Change::Invite { .. } | Change::Accept { .. } | Change::SetRole { .. } => None,
    }
}

/// The miss a change that does not hold is.
fn miss(change: &Change) -> Miss {
    match change {
        Change::SetOwner { .. } => Miss::NotManager,
        Change::Remove { .. } => Miss::NotRemoved,
        _ => Miss::NotAdded,
    }
}

/// The verdict an answer to a write gives `change`: the group it returned (or why it is not
/// one) shows it made, not made, or cannot tell.
pub fn judge(answer: Result<&wire::Group, &str>, change: &Change) -> Verdict {
    let group = match answer {
        Ok(g) => g,
        Err(why) => {
            return Verdict::Unverified {
                why: why.to_owned(),
            };
        }
    };
    match holds(group, change) {
        Some(true) => Verdict::Done,
        Some(false) => Verdict::Missed(miss(change)),
        None => Verdict::Unverified {
            why: "the answer does not list the group's members".into(),
        },
    }
}

/// A change's outcome once settled: a status, or a miss whose reason depends on who the
/// user is (looked up afterwards, `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Status(OpStatus),
    Missed(Miss),
}

/// Settle a change's verdict from its group as read again after apply (`reread`: `None` when
/// it was not read again, the verdict needing none). Held → confirmed; not held → as answered
/// (a failure stays a failure, an answer that could not tell becomes a miss); unreadable →
/// unknown if the portal may have acted, else as answered. A timed-out attempt may still be
/// running, so not seeing its change proves nothing: unknown.
pub fn settle(
    verdict: Verdict,
    change: &Change,
    reread: Option<Result<&wire::Group, &str>>,
) -> Settled {
    let status = |s| Settled::Status(s);
    let seen = reread.map(|r| r.map(|g| holds(g, change)));
    match verdict {
        Verdict::Done => status(OpStatus::Done),
        Verdict::Missed(m) => Settled::Missed(m),
        Verdict::Final(s) => status(s),
        Verdict::Failed {
            error,
            uncertain,
            still_running,
        } => match seen {
            Some(Ok(Some(true))) => status(OpStatus::Confirmed),
            Some(Ok(Some(false))) if still_running => status(OpStatus::Unknown {
                error: format!(
                    "the request timed out ({}) and may still be running on the portal; reading the group again did not show the change yet",
                    uncertain.as_deref().unwrap_or(&error)
                ),
            }),
            Some(Ok(Some(false))) => status(OpStatus::Failed { error }),
            _ => match uncertain {
                Some(u) => status(OpStatus::Unknown {
                    error: format!(
                        "the portal may have made the change ({u}), and reading the group again failed ({})",
                        reread_failure(seen)
                    ),
                }),
                None => status(OpStatus::Failed { error }),
            },
        },
        Verdict::Unverified { why } => match seen {
            Some(Ok(Some(true))) => status(OpStatus::Confirmed),
            Some(Ok(Some(false))) => Settled::Missed(miss(change)),
            _ => status(OpStatus::Unknown {
                error: format!(
                    "the portal accepted the change but its answer could not show it ({why}), and reading the group again failed ({})",
                    reread_failure(seen)
                ),
            }),
        },
    }
}

/// Why a re-read settled nothing, for messages.
fn reread_failure(seen: Option<Result<Option<bool>, &str>>) -> String {
    match seen {
        None => "not read again".into(),
        Some(Err(e)) => e.to_owned(),
        Some(Ok(_)) => "the answer does not list the group's members".into(),
    }
}

/// Who a user is, as far as the reason for a miss goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The portal has no such user (404).
    Unknown,
    Terminated,
    Guest,
    /// None of those.
    Ordinary,
    /// Could not be looked up: why.
    Unread(String),
}

impl Who {
    pub fn of(e: &wire::Employee) -> Who {
        if e.terminated() {
            Who::Terminated
        } else if e.is_visitor {
            Who::Guest
        } else {
            Who::Ordinary
        }
    }
}

/// Why the portal left a change not made, given who its user is.
pub fn reason(miss: Miss, who: &Who) -> String {
    let skipped = |what: &str, by: &str| match who {
        Who::Unknown => {
            format!("the portal did not {what}: there is no such user on the DocSpace portal")
        }
        Who::Terminated => format!(
            "the portal did not {what}: the user is terminated (deactivated), and DocSpace {by} terminated users silently"
        ),
        Who::Guest => format!(
            "the portal did not {what}: the user is a guest, and DocSpace {by} guests silently (groups take no guests)"
        ),
        Who::Ordinary => format!(
            "the portal did not {what} (DocSpace {by} unknown, terminated and guest users silently; as far as roster can tell the user is none of these)"
        ),
        Who::Unread(e) => format!(
            "the portal did not {what} (DocSpace {by} unknown, terminated and guest users silently; looking the user up failed: {e})"
        ),
    };
    match miss {
        Miss::NotAdded => skipped("add the user", "skips"),
        Miss::NotManager => skipped("make the user the manager", "ignores"),
        Miss::NotRemoved => {
            "the portal did not remove the user: the group still lists them after the removal"
                .into()
        }
    }
}

/// The status of a change held back because it concerns the old manager of a group whose
/// manager change was not confirmed (`manager`: that change's status, as far as known).
pub fn held_back(group: GroupId, to: Uuid, manager: &OpStatus) -> OpStatus {
    match manager {
        OpStatus::NotStarted => OpStatus::NotStarted,
        other => OpStatus::NotDone {
            reason: format!(
                "not sent: the manager change to {to} in group {group} was not confirmed ({}), so the user may still be the manager",
                describe(other)
            ),
        },
    }
}

/// The status of a removal of the group's manager: never sent.
pub fn manager_kept(group: GroupId) -> OpStatus {
    OpStatus::NotDone {
        reason: format!(
            "not sent: the user is the manager of group {group} (as last read), and removing them would leave the group without one; roster never removes a group's manager"
        ),
    }
}

/// A status's own words, for another change's reason.
pub fn describe(status: &OpStatus) -> String {
    match status {
        OpStatus::Done => "done".into(),
        OpStatus::Confirmed => "confirmed".into(),
        OpStatus::NotDone { reason } => format!("not done: {reason}"),
        OpStatus::Failed { error } => format!("failed: {error}"),
        OpStatus::Unknown { error } => format!("unknown: {error}"),
        OpStatus::NotStarted => "not started".into(),
    }
}

/// A verdict as a status for `describe`, before settling (a miss's reason is not known yet).
pub fn provisional(verdict: &Verdict) -> OpStatus {
    match verdict {
        Verdict::Done => OpStatus::Done,
        Verdict::Missed(m) => OpStatus::NotDone {
            reason: reason(*m, &Who::Ordinary),
        },
        Verdict::Failed { error, .. } => OpStatus::Failed {
            error: error.clone(),
        },
        Verdict::Unverified { why } => OpStatus::Unknown { error: why.clone() },
        Verdict::Final(s) => s.clone(),
    }
}

/// What later outcomes say instead of the run-wide failure's cause, once the first outcome
/// that carries it has shown it whole.
pub const SEE_ABOVE: &str = "the run-wide failure above";

/// Outcomes (in report order) with the run-wide failure's `cause` shown whole once: the first
/// outcome whose error includes it keeps it; every later one names `SEE_ABOVE` instead, so a
/// refused key is not told a hundred times. Other outcomes are untouched.
pub fn shorten(mut statuses: Vec<OpStatus>, cause: &str) -> Vec<OpStatus> {
    let mut shown = false;
    for status in &mut statuses {
        if let OpStatus::Failed { error } | OpStatus::Unknown { error } = status
            && error.contains(cause)
        {
            if shown {
                *error = error.replace(cause, SEE_ABOVE);
            }
            shown = true;
        }
    }
    statuses
}
