//! The machine-readable plan (`--format json`). This is an interface: its shape is documented
//! here and in README.md ("JSON plan format"), and changes only together with
//! `FORMAT_VERSION`. Fields are only ever added within a version; existing keys keep their
//! meaning.
//!
//! ```text
//! {
//!   "format_version": "1",
//!   "has_changes": true,              // adds, invitations, role changes, removals, owner changes
//!   "summary": { "add", "invite", "change", "remove", "owner", "skipped", "pending" },
//!   "groups": [{
//!     "id": 15, "name": "Marketing",  // the portal's name when known, else the file's, or null
//!     "owner_mismatch": { "declared": 5, "actual": 1 },   // only when the owner differs and
//!                                     //   the plan does not change it
//!     "departments": [8, 12],         // UF_SG_DEPT; [] when the group is not synced
//!     "entries": [                    // sorted by user; a set_owner entry comes first
//!       // every entry has "action" and "user", and when the run knows them the user's
//!       // "email", "name" and "extranet" (true/false)
//!       { "action": "add",      "user": 22, "role": "member" },
//!       { "action": "invite",   "user": 23, "role": "moderator" },  // the declared role
//!       { "action": "accept",   "user": 24, "role": "member" },     // a request to join
//!       { "action": "set_role", "user": 10, "from": "member", "to": "moderator" },
//!       { "action": "remove",   "user": 30, "role": "member" },
//!       { "action": "set_owner","user": 5, "from": 1, "to": 5 },    // "from" may be null
//!       { "action": "skip",     "user": 1, "role": "owner", "wanted": "remove" | ROLE,
//!         "reason": "owner" | "protected" | "synced" },
//!       { "action": "pending",  "user": 26, "kind": "invited" | "requested" | "inactive",
//!         "declared_role": ROLE or null }                           // never a change
//!     ]
//!   }],
//!   // Only when the shell gives them (`Extras`), each an array (possibly empty):
//!   "limit_breaches": [{ "scope", "group", "name", "rule", "limit", "origin", "line",
//!                        "removals", "current", "allowed" }],
//!   "errors":   [{ "file", "line", "column", "path", "message" }],  // resolve's; the groups
//!                                                                   //   they are in are left out
//!   "warnings": [{ "file", "line", "column", "path", "message" }],
//!   "access_problems": [{ "group", "name", "changes", "message" }],
//!   "portal_warnings": ["…"]   // what the portal kept roster from seeing (a webhook scope)
//! }
//! ```
//!
//! The apply report (`report_document`), under the same `FORMAT_VERSION` and rules:
//!
//! ```text
//! {
//!   "format_version": "1",
//!   "kind": "apply_report",
//!   "summary": { "done", "not_done", "failed", "unknown", "not_started", "skipped" },
//!   "all_done": true,                 // every change done (or found in place)
//!   "retries": 2,                     // the run's retries after transient errors (rate
//!                                     //   limits, server hiccups); not counted per change
//!   "groups": [{                      // in plan order, each group once
//!     "id": 15, "name": "Marketing",  // name null when unknown
//!     "outcomes": [{                  // the change as in the plan's entries ("action",
//!                                     //   "user", who, "role" or "from"/"to"), and:
//!       "action": "add", "user": 22, "role": "member",
//!       "outcome": "done" | "not_done" | "failed" | "unknown" | "not_started",
//!       "confirmed": false,           // done, found in place by reading the group again
//!                                     //   rather than by the answer to roster's own call
//!       "reason": null                // why not done, the error, or why not started
//!     }]
//!   }]
//! }
//! ```
//!
//! Both are described by JSON Schemas in `schemas/` (`plan.schema.json`, which also covers
//! the document of several portals, and `apply-report.schema.json`). The plan schema allows
//! an optional `"kind": "plan"` on both plan documents, for when the plan gets one too.

use serde::Serialize;

use crate::apply::Report;
use crate::model::{Directory, GroupId, Limit, OpStatus, Role, UserId};
use crate::plan::{
    AccessProblem, BreachRule, BreachScope, Change, Entry, LimitBreach, Origin, PendingKind, Plan,
    SkipReason, Summary, Wanted,
};
use crate::spec::Diagnostic;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<JsonDiagnostic<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<Vec<JsonDiagnostic<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_problems: Option<Vec<JsonAccessProblem<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    portal_warnings: Option<&'a [String]>,
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

/// Limit breaches as the plan document writes them (`limit_breaches`), for the shell's
/// document of several portals.
pub fn breaches(b: &[LimitBreach]) -> serde_json::Value {
    serde_json::to_value(b.iter().map(breach).collect::<Vec<_>>()).unwrap_or_default()
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
    entries: Vec<JsonEntry<'a>>,
    /// Departments Bitrix24 syncs the group from (`UF_SG_DEPT`); `[]` for none.
    departments: &'a [u64],
}

