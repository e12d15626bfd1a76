//! Reading the json-file logs the shims write: `logs` (with follow, tail, since, until) and the
//! output side of `attach`, which follows the same file while the container runs.
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::error::{Error, Result};
use crate::model::{ContainerRecord, Status};
use crate::{Engine, Observed};

/// How often a follower looks for new lines while the container runs; exits wake it at once.
const FOLLOW_POLL: Duration = Duration::from_millis(10);
/// With inotify a follower sleeps until the log grows; this bounds the wait should an event be
/// lost (an overflowed queue) all the same.
const FOLLOW_SAFETY_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub stream: Stream,
    pub data: Vec<u8>,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Unix seconds (fractional); entries before are skipped.
    pub since: Option<f64>,
    pub until: Option<f64>,
}

pub type LogStream = mpsc::Receiver<LogEntry>;

#[derive(Deserialize)]
struct JsonLine {
    log: String,
    stream: String,
    time: String,
}

fn parse_line(line: &str) -> Option<LogEntry> {
    let j: JsonLine = serde_json::from_str(line).ok()?;
    let stream = if j.stream == "stderr" { Stream::Stderr } else { Stream::Stdout };
    Some(LogEntry { stream, data: j.log.into_bytes(), time: j.time })
}

fn unix_time(rfc3339: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
        .unwrap_or(0.0)
}

impl LogOptions {
    fn wants(&self, e: &LogEntry) -> bool {
        let stream_ok = match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        let t = || unix_time(&e.time);
        stream_ok && self.since.is_none_or(|s| t() >= s) && self.until.is_none_or(|u| t() <= u)
    }
}

impl Engine {
    /// `GET /containers/{id}/logs`. Returns the record too (the API needs `Config.Tty` to frame).
    pub async fn logs(&self, name: &str, opts: LogOptions) -> Result<(ContainerRecord, LogStream)> {
        let c = self.lookup(name)?;
        let rec = c.snapshot();
        let path = self.log_path(&rec.id);
        let rx = c.observed.subscribe();
        let base = rec.state.exit_count;
        let follow = opts.follow && rec.state.running();
        let (tx, out) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut offset = 0;
            if let Some(n) = opts.tail {
                offset = tail_offset(&path, n).await;
            }
            let done = move |o: &Observed| !follow || o.removed || o.state.exit_count > base;
            follow_file(path, None, offset, rx, done, tx, move |e| opts.wants(e)).await;
        });
        Ok((rec, out))
    }

    /// The output side of `attach`: every line the container writes from now until it exits. Attaching
    /// before start is allowed (that is how `docker run` works) and sees the whole run.
    pub async fn attach_output(&self, name: &str, stdout: bool, stderr: bool) -> Result<(ContainerRecord, LogStream)> {
        let c = self.lookup(name)?;
        let rec = c.snapshot();
        if !matches!(rec.state.status, Status::Created | Status::Running | Status::Exited) {
            return Err(Error::Conflict(format!("You cannot attach to a {} container", rec.state.status.as_str())));
        }
        let path = self.log_path(&rec.id);
        // The log is opened (made, if the container has not started yet: the shim appends to it)
        // before this returns: an attach before start must see output even when `--rm` deletes
        // the file before the follower first looks.
        let file = tokio::fs::OpenOptions::new().create(true).append(true).read(true).open(&path).await.ok();
        let offset = match &file {
            Some(f) => f.metadata().await.map(|m| m.len()).unwrap_or(0),
            None => 0,
        };
        let rx = c.observed.subscribe();
        let base = rec.state.exit_count;
        let (tx, out) = mpsc::channel(256);
        let opts = LogOptions { stdout, stderr, ..Default::default() };
        tokio::spawn(async move {
            let done = move |o: &Observed| {
                o.removed
                    || o.state.exit_count > base
                    // A failed start leaves the container created with an error: nothing will come.
                    || (o.state.status != Status::Running && !o.state.error.is_empty())
            };
            follow_file(path, file, offset, rx, done, tx, move |e| opts.wants(e)).await;
        });
        Ok((rec, out))
    }
}

