//! The per-container state directory: `<root>/<id>/state.json` (written atomically) and
//! `exec.fifo`, and how a container's status is told from it and from /proc.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub id: String,
    pub pid: i32,
    /// Start time of the pid (field 22 of /proc/<pid>/stat), to tell it from a reused pid.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub created: String,
    pub cgroups_path: Option<String>,
    pub seccomp_cache: Option<PathBuf>,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// Container ids name directories: no separators, no dot names, nothing a shell would mangle.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && id != "."
        && id != ".."
}

/// The start time of `pid` and whether it is a zombie (a zombie init has exited).
pub fn proc_start(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<(u64, bool)> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace();
    let zombie = fields.next()? == "Z";
    Some((fields.nth(18)?.parse().ok()?, zombie))
}

impl StateFile {
    pub fn load(dir: &Path, id: &str) -> Result<StateFile, Error> {
        let data = match std::fs::read(dir.join("state.json")) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.to_string())),
            Err(e) => return Err(Error::io(format!("reading the state of container {id}"), e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::InvalidSpec(format!("state of container {id}: {e}")))
    }

    /// tmp + rename: a reader never sees half a file.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let data = serde_json::to_vec(self).map_err(|e| Error::InvalidSpec(format!("state of container {}: {e}", self.id)))?;
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, data)
            .and_then(|_| std::fs::rename(&tmp, dir.join("state.json")))
            .map_err(|e| Error::io(format!("writing the state of container {}", self.id), e))
    }

    /// Created while the init still waits on the fifo, running after, stopped once the pid is gone,
    /// a zombie, or another process's.
    pub fn status(&self, dir: &Path) -> Status {
        match proc_start(self.pid) {
            Some((start, false)) if start == self.start_time => {
                if dir.join("exec.fifo").exists() {
                    Status::Created
                } else {
                    Status::Running
                }
            }
            _ => Status::Stopped,
        }
    }

    pub fn to_oci(&self, status: Status) -> Result<oci_spec::runtime::State, Error> {
        let v = serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.id,
            "status": status.as_str(),
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "bundle": self.bundle,
            "annotations": self.annotations,
        });
        serde_json::from_value(v).map_err(|e| Error::InvalidSpec(e.to_string()))
    }
}

/// The OCI state of a container whose directory exists but whose create has not finished.
pub fn creating(id: &str) -> Result<oci_spec::runtime::State, Error> {
    let v = serde_json::json!({"ociVersion": "1.2.0", "id": id, "status": "creating", "bundle": ""});
    serde_json::from_value(v).map_err(|e| Error::InvalidSpec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name_parses() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(stat), Some((98765, false)));
        let zombie = "42 (x) Z 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(zombie), Some((5, true)));
    }

    #[test]
    fn ids_with_separators_or_dot_names_are_refused() {
        assert!(valid_id("abc-1.2_x"));
        for bad in ["", ".", "..", "a/b", "a b", "x\n"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn our_own_process_is_running_and_a_changed_start_time_is_stopped() {
        let dir = tempfile::tempdir().expect("tmp");
        let pid = std::process::id() as i32;
        let (start, _) = proc_start(pid).expect("own stat");
        let mut st = StateFile {
            id: "x".into(),
            pid,
            start_time: start,
            bundle: "/b".into(),
            created: String::new(),
            cgroups_path: None,
            seccomp_cache: None,
            annotations: Default::default(),
        };
        assert_eq!(st.status(dir.path()), Status::Running);
        std::fs::write(dir.path().join("exec.fifo"), "").expect("fifo stand-in");
        assert_eq!(st.status(dir.path()), Status::Created);
        st.start_time += 1;
        assert_eq!(st.status(dir.path()), Status::Stopped, "a reused pid is not our container");
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let st = StateFile {
            id: "x".into(),
            pid: 7,
            start_time: 1,
            bundle: "/b".into(),
            created: "now".into(),
            cgroups_path: Some("/berth/x".into()),
            seccomp_cache: None,
            annotations: Default::default(),
        };
        st.save(dir.path()).expect("save");
        let back = StateFile::load(dir.path(), "x").expect("load");
        assert_eq!(back.cgroups_path.as_deref(), Some("/berth/x"));
        assert!(matches!(StateFile::load(&dir.path().join("nope"), "y"), Err(Error::NotFound(_))));
        let oci = serde_json::to_value(st.to_oci(Status::Stopped).expect("oci")).expect("json");
        assert_eq!(oci["status"], "stopped");
        assert_eq!(oci["pid"], 0);
    }
}
