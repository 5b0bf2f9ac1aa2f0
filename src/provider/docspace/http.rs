//! The DocSpace client's HTTP layer: one request with its retries (`Client::call`), the
//! shared hold after a 429, the concurrency limits, the run-wide breaker, reading an answer
//! into the envelope or an error, and checking the portal's address and the credentials.
//! Only here do the credentials meet the wire: the `Authorization` header, built once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Auth, Client, ClientError, MIN_SECRET_LEN, Options, wire};
use crate::provider::CancellationToken;
use crate::provider::bitrix24::webhook::scrub_secret;

/// The portal answered with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{request}: HTTP {status}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
pub struct ApiError {
    /// `GET group/…`: the method and the path under `/api/2.0/`.
    pub request: String,
    pub status: u16,
    /// The portal's `error.message` (or the validation answer's title and errors).
    pub message: Option<String>,
    /// For a 429: how long the portal asked to wait, when it said.
    pub wait: Option<Duration>,
    /// For a 429: the window's size in requests (`X-RateLimit-Limit`), when it said.
    pub limit: Option<usize>,
}

/// The HTTP exchange itself failed: no connection, no answer in time, or an answer that is not
/// the documented JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{request}: {detail}")]
pub struct TransportError {
    pub request: String,
    pub status: Option<u16>,
    pub detail: String,
    pub kind: TransportKind,
}

/// How an HTTP exchange failed, which decides whether the portal may have acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No connection could be made: the request was not sent.
    Connect,
    /// No answer within the timeout: the portal may have acted, and may still be acting.
    Timeout,
    /// The connection dropped before an answer: the portal may have acted.
    NoAnswer,
    /// An answer began but was cut off.
    Truncated,
    /// A complete answer that is not the documented JSON (an HTML page, a redirect).
    BadAnswer,
    /// Not sent: the breaker has tripped.
    NotSent,
    /// Not sent: the run was interrupted.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl CallError {
    fn is_rate_limit(&self) -> bool {
        matches!(self, CallError::Api(e) if e.status == 429)
    }

    /// A gateway's "the service behind me is down": 502, 503, 504.
    fn is_gateway(&self) -> bool {
        matches!(self, CallError::Api(e) if matches!(e.status, 502..=504))
    }

    /// Worth another try: 429, server errors, no answer, an answer cut off. Never answers
    /// that mean no (401, 403, 404, 400), redirects, or complete answers that are not JSON.
    fn is_transient(&self) -> bool {
        match self {
            CallError::Api(e) => matches!(e.status, 429 | 500 | 502..=504),
            CallError::Transport(e) => matches!(
                e.kind,
                TransportKind::Connect
                    | TransportKind::Timeout
                    | TransportKind::NoAnswer
                    | TransportKind::Truncated
            ),
        }
    }

    /// The portal did not answer at all.
    fn is_no_answer(&self) -> bool {
        matches!(self, CallError::Transport(e) if matches!(e.kind, TransportKind::Connect | TransportKind::Timeout | TransportKind::NoAnswer))
    }

    /// The request may have reached the portal and been carried out with no trustworthy
    /// answer saying so: a 5xx, no answer in time, a dropped connection, an answer cut off
    /// or not the envelope.
    fn may_have_acted(&self) -> bool {
        match self {
            CallError::Api(e) => e.status >= 500,
            CallError::Transport(e) => matches!(
                e.kind,
                TransportKind::Timeout
                    | TransportKind::NoAnswer
                    | TransportKind::Truncated
                    | TransportKind::BadAnswer
            ),
        }
    }

    fn timed_out(&self) -> bool {
        matches!(self, CallError::Transport(e) if e.kind == TransportKind::Timeout)
    }

    fn is_interrupted(&self) -> bool {
        matches!(self, CallError::Transport(e) if e.kind == TransportKind::Interrupted)
    }

    fn notice_key(&self) -> &'static str {
        match self {
            CallError::Api(e) if e.status == 429 => "rate",
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

/// One request: the method, the path under `/api/2.0/`, the query and the JSON body.
#[derive(Debug, Clone)]
pub(super) struct Req {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
}

impl Req {
    pub(super) fn get(path: impl Into<String>) -> Req {
        Req {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: None,
        }
    }

    pub(super) fn with_body(method: Method, path: impl Into<String>, body: Value) -> Req {
        Req {
            method,
            path: path.into(),
            query: Vec::new(),
            body: Some(body),
        }
    }

    pub(super) fn query(mut self, key: &'static str, value: impl ToString) -> Req {
        self.query.push((key, value.to_string()));
        self
    }

    /// `GET people/email?email=…`, for messages (the query holds no secret).
    pub(super) fn shown(&self) -> String {
        if self.query.is_empty() {
            return format!("{} {}", self.method, self.path);
        }
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{} {}?{}", self.method, self.path, query.join("&"))
    }

    fn is_read(&self) -> bool {
        self.method == Method::GET
    }
}

/// A successful answer: the envelope, or no content.
#[derive(Debug, Clone)]
pub(super) enum Reply {
    Envelope(wire::Envelope),
    NoContent,
}

impl Reply {
    pub(super) fn response(&self) -> Option<&Value> {
        match self {
            Reply::Envelope(e) => Some(&e.response),
            Reply::NoContent => None,
        }
    }
}

/// What became of a request beyond its result.
#[derive(Debug, Clone, Default)]
pub(super) struct Trace {
    /// Why the portal may have carried it out without a trustworthy answer saying so: the
    /// first such attempt's failure.
    pub(super) uncertain: Option<String>,
    /// An attempt timed out.
    pub(super) still_running: bool,
    /// The run was interrupted before a final answer.
    pub(super) interrupted: bool,
}

/// The run-wide breaker: once tripped, every request fails at once with its cause.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    pub(super) tripped: CancellationToken,
    cause: OnceLock<String>,
}

