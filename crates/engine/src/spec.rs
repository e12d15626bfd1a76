//! Turns a container record (Docker's Config/HostConfig) and its image's defaults into an OCI runtime
//! spec (config.json), with Docker's defaults: capabilities, seccomp profile, masked paths, devices.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::caps;
use crate::error::{Error, Result};
use crate::model::{ContainerRecord, HostConfig};
use crate::user::ExecUser;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The run defaults an image carries in its config (`config` of the OCI image config).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageRunConfig {
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub cmd: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// VOLUME entries: `{"/data": {}}`.
    #[serde(deserialize_with = "nullable")]
    pub volumes: BTreeMap<String, serde_json::Value>,
}

fn nullable<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ImageRunConfig {
    /// Reads the run defaults out of an OCI image configuration.
    pub fn from_image(config: &oci_spec::image::ImageConfiguration) -> Self {
        serde_json::to_value(config)
            .ok()
            .and_then(|v| v.get("config").cloned())
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_default()
    }
}

/// `path` and `args` of the process: Docker's entrypoint/cmd merge.
pub fn command(
    image: &ImageRunConfig,
    entrypoint: Option<&Vec<String>>,
    cmd: &[String],
) -> Result<(String, Vec<String>)> {
    let entrypoint: &[String] = entrypoint.map(|e| e.as_slice()).unwrap_or(&image.entrypoint);
    // An explicit entrypoint discards the image's cmd, as Docker does.
    let cmd: &[String] = if !cmd.is_empty() {
        cmd
    } else if entrypoint_overridden(entrypoint, &image.entrypoint) {
        &[]
    } else {
        &image.cmd
    };
    let mut all: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if all.is_empty() {
        return Err(Error::InvalidArgument("no command specified".into()));
    }
    let path = all.remove(0);
    Ok((path, all))
}

fn entrypoint_overridden(given: &[String], image: &[String]) -> bool {
    given != image
}

/// `base` overlaid by `overrides`, key by key, keeping first-seen order (a bare `KEY` means `KEY=`).
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for kv in base.iter().chain(overrides) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match merged.iter_mut().find(|(key, _)| key == k) {
            Some(e) => e.1 = v.to_string(),
            None => merged.push((k.to_string(), v.to_string())),
        }
    }
    merged.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The process environment: PATH, HOSTNAME and TERM as Docker sets them, then the image's and the
/// container's variables on top.
pub fn environment(image: &[String], container: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut defaults = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}")];
    if tty {
        defaults.push("TERM=xterm".into());
    }
    merge_env(&merge_env(&defaults, image), container)
}

/// Everything `build` needs beyond the record.
pub struct SpecInput<'a> {
    pub record: &'a ContainerRecord,
    pub image: &'a ImageRunConfig,
    pub user: &'a ExecUser,
    pub hostname: &'a str,
    /// Host files bind-mounted over /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub etc_files: &'a [(String, String)],
    /// Whether the host mounts cgroup v2 only (then the container gets its own cgroup namespace).
    pub cgroup_v2: bool,
    /// Namespaces joined instead of created: (type, /proc/<pid>/ns/<file>) — `container:` modes.
    pub joins: &'a [(&'static str, String)],
    /// Namespaces left out, so the host's is used — `host` modes.
    pub host: &'a [&'static str],
}

/// Builds the OCI spec; `oci_spec` parses it, so a field we get wrong fails here, not in the runtime.
pub fn build(input: &SpecInput<'_>) -> Result<oci_spec::runtime::Spec> {
    let r = input.record;
    let hc = &r.host_config;
    let caps = caps::effective(&hc.cap_add, &hc.cap_drop, hc.privileged)?;
    let cwd = [r.config.working_dir.as_str(), input.image.working_dir.as_str()]
        .into_iter()
        .find(|w| !w.is_empty())
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    let env = environment(&input.image.env, &r.config.env, input.hostname, r.config.tty);
    let args: Vec<&str> = std::iter::once(r.path.as_str()).chain(r.args.iter().map(String::as_str)).collect();
    let mut namespaces: Vec<Value> = ["pid", "ipc", "uts", "mount", "network"]
        .into_iter()
        .filter(|t| !input.host.contains(t))
        .map(|t| match input.joins.iter().find(|(j, _)| *j == t) {
            Some((_, path)) => json!({"type": t, "path": path}),
            None => json!({"type": t}),
        })
        .collect();
    if input.cgroup_v2 {
        namespaces.push(json!({"type":"cgroup"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": format!("/berth/{}", r.id),
        "resources": resources(hc),
        "sysctl": hc.sysctls,
    });
    if !hc.privileged {
        linux["maskedPaths"] = json!(runtime::MASKED_PATHS);
        linux["readonlyPaths"] = json!(runtime::READONLY_PATHS);
        linux["seccomp"] = serde_json::to_value(seccomp::default_profile(&caps))
            .map_err(|e| Error::Internal(format!("seccomp profile: {e}")))?;
    }
    let spec = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": r.config.tty,
            "user": {"uid": input.user.uid, "gid": input.user.gid, "additionalGids": input.user.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            // No rlimits: like Docker without --ulimit, the container inherits the engine's.
            "noNewPrivileges": false,
            "oomScoreAdj": hc.oom_score_adj,
        },
        "root": {"path": "rootfs", "readonly": hc.readonly_rootfs},
        "hostname": input.hostname,
        "mounts": mounts(hc, input.etc_files, &r.mounts),
        "linux": linux,
    });
    serde_json::from_value(spec).map_err(|e| Error::Internal(format!("building runtime spec: {e}")))
}

