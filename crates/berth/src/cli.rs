//! The `berth` command line: a Docker Engine API client, plus `berth engine`.
use std::ffi::OsString;
use std::process::ExitCode;

pub fn main(_args: Vec<OsString>) -> ExitCode {
    ExitCode::from(2)
}
