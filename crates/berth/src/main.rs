//! `berth`: one binary, many roles. The first argument picks the role; the shim and the runtime CLI are
//! dispatched before anything else so they stay single-threaded and start fast (no tokio, no clap for
//! the shim).

mod bench;
mod bench_api;
mod bench_net;
mod bench_pull;
mod cli;
mod daemon;
mod runtime_cli;
mod server;

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("shim") => shim::main(&args[2..]),
        Some("runtime") => runtime_cli::main(&args[2..]),
        _ => cli::main(args),
    }
}