/// Byte offset where the last `n` lines of the file begin.
async fn tail_offset(path: &PathBuf, n: usize) -> u64 {
    let Ok(data) = tokio::fs::read(path).await else { return 0 };
    if n == 0 {
        return data.len() as u64;
    }
    let mut seen = 0;
    for (i, b) in data.iter().enumerate().rev() {
        if *b == b'\n' && i + 1 != data.len() {
            seen += 1;
            if seen == n {
                return (i + 1) as u64;
            }
        }
    }
    0
}

/// Sends complete lines from `offset` on; when `done` holds, drains what is left and stops. Stops
/// early when the receiver goes away.
#[allow(clippy::too_many_arguments)]
async fn follow_file(
    path: PathBuf,
    opened: Option<tokio::fs::File>,
    offset: u64,
    mut rx: watch::Receiver<Observed>,
    done: impl Fn(&Observed) -> bool,
    tx: mpsc::Sender<LogEntry>,
    wants: impl Fn(&LogEntry) -> bool,
) {
    let mut reader: Option<BufReader<tokio::fs::File>> = None;
    let mut growth: Option<Growth> = None;
    if let Some(mut f) = opened {
        growth = Growth::watch(&path);
        if f.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
            reader = Some(BufReader::new(f));
        }
    }
    let mut line = String::new();
    loop {
        let finished = done(&rx.borrow_and_update());
        if reader.is_none() {
            // Watched before the first read, so no write after that read goes unnoticed.
            growth = Growth::watch(&path);
            if let Ok(mut f) = tokio::fs::File::open(&path).await {
                if f.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                    reader = Some(BufReader::new(f));
                }
            }
        }
        if let Some(r) = reader.as_mut() {
            loop {
                match r.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) if !line.ends_with('\n') => {
                        // A line still being written: it is read again, whole, next time.
                        let back = -(line.len() as i64);
                        let _ = r.seek(std::io::SeekFrom::Current(back)).await;
                        line.clear();
                        break;
                    }
                    Ok(_) => {
                        if let Some(e) = parse_line(line.trim_end_matches('\n')) {
                            if wants(&e) && tx.send(e).await.is_err() {
                                return;
                            }
                        }
                        line.clear();
                    }
                }
            }
        }
        if finished || tx.is_closed() {
            return;
        }
        tokio::select! {
            _ = Growth::wait(&mut growth) => {}
            changed = rx.changed() => if changed.is_err() { return },
        }
    }
}

/// Wakes a follower when its log file is written: an inotify watch on the file (one fd per
/// follower), or polling every 10 ms while the file does not exist yet or inotify is unavailable.
/// Polling alone woke every idle `logs -f` a hundred times a second and added up to 10 ms of lag.
struct Growth(inotify::EventStream<[u8; 1024]>);

impl Growth {
    fn watch(path: &std::path::Path) -> Option<Growth> {
        let inotify = inotify::Inotify::init().ok()?;
        inotify.watches().add(path, inotify::WatchMask::MODIFY | inotify::WatchMask::CLOSE_WRITE).ok()?;
        inotify.into_event_stream([0u8; 1024]).ok().map(Growth)
    }

    async fn wait(growth: &mut Option<Growth>) {
        use futures_util::StreamExt;
        let Some(g) = growth.as_mut() else {
            tokio::time::sleep(FOLLOW_POLL).await;
            return;
        };
        match tokio::time::timeout(FOLLOW_SAFETY_POLL, g.0.next()).await {
            Ok(Some(Ok(_))) | Err(_) => {}
            // The watch is gone (file removed, queue closed): poll from now on.
            Ok(Some(Err(_)) | None) => *growth = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_file_lines_parse_with_their_stream() {
        let e = parse_line(r#"{"log":"hi\n","stream":"stderr","time":"2026-01-01T00:00:00.5Z"}"#).expect("line");
        assert_eq!(e.stream, Stream::Stderr);
        assert_eq!(e.data, b"hi\n");
        assert!((unix_time(&e.time) - 1767225600.5).abs() < 1e-6);
    }

    #[tokio::test]
    async fn tail_counts_lines_from_the_end() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").expect("write");
        assert_eq!(tail_offset(&p, 1).await, 4);
        assert_eq!(tail_offset(&p, 2).await, 2);
        assert_eq!(tail_offset(&p, 10).await, 0);
        assert_eq!(tail_offset(&p, 0).await, 6);
    }
}
