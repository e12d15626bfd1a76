//! A minimal HTTP/1.1 client over the engine's unix socket, for what bollard does not do:
//! return a response's raw JSON (inspect and lists print and template the engine's JSON exactly,
//! and do not fail on a field bollard's typed models require), tell when a response's headers
//! have arrived before its body (`wait` must be registered before `start`, as docker's CLI does),
//! and hand over hijacked and streamed bodies byte for byte (bollard guesses between raw and
//! multiplexed output from the first byte, which misreads tty output starting with 0, 1 or 2).
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;

use super::{CliError, API_VERSION};

#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
}

/// A response whose headers are read and whose body is still on the wire.
pub struct Pending {
    head: Head,
    stream: UnixStream,
    already: Vec<u8>,
    host: String,
}

impl Pending {
    /// Reads the whole body (the server closes: we sent `Connection: close`).
    pub async fn body(self) -> Result<Vec<u8>, CliError> {
        let mut reader = self.reader();
        let mut all = Vec::new();
        while let Some(bytes) = reader.next().await? {
            all.extend_from_slice(&bytes);
        }
        Ok(all)
    }

    /// The body as it arrives, de-chunked.
    pub fn reader(self) -> BodyReader {
        let decode = if self.head.status == 101 {
            Decode::Raw
        } else if self.head.chunked {
            Decode::Chunked(Dechunker::default())
        } else {
            match self.head.content_length {
                Some(n) => Decode::Length(n),
                None => Decode::Raw,
            }
        };
        BodyReader { src: Box::new(self.stream), pending: self.already, decode, host: self.host }
    }

    /// A hijacked connection: its output as a raw reader, and its input.
    pub fn hijack(self) -> (BodyReader, OwnedWriteHalf) {
        let (read, write) = self.stream.into_split();
        (BodyReader { src: Box::new(read), pending: self.already, decode: Decode::Raw, host: self.host }, write)
    }
}

enum Decode {
    Raw,
    Length(usize),
    Chunked(Dechunker),
}

/// Reads a body incrementally.
pub struct BodyReader {
    src: Box<dyn AsyncRead + Unpin + Send>,
    pending: Vec<u8>,
    decode: Decode,
    host: String,
}

impl BodyReader {
    /// The next bytes of the body; `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, CliError> {
        loop {
            let raw = if self.pending.is_empty() {
                let mut chunk = vec![0u8; 16 * 1024];
                let n = self.src.read(&mut chunk).await.map_err(|e| CliError::io(&self.host, e))?;
                chunk.truncate(n);
                chunk
            } else {
                std::mem::take(&mut self.pending)
            };
            let eof = raw.is_empty();
            let out = match &mut self.decode {
                Decode::Raw => raw,
                Decode::Length(left) => {
                    let take = raw.len().min(*left);
                    *left -= take;
                    raw[..take].to_vec()
                }
                Decode::Chunked(d) => d.push(&raw).ok_or_else(|| CliError::Other("malformed chunked response from the engine".into()))?,
            };
            let done = match &self.decode {
                Decode::Raw => eof,
                Decode::Length(left) => *left == 0 || eof,
                Decode::Chunked(d) => d.done() || eof,
            };
            if eof {
                if let Decode::Length(left @ 1..) = self.decode {
                    return Err(CliError::Other(format!("the engine closed the connection with {left} bytes of the response missing")));
                }
                if matches!(&self.decode, Decode::Chunked(d) if !d.done()) {
                    return Err(CliError::Other("the engine closed the connection mid-response".into()));
                }
            }
            if !out.is_empty() {
                return Ok(Some(out));
            }
            if done {
                return Ok(None);
            }
        }
    }
}

/// The engine's socket and its `unix://` spelling for messages.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub socket: PathBuf,
}

impl Endpoint {
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Sends a request and returns once the response headers have arrived. Non-2xx statuses
    /// become `CliError::Daemon` with the engine's message.
    pub async fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Pending, CliError> {
        self.exchange(method, path, body, false, &[]).await
    }

