//! Layer application and overlay snapshots. Tests that unpack (chown, mknod) or mount need root
//! and skip with a message elsewhere; each cleans its mounts through `Mounted`'s drop.
use std::io::Write;

use super::*;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipping: needs root");
    false
}

/// One tar entry: path, kind (d dir, f file, l symlink, h hard link, c char device), data or link target.
type E<'a> = (&'a str, char, &'a str);

/// A tar built entry by entry, with hostile names written straight into the header.
fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_size(0);
        h.set_entry_type(match kind {
            'd' => tar::EntryType::Directory,
            'l' => tar::EntryType::Symlink,
            'h' => tar::EntryType::Link,
            'c' => tar::EntryType::Char,
            _ => tar::EntryType::Regular,
        });
        if *kind == 'd' {
            h.set_mode(0o755);
        }
        if *kind == 'f' {
            h.set_size(data.len() as u64);
        }
        // set_path refuses `..`; write the names into the raw header ourselves.
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        if matches!(kind, 'l' | 'h') {
            let t = data.as_bytes();
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        }
        h.set_cksum();
        let body: &[u8] = if *kind == 'f' { data.as_bytes() } else { &[] };
        b.append(&h, body).expect("append");
    }
    b.into_inner().expect("tar")
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Snapshotter::unmount(&self.0);
    }
}

