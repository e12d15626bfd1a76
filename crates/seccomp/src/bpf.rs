//! The classic-BPF compiler: turns an OCI profile into one seccomp program.
//!
//! Written here rather than through seccompiler because seccompiler builds one program per target
//! arch with one match action per filter and kills on any other arch; an OCI profile needs, in a
//! single program, several architectures (x86_64 with its x86 and x32 sub-arches), a different
//! action per rule (ERRNO with its own errno, TRACE, LOG…), and the profile's default action for
//! everything else.
//!
//! Layout, like libseccomp's:
//! ```text
//! ld arch; jeq ARCH_1 → section_1; jeq ARCH_2 → section_2; …; ret BAD_ARCH
//! section: ld nr; [x86_64: nr ≥ X32 bit → x32 section or BAD_ARCH]
//!          runs of "jeq nr → ret ACTION" for syscalls with one unconditional action,
//!          then per syscall with argument rules: jeq nr → block (rules in order, then the
//!          unconditional rule or the default action)
//!          ret DEFAULT
//! ```
//! Syscalls whose only action is allow skip the filter entirely on Linux ≥ 5.11 (the kernel
//! caches constant results per syscall number), so a linear chain costs little.

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};

use crate::{tables, Error, Instruction};

/// BPF_LD | BPF_W | BPF_ABS (the first two are zero).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
const BPF_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JGT_K: u16 = 0x05 | 0x20;
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// The kernel refuses programs longer than this (BPF_MAXINSNS).
pub(crate) const MAX_INSTRUCTIONS: usize = 4096;
/// Conditional jumps reach at most this far; runs of syscalls are cut below it.
const MAX_RUN: usize = 200;

pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

/// An architecture this compiler has a syscall table for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Arch {
    X86_64,
    X86,
    X32,
    Aarch64,
}

