//! The real shim around real busybox containers (root only).
//!
//! No libtest harness: this binary is also the shim. `shim::spawn` runs `<this binary> shim …`, and
//! `main` hands such invocations to `shim::main`, which must start single-threaded (the runtime
//! clones it). The tests themselves run one after another.
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shim::{Client, ShimConfig};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("shim") => return shim::main(&args[2..]),
        Some("engine") => return fake_engine(&args[2..]),
        _ => {}
    }
    if !nix::unistd::geteuid().is_root() || !Path::new("/bin/busybox").exists() {
        eprintln!("skipping shim container tests: they need root and /bin/busybox");
        return ExitCode::SUCCESS;
    }
    let filter = args.get(1).and_then(|a| a.to_str()).filter(|a| !a.starts_with('-')).map(str::to_string);
    let tests: &[(&str, fn())] = &[
        ("a_container_is_reported_logged_and_its_exit_recorded", a_container_is_reported_logged_and_its_exit_recorded),
        ("the_container_gets_clean_signal_state", the_container_gets_clean_signal_state),
        ("a_missing_executable_is_reported_with_127_and_leaves_nothing", a_missing_executable_is_reported_with_127_and_leaves_nothing),
        ("a_file_that_is_not_executable_is_reported_with_126", a_file_that_is_not_executable_is_reported_with_126),
        ("sigterm_through_kill_gives_143_to_every_waiter", sigterm_through_kill_gives_143_to_every_waiter),
        ("stdin_is_handed_out_once_and_echoed_back_by_cat", stdin_is_handed_out_once_and_echoed_back_by_cat),
        ("an_exec_returns_its_output_and_exit_code", an_exec_returns_its_output_and_exit_code),
        ("a_tty_container_logs_everything_as_stdout_and_resizes", a_tty_container_logs_everything_as_stdout_and_resizes),
        ("the_shim_survives_the_death_of_its_engine", the_shim_survives_the_death_of_its_engine),
        ("all_output_is_logged_in_order_when_the_container_exits_at_once", all_output_is_logged_in_order_when_the_container_exits_at_once),
        ("a_leftover_process_holding_the_output_does_not_keep_the_shim", a_leftover_process_holding_the_output_does_not_keep_the_shim),
        ("an_oom_kill_is_recorded", an_oom_kill_is_recorded),
    ];
    let mut failed = Vec::new();
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        let ok = std::panic::catch_unwind(test).is_ok();
        eprintln!("test {name} ... {} ({} ms)", if ok { "ok" } else { "FAILED" }, started.elapsed().as_millis());
        if !ok {
            failed.push(*name);
        }
    }
    remove_cgroup_parent();
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("failed: {failed:?}");
        ExitCode::FAILURE
    }
}

/// `<bin> engine <state-dir> <bundle> <runtime-root> <log> <id>`: spawns a shim, prints its
/// report, and waits to be killed (an engine that dies under its containers).
fn fake_engine(args: &[std::ffi::OsString]) -> ExitCode {
    let [state_dir, bundle, runtime_root, log, id] = args else { return ExitCode::from(2) };
    let cfg = ShimConfig {
        id: id.to_string_lossy().into_owned(),
        bundle: bundle.into(),
        runtime_root: runtime_root.into(),
        state_dir: state_dir.into(),
        log: log.into(),
        tty: false,
        stdin: false,
        seccomp_cache: None,
    };
    let Ok(exe) = std::env::current_exe() else { return ExitCode::from(3) };
    match shim::spawn(&exe, &cfg) {
        Ok(s) => println!("{}", s.pid),
        Err(e) => println!("error {e}"),
    }
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("shim-{name}-{}-{nanos}", std::process::id())
}

/// A busybox bundle like `runc spec` makes, a runtime root and a shim state dir, all temporary;
/// the container is killed however the test ends.
struct Fixture {
    dir: tempfile::TempDir,
    cfg: ShimConfig,
}

impl Fixture {
    fn new(name: &str, args: &[&str]) -> Fixture {
        Self::with(name, args, |_| {})
    }

