//! The container engine behind the Docker Engine API: container records and their lifecycle, OCI spec
//! generation, per-container shims (containers outlive the engine; a restarted engine reattaches),
//! logs, exec, and the image operations the API needs.
//!
//! It owns policy (Docker's defaults) and bookkeeping; it does not own the kernel work (the `runtime`
//! crate, run inside each `shim`), layer storage (`snapshot`), image formats (`image`) or HTTP
//! (`engine-api`). It never imports Kubernetes types.
//!
//! Layout on disk, under the engine root:
//! `containers/<id>/{container.json, config.json, rootfs/, <id>-json.log, hosts, hostname, resolv.conf}`,
//! `image/` and `snapshots/` (the stores), `run/runtime/` (runtime state), `run/shims/<id>/` (shim
//! socket and exit status), `run/seccomp/` (compiled filter cache).

mod caps;
mod error;
mod etc;
mod exec;
pub mod fdio;
mod images;
mod pull;
pub mod network;
pub mod volumes;
mod push;
mod lifecycle;
mod logs;
pub mod model;
mod names;
mod spec;
mod store;
mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub use error::{Error, Result};
pub use exec::{ExecConfig, ExecInfo, ExecIo};
pub use images::{HistoryEntry, ImportRequest, Pruned};
pub use pull::{Progress, PullRequest};
pub use lifecycle::{CreateRequest, WaitCondition};
pub use logs::{LogEntry, LogOptions, LogStream, Stream as LogStreamKind};
pub use model::{ContainerConfig, ContainerRecord, HostConfig, State, Status};

/// What the engine needs to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// The berth binary, run as `berth shim …` for each container.
    pub berth_binary: PathBuf,
    /// Registries spoken to over plain HTTP besides loopback ones (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// The default bridge (None: no bridge networking, as `dockerd --bridge none`).
    pub bridge: Option<network::BridgeOptions>,
}

/// Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    berth_binary: PathBuf,
    images: image::ImageStore,
    snapshots: Arc<snapshot::Snapshotter>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    execs: Mutex<HashMap<String, Arc<exec::Exec>>>,
    cgroup_v2: bool,
    /// The distribution client (its construction error, should TLS set-up have failed).
    registry: std::result::Result<registry::Client, String>,
    /// Networks, their bridges and DNS.
    networking: network::Networking,
    /// Serialises network create and remove.
    network_ops: Mutex<()>,
    /// Layers being pulled (by chain id), so concurrent pulls fetch a shared layer once.
    inflight: Mutex<HashMap<String, pull::Done>>,
}

/// One container: its record, a channel that tells waiters of every change, and a lock that
/// serialises lifecycle operations (start, stop, remove) on it.
pub(crate) struct Container {
    record: Mutex<ContainerRecord>,
    observed: watch::Sender<Observed>,
    op: tokio::sync::Mutex<()>,
}

/// What waiters watch.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub state: State,
    pub removed: bool,
}

impl Container {
    fn new(record: ContainerRecord) -> Arc<Self> {
        let (observed, _) = watch::channel(Observed { state: record.state.clone(), removed: false });
        Arc::new(Container { record: Mutex::new(record), observed, op: tokio::sync::Mutex::new(()) })
    }
    pub(crate) fn record(&self) -> MutexGuard<'_, ContainerRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn snapshot(&self) -> ContainerRecord {
        self.record().clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Opens (or initialises) the engine root and reattaches to containers whose shims are alive.
    pub async fn open(opts: Options) -> Result<Engine> {
        let root = opts.root.clone();
        for dir in ["containers", "run/runtime", "run/shims", "run/seccomp", "snapshots", "image"] {
            std::fs::create_dir_all(root.join(dir)).map_err(|e| Error::io(format!("creating {}", root.join(dir).display()), e))?;
        }
        let snapshots = Arc::new(snapshot::Snapshotter::open(&root.join("snapshots"))?);
        let images = image::ImageStore::open(&root.join("image"), snapshots.clone())?;
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let networking = network::open(&root, opts.bridge.as_ref());
        let engine = Engine {
            inner: Arc::new(Inner {
                root,
                berth_binary: opts.berth_binary,
                images,
                snapshots,
                containers: Mutex::new(HashMap::new()),
                execs: Mutex::new(HashMap::new()),
                cgroup_v2,
                inflight: Mutex::new(HashMap::new()),
                networking,
                network_ops: Mutex::new(()),
                registry: registry::Client::new(registry::Options { insecure_registries: opts.insecure_registries.clone() }).map_err(|e| e.to_string()),
            }),
        };
        if let Err(e) = engine.net_host() {
            tracing::warn!(error = %e, "containers get --network none");
        }
        engine.restore().await?;
        let reconciler = engine.clone();
        blocking(move || {
            reconciler.reconcile_network();
            Ok(())
        })
        .await?;
        Ok(engine)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.inner.root.join("containers").join(id)
    }
    pub(crate) fn shim_dir(&self, id: &str) -> PathBuf {
        self.inner.root.join("run/shims").join(id)
    }
    pub(crate) fn runtime_root(&self) -> PathBuf {
        self.inner.root.join("run/runtime")
    }
    pub(crate) fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// Finds a container by full id, name (with or without the leading '/') or unique id prefix.
    pub(crate) fn lookup(&self, name: &str) -> Result<Arc<Container>> {
        let map = lock(&self.inner.containers);
        if let Some(c) = map.get(name) {
            return Ok(c.clone());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        if let Some(c) = map.values().find(|c| c.record().name == bare) {
            return Ok(c.clone());
        }
        let mut found = map.iter().filter(|(id, _)| !bare.is_empty() && id.starts_with(bare));
        match (found.next(), found.next()) {
            (Some((_, c)), None) => Ok(c.clone()),
            (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
                "multiple IDs found with provided prefix: {bare}"
            ))),
            _ => Err(Error::no_container(bare)),
        }
    }

    /// A snapshot of one container's record.
    pub fn container(&self, name: &str) -> Result<ContainerRecord> {
        Ok(self.lookup(name)?.snapshot())
    }

    /// All containers, newest first.
    pub fn containers(&self) -> Vec<ContainerRecord> {
        let mut all: Vec<ContainerRecord> = lock(&self.inner.containers).values().map(|c| c.snapshot()).collect();
        all.sort_by(|a, b| b.created.cmp(&a.created));
        all
    }

    /// Counts for `/info`: (total, running, paused, stopped).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let all = self.containers();
        let running = all.iter().filter(|c| c.state.status == Status::Running).count();
        let paused = all.iter().filter(|c| c.state.status == Status::Paused).count();
        (all.len(), running, paused, all.len() - running - paused)
    }

    /// Path of a container's json-file log (inspect's `LogPath`).
    pub fn container_log_path(&self, id: &str) -> PathBuf {
        self.log_path(id)
    }
}

/// Runs blocking work (filesystem, shim calls) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
}

/// RFC 3339 with nanoseconds, as Docker prints times.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
