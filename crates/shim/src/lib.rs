//! The per-container monitor (`berth shim`): owns a container's stdio (json-file log, or a pty),
//! is its parent and subreaper, records its exit atomically in `exit.json`, and serves a control
//! socket (state, wait, kill, stdin, resize, exec), so containers outlive the engine.
//!
//! Single-threaded, no tokio: the runtime clones the container from this process. Knows nothing of
//! images or the Docker API, and does not set containers up itself (the `runtime` crate does); the
//! engine drives it through `client`, or through `protocol` from async code.
//!
//! Layout: `args` (flags), `daemon` (detaching, process attributes, SIGCHLD), `stdio` (pipes or
//! pty), `log` (json-file writer), `server` (the poll loop and requests), `protocol` (wire types and
//! fd passing), `client` (the engine's side).

mod args;
mod client;
mod daemon;
mod log;
pub mod protocol;
mod server;
mod stdio;

use std::ffi::OsString;
use std::process::ExitCode;

pub use client::{read_exit, spawn, Client, Error, ExecHandle, ShimConfig, SpawnError, Started};
pub use protocol::{ExitStatus, StateReply};

/// Entry point of `berth shim …` (the arguments after `shim`). Prints one report line on stdout
/// and returns at once in the process that was started; the container is served by a detached
/// daemon.
pub fn main(args: &[OsString]) -> ExitCode {
    let cfg = match args::parse(args) {
        Ok(c) => c,
        Err(e) => {
            daemon::print_report(&protocol::Report::Failed { error: e.to_string(), exit_code: 125 });
            return ExitCode::from(2);
        }
    };
    match daemon::detach() {
        daemon::Detached::Parent(code) => ExitCode::from(code as u8),
        daemon::Detached::Daemon(reporter) => ExitCode::from(server::run(cfg, reporter) as u8),
    }
}
