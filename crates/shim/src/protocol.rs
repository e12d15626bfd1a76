//! The shim's control protocol on `<state-dir>/shim.sock`: one JSON request line per connection,
//! answered by JSON line(s); fds travel as SCM_RIGHTS with the line that needs them. Every answer
//! may instead be an [`ErrorReply`]. The types are public so an async client can speak it too.
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

/// A request; one per connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// → [`StateReply`]
    State,
    /// → [`ExitStatus`], once the container has exited.
    Wait,
    /// → `{}`
    Kill { signal: i32, all: bool },
    /// → `{}` with the container's stdin attached (the pipe's write end, handed out once, or a dup
    /// of the pty master).
    Stdin,
    /// → `{}`; sets the container pty's window size.
    Resize { width: u16, height: u16 },
    /// With the fds [stdin, stdout, stderr] or [pty slave] attached → [`ExecStarted`], then
    /// [`ExecExited`] on the same connection when the process exits.
    Exec { process: Box<oci_spec::runtime::Process>, tty: bool },
}

/// The answer to `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReply {
    pub pid: i32,
    /// "running", or "stopped" once the init has exited (while the shim drains its output).
    pub status: String,
}

/// First line of the answer to `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecStarted {
    pub pid: i32,
}

/// Second line of the answer to `exec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecExited {
    /// 128+N when killed by signal N.
    pub exit_code: i32,
}

/// Any request can fail with this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// An answer with nothing to say (`kill`, `stdin`, `resize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// What `wait` answers and `exit.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// 128+N when killed by signal N, as Docker reports.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
}

/// The one line `berth shim` prints on its stdout: the container started, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Report {
    Started { pid: i32 },
    /// `exit_code` is Docker's: 127 executable not found, 126 not executable, 125 anything else.
    Failed { error: String, exit_code: i32 },
}

/// The socket's name inside a shim's state directory.
pub const SOCKET: &str = "shim.sock";
/// The exit record's name inside a shim's state directory.
pub const EXIT_FILE: &str = "exit.json";

/// A short name for `<dir>/shim.sock` through /proc/self/fd, since socket paths are limited to 108
/// bytes and engine roots may be deep. Keep the returned handle alive while using the path.
pub fn socket_path(dir: &Path) -> io::Result<(std::fs::File, PathBuf)> {
    let handle = std::fs::File::open(dir)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", handle.as_raw_fd()));
    Ok((handle, path))
}