fn mounts(hc: &HostConfig, etc_files: &[(String, String)], user: &[crate::volumes::MountPoint]) -> Vec<Value> {
    let shm = if hc.shm_size > 0 { hc.shm_size } else { 64 * 1024 * 1024 };
    let sys_opts = if hc.privileged { json!(["nosuid", "noexec", "nodev"]) } else { json!(["nosuid", "noexec", "nodev", "ro"]) };
    let mut m = vec![
        json!({"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]}),
        json!({"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}),
        json!({"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance","ptmxmode=0666","mode=0620","gid=5"]}),
        json!({"destination":"/sys","type":"sysfs","source":"sysfs","options":sys_opts}),
        json!({"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup","options":["ro","nosuid","noexec","nodev"]}),
        json!({"destination":"/dev/mqueue","type":"mqueue","source":"mqueue","options":["nosuid","noexec","nodev"]}),
        json!({"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["nosuid","noexec","nodev","mode=1777",format!("size={shm}")]}),
    ];
    for (dest, src) in etc_files {
        m.push(json!({"destination":dest,"type":"bind","source":src,"options":["rbind","rprivate"]}));
    }
    // A user mount over /dev/shm (e.g. --ipc container:) replaces the default one.
    m.retain(|x| !user.iter().any(|u| x["destination"] == u.destination.as_str()));
    m.extend(crate::volumes::spec_mounts(user));
    m
}

fn resources(hc: &HostConfig) -> Value {
    let mut memory = json!({});
    if hc.memory > 0 {
        memory["limit"] = json!(hc.memory);
        // Docker: without --memory-swap, swap may use as much again as memory.
        memory["swap"] = json!(if hc.memory_swap != 0 { hc.memory_swap } else { hc.memory * 2 });
    }
    if hc.memory_reservation > 0 {
        memory["reservation"] = json!(hc.memory_reservation);
    }
    let mut cpu = json!({});
    if hc.cpu_shares > 0 {
        cpu["shares"] = json!(hc.cpu_shares);
    }
    if hc.nano_cpus > 0 {
        cpu["period"] = json!(100_000u64);
        cpu["quota"] = json!(hc.nano_cpus * 100_000 / 1_000_000_000);
    } else if hc.cpu_quota > 0 {
        cpu["quota"] = json!(hc.cpu_quota);
        cpu["period"] = json!(if hc.cpu_period > 0 { hc.cpu_period } else { 100_000 });
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(hc.cpuset_cpus);
    }
    let devices = if hc.privileged {
        json!([{"allow": true, "access": "rwm"}])
    } else {
        default_devices()
    };
    let mut res = json!({"memory": memory, "cpu": cpu, "devices": devices});
    if let Some(limit) = hc.pids_limit.filter(|l| *l != 0) {
        res["pids"] = json!({"limit": limit});
    }
    res
}

/// Docker's device cgroup: deny all, then mknod anything and use the standard character devices.
fn default_devices() -> Value {
    let c = |major: i64, minor: Option<i64>, access: &str| {
        json!({"allow": true, "type": "c", "major": major, "minor": minor, "access": access})
    };
    json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"},
        c(1, Some(3), "rwm"), c(1, Some(5), "rwm"), c(1, Some(7), "rwm"), c(1, Some(8), "rwm"),
        c(1, Some(9), "rwm"), c(5, Some(0), "rwm"), c(5, Some(1), "rwm"), c(5, Some(2), "rwm"),
        c(136, None, "rwm"), c(10, Some(200), "rwm"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn user_cmd_replaces_image_cmd_and_keeps_entrypoint() {
        let img = ImageRunConfig { entrypoint: v(&["/init"]), cmd: v(&["serve"]), ..Default::default() };
        let (path, args) = command(&img, None, &v(&["debug"])).expect("cmd");
        assert_eq!(path, "/init");
        assert_eq!(args, v(&["debug"]));
    }

    #[test]
    fn explicit_entrypoint_drops_image_cmd() {
        let img = ImageRunConfig { cmd: v(&["serve"]), ..Default::default() };
        let (path, args) = command(&img, Some(&v(&["sh"])), &[]).expect("cmd");
        assert_eq!((path.as_str(), args.len()), ("sh", 0));
    }

    #[test]
    fn no_command_at_all_is_an_error() {
        assert!(command(&ImageRunConfig::default(), None, &[]).is_err());
    }

    #[test]
    fn container_env_overrides_image_env_and_path_is_defaulted() {
        let env = environment(&v(&["A=1", "B=2"]), &v(&["B=3"]), "h", true);
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(env.contains(&"B=3".to_string()));
        assert!(env.contains(&"TERM=xterm".to_string()));
        assert!(env.contains(&"HOSTNAME=h".to_string()));
    }

    #[test]
    fn cpus_become_quota_over_a_100ms_period() {
        let hc = HostConfig { nano_cpus: 1_500_000_000, memory: 1 << 20, pids_limit: Some(10), ..Default::default() };
        let r = resources(&hc);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["memory"]["limit"], 1 << 20);
        assert_eq!(r["pids"]["limit"], 10);
    }
}
