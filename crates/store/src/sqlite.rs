//! The SQLite backend: one append-only log table in WAL mode, like k3s's kine.
//!
//! Every write appends a row whose rowid is the new revision: a put row (the value, the key's
//! create revision, the previous row's revision and value) or a tombstone (`deleted`, carrying the
//! deleted value). The latest row of a key is its current state; a list at revision R reads the
//! latest row ≤ R of each key. Compaction removes rows that are superseded at its revision.
//!
//! Writes go through one writer thread that takes whatever requests are queued and commits them
//! in one transaction (group commit): concurrent API writes cost one WAL append together. With
//! `synchronous=NORMAL` a committed transaction is in the WAL file before the call returns, so it
//! survives `kill -9` of the process (only a power loss can take the last transactions back; the
//! WAL is fsynced at checkpoints). Reads use their own connections, which WAL lets run beside the
//! writer. Watches get committed events from an in-process broadcast and catch up (or recover
//! from lagging) by reading the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{broadcast, oneshot};

use crate::{Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError, WatchStream};

/// Events a watcher may fall behind by before it re-reads the log.
const BROADCAST_CAPACITY: usize = 16 * 1024;
/// Requests one transaction takes at most (bounds the latency of the first in the batch).
const MAX_BATCH: usize = 1024;
/// Idle read connections kept open.
const READ_POOL: usize = 8;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

fn backend(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("sqlite: {context}: {e}"))
}

enum Write {
    Create { key: String, value: Vec<u8> },
    Update { key: String, value: Vec<u8>, expected: Revision },
    Delete { key: String, expected: Option<Revision> },
    Compact { revision: Revision },
}

struct Request {
    write: Write,
    reply: oneshot::Sender<Result<Option<Event>>>,
}

/// The latest row of one key.
struct Latest {
    rev: Revision,
    create_rev: Revision,
    deleted: bool,
    value: Vec<u8>,
}

/// Cheap to clone; clones share the writer, the read pool and the watchers.
#[derive(Clone)]
pub struct SqliteStore(Arc<Inner>);

struct Inner {
    path: PathBuf,
    writes: std::sync::mpsc::SyncSender<Request>,
    events: broadcast::Sender<Arc<Event>>,
    readers: Mutex<Vec<Connection>>,
}

impl SqliteStore {
    /// Opens (or creates) the store in `dir` (file `state.db`).
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(|e| backend(&format!("creating {}", dir.display()), e))?;
        let path = dir.join("state.db");
        let conn = Connection::open(&path).map_err(|e| backend(&format!("opening {}", path.display()), e))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| backend("enabling WAL", e))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| backend("setting synchronous", e))?;
        conn.execute_batch(SCHEMA).map_err(|e| backend("creating the schema", e))?;
        let next: Revision = conn
            .query_row("SELECT COALESCE(MAX(rev), 0) FROM log", [], |r| r.get::<_, Revision>(0))
            .map_err(|e| backend("reading the current revision", e))?;
        let stored: Revision = meta(&conn, "current").map_err(|e| backend("reading meta", e))?;
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (tx, rx) = std::sync::mpsc::sync_channel(MAX_BATCH * 4);
        let writer = Writer { conn, next: next.max(stored) + 1, events: events.clone() };
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| backend("starting the writer thread", e))?;
        Ok(SqliteStore(Arc::new(Inner { path, writes: tx, events, readers: Mutex::new(Vec::new()) })))
    }

    async fn write(&self, write: Write) -> Result<Option<Event>> {
        let (reply, rx) = oneshot::channel();
        let tx = self.0.writes.clone();
        // The queue is bounded: a full one blocks, so send from a blocking thread.
        tokio::task::spawn_blocking(move || tx.send(Request { write, reply }))
            .await
            .map_err(|e| backend("queueing a write", e))?
            .map_err(|_| backend("queueing a write", "the writer thread is gone"))?;
        rx.await.map_err(|_| backend("writing", "the writer thread is gone"))?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let this = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let conn = this.reader()?;
            let out = f(&conn);
            if let Ok(mut pool) = this.readers.lock() {
                if pool.len() < READ_POOL {
                    pool.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| backend("reading", e))?
    }

}

impl Inner {
    fn reader(&self) -> Result<Connection> {
        if let Some(c) = self.readers.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(c);
        }
        let c = Connection::open_with_flags(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(|e| backend(&format!("opening {}", self.path.display()), e))?;
        c.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| backend("setting the busy timeout", e))?;
        Ok(c)
    }
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<Revision> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).optional().map(|v| v.unwrap_or(0))
}

