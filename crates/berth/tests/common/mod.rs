//! Test harness: a real `berth engine` in a temporary root, driven through the real CLIs, torn down
//! (containers, shims, mounts, cgroups, files) even when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Root tests skip (with a message) where they cannot run.
pub fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return false;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!("skipping: needs busybox-static (/bin/busybox)");
        return false;
    }
    true
}

/// The busybox rootfs tarball, built once per test binary.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("berth-bb-{}.tar", std::process::id()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/busybox-rootfs");
        let st = Command::new(script).arg(&path).status().expect("running scripts/busybox-rootfs");
        assert!(st.success(), "scripts/busybox-rootfs failed");
        path
    })
}

pub struct TestEngine {
    pub root: PathBuf,
    pub socket: PathBuf,
    /// This engine's own bridge and subnet, so engines of parallel tests never share one.
    pub bridge: String,
    pub subnet: String,
    child: Option<Child>,
    /// Extra environment for the engine process.
    env: Vec<(String, String)>,
    _tmp: tempfile::TempDir,
}

impl TestEngine {
    /// Starts an engine in a fresh root and waits until its API answers.
    pub fn start() -> TestEngine {
        TestEngine::start_with_env(&[])
    }

    /// An engine with extra environment variables (tuning knobs tests turn).
    pub fn start_with_env(env: &[(&str, &str)]) -> TestEngine {
        let tmp = tempfile::Builder::new().prefix("berth-e2e-").tempdir().expect("tempdir");
        let root = tmp.path().join("root");
        let socket = tmp.path().join("berth.sock");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let bridge = format!("bt{}x{n}", pid % 100_000);
        let subnet = format!("10.{}.{}.0/24", 100 + pid % 100, n % 250);
        let mut e = TestEngine { root, socket, bridge, subnet, child: None, env, _tmp: tmp };
        e.spawn();
        e
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self._tmp.path().join("engine.log")).expect("engine log");
        let child = Command::new(BERTH)
            .args(["engine", "--root"])
            .arg(&self.root)
            .arg("--socket")
            .arg(&self.socket)
            .args(["--bridge", &self.bridge, "--bip", &self.subnet])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning berth engine");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("engine did not come up; log:\n{}", self.engine_log());
    }

    pub fn engine_log(&self) -> String {
        std::fs::read_to_string(self._tmp.path().join("engine.log")).unwrap_or_default()
    }

    /// SIGKILLs the engine (containers must survive) and starts a new one on the same root.
    /// kill -9 of the engine, `between` while it is down, then a new engine on the same root.
    pub fn kill_and_restart_with(&mut self, between: impl FnOnce()) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        between();
        self.spawn();
    }

    /// SIGTERM (a clean shutdown), `between` while it is down, then a new engine on the same root.
    pub fn stop_and_restart_with(&mut self, between: impl FnOnce()) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
        between();
        self.spawn();
    }

    pub fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs the berth CLI against this engine.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(BERTH).arg("-H").arg(self.host()).args(args).stdin(Stdio::null()).output().expect("running berth")
    }

    /// Runs the berth CLI and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed with {:?}\nstdout: {}\nstderr: {}\nengine log:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.engine_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports the busybox base image as `name`.
    pub fn import_busybox(&self, name: &str) -> String {
        let tar = busybox_tar().to_str().expect("utf8 path").to_string();
        self.ok(&["import", &tar, name]).trim().to_string()
    }

    /// Host veths of this engine's containers (`vb…` on its bridge).
    pub fn veths(&self) -> Vec<String> {
        let out = Command::new("ip").args(["-o", "link", "show", "master", &self.bridge]).output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
                .collect()
        })
        .unwrap_or_default()
    }

    /// A subnet for the `k`th user network of a test, unique among this process's engines.
    pub fn user_subnet(&self, k: u32) -> String {
        let n: u32 = self.bridge.rsplit('x').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        format!("10.{}.{}.0/24", 200 + std::process::id() % 50, (n * 5 + k) % 250)
    }

    /// Bridge devices of the user networks in this engine's root.
    pub fn user_bridges(&self) -> Vec<String> {
        let Ok(d) = std::fs::read_dir(self.root.join("networks")) else { return Vec::new() };
        d.flatten()
            .filter_map(|e| {
                let v: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                let bridge = v["bridge"].as_str()?.to_string();
                (!v["predefined"].as_bool().unwrap_or(true)).then_some(bridge)
            })
            .collect()
    }

    /// Every mount below the engine root.
    pub fn mounts(&self) -> Vec<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.display().to_string();
        info.lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
            .filter(|m| m.starts_with(&root))
            .collect()
    }

    fn teardown(&mut self) {
        // Force-remove what the test left, through the API, so shims and cgroups go the normal way.
        if self.child.is_some() {
            let ids = self.berth(&["ps", "-aq", "--no-trunc"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.berth(&["rm", "-f", id]);
            }
            let _ = self.berth(&["network", "prune", "-f"]);
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // The engine's bridges (the default and user networks'), its veths and its nftables table.
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).stderr(Stdio::null()).status();
        for bridge in self.user_bridges() {
            let _ = Command::new("ip").args(["link", "del", &bridge]).stderr(Stdio::null()).status();
        }
        let _ = Command::new("nft").args(["delete", "table", "ip", &format!("berth_{}", self.bridge)]).stderr(Stdio::null()).status();
        for veth in self.veths() {
            let _ = Command::new("ip").args(["link", "del", &veth]).stderr(Stdio::null()).status();
        }
        // Whatever is still mounted below our root (a failed test), detached deepest first.
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        self.teardown();
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `f` until it holds or the deadline passes.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// Cgroup directories berth created for a container id, in any hierarchy.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path().join("berth").join(id))
        .chain(std::iter::once(PathBuf::from("/sys/fs/cgroup/berth").join(id)))
        .filter(|p| p.exists())
        .collect()
}

/// Processes whose command line mentions `needle` (a container id: its shim carries it).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

impl TestEngine {
    /// Runs the berth CLI with `input` on its stdin.
    pub fn berth_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new(BERTH)
            .arg("-H")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running berth");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        child.wait_with_output().expect("berth output")
    }
}
