//! save and load: round trips, skopeo and umoci as independent readers and writers of the
//! formats, an old per-layer docker-archive, hostile archives, prune and garbage collection.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn tools(list: &[&str]) -> bool {
    for t in list {
        if !Path::new(t).exists() {
            eprintln!("skipping: {t} is not installed (see scripts/test)");
            return false;
        }
    }
    can_run()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a tool");
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under the engine root (blobs and layer snapshots) — for leak checks.
fn store_files(e: &TestEngine) -> Vec<String> {
    let out = Command::new("find").arg(e.root.join("image")).arg(e.root.join("snapshots/layers")).args(["-mindepth", "1", "-maxdepth", "3"]).output().expect("find");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.ends_with("/ingest") && !l.contains("/ingest/")).map(String::from).collect()
}

#[test]
fn save_then_load_round_trips_and_skopeo_and_umoci_read_the_archive() {
    if !tools(&["/usr/bin/skopeo", "/usr/bin/umoci"]) {
        return;
    }
    let e = TestEngine::start();
    let id = e.import_busybox("bb:1");
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tmp.path().join("bb.tar");
    e.ok(&["save", "-o", archive.to_str().expect("utf8"), "bb:1"]);
    // skopeo reads it as a docker-archive and, unpacked, as an OCI layout; umoci unpacks it.
    let inspected = run(Command::new("skopeo").arg("inspect").arg(format!("docker-archive:{}", archive.display())));
    assert!(inspected.contains("\"Os\": \"linux\""), "{inspected}");
    let layout = tmp.path().join("layout");
    std::fs::create_dir(&layout).expect("mkdir");
    run(Command::new("tar").arg("-xf").arg(&archive).arg("-C").arg(&layout));
    run(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:1", layout.display())));
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:1", layout.display())).arg(&bundle));
    assert!(bundle.join("rootfs/bin/busybox").exists(), "umoci unpacked the layer");

    e.ok(&["rmi", "bb:1"]);
    let loaded = e.ok(&["load", "-i", archive.to_str().expect("utf8")]);
    assert_eq!(loaded.trim(), "Loaded image: bb:1");
    assert_eq!(e.ok(&["images", "-q", "--no-trunc"]).trim(), id, "the same image id comes back");
    assert_eq!(e.ok(&["run", "--rm", "bb:1", "echo", "back"]), "back\n");
}

#[test]
fn archives_skopeo_writes_load_in_both_formats() {
    if !tools(&["/usr/bin/skopeo", "/usr/bin/umoci"]) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    // An image made by umoci, with a whiteout in its second layer.
    let layout = tmp.path().join("oci");
    let image = format!("{}:v1", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    let b = tmp.path().join("b");
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&b));
    std::fs::create_dir_all(b.join("rootfs/bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", b.join("rootfs/bin/busybox")).expect("busybox");
    for a in ["sh", "cat", "test"] {
        std::os::unix::fs::symlink("busybox", b.join("rootfs/bin").join(a)).expect("link");
    }
    std::fs::write(b.join("rootfs/gone"), "x").expect("file");
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&b));
    std::fs::remove_dir_all(&b).expect("rm");
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&b));
    std::fs::remove_file(b.join("rootfs/gone")).expect("rm");
    std::fs::write(b.join("rootfs/kept"), "yes\n").expect("file");
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&b));

    let docker_archive = tmp.path().join("d.tar");
    run(Command::new("skopeo").arg("copy").arg(format!("oci:{image}")).arg(format!("docker-archive:{}:made/by:skopeo", docker_archive.display())));
    let oci_archive = tmp.path().join("o.tar");
    run(Command::new("skopeo").arg("copy").arg(format!("oci:{image}")).arg(format!("oci-archive:{}:docker.io/made/by:oci", oci_archive.display())));

    let e = TestEngine::start();
    assert_eq!(e.ok(&["load", "-i", docker_archive.to_str().expect("utf8")]).trim(), "Loaded image: made/by:skopeo");
    assert_eq!(e.ok(&["run", "--rm", "made/by:skopeo", "sh", "-c", "cat /kept; test -e /gone || echo gone"]), "yes\ngone\n");
    let out = e.ok(&["load", "-i", oci_archive.to_str().expect("utf8")]);
    assert!(out.contains("Loaded image"), "{out}");
    assert_eq!(e.ok(&["run", "--rm", "made/by:oci", "cat", "/kept"]), "yes\n");
}

