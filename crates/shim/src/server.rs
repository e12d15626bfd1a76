//! The shim process: detaches, creates and starts the container through the runtime, reports, then
//! runs a single-threaded poll loop (container output → log, control socket, SIGCHLD) until the
//! container exits; then it records the exit and leaves.
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::log::{LogWriter, STDERR, STDOUT};
use crate::protocol::{recv_line, send_line, ExitStatus, Request};

/// The shim's flags are exactly what the engine's `ShimConfig` says.
pub type Args = crate::client::ShimConfig;

pub fn parse_args(args: &[OsString]) -> Result<Args, String> {
    let mut a = Args { id: String::new(), bundle: PathBuf::new(), runtime_root: PathBuf::new(), state_dir: PathBuf::new(), log: PathBuf::new(), tty: false, stdin: false, seccomp_cache: None };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()));
        match flag.to_str() {
            Some("--id") => a.id = value()?.to_string_lossy().into_owned(),
            Some("--bundle") => a.bundle = value()?.into(),
            Some("--runtime-root") => a.runtime_root = value()?.into(),
            Some("--state-dir") => a.state_dir = value()?.into(),
            Some("--log") => a.log = value()?.into(),
            Some("--seccomp-cache") => a.seccomp_cache = Some(value()?.into()),
            Some("--tty") => a.tty = true,
            Some("--stdin") => a.stdin = true,
            _ => return Err(format!("unknown shim flag {}", flag.to_string_lossy())),
        }
    }
    if a.id.is_empty() || a.state_dir.as_os_str().is_empty() || a.bundle.as_os_str().is_empty() {
        return Err("usage: berth shim --id ID --bundle DIR --runtime-root DIR --state-dir DIR --log FILE [--tty] [--stdin]".into());
    }
    Ok(a)
}

fn report(line: serde_json::Value) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// The container's stdio as the shim holds it.
struct Io {
    /// stdout and stderr readers (a tty has just the master, as stdout).
    outputs: Vec<(usize, File)>,
    /// Write end of stdin or the pty master; handed out once (pty: duplicated each time).
    stdin: Option<OwnedFd>,
    master: Option<OwnedFd>,
}

fn make_stdio(a: &Args) -> std::io::Result<(Io, runtime::Stdio)> {
    if a.tty {
        let p = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        for fd in [&p.master, &p.slave] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
        }
        let reader = File::from(p.master.try_clone()?);
        let io = Io { outputs: vec![(STDOUT, reader)], stdin: None, master: Some(p.master) };
        return Ok((io, runtime::Stdio::Console(p.slave)));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (stdin_child, stdin_keep) = if a.stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (File::open("/dev/null")?.into(), None)
    };
    let io = Io { outputs: vec![(STDOUT, File::from(out_r)), (STDERR, File::from(err_r))], stdin: stdin_keep, master: None };
    Ok((io, runtime::Stdio::Fds { stdin: stdin_child, stdout: out_w, stderr: err_w }))
}

/// `berth shim …`: returns the process exit code.
pub fn run(a: Args) -> i32 {
    // Detach: the first process exits at once (the engine reaps it); the second, in its own session,
    // keeps the engine's stdout pipe only until it has reported.
    // SAFETY: fork of this single-threaded process.
    match unsafe { libc::fork() } {
        -1 => {
            report(serde_json::json!({"error": format!("shim fork: {}", std::io::Error::last_os_error()), "exit_code": 125}));
            return 125;
        }
        0 => {}
        _ => return 0,
    }
    // SAFETY: plain process-attribute calls.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let _ = std::fs::write("/proc/self/oom_score_adj", "-999");
    let _ = std::fs::create_dir_all(&a.state_dir);
    match serve(&a) {
        Ok(()) => 0,
        Err(e) => {
            // Before the report this goes to the engine; after it, to shim.log.
            report(serde_json::json!({"error": e.0, "exit_code": e.1}));
            1
        }
    }
}

fn redirect_own_stdio(a: &Args) {
    let null = File::options().read(true).write(true).open("/dev/null");
    let log = File::options().create(true).append(true).open(a.state_dir.join("shim.log"));
    if let (Ok(null), Ok(log)) = (null, log) {
        // SAFETY: dup2 onto our own stdio.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(log.as_raw_fd(), 2);
        }
    }
}

