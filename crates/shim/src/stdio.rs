//! The container's stdio as the shim holds it: pipes for stdout and stderr (and stdin with
//! `--stdin`), or one pty whose master carries everything.
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::log::Stream;

/// The shim's ends.
pub struct ContainerIo {
    /// Readers of the container's output, and which stream each is.
    pub outputs: Vec<(Stream, File)>,
    /// Write end of the stdin pipe, until it is handed out.
    pub stdin: Option<OwnedFd>,
    /// The pty master, with `--tty`.
    pub master: Option<OwnedFd>,
    /// Our end of the console socket, until the master has come through it.
    console: Option<OwnedFd>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Creates the container's stdio; the second value goes to the runtime. With `tty` the pty is
/// made by the container's init in its own devpts and its master arrives later, through
/// [`ContainerIo::receive_console`].
pub fn create(tty: bool, stdin: bool) -> std::io::Result<(ContainerIo, runtime::Stdio)> {
    if tty {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let io = ContainerIo { outputs: Vec::new(), stdin: None, master: None, console: Some(ours.into()) };
        return Ok((io, runtime::Stdio::NewConsole(theirs.into())));
    }
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (child_stdin, keep) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (File::open("/dev/null")?.into(), None)
    };
    let io = ContainerIo { outputs: vec![(Stream::Stdout, File::from(out_r)), (Stream::Stderr, File::from(err_r))], stdin: keep, master: None, console: None };
    Ok((io, runtime::Stdio::Fds { stdin: child_stdin, stdout: out_w, stderr: err_w }))
}

impl ContainerIo {
    /// With a tty: takes the pty master the container's init sent (it is already queued on the
    /// socket once `create` has returned) and reads the container's output from it.
    pub fn receive_console(&mut self) -> std::io::Result<()> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let Some(socket) = self.console.take() else { return Ok(()) };
        let mut name = [0u8; 64];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        let msg = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT)
            .map_err(std::io::Error::from)?;
        let mut master = None;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS installed this fd in our table; nobody else owns it.
                    let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                    master.get_or_insert(owned);
                }
            }
        }
        let master = master.ok_or_else(|| std::io::Error::other("the container's init sent no pty master"))?;
        self.outputs = vec![(Stream::Stdout, File::from(master.try_clone()?))];
        self.master = Some(master);
        Ok(())
    }

    /// The fd a `stdin` request hands out: a dup of the pty master (any number of times), or the
    /// pipe's write end once, after which the shim keeps no copy (Docker's StdinOnce: the
    /// container sees EOF when the client closes it).
    pub fn take_stdin(&mut self) -> Result<OwnedFd, String> {
        if let Some(m) = &self.master {
            return m.try_clone().map_err(|e| format!("duplicating the pty master: {e}"));
        }
        self.stdin.take().ok_or_else(|| "the container's stdin is not open or was already taken".to_string())
    }

    /// Sets the pty's window size; the kernel sends SIGWINCH to the foreground process group.
    pub fn resize(&self, width: u16, height: u16) -> Result<(), String> {
        let master = self.master.as_ref().ok_or("the container has no tty")?;
        let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads the winsize we pass; the fd is our pty master.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(format!("resizing the tty: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_stdin_pipe_is_handed_out_once() {
        let (mut io, child) = create(false, true).expect("stdio");
        let runtime::Stdio::Fds { stdin, .. } = child else { panic!("pipes expected") };
        let w = io.take_stdin().expect("first");
        assert!(io.take_stdin().is_err(), "second take refused");
        File::from(w).write_all(b"in").expect("write");
        // The shim kept no copy: the reader sees EOF after the data.
        let mut got = String::new();
        File::from(stdin).read_to_string(&mut got).expect("read");
        assert_eq!(got, "in");
    }

    #[test]
    fn without_stdin_the_container_reads_dev_null_and_nothing_is_handed_out() {
        let (mut io, child) = create(false, false).expect("stdio");
        let runtime::Stdio::Fds { stdin, .. } = child else { panic!("pipes expected") };
        assert!(io.take_stdin().is_err());
        let mut got = Vec::new();
        File::from(stdin).read_to_end(&mut got).expect("read");
        assert!(got.is_empty());
        assert!(io.resize(80, 24).is_err(), "no tty to resize");
    }

    #[test]
    fn a_tty_master_arrives_over_the_console_socket_then_sets_its_size_and_is_handed_out_repeatedly() {
        let (mut io, child) = create(true, true).expect("stdio");
        let runtime::Stdio::NewConsole(socket) = child else { panic!("console socket expected") };
        assert!(io.resize(100, 30).is_err(), "no master before the init sent it");
        // What the container's init does: a pty, the master sent back, the slave kept.
        let (master, slave, _) = runtime::pty::open_in(std::path::Path::new("/dev/ptmx")).expect("pty");
        runtime::pty::send_master(&socket, &master).expect("send");
        drop(master);
        io.receive_console().expect("receive");
        io.resize(100, 30).expect("resize");
        let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ writes into the winsize we own.
        assert_eq!(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) }, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (100, 30));
        assert!(io.take_stdin().is_ok() && io.take_stdin().is_ok());
        assert_eq!(io.outputs.len(), 1);
        assert_eq!(io.outputs[0].0, Stream::Stdout);
    }
}
