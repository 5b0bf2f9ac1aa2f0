//! Looking up what the resolve step needs, in as few requests as the API allows: the caller
//! (`GET people/@self`), users by e-mail (`GET people/email?email=…`) and by UUID
//! (`GET people/{id}`), one request each, or the paged list of active users
//! (`GET people?count=100&startIndex=…`) when that is cheaper; groups by name
//! (`GET group?filterValue=NAME&count=100`, a case-insensitive substring match on the server,
//! then an exact match here), one request a name, or the paged list of every group when that
//! is cheaper. The caller, the users and the groups go concurrently.
//!
//! Requests, with P = 100 rows a page (fewer when the portal pages shorter, learnt from the
//! first page), for D named users (e-mails and UUIDs), G group names, U active users and T
//! groups on the portal (see [`user_requests`], [`group_requests`]):
//!
//! - the caller: 1;
//! - users: 0 when D = 0; 1 when D = 1; otherwise 1 for the list's first page (to learn U),
//!   then, for the D − h named users not on it, either the list's other ⌈U/P⌉ − 1 pages when
//!   that is fewer than D − h, plus one direct lookup per named user not on the list
//!   (terminated or unknown users: the list has active users only), or else D − h direct
//!   lookups;
//! - groups: 0 when G = 0; 1 when G = 1; otherwise 1 for the list's first page (to learn T),
//!   then nothing more when it held every group, else the other ⌈T/P⌉ − 1 pages when that is
//!   fewer than G, or else G lookups by name;
//! - plus one page per further 100 groups whose name contains a name looked up directly, and G
//!   lookups by name if the group list changed while it was read (its `total` moved, or it
//!   did not add up).
//!
//! So a file naming one user and one group costs 3 requests; one naming 500 users and 40 groups
//! on a portal of 800 users and 300 groups costs 1 + (8 + M) + 3, M being the named users not
//! on the active list. Reading a list's first page costs one request more than the direct
//! lookups at worst, and only when there are two or more of them. The rest of the user list is
//! taken only when its pages are fewer than the lookups left, but users not on it still cost a
//! lookup each, so a file naming mostly terminated or pending users may pay up to those pages
//! more than the direct way (the choice is made before anyone knows who is on the list).
//!
//! Exactness: e-mails are compared ignoring case, never as patterns (the server's e-mail
//! lookup is exact); a group matches a name when the two are equal ignoring case (as the
//! server's filter compares), and every such group is returned, so `resolve` reports several
//! as ambiguous (preferring one whose case matches exactly, as for Bitrix24).
//!
//! Refusals: a 403 on a lookup by e-mail makes e-mails unavailable (`emails_unavailable`: a
//! plain user may not look others up); a 403 on a lookup by ID makes users unavailable
//! (`users_unavailable`: IDs are then taken unchecked). Each is said once and kept for
//! `read_warnings`. A 404 is "no such user", not an error.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use tracing::{debug, warn};

use super::http::{CallError, Reply, Req, TransportError, TransportKind};
use super::{Client, MAX_CONCURRENT_READS, wire};
use crate::model::{Caller, GroupId, Lookups, UserId, Uuid, Wanted};
use crate::provider::{CancellationToken, FetchError};

/// Rows asked for per page of a list (the group list's maximum, §1.1).
pub const PAGE: usize = 100;

/// Whether to read a list's first page before looking `lookups` values up one by one: only
/// for two or more, since one lookup is never dearer than a page.
pub fn probe(lookups: usize) -> bool {
    lookups >= 2
}

/// Pages of a list of `total` rows, `page` a page.
pub fn pages(total: u64, page: usize) -> u64 {
    total.div_ceil(page.max(1) as u64)
}

/// The page size the portal actually uses, from a first page of `rows` rows of a list of
/// `total`: shorter than asked (and not the whole list) means the portal pages shorter.
pub fn page_size(rows: usize, total: u64) -> usize {
    let expected = (PAGE as u64).min(total) as usize;
    if rows > 0 && rows < expected {
        rows
    } else {
        PAGE
    }
}

/// Whether to read the rest of a list (`remaining` pages) rather than look `left` values up
/// one by one: when it is fewer requests. A tie goes to the direct lookups (fewer rows).
pub fn take_list(remaining: u64, left: usize) -> bool {
    left > 0 && remaining < left as u64
}