fn serve(a: &Args) -> Result<(), (String, i32)> {
    let internal = |e: String| (e, 125);
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(|e| internal(format!("blocking SIGCHLD: {e}")))?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| internal(format!("signalfd: {e}")))?;
    let (mut io, child_stdio) = make_stdio(a).map_err(|e| internal(format!("container stdio: {e}")))?;
    let socket = a.state_dir.join("shim.sock");
    let _ = std::fs::remove_file(&socket);
    let (_dir, short) = crate::protocol::socket_path(&a.state_dir).map_err(|e| internal(format!("opening {}: {e}", a.state_dir.display())))?;
    let listener = UnixListener::bind(&short).map_err(|e| internal(format!("binding {}: {e}", socket.display())))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600));
    listener.set_nonblocking(true).map_err(|e| internal(e.to_string()))?;

    let rt = runtime::Runtime::new(&a.runtime_root);
    let opts = runtime::CreateOptions { stdio: child_stdio, pid_file: None, seccomp_cache: a.seccomp_cache.clone() };
    let created = rt.create(&a.id, &a.bundle, opts).map_err(|e| (e.to_string(), e.exit_code()))?;
    if let Err(e) = rt.start(&a.id) {
        let _ = rt.delete(&a.id, true);
        let _ = std::fs::remove_file(&socket);
        return Err((e.to_string(), e.exit_code()));
    }
    report(serde_json::json!({"pid": created.pid}));
    redirect_own_stdio(a);

    let log = File::options().create(true).append(true).open(&a.log).map_err(|e| internal(format!("opening {}: {e}", a.log.display())))?;
    let mut shim = Shim { rt, id: a.id.clone(), init: created.pid, log: LogWriter::new(log), waiters: Vec::new(), execs: HashMap::new(), exit: None };
    shim.run_loop(&listener, &sigfd, &mut io);
    // exit.json first, then the socket goes: a client that finds no socket finds the exit file, and
    // one caught in the listen backlog sees the connection close and reads the file too.
    shim.finish(&a.state_dir);
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

struct Shim {
    rt: runtime::Runtime,
    id: String,
    init: i32,
    log: LogWriter<File>,
    waiters: Vec<UnixStream>,
    execs: HashMap<i32, UnixStream>,
    exit: Option<ExitStatus>,
}

fn exit_code(status: WaitStatus) -> Option<(i32, i32, Option<i32>)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code, None)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32, Some(sig as i32))),
        _ => None,
    }
}

impl Shim {
    fn run_loop(&mut self, listener: &UnixListener, sigfd: &SignalFd, io: &mut Io) {
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if self.exit.is_some() && (io.outputs.is_empty() || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
                for (s, _) in &io.outputs {
                    let _ = self.log.flush_stream(*s);
                }
                return;
            }
            if self.exit.is_some() && drain_deadline.is_none() {
                // Output still buffered in the pipes is read; a leftover writer gets a short grace.
                drain_deadline = Some(Instant::now() + Duration::from_millis(500));
                io.stdin = None;
            }
            let mut fds: Vec<PollFd> = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN), PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            for (_, f) in &io.outputs {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            let timeout = if drain_deadline.is_some() { PollTimeout::from(50u16) } else { PollTimeout::NONE };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            if ready[1] {
                while sigfd.read_signal().ok().flatten().is_some() {}
                self.reap();
            }
            let mut closed = Vec::new();
            for (i, (stream, f)) in io.outputs.iter().enumerate() {
                if !ready[2 + i] {
                    continue;
                }
                let mut buf = [0u8; 32 * 1024];
                // SAFETY: read into a local buffer from a fd we own.
                let n = unsafe { libc::read(f.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    let _ = self.log.write(*stream, &buf[..n as usize]);
                } else {
                    let _ = self.log.flush_stream(*stream);
                    closed.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                io.outputs.remove(i);
            }
            if ready[0] {
                while let Ok((conn, _)) = listener.accept() {
                    self.handle(conn, io);
                }
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some((pid, code, signal)) = exit_code(status) else { continue };
                    if pid == self.init {
                        self.exit = Some(ExitStatus { exit_code: code, signal, oom_killed: false, finished_at: now() });
                    } else if let Some(conn) = self.execs.remove(&pid) {
                        let _ = send_line(&conn, serde_json::json!({"exit_code": code}).to_string().as_bytes(), &[]);
                    }
                }
            }
        }
    }

