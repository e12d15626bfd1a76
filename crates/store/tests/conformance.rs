//! One conformance suite for every datastore backend: each semantic test is written once and run
//! against SQLite (a temporary directory) and etcd (a private `/usr/bin/etcd` on loopback ports,
//! skipped with a message when etcd is not installed).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use store::{Event, ListOptions, Store, StoreError};

/// A backend under test and what keeps it alive.
struct Backend {
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    _etcd: Option<Etcd>,
}

struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

async fn sqlite() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tmp");
    let store = store::open(None, dir.path()).await.expect("open sqlite");
    Some(Backend { store, _dir: dir, _etcd: None })
}

async fn etcd() -> Option<Backend> {
    if !std::path::Path::new("/usr/bin/etcd").exists() {
        eprintln!("skipping: /usr/bin/etcd is not installed (Debian package etcd-server)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (client, peer) = (free_port(), free_port());
    let child = Command::new("/usr/bin/etcd")
        .arg("--data-dir").arg(dir.path().join("etcd"))
        .arg("--listen-client-urls").arg(format!("http://127.0.0.1:{client}"))
        .arg("--advertise-client-urls").arg(format!("http://127.0.0.1:{client}"))
        .arg("--listen-peer-urls").arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls").arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-cluster").arg(format!("default=http://127.0.0.1:{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    let etcd = Etcd(child);
    let endpoint = format!("http://127.0.0.1:{client}");
    let started = Instant::now();
    loop {
        match store::open(Some(&endpoint), dir.path()).await {
            Ok(store) => return Some(Backend { store, _dir: dir, _etcd: Some(etcd) }),
            Err(e) if started.elapsed() > Duration::from_secs(20) => panic!("etcd did not come up: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Runs every test body against both backends.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(b) = super::sqlite().await { super::$name(b.store.clone()).await; }
            })*
        }
        mod on_etcd {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if let Some(b) = super::etcd().await { super::$name(b.store.clone()).await; }
            })*
        }
    };
}

conformance!(
    create_fails_when_the_key_exists_and_get_sees_it,
    update_is_a_compare_and_swap_on_the_revision,
    delete_honours_its_precondition_and_returns_the_value,
    pages_of_a_list_are_consistent_at_the_first_pages_revision,
    a_list_at_an_old_revision_sees_the_old_state,
    count_counts_live_keys_under_a_prefix,
    a_watch_replays_from_a_past_revision_then_streams_live_changes,
    a_watch_sees_only_its_prefix_with_previous_values,
    compaction_makes_older_reads_and_watches_fail,
    concurrent_writers_get_unique_increasing_revisions,
    a_list_longer_than_a_backend_page_is_complete,
);

async fn a_list_longer_than_a_backend_page_is_complete(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                s.create(&format!("/big/{t:02}/{i:03}"), vec![b'v'; 64]).await.expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let all = s.list("/big/", &ListOptions::default()).await.expect("list");
    assert_eq!(all.items.len(), 1200);
    assert!(!all.more);
    assert!(all.items.windows(2).all(|w| w[0].key < w[1].key), "in key order");
    let some = s.list("/big/", &ListOptions { limit: Some(1100), ..Default::default() }).await.expect("limited");
    assert_eq!((some.items.len(), some.more), (1100, true));
}

async fn create_fails_when_the_key_exists_and_get_sees_it(s: Arc<dyn Store>) {
    let kv = s.create("/a/x", b"1".to_vec()).await.expect("create");
    assert_eq!((kv.create_revision, kv.mod_revision), (kv.mod_revision, kv.mod_revision));
    assert!(matches!(s.create("/a/x", b"2".to_vec()).await, Err(StoreError::AlreadyExists { key }) if key == "/a/x"));
    let got = s.get("/a/x").await.expect("get").expect("present");
    assert_eq!(got, kv);
    assert_eq!(s.get("/a/y").await.expect("get"), None);
    assert!(s.current_revision().await.expect("rev") >= kv.mod_revision);
}

