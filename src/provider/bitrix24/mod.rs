//! The Bitrix24 provider: reads groups with `socialnetwork.api.workgroup.get` (members, roles,
//! pending invitations and requests, linked departments, name; one command per group), or with
//! `sonet_group.user.get` for the rest of the run once the portal refuses that method (no
//! `socialnetwork` scope, an old portal); looks people and groups up (`lookup`); and writes
//! with `sonet_group.user.invite/add/update/delete` and `sonet_group.setowner`, always through
//! `batch` (up to 50 commands a request).
//!
//! Writes are coalesced: per group one `invite` with every invited user (and the group's
//! message), one `add` with every new user, one `update` per target role (accepted requests
//! included), one `delete` with every removed user (the methods take arrays of `USER_ID`).
//! Owner changes go first, as a phase of their own, and a group's changes about its old owner
//! wait for its owner change to be confirmed. Each command's result array is checked user by
//! user, so a user the portal silently skipped is reported as not done rather than counted as
//! success.
//!
//! Pacing: requests pass a model of the portal's leaky bucket (`limits::Pacer`), which starts
//! from the configured profile and learns from 503 `QUERY_LIMIT_EXCEEDED` (creating a model when
//! there was none, slowing to the drain rate it observes), and the per-method operating-time
//! tracker. Up to `concurrency` batches are in flight, a group's commands always in order.
//!
//! Retries, each kind on its own allowance per chunk: refusals for the request limit (paced by
//! the bucket, many allowed), throttling (429, waits covering the 10-minute window), server
//! errors (`max_attempts`), and no answer at all (timeout, refused, reset, DNS:
//! `no_answer_attempts`). A request that gives up for want of an answer — or for a run-wide
//! refusal such as a wrong webhook — trips a breaker: every other request, queued, waiting or
//! retrying, fails at once with the same cause. Retries are announced on stderr (`warn`), at
//! most one line per cause per 5 s; 503 pacing stays quiet unless it teaches a slower rate.
//!
//! Outcomes: every attempt whose request may have reached the portal without a trustworthy
//! answer (lost, 5xx, timeout, cut off) makes the commands it carried uncertain. Every change
//! not confirmed by an answer is settled by reading its group again (`settle`): held →
//! confirmed; not held → not done or failed as answered; unreadable and uncertain → unknown.
//! Changes never sent because the run was interrupted are not started. Once `stop` is
//! cancelled no batch is sent and every wait ends at once; the re-read still runs (a read, one
//! attempt per request, bounded by the timeout).
//!
//! Errors keep "the API said no" (`ApiError`: method, code, description, HTTP status) apart from
//! "the HTTP call failed" (`TransportError`). The webhook code never appears in either: every
//! answer is scrubbed as text and again after JSON decoding.
//!
//! Authentication (`Auth`): a webhook (the code is in the URL) or OAuth (`oauth`: the access
//! token in the body's `auth` field, refreshed once, for all requests in flight, after a 401
//! `expired_token`, and one run at a time across runs sharing a token file, under its lock).
//! With OAuth every token and the client secret are scrubbed like the code.
//!
//! What a run could not see (the fallback read; users, without the `user` scope) is kept for
//! `read_warnings`, so the plan can say so; `fetch_each` reads every group it can and names
//! each one it cannot.

pub mod auth;
pub mod limits;
pub mod list;
pub mod lookup;
pub mod oauth;
pub mod structure;
pub mod webhook;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::model::{CurrentGroup, CurrentState, GroupId, OpStatus, Role, UserId};
use crate::plan::Change;
use crate::provider::{CancellationToken, FetchError, OnProgress};
pub use auth::{Auth, AuthError};
pub use limits::RateProfile;
use limits::{Learned, Operating, Pacer};
pub use oauth::{OAuth, OAuthConfig, OAuthError};
pub use webhook::{Secret, Webhook, WebhookError, scrub_webhook_urls};
use wire::Command;

/// Bitrix24's limit on commands per `batch`.
pub const BATCH_MAX: usize = 50;

/// The portal answered with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method}: {} ({description}){}", if code.is_empty() { "error" } else { code }, status.map(|s| format!(" [HTTP {s}]")).unwrap_or_default())]
pub struct ApiError {
    pub method: String,
    /// The `error` field; often empty for `sonet_group.*` methods.
    pub code: String,
    pub description: String,
    /// The HTTP status, for top-level errors (`None` inside a batch's `result_error`).
    pub status: Option<u16>,
}

/// The HTTP exchange itself failed: no connection, no answer in time, or an answer that is not
/// the documented JSON envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method}: {detail}")]
pub struct TransportError {
    pub method: String,
    pub status: Option<u16>,
    pub detail: String,
    pub kind: TransportKind,
}

/// How an HTTP exchange failed, which decides whether the portal may have acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection could be made (refused, unreachable, DNS, TLS): the request was not sent.
    Connect,
    /// No answer within the timeout: the portal may have acted.
    Timeout,
    /// The connection dropped before an answer (reset, closed): the portal may have acted.
    NoAnswer,
    /// An answer began but was cut off (the body, or its JSON, ends early).
    Truncated,
    /// A complete answer that is not the documented envelope (an HTML page, a redirect, a 200
    /// without `result`).
    BadAnswer,
    /// Not sent: an earlier request found the portal unreachable (the breaker).
    NotSent,
    /// Not sent: the run was interrupted.
    Interrupted,
}

/// A reqwest error as text: its whole source chain (the cause is usually at the end:
/// "Connection refused"), without the URL.
fn describe_reqwest(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// `30 s`, `1.5 s`, `200 ms`: for messages.
fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl CallError {
    /// The portal is throttling this method (429 `OPERATION_TIME_LIMIT`): wait for its
    /// operating-time budget to reset.
    fn is_throttle(&self) -> bool {
        matches!(self, CallError::Api(e) if e.code == "OPERATION_TIME_LIMIT")
    }

    /// The request limit (503 `QUERY_LIMIT_EXCEEDED`): the portal's bucket is full.
    fn is_rate_limit(&self) -> bool {
        matches!(self, CallError::Api(e) if e.code == "QUERY_LIMIT_EXCEEDED")
    }

    /// Worth another try soon: the request limit (503), server errors (500, 502–504), no answer
    /// (timeouts, dropped or refused connections) and answers cut off. Never answers that mean
    /// "no" (auth, permission, validation), redirects, or a complete answer that is not the
    /// documented JSON.
    fn is_transient(&self) -> bool {
        match self {
            CallError::Api(e) => {
                e.code == "QUERY_LIMIT_EXCEEDED" || matches!(e.status, Some(500 | 502..=504))
            }
            CallError::Transport(e) => match e.kind {
                TransportKind::Connect
                | TransportKind::Timeout
                | TransportKind::NoAnswer
                | TransportKind::Truncated => true,
                TransportKind::BadAnswer => e.status.is_some_and(|s| s == 429 || s >= 500),
                TransportKind::NotSent | TransportKind::Interrupted => false,
            },
        }
    }

    /// The portal did not answer at all: worth only `no_answer_attempts`, then the breaker.
    fn is_no_answer(&self) -> bool {
        matches!(self, CallError::Transport(e) if matches!(e.kind, TransportKind::Connect | TransportKind::Timeout | TransportKind::NoAnswer))
    }

    /// The request may have reached the portal and been carried out, with no trustworthy answer
    /// saying so: a 5xx other than the documented refusals, no answer in time, a dropped
    /// connection, an answer cut off or not the envelope.
    fn may_have_acted(&self) -> bool {
        match self {
            CallError::Api(e) => {
                e.status.is_some_and(|s| s >= 500)
                    && !matches!(e.code.as_str(), "QUERY_LIMIT_EXCEEDED" | "OVERLOAD_LIMIT")
            }
            CallError::Transport(e) => matches!(
                e.kind,
                TransportKind::Timeout
                    | TransportKind::NoAnswer
                    | TransportKind::Truncated
                    | TransportKind::BadAnswer
            ),
        }
    }

    /// A refusal that holds for every request of the run (a wrong or revoked webhook, a deleted
    /// portal): no point sending anything else.
    fn is_run_wide(&self) -> bool {
        matches!(self, CallError::Api(e) if e.status == Some(401)
            || (e.status.is_some() && matches!(e.code.as_str(), "PORTAL_DELETED" | "INVALID_CREDENTIALS" | "ACCESS_DENIED")))
    }

    fn is_interrupted(&self) -> bool {
        matches!(self, CallError::Transport(e) if e.kind == TransportKind::Interrupted)
    }

    /// The key that rate-limits retry notices: one line per cause per `NOTICE_EVERY`.
    fn notice_key(&self) -> &'static str {
        match self {
            CallError::Api(_) => "server",
            CallError::Transport(e) => match e.kind {
                TransportKind::Connect => "connect",
                TransportKind::Timeout => "timeout",
                TransportKind::NoAnswer => "dropped",
                _ => "answer",
            },
        }
    }
}

/// A command that failed inside a batch with a server error (`result_error`
/// `INTERNAL_SERVER_ERROR`: an exception while it ran): worth sending again, like a whole
/// request answered 500; it may have run partly, so its changes are uncertain until settled.
fn is_server_error(e: &ApiError) -> bool {
    matches!(
        e.code.as_str(),
        "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER"
    )
}

/// A command deferred inside a batch (`result_error`), to be sent again.
fn is_deferral(e: &ApiError) -> bool {
    matches!(
        e.code.as_str(),
        "QUERY_LIMIT_EXCEEDED" | "OPERATION_TIME_LIMIT"
    )
}

