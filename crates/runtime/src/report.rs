//! The child's report pipe: `[kind][len u32][payload]` messages. The pipe is close-on-exec in the
//! child, so a successful execve ends it without a message.
use std::os::fd::RawFd;

pub const READY: u8 = b'R';
pub const ERROR: u8 = b'E';
pub const PID: u8 = b'P';

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
