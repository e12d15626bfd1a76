//! `berth bench pull`: pull and push a 64 MiB one-layer image and a 5 × 20 MiB image through a
//! loopback docker-registry, berth against Debian's Docker engine (started privately with
//! ../shared/tools/peer-docker or `--peer-docker`), alternating, medians and ratios. Layers are
//! gzip-compressed random data, as pushed images usually are. Not a test: numbers only.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::Digest as _;

#[derive(Debug, Clone, clap::Args)]
pub struct PullBenchArgs {
    /// Iterations of each measurement.
    #[arg(short = 'n', long, default_value_t = 3)]
    pub iterations: usize,
    /// The peer-docker script that starts Debian's Docker engine privately.
    #[arg(long, default_value = "../shared/tools/peer-docker")]
    pub peer_docker: PathBuf,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let t = Instant::now();
    sh(cmd)?;
    Ok(t.elapsed())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fresh docker-registry (own storage), so every push uploads every blob.
fn registry(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let port = free_port()?;
    std::fs::create_dir_all(dir)?;
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, format!("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", dir.join("data").display()))?;
    let child = Command::new("docker-registry").arg("serve").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting docker-registry")?;
    let p = Proc(child);
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            bail!("docker-registry did not come up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((p, format!("127.0.0.1:{port}")))
}

/// An old-style docker-archive with `layers` gzip layers of random data of the given sizes.
fn archive(path: &Path, name: &str, layer_sizes: &[usize]) -> anyhow::Result<()> {
    use rand::RngCore;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, size) in layer_sizes.iter().enumerate() {
        let mut data = vec![0u8; *size];
        rand::thread_rng().fill_bytes(&mut data);
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("data{i}"), data.as_slice())?;
        let plain = tar.into_inner()?;
        diff_ids.push(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&plain))));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain)?;
        layers.push(gz.finish()?);
    }
    let config = serde_json::json!({"architecture": image::host_arch(), "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).to_string();
    let config_name = format!("{}.json", hex::encode(sha2::Sha256::digest(config.as_bytes())));
    let mut out = tar::Builder::new(std::fs::File::create(path)?);
    let mut add = |p: &str, data: &[u8]| -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, p, data)?;
        Ok(())
    };
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("layer{i}/layer.tar");
        add(&p, l)?;
        paths.push(p);
    }
    add(&config_name, config.as_bytes())?;
    add("manifest.json", serde_json::json!([{"Config": config_name, "RepoTags": [name], "Layers": paths}]).to_string().as_bytes())?;
    out.into_inner()?.flush()?;
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn run(args: PullBenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let tmp = std::env::temp_dir().join(format!("berth-bench-pull-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = bench_in(&exe, &tmp, &args);
    let _ = Command::new(&args.peer_docker).arg("stop").arg(tmp.join("peer")).status();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn bench_in(exe: &Path, tmp: &Path, args: &PullBenchArgs) -> anyhow::Result<()> {
    // berth's engine, privately.
    let socket = tmp.join("berth.sock");
    let engine = Proc(
        Command::new(exe)
            .args(["engine", "--root"])
            .arg(tmp.join("root"))
            .arg("--socket")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the engine")?,
    );
    let t = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            bail!("the private engine did not come up");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let berth = |a: &[&str]| {
        let mut c = Command::new(exe);
        c.arg("-H").arg(format!("unix://{}", socket.display())).args(a);
        c
    };
    // Docker, privately.
    let peer = sh(Command::new(&args.peer_docker).arg("start").arg(tmp.join("peer"))).context("starting Debian's Docker engine (peer-docker)")?;
    let docker_host = peer.trim().strip_prefix("export DOCKER_HOST=").unwrap_or(peer.trim()).to_string();
    let docker = |a: &[&str]| {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &docker_host).args(a);
        c
    };
    let images: [(&str, Vec<usize>); 2] = [("big", vec![64 << 20]), ("five", vec![20 << 20; 5])];
    println!("berth bench pull: {} iterations each, alternating, medians (loopback docker-registry, gzip layers of random data)", args.iterations);
    for (label, sizes) in images {
        let arch = tmp.join(format!("{label}.tar"));
        archive(&arch, &format!("bench/{label}:1"), &sizes)?;
        sh(&mut berth(&["load", "-i", arch.to_str().unwrap_or_default()]))?;
        sh(&mut docker(&["load", "-i", arch.to_str().unwrap_or_default()]))?;
        let (mut bpull, mut dpull, mut bpush, mut dpush) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..args.iterations {
            let (_reg, host) = registry(&tmp.join(format!("reg-{label}-{i}")))?;
            let name = format!("{host}/bench/{label}:1");
            sh(&mut berth(&["tag", &format!("bench/{label}:1"), &name]))?;
            bpush.push(timed(&mut berth(&["push", &name]))?);
            sh(&mut docker(&["tag", &format!("bench/{label}:1"), &name]))?;
            let dname = format!("{host}/docker/{label}:1");
            sh(&mut docker(&["tag", &format!("bench/{label}:1"), &dname]))?;
            dpush.push(timed(&mut docker(&["push", &dname]))?);
            // Pulls start from nothing: the pushed names are removed (and their layers with them
            // where no other image holds them), then pulled back.
            sh(&mut berth(&["rmi", &name]))?;
            sh(&mut berth(&["rmi", &format!("bench/{label}:1")]))?;
            bpull.push(timed(&mut berth(&["pull", &name]))?);
            sh(&mut berth(&["tag", &name, &format!("bench/{label}:1")]))?;
            sh(&mut docker(&["rmi", &name, &dname, &format!("bench/{label}:1")]))?;
            dpull.push(timed(&mut docker(&["pull", &dname]))?);
            sh(&mut docker(&["tag", &dname, &format!("bench/{label}:1")]))?;
            sh(&mut docker(&["rmi", &dname]))?;
            sh(&mut berth(&["rmi", &name]))?;
        }
        let total: usize = sizes.iter().sum();
        let mib = total as f64 / (1 << 20) as f64;
        let (bp, dp, bu, du) = (median(bpull), median(dpull), median(bpush), median(dpush));
        println!("  {label} ({} × {} MiB)", sizes.len(), sizes[0] >> 20);
        println!("    pull  berth {:8.1} ms ({:6.1} MiB/s)   docker {:8.1} ms ({:6.1} MiB/s)   berth speed / docker {:5.2}x", ms(bp), mib / bp.as_secs_f64(), ms(dp), mib / dp.as_secs_f64(), dp.as_secs_f64() / bp.as_secs_f64());
        println!("    push  berth {:8.1} ms ({:6.1} MiB/s)   docker {:8.1} ms ({:6.1} MiB/s)   berth speed / docker {:5.2}x", ms(bu), mib / bu.as_secs_f64(), ms(du), mib / du.as_secs_f64(), du.as_secs_f64() / bu.as_secs_f64());
    }
    drop(engine);
    Ok(())
}
