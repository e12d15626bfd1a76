//! Safe application of one layer tar into a directory, in overlayfs format.
//!
//! Every path is resolved inside the layer root with openat2(RESOLVE_IN_ROOT), so neither `..`,
//! absolute names nor symlinks planted by earlier entries can reach outside it; files are created
//! relative to directory fds with O_NOFOLLOW|O_EXCL. Hand-written because the `tar` crate's own
//! unpack follows symlinks in parent paths and knows nothing of whiteouts.
use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use crate::Error;

const WHITEOUT_PREFIX: &str = ".wh.";
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

/// Unpacks an uncompressed layer tar stream into `dest` (see the module docs for the safety rules).
pub fn apply_layer<R: Read>(tar: R, dest: &Path, opts: &ApplyOptions) -> Result<LayerStats, Error> {
    let root = nix::fcntl::open(dest, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::Io { context: format!("opening {}", dest.display()), source: e.into() })?;
    let mut archive = tar::Archive::new(tar);
    let mut stats = LayerStats::default();
    let entries = archive.entries().map_err(|e| Error::Archive(format!("reading layer: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Archive(format!("reading layer: {e}")))?;
        let raw = entry.path().map_err(|e| Error::Archive(format!("bad entry name: {e}")))?.into_owned();
        let Some(rel) = sanitize(&raw)? else { continue };
        apply_entry(&root, &rel, &mut entry, opts, &mut stats)
            .map_err(|e| match e {
                Error::Archive(_) => e,
                other => Error::Archive(format!("entry {}: {other}", raw.display())),
            })?;
    }
    Ok(stats)
}

/// Makes an entry name relative; `..` anywhere is hostile and rejected. None for the root itself.
fn sanitize(p: &Path) -> Result<Option<PathBuf>, Error> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(Error::Archive(format!("entry {}: path escapes the layer root (`..`)", p.display())))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn sys(context: &str, e: Errno) -> Error {
    Error::Io { context: context.to_string(), source: e.into() }
}

fn open_in_root(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let target: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    openat2(root, target, how)
}

/// The directory `rel` inside root, created (0755) component by component where missing.
fn ensure_dir(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Error> {
    match open_in_root(root, rel) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(sys(&format!("resolving {}", rel.display()), e)),
    }
    let mut cur = PathBuf::new();
    let mut fd = open_in_root(root, &cur).map_err(|e| sys("opening the layer root", e))?;
    for comp in rel.components() {
        cur.push(comp);
        fd = match open_in_root(root, &cur) {
            Ok(next) => next,
            Err(Errno::ENOENT) => {
                let name = comp.as_os_str();
                nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o755)).map_err(|e| {
                    sys(&format!("creating {} (a symlink pointing outside the layer?)", cur.display()), e)
                })?;
                open_in_root(root, &cur).map_err(|e| sys(&format!("opening {}", cur.display()), e))?
            }
            Err(e) => return Err(sys(&format!("resolving {}", cur.display()), e)),
        };
    }
    Ok(fd)
}

fn fd_path(dir: &OwnedFd, name: &OsStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    CString::new(p).unwrap_or_default()
}

fn set_xattr(dir: &OwnedFd, name: &OsStr, key: &str, value: &[u8]) -> Result<(), Error> {
    let path = fd_path(dir, name);
    let key_c = CString::new(key).map_err(|_| Error::Archive(format!("bad xattr name {key:?}")))?;
    // SAFETY: valid NUL-terminated strings and a value buffer of the given length.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), key_c.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc < 0 {
        return Err(sys(&format!("setting xattr {key}"), Errno::last()));
    }
    Ok(())
}

/// Removes whatever is at `name` (file, symlink or whole directory tree).
fn remove_existing(dir: &OwnedFd, name: &OsStr) -> Result<(), Error> {
    match nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(sys("inspecting an existing entry", e)),
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            let path = PathBuf::from(OsStr::from_bytes(fd_path(dir, name).as_bytes()));
            std::fs::remove_dir_all(&path).map_err(|e| Error::Io { context: "replacing a directory".into(), source: e })
        }
        Ok(_) => nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(|e| sys("replacing an existing entry", e)),
    }
}

