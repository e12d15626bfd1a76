//! Container records on disk: one `container.json` per container, replaced atomically.
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::ContainerRecord;

/// Writes `data` to `path` through a temporary file and a rename, so a killed engine leaves the old or
/// the new file, never a torn one. No fsync: records are rewritten on every state change on the hot
/// path of `run`, and after a power loss the shims (and so the containers) are gone anyway; restore
/// reconciles from what the shims report.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(data).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
}

pub fn save(dir: &Path, record: &ContainerRecord) -> Result<()> {
    let data = serde_json::to_vec_pretty(record).map_err(|e| Error::Internal(format!("encoding container record: {e}")))?;
    write_atomic(&dir.join("container.json"), &data)
}

/// Every readable record under `containers/`; unreadable ones are logged and skipped, not fatal.
pub fn load_all(containers_dir: &Path) -> Vec<ContainerRecord> {
    let Ok(entries) = std::fs::read_dir(containers_dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let path = e.path().join("container.json");
            let data = std::fs::read(&path).ok()?;
            match serde_json::from_slice(&data) {
                Ok(r) => Some(r),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "skipping unreadable container record");
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f.json");
        write_atomic(&p, b"first, longer content").expect("write");
        write_atomic(&p, b"second").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"second");
        assert!(!dir.path().join("f.tmp").exists());
    }
}
