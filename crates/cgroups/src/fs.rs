//! Reading and writing cgroup files; every error names the file (and the value written).

use std::collections::BTreeMap;
use std::path::Path;

use crate::Error;

pub(crate) fn write(path: &Path, value: &str) -> Result<(), Error> {
    std::fs::write(path, value).map_err(|source| Error::Write { path: path.to_path_buf(), value: value.to_string(), source })
}

/// The file's text, or None when it does not exist (a controller this host or kernel lacks).
pub(crate) fn read(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path: path.to_path_buf(), source }),
    }
}

/// A single-number file; "max" reads as None (unlimited), as does a missing file.
pub(crate) fn read_limit(path: &Path) -> Result<Option<u64>, Error> {
    match read(path)? {
        None => Ok(None),
        Some(s) if s.trim() == "max" => Ok(None),
        Some(s) => parse_u64(path, s.trim()).map(Some),
    }
}

/// A single-number file; missing reads as 0 (nothing accounted).
pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    match read(path)? {
        None => Ok(0),
        Some(s) => parse_u64(path, s.trim()),
    }
}

fn parse_u64(path: &Path, s: &str) -> Result<u64, Error> {
    s.parse().map_err(|_| Error::Parse { path: path.to_path_buf(), value: s.to_string() })
}

/// "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control); lines that do
/// not hold a number are left out. Missing file: empty map.
pub(crate) fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>, Error> {
    Ok(read(path)?.map(|s| parse_keyed(&s)).unwrap_or_default())
}

pub(crate) fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Space-separated numbers (cpuacct.usage_percpu).
pub(crate) fn read_list(path: &Path) -> Result<Vec<u64>, Error> {
    let Some(s) = read(path)? else { return Ok(Vec::new()) };
    s.split_whitespace().map(|v| parse_u64(path, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_parse_into_numbers_and_skip_the_rest() {
        let m = parse_keyed("cache 4096\nrss 8192\nsome text\nusage_usec 12\n");
        assert_eq!(m.get("cache"), Some(&4096));
        assert_eq!(m.get("usage_usec"), Some(&12));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_failed_write_names_the_file_and_the_value() {
        let err = write(Path::new("/nonexistent-dir/memory.max"), "536870912").expect_err("no such dir");
        let text = err.to_string();
        assert!(text.starts_with("writing \"536870912\" to /nonexistent-dir/memory.max: "), "{text}");
    }

    #[test]
    fn max_reads_as_unlimited_and_garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("pids.max");
        std::fs::write(&f, "max\n").expect("write");
        assert_eq!(read_limit(&f).expect("read"), None);
        std::fs::write(&f, "12\n").expect("write");
        assert_eq!(read_limit(&f).expect("read"), Some(12));
        std::fs::write(&f, "lots\n").expect("write");
        assert!(read_limit(&f).expect_err("garbage").to_string().contains("pids.max"));
    }
}
