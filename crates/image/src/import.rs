//! `docker import`: a root filesystem tarball becomes a one-layer image in one pass over the input.
use std::io::{Read, Write};

use serde_json::json;

use crate::{changes, chain_id, host_arch, Error, Image, ImageStore, ImportOptions, Reference};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TAR_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

impl ImageStore {
    /// Imports a root filesystem tar (plain, gzip or zstd): the decompressed stream is hashed (the
    /// diff id), stored as the layer blob and unpacked into the snapshotter as it is read. Then
    /// an OCI config (host platform, the diff id, one history entry, `--change`s) and manifest
    /// are stored and the image tagged `reference`.
    pub fn import<R: Read + Send>(&self, tar: R, reference: Option<&Reference>, opts: &ImportOptions) -> Result<Image, Error> {
        // Validate the changes before reading a possibly huge stream.
        let mut run_config = json!({});
        for change in &opts.changes {
            changes::apply(&mut run_config, change)?;
        }
        let _ingest = self.ingest.read().unwrap_or_else(|p| p.into_inner());
        let mut plain = snapshot::decompress(tar)?;
        let mut blob = self.content.writer(None)?;
        let mut pending = self.snapshots.begin_layer(None)?;
        let stats = {
            // Buffered above the tee, so the tar reader's small reads become large copies.
            let mut tee = std::io::BufReader::with_capacity(128 * 1024, Tee { inner: &mut plain, sink: &mut blob });
            let stats = pending.apply(&mut tee)?;
            // The archive's end blocks and any padding are part of the layer's bytes too.
            std::io::copy(&mut tee, &mut std::io::sink()).map_err(|e| Error::io("reading the tarball", e))?;
            stats
        };
        let layer_size = blob.size();
        let diff_id = blob.commit()?;
        pending.commit(&chain_id(None, &diff_id).to_string(), stats.size)?;

        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let comment = if opts.message.is_empty() { "Imported from -".to_string() } else { opts.message.clone() };
        let config = json!({
            "created": created,
            "architecture": host_arch(),
            "os": std::env::consts::OS,
            "config": run_config,
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
            "history": [{"created": created, "comment": comment}],
        });
        let config_bytes = serde_json::to_vec(&config).map_err(|e| Error::Corrupt(e.to_string()))?;
        let config_digest = self.content.put(&config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": [{"mediaType": LAYER_TAR_TYPE, "digest": diff_id.to_string(), "size": layer_size}],
        });
        let manifest_digest = self.content.put(&serde_json::to_vec(&manifest).map_err(|e| Error::Corrupt(e.to_string()))?)?;
        self.register(&manifest_digest, reference)
    }
}

/// Copies what is read into a blob writer.
struct Tee<'a, R: Read + ?Sized, W: Write> {
    inner: &'a mut R,
    sink: &'a mut W,
}

impl<R: Read + ?Sized, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}
