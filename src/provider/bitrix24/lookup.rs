//! Looking up what the resolve step needs, in as few requests as possible: the caller
//! (`user.current`, `user.admin`), users by e-mail and by ID (`user.get` with `@EMAIL` /
//! `@ID`, 50 values a command), and groups by exact name (`sonet_group.get` with `IS_ADMIN=Y`
//! and `=NAME`, one command a name). All of it goes through `batch`, 50 commands a request,
//! batches concurrently like any other chunks; a command whose answer has `next` (more than a
//! page of matches) has its following pages fetched in further rounds.
//!
//! Exactness: `@` is SQL `IN`, so `%` and `_` in an address are never wildcards (a bare
//! `EMAIL` key would be LIKE; it is never sent). Group names are matched again here,
//! case-insensitively, so a portal that treats `=NAME` loosely cannot widen the answer. Every
//! user found is returned (two users may share an e-mail); deciding what a reference means
//! is the resolve step's job, not this module's.
//!
//! Requests: one round of ⌈C / 50⌉ batches for C = 2 + ⌈E / 50⌉ + ⌈I / 50⌉ + G commands (E
//! e-mails, I IDs, G group names), plus one round per further page where a list overflows.

use std::collections::BTreeMap;

use serde_json::Value;
use tracing::warn;

use super::wire::{self, Command};
use super::{BATCH_MAX, Client};
use crate::model::{Caller, GroupId, Lookups, Person, UserId, Wanted};
use crate::provider::{CancellationToken, FetchError};

/// Values (e-mails, IDs) per `user.get` command: one page of the portal's answer, so a
/// command overflows only when an e-mail is shared.
pub const VALUES_PER_COMMAND: usize = 50;

/// Pages followed per command at most (20,000 rows): a guard against a portal whose `next`
/// never ends, far beyond any real duplicate count or same-named groups.
const MAX_PAGES: usize = 400;

/// What one lookup command asks, to read its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ask {
    /// `user.current`: the caller's ID.
    Caller,
    /// `user.admin`: whether the caller is an administrator.
    Admin,
    /// `user.get` by e-mail or by ID: every user found.
    Users,
    /// `sonet_group.get` by exact name: the groups of that name (as asked).
    GroupName(String),
}

/// The commands for `wanted`, in the order they are sent: the caller, then e-mails, IDs and
/// group names.
pub(super) fn lookup_commands(wanted: &Wanted) -> Vec<(Ask, Command)> {
    let mut cmds = vec![
        (Ask::Caller, Command::new("user.current")),
        (Ask::Admin, Command::new("user.admin")),
    ];
    let emails: Vec<&String> = wanted.emails.iter().collect();
    for chunk in emails.chunks(VALUES_PER_COMMAND) {
        cmds.push((Ask::Users, users_where("@EMAIL", chunk.iter())));
    }
    cmds.extend(user_commands(
        &wanted.users.iter().copied().collect::<Vec<_>>(),
    ));
    for name in &wanted.group_names {
        cmds.push((Ask::GroupName(name.clone()), group_named(name)));
    }
    cmds
}

/// `user.get` by ID, 50 IDs a command.
pub(super) fn user_commands(ids: &[UserId]) -> Vec<(Ask, Command)> {
    ids.chunks(VALUES_PER_COMMAND)
        .map(|chunk| (Ask::Users, users_where("@ID", chunk.iter().map(|u| u.0))))
        .collect()
}

/// `user.get {"FILTER": {"@KEY": [values…]}}`: `@` is IN, an exact match per value.
fn users_where<T: ToString>(key: &str, values: impl IntoIterator<Item = T>) -> Command {
    Command::new("user.get").list(&format!("FILTER[{key}]"), values)
}

/// `sonet_group.get {"IS_ADMIN": "Y", "FILTER": {"=NAME": name}}`. Upper-case keys: the
/// handler reads them case-sensitively and drops a lower-case `filter`.
fn group_named(name: &str) -> Command {
    Command::new("sonet_group.get")
        .param("IS_ADMIN", "Y")
        .param("FILTER[=NAME]", name)
}

/// Requests one lookup round of `commands` commands takes.
pub fn requests_for(commands: usize) -> usize {
    commands.div_ceil(BATCH_MAX)
}

