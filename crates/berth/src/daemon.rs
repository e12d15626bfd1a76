//! `berth engine`: wires the engine core to the Docker Engine API server.
use std::path::PathBuf;

/// What `berth engine` was asked to do.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// State root (images, containers, volumes); default /var/lib/berth.
    pub root: PathBuf,
    /// Docker Engine API unix socket; default /run/berth/berth.sock.
    pub socket: PathBuf,
    /// Verbose logs.
    pub debug: bool,
}

/// Runs the engine in the foreground until SIGINT/SIGTERM.
pub fn run(opts: EngineOptions) -> anyhow::Result<()> {
    anyhow::bail!("engine not wired yet: {opts:?}")
}
