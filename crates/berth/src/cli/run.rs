//! `berth run` and `berth create`: docker's flags mapped onto the create body, and docker's run
//! flow (create → attach → wait registered → start → stream → exit with the container's status).
use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::CreateContainerOptions;

use super::attach::{self, RawTerminal};
use super::{out, CliError, CliResult, Client};

#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Run the container in the background and print its ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to copy it from this environment).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// User name or UID, optionally with a group (name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Keep STDIN open and attach it.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short = 'm', long, value_parser = parse_memory)]
    pub memory: Option<i64>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation", value_parser = parse_memory)]
    pub memory_reservation: Option<i64>,
    /// Number of CPUs (decimal).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Tune the container's pids limit (-1 for unlimited).
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Mount the container's root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add Linux capabilities (or ALL).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (or ALL).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    pub privileged: bool,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Set metadata on the container (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Signal to stop the container.
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop the container.
    #[arg(long = "stop-timeout", allow_negative_numbers = true)]
    pub stop_timeout: Option<i64>,
    /// IMAGE [COMMAND] [ARG...]
    /// Bind mount a volume: NAME:/dst[:opts], /host/dir:/dst[:ro|rw|shared|…], or /dst (anonymous).
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    pub volumes: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,src=…,dst=…[,readonly][,bind-propagation=…][,tmpfs-size=…][,tmpfs-mode=…].
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// Mount a tmpfs directory: /dst[:opts].
    #[arg(long = "tmpfs", value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s): NAME[:ro|rw].
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// Connect to a network: bridge (the default), a user network's name, none, host or container:NAME.
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Add a network-scoped alias (user networks): other members resolve it to this container.
    #[arg(long = "network-alias", alias = "net-alias", value_name = "ALIAS")]
    pub network_aliases: Vec<String>,
    /// PID namespace: host or container:NAME.
    #[arg(long = "pid")]
    pub pid: Option<String>,
    /// IPC namespace: private, shareable, host or container:NAME.
    #[arg(long = "ipc")]
    pub ipc: Option<String>,
    /// Publish a container's port(s) to the host: [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO].
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random host ports.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port without publishing it.
    #[arg(long = "expose", value_name = "PORT[/PROTO]")]
    pub expose: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers.
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains.
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options.
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Size of /dev/shm (e.g. 128m).
    #[arg(long = "shm-size", value_parser = parse_memory)]
    pub shm_size: Option<i64>,
    #[arg(value_name = "IMAGE [COMMAND] [ARG...]", required = true, num_args = 1.., trailing_var_arg = true)]
    pub argv: Vec<String>,
}

fn parse_memory(s: &str) -> Result<i64, String> {
    super::units::ram_in_bytes(s)
}

fn parse_cpus(s: &str) -> Result<i64, String> {
    super::units::nano_cpus(s)
}

impl RunArgs {
    pub fn image(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or_default()
    }

    pub fn command(&self) -> &[String] {
        self.argv.get(1..).unwrap_or_default()
    }

    /// The create body docker's CLI would send for these flags. `lookup` reads this process's
    /// environment (for `-e KEY`); env files must already be read into `env_files`.
    pub fn create_body(&self, env_files: &[String], lookup: &dyn Fn(&str) -> Option<String>) -> Result<ContainerCreateBody, String> {
        let mut env = Vec::new();
        for content in env_files {
            env.extend(parse_env_file(content, lookup));
        }
        env.extend(self.env.iter().filter_map(|e| expand_env(e, lookup)));
        let attach_output = !self.detach;
        let entrypoint = self.entrypoint.as_ref().map(|e| if e.is_empty() { vec![String::new()] } else { vec![e.clone()] });
        Ok(ContainerCreateBody {
            image: Some(self.image().to_string()),
            cmd: (!self.command().is_empty()).then(|| self.command().to_vec()),
            entrypoint,
            env: (!env.is_empty()).then_some(env),
            working_dir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            tty: Some(self.tty),
            open_stdin: Some(self.interactive),
            stdin_once: Some(self.interactive && !self.detach),
            attach_stdin: Some(self.interactive && !self.detach),
            attach_stdout: Some(attach_output),
            attach_stderr: Some(attach_output),
            labels: (!self.labels.is_empty()).then(|| parse_labels(&self.labels)),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            host_config: Some(self.host_config()?),
            exposed_ports: {
                let mut ports: Vec<String> = self.expose.iter().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") }).collect();
                for spec in &self.publish {
                    let (key, _) = parse_publish(spec)?;
                    if !ports.contains(&key) {
                        ports.push(key);
                    }
                }
                (!ports.is_empty()).then_some(ports)
            },
            volumes: {
                // `-v /path`: an anonymous volume, which docker sends as Config.Volumes.
                let anon: Vec<String> = self.volumes.iter().filter(|v| !v.contains(':')).cloned().collect();
                (!anon.is_empty()).then_some(anon)
            },
            networking_config: match (&self.network, self.network_aliases.is_empty()) {
                (_, true) => None,
                (None, false) => return Err("network-scoped aliases are only supported for user-defined networks: add --network NAME".into()),
                (Some(n), false) => Some(bollard::models::NetworkingConfig {
                    endpoints_config: Some(
                        [(n.clone(), bollard::models::EndpointSettings { aliases: Some(self.network_aliases.clone()), ..Default::default() })].into_iter().collect(),
                    ),
                }),
            },
            ..Default::default()
        })
    }

