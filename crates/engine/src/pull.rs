//! `docker pull`: the manifest (the host's platform picked from an index), the config, then every
//! missing layer at once. Each layer streams from the registry through one pass that stores the
//! compressed blob (verifying its digest), decompresses, hashes the diff id and unpacks into a
//! snapshot, so unpacking overlaps the download instead of following it. Layers commit in chain
//! order; the image is registered only when every digest has been checked, so an interrupted or
//! failed pull leaves no image, and a retry skips the layers that were committed.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use image::{Digest, Reference};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::Engine;

/// Layers downloaded at once (Docker's default is 3).
const PARALLEL_LAYERS: usize = 4;
/// Chunks buffered between a download and its unpacking thread.
const CHUNKS_IN_FLIGHT: usize = 32;

/// One progress message, as Docker's JSON stream has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub status: String,
    /// The layer (12 hex digits) or tag the message is about.
    pub id: Option<String>,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

impl Progress {
    fn line(status: impl Into<String>) -> Progress {
        Progress { status: status.into(), id: None, current: None, total: None }
    }
    fn of(id: &str, status: impl Into<String>) -> Progress {
        Progress { status: status.into(), id: Some(id.to_string()), current: None, total: None }
    }
}

/// What to pull (`POST /images/create?fromImage=…&tag=…`).
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    pub image: String,
    pub tag: String,
    /// `os/arch[/variant]`; default the host's.
    pub platform: Option<String>,
    /// From X-Registry-Auth; else the docker config's credentials for the registry.
    pub credentials: Option<registry::Credentials>,
}

impl PullRequest {
    pub fn reference(&self) -> Result<Reference> {
        let full = match self.tag.as_str() {
            "" => self.image.clone(),
            t if t.starts_with("sha256:") => format!("{}@{t}", self.image),
            t => format!("{}:{t}", self.image),
        };
        full.parse::<Reference>().map_err(|e| Error::InvalidArgument(e.to_string()))
    }
}

/// A layer to fetch.
struct LayerJob {
    digest: Digest,
    short: String,
    size: Option<u64>,
    diff_id: Digest,
    chain_id: String,
    parent: Option<String>,
}

pub(crate) type Done = tokio::sync::watch::Receiver<Option<std::result::Result<(), String>>>;

impl Engine {
    pub(crate) fn registry(&self) -> Result<&registry::Client> {
        self.inner.registry.as_ref().map_err(|e| Error::Internal(format!("registry client: {e}")))
    }

