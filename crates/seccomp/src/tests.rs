use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

/// Runs `f` in a forked child that sets no_new_privs and installs `filter`; returns the child's
/// exit code (99: the install failed).
fn in_child(filter: &Filter, f: impl FnOnce() -> i32) -> i32 {
    match in_child_status(Some(filter), f) {
        nix::sys::wait::WaitStatus::Exited(_, code) => code,
        other => panic!("child ended with {other:?}"),
    }
}

fn in_child_status(filter: Option<&Filter>, f: impl FnOnce() -> i32) -> nix::sys::wait::WaitStatus {
    // SAFETY: the child only makes raw syscalls and leaves with _exit.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = if filter.is_none_or(|f| install(f).is_ok()) { f() } else { 99 };
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => nix::sys::wait::waitpid(child, None).expect("wait"),
    }
}

/// The errno of a raw syscall's result, 0 when it succeeded.
fn errno_of(rc: libc::c_long) -> i32 {
    if rc < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) } else { 0 }
}

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("profile")
}

fn caps(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn allowed_unconditionally(p: &LinuxSeccomp, name: &str) -> bool {
    p.syscalls().iter().flatten().any(|s| {
        s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none() && s.names().iter().any(|n| n == name)
    })
}

#[test]
fn the_default_profile_compiles_within_the_kernel_limit() {
    for c in [caps(&[]), caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_BOOT"])] {
        let f = compile(&default_profile(&c)).expect("compile");
        assert!(f.instructions().len() < bpf::MAX_INSTRUCTIONS, "{} instructions", f.instructions().len());
    }
}

#[test]
fn capabilities_add_their_syscalls_to_the_default_profile() {
    let plain = default_profile(&caps(&["CAP_CHOWN"]));
    assert!(allowed_unconditionally(&plain, "read"));
    assert!(allowed_unconditionally(&plain, "ptrace"));
    assert!(!allowed_unconditionally(&plain, "reboot"));
    assert!(!allowed_unconditionally(&plain, "unshare"));
    assert!(!allowed_unconditionally(&plain, "io_uring_setup"));
    let boot = default_profile(&caps(&["CAP_SYS_BOOT", "CAP_DAC_READ_SEARCH"]));
    assert!(allowed_unconditionally(&boot, "reboot"));
    assert!(allowed_unconditionally(&boot, "open_by_handle_at"));
    let admin = default_profile(&caps(&["CAP_SYS_ADMIN"]));
    assert!(allowed_unconditionally(&admin, "unshare"));
    assert!(allowed_unconditionally(&admin, "clone3"));
    assert!(!admin.syscalls().iter().flatten().any(|s| s.action() == LinuxSeccompAction::ScmpActErrno));
}

#[test]
fn the_default_profile_round_trips_through_oci_json() {
    let p = default_profile(&[]);
    let json = serde_json::to_vec(&p).expect("json");
    assert_eq!(profile_from_json(&json).expect("parse"), p);
}

#[test]
fn a_cached_program_is_identical_and_much_faster_than_compiling() {
    let p = default_profile(&caps(&["CAP_CHOWN"]));
    let dir = tempfile::tempdir().expect("tmp");
    let fresh = compile_cached(&p, dir.path()).expect("compile");
    let entries: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.file_name()).collect();
    assert_eq!(entries.len(), 1, "one entry and no temporary file left: {entries:?}");
    let cached = compile_cached(&p, dir.path()).expect("cached");
    assert_eq!(cached, fresh);
    assert_eq!(Filter::from_bytes(&fresh.to_bytes()).expect("bytes"), fresh);

    let best = |f: &dyn Fn()| (0..20).map(|_| { let t = Instant::now(); f(); t.elapsed() }).min().unwrap_or(Duration::MAX);
    let compiling = best(&|| { compile(&p).expect("compile"); });
    let hitting = best(&|| { compile_cached(&p, dir.path()).expect("cached"); });
    eprintln!("default profile: compile {compiling:?}, cache hit {hitting:?}, {} instructions", fresh.instructions().len());
    assert!(hitting < compiling, "cache hit {hitting:?} is not faster than compiling {compiling:?}");
}

