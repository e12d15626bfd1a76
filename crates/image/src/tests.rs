//! Image store: lookup, tags and rmi on zero-layer images (no root needed), and import, which
//! unpacks a layer and so needs root.
use std::sync::Arc;

use serde_json::json;

use super::*;

fn store_at(dir: &std::path::Path) -> ImageStore {
    let snaps = Arc::new(snapshot::Snapshotter::open(&dir.join("snapshots")).expect("snapshots"));
    ImageStore::open(&dir.join("image"), snaps).expect("open")
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().expect("tmp");
    let s = store_at(dir.path());
    (dir, s)
}

fn reference(s: &str) -> Reference {
    s.parse().expect("reference")
}

/// A zero-layer image whose config differs by `label`, registered as pull or load would.
fn empty_image(s: &ImageStore, label: &str, created: &str) -> Image {
    let config = json!({"created": created, "architecture": "amd64", "os": "linux", "config": {"Labels": {"l": label}},
        "rootfs": {"type": "layers", "diff_ids": []}});
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let id = s.content().put(&config_bytes).expect("config");
    let manifest = json!({"schemaVersion": 2, "config": {"digest": id.to_string(), "size": config_bytes.len()}, "layers": []});
    let m = s.content().put(&serde_json::to_vec(&manifest).expect("json")).expect("manifest");
    s.register(&m, None).expect("register")
}

fn never(_: &Digest) -> bool {
    false
}

#[test]
fn images_are_found_by_name_full_id_hex_and_unique_prefix() {
    let (_dir, s) = store();
    let img = empty_image(&s, "a", "2024-01-01T00:00:00Z");
    s.tag(&img.id.to_string(), &reference("bb:1")).expect("tag");
    let full = img.id.to_string();
    for name in ["bb:1", "docker.io/library/bb:1", full.as_str(), img.id.hex(), &img.id.hex()[..1], img.id.short()] {
        assert_eq!(s.get(name).expect(name).id, img.id, "{name}");
    }
    assert_eq!(s.get("bb:1").expect("get").repo_tags, vec!["bb:1"]);
    let err = s.get("bb:2").expect_err("missing");
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(err.to_string(), "No such image: bb:2");
}

#[test]
fn an_ambiguous_prefix_is_an_error_not_a_guess() {
    let (_dir, s) = store();
    let ids: Vec<Digest> = (0..40).map(|i| empty_image(&s, &i.to_string(), "2024-01-01T00:00:00Z").id).collect();
    let first = ids[0].hex().chars().next().expect("hex");
    let sharing = ids.iter().filter(|d| d.hex().starts_with(first)).count();
    let res = s.get(&first.to_string());
    if sharing > 1 {
        assert!(matches!(res, Err(Error::Ambiguous(_))), "{sharing} ids start with {first}");
    } else {
        assert_eq!(res.expect("unique").id, ids[0]);
    }
    assert!(matches!(s.get(""), Err(Error::NotFound(_))));
}

#[test]
fn listing_is_newest_first_and_tags_move_between_images() {
    let (_dir, s) = store();
    let old = empty_image(&s, "old", "2023-01-01T00:00:00Z");
    let new = empty_image(&s, "new", "2024-01-01T00:00:00Z");
    assert_eq!(s.list().iter().map(|i| i.id.clone()).collect::<Vec<_>>(), vec![new.id.clone(), old.id.clone()]);
    s.tag(&old.id.to_string(), &reference("app:latest")).expect("tag");
    s.tag(&new.id.to_string(), &reference("app")).expect("retag");
    assert_eq!(s.get("app").expect("app").id, new.id);
    assert!(s.get(&old.id.to_string()).expect("old").repo_tags.is_empty(), "old is dangling now");
    let pinned = reference("app").with_digest(&new.manifest_digest);
    assert!(matches!(s.tag("app", &pinned), Err(Error::InvalidReference { .. })));
}

#[test]
fn tags_and_records_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let id = {
        let s = store_at(dir.path());
        let img = empty_image(&s, "x", "2024-01-01T00:00:00Z");
        s.tag(&img.id.to_string(), &reference("reg:5000/x:1")).expect("tag");
        s.add_repo_digest(&img.id, &reference("reg:5000/x").with_digest(&img.manifest_digest)).expect("digest");
        img.id
    };
    let s = store_at(dir.path());
    let img = s.get("reg:5000/x:1").expect("after restart");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_digests, vec![format!("reg:5000/x@{}", img.manifest_digest)]);
    assert_eq!(s.get(&format!("reg:5000/x@{}", img.manifest_digest)).expect("by digest").id, id);
}

#[test]
fn rmi_by_name_untags_until_the_last_name_deletes() {
    let (dir, s) = store();
    let img = empty_image(&s, "a", "2024-01-01T00:00:00Z");
    s.tag(&img.id.to_string(), &reference("bb:1")).expect("tag");
    s.tag("bb:1", &reference("bb:2")).expect("tag");
    assert_eq!(s.remove("bb:2", false, &never).expect("untag"), vec![Removed::Untagged("bb:2".into())]);
    assert_eq!(s.get("bb:1").expect("still there").id, img.id);
    let out = s.remove("bb:1", false, &never).expect("delete");
    assert_eq!(out, vec![Removed::Untagged("bb:1".into()), Removed::Deleted(img.id.clone())]);
    assert!(s.list().is_empty());
    assert_eq!(std::fs::read_dir(dir.path().join("image/blobs/sha256")).expect("ls").count(), 0, "config and manifest went too");
    assert!(matches!(s.remove("bb:1", false, &never), Err(Error::NotFound(_))));
}