/// Sends one line, with `fds` attached to its first byte when there are any.
pub fn send_line(sock: &UnixStream, line: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut data = Vec::with_capacity(line.len() + 1);
    data.extend_from_slice(line);
    data.push(b'\n');
    let mut sent = 0;
    while sent < data.len() {
        let iov = [IoSlice::new(&data[sent..])];
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsg: &[ControlMessage] = if sent == 0 && !fds.is_empty() { &cmsgs } else { &[] };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Serialises `value` and sends it as one line.
pub fn send_json<T: Serialize>(sock: &UnixStream, value: &T, fds: &[RawFd]) -> io::Result<()> {
    let line = serde_json::to_vec(value).map_err(io::Error::other)?;
    send_line(sock, &line, fds)
}

/// One `recvmsg`: appends the bytes to `pending` and the fds that came with them to `fds`.
/// Returns the number of bytes read (0 at EOF). With `nonblocking`, `WouldBlock` when nothing waits.
pub fn recv_some(sock: &UnixStream, pending: &mut Vec<u8>, fds: &mut Vec<OwnedFd>, nonblocking: bool) -> io::Result<usize> {
    let mut buf = [0u8; 4096];
    // Room for more fds than any request carries: the excess is closed, not lost in the kernel.
    let mut cmsg_space = nix::cmsg_space!([RawFd; 8]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = loop {
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg_space), flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(io::Error::from)?,
        }
    };
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds in our table; nothing else owns them.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let n = msg.bytes;
    pending.extend_from_slice(&buf[..n]);
    Ok(n)
}

/// Takes the first complete line (without its newline) out of `pending`.
pub fn take_line(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let i = pending.iter().position(|b| *b == b'\n')?;
    let line = pending[..i].to_vec();
    pending.drain(..=i);
    Some(line)
}

/// Reads one line (blocking) and any fds that came with it. `Ok(None)` at EOF.
pub fn recv_line(sock: &UnixStream, pending: &mut Vec<u8>) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    loop {
        if let Some(line) = take_line(pending) {
            return Ok(Some((line, fds)));
        }
        if recv_some(sock, pending, &mut fds, false)? == 0 {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn requests_are_tagged_by_op() {
        let v = serde_json::to_value(Request::Kill { signal: 15, all: true }).expect("json");
        assert_eq!(v, serde_json::json!({"op": "kill", "signal": 15, "all": true}));
        let r: Request = serde_json::from_str(r#"{"op":"resize","width":80,"height":24}"#).expect("parse");
        assert!(matches!(r, Request::Resize { width: 80, height: 24 }));
        let r: Request = serde_json::from_str(r#"{"op":"exec","tty":false,"process":{"args":["echo","hi"],"cwd":"/","user":{"uid":0,"gid":0}}}"#).expect("parse");
        match r {
            Request::Exec { process, tty } => {
                assert!(!tty);
                assert_eq!(process.args().as_deref(), Some(&["echo".to_string(), "hi".to_string()][..]));
            }
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<Request>(r#"{"op":"reboot"}"#).is_err());
    }

    #[test]
    fn reports_read_both_shapes() {
        assert_eq!(serde_json::from_str::<Report>(r#"{"pid":42}"#).expect("ok"), Report::Started { pid: 42 });
        let failed: Report = serde_json::from_str(r#"{"error":"executable file not found","exit_code":127}"#).expect("err");
        assert_eq!(failed, Report::Failed { error: "executable file not found".into(), exit_code: 127 });
        assert_eq!(serde_json::to_string(&Report::Started { pid: 7 }).expect("json"), r#"{"pid":7}"#);
    }

    #[test]
    fn exit_status_has_docker_shape() {
        let s = ExitStatus { exit_code: 143, signal: Some(15), oom_killed: false, finished_at: "2026-11-22T11:22:33.123456789Z".into() };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v, serde_json::json!({"exit_code": 143, "signal": 15, "oom_killed": false, "finished_at": "2026-11-22T11:22:33.123456789Z"}));
        let clean: ExitStatus = serde_json::from_str(r#"{"exit_code":0,"signal":null,"oom_killed":false,"finished_at":"x"}"#).expect("parse");
        assert_eq!(clean.signal, None);
    }

    #[test]
    fn lines_and_fds_cross_a_socketpair() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        send_line(&a, br#"{"op":"stdin"}"#, &[w.as_raw_fd()]).expect("send");
        drop(w);
        send_json(&a, &Request::Wait, &[]).expect("send");
        let mut pending = Vec::new();
        let (line, mut fds) = recv_line(&b, &mut pending).expect("recv").expect("line");
        assert_eq!(line, br#"{"op":"stdin"}"#);
        assert_eq!(fds.len(), 1);
        // The passed fd is the same pipe: what is written through it arrives at our read end.
        let mut passed = std::fs::File::from(fds.pop().expect("fd"));
        passed.write_all(b"through").expect("write");
        drop(passed);
        let mut got = String::new();
        std::fs::File::from(r).read_to_string(&mut got).expect("read");
        assert_eq!(got, "through");
        let (line, fds) = recv_line(&b, &mut pending).expect("recv").expect("line");
        assert!(fds.is_empty());
        assert!(matches!(serde_json::from_slice(&line).expect("json"), Request::Wait));
        drop(a);
        assert!(recv_line(&b, &mut pending).expect("eof").is_none());
    }

    #[test]
    fn received_fds_are_close_on_exec() {
        let (a, b) = UnixStream::pair().expect("pair");
        let f = std::fs::File::open("/dev/null").expect("null");
        send_line(&a, b"{}", &[f.as_raw_fd()]).expect("send");
        let (_, fds) = recv_line(&b, &mut Vec::new()).expect("recv").expect("line");
        let flags = nix::fcntl::fcntl(&fds[0], nix::fcntl::FcntlArg::F_GETFD).expect("getfd");
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }

    #[test]
    fn a_nonblocking_read_with_nothing_waiting_would_block() {
        let (_a, b) = UnixStream::pair().expect("pair");
        let err = recv_some(&b, &mut Vec::new(), &mut Vec::new(), true).expect_err("empty");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_line_split_across_reads_is_joined() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut pending = Vec::new();
        let mut fds = Vec::new();
        a.write_all(br#"{"op":"#).expect("w");
        recv_some(&b, &mut pending, &mut fds, true).expect("r");
        assert!(take_line(&mut pending).is_none());
        a.write_all(b"\"state\"}\n").expect("w");
        recv_some(&b, &mut pending, &mut fds, true).expect("r");
        assert_eq!(take_line(&mut pending).expect("line"), br#"{"op":"state"}"#);
        assert!(pending.is_empty());
    }
}
