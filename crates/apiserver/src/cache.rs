//! The watch cache: every object of the cluster, parsed once, kept current by one watch on the
//! datastore, with a window of recent changes. Lists and watches are served from here; the
//! datastore sees one watch however many clients watch. A list waits until the cache has caught
//! up with the datastore's current revision, so a client always lists its own writes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use store::{Revision, Store};
use tokio::sync::{broadcast, watch};

use crate::status::{ApiError, ApiResult};

/// Changes kept for watchers that resume from an older revision (beyond it: 410 Gone).
const WINDOW: usize = 100_000;
/// Changes a watcher may lag behind before it is cut off with 410.
const EVENT_BUFFER: usize = 16_384;

/// One object as stored, parsed.
#[derive(Debug)]
pub struct Obj {
    pub key: String,
    pub value: Value,
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

/// One change: the object after it (before it, for a delete) and before it.
#[derive(Debug)]
pub struct CacheEvent {
    pub change: Change,
    pub revision: Revision,
    pub obj: Arc<Obj>,
    pub prev: Option<Arc<Obj>>,
    /// The object's JSON with its resourceVersion, serialized once however many watchers send it.
    json: std::sync::OnceLock<String>,
}

impl CacheEvent {
    fn new(change: Change, revision: Revision, obj: Arc<Obj>, prev: Option<Arc<Obj>>) -> CacheEvent {
        CacheEvent { change, revision, obj, prev, json: std::sync::OnceLock::new() }
    }

