//! The ONLYOFFICE DocSpace provider (reference: `docspace-api.md`). Reads a group with
//! `GET /api/2.0/group/{id}?includeMembers=true` (one request a group): its manager is the
//! group's `Role::Owner`, everyone else a member; DocSpace has no invitations, join requests,
//! moderators or departments. Looks people and groups up (`lookup`, see there for the request
//! bound). Writes per group, in this order: the manager (`PUT group/{id}/manager`), then one
//! `PUT group/{id}/members` with every added user, then one `DELETE group/{id}/members` (a JSON
//! body) with every removed user.
//!
//! Verification: every write answers "200, here is the group"; each change is checked against
//! the group it returned, so a user DocSpace skipped silently (unknown, terminated, a guest) is
//! reported not done with the reason, looked up from what the run learned (or one
//! `GET people/{id}`). A change with no usable answer is settled by reading its group again:
//! held → confirmed; not held → as answered; unreadable and possibly made → unknown.
//!
//! The manager is never removed: DocSpace would remove a manager like anyone else and leave the
//! group without one (§6). A removal of the group's manager as last read (by `fetch`, or in
//! the answer to this run's own write; a group never read is read first) is not sent, and a
//! group's changes about its old manager are sent only once its manager change is confirmed.
//!
//! Requests: at most `concurrent_reads` GETs (≤ 50) and `concurrent_writes` other requests
//! (≤ 15) in flight, the portal's per-user limits (§5); writes for different groups run in
//! parallel, a group's writes in order. Retries: each request gets `max_attempts` attempts in
//! all, whatever failed (no answer, 5xx, 429); a 429 waits its `Retry-After` (else its
//! `X-RateLimit-Reset`, else a doubling wait) and holds every other request for as long; no
//! wait is longer than `max_wait` (a portal asking for more is given up on at once). The three
//! writes are idempotent on the server, so a write whose answer was lost is sent again.
//!
//! The breaker: credentials the portal refuses (401), a portal that does not answer, answers
//! only with gateway errors (502–504) or keeps refusing for its rate limit fail the run once
//! (`FetchError::RunWide`): every other request, queued, waiting or retrying, fails at once
//! with the same cause. Cancellation: once `stop` is cancelled nothing new is sent and every
//! wait ends; unsent changes are `NotStarted`; the settling re-read still runs, one attempt
//! a group, within one timeout.
//!
//! Secrets: the API key or token lives in a `Secret` and only ever goes into the
//! `Authorization` header (marked sensitive); logs name the host, never the credentials, and
//! every answer is scrubbed of the secret before anything is read from it. Redirects are not
//! followed.
//!
//! Files: `http` (one request and its retries, the breaker, the address and credential
//! checks), `wire` (the JSON, pure), `lookup`, `execute` (the writes and settling), `write`
//! (what the writes are and how answers are judged, pure). No other module knows DocSpace's
//! wire format, and nothing here is shared with the DocSpace sandbox.

mod execute;
mod http;
pub mod list;
pub mod lookup;
pub mod wire;
pub mod write;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use reqwest::header::HeaderValue;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::model::{CurrentState, GroupId, Person, UserId, Uuid};
pub use crate::provider::bitrix24::Counters;
pub use crate::provider::secret::Secret;
use crate::provider::{CancellationToken, FetchError, OnProgress};
pub use http::{ApiError, CallError, TransportError, TransportKind};
use http::{Breaker, CONNECT_TIMEOUT, Notices, Reply, Req, authorization, base_url_of};

/// The portal's limit on concurrent GET requests per user (§5).
pub const MAX_CONCURRENT_READS: usize = 50;
/// The portal's limit on concurrent requests other than GET per user (§5).
pub const MAX_CONCURRENT_WRITES: usize = 15;

/// The shortest secret accepted: answers are scrubbed of it, so it must not be ordinary text.
/// (API keys are 67 characters, personal access tokens longer.)
pub const MIN_SECRET_LEN: usize = 16;

/// How the client authenticates. Both are sent as `Authorization: Bearer …`: an API key must
/// be (DocSpace reads any other header as a session token, §3), and a personal access token
/// may be.
#[derive(Clone, Debug)]
pub enum Auth {
    /// An API key, `sk-` and 64 hex digits.
    ApiKey(Secret),
    /// A personal access token (`POST /api/2.0/authentication`'s `token`).
    Token(Secret),
}

