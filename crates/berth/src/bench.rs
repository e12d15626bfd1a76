//! `berth bench`: times `berth run --rm IMAGE true` (the whole path: CLI, API, engine, shim,
//! runtime) against `runc run` of a ready bundle with the same root filesystem, alternating the two
//! in one run, and `berth runtime run` against `runc run` on that same bundle. Prints medians and
//! ratios, the engine's idle RSS and the binary size. Not a test: numbers, no pass/fail.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Iterations of each measurement.
    #[arg(short = 'n', long, default_value_t = 30)]
    pub iterations: usize,
    /// The runc binary to compare with.
    #[arg(long, default_value = "runc")]
    pub runc: String,
    #[command(subcommand)]
    pub kind: Option<BenchKind>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchKind {
    /// Pull and push through a loopback registry, berth against Debian's Docker engine.
    Pull(crate::bench_pull::PullBenchArgs),
    /// Container start on the bridge vs --network none vs Docker; 200 published ports.
    Net(crate::bench_net::NetBenchArgs),
    /// The Kubernetes API server under load (SQLite, etcd) against etcd directly; RSS at 100k objects.
    Api(crate::bench_api::ApiBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.kind {
        Some(BenchKind::Pull(a)) => return crate::bench_pull::run(a),
        Some(BenchKind::Net(a)) => return crate::bench_net::run(a),
        Some(BenchKind::Api(a)) => return crate::bench_api::run(a),
        None => {}
    }
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let tmp = tempdir()?;
    let result = bench_in(&exe, &tmp, &args);
    let _ = std::fs::remove_dir_all(&tmp);
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(h.path().join(format!("berth-bench-{}", std::process::id())));
    }
    result
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A minimal busybox root filesystem (sh, true, echo) from the host's busybox-static.
fn make_rootfs(dir: &Path) -> anyhow::Result<()> {
    let bb = Path::new("/bin/busybox");
    if !bb.exists() {
        bail!("/bin/busybox not found: install busybox-static");
    }
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::copy(bb, dir.join("bin/busybox"))?;
    for applet in ["sh", "true", "echo", "sleep"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn time(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(took)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn bench_in(exe: &Path, tmp: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let bundle = tmp.join("bundle");
    make_rootfs(&bundle.join("rootfs"))?;
    let st = Command::new(&args.runc).arg("spec").current_dir(&bundle).status();
    if !matches!(st, Ok(s) if s.success()) {
        bail!("`{} spec` failed: install runc to compare with it", args.runc);
    }
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path)?)?;
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["true"]);
    // Both runtimes make and remove a cgroup per run, as the engine's containers have (runc makes
    // one even without a path; berth's runtime only when asked).
    cfg["linux"]["cgroupsPath"] = serde_json::json!(format!("/berth-bench-{}", std::process::id()));
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;

    // A private engine on its own root.
    let root = tmp.join("root");
    let socket = tmp.join("berth.sock");
    let mut engine = Command::new(exe)
        .args(["engine", "--root"]).arg(&root).arg("--socket").arg(&socket)
        // runc's container has no network either: compare like with like.
        .args(["--bridge", "none"])
        .stdout(Stdio::null()).stderr(Stdio::null())
        .spawn().context("starting a private engine")?;
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = engine.kill();
            bail!("the private engine did not come up");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let engine_up = started.elapsed();
    let result = measure(exe, tmp, &bundle, &socket, args, engine.id(), engine_up);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(engine.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = engine.wait();
    result
}

fn measure(exe: &Path, tmp: &Path, bundle: &Path, socket: &Path, args: &BenchArgs, engine_pid: u32, engine_up: Duration) -> anyhow::Result<()> {
    let host = format!("unix://{}", socket.display());
    let tar = tmp.join("rootfs.tar");
    let st = Command::new("tar").arg("-C").arg(bundle.join("rootfs")).arg("-cf").arg(&tar).arg(".").status()?;
    if !st.success() {
        bail!("tar of the bench rootfs failed");
    }
    time(Command::new(exe).args(["-H", &host, "import"]).arg(&tar).arg("bench:1"))?;
    let idle_rss = rss_kib(engine_pid);
    let runtime_root = tmp.join("runtime-state");
    let runc_root = tmp.join("runc-state");

    // Warm caches (page cache, seccomp filter cache) before timing.
    time(Command::new(exe).args(["-H", &host, "run", "--rm", "bench:1", "true"]))?;
    let (mut berth_run, mut runc_run, mut berth_rt) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.iterations {
        berth_run.push(time(Command::new(exe).args(["-H", &host, "run", "--rm", "bench:1", "true"]))?);
        runc_run.push(time(Command::new(&args.runc).arg("--root").arg(&runc_root).args(["run", "--bundle"]).arg(bundle).arg(format!("bench-runc-{i}")))?);
        berth_rt.push(time(Command::new(exe).args(["runtime", "--root"]).arg(&runtime_root).args(["run", "--bundle"]).arg(bundle).arg(format!("bench-rt-{i}")))?);
    }
    let (b, r, rt) = (median(berth_run), median(runc_run), median(berth_rt));
    let size = std::fs::metadata(exe).map(|m| m.len()).unwrap_or(0);
    println!("berth bench: {} iterations each, alternating, medians", args.iterations);
    println!("  berth run --rm bench:1 true (whole path)   {:8.2} ms", ms(b));
    println!("  runc run (ready bundle)                    {:8.2} ms", ms(r));
    println!("  berth runtime run (same bundle)            {:8.2} ms", ms(rt));
    println!("  ratio whole path / runc bare               {:8.2}x   (target <= 1.5x now, 1.0x goal)", ms(b) / ms(r));
    println!("  ratio berth runtime / runc                 {:8.2}x", ms(rt) / ms(r));
    println!("  engine start to API ready                  {:8.2} ms", ms(engine_up));
    println!("  engine idle RSS                            {:8.1} MiB (target < 15 MiB)", idle_rss as f64 / 1024.0);
    println!("  engine RSS after the runs                  {:8.1} MiB", rss_kib(engine_pid) as f64 / 1024.0);
    println!("  binary size                                {:8.1} MiB", size as f64 / 1048576.0);
    Ok(())
}