    fn host_config(&self) -> Result<HostConfig, String> {
        let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let binds: Vec<String> = self.volumes.iter().filter(|v| v.contains(':')).cloned().collect();
        let mounts = self.mounts.iter().map(|m| parse_mount_flag(m)).collect::<Result<Vec<_>, _>>()?;
        let tmpfs: std::collections::HashMap<String, String> = self
            .tmpfs
            .iter()
            .map(|t| match t.split_once(':') {
                Some((d, o)) => (d.to_string(), o.to_string()),
                None => (t.clone(), String::new()),
            })
            .collect();
        Ok(HostConfig {
            binds: list(&binds),
            mounts: (!mounts.is_empty()).then_some(mounts),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            volumes_from: list(&self.volumes_from),
            pid_mode: self.pid.clone(),
            ipc_mode: self.ipc.clone(),
            shm_size: self.shm_size,
            extra_hosts: list(&self.add_host),
            port_bindings: {
                let mut map: std::collections::HashMap<String, Option<Vec<bollard::models::PortBinding>>> = Default::default();
                for spec in &self.publish {
                    let (key, binding) = parse_publish(spec)?;
                    map.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
                }
                (!map.is_empty()).then_some(map)
            },
            publish_all_ports: self.publish_all.then_some(true),
            dns: list(&self.dns),
            dns_search: list(&self.dns_search),
            dns_options: list(&self.dns_option),
            auto_remove: Some(self.rm),
            memory: self.memory,
            memory_reservation: self.memory_reservation,
            nano_cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            pids_limit: self.pids_limit,
            readonly_rootfs: Some(self.read_only),
            cap_add: list(&self.cap_add),
            cap_drop: list(&self.cap_drop),
            privileged: Some(self.privileged),
            init: self.init.then_some(true),
            network_mode: Some(self.network.clone().unwrap_or_else(|| "default".to_string())),
            ..Default::default()
        })
    }
}

/// `-p [ip:][host_port:]container_port[/proto]` → ("80/tcp", binding).
fn parse_publish(spec: &str) -> Result<(String, bollard::models::PortBinding), String> {
    let (addr, proto) = spec.rsplit_once('/').map_or((spec, "tcp"), |(a, p)| (a, p));
    if proto != "tcp" && proto != "udp" {
        return Err(format!("invalid proto: {proto}"));
    }
    let parts: Vec<&str> = addr.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => return Err(format!("invalid publish spec {spec:?}: use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]")),
    };
    let check = |p: &str| p.is_empty() || p.parse::<u16>().is_ok_and(|n| n > 0);
    if container.is_empty() || !check(container) || !check(host) {
        return Err(format!("invalid containerPort or hostPort in {spec:?}"));
    }
    let binding = bollard::models::PortBinding { host_ip: (!ip.is_empty()).then(|| ip.to_string()), host_port: Some(host.to_string()) };
    Ok((format!("{container}/{proto}"), binding))
}

