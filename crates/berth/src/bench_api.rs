//! `berth bench api`: the Kubernetes API server under load, on SQLite and on etcd, with the same
//! load put straight to Debian's etcd for reference: create, update, get and list throughput and
//! p50/p99 latency while 1,000 watchers follow every change, then the server's RSS holding 100k
//! ConfigMaps. Not a test: numbers only.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;

#[derive(Debug, Clone, clap::Args)]
pub struct ApiBenchArgs {
    /// Objects created, updated and read per run.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Watchers following the namespace during the writes.
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,
    /// ConfigMaps held when the server's memory is measured (SQLite).
    #[arg(long, default_value_t = 100_000)]
    pub rss_objects: usize,
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn etcd(dir: &Path) -> anyhow::Result<(Proc, String)> {
    let (client, peer) = (free_port()?, free_port()?);
    let endpoint = format!("http://127.0.0.1:{client}");
    let child = Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir.join("etcd"))
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}"), "--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd (Debian package etcd-server)")?;
    Ok((Proc(child), endpoint))
}

struct Server {
    proc: Proc,
    base: String,
    http: Vec<reqwest::Client>,
}

impl Server {
    async fn start(root: &Path, datastore: Option<&str>) -> anyhow::Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("server").arg("--root").arg(root).args(["--api-port", &port.to_string()]);
        if let Some(d) = datastore {
            cmd.args(["--datastore-endpoint", d]);
        }
        let proc = Proc(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting berth server")?);
        let t = Instant::now();
        while !root.join("kubeconfig.yaml").exists() {
            if t.elapsed() > Duration::from_secs(60) {
                bail!("berth server did not come up");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ca = reqwest::Certificate::from_pem(&std::fs::read(root.join("pki/ca.crt"))?)?;
        let token = std::fs::read_to_string(root.join("pki/token"))?.trim().to_string();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {token}").parse()?);
        // Several connections: one HTTP/2 connection caps its concurrent streams.
        let http = (0..16)
            .map(|_| reqwest::Client::builder().add_root_certificate(ca.clone()).default_headers(headers.clone()).build())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Server { proc, base: format!("https://127.0.0.1:{port}"), http })
    }

    fn client(&self, i: usize) -> &reqwest::Client {
        &self.http[i % self.http.len()]
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.0.id())).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
    }
}

fn body(name: &str, i: usize, rv: Option<&str>) -> String {
    let rv = rv.map(|r| format!(r#","resourceVersion":"{r}""#)).unwrap_or_default();
    format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"bench"{rv}}},"data":{{"i":"{i}","payload":"{}"}}}}"#, "x".repeat(200))
}

/// Latencies of one phase.
struct Phase {
    name: &'static str,
    ops: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
    /// Operations that failed (an overloaded etcd times requests out); the first error.
    errors: usize,
    first_error: Option<String>,
}

