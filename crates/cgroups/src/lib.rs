//! Linux control groups on v1, v2 and hybrid hosts: find the hierarchies, create a cgroup at the
//! same path in each, apply OCI resource limits, place, list, freeze, signal and remove its
//! processes, and read its statistics. Knows nothing of containers (like youki's libcgroups):
//! which cgroup a container gets and when is the runtime's business.
//!
//! On a hybrid host (v1 controllers plus a cgroup2 mount, usually /sys/fs/cgroup/unified) limits
//! go to the v1 controllers and processes also join the same path in `name=systemd` and in the
//! unified hierarchy, as runc does (crun refuses such hosts). Files are written directly, never
//! through a shell; every error names the file and the value.
//!
//! Layout: `mountinfo` finds the hierarchies, `v1` and `v2` apply limits and read statistics,
//! `fs` reads and writes the files, `stats` is the statistics' shape.

mod fs;
mod mountinfo;
mod stats;
mod v1;
mod v2;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

pub use stats::{CpuStats, MemoryStats, PidsStats, Stats, Throttling};
pub use v2::shares_to_weight;

const ROOT: &str = "/sys/fs/cgroup";
/// How long destroy waits for exiting tasks to leave, and freeze for tasks to stop.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, #[source] source: std::io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, #[source] source: std::io::Error },
    #[error("unexpected value {value:?} in {path}")]
    Parse { path: PathBuf, value: String },
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, #[source] source: std::io::Error },
    #[error("creating cgroup directory {path}: {source}")]
    Create { path: PathBuf, #[source] source: std::io::Error },
    #[error("removing cgroup directory {path}: {source}")]
    Remove { path: PathBuf, #[source] source: std::io::Error },
    #[error("cgroup {path} still has processes {pids:?} after {waited:?}")]
    Busy { path: PathBuf, pids: Vec<i32>, waited: Duration },
    #[error("cgroup {path} did not freeze within {waited:?}")]
    FreezeTimeout { path: PathBuf, waited: Duration },
    #[error("sending signal {signal} to process {pid}: {source}")]
    Signal { pid: i32, signal: i32, #[source] source: std::io::Error },
    #[error("cgroup {cgroup}: this host has no {controller} controller")]
    NoController { cgroup: String, controller: String },
    #[error("invalid cgroup request: {0}")]
    Invalid(String),
    #[error("no cgroup filesystem is mounted under /sys/fs/cgroup")]
    NotMounted,
}

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Hierarchy {
    /// Only v1 hierarchies, one or more controllers each.
    V1,
    /// One unified hierarchy at /sys/fs/cgroup.
    V2,
    /// v1 controllers plus a cgroup2 mount beside them, with no controllers of its own.
    Hybrid,
}

/// This host's cgroup layout, from /proc/self/mountinfo.
pub fn detect() -> Result<Hierarchy, Error> {
    mountinfo::hierarchy(&mountinfo::read()?)
}

/// OCI pids.limit as pids.max: zero or negative is unlimited.
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 { limit.to_string() } else { "max".into() }
}

/// The cgroup's directory in one hierarchy.
#[derive(Debug, Clone)]
struct Dir {
    /// v1 controllers (and `name=…`) of the hierarchy; empty for cgroup2.
    controllers: Vec<String>,
    mount_point: PathBuf,
    path: PathBuf,
    v2: bool,
}

/// One cgroup, at the same path in every hierarchy the host has.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: String,
    hierarchy: Hierarchy,
    dirs: Vec<Dir>,
}

impl Cgroup {
    /// `path` is the OCI linux.cgroupsPath, e.g. "/berth/<id>", taken relative to each
    /// hierarchy's root mount. Reads mountinfo only; creates nothing.
    pub fn open(path: &str) -> Result<Cgroup, Error> {
        let rel = relative(path)?;
        let mounts = mountinfo::read()?;
        let hierarchy = mountinfo::hierarchy(&mounts)?;
        let dirs = mounts
            .into_iter()
            // On a v2 host only the unified hierarchy counts, whatever else is mounted.
            .filter(|m| hierarchy != Hierarchy::V2 || (m.v2 && m.mount_point == Path::new(ROOT)))
            .map(|m| Dir { path: m.mount_point.join(&rel), controllers: m.controllers, mount_point: m.mount_point, v2: m.v2 })
            .collect();
        Ok(Cgroup { path: path.to_string(), hierarchy, dirs })
    }

