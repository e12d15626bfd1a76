//! Real containers from a busybox bundle (root only).
//!
//! No libtest harness: the runtime clones the calling process, which must be single-threaded, so
//! these tests run one after another on the main thread (`harness = false`). Every container is
//! removed by a guard, so a failing test leaves no process, cgroup or state behind.
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use runtime::{caps, CreateOptions, Runtime, Stdio};

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

fn can_run() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/bin/busybox").exists()
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("rt-{name}-{}-{nanos}", std::process::id())
}

/// A bundle like `runc spec` makes, with busybox and its applets as the rootfs.
struct Bundle {
    dir: tempfile::TempDir,
    config: serde_json::Value,
}

impl Bundle {
    fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().expect("tmp");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for a in ["sh", "echo", "cat", "hostname", "ls", "sleep", "true", "grep", "id", "wc", "ulimit", "touch", "mount", "stat"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("link");
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n").expect("passwd");
        let config = serde_json::json!({
            "ociVersion": "1.2.0",
            "process": {
                "terminal": false, "user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
                "capabilities": {"bounding": caps::docker_default(), "effective": caps::docker_default(), "permitted": caps::docker_default()},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "hostname": "rt-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                "maskedPaths": runtime::MASKED_PATHS,
                "readonlyPaths": runtime::READONLY_PATHS
            }
        });
        Bundle { dir, config }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn write(&self) -> &Path {
        std::fs::write(self.dir.path().join("config.json"), self.config.to_string()).expect("config");
        self.dir.path()
    }
}

/// Deletes (forced) and reaps the container however the test ends.
struct Container<'a> {
    rt: &'a Runtime,
    id: String,
    pid: Option<i32>,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.rt.delete(&self.id, true);
        if let Some(pid) = self.pid.take() {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
    }
}

impl Container<'_> {
    fn wait(&mut self) -> i32 {
        let pid = self.pid.take().expect("a created container");
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("wait") {
            nix::sys::wait::WaitStatus::Exited(_, c) => c,
            nix::sys::wait::WaitStatus::Signaled(_, s, _) => 128 + s as i32,
            other => panic!("{other:?}"),
        }
    }
}

fn piped() -> (Stdio, std::fs::File) {
    let (r, w) = pipe();
    let stdin: OwnedFd = std::fs::File::open("/dev/null").expect("null").into();
    let stderr = w.try_clone().expect("dup");
    (Stdio::Fds { stdin, stdout: w, stderr }, std::fs::File::from(r))
}

fn create<'a>(rt: &'a Runtime, b: &Bundle, name: &str, stdio: Stdio) -> Result<Container<'a>, runtime::Error> {
    let id = unique(name);
    let c = rt.create(&id, b.write(), CreateOptions { stdio, pid_file: None, seccomp_cache: None })?;
    Ok(Container { rt, id, pid: Some(c.pid) })
}

/// Creates, starts and waits; returns (exit code, stdout+stderr).
fn run(rt: &Runtime, b: &Bundle, name: &str) -> (i32, String) {
    let (stdio, mut out) = piped();
    let mut c = create(rt, b, name, stdio).expect("create");
    rt.start(&c.id).expect("start");
    let code = c.wait();
    drop(c);
    let mut s = String::new();
    out.read_to_string(&mut s).expect("read");
    (code, s)
}

/// The runtime removes a container's own cgroup, not the parents it made on the way: remove the
/// shared `/berth-test` parent in every hierarchy (it stays while another test still uses it).
fn remove_test_cgroup_parents() {
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(h.path().join("berth-test"));
    }
}

fn state_dir() -> (tempfile::TempDir, Runtime) {
    let dir = tempfile::tempdir().expect("state");
    let rt = Runtime::new(dir.path());
    (dir, rt)
}

fn a_container_runs_as_pid_one_with_its_hostname_and_exit_code() {
    let (state, rt) = state_dir();
    let b = Bundle::new(&["sh", "-c", "echo hello $$ $(hostname); exit 3"]);
    let (code, out) = run(&rt, &b, "basic");
    assert_eq!(code, 3, "{out}");
    assert_eq!(out, "hello 1 rt-test\n");
    assert!(std::fs::read_dir(state.path()).expect("ls").next().is_none(), "state removed");
}

