//! Content-addressed blobs: `blobs/sha256/<hex>`, verified while written, committed by rename.
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::{Digest, Error};

pub struct ContentStore {
    root: PathBuf,
}

/// A blob being written; `commit` checks the digest and moves it into place, drop discards it.
pub struct BlobWriter {
    file: std::fs::File,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    root: PathBuf,
    done: bool,
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<ContentStore, Error> {
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io(format!("creating {}", blobs.display()), e))?;
        std::fs::create_dir_all(root.join("ingest")).map_err(|e| Error::io("creating ingest dir", e))?;
        Ok(ContentStore { root: root.to_path_buf() })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, Error> {
        std::fs::read(self.path(d)).map_err(|e| Error::io(format!("reading blob {d}"), e))
    }

    /// Stores bytes whose digest is computed here.
    pub fn put(&self, data: &[u8]) -> Result<Digest, Error> {
        let mut w = self.writer()?;
        w.write_all(data).map_err(|e| Error::io("writing blob", e))?;
        w.commit(None)
    }

    pub fn writer(&self) -> Result<BlobWriter, Error> {
        let tmp = self.root.join("ingest").join(format!("{}-{}", std::process::id(), rand::random::<u64>()));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        Ok(BlobWriter { file, tmp, hasher: Sha256::new(), size: 0, root: self.root.clone(), done: false })
    }

    pub fn remove(&self, d: &Digest) -> Result<(), Error> {
        match std::fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(format!("removing blob {d}"), e)),
            _ => Ok(()),
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies against `expected` (when given), fsyncs and renames into place.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest, Error> {
        let digest = Digest::from_hex(&hex::encode(self.hasher.clone().finalize()));
        if let Some(want) = expected {
            if *want != digest {
                return Err(Error::DigestMismatch { expected: want.to_string(), actual: digest.to_string() });
            }
        }
        self.file.sync_all().map_err(|e| Error::io("syncing blob", e))?;
        let dest = self.root.join("blobs/sha256").join(digest.hex());
        std::fs::rename(&self.tmp, &dest).map_err(|e| Error::io(format!("committing blob {digest}"), e))?;
        self.done = true;
        Ok(digest)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_blob_is_found_by_its_digest() {
        let dir = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(dir.path()).expect("open");
        let d = cs.put(b"hello").expect("put");
        assert_eq!(d.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(cs.read(&d).expect("read"), b"hello");
    }

    #[test]
    fn a_mismatched_or_abandoned_blob_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(dir.path()).expect("open");
        let mut w = cs.writer().expect("writer");
        w.write_all(b"x").expect("write");
        let wrong = Digest::from_hex(&"0".repeat(64));
        assert!(matches!(w.commit(Some(&wrong)), Err(Error::DigestMismatch { .. })));
        drop(cs.writer().expect("writer"));
        assert_eq!(std::fs::read_dir(dir.path().join("ingest")).expect("ls").count(), 0);
        assert_eq!(std::fs::read_dir(dir.path().join("blobs/sha256")).expect("ls").count(), 0);
    }
}
