//! The plan as a Markdown pull-request comment (GitHub-flavoured): a hidden marker the CI
//! workflow finds its one comment by, the summary, a `[!WARNING]` alert when anyone is removed
//! and a `[!CAUTION]` alert listing broken removal limits, then one table per group with
//! something to say. Long plans fold each group into `<details>`; the comment never exceeds
//! `MdOptions::max_chars` characters and says how many rows it left out.
//!
//! Pure: no I/O. Everything that comes from the file or the portal (names, e-mails, the
//! portal's name) is escaped so it can neither break a table nor inject HTML or a mention.
//! IDs are written as code (`` `#15` ``) so GitHub does not link `#15` to an issue.

use std::fmt::Write;

use crate::model::{Directory, GroupId, Role, System, UserId};
use crate::plan::{
    Change, Entry, GroupPlan, LimitBreach, PendingKind, Plan, SkipReason, Summary, Wanted,
};
use crate::spec::escape;

/// The comment's first line: the CI workflow finds (and edits) its one comment by it.
pub const MARKER: &str = "<!-- roster-plan -->";

/// One portal's plan.
#[derive(Debug, Clone, Copy)]
pub struct MdSection<'a> {
    /// The portal's name and system; `None` for a plain single-portal file (no heading).
    pub portal: Option<(&'a str, System)>,
    pub plan: &'a Plan,
    /// The people and the system the plan is for.
    pub dir: &'a Directory,
    /// `plan::check_limits`'s breaches for this portal.
    pub breaches: &'a [LimitBreach],
}

/// How the comment is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MdOptions {
    /// With more changes than this in the whole plan, each group's table is folded into
    /// `<details>`.
    pub fold_over: usize,
    /// The most characters (not bytes) the comment may have; GitHub refuses comments over
    /// 65,536.
    pub max_chars: usize,
}

impl Default for MdOptions {
    fn default() -> MdOptions {
        MdOptions {
            fold_over: 20,
            max_chars: 65_000,
        }
    }
}

/// Text from the file or the portal, safe in Markdown (a table cell included): newlines become
/// spaces, control characters are escaped as everywhere (`spec::escape`), Markdown and HTML
/// punctuation is backslash-escaped, and an `@` that would start a mention is defused with a
/// zero-width space (an e-mail's `@`, after a letter or digit, is left alone).
pub fn escape_md(s: &str) -> String {
    let flat = s.replace("\r\n", " ").replace(['\n', '\r'], " ");
    let mut out = String::with_capacity(flat.len() + 8);
    let mut prev: Option<char> = None;
    for c in escape(&flat).chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '@' if !prev.is_some_and(char::is_alphanumeric) => out.push_str("@&#8203;"),
            c => out.push(c),
        }
        prev = Some(c);
    }
    out
}

/// Text from the file or the portal, safe inside HTML (`<summary>`), where Markdown is not
/// read: entities for `& < > "`, and mentions defused as in `escape_md`.
fn escape_html(s: &str) -> String {
    let flat = s.replace("\r\n", " ").replace(['\n', '\r'], " ");
    let mut out = String::with_capacity(flat.len() + 8);
    let mut prev: Option<char> = None;
    for c in escape(&flat).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '@' if !prev.is_some_and(char::is_alphanumeric) => out.push_str("@&#8203;"),
            c => out.push(c),
        }
        prev = Some(c);
    }
    out
}

fn group_id(id: GroupId) -> String {
    match id {
        GroupId::Num(n) => format!("#{n}"),
        GroupId::Uuid(u) => u.to_string(),
    }
}

fn user_id(id: UserId) -> String {
    match id {
        UserId::Num(n) => format!("#{n}"),
        UserId::Uuid(u) => u.to_string(),
    }
}

/// A person in a cell: `anna@example.com (Anna A, `#21`)`, what is known of e-mail and name,
/// the ID always, and `extranet` (Bitrix24) or `guest` (DocSpace) for external users.
fn person(dir: &Directory, user: UserId) -> String {
    let id = format!("`{}`", user_id(user));
    let Some(p) = dir.users.get(&user) else {
        return id;
    };
    let mut inner = Vec::new();
    if p.email.is_some()
        && let Some(name) = &p.name
    {
        inner.push(escape_md(name));
    }
    inner.push(id);
    if p.extranet {
        inner.push(
            match dir.system {
                System::Bitrix24 => "extranet",
                System::DocSpace => "guest",
            }
            .to_owned(),
        );
    }
    match p.email.as_deref().or(p.name.as_deref()) {
        Some(label) => format!("{} ({})", escape_md(label), inner.join(", ")),
        None => inner.join(", "),
    }
}