#[derive(Serialize)]
struct JsonOwnerMismatch {
    declared: UserId,
    actual: Option<UserId>,
}

/// What the run learned about a user: each field only when known.
#[derive(Serialize, Default)]
struct Who<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extranet: Option<bool>,
}

fn who(dir: &Directory, user: UserId) -> Who<'_> {
    match dir.users.get(&user) {
        None => Who::default(),
        Some(p) => Who {
            email: p.email.as_deref(),
            name: p.name.as_deref(),
            extranet: Some(p.extranet),
        },
    }
}

#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum JsonEntry<'a> {
    Add {
        user: UserId,
        role: &'static str,
        #[serde(flatten)]
        who: Who<'a>,
    },
    Invite {
        user: UserId,
        role: &'static str,
        #[serde(flatten)]
        who: Who<'a>,
    },
    Accept {
        user: UserId,
        role: &'static str,
        #[serde(flatten)]
        who: Who<'a>,
    },
    SetRole {
        user: UserId,
        from: &'static str,
        to: &'static str,
        #[serde(flatten)]
        who: Who<'a>,
    },
    Remove {
        user: UserId,
        role: &'static str,
        #[serde(flatten)]
        who: Who<'a>,
    },
    SetOwner {
        user: UserId,
        from: Option<UserId>,
        to: UserId,
        #[serde(flatten)]
        who: Who<'a>,
    },
    Skip {
        user: UserId,
        role: &'static str,
        wanted: &'static str,
        reason: &'static str,
        #[serde(flatten)]
        who: Who<'a>,
    },
    Pending {
        user: UserId,
        kind: &'static str,
        declared_role: Option<&'static str>,
        #[serde(flatten)]
        who: Who<'a>,
    },
}

fn entry<'a>(e: &Entry, dir: &'a Directory) -> JsonEntry<'a> {
    let w = who(dir, e.user());
    // Roles in the system's words: a DocSpace group's head is its "manager".
    let word = |r: Role| dir.system.role_word(r);
    match *e {
        Entry::Change(Change::Add { user, role }) => JsonEntry::Add {
            user,
            role: word(role),
            who: w,
        },
        Entry::Change(Change::Invite { user, role }) => JsonEntry::Invite {
            user,
            role: word(role),
            who: w,
        },
        Entry::Change(Change::Accept { user, role }) => JsonEntry::Accept {
            user,
            role: word(role),
            who: w,
        },
        Entry::Change(Change::SetRole { user, from, to }) => JsonEntry::SetRole {
            user,
            from: word(from),
            to: word(to),
            who: w,
        },
        Entry::Change(Change::Remove { user, role }) => JsonEntry::Remove {
            user,
            role: word(role),
            who: w,
        },
        Entry::Change(Change::SetOwner { from, to }) => JsonEntry::SetOwner {
            user: to,
            from,
            to,
            who: w,
        },
        Entry::Pending(p) => {
            let (kind, declared_role) = match p.kind {
                PendingKind::Invited { declared } => ("invited", declared),
                PendingKind::Requested => ("requested", None),
                PendingKind::Inactive { role } => ("inactive", Some(role)),
            };
            let declared_role = declared_role.map(word);
            JsonEntry::Pending {
                user: p.user,
                kind,
                declared_role,
                who: w,
            }
        }
        Entry::Skipped(s) => JsonEntry::Skip {
            user: s.user,
            role: word(s.role),
            wanted: match s.wanted {
                Wanted::Remove => "remove",
                Wanted::Demote(r) => word(r),
            },
            reason: match s.reason {
                SkipReason::Owner => dir.system.owner_word(),
                SkipReason::Protected => "protected",
                SkipReason::DeptSynced => "synced",
            },
            who: w,
        },
    }
}

/// A problem in the file or found resolving it, at its place.
#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    path: &'a str,
    message: &'a str,
}

fn diagnostic(d: &Diagnostic) -> JsonDiagnostic<'_> {
    JsonDiagnostic {
        file: &d.file,
        line: d.line,
        column: d.column,
        path: &d.path,
        message: &d.message,
    }
}

#[derive(Serialize)]
struct JsonAccessProblem<'a> {
    group: GroupId,
    name: Option<&'a str>,
    changes: usize,
    message: &'a str,
}

/// What the shell checked besides the plan, each written as a top-level field when given
/// (`Some`, even empty) and left out when `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// `plan::check_limits`'s breaches: `limit_breaches`.
    pub limit_breaches: Option<&'a [LimitBreach]>,
    /// Resolve's errors (groups with errors are not in the plan): `errors`.
    pub errors: Option<&'a [Diagnostic]>,
    /// Resolve's warnings and name mismatches: `warnings`.
    pub warnings: Option<&'a [Diagnostic]>,
    /// `plan::access::check`'s problems: `access_problems`.
    pub access_problems: Option<&'a [AccessProblem]>,
    /// What the provider could not see (`Provider::read_warnings`): `portal_warnings`.
    pub portal_warnings: Option<&'a [String]>,
}

