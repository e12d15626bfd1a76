//! Images: references and digests, the content store (blobs by sha256), the image store (records
//! and tags, persisted atomically) and `import` of a root filesystem tarball. Layers are unpacked
//! into the `snapshot` crate's store, keyed by chain id (OCI image spec).
//!
//! Owns the `image/` directory. Knows nothing of containers: callers say which images are in use.
//! Registry pull/push and save/load build on these same pieces in the images issue.

mod changes;
mod content;
mod reference;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub use content::{BlobWriter, ContentStore};
pub use reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Docker's wording, which clients match on.
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("invalid --change: {0}")]
    InvalidChange(String),
    #[error("{0}")]
    Snapshot(#[from] snapshot::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt image store: {0}")]
    Corrupt(String),
}

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// A sha256 digest, `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn from_hex(hex: &str) -> Digest {
        Digest(format!("sha256:{hex}"))
    }
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest::from_hex(&hex::encode(Sha256::digest(data)))
    }
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let hex = s.strip_prefix("sha256:").unwrap_or("");
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Digest(s.to_string()))
        } else {
            Err(Error::InvalidReference { reference: s.to_string(), reason: "a digest is sha256: and 64 lowercase hex digits".into() })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// OCI chain id of a layer on top of `parent`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// History comment (`docker import -m`).
    pub message: String,
    /// Dockerfile instructions applied to the config (`docker import -c 'CMD ["sh"]'`).
    pub changes: Vec<String>,
}

/// What `rmi` did, in Docker's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

/// An image as callers see it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Config digest: Docker's image id.
    pub id: Digest,
    /// Familiar names: `bb:1`.
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub manifest_digest: Digest,
    pub config: oci_spec::image::ImageConfiguration,
    pub created: Option<String>,
    /// Unpacked bytes of all layers.
    pub size: u64,
    pub top_chain_id: Option<String>,
}

/// What is persisted per image (`images/<hex>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: Digest,
    /// Normalised names: `docker.io/library/bb:1`.
    tags: Vec<String>,
    digests: Vec<String>,
    manifest: Digest,
    layers: Vec<Digest>,
    diff_ids: Vec<Digest>,
    created: Option<String>,
    size: u64,
}

impl Record {
    fn top_chain(&self) -> Option<Digest> {
        self.diff_ids.iter().fold(None, |parent, d| Some(chain_id(parent.as_ref(), d)))
    }
}

pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    snapshots: Arc<snapshot::Snapshotter>,
    records: RwLock<HashMap<Digest, Record>>,
}

