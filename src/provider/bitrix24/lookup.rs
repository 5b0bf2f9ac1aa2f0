//! Looking up what the resolve step needs, in as few requests as possible: the caller
//! (`user.current`, `user.admin`), users by e-mail and by ID (`user.get` with `@EMAIL` /
//! `@ID`, 50 values a command), and groups by exact name (`sonet_group.get` with `IS_ADMIN=Y`
//! and `=NAME`, one command a name) — or, where that is cheaper, the whole user list or every
//! group, matched here by the same rules. All of it goes through `batch`, 50 commands a
//! request, batches concurrently like any other chunks; a lookup whose answer has `next`
//! (more than a page of matches) has its following pages fetched in further rounds.
//!
//! Exactness: `@` is SQL `IN`, so `%` and `_` in an address are never wildcards (a bare
//! `EMAIL` key would be LIKE; it is never sent). Group names are matched again here,
//! case-insensitively, so a portal that treats `=NAME` loosely cannot widen the answer. From a
//! full list, users are kept whose ID was asked or whose e-mail equals an asked one ignoring
//! case, and groups whose name equals an asked one ignoring case: never a pattern, 0..n
//! matches, and nothing the file did not ask for. Every user found is returned (two users may
//! share an e-mail); deciding what a reference means is the resolve step's job.
//!
//! An ignored filter: a portal silently drops a filter key on a field the caller's scope does
//! not allow (with only `user_brief`, `EMAIL`; reference §2.1, rules §1.5 "Scopes") and
//! answers everyone, without `EMAIL`. A direct lookup whose page has users matching none of
//! the values asked (or, for IDs, a `total` above the IDs asked) is taken as such
//! ([`Asked::ignored`]): its `next` is not followed and its rows are dropped. For e-mails the
//! run then says once why they are unavailable (`Lookups::emails_unavailable`, a read
//! warning) and sends no more e-mail commands; IDs still work. An ignored ID filter fails
//! the lookup: nobody could tell who exists.
//!
//! Requests (see [`opening`], [`route`], [`requests`] and [`bound`]): when the caller's two
//! commands and every direct lookup fit in one batch, that is the one request. Otherwise the
//! first request carries the caller, the first page of each list whose kind has lookups left
//! over (its `total` says how long the list is), and as many direct lookups as fit, users
//! first; the second round carries, per kind, the cheaper of its direct lookups left and its
//! list's remaining pages (all at once, by `start`), 50 to a request. Only a direct lookup
//! with more than a page of matches (51 users sharing an e-mail) costs further rounds.
//!
//! The pages of a list are read at once, not followed: a user or group created while they
//! are read may be missed and one deleted may shift a row past a page (both are IDs ascending,
//! so creations land at the end).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use tracing::{debug, warn};

use super::wire::{self, Command};
use super::{BATCH_MAX, Client};
use crate::model::{Caller, GroupId, Lookups, Person, UserId, Wanted};
use crate::provider::{CancellationToken, FetchError};

/// Values (e-mails, IDs) per `user.get` command: one page of the portal's answer, so a
/// command overflows only when an e-mail is shared.
pub const VALUES_PER_COMMAND: usize = 50;

/// Rows per page of `user.get` and `sonet_group.get`.
pub const PAGE: usize = 50;

/// The caller's commands: `user.current` and `user.admin`.
const CALLER_COMMANDS: usize = 2;

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
    /// `user.get` by e-mail or by ID: every user found (the values asked, to tell whether
    /// the portal applied the filter, see [`Asked::ignored`]).
    Users(Asked),
    /// `sonet_group.get` by exact name: the groups of that name (as asked).
    GroupName(String),
    /// One page of the whole user list; not followed (the pages are asked for at once).
    UserPage,
    /// One page of every group the caller may see; not followed either.
    GroupPage,
}

impl Ask {
    fn follows_next(&self) -> bool {
        !matches!(self, Ask::UserPage | Ask::GroupPage)
    }
}

/// The values of one direct user lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Asked {
    /// `@EMAIL`, lower-cased.
    Emails(BTreeSet<String>),
    /// `@ID`.
    Ids(BTreeSet<UserId>),
}