    /// A cgroup on the cgroup2 mount at `mount_point` handled as on a pure v2 host, so the v2
    /// paths can be tested on hybrid hosts through their unified mount.
    #[cfg(test)]
    fn v2_at(mount_point: &Path, path: &str) -> Result<Cgroup, Error> {
        let dir = Dir { controllers: Vec::new(), mount_point: mount_point.to_path_buf(), path: mount_point.join(relative(path)?), v2: true };
        Ok(Cgroup { path: path.to_string(), hierarchy: Hierarchy::V2, dirs: vec![dir] })
    }

    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// The path this cgroup was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The directory that holds a controller's files: the v1 hierarchy with that controller, or
    /// on a v2 host the one unified directory.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| if self.hierarchy == Hierarchy::V2 { d.v2 } else { d.controllers.iter().any(|c| c == controller) })
            .map(|d| d.path.as_path())
    }

    /// The cgroup2 directory: the cgroup itself on v2, its place in the unified mount on hybrid.
    pub fn v2_path(&self) -> Option<&Path> {
        self.dirs.iter().find(|d| d.v2).map(|d| d.path.as_path())
    }

    /// Every directory this cgroup spans, with each hierarchy's v1 controllers (empty for cgroup2).
    pub fn dirs(&self) -> impl Iterator<Item = (&[String], &Path)> {
        self.dirs.iter().map(|d| (d.controllers.as_slice(), d.path.as_path()))
    }

    fn required(&self, controller: &str) -> Result<&Path, Error> {
        self.dir(controller)
            .ok_or_else(|| Error::NoController { cgroup: self.path.clone(), controller: controller.to_string() })
    }

    /// mkdir -p in every hierarchy; fills in v1 cpuset's cpus and mems from the parents (tasks
    /// cannot join an empty cpuset) and on v2 enables the controllers in the ancestors.
    pub fn create(&self) -> Result<(), Error> {
        for d in &self.dirs {
            std::fs::create_dir_all(&d.path).map_err(|source| Error::Create { path: d.path.clone(), source })?;
            if d.controllers.iter().any(|c| c == "cpuset") {
                v1::init_cpuset(&d.mount_point, &d.path)?;
            }
            if d.v2 && self.hierarchy == Hierarchy::V2 {
                v2::enable_controllers(&d.mount_point, &d.path)?;
            }
        }
        Ok(())
    }

    /// Writes the limits: memory (limit, reservation, swap), cpu (shares or weight, quota and
    /// period, cpuset cpus and mems), pids, and on v1 devices. On v2, device rules are skipped
    /// (they need an eBPF program). A limit for a controller the host lacks is an error.
    pub fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        match self.hierarchy {
            Hierarchy::V2 => v2::apply(self.required("")?, r),
            Hierarchy::V1 | Hierarchy::Hybrid => v1::apply(self, r),
        }
    }

    /// Moves a process (0: the caller) into this cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), Error> {
        let pid = pid.to_string();
        for d in &self.dirs {
            fs::write(&d.path.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// Opens every hierarchy's cgroup.procs now, so that a forked child can join later without
    /// allocating or taking locks (see [`PreparedJoin::join_self`]).
    pub fn prepare_join(&self) -> Result<PreparedJoin, Error> {
        let mut files = Vec::with_capacity(self.dirs.len());
        for d in &self.dirs {
            let path = d.path.join("cgroup.procs");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .map_err(|source| Error::Open { path: path.clone(), source })?;
            files.push((path, file));
        }
        Ok(PreparedJoin { files })
    }

    /// An O_PATH directory fd of the cgroup for clone3's CLONE_INTO_CGROUP; None on v1 and
    /// hybrid hosts, where a child must join every hierarchy and clone3 can place it in one.
    pub fn v2_dir(&self) -> Option<std::fs::File> {
        if self.hierarchy != Hierarchy::V2 {
            return None;
        }
        let dir = self.v2_path()?;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|e| tracing::debug!(dir = %dir.display(), error = %e, "opening the cgroup for CLONE_INTO_CGROUP"))
            .ok()
    }

    /// The processes in the cgroup; empty when it does not exist.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let dir = self.dir("pids").or_else(|| self.dir("freezer")).or_else(|| self.dirs.first().map(|d| d.path.as_path()));
        let Some(dir) = dir else { return Ok(Vec::new()) };
        let procs = dir.join("cgroup.procs");
        let text = fs::read(&procs)?.unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().parse().map_err(|_| Error::Parse { path: procs.clone(), value: l.to_string() }))
            .collect()
    }

    /// Stops every process in the cgroup and waits until the kernel reports it frozen.
    pub fn freeze(&self) -> Result<(), Error> {
        let (file, frozen) = self.freezer_file(true)?;
        let started = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            fs::write(&file, frozen)?;
            if self.is_frozen()? {
                return Ok(());
            }
            if started.elapsed() > SETTLE {
                let _ = self.thaw();
                return Err(Error::FreezeTimeout { path: file, waited: started.elapsed() });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    pub fn thaw(&self) -> Result<(), Error> {
        let (file, thawed) = self.freezer_file(false)?;
        fs::write(&file, thawed)
    }

    /// The freezer's control file and the value for the wanted state.
    fn freezer_file(&self, frozen: bool) -> Result<(PathBuf, &'static str), Error> {
        Ok(match self.hierarchy {
            Hierarchy::V2 => (self.required("")?.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
            _ => (self.required("freezer")?.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" }),
        })
    }

    fn is_frozen(&self) -> Result<bool, Error> {
        Ok(match self.hierarchy {
            Hierarchy::V2 => fs::read_keyed(&self.required("")?.join("cgroup.events"))?.get("frozen") == Some(&1),
            _ => fs::read(&self.required("freezer")?.join("freezer.state"))?.is_some_and(|s| s.trim() == "FROZEN"),
        })
    }

    /// Signals every process. With SIGKILL on a v2 kernel that has cgroup.kill, the kernel does
    /// it at once; otherwise the cgroup is frozen meanwhile so no process can fork away from the
    /// signal (without a freezer controller, the signal goes out unfrozen).
    pub fn kill_all(&self, signal: i32) -> Result<(), Error> {
        if self.hierarchy == Hierarchy::V2 && signal == libc::SIGKILL {
            let kill = self.required("")?.join("cgroup.kill");
            if kill.exists() {
                return fs::write(&kill, "1");
            }
        }
        let frozen = match self.freeze() {
            Ok(()) => true,
            Err(Error::NoController { .. }) => false,
            Err(e) => return Err(e),
        };
        let result = self.pids().and_then(|pids| pids.into_iter().try_for_each(|pid| send(pid, signal)));
        if frozen {
            self.thaw()?;
        }
        result
    }

    /// Removes the cgroup (and any cgroups below it) in every hierarchy, waiting briefly for
    /// exiting tasks to leave. Removing a cgroup that does not exist succeeds.
    pub fn destroy(&self) -> Result<(), Error> {
        let deadline = Instant::now() + SETTLE;
        for d in &self.dirs {
            remove_tree(&d.path, deadline)?;
        }
        Ok(())
    }

    /// Memory, CPU and pids usage; counters of controllers the host lacks read as zero.
    pub fn stats(&self) -> Result<Stats, Error> {
        match self.hierarchy {
            Hierarchy::V2 => v2::stats(self.required("")?),
            Hierarchy::V1 | Hierarchy::Hybrid => v1::stats(self),
        }
    }
}

/// A cgroup's cgroup.procs files, open for writing (close-on-exec), from [`Cgroup::prepare_join`].
#[derive(Debug)]
pub struct PreparedJoin {
    files: Vec<(PathBuf, std::fs::File)>,
}

/// A failed [`PreparedJoin::join_self`]: which file refused the write, and the errno.
#[derive(Debug)]
pub struct JoinFailed<'a> {
    pub path: &'a Path,
    pub errno: i32,
}

impl std::fmt::Display for JoinFailed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing \"0\" to {}: {}", self.path.display(), std::io::Error::from_raw_os_error(self.errno))
    }
}

