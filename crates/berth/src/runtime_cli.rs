//! `berth runtime …`: a runc-compatible command line over the `runtime` crate, so berth's runtime
//! can be compared with runc on the same bundle and driven by OCI validation suites.
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth runtime", about = "berth's OCI runtime (runc-compatible commands)")]
struct Args {
    /// State directory.
    #[arg(long, default_value = "/run/berth/runtime")]
    root: PathBuf,
    /// Accepted for runc compatibility; ignored.
    #[arg(long, hide = true)]
    log: Option<PathBuf>,
    #[arg(long, hide = true)]
    log_format: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container from a bundle; it waits for `start`.
    Create {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        id: String,
    },
    /// Start a created container.
    Start { id: String },
    /// Print the OCI state of a container.
    State { id: String },
    /// Send a signal (name or number, default TERM).
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container's state.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create, start and wait for a container; exits with its status.
    Run {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        id: String,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short = 't', long)]
        tty: bool,
        id: String,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// List containers.
    List,
}

fn signal(s: Option<&str>) -> anyhow::Result<i32> {
    let s = s.unwrap_or("TERM");
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Ok(name.parse::<nix::sys::signal::Signal>().map_err(|_| anyhow::anyhow!("invalid signal {s:?}"))? as i32)
}

pub fn main(args: &[OsString]) -> ExitCode {
    let argv = std::iter::once(OsString::from("berth runtime")).chain(args.iter().cloned());
    let parsed = match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(parsed) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berth runtime: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn wait_exit(pid: i32) -> u8 {
    loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => return c as u8,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => return 128u8.wrapping_add(s as u8),
            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
            Err(_) => return 255,
        }
    }
}

fn run(args: Args) -> anyhow::Result<u8> {
    let rt = runtime::Runtime::new(&args.root);
    let opts = |pid_file| runtime::CreateOptions { stdio: runtime::Stdio::Inherit, pid_file, seccomp_cache: None };
    match args.cmd {
        Cmd::Create { bundle, pid_file, id } => {
            rt.create(&id, &bundle, opts(pid_file))?;
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::State { id } => println!("{}", serde_json::to_string_pretty(&rt.state(&id)?)?),
        Cmd::Kill { all, id, signal: s } => rt.kill(&id, signal(s.as_deref())?, all)?,
        Cmd::Delete { force, id } => rt.delete(&id, force)?,
        Cmd::List => {
            println!("{:<24} {:<8} {:<10} BUNDLE", "ID", "PID", "STATUS");
            for s in rt.list()? {
                let v = serde_json::to_value(&s)?;
                println!("{:<24} {:<8} {:<10} {}", v["id"].as_str().unwrap_or(""), v["pid"], v["status"].as_str().unwrap_or(""), v["bundle"].as_str().unwrap_or(""));
            }
        }
        Cmd::Run { bundle, id } => {
            let created = rt.create(&id, &bundle, opts(None))?;
            if let Err(e) = rt.start(&id) {
                let _ = rt.delete(&id, true);
                eprintln!("berth runtime: {e}");
                return Ok(e.exit_code() as u8);
            }
            let code = wait_exit(created.pid);
            rt.delete(&id, true)?;
            return Ok(code);
        }
        Cmd::Exec { tty, id, command } => {
            let state = rt.state(&id)?;
            let bundle = serde_json::to_value(&state)?["bundle"].as_str().unwrap_or("").to_string();
            let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(PathBuf::from(bundle).join("config.json"))?)?;
            let mut p = cfg["process"].clone();
            p["args"] = serde_json::json!(command);
            p["terminal"] = serde_json::json!(tty);
            let process: oci_spec_process::Process = serde_json::from_value(p)?;
            let pid = rt.exec(&id, &process, runtime::Stdio::Inherit)?;
            return Ok(wait_exit(pid));
        }
    }
    Ok(0)
}

/// oci-spec's Process type, through the runtime crate's dependency.
mod oci_spec_process {
    pub use runtime::OciProcess as Process;
}
