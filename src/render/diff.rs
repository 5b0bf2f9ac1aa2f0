//! `--diff`: each changed group's membership before and after the plan, as YAML lines in a
//! unified diff (the `similar` crate), the way a reviewer reads a change to a file:
//!
//! ```text
//! --- Marketing (#15) current
//! +++ Marketing (#15) planned
//! @@ -1,5 +1,6 @@
//!  owner: ada@example.com  # Ada Admin
//!  moderators:
//! -  - bo@example.com  # Bo Brown
//! +  - cy@example.com
//! ```
//!
//! "Planned" is `plan::applied(current, plan)`: what the portal holds once every change is
//! made, so skipped owners and protected users stay. Lists are sorted by e-mail, and people
//! known only by ID come last, by ID. Pure: no I/O; colour only when `Style::color` says so.

use std::fmt::Write;

use similar::{ChangeTag, TextDiff};

use super::Style;
use crate::model::{CurrentGroup, CurrentState, Directory, Role, System, UserId};
use crate::plan::{self, Plan};
use crate::spec::escape;

const GREEN: &str = "32";
const RED: &str = "31";
const CYAN: &str = "36";

/// How a user is written: `ada@example.com  # Ada Admin`, else the ID (`21`, a UUID) with the
/// name as the comment; external users marked in the comment.
fn who(dir: &Directory, user: UserId) -> String {
    let Some(p) = dir.users.get(&user) else {
        return user.to_string();
    };
    let label = p.email.as_deref().map_or_else(|| user.to_string(), escape);
    let mut comment: Vec<String> = p.name.iter().map(|n| escape(n)).collect();
    if p.extranet {
        comment.push(
            match dir.system {
                System::Bitrix24 => "(extranet)",
                System::DocSpace => "(guest)",
            }
            .to_owned(),
        );
    }
    if comment.is_empty() {
        label
    } else {
        format!("{label}  # {}", comment.join(" "))
    }
}

/// A list item with its sort key: people with an e-mail first, by e-mail (lower-cased),
/// then the others by ID.
type Item = ((bool, String, UserId), String);

fn entry(dir: &Directory, user: UserId) -> Item {
    let email = dir
        .users
        .get(&user)
        .and_then(|p| p.email.as_deref())
        .map(str::to_lowercase);
    (
        (email.is_none(), email.unwrap_or_default(), user),
        who(dir, user),
    )
}

/// Which keys a group's YAML has, the same on both sides so only entries differ.
struct Keys {
    moderators: bool,
    invited: bool,
    requested: bool,
}

/// A YAML list, sorted as `Item` says.
fn list(out: &mut String, key: &str, mut users: Vec<Item>) {
    users.sort();
    let users: Vec<String> = users.into_iter().map(|(_, line)| line).collect();
    if users.is_empty() {
        let _ = writeln!(out, "{key}: []");
        return;
    }
    let _ = writeln!(out, "{key}:");
    for u in users {
        let _ = writeln!(out, "  - {u}");
    }
}

/// A group's membership as YAML lines.
fn yaml(g: &CurrentGroup, dir: &Directory, keys: &Keys) -> String {
    let mut out = String::new();
    let o = dir.system.owner_word();
    match g.owner() {
        Some(owner) => {
            let _ = writeln!(out, "{o}: {}", who(dir, owner));
        }
        None => {
            let _ = writeln!(out, "{o}: null");
        }
    }
    let with = |role: Role| {
        g.members
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(u, _)| entry(dir, *u))
            .collect::<Vec<_>>()
    };
    if keys.moderators {
        list(&mut out, "moderators", with(Role::Moderator));
    }
    list(&mut out, "members", with(Role::Member));
    let of = |users: &std::collections::BTreeSet<UserId>| {
        users.iter().map(|u| entry(dir, *u)).collect::<Vec<_>>()
    };
    if keys.invited {
        list(&mut out, "invited", of(&g.invited));
    }
    if keys.requested {
        list(&mut out, "requested", of(&g.requested));
    }
    out
}

/// The title in the headers: `Marketing (#15)`, `Designers (d5000000-…)`, or the ID alone.
fn title(id: crate::model::GroupId, name: Option<&str>) -> String {
    let id = match id {
        crate::model::GroupId::Num(n) => format!("#{n}"),
        crate::model::GroupId::Uuid(u) => u.to_string(),
    };
    match name {
        Some(n) => format!("{} ({id})", escape(n)),
        None => id,
    }
}

/// A unified diff, current against planned, of every group the plan changes, in plan order;
/// empty when it changes nothing. Groups whose plan has only skipped or pending entries are
/// left out: their membership stays as it is.
pub fn group_diff(current: &CurrentState, plan: &Plan, dir: &Directory, style: Style) -> String {
    let planned = plan::applied(current, plan);
    let empty = CurrentGroup::default();
    let mut out = String::new();
    for g in plan.groups.iter().filter(|g| g.changes().next().is_some()) {
        let before = current.groups.get(&g.id).unwrap_or(&empty);
        let after = planned.groups.get(&g.id).unwrap_or(&empty);
        let keys = Keys {
            moderators: dir.system == System::Bitrix24,
            invited: !before.invited.is_empty() || !after.invited.is_empty(),
            requested: !before.requested.is_empty() || !after.requested.is_empty(),
        };
        let (old, new) = (yaml(before, dir, &keys), yaml(after, dir, &keys));
        let t = title(g.id, g.name.as_deref());
        let _ = writeln!(out, "{}", style.paint(RED, &format!("--- {t} current")));
        let _ = writeln!(out, "{}", style.paint(GREEN, &format!("+++ {t} planned")));
        let diff = TextDiff::from_lines(&old, &new);
        for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
            let _ = writeln!(out, "{}", style.paint(CYAN, &hunk.header().to_string()));
            for change in hunk.iter_changes() {
                let line = change.value().trim_end_matches('\n');
                let _ = match change.tag() {
                    ChangeTag::Equal => writeln!(out, " {line}"),
                    ChangeTag::Delete => writeln!(out, "{}", style.paint(RED, &format!("-{line}"))),
                    ChangeTag::Insert => {
                        writeln!(out, "{}", style.paint(GREEN, &format!("+{line}")))
                    }
                };
            }
        }
    }
    out
}
