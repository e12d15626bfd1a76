//! Container lifecycle: create, start (through a shim), stop, kill, wait, remove, and the exit monitor.
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;

use crate::error::{Error, Result};
use crate::model::{ContainerConfig, ContainerRecord, HostConfig, State, Status};
use crate::spec::{self, ImageRunConfig};
use crate::{blocking, etc, lock, names, now_rfc3339, store, user, Container, Engine, Observed};

/// A create request as the API receives it.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: Option<String>,
    /// `NetworkingConfig.EndpointsConfig`: settings per network (the network mode's included).
    pub networks: std::collections::BTreeMap<String, crate::network::EndpointSettings>,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
}

/// `wait?condition=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(Error::InvalidArgument(format!(
                "invalid condition: {other:?} (use not-running, next-exit or removed)"
            ))),
        }
    }
}

/// Parses `SIGINT`, `INT`, `int` or `2`.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| Error::InvalidArgument(format!("invalid signal: {s}")))
}

/// Namespaces to join (type, /proc/<pid>/ns/<file>) and to take from the host.
pub(crate) type SharedNamespaces = (Vec<(&'static str, String)>, Vec<&'static str>);

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mountpoint(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), path.parent().map(std::fs::metadata)) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    }
}

pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    /// `POST /containers/create`.
    pub async fn create(&self, req: CreateRequest) -> Result<ContainerRecord> {
        if req.host_config.init == Some(true) {
            return Err(Error::InvalidArgument("--init is not supported by berth yet: run an init (e.g. tini) as the entrypoint instead".into()));
        }
        let img = self.inner.images.get(&req.config.image).map_err(|e| match e {
            image::Error::NotFound(_) => Error::NotFound { kind: "image", name: req.config.image.clone() },
            other => other.into(),
        })?;
        let image_cfg = ImageRunConfig::from_image(&img.config);
        let (path, args) = spec::command(&image_cfg, req.config.entrypoint.as_ref(), &req.config.cmd)?;
        crate::caps::effective(&req.host_config.cap_add, &req.host_config.cap_drop, req.host_config.privileged)?;
        let id = new_id();
        let mut config = req.config.clone();
        if config.hostname.is_empty() {
            config.hostname = id[..12].to_string();
        }
        if config.user.is_empty() {
            config.user = image_cfg.user.clone();
        }
        if config.working_dir.is_empty() {
            config.working_dir = image_cfg.working_dir.clone();
        }
        config.env = spec::merge_env(&image_cfg.env, &config.env);
        if config.cmd.is_empty() && req.config.entrypoint.is_none() {
            config.cmd = image_cfg.cmd.clone();
        }
        if config.entrypoint.is_none() && !image_cfg.entrypoint.is_empty() {
            config.entrypoint = Some(image_cfg.entrypoint.clone());
        }
        for (k, v) in &image_cfg.labels {
            config.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if config.stop_signal.is_none() {
            config.stop_signal = image_cfg.stop_signal.clone();
        }
        let mut host_config = req.host_config.clone();
        // The default network is the bridge; where the host cannot have one, a private namespace
        // with loopback only (recorded as `none`, so inspect tells the truth). A network mode that
        // names a network makes it the container's first.
        let networks = self.plan_networks(&mut host_config, &req.networks)?;
        for (what, mode) in [("pid", &host_config.pid_mode), ("ipc", &host_config.ipc_mode), ("network", &host_config.network_mode)] {
            match mode.as_str() {
                "" | "none" | "host" | "private" | "shareable" => {}
                m if m.starts_with("container:") => {
                    self.container(&m["container:".len()..])?;
                }
                _ if what == "network" => {}
                other => return Err(Error::InvalidArgument(format!("invalid --{what} mode {other:?}: use host, private or container:<name|id>"))),
            }
        }
        let image_volumes: Vec<String> = image_cfg.volumes.keys().cloned().collect();
        let config_volumes: Vec<String> = req.config.volumes.keys().cloned().collect();
        let mounts = self.resolve_mounts(&host_config, &config_volumes, &image_volumes)?;
        let record = ContainerRecord {
            id: id.clone(),
            name: String::new(),
            created: now_rfc3339(),
            image: img.id.to_string(),
            image_name: req.config.image.clone(),
            path,
            args,
            config,
            host_config,
            state: State::default(),
            image_chain: img.top_chain_id.clone(),
            mounts,
            networks,
            endpoints: Default::default(),
        };
        let container = match self.register(record.clone(), req.name.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                self.remove_anonymous_volumes(&record.mounts);
                return Err(e);
            }
        };
        let rec = container.snapshot();
        let dir = self.container_dir(&id);
        let snapshots = self.inner.snapshots.clone();
        let chain = rec.image_chain.clone();
        let saved = rec.clone();
        let prepared = blocking(move || {
            std::fs::create_dir_all(dir.join("rootfs")).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            snapshots.prepare(&saved.id, chain.as_deref())?;
            store::save(&dir, &saved)
        })
        .await;
        if let Err(e) = prepared {
            lock(&self.inner.containers).remove(&id);
            let _ = std::fs::remove_dir_all(self.container_dir(&id));
            let _ = self.inner.snapshots.remove(&id);
            return Err(e);
        }
        Ok(rec)
    }

    /// Adds a record under a unique name (the given one, or a random one).
    fn register(&self, mut record: ContainerRecord, name: Option<&str>) -> Result<Arc<Container>> {
        let mut map = lock(&self.inner.containers);
        let taken = |n: &str| map.values().find(|c| c.record().name == n).map(|c| c.record().id.clone());
        match name.map(|n| n.strip_prefix('/').unwrap_or(n)).filter(|n| !n.is_empty()) {
            Some(n) => {
                if !names::valid_name(n) {
                    return Err(Error::InvalidArgument(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                if let Some(other) = taken(n) {
                    return Err(Error::Conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{other}\". \
                         You have to remove (or rename) that container to be able to reuse that name."
                    )));
                }
                record.name = n.to_string();
            }
            None => {
                let mut retry = 0;
                record.name = loop {
                    let candidate = names::random_name(retry);
                    if taken(&candidate).is_none() {
                        break candidate;
                    }
                    retry += 1;
                };
            }
        }
        let c = Container::new(record);
        map.insert(c.record().id.clone(), c.clone());
        Ok(c)
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(&self, name: &str) -> Result<()> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        let rec = c.snapshot();
        match rec.state.status {
            Status::Running => return Err(Error::NotModified(rec.id, "started")),
            Status::Removing | Status::Dead => {
                return Err(Error::Conflict(format!("container {} is marked for removal and cannot be started", rec.id)))
            }
            _ => {}
        }
        let engine = self.clone();
        let started = blocking(move || engine.launch(&rec)).await;
        match started {
            Ok((pid, endpoints)) => {
                c.record().endpoints = endpoints;
                self.update(&c, |s| {
                    s.status = Status::Running;
                    s.pid = pid;
                    s.error.clear();
                    s.exit_code = 0;
                    s.oom_killed = false;
                    s.started_at = Some(now_rfc3339());
                })?;
                self.monitor(c.clone());
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                let code = match &e { Error::Start { exit_code, .. } => *exit_code, _ => 125 };
                self.update(&c, |s| {
                    s.error = msg.clone();
                    s.exit_code = code;
                })?;
                Err(e)
            }
        }
    }

    /// Mounts the rootfs, connects the networks, writes the bundle and spawns the shim; returns the
    /// container's pid and its endpoints.
    fn launch(&self, rec: &ContainerRecord) -> Result<(i32, std::collections::BTreeMap<String, crate::network::Endpoint>)> {
        let dir = self.container_dir(&rec.id);
        let rootfs = dir.join("rootfs");
        self.inner.snapshots.mount(&rec.id, &rootfs)?;
        let endpoints = match self.connect_networks(rec) {
            Ok(e) => e,
            Err(e) => {
                let _ = snapshot::Snapshotter::unmount(&rootfs);
                return Err(e);
            }
        };
        let result = self.write_bundle_and_spawn(rec, &dir, &endpoints);
        if result.is_err() {
            if !endpoints.is_empty() {
                self.disconnect_networks(&rec.id);
            }
            let _ = snapshot::Snapshotter::unmount(&rootfs);
        }
        result.map(|pid| (pid, endpoints))
    }

    fn write_bundle_and_spawn(&self, rec: &ContainerRecord, dir: &std::path::Path, endpoints: &std::collections::BTreeMap<String, crate::network::Endpoint>) -> Result<i32> {
        let rootfs = dir.join("rootfs");
        let exec_user = user::resolve(&rootfs, &rec.config.user)?;
        let image_cfg = self.inner.images.get(&rec.image).map(|i| ImageRunConfig::from_image(&i.config)).unwrap_or_default();
        let hc = &rec.host_config;
        // eth0's address for /etc/hosts; the first user network's gateway answers names.
        let first = endpoints.values().find(|e| e.attachment.ifname == "eth0").or_else(|| endpoints.values().next());
        let own_ip = first.map(|e| e.attachment.ip.to_string());
        let embedded_dns = endpoints.values().filter(|e| !e.dns_names.is_empty()).min_by_key(|e| e.attachment.ifname.clone()).map(|e| e.attachment.gateway.to_string());
        let extra = etc::Extra {
            hosts: &hc.extra_hosts,
            dns: &hc.dns,
            dns_search: &hc.dns_search,
            dns_options: &hc.dns_options,
            own_ip: own_ip.as_deref(),
            embedded_dns: embedded_dns.as_deref(),
        };
        let etc_files = etc::write(dir, &rec.config.hostname, &rec.config.domainname, &extra)
            .map_err(|e| Error::io(format!("writing /etc files for {}", rec.id), e))?;
        let mut run_cfg = image_cfg;
        // The record already holds the merged env; don't merge the image's twice.
        run_cfg.env.clear();
        crate::volumes::copy_up(&rootfs, &rec.mounts)?;
        let (mut joins, host) = self.shared_namespaces(rec)?;
        if let Some(e) = first {
            joins.push(("network", e.attachment.netns.display().to_string()));
        }
        let mut with_shm = rec.clone();
        if let Some(shm) = self.shared_shm(rec)? {
            with_shm.mounts.push(crate::volumes::MountPoint {
                kind: "bind".into(),
                source: shm.display().to_string(),
                destination: "/dev/shm".into(),
                rw: true,
                propagation: "rprivate".into(),
                ..Default::default()
            });
        }
        let oci = spec::build(&spec::SpecInput {
            record: &with_shm,
            image: &run_cfg,
            user: &exec_user,
            hostname: &rec.config.hostname,
            etc_files: &etc_files,
            cgroup_v2: self.inner.cgroup_v2,
            joins: &joins,
            host: &host,
        })?;
        let data = serde_json::to_vec(&oci).map_err(|e| Error::Internal(format!("encoding config.json: {e}")))?;
        store::write_atomic(&dir.join("config.json"), &data)?;
        let shim_dir = self.shim_dir(&rec.id);
        let _ = std::fs::remove_dir_all(&shim_dir);
        std::fs::create_dir_all(&shim_dir).map_err(|e| Error::io(format!("creating {}", shim_dir.display()), e))?;
        let cfg = shim::ShimConfig {
            id: rec.id.clone(),
            bundle: dir.to_path_buf(),
            runtime_root: self.runtime_root(),
            state_dir: shim_dir,
            log: self.log_path(&rec.id),
            tty: rec.config.tty,
            stdin: rec.config.open_stdin,
            seccomp_cache: Some(self.inner.root.join("run/seccomp")),
        };
        match shim::spawn(&self.inner.berth_binary, &cfg) {
            Ok(started) => Ok(started.pid),
            Err(e) => Err(Error::Start { message: e.message, exit_code: e.exit_code }),
        }
    }

    /// Docker's shareable IPC: such a container's /dev/shm is a tmpfs on the host (in its
    /// directory), which containers joining its IPC namespace bind as well; a mount in another
    /// mount namespace could not be bound from /proc/<pid>/root.
    fn shared_shm(&self, rec: &ContainerRecord) -> Result<Option<std::path::PathBuf>> {
        let hc = &rec.host_config;
        if hc.ipc_mode == "shareable" {
            let shm = self.container_dir(&rec.id).join("shm");
            std::fs::create_dir_all(&shm).map_err(|e| Error::io(format!("creating {}", shm.display()), e))?;
            if !is_mountpoint(&shm) {
                let size = if hc.shm_size > 0 { hc.shm_size } else { 64 << 20 };
                nix::mount::mount(
                    Some("shm"),
                    &shm,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC,
                    Some(format!("mode=1777,size={size}").as_str()),
                )
                .map_err(|e| Error::io(format!("mounting the shareable /dev/shm of {}", rec.id), e.into()))?;
            }
            return Ok(Some(shm));
        }
        if let Some(other) = hc.ipc_mode.strip_prefix("container:") {
            let o = self.container(other)?;
            if o.host_config.ipc_mode != "shareable" {
                return Err(Error::Conflict(format!("cannot join the IPC namespace of {other}: non-shareable IPC (hint: use --ipc shareable for the donor container)")));
            }
            return Ok(Some(self.container_dir(&o.id).join("shm")));
        }
        Ok(None)
    }

    /// Namespaces shared with another container (`container:X`, the pause pattern pods use) or
    /// with the host, from the network, pid and ipc modes.
    pub(crate) fn shared_namespaces(&self, rec: &ContainerRecord) -> Result<SharedNamespaces> {
        let hc = &rec.host_config;
        let mut joins = Vec::new();
        let mut host = Vec::new();
        for (kind, file, mode) in [("network", "net", &hc.network_mode), ("pid", "pid", &hc.pid_mode), ("ipc", "ipc", &hc.ipc_mode)] {
            if mode == "host" {
                host.push(kind);
            } else if let Some(other) = mode.strip_prefix("container:") {
                let o = self.container(other)?;
                if !o.state.running() || o.state.pid <= 0 {
                    return Err(Error::Conflict(format!("cannot join the {kind} namespace of container {other}: it is not running")));
                }
                joins.push((kind, format!("/proc/{}/ns/{file}", o.state.pid)));
            }
        }
        Ok((joins, host))
    }

    /// Applies `f` to the state, persists it and tells waiters.
    pub(crate) fn update(&self, c: &Container, f: impl FnOnce(&mut State)) -> Result<()> {
        let rec = {
            let mut rec = c.record();
            f(&mut rec.state);
            rec.clone()
        };
        store::save(&self.container_dir(&rec.id), &rec)?;
        c.observed.send_replace(Observed { state: rec.state, removed: false });
        Ok(())
    }

    /// Waits (on a blocking thread) for the shim to report the exit, then records it.
    pub(crate) fn monitor(&self, c: Arc<Container>) {
        let engine = self.clone();
        tokio::spawn(async move {
            let id = c.record().id.clone();
            let shim_dir = engine.shim_dir(&id);
            let status = match wait_async(&shim_dir).await {
                Some(s) => Some(s),
                None => shim::read_exit(&shim_dir),
            };
            engine.on_exit(&c, status).await;
        });
    }

    async fn on_exit(&self, c: &Arc<Container>, status: Option<shim::ExitStatus>) {
        let id = c.record().id.clone();
        if !std::mem::take(&mut c.record().endpoints).is_empty() {
            let (engine, id) = (self.clone(), id.clone());
            let _ = blocking(move || {
                engine.disconnect_networks(&id);
                Ok(())
            })
            .await;
        }
        let rootfs = self.container_dir(&id).join("rootfs");
        let shim_dir = self.shim_dir(&id);
        let _ = blocking(move || {
            snapshot::Snapshotter::unmount(&rootfs)?;
            let _ = std::fs::remove_dir_all(&shim_dir);
            Ok(())
        })
        .await;
        let result = self.update(c, |s| {
            s.status = Status::Exited;
            s.pid = 0;
            s.finished_at = Some(status.as_ref().map(|x| x.finished_at.clone()).unwrap_or_else(now_rfc3339));
            match &status {
                Some(x) => {
                    s.exit_code = x.exit_code;
                    s.oom_killed = x.oom_killed;
                }
                None => {
                    s.exit_code = 255;
                    s.error = "container shim exited without reporting an exit status".into();
                }
            }
            s.exit_count += 1;
        });
        if let Err(e) = result {
            tracing::warn!(container = %id, error = %e, "recording exit failed");
        }
        if c.record().host_config.auto_remove {
            // --rm takes the container's anonymous volumes with it, as Docker does.
            if let Err(e) = self.remove(&id, true, true).await {
                tracing::warn!(container = %id, error = %e, "auto-remove failed");
            }
        }
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, name: &str, signal: Option<&str>) -> Result<()> {
        let c = self.lookup(name)?;
        let rec = c.snapshot();
        if !rec.state.running() {
            return Err(Error::Conflict(format!("Container {} is not running", rec.id)));
        }
        let sig = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("KILL"))?;
        self.signal(&rec.id, sig).await
    }

    async fn signal(&self, id: &str, sig: i32) -> Result<()> {
        let dir = self.shim_dir(id);
        let id = id.to_string();
        blocking(move || {
            shim::Client::new(&dir)
                .kill(sig, false)
                .map_err(|e| Error::Internal(format!("cannot kill container {id}: {e}")))
        })
        .await
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(&self, name: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        let rec = c.snapshot();
        if !rec.state.running() {
            return Err(Error::NotModified(rec.id, "stopped"));
        }
        let sig = parse_signal(signal.or(rec.config.stop_signal.as_deref()).unwrap_or("TERM"))?;
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let mut rx = c.observed.subscribe();
        let base = rec.state.exit_count;
        if let Err(e) = self.signal(&rec.id, sig).await {
            tracing::debug!(container = %rec.id, error = %e, "stop signal not delivered");
        }
        let exited = |o: &Observed| o.state.exit_count > base || o.removed;
        if secs >= 0 {
            let deadline = Duration::from_secs(secs as u64);
            if tokio::time::timeout(deadline, rx.wait_for(exited)).await.is_ok() {
                return Ok(());
            }
        }
        let _ = self.signal(&rec.id, libc::SIGKILL).await;
        let _ = rx.wait_for(exited).await;
        Ok(())
    }

    /// `POST /containers/{id}/wait`: registers at once (so the caller may start the container next),
    /// the returned future resolves with the exit code.
    pub fn wait(&self, name: &str, condition: WaitCondition) -> Result<impl std::future::Future<Output = i32> + Send + 'static> {
        let c = self.lookup(name)?;
        let mut rx = c.observed.subscribe();
        let base = rx.borrow().state.exit_count;
        Ok(async move {
            let done = rx
                .wait_for(|o| match condition {
                    WaitCondition::NotRunning => o.removed || !matches!(o.state.status, Status::Running | Status::Restarting),
                    WaitCondition::NextExit => o.removed || o.state.exit_count > base,
                    WaitCondition::Removed => o.removed,
                })
                .await
                .map(|o| o.state.exit_code);
            // A dropped sender means the container went away: report its last code.
            done.unwrap_or_else(|_| c.record().state.exit_code)
        })
    }

    /// `DELETE /containers/{id}`.
    /// `docker rm [-f] [-v]`: `volumes` also removes the container's anonymous volumes.
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        let rec = c.snapshot();
        if rec.state.running() {
            if !force {
                return Err(Error::Conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    rec.name
                )));
            }
            let mut rx = c.observed.subscribe();
            let base = rec.state.exit_count;
            let _ = self.signal(&rec.id, libc::SIGKILL).await;
            let waited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|o| o.state.exit_count > base)).await;
            if waited.is_err() {
                return Err(Error::Internal(format!("container {} did not exit after SIGKILL", rec.id)));
            }
        }
        lock(&self.inner.containers).remove(&rec.id);
        lock(&self.inner.execs).retain(|_, e| e.container_id != rec.id);
        let dir = self.container_dir(&rec.id);
        let shim_dir = self.shim_dir(&rec.id);
        let snapshots = self.inner.snapshots.clone();
        let id = rec.id.clone();
        blocking(move || {
            snapshot::Snapshotter::unmount(&dir.join("rootfs"))?;
            if is_mountpoint(&dir.join("shm")) {
                let _ = nix::mount::umount2(&dir.join("shm"), nix::mount::MntFlags::MNT_DETACH);
            }
            snapshots.remove(&id)?;
            let _ = std::fs::remove_dir_all(&shim_dir);
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
        })
        .await?;
        c.observed.send_modify(|o| o.removed = true);
        if volumes {
            self.remove_anonymous_volumes(&rec.mounts);
        }
        // Layers of an image force-removed while this container used it can go now.
        if self.inner.images.get(&rec.image).is_ok() {
            return Ok(());
        }
        let engine = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = engine.inner.images.collect_garbage() {
                tracing::debug!(error = %e, "image garbage collection");
            }
        });
        Ok(())
    }

    /// After a restart: reattach to live shims, record exits that happened while the engine was away.
    pub(crate) async fn restore(&self) -> Result<()> {
        for rec in store::load_all(&self.inner.root.join("containers")) {
            let running = rec.state.running();
            let c = Container::new(rec.clone());
            lock(&self.inner.containers).insert(rec.id.clone(), c.clone());
            if !running {
                continue;
            }
            let dir = self.shim_dir(&rec.id);
            let alive = blocking(move || Ok(shim::Client::new(&dir).state().is_ok())).await.unwrap_or(false);
            if alive {
                tracing::info!(container = %rec.id, "reattached to running container");
                self.monitor(c);
            } else {
                let status = shim::read_exit(&self.shim_dir(&rec.id));
                self.on_exit(&c, status).await;
            }
        }
        Ok(())
    }
}

