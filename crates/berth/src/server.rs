//! `berth server`: the Kubernetes API server over SQLite (default, in the root) or etcd. It keeps
//! its PKI in `<root>/pki` and writes an admin kubeconfig to `<root>/kubeconfig.yaml`.
use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;

#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// State root: datastore (SQLite), certificates, kubeconfig.
    #[arg(long, default_value = "/var/lib/berth/server")]
    pub root: PathBuf,
    /// HTTPS port of the Kubernetes API.
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: String,
    /// etcd endpoints (http://host:port, comma-separated) instead of the embedded SQLite datastore.
    #[arg(long)]
    pub datastore_endpoint: Option<String>,
    /// Extra names and addresses for the serving certificate.
    #[arg(long = "tls-san", value_name = "NAME|IP")]
    pub tls_sans: Vec<String>,
    /// Verbose logs.
    #[arg(long)]
    pub debug: bool,
}

pub fn run(a: ServerArgs) -> anyhow::Result<()> {
    let filter = if a.debug { "debug,h2=info,hyper=info,rustls=info,tower=info" } else { "info" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)))
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the async runtime")?;
    rt.block_on(serve(a))
}

async fn serve(a: ServerArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.root).with_context(|| format!("creating {}", a.root.display()))?;
    let mut sans = a.tls_sans.clone();
    if a.bind_address != "127.0.0.1" && a.bind_address != "0.0.0.0" {
        sans.push(a.bind_address.clone());
    }
    let pki = pki::Pki::load_or_create(&a.root.join("pki"), &sans).context("setting up the certificates")?;
    // etcd may still be starting (a service manager starts both at once): keep trying for a while.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let store = loop {
        match store::open(a.datastore_endpoint.as_deref(), &a.root).await {
            Ok(s) => break s,
            Err(e) if a.datastore_endpoint.is_some() && std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "the datastore is not reachable yet; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e).context("opening the datastore"),
        }
    };
    let listener = tokio::net::TcpListener::bind((a.bind_address.as_str(), a.api_port))
        .await
        .with_context(|| format!("listening on {}:{}", a.bind_address, a.api_port))?;
    let port = listener.local_addr().context("the listening address")?.port();
    let admin = apiserver::User { name: "admin".into(), groups: vec!["system:masters".into(), "system:authenticated".into()] };
    let tokens = HashMap::from([(pki.token().to_string(), admin)]);
    let sa_key = service_account_key(&a.root.join("pki/sa-signing.key"))?;
    let started = std::time::Instant::now();
    let running = apiserver::start(apiserver::Config { store, tls: Some(pki.server_config()), tokens, ca_pem: pki.ca_cert_pem().to_string(), sa_key }, listener)
        .await
        .context("starting the API server")?;
    let host = if a.bind_address == "0.0.0.0" { "127.0.0.1" } else { a.bind_address.as_str() };
    let kubeconfig = a.root.join("kubeconfig.yaml");
    pki::write_kubeconfig(&kubeconfig, &format!("https://{host}:{port}"), "berth", &pki).context("writing the kubeconfig")?;
    tracing::info!(address = %running.addr, kubeconfig = %kubeconfig.display(), ready_ms = started.elapsed().as_millis() as u64, "berth server ready");
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("shutting down");
    Ok(())
}

/// The service account signing key: 32 random bytes made once, kept 0600 (tokens outlive restarts).
fn service_account_key(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(k) = std::fs::read(path) {
        if k.len() >= 32 {
            return Ok(k);
        }
    }
    use rand::RngCore;
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::io::Write::write_all(&mut f, &key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}
