//! The Docker Engine API (claims v1.44, accepts 1.24 and up) served over a unix socket with
//! axum/hyper. Handlers only parse, call the engine and render; the JSON shapes follow what the docker
//! CLI, docker-py and Compose parse (see shared/research/docker-engine-api.md).
//!
//! Owns HTTP, versioned paths, error-to-status mapping, stream framing and hijacking. Owns no state.

mod error;
mod render;
mod routes;
mod stream;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

pub use error::ApiError;
pub use render::human_duration;

/// The API version berth claims: not above 1.44, where image inspect still carries ContainerConfig
/// (Compose 1.29 reads it).
pub const API_VERSION: &str = "1.44";
pub const MIN_API_VERSION: &str = "1.24";

/// Binds `socket` (replacing a stale one; mode 0660) and serves until `shutdown` fires.
pub async fn serve(engine: engine::Engine, socket: &Path, shutdown: CancellationToken) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    let router = routes::router(Arc::new(engine));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (conn, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue }
            },
        };
        let router = router.clone();
        tasks.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let mut router = router.clone();
                async move { Ok::<_, std::convert::Infallible>(dispatch(&mut router, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(conn), svc)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// Strips `/vX.Y`, refuses versions above ours, routes, and stamps the headers every response carries.
async fn dispatch(router: &mut axum::Router, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path();
    let mut response = None;
    if let Some((version, rest)) = split_version(path) {
        if version_gt(version, API_VERSION) {
            response = Some(ApiError::bad_request(format!(
                "client version {version} is too new. Maximum supported API version is {API_VERSION}"
            )).into_response());
        } else {
            let pq = match parts.uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.to_string(),
            };
            if let Ok(uri) = pq.parse() {
                parts.uri = uri;
            }
        }
    }
    let mut resp = match response {
        Some(r) => r,
        None => match router.call(Request::from_parts(parts, Body::new(body))).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
    };
    let status = resp.status();
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Server", HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)")));
    if status == StatusCode::NOT_FOUND && !h.contains_key("content-type") {
        return ApiError::not_found("page not found").into_response();
    }
    resp
}

/// `/v1.44/containers/json` → ("1.44", "/containers/json").
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let slash = rest.find('/')?;
    let version = &rest[..slash];
    let valid = version.split('.').count() == 2 && version.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    valid.then(|| (version, &rest[slash..]))
}

fn version_gt(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> (u32, u32) {
        let mut it = v.split('.').map(|p| p.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    parse(a) > parse(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths_split() {
        assert_eq!(split_version("/v1.44/containers/json"), Some(("1.44", "/containers/json")));
        assert_eq!(split_version("/containers/json"), None);
        assert_eq!(split_version("/volumes"), None);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_gt("1.51", "1.44"));
        assert!(!version_gt("1.44", "1.44"));
        assert!(!version_gt("1.9", "1.44"));
    }
}
