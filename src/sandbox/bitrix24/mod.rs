//! The Bitrix24 REST emulator (placeholder with the agreed API until the emulator lands).

use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    pub http_requests: u64,
    pub commands: u64,
    pub rejected_503: u64,
    pub rejected_429: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("sandbox not built yet")]
pub struct SandboxError;

pub struct Sandbox;

impl Sandbox {
    pub async fn start(_state_path: &Path, _listen: SocketAddr) -> Result<Sandbox, SandboxError> {
        Err(SandboxError)
    }
    pub fn addr(&self) -> SocketAddr {
        unimplemented!()
    }
    pub fn webhook_url(&self) -> Option<String> {
        None
    }
    pub fn stats(&self) -> Stats {
        Stats::default()
    }
    pub async fn shutdown(self) -> Result<(), SandboxError> {
        Ok(())
    }
}
