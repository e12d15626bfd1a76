//! Container networks: the default bridge (`--network bridge`) and user-defined bridge networks
//! (`network create`), each with its own bridge device and subnet, the user networks with DNS for
//! their members' names and aliases. A container gets a pinned network namespace attached to its
//! networks before its process starts (eth0, eth1, … in the order connected), published ports
//! (`-p`, `-P`) towards its first address; all of it released when the container stops. The `net`
//! crate does the kernel work; this module keeps the records and Docker's rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{ContainerRecord, HostConfig};
use crate::{blocking, lock, Engine};

/// `HostConfig.PortBindings` values.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

/// A running container's place on one network, kept in its record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    pub network_id: String,
    pub attachment: net::Attachment,
    /// Published ports (on the first network only).
    pub ports: Vec<net::PortMapping>,
    /// Names this container answers to on the network (user networks only).
    #[serde(default)]
    pub dns_names: Vec<String>,
}

/// What a container asks of one network (`NetworkingConfig.EndpointsConfig` values, and the
/// body of `network connect`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointSettings {
    #[serde(deserialize_with = "crate::model::null_as_default")]
    pub aliases: Vec<String>,
}

/// A network, as kept in `networks/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, or `host` / `null` for the predefined host and none networks.
    pub driver: String,
    pub created: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    /// The bridge device.
    pub bridge: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// bridge, host, none: made by the engine, never removed.
    pub predefined: bool,
}

impl NetworkRecord {
    /// User networks resolve their members' names; the default bridge does not (as Docker).
    pub fn has_dns(&self) -> bool {
        !self.predefined && self.bridge.is_some()
    }
}

/// `network create` options.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
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

/// Host routes (device, subnet) other than through `own` devices; the default route does not
/// count (it overlaps everything).
fn host_routes(own: &[String]) -> Vec<(String, net::Subnet)> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || own.iter().any(|o| o == f[0]) {
                return None;
            }
            let dest = u32::from_be(u32::from_str_radix(f[1], 16).ok()?);
            let mask = u32::from_be(u32::from_str_radix(f[7], 16).ok()?);
            let prefix = u8::try_from(mask.count_ones()).ok()?;
            (prefix >= 8).then(|| (f[0].to_string(), net::Subnet { network: std::net::Ipv4Addr::from(dest), prefix }))
        })
        .collect()
}

/// Docker's default address pools: 172.17–31.0.0/16, then 192.168.0.0/16 in /20s.
fn pool_candidates() -> impl Iterator<Item = net::Subnet> {
    let b16 = (17..32u8).map(|second| net::Subnet { network: std::net::Ipv4Addr::new(172, second, 0, 0), prefix: 16 });
    let b20 = (0..16u8).map(|i| net::Subnet { network: std::net::Ipv4Addr::new(192, 168, i * 16, 0), prefix: 20 });
    b16.chain(b20)
}

