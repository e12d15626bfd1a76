//! `berth runtime …`: a runc-compatible command line over the `runtime` crate, so berth's runtime
//! can be driven like runc (by OCI validation suites, by hand) and compared with it on the same
//! bundle. Single-threaded by construction: main.rs dispatches here before any tokio start-up,
//! which the runtime's clone of the calling process requires.
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth runtime", about = "berth's OCI runtime (runc-compatible commands)")]
struct Args {
    /// State directory.
    #[arg(long, default_value = "/run/berth/runtime")]
    root: PathBuf,
    /// Accepted for runc compatibility; logs go to stderr.
    #[arg(long, hide = true)]
    log: Option<PathBuf>,
    #[arg(long, hide = true)]
    log_format: Option<String>,
    #[arg(long, hide = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container from a bundle; its process waits for `start`.
    Create {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Unix socket that receives the pty master (SCM_RIGHTS) when process.terminal is set.
        #[arg(long)]
        console_socket: Option<PathBuf>,
        id: String,
    },
    /// Start a created container.
    Start { id: String },
    /// Print the OCI state of a container as JSON.
    State { id: String },
    /// Send a signal (name such as KILL or SIGKILL, or a number; default TERM).
    Kill {
        /// Signal every process of the container (its cgroup), not only its init.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container's cgroup and state.
    Delete {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create, start and wait for a container in the foreground; exits with its status.
    Run {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        id: String,
    },
    /// Run a process in a running container and wait for it; exits with its status.
    Exec {
        /// A JSON file with the OCI process to run (instead of a command line).
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<String>,
        /// Extra environment, KEY=VALUE.
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List containers.
    List,
}

/// A signal given as a number or a name, with or without SIG, in any case.
fn parse_signal(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
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

/// The signal `run`/`exec` received and must pass on to the container (0: none).
static FORWARD: AtomicI32 = AtomicI32::new(0);

extern "C" fn record_signal(sig: libc::c_int) {
    FORWARD.store(sig, Ordering::SeqCst);
}

/// Set by SIGWINCH: our terminal changed size and the container's pty should follow.
static RESIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn record_resize(_: libc::c_int) {
    RESIZED.store(true, Ordering::SeqCst);
}

/// SIGTERM and SIGHUP to the foreground `run` go to the container; SIGINT and SIGQUIT from the
/// terminal already reach it (same process group), so `run` itself ignores them. Installed after
/// the clone, so the container keeps default dispositions.
fn forward_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let forward = SigAction::new(SigHandler::Handler(record_signal), SaFlags::empty(), SigSet::empty());
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handler only stores into an atomic; ignoring is always sound.
    unsafe {
        let _ = sigaction(Signal::SIGTERM, &forward);
        let _ = sigaction(Signal::SIGHUP, &forward);
        let _ = sigaction(Signal::SIGINT, &ignore);
        let _ = sigaction(Signal::SIGQUIT, &ignore);
    }
}

/// Exit status in the shell's convention (128+signal for a killed process); `hang` false polls.
fn wait_exit(pid: i32, hang: bool) -> Option<u8> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        let sig = FORWARD.swap(0, Ordering::SeqCst);
        if sig != 0 {
            // SAFETY: passing a signal on to our own child.
            unsafe { libc::kill(pid, sig) };
        }
        let flags = if hang { None } else { Some(WaitPidFlag::WNOHANG) };
        match waitpid(nix::unistd::Pid::from_raw(pid), flags) {
            Ok(WaitStatus::Exited(_, c)) => return Some(c as u8),
            Ok(WaitStatus::Signaled(_, s, _)) => return Some(128u8.wrapping_add(s as u8)),
            Ok(WaitStatus::StillAlive) => return None,
            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
            Err(_) => return Some(255),
        }
    }
}

fn run(args: Args) -> anyhow::Result<u8> {
    let rt = runtime::Runtime::new(&args.root);
    // Compiled seccomp filters are kept beside the containers: the next create skips the compile.
    let seccomp_cache = Some(args.root.join(".seccomp-cache"));
    match args.cmd {
        Cmd::Create { bundle, pid_file, console_socket, id } => {
            let stdio = match (terminal(&bundle)?, console_socket) {
                (true, Some(sock)) => console_via_socket(&sock)?,
                (true, None) => bail!("process.terminal is set: --console-socket is needed to hand the pty out"),
                (false, _) => runtime::Stdio::Inherit,
            };
            rt.create(&id, &bundle, runtime::CreateOptions { stdio, pid_file, seccomp_cache })?;
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::State { id } => println!("{}", serde_json::to_string_pretty(&rt.state(&id)?)?),
        Cmd::Kill { all, id, signal } => rt.kill(&id, parse_signal(signal.as_deref().unwrap_or("TERM"))?, all)?,
        Cmd::Delete { force, id } => rt.delete(&id, force)?,
        Cmd::List => list(&rt)?,
        Cmd::Run { bundle, pid_file, id } => return run_foreground(&rt, &bundle, runtime::CreateOptions { stdio: runtime::Stdio::Inherit, pid_file, seccomp_cache }, &id),
        Cmd::Exec { process, tty, console_socket, cwd, env, pid_file, id, command } => {
            let mut p = exec_process(&rt, &id, process.as_deref(), &command)?;
            if tty {
                p["terminal"] = serde_json::json!(true);
            }
            if let Some(cwd) = cwd {
                p["cwd"] = serde_json::json!(cwd);
            }
            if let Some(list) = p["env"].as_array_mut() {
                list.extend(env.into_iter().map(serde_json::Value::from));
            }
            let terminal = p["terminal"].as_bool().unwrap_or(false);
            let process: runtime::OciProcess = serde_json::from_value(p).context("process")?;
            let (stdio, master) = match (terminal, console_socket) {
                (true, Some(sock)) => (exec_console_via_socket(&rt, &id, &sock)?, None),
                (true, None) => {
                    let pty = nix::pty::openpty(&winsize(), None).context("allocating a pty")?;
                    (runtime::Stdio::Console(pty.slave), Some(pty.master))
                }
                (false, _) => (runtime::Stdio::Inherit, None),
            };
            let pid = rt.exec(&id, &process, stdio)?;
            if let Some(pf) = pid_file {
                std::fs::write(&pf, pid.to_string()).with_context(|| format!("writing {}", pf.display()))?;
            }
            forward_signals();
            return Ok(match master {
                Some(m) => relay(&m, pid)?,
                None => wait_exit(pid, true).unwrap_or(255),
            });
        }
    }
    Ok(0)
}

fn list(rt: &runtime::Runtime) -> anyhow::Result<()> {
    println!("{:<24} {:<8} {:<10} BUNDLE", "ID", "PID", "STATUS");
    for s in rt.list()? {
        let pid = s.pid().unwrap_or(0);
        println!("{:<24} {:<8} {:<10} {}", s.id(), pid, s.status().to_string(), s.bundle().display());
    }
    Ok(())
}

fn read_config(bundle: &Path) -> anyhow::Result<serde_json::Value> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))
}

