//! `docker save` and `docker load`.
//!
//! save writes Docker 25+'s archive: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) that also carries the legacy `manifest.json` and `repositories`, streamed
//! straight from the content store. load reads that format, the older docker-archive (one
//! directory per layer with `layer.tar`) and plain OCI layouts, in one pass over the tar: every
//! file goes into the content store by digest (verified against its name where the name is a
//! digest), never to a path taken from the archive, so no entry can write outside the store.
//! Entries that try (`..`, absolute paths, links leaving the archive, files beneath a link) are
//! refused all the same, and nothing is registered until every image of the archive is complete.

use std::collections::HashMap;
use std::io::{Read, Write};

use serde_json::{json, Value};

use crate::{chain_ids, Digest, Error, Image, ImageStore, Reference};

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidArchive(msg.into())
}

/// One image to save: its names (familiar tags) and id.
struct Saved {
    image: Image,
    tags: Vec<Reference>,
}

impl ImageStore {
    /// Writes the images `names` (tags or ids) as one archive.
    pub fn save_archive<W: Write>(&self, names: &[String], out: W) -> Result<(), Error> {
        let mut saved: Vec<Saved> = Vec::new();
        for n in names {
            let image = self.get(n)?;
            // A name that is a tag saves that tag; an id saves every tag of the image.
            let tags: Vec<Reference> = match n.parse::<Reference>() {
                Ok(r) if image.repo_tags.iter().any(|t| t.parse::<Reference>().is_ok_and(|x| x == r)) => vec![r],
                _ => image.repo_tags.iter().filter_map(|t| t.parse().ok()).collect(),
            };
            match saved.iter_mut().find(|s| s.image.id == image.id) {
                Some(s) => {
                    for t in tags {
                        if !s.tags.contains(&t) {
                            s.tags.push(t);
                        }
                    }
                }
                None => saved.push(Saved { image, tags }),
            }
        }
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut written: std::collections::HashSet<Digest> = std::collections::HashSet::new();
        let mut index = Vec::new();
        let mut legacy = Vec::new();
        let mut repositories = serde_json::Map::new();
        append_bytes(&mut tar, "blobs/", None)?;
        append_bytes(&mut tar, "blobs/sha256/", None)?;
        for s in &saved {
            let manifest_bytes = self.content.read(&s.image.manifest_digest)?;
            let manifest: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| Error::Corrupt(format!("manifest {}: {e}", s.image.manifest_digest)))?;
            let layers: Vec<Digest> = manifest["layers"]
                .as_array()
                .map(|ls| ls.iter().filter_map(|l| l["digest"].as_str()?.parse().ok()).collect())
                .unwrap_or_default();
            for d in [&s.image.manifest_digest, &s.image.id].into_iter().chain(layers.iter()) {
                if written.insert(d.clone()) {
                    let f = self.content.open_blob(d)?;
                    let size = f.metadata().map_err(|e| Error::io(format!("blob {d}"), e))?.len();
                    let mut h = file_header(size);
                    tar.append_data(&mut h, format!("blobs/sha256/{}", d.hex()), std::io::BufReader::with_capacity(256 * 1024, f))
                        .map_err(|e| Error::io("writing the archive", e))?;
                }
            }
            let media_type = manifest["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
            let descriptor = |annotations: Value| {
                json!({"mediaType": media_type, "digest": s.image.manifest_digest.to_string(), "size": manifest_bytes.len(), "annotations": annotations})
            };
            if s.tags.is_empty() {
                index.push(descriptor(json!({})));
            }
            for t in &s.tags {
                index.push(descriptor(json!({
                    "io.containerd.image.name": t.to_string(),
                    "org.opencontainers.image.ref.name": t.tag.clone().unwrap_or_else(|| "latest".into()),
                })));
                let top = layers.last().map(|d| d.hex().to_string()).unwrap_or_default();
                let repo = repositories.entry(t.familiar_repository()).or_insert_with(|| json!({}));
                repo[t.tag.clone().unwrap_or_else(|| "latest".into())] = json!(top);
            }
            legacy.push(json!({
                "Config": format!("blobs/sha256/{}", s.image.id.hex()),
                "RepoTags": s.tags.iter().map(Reference::familiar).collect::<Vec<_>>(),
                "Layers": layers.iter().map(|d| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
            }));
        }
        let index_doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index});
        append_bytes(&mut tar, "index.json", Some(index_doc.to_string().as_bytes()))?;
        append_bytes(&mut tar, "manifest.json", Some(Value::Array(legacy).to_string().as_bytes()))?;
        append_bytes(&mut tar, "oci-layout", Some(br#"{"imageLayoutVersion":"1.0.0"}"#))?;
        append_bytes(&mut tar, "repositories", Some(Value::Object(repositories).to_string().as_bytes()))?;
        tar.into_inner().and_then(|mut w| w.flush()).map_err(|e| Error::io("finishing the archive", e))?;
        Ok(())
    }

    /// Loads every image of an archive (plain, gzip or zstd); returns the images with the names
    /// they were loaded under (empty: untagged).
    pub fn load_archive<R: Read + Send>(&self, input: R) -> Result<Vec<(Image, Vec<String>)>, Error> {
        let _lease = self.ingest_lease();
        let plain = snapshot::decompress(input)?;
        let mut archive = tar::Archive::new(plain);
        let mut files: HashMap<String, Digest> = HashMap::new();
        let mut links: HashMap<String, String> = HashMap::new();
        let mut small: HashMap<String, Vec<u8>> = HashMap::new();
        for entry in archive.entries().map_err(|e| bad(format!("reading the archive: {e}")))? {
            let mut entry = entry.map_err(|e| bad(format!("reading the archive: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8(raw).map_err(|_| bad("an entry name is not UTF-8"))?;
            let path = clean(&name)?;
            if let Some(l) = links.keys().find(|l| path.starts_with(&format!("{l}/"))) {
                return Err(bad(format!("archive entry {name:?} goes through the symbolic link {l:?}")));
            }
            match entry.header().entry_type() {
                tar::EntryType::Directory => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name_bytes().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                    // Hard link names are archive paths; symbolic ones are relative to their directory.
                    let resolved = if entry.header().entry_type() == tar::EntryType::Link || target.starts_with('/') {
                        target.clone()
                    } else {
                        match path.rsplit_once('/') {
                            Some((dir, _)) => format!("{dir}/{target}"),
                            None => target.clone(),
                        }
                    };
                    let resolved = resolve(&resolved).ok_or_else(|| bad(format!("archive entry {name:?} links outside the archive ({target:?})")))?;
                    links.insert(path, resolved);
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.header().size().unwrap_or(0);
                    if is_structure(&path) && size <= 16 << 20 {
                        // The archive's own structure: read, never stored.
                        let mut data = Vec::new();
                        entry.read_to_end(&mut data).map_err(|e| bad(format!("reading {name}: {e}")))?;
                        small.insert(path, data);
                    } else {
                        let expected = blob_name(&path);
                        let mut w = self.content.writer(expected.as_ref())?;
                        std::io::copy(&mut entry, &mut w).map_err(|e| bad(format!("reading {name}: {e}")))?;
                        let digest = w.commit().map_err(|e| match e {
                            Error::DigestMismatch { expected, actual } => bad(format!("{name}: content has digest {actual}, not {expected}")),
                            other => other,
                        })?;
                        files.insert(path, digest);
                    }
                }
                other => return Err(bad(format!("archive entry {name:?} has unsupported type {other:?}"))),
            }
        }
        // Links to files (identical layers in old docker-archives) stand for their targets.
        for (link, target) in &links {
            if let Some(d) = files.get(target).cloned() {
                files.insert(link.clone(), d);
                if let Some(data) = small.get(target).cloned() {
                    small.insert(link.clone(), data);
                }
            }
        }
        // Docker 25's archives have both: the OCI index keeps the images' own manifests (and
        // digests); older docker-archives have only manifest.json, OCI layouts only index.json.
        let plan = if let Some(i) = small.get("index.json") {
            self.plan_oci(i)?
        } else if let Some(m) = small.get("manifest.json") {
            self.plan_docker(m, &files)?
        } else {
            return Err(bad("neither manifest.json nor index.json: not a docker-archive or an OCI layout"));
        };
        let mut loaded = Vec::new();
        for (manifest, tags) in plan {
            self.unpack_manifest(&manifest)?;
            let image = self.register(&manifest, None)?;
            for t in &tags {
                self.tag(&image.id.to_string(), t)?;
            }
            loaded.push((self.get(&image.id.to_string())?, tags.iter().map(Reference::familiar).collect()));
        }
        Ok(loaded)
    }

    /// docker-archive (old and Docker 25's): manifest.json names the config and layer files.
    /// Each image gets an OCI manifest built from them.
    fn plan_docker(&self, manifest_json: &[u8], files: &HashMap<String, Digest>) -> Result<Vec<(Digest, Vec<Reference>)>, Error> {
        let entries: Vec<Value> = serde_json::from_slice(manifest_json).map_err(|e| bad(format!("manifest.json: {e}")))?;
        let mut plan = Vec::new();
        for e in entries {
            let find = |p: &str| -> Result<Digest, Error> {
                let key = clean(p)?;
                files.get(&key).cloned().ok_or_else(|| bad(format!("manifest.json names {p:?}, which the archive does not contain")))
            };
            let config = find(e["Config"].as_str().ok_or_else(|| bad("manifest.json: an entry without Config"))?)?;
            let mut layers = Vec::new();
            for l in e["Layers"].as_array().cloned().unwrap_or_default() {
                let d = find(l.as_str().ok_or_else(|| bad("manifest.json: a layer that is not a path"))?)?;
                let size = self.content.size(&d)?;
                layers.push(json!({"mediaType": self.layer_media_type(&d)?, "digest": d.to_string(), "size": size}));
            }
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": self.content.size(&config)?},
                "layers": layers,
            });
            let digest = self.content.put(&serde_json::to_vec(&manifest).map_err(|e| Error::Corrupt(e.to_string()))?)?;
            let tags = e["RepoTags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .map(|t| t.parse::<Reference>().map_err(|err| bad(format!("manifest.json: tag {t:?}: {err}"))))
                .collect::<Result<Vec<_>, _>>()?;
            plan.push((digest, tags));
        }
        Ok(plan)
    }

    /// A plain OCI layout: index.json's manifests (nested indexes give their host-platform
    /// manifest), named by their annotations.
    fn plan_oci(&self, index_json: &[u8]) -> Result<Vec<(Digest, Vec<Reference>)>, Error> {
        let index: Value = serde_json::from_slice(index_json).map_err(|e| bad(format!("index.json: {e}")))?;
        let mut plan = Vec::new();
        for m in index["manifests"].as_array().cloned().unwrap_or_default() {
            let mut digest: Digest = m["digest"].as_str().unwrap_or_default().parse().map_err(|e| bad(format!("index.json: {e}")))?;
            let mut media_type = m["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
            // A nested index: its entry for this host.
            for _ in 0..4 {
                if media_type != OCI_INDEX && media_type != DOCKER_LIST {
                    break;
                }
                let nested: Value = serde_json::from_slice(&self.content.read(&digest)?).map_err(|e| bad(format!("index {digest}: {e}")))?;
                let pick = nested["manifests"].as_array().and_then(|ms| {
                    ms.iter().find(|x| x["platform"]["architecture"].as_str() == Some(crate::host_arch()) && x["platform"]["os"].as_str() == Some("linux"))
                });
                let pick = pick.ok_or_else(|| bad(format!("index {digest} has no manifest for linux/{}", crate::host_arch())))?;
                digest = pick["digest"].as_str().unwrap_or_default().parse().map_err(|e| bad(format!("index {digest}: {e}")))?;
                media_type = pick["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
            }
            if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
                return Err(bad(format!("index.json: unsupported media type {media_type}")));
            }
            if !self.content.has(&digest) {
                return Err(bad(format!("index.json names manifest {digest}, which the archive does not contain")));
            }
            let annotations = &m["annotations"];
            let name = annotations["io.containerd.image.name"].as_str().or_else(|| annotations["org.opencontainers.image.ref.name"].as_str().filter(|n| n.contains(':') || n.contains('/')));
            let tags = match name {
                Some(n) => vec![n.parse::<Reference>().map_err(|e| bad(format!("index.json: image name {n:?}: {e}")))?],
                None => Vec::new(),
            };
            plan.push((digest, tags));
        }
        Ok(plan)
    }

    /// `application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]` from the blob's first bytes.
    fn layer_media_type(&self, d: &Digest) -> Result<&'static str, Error> {
        let mut magic = [0u8; 4];
        let mut f = self.content.open_blob(d)?;
        let n = f.read(&mut magic).map_err(|e| Error::io(format!("blob {d}"), e))?;
        Ok(match &magic[..n] {
            [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
            [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        })
    }

    /// Unpacks every layer of a manifest whose snapshot is missing, checking each diff id.
    fn unpack_manifest(&self, manifest: &Digest) -> Result<(), Error> {
        let m: Value = serde_json::from_slice(&self.content.read(manifest)?).map_err(|e| bad(format!("manifest {manifest}: {e}")))?;
        let config_digest: Digest = m["config"]["digest"].as_str().unwrap_or_default().parse().map_err(|e| bad(format!("manifest {manifest}: {e}")))?;
        if !self.content.has(&config_digest) {
            return Err(bad(format!("the archive lacks the config {config_digest}")));
        }
        let config: Value = serde_json::from_slice(&self.content.read(&config_digest)?).map_err(|e| bad(format!("config {config_digest}: {e}")))?;
        let diff_ids: Vec<Digest> = serde_json::from_value(config["rootfs"]["diff_ids"].clone()).map_err(|e| bad(format!("config {config_digest}: rootfs.diff_ids: {e}")))?;
        let layers: Vec<Digest> = m["layers"]
            .as_array()
            .map(|ls| ls.iter().map(|l| l["digest"].as_str().unwrap_or_default().parse()).collect::<Result<Vec<_>, _>>())
            .transpose()
            .map_err(|e| bad(format!("manifest {manifest}: {e}")))?
            .unwrap_or_default();
        if layers.len() != diff_ids.len() {
            return Err(bad(format!("image {config_digest}: {} layers but {} diff ids", layers.len(), diff_ids.len())));
        }
        let chains = chain_ids(&diff_ids);
        for (i, layer) in layers.iter().enumerate() {
            let chain = chains[i].to_string();
            if self.snapshots.has_layer(&chain) {
                continue;
            }
            if !self.content.has(layer) {
                return Err(bad(format!("the archive lacks the layer {layer}")));
            }
            let blob = std::io::BufReader::with_capacity(256 * 1024, self.content.open_blob(layer)?);
            let mut plain = Hashing { inner: snapshot::decompress(blob)?, digester: crate::Digester::new() };
            let parent = i.checked_sub(1).map(|p| chains[p].to_string());
            let mut pending = self.snapshots.begin_layer(parent.as_deref())?;
            let stats = pending.apply(std::io::BufReader::with_capacity(128 * 1024, &mut plain))?;
            std::io::copy(&mut plain, &mut std::io::sink()).map_err(|e| Error::io(format!("layer {layer}"), e))?;
            let got = plain.digester.finish();
            if got != diff_ids[i] {
                return Err(bad(format!("layer {layer} unpacks to {got}, but the image config says {}", diff_ids[i])));
            }
            pending.commit(&chain, stats.size)?;
        }
        Ok(())
    }
}

/// Archive paths are relative, `/`-separated, without `.` or `..` parts; anything else is refused.
fn clean(name: &str) -> Result<String, Error> {
    if name.starts_with('/') {
        return Err(bad(format!("archive entry {name:?} has an absolute path")));
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(bad(format!("archive entry {name:?} leaves the archive ('..')"))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A link target within the archive with its `..` parts applied; None if it is absolute or
/// climbs above the archive's root.
fn resolve(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The digest a `blobs/sha256/<hex>` path promises.
fn blob_name(path: &str) -> Option<Digest> {
    path.strip_prefix("blobs/sha256/").and_then(|hex| Digest::from_hex(hex).ok())
}

/// Files that describe the archive rather than hold image content.
fn is_structure(path: &str) -> bool {
    matches!(path, "manifest.json" | "index.json" | "oci-layout" | "repositories") || path.ends_with("/json") || path.ends_with("/VERSION")
}

/// Hashes what is read (a layer's uncompressed bytes: its diff id).
struct Hashing<R: Read> {
    inner: R,
    digester: crate::Digester,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: Option<&[u8]>) -> Result<(), Error> {
    let mut h = tar::Header::new_gnu();
    match data {
        Some(d) => {
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
        }
        None => {
            h.set_size(0);
            h.set_mode(0o755);
            h.set_entry_type(tar::EntryType::Directory);
        }
    }
    h.set_mtime(0);
    tar.append_data(&mut h, path, data.unwrap_or_default()).map_err(|e| Error::io("writing the archive", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_that_leave_the_archive_are_refused() {
        assert_eq!(clean("./blobs//sha256/ab").expect("clean"), "blobs/sha256/ab");
        assert!(clean("../x").is_err());
        assert!(clean("a/../../x").is_err());
        assert!(clean("/etc/passwd").is_err());
    }

    #[test]
    fn link_targets_resolve_inside_the_archive_or_not_at_all() {
        assert_eq!(resolve("a/../b.tar").as_deref(), Some("b.tar"));
        assert_eq!(resolve("a/b/../../c").as_deref(), Some("c"));
        assert_eq!(resolve("a/../../c"), None);
        assert_eq!(resolve("/etc"), None);
    }
}
