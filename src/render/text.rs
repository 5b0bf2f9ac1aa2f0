//! The human-readable plan and apply report, Terraform-style: `+` add, `~` role change,
//! `-` remove, `!` skipped, and the mass-removal limits a plan breaks. Groups with nothing to
//! say are left out.

use std::fmt::Write;

use super::Style;
use crate::plan::{
    BreachRule, BreachScope, Change, Entry, GroupPlan, LimitBreach, Origin, Plan, SkipReason,
    Summary, Wanted,
};

const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "31";
const CYAN: &str = "36";
const BOLD: &str = "1";

/// `group 15 "Marketing"`
pub fn group_title(id: crate::model::GroupId, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("group {id} {n:?}"),
        None => format!("group {id}"),
    }
}

/// The symbol and description of one plan entry, e.g. (`~`, `member -> moderator`).
pub fn describe_entry(entry: &Entry) -> (char, String) {
    match entry {
        Entry::Change(Change::Add { role, .. }) => ('+', role.to_string()),
        Entry::Change(Change::Accept { role, .. }) => {
            ('+', format!("{role}  (accepting their request to join)"))
        }
        Entry::Change(Change::Invite { role, .. }) => ('+', format!("{role}  (invite)")),
        Entry::Change(Change::SetOwner { from, .. }) => (
            '~',
            match from {
                Some(f) => format!("owner  (from {f}, who becomes a member)"),
                None => "owner".to_owned(),
            },
        ),
        Entry::Pending(p) => ('!', format!("{:?}", p.kind)),
        Entry::Change(Change::SetRole { from, to, .. }) => ('~', format!("{from} -> {to}")),
        Entry::Change(Change::Remove { role, .. }) => ('-', role.to_string()),
        Entry::Skipped(s) => {
            let (reason, who) = match s.reason {
                SkipReason::Owner => ("owner", "owners"),
                SkipReason::Protected => ("protected", "protected users"),
                SkipReason::DeptSynced => ("synced", "department-synced members"),
            };
            let why = match s.wanted {
                Wanted::Remove => format!("not declared; {who} are never removed"),
                Wanted::Demote(r) => format!("declared as {r}; {who} are never demoted"),
            };
            ('!', format!("{}  skipped: {reason} ({why})", s.role))
        }
    }
}

fn color_of(symbol: char) -> &'static str {
    match symbol {
        '+' => GREEN,
        '~' => YELLOW,
        '-' => RED,
        _ => CYAN,
    }
}

fn write_group(out: &mut String, g: &GroupPlan, style: Style) {
    let _ = writeln!(
        out,
        "  {}",
        style.paint(BOLD, &group_title(g.id, g.name.as_deref()))
    );
    let width = g
        .entries
        .iter()
        .map(|e| e.user().to_string().len())
        .max()
        .unwrap_or(0);
    for e in &g.entries {
        let (symbol, text) = describe_entry(e);
        let line = format!("{symbol} {:<width$}  {text}", e.user().to_string());
        let _ = writeln!(out, "    {}", style.paint(color_of(symbol), &line));
    }
    if let Some(m) = g.owner_mismatch {
        let actual = m
            .actual
            .map_or("no owner".to_owned(), |a| format!("user {a}"));
        let line = format!(
            "! owner differs: the file declares user {}, the portal has {actual} (owners are never changed)",
            m.declared
        );
        let _ = writeln!(out, "    {}", style.paint(CYAN, &line));
    }
}

/// The summary line: `Plan: 3 to add, 1 to change, 2 to remove, 1 skipped.` or `No changes.`
pub fn summary_line(s: &Summary) -> String {
    if s.has_changes() {
        format!(
            "Plan: {} to add, {} to change, {} to remove, {} skipped.",
            s.add, s.change, s.remove, s.skipped
        )
    } else if s.skipped > 0 {
        format!("No changes. {} skipped.", s.skipped)
    } else {
        "No changes.".to_owned()
    }
}

/// The whole plan as text, ending with the summary line.
pub fn plan(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let shown: Vec<&GroupPlan> = plan
        .groups
        .iter()
        .filter(|g| !g.entries.is_empty() || g.owner_mismatch.is_some())
        .collect();
    let summary = plan.summary();
    if !shown.is_empty() {
        let lead = if summary.has_changes() {
            "roster will make these changes:"
        } else {
            "roster found nothing to change; for information:"
        };
        let _ = writeln!(out, "{lead}\n");
        for g in shown {
            write_group(&mut out, g, style);
            out.push('\n');
        }
    }
    let _ = writeln!(out, "{}", style.paint(BOLD, &summary_line(&summary)));
    out
}

