//! The per-container monitor: owns a container's stdio (log file or pty), reaps it, records its exit and
//! serves a control socket, so containers outlive the engine.
use std::ffi::OsString;
use std::process::ExitCode;

/// Entry point of `berth shim …` (arguments after `shim`).
pub fn main(_args: &[OsString]) -> ExitCode {
    ExitCode::from(2)
}