impl Breaker {
    pub(super) fn trip(&self, cause: String) {
        if self.cause.set(cause).is_ok() {
            debug!(cause = self.cause(), "breaker tripped");
        }
        self.tripped.cancel();
    }

    pub(super) fn cause(&self) -> Option<&str> {
        self.cause.get().map(String::as_str)
    }
}

/// No more than one retry line per cause per this long at the default verbosity.
const NOTICE_EVERY: Duration = Duration::from_secs(5);

/// Rate-limited `warn!` lines, keyed by cause.
#[derive(Debug, Default)]
pub(super) struct Notices {
    last: Mutex<BTreeMap<&'static str, Instant>>,
    said: Mutex<BTreeSet<&'static str>>,
}

impl Notices {
    pub(super) fn once(&self, key: &'static str, line: impl FnOnce() -> String) {
        if self.said.lock().expect("notices lock").insert(key) {
            warn!("{}", line());
        }
    }

    pub(super) fn warn(&self, key: &'static str, line: impl FnOnce() -> String) {
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

/// What the client knows of the portal's window (`Client::pace`).
#[derive(Debug, Default)]
pub(super) struct Window {
    pub(super) limit: Option<usize>,
    pub(super) sent: std::collections::VecDeque<Instant>,
}

/// The portal's rate-limit window: 1,500 requests a minute, sliding (reference §5). Its size
/// is learnt from a 429's `X-RateLimit-Limit`; the length is the documented minute.
pub(super) const WINDOW: Duration = Duration::from_secs(60);
/// Added to the window: the portal counts a request when it arrives.
const WINDOW_MARGIN: Duration = Duration::from_millis(500);
/// Sends remembered for the window (the largest window roster keeps to).
const MAX_RECORDED: usize = 100_000;
/// The least wait after a 429: `Retry-After` is whole seconds, truncated, so `0` means "less
/// than a second".
const MIN_RATE_WAIT: Duration = Duration::from_secs(1);
/// 429s allowed per request, as a multiple of `max_attempts`: the window makes them rare, and
/// every wait is bounded by `max_wait` anyway.
const RATE_ALLOWANCE: u32 = 4;

/// The connect part of the request timeout, at most.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// One request, retried while the failure is transient, within `max_attempts` (one attempt
    /// in a `hurry`). Fails at once, sending nothing, when `stop` is cancelled or the breaker
    /// has tripped, also in the middle of a wait.
    pub(super) async fn call(
        &self,
        req: &Req,
        stop: &CancellationToken,
        hurry: bool,
    ) -> (Result<Reply, CallError>, Trace) {
        let mut trace = Trace::default();
        let mut last: Option<CallError> = None;
        // Attempts that failed for another reason than the rate limit, and 429s: each has its
        // own allowance, so a busy window does not use up the retries a 5xx may need.
        let (mut attempt, mut refused) = (0, 0);
        loop {
            if let Err(e) = self.ready(req, stop).await {
                return stopped(e, last, trace);
            }
            let semaphore = if req.is_read() {
                &self.reads
            } else {
                &self.writes
            };
            let permit = tokio::select! {
                biased;
                _ = stop.cancelled() => None,
                _ = self.breaker.tripped.cancelled() => None,
                p = semaphore.acquire() => p.ok(),
            };
            if let Err(e) = self.may_send(req, stop) {
                return stopped(e, last, trace);
            }
            // Within the portal's window as learnt from a 429: wait for room, then take it.
            if let Err(e) = self.pace(req, stop).await {
                return stopped(e, last, trace);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = self.send_once(req).await;
            drop(permit);
            let e = match result {
                Ok(reply) => return (Ok(reply), trace),
                Err(e) => e,
            };
            if e.may_have_acted() && trace.uncertain.is_none() {
                trace.uncertain = Some(e.to_string());
            }
            trace.still_running |= e.timed_out();
            if let CallError::Api(a) = &e
                && a.status == 401
            {
                let cause = self.refused_credentials();
                self.breaker.trip(cause.clone());
                let e = ApiError {
                    message: Some(cause),
                    ..a.clone()
                };
                return (Err(e.into()), trace);
            }
            if e.is_rate_limit() {
                refused += 1;
            } else {
                attempt += 1;
            }
            let Some(delay) = self.next_try(&e, attempt, refused, hurry) else {
                return (Err(e), trace);
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            last = Some(e);
            if let Err(e) = self.sleep(req, delay, stop).await {
                return stopped(e, last, trace);
            }
        }
    }

    /// The breaker's cause for credentials the portal refused (also the 401's message).
    fn refused_credentials(&self) -> String {
        let from = self
            .options
            .credentials_source
            .as_deref()
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        format!(
            "the DocSpace portal {} refused {}{from} (HTTP 401): it is wrong, revoked or expired, or it belongs to another portal",
            self.host,
            self.auth.what()
        )
    }

    /// Whether to try `e`'s request again (after `attempt` attempts) and after how long. `None`:
    /// give up; a request the portal never answered, answered only with gateway errors, or
    /// kept refusing for its rate limit trips the breaker as it gives up.
    fn next_try(&self, e: &CallError, attempt: u32, refused: u32, hurry: bool) -> Option<Duration> {
        if !e.is_transient() {
            return None;
        }
        let max = self.options.max_attempts.max(1);
        if e.is_rate_limit() {
            let (asked, limit) = match e {
                CallError::Api(a) => (a.wait, a.limit),
                CallError::Transport(_) => (None, None),
            };
            // A concurrency limit (15 writes) may answer with the same header; a window is larger.
            // (The 50-GET limit is never reached: roster sends at most `concurrent_reads`.)
            if let Some(limit) = limit.filter(|l| *l > super::MAX_CONCURRENT_WRITES) {
                self.learn_window(limit);
            }
            // `Retry-After: 0` (whole seconds, truncated) means "within the second".
            let wait = asked
                .map(|w| w.max(MIN_RATE_WAIT))
                .unwrap_or_else(|| rate_backoff(&self.options, refused));
            let (attempt, max) = (refused, max.saturating_mul(RATE_ALLOWANCE));
            if wait > self.options.max_wait {
                self.breaker.trip(format!(
                    "{e}: the portal's rate limit asks roster to wait {}, more than it ever waits ({}); try again later",
                    human(wait),
                    human(self.options.max_wait)
                ));
                return None;
            }
            if hurry || attempt >= max {
                if !hurry {
                    self.breaker.trip(format!(
                        "{e}: the portal refused {} for its rate limit; giving up",
                        attempts(attempt)
                    ));
                }
                return None;
            }
            self.hold_for(wait);
            self.notices.warn(e.notice_key(), || {
                format!(
                    "{e}: the portal's rate limit; waiting {} before trying again (attempt {} of {max})",
                    human(wait),
                    attempt + 1
                )
            });
            return Some(wait);
        }
        if hurry || attempt >= max {
            if !hurry && (e.is_no_answer() || e.is_gateway()) {
                self.breaker.trip(format!(
                    "{e} ({}); giving up on the portal",
                    attempts(attempt)
                ));
            }
            return None;
        }
        let delay = backoff(&self.options, attempt);
        self.notices.warn(e.notice_key(), || {
            format!(
                "{e}; retrying (attempt {} of {max}) in {}",
                attempt + 1,
                human(delay)
            )
        });
        Some(delay)
    }

    /// Remember the portal's window (`limit` requests in `WINDOW`), learnt from a 429.
    pub(super) fn learn_window(&self, limit: usize) {
        let mut w = self.window.lock().expect("window lock");
        if w.limit.is_none_or(|l| limit < l) {
            debug!(host = %self.host, limit, "the portal's request window");
            w.limit = Some(limit.max(1));
        }
    }

    /// Take a place in the window for one request, waiting until the oldest of the last
    /// `limit` requests is out of it (a margin added: the portal counts arrivals, a little
    /// after roster's sends). Every send is recorded, so the window is right from the first
    /// 429 on.
    pub(super) async fn pace(&self, req: &Req, stop: &CancellationToken) -> Result<(), CallError> {
        loop {
            let wait = {
                let mut w = self.window.lock().expect("window lock");
                let now = Instant::now();
                while w
                    .sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW + WINDOW_MARGIN)
                {
                    w.sent.pop_front();
                }
                match w.limit {
                    Some(limit) if w.sent.len() >= limit => {
                        let oldest = w.sent[w.sent.len() - limit];
                        (oldest + WINDOW + WINDOW_MARGIN).saturating_duration_since(now)
                    }
                    _ => {
                        w.sent.push_back(now);
                        if w.sent.len() > MAX_RECORDED {
                            w.sent.pop_front();
                        }
                        return Ok(());
                    }
                }
            };
            self.notices.warn("window", || {
                format!(
                    "keeping to the DocSpace portal's rate limit: waiting {} for room in its one-minute window",
                    human(wait)
                )
            });
            self.sleep(req, wait.max(Duration::from_millis(1)), stop)
                .await?;
        }
    }

    /// Hold every request for `wait` from now (a 429).
    fn hold_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut hold = self.hold.lock().expect("hold lock");
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
        }
    }

