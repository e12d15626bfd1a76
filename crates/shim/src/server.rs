//! The daemon: creates and starts the container through the runtime, reports, then runs a
//! single-threaded poll loop (container output → log, control socket, SIGCHLD) until the container
//! has exited and its output is drained; then it records the exit and leaves.
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::client::ShimConfig;
use crate::daemon::{ChildDefaults, ChildSignals, Reporter};
use crate::log::LogWriter;
use crate::protocol::{self, Empty, ErrorReply, ExecExited, ExecStarted, ExitStatus, Report, Request, StateReply};
use crate::stdio::ContainerIo;

/// How long output may keep flowing after the init exited (a leftover process can hold the pipe).
const DRAIN_GRACE: Duration = Duration::from_millis(1000);
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long exec processes get to be reaped once the container is deleted.
const EXEC_REAP_GRACE: Duration = Duration::from_millis(1000);

/// A failure before the report, with Docker's exit code for it.
struct StartError {
    message: String,
    exit_code: i32,
}

impl StartError {
    fn internal(message: String) -> Self {
        StartError { message, exit_code: 125 }
    }
}

/// Runs the daemon; returns the process exit code.
pub fn run(mut cfg: ShimConfig, reporter: Reporter) -> i32 {
    // Absolute paths first: the monitor moves to / so it keeps no directory busy.
    for p in [&mut cfg.bundle, &mut cfg.runtime_root, &mut cfg.state_dir, &mut cfg.log] {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
    if let Err(e) = crate::daemon::become_monitor(&cfg.state_dir) {
        reporter.send(&Report::Failed { error: format!("setting up the shim in {}: {e}", cfg.state_dir.display()), exit_code: 125 });
        return 1;
    }
    match start(&cfg) {
        Ok(mut shim) => {
            tracing::info!(id = %cfg.id, pid = shim.init, "container started");
            reporter.send(&Report::Started { pid: shim.init });
            shim.serve();
            shim.finish();
            0
        }
        Err(e) => {
            tracing::error!(id = %cfg.id, "container did not start: {}", e.message);
            reporter.send(&Report::Failed { error: e.message, exit_code: e.exit_code });
            1
        }
    }
}

fn bind(state_dir: &Path) -> std::io::Result<UnixListener> {
    let (_dir, short) = protocol::socket_path(state_dir)?;
    match std::fs::remove_file(state_dir.join(protocol::SOCKET)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // The socket is created 0600 (not chmod-ed afterwards, which would leave a window).
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(&short);
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let listener = listener?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn start(cfg: &ShimConfig) -> Result<Shim, StartError> {
    let defaults = ChildDefaults::protect_self();
    let signals = ChildSignals::install().map_err(|e| StartError::internal(format!("installing the SIGCHLD handler: {e}")))?;
    let log = File::options().create(true).append(true).open(&cfg.log).map_err(|e| StartError::internal(format!("opening the log {}: {e}", cfg.log.display())))?;
    let (mut io, child_stdio) = crate::stdio::create(cfg.tty, cfg.stdin).map_err(|e| StartError::internal(format!("creating the container's stdio: {e}")))?;
    let listener = bind(&cfg.state_dir).map_err(|e| StartError::internal(format!("binding {}: {e}", cfg.state_dir.join(protocol::SOCKET).display())))?;
    let socket = cfg.state_dir.join(protocol::SOCKET);

    let rt = runtime::Runtime::new(&cfg.runtime_root);
    let opts = runtime::CreateOptions { stdio: child_stdio, pid_file: None, seccomp_cache: cfg.seccomp_cache.clone() };
    let created = defaults.around(|| rt.create(&cfg.id, &cfg.bundle, opts));
    let fail = |e: runtime::Error, created: bool| {
        let err = StartError { message: e.to_string(), exit_code: e.exit_code() };
        if created {
            if let Err(d) = rt.delete(&cfg.id, true) {
                tracing::warn!("deleting {} after the failed start: {d}", cfg.id);
            }
        }
        reap_all();
        let _ = std::fs::remove_file(&socket);
        err
    };
    if created.is_ok() {
        if let Err(e) = io.receive_console() {
            let _ = rt.delete(&cfg.id, true);
            reap_all();
            let _ = std::fs::remove_file(&socket);
            return Err(StartError::internal(format!("receiving the container's pty: {e}")));
        }
    }
    let pid = match created {
        Ok(c) => match rt.start(&cfg.id) {
            Ok(()) => c.pid,
            Err(e) => return Err(fail(e, true)),
        },
        Err(e) => return Err(fail(e, false)),
    };
    Ok(Shim {
        cfg: cfg.clone(),
        rt,
        defaults,
        signals,
        listener,
        socket,
        init: pid,
        io,
        log: LogWriter::new(log),
        pending: Vec::new(),
        waiters: Vec::new(),
        execs: HashMap::new(),
        exit: None,
    })
}

/// Reaps whatever has exited, ignoring it (used when there is no container to account for).
fn reap_all() {
    while let Ok(s) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

/// A connection whose request line has not fully arrived.
struct Pending {
    sock: UnixStream,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
    deadline: Instant,
}

struct Shim {
    cfg: ShimConfig,
    rt: runtime::Runtime,
    defaults: ChildDefaults,
    signals: ChildSignals,
    listener: UnixListener,
    socket: PathBuf,
    init: i32,
    io: ContainerIo,
    log: LogWriter<File>,
    pending: Vec<Pending>,
    waiters: Vec<UnixStream>,
    /// Exec processes whose client waits for the exit code, by pid.
    execs: HashMap<i32, UnixStream>,
    exit: Option<ExitStatus>,
}

/// What a polled fd is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Listener,
    Signals,
    Output(usize),
    Pending(usize),
    Waiter(usize),
    Exec(i32),
}

/// (pid, exit code as Docker reports it, signal)
fn decode(status: WaitStatus) -> Option<(i32, i32, Option<i32>)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code, None)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn reply<T: serde::Serialize>(sock: &UnixStream, value: &T, fds: &[RawFd]) {
    if let Err(e) = protocol::send_json(sock, value, fds) {
        tracing::debug!("answering a client: {e}");
    }
}

fn error(sock: &UnixStream, message: impl Into<String>) {
    reply(sock, &ErrorReply { error: message.into() }, &[]);
}

/// True when the peer has closed (or broken) the connection; discards anything it sent.
fn peer_gone(sock: &UnixStream) -> bool {
    let mut discard = Vec::new();
    let mut fds = Vec::new();
    match protocol::recv_some(sock, &mut discard, &mut fds, true) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

impl Shim {
    fn serve(&mut self) {
        let mut drain_deadline: Option<Instant> = None;
        // The init may have exited before the handler's first wake-up could be polled.
        self.reap();
        loop {
            if self.exit.is_some() && drain_deadline.is_none() {
                drain_deadline = Some(Instant::now() + DRAIN_GRACE);
                // Nobody can feed a dead container; a holder of the pipe's other end sees EPIPE.
                self.io.stdin = None;
            }
            if let Some(d) = drain_deadline {
                if self.io.outputs.is_empty() || Instant::now() >= d {
                    break;
                }
            }
            let (slots, ready) = match self.poll(drain_deadline) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("poll: {e}");
                    break;
                }
            };
            self.dispatch(&slots, &ready);
        }
        for (stream, _) in std::mem::take(&mut self.io.outputs) {
            if let Err(e) = self.log.finish(stream) {
                tracing::warn!("writing the container log: {e}");
            }
        }
    }

    /// Waits for something to do; returns every polled slot and whether it is ready.
    fn poll(&self, drain_deadline: Option<Instant>) -> std::io::Result<(Vec<Slot>, Vec<bool>)> {
        let mut slots = vec![Slot::Listener, Slot::Signals];
        let mut fds = vec![self.listener.as_raw_fd(), self.signals.fd()];
        for (i, (_, f)) in self.io.outputs.iter().enumerate() {
            slots.push(Slot::Output(i));
            fds.push(f.as_raw_fd());
        }
        for (i, p) in self.pending.iter().enumerate() {
            slots.push(Slot::Pending(i));
            fds.push(p.sock.as_raw_fd());
        }
        for (i, w) in self.waiters.iter().enumerate() {
            slots.push(Slot::Waiter(i));
            fds.push(w.as_raw_fd());
        }
        for (pid, s) in &self.execs {
            slots.push(Slot::Exec(*pid));
            fds.push(s.as_raw_fd());
        }
        let mut pfds: Vec<libc::pollfd> = fds.iter().map(|fd| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }).collect();
        let deadline = self.pending.iter().map(|p| p.deadline).chain(drain_deadline).min();
        let timeout = deadline.map_or(-1, |d| d.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32 + 1);
        // SAFETY: poll on a vector of pollfd we own, of the length we pass.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let ready = pfds.iter().map(|p| n > 0 && p.revents != 0).collect();
        Ok((slots, ready))
    }

    fn dispatch(&mut self, slots: &[Slot], ready: &[bool]) {
        let is_ready = |want: Slot| slots.iter().zip(ready).any(|(s, r)| *s == want && *r);
        if is_ready(Slot::Signals) {
            self.signals.drain();
            self.reap();
        }
        let outputs: Vec<usize> = (0..self.io.outputs.len()).filter(|i| is_ready(Slot::Output(*i))).collect();
        self.copy_output(&outputs);
        let gone: Vec<usize> = (0..self.waiters.len()).filter(|i| is_ready(Slot::Waiter(*i)) && peer_gone(&self.waiters[*i])).collect();
        for i in gone.into_iter().rev() {
            self.waiters.remove(i);
        }
        // A client that stops waiting for its exec leaves the process running, untracked.
        self.execs.retain(|pid, s| !(is_ready(Slot::Exec(*pid)) && peer_gone(s)));
        let pending = std::mem::take(&mut self.pending);
        for (i, p) in pending.into_iter().enumerate() {
            if is_ready(Slot::Pending(i)) {
                self.read_request(p);
            } else if Instant::now() < p.deadline {
                self.pending.push(p);
            }
        }
        if is_ready(Slot::Listener) {
            self.accept();
        }
    }

    fn copy_output(&mut self, ready: &[usize]) {
        let mut closed = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for &i in ready {
            let (stream, f) = &mut self.io.outputs[i];
            match f.read(&mut buf) {
                Ok(n) if n > 0 => {
                    if let Err(e) = self.log.write(*stream, &buf[..n]) {
                        tracing::warn!("writing the container log: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EOF, or EIO from a pty master once the last slave is closed.
                _ => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            let (stream, _) = self.io.outputs.remove(i);
            if let Err(e) = self.log.finish(stream) {
                tracing::warn!("writing the container log: {e}");
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    // Clients usually send at once: try before going back to poll.
                    self.read_request(Pending { sock, buf: Vec::new(), fds: Vec::new(), deadline: Instant::now() + REQUEST_TIMEOUT });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        tracing::warn!("accepting a client: {e}");
                    }
                    return;
                }
            }
        }
    }

    fn read_request(&mut self, mut p: Pending) {
        loop {
            if let Some(line) = protocol::take_line(&mut p.buf) {
                return self.handle(p.sock, &line, p.fds);
            }
            match protocol::recv_some(&p.sock, &mut p.buf, &mut p.fds, true) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return self.pending.push(p),
                Err(e) => return tracing::debug!("reading a request: {e}"),
            }
        }
    }

    fn handle(&mut self, sock: UnixStream, line: &[u8], fds: Vec<OwnedFd>) {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => return error(&sock, format!("bad request: {e}")),
        };
        match req {
            Request::State => {
                let status = if self.exit.is_some() { "stopped" } else { "running" };
                reply(&sock, &StateReply { pid: self.init, status: status.into() }, &[]);
            }
            // Answered in `finish`, after exit.json is written.
            Request::Wait => self.waiters.push(sock),
            Request::Kill { signal, all } => match self.rt.kill(&self.cfg.id, signal, all) {
                Ok(()) => reply(&sock, &Empty {}, &[]),
                Err(e) => error(&sock, e.to_string()),
            },
            Request::Stdin => match self.io.take_stdin() {
                // Our copy (the pipe's only one, or a dup of the master) closes once sent.
                Ok(fd) => reply(&sock, &Empty {}, &[fd.as_raw_fd()]),
                Err(e) => error(&sock, e),
            },
            Request::Resize { width, height } => match self.io.resize(width, height) {
                Ok(()) => reply(&sock, &Empty {}, &[]),
                Err(e) => error(&sock, e),
            },
            Request::Exec { process, tty } => self.exec(sock, &process, tty, fds),
        }
    }

    fn exec(&mut self, sock: UnixStream, process: &oci_spec::runtime::Process, tty: bool, fds: Vec<OwnedFd>) {
        if self.exit.is_some() {
            return error(&sock, format!("container {} is not running", self.cfg.id));
        }
        let mut fds = fds.into_iter();
        let stdio = match (tty, fds.next(), fds.next(), fds.next(), fds.next()) {
            (true, Some(slave), None, None, None) => runtime::Stdio::Console(slave),
            (false, Some(stdin), Some(stdout), Some(stderr), None) => runtime::Stdio::Fds { stdin, stdout, stderr },
            _ => return error(&sock, if tty { "exec with a tty takes one fd (the pty slave)" } else { "exec takes three fds (stdin, stdout, stderr)" }),
        };
        match self.defaults.around(|| self.rt.exec(&self.cfg.id, process, stdio)) {
            Ok(pid) => {
                tracing::info!(pid, "exec started");
                // The process cannot have been reaped yet: only `reap` waits, and it runs after this.
                if protocol::send_json(&sock, &ExecStarted { pid }, &[]).is_ok() {
                    self.execs.insert(pid, sock);
                }
            }
            Err(e) => error(&sock, e.to_string()),
        }
    }

    /// Reaps every exited child: the init, exec processes, and orphans reparented to us.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let Some((pid, exit_code, signal)) = decode(status) else { continue };
            if pid == self.init {
                tracing::info!(exit_code, ?signal, "container exited");
                self.exit = Some(ExitStatus { exit_code, signal, oom_killed: false, finished_at: now() });
            } else if let Some(sock) = self.execs.remove(&pid) {
                tracing::info!(pid, exit_code, "exec exited");
                reply(&sock, &ExecExited { exit_code }, &[]);
            }
        }
    }

    /// Deletes the container, records the exit, answers waiters, removes the socket.
    fn finish(mut self) {
        let mut status = self.exit.clone().unwrap_or_else(|| {
            // Only a failing poll ends the loop without an exit; the container is killed below.
            ExitStatus { exit_code: 255, signal: None, oom_killed: false, finished_at: now() }
        });
        status.oom_killed = oom_killed(&self.cfg.bundle);
        if let Err(e) = self.rt.delete(&self.cfg.id, true) {
            tracing::warn!("deleting container {}: {e}", self.cfg.id);
        }
        let grace = Instant::now() + EXEC_REAP_GRACE;
        self.reap();
        while !self.execs.is_empty() && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
            self.reap();
        }
        if let Err(e) = write_exit(&self.cfg.state_dir, &status) {
            tracing::error!("writing {}: {e}", protocol::EXIT_FILE);
        }
        for w in self.waiters.drain(..) {
            reply(&w, &status, &[]);
        }
        for (pid, sock) in self.execs.drain() {
            error(&sock, format!("exec process {pid} outlived its container; its exit code is unknown"));
        }
        self.answer_backlog(&status);
        drop(self.listener);
        let _ = std::fs::remove_file(&self.socket);
        tracing::info!("shim done");
    }
}

