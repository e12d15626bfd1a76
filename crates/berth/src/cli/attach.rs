//! Terminal and stream plumbing shared by run, start -a, exec and logs: raw mode (restored on
//! drop, so also on errors), terminal size and SIGWINCH resizes, signal proxying, stdin copying
//! with a half-close at EOF, and output demultiplexed to stdout and stderr.
use std::io::{IsTerminal, Write};
use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::query_parameters::{KillContainerOptions, ResizeContainerTTYOptions, ResizeExecOptions};
use futures_util::{Stream, StreamExt};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use super::Client;

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
pub fn spawn_stdin(mut input: Pin<Box<dyn AsyncWrite + Send>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        if let Err(e) = tokio::io::copy(&mut stdin, &mut input).await {
            tracing::debug!("copying stdin: {e}");
        }
        let _ = input.shutdown().await;
    })
}

/// Writes the stream's frames to stdout and stderr until it ends. A closed stdout (a pipe whose
/// reader left) is not an error; the stream still drains so the container is not blocked.
pub async fn pump_output<S>(stream: S) -> Result<(), bollard::errors::Error>
where
    S: Stream<Item = Result<LogOutput, bollard::errors::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdErr { message }) => {
                let mut e = std::io::stderr().lock();
                let _ = e.write_all(&message).and_then(|_| e.flush());
            }
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(&message).and_then(|_| o.flush());
            }
            Ok(LogOutput::StdIn { .. }) => {}
            // The engine closing a hijacked stream abruptly still ends it.
            Err(bollard::errors::Error::IOError { err }) => {
                tracing::debug!("output stream ended: {err}");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
