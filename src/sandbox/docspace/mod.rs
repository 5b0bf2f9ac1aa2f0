//! The ONLYOFFICE DocSpace REST emulator: a stateful fake portal served over real HTTP on
//! loopback, following `/work/shared/reference/docspace-api.md` (the group and people
//! endpoints under `/api/2.0/`, the envelope, errors, authentication, rate limiting and the
//! manager rules). It owns [`Sandbox`], its lifecycle, its counters and its errors; the
//! submodules own one concern each:
//!
//! * [`state`] — the YAML state file, validation with positions, atomic write-back;
//! * [`positions`] — where a value sits in a YAML text (line and column by path);
//! * [`wire`] — DTOs, envelopes, error bodies, GUID parsing as .NET does it;
//! * [`routes`] — the route table and ASP.NET-style matching;
//! * [`auth`] — scheme selection, callers, API-key scopes;
//! * [`methods`] — the endpoints, pure functions of (caller, request, state);
//! * [`limits`] — the rate limiter and the fault dice;
//! * [`server`] — HTTP: the pipeline, counters, persistence.
//!
//! It must share no code with roster's client (`crate::provider`): nothing outside
//! `crate::sandbox` is used here, so a wire-format bug cannot hide on both sides at once. From
//! the Bitrix24 sandbox it reuses only the [`Clock`](crate::sandbox::bitrix24::limits::Clock)
//! and its seeded dice; the state-file lock is [`crate::sandbox::lock`], shared by both, so a
//! DocSpace and a Bitrix24 sandbox never both hold one file.
//!
//! # State file (YAML, unknown keys rejected)
//!
//! Everything sits under the top-level key `docspace` (that is how a DocSpace state file is
//! told from a Bitrix24 one, see [`is_docspace_state`]):
//!
//! ```yaml
//! docspace:
//!   # All settings are optional; shown with their defaults.
//!   rate_limit: { enabled: false, per_minute: 1500, concurrent_get: 50, concurrent_write: 15 }
//!   #   more keys: post_put_per_day: 10000, reset: seconds | epoch | none,
//!   #   headers_on_success: false, concurrency_headers: false  (see `limits`)
//!   faults: { seed: 1, rate_429: 0.0, rate_500: 0.0, rate_lost: 0.0, rate_502: 0.0,
//!             rate_500_after: 0.0, rate_truncated: 0.0, rate_slow: 0.0, slow_ms: 40000 }
//!   latency_ms: 0                  # added to every API answer (on the sandbox's clock)
//!   unauthorized_body: empty       # a 401's body: empty | envelope
//!   terminated_members: hide       # terminated members in members/membersCount: hide | show
//!   users:
//!     - { id: 6e7b3c1a-0000-4000-8000-000000000001, email: ada@example.com,
//!         first_name: Ada, last_name: Admin, status: active, type: owner }
//!     # status: active (default) | terminated | pending
//!     # type: owner | admin | room_admin | user (default) | guest
//!     # user_name: optional, default the e-mail's local part (GET people/{userid} takes it)
//!   groups:
//!     - id: 6e7b3c1a-0000-4000-8000-0000000000a1
//!       name: Designers
//!       manager: 6e7b3c1a-0000-4000-8000-000000000001   # optional; must be in members
//!       members:                                         # in joining order
//!         - 6e7b3c1a-0000-4000-8000-000000000001
//!   api_keys:
//!     - { user: 6e7b3c1a-0000-4000-8000-000000000001,
//!         key: sk-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,
//!         scopes: ["accounts:read"] }    # optional; default (and "*") every scope
//!   tokens:                               # personal access tokens: raw or "Bearer …"
//!     - { user: 6e7b3c1a-0000-4000-8000-000000000001, token: pat-ada-0001 }
//! ```
//!
//! Loading checks, with errors naming the file, line, column and field
//! (`invalid state file p.yaml:11:16: docspace.groups[0].manager: …`): ids are lowercase
//! hyphenated UUIDs, not the empty UUID, unique across users and groups; e-mails and user
//! names are unique ignoring case; at most one owner; group names have 1–128 characters; every
//! referenced user exists; a group lists a member once; **a manager must be listed in
//! `members`** (the file is refused rather than silently fixed, so it always reads as the
//! server would answer); API keys are `sk-` and 64 lowercase hex digits; tokens are printable
//! ASCII, unique, and do not start with `sk-`; scopes are `*` or `NAME:read|write`; fault rates
//! are probabilities adding up to at most 1. No message quotes a key or a token.
//!
//! Each change is written back before its answer (temp file, fsync, rename, directory fsync),
//! in the shape above: settings only when not default (`rate_limit`/`faults` when present),
//! lists in order (a new group or member is appended). Comments are not kept.
//!
//! # Faults (`faults`, all optional, default 0)
//!
//! One roll of the seeded dice per API request picks at most one fault; the rates are bands
//! taken in this order, so adding a rate never changes which requests an existing one hits.
//! Every injected fault is counted in `faults_injected`.
//!
//! * `rate_429` — refused before anything runs: 429, empty body, `Retry-After: 1` (counted in
//!   `rejected_429` too);
//! * `rate_500` — refused: 500 with an exception envelope, nothing executed;
//! * `rate_lost` — **executed**, then a proxy's 502 HTML page: the client cannot tell;
//! * `rate_502` — a proxy's 502 HTML page, nothing executed;
//! * `rate_500_after` — **executed**, then 500 with an exception envelope;
//! * `rate_truncated` — **executed**, then its status with the body cut in half;
//! * `rate_slow` — **executed** (on disk before the wait), then held `slow_ms` on the clock.
//!
//! # One sandbox per state file
//!
//! A running sandbox holds an exclusive lock on its state file ([`crate::sandbox::lock`]); a
//! second one waits up to [`StartOptions::lock_wait`] (10 s by default), then fails with
//! [`SandboxError::Locked`].