async fn update_is_a_compare_and_swap_on_the_revision(s: Arc<dyn Store>) {
    let v1 = s.create("/a/x", b"1".to_vec()).await.expect("create");
    let v2 = s.update("/a/x", b"2".to_vec(), v1.mod_revision).await.expect("update");
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(v2.create_revision, v1.create_revision);
    match s.update("/a/x", b"3".to_vec(), v1.mod_revision).await {
        Err(StoreError::Conflict { key, expected, current }) => assert_eq!((key.as_str(), expected, current), ("/a/x", v1.mod_revision, v2.mod_revision)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(s.update("/a/missing", b"x".to_vec(), 1).await, Err(StoreError::NotFound { .. })));
    assert_eq!(s.get("/a/x").await.expect("get").expect("present").value, b"2");
}

async fn delete_honours_its_precondition_and_returns_the_value(s: Arc<dyn Store>) {
    let v1 = s.create("/a/x", b"1".to_vec()).await.expect("create");
    let v2 = s.update("/a/x", b"2".to_vec(), v1.mod_revision).await.expect("update");
    assert!(matches!(s.delete("/a/x", Some(v1.mod_revision)).await, Err(StoreError::Conflict { current, .. }) if current == v2.mod_revision));
    let gone = s.delete("/a/x", Some(v2.mod_revision)).await.expect("delete");
    assert_eq!(gone.value, b"2");
    assert!(gone.mod_revision > v2.mod_revision, "the delete has its own revision");
    assert_eq!(s.get("/a/x").await.expect("get"), None);
    assert!(matches!(s.delete("/a/x", None).await, Err(StoreError::NotFound { .. })));
    let again = s.create("/a/x", b"3".to_vec()).await.expect("re-create");
    assert!(again.create_revision > gone.mod_revision, "a re-created key starts a new life");
    s.delete("/a/x", None).await.expect("unconditional delete");
}

async fn pages_of_a_list_are_consistent_at_the_first_pages_revision(s: Arc<dyn Store>) {
    for i in 0..7 {
        s.create(&format!("/p/k{i}"), format!("v{i}").into_bytes()).await.expect("create");
    }
    s.create("/q/other", b"x".to_vec()).await.expect("create");
    let first = s.list("/p/", &ListOptions { limit: Some(3), ..Default::default() }).await.expect("page 1");
    assert_eq!(first.items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["/p/k0", "/p/k1", "/p/k2"]);
    assert!(first.more);
    // Changes after the first page must not show in the later pages.
    let k5 = s.get("/p/k5").await.expect("get").expect("k5");
    s.update("/p/k5", b"changed".to_vec(), k5.mod_revision).await.expect("update");
    s.delete("/p/k6", None).await.expect("delete");
    s.create("/p/k9", b"new".to_vec()).await.expect("create");
    let mut keys: Vec<String> = first.items.iter().map(|kv| kv.key.clone()).collect();
    let mut after = keys.last().cloned();
    loop {
        let page = s.list("/p/", &ListOptions { revision: first.revision, start_after: after.clone(), limit: Some(3) }).await.expect("next page");
        assert_eq!(page.revision, first.revision);
        for kv in &page.items {
            if kv.key == "/p/k5" {
                assert_eq!(kv.value, b"v5", "a page shows the value at the list's revision");
            }
        }
        keys.extend(page.items.iter().map(|kv| kv.key.clone()));
        after = keys.last().cloned();
        if !page.more {
            break;
        }
    }
    assert_eq!(keys, (0..7).map(|i| format!("/p/k{i}")).collect::<Vec<_>>());
    let now = s.list("/p/", &ListOptions::default()).await.expect("latest");
    assert_eq!(now.items.len(), 7, "k6 gone, k9 added");
    assert!(now.revision > first.revision);
    assert!(!now.more);
}

async fn a_list_at_an_old_revision_sees_the_old_state(s: Arc<dyn Store>) {
    let a = s.create("/o/a", b"1".to_vec()).await.expect("create");
    let b = s.create("/o/b", b"1".to_vec()).await.expect("create");
    let at = b.mod_revision;
    s.update("/o/a", b"2".to_vec(), a.mod_revision).await.expect("update");
    s.delete("/o/b", None).await.expect("delete");
    let old = s.list("/o/", &ListOptions { revision: at, ..Default::default() }).await.expect("old list");
    assert_eq!(old.items.iter().map(|kv| (kv.key.as_str(), kv.value.as_slice())).collect::<Vec<_>>(), [("/o/a", &b"1"[..]), ("/o/b", &b"1"[..])]);
    let current = s.current_revision().await.expect("rev");
    assert!(matches!(s.list("/o/", &ListOptions { revision: current + 100, ..Default::default() }).await, Err(StoreError::FutureRevision { .. })));
}

async fn count_counts_live_keys_under_a_prefix(s: Arc<dyn Store>) {
    for i in 0..5 {
        s.create(&format!("/c/{i}"), vec![]).await.expect("create");
    }
    s.create("/cc", vec![]).await.expect("create");
    s.delete("/c/0", None).await.expect("delete");
    assert_eq!(s.count("/c/").await.expect("count"), 4);
}

async fn next_event(w: &mut store::WatchStream) -> Event {
    tokio::time::timeout(Duration::from_secs(10), w.next()).await.expect("an event within 10 s").expect("stream open").expect("no error")
}

async fn a_watch_replays_from_a_past_revision_then_streams_live_changes(s: Arc<dyn Store>) {
    // (after = 0 means "from now"; start from a real past revision.)
    s.create("/before", vec![]).await.expect("create");
    let a = s.create("/w/a", b"1".to_vec()).await.expect("create");
    let a2 = s.update("/w/a", b"2".to_vec(), a.mod_revision).await.expect("update");
    let mut w = s.watch("/w/", a.mod_revision - 1).await.expect("watch");
    assert!(matches!(next_event(&mut w).await, Event::Created(kv) if kv.mod_revision == a.mod_revision));
    assert!(matches!(next_event(&mut w).await, Event::Updated { kv, prev } if kv.mod_revision == a2.mod_revision && prev.value == b"1"));
    let b = s.create("/w/b", b"x".to_vec()).await.expect("create");
    assert!(matches!(next_event(&mut w).await, Event::Created(kv) if kv.mod_revision == b.mod_revision && kv.key == "/w/b"));
    let gone = s.delete("/w/a", None).await.expect("delete");
    assert!(matches!(next_event(&mut w).await, Event::Deleted(kv) if kv.mod_revision == gone.mod_revision && kv.value == b"2"));
    // From now on: only later changes.
    let mut now = s.watch("/w/", 0).await.expect("watch from now");
    let c = s.create("/w/c", b"y".to_vec()).await.expect("create");
    assert_eq!(next_event(&mut now).await.revision(), c.mod_revision);
}

async fn a_watch_sees_only_its_prefix_with_previous_values(s: Arc<dyn Store>) {
    let start = s.current_revision().await.expect("rev");
    let mut w = s.watch("/only/", start).await.expect("watch");
    s.create("/other/x", b"no".to_vec()).await.expect("create");
    s.create("/onlyx", b"no".to_vec()).await.expect("create");
    let mine = s.create("/only/x", b"yes".to_vec()).await.expect("create");
    let ev = next_event(&mut w).await;
    assert_eq!((ev.key(), ev.revision()), ("/only/x", mine.mod_revision));
}

async fn compaction_makes_older_reads_and_watches_fail(s: Arc<dyn Store>) {
    let a = s.create("/k/a", b"1".to_vec()).await.expect("create");
    let a2 = s.update("/k/a", b"2".to_vec(), a.mod_revision).await.expect("update");
    s.create("/k/b", b"1".to_vec()).await.expect("create");
    s.delete("/k/b", None).await.expect("delete");
    let at = s.update("/k/a", b"3".to_vec(), a2.mod_revision).await.expect("update").mod_revision;
    s.compact(at).await.expect("compact");
    assert!(s.compacted_revision().await.expect("compacted") >= at);
    assert!(matches!(s.list("/k/", &ListOptions { revision: a.mod_revision, ..Default::default() }).await, Err(StoreError::Compacted { .. })));
    match s.watch("/k/", a.mod_revision).await {
        Err(StoreError::Compacted { .. }) => {}
        Ok(mut w) => assert!(matches!(tokio::time::timeout(Duration::from_secs(10), w.next()).await, Ok(Some(Err(StoreError::Compacted { .. })))), "a watch below the horizon fails"),
        Err(e) => panic!("unexpected {e}"),
    }
    let now = s.list("/k/", &ListOptions { revision: at, ..Default::default() }).await.expect("list at the compaction revision");
    assert_eq!(now.items.iter().map(|kv| kv.value.as_slice()).collect::<Vec<_>>(), [&b"3"[..]]);
    assert_eq!(s.get("/k/a").await.expect("get").expect("a").value, b"3");
    let next = s.create("/k/c", vec![]).await.expect("writes go on");
    let mut w = s.watch("/k/", at).await.expect("a watch from the horizon works");
    assert_eq!(next_event(&mut w).await.revision(), next.mod_revision);
}

async fn concurrent_writers_get_unique_increasing_revisions(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..25 {
                revs.push(s.create(&format!("/cw/{t}/{i}"), vec![t as u8]).await.expect("create").mod_revision);
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let revs = t.await.expect("task");
        assert!(revs.windows(2).all(|w| w[0] < w[1]), "one writer's revisions grow");
        all.extend(revs);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "every write has its own revision");
    assert!(s.current_revision().await.expect("rev") >= *all.last().expect("some"));
    assert_eq!(s.count("/cw/").await.expect("count"), 400);
}

#[tokio::test]
async fn sqlite_keeps_everything_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let last = {
        let s = store::open(None, dir.path()).await.expect("open");
        let a = s.create("/r/a", b"1".to_vec()).await.expect("create");
        s.update("/r/a", b"2".to_vec(), a.mod_revision).await.expect("update").mod_revision
    };
    let s = store::open(None, dir.path()).await.expect("reopen");
    assert_eq!(s.current_revision().await.expect("rev"), last);
    assert_eq!(s.get("/r/a").await.expect("get").expect("a").value, b"2");
    assert_eq!(s.create("/r/b", vec![]).await.expect("create").mod_revision, last + 1, "revisions go on");
}

