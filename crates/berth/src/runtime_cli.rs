//! `berth runtime …`: a runc-compatible command line over the `runtime` crate.
use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(_args: &[OsString]) -> ExitCode {
    eprintln!("berth runtime: not built yet");
    ExitCode::from(2)
}
