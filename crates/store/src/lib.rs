//! The cluster's datastore: a key-value store with etcd's MVCC semantics, which is what the
//! Kubernetes API needs. Every write gets the next global revision; that revision is the
//! object's `resourceVersion`. Updates and deletes are compare-and-swap on an object's
//! `mod_revision`, lists are consistent at one revision and page with a start key, and watches
//! replay every change after a revision until that revision is compacted away.
//!
//! Backends: SQLite (the default, one file in the server's root) and etcd v3 (for HA control
//! planes). Both run the same conformance suite.

use std::pin::Pin;

use async_trait::async_trait;
use futures_core::Stream;

/// A global store revision. Revisions start at 1 and only grow; 0 means "the latest".
pub type Revision = i64;

/// One key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created this key (the life of the key since its last delete).
    pub create_revision: Revision,
    /// The revision of the last write to this key: the object's resourceVersion.
    pub mod_revision: Revision,
}

/// A change seen by a watch. For `Deleted`, `kv` holds the value before the delete and
/// `kv.mod_revision` is the revision of the delete itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Created(KeyValue),
    Updated { kv: KeyValue, prev: KeyValue },
    Deleted(KeyValue),
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Created(kv) | Event::Updated { kv, .. } | Event::Deleted(kv) => kv.mod_revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Created(kv) | Event::Updated { kv, .. } | Event::Deleted(kv) => &kv.key,
        }
    }
}

/// What `list` returns: the items in key order, the revision they were read at, and whether
/// more items follow the last one (ask again with `start_after` = the last key and the same
/// `revision` for a consistent next page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    pub more: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read at this revision (0 = latest). Fails with `Compacted` if it is compacted away.
    pub revision: Revision,
    /// Only keys strictly greater than this one (paging).
    pub start_after: Option<String>,
    /// At most this many items (None = all).
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// The compare-and-swap failed: the key's current revision differs from the expected one.
    #[error("key {key} was modified: expected revision {expected}, current revision {current}")]
    Conflict { key: String, expected: Revision, current: Revision },
    /// The requested revision is older than the compaction horizon (Kubernetes answers 410 Gone).
    #[error("revision {requested} is compacted (oldest available revision is {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("datastore: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of changes under a prefix, in revision order. It ends only if the store goes away;
/// an `Err(Compacted)` item means the watcher fell too far behind and must re-list.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest revision (the revision of the last write, or of the empty store).
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision still readable; watches and reads from older revisions fail.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// The key at the latest revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, consistent at one revision.
    async fn list(&self, prefix: &str, options: &ListOptions) -> Result<ListResult>;

    /// Number of keys starting with `prefix` at the latest revision.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Creates the key; `AlreadyExists` if it exists. Returns it with its new revision.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces the value if the key's mod_revision is `expected`; `Conflict` otherwise,
    /// `NotFound` if the key does not exist.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Deletes the key (only if its mod_revision is `expected`, when given). Returns the deleted
    /// value with `mod_revision` set to the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Changes under `prefix` after revision `after` (exclusive), then live changes.
    /// `after` = 0 means "from now on".
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forgets history before `revision` (the latest value of each live key stays).
    async fn compact(&self, revision: Revision) -> Result<()>;
}

mod etcd;
mod sqlite;

pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

/// The datastore for a server: etcd when `endpoint` is given (`http://host:port`, comma-separated
/// for a cluster), else SQLite in `root`.
pub async fn open(endpoint: Option<&str>, root: &std::path::Path) -> Result<std::sync::Arc<dyn Store>> {
    Ok(match endpoint.filter(|e| !e.is_empty()) {
        Some(endpoints) => {
            let list: Vec<&str> = endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
            std::sync::Arc::new(EtcdStore::connect(&list, "").await?)
        }
        None => std::sync::Arc::new(SqliteStore::open(root)?),
    })
}