fn familiar(name: &str) -> String {
    name.parse::<Reference>().map(|r| r.familiar()).unwrap_or_else(|_| name.to_string())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl ImageStore {
    pub fn open(root: &Path, snapshots: Arc<snapshot::Snapshotter>) -> Result<ImageStore, Error> {
        let content = ContentStore::open(root)?;
        let dir = root.join("images");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut records = HashMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("listing images", e))?.flatten() {
            if entry.path().extension().is_some_and(|x| x == "json") {
                let data = std::fs::read(entry.path()).map_err(|e| Error::io("reading image record", e))?;
                match serde_json::from_slice::<Record>(&data) {
                    Ok(r) => {
                        records.insert(r.id.clone(), r);
                    }
                    Err(e) => tracing::warn!(path = %entry.path().display(), error = %e, "skipping unreadable image record"),
                }
            }
        }
        Ok(ImageStore { root: root.to_path_buf(), content, snapshots, records: RwLock::new(records) })
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    fn read_records(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Digest, Record>> {
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_records(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Digest, Record>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, r: &Record) -> Result<(), Error> {
        let path = self.root.join("images").join(format!("{}.json", r.id.hex()));
        let tmp = path.with_extension("tmp");
        let data = serde_json::to_vec_pretty(r).map_err(|e| Error::Corrupt(e.to_string()))?;
        std::fs::write(&tmp, data).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
    }

    fn to_image(&self, r: &Record) -> Result<Image, Error> {
        let data = self.content.read(&r.id)?;
        let config = serde_json::from_slice(&data).map_err(|e| Error::Corrupt(format!("config {}: {e}", r.id)))?;
        Ok(Image {
            id: r.id.clone(),
            repo_tags: r.tags.iter().map(|t| familiar(t)).collect(),
            repo_digests: r.digests.iter().map(|t| familiar(t)).collect(),
            manifest_digest: r.manifest.clone(),
            config,
            created: r.created.clone(),
            size: r.size,
            top_chain_id: r.top_chain().map(|d| d.to_string()),
        })
    }

    /// Imports a root filesystem tar (plain or gzip) as a one-layer image, in one pass: the stream is
    /// hashed, stored as the layer blob and unpacked at once.
    pub fn import<R: Read + Send + 'static>(&self, tar: R, reference: Option<&Reference>, opts: &ImportOptions) -> Result<Image, Error> {
        let mut plain = snapshot::decompress(tar)?;
        let mut blob = self.content.writer()?;
        let mut pending = self.snapshots.begin_layer(None)?;
        let stats = {
            let mut tee = Tee { inner: &mut plain, sink: &mut blob };
            let stats = pending.apply(&mut tee)?;
            // The archive's end blocks and any padding belong to the layer's bytes too.
            std::io::copy(&mut tee, &mut std::io::sink()).map_err(|e| Error::io("reading the tarball", e))?;
            stats
        };
        let layer_size = blob.size();
        let diff_id = blob.commit(None)?;
        pending.commit(&chain_id(None, &diff_id).to_string(), stats.size)?;

        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut run_config = json!({});
        for change in &opts.changes {
            changes::apply(&mut run_config, change)?;
        }
        let comment = if opts.message.is_empty() { "Imported from -".to_string() } else { opts.message.clone() };
        let config = json!({
            "created": created,
            "architecture": host_arch(),
            "os": "linux",
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "history": [{"created": created, "created_by": "berth import", "comment": comment}],
        });
        let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::Corrupt(e.to_string()))?;
        let config_digest = self.content.put(&config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff_id.to_string(), "size": layer_size}],
        });
        let manifest_digest = self.content.put(&serde_json::to_vec(&manifest).map_err(|e| Error::Corrupt(e.to_string()))?)?;
        let record = Record {
            id: config_digest.clone(),
            tags: Vec::new(),
            digests: Vec::new(),
            manifest: manifest_digest,
            layers: vec![diff_id.clone()],
            diff_ids: vec![diff_id],
            created: Some(created),
            size: stats.size,
        };
        self.save(&record)?;
        self.write_records().insert(config_digest.clone(), record);
        if let Some(r) = reference {
            self.tag(&config_digest.to_string(), r)?;
        }
        self.get(&config_digest.to_string())
    }

    /// Finds the record `name` means: a reference, a full id, or a unique id prefix.
    fn find(&self, name: &str) -> Result<(Digest, bool), Error> {
        let records = self.read_records();
        if let Ok(d) = name.parse::<Digest>() {
            if records.contains_key(&d) {
                return Ok((d, false));
            }
        }
        if let Ok(r) = name.parse::<Reference>() {
            let full = r.to_string();
            if let Some(rec) = records.values().find(|rec| rec.tags.contains(&full) || rec.digests.contains(&full)) {
                return Ok((rec.id.clone(), true));
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits = records.keys().filter(|d| d.hex().starts_with(hex));
            if let (Some(d), None) = (hits.next(), hits.next()) {
                return Ok((d.clone(), false));
            }
        }
        Err(Error::NotFound(name.to_string()))
    }

    pub fn get(&self, name_or_id: &str) -> Result<Image, Error> {
        let (id, _) = self.find(name_or_id)?;
        let rec = self.read_records().get(&id).cloned().ok_or_else(|| Error::NotFound(name_or_id.to_string()))?;
        self.to_image(&rec)
    }

    pub fn list(&self) -> Vec<Image> {
        let recs: Vec<Record> = self.read_records().values().cloned().collect();
        recs.iter().filter_map(|r| self.to_image(r).ok()).collect()
    }

    /// Points `target` at the image `name_or_id` (moving it off any other image).
    pub fn tag(&self, name_or_id: &str, target: &Reference) -> Result<(), Error> {
        let (id, _) = self.find(name_or_id)?;
        let full = target.to_string();
        let mut records = self.write_records();
        let mut changed = Vec::new();
        for rec in records.values_mut() {
            if rec.id != id && rec.tags.contains(&full) {
                rec.tags.retain(|t| *t != full);
                changed.push(rec.clone());
            }
        }
        if let Some(rec) = records.get_mut(&id) {
            if !rec.tags.contains(&full) {
                rec.tags.push(full);
            }
            changed.push(rec.clone());
        }
        drop(records);
        changed.iter().try_for_each(|r| self.save(r))
    }

    /// Docker's `rmi`: a name untags; the last name, or an id, deletes the image and whatever of its
    /// layers and blobs no other image uses.
    pub fn remove(&self, name_or_id: &str, force: bool, in_use: &dyn Fn(&Digest) -> bool) -> Result<Vec<Removed>, Error> {
        let (id, by_name) = self.find(name_or_id)?;
        let mut rec = self.read_records().get(&id).cloned().ok_or_else(|| Error::NotFound(name_or_id.to_string()))?;
        let short = &id.hex()[..12];
        if by_name && rec.tags.len() > 1 {
            let full = name_or_id.parse::<Reference>().map(|r| r.to_string()).unwrap_or_default();
            rec.tags.retain(|t| *t != full);
            self.save(&rec)?;
            self.write_records().insert(id, rec);
            return Ok(vec![Removed::Untagged(familiar(&full))]);
        }
        if !by_name && rec.tags.len() > 1 && !force {
            return Err(Error::Conflict(format!(
                "unable to delete {short} (must be forced) - image is referenced in multiple repositories"
            )));
        }
        if in_use(&id) && !force {
            return Err(Error::Conflict(format!("unable to delete {short} (must be forced) - image is being used by a container")));
        }
        let mut out: Vec<Removed> = rec.tags.iter().chain(rec.digests.iter()).map(|t| Removed::Untagged(familiar(t))).collect();
        self.write_records().remove(&id);
        let path = self.root.join("images").join(format!("{}.json", id.hex()));
        std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        self.collect_garbage(&rec);
        out.push(Removed::Deleted(id));
        rec.tags.clear();
        Ok(out)
    }

    /// Drops the blobs and layer snapshots of a deleted image that no remaining image shares.
    fn collect_garbage(&self, gone: &Record) {
        let records = self.read_records();
        let used = |d: &Digest| records.values().any(|r| r.id == *d || r.manifest == *d || r.layers.contains(d));
        for d in std::iter::once(&gone.id).chain(std::iter::once(&gone.manifest)).chain(gone.layers.iter()) {
            if !used(d) {
                let _ = self.content.remove(d);
            }
        }
        let mut chains = Vec::new();
        let mut parent: Option<Digest> = None;
        for d in &gone.diff_ids {
            let c = chain_id(parent.as_ref(), d);
            chains.push(c.clone());
            parent = Some(c);
        }
        let chain_used = |c: &Digest| {
            records.values().any(|r| {
                let mut p: Option<Digest> = None;
                r.diff_ids.iter().any(|d| {
                    let x = chain_id(p.as_ref(), d);
                    p = Some(x.clone());
                    x == *c
                })
            })
        };
        for c in chains.iter().rev() {
            if !chain_used(c) {
                if let Err(e) = self.snapshots.remove_layer(&c.to_string()) {
                    tracing::debug!(layer = %c, error = %e, "layer kept");
                    break;
                }
            }
        }
    }
}

/// Copies what is read into a blob writer.
struct Tee<'a, R: Read, W: std::io::Write> {
    inner: &'a mut R,
    sink: &'a mut W,
}

impl<R: Read, W: std::io::Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