    /// Wait out a hold, then check that the request may go.
    async fn ready(&self, req: &Req, stop: &CancellationToken) -> Result<(), CallError> {
        self.may_send(req, stop)?;
        let until = *self.hold.lock().expect("hold lock");
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                self.sleep(req, until - now, stop).await?;
            }
        }
        Ok(())
    }

    /// Fail without sending when the run was interrupted or the breaker has tripped.
    fn may_send(&self, req: &Req, stop: &CancellationToken) -> Result<(), CallError> {
        let not_sent = |kind, detail| {
            Err(CallError::Transport(TransportError {
                request: req.shown(),
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

    /// Wait `d`, or less: an interrupt or the breaker ends the wait at once.
    async fn sleep(
        &self,
        req: &Req,
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
        self.may_send(req, stop)
    }

    /// Send `req` once and read the answer: the envelope, or why not.
    async fn send_once(&self, req: &Req) -> Result<Reply, CallError> {
        let started = std::time::Instant::now();
        let shown = req.shown();
        let transport = |kind, status, detail| {
            CallError::Transport(TransportError {
                request: shown.clone(),
                status,
                detail,
                kind,
            })
        };
        let timed_out = || {
            format!(
                "no answer within {} (--timeout)",
                human(self.options.timeout)
            )
        };
        let mut url = self
            .base
            .join(&req.path)
            .map_err(|_| transport(TransportKind::BadAnswer, None, "not a valid path".into()))?;
        if !req.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(req.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut builder = self
            .http
            .request(req.method.clone(), url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/json");
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| {
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
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (retry_after, reset) = (header("retry-after"), header("x-ratelimit-reset"));
        let limit = header("x-ratelimit-limit");
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
        debug!(host = %self.host, method = %req.method, path = %req.path, status, bytes = bytes.len(), ms = started.elapsed().as_millis() as u64, "response");
        if (300..400).contains(&status) {
            return Err(transport(
                TransportKind::BadAnswer,
                Some(status),
                format!(
                    "HTTP {status}: the portal redirects elsewhere (not followed: credentials go only to the address given; check the portal's address)"
                ),
            ));
        }
        // Scrub the whole answer before anything is read from it: an error page may quote the
        // request, headers included.
        let text = self.scrub(&String::from_utf8_lossy(&bytes));
        match wire::read_answer(status, &text) {
            wire::Answer::Ok(envelope) => Ok(Reply::Envelope(envelope)),
            wire::Answer::NoContent => Ok(Reply::NoContent),
            wire::Answer::Refused { status, message } => {
                let wait = (status == 429)
                    .then(|| {
                        wire::rate_limit_wait(retry_after.as_deref(), reset.as_deref(), unix_now())
                    })
                    .flatten();
                Err(CallError::Api(ApiError {
                    request: shown.clone(),
                    status,
                    message: message.map(|m| self.scrub(&m)),
                    wait,
                    limit: (status == 429)
                        .then(|| limit.as_deref().and_then(wire::window_limit))
                        .flatten(),
                }))
            }
            // An error status with a page that is not the API's (a proxy's 502, a web
            // server's 404): the status is what counts.
            wire::Answer::Malformed { status, what, .. } if status >= 400 => {
                debug!(host = %self.host, status, %what, "an error answer that is not the API's");
                Err(CallError::Api(ApiError {
                    request: shown.clone(),
                    status,
                    message: None,
                    wait: None,
                    limit: None,
                }))
            }
            wire::Answer::Malformed {
                status,
                what,
                truncated,
            } => Err(transport(
                if truncated {
                    TransportKind::Truncated
                } else {
                    TransportKind::BadAnswer
                },
                Some(status),
                format!("HTTP {status}, {what}"),
            )),
        }
    }

    /// `text` with the secret masked wherever it appears (any case, percent-encoded,
    /// JSON-escaped).
    pub(super) fn scrub(&self, text: &str) -> String {
        scrub_secret(text, self.auth.secret())
    }
}

/// `https://host[:port][/prefix]/api/2.0/` and the host, from the address given: `https://`,
/// or `http://` for a loopback host only; no `user:password@`, query or fragment. A trailing
/// `/api/2.0` is taken as the API's root. The reason is safe to show; the URL may not be, so
/// only its scheme and host are.
pub(super) fn base_url_of(url: &str) -> Result<(reqwest::Url, String), ClientError> {
    let shown = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
            let host = authority.rsplit('@').next().unwrap_or_default();
            format!("{scheme}://{host}")
        }
        None => "(not a URL)".into(),
    };
    let fail = |why| ClientError::Url {
        shown: shown.clone(),
        why,
    };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| fail("not a valid URL"))?;
    let scheme = parsed.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(fail(
            "the scheme must be https (or http for a local sandbox)",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(fail(
            "user:password@ does not belong in the portal's address",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(fail("the portal's address takes no query or fragment"));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| fail("no host"))?
        .to_owned();
    if scheme == "http" && !is_loopback(&host) {
        return Err(fail(
            "http:// would send the credentials in clear text; use https:// (http is allowed only for loopback, e.g. the sandbox)",
        ));
    }
    let path = parsed.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/2.0").unwrap_or(path);
    let mut base = parsed.clone();
    base.set_path(&format!("{path}/api/2.0/"));
    let shown_host = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    Ok((base, shown_host))
}

/// `localhost`, 127.0.0.0/8 or `[::1]`, as the URL parser normalised it. (The same rule as
/// the Bitrix24 client's.)
fn is_loopback(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|a| a.is_loopback());
    }
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The `Authorization` header for `auth`, checked: an API key starts with `sk-` (DocSpace
/// takes any other Bearer value for a session token and refuses it); neither may be short or
/// hold characters a header cannot carry. Never echoes the secret.
pub(super) fn authorization(auth: &Auth) -> Result<HeaderValue, ClientError> {
    let secret = auth.secret().expose().trim();
    let secret = match auth {
        // Tolerated: a token pasted with its scheme.
        Auth::Token(_) => secret.strip_prefix("Bearer ").unwrap_or(secret).trim(),
        Auth::ApiKey(_) => secret,
    };
    let fail = |why: &str| Err(ClientError::Credentials(format!("{}: {why}", auth.what())));
    if secret.is_empty() {
        return fail("it is empty");
    }
    if matches!(auth, Auth::ApiKey(_)) && !secret.starts_with("sk-") {
        return fail(
            "a DocSpace API key starts with `sk-` (for a personal access token, give it as a token)",
        );
    }
    if secret.len() < MIN_SECRET_LEN {
        return fail(&format!("it is shorter than {MIN_SECRET_LEN} characters"));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return fail("it holds spaces or characters an HTTP header cannot carry");
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {secret}"))
        .or_else(|_| fail("it holds characters an HTTP header cannot carry"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// A reqwest error as text: its whole source chain, without the URL.
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

/// A request that could not go on (interrupted, or the breaker tripped): an interrupt reports
/// the last real failure if there was one (what the change's status should say), the breaker
/// its own "not sent".
fn stopped(
    e: CallError,
    last: Option<CallError>,
    mut trace: Trace,
) -> (Result<Reply, CallError>, Trace) {
    trace.interrupted = e.is_interrupted();
    let e = match last {
        Some(last) if trace.interrupted => last,
        _ => e,
    };
    (Err(e), trace)
}

/// `1 attempt`, `3 attempts`.
fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".into()
    } else {
        format!("{n} attempts")
    }
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

/// The backoff after the `attempt`th failure: `base_delay` doubling, capped, ±25 % jitter.
fn backoff(options: &Options, attempt: u32) -> Duration {
    let exp = options
        .base_delay
        .saturating_mul(1 << attempt.saturating_sub(1).min(16));
    exp.min(options.max_delay)
        .mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// The wait after the `attempt`th 429 that did not say how long: `rate_wait` doubling, capped
/// at `max_wait`.
fn rate_backoff(options: &Options, attempt: u32) -> Duration {
    options
        .rate_wait
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(options.max_wait)
}

/// Seconds since the Unix epoch, for an `X-RateLimit-Reset` that is a time.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