/// The first key after every key that starts with `prefix` (None: no upper bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn key_string(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| backend("a stored key is not UTF-8", e))
}

/// Revisions the store can read: (compacted, current).
fn bounds(conn: &Connection) -> Result<(Revision, Revision)> {
    let compacted = meta(conn, "compacted").map_err(|e| backend("reading meta", e))?;
    let current: Revision = conn
        .query_row("SELECT MAX(COALESCE((SELECT MAX(rev) FROM log), 0), COALESCE((SELECT value FROM meta WHERE name = 'current'), 0))", [], |r| r.get(0))
        .map_err(|e| backend("reading the current revision", e))?;
    Ok((compacted, current))
}

/// Checks that `revision` (0 = latest) can be read and returns the concrete one.
fn readable(conn: &Connection, revision: Revision) -> Result<Revision> {
    let (compacted, current) = bounds(conn)?;
    if revision == 0 {
        return Ok(current);
    }
    if revision < compacted {
        return Err(StoreError::Compacted { requested: revision, compacted });
    }
    if revision > current {
        return Err(StoreError::FutureRevision { requested: revision, current });
    }
    Ok(revision)
}

/// `WHERE` clause and bounds for the live keys of a prefix at a revision: the latest row ≤ rev of
/// each key, not a tombstone.
const LIVE_AT: &str = "FROM log AS l WHERE l.key >= ?1 AND (?2 IS NULL OR l.key < ?2) AND l.rev <= ?3 AND l.deleted = 0
    AND l.rev = (SELECT MAX(rev) FROM log AS n WHERE n.key = l.key AND n.rev <= ?3)";

fn list_at(conn: &Connection, prefix: &str, options: &ListOptions) -> Result<ListResult> {
    let revision = readable(conn, options.revision)?;
    let end = prefix_end(prefix.as_bytes());
    let after = options.start_after.as_deref().map(str::as_bytes);
    // One more than asked for tells whether more follow.
    let limit = options.limit.map(|l| l as i64 + 1).unwrap_or(-1);
    let sql = format!(
        "SELECT l.key, l.value, l.create_rev, l.rev {LIVE_AT} AND (?4 IS NULL OR l.key > ?4) ORDER BY l.key LIMIT ?5"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| backend("preparing a list", e))?;
    let rows = stmt
        .query_map(params![prefix.as_bytes(), end, revision, after, limit], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Revision>(2)?, r.get::<_, Revision>(3)?))
        })
        .map_err(|e| backend("listing", e))?;
    let mut items = Vec::new();
    for row in rows {
        let (key, value, create_revision, mod_revision) = row.map_err(|e| backend("listing", e))?;
        items.push(KeyValue { key: key_string(key)?, value, create_revision, mod_revision });
    }
    let more = options.limit.is_some_and(|l| items.len() > l);
    if let Some(l) = options.limit {
        items.truncate(l);
    }
    Ok(ListResult { items, revision, more })
}

/// Events under `prefix` with revisions in (after, upto], in order, from the log.
fn events_between(conn: &Connection, prefix: &str, after: Revision, upto: Revision) -> Result<Vec<Event>> {
    let (compacted, _) = bounds(conn)?;
    if after + 1 < compacted {
        return Err(StoreError::Compacted { requested: after + 1, compacted });
    }
    let end = prefix_end(prefix.as_bytes());
    let mut stmt = conn
        .prepare_cached(
            "SELECT key, value, old_value, create_rev, prev_rev, deleted, rev FROM log
             WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND (?4 IS NULL OR key < ?4) ORDER BY rev",
        )
        .map_err(|e| backend("preparing a watch read", e))?;
    let rows = stmt
        .query_map(params![after, upto, prefix.as_bytes(), end], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
                r.get::<_, Revision>(3)?,
                r.get::<_, Revision>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, Revision>(6)?,
            ))
        })
        .map_err(|e| backend("reading the log", e))?;
    let mut out = Vec::new();
    for row in rows {
        let (key, value, old_value, create_revision, prev_rev, deleted, rev) = row.map_err(|e| backend("reading the log", e))?;
        let kv = KeyValue { key: key_string(key)?, value, create_revision, mod_revision: rev };
        out.push(if deleted {
            Event::Deleted(kv)
        } else if let Some(old) = old_value {
            let prev = KeyValue { key: kv.key.clone(), value: old, create_revision, mod_revision: prev_rev };
            Event::Updated { kv, prev }
        } else {
            Event::Created(kv)
        });
    }
    Ok(out)
}