/// The first pool block overlapping neither a host route nor a subnet in `taken`.
fn free_subnet(own: &[String], taken: &[net::Subnet], from: u8) -> Option<net::Subnet> {
    let routes = host_routes(own);
    pool_candidates()
        .filter(|s| s.prefix != 16 || s.network.octets()[1] >= from)
        .find(|s| !routes.iter().any(|(_, r)| r.overlaps(s)) && !taken.iter().any(|t| t.overlaps(s)))
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

/// `NetworkSettings.Ports` as Docker shows them: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
pub fn ports_json(rec: &ContainerRecord) -> serde_json::Value {
    let mut map: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for key in rec.config.exposed_ports.keys() {
        map.entry(key.clone()).or_insert(serde_json::Value::Null);
    }
    for ep in rec.endpoints.values() {
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

/// The engine's networks and the host machinery behind them.
pub(crate) struct Networking {
    /// Bridges, namespaces and the nftables table (its set-up error, when the host cannot).
    host: std::result::Result<net::Host, String>,
    /// Every network by id, the predefined ones included.
    records: std::sync::Mutex<BTreeMap<String, NetworkRecord>>,
    /// The user networks' DNS server (None where it could not start).
    dns: Option<net::Dns>,
    /// `networks/<id>.json`.
    dir: PathBuf,
}

fn save_record(dir: &Path, r: &NetworkRecord) -> Result<()> {
    let data = serde_json::to_vec_pretty(r).map_err(|e| Error::Internal(format!("network {}: {e}", r.name)))?;
    crate::store::write_atomic(&dir.join(format!("{}.json", r.id)), &data)
}

fn load_records(dir: &Path) -> Vec<NetworkRecord> {
    let Ok(d) = std::fs::read_dir(dir) else { return Vec::new() };
    d.flatten()
        .filter_map(|e| match serde_json::from_slice::<NetworkRecord>(&std::fs::read(e.path()).ok()?) {
            Ok(r) => Some(r),
            Err(err) => {
                tracing::warn!(file = %e.path().display(), error = %err, "skipping an unreadable network record");
                None
            }
        })
        .collect()
}

/// Docker's rule for network names.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Opens the networks: the predefined ones (bridge unless disabled, host, none), the user networks
/// from disk, their bridges and table, and DNS for the user networks.
pub(crate) fn open(root: &Path, bridge: Option<&BridgeOptions>) -> Networking {
    let dir = root.join("networks");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(error = %e, "cannot create the networks directory");
    }
    let mut records: BTreeMap<String, NetworkRecord> = load_records(&dir).into_iter().map(|r| (r.id.clone(), r)).collect();
    let predefined = |name: &str, driver: &str| NetworkRecord {
        id: crate::lifecycle::new_id(),
        name: name.into(),
        driver: driver.into(),
        created: crate::now_rfc3339(),
        subnet: None,
        gateway: None,
        bridge: None,
        internal: false,
        attachable: false,
        labels: BTreeMap::new(),
        options: BTreeMap::new(),
        predefined: true,
    };
    for (name, driver) in [("host", "host"), ("none", "null")] {
        if !records.values().any(|r| r.predefined && r.name == name) {
            let r = predefined(name, driver);
            let _ = save_record(&dir, &r);
            records.insert(r.id.clone(), r);
        }
    }
    let old_bridge = records.values().find(|r| r.predefined && r.name == "bridge").cloned();
    let mut bridge_error = None;
    match bridge {
        Some(opts) => {
            let user_subnets: Vec<net::Subnet> = records.values().filter(|r| !r.predefined).filter_map(|r| r.subnet.as_deref()?.parse().ok()).collect();
            // The same subnet as last time unless told otherwise (addresses in use stay valid).
            let kept = old_bridge.as_ref().filter(|r| r.bridge.as_deref() == Some(opts.name.as_str())).and_then(|r| r.subnet.clone());
            let subnet = match opts.subnet.clone().or(kept) {
                Some(s) => s.parse::<net::Subnet>().map_err(|e| e.to_string()),
                None => free_subnet(std::slice::from_ref(&opts.name), &user_subnets, 18).ok_or_else(|| "no free address pool for the default bridge".to_string()),
            };
            match subnet {
                Ok(subnet) => {
                    let mut r = old_bridge.clone().unwrap_or_else(|| predefined("bridge", "bridge"));
                    r.subnet = Some(subnet.to_string());
                    r.gateway = Some(subnet.gateway().to_string());
                    r.bridge = Some(opts.name.clone());
                    r.options = BTreeMap::from([("com.docker.network.bridge.name".to_string(), opts.name.clone())]);
                    let _ = save_record(&dir, &r);
                    records.insert(r.id.clone(), r);
                }
                Err(e) => {
                    bridge_error = Some(e);
                    if let Some(old) = &old_bridge {
                        records.remove(&old.id);
                    }
                }
            }
        }
        None => {
            if let Some(old) = &old_bridge {
                records.remove(&old.id);
            }
        }
    }
    let table = match bridge {
        Some(b) if b.name != "berth0" => format!("berth_{}", b.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
        _ => "berth".to_string(),
    };
    let bridges: Vec<net::Bridge> = records
        .values()
        .filter_map(|r| Some(net::Bridge { name: r.bridge.clone()?, subnet: r.subnet.as_deref()?.parse().ok()?, internal: r.internal }))
        .collect();
    let host = net::Host::open(net::Config { state_dir: root.join("network"), nft_table: table }, &bridges).map_err(|e| e.to_string());
    let host = match (host, bridge_error) {
        (Ok(h), None) => Ok(h),
        (Ok(h), Some(e)) => {
            tracing::warn!(error = %e, "the default bridge is unavailable");
            Ok(h)
        }
        (Err(e), _) => Err(e),
    };
    let dns = match net::Dns::start(net::Dns::upstreams_from_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "no DNS for user networks");
            None
        }
    };
    let n = Networking { host, records: std::sync::Mutex::new(records), dns, dir };
    if n.host.is_ok() {
        for r in n.all() {
            n.serve_dns(&r);
        }
    }
    n
}

impl Networking {
    fn records(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, NetworkRecord>> {
        lock(&self.records)
    }

    fn all(&self) -> Vec<NetworkRecord> {
        self.records().values().cloned().collect()
    }

    fn serve_dns(&self, r: &NetworkRecord) {
        let (Some(dns), true, Some(gw)) = (&self.dns, r.has_dns(), r.gateway.as_deref().and_then(|g| g.parse::<std::net::Ipv4Addr>().ok())) else { return };
        if let Err(e) = dns.serve(&r.id, (gw, 53).into()) {
            tracing::warn!(network = %r.name, error = %e, "no DNS on this network");
        }
    }

    /// The network by full name, full id or unique id prefix (Docker's order).
    fn find(&self, name: &str) -> Result<NetworkRecord> {
        let records = self.records();
        if let Some(r) = records.get(name) {
            return Ok(r.clone());
        }
        if let Some(r) = records.values().find(|r| r.name == name) {
            return Ok(r.clone());
        }
        let mut found = records.values().filter(|r| !name.is_empty() && r.id.starts_with(name));
        match (found.next(), found.next()) {
            (Some(r), None) => Ok(r.clone()),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!("network {name} is ambiguous ({} matches found based on ID prefix)", records.values().filter(|r| r.id.starts_with(name)).count()))),
            _ => Err(Error::NetworkNotFound(name.to_string())),
        }
    }

    /// The default bridge network, when there is one.
    fn default_bridge(&self) -> Option<NetworkRecord> {
        self.records().values().find(|r| r.predefined && r.name == "bridge").cloned()
    }
}

