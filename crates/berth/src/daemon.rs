//! `berth engine`: wires the engine core to the Docker Engine API server. Containers keep running
//! when the engine stops (their shims hold them); a restarted engine reattaches.
use std::path::PathBuf;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// What `berth engine` was asked to do.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// State root (images, containers, volumes); default /var/lib/berth.
    pub root: PathBuf,
    /// Docker Engine API unix socket; default /run/berth/berth.sock.
    pub socket: PathBuf,
    /// Verbose logs.
    pub debug: bool,
    /// Registries spoken to over plain HTTP (besides loopback ones).
    pub insecure_registries: Vec<String>,
    /// Default bridge name (`none`: no bridge; containers get a loopback-only namespace).
    pub bridge: String,
    /// The bridge's subnet (default: 172.18.0.0/16 or the next free 172.x.0.0/16).
    pub bip: Option<String>,
}

/// Runs the engine in the foreground until SIGINT/SIGTERM.
pub fn run(opts: EngineOptions) -> anyhow::Result<()> {
    // netlink-packet-route warns about every attribute newer kernels add; it is not our news.
    let filter = if opts.debug { "debug,netlink_packet_route=error" } else { "info,netlink_packet_route=error" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("berth engine must run as root (it creates namespaces, mounts and cgroups)");
    }
    // Two workers are plenty for an API server whose heavy lifting happens in shims.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(256)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(opts))
}

async fn serve(opts: EngineOptions) -> anyhow::Result<()> {
    let berth_binary = std::env::current_exe().context("locating the berth binary")?;
    let engine = engine::Engine::open(engine::Options {
        root: opts.root.clone(),
        berth_binary,
        insecure_registries: opts.insecure_registries.clone(),
        bridge: (opts.bridge != "none").then(|| engine::network::BridgeOptions { name: opts.bridge.clone(), subnet: opts.bip.clone() }),
    })
        .await
        .with_context(|| format!("opening the engine root {}", opts.root.display()))?;
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("shutting down; containers keep running under their shims, published ports answer again once the engine is back");
        stopper.cancel();
    });
    tracing::info!(socket = %opts.socket.display(), root = %opts.root.display(), "berth engine listening");
    let served = engine_api::serve(engine.clone(), &opts.socket, shutdown).await;
    engine.shutdown_network();
    served.with_context(|| format!("serving the API on {}", opts.socket.display()))
}