/// Not a test on its own: the child of `no_acknowledged_write_is_lost_when_the_process_is_killed`,
/// writing until it is killed and printing each acknowledged revision.
#[tokio::test]
async fn crash_writer_child() {
    let Ok(dir) = std::env::var("BERTH_STORE_CRASH_DIR") else { return };
    let s = store::open(None, std::path::Path::new(&dir)).await.expect("open");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let kv = s.create(&format!("/crash/{t}/{i}"), vec![0u8; 256]).await.expect("create");
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ACK {} /crash/{t}/{i}", kv.mod_revision);
                let _ = out.flush();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test]
async fn no_acknowledged_write_is_lost_when_the_process_is_killed() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_writer_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("BERTH_STORE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                if let Some((rev, key)) = rest.split_once(' ') {
                    acked.push((rev.parse::<i64>().expect("revision"), key.to_string()));
                }
            }
        }
        acked
    });
    // Let it write for a while, then kill it mid-stream.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(800) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Child::kill is SIGKILL: no destructor, no flush, no checkpoint.
    child.kill().expect("kill the writer");
    let _ = child.wait();
    let acked = reader.join().expect("reader");
    assert!(acked.len() > 100, "the writer acknowledged only {} writes", acked.len());
    let s = store::open(None, dir.path()).await.expect("reopen after the kill");
    for (rev, key) in &acked {
        let kv = s.get(key).await.expect("get").unwrap_or_else(|| panic!("acknowledged write {key} at revision {rev} was lost"));
        assert_eq!(kv.mod_revision, *rev);
    }
}
