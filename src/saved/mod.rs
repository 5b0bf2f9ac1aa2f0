//! Saved plans: `roster plan FILE --out PLAN_FILE` writes one, `roster apply PLAN_FILE` carries
//! it out exactly. Pure: building a `SavedPlan` from what the shell planned, reading one back,
//! fingerprints, and the drift check. Reading files and portals is the shell's.
//!
//! A saved plan holds, per portal, the portal it was made for (its host, or the sandbox state
//! file: never a webhook code, token or key), the groups it changes with their state as read
//! (members and roles, invitations, requests) and a SHA-256 fingerprint of that state, every
//! entry of their plan, and the names and e-mails of the people it shows. It also holds the
//! SHA-256 of the desired-state file it was made from. `apply` re-reads only the groups it
//! changes and refuses when any group's fingerprint differs, naming what moved.
//!
//! ```text
//! { "kind": "roster-saved-plan", "format_version": "1", "roster_version": "0.1.0",
//!   "file": "groups.yaml", "file_sha256": "…", "only_groups": [],
//!   "allow_owner_change": false, "allow_mass_removal": false,
//!   "portals": [{ "name": null | "docs", "system": "bitrix24" | "docspace",
//!                 "portal": "example.bitrix24.com" | "sandbox:/abs/state.yaml",
//!                 "url_env": …, "key_env": …,
//!                 "people": [{ "id", "email", "name", "active", "extranet" }],
//!                 "groups": [{ "id", "name", "state_sha256",
//!                              "state": { "members": [{ "user", "role" }], "invited": [],
//!                                         "requested": [] },
//!                              "invite_message", "departments", "prune_synced",
//!                              "current_non_owners", "owner_mismatch",
//!                              "entries": [{ "action": "add", "user": "22", "role": … }, …] }] }] }
//! ```
//! IDs are strings here (numbers for Bitrix24, UUIDs for DocSpace), read back by the portal's
//! system.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{CurrentGroup, Directory, GroupId, Person, Role, System, UserId, Uuid};
use crate::plan::{
    Change, Entry, GroupPlan, OwnerMismatch, Pending, PendingKind, Plan, SkipReason, Skipped,
    Wanted,
};

