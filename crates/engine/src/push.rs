//! `docker push`: every layer the registry lacks is mounted from another repository of the same
//! registry the image came from, or uploaded (streamed from the content store); then the config
//! and the manifest. Layers go at once, Docker's progress messages say which way each went.

use std::sync::Arc;

use futures_util::StreamExt;
use image::{Digest, Reference};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::pull::Progress;
use crate::Engine;

const PARALLEL_UPLOADS: usize = 4;
/// Blobs above this go up in PATCHes of this size (registries behind proxies limit request
/// sizes); smaller ones in one streamed PUT. `BERTH_PUSH_CHUNK` overrides it (tests use it).
const DEFAULT_UPLOAD_CHUNK: u64 = 64 << 20;

fn upload_chunk() -> u64 {
    std::env::var("BERTH_PUSH_CHUNK").ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(DEFAULT_UPLOAD_CHUNK)
}

/// A blob to make present in the target repository.
struct Upload {
    digest: Digest,
    size: u64,
    short: String,
    /// Repositories of the same registry the image was pulled from or pushed to.
    mount_from: Vec<String>,
}

impl Engine {
    /// Pushes `name` (a tag; with `tag` empty, the name's own or every tag of the repository as
    /// Docker does for `push repo` — here: the name's tag, default `latest`).
    pub async fn push_image(&self, name: &str, tag: &str, creds: Option<registry::Credentials>, progress: mpsc::Sender<Progress>) -> Result<Digest> {
        let full = if tag.is_empty() { name.to_string() } else { format!("{name}:{tag}") };
        let reference: Reference = full.parse().map_err(|e: image::Error| Error::InvalidArgument(e.to_string()))?;
        let img = self.image(&reference.familiar())?;
        let creds = creds.or_else(|| registry::load_credentials(&reference.domain));
        let client = self.registry()?;
        let label = reference.tag.clone().unwrap_or_else(|| "latest".into());
        let _ = progress.send(Progress { status: format!("The push refers to repository [{}]", reference.repository()), id: None, current: None, total: None }).await;
        let content = self.inner.images.content();
        let manifest_bytes = content.read(&img.manifest_digest)?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| Error::Internal(format!("manifest of {}: {e}", reference.familiar())))?;
        let media_type = manifest["mediaType"].as_str().unwrap_or(registry::OCI_MANIFEST).to_string();
        let mount_from: Vec<String> = img
            .repo_digests
            .iter()
            .chain(img.repo_tags.iter())
            .filter_map(|n| n.parse::<Reference>().ok())
            .filter(|r| r.domain == reference.domain && r.path != reference.path)
            .map(|r| r.path)
            .collect();
        let descriptor = |v: &Value| -> Result<Upload> {
            let digest: Digest = v["digest"].as_str().unwrap_or_default().parse().map_err(|e| Error::Internal(format!("manifest of {}: {e}", reference.familiar())))?;
            Ok(Upload { short: digest.hex().chars().take(12).collect(), size: v["size"].as_u64().unwrap_or(0), digest, mount_from: mount_from.clone() })
        };
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default().iter().map(descriptor).collect::<Result<Vec<_>>>()?;
        for l in layers.iter().rev() {
            let _ = progress.send(Progress { status: "Preparing".into(), id: Some(l.short.clone()), current: None, total: None }).await;
        }
        let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL_UPLOADS));
        let mut tasks = Vec::new();
        for l in layers.into_iter().rev() {
            let (engine, reference, creds, progress, gate) = (self.clone(), reference.clone(), creds.clone(), progress.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = gate.acquire_owned().await;
                engine.push_blob(&reference, creds.as_ref(), l, Some(&progress)).await
            }));
        }
        for t in tasks {
            t.await.map_err(|e| Error::Internal(e.to_string()))??;
        }
        let config = descriptor(&manifest["config"])?;
        self.push_blob(&reference, creds.as_ref(), config, None).await?;
        let digest = client.put_manifest(&reference, &label, manifest_bytes.clone(), &media_type, creds.as_ref()).await?;
        let engine = self.clone();
        let (id, pinned) = (img.id.clone(), reference.with_digest(&digest));
        crate::blocking(move || Ok(engine.inner.images.add_repo_digest(&id, &pinned)?)).await?;
        let _ = progress
            .send(Progress { status: format!("{label}: digest: {digest} size: {}", manifest_bytes.len()), id: None, current: None, total: None })
            .await;
        Ok(digest)
    }

    /// `docker login`'s check: the registry accepts these credentials.
    pub async fn check_login(&self, domain: &str, creds: &registry::Credentials) -> Result<()> {
        Ok(self.registry()?.ping(domain, Some(creds)).await?)
    }

    /// Makes one blob present in the repository: already there, mounted, or uploaded.
    async fn push_blob(&self, reference: &Reference, creds: Option<&registry::Credentials>, blob: Upload, progress: Option<&mpsc::Sender<Progress>>) -> Result<()> {
        let client = self.registry()?;
        let say = |status: String, current: Option<u64>| {
            let p = progress.cloned();
            let id = blob.short.clone();
            let total = Some(blob.size);
            async move {
                if let Some(p) = p {
                    let _ = p.send(Progress { status, id: Some(id), current, total: current.and(total) }).await;
                }
            }
        };
        if client.blob_exists(reference, &blob.digest, creds).await? {
            say("Layer already exists".into(), None).await;
            return Ok(());
        }
        for from in &blob.mount_from {
            if client.mount_blob(reference, &blob.digest, from, creds).await? {
                say(format!("Mounted from {from}"), None).await;
                return Ok(());
            }
        }
        let path = self.inner.images.content().path(&blob.digest);
        if !path.exists() {
            return Err(Error::NotFound { kind: "blob", name: format!("{} (the image's content is incomplete; pull or rebuild it)", blob.digest) });
        }
        say("Pushing".into(), Some(0)).await;
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        // A range of the blob file as an upload body, counting what goes out for the progress.
        let body = move |offset: u64, len: u64| {
            let counter = counter.clone();
            let opened = std::fs::File::open(&path).and_then(|mut f| {
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset))?;
                Ok(f)
            });
            match opened {
                Ok(f) => {
                    let limited = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(f), len);
                    let stream = tokio_util::io::ReaderStream::with_capacity(limited, 256 * 1024).map(move |chunk| {
                        if let Ok(c) = &chunk {
                            counter.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        chunk
                    });
                    registry::Body::wrap_stream(stream)
                }
                // Surfaces as a failed upload naming the blob.
                Err(e) => registry::Body::wrap_stream(futures_util::stream::once(async move { Err::<bytes::Bytes, _>(e) })),
            }
        };
        let upload = client.upload_blob(reference, &blob.digest, blob.size, upload_chunk(), body, creds);
        tokio::pin!(upload);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                r = &mut upload => { r?; break; }
                _ = tick.tick() => say("Pushing".into(), Some(sent.load(std::sync::atomic::Ordering::Relaxed))).await,
            }
        }
        say("Pushed".into(), None).await;
        Ok(())
    }
}