    /// `send` with extra request headers (X-Registry-Auth).
    pub async fn send_with(&self, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, String)]) -> Result<Pending, CliError> {
        self.exchange(method, path, body, false, headers).await
    }

    /// Like `send`, asking to hijack the connection (attach, exec start): 101 is expected.
    pub async fn upgrade(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<Pending, CliError> {
        self.exchange(method, path, body, true, &[]).await
    }

    async fn exchange(&self, method: &str, path: &str, body: Option<&[u8]>, upgrade: bool, headers: &[(&str, String)]) -> Result<Pending, CliError> {
        let host = self.host();
        let mut stream = connect(&self.socket, &host).await?;
        stream.write_all(&request_bytes(method, path, body, upgrade, headers)).await.map_err(|e| CliError::io(&host, e))?;
        let mut buf = Vec::with_capacity(4096);
        let head_end = loop {
            if let Some(end) = find_head_end(&buf) {
                break end;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.map_err(|e| CliError::io(&host, e))?;
            if n == 0 {
                return Err(CliError::Other(format!("the engine at {host} closed the connection without answering")));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = parse_head(&buf[..head_end]).ok_or_else(|| CliError::Other(format!("malformed HTTP response from {host}")))?;
        let pending = Pending { head, stream, already: buf[head_end..].to_vec(), host };
        let status = pending.head.status;
        if (200..300).contains(&status) || status == 304 || (upgrade && status == 101) {
            return Ok(pending);
        }
        let body = pending.body().await?;
        Err(CliError::Daemon { status, message: error_message(&body) })
    }

    /// A GET (or other request) whose JSON answer is returned as is.
    pub async fn json(&self, method: &str, path: &str) -> Result<serde_json::Value, CliError> {
        let body = self.send(method, path, None).await?.body().await?;
        serde_json::from_slice(&body).map_err(|e| CliError::Other(format!("invalid JSON from the engine for {path}: {e}")))
    }
}

async fn connect(socket: &Path, host: &str) -> Result<UnixStream, CliError> {
    UnixStream::connect(socket).await.map_err(|e| CliError::io(host, e))
}

fn request_bytes(method: &str, path: &str, body: Option<&[u8]>, upgrade: bool, headers: &[(&str, String)]) -> Vec<u8> {
    let connection = if upgrade { "Connection: Upgrade\r\nUpgrade: tcp" } else { "Connection: close" };
    let mut req = format!("{method} /v{API_VERSION}{path} HTTP/1.1\r\nHost: berth\r\nUser-Agent: berth-cli\r\n{connection}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    } else if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Where the header block ends (just past the blank line), if it has arrived.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn parse_head(raw: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut head = Head { status, chunked: false, content_length: None };
    for line in lines {
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
            head.chunked = true;
        } else if k.eq_ignore_ascii_case("content-length") {
            head.content_length = v.parse().ok();
        }
    }
    Some(head)
}

/// Incremental decoder of a chunked body.
#[derive(Debug, Default)]
pub struct Dechunker {
    buf: Vec<u8>,
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Done,
}

impl Dechunker {
    /// Feeds bytes; returns the body bytes they complete, or `None` if the framing is broken.
    pub fn push(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let rest = &self.buf[pos..];
            match self.state {
                ChunkState::Done => break,
                ChunkState::Size => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else { break };
                    let text = std::str::from_utf8(&rest[..end]).ok()?;
                    let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
                    pos += end + 2;
                    self.state = if size == 0 { ChunkState::Done } else { ChunkState::Data(size) };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = rest.len().min(left);
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.state = if take == left { ChunkState::DataEnd } else { ChunkState::Data(left - take) };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        break;
                    }
                    if &rest[..2] != b"\r\n" {
                        return None;
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
            }
        }
        self.buf.drain(..pos);
        Some(out)
    }

    pub fn done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Decodes a complete chunked body; `None` if it is malformed or cut short.
#[cfg(test)]
fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let mut d = Dechunker::default();
    let out = d.push(raw)?;
    d.done().then_some(out)
}

/// The `message` of Docker's `{"message": …}` error bodies, or the body itself.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// Percent-encodes a query value.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_parsed_case_insensitively() {
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h, Some(Head { status: 404, chunked: false, content_length: Some(12) }));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.map(|h| h.chunked), Some(true));
        assert_eq!(parse_head(b"garbage"), None);
    }

    #[test]
    fn head_end_is_found_only_once_complete() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\n{}"), Some(19));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n"), Some(b"Wikipedia".to_vec()));
        assert_eq!(dechunk(b"4\r\nWi"), None, "a cut-short body is not silently accepted");
        assert_eq!(dechunk(b"3\r\nWiki\r\n0\r\n\r\n"), None, "a wrong chunk size is not silently accepted");
    }

    #[test]
    fn chunks_split_anywhere_decode_the_same() {
        let wire = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        for cut in 1..wire.len() {
            let mut d = Dechunker::default();
            let mut out = d.push(&wire[..cut]).unwrap_or_default();
            out.extend(d.push(&wire[cut..]).unwrap_or_default());
            assert_eq!(out, b"Wikipedia", "cut at {cut}");
            assert!(d.done());
        }
    }

    #[test]
    fn upgrade_requests_ask_for_a_hijack() {
        let r = String::from_utf8(request_bytes("POST", "/containers/x/attach?stream=1", None, true, &[])).unwrap_or_default();
        assert!(r.contains("Connection: Upgrade\r\nUpgrade: tcp\r\n") && !r.contains("close"), "{r}");
    }

    #[test]
    fn error_messages_come_from_docker_json() {
        assert_eq!(error_message(br#"{"message":"No such container: x"}"#), "No such container: x");
        assert_eq!(error_message(b"plain text\n"), "plain text");
    }

    #[test]
    fn requests_carry_the_pinned_version_and_a_length() {
        let r = String::from_utf8(request_bytes("POST", "/containers/x/wait?condition=next-exit", None, false, &[])).unwrap_or_default();
        assert!(r.starts_with("POST /v1.44/containers/x/wait?condition=next-exit HTTP/1.1\r\n"), "{r}");
        assert!(r.contains("Content-Length: 0\r\n") && r.ends_with("\r\n\r\n"));
        let r = String::from_utf8(request_bytes("POST", "/x", Some(b"{}"), false, &[])).unwrap_or_default();
        assert!(r.contains("Content-Length: 2\r\n") && r.ends_with("\r\n\r\n{}"));
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn send_returns_when_headers_arrive_before_the_body() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let socket = dir.path().join("engine.sock");
        runtime().block_on(async {
            let listener = tokio::net::UnixListener::bind(&socket).unwrap_or_else(|e| panic!("{e}"));
            let (release, released) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
                let mut req = [0u8; 1024];
                let n = conn.read(&mut req).await.unwrap_or(0);
                assert!(req[..n].starts_with(b"POST /v1.44/containers/c1/wait?condition=next-exit "));
                conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap_or_default();
                // The body only comes once the client has seen the headers (as a container
                // exits only after the CLI started it).
                let _ = released.await;
                conn.write_all(b"1d\r\n{\"StatusCode\":3,\"Error\":null}\r\n0\r\n\r\n").await.unwrap_or_default();
            });
            let ep = Endpoint { socket: socket.clone() };
            let pending = ep.send("POST", "/containers/c1/wait?condition=next-exit", None).await;
            let pending = pending.unwrap_or_else(|e| panic!("{e}"));
            let _ = release.send(());
            let body = pending.body().await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(body, br#"{"StatusCode":3,"Error":null}"#);
            server.await.unwrap_or_else(|e| panic!("{e}"));
        });
    }

    #[test]
    fn error_statuses_carry_the_engine_message() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let socket = dir.path().join("engine.sock");
        runtime().block_on(async {
            let listener = tokio::net::UnixListener::bind(&socket).unwrap_or_else(|e| panic!("{e}"));
            tokio::spawn(async move {
                let (mut conn, _) = listener.accept().await.unwrap_or_else(|e| panic!("{e}"));
                let mut req = [0u8; 1024];
                let _ = conn.read(&mut req).await;
                let body = r#"{"message":"No such container: x"}"#;
                let resp = format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                conn.write_all(resp.as_bytes()).await.unwrap_or_default();
            });
            let ep = Endpoint { socket: socket.clone() };
            match ep.json("GET", "/containers/x/json").await {
                Err(CliError::Daemon { status: 404, message }) => assert_eq!(message, "No such container: x"),
                other => panic!("expected a 404, got {:?}", other.map(|_| ())),
            }
        });
    }

    #[test]
    fn a_socket_nobody_listens_on_is_unreachable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let socket = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap_or_else(|e| panic!("{e}")));
        let r = runtime().block_on(Endpoint { socket }.json("GET", "/info"));
        assert!(matches!(r, Err(CliError::Unreachable { .. })), "{:?}", r.map(|_| ()));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape(r#"{"a":["b=c"]}"#), "%7B%22a%22%3A%5B%22b%3Dc%22%5D%7D");
        assert_eq!(query_escape("bb:1"), "bb%3A1");
    }
}
