//! Layer application and overlay snapshots (the hostile-archive and mount tests need root).
use super::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tar built entry by entry: (path, kind, data or link target).
fn tar_of(entries: &[(&str, char, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1);
        match kind {
            'd' => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
            }
            'l' => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
            }
            'h' => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
            }
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
            }
        }
        // set_path refuses `..`; write hostile names into the raw header ourselves.
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

#[test]
fn files_dirs_and_links_land_inside_the_root() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let t = tar_of(&[("etc", 'd', ""), ("etc/hostname", 'f', "box\n"), ("link", 'l', "etc/hostname"), ("hard", 'h', "etc/hostname")]);
    let stats = apply_layer(&t[..], dir.path(), &ApplyOptions::default()).expect("apply");
    assert_eq!(stats.size, 4);
    assert_eq!(std::fs::read_to_string(dir.path().join("hard")).expect("read"), "box\n");
    assert_eq!(std::fs::read_link(dir.path().join("link")).expect("link"), Path::new("etc/hostname"));
}

#[test]
fn hostile_archives_write_nothing_outside() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim");
    let o = outside.path().display().to_string();
    let cases: Vec<Vec<u8>> = vec![
        tar_of(&[("../escape", 'f', "x")]),
        tar_of(&[("evil", 'l', &o), ("evil/pwned", 'f', "x")]),
        tar_of(&[("hl", 'h', "/etc/passwd")]),
        tar_of(&[("up", 'l', "../../../../.."), ("up/victim", 'f', "x")]),
    ];
    for (i, t) in cases.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tmp");
        let res = apply_layer(&t[..], dir.path(), &ApplyOptions::default());
        assert!(std::fs::read_dir(outside.path()).expect("ls").next().is_none(), "case {i} wrote outside");
        assert!(!victim.exists());
        if i != 3 {
            assert!(res.is_err(), "case {i} must be rejected");
        }
    }
    // Absolute names are made relative and stay inside.
    let dir = tempfile::tempdir().expect("tmp");
    apply_layer(&tar_of(&[("/abs", 'f', "x")])[..], dir.path(), &ApplyOptions::default()).expect("apply");
    assert!(dir.path().join("abs").exists());
}

#[test]
fn whiteouts_and_opaque_dirs_shape_the_overlay_view() {
    if !is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let s = Snapshotter::open(root.path()).expect("open");
    let l1 = tar_of(&[("a", 'f', "1"), ("gone", 'f', "2"), ("d", 'd', ""), ("d/old", 'f', "3")]);
    let l2 = tar_of(&[(".wh.gone", 'f', ""), ("d", 'd', ""), ("d/.wh..wh..opq", 'f', ""), ("d/new", 'f', "4")]);
    s.add_layer("sha256:aa", None, &l1[..]).expect("l1");
    s.add_layer("sha256:bb", Some("sha256:aa"), &l2[..]).expect("l2");
    assert_eq!(s.lowerdirs("sha256:bb").expect("lowers").len(), 2);
    s.prepare("c1", Some("sha256:bb")).expect("prepare");
    let target = root.path().join("mnt");
    std::fs::create_dir(&target).expect("mkdir");
    s.mount("c1", &target).expect("mount");
    let view = (target.join("a").exists(), target.join("gone").exists(), target.join("d/old").exists(), target.join("d/new").exists());
    Snapshotter::unmount(&target).expect("unmount");
    assert_eq!(view, (true, false, false, true));
    assert!(s.remove_layer("sha256:bb").is_err(), "in use by c1");
    s.remove("c1").expect("remove");
    s.remove_layer("sha256:bb").expect("remove l2");
    s.remove_layer("sha256:aa").expect("remove l1");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&target.display().to_string()));
}

#[test]
fn an_abandoned_unpack_leaves_no_layer() {
    let root = tempfile::tempdir().expect("tmp");
    let s = Snapshotter::open(root.path()).expect("open");
    {
        let _p = s.begin_layer(None).expect("begin");
    }
    assert_eq!(std::fs::read_dir(root.path().join("tmp")).expect("ls").count(), 0);
    assert!(!s.has_layer("sha256:cc"));
}
