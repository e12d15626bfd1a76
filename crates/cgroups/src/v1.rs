//! Limits and statistics through the v1 controllers (on v1 and hybrid hosts).

use std::path::Path;

use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources};

use crate::fs::{read_keyed, read_list, read_u64, write};
use crate::stats::{MemoryStats, PidsStats, Stats, Throttling};
use crate::{pids_max, Cgroup, Error};

/// v1 reports "unlimited" as the largest page-aligned counter (0x7FFFFFFFFFFFF000 with 4 KiB
/// pages); anything this large is no limit.
const UNLIMITED_FLOOR: u64 = 1 << 62;

pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<(), Error> {
    if let Some(m) = r.memory() {
        memory(cg.required("memory")?, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(cg, c)?;
    }
    if let Some(p) = r.pids() {
        // Docker asks for "unlimited" on every container; a host without the controller has that.
        match cg.dir("pids") {
            None if p.limit() <= 0 => {}
            _ => write(&cg.required("pids")?.join("pids.max"), &pids_max(p.limit()))?,
        }
    }
    if let Some(devices) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        let dir = cg.required("devices")?;
        for d in devices {
            let Some(rule) = device_rule(d) else {
                tracing::debug!(device = ?d, "device rule of a type cgroups do not control, skipped");
                continue;
            };
            let file = if d.allow() { "devices.allow" } else { "devices.deny" };
            write(&dir.join(file), &rule)?;
        }
    }
    Ok(())
}

fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), Error> {
    let limit = m.limit().filter(|l| *l != 0);
    let swap = m.swap().filter(|s| *s != 0);
    let limit_file = dir.join("memory.limit_in_bytes");
    let memsw_file = dir.join("memory.memsw.limit_in_bytes");
    if swap.is_some() && !memsw_file.exists() {
        return Err(Error::Invalid(format!("a swap limit needs {} (swap accounting is off in this kernel)", memsw_file.display())));
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // The kernel keeps memory ≤ memory+swap at every step, so the order depends on
            // whether the new memory+swap limit is above the current memory limit.
            let current = read_u64(&limit_file)?;
            if s == -1 || (s as u64) > current {
                write(&memsw_file, &s.to_string())?;
                write(&limit_file, &l.to_string())?;
            } else {
                write(&limit_file, &l.to_string())?;
                write(&memsw_file, &s.to_string())?;
            }
        }
        (Some(l), None) => write(&limit_file, &l.to_string())?,
        (None, Some(s)) => write(&memsw_file, &s.to_string())?,
        (None, None) => {}
    }
    if let Some(res) = m.reservation().filter(|r| *r != 0) {
        write(&dir.join("memory.soft_limit_in_bytes"), &res.to_string())?;
    }
    if let Some(sw) = m.swappiness().filter(|s| *s <= 100) {
        write(&dir.join("memory.swappiness"), &sw.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write(&dir.join("memory.oom_control"), "1")?;
    }
    Ok(())
}

fn cpu(cg: &Cgroup, c: &LinuxCpu) -> Result<(), Error> {
    let wants_cpu = c.shares().is_some_and(|s| s > 0)
        || c.period().is_some_and(|p| p > 0)
        || c.quota().is_some_and(|q| q != 0)
        || c.realtime_period().is_some_and(|p| p > 0)
        || c.realtime_runtime().is_some_and(|r| r != 0);
    if wants_cpu {
        let dir = cg.required("cpu")?;
        if let Some(shares) = c.shares().filter(|s| *s > 0) {
            write(&dir.join("cpu.shares"), &shares.to_string())?;
        }
        // Period first: a quota is checked against the period in force.
        if let Some(period) = c.period().filter(|p| *p > 0) {
            write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
        }
        if let Some(quota) = c.quota().filter(|q| *q != 0) {
            write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        if let Some(p) = c.realtime_period().filter(|p| *p > 0) {
            write(&dir.join("cpu.rt_period_us"), &p.to_string())?;
        }
        if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
            write(&dir.join("cpu.rt_runtime_us"), &r.to_string())?;
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let dir = cg.required("cpuset")?;
        if let Some(cpus) = cpus {
            write(&dir.join("cpuset.cpus"), cpus)?;
        }
        if let Some(mems) = mems {
            write(&dir.join("cpuset.mems"), mems)?;
        }
    }
    Ok(())
}

/// The devices.allow / devices.deny line of a rule: "c 1:3 rwm", "a *:* rwm"; None for types
/// the devices controller does not know (FIFOs).
pub(crate) fn device_rule(d: &LinuxDeviceCgroup) -> Option<String> {
    let kind = match d.typ().unwrap_or_default() {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => return None,
    };
    let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or_else(|| "*".to_string(), |n| n.to_string());
    let access = d.access().as_deref().filter(|a| !a.is_empty()).unwrap_or("rwm");
    Some(format!("{kind} {}:{} {access}", num(d.major()), num(d.minor())))
}

/// v1 cgroups make new cpuset groups empty and refuse tasks until cpus and mems are set: copy
/// them down from the nearest ancestor that has them, for each level from the mount down.
pub(crate) fn init_cpuset(mount_point: &Path, dir: &Path) -> Result<(), Error> {
    let mut chain: Vec<&Path> = dir.ancestors().take_while(|p| p.starts_with(mount_point)).collect();
    chain.reverse();
    for pair in chain.windows(2) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let here = pair[1].join(file);
            let current = crate::fs::read(&here)?.unwrap_or_default();
            if current.trim().is_empty() {
                let parent = crate::fs::read(&pair[0].join(file))?.unwrap_or_default();
                write(&here, parent.trim())?;
            }
        }
    }
    Ok(())
}