pub const KIND: &str = "roster-saved-plan";
/// Bumped on any incompatible change; `apply` refuses other versions.
pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    pub kind: String,
    pub format_version: String,
    pub roster_version: String,
    /// The desired-state file as given to `plan`.
    pub file: String,
    pub file_sha256: String,
    /// `--group` selectors the plan was made with (empty: the whole file).
    pub only_groups: Vec<String>,
    /// `--allow-owner-change` and `--allow-mass-removal` as the plan was made with them:
    /// apply checks the plan again under the same flags.
    pub allow_owner_change: bool,
    pub allow_mass_removal: bool,
    pub portals: Vec<SavedPortal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPortal {
    /// The file's name for the portal (`None`: a file without `portals:`).
    pub name: Option<String>,
    pub system: String,
    /// Which portal: its host (`portal_identity`).
    pub portal: String,
    pub url_env: Option<String>,
    pub key_env: Option<String>,
    pub people: Vec<SavedPerson>,
    pub groups: Vec<SavedGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPerson {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub active: bool,
    pub extranet: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedGroup {
    pub id: String,
    pub name: Option<String>,
    pub state_sha256: String,
    pub state: SavedState,
    pub invite_message: Option<String>,
    pub departments: Vec<u64>,
    pub prune_synced: bool,
    pub current_non_owners: usize,
    pub owner_mismatch: Option<SavedMismatch>,
    pub entries: Vec<SavedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedMismatch {
    pub declared: String,
    pub actual: Option<String>,
}

/// A group's relations as read, sorted: what the fingerprint is taken of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    pub members: Vec<SavedMember>,
    pub invited: Vec<String>,
    pub requested: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedMember {
    pub user: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum SavedEntry {
    Add {
        user: String,
        role: String,
    },
    Invite {
        user: String,
        role: String,
    },
    Accept {
        user: String,
        role: String,
    },
    SetRole {
        user: String,
        from: String,
        to: String,
    },
    Remove {
        user: String,
        role: String,
    },
    SetOwner {
        user: String,
        from: Option<String>,
    },
    /// `wanted`: `remove` or the declared role.
    Skip {
        user: String,
        role: String,
        wanted: String,
        reason: String,
    },
    /// `kind`: `invited` (with `declared`), `requested` or `inactive` (with `declared`).
    Pending {
        user: String,
        kind: String,
        declared: Option<String>,
    },
}

/// Which portal an address is, for the plan file: the host (and port) of a URL, lower-cased,
/// without the path (which for a webhook holds its code) or any user:password; `sandbox:PATH`
/// with the state file's absolute path (`sandbox_path` is it, made absolute by the shell).
pub fn portal_identity(address: &str, sandbox_path: Option<&str>) -> String {
    if let Some(path) = sandbox_path {
        return format!("sandbox:{path}");
    }
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.to_ascii_lowercase();
    let https = address.to_ascii_lowercase().starts_with("https://");
    host.strip_suffix(if https { ":443" } else { ":80" })
        .map(str::to_owned)
        .unwrap_or(host)
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A group's state as read, sorted.
pub fn state_of(group: Option<&CurrentGroup>) -> SavedState {
    let Some(g) = group else {
        return SavedState::default();
    };
    SavedState {
        members: g
            .members
            .iter()
            .map(|(u, r)| SavedMember {
                user: u.to_string(),
                role: r.as_str().to_owned(),
            })
            .collect(),
        invited: g.invited.iter().map(ToString::to_string).collect(),
        requested: g.requested.iter().map(ToString::to_string).collect(),
    }
}

/// The fingerprint of a group's state: SHA-256 of its ID and its sorted relations.
pub fn fingerprint(id: GroupId, state: &SavedState) -> String {
    let text = serde_json::to_string(&(id.to_string(), state)).unwrap_or_default();
    sha256_hex(text.as_bytes())
}

/// One portal's part of a run, as the shell planned it.
pub struct Part<'a> {
    pub name: Option<&'a str>,
    pub system: System,
    pub portal: String,
    pub url_env: Option<&'a str>,
    pub key_env: Option<&'a str>,
    pub plan: &'a Plan,
    pub current: &'a crate::model::CurrentState,
    pub dir: &'a Directory,
}

/// The saved plan of a run: the groups with changes, each with its state as read.
/// The flags a plan was made with (`SavedPlan::allow_owner_change`, `allow_mass_removal`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub allow_owner_change: bool,
    pub allow_mass_removal: bool,
}

pub fn build(
    file: &str,
    file_bytes: &[u8],
    only_groups: &[String],
    flags: Flags,
    parts: &[Part],
) -> SavedPlan {
    let portals = parts
        .iter()
        .map(|p| {
            let groups: Vec<SavedGroup> = p
                .plan
                .groups
                .iter()
                .filter(|g| g.changes().next().is_some())
                .map(|g| {
                    let state = state_of(p.current.groups.get(&g.id));
                    SavedGroup {
                        id: g.id.to_string(),
                        name: g.name.clone(),
                        state_sha256: fingerprint(g.id, &state),
                        state,
                        invite_message: g.invite_message.clone(),
                        departments: g.departments.clone(),
                        prune_synced: g.prune_synced,
                        current_non_owners: g.current_non_owners,
                        owner_mismatch: g.owner_mismatch.map(|m| SavedMismatch {
                            declared: m.declared.to_string(),
                            actual: m.actual.map(|a| a.to_string()),
                        }),
                        entries: g.entries.iter().map(entry).collect(),
                    }
                })
                .collect();
            // The people these groups show: in the entries and in the state read.
            let shown: BTreeSet<String> = groups
                .iter()
                .flat_map(|g| {
                    g.entries
                        .iter()
                        .map(|e| e.user().to_owned())
                        .chain(g.state.members.iter().map(|m| m.user.clone()))
                        .chain(g.state.invited.iter().cloned())
                        .chain(g.state.requested.iter().cloned())
                })
                .collect();
            let people = p
                .dir
                .users
                .values()
                .filter(|u| shown.contains(&u.id.to_string()))
                .map(|u| SavedPerson {
                    id: u.id.to_string(),
                    email: u.email.clone(),
                    name: u.name.clone(),
                    active: u.active,
                    extranet: u.extranet,
                })
                .collect();
            SavedPortal {
                name: p.name.map(str::to_owned),
                system: p.system.key().to_owned(),
                portal: p.portal.clone(),
                url_env: p.url_env.map(str::to_owned),
                key_env: p.key_env.map(str::to_owned),
                people,
                groups,
            }
        })
        .collect();
    SavedPlan {
        kind: KIND.to_owned(),
        format_version: FORMAT_VERSION.to_owned(),
        roster_version: env!("CARGO_PKG_VERSION").to_owned(),
        file: file.to_owned(),
        file_sha256: sha256_hex(file_bytes),
        only_groups: only_groups.to_vec(),
        allow_owner_change: flags.allow_owner_change,
        allow_mass_removal: flags.allow_mass_removal,
        portals,
    }
}

fn entry(e: &Entry) -> SavedEntry {
    let s = |u: UserId| u.to_string();
    let r = |r: Role| r.as_str().to_owned();
    match *e {
        Entry::Change(c) => match c {
            Change::Add { user, role } => SavedEntry::Add {
                user: s(user),
                role: r(role),
            },
            Change::Invite { user, role } => SavedEntry::Invite {
                user: s(user),
                role: r(role),
            },
            Change::Accept { user, role } => SavedEntry::Accept {
                user: s(user),
                role: r(role),
            },
            Change::SetRole { user, from, to } => SavedEntry::SetRole {
                user: s(user),
                from: r(from),
                to: r(to),
            },
            Change::Remove { user, role } => SavedEntry::Remove {
                user: s(user),
                role: r(role),
            },
            Change::SetOwner { from, to } => SavedEntry::SetOwner {
                user: s(to),
                from: from.map(s),
            },
        },
        Entry::Skipped(k) => SavedEntry::Skip {
            user: s(k.user),
            role: r(k.role),
            wanted: match k.wanted {
                Wanted::Remove => "remove".to_owned(),
                Wanted::Demote(role) => r(role),
            },
            reason: match k.reason {
                SkipReason::Owner => "owner",
                SkipReason::Protected => "protected",
                SkipReason::DeptSynced => "synced",
            }
            .to_owned(),
        },
        Entry::Pending(p) => {
            let (kind, declared) = match p.kind {
                PendingKind::Invited { declared } => ("invited", declared.map(r)),
                PendingKind::Requested => ("requested", None),
                PendingKind::Inactive { role } => ("inactive", Some(r(role))),
            };
            SavedEntry::Pending {
                user: s(p.user),
                kind: kind.to_owned(),
                declared,
            }
        }
    }
}

impl SavedEntry {
    fn user(&self) -> &str {
        match self {
            SavedEntry::Add { user, .. }
            | SavedEntry::Invite { user, .. }
            | SavedEntry::Accept { user, .. }
            | SavedEntry::SetRole { user, .. }
            | SavedEntry::Remove { user, .. }
            | SavedEntry::SetOwner { user, .. }
            | SavedEntry::Skip { user, .. }
            | SavedEntry::Pending { user, .. } => user,
        }
    }
}

/// A saved plan that cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// A portal of a saved plan, read back into the planner's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub system: System,
    pub plan: Plan,
    pub dir: Directory,
    /// Each group's state as planned, with its fingerprint.
    pub states: BTreeMap<GroupId, (SavedState, String)>,
}

/// Read a plan file's text. Refuses another kind of file, another format version, and any
/// value that does not parse for its portal's system.
pub fn parse(text: &str) -> Result<SavedPlan, Invalid> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Invalid(format!("not a roster plan file (JSON): {e}")))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
        return Err(Invalid(format!(
            "not a roster plan file: it has no \"kind\": \"{KIND}\" (write one with `roster plan FILE --out PLAN_FILE`)"
        )));
    }
    let version = value.get("format_version").and_then(|v| v.as_str());
    if version != Some(FORMAT_VERSION) {
        return Err(Invalid(format!(
            "the plan file has format version {}, and this roster reads version {FORMAT_VERSION} only: make the plan again with this roster",
            version.unwrap_or("(none)")
        )));
    }
    serde_json::from_value(value).map_err(|e| Invalid(format!("a damaged plan file: {e}")))
}