fn is_dir(dir: &OwnedFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

fn apply_entry<R: Read>(
    root: &OwnedFd,
    rel: &Path,
    entry: &mut tar::Entry<'_, R>,
    opts: &ApplyOptions,
    stats: &mut LayerStats,
) -> Result<(), Error> {
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let name = rel.file_name().unwrap_or_default();
    let parent = ensure_dir(root, parent_rel)?;
    let name_str = name.to_string_lossy();
    stats.entries += 1;

    if name_str == OPAQUE_MARKER {
        return set_xattr(&parent, OsStr::new(""), "trusted.overlay.opaque", b"y");
    }
    if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
        let hidden = OsStr::new(hidden);
        remove_existing(&parent, hidden)?;
        return nix::sys::stat::mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), libc::makedev(0, 0))
            .map_err(|e| sys("creating a whiteout", e));
    }

    let header = entry.header().clone();
    let kind = header.entry_type();
    let mode = Mode::from_bits_truncate(header.mode().map_err(|e| Error::Archive(format!("bad mode: {e}")))?);
    if !(kind.is_dir() && is_dir(&parent, name)) {
        remove_existing(&parent, name)?;
    }
    match kind {
        tar::EntryType::Directory => {
            if !is_dir(&parent, name) {
                nix::sys::stat::mkdirat(&parent, name, mode).map_err(|e| sys("creating a directory", e))?;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let fd = nix::fcntl::openat(
                &parent,
                name,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                mode,
            )
            .map_err(|e| sys("creating a file", e))?;
            let mut file = std::fs::File::from(fd);
            stats.size += std::io::copy(entry, &mut file).map_err(|e| Error::Io { context: "writing a file".into(), source: e })?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name()
                .map_err(|e| Error::Archive(format!("bad link target: {e}")))?
                .ok_or_else(|| Error::Archive("symlink without a target".into()))?;
            nix::unistd::symlinkat(target.as_ref(), &parent, name).map_err(|e| sys("creating a symlink", e))?;
        }
        tar::EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(|e| Error::Archive(format!("bad link target: {e}")))?
                .ok_or_else(|| Error::Archive("hard link without a target".into()))?;
            let target = sanitize(&target)?.ok_or_else(|| Error::Archive("hard link to the layer root".into()))?;
            let tparent = open_in_root(root, target.parent().unwrap_or(Path::new("")))
                .map_err(|e| sys(&format!("hard link target {} is not inside the layer", target.display()), e))?;
            let tname = target.file_name().unwrap_or_default();
            nix::unistd::linkat(&tparent, tname, &parent, name, AtFlags::empty())
                .map_err(|e| sys(&format!("hard link to {}", target.display()), e))?;
            return Ok(());
        }
        tar::EntryType::Fifo => {
            nix::sys::stat::mknodat(&parent, name, SFlag::S_IFIFO, mode, 0).map_err(|e| sys("creating a fifo", e))?;
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            if !opts.allow_devices {
                return Err(Error::Archive(format!("entry {}: device nodes are not allowed here", rel.display())));
            }
            let (maj, min) = (header.device_major().ok().flatten().unwrap_or(0), header.device_minor().ok().flatten().unwrap_or(0));
            let kind = if kind == tar::EntryType::Char { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
            nix::sys::stat::mknodat(&parent, name, kind, mode, libc::makedev(maj, min)).map_err(|e| sys("creating a device", e))?;
        }
        // PAX/GNU metadata entries are consumed by the tar crate; anything else is ignored as Docker does.
        _ => return Ok(()),
    }
    finish_metadata(&parent, name, &header, kind == tar::EntryType::Symlink, mode)?;
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let (Ok(key), value) = (ext.key(), ext.value_bytes()) {
                if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                    set_xattr(&parent, name, attr, value)?;
                }
            }
        }
    }
    Ok(())
}

/// Owner, then mode (chown clears set-id bits), then mtime; symlinks keep their own mode.
fn finish_metadata(dir: &OwnedFd, name: &OsStr, h: &tar::Header, symlink: bool, mode: Mode) -> Result<(), Error> {
    let uid = h.uid().ok().map(|u| Uid::from_raw(u as u32));
    let gid = h.gid().ok().map(|g| Gid::from_raw(g as u32));
    nix::unistd::fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| sys("setting the owner", e))?;
    if !symlink {
        nix::sys::stat::fchmodat(dir, name, mode, nix::sys::stat::FchmodatFlags::FollowSymlink)
            .map_err(|e| sys("setting the mode", e))?;
    }
    let mtime = nix::sys::time::TimeSpec::new(h.mtime().unwrap_or(0) as i64, 0);
    let _ = nix::sys::stat::utimensat(dir, name, &mtime, &mtime, nix::sys::stat::UtimensatFlags::NoFollowSymlink);
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
}