/// `--mount type=bind,src=/a,dst=/b,readonly,bind-propagation=rshared` as docker's CLI reads it.
fn parse_mount_flag(spec: &str) -> Result<bollard::models::Mount, String> {
    use bollard::models::{Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType};
    let mut m = Mount::default();
    let mut typ = "volume".to_string();
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').map_or((field, None), |(k, v)| (k, Some(v)));
        let need = |v: Option<&str>| v.map(String::from).ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match k {
            "type" => typ = need(v)?,
            "source" | "src" => m.source = Some(need(v)?),
            "target" | "destination" | "dst" => m.target = Some(need(v)?),
            "readonly" | "ro" => m.read_only = Some(v.is_none_or(|v| v == "true" || v == "1")),
            "bind-propagation" => {
                let p = need(v)?;
                let parsed = p.parse::<MountBindOptionsPropagationEnum>().map_err(|_| format!("invalid bind-propagation: {p}"))?;
                m.bind_options = Some(MountBindOptions { propagation: Some(parsed), ..Default::default() });
            }
            "tmpfs-size" => {
                let size = parse_memory(&need(v)?)?;
                m.tmpfs_options.get_or_insert_with(MountTmpfsOptions::default).size_bytes = Some(size);
            }
            "tmpfs-mode" => {
                let mode = i64::from_str_radix(&need(v)?, 8).map_err(|e| format!("invalid tmpfs-mode: {e}"))?;
                m.tmpfs_options.get_or_insert_with(MountTmpfsOptions::default).mode = Some(mode);
            }
            "volume-nocopy" | "consistency" => {}
            other => return Err(format!("unexpected key '{other}' in '{spec}'")),
        }
    }
    m.typ = Some(match typ.as_str() {
        "bind" => MountType::BIND,
        "volume" => MountType::VOLUME,
        "tmpfs" => MountType::TMPFS,
        other => return Err(format!("unknown mount type {other:?}: use bind, volume or tmpfs")),
    });
    if m.target.is_none() {
        return Err("target is required".into());
    }
    Ok(m)
}

/// `KEY=VALUE` passes through; a bare `KEY` takes this process's value, and is left out when it
/// has none (docker sends the bare key, which the daemon treats as unset: the same effect).
pub(super) fn expand_env(e: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if e.contains('=') {
        return Some(e.to_string());
    }
    lookup(e).map(|v| format!("{e}={v}"))
}

/// Docker's env-file format: one variable per line, `#` comments and blank lines skipped.
fn parse_env_file(content: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    content
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| expand_env(l.trim_end_matches('\r'), lookup))
        .collect()
}

fn parse_labels(labels: &[String]) -> HashMap<String, String> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// `bb` → `bb:latest`, as docker names an image it cannot find.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// docker's exit status for a failed start: 127 command not found, 126 not executable, 125 else.
pub fn start_failure_code(message: &str) -> u8 {
    let m = message.to_ascii_lowercase();
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied") {
        126
    } else {
        125
    }
}

fn read_env_files(a: &RunArgs) -> CliResult<Vec<String>> {
    a.env_file
        .iter()
        .map(|p| std::fs::read_to_string(p).map_err(|e| CliError::Other(format!("open {}: {e}", p.display()))))
        .collect()
}

async fn create_container(c: &Client, a: &RunArgs) -> CliResult<String> {
    let body = a.create_body(&read_env_files(a)?, &|k| std::env::var(k).ok()).map_err(CliError::Other)?;
    let opts = CreateContainerOptions { name: a.name.clone(), platform: String::new() };
    match c.docker.create_container(Some(opts), body).await {
        Ok(r) => {
            for w in r.warnings {
                eprintln!("WARNING: {w}");
            }
            Ok(r.id)
        }
        Err(e) => match c.err(e) {
            CliError::Daemon { status: 404, message } if message.contains("No such image") => {
                let image = with_default_tag(a.image());
                eprintln!("Unable to find image '{image}' locally");
                super::pull::run_pull(c, &image, None, false, true).await?;
                let body = a.create_body(&read_env_files(a)?, &|k| std::env::var(k).ok()).map_err(CliError::Other)?;
                let opts = CreateContainerOptions { name: a.name.clone(), platform: String::new() };
                let r = c.docker.create_container(Some(opts), body).await.map_err(|e| c.err(e))?;
                for w in r.warnings {
                    eprintln!("WARNING: {w}");
                }
                Ok(r.id)
            }
            other => Err(other),
        },
    }
}