fn capabilities_seccomp_and_no_new_privs_are_in_force() {
    let (_state, rt) = state_dir();
    let mut b = Bundle::new(&["grep", "-E", "^(CapEff|CapBnd|CapPrm|Seccomp|NoNewPrivs):", "/proc/self/status"]);
    b.config["linux"]["seccomp"] = serde_json::to_value(seccomp::default_profile(&caps::docker_default())).expect("profile");
    let (code, out) = run(&rt, &b, "caps");
    assert_eq!(code, 0, "{out}");
    for want in ["CapPrm:\t00000000a80425fb", "CapEff:\t00000000a80425fb", "CapBnd:\t00000000a80425fb", "NoNewPrivs:\t1", "Seccomp:\t2"] {
        assert!(out.lines().any(|l| l == want), "{want} missing in {out}");
    }
}

fn masked_and_read_only_paths_hide_and_protect_the_host() {
    let (_state, rt) = state_dir();
    // /proc/kcore does not exist on every kernel; /proc/keys and /proc/timer_list do here.
    let script = "cat /proc/keys | wc -c; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/domainname && echo wrote; \
                  echo 1 > /proc/sysrq-trigger && echo wrote; touch /sys/x && echo wrote; echo end";
    let b = Bundle::new(&["sh", "-c", script]);
    let (code, out) = run(&rt, &b, "masked");
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.contains("Read-only") && !l.contains("can't")).collect();
    assert_eq!(lines, ["0", "0", "end"], "{out}");
}

fn sysctls_of_the_containers_namespaces_are_written() {
    let (_state, rt) = state_dir();
    let mut b = Bundle::new(&["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni"]);
    b.config["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    let (code, out) = run(&rt, &b, "sysctl");
    assert_eq!((code, out.as_str()), (0, "1\n1234\n"));
    b.config["linux"]["sysctl"] = serde_json::json!({"kernel.core_pattern": "|/evil"});
    let err = create(&rt, &b, "sysctl-host", Stdio::Inherit).err().expect("a host sysctl is refused");
    assert!(err.to_string().contains("kernel.core_pattern"), "{err}");
}

fn memory_and_pids_limits_land_in_the_containers_cgroup() {
    let (_state, rt) = state_dir();
    let mut b = Bundle::new(&["sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup"]);
    let cg = format!("/berth-test/{}", unique("cg"));
    b.config["linux"]["cgroupsPath"] = serde_json::json!(cg);
    b.config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 42}});
    let (stdio, mut out) = piped();
    let mut c = create(&rt, &b, "cgroup", stdio).expect("create");
    let pid = c.pid.expect("pid");
    let mem = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes")).expect("memory limit");
    let pids = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cg}/pids.max")).expect("pids limit");
    let procs = std::fs::read_to_string(format!("/sys/fs/cgroup/pids{cg}/cgroup.procs")).expect("procs");
    assert_eq!((mem.trim(), pids.trim()), ("67108864", "42"));
    assert_eq!(procs.trim(), pid.to_string(), "the init is in its cgroup before it starts");
    rt.start(&c.id).expect("start");
    assert_eq!(c.wait(), 0);
    let mut s = String::new();
    out.read_to_string(&mut s).expect("read");
    assert!(s.lines().any(|l| l.ends_with(&format!(":memory:{cg}"))), "{s}");
    assert!(s.lines().any(|l| l == "memory"), "the container sees its own hierarchies: {s}");
    rt.delete(&c.id, false).expect("delete");
    assert!(!Path::new(&format!("/sys/fs/cgroup/memory{cg}")).exists(), "cgroup removed");
    assert!(matches!(rt.state(&c.id), Err(runtime::Error::NotFound(_))), "state removed");
    remove_test_cgroup_parents();
}