/// One table row: the symbol, the user, the change and the role.
fn row(entry: &Entry, dir: &Directory, former_owner: Option<UserId>) -> String {
    let word = |r: Role| dir.system.role_word(r);
    let o = dir.system.owner_word();
    let (symbol, change, role): (&str, String, String) = match *entry {
        Entry::Change(Change::Add { role, .. }) => ("+", "add".into(), word(role).into()),
        Entry::Change(Change::Accept { role, .. }) => (
            "+",
            "accept their request to join".into(),
            word(role).into(),
        ),
        Entry::Change(Change::Invite { role, .. }) => (
            "+",
            match role {
                Role::Moderator => {
                    "invite (declared moderator: promoted on a later run, once they accept)".into()
                }
                _ => "invite".into(),
            },
            "member".into(),
        ),
        Entry::Change(Change::SetRole { from, to, .. }) => (
            "~",
            "role change".into(),
            format!("{} → {}", word(from), word(to)),
        ),
        Entry::Change(Change::Remove { role, .. }) => ("−", "remove".into(), word(role).into()),
        Entry::Change(Change::SetOwner { from, .. }) => (
            "~",
            match from {
                Some(f) => format!("new {o}; {} becomes a member", person(dir, f)),
                None => format!("new {o} (the group has none)"),
            },
            o.into(),
        ),
        Entry::Skipped(s) => {
            let why = match (s.reason, s.wanted) {
                (SkipReason::Owner, Wanted::Remove) => {
                    format!("not declared; {o}s are never removed")
                }
                (SkipReason::Owner, Wanted::Demote(r)) => {
                    format!("declared as {}; {o}s are never demoted", word(r))
                }
                (SkipReason::Protected, Wanted::Remove) => {
                    "protected: not declared; protected users are never removed".into()
                }
                (SkipReason::Protected, Wanted::Demote(r)) => format!(
                    "protected: declared as {}; protected users are never demoted",
                    word(r)
                ),
                (SkipReason::DeptSynced, _) => {
                    "synced: not declared; Bitrix24 would add them back from the group's departments"
                        .into()
                }
            };
            ("!", format!("skipped ({why})"), word(s.role).into())
        }
        Entry::Pending(p) => {
            let (what, role) = match p.kind {
                PendingKind::Invited { declared: None } => (
                    "invited, pending acceptance (not in the file)".to_owned(),
                    None,
                ),
                PendingKind::Invited {
                    declared: Some(Role::Moderator),
                } => (
                    "invited, pending acceptance (promoted to moderator once a member)".to_owned(),
                    Some(Role::Moderator),
                ),
                PendingKind::Invited { declared } => {
                    ("invited, pending acceptance".to_owned(), declared)
                }
                PendingKind::Requested => (
                    "asked to join, waiting for approval (not in the file)".to_owned(),
                    None,
                ),
                PendingKind::Inactive { role } => (
                    match (dir.system, dir.users.get(&p.user)) {
                        (System::DocSpace, Some(u)) if u.extranet => {
                            "guest: not added (DocSpace does not add guests to groups)".to_owned()
                        }
                        (System::DocSpace, _) => {
                            "terminated: not added (DocSpace does not add terminated users)"
                                .to_owned()
                        }
                        _ => "inactive: not added".to_owned(),
                    },
                    Some(role),
                ),
            };
            (
                "!",
                what,
                role.map_or("—".to_owned(), |r| word(r).to_owned()),
            )
        }
    };
    let mut change = change;
    let about_former = matches!(entry, Entry::Change(c)
        if !matches!(c, Change::SetOwner { .. }) && Some(c.user()) == former_owner);
    if about_former {
        let _ = write!(change, " (the former {o})");
    }
    format!(
        "| {symbol} | {} | {change} | {role} |\n",
        person(dir, entry.user())
    )
}

/// `+a ~c −r` (and `!k` for skipped and pending entries) of one group.
fn counts(g: &GroupPlan) -> String {
    let (mut add, mut change, mut remove, mut other) = (0, 0, 0, 0);
    for e in &g.entries {
        match e {
            Entry::Change(Change::Add { .. } | Change::Invite { .. } | Change::Accept { .. }) => {
                add += 1;
            }
            Entry::Change(Change::SetRole { .. } | Change::SetOwner { .. }) => change += 1,
            Entry::Change(Change::Remove { .. }) => remove += 1,
            Entry::Skipped(_) | Entry::Pending(_) => other += 1,
        }
    }
    let mut s = format!("+{add} ~{change} −{remove}");
    if other > 0 {
        let _ = write!(s, " !{other}");
    }
    s
}

