//! Root tests against this host's real cgroup hierarchies (v1, v2 or hybrid). Each test works in
//! its own top-level cgroup and removes it, and kills its processes, even when it fails.

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use cgroups::{Cgroup, Hierarchy};
use oci_spec::runtime::LinuxResources;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A unique top-level cgroup, killed and removed on drop, with the children it spawned.
struct Scratch {
    top: Cgroup,
    children: Vec<Child>,
}

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("/berth-cgtest-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Scratch { top: Cgroup::open(&name).expect("open"), children: Vec::new() }
    }

    fn cgroup(&self, sub: &str) -> Cgroup {
        Cgroup::open(&format!("{}/{sub}", self.top.path())).expect("open")
    }

    fn sleeper(&mut self) -> i32 {
        let child = Command::new("sleep").arg("300").spawn().expect("spawn sleep");
        let pid = child.id() as i32;
        self.children.push(child);
        pid
    }

    /// A shell that waits for a line on stdin, then does some work (so that v1, which does not
    /// move charges with a task, charges it here) and sleeps.
    fn worker(&mut self) -> i32 {
        let script = "read go; head -c 4000000 /dev/zero | tr '\\0' a | wc -c >/dev/null; exec sleep 300";
        let child = Command::new("sh").args(["-c", script]).stdin(std::process::Stdio::piped()).spawn().expect("spawn sh");
        let pid = child.id() as i32;
        self.children.push(child);
        pid
    }

    fn start(&mut self, pid: i32) {
        use std::io::Write;
        let child = self.children.iter_mut().find(|c| c.id() as i32 == pid).expect("our child");
        child.stdin.as_mut().expect("stdin").write_all(b"go\n").expect("start worker");
    }

    fn wait_signal(&mut self, pid: i32) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        let child = self.children.iter_mut().find(|c| c.id() as i32 == pid).expect("our child");
        child.wait().expect("wait").signal()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.top.destroy() {
            eprintln!("cleanup of {}: {e}", self.top.path());
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("reading {}/{file}: {e}", dir.display())).trim().to_string()
}

fn resources(v: serde_json::Value) -> LinuxResources {
    serde_json::from_value(v).expect("resources")
}

#[test]
fn limits_are_written_read_back_and_a_process_is_placed_killed_and_removed() {
    if !is_root() {
        eprintln!("skipping: cgroup tests need root");
        return;
    }
    let mut s = Scratch::new();
    let cg = s.cgroup("box");
    cg.create().expect("create");
    let v2 = cg.hierarchy() == Hierarchy::V2;
    let swap_ok = if v2 { cg.v2_path().is_some_and(|d| d.join("memory.swap.max").exists()) } else { cg.dir("memory").is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists()) };
    let mut r = serde_json::json!({
        "memory": {"limit": 67108864, "reservation": 33554432},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 12},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
    });
    if swap_ok {
        r["memory"]["swap"] = serde_json::json!(134217728);
    }
    cg.apply(&resources(r)).expect("apply");

    if v2 {
        let d = cg.dir("memory").expect("v2 dir");
        assert_eq!(read(d, "memory.max"), "67108864");
        assert_eq!(read(d, "memory.low"), "33554432");
        assert_eq!(read(d, "cpu.weight"), "20");
        assert_eq!(read(d, "cpu.max"), "50000 100000");
        assert_eq!(read(d, "cpuset.cpus"), "0");
        assert_eq!(read(d, "pids.max"), "12");
        if swap_ok {
            assert_eq!(read(d, "memory.swap.max"), "67108864");
        }
    } else {
        let mem = cg.dir("memory").expect("memory");
        assert_eq!(read(mem, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(mem, "memory.soft_limit_in_bytes"), "33554432");
        if swap_ok {
            assert_eq!(read(mem, "memory.memsw.limit_in_bytes"), "134217728");
        }
        let cpu = cg.dir("cpu").expect("cpu");
        assert_eq!(read(cpu, "cpu.shares"), "512");
        assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(cg.dir("cpuset").expect("cpuset"), "cpuset.cpus"), "0");
        assert_eq!(read(cg.dir("pids").expect("pids"), "pids.max"), "12");
        assert_eq!(read(cg.dir("devices").expect("devices"), "devices.list"), "c 1:3 rwm");
    }

    let pid = s.worker();
    cg.add_process(pid).expect("add");
    assert_eq!(cg.pids().expect("pids"), vec![pid]);
    // The process is in the cgroup in every hierarchy: limits and name=systemd and unified alike.
    let rel = cg.path().trim_start_matches('/');
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    for line in membership.lines() {
        assert!(line.ends_with(rel), "{line} is not {rel}");
    }
    if cg.hierarchy() == Hierarchy::Hybrid {
        let unified = cg.v2_path().expect("unified");
        assert_eq!(read(unified, "cgroup.procs"), pid.to_string());
        assert!(cg.v2_dir().is_none(), "no CLONE_INTO_CGROUP on hybrid");
    }
    s.start(pid);

    // The worker's pipeline runs by now or soon; its charges and CPU time show up in the stats.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let stats = loop {
        let st = cg.stats().expect("stats");
        if (st.memory.usage > 0 && st.cpu.usage_total_ns > 0) || std::time::Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(stats.memory.usage > 0 && stats.cpu.usage_total_ns > 0, "{stats:?}");
    assert!(stats.pids.current >= 1);
    assert_eq!(stats.pids.limit, Some(12));
    assert_eq!(stats.memory.limit, Some(67108864));
    serde_json::to_string(&stats).expect("stats serialise");

    cg.kill_all(libc::SIGKILL).expect("kill");
    assert_eq!(s.wait_signal(pid), Some(libc::SIGKILL));
    cg.destroy().expect("destroy");
    for (_, dir) in cg.dirs() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    cg.destroy().expect("destroy twice");
}

