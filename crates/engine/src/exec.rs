//! `docker exec`: a process started by the container's shim inside its namespaces. The engine makes
//! the stdio (pipes or a pty) and keeps its ends, so output streams straight to the API client.
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::fdio::{self, FdStream};
use crate::{blocking, lock, spec, user, Engine};

/// `POST /containers/{id}/exec` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    #[serde(deserialize_with = "nullable")]
    pub cmd: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub privileged: bool,
    pub console_size: Option<[u16; 2]>,
}

fn nullable<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(crate) struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    status: Mutex<ExecStatus>,
    /// The pty master, kept for resize while the exec runs.
    master: Mutex<Option<Arc<OwnedFd>>>,
}

#[derive(Debug, Clone, Default)]
struct ExecStatus {
    started: bool,
    running: bool,
    pid: i32,
    exit_code: Option<i32>,
}

/// `GET /exec/{id}/json`.
#[derive(Debug, Clone)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub pid: i32,
    pub exit_code: Option<i32>,
}

/// The engine's ends of a started exec. `pty` is set with a tty (read output, write input);
/// otherwise the three pipes as attached. `exit` resolves with the exit code.
pub struct ExecIo {
    pub tty: bool,
    pub pty: Option<FdStream>,
    pub stdin: Option<FdStream>,
    pub stdout: Option<FdStream>,
    pub stderr: Option<FdStream>,
    pub exit: oneshot::Receiver<i32>,
}

fn dev_null(write: bool) -> Result<OwnedFd> {
    let f = std::fs::OpenOptions::new().read(!write).write(write).open("/dev/null").map_err(|e| Error::io("opening /dev/null", e))?;
    Ok(f.into())
}

