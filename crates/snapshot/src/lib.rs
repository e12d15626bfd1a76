//! Layer storage: safe application of layer tars (whiteouts in overlayfs format) and overlay
//! snapshots, one read-only directory per layer chain and one writable upper per container.
//!
//! Owns the `snapshots/` directory. Knows nothing of image formats, registries or containers beyond
//! a snapshot key.
//!
//! Layout: `layers/<chain hex>/{fs/, meta.json}` (meta: parent chain, size), `active/<key>/{upper/,
//! work/, meta.json}`, `tmp/` for layers being unpacked (renamed into place when whole).

mod apply;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use apply::{apply_layer, ApplyOptions, LayerStats};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid layer archive: {0}")]
    Archive(String),
    #[error("layer {0} not found")]
    LayerNotFound(String),
    #[error("snapshot {0} not found")]
    SnapshotNotFound(String),
    #[error("layer {0} is in use by {1}")]
    InUse(String, String),
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

/// Sniffs gzip (1f 8b) and otherwise passes the stream through as a plain tar. zstd arrives with
/// registry pulls.
pub fn decompress<R: Read + Send + 'static>(r: R) -> Result<Box<dyn Read + Send>, Error> {
    let mut buf = std::io::BufReader::new(r);
    let head = std::io::BufRead::fill_buf(&mut buf).map_err(io("reading layer header"))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::GzDecoder::new(buf)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(Error::Archive("zstd-compressed layers are not supported yet".into()))
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
}

/// A layer being unpacked under `tmp/`; dropped without `commit`, it disappears.
pub struct PendingLayer<'a> {
    snapshotter: &'a Snapshotter,
    dir: PathBuf,
    parent: Option<String>,
    committed: bool,
}

fn hex_of(chain_id: &str) -> &str {
    chain_id.strip_prefix("sha256:").unwrap_or(chain_id)
}

impl Snapshotter {
    pub fn open(root: &Path) -> Result<Snapshotter, Error> {
        for d in ["layers", "active", "tmp"] {
            std::fs::create_dir_all(root.join(d)).map_err(io(format!("creating {}", root.join(d).display())))?;
        }
        // Half-unpacked layers from a crash.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(Snapshotter { root: root.to_path_buf() })
    }

    fn layer_dir(&self, chain_id: &str) -> PathBuf {
        self.root.join("layers").join(hex_of(chain_id))
    }
    fn active_dir(&self, key: &str) -> PathBuf {
        self.root.join("active").join(key)
    }