impl Auth {
    fn secret(&self) -> &Secret {
        match self {
            Auth::ApiKey(s) | Auth::Token(s) => s,
        }
    }

    /// `the API key`, `the personal access token`.
    fn what(&self) -> &'static str {
        match self {
            Auth::ApiKey(_) => "the API key",
            Auth::Token(_) => "the personal access token",
        }
    }

    /// `the API key's user`, …
    fn whose(&self) -> &'static str {
        match self {
            Auth::ApiKey(_) => "the API key's user",
            Auth::Token(_) => "the token's user",
        }
    }
}

/// How the client paces and retries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per-request timeout: connecting (at most 10 s of it), sending and the whole answer.
    pub timeout: Duration,
    /// Attempts per request in all, the first included, whatever the failure (no answer,
    /// 5xx, 429). When a request the portal never answered (or answered only with gateway
    /// errors or 429s) runs out of them, the breaker trips.
    pub max_attempts: u32,
    /// First retry delay after a failure; doubles per attempt (±25 % jitter), up to
    /// `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The first wait after a 429 that says nothing of when to come back; doubles per attempt
    /// (no jitter), up to `max_wait`.
    pub rate_wait: Duration,
    /// The longest wait ever: a 429 asking for more (the daily limit) ends the run instead.
    pub max_wait: Duration,
    /// GET requests in flight at once, 1 to 50.
    pub concurrent_reads: usize,
    /// Other requests in flight at once, 1 to 15.
    pub concurrent_writes: usize,
    /// Where the credentials came from (an environment variable, a flag), to name in the
    /// message when the portal refuses them.
    pub credentials_source: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            rate_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(600),
            concurrent_reads: 10,
            concurrent_writes: 5,
            credentials_source: None,
        }
    }
}

/// Why a client could not be made. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("invalid DocSpace address {shown}: {why}")]
    Url { shown: String, why: &'static str },
    #[error("invalid DocSpace credentials: {0}")]
    Credentials(String),
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
}

/// What the run learned of the portal: people (from lookups and group members), users the
/// portal does not have, and each group as last read (by `fetch`, or in a write's answer).
#[derive(Debug, Default)]
struct Known {
    people: BTreeMap<Uuid, wire::Employee>,
    missing: BTreeSet<Uuid>,
    groups: BTreeMap<Uuid, wire::Group>,
}

/// An ONLYOFFICE DocSpace portal, reached with an API key or a personal access token.
pub struct Client {
    http: reqwest::Client,
    /// `https://host[:port][/prefix]/api/2.0/`.
    base: reqwest::Url,
    /// The portal's host, for logs.
    host: String,
    /// `Bearer …`, marked sensitive.
    authorization: HeaderValue,
    auth: Auth,
    options: Options,
    reads: Semaphore,
    writes: Semaphore,
    /// No request is sent before this (a 429 asked every request to wait).
    hold: Mutex<Option<Instant>>,
    /// The portal's request window, once a 429 told its size, and this run's sends in it.
    window: Mutex<http::Window>,
    breaker: Breaker,
    notices: Notices,
    requests: AtomicU64,
    retries: AtomicU64,
    known: Mutex<Known>,
    /// Set once the portal refused to look users up by e-mail (403): why.
    emails_refused: OnceLock<String>,
    /// Set once the portal refused to look users up by ID (403): why.
    users_refused: OnceLock<String>,
}

impl Client {
    /// A client for the portal at `base_url` (`https://docs.example.com`, a path prefix
    /// allowed; `http://` only for loopback, e.g. the sandbox, since it would carry the
    /// credentials in clear text). Nothing is connected to.
    pub fn new(base_url: &str, auth: Auth, options: Options) -> Result<Client, ClientError> {
        let (base, host) = base_url_of(base_url)?;
        let authorization = authorization(&auth)?;
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(options.timeout))
            // A portal that moved answers 3xx; following it could send the key elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Http(e.without_url().to_string()))?;
        Ok(Client {
            http,
            base,
            host,
            authorization,
            auth,
            reads: Semaphore::new(options.concurrent_reads.clamp(1, MAX_CONCURRENT_READS)),
            writes: Semaphore::new(options.concurrent_writes.clamp(1, MAX_CONCURRENT_WRITES)),
            options,
            hold: Mutex::new(None),
            window: Mutex::new(http::Window::default()),
            breaker: Breaker::default(),
            notices: Notices::default(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            known: Mutex::new(Known::default()),
            emails_refused: OnceLock::new(),
            users_refused: OnceLock::new(),
        })
    }

