//! The child's report pipe: `[kind][len u32][payload]` messages. The pipe is close-on-exec in the
//! child, so a successful execve ends it without a message.
use std::os::fd::RawFd;

pub const READY: u8 = b'R';
pub const ERROR: u8 = b'E';
pub const PID: u8 = b'P';
/// execve failed: `[errno i32 le][path]`.
pub const EXEC: u8 = b'X';

pub fn send_exec(fd: RawFd, errno: i32, path: &str) {
    let mut payload = errno.to_le_bytes().to_vec();
    payload.extend_from_slice(path.as_bytes());
    send(fd, EXEC, &payload);
}

pub fn decode_exec(payload: &[u8]) -> crate::Error {
    let errno = payload.get(..4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(libc::EINVAL);
    let path = payload.get(4..).map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
    crate::Error::Exec { path, source: nix::errno::Errno::from_raw(errno) }
}

pub fn send(fd: RawFd, kind: u8, payload: &[u8]) {
    let mut msg = Vec::with_capacity(5 + payload.len());
    msg.push(kind);
    msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    msg.extend_from_slice(payload);
    // SAFETY: writing a local buffer to a pipe we own; a short or failed write only loses the report.
    unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
}

fn read_exact(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of a local buffer.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return false;
        }
        got += n as usize;
    }
    true
}

/// The next message, or None at end of pipe.
pub fn recv(fd: RawFd) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    if !read_exact(fd, &mut head) {
        return None;
    }
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut payload = vec![0u8; len.min(1 << 20)];
    if !read_exact(fd, &mut payload) {
        return None;
    }
    Some((head[0], payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_a_pipe_in_order_and_end_with_it() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        use std::os::fd::AsRawFd;
        send(w.as_raw_fd(), READY, b"");
        send_exec(w.as_raw_fd(), libc::ENOENT, "/bin/x");
        drop(w);
        assert_eq!(recv(r.as_raw_fd()), Some((READY, Vec::new())));
        let (kind, payload) = recv(r.as_raw_fd()).expect("exec message");
        assert_eq!(kind, EXEC);
        let err = decode_exec(&payload);
        assert_eq!(err.exit_code(), 127);
        assert!(err.to_string().contains("/bin/x"), "{err}");
        assert_eq!(recv(r.as_raw_fd()), None);
    }
}