pub mod auth;
pub mod limits;
pub mod methods;
pub mod positions;
pub mod routes;
pub mod server;
pub mod state;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sandbox::bitrix24::limits::{Clock, SystemClock};

pub use server::STATS_PATH;

/// Is `text` a DocSpace state file: does its top-level mapping have the key `docspace`?
/// Reads only up to that key, so it answers for a file that would fail to load later.
pub fn is_docspace_state(text: &str) -> bool {
    positions::has_top_level_key(text, "docspace")
}

/// Counters since start, served at [`STATS_PATH`] as
/// `{"http_requests":N,"rejected_429":N,"faults_injected":N,"write_requests":N,
/// "routes":{"PUT /api/2.0/group/{id}/members":{"http_requests":N,"rejected_429":N,"executed":N},…}}`
/// (routes in name order; requests that match no route are counted as `(unknown)`).
/// Deserializable, so tests can read the served JSON back into it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Every HTTP request on the API (`/api/2.0/…` and any other path but the stats).
    pub http_requests: u64,
    /// Requests answered 429 (rate limiter or injected fault).
    pub rejected_429: u64,
    /// Faults injected, of every kind.
    pub faults_injected: u64,
    /// Non-GET requests that reached an endpoint: past routing, credentials, scopes and
    /// limits, whatever the endpoint then answered.
    pub write_requests: u64,
    /// The same per route, keyed `METHOD /api/2.0/TEMPLATE`.
    pub routes: BTreeMap<String, RouteStats>,
}

/// The counters of one route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteStats {
    pub http_requests: u64,
    pub rejected_429: u64,
    /// Requests that reached the endpoint (see [`Stats::write_requests`]).
    pub executed: u64,
}

impl Stats {
    /// The counters of `route` (`"DELETE /api/2.0/group/{id}/members"`), zero if never called.
    pub fn route(&self, route: &str) -> RouteStats {
        self.routes.get(route).copied().unwrap_or_default()
    }
}

