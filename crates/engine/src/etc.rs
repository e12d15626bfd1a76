//! Per-container /etc/hostname, /etc/hosts and /etc/resolv.conf, bind-mounted over the image's.
use std::path::Path;

/// `--add-host`, `--dns`, `--dns-search`, `--dns-option`.
#[derive(Debug, Clone, Default)]
pub struct Extra<'a> {
    /// `name:ip` (Docker's ExtraHosts).
    pub hosts: &'a [String],
    pub dns: &'a [String],
    pub dns_search: &'a [String],
    pub dns_options: &'a [String],
    /// The container's address on its network: /etc/hosts maps the hostname to it.
    pub own_ip: Option<&'a str>,
    /// The DNS server of the container's user network (its gateway): the only nameserver.
    pub embedded_dns: Option<&'a str>,
}

/// Writes the three files into `dir` and returns (container path, host path) pairs for the spec.
pub fn write(dir: &Path, hostname: &str, domainname: &str, extra: &Extra<'_>) -> std::io::Result<Vec<(String, String)>> {
    let fqdn = if domainname.is_empty() { hostname.to_string() } else { format!("{hostname}.{domainname}") };
    let mut hosts = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for h in extra.hosts {
        // `name:ip`, where an IPv6 address has colons of its own.
        if let Some((name, ip)) = h.split_once(':') {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    hosts.push_str(&format!("{}\t{fqdn} {hostname}\n", extra.own_ip.unwrap_or("127.0.1.1")));
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut resolv = match extra.embedded_dns {
        Some(server) => embedded_resolv(&host_resolv, server),
        None => resolv_conf(&host_resolv),
    };
    if !extra.dns.is_empty() || !extra.dns_search.is_empty() || !extra.dns_options.is_empty() {
        resolv = custom_resolv(&resolv, extra);
    }
    let mut out = Vec::new();
    for (name, content) in [("hostname", format!("{hostname}\n")), ("hosts", hosts), ("resolv.conf", resolv)] {
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        out.push((format!("/etc/{name}"), path.to_string_lossy().into_owned()));
    }
    Ok(out)
}

/// The host's resolv.conf without loopback nameservers (they mean nothing inside the container's
/// network namespace); Docker falls back to public resolvers, we leave the list empty instead of
/// sending queries off the machine unasked.
fn resolv_conf(host: &str) -> String {
    host.lines()
        .filter(|l| {
            let mut f = l.split_whitespace();
            !(f.next() == Some("nameserver") && f.next().is_some_and(|ip| ip.starts_with("127.") || ip == "::1"))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// resolv.conf of a container on a user network: the network's DNS server (which forwards to the
/// host's resolvers) and the host's search domains and options.
pub fn embedded_resolv(host: &str, server: &str) -> String {
    let mut out = format!("nameserver {server}\n");
    for l in host.lines().filter(|l| matches!(l.split_whitespace().next(), Some("search" | "options"))) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The host-derived resolv.conf with `--dns`, `--dns-search` and `--dns-option` replacing its
/// nameserver, search and options lines.
fn custom_resolv(base: &str, extra: &Extra<'_>) -> String {
    let keep = |kind: &str| base.lines().filter(|l| l.split_whitespace().next() == Some(kind)).map(|l| format!("{l}\n")).collect::<String>();
    let mut out = String::new();
    if extra.dns.is_empty() {
        out.push_str(&keep("nameserver"));
    }
    for ns in extra.dns {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if extra.dns_search.is_empty() {
        out.push_str(&keep("search"));
    } else {
        out.push_str(&format!("search {}\n", extra.dns_search.join(" ")));
    }
    if extra.dns_options.is_empty() {
        out.push_str(&keep("options"));
    } else {
        out.push_str(&format!("options {}\n", extra.dns_options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_network_resolves_through_its_gateway_only() {
        let r = embedded_resolv("nameserver 10.0.0.2\nsearch lan\noptions ndots:2\n", "10.89.0.1");
        assert_eq!(r, "nameserver 10.89.0.1\nsearch lan\noptions ndots:2\n");
    }

    #[test]
    fn loopback_nameservers_are_dropped() {
        let r = resolv_conf("nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\n");
        assert_eq!(r, "nameserver 10.0.0.2\nsearch lan\n");
    }

    #[test]
    fn files_are_written_with_the_hostname() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = write(dir.path(), "web", "", &Extra::default()).expect("write");
        assert_eq!(files.len(), 3);
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).expect("hosts");
        assert!(hosts.contains("127.0.1.1\tweb web"));
    }

    #[test]
    fn extra_hosts_and_dns_flags_land_in_the_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let hosts = vec!["db:10.1.2.3".to_string(), "v6:fd00::1".to_string()];
        let dns = vec!["192.0.2.53".to_string()];
        let search = vec!["corp.example".to_string()];
        write(dir.path(), "web", "", &Extra { hosts: &hosts, dns: &dns, dns_search: &search, dns_options: &[], own_ip: Some("10.0.0.5"), embedded_dns: None }).expect("write");
        let h = std::fs::read_to_string(dir.path().join("hosts")).expect("hosts");
        assert!(h.contains("10.1.2.3\tdb\n") && h.contains("fd00::1\tv6\n"), "{h}");
        assert!(h.contains("10.0.0.5\tweb web\n"), "the hostname maps to the container's address: {h}");
        let r = std::fs::read_to_string(dir.path().join("resolv.conf")).expect("resolv");
        assert!(r.contains("nameserver 192.0.2.53\n") && r.contains("search corp.example\n"), "{r}");
        assert_eq!(r.matches("nameserver").count(), 1, "--dns replaces the host's servers: {r}");
    }
}