/// How the client paces and retries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Attempts per chunk for server errors (5xx), the first included.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with ±25 % jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Per-request timeout (`--timeout`): connecting (at most 10 s of it), sending and the
    /// whole answer.
    pub timeout: Duration,
    /// Attempts per chunk when the portal does not answer (timeout, connection refused or
    /// reset, DNS), the first included. When they are used up the breaker trips and the run
    /// fails: with the defaults, an unresponsive portal is given up on after about
    /// 3 × 30 s + 1.5 s of backoff.
    pub no_answer_attempts: u32,
    /// The portal's request-intensity limit, mirrored client-side (`None`: no pacing until the
    /// portal refuses a request for its limit; then the client learns one).
    pub rate: Option<RateProfile>,
    /// Whether a 503 `QUERY_LIMIT_EXCEEDED` teaches the pacer the portal's limit (always, in
    /// roster; the soak turns it off because its 503s are random faults, not a bucket).
    pub learn_rate: bool,
    /// Batch requests in flight at once (still never more than the bucket allows).
    pub concurrency: usize,
    /// The portal's operating-time budget per method per 10 minutes, and how close to it a
    /// method may get before roster pauses it until `operating_reset_at`.
    pub operating_limit_s: f64,
    pub operating_margin_s: f64,
    /// After a 429 `OPERATION_TIME_LIMIT` with no known reset time, the first wait (doubling,
    /// capped at two minutes). The budget's window is 10 minutes, so up to 12 such waits are
    /// allowed, separately from `max_attempts`.
    pub throttle_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            timeout: Duration::from_secs(30),
            no_answer_attempts: 3,
            rate: Some(RateProfile::CLOUD),
            learn_rate: true,
            concurrency: 4,
            operating_limit_s: 480.0,
            operating_margin_s: 10.0,
            throttle_wait: Duration::from_secs(10),
        }
    }
}

/// What the client did, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests and batch commands sent again after a transient failure (or with a refreshed
    /// OAuth token).
    pub retries: u64,
    /// OAuth refresh requests sent to the OAuth server (not counted in `requests`, which go to
    /// the portal); 0 with a webhook.
    pub refreshes: u64,
}

/// A Bitrix24 portal reached through an incoming webhook or with OAuth.
pub struct Client {
    http: reqwest::Client,
    auth: Auth,
    options: Options,
    pacer: Pacer,
    operating: Operating,
    breaker: Breaker,
    notices: Notices,
    requests: AtomicU64,
    retries: AtomicU64,
    /// Whole requests refused with 503 `QUERY_LIMIT_EXCEEDED` since the portal last accepted
    /// one: a portal that refuses everything is down for us, not just strict.
    refused_in_a_row: std::sync::atomic::AtomicU32,
    /// Set once the portal refused `socialnetwork.api.workgroup.get` (no `socialnetwork` scope,
    /// or a portal without the method): every read of the run uses `sonet_group.user.get`.
    legacy_read: std::sync::atomic::AtomicBool,
    /// The error code of that refusal, for the warning.
    legacy_code: OnceLock<String>,
    /// Set once the portal refused the user methods as methods (no `user` scope): why. Users
    /// are not looked up again for the rest of the run.
    users_refused: OnceLock<String>,
    /// Set once the portal answered an `@EMAIL` lookup without applying the filter (a
    /// webhook or token with only `user_brief`): why. E-mails are not looked up again.
    emails_ignored: OnceLock<String>,
}

/// Refusals in a row (503 `QUERY_LIMIT_EXCEEDED`, nothing accepted in between) after which the
/// run gives up on the portal: at the pacer's slowest, about 80 s of waiting; a strict portal
/// that the pacer has learned refuses a handful at most.
const REFUSALS_TO_GIVE_UP: u32 = 40;

/// The run-wide breaker: once one request has given up because the portal did not answer (or
/// refused the webhook), every other request fails at once with that cause.
#[derive(Debug, Default)]
struct Breaker {
    tripped: CancellationToken,
    cause: OnceLock<String>,
    /// What a change's outcome says instead of a long `cause` it repeats, once the report
    /// has shown the whole of it (set by `trip_short`).
    short: OnceLock<String>,
}

/// The short form of a failed OAuth refresh, or of a token the portal refuses, in every
/// outcome after the first that names the cause.
const OAUTH_REFRESH_FAILED: &str = "the OAuth refresh failed (see above)";
const OAUTH_TOKEN_REFUSED: &str = "the portal refused the OAuth token (see above)";

impl Breaker {
    fn trip(&self, cause: String) {
        if self.cause.set(cause).is_ok() {
            debug!(cause = self.cause(), "breaker tripped");
        }
        self.tripped.cancel();
    }

    /// `trip`, with the form that outcomes after the first show instead of `cause`.
    fn trip_short(&self, cause: String, short: &str) {
        if self.cause.get().is_none() {
            let _ = self.short.set(short.to_owned());
        }
        self.trip(cause);
    }

    /// Outcomes (in report order) with the tripping cause shown whole once: the first
    /// outcome whose error includes it keeps it; in every later one a failure becomes the
    /// short form and an unknown outcome names the short form in place of the cause. Only
    /// for causes tripped with a short form; other outcomes are untouched.
    fn shorten(&self, mut statuses: Vec<OpStatus>) -> Vec<OpStatus> {
        let (Some(cause), Some(short)) = (self.cause.get(), self.short.get()) else {
            return statuses;
        };
        let mut shown = false;
        for status in &mut statuses {
            match status {
                OpStatus::Failed { error } if error.contains(cause.as_str()) => {
                    if shown {
                        *error = short.clone();
                    }
                    shown = true;
                }
                OpStatus::Unknown { error } if error.contains(cause.as_str()) => {
                    if shown {
                        *error = error.replace(cause.as_str(), short);
                    }
                    shown = true;
                }
                _ => {}
            }
        }
        statuses
    }

    fn cause(&self) -> Option<&str> {
        self.cause.get().map(String::as_str)
    }
}

/// No more than one retry line per cause per this long at the default verbosity.
const NOTICE_EVERY: Duration = Duration::from_secs(5);

/// Rate-limited `warn!` lines, keyed by cause.
#[derive(Debug, Default)]
struct Notices {
    last: Mutex<BTreeMap<&'static str, Instant>>,
    /// Keys of the lines said once for the whole run (`once`).
    said: Mutex<BTreeSet<&'static str>>,
}

impl Notices {
    /// `warn!` a line the first time `key` comes up in the run, never again.
    fn once(&self, key: &'static str, line: impl FnOnce() -> String) {
        if self.said.lock().expect("notices lock").insert(key) {
            warn!("{}", line());
        }
    }

    fn warn(&self, key: &'static str, line: impl FnOnce() -> String) {
        let now = Instant::now();
        let due = {
            let mut last = self.last.lock().expect("notices lock");
            match last.get(key) {
                Some(t) if now.duration_since(*t) < NOTICE_EVERY => false,
                _ => {
                    last.insert(key, now);
                    true
                }
            }
        };
        let line = line();
        if due {
            warn!("{line}");
        } else {
            info!("{line}");
        }
    }
}

/// The outcome of one command inside a batch.
type CommandResult = Result<Value, ApiError>;

/// What one unit of work (a chunk of commands) may still spend on retries, per kind: server
/// errors (up to `max_attempts - 1`), no answer (up to `no_answer_attempts - 1`), throttling
/// waits (up to `MAX_THROTTLED`) and request-limit refusals (up to `MAX_LIMITED`), shared by
/// the re-sends of deferred commands and the retries of whole requests. In a `hurry` (the
/// re-read after an interrupt) only request-limit refusals are retried.
#[derive(Debug, Default)]
struct Budget {
    /// Attempts that timed out: the portal may still be carrying them out.
    timeouts: u32,
    retries: u32,
    no_answer: u32,
    throttled: u32,
    limited: u32,
    hurry: bool,
}

/// A list answer's `result_next` and `result_total`.
#[derive(Debug, Clone, Copy, Default)]
struct Paging {
    next: Option<u64>,
    total: Option<u64>,
}

/// What became of one command: every answer it got, in order (more than one when it was sent
/// again), and what is known beyond them.
#[derive(Debug, Clone, Default)]
struct Answers {
    got: Vec<Result<Value, String>>,
    /// Why the portal may have carried it out without saying so: the first attempt that may
    /// have reached the portal and got no trustworthy answer.
    uncertain: Option<String>,
    /// An attempt timed out: the portal may still be carrying it out after we stop waiting
    /// (it cuts requests only at 60 s), so not seeing it when reading again proves nothing.
    still_running: bool,
    /// The portal may have run it: some attempt got its own answer, or is uncertain.
    executed: bool,
    /// The run was interrupted before it got a final answer.
    interrupted: bool,
    /// `result_next` of the last successful answer: a list has more pages from there.
    next: Option<u64>,
    /// `result_total` of the last successful answer: how many rows the list has in all.
    total: Option<u64>,
    /// The `error` code of the last answer that was the portal's own error for this command
    /// (`result_error`), to tell a method the portal refuses from a transport failure.
    code: Option<String>,
    /// That error's description (`sonet_group.*` methods often say everything there).
    description: Option<String>,
}

/// The length of the portal's operating-time window; no budget wait is longer.
const OPERATING_WINDOW: Duration = Duration::from_secs(600);

/// Throttling answers (429) tolerated per request or chunk: with waits doubling to two minutes
/// they cover the portal's ten-minute operating window.
const MAX_THROTTLED: u32 = 12;