fn a_cgroup_namespace_is_rooted_at_the_containers_own_cgroup() {
    let (_state, rt) = state_dir();
    let mut b = Bundle::new(&["grep", ":memory:", "/proc/self/cgroup"]);
    let cg = format!("/berth-test/{}", unique("cgns"));
    b.config["linux"]["cgroupsPath"] = serde_json::json!(cg);
    b.config["linux"]["namespaces"].as_array_mut().expect("namespaces").push(serde_json::json!({"type": "cgroup"}));
    let (code, out) = run(&rt, &b, "cgns");
    assert_eq!(code, 0, "{out}");
    // Seen from inside its namespace, the container's cgroup is the root (as runc makes it).
    assert!(out.trim().ends_with(":memory:/"), "{out}");
    remove_test_cgroup_parents();
}

fn user_rlimits_umask_and_working_directory_are_applied() {
    let (_state, rt) = state_dir();
    let mut b = Bundle::new(&["sh", "-c", "id; ulimit -n; umask; pwd; stat -c '%F %t:%T %a %u:%g' /dev/mynull /dev/null; echo $HOME"]);
    b.config["linux"]["devices"] = serde_json::json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 432, "uid": 1000, "gid": 5}]);
    b.config["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 7], "umask": 63});
    b.config["process"]["cwd"] = serde_json::json!("/work/dir");
    b.config["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 321, "soft": 123}]);
    let (code, out) = run(&rt, &b, "user");
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "uid=1000(user) gid=1000 groups=5,7", "{out}");
    assert_eq!(&lines[1..], ["123", "0077", "/work/dir", "character special file 1:3 660 1000:5", "character special file 1:3 666 0:0", "/tmp"]);
}

fn a_missing_executable_fails_at_create() {
    let (state, rt) = state_dir();
    let b = Bundle::new(&["nope"]);
    let err = create(&rt, &b, "missing", Stdio::Inherit).err().expect("missing");
    assert_eq!(err.to_string(), "exec: \"nope\": executable file not found in $PATH");
    assert_eq!(err.exit_code(), 127);
    assert!(std::fs::read_dir(state.path()).expect("ls").next().is_none(), "nothing left behind");
}

