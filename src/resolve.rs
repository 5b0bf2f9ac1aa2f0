//! Resolve: a `spec::Spec` (users by ID or e-mail, groups by ID or name, each with its place in
//! the file) in, a `model::DesiredState` of IDs out. Pure: the provider looks up what
//! `wanted` lists (the shell calls it), and `resolve` matches the file against what it found.
//! No I/O here.
//!
//! The rules (issue 7):
//! - E-mail addresses match case-insensitively and exactly, never as patterns.
//! - Every user the file names is checked, IDs included. An address no user has, an address
//!   two users share (their IDs are named), an ID the portal does not know, a group name no
//!   group has and a name several groups share are errors at that entry's file:line:column.
//! - A group with any error is left out of the desired state: neither planned nor applied
//!   (planning it without an unresolvable member could remove that person). Every other group
//!   is resolved and kept, so the shell can still plan and show them (and exit 1).
//! - Inactive (dismissed) users go to `DesiredGroup::inactive` (shown, never added, never
//!   removed); an inactive declared owner is a warning. Extranet users are ordinary users
//!   (the directory marks them for display).
//! - The same user reached twice in one group (by e-mail and by ID) is an error, and so is a
//!   group named by `name` that is a group the file declares elsewhere.
//! - The top-level `protected:` applies to every group, so its errors leave the groups in:
//!   a user nobody has cannot be removed anyway, and an ambiguous address protects every
//!   user who has it (the run still fails on the error).
//!
//! Errors are kept in the order the file is walked (groups, then the top-level `protected:`),
//! at most `spec::MAX_DIAGNOSTICS` of them, sorted by position; the rest are counted.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{
    AddWith, CurrentState, DesiredGroup, DesiredState, Directory, GroupId, Lookups, Person, Role,
    UserId, Wanted,
};
use crate::spec::{
    Diagnostic, Diagnostics, Field, GroupRef, GroupSpec, Located, MAX_DIAGNOSTICS, Spec, UserRef,
    escape,
};

/// What the provider must look up before `resolve`: every e-mail address (lower-cased),
/// every user ID (so unknown and inactive users are found at plan time) and the name of every
/// group the file gives by name only (a group with an ID is read by ID; its `name:` is checked
/// against the portal's by `name_mismatches`).
pub fn wanted(spec: &Spec) -> Wanted {
    let mut wanted = Wanted::default();
    let groups = spec.groups.iter();
    let users = groups
        .clone()
        .flat_map(|g| g.users().map(|(_, u)| u).chain(&g.protected))
        .chain(&spec.protected);
    for u in users {
        match &u.value {
            UserRef::Id(id) => {
                wanted.users.insert(*id);
            }
            UserRef::Email(e) => {
                wanted.emails.insert(e.to_lowercase());
            }
        }
    }
    for g in groups {
        if let GroupRef::Name(n) = &g.group.value {
            wanted.group_names.insert(n.clone());
        }
    }
    wanted
}

/// The file resolved against the portal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Every group that resolved without error.
    pub desired: DesiredState,
    /// Problems that make the run fail (the first `MAX_DIAGNOSTICS`, by position).
    pub errors: Vec<Diagnostic>,
    /// Errors found beyond those kept in `errors`.
    pub errors_omitted: usize,
    /// Things worth saying that do not stop the run (an inactive declared owner).
    pub warnings: Vec<Diagnostic>,
    /// Everyone and every group the provider found, for display.
    pub directory: Directory,
}

/// A reference that did not resolve: the message, and for an ambiguous address the users
/// who have it.
struct Unresolved {
    message: String,
    candidates: Vec<UserId>,
}

/// How users and groups are found: against a portal's `Lookups`, or offline.
trait Finder {
    /// The user's ID and whether they are active.
    fn user(&self, u: &UserRef) -> Result<(UserId, bool), Unresolved>;
    /// The group's ID.
    fn group(&self, name: &str) -> Result<GroupId, String>;
}

struct Portal<'a> {
    by_id: BTreeMap<UserId, &'a Person>,
    by_email: BTreeMap<String, BTreeSet<UserId>>,
    groups: &'a BTreeMap<String, Vec<(GroupId, String)>>,
    /// The portal would not let users be looked up (`Lookups::users_unavailable`): user IDs
    /// are taken unchecked, as active; e-mails cannot be resolved.
    users_unavailable: Option<&'a str>,
    /// The portal would not look users up by e-mail (`Lookups::emails_unavailable`), though
    /// by ID it would: e-mails cannot be resolved, IDs are checked as usual.
    emails_unavailable: Option<&'a str>,
}

