//! Engine records rendered in the JSON shapes Docker clients parse (strictly, in places).
use serde_json::{json, Value};

use engine::{ContainerRecord, Status};

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn unix_seconds(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map(|t| t.timestamp()).unwrap_or(0)
}

/// go-units' HumanDuration, which `docker ps` shows in STATUS.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let m = s / 60;
    let h = ((s as f64) / 3600.0).round() as i64;
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", s / 3600 / 24 / 365),
    }
}

fn since(rfc3339: Option<&str>) -> i64 {
    rfc3339.map(|t| chrono::Utc::now().timestamp() - unix_seconds(t)).unwrap_or(0)
}

/// `docker ps` STATUS text.
pub fn status_text(r: &ContainerRecord) -> String {
    match r.state.status {
        Status::Running => format!("Up {}", human_duration(since(r.state.started_at.as_deref()))),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            human_duration(since(r.state.finished_at.as_deref()))
        ),
        Status::Created => "Created".into(),
        other => {
            let s = other.as_str();
            let mut c = s.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        }
    }
}

fn command(r: &ContainerRecord) -> String {
    std::iter::once(r.path.as_str()).chain(r.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
}

/// One entry of `GET /containers/json`.
pub fn container_summary(r: &ContainerRecord) -> Value {
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image_name,
        "ImageID": r.image,
        "Command": command(r),
        "Created": unix_seconds(&r.created),
        "Ports": summary_ports(r),
        "Labels": r.config.labels,
        "State": r.state.status.as_str(),
        "Status": status_text(r),
        "HostConfig": {"NetworkMode": r.host_config.network_mode},
        "NetworkSettings": {"Networks": networks(r)},
        "Mounts": mounts(r),
    })
}

/// `NetworkSettings.Networks`: every network the container is on, with addresses while it runs.
fn networks(r: &ContainerRecord) -> Value {
    let mut out = serde_json::Map::new();
    for (name, settings) in &r.networks {
        let ep = r.endpoints.get(name);
        let a = ep.map(|e| &e.attachment);
        out.insert(
            name.clone(),
            json!({
                "IPAMConfig": null, "Links": null,
                "Aliases": if settings.aliases.is_empty() { Value::Null } else { json!(settings.aliases) },
                "NetworkID": ep.map(|e| e.network_id.as_str()).unwrap_or_default(),
                "EndpointID": if ep.is_some() { r.id.as_str() } else { "" },
                "Gateway": a.map(|a| a.gateway.to_string()).unwrap_or_default(),
                "IPAddress": a.map(|a| a.ip.to_string()).unwrap_or_default(),
                "IPPrefixLen": a.map(|a| a.prefix).unwrap_or(0),
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "MacAddress": a.map(|a| a.mac.clone()).unwrap_or_default(),
                "DriverOpts": null,
                "DNSNames": ep.filter(|e| !e.dns_names.is_empty()).map(|e| json!(e.dns_names)).unwrap_or(Value::Null),
            }),
        );
    }
    Value::Object(out)
}

/// The top-level (legacy) address fields describe the default bridge only, as Docker's do.
fn network_settings(r: &ContainerRecord) -> Value {
    let ep = r.endpoints.get("bridge");
    let a = ep.map(|e| &e.attachment);
    let sandbox = r.endpoints.values().next().map(|e| e.attachment.netns.display().to_string()).unwrap_or_default();
    json!({
        "Bridge": "", "SandboxID": if sandbox.is_empty() { "" } else { r.id.as_str() }, "HairpinMode": false,
        "Ports": engine::network::ports_json(r),
        "SandboxKey": sandbox,
        "EndpointID": if a.is_some() { r.id.as_str() } else { "" },
        "Gateway": a.map(|a| a.gateway.to_string()).unwrap_or_default(),
        "IPAddress": a.map(|a| a.ip.to_string()).unwrap_or_default(),
        "IPPrefixLen": a.map(|a| a.prefix).unwrap_or(0),
        "MacAddress": a.map(|a| a.mac.clone()).unwrap_or_default(),
        "Networks": networks(r),
    })
}

/// `Ports` of `GET /containers/json`.
fn summary_ports(r: &ContainerRecord) -> Value {
    Value::Array(
        r.endpoints
            .values()
            .flat_map(|e| e.ports.iter())
            .map(|p| json!({"IP": if p.host_ip.is_empty() { "0.0.0.0" } else { p.host_ip.as_str() }, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol}))
            .collect(),
    )
}

