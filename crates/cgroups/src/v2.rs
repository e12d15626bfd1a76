//! Limits and statistics on a unified (v2) hierarchy.
//!
//! Device rules are not applied here: v2 controls devices only through an eBPF program attached
//! to the cgroup, which berth does not load; they are skipped with a debug log. The container
//! still sees only the device nodes its spec creates.

use std::path::Path;

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use crate::fs::{read_keyed, read_limit, read_u64, write};
use crate::stats::{CpuStats, MemoryStats, PidsStats, Stats, Throttling};
use crate::{pids_max, Error};

/// Controllers berth delegates to its cgroups when the parent offers them.
const WANTED: &[&str] = &["cpu", "cpuset", "memory", "pids", "io"];

/// runc's and crun's conversion of v1 cpu shares (2..262144) to v2 cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// memory.swap.max from OCI's memory+swap total: swap alone is the difference (as runc does).
pub(crate) fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>, Error> {
    match (limit.filter(|l| *l != 0), swap.filter(|s| *s != 0)) {
        (_, None) => Ok(None),
        (_, Some(-1)) => Ok(Some("max".into())),
        (None, Some(_)) => Err(Error::Invalid("a memory+swap limit needs a memory limit".into())),
        (Some(-1), Some(_)) => Err(Error::Invalid("a memory+swap limit needs a finite memory limit".into())),
        (Some(l), Some(s)) if s < l => Err(Error::Invalid(format!("memory+swap limit {s} is below the memory limit {l}"))),
        (Some(l), Some(s)) => Ok(Some((s - l).to_string())),
    }
}

/// cpu.max from quota and period: "max 100000", "50000 100000", or None when neither is set.
pub(crate) fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|q| *q != 0);
    let period = period.filter(|p| *p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let q = quota.filter(|q| *q > 0).map_or_else(|| "max".to_string(), |q| q.to_string());
    // Without a period the kernel keeps the current one when given the quota alone.
    Some(match period {
        Some(p) => format!("{q} {p}"),
        None => q,
    })
}