/// Requests the users' share of a lookup takes: `d` named users, `h` of them on the list's
/// first page, `m` of the others not on the list at all, `u` active users.
pub fn user_requests(d: usize, h: usize, m: usize, u: u64) -> u64 {
    match d {
        0 => 0,
        1 => 1,
        _ => {
            let remaining = pages(u, PAGE).saturating_sub(1);
            let left = d - h;
            if take_list(remaining, left) {
                1 + remaining + m as u64
            } else {
                1 + left as u64
            }
        }
    }
}

/// Requests the groups' share of a lookup takes for `g` names on a portal of `t` groups (when
/// no name is part of more than 100 group names and the list does not change meanwhile).
pub fn group_requests(g: usize, t: u64) -> u64 {
    match g {
        0 => 0,
        1 => 1,
        _ => {
            let remaining = pages(t, PAGE).saturating_sub(1);
            if remaining == 0 || take_list(remaining, g) {
                1 + remaining
            } else {
                1 + g as u64
            }
        }
    }
}

/// One page of a list: its rows and `total`.
struct Page {
    rows: Vec<Value>,
    total: Option<u64>,
}

impl Page {
    /// How many rows the list has: `total`, or this page's rows when it is short (the last).
    fn listed(&self, start: u64, size: usize) -> Option<u64> {
        self.total
            .or_else(|| (self.rows.len() < size).then_some(start + self.rows.len() as u64))
    }
}

