//! Resource usage of a cgroup, the same shape on v1 and v2 (what `docker stats` and the
//! kubelet's summary need).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub memory: MemoryStats,
    pub cpu: CpuStats,
    pub pids: PidsStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryStats {
    /// Bytes charged now (v1 memory.usage_in_bytes, v2 memory.current).
    pub usage: u64,
    /// Highest usage seen (v1 memory.max_usage_in_bytes, v2 memory.peak where the kernel has it).
    pub max_usage: u64,
    /// The limit; None when unlimited.
    pub limit: Option<u64>,
    /// Page cache (v1 `total_cache`, v2 `file`).
    pub cache: u64,
    /// Inactive file pages, which `docker stats` subtracts from usage (v1 `total_inactive_file`,
    /// v2 `inactive_file`).
    pub inactive_file: u64,
    /// Times the OOM killer killed a task here (v1 memory.oom_control, v2 memory.events).
    pub oom_kill: u64,
    /// The raw memory.stat counters.
    pub stat: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuStats {
    /// CPU time used, in nanoseconds.
    pub usage_total_ns: u64,
    pub usage_user_ns: u64,
    pub usage_system_ns: u64,
    /// Per CPU, in nanoseconds (v1 cpuacct.usage_percpu; empty on v2, which does not count it).
    pub usage_per_cpu_ns: Vec<u64>,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Throttling {
    /// CFS periods that elapsed with tasks runnable.
    pub periods: u64,
    /// Of those, periods in which the group ran out of quota.
    pub throttled_periods: u64,
    pub throttled_time_ns: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PidsStats {
    pub current: u64,
    /// None when unlimited.
    pub limit: Option<u64>,
}
