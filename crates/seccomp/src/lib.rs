//! Seccomp: Docker's default profile as an OCI `LinuxSeccomp`, compiled to BPF (and cached by the
//! profile's checksum) and installed. Knows nothing of containers.
//!
//! Compilation goes through `seccompiler`, whose syscall tables map names to numbers for the target
//! arch. seccompiler gives one action per filter, so a profile is compiled into one filter per action:
//! the base filter (the profile's default action, everything listed passes) and one filter per other
//! action (ENOSYS for clone3, say). The kernel runs them all and takes the most restrictive answer.
//! Syscall names the arch does not have are skipped, as libseccomp does.

mod profile;

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("seccomp profile: unsupported action {0}")]
    UnsupportedAction(String),
    #[error("seccomp profile: {0}")]
    Compile(String),
    #[error("seccomp profiles are compiled for x86_64 and aarch64 only, not {0}")]
    UnsupportedArch(&'static str),
    #[error("installing the seccomp filter: {0}")]
    Install(String),
    #[error("corrupt cached seccomp filter")]
    CorruptCache,
}

/// A compiled profile: one or more BPF programs, installed in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    programs: Vec<seccompiler::BpfProgram>,
}

impl Filter {
    /// Length-prefixed instructions, 8 bytes each, for the on-disk cache.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &self.programs {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            for ins in p {
                out.extend_from_slice(&ins.code.to_le_bytes());
                out.push(ins.jt);
                out.push(ins.jf);
                out.extend_from_slice(&ins.k.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(mut b: &[u8]) -> Result<Filter, Error> {
        let mut programs = Vec::new();
        while !b.is_empty() {
            let n = u32::from_le_bytes(b.get(..4).ok_or(Error::CorruptCache)?.try_into().map_err(|_| Error::CorruptCache)?) as usize;
            b = &b[4..];
            let body = b.get(..n * 8).ok_or(Error::CorruptCache)?;
            let prog = body
                .chunks_exact(8)
                .map(|c| seccompiler::sock_filter {
                    code: u16::from_le_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
                })
                .collect();
            programs.push(prog);
            b = &b[n * 8..];
        }
        Ok(Filter { programs })
    }
}

fn target_arch() -> Result<seccompiler::TargetArch, Error> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(seccompiler::TargetArch::x86_64),
        "aarch64" => Ok(seccompiler::TargetArch::aarch64),
        other => Err(Error::UnsupportedArch(other)),
    }
}

/// seccompiler's JSON spelling of an OCI action.
fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Value, Error> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        LinuxSeccompAction::ScmpActErrno => json!({"errno": errno.unwrap_or(libc::EPERM as u32)}),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => json!("kill_thread"),
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        LinuxSeccompAction::ScmpActTrace => json!({"trace": errno.unwrap_or(0)}),
        other => return Err(Error::UnsupportedAction(format!("{other:?}"))),
    })
}

fn op(o: LinuxSeccompOperator, mask: u64) -> Value {
    match o {
        LinuxSeccompOperator::ScmpCmpEq => json!("eq"),
        LinuxSeccompOperator::ScmpCmpNe => json!("ne"),
        LinuxSeccompOperator::ScmpCmpLt => json!("lt"),
        LinuxSeccompOperator::ScmpCmpLe => json!("le"),
        LinuxSeccompOperator::ScmpCmpGt => json!("gt"),
        LinuxSeccompOperator::ScmpCmpGe => json!("ge"),
        LinuxSeccompOperator::ScmpCmpMaskedEq => json!({"masked_eq": mask}),
    }
}

/// Whether the target arch knows the syscall (names of other arches are skipped).
fn known(name: &str, arch: seccompiler::TargetArch) -> bool {
    let probe = json!({"p": {"mismatch_action": "allow", "match_action": "log", "filter": [{"syscall": name}]}});
    seccompiler::compile_from_json(probe.to_string().as_bytes(), arch).is_ok()
}

pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, Error> {
    let arch = target_arch()?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    // Rules grouped by their action's JSON spelling.
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    let mut listed = Vec::new();
    for sc in profile.syscalls().iter().flatten() {
        let act = action(sc.action(), sc.errno_ret())?;
        let args: Vec<Value> = sc
            .args()
            .iter()
            .flatten()
            .map(|a| json!({"index": a.index(), "type": "qword", "op": op(a.op(), a.value()), "val": a.value_two().filter(|_| a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq).unwrap_or(a.value())}))
            .collect();
        for name in sc.names() {
            if !known(name, arch) {
                continue;
            }
            let mut rule = json!({"syscall": name});
            if !args.is_empty() {
                rule["args"] = json!(args);
            }
            if act == default {
                continue;
            }
            if act != json!("allow") {
                groups.entry(act.to_string()).or_insert_with(|| (act.clone(), Vec::new())).1.push(rule.clone());
            }
            // Everything not left to the default action passes the base filter; the extra filters
            // then apply the non-allow actions.
            listed.push(rule);
        }
    }
    let mut filters = serde_json::Map::new();
    if default != json!("allow") {
        filters.insert("0base".into(), json!({"mismatch_action": default, "match_action": "allow", "filter": listed}));
    }
    for (i, (_, (act, rules))) in groups.into_iter().enumerate() {
        filters.insert(format!("{}extra", i + 1), json!({"mismatch_action": "allow", "match_action": act, "filter": rules}));
    }
    let compiled = seccompiler::compile_from_json(Value::Object(filters).to_string().as_bytes(), arch)
        .map_err(|e| Error::Compile(e.to_string()))?;
    let mut named: Vec<(String, seccompiler::BpfProgram)> = compiled.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Filter { programs: named.into_iter().map(|(_, p)| p).collect() })
}

/// `compile`, cached under `cache_dir` by the sha256 of the profile's JSON.
pub fn compile_cached(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, Error> {
    let key = hex::encode(Sha256::digest(serde_json::to_vec(profile).unwrap_or_default()));
    let path = cache_dir.join(format!("{key}.bpf"));
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(f) = Filter::from_bytes(&bytes) {
            return Ok(f);
        }
    }
    let filter = compile(profile)?;
    let _ = std::fs::create_dir_all(cache_dir);
    let tmp = cache_dir.join(format!("{key}.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, filter.to_bytes()).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
    Ok(filter)
}

/// Installs the filter on the calling thread; needs no_new_privs or CAP_SYS_ADMIN, as the kernel
/// does. Allocation-free, so it may run in a forked child just before execve.
pub fn install(filter: &Filter) -> Result<(), Error> {
    for p in &filter.programs {
        seccompiler::apply_filter(p).map_err(|e| Error::Install(e.to_string()))?;
    }
    Ok(())
}

/// Docker's default profile for a container with the given effective capabilities.
pub fn default_profile(capabilities: &[String]) -> LinuxSeccomp {
    let has = |c: &str| capabilities.iter().any(|x| x == c);
    let mut names: Vec<&str> = profile::ALLOWED.to_vec();
    for (cap, extra) in profile::BY_CAPABILITY {
        if has(cap) {
            names.extend_from_slice(extra);
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut syscalls = vec![json!({"names": names, "action": "SCMP_ACT_ALLOW"})];
    let personality: Vec<Value> = profile::PERSONALITIES
        .iter()
        .map(|v| json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}))
        .collect();
    syscalls.extend(personality);
    syscalls.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": profile::AF_VSOCK, "op": "SCMP_CMP_NE"}]}));
    if !has("CAP_SYS_ADMIN") {
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": profile::CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        // glibc falls back to clone when clone3 says ENOSYS; clone3's flags live in memory where
        // seccomp cannot look, so it cannot be filtered by argument.
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOSYS}));
    }
    let value = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EPERM,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": syscalls,
    });
    serde_json::from_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests;
