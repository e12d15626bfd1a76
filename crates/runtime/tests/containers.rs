//! Real containers from a busybox bundle (root only).
//!
//! No libtest harness: the runtime clones the calling process, which must be single-threaded, so
//! these tests run one after another on the main thread (`harness = false`).
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use runtime::{caps, CreateOptions, Runtime, Stdio};

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs root and /bin/busybox");
        return false;
    }
    true
}

/// A bundle whose rootfs holds busybox and its applets, with `args` as the process.
fn bundle(dir: &Path, args: &[&str], extra: serde_json::Value) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "mnt"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    for a in ["sh", "echo", "cat", "hostname", "ls", "sleep", "true", "grep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("link");
    }
    let mut cfg = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps::docker_default(), "effective": caps::docker_default(), "permitted": caps::docker_default()}},
        "root": {"path": "rootfs"},
        "hostname": "rt-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}],
            "maskedPaths": ["/proc/keys", "/proc/timer_list"], "readonlyPaths": ["/proc/sys"]},
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("config");
    dir.to_path_buf()
}

fn wait(pid: i32) -> i32 {
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("wait") {
        nix::sys::wait::WaitStatus::Exited(_, c) => c,
        nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => panic!("{other:?}"),
    }
}

/// Runs the container with its stdout captured in a pipe; returns (exit code, stdout).
fn run(rt: &Runtime, id: &str, b: &Path) -> (i32, String) {
    let (r, w) = pipe().expect("pipe");
    let stdin: OwnedFd = std::fs::File::open("/dev/null").expect("null").into();
    let stderr = w.try_clone().expect("dup");
    let created = rt.create(id, b, CreateOptions { stdio: Stdio::Fds { stdin, stdout: w, stderr }, pid_file: None, seccomp_cache: None }).expect("create");
    rt.start(id).expect("start");
    let code = wait(created.pid);
    let mut out = String::new();
    use std::io::Read;
    std::fs::File::from(r).read_to_string(&mut out).expect("read");
    rt.delete(id, false).expect("delete");
    (code, out)
}

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

fn a_container_runs_as_pid_one_with_its_hostname_and_exit_code() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let rt = Runtime::new(state.path());
    let b = bundle(dir.path(), &["sh", "-c", "echo $$ $(hostname); grep CapEff /proc/self/status; cat /proc/keys | wc -c; ls /proc/self/fd; exit 3"], serde_json::json!({}));
    let (code, out) = run(&rt, &unique("basic"), &b);
    assert_eq!(code, 3, "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1 rt-test"));
    assert_eq!(lines.next(), Some("CapEff:\t00000000a80425fb"));
    assert_eq!(lines.next().map(str::trim), Some("0"), "masked path reads empty");
    // Only stdio and the fd `ls` opens itself: nothing of the runtime leaks.
    let fds: Vec<&str> = lines.collect();
    assert!(fds.len() <= 4, "leaked fds: {fds:?}");
    assert!(std::fs::read_dir(state.path()).expect("ls").next().is_none(), "state removed");
}

fn a_missing_executable_fails_at_create() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let rt = Runtime::new(state.path());
    let b = bundle(dir.path(), &["nope"], serde_json::json!({}));
    let err = rt.create(&unique("missing"), &b, CreateOptions { stdio: Stdio::Inherit, pid_file: None, seccomp_cache: None }).expect_err("missing");
    assert_eq!(err.exit_code(), 127);
    assert!(err.to_string().contains("executable file not found"), "{err}");
}

fn a_symlinked_mount_target_stays_inside_the_rootfs() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let outside = tempfile::tempdir().expect("outside");
    let state = tempfile::tempdir().expect("state");
    let rt = Runtime::new(state.path());
    let mounts = serde_json::json!({"mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/evil", "type": "tmpfs", "source": "tmpfs"},
    ]});
    let b = bundle(dir.path(), &["sh", "-c", "echo x > /evil/file"], mounts);
    std::os::unix::fs::symlink(outside.path(), b.join("rootfs/evil")).expect("symlink");
    // The link resolves inside the rootfs (to a path that does not exist there): the create fails
    // with a clear error, or mounts inside; either way the host is untouched.
    let id = unique("symlink");
    match rt.create(&id, &b, CreateOptions { stdio: Stdio::Inherit, pid_file: None, seccomp_cache: None }) {
        Ok(c) => {
            rt.start(&id).expect("start");
            wait(c.pid);
            rt.delete(&id, true).expect("delete");
        }
        Err(e) => assert!(e.to_string().contains("/evil"), "{e}"),
    }
    assert!(std::fs::read_dir(outside.path()).expect("ls").next().is_none(), "nothing lands on the host");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!host_mounts.contains(&outside.path().display().to_string()));
}

fn exec_joins_the_running_containers_namespaces() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let rt = Runtime::new(state.path());
    let id = unique("exec");
    let b = bundle(dir.path(), &["sleep", "100"], serde_json::json!({}));
    let created = rt.create(&id, &b, CreateOptions { stdio: Stdio::Inherit, pid_file: None, seccomp_cache: None }).expect("create");
    rt.start(&id).expect("start");
    assert_eq!(serde_json::to_value(rt.state(&id).expect("state")).expect("json")["status"], "running");
    let (r, w) = pipe().expect("pipe");
    let stdin: OwnedFd = std::fs::File::open("/dev/null").expect("null").into();
    let stderr = w.try_clone().expect("dup");
    let process: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
        "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "hostname; echo $$"], "env": ["PATH=/bin"], "cwd": "/"
    })).expect("process");
    let pid = rt.exec(&id, &process, Stdio::Fds { stdin, stdout: w, stderr }).expect("exec");
    assert_eq!(wait(pid), 0);
    let mut out = String::new();
    use std::io::Read;
    std::fs::File::from(r).read_to_string(&mut out).expect("read");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "rt-test");
    assert_ne!(lines[1], "1", "the exec is not the init");
    assert!(rt.delete(&id, false).is_err(), "a running container needs force");
    rt.kill(&id, libc::SIGKILL, false).expect("kill");
    assert_eq!(wait(created.pid), 137);
    rt.delete(&id, false).expect("delete");
}

fn main() {
    if !can_run() {
        println!("0 passed, 0 failed, 4 skipped");
        return;
    }
    let tests: [(&str, fn()); 4] = [
        ("a_container_runs_as_pid_one_with_its_hostname_and_exit_code", a_container_runs_as_pid_one_with_its_hostname_and_exit_code),
        ("a_missing_executable_fails_at_create", a_missing_executable_fails_at_create),
        ("a_symlinked_mount_target_stays_inside_the_rootfs", a_symlinked_mount_target_stays_inside_the_rootfs),
        ("exec_joins_the_running_containers_namespaces", exec_joins_the_running_containers_namespaces),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, t) in tests {
        match std::panic::catch_unwind(t) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