fn ids<T: std::fmt::Display>(users: impl IntoIterator<Item = T>) -> String {
    users
        .into_iter()
        .map(|u| {
            let u = u.to_string();
            // Bitrix24 numbers read `#21`; a UUID is shown as it is.
            if u.contains('-') { u } else { format!("#{u}") }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Finder for Portal<'_> {
    fn user(&self, u: &UserRef) -> Result<(UserId, bool), Unresolved> {
        let unresolved = |message| Unresolved {
            message,
            candidates: Vec::new(),
        };
        match (u, self.users_unavailable) {
            (UserRef::Id(id), Some(_)) => Ok((*id, true)),
            (UserRef::Email(e), Some(why)) => Err(unresolved(format!(
                "cannot look up the e-mail address {}: {}; name the user by ID, or give the webhook the `user` scope",
                escape(e),
                escape(why)
            ))),
            (UserRef::Email(e), None) if self.emails_unavailable.is_some() => {
                let why = self.emails_unavailable.unwrap_or_default();
                Err(unresolved(format!(
                    "cannot look up the e-mail address {}: {}; name the user by ID",
                    escape(e),
                    escape(why)
                )))
            }
            (UserRef::Id(id), None) => match self.by_id.get(id) {
                Some(p) => Ok((*id, p.active)),
                None => Err(unresolved(format!("no user {id} on the portal"))),
            },
            (UserRef::Email(e), None) => {
                let key = e.to_lowercase();
                let found = self.by_email.get(&key);
                match found.map(|s| s.iter().copied().collect::<Vec<_>>()) {
                    Some(one) if one.len() == 1 => Ok((one[0], self.by_id[&one[0]].active)),
                    Some(many) if many.len() > 1 => Err(Unresolved {
                        message: format!(
                            "the e-mail address {} belongs to {} users ({}); name the user by ID instead",
                            escape(e),
                            many.len(),
                            ids(many.iter().copied())
                        ),
                        candidates: many,
                    }),
                    _ => Err(unresolved(format!(
                        "no user on the portal has the e-mail address {}",
                        escape(e)
                    ))),
                }
            }
        }
    }

    fn group(&self, name: &str) -> Result<GroupId, String> {
        let mut found: Vec<&(GroupId, String)> = Vec::new();
        for g in self.groups.get(name).into_iter().flatten() {
            if !found.iter().any(|f| f.0 == g.0) {
                found.push(g);
            }
        }
        // The portal compares names without case: an exact match wins over the others.
        if found.len() > 1 && found.iter().any(|g| g.1 == name) {
            found.retain(|g| g.1 == name);
        }
        match found.as_slice() {
            [one] => Ok(one.0),
            [] => Err(format!(
                "no group named {:?} on the portal (or none the run's user can see)",
                name
            )),
            many => Err(format!(
                "{} groups are named {:?} ({}); give the group's id instead",
                many.len(),
                name,
                ids(many.iter().map(|g| g.0))
            )),
        }
    }
}

struct Offline;

impl Finder for Offline {
    fn user(&self, u: &UserRef) -> Result<(UserId, bool), Unresolved> {
        match u {
            UserRef::Id(id) => Ok((*id, true)),
            UserRef::Email(e) => Err(Unresolved {
                message: format!(
                    "{} is an e-mail address: finding the user needs a portal (roster plan looks it up); offline, give the user's ID",
                    escape(e)
                ),
                candidates: Vec::new(),
            }),
        }
    }

    fn group(&self, name: &str) -> Result<GroupId, String> {
        Err(format!(
            "group {name:?} is given by name: finding it needs a portal (roster plan looks it up); offline, give its id"
        ))
    }
}

/// Resolve the file against what the provider found for `wanted(spec)`.
pub fn resolve(spec: &Spec, found: &Lookups) -> Resolved {
    let mut directory = Directory::default();
    for p in &found.people {
        directory.users.entry(p.id).or_insert_with(|| p.clone());
    }
    let mut by_email: BTreeMap<String, BTreeSet<UserId>> = BTreeMap::new();
    for p in directory.users.values() {
        if let Some(e) = &p.email {
            by_email.entry(e.to_lowercase()).or_default().insert(p.id);
        }
    }
    for (id, name) in found.groups_by_name.values().flatten() {
        directory.groups.insert(*id, name.clone());
    }
    let portal = Portal {
        by_id: directory.users.iter().map(|(id, p)| (*id, p)).collect(),
        by_email,
        groups: &found.groups_by_name,
        users_unavailable: found.users_unavailable.as_deref(),
        emails_unavailable: found.emails_unavailable.as_deref(),
    };
    let mut w = Walk::new(spec);
    let desired = w.run(&portal);
    let (errors, errors_omitted, warnings) = w.finish();
    drop(portal);
    Resolved {
        desired,
        errors,
        errors_omitted,
        warnings,
        directory,
    }
}

/// Resolve a file that names users and groups by ID only, without a portal: every user is
/// taken as active. E-mail addresses and group names are errors (they need a portal). For
/// tests, the soak and benchmarks that parse generated files.
pub fn offline(spec: &Spec) -> Result<DesiredState, Diagnostics> {
    let mut w = Walk::new(spec);
    let desired = w.run(&Offline);
    let (shown, omitted, _) = w.finish();
    if shown.is_empty() {
        Ok(desired)
    } else {
        Err(Diagnostics { shown, omitted })
    }
}

/// Warnings for groups given by `id` whose `name:` in the file is not the portal's name for
/// them (`current` as fetched). The ID decides; the name is only a label.
pub fn name_mismatches(spec: &Spec, current: &CurrentState) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for g in &spec.groups {
        let (GroupRef::Id(id), Some(name)) = (&g.group.value, &g.name) else {
            continue;
        };
        let Some(portal) = current.groups.get(id).and_then(|c| c.name.as_deref()) else {
            continue;
        };
        if portal != name.value {
            out.push(spec.diagnostic(
                &name.at,
                format!(
                    "the portal's name for group {id} is {portal:?}, not {:?} (the id decides; the name here is only a label)",
                    name.value
                ),
            ));
        }
    }
    out
}

/// One pass over the file, collecting the desired state and the problems.
struct Walk<'s> {
    spec: &'s Spec,
    errors: Vec<Diagnostic>,
    errors_omitted: usize,
    errors_total: usize,
    warnings: Vec<Diagnostic>,
}