/// Notes about a group that are not rows: a differing owner, department sync.
fn notes(g: &GroupPlan, dir: &Directory) -> String {
    let mut out = String::new();
    if !g.departments.is_empty() {
        let list = g
            .departments
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if !g.prune_synced {
            let _ = writeln!(
                out,
                "Synced by Bitrix24 from departments {list}: removals are not planned (set `prune: true` to take the group over).\n"
            );
        } else if g.changes().any(|c| matches!(c, Change::Remove { .. })) {
            let _ = writeln!(
                out,
                "Synced by Bitrix24 from departments {list}: `prune: true` removes members Bitrix24 may add back.\n"
            );
        }
    }
    if let Some(m) = g.owner_mismatch {
        let o = dir.system.owner_word();
        let actual = m.actual.map_or(format!("no {o}"), |a| person(dir, a));
        let advice = match dir.system {
            System::DocSpace => "a guest or a terminated user cannot be a group's manager",
            System::Bitrix24 => "pass `--allow-owner-change` to hand the group over",
        };
        let _ = writeln!(
            out,
            "The {o} differs: the file declares {}, the portal has {actual} ({advice}).\n",
            person(dir, m.declared)
        );
    }
    out
}

const TABLE_HEAD: &str = "| | User | Change | Role |\n|---|---|---|---|\n";

/// The comment being written, in characters, with room kept for the closing line.
struct Budget {
    out: String,
    chars: usize,
    max: usize,
}

impl Budget {
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
        self.chars += s.chars().count();
    }

    /// Whether `n` more characters fit, keeping `reserve` free.
    fn fits(&self, n: usize, reserve: usize) -> bool {
        self.chars.saturating_add(n).saturating_add(reserve) <= self.max
    }
}

fn is_change(e: &Entry) -> bool {
    matches!(e, Entry::Change(_))
}

fn shown(g: &GroupPlan) -> bool {
    !g.entries.is_empty() || g.owner_mismatch.is_some()
}

/// The line that ends a cut comment.
fn cut_line(changes: usize, others: usize) -> String {
    let s = if changes == 1 { "" } else { "s" };
    match others {
        0 => format!("… {changes} more change{s} not shown; see the job log.\n"),
        k => format!(
            "… {changes} more change{s} and {k} other entries not shown; see the job log.\n"
        ),
    }
}

/// Limit breaches as the alert's list items (without `error: `), Markdown-escaped.
fn breach_items(breaches: &[LimitBreach], prefix: &str) -> Vec<String> {
    super::text::limit_breaches(breaches)
        .lines()
        .map(|l| {
            let l = l.strip_prefix("error: ").unwrap_or(l);
            format!("> - {}{}\n", prefix, escape_md(l))
        })
        .collect()
}