/// Whether `text` looks like a saved plan rather than a desired-state file (its first
/// non-blank character opens a JSON object and it names the kind).
pub fn looks_saved(text: &str) -> bool {
    text.trim_start().starts_with('{') && text.contains(KIND)
}

fn system_of(key: &str) -> Result<System, Invalid> {
    match key {
        "bitrix24" => Ok(System::Bitrix24),
        "docspace" => Ok(System::DocSpace),
        other => Err(Invalid(format!("unknown system {other:?}"))),
    }
}

fn user_id(system: System, s: &str) -> Result<UserId, Invalid> {
    let bad = || Invalid(format!("{s:?} is not a {} user ID", system.title()));
    match system {
        System::Bitrix24 => s.parse().map(UserId::Num).map_err(|_| bad()),
        System::DocSpace => Uuid::parse(s).map(UserId::Uuid).ok_or_else(bad),
    }
}

fn group_id(system: System, s: &str) -> Result<GroupId, Invalid> {
    let bad = || Invalid(format!("{s:?} is not a {} group ID", system.title()));
    match system {
        System::Bitrix24 => s.parse().map(GroupId::Num).map_err(|_| bad()),
        System::DocSpace => Uuid::parse(s).map(GroupId::Uuid).ok_or_else(bad),
    }
}