impl<'s> Walk<'s> {
    fn new(spec: &'s Spec) -> Walk<'s> {
        Walk {
            spec,
            errors: Vec::new(),
            errors_omitted: 0,
            errors_total: 0,
            warnings: Vec::new(),
        }
    }

    fn error(&mut self, at: &crate::spec::At, message: impl FnOnce() -> String) {
        self.errors_total += 1;
        if self.errors.len() >= MAX_DIAGNOSTICS {
            self.errors_omitted += 1;
        } else {
            self.errors.push(self.spec.diagnostic(at, message()));
        }
    }

    fn finish(mut self) -> (Vec<Diagnostic>, usize, Vec<Diagnostic>) {
        self.errors.sort_by_key(|d| (d.line, d.column));
        self.warnings.sort_by_key(|d| (d.line, d.column));
        (self.errors, self.errors_omitted, self.warnings)
    }

    fn run(&mut self, finder: &impl Finder) -> DesiredState {
        let spec = self.spec;
        // Groups given by ID, with their lines: a group given by name must not be one of them.
        let mut declared: BTreeMap<GroupId, usize> = BTreeMap::new();
        for g in &spec.groups {
            if let GroupRef::Id(id) = g.group.value {
                declared.insert(id, g.line);
            }
        }
        let mut desired = DesiredState {
            limits: spec.limits,
            ..DesiredState::default()
        };
        for g in &spec.groups {
            if let Some(group) = self.group(g, finder, &mut declared) {
                desired.groups.insert(group.id, group);
            }
        }
        desired.protected = self.protected(&spec.protected, finder);
        desired
    }

    /// A `protected:` list (the file's or a group's): each user once. An ambiguous e-mail is
    /// an error that protects every user who has it (the run fails; a group with the error is
    /// left out anyway).
    fn protected<'r>(
        &mut self,
        refs: &'r [Located<UserRef>],
        finder: &impl Finder,
    ) -> BTreeSet<UserId> {
        let mut out = BTreeSet::new();
        let mut seen: BTreeMap<UserId, &'r Located<UserRef>> = BTreeMap::new();
        for u in refs {
            match finder.user(&u.value) {
                Ok((id, _)) => {
                    if let Some(first) = seen.get(&id) {
                        let first = first.value.clone();
                        self.error(&u.at, || twice(&u.value, id, &first, "`protected`", None));
                    } else {
                        seen.insert(id, u);
                        out.insert(id);
                    }
                }
                Err(e) => {
                    out.extend(e.candidates);
                    self.error(&u.at, || e.message);
                }
            }
        }
        out
    }