/// Request-limit refusals (503) tolerated per chunk. Each is followed by the bucket's wait at
/// the learnt rate, so they cost the portal nothing and make a run slower, never fail it;
/// the cap only guards against a portal that refuses forever.
const MAX_LIMITED: u32 = 100;

/// The description of a batch answer that has no entry at all for a command.
const NO_RESULT: &str = "the batch answer has no result for this command";

impl Client {
    pub fn new(auth: impl Into<Auth>, options: Options) -> Result<Client, TransportError> {
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(options.timeout))
            // A portal that moved answers 302; following it blindly could send the code (or
            // the token) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError {
                kind: TransportKind::Connect,
                method: "client".into(),
                status: None,
                detail: e.without_url().to_string(),
            })?;
        Ok(Client {
            http,
            auth: auth.into(),
            pacer: Pacer::new(options.rate),
            operating: Operating::new(options.operating_limit_s, options.operating_margin_s),
            options,
            breaker: Breaker::default(),
            notices: Notices::default(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            refused_in_a_row: std::sync::atomic::AtomicU32::new(0),
            legacy_read: std::sync::atomic::AtomicBool::new(false),
            legacy_code: OnceLock::new(),
            users_refused: OnceLock::new(),
            emails_ignored: OnceLock::new(),
        })
    }

    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            refreshes: match &self.auth {
                Auth::OAuth(o) => o.refreshes(),
                Auth::Webhook(_) => 0,
            },
        }
    }

    /// The cause that tripped the run-wide breaker, if one did.
    pub fn unreachable(&self) -> Option<&str> {
        self.breaker.cause()
    }

    /// One HTTP call of `method` with a JSON body, paced by the bucket and the operating-time
    /// budget of `method` and of `sub_methods` (a batch's commands), retried while the failure
    /// is transient, within `budget`. Returns the whole answer (`result` and `time`) and when
    /// it was sent. `uncertain` is set when an attempt may have been carried out without a
    /// trustworthy answer. Fails at once, sending nothing, when `stop` is cancelled or the
    /// breaker has tripped, also in the middle of a wait.
    async fn call(
        &self,
        method: &str,
        sub_methods: &BTreeSet<&str>,
        body: &Value,
        budget: &mut Budget,
        stop: &CancellationToken,
        uncertain: &mut Option<String>,
    ) -> Result<(Value, Instant), CallError> {
        let methods: Vec<&str> = std::iter::once(method)
            .chain(sub_methods.iter().copied())
            .collect();
        loop {
            self.may_send(method, stop)?;
            let pause = methods
                .iter()
                .map(|m| self.operating.wait_for(m))
                .max()
                .unwrap_or_default();
            if !pause.is_zero() {
                info!(%method, secs = pause.as_secs(), "pausing until the operating-time budget resets");
                self.sleep(method, pause, stop).await?;
            }
            let wait = self.pacer.reserve();
            self.sleep(method, wait, stop).await?;
            let sent = Instant::now();
            self.requests.fetch_add(1, Ordering::Relaxed);
            let e = match self.call_once(method, body, stop).await {
                Ok(v) => {
                    self.pacer.accepted(sent);
                    self.refused_in_a_row.store(0, Ordering::Relaxed);
                    if let Some(t) = v.get("time") {
                        self.observe_time(method, t);
                    }
                    return Ok((v, sent));
                }
                Err(e) => e,
            };
            if e.may_have_acted() && uncertain.is_none() {
                *uncertain = Some(e.to_string());
            }
            if matches!(&e, CallError::Transport(t) if t.kind == TransportKind::Timeout) {
                budget.timeouts += 1;
            }
            if e.is_rate_limit() {
                let learned = if self.options.learn_rate {
                    self.pacer.refused(sent)
                } else {
                    Learned::Nothing
                };
                self.tell(learned);
                let n = self.refused_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= REFUSALS_TO_GIVE_UP {
                    self.breaker.trip(format!(
                        "{e}: the portal refused {n} requests in a row for its rate limit, so it is overloaded or blocking this client; giving up"
                    ));
                    return Err(e);
                }
                if n >= 3 {
                    self.notices.warn("refused", || {
                        format!(
                            "the portal has refused {n} requests in a row (503 QUERY_LIMIT_EXCEEDED); waiting for its limit (giving up after {REFUSALS_TO_GIVE_UP})"
                        )
                    });
                }
            } else if matches!(e, CallError::Api(_)) {
                self.pacer.accepted(sent);
                self.refused_in_a_row.store(0, Ordering::Relaxed);
            }
            if e.is_run_wide() {
                self.breaker.trip(e.to_string());
                return Err(e);
            }
            let Some(delay) = self.next_try(&e, budget, &methods) else {
                return Err(e);
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            self.sleep(method, delay, stop).await?;
        }
    }

    /// Whether to try `e`'s request again and after how long, drawing on `budget` (and saying
    /// so on stderr, except for the request limit's quiet pacing). `None`: give up; a request
    /// the portal never answered trips the breaker as it gives up.
    fn next_try(&self, e: &CallError, budget: &mut Budget, methods: &[&str]) -> Option<Duration> {
        if e.is_rate_limit() {
            if budget.limited >= MAX_LIMITED {
                return None;
            }
            budget.limited += 1;
            debug!("request limit reached; waiting for the bucket to drain: {e}");
            // The bucket's own reservation is the wait.
            return Some(Duration::ZERO);
        }
        let (used, max) = if e.is_throttle() {
            (&mut budget.throttled, MAX_THROTTLED + 1)
        } else if e.is_no_answer() {
            (&mut budget.no_answer, self.options.no_answer_attempts)
        } else if e.is_transient() {
            (&mut budget.retries, self.options.max_attempts)
        } else {
            return None;
        };
        if budget.hurry || *used + 1 >= max {
            if e.is_no_answer() {
                self.breaker.trip(e.to_string());
            }
            return None;
        }
        *used += 1;
        let attempt = *used + 1;
        if e.is_throttle() {
            let delay = self.throttle(methods, *used);
            self.notices.warn("throttle", || {
                format!(
                    "{e}: the portal's operating-time budget is spent; waiting {} before trying again (wait {} of {MAX_THROTTLED})",
                    human(delay),
                    attempt - 1
                )
            });
            return Some(delay);
        }
        let delay = backoff(&self.options, *used);
        self.notices.warn(e.notice_key(), || {
            format!(
                "{e}; retrying (attempt {attempt} of {max}) in {}",
                human(delay)
            )
        });
        Some(delay)
    }

    /// Say what a 503 taught the pacer, when it changed how fast roster goes.
    fn tell(&self, learned: Learned) {
        match learned {
            Learned::Nothing => {}
            Learned::Started { per_second } => self.notices.warn("pacing", || {
                format!(
                    "the portal limits requests (503 QUERY_LIMIT_EXCEEDED) although no rate limit was configured; pacing at {per_second} requests/s from now on"
                )
            }),
            Learned::Slowed { from, to } => self.notices.warn("pacing", || {
                format!(
                    "the portal refuses requests at {from:.2}/s (503 QUERY_LIMIT_EXCEEDED); slowing to {to:.2}/s"
                )
            }),
        }
    }

    /// Fail without sending when the run was interrupted or the breaker has tripped.
    fn may_send(&self, method: &str, stop: &CancellationToken) -> Result<(), CallError> {
        let not_sent = |kind, detail| {
            Err(CallError::Transport(TransportError {
                method: method.to_owned(),
                status: None,
                detail,
                kind,
            }))
        };
        if stop.is_cancelled() {
            return not_sent(TransportKind::Interrupted, "not sent: interrupted".into());
        }
        if let Some(cause) = self.breaker.cause() {
            return not_sent(
                TransportKind::NotSent,
                format!("not sent: an earlier request failed ({cause})"),
            );
        }
        Ok(())
    }

    /// Wait `d`, or less: an interrupt or the breaker ends the wait at once, and then nothing
    /// is sent.
    async fn sleep(
        &self,
        method: &str,
        d: Duration,
        stop: &CancellationToken,
    ) -> Result<(), CallError> {
        if !d.is_zero() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = self.breaker.tripped.cancelled() => {}
                _ = tokio::time::sleep(d) => {}
            }
        }
        self.may_send(method, stop)
    }

    /// After the `n`th throttling answer for `methods`: how long to wait, recorded so that
    /// concurrent requests for those methods pause too. Until the budget resets if a response
    /// told us when, else `throttle_wait` doubling (≤ 2 min).
    fn throttle(&self, methods: &[&str], n: u32) -> Duration {
        let delay = self.throttle_delay(methods, n);
        for m in methods {
            self.operating.block(m, delay);
        }
        delay
    }

    fn throttle_delay(&self, methods: &[&str], n: u32) -> Duration {
        let known = methods
            .iter()
            .map(|m| self.operating.wait_for(m))
            .max()
            .unwrap_or_default();
        let doubling = self
            .options
            .throttle_wait
            .saturating_mul(1 << (n - 1).min(8))
            .min(Duration::from_secs(120));
        known.max(doubling)
    }

    /// Replace every secret (the webhook code; OAuth's tokens, old and new, and client secret)
    /// in text that came from the network (an error page may echo the request), so it cannot
    /// reach a message or a log.
    fn scrub(&self, text: &str) -> String {
        self.auth.scrub(text)
    }

    /// Feed a `time` object's `operating` / `operating_reset_at` to the operating-time tracker.
    fn observe_time(&self, method: &str, time: &Value) {
        let operating = time.get("operating").and_then(Value::as_f64);
        let Some(operating) = operating.filter(|o| o.is_finite()) else {
            return;
        };
        let reset = time.get("operating_reset_at").and_then(Value::as_f64);
        let finish = time.get("finish").and_then(Value::as_f64);
        // The budget's window is 10 minutes: no reset is further away than that, whatever a
        // response says (a bad value must neither panic nor stall roster).
        let reset_in = match (reset, finish) {
            (Some(reset), Some(finish)) if reset > finish => Some(
                Duration::try_from_secs_f64(reset - finish)
                    .map_or(OPERATING_WINDOW, |d| d.min(OPERATING_WINDOW)),
            ),
            _ => None,
        };
        self.operating.observe(method, operating, reset_in);
    }

    /// One request, authenticated: a webhook's URL carries its code; with OAuth the access
    /// token goes in the body's `auth` field, and a 401 `expired_token` is answered by one
    /// refresh (shared by every request in flight, `OAuth::refresh_after`) and one more try
    /// with the new token. A portal refusing an expired token did nothing, so writes are safe
    /// to send again. A refusal no refresh can fix trips the breaker, with what to do.
    async fn call_once(
        &self,
        method: &str,
        body: &Value,
        stop: &CancellationToken,
    ) -> Result<Value, CallError> {
        let oauth = match &self.auth {
            Auth::Webhook(w) => return self.send_once(method, w.method_url(method), body).await,
            Auth::OAuth(o) => o,
        };
        let refused = |code: &str, description: String, short: &str| -> CallError {
            self.breaker.trip_short(description.clone(), short);
            ApiError {
                method: method.to_owned(),
                code: code.to_owned(),
                description,
                status: Some(401),
            }
            .into()
        };
        let used = oauth.current();
        let sent = Instant::now();
        match self
            .send_once(method, used.url(method), &used.sign(body))
            .await
        {
            Err(CallError::Api(e)) => match oauth::refusal(e.status, &e.code) {
                Some(oauth::Refusal::Expired) => self.pacer.accepted(sent),
                Some(oauth::Refusal::Invalid) => {
                    return Err(refused(
                        &e.code,
                        oauth.invalid_token(&e.description),
                        OAUTH_TOKEN_REFUSED,
                    ));
                }
                None => return Err(e.into()),
            },
            other => return other,
        }
        // An interrupt stops here, before the refresh and before the request is sent again
        // (the portal did nothing with the expired token). The refresh itself is never cut
        // short: the OAuth server may already have spent the old refresh token.
        self.may_send(method, stop)?;
        if let Err(why) = oauth.refresh_after(used.generation, &self.http).await {
            return Err(refused("expired_token", why, OAUTH_REFRESH_FAILED));
        }
        self.may_send(method, stop)?;
        // Sent again: counted and paced like any request.
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.retries.fetch_add(1, Ordering::Relaxed);
        let wait = self.pacer.reserve();
        self.sleep(method, wait, stop).await?;
        let now = oauth.current();
        match self
            .send_once(method, now.url(method), &now.sign(body))
            .await
        {
            Err(CallError::Api(e)) => match oauth::refusal(e.status, &e.code) {
                Some(oauth::Refusal::Expired) => {
                    Err(refused(&e.code, oauth.expired_again(), OAUTH_TOKEN_REFUSED))
                }
                Some(oauth::Refusal::Invalid) => Err(refused(
                    &e.code,
                    oauth.invalid_token(&e.description),
                    OAUTH_TOKEN_REFUSED,
                )),
                None => Err(e.into()),
            },
            other => other,
        }
    }

    /// POST `body` as JSON to `url` and read the answer: the envelope, or why not.
    async fn send_once(&self, method: &str, url: String, body: &Value) -> Result<Value, CallError> {
        let started = std::time::Instant::now();
        let transport = |kind: TransportKind, status: Option<u16>, detail: String| TransportError {
            method: method.to_owned(),
            status,
            detail,
            kind,
        };
        let timed_out = || {
            format!(
                "no answer within {} (--timeout)",
                human(self.options.timeout)
            )
        };
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            // reqwest puts the URL, and so the webhook code, in its messages: describe_reqwest
            // drops it, and scrub catches any copy in the source chain.
            .map_err(|e| {
                let (connect, timeout) = (e.is_connect(), e.is_timeout());
                let text = self.scrub(&describe_reqwest(e));
                match (connect, timeout) {
                    (true, true) => transport(
                        TransportKind::Connect,
                        None,
                        format!(
                            "cannot connect within {}",
                            human(CONNECT_TIMEOUT.min(self.options.timeout))
                        ),
                    ),
                    (true, false) => transport(
                        TransportKind::Connect,
                        None,
                        format!("cannot connect: {text}"),
                    ),
                    (false, true) => transport(TransportKind::Timeout, None, timed_out()),
                    (false, false) => transport(
                        TransportKind::NoAnswer,
                        None,
                        format!("the connection dropped before an answer: {text}"),
                    ),
                }
            })?;
        let status = response.status().as_u16();
        // A body cut off mid-read: the write may or may not have happened, and the request is
        // worth repeating.
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                transport(TransportKind::Timeout, Some(status), timed_out())
            } else {
                let text = self.scrub(&describe_reqwest(e));
                transport(
                    TransportKind::Truncated,
                    Some(status),
                    format!("HTTP {status}, the answer was cut off: {text}"),
                )
            }
        })?;
        debug!(%method, status, bytes = bytes.len(), ms = started.elapsed().as_millis() as u64, "response");
        // Scrub the whole answer once, before anything is built from it: any text a portal or
        // proxy sends back (error pages, echoed paths, odd results) may quote the request URL.
        let text = self.scrub(&String::from_utf8_lossy(&bytes));
        let parsed: Result<Value, _> = serde_json::from_str(&text);
        match parsed {
            Ok(mut v) => {
                // And again after decoding: escapes decode to text the first pass never saw.
                self.scrub_value(&mut v);
                if let Some(e) = wire::error_body(&v) {
                    return Err(ApiError {
                        method: method.to_owned(),
                        code: e.code,
                        description: e.description,
                        status: Some(status),
                    }
                    .into());
                }
                if status != 200 {
                    return Err(transport(
                        TransportKind::BadAnswer,
                        Some(status),
                        format!("HTTP {status} without an error body"),
                    )
                    .into());
                }
                if v.get("result").is_none() {
                    return Err(transport(
                        TransportKind::BadAnswer,
                        Some(status),
                        "answer has no `result`".into(),
                    )
                    .into());
                }
                Ok(v)
            }
            Err(e) => {
                let snippet: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let snippet: String = snippet.chars().take(120).collect();
                let (kind, what) = if e.is_eof() {
                    (TransportKind::Truncated, "JSON cut off")
                } else {
                    (TransportKind::BadAnswer, "not JSON")
                };
                Err(transport(
                    kind,
                    Some(status),
                    format!("HTTP {status}, {what}: {snippet:?}"),
                )
                .into())
            }
        }
    }

    /// Scrub every string (and key) of a decoded answer.
    fn scrub_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                let clean = self.scrub(s);
                if clean != *s {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.scrub_value(i)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (k, mut item) in old {
                    self.scrub_value(&mut item);
                    map.insert(self.scrub(&k), item);
                }
            }
            _ => {}
        }
    }

    /// Run up to `BATCH_MAX` commands in one `batch` request (`halt=0`), returning each
    /// command's own result or error with its `result_next` and `result_total`, in order, and
    /// when the request that answered was sent.
    async fn batch(
        &self,
        cmds: &[&Command],
        budget: &mut Budget,
        stop: &CancellationToken,
        uncertain: &mut Option<String>,
    ) -> Result<(Vec<(CommandResult, Paging)>, Instant), CallError> {
        assert!(cmds.len() <= BATCH_MAX, "callers chunk batches");
        let (names, body) = batch_body(cmds);
        let methods: BTreeSet<&str> = cmds.iter().map(|c| c.method).collect();
        debug!(commands = cmds.len(), "batch");
        tracing::trace!(%body, "batch body");
        let (answer, sent) = self
            .call("batch", &methods, &body, budget, stop, uncertain)
            .await?;
        let result = &answer["result"];
        for (c, name) in cmds.iter().zip(&names) {
            if let Some(t) = wire::section(result, "result_time", name) {
                self.observe_time(c.method, t);
            }
        }
        let results = cmds
            .iter()
            .zip(&names)
            .map(|(c, name)| {
                if let Some(e) =
                    wire::section(result, "result_error", name).and_then(wire::error_body)
                {
                    let e = ApiError {
                        method: c.method.to_owned(),
                        code: e.code,
                        description: e.description,
                        status: None,
                    };
                    return (Err(e), Paging::default());
                }
                let paging = Paging {
                    next: wire::section_number(result, "result_next", name),
                    total: wire::section_number(result, "result_total", name),
                };
                let r = wire::section(result, "result", name)
                    .cloned()
                    .ok_or_else(|| ApiError {
                        method: c.method.to_owned(),
                        code: String::new(),
                        description: NO_RESULT.into(),
                        status: None,
                    });
                (r, paging)
            })
            .collect();
        Ok((results, sent))
    }

    /// Run one chunk of commands (≤ `BATCH_MAX`) as a batch, and what became of each command.
    /// Commands the portal deferred inside the batch (`QUERY_LIMIT_EXCEEDED`,
    /// `OPERATION_TIME_LIMIT` in `result_error`) are sent again together with every later
    /// command of the same group, so a group's commands still run in order (a promote after a
    /// deferred add). Nothing is thrown away: if a re-send fails as a whole, the commands it
    /// carried get that error as one more answer, and earlier answers stand.
    async fn run_chunk(
        &self,
        chunk: &[(Option<GroupId>, Command)],
        stop: &CancellationToken,
        hurry: bool,
    ) -> Vec<Answers> {
        let mut answers: Vec<Answers> = vec![Answers::default(); chunk.len()];
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        // One budget for the chunk: re-sends here and retries inside `call` draw on it alike.
        let mut budget = Budget {
            hurry,
            ..Budget::default()
        };
        while !pending.is_empty() {
            let cmds: Vec<&Command> = pending.iter().map(|&i| &chunk[i].1).collect();
            let mut uncertain = None;
            let timeouts = budget.timeouts;
            let outcome = self.batch(&cmds, &mut budget, stop, &mut uncertain).await;
            if let Some(u) = &uncertain {
                for &i in &pending {
                    answers[i].executed = true;
                    answers[i].uncertain.get_or_insert_with(|| u.clone());
                    answers[i].still_running |= budget.timeouts > timeouts;
                }
            }
            let (results, sent) = match outcome {
                Ok(r) => r,
                Err(e) => {
                    let interrupted = e.is_interrupted();
                    for &i in &pending {
                        if interrupted {
                            answers[i].interrupted = true;
                        } else {
                            answers[i].got.push(Err(e.to_string()));
                        }
                    }
                    break;
                }
            };
            let mut again = Vec::new();
            let mut tainted = BTreeSet::new();
            let (mut throttle, mut limited, mut failed) = (false, false, false);
            for (&i, (r, paging)) in pending.iter().zip(results) {
                let group = chunk[i].0;
                let deferred = matches!(&r, Err(e) if is_deferral(e));
                let server = matches!(&r, Err(e) if is_server_error(e));
                throttle |= matches!(&r, Err(e) if e.code == "OPERATION_TIME_LIMIT");
                limited |= matches!(&r, Err(e) if e.code == "QUERY_LIMIT_EXCEEDED");
                failed |= server;
                let a = &mut answers[i];
                if !deferred {
                    a.executed = true;
                }
                match &r {
                    Ok(_) => (a.next, a.total) = (paging.next, paging.total),
                    Err(e) if e.description != NO_RESULT => {
                        a.code = Some(e.code.clone());
                        a.description = Some(e.description.clone());
                    }
                    Err(_) => {}
                }
                if let Err(e) = &r
                    && (e.description == NO_RESULT || server)
                {
                    a.uncertain.get_or_insert_with(|| e.to_string());
                }
                a.got.push(r.map_err(|e| e.to_string()));
                // A later command of a group whose command is sent again goes with it (commands
                // without a group depend on nothing).
                let follows = group.is_some_and(|g| tainted.contains(&g));
                if deferred || server || follows {
                    tainted.extend(group);
                    again.push(i);
                }
            }
            if again.is_empty() {
                break;
            }
            if limited {
                let learned = if self.options.learn_rate {
                    self.pacer.refused(sent)
                } else {
                    Learned::Nothing
                };
                self.tell(learned);
            }
            let delay = if throttle {
                if budget.hurry || budget.throttled >= MAX_THROTTLED {
                    break;
                }
                budget.throttled += 1;
                let methods: Vec<&str> = again.iter().map(|&i| chunk[i].1.method).collect();
                let delay = self.throttle(&methods, budget.throttled);
                self.notices.warn("throttle", || {
                    format!(
                        "the portal deferred {} command(s) for their operating-time budget; waiting {} before sending them again",
                        again.len(),
                        human(delay)
                    )
                });
                delay
            } else if failed {
                // A server error inside the batch: the same allowance and backoff as a whole
                // request answered 500.
                if budget.hurry || budget.retries + 1 >= self.options.max_attempts {
                    break;
                }
                budget.retries += 1;
                backoff(&self.options, budget.retries)
            } else {
                if budget.limited >= MAX_LIMITED {
                    break;
                }
                budget.limited += 1;
                // The bucket's reservation before the re-send is the wait.
                Duration::ZERO
            };
            self.retries
                .fetch_add(again.len() as u64, Ordering::Relaxed);
            debug!(
                commands = again.len(),
                "re-sending commands the portal deferred"
            );
            if let Err(e) = self.sleep("batch", delay, stop).await {
                for &i in &again {
                    if e.is_interrupted() {
                        answers[i].interrupted = true;
                    } else {
                        answers[i].got.push(Err(e.to_string()));
                    }
                }
                break;
            }
            pending = again;
        }
        answers
    }

    /// Run commands in chunks of `BATCH_MAX`, up to `concurrency` chunks at once. A chunk that
    /// starts with the same group the previous chunk ended with waits for it, so a group's
    /// commands (add before promote) keep their order; commands without a group (lookups)
    /// depend on nothing. Once `stop` is cancelled no chunk starts (nor one waiting for its
    /// predecessor). `on_progress` is told the `weights` of each finished chunk's commands.
    /// Answers come back in input order.
    async fn run_all(
        &self,
        commands: &[(Option<GroupId>, Command)],
        weights: &[usize],
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
        hurry: bool,
    ) -> Vec<Answers> {
        let chunks: Vec<&[(Option<GroupId>, Command)]> = commands.chunks(BATCH_MAX).collect();
        let (done_tx, done_rx): (Vec<_>, Vec<_>) =
            chunks.iter().map(|_| watch::channel(false)).unzip();
        let tasks = chunks.iter().enumerate().map(|(i, chunk)| {
            let continues = i > 0
                && matches!((chunks[i - 1].last(), chunk.first()),
                    (Some((Some(a), _)), Some((Some(b), _))) if a == b);
            let after = continues.then(|| done_rx[i - 1].clone());
            let done = &done_tx[i];
            let weight: usize = weights[i * BATCH_MAX..i * BATCH_MAX + chunk.len()]
                .iter()
                .sum();
            async move {
                if let Some(mut rx) = after {
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => {}
                        _ = rx.wait_for(|d| *d) => {}
                    }
                }
                if stop.is_cancelled() {
                    // Never sent: `judge` reports its changes as not started.
                    let _ = done.send(true);
                    let never = Answers {
                        interrupted: true,
                        ..Answers::default()
                    };
                    return (i, vec![never; chunk.len()]);
                }
                let out = self.run_chunk(chunk, stop, hurry).await;
                let _ = done.send(true);
                on_progress(weight);
                (i, out)
            }
        });
        let mut finished: Vec<(usize, Vec<Answers>)> = stream::iter(tasks)
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        finished.sort_by_key(|(i, _)| *i);
        finished
            .into_iter()
            .flat_map(|(_, answers)| answers)
            .collect()
    }

    /// Read the members of `groups` (`socialnetwork.api.workgroup.get`, one command per group,
    /// 50 groups a batch; `sonet_group.user.get` where the portal refuses that). Every group
    /// that cannot be read is reported, not just the first; a failure of the whole run (the
    /// portal unreachable, the webhook refused) is reported once.
    pub async fn fetch(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
    ) -> Result<CurrentState, FetchError> {
        let (state, failed, _) = self.read(groups, on_progress, false).await;
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

    /// Read every group that can be read, and each group that cannot with why (a group the
    /// portal does not show: "no such group, or … cannot see it"), for the shell to report at
    /// the group's place in the file while it plans the rest. Fails as a whole only when the
    /// run cannot go on (the breaker: the portal unreachable, the credentials refused).
    pub async fn fetch_each(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
    ) -> Result<(CurrentState, Vec<(GroupId, String)>), FetchError> {
        let (state, mut failed, missing) = self.read(groups, on_progress, false).await;
        if let Some(cause) = self.breaker.cause()
            && !failed.is_empty()
        {
            return Err(FetchError::RunWide {
                cause: cause.to_owned(),
                unread: failed.len(),
            });
        }
        for (g, e) in &mut failed {
            if missing.contains(g) {
                *e = self.no_such_group();
            }
        }
        Ok((state, failed))
    }

    /// Read what can be read: the groups that answered, each other group with its error, and
    /// which of those the portal does not show (`not_found`).
    /// In a `hurry` each request is tried once. The first time the portal refuses
    /// `socialnetwork.api.workgroup.get` as a method (scope or existence), the run falls back
    /// to `sonet_group.user.get` for good, says so once, and reads the refused groups again.
    async fn read(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
        hurry: bool,
    ) -> (CurrentState, Vec<(GroupId, String)>, BTreeSet<GroupId>) {
        let legacy = self.legacy_read.load(Ordering::Relaxed);
        let (mut state, mut failed, refused, mut missing) =
            self.read_as(groups, legacy, on_progress, hurry).await;
        if refused.is_empty() {
            return (state, failed, missing);
        }
        let _ = self.legacy_code.set(refused[0].1.clone());
        if !self.legacy_read.swap(true, Ordering::Relaxed)
            && let Some(line) = self.legacy_warning()
        {
            warn!("{line}");
        }
        let again: Vec<GroupId> = refused.iter().map(|(g, _)| *g).collect();
        let (more, still_failed, _, also_missing) =
            self.read_as(&again, true, &|_| {}, hurry).await;
        state.groups.extend(more.groups);
        failed.extend(still_failed);
        failed.sort_by_key(|(g, _)| *g);
        missing.extend(also_missing);
        (state, failed, missing)
    }

    /// What this run could not see on the portal, one line each, for the plan's warnings:
    /// reading with `sonet_group.user.get` (no invitations, requests or department links), and
    /// users that could not be looked up (no `user` scope), and e-mails whose filter the portal
    /// ignored (`user_brief` only). Empty when nothing was missed.
    pub fn read_warnings(&self) -> Vec<String> {
        let legacy = self
            .legacy_read
            .load(Ordering::Relaxed)
            .then(|| self.legacy_warning())
            .flatten();
        legacy
            .into_iter()
            .chain(self.users_warning())
            .chain(self.emails_warning())
            .collect()
    }

    /// Who the client acts through, for advice: "the webhook" or "the OAuth application".
    fn credentials(&self) -> &'static str {
        match &self.auth {
            Auth::Webhook(_) => "the webhook",
            Auth::OAuth(_) => "the OAuth application",
        }
    }

    /// The warning for reading with `sonet_group.user.get`, once the portal refused
    /// `socialnetwork.api.workgroup.get`.
    fn legacy_warning(&self) -> Option<String> {
        let code = self.legacy_code.get()?;
        let cannot = "roster cannot see pending invitations, join requests or department links, so it may plan adds for invited users and removals Bitrix24 undoes";
        Some(if code == "insufficient_scope" {
            format!(
                "{} lacks the `socialnetwork` scope: {cannot}; add the scope",
                self.credentials()
            )
        } else {
            format!(
                "the portal does not run socialnetwork.api.workgroup.get ({code}), so groups are read with sonet_group.user.get: {cannot}"
            )
        })
    }

    /// One pass of `read`, with `sonet_group.user.get` when `legacy`: the groups read, the
    /// groups that failed, the groups whose read the portal refused as a method (with the
    /// error code), and the failed groups the portal does not show (`not_found`).
    async fn read_as(
        &self,
        groups: &[GroupId],
        legacy: bool,
        on_progress: OnProgress<'_>,
        hurry: bool,
    ) -> (
        CurrentState,
        Vec<(GroupId, String)>,
        Vec<(GroupId, String)>,
        BTreeSet<GroupId>,
    ) {
        let cmds: Vec<(Option<GroupId>, Command)> = groups
            .iter()
            .map(|g| (Some(*g), read_command(*g, legacy)))
            .collect();
        let weights = vec![1; cmds.len()];
        let mut state = CurrentState::default();
        let mut failed = Vec::new();
        let mut refused = Vec::new();
        let mut missing = BTreeSet::new();
        // In a hurry (the run was interrupted) the whole read gets one timeout: no pause for
        // the operating budget, the pacer or 503s may outlast it. What is not read by then is
        // reported unread.
        let deadline = CancellationToken::new();
        let timer = hurry.then(|| {
            let (token, after) = (deadline.clone(), self.options.timeout);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                token.cancel();
            })
        });
        let ran = self
            .run_all(&cmds, &weights, on_progress, &deadline, hurry)
            .await;
        if let Some(t) = timer {
            t.abort();
        }
        for (g, answers) in groups.iter().zip(ran) {
            // Reads are idempotent: the last successful answer is the freshest.
            let last_ok = answers.got.iter().rev().find_map(|a| a.as_ref().ok());
            let read = match (last_ok, answers.got.last()) {
                (Some(v), _) if legacy => members(v),
                (Some(v), _) => workgroup(v),
                (None, Some(Err(e))) => Err(e.clone()),
                (None, _) => Err("no answer".to_owned()),
            };
            match read {
                Ok(members) => {
                    state.groups.insert(*g, members);
                }
                Err(_)
                    if !legacy && last_ok.is_none() && refuses_method(answers.code.as_deref()) =>
                {
                    refused.push((*g, answers.code.clone().unwrap_or_default()))
                }
                Err(e) => {
                    if last_ok.is_none() && not_found(&answers) {
                        missing.insert(*g);
                    }
                    failed.push((*g, e))
                }
            }
        }
        (state, failed, refused, missing)
    }

    /// Why a group cannot be read when the portal does not show it.
    fn no_such_group(&self) -> String {
        let who = match &self.auth {
            Auth::Webhook(_) => "the webhook's user",
            Auth::OAuth(_) => "the OAuth token's user",
        };
        format!("no such group, or {who} cannot see it (a secret group they are not a member of)")
    }

    /// Carry out `changes`; one status per change, in input order. `on_progress` counts the
    /// changes each finished chunk completed (a change counts once, with its last command).
    /// `invite_messages` is each group's invitation text (`MESSAGE` of its invite command).
    ///
    /// Owner changes (`sonet_group.setowner`) run first, all of them, as a phase of their own;
    /// then everything else. A group's changes about its old owner (who stays owner until
    /// `setowner` succeeds, and whom `update`/`delete` skip as owner) are sent only when its
    /// owner change was confirmed; otherwise they are not done, naming the owner change.
    ///
    /// A change is done when an answer to a command carrying it lists the user. Every other
    /// change that was sent is settled by reading its group again (`settle`), also after an
    /// interrupt: the report says what the portal holds, not what the wire happened to
    /// deliver. Changes never sent because `stop` was cancelled are `NotStarted`.
    ///
    /// When the run failed for a cause that has a short form (a failed OAuth refresh), the
    /// first change to fail for it carries the whole message and the others the short form
    /// (`Breaker::shorten`).
    pub async fn execute(
        &self,
        changes: &[(GroupId, Change)],
        invite_messages: &BTreeMap<GroupId, String>,
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
    ) -> Vec<OpStatus> {
        let statuses = self
            .execute_all(changes, invite_messages, on_progress, stop)
            .await;
        self.breaker.shorten(statuses)
    }

    /// `execute` with every message as it came.
    async fn execute_all(
        &self,
        changes: &[(GroupId, Change)],
        invite_messages: &BTreeMap<GroupId, String>,
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
    ) -> Vec<OpStatus> {
        let mut ran = Ran::new(changes.len());
        let is_owner = |i: usize| matches!(changes[i].1, Change::SetOwner { .. });
        if (0..changes.len()).any(is_owner) {
            let writes = coalesce_only(changes, invite_messages, &is_owner);
            self.run_writes(changes, &writes, on_progress, stop, &mut ran)
                .await;
        }
        let held = held_back(changes, &ran.verdicts);
        for (i, status) in &held {
            ran.verdicts[*i].push(status.clone());
        }
        if !held.is_empty() {
            on_progress(held.len());
        }
        let rest = |i: usize| !is_owner(i) && !held.contains_key(&i);
        let writes = coalesce_only(changes, invite_messages, &rest);
        self.run_writes(changes, &writes, on_progress, stop, &mut ran)
            .await;
        let Ran {
            verdicts,
            uncertain,
            still_running,
        } = ran;
        let statuses: Vec<OpStatus> = verdicts.into_iter().map(combine).collect();
        let recheck: BTreeSet<GroupId> = changes
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| needs_reread(s))
            .map(|((g, _), _)| *g)
            .collect();
        if recheck.is_empty() {
            return statuses;
        }
        let groups: Vec<GroupId> = recheck.into_iter().collect();
        let (now, unread, _) = self.read(&groups, &|_| {}, stop.is_cancelled()).await;
        let unread: BTreeMap<GroupId, String> = unread.into_iter().collect();
        changes
            .iter()
            .zip(statuses)
            .zip(uncertain)
            .zip(still_running)
            .map(|((((g, change), status), uncertain), still_running)| {
                let reread = match (now.groups.get(g), unread.get(g)) {
                    (Some(group), _) => Ok(group),
                    (None, Some(e)) => Err(e.as_str()),
                    (None, None) => Err("not read again"),
                };
                let uncertain = uncertain.as_deref().map(|cause| Uncertain {
                    cause,
                    still_running,
                });
                let settled = settle(change, status.clone(), uncertain, reread);
                if settled == OpStatus::Confirmed && status != OpStatus::Confirmed {
                    info!(group = %g, user = %change.user(), "change confirmed by reading the group again");
                }
                settled
            })
            .collect()
    }

    /// Send `writes` (one phase of `execute`) and record what each answer says of the changes
    /// they carry.
    async fn run_writes(
        &self,
        changes: &[(GroupId, Change)],
        writes: &[Write],
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
        ran: &mut Ran,
    ) {
        if writes.is_empty() {
            return;
        }
        let cmds: Vec<(Option<GroupId>, Command)> = writes
            .iter()
            .map(|w| (Some(w.group), w.command.clone()))
            .collect();
        let weights = progress_weights(writes, changes.len());
        let answers = self
            .run_all(&cmds, &weights, on_progress, stop, false)
            .await;
        for (w, answers) in writes.iter().zip(&answers) {
            judge(w, answers, changes, &mut ran.verdicts);
            if let Some(u) = &answers.uncertain {
                for &(i, _) in &w.carries {
                    ran.uncertain[i].get_or_insert_with(|| u.clone());
                    ran.still_running[i] |= answers.still_running;
                }
            }
        }
    }
}

