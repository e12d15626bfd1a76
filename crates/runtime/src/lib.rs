//! berth's OCI runtime: creates, starts, signals, execs into and deletes containers from an OCI
//! bundle (a directory with `config.json` and a root filesystem), and reports their state as the
//! OCI runtime spec defines it. `berth runtime …` puts a runc-compatible command line over it.
//!
//! Process model (for speed, no re-exec of any binary, no threads): the caller's process is cloned
//! once, with every namespace flag in the clone itself (clone3 with CLONE_INTO_CGROUP on pure
//! cgroup v2 hosts); the clone sets up the root filesystem and the process, blocks on `exec.fifo`
//! until `start`, and execve's the user's command. The init is a direct child of the caller, so
//! the caller can waitpid it. Namespaces with a `path` are joined by the child with setns, except
//! a pid namespace, which the parent enters just for the clone. **The caller must be single-threaded** (the shim, or `berth
//! runtime`): cloning a multi-threaded process (a tokio runtime) can deadlock the child on a lock
//! another thread held.
//!
//! Owns the state directory (`<root>/<id>/state.json`, `exec.fifo`) and everything between clone
//! and execve. Uses the `cgroups` and `seccomp` crates for those two kernel interfaces; knows
//! nothing of images, logs, networks or the engine.
//!
//! Layout: `create` (parent side of create), `init` (the child: filesystem), `mounts` (in-root
//! path resolution, options), `process` (identity, caps, stdio, execve — shared with exec),
//! `exec`, `state` (state.json), `report` (child → parent messages), `config` (config.json).

mod config;
mod create;
mod exec;
mod init;
mod mounts;
mod process;
pub mod pty;
mod report;
mod state;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;

pub use config::Config;
/// The OCI process type `exec` takes.
pub use oci_spec::runtime::Process as OciProcess;
use state::{StateFile, Status};

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
    /// The command could not be executed; callers map ENOENT to exit 127, anything else to 126.
    #[error("{}", exec_message(path, *source))]
    Exec { path: String, source: Errno },
    #[error("container {id} is {status}: {action}")]
    State { id: String, status: &'static str, action: &'static str },
    #[error("creating container {id}: {message}")]
    Setup { id: String, message: String },
    #[error("exec in container {id}: {message}")]
    ExecSetup { id: String, message: String },
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

/// Docker's (and runc's) wording, which users and scripts match on.
fn exec_message(path: &str, errno: Errno) -> String {
    match errno {
        Errno::ENOENT if !path.contains('/') => format!("exec: \"{path}\": executable file not found in $PATH"),
        Errno::ENOENT => format!("exec: \"{path}\": stat {path}: no such file or directory"),
        Errno::EACCES => format!("exec: \"{path}\": permission denied"),
        other => format!("exec: \"{path}\": {}", other.desc().to_lowercase()),
    }
}

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// The exit status Docker reports for a process that failed to start: 127 for a missing
    /// command, 126 for one that cannot be run, 125 for anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Exec { source, .. } => process::exec_exit_code(*source as i32),
            _ => 125,
        }
    }
}

/// Docker's default capability set (0xa80425fb).
pub mod caps {
    pub const DOCKER_DEFAULT: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SYS_CHROOT",
        "CAP_MKNOD",
        "CAP_AUDIT_WRITE",
        "CAP_SETFCAP",
    ];

    pub fn docker_default() -> Vec<String> {
        DOCKER_DEFAULT.iter().map(|s| s.to_string()).collect()
    }
}

/// Docker's masked paths (linux.maskedPaths): files get /dev/null bound over them, directories an
/// empty read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths (linux.readonlyPaths).
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Where the container's stdio comes from.
pub enum Stdio {
    /// The caller's own 0, 1, 2.
    Inherit,
    Fds { stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd },
    /// A pty slave: it becomes 0, 1, 2 and the controlling terminal (and /dev/console).
    Console(OwnedFd),
    /// A connected unix socket (runc's console socket): the init opens a pty in the container's
    /// own devpts, sends the master back over this socket (SCM_RIGHTS, with the name
    /// "/dev/ptmx") and makes the slave its terminal, so `tty` inside prints /dev/pts/0 as
    /// under Docker rather than the name of a host pty.
    NewConsole(OwnedFd),
}

