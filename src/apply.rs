//! Apply: carry out a plan's changes through a provider and collect every change's outcome into
//! a `Report`. No rendering and no prompting here; the shell does both.

use std::collections::BTreeMap;

use crate::model::{GroupId, OpStatus};
use crate::plan::{Change, Plan};
use crate::provider::{CancellationToken, OnProgress, Provider};

/// One change and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub group: GroupId,
    pub group_name: Option<String>,
    pub change: Change,
    pub status: OpStatus,
}

/// Every change's outcome, in plan order, plus the skipped entries' count and the retries the
/// provider needed (rate limits, server hiccups) while applying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub skipped: usize,
    pub retries: u64,
}

impl Report {
    pub fn done(&self) -> usize {
        self.outcomes.iter().filter(|o| o.status.is_done()).count()
    }
    /// Changes the portal answered but did not make.
    pub fn not_done(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, OpStatus::NotDone { .. }))
            .count()
    }
    /// Changes whose call failed.
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, OpStatus::Failed { .. }))
            .count()
    }
    /// Changes whose outcome nobody can tell (an answer lost and the group unreadable).
    pub fn unknown(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, OpStatus::Unknown { .. }))
            .count()
    }
    /// Changes never sent because the run was interrupted.
    pub fn not_started(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.status == OpStatus::NotStarted)
            .count()
    }
    pub fn all_done(&self) -> bool {
        self.done() == self.outcomes.len()
    }
}

/// A plan's changes in order, each with its group.
pub fn changes(plan: &Plan) -> Vec<(GroupId, Change)> {
    plan.groups
        .iter()
        .flat_map(|g| g.changes().map(|c| (g.id, *c)))
        .collect()
}

/// Each group's invitation text, for the groups that have one.
pub fn invite_messages(plan: &Plan) -> BTreeMap<GroupId, String> {
    plan.groups
        .iter()
        .filter_map(|g| Some((g.id, g.invite_message.clone()?)))
        .collect()
}

/// Execute every change in `plan`. Failures do not stop the other changes.
pub async fn apply(
    plan: &Plan,
    provider: &Provider,
    on_progress: OnProgress<'_>,
    stop: &CancellationToken,
) -> Report {
    let retries_before = provider.counters().retries;
    let names: BTreeMap<GroupId, &Option<String>> =
        plan.groups.iter().map(|g| (g.id, &g.name)).collect();
    let changes = changes(plan);
    let statuses = provider
        .execute(&changes, &invite_messages(plan), on_progress, stop)
        .await;
    let outcomes = changes
        .into_iter()
        .zip(statuses)
        .map(|((group, change), status)| Outcome {
            group,
            group_name: names[&group].clone(),
            change,
            status,
        })
        .collect();
    Report {
        outcomes,
        skipped: plan.summary().skipped,
        retries: provider.counters().retries - retries_before,
    }
}