/// The connect part of the request timeout, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `execute`'s phases learned, per change.
struct Ran {
    /// Every command's verdict on each change it carried; a change is done when all agree.
    verdicts: Vec<Vec<OpStatus>>,
    /// Why some command carrying the change may have acted without a trustworthy answer.
    uncertain: Vec<Option<String>>,
    /// Some attempt carrying the change timed out.
    still_running: Vec<bool>,
}

impl Ran {
    fn new(changes: usize) -> Ran {
        Ran {
            verdicts: vec![Vec::new(); changes],
            uncertain: vec![None; changes],
            still_running: vec![false; changes],
        }
    }
}

/// The changes not to send because they concern a group's old owner and that group's owner
/// change was not confirmed by its answer (the old owner may still be the owner, whom update
/// and delete skip): each with its status, not started if the owner change never was, else
/// not done naming the owner change.
fn held_back(
    changes: &[(GroupId, Change)],
    verdicts: &[Vec<OpStatus>],
) -> BTreeMap<usize, OpStatus> {
    let mut blocked: BTreeMap<GroupId, (UserId, UserId, OpStatus)> = BTreeMap::new();
    for (i, (g, change)) in changes.iter().enumerate() {
        if let Change::SetOwner {
            from: Some(from),
            to,
        } = *change
        {
            let status = combine(verdicts[i].clone());
            if !status.is_done() {
                blocked.insert(*g, (from, to, status));
            }
        }
    }
    changes
        .iter()
        .enumerate()
        .filter(|(_, (_, c))| !matches!(c, Change::SetOwner { .. }))
        .filter_map(|(i, (g, change))| {
            let (from, to, owner) = blocked.get(g)?;
            (change.user() == *from).then(|| {
                let status = match owner {
                    OpStatus::NotStarted => OpStatus::NotStarted,
                    other => OpStatus::NotDone {
                        reason: format!(
                            "not sent: it waits for the owner change to #{to} in group {g}, which was not confirmed ({}), so #{from} may still be the owner",
                            describe(other)
                        ),
                    },
                };
                (i, status)
            })
        })
        .collect()
}

