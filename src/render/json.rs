//! The machine-readable plan (`--format json`). This is an interface: its shape is documented in
//! README.md ("JSON plan format") and changes only together with `FORMAT_VERSION`.

use serde::Serialize;

use crate::model::{GroupId, Role, UserId};
use crate::plan::{Change, Entry, Plan, SkipReason, Summary, Wanted};

/// Bumped on any incompatible change to the JSON plan.
pub const FORMAT_VERSION: &str = "1";

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    has_changes: bool,
    summary: Summary,
    groups: Vec<JsonGroup<'a>>,
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
        Entry::Skipped(s) => JsonEntry::Skip {
            user: s.user,
            role: Role::Owner,
            wanted: match s.wanted {
                Wanted::Remove => "remove",
                Wanted::Demote(r) => r.as_str(),
            },
            reason: match s.reason {
                SkipReason::Owner => "owner",
            },
        },
    }
}

/// The plan as pretty-printed JSON, newline-terminated.
pub fn plan(plan: &Plan) -> String {
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
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("plan JSON is always serialisable");
    s.push('\n');
    s
}