struct Writer {
    conn: Connection,
    next: Revision,
    events: broadcast::Sender<Arc<Event>>,
}

impl Writer {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
    }

    /// Applies a batch in one transaction; if the commit fails every request in it fails and the
    /// revisions it would have used are used again.
    fn commit(&mut self, batch: Vec<Request>) {
        let start = self.next;
        let mut next = start;
        let outcome = (|| -> rusqlite::Result<Vec<Result<Option<Event>>>> {
            let tx = self.conn.transaction()?;
            let results = batch.iter().map(|req| apply(&tx, &req.write, &mut next)).collect();
            if next > start {
                tx.execute("INSERT INTO meta (name, value) VALUES ('current', ?1) ON CONFLICT(name) DO UPDATE SET value = ?1", [next - 1])?;
            }
            tx.commit()?;
            Ok(results)
        })();
        match outcome {
            Ok(results) => {
                self.next = next;
                for (req, result) in batch.into_iter().zip(results) {
                    if let Ok(Some(ev)) = &result {
                        // No receiver is fine: nobody watches.
                        let _ = self.events.send(Arc::new(ev.clone()));
                    }
                    let _ = req.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite store: a write transaction failed");
                for req in batch {
                    let _ = req.reply.send(Err(backend("committing", &e)));
                }
            }
        }
    }
}

fn latest(tx: &rusqlite::Transaction<'_>, key: &str) -> rusqlite::Result<Option<Latest>> {
    tx.prepare_cached("SELECT rev, create_rev, deleted, value FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1")?
        .query_row([key.as_bytes()], |r| Ok(Latest { rev: r.get(0)?, create_rev: r.get(1)?, deleted: r.get(2)?, value: r.get(3)? }))
        .optional()
}