#[test]
fn an_old_per_layer_docker_archive_loads() {
    if !can_run() {
        return;
    }
    // The pre-25 layout: <id>/layer.tar, <config>.json, manifest.json naming them.
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("a");
    std::fs::create_dir_all(dir.join("layer1")).expect("mkdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", src.join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", src.join("bin/sh")).expect("link");
    std::fs::write(src.join("hello"), "old format\n").expect("file");
    let layer = Command::new("tar").arg("-C").arg(&src).args(["-cf", "-", "."]).output().expect("tar").stdout;
    std::fs::write(dir.join("layer1/layer.tar"), &layer).expect("layer");
    use sha2::Digest as _;
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&layer)));
    let config = format!(r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#);
    let config_hex = hex::encode(sha2::Sha256::digest(config.as_bytes()));
    std::fs::write(dir.join(format!("{config_hex}.json")), &config).expect("config");
    std::fs::write(dir.join("manifest.json"), format!(r#"[{{"Config":"{config_hex}.json","RepoTags":["old/format:1"],"Layers":["layer1/layer.tar"]}}]"#)).expect("manifest");
    let archive = tmp.path().join("old.tar");
    run(Command::new("tar").arg("-C").arg(&dir).arg("-cf").arg(&archive).arg("."));
    let e = TestEngine::start();
    assert_eq!(e.ok(&["load", "-i", archive.to_str().expect("utf8")]).trim(), "Loaded image: old/format:1");
    assert_eq!(e.ok(&["run", "--rm", "old/format:1", "sh", "-c", "cat /hello"]), "old format\n");
}

/// A tar with the given entries: (path, Some(content)) for files, (path, None) + link for links.
fn hostile_tar(entries: &[(&str, HostileEntry)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, entry) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        match entry {
            HostileEntry::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                // set_path refuses `..`; write the raw name as a hostile producer would.
                let name = h.as_old_mut().name.as_mut();
                name[..path.len()].copy_from_slice(path.as_bytes());
                h.set_cksum();
                b.append(&h, data.as_bytes()).expect("append");
            }
            HostileEntry::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_path(path).expect("path");
                h.set_link_name(target).expect("link");
                h.set_cksum();
                b.append(&h, std::io::empty()).expect("append");
            }
        }
    }
    b.into_inner().expect("tar")
}

