//! HTTP side of the DocSpace emulator: the axum service, the request pipeline, the counters,
//! and persisting each change before its answer is sent. Endpoint semantics live in
//! [`super::methods`]; this module must not interpret a request beyond routing, credentials,
//! scopes and limits.
//!
//! Pipeline per API request (`/api/2.0/…`):
//!
//! 1. count it (under its route template, `(unknown)` when none matches);
//! 2. roll the fault dice: an injected 429, 500 or 502 answers here, before anything runs;
//! 3. identify the caller from the credentials (reference §3);
//! 4. the rate limiter, when enabled (per user, or per client IP without valid credentials):
//!    429 with an empty body;
//! 5. routing: no route → 404, a route of another method → 405 (both empty, as ASP.NET
//!    answers them);
//! 6. no valid credentials → 401 (empty body by default);
//! 7. an API key without the route's scope → 403 with an empty body;
//! 8. execute (model binding, role check, the change) on a copy of the state; if the copy
//!    differs, write it atomically, then make it current (a failed write answers 500 and
//!    changes nothing);
//! 9. wait `latency_ms` (plus `slow_ms` for a slow fault) on the clock — every answer does,
//!    refusals of steps 2–7 included — then free the concurrency slot, then answer; or, for a
//!    fault that strikes after executing, answer 502 HTML, a 500 envelope or half the body
//!    instead.
//!
//! `GET /_sandbox/stats` is not authenticated, counted, limited or faulted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::auth::{self, Caller, Need};
use super::limits::{Fault, Headers, Limiter, Partition, Permit, pick_fault};
use super::methods::{self, Ctx, Request};
use super::routes::{self, Endpoint, Match, UNKNOWN_ROUTE};
use super::state::{self, Faults, RateLimit, State, UnauthorizedBody};
use super::wire::{self, ApiError};
use super::{SandboxError, Stats};
use crate::sandbox::bitrix24::limits::{Clock, Dice};

/// Where the counters are served.
pub const STATS_PATH: &str = "/_sandbox/stats";

/// Settings read once at start; requests never change them.
#[derive(Debug, Clone)]
struct Settings {
    rate_limit: RateLimit,
    faults: Option<Faults>,
    latency: Duration,
    unauthorized_body: UnauthorizedBody,
}

/// State shared by all request handlers.
pub struct Shared {
    path: PathBuf,
    addr: SocketAddr,
    settings: Settings,
    state: Mutex<State>,
    /// Lookups into `state` for reads, built on the first read after a change.
    index: Mutex<Option<Arc<methods::Index>>>,
    limiter: Mutex<Limiter>,
    dice: Mutex<Dice>,
    clock: Arc<dyn Clock>,
    /// The exclusive lock on the state file, held as long as anything can write it.
    _lock: std::fs::File,
    stats: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy)]
enum Counter {
    Request,
    Refused429,
    Executed,
}

impl Shared {
    pub fn new(
        path: PathBuf,
        addr: SocketAddr,
        st: State,
        clock: Arc<dyn Clock>,
        lock: std::fs::File,
    ) -> Self {
        let settings = Settings {
            rate_limit: st.rate_limit(),
            faults: st.faults,
            latency: Duration::from_millis(st.latency_ms),
            unauthorized_body: st.unauthorized_body,
        };
        let dice = Dice::new(st.faults.map_or(0, |f| f.seed));
        Shared {
            path,
            addr,
            settings,
            state: Mutex::new(st),
            index: Mutex::new(None),
            limiter: Mutex::new(Limiter::default()),
            dice: Mutex::new(dice),
            clock,
            _lock: lock,
            stats: Mutex::new(Stats::default()),
        }
    }

    pub fn stats(&self) -> Stats {
        lock(&self.stats).clone()
    }

    fn count(&self, route: &str, what: Counter) {
        let mut st = lock(&self.stats);
        match what {
            Counter::Request => st.http_requests += 1,
            Counter::Refused429 => st.rejected_429 += 1,
            Counter::Executed => {}
        }
        let r = st.routes.entry(route.to_owned()).or_default();
        match what {
            Counter::Request => r.http_requests += 1,
            Counter::Refused429 => r.rejected_429 += 1,
            Counter::Executed => r.executed += 1,
        }
    }