#[test]
fn kill_all_with_another_signal_freezes_signals_and_thaws() {
    if !is_root() {
        eprintln!("skipping: cgroup tests need root");
        return;
    }
    let mut s = Scratch::new();
    let cg = s.cgroup("term");
    cg.create().expect("create");
    let pids: Vec<i32> = (0..3).map(|_| s.sleeper()).collect();
    for pid in &pids {
        cg.add_process(*pid).expect("add");
    }
    cg.freeze().expect("freeze");
    if let Some(f) = cg.dir("freezer").filter(|_| cg.hierarchy() != Hierarchy::V2) {
        assert_eq!(read(f, "freezer.state"), "FROZEN");
    }
    cg.thaw().expect("thaw");
    cg.kill_all(libc::SIGTERM).expect("kill");
    for pid in pids {
        assert_eq!(s.wait_signal(pid), Some(libc::SIGTERM));
    }
    if let Some(f) = cg.dir("freezer").filter(|_| cg.hierarchy() != Hierarchy::V2) {
        assert_eq!(read(f, "freezer.state"), "THAWED");
    }
}

#[test]
fn a_nested_cgroup_takes_tasks_and_its_ancestor_removes_it() {
    if !is_root() {
        eprintln!("skipping: cgroup tests need root");
        return;
    }
    let mut s = Scratch::new();
    let deep = s.cgroup("a/b/c");
    deep.create().expect("create");
    if let Some(d) = deep.dir("cpuset").filter(|_| deep.hierarchy() != Hierarchy::V2) {
        assert!(!read(d, "cpuset.cpus").is_empty(), "cpuset.cpus was copied down");
        assert!(!read(d, "cpuset.mems").is_empty(), "cpuset.mems was copied down");
    }
    let pid = s.sleeper();
    deep.add_process(pid).expect("an empty cpuset would refuse the task");
    deep.kill_all(libc::SIGKILL).expect("kill");
    assert_eq!(s.wait_signal(pid), Some(libc::SIGKILL));
    let a = s.cgroup("a");
    a.destroy().expect("destroy the subtree");
    for (_, dir) in deep.dirs() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn a_refused_value_is_an_error_naming_the_file_and_the_value() {
    if !is_root() {
        eprintln!("skipping: cgroup tests need root");
        return;
    }
    let s = Scratch::new();
    let cg = s.cgroup("bad");
    cg.create().expect("create");
    let err = cg.apply(&resources(serde_json::json!({"cpu": {"cpus": "4095"}}))).expect_err("no such cpu").to_string();
    assert!(err.contains("writing \"4095\" to ") && err.contains("cpuset.cpus"), "{err}");
}

#[test]
fn destroying_a_cgroup_that_was_never_created_succeeds() {
    if !is_root() {
        eprintln!("skipping: cgroup tests need root");
        return;
    }
    let s = Scratch::new();
    s.cgroup("never").destroy().expect("idempotent");
    assert_eq!(s.cgroup("never").pids().expect("pids"), Vec::<i32>::new());
}

#[test]
fn a_forked_child_joins_through_a_prepared_join() {
    if !is_root() {
        eprintln!("skipping: cgroup tests need root");
        return;
    }
    let s = Scratch::new();
    let cg = s.cgroup("joined");
    cg.create().expect("create");
    let join = cg.prepare_join().expect("prepare");
    // SAFETY: the child only writes to fds it inherited, then parks in pause() until killed.
    let pid = match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => unsafe {
            let code = if join.join_self().is_ok() { 0 } else { 1 };
            if code == 0 {
                libc::pause();
            }
            libc::_exit(code)
        },
        nix::unistd::ForkResult::Parent { child } => child.as_raw(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cg.pids().expect("pids").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pids = cg.pids().expect("pids");
    cg.kill_all(libc::SIGKILL).expect("kill");
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).expect("wait");
    assert_eq!(pids, vec![pid], "child status {status:?}");
    assert!(matches!(status, nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)), "{status:?}");
}