    fn with(name: &str, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let bundle = dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for a in ["sh", "echo", "cat", "sleep", "true", "grep", "stty", "kill"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("link");
        }
        let caps = runtime::caps::docker_default();
        let mut config = serde_json::json!({
            "ociVersion": "1.2.0",
            "process": {
                "terminal": false, "user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
                "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "hostname": "shim-test",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}
            ],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
            }
        });
        edit(&mut config);
        std::fs::write(bundle.join("config.json"), config.to_string()).expect("config");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).expect("state dir");
        let cfg = ShimConfig {
            id: unique(name),
            bundle,
            runtime_root: dir.path().join("runtime"),
            state_dir,
            log: dir.path().join("container.log"),
            tty: false,
            stdin: false,
            seccomp_cache: None,
        };
        Fixture { dir, cfg }
    }

    fn start(&self) -> i32 {
        let exe = std::env::current_exe().expect("exe");
        shim::spawn(&exe, &self.cfg).unwrap_or_else(|e| panic!("shim did not start the container: {e} ({})", self.shim_log())).pid
    }

    fn client(&self) -> Client {
        Client::new(&self.cfg.state_dir)
    }

    fn shim_log(&self) -> String {
        std::fs::read_to_string(self.cfg.state_dir.join("shim.log")).unwrap_or_default()
    }

    /// The container log as (stream, text) entries.
    fn log(&self) -> Vec<(String, String)> {
        let data = std::fs::read_to_string(&self.cfg.log).unwrap_or_default();
        data.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}"));
                assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
                (v["stream"].as_str().expect("stream").to_string(), v["log"].as_str().expect("log").to_string())
            })
            .collect()
    }

    /// Everything the shim leaves behind is gone: its socket, the runtime's state, its processes.
    fn assert_nothing_remains(&self, container_pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let socket = self.cfg.state_dir.join("shim.sock").exists();
            let state = self.cfg.runtime_root.join(&self.cfg.id).exists();
            let procs = processes_mentioning(&self.cfg.state_dir);
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(container_pid), None).is_ok();
            if !socket && !state && procs.is_empty() && !alive {
                return;
            }
            assert!(Instant::now() < deadline, "left behind: socket {socket}, runtime state {state}, shim processes {procs:?}, container alive {alive}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.cfg.state_dir.join("shim.sock").exists() {
            let _ = self.client().kill(libc::SIGKILL, true);
            let _ = self.client().wait();
        }
        for pid in processes_mentioning(&self.cfg.state_dir) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = runtime::Runtime::new(&self.cfg.runtime_root).delete(&self.cfg.id, true);
        let _ = &self.dir;
    }
}

/// Pids whose command line names `path` (the shim of a fixture, and any fake engine).
fn processes_mentioning(path: &Path) -> Vec<i32> {
    let needle = path.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != std::process::id() as i32)
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