impl Asked {
    /// Does this person match one of the values asked (an e-mail ignoring case)? A person
    /// without an e-mail matches no e-mail.
    fn matches(&self, p: &Person) -> bool {
        match self {
            Asked::Emails(emails) => p
                .email
                .as_ref()
                .is_some_and(|e| emails.contains(&e.to_lowercase())),
            Asked::Ids(ids) => ids.contains(&p.id),
        }
    }

    /// Whether a page of the answer shows that the portal did not apply the filter: it has
    /// users who match none of the values asked, or (IDs being unique) a `total` above the
    /// number of IDs asked. A portal ignores a filter key on a field the caller's scope does
    /// not allow (reference §2.1 "unknown keys are silently ignored"): with only `user_brief`,
    /// `@EMAIL` is such a key and the answer, without `EMAIL`, is everyone (rules §1.5
    /// "Scopes"). Following its `next` would read the whole portal for every command.
    pub(super) fn ignored(&self, page: &Value, total: Option<u64>) -> bool {
        let stray = people_in(page).is_ok_and(|people| people.iter().any(|p| !self.matches(p)));
        let too_many = match self {
            Asked::Ids(ids) => total.is_some_and(|t| t > ids.len() as u64),
            // Many users may share an e-mail: only the rows tell.
            Asked::Emails(_) => false,
        };
        stray || too_many
    }

    fn is_emails(&self) -> bool {
        matches!(self, Asked::Emails(_))
    }
}

// ---------------------------------------------------------------------------------------------
// Planning: which commands go when. Pure arithmetic on counts.

/// What the first request carries beside the caller's two commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    /// The first page of the whole user list, to learn U.
    pub list_users: bool,
    /// The first page of every group, to learn T.
    pub list_groups: bool,
    /// Direct user lookups (`user.get` by e-mail or ID commands) sent now.
    pub users: usize,
    /// Group names looked up now.
    pub groups: usize,
}

/// The first request for `user_commands` direct user lookups and `group_names` names. When
/// everything fits beside the caller, everything goes; otherwise each kind with lookups left
/// over gets its list's first page, and direct lookups fill the rest, users first.
pub fn opening(user_commands: usize, group_names: usize) -> Opening {
    if CALLER_COMMANDS + user_commands + group_names <= BATCH_MAX {
        return Opening {
            list_users: false,
            list_groups: false,
            users: user_commands,
            groups: group_names,
        };
    }
    let fill = |list_users: bool, list_groups: bool| {
        let room = BATCH_MAX - CALLER_COMMANDS - usize::from(list_users) - usize::from(list_groups);
        let users = user_commands.min(room);
        Opening {
            list_users,
            list_groups,
            users,
            groups: group_names.min(room - users),
        }
    };
    let first = fill(user_commands > 0, group_names > 0);
    // Users that all fit need no list; their slot goes to a group name. (Group names always
    // have some left over here: more than fits came in, and users went first.)
    if first.users == user_commands {
        fill(false, first.list_groups)
    } else {
        first
    }
}

/// How a kind's lookups left after the first request are finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Its direct lookups left (this many commands; 0: done).
    Direct(usize),
    /// Its list's remaining pages (this many commands; 0: the first page was all of it).
    List(usize),
}

impl Route {
    /// Commands in the second round.
    pub fn commands(self) -> usize {
        match self {
            Route::Direct(n) | Route::List(n) => n,
        }
    }
}

/// The cheaper way to finish `left` direct lookups, given the list's length when its first
/// page was read (`None`: not read, or it did not say). A tie goes to the direct lookups:
/// the portal does the matching and sends fewer rows.
pub fn route(left: usize, listed: Option<u64>) -> Route {
    match listed {
        Some(total) if left > 0 => {
            let more = pages(total).saturating_sub(1);
            if more < left {
                Route::List(more)
            } else {
                Route::Direct(left)
            }
        }
        _ => Route::Direct(left),
    }
}

/// Pages of a list of `total` rows.
fn pages(total: u64) -> usize {
    usize::try_from(total.div_ceil(PAGE as u64)).unwrap_or(usize::MAX)
}

/// Requests one round of `commands` commands takes.
pub fn requests_for(commands: usize) -> usize {
    commands.div_ceil(BATCH_MAX)
}

/// Direct user lookup commands for `emails` e-mails and `ids` IDs (50 a command each).
pub fn user_lookups_for(emails: usize, ids: usize) -> usize {
    emails.div_ceil(VALUES_PER_COMMAND) + ids.div_ceil(VALUES_PER_COMMAND)
}

