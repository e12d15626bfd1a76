//! Volumes, bind mounts, tmpfs and shared namespaces, end to end with the berth CLI.
mod common;

use common::*;

#[test]
fn a_named_volume_keeps_data_across_containers_and_is_refused_removal_while_used() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    e.ok(&["run", "--rm", "-v", "data:/data", "bb:1", "sh", "-c", "echo kept > /data/x"]);
    assert_eq!(e.ok(&["run", "--rm", "-v", "data:/data", "bb:1", "cat", "/data/x"]), "kept\n");
    assert!(e.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "data"));
    e.ok(&["run", "-d", "--name", "user", "-v", "data:/data", "bb:1", "sleep", "1000"]);
    let id = e.ok(&["inspect", "-f", "{{.Id}}", "user"]).trim().to_string();
    let out = e.berth(&["volume", "rm", "data"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("remove data: volume is in use - [{id}]")), "{}", stderr(&out));
    assert_eq!(e.ok(&["run", "--rm", "--volumes-from", "user:ro", "bb:1", "cat", "/data/x"]), "kept\n");
    let out = e.berth(&["run", "--rm", "--volumes-from", "user:ro", "bb:1", "touch", "/data/y"]);
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    // Survives an engine crash: the volume and its user are still known.
    let mut e = e;
    e.kill_and_restart();
    assert!(!e.berth(&["volume", "rm", "data"]).status.success(), "still in use after a restart");
    e.ok(&["rm", "-f", "user"]);
    e.ok(&["volume", "rm", "data"]);
    assert!(e.ok(&["volume", "ls", "-q"]).trim().is_empty());
    assert!(e.mounts().is_empty(), "mounts left: {:?}", e.mounts());
}

#[test]
fn a_new_volume_over_image_content_starts_with_a_copy_of_it() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let out = e.ok(&["run", "--rm", "-v", "etc:/etc", "bb:1", "cat", "/etc/passwd"]);
    assert!(out.starts_with("root:"), "{out}");
    let listed = e.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "etc"]);
    assert!(std::path::Path::new(listed.trim()).join("passwd").exists(), "the copy lives in the volume");
}

#[test]
fn bind_mounts_honour_read_only_and_tmpfs_its_size() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let host = tempfile::tempdir().expect("tmp");
    std::fs::write(host.path().join("f"), "from the host\n").expect("file");
    let spec = format!("{}:/mnt:ro", host.path().display());
    let out = e.berth(&["run", "--rm", "-v", &spec, "bb:1", "sh", "-c", "cat /mnt/f; echo no > /mnt/g"]);
    assert_eq!(stdout(&out), "from the host\n");
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    assert!(!host.path().join("g").exists());
    let rw = format!("type=bind,src={},dst=/mnt,bind-propagation=rslave", host.path().display());
    e.ok(&["run", "--rm", "--mount", &rw, "bb:1", "sh", "-c", "echo yes > /mnt/g"]);
    assert_eq!(std::fs::read_to_string(host.path().join("g")).expect("written"), "yes\n");
    let out = e.ok(&["run", "--rm", "--tmpfs", "/t:size=1m", "bb:1", "sh", "-c", "grep ' /t ' /proc/mounts"]);
    assert!(out.contains("tmpfs") && out.contains("size=1024k"), "{out}");
    let out = e.berth(&["run", "--rm", "--mount", "type=bind,src=/no/such/dir,dst=/x", "bb:1", "true"]);
    assert!(stderr(&out).contains("bind source path does not exist: /no/such/dir"), "{}", stderr(&out));
    assert!(e.mounts().is_empty(), "mounts left: {:?}", e.mounts());
}

