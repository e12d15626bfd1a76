//! berth's OCI runtime: creates, starts, signals, execs into and deletes containers from an OCI
//! bundle, and reports their state as the OCI runtime spec defines it.
//!
//! Process model (for speed, no re-exec): the caller's process is cloned once with every namespace
//! flag; the clone sets up the root filesystem and the process, blocks on the `exec.fifo` until
//! `start`, and execve's the user's command. The init is a direct child of the caller. The caller
//! must be single-threaded (the shim, or `berth runtime`): never call this from a tokio process.
//!
//! Owns the state directory (`<root>/<id>/state.json`, `exec.fifo`). Uses the `cgroups` and
//! `seccomp` crates; knows nothing of images, logs or the engine.

mod config;
mod exec;
mod init;
mod mounts;
mod process;
mod report;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use config::Config;
/// The OCI process type `exec` takes.
pub use oci_spec::runtime::Process as OciProcess;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("invalid container id {0:?}: use letters, digits, '_', '-' and '.'")]
    InvalidId(String),
    #[error("invalid runtime spec: {0}")]
    InvalidSpec(String),
    #[error("{0} are not supported by berth's runtime yet")]
    Unsupported(String),
    /// The command could not be executed (ENOENT → exit 127, EACCES → 126 for callers).
    #[error("{message}")]
    Exec { message: String, errno: i32 },
    #[error("container {id} is {status}: {action}")]
    State { id: String, status: &'static str, action: &'static str },
    #[error("creating container {id}: {message}")]
    Setup { id: String, message: String },
    #[error("cgroup: {0}")]
    Cgroup(#[from] cgroups::Error),
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccomp::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
    /// The exit status Docker reports for a process that failed to start.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { errno, .. } => process::exec_exit_code(*errno),
            _ => 125,
        }
    }
}

/// Docker's default capability set (0xa80425fb).
pub mod caps {
    pub const DOCKER_DEFAULT: &[&str] = &[
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE",
        "CAP_SETFCAP",
    ];

    pub fn docker_default() -> Vec<String> {
        DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect()
    }
}

/// Where the container's stdio comes from.
pub enum Stdio {
    Inherit,
    Fds { stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd },
    /// A pty slave: it becomes 0, 1, 2 and the controlling terminal.
    Console(OwnedFd),
}

pub struct CreateOptions {
    pub stdio: Stdio,
    pub pid_file: Option<PathBuf>,
    pub seccomp_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct Created {
    pub pid: i32,
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    id: String,
    pid: i32,
    /// Start time of the pid (from /proc/<pid>/stat), to tell it from a reused pid.
    start_time: u64,
    bundle: PathBuf,
    created: String,
    cgroups_path: Option<String>,
    seccomp_cache: Option<PathBuf>,
}

pub struct Runtime {
    root: PathBuf,
    /// Report pipes of containers created by this process, so `start` can return an execve failure.
    reports: Mutex<HashMap<String, OwnedFd>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 1024 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) && id != "." && id != ".."
}