/// Requests the whole lookup takes for `user_commands` direct user lookups and `group_names`
/// names on a portal of `users` users and `groups` groups (visible to the caller), when no
/// direct lookup has more than a page of matches.
pub fn requests(user_commands: usize, group_names: usize, users: u64, groups: u64) -> usize {
    let o = opening(user_commands, group_names);
    let first = CALLER_COMMANDS
        + usize::from(o.list_users)
        + usize::from(o.list_groups)
        + o.users
        + o.groups;
    let u = route(user_commands - o.users, o.list_users.then_some(users));
    let g = route(group_names - o.groups, o.list_groups.then_some(groups));
    requests_for(first) + requests_for(u.commands() + g.commands())
}

/// The request bound the lookup meets (issue 7, "Request economy"), shared between the
/// caller, users and groups: max(1, B_u + B_g), where for N identities (e-mails + IDs) on a
/// portal of U users and G names on a portal of T groups
///
/// - B_u = 0 if N = 0, else min(⌈N/50⌉, 1 + ⌈U/2,500⌉);
/// - B_g = 0 if G = 0, else min(⌈(G + c)/50⌉, 1 + ⌈T/2,500⌉), with c = 0 when the file names
///   anyone and c = 3 when it names groups only.
///
/// The caller's two commands and a list's first page ride in the first request, which the
/// users' share pays for when there is one. A file naming only groups pays for them in its
/// names: 49 names and the caller are 51 commands, two requests, because names cannot share a
/// command. No order of requests does better without knowing T in advance: the first page
/// must be read before a list can be chosen.
pub fn bound(identities: usize, users: u64, group_names: usize, groups: u64) -> usize {
    let by_list = |rows: u64| 1 + usize::try_from(rows.div_ceil(2_500)).unwrap_or(usize::MAX);
    let b_u = match identities {
        0 => 0,
        n => n.div_ceil(50).min(by_list(users)),
    };
    let carried = if identities == 0 { 3 } else { 0 };
    let b_g = match group_names {
        0 => 0,
        g => (g + carried).div_ceil(50).min(by_list(groups)),
    };
    (b_u + b_g).max(1)
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// The direct user lookups for `wanted`: e-mails, then IDs, 50 values a command.
pub(super) fn user_lookups(wanted: &Wanted) -> Vec<(Ask, Command)> {
    let emails: Vec<&String> = wanted.emails.iter().collect();
    let ids: Vec<UserId> = wanted.users.iter().copied().collect();
    emails
        .chunks(VALUES_PER_COMMAND)
        .map(|chunk| {
            let asked = Asked::Emails(chunk.iter().map(|e| e.to_lowercase()).collect());
            (Ask::Users(asked), users_where("@EMAIL", chunk.iter()))
        })
        .chain(user_commands(&ids))
        .collect()
}

/// The first round for `wanted`, in the order it is sent: the caller, the lists' first
/// pages, e-mails, IDs and group names.
pub(super) fn first_round(wanted: &Wanted) -> (Opening, Vec<(Ask, Command)>) {
    let users = user_lookups(wanted);
    let o = opening(users.len(), wanted.group_names.len());
    let mut cmds = vec![
        (Ask::Caller, Command::new("user.current")),
        (Ask::Admin, Command::new("user.admin")),
    ];
    if o.list_users {
        cmds.push((Ask::UserPage, user_page(0)));
    }
    if o.list_groups {
        cmds.push((Ask::GroupPage, group_page(0)));
    }
    cmds.extend(users.into_iter().take(o.users));
    cmds.extend(
        wanted
            .group_names
            .iter()
            .take(o.groups)
            .map(|n| (Ask::GroupName(n.clone()), group_named(n))),
    );
    (o, cmds)
}

/// `user.get` by ID, 50 IDs a command.
pub(super) fn user_commands(ids: &[UserId]) -> Vec<(Ask, Command)> {
    ids.chunks(VALUES_PER_COMMAND)
        .map(|chunk| {
            let asked = Asked::Ids(chunk.iter().copied().collect());
            (
                Ask::Users(asked),
                users_where("@ID", chunk.iter().map(|u| u.expect_num())),
            )
        })
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

/// A page of the whole user list: `user.get` without a filter (IDs ascending, the default),
/// `start` an offset.
pub(super) fn user_page(start: usize) -> Command {
    Command::new("user.get").param("start", start)
}

/// A page of every group, as the name lookups see them (`IS_ADMIN=Y`), IDs ascending so a
/// group created meanwhile lands at the end. Legacy paging: `start` = page × 50.
pub(super) fn group_page(start: usize) -> Command {
    Command::new("sonet_group.get")
        .param("IS_ADMIN", "Y")
        .param("ORDER[ID]", "ASC")
        .param("start", start)
}

/// The second round's commands for a kind that takes its list: pages 2.. of `page`.
fn more_pages(more: usize, ask: Ask, page: fn(usize) -> Command) -> Vec<(Ask, Command)> {
    (1..=more).map(|i| (ask.clone(), page(i * PAGE))).collect()
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
        id: UserId::Num(id),
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

/// The groups of a `sonet_group.get` page (an array, or an object of rows), with their names.
pub(super) fn groups_in(v: &Value) -> Result<Vec<(GroupId, String)>, String> {
    super::list::groups_of(v).map(|groups| groups.into_iter().map(|g| (g.id, g.name)).collect())
}

/// The groups of a `sonet_group.get` page whose name is `name`, ignoring case.
pub(super) fn groups_named(v: &Value, name: &str) -> Result<Vec<(GroupId, String)>, String> {
    let wanted = name.to_lowercase();
    Ok(groups_in(v)?
        .into_iter()
        .filter(|(_, found)| found.to_lowercase() == wanted)
        .collect())
}

/// The users of a page of the whole list that `wanted` asks for: by ID, or by e-mail equal
/// to an asked one ignoring case (`emails` lower-cased).
pub(super) fn asked_people(
    v: &Value,
    wanted: &Wanted,
    emails: &BTreeSet<String>,
) -> Result<Vec<Person>, String> {
    Ok(people_in(v)?
        .into_iter()
        .filter(|p| {
            wanted.users.contains(&p.id)
                || p.email
                    .as_ref()
                    .is_some_and(|e| emails.contains(&e.to_lowercase()))
        })
        .collect())
}

/// `user.current`'s ID.
pub(super) fn caller_id(v: &Value) -> Option<UserId> {
    person(v).map(|p| p.id)
}

/// One lookup command's answers: every page's result in order, or the error that stopped it,
/// and the last page's `result_next` and `result_total`.
pub(super) struct Got {
    pub ask: Ask,
    pub pages: Result<Vec<Value>, String>,
    /// The portal's error code when it refused the command (`result_error`).
    pub code: Option<String>,
    pub next: Option<u64>,
    pub total: Option<u64>,
    /// A direct user lookup whose answer shows the portal did not apply its filter
    /// ([`Asked::ignored`]): its `next` was not followed, and its rows are not an answer.
    pub ignored: bool,
}

impl Got {
    /// How many rows a list has, from its first page: `total`, or the page's own rows when
    /// it is the last one (an empty `user.get` answer has no `total`). `None` when the page
    /// failed or does not say: the lookups then go the direct way.
    fn listed(&self) -> Option<u64> {
        let Ok(pages) = &self.pages else {
            return None;
        };
        let rows = match pages.first()? {
            Value::Array(rows) => rows.len(),
            Value::Object(rows) => rows.len(),
            _ => return None,
        };
        match (self.next, self.total) {
            (None, _) => Some(rows as u64),
            (Some(_), total) => total,
        }
    }
}

/// What the answers say, gathered per kind.
#[derive(Default)]
struct Found {
    people: BTreeMap<UserId, Person>,
    groups_by_name: BTreeMap<String, Vec<(GroupId, String)>>,
    failed: Vec<String>,
}

impl Client {
    /// Everything the resolve step needs for `wanted`: every user found by e-mail or ID (each
    /// once, by ID), the groups found for each name asked (0..n each, every name present), and
    /// the caller (`None`, with a warning, when the portal would not say who or what it is).
    /// A lookup that fails fails the whole call: resolving from half the answers would call
    /// existing users unknown. Except when the portal refuses the user methods themselves (a
    /// webhook without the `user` scope, `refused_users`): then no people and no caller, with
    /// `users_unavailable` saying why (and a warning once), and the group names as usual. And
    /// when the portal ignored an `@EMAIL` filter (`user_brief` only): no people by e-mail,
    /// `emails_unavailable` saying why (a warning once), users by ID and the caller as usual.
    /// At most two rounds of requests (see the module), plus one per further page of a direct
    /// lookup with more than a page of matches.
    pub async fn lookup(&self, wanted: &Wanted) -> Result<Lookups, FetchError> {
        let (open, first) = first_round(wanted);
        let mut got = self.run_lookups(first).await;
        if let Some(why) = refused_users(&got) {
            self.users_refused(why);
        }
        if ignored_emails(&got) {
            self.emails_ignored();
        }
        let users_refused = self.users_refused.get().is_some();
        // A portal that ignored one e-mail filter ignores them all: the rest are not sent.
        let emails_ignored = self.emails_ignored.get().is_some();
        let listed = |ask: Ask, got: &[Got]| got.iter().find(|g| g.ask == ask)?.listed();
        let users = user_lookups(wanted);
        let users_route = route(users.len() - open.users, listed(Ask::UserPage, &got));
        let groups_left = wanted.group_names.len() - open.groups;
        let groups_route = route(groups_left, listed(Ask::GroupPage, &got));
        debug!(?open, ?users_route, ?groups_route, "lookup routes");
        let mut second = match users_route {
            // Refused as a method: asking again would be refused again.
            _ if users_refused => Vec::new(),
            Route::Direct(_) => users
                .into_iter()
                .skip(open.users)
                .filter(|(ask, _)| {
                    !(emails_ignored && matches!(ask, Ask::Users(a) if a.is_emails()))
                })
                .collect(),
            Route::List(more) => more_pages(more, Ask::UserPage, user_page),
        };
        match groups_route {
            Route::Direct(_) => second.extend(
                wanted
                    .group_names
                    .iter()
                    .skip(open.groups)
                    .map(|n| (Ask::GroupName(n.clone()), group_named(n))),
            ),
            Route::List(more) => second.extend(more_pages(more, Ask::GroupPage, group_page)),
        }
        if !second.is_empty() {
            got.extend(self.run_lookups(second).await);
            if ignored_emails(&got) {
                self.emails_ignored();
            }
        }

        let users_listed = matches!(users_route, Route::List(_));
        let groups_listed = matches!(groups_route, Route::List(_));
        let emails: BTreeSet<String> = wanted.emails.iter().map(|e| e.to_lowercase()).collect();
        // Each asked name by its lower-case form (two asked names may differ only in case).
        let mut names: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for n in &wanted.group_names {
            names.entry(n.to_lowercase()).or_default().push(n);
        }
        let mut found = Found {
            groups_by_name: wanted
                .group_names
                .iter()
                .map(|n| (n.clone(), Vec::new()))
                .collect(),
            ..Found::default()
        };
        let (mut caller, mut admin) = (Err("no answer".to_owned()), Err("no answer".to_owned()));
        for Got {
            ask,
            pages,
            ignored,
            ..
        } in got
        {
            // Answers of the way not taken only told which way to take: a direct lookup sent
            // before a kind turned to its list, a list's first page when it did not. Without
            // the user methods, nothing about users is taken (what came back is refusals).
            let taken = match &ask {
                Ask::Caller | Ask::Users(_) | Ask::UserPage if users_refused => false,
                Ask::Caller | Ask::Admin => true,
                Ask::Users(_) => !users_listed,
                Ask::UserPage => users_listed,
                Ask::GroupName(_) => !groups_listed,
                Ask::GroupPage => groups_listed,
            };
            if !taken {
                continue;
            }
            let values = match (&ask, pages) {
                (Ask::Caller, got) => {
                    caller = got.and_then(|v| {
                        v.first()
                            .and_then(caller_id)
                            .ok_or_else(|| "user.current: the answer has no user ID".to_owned())
                    });
                    continue;
                }
                (Ask::Admin, got) => {
                    admin = got.and_then(|v| {
                        v.first()
                            .and_then(wire::flag)
                            .ok_or_else(|| format!("user.admin: unexpected result {:?}", v.first()))
                    });
                    continue;
                }
                (_, Err(e)) => {
                    found.failed.push(e);
                    continue;
                }
                // Rows of an ignored filter are not an answer: e-mails are then unavailable
                // (`emails_unavailable`, said once); an ignored ID filter leaves no way to
                // tell who exists.
                (Ask::Users(asked), Ok(_)) if ignored => {
                    if !asked.is_emails() {
                        found.failed.push(ids_ignored());
                    }
                    continue;
                }
                (_, Ok(values)) => values,
            };
            for v in &values {
                let read = match &ask {
                    Ask::Users(_) => people_in(v).map(|people| found.add_people(people)),
                    Ask::UserPage => {
                        asked_people(v, wanted, &emails).map(|people| found.add_people(people))
                    }
                    Ask::GroupName(name) => groups_named(v, name).map(|groups| {
                        found
                            .groups_by_name
                            .entry(name.clone())
                            .or_default()
                            .extend(groups)
                    }),
                    Ask::GroupPage => groups_in(v).map(|groups| {
                        for (id, name) in groups {
                            for asked in names.get(&name.to_lowercase()).into_iter().flatten() {
                                found
                                    .groups_by_name
                                    .entry((*asked).clone())
                                    .or_default()
                                    .push((id, name.clone()));
                            }
                        }
                    }),
                    Ask::Caller | Ask::Admin => Ok(()),
                };
                if let Err(e) = read {
                    found.failed.push(e);
                }
            }
        }
        if !found.failed.is_empty() {
            return Err(self.lookup_failed(found.failed));
        }
        for groups in found.groups_by_name.values_mut() {
            groups.sort();
            groups.dedup();
        }
        let caller = match (caller, admin) {
            // Said with the missing scope (`users_refused`).
            _ if users_refused => None,
            (Ok(user), Ok(admin)) => Some(Caller { user, admin }),
            (Err(e), _) | (_, Err(e)) => {
                warn!(
                    "cannot tell who the webhook acts as or whether they are an administrator ({e}); permissions are checked only when changes are sent"
                );
                None
            }
        };
        Ok(Lookups {
            people: found.people.into_values().collect(),
            groups_by_name: found.groups_by_name,
            caller,
            users_unavailable: self.users_refused.get().cloned(),
            emails_unavailable: self.emails_ignored.get().cloned(),
        })
    }

    /// Record that the portal did not apply an `@EMAIL` filter, and say once why e-mails
    /// cannot be resolved and what to do about it.
    fn emails_ignored(&self) {
        let who = self.credentials();
        let why = self.emails_ignored.get_or_init(|| {
            format!(
                "the portal did not apply the e-mail filter of user.get (it answered users with none of the e-mails asked): likely {who} has only the `user_brief` scope, and e-mails need `user_basic` or `user`"
            )
        });
        self.notices.once("emails ignored", || {
            format!("{why}; so users named by e-mail cannot be resolved (user IDs still work)")
        });
    }

    /// The warning for a run whose e-mail lookups the portal ignored, if it did.
    pub(super) fn emails_warning(&self) -> Option<String> {
        let why = self.emails_ignored.get()?;
        Some(format!(
            "{why}; users named by e-mail could not be resolved"
        ))
    }

    /// Record that the portal refuses the user methods (`why`, from `refused_users`), and say
    /// once what to do about it.
    fn users_refused(&self, why: String) {
        let _ = self.users_refused.set(why);
        if let Some(line) = self.users_warning() {
            self.notices.once("users refused", || line);
        }
    }

    /// The warning for a run that cannot look users up, if it cannot.
    pub(super) fn users_warning(&self) -> Option<String> {
        let why = self.users_refused.get()?;
        let who = self.credentials();
        Some(format!(
            "{why}; so user IDs are taken unchecked, people are shown by ID only, users named by e-mail cannot be resolved, and who {who} acts as is not known (permissions are checked only when changes are sent); to check them, give {who} the `user` scope (or `user_basic`) in Bitrix24"
        ))
    }

    /// The users with these IDs that the portal has (for showing people the file did not name,
    /// such as members to be removed): `user.get` by ID, 50 a command, one batch per 2,500.
    /// When the portal refuses `user.get` as a method (no `user` scope), nobody is found, with
    /// a warning once: the plan shows IDs.
    pub async fn people(&self, ids: &[UserId]) -> Result<Vec<Person>, FetchError> {
        if self.users_refused.get().is_some() {
            return Ok(Vec::new());
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut found = Found::default();
        let got = self.run_lookups(user_commands(&ids)).await;
        if let Some(why) = refused_users(&got) {
            self.users_refused(why);
            return Ok(Vec::new());
        }
        for got in got {
            match got.pages {
                Ok(_) if got.ignored => found.failed.push(ids_ignored()),
                Ok(values) => {
                    for v in &values {
                        match people_in(v) {
                            Ok(people) => found.add_people(people),
                            Err(e) => found.failed.push(e),
                        }
                    }
                }
                Err(e) => found.failed.push(e),
            }
        }
        if !found.failed.is_empty() {
            return Err(self.lookup_failed(found.failed));
        }
        Ok(found.people.into_values().collect())
    }

    /// The error for failed lookups: the run-wide cause once if the breaker tripped, else
    /// every failed command.
    fn lookup_failed(&self, failed: Vec<String>) -> FetchError {
        match self.unreachable() {
            Some(cause) => FetchError::Lookup(vec![cause.to_owned()]),
            None => FetchError::Lookup(failed),
        }
    }

    /// Run lookup commands, following `next` for every direct lookup whose answer has more
    /// pages (all such pages of a round go out together; a list's pages are not followed, they
    /// are asked for at once): per command, every page's result in order, or the error that
    /// stopped it.
    pub(super) async fn run_lookups(&self, asks: Vec<(Ask, Command)>) -> Vec<Got> {
        let never = CancellationToken::new();
        let mut out: Vec<Got> = asks
            .iter()
            .map(|(a, _)| Got {
                ask: a.clone(),
                pages: Ok(Vec::new()),
                code: None,
                next: None,
                total: None,
                ignored: false,
            })
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
                    out[i].pages = Err(e);
                    out[i].code = answers.code.clone();
                    continue;
                };
                let got = &mut out[i];
                if let Ok(values) = &mut got.pages {
                    values.push(v.clone());
                }
                (got.next, got.total) = (answers.next, answers.total);
                if !got.ask.follows_next() {
                    continue;
                }
                if let Ask::Users(asked) = &got.ask
                    && asked.ignored(v, answers.total)
                {
                    debug!(method = %base.method, "the portal did not apply the filter; not following next");
                    got.ignored = true;
                    continue;
                }
                match answers.next {
                    // Only forward, and not for ever.
                    Some(next) if Some(next) > start && next > 0 && pages < MAX_PAGES => {
                        next_round.push((i, base, Some(next)))
                    }
                    Some(_) if pages >= MAX_PAGES => {
                        got.pages = Err(format!(
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

/// Why the portal will not look users up at all, if it refused `user.get` or `user.current`
/// as a method (`insufficient_scope`, `ERROR_METHOD_NOT_FOUND`): the same for the whole run.
/// `user.admin` is of the `basic` scope and says nothing about the others.
fn refused_users(got: &[Got]) -> Option<String> {
    let refused = |g: &&Got| g.pages.is_err() && super::refuses_method(g.code.as_deref());
    // `user.get` named first: it is what finds people.
    got.iter()
        .filter(|g| matches!(g.ask, Ask::Users(_) | Ask::UserPage))
        .find(refused)
        .or_else(|| got.iter().filter(|g| g.ask == Ask::Caller).find(refused))
        .map(|g| {
            let method = if g.ask == Ask::Caller {
                "user.current"
            } else {
                "user.get"
            };
            let code = g.code.as_deref().unwrap_or_default();
            format!("the portal refuses {method} ({code}): roster cannot look users up")
        })
}

/// Whether an `@EMAIL` lookup's answer showed that the portal ignored the filter.
fn ignored_emails(got: &[Got]) -> bool {
    got.iter()
        .any(|g| g.ignored && matches!(&g.ask, Ask::Users(a) if a.is_emails()))
}

/// The failure of an `@ID` lookup whose filter the portal did not apply.
fn ids_ignored() -> String {
    "user.get: the portal did not apply the ID filter (it answered users not asked for), so roster cannot tell which of the users named by ID exist".to_owned()
}

impl Found {
    fn add_people(&mut self, people: Vec<Person>) {
        self.people.extend(people.into_iter().map(|p| (p.id, p)));
    }
}
