//! Content-addressed blobs: `blobs/sha256/<hex>`, verified while written, committed by
//! tmp + fsync + rename, so a blob under its digest is always whole and correct.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Digest, Digester, Error};

pub struct ContentStore {
    root: PathBuf,
}

/// A blob being written into `ingest/`; `commit` checks the digest and moves it into place, drop
/// (or a failed commit) deletes it.
pub struct BlobWriter {
    /// Buffered: callers (the import tee) write in tar-block-sized pieces.
    file: std::io::BufWriter<std::fs::File>,
    tmp: PathBuf,
    digester: Digester,
    expected: Option<Digest>,
    blobs: PathBuf,
    done: bool,
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<ContentStore, Error> {
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io(format!("creating {}", blobs.display()), e))?;
        let ingest = root.join("ingest");
        std::fs::create_dir_all(&ingest).map_err(|e| Error::io(format!("creating {}", ingest.display()), e))?;
        // Writes a crash interrupted: never committed, so never referenced.
        for e in std::fs::read_dir(&ingest).map_err(|e| Error::io("listing ingest", e))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(ContentStore { root: root.to_path_buf() })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    /// Size in bytes of a stored blob.
    pub fn size(&self, d: &Digest) -> Result<u64, Error> {
        std::fs::metadata(self.path(d)).map(|m| m.len()).map_err(|e| Error::io(format!("blob {d}"), e))
    }

    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, Error> {
        std::fs::read(self.path(d)).map_err(|e| Error::io(format!("reading blob {d}"), e))
    }

    /// A blob as a stream (layers are too big to read whole).
    pub fn open_blob(&self, d: &Digest) -> Result<std::fs::File, Error> {
        std::fs::File::open(self.path(d)).map_err(|e| Error::io(format!("opening blob {d}"), e))
    }

    /// Stores bytes whose digest is computed here.
    pub fn put(&self, data: &[u8]) -> Result<Digest, Error> {
        let d = Digest::sha256_of(data);
        if self.has(&d) {
            return Ok(d);
        }
        let mut w = self.writer(Some(&d))?;
        w.write_all(data).map_err(|e| Error::io("writing blob", e))?;
        w.commit()
    }

    /// A writer for a new blob; with `expected`, `commit` refuses content of another digest.
    pub fn writer(&self, expected: Option<&Digest>) -> Result<BlobWriter, Error> {
        let tmp = self.root.join("ingest").join(format!("{}-{:016x}", std::process::id(), rand::random::<u64>()));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let file = std::io::BufWriter::with_capacity(256 * 1024, file);
        Ok(BlobWriter { file, tmp, digester: Digester::new(), expected: expected.cloned(), blobs: self.root.join("blobs/sha256"), done: false })
    }

    pub fn remove(&self, d: &Digest) -> Result<(), Error> {
        match std::fs::remove_file(self.path(d)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(format!("removing blob {d}"), e)),
            _ => Ok(()),
        }
    }

    /// Every stored blob (for GC of unreferenced content).
    pub fn list(&self) -> Vec<Digest> {
        let Ok(entries) = std::fs::read_dir(self.root.join("blobs/sha256")) else { return Vec::new() };
        entries.flatten().filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok()).collect()
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.digester.size()
    }

    /// The digest of what was written so far.
    pub fn digest(&self) -> Digest {
        self.digester.clone().finish()
    }

    /// Verifies against the expected digest (when given), fsyncs and renames into place.
    pub fn commit(mut self) -> Result<Digest, Error> {
        let digest = self.digest();
        if let Some(want) = &self.expected {
            if *want != digest {
                return Err(Error::DigestMismatch { expected: want.to_string(), actual: digest.to_string() });
            }
        }
        self.file.flush().and_then(|()| self.file.get_ref().sync_all()).map_err(|e| Error::io("syncing blob", e))?;
        let dest = self.blobs.join(digest.hex());
        std::fs::rename(&self.tmp, &dest).map_err(|e| Error::io(format!("committing blob {digest}"), e))?;
        self.done = true;
        // The rename itself must reach the disk before anyone records the digest.
        if let Ok(dir) = std::fs::File::open(&self.blobs) {
            let _ = dir.sync_all();
        }
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

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).expect("ls").count()
    }

    #[test]
    fn a_committed_blob_is_found_by_its_digest() {
        let dir = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(dir.path()).expect("open");
        let d = cs.put(b"hello").expect("put");
        assert_eq!(d.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(cs.read(&d).expect("read"), b"hello");
        assert_eq!(cs.size(&d).expect("size"), 5);
        assert_eq!(cs.list(), vec![d.clone()]);
        let mut w = cs.writer(Some(&d)).expect("writer");
        w.write_all(b"hello").expect("write");
        assert_eq!(w.commit().expect("same content again"), d);
        assert_eq!(count(&dir.path().join("ingest")), 0);
    }

    #[test]
    fn a_mismatched_or_abandoned_blob_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(dir.path()).expect("open");
        let wrong = Digest::sha256_of(b"something else");
        let mut w = cs.writer(Some(&wrong)).expect("writer");
        w.write_all(b"x").expect("write");
        assert!(matches!(w.commit(), Err(Error::DigestMismatch { .. })));
        let mut w = cs.writer(None).expect("writer");
        w.write_all(b"half a layer").expect("write");
        drop(w);
        assert_eq!(count(&dir.path().join("ingest")), 0);
        assert_eq!(count(&dir.path().join("blobs/sha256")), 0);
    }

    #[test]
    fn leftovers_of_a_crash_are_cleaned_at_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let cs = ContentStore::open(dir.path()).expect("open");
        let mut w = cs.writer(None).expect("writer");
        w.write_all(b"partial").expect("write");
        std::mem::forget(w);
        assert_eq!(count(&dir.path().join("ingest")), 1);
        ContentStore::open(dir.path()).expect("reopen");
        assert_eq!(count(&dir.path().join("ingest")), 0);
    }
}
