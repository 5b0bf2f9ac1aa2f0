//! The mass-removal guard: `check_limits(desired, current, plan)` lists every limit a plan
//! breaks, before anything is sent (peribolos' `--maximum-removal-delta`, octoDNS' delete
//! thresholds, Argo CD's `allowEmpty`). Pure: no I/O; the shell prints the breaches and refuses
//! the run unless `--allow-mass-removal` is given.
//!
//! Three rules, each resolved group setting → file top → default (see `crate::spec`):
//! - `max_removals` (default 25 %): removals per group, of its current non-owner members;
//! - `allow_empty` (default false): a plan never removes every non-owner member of a group
//!   that has `EMPTY_FLOOR` (4) or more of them;
//! - `max_total_removals` (default 25 %): removals in the whole run, of all current
//!   memberships (owners included) of the declared groups.
//!
//! A percent applies only where there are at least `PERCENT_FLOOR` (10) memberships to take it
//! of; a count always applies. Only `Remove` changes count: skipped entries and demotions don't.

use crate::model::{CurrentState, DesiredGroup, DesiredState, GroupId, Limit, Setting};

use super::{Change, Plan};

/// A percent limit applies only from this many current memberships (octoDNS uses 10 too).
pub const PERCENT_FLOOR: usize = 10;

/// The "never empty a group" rule applies from this many current non-owner members.
pub const EMPTY_FLOOR: usize = 4;

/// The default removal limit per group and for the run.
pub const DEFAULT_MAX_REMOVALS: Limit = Limit::Percent(25);

/// Where a limit's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// roster's built-in default.
    Default,
    /// The file's top-level `limits:`, on this line.
    File { line: usize },
    /// The group's own `limits:`, on this line.
    Group { line: usize },
}

/// Which rule a plan breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachRule {
    /// More removals in one group than `limits.max_removals` allows.
    MaxRemovals(Limit),
    /// Every non-owner member of a group of `EMPTY_FLOOR` or more removed, and `allow_empty`
    /// is not set.
    Empties,
    /// More removals in the whole run than `limits.max_total_removals` allows.
    MaxTotalRemovals(Limit),
}

/// What a breach is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreachScope {
    Group { id: GroupId, name: Option<String> },
    Run,
}

/// One limit the plan breaks: the plan removes `removals` of `current` memberships where the
/// limit allows `allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitBreach {
    pub scope: BreachScope,
    pub rule: BreachRule,
    pub origin: Origin,
    pub removals: usize,
    /// Current non-owner members (a group), or all current memberships (the run).
    pub current: usize,
    /// The most removals the limit allows here.
    pub allowed: u64,
}

/// Resolve one setting: the group's, else the file's, else the default.
fn resolve<T: Copy>(group: Option<Setting<T>>, top: Option<Setting<T>>, default: T) -> (T, Origin) {
    match (group, top) {
        (Some(s), _) => (s.value, Origin::Group { line: s.line }),
        (None, Some(s)) => (s.value, Origin::File { line: s.line }),
        (None, None) => (default, Origin::Default),
    }
}

/// Whether removing `removals` of `current` breaks `limit`.
fn breaks(limit: Limit, removals: usize, current: usize) -> bool {
    match limit {
        Limit::Percent(_) if current < PERCENT_FLOOR => false,
        _ => removals as u64 > limit.allowed(current),
    }
}

/// Every limit `plan` breaks, groups first (by ID), then the run. Empty when the plan is safe.
/// `plan` must be `diff(desired, current)`: its per-group counts of non-owner members are used.
pub fn check_limits(
    desired: &DesiredState,
    current: &CurrentState,
    plan: &Plan,
) -> Vec<LimitBreach> {
    let mut breaches = Vec::new();
    let mut total_removals = 0usize;
    let mut total_current = 0usize;
    for g in &plan.groups {
        let Some(want) = desired.groups.get(&g.id) else {
            continue;
        };
        // All memberships from the current state (O(1)); non-owners as counted by the diff.
        let all = current.groups.get(&g.id).map_or(0, |c| c.members.len());
        let non_owner = g.current_non_owners;
        let removals = g
            .changes()
            .filter(|c| matches!(c, Change::Remove { .. }))
            .count();
        total_removals += removals;
        total_current += all;
        if removals == 0 {
            continue;
        }
        check_group(
            desired,
            want,
            g.name.clone(),
            removals,
            non_owner,
            &mut breaches,
        );
    }
    breaches.extend(run_breach(desired, total_removals, total_current));
    breaches
}

/// The removals a plan makes and the current memberships of its groups: what the run-wide
/// limit is taken of (`check_limits` adds them up the same way).
pub fn run_totals(current: &CurrentState, plan: &Plan) -> (usize, usize) {
    plan.groups.iter().fold((0, 0), |(r, c), g| {
        let removals = g
            .changes()
            .filter(|c| matches!(c, Change::Remove { .. }))
            .count();
        let all = current.groups.get(&g.id).map_or(0, |c| c.members.len());
        (r + removals, c + all)
    })
}

/// The run-wide rule (`max_total_removals`) on `removals` of `current` memberships: for a run
/// over several portals the shell adds every portal's `run_totals` up and asks this.
pub fn run_breach(desired: &DesiredState, removals: usize, current: usize) -> Option<LimitBreach> {
    let (limit, origin) = resolve(
        None,
        desired.limits.max_total_removals,
        DEFAULT_MAX_REMOVALS,
    );
    (removals > 0 && breaks(limit, removals, current)).then(|| LimitBreach {
        scope: BreachScope::Run,
        rule: BreachRule::MaxTotalRemovals(limit),
        origin,
        removals,
        current,
        allowed: limit.allowed(current),
    })
}

fn check_group(
    desired: &DesiredState,
    want: &DesiredGroup,
    name: Option<String>,
    removals: usize,
    non_owner: usize,
    out: &mut Vec<LimitBreach>,
) {
    let scope = BreachScope::Group { id: want.id, name };
    let (limit, origin) = resolve(
        want.limits.max_removals,
        desired.limits.max_removals,
        DEFAULT_MAX_REMOVALS,
    );
    if breaks(limit, removals, non_owner) {
        out.push(LimitBreach {
            scope: scope.clone(),
            rule: BreachRule::MaxRemovals(limit),
            origin,
            removals,
            current: non_owner,
            allowed: limit.allowed(non_owner),
        });
    }
    let (allow_empty, origin) = resolve(want.limits.allow_empty, desired.limits.allow_empty, false);
    if !allow_empty && non_owner >= EMPTY_FLOOR && removals >= non_owner {
        out.push(LimitBreach {
            scope,
            rule: BreachRule::Empties,
            origin,
            removals,
            current: non_owner,
            allowed: non_owner as u64 - 1,
        });
    }
}
