//! The image store: one record per image (`images/<id hex>.json`, written tmp + fsync + rename),
//! tags and repo digests, lookup by name or id, `rmi` and garbage collection.
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{chain_ids, ContentStore, Digest, Error, Image, Reference, Removed};

/// What is persisted per image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: Digest,
    /// Normalised names: `docker.io/library/bb:1`.
    pub tags: Vec<String>,
    /// Normalised `repo@sha256:…` names.
    #[serde(default)]
    pub digests: Vec<String>,
    pub manifest: Digest,
    /// Layer blobs as the manifest names them (compressed for pulled images).
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
    pub created: Option<String>,
    pub size: u64,
}

impl Record {
    fn chains(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids)
    }
    fn names(&self) -> impl Iterator<Item = &String> {
        self.tags.iter().chain(self.digests.iter())
    }
}

/// A record with its parsed config, kept in memory so `list` reads no files.
#[derive(Clone)]
struct Entry {
    record: Record,
    config: oci_spec::image::ImageConfiguration,
}

pub struct ImageStore {
    root: PathBuf,
    pub(crate) content: ContentStore,
    pub(crate) snapshots: Arc<snapshot::Snapshotter>,
    entries: RwLock<HashMap<Digest, Entry>>,
    /// Held shared while content is being added (import, pull) and exclusively by GC, so GC never
    /// deletes blobs or layers that an image is about to reference.
    pub(crate) ingest: RwLock<()>,
}

fn familiar(name: &str) -> String {
    name.parse::<Reference>().map(|r| r.familiar()).unwrap_or_else(|_| name.to_string())
}