fn an_execve_failure_is_reported_by_start() {
    let (_state, rt) = state_dir();
    let b = Bundle::new(&["/bin/notelf"]);
    // Executable bits but no format the kernel knows: only execve itself can tell.
    std::fs::write(b.rootfs().join("bin/notelf"), [0u8; 16]).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.rootfs().join("bin/notelf"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (stdio, _out) = piped();
    let mut c = create(&rt, &b, "noexec", stdio).expect("create");
    let err = rt.start(&c.id).expect_err("execve fails");
    assert!(matches!(err, runtime::Error::Exec { source: nix::errno::Errno::ENOEXEC, .. }), "{err:?}");
    assert_eq!(err.exit_code(), 126);
    assert_eq!(c.wait(), 126);
}

fn no_runtime_fd_leaks_into_the_container() {
    let (_state, rt) = state_dir();
    // A descriptor of this process without CLOEXEC must not reach the container either.
    let leak = nix::fcntl::open("/", nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty()).expect("open");
    let b = Bundle::new(&["ls", "/proc/self/fd"]);
    let (code, out) = run(&rt, &b, "fds");
    drop(leak);
    assert_eq!(code, 0, "{out}");
    let fds: Vec<&str> = out.split_whitespace().collect();
    // 0, 1, 2, and the directory fd `ls` opened itself.
    assert_eq!(fds.len(), 4, "{fds:?}");
}

fn a_symlinked_mount_target_stays_inside_the_rootfs() {
    let (_state, rt) = state_dir();
    let outside = tempfile::tempdir().expect("outside");
    let mut b = Bundle::new(&["sh", "-c", "echo x > /mnt/file && cat /proc/self/mountinfo"]);
    b.config["mounts"].as_array_mut().expect("mounts").push(serde_json::json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"}));
    std::os::unix::fs::symlink(outside.path(), b.rootfs().join("mnt")).expect("symlink");
    let (code, out) = run(&rt, &b, "symlink");
    assert_eq!(code, 0, "{out}");
    assert!(std::fs::read_dir(outside.path()).expect("ls").next().is_none(), "nothing lands on the host");
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!host_mounts.contains(&outside.path().display().to_string()));
    // The link was followed inside the rootfs: the tmpfs sits at the link's path taken in-root.
    let in_root = outside.path().display().to_string();
    assert!(out.lines().any(|l| l.contains(&format!(" {in_root} ")) && l.contains("tmpfs")), "{out}");
}

fn exec_joins_the_running_containers_namespaces_and_cgroup() {
    let (_state, rt) = state_dir();
    let mut b = Bundle::new(&["sleep", "100"]);
    let cg = format!("/berth-test/{}", unique("exec"));
    b.config["linux"]["cgroupsPath"] = serde_json::json!(cg);
    let mut c = create(&rt, &b, "exec", Stdio::Inherit).expect("create");
    assert_eq!(serde_json::to_value(rt.state(&c.id).expect("state")).expect("json")["status"], "created");
    rt.start(&c.id).expect("start");
    assert_eq!(serde_json::to_value(rt.state(&c.id).expect("state")).expect("json")["status"], "running");
    let (stdio, mut out) = piped();
    let process: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
        "user": {"uid": 0, "gid": 0}, "args": ["sh", "-c", "hostname; echo $$; grep :pids: /proc/self/cgroup"], "env": ["PATH=/bin"], "cwd": "/"
    }))
    .expect("process");
    let pid = rt.exec(&c.id, &process, stdio).expect("exec");
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("wait exec");
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0));
    let mut s = String::new();
    out.read_to_string(&mut s).expect("read");
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "rt-test", "{s}");
    assert_ne!(lines[1], "1", "the exec is not the init");
    assert!(lines[2].ends_with(&cg), "{s}");
    let missing: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
        "user": {"uid": 0, "gid": 0}, "args": ["nope"], "env": ["PATH=/bin"], "cwd": "/"
    }))
    .expect("process");
    let (stdio, mut err) = piped();
    let pid = rt.exec(&c.id, &missing, stdio).expect("exec of a missing command still forks");
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("wait exec");
    assert_eq!(status, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 127));
    let mut s = String::new();
    err.read_to_string(&mut s).expect("read");
    assert!(s.contains("exec: \"nope\": executable file not found in $PATH"), "{s}");
    assert!(rt.delete(&c.id, false).is_err(), "a running container needs force");
    rt.kill(&c.id, libc::SIGKILL, false).expect("kill");
    assert_eq!(c.wait(), 137);
    assert_eq!(serde_json::to_value(rt.state(&c.id).expect("state")).expect("json")["status"], "stopped");
    rt.delete(&c.id, false).expect("delete");
    remove_test_cgroup_parents();
}

fn a_read_only_root_refuses_writes() {
    let (_state, rt) = state_dir();
    let mut b = Bundle::new(&["sh", "-c", "touch /x 2>/dev/null && echo wrote; echo y > /dev/shm/y && echo tmpfs-ok"]);
    b.config["root"]["readonly"] = serde_json::json!(true);
    let (code, out) = run(&rt, &b, "ro");
    assert_eq!((code, out.as_str()), (0, "tmpfs-ok\n"));
}

fn a_console_becomes_stdio_the_controlling_terminal_and_dev_console() {
    let (_state, rt) = state_dir();
    let b = Bundle::new(&["sh", "-c", "tty; stat -L -c %t:%T /dev/console /proc/self/fd/0; cat /proc/self/stat"]);
    let pty = nix::pty::openpty(None, None).expect("pty");
    let slave_rdev = nix::sys::stat::fstat(&pty.slave).expect("fstat").st_rdev;
    let mut c = create(&rt, &b, "console", Stdio::Console(pty.slave)).expect("create");
    rt.start(&c.id).expect("start");
    assert_eq!(c.wait(), 0);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // EIO once the container's side is closed.
    while let Ok(n) = nix::unistd::read(&pty.master, &mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out).replace('\r', "");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/dev/console", "{out}");
    let dev = format!("{:x}:{:x}", libc::major(slave_rdev), libc::minor(slave_rdev));
    assert_eq!(&lines[1..3], [dev.as_str(), dev.as_str()], "{out}");
    // Field 7 of stat is tty_nr: the pty is the controlling terminal.
    let stat = lines[3];
    let tty_nr: u64 = stat[stat.rfind(')').expect("stat") + 2..].split(' ').nth(4).and_then(|f| f.parse().ok()).expect("tty_nr");
    assert_eq!(tty_nr, slave_rdev, "{stat}");
}

