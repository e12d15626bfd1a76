//! Ptys from a container's own devpts instance, so the slave has a name inside that container
//! (`tty` prints /dev/pts/N, as under Docker) rather than the name of a host pty.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A pty pair from the devpts instance whose `ptmx` is given (the container's `/dev/ptmx` from
/// inside it, or `/proc/<pid>/root/dev/pts/ptmx` from outside): the master, the slave and the
/// slave's number. The slave comes from TIOCGPTPEER, without a path lookup in the container's
/// filesystem. Both fds are close-on-exec.
pub fn open_in(ptmx: &Path) -> std::io::Result<(OwnedFd, OwnedFd, u32)> {
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(ptmx)?
        .into();
    let unlock: libc::c_int = 0;
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK and TIOCGPTN read and write ints we own; TIOCGPTPEER returns a new fd
    // that we own from here on.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) < 0 || libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    Ok((master, slave, number))
}

/// Sends a pty master over a console socket as runc does: one message named "/dev/ptmx" with
/// the fd attached (SCM_RIGHTS).
pub fn send_master(socket: &impl AsRawFd, master: &impl AsRawFd) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let fds = [master.as_raw_fd()];
    sendmsg::<UnixAddr>(socket.as_raw_fd(), &[std::io::IoSlice::new(b"/dev/ptmx")], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_pty_from_the_hosts_ptmx_carries_bytes_between_its_ends() {
        let (master, slave, number) = open_in(Path::new("/dev/ptmx")).expect("pty");
        assert!(Path::new(&format!("/dev/pts/{number}")).exists(), "the slave is named by its number");
        let mut s = std::fs::File::from(slave);
        s.write_all(b"x\n").expect("write to the slave");
        let mut m = std::fs::File::from(master);
        let mut buf = [0u8; 8];
        let n = m.read(&mut buf).expect("read from the master");
        assert!(buf[..n].starts_with(b"x"), "got {:?}", &buf[..n]);
    }
}
