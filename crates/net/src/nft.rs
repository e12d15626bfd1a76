//! The nftables table: NAT for published ports (from any host address, 127.0.0.1 included, and
//! hairpin from the sandboxes themselves), masquerading of outbound traffic, and isolation of the
//! bridges from each other (and of internal networks from the outside). Rebuilt whole in one
//! atomic `nft -f -` transaction from the bridges and the per-sandbox port files.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Bridge, Error, Result};

/// `-p [host_ip:]host_port:container_port[/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub host_ip: String,
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PortFile {
    ip: Ipv4Addr,
    ports: Vec<PortMapping>,
}

pub fn save_ports(state: &Path, id: &str, ip: Ipv4Addr, ports: &[PortMapping]) -> Result<()> {
    let dir = state.join("ports");
    std::fs::create_dir_all(&dir).map_err(crate::io("creating the ports directory"))?;
    let data = serde_json::to_vec(&PortFile { ip, ports: ports.to_vec() }).map_err(|e| Error::Nft(e.to_string()))?;
    std::fs::write(dir.join(id), data).map_err(crate::io("saving published ports"))
}

/// Whether the sandbox had published ports.
pub fn remove_ports(state: &Path, id: &str) -> bool {
    std::fs::remove_file(state.join("ports").join(id)).is_ok()
}

/// The address the sandbox's ports are published towards.
pub fn ports_ip(state: &Path, id: &str) -> Option<Ipv4Addr> {
    let f: PortFile = serde_json::from_slice(&std::fs::read(state.join("ports").join(id)).ok()?).ok()?;
    Some(f.ip)
}

/// Every published port with its owner.
pub fn all_ports(state: &Path) -> Vec<(String, PortMapping)> {
    all(state).into_iter().flat_map(|(id, f)| f.ports.into_iter().map(move |p| (id.clone(), p))).collect()
}

fn all(state: &Path) -> Vec<(String, PortFile)> {
    let Ok(d) = std::fs::read_dir(state.join("ports")) else { return Vec::new() };
    d.flatten()
        .filter_map(|e| {
            let f: PortFile = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), f))
        })
        .collect()
}

/// The table's text for `nft -f`.
fn ruleset(table: &str, bridges: &[Bridge], state: &[(String, PortFile)]) -> String {
    let mut dnat = String::new();
    for (id, f) in state {
        for p in &f.ports {
            let daddr = if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" { String::new() } else { format!("ip daddr {} ", p.host_ip) };
            dnat.push_str(&format!(
                "    {daddr}{proto} dport {hp} dnat to {ip}:{cp} comment \"{id}\"\n",
                proto = p.protocol,
                hp = p.host_port,
                ip = f.ip,
                cp = p.container_port
            ));
        }
    }
    let mut nat = String::new();
    let mut forward = String::new();
    for b in bridges {
        let (br, subnet) = (&b.name, b.subnet);
        if b.internal {
            // Nothing in or out but between members (and to the gateway's DNS, which is input).
            forward.push_str(&format!("    iifname \"{br}\" oifname != \"{br}\" drop\n    oifname \"{br}\" iifname != \"{br}\" drop\n"));
        } else {
            nat.push_str(&format!("    ip saddr {subnet} oifname != \"{br}\" masquerade\n"));
        }
        nat.push_str(&format!("    oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade\n    oifname \"{br}\" ip saddr {subnet} ct status dnat masquerade\n"));
        // Networks do not reach each other (Docker isolates them the same way).
        let others: Vec<String> = bridges.iter().filter(|o| o.name != *br).map(|o| format!("\"{}\"", o.name)).collect();
        if !others.is_empty() {
            forward.push_str(&format!("    iifname \"{br}\" oifname {{ {} }} drop\n", others.join(", ")));
        }
    }
    for b in bridges {
        forward.push_str(&format!("    iifname \"{0}\" accept\n    oifname \"{0}\" accept\n", b.name));
    }
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n\
         \x20 chain published {{\n{dnat}  }}\n\
         \x20 chain prerouting {{ type nat hook prerouting priority dstnat; fib daddr type local jump published; }}\n\
         \x20 chain output {{ type nat hook output priority -100; fib daddr type local jump published; }}\n\
         \x20 chain postrouting {{ type nat hook postrouting priority srcnat;\n{nat}  }}\n\
         \x20 chain forward {{ type filter hook forward priority filter; policy accept;\n{forward}  }}\n}}\n"
    )
}

/// Rewrites the table from the bridges and the port files in `state`.
pub fn apply(table: &str, bridges: &[Bridge], state: &Path) -> Result<()> {
    run_nft(&ruleset(table, bridges, &all(state)))
}

fn run_nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Nft(format!("running nft (install nftables): {e}")))?;
    child.stdin.take().ok_or_else(|| Error::Nft("no stdin".into()))?.write_all(script.as_bytes()).map_err(|e| Error::Nft(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| Error::Nft(e.to_string()))?;
    if !out.status.success() {
        return Err(Error::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

pub fn delete_table(table: &str) {
    let _ = run_nft(&format!("table ip {table}\ndelete table ip {table}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_dnats_published_ports_and_masquerades_the_subnet() {
        let b = Bridge { name: "bt0".into(), subnet: "10.77.0.0/24".parse().expect("subnet"), internal: false };
        let user = Bridge { name: "br-1".into(), subnet: "10.78.0.0/24".parse().expect("subnet"), internal: true };
        let f = PortFile { ip: Ipv4Addr::new(10, 77, 0, 2), ports: vec![PortMapping { host_ip: String::new(), host_port: 8080, container_port: 80, protocol: "tcp".into() }] };
        let r = ruleset("berth_t", &[b, user], &[("c1".into(), f)]);
        assert!(r.contains("tcp dport 8080 dnat to 10.77.0.2:80 comment \"c1\""), "{r}");
        assert!(r.contains("ip saddr 10.77.0.0/24 oifname != \"bt0\" masquerade"), "{r}");
        assert!(!r.contains("ip saddr 10.78.0.0/24 oifname != \"br-1\" masquerade"), "an internal network has no way out: {r}");
        assert!(r.contains("iifname \"bt0\" oifname { \"br-1\" } drop"), "networks are isolated: {r}");
        assert!(r.starts_with("table ip berth_t\ndelete table ip berth_t\n"), "replaced atomically: {r}");
    }
}