impl Arch {
    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Arch::X86_64 => tables::X86_64,
            Arch::X86 => tables::I386,
            Arch::X32 => tables::X32,
            Arch::Aarch64 => tables::AARCH64,
        }
    }

    /// The syscall number as the filter sees it (x32 calls carry the x32 bit).
    pub(crate) fn number(self, name: &str) -> Option<u32> {
        let table = self.table();
        let i = table.binary_search_by(|(n, _)| (*n).cmp(name)).ok()?;
        let nr = table[i].1;
        Some(if self == Arch::X32 { nr | X32_SYSCALL_BIT } else { nr })
    }

    /// The arch this program runs as, and the sub-arches its kernel also accepts.
    pub(crate) fn native() -> Result<(Arch, &'static [Arch]), Error> {
        match std::env::consts::ARCH {
            "x86_64" => Ok((Arch::X86_64, &[Arch::X86, Arch::X32])),
            "aarch64" => Ok((Arch::Aarch64, &[])),
            other => Err(Error::UnsupportedArch(other)),
        }
    }

    fn from_oci(a: oci_spec::runtime::Arch) -> Option<Arch> {
        use oci_spec::runtime::Arch as O;
        match a {
            O::ScmpArchX86_64 => Some(Arch::X86_64),
            O::ScmpArchX86 => Some(Arch::X86),
            O::ScmpArchX32 => Some(Arch::X32),
            O::ScmpArchAarch64 => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

/// The architectures a profile is compiled for: always the native one, plus those of the
/// profile's list that this kernel can run (a listed arch of another family can never occur).
/// 32-bit arm on aarch64 has no table here, so arm tasks there get the bad-arch action.
pub(crate) fn arches(profile: &LinuxSeccomp) -> Result<Vec<Arch>, Error> {
    let (native, subs) = Arch::native()?;
    let mut out = vec![native];
    for a in profile.architectures().iter().flatten() {
        match Arch::from_oci(*a) {
            Some(arch) if subs.contains(&arch) && !out.contains(&arch) => out.push(arch),
            Some(arch) if arch == native => {}
            _ if *a == oci_spec::runtime::Arch::ScmpArchNative => {}
            _ => tracing::debug!(arch = ?a, "seccomp: architecture cannot occur on this host, skipped"),
        }
    }
    Ok(out)
}

/// The SECCOMP_RET_* value of an OCI action.
pub(crate) fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, Error> {
    let data = |default: u32| -> Result<u32, Error> {
        let v = errno.unwrap_or(default);
        if v > 0xffff {
            return Err(Error::Profile(format!("errnoRet {v} of {a} does not fit in 16 bits")));
        }
        Ok(v)
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActErrno => 0x0005_0000 | data(libc::EPERM as u32)?,
        // libseccomp's SCMP_ACT_KILL is KILL_THREAD.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => 0,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => 0x0003_0000,
        // The tracer receives errnoRet as the event message; runc sends EPERM when none is set.
        LinuxSeccompAction::ScmpActTrace => 0x7ff0_0000 | data(libc::EPERM as u32)?,
        LinuxSeccompAction::ScmpActLog => 0x7ffc_0000,
        // Needs a listener fd handed to an agent over listenerPath; berth has no agent.
        LinuxSeccompAction::ScmpActNotify => return Err(Error::UnsupportedAction(a.to_string())),
    })
}

/// One rule for one syscall: its action and the argument checks that must all hold.
#[derive(Debug, Clone)]
struct Rule {
    ret: u32,
    args: Vec<LinuxSeccompArg>,
}

/// Rules by syscall name, in profile order.
type Rules = BTreeMap<String, Vec<Rule>>;

fn collect_rules(profile: &LinuxSeccomp, default: u32) -> Result<Rules, Error> {
    let mut rules: Rules = BTreeMap::new();
    for sc in profile.syscalls().iter().flatten() {
        let ret = action(sc.action(), sc.errno_ret())?;
        let args = sc.args().clone().unwrap_or_default();
        if let Some(bad) = args.iter().find(|a| a.index() > 5) {
            return Err(Error::Profile(format!("argument index {} of {:?} is past the sixth argument", bad.index(), sc.names())));
        }
        for name in sc.names() {
            rules.entry(name.clone()).or_default().push(Rule { ret, args: args.clone() });
        }
    }
    // A syscall whose every rule gives the default action needs no code (runc skips these too).
    rules.retain(|_, rs| rs.iter().any(|r| r.ret != default));
    Ok(rules)
}

/// Compiles the profile into one program and its install flags.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Vec<Instruction>, Error> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let rules = collect_rules(profile, default)?;
    let arches = arches(profile)?;
    let bad_arch = RET_KILL_PROCESS;
    let has_x32 = arches.contains(&Arch::X32);

    // Sections in dispatch order; x32 shares x86_64's audit arch and sits right after it.
    let mut sections: Vec<(u32, Vec<Instruction>)> = Vec::new();
    for arch in arches.iter().copied().filter(|a| *a != Arch::X32) {
        let mut body = section(arch, &rules, default)?;
        let audit = match arch {
            Arch::X86_64 => {
                let x32 = if has_x32 { Some(section(Arch::X32, &rules, default)?) } else { None };
                let mut prefix = vec![load(OFFSET_NR), jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1)];
                match &x32 {
                    // Skips the rest of the x86_64 section to land on the x32 one.
                    Some(_) => prefix.push(ja(body.len() as u32 - 1)),
                    None => prefix.push(ret(bad_arch)),
                }
                // The x86_64 section already starts with the nr load, which the prefix replaces.
                body.remove(0);
                prefix.append(&mut body);
                if let Some(mut x) = x32 {
                    x.remove(0);
                    prefix.append(&mut x);
                }
                body = prefix;
                AUDIT_ARCH_X86_64
            }
            Arch::X86 => AUDIT_ARCH_I386,
            Arch::Aarch64 => AUDIT_ARCH_AARCH64,
            Arch::X32 => continue,
        };
        sections.push((audit, body));
    }

    let mut prog = vec![load(OFFSET_ARCH)];
    let header_len = 1 + 2 * sections.len() + 1;
    let mut offset = 0usize;
    for (audit, body) in &sections {
        prog.push(jump(BPF_JEQ_K, *audit, 0, 1));
        // From after this ja: the rest of the dispatch header, then the earlier sections.
        let rest_of_header = header_len - prog.len() - 1;
        prog.push(ja((rest_of_header + offset) as u32));
        offset += body.len();
    }
    prog.push(ret(bad_arch));
    for (_, body) in sections {
        prog.extend(body);
    }
    if prog.len() > MAX_INSTRUCTIONS {
        return Err(Error::TooLarge(prog.len()));
    }
    Ok(prog)
}