#[test]
fn a_corrupt_cache_entry_is_recompiled_and_replaced() {
    let p = default_profile(&[]);
    let dir = tempfile::tempdir().expect("tmp");
    let good = compile_cached(&p, dir.path()).expect("compile");
    let entry = std::fs::read_dir(dir.path()).expect("dir").flatten().next().expect("entry").path();
    std::fs::write(&entry, b"bsf1garbage").expect("corrupt");
    assert_eq!(compile_cached(&p, dir.path()).expect("recompile"), good);
    assert_eq!(std::fs::read(&entry).expect("read"), good.to_bytes());
}

#[test]
fn malformed_bytes_are_refused() {
    assert!(Filter::from_bytes(b"").is_err());
    assert!(Filter::from_bytes(b"bsf1\0\0\0\0").is_err());
    assert!(Filter::from_bytes(b"bsf1\0\0\0\0\x06\0\0\0\0\0\xff").is_err());
    assert!(Filter::from_bytes(b"xxxx\0\0\0\0\x06\0\0\0\0\0\xff\x7f").is_err());
    assert!(Filter::from_bytes(b"bsf1\0\0\0\0\x06\0\0\0\0\0\xff\x7f").is_ok());
}

#[test]
fn an_unknown_action_is_an_error_naming_it() {
    let err = profile_from_json(br#"{"defaultAction": "SCMP_ACT_EXPLODE"}"#).expect_err("unknown action");
    assert!(err.to_string().contains("SCMP_ACT_EXPLODE"), "{err}");
    let notify = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}));
    let err = compile(&notify).expect_err("notify needs an agent");
    assert!(err.to_string().contains("SCMP_ACT_NOTIFY"), "{err}");
}

#[test]
fn an_unknown_operator_is_an_error_naming_it() {
    let json = br#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ROUGHLY"}]}]}"#;
    let err = profile_from_json(json).expect_err("unknown op");
    assert!(err.to_string().contains("SCMP_CMP_ROUGHLY"), "{err}");
}

#[test]
fn an_argument_past_the_sixth_is_an_error() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(compile(&p).expect_err("index 6").to_string().contains("argument index 6"));
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let with = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", "no_such_call"], "action": "SCMP_ACT_ALLOW"}]}));
    let without = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}));
    assert_eq!(compile(&with).expect("compile"), compile(&without).expect("compile"));
}

#[test]
fn the_profile_flags_become_install_flags() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}));
    assert_eq!(compile(&p).expect("compile").flags(), 2 | 4);
}

#[test]
fn a_denied_syscall_gets_eperm_and_allowed_ones_work() {
    let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}]}));
    let f = compile(&p).expect("compile");
    let code = in_child(&f, || {
        // SAFETY: raw syscalls on a local buffer.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        let e = errno_of(unsafe { libc::syscall(libc::SYS_uname, &mut u as *mut libc::utsname) });
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        match (e, pid > 0) {
            (libc::EPERM, true) => 0,
            (0, _) => 1,
            (_, false) => 2,
            _ => 3,
        }
    });
    assert_eq!(code, 0, "1: uname passed, 2: getpid failed, 3: wrong errno, 99: install failed");
}