fn a_container_can_join_another_ones_pid_namespace() {
    let (_state, rt) = state_dir();
    let a = Bundle::new(&["sleep", "100"]);
    let first = create(&rt, &a, "pid-a", Stdio::Inherit).expect("create a");
    rt.start(&first.id).expect("start a");
    let mut b = Bundle::new(&["sh", "-c", "echo $$; cat /proc/1/cmdline"]);
    let pid_ns = format!("/proc/{}/ns/pid", first.pid.expect("pid"));
    b.config["linux"]["namespaces"] = serde_json::json!([{"type": "pid", "path": pid_ns}, {"type": "mount"}, {"type": "uts"}]);
    let (code, out) = run(&rt, &b, "pid-b");
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], "1", "the second container is not pid 1: {out}");
    assert_eq!(lines[1].trim_end_matches('\0'), "sleep\u{0}100", "pid 1 is the first container's init: {out}");
    // This process's later children are back in its own pid namespace.
    let own = std::fs::read_link("/proc/self/ns/pid").expect("own ns");
    assert_eq!(std::fs::read_link("/proc/self/ns/pid_for_children").expect("children ns"), own);
}

fn main() {
    if !can_run() {
        eprintln!("skipping the container tests: they need root and /bin/busybox");
        println!("0 passed, 0 failed, 14 skipped");
        return;
    }
    let tests: &[(&str, fn())] = &[
        ("a_container_runs_as_pid_one_with_its_hostname_and_exit_code", a_container_runs_as_pid_one_with_its_hostname_and_exit_code),
        ("capabilities_seccomp_and_no_new_privs_are_in_force", capabilities_seccomp_and_no_new_privs_are_in_force),
        ("masked_and_read_only_paths_hide_and_protect_the_host", masked_and_read_only_paths_hide_and_protect_the_host),
        ("sysctls_of_the_containers_namespaces_are_written", sysctls_of_the_containers_namespaces_are_written),
        ("memory_and_pids_limits_land_in_the_containers_cgroup", memory_and_pids_limits_land_in_the_containers_cgroup),
        ("a_cgroup_namespace_is_rooted_at_the_containers_own_cgroup", a_cgroup_namespace_is_rooted_at_the_containers_own_cgroup),
        ("user_rlimits_umask_and_working_directory_are_applied", user_rlimits_umask_and_working_directory_are_applied),
        ("a_missing_executable_fails_at_create", a_missing_executable_fails_at_create),
        ("an_execve_failure_is_reported_by_start", an_execve_failure_is_reported_by_start),
        ("no_runtime_fd_leaks_into_the_container", no_runtime_fd_leaks_into_the_container),
        ("a_symlinked_mount_target_stays_inside_the_rootfs", a_symlinked_mount_target_stays_inside_the_rootfs),
        ("exec_joins_the_running_containers_namespaces_and_cgroup", exec_joins_the_running_containers_namespaces_and_cgroup),
        ("a_read_only_root_refuses_writes", a_read_only_root_refuses_writes),
        ("a_console_becomes_stdio_the_controlling_terminal_and_dev_console", a_console_becomes_stdio_the_controlling_terminal_and_dev_console),
        ("a_container_can_join_another_ones_pid_namespace", a_container_can_join_another_ones_pid_namespace),
    ];
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, t) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            skipped += 1;
            continue;
        }
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
    // Also after a failed test, whose guard removed its container but not the parent.
    remove_test_cgroup_parents();
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}