/// `Mounts` as Docker shows them.
pub fn mounts(r: &ContainerRecord) -> Value {
    Value::Array(
        r.mounts
            .iter()
            .map(|m| {
                let mut v = json!({
                    "Type": m.kind,
                    "Source": m.source,
                    "Destination": m.destination,
                    "Mode": m.mode,
                    "RW": m.rw,
                    "Propagation": m.propagation,
                });
                if m.kind == "volume" {
                    v["Name"] = json!(m.name);
                    v["Driver"] = json!("local");
                }
                v
            })
            .collect(),
    )
}

/// `GET /containers/{id}/json`.
pub fn container_inspect(r: &ContainerRecord, log_path: &str, dir: &str, exec_ids: &[String]) -> Value {
    let s = &r.state;
    let mut host_config = serde_json::to_value(&r.host_config).unwrap_or_default();
    host_config["LogConfig"] = json!({"Type": "json-file", "Config": {}});
    let mut config = serde_json::to_value(&r.config).unwrap_or_default();
    if let Some(obj) = config.as_object_mut() {
        if r.config.entrypoint.is_none() {
            obj.insert("Entrypoint".into(), Value::Null);
        }
        obj.insert("Image".into(), json!(r.image_name));
    }
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": s.status.as_str(),
            "Running": s.status == Status::Running,
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at.as_deref().unwrap_or(ZERO_TIME),
            "FinishedAt": s.finished_at.as_deref().unwrap_or(ZERO_TIME),
        },
        "Image": r.image,
        "ResolvConfPath": format!("{dir}/resolv.conf"),
        "HostnamePath": format!("{dir}/hostname"),
        "HostsPath": format!("{dir}/hosts"),
        "LogPath": log_path,
        "Name": format!("/{}", r.name),
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": if exec_ids.is_empty() { Value::Null } else { json!(exec_ids) },
        "HostConfig": host_config,
        "GraphDriver": {"Name": "overlay2", "Data": {"MergedDir": format!("{dir}/rootfs")}},
        "Mounts": mounts(r),
        "Config": config,
        "NetworkSettings": network_settings(r),
    })
}

fn image_config(img: &image::Image) -> Value {
    serde_json::to_value(&img.config).unwrap_or_default()
}

/// One entry of `GET /images/json`.
pub fn image_summary(img: &image::Image, containers: usize) -> Value {
    let cfg = image_config(img);
    json!({
        "Id": img.id.to_string(),
        "ParentId": "",
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Created": img.created.as_deref().map(unix_seconds).unwrap_or(0),
        "Size": img.size,
        "SharedSize": -1,
        "VirtualSize": img.size,
        "Labels": cfg["config"]["Labels"].clone(),
        "Containers": containers,
    })
}

/// `GET /images/{name}/json`.
pub fn image_inspect(img: &image::Image) -> Value {
    let cfg = image_config(img);
    let run_config = cfg.get("config").cloned().unwrap_or_else(|| json!({}));
    json!({
        "Id": img.id.to_string(),
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": "",
        "Comment": cfg["history"].as_array().and_then(|h| h.last()).and_then(|h| h["comment"].as_str()).unwrap_or(""),
        "Created": img.created.clone().unwrap_or_else(|| ZERO_TIME.to_string()),
        "Container": "",
        "ContainerConfig": run_config,
        "DockerVersion": "",
        "Author": cfg["author"].as_str().unwrap_or(""),
        "Config": run_config,
        "Architecture": cfg["architecture"],
        "Os": cfg["os"],
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay2", "Data": {}},
        "RootFS": {"Type": "layers", "Layers": cfg["rootfs"]["diff_ids"]},
        "Metadata": {"LastTagTime": ZERO_TIME},
    })
}

/// Docker's decimal size units as its progress bars print them: `1.23MB`, `512B`, `10.5kB`.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        let s = format!("{v:.3}");
        // Four significant digits, as Go's %.4g.
        let trimmed: String = s.chars().take(if v >= 100.0 { 5 } else { 4 }).collect();
        format!("{}{}", trimmed.trim_end_matches('.'), units[i])
    }
}

/// `[=====>        ]  1.2MB/2.3MB`, the bar Docker's JSON progress carries.
pub fn progress_bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (current.min(total) * WIDTH).checked_div(total).unwrap_or(0) as usize;
    let bar = if filled >= WIDTH as usize { "=".repeat(WIDTH as usize) } else { format!("{}>{}", "=".repeat(filled), " ".repeat(WIDTH as usize - filled - 1)) };
    format!("[{bar}] {:>8}/{}", human_size(current), human_size(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(65), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