fn role(s: &str) -> Result<Role, Invalid> {
    match s {
        "owner" => Ok(Role::Owner),
        "moderator" => Ok(Role::Moderator),
        "member" => Ok(Role::Member),
        other => Err(Invalid(format!("unknown role {other:?}"))),
    }
}

/// Read one portal of a saved plan back.
pub fn load(portal: &SavedPortal) -> Result<Loaded, Invalid> {
    let system = system_of(&portal.system)?;
    let u = |s: &str| user_id(system, s);
    let mut dir = Directory {
        system,
        ..Directory::default()
    };
    for p in &portal.people {
        let id = u(&p.id)?;
        dir.users.insert(
            id,
            Person {
                id,
                email: p.email.clone(),
                name: p.name.clone(),
                active: p.active,
                extranet: p.extranet,
            },
        );
    }
    let mut plan = Plan::default();
    let mut states = BTreeMap::new();
    for g in &portal.groups {
        let id = group_id(system, &g.id)?;
        if let Some(name) = &g.name {
            dir.groups.insert(id, name.clone());
        }
        // The fingerprint must be the state's: a hand-edited state is refused.
        if fingerprint(id, &g.state) != g.state_sha256 {
            return Err(Invalid(format!(
                "group {}: its recorded state does not match its fingerprint (the plan file was edited)",
                g.id
            )));
        }
        if states
            .insert(id, (g.state.clone(), g.state_sha256.clone()))
            .is_some()
        {
            return Err(Invalid(format!("group {} is listed twice", g.id)));
        }
        let mut entries = Vec::new();
        for e in &g.entries {
            entries.push(match e {
                SavedEntry::Add { user, role: r } => Entry::Change(Change::Add {
                    user: u(user)?,
                    role: role(r)?,
                }),
                SavedEntry::Invite { user, role: r } => Entry::Change(Change::Invite {
                    user: u(user)?,
                    role: role(r)?,
                }),
                SavedEntry::Accept { user, role: r } => Entry::Change(Change::Accept {
                    user: u(user)?,
                    role: role(r)?,
                }),
                SavedEntry::SetRole { user, from, to } => Entry::Change(Change::SetRole {
                    user: u(user)?,
                    from: role(from)?,
                    to: role(to)?,
                }),
                SavedEntry::Remove { user, role: r } => Entry::Change(Change::Remove {
                    user: u(user)?,
                    role: role(r)?,
                }),
                SavedEntry::SetOwner { user, from } => Entry::Change(Change::SetOwner {
                    from: from.as_deref().map(u).transpose()?,
                    to: u(user)?,
                }),
                SavedEntry::Skip {
                    user,
                    role: r,
                    wanted,
                    reason,
                } => Entry::Skipped(Skipped {
                    user: u(user)?,
                    role: role(r)?,
                    wanted: if wanted == "remove" {
                        Wanted::Remove
                    } else {
                        Wanted::Demote(role(wanted)?)
                    },
                    reason: match reason.as_str() {
                        "owner" => SkipReason::Owner,
                        "protected" => SkipReason::Protected,
                        "synced" => SkipReason::DeptSynced,
                        other => return Err(Invalid(format!("unknown skip reason {other:?}"))),
                    },
                }),
                SavedEntry::Pending {
                    user,
                    kind,
                    declared,
                } => {
                    let declared = declared.as_deref().map(role).transpose()?;
                    Entry::Pending(Pending {
                        user: u(user)?,
                        kind: match (kind.as_str(), declared) {
                            ("invited", d) => PendingKind::Invited { declared: d },
                            ("requested", None) => PendingKind::Requested,
                            ("inactive", Some(r)) => PendingKind::Inactive { role: r },
                            (other, _) => {
                                return Err(Invalid(format!("unknown pending kind {other:?}")));
                            }
                        },
                    })
                }
            });
        }
        plan.groups.push(GroupPlan {
            id,
            name: g.name.clone(),
            entries,
            owner_mismatch: match &g.owner_mismatch {
                Some(m) => Some(OwnerMismatch {
                    declared: u(&m.declared)?,
                    actual: m.actual.as_deref().map(u).transpose()?,
                }),
                None => None,
            },
            departments: g.departments.clone(),
            prune_synced: g.prune_synced,
            invite_message: g.invite_message.clone(),
            current_non_owners: g.current_non_owners,
        });
    }
    Ok(Loaded {
        system,
        plan,
        dir,
        states,
    })
}