    fn roll_fault(&self) -> Option<Fault> {
        let f = self.settings.faults?;
        let fault = pick_fault(&f, lock(&self.dice).roll())?;
        lock(&self.stats).faults_injected += 1;
        Some(fault)
    }

    /// Every accepted change is already on disk (written before its answer); nothing to do.
    pub fn flush(&self) -> Result<(), SandboxError> {
        Ok(())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(STATS_PATH, axum::routing::get(stats))
        .fallback(handle)
        .with_state(shared)
}

/// `GET /_sandbox/stats`: the counters as JSON (counts and route templates only).
async fn stats(AxState(sh): AxState<Arc<Shared>>) -> Response {
    let body = serde_json::to_vec(&sh.stats()).unwrap_or_default();
    answer(Answer::json(200, body))
}

/// An answer before it becomes a response.
struct Answer {
    status: u16,
    body: Option<Vec<u8>>,
    json: bool,
    headers: Headers,
}

impl Answer {
    fn json(status: u16, body: Vec<u8>) -> Answer {
        Answer {
            status,
            body: Some(body),
            json: true,
            headers: Headers::new(),
        }
    }
    fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: None,
            json: false,
            headers: Headers::new(),
        }
    }
}

fn answer(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match a.body {
        Some(b) => (status, b).into_response(),
        None => (status, Body::empty()).into_response(),
    };
    let h = resp.headers_mut();
    if a.json {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    for (k, v) in a.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            h.insert(k, v);
        }
    }
    resp
}

/// What a proxy in front of a portal answers when the portal's answer is lost.
const GATEWAY_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

fn gateway() -> Response {
    let mut resp = (StatusCode::BAD_GATEWAY, GATEWAY_PAGE).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

fn internal_error() -> Answer {
    Answer::json(500, wire::error_body(&ApiError::internal(), true))
}

/// Frees a request's concurrency slot when dropped (also when the client hangs up).
struct Slot {
    sh: Arc<Shared>,
    permit: Permit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.sh.limiter).release(&self.permit);
    }
}

async fn handle(
    AxState(sh): AxState<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let matched = routes::resolve(method.as_str(), uri.path());
    let key = match &matched {
        Match::Found(r) => r.key.clone(),
        _ => UNKNOWN_ROUTE.to_owned(),
    };
    sh.count(&key, Counter::Request);
    let fault = sh.roll_fault();
    let mut slot = None;
    let reply = decide(
        &sh, fault, &key, matched, peer, &method, &uri, headers, body, &mut slot,
    )
    .await;
    // Every answer waits the latency (on the sandbox's clock), a slow fault more; the
    // concurrency slot is held until then.
    let mut wait = sh.settings.latency;
    if let Some(Fault::Slow(ms)) = fault {
        wait += Duration::from_millis(ms);
    }
    if !wait.is_zero() {
        sh.clock.sleep(wait).await;
    }
    drop(slot);
    match (reply, fault) {
        (Reply::Gateway, _) | (_, Some(Fault::Lost)) => gateway(),
        (_, Some(Fault::ErrorAfter)) => answer(internal_error()),
        (Reply::Answer(mut a), Some(Fault::Truncated)) => {
            if let Some(b) = &mut a.body {
                b.truncate(b.len() / 2);
            }
            answer(a)
        }
        (Reply::Answer(a), _) => answer(a),
    }
}

/// What [`decide`] answers: a proxy's 502 page or an answer of the portal.
enum Reply {
    Gateway,
    Answer(Answer),
}

