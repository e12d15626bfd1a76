//! Seccomp for berth: compiles an OCI `LinuxSeccomp` profile into one classic-BPF program (with its
//! own small compiler, see `bpf`), caches compiled programs by the profile's checksum, installs a
//! program on the calling thread, and provides Docker's default profile as data. Knows nothing of
//! containers: which profile a container gets, and when to install it, is the runtime's business.
//!
//! Compiled for the host's architecture family: x86_64 (with the x86 and x32 sub-arches when the
//! profile lists them) or aarch64. A syscall from an architecture not compiled in is killed, as
//! libseccomp's default bad-arch action does. Syscall names unknown on an arch are skipped there,
//! as libseccomp does; an unknown action, operator or flag is an error.

mod bpf;
mod profile;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::{
    Arch as OciArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("seccomp profile: unsupported action {0}")]
    UnsupportedAction(String),
    #[error("seccomp profile: {0}")]
    Profile(String),
    #[error("seccomp profiles are compiled for x86_64 and aarch64 hosts only, not {0}")]
    UnsupportedArch(&'static str),
    #[error("compiled seccomp filter has {0} instructions, more than the kernel's limit of 4096")]
    TooLarge(usize),
    #[error("installing the seccomp filter: {0}")]
    Install(std::io::Error),
    #[error("installing the seccomp filter: thread {0} could not be synchronised (TSYNC)")]
    Tsync(i32),
    #[error("compiled seccomp filter is corrupt: {0}")]
    Corrupt(&'static str),
}

/// One classic-BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// A compiled profile: the BPF program and the SECCOMP_FILTER_FLAG_* bits to install it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    program: Vec<Instruction>,
    flags: u32,
}

/// Marks the byte format of [`Filter::to_bytes`]; bump it when the compiler's output changes so
/// that old cache entries are not reused (the cache key includes it too).
const FORMAT: &[u8; 4] = b"bsf1";