impl PreparedJoin {
    /// Moves the calling process into the cgroup in every hierarchy by writing "0" (the writer)
    /// to each open cgroup.procs: write(2) only, no allocation, no locks, so it is safe in a
    /// forked child of a multi-threaded process.
    pub fn join_self(&self) -> Result<(), JoinFailed<'_>> {
        use std::os::fd::AsRawFd;
        for (path, file) in &self.files {
            // SAFETY: writes one byte from a static buffer to an fd this struct owns.
            let n = unsafe { libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if n != 1 {
                // SAFETY: reads this thread's errno.
                let errno = unsafe { *libc::__errno_location() };
                return Err(JoinFailed { path, errno });
            }
        }
        Ok(())
    }
}

/// The cgroup path without its leading slash; "..", "." and empty paths are refused so that a
/// cgroup can never name a directory outside its hierarchy or the hierarchy's root.
fn relative(path: &str) -> Result<PathBuf, Error> {
    let rel = path.trim_start_matches('/');
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|p| *p == ".." || *p == ".") {
        return Err(Error::Invalid(format!("cgroup path {path:?} must name a directory below the hierarchy's root")));
    }
    Ok(parts.iter().collect())
}

fn send(pid: i32, signal: i32) -> Result<(), Error> {
    // SAFETY: kill(2) with plain integers.
    if unsafe { libc::kill(pid, signal) } == 0 {
        return Ok(());
    }
    let source = std::io::Error::last_os_error();
    // Gone between listing and signalling: nothing left to do.
    if source.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(Error::Signal { pid, signal, source })
}