/// A status's own words, for another change's reason.
fn describe(status: &OpStatus) -> String {
    match status {
        OpStatus::Done => "done".into(),
        OpStatus::Confirmed => "confirmed".into(),
        OpStatus::NotDone { reason } if reason.starts_with("not done") => reason.clone(),
        OpStatus::NotDone { reason } => format!("not done: {reason}"),
        OpStatus::Failed { error } => format!("failed: {error}"),
        OpStatus::Unknown { error } => format!("unknown: {error}"),
        OpStatus::NotStarted => "not started".into(),
    }
}

/// Whether a change's group must be read again to settle it: it was sent (or refused) and no
/// answer confirmed it.
fn needs_reread(status: &OpStatus) -> bool {
    matches!(status, OpStatus::NotDone { .. } | OpStatus::Failed { .. })
}

/// Why the portal may have made a change without saying so.
#[derive(Debug, Clone, Copy)]
struct Uncertain<'a> {
    /// The first attempt's failure that left it uncertain.
    cause: &'a str,
    /// Some attempt timed out, so the portal may still be carrying it out.
    still_running: bool,
}

/// Settle a change no answer confirmed, from its group as read again after apply (or why it
/// could not be read), and why the portal may have acted without saying so (`uncertain`):
/// held → `Confirmed`; not held → the status as answered (`NotDone`/`Failed`); unreadable →
/// `Unknown` if the portal may have acted, else the status as answered. Other statuses stand.
fn settle(
    change: &Change,
    status: OpStatus,
    uncertain: Option<Uncertain<'_>>,
    reread: Result<&CurrentGroup, &str>,
) -> OpStatus {
    if !needs_reread(&status) {
        return status;
    }
    match (reread, uncertain) {
        (Ok(group), _) if holds(group, change) => OpStatus::Confirmed,
        // A timed-out request may still land after the re-read: not seeing it proves nothing.
        (Ok(_), Some(u)) if u.still_running => OpStatus::Unknown {
            error: format!(
                "the request timed out ({}) and may still be running on the portal; reading the group again did not show the change yet",
                u.cause
            ),
        },
        // An add as moderator is an add and a promotion: say so when only the add landed.
        (Ok(group), _)
            if matches!(change, Change::Add { user, role: Role::Moderator }
                if group.members.get(user) == Some(&Role::Member)) =>
        {
            let half = "only half done: the portal added the user as a member but did not make them moderator";
            match status {
                OpStatus::NotDone { reason } => OpStatus::NotDone {
                    reason: format!("{half} ({reason})"),
                },
                OpStatus::Failed { error } => OpStatus::Failed {
                    error: format!("{half} ({error})"),
                },
                other => other,
            }
        }
        (Ok(_), _) | (Err(_), None) => status,
        (Err(e), Some(u)) => OpStatus::Unknown {
            error: format!(
                "the portal may have made the change ({}), and reading the group again failed ({e})",
                u.cause
            ),
        },
    }
}

