//! The portal as it is, for `roster import` to write a desired-state file from: which groups
//! (`Provider::list_groups`), their members and roles (`Provider::fetch`, as `plan` reads
//! them) and who those members are (`Provider::people`). [`snapshot`] sequences the three
//! reads; everything else here is pure (no I/O): building the read's `DesiredState`, and
//! turning what was read into a [`Snapshot`], sorted.
//!
//! Decisions:
//! - Only owners (DocSpace: the manager), moderators and members are in the snapshot. Pending
//!   invitations and join requests are not members: they are left out and counted
//!   ([`Pending`]), so import can say so in a comment.
//! - Users the portal has deactivated (Bitrix24: dismissed) are not returned by the group read
//!   anyway (`sonet_group.user.get` keeps active users only, reference §1.1). Where a read does
//!   return one (a terminated DocSpace member), it stays in the snapshot with `active:
//!   Some(false)`: declaring them is harmless (the planner shows declared inactive users and
//!   never adds or removes them), and import may comment on them.
//! - A user without an e-mail address (or whom the portal would not look up) has `email:
//!   None` and is to be referenced by ID; `active: None` says the lookup did not find them.
//! - Order: groups by ID, users within each list by ID — the portal's keys, so two snapshots
//!   of an unchanged portal are identical whatever names or addresses changed.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::model::{
    CurrentGroup, CurrentState, DesiredGroup, DesiredState, GroupId, Person, Role, System, UserId,
};
use crate::provider::Provider;
use crate::provider::list::{GroupInfo, Which};

/// A portal's groups as they are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub system: System,
    /// By ID ascending.
    pub groups: Vec<SnapGroup>,
}

/// One group as it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapGroup {
    pub id: GroupId,
    /// The name the group list gave.
    pub name: String,
    /// Bitrix24 `PROJECT`; `None` on DocSpace or when the portal did not say.
    pub project: Option<bool>,
    /// The owner (DocSpace: the manager); `None` when the group has none.
    pub owner: Option<SnapUser>,
    /// Moderators (Bitrix24 `E`; DocSpace has none), by ID.
    pub moderators: Vec<SnapUser>,
    /// Plain members, by ID (neither the owner nor moderators).
    pub members: Vec<SnapUser>,
    /// Who is invited or asked to join: not members, only counted.
    pub pending: Pending,
    /// Linked departments (Bitrix24, when the read shows them; empty otherwise), ascending.
    pub departments: Vec<u64>,
}

/// Invitations and join requests waiting, which a membership list leaves out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Invited by the group, not yet accepted (Bitrix24 `Z` initiated by the group).
    pub invited: usize,
    /// Asked to join, not yet accepted (Bitrix24 `Z` initiated by the user).
    pub requested: usize,
}

/// A user as the portal knows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapUser {
    pub id: UserId,
    /// `None`: none on the portal, or the user could not be looked up; refer to them by ID.
    pub email: Option<String>,
    pub name: Option<String>,
    /// Whether the portal has them active; `None` when the lookup did not find them.
    pub active: Option<bool>,
    /// A Bitrix24 extranet user or a DocSpace guest.
    pub extranet: bool,
}

/// Read the groups `which` names, with their members and who those are (see the module).
/// Fails when a group asked for is not on the portal, when a group cannot be read, or when the
/// portal does not answer; a failed people lookup fails it too (a file written without
/// e-mails would be worse than none).
pub async fn snapshot(provider: &Provider, which: &Which) -> Result<Snapshot> {
    let groups = provider
        .list_groups(which)
        .await
        .context("cannot list the portal's groups")?;
    let desired = reading(&groups);
    let current = provider
        .fetch(&desired, &|_| {})
        .await
        .context("cannot read the groups' members")?;
    let ids = users_of(&current);
    let people = if ids.is_empty() {
        Vec::new()
    } else {
        provider
            .people(&ids)
            .await
            .context("cannot look up the groups' members")?
    };
    Ok(assemble(provider.system(), &groups, &current, &people))
}

