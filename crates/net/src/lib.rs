//! Container networking, with no engine types so the node agent can reuse it for pod sandboxes:
//! bridges with their subnets, a pinned network namespace per sandbox (a bind-mounted nsfs file, so
//! the namespace outlives no process and any number of containers can join it by path), veth
//! pairs into it with addresses from a persisted IPAM, the default route; published ports,
//! masquerading and network isolation in one nftables table owned by berth; and the DNS server
//! of user-defined networks.
//!
//! Links, addresses and routes go through netlink (rtnetlink). The nftables table is rewritten
//! whole, in one atomic `nft -f -` transaction, on each change: a handful of rules per published
//! container, and a crash can never leave half a table.

pub mod dns;
mod ipam;
mod link;
mod nft;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use dns::{Dns, Entry as DnsEntry};
pub use ipam::Subnet;
pub use nft::PortMapping;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid subnet {0:?}: use an IPv4 CIDR such as 172.18.0.0/16")]
    InvalidSubnet(String),
    #[error("no free address left in {0}")]
    Exhausted(String),
    #[error("Bind for {host_ip}:{port} failed: port is already allocated")]
    PortInUse { host_ip: String, port: u16 },
    #[error("network setup: {0}")]
    Netlink(String),
    #[error("nftables: {0}")]
    Nft(String),
    #[error("{context}: {source}")]
    Io { context: String, #[source] source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Where state is kept and the nftables table berth owns.
#[derive(Debug, Clone)]
pub struct Config {
    /// Leases, pinned namespaces, published ports.
    pub state_dir: PathBuf,
    /// The nftables table berth owns (one per engine, so test engines do not collide).
    pub nft_table: String,
}

/// One bridge network: its device and subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Device name (at most 15 bytes), e.g. `berth0` or `br-0123456789ab`.
    pub name: String,
    pub subnet: Subnet,
    /// No route out: members reach each other only (Docker's `--internal`).
    pub internal: bool,
}

/// A sandbox's place on one bridge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The pinned network namespace.
    pub netns: PathBuf,
    /// The interface inside the namespace (`eth0`, `eth1`, …).
    #[serde(default = "default_ifname")]
    pub ifname: String,
    /// The bridge this is on.
    #[serde(default)]
    pub bridge: String,
}

fn default_ifname() -> String {
    "eth0".into()
}

/// The host's container networking: any number of bridges, the sandboxes' pinned namespaces
/// and their addresses on the bridges, and the one nftables table for all of them.
pub struct Host {
    cfg: Config,
    bridges: Mutex<BTreeMap<String, Bridge>>,
    /// Serialises lease, link and table changes of this engine.
    lock: Mutex<()>,
}