#[test]
fn the_default_profile_blocks_new_namespaces_without_sys_admin() {
    let f = compile(&default_profile(&[])).expect("compile");
    let code = in_child(&f, || {
        // SAFETY: probes by raw syscall; fork's child exits at once.
        let unshare = errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) });
        let clone3 = errno_of(unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) });
        let ns_clone = errno_of(unsafe { libc::syscall(libc::SYS_clone, (libc::CLONE_NEWNET | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) });
        let personality = errno_of(unsafe { libc::syscall(libc::SYS_personality, 0x0040_0000usize) });
        let query = errno_of(unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffusize) });
        // A plain fork (clone without namespace flags) still works.
        let forked = match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(0) },
            pid if pid > 0 => {
                let mut status = 0;
                unsafe { libc::waitpid(pid, &mut status, 0) };
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
            }
            _ => false,
        };
        match (unshare, clone3, ns_clone, personality, query, forked) {
            (libc::EPERM, libc::ENOSYS, libc::EPERM, libc::EPERM, 0, true) => 0,
            (u, ..) if u != libc::EPERM => 1,
            (_, c, ..) if c != libc::ENOSYS => 2,
            (_, _, n, ..) if n != libc::EPERM => 3,
            (.., p, _, _) if p != libc::EPERM => 4,
            (.., q, _) if q != 0 => 5,
            _ => 6,
        }
    });
    assert_eq!(code, 0, "1 unshare, 2 clone3, 3 clone with flags, 4 personality, 5 personality query, 6 fork");
}

#[test]
fn the_default_profile_with_sys_admin_allows_new_namespaces() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: the namespace probe needs root");
        return;
    }
    let f = compile(&default_profile(&caps(&["CAP_SYS_ADMIN"]))).expect("compile");
    let code = in_child(&f, || {
        // SAFETY: unshare in the disposable child.
        let e = errno_of(unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER) });
        if e == 0 { 0 } else { 10 + e.min(100) }
    });
    assert_eq!(code, 0, "unshare(CLONE_NEWUSER) failed with errno {}", code - 10);
}

/// getpid through the 32-bit `int 0x80` entry, which the kernel reports as AUDIT_ARCH_I386.
#[cfg(target_arch = "x86_64")]
fn getpid_i386() -> i64 {
    let ret: i32;
    // SAFETY: i386 getpid (20) takes no arguments; the 64-bit kernel may clobber r8-r11 on return.
    unsafe {
        std::arch::asm!("int 0x80", inlateout("eax") 20i32 => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
    }
    ret as i64
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_32_bit_x86_call_is_filtered_by_its_own_section() {
    // Without ia32 emulation int 0x80 cannot reach getpid at all: nothing to check there.
    let works = in_child_status(None, || if getpid_i386() > 0 { 0 } else { 1 });
    if works != nix::sys::wait::WaitStatus::Exited(works.pid().expect("pid"), 0) {
        eprintln!("skipping: this kernel runs no 32-bit x86 code ({works:?})");
        return;
    }
    let deny = |arches: serde_json::Value| {
        compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES}]}))).expect("compile")
    };
    let with_x86 = deny(json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]));
    assert_eq!(in_child(&with_x86, || if getpid_i386() == -(libc::EACCES as i64) { 0 } else { 1 }), 0);
    let without = deny(json!(["SCMP_ARCH_X86_64"]));
    match in_child_status(Some(&without), || { getpid_i386(); 0 }) {
        nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _) => {}
        other => panic!("an i386 call outside the filter's arches should be killed, got {other:?}"),
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn an_x32_call_is_filtered_by_its_own_section_or_killed() {
    const X32: libc::c_long = 0x4000_0000;
    let deny = |arches: serde_json::Value| {
        compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES}]}))).expect("compile")
    };
    // The filter runs before the kernel looks the x32 number up, so this holds whether or not
    // the kernel has x32 support.
    let with_x32 = deny(json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]));
    // SAFETY: raw getpid in its x32 and native spellings.
    let code = in_child(&with_x32, || {
        let x32 = errno_of(unsafe { libc::syscall(X32 | libc::SYS_getpid) });
        let native = errno_of(unsafe { libc::syscall(libc::SYS_getpid) });
        if x32 == libc::EACCES && native == libc::EACCES { 0 } else { 1 }
    });
    assert_eq!(code, 0);
    let without = deny(json!(["SCMP_ARCH_X86_64"]));
    // SAFETY: as above.
    match in_child_status(Some(&without), || { unsafe { libc::syscall(X32 | libc::SYS_getpid) }; 0 }) {
        nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _) => {}
        other => panic!("an x32 call outside the filter's arches should be killed, got {other:?}"),
    }
}