fn terminal(bundle: &Path) -> anyhow::Result<bool> {
    Ok(read_config(bundle)?["process"]["terminal"].as_bool().unwrap_or(false))
}

/// The process for `exec`: the given file, or the container's own process with `command` as args.
fn exec_process(rt: &runtime::Runtime, id: &str, file: Option<&Path>, command: &[String]) -> anyhow::Result<serde_json::Value> {
    if let Some(f) = file {
        let data = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        return serde_json::from_slice(&data).with_context(|| format!("parsing {}", f.display()));
    }
    if command.is_empty() {
        bail!("exec needs a command or --process");
    }
    let state = rt.state(id)?;
    let mut p = read_config(state.bundle())?["process"].clone();
    p["args"] = serde_json::json!(command);
    p["terminal"] = serde_json::json!(false);
    Ok(p)
}

/// runc's --console-socket: the container's init makes a pty in its own devpts and sends the
/// master to the socket's listener; the slave becomes the container's terminal.
fn console_via_socket(sock: &Path) -> anyhow::Result<runtime::Stdio> {
    let stream = std::os::unix::net::UnixStream::connect(sock).with_context(|| format!("connecting to {}", sock.display()))?;
    Ok(runtime::Stdio::NewConsole(stream.into()))
}

/// --console-socket for exec: a pty from the container's devpts, opened from outside through
/// /proc/<init>/root, whose master goes to the socket's listener.
fn exec_console_via_socket(rt: &runtime::Runtime, id: &str, sock: &Path) -> anyhow::Result<runtime::Stdio> {
    let pid = rt.state(id)?.pid().with_context(|| format!("container {id} is not running"))?;
    let ptmx = PathBuf::from(format!("/proc/{pid}/root/dev/pts/ptmx"));
    let (master, slave, _) = runtime::pty::open_in(&ptmx).with_context(|| format!("opening a pty in container {id}"))?;
    let stream = std::os::unix::net::UnixStream::connect(sock).with_context(|| format!("connecting to {}", sock.display()))?;
    runtime::pty::send_master(&stream, &master).with_context(|| format!("sending the pty master to {}", sock.display()))?;
    Ok(runtime::Stdio::Console(slave))
}

