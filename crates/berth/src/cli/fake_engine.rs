//! A scripted Docker API server on a unix socket, for testing the CLI's request flows (order of
//! calls, hijacked streams, header-first waits) without the real engine.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// How the fake answers `run`'s calls.
#[derive(Clone, Default)]
pub struct Script {
    /// Answer create with 404 "No such image".
    pub missing_image: bool,
    /// Answer start with 500 and this message.
    pub start_error: Option<String>,
    /// Frames written on the attach stream after start: (stream, payload).
    pub frames: Vec<(u8, Vec<u8>)>,
    pub exit_code: i64,
}

pub struct FakeEngine {
    pub socket: PathBuf,
    /// Every request line, in arrival order.
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

struct Shared {
    script: Script,
    log: Arc<Mutex<Vec<String>>>,
    started: watch::Sender<bool>,
    wait_registered: Mutex<bool>,
    attached: Mutex<bool>,
}

impl FakeEngine {
    /// Binds the socket and serves on the current tokio runtime.
    pub fn start(script: Script) -> FakeEngine {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let socket = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&socket).unwrap_or_else(|e| panic!("bind: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared { script, log: log.clone(), started: watch::Sender::new(false), wait_registered: Mutex::new(false), attached: Mutex::new(false) });
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, shared.clone()));
            }
        });
        FakeEngine { socket, log, _dir: dir }
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

async fn read_request(conn: &mut UnixStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next().unwrap_or_default().to_string();
    Some((line, buf[head_end..].to_vec()))
}

fn reply(status: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

async fn serve(mut conn: UnixStream, s: Arc<Shared>) {
    let Some((line, _body)) = read_request(&mut conn).await else { return };
    if let Ok(mut l) = s.log.lock() {
        l.push(line.clone());
    }
    let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
    let path = path.strip_prefix("/v1.44").unwrap_or(&path);
    if path.starts_with("/containers/create") {
        let r = if s.script.missing_image {
            reply("404 Not Found", r#"{"message":"No such image: bb:2"}"#)
        } else {
            reply("201 Created", r#"{"Id":"c1","Warnings":[]}"#)
        };
        let _ = conn.write_all(&r).await;
    } else if path.starts_with("/containers/c1/attach") {
        if let Ok(mut a) = s.attached.lock() {
            *a = true;
        }
        let head = "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
        let _ = conn.write_all(head.as_bytes()).await;
        let _ = s.started.subscribe().wait_for(|v| *v).await;
        for (stream, payload) in &s.script.frames {
            let mut frame = vec![*stream, 0, 0, 0];
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(payload);
            let _ = conn.write_all(&frame).await;
        }
        let _ = conn.shutdown().await;
    } else if path.starts_with("/containers/c1/wait") {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        if let Ok(mut w) = s.wait_registered.lock() {
            *w = true;
        }
        let _ = s.started.subscribe().wait_for(|v| *v).await;
        let body = format!("{{\"StatusCode\":{},\"Error\":null}}\n", s.script.exit_code);
        let _ = conn.write_all(format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes()).await;
    } else if path.starts_with("/containers/c1/start") {
        // An attached run must have its wait registered first (a detached one need not wait).
        let attached = s.attached.lock().map(|a| *a).unwrap_or(false);
        let registered = s.wait_registered.lock().map(|w| *w).unwrap_or(false);
        if attached && !registered {
            let _ = conn.write_all(&reply("500 Internal Server Error", r#"{"message":"start before wait"}"#)).await;
        } else if let Some(msg) = &s.script.start_error {
            let _ = conn.write_all(&reply("500 Internal Server Error", &serde_json::json!({ "message": msg }).to_string())).await;
        } else {
            let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
            s.started.send_replace(true);
        }
    } else if path.starts_with("/containers/c1/exec") {
        let _ = conn.write_all(&reply("201 Created", r#"{"Id":"e1"}"#)).await;
    } else if path.starts_with("/exec/e1/start") {
        let head = "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
        let _ = conn.write_all(head.as_bytes()).await;
        let _ = conn.write_all(&[1, 0, 0, 0, 0, 0, 0, 3, b'i', b'n', b'\n']).await;
        let _ = conn.shutdown().await;
    } else if path.starts_with("/exec/e1/json") {
        let body = serde_json::json!({"Running": false, "ExitCode": s.script.exit_code}).to_string();
        let _ = conn.write_all(&reply("200 OK", &body)).await;
    } else if path.starts_with("/containers/c1/json") {
        let _ = conn.write_all(&reply("200 OK", r#"{"Id":"c1","State":{"Status":"running"}}"#)).await;
    } else if path.starts_with("/images/create") {
        // What Docker Hub answers for a repository that does not exist.
        let msg = r#"{"message":"pull access denied for bb, repository does not exist or may require 'docker login'"}"#;
        let _ = conn.write_all(&reply("404 Not Found", msg)).await;
    } else if path.starts_with("/images/bb:1/json") {
        let _ = conn.write_all(&reply("200 OK", r#"{"Id":"sha256:abc","Os":"linux"}"#)).await;
    } else if path.starts_with("/containers/") && path.ends_with("/json") {
        let name = path.trim_start_matches("/containers/").trim_end_matches("/json");
        let _ = conn.write_all(&reply("404 Not Found", &format!(r#"{{"message":"No such container: {name}"}}"#))).await;
    } else {
        let _ = conn.write_all(&reply("404 Not Found", r#"{"message":"page not found"}"#)).await;
    }
}
