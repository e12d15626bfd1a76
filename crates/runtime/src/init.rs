//! The container's init, between clone and execve: filesystem (mounts, devices, pivot_root, masked
//! and read-only paths), hostname, sysctls, then the process setup shared with exec. Everything it
//! does happens in the new namespaces; it runs in a single-threaded clone of the caller.
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::config::Config;
use crate::mounts::{self, fd_path, parse_options};
use crate::process::{self, ChildStdio};
use crate::report;

/// What the parent prepared for the child before the clone.
pub struct InitPlan<'a> {
    pub config: &'a Config,
    pub rootfs: &'a Path,
    pub exe: String,
    pub stdio: ChildStdio,
    pub report: RawFd,
    pub go: RawFd,
    pub fifo: &'a Path,
    pub seccomp: Option<&'a seccomp::Filter>,
    pub join: Vec<OwnedFd>,
    pub new_net: bool,
    pub cgroup: Option<&'a cgroups::Cgroup>,
    /// Host path of the pty slave (bound over /dev/console).
    pub console_path: Option<String>,
}

/// Runs in the child; never returns.
pub fn run(plan: InitPlan<'_>) -> ! {
    // Not dumpable until execve: /proc/<pid>/exe of this process (the berth binary) cannot be opened
    // from inside the container (CVE-2019-5736).
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let mut go = [0u8; 1];
    // SAFETY: reading one byte from our own pipe.
    if unsafe { libc::read(plan.go, go.as_mut_ptr().cast(), 1) } != 1 {
        // SAFETY: the parent went away; leave at once.
        unsafe { libc::_exit(1) };
    }
    // The fifo lives outside the container's root: hold its directory by an O_PATH fd from before
    // pivot_root (closed by execve), and open the fifo relative to it later; no /proc needed.
    let fifo = plan.fifo.parent().and_then(|d| {
        nix::fcntl::open(d, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty()).ok()
    });
    let err = match setup(&plan, fifo) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    report::send(plan.report, report::ERROR, err.1.as_bytes());
    // SAFETY: exit without running the caller's destructors.
    unsafe { libc::_exit(err.0) }
}

type Failure = (i32, String);

fn fail(msg: impl Into<String>) -> Failure {
    (1, msg.into())
}

fn setup(plan: &InitPlan<'_>, fifo: Option<OwnedFd>) -> Result<std::convert::Infallible, Failure> {
    let cfg = plan.config;
    for ns in &plan.join {
        // SAFETY: setns on an fd of /proc/<pid>/ns/* opened by the parent.
        if unsafe { libc::setns(ns.as_raw_fd(), 0) } < 0 {
            return Err(fail(format!("joining a namespace: {}", std::io::Error::last_os_error())));
        }
    }
    if plan.new_net {
        loopback_up();
    }
    setup_rootfs(plan)?;
    if let Some(h) = &cfg.hostname {
        nix::unistd::sethostname(h).map_err(|e| fail(format!("setting hostname: {e}")))?;
    }
    for (key, value) in &cfg.linux.sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| fail(format!("sysctl {key}={value}: {e}")))?;
    }
    if let Some(adj) = cfg.process.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| fail(format!("oom_score_adj: {e}")))?;
    }
    process::setup_stdio(plan.stdio).map_err(fail)?;
    // Without no_new_privs the filter must go on while we still hold CAP_SYS_ADMIN (runc's order).
    if !cfg.process.no_new_privileges {
        if let Some(f) = plan.seccomp {
            seccomp::install(f).map_err(|e| fail(e.to_string()))?;
        }
    }
    process::setup_identity(&cfg.process).map_err(fail)?;
    let cwd = if cfg.process.cwd.is_empty() { "/" } else { &cfg.process.cwd };
    std::env::set_current_dir(cwd).map_err(|e| fail(format!("chdir to {cwd}: {e}")))?;
    if cfg.process.no_new_privileges {
        if let Some(f) = plan.seccomp {
            seccomp::install(f).map_err(|e| fail(e.to_string()))?;
        }
    }
    process::cloexec_from_3();
    report::send(plan.report, report::READY, b"");
    wait_for_start(fifo)?;
    match process::execve(&plan.exe, &cfg.process.args, &cfg.process.env) {
        Ok(never) => match never {},
        Err((errno, msg)) => {
            let _ = nix::unistd::write(std::io::stderr(), format!("berth: {msg}\n").as_bytes());
            Err((process::exec_exit_code(errno), msg))
        }
    }
}