    /// Requests sent (retries included) and retries made so far; never any refreshes.
    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            refreshes: 0,
        }
    }

    /// The cause that tripped the run-wide breaker, if one did.
    pub fn unreachable(&self) -> Option<&str> {
        self.breaker.cause()
    }

    /// What the run could not see on the portal, one line each: users the portal would not
    /// look up by e-mail or at all (403). Empty when nothing was missed.
    pub fn read_warnings(&self) -> Vec<String> {
        let users = self.users_refused.get().map(|why| {
            format!("{why}; so user IDs were taken unchecked and users named by e-mail could not be resolved")
        });
        let emails = self
            .emails_refused
            .get()
            .filter(|_| users.is_none())
            .map(|why| format!("{why}; so users named by e-mail could not be resolved"));
        users.into_iter().chain(emails).collect()
    }

    // -----------------------------------------------------------------------------------------
    // What the run learned.

    /// Keep what a group's answer tells: the group as last read, and its people.
    fn learn_group(&self, group: &wire::Group) {
        let Some(id) = group.id else { return };
        let mut known = self.known.lock().expect("known lock");
        for e in group.manager.iter().chain(group.members.iter().flatten()) {
            if e.profile {
                known.missing.remove(&e.id);
                known.people.insert(e.id, e.clone());
            }
        }
        known.groups.insert(id, group.clone());
    }

    fn learn_people(&self, people: &[wire::Employee]) {
        let mut known = self.known.lock().expect("known lock");
        for e in people {
            known.missing.remove(&e.id);
            known.people.insert(e.id, e.clone());
        }
    }

    fn learn_missing(&self, user: Uuid) {
        let mut known = self.known.lock().expect("known lock");
        known.people.remove(&user);
        known.missing.insert(user);
    }

    /// Whether the portal said it has no such user (404).
    fn is_missing(&self, user: Uuid) -> bool {
        self.known
            .lock()
            .expect("known lock")
            .missing
            .contains(&user)
    }

    fn known_group(&self, id: Uuid) -> Option<wire::Group> {
        self.known
            .lock()
            .expect("known lock")
            .groups
            .get(&id)
            .cloned()
    }

    // -----------------------------------------------------------------------------------------
    // Reading groups.

    /// Read the members of `groups`. Every group that cannot be read is reported, not just the
    /// first; a failure of the whole run (the portal unreachable, the credentials refused) is
    /// reported once.
    pub async fn fetch(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
    ) -> Result<CurrentState, FetchError> {
        let (state, failed) = self
            .read(groups, on_progress, &CancellationToken::new(), false)
            .await;
        if failed.is_empty() {
            Ok(state)
        } else if let Some(cause) = self.breaker.cause() {
            Err(FetchError::RunWide {
                cause: cause.to_owned(),
                unread: failed.len(),
            })
        } else {
            Err(FetchError::Groups(failed))
        }
    }

    /// Read every group that can be read, and each group that cannot with why ("no such group
    /// on the DocSpace portal"). Fails as a whole only when the run cannot go on (the breaker).
    pub async fn fetch_each(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
    ) -> Result<(CurrentState, Vec<(GroupId, String)>), FetchError> {
        let (state, failed) = self
            .read(groups, on_progress, &CancellationToken::new(), false)
            .await;
        if let Some(cause) = self.breaker.cause()
            && !failed.is_empty()
        {
            return Err(FetchError::RunWide {
                cause: cause.to_owned(),
                unread: failed.len(),
            });
        }
        Ok((state, failed))
    }

    /// Read `groups`, up to `concurrent_reads` at once: those read, and each other with why.
    async fn read(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
        hurry: bool,
    ) -> (CurrentState, Vec<(GroupId, String)>) {
        let mut ids = groups.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let reads = ids.iter().map(|g| async move {
            let read = self
                .read_group(*g, stop, hurry)
                .await
                .and_then(|group| group.current());
            on_progress(1);
            (*g, read)
        });
        let results: Vec<_> = stream::iter(reads)
            .buffer_unordered(self.options.concurrent_reads.clamp(1, MAX_CONCURRENT_READS))
            .collect()
            .await;
        let mut state = CurrentState::default();
        let mut failed = Vec::new();
        for (g, read) in results {
            match read {
                Ok(group) => {
                    state.groups.insert(g, group);
                }
                Err(e) => failed.push((g, e)),
            }
        }
        failed.sort_by_key(|(g, _)| *g);
        (state, failed)
    }

    /// `GET group/{id}?includeMembers=true`, kept as the group's last read.
    async fn read_group(
        &self,
        group: GroupId,
        stop: &CancellationToken,
        hurry: bool,
    ) -> Result<wire::Group, String> {
        let Some(id) = group.uuid() else {
            return Err(format!(
                "{group} is not a DocSpace group ID (DocSpace IDs are UUIDs)"
            ));
        };
        let req = Req::get(format!("group/{id}")).query("includeMembers", "true");
        let (result, _) = self.call(&req, stop, hurry).await;
        match result {
            Ok(reply) => {
                let group = self.group_in(&req, &reply, id)?;
                self.learn_group(&group);
                Ok(group)
            }
            Err(CallError::Api(e)) if e.status == 404 && e.message.is_some() => {
                Err("no such group on the DocSpace portal".into())
            }
            // Not the API's own answer: likely not the portal's address at all.
            Err(CallError::Api(e)) if e.status == 404 => Err(format!(
                "no such group on the DocSpace portal ({e}, without the API's error: is {} the portal's address?)",
                self.host
            )),
            Err(CallError::Api(e)) if e.status == 403 => Err(format!(
                "{} may not read groups: {}",
                self.auth.whose(),
                self.forbidden(&e, "accounts:read")
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The group an answer carries, checked to be group `id`.
    fn group_in(&self, req: &Req, reply: &Reply, id: Uuid) -> Result<wire::Group, String> {
        let response = reply
            .response()
            .ok_or_else(|| format!("{}: the answer has no group", req.shown()))?;
        let group = wire::group(response).map_err(|e| format!("{}: {e}", req.shown()))?;
        match group.id {
            Some(got) if got != id => Err(format!(
                "{}: the answer is group {got}, not {id}",
                req.shown()
            )),
            _ => Ok(wire::Group {
                id: Some(id),
                ..group
            }),
        }
    }

    /// What a 403 says: the portal's message, or for an empty one the likely missing scope.
    fn forbidden(&self, e: &ApiError, scope: &str) -> String {
        match (&e.message, &self.auth) {
            (Some(m), _) => format!("{m} (HTTP 403)"),
            (None, Auth::ApiKey(_)) => {
                format!("HTTP 403 without a message (likely the API key lacks the `{scope}` scope)")
            }
            (None, Auth::Token(_)) => "HTTP 403 without a message".into(),
        }
    }

    /// The users with these IDs that the portal has (for showing people the file did not name):
    /// from what the run learned (every member of every group read), else `GET people/{id}`
    /// each. When the portal refuses to look users up (403), nobody more is found.
    pub async fn people(&self, ids: &[UserId]) -> Result<Vec<Person>, FetchError> {
        let wanted: BTreeSet<Uuid> = ids.iter().filter_map(|u| u.uuid()).collect();
        let (mut found, ask): (Vec<Person>, Vec<Uuid>) = {
            let known = self.known.lock().expect("known lock");
            let found = wanted
                .iter()
                .filter_map(|id| known.people.get(id).map(wire::Employee::person))
                .collect();
            let ask = wanted
                .iter()
                .filter(|id| !known.people.contains_key(id) && !known.missing.contains(id))
                .copied()
                .collect();
            (found, ask)
        };
        if ask.is_empty() || self.users_refused.get().is_some() {
            return Ok(found);
        }
        let (people, failed) = self.users_by_id(&ask).await;
        if !failed.is_empty() {
            return Err(self.lookup_failed(failed));
        }
        found.extend(people.iter().map(wire::Employee::person));
        found.sort_by_key(|p| p.id);
        Ok(found)
    }

    /// The error for failed lookups: the run-wide cause once if the breaker tripped, else
    /// every failed request.
    fn lookup_failed(&self, failed: Vec<String>) -> FetchError {
        match self.breaker.cause() {
            Some(cause) => FetchError::Lookup(vec![cause.to_owned()]),
            None => FetchError::Lookup(failed),
        }
    }
}
