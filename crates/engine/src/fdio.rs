//! Async reads and writes on raw pipe and pty fds (the engine's ends of container and exec stdio).
//! Hand-written over tokio's AsyncFd because tokio's pipe type refuses pty masters, and both kinds
//! must stream the same way.
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A non-blocking fd driven by the tokio reactor.
pub struct FdStream {
    fd: AsyncFd<OwnedFd>,
    /// A pty master reports EIO once the last slave closes; for a reader that is end of stream.
    eio_is_eof: bool,
}

impl FdStream {
    pub fn new(fd: OwnedFd, is_pty: bool) -> io::Result<Self> {
        set_nonblocking(&fd)?;
        // SAFETY: `fd` is an owned, open descriptor that the AsyncFd owns (and so keeps open and
        // unchanged) until it is dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(FdStream { fd, eio_is_eof: is_pty })
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

impl AsyncRead for FdStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let eio_is_eof = self.eio_is_eof;
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let res = guard.try_io(|inner| {
                // SAFETY: reading into a valid, initialised slice of the given length.
                let n = unsafe { libc::read(inner.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if eio_is_eof && e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let res = guard.try_io(|inner| {
                // SAFETY: writing from a valid slice of the given length.
                let n = unsafe { libc::write(inner.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A pipe whose both ends are CLOEXEC (only the ends handed to the shim travel on).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// A pty pair (master, slave) with the given window size.
pub fn pty(width: u16, height: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let ws = nix::pty::Winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    let p = nix::pty::openpty(Some(&ws), None).map_err(io::Error::from)?;
    for fd in [&p.master, &p.slave] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    }
    Ok((p.master, p.slave))
}

/// A pty pair from a container's own devpts (`/proc/<pid>/root/dev/pts/ptmx`), sized.
pub fn pty_in(ptmx: &std::path::Path, width: u16, height: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let (master, slave, _) = runtime::pty::open_in(ptmx)?;
    resize(&master, width, height)?;
    Ok((master, slave))
}

/// Sets a pty's window size (the kernel sends SIGWINCH to its foreground group).
pub fn resize(master: &impl AsRawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct we own for the duration of the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