/// One change's status from the verdicts of the commands carrying it (an add as moderator is
/// an add and a promote): done when all are; not started when none was sent; else the first
/// that is not done.
fn combine(verdicts: Vec<OpStatus>) -> OpStatus {
    let not_started = verdicts
        .iter()
        .filter(|v| **v == OpStatus::NotStarted)
        .count();
    if not_started > 0 && not_started == verdicts.len() {
        return OpStatus::NotStarted;
    }
    if let Some(v) = verdicts
        .iter()
        .find(|v| !v.is_done() && **v != OpStatus::NotStarted)
    {
        return v.clone();
    }
    if not_started > 0 {
        return OpStatus::Failed {
            error: "interrupted before all of its commands were sent".into(),
        };
    }
    OpStatus::Done
}

/// For each command, how many changes finish with it (a change counts with its last command),
/// so progress adds up to the number of changes.
fn progress_weights(writes: &[Write], changes: usize) -> Vec<usize> {
    let mut last = vec![None; changes];
    for (w, write) in writes.iter().enumerate() {
        for &(i, _) in &write.carries {
            last[i] = Some(w);
        }
    }
    let mut weights = vec![0; writes.len()];
    for w in last.into_iter().flatten() {
        weights[w] += 1;
    }
    weights
}

/// Whether `group` shows `change` as made, as `sonet_group.user.get` shows it. A removal holds
/// when the user is no longer listed, which is also the case when somebody else turned the
/// relation into a pending request or a ban, or deactivated the user: the method cannot tell
/// these apart, and in each the user is no longer a member as roster manages membership (the
/// next plan agrees), so the removal counts as in place.
fn holds(group: &CurrentGroup, change: &Change) -> bool {
    match *change {
        Change::Add { user, role } | Change::SetRole { user, to: role, .. } => {
            group.members.get(&user) == Some(&role)
        }
        Change::Remove { user, .. } => !group.members.contains_key(&user),
        Change::Accept { user, role } => group.members.get(&user) == Some(&role),
        Change::Invite { user, .. } => {
            group.invited.contains(&user) || group.members.contains_key(&user)
        }
        Change::SetOwner { to, .. } => group.owner() == Some(to),
    }
}