/// The apply report: one line per change with its outcome, then a summary line.
pub fn report(report: &crate::apply::Report, style: Style) -> String {
    use crate::model::OpStatus;
    let mut out = String::new();
    for o in &report.outcomes {
        let entry = Entry::Change(o.change);
        let (symbol, what) = describe_entry(&entry);
        let subject = format!(
            "{}: {symbol} user {} {what}",
            group_title(o.group, o.group_name.as_deref()),
            o.change.user()
        );
        let line = match &o.status {
            OpStatus::Done => style.paint(GREEN, &format!("{:<12}{subject}", "done")),
            OpStatus::Confirmed => style.paint(
                GREEN,
                &format!(
                    "{:<12}{subject} (in place: confirmed by reading the group again)",
                    "done"
                ),
            ),
            OpStatus::NotDone { reason } => {
                style.paint(RED, &format!("{:<12}{subject}: {reason}", "not done"))
            }
            OpStatus::Failed { error } => {
                style.paint(RED, &format!("{:<12}{subject}: {error}", "failed"))
            }
            OpStatus::Unknown { error } => style.paint(
                YELLOW,
                &format!("{:<12}{subject}: outcome unknown: {error}", "unknown"),
            ),
            OpStatus::NotStarted => style.paint(
                YELLOW,
                &format!(
                    "{:<12}{subject}: not sent (the run was interrupted)",
                    "not started"
                ),
            ),
        };
        let _ = writeln!(out, "{line}");
    }
    let mut summary = format!(
        "Apply: {} done, {} not done, {} failed, {} skipped.",
        report.done(),
        report.not_done(),
        report.failed(),
        report.skipped
    );
    // Only when they occur, so an ordinary report reads as before.
    if report.unknown() > 0 {
        let _ = write!(summary, " {} outcome unknown.", report.unknown());
    }
    if report.not_started() > 0 {
        let _ = write!(summary, " {} not started.", report.not_started());
    }
    if report.retries > 0 {
        let _ = write!(
            summary,
            " {} retried after transient errors.",
            report.retries
        );
    }
    let _ = writeln!(out, "{}", style.paint(BOLD, &summary));
    out
}

/// A share in percent for messages, rounded up to a tenth so it never reads as within a limit
/// it exceeds: `30 %`, `33.4 %`.
fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "0 %".to_owned();
    }
    let tenths = (part as u128 * 1000).div_ceil(whole as u128);
    if tenths.is_multiple_of(10) {
        format!("{} %", tenths / 10)
    } else {
        format!("{}.{} %", tenths / 10, tenths % 10)
    }
}

/// One error line per broken limit (`plan::check_limits`), each saying where the limit was set
/// and how to change it, newline-terminated; empty for no breaches.
pub fn limit_breaches(breaches: &[LimitBreach]) -> String {
    let mut out = String::new();
    for b in breaches {
        let subject = match &b.scope {
            BreachScope::Group { id, name } => format!("{}: ", group_title(*id, name.as_deref())),
            BreachScope::Run => String::new(),
        };
        let (key, whole) = match b.rule {
            BreachRule::MaxRemovals(_) => ("max_removals", "the group"),
            BreachRule::Empties => ("allow_empty", "the group"),
            BreachRule::MaxTotalRemovals(_) => ("max_total_removals", "the file"),
        };
        let origin = match b.origin {
            Origin::Default => match b.rule {
                BreachRule::Empties => format!(
                    "default; set limits.allow_empty: true for {whole} or pass --allow-mass-removal for one run"
                ),
                _ => format!(
                    "default; set limits.{key} in the file or pass --allow-mass-removal for one run"
                ),
            },
            Origin::File { line } => format!(
                "limits.{key} on line {line}; change it there or pass --allow-mass-removal for one run"
            ),
            Origin::Group { line } => format!(
                "the group's limits.{key} on line {line}; change it there or pass --allow-mass-removal for one run"
            ),
        };
        let what = match b.rule {
            BreachRule::MaxRemovals(limit) => format!(
                "the plan removes {} of {} current non-owner members ({}), over the limit of {limit}",
                b.removals,
                b.current,
                percent(b.removals, b.current)
            ),
            BreachRule::Empties => format!(
                "the plan removes all {} current non-owner members, and roster does not empty a group of {} or more",
                b.current,
                crate::plan::EMPTY_FLOOR
            ),
            BreachRule::MaxTotalRemovals(limit) => format!(
                "the plan removes {} of {} current memberships in this run ({}), over the limit of {limit}",
                b.removals,
                b.current,
                percent(b.removals, b.current)
            ),
        };
        let _ = writeln!(out, "error: {subject}{what} ({origin})");
    }
    out
}
