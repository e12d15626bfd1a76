//! Overlay and bind mounts of snapshots.
//!
//! Deep images: mount(2) takes the options in one page, which absolute lowerdir paths fill after a
//! few dozen layers. berth instead configures overlay through the new mount API (fsopen/fsconfig),
//! adding one `lowerdir+` per layer (Linux ≥ 6.8), which has no total limit. Each fsconfig string is
//! capped at 256 bytes, so the paths are given relative to the snapshotter root from a helper
//! thread that has its own cwd (`unshare(CLONE_FS)` + `fchdir`); the process cwd is never touched.
//! On older kernels the same thread falls back to mount(2) with those short relative paths.
//!
//! Options: `index=off` where the kernel knows it, because lower layers are shared by many
//! overlays and the inode index would tie an upper dir to one exact lower stack (Docker does the
//! same). No `userxattr`: berth mounts as real root, so whiteouts and opaque dirs are the
//! `trusted.overlay.*` kind that `apply` writes.
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::Error;

// Kernel ABI from <linux/mount.h>; not all of it is exported by the libc crate.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

fn mount_err(target: &Path, reason: impl Into<String>) -> Error {
    Error::Mount { target: target.display().to_string(), reason: reason.into() }
}

fn open_dir(p: &Path, flags: OFlag) -> Result<OwnedFd, Error> {
    nix::fcntl::open(p, flags | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| Error::Io {
        context: format!("opening {}", p.display()),
        source: e.into(),
    })
}

fn cstr(s: &[u8]) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

pub(crate) fn bind(source: &Path, target: &Path) -> Result<(), Error> {
    use nix::mount::{mount, MsFlags};
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| mount_err(target, format!("bind mount: {e}")))
}

/// Mounts overlay at `target`; `lowers` (top-most first), `upper` and `work` are relative to `root`.
pub(crate) fn overlay(root: &Path, lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), Error> {
    overlay_with(root, lowers, upper, work, target, kernel_at_least(6, 8))
}

/// `lowerdir_add`: use the new mount API with one `lowerdir+` per layer; else mount(2).
pub(crate) fn overlay_with(root: &Path, lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path, lowerdir_add: bool) -> Result<(), Error> {
    let root_fd = open_dir(root, OFlag::O_RDONLY)?;
    let target_fd = open_dir(target, OFlag::O_PATH)?;
    let index_off = Path::new("/sys/module/overlay/parameters/index").exists();
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), Error> {
            // The cwd change must stay in this thread: give it a private fs struct first.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|e| mount_err(target, format!("unshare(CLONE_FS): {e}")))?;
            nix::unistd::fchdir(&root_fd).map_err(|e| mount_err(target, format!("chdir to {}: {e}", root.display())))?;
            if !lowerdir_add {
                return legacy(lowers, upper, work, index_off, &target_fd, target);
            }
            new_api(lowers, upper, work, index_off, &target_fd).map_err(|reason| mount_err(target, reason))
        })
        .join()
    });
    result.unwrap_or_else(|_| Err(mount_err(target, "mount helper thread panicked")))
}

/// `lowerdir+` arrived in Linux 6.8; before that overlay only takes the one-page option string.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(u) = nix::sys::utsname::uname() else { return false };
    let release = u.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

struct FsContext(OwnedFd);

impl FsContext {
    fn set(&self, key: &str, value: &[u8]) -> Result<(), Errno> {
        let (k, v) = (cstr(key.as_bytes())?, cstr(value)?);
        // SAFETY: fsconfig reads two NUL-terminated strings; the fd is an fs context we own.
        let rc = unsafe { libc::syscall(libc::SYS_fsconfig, self.0.as_raw_fd(), FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) };
        if rc < 0 { Err(Errno::last()) } else { Ok(()) }
    }

    /// The kernel's own explanation of a failure, queued on the context fd ("e overlay: …").
    fn log(&self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match nix::unistd::read(&self.0, &mut buf) {
                Ok(n) if n > 0 => out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
                _ => break,
            }
        }
        out.join("; ")
    }

    fn fail(&self, what: &str, e: Errno) -> String {
        let log = self.log();
        if log.is_empty() { format!("{what}: {e}") } else { format!("{what}: {e} ({log})") }
    }
}

fn new_api(lowers: &[PathBuf], upper: &Path, work: &Path, index_off: bool, target: &OwnedFd) -> Result<(), String> {
    let fstype = c"overlay";
    // SAFETY: fsopen takes a NUL-terminated filesystem name and flags; it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        return Err(format!("fsopen: {}", Errno::last()));
    }
    // SAFETY: fd is a fresh descriptor returned by fsopen, owned by nothing else.
    let ctx = FsContext(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    ctx.set("source", b"overlay").map_err(|e| ctx.fail("source", e))?;
    if index_off {
        ctx.set("index", b"off").map_err(|e| ctx.fail("index=off", e))?;
    }
    for lower in lowers {
        ctx.set("lowerdir+", lower.as_os_str().as_bytes()).map_err(|e| ctx.fail(&format!("lowerdir {}", lower.display()), e))?;
    }
    ctx.set("upperdir", upper.as_os_str().as_bytes()).map_err(|e| ctx.fail("upperdir", e))?;
    ctx.set("workdir", work.as_os_str().as_bytes()).map_err(|e| ctx.fail("workdir", e))?;
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    let rc = unsafe { libc::syscall(libc::SYS_fsconfig, ctx.0.as_raw_fd(), FSCONFIG_CMD_CREATE, 0, 0, 0) };
    if rc < 0 {
        return Err(ctx.fail("creating the overlay", Errno::last()));
    }
    // SAFETY: fsmount on a created context returns a new detached-mount fd we own.
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, ctx.0.as_raw_fd(), FSMOUNT_CLOEXEC, 0) };
    if mfd < 0 {
        return Err(ctx.fail("fsmount", Errno::last()));
    }
    // SAFETY: mfd is the fresh descriptor fsmount returned.
    let mnt = unsafe { OwnedFd::from_raw_fd(mfd as i32) };
    let empty = c"";
    // SAFETY: both fds are open; the empty paths with *_EMPTY_PATH mean "the fd itself".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(format!("move_mount: {}", Errno::last()));
    }
    Ok(())
}

/// mount(2) with the relative paths; still limited to one page of options.
fn legacy(lowers: &[PathBuf], upper: &Path, work: &Path, index_off: bool, target_fd: &OwnedFd, target: &Path) -> Result<(), Error> {
    let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let index = if index_off { "index=off," } else { "" };
    let opts = format!("{index}lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096) as usize;
    if opts.len() >= page {
        return Err(mount_err(target, format!("{} layers do not fit in one overlay mount on this kernel (needs Linux 6.8)", lowers.len())));
    }
    let via = PathBuf::from(format!("/proc/self/fd/{}", target_fd.as_raw_fd()));
    nix::mount::mount(Some("overlay"), &via, Some("overlay"), nix::mount::MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| mount_err(target, format!("overlay: {e}")))
}

/// Lazily detaches every mount stacked at `target` until none is left.
pub(crate) fn unmount_all(target: &Path) -> Result<(), Error> {
    for _ in 0..64 {
        match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(Error::Io { context: format!("unmounting {}", target.display()), source: e.into() }),
        }
    }
    Err(mount_err(target, "still mounted after 64 detaches"))
}
