//! The Bitrix24 provider: reads memberships with `sonet_group.user.get` and writes with
//! `sonet_group.user.add/update/delete`, always through `batch` (up to 50 commands a request).
//!
//! Writes are coalesced: per group one `add` with every new user, one `update` per target role,
//! one `delete` with every removed user (the methods take arrays of `USER_ID`). Each command's
//! result array is checked user by user, so a user the portal silently skipped is reported as
//! not done rather than counted as success.
//!
//! Pacing and retries: requests pass a model of the portal's leaky bucket (`limits`) and the
//! per-method operating-time tracker; up to `concurrency` batches are in flight, a group's
//! commands always in order. Transient failures are retried within one budget per chunk. Every
//! answer a command gets is kept; changes no answer confirmed are settled by reading their
//! groups again, so a lost response never reads as a failure.
//!
//! Errors keep "the API said no" (`ApiError`: method, code, description, HTTP status) apart from
//! "the HTTP call failed" (`TransportError`). The webhook code never appears in either.

pub mod limits;
pub mod webhook;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::model::{CurrentGroup, CurrentState, GroupId, OpStatus, Role, UserId};
use crate::plan::Change;
use crate::provider::{CancellationToken, FetchError, OnProgress};
pub use limits::RateProfile;
use limits::{Bucket, Operating};
pub use webhook::{Secret, Webhook, WebhookError};
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

/// The HTTP exchange itself failed: no connection, a timeout, or an answer that is not the
/// documented JSON envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{method}: {detail}")]
pub struct TransportError {
    pub method: String,
    pub status: Option<u16>,
    pub detail: String,
    /// No connection could be made (refused, unreachable, DNS): worth only a few quick tries,
    /// since it is more often a wrong address than a passing hiccup.
    pub connect: bool,
}

/// Attempts for a request whose connection fails (the first included).
const CONNECT_ATTEMPTS: u32 = 3;

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

    /// Worth another try soon: the request limit (503), server errors (500, 502–504),
    /// timeouts and dropped connections. Never answers that mean "no" (auth, permission,
    /// validation), redirects, or a 200 that is not the documented JSON.
    fn is_transient(&self) -> bool {
        match self {
            CallError::Api(e) => {
                e.code == "QUERY_LIMIT_EXCEEDED" || matches!(e.status, Some(500 | 502..=504))
            }
            CallError::Transport(e) => match e.status {
                None => true,
                Some(s) => s == 429 || s >= 500,
            },
        }
    }
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
    /// Attempts per request (and per command inside a batch), the first included.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with ±25 % jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
    /// The portal's request-intensity limit, mirrored client-side (`None`: no pacing).
    pub rate: Option<RateProfile>,
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
            timeout: Duration::from_secs(70),
            rate: Some(RateProfile::CLOUD),
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
    /// Requests and batch commands sent again after a transient failure.
    pub retries: u64,
}