impl Host {
    /// Makes sure each bridge exists with its gateway address and is up, forwarding is on and the
    /// nftables table holds what the leases say; returns the manager.
    pub fn open(cfg: Config, bridges: &[Bridge]) -> Result<Host> {
        std::fs::create_dir_all(cfg.state_dir.join("netns")).map_err(io("creating the network state directory"))?;
        std::fs::create_dir_all(cfg.state_dir.join("leases")).map_err(io("creating the lease directory"))?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
        for b in bridges {
            set_up_bridge(b)?;
        }
        let h = Host { cfg, bridges: Mutex::new(bridges.iter().map(|b| (b.name.clone(), b.clone())).collect()), lock: Mutex::new(()) };
        h.sync_table()?;
        Ok(h)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bridges(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bridge>> {
        self.bridges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bridges, by device name.
    pub fn bridge_list(&self) -> Vec<Bridge> {
        self.bridges().values().cloned().collect()
    }

    /// Adds a bridge network (creating the device) and its rules.
    pub fn add_bridge(&self, bridge: &Bridge) -> Result<()> {
        let _g = self.guard();
        set_up_bridge(bridge)?;
        self.bridges().insert(bridge.name.clone(), bridge.clone());
        if let Err(e) = self.sync_table() {
            self.bridges().remove(&bridge.name);
            let _ = link::delete_link(&bridge.name);
            return Err(e);
        }
        Ok(())
    }

    /// Removes a bridge network: its device, leases and rules. Its sandboxes must be detached.
    pub fn remove_bridge(&self, name: &str) -> Result<()> {
        let _g = self.guard();
        self.bridges().remove(name);
        let _ = std::fs::remove_dir_all(self.lease_dir(name));
        link::delete_link(name)?;
        self.sync_table()
    }

    fn lease_dir(&self, bridge: &str) -> PathBuf {
        self.cfg.state_dir.join("leases").join(bridge)
    }

    /// A new network namespace pinned at `<state>/netns/<id>`, with `lo` up.
    pub fn create_netns(&self, id: &str) -> Result<PathBuf> {
        let path = self.cfg.state_dir.join("netns").join(id);
        link::pin_new_netns(&path)?;
        Ok(path)
    }

    /// Refuses host ports another sandbox publishes or a host process listens on.
    pub fn check_ports(&self, id: &str, ports: &[PortMapping]) -> Result<()> {
        ports.iter().try_for_each(|p| self.check_port(id, p))
    }

    /// Connects the sandbox's namespace to `bridge`: an address from IPAM, a veth pair with
    /// `ifname` inside; with `default_route`, the default route through the gateway. Published
    /// ports (towards this address) go into the table.
    pub fn attach(&self, id: &str, netns: &Path, bridge: &str, ifname: &str, default_route: bool, ports: &[PortMapping]) -> Result<Attachment> {
        let _g = self.guard();
        let b = self.bridges().get(bridge).cloned().ok_or_else(|| Error::Netlink(format!("bridge {bridge} is not set up")))?;
        for p in ports {
            self.check_port(id, p)?;
        }
        let leases = self.lease_dir(bridge);
        std::fs::create_dir_all(&leases).map_err(io("creating the lease directory"))?;
        let ip = ipam::lease(&leases, &b.subnet, id)?;
        let host_veth = host_veth_name(id, bridge);
        let mac = mac_for(ip);
        let gateway = default_route.then(|| b.subnet.gateway());
        let result = link::connect(bridge, &host_veth, netns, ifname, ip, b.subnet.prefix, gateway, &mac);
        if let Err(e) = result {
            ipam::release(&leases, id);
            let _ = link::delete_link(&host_veth);
            return Err(e);
        }
        let att = Attachment {
            ip,
            prefix: b.subnet.prefix,
            gateway: b.subnet.gateway(),
            mac,
            host_veth,
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            bridge: bridge.to_string(),
        };
        if ports.is_empty() {
            // Nothing to publish: the table does not change (an nft run costs milliseconds).
            return Ok(att);
        }
        nft::save_ports(&self.cfg.state_dir, id, ip, ports)?;
        if let Err(e) = self.sync_table() {
            drop(_g);
            let _ = self.detach(id);
            return Err(e);
        }
        Ok(att)
    }

    /// Takes the sandbox off one bridge (a running sandbox leaving one network): its address,
    /// its veth, and ports published towards that address.
    pub fn detach_from(&self, id: &str, bridge: &str) -> Result<()> {
        let _g = self.guard();
        let leases = self.lease_dir(bridge);
        let ip = ipam::held(&leases, id);
        ipam::release(&leases, id);
        let _ = link::delete_link(&host_veth_name(id, bridge));
        if ip.is_some() && nft::ports_ip(&self.cfg.state_dir, id) == ip {
            nft::remove_ports(&self.cfg.state_dir, id);
            self.sync_table()?;
        }
        Ok(())
    }

    /// Undoes every `attach` and removes the pinned namespace; safe to call for what is gone.
    pub fn detach(&self, id: &str) -> Result<()> {
        self.release(id)?;
        self.delete_veths(id);
        Ok(())
    }

    /// The quick part of `detach`: the addresses, the ports and the pinned namespace (whose
    /// destruction takes the veth pairs with it, in the kernel's own time).
    pub fn release(&self, id: &str) -> Result<()> {
        let _g = self.guard();
        for bridge in self.lease_dirs() {
            ipam::release(&self.lease_dir(&bridge), id);
        }
        let published = nft::remove_ports(&self.cfg.state_dir, id);
        let pinned = self.cfg.state_dir.join("netns").join(id);
        link::unpin_netns(&pinned);
        if published {
            self.sync_table()?;
        }
        Ok(())
    }

    /// Deletes the host ends of the sandbox's veths now rather than when the kernel gets to it
    /// (this waits for the kernel: run it off any latency path).
    pub fn delete_veths(&self, id: &str) {
        for bridge in self.bridges().keys() {
            let _ = link::delete_link(&host_veth_name(id, bridge));
        }
    }

    /// Bridges with a lease directory (including ones removed while the engine was down).
    fn lease_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.cfg.state_dir.join("leases"))
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }

    /// Removes what belongs to sandboxes not in `alive` (after a crash): veths, leases, ports,
    /// pinned namespaces. Returns the ids cleaned.
    pub fn reconcile(&self, alive: &[String]) -> Vec<String> {
        let mut holders: Vec<String> = self.lease_dirs().iter().flat_map(|b| ipam::holders(&self.lease_dir(b))).collect();
        holders.extend(pinned_ids(&self.cfg.state_dir));
        holders.extend(nft::all_ports(&self.cfg.state_dir).into_iter().map(|(id, _)| id));
        let mut gone = Vec::new();
        for id in holders {
            if !alive.contains(&id) && !gone.contains(&id) {
                if let Err(e) = self.detach(&id) {
                    tracing::warn!(sandbox = %id, error = %e, "cleaning up network leftovers");
                }
                gone.push(id);
            }
        }
        gone
    }

    /// Removes the table (engine shutdown): published ports stop answering until the next start.
    pub fn remove_table(&self) {
        nft::delete_table(&self.cfg.nft_table);
    }

    /// Removes the table and every bridge (tests, uninstall); sandboxes must be detached first.
    pub fn destroy(&self) {
        self.remove_table();
        for name in self.bridges().keys() {
            let _ = link::delete_link(name);
        }
    }

    /// Refuses a host port another sandbox publishes or a host process listens on.
    fn check_port(&self, id: &str, p: &PortMapping) -> Result<()> {
        let host_ip = if p.host_ip.is_empty() { "0.0.0.0".to_string() } else { p.host_ip.clone() };
        let taken = nft::all_ports(&self.cfg.state_dir).into_iter().any(|(owner, q)| owner != id && q.host_port == p.host_port && q.protocol == p.protocol);
        let bindable = match p.protocol.as_str() {
            "udp" => std::net::UdpSocket::bind((host_ip.as_str(), p.host_port)).is_ok(),
            _ => std::net::TcpListener::bind((host_ip.as_str(), p.host_port)).is_ok(),
        };
        if taken || !bindable {
            return Err(Error::PortInUse { host_ip, port: p.host_port });
        }
        Ok(())
    }

    fn sync_table(&self) -> Result<()> {
        let bridges = self.bridge_list();
        nft::apply(&self.cfg.nft_table, &bridges, &self.cfg.state_dir)
    }
}

/// The device with its gateway address, up, answering published ports from 127.0.0.1.
fn set_up_bridge(b: &Bridge) -> Result<()> {
    link::ensure_bridge(&b.name, b.subnet.gateway(), b.subnet.prefix)?;
    // Published ports answer on 127.0.0.1 too: DNAT of loopback traffic needs this.
    write_sysctl(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", b.name), "1");
    Ok(())
}

/// `vb<8 chars of the id><4 hex of the bridge>`: unique per sandbox and bridge, within IFNAMSIZ.
pub fn host_veth_name(id: &str, bridge: &str) -> String {
    // FNV-1a: stable across runs and versions (the name is found again after a restart).
    let h = bridge.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("vb{}{:04x}", id.chars().filter(char::is_ascii_alphanumeric).take(8).collect::<String>(), h & 0xffff)
}

/// Docker's scheme: 02:42 and the four bytes of the address.
fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

fn write_sysctl(path: &str, value: &str) {
    if let Err(e) = std::fs::write(path, value) {
        tracing::warn!(path, error = %e, "cannot set sysctl");
    }
}

fn pinned_ids(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("netns")).map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default()
}