/// One write inside the batch's transaction. Request errors (exists, conflict) leave the
/// transaction intact; database errors fail that request only.
fn apply(tx: &rusqlite::Transaction<'_>, write: &Write, next: &mut Revision) -> Result<Option<Event>> {
    let db = |e: rusqlite::Error| backend("writing", e);
    let mut insert = |key: &str, value: &[u8], old: Option<&[u8]>, create_rev: Revision, prev_rev: Revision, deleted: bool| -> Result<Revision> {
        let rev = *next;
        tx.prepare_cached("INSERT INTO log (rev, key, value, old_value, create_rev, prev_rev, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .and_then(|mut s| s.execute(params![rev, key.as_bytes(), value, old, if create_rev == 0 { rev } else { create_rev }, prev_rev, deleted]))
            .map_err(db)?;
        *next += 1;
        Ok(rev)
    };
    match write {
        Write::Create { key, value } => {
            let prev = latest(tx, key).map_err(db)?;
            let prev_rev = match &prev {
                Some(l) if !l.deleted => return Err(StoreError::AlreadyExists { key: key.clone() }),
                Some(l) => l.rev,
                None => 0,
            };
            let rev = insert(key, value, None, 0, prev_rev, false)?;
            Ok(Some(Event::Created(KeyValue { key: key.clone(), value: value.clone(), create_revision: rev, mod_revision: rev })))
        }
        Write::Update { key, value, expected } => {
            let Some(cur) = latest(tx, key).map_err(db)?.filter(|l| !l.deleted) else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            if cur.rev != *expected {
                return Err(StoreError::Conflict { key: key.clone(), expected: *expected, current: cur.rev });
            }
            let rev = insert(key, value, Some(&cur.value), cur.create_rev, cur.rev, false)?;
            let prev = KeyValue { key: key.clone(), value: cur.value, create_revision: cur.create_rev, mod_revision: cur.rev };
            Ok(Some(Event::Updated { kv: KeyValue { key: key.clone(), value: value.clone(), create_revision: cur.create_rev, mod_revision: rev }, prev }))
        }
        Write::Delete { key, expected } => {
            let Some(cur) = latest(tx, key).map_err(db)?.filter(|l| !l.deleted) else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            if let Some(exp) = expected {
                if cur.rev != *exp {
                    return Err(StoreError::Conflict { key: key.clone(), expected: *exp, current: cur.rev });
                }
            }
            let rev = insert(key, &cur.value, None, cur.create_rev, cur.rev, true)?;
            Ok(Some(Event::Deleted(KeyValue { key: key.clone(), value: cur.value, create_revision: cur.create_rev, mod_revision: rev })))
        }
        Write::Compact { revision } => {
            let current = *next - 1;
            if *revision > current {
                return Err(StoreError::FutureRevision { requested: *revision, current });
            }
            let compacted = meta(tx, "compacted").map_err(db)?;
            if *revision <= compacted {
                return Ok(None);
            }
            // Rows older than the revision that another row ≤ the revision supersedes, and
            // tombstones older than it: a read at any revision ≥ it never needs them.
            tx.execute(
                "DELETE FROM log WHERE rev < ?1 AND (deleted = 1 OR EXISTS
                    (SELECT 1 FROM log AS n WHERE n.key = log.key AND n.rev > log.rev AND n.rev <= ?1))",
                [revision],
            )
            .map_err(db)?;
            tx.execute("INSERT INTO meta (name, value) VALUES ('compacted', ?1) ON CONFLICT(name) DO UPDATE SET value = ?1", [revision])
                .map_err(db)?;
            Ok(None)
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.read(|c| bounds(c).map(|b| b.1)).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.read(|c| bounds(c).map(|b| b.0)).await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT value, create_rev, rev, deleted FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1")
                .and_then(|mut s| {
                    s.query_row([key.as_bytes()], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Revision>(1)?, r.get::<_, Revision>(2)?, r.get::<_, bool>(3)?)))
                        .optional()
                })
                .map_err(|e| backend("reading a key", e))?;
            Ok(row.filter(|r| !r.3).map(|(value, create_revision, mod_revision, _)| KeyValue { key, value, create_revision, mod_revision }))
        })
        .await
    }

    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListResult> {
        let (prefix, options) = (prefix.to_string(), options.clone());
        self.read(move |c| list_at(c, &prefix, &options)).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_string();
        self.read(move |c| {
            let revision = readable(c, 0)?;
            let end = prefix_end(prefix.as_bytes());
            c.query_row(&format!("SELECT COUNT(*) {LIVE_AT}"), params![prefix.as_bytes(), end, revision], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| backend("counting", e))
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        match self.write(Write::Create { key: key.to_string(), value }).await? {
            Some(Event::Created(kv)) => Ok(kv),
            _ => Err(backend("create", "unexpected writer reply")),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        match self.write(Write::Update { key: key.to_string(), value, expected }).await? {
            Some(Event::Updated { kv, .. }) => Ok(kv),
            _ => Err(backend("update", "unexpected writer reply")),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        match self.write(Write::Delete { key: key.to_string(), expected }).await? {
            Some(Event::Deleted(kv)) => Ok(kv),
            _ => Err(backend("delete", "unexpected writer reply")),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribed before the log is read, so nothing committed in between is missed; events
        // seen twice (in the log and in the broadcast) are skipped by revision.
        let mut live = self.0.events.subscribe();
        let current = self.current_revision().await?;
        let after = if after == 0 { current } else { after };
        let pre = prefix.to_string();
        let backlog = self.read(move |c| events_between(c, &pre, after, current)).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event>>(256);
        let store = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut last = after;
            for ev in backlog {
                last = ev.revision();
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            last = last.max(current);
            loop {
                let ev = tokio::select! {
                    ev = live.recv() => ev,
                    () = tx.closed() => return,
                };
                match ev {
                    Ok(ev) => {
                        if ev.revision() <= last || !ev.key().starts_with(&prefix) {
                            continue;
                        }
                        last = ev.revision();
                        if tx.send(Ok((*ev).clone())).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the broadcast: read what was missed from the log.
                        let upto = match store.current_revision().await {
                            Ok(r) => r,
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        };
                        let pre = prefix.clone();
                        match store.read(move |c| events_between(c, &pre, last, upto)).await {
                            Ok(missed) => {
                                for ev in missed {
                                    last = ev.revision();
                                    if tx.send(Ok(ev)).await.is_err() {
                                        return;
                                    }
                                }
                                last = last.max(upto);
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(Write::Compact { revision }).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_range_is_the_next_prefix() {
        assert_eq!(prefix_end(b"/registry/pods/"), Some(b"/registry/pods0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
