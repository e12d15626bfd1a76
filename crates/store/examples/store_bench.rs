//! Store throughput: concurrent creates and updates, p50/p99 latency, and a write stream fanned out
//! to 1,000 watchers — on SQLite and on etcd (a private `/usr/bin/etcd` on loopback ports).
//! Not a test: `cargo run --release -p store --example store_bench [-- WRITES]`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use store::{ListOptions, Store};

const WRITERS: usize = 64;
const WATCHERS: usize = 1000;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
}

async fn writes(s: Arc<dyn Store>, prefix: &str, total: usize, update: bool) -> (f64, f64, f64) {
    let per = total / WRITERS;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let key = format!("{prefix}{w}/{i}");
                let value = vec![b'x'; 512];
                let t = Instant::now();
                if update {
                    let cur = s.get(&key).await.ok().flatten();
                    if let Some(kv) = cur {
                        let _ = s.update(&key, value, kv.mod_revision).await;
                    }
                } else {
                    let _ = s.create(&key, value).await;
                }
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    ((per * WRITERS) as f64 / secs, pct(&all, 0.5), pct(&all, 0.99))
}

async fn fan_out(s: Arc<dyn Store>, prefix: &str, events: usize) -> f64 {
    let rev = s.current_revision().await.unwrap_or(0);
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let mut w = match s.watch(prefix, rev).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("watch: {e}");
                return 0.0;
            }
        };
        watchers.push(tokio::spawn(async move {
            let mut n = 0;
            while n < events {
                match tokio::time::timeout(Duration::from_secs(60), w.next()).await {
                    Ok(Some(Ok(_))) => n += 1,
                    _ => break,
                }
            }
            n
        }));
    }
    let started = Instant::now();
    for i in 0..events {
        let _ = s.create(&format!("{prefix}{i}"), vec![b'y'; 256]).await;
    }
    let mut delivered = 0;
    for w in watchers {
        delivered += w.await.unwrap_or(0);
    }
    delivered as f64 / started.elapsed().as_secs_f64()
}

async fn report(name: &str, s: Arc<dyn Store>, total: usize) {
    let (c, c50, c99) = writes(s.clone(), "/bench/a/", total, false).await;
    let (u, u50, u99) = writes(s.clone(), "/bench/a/", total, true).await;
    let t = Instant::now();
    let listed = s.list("/bench/a/", &ListOptions::default()).await.map(|l| l.items.len()).unwrap_or(0);
    let list_ms = t.elapsed().as_secs_f64() * 1000.0;
    let fan = fan_out(s.clone(), "/bench/w/", 200).await;
    println!("{name:>7}: create {c:8.0}/s (p50 {c50:.2} ms, p99 {c99:.2} ms) | get+update {u:8.0}/s (p50 {u50:.2} ms, p99 {u99:.2} ms) | list of {listed} in {list_ms:.1} ms | {WATCHERS} watchers: {fan:.0} events delivered/s");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    println!("store bench: {WRITERS} concurrent writers, {total} writes of 512 B each way");
    let dir = tempfile::tempdir().expect("tmp");
    match store::open(None, dir.path()).await {
        Ok(s) => report("sqlite", s, total).await,
        Err(e) => eprintln!("sqlite: {e}"),
    }
    let port = |_: ()| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
    let (client, peer) = (port(()), port(()));
    let etcd = std::process::Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir.path().join("etcd"))
        .arg("--listen-client-urls")
        .arg(format!("http://127.0.0.1:{client}"))
        .arg("--advertise-client-urls")
        .arg(format!("http://127.0.0.1:{client}"))
        .arg("--listen-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-cluster")
        .arg(format!("default=http://127.0.0.1:{peer}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut etcd) = etcd else {
        eprintln!("etcd: /usr/bin/etcd not available");
        return;
    };
    let endpoint = format!("http://127.0.0.1:{client}");
    let started = Instant::now();
    let store = loop {
        match store::open(Some(&endpoint), dir.path()).await {
            Ok(s) => break Some(s),
            Err(_) if started.elapsed() < Duration::from_secs(20) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => {
                eprintln!("etcd: {e}");
                break None;
            }
        }
    };
    if let Some(s) = store {
        report("etcd", s, total).await;
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
}