pub async fn create(c: &Client, a: RunArgs) -> CliResult<u8> {
    let id = create_container(c, &a).await?;
    out(&format!("{id}\n"));
    Ok(0)
}

pub async fn run(c: &Client, a: RunArgs) -> CliResult<u8> {
    if a.tty && a.interactive && !attach::stdin_is_terminal() {
        return Err(CliError::Other("the input device is not a TTY".into()));
    }
    let id = create_container(c, &a).await?;
    if a.detach {
        if let Err(e) = c.docker.start_container(&id, None).await {
            return Ok(print_start_failure(c.err(e)));
        }
        out(&format!("{id}\n"));
        return Ok(0);
    }
    let attach = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(a.interactive));
    let (output, input) = c.ep.upgrade("POST", &attach, None).await?.hijack();
    // The wait is registered (its headers are back) before start, so a fast exit is not missed.
    let condition = if a.rm { "removed" } else { "next-exit" };
    let waiting = c.ep.send("POST", &format!("/containers/{id}/wait?condition={condition}"), None).await?;
    let exit = tokio::spawn(waiting.body());
    let raw = if a.tty { RawTerminal::enable() } else { None };
    if let Err(e) = c.docker.start_container(&id, None).await {
        drop(raw);
        return Ok(print_start_failure(c.err(e)));
    }
    let _helpers = attach::Helpers::start(c, &id, a.tty, attach::Target::Container);
    let code = stream_until_exit(&id, output, input, a.interactive, a.tty, exit).await;
    drop(raw);
    code
}

/// Streams a started container's output (feeding it stdin when asked) and returns its exit status
/// from the wait answer. A stream that breaks is not fatal when the wait still tells the status.
pub async fn stream_until_exit(
    id: &str,
    output: super::http::BodyReader,
    input: tokio::net::unix::OwnedWriteHalf,
    stdin: bool,
    tty: bool,
    exit: tokio::task::JoinHandle<CliResult<Vec<u8>>>,
) -> CliResult<u8> {
    // Without -i the input half stays open (unused) until the output ends.
    let (stdin_task, _idle_input) = if stdin { (Some(attach::spawn_stdin(input)), None) } else { (None, Some(input)) };
    let streamed = attach::pump(output, tty).await;
    if let Some(t) = stdin_task {
        t.abort();
    }
    let body = exit.await.map_err(|e| CliError::Other(format!("waiting for {id}: {e}")))?;
    match (body, streamed) {
        (Ok(body), streamed) => {
            if let Err(e) = streamed {
                tracing::debug!("output stream of {id} ended badly: {e}");
            }
            wait_status(&body)
        }
        (Err(e), _) => Err(e),
    }
}

/// Prints a start error as docker run does and returns its exit code.
fn print_start_failure(e: CliError) -> u8 {
    match &e {
        CliError::Daemon { message, .. } => {
            eprintln!("berth: {e}");
            start_failure_code(message)
        }
        _ => super::report(&e, true),
    }
}

