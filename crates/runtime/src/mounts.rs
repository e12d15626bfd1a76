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

fn open_rel(root: &OwnedFd, rel: &Path, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let p: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    openat2(root, p, how)
}

/// Opens `path` (absolute or not, always taken inside `root`) with openat2: symlinks resolve as if
/// `root` were `/`, magic links are refused.
pub fn open_in_root(root: &OwnedFd, path: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    open_rel(root, &relative(path), flags)
}

/// `a/b/../c` → `a/c`, never above the root: symlink targets taken lexically, as the kernel
/// would in-root (close enough for creating directories; the result is opened in-root anyway).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// mkdir -p of `rel` inside `root`. A dangling symlink on the way is followed in-root (its target
/// made under the rootfs), as a container image that links /var/run to /run expects.
fn mkdir_all(root: &OwnedFd, rel: &Path, depth: u8) -> Result<OwnedFd, String> {
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    if let Ok(fd) = open_rel(root, rel, dir_flags) {
        return Ok(fd);
    }
    if depth > 32 {
        return Err(format!("creating {}: too many levels of symbolic links", rel.display()));
    }
    let Some(name) = rel.file_name() else { return open_rel(root, rel, dir_flags).map_err(|e| format!("opening the rootfs: {e}")) };
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = mkdir_all(root, parent_rel, depth)?;
    match nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(format!("creating {}: {e}", rel.display())),
    }
    match open_rel(root, rel, dir_flags) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) => {
            let link = nix::fcntl::readlinkat(&parent, name).map_err(|e| format!("creating {}: {e}", rel.display()))?;
            let link = Path::new(&link);
            let to = if link.is_absolute() { relative(&link.to_string_lossy()) } else { normalize(&parent_rel.join(link)) };
            mkdir_all(root, &to, depth + 1)?;
            open_rel(root, rel, dir_flags).map_err(|e| format!("opening {}: {e}", rel.display()))
        }
        Err(e) => Err(format!("opening {}: {e}", rel.display())),
    }
}

/// Opens (creating where missing) the mount target `dest` inside `root`: a directory, or an empty
/// file when the source is a file. Returns an O_PATH fd to mount onto via /proc/self/fd.
pub fn target(root: &OwnedFd, dest: &str, file: bool) -> Result<OwnedFd, String> {
    let rel = relative(dest);
    if let Ok(fd) = open_rel(root, &rel, OFlag::O_PATH) {
        return Ok(fd);
    }
    if !file {
        return mkdir_all(root, &rel, 0);
    }
    let name = rel.file_name().ok_or_else(|| format!("mount destination {dest:?} is the root"))?;
    let dir = mkdir_all(root, rel.parent().unwrap_or(Path::new("")), 0)?;
    // The fd is O_PATH: reopen the directory itself to create in it.
    match nix::fcntl::openat(&dir, name, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644)) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(format!("creating mount point {dest}: {e}")),
    }
    open_rel(root, &rel, OFlag::O_PATH).map_err(|e| format!("opening mount point {dest}: {e}"))
}

/// The magic-link path that names `fd` for mount(2).
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Whether `dest` exists inside `root` and is an executable regular file (the PATH lookup of the
/// container's command, done on the host side before the clone).
pub fn executable_in_root(root: &OwnedFd, path: &str) -> Result<(), Errno> {
    let fd = open_rel(root, &relative(path), OFlag::O_PATH)?;
    let st = nix::sys::stat::fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EACCES);
    }
    if st.st_mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(())
}

/// Docker's lookup: a name with a slash is used as is (relative to the working directory);
/// otherwise the first executable match in PATH. The error carries the errno and the path to name.
pub fn lookup(root: &OwnedFd, cmd: &str, path_env: &str, cwd: &str) -> Result<String, (Errno, String)> {
    if cmd.contains('/') {
        let full = if cmd.starts_with('/') { cmd.to_string() } else { format!("{}/{}", cwd.trim_end_matches('/'), cmd) };
        return executable_in_root(root, &full).map(|()| cmd.to_string()).map_err(|e| (e, cmd.to_string()));
    }
    let mut denied = None;
    for dir in path_env.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{}/{cmd}", dir.trim_end_matches('/'));
        match executable_in_root(root, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(Errno::EACCES) => denied = denied.or(Some(candidate)),
            Err(_) => {}
        }
    }
    match denied {
        Some(p) => Err((Errno::EACCES, p)),
        None => Err((Errno::ENOENT, cmd.to_string())),
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

    fn rootfs() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().expect("tmp");
        let fd = nix::fcntl::open(dir.path(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).expect("open");
        (dir, fd)
    }

    #[test]
    fn lookup_finds_the_first_executable_in_path_inside_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, root) = rootfs();
        std::fs::create_dir_all(dir.path().join("usr/bin")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir");
        std::fs::write(dir.path().join("usr/bin/tool"), "").expect("write");
        std::fs::write(dir.path().join("bin/tool"), "").expect("write");
        std::fs::set_permissions(dir.path().join("bin/tool"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(lookup(&root, "tool", "/usr/bin:/bin", "/"), Ok("/bin/tool".to_string()), "the non-executable one is skipped");
        assert_eq!(lookup(&root, "nope", "/usr/bin:/bin", "/"), Err((Errno::ENOENT, "nope".to_string())));
        assert_eq!(lookup(&root, "/usr/bin/tool", "", "/"), Err((Errno::EACCES, "/usr/bin/tool".to_string())));
        assert_eq!(lookup(&root, "./tool", "", "/bin"), Ok("./tool".to_string()));
    }

    #[test]
    fn a_link_pointing_out_of_the_root_resolves_inside_it() {
        let (dir, root) = rootfs();
        let outside = tempfile::tempdir().expect("outside");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("mnt")).expect("symlink");
        let fd = target(&root, "/mnt/sub", false).expect("target");
        // The directory was made under the rootfs, at the link's target path taken inside it.
        let made = std::fs::read_link(fd_path(&fd)).expect("readlink");
        assert!(made.starts_with(dir.path()), "{}", made.display());
        assert!(std::fs::read_dir(outside.path()).expect("ls").next().is_none(), "nothing created outside");
    }

    #[test]
    fn a_relative_dangling_link_is_created_at_its_target_in_root() {
        let (dir, root) = rootfs();
        std::fs::create_dir_all(dir.path().join("var")).expect("mkdir");
        std::os::unix::fs::symlink("../../../run", dir.path().join("var/run")).expect("symlink");
        target(&root, "/var/run/app", false).expect("target");
        assert!(dir.path().join("run/app").is_dir(), "made under the rootfs's /run");
    }

    #[test]
    fn a_file_target_is_created_empty_and_an_existing_one_reused() {
        let (dir, root) = rootfs();
        target(&root, "/etc/hosts", true).expect("target");
        assert_eq!(std::fs::read(dir.path().join("etc/hosts")).expect("read"), b"");
        std::fs::write(dir.path().join("etc/hosts"), "x").expect("write");
        target(&root, "/etc/hosts", true).expect("target again");
        assert_eq!(std::fs::read(dir.path().join("etc/hosts")).expect("read"), b"x");
    }

    #[test]
    fn relative_drops_root_and_dots() {
        assert_eq!(relative("/../etc/./hosts"), PathBuf::from("etc/hosts"));
    }
}