/// A Bitrix24 portal reached through an incoming webhook.
pub struct Client {
    http: reqwest::Client,
    webhook: Webhook,
    options: Options,
    bucket: Option<Bucket>,
    operating: Operating,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// The outcome of one command inside a batch.
type CommandResult = Result<Value, ApiError>;

/// What one unit of work (a chunk of commands) may still spend on retries: transient failures
/// (up to `max_attempts - 1`) and throttling waits (up to `MAX_THROTTLED`), shared by the
/// re-sends of deferred commands and the retries of whole requests.
#[derive(Debug, Default)]
struct Budget {
    retries: u32,
    throttled: u32,
}

/// Every answer one command got, in order: more than one when it was sent again.
type Answers = Vec<Result<Value, String>>;

/// The length of the portal's operating-time window; no budget wait is longer.
const OPERATING_WINDOW: Duration = Duration::from_secs(600);

/// Throttling answers (429) tolerated per request or chunk: with waits doubling to two minutes
/// they cover the portal's ten-minute operating window.
const MAX_THROTTLED: u32 = 12;

impl Client {
    pub fn new(webhook: Webhook, options: Options) -> Result<Client, TransportError> {
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(10))
            // A portal that moved answers 302; following it blindly could send the code elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError {
                connect: false,
                method: "client".into(),
                status: None,
                detail: e.without_url().to_string(),
            })?;
        Ok(Client {
            http,
            webhook,
            bucket: options.rate.map(Bucket::new),
            operating: Operating::new(options.operating_limit_s, options.operating_margin_s),
            options,
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// One HTTP call of `method` with a JSON body, paced by the bucket and the operating-time
    /// budget of `method` and of `sub_methods` (a batch's commands), retried while the failure
    /// is transient, within `budget`. Returns the whole answer (`result` and `time`).
    async fn call(
        &self,
        method: &str,
        sub_methods: &BTreeSet<&str>,
        body: &Value,
        budget: &mut Budget,
    ) -> Result<Value, CallError> {
        let methods: Vec<&str> = std::iter::once(method)
            .chain(sub_methods.iter().copied())
            .collect();
        loop {
            let pause = methods
                .iter()
                .map(|m| self.operating.wait_for(m))
                .max()
                .unwrap_or_default();
            if !pause.is_zero() {
                info!(%method, secs = pause.as_secs(), "pausing until the operating-time budget resets");
                tokio::time::sleep(pause).await;
            }
            if let Some(bucket) = &self.bucket {
                tokio::time::sleep(bucket.reserve()).await;
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let e = match self.call_once(method, body).await {
                Ok(v) => {
                    if let Some(t) = v.get("time") {
                        self.observe_time(method, t);
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            let delay = if e.is_throttle() && budget.throttled < MAX_THROTTLED {
                budget.throttled += 1;
                self.throttle(&methods, budget.throttled)
            } else if e.is_transient() && budget.retries + 1 < self.attempts_for(&e) {
                if let CallError::Api(api) = &e
                    && api.code == "QUERY_LIMIT_EXCEEDED"
                {
                    self.bucket_full();
                }
                budget.retries += 1;
                backoff(&self.options, budget.retries)
            } else {
                return Err(e);
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            info!(%method, delay_ms = delay.as_millis() as u64, "retrying after: {e}");
            tokio::time::sleep(delay).await;
        }
    }

    /// How many attempts an error of this kind deserves.
    fn attempts_for(&self, e: &CallError) -> u32 {
        match e {
            CallError::Transport(t) if t.connect => CONNECT_ATTEMPTS.min(self.options.max_attempts),
            _ => self.options.max_attempts,
        }
    }

    /// The model of the portal's bucket is full: a 503 said so.
    fn bucket_full(&self) {
        if let Some(b) = &self.bucket {
            b.mark_full();
        }
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

    /// Replace the webhook code in text that came from the network (an error page may echo the
    /// request path), so it cannot reach a message or a log.
    fn scrub(&self, text: &str) -> String {
        self.webhook.scrub(text)
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

    async fn call_once(&self, method: &str, body: &Value) -> Result<Value, CallError> {
        let started = std::time::Instant::now();
        let transport = |status: Option<u16>, detail: String| TransportError {
            method: method.to_owned(),
            status,
            detail,
            connect: false,
        };
        let response = self
            .http
            .post(self.webhook.method_url(method))
            .json(body)
            .send()
            .await
            // reqwest puts the URL, and so the webhook code, in its messages: describe_reqwest
            // drops it, and scrub catches any copy in the source chain.
            .map_err(|e| TransportError {
                connect: e.is_connect(),
                ..transport(None, self.scrub(&describe_reqwest(e)))
            })?;
        let status = response.status().as_u16();
        // A body cut off mid-read is no answer at all (status None): the write may or may not
        // have happened, and the request is worth repeating.
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport(None, self.scrub(&describe_reqwest(e))))?;
        debug!(%method, status, bytes = bytes.len(), ms = started.elapsed().as_millis() as u64, "response");
        // Scrub the whole answer once, before anything is built from it: any text a portal or
        // proxy sends back (error pages, echoed paths, odd results) may quote the request URL.
        let text = self.scrub(&String::from_utf8_lossy(&bytes));
        let parsed: Result<Value, _> = serde_json::from_str(&text);
        match parsed {
            Ok(v) => {
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
                        Some(status),
                        format!("HTTP {status} without an error body"),
                    )
                    .into());
                }
                if v.get("result").is_none() {
                    return Err(transport(Some(status), "answer has no `result`".into()).into());
                }
                Ok(v)
            }
            Err(_) => {
                let snippet: String = text.chars().take(200).collect();
                Err(transport(
                    Some(status),
                    format!("HTTP {status}, not JSON: {snippet:?}"),
                )
                .into())
            }
        }
    }

    /// Run up to `BATCH_MAX` commands in one `batch` request (`halt=0`), returning each
    /// command's own result or error, in order.
    async fn batch(
        &self,
        cmds: &[&Command],
        budget: &mut Budget,
    ) -> Result<Vec<CommandResult>, CallError> {
        assert!(cmds.len() <= BATCH_MAX, "callers chunk batches");
        let (names, body) = batch_body(cmds);
        let methods: BTreeSet<&str> = cmds.iter().map(|c| c.method).collect();
        debug!(commands = cmds.len(), "batch");
        tracing::trace!(%body, "batch body");
        let answer = self.call("batch", &methods, &body, budget).await?;
        let result = &answer["result"];
        for (c, name) in cmds.iter().zip(&names) {
            if let Some(t) = wire::section(result, "result_time", name) {
                self.observe_time(c.method, t);
            }
        }
        Ok(cmds
            .iter()
            .zip(&names)
            .map(|(c, name)| {
                if let Some(e) =
                    wire::section(result, "result_error", name).and_then(wire::error_body)
                {
                    return Err(ApiError {
                        method: c.method.to_owned(),
                        code: e.code,
                        description: e.description,
                        status: None,
                    });
                }
                wire::section(result, "result", name)
                    .cloned()
                    .ok_or_else(|| ApiError {
                        method: c.method.to_owned(),
                        code: String::new(),
                        description: "the batch answer has no result for this command".into(),
                        status: None,
                    })
            })
            .collect())
    }

    /// Run one chunk of commands (≤ `BATCH_MAX`) as a batch, and every answer each command
    /// got. Commands the portal deferred inside the batch (`QUERY_LIMIT_EXCEEDED`,
    /// `OPERATION_TIME_LIMIT` in `result_error`) are sent again together with every later
    /// command of the same group, so a group's commands still run in order (a promote after a
    /// deferred add). Nothing is thrown away: if a re-send fails as a whole, the commands it
    /// carried get that error as one more answer, and earlier answers stand.
    async fn run_chunk(&self, chunk: &[(GroupId, Command)]) -> Vec<Answers> {
        let mut answers: Vec<Answers> = vec![Vec::new(); chunk.len()];
        let mut pending: Vec<usize> = (0..chunk.len()).collect();
        // One budget for the chunk: re-sends here and retries inside `call` draw on it alike.
        let mut budget = Budget::default();
        while !pending.is_empty() {
            let cmds: Vec<&Command> = pending.iter().map(|&i| &chunk[i].1).collect();
            let results = match self.batch(&cmds, &mut budget).await {
                Ok(results) => results,
                Err(e) => {
                    for &i in &pending {
                        answers[i].push(Err(e.to_string()));
                    }
                    break;
                }
            };
            let mut again = Vec::new();
            let mut tainted = BTreeSet::new();
            let (mut throttle, mut limited) = (false, false);
            for (&i, r) in pending.iter().zip(results) {
                let group = chunk[i].0;
                let deferred = matches!(&r, Err(e) if is_deferral(e));
                throttle |= matches!(&r, Err(e) if e.code == "OPERATION_TIME_LIMIT");
                limited |= matches!(&r, Err(e) if e.code == "QUERY_LIMIT_EXCEEDED");
                answers[i].push(r.map_err(|e| e.to_string()));
                if deferred || tainted.contains(&group) {
                    tainted.insert(group);
                    again.push(i);
                }
            }
            if again.is_empty() {
                break;
            }
            if limited {
                self.bucket_full();
            }
            let delay = if throttle && budget.throttled < MAX_THROTTLED {
                budget.throttled += 1;
                let methods: Vec<&str> = again.iter().map(|&i| chunk[i].1.method).collect();
                self.throttle(&methods, budget.throttled)
            } else if !throttle && budget.retries + 1 < self.options.max_attempts {
                budget.retries += 1;
                backoff(&self.options, budget.retries)
            } else {
                break;
            };
            self.retries
                .fetch_add(again.len() as u64, Ordering::Relaxed);
            info!(
                commands = again.len(),
                "re-sending commands the portal deferred"
            );
            tokio::time::sleep(delay).await;
            pending = again;
        }
        answers
    }

    /// Run commands in chunks of `BATCH_MAX`, up to `concurrency` chunks at once. A chunk that
    /// starts with the same group the previous chunk ended with waits for it, so a group's
    /// commands (add before promote) keep their order. Answers come back in input order.
    async fn run_all(
        &self,
        commands: &[(GroupId, Command)],
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
    ) -> Vec<Answers> {
        let chunks: Vec<&[(GroupId, Command)]> = commands.chunks(BATCH_MAX).collect();
        let (done_tx, done_rx): (Vec<_>, Vec<_>) =
            chunks.iter().map(|_| watch::channel(false)).unzip();
        let tasks = chunks.iter().enumerate().map(|(i, chunk)| {
            let after = (i > 0 && chunks[i - 1].last().map(|c| c.0) == chunk.first().map(|c| c.0))
                .then(|| done_rx[i - 1].clone());
            let done = &done_tx[i];
            async move {
                if let Some(mut rx) = after {
                    let _ = rx.wait_for(|d| *d).await;
                }
                if stop.is_cancelled() {
                    // Never sent: no answers at all, which `judge` reports as not started.
                    let _ = done.send(true);
                    return (i, vec![Vec::new(); chunk.len()]);
                }
                let out = self.run_chunk(chunk).await;
                let _ = done.send(true);
                on_progress(chunk.len());
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

    /// Read the members of `groups` (`sonet_group.user.get`, 50 groups a batch). Every group
    /// that cannot be read is reported, not just the first.
    pub async fn fetch(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
    ) -> Result<CurrentState, FetchError> {
        let (state, failed) = self.read(groups, on_progress).await;
        if failed.is_empty() {
            Ok(state)
        } else {
            Err(FetchError::Groups(failed))
        }
    }

    /// Read what can be read: the groups that answered, and each other group with its error.
    async fn read(
        &self,
        groups: &[GroupId],
        on_progress: OnProgress<'_>,
    ) -> (CurrentState, Vec<(GroupId, String)>) {
        let cmds: Vec<(GroupId, Command)> = groups
            .iter()
            .map(|g| (*g, Command::new("sonet_group.user.get").param("ID", g.0)))
            .collect();
        let mut state = CurrentState::default();
        let mut failed = Vec::new();
        for (g, answers) in groups.iter().zip(
            self.run_all(&cmds, on_progress, &CancellationToken::new())
                .await,
        ) {
            // Reads are idempotent: the last successful answer is the freshest.
            let last_ok = answers.iter().rev().find_map(|a| a.as_ref().ok());
            let read = match (last_ok, answers.last()) {
                (Some(v), _) => members(v),
                (None, Some(Err(e))) => Err(e.clone()),
                (None, _) => Err("no answer".to_owned()),
            };
            match read {
                Ok(members) => {
                    state.groups.insert(*g, members);
                }
                Err(e) => failed.push((*g, e)),
            }
        }
        (state, failed)
    }

    /// Carry out `changes`; one status per change, in input order.
    ///
    /// A change is done when any answer to a command carrying it lists the user. When some
    /// change is not confirmed that way (a lost response, a refused re-send, somebody else's
    /// edit), its groups are read again: a change the portal shows as made is `Confirmed`, and
    /// one whose answers were lost or refused and whose group cannot be read is `Failed` with an
    /// unknown outcome, never "the portal skipped it". The report says what the portal holds,
    /// not what the wire happened to deliver.
    pub async fn execute(
        &self,
        changes: &[(GroupId, Change)],
        on_progress: OnProgress<'_>,
        stop: &CancellationToken,
    ) -> Vec<OpStatus> {
        let writes = coalesce(changes);
        let cmds: Vec<(GroupId, Command)> = writes
            .iter()
            .map(|w| (w.group, w.command.clone()))
            .collect();
        // Every command's verdict on each change it carried; a change is done when all agree.
        let mut verdicts: Vec<Vec<OpStatus>> = vec![Vec::new(); changes.len()];
        // Whether some command carrying the change got an error or more than one answer.
        let mut unsure = vec![false; changes.len()];
        for (w, answers) in writes
            .iter()
            .zip(self.run_all(&cmds, on_progress, stop).await)
        {
            judge(w, &answers, &mut verdicts);
            if answers.len() > 1 || answers.iter().any(Result::is_err) {
                for &(i, _) in &w.carries {
                    unsure[i] = true;
                }
            }
        }
        let mut statuses: Vec<OpStatus> = verdicts
            .into_iter()
            .map(|v| {
                v.into_iter()
                    .find(|s| !s.is_done())
                    .unwrap_or(OpStatus::Done)
            })
            .collect();
        let recheck: BTreeSet<GroupId> = changes
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| !s.is_done())
            .map(|((g, _), _)| *g)
            .collect();
        if recheck.is_empty() {
            return statuses;
        }
        let groups: Vec<GroupId> = recheck.into_iter().collect();
        let (now, unread) = self.read(&groups, &|_| {}).await;
        let unread: BTreeMap<GroupId, String> = unread.into_iter().collect();
        for (i, ((g, change), status)) in changes.iter().zip(statuses.iter_mut()).enumerate() {
            if status.is_done() {
                continue;
            }
            if now.groups.get(g).is_some_and(|m| holds(m, change)) {
                info!(group = %g, user = %change.user(), "change confirmed by reading the group again");
                *status = OpStatus::Confirmed;
            } else if let (Some(e), true, OpStatus::NotDone { .. }) =
                (unread.get(g), unsure[i], &status)
            {
                *status = OpStatus::Failed {
                    error: format!(
                        "outcome unknown: an answer was lost or refused, and reading the group again failed ({e})"
                    ),
                };
            }
        }
        statuses
    }
}

/// Whether `group` shows `change` as made.
fn holds(group: &CurrentGroup, change: &Change) -> bool {
    match *change {
        Change::Add { user, role } | Change::SetRole { user, to: role, .. } => {
            group.members.get(&user) == Some(&role)
        }
        Change::Remove { user, .. } => !group.members.contains_key(&user),
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

/// `[{"USER_ID":"1","ROLE":"A"},…]` into members. Rows with roles other than A/E/K (which the
/// method does not return) are ignored.
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
                group.members.insert(UserId(u), r);
            }
            _ => debug!(%row, "ignoring membership row"),
        }
    }
    Ok(group)
}

/// How many commands `changes` coalesce into.
pub fn command_count(changes: &[(GroupId, Change)]) -> usize {
    coalesce(changes).len()
}

/// What a write command is for, to judge its result. The derived order is the execution order
/// within a group: add, promote to moderator, set member, delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Add,
    Update(Role),
    Delete,
}

/// One coalesced write command and the changes (index, user) it carries.
#[derive(Debug, Clone)]
struct Write {
    group: GroupId,
    kind: Kind,
    command: Command,
    carries: Vec<(usize, UserId)>,
}

/// Coalesce changes into the fewest commands: per group an add, an update per target role and a
/// delete, in that order (a new moderator is added, then promoted).
fn coalesce(changes: &[(GroupId, Change)]) -> Vec<Write> {
    let mut per_group: BTreeMap<GroupId, BTreeMap<Kind, Vec<(usize, UserId)>>> = BTreeMap::new();
    for (i, (g, change)) in changes.iter().enumerate() {
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
            Change::SetRole { user, to, .. } => {
                slots.entry(Kind::Update(to)).or_default().push((i, user))
            }
            Change::Remove { user, .. } => slots.entry(Kind::Delete).or_default().push((i, user)),
        }
    }
    let mut writes = Vec::new();
    for (g, slots) in per_group {
        for (kind, carries) in slots {
            let users = carries.iter().map(|(_, u)| u.0);
            let command = match kind {
                Kind::Add => Command::new("sonet_group.user.add"),
                Kind::Update(_) => Command::new("sonet_group.user.update"),
                Kind::Delete => Command::new("sonet_group.user.delete"),
            }
            .param("GROUP_ID", g.0)
            .list("USER_ID", users);
            let command = match kind {
                Kind::Update(Role::Moderator) => command.param("ROLE", "E"),
                Kind::Update(_) => command.param("ROLE", "K"),
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

/// Record a command's verdict for every change it carried, from every answer it got: a user
/// listed by any successful answer is done (a re-sent command answers `[]` for users its
/// first run already handled); otherwise not done if the portal answered at all, else failed
/// with the last error.
fn judge(w: &Write, answers: &[Result<Value, String>], verdicts: &mut [Vec<OpStatus>]) {
    let mut confirmed = BTreeSet::new();
    let mut answered = false;
    let mut last_error = None;
    for a in answers {
        match a {
            Ok(v) => match wire::id_list(v) {
                Some(ids) => {
                    answered = true;
                    confirmed.extend(ids);
                }
                None => last_error = Some(format!("{}: unexpected result {v}", w.command.method)),
            },
            Err(e) => last_error = Some(e.clone()),
        }
    }
    for &(i, user) in &w.carries {
        let status = if answers.is_empty() {
            OpStatus::NotStarted
        } else if confirmed.contains(&user.0) {
            OpStatus::Done
        } else if answered {
            OpStatus::NotDone {
                reason: match w.kind {
                    Kind::Add => "the portal did not add the user (it skips users who do not exist or already have a pending request, invitation or ban in the group)".into(),
                    Kind::Update(r) => format!("the portal did not make the user {r} (it skips the owner, users who already have the role and non-members)"),
                    Kind::Delete => "the portal did not remove the user (it skips the owner and users who are not in the group)".into(),
                },
            }
        } else {
            OpStatus::Failed {
                error: last_error.clone().unwrap_or_else(|| "no answer".into()),
            }
        };
        verdicts[i].push(status);
    }
}

#[cfg(test)]
mod tests;
