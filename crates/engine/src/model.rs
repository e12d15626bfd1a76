//! The container model, in the Docker Engine API's own field names so that a create request body
//! deserialises straight into it and inspect renders it back without a translation layer.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `Config` of a container (what the image and the user ask the process to be).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "string_or_list")]
    pub cmd: Vec<String>,
    pub image: String,
    #[serde(deserialize_with = "null_as_default")]
    pub volumes: BTreeMap<String, serde_json::Value>,
    pub working_dir: String,
    /// `None` keeps the image's entrypoint; `Some([])` (an empty `--entrypoint ""`) clears it.
    #[serde(deserialize_with = "opt_string_or_list")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    #[serde(deserialize_with = "null_as_default")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
}

/// `HostConfig`: what the host grants the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub auto_remove: bool,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub cap_add: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub cap_drop: Vec<String>,
    pub memory: i64,
    pub memory_reservation: i64,
    pub memory_swap: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub pids_limit: Option<i64>,
    pub init: Option<bool>,
    pub network_mode: String,
    pub shm_size: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub binds: Vec<String>,
    pub restart_policy: RestartPolicy,
    #[serde(deserialize_with = "null_as_default")]
    pub sysctls: BTreeMap<String, String>,
    pub oom_score_adj: i64,
    #[serde(deserialize_with = "null_as_default")]
    pub mounts: Vec<crate::volumes::MountSpec>,
    #[serde(deserialize_with = "null_as_default")]
    pub tmpfs: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub volumes_from: Vec<String>,
    /// `""` (private), `host` or `container:<name|id>`.
    pub pid_mode: String,
    /// `""`/`private`/`shareable`, `host` or `container:<name|id>`.
    pub ipc_mode: String,
    #[serde(deserialize_with = "null_as_default")]
    pub extra_hosts: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub dns: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub dns_search: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub dns_options: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub port_bindings: BTreeMap<String, Vec<crate::network::PortBinding>>,
    pub publish_all_ports: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

/// Lifecycle status, as `State.Status` names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// `State` of a container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Incremented on every exit so that `wait?condition=next-exit` can tell a new exit from an old one.
    pub exit_count: u64,
}

impl State {
    pub fn running(&self) -> bool {
        self.status == Status::Running
    }
}

/// Everything the engine keeps about one container; written atomically to `containers/<id>/container.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// Image id ("sha256:…") the container was created from.
    pub image: String,
    /// The image as the user named it (`bb:1`), shown by `ps`.
    pub image_name: String,
    /// Resolved process: entrypoint + cmd merged with the image's.
    pub path: String,
    pub args: Vec<String>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    /// Top layer chain id of the image (None for an image without layers).
    pub image_chain: Option<String>,
    /// Volumes, binds and tmpfs mounts, resolved at create.
    #[serde(default)]
    pub mounts: Vec<crate::volumes::MountPoint>,
    /// The networks it is connected to, by network name (attached whenever it starts).
    #[serde(default)]
    pub networks: BTreeMap<String, crate::network::EndpointSettings>,
    /// Its place on each of them while it runs, by network name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, crate::network::Endpoint>,
}

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl From<StringOrList> for Vec<String> {
    fn from(v: StringOrList) -> Self {
        match v {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// Docker accepts `Cmd` as a string or a list (docker-py sends either).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<StringOrList>::deserialize(d)?.map(Into::into).unwrap_or_default())
}

fn opt_string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<StringOrList>::deserialize(d)?.map(|v| {
        let v: Vec<String> = v.into();
        // `--entrypoint ""` arrives as [""]: it means "no entrypoint".
        if v.len() == 1 && v[0].is_empty() {
            Vec::new()
        } else {
            v
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_from_the_docker_cli_deserialises() {
        let body = r#"{"Hostname":"","User":"","Env":null,"Cmd":["echo","hi"],"Image":"bb:1",
            "Entrypoint":null,"Labels":{},"Tty":false,"OpenStdin":true,"StdinOnce":true}"#;
        let c: ContainerConfig = serde_json::from_str(body).expect("parse");
        assert_eq!(c.cmd, vec!["echo", "hi"]);
        assert!(c.env.is_empty());
        assert_eq!(c.entrypoint, None);
        assert!(c.open_stdin && c.stdin_once);
    }

    #[test]
    fn cmd_may_be_a_plain_string_and_empty_entrypoint_clears() {
        let c: ContainerConfig =
            serde_json::from_str(r#"{"Cmd":"true","Entrypoint":[""]}"#).expect("parse");
        assert_eq!(c.cmd, vec!["true"]);
        assert_eq!(c.entrypoint, Some(vec![]));
    }

    #[test]
    fn host_config_tolerates_nulls() {
        let h: HostConfig =
            serde_json::from_str(r#"{"CapAdd":null,"Binds":null,"PidsLimit":null,"Memory":1024}"#)
                .expect("parse");
        assert_eq!(h.memory, 1024);
        assert!(h.cap_add.is_empty());
    }
}
