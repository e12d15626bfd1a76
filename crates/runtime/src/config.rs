//! The parts of an OCI config.json the runtime acts on. Resources and seccomp stay in oci-spec's own
//! types (the cgroups and seccomp crates take those); the rest is read into these plain structs so
//! the forked child works on owned data with no further parsing.
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::Error;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    pub process: Process,
    pub root: Root,
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    pub linux: Linux,
    pub annotations: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Option<Capabilities>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub typ: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub typ: Option<String>,
    pub source: Option<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    pub cgroups_path: Option<String>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    pub sysctl: BTreeMap<String, String>,
    pub rootfs_propagation: Option<String>,
    pub devices: Vec<Device>,
}

/// A device node to create in the container (linux.devices).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub typ: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub typ: String,
    pub path: Option<String>,
}

impl Config {
    pub fn load(bundle: &Path) -> Result<Config, Error> {
        let path = bundle.join("config.json");
        let data = std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        // Parsing with oci-spec first rejects what is not a valid runtime spec at all.
        serde_json::from_slice::<oci_spec::runtime::Spec>(&data)
            .map_err(|e| Error::InvalidSpec(format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&data).map_err(|e| Error::InvalidSpec(format!("{}: {e}", path.display())))
    }
}

impl Process {
    /// Converts the API's oci-spec Process (used by exec) into ours.
    pub fn from_oci(p: &oci_spec::runtime::Process) -> Result<Process, Error> {
        let v = serde_json::to_value(p).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        serde_json::from_value(v).map_err(|e| Error::InvalidSpec(format!("process: {e}")))
    }

    /// Adds HOME from the container's /etc/passwd when the spec has none (runc and Docker do);
    /// `/` for a user it does not list.
    pub fn ensure_home(&mut self, root: &std::os::fd::OwnedFd) {
        if self.env.iter().any(|e| e.starts_with("HOME=")) {
            return;
        }
        let passwd = crate::mounts::open_in_root(root, "/etc/passwd", nix::fcntl::OFlag::O_RDONLY)
            .ok()
            .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok());
        let home = passwd.as_deref().and_then(|p| home_of(p, self.user.uid)).unwrap_or("/").to_string();
        self.env.push(format!("HOME={home}"));
    }

    pub fn path_env(&self) -> &str {
        self.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    }
}

/// The home directory of `uid` in passwd(5) text.
fn home_of(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid) && !f[5].is_empty()).then(|| f[5])
    })
}

/// CLONE_NEW* flag of a namespace type name.
pub fn namespace_flag(typ: &str) -> Result<libc::c_int, Error> {
    Ok(match typ {
        "pid" => libc::CLONE_NEWPID,
        "network" => libc::CLONE_NEWNET,
        "mount" => libc::CLONE_NEWNS,
        "ipc" => libc::CLONE_NEWIPC,
        "uts" => libc::CLONE_NEWUTS,
        "cgroup" => libc::CLONE_NEWCGROUP,
        "user" => return Err(Error::Unsupported("user namespaces".into())),
        "time" => return Err(Error::Unsupported("time namespaces".into())),
        other => return Err(Error::InvalidSpec(format!("unknown namespace type {other:?}"))),
    })
}

/// The /proc/<pid>/ns entry of a namespace type.
pub fn namespace_file(typ: &str) -> &'static str {
    match typ {
        "pid" => "pid",
        "network" => "net",
        "mount" => "mnt",
        "ipc" => "ipc",
        "uts" => "uts",
        "cgroup" => "cgroup",
        _ => "",
    }
}

/// The System V IPC sysctls that belong to an ipc namespace.
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

impl Config {
    fn has_namespace(&self, typ: &str) -> bool {
        self.linux.namespaces.iter().any(|n| n.typ == typ)
    }

    /// Refuses what would change the host rather than the container: a hostname without a UTS
    /// namespace of its own, and sysctls that are not namespaced or whose namespace is the host's.
    pub fn validate(&self) -> Result<(), Error> {
        if self.process.args.is_empty() {
            return Err(Error::InvalidSpec("process.args is empty".into()));
        }
        if self.hostname.as_deref().is_some_and(|h| !h.is_empty()) && !self.has_namespace("uts") {
            return Err(Error::InvalidSpec("a hostname needs a uts namespace".into()));
        }
        for key in self.linux.sysctl.keys() {
            let dotted = key.replace('/', ".");
            if dotted.split('.').any(|c| c.is_empty() || c == "..") {
                return Err(Error::InvalidSpec(format!("invalid sysctl {key:?}")));
            }
            let ns = if IPC_SYSCTLS.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
                "ipc"
            } else if dotted.starts_with("net.") {
                "network"
            } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
                "uts"
            } else {
                return Err(Error::InvalidSpec(format!("sysctl {key:?} is not namespaced and would change the host")));
            };
            if !self.has_namespace(ns) {
                return Err(Error::InvalidSpec(format!("sysctl {key:?} needs a {ns} namespace of the container's own")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).expect("config")
    }

    #[test]
    fn a_hostname_without_a_uts_namespace_is_refused() {
        let c = config(serde_json::json!({"process": {"args": ["sh"]}, "hostname": "h"}));
        assert!(c.validate().is_err());
        let c = config(serde_json::json!({"process": {"args": ["sh"]}, "hostname": "h", "linux": {"namespaces": [{"type": "uts"}]}}));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn only_sysctls_of_the_containers_own_namespaces_pass() {
        let with = |key: &str, ns: &str| {
            config(serde_json::json!({"process": {"args": ["sh"]}, "linux": {"namespaces": [{"type": ns}], "sysctl": {key: "1"}}}))
        };
        assert!(with("net.ipv4.ip_forward", "network").validate().is_ok());
        assert!(with("net.ipv4.ip_forward", "ipc").validate().is_err(), "host network namespace");
        assert!(with("kernel.shmmax", "ipc").validate().is_ok());
        assert!(with("fs.mqueue.msg_max", "ipc").validate().is_ok());
        assert!(with("kernel.core_pattern", "ipc").validate().is_err(), "not namespaced");
        assert!(with("vm.overcommit_memory", "network").validate().is_err());
        assert!(with("net/../../kernel/core_pattern", "network").validate().is_err());
    }

    #[test]
    fn home_comes_from_passwd_by_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nbroken\nuser:x:1000:1000::/home/user:/bin/sh\n";
        assert_eq!(home_of(passwd, 0), Some("/root"));
        assert_eq!(home_of(passwd, 1000), Some("/home/user"));
        assert_eq!(home_of(passwd, 5), None);
    }

    #[test]
    fn an_empty_command_is_refused() {
        assert!(config(serde_json::json!({"process": {"args": []}})).validate().is_err());
    }
}
