//! The engine's side of the shim: launch one (`spawn`), talk to it (`Client`), or read the exit it
//! left behind (`read_exit`). Synchronous; the engine calls it from blocking threads.
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::protocol::{recv_line, send_line, ExitStatus, Request};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shim at {0} is not reachable: {1}")]
    Connect(PathBuf, std::io::Error),
    #[error("talking to the shim: {0}")]
    Io(#[from] std::io::Error),
    #[error("the shim closed the connection")]
    Closed,
    #[error("{0}")]
    Shim(String),
    #[error("bad reply from the shim: {0}")]
    BadReply(String),
}

/// How the engine wants a container run.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime_root: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    pub tty: bool,
    pub stdin: bool,
    pub seccomp_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub pid: i32,
}

/// The container did not start; `exit_code` is Docker's (127 not found, 126 not runnable, 125 other).
#[derive(Debug, Clone)]
pub struct SpawnError {
    pub message: String,
    pub exit_code: i32,
}

/// Runs `berth shim …` and returns once it reports the container started (or why not).
pub fn spawn(berth: &Path, cfg: &ShimConfig) -> Result<Started, SpawnError> {
    let mut cmd = Command::new(berth);
    cmd.arg("shim")
        .arg("--id").arg(&cfg.id)
        .arg("--bundle").arg(&cfg.bundle)
        .arg("--runtime-root").arg(&cfg.runtime_root)
        .arg("--state-dir").arg(&cfg.state_dir)
        .arg("--log").arg(&cfg.log);
    if cfg.tty {
        cmd.arg("--tty");
    }
    if cfg.stdin {
        cmd.arg("--stdin");
    }
    if let Some(c) = &cfg.seccomp_cache {
        cmd.arg("--seccomp-cache").arg(c);
    }
    let fail = |message: String| SpawnError { message, exit_code: 125 };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("starting the shim {}: {e}", berth.display())))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|_| fail(format!("the shim for {} died without reporting", cfg.id)))?;
    if let Some(pid) = v["pid"].as_i64() {
        return Ok(Started { pid: pid as i32 });
    }
    Err(SpawnError {
        message: v["error"].as_str().unwrap_or("the shim failed").to_string(),
        exit_code: v["exit_code"].as_i64().unwrap_or(125) as i32,
    })
}

/// What the shim left in `exit.json` after the container exited.
pub fn read_exit(state_dir: &Path) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(state_dir.join("exit.json")).ok()?).ok()
}

pub struct Client {
    socket: PathBuf,
}

/// A running exec: its pid, and the connection its exit code arrives on.
pub struct ExecHandle {
    pub pid: i32,
    sock: UnixStream,
    pending: Vec<u8>,
}

impl ExecHandle {
    /// Blocks until the process exits; its exit code (128+N for signal N).
    pub fn wait(mut self) -> Result<i32, Error> {
        let (line, _) = recv_line(&self.sock, &mut self.pending)?.ok_or(Error::Closed)?;
        let v = parse(&line)?;
        v["exit_code"].as_i64().map(|c| c as i32).ok_or_else(|| Error::BadReply(String::from_utf8_lossy(&line).into_owned()))
    }
}

fn parse(line: &[u8]) -> Result<serde_json::Value, Error> {
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|_| Error::BadReply(String::from_utf8_lossy(line).into_owned()))?;
    match v.get("error").and_then(|e| e.as_str()) {
        Some(e) => Err(Error::Shim(e.to_string())),
        None => Ok(v),
    }
}

impl Client {
    pub fn new(state_dir: &Path) -> Client {
        Client { socket: state_dir.join("shim.sock") }
    }

    fn call(&self, req: &Request, fds: &[i32]) -> Result<(UnixStream, Vec<u8>, serde_json::Value, Vec<OwnedFd>), Error> {
        let dir = self.socket.parent().unwrap_or(Path::new("/"));
        let (_dir, short) = crate::protocol::socket_path(dir).map_err(|e| Error::Connect(self.socket.clone(), e))?;
        let sock = UnixStream::connect(&short).map_err(|e| Error::Connect(self.socket.clone(), e))?;
        let line = serde_json::to_vec(req).map_err(|e| Error::BadReply(e.to_string()))?;
        send_line(&sock, &line, fds)?;
        let mut pending = Vec::new();
        let (reply, got) = recv_line(&sock, &mut pending)?.ok_or(Error::Closed)?;
        let v = parse(&reply)?;
        Ok((sock, pending, v, got))
    }

    pub fn state(&self) -> Result<i32, Error> {
        let (_, _, v, _) = self.call(&Request::State, &[])?;
        Ok(v["pid"].as_i64().unwrap_or(0) as i32)
    }

    pub fn wait(&self) -> Result<ExitStatus, Error> {
        let (_, _, v, _) = self.call(&Request::Wait, &[])?;
        serde_json::from_value(v).map_err(|e| Error::BadReply(e.to_string()))
    }

    pub fn kill(&self, signal: i32, all: bool) -> Result<(), Error> {
        self.call(&Request::Kill { signal, all }, &[]).map(drop)
    }

    pub fn take_stdin(&self) -> Result<OwnedFd, Error> {
        let (_, _, _, mut fds) = self.call(&Request::Stdin, &[])?;
        fds.pop().ok_or_else(|| Error::Shim("the container has no stdin".into()))
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<(), Error> {
        self.call(&Request::Resize { width, height }, &[]).map(drop)
    }

    /// Starts `process` in the container with the given stdio fds ([stdin, stdout, stderr] or
    /// [pty slave]); the fds are the shim's after this call.
    pub fn exec(&self, process: &oci_spec::runtime::Process, tty: bool, fds: Vec<OwnedFd>) -> Result<ExecHandle, Error> {
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let (sock, pending, v, _) = self.call(&Request::Exec { process: process.clone(), tty }, &raw)?;
        drop(fds);
        let pid = v["pid"].as_i64().ok_or_else(|| Error::BadReply(v.to_string()))? as i32;
        Ok(ExecHandle { pid, sock, pending })
    }
}