    /// Pulls an image; progress goes to `progress` (a closed receiver does not stop the pull).
    pub async fn pull_image(&self, req: PullRequest, progress: mpsc::Sender<Progress>) -> Result<image::Image> {
        let reference = req.reference()?;
        let creds = req.credentials.clone().or_else(|| registry::load_credentials(&reference.domain));
        let send = |p: Progress| {
            let tx = progress.clone();
            async move {
                let _ = tx.send(p).await;
            }
        };
        let label = reference.tag.clone().unwrap_or_else(|| reference.digest.as_ref().map(|d| d.to_string()).unwrap_or_default());
        let client = self.registry()?;
        let mut manifest = client.manifest(&reference, creds.as_ref()).await?;
        // Only after the manifest: an unknown image fails before any output, as with Docker.
        send(Progress::of(&label, format!("Pulling from {}", reference.familiar_repository()))).await;
        if manifest.is_index() {
            let wanted = platform(req.platform.as_deref())?;
            let digest = pick_platform(&manifest.bytes, &wanted).ok_or_else(|| {
                Error::NotFound { kind: "manifest", name: format!("for {} with platform {}", reference.familiar(), wanted.join("/")) }
            })?;
            let index = manifest;
            manifest = client.manifest_by_digest(&reference, &digest, creds.as_ref()).await?;
            self.store_blob(index.bytes.clone(), &index.digest).await?;
        }
        let doc: Value = serde_json::from_slice(&manifest.bytes).map_err(|e| Error::InvalidArgument(format!("manifest of {}: {e}", reference.familiar())))?;
        let descriptor_digest = |v: &Value| -> Result<Digest> {
            v["digest"].as_str().unwrap_or_default().parse().map_err(|e| Error::InvalidArgument(format!("manifest of {}: {e}", reference.familiar())))
        };
        let config_digest = descriptor_digest(&doc["config"])?;
        let layers = doc["layers"].as_array().cloned().unwrap_or_default();

        let lease = self.clone();
        let _lease = tokio::task::spawn_blocking(move || {
            // Held (by this task) until the pull ends: GC must not collect what is not yet
            // referenced. The guard cannot cross threads, so a thread parks holding it.
            let (hold, release) = std::sync::mpsc::channel::<()>();
            let engine = lease;
            std::thread::spawn(move || {
                let _guard = engine.inner.images.ingest_lease();
                let _ = release.recv();
            });
            hold
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;

        // The config: small, fetched whole and verified.
        if !self.inner.images.content().has(&config_digest) {
            let mut blob = client.blob(&reference, &config_digest, creds.as_ref()).await?;
            let mut data = Vec::new();
            while let Some(chunk) = blob.stream.next().await {
                data.extend_from_slice(&chunk?);
            }
            self.store_blob(data, &config_digest).await?;
        }
        let config: Value = serde_json::from_slice(&self.inner.images.content().read(&config_digest)?)
            .map_err(|e| Error::InvalidArgument(format!("image config of {}: {e}", reference.familiar())))?;
        let diff_ids: Vec<Digest> = serde_json::from_value(config["rootfs"]["diff_ids"].clone())
            .map_err(|e| Error::InvalidArgument(format!("image config of {}: rootfs.diff_ids: {e}", reference.familiar())))?;
        if diff_ids.len() != layers.len() {
            return Err(Error::InvalidArgument(format!("image {}: {} layers but {} diff ids", reference.familiar(), layers.len(), diff_ids.len())));
        }
        let chains = image::chain_ids(&diff_ids);

        // Every layer: present (its snapshot exists) or fetched by its own task.
        let mut done: Vec<Done> = Vec::new();
        let mut tasks = Vec::new();
        let gate = Arc::new(tokio::sync::Semaphore::new(PARALLEL_LAYERS));
        let mut fetched = 0;
        for (i, layer) in layers.iter().enumerate() {
            let digest = descriptor_digest(layer)?;
            let short = digest.hex().chars().take(12).collect::<String>();
            let chain_id = chains[i].to_string();
            let (tx, rx) = tokio::sync::watch::channel(None);
            if self.inner.snapshots.has_layer(&chain_id) {
                send(Progress::of(&short, "Already exists")).await;
                let _ = tx.send(Some(Ok(())));
                done.push(rx);
                continue;
            }
            // Another pull is fetching this very layer: wait for it instead of fetching it again.
            let other = {
                let mut inflight = crate::lock(&self.inner.inflight);
                match inflight.get(&chain_id) {
                    Some(o) => Some(o.clone()),
                    None => {
                        inflight.insert(chain_id.clone(), rx.clone());
                        None
                    }
                }
            };
            if let Some(mut other) = other {
                send(Progress::of(&short, "Waiting")).await;
                done.push(other.clone());
                let progress = progress.clone();
                tasks.push(tokio::spawn(async move {
                    let outcome = other.wait_for(Option::is_some).await.map(|v| v.clone()).map_err(|_| Error::Internal("a concurrent pull went away".into()))?;
                    match outcome {
                        Some(Ok(())) => {
                            let _ = progress.send(Progress::of(&short, "Pull complete")).await;
                            Ok(())
                        }
                        Some(Err(e)) => Err(Error::Internal(format!("layer {short}: {e}"))),
                        None => Ok(()),
                    }
                }));
                continue;
            }
            send(Progress::of(&short, "Pulling fs layer")).await;
            fetched += 1;
            let job = LayerJob {
                digest,
                short,
                size: layer["size"].as_u64(),
                diff_id: diff_ids[i].clone(),
                chain_id,
                parent: i.checked_sub(1).map(|p| chains[p].to_string()),
            };
            let parent_done = done.last().cloned();
            done.push(rx);
            let (engine, reference, creds, progress, gate) = (self.clone(), reference.clone(), creds.clone(), progress.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = gate.acquire_owned().await;
                // However the task ends, the layer stops being in flight.
                let _registered = InFlight { engine: engine.clone(), chain: job.chain_id.clone() };
                let result = engine.fetch_layer(&reference, creds.as_ref(), job, parent_done, progress).await;
                let _ = tx.send(Some(result.as_ref().map(drop).map_err(|e| e.to_string())));
                result
            }));
        }
        let mut first_error = None;
        for t in tasks {
            let r = t.await.map_err(|e| Error::Internal(e.to_string())).and_then(|r| r);
            if let (Err(e), None) = (r, &first_error) {
                first_error = Some(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        self.store_blob(manifest.bytes.clone(), &manifest.digest).await?;
        let had = self.inner.images.get(&config_digest.to_string()).ok();
        let engine = self.clone();
        let (manifest_digest, tagged) = (manifest.digest.clone(), reference.clone());
        let img = crate::blocking(move || {
            let tag = tagged.tag.is_some().then_some(&tagged);
            let img = engine.inner.images.register(&manifest_digest, tag)?;
            engine.inner.images.add_repo_digest(&img.id, &tagged.with_digest(&manifest_digest))?;
            Ok(engine.inner.images.get(&img.id.to_string())?)
        })
        .await?;
        send(Progress::line(format!("Digest: {}", manifest.digest))).await;
        let up_to_date = fetched == 0 && had.is_some();
        send(Progress::line(if up_to_date {
            format!("Status: Image is up to date for {}", reference.familiar())
        } else {
            format!("Status: Downloaded newer image for {}", reference.familiar())
        }))
        .await;
        Ok(img)
    }

    /// Puts a small verified blob into the content store.
    async fn store_blob(&self, data: Vec<u8>, expected: &Digest) -> Result<()> {
        let engine = self.clone();
        let expected = expected.clone();
        crate::blocking(move || {
            let got = engine.inner.images.content().put(&data)?;
            if got != expected {
                return Err(Error::InvalidArgument(format!("blob {expected} has digest {got}: refusing it")));
            }
            Ok(())
        })
        .await
    }

    /// Downloads one layer while a blocking thread stores, verifies and unpacks it; commits it
    /// once its parent is committed.
    async fn fetch_layer(&self, reference: &Reference, creds: Option<&registry::Credentials>, job: LayerJob, parent_done: Option<Done>, progress: mpsc::Sender<Progress>) -> Result<()> {
        let client = self.registry()?;
        let (chunks_tx, chunks_rx) = mpsc::channel::<std::result::Result<Bytes, String>>(CHUNKS_IN_FLIGHT);
        // A blob already in the content store (an earlier pull stopped before unpacking it) is
        // unpacked from there.
        let stored = self.inner.images.content().has(&job.digest);
        let (digest, short, size) = (job.digest.clone(), job.short.clone(), job.size);
        let engine = self.clone();
        let unpack = tokio::task::spawn_blocking(move || engine.unpack_layer(job, stored, chunks_rx, parent_done));
        let mut download_error = None;
        if !stored {
            match client.blob(reference, &digest, creds).await {
                Ok(mut blob) => {
                    let total = blob.size.or(size);
                    let (mut current, mut reported) = (0u64, std::time::Instant::now());
                    while let Some(chunk) = blob.stream.next().await {
                        match chunk {
                            Ok(bytes) => {
                                current += bytes.len() as u64;
                                if chunks_tx.send(Ok(bytes)).await.is_err() {
                                    // The unpacker stopped: its error says why.
                                    break;
                                }
                                if reported.elapsed() >= std::time::Duration::from_millis(100) {
                                    reported = std::time::Instant::now();
                                    let _ = progress.send(Progress { status: "Downloading".into(), id: Some(short.clone()), current: Some(current), total }).await;
                                }
                            }
                            Err(e) => {
                                let _ = chunks_tx.send(Err(e.to_string())).await;
                                download_error = Some(e);
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    let _ = chunks_tx.send(Err(e.to_string())).await;
                    download_error = Some(e);
                }
            }
        }
        drop(chunks_tx);
        if download_error.is_none() && !stored {
            let _ = progress.send(Progress::of(&short, "Verifying Checksum")).await;
            let _ = progress.send(Progress::of(&short, "Download complete")).await;
        }
        let unpacked = unpack.await.map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(e) = download_error {
            return Err(e.into());
        }
        unpacked?;
        let _ = progress.send(Progress::of(&short, "Pull complete")).await;
        Ok(())
    }

    /// The blocking half of a layer: compressed bytes → content store (digest checked) and
    /// → decompressor → diff id hash → snapshot, in one pass; then the commit in chain order.
    fn unpack_layer(&self, job: LayerJob, stored: bool, chunks: mpsc::Receiver<std::result::Result<Bytes, String>>, parent_done: Option<Done>) -> Result<()> {
        let content = self.inner.images.content();
        let mut pending = self.inner.snapshots.begin_layer_over(job.parent.as_deref())?;
        let (stats, diff_id) = if stored {
            let file = std::io::BufReader::with_capacity(256 * 1024, content.open_blob(&job.digest)?);
            let mut plain = Hashing::new(snapshot::decompress(file)?);
            let stats = pending.apply(std::io::BufReader::with_capacity(128 * 1024, &mut plain))?;
            std::io::copy(&mut plain, &mut std::io::sink()).map_err(|e| Error::Internal(format!("reading layer {}: {e}", job.digest)))?;
            (stats, plain.digester.finish())
        } else {
            // Two threads (the two hashes dominate): this one stores the compressed bytes and
            // hashes them; the other decompresses, hashes the diff id and unpacks.
            let (plain_tx, plain_rx) = std::sync::mpsc::sync_channel::<Bytes>(CHUNKS_IN_FLIGHT);
            let digest = job.digest.clone();
            let store = {
                let engine = self.clone();
                std::thread::Builder::new()
                    .name("pull-store".into())
                    .spawn(move || -> Result<()> {
                        let mut blob = engine.inner.images.content().writer(Some(&digest))?;
                        let mut source = ChannelReader { rx: chunks, buf: Bytes::new() };
                        let mut buf = vec![0u8; 256 * 1024];
                        loop {
                            let n = source.read(&mut buf).map_err(|e| Error::Internal(format!("layer {digest}: {e}")))?;
                            if n == 0 {
                                break;
                            }
                            std::io::Write::write_all(&mut blob, &buf[..n]).map_err(|e| Error::io(format!("storing layer {digest}"), e))?;
                            // The unpacker may have stopped on an error of its own; keep storing.
                            let _ = plain_tx.send(Bytes::copy_from_slice(&buf[..n]));
                        }
                        drop(plain_tx);
                        blob.commit()?;
                        Ok(())
                    })
                    .map_err(|e| Error::Internal(format!("starting a pull thread: {e}")))?
            };
            let unpacked = (|| -> Result<(snapshot::LayerStats, Digest)> {
                let compressed = StdChannelReader { rx: plain_rx, buf: Bytes::new() };
                let mut plain = Hashing::new(snapshot::decompress(compressed)?);
                let stats = pending.apply(std::io::BufReader::with_capacity(128 * 1024, &mut plain))?;
                // The tar's end blocks and padding are part of the diff id too.
                std::io::copy(&mut plain, &mut std::io::sink()).map_err(|e| Error::Internal(format!("layer {}: {e}", job.digest)))?;
                Ok((stats, plain.digester.finish()))
            })();
            // The store's verdict first: a truncated or corrupt download explains an unpack error.
            store.join().map_err(|_| Error::Internal("the pull's store thread panicked".into()))??;
            unpacked?
        };
        if diff_id != job.diff_id {
            return Err(Error::InvalidArgument(format!("layer {} unpacks to {diff_id}, but the image config says {}", job.digest, job.diff_id)));
        }
        if let Some(mut parent) = parent_done {
            let outcome = tokio::runtime::Handle::current()
                .block_on(async { parent.wait_for(Option::is_some).await.map(|v| v.clone()) })
                .map_err(|_| Error::Internal("the parent layer's task went away".into()))?;
            if let Some(Err(e)) = outcome {
                return Err(Error::Internal(format!("parent layer failed: {e}")));
            }
        }
        pending.commit(&job.chain_id, stats.size)?;
        Ok(())
    }
}

/// Removes a layer from the in-flight map when its fetching task ends (also by panic).
struct InFlight {
    engine: Engine,
    chain: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        crate::lock(&self.engine.inner.inflight).remove(&self.chain);
    }
}

/// The chunks of a download as a `Read` for the unpacking thread; a download error becomes an
/// I/O error, the end of the channel the end of the stream.
struct ChannelReader {
    rx: mpsc::Receiver<std::result::Result<Bytes, String>>,
    buf: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// The store thread's chunks as a `Read` for the unpacker; the end of the channel is the end
/// of the stream (the store thread reports its own errors).
struct StdChannelReader {
    rx: std::sync::mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl Read for StdChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.recv() {
                Ok(b) => self.buf = b,
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// Hashes what is read (the uncompressed layer: its diff id).
struct Hashing<R: Read> {
    inner: R,
    digester: image::Digester,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing { inner, digester: image::Digester::new() }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// `os/arch[/variant]` wanted: the request's, or the host's.
fn platform(requested: Option<&str>) -> Result<Vec<String>> {
    match requested.filter(|p| !p.is_empty()) {
        Some(p) => {
            let parts: Vec<String> = p.split('/').map(String::from).collect();
            if parts.len() < 2 || parts.len() > 3 || parts.iter().any(String::is_empty) {
                return Err(Error::InvalidArgument(format!("invalid platform {p:?}: use os/arch[/variant], e.g. linux/amd64")));
            }
            Ok(parts)
        }
        None => Ok(vec![std::env::consts::OS.to_string(), image::host_arch().to_string()]),
    }
}

/// The manifest digest an index lists for the platform (a variant, when asked, must match).
fn pick_platform(index: &[u8], wanted: &[String]) -> Option<Digest> {
    let doc: Value = serde_json::from_slice(index).ok()?;
    doc["manifests"].as_array()?.iter().find_map(|m| {
        let p = &m["platform"];
        let matches = p["os"].as_str() == Some(wanted[0].as_str())
            && p["architecture"].as_str() == Some(wanted[1].as_str())
            && wanted.get(2).is_none_or(|v| p["variant"].as_str() == Some(v.as_str()));
        if matches { m["digest"].as_str()?.parse().ok() } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_platform_is_picked_from_an_index() {
        let index = serde_json::json!({"manifests": [
            {"digest": format!("sha256:{}", "a".repeat(64)), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": format!("sha256:{}", "b".repeat(64)), "platform": {"os": "linux", "architecture": "amd64"}},
        ]});
        let bytes = serde_json::to_vec(&index).expect("json");
        let amd64 = pick_platform(&bytes, &["linux".into(), "amd64".into()]).expect("amd64");
        assert_eq!(amd64.hex(), "b".repeat(64));
        let arm = pick_platform(&bytes, &["linux".into(), "arm64".into(), "v8".into()]).expect("arm64");
        assert_eq!(arm.hex(), "a".repeat(64));
        assert_eq!(pick_platform(&bytes, &["linux".into(), "s390x".into()]), None);
    }

    #[test]
    fn a_pull_request_names_a_tag_or_a_digest() {
        let r = PullRequest { image: "127.0.0.1:5000/team/app".into(), tag: "1.2".into(), ..Default::default() }.reference().expect("tag");
        assert_eq!(r.to_string(), "127.0.0.1:5000/team/app:1.2");
        let d = format!("sha256:{}", "c".repeat(64));
        let r = PullRequest { image: "busybox".into(), tag: d.clone(), ..Default::default() }.reference().expect("digest");
        assert_eq!(r.digest.map(|x| x.to_string()), Some(d));
        assert!(platform(Some("linux")).is_err());
    }
}
