//! End to end: a real engine in a temporary root, driven by the berth CLI as a user would.
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn run_rm_prints_output_and_leaves_nothing_behind() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    assert_eq!(e.ok(&["run", "--rm", "bb:1", "echo", "hello"]), "hello\n");
    assert_eq!(e.ok(&["ps", "-aq"]).trim(), "", "--rm left a container");
    assert!(e.mounts().is_empty(), "mounts left: {:?}", e.mounts());
}

#[test]
fn exit_status_and_stderr_come_back() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let out = e.berth(&["run", "--rm", "bb:1", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
}

#[test]
fn unknown_image_and_missing_command_fail_like_docker() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let out = e.berth(&["run", "--rm", "bb:2", "true"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("Unable to find image 'bb:2' locally"), "stderr: {}", stderr(&out));

    let out = e.berth(&["run", "--rm", "bb:1", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "stderr: {}", stderr(&out));
    assert!(stderr(&out).contains("no-such-command"), "stderr: {}", stderr(&out));
}

#[test]
fn detached_container_lists_logs_execs_stops_and_removes() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let id = e.ok(&["run", "-d", "--name", "web", "bb:1", "sh", "-c", "echo started; exec sleep 1000"]);
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("web") && ps.contains("Up "), "ps: {ps}");
    eventually("log line", Duration::from_secs(5), || e.ok(&["logs", "web"]) == "started\n");
    assert_eq!(e.ok(&["exec", "web", "sh", "-c", "echo in-$HOSTNAME"]).trim(), format!("in-{}", &id[..12]));
    let out = e.berth(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    // A running container is not removed without -f, and the name stays taken.
    let out = e.berth(&["rm", "web"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stop the container before removing or force remove"), "{}", stderr(&out));
    let out = e.berth(&["run", "-d", "--name", "web", "bb:1", "true"]);
    assert!(stderr(&out).contains("is already in use by container") && stderr(&out).contains(id), "{}", stderr(&out));

    e.ok(&["stop", "-t", "1", "web"]);
    let state = e.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "web"]);
    assert_eq!(state.trim(), "exited 137", "sleep ignores TERM as pid 1, so stop kills it");
    e.ok(&["rm", "web"]);
    assert!(e.mounts().is_empty(), "mounts left: {:?}", e.mounts());
    assert!(cgroup_dirs(id).is_empty(), "cgroups left: {:?}", cgroup_dirs(id));
    assert!(!e.root.join("containers").join(id).exists());
    assert!(!e.root.join("run/shims").join(id).exists());
    assert!(processes_mentioning(id).is_empty(), "shim left: {:?}", processes_mentioning(id));
}

#[test]
fn run_flags_shape_the_process() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let out = e.ok(&[
        "run", "--rm", "-e", "GREETING=hi", "-w", "/tmp", "-u", "www", "-h", "box", "bb:1",
        "sh", "-c", "echo $GREETING $(pwd) $(id -u):$(id -g) $(hostname)",
    ]);
    assert_eq!(out.trim(), "hi /tmp 33:33 box");
    let out = e.ok(&["run", "--rm", "-u", "1000:1000", "bb:1", "id", "-u"]);
    assert_eq!(out.trim(), "1000");
    let out = e.ok(&["run", "--rm", "--entrypoint", "echo", "bb:1", "from", "entrypoint"]);
    assert_eq!(out.trim(), "from entrypoint");
}