    /// One group, or `None` when anything in it does not resolve.
    fn group(
        &mut self,
        g: &GroupSpec,
        finder: &impl Finder,
        declared: &mut BTreeMap<GroupId, usize>,
    ) -> Option<DesiredGroup> {
        let before = self.errors_total;
        let id = match &g.group.value {
            GroupRef::Id(id) => Some(*id),
            GroupRef::Name(name) => match finder.group(name) {
                Ok(id) => match declared.get(&id) {
                    Some(&line) => {
                        self.error(&g.group.at, || {
                            format!(
                                "group {name:?} is group {id} on the portal, which the group on line {line} declares already"
                            )
                        });
                        None
                    }
                    None => {
                        declared.insert(id, g.line);
                        Some(id)
                    }
                },
                Err(message) => {
                    self.error(&g.group.at, || message);
                    None
                }
            },
        };
        let mut owner = None;
        let mut members = BTreeMap::new();
        let mut inactive = BTreeMap::new();
        let mut seen: BTreeMap<UserId, &Located<UserRef>> = BTreeMap::new();
        for (role, u) in g.users() {
            let (user, active) = match finder.user(&u.value) {
                Ok(found) => found,
                Err(e) => {
                    self.error(&u.at, || e.message);
                    continue;
                }
            };
            if let Some(first) = seen.get(&user) {
                let (first, field, line) =
                    (first.value.clone(), first.at.path.field, first.at.line);
                self.error(&u.at, || {
                    twice(&u.value, user, &first, "this group", Some((field, line)))
                });
                continue;
            }
            seen.insert(user, u);
            match role {
                Role::Owner => {
                    owner = Some(user);
                    if !active {
                        // Never made the owner (`plan::diff_with` skips an owner change to
                        // an inactive user), though the API would allow it.
                        inactive.insert(user, Role::Owner);
                        let at = u.at;
                        let message = if at.path.field == crate::spec::Field::Manager {
                            format!(
                                "the declared manager {} is a guest or terminated, and DocSpace does not let them join a group; roster will not make them the manager",
                                who(&u.value, user)
                            )
                        } else {
                            format!(
                                "the declared owner {} is inactive (dismissed) on the portal; roster will not make them the owner",
                                who(&u.value, user)
                            )
                        };
                        self.warnings.push(self.spec.diagnostic(&at, message));
                    }
                }
                _ if active => {
                    members.insert(user, role);
                }
                _ => {
                    inactive.insert(user, role);
                }
            }
        }
        let protected = self.protected(&g.protected, finder);
        if self.errors_total != before {
            return None;
        }
        let spec = self.spec;
        Some(DesiredGroup {
            id: id?,
            name: g.name.as_ref().map(|n| n.value.clone()),
            owner,
            members,
            inactive,
            prune: g.prune.unwrap_or(true),
            prune_explicit: g.prune.is_some(),
            add_with: g.add_with.or(spec.add_with).unwrap_or(AddWith::Add),
            invite_message: g
                .invite_message
                .clone()
                .or_else(|| spec.invite_message.clone()),
            protected,
            limits: g.limits,
            line: g.line,
        })
    }
}

/// `anna@example.com (#21)` or `user 21`, for messages.
fn who(u: &UserRef, id: UserId) -> String {
    match u {
        UserRef::Id(_) => format!("user {id}"),
        UserRef::Email(_) if id.uuid().is_some() => format!("{u} ({id})"),
        UserRef::Email(_) => format!("{u} (#{id})"),
    }
}

/// The message for a user reached twice after resolution.
fn twice(
    this: &UserRef,
    id: UserId,
    first: &UserRef,
    place: &str,
    under: Option<(Field, u32)>,
) -> String {
    let under = match under {
        Some((field, line)) => format!(" (under `{}` on line {line})", field.as_str()),
        None => String::new(),
    };
    match this {
        UserRef::Email(_) => {
            format!("{this} is user {id}, who is already listed in {place} as {first}{under}")
        }
        UserRef::Id(_) => {
            format!("user {id} is already listed in {place} as {first}{under}")
        }
    }
}

#[cfg(test)]
mod tests;
