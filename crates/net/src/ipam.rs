//! Addresses for sandboxes: one lease file per holder (`leases/<id>` containing the address),
//! created with O_EXCL on an `ip-<address>` marker so no address is handed out twice, even by
//! two engines sharing a state directory by mistake. Released by removing both.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::{Error, Result};

/// An IPv4 subnet: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Subnet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subnet> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| Error::InvalidSubnet(s.to_string()))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| Error::InvalidSubnet(s.to_string()))?;
        let prefix: u8 = prefix.parse().map_err(|_| Error::InvalidSubnet(s.to_string()))?;
        if !(8..=30).contains(&prefix) {
            return Err(Error::InvalidSubnet(s.to_string()));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Subnet { network: Ipv4Addr::from(u32::from(addr) & mask), prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Subnet {
    /// The first host address, the bridge's.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.network);
        let size = 1u32 << (32 - self.prefix);
        // Skip the network, the gateway and the broadcast addresses.
        (2..size - 1).map(move |i| Ipv4Addr::from(base + i))
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let mask = u32::MAX << (32 - shorter);
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == u32::from(self.network)
    }
}

/// The holder's address (the same one again if it already holds one).
pub fn lease(dir: &Path, subnet: &Subnet, holder: &str) -> Result<Ipv4Addr> {
    if let Some(ip) = held(dir, holder) {
        return Ok(ip);
    }
    for ip in subnet.hosts() {
        let marker = dir.join(format!("ip-{ip}"));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&marker) {
            Ok(_) => {
                std::fs::write(&marker, holder).map_err(crate::io(format!("writing {}", marker.display())))?;
                std::fs::write(dir.join(holder), ip.to_string()).map_err(crate::io("writing a lease"))?;
                return Ok(ip);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(crate::io(format!("creating {}", marker.display()))(e)),
        }
    }
    Err(Error::Exhausted(subnet.to_string()))
}

pub fn held(dir: &Path, holder: &str) -> Option<Ipv4Addr> {
    std::fs::read_to_string(dir.join(holder)).ok()?.trim().parse().ok()
}

pub fn release(dir: &Path, holder: &str) {
    if let Some(ip) = held(dir, holder) {
        let _ = std::fs::remove_file(dir.join(format!("ip-{ip}")));
    }
    let _ = std::fs::remove_file(dir.join(holder));
}

/// Everyone holding a lease.
pub fn holders(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with("ip-")).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_normalise() {
        let s: Subnet = "10.89.3.7/24".parse().expect("subnet");
        assert_eq!(s.to_string(), "10.89.3.0/24");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 89, 3, 1));
        assert!("10.0.0.0".parse::<Subnet>().is_err());
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
        assert!("nope/16".parse::<Subnet>().is_err());
        let wide: Subnet = "10.89.0.0/16".parse().expect("subnet");
        assert!(wide.overlaps(&s) && !wide.overlaps(&"10.90.0.0/24".parse().expect("s")));
        assert!("10.89.200.0/24".parse::<Subnet>().expect("s").overlaps(&wide));
    }

    #[test]
    fn leases_are_unique_kept_per_holder_and_reused_after_release() {
        let dir = tempfile::tempdir().expect("tmp");
        let s: Subnet = "10.9.0.0/29".parse().expect("subnet");
        let a = lease(dir.path(), &s, "a").expect("a");
        let b = lease(dir.path(), &s, "b").expect("b");
        assert_ne!(a, b);
        assert_eq!(lease(dir.path(), &s, "a").expect("again"), a, "a holder keeps its address");
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        for h in ["c", "d", "e"] {
            lease(dir.path(), &s, h).expect("more");
        }
        assert!(matches!(lease(dir.path(), &s, "f"), Err(Error::Exhausted(_))));
        release(dir.path(), "a");
        assert_eq!(lease(dir.path(), &s, "f").expect("reused"), a);
        assert_eq!(holders(dir.path()).len(), 5);
    }
}
