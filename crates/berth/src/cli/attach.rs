//! Terminal and stream plumbing shared by run, start -a, exec and logs: raw mode (restored on
//! drop, so also on errors), terminal size and SIGWINCH resizes, signal proxying, stdin copying
//! with a half-close at EOF, and output (raw with a tty, else demultiplexed) to stdout and stderr.
use std::io::{IsTerminal, Write};

use bollard::query_parameters::{KillContainerOptions, ResizeContainerTTYOptions, ResizeExecOptions};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use super::http::BodyReader;
use super::{CliResult, Client};

pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The local terminal in raw mode; the previous mode comes back when this is dropped.
pub struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    /// Puts stdin's terminal in raw mode; `None` when stdin is not a terminal.
    pub fn enable() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

/// (rows, columns) of the terminal on stdout, else stdin.
pub fn terminal_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ only writes a winsize into the struct we own; a non-terminal fd
        // makes it fail with ENOTTY, which we treat as "no size".
        let ok = unsafe { tiocgwinsz(fd, &mut ws) }.is_ok();
        if ok && ws.ws_row > 0 && ws.ws_col > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// Whose terminal resizes go to.
#[derive(Debug, Clone)]
pub enum Target {
    Container,
    Exec(String),
}

/// Background tasks (resizes, signal proxies) that stop when this is dropped.
pub struct Helpers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Helpers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Helpers {
    /// With a tty: the initial size and every SIGWINCH are sent. Without a tty, for a container:
    /// the usual termination signals are proxied to it as kills, as docker's CLI does.
    pub fn start(c: &Client, id: &str, tty: bool, target: Target) -> Helpers {
        let mut tasks = Vec::new();
        if tty {
            tasks.push(tokio::spawn(resize_loop(c.docker.clone(), id.to_string(), target)));
        } else if matches!(target, Target::Container) {
            for (kind, name) in [
                (SignalKind::interrupt(), "SIGINT"),
                (SignalKind::terminate(), "SIGTERM"),
                (SignalKind::hangup(), "SIGHUP"),
                (SignalKind::quit(), "SIGQUIT"),
                (SignalKind::user_defined1(), "SIGUSR1"),
                (SignalKind::user_defined2(), "SIGUSR2"),
            ] {
                let Ok(mut sig) = signal(kind) else { continue };
                let (docker, id) = (c.docker.clone(), id.to_string());
                tasks.push(tokio::spawn(async move {
                    while sig.recv().await.is_some() {
                        let opts = KillContainerOptions { signal: name.to_string() };
                        if let Err(e) = docker.kill_container(&id, Some(opts)).await {
                            tracing::debug!("proxying {name} to {id}: {e}");
                        }
                    }
                }));
            }
        }
        Helpers { tasks }
    }
}

async fn resize_loop(docker: bollard::Docker, id: String, target: Target) {
    let mut winch = signal(SignalKind::window_change()).ok();
    loop {
        if let Some((h, w)) = terminal_size() {
            let r = match &target {
                Target::Container => docker.resize_container_tty(&id, ResizeContainerTTYOptions { h: h.into(), w: w.into() }).await,
                Target::Exec(exec) => docker.resize_exec(exec, ResizeExecOptions { h: h.into(), w: w.into() }).await,
            };
            if let Err(e) = r {
                tracing::debug!("resizing the terminal of {id}: {e}");
            }
        }
        let Some(w) = winch.as_mut() else { return };
        if w.recv().await.is_none() {
            return;
        }
    }
}

/// Copies this process's stdin into the stream, then half-closes it so the process sees EOF.
pub fn spawn_stdin(mut input: OwnedWriteHalf) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        if let Err(e) = tokio::io::copy(&mut stdin, &mut input).await {
            tracing::debug!("copying stdin: {e}");
        }
        let _ = input.shutdown().await;
    })
}

/// Splits Docker's multiplexed stream (8-byte header: stream, 0, 0, 0, length u32 BE) into frames.
#[derive(Debug, Default)]
pub struct Demuxer {
    buf: Vec<u8>,
}

impl Demuxer {
    /// Feeds bytes; returns the frames they complete as (stream, payload).
    pub fn push(&mut self, data: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        let mut pos = 0;
        while let Some(h) = self.buf.get(pos..pos + 8) {
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            let Some(payload) = self.buf.get(pos + 8..pos + 8 + len) else { break };
            frames.push((h[0], payload.to_vec()));
            pos += 8 + len;
        }
        self.buf.drain(..pos);
        frames
    }
}

fn write_to(stream: u8, bytes: &[u8]) {
    // A closed stdout (a pipe whose reader left) is ignored; the stream still drains so the
    // container is not blocked on its output.
    if stream == 2 {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(bytes).and_then(|_| e.flush());
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(bytes).and_then(|_| o.flush());
    }
}

/// Copies a container's output to stdout/stderr until it ends: raw with a tty, else demultiplexed.
pub async fn pump(mut body: BodyReader, tty: bool) -> CliResult<()> {
    let mut demux = Demuxer::default();
    while let Some(bytes) = body.next().await? {
        if tty {
            write_to(1, &bytes);
        } else {
            for (stream, payload) in demux.push(&bytes) {
                write_to(stream, &payload);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut wire = frame(1, b"out\n");
        wire.extend(frame(2, b"err\n"));
        wire.extend(frame(1, &[0, 1, 2]));
        for cut in 0..wire.len() {
            let mut d = Demuxer::default();
            let mut frames = d.push(&wire[..cut]);
            frames.extend(d.push(&wire[cut..]));
            assert_eq!(frames, vec![(1, b"out\n".to_vec()), (2, b"err\n".to_vec()), (1, vec![0, 1, 2])], "cut at {cut}");
        }
    }

    #[test]
    fn an_empty_frame_is_kept() {
        assert_eq!(Demuxer::default().push(&frame(1, b"")), vec![(1, Vec::new())]);
    }
}
