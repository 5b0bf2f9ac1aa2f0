//! The human-readable plan and apply report, Terraform-style: `+` add (or invite, or accept a
//! request), `~` role or owner change, `-` remove, `!` for what is not a change (skipped,
//! pending invitations and requests, inactive users, department sync), and the mass-removal
//! limits and access problems a plan has. People are shown as `anna@example.com (#21)` from
//! the run's `Directory` (`#21` when unknown), groups as `group "Marketing" (#15)`. Groups
//! with nothing to say are left out.

use std::fmt::Write;

use super::Style;
use crate::model::{Directory, GroupId, Role, System, UserId};
use crate::plan::{
    AccessProblem, BreachRule, BreachScope, Change, Entry, GroupPlan, LimitBreach, Origin,
    PendingKind, Plan, SkipReason, Summary, Wanted,
};
use crate::spec::escape;

const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "31";
const CYAN: &str = "36";
pub const BOLD: &str = "1";

/// `group "Marketing" (#15)`, or `group #15` when the name is not known.
pub fn group_title(id: GroupId, name: Option<&str>) -> String {
    // Bitrix24 IDs read `#15`; a DocSpace UUID is shown as it is.
    let id = match id {
        GroupId::Num(n) => format!("#{n}"),
        GroupId::Uuid(u) => u.to_string(),
    };
    match name {
        Some(n) => format!("group {n:?} ({id})"),
        None => format!("group {id}"),
    }
}

/// A person as plans show them: `anna@example.com (#21)`, else their name, else `#21`;
/// extranet users marked (`anna@x (#21, extranet)`). Text from the portal is escaped.
pub fn person(dir: &Directory, user: UserId) -> String {
    // Bitrix24 IDs read `#21`; a DocSpace UUID is shown as it is.
    let id = match user {
        UserId::Num(n) => format!("#{n}"),
        UserId::Uuid(u) => u.to_string(),
    };
    let Some(p) = dir.users.get(&user) else {
        return id;
    };
    let extranet = match (p.extranet, dir.system) {
        (false, _) => "",
        (true, System::Bitrix24) => "extranet",
        (true, System::DocSpace) => "guest",
    };
    match p.email.as_deref().or(p.name.as_deref()) {
        Some(label) if extranet.is_empty() => format!("{} ({id})", escape(label)),
        Some(label) => format!("{} ({id}, {extranet})", escape(label)),
        None if !extranet.is_empty() => format!("{id} ({extranet})"),
        None => id,
    }
}

