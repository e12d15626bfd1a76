//! `create`, the parent's side: reads the bundle, prepares everything that can be prepared before
//! the clone (namespace fds, cgroup, compiled seccomp filter, PATH lookup, exec fifo), clones the
//! init with every namespace flag at once, places it in its cgroup, and waits for it to report
//! that it is ready and blocked on the fifo.
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::config::{self, Config};
use crate::process::ChildStdio;
use crate::state::StateFile;
use crate::{init, mounts, report, CreateOptions, Created, Error, Stdio};

/// Namespaces to create (clone flags) and to join (fds of `path`s; the child joins them, except
/// a pid namespace, which only a process's children can enter: the parent joins that one around
/// the clone).
struct Namespaces {
    flags: libc::c_int,
    join: Vec<OwnedFd>,
    join_pid: Option<OwnedFd>,
}

fn namespaces(cfg: &Config) -> Result<Namespaces, Error> {
    let mut ns = Namespaces { flags: 0, join: Vec::new(), join_pid: None };
    for n in &cfg.linux.namespaces {
        let flag = config::namespace_flag(&n.typ)?;
        match n.path.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => {
                let fd: OwnedFd = std::fs::File::open(p).map_err(|e| Error::io(format!("opening namespace {p}"), e))?.into();
                if flag == libc::CLONE_NEWPID {
                    ns.join_pid = Some(fd);
                } else {
                    ns.join.push(fd);
                }
            }
            None => ns.flags |= flag,
        }
    }
    Ok(ns)
}

