//! Image store: import, lookup, tags and rmi (import unpacks a layer, which needs root).
use super::*;

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().expect("tmp");
    let snaps = Arc::new(snapshot::Snapshotter::open(&dir.path().join("snapshots")).expect("snapshots"));
    let s = ImageStore::open(&dir.path().join("image"), snaps).expect("open");
    (dir, s)
}

fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("etc/motd").expect("path");
    h.set_size(3);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, &b"hi\n"[..]).expect("append");
    b.into_inner().expect("tar")
}

fn reference(s: &str) -> Reference {
    s.parse().expect("reference")
}

#[test]
fn import_is_stable_and_found_by_name_id_and_prefix() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (_dir, s) = store();
    let img = s.import(std::io::Cursor::new(rootfs_tar()), Some(&reference("bb:1")), &ImportOptions::default()).expect("import");
    let tar = rootfs_tar();
    assert_eq!(img.top_chain_id.as_deref(), Some(Digest::sha256_of(&tar).to_string().as_str()), "diff id of a plain tar is its sha256");
    assert_eq!(img.repo_tags, vec!["bb:1"]);
    assert_eq!(s.get("bb:1").expect("by name").id, img.id);
    assert_eq!(s.get(&img.id.hex()[..6]).expect("by prefix").id, img.id);
    assert_eq!(s.get(&img.id.to_string()).expect("by id").id, img.id);
    assert!(matches!(s.get("bb:2"), Err(Error::NotFound(_))));
    let cfg = serde_json::to_value(&img.config).expect("config");
    assert_eq!(cfg["rootfs"]["diff_ids"][0], json!(img.top_chain_id));
    assert_eq!(s.list().len(), 1);
}

#[test]
fn rmi_untags_then_deletes_and_collects_layers() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (dir, s) = store();
    let img = s.import(std::io::Cursor::new(rootfs_tar()), Some(&reference("bb:1")), &ImportOptions::default()).expect("import");
    s.tag("bb:1", &reference("bb:2")).expect("tag");
    let none = |_: &Digest| false;
    assert!(matches!(s.remove(&img.id.to_string(), false, &none), Err(Error::Conflict(_))));
    assert_eq!(s.remove("bb:2", false, &none).expect("untag"), vec![Removed::Untagged("bb:2".into())]);
    let out = s.remove("bb:1", false, &none).expect("delete");
    assert_eq!(out, vec![Removed::Untagged("bb:1".into()), Removed::Deleted(img.id.clone())]);
    assert!(s.list().is_empty());
    let layers = std::fs::read_dir(dir.path().join("snapshots/layers")).expect("ls").count();
    assert_eq!(layers, 0, "the layer went with its last image");
    let blobs = std::fs::read_dir(dir.path().join("image/blobs/sha256")).expect("ls").count();
    assert_eq!(blobs, 0);
}

#[test]
fn chain_ids_follow_the_oci_rule() {
    let a = Digest::sha256_of(b"a");
    let b = Digest::sha256_of(b"b");
    assert_eq!(chain_id(None, &a), a);
    assert_eq!(chain_id(Some(&a), &b), Digest::sha256_of(format!("{a} {b}").as_bytes()));
}
