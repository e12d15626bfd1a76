//! `berth bench net`: what the bridge costs a container start — `berth run --rm` on the bridge
//! against `--network none`, and Docker's `docker run --rm` with its bridge (Debian's dockerd via
//! peer-docker with PEER_BIP) — and the time to program 200 published ports into nftables.
//! Not a test: numbers only.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(Debug, Clone, clap::Args)]
pub struct NetBenchArgs {
    /// Iterations of each measurement.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub iterations: usize,
    /// The peer-docker script that starts Debian's Docker engine privately.
    #[arg(long, default_value = "../shared/tools/peer-docker")]
    pub peer_docker: PathBuf,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed())
}

pub fn run(args: NetBenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let tmp = std::env::temp_dir().join(format!("berth-bench-net-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let bridge = format!("bbn{}", std::process::id() % 100_000);
    let result = bench_in(&exe, &tmp, &bridge, &args);
    let _ = Command::new(&args.peer_docker).arg("stop").arg(tmp.join("peer")).status();
    let _ = Command::new("ip").args(["link", "del", &bridge]).stderr(Stdio::null()).status();
    let _ = Command::new("nft").args(["delete", "table", "ip", &format!("berth_{bridge}")]).stderr(Stdio::null()).status();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench_in(exe: &Path, tmp: &Path, bridge: &str, args: &NetBenchArgs) -> anyhow::Result<()> {
    let socket = tmp.join("berth.sock");
    let mut engine = Command::new(exe)
        .args(["engine", "--root"])
        .arg(tmp.join("root"))
        .arg("--socket")
        .arg(&socket)
        .args(["--bridge", bridge, "--bip", "10.231.0.0/16"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the engine")?;
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = engine.kill();
            bail!("the private engine did not come up");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let result = measure(exe, tmp, &socket, bridge, args);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(engine.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = engine.wait();
    result
}

fn measure(exe: &Path, tmp: &Path, socket: &Path, bridge: &str, args: &NetBenchArgs) -> anyhow::Result<()> {
    let host = format!("unix://{}", socket.display());
    let berth = |a: &[&str]| {
        let mut c = Command::new(exe);
        c.arg("-H").arg(&host).args(a);
        c
    };
    // A busybox image for both engines, from the host's busybox-static.
    let rootfs = tmp.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("/bin/busybox (install busybox-static)")?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true"))?;
    let tar = tmp.join("rootfs.tar");
    timed(Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg("."))?;
    timed(&mut berth(&["import", tar.to_str().unwrap_or_default(), "netbench:1"]))?;
    let peer = Command::new(&args.peer_docker).arg("start").arg(tmp.join("peer")).env("PEER_BIP", "172.30.99.1/24").output();
    let docker_host = match peer {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("export DOCKER_HOST=").to_string()),
        _ => None,
    };
    let docker = |a: &[&str]| {
        let mut c = Command::new("docker");
        if let Some(h) = &docker_host {
            c.env("DOCKER_HOST", h);
        }
        c.args(a);
        c
    };
    if docker_host.is_some() {
        timed(docker(&["import", tar.to_str().unwrap_or_default(), "netbench:1"]).stdout(Stdio::null()))?;
    }
    // Warm up.
    timed(&mut berth(&["run", "--rm", "netbench:1", "true"]))?;
    let (mut bridged, mut none, mut dock) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.iterations {
        bridged.push(timed(&mut berth(&["run", "--rm", "netbench:1", "true"]))?);
        none.push(timed(&mut berth(&["run", "--rm", "--network", "none", "netbench:1", "true"]))?);
        if docker_host.is_some() {
            dock.push(timed(&mut docker(&["run", "--rm", "netbench:1", "true"]))?);
        }
    }
    let (b, n) = (median(bridged), median(none));
    println!("berth bench net: {} iterations each, alternating, medians", args.iterations);
    println!("  berth run --rm (bridge)            {:8.2} ms", ms(b));
    println!("  berth run --rm --network none      {:8.2} ms", ms(n));
    println!("  networking adds                    {:8.2} ms   (target < 5 ms)", ms(b) - ms(n));
    if !dock.is_empty() {
        let d = median(dock);
        println!("  docker run --rm (bridge, dockerd)  {:8.2} ms   berth/docker {:.2}x", ms(d), ms(b) / ms(d));
    }
    // 200 published ports: the time to rewrite the table with all of them.
    let state = tmp.join("ports-state");
    let subnet: net::Subnet = "10.232.0.0/16".parse().map_err(|e: net::Error| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(state.join("ports"))?;
    for i in 0..200u32 {
        let ip = std::net::Ipv4Addr::from(u32::from(subnet.network) + 2 + i);
        let body = serde_json::json!({"ip": ip, "ports": [{"host_ip": "", "host_port": 20000 + i, "container_port": 80, "protocol": "tcp"}]});
        std::fs::write(state.join("ports").join(format!("c{i}")), body.to_string())?;
    }
    let pbridge = format!("{bridge}p");
    let t = Instant::now();
    let net = net::Host::open(net::Config { state_dir: state, nft_table: format!("berth_{pbridge}") }, &[net::Bridge { name: pbridge.clone(), subnet, internal: false }])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let reconcile = t.elapsed();
    net.destroy();
    println!("  bridge set-up + table with 200 published ports  {:8.2} ms", ms(reconcile));
    Ok(())
}