/// The symbol, the user column and the description of one plan entry, e.g.
/// (`~`, `anna@x (#21)`, `member -> moderator`).
pub fn describe_entry(entry: &Entry, dir: &Directory) -> (char, String, String) {
    let who = person(dir, entry.user());
    let word = |r: Role| dir.system.role_word(r);
    let (symbol, what) = match entry {
        Entry::Change(Change::Add { role, .. }) => ('+', word(*role).to_owned()),
        Entry::Change(Change::Accept { role, .. }) => {
            ('+', format!("{role}  (accepting their request to join)"))
        }
        Entry::Change(Change::Invite { role, .. }) => (
            '+',
            match role {
                Role::Member | Role::Owner => "member  (invite)".to_owned(),
                r => format!(
                    "member  (invite; declared {r}: promoted on a later run, once they accept)"
                ),
            },
        ),
        Entry::Change(Change::SetOwner { from, to }) => {
            let old = from.map_or("nobody".to_owned(), |f| person(dir, f));
            let fate = match from {
                Some(_) => format!("  ({old} becomes a member)"),
                None => String::new(),
            };
            return (
                '~',
                format!("{}: {old} → {}", word(Role::Owner), person(dir, *to)),
                fate.trim_start().to_owned(),
            );
        }
        Entry::Pending(p) => (
            '!',
            match p.kind {
                PendingKind::Invited { declared: None } => {
                    "invited, pending acceptance (not in the file)".to_owned()
                }
                PendingKind::Invited {
                    declared: Some(Role::Moderator),
                } => "invited, pending acceptance (declared moderator: promoted once a member)"
                    .to_owned(),
                PendingKind::Invited { .. } => "invited, pending acceptance".to_owned(),
                PendingKind::Requested => {
                    "asked to join, waiting for approval (not in the file)".to_owned()
                }
                PendingKind::Inactive { .. } => match (dir.system, dir.users.get(&p.user)) {
                    (System::DocSpace, Some(u)) if u.extranet => {
                        "guest: not added (DocSpace does not add guests to groups)".to_owned()
                    }
                    (System::DocSpace, _) => {
                        "terminated: not added (DocSpace does not add terminated users)".to_owned()
                    }
                    _ => "inactive: not added".to_owned(),
                },
            },
        ),
        Entry::Change(Change::SetRole { from, to, .. }) => {
            ('~', format!("{} -> {}", word(*from), word(*to)))
        }
        Entry::Change(Change::Remove { role, .. }) => ('-', word(*role).to_owned()),
        Entry::Skipped(s) => {
            let why = match (s.reason, s.wanted) {
                (SkipReason::Owner, Wanted::Remove) => {
                    let o = word(Role::Owner);
                    format!("{o} (not declared; {o}s are never removed)")
                }
                (SkipReason::Owner, Wanted::Demote(r)) => {
                    let o = word(Role::Owner);
                    format!("{o} (declared as {}; {o}s are never demoted)", word(r))
                }
                (SkipReason::Protected, Wanted::Remove) => {
                    "protected (not declared; protected users are never removed)".to_owned()
                }
                (SkipReason::Protected, Wanted::Demote(r)) => {
                    format!("protected (declared as {r}; protected users are never demoted)")
                }
                (SkipReason::DeptSynced, _) => {
                    "synced (not declared; Bitrix24 would add them back from the group's departments)"
                        .to_owned()
                }
            };
            ('!', format!("{}  skipped: {why}", word(s.role)))
        }
    };
    (symbol, who, what)
}

fn color_of(symbol: char) -> &'static str {
    match symbol {
        '+' => GREEN,
        '~' => YELLOW,
        '-' => RED,
        _ => CYAN,
    }
}

