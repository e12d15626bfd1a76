//! Linux control groups on v1, v2 and hybrid hosts (v1 controllers plus a cgroup2 mount at
//! `/sys/fs/cgroup/unified`, where crun refuses to run): create a cgroup, apply OCI resource limits,
//! place processes, list, signal and remove them. Knows nothing of containers.
//!
//! Files are written directly (no shelling out); every error names the file and the value.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {0} still has processes after removal was requested")]
    Busy(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    V1,
    V2,
    Hybrid,
}

const ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup layout this host has.
pub fn detect() -> Result<Hierarchy, Error> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        return Ok(Hierarchy::V2);
    }
    let mounts = v1_mounts()?;
    if mounts.iter().any(|(_, fstype, _)| fstype == "cgroup2") {
        Ok(Hierarchy::Hybrid)
    } else {
        Ok(Hierarchy::V1)
    }
}

/// (mount point, fs type, super options) of every cgroup mount under /sys/fs/cgroup.
fn v1_mounts() -> Result<Vec<(PathBuf, String, String)>, Error> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|source| Error::Io { context: "reading /proc/self/mountinfo".into(), source })?;
    Ok(parse_mountinfo(&info))
}

fn parse_mountinfo(info: &str) -> Vec<(PathBuf, String, String)> {
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mount_point = pre.split_whitespace().nth(4)?;
            let mut post = post.split_whitespace();
            let fstype = post.next()?;
            let _source = post.next()?;
            let opts = post.next().unwrap_or("");
            (fstype.starts_with("cgroup") && mount_point.starts_with(ROOT))
                .then(|| (PathBuf::from(mount_point), fstype.to_string(), opts.to_string()))
        })
        .collect()
}

/// One cgroup, at the same relative path in every hierarchy used.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: String,
    hierarchy: Hierarchy,
    /// (controller names, directory) per hierarchy; v2 has one entry with no names.
    dirs: Vec<(Vec<String>, PathBuf)>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub memory_usage: u64,
    pub memory_limit: u64,
    pub pids_current: u64,
    pub cpu_usage_ns: u64,
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p).ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|source| Error::Write { path: path.to_path_buf(), value: value.to_string(), source })
}

/// runc's and crun's conversion of v1 cpu shares (2..262144) to v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262144) - 2) * 9999 / 262142
}

