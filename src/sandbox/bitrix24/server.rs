//! HTTP side of the emulator: routing `/rest/{user}/{code}/{method}[.json][/]` (webhooks) and
//! `/rest/{method}[.json][/]` (OAuth), auth and scopes, the OAuth token endpoint
//! `/oauth/token/`, merging query string and body into PHP params, the success/error envelope
//! with its `time` object, the limits, and persisting state changes before the response is
//! sent.
//!
//! OAuth calls carry the access token in the `auth` or `access_token` parameter (query, form
//! or JSON body) or an `Authorization: Bearer` header (rules §5); those parameters are taken
//! out before the method sees its parameters. No error or log line quotes a token or a code.
//!
//! Method semantics live in `methods`/`batch`; this module must not interpret parameters
//! beyond what the server layer does (`start` is handled by `methods::call`).
//!
//! Pipeline per request: count → injected fault (503/429/500/502 refusals answer here, before
//! anything else runs; lost/500-after/truncated/slow are applied to the response after it ran)
//! → leaky bucket (503, before auth, like the portal's balancer) → auth (401) → method lookup
//! (404) → scope (`insufficient_scope`) → operating budget (429) → execute on a copy of the state → if the copy differs, write
//! it atomically, then make it current (a failed write answers 500 and changes nothing)
//! → wait `latency_ms` plus the simulated command time → respond.
//!
//! Simulated command time (`command_ms`): each executed command is charged `command_ms` on top
//! of its measured time, both to the operating budget and in `processing`/`finish` of its
//! `time` object, and the response is delayed by the total through [`Clock::sleep`] after the
//! state lock is released (so concurrent requests overlap, as on a portal). With the real
//! clock that is a real wait; with a `ManualClock` it only moves virtual time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::batch::{self, CmdResult};
use super::limits::{Clock, Dice, LeakyBucket, OperatingBudget};
use super::methods::{self, ApiError, Caller, Output};
use super::oauth;
use super::params::{self, Params, Value, obj, s};
use super::state::{self, BatchBilling, Portal, State};
use super::{MethodStats, SandboxError, Stats};

/// State shared by all request handlers.
pub struct Shared {
    path: PathBuf,
    /// Where the sandbox listens: the portal's and the OAuth server's `host:port`.
    addr: SocketAddr,
    /// Portal settings as loaded; requests never change them.
    portal: Portal,
    state: Mutex<State>,
    bucket: Mutex<Option<LeakyBucket>>,
    operating: Mutex<OperatingBudget>,
    dice: Mutex<Dice>,
    clock: Arc<dyn Clock>,
    /// The exclusive lock on the state file, held as long as anything can write it.
    _lock: std::fs::File,
    stats: Mutex<Stats>,
}

/// What [`Shared::count`] counts.
#[derive(Debug, Clone, Copy)]
enum Counter {
    Request,
    Command,
    Refused503,
    Refused429,
}