/// Removes `dir` after its child cgroups (rmdir of a cgroup with children fails), retrying while
/// tasks are still leaving, until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Read { path: dir.to_path_buf(), source }),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path(), deadline)?;
        }
    }
    let mut pause = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let procs = fs::read(&dir.join("cgroup.procs")).ok().flatten().unwrap_or_default();
                let pids = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
                return Err(Error::Busy { path: dir.to_path_buf(), pids, waited: SETTLE });
            }
            Err(source) => return Err(Error::Remove { path: dir.to_path_buf(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_are_taken_below_the_root() {
        assert_eq!(relative("/berth/abc").expect("ok"), PathBuf::from("berth/abc"));
        assert_eq!(relative("berth//abc/").expect("ok"), PathBuf::from("berth/abc"));
        assert!(relative("/").is_err());
        assert!(relative("").is_err());
        assert!(relative("/berth/../etc").is_err());
    }

    #[test]
    fn zero_or_negative_pids_limits_mean_max() {
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
        assert_eq!(pids_max(64), "64");
    }

    /// Runs the v2 code on this host's cgroup2 mount: on a hybrid host it has no controllers, but
    /// freezing, cgroup.kill, membership and removal are all there.
    #[test]
    fn v2_freeze_kill_and_destroy_work_on_a_real_cgroup2_mount() {
        let mounts = mountinfo::read().expect("mountinfo");
        let Some(unified) = mounts.iter().find(|m| m.v2) else {
            eprintln!("skipping: no cgroup2 mount");
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root");
            return;
        }
        let cg = Cgroup::v2_at(&unified.mount_point, &format!("/berth-cgtest-v2-{}", std::process::id())).expect("open");
        cg.create().expect("create");
        let mut children: Vec<std::process::Child> =
            (0..2).map(|_| std::process::Command::new("sleep").arg("300").spawn().expect("sleep")).collect();
        let result = (|| -> Result<(), Error> {
            for c in &children {
                cg.add_process(c.id() as i32)?;
            }
            assert_eq!(cg.pids()?.len(), 2);
            assert!(cg.v2_dir().is_some(), "CLONE_INTO_CGROUP fd on v2");
            cg.freeze()?;
            assert_eq!(fs::read_keyed(&cg.v2_path().expect("dir").join("cgroup.events"))?.get("frozen"), Some(&1));
            cg.thaw()?;
            cg.kill_all(libc::SIGKILL)
        })();
        if result.is_err() {
            children.iter_mut().for_each(|c| drop(c.kill()));
        }
        let statuses: Vec<_> = children.iter_mut().map(|c| c.wait().expect("wait")).collect();
        cg.destroy().expect("destroy");
        result.expect("v2 operations");
        use std::os::unix::process::ExitStatusExt;
        assert!(statuses.iter().all(|s| s.signal() == Some(libc::SIGKILL)), "{statuses:?}");
        assert!(!cg.v2_path().expect("dir").exists());
    }

    #[test]
    fn removing_a_missing_cgroup_succeeds() {
        let dir = tempfile::tempdir().expect("tmp");
        let gone = dir.path().join("never-created");
        remove_tree(&gone, Instant::now()).expect("idempotent");
    }
}