fn winsize() -> nix::pty::Winsize {
    let mut ws = nix::pty::Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills a winsize; on failure (no tty) the defaults stay.
    unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) };
    ws
}

/// Puts our stdin in raw mode while a container owns the terminal; restores on drop.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else { return RawMode(None) };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}

/// Copies our stdin to the pty master and the master to our stdout until the container's side
/// closes, then reaps `pid`.
fn relay(master: &OwnedFd, pid: i32) -> anyhow::Result<u8> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let _raw = RawMode::enter();
    {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        // SAFETY: the handler only stores into an atomic.
        let _ = unsafe { sigaction(Signal::SIGWINCH, &SigAction::new(SigHandler::Handler(record_resize), SaFlags::empty(), SigSet::empty())) };
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("polling the terminal"),
        }
        if RESIZED.swap(false, Ordering::SeqCst) {
            let ws = winsize();
            // SAFETY: TIOCSWINSZ reads the winsize we own; the kernel signals the container's
            // foreground process group.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        let master_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let stdin_ev = fds.get(1).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
        drop(fds);
        if !master_ev.is_empty() {
            match nix::unistd::read(master, &mut buf) {
                Ok(n) if n > 0 => write_all(&stdout, &buf[..n]),
                // EIO: every slave fd is closed, the container is gone.
                _ => break,
            }
        }
        if !stdin_ev.is_empty() {
            match nix::unistd::read(&stdin, &mut buf) {
                Ok(n) if n > 0 => write_all(master, &buf[..n]),
                _ => stdin_open = false,
            }
        }
        if let Some(code) = wait_exit(pid, false) {
            return Ok(code);
        }
    }
    Ok(wait_exit(pid, true).unwrap_or(255))
}

fn write_all(fd: impl AsFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(&fd, data) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            _ => return,
        }
    }
}

/// `run`: create with our stdio (or a relayed pty), start, wait, delete; the container's status
/// becomes ours, and a command that cannot run exits 126/127 as with Docker.
fn run_foreground(rt: &runtime::Runtime, bundle: &Path, mut opts: runtime::CreateOptions, id: &str) -> anyhow::Result<u8> {
    let master = if terminal(bundle)? {
        let pty = nix::pty::openpty(&winsize(), None).context("allocating a pty")?;
        opts.stdio = runtime::Stdio::Console(pty.slave);
        Some(pty.master)
    } else {
        None
    };
    let created = match rt.create(id, bundle, opts) {
        Ok(c) => c,
        Err(e @ runtime::Error::Exec { .. }) => {
            eprintln!("berth runtime: {e}");
            return Ok(e.exit_code() as u8);
        }
        Err(e) => return Err(e.into()),
    };
    forward_signals();
    if let Err(e) = rt.start(id) {
        eprintln!("berth runtime: {e}");
        let _ = wait_exit(created.pid, true);
        rt.delete(id, true)?;
        return Ok(e.exit_code() as u8);
    }
    let code = match master {
        Some(m) => relay(&m, created.pid)?,
        None => wait_exit(created.pid, true).unwrap_or(255),
    };
    rt.delete(id, true)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_from_names_and_numbers() {
        assert_eq!(parse_signal("KILL").expect("KILL"), libc::SIGKILL);
        assert_eq!(parse_signal("sigterm").expect("sigterm"), libc::SIGTERM);
        assert_eq!(parse_signal("SIGHUP").expect("SIGHUP"), libc::SIGHUP);
        assert_eq!(parse_signal("9").expect("9"), 9);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn runc_style_command_lines_parse() {
        let parse = |args: &[&str]| Args::try_parse_from(std::iter::once("berth runtime").chain(args.iter().copied()));
        let a = parse(&["--root", "/tmp/r", "create", "--bundle", "/b", "--pid-file", "/p", "--console-socket", "/s", "c1"]).expect("create");
        assert!(matches!(a.cmd, Cmd::Create { ref id, ref console_socket, .. } if id == "c1" && console_socket.is_some()));
        assert_eq!(a.root, PathBuf::from("/tmp/r"));
        let a = parse(&["exec", "c1", "--", "sh", "-c", "echo hi"]).expect("exec");
        assert!(matches!(a.cmd, Cmd::Exec { ref command, .. } if command == &["sh", "-c", "echo hi"]));
        let a = parse(&["kill", "c1", "KILL"]).expect("kill");
        assert!(matches!(a.cmd, Cmd::Kill { ref signal, .. } if signal.as_deref() == Some("KILL")));
        let a = parse(&["delete", "--force", "c1"]).expect("delete");
        assert!(matches!(a.cmd, Cmd::Delete { force: true, .. }));
        assert!(parse(&["create", "c1", "extra"]).is_err());
    }
}
