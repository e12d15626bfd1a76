//! berth's Kubernetes API server: the REST API kubectl and the client libraries speak, over the
//! `store` datastore, served from an in-memory watch cache, with TLS, client-certificate and
//! token authentication, and RBAC.

pub mod cache;
pub mod discovery;
pub mod housekeeping;
pub mod kinds;
pub mod proto;
mod proto_schema;
pub mod rbac;
pub mod rest;
pub mod reviews;
pub mod server;
pub mod status;
pub mod table;
pub mod tokens;
pub mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub use rbac::User;
pub use status::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("starting the API: {0}")]
    Start(String),
}

/// How to serve.
pub struct Config {
    pub store: Arc<dyn store::Store>,
    /// TLS with optional client certificates (None: plain HTTP, for tests on loopback only).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Bearer token → user.
    pub tokens: HashMap<String, User>,
    /// The cluster CA (PEM), published in every namespace as `kube-root-ca.crt`.
    pub ca_pem: String,
    /// The key service account tokens are signed with (keep it across restarts).
    pub sa_key: Vec<u8>,
}

/// A running API: its address and the task serving it.
pub struct Running {
    pub addr: SocketAddr,
    pub api: Arc<rest::Api>,
}

/// Every five minutes the datastore forgets history older than the previous round (upstream's
/// rhythm): at least five minutes of changes stay for continue tokens and watches that resume
/// from the store, and the SQLite file stops growing with every write.
fn spawn_compactor(store: Arc<dyn store::Store>) {
    tokio::spawn(async move {
        let mut previous = 0;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            tick.tick().await;
            if previous > 0 {
                if let Err(e) = store.compact(previous).await {
                    tracing::warn!(error = %e, revision = previous, "compaction failed");
                }
            }
            match store.current_revision().await {
                Ok(r) => previous = r,
                Err(e) => tracing::warn!(error = %e, "reading the revision for compaction"),
            }
        }
    });
}

/// Loads the cache, creates the system objects, starts housekeeping and serves on `listener`
/// until the process ends.
pub async fn start(cfg: Config, listener: TcpListener) -> Result<Running, Error> {
    let addr = listener.local_addr().map_err(|e| Error::Start(e.to_string()))?;
    let cache = cache::Cache::start(cfg.store.clone()).await.map_err(|e| Error::Start(e.message))?;
    let api = Arc::new(rest::Api { store: cfg.store.clone(), cache });
    housekeeping::bootstrap(&api).await.map_err(|e| Error::Start(e.message))?;
    housekeeping::spawn(api.clone(), cfg.ca_pem.clone());
    spawn_compactor(cfg.store.clone());
    let server = Arc::new(server::Server { api: api.clone(), auth: server::Authenticator { tokens: cfg.tokens, sa_key: cfg.sa_key } });
    let tls = cfg.tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (server, tls) = (server.clone(), tls.clone());
            tokio::spawn(async move {
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                // Per-stream send buffers: hyper's 400 KiB default times a thousand watch streams
                // is 400 MiB of RSS; 64 KiB still keeps a burst of events in one write.
                builder.http2().max_send_buf_size(64 * 1024);
                match tls {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        // The certificate chain was verified against the CA by TLS; CN is the user and
                        // each O a group, as upstream.
                        let user = stream.get_ref().1.peer_certificates().and_then(pki::client_identity).map(|i| User { name: i.user, groups: i.groups });
                        let svc = hyper::service::service_fn(move |req| {
                            let (server, user) = (server.clone(), user.clone());
                            async move { Ok::<_, std::convert::Infallible>(server.handle(req, user).await) }
                        });
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                    }
                    None => {
                        let svc = hyper::service::service_fn(move |req| {
                            let server = server.clone();
                            async move { Ok::<_, std::convert::Infallible>(server.handle(req, None).await) }
                        });
                        let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    Ok(Running { addr, api })
}