impl Shim {
    /// Answers the clients already connected when the shim is leaving, so that a `wait` sent just
    /// as the container exited gets the status rather than a reset connection. (A client that
    /// connects later finds no socket, and `exit.json`.)
    fn answer_backlog(&mut self, status: &ExitStatus) {
        let mut conns: Vec<Pending> = std::mem::take(&mut self.pending);
        while let Ok((sock, _)) = self.listener.accept() {
            conns.push(Pending { sock, buf: Vec::new(), fds: Vec::new(), deadline: Instant::now() });
        }
        for mut p in conns {
            let _ = p.sock.set_nonblocking(false);
            let _ = p.sock.set_read_timeout(Some(Duration::from_millis(100)));
            let line = loop {
                if let Some(line) = protocol::take_line(&mut p.buf) {
                    break Some(line);
                }
                match protocol::recv_some(&p.sock, &mut p.buf, &mut p.fds, false) {
                    Ok(n) if n > 0 => {}
                    _ => break None,
                }
            };
            match line.map(|l| serde_json::from_slice::<Request>(&l)) {
                Some(Ok(Request::Wait)) => reply(&p.sock, status, &[]),
                Some(Ok(Request::State)) => reply(&p.sock, &StateReply { pid: self.init, status: "stopped".into() }, &[]),
                Some(_) => error(&p.sock, format!("container {} has exited", self.cfg.id)),
                None => {}
            }
        }
    }
}