/// The `DesiredState` that makes `Provider::fetch` read `groups`: each group with nothing
/// declared (only its ID and name matter to a read).
pub fn reading(groups: &[GroupInfo]) -> DesiredState {
    DesiredState {
        groups: groups
            .iter()
            .map(|g| {
                let mut d = DesiredGroup::new(g.id);
                d.name = Some(g.name.clone());
                (g.id, d)
            })
            .collect(),
        ..DesiredState::default()
    }
}

/// Every member of every group read (owners and moderators included, pending users not), once,
/// ascending.
pub fn users_of(current: &CurrentState) -> Vec<UserId> {
    let mut ids: Vec<UserId> = current
        .groups
        .values()
        .flat_map(|g| g.members.keys().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The snapshot of `groups` as read (`current`), their members described by `people`. A group
/// the read did not return (it cannot happen after a successful `fetch`) is listed empty.
pub fn assemble(
    system: System,
    groups: &[GroupInfo],
    current: &CurrentState,
    people: &[Person],
) -> Snapshot {
    let people: BTreeMap<UserId, &Person> = people.iter().map(|p| (p.id, p)).collect();
    let user = |id: UserId| match people.get(&id) {
        Some(p) => SnapUser {
            id,
            email: p.email.clone(),
            name: p.name.clone(),
            active: Some(p.active),
            extranet: p.extranet,
        },
        None => SnapUser {
            id,
            email: None,
            name: None,
            active: None,
            extranet: false,
        },
    };
    let empty = CurrentGroup::default();
    let mut out: Vec<SnapGroup> = groups
        .iter()
        .map(|info| {
            let read = current.groups.get(&info.id).unwrap_or(&empty);
            // `members` is a BTreeMap: IDs ascending already.
            let with = |role: Role| -> Vec<SnapUser> {
                read.members
                    .iter()
                    .filter(|(_, r)| **r == role)
                    .map(|(u, _)| user(*u))
                    .collect()
            };
            let mut departments = read.departments.clone();
            departments.sort_unstable();
            departments.dedup();
            SnapGroup {
                id: info.id,
                name: info.name.clone(),
                project: info.project,
                owner: with(Role::Owner).into_iter().next(),
                moderators: with(Role::Moderator),
                members: with(Role::Member),
                pending: Pending {
                    invited: read.invited.len(),
                    requested: read.requested.len(),
                },
                departments,
            }
        })
        .collect();
    out.sort_by_key(|g| g.id);
    out.dedup_by_key(|g| g.id);
    Snapshot {
        system,
        groups: out,
    }
}

/// The desired-state file of a snapshot, canonical: each group by `id:` with its `name:`, its
/// owner (DocSpace: `manager:`), moderators and members as e-mails with their names beside
/// them (by ID where the portal shows no usable, unique e-mail), and a note of pending
/// invitations and requests, which a file does not list. `portal`: the `portals:` name to
/// declare (always for DocSpace, whose files need one; `None` writes a plain Bitrix24 file).
/// `source` (the portal's host) goes in the header.
pub fn document(
    snapshot: &Snapshot,
    portal: Option<&str>,
    source: &str,
) -> crate::canonical::Document {
    use crate::canonical::{Document, Field, Group, Portal, Portals, UserList, comment};
    let mut doc = Document::new();
    doc.header = vec![
        comment(&format!(
            "Written by `roster import` from {}: the groups as they were.",
            clean(source)
        )),
        comment("Review it, commit it, then `roster plan` it (it should print `No changes.`)."),
    ];
    if let Some(name) = portal {
        doc.portals = Some(Portals {
            portals: vec![Portal::new(name, snapshot.system)],
            ..Portals::default()
        });
    }
    // An e-mail names a user only when exactly one user of the snapshot has it (in any case)
    // and roster accepts it as an address; otherwise the user is written by ID.
    // Users repeat across groups: count each user once.
    let mut per_user: BTreeMap<String, std::collections::BTreeSet<UserId>> = BTreeMap::new();
    for u in snapshot
        .groups
        .iter()
        .flat_map(|g| g.owner.iter().chain(&g.moderators).chain(&g.members))
    {
        if let Some(e) = &u.email {
            per_user.entry(e.to_lowercase()).or_default().insert(u.id);
        }
    }
    let item = |u: &SnapUser| {
        let by_email = u.email.as_deref().filter(|e| {
            crate::spec::email_problem(e).is_none()
                && per_user
                    .get(&e.to_lowercase())
                    .is_some_and(|ids| ids.len() == 1)
        });
        let field = match by_email {
            Some(e) => Field::email(e),
            None => Field::id(u.id),
        };
        let mut note = u.name.as_deref().map(clean).unwrap_or_default();
        let mut add = |word: &str| {
            note.push_str(if note.is_empty() { "" } else { ", " });
            note.push_str(word);
        };
        // A DocSpace guest is "inactive" to roster (it cannot be added) but active on the
        // portal: called what it is.
        match (snapshot.system, u.extranet, u.active) {
            (System::DocSpace, true, _) => add("guest"),
            (System::Bitrix24, true, _) => add("extranet"),
            (_, false, Some(false)) => add("inactive on the portal"),
            _ => {}
        }
        if by_email.is_none()
            && let Some(e) = &u.email
        {
            note.push_str(if note.is_empty() { "" } else { ", " });
            note.push_str(&clean(e));
        }
        if note.is_empty() {
            field
        } else {
            field.comment(&note)
        }
    };
    for g in &snapshot.groups {
        // The name is written as `name:` (a label the plan checks against the portal's) when
        // the file format takes it as it is; else beside the ID as a comment.
        let writable = !g.name.trim().is_empty()
            && g.name.trim() == g.name
            && crate::spec::batch_reference(&g.name).is_none();
        let mut group = Group::by_id(g.id);
        if writable {
            group.name = Some(Field::new(g.name.clone()));
        } else if !clean(&g.name).is_empty() {
            group = group.comment(&clean(&g.name));
        }
        if let Some(o) = &g.owner {
            match snapshot.system {
                System::Bitrix24 => group.owner = Some(item(o)),
                System::DocSpace => group.manager = Some(item(o)),
            }
        }
        if !g.moderators.is_empty() {
            group.moderators = Some(UserList::new(g.moderators.iter().map(item)));
        }
        if !g.members.is_empty() {
            group.members = Some(UserList::new(g.members.iter().map(item)));
        }
        let mut notes = Vec::new();
        if g.pending.invited > 0 {
            notes.push(format!("{} invited, not accepted yet", g.pending.invited));
        }
        if g.pending.requested > 0 {
            notes.push(format!(
                "{} asked to join, waiting for approval",
                g.pending.requested
            ));
        }
        if !notes.is_empty() {
            group.end.push(comment(&format!(
                "Pending (not members; roster leaves them alone): {}.",
                notes.join("; ")
            )));
        }
        if !g.departments.is_empty() {
            let ds: Vec<String> = g.departments.iter().map(u64::to_string).collect();
            group.end.push(comment(&format!(
                "The portal keeps this group in step with department(s) {}.",
                ds.join(", ")
            )));
        }
        doc.groups.groups.push(group);
    }
    doc.canonicalize();
    doc
}

/// Text from the portal fit for a one-line comment: control characters as spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn info(id: u64, name: &str) -> GroupInfo {
        GroupInfo {
            id: GroupId::Num(id),
            name: name.to_owned(),
            project: Some(false),
        }
    }

    fn person(id: u64, email: Option<&str>, active: bool) -> Person {
        Person {
            id: UserId::Num(id),
            email: email.map(str::to_owned),
            name: Some(format!("User {id}")),
            active,
            extranet: false,
        }
    }

    #[test]
    fn reading_declares_each_group_with_nothing_else() {
        let d = reading(&[info(42, "Sales"), info(15, "Marketing")]);
        let ids: Vec<GroupId> = d.groups.keys().copied().collect();
        assert_eq!(ids, [GroupId::Num(15), GroupId::Num(42)]);
        let g = &d.groups[&GroupId::Num(42)];
        assert_eq!(g.name.as_deref(), Some("Sales"));
        assert!(g.members.is_empty() && g.owner.is_none());
        assert!(reading(&[]).groups.is_empty());
    }

    #[test]
    fn users_of_takes_every_role_once_but_not_pending() {
        let mut current = CurrentState::default();
        let mut a = CurrentGroup::default();
        a.members.insert(UserId::Num(22), Role::Owner);
        a.members.insert(UserId::Num(1), Role::Member);
        a.invited = BTreeSet::from([UserId::Num(60)]);
        let mut b = CurrentGroup::default();
        b.members.insert(UserId::Num(1), Role::Owner);
        b.members.insert(UserId::Num(23), Role::Moderator);
        b.requested = BTreeSet::from([UserId::Num(40)]);
        current.groups.insert(GroupId::Num(27), a);
        current.groups.insert(GroupId::Num(15), b);
        assert_eq!(
            users_of(&current),
            [UserId::Num(1), UserId::Num(22), UserId::Num(23)]
        );
    }

    /// What `assemble` makes of one group, as `ROLE:ID:EMAIL` lines (`-` for none, `?` for a
    /// user the lookup did not find, `!` for an inactive one).
    fn check(group: CurrentGroup, people: &[Person], expected: &[&str], pending: (usize, usize)) {
        let mut current = CurrentState::default();
        current.groups.insert(GroupId::Num(7), group);
        let s = assemble(System::Bitrix24, &[info(7, "G")], &current, people);
        assert_eq!(s.system, System::Bitrix24);
        let g = &s.groups[0];
        let line = |role: &str, u: &SnapUser| {
            let mark = match u.active {
                None => "?",
                Some(false) => "!",
                Some(true) => "",
            };
            format!(
                "{role}:{}:{}{mark}",
                u.id,
                u.email.as_deref().unwrap_or("-")
            )
        };
        let got: Vec<String> = g
            .owner
            .iter()
            .map(|u| line("A", u))
            .chain(g.moderators.iter().map(|u| line("E", u)))
            .chain(g.members.iter().map(|u| line("K", u)))
            .collect();
        assert_eq!(got, expected);
        assert_eq!((g.pending.invited, g.pending.requested), pending);
    }

    #[test]
    fn assemble_sorts_roles_by_id_and_describes_people() {
        let mut g = CurrentGroup::default();
        for (u, r) in [
            (31, Role::Member),
            (22, Role::Owner),
            (23, Role::Moderator),
            (5, Role::Member),
            (9, Role::Member),
        ] {
            g.members.insert(UserId::Num(u), r);
        }
        g.invited = BTreeSet::from([UserId::Num(60)]);
        g.requested = BTreeSet::from([UserId::Num(40), UserId::Num(41)]);
        g.departments = vec![3, 1, 3];
        let people = [
            person(22, Some("di@example.com"), true),
            person(23, Some("ed@example.com"), true),
            person(31, None, true),
            person(9, Some("gone@example.com"), false),
        ];
        check(
            g.clone(),
            &people,
            &[
                "A:22:di@example.com",
                "E:23:ed@example.com",
                "K:5:-?",
                "K:9:gone@example.com!",
                "K:31:-",
            ],
            (1, 2),
        );
        let mut current = CurrentState::default();
        current.groups.insert(GroupId::Num(7), g);
        let s = assemble(System::Bitrix24, &[info(7, "G")], &current, &people);
        assert_eq!(s.groups[0].departments, [1, 3]);
        assert_eq!(s.groups[0].project, Some(false));
    }

    #[test]
    fn assemble_orders_groups_and_keeps_ownerless_ones() {
        let mut current = CurrentState::default();
        let mut g = CurrentGroup::default();
        g.members.insert(UserId::Num(1), Role::Member);
        current.groups.insert(GroupId::Num(3), g);
        let s = assemble(
            System::DocSpace,
            &[info(3, "C"), info(1, "A"), info(3, "C")],
            &current,
            &[],
        );
        let ids: Vec<GroupId> = s.groups.iter().map(|g| g.id).collect();
        assert_eq!(ids, [GroupId::Num(1), GroupId::Num(3)]);
        assert!(s.groups[1].owner.is_none());
        assert_eq!(s.groups[1].members.len(), 1);
        // A group the read did not return is empty, not dropped.
        assert!(s.groups[0].members.is_empty() && s.groups[0].owner.is_none());
    }
}
