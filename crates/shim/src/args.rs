//! The shim's flags, parsed by hand (no clap: the shim starts once per container and must be quick).
use std::ffi::OsString;
use std::path::PathBuf;

use crate::client::ShimConfig;

const USAGE: &str = "usage: berth shim --id ID --bundle DIR --runtime-root DIR --state-dir DIR --log FILE [--tty] [--stdin] [--seccomp-cache DIR]";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("shim flag {0} needs a value")]
    MissingValue(String),
    #[error("unknown shim flag {0}")]
    Unknown(String),
    #[error("shim flag --id is not valid UTF-8")]
    BadId,
    #[error("shim flag {0} is required; {USAGE}")]
    Required(&'static str),
}

pub fn parse(args: &[OsString]) -> Result<ShimConfig, ArgsError> {
    let mut id = None;
    let mut bundle = None;
    let mut runtime_root = None;
    let mut state_dir = None;
    let mut log = None;
    let mut seccomp_cache = None;
    let (mut tty, mut stdin) = (false, false);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let name = flag.to_string_lossy();
        let mut value = || it.next().cloned().ok_or_else(|| ArgsError::MissingValue(name.to_string()));
        match name.as_ref() {
            "--id" => id = Some(value()?.into_string().map_err(|_| ArgsError::BadId)?),
            "--bundle" => bundle = Some(PathBuf::from(value()?)),
            "--runtime-root" => runtime_root = Some(PathBuf::from(value()?)),
            "--state-dir" => state_dir = Some(PathBuf::from(value()?)),
            "--log" => log = Some(PathBuf::from(value()?)),
            "--seccomp-cache" => seccomp_cache = Some(PathBuf::from(value()?)),
            "--tty" => tty = true,
            "--stdin" => stdin = true,
            _ => return Err(ArgsError::Unknown(name.into_owned())),
        }
    }
    Ok(ShimConfig {
        id: id.filter(|s| !s.is_empty()).ok_or(ArgsError::Required("--id"))?,
        bundle: bundle.ok_or(ArgsError::Required("--bundle"))?,
        runtime_root: runtime_root.ok_or(ArgsError::Required("--runtime-root"))?,
        state_dir: state_dir.ok_or(ArgsError::Required("--state-dir"))?,
        log: log.ok_or(ArgsError::Required("--log"))?,
        tty,
        stdin,
        seccomp_cache,
    })
}

/// The flags that `parse` reads back into `cfg` (what `client::spawn` passes).
pub fn to_args(cfg: &ShimConfig) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::with_capacity(14);
    let mut push = |k: &str, val: OsString| {
        v.push(k.into());
        v.push(val);
    };
    push("--id", cfg.id.clone().into());
    push("--bundle", cfg.bundle.clone().into());
    push("--runtime-root", cfg.runtime_root.clone().into());
    push("--state-dir", cfg.state_dir.clone().into());
    push("--log", cfg.log.clone().into());
    if let Some(c) = &cfg.seccomp_cache {
        push("--seccomp-cache", c.clone().into());
    }
    if cfg.tty {
        v.push("--tty".into());
    }
    if cfg.stdin {
        v.push("--stdin".into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn full() -> ShimConfig {
        ShimConfig {
            id: "c1".into(),
            bundle: "/b".into(),
            runtime_root: "/r".into(),
            state_dir: "/s".into(),
            log: "/l.json".into(),
            tty: true,
            stdin: true,
            seccomp_cache: Some("/cache".into()),
        }
    }

    #[test]
    fn flags_written_by_spawn_parse_back_to_the_same_config() {
        let cfg = full();
        let back = parse(&to_args(&cfg)).expect("parse");
        assert_eq!(format!("{back:?}"), format!("{cfg:?}"));
        let plain = ShimConfig { tty: false, stdin: false, seccomp_cache: None, ..full() };
        let back = parse(&to_args(&plain)).expect("parse");
        assert!(!back.tty && !back.stdin && back.seccomp_cache.is_none());
    }

    #[test]
    fn a_missing_required_flag_is_named() {
        let err = parse(&os(&["--id", "x", "--bundle", "/b", "--runtime-root", "/r", "--log", "/l"])).expect_err("no state dir");
        assert_eq!(err, ArgsError::Required("--state-dir"));
        assert!(err.to_string().contains("usage: berth shim"));
    }

    #[test]
    fn a_flag_without_its_value_and_an_unknown_flag_are_refused() {
        assert_eq!(parse(&os(&["--id"])).expect_err("no value"), ArgsError::MissingValue("--id".into()));
        assert_eq!(parse(&os(&["--detach"])).expect_err("unknown"), ArgsError::Unknown("--detach".into()));
    }
}