    fn handle(&mut self, conn: UnixStream, io: &mut Io) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut pending = Vec::new();
        let Ok(Some((line, fds))) = recv_line(&conn, &mut pending) else { return };
        let reply = |v: serde_json::Value, fds: &[RawFd]| {
            let _ = send_line(&conn, v.to_string().as_bytes(), fds);
        };
        let req: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => return reply(serde_json::json!({"error": format!("bad request: {e}")}), &[]),
        };
        match req {
            Request::State => reply(serde_json::json!({"pid": self.init, "status": if self.exit.is_some() { "stopped" } else { "running" }}), &[]),
            Request::Wait => self.waiters.push(conn),
            Request::Kill { signal, all } => match self.rt.kill(&self.id, signal, all) {
                Ok(()) => reply(serde_json::json!({}), &[]),
                Err(e) => reply(serde_json::json!({"error": e.to_string()}), &[]),
            },
            Request::Stdin => {
                if let Some(m) = &io.master {
                    match m.try_clone() {
                        Ok(dup) => reply(serde_json::json!({}), &[dup.as_raw_fd()]),
                        Err(e) => reply(serde_json::json!({"error": e.to_string()}), &[]),
                    }
                } else if let Some(w) = io.stdin.take() {
                    // StdinOnce: the shim keeps no copy, so the container sees EOF when the client closes.
                    reply(serde_json::json!({}), &[w.as_raw_fd()]);
                } else {
                    reply(serde_json::json!({"error": "stdin is not open (run with -i) or already attached"}), &[]);
                }
            }
            Request::Resize { width, height } => match &io.master {
                Some(m) => {
                    let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
                    // SAFETY: TIOCSWINSZ with a winsize we own.
                    unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                    reply(serde_json::json!({}), &[]);
                }
                None => reply(serde_json::json!({"error": "the container has no tty"}), &[]),
            },
            Request::Exec { process, tty } => {
                let mut fds = fds.into_iter();
                let stdio = if tty {
                    fds.next().map(runtime::Stdio::Console)
                } else {
                    match (fds.next(), fds.next(), fds.next()) {
                        (Some(i), Some(o), Some(e)) => Some(runtime::Stdio::Fds { stdin: i, stdout: o, stderr: e }),
                        _ => None,
                    }
                };
                let Some(stdio) = stdio else { return reply(serde_json::json!({"error": "exec needs its stdio fds"}), &[]) };
                match self.rt.exec(&self.id, &process, stdio) {
                    Ok(pid) => {
                        reply(serde_json::json!({"pid": pid}), &[]);
                        self.execs.insert(pid, conn);
                        self.reap();
                    }
                    Err(e) => reply(serde_json::json!({"error": e.to_string()}), &[]),
                }
            }
        }
    }

    fn finish(&mut self, state_dir: &std::path::Path) {
        if let Err(e) = self.rt.delete(&self.id, true) {
            eprintln!("berth shim: deleting {}: {e}", self.id);
        }
        let status = self.exit.clone().unwrap_or(ExitStatus { exit_code: 255, signal: None, oom_killed: false, finished_at: now() });
        let data = serde_json::to_vec(&status).unwrap_or_default();
        let tmp = state_dir.join("exit.json.tmp");
        if std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, state_dir.join("exit.json"))).is_err() {
            eprintln!("berth shim: writing exit.json failed");
        }
        let line = serde_json::to_vec(&status).unwrap_or_default();
        for w in self.waiters.drain(..) {
            let _ = send_line(&w, &line, &[]);
        }
        for (_, conn) in self.execs.drain() {
            let _ = send_line(&conn, br#"{"exit_code":137}"#, &[]);
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