/// `exit.json`, atomically: a reader sees the whole record or none. No fsync: it lies on the path of
/// every `run --rm` (it cost ~5 ms here), the state dir is runtime state, and after a power loss there is
/// no container left whose exit it could describe.
fn write_exit(state_dir: &Path, status: &ExitStatus) -> std::io::Result<()> {
    let data = serde_json::to_vec(status).map_err(std::io::Error::other)?;
    let tmp = state_dir.join(format!("{}.tmp", protocol::EXIT_FILE));
    let mut f = File::create(&tmp)?;
    std::io::Write::write_all(&mut f, &data)?;
    std::fs::rename(&tmp, state_dir.join(protocol::EXIT_FILE))
}

/// Whether the OOM killer struck in the container's cgroup (read before the cgroup is deleted).
fn oom_killed(bundle: &Path) -> bool {
    let path = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
        .and_then(|v| v.pointer("/linux/cgroupsPath").and_then(|p| p.as_str()).map(str::to_string));
    let Some(path) = path else { return false };
    match cgroups::Cgroup::open(&path).and_then(|c| c.stats()) {
        Ok(s) => s.memory.oom_kill > 0,
        Err(e) => {
            tracing::debug!("reading OOM events of {path}: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_death_is_reported_as_128_plus_the_signal() {
        let pid = Pid::from_raw(10);
        assert_eq!(decode(WaitStatus::Exited(pid, 3)), Some((10, 3, None)));
        assert_eq!(decode(WaitStatus::Signaled(pid, nix::sys::signal::Signal::SIGTERM, false)), Some((10, 143, Some(15))));
        assert_eq!(decode(WaitStatus::StillAlive), None);
    }

    #[test]
    fn the_exit_record_is_replaced_atomically() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = ExitStatus { exit_code: 3, signal: None, oom_killed: false, finished_at: now() };
        write_exit(dir.path(), &s).expect("write");
        assert_eq!(crate::read_exit(dir.path()), Some(s));
        assert!(!dir.path().join("exit.json.tmp").exists());
    }

    #[test]
    fn a_bundle_without_cgroups_path_reports_no_oom() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("config.json"), r#"{"linux":{}}"#).expect("config");
        assert!(!oom_killed(dir.path()));
        assert!(!oom_killed(&dir.path().join("missing")));
    }
}
