//! Safe application of one layer tar into a directory, in overlayfs format.
//!
//! Parent directories are resolved inside the layer root with openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS): neither `..`, absolute names nor a symlink planted by an earlier entry can
//! steer a write anywhere else, and an entry beneath a symlink is rejected rather than followed
//! (layer tars from real builders never need that). Files are created relative to the parent's fd
//! with O_NOFOLLOW|O_EXCL. Hand-written because the `tar` crate's own unpack follows symlinks in
//! parent paths and knows nothing of whiteouts.
//!
//! Whiteouts become what overlayfs reads: `.wh.<name>` a 0:0 character device `<name>`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use crate::Error;

const WHITEOUT_PREFIX: &str = ".wh.";
const META_PREFIX: &str = ".wh..wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Create block and character devices from the archive (otherwise such an entry is an error).
    pub allow_devices: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub entries: u64,
    /// Bytes of regular file content.
    pub size: u64,
}

/// Why one entry failed; turned into `Error::Entry` naming it.
type Reason = String;

/// Unpacks an uncompressed layer tar stream into `dest` (see the module docs for the safety rules).
pub fn apply_layer<R: Read>(tar: R, dest: &Path, opts: &ApplyOptions) -> Result<LayerStats, Error> {
    let root = nix::fcntl::open(dest, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::Io { context: format!("opening {}", dest.display()), source: e.into() })?;
    let mut archive = tar::Archive::new(tar);
    let mut stats = LayerStats::default();
    // Directory times are set last: creating their children would change them again.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive.entries().map_err(|e| Error::Archive(format!("reading layer: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Archive(format!("reading layer: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let reject = |reason: Reason| Error::Entry { entry: raw.clone(), reason };
        let path = entry.path().map_err(|e| reject(format!("bad name: {e}")))?.into_owned();
        let Some(rel) = sanitize(&path).map_err(reject)? else { continue };
        stats.entries += 1;
        if let Some(mtime) = apply_entry(&root, &rel, &mut entry, opts, &mut stats).map_err(reject)? {
            dir_times.push((rel, mtime));
        }
    }
    for (rel, mtime) in dir_times.iter().rev() {
        if let (Ok(parent), Some(name)) = (open_in_root(&root, rel.parent().unwrap_or(Path::new(""))), rel.file_name()) {
            set_mtime(&parent, name, *mtime);
        }
    }
    Ok(stats)
}

/// Makes an entry name relative; `..` anywhere is hostile and rejected. None for the root itself.
fn sanitize(p: &Path) -> Result<Option<PathBuf>, Reason> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err("path escapes the layer root (`..`)".into()),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn open_in_root(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let target: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    openat2(root, target, how)
}

fn resolve_err(what: &Path, e: Errno) -> Reason {
    match e {
        Errno::ELOOP => format!("{} is a symlink; entries beneath a symlink are not followed", what.display()),
        Errno::ENOTDIR => format!("{} is not a directory", what.display()),
        Errno::EXDEV => format!("{} leads outside the layer", what.display()),
        e => format!("resolving {}: {e}", what.display()),
    }
}

/// The directory `rel` inside root, created (0755) component by component where missing.
fn ensure_dir(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Reason> {
    match open_in_root(root, rel) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(resolve_err(rel, e)),
    }
    let mut cur = PathBuf::new();
    let mut fd = open_in_root(root, &cur).map_err(|e| format!("opening the layer root: {e}"))?;
    for comp in rel.components() {
        cur.push(comp);
        fd = match open_in_root(root, &cur) {
            Ok(next) => next,
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(&fd, comp.as_os_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| format!("creating {}: {e}", cur.display()))?;
                open_in_root(root, &cur).map_err(|e| resolve_err(&cur, e))?
            }
            Err(e) => return Err(resolve_err(&cur, e)),
        };
    }
    Ok(fd)
}

/// `/proc/self/fd/<dir>/<name>`: a path for the calls that have no *at form (l*xattr).
fn fd_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    PathBuf::from(OsStr::from_bytes(&p))
}

fn set_xattr(dir: &OwnedFd, name: &OsStr, key: &str, value: &[u8]) -> Result<(), Reason> {
    let path = CString::new(fd_path(dir, name).into_os_string().into_vec()).map_err(|_| "name contains NUL".to_string())?;
    let key_c = CString::new(key).map_err(|_| format!("bad xattr name {key:?}"))?;
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), key_c.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc < 0 {
        return Err(format!("setting xattr {key}: {}", Errno::last()));
    }
    Ok(())
}