fn mounted_at(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let p = p.display().to_string();
    info.lines().any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

fn lgetxattr(p: &Path, key: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).expect("path");
    let key = std::ffi::CString::new(key).expect("key");
    let mut buf = [0u8; 256];
    // SAFETY: NUL-terminated path and key, and a buffer of the length given.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), key.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

fn chain(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

#[test]
fn files_dirs_and_links_land_inside_the_root_with_their_metadata() {
    use std::os::unix::fs::MetadataExt;
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut t = tar_of(&[("etc", 'd', ""), ("etc/hostname", 'f', "box\n"), ("link", 'l', "etc/hostname"), ("hard", 'h', "etc/hostname")]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("bin/su").expect("path");
    h.set_size(2);
    h.set_mode(0o4755);
    h.set_uid(1234);
    h.set_gid(55);
    h.set_mtime(1_000_000);
    h.set_cksum();
    b.append(&h, &b"su"[..]).expect("append");
    t.truncate(t.len() - 1024); // drop the end-of-archive blocks to append the second archive's entry
    t.extend(b.into_inner().expect("tar"));
    let stats = apply_layer(&t[..], dir.path(), &ApplyOptions::default()).expect("apply");
    assert_eq!((stats.entries, stats.size), (5, 6));
    assert_eq!(std::fs::read_to_string(dir.path().join("hard")).expect("read"), "box\n");
    assert_eq!(std::fs::read_link(dir.path().join("link")).expect("link"), Path::new("etc/hostname"));
    let su = std::fs::metadata(dir.path().join("bin/su")).expect("su");
    assert_eq!((su.uid(), su.gid(), su.mode() & 0o7777, su.mtime()), (1234, 55, 0o4755, 1_000_000));
    assert_eq!(std::fs::metadata(dir.path().join("etc")).expect("etc").mtime(), 1, "directory mtime survives its children");
}

/// Runs a hostile archive against a fresh dest beside a sentinel directory `/tmp/outside-<unique>`.
fn hostile(entries: &[E<'_>], outside: &Path) -> (Result<LayerStats, Error>, tempfile::TempDir) {
    let dest = tempfile::tempdir().expect("tmp");
    let res = apply_layer(&tar_of(entries)[..], dest.path(), &ApplyOptions::default());
    assert_eq!(std::fs::read_dir(outside).expect("ls outside").count(), 0, "{entries:?} wrote outside dest");
    (res, dest)
}

#[test]
fn hostile_archives_are_rejected_naming_the_entry_and_write_nothing_outside() {
    if !is_root() {
        return;
    }
    let outside = tempfile::Builder::new().prefix("outside-").tempdir_in("/tmp").expect("outside");
    let o = outside.path().display().to_string();
    let cases: Vec<(Vec<E<'_>>, &str)> = vec![
        (vec![("../escape", 'f', "x")], "../escape"),
        (vec![("a/../../escape", 'f', "x")], "a/../../escape"),
        (vec![("evil", 'l', &o), ("evil/pwned", 'f', "x")], "evil/pwned"),
        (vec![("up", 'l', "../../../../.."), ("up/victim", 'f', "x")], "up/victim"),
        (vec![("hl", 'h', "/etc/passwd")], "hl"),
        (vec![("hl", 'h', "../../etc/passwd")], "hl"),
        (vec![("d", 'd', ""), ("d/.wh...", 'f', "")], "d/.wh..."),
        (vec![("null", 'c', "")], "null"),
    ];
    for (entries, culprit) in &cases {
        let (res, dest) = hostile(entries, outside.path());
        match res {
            Err(Error::Entry { entry, .. }) => assert_eq!(entry, *culprit),
            other => panic!("{entries:?} must be rejected, got {other:?}"),
        }
        assert!(dest.path().exists(), "dest itself survives");
    }
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn absolute_names_are_made_relative_to_dest() {
    if !is_root() {
        return;
    }
    let outside = tempfile::Builder::new().prefix("outside-").tempdir_in("/tmp").expect("outside");
    let abs = format!("{}/abs", outside.path().display());
    let (res, dest) = hostile(&[(&abs, 'f', "x"), ("/etc/hosts2", 'f', "y")], outside.path());
    res.expect("absolute names are fine");
    assert!(dest.path().join(abs.trim_start_matches('/')).exists());
    assert!(dest.path().join("etc/hosts2").exists() && !Path::new("/etc/hosts2").exists());
}

#[test]
fn device_nodes_are_created_only_when_allowed() {
    use std::os::unix::fs::FileTypeExt;
    if !is_root() {
        return;
    }
    let dest = tempfile::tempdir().expect("tmp");
    apply_layer(&tar_of(&[("dev", 'd', ""), ("dev/zero2", 'c', "")])[..], dest.path(), &ApplyOptions { allow_devices: true }).expect("apply");
    assert!(std::fs::symlink_metadata(dest.path().join("dev/zero2")).expect("dev").file_type().is_char_device());
}

#[test]
fn whiteouts_become_overlay_char_devices_and_opaque_xattrs() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !is_root() {
        return;
    }
    let dest = tempfile::tempdir().expect("tmp");
    let t = tar_of(&[(".wh.gone", 'f', ""), ("d", 'd', ""), ("d/.wh..wh..opq", 'f', ""), ("d/.wh..wh.plnk", 'd', "")]);
    apply_layer(&t[..], dest.path(), &ApplyOptions::default()).expect("apply");
    let md = std::fs::symlink_metadata(dest.path().join("gone")).expect("whiteout");
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    assert_eq!(lgetxattr(&dest.path().join("d"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
    let names: Vec<_> = std::fs::read_dir(dest.path().join("d")).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(names.is_empty(), "no .wh. files left: {names:?}");
}

#[test]
fn an_overlay_of_two_layers_shows_the_merged_view_and_leaves_no_mount() {
    if !is_root() {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let s = Snapshotter::open(&root.path().join("snapshots")).expect("open");
    let l1 = tar_of(&[("a", 'f', "1"), ("gone", 'f', "2"), ("d", 'd', ""), ("d/old", 'f', "3"), ("keep", 'd', ""), ("keep/x", 'f', "5")]);
    let l2 = tar_of(&[(".wh.gone", 'f', ""), ("d", 'd', ""), ("d/.wh..wh..opq", 'f', ""), ("d/new", 'f', "4"), ("a", 'f', "top")]);
    s.add_layer(&chain(1), None, &l1[..]).expect("l1");
    s.add_layer(&chain(2), Some(&chain(1)), &l2[..]).expect("l2");
    assert_eq!(s.lowerdirs(&chain(2)).expect("lowers"), vec![s.layer_dir(&chain(2)).expect("dir").join("fs"), s.layer_dir(&chain(1)).expect("dir").join("fs")]);
    s.prepare("c1", Some(&chain(2))).expect("prepare");
    let target = root.path().join("mnt");
    std::fs::create_dir(&target).expect("mkdir");
    let guard = Mounted(target.clone());
    s.mount("c1", &target).expect("mount");
    assert!(mounted_at(&target));
    assert_eq!(std::fs::read_to_string(target.join("a")).expect("a"), "top");
    assert!(!target.join("gone").exists(), "whiteout hides the lower file");
    assert!(!target.join("d/old").exists(), "opaque dir hides the lower contents");
    assert!(target.join("d/new").exists() && target.join("keep/x").exists());
    std::fs::write(target.join("written"), b"12345").expect("write");
    assert_eq!(s.usage("c1").expect("usage"), 5);
    Snapshotter::unmount(&target).expect("unmount");
    Snapshotter::unmount(&target).expect("unmount twice");
    drop(guard);
    assert!(!mounted_at(&target));
    assert!(matches!(s.remove_layer(&chain(2)), Err(Error::InUse(..))), "in use by c1");
    assert!(matches!(s.remove_layer(&chain(1)), Err(Error::InUse(..))), "in use by layer 2");
    s.remove("c1").expect("remove");
    s.remove("c1").expect("remove twice");
    s.remove_layer(&chain(2)).expect("remove l2");
    s.remove_layer(&chain(1)).expect("remove l1");
    assert!(s.layers().is_empty());
    assert_eq!(std::fs::read_dir(root.path().join("snapshots/tmp")).expect("ls").count(), 0);
}

/// A store under a long root path with `n` layers, each adding `f<i>` and rewriting `top`.
fn deep_store(root: &Path, n: u8) -> Snapshotter {
    let deep = root.join("a-long-engine-root-".repeat(6)).join("snapshots");
    let s = Snapshotter::open(&deep).expect("open");
    let mut parent: Option<String> = None;
    for i in 0..n {
        let name = format!("f{i}");
        let t = tar_of(&[(&name, 'f', "x"), ("top", 'f', &name)]);
        s.add_layer(&chain(i), parent.as_deref(), &t[..]).expect("layer");
        parent = Some(chain(i));
    }
    s
}

#[test]
fn a_deep_image_mounts_in_one_overlay() {
    if !is_root() {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let s = deep_store(root.path(), 120);
    s.prepare("deep", Some(&chain(119))).expect("prepare");
    let target = root.path().join("mnt");
    std::fs::create_dir(&target).expect("mkdir");
    let _guard = Mounted(target.clone());
    s.mount("deep", &target).expect("120 layers mount");
    assert!(target.join("f0").exists() && target.join("f119").exists());
    assert_eq!(std::fs::read_to_string(target.join("top")).expect("top"), "f119", "the top layer wins");
}

#[test]
fn the_mount2_fallback_mounts_with_short_relative_paths_and_explains_its_limit() {
    if !is_root() {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let s = deep_store(root.path(), 60);
    s.prepare("k", None).expect("prepare");
    let target = root.path().join("mnt");
    std::fs::create_dir(&target).expect("mkdir");
    let _guard = Mounted(target.clone());
    let lowers = |n: u8| (0..n).rev().map(|i| Snapshotter::layer_rel(&chain(i)).expect("rel").join("fs")).collect::<Vec<_>>();
    let (upper, work) = (Path::new("active/k/upper"), Path::new("active/k/work"));
    mount::overlay_with(s.root(), &lowers(40), upper, work, &target, false).expect("40 layers fit");
    assert_eq!(std::fs::read_to_string(target.join("top")).expect("top"), "f39");
    Snapshotter::unmount(&target).expect("unmount");
    let err = mount::overlay_with(s.root(), &lowers(60), upper, work, &target, false).expect_err("60 do not");
    assert!(err.to_string().contains("6.8"), "{err}");
    assert!(!mounted_at(&target));
}

#[test]
fn a_snapshot_without_layers_is_a_bind_mount_of_its_upper_dir() {
    if !is_root() {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let s = Snapshotter::open(root.path()).expect("open");
    s.prepare("scratch", None).expect("prepare");
    assert!(matches!(s.prepare("scratch", None), Err(Error::InUse(..))), "keys are not shared");
    let target = root.path().join("mnt");
    std::fs::create_dir(&target).expect("mkdir");
    let _guard = Mounted(target.clone());
    s.mount("scratch", &target).expect("mount");
    std::fs::write(target.join("f"), b"abc").expect("write");
    assert!(root.path().join("active/scratch/upper/f").exists());
    Snapshotter::unmount(&target).expect("unmount");
    assert!(!mounted_at(&target));
}

#[test]
fn concurrent_adds_of_one_layer_all_succeed_and_keep_one_copy() {
    if !is_root() {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let s = Snapshotter::open(root.path()).expect("open");
    let t = tar_of(&[("a", 'f', "1")]);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4).map(|_| sc.spawn(|| s.add_layer(&chain(7), None, &t[..]))).collect();
        for h in handles {
            h.join().expect("thread").expect("add");
        }
    });
    assert_eq!(s.layers(), vec![chain(7)]);
    assert_eq!(std::fs::read_dir(root.path().join("tmp")).expect("ls").count(), 0);
}

#[test]
fn layers_survive_a_restart_with_their_parent_and_size() {
    if !is_root() {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    {
        let s = Snapshotter::open(root.path()).expect("open");
        s.add_layer(&chain(1), None, &tar_of(&[("a", 'f', "123")])[..]).expect("l1");
        s.add_layer(&chain(2), Some(&chain(1)), &tar_of(&[("b", 'f', "45")])[..]).expect("l2");
        // A crash mid-unpack leaves a temp dir behind.
        std::mem::forget(s.begin_layer(None).expect("begin"));
    }
    let s = Snapshotter::open(root.path()).expect("reopen");
    assert!(s.has_layer(&chain(2)));
    assert_eq!(s.lowerdirs(&chain(2)).expect("lowers").len(), 2);
    assert_eq!(s.chain_size(&chain(2)).expect("size"), 5);
    assert_eq!(std::fs::read_dir(root.path().join("tmp")).expect("ls").count(), 0, "the half layer was cleaned");
}

#[test]
fn an_abandoned_unpack_leaves_no_layer() {
    let root = tempfile::tempdir().expect("tmp");
    let s = Snapshotter::open(root.path()).expect("open");
    drop(s.begin_layer(None).expect("begin"));
    assert_eq!(std::fs::read_dir(root.path().join("tmp")).expect("ls").count(), 0);
    assert!(!s.has_layer(&chain(3)));
    assert!(matches!(s.add_layer(&chain(4), Some(&chain(3)), &[][..]), Err(Error::LayerNotFound(_))));
}

#[test]
fn chain_ids_and_keys_that_could_name_other_paths_are_refused() {
    let root = tempfile::tempdir().expect("tmp");
    let s = Snapshotter::open(root.path()).expect("open");
    for bad in ["../../etc", "sha256:../x", "sha256:", "sha256:ABC"] {
        assert!(matches!(s.add_layer(bad, None, &[][..]), Err(Error::InvalidName { .. })), "{bad}");
        assert!(!s.has_layer(bad));
    }
    for bad in ["", "..", "a/b", "x y"] {
        assert!(matches!(s.prepare(bad, None), Err(Error::InvalidName { .. })), "{bad:?}");
    }
}

#[test]
fn decompress_sniffs_gzip_zstd_and_plain_tar() {
    use std::io::Read;
    let plain = tar_of(&[("a", 'f', "hello")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = zstd::encode_all(&plain[..], 1).expect("zstd");
    for (name, input) in [("plain", plain.clone()), ("gzip", gz), ("zstd", zst)] {
        let mut out = Vec::new();
        decompress(std::io::Cursor::new(input)).expect(name).read_to_end(&mut out).expect(name);
        assert_eq!(out, plain, "{name}");
    }
}