/// The `batch` request body for `cmds` (`halt=0`) and the command names in execution order.
/// The portal runs commands in the order of the `cmd` object's keys as sent; the names are
/// zero-padded (`c00`…`c49`) so that order is the same whether a JSON map keeps insertion
/// order or sorts its keys.
fn batch_body(cmds: &[&Command]) -> (Vec<String>, Value) {
    let names: Vec<String> = (0..cmds.len()).map(|i| format!("c{i:02}")).collect();
    let cmd: serde_json::Map<String, Value> = names
        .iter()
        .zip(cmds)
        .map(|(n, c)| (n.clone(), Value::String(c.to_cmd())))
        .collect();
    (names, json!({ "halt": 0, "cmd": cmd }))
}

fn backoff(options: &Options, attempt: u32) -> Duration {
    let exp = options
        .base_delay
        .saturating_mul(1 << (attempt - 1).min(16));
    let capped = exp.min(options.max_delay);
    capped.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// What reads `group`: `socialnetwork.api.workgroup.get` with the fields roster needs beyond
/// the default ones (linked departments, join requests), or `sonet_group.user.get`.
fn read_command(group: GroupId, legacy: bool) -> Command {
    if legacy {
        return Command::new("sonet_group.user.get").param("ID", group.expect_num());
    }
    Command::new("socialnetwork.api.workgroup.get")
        .param("params[groupId]", group.expect_num())
        .list(
            "params[select]",
            ["DEPARTMENTS", "LIST_OF_MEMBERS_AWAITING_INVITE"],
        )
}

/// The portal's answer for a group it does not show the caller: none with that ID, or a
/// secret group they are not in (`workgroup.get`'s `SONET_CONTROLLER_WORKGROUP_NOT_FOUND`,
/// `sonet_group.user.get`'s code-less "Socialnetwork group not found").
fn not_found(answers: &Answers) -> bool {
    answers.code.as_deref() == Some("SONET_CONTROLLER_WORKGROUP_NOT_FOUND")
        || (answers.code.as_deref() == Some("")
            && answers.description.as_deref() == Some("Socialnetwork group not found"))
}

/// An error code that means the portal will not run the method at all for this webhook
/// (missing scope, or no such method): the same for every group of the run.
pub(super) fn refuses_method(code: Option<&str>) -> bool {
    matches!(code, Some("insufficient_scope" | "ERROR_METHOD_NOT_FOUND"))
}

/// A `socialnetwork.api.workgroup.get` result into a group: `OWNER_ID` is the owner,
/// `MODERATOR_MEMBERS` the moderators, every other user of `MEMBERS` (or `ORDINARY_MEMBERS`)
/// a member; `INVITED_MEMBERS` the pending invitations, `LIST_OF_MEMBERS_AWAITING_INVITE` the
/// pending requests, `DEPARTMENTS` the linked departments, `VISIBLE` whether it is visible to
/// everyone. Tolerant: IDs as numbers or
/// strings, lists as arrays, objects or missing (empty). A user in two lists keeps the
/// strongest relation (owner, moderator, member, invited, requested).
fn workgroup(v: &Value) -> Result<CurrentGroup, String> {
    let obj = v.as_object().ok_or_else(|| {
        format!("socialnetwork.api.workgroup.get: expected a group object, got {v}")
    })?;
    let list = |key: &str| wire::ids(obj.get(key));
    let mut group = CurrentGroup::default();
    for u in list("MEMBERS").into_iter().chain(list("ORDINARY_MEMBERS")) {
        group.members.insert(UserId::Num(u), Role::Member);
    }
    for u in list("MODERATOR_MEMBERS") {
        group.members.insert(UserId::Num(u), Role::Moderator);
    }
    if let Some(owner) = obj.get("OWNER_ID").and_then(wire::id).filter(|o| *o > 0) {
        group.members.insert(UserId::Num(owner), Role::Owner);
    }
    group.invited = list("INVITED_MEMBERS")
        .into_iter()
        .map(UserId::Num)
        .filter(|u| !group.members.contains_key(u))
        .collect();
    group.requested = list("LIST_OF_MEMBERS_AWAITING_INVITE")
        .into_iter()
        .map(UserId::Num)
        .filter(|u| !group.members.contains_key(u) && !group.invited.contains(u))
        .collect();
    let mut departments = list("DEPARTMENTS");
    departments.sort_unstable();
    group.departments = departments;
    group.name = wire::text(obj.get("NAME"));
    // "Y"/"N" (or a bool); an empty or odd value says nothing.
    group.visible = obj
        .get("VISIBLE")
        .filter(|v| v.as_str().is_none_or(|s| !s.trim().is_empty()))
        .and_then(wire::flag);
    group.initiate_perms = match obj.get("INITIATE_PERMS").and_then(Value::as_str) {
        Some("A") => Some(Role::Owner),
        Some("E") => Some(Role::Moderator),
        Some("K") => Some(Role::Member),
        _ => None,
    };
    Ok(group)
}

/// `[{"USER_ID":"1","ROLE":"A"},…]` into members. Rows with roles other than A/E/K (which the
/// method does not return) are ignored. The answer says nothing about the group itself (no
/// name, visibility or departments: those stay unknown, `None` and empty).
fn members(v: &Value) -> Result<CurrentGroup, String> {
    let rows = v
        .as_array()
        .ok_or_else(|| format!("sonet_group.user.get: expected a list of members, got {v}"))?;
    let mut group = CurrentGroup::default();
    for row in rows {
        let user = row.get("USER_ID").and_then(wire::id);
        let role = match row.get("ROLE").and_then(Value::as_str) {
            Some("A") => Some(Role::Owner),
            Some("E") => Some(Role::Moderator),
            Some("K") => Some(Role::Member),
            _ => None,
        };
        match (user, role) {
            (Some(u), Some(r)) => {
                group.members.insert(UserId::Num(u), r);
            }
            _ => debug!(%row, "ignoring membership row"),
        }
    }
    Ok(group)
}

/// What a write command is for, to judge its result. Within a group the derived order is the
/// wire order: invite, add, promote to moderator, set member (a new moderator is added, then
/// promoted; an accepted request is updated), delete. Owner changes are sent in a phase of
/// their own before all of these (`execute`), so their place here orders nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Invite,
    Add,
    Update(Role),
    Delete,
    SetOwner,
}