impl Engine {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, config: ExecConfig) -> Result<String> {
        let rec = self.container(name)?;
        if !rec.state.running() {
            return Err(Error::Conflict(format!("container {} is not running", rec.id)));
        }
        if config.cmd.is_empty() {
            return Err(Error::InvalidArgument("no exec command specified".into()));
        }
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let exec = Arc::new(Exec {
            id: id.clone(),
            container_id: rec.id,
            config,
            status: Mutex::new(ExecStatus::default()),
            master: Mutex::new(None),
        });
        lock(&self.inner.execs).insert(id.clone(), exec);
        Ok(id)
    }

    fn exec_lookup(&self, id: &str) -> Result<Arc<Exec>> {
        lock(&self.inner.execs).get(id).cloned().ok_or_else(|| Error::no_exec(id))
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInfo> {
        let e = self.exec_lookup(id)?;
        let s = lock(&e.status).clone();
        Ok(ExecInfo {
            id: e.id.clone(),
            container_id: e.container_id.clone(),
            config: e.config.clone(),
            running: s.running,
            pid: s.pid,
            exit_code: s.exit_code,
        })
    }

    /// `POST /exec/{id}/resize`.
    pub fn exec_resize(&self, id: &str, width: u16, height: u16) -> Result<()> {
        let e = self.exec_lookup(id)?;
        let master = lock(&e.master).clone();
        match master {
            Some(m) => fdio::resize(&*m, width, height).map_err(|err| Error::io(format!("resizing exec {id}"), err)),
            None => Err(Error::Conflict(format!("exec {id} has no tty"))),
        }
    }

    /// `POST /exec/{id}/start`: starts the process and hands back the engine's stdio ends.
    pub async fn exec_start(&self, id: &str) -> Result<ExecIo> {
        let e = self.exec_lookup(id)?;
        {
            let mut s = lock(&e.status);
            if s.started {
                return Err(Error::Conflict(format!("exec {id} has already been started")));
            }
            s.started = true;
        }
        let rec = self.container(&e.container_id)?;
        if !rec.state.running() {
            return Err(Error::Conflict(format!("container {} is not running", rec.id)));
        }
        let cfg = e.config.clone();
        let bundle = self.container_dir(&rec.id);
        let process = blocking(move || exec_process(&bundle, &cfg)).await?;

        let (size_w, size_h) = e.config.console_size.map(|[h, w]| (w, h)).unwrap_or((80, 24));
        let mut io = ExecIo { tty: e.config.tty, pty: None, stdin: None, stdout: None, stderr: None, exit: oneshot::channel().1 };
        let child_fds: Vec<OwnedFd> = if e.config.tty {
            // The container's own devpts when it has one, so the process sees a named /dev/pts/N.
            let ptmx = std::path::PathBuf::from(format!("/proc/{}/root/dev/pts/ptmx", rec.state.pid));
            let (master, slave) = fdio::pty_in(&ptmx, size_w, size_h)
                .or_else(|_| fdio::pty(size_w, size_h))
                .map_err(|err| Error::io("allocating a pty", err))?;
            let dup = master.try_clone().map_err(|err| Error::io("duplicating the pty", err))?;
            *lock(&e.master) = Some(Arc::new(dup));
            io.pty = Some(FdStream::new(master, true).map_err(|err| Error::io("pty", err))?);
            vec![slave]
        } else {
            let stdin = if e.config.attach_stdin {
                let (r, w) = fdio::pipe().map_err(|err| Error::io("creating a pipe", err))?;
                io.stdin = Some(FdStream::new(w, false).map_err(|err| Error::io("pipe", err))?);
                r
            } else {
                dev_null(false)?
            };
            let out = |attached: bool, slot: &mut Option<FdStream>| -> Result<OwnedFd> {
                if !attached {
                    return dev_null(true);
                }
                let (r, w) = fdio::pipe().map_err(|err| Error::io("creating a pipe", err))?;
                *slot = Some(FdStream::new(r, false).map_err(|err| Error::io("pipe", err))?);
                Ok(w)
            };
            let stdout = out(e.config.attach_stdout, &mut io.stdout)?;
            let stderr = out(e.config.attach_stderr, &mut io.stderr)?;
            vec![stdin, stdout, stderr]
        };

        let shim_dir = self.shim_dir(&rec.id);
        let tty = e.config.tty;
        let handle = blocking(move || {
            shim::Client::new(&shim_dir)
                .exec(&process, tty, child_fds)
                .map_err(|err| Error::Start { message: err.to_string(), exit_code: 126 })
        })
        .await;
        let handle = match handle {
            Ok(h) => h,
            Err(err) => {
                lock(&e.status).exit_code = Some(if err.to_string().contains("not found") { 127 } else { 126 });
                return Err(err);
            }
        };
        {
            let mut s = lock(&e.status);
            s.running = true;
            s.pid = handle.pid;
        }
        let (tx, rx) = oneshot::channel();
        io.exit = rx;
        let exec = e.clone();
        tokio::task::spawn_blocking(move || {
            let code = handle.wait().unwrap_or(255);
            {
                let mut s = lock(&exec.status);
                s.running = false;
                s.exit_code = Some(code);
            }
            *lock(&exec.master) = None;
            let _ = tx.send(code);
        });
        Ok(io)
    }
}

/// The container's own process (from its config.json) with the exec's command, env, user and cwd.
fn exec_process(bundle: &std::path::Path, cfg: &ExecConfig) -> Result<oci_spec::runtime::Process> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let spec: serde_json::Value = serde_json::from_slice(&data).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    let mut p = spec.get("process").cloned().unwrap_or_default();
    let base_env: Vec<String> = serde_json::from_value(p["env"].take()).unwrap_or_default();
    p["env"] = serde_json::json!(spec::merge_env(&base_env, &cfg.env));
    p["args"] = serde_json::json!(cfg.cmd);
    p["terminal"] = serde_json::json!(cfg.tty);
    if !cfg.working_dir.is_empty() {
        p["cwd"] = serde_json::json!(cfg.working_dir);
    }
    if !cfg.user.is_empty() {
        let u = user::resolve(&bundle.join("rootfs"), &cfg.user)?;
        p["user"] = serde_json::json!({"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids});
    }
    if cfg.privileged {
        let all = crate::caps::ALL;
        p["capabilities"] = serde_json::json!({"bounding": all, "effective": all, "permitted": all});
    }
    serde_json::from_value(p).map_err(|e| Error::Internal(format!("building exec process: {e}")))
}
