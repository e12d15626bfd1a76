//! The engine's side of the shim: launch one (`spawn`), talk to it (`Client`), or read the exit it
//! left behind (`read_exit`). Synchronous; the engine calls it from blocking threads.
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;

use crate::protocol::{self, recv_line, send_json, Empty, ErrorReply, ExecExited, ExecStarted, ExitStatus, Report, Request, StateReply};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shim at {0} is not reachable: {1}")]
    Connect(PathBuf, #[source] std::io::Error),
    #[error("talking to the shim: {0}")]
    Io(#[from] std::io::Error),
    #[error("the shim closed the connection")]
    Closed,
    /// The shim refused the request; its message.
    #[error("{0}")]
    Shim(String),
    #[error("bad reply from the shim: {0}")]
    BadReply(String),
    #[error("the shim sent no fd with its reply")]
    NoFd,
}

/// How the engine wants a container run (the flags of `berth shim`).
#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime_root: PathBuf,
    /// Holds shim.sock, shim.log and, once the container exited, exit.json.
    pub state_dir: PathBuf,
    /// The container's json-file log.
    pub log: PathBuf,
    pub tty: bool,
    pub stdin: bool,
    pub seccomp_cache: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    /// The container's init, as seen from the host.
    pub pid: i32,
}

/// The container did not start; `exit_code` is Docker's (127 not found, 126 not runnable, 125 other).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpawnError {
    pub message: String,
    pub exit_code: i32,
}

/// Runs `berth shim …` and returns once it reports the container started (or why not). The
/// process it starts exits right after the report, so it is reaped here.
pub fn spawn(berth: &Path, cfg: &ShimConfig) -> Result<Started, SpawnError> {
    let fail = |message: String| SpawnError { message, exit_code: 125 };
    let mut child = Command::new(berth)
        .arg("shim")
        .args(crate::args::to_args(cfg))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("starting the shim {}: {e}", berth.display())))?;
    let mut line = String::new();
    let read = match child.stdout.take() {
        Some(out) => BufReader::new(out).read_line(&mut line),
        None => Ok(0),
    };
    let _ = child.wait();
    let report: Report = serde_json::from_str(line.trim()).map_err(|_| match read {
        Err(e) => fail(format!("reading the report of the shim for {}: {e}", cfg.id)),
        Ok(_) => fail(format!("the shim for {} exited without reporting; see {}", cfg.id, cfg.state_dir.join("shim.log").display())),
    })?;
    match report {
        Report::Started { pid } => Ok(Started { pid }),
        Report::Failed { error, exit_code } => Err(SpawnError { message: error, exit_code }),
    }
}

/// What the shim left in `exit.json` after the container exited.
pub fn read_exit(state_dir: &Path) -> Option<ExitStatus> {
    serde_json::from_slice(&std::fs::read(state_dir.join(protocol::EXIT_FILE)).ok()?).ok()
}

/// A running exec: its pid, and the connection its exit code arrives on.
#[derive(Debug)]
pub struct ExecHandle {
    pub pid: i32,
    sock: UnixStream,
    pending: Vec<u8>,
}

impl ExecHandle {
    /// Blocks until the process exits; its exit code (128+N for signal N).
    pub fn wait(mut self) -> Result<i32, Error> {
        let (line, _) = recv_line(&self.sock, &mut self.pending)?.ok_or(Error::Closed)?;
        Ok(parse::<ExecExited>(&line)?.exit_code)
    }
}

/// Decodes a reply line: the expected type, or the shim's error.
fn parse<T: DeserializeOwned>(line: &[u8]) -> Result<T, Error> {
    let bad = || Error::BadReply(String::from_utf8_lossy(line).into_owned());
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|_| bad())?;
    if v.get("error").is_some() {
        let e: ErrorReply = serde_json::from_value(v).map_err(|_| bad())?;
        return Err(Error::Shim(e.error));
    }
    serde_json::from_value(v).map_err(|_| bad())
}

