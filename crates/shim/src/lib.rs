//! The per-container monitor (`berth shim`): owns a container's stdio (json-file log, or a pty),
//! is its parent and subreaper, records its exit atomically in `exit.json`, and serves a control
//! socket (state, wait, kill, stdin, resize, exec), so containers outlive the engine.
//!
//! Single-threaded, no tokio: the runtime clones the container from this process. Knows nothing of
//! images or the Docker API; the engine drives it through `client`.

mod client;
mod log;
pub mod protocol;
mod server;

use std::ffi::OsString;
use std::process::ExitCode;

pub use client::{read_exit, spawn, Client, Error, ExecHandle, ShimConfig, SpawnError, Started};
pub use protocol::ExitStatus;

/// Entry point of `berth shim …` (arguments after `shim`).
pub fn main(args: &[OsString]) -> ExitCode {
    match server::parse_args(args) {
        Ok(a) => ExitCode::from(server::run(a) as u8),
        Err(e) => {
            eprintln!("berth shim: {e}");
            ExitCode::from(2)
        }
    }
}
