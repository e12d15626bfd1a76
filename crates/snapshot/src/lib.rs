//! Layer storage: safe application of layer tars (whiteouts in overlayfs format) and overlay
//! snapshots, one read-only directory per layer chain and one writable upper per container.
//!
//! Owns the `snapshots/` directory. Knows nothing of image formats, registries or containers beyond
//! a chain id (the caller computes it) and a snapshot key.
//!
//! Layout: `layers/<chain hex>/{fs/, meta.json}` (meta: parent chain, size), `active/<key>/{upper/,
//! work/, meta.json}`, `tmp/` for layers being unpacked (renamed into place when whole) and for
//! directories being deleted (renamed out of the way first, so no half layer is ever visible).

mod apply;
mod mount;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

pub use apply::{apply_layer, ApplyOptions, LayerStats};

/// Overlayfs accepts at most 500 lower layers; a longer parent chain is corrupt metadata.
const MAX_DEPTH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid layer archive: {0}")]
    Archive(String),
    /// A hostile or malformed entry; nothing of it was written outside the layer.
    #[error("layer entry {entry:?} rejected: {reason}")]
    Entry { entry: String, reason: String },
    #[error("unsupported layer compression: {0}")]
    Compression(String),
    #[error("layer {0} not found")]
    LayerNotFound(String),
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("layer {0} is in use by {1}")]
    InUse(String, String),
    #[error("invalid {kind} {name:?}: {reason}")]
    InvalidName { kind: &'static str, name: String, reason: &'static str },
    #[error("corrupt snapshot store: {0}")]
    Corrupt(String),
    #[error("mounting {target}: {reason}")]
    Mount { target: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Sniffs gzip (1f 8b) and zstd (28 b5 2f fd); anything else passes through as a plain tar.
pub fn decompress<'a, R: Read + Send + 'a>(r: R) -> Result<Box<dyn Read + Send + 'a>, Error> {
    let mut buf = std::io::BufReader::with_capacity(128 * 1024, r);
    let head = std::io::BufRead::fill_buf(&mut buf).map_err(io("reading layer header"))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        // Multi-member gzip (pigz, some registries) is one stream.
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buf)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let z = zstd::stream::read::Decoder::with_buffer(buf).map_err(|e| Error::Compression(format!("zstd: {e}")))?;
        Ok(Box::new(z))
    } else {
        Ok(Box::new(buf))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    parent: Option<String>,
    size: u64,
}

pub struct Snapshotter {
    root: PathBuf,
    apply: ApplyOptions,
    /// Serialises "is this layer used?" against "build on this layer", so image GC never removes a
    /// layer that a concurrent `prepare` or `add_layer` is about to depend on.
    deps: Mutex<()>,
}

/// A layer being unpacked under `tmp/`; dropped without `commit`, it disappears.
pub struct PendingLayer<'a> {
    snapshotter: &'a Snapshotter,
    dir: PathBuf,
    parent: Option<String>,
    committed: bool,
}

/// `sha256:<hex>` or bare hex; the hex names a directory, so nothing else is accepted.
fn hex_of(chain_id: &str) -> Result<&str, Error> {
    let hex = chain_id.strip_prefix("sha256:").unwrap_or(chain_id);
    let ok = !hex.is_empty() && hex.len() <= 128 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(hex)
    } else {
        Err(Error::InvalidName { kind: "chain id", name: chain_id.to_string(), reason: "expected sha256:<lowercase hex>" })
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key != "."
        && key != ".."
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { kind: "snapshot key", name: key.to_string(), reason: "use 1-128 of [A-Za-z0-9._-]" })
    }
}

