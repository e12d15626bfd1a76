//! Docker's json-file log format: `{"log":"…","stream":"stdout","time":"…"}` per line. Output is
//! split at newlines, or at 16 KiB when a line runs longer; invalid UTF-8 is replaced with U+FFFD
//! as Docker does. Each batch of container output becomes one `write`, so a reader following the
//! file sees whole entries.
use std::borrow::Cow;
use std::io::Write;

use serde::Serialize;

/// Longest entry without a newline; Docker's json-file driver uses the same bound.
pub const MAX_PARTIAL: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    log: Cow<'a, str>,
    stream: &'static str,
    time: &'a str,
}

pub struct LogWriter<W: Write> {
    out: W,
    /// Bytes of an unfinished line, per stream.
    partial: [Vec<u8>; 2],
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn encode(batch: &mut Vec<u8>, stream: Stream, bytes: &[u8], time: &str) -> std::io::Result<()> {
    let entry = Entry { log: String::from_utf8_lossy(bytes), stream: stream.name(), time };
    serde_json::to_writer(&mut *batch, &entry).map_err(std::io::Error::other)?;
    batch.push(b'\n');
    Ok(())
}

impl<W: Write> LogWriter<W> {
    pub fn new(out: W) -> Self {
        LogWriter { out, partial: [Vec::new(), Vec::new()] }
    }

    /// Logs `data` from `stream`: every complete line, and 16 KiB pieces of an overlong one; the
    /// rest waits for more data or for [`LogWriter::finish`].
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let time = now();
        let mut buf = std::mem::take(&mut self.partial[stream.index()]);
        buf.extend_from_slice(data);
        let mut batch = Vec::new();
        let mut start = 0;
        loop {
            let rest = &buf[start..];
            let end = match rest.iter().take(MAX_PARTIAL).position(|b| *b == b'\n') {
                Some(i) => i + 1,
                None if rest.len() >= MAX_PARTIAL => MAX_PARTIAL,
                None => break,
            };
            encode(&mut batch, stream, &rest[..end], &time)?;
            start += end;
        }
        buf.drain(..start);
        self.partial[stream.index()] = buf;
        self.emit(&batch)
    }

    /// Logs what is left of `stream` (at EOF).
    pub fn finish(&mut self, stream: Stream) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.partial[stream.index()]);
        if rest.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::new();
        encode(&mut batch, stream, &rest, &now())?;
        self.emit(&batch)
    }

    fn emit(&mut self, batch: &[u8]) -> std::io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.out.write_all(batch)?;
        self.out.flush()
    }

    #[cfg(test)]
    fn output(&self) -> &W {
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(out: &[u8]) -> Vec<serde_json::Value> {
        assert!(out.is_empty() || out.ends_with(b"\n"), "entries end with a newline");
        out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).expect("each line is json")).collect()
    }

    fn logs(out: &[u8]) -> Vec<String> {
        entries(out).iter().map(|v| v["log"].as_str().expect("log").to_string()).collect()
    }

    #[test]
    fn lines_split_at_newlines_and_partials_wait_until_eof() {
        let mut w = LogWriter::new(Vec::new());
        w.write(Stream::Stdout, b"a\nb").expect("w");
        w.write(Stream::Stderr, b"err\n").expect("w");
        w.write(Stream::Stdout, b"c\nd\n").expect("w");
        w.write(Stream::Stdout, b"tail").expect("w");
        assert_eq!(logs(w.output()), vec!["a\n", "err\n", "bc\n", "d\n"]);
        w.finish(Stream::Stdout).expect("f");
        w.finish(Stream::Stderr).expect("nothing left");
        let e = entries(w.output());
        assert_eq!(e.len(), 5);
        assert_eq!(e[4]["log"], "tail");
        let streams: Vec<&str> = e.iter().map(|v| v["stream"].as_str().expect("stream")).collect();
        assert_eq!(streams, vec!["stdout", "stderr", "stdout", "stdout", "stdout"]);
    }

    #[test]
    fn partial_lines_of_the_two_streams_do_not_mix() {
        let mut w = LogWriter::new(Vec::new());
        w.write(Stream::Stdout, b"out-").expect("w");
        w.write(Stream::Stderr, b"err-").expect("w");
        w.write(Stream::Stderr, b"end\n").expect("w");
        w.write(Stream::Stdout, b"end\n").expect("w");
        assert_eq!(logs(w.output()), vec!["err-end\n", "out-end\n"]);
    }

    #[test]
    fn entries_carry_an_rfc3339_nanosecond_utc_time() {
        let mut w = LogWriter::new(Vec::new());
        w.write(Stream::Stdout, b"x\n").expect("w");
        let e = entries(w.output());
        let t = e[0]["time"].as_str().expect("time");
        assert!(t.ends_with('Z'), "{t}");
        let parsed = chrono::DateTime::parse_from_rfc3339(t).expect("rfc3339");
        assert!((chrono::Utc::now() - parsed.with_timezone(&chrono::Utc)).num_seconds() < 60);
        assert_eq!(t.split('.').nth(1).map(|f| f.len()), Some(10), "nine digits and Z: {t}");
    }

    #[test]
    fn a_long_line_is_cut_into_16k_pieces() {
        let mut w = LogWriter::new(Vec::new());
        w.write(Stream::Stdout, &vec![b'x'; MAX_PARTIAL * 2 + 10]).expect("w");
        assert_eq!(logs(w.output()).iter().map(String::len).collect::<Vec<_>>(), vec![MAX_PARTIAL, MAX_PARTIAL]);
        w.write(Stream::Stdout, b"y\n").expect("w");
        let l = logs(w.output());
        assert_eq!(l[2], format!("{}y\n", "x".repeat(10)));
    }

    #[test]
    fn a_newline_just_past_16k_does_not_make_an_overlong_entry() {
        let mut data = vec![b'x'; MAX_PARTIAL];
        data.extend_from_slice(b"\n");
        let mut w = LogWriter::new(Vec::new());
        w.write(Stream::Stdout, &data).expect("w");
        assert_eq!(logs(w.output()), vec!["x".repeat(MAX_PARTIAL), "\n".to_string()]);
    }

    #[test]
    fn output_arriving_in_small_pieces_is_joined_into_one_entry() {
        let mut w = LogWriter::new(Vec::new());
        for b in b"hello world\n" {
            w.write(Stream::Stdout, &[*b]).expect("w");
        }
        assert_eq!(logs(w.output()), vec!["hello world\n"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_control_bytes_are_escaped() {
        let mut w = LogWriter::new(Vec::new());
        w.write(Stream::Stdout, b"\xff\xfe bin\x00\x1b[0m \"q\" \\ t\tab\r\n").expect("w");
        let raw = String::from_utf8(w.output().clone()).expect("the log file is utf-8");
        assert!(!raw.contains('\u{1b}') && !raw.contains('\0'), "control bytes escaped: {raw}");
        assert_eq!(logs(w.output()), vec!["\u{fffd}\u{fffd} bin\u{0}\u{1b}[0m \"q\" \\ t\tab\r\n"]);
    }

    #[test]
    fn a_multibyte_character_cut_at_16k_is_replaced_not_dropped() {
        let mut data = vec![b'x'; MAX_PARTIAL - 1];
        data.extend_from_slice("é\n".as_bytes());
        let mut w = LogWriter::new(Vec::new());
        w.write(Stream::Stdout, &data).expect("w");
        let l = logs(w.output());
        assert_eq!(l.len(), 2);
        assert!(l[0].ends_with('\u{fffd}') && l[1] == "\u{fffd}\n", "{:?}", &l[1]);
    }
}
