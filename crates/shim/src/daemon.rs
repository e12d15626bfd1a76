//! Becoming the detached monitor: the double fork, the one report line relayed to the engine, the
//! process attributes of a monitor (subreaper, OOM score, stdio, diagnostics) and the SIGCHLD
//! self-pipe.
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::protocol::Report;

/// Exit code of the first process when the shim could not start the container.
const FAILED: i32 = 1;

pub enum Detached {
    /// This is the process the engine started: exit with this code.
    Parent(i32),
    /// This is the daemon: report through the `Reporter`, then serve.
    Daemon(Reporter),
}

/// The daemon's end of the pipe to the first process, which relays the report to the engine.
pub struct Reporter(File);

impl Reporter {
    pub fn send(mut self, report: &Report) {
        let line = serde_json::to_string(report).unwrap_or_else(|_| r#"{"error":"unencodable report","exit_code":125}"#.into());
        if let Err(e) = writeln!(self.0, "{line}") {
            tracing::warn!("reporting to the engine: {e}");
        }
    }
}

/// Prints the report on our stdout (the engine's pipe).
pub fn print_report(report: &Report) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, report);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Forks twice: the daemon is in its own session (so the engine's signals and terminal do not
/// reach it) but is no session leader (so no terminal it opens becomes its controlling one). The
/// first process waits for the daemon's report, prints it and exits, so the engine gets the report
/// and reaps its child at once, while the daemon never holds the engine's pipe.
pub fn detach() -> Detached {
    let (r, w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return fail_early(format!("creating the shim's report pipe: {e}")),
    };
    // SAFETY: fork of the single-threaded shim process (nothing but main has run).
    let middle = unsafe { libc::fork() };
    if middle < 0 {
        return fail_early(format!("forking the shim: {}", std::io::Error::last_os_error()));
    }
    if middle > 0 {
        drop(w);
        return Detached::Parent(relay(middle, r));
    }
    drop(r);
    // SAFETY: setsid and fork in the single-threaded middle process, which then leaves with _exit
    // (no destructors or atexit handlers of the parent's state run twice).
    unsafe {
        libc::setsid();
        match libc::fork() {
            0 => {}
            _ => libc::_exit(0),
        }
    }
    Detached::Daemon(Reporter(File::from(w)))
}

fn fail_early(message: String) -> Detached {
    print_report(&Report::Failed { error: message, exit_code: 125 });
    Detached::Parent(FAILED)
}

/// The first process: reap the middle one, pass the daemon's line on.
fn relay(middle: i32, r: OwnedFd) -> i32 {
    // SAFETY: reaping the child we just forked; it exits at once.
    unsafe { libc::waitpid(middle, std::ptr::null_mut(), 0) };
    let mut line = String::new();
    let _ = BufReader::new(File::from(r)).read_line(&mut line);
    let report = serde_json::from_str::<Report>(line.trim())
        .unwrap_or_else(|_| Report::Failed { error: "the shim exited before reporting; see its shim.log".into(), exit_code: 125 });
    print_report(&report);
    match report {
        Report::Started { .. } => 0,
        Report::Failed { .. } => FAILED,
    }
}

/// Stdio to /dev/null, cwd to /, subreaper, diagnostics to `<state_dir>/shim.log`.
pub fn become_monitor(state_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let log = File::options().create(true).append(true).open(state_dir.join("shim.log"))?;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    std::env::set_current_dir("/")?;
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    tracing_subscriber::fmt().with_writer(std::sync::Mutex::new(log)).with_ansi(false).with_max_level(tracing::Level::INFO).init();
    std::panic::set_hook(Box::new(|info| tracing::error!("shim panicked: {info}")));
    Ok(())
}

/// Writes `/proc/self/oom_score_adj`.
pub fn set_oom_score_adj(value: &str) {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", value) {
        tracing::warn!("setting the shim's oom_score_adj to {value}: {e}");
    }
}

/// What the shim changes about itself that the processes it clones must not inherit: the Rust
/// runtime's ignored SIGPIPE (an ignored signal survives execve) and the shim's OOM protection.
pub struct ChildDefaults {
    oom_score_adj: String,
}

impl ChildDefaults {
    /// Remembers the OOM score the engine gave us, then protects the shim.
    pub fn protect_self() -> ChildDefaults {
        let oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj").map(|s| s.trim().to_string()).unwrap_or_else(|_| "0".into());
        set_oom_score_adj("-999");
        ChildDefaults { oom_score_adj }
    }

    /// Runs `f` (which clones container processes) with the attributes children should get.
    pub fn around<T>(&self, f: impl FnOnce() -> T) -> T {
        set_sigpipe(libc::SIG_DFL);
        set_oom_score_adj(&self.oom_score_adj);
        let out = f();
        set_oom_score_adj("-999");
        // The shim writes to pipes and sockets whose readers may be gone: it must not die of it.
        set_sigpipe(libc::SIG_IGN);
        out
    }
}

fn set_sigpipe(disposition: libc::sighandler_t) {
    // SAFETY: installs a default or ignore disposition; no handler code runs.
    unsafe { libc::signal(libc::SIGPIPE, disposition) };
}

/// Write end of the SIGCHLD self-pipe, read by the signal handler.
static SIGCHLD_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_PIPE.load(Ordering::Relaxed);
    // SAFETY: write(2) and errno access are async-signal-safe; errno is restored for the code the
    // signal interrupted.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, [1u8].as_ptr().cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// A SIGCHLD handler that wakes the poll loop through a pipe. A handler rather than a blocked
/// signal and signalfd: the signal mask is inherited by the container, a handler is reset by
/// execve.
pub struct ChildSignals {
    read: OwnedFd,
    _write: OwnedFd,
}

impl ChildSignals {
    pub fn install() -> std::io::Result<ChildSignals> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let (read, write) = nix::unistd::pipe2(flags).map_err(std::io::Error::from)?;
        SIGCHLD_PIPE.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_sigchld),
            nix::sys::signal::SaFlags::SA_RESTART | nix::sys::signal::SaFlags::SA_NOCLDSTOP,
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only calls async-signal-safe functions.
        unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGCHLD, &action) }.map_err(std::io::Error::from)?;
        Ok(ChildSignals { read, _write: write })
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empties the pipe after a wake-up.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer from our own non-blocking pipe.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}
