//! `/containers/{id}/exec` and `/exec/{id}/…`.
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{Params, Shared};
use crate::error::{ApiError, ApiResult};
use crate::stream::{self, frame};

pub async fn create(State(engine): State<Shared>, Path(id): Path<String>, body: Bytes) -> ApiResult<impl IntoResponse> {
    let cfg: engine::ExecConfig =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid exec config: {e}")))?;
    let exec_id = engine.exec_create(&id, cfg)?;
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
}

pub async fn start(State(engine): State<Shared>, Path(id): Path<String>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let sb: StartBody = if bytes.is_empty() { StartBody::default() } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid exec start body: {e}")))?
    };
    let io = engine.exec_start(&id).await?;
    if sb.detach {
        return Ok(StatusCode::OK.into_response());
    }
    let tty = io.tty;
    let req = Request::from_parts(parts, axum::body::Body::empty());
    Ok(stream::hijack(req, tty, move |conn| async move {
        let (mut rd, mut wr) = tokio::io::split(conn);
        let engine::ExecIo { pty, stdin, stdout, stderr, exit, .. } = io;
        if let Some(pty) = pty {
            let (mut out, mut input) = tokio::io::split(pty);
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut rd, &mut input).await;
            });
            let _ = tokio::io::copy(&mut out, &mut wr).await;
        } else {
            if let Some(mut stdin) = stdin {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut rd, &mut stdin).await;
                });
            }
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
            for (s, src) in [(stream::STDOUT, stdout), (stream::STDERR, stderr)] {
                if let Some(src) = src {
                    tokio::spawn(pump(src, s, tx.clone()));
                }
            }
            drop(tx);
            while let Some(chunk) = rx.recv().await {
                if wr.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        }
        // The CLI reads ExitCode right after the stream ends: have it recorded first.
        let _ = exit.await;
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    }))
}

/// Reads one output pipe and sends framed chunks until EOF.
async fn pump(mut src: impl AsyncRead + Unpin, stream_id: u8, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(frame(stream_id, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

pub async fn resize(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    let dim = |k: &str| q.get(k).and_then(|v| v.parse::<u16>().ok()).unwrap_or(0);
    engine.exec_resize(&id, dim("w"), dim("h"))?;
    Ok(StatusCode::OK)
}

pub async fn inspect(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let e = engine.exec_inspect(&id)?;
    Ok(Json(json!({
        "ID": e.id,
        "ContainerID": e.container_id,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "Pid": e.pid,
        "OpenStdin": e.config.attach_stdin,
        "OpenStdout": e.config.attach_stdout,
        "OpenStderr": e.config.attach_stderr,
        "CanRemove": false,
        "DetachKeys": "",
        "ProcessConfig": {
            "tty": e.config.tty,
            "entrypoint": e.config.cmd.first(),
            "arguments": e.config.cmd.get(1..).unwrap_or_default(),
            "privileged": e.config.privileged,
            "user": e.config.user,
        },
    })))
}