pub struct CreateOptions {
    pub stdio: Stdio,
    /// Written (atomically) with the init's host pid once it is ready.
    pub pid_file: Option<PathBuf>,
    /// Where compiled seccomp filters are cached, keyed by the profile.
    pub seccomp_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct Created {
    /// The init's host pid; it is a child of the process that called `create`.
    pub pid: i32,
}

/// A state root (e.g. /run/berth/runtime) holding one directory per container.
pub struct Runtime {
    root: PathBuf,
    /// Report pipes of containers created by this process, so `start` can return an execve failure.
    reports: Mutex<HashMap<String, OwnedFd>>,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime { root: root.into(), reports: Mutex::new(HashMap::new()) }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn load(&self, id: &str) -> Result<StateFile, Error> {
        if !state::valid_id(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        StateFile::load(&self.dir(id), id)
    }

    fn status(&self, st: &StateFile) -> Status {
        st.status(&self.dir(&st.id))
    }

    fn take_report(&self, id: &str) -> Option<OwnedFd> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
    }

    /// Sets up the container from the bundle's config.json and leaves its init waiting for
    /// `start`. The init is a direct child of the calling process, which must be single-threaded.
    pub fn create(&self, id: &str, bundle: &Path, opts: CreateOptions) -> Result<Created, Error> {
        if !state::valid_id(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        let bundle = std::fs::canonicalize(bundle).map_err(|e| Error::io(format!("bundle {}", bundle.display()), e))?;
        let dir = self.dir(id);
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(format!("creating {}", self.root.display()), e))?;
        if let Err(e) = std::fs::create_dir(&dir) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists(id.to_string())
            } else {
                Error::io(format!("creating {}", dir.display()), e)
            });
        }
        match create::create(id, &bundle, &dir, &opts) {
            Ok((created, report)) => {
                self.reports.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), report);
                Ok(created)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Releases the init to execve process.args. Called in the process that created the
    /// container, an execve failure comes back as `Error::Exec`.
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let st = self.load(id)?;
        let status = self.status(&st);
        if status != Status::Created {
            return Err(Error::State { id: id.to_string(), status: status.as_str(), action: "only a created container can be started" });
        }
        let fifo = self.dir(id).join("exec.fifo");
        let report = self.take_report(id);
        // Non-blocking open: a blocking one would hang for ever if the init died before opening its end.
        let f = nix::fcntl::open(&fifo, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(|e| Error::io("opening exec.fifo", e.into()))?;
        let released = self.release(&st, &f, report.as_ref());
        let _ = std::fs::remove_file(&fifo);
        released?;
        // Past the fifo the report pipe carries nothing but an execve failure, and closes on success.
        match report.and_then(|r| report::recv(r.as_raw_fd())) {
            Some((report::EXEC, payload)) => Err(report::decode_exec(&payload)),
            _ => Ok(()),
        }
    }

    /// Waits until the init has written its byte into the fifo (it is past its last check and
    /// about to execve), or has failed or died.
    fn release(&self, st: &StateFile, fifo: &OwnedFd, report: Option<&OwnedFd>) -> Result<(), Error> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = vec![PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
            if let Some(r) = report {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            let _ = poll(&mut fds, PollTimeout::from(50u16));
            let fifo_ready = fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
            let report_ready = fds.get(1).and_then(|p| p.revents()).is_some_and(|r| !r.is_empty());
            drop(fds);
            if fifo_ready {
                let mut b = [0u8; 1];
                if nix::unistd::read(fifo, &mut b).unwrap_or(0) == 1 {
                    return Ok(());
                }
            }
            if report_ready {
                if let Some((report::EXEC, payload)) = report.and_then(|r| report::recv(r.as_raw_fd())) {
                    return Err(report::decode_exec(&payload));
                }
            }
            if self.status(st) == Status::Stopped {
                return Err(Error::State { id: st.id.clone(), status: "stopped", action: "its init exited before start" });
            }
        }
    }

    /// The OCI state: creating, created, running or stopped.
    pub fn state(&self, id: &str) -> Result<oci_spec::runtime::State, Error> {
        match self.load(id) {
            Ok(st) => st.to_oci(self.status(&st)),
            // The directory comes first, state.json last: in between the container is being created.
            Err(Error::NotFound(_)) if self.dir(id).join("exec.fifo").exists() => state::creating(id),
            Err(e) => Err(e),
        }
    }

    pub fn list(&self) -> Result<Vec<oci_spec::runtime::State>, Error> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", self.root.display()), e)),
        };
        let mut out: Vec<_> = entries.flatten().filter_map(|e| self.state(&e.file_name().to_string_lossy()).ok()).collect();
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }

    /// Signals the init, or with `all` every process in the container's cgroup.
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
        // SAFETY: kill(2) on a pid whose start time we just checked.
        if unsafe { libc::kill(st.pid, signal) } < 0 {
            return Err(Error::io(format!("signalling container {id} with {signal}"), std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Removes the container's cgroup and state. A live container only with `force`, which kills
    /// every process in it first.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let st = match self.load(id) {
            Ok(st) => st,
            Err(Error::NotFound(_)) if force => {
                // A create that crashed half-way leaves a directory without state.json.
                let _ = std::fs::remove_dir_all(self.dir(id));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let status = self.status(&st);
        if status != Status::Stopped {
            if !force {
                return Err(Error::State { id: id.to_string(), status: status.as_str(), action: "stop it first or delete with --force" });
            }
            self.kill_and_wait(&st)?;
        }
        if let Some(p) = &st.cgroups_path {
            let cg = cgroups::Cgroup::open(p)?;
            // Processes that outlived the init (it forked and exited) go with the container.
            if !cg.pids()?.is_empty() {
                cg.kill_all(libc::SIGKILL)?;
            }
            cg.destroy()?;
        }
        self.take_report(id);
        std::fs::remove_dir_all(self.dir(id)).map_err(|e| Error::io(format!("removing the state of container {id}"), e))
    }

    fn kill_and_wait(&self, st: &StateFile) -> Result<(), Error> {
        match &st.cgroups_path {
            Some(p) => cgroups::Cgroup::open(p)?.kill_all(libc::SIGKILL)?,
            // SAFETY: kill(2) on the pid whose start time `status` just checked.
            None => unsafe {
                libc::kill(st.pid, libc::SIGKILL);
            },
        }
        // The init dies within milliseconds; it stays a zombie until its parent reaps it, and a
        // zombie counts as stopped.
        for _ in 0..1000 {
            if self.status(st) == Status::Stopped {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(Error::State { id: st.id.clone(), status: "running", action: "it did not die on SIGKILL" })
    }

    /// Runs `process` inside the running container: joins its namespaces and cgroup, applies the
    /// process's capabilities, user, env, cwd, rlimits, no_new_privs and the container's seccomp
    /// filter. The new process is a child of the caller (which must be single-threaded); returns
    /// its host pid. A command that cannot be run exits 127 (not found) or 126 with Docker's
    /// message on its stderr.
    pub fn exec(&self, id: &str, process: &oci_spec::runtime::Process, stdio: Stdio) -> Result<i32, Error> {
        let st = self.load(id)?;
        let status = self.status(&st);
        if status != Status::Running {
            return Err(Error::State { id: id.to_string(), status: status.as_str(), action: "exec needs a running container" });
        }
        let cfg = Config::load(&st.bundle)?;
        let mut process = config::Process::from_oci(process)?;
        let root = nix::fcntl::open(format!("/proc/{}/root", st.pid).as_str(), nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .map_err(|e| Error::io(format!("opening the root of container {id}"), e.into()))?;
        process.ensure_home(&root);
        drop(root);
        let seccomp = create::seccomp_filter(&cfg, st.seccomp_cache.as_deref())?;
        let cgroup = st.cgroups_path.as_deref().map(cgroups::Cgroup::open).transpose()?;
        exec::run(id, st.pid, &cfg, &process, seccomp.as_ref(), cgroup.as_ref(), &stdio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_read_like_docker_and_map_to_its_exit_codes() {
        let missing = Error::Exec { path: "foo".into(), source: Errno::ENOENT };
        assert_eq!(missing.to_string(), "exec: \"foo\": executable file not found in $PATH");
        assert_eq!(missing.exit_code(), 127);
        let denied = Error::Exec { path: "/etc/passwd".into(), source: Errno::EACCES };
        assert_eq!(denied.to_string(), "exec: \"/etc/passwd\": permission denied");
        assert_eq!(denied.exit_code(), 126);
        assert_eq!(Error::NotFound("x".into()).exit_code(), 125);
    }

    #[test]
    fn the_default_capabilities_are_dockers_mask() {
        let mask = caps::docker_default()
            .iter()
            .map(|n| n.parse::<::caps::Capability>().expect("known capability").bitmask())
            .fold(0u64, |a, b| a | b);
        assert_eq!(mask, 0xa80425fb);
    }

    #[test]
    fn operations_on_an_unknown_container_say_not_found() {
        let dir = tempfile::tempdir().expect("tmp");
        let rt = Runtime::new(dir.path());
        assert!(matches!(rt.state("nope"), Err(Error::NotFound(_))));
        assert!(matches!(rt.start("nope"), Err(Error::NotFound(_))));
        assert!(matches!(rt.kill("nope", 15, false), Err(Error::NotFound(_))));
        assert!(matches!(rt.delete("nope", false), Err(Error::NotFound(_))));
        assert!(rt.delete("nope", true).is_ok(), "force delete of nothing succeeds");
        assert!(matches!(rt.state("../etc"), Err(Error::InvalidId(_))));
        assert!(rt.list().expect("list").is_empty());
    }
}