#[test]
fn anonymous_volumes_come_from_dash_v_and_image_volumes_and_go_with_rm_v() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    let tar = busybox_tar().to_str().expect("utf8").to_string();
    e.ok(&["import", "--change", "VOLUME /state", &tar, "vol:1"]);
    e.ok(&["run", "--name", "anon", "-v", "/scratch", "vol:1", "sh", "-c", "echo x > /state/s; echo y > /scratch/s"]);
    let mounts = e.ok(&["inspect", "-f", "{{range .Mounts}}{{.Destination}} {{end}}", "anon"]);
    assert!(mounts.contains("/state") && mounts.contains("/scratch"), "{mounts}");
    assert_eq!(e.ok(&["volume", "ls", "-q"]).lines().count(), 2);
    e.ok(&["rm", "-v", "anon"]);
    assert!(e.ok(&["volume", "ls", "-q"]).trim().is_empty(), "rm -v removed them");
    e.ok(&["run", "--rm", "vol:1", "true"]);
    assert!(e.ok(&["volume", "ls", "-q"]).trim().is_empty(), "--rm removed the anonymous volume");
    e.ok(&["volume", "create", "named"]);
    e.ok(&["run", "--name", "bee", "vol:1", "true"]);
    e.ok(&["rm", "bee"]);
    let pruned = e.ok(&["volume", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    assert_eq!(e.ok(&["volume", "ls", "-q"]).trim(), "named", "prune keeps named volumes without -a");
    e.ok(&["volume", "prune", "-a", "-f"]);
    assert!(e.ok(&["volume", "ls", "-q"]).trim().is_empty());
}

#[test]
fn containers_share_pid_ipc_and_network_namespaces_with_another() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    e.ok(&["run", "-d", "--name", "pause", "--ipc", "shareable", "bb:1", "sh", "-c", "echo shared > /dev/shm/mark; nc -l -p 8080 -e echo hello; sleep 1000"]);
    let ps = e.ok(&["run", "--rm", "--pid", "container:pause", "bb:1", "ps", "-o", "args"]);
    assert!(ps.contains("nc -l -p 8080"), "the other container's processes are visible: {ps}");
    assert_eq!(e.ok(&["run", "--rm", "--ipc", "container:pause", "bb:1", "cat", "/dev/shm/mark"]), "shared\n");
    let mut answer = String::new();
    for _ in 0..50 {
        answer = e.ok(&["run", "--rm", "--network", "container:pause", "bb:1", "sh", "-c", "nc 127.0.0.1 8080 < /dev/null || true"]);
        if !answer.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(answer.trim(), "hello", "localhost is shared");
    let own = e.ok(&["run", "--rm", "--network", "none", "bb:1", "sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1"]);
    assert_eq!(own.trim(), "lo", "--network none has only lo");
    let out = e.berth(&["run", "--rm", "--pid", "container:nope", "bb:1", "true"]);
    assert!(stderr(&out).contains("No such container: nope"), "{}", stderr(&out));
    e.ok(&["rm", "-f", "pause"]);
}

#[test]
fn a_symlink_in_the_image_cannot_send_a_bind_mount_outside_the_root() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    // An image whose /escape is a symlink to a host directory.
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("link");
    std::os::unix::fs::symlink(&outside, root.join("escape")).expect("link");
    let tar = tmp.path().join("evil.tar");
    let st = std::process::Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().expect("tar");
    assert!(st.success());
    e.ok(&["import", tar.to_str().expect("utf8"), "evil:1"]);
    let src = tempfile::tempdir().expect("src");
    std::fs::write(src.path().join("f"), "x").expect("file");
    let spec = format!("{}:/escape/sub", src.path().display());
    let _ = e.berth(&["run", "--rm", "-v", &spec, "evil:1", "sh", "-c", "true"]);
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0, "nothing was created or mounted on the host");
    assert!(e.mounts().is_empty(), "mounts left: {:?}", e.mounts());
}

#[test]
fn the_docker_cli_manages_volumes_through_berth() {
    if !can_run() || !std::path::Path::new("/usr/bin/docker").exists() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker").arg("-H").arg(e.host()).args(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(docker(&["volume", "create", "dv"]).trim(), "dv");
    docker(&["run", "--rm", "-v", "dv:/d", "bb:1", "sh", "-c", "echo hi > /d/f"]);
    assert_eq!(docker(&["run", "--rm", "-v", "dv:/d:ro", "bb:1", "cat", "/d/f"]), "hi\n");
    assert!(docker(&["volume", "ls", "--format", "{{.Name}}"]).lines().any(|l| l == "dv"));
    assert_eq!(docker(&["volume", "rm", "dv"]).trim(), "dv");
}
