//! The shim's control protocol on `<state-dir>/shim.sock`: one JSON request line per connection,
//! answered by JSON line(s); fds travel as SCM_RIGHTS with the line that needs them.
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// → `{"pid":N,"status":"running"}`
    State,
    /// → the exit status, once the container has exited.
    Wait,
    /// → `{}`
    Kill { signal: i32, all: bool },
    /// → `{}` with the container's stdin (pipe write end or pty master) attached.
    Stdin,
    /// → `{}`
    Resize { width: u16, height: u16 },
    /// With the fds [stdin, stdout, stderr] or [pty slave] attached → `{"pid":N}`, then
    /// `{"exit_code":N}` when the process exits.
    Exec { process: oci_spec::runtime::Process, tty: bool },
}

/// What `wait` answers and `exit.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// 128+N when killed by signal N, as Docker reports.
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished_at: String,
}

/// A short name for `<dir>/shim.sock` through /proc/self/fd, since socket paths are limited to 108
/// bytes and engine roots may be deep. Keep the returned handle alive while using the path.
pub fn socket_path(dir: &std::path::Path) -> io::Result<(std::fs::File, std::path::PathBuf)> {
    let handle = std::fs::File::open(dir)?;
    let path = std::path::PathBuf::from(format!("/proc/self/fd/{}/shim.sock", handle.as_raw_fd()));
    Ok((handle, path))
}

/// Sends one line, with `fds` attached when there are any.
pub fn send_line(sock: &UnixStream, line: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut data = line.to_vec();
    data.push(b'\n');
    let mut sent = 0;
    while sent < data.len() {
        let iov = [IoSlice::new(&data[sent..])];
        let cmsgs = [ControlMessage::ScmRights(fds)];
        let cmsg: &[ControlMessage] = if sent == 0 && !fds.is_empty() { &cmsgs } else { &[] };
        sent += sendmsg::<()>(sock.as_raw_fd(), &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Reads one line (without the newline) and any fds that came with it. `Ok(None)` at EOF.
pub fn recv_line(sock: &UnixStream, pending: &mut Vec<u8>) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    loop {
        if let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line = pending[..i].to_vec();
            pending.drain(..=i);
            return Ok(Some((line, fds)));
        }
        let mut buf = [0u8; 4096];
        let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
        let (n, got) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg_space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(io::Error::from)?;
            let mut got = Vec::new();
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these fds in our table; we own them now.
                    got.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
            (msg.bytes, got)
        };
        fds.extend(got);
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_fds_cross_a_socketpair() {
        let (a, b) = UnixStream::pair().expect("pair");
        let f = std::fs::File::open("/dev/null").expect("null");
        send_line(&a, br#"{"op":"stdin"}"#, &[f.as_raw_fd()]).expect("send");
        send_line(&a, br#"{"op":"wait"}"#, &[]).expect("send");
        let mut pending = Vec::new();
        let (line, fds) = recv_line(&b, &mut pending).expect("recv").expect("line");
        assert_eq!(line, br#"{"op":"stdin"}"#);
        assert_eq!(fds.len(), 1);
        let req: Request = serde_json::from_slice(&recv_line(&b, &mut pending).expect("recv").expect("line").0).expect("json");
        assert!(matches!(req, Request::Wait));
        drop(a);
        assert!(recv_line(&b, &mut pending).expect("eof").is_none());
    }
}
