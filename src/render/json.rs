//! The machine-readable plan (`--format json`). This is an interface: its shape is documented in
//! README.md ("JSON plan format") and changes only together with `FORMAT_VERSION`. Additive
//! fields (such as `limit_breaches`) keep the version.

use serde::Serialize;

use crate::model::{GroupId, Limit, Role, UserId};
use crate::plan::{
    BreachRule, BreachScope, Change, Entry, LimitBreach, Origin, Plan, SkipReason, Summary, Wanted,
};

/// Bumped on any incompatible change to the JSON plan.
pub const FORMAT_VERSION: &str = "1";

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    has_changes: bool,
    summary: Summary,
    groups: Vec<JsonGroup<'a>>,
    /// Present when the shell checked the limits (`plan_with_limits`): empty when none broke.
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_breaches: Option<Vec<JsonBreach<'a>>>,
}

/// One broken limit. `group` and `name` are null for the run-wide limit; `limit` is null for
/// the `empties_group` rule; `line` is null for a default.
#[derive(Serialize)]
struct JsonBreach<'a> {
    scope: &'static str,
    group: Option<GroupId>,
    name: Option<&'a str>,
    rule: &'static str,
    limit: Option<JsonLimit>,
    origin: &'static str,
    line: Option<usize>,
    removals: usize,
    current: usize,
    allowed: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum JsonLimit {
    Count(u64),
    Percent(u8),
}

fn breach(b: &LimitBreach) -> JsonBreach<'_> {
    let (scope, group, name) = match &b.scope {
        BreachScope::Group { id, name } => ("group", Some(*id), name.as_deref()),
        BreachScope::Run => ("run", None, None),
    };
    let (rule, limit) = match b.rule {
        BreachRule::MaxRemovals(l) => ("max_removals", Some(l)),
        BreachRule::Empties => ("empties_group", None),
        BreachRule::MaxTotalRemovals(l) => ("max_total_removals", Some(l)),
    };
    let (origin, line) = match b.origin {
        Origin::Default => ("default", None),
        Origin::File { line } => ("file", Some(line)),
        Origin::Group { line } => ("group", Some(line)),
    };
    JsonBreach {
        scope,
        group,
        name,
        rule,
        limit: limit.map(|l| match l {
            Limit::Count(n) => JsonLimit::Count(n),
            Limit::Percent(p) => JsonLimit::Percent(p),
        }),
        origin,
        line,
        removals: b.removals,
        current: b.current,
        allowed: b.allowed,
    }
}

#[derive(Serialize)]
struct JsonGroup<'a> {
    id: GroupId,
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_mismatch: Option<JsonOwnerMismatch>,
    entries: Vec<JsonEntry>,
}

#[derive(Serialize)]
struct JsonOwnerMismatch {
    declared: UserId,
    actual: Option<UserId>,
}

#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum JsonEntry {
    Add {
        user: UserId,
        role: Role,
    },
    SetRole {
        user: UserId,
        from: Role,
        to: Role,
    },
    Remove {
        user: UserId,
        role: Role,
    },
    Skip {
        user: UserId,
        role: Role,
        wanted: &'static str,
        reason: &'static str,
    },
}

fn entry(e: &Entry) -> JsonEntry {
    match *e {
        Entry::Change(Change::Add { user, role }) => JsonEntry::Add { user, role },
        Entry::Change(Change::SetRole { user, from, to }) => JsonEntry::SetRole { user, from, to },
        Entry::Change(Change::Remove { user, role }) => JsonEntry::Remove { user, role },
        Entry::Change(Change::Invite { user, role } | Change::Accept { user, role }) => {
            JsonEntry::Add { user, role }
        }
        Entry::Change(Change::SetOwner { to, .. }) => JsonEntry::Add {
            user: to,
            role: Role::Owner,
        },
        Entry::Pending(p) => JsonEntry::Skip {
            user: p.user,
            role: Role::Member,
            wanted: "pending",
            reason: "pending",
        },
        Entry::Skipped(s) => JsonEntry::Skip {
            user: s.user,
            role: s.role,
            wanted: match s.wanted {
                Wanted::Remove => "remove",
                Wanted::Demote(r) => r.as_str(),
            },
            reason: match s.reason {
                SkipReason::Owner => "owner",
                SkipReason::Protected => "protected",
                SkipReason::DeptSynced => "synced",
            },
        },
    }
}

/// The plan as pretty-printed JSON, newline-terminated (no `limit_breaches` field).
pub fn plan(plan: &Plan) -> String {
    render(plan, None)
}

/// The plan with the limits it breaks (`plan::check_limits`), as the additive
/// `limit_breaches` field: always present here, `[]` when the plan is within its limits, in
/// `check_limits` order (groups by ID, then the run).
pub fn plan_with_limits(plan: &Plan, breaches: &[LimitBreach]) -> String {
    render(plan, Some(breaches))
}

fn render(plan: &Plan, breaches: Option<&[LimitBreach]>) -> String {
    let summary = plan.summary();
    let doc = JsonPlan {
        format_version: FORMAT_VERSION,
        has_changes: summary.has_changes(),
        summary,
        groups: plan
            .groups
            .iter()
            .map(|g| JsonGroup {
                id: g.id,
                name: g.name.as_deref(),
                owner_mismatch: g.owner_mismatch.map(|m| JsonOwnerMismatch {
                    declared: m.declared,
                    actual: m.actual,
                }),
                entries: g.entries.iter().map(entry).collect(),
            })
            .collect(),
        limit_breaches: breaches.map(|b| b.iter().map(breach).collect()),
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("plan JSON is always serialisable");
    s.push('\n');
    s
}