/// The plan of every section as one Markdown comment. `run_breaches` are the run-wide
/// breaches over several portals (lib.rs keeps them apart from the sections'); for one
/// portal they are in its section.
pub fn plans(sections: &[MdSection<'_>], run_breaches: &[LimitBreach], opts: &MdOptions) -> String {
    // First without a limit; when that is too long, again with room for the closing line.
    let unlimited = MdOptions {
        max_chars: usize::MAX,
        ..*opts
    };
    let (out, _) = render(sections, run_breaches, &unlimited, 0);
    if out.chars().count() <= opts.max_chars {
        return out;
    }
    let (all_changes, all_others) = sections
        .iter()
        .flat_map(|s| &s.plan.groups)
        .flat_map(|g| &g.entries)
        .fold(
            (0, 0),
            |(c, o), e| {
                if is_change(e) { (c + 1, o) } else { (c, o + 1) }
            },
        );
    // The cut line's numbers are never larger than every row there is.
    let reserve = cut_line(all_changes, all_others).chars().count() + 1;
    render(sections, run_breaches, opts, reserve).0
}

/// The comment, keeping `reserve` characters free for the closing line; also how many rows
/// it left out.
fn render(
    sections: &[MdSection<'_>],
    run_breaches: &[LimitBreach],
    opts: &MdOptions,
    reserve: usize,
) -> (String, usize) {
    let mut total = Summary::default();
    for s in sections {
        total += s.plan.summary();
    }
    let total_changes = total.add + total.invite + total.change + total.remove + total.owner;
    let fold = total_changes > opts.fold_over;
    let several = sections.len() > 1;

    let mut b = Budget {
        out: String::new(),
        chars: 0,
        max: opts.max_chars,
    };
    b.push(MARKER);
    b.push("\n### roster plan\n\n");
    if several {
        let line =
            super::text::summary_line(&total).replace("owner change", "owner/manager change");
        b.push(&format!("**All {} portals: {line}**\n\n", sections.len()));
    } else if let Some(s) = sections.first() {
        let line = super::text::summary_line_for(&s.plan.summary(), s.dir.system);
        b.push(&format!("**{line}**\n\n"));
    } else {
        b.push("**No changes.**\n\n");
    }

    let (mut removed, mut groups_removed) = (0, 0);
    for g in sections.iter().flat_map(|s| &s.plan.groups) {
        let n = g
            .changes()
            .filter(|c| matches!(c, Change::Remove { .. }))
            .count();
        removed += n;
        groups_removed += usize::from(n > 0);
    }
    if removed > 0 {
        b.push(&format!(
            "> [!WARNING]\n> This plan removes {removed} member(s) from {groups_removed} group(s).\n\n"
        ));
    }

    let mut items = Vec::new();
    for s in sections {
        let prefix = match s.portal {
            Some((name, _)) if several => format!("portal \"{}\": ", escape_md(name)),
            _ => String::new(),
        };
        items.extend(breach_items(s.breaches, &prefix));
    }
    items.extend(breach_items(run_breaches, "all portals: "));
    if !items.is_empty() {
        b.push(&format!(
            "> [!CAUTION]\n> This plan breaks {} removal limit(s); `roster apply` refuses it:\n",
            items.len()
        ));
        let mut left = items.len();
        for item in &items {
            if !b.fits(item.chars().count(), reserve + 80) {
                break;
            }
            b.push(item);
            left -= 1;
        }
        if left > 0 {
            b.push(&format!("> - … {left} more; see the job log.\n"));
        }
        b.push("\n");
    }

    // Rows left out once the comment is full.
    let (mut cut_changes, mut cut_others) = (0, 0);
    let mut full = false;
    for s in sections {
        let mut heading = match s.portal {
            Some((name, system)) => {
                let mut h = format!(
                    "#### Portal \"{}\" ({})\n\n",
                    escape_md(name),
                    system.title()
                );
                if several {
                    let line = super::text::summary_line_for(&s.plan.summary(), system);
                    let _ = write!(h, "{line}\n\n");
                }
                Some(h)
            }
            None => None,
        };
        if !full
            && let Some(h) = &heading
            && !s.plan.groups.iter().any(shown)
        {
            // A portal with nothing to list: its heading and summary line only.
            if b.fits(h.chars().count(), reserve) {
                b.push(h);
                heading = None;
            } else {
                full = true;
            }
        }
        for g in s.plan.groups.iter().filter(|g| shown(g)) {
            if full {
                for e in &g.entries {
                    if is_change(e) {
                        cut_changes += 1;
                    } else {
                        cut_others += 1;
                    }
                }
                continue;
            }
            let former = g.entries.iter().find_map(|e| match e {
                Entry::Change(Change::SetOwner { from, .. }) => *from,
                _ => None,
            });
            let title_md = match &g.name {
                Some(n) => format!("**{}** (`{}`)", escape_md(n), group_id(g.id)),
                None => format!("`{}`", group_id(g.id)),
            };
            let mut open = heading.take().unwrap_or_default();
            let close = if fold {
                let title = match &g.name {
                    Some(n) => format!("{} (<code>{}</code>)", escape_html(n), group_id(g.id)),
                    None => format!("<code>{}</code>", group_id(g.id)),
                };
                let _ = write!(
                    open,
                    "<details><summary>{title} — {}</summary>\n\n",
                    counts(g)
                );
                "\n</details>\n\n"
            } else {
                let _ = write!(open, "{title_md} — {}\n\n", counts(g));
                "\n"
            };
            open.push_str(&notes(g, s.dir));
            let rows: Vec<String> = g.entries.iter().map(|e| row(e, s.dir, former)).collect();
            if !rows.is_empty() {
                open.push_str(TABLE_HEAD);
            }
            let close_len = close.chars().count();
            // A group starts only if its opening, its first row and its end fit.
            let first = rows.first().map_or(0, |r| r.chars().count());
            if !b.fits(open.chars().count() + first + close_len, reserve) {
                full = true;
                for e in &g.entries {
                    if is_change(e) {
                        cut_changes += 1;
                    } else {
                        cut_others += 1;
                    }
                }
                continue;
            }
            b.push(&open);
            for (r, e) in rows.iter().zip(&g.entries) {
                if !full && b.fits(r.chars().count() + close_len, reserve) {
                    b.push(r);
                } else {
                    full = true;
                    if is_change(e) {
                        cut_changes += 1;
                    } else {
                        cut_others += 1;
                    }
                }
            }
            b.push(close);
        }
    }
    if cut_changes + cut_others > 0 {
        b.push(&cut_line(cut_changes, cut_others));
    }
    let mut out = b.out;
    // One newline at the end, however the last block ended.
    while out.ends_with("\n\n") {
        out.pop();
    }
    (out, cut_changes + cut_others)
}

/// A plain single-portal file's plan as a Markdown comment.
pub fn plan(plan: &Plan, dir: &Directory, breaches: &[LimitBreach], opts: &MdOptions) -> String {
    plans(
        &[MdSection {
            portal: None,
            plan,
            dir,
            breaches,
        }],
        &[],
        opts,
    )
}