impl Kind {
    fn method(self) -> &'static str {
        match self {
            Kind::Invite => "sonet_group.user.invite",
            Kind::Add => "sonet_group.user.add",
            Kind::Update(_) => "sonet_group.user.update",
            Kind::Delete => "sonet_group.user.delete",
            Kind::SetOwner => "sonet_group.setowner",
        }
    }
}

/// One coalesced write command and the changes (index, user) it carries.
#[derive(Debug, Clone)]
struct Write {
    group: GroupId,
    kind: Kind,
    command: Command,
    carries: Vec<(usize, UserId)>,
}

/// Coalesce every change into the fewest commands (see `coalesce_only`).
#[cfg(test)]
fn coalesce(
    changes: &[(GroupId, Change)],
    invite_messages: &BTreeMap<GroupId, String>,
) -> Vec<Write> {
    coalesce_only(changes, invite_messages, &|_| true)
}

/// Coalesce the changes whose index `keep` accepts into the fewest commands: per group an
/// invite (with the group's message), an add, an update per target role (role changes and
/// accepted requests alike) and a delete, in `Kind` order; one `setowner` per owner change.
fn coalesce_only(
    changes: &[(GroupId, Change)],
    invite_messages: &BTreeMap<GroupId, String>,
    keep: &dyn Fn(usize) -> bool,
) -> Vec<Write> {
    let mut per_group: BTreeMap<GroupId, BTreeMap<Kind, Vec<(usize, UserId)>>> = BTreeMap::new();
    for (i, (g, change)) in changes.iter().enumerate() {
        if !keep(i) {
            continue;
        }
        let slots = per_group.entry(*g).or_default();
        match *change {
            Change::Add { user, role } => {
                slots.entry(Kind::Add).or_default().push((i, user));
                if role == Role::Moderator {
                    slots
                        .entry(Kind::Update(Role::Moderator))
                        .or_default()
                        .push((i, user));
                }
            }
            Change::SetRole { user, to, .. } | Change::Accept { user, role: to } => {
                slots.entry(Kind::Update(to)).or_default().push((i, user))
            }
            Change::Invite { user, .. } => slots.entry(Kind::Invite).or_default().push((i, user)),
            Change::SetOwner { to, .. } => slots.entry(Kind::SetOwner).or_default().push((i, to)),
            Change::Remove { user, .. } => slots.entry(Kind::Delete).or_default().push((i, user)),
        }
    }
    let mut writes = Vec::new();
    for (g, slots) in per_group {
        for (kind, carries) in slots {
            // setowner takes one user: a group has one owner, so one change per group carries
            // it (the planner makes at most one); any other would be its own command.
            if kind == Kind::SetOwner {
                for carried in carries {
                    let command = Command::new(kind.method())
                        .param("GROUP_ID", g.expect_num())
                        .param("USER_ID", carried.1.expect_num());
                    writes.push(Write {
                        group: g,
                        kind,
                        command,
                        carries: vec![carried],
                    });
                }
                continue;
            }
            let users = carries.iter().map(|(_, u)| u.expect_num());
            let command = Command::new(kind.method())
                .param("GROUP_ID", g.expect_num())
                .list("USER_ID", users);
            let command = match kind {
                Kind::Update(Role::Moderator) => command.param("ROLE", "E"),
                Kind::Update(_) => command.param("ROLE", "K"),
                Kind::Invite => match invite_messages.get(&g) {
                    Some(message) => command.param("MESSAGE", message),
                    None => command,
                },
                _ => command,
            };
            writes.push(Write {
                group: g,
                kind,
                command,
                carries,
            });
        }
    }
    writes
}

/// Why the portal's answer leaves `change` (carried by a `kind` command) not done.
fn not_done_reason(kind: Kind, change: &Change) -> String {
    match (kind, change) {
        (Kind::SetOwner, _) => "the portal did not make the user the owner".into(),
        (Kind::Invite, _) => "not done: already related or not invitable (the portal skips users who are already members, invited, waiting or banned, the caller, and users it may not invite)".into(),
        (Kind::Add, _) => "the portal did not add the user (it skips users who do not exist or already have a pending request, invitation or ban in the group)".into(),
        (Kind::Update(_), Change::Accept { .. }) => "the portal did not admit the user (the request may have been withdrawn or answered meanwhile)".into(),
        (Kind::Update(r), _) => format!("the portal did not make the user {r} (it skips the owner, users who already have the role and non-members)"),
        (Kind::Delete, _) => "the portal did not remove the user (it skips the owner and users who are not in the group)".into(),
    }
}

/// Record a command's verdict for every change it carried, from every answer it got: a user
/// listed by any successful answer is done (a re-sent command answers `[]` for users its
/// first run already handled; `setowner` answers `true`); otherwise not done if the portal
/// answered at all, else failed with the last error. A command interrupted before the portal
/// could have run it is not started.
fn judge(
    w: &Write,
    answers: &Answers,
    changes: &[(GroupId, Change)],
    verdicts: &mut [Vec<OpStatus>],
) {
    let mut confirmed = BTreeSet::new();
    let mut answered = false;
    let mut last_error = None;
    for a in &answers.got {
        match a {
            // setowner answers `true`: the one user it carries is done.
            Ok(v) if w.kind == Kind::SetOwner && wire::flag(v).is_some() => {
                answered = true;
                if wire::flag(v) == Some(true) {
                    confirmed.extend(w.carries.iter().map(|(_, u)| u.expect_num()));
                }
            }
            Ok(v) => match wire::id_list(v) {
                Some(ids) if w.kind != Kind::SetOwner => {
                    answered = true;
                    confirmed.extend(ids);
                }
                _ => last_error = Some(format!("{}: unexpected result {v}", w.command.method)),
            },
            Err(e) => last_error = Some(e.clone()),
        }
    }
    for &(i, user) in &w.carries {
        let status = if answers.interrupted && !answers.executed {
            OpStatus::NotStarted
        } else if confirmed.contains(&user.expect_num()) {
            OpStatus::Done
        } else if answered {
            OpStatus::NotDone {
                reason: not_done_reason(w.kind, &changes[i].1),
            }
        } else {
            OpStatus::Failed {
                error: last_error
                    .clone()
                    .or_else(|| answers.uncertain.clone())
                    .unwrap_or_else(|| "no answer".into()),
            }
        };
        verdicts[i].push(status);
    }
}

#[cfg(test)]
mod tests;