/// A connection to one shim; each call opens its own.
#[derive(Debug, Clone)]
pub struct Client {
    state_dir: PathBuf,
}

struct Call<T> {
    sock: UnixStream,
    pending: Vec<u8>,
    reply: T,
    fds: Vec<OwnedFd>,
}

impl Client {
    pub fn new(state_dir: &Path) -> Client {
        Client { state_dir: state_dir.to_path_buf() }
    }

    fn call<T: DeserializeOwned>(&self, req: &Request, fds: &[i32]) -> Result<Call<T>, Error> {
        let connect_err = |e| Error::Connect(self.state_dir.join(protocol::SOCKET), e);
        let (_dir, short) = protocol::socket_path(&self.state_dir).map_err(connect_err)?;
        let sock = UnixStream::connect(&short).map_err(connect_err)?;
        send_json(&sock, req, fds)?;
        let mut pending = Vec::new();
        let (line, fds) = recv_line(&sock, &mut pending)?.ok_or(Error::Closed)?;
        Ok(Call { reply: parse(&line)?, sock, pending, fds })
    }

    /// The init's pid and whether it still runs.
    pub fn state(&self) -> Result<StateReply, Error> {
        Ok(self.call::<StateReply>(&Request::State, &[])?.reply)
    }

    /// Blocks until the container has exited. A shim that is gone (or leaving) has left the
    /// status in `exit.json`.
    pub fn wait(&self) -> Result<ExitStatus, Error> {
        match self.call::<ExitStatus>(&Request::Wait, &[]) {
            Ok(call) => Ok(call.reply),
            Err(e @ (Error::Connect(..) | Error::Closed | Error::Io(_))) => read_exit(&self.state_dir).ok_or(e),
            Err(e) => Err(e),
        }
    }

    pub fn kill(&self, signal: i32, all: bool) -> Result<(), Error> {
        self.call::<Empty>(&Request::Kill { signal, all }, &[]).map(drop)
    }

    /// The container's stdin: the pipe's write end (once; closing it gives the container EOF) or a
    /// dup of the pty master.
    pub fn take_stdin(&self) -> Result<OwnedFd, Error> {
        let mut call = self.call::<Empty>(&Request::Stdin, &[])?;
        call.fds.pop().ok_or(Error::NoFd)
    }

    pub fn resize(&self, width: u16, height: u16) -> Result<(), Error> {
        self.call::<Empty>(&Request::Resize { width, height }, &[]).map(drop)
    }