    pub fn object_json(&self) -> &str {
        self.json.get_or_init(|| {
            let mut v = self.obj.value.clone();
            v["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
            v.to_string()
        })
    }
}

fn gc_relevant(v: &Value) -> bool {
    v["metadata"]["ownerReferences"].as_array().is_some_and(|r| !r.is_empty()) || !v["metadata"]["deletionTimestamp"].is_null()
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<Obj>>,
    /// Keys of objects with owner references or a deletionTimestamp: what garbage collection
    /// looks at, so it need not scan every object on every change.
    gc_interest: std::collections::BTreeSet<String>,
    revision: Revision,
    log: VecDeque<Arc<CacheEvent>>,
    /// Every change after this revision is in `log`.
    oldest: Revision,
}

pub struct Cache {
    store: Arc<dyn Store>,
    state: RwLock<State>,
    /// Replaced when the cache reloads: watchers of the old one see their stream end (and resume
    /// with 410 if their revision is gone), rather than silently missing the gap.
    events: std::sync::Mutex<broadcast::Sender<Arc<CacheEvent>>>,
    revision: watch::Sender<Revision>,
}

/// What a watcher gets: the backlog after its revision and the live changes.
pub struct Subscription {
    pub backlog: Vec<Arc<CacheEvent>>,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

fn parse(kv: &store::KeyValue) -> Option<Arc<Obj>> {
    match serde_json::from_slice(&kv.value) {
        Ok(value) => Some(Arc::new(Obj { key: kv.key.clone(), value, mod_revision: kv.mod_revision })),
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "skipping an undecodable object");
            None
        }
    }
}

impl Cache {
    /// Loads everything under `/registry/` and follows the datastore from there.
    pub async fn start(store: Arc<dyn Store>) -> ApiResult<Arc<Cache>> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (revision, _) = watch::channel(0);
        let cache = Arc::new(Cache { store, state: RwLock::default(), events: std::sync::Mutex::new(events), revision });
        let (stream, rev) = cache.watch_then_load().await?;
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(stream, rev).await });
        Ok(cache)
    }

    /// The watch is opened before the list: every change after the list's revision is then in
    /// the stream (a watch "from now on" opened after the list could miss writes in between, and
    /// an empty store has no revision to watch from).
    async fn watch_then_load(&self) -> ApiResult<(store::WatchStream, Revision)> {
        let stream = self.store.watch("/registry/", 0).await?;
        let rev = self.load().await?;
        Ok((stream, rev))
    }

    async fn load(&self) -> ApiResult<Revision> {
        let mut objects = BTreeMap::new();
        let mut opts = store::ListOptions { limit: Some(10_000), ..Default::default() };
        let revision = loop {
            let page = self.store.list("/registry/", &opts).await?;
            for kv in &page.items {
                if let Some(o) = parse(kv) {
                    objects.insert(kv.key.clone(), o);
                }
            }
            if !page.more {
                break page.revision;
            }
            opts.revision = page.revision;
            opts.start_after = page.items.last().map(|kv| kv.key.clone());
        };
        let gc_interest = objects.iter().filter(|(_, o)| gc_relevant(&o.value)).map(|(k, _)| k.clone()).collect();
        let mut s = self.write();
        *s = State { objects, gc_interest, revision, log: VecDeque::new(), oldest: revision };
        *self.events.lock().unwrap_or_else(|p| p.into_inner()) = broadcast::channel(EVENT_BUFFER).0;
        drop(s);
        self.revision.send_replace(revision);
        Ok(revision)
    }

    /// Applies the datastore's changes (those after the loaded revision) forever; starts over
    /// with a new watch and a fresh load if the stream breaks.
    async fn follow(self: Arc<Self>, mut stream: store::WatchStream, mut loaded: Revision) {
        loop {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(ev) if ev.revision() <= loaded => {}
                    Ok(ev) => self.apply(ev),
                    Err(e) => {
                        tracing::warn!(error = %e, "the datastore watch broke; reloading the cache");
                        break;
                    }
                }
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match self.watch_then_load().await {
                    Ok((s, rev)) => {
                        stream = s;
                        loaded = rev;
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e.message, "cannot reload the cache"),
                }
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, ev: store::Event) {
        let revision = ev.revision();
        let mut s = self.write();
        let event = match &ev {
            store::Event::Created(kv) | store::Event::Updated { kv, .. } => {
                let Some(obj) = parse(kv) else { return };
                let prev = s.objects.insert(kv.key.clone(), obj.clone());
                if gc_relevant(&obj.value) {
                    s.gc_interest.insert(kv.key.clone());
                } else {
                    s.gc_interest.remove(&kv.key);
                }
                let change = if prev.is_some() { Change::Modified } else { Change::Added };
                CacheEvent::new(change, revision, obj, prev)
            }
            store::Event::Deleted(kv) => {
                let prev = s.objects.remove(&kv.key);
                s.gc_interest.remove(&kv.key);
                // The deleted object as it last was, stamped with the revision of the delete.
                let Some(last) = prev.clone() else { return };
                let obj = Arc::new(Obj { key: last.key.clone(), value: last.value.clone(), mod_revision: revision });
                CacheEvent::new(Change::Deleted, revision, obj, prev)
            }
        };
        let event = Arc::new(event);
        s.log.push_back(event.clone());
        if s.log.len() > WINDOW {
            if let Some(old) = s.log.pop_front() {
                s.oldest = old.revision;
            }
        }
        s.revision = revision;
        // Sent under the lock: a subscriber taking its backlog under the lock sees each change once.
        let _ = self.events.lock().unwrap_or_else(|p| p.into_inner()).send(event);
        drop(s);
        self.revision.send_replace(revision);
    }

    /// Waits until the cache holds every write the datastore has acknowledged.
    pub async fn fresh(&self) -> ApiResult<Revision> {
        let target = self.store.current_revision().await?;
        let mut rx = self.revision.subscribe();
        let reached = tokio::time::timeout(Duration::from_secs(10), async {
            let r = rx.wait_for(|r| *r >= target).await.map(|r| *r);
            r
        })
        .await;
        match reached {
            Ok(Ok(r)) => Ok(r),
            _ => Err(ApiError::new(504, "Timeout", format!("Too large resource version: {target}, current: {}", self.revision()))),
        }
    }

    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Objects under `prefix` (key order) and the revision they are current at.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<Obj>>, Revision) {
        let s = self.read();
        let items = s.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, o)| o.clone()).collect();
        (items, s.revision)
    }

    /// Objects with owner references or being deleted.
    pub fn gc_candidates(&self) -> Vec<Arc<Obj>> {
        let s = self.read();
        s.gc_interest.iter().filter_map(|k| s.objects.get(k).cloned()).collect()
    }

    pub fn get(&self, key: &str) -> Option<Arc<Obj>> {
        self.read().objects.get(key).cloned()
    }

    /// Changes after `after` and the live ones; 410 when `after` is older than the window.
    pub fn subscribe(&self, after: Revision) -> ApiResult<Subscription> {
        let s = self.read();
        if after < s.oldest {
            return Err(ApiError::gone(format!("too old resource version: {after} ({})", s.oldest)));
        }
        let backlog = s.log.iter().filter(|e| e.revision > after).cloned().collect();
        let live = self.events.lock().unwrap_or_else(|p| p.into_inner()).subscribe();
        Ok(Subscription { backlog, live })
    }
}