/// The shim's `wait`, on the async runtime: one idle socket per running container instead of a
/// blocked thread each.
async fn wait_async(state_dir: &std::path::Path) -> Option<shim::ExitStatus> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (_dir, path) = shim::protocol::socket_path(state_dir).ok()?;
    let mut sock = tokio::net::UnixStream::connect(&path).await.ok()?;
    let req = serde_json::to_vec(&shim::protocol::Request::Wait).ok()?;
    sock.write_all(&[req.as_slice(), b"\n"].concat()).await.ok()?;
    let mut line = String::new();
    tokio::io::BufReader::new(sock).read_line(&mut line).await.ok()?;
    serde_json::from_str(line.trim()).ok()
}

impl Engine {
    /// The container's stdin for an attach: waits until the container runs, then takes the write end
    /// from its shim (once, as Docker's StdinOnce; a tty's master may be taken again).
    pub async fn container_stdin(&self, name: &str) -> Result<crate::fdio::FdStream> {
        let c = self.lookup(name)?;
        let mut rx = c.observed.subscribe();
        let state = rx
            .wait_for(|o| o.removed || o.state.status != Status::Created || !o.state.error.is_empty())
            .await
            .map_err(|_| Error::no_container(name))?
            .state
            .clone();
        let rec = c.snapshot();
        if state.status != Status::Running {
            return Err(Error::Conflict(format!("container {} is not running", rec.id)));
        }
        let dir = self.shim_dir(&rec.id);
        let fd = blocking(move || {
            shim::Client::new(&dir).take_stdin().map_err(|e| Error::Internal(format!("cannot attach stdin: {e}")))
        })
        .await?;
        crate::fdio::FdStream::new(fd, rec.config.tty).map_err(|e| Error::io("stdin", e))
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(&self, name: &str, width: u16, height: u16) -> Result<()> {
        let rec = self.container(name)?;
        if !rec.state.running() {
            return Err(Error::Conflict(format!("container {} is not running", rec.id)));
        }
        let dir = self.shim_dir(&rec.id);
        blocking(move || {
            shim::Client::new(&dir).resize(width, height).map_err(|e| Error::Internal(format!("cannot resize: {e}")))
        })
        .await
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_spelling() {
        assert_eq!(parse_signal("INT").expect("sig"), libc::SIGINT);
        assert_eq!(parse_signal("SIGKILL").expect("sig"), libc::SIGKILL);
        assert_eq!(parse_signal("term").expect("sig"), libc::SIGTERM);
        assert_eq!(parse_signal("9").expect("sig"), 9);
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn wait_conditions_parse() {
        assert_eq!(WaitCondition::parse("").expect("c"), WaitCondition::NotRunning);
        assert_eq!(WaitCondition::parse("removed").expect("c"), WaitCondition::Removed);
        assert!(WaitCondition::parse("later").is_err());
    }
}
