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