pub(crate) fn stats(cg: &Cgroup) -> Result<Stats, Error> {
    let mut s = Stats::default();
    if let Some(d) = cg.dir("memory") {
        s.memory = memory_stats(d)?;
    }
    if let Some(d) = cg.dir("cpuacct") {
        s.cpu.usage_total_ns = read_u64(&d.join("cpuacct.usage"))?;
        s.cpu.usage_per_cpu_ns = read_list(&d.join("cpuacct.usage_percpu"))?;
        let ticks = read_keyed(&d.join("cpuacct.stat"))?;
        let ns_per_tick = 1_000_000_000 / clock_ticks();
        s.cpu.usage_user_ns = ticks.get("user").copied().unwrap_or(0) * ns_per_tick;
        s.cpu.usage_system_ns = ticks.get("system").copied().unwrap_or(0) * ns_per_tick;
    }
    if let Some(d) = cg.dir("cpu") {
        s.cpu.throttling = throttling(&read_keyed(&d.join("cpu.stat"))?);
    }
    if let Some(d) = cg.dir("pids") {
        s.pids = PidsStats { current: read_u64(&d.join("pids.current"))?, limit: crate::fs::read_limit(&d.join("pids.max"))? };
    }
    Ok(s)
}

fn memory_stats(d: &Path) -> Result<MemoryStats, Error> {
    let stat = read_keyed(&d.join("memory.stat"))?;
    let limit = read_u64(&d.join("memory.limit_in_bytes"))?;
    let get = |k: &str, fallback: &str| stat.get(k).or_else(|| stat.get(fallback)).copied().unwrap_or(0);
    Ok(MemoryStats {
        usage: read_u64(&d.join("memory.usage_in_bytes"))?,
        max_usage: read_u64(&d.join("memory.max_usage_in_bytes"))?,
        limit: (limit < UNLIMITED_FLOOR).then_some(limit),
        cache: get("total_cache", "cache"),
        inactive_file: get("total_inactive_file", "inactive_file"),
        oom_kill: read_keyed(&d.join("memory.oom_control"))?.get("oom_kill").copied().unwrap_or(0),
        stat,
    })
}

/// cpu.stat of v1: nr_periods, nr_throttled, throttled_time (ns).
pub(crate) fn throttling(stat: &std::collections::BTreeMap<String, u64>) -> Throttling {
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    Throttling { periods: get("nr_periods"), throttled_periods: get("nr_throttled"), throttled_time_ns: get("throttled_time") }
}

/// USER_HZ, the unit of cpuacct.stat.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(v: serde_json::Value) -> LinuxDeviceCgroup {
        serde_json::from_value(v).expect("device")
    }

    #[test]
    fn device_rules_render_like_the_devices_controller_expects() {
        assert_eq!(device_rule(&device(serde_json::json!({"allow": false, "access": "rwm"}))).as_deref(), Some("a *:* rwm"));
        assert_eq!(
            device_rule(&device(serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}))).as_deref(),
            Some("c 1:3 rw")
        );
        assert_eq!(device_rule(&device(serde_json::json!({"allow": true, "type": "b", "major": 8}))).as_deref(), Some("b 8:* rwm"));
        assert_eq!(device_rule(&device(serde_json::json!({"allow": true, "type": "u", "major": 5, "minor": -1}))).as_deref(), Some("c 5:* rwm"));
        assert_eq!(device_rule(&device(serde_json::json!({"allow": true, "type": "p"}))), None);
    }

    #[test]
    fn v1_cpu_stat_gives_throttling_in_nanoseconds() {
        let t = throttling(&crate::fs::parse_keyed("nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n"));
        assert_eq!(t, Throttling { periods: 10, throttled_periods: 4, throttled_time_ns: 5000 });
    }
}
