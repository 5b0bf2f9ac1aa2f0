//! The Bitrix24 REST emulator: a stateful fake portal served over real HTTP, following
//! `/work/shared/reference/bitrix24-api.md` and `bitrix24-rules.md` (webhook routes, the
//! envelope, the `sonet_group.*`, `user.*` and `department.*` methods, `batch`, the leaky
//! bucket). It owns [`Sandbox`], its lifecycle and
//! its errors; the submodules own one concern each:
//!
//! * [`state`] — the YAML state file (shape documented there), validation, atomic write-back;
//! * [`params`] — PHP values, `parse_str`, casts, `json_encode`-style output;
//! * [`methods`] — the REST methods, pure functions of (caller, params, state);
//! * [`batch`] — `batch`: command parsing, references, result sections;
//! * [`oauth`] — the OAuth refresh grant and access-token checks;
//! * [`limits`] — the clock abstraction and the leaky bucket;
//! * [`server`] — HTTP: routing, auth, request parsing, the envelope, persistence.
//!
//! It must share no code with roster's client (`crate::provider`): nothing outside
//! `crate::sandbox` is used here, so a wire-format bug cannot hide on both sides at once.
//!
//! # One sandbox per state file
//!
//! A running sandbox holds an exclusive lock on its state file, so two roster processes (or two
//! sandboxes in one process) never both write it and lose each other's updates. The lock is an
//! OS file lock (`flock` via [`std::fs::File::try_lock`]) on a sidecar file `.NAME.lock` next
//! to the real file (symlinks resolved), not on the state file itself, because every write
//! replaces the state file by rename. `flock` locks belong to the open file description, so they
//! conflict across processes and between two opens in one process alike, and the OS drops them
//! when the process dies. The lock file holds the owner's pid and is left in place when the
//! sandbox stops. A second sandbox waits up to [`StartOptions::lock_wait`] (10 s by default),
//! then fails with [`SandboxError::Locked`]. The lock is taken before the state is read, and
//! released only after the server has stopped (it lives as long as anything that can write).

pub mod batch;
pub mod limits;
pub mod methods;
pub mod oauth;
pub mod params;
pub mod server;
pub mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Counters since start. Serialized (and served at [`server::STATS_PATH`],
/// `GET /_sandbox/stats`) as
/// `{"http_requests":N,"commands":N,"rejected_503":N,"rejected_429":N,"faults_injected":N,
/// "oauth_token_requests":N,"oauth_tokens_issued":N,"write_commands":N,
/// "methods":{"batch":{"http_requests":N,"commands":N,"rejected_503":N,"rejected_429":N},…}}`,
/// methods in name order. Method names are lower-case; names the sandbox does not implement are
/// counted together as `(unknown)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every HTTP request received on the REST routes.
    pub http_requests: u64,
    /// Commands executed: a plain call counts 1, a batch counts each sub-command it ran.
    pub commands: u64,
    /// Requests answered 503 (leaky bucket or injected fault).
    pub rejected_503: u64,
    /// Requests answered 429 (operating budget or injected fault).
    pub rejected_429: u64,
    /// Faults injected from `portal.faults`, of every kind: requests refused, lost, cut,
    /// slowed or answered with an error after acting, and batch commands failed.
    pub faults_injected: u64,
    /// Requests to the OAuth token endpoint (`/oauth/token/`), whatever their outcome.
    pub oauth_token_requests: u64,
    /// Successful refreshes: new token pairs issued.
    pub oauth_tokens_issued: u64,
    /// The same counters per method. A plain call counts its request and its command under
    /// its method; a batch counts the request under `batch` and each sub-command under the
    /// sub-command's method.
    pub methods: std::collections::BTreeMap<String, MethodStats>,
}

/// The counters of one method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MethodStats {
    pub http_requests: u64,
    pub commands: u64,
    pub rejected_503: u64,
    pub rejected_429: u64,
}

/// The methods that change the portal's state.
pub const WRITE_METHODS: &[&str] = &[
    "sonet_group.user.add",
    "sonet_group.user.update",
    "sonet_group.user.delete",
    "sonet_group.user.invite",
    "sonet_group.user.request",
    "sonet_group.setowner",
];

impl Stats {
    /// The counters of `method` (zero if it was never called).
    pub fn method(&self, method: &str) -> MethodStats {
        self.methods.get(method).copied().unwrap_or_default()
    }

    /// Commands executed of the methods that change state ([`WRITE_METHODS`]).
    pub fn write_commands(&self) -> u64 {
        WRITE_METHODS.iter().map(|m| self.method(m).commands).sum()
    }
}