impl Snapshotter {
    pub fn open(root: &Path) -> Result<Snapshotter, Error> {
        for d in ["layers", "active", "tmp"] {
            std::fs::create_dir_all(root.join(d)).map_err(io(format!("creating {}", root.join(d).display())))?;
        }
        // Half-unpacked layers and half-deleted directories from a crash.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(path = %e.path().display(), error = %err, "cannot clean up snapshot temp dir");
                }
            }
        }
        Ok(Snapshotter { root: root.to_path_buf(), apply: ApplyOptions::default(), deps: Mutex::new(()) })
    }

    /// Options used by `add_layer` and `begin_layer` (device nodes are refused by default).
    pub fn with_apply_options(mut self, opts: ApplyOptions) -> Snapshotter {
        self.apply = opts;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_deps(&self) -> MutexGuard<'_, ()> {
        self.deps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn layer_rel(chain_id: &str) -> Result<PathBuf, Error> {
        Ok(Path::new("layers").join(hex_of(chain_id)?))
    }
    fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, Error> {
        Ok(self.root.join(Self::layer_rel(chain_id)?))
    }
    fn active_rel(key: &str) -> Result<PathBuf, Error> {
        check_key(key)?;
        Ok(Path::new("active").join(key))
    }
    fn active_dir(&self, key: &str) -> Result<PathBuf, Error> {
        Ok(self.root.join(Self::active_rel(key)?))
    }

    pub fn has_layer(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id).is_ok_and(|d| d.join("meta.json").exists())
    }

    fn meta(dir: &Path) -> Result<Meta, Error> {
        let data = std::fs::read(dir.join("meta.json")).map_err(io(format!("reading {}/meta.json", dir.display())))?;
        serde_json::from_slice(&data).map_err(|e| Error::Corrupt(format!("{}/meta.json: {e}", dir.display())))
    }

    /// tmp + fsync + rename: a crash leaves the old file or the new one.
    fn write_meta(dir: &Path, meta: &Meta) -> Result<(), Error> {
        use std::io::Write;
        let data = serde_json::to_vec(meta).map_err(|e| Error::Corrupt(e.to_string()))?;
        let tmp = dir.join("meta.json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(&data).and_then(|()| f.sync_all()).map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join("meta.json")).map_err(io(format!("writing {}/meta.json", dir.display())))
    }

    /// Starts unpacking a layer on top of `parent`; the chain id is given at `commit`, once the
    /// caller has hashed the whole stream.
    pub fn begin_layer(&self, parent: Option<&str>) -> Result<PendingLayer<'_>, Error> {
        if let Some(p) = parent {
            if !self.has_layer(p) {
                return Err(Error::LayerNotFound(p.to_string()));
            }
        }
        self.begin_layer_over(parent)
    }

    /// Like `begin_layer`, for a parent that may still be unpacking (a pull unpacks every layer at
    /// once); `commit` fails unless the parent has been committed by then.
    pub fn begin_layer_over(&self, parent: Option<&str>) -> Result<PendingLayer<'_>, Error> {
        let dir = self.root.join("tmp").join(format!("{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(dir.join("fs")).map_err(io(format!("creating {}", dir.display())))?;
        Ok(PendingLayer { snapshotter: self, dir, parent: parent.map(String::from), committed: false })
    }

    /// Extracts a layer whose chain id is known up front (skips the work when it is already there).
    /// Concurrent calls for one chain id each unpack privately; the first rename wins.
    pub fn add_layer<R: Read>(&self, chain_id: &str, parent: Option<&str>, tar: R) -> Result<LayerStats, Error> {
        hex_of(chain_id)?;
        if self.has_layer(chain_id) {
            return Ok(LayerStats::default());
        }
        let mut pending = self.begin_layer(parent)?;
        let stats = pending.apply(tar)?;
        pending.commit(chain_id, stats.size)?;
        Ok(stats)
    }

    /// Chain ids from `chain_id` down to the base layer, top-most first.
    fn chain(&self, chain_id: &str) -> Result<Vec<(String, Meta)>, Error> {
        let mut out: Vec<(String, Meta)> = Vec::new();
        let mut next = Some(chain_id.to_string());
        while let Some(id) = next {
            if out.len() >= MAX_DEPTH {
                return Err(Error::Corrupt(format!("layer {chain_id} has more than {MAX_DEPTH} parents")));
            }
            let dir = self.layer_dir(&id)?;
            if !dir.join("meta.json").exists() {
                return Err(Error::LayerNotFound(id));
            }
            let meta = Self::meta(&dir)?;
            next = meta.parent.clone();
            out.push((id, meta));
        }
        Ok(out)
    }

    /// Lower dirs of a chain, top-most first (the order overlay's lowerdir wants).
    pub fn lowerdirs(&self, chain_id: &str) -> Result<Vec<PathBuf>, Error> {
        self.chain(chain_id)?.iter().map(|(id, _)| Ok(self.layer_dir(id)?.join("fs"))).collect()
    }

    /// Unpacked bytes of a chain (all its layers).
    pub fn chain_size(&self, chain_id: &str) -> Result<u64, Error> {
        Ok(self.chain(chain_id)?.iter().map(|(_, m)| m.size).sum())
    }

    /// A writable snapshot `key` over the chain `parent` (None: an empty root). Preparing an
    /// existing key again is an error, so two containers never share an upper dir.
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<(), Error> {
        let dir = self.active_dir(key)?;
        let _deps = self.lock_deps();
        if let Some(p) = parent {
            if !self.has_layer(p) {
                return Err(Error::LayerNotFound(p.to_string()));
            }
        }
        // Built aside and renamed in, so a crash never leaves a snapshot without its meta.
        let tmp = self.root.join("tmp").join(format!("active-{}", unique()));
        for d in ["upper", "work"] {
            std::fs::create_dir_all(tmp.join(d)).map_err(io(format!("creating {}", tmp.join(d).display())))?;
        }
        Self::write_meta(&tmp, &Meta { parent: parent.map(String::from), size: 0 })?;
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(match e.raw_os_error() {
                Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Error::InUse(key.to_string(), "an existing snapshot".into()),
                _ => Error::Io { context: format!("creating snapshot {key}"), source: e },
            });
        }
        Ok(())
    }

    /// Mounts snapshot `key` at `target`: overlay over its layers, or a bind of the upper dir when
    /// there are none. See `mount.rs` for how deep images fit.
    pub fn mount(&self, key: &str, target: &Path) -> Result<(), Error> {
        let rel = Self::active_rel(key)?;
        let dir = self.root.join(&rel);
        if !dir.join("meta.json").exists() {
            return Err(Error::SnapshotNotFound(key.to_string()));
        }
        let lowers = match Self::meta(&dir)?.parent {
            Some(p) => self.chain(&p)?.iter().map(|(id, _)| Ok(Self::layer_rel(id)?.join("fs"))).collect::<Result<Vec<_>, Error>>()?,
            None => Vec::new(),
        };
        if lowers.is_empty() {
            return mount::bind(&dir.join("upper"), target);
        }
        mount::overlay(&self.root, &lowers, &rel.join("upper"), &rel.join("work"), target)
    }

    /// Detaches whatever is mounted at `target` (every stacked mount); not mounted is fine.
    pub fn unmount(target: &Path) -> Result<(), Error> {
        mount::unmount_all(target)
    }

    /// Deletes the writable snapshot `key`; a missing one is fine.
    pub fn remove(&self, key: &str) -> Result<(), Error> {
        let dir = self.active_dir(key)?;
        self.discard(&dir, &format!("snapshot {key}"))
    }

    /// Moves `dir` into `tmp/` (atomic: it is gone from the store at once), then deletes it.
    fn discard(&self, dir: &Path, what: &str) -> Result<(), Error> {
        let grave = self.root.join("tmp").join(format!("rm-{}", unique()));
        match std::fs::rename(dir, &grave) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::Io { context: format!("removing {what}"), source: e }),
            Ok(()) => {}
        }
        std::fs::remove_dir_all(&grave).map_err(io(format!("deleting {what}")))
    }

    /// Removes a layer (image GC); refused while another layer or a snapshot builds on it.
    pub fn remove_layer(&self, chain_id: &str) -> Result<(), Error> {
        let dir = self.layer_dir(chain_id)?;
        let hex = hex_of(chain_id)?;
        let _deps = self.lock_deps();
        for kind in ["layers", "active"] {
            let Ok(entries) = std::fs::read_dir(self.root.join(kind)) else { continue };
            for e in entries.flatten() {
                let Ok(m) = Self::meta(&e.path()) else { continue };
                if m.parent.as_deref().and_then(|p| hex_of(p).ok()) == Some(hex) {
                    let who = format!("{} {}", if kind == "layers" { "layer" } else { "snapshot" }, e.file_name().to_string_lossy());
                    return Err(Error::InUse(chain_id.to_string(), who));
                }
            }
        }
        self.discard(&dir, &format!("layer {chain_id}"))
    }

    /// Chain ids of every layer in the store (for GC and listing).
    pub fn layers(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join("layers")) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.path().join("meta.json").exists())
            .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
            .collect()
    }

    /// Bytes written by the container (its upper dir), each inode counted once.
    pub fn usage(&self, key: &str) -> Result<u64, Error> {
        let dir = self.active_dir(key)?;
        if !dir.join("meta.json").exists() {
            return Err(Error::SnapshotNotFound(key.to_string()));
        }
        let mut seen = std::collections::HashSet::new();
        Ok(du(&dir.join("upper"), &mut seen))
    }
}

