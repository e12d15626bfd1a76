//! Mount helpers for the container's init: option parsing and targets resolved inside the rootfs.
//! Targets are opened with openat2(RESOLVE_IN_ROOT) and mounted through /proc/self/fd/N, so a
//! symlink in the image can never redirect a mount onto the host.
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

/// Mount flags, propagation flags and the data string of an OCI options list.
pub fn parse_options(options: &[String]) -> (MsFlags, MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut propagation = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "suid" | "dev" | "exec" | "async" | "atime" | "norelatime" => {}
            "private" => propagation = MsFlags::MS_PRIVATE,
            "rprivate" => propagation = MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "shared" => propagation = MsFlags::MS_SHARED,
            "rshared" => propagation = MsFlags::MS_SHARED | MsFlags::MS_REC,
            "slave" => propagation = MsFlags::MS_SLAVE,
            "rslave" => propagation = MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "unbindable" => propagation = MsFlags::MS_UNBINDABLE,
            "runbindable" => propagation = MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            other => data.push(other.to_string()),
        }
    }
    (flags, propagation, data.join(","))
}

/// `dest` as a path relative to the root, `..` and `.` dropped (they are resolved in-root anyway).
fn relative(dest: &str) -> PathBuf {
    Path::new(dest).components().filter_map(|c| match c {
        Component::Normal(n) => Some(n),
        _ => None,
    }).collect()
}

fn open_in_root(root: &OwnedFd, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let p: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    openat2(root, p, how)
}

/// Opens (creating where missing) the mount target `dest` inside `root`: a directory, or an empty
/// file when the source is a file. Returns an O_PATH fd to mount onto via /proc/self/fd.
pub fn target(root: &OwnedFd, dest: &str, file: bool) -> Result<OwnedFd, String> {
    let rel = relative(dest);
    if let Ok(fd) = open_in_root(root, &rel, OFlag::O_PATH) {
        return Ok(fd);
    }
    let parent = rel.parent().unwrap_or(Path::new(""));
    let mut cur = PathBuf::new();
    let mut dir = open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| format!("opening the rootfs: {e}"))?;
    for comp in parent.components() {
        cur.push(comp);
        dir = match open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(d) => d,
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(&dir, comp.as_os_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| format!("creating {}: {e}", cur.display()))?;
                open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| format!("opening {}: {e}", cur.display()))?
            }
            Err(e) => return Err(format!("resolving {} in the rootfs: {e}", cur.display())),
        };
    }
    let name = rel.file_name().ok_or_else(|| format!("mount destination {dest:?} is the root"))?;
    let made = if file {
        nix::fcntl::openat(&dir, name, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644)).map(drop)
    } else {
        nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o755))
    };
    match made {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(format!("creating mount point {dest}: {e}")),
    }
    open_in_root(root, &rel, OFlag::O_PATH).map_err(|e| format!("opening mount point {dest}: {e}"))
}

/// The magic-link path that names `fd` for mount(2).
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Whether `dest` exists inside `root` and is an executable regular file (the PATH lookup of the
/// container's command, done on the host side before the clone).
pub fn executable_in_root(root: &OwnedFd, path: &str) -> Result<(), Errno> {
    let fd = open_in_root(root, &relative(path), OFlag::O_PATH)?;
    let st = nix::sys::stat::fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EACCES);
    }
    if st.st_mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(())
}

/// Docker's lookup: a name with a slash is used as is; otherwise the first match in PATH.
pub fn lookup(root: &OwnedFd, cmd: &str, path_env: &str, cwd: &str) -> Result<String, (Errno, String)> {
    if cmd.contains('/') {
        let full = if cmd.starts_with('/') { cmd.to_string() } else { format!("{}/{}", cwd.trim_end_matches('/'), cmd) };
        return match executable_in_root(root, &full) {
            Ok(()) => Ok(cmd.to_string()),
            Err(e) => Err((e, format!("exec: \"{cmd}\": {}", describe(e)))),
        };
    }
    let mut denied = None;
    for dir in path_env.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{}/{cmd}", dir.trim_end_matches('/'));
        match executable_in_root(root, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(Errno::EACCES) => denied = Some(candidate),
            Err(_) => {}
        }
    }
    match denied {
        Some(p) => Err((Errno::EACCES, format!("exec: \"{p}\": permission denied"))),
        None => Err((Errno::ENOENT, format!("exec: \"{cmd}\": executable file not found in $PATH"))),
    }
}

fn describe(e: Errno) -> &'static str {
    match e {
        Errno::ENOENT => "stat: no such file or directory",
        Errno::EACCES => "permission denied",
        _ => "cannot execute",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts: Vec<String> = ["nosuid", "ro", "rbind", "rprivate", "mode=755", "size=64k"].iter().map(|s| s.to_string()).collect();
        let (f, p, d) = parse_options(&opts);
        assert!(f.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC));
        assert_eq!(p, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(d, "mode=755,size=64k");
    }

    #[test]
    fn relative_drops_root_and_dots() {
        assert_eq!(relative("/../etc/./hosts"), PathBuf::from("etc/hosts"));
    }
}
