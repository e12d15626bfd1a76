//! Docker's stream framing and connection hijacking (101 upgrade) for attach and exec.
use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub const RAW: &str = "application/vnd.docker.raw-stream";
pub const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

/// Stream ids in the 8-byte frame header.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// One multiplexed frame: `[stream, 0, 0, 0, len as u32 BE] ++ payload`.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// Answers `101 UPGRADED` and hands the raw connection to `f` once hyper releases it. Clients that
/// did not ask for an upgrade get a plain 200 whose body is not streamed: every client we serve asks.
pub fn hijack<F, Fut>(mut req: Request<Body>, tty: bool, f: F) -> Response<Body>
where
    F: FnOnce(Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => f(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "hijack failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, if tty { RAW } else { MULTIPLEXED })
        .body(Body::empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stream_and_big_endian_length() {
        assert_eq!(frame(STDERR, b"hi"), vec![2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