fn du(p: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = std::fs::symlink_metadata(p) else { return 0 };
    if !seen.insert((md.dev(), md.ino())) {
        return 0;
    }
    if md.is_dir() {
        let children = std::fs::read_dir(p).map(|es| es.flatten().map(|e| e.path()).collect::<Vec<_>>()).unwrap_or_default();
        children.iter().map(|c| du(c, seen)).sum()
    } else {
        md.len()
    }
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    format!("{}-{t:x}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl PendingLayer<'_> {
    /// The directory being filled (for callers that produce a layer themselves, e.g. a diff).
    pub fn path(&self) -> PathBuf {
        self.dir.join("fs")
    }

    pub fn apply<R: Read>(&mut self, tar: R) -> Result<LayerStats, Error> {
        apply_layer(tar, &self.dir.join("fs"), &self.snapshotter.apply)
    }

    /// Moves the unpacked layer into place as `chain_id`. A concurrent unpack of the same chain
    /// that won the race is kept and this copy dropped.
    pub fn commit(mut self, chain_id: &str, size: u64) -> Result<(), Error> {
        let dest = self.snapshotter.layer_dir(chain_id)?;
        Snapshotter::write_meta(&self.dir, &Meta { parent: self.parent.clone(), size })?;
        let _deps = self.snapshotter.lock_deps();
        if let Some(p) = &self.parent {
            // GC may have removed the parent while this layer was unpacking.
            if !self.snapshotter.has_layer(p) {
                return Err(Error::LayerNotFound(p.clone()));
            }
        }
        match std::fs::rename(&self.dir, &dest) {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(_) if self.snapshotter.has_layer(chain_id) => Ok(()),
            Err(e) => Err(Error::Io { context: format!("committing layer {chain_id}"), source: e }),
        }
    }
}

impl Drop for PendingLayer<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests;
