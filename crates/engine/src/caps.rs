//! Capability policy: Docker's default set, `--cap-add/--cap-drop` (with `ALL`) and `--privileged`.
use crate::error::{Error, Result};

/// Docker's default bounding set (0xa80425fb), as the runtime defines it.
pub use runtime::caps::DOCKER_DEFAULT;

/// Every capability the kernel knows today, in bit order (0..=40).
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `net_admin`, `NET_ADMIN` and `CAP_NET_ADMIN` all name the same capability; `ALL` stays `ALL`.
fn normalize(name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    if ALL.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(Error::InvalidArgument(format!("invalid capability: {name:?}")))
    }
}

/// The effective set for a container, in bit order.
pub fn effective(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>> {
    if privileged {
        return Ok(ALL.iter().map(|s| s.to_string()).collect());
    }
    let add = add.iter().map(|c| normalize(c)).collect::<Result<Vec<_>>>()?;
    let drop = drop.iter().map(|c| normalize(c)).collect::<Result<Vec<_>>>()?;
    let base: Vec<&str> = if add.iter().any(|c| c == "ALL") { ALL.to_vec() } else { DOCKER_DEFAULT.to_vec() };
    let drop_all = drop.iter().any(|c| c == "ALL");
    Ok(ALL
        .iter()
        .filter(|cap| {
            let wanted = base.contains(cap) || add.iter().any(|a| a == *cap);
            let dropped = drop_all && !add.iter().any(|a| a == *cap) || drop.iter().any(|d| d == *cap);
            wanted && !dropped
        })
        .map(|s| s.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_set_is_dockers_fourteen() {
        let caps = effective(&[], &[], false).expect("caps");
        assert_eq!(caps.len(), 14);
        let mask: u64 = caps
            .iter()
            .map(|c| 1u64 << ALL.iter().position(|a| a == c).expect("known"))
            .sum();
        assert_eq!(mask, 0xa80425fb);
    }

    #[test]
    fn add_and_drop_accept_short_lowercase_names() {
        let caps = effective(&s(&["net_admin"]), &s(&["CHOWN"]), false).expect("caps");
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
    }

    #[test]
    fn drop_all_keeps_only_the_added() {
        let caps = effective(&s(&["KILL"]), &s(&["ALL"]), false).expect("caps");
        assert_eq!(caps, s(&["CAP_KILL"]));
    }

    #[test]
    fn unknown_capability_is_rejected() {
        assert!(effective(&s(&["FLY"]), &[], false).is_err());
    }

    #[test]
    fn privileged_gets_everything() {
        assert_eq!(effective(&[], &s(&["ALL"]), true).expect("caps").len(), ALL.len());
    }
}