    /// Starts `process` in the container with the given stdio fds ([stdin, stdout, stderr], or
    /// [pty slave] with `tty`); the caller keeps the other ends. The fds are closed here once sent.
    pub fn exec(&self, process: &oci_spec::runtime::Process, tty: bool, fds: Vec<OwnedFd>) -> Result<ExecHandle, Error> {
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let call = self.call::<ExecStarted>(&Request::Exec { process: Box::new(process.clone()), tty }, &raw)?;
        drop(fds);
        Ok(ExecHandle { pid: call.reply.pid, sock: call.sock, pending: call.pending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake shim answering one connection with `lines`, returning the request it got.
    fn fake_shim(dir: &Path, lines: Vec<String>) -> std::thread::JoinHandle<(Vec<u8>, usize)> {
        let listener = UnixListener::bind(dir.join(protocol::SOCKET)).expect("bind");
        std::thread::spawn(move || {
            let (sock, _) = listener.accept().expect("accept");
            let (req, fds) = recv_line(&sock, &mut Vec::new()).expect("recv").expect("line");
            let null = std::fs::File::open("/dev/null").expect("null");
            for l in lines {
                let fds = if l.contains("\"fd\"") { vec![null.as_raw_fd()] } else { vec![] };
                protocol::send_line(&sock, l.as_bytes(), &fds).expect("send");
            }
            (req, fds.len())
        })
    }

    #[test]
    fn shim_errors_come_back_as_their_message() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = fake_shim(dir.path(), vec![r#"{"error":"container x is stopped: kill"}"#.into()]);
        let err = Client::new(dir.path()).kill(15, false).expect_err("refused");
        assert_eq!(err.to_string(), "container x is stopped: kill");
        let (req, _) = t.join().expect("join");
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&req).expect("json"), serde_json::json!({"op":"kill","signal":15,"all":false}));
    }

    #[test]
    fn an_exec_sends_its_fds_and_reads_two_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = fake_shim(dir.path(), vec![r#"{"pid":77}"#.into(), r#"{"exit_code":4}"#.into()]);
        let fds: Vec<OwnedFd> = (0..3).map(|_| std::fs::File::open("/dev/null").expect("null").into()).collect();
        let process: oci_spec::runtime::Process = serde_json::from_str(r#"{"args":["true"],"cwd":"/","user":{"uid":0,"gid":0}}"#).expect("process");
        let h = Client::new(dir.path()).exec(&process, false, fds).expect("exec");
        assert_eq!(h.pid, 77);
        assert_eq!(h.wait().expect("exit"), 4);
        assert_eq!(t.join().expect("join").1, 3);
    }

    #[test]
    fn stdin_comes_with_an_fd_or_is_an_error() {
        let dir = tempfile::tempdir().expect("tmp");
        let t = fake_shim(dir.path(), vec![r#"{"fd":true}"#.into()]);
        Client::new(dir.path()).take_stdin().expect("fd");
        t.join().expect("join");
        std::fs::remove_file(dir.path().join(protocol::SOCKET)).expect("rm");
        let t = fake_shim(dir.path(), vec!["{}".into()]);
        assert!(matches!(Client::new(dir.path()).take_stdin(), Err(Error::NoFd)));
        t.join().expect("join");
    }

    #[test]
    fn a_missing_shim_is_unreachable_and_a_garbled_reply_is_reported() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(matches!(Client::new(dir.path()).state(), Err(Error::Connect(..))));
        let t = fake_shim(dir.path(), vec!["not json".into()]);
        assert!(matches!(Client::new(dir.path()).state(), Err(Error::BadReply(_))));
        t.join().expect("join");
    }

    #[test]
    fn waiting_on_a_shim_that_is_gone_reads_exit_json() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(matches!(Client::new(dir.path()).wait(), Err(Error::Connect(..))));
        std::fs::write(dir.path().join("exit.json"), r#"{"exit_code":9,"signal":null,"oom_killed":false,"finished_at":"t"}"#).expect("w");
        assert_eq!(Client::new(dir.path()).wait().expect("from the file").exit_code, 9);
    }

    #[test]
    fn read_exit_finds_nothing_before_the_shim_wrote_it() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(read_exit(dir.path()), None);
        std::fs::write(dir.path().join("exit.json"), r#"{"exit_code":3,"signal":null,"oom_killed":false,"finished_at":"t"}"#).expect("w");
        assert_eq!(read_exit(dir.path()).map(|s| s.exit_code), Some(3));
    }

    #[test]
    fn spawning_a_binary_that_prints_nothing_fails_with_125() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = ShimConfig {
            id: "c".into(),
            bundle: dir.path().into(),
            runtime_root: dir.path().into(),
            state_dir: dir.path().into(),
            log: dir.path().join("log"),
            tty: false,
            stdin: false,
            seccomp_cache: None,
        };
        let err = spawn(Path::new("/bin/true"), &cfg).expect_err("no report");
        assert_eq!(err.exit_code, 125);
        assert!(err.message.contains("exited without reporting"), "{err}");
        let err = spawn(Path::new("/nonexistent/berth"), &cfg).expect_err("no binary");
        assert!(err.message.contains("starting the shim"), "{err}");
    }
}
