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
    /// Holds exec.fifo.
    pub state_dir: &'a Path,
    pub seccomp: Option<&'a seccomp::Filter>,
    pub join: Vec<OwnedFd>,
    pub new_net: bool,
    pub cgroup: Option<&'a cgroups::Cgroup>,
    /// Whether the host is pure cgroup v2 (a `cgroup` mount is then a cgroup2 mount).
    pub cgroup_v2: bool,
    /// Host path of the pty slave (bound over /dev/console).
    pub console_path: Option<String>,
    /// Unshare a cgroup namespace (after the parent has placed us in our cgroup).
    pub new_cgroup_ns: bool,
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
    let fifo = nix::fcntl::open(plan.state_dir, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty()).ok();
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
    // Device nodes and mount points get exactly the modes asked for; the process's own umask is
    // set with its identity.
    // SAFETY: umask never fails.
    unsafe { libc::umask(0) };
    for ns in &plan.join {
        // SAFETY: setns on an fd of /proc/<pid>/ns/* opened by the parent.
        if unsafe { libc::setns(ns.as_raw_fd(), 0) } < 0 {
            return Err(fail(format!("joining a namespace: {}", std::io::Error::last_os_error())));
        }
    }
    // SAFETY: unshare(2) with a constant flag.
    if plan.new_cgroup_ns && unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } < 0 {
        return Err(fail(format!("creating the cgroup namespace: {}", std::io::Error::last_os_error())));
    }
    if plan.new_net {
        loopback_up();
    }
    setup_rootfs(plan)?;
    let stdio = match plan.stdio {
        ChildStdio::NewConsole(socket) => ChildStdio::Console(open_console(socket)?),
        other => other,
    };
    process::setup_stdio(stdio).map_err(fail)?;
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
    process::reset_signals();
    process::cloexec_from_3();
    report::send(plan.report, report::READY, b"");
    wait_for_start(fifo)?;
    match process::execve(&plan.exe, &cfg.process.args, &cfg.process.env) {
        Ok(never) => match never {},
        Err((errno, msg)) => {
            // The creator learns it through `start`; anyone else (a `start` from another process)
            // through the container's stderr and its exit status.
            report::send_exec(plan.report, errno, &plan.exe);
            let _ = nix::unistd::write(std::io::stderr(), format!("berth: {msg}\n").as_bytes());
            // SAFETY: exit without running the caller's destructors.
            unsafe { libc::_exit(process::exec_exit_code(errno)) }
        }
    }
}

/// A pty from the container's own devpts (we are past pivot_root): the slave is bound over
/// /dev/console and returned; the master goes to whoever holds the other end of `socket`.
fn open_console(socket: RawFd) -> Result<RawFd, Failure> {
    let (master, slave, number) = crate::pty::open_in(Path::new("/dev/ptmx")).map_err(|e| fail(format!("opening a pty in the container: {e}")))?;
    // /dev is the container's own tmpfs: the bind target can be made there even on a read-only root.
    let root = nix::fcntl::open("/", nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(format!("opening the container's root: {e}")))?;
    let target = mounts::target(&root, "/dev/console", true).map_err(fail)?;
    mnt(Some(&format!("/dev/pts/{number}")), &fd_path(&target), None, MsFlags::MS_BIND, None)?;
    // SAFETY: `socket` is the console socket's fd, open in this process for the whole init.
    let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket) };
    crate::pty::send_master(&socket, &master).map_err(|e| fail(format!("sending the pty master over the console socket: {e}")))?;
    // The slave lives on as 0, 1, 2 (its own fd is close-on-exec).
    Ok(std::os::fd::IntoRawFd::into_raw_fd(slave))
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
    // Nothing of what follows may propagate back to the host: private (or the spec's choice).
    let prop = match cfg.linux.rootfs_propagation.as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED,
        Some("slave") | Some("rslave") => MsFlags::MS_SLAVE,
        Some("unbindable") | Some("runbindable") => MsFlags::MS_UNBINDABLE,
        _ => MsFlags::MS_PRIVATE,
    };
    mnt(None, "/", None, MsFlags::MS_REC | prop, None)?;
    let rootfs = plan.rootfs.to_str().ok_or_else(|| fail("rootfs path is not UTF-8"))?;
    // pivot_root needs the new root to be a mount point.
    mnt(Some(rootfs), rootfs, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    let root_fd = nix::fcntl::open(plan.rootfs, nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(format!("opening rootfs: {e}")))?;
    for m in &cfg.mounts {
        mount_one(&root_fd, m, plan)?;
    }
    setup_dev(&root_fd, &cfg.linux.devices, plan.console_path.as_deref())?;
    if !cfg.process.cwd.is_empty() && cfg.process.cwd != "/" {
        // Like runc, a missing working directory is made (inside the rootfs, never through a link out).
        mounts::target(&root_fd, &cfg.process.cwd, false).map_err(|e| fail(format!("working directory: {e}")))?;
    }
    drop(root_fd);
    pivot(rootfs)?;
    if let Some(h) = cfg.hostname.as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| fail(format!("setting hostname: {e}")))?;
    }
    // Sysctls before readonlyPaths makes /proc/sys read-only (validated as namespaced by create).
    for (key, value) in &cfg.linux.sysctl {
        write_proc(&format!("/proc/sys/{}", key.replace('.', "/")), value).map_err(|e| fail(format!("sysctl {key}={value}: {e}")))?;
    }
    let new_root = nix::fcntl::open("/", nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(format!("opening the new root: {e}")))?;
    if !cfg.linux.masked_paths.is_empty() {
        let null = dev_null().map_err(fail)?;
        for p in &cfg.linux.masked_paths {
            mask(&new_root, &null, p)?;
        }
    }
    for p in &cfg.linux.readonly_paths {
        readonly(&new_root, p)?;
    }
    if cfg.root.readonly {
        mnt(None, "/", None, MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY, None)?;
    }
    Ok(())
}

