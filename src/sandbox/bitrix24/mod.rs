//! The Bitrix24 REST emulator: a stateful fake portal served over real HTTP, following
//! `/work/shared/reference/bitrix24-api.md` (webhook routes, the envelope, the `sonet_group.*`
//! and `user.*` methods, `batch`, the leaky bucket). It owns [`Sandbox`], its lifecycle and
//! its errors; the submodules own one concern each:
//!
//! * [`state`] — the YAML state file (shape documented there), validation, atomic write-back;
//! * [`params`] — PHP values, `parse_str`, casts, `json_encode`-style output;
//! * [`methods`] — the REST methods, pure functions of (caller, params, state);
//! * [`batch`] — `batch`: command parsing, references, result sections;
//! * [`limits`] — the clock abstraction and the leaky bucket;
//! * [`server`] — HTTP: routing, auth, request parsing, the envelope, persistence.
//!
//! It must share no code with roster's client (`crate::provider`): nothing outside
//! `crate::sandbox` is used here, so a wire-format bug cannot hide on both sides at once.

pub mod batch;
pub mod limits;
pub mod methods;
pub mod params;
pub mod server;
pub mod state;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Every HTTP request received.
    pub http_requests: u64,
    /// Commands executed: a plain call counts 1, a batch counts each sub-command it ran.
    pub commands: u64,
    /// Requests answered 503 (leaky bucket or injected fault).
    pub rejected_503: u64,
    /// Requests answered 429 (operating budget or injected fault).
    pub rejected_429: u64,
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
    #[error("invalid state file {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
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
    /// Load the state file, bind `listen` (e.g. 127.0.0.1:0), serve in a background tokio task.
    pub async fn start(state_path: &Path, listen: SocketAddr) -> Result<Sandbox, SandboxError> {
        Self::start_with_clock(state_path, listen, Arc::new(limits::SystemClock::default())).await
    }

    /// As [`Sandbox::start`], reading time from `clock` (tests drive a [`limits::ManualClock`]).
    pub async fn start_with_clock(
        state_path: &Path,
        listen: SocketAddr,
        clock: Arc<dyn limits::Clock>,
    ) -> Result<Sandbox, SandboxError> {
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
        let shared = Arc::new(server::Shared::new(state_path.to_owned(), st, clock));
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