/// Everything that can go wrong starting, running or stopping the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// YAML syntax, or a value of the wrong shape (the message names the field).
    #[error("cannot parse state file {}{}: {message}", path.display(), position(*line, *column))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A well-formed file that breaks an invariant; `field` is the value's path.
    #[error("invalid state file {}{}: {field}: {message}", path.display(), position(*line, *column))]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        field: String,
        message: String,
    },
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write state file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox server failed: {source}")]
    Serve { source: std::io::Error },
    #[error("sandbox server task ended abnormally: {message}")]
    Task { message: String },
    #[error(
        "state file {} is in use by another roster process{}; waited {}",
        path.display(),
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        crate::sandbox::lock::show_wait(*waited)
    )]
    Locked {
        path: PathBuf,
        pid: Option<u32>,
        waited: Duration,
    },
    #[error("cannot lock state file {} (lock file {}): {source}", path.display(), lock.display())]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// How to start a sandbox; `StartOptions::default()` is what [`Sandbox::start`] uses.
#[derive(Clone)]
pub struct StartOptions {
    /// Where time comes from (tests drive a `ManualClock`).
    pub clock: Arc<dyn Clock>,
    /// How long to wait for a state file another sandbox holds. Real time, whatever the clock.
    pub lock_wait: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            clock: Arc::new(SystemClock::default()),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// How long a sandbox waits for a state file in use by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A running emulator. Not `Debug`: it knows an API key.
pub struct Sandbox {
    addr: SocketAddr,
    api_key: Option<String>,
    shared: Arc<server::Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Sandbox {
    /// Lock and load the state file, bind `listen` (e.g. 127.0.0.1:0), serve in a background
    /// tokio task.
    pub async fn start(state_path: &Path, listen: SocketAddr) -> Result<Sandbox, SandboxError> {
        Self::start_with(state_path, listen, StartOptions::default()).await
    }

    /// As [`Sandbox::start`], with the clock and the lock wait given.
    pub async fn start_with(
        state_path: &Path,
        listen: SocketAddr,
        options: StartOptions,
    ) -> Result<Sandbox, SandboxError> {
        // A missing or unreadable file is a read error, not a lock error.
        std::fs::metadata(state_path).map_err(|source| SandboxError::Read {
            path: state_path.to_owned(),
            source,
        })?;
        let lock = crate::sandbox::lock::lock_state(state_path, options.lock_wait)
            .await
            .map_err(|e| match e {
                crate::sandbox::lock::LockError::Locked { pid, waited } => SandboxError::Locked {
                    path: state_path.to_owned(),
                    pid,
                    waited,
                },
                crate::sandbox::lock::LockError::Io { lock, source } => SandboxError::Lock {
                    path: state_path.to_owned(),
                    lock,
                    source,
                },
            })?;
        state::remove_stale_temp(state_path);
        let st = state::load(state_path)?;
        let api_key = st
            .api_keys
            .iter()
            .find(|k| st.user(&k.user).is_some_and(|u| u.kind.is_admin()))
            .or_else(|| st.api_keys.first())
            .map(|k| k.key.clone());
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| SandboxError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
        let shared = Arc::new(server::Shared::new(
            state_path.to_owned(),
            addr,
            st,
            options.clock,
            lock,
        ));
        let app =
            server::router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::debug!(%addr, path = %state_path.display(), "docspace sandbox listening");
        Ok(Sandbox {
            addr,
            api_key,
            shared,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The first API key of an owner or admin, else the first API key.
    pub fn api_key(&self) -> Option<String> {
        self.api_key.clone()
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stop serving (graceful: in-flight requests finish) and make sure every change is on
    /// disk. Changes are written (and fsynced) before each answer, so this only waits.
    pub async fn shutdown(self) -> Result<(), SandboxError> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(source)) => return Err(SandboxError::Serve { source }),
            Err(e) => {
                return Err(SandboxError::Task {
                    message: e.to_string(),
                });
            }
        }
        self.shared.flush()
    }
}