#[test]
fn security_defaults_and_their_overrides() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let status = e.ok(&["run", "--rm", "bb:1", "cat", "/proc/self/status"]);
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let status = e.ok(&["run", "--rm", "--cap-drop", "ALL", "--cap-add", "KILL", "bb:1", "cat", "/proc/self/status"]);
    assert!(status.contains("CapEff:\t0000000000000020"), "{status}");
    // Masked and read-only paths.
    // Masked: whichever of Docker's masked /proc files this kernel has reads empty inside.
    let masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/interrupts"]
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok())
        .expect("a masked /proc file exists on the host");
    let out = e.berth(&["run", "--rm", "bb:1", "sh", "-c", &format!("wc -c < {masked}")]);
    assert_eq!(stdout(&out).trim(), "0", "{masked}: {}", stderr(&out));
    let out = e.berth(&["run", "--rm", "bb:1", "sh", "-c", "echo 1 > /proc/sys/kernel/domainname"]);
    assert!(!out.status.success());
    let out = e.berth(&["run", "--rm", "--read-only", "bb:1", "touch", "/file"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Read-only file system"), "{}", stderr(&out));
    let out = e.ok(&["run", "--rm", "--privileged", "bb:1", "cat", "/proc/self/status"]);
    assert!(out.contains("Seccomp:\t0"), "{out}");
}

#[test]
fn resource_limits_reach_the_cgroup() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let id = e.ok(&["run", "-d", "-m", "64m", "--cpus", "0.5", "--pids-limit", "20", "--cpu-shares", "512", "bb:1", "sleep", "1000"]);
    let id = id.trim();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default().trim().to_string();
    if std::path::Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(read(&format!("/sys/fs/cgroup/memory/berth/{id}/memory.limit_in_bytes")), "67108864");
        assert_eq!(read(&format!("/sys/fs/cgroup/pids/berth/{id}/pids.max")), "20");
        assert_eq!(read(&format!("/sys/fs/cgroup/cpu/berth/{id}/cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&format!("/sys/fs/cgroup/cpu/berth/{id}/cpu.shares")), "512");
    } else {
        assert_eq!(read(&format!("/sys/fs/cgroup/berth/{id}/memory.max")), "67108864");
        assert_eq!(read(&format!("/sys/fs/cgroup/berth/{id}/pids.max")), "20");
    }
    e.ok(&["rm", "-f", id]);
    assert!(cgroup_dirs(id).is_empty(), "cgroups left: {:?}", cgroup_dirs(id));
}

#[test]
fn containers_survive_an_engine_kill_and_are_managed_after_restart() {
    if !can_run() {
        return;
    }
    let mut e = TestEngine::start();
    e.import_busybox("bb:1");
    let id = e.ok(&["run", "-d", "--name", "survivor", "bb:1", "sh", "-c", "echo before; trap 'exit 0' TERM; while true; do sleep 0.1; done"]);
    let id = id.trim().to_string();
    eventually("first log line", Duration::from_secs(5), || e.ok(&["logs", "survivor"]).contains("before"));
    e.kill_and_restart();
    let ps = e.ok(&["ps"]);
    assert!(ps.contains("survivor"), "after restart ps shows: {ps}");
    assert_eq!(e.ok(&["exec", "survivor", "echo", "still here"]).trim(), "still here");
    assert!(e.ok(&["logs", "survivor"]).contains("before"));
    e.ok(&["stop", "survivor"]);
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.ExitCode}}", "survivor"]).trim(), "0");
    e.ok(&["rm", "survivor"]);
    assert!(cgroup_dirs(&id).is_empty());
}

#[test]
fn images_list_inspect_and_remove() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    let id = e.import_busybox("bb:1");
    assert!(id.starts_with("sha256:"), "import prints the image id: {id}");
    let images = e.ok(&["images"]);
    assert!(images.contains("bb") && images.contains(&id[7..19]), "{images}");
    let arch = e.ok(&["inspect", "-f", "{{.Os}}", "bb:1"]);
    assert_eq!(arch.trim(), "linux");
    e.ok(&["create", "--name", "user", "bb:1", "true"]);
    let out = e.berth(&["rmi", "bb:1"]);
    assert!(!out.status.success(), "an image in use is not removed");
    e.ok(&["rm", "user"]);
    let out = e.ok(&["rmi", "bb:1"]);
    assert!(out.contains("Untagged: bb:1") && out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(e.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn unreachable_engine_is_one_clear_line() {
    let out = std::process::Command::new(BERTH)
        .args(["-H", "unix:///nonexistent/berth.sock", "ps"])
        .output()
        .expect("run berth");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("berth engine"), "{err}");
}

#[test]
fn stdin_reaches_run_and_exec_and_closes_with_the_client() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let out = e.berth_with_input(&["run", "-i", "--rm", "bb:1", "sh", "-c", "tr a-z A-Z"], b"shout\n");
    assert_eq!(stdout(&out), "SHOUT\n", "{}", stderr(&out));
    e.ok(&["run", "-d", "--name", "box", "bb:1", "sleep", "1000"]);
    let out = e.berth_with_input(&["exec", "-i", "box", "wc", "-l"], b"1\n2\n3\n");
    assert_eq!(stdout(&out).trim(), "3", "{}", stderr(&out));
    e.ok(&["rm", "-f", "box"]);
}