fn setns(fd: &OwnedFd, what: &str) -> std::io::Result<()> {
    // SAFETY: setns(2) on a namespace fd we own.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWPID) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// `clone_init` with the children of this process going into `pid_ns` for the one clone, and
/// back into our own pid namespace afterwards (so later forks of a long-lived caller are not
/// affected).
///
/// # Safety
/// As `clone_init`.
unsafe fn clone_in_pid_ns(flags: libc::c_int, cgroup: Option<&std::fs::File>, pid_ns: Option<&OwnedFd>) -> std::io::Result<(libc::pid_t, bool)> {
    let Some(target) = pid_ns else {
        // SAFETY: forwarded from the caller.
        return unsafe { clone_init(flags, cgroup) };
    };
    let own: OwnedFd = std::fs::File::open("/proc/self/ns/pid")?.into();
    setns(target, "joining the pid namespace")?;
    // SAFETY: forwarded from the caller.
    let result = unsafe { clone_init(flags, cgroup) };
    if matches!(result, Ok((0, _))) {
        return result;
    }
    // Our own (active) pid namespace can always be re-entered; should that fail, the child is
    // still ours to report (and to clean up), so only warn.
    if let Err(e) = setns(&own, "returning to our pid namespace") {
        tracing::warn!(error = %e, "later children of this process may land in a container's pid namespace");
    }
    result
}

pub fn seccomp_filter(cfg: &Config, cache: Option<&Path>) -> Result<Option<seccomp::Filter>, Error> {
    Ok(match (&cfg.linux.seccomp, cache) {
        (Some(p), Some(cache)) => Some(seccomp::compile_cached(p, cache)?),
        (Some(p), None) => Some(seccomp::compile(p)?),
        (None, _) => None,
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("creating a pipe", e.into()))
}

/// clone_args of clone3(2) (the v2 layout, with the cgroup field).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A fork-like clone with `flags`; with `cgroup` the child starts inside it (clone3 and
/// CLONE_INTO_CGROUP). Returns the pid (0 in the child) and whether the cgroup placement was done.
///
/// # Safety
/// The caller must be single-threaded, and the child must only run code that is fine after fork.
unsafe fn clone_init(flags: libc::c_int, cgroup: Option<&std::fs::File>) -> std::io::Result<(libc::pid_t, bool)> {
    let mut args = CloneArgs { flags: flags as u32 as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(dir) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without a stack is fork-like; `args` outlives the call (the caller upholds the rest).
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if pid >= 0 {
        return Ok((pid as libc::pid_t, cgroup.is_some()));
    }
    let err = std::io::Error::last_os_error();
    // Kernels before 5.3 (or a seccomp profile around us) answer ENOSYS; before 5.7 CLONE_INTO_CGROUP
    // is E2BIG or EINVAL. Fall back to clone(2) and let the parent place the child.
    if !matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EINVAL)) {
        return Err(err);
    }
    // SAFETY: as above, with the classic syscall.
    let pid = unsafe { libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((pid as libc::pid_t, false))
}

fn child_stdio(stdio: &Stdio) -> (ChildStdio, Option<String>) {
    match stdio {
        Stdio::Inherit => (ChildStdio::Inherit, None),
        Stdio::Fds { stdin, stdout, stderr } => (ChildStdio::Fds([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]), None),
        Stdio::Console(slave) => (
            ChildStdio::Console(slave.as_raw_fd()),
            // The slave's host path, bound over the container's /dev/console.
            std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).ok().and_then(|p| p.to_str().map(String::from)),
        ),
        Stdio::NewConsole(socket) => (ChildStdio::NewConsole(socket.as_raw_fd()), None),
    }
}

/// Kills and reaps a child that did not make it, and removes its cgroup.
fn abort(pid: libc::pid_t, cgroup: Option<&cgroups::Cgroup>) {
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    if let Some(cg) = cgroup {
        if let Err(e) = cg.destroy() {
            tracing::warn!(cgroup = cg.path(), error = %e, "removing the cgroup of a failed create");
        }
    }
}

/// Creates the container in its already made state directory `dir`; returns the init's pid and
/// the read end of its report pipe (which carries an execve failure after `start`).
pub fn create(id: &str, bundle: &Path, dir: &Path, opts: &CreateOptions) -> Result<(Created, OwnedFd), Error> {
    let setup = |message: String| Error::Setup { id: id.to_string(), message };
    let mut cfg = Config::load(bundle)?;
    cfg.validate()?;
    let rootfs = if Path::new(&cfg.root.path).is_absolute() { PathBuf::from(&cfg.root.path) } else { bundle.join(&cfg.root.path) };
    let root_fd = nix::fcntl::open(&rootfs, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
        .map_err(|e| setup(format!("rootfs {}: {e}", rootfs.display())))?;
    // Look the command up now, so a missing one fails `create` rather than the start.
    let exe = mounts::lookup(&root_fd, &cfg.process.args[0], cfg.process.path_env(), &cfg.process.cwd)
        .map_err(|(source, path)| Error::Exec { path, source })?;
    cfg.process.ensure_home(&root_fd);
    drop(root_fd);
    let cfg = cfg;
    let ns = namespaces(&cfg)?;
    let seccomp = seccomp_filter(&cfg, opts.seccomp_cache.as_deref())?;
    let cgroup = match &cfg.linux.cgroups_path {
        Some(p) => {
            let cg = cgroups::Cgroup::open(p)?;
            cg.create()?;
            if let Some(r) = &cfg.linux.resources {
                if let Err(e) = cg.apply(r) {
                    let _ = cg.destroy();
                    return Err(e.into());
                }
            }
            Some(cg)
        }
        None => None,
    };
    let fifo = dir.join("exec.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| Error::io("creating exec.fifo", e.into()))?;
    let (report_r, report_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (stdio, console_path) = child_stdio(&opts.stdio);
    let cgroup_dir = cgroup.as_ref().and_then(|c| c.v2_dir());
    let cgroup_v2 = match &cgroup {
        Some(cg) => cg.hierarchy() == cgroups::Hierarchy::V2,
        // Only a `cgroup` mount needs to know, so only then is mountinfo read.
        None => cfg.mounts.iter().any(|m| m.typ.as_deref() == Some("cgroup")) && cgroups::detect()? == cgroups::Hierarchy::V2,
    };
    // SAFETY: the caller is single-threaded (documented on `Runtime`); the child only runs
    // `init::run`, which never returns.
    // A cgroup namespace is rooted at the cgroup its creator is in: the init unshares it itself,
    // once it is in its own cgroup.
    let new_cgroup_ns = ns.flags & libc::CLONE_NEWCGROUP != 0;
    let (pid, placed) = match unsafe { clone_in_pid_ns(ns.flags & !libc::CLONE_NEWCGROUP, cgroup_dir.as_ref(), ns.join_pid.as_ref()) } {
        Ok(r) => r,
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.destroy();
            }
            return Err(setup(format!("clone: {e}")));
        }
    };
    if pid == 0 {
        drop(report_r);
        drop(go_w);
        init::run(init::InitPlan {
            config: &cfg,
            rootfs: &rootfs,
            exe,
            stdio,
            report: report_w.as_raw_fd(),
            go: go_r.as_raw_fd(),
            state_dir: dir,
            seccomp: seccomp.as_ref(),
            join: ns.join,
            new_net: ns.flags & libc::CLONE_NEWNET != 0,
            cgroup: cgroup.as_ref(),
            cgroup_v2,
            console_path,
            new_cgroup_ns,
        });
    }
    drop(report_w);
    drop(go_r);
    let release = |go_w: OwnedFd| {
        // SAFETY: one byte from a local buffer to the child's go pipe.
        unsafe { libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
    };
    // Joining the v1 hierarchies (a cgroup.procs write each, which can wait for an RCU grace
    // period in the kernel) and the init's mounts do not depend on each other, so they overlap.
    // The init cannot execve before `start`, which comes after this function has returned, so
    // the container's process always begins inside its cgroup.
    // An init that will unshare a cgroup namespace waits until it is placed.
    let overlap = placed || !new_cgroup_ns;
    let mut go_w = Some(go_w);
    if overlap {
        go_w.take().map(release);
    }
    if let Err(e) = parent_setup(pid, &cfg, if placed { None } else { cgroup.as_ref() }) {
        abort(pid, cgroup.as_ref());
        return Err(setup(e));
    }
    go_w.take().map(release);
    match report::recv(report_r.as_raw_fd()) {
        Some((report::READY, _)) => {}
        Some((_, msg)) => {
            abort(pid, cgroup.as_ref());
            return Err(setup(String::from_utf8_lossy(&msg).into_owned()));
        }
        None => {
            abort(pid, cgroup.as_ref());
            return Err(setup("the container's init exited during setup".into()));
        }
    }
    let state = StateFile {
        id: id.to_string(),
        pid,
        start_time: crate::state::proc_start(pid).map(|s| s.0).unwrap_or(0),
        bundle: bundle.to_path_buf(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        cgroups_path: cfg.linux.cgroups_path.clone(),
        seccomp_cache: opts.seccomp_cache.clone(),
        annotations: cfg.annotations.clone(),
    };
    let written = state.save(dir).and_then(|()| match &opts.pid_file {
        Some(pf) => write_pid_file(pf, pid),
        None => Ok(()),
    });
    if let Err(e) = written {
        abort(pid, cgroup.as_ref());
        return Err(e);
    }
    Ok((Created { pid }, report_r))
}

/// What the parent does for the child between clone and go: cgroup membership (when clone3 did
/// not do it) and the OOM score, written from outside so the init needs no /proc of its own.
fn parent_setup(pid: libc::pid_t, cfg: &Config, cgroup: Option<&cgroups::Cgroup>) -> Result<(), String> {
    if let Some(cg) = cgroup {
        cg.add_process(pid).map_err(|e| e.to_string())?;
    }
    if let Some(adj) = cfg.process.oom_score_adj {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string()).map_err(|e| format!("setting oom_score_adj to {adj}: {e}"))?;
    }
    Ok(())
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    // Readers (runc's callers) poll for the file: write it whole, then rename into place.
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("writing pid file {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The clone3 path with CLONE_INTO_CGROUP, on whatever cgroup2 mount the host has (the
    /// unified hierarchy of a hybrid host will do).
    #[test]
    fn clone_into_cgroup_starts_the_child_inside_it() {
        let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|m| nix::sys::statfs::statfs(*m).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC));
        let (Some(mount), true) = (mount, nix::unistd::geteuid().is_root()) else {
            eprintln!("skipping: needs root and a cgroup2 mount");
            return;
        };
        let name = format!("berth-clone3-test-{}", std::process::id());
        let dir = Path::new(mount).join(&name);
        std::fs::create_dir(&dir).expect("mkdir cgroup");
        use std::os::unix::fs::OpenOptionsExt;
        let fd = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC).open(&dir).expect("open cgroup");
        // SAFETY: the child only sleeps in a raw syscall and exits, which is fine after fork of a
        // multi-threaded test process.
        let (pid, placed) = unsafe { clone_init(0, Some(&fd)) }.expect("clone");
        if pid == 0 {
            let ts = libc::timespec { tv_sec: 10, tv_nsec: 0 };
            // SAFETY: raw syscalls only.
            unsafe {
                libc::syscall(libc::SYS_nanosleep, &ts as *const libc::timespec, std::ptr::null_mut::<libc::timespec>());
                libc::_exit(0);
            }
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir(&dir);
        assert!(placed, "clone3 placed the child");
        assert!(cgroup.lines().any(|l| l == format!("0::/{name}")), "{cgroup}");
    }
}