impl Client {
    /// Everything the resolve step needs for `wanted`: every user found by e-mail or UUID (each
    /// once), the groups found for each name asked (0..n each, every name present), and the
    /// caller (`None`, with a warning, when the portal would not say who it is). A lookup that
    /// fails fails the whole call (resolving from half the answers would call existing users
    /// unknown), except the refusals that make e-mails or users unavailable (see the module).
    pub async fn lookup(&self, wanted: &Wanted) -> Result<Lookups, FetchError> {
        let emails: BTreeSet<String> = wanted
            .emails
            .iter()
            .map(|e| e.trim().to_lowercase())
            .collect();
        let ids: BTreeSet<Uuid> = wanted.users.iter().filter_map(|u| u.uuid()).collect();
        let (caller, users, groups) = tokio::join!(
            self.caller(),
            self.find_users(&emails, &ids),
            self.find_groups(&wanted.group_names),
        );
        let mut failed = Vec::new();
        let people = users.unwrap_or_else(|e| {
            failed.extend(e);
            Vec::new()
        });
        let groups_by_name = groups.unwrap_or_else(|e| {
            failed.extend(e);
            BTreeMap::new()
        });
        if !failed.is_empty() || self.breaker.cause().is_some() {
            return Err(self.lookup_failed(failed));
        }
        let caller = match caller {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(
                    "cannot tell who {} is or whether they are a DocSpace admin ({e}); permissions are checked only when changes are sent",
                    self.auth.whose()
                );
                None
            }
        };
        Ok(Lookups {
            people: people.iter().map(wire::Employee::person).collect(),
            groups_by_name,
            caller,
            users_unavailable: self.users_refused.get().cloned(),
            emails_unavailable: self.emails_refused.get().cloned(),
        })
    }

    /// `GET people/@self`: the caller, an admin when a DocSpace admin or its owner (a room
    /// admin is not).
    async fn caller(&self) -> Result<Caller, String> {
        let req = Req::get("people/@self");
        let (result, _) = self.call(&req, &CancellationToken::new(), false).await;
        let reply = result.map_err(|e| e.to_string())?;
        let me = reply
            .response()
            .and_then(wire::employee)
            .ok_or_else(|| format!("{}: the answer has no user ID", req.shown()))?;
        self.learn_people(std::slice::from_ref(&me));
        Ok(Caller {
            user: UserId::Uuid(me.id),
            admin: me.is_admin || me.is_owner,
        })
    }

    /// The users named by e-mail (lower-cased) or UUID: from the active-user list where that
    /// is cheaper (see the module), else, and for everyone the list does not have, one by one.
    async fn find_users(
        &self,
        emails: &BTreeSet<String>,
        ids: &BTreeSet<Uuid>,
    ) -> Result<Vec<wire::Employee>, Vec<String>> {
        let mut emails = emails.clone();
        let mut ids = ids.clone();
        let mut found: BTreeMap<Uuid, wire::Employee> = BTreeMap::new();
        let mut take =
            |rows: &[wire::Employee], emails: &mut BTreeSet<String>, ids: &mut BTreeSet<Uuid>| {
                for e in rows {
                    let by_email = e
                        .email
                        .as_ref()
                        .is_some_and(|m| emails.remove(&m.to_lowercase()));
                    if ids.remove(&e.id) || by_email {
                        found.insert(e.id, e.clone());
                    }
                }
            };
        if probe(emails.len() + ids.len()) {
            match self.page(people_page(0, PAGE)).await {
                Ok(first) => {
                    let rows = self.people_rows(&first.rows);
                    take(&rows, &mut emails, &mut ids);
                    let listed = first.listed(0, PAGE);
                    let left = emails.len() + ids.len();
                    if let Some(total) = listed {
                        let size = page_size(first.rows.len(), total);
                        let remaining = pages(total, size).saturating_sub(1);
                        debug!(
                            total,
                            size, remaining, left, "users: the list or direct lookups"
                        );
                        if take_list(remaining, left) {
                            let starts = (1..=remaining).map(|p| p * size as u64);
                            let reqs = starts.map(|s| people_page(s, size)).collect();
                            for page in self.pages(reqs).await {
                                // A page that failed leaves its users to the direct lookups.
                                match page {
                                    Ok(page) => {
                                        let rows = self.people_rows(&page.rows);
                                        take(&rows, &mut emails, &mut ids);
                                    }
                                    Err(e) => debug!(
                                        "a page of the user list failed ({e}); looking its users up directly"
                                    ),
                                }
                            }
                        }
                    }
                }
                Err(e) if self.breaker.cause().is_some() => return Err(vec![e.to_string()]),
                Err(e) => debug!("the user list failed ({e}); looking users up directly"),
            }
        }
        let by_email = emails
            .into_iter()
            .map(|email| async move { (email.clone(), self.user_by_email(&email).await) });
        let by_id = ids.iter().copied().collect::<Vec<_>>();
        let (by_email, (by_id, id_failures)) = tokio::join!(
            stream::iter(by_email)
                .buffer_unordered(self.read_fanout())
                .collect::<Vec<_>>(),
            self.users_by_id(&by_id),
        );
        let mut failed = id_failures;
        for (_, got) in by_email {
            match got {
                Ok(Some(e)) => {
                    found.insert(e.id, e);
                }
                Ok(None) => {}
                Err(e) => failed.push(e),
            }
        }
        found.extend(by_id.into_iter().map(|e| (e.id, e)));
        if failed.is_empty() {
            Ok(found.into_values().collect())
        } else {
            Err(failed)
        }
    }

    /// The users of a page of the people list, kept as learnt.
    fn people_rows(&self, rows: &[Value]) -> Vec<wire::Employee> {
        let people: Vec<wire::Employee> = rows.iter().filter_map(wire::employee).collect();
        self.learn_people(&people);
        people
    }

    /// `GET people/email?email=ADDR`: the user, `None` for a 404, an error otherwise; a 403
    /// makes e-mails unavailable for the run (and is no error).
    async fn user_by_email(&self, email: &str) -> Result<Option<wire::Employee>, String> {
        if self.emails_refused.get().is_some() || self.users_refused.get().is_some() {
            return Ok(None);
        }
        let req = Req::get("people/email").query("email", email);
        let (result, _) = self.call(&req, &CancellationToken::new(), false).await;
        match result {
            Ok(reply) => {
                let e = reply
                    .response()
                    .and_then(wire::employee)
                    .ok_or_else(|| format!("{}: the answer has no user", req.shown()))?;
                if let Some(got) = &e.email
                    && got.to_lowercase() != email
                {
                    return Err(format!(
                        "{}: the portal answered the user with the e-mail address {got:?}",
                        req.shown()
                    ));
                }
                self.learn_people(std::slice::from_ref(&e));
                Ok(Some(e))
            }
            Err(CallError::Api(e)) if e.status == 404 => Ok(None),
            Err(CallError::Api(e)) if e.status == 403 => {
                let why = self.emails_refused.get_or_init(|| {
                    format!(
                        "the portal refused to look users up by e-mail ({}): {} is likely not a DocSpace admin, and DocSpace lets only admins look up other users",
                        self.forbidden(&e, "accounts:read"),
                        self.auth.whose()
                    )
                });
                self.notices.once("emails refused", || {
                    format!("{why}; so users named by e-mail cannot be resolved (name them by ID)")
                });
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// `GET people/{id}` for each of `ids`, concurrently: the users found, and the failures
    /// (404 is "no such user", a 403 makes users unavailable; neither is a failure).
    pub(super) async fn users_by_id(&self, ids: &[Uuid]) -> (Vec<wire::Employee>, Vec<String>) {
        let never = CancellationToken::new();
        let lookups = ids.iter().map(|id| {
            let never = &never;
            async move { self.user_by_id(*id, never).await }
        });
        let got: Vec<_> = stream::iter(lookups)
            .buffer_unordered(self.read_fanout())
            .collect()
            .await;
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for g in got {
            match g {
                Ok(Some(e)) => found.push(e),
                Ok(None) => {}
                Err(e) => failed.push(e),
            }
        }
        found.sort_by_key(|e| e.id);
        (found, failed)
    }

    /// `GET people/{id}`: the user, `None` when the portal has none (404) or refuses to say
    /// (403, which makes users unavailable for the run).
    pub(super) async fn user_by_id(
        &self,
        id: Uuid,
        stop: &CancellationToken,
    ) -> Result<Option<wire::Employee>, String> {
        if self.users_refused.get().is_some() {
            return Ok(None);
        }
        let req = Req::get(format!("people/{id}"));
        let (result, _) = self.call(&req, stop, false).await;
        match result {
            Ok(reply) => {
                let e = reply
                    .response()
                    .and_then(wire::employee)
                    .ok_or_else(|| format!("{}: the answer has no user", req.shown()))?;
                if e.id != id {
                    return Err(format!("{}: the answer is user {}", req.shown(), e.id));
                }
                self.learn_people(std::slice::from_ref(&e));
                Ok(Some(e))
            }
            Err(CallError::Api(e)) if e.status == 404 => {
                self.learn_missing(id);
                Ok(None)
            }
            Err(CallError::Api(e)) if e.status == 403 => {
                let why = self.users_refused.get_or_init(|| {
                    format!(
                        "the portal refused to look users up ({}): {} may not view other users' profiles",
                        self.forbidden(&e, "accounts:read"),
                        self.auth.whose()
                    )
                });
                self.notices.once("users refused", || {
                    format!("{why}; so user IDs are taken unchecked and users named by e-mail cannot be resolved")
                });
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The groups of each name (every name present, 0..n groups each): from the whole group
    /// list where that is cheaper, else one filtered lookup a name.
    async fn find_groups(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<(GroupId, String)>>, Vec<String>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        if probe(names.len()) {
            match self.whole_group_list(names.len()).await {
                Ok(Some(all)) => return Ok(match_names(names, &all)),
                Ok(None) => {}
                Err(e) if self.breaker.cause().is_some() => return Err(vec![e]),
                Err(e) => debug!("the group list failed ({e}); looking names up one by one"),
            }
        }
        let lookups = names.iter().map(|name| async move {
            let found = self.groups_containing(name).await;
            (name.clone(), found)
        });
        let got: Vec<_> = stream::iter(lookups)
            .buffer_unordered(self.read_fanout())
            .collect()
            .await;
        let mut out = BTreeMap::new();
        let mut failed = Vec::new();
        for (name, found) in got {
            match found {
                Ok(rows) => {
                    let one: BTreeSet<String> = std::iter::once(name.clone()).collect();
                    out.extend(match_names(&one, &rows));
                }
                Err(e) => failed.push(e),
            }
        }
        if failed.is_empty() {
            Ok(out)
        } else {
            Err(failed)
        }
    }

    /// Every group, when reading the list is cheaper than `names` lookups by name: its first
    /// page always (to learn how long it is), the rest only if cheaper. `None`: not cheaper,
    /// or the list changed while it was read (its `total` moved or the rows do not add up).
    async fn whole_group_list(&self, names: usize) -> Result<Option<Vec<(Uuid, String)>>, String> {
        let first = self
            .page(group_page(0, PAGE, None))
            .await
            .map_err(|e| e.to_string())?;
        let Some(total) = first.listed(0, PAGE) else {
            return Ok(None);
        };
        let size = page_size(first.rows.len(), total);
        let remaining = pages(total, size).saturating_sub(1);
        debug!(
            total,
            size, remaining, names, "groups: the list or lookups by name"
        );
        if remaining > 0 && !take_list(remaining, names) {
            return Ok(None);
        }
        let reqs = (1..=remaining)
            .map(|p| group_page(p * size as u64, size, None))
            .collect();
        let mut rows: BTreeMap<Uuid, String> = BTreeMap::new();
        let mut totals = vec![first.total];
        let mut all = vec![first];
        for page in self.pages(reqs).await {
            let page = page.map_err(|e| e.to_string())?;
            totals.push(page.total);
            all.push(page);
        }
        for page in &all {
            let groups = wire::groups(&Value::Array(page.rows.clone()))?;
            rows.extend(groups);
        }
        let steady = totals.iter().all(|t| t.is_none_or(|t| t == total));
        if !steady || rows.len() as u64 != total {
            debug!(
                total,
                read = rows.len(),
                "the group list changed while it was read; looking names up one by one"
            );
            return Ok(None);
        }
        Ok(Some(rows.into_iter().collect()))
    }

    /// `GET group?filterValue=NAME`: every group whose name contains `name` (ignoring case),
    /// all pages.
    async fn groups_containing(&self, name: &str) -> Result<Vec<(Uuid, String)>, String> {
        let first = self
            .page(group_page(0, PAGE, Some(name)))
            .await
            .map_err(|e| match &e {
                CallError::Api(a) if a.status == 403 => format!(
                    "{e}: {} may not list groups ({})",
                    self.auth.whose(),
                    self.forbidden(a, "accounts:read")
                ),
                _ => e.to_string(),
            })?;
        let mut rows = wire::groups(&Value::Array(first.rows.clone()))?;
        if let Some(total) = first.listed(0, PAGE) {
            let size = page_size(first.rows.len(), total);
            let remaining = pages(total, size).saturating_sub(1);
            let reqs = (1..=remaining)
                .map(|p| group_page(p * size as u64, size, Some(name)))
                .collect();
            for page in self.pages(reqs).await {
                let page = page.map_err(|e| e.to_string())?;
                rows.extend(wire::groups(&Value::Array(page.rows))?);
            }
        }
        Ok(rows)
    }

    /// One page of a list.
    async fn page(&self, req: Req) -> Result<Page, CallError> {
        let (result, _) = self.call(&req, &CancellationToken::new(), false).await;
        match result? {
            Reply::Envelope(wire::Envelope {
                response: Value::Array(rows),
                total,
            }) => Ok(Page { rows, total }),
            _ => Err(CallError::Transport(TransportError {
                request: req.shown(),
                status: Some(200),
                detail: "the answer is not a list".into(),
                kind: TransportKind::BadAnswer,
            })),
        }
    }

    /// Pages, concurrently, in order.
    async fn pages(&self, reqs: Vec<Req>) -> Vec<Result<Page, CallError>> {
        stream::iter(reqs.into_iter().map(|r| self.page(r)))
            .buffered(self.read_fanout())
            .collect()
            .await
    }

    fn read_fanout(&self) -> usize {
        self.options.concurrent_reads.clamp(1, MAX_CONCURRENT_READS)
    }
}

/// `GET people?count=…&startIndex=…`: a page of the active users.
fn people_page(start: u64, count: usize) -> Req {
    Req::get("people")
        .query("count", count)
        .query("startIndex", start)
}

/// `GET group?count=…&startIndex=…[&filterValue=…]`: a page of the groups (by title, the
/// server's default order).
fn group_page(start: u64, count: usize, filter: Option<&str>) -> Req {
    let req = Req::get("group")
        .query("count", count)
        .query("startIndex", start);
    match filter {
        Some(f) => req.query("filterValue", f),
        None => req,
    }
}

/// For each name, the groups of `rows` whose name equals it ignoring case (every name
/// present, sorted, each group once).
pub fn match_names(
    names: &BTreeSet<String>,
    rows: &[(Uuid, String)],
) -> BTreeMap<String, Vec<(GroupId, String)>> {
    names
        .iter()
        .map(|name| {
            let wanted = name.to_lowercase();
            let mut found: Vec<(GroupId, String)> = rows
                .iter()
                .filter(|(_, n)| n.to_lowercase() == wanted)
                .map(|(id, n)| (GroupId::Uuid(*id), n.clone()))
                .collect();
            found.sort();
            found.dedup();
            (name.clone(), found)
        })
        .collect()
}