fn file_type(dir: &OwnedFd, name: &OsStr) -> Result<Option<SFlag>, Errno> {
    match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes whatever is at `name` in `dir` (file, symlink or whole directory tree).
fn remove_existing(dir: &OwnedFd, name: &OsStr) -> Result<(), Reason> {
    match file_type(dir, name).map_err(|e| format!("inspecting the existing entry: {e}"))? {
        None => Ok(()),
        // std's remove_dir_all never follows symlinks inside the tree.
        Some(SFlag::S_IFDIR) => std::fs::remove_dir_all(fd_path(dir, name)).map_err(|e| format!("replacing a directory: {e}")),
        Some(_) => nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(|e| format!("replacing the existing entry: {e}")),
    }
}

/// A single path component that names something in the directory itself.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Applies one entry; returns the directory mtime to set at the end, for directories.
fn apply_entry<R: Read>(
    root: &OwnedFd,
    rel: &Path,
    entry: &mut tar::Entry<'_, R>,
    opts: &ApplyOptions,
    stats: &mut LayerStats,
) -> Result<Option<i64>, Reason> {
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().unwrap_or_default();
    let parent = ensure_dir(root, parent_rel)?;
    let name_str = name.to_string_lossy();

    if name_str == OPAQUE_MARKER {
        set_xattr(&parent, OsStr::new(""), "trusted.overlay.opaque", b"y")?;
        return Ok(None);
    }
    if name_str.starts_with(META_PREFIX) {
        // Other aufs metadata (.wh..wh.plnk, .wh..wh.aufs) means nothing to overlay.
        return Ok(None);
    }
    if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
        if !plain_name(hidden) {
            return Err(format!("whiteout for {hidden:?} names no file"));
        }
        let hidden = OsStr::new(hidden);
        remove_existing(&parent, hidden)?;
        nix::sys::stat::mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), libc::makedev(0, 0))
            .map_err(|e| format!("creating a whiteout: {e}"))?;
        return Ok(None);
    }

    let header = entry.header().clone();
    let kind = header.entry_type();
    let mode = Mode::from_bits_truncate(header.mode().map_err(|e| format!("bad mode: {e}"))?);
    let existing = file_type(&parent, name).map_err(|e| format!("inspecting the existing entry: {e}"))?;
    // A directory entry over a directory merges (tar semantics); anything else replaces.
    if !(kind.is_dir() && existing == Some(SFlag::S_IFDIR)) {
        remove_existing(&parent, name)?;
    }
    match kind {
        tar::EntryType::Directory => {
            if existing != Some(SFlag::S_IFDIR) {
                nix::sys::stat::mkdirat(&parent, name, mode).map_err(|e| format!("creating a directory: {e}"))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            let fd = nix::fcntl::openat(
                &parent,
                name,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                mode,
            )
            .map_err(|e| format!("creating a file: {e}"))?;
            let mut file = std::fs::File::from(fd);
            stats.size += std::io::copy(entry, &mut file).map_err(|e| format!("writing a file: {e}"))?;
        }
        tar::EntryType::Symlink => {
            let target = link_target(entry, "symlink")?;
            nix::unistd::symlinkat(target.as_path(), &parent, name).map_err(|e| format!("creating a symlink: {e}"))?;
        }
        tar::EntryType::Link => {
            hard_link(root, &parent, name, &link_target(entry, "hard link")?)?;
            // A hard link shares its target's inode: owner, mode and times are already right.
            return Ok(None);
        }
        tar::EntryType::Fifo => {
            nix::sys::stat::mknodat(&parent, name, SFlag::S_IFIFO, mode, 0).map_err(|e| format!("creating a fifo: {e}"))?;
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            if !opts.allow_devices {
                return Err("device nodes are not allowed in this layer".into());
            }
            let (maj, min) = (header.device_major().ok().flatten().unwrap_or(0), header.device_minor().ok().flatten().unwrap_or(0));
            let kind = if kind == tar::EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            nix::sys::stat::mknodat(&parent, name, kind, mode, libc::makedev(maj, min)).map_err(|e| format!("creating a device: {e}"))?;
        }
        // PAX/GNU metadata entries are consumed by the tar crate; other kinds are skipped, as Docker does.
        other => {
            tracing::debug!(entry = %rel.display(), kind = ?other, "skipping layer entry of unsupported type");
            return Ok(None);
        }
    }
    set_owner_and_mode(&parent, name, &header, kind == tar::EntryType::Symlink, mode)?;
    set_xattrs(&parent, name, entry)?;
    let mtime = header.mtime().unwrap_or(0) as i64;
    if kind.is_dir() {
        return Ok(Some(mtime));
    }
    set_mtime(&parent, name, mtime);
    Ok(None)
}

