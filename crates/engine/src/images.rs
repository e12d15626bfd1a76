//! Image operations the API exposes, with the container checks the image store cannot make itself.
use std::io::Read;

use crate::error::{Error, Result};
use crate::{blocking, Engine};

/// `POST /images/create?fromSrc=-`.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    /// `repo[:tag]`, may be empty (an untagged image).
    pub repo: String,
    pub tag: String,
    pub message: String,
    pub changes: Vec<String>,
}

impl ImportRequest {
    fn reference(&self) -> Result<Option<image::Reference>> {
        if self.repo.is_empty() {
            return Ok(None);
        }
        let full = if self.tag.is_empty() { self.repo.clone() } else { format!("{}:{}", self.repo, self.tag) };
        full.parse::<image::Reference>().map(Some).map_err(|e| Error::InvalidArgument(e.to_string()))
    }
}

impl Engine {
    /// Imports a root filesystem tarball (plain or gzip) as a one-layer image.
    pub async fn import_image(&self, body: Box<dyn Read + Send>, req: ImportRequest) -> Result<image::Image> {
        let reference = req.reference()?;
        let engine = self.clone();
        blocking(move || {
            let opts = image::ImportOptions { message: req.message.clone(), changes: req.changes.clone() };
            Ok(engine.inner.images.import(body, reference.as_ref(), &opts)?)
        })
        .await
    }

    pub fn images(&self) -> Vec<image::Image> {
        self.inner.images.list()
    }

    pub fn image(&self, name: &str) -> Result<image::Image> {
        self.inner.images.get(name).map_err(|e| match e {
            image::Error::NotFound(_) => Error::NotFound { kind: "image", name: name.to_string() },
            other => other.into(),
        })
    }

    /// Number of containers created from an image (ImageSummary.Containers).
    pub fn image_users(&self, id: &str) -> usize {
        self.containers().iter().filter(|c| c.image == id).count()
    }

    pub async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        self.image(source)?;
        let full = if tag.is_empty() { repo.to_string() } else { format!("{repo}:{tag}") };
        let target: image::Reference = full.parse().map_err(|e: image::Error| Error::InvalidArgument(e.to_string()))?;
        let engine = self.clone();
        let source = source.to_string();
        blocking(move || Ok(engine.inner.images.tag(&source, &target)?)).await
    }

    /// `DELETE /images/{name}`: refuses while a container uses the image (unless forced and only
    /// stopped containers use it), as Docker does.
    pub async fn remove_image(&self, name: &str, force: bool) -> Result<Vec<image::Removed>> {
        let img = self.image(name)?;
        let id = img.id.to_string();
        let users: Vec<_> = self.containers().into_iter().filter(|c| c.image == id).collect();
        if let Some(running) = users.iter().find(|c| c.state.running()) {
            return Err(Error::Conflict(format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                short(&id), short(&running.id)
            )));
        }
        let by_name = !id.ends_with(name.trim_start_matches("sha256:")) || name.contains(':') && !name.starts_with("sha256:");
        let last_name = img.repo_tags.len() <= 1;
        if let Some(user) = users.first() {
            if !force && (last_name || !by_name) {
                return Err(Error::Conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                    short(&user.id), short(&id)
                )));
            }
        }
        let engine = self.clone();
        let name = name.to_string();
        let user_ids: Vec<String> = users.iter().map(|c| c.image.clone()).collect();
        blocking(move || {
            let in_use = |d: &image::Digest| user_ids.iter().any(|u| *u == d.to_string());
            Ok(engine.inner.images.remove(&name, force, &in_use)?)
        })
        .await
    }
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// One row of `docker history`, newest first.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryEntry {
    /// The image id on the newest row, `<missing>` below it (as Docker shows pulled images).
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub tags: Option<Vec<String>>,
    pub size: u64,
    pub comment: String,
}

/// What `image prune` removed.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub removed: Vec<image::Removed>,
    pub reclaimed: u64,
}