#[test]
fn a_tty_is_the_containers_own_pty_as_under_docker() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    // The pty comes from the container's devpts: its name there is /dev/pts/0 and /dev/console
    // is that same pty (a host pty would show up as /dev/console with a host number).
    let out = e.ok(&["run", "-t", "--rm", "bb:1", "sh", "-c", "tty; stat -c %t:%T /dev/console /dev/pts/0"]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"/dev/pts/0"), "{out:?}");
    assert_eq!(lines.get(1), lines.get(2), "/dev/console is not the container's pty: {out:?}");
    e.ok(&["run", "-d", "-t", "--name", "term", "bb:1", "sleep", "1000"]);
    let out = e.ok(&["exec", "-t", "term", "tty"]);
    assert_eq!(out.trim(), "/dev/pts/1", "exec gets the next pty of the same devpts");
    e.ok(&["rm", "-f", "term"]);
}

#[test]
fn add_host_and_dns_flags_shape_the_containers_etc_files() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let out = e.ok(&["run", "--rm", "--add-host", "db:10.1.2.3", "--dns", "192.0.2.53", "--dns-search", "corp.example", "bb:1", "cat", "/etc/hosts", "/etc/resolv.conf"]);
    assert!(out.contains("10.1.2.3\tdb"), "{out}");
    assert!(out.contains("nameserver 192.0.2.53") && out.contains("search corp.example"), "{out}");
}

#[test]
fn the_runtime_cli_runs_a_bundle_like_runc() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("rootfs");
    let st = std::process::Command::new("tar").arg("-xf").arg(busybox_tar()).arg("-C").arg(&rootfs).status().expect("tar");
    assert!(st.success());
    let config = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {"args": ["sh", "-c", "echo from-bundle; exit 5"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]},
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
    let state = dir.path().join("state");
    let out = std::process::Command::new(BERTH)
        .args(["runtime", "--root"]).arg(&state).args(["run", "--bundle"]).arg(dir.path()).arg("rt-e2e")
        .output()
        .expect("berth runtime");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from-bundle\n");
    // create / state / start / delete, as validation suites drive it.
    let rt = |args: &[&str]| std::process::Command::new(BERTH).args(["runtime", "--root"]).arg(&state).args(args).output().expect("runtime");
    let config = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {"args": ["sleep", "100"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
    let bundle = dir.path().to_str().expect("utf8");
    // The init inherits create's stdio (as with runc): don't hand it a pipe we wait on.
    let created = std::process::Command::new(BERTH)
        .args(["runtime", "--root"]).arg(&state).args(["create", "--bundle", bundle, "c1"])
        .stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
        .status()
        .expect("create");
    assert!(created.success());
    let state_json: serde_json::Value = serde_json::from_slice(&rt(&["state", "c1"]).stdout).expect("state json");
    assert_eq!(state_json["status"], "created");
    assert!(rt(&["start", "c1"]).status.success());
    let state_json: serde_json::Value = serde_json::from_slice(&rt(&["state", "c1"]).stdout).expect("state json");
    assert_eq!(state_json["status"], "running");
    assert!(!rt(&["delete", "c1"]).status.success(), "a running container is not deleted without --force");
    assert!(rt(&["kill", "c1", "KILL"]).status.success());
    eventually("container stopped", Duration::from_secs(5), || {
        serde_json::from_slice::<serde_json::Value>(&rt(&["state", "c1"]).stdout).is_ok_and(|v| v["status"] == "stopped")
    });
    assert!(rt(&["delete", "c1"]).status.success());
}