/// One architecture's section: load nr, the checks, the default action.
fn section(arch: Arch, rules: &Rules, default: u32) -> Result<Vec<Instruction>, Error> {
    let mut simple: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut complex: Vec<(u32, &[Rule])> = Vec::new();
    for (name, rs) in rules {
        let Some(nr) = arch.number(name) else {
            tracing::trace!(syscall = %name, ?arch, "seccomp: syscall not on this arch, skipped");
            continue;
        };
        match rs.iter().find(|r| r.args.is_empty()) {
            // Only an unconditional rule matters, or it comes first and shadows the rest.
            Some(first) if rs.iter().all(|r| r.args.is_empty()) => simple.entry(first.ret).or_default().push(nr),
            _ => complex.push((nr, rs)),
        }
    }
    let mut out = vec![load(OFFSET_NR)];
    for (ret_value, mut nrs) in simple {
        nrs.sort_unstable();
        nrs.dedup();
        for run in nrs.chunks(MAX_RUN) {
            out.extend(run_of(run, ret_value));
        }
    }
    complex.sort_by_key(|(nr, _)| *nr);
    for (nr, rs) in complex {
        let block = syscall_block(rs, default)?;
        if block.len() <= 255 {
            out.push(jump(BPF_JEQ_K, nr, 0, block.len() as u8));
        } else {
            out.push(jump(BPF_JEQ_K, nr, 1, 0));
            out.push(ja(block.len() as u32));
        }
        out.extend(block);
    }
    out.push(ret(default));
    Ok(out)
}

/// "jeq nr_1 → R; …; jeq nr_k → R; (skip R); R: ret action" in k + 1 instructions.
fn run_of(nrs: &[u32], ret_value: u32) -> Vec<Instruction> {
    let k = nrs.len();
    let mut out: Vec<Instruction> = nrs
        .iter()
        .enumerate()
        .map(|(j, nr)| if j + 1 == k { jump(BPF_JEQ_K, *nr, 0, 1) } else { jump(BPF_JEQ_K, *nr, (k - 1 - j) as u8, 0) })
        .collect();
    out.push(ret(ret_value));
    out
}

/// The code for one syscall with argument rules: each rule in order, then the first
/// unconditional rule's action, or the default. Always ends in a return.
fn syscall_block(rules: &[Rule], default: u32) -> Result<Vec<Instruction>, Error> {
    let mut out = Vec::new();
    for r in rules.iter().filter(|r| !r.args.is_empty()) {
        out.extend(rule_unit(r)?);
    }
    let fallback = rules.iter().find(|r| r.args.is_empty()).map_or(default, |r| r.ret);
    out.push(ret(fallback));
    Ok(out)
}

/// Where a comparison's jump goes.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// Past this comparison: it held.
    Pass,
    /// Past the rule's return: the rule does not match.
    Fail,
}

enum Step {
    Load(u32),
    And(u32),
    Jump(u16, u32, To, To),
}

/// Argument checks, all of which must hold, then the rule's return.
fn rule_unit(rule: &Rule) -> Result<Vec<Instruction>, Error> {
    let checks: Vec<Vec<Step>> = rule.args.iter().map(comparison).collect();
    let total: usize = checks.iter().map(Vec::len).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(total);
    for check in checks {
        let end = out.len() + check.len();
        for step in check {
            let here = out.len();
            let rel = |t: To| -> u8 {
                let target = match t {
                    To::Next => here + 1,
                    To::Pass => end,
                    To::Fail => total,
                };
                // Units are a few dozen instructions at most (six arguments, seven each).
                (target - here - 1) as u8
            };
            out.push(match step {
                Step::Load(off) => load(off),
                Step::And(mask) => Instruction { code: BPF_ALU_AND_K, jt: 0, jf: 0, k: mask },
                Step::Jump(code, k, jt, jf) => jump(code, k, rel(jt), rel(jf)),
            });
        }
    }
    out.push(ret(rule.ret));
    Ok(out)
}