fn list(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_group(out: &mut String, g: &GroupPlan, dir: &Directory, style: Style) {
    let _ = writeln!(
        out,
        "  {}",
        style.paint(BOLD, &group_title(g.id, g.name.as_deref()))
    );
    // After an owner change the old owner's own line says who they were: a reviewer should
    // not mistake "- ada member" for an ordinary removal.
    let former = g.entries.iter().find_map(|e| match e {
        Entry::Change(Change::SetOwner { from, .. }) => *from,
        _ => None,
    });
    let lines: Vec<(char, String, String)> = g
        .entries
        .iter()
        .map(|e| {
            let (symbol, who, mut text) = describe_entry(e, dir);
            let about_former = matches!(e, Entry::Change(c)
                if !matches!(c, Change::SetOwner { .. }) && Some(c.user()) == former);
            if about_former {
                text.push_str(&format!("  (the former {})", dir.system.owner_word()));
            }
            (symbol, who, text)
        })
        .collect();
    // The owner change is first and reads as a sentence; the others line up.
    let width = lines
        .iter()
        .zip(&g.entries)
        .filter(|(_, e)| !matches!(e, Entry::Change(Change::SetOwner { .. })))
        .map(|((_, who, _), _)| who.chars().count())
        .max()
        .unwrap_or(0);
    let note = |out: &mut String, text: &str| {
        let _ = writeln!(out, "    {}", style.paint(CYAN, &format!("! {text}")));
    };
    if !g.departments.is_empty() {
        let departments = list(&g.departments);
        if !g.prune_synced {
            note(
                out,
                &format!(
                    "synced by Bitrix24 from departments {departments}: removals are not planned (set prune: true to take the group over)"
                ),
            );
        } else if g.changes().any(|c| matches!(c, Change::Remove { .. })) {
            note(
                out,
                &format!(
                    "synced by Bitrix24 from departments {departments}: prune: true removes members Bitrix24 may add back"
                ),
            );
        }
    }
    for ((symbol, who, text), e) in lines.iter().zip(&g.entries) {
        let line = match e {
            Entry::Change(Change::SetOwner { .. }) if text.is_empty() => format!("{symbol} {who}"),
            Entry::Change(Change::SetOwner { .. }) => format!("{symbol} {who} {text}"),
            _ => {
                let pad = width.saturating_sub(who.chars().count());
                format!("{symbol} {who}{:pad$}  {text}", "")
            }
        };
        let _ = writeln!(out, "    {}", style.paint(color_of(*symbol), &line));
    }
    if let Some(m) = g.owner_mismatch {
        let o = dir.system.owner_word();
        let actual = m.actual.map_or(format!("no {o}"), |a| person(dir, a));
        let advice = match dir.system {
            // DocSpace managers change without the flag: a mismatch left is one roster will not
            // make (the declared manager cannot be one).
            System::DocSpace => "a guest or a terminated user cannot be a group's manager",
            System::Bitrix24 => "pass --allow-owner-change to hand the group over",
        };
        note(
            out,
            &format!(
                "{o} differs: the file declares {}, the portal has {actual} ({advice})",
                person(dir, m.declared)
            ),
        );
    }
}

/// The summary line: `Plan: 3 to add, 1 to change, 2 to remove, 1 skipped.` or `No changes.`;
/// invitations, owner changes and pending entries are counted when there are any.
pub fn summary_line(s: &Summary) -> String {
    summary_line_for(s, System::Bitrix24)
}

/// `summary_line` in a system's words (a DocSpace owner change is a "manager change").
pub fn summary_line_for(s: &Summary, system: System) -> String {
    let mut extra = String::new();
    if s.pending > 0 {
        let _ = write!(extra, ", {} pending", s.pending);
    }
    if s.has_changes() {
        let invite = if s.invite > 0 {
            format!("{} to invite, ", s.invite)
        } else {
            String::new()
        };
        let o = system.owner_word();
        let owner = match s.owner {
            0 => String::new(),
            1 => format!("1 {o} change, "),
            n => format!("{n} {o} changes, "),
        };
        format!(
            "Plan: {} to add, {invite}{} to change, {} to remove, {owner}{} skipped{extra}.",
            s.add, s.change, s.remove, s.skipped
        )
    } else if s.skipped > 0 || s.pending > 0 {
        format!("No changes. {} skipped{extra}.", s.skipped)
    } else {
        "No changes.".to_owned()
    }
}

/// The whole plan as text, ending with the summary line. `dir` names the people it knows.
pub fn plan(plan: &Plan, dir: &Directory, style: Style) -> String {
    let mut out = String::new();
    let shown: Vec<&GroupPlan> = plan
        .groups
        .iter()
        .filter(|g| {
            !g.entries.is_empty() || g.owner_mismatch.is_some() || !g.departments.is_empty()
        })
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
            write_group(&mut out, g, dir, style);
            out.push('\n');
        }
    }
    let _ = writeln!(
        out,
        "{}",
        style.paint(BOLD, &summary_line_for(&summary, dir.system))
    );
    out
}

/// One line per access problem (`plan::access::check`), each starting with `level`
/// (`warning` in plan, `error` in apply), newline-terminated; empty for none.
pub fn access_problems(problems: &[AccessProblem], level: &str) -> String {
    let mut out = String::new();
    for p in problems {
        let _ = writeln!(
            out,
            "{level}: {}: {} change(s) not allowed: {}",
            group_title(p.group, p.name.as_deref()),
            p.changes,
            p.message
        );
    }
    out
}

/// The apply report: one line per change with its outcome, then a summary line.
pub fn report(report: &crate::apply::Report, dir: &Directory, style: Style) -> String {
    use crate::model::OpStatus;
    let mut out = String::new();
    for o in &report.outcomes {
        let entry = Entry::Change(o.change);
        let (symbol, who, what) = describe_entry(&entry, dir);
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" {what}")
        };
        let subject = format!(
            "{}: {symbol} {who}{what}",
            group_title(o.group, o.group_name.as_deref()),
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