/// Field 22 of /proc/<pid>/stat, and whether the process is a zombie.
fn proc_start(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(19)?.parse().ok()?, fields.first() == Some(&"Z")))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("creating a pipe", e.into()))
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime { root: root.into(), reports: Mutex::new(HashMap::new()) }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn load(&self, id: &str) -> Result<StateFile, Error> {
        if !valid_id(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        let data = std::fs::read(self.dir(id).join("state.json")).map_err(|_| Error::NotFound(id.to_string()))?;
        serde_json::from_slice(&data).map_err(|e| Error::InvalidSpec(format!("state of {id}: {e}")))
    }

    fn status(&self, st: &StateFile) -> Status {
        match proc_start(st.pid) {
            Some((start, false)) if start == st.start_time => {
                if self.dir(&st.id).join("exec.fifo").exists() {
                    Status::Created
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    /// Sets up the container and leaves its init waiting for `start`.
    pub fn create(&self, id: &str, bundle: &Path, opts: CreateOptions) -> Result<Created, Error> {
        if !valid_id(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        let bundle = std::fs::canonicalize(bundle).map_err(|e| Error::io(format!("bundle {}", bundle.display()), e))?;
        let cfg = Config::load(&bundle)?;
        let dir = self.dir(id);
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(format!("creating {}", self.root.display()), e))?;
        if let Err(e) = std::fs::create_dir(&dir) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists { Error::Exists(id.to_string()) } else { Error::io(format!("creating {}", dir.display()), e) });
        }
        let result = self.create_in(id, &bundle, &dir, &cfg, opts);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn create_in(&self, id: &str, bundle: &Path, dir: &Path, cfg: &Config, opts: CreateOptions) -> Result<Created, Error> {
        let setup = |message: String| Error::Setup { id: id.to_string(), message };
        let rootfs = if Path::new(&cfg.root.path).is_absolute() { PathBuf::from(&cfg.root.path) } else { bundle.join(&cfg.root.path) };
        let root_fd = nix::fcntl::open(&rootfs, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(|e| setup(format!("rootfs {}: {e}", rootfs.display())))?;
        let cmd = cfg.process.args.first().ok_or_else(|| Error::InvalidSpec("process.args is empty".into()))?;
        let exe = mounts::lookup(&root_fd, cmd, cfg.process.path_env(), &cfg.process.cwd)
            .map_err(|(errno, message)| Error::Exec { message, errno: errno as i32 })?;

        let mut flags = 0;
        let mut join = Vec::new();
        let mut new_net = false;
        for ns in &cfg.linux.namespaces {
            let flag = config::namespace_flag(&ns.typ)?;
            match &ns.path {
                Some(p) if flag == libc::CLONE_NEWPID => return Err(Error::Unsupported(format!("joining a pid namespace ({p})"))),
                Some(p) => join.push(std::fs::File::open(p).map_err(|e| Error::io(format!("namespace {p}"), e))?.into()),
                None => {
                    flags |= flag;
                    new_net |= flag == libc::CLONE_NEWNET;
                }
            }
        }
        let cgroup = match &cfg.linux.cgroups_path {
            Some(p) => {
                let cg = cgroups::Cgroup::open(p)?;
                cg.create()?;
                if let Some(r) = &cfg.linux.resources {
                    cg.apply(r)?;
                }
                Some(cg)
            }
            None => None,
        };
        let seccomp = match (&cfg.linux.seccomp, &opts.seccomp_cache) {
            (Some(p), Some(cache)) => Some(seccomp::compile_cached(p, cache)?),
            (Some(p), None) => Some(seccomp::compile(p)?),
            (None, _) => None,
        };
        let fifo = dir.join("exec.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| Error::io("creating exec.fifo", e.into()))?;
        let (report_r, report_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        let (stdio, console_path) = match &opts.stdio {
            Stdio::Inherit => (process::ChildStdio::Inherit, None),
            Stdio::Fds { stdin, stdout, stderr } => (process::ChildStdio::Fds([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]), None),
            Stdio::Console(slave) => (
                process::ChildStdio::Console(slave.as_raw_fd()),
                std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).ok().map(|p| p.display().to_string()),
            ),
        };
        // SAFETY: a fork-like clone (no new stack) of a single-threaded process; the child only runs
        // `init::run`, which never returns.
        let pid = unsafe { libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
        if pid < 0 {
            let _ = cgroup.as_ref().map(|c| c.destroy());
            return Err(setup(format!("clone: {}", std::io::Error::last_os_error())));
        }
        if pid == 0 {
            drop(report_r);
            drop(go_w);
            init::run(init::InitPlan {
                config: cfg,
                rootfs: &rootfs,
                exe,
                stdio,
                report: report_w.as_raw_fd(),
                go: go_r.as_raw_fd(),
                fifo: &fifo,
                seccomp: seccomp.as_ref(),
                join,
                new_net,
                cgroup: cgroup.as_ref(),
                console_path,
            });
        }
        let pid = pid as i32;
        drop(report_w);
        drop(go_r);
        let placed = cgroup.as_ref().map(|c| c.add_process(pid)).transpose();
        let abort = |msg: String| {
            // SAFETY: killing and reaping the child we just cloned.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            let _ = cgroup.as_ref().map(|c| c.destroy());
            setup(msg)
        };
        if let Err(e) = placed {
            return Err(abort(e.to_string()));
        }
        // SAFETY: one byte to the child's go pipe.
        unsafe { libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
        drop(go_w);
        match report::recv(report_r.as_raw_fd()) {
            Some((report::READY, _)) => {}
            Some((_, msg)) => return Err(abort(String::from_utf8_lossy(&msg).into_owned())),
            None => return Err(abort("the container init exited during setup".into())),
        }
        let start_time = proc_start(pid).map(|s| s.0).unwrap_or(0);
        let state = StateFile {
            id: id.to_string(),
            pid,
            start_time,
            bundle: bundle.to_path_buf(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            cgroups_path: cfg.linux.cgroups_path.clone(),
            seccomp_cache: opts.seccomp_cache.clone(),
        };
        let data = serde_json::to_vec(&state).map_err(|e| setup(e.to_string()))?;
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, dir.join("state.json"))).map_err(|e| Error::io("writing state.json", e))?;
        if let Some(pf) = &opts.pid_file {
            std::fs::write(pf, pid.to_string()).map_err(|e| Error::io(format!("writing {}", pf.display()), e))?;
        }
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), report_r);
        Ok(Created { pid })
    }

    /// Releases the init to execve. In the process that created the container an execve failure
    /// comes back as `Error::Exec`.
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let st = self.load(id)?;
        let status = self.status(&st);
        if status != Status::Created {
            return Err(Error::State { id: id.to_string(), status: status.as_str(), action: "only a created container can be started" });
        }
        let fifo = self.dir(id).join("exec.fifo");
        let report = self.reports.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        // Non-blocking open: a blocking one would hang for ever if the init died before opening its end.
        let f = nix::fcntl::open(&fifo, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(|e| Error::io("opening exec.fifo", e.into()))?;
        let failed = |msg: Vec<u8>| {
            let message = String::from_utf8_lossy(&msg).into_owned();
            let errno = if message.contains("no such file") || message.contains("not found") { libc::ENOENT } else { libc::EACCES };
            Error::Exec { message, errno }
        };
        loop {
            let mut fds = vec![nix::poll::PollFd::new(f.as_fd(), nix::poll::PollFlags::POLLIN)];
            if let Some(r) = &report {
                fds.push(nix::poll::PollFd::new(r.as_fd(), nix::poll::PollFlags::POLLIN));
            }
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
            let fifo_ready = fds[0].revents().is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN));
            let report_ready = fds.get(1).and_then(|p| p.revents()).is_some_and(|r| !r.is_empty());
            drop(fds);
            if fifo_ready {
                let mut b = [0u8; 1];
                if nix::unistd::read(&f, &mut b).unwrap_or(0) == 1 {
                    break;
                }
            }
            if report_ready {
                if let Some(r) = &report {
                    if let Some((report::ERROR, msg)) = report::recv(r.as_raw_fd()) {
                        let _ = std::fs::remove_file(&fifo);
                        return Err(failed(msg));
                    }
                }
            }
            if self.status(&st) == Status::Stopped {
                let _ = std::fs::remove_file(&fifo);
                return Err(Error::State { id: id.to_string(), status: "stopped", action: "its init exited before start" });
            }
        }
        let _ = std::fs::remove_file(&fifo);
        // After the fifo, the only thing the report pipe can still carry is an execve failure.
        if let Some(r) = report {
            if let Some((report::ERROR, msg)) = report::recv(r.as_raw_fd()) {
                return Err(failed(msg));
            }
        }
        Ok(())
    }

    /// The OCI state.
    pub fn state(&self, id: &str) -> Result<oci_spec::runtime::State, Error> {
        let st = self.load(id)?;
        let status = self.status(&st);
        let v = serde_json::json!({
            "ociVersion": "1.2.0",
            "id": st.id,
            "status": status.as_str(),
            "pid": if status == Status::Stopped { 0 } else { st.pid },
            "bundle": st.bundle,
            "annotations": {},
        });
        serde_json::from_value(v).map_err(|e| Error::InvalidSpec(e.to_string()))
    }

    pub fn list(&self) -> Result<Vec<oci_spec::runtime::State>, Error> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return Ok(Vec::new()) };
        Ok(entries.flatten().filter_map(|e| self.state(&e.file_name().to_string_lossy()).ok()).collect())
    }

    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), Error> {
        let st = self.load(id)?;
        if self.status(&st) == Status::Stopped {
            return Err(Error::State { id: id.to_string(), status: "stopped", action: "there is nothing to signal" });
        }
        if all {
            if let Some(p) = &st.cgroups_path {
                return Ok(cgroups::Cgroup::open(p)?.kill_all(signal)?);
            }
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid), nix::sys::signal::Signal::try_from(signal).map_err(|_| Error::InvalidSpec(format!("invalid signal {signal}")))?)
            .map_err(|e| Error::io(format!("signalling container {id}"), e.into()))
    }

    /// Removes the container's state and cgroup; a live container only with `force` (SIGKILL first).
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let st = match self.load(id) {
            Ok(st) => st,
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let status = self.status(&st);
        if status != Status::Stopped {
            if !force {
                return Err(Error::State { id: id.to_string(), status: status.as_str(), action: "stop it first or delete with --force" });
            }
            match &st.cgroups_path {
                Some(p) => cgroups::Cgroup::open(p)?.kill_all(libc::SIGKILL)?,
                None => {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(st.pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
            for _ in 0..500 {
                if self.status(&st) == Status::Stopped {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        if let Some(p) = &st.cgroups_path {
            let cg = cgroups::Cgroup::open(p)?;
            // Leftover processes (a container that forked away from its init) go with it.
            if !cg.pids()?.is_empty() {
                let _ = cg.kill_all(libc::SIGKILL);
            }
            cg.destroy()?;
        }
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        std::fs::remove_dir_all(self.dir(id)).map_err(|e| Error::io(format!("removing state of {id}"), e))
    }

    /// Runs `process` inside a running container; the new process is a child of the caller.
    pub fn exec(&self, id: &str, process: &oci_spec::runtime::Process, stdio: Stdio) -> Result<i32, Error> {
        let st = self.load(id)?;
        if self.status(&st) != Status::Running {
            return Err(Error::State { id: id.to_string(), status: self.status(&st).as_str(), action: "exec needs a running container" });
        }
        let cfg = Config::load(&st.bundle)?;
        let process = config::Process::from_oci(process)?;
        let seccomp = match (&cfg.linux.seccomp, &st.seccomp_cache) {
            (Some(p), Some(cache)) => Some(seccomp::compile_cached(p, cache)?),
            (Some(p), None) => Some(seccomp::compile(p)?),
            (None, _) => None,
        };
        let cgroup = st.cgroups_path.as_deref().map(cgroups::Cgroup::open).transpose()?;
        exec::run(st.pid, &cfg, &process, seccomp.as_ref(), cgroup.as_ref(), &stdio)
    }
}