impl Phase {
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.lat.clone();
        l.sort();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
    fn rate(&self) -> f64 {
        (self.ops - self.errors) as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op(i)` for i in 0..n on `concurrency` tasks, timing each.
async fn phase<F, Fut>(name: &'static str, n: usize, concurrency: usize, op: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut first) = (Vec::new(), 0usize, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return (lat, errors, first);
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }));
    }
    let (mut lat, mut errors, mut first_error) = (Vec::new(), 0, None);
    for t in tasks {
        let (l, e, f) = t.await?;
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    Ok(Phase { name, ops: n, elapsed: start.elapsed(), lat, errors, first_error })
}

async fn check(r: reqwest::Response) -> anyhow::Result<String> {
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    Ok(text)
}

/// The API load against one server; returns the phases and watch events seen per watcher.
async fn api_load(s: Arc<Server>, a: &ApiBenchArgs) -> anyhow::Result<(Vec<Phase>, f64)> {
    check(s.client(0).post(format!("{}/api/v1/namespaces", s.base)).body(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench"}}"#).send().await?).await?;
    let events = Arc::new(AtomicU64::new(0));
    let mut watch_tasks = Vec::new();
    for w in 0..a.watchers {
        let resp = s.client(w).get(format!("{}/api/v1/namespaces/bench/configmaps?watch=true&resourceVersion=0", s.base)).send().await?;
        let events = events.clone();
        watch_tasks.push(tokio::spawn(async move {
            let mut stream = resp.bytes_stream();
            while let Some(Ok(chunk)) = stream.next().await {
                events.fetch_add(chunk.iter().filter(|b| **b == b'\n').count() as u64, Ordering::Relaxed);
            }
        }));
    }
    let rvs = Arc::new(std::sync::Mutex::new(vec![String::new(); a.objects]));
    let (s1, r1) = (s.clone(), rvs.clone());
    let create = phase("create", a.objects, a.concurrency, move |i| {
        let (s, rvs) = (s1.clone(), r1.clone());
        async move {
            let text = check(s.client(i).post(format!("{}/api/v1/namespaces/bench/configmaps", s.base)).body(body(&format!("cm{i}"), i, None)).send().await?).await?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            rvs.lock().unwrap_or_else(|p| p.into_inner())[i] = v["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
            Ok(())
        }
    })
    .await?;
    let (s2, r2) = (s.clone(), rvs.clone());
    let update = phase("update", a.objects, a.concurrency, move |i| {
        let (s, rvs) = (s2.clone(), r2.clone());
        async move {
            let rv = rvs.lock().unwrap_or_else(|p| p.into_inner())[i].clone();
            check(s.client(i).put(format!("{}/api/v1/namespaces/bench/configmaps/cm{i}", s.base)).body(body(&format!("cm{i}"), i + 1, Some(&rv))).send().await?).await?;
            Ok(())
        }
    })
    .await?;
    let s3 = s.clone();
    let get = phase("get", a.objects, a.concurrency, move |i| {
        let s = s3.clone();
        async move {
            check(s.client(i).get(format!("{}/api/v1/namespaces/bench/configmaps/cm{i}", s.base)).send().await?).await?;
            Ok(())
        }
    })
    .await?;
    let s4 = s.clone();
    let list = phase("list 500", 200, a.concurrency.min(16), move |i| {
        let s = s4.clone();
        async move {
            check(s.client(i).get(format!("{}/api/v1/namespaces/bench/configmaps?limit=500", s.base)).send().await?).await?;
            Ok(())
        }
    })
    .await?;
    let per_watcher = await_delivery(&events, a, watch_tasks).await;
    Ok((vec![create, update, get, list], per_watcher))
}

/// The same create/update/get/list load straight against etcd through the store crate.
async fn etcd_load(endpoint: &str, a: &ApiBenchArgs) -> anyhow::Result<(Vec<Phase>, f64)> {
    let store: Arc<dyn store::Store> = Arc::new(store::EtcdStore::connect(&[endpoint], "").await?);
    let events = Arc::new(AtomicU64::new(0));
    let mut watch_tasks = Vec::new();
    for _ in 0..a.watchers {
        let mut w = store.watch("/bench/", 0).await?;
        let events = events.clone();
        watch_tasks.push(tokio::spawn(async move {
            while let Some(Ok(_)) = w.next().await {
                events.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let revs = Arc::new(std::sync::Mutex::new(vec![0i64; a.objects]));
    let (st, rv) = (store.clone(), revs.clone());
    let create = phase("create", a.objects, a.concurrency, move |i| {
        let (st, rv) = (st.clone(), rv.clone());
        async move {
            let kv = st.create(&format!("/bench/cm{i}"), body(&format!("cm{i}"), i, None).into_bytes()).await?;
            rv.lock().unwrap_or_else(|p| p.into_inner())[i] = kv.mod_revision;
            Ok(())
        }
    })
    .await?;
    let (st, rv) = (store.clone(), revs.clone());
    let update = phase("update", a.objects, a.concurrency, move |i| {
        let (st, rv) = (st.clone(), rv.clone());
        async move {
            let expected = rv.lock().unwrap_or_else(|p| p.into_inner())[i];
            st.update(&format!("/bench/cm{i}"), body(&format!("cm{i}"), i + 1, None).into_bytes(), expected).await?;
            Ok(())
        }
    })
    .await?;
    let st = store.clone();
    let get = phase("get", a.objects, a.concurrency, move |i| {
        let st = st.clone();
        async move {
            st.get(&format!("/bench/cm{i}")).await?;
            Ok(())
        }
    })
    .await?;
    let st = store.clone();
    let list = phase("list 500", 200, a.concurrency.min(16), move |_| {
        let st = st.clone();
        async move {
            st.list("/bench/", &store::ListOptions { limit: Some(500), ..Default::default() }).await?;
            Ok(())
        }
    })
    .await?;
    let per_watcher = await_delivery(&events, a, watch_tasks).await;
    Ok((vec![create, update, get, list], per_watcher))
}

/// Every watcher should see every create and update: waits for delivery (at most 30 s), stops
/// the watchers, and returns the events each saw on average.
async fn await_delivery(events: &AtomicU64, a: &ApiBenchArgs, watchers: Vec<tokio::task::JoinHandle<()>>) -> f64 {
    let expected = (2 * a.objects * a.watchers) as u64;
    let t = Instant::now();
    while events.load(Ordering::Relaxed) < expected && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in watchers {
        w.abort();
    }
    events.load(Ordering::Relaxed) as f64 / a.watchers.max(1) as f64
}

fn report(title: &str, phases: &[Phase], per_watcher: f64, reference: Option<&[Phase]>) {
    println!("  {title}  (watch events per watcher: {per_watcher:.0})");
    for p in phases {
        let ratio = reference.and_then(|r| r.iter().find(|x| x.name == p.name)).map(|r| format!("   {:.2}x etcd's rate", p.rate() / r.rate())).unwrap_or_default();
        println!("    {:<9} {:>9.0} ops/s   p50 {:>7.2} ms   p99 {:>7.2} ms{ratio}", p.name, p.rate(), p.pct(0.50), p.pct(0.99));
        if p.errors > 0 {
            println!("              {} of {} failed, first: {}", p.errors, p.ops, p.first_error.as_deref().unwrap_or_default());
        }
    }
}

pub fn run(a: ApiBenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(a))
}

async fn run_async(a: ApiBenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile_dir()?;
    println!("berth bench api: {} objects, {} concurrent clients, {} watchers", a.objects, a.concurrency, a.watchers);
    let have_etcd = Path::new("/usr/bin/etcd").exists();
    let reference = if have_etcd {
        let (_etcd, endpoint) = etcd(&tmp.join("ref"))?;
        wait_etcd(&endpoint).await?;
        let (phases, pw) = etcd_load(&endpoint, &a).await?;
        report("etcd directly (Debian etcd-server, through the store crate)", &phases, pw, None);
        Some(phases)
    } else {
        println!("  (no /usr/bin/etcd: the etcd runs are skipped)");
        None
    };
    let sqlite = Arc::new(Server::start(&tmp.join("sqlite"), None).await?);
    let (phases, pw) = api_load(sqlite.clone(), &a).await?;
    report(&format!("berth server, SQLite   (RSS {:.0} MiB)", sqlite.rss_mib()), &phases, pw, reference.as_deref());
    drop(sqlite);
    if have_etcd {
        let (_etcd, endpoint) = etcd(&tmp.join("backend"))?;
        wait_etcd(&endpoint).await?;
        let server = Arc::new(Server::start(&tmp.join("etcd-root"), Some(&endpoint)).await?);
        let (phases, pw) = api_load(server.clone(), &a).await?;
        report(&format!("berth server, etcd     (RSS {:.0} MiB)", server.rss_mib()), &phases, pw, reference.as_deref());
    }
    // Memory at scale: the server holding many ConfigMaps (all in its watch cache).
    let big = Arc::new(Server::start(&tmp.join("rss"), None).await?);
    check(big.client(0).post(format!("{}/api/v1/namespaces", big.base)).body(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"bench"}}"#).send().await?).await?;
    let idle = big.rss_mib();
    let b2 = big.clone();
    let fill = phase("create", a.rss_objects, a.concurrency, move |i| {
        let s = b2.clone();
        async move {
            check(s.client(i).post(format!("{}/api/v1/namespaces/bench/configmaps", s.base)).body(body(&format!("cm{i}"), i, None)).send().await?).await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "  RSS: {idle:.0} MiB idle, {:.0} MiB holding {} ConfigMaps of ~300 bytes (filled at {:.0} creates/s, p99 {:.2} ms)",
        big.rss_mib(),
        a.rss_objects,
        fill.rate(),
        fill.pct(0.99)
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

async fn wait_etcd(endpoint: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        match store::EtcdStore::connect(&[endpoint], "").await {
            Ok(_) => return Ok(()),
            Err(_) if t.elapsed() < Duration::from_secs(30) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => bail!("etcd did not come up: {e}"),
        }
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