/// The name a request or command is counted under: the method if the sandbox knows it (or
/// `batch`), else `(unknown)`, so that made-up names cannot grow the table without bound.
fn counted_name(method: &str) -> &str {
    if method == "batch" || methods::is_known(method) {
        method
    } else {
        "(unknown)"
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(
        path: PathBuf,
        addr: SocketAddr,
        st: State,
        clock: Arc<dyn Clock>,
        lock: std::fs::File,
    ) -> Self {
        let bucket = st
            .portal
            .rate_limit
            .map(|r| LeakyBucket::new(r.burst, r.per_second, clock.monotonic()));
        let dice = Dice::new(st.portal.faults.map_or(0, |f| f.seed));
        Shared {
            path,
            addr,
            portal: st.portal.clone(),
            state: Mutex::new(st),
            bucket: Mutex::new(bucket),
            operating: Mutex::new(OperatingBudget::default()),
            dice: Mutex::new(dice),
            clock,
            _lock: lock,
            stats: Mutex::new(Stats::default()),
        }
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    /// Count one event, in the totals and under `method` (lower-case).
    fn count(&self, method: &str, what: Counter) {
        let mut st = lock(&self.stats);
        let name = counted_name(method);
        if !st.methods.contains_key(name) {
            st.methods.insert(name.to_owned(), MethodStats::default());
        }
        let m = st.methods.get_mut(name).expect("just inserted");
        match what {
            Counter::Request => m.http_requests += 1,
            Counter::Command => m.commands += 1,
            Counter::Refused503 => m.rejected_503 += 1,
            Counter::Refused429 => m.rejected_429 += 1,
        }
        let total = match what {
            Counter::Request => &mut st.http_requests,
            Counter::Command => &mut st.commands,
            Counter::Refused503 => &mut st.rejected_503,
            Counter::Refused429 => &mut st.rejected_429,
        };
        *total += 1;
    }

    /// Every accepted change is already on disk (written before its response); nothing to do.
    pub fn flush(&self) -> Result<(), SandboxError> {
        Ok(())
    }
}

/// Where the counters are served, outside `/rest/` (see [`Stats`]).
pub const STATS_PATH: &str = "/_sandbox/stats";

/// The OAuth server's token endpoint (in production `https://oauth.bitrix.info/oauth/token/`).
pub const TOKEN_PATH: &str = "/oauth/token/";

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(STATS_PATH, axum::routing::get(stats))
        .route(TOKEN_PATH, axum::routing::any(token))
        .route(TOKEN_PATH.trim_end_matches('/'), axum::routing::any(token))
        .fallback(handle)
        .with_state(shared)
}

/// `GET /_sandbox/stats`: the counters as JSON. No auth: the sandbox serves loopback tests; the
/// body holds counts and method names only, never a webhook code. Not itself counted.
async fn stats(AxState(sh): AxState<Arc<Shared>>) -> Response {
    respond(200, serde_json::to_vec(&sh.stats()).unwrap_or_default())
}

/// `GET|POST /oauth/token/`: the refresh grant (see [`oauth::refresh`]). It is the OAuth
/// server's, not the portal's: no leaky bucket, no faults, not counted as a REST request (it
/// has its own counters, `oauth_token_requests` and `oauth_tokens_issued`).
async fn token(
    AxState(sh): AxState<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let work = tokio::task::spawn_blocking(move || issue_token(&sh, &uri, &headers, &body));
    let (status, body) = work.await.unwrap_or_else(|_| error_body(&internal_error()));
    respond(status, body)
}

fn issue_token(sh: &Shared, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> (u16, Vec<u8>) {
    lock(&sh.stats).oauth_token_requests += 1;
    let p = request_params(uri, headers, body);
    let now = sh.clock.unix().floor() as i64;
    let mut current = lock(&sh.state);
    let mut next = current.clone();
    let mut new_token = || {
        std::iter::repeat_with(fastrand::alphanumeric)
            .take(48)
            .collect()
    };
    match oauth::refresh(&mut next, &p, now, &mut new_token) {
        Ok(grant) => {
            if let Err(e) = state::save(&sh.path, &next) {
                tracing::error!(error = %e, "sandbox could not persist state");
                return error_body(&internal_error());
            }
            *current = next;
            lock(&sh.stats).oauth_tokens_issued += 1;
            let addr = sh.addr.to_string();
            (
                200,
                serde_json::to_vec(&grant.to_json(&addr)).unwrap_or_default(),
            )
        }
        Err(e) => {
            let v = serde_json::json!({"error": e.code, "error_description": e.description});
            (400, serde_json::to_vec(&v).unwrap_or_default())
        }
    }
}

async fn handle(
    AxState(sh): AxState<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = route_method(uri.path());
    sh.count(&method, Counter::Request);
    let fault = roll_fault(&sh, &method);
    let (status, body, work) = match &fault {
        Some(Fault::Refuse(parts)) => parts.clone(),
        Some(Fault::Gateway) => (502, Vec::new(), Duration::ZERO),
        _ => {
            // CPU work off the async worker threads, and run to the end even when the client
            // hangs up (a blocking task is never cancelled): a change is written or not, never
            // half-done, and it is on disk before any delay below.
            let sh = sh.clone();
            let cmd_faults = fault.is_none();
            tokio::task::spawn_blocking(move || process(&sh, &uri, &headers, &body, cmd_faults))
                .await
                .unwrap_or_else(|_| error_parts(&internal_error()))
        }
    };
    let mut wait = work + Duration::from_millis(sh.portal.latency_ms);
    if let Some(Fault::Slow(ms)) = fault {
        wait += Duration::from_millis(ms);
    }
    if !wait.is_zero() {
        sh.clock.sleep(wait).await;
    }
    match fault {
        Some(Fault::LoseResponse | Fault::Gateway) => {
            let mut resp = (StatusCode::BAD_GATEWAY, LOST_PAGE).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            resp
        }
        Some(Fault::ErrorAfter) => {
            let (status, body) = error_body(&internal_error());
            respond(status, body)
        }
        Some(Fault::Truncated) => {
            let half = body.len() / 2;
            respond(status, body[..half].to_vec())
        }
        _ => respond(status, body),
    }
}

fn internal_error() -> ApiError {
    ApiError::new(500, "INTERNAL_SERVER_ERROR", "Internal server error")
}

/// What a proxy in front of a portal answers when the portal's response is lost.
const LOST_PAGE: &str = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n";

/// An injected fault for one request (see the `state` module for the settings).
enum Fault {
    /// Answer this instead of doing anything: nothing is executed or counted against any limit.
    Refuse((u16, Vec<u8>, Duration)),
    /// A proxy's 502 page; nothing is executed.
    Gateway,
    /// Execute the request normally, then answer 502 (the client cannot tell it happened).
    LoseResponse,
    /// Execute, then answer 500 `INTERNAL_SERVER_ERROR`.
    ErrorAfter,
    /// Execute, then answer with the first half of the body.
    Truncated,
    /// Execute, then hold the response this many milliseconds.
    Slow(u64),
}

fn roll_fault(sh: &Shared, method: &str) -> Option<Fault> {
    let f = sh.portal.faults?;
    let roll = lock(&sh.dice).roll();
    let kinds = f.request_rates();
    let mut band = 0.0;
    let mut hit = None;
    for (i, rate) in kinds.iter().enumerate() {
        band += rate;
        if roll < band {
            hit = Some(i);
            break;
        }
    }
    let hit = hit?;
    lock(&sh.stats).faults_injected += 1;
    Some(match hit {
        0 => {
            sh.count(method, Counter::Refused503);
            Fault::Refuse(error_parts(&ApiError::new(
                503,
                "QUERY_LIMIT_EXCEEDED",
                "Too many requests",
            )))
        }
        1 => {
            sh.count(method, Counter::Refused429);
            Fault::Refuse(error_parts(&operation_time_limit()))
        }
        2 => Fault::Refuse(error_parts(&internal_error())),
        3 => Fault::LoseResponse,
        4 => Fault::Gateway,
        5 => Fault::ErrorAfter,
        6 => Fault::Truncated,
        _ => Fault::Slow(f.slow_ms),
    })
}

fn respond(status: u16, body: Vec<u8>) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

fn error_body(e: &ApiError) -> (u16, Vec<u8>) {
    let v = obj([
        ("error", s(e.code.clone())),
        ("error_description", s(e.description.clone())),
    ]);
    (e.status, serde_json::to_vec(&v).unwrap_or_default())
}

/// A REST route: a webhook's (user, code, method) or an OAuth call's method (lowercase, without
/// `.json` or a trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Webhook {
        user: String,
        code: String,
        method: String,
    },
    OAuth {
        method: String,
    },
}