enum HostileEntry {
    File(&'static str),
    Symlink(&'static str),
}

#[test]
fn hostile_archives_are_refused_and_nothing_lands_outside_the_store() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let victim = tmp.path().join("victim");
    std::fs::create_dir(&victim).expect("mkdir");
    let victim_str: &'static str = Box::leak(victim.display().to_string().into_boxed_str());
    let escape: &'static str = Box::leak(format!("../../../../../../../../..{victim_str}/owned").into_boxed_str());
    let absolute: &'static str = Box::leak(format!("{victim_str}/owned").into_boxed_str());
    let wrong_digest: &'static str = Box::leak(format!("blobs/sha256/{}", "a".repeat(64)).into_boxed_str());
    // (what, entries, the error must say)
    type Case<'a> = (&'a str, Vec<(&'a str, HostileEntry)>, &'a str);
    let cases: Vec<Case> = vec![
        ("path traversal", vec![(escape, HostileEntry::File("x")), ("manifest.json", HostileEntry::File("[]"))], "leaves the archive"),
        ("absolute path", vec![(absolute, HostileEntry::File("x")), ("manifest.json", HostileEntry::File("[]"))], "absolute path"),
        ("symlink out", vec![("blobs", HostileEntry::Symlink(victim_str)), ("manifest.json", HostileEntry::File("[]"))], "links outside"),
        ("file through a symlink", vec![("dir", HostileEntry::Symlink("sub")), ("dir/owned", HostileEntry::File("x")), ("manifest.json", HostileEntry::File("[]"))], "through the symbolic link"),
        ("blob with a wrong digest", vec![(wrong_digest, HostileEntry::File("not that content")), ("index.json", HostileEntry::File(r#"{"manifests":[]}"#))], "digest"),
        ("manifest naming a missing file", vec![("manifest.json", HostileEntry::File(r#"[{"Config":"nope.json","RepoTags":["x:1"],"Layers":[]}]"#))], "does not contain"),
        ("not an archive", vec![("readme", HostileEntry::File("hi"))], "neither manifest.json nor index.json"),
    ];
    for (what, entries, expected) in cases {
        let path = tmp.path().join("hostile.tar");
        std::fs::write(&path, hostile_tar(&entries)).expect("write");
        let out = e.berth(&["load", "-i", path.to_str().expect("utf8")]);
        assert!(!out.status.success(), "{what}: loaded");
        assert!(stderr(&out).contains(expected), "{what}: {}", stderr(&out));
        assert_eq!(std::fs::read_dir(&victim).expect("victim").count(), 0, "{what}: wrote outside the store");
    }
    assert!(e.ok(&["images", "-q"]).trim().is_empty(), "nothing registered");
    let blobs: Vec<String> = store_files(&e).into_iter().filter(|f| f.contains("/blobs/sha256/")).collect();
    assert!(blobs.is_empty(), "refused archives left blobs: {blobs:?}");
}

#[test]
fn prune_removes_dangling_images_and_gc_leaves_no_orphans() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    let before = store_files(&e);
    e.import_busybox("bb:1");
    let older = e.ok(&["images", "-q", "--no-trunc"]).trim().to_string();
    // A second import under the same name leaves the first image dangling.
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = tmp.path().join("changed.tar");
    run(Command::new("sh").arg("-c").arg(format!("cat {} > {}", busybox_tar().display(), tar.display())));
    e.ok(&["import", "--change", "ENV CHANGED=1", tar.to_str().expect("utf8"), "bb:1"]);
    let dangling = e.ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"]);
    assert_eq!(dangling.trim(), older, "the re-tagged image is dangling");
    let pruned = e.ok(&["image", "prune", "-f"]);
    assert!(pruned.contains(&format!("deleted: {older}")) && pruned.contains("Total reclaimed space:"), "{pruned}");
    assert!(e.ok(&["images", "-q", "-f", "dangling=true"]).trim().is_empty());
    // A container keeps its image through prune -a; once it is gone, -a removes the image too.
    e.ok(&["run", "--name", "keeper", "bb:1", "true"]);
    e.ok(&["image", "prune", "-a", "-f"]);
    assert!(!e.ok(&["images", "-q"]).trim().is_empty(), "an image in use stays");
    e.ok(&["rm", "keeper"]);
    e.ok(&["image", "prune", "-a", "-f"]);
    assert!(e.ok(&["images", "-q"]).trim().is_empty());
    let after = store_files(&e);
    let extra: Vec<&String> = after.iter().filter(|f| !before.contains(f) && f.contains("sha256") || f.contains("/layers/")).collect();
    assert!(extra.is_empty(), "orphaned blobs or layers: {extra:?}");
}

#[test]
fn the_docker_cli_saves_loads_and_shows_history_through_berth() {
    if !tools(&["/usr/bin/docker"]) {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let docker = |args: &[&str]| {
        let out = Command::new("docker").arg("-H").arg(e.host()).args(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let archive = tmp.path().join("bb.tar");
    docker(&["save", "-o", archive.to_str().expect("utf8"), "bb:1"]);
    docker(&["rmi", "bb:1"]);
    assert!(docker(&["load", "-i", archive.to_str().expect("utf8")]).contains("Loaded image: bb:1"));
    let history = docker(&["history", "bb:1"]);
    assert!(history.contains("Imported from -"), "{history}");
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Os}}", "bb:1"]).trim(), "linux");
}