/// Best effort, as for every unpacker: a wrong mtime is not worth failing a pull.
fn set_mtime(dir: &OwnedFd, name: &OsStr, mtime: i64) {
    let t = nix::sys::time::TimeSpec::new(mtime, 0);
    if let Err(e) = nix::sys::stat::utimensat(dir, name, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink) {
        tracing::debug!(name = %name.to_string_lossy(), error = %e, "cannot set mtime");
    }
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, what: &str) -> Result<PathBuf, Reason> {
    entry
        .link_name()
        .map_err(|e| format!("bad {what} target: {e}"))?
        .map(|t| t.into_owned())
        .ok_or_else(|| format!("{what} without a target"))
}

/// Hard links may only point at something this layer already unpacked; an absolute target is
/// taken relative to the layer root, as for entry names.
fn hard_link(root: &OwnedFd, parent: &OwnedFd, name: &OsStr, target: &Path) -> Result<(), Reason> {
    let target = sanitize(target)?.ok_or("hard link to the layer root")?;
    let tdir = target.parent().unwrap_or(Path::new(""));
    let tparent = open_in_root(root, tdir).map_err(|e| format!("hard link target {}: {}", target.display(), resolve_err(tdir, e)))?;
    let tname = target.file_name().unwrap_or_default();
    // No AT_SYMLINK_FOLLOW: a symlink as target is linked itself, never followed.
    nix::unistd::linkat(&tparent, tname, parent, name, AtFlags::empty()).map_err(|e| match e {
        Errno::ENOENT => format!("hard link target {} is not in this layer", target.display()),
        e => format!("hard link to {}: {e}", target.display()),
    })
}

/// Owner, then mode (chown clears set-id bits); symlinks keep their own mode.
fn set_owner_and_mode(dir: &OwnedFd, name: &OsStr, h: &tar::Header, symlink: bool, mode: Mode) -> Result<(), Reason> {
    let uid = h.uid().ok().map(|u| Uid::from_raw(u as u32));
    let gid = h.gid().ok().map(|g| Gid::from_raw(g as u32));
    nix::unistd::fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| format!("setting the owner: {e}"))?;
    if !symlink {
        // We just created this entry, not a symlink, in a directory only we write to.
        nix::sys::stat::fchmodat(dir, name, mode, nix::sys::stat::FchmodatFlags::FollowSymlink).map_err(|e| format!("setting the mode: {e}"))?;
    }
    Ok(())
}

/// PAX `SCHILY.xattr.*` records. `trusted.overlay.*` from an archive is dropped: only the
/// whiteout markers may speak to overlayfs (a forged redirect or origin could confuse it).
fn set_xattrs<R: Read>(dir: &OwnedFd, name: &OsStr, entry: &mut tar::Entry<'_, R>) -> Result<(), Reason> {
    let Ok(Some(exts)) = entry.pax_extensions() else { return Ok(()) };
    for ext in exts.flatten() {
        let Ok(key) = ext.key() else { continue };
        let Some(attr) = key.strip_prefix("SCHILY.xattr.") else { continue };
        if attr.starts_with("trusted.overlay.") {
            tracing::debug!(xattr = attr, "dropping overlay xattr from layer archive");
            continue;
        }
        set_xattr(dir, name, attr, ext.value_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_dir_components_are_rejected_and_absolute_names_made_relative() {
        assert!(sanitize(Path::new("../escape")).is_err());
        assert!(sanitize(Path::new("a/../../b")).is_err());
        assert_eq!(sanitize(Path::new("/etc/passwd")).expect("ok"), Some(PathBuf::from("etc/passwd")));
        assert_eq!(sanitize(Path::new("./")).expect("ok"), None);
    }

    #[test]
    fn whiteouts_must_name_a_plain_file() {
        assert!(plain_name("file"));
        for bad in ["", ".", "..", "a/b"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }
}