impl Cgroup {
    /// `path` is the OCI cgroupsPath ("/berth/<id>"); no side effects.
    pub fn open(path: &str) -> Result<Cgroup, Error> {
        let hierarchy = detect()?;
        let rel = path.trim_start_matches('/');
        let dirs = match hierarchy {
            Hierarchy::V2 => vec![(Vec::new(), Path::new(ROOT).join(rel))],
            _ => v1_mounts()?
                .into_iter()
                .map(|(mp, fstype, opts)| {
                    let names = if fstype == "cgroup2" {
                        Vec::new()
                    } else {
                        opts.split(',')
                            .filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec" | "clone_children"))
                            .map(String::from)
                            .collect()
                    };
                    (names, mp.join(rel))
                })
                .collect(),
        };
        Ok(Cgroup { path: path.to_string(), hierarchy, dirs })
    }

    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// The directory of a v1 controller (or the v2 directory).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(names, _)| if self.hierarchy == Hierarchy::V2 { true } else { names.iter().any(|n| n == controller) })
            .map(|(_, d)| d.as_path())
    }

    /// Every directory this cgroup spans, with the controllers of each (empty for cgroup2).
    pub fn dirs(&self) -> impl Iterator<Item = (&[String], &Path)> {
        self.dirs.iter().map(|(n, d)| (n.as_slice(), d.as_path()))
    }

    pub fn create(&self) -> Result<(), Error> {
        for (names, dir) in &self.dirs {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { context: format!("creating {}", dir.display()), source })?;
            if names.iter().any(|n| n == "cpuset") {
                self.inherit_cpuset(dir)?;
            }
        }
        if self.hierarchy == Hierarchy::V2 {
            self.enable_v2_controllers()?;
        }
        Ok(())
    }

    /// v1 cpuset refuses tasks until cpus and mems are set: copy them down from the nearest parent.
    fn inherit_cpuset(&self, dir: &Path) -> Result<(), Error> {
        let mut chain: Vec<&Path> = dir.ancestors().take_while(|p| p.starts_with(ROOT)).collect();
        chain.reverse();
        for pair in chain.windows(2) {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let here = pair[1].join(file);
                if std::fs::read_to_string(&here).map(|s| s.trim().is_empty()).unwrap_or(false) {
                    let parent = std::fs::read_to_string(pair[0].join(file)).unwrap_or_default();
                    write(&here, parent.trim())?;
                }
            }
        }
        Ok(())
    }

    fn enable_v2_controllers(&self) -> Result<(), Error> {
        let Some(dir) = self.dir("") else { return Ok(()) };
        let mut chain: Vec<&Path> = dir.ancestors().take_while(|p| p.starts_with(ROOT) && *p != dir).collect();
        chain.reverse();
        for parent in chain {
            let available = std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
            let wanted: Vec<String> = available
                .split_whitespace()
                .filter(|c| matches!(*c, "cpu" | "cpuset" | "memory" | "pids" | "io"))
                .map(|c| format!("+{c}"))
                .collect();
            if !wanted.is_empty() {
                // Best effort: a controller busy elsewhere is not fatal for the others.
                let _ = write(&parent.join("cgroup.subtree_control"), &wanted.join(" "));
            }
        }
        Ok(())
    }

    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        match self.hierarchy {
            Hierarchy::V2 => self.apply_v2(r),
            _ => self.apply_v1(r),
        }
    }

    fn apply_v1(&self, r: &LinuxResources) -> Result<(), Error> {
        if let (Some(m), Some(dir)) = (r.memory(), self.dir("memory")) {
            if let Some(limit) = m.limit().filter(|l| *l != 0) {
                write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                if let Some(swap) = m.swap().filter(|s| *s != 0) {
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &swap.to_string())?;
                    }
                }
            }
            if let Some(res) = m.reservation().filter(|r| *r > 0) {
                write(&dir.join("memory.soft_limit_in_bytes"), &res.to_string())?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if let Some(dir) = self.dir("cpu") {
                if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                    write(&dir.join("cpu.shares"), &shares.to_string())?;
                }
                if let Some(period) = cpu.period().filter(|p| *p > 0) {
                    write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                }
                if let Some(quota) = cpu.quota().filter(|q| *q != 0) {
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
            if let (Some(cpus), Some(dir)) = (cpu.cpus().as_ref().filter(|c| !c.is_empty()), self.dir("cpuset")) {
                write(&dir.join("cpuset.cpus"), cpus)?;
            }
        }
        if let (Some(p), Some(dir)) = (r.pids(), self.dir("pids")) {
            let v = if p.limit() > 0 { p.limit().to_string() } else { "max".into() };
            write(&dir.join("pids.max"), &v)?;
        }
        if let (Some(devices), Some(dir)) = (r.devices(), self.dir("devices")) {
            for d in devices {
                let kind = d.typ().map(|t| t.as_str().to_string()).unwrap_or_else(|| "a".into());
                let num = |n: Option<i64>| n.map(|x| x.to_string()).unwrap_or_else(|| "*".into());
                let rule = if kind == "a" {
                    "a".to_string()
                } else {
                    format!("{kind} {}:{} {}", num(d.major()), num(d.minor()), d.access().clone().unwrap_or_else(|| "rwm".into()))
                };
                let file = if d.allow() { "devices.allow" } else { "devices.deny" };
                write(&dir.join(file), &rule)?;
            }
        }
        Ok(())
    }

    /// v2 device control needs an eBPF program; berth does not load one yet, so device rules are
    /// skipped on pure v2 hosts (the container still gets only the device nodes its spec creates).
    fn apply_v2(&self, r: &LinuxResources) -> Result<(), Error> {
        let Some(dir) = self.dir("") else { return Ok(()) };
        if let Some(m) = r.memory() {
            if let Some(limit) = m.limit().filter(|l| *l > 0) {
                write(&dir.join("memory.max"), &limit.to_string())?;
                if let Some(swap) = m.swap().filter(|s| *s > 0) {
                    let f = dir.join("memory.swap.max");
                    if f.exists() {
                        write(&f, &(swap - limit).max(0).to_string())?;
                    }
                }
            }
            if let Some(res) = m.reservation().filter(|r| *r > 0) {
                write(&dir.join("memory.low"), &res.to_string())?;
            }
        }
        if let Some(cpu) = r.cpu() {
            if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                write(&dir.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
            }
            if let Some(quota) = cpu.quota().filter(|q| *q > 0) {
                write(&dir.join("cpu.max"), &format!("{quota} {}", cpu.period().unwrap_or(100_000)))?;
            }
            if let Some(cpus) = cpu.cpus().as_ref().filter(|c| !c.is_empty()) {
                write(&dir.join("cpuset.cpus"), cpus)?;
            }
        }
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 { p.limit().to_string() } else { "max".into() };
            write(&dir.join("pids.max"), &v)?;
        }
        Ok(())
    }

    /// Moves `pid` into this cgroup in every hierarchy (0 means the caller).
    pub fn add_process(&self, pid: i32) -> Result<(), Error> {
        for (_, dir) in &self.dirs {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Directory fd for clone3(CLONE_INTO_CGROUP): only on pure v2 hosts.
    pub fn v2_dir(&self) -> Option<std::fs::File> {
        if self.hierarchy != Hierarchy::V2 {
            return None;
        }
        self.dir("").and_then(|d| std::fs::File::open(d).ok())
    }

    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let dir = self.dir("pids").or_else(|| self.dirs.first().map(|(_, d)| d.as_path()));
        let Some(dir) = dir else { return Ok(Vec::new()) };
        let procs = dir.join("cgroup.procs");
        match std::fs::read_to_string(&procs) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(Error::Io { context: format!("reading {}", procs.display()), source }),
        }
    }

    pub fn freeze(&self) -> Result<(), Error> {
        self.set_frozen(true)
    }

    pub fn thaw(&self) -> Result<(), Error> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), Error> {
        match self.hierarchy {
            Hierarchy::V2 => match self.dir("") {
                Some(d) => write(&d.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
                None => Ok(()),
            },
            _ => match self.dir("freezer") {
                Some(d) => write(&d.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" }),
                None => Ok(()),
            },
        }
    }

    /// Signals every process; frozen meanwhile so none can fork away from the signal.
    pub fn kill_all(&self, signal: i32) -> Result<(), Error> {
        if self.hierarchy == Hierarchy::V2 && signal == libc::SIGKILL {
            if let Some(d) = self.dir("") {
                let kill = d.join("cgroup.kill");
                if kill.exists() {
                    return write(&kill, "1");
                }
            }
        }
        let frozen = self.freeze().is_ok();
        for pid in self.pids()? {
            // SAFETY: plain kill(2) on a pid read from the cgroup.
            unsafe { libc::kill(pid, signal) };
        }
        if frozen {
            self.thaw()?;
        }
        Ok(())
    }

    /// Removes the cgroup everywhere; waits briefly for exiting tasks. Idempotent.
    pub fn destroy(&self) -> Result<(), Error> {
        for (_, dir) in &self.dirs {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Err(Error::Busy(self.path.clone())),
                    Err(source) => return Err(Error::Io { context: format!("removing {}", dir.display()), source }),
                }
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<Stats, Error> {
        let mut s = Stats::default();
        match self.hierarchy {
            Hierarchy::V2 => {
                if let Some(d) = self.dir("") {
                    s.memory_usage = read_u64(&d.join("memory.current"));
                    s.memory_limit = read_u64(&d.join("memory.max"));
                    s.pids_current = read_u64(&d.join("pids.current"));
                    let cpu = std::fs::read_to_string(d.join("cpu.stat")).unwrap_or_default();
                    s.cpu_usage_ns = cpu
                        .lines()
                        .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                        * 1000;
                }
            }
            _ => {
                if let Some(d) = self.dir("memory") {
                    s.memory_usage = read_u64(&d.join("memory.usage_in_bytes"));
                    s.memory_limit = read_u64(&d.join("memory.limit_in_bytes"));
                }
                if let Some(d) = self.dir("pids") {
                    s.pids_current = read_u64(&d.join("pids.current"));
                }
                if let Some(d) = self.dir("cpuacct") {
                    s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"));
                }
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
    }

    #[test]
    fn mountinfo_lists_cgroup_mounts_with_their_controllers() {
        let info = "30 25 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n\
                    31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    32 1 0:28 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(info);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].2, "rw,memory");
        assert_eq!(m[1].1, "cgroup2");
    }

    #[test]
    fn a_cgroup_limits_holds_and_releases_a_process() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let name = format!("/berth-test/cg-{}", std::process::id());
        let cg = Cgroup::open(&name).expect("open");
        cg.create().expect("create");
        let res: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 67108864}, "pids": {"limit": 12}, "cpu": {"shares": 512, "quota": 50000, "period": 100000}
        }))
        .expect("resources");
        cg.apply(&res).expect("apply");
        if let Some(d) = cg.dir("pids") {
            assert_eq!(std::fs::read_to_string(d.join("pids.max")).expect("read").trim(), "12");
        }
        let mut child = std::process::Command::new("sleep").arg("100").spawn().expect("sleep");
        cg.add_process(child.id() as i32).expect("add");
        assert_eq!(cg.pids().expect("pids"), vec![child.id() as i32]);
        cg.kill_all(libc::SIGKILL).expect("kill");
        let _ = child.wait();
        cg.destroy().expect("destroy");
        assert!(cg.dirs().all(|(_, d)| !d.exists()));
        let parent = Cgroup::open("/berth-test").expect("parent");
        let _ = parent.destroy();
    }
}
