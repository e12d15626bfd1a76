//! `--user` resolution against the container's own /etc/passwd and /etc/group, as Docker does: a name
//! must exist in the image; numeric ids need not.
use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `spec` ("", "name", "uid", "uid:gid", "name:group") inside `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ExecUser> {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    resolve_in(&passwd, &group, spec)
}

fn resolve_in(passwd: &str, group: &str, spec: &str) -> Result<ExecUser> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let entry = passwd.lines().filter_map(parse_passwd).find(|e| {
        e.name == user_part || user_part.parse::<u32>().is_ok_and(|uid| uid == e.uid)
    });
    let (uid, mut gid, home, name) = match (&entry, user_part.parse::<u32>()) {
        (Some(e), _) => (e.uid, e.gid, e.home.clone(), Some(e.name.clone())),
        (None, Ok(uid)) => (uid, uid, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(Error::InvalidArgument(format!(
                "unable to find user {user_part}: no matching entries in passwd file"
            )))
        }
    };
    if uid == 0 && entry.is_none() {
        gid = 0;
    }
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .filter_map(parse_group)
                .find(|e| e.0 == g)
                .map(|e| e.1)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        };
    }
    let mut additional_gids: Vec<u32> = match (&name, group_part) {
        (Some(n), None) => group
            .lines()
            .filter_map(parse_group)
            .filter(|(_, _, members)| members.iter().any(|m| m == n))
            .map(|(_, gid, _)| gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.retain(|g| *g != gid);
    additional_gids.dedup();
    Ok(ExecUser { uid, gid, additional_gids, home })
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 6 {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_string(),
    })
}

fn parse_group(line: &str) -> Option<(String, u32, Vec<String>)> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 3 {
        return None;
    }
    let members = f.get(3).map(|m| m.split(',').filter(|s| !s.is_empty()).map(String::from).collect());
    Some((f[0].to_string(), f[2].parse().ok()?, members.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www\n";

    #[test]
    fn empty_user_is_root() {
        let u = resolve_in(PASSWD, GROUP, "").expect("root");
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn name_resolves_with_supplementary_groups() {
        let u = resolve_in(PASSWD, GROUP, "www").expect("www");
        assert_eq!((u.uid, u.gid), (33, 33));
        assert_eq!(u.additional_gids, vec![50]);
    }

    #[test]
    fn numeric_ids_need_no_passwd_entry() {
        let u = resolve_in(PASSWD, GROUP, "1000:1001").expect("ids");
        assert_eq!((u.uid, u.gid), (1000, 1001));
        let u = resolve_in(PASSWD, GROUP, "1000").expect("uid");
        assert_eq!((u.uid, u.gid), (1000, 1000));
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let err = resolve_in(PASSWD, GROUP, "nobody").expect_err("unknown");
        assert!(err.to_string().contains("unable to find user nobody"));
    }

    #[test]
    fn group_by_name() {
        let u = resolve_in(PASSWD, GROUP, "www:staff").expect("group");
        assert_eq!(u.gid, 50);
    }
}