impl Filter {
    pub fn instructions(&self) -> &[Instruction] {
        &self.program
    }

    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// "bsf1", flags (u32 LE), then 8 bytes per instruction (code u16 LE, jt, jf, k u32 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 8 * self.program.len());
        out.extend_from_slice(FORMAT);
        out.extend_from_slice(&self.flags.to_le_bytes());
        for ins in &self.program {
            out.extend_from_slice(&ins.code.to_le_bytes());
            out.push(ins.jt);
            out.push(ins.jf);
            out.extend_from_slice(&ins.k.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Filter, Error> {
        if b.len() < 8 || &b[..4] != FORMAT {
            return Err(Error::Corrupt("missing the bsf1 header"));
        }
        let flags = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let body = &b[8..];
        if !body.chunks_exact(8).remainder().is_empty() {
            return Err(Error::Corrupt("length is not a whole number of instructions"));
        }
        let program: Vec<Instruction> = body
            .chunks_exact(8)
            .map(|c| Instruction {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        if program.is_empty() || program.len() > bpf::MAX_INSTRUCTIONS {
            return Err(Error::Corrupt("instruction count out of range"));
        }
        Ok(Filter { program, flags })
    }
}

/// Reads a profile from OCI JSON; an unknown action, operator or arch is an error naming it.
pub fn profile_from_json(json: &[u8]) -> Result<LinuxSeccomp, Error> {
    serde_json::from_slice(json).map_err(|e| Error::Profile(e.to_string()))
}

pub fn compile(profile: &LinuxSeccomp) -> Result<Filter, Error> {
    let program = bpf::compile(profile)?;
    let flags = profile.flags().iter().flatten().map(|f| flag_bit(*f)).fold(0, |a, b| a | b);
    Ok(Filter { program, flags })
}

fn flag_bit(f: LinuxSeccompFilterFlag) -> u32 {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
    }
}

/// `compile`, cached under `cache_dir` by the sha256 of the profile's canonical JSON (serde's
/// output of the typed profile: fields in a fixed order), the byte format and the host arch. A
/// corrupt or unreadable entry is recompiled and replaced; a failure to write the cache is logged
/// and otherwise ignored, since the compiled filter is still good.
pub fn compile_cached(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, Error> {
    let path = cache_dir.join(format!("{}.bpf", cache_key(profile)?));
    match std::fs::read(&path) {
        Ok(bytes) => match Filter::from_bytes(&bytes) {
            Ok(f) => return Ok(f),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "seccomp cache entry is corrupt, recompiling"),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "reading seccomp cache entry"),
    }
    let filter = compile(profile)?;
    if let Err(e) = write_atomically(&path, &filter.to_bytes()) {
        tracing::warn!(path = %path.display(), error = %e, "writing seccomp cache entry");
    }
    Ok(filter)
}

fn cache_key(profile: &LinuxSeccomp) -> Result<String, Error> {
    let json = serde_json::to_vec(profile).map_err(|e| Error::Profile(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(&json);
    Ok(hex::encode(h.finalize()))
}

/// Writes to a unique temporary name in the same directory and renames it over `path`, so a
/// concurrent reader sees the old entry, the new one, or none, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp: PathBuf = dir.join(format!(".{}.{}.{n}.tmp", path.file_name().map_or("bpf".into(), |f| f.to_string_lossy()), std::process::id()));
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Installs the filter on the calling thread (with TSYNC in its flags, on every thread of the
/// process). Needs no_new_privs or CAP_SYS_ADMIN, as the kernel does. No allocation and no locks:
/// it only builds a `sock_fprog` on the stack and calls seccomp(2), so it is safe in a forked child
/// of a multi-threaded process right before execve.
pub fn install(filter: &Filter) -> Result<(), Error> {
    let prog = libc::sock_fprog {
        len: filter.program.len() as libc::c_ushort,
        // The kernel only reads the program; Instruction has sock_filter's layout (repr(C)).
        filter: filter.program.as_ptr() as *mut libc::sock_filter,
    };
    const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
    // SAFETY: `prog` points at `filter.program`, which outlives the call; the kernel copies it.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, filter.flags as libc::c_ulong, &prog as *const libc::sock_fprog) };
    if rc == 0 {
        return Ok(());
    }
    if rc > 0 {
        // With TSYNC the kernel answers with the id of a thread it could not synchronise.
        return Err(Error::Tsync(rc as i32));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOSYS) && filter.flags == 0 {
        // Kernels before 3.17 have no seccomp(2); prctl does the same without flags.
        // SAFETY: as above; prctl reads the program during the call only.
        let rc = unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) };
        if rc == 0 {
            return Ok(());
        }
        return Err(Error::Install(std::io::Error::last_os_error()));
    }
    Err(Error::Install(err))
}

/// Docker's default seccomp profile for a container with these effective capabilities
/// ("CAP_SYS_ADMIN", …), for this host's architecture family: defaultAction SCMP_ACT_ERRNO
/// (EPERM), the allowlist, the host-arch and capability additions, personality and socket
/// argument rules, and without CAP_SYS_ADMIN clone restricted to no new namespaces and clone3
/// answered with ENOSYS.
pub fn default_profile(capabilities: &[String]) -> LinuxSeccomp {
    let has = |c: &str| capabilities.iter().any(|x| x == c);
    let arch = std::env::consts::ARCH;
    let mut names: Vec<&str> = profile::ALLOWED.to_vec();
    for (a, extra) in profile::BY_ARCH {
        if *a == arch {
            names.extend_from_slice(extra);
        }
    }
    for (cap, extra) in profile::BY_CAPABILITY {
        if has(cap) {
            names.extend_from_slice(extra);
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut syscalls = vec![syscall(&names, LinuxSeccompAction::ScmpActAllow, None, vec![])];
    for v in profile::PERSONALITIES {
        syscalls.push(syscall(&["personality"], LinuxSeccompAction::ScmpActAllow, None, vec![arg(0, *v, None, LinuxSeccompOperator::ScmpCmpEq)]));
    }
    syscalls.push(syscall(&["socket"], LinuxSeccompAction::ScmpActAllow, None, vec![arg(0, profile::AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe)]));
    if !has("CAP_SYS_ADMIN") {
        let no_namespaces = arg(0, profile::CLONE_NAMESPACE_FLAGS, Some(0), LinuxSeccompOperator::ScmpCmpMaskedEq);
        syscalls.push(syscall(&["clone"], LinuxSeccompAction::ScmpActAllow, None, vec![no_namespaces]));
        syscalls.push(syscall(&["clone3"], LinuxSeccompAction::ScmpActErrno, Some(profile::CLONE3_ERRNO), vec![]));
    }
    let architectures = match arch {
        "x86_64" => vec![OciArch::ScmpArchX86_64, OciArch::ScmpArchX86, OciArch::ScmpArchX32],
        "aarch64" => vec![OciArch::ScmpArchAarch64, OciArch::ScmpArchArm],
        _ => vec![OciArch::ScmpArchNative],
    };
    let mut p = LinuxSeccomp::default();
    p.set_default_action(LinuxSeccompAction::ScmpActErrno);
    p.set_default_errno_ret(Some(libc::EPERM as u32));
    p.set_architectures(Some(architectures));
    p.set_syscalls(Some(syscalls));
    p
}

fn syscall(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    s.set_errno_ret(errno);
    if !args.is_empty() {
        s.set_args(Some(args));
    }
    s
}

fn arg(index: usize, value: u64, value_two: Option<u64>, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    // Only setters of fields that all have defaults were called, so building cannot fail.
    b.build().expect("every LinuxSeccompArg field has a default")
}

#[cfg(test)]
mod tests;
