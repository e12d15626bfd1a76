//! Exec into a running container: an intermediate fork joins the container's cgroup and namespaces,
//! then clones the process with CLONE_PARENT so that it becomes the caller's child (the shim reaps
//! it) and, being created after setns(pid), lives in the container's pid namespace.
use std::os::fd::{AsRawFd, OwnedFd};

use crate::config::{namespace_file, Config, Process};
use crate::process::{self, ChildStdio};
use crate::{report, Error, Stdio};

pub fn run(
    id: &str,
    init_pid: i32,
    cfg: &Config,
    p: &Process,
    seccomp: Option<&seccomp::Filter>,
    cgroup: Option<&cgroups::Cgroup>,
    stdio: &Stdio,
) -> Result<i32, Error> {
    // Namespaces in an order that keeps /proc reachable until the mount namespace, which goes last.
    let mut ns: Vec<OwnedFd> = Vec::new();
    for typ in ["ipc", "uts", "network", "pid", "cgroup", "mount"] {
        if cfg.linux.namespaces.iter().any(|n| n.typ == typ) {
            let path = format!("/proc/{init_pid}/ns/{}", namespace_file(typ));
            ns.push(std::fs::File::open(&path).map_err(|e| Error::io(format!("opening {path}"), e))?.into());
        }
    }
    let child_stdio = match stdio {
        Stdio::Inherit => ChildStdio::Inherit,
        Stdio::Fds { stdin, stdout, stderr } => ChildStdio::Fds([stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()]),
        Stdio::Console(slave) => ChildStdio::Console(slave.as_raw_fd()),
        // An exec's caller opens its pty through /proc/<pid>/root/dev/pts/ptmx itself.
        Stdio::NewConsole(_) => return Err(Error::Unsupported("console sockets for exec".to_string())),
    };
    // cgroup.procs files opened here, so the forked intermediate joins with write(2) alone.
    let join = cgroup.map(|c| c.prepare_join()).transpose()?;
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("creating a pipe", e.into()))?;
    // SAFETY: fork of a single-threaded caller; the child only runs `intermediate`, which exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::io("fork", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(report_r);
        intermediate(&ns, join.as_ref(), p, seccomp, child_stdio, report_w.as_raw_fd());
    }
    drop(report_w);
    // SAFETY: reaping the intermediate we forked.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    match report::recv(report_r.as_raw_fd()) {
        Some((report::PID, b)) if b.len() == 4 => Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Some((_, msg)) => Err(Error::ExecSetup { id: id.to_string(), message: String::from_utf8_lossy(&msg).into_owned() }),
        None => Err(Error::ExecSetup { id: id.to_string(), message: "the exec helper died".into() }),
    }
}

fn intermediate(ns: &[OwnedFd], join: Option<&cgroups::PreparedJoin>, p: &Process, seccomp: Option<&seccomp::Filter>, stdio: ChildStdio, report_fd: i32) -> ! {
    // SAFETY: prctl with constant arguments (see init: not dumpable until execve).
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let fail = |msg: String| -> ! {
        report::send(report_fd, report::ERROR, msg.as_bytes());
        // SAFETY: leave the forked child at once.
        unsafe { libc::_exit(1) }
    };
    if let Some(j) = join {
        if let Err(e) = j.join_self() {
            fail(format!("joining the container's cgroup ({}): errno {}", e.path.display(), e.errno));
        }
    }
    for fd in ns {
        // SAFETY: setns on a namespace fd opened by the parent.
        if unsafe { libc::setns(fd.as_raw_fd(), 0) } < 0 {
            fail(format!("joining the container's namespaces: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: a fork-like clone whose child becomes a sibling (CLONE_PARENT) inside the pid namespace.
    let child = unsafe { libc::syscall(libc::SYS_clone, (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    if child < 0 {
        fail(format!("clone: {}", std::io::Error::last_os_error()));
    }
    if child == 0 {
        exec_child(p, seccomp, stdio);
    }
    report::send(report_fd, report::PID, &(child as i32).to_le_bytes());
    // SAFETY: the intermediate is done.
    unsafe { libc::_exit(0) }
}

/// Sets up and runs the process; on failure prints Docker's message on the process's stderr and
/// exits with 126/127, which the caller reports as the exec's exit code.
fn exec_child(p: &Process, seccomp: Option<&seccomp::Filter>, stdio: ChildStdio) -> ! {
    let die = |code: i32, msg: String| -> ! {
        let _ = nix::unistd::write(std::io::stderr(), format!("berth: {msg}\n").as_bytes());
        // SAFETY: leave the child.
        unsafe { libc::_exit(code) }
    };
    if let Err(e) = process::setup_stdio(stdio) {
        die(126, e);
    }
    if !p.no_new_privileges {
        if let Some(f) = seccomp {
            if let Err(e) = seccomp::install(f) {
                die(126, e.to_string());
            }
        }
    }
    if let Err(e) = process::setup_identity(p) {
        die(126, e);
    }
    let cwd = if p.cwd.is_empty() { "/" } else { p.cwd.as_str() };
    if let Err(e) = std::env::set_current_dir(cwd) {
        die(126, format!("chdir to {cwd}: {e}"));
    }
    if p.no_new_privileges {
        if let Some(f) = seccomp {
            if let Err(e) = seccomp::install(f) {
                die(126, e.to_string());
            }
        }
    }
    let Some(cmd) = p.args.first() else { die(126, "no command".into()) };
    // After setns the root is the container's: look the command up inside it, as create does.
    let root = match nix::fcntl::open("/", nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()) {
        Ok(r) => r,
        Err(e) => die(126, format!("opening the container's root: {e}")),
    };
    let path = match crate::mounts::lookup(&root, cmd, p.path_env(), cwd) {
        Ok(path) => path,
        Err((errno, path)) => die(process::exec_exit_code(errno as i32), crate::exec_message(&path, errno)),
    };
    drop(root);
    process::reset_signals();
    process::cloexec_from_3();
    match process::execve(&path, &p.args, &p.env) {
        Ok(never) => match never {},
        Err((errno, msg)) => die(process::exec_exit_code(errno), msg),
    }
}
