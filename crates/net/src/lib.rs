//! Container networking, with no engine types so the node agent can reuse it for pod sandboxes:
//! a bridge with its subnet, a pinned network namespace per sandbox (a bind-mounted nsfs file, so
//! the namespace outlives no process and any number of containers can join it by path), a veth
//! pair into it with an address from a persisted IPAM, the default route; and published ports and
//! masquerading in one nftables table owned by berth.
//!
//! Links, addresses and routes go through netlink (rtnetlink). The nftables table is rewritten
//! whole, in one atomic `nft -f -` transaction, on each change: a handful of rules per published
//! container, and a crash can never leave half a table.

mod ipam;
mod link;
mod nft;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// The bridge and where state is kept.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bridge device name (at most 15 bytes), e.g. `berth0`.
    pub bridge: String,
    pub subnet: Subnet,
    /// Leases and pinned namespaces.
    pub state_dir: PathBuf,
    /// The nftables table berth owns (one per engine, so test engines do not collide).
    pub nft_table: String,
}

/// A sandbox's place on the bridge.
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
}

pub struct Network {
    cfg: Config,
    /// Serialises lease, link and table changes of this engine.
    lock: Mutex<()>,
}

impl Network {
    /// Makes sure the bridge exists with its gateway address and is up, forwarding is on and the
    /// nftables table holds what the leases say; returns the manager.
    pub fn open(cfg: Config) -> Result<Network> {
        std::fs::create_dir_all(cfg.state_dir.join("netns")).map_err(io("creating the network state directory"))?;
        std::fs::create_dir_all(cfg.state_dir.join("leases")).map_err(io("creating the lease directory"))?;
        link::ensure_bridge(&cfg.bridge, cfg.subnet.gateway(), cfg.subnet.prefix)?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1");
        // Published ports answer on 127.0.0.1 too: DNAT of loopback traffic needs this.
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge), "1");
        let n = Network { cfg, lock: Mutex::new(()) };
        n.sync_table()?;
        Ok(n)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new network namespace pinned at `<state>/netns/<id>`, with `lo` up.
    pub fn create_netns(&self, id: &str) -> Result<PathBuf> {
        let path = self.cfg.state_dir.join("netns").join(id);
        link::pin_new_netns(&path)?;
        Ok(path)
    }

    /// Connects the sandbox's namespace to the bridge: an address from IPAM, a veth pair with
    /// `eth0` inside, the default route through the gateway. Published ports go into the table.
    pub fn attach(&self, id: &str, netns: &Path, ports: &[PortMapping]) -> Result<Attachment> {
        let _g = self.guard();
        for p in ports {
            self.check_port(id, p)?;
        }
        let ip = ipam::lease(&self.cfg.state_dir.join("leases"), &self.cfg.subnet, id)?;
        let host_veth = host_veth_name(id);
        let mac = mac_for(ip);
        let result = link::connect(&self.cfg.bridge, &host_veth, netns, ip, self.cfg.subnet.prefix, self.cfg.subnet.gateway(), &mac);
        if let Err(e) = result {
            ipam::release(&self.cfg.state_dir.join("leases"), id);
            let _ = link::delete_link(&host_veth);
            return Err(e);
        }
        let att = Attachment { ip, prefix: self.cfg.subnet.prefix, gateway: self.cfg.subnet.gateway(), mac, host_veth, netns: netns.to_path_buf() };
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

    /// Undoes `attach` and removes the pinned namespace; safe to call for what is already gone.
    pub fn detach(&self, id: &str) -> Result<()> {
        self.release(id)?;
        self.delete_veth(id);
        Ok(())
    }

    /// The quick part of `detach`: the address, the ports and the pinned namespace (whose
    /// destruction takes the veth pair with it, in the kernel's own time).
    pub fn release(&self, id: &str) -> Result<()> {
        let _g = self.guard();
        ipam::release(&self.cfg.state_dir.join("leases"), id);
        let published = nft::remove_ports(&self.cfg.state_dir, id);
        let pinned = self.cfg.state_dir.join("netns").join(id);
        link::unpin_netns(&pinned);
        if published {
            self.sync_table()?;
        }
        Ok(())
    }

    /// Deletes the host end of the sandbox's veth now rather than when the kernel gets to it
    /// (this waits for the kernel: run it off any latency path).
    pub fn delete_veth(&self, id: &str) {
        let _ = link::delete_link(&host_veth_name(id));
    }

    /// Removes what belongs to sandboxes not in `alive` (after a crash): veths, leases, ports,
    /// pinned namespaces. Returns the ids cleaned.
    pub fn reconcile(&self, alive: &[String]) -> Vec<String> {
        let mut gone = Vec::new();
        for id in ipam::holders(&self.cfg.state_dir.join("leases")).into_iter().chain(pinned_ids(&self.cfg.state_dir)) {
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

    /// Removes the table and the bridge (tests, uninstall); sandboxes must be detached first.
    pub fn destroy(&self) {
        self.remove_table();
        let _ = link::delete_link(&self.cfg.bridge);
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
        nft::apply(&self.cfg.nft_table, &self.cfg.bridge, &self.cfg.subnet, &self.cfg.state_dir)
    }
}

/// `vb<first 11 hex of the id>`: unique per sandbox, within IFNAMSIZ.
pub fn host_veth_name(id: &str) -> String {
    format!("vb{}", id.chars().filter(char::is_ascii_alphanumeric).take(11).collect::<String>())
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