/// One 64-bit comparison of an argument, as two 32-bit halves (classic BPF is 32-bit).
fn comparison(a: &LinuxSeccompArg) -> Vec<Step> {
    let (lo_off, hi_off) = arg_offsets(a.index());
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let (hi, lo) = split(a.value());
    use LinuxSeccompOperator as Op;
    use Step::{And, Jump, Load};
    use To::{Fail, Next, Pass};
    match a.op() {
        Op::ScmpCmpEq => vec![Load(hi_off), Jump(BPF_JEQ_K, hi, Next, Fail), Load(lo_off), Jump(BPF_JEQ_K, lo, Pass, Fail)],
        Op::ScmpCmpNe => vec![Load(hi_off), Jump(BPF_JEQ_K, hi, Next, Pass), Load(lo_off), Jump(BPF_JEQ_K, lo, Fail, Pass)],
        Op::ScmpCmpGt => vec![
            Load(hi_off), Jump(BPF_JGT_K, hi, Pass, Next), Jump(BPF_JEQ_K, hi, Next, Fail),
            Load(lo_off), Jump(BPF_JGT_K, lo, Pass, Fail),
        ],
        Op::ScmpCmpGe => vec![
            Load(hi_off), Jump(BPF_JGT_K, hi, Pass, Next), Jump(BPF_JEQ_K, hi, Next, Fail),
            Load(lo_off), Jump(BPF_JGE_K, lo, Pass, Fail),
        ],
        Op::ScmpCmpLt => vec![
            Load(hi_off), Jump(BPF_JGT_K, hi, Fail, Next), Jump(BPF_JEQ_K, hi, Next, Pass),
            Load(lo_off), Jump(BPF_JGE_K, lo, Fail, Pass),
        ],
        Op::ScmpCmpLe => vec![
            Load(hi_off), Jump(BPF_JGT_K, hi, Fail, Next), Jump(BPF_JEQ_K, hi, Next, Pass),
            Load(lo_off), Jump(BPF_JGT_K, lo, Fail, Pass),
        ],
        // OCI (like libseccomp) puts the mask in `value` and the expected value in `valueTwo`.
        Op::ScmpCmpMaskedEq => {
            let (mhi, mlo) = (hi, lo);
            let (vhi, vlo) = split(a.value_two().unwrap_or(0));
            vec![
                Load(hi_off), And(mhi), Jump(BPF_JEQ_K, vhi & mhi, Next, Fail),
                Load(lo_off), And(mlo), Jump(BPF_JEQ_K, vlo & mlo, Pass, Fail),
            ]
        }
    }
}

/// Offsets of the low and high 32-bit words of argument `index` in struct seccomp_data.
fn arg_offsets(index: usize) -> (u32, u32) {
    let base = OFFSET_ARGS + 8 * index as u32;
    if cfg!(target_endian = "little") { (base, base + 4) } else { (base + 4, base) }
}

fn load(offset: u32) -> Instruction {
    Instruction { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: offset }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
    Instruction { code, jt, jf, k }
}

fn ja(offset: u32) -> Instruction {
    Instruction { code: BPF_JA, jt: 0, jf: 0, k: offset }
}