/// One user of a `user.get` / `user.current` answer. Tolerant: `ID` as a string or number,
/// `ACTIVE` as a bool or `Y`/`N` (active when missing: nothing says otherwise), names and
/// e-mail empty or absent.
pub(super) fn person(v: &Value) -> Option<Person> {
    let id = v.get("ID").and_then(wire::id).filter(|id| *id > 0)?;
    let name = [wire::text(v.get("NAME")), wire::text(v.get("LAST_NAME"))]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Some(Person {
        id: UserId(id),
        email: wire::text(v.get("EMAIL")),
        name: (!name.is_empty()).then_some(name),
        active: v.get("ACTIVE").and_then(wire::flag).unwrap_or(true),
        extranet: v
            .get("USER_TYPE")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("extranet")),
    })
}

/// The users of a `user.get` page (an array, or an object of rows).
pub(super) fn people_in(v: &Value) -> Result<Vec<Person>, String> {
    let rows: Vec<&Value> = match v {
        Value::Array(rows) => rows.iter().collect(),
        Value::Object(map) => map.values().collect(),
        other => return Err(format!("user.get: expected a list of users, got {other}")),
    };
    Ok(rows.into_iter().filter_map(person).collect())
}

/// The groups of a `sonet_group.get` page whose name is `name`, ignoring case.
pub(super) fn groups_named(v: &Value, name: &str) -> Result<Vec<(GroupId, String)>, String> {
    let rows: Vec<&Value> = match v {
        Value::Array(rows) => rows.iter().collect(),
        Value::Object(map) => map.values().collect(),
        other => {
            return Err(format!(
                "sonet_group.get: expected a list of groups, got {other}"
            ));
        }
    };
    let wanted = name.to_lowercase();
    Ok(rows
        .into_iter()
        .filter_map(|g| {
            let id = g.get("ID").and_then(wire::id).filter(|id| *id > 0)?;
            let found = g.get("NAME").and_then(Value::as_str)?;
            (found.to_lowercase() == wanted).then(|| (GroupId(id), found.to_owned()))
        })
        .collect())
}

/// `user.current`'s ID.
pub(super) fn caller_id(v: &Value) -> Option<UserId> {
    person(v).map(|p| p.id)
}

impl Client {
    /// Everything the resolve step needs for `wanted`: every user found by e-mail or ID (each
    /// once, by ID), the groups found for each name asked (0..n each, every name present), and
    /// the caller (`None`, with a warning, when the portal would not say who or what it is).
    /// A lookup that fails fails the whole call: resolving from half the answers would call
    /// existing users unknown.
    pub async fn lookup(&self, wanted: &Wanted) -> Result<Lookups, FetchError> {
        let asks = lookup_commands(wanted);
        let pages = self.run_lookups(asks).await;
        let mut people = BTreeMap::new();
        let mut groups_by_name: BTreeMap<String, Vec<(GroupId, String)>> = wanted
            .group_names
            .iter()
            .map(|n| (n.clone(), Vec::new()))
            .collect();
        let (mut caller, mut admin) = (Err("no answer".to_owned()), Err("no answer".to_owned()));
        let mut failed = Vec::new();
        for (ask, got) in pages {
            match (&ask, got) {
                (Ask::Caller, Ok(values)) => {
                    caller = values
                        .first()
                        .and_then(caller_id)
                        .ok_or_else(|| "user.current: the answer has no user ID".to_owned())
                }
                (Ask::Admin, Ok(values)) => {
                    admin = values.first().and_then(wire::flag).ok_or_else(|| {
                        format!("user.admin: unexpected result {:?}", values.first())
                    })
                }
                (Ask::Caller, Err(e)) => caller = Err(e),
                (Ask::Admin, Err(e)) => admin = Err(e),
                (Ask::Users, Ok(values)) => {
                    for v in &values {
                        match people_in(v) {
                            Ok(found) => people.extend(found.into_iter().map(|p| (p.id, p))),
                            Err(e) => failed.push(e),
                        }
                    }
                }
                (Ask::GroupName(name), Ok(values)) => {
                    let found = groups_by_name.entry(name.clone()).or_default();
                    for v in &values {
                        match groups_named(v, name) {
                            Ok(groups) => found.extend(groups),
                            Err(e) => failed.push(e),
                        }
                    }
                    found.sort();
                    found.dedup();
                }
                (Ask::Users | Ask::GroupName(_), Err(e)) => failed.push(e),
            }
        }
        if !failed.is_empty() {
            return Err(self.lookup_failed(failed));
        }
        let caller = match (caller, admin) {
            (Ok(user), Ok(admin)) => Some(Caller { user, admin }),
            (Err(e), _) | (_, Err(e)) => {
                warn!(
                    "cannot tell who the webhook acts as or whether they are an administrator ({e}); permissions are checked only when changes are sent"
                );
                None
            }
        };
        Ok(Lookups {
            people: people.into_values().collect(),
            groups_by_name,
            caller,
        })
    }

