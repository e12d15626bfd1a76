//! Per-container /etc/hostname, /etc/hosts and /etc/resolv.conf, bind-mounted over the image's.
use std::path::Path;

/// Writes the three files into `dir` and returns (container path, host path) pairs for the spec.
pub fn write(dir: &Path, hostname: &str, domainname: &str) -> std::io::Result<Vec<(String, String)>> {
    let fqdn = if domainname.is_empty() { hostname.to_string() } else { format!("{hostname}.{domainname}") };
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{fqdn} {hostname}\n"
    );
    let resolv = resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nameservers_are_dropped() {
        let r = resolv_conf("nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch lan\n");
        assert_eq!(r, "nameserver 10.0.0.2\nsearch lan\n");
    }

    #[test]
    fn files_are_written_with_the_hostname() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = write(dir.path(), "web", "").expect("write");
        assert_eq!(files.len(), 3);
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).expect("hosts");
        assert!(hosts.contains("127.0.1.1\tweb web"));
    }
}