/// The plan as pretty-printed JSON, newline-terminated (no extra fields).
pub fn plan(plan: &Plan, dir: &Directory) -> String {
    document(plan, dir, &Extras::default())
}

/// The plan with the limits it breaks (`plan::check_limits`), as the additive
/// `limit_breaches` field: always present here, `[]` when the plan is within its limits, in
/// `check_limits` order (groups by ID, then the run).
pub fn plan_with_limits(plan: &Plan, dir: &Directory, breaches: &[LimitBreach]) -> String {
    document(
        plan,
        dir,
        &Extras {
            limit_breaches: Some(breaches),
            ..Extras::default()
        },
    )
}

/// The plan with every extra the shell gives.
pub fn document(plan: &Plan, dir: &Directory, extras: &Extras) -> String {
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
                entries: g.entries.iter().map(|e| entry(e, dir)).collect(),
                departments: &g.departments,
            })
            .collect(),
        limit_breaches: extras
            .limit_breaches
            .map(|b| b.iter().map(breach).collect()),
        errors: extras.errors.map(|d| d.iter().map(diagnostic).collect()),
        warnings: extras.warnings.map(|d| d.iter().map(diagnostic).collect()),
        access_problems: extras.access_problems.map(|p| {
            p.iter()
                .map(|p| JsonAccessProblem {
                    group: p.group,
                    name: p.name.as_deref(),
                    changes: p.changes,
                    message: &p.message,
                })
                .collect()
        }),
        portal_warnings: extras.portal_warnings,
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("plan JSON is always serialisable");
    s.push('\n');
    s
}

#[derive(Serialize)]
struct JsonReport<'a> {
    format_version: &'static str,
    kind: &'static str,
    summary: ReportSummary,
    all_done: bool,
    retries: u64,
    groups: Vec<ReportGroup<'a>>,
}

#[derive(Serialize)]
struct ReportSummary {
    done: usize,
    not_done: usize,
    failed: usize,
    unknown: usize,
    not_started: usize,
    skipped: usize,
}

#[derive(Serialize)]
struct ReportGroup<'a> {
    id: GroupId,
    name: Option<&'a str>,
    outcomes: Vec<ReportOutcome<'a>>,
}

#[derive(Serialize)]
struct ReportOutcome<'a> {
    #[serde(flatten)]
    change: JsonEntry<'a>,
    outcome: &'static str,
    confirmed: bool,
    reason: Option<&'a str>,
}

/// The apply report as pretty-printed JSON, newline-terminated (the shape is in the module
/// doc). People are named from `dir` as in the plan.
pub fn report_document(report: &Report, dir: &Directory) -> String {
    let mut groups: Vec<ReportGroup> = Vec::new();
    for o in &report.outcomes {
        let (outcome, confirmed, reason) = match &o.status {
            OpStatus::Done => ("done", false, None),
            OpStatus::Confirmed => ("done", true, None),
            OpStatus::NotDone { reason } => ("not_done", false, Some(reason.as_str())),
            OpStatus::Failed { error } => ("failed", false, Some(error.as_str())),
            OpStatus::Unknown { error } => ("unknown", false, Some(error.as_str())),
            OpStatus::NotStarted => (
                "not_started",
                false,
                Some("not sent: the run was interrupted"),
            ),
        };
        let one = ReportOutcome {
            change: entry(&Entry::Change(o.change), dir),
            outcome,
            confirmed,
            reason,
        };
        // Outcomes come in plan order, so a group's are together: look at the last group
        // first; one seen earlier (a report is data) still gets its outcome.
        let seen = match groups.last_mut() {
            Some(g) if g.id == o.group => Some(g),
            _ => groups.iter_mut().find(|g| g.id == o.group),
        };
        match seen {
            Some(g) => g.outcomes.push(one),
            None => groups.push(ReportGroup {
                id: o.group,
                name: o.group_name.as_deref(),
                outcomes: vec![one],
            }),
        }
    }
    let doc = JsonReport {
        format_version: FORMAT_VERSION,
        kind: "apply_report",
        summary: ReportSummary {
            done: report.done(),
            not_done: report.not_done(),
            failed: report.failed(),
            unknown: report.unknown(),
            not_started: report.not_started(),
            skipped: report.skipped,
        },
        all_done: report.all_done(),
        retries: report.retries,
        groups,
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("report JSON is always serialisable");
    s.push('\n');
    s
}