    /// The users with these IDs that the portal has (for showing people the file did not name,
    /// such as members to be removed): `user.get` by ID, 50 a command, one batch per 2,500.
    pub async fn people(&self, ids: &[UserId]) -> Result<Vec<Person>, FetchError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let pages = self.run_lookups(user_commands(&ids)).await;
        let mut people = BTreeMap::new();
        let mut failed = Vec::new();
        for (_, got) in pages {
            match got {
                Ok(values) => {
                    for v in &values {
                        match people_in(v) {
                            Ok(found) => people.extend(found.into_iter().map(|p| (p.id, p))),
                            Err(e) => failed.push(e),
                        }
                    }
                }
                Err(e) => failed.push(e),
            }
        }
        if !failed.is_empty() {
            return Err(self.lookup_failed(failed));
        }
        Ok(people.into_values().collect())
    }

    /// The error for failed lookups: the run-wide cause once if the breaker tripped, else
    /// every failed command.
    fn lookup_failed(&self, failed: Vec<String>) -> FetchError {
        match self.unreachable() {
            Some(cause) => FetchError::Lookup(vec![cause.to_owned()]),
            None => FetchError::Lookup(failed),
        }
    }

    /// Run lookup commands, following `next` for every command whose answer has more pages
    /// (all such pages of a round go out together): per command, every page's result in
    /// order, or the error that stopped it.
    pub(super) async fn run_lookups(
        &self,
        asks: Vec<(Ask, Command)>,
    ) -> Vec<(Ask, Result<Vec<Value>, String>)> {
        let never = CancellationToken::new();
        let mut out: Vec<(Ask, Result<Vec<Value>, String>)> = asks
            .iter()
            .map(|(a, _)| (a.clone(), Ok(Vec::new())))
            .collect();
        // (command index, the command without `start`, this page's `start`)
        let mut round: Vec<(usize, Command, Option<u64>)> = asks
            .into_iter()
            .enumerate()
            .map(|(i, (_, c))| (i, c, None))
            .collect();
        let mut pages = 0;
        while !round.is_empty() {
            pages += 1;
            let cmds: Vec<(Option<GroupId>, Command)> = round
                .iter()
                .map(|(_, c, start)| {
                    let c = match start {
                        Some(s) => c.clone().param("start", s),
                        None => c.clone(),
                    };
                    (None, c)
                })
                .collect();
            let weights = vec![0; cmds.len()];
            let answers = self.run_all(&cmds, &weights, &|_| {}, &never, false).await;
            let mut next_round = Vec::new();
            for ((i, base, start), answers) in round.into_iter().zip(answers) {
                let last_ok = answers.got.iter().rev().find_map(|a| a.as_ref().ok());
                let Some(v) = last_ok else {
                    let e = match answers.got.last() {
                        Some(Err(e)) => e.clone(),
                        _ => format!("{}: no answer", base.method),
                    };
                    out[i].1 = Err(e);
                    continue;
                };
                if let Ok(values) = &mut out[i].1 {
                    values.push(v.clone());
                }
                match answers.next {
                    // Only forward, and not for ever.
                    Some(next) if Some(next) > start && next > 0 && pages < MAX_PAGES => {
                        next_round.push((i, base, Some(next)))
                    }
                    Some(_) if pages >= MAX_PAGES => {
                        out[i].1 = Err(format!(
                            "{}: more than {MAX_PAGES} pages of answers",
                            base.method
                        ))
                    }
                    _ => {}
                }
            }
            round = next_round;
        }
        out
    }
}
