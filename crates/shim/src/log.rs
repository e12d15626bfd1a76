//! Docker's json-file log format: `{"log":"…","stream":"stdout","time":"…"}` per line. Lines split at
//! newlines, or at 16 KiB without one; invalid UTF-8 is replaced as Docker does.
use std::io::Write;

const MAX_PARTIAL: usize = 16 * 1024;

pub struct LogWriter<W: Write> {
    out: W,
    partial: [Vec<u8>; 2],
}

pub const STDOUT: usize = 0;
pub const STDERR: usize = 1;

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl<W: Write> LogWriter<W> {
    pub fn new(out: W) -> Self {
        LogWriter { out, partial: [Vec::new(), Vec::new()] }
    }

    fn emit(&mut self, stream: usize, bytes: &[u8]) -> std::io::Result<()> {
        let line = serde_json::json!({
            "log": String::from_utf8_lossy(bytes),
            "stream": if stream == STDERR { "stderr" } else { "stdout" },
            "time": now(),
        });
        let mut data = line.to_string().into_bytes();
        data.push(b'\n');
        self.out.write_all(&data)
    }

    pub fn write(&mut self, stream: usize, data: &[u8]) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
            self.emit(stream, &buf[start..start + i + 1])?;
            start += i + 1;
        }
        while buf.len() - start >= MAX_PARTIAL {
            self.emit(stream, &buf[start..start + MAX_PARTIAL])?;
            start += MAX_PARTIAL;
        }
        self.partial[stream] = buf[start..].to_vec();
        Ok(())
    }

    /// Writes what is left of a stream (at EOF).
    pub fn flush_stream(&mut self, stream: usize) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.partial[stream]);
        if !rest.is_empty() {
            self.emit(stream, &rest)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(out: &[u8]) -> Vec<serde_json::Value> {
        out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).expect("json")).collect()
    }

    #[test]
    fn lines_split_at_newlines_and_keep_partials_until_eof() {
        let mut w = LogWriter::new(Vec::new());
        w.write(STDOUT, b"a\nb").expect("w");
        w.write(STDERR, b"err\n").expect("w");
        w.write(STDOUT, b"c\n").expect("w");
        w.write(STDOUT, b"tail").expect("w");
        w.flush_stream(STDOUT).expect("f");
        let l = lines(&w.out);
        let logs: Vec<&str> = l.iter().map(|v| v["log"].as_str().expect("log")).collect();
        assert_eq!(logs, vec!["a\n", "err\n", "bc\n", "tail"]);
        assert_eq!(l[1]["stream"], "stderr");
    }

    #[test]
    fn long_lines_split_at_16k_and_binary_is_replaced() {
        let mut w = LogWriter::new(Vec::new());
        w.write(STDOUT, &vec![b'x'; MAX_PARTIAL + 10]).expect("w");
        w.write(STDOUT, b"\xff\n").expect("w");
        let l = lines(&w.out);
        assert_eq!(l[0]["log"].as_str().expect("log").len(), MAX_PARTIAL);
        assert!(l[1]["log"].as_str().expect("log").ends_with("\u{fffd}\n"));
    }
}