impl Route {
    fn method(&self) -> &str {
        match self {
            Route::Webhook { method, .. } | Route::OAuth { method } => method,
        }
    }
}

/// `/rest/{user}/{code}/{method}` or `/rest/{method}` (one segment, optionally `/`-ended).
fn parse_path(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/rest/")?;
    let clean = |m: &str| {
        let m = params::urldecode(m).to_lowercase();
        let m = m.trim_end_matches('/');
        m.strip_suffix(".json").unwrap_or(m).to_owned()
    };
    let one = rest.strip_suffix('/').unwrap_or(rest);
    if !one.is_empty() && !one.contains('/') {
        return Some(Route::OAuth { method: clean(one) });
    }
    let mut parts = rest.splitn(3, '/');
    let user = parts.next()?.to_owned();
    let code = parts.next()?.to_owned();
    let method = clean(parts.next().unwrap_or(""));
    Some(Route::Webhook { user, code, method })
}

/// The method a REST path names, for counting (`""` if none).
fn route_method(path: &str) -> String {
    parse_path(path)
        .map(|r| r.method().to_owned())
        .unwrap_or_default()
}

/// The parameters that carry an OAuth access token (rules §5, `$authQueryParams`).
const AUTH_PARAMS: &[&str] = &["auth", "access_token"];