impl ImageStore {
    pub fn open(root: &Path, snapshots: Arc<snapshot::Snapshotter>) -> Result<ImageStore, Error> {
        let content = ContentStore::open(root)?;
        let dir = root.join("images");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut entries = HashMap::new();
        for file in std::fs::read_dir(&dir).map_err(|e| Error::io("listing images", e))?.flatten() {
            let path = file.path();
            if path.extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let loaded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|data| serde_json::from_slice::<Record>(&data).map_err(|e| e.to_string()))
                .and_then(|record| load_config(&content, &record).map_err(|e| e.to_string()).map(|config| Entry { record, config }));
            match loaded {
                Ok(entry) => {
                    entries.insert(entry.record.id.clone(), entry);
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping unreadable image record"),
            }
        }
        Ok(ImageStore { root: root.to_path_buf(), content, snapshots, entries: RwLock::new(entries), ingest: RwLock::new(()) })
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<Digest, Entry>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Digest, Entry>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    /// Persists a record (tmp + fsync + rename); callers hold the write lock.
    fn save(&self, r: &Record) -> Result<(), Error> {
        let path = self.record_path(&r.id);
        let tmp = path.with_extension("tmp");
        let data = serde_json::to_vec_pretty(r).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        f.write_all(&data).and_then(|()| f.sync_all()).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
    }

    fn to_image(&self, e: &Entry) -> Image {
        let r = &e.record;
        Image {
            id: r.id.clone(),
            repo_tags: r.tags.iter().map(|t| familiar(t)).collect(),
            repo_digests: r.digests.iter().map(|t| familiar(t)).collect(),
            manifest_digest: r.manifest.clone(),
            config: e.config.clone(),
            created: r.created.clone(),
            size: r.size,
            top_chain_id: r.chains().last().map(|d| d.to_string()),
        }
    }

    /// Makes an image of a manifest already in the content store whose layers are already in the
    /// snapshotter (what import, pull and load end with), and tags it with `reference`.
    pub fn register(&self, manifest: &Digest, reference: Option<&Reference>) -> Result<Image, Error> {
        let m: Value = serde_json::from_slice(&self.content.read(manifest)?).map_err(|e| Error::Corrupt(format!("manifest {manifest}: {e}")))?;
        let digest_at = |v: &Value| -> Result<Digest, Error> {
            v["digest"].as_str().ok_or_else(|| Error::Corrupt(format!("manifest {manifest}: descriptor without a digest")))?.parse()
        };
        let id = digest_at(&m["config"])?;
        let layers = m["layers"].as_array().map(|ls| ls.iter().map(digest_at).collect::<Result<Vec<_>, _>>()).transpose()?.unwrap_or_default();
        let config_json: Value = serde_json::from_slice(&self.content.read(&id)?).map_err(|e| Error::Corrupt(format!("config {id}: {e}")))?;
        let diff_ids: Vec<Digest> = serde_json::from_value(config_json["rootfs"]["diff_ids"].clone()).unwrap_or_default();
        if diff_ids.len() != layers.len() {
            return Err(Error::Corrupt(format!("image {id}: {} layers but {} diff ids", layers.len(), diff_ids.len())));
        }
        let size = match chain_ids(&diff_ids).last() {
            Some(top) => self.snapshots.chain_size(&top.to_string())?,
            None => 0,
        };
        let record = Record {
            id: id.clone(),
            tags: Vec::new(),
            digests: Vec::new(),
            manifest: manifest.clone(),
            layers,
            diff_ids,
            created: config_json["created"].as_str().map(String::from),
            size,
        };
        let config = load_config(&self.content, &record)?;
        {
            let mut entries = self.write();
            // Re-registering keeps the names the image already has.
            let (tags, digests) = entries.get(&id).map(|e| (e.record.tags.clone(), e.record.digests.clone())).unwrap_or_default();
            let record = Record { tags, digests, ..record };
            self.save(&record)?;
            entries.insert(id.clone(), Entry { record, config });
        }
        if let Some(r) = reference {
            self.tag(&id.to_string(), r)?;
        }
        self.get(&id.to_string())
    }

    /// The image `name` means and whether it was named (tag or digest reference) rather than by id.
    fn find(&self, entries: &HashMap<Digest, Entry>, name: &str) -> Result<(Digest, bool), Error> {
        if let Ok(d) = name.parse::<Digest>() {
            if entries.contains_key(&d) {
                return Ok((d, false));
            }
        }
        if let Ok(r) = name.parse::<Reference>() {
            let full = r.to_string();
            if let Some(e) = entries.values().find(|e| e.record.names().any(|n| *n == full)) {
                return Ok((e.record.id.clone(), true));
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            let mut hits = entries.keys().filter(|d| d.hex().starts_with(hex));
            match (hits.next(), hits.next()) {
                (Some(d), None) => return Ok((d.clone(), false)),
                (Some(_), Some(_)) => return Err(Error::Ambiguous(name.to_string())),
                _ => {}
            }
        }
        Err(Error::NotFound(name.to_string()))
    }

    /// Held while new content is written outside `import` (a pull, a load): garbage collection
    /// waits for it, so blobs and layers not yet referenced by an image are not collected.
    pub fn ingest_lease(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.ingest.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The snapshotter holding this store's layers.
    pub fn snapshots(&self) -> &std::sync::Arc<snapshot::Snapshotter> {
        &self.snapshots
    }

    /// By familiar or full name (tag or digest), full id, hex id or unique id prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Image, Error> {
        let entries = self.read();
        let (id, _) = self.find(&entries, name_or_id)?;
        entries.get(&id).map(|e| self.to_image(e)).ok_or_else(|| Error::NotFound(name_or_id.to_string()))
    }

    /// Every image, newest first (as `docker images` lists them).
    pub fn list(&self) -> Vec<Image> {
        let mut out: Vec<Image> = self.read().values().map(|e| self.to_image(e)).collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// Points `target` at the image `name_or_id`, moving the name off any other image.
    pub fn tag(&self, name_or_id: &str, target: &Reference) -> Result<(), Error> {
        if target.digest.is_some() || target.tag.is_none() {
            return Err(Error::InvalidReference { reference: target.familiar(), reason: "a tag cannot name a digest".into() });
        }
        let full = target.to_string();
        let mut entries = self.write();
        let (id, _) = self.find(&entries, name_or_id)?;
        for e in entries.values_mut() {
            if e.record.id != id && e.record.tags.contains(&full) {
                e.record.tags.retain(|t| *t != full);
                self.save(&e.record)?;
            }
        }
        if let Some(e) = entries.get_mut(&id) {
            if !e.record.tags.contains(&full) {
                e.record.tags.push(full);
                self.save(&e.record)?;
            }
        }
        Ok(())
    }

    /// Records `repo@digest` names for an image (pull and push set these).
    pub fn add_repo_digest(&self, id: &Digest, name: &Reference) -> Result<(), Error> {
        let mut entries = self.write();
        let e = entries.get_mut(id).ok_or_else(|| Error::NotFound(id.to_string()))?;
        let full = name.to_string();
        if name.digest.is_some() && !e.record.digests.contains(&full) {
            e.record.digests.push(full);
            self.save(&e.record)?;
        }
        Ok(())
    }

    /// Docker's `rmi`: a name untags; the last tag, or an id, deletes the image and whatever of its
    /// layers and blobs no other image uses. By id, an image with several tags needs `force`;
    /// an image `in_use` by a container needs `force` too (the caller refuses running ones).
    pub fn remove(&self, name_or_id: &str, force: bool, in_use: &dyn Fn(&Digest) -> bool) -> Result<Vec<Removed>, Error> {
        let mut entries = self.write();
        let (id, by_name) = self.find(&entries, name_or_id)?;
        let mut record = entries.get(&id).map(|e| e.record.clone()).ok_or_else(|| Error::NotFound(name_or_id.to_string()))?;
        let mut out = Vec::new();
        if by_name {
            let full = name_or_id.parse::<Reference>().map(|r| r.to_string()).map_err(|_| Error::NotFound(name_or_id.to_string()))?;
            let last = record.tags.iter().all(|t| *t == full);
            if last && !force && in_use(&id) {
                return Err(Error::Conflict(format!(
                    "unable to remove repository reference {:?} (must force) - a container is using its referenced image {}",
                    familiar(&full),
                    id.short()
                )));
            }
            record.tags.retain(|t| *t != full);
            record.digests.retain(|t| *t != full);
            out.push(Removed::Untagged(familiar(&full)));
            if !record.tags.is_empty() {
                self.save(&record)?;
                if let Some(e) = entries.get_mut(&id) {
                    e.record = record;
                }
                return Ok(out);
            }
        } else if !force {
            if record.tags.len() > 1 {
                return Err(Error::Conflict(format!("unable to delete {} (must be forced) - image is referenced in multiple repositories", id.short())));
            }
            if in_use(&id) {
                return Err(Error::Conflict(format!("unable to delete {} (must be forced) - image is being used by a container", id.short())));
            }
        }
        out.extend(record.names().map(|n| Removed::Untagged(familiar(n))));
        let path = self.record_path(&id);
        std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        entries.remove(&id);
        out.push(Removed::Deleted(id));
        out.extend(self.release(&entries, &record).into_iter().map(Removed::Deleted));
        Ok(out)
    }

    /// Drops the blobs and layers of a deleted image that no remaining image shares; returns the
    /// chain ids of the layers removed. A layer a container still builds on stays (GC gets it later).
    fn release(&self, entries: &HashMap<Digest, Entry>, gone: &Record) -> Vec<Digest> {
        let used_blobs: HashSet<&Digest> = entries.values().flat_map(|e| [&e.record.id, &e.record.manifest].into_iter().chain(e.record.layers.iter())).collect();
        for d in [&gone.id, &gone.manifest].into_iter().chain(gone.layers.iter()) {
            if !used_blobs.contains(d) {
                if let Err(e) = self.content.remove(d) {
                    tracing::warn!(blob = %d, error = %e, "cannot remove blob");
                }
            }
        }
        let used_chains: HashSet<Digest> = entries.values().flat_map(|e| e.record.chains()).collect();
        let mut removed = Vec::new();
        for c in gone.chains().iter().rev() {
            if used_chains.contains(c) {
                break;
            }
            match self.snapshots.remove_layer(&c.to_string()) {
                Ok(()) => removed.push(c.clone()),
                Err(e) => {
                    tracing::debug!(layer = %c, error = %e, "layer kept");
                    break;
                }
            }
        }
        removed
    }

    /// Removes every blob and layer no image references (and no container builds on); returns
    /// what went. Waits for imports and pulls in flight.
    pub fn collect_garbage(&self) -> Result<Vec<Digest>, Error> {
        let _exclusive = self.ingest.write().unwrap_or_else(|p| p.into_inner());
        let entries = self.read();
        let blobs: HashSet<Digest> = entries.values().flat_map(|e| [e.record.id.clone(), e.record.manifest.clone()].into_iter().chain(e.record.layers.iter().cloned())).collect();
        let chains: HashSet<String> = entries.values().flat_map(|e| e.record.chains()).map(|c| c.to_string()).collect();
        let mut removed = Vec::new();
        for d in self.content.list().into_iter().filter(|d| !blobs.contains(d)) {
            self.content.remove(&d)?;
            removed.push(d);
        }
        // Children before parents: repeat while a pass frees something.
        loop {
            let mut freed = false;
            for layer in self.snapshots.layers().into_iter().filter(|l| !chains.contains(l)) {
                if self.snapshots.remove_layer(&layer).is_ok() {
                    freed = true;
                    removed.extend(layer.parse::<Digest>().ok());
                }
            }
            if !freed {
                return Ok(removed);
            }
        }
    }
}

fn load_config(content: &ContentStore, r: &Record) -> Result<oci_spec::image::ImageConfiguration, Error> {
    let data = content.read(&r.id)?;
    serde_json::from_slice(&data).map_err(|e| Error::Corrupt(format!("config {}: {e}", r.id)))
}