/// How a group moved since the plan: one line per user whose relation differs, e.g.
/// `bo@example.com (#11): moderator → member`, `ed@example.com (#12): not in the group →
/// member`, `fay@example.com (#30): member → not in the group`. Empty when the fingerprints agree.
pub fn drift(
    id: GroupId,
    planned: &(SavedState, String),
    now: &SavedState,
    describe: &dyn Fn(&str) -> String,
) -> Vec<String> {
    if fingerprint(id, now) == planned.1 {
        return Vec::new();
    }
    let relations = |s: &SavedState| -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = BTreeMap::new();
        for x in &s.members {
            m.insert(x.user.clone(), x.role.clone());
        }
        for u in &s.invited {
            m.entry(u.clone()).or_insert_with(|| "invited".to_owned());
        }
        for u in &s.requested {
            m.entry(u.clone())
                .or_insert_with(|| "asked to join".to_owned());
        }
        m
    };
    let (before, after) = (relations(&planned.0), relations(now));
    let users: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut lines = Vec::new();
    for u in users {
        match (before.get(u), after.get(u)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => lines.push(format!("{}: {a} → {b}", describe(u))),
            (None, Some(b)) => lines.push(format!("{}: not in the group → {b}", describe(u))),
            (Some(a), None) => lines.push(format!("{}: {a} → not in the group", describe(u))),
            (None, None) => {}
        }
    }
    if lines.is_empty() {
        // The same relations in another form (a hand-edited fingerprint): still a refusal.
        lines.push("the group's state differs from the plan's".to_owned());
    }
    lines
}

#[cfg(test)]
mod tests;