/// Steps 2–8 of the pipeline; `slot` receives the concurrency slot of an admitted request.
#[allow(clippy::too_many_arguments)]
async fn decide(
    sh: &Arc<Shared>,
    fault: Option<Fault>,
    key: &str,
    matched: Match,
    peer: SocketAddr,
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
    slot: &mut Option<Slot>,
) -> Reply {
    match fault {
        Some(Fault::Refuse429) => {
            sh.count(key, Counter::Refused429);
            let mut a = Answer::empty(429);
            a.headers = vec![
                ("Retry-After", "1".to_owned()),
                (
                    "X-RateLimit-Limit",
                    sh.settings.rate_limit.per_minute.to_string(),
                ),
                ("X-RateLimit-Remaining", "0".to_owned()),
            ];
            return Reply::Answer(a);
        }
        Some(Fault::Refuse500) => return Reply::Answer(internal_error()),
        Some(Fault::Gateway502) => return Reply::Gateway,
        _ => {}
    }
    let caller = {
        let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let cookies: Vec<&[u8]> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let credential = auth::credential(authorization, &cookies);
        auth::identify(&lock(&sh.state), &credential)
    };
    let mut extra = Headers::new();
    if sh.settings.rate_limit.enabled {
        let partition = caller.as_ref().map_or(Partition::Ip(peer.ip()), |c| {
            Partition::User(c.user.clone())
        });
        let get = method == Method::GET;
        let post_put = method == Method::POST || method == Method::PUT;
        let admitted = lock(&sh.limiter).admit(
            &sh.settings.rate_limit,
            &partition,
            get,
            post_put,
            sh.clock.monotonic(),
            sh.clock.unix(),
        );
        match admitted {
            Ok(permit) => {
                extra = permit.headers.clone();
                *slot = Some(Slot {
                    sh: sh.clone(),
                    permit,
                });
            }
            Err(headers) => {
                sh.count(key, Counter::Refused429);
                let mut a = Answer::empty(429);
                a.headers = headers;
                return Reply::Answer(a);
            }
        }
    }
    let mut a = match (matched, caller) {
        (Match::NotFound, _) => Answer::empty(404),
        (Match::WrongMethod, _) => Answer::empty(405),
        (Match::Found(_), None) => match sh.settings.unauthorized_body {
            UnauthorizedBody::Empty => Answer::empty(401),
            UnauthorizedBody::Envelope => Answer::json(401, wire::unauthorized_envelope()),
        },
        (Match::Found(route), Some(caller)) => {
            if !auth::allows(caller.scopes.as_deref(), need(route.endpoint)) {
                Answer::empty(403)
            } else {
                let href = format!(
                    "http://{}{}",
                    headers
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map_or_else(|| sh.addr.to_string(), str::to_owned),
                    uri.path_and_query().map_or("/", |p| p.as_str())
                );
                // Off the async workers, and run to the end even if the client hangs up (a
                // blocking task is never cancelled): a change is on disk or not, never half.
                let sh2 = sh.clone();
                let method = method.as_str().to_owned();
                let uri = uri.clone();
                tokio::task::spawn_blocking(move || {
                    execute(&sh2, &caller, &route, &method, &uri, &headers, &body, &href)
                })
                .await
                .unwrap_or_else(|_| internal_error())
            }
        }
    };
    a.headers.extend(extra);
    Reply::Answer(a)
}

/// The scope a route needs from an API key.
fn need(e: Endpoint) -> Need {
    match e {
        Endpoint::PeopleSelf => Need::SelfRead,
        e if e.is_read() => Need::AccountsRead,
        _ => Need::AccountsWrite,
    }
}

/// A random (version 4) UUID for a new group.
fn new_uuid() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[allow(clippy::too_many_arguments)]
fn execute(
    sh: &Shared,
    caller: &Caller,
    route: &routes::Route,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    href: &str,
) -> Answer {
    let query: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let req = Request {
        endpoint: route.endpoint,
        params: &route.params,
        query: &query,
        body,
        content_type,
    };
    let base = format!("http://{}", sh.addr);
    let mut ctx = Ctx::new(&base);
    let mut current = lock(&sh.state);
    let outcome = if route.endpoint.is_read() {
        let index = lock(&sh.index)
            .get_or_insert_with(|| Arc::new(methods::Index::of(&current)))
            .clone();
        ctx.index = Some(index);
        methods::read(&current, caller, &req, &ctx)
    } else {
        lock(&sh.stats).write_requests += 1;
        let mut next = current.clone();
        let outcome = methods::write(&mut next, caller, &req, &ctx, &mut new_uuid);
        if next != *current {
            if let Err(e) = state::save(&sh.path, &next) {
                tracing::error!(error = %e, "docspace sandbox could not persist its state");
                return internal_error();
            }
            *current = next;
            *lock(&sh.index) = None;
        }
        outcome
    };
    drop(current);
    sh.count(&route.key, Counter::Executed);
    match wire::encode(&outcome, href, method) {
        (status, Some(body)) => Answer::json(status, body),
        (status, None) => Answer::empty(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uuids_are_canonical_v4() {
        for _ in 0..100 {
            let id = new_uuid();
            assert!(state::is_canonical_uuid(&id), "{id}");
            assert_eq!(&id[14..15], "4");
            assert!("89ab".contains(&id[19..20]));
        }
    }
}