/// Writes a /proc file, refusing anything that is not procfs: a container image could have put a
/// file or a mount of its own where /proc/sys should be.
fn write_proc(path: &str, value: &str) -> Result<(), String> {
    let fd = nix::fcntl::open(path, nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| e.to_string())?;
    let fs = nix::sys::statfs::fstatfs(&fd).map_err(|e| e.to_string())?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(format!("{path} is not on procfs"));
    }
    nix::unistd::write(&fd, value.as_bytes()).map(drop).map_err(|e| e.to_string())
}

/// The container's /dev/null, checked to be the real device: masking with anything else (a link
/// to a host file the image planted) would expose rather than hide.
fn dev_null() -> Result<OwnedFd, String> {
    let fd = nix::fcntl::open("/dev/null", nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("opening /dev/null: {e}"))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| format!("checking /dev/null: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err("/dev/null is not the null device".into());
    }
    Ok(fd)
}

fn mount_one(root: &OwnedFd, m: &crate::config::Mount, plan: &InitPlan<'_>) -> Result<(), Failure> {
    let (mut flags, propagation, data) = parse_options(&m.options);
    let mut typ = m.typ.as_deref().unwrap_or(if flags.contains(MsFlags::MS_BIND) { "bind" } else { "none" });
    let mut source = m.source.as_deref();
    if typ == "cgroup" && !plan.cgroup_v2 {
        return mount_v1_cgroups(root, &m.destination, plan.cgroup, flags);
    }
    if typ == "sysfs" && !plan.new_net {
        // A new sysfs instance needs a network namespace of our own; without one, bind the host's
        // (runc does the same).
        typ = "bind";
        source = Some("/sys");
        flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
    }
    let is_bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    let source_is_file = is_bind && source.is_some_and(|s| Path::new(s).metadata().is_ok_and(|md| !md.is_dir()));
    let target_fd = mounts::target(root, &m.destination, source_is_file).map_err(fail)?;
    let target = fd_path(&target_fd);
    let data = (!data.is_empty()).then_some(data.as_str());
    if is_bind {
        let source = source.ok_or_else(|| fail(format!("bind mount on {} has no source", m.destination)))?;
        mnt(Some(source), &target, None, MsFlags::MS_BIND | (flags & MsFlags::MS_REC), None)?;
    } else {
        let fstype = if typ == "cgroup" { "cgroup2" } else { typ };
        mnt(Some(source.unwrap_or(fstype)), &target, Some(fstype), flags, data)?;
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

/// The standard device nodes (mknod, or a bind of the host's node where mknod is not allowed or
/// the image already has one), the spec's own devices, and the usual links.
fn setup_dev(root: &OwnedFd, devices: &[crate::config::Device], console: Option<&str>) -> Result<(), Failure> {
    let dev = mounts::target(root, "/dev", false).map_err(fail)?;
    for (name, major, minor) in [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)] {
        let made = nix::sys::stat::mknodat(&dev, name, nix::sys::stat::SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), libc::makedev(major, minor));
        if made.is_err() {
            let fd = mounts::target(root, &format!("/dev/{name}"), true).map_err(fail)?;
            mnt(Some(&format!("/dev/{name}")), &fd_path(&fd), None, MsFlags::MS_BIND, None)?;
        }
    }
    for d in devices {
        make_device(root, d)?;
    }
    if let Some(c) = console {
        let fd = mounts::target(root, "/dev/console", true).map_err(fail)?;
        mnt(Some(c), &fd_path(&fd), None, MsFlags::MS_BIND, None)?;
    }
    for (link, to) in [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")] {
        match nix::unistd::symlinkat(to, &dev, link) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(fail(format!("creating /dev/{link}: {e}"))),
        }
    }
    Ok(())
}