impl serde::Serialize for Stats {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = ser.serialize_struct("Stats", 9)?;
        st.serialize_field("http_requests", &self.http_requests)?;
        st.serialize_field("commands", &self.commands)?;
        st.serialize_field("rejected_503", &self.rejected_503)?;
        st.serialize_field("rejected_429", &self.rejected_429)?;
        st.serialize_field("faults_injected", &self.faults_injected)?;
        st.serialize_field("oauth_token_requests", &self.oauth_token_requests)?;
        st.serialize_field("oauth_tokens_issued", &self.oauth_tokens_issued)?;
        st.serialize_field("write_commands", &self.write_commands())?;
        st.serialize_field("methods", &self.methods)?;
        st.end()
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
    #[error("cannot parse state file {}{}: {message}", path.display(), position(*line, *column))]
    Parse {
        path: PathBuf,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("invalid state file {}{}: {message}", path.display(), position(*line, *column))]
    Invalid {
        path: PathBuf,
        /// Where the offending value is, when validation knows it (departments do).
        line: Option<usize>,
        column: Option<usize>,
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
        super::lock::show_wait(*waited)
    )]
    Locked {
        /// The state file (as given).
        path: PathBuf,
        /// The holder's pid, as written in the lock file, if it could be read.
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

/// How to start a sandbox; `StartOptions::default()` is what [`Sandbox::start`] uses.
#[derive(Clone)]
pub struct StartOptions {
    /// Where time comes from (tests drive a [`limits::ManualClock`]).
    pub clock: Arc<dyn limits::Clock>,
    /// How long to wait for a state file another sandbox holds before failing with
    /// [`SandboxError::Locked`]. Real time, whatever the clock.
    pub lock_wait: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            clock: Arc::new(limits::SystemClock::default()),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// How long a sandbox waits for a state file in use by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Take the exclusive lock on the state file behind `path`, waiting up to `wait` (see
/// [`crate::sandbox::lock`]).
async fn lock_state(path: &Path, wait: Duration) -> Result<std::fs::File, SandboxError> {
    super::lock::lock_state(path, wait)
        .await
        .map_err(|e| match e {
            super::lock::LockError::Locked { pid, waited } => SandboxError::Locked {
                path: path.to_owned(),
                pid,
                waited,
            },
            super::lock::LockError::Io { lock, source } => SandboxError::Lock {
                path: path.to_owned(),
                lock,
                source,
            },
        })
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// A running emulator.
pub struct Sandbox {
    addr: SocketAddr,
    webhook: Option<(i64, String)>,
    shared: Arc<server::Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Sandbox {
    /// Lock and load the state file, bind `listen` (e.g. 127.0.0.1:0), serve in a background
    /// tokio task. Waits up to 10 s for a state file another sandbox holds.
    pub async fn start(state_path: &Path, listen: SocketAddr) -> Result<Sandbox, SandboxError> {
        Self::start_with(state_path, listen, StartOptions::default()).await
    }

    /// As [`Sandbox::start`], reading time from `clock` (tests drive a [`limits::ManualClock`]).
    pub async fn start_with_clock(
        state_path: &Path,
        listen: SocketAddr,
        clock: Arc<dyn limits::Clock>,
    ) -> Result<Sandbox, SandboxError> {
        let options = StartOptions {
            clock,
            ..StartOptions::default()
        };
        Self::start_with(state_path, listen, options).await
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
        let lock = lock_state(state_path, options.lock_wait).await?;
        state::remove_stale_temp(state_path);
        let clock = options.clock;
        let st = state::load(state_path)?;
        let webhook = st
            .webhooks
            .iter()
            .find(|w| st.user(w.user).is_some_and(|u| u.admin))
            .or_else(|| st.webhooks.first())
            .map(|w| (w.user, w.code.clone()));
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
            clock,
            lock,
        ));
        let app = server::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::debug!(%addr, path = %state_path.display(), "bitrix24 sandbox listening");
        Ok(Sandbox {
            addr,
            webhook,
            shared,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Webhook base URL, ending with '/', for the first webhook of an admin user (else the
    /// first webhook): `http://127.0.0.1:PORT/rest/{user}/{code}/`.
    pub fn webhook_url(&self) -> Option<String> {
        self.webhook
            .as_ref()
            .map(|(u, c)| format!("http://{}/rest/{u}/{c}/", self.addr))
    }

    /// Counters since start.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stop serving (graceful: in-flight requests finish) and make sure every change is on
    /// disk. Changes are written (and fsynced) before each response, so this only waits.
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
