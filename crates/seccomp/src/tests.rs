use super::*;

/// Runs `f` in a forked child with the filter installed; returns the child's exit code.
fn in_child(filter: &Filter, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the test process forks; the child only makes syscalls and exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            let code = if install(filter).is_ok() { f() } else { 99 };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None).expect("wait") {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("child ended with {other:?}"),
        },
    }
}

fn errno_of(rc: libc::c_long) -> i32 {
    if rc < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) } else { 0 }
}

#[test]
fn the_default_profile_compiles_and_round_trips_through_the_cache() {
    let p = default_profile(&["CAP_CHOWN".to_string()]);
    let dir = tempfile::tempdir().expect("tmp");
    let a = compile_cached(&p, dir.path()).expect("compile");
    let b = compile_cached(&p, dir.path()).expect("cached");
    assert_eq!(a, b);
    assert_eq!(Filter::from_bytes(&a.to_bytes()).expect("bytes"), a);
}

#[test]
fn a_denied_syscall_gets_eperm_and_allowed_ones_work() {
    let p: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    }))
    .expect("profile");
    let f = compile(&p).expect("compile");
    let code = in_child(&f, || {
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname into a local struct.
        let rc = unsafe { libc::uname(&mut u) };
        let e = errno_of(rc as libc::c_long);
        let pid_ok = unsafe { libc::getpid() } > 0;
        if rc < 0 && e == libc::EPERM && pid_ok { 0 } else { 10 + e.min(100) + if rc < 0 { 0 } else { 120 } }
    });
    assert_eq!(code, 0);
}

#[test]
fn the_default_profile_blocks_new_namespaces_without_sys_admin() {
    let f = compile(&default_profile(&[])).expect("compile");
    let code = in_child(&f, || {
        // SAFETY: unshare and clone3 probes; both must be refused.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
        let e1 = errno_of(rc as libc::c_long);
        let rc3 = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
        let e3 = errno_of(rc3);
        if e1 == libc::EPERM && e3 == libc::ENOSYS { 0 } else { 10 + e1.min(50) }
    });
    assert_eq!(code, 0);
}

#[test]
fn an_unknown_action_is_an_error_naming_it() {
    let bad = serde_json::from_value::<LinuxSeccomp>(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    if let Ok(p) = bad {
        let err = compile(&p).expect_err("notify is not supported").to_string();
        assert!(err.contains("Notify") || err.contains("NOTIFY"), "{err}");
    }
}