/// Blocks on the exec fifo until `start` opens it for reading.
fn wait_for_start(state_dir: Option<OwnedFd>) -> Result<(), Failure> {
    let dir = state_dir.ok_or_else(|| fail("the state directory is gone"))?;
    let fd = nix::fcntl::openat(&dir, "exec.fifo", nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(format!("opening the exec fifo: {e}")))?;
    match nix::unistd::write(&fd, b"0") {
        Ok(1) => Ok(()),
        _ => Err(fail("writing the exec fifo")),
    }
}

/// A new network namespace starts with `lo` down; containers expect localhost to work.
fn loopback_up() {
    // SAFETY: an ioctl on a throwaway datagram socket with a zeroed, then filled, ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        libc::close(sock);
    }
}

fn mnt(source: Option<&str>, target: &str, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<(), Failure> {
    mount(source, target, fstype, flags, data).map_err(|e| fail(format!("mounting {} on {target}: {e}", fstype.or(source).unwrap_or("?"))))
}

fn setup_rootfs(plan: &InitPlan<'_>) -> Result<(), Failure> {
    let cfg = plan.config;
    let prop = match cfg.linux.rootfs_propagation.as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED,
        Some("slave") | Some("rslave") => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_PRIVATE,
    };
    mnt(None, "/", None, MsFlags::MS_REC | prop, None)?;
    let rootfs = plan.rootfs.to_str().ok_or_else(|| fail("rootfs path is not UTF-8"))?;
    mnt(Some(rootfs), rootfs, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    let root_fd = nix::fcntl::open(plan.rootfs, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(format!("opening rootfs: {e}")))?;
    for m in &cfg.mounts {
        mount_one(&root_fd, m, plan.cgroup)?;
    }
    setup_dev(&root_fd, plan.console_path.as_deref())?;
    pivot(rootfs)?;
    for p in &cfg.linux.masked_paths {
        mask(p)?;
    }
    for p in &cfg.linux.readonly_paths {
        readonly(p)?;
    }
    if cfg.root.readonly {
        mnt(None, "/", None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, None)?;
    }
    Ok(())
}

fn mount_one(root: &OwnedFd, m: &crate::config::Mount, cgroup: Option<&cgroups::Cgroup>) -> Result<(), Failure> {
    let (flags, propagation, data) = parse_options(&m.options);
    let typ = m.typ.as_deref().unwrap_or(if flags.contains(MsFlags::MS_BIND) { "bind" } else { "none" });
    if typ == "cgroup" && cgroup.is_some_and(|c| c.hierarchy() != cgroups::Hierarchy::V2) {
        return mount_v1_cgroups(root, &m.destination, cgroup, flags);
    }
    let is_bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    let source_is_file = is_bind && m.source.as_deref().is_some_and(|s| Path::new(s).metadata().is_ok_and(|md| !md.is_dir()));
    let target_fd = mounts::target(root, &m.destination, source_is_file).map_err(fail)?;
    let target = fd_path(&target_fd);
    let data = (!data.is_empty()).then_some(data.as_str());
    if is_bind {
        let source = m.source.as_deref().ok_or_else(|| fail(format!("bind mount on {} has no source", m.destination)))?;
        mnt(Some(source), &target, None, MsFlags::MS_BIND | (flags & MsFlags::MS_REC), None)?;
    } else {
        let fstype = if typ == "cgroup" { "cgroup2" } else { typ };
        mnt(Some(m.source.as_deref().unwrap_or(fstype)), &target, Some(fstype), flags, data)?;
    }
    // The fd above names what was under the mount; remount and propagation act on the new mount,
    // so resolve the destination again.
    let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if (is_bind && !extra.is_empty()) || !propagation.is_empty() {
        let mounted_fd = mounts::target(root, &m.destination, source_is_file).map_err(fail)?;
        let mounted = fd_path(&mounted_fd);
        if is_bind && !extra.is_empty() {
            mnt(None, &mounted, None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra, None)?;
        }
        if !propagation.is_empty() {
            mnt(None, &mounted, None, propagation, None)?;
        }
    }
    Ok(())
}

/// On v1 and hybrid hosts there is no cgroup namespace: the container sees a tmpfs with its own
/// cgroup directories bound read-only, as runc does.
fn mount_v1_cgroups(root: &OwnedFd, dest: &str, cgroup: Option<&cgroups::Cgroup>, flags: MsFlags) -> Result<(), Failure> {
    let base_fd = mounts::target(root, dest, false).map_err(fail)?;
    let base = fd_path(&base_fd);
    mnt(Some("tmpfs"), &base, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, Some("mode=755"))?;
    if let Some(cg) = cgroup {
        for (_, dir) in cg.dirs() {
            let Some(name) = dir.strip_prefix("/sys/fs/cgroup").ok().and_then(|r| r.components().next()) else { continue };
            let name = name.as_os_str().to_string_lossy();
            let sub = format!("{}/{name}", dest.trim_end_matches('/'));
            let fd = mounts::target(root, &sub, false).map_err(fail)?;
            let t = fd_path(&fd);
            if let Some(src) = dir.to_str() {
                mnt(Some(src), &t, None, MsFlags::MS_BIND, None)?;
                let fd = mounts::target(root, &sub, false).map_err(fail)?;
                let t = fd_path(&fd);
                mnt(None, &t, None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None)?;
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let base_fd = mounts::target(root, dest, false).map_err(fail)?;
        let base = fd_path(&base_fd);
        mnt(None, &base, None, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None)?;
    }
    Ok(())
}

/// The standard device nodes, bound from the host (works with or without mknod rights), and the
/// usual links.
fn setup_dev(root: &OwnedFd, console: Option<&str>) -> Result<(), Failure> {
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let fd = mounts::target(root, &format!("/dev/{dev}"), true).map_err(fail)?;
        mnt(Some(&format!("/dev/{dev}")), &fd_path(&fd), None, MsFlags::MS_BIND, None)?;
    }
    if let Some(c) = console {
        let fd = mounts::target(root, "/dev/console", true).map_err(fail)?;
        mnt(Some(c), &fd_path(&fd), None, MsFlags::MS_BIND, None)?;
    }
    let dev = mounts::target(root, "/dev", false).map_err(fail)?;
    for (link, to) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")] {
        // The O_PATH fd of /dev resolves the link's parent without following anything else.
        let dir = nix::fcntl::open(fd_path(&dev).as_str(), nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| fail(format!("opening /dev: {e}")))?;
        match nix::unistd::symlinkat(to, &dir, link) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(fail(format!("creating /dev/{link}: {e}"))),
        }
    }
    Ok(())
}

fn pivot(rootfs: &str) -> Result<(), Failure> {
    nix::unistd::chdir(rootfs).map_err(|e| fail(format!("chdir to rootfs: {e}")))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it.
    nix::unistd::pivot_root(".", ".").map_err(|e| fail(format!("pivot_root: {e}")))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| fail(format!("detaching the old root: {e}")))?;
    nix::unistd::chdir("/").map_err(|e| fail(format!("chdir /: {e}")))
}

fn mask(path: &str) -> Result<(), Failure> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(md) if md.is_dir() => mnt(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None),
        Ok(_) => mnt(Some("/dev/null"), path, None, MsFlags::MS_BIND, None),
    }
}

fn readonly(path: &str) -> Result<(), Failure> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mnt(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    mnt(None, path, None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_REC, None)
}
