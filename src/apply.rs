//! Apply: carry out a plan's changes through a provider and collect every change's outcome into
//! a `Report`. No rendering and no prompting here; the shell does both.

use crate::model::{GroupId, OpStatus};
use crate::plan::{Change, Plan};
use crate::provider::Provider;

/// One change and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub group: GroupId,
    pub group_name: Option<String>,
    pub change: Change,
    pub status: OpStatus,
}

/// Every change's outcome, in plan order, plus the skipped entries' count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub skipped: usize,
}

impl Report {
    pub fn done(&self) -> usize {
        self.outcomes.iter().filter(|o| o.status.is_done()).count()
    }
    pub fn not_done(&self) -> usize {
        self.outcomes.len() - self.done()
    }
    pub fn all_done(&self) -> bool {
        self.not_done() == 0
    }
}

/// Execute every change in `plan`. Failures do not stop the other changes.
pub async fn apply(plan: &Plan, provider: &Provider) -> Report {
    let mut changes = Vec::new();
    let mut names = Vec::new();
    for g in &plan.groups {
        for c in g.changes() {
            changes.push((g.id, *c));
            names.push(g.name.clone());
        }
    }
    let statuses = provider.execute(&changes).await;
    let outcomes = changes
        .into_iter()
        .zip(names)
        .zip(statuses)
        .map(|(((group, change), group_name), status)| Outcome {
            group,
            group_name,
            change,
            status,
        })
        .collect();
    Report {
        outcomes,
        skipped: plan.summary().skipped,
    }
}