fn ret(value: u32) -> Instruction {
    Instruction { code: BPF_RET_K, jt: 0, jf: 0, k: value }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for seccomp programs, enough to check the compiler's jumps
    /// without installing anything.
    pub(crate) fn run(prog: &[Instruction], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            match ins.code {
                BPF_LD_W_ABS => {
                    let o = ins.k as usize;
                    acc = u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                }
                BPF_ALU_AND_K => acc &= ins.k,
                BPF_JA => pc += ins.k as usize,
                BPF_RET_K => return ins.k,
                code => {
                    let hit = match code {
                        BPF_JEQ_K => acc == ins.k,
                        BPF_JGT_K => acc > ins.k,
                        BPF_JGE_K => acc >= ins.k,
                        other => panic!("unexpected opcode {other:#x}"),
                    };
                    pc += if hit { ins.jt } else { ins.jf } as usize;
                }
            }
            pc += 1;
        }
    }

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("profile")
    }

    fn native_audit() -> u32 {
        if cfg!(target_arch = "x86_64") { AUDIT_ARCH_X86_64 } else { AUDIT_ARCH_AARCH64 }
    }

    fn nr(name: &str) -> u32 {
        Arch::native().expect("arch").0.number(name).expect("syscall")
    }

    #[test]
    fn every_comparison_operator_matches_like_a_64_bit_compare() {
        let values: [u64; 7] = [0, 1, 5, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0005, u64::MAX];
        for (op, f) in [
            ("SCMP_CMP_EQ", (|a: u64, b: u64| a == b) as fn(u64, u64) -> bool),
            ("SCMP_CMP_NE", |a, b| a != b),
            ("SCMP_CMP_LT", |a, b| a < b),
            ("SCMP_CMP_LE", |a, b| a <= b),
            ("SCMP_CMP_GT", |a, b| a > b),
            ("SCMP_CMP_GE", |a, b| a >= b),
        ] {
            for &v in &values {
                let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7, "args": [{"index": 2, "value": v, "op": op}]}]}));
                let prog = compile(&p).expect("compile");
                for &x in &values {
                    let got = run(&prog, native_audit(), nr("getpid"), [0, 0, x, 0, 0, 0]);
                    let want = if f(x, v) { 0x0005_0007 } else { RET_ALLOW };
                    assert_eq!(got, want, "{x:#x} {op} {v:#x}");
                }
            }
        }
    }

    #[test]
    fn masked_eq_compares_the_masked_argument_with_value_two() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
        let prog = compile(&p).expect("compile");
        let clone = nr("clone");
        assert_eq!(run(&prog, native_audit(), clone, [0x0111_1100 & !0x7E02_0000, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&prog, native_audit(), clone, [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]), 0x0005_0001);
    }

    #[test]
    fn a_foreign_architecture_is_killed() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}));
        let prog = compile(&p).expect("compile");
        assert_eq!(run(&prog, 0x4000_0028 /* arm */, 20, [0; 6]), RET_KILL_PROCESS);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_and_x32_calls_are_checked_against_their_own_numbers() {
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ALLOW"}]}));
        let prog = compile(&p).expect("compile");
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 63, [0; 6]), RET_ALLOW);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 122, [0; 6]), 0x0005_0001);
        assert_eq!(run(&prog, AUDIT_ARCH_I386, 122, [0; 6]), RET_ALLOW);
        assert_eq!(run(&prog, AUDIT_ARCH_I386, 63, [0; 6]), 0x0005_0001);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 63 | X32_SYSCALL_BIT, [0; 6]), RET_ALLOW);
        let only64 = compile(&profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"}))).expect("compile");
        assert_eq!(run(&only64, AUDIT_ARCH_X86_64, 63 | X32_SYSCALL_BIT, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&only64, AUDIT_ARCH_I386, 122, [0; 6]), RET_KILL_PROCESS);
    }

    #[test]
    fn long_runs_and_later_rules_keep_their_jumps_in_range() {
        let names: Vec<&str> = Arch::native().expect("arch").0.table().iter().map(|(n, _)| *n).collect();
        let p = profile(serde_json::json!({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": [
            {"names": names, "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9, "args": [{"index": 0, "value": 99, "op": "SCMP_CMP_EQ"}]}]}));
        let prog = compile(&p).expect("compile");
        for (name, _) in Arch::native().expect("arch").0.table() {
            assert_eq!(run(&prog, native_audit(), nr(name), [0; 6]), RET_ALLOW, "{name}");
        }
        // Argument rules are tried before the unconditional rule of the same syscall.
        assert_eq!(run(&prog, native_audit(), nr("write"), [99, 0, 0, 0, 0, 0]), 0x0005_0009);
        assert_eq!(run(&prog, native_audit(), 999, [0; 6]), RET_KILL_PROCESS);
    }
}