impl Engine {
    /// Writes the images as one archive (Docker 25's format) to `out`, on a blocking thread.
    pub async fn save_images(&self, names: Vec<String>, out: impl std::io::Write + Send + 'static) -> Result<()> {
        for n in &names {
            self.image(n)?;
        }
        let engine = self.clone();
        blocking(move || Ok(engine.inner.images.save_archive(&names, out)?)).await
    }

    /// Loads an archive; returns Docker's lines (`Loaded image: bb:1`, `Loaded image ID: sha256:…`).
    pub async fn load_images(&self, body: Box<dyn Read + Send>) -> Result<Vec<String>> {
        let engine = self.clone();
        blocking(move || {
            let loaded = engine.inner.images.load_archive(body);
            // Blobs of a refused archive, and the structure of an accepted one, are garbage now.
            if let Err(e) = engine.inner.images.collect_garbage() {
                tracing::warn!(error = %e, "collecting garbage after a load");
            }
            let loaded = loaded.map_err(|e| match e {
                image::Error::InvalidArchive(m) => Error::InvalidArgument(format!("invalid image archive: {m}")),
                other => other.into(),
            })?;
            let mut lines = Vec::new();
            for (img, tags) in loaded {
                if tags.is_empty() {
                    lines.push(format!("Loaded image ID: {}", img.id));
                }
                lines.extend(tags.iter().map(|t| format!("Loaded image: {t}")));
            }
            Ok(lines)
        })
        .await
    }

    /// The image's history from its config, newest first, with each layer's unpacked size.
    pub fn image_history(&self, name: &str) -> Result<Vec<HistoryEntry>> {
        let img = self.image(name)?;
        // Sizes from the base up: each chain's size minus its parent's.
        let diff_ids = img.config.rootfs().diff_ids().iter().filter_map(|d| d.parse::<image::Digest>().ok()).collect::<Vec<_>>();
        let mut layer_sizes: Vec<u64> = Vec::new();
        let mut below = 0;
        for c in image::chain_ids(&diff_ids) {
            let total = self.inner.snapshots.chain_size(&c.to_string()).unwrap_or(below);
            layer_sizes.push(total.saturating_sub(below));
            below = total;
        }
        let mut sizes = layer_sizes.into_iter();
        let mut rows: Vec<HistoryEntry> = Vec::new();
        let history = img.config.history().clone().unwrap_or_default();
        for h in &history {
            let empty = h.empty_layer().unwrap_or(false);
            let created = h.created().as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()).map(|t| t.timestamp()).unwrap_or(0);
            rows.push(HistoryEntry {
                id: "<missing>".into(),
                created,
                created_by: h.created_by().clone().unwrap_or_default(),
                tags: None,
                size: if empty { 0 } else { sizes.next().unwrap_or(0) },
                comment: h.comment().clone().unwrap_or_default(),
            });
        }
        // Layers the history does not describe (hand-made configs) still get a row each.
        for size in sizes {
            rows.push(HistoryEntry { id: "<missing>".into(), created: 0, created_by: String::new(), tags: None, size, comment: String::new() });
        }
        rows.reverse();
        if let Some(first) = rows.first_mut() {
            first.id = img.id.to_string();
            first.tags = Some(img.repo_tags.clone());
        }
        Ok(rows)
    }

    /// `image prune`: dangling images (no tag), or with `all` every image no container uses.
    pub async fn prune_images(&self, all: bool) -> Result<Pruned> {
        let used: std::collections::HashSet<String> = self.containers().into_iter().map(|c| c.image).collect();
        let mut pruned = Pruned::default();
        for img in self.images() {
            let id = img.id.to_string();
            if used.contains(&id) || (!all && !img.repo_tags.is_empty()) {
                continue;
            }
            let size = img.size;
            let engine = self.clone();
            let removed = blocking(move || Ok(engine.inner.images.remove(&id, true, &|_| false)?)).await?;
            if removed.iter().any(|r| matches!(r, image::Removed::Deleted(_))) {
                pruned.reclaimed += size;
            }
            pruned.removed.extend(removed);
        }
        Ok(pruned)
    }
}
