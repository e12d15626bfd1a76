//! The last steps before execve, shared by a container's init and by exec: rlimits, user and
//! groups, capabilities, no_new_privs, seccomp, stdio, fds, and the exec itself. Runs in a forked,
//! single-threaded child; errors come back as strings for the report pipe.
use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::str::FromStr;

use caps::{CapSet, Capability};

use crate::config::{Capabilities, Process};

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn cap_set(names: &[String]) -> Result<HashSet<Capability>, String> {
    names.iter().map(|n| Capability::from_str(n).map_err(|_| format!("unknown capability {n:?}"))).collect()
}

fn errno_msg(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// How the process gets its stdio (raw fds valid in the child).
#[derive(Debug, Clone, Copy)]
pub enum ChildStdio {
    Inherit,
    Fds([RawFd; 3]),
    Console(RawFd),
    /// A console socket; the init turns it into `Console` (see `init::open_console`).
    NewConsole(RawFd),
}

pub fn setup_stdio(stdio: ChildStdio) -> Result<(), String> {
    match stdio {
        ChildStdio::Inherit => Ok(()),
        ChildStdio::Fds(fds) => {
            for (target, fd) in fds.iter().enumerate() {
                // SAFETY: dup2 of fds this child owns onto 0, 1, 2.
                if *fd != target as RawFd && unsafe { libc::dup2(*fd, target as RawFd) } < 0 {
                    return Err(errno_msg("setting up stdio"));
                }
            }
            Ok(())
        }
        ChildStdio::NewConsole(_) => Err("a console socket must be opened by the init".to_string()),
        ChildStdio::Console(slave) => {
            // SAFETY: a new session, then the pty slave becomes the controlling terminal and stdio.
            unsafe {
                libc::setsid();
                if libc::ioctl(slave, libc::TIOCSCTTY, 0) < 0 {
                    return Err(errno_msg("setting the controlling terminal"));
                }
                for target in 0..3 {
                    if libc::dup2(slave, target) < 0 {
                        return Err(errno_msg("setting up the terminal"));
                    }
                }
            }
            Ok(())
        }
    }
}

/// rlimits, then user and groups with capabilities kept across the uid change, then the
/// capability sets, no_new_privs and umask.
pub fn setup_identity(p: &Process) -> Result<(), String> {
    for r in &p.rlimits {
        let res = rlimit_resource(&r.typ).ok_or_else(|| format!("unknown rlimit {}", r.typ))?;
        let lim = libc::rlimit { rlim_cur: r.soft, rlim_max: r.hard };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(res, &lim) } < 0 {
            return Err(errno_msg(&format!("setting {}", r.typ)));
        }
    }
    let caps = p.capabilities.clone().unwrap_or_default();
    let bounding = cap_set(&caps.bounding)?;
    for cap in caps::all() {
        if !bounding.contains(&cap) {
            // Capabilities the kernel does not know cannot be dropped, nor held.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    // SAFETY: prctl/setgroups/setresgid/setresuid with plain values.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        let gids: Vec<libc::gid_t> = p.user.additional_gids.clone();
        if libc::setgroups(gids.len(), gids.as_ptr()) < 0 {
            return Err(errno_msg("setgroups"));
        }
        if libc::setresgid(p.user.gid, p.user.gid, p.user.gid) < 0 {
            return Err(errno_msg(&format!("setgid {}", p.user.gid)));
        }
        if libc::setresuid(p.user.uid, p.user.uid, p.user.uid) < 0 {
            return Err(errno_msg(&format!("setuid {}", p.user.uid)));
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    apply_caps(&caps)?;
    if p.no_new_privileges {
        // SAFETY: prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(errno_msg("setting no_new_privs"));
        }
    }
    // SAFETY: umask never fails.
    unsafe { libc::umask(p.user.umask.unwrap_or(0o022)) };
    Ok(())
}

fn apply_caps(c: &Capabilities) -> Result<(), String> {
    // A capability the runtime itself does not hold cannot be granted (a `--privileged` container
    // on a host whose root lacks, say, CAP_SYS_RESOURCE): such requests are narrowed to what exists.
    let held = caps::read(None, CapSet::Permitted).map_err(|e| format!("reading capabilities: {e}"))?;
    let grantable = |names: &[String]| -> Result<HashSet<Capability>, String> {
        Ok(cap_set(names)?.into_iter().filter(|c| held.contains(c)).collect())
    };
    let permitted = grantable(&c.permitted)?;
    let effective = grantable(&c.effective)?;
    let inheritable = grantable(&c.inheritable)?;
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| format!("setting inheritable capabilities: {e}"))?;
    // Effective must stay within permitted at every step: shrink effective first.
    caps::set(None, CapSet::Effective, &effective).map_err(|e| format!("setting effective capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| format!("setting permitted capabilities: {e}"))?;
    // An ambient capability needs to be permitted and inheritable; like runc, one that is not
    // cannot be raised and is skipped rather than failing the container.
    for cap in grantable(&c.ambient)? {
        let _ = caps::raise(None, CapSet::Ambient, cap);
    }
    Ok(())
}

/// Gives the process a clean signal state: nothing blocked, SIGPIPE back to its default. Both survive
/// execve, and the caller (a Rust program, which ignores SIGPIPE) may have changed them.
pub fn reset_signals() {
    // SAFETY: sigprocmask with an empty set and signal(2) with SIG_DFL touch only this process.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Marks every fd from 3 up close-on-exec, so nothing of the runtime's leaks into the container
/// (CVE-2024-21626 class).
pub fn cloexec_from_3() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, String> {
    v.iter().map(|s| CString::new(s.as_str()).map_err(|_| format!("NUL byte in {s:?}"))).collect()
}

/// execve, returning the errno when it fails.
pub fn execve(path: &str, args: &[String], env: &[String]) -> Result<std::convert::Infallible, (i32, String)> {
    let path_c = CString::new(path).map_err(|_| (libc::EINVAL, format!("NUL byte in {path:?}")))?;
    let argv = cstrings(args).map_err(|m| (libc::EINVAL, m))?;
    let envp = cstrings(env).map_err(|m| (libc::EINVAL, m))?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(path_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
    let why = match errno {
        libc::ENOENT => "no such file or directory",
        libc::EACCES => "permission denied",
        _ => "exec format error or similar",
    };
    Err((errno, format!("exec: \"{path}\": {why}")))
}

/// Docker's exit status for a command that could not be run.
pub fn exec_exit_code(errno: i32) -> i32 {
    if errno == libc::ENOENT { 127 } else { 126 }
}
