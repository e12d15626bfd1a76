//! The default bridge network for containers (`--network bridge`, the default): a pinned
//! network namespace per container attached to the bridge before its process starts, published
//! ports (`-p`, `-P`), released when the container stops. The `net` crate does the work.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ContainerRecord;
use crate::Engine;

/// `HostConfig.PortBindings` values.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A running container's place on the bridge, kept in its record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub attachment: net::Attachment,
    pub ports: Vec<net::PortMapping>,
}

/// Bridge settings of the engine.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    pub name: String,
    /// None: 172.18.0.0/16, or the next free 172.x.0.0/16 if a host route overlaps it.
    pub subnet: Option<String>,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        BridgeOptions { name: "berth0".into(), subnet: None }
    }
}

/// The first of 172.18–31.0.0/16 that no host route (other than our own bridge's) overlaps.
fn free_subnet(bridge: &str) -> String {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let taken: Vec<(u32, u32)> = routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[0] == bridge {
                return None;
            }
            let dest = u32::from_be(u32::from_str_radix(f[1], 16).ok()?);
            let mask = u32::from_be(u32::from_str_radix(f[7], 16).ok()?);
            // The default route overlaps everything; it does not count.
            (mask != 0).then_some((dest, mask))
        })
        .collect();
    for second in 18..32u32 {
        let net = (172 << 24) | (second << 16);
        let mask = 0xffff_0000u32;
        let overlaps = taken.iter().any(|(d, m)| (net & m) == (d & m) || (d & mask) == net);
        if !overlaps {
            return format!("172.{second}.0.0/16");
        }
    }
    "172.18.0.0/16".into()
}

pub(crate) fn open(root: &std::path::Path, opts: &BridgeOptions) -> std::result::Result<net::Network, String> {
    let subnet = opts.subnet.clone().unwrap_or_else(|| free_subnet(&opts.name));
    let subnet: net::Subnet = subnet.parse().map_err(|e: net::Error| e.to_string())?;
    let table = if opts.name == "berth0" { "berth".to_string() } else { format!("berth_{}", opts.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")) };
    net::Network::open(net::Config { bridge: opts.name.clone(), subnet, state_dir: root.join("network"), nft_table: table }).map_err(|e| e.to_string())
}

/// `-p` bindings and `-P` (every EXPOSEd port on a free host port) as port mappings.
fn mappings(rec: &ContainerRecord) -> Result<Vec<net::PortMapping>> {
    let hc = &rec.host_config;
    let mut out = Vec::new();
    let split = |key: &str| -> Result<(u16, String)> {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let port: u16 = port.parse().map_err(|_| Error::InvalidArgument(format!("invalid port {key:?}")))?;
        Ok((port, proto.to_string()))
    };
    for (key, bindings) in &hc.port_bindings {
        let (container_port, protocol) = split(key)?;
        for b in bindings {
            let host_port = if b.host_port.is_empty() { free_port(&protocol)? } else { b.host_port.parse().map_err(|_| Error::InvalidArgument(format!("invalid host port {:?}", b.host_port)))? };
            out.push(net::PortMapping { host_ip: b.host_ip.clone(), host_port, container_port, protocol: protocol.clone() });
        }
    }
    if hc.publish_all_ports {
        for key in rec.config.exposed_ports.keys() {
            let (container_port, protocol) = split(key)?;
            if !out.iter().any(|m| m.container_port == container_port && m.protocol == protocol) {
                out.push(net::PortMapping { host_ip: String::new(), host_port: free_port(&protocol)?, container_port, protocol });
            }
        }
    }
    Ok(out)
}

/// A host port nothing listens on (Docker's ephemeral choice for `-p 80` and `-P`).
fn free_port(protocol: &str) -> Result<u16> {
    let port = match protocol {
        "udp" => std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.local_addr()),
        _ => std::net::TcpListener::bind("0.0.0.0:0").and_then(|s| s.local_addr()),
    };
    port.map(|a| a.port()).map_err(|e| Error::io("choosing a free host port", e))
}

impl Engine {
    pub(crate) fn network(&self) -> Result<&net::Network> {
        self.inner.network.as_ref().map_err(|e| Error::Internal(format!("bridge networking is unavailable on this host: {e}")))
    }

    /// Before start (blocking): a pinned namespace on the bridge, ports published.
    pub(crate) fn connect_bridge(&self, rec: &ContainerRecord) -> Result<Option<Endpoint>> {
        if rec.host_config.network_mode != "bridge" {
            return Ok(None);
        }
        let net = self.network()?;
        let ports = mappings(rec)?;
        let netns = net.create_netns(&rec.id).map_err(|e| Error::Internal(e.to_string()))?;
        match net.attach(&rec.id, &netns, &ports) {
            Ok(attachment) => Ok(Some(Endpoint { attachment, ports })),
            Err(e) => {
                let _ = net.detach(&rec.id);
                Err(match e {
                    net::Error::PortInUse { .. } => Error::Conflict(format!("driver failed programming external connectivity on endpoint {}: {e}", rec.name)),
                    other => Error::Internal(other.to_string()),
                })
            }
        }
    }

    /// After the container stopped (blocking): address, ports and namespace released at once;
    /// the veth is deleted on a background thread (the kernel makes that wait).
    pub(crate) fn disconnect_bridge(&self, id: &str) {
        if let Ok(net) = self.network() {
            if let Err(e) = net.release(id) {
                tracing::warn!(container = %id, error = %e, "releasing the container's network");
            }
            let (engine, id) = (self.clone(), id.to_string());
            std::thread::spawn(move || {
                if let Ok(net) = engine.network() {
                    net.delete_veth(&id);
                }
            });
        }
    }

    /// After a crash: networking of containers that are not running anymore goes.
    pub(crate) fn reconcile_network(&self) {
        if let Ok(net) = self.network() {
            let alive: Vec<String> = self.containers().into_iter().filter(|c| c.state.running()).map(|c| c.id).collect();
            let cleaned = net.reconcile(&alive);
            if !cleaned.is_empty() {
                tracing::info!(count = cleaned.len(), "removed network leftovers of stopped containers");
            }
        }
    }
}

/// `NetworkSettings.Ports` as Docker shows them: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
pub fn ports_json(rec: &ContainerRecord) -> serde_json::Value {
    let mut map: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for key in rec.config.exposed_ports.keys() {
        map.entry(key.clone()).or_insert(serde_json::Value::Null);
    }
    if let Some(ep) = &rec.endpoint {
        for p in &ep.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let host_ip = if p.host_ip.is_empty() { "0.0.0.0" } else { p.host_ip.as_str() };
            let entry = map.entry(key).or_insert(serde_json::Value::Null);
            if !entry.is_array() {
                *entry = serde_json::json!([]);
            }
            if let Some(list) = entry.as_array_mut() {
                list.push(serde_json::json!({"HostIp": host_ip, "HostPort": p.host_port.to_string()}));
            }
        }
    }
    serde_json::to_value(map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_default_subnet_is_a_172_16_block() {
        let s = free_subnet("berth-test-none");
        assert!(s.starts_with("172.") && s.ends_with(".0.0/16"), "{s}");
    }
}