impl Engine {
    fn networking(&self) -> &Networking {
        &self.inner.networking
    }

    pub(crate) fn net_host(&self) -> Result<&net::Host> {
        self.networking().host.as_ref().map_err(|e| Error::Internal(format!("bridge networking is unavailable on this host: {e}")))
    }

    /// Whether `--network bridge` is available (the default network of new containers).
    pub(crate) fn has_default_bridge(&self) -> bool {
        self.networking().host.is_ok() && self.networking().default_bridge().is_some()
    }

    /// Every network, predefined first, then by name.
    pub fn networks(&self) -> Vec<NetworkRecord> {
        let mut all = self.networking().all();
        all.sort_by(|a, b| (!a.predefined, &a.name).cmp(&(!b.predefined, &b.name)));
        all
    }

    pub fn network(&self, name: &str) -> Result<NetworkRecord> {
        self.networking().find(name)
    }

    /// Running containers on the network, with their endpoints there.
    pub fn network_members(&self, id: &str) -> Vec<(ContainerRecord, Endpoint)> {
        self.containers()
            .into_iter()
            .filter_map(|c| {
                let ep = c.endpoints.values().find(|e| e.network_id == id)?.clone();
                Some((c, ep))
            })
            .collect()
    }

    /// `docker network create`.
    pub fn create_network(&self, req: CreateNetwork) -> Result<NetworkRecord> {
        if !valid_name(&req.name) {
            return Err(Error::InvalidArgument(format!("invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", req.name)));
        }
        if !req.driver.is_empty() && req.driver != "bridge" {
            return Err(Error::InvalidArgument(format!("plugin {:?} not found: berth networks use the bridge driver", req.driver)));
        }
        let host = self.net_host()?;
        let n = self.networking();
        let _serial = lock(&self.inner.network_ops);
        if n.records().values().any(|r| r.name == req.name) {
            return Err(Error::Conflict(format!("network with name {} already exists", req.name)));
        }
        let others: Vec<(String, net::Subnet)> = n.records().values().filter_map(|r| Some((r.name.clone(), r.subnet.as_deref()?.parse().ok()?))).collect();
        let own: Vec<String> = n.records().values().filter_map(|r| r.bridge.clone()).collect();
        let subnet = match &req.subnet {
            Some(s) => {
                let subnet: net::Subnet = s.parse().map_err(|_| Error::InvalidArgument(format!("invalid subnet {s:?}: use an IPv4 CIDR with a prefix of /8 to /30, such as 10.89.0.0/24")))?;
                if let Some((name, other)) = others.iter().find(|(_, o)| o.overlaps(&subnet)) {
                    return Err(Error::Forbidden(format!("invalid pool request: subnet {subnet} overlaps with network {name} ({other})")));
                }
                if let Some((dev, route)) = host_routes(&own).into_iter().find(|(_, r)| r.overlaps(&subnet)) {
                    return Err(Error::Forbidden(format!("invalid pool request: subnet {subnet} overlaps with the host route {route} on {dev}")));
                }
                subnet
            }
            None => {
                let taken: Vec<net::Subnet> = others.iter().map(|(_, s)| *s).collect();
                free_subnet(&own, &taken, 18).ok_or_else(|| Error::Forbidden("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into()))?
            }
        };
        if let Some(gw) = req.gateway.as_deref().filter(|g| !g.is_empty()) {
            if gw != subnet.gateway().to_string() {
                return Err(Error::InvalidArgument(format!("gateway {gw} is not supported for subnet {subnet}: berth bridges use the first address, {}", subnet.gateway())));
            }
        }
        let id = crate::lifecycle::new_id();
        let bridge = format!("br-{}", &id[..12]);
        let r = NetworkRecord {
            id: id.clone(),
            name: req.name.clone(),
            driver: "bridge".into(),
            created: crate::now_rfc3339(),
            subnet: Some(subnet.to_string()),
            gateway: Some(subnet.gateway().to_string()),
            bridge: Some(bridge.clone()),
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels,
            options: req.options,
            predefined: false,
        };
        host.add_bridge(&net::Bridge { name: bridge.clone(), subnet, internal: req.internal }).map_err(|e| Error::Internal(format!("creating network {}: {e}", req.name)))?;
        if let Err(e) = save_record(&n.dir, &r) {
            let _ = host.remove_bridge(&bridge);
            return Err(e);
        }
        n.records().insert(id, r.clone());
        n.serve_dns(&r);
        Ok(r)
    }

    /// `docker network rm`: refused for predefined networks and while containers run on it.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        let n = self.networking();
        let _serial = lock(&self.inner.network_ops);
        let r = n.find(name)?;
        if r.predefined {
            return Err(Error::Forbidden(format!("{} is a pre-defined network and cannot be removed", r.name)));
        }
        let members = self.network_members(&r.id);
        if !members.is_empty() {
            let names: Vec<String> = members.iter().map(|(c, _)| c.name.clone()).collect();
            return Err(Error::Forbidden(format!("error while removing network: network {} id {} has active endpoints ({})", r.name, r.id, names.join(", "))));
        }
        if let Some(dns) = &n.dns {
            dns.stop(&r.id);
        }
        if let (Ok(host), Some(bridge)) = (&n.host, &r.bridge) {
            host.remove_bridge(bridge).map_err(|e| Error::Internal(format!("removing network {}: {e}", r.name)))?;
        }
        let _ = std::fs::remove_file(n.dir.join(format!("{}.json", r.id)));
        n.records().remove(&r.id);
        Ok(())
    }

    /// `docker network prune`: user networks no running container is on. Returns their names.
    pub fn prune_networks(&self) -> Vec<String> {
        self.networks()
            .into_iter()
            .filter(|r| !r.predefined && self.network_members(&r.id).is_empty())
            .filter(|r| self.remove_network(&r.id).is_ok())
            .map(|r| r.name)
            .collect()
    }

    /// At create: the network mode named as a network becomes the container's first network.
    /// Returns the networks to record.
    pub(crate) fn plan_networks(&self, hc: &mut HostConfig, requested: &BTreeMap<String, EndpointSettings>) -> Result<BTreeMap<String, EndpointSettings>> {
        // The docker CLI sends `default` as the mode and as the key of its endpoint settings.
        let asked = hc.network_mode.clone();
        if hc.network_mode.is_empty() || hc.network_mode == "default" {
            hc.network_mode = if self.has_default_bridge() { "bridge" } else { "none" }.into();
        }
        let mode = hc.network_mode.clone();
        if mode == "none" || mode == "host" || mode.starts_with("container:") {
            return Ok(BTreeMap::new());
        }
        self.net_host()?;
        let primary = self.network(&mode)?;
        hc.network_mode = primary.name.clone();
        let is_primary = |k: &str| k == asked || k == mode || k == primary.name || k == primary.id;
        let primary_settings = requested.iter().find(|(k, _)| is_primary(k)).map(|(_, v)| v.clone()).unwrap_or_default();
        let mut out = BTreeMap::new();
        let others = requested.iter().filter(|(k, _)| !is_primary(k)).map(|(k, v)| (k.clone(), v.clone()));
        for (name, settings) in std::iter::once((primary.name.clone(), primary_settings)).chain(others) {
            let r = self.network(&name)?;
            if r.predefined && r.name != "bridge" {
                return Err(Error::InvalidArgument(format!("container cannot be connected to network {} and to other networks", r.name)));
            }
            if !r.has_dns() && !settings.aliases.is_empty() {
                return Err(Error::InvalidArgument("network-scoped alias is supported only for containers in user defined networks".into()));
            }
            out.insert(r.name.clone(), settings);
        }
        Ok(out)
    }

    /// The container's networks, its first network first.
    fn ordered_networks(rec: &ContainerRecord) -> Vec<(String, EndpointSettings)> {
        let mode = &rec.host_config.network_mode;
        let mut out: Vec<(String, EndpointSettings)> = rec.networks.get(mode).map(|s| (mode.clone(), s.clone())).into_iter().collect();
        out.extend(rec.networks.iter().filter(|(k, _)| *k != mode).map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    fn dns_names(rec: &ContainerRecord, settings: &EndpointSettings) -> Vec<String> {
        let mut names = vec![rec.name.clone()];
        names.extend(settings.aliases.iter().cloned());
        names.push(rec.id[..12.min(rec.id.len())].to_string());
        names.dedup();
        names
    }

    fn register_dns(&self, rec: &ContainerRecord, ep: &Endpoint) {
        if let Some(dns) = &self.networking().dns {
            if !ep.dns_names.is_empty() {
                dns.set(&ep.network_id, net::DnsEntry { sandbox: rec.id.clone(), names: ep.dns_names.clone(), ip: ep.attachment.ip });
            }
        }
    }

    /// Attaches one network to a pinned namespace as `ifname`.
    #[allow(clippy::too_many_arguments)]
    fn attach_one(&self, rec: &ContainerRecord, netns: &Path, name: &str, settings: &EndpointSettings, ifname: &str, first: bool, ports: &[net::PortMapping]) -> Result<(String, Endpoint)> {
        let r = self.network(name)?;
        let bridge = r.bridge.clone().ok_or_else(|| Error::InvalidArgument(format!("network {} has no bridge to attach to", r.name)))?;
        let attachment = self.net_host()?.attach(&rec.id, netns, &bridge, ifname, first, ports).map_err(|e| match e {
            net::Error::PortInUse { .. } => Error::Conflict(format!("driver failed programming external connectivity on endpoint {}: {e}", rec.name)),
            other => Error::Internal(format!("connecting {} to network {}: {other}", rec.name, r.name)),
        })?;
        let dns_names = if r.has_dns() { Self::dns_names(rec, settings) } else { Vec::new() };
        let ep = Endpoint { network_id: r.id.clone(), attachment, ports: ports.to_vec(), dns_names };
        self.register_dns(rec, &ep);
        Ok((r.name, ep))
    }

    /// Before start (blocking): a pinned namespace on each of the container's networks, ports published.
    pub(crate) fn connect_networks(&self, rec: &ContainerRecord) -> Result<BTreeMap<String, Endpoint>> {
        let order = Self::ordered_networks(rec);
        if order.is_empty() {
            return Ok(BTreeMap::new());
        }
        let host = self.net_host()?;
        let ports = mappings(rec)?;
        host.check_ports(&rec.id, &ports).map_err(|e| Error::Conflict(format!("driver failed programming external connectivity on endpoint {}: {e}", rec.name)))?;
        let netns = host.create_netns(&rec.id).map_err(|e| Error::Internal(e.to_string()))?;
        let mut out = BTreeMap::new();
        for (i, (name, settings)) in order.iter().enumerate() {
            let published: &[net::PortMapping] = if i == 0 { &ports } else { &[] };
            match self.attach_one(rec, &netns, name, settings, &format!("eth{i}"), i == 0, published) {
                Ok((name, ep)) => {
                    out.insert(name, ep);
                }
                Err(e) => {
                    self.disconnect_networks(&rec.id);
                    let _ = host.detach(&rec.id);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// After the container stopped (blocking): names, addresses, ports and namespace released at
    /// once; the veths are deleted on a background thread (the kernel makes that wait).
    pub(crate) fn disconnect_networks(&self, id: &str) {
        if let Some(dns) = &self.networking().dns {
            dns.remove_everywhere(id);
        }
        if let Ok(host) = self.net_host() {
            if let Err(e) = host.release(id) {
                tracing::warn!(container = %id, error = %e, "releasing the container's network");
            }
            let (engine, id) = (self.clone(), id.to_string());
            std::thread::spawn(move || {
                if let Ok(host) = engine.net_host() {
                    host.delete_veths(&id);
                }
            });
        }
    }

    /// `docker network connect`: recorded for the next start, attached now if it runs.
    pub async fn connect_network(&self, network: &str, container: &str, settings: EndpointSettings) -> Result<()> {
        let r = self.network(network)?;
        let c = self.lookup(container)?;
        let _op = c.op.lock().await;
        let rec = c.snapshot();
        let mode = rec.host_config.network_mode.as_str();
        if r.predefined && r.name != "bridge" {
            return Err(Error::Forbidden(format!("container cannot be disconnected from host network or connected to {} network", r.name)));
        }
        if mode == "host" || mode == "none" || mode.starts_with("container:") {
            return Err(Error::Forbidden("container sharing network namespace with another container or host cannot be connected to any other network".into()));
        }
        if rec.networks.contains_key(&r.name) {
            return Err(Error::Forbidden(format!("endpoint with name {} already exists in network {}", rec.name, r.name)));
        }
        if !r.has_dns() && !settings.aliases.is_empty() {
            return Err(Error::InvalidArgument("network-scoped alias is supported only for containers in user defined networks".into()));
        }
        let mut endpoint = None;
        if rec.state.running() {
            let netns = rec.endpoints.values().next().map(|e| e.attachment.netns.clone()).ok_or_else(|| Error::Conflict(format!("container {} has no network namespace of its own to connect", rec.name)))?;
            let used: Vec<&str> = rec.endpoints.values().map(|e| e.attachment.ifname.as_str()).collect();
            let ifname = (0..).map(|i| format!("eth{i}")).find(|n| !used.contains(&n.as_str())).unwrap_or_default();
            let (engine, rec2, name, s2) = (self.clone(), rec.clone(), r.name.clone(), settings.clone());
            let (name, ep) = blocking(move || engine.attach_one(&rec2, &netns, &name, &s2, &ifname, false, &[])).await?;
            if r.has_dns() {
                // Names resolve through the first user network's gateway; a container that had none
                // learns its nameserver now (the file is bind-mounted: rewrite it in place).
                let dir = self.container_dir(&rec.id);
                let resolv = dir.join("resolv.conf");
                if rec.endpoints.values().all(|e| e.dns_names.is_empty()) && rec.host_config.dns.is_empty() {
                    let text = crate::etc::embedded_resolv(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(), &ep.attachment.gateway.to_string());
                    let _ = std::fs::write(&resolv, text);
                }
            }
            endpoint = Some((name, ep));
        }
        let saved = {
            let mut rec = c.record();
            rec.networks.insert(r.name.clone(), settings);
            if let Some((name, ep)) = endpoint {
                rec.endpoints.insert(name, ep);
            }
            rec.clone()
        };
        crate::store::save(&self.container_dir(&saved.id), &saved)
    }

    /// `docker network disconnect`.
    pub async fn disconnect_network(&self, network: &str, container: &str) -> Result<()> {
        let r = self.network(network)?;
        let c = self.lookup(container)?;
        let _op = c.op.lock().await;
        let rec = c.snapshot();
        if !rec.networks.contains_key(&r.name) {
            return Err(Error::Forbidden(format!("container {} is not connected to network {}", rec.name, r.name)));
        }
        if let Some(ep) = rec.endpoints.get(&r.name).cloned() {
            if let Some(dns) = &self.networking().dns {
                dns.remove(&ep.network_id, &rec.id);
            }
            let (engine, id, bridge) = (self.clone(), rec.id.clone(), ep.attachment.bridge.clone());
            blocking(move || engine.net_host()?.detach_from(&id, &bridge).map_err(|e| Error::Internal(e.to_string()))).await?;
        }
        let saved = {
            let mut rec = c.record();
            rec.networks.remove(&r.name);
            rec.endpoints.remove(&r.name);
            rec.clone()
        };
        crate::store::save(&self.container_dir(&saved.id), &saved)
    }

    /// After a restart: names of running containers served again; networking of containers that
    /// are not running anymore goes.
    pub(crate) fn reconcile_network(&self) {
        let running: Vec<ContainerRecord> = self.containers().into_iter().filter(|c| c.state.running()).collect();
        for c in &running {
            for ep in c.endpoints.values() {
                self.register_dns(c, ep);
            }
        }
        if let Ok(host) = self.net_host() {
            let alive: Vec<String> = running.into_iter().map(|c| c.id).collect();
            let cleaned = host.reconcile(&alive);
            if !cleaned.is_empty() {
                tracing::info!(count = cleaned.len(), "removed network leftovers of stopped containers");
            }
        }
    }

    /// Engine shutdown: the nftables table goes (published ports stop answering until the next
    /// start, which rebuilds it from the records).
    pub fn shutdown_network(&self) {
        if let Ok(host) = self.net_host() {
            host.remove_table();
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_subnet_avoids_taken_blocks() {
        let taken: Vec<net::Subnet> = (17..25u8).map(|i| format!("172.{i}.0.0/16").parse().expect("s")).collect();
        let s = free_subnet(&[], &taken, 17).expect("a free block");
        assert!(!taken.iter().any(|t| t.overlaps(&s)), "{s}");
        assert!(pool_candidates().count() == 31);
    }
}