/// The exit status in a wait answer `{"StatusCode":N,"Error":…}`.
pub fn wait_status(body: &[u8]) -> CliResult<u8> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| CliError::Other(format!("invalid wait answer from the engine: {e}")))?;
    if let Some(msg) = v.pointer("/Error/Message").and_then(|m| m.as_str()).filter(|m| !m.is_empty()) {
        eprintln!("berth: {msg}");
    }
    let code = v.get("StatusCode").and_then(|c| c.as_i64()).ok_or_else(|| CliError::Other("wait answer without StatusCode".into()))?;
    Ok((code & 0xff) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: RunArgs,
    }

    fn args(v: &[&str]) -> RunArgs {
        let mut all = vec!["run"];
        all.extend_from_slice(v);
        T::try_parse_from(all).map(|t| t.a).unwrap_or_else(|e| panic!("{e}"))
    }

    fn body(v: &[&str]) -> ContainerCreateBody {
        let lookup = |k: &str| (k == "FROM_HOST").then(|| "host value".to_string());
        args(v).create_body(&[], &lookup).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn image_and_command_split_and_later_flags_belong_to_the_command() {
        let a = args(&["--rm", "bb:1", "sh", "-c", "echo -n hi", "--rm"]);
        assert_eq!(a.image(), "bb:1");
        assert_eq!(a.command(), ["sh", "-c", "echo -n hi", "--rm"]);
        let b = body(&["bb:1"]);
        assert_eq!(b.cmd, None, "no command keeps the image's");
    }

    #[test]
    fn memory_and_cpus_map_to_bytes_and_nano_cpus() {
        let b = body(&["-m", "64m", "--memory-reservation", "1g", "--cpus", "0.5", "-c", "512", "--pids-limit", "20", "bb:1"]);
        let h = b.host_config.unwrap_or_default();
        assert_eq!(h.memory, Some(64 << 20));
        assert_eq!(h.memory_reservation, Some(1 << 30));
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.cpu_shares, Some(512));
        assert_eq!(h.pids_limit, Some(20));
    }

    #[test]
    fn env_takes_bare_keys_from_the_environment() {
        let b = body(&["-e", "A=1", "-e", "FROM_HOST", "-e", "UNSET_HERE", "--env", "B=x=y", "bb:1"]);
        assert_eq!(b.env, Some(vec!["A=1".into(), "FROM_HOST=host value".into(), "B=x=y".into()]));
    }

    #[test]
    fn env_files_come_before_env_flags() {
        let a = args(&["-e", "B=2", "bb:1"]);
        let file = "# comment\n\nA=1\n  FROM_HOST\r\nB=1\n".to_string();
        let lookup = |k: &str| (k == "FROM_HOST").then(|| "h".to_string());
        let b = a.create_body(&[file], &lookup).unwrap_or_default();
        assert_eq!(b.env, Some(vec!["A=1".into(), "FROM_HOST=h".into(), "B=1".into(), "B=2".into()]));
    }

    #[test]
    fn user_workdir_hostname_and_labels_pass_through() {
        let b = body(&["-u", "1000:1000", "-w", "/tmp", "-h", "box", "-l", "a=b", "-l", "flag", "bb:1"]);
        assert_eq!(b.user.as_deref(), Some("1000:1000"));
        assert_eq!(b.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(b.hostname.as_deref(), Some("box"));
        let labels = b.labels.unwrap_or_default();
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(labels.get("flag").map(String::as_str), Some(""));
        assert_eq!(body(&["-u", "www", "bb:1"]).user.as_deref(), Some("www"));
    }

    #[test]
    fn capabilities_privileges_and_security_flags_map_to_host_config() {
        let b = body(&["--cap-drop", "ALL", "--cap-add", "KILL", "--cap-add", "NET_ADMIN", "--privileged", "--read-only", "--init", "--rm", "bb:1"]);
        let h = b.host_config.unwrap_or_default();
        assert_eq!(h.cap_drop, Some(vec!["ALL".into()]));
        assert_eq!(h.cap_add, Some(vec!["KILL".into(), "NET_ADMIN".into()]));
        assert_eq!(h.privileged, Some(true));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(h.init, Some(true));
        assert_eq!(h.auto_remove, Some(true));
        let plain = body(&["bb:1"]).host_config.unwrap_or_default();
        assert_eq!((plain.cap_add, plain.init, plain.auto_remove), (None, None, Some(false)));
    }

    #[test]
    fn entrypoint_is_one_word_and_empty_resets_it() {
        assert_eq!(body(&["--entrypoint", "echo", "bb:1", "hi"]).entrypoint, Some(vec!["echo".into()]));
        assert_eq!(body(&["--entrypoint", "", "bb:1"]).entrypoint, Some(vec![String::new()]));
        assert_eq!(body(&["bb:1"]).entrypoint, None);
    }

    #[test]
    fn stdio_flags_follow_docker() {
        let b = body(&["-i", "-t", "bb:1"]);
        assert_eq!((b.tty, b.open_stdin, b.stdin_once, b.attach_stdin), (Some(true), Some(true), Some(true), Some(true)));
        let d = body(&["-d", "-i", "bb:1"]);
        assert_eq!((d.attach_stdout, d.stdin_once, d.open_stdin), (Some(false), Some(false), Some(true)));
        let b = body(&["--stop-signal", "SIGUSR1", "--stop-timeout", "3", "bb:1"]);
        assert_eq!((b.stop_signal.as_deref(), b.stop_timeout), (Some("SIGUSR1"), Some(3)));
    }

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        assert_eq!(start_failure_code("exec: \"nope\": executable file not found in $PATH"), 127);
        assert_eq!(start_failure_code("open /x: no such file or directory"), 127);
        assert_eq!(start_failure_code("exec /etc: permission denied"), 126);
        assert_eq!(start_failure_code("cgroup setup failed"), 125);
    }

    #[test]
    fn wait_answers_give_the_exit_status() {
        assert_eq!(wait_status(br#"{"StatusCode":3,"Error":null}"#).ok(), Some(3));
        assert_eq!(wait_status(br#"{"StatusCode":137}"#).ok(), Some(137));
        assert!(wait_status(b"{}").is_err());
    }

    #[test]
    fn missing_images_are_named_with_their_default_tag() {
        assert_eq!(with_default_tag("bb"), "bb:latest");
        assert_eq!(with_default_tag("bb:2"), "bb:2");
        assert_eq!(with_default_tag("localhost:5000/bb"), "localhost:5000/bb:latest");
    }

    fn run_against(script: super::super::fake_engine::Script, argv: &[&str]) -> (CliResult<u8>, Vec<String>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let fake = super::super::fake_engine::FakeEngine::start(script);
            let client = super::super::host::connect(fake.socket.clone()).unwrap_or_else(|e| panic!("{e}"));
            let r = run(&client, args(argv)).await;
            (r, fake.requests())
        })
    }

    #[test]
    fn run_attaches_and_registers_the_wait_before_starting_and_exits_with_the_status() {
        let script = super::super::fake_engine::Script { frames: vec![(1, b"out\n".to_vec()), (2, b"err\n".to_vec())], exit_code: 3, ..Default::default() };
        let (r, reqs) = run_against(script, &["--rm", "bb:1", "sh", "-c", "exit 3"]);
        assert_eq!(r.ok(), Some(3), "{reqs:?}");
        let paths: Vec<&str> = reqs.iter().filter_map(|l| l.split_whitespace().nth(1)).map(|p| p.split('?').next().unwrap_or(p)).collect();
        assert_eq!(paths, ["/v1.44/containers/create", "/v1.44/containers/c1/attach", "/v1.44/containers/c1/wait", "/v1.44/containers/c1/start"]);
        assert!(reqs[2].contains("condition=removed"), "--rm waits for removal: {}", reqs[2]);
    }

    #[test]
    fn a_missing_image_is_reported_as_docker_does_with_exit_125() {
        let script = super::super::fake_engine::Script { missing_image: true, ..Default::default() };
        let (r, _) = run_against(script, &["bb:2", "true"]);
        match r {
            Err(e @ CliError::Daemon { .. }) => {
                assert!(e.to_string().contains("pull access denied for bb"), "{e}");
                assert_eq!(super::super::report(&e, true), 125);
            }
            other => panic!("expected a daemon error, got {:?}", other.map_err(|e| e.to_string())),
        }
    }

    #[test]
    fn a_command_that_cannot_be_found_exits_127() {
        let script = super::super::fake_engine::Script {
            start_error: Some("exec: \"no-such-command\": executable file not found in $PATH".into()),
            ..Default::default()
        };
        let (r, _) = run_against(script, &["bb:1", "no-such-command"]);
        assert_eq!(r.ok(), Some(127));
    }

    #[test]
    fn detached_runs_create_and_start_without_attaching() {
        let (r, reqs) = run_against(super::super::fake_engine::Script::default(), &["-d", "bb:1", "sleep", "1"]);
        assert_eq!(r.ok(), Some(0));
        assert!(reqs.iter().all(|l| !l.contains("/attach") && !l.contains("/wait")), "{reqs:?}");
    }

    #[test]
    fn bad_units_are_refused_at_parse_time() {
        assert!(T::try_parse_from(["run", "-m", "lots", "bb:1"]).is_err());
        assert!(T::try_parse_from(["run", "--cpus", "0.0000000001", "bb:1"]).is_err());
    }
}