fn limit_value(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

pub(crate) fn apply(dir: &Path, r: &LinuxResources) -> Result<(), Error> {
    if let Some(m) = r.memory() {
        memory(dir, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(dir, c)?;
    }
    if let Some(p) = r.pids() {
        write(&dir.join("pids.max"), &pids_max(p.limit()))?;
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        tracing::debug!(dir = %dir.display(), "device rules skipped: cgroup v2 needs an eBPF device program");
    }
    Ok(())
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), Error> {
    let swap = swap_max(m.limit(), m.swap())?;
    // memory.max and memory.swap.max are independent on v2, so their order does not matter.
    if let Some(l) = m.limit().filter(|l| *l != 0) {
        write(&dir.join("memory.max"), &limit_value(l))?;
    }
    if let Some(s) = swap {
        write(&dir.join("memory.swap.max"), &s)?;
    }
    if let Some(res) = m.reservation().filter(|r| *r != 0) {
        write(&dir.join("memory.low"), &limit_value(res))?;
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::debug!(dir = %dir.display(), "disableOOMKiller has no cgroup v2 equivalent, skipped");
    }
    Ok(())
}

fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), Error> {
    if let Some(shares) = c.shares().filter(|s| *s > 0) {
        write(&dir.join("cpu.weight"), &shares_to_weight(shares).to_string())?;
    }
    if let Some(max) = cpu_max(c.quota(), c.period()) {
        write(&dir.join("cpu.max"), &max)?;
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(&dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write(&dir.join("cpuset.mems"), mems)?;
    }
    Ok(())
}

/// Turns on the wanted controllers in every ancestor's subtree_control, from the mount down, so
/// the cgroup gets their interface files. Controllers a parent does not offer are left out.
pub(crate) fn enable_controllers(mount_point: &Path, dir: &Path) -> Result<(), Error> {
    let mut chain: Vec<&Path> = dir.ancestors().skip(1).take_while(|p| p.starts_with(mount_point)).collect();
    chain.reverse();
    for parent in chain {
        let available = crate::fs::read(&parent.join("cgroup.controllers"))?.unwrap_or_default();
        let enabled = crate::fs::read(&parent.join("cgroup.subtree_control"))?.unwrap_or_default();
        let missing: Vec<String> = available
            .split_whitespace()
            .filter(|c| WANTED.contains(c) && !enabled.split_whitespace().any(|e| e == *c))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() {
            write(&parent.join("cgroup.subtree_control"), &missing.join(" "))?;
        }
    }
    Ok(())
}

pub(crate) fn stats(dir: &Path) -> Result<Stats, Error> {
    let stat = read_keyed(&dir.join("memory.stat"))?;
    let memory = MemoryStats {
        usage: read_u64(&dir.join("memory.current"))?,
        max_usage: read_u64(&dir.join("memory.peak"))?,
        limit: read_limit(&dir.join("memory.max"))?,
        cache: stat.get("file").copied().unwrap_or(0),
        inactive_file: stat.get("inactive_file").copied().unwrap_or(0),
        oom_kill: read_keyed(&dir.join("memory.events"))?.get("oom_kill").copied().unwrap_or(0),
        stat,
    };
    let cpu = cpu_stats(&read_keyed(&dir.join("cpu.stat"))?);
    let pids = PidsStats { current: read_u64(&dir.join("pids.current"))?, limit: read_limit(&dir.join("pids.max"))? };
    Ok(Stats { memory, cpu, pids })
}

/// cpu.stat of v2, in microseconds, converted to nanoseconds.
pub(crate) fn cpu_stats(stat: &std::collections::BTreeMap<String, u64>) -> CpuStats {
    let us = |k: &str| stat.get(k).copied().unwrap_or(0) * 1000;
    CpuStats {
        usage_total_ns: us("usage_usec"),
        usage_user_ns: us("user_usec"),
        usage_system_ns: us("system_usec"),
        usage_per_cpu_ns: Vec::new(),
        throttling: Throttling {
            periods: stat.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
            throttled_time_ns: us("throttled_usec"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_to_weights_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn swap_max_is_the_memory_plus_swap_total_minus_memory() {
        assert_eq!(swap_max(Some(512), Some(1024)).expect("ok").as_deref(), Some("512"));
        assert_eq!(swap_max(Some(512), Some(512)).expect("ok").as_deref(), Some("0"));
        assert_eq!(swap_max(Some(512), Some(-1)).expect("ok").as_deref(), Some("max"));
        assert_eq!(swap_max(Some(512), None).expect("ok"), None);
        assert!(swap_max(None, Some(1024)).is_err());
        assert!(swap_max(Some(1024), Some(512)).is_err());
    }

    #[test]
    fn cpu_max_combines_quota_and_period() {
        assert_eq!(cpu_max(Some(50_000), Some(100_000)).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(Some(-1), Some(100_000)).as_deref(), Some("max 100000"));
        assert_eq!(cpu_max(None, Some(20_000)).as_deref(), Some("max 20000"));
        assert_eq!(cpu_max(Some(30_000), None).as_deref(), Some("30000"));
        assert_eq!(cpu_max(None, None), None);
    }

    #[test]
    fn v2_cpu_stat_converts_microseconds() {
        let s = cpu_stats(&crate::fs::parse_keyed("usage_usec 3\nuser_usec 2\nsystem_usec 1\nnr_periods 5\nnr_throttled 2\nthrottled_usec 7\n"));
        assert_eq!((s.usage_total_ns, s.usage_user_ns, s.usage_system_ns), (3000, 2000, 1000));
        assert_eq!(s.throttling, Throttling { periods: 5, throttled_periods: 2, throttled_time_ns: 7000 });
    }
}