/// The access token of an OAuth call: the `auth` or `access_token` parameter, else an
/// `Authorization: Bearer` header.
fn access_token(p: &[(String, Value)], headers: &HeaderMap) -> Option<String> {
    AUTH_PARAMS
        .iter()
        .find_map(|k| params::get(p, k))
        .map(Value::to_php_string)
        .or_else(|| {
            let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
}

fn without_auth(p: Params) -> Params {
    if AUTH_PARAMS.iter().any(|k| params::get(&p, k).is_some()) {
        p.into_iter()
            .filter(|(k, _)| !AUTH_PARAMS.contains(&k.as_str()))
            .collect()
    } else {
        p
    }
}

/// What a call may reach: a webhook's or an OAuth access token's scopes (`None`: all).
#[derive(Debug, Clone)]
enum Grants {
    Webhook(Option<Vec<String>>),
    OAuth(Option<Vec<String>>),
}

impl Grants {
    /// The same check for both: the method needs one of its scopes (rules §5 "scope not in
    /// the token → `insufficient_scope`").
    fn allow(&self, method: &str) -> bool {
        let needed = methods::scopes_for(method);
        match self {
            Grants::Webhook(Some(scopes)) | Grants::OAuth(Some(scopes)) if !needed.is_empty() => {
                scopes.iter().any(|s| needed.contains(&s.as_str()))
            }
            _ => true,
        }
    }

    /// `insufficient_scope` (rules §5; reference §5 for the webhook text). Inside a batch the
    /// description is empty (reference §3, src PROV).
    fn refusal(&self, portal: &Portal, in_batch: bool) -> ApiError {
        let text = match (in_batch, self) {
            (true, _) => "",
            (false, Grants::Webhook(_)) => {
                "The request requires higher privileges than provided by the webhook token"
            }
            (false, Grants::OAuth(_)) => {
                "The request requires higher privileges than provided by the access token"
            }
        };
        ApiError::new(portal.insufficient_scope_status, "insufficient_scope", text)
    }
}

/// Query string and body merged into PHP params; the body wins.
fn request_params(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Params {
    let p = params::parse_str(uri.query().unwrap_or(""));
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body_params: Params = if ctype.starts_with("application/json") {
        // Decoded in wire order; a JSON body that does not parse is treated as empty.
        params::parse_json_body(body).unwrap_or_default()
    } else if ctype.starts_with("application/x-www-form-urlencoded") {
        params::parse_str(&String::from_utf8_lossy(body))
    } else if ctype.starts_with("multipart/form-data") {
        // The boundary is case-sensitive: cut it from the original header text.
        let original = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = ctype.find("boundary=").map(|i| {
            let b = &original[i + "boundary=".len()..];
            let b = b.split(';').next().unwrap_or("").trim().trim_matches('"');
            b.to_owned()
        });
        boundary
            .and_then(|b| params::parse_multipart(body, &b))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    params::merge(p, body_params)
}

/// Format unix seconds as ISO-8601 with offset, like PHP `date('c')` in UTC.
pub fn iso8601(unix: f64) -> String {
    let secs = unix.floor() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// The eight-field `time` object.
pub struct TimeInfo {
    pub start: f64,
    pub finish: f64,
    pub processing: f64,
    pub operating: f64,
    pub operating_reset_at: i64,
}

impl TimeInfo {
    pub fn to_value(&self) -> Value {
        obj([
            ("start", Value::Float(self.start)),
            ("finish", Value::Float(self.finish)),
            ("duration", Value::Float(self.finish - self.start)),
            ("processing", Value::Float(self.processing)),
            ("date_start", s(iso8601(self.start))),
            ("date_finish", s(iso8601(self.finish))),
            ("operating_reset_at", Value::Int(self.operating_reset_at)),
            ("operating", Value::Float(self.operating)),
        ])
    }
}

fn success_body(out: &Output, time: &TimeInfo) -> Vec<u8> {
    let mut env = vec![("result".to_owned(), out.result.clone())];
    if let Some(n) = out.next {
        env.push(("next".to_owned(), Value::Int(n)));
    }
    if let Some(t) = out.total {
        env.push(("total".to_owned(), Value::Int(t)));
    }
    env.push(("time".to_owned(), time.to_value()));
    serde_json::to_vec(&Value::Arr(env)).unwrap_or_default()
}

fn error_parts(e: &ApiError) -> (u16, Vec<u8>, Duration) {
    let (status, body) = error_body(e);
    (status, body, Duration::ZERO)
}

fn operation_time_limit() -> ApiError {
    ApiError::new(
        429,
        "OPERATION_TIME_LIMIT",
        "Method is blocked due to operation time limit.",
    )
}

/// Set `operating`/`operating_reset_at` in a `time` object.
fn set_operating(time: &mut Value, operating: f64, reset_at: i64) {
    if let Value::Arr(fields) = time {
        params::set_key(fields, "operating".to_owned(), Value::Float(operating));
        params::set_key(
            fields,
            "operating_reset_at".to_owned(),
            Value::Int(reset_at),
        );
    }
}

/// Handle one request; returns status, body and the simulated work time to wait before
/// answering (the latency is added by the caller).
fn process(
    sh: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    cmd_faults: bool,
) -> (u16, Vec<u8>, Duration) {
    let portal = &sh.portal;
    // Leaky bucket: one unit per HTTP request (a batch is one request).
    {
        let mut bucket = lock(&sh.bucket);
        if let Some(b) = bucket.as_mut()
            && !b.try_acquire(sh.clock.monotonic())
        {
            sh.count(&route_method(uri.path()), Counter::Refused503);
            return error_parts(&ApiError::new(
                503,
                "QUERY_LIMIT_EXCEEDED",
                "Too many requests",
            ));
        }
    }
    // Parsing is pure and linear: done before taking the state lock, so a large body delays
    // only its own request.
    let p = request_params(uri, headers, body);
    let start = sh.clock.unix();
    let mut current = lock(&sh.state);
    let unauthorized = || {
        error_parts(&ApiError::new(
            401,
            "NO_AUTH_FOUND",
            "Wrong authorization data",
        ))
    };
    let Some(route) = parse_path(uri.path()) else {
        return error_parts(&ApiError::method_not_found());
    };
    // The caller, what it may call, its operating-budget key, and the method's parameters.
    let (caller, grants, budget, p, method) = match route {
        Route::Webhook { user, code, method } => {
            let Ok(uid) = user.parse::<i64>() else {
                return unauthorized();
            };
            let Some(u) = current.user(uid).filter(|u| u.active) else {
                return unauthorized();
            };
            let Some(w) = current
                .webhooks
                .iter()
                .find(|w| w.user == uid && w.code == code)
            else {
                return unauthorized();
            };
            let caller = Caller {
                user: uid,
                admin: u.admin,
                emails: methods::sees_emails(w.scopes.as_deref()),
            };
            let grants = Grants::Webhook(w.scopes.clone());
            (caller, grants, format!("{uid}:{code}"), p, method)
        }
        Route::OAuth { method } => {
            let Some(token) = access_token(&p, headers) else {
                return unauthorized();
            };
            let owner = match oauth::check(&current, &token, start) {
                Ok(owner) => owner,
                Err(refusal) => {
                    let (code, text) = refusal.code_and_text();
                    return error_parts(&ApiError::new(401, code, text));
                }
            };
            let uid = owner.user;
            let admin = current.user(uid).is_some_and(|u| u.admin);
            let caller = Caller {
                user: uid,
                admin,
                emails: methods::sees_emails(owner.scopes.as_deref()),
            };
            (
                caller,
                Grants::OAuth(owner.scopes),
                format!("oauth:{uid}"),
                without_auth(p),
                method,
            )
        }
    };
    if method != "batch" && !methods::is_known(&method) {
        return error_parts(&ApiError::method_not_found());
    }
    if !grants.allow(&method) {
        return error_parts(&grants.refusal(portal, false));
    }
    // The operating budget is kept per (webhook or OAuth user, method).
    let key = |m: &str| format!("{budget}:{m}");
    let limit = portal.operating_limit_s;
    let command_s = portal.command_ms as f64 / 1000.0;
    let billed_whole = method != "batch" || portal.batch_billing == BatchBilling::Batch;
    if billed_whole && lock(&sh.operating).blocked(&key(&method), start, limit) {
        sh.count(&method, Counter::Refused429);
        return error_parts(&operation_time_limit());
    }
    let mut next = current.clone();
    // Simulated command time so far (seconds); it shifts every later timestamp.
    let mut extra = 0.0_f64;
    let (status, out_body) = if method == "batch" {
        let per_command = portal.batch_billing == BatchBilling::PerCommand;
        let bp = params::change_key_case(&p, false);
        let cmd_error_rate = if cmd_faults {
            portal.faults.map_or(0.0, |f| f.rate_cmd_error)
        } else {
            0.0
        };
        let mut exec = |m: &str, sp: &Params| -> CmdResult {
            // An injected internal error answers the sub-command instead of running it.
            if cmd_error_rate > 0.0 && lock(&sh.dice).roll() < cmd_error_rate {
                lock(&sh.stats).faults_injected += 1;
                return CmdResult {
                    outcome: Err(internal_error()),
                    time: None,
                };
            }
            // Scope is checked per sub-call; the outer auth covers it (src PROV).
            if !grants.allow(m) {
                return CmdResult {
                    outcome: Err(grants.refusal(portal, true)),
                    time: None,
                };
            }
            let c0 = sh.clock.unix();
            if per_command && lock(&sh.operating).blocked(&key(m), c0 + extra, limit) {
                return CmdResult {
                    outcome: Err(operation_time_limit()),
                    time: None,
                };
            }
            sh.count(m, Counter::Command);
            let outcome = match &grants {
                // The caller's auth is copied into each sub-call and taken out again.
                Grants::OAuth(_) => methods::call(&mut next, caller, m, &without_auth(sp.clone())),
                Grants::Webhook(_) => methods::call(&mut next, caller, m, sp),
            };
            let measured = sh.clock.unix() - c0;
            let t0 = c0 + extra;
            extra += command_s;
            let charged = measured + command_s;
            let (operating, reset_at) = if per_command {
                let mut op = lock(&sh.operating);
                op.charge(&key(m), t0, charged);
                (op.used(&key(m), t0), op.reset_at(&key(m), t0))
            } else {
                (0.0, 0) // filled in below with the batch-wide value
            };
            let time = outcome.is_ok().then(|| {
                TimeInfo {
                    start: t0,
                    finish: t0 + charged,
                    processing: charged,
                    operating,
                    operating_reset_at: reset_at,
                }
                .to_value()
            });
            CmdResult { outcome, time }
        };
        let mut result = batch::run(&bp, &mut exec);
        let finish = sh.clock.unix() + extra;
        let (operating, reset_at) = {
            let mut op = lock(&sh.operating);
            let k = key("batch");
            if !per_command {
                op.charge(&k, start, finish - start);
            }
            (op.used(&k, start), op.reset_at(&k, start))
        };
        if !per_command
            && let Value::Arr(sections) = &mut result
            && let Some((_, Value::Arr(times))) =
                sections.iter_mut().find(|(k, _)| k == "result_time")
        {
            // Every sub-result carries the same batch-wide operating value.
            for (_, t) in times.iter_mut() {
                set_operating(t, operating, reset_at);
            }
        }
        let out = Output {
            result,
            total: None,
            next: None,
        };
        let t = TimeInfo {
            start,
            finish,
            processing: finish - start,
            operating,
            operating_reset_at: reset_at,
        };
        (200, success_body(&out, &t))
    } else {
        sh.count(&method, Counter::Command);
        let outcome = methods::call(&mut next, caller, &method, &p);
        let measured = sh.clock.unix() - start;
        extra = command_s;
        let charged = measured + command_s;
        let (operating, reset_at) = {
            let mut op = lock(&sh.operating);
            op.charge(&key(&method), start, charged);
            (
                op.used(&key(&method), start),
                op.reset_at(&key(&method), start),
            )
        };
        match outcome {
            Ok(out) => {
                let t = TimeInfo {
                    start,
                    finish: start + charged,
                    processing: charged,
                    operating,
                    operating_reset_at: reset_at,
                };
                (200, success_body(&out, &t))
            }
            Err(e) => error_body(&e),
        }
    };
    if next != *current {
        if let Err(e) = state::save(&sh.path, &next) {
            tracing::error!(error = %e, "sandbox could not persist state");
            return error_parts(&ApiError::new(
                500,
                "INTERNAL_SERVER_ERROR",
                "Internal server error",
            ));
        }
        *current = next;
    }
    (status, out_body, Duration::from_secs_f64(extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601(1_773_850_553.26), "2026-03-18T16:15:53+00:00");
        assert_eq!(iso8601(951_782_400.0), "2000-02-29T00:00:00+00:00");
    }

    #[test]
    fn paths() {
        let p = |x: &str| parse_path(x);
        let hook = |m: &str| {
            Some(Route::Webhook {
                user: "1".into(),
                code: "abc".into(),
                method: m.into(),
            })
        };
        let oauth = |m: &str| Some(Route::OAuth { method: m.into() });
        assert_eq!(p("/rest/1/abc/User.Get.json/"), hook("user.get"));
        assert_eq!(p("/rest/1/abc/batch"), hook("batch"));
        assert_eq!(p("/rest/User.Get.json"), oauth("user.get"));
        assert_eq!(p("/rest/batch/"), oauth("batch"));
        assert_eq!(p("/rest/1/abc"), hook(""));
        assert_eq!(p("/other"), None);
    }

    #[test]
    fn oauth_token_carriers_and_stripping() {
        let mut h = HeaderMap::new();
        let p = params::parse_str("ID=27&auth=tok1&access_token=tok2");
        assert_eq!(access_token(&p, &h).as_deref(), Some("tok1"));
        assert_eq!(without_auth(p), params::parse_str("ID=27"));
        let p = params::parse_str("ID=27&access_token=tok2");
        assert_eq!(access_token(&p, &h).as_deref(), Some("tok2"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  tok3 "),
        );
        assert_eq!(access_token(&[], &h).as_deref(), Some("tok3"));
        // A parameter wins over the header; an empty one counts as none.
        assert_eq!(access_token(&p, &h).as_deref(), Some("tok2"));
        let empty = params::parse_str("auth=");
        assert_eq!(access_token(&empty, &HeaderMap::new()), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eDp5"),
        );
        assert_eq!(access_token(&[], &h), None);
    }
}