fn process(args: &[&str]) -> oci_spec::runtime::Process {
    serde_json::from_value(serde_json::json!({"args": args, "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}})).expect("process")
}

fn a_container_is_reported_logged_and_its_exit_recorded() {
    let f = Fixture::new("basic", &["sh", "-c", "echo hello; echo err >&2; printf 'no newline'; exit 3"]);
    let pid = f.start();
    assert!(pid > 0);
    let status = f.client().wait().expect("wait");
    assert_eq!((status.exit_code, status.signal, status.oom_killed), (3, None, false), "{}", f.shim_log());
    assert!(chrono::DateTime::parse_from_rfc3339(&status.finished_at).is_ok(), "{}", status.finished_at);
    assert_eq!(shim::read_exit(&f.cfg.state_dir), Some(status));
    let log = f.log();
    assert!(log.contains(&("stdout".into(), "hello\n".into())), "{log:?}");
    assert!(log.contains(&("stderr".into(), "err\n".into())), "{log:?}");
    assert!(log.contains(&("stdout".into(), "no newline".into())), "a partial line is flushed at EOF: {log:?}");
    assert_eq!(log.len(), 3, "{log:?}");
    f.assert_nothing_remains(pid);
    assert!(matches!(f.client().state(), Err(shim::Error::Connect(..))));
}

fn the_container_gets_clean_signal_state() {
    let f = Fixture::new("signals", &["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status; cat /proc/self/oom_score_adj"]);
    f.start();
    assert_eq!(f.client().wait().expect("wait").exit_code, 0);
    let log: String = f.log().into_iter().map(|(_, l)| l).collect();
    let field = |name: &str| {
        let line = log.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in {log}"));
        u64::from_str_radix(line.split_whitespace().nth(1).expect("mask"), 16).expect("hex")
    };
    assert_eq!(field("SigBlk:"), 0, "no blocked signals leak from the shim: {log}");
    assert_eq!(field("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE is not ignored: {log}");
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").expect("own score");
    assert_eq!(log.lines().last().map(str::trim), Some(own.trim()), "the container does not inherit the shim's -999");
}

fn a_missing_executable_is_reported_with_127_and_leaves_nothing() {
    let f = Fixture::new("missing", &["nope"]);
    let exe = std::env::current_exe().expect("exe");
    let err = shim::spawn(&exe, &f.cfg).expect_err("must fail");
    assert_eq!(err.exit_code, 127, "{err}");
    assert!(err.message.contains("executable file not found"), "{err}");
    assert!(!f.cfg.state_dir.join("shim.sock").exists());
    assert!(!f.cfg.runtime_root.join(&f.cfg.id).exists());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&f.cfg.state_dir).is_empty() {
        assert!(Instant::now() < deadline, "the shim outlived its failure");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn a_file_that_is_not_executable_is_reported_with_126() {
    let f = Fixture::new("noexec", &["/bin/data"]);
    std::fs::write(f.cfg.bundle.join("rootfs/bin/data"), "not a program").expect("write");
    let exe = std::env::current_exe().expect("exe");
    let err = shim::spawn(&exe, &f.cfg).expect_err("must fail");
    assert_eq!(err.exit_code, 126, "{err}");
    assert!(err.message.contains("permission denied"), "{err}");
    assert!(!f.cfg.state_dir.join("shim.sock").exists());
}

fn sigterm_through_kill_gives_143_to_every_waiter() {
    // Without a pid namespace `sleep` is no namespace init, so SIGTERM's default action applies.
    let f = Fixture::with("term", &["sleep", "100"], |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    });
    let pid = f.start();
    let state = f.client().state().expect("state");
    assert_eq!((state.pid, state.status.as_str()), (pid, "running"));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let c = f.client();
            std::thread::spawn(move || c.wait())
        })
        .collect();
    // A waiter that gives up must not disturb the others.
    drop(std::os::unix::net::UnixStream::connect(f.cfg.state_dir.join("shim.sock")).expect("connect"));
    std::thread::sleep(Duration::from_millis(100));
    f.client().kill(libc::SIGTERM, false).expect("kill");
    for w in waiters {
        let s = w.join().expect("join").expect("wait");
        assert_eq!((s.exit_code, s.signal), (143, Some(libc::SIGTERM)));
    }
    f.assert_nothing_remains(pid);
}

fn stdin_is_handed_out_once_and_echoed_back_by_cat() {
    let mut f = Fixture::new("stdin", &["cat"]);
    f.cfg.stdin = true;
    let pid = f.start();
    let stdin = f.client().take_stdin().expect("stdin");
    let again = f.client().take_stdin().expect_err("only once");
    assert!(again.to_string().contains("already taken"), "{again}");
    let mut w = std::fs::File::from(stdin);
    w.write_all(b"ping\npong").expect("write");
    drop(w);
    let status = f.client().wait().expect("wait");
    assert_eq!(status.exit_code, 0, "cat ends at EOF");
    assert_eq!(f.log(), vec![("stdout".to_string(), "ping\n".to_string()), ("stdout".to_string(), "pong".to_string())]);
    f.assert_nothing_remains(pid);
}

fn an_exec_returns_its_output_and_exit_code() {
    let f = Fixture::new("exec", &["sleep", "100"]);
    let pid = f.start();
    let (out_r, out_w) = pipe();
    let stdin: OwnedFd = std::fs::File::open("/dev/null").expect("null").into();
    let stderr = out_w.try_clone().expect("dup");
    let h = f.client().exec(&process(&["echo", "hi"]), false, vec![stdin, out_w, stderr]).expect("exec");
    assert!(h.pid > 0);
    assert_eq!(h.wait().expect("exit"), 0);
    let mut out = String::new();
    std::fs::File::from(out_r).read_to_string(&mut out).expect("read");
    assert_eq!(out, "hi\n", "data goes straight to the client's pipe");

    let null = || -> OwnedFd { std::fs::File::open("/dev/null").expect("null").into() };
    let h = f.client().exec(&process(&["sh", "-c", "exit 7"]), false, vec![null(), null(), null()]).expect("exec");
    assert_eq!(h.wait().expect("exit"), 7);
    // A client that leaves does not stop its exec, nor the shim.
    drop(f.client().exec(&process(&["sleep", "0.2"]), false, vec![null(), null(), null()]).expect("exec"));
    // The runtime finds a missing executable before it clones, or the exec exits 127.
    match f.client().exec(&process(&["nope"]), false, vec![null(), null(), null()]) {
        Err(e) => assert!(e.to_string().contains("not found"), "{e}"),
        Ok(h) => assert_eq!(h.wait().expect("exit"), 127),
    }
    let err = f.client().exec(&process(&["true"]), false, vec![null()]).expect_err("one fd");
    assert!(err.to_string().contains("three fds"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(f.client().state().expect("state").status, "running");
    assert!(f.log().is_empty(), "exec output is not the container's log");

    f.client().kill(libc::SIGKILL, false).expect("kill");
    assert_eq!(f.client().wait().expect("wait").exit_code, 137);
    f.assert_nothing_remains(pid);
}

fn a_tty_container_logs_everything_as_stdout_and_resizes() {
    let mut f = Fixture::with("tty", &["sh", "-c", "read x; stty size; echo err >&2; exit 5"], |c| c["process"]["terminal"] = true.into());
    f.cfg.tty = true;
    f.cfg.stdin = true;
    let pid = f.start();
    f.client().resize(100, 30).expect("resize");
    let master = f.client().take_stdin().expect("master");
    let _second = f.client().take_stdin().expect("a tty's master can be taken again");
    std::fs::File::from(master).write_all(b"go\n").expect("write");
    assert_eq!(f.client().wait().expect("wait").exit_code, 5);
    let log = f.log();
    assert!(log.iter().all(|(s, _)| s == "stdout"), "{log:?}");
    let text: String = log.iter().map(|(_, l)| l.as_str()).collect();
    assert!(text.contains("30 100"), "{text:?}");
    assert!(text.contains("err"), "{text:?}");
    f.assert_nothing_remains(pid);
}

fn the_shim_survives_the_death_of_its_engine() {
    let f = Fixture::new("orphan", &["sleep", "100"]);
    let exe = std::env::current_exe().expect("exe");
    let mut engine = std::process::Command::new(exe)
        .arg("engine")
        .args([&f.cfg.state_dir, &f.cfg.bundle, &f.cfg.runtime_root, &f.cfg.log])
        .arg(&f.cfg.id)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("engine");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(engine.stdout.take().expect("stdout")), &mut line).expect("read");
    let pid: i32 = line.trim().parse().unwrap_or_else(|_| panic!("engine said {line:?}"));
    engine.kill().expect("kill the engine");
    engine.wait().expect("reap the engine");
    let state = f.client().state().expect("the shim still answers");
    assert_eq!((state.pid, state.status.as_str()), (pid, "running"));
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(), "the container still runs");
    f.client().kill(libc::SIGKILL, true).expect("kill");
    assert_eq!(f.client().wait().expect("wait").exit_code, 137);
    f.assert_nothing_remains(pid);
}

fn all_output_is_logged_in_order_when_the_container_exits_at_once() {
    let script = "i=0; while [ $i -lt 3000 ]; do echo line$i; echo err$i >&2; i=$((i+1)); done";
    let f = Fixture::new("bulk", &["sh", "-c", script]);
    let pid = f.start();
    assert_eq!(f.client().wait().expect("wait").exit_code, 0);
    let log = f.log();
    let of = |stream: &str| -> Vec<String> { log.iter().filter(|(s, _)| s == stream).map(|(_, l)| l.clone()).collect() };
    let want = |prefix: &str| -> Vec<String> { (0..3000).map(|i| format!("{prefix}{i}\n")).collect() };
    assert_eq!(of("stdout"), want("line"));
    assert_eq!(of("stderr"), want("err"));
    f.assert_nothing_remains(pid);
}

/// The cgroup under which this run's containers live (the runtime removes each container's own).
fn cgroup_parent() -> String {
    format!("berth-shim-test-{}", std::process::id())
}

fn remove_cgroup_parent() {
    let mut roots = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    if let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(dir.filter_map(|e| Some(e.ok()?.path())));
    }
    for root in roots {
        let _ = std::fs::remove_dir(root.join(cgroup_parent()));
    }
}

/// A bundle without a pid namespace (so processes outlive the init) in a cgroup of its own (so a
/// forced delete still finds them).
fn in_own_cgroup(name: &str, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) -> Fixture {
    let cgroup = format!("/{}/{}", cgroup_parent(), unique(name));
    Fixture::with(name, args, |c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
        c["linux"]["cgroupsPath"] = cgroup.into();
        edit(c);
    })
}

fn a_leftover_process_holding_the_output_does_not_keep_the_shim() {
    let f = in_own_cgroup("leftover", &["sh", "-c", "sleep 100 & echo $!; exit 4"], |_| {});
    let pid = f.start();
    let started = Instant::now();
    let status = f.client().wait().expect("wait");
    assert_eq!(status.exit_code, 4);
    assert!(started.elapsed() < Duration::from_secs(5), "the drain is bounded: {:?}", started.elapsed());
    let log = f.log();
    let sleeper: i32 = log.first().and_then(|(_, l)| l.trim().parse().ok()).unwrap_or_else(|| panic!("{log:?}"));
    f.assert_nothing_remains(pid);
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleeper), None).is_err(), "the leftover sleep was killed and reaped");
}

fn an_oom_kill_is_recorded() {
    let limit = 16 * 1024 * 1024;
    let f = in_own_cgroup("oom", &["sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"], |c| {
        c["linux"]["resources"] = serde_json::json!({"memory": {"limit": limit, "swap": limit}});
    });
    let pid = f.start();
    let status = f.client().wait().expect("wait");
    assert_eq!((status.exit_code, status.oom_killed), (137, true), "{status:?}");
    f.assert_nothing_remains(pid);
}