#[test]
fn rmi_by_id_of_a_multiply_tagged_or_used_image_must_be_forced() {
    let (_dir, s) = store();
    let img = empty_image(&s, "a", "2024-01-01T00:00:00Z");
    s.tag(&img.id.to_string(), &reference("bb:1")).expect("tag");
    s.tag(&img.id.to_string(), &reference("cc:1")).expect("tag");
    let err = s.remove(img.id.short(), false, &never).expect_err("conflict");
    assert!(err.to_string().contains("referenced in multiple repositories"), "{err}");
    let used = |d: &Digest| *d == img.id;
    s.remove("cc:1", false, &used).expect("untagging a non-last name is fine while in use");
    let err = s.remove("bb:1", false, &used).expect_err("in use");
    assert!(err.to_string().contains("must force"), "{err}");
    let out = s.remove(&img.id.to_string(), true, &used).expect("forced");
    assert_eq!(out, vec![Removed::Untagged("bb:1".into()), Removed::Deleted(img.id.clone())]);
}

#[test]
fn import_gives_a_stable_diff_id_a_config_and_a_layer() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (dir, s) = store();
    let tar = rootfs_tar();
    let diff_id = Digest::sha256_of(&tar);
    let opts = ImportOptions { message: String::new(), changes: vec![r#"CMD ["/bin/sh"]"#.into()] };
    let img = s.import(std::io::Cursor::new(gzip(&tar)), Some(&reference("bb:1")), &opts).expect("import");
    assert_eq!(img.top_chain_id.as_deref(), Some(diff_id.to_string().as_str()), "one layer: chain id = diff id = sha256 of the tar");
    assert_eq!(img.repo_tags, vec!["bb:1"]);
    assert_eq!(img.size, 3);
    let cfg = serde_json::to_value(&img.config).expect("config");
    assert_eq!(cfg["rootfs"]["diff_ids"], json!([diff_id.to_string()]));
    assert_eq!(cfg["config"]["Cmd"], json!(["/bin/sh"]));
    assert_eq!(cfg["history"][0]["comment"], "Imported from -");
    assert_eq!(cfg["architecture"], host_arch());
    let lower = s.snapshots.lowerdirs(&diff_id.to_string()).expect("layer");
    assert_eq!(std::fs::read_to_string(lower[0].join("etc/motd")).expect("motd"), "hi\n");
    assert!(s.content().has(&diff_id), "the layer blob is stored uncompressed under its diff id");

    let again = s.import(std::io::Cursor::new(tar.clone()), None, &ImportOptions::default()).expect("import again");
    assert_eq!(s.snapshots.layers(), vec![diff_id.to_string()], "the same layer is shared");
    s.remove(&again.id.to_string(), false, &never).expect("rmi the second");
    assert!(s.snapshots.has_layer(&diff_id.to_string()), "still used by bb:1");
    let out = s.remove("bb:1", false, &never).expect("rmi");
    assert_eq!(out.last(), Some(&Removed::Deleted(diff_id.clone())), "the layer is reported deleted: {out:?}");
    assert!(s.snapshots.layers().is_empty());
    assert_eq!(std::fs::read_dir(dir.path().join("image/blobs/sha256")).expect("ls").count(), 0);
}

#[test]
fn a_bad_change_or_tarball_leaves_nothing_behind() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (dir, s) = store();
    let bad = ImportOptions { message: String::new(), changes: vec!["RUN true".into()] };
    assert!(matches!(s.import(std::io::Cursor::new(rootfs_tar()), None, &bad), Err(Error::InvalidChange(_))));
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_size(0);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &[][..]).expect("append");
    let hostile = b.into_inner().expect("tar");
    assert!(matches!(s.import(std::io::Cursor::new(hostile), None, &ImportOptions::default()), Err(Error::Snapshot(_))));
    assert!(s.list().is_empty() && s.snapshots.layers().is_empty());
    assert_eq!(std::fs::read_dir(dir.path().join("image/blobs/sha256")).expect("ls").count(), 0);
    assert_eq!(std::fs::read_dir(dir.path().join("image/ingest")).expect("ls").count(), 0);
}

#[test]
fn garbage_collection_removes_what_no_image_references() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let (_dir, s) = store();
    let kept = s.import(std::io::Cursor::new(rootfs_tar()), Some(&reference("keep")), &ImportOptions::default()).expect("import");
    let stray = s.content().put(b"orphan blob").expect("blob");
    s.snapshots.add_layer(&Digest::sha256_of(b"orphan").to_string(), None, &tar_bytes(&[])[..]).expect("orphan layer");
    let removed = s.collect_garbage().expect("gc");
    assert!(removed.contains(&stray) && removed.contains(&Digest::sha256_of(b"orphan")), "{removed:?}");
    assert!(s.get("keep").is_ok() && s.content().has(&kept.id));
    assert_eq!(s.snapshots.layers(), vec![kept.top_chain_id.clone().expect("chain")]);
}

fn tar_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

fn rootfs_tar() -> Vec<u8> {
    tar_bytes(&[("etc/motd", b"hi\n")])
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}
