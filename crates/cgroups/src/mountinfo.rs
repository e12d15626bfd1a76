//! Which cgroup hierarchies are mounted where, from /proc/self/mountinfo.

use std::path::PathBuf;

use crate::{Error, Hierarchy};

/// v1 controllers the kernel knows; other super options of a cgroup mount (xattr, noprefix,
/// clone_children, release_agent=…) are not controllers.
const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio", "blkio", "perf_event",
    "hugetlb", "pids", "rdma", "misc", "debug",
];

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub mount_point: PathBuf,
    /// For v1: its controllers and its `name=…` if named ("name=systemd"). Empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

pub(crate) fn read() -> Result<Vec<Mount>, Error> {
    let path = "/proc/self/mountinfo";
    let info = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.into(), source })?;
    Ok(parse(&info))
}

/// The cgroup mounts under /sys/fs/cgroup, one per hierarchy (a hierarchy mounted twice, or a
/// cgroup fs mounted elsewhere, say inside a container's rootfs, is not counted again).
pub(crate) fn parse(info: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in info.lines() {
        let Some(m) = parse_line(line) else { continue };
        if !m.mount_point.starts_with(crate::ROOT) {
            continue;
        }
        if out.iter().any(|o| o.v2 == m.v2 && o.controllers == m.controllers) {
            continue;
        }
        out.push(m);
    }
    out
}

fn parse_line(line: &str) -> Option<Mount> {
    // "36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid … shared:15 - cgroup cgroup rw,memory"
    let (pre, post) = line.split_once(" - ")?;
    let mount_point = unescape(pre.split(' ').nth(4)?);
    let mut post = post.split(' ');
    let fstype = post.next()?;
    let _source = post.next()?;
    let super_opts = post.next().unwrap_or("");
    let v2 = match fstype {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return None,
    };
    let controllers = if v2 {
        Vec::new()
    } else {
        let mut c: Vec<String> = super_opts
            .split(',')
            .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
            .map(String::from)
            .collect();
        c.sort();
        c
    };
    Some(Mount { mount_point: PathBuf::from(mount_point), controllers, v2 })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// V2 when cgroup2 is mounted at /sys/fs/cgroup itself; Hybrid when v1 hierarchies sit beside a
/// cgroup2 mount (usually /sys/fs/cgroup/unified); V1 otherwise.
pub(crate) fn hierarchy(mounts: &[Mount]) -> Result<Hierarchy, Error> {
    let root = std::path::Path::new(crate::ROOT);
    let v2_at_root = mounts.iter().any(|m| m.v2 && m.mount_point == root);
    let has_v1 = mounts.iter().any(|m| !m.v2);
    let has_v2 = mounts.iter().any(|m| m.v2);
    match (v2_at_root, has_v1, has_v2) {
        (true, _, _) => Ok(Hierarchy::V2),
        (false, true, true) => Ok(Hierarchy::Hybrid),
        (false, true, false) => Ok(Hierarchy::V1),
        _ => Err(Error::NotMounted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
38 33 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
39 33 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
40 33 0:35 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpuset,clone_children
41 2 0:35 / /var/lib/x/rootfs/sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
42 33 0:35 / /sys/fs/cgroup/cpuset2 rw - cgroup cgroup rw,cpuset
";

    #[test]
    fn hybrid_mountinfo_lists_each_hierarchy_once_with_its_controllers() {
        let m = parse(HYBRID);
        let names: Vec<(&str, Vec<&str>, bool)> = m
            .iter()
            .map(|m| (m.mount_point.to_str().unwrap_or(""), m.controllers.iter().map(String::as_str).collect(), m.v2))
            .collect();
        assert_eq!(
            names,
            vec![
                ("/sys/fs/cgroup/unified", vec![], true),
                ("/sys/fs/cgroup/systemd", vec!["name=systemd"], false),
                ("/sys/fs/cgroup/cpu,cpuacct", vec!["cpu", "cpuacct"], false),
                ("/sys/fs/cgroup/memory", vec!["memory"], false),
                ("/sys/fs/cgroup/cpuset", vec!["cpuset"], false),
            ]
        );
        assert_eq!(hierarchy(&m).ok(), Some(Hierarchy::Hybrid));
    }

    #[test]
    fn cgroup2_at_the_root_is_a_v2_host() {
        let m = parse("30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n");
        assert_eq!(hierarchy(&m).ok(), Some(Hierarchy::V2));
    }

    #[test]
    fn only_v1_mounts_make_a_v1_host_and_none_is_an_error() {
        let v1: String = HYBRID.lines().filter(|l| !l.contains("cgroup2")).map(|l| format!("{l}\n")).collect();
        assert_eq!(hierarchy(&parse(&v1)).ok(), Some(Hierarchy::V1));
        assert!(matches!(hierarchy(&parse("25 30 0:23 / /sys rw - sysfs sysfs rw\n")), Err(Error::NotMounted)));
    }

    #[test]
    fn octal_escapes_in_mount_points_are_decoded() {
        let m = parse("30 25 0:26 / /sys/fs/cgroup/odd\\040name rw - cgroup cgroup rw,pids\n");
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/odd name"));
    }
}