    pub fn has_layer(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id).join("meta.json").exists()
    }

    fn meta(dir: &Path) -> Result<Meta, Error> {
        let data = std::fs::read(dir.join("meta.json")).map_err(io(format!("reading {}/meta.json", dir.display())))?;
        serde_json::from_slice(&data).map_err(|e| Error::Archive(format!("corrupt {}/meta.json: {e}", dir.display())))
    }

    fn write_meta(dir: &Path, meta: &Meta) -> Result<(), Error> {
        let data = serde_json::to_vec(meta).map_err(|e| Error::Archive(e.to_string()))?;
        std::fs::write(dir.join("meta.json"), data).map_err(io(format!("writing {}/meta.json", dir.display())))
    }

    /// Starts unpacking a layer on top of `parent`; the chain id is given at `commit`, once the
    /// caller has hashed the whole stream.
    pub fn begin_layer(&self, parent: Option<&str>) -> Result<PendingLayer<'_>, Error> {
        if let Some(p) = parent {
            if !self.has_layer(p) {
                return Err(Error::LayerNotFound(p.to_string()));
            }
        }
        let dir = self.root.join("tmp").join(format!("{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(dir.join("fs")).map_err(io(format!("creating {}", dir.display())))?;
        Ok(PendingLayer { snapshotter: self, dir, parent: parent.map(String::from), committed: false })
    }

    /// Extracts a layer whose chain id is known up front (skips the work when it is already there).
    pub fn add_layer<R: Read>(&self, chain_id: &str, parent: Option<&str>, tar: R) -> Result<LayerStats, Error> {
        if self.has_layer(chain_id) {
            return Ok(LayerStats::default());
        }
        let mut pending = self.begin_layer(parent)?;
        let stats = pending.apply(tar)?;
        pending.commit(chain_id, stats.size)?;
        Ok(stats)
    }

    /// Lower dirs of a chain, top-most first.
    pub fn lowerdirs(&self, chain_id: &str) -> Result<Vec<PathBuf>, Error> {
        let mut out = Vec::new();
        let mut next = Some(chain_id.to_string());
        while let Some(id) = next {
            let dir = self.layer_dir(&id);
            if !dir.join("meta.json").exists() {
                return Err(Error::LayerNotFound(id));
            }
            next = Self::meta(&dir)?.parent;
            out.push(dir.join("fs"));
        }
        Ok(out)
    }

    /// Unpacked bytes of a chain (all its layers).
    pub fn chain_size(&self, chain_id: &str) -> u64 {
        let mut total = 0;
        let mut next = Some(chain_id.to_string());
        while let Some(id) = next {
            match Self::meta(&self.layer_dir(&id)) {
                Ok(m) => {
                    total += m.size;
                    next = m.parent;
                }
                Err(_) => break,
            }
        }
        total
    }

    /// A writable snapshot `key` over the chain `parent` (None: an empty root).
    pub fn prepare(&self, key: &str, parent: Option<&str>) -> Result<(), Error> {
        if let Some(p) = parent {
            if !self.has_layer(p) {
                return Err(Error::LayerNotFound(p.to_string()));
            }
        }
        let dir = self.active_dir(key);
        for d in ["upper", "work"] {
            std::fs::create_dir_all(dir.join(d)).map_err(io(format!("creating {}", dir.join(d).display())))?;
        }
        Self::write_meta(&dir, &Meta { parent: parent.map(String::from), size: 0 })
    }

    /// Mounts snapshot `key` at `target`: overlay over its layers, or a bind of the upper dir when
    /// there are none.
    pub fn mount(&self, key: &str, target: &Path) -> Result<(), Error> {
        use nix::mount::{mount, MsFlags};
        let dir = self.active_dir(key);
        if !dir.join("meta.json").exists() {
            return Err(Error::SnapshotNotFound(key.to_string()));
        }
        let meta = Self::meta(&dir)?;
        let lowers = match &meta.parent {
            Some(p) => self.lowerdirs(p)?,
            None => Vec::new(),
        };
        let upper = dir.join("upper");
        if lowers.is_empty() {
            return mount(Some(&upper), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                .map_err(|e| Error::Io { context: format!("bind-mounting {}", target.display()), source: e.into() });
        }
        let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            dir.join("work").display()
        );
        // The kernel takes one page of mount options; deep images need short names (docker's
        // overlay2 `l/` links) or the new mount API. Until multi-layer pulls land, say so plainly.
        if opts.len() >= 4096 {
            return Err(Error::Archive(format!("image has too many layers ({}) for one overlay mount", lowers.len())));
        }
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
            .map_err(|e| Error::Io { context: format!("mounting overlay at {}", target.display()), source: e.into() })
    }

    /// Detaches whatever is mounted at `target`; not mounted is fine.
    pub fn unmount(target: &Path) -> Result<(), Error> {
        match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::Io { context: format!("unmounting {}", target.display()), source: e.into() }),
        }
    }

    pub fn remove(&self, key: &str) -> Result<(), Error> {
        match std::fs::remove_dir_all(self.active_dir(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io { context: format!("removing snapshot {key}"), source: e }),
            _ => Ok(()),
        }
    }

    /// Removes a layer no other layer or snapshot builds on.
    pub fn remove_layer(&self, chain_id: &str) -> Result<(), Error> {
        for kind in ["layers", "active"] {
            if let Ok(entries) = std::fs::read_dir(self.root.join(kind)) {
                for e in entries.flatten() {
                    if let Ok(m) = Self::meta(&e.path()) {
                        if m.parent.as_deref().map(hex_of) == Some(hex_of(chain_id)) {
                            return Err(Error::InUse(chain_id.to_string(), e.file_name().to_string_lossy().into_owned()));
                        }
                    }
                }
            }
        }
        match std::fs::remove_dir_all(self.layer_dir(chain_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io { context: format!("removing layer {chain_id}"), source: e }),
            _ => Ok(()),
        }
    }

    /// Bytes written by the container (its upper dir).
    pub fn usage(&self, key: &str) -> Result<u64, Error> {
        Ok(du(&self.active_dir(key).join("upper")))
    }
}

fn du(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else { return 0 };
    if md.is_dir() {
        std::fs::read_dir(p).map(|es| es.flatten().map(|e| du(&e.path())).sum()).unwrap_or(0)
    } else {
        md.len()
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    t ^ N.fetch_add(1, Ordering::Relaxed).rotate_left(48)
}

impl PendingLayer<'_> {
    pub fn apply<R: Read>(&mut self, tar: R) -> Result<LayerStats, Error> {
        apply_layer(tar, &self.dir.join("fs"), &ApplyOptions::default())
    }

    /// Moves the unpacked layer into place as `chain_id`. A concurrent unpack of the same chain
    /// that won the race is kept and this copy dropped.
    pub fn commit(mut self, chain_id: &str, size: u64) -> Result<(), Error> {
        Snapshotter::write_meta(&self.dir, &Meta { parent: self.parent.clone(), size })?;
        let dest = self.snapshotter.layer_dir(chain_id);
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