fn make_device(root: &OwnedFd, d: &crate::config::Device) -> Result<(), Failure> {
    use nix::sys::stat::SFlag;
    let kind = match d.typ.as_str() {
        "c" | "u" => SFlag::S_IFCHR,
        "b" => SFlag::S_IFBLK,
        "p" => SFlag::S_IFIFO,
        other => return Err(fail(format!("device {}: unknown type {other:?}", d.path))),
    };
    let rel = std::path::Path::new(&d.path);
    let name = rel.file_name().ok_or_else(|| fail(format!("device path {:?} has no name", d.path)))?;
    let parent = rel.parent().and_then(|p| p.to_str()).unwrap_or("/");
    let dir = mounts::target(root, parent, false).map_err(fail)?;
    let mode = Mode::from_bits_truncate(d.file_mode.unwrap_or(0o666) & 0o7777);
    let rdev = libc::makedev(d.major as u32, d.minor as u32);
    match nix::sys::stat::mknodat(&dir, name, kind, mode, rdev) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => return Ok(()),
        Err(e) => return Err(fail(format!("creating device {}: {e}", d.path))),
    }
    let owner = (d.uid.map(nix::unistd::Uid::from_raw), d.gid.map(nix::unistd::Gid::from_raw));
    if owner.0.is_some() || owner.1.is_some() {
        nix::unistd::fchownat(&dir, name, owner.0, owner.1, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| fail(format!("chown of device {}: {e}", d.path)))?;
    }
    Ok(())
}

fn pivot(rootfs: &str) -> Result<(), Failure> {
    nix::unistd::chdir(rootfs).map_err(|e| fail(format!("chdir to rootfs: {e}")))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it.
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => umount2(".", MntFlags::MNT_DETACH).map_err(|e| fail(format!("detaching the old root: {e}")))?,
        // The initramfs (rootfs on ramfs) cannot be pivoted away from: move the new root over it
        // and chroot, the only way left.
        Err(nix::errno::Errno::EINVAL) if on_ramfs() => {
            mnt(Some("."), "/", None, MsFlags::MS_MOVE, None)?;
            nix::unistd::chroot(".").map_err(|e| fail(format!("chroot: {e}")))?;
        }
        Err(e) => return Err(fail(format!("pivot_root: {e}"))),
    }
    nix::unistd::chdir("/").map_err(|e| fail(format!("chdir /: {e}")))
}

// f_type is i64 on x86_64 glibc but not on every target.
#[allow(clippy::unnecessary_cast)]
fn on_ramfs() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    nix::sys::statfs::statfs("/").is_ok_and(|s| s.filesystem_type().0 as i64 == RAMFS_MAGIC || s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Opens `path` inside the new root without following links out of it or through magic links;
/// None when it does not exist (the spec lists paths that not every kernel has).
fn open_in_new_root(root: &OwnedFd, path: &str) -> Result<Option<OwnedFd>, Failure> {
    match mounts::open_in_root(root, path, nix::fcntl::OFlag::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(fail(format!("resolving {path}: {e}"))),
    }
}

fn mask(root: &OwnedFd, null: &OwnedFd, path: &str) -> Result<(), Failure> {
    let Some(fd) = open_in_new_root(root, path)? else { return Ok(()) };
    let st = nix::sys::stat::fstat(&fd).map_err(|e| fail(format!("checking {path}: {e}")))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        mnt(Some("tmpfs"), &fd_path(&fd), Some("tmpfs"), MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None)
    } else {
        mnt(Some(&fd_path(null)), &fd_path(&fd), None, MsFlags::MS_BIND, None)
    }
}

fn readonly(root: &OwnedFd, path: &str) -> Result<(), Failure> {
    let Some(fd) = open_in_new_root(root, path)? else { return Ok(()) };
    let p = fd_path(&fd);
    mnt(Some(&p), &p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    // The fd names what lies under the new bind mount: resolve again to remount the mount itself.
    let Some(fd) = open_in_new_root(root, path)? else { return Ok(()) };
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_REC;
    mnt(None, &fd_path(&fd), None, flags, None)
}
