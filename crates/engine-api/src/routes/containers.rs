//! `/containers/…`.
use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::{filters, flag, Params, Shared};
use crate::error::{ApiError, ApiResult};
use crate::render;
use crate::stream::{self, frame};

pub async fn create(State(engine): State<Shared>, q: Params, body: Bytes) -> ApiResult<impl IntoResponse> {
    let v: Value = if body.is_empty() { json!({}) } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON in create request: {e}")))?
    };
    let config: engine::ContainerConfig =
        serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("invalid container config: {e}")))?;
    let host_config: engine::HostConfig = match v.get("HostConfig") {
        Some(h) if !h.is_null() => serde_json::from_value(h.clone())
            .map_err(|e| ApiError::bad_request(format!("invalid HostConfig: {e}")))?,
        _ => Default::default(),
    };
    if config.image.is_empty() {
        return Err(ApiError::bad_request("config cannot be empty in order to create a container"));
    }
    let networks = match v.pointer("/NetworkingConfig/EndpointsConfig") {
        Some(n) if !n.is_null() => serde_json::from_value(n.clone()).map_err(|e| ApiError::bad_request(format!("invalid NetworkingConfig: {e}")))?,
        _ => Default::default(),
    };
    let rec = engine
        .create(engine::CreateRequest { name: q.get("name").cloned(), config, host_config, networks })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": rec.id, "Warnings": []}))))
}

fn matches_filters(r: &engine::ContainerRecord, f: &HashMap<String, Vec<String>>) -> bool {
    f.iter().all(|(key, values)| {
        values.is_empty()
            || values.iter().any(|v| match key.as_str() {
                "id" => r.id.starts_with(v.as_str()),
                "name" => r.name.contains(v.trim_start_matches('/')),
                "status" => r.state.status.as_str() == v,
                "exited" => r.state.status == engine::Status::Exited && r.state.exit_code.to_string() == *v,
                "ancestor" => r.image_name == *v || r.image == *v || r.image.trim_start_matches("sha256:").starts_with(v.as_str()),
                "label" => match v.split_once('=') {
                    Some((k, val)) => r.config.labels.get(k).is_some_and(|x| x == val),
                    None => r.config.labels.contains_key(v.as_str()),
                },
                _ => true,
            })
    })
}

pub async fn list(State(engine): State<Shared>, q: Params) -> ApiResult<impl IntoResponse> {
    let f = filters(&q)?;
    let all = flag(&q, "all") || f.contains_key("status") || f.contains_key("exited");
    let limit: Option<usize> = q.get("limit").and_then(|l| l.parse::<i64>().ok()).filter(|l| *l > 0).map(|l| l as usize);
    let mut out: Vec<Value> = engine
        .containers()
        .iter()
        .filter(|r| all || r.state.running())
        .filter(|r| matches_filters(r, &f))
        .map(render::container_summary)
        .collect();
    if let Some(l) = limit {
        out.truncate(l);
    }
    Ok(Json(out))
}

pub async fn inspect(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let r = engine.container(&id)?;
    let log = engine.container_log_path(&r.id);
    let dir = engine.root().join("containers").join(&r.id);
    Ok(Json(render::container_inspect(&r, &log.display().to_string(), &dir.display().to_string(), &[])))
}

pub async fn start(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    engine.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn timeout(q: &HashMap<String, String>) -> ApiResult<Option<i64>> {
    match q.get("t").or_else(|| q.get("timeout")) {
        None => Ok(None),
        Some(t) => t.parse().map(Some).map_err(|_| ApiError::bad_request(format!("invalid timeout {t:?}"))),
    }
}

pub async fn stop(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    engine.stop(&id, timeout(&q)?, q.get("signal").map(String::as_str)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn restart(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    match engine.stop(&id, timeout(&q)?, q.get("signal").map(String::as_str)).await {
        Ok(()) | Err(engine::Error::NotModified(..)) => {}
        Err(e) => return Err(e.into()),
    }
    engine.start(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn kill(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    engine.kill(&id, q.get("signal").map(String::as_str)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    engine.remove(&id, flag(&q, "force"), flag(&q, "v")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Registers the wait before answering, sends the headers at once (the CLI starts the container
/// only after it has them) and the body at exit.
pub async fn wait(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<Response> {
    let cond = engine::WaitCondition::parse(q.get("condition").map(String::as_str).unwrap_or(""))?;
    let done = engine.wait(&id, cond)?;
    let body = futures_util::stream::once(async move {
        let code = done.await;
        Ok::<_, std::io::Error>(Bytes::from(json!({"StatusCode": code, "Error": null}).to_string() + "\n"))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_default())
}

pub async fn resize(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    let dim = |k: &str| q.get(k).and_then(|v| v.parse::<u16>().ok()).unwrap_or(0);
    engine.resize(&id, dim("w"), dim("h")).await?;
    Ok(StatusCode::OK)
}

fn render_entry(e: &engine::LogEntry, tty: bool, timestamps: bool) -> Vec<u8> {
    let mut payload = Vec::with_capacity(e.data.len() + 32);
    if timestamps {
        payload.extend_from_slice(e.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(&e.data);
    if tty {
        payload
    } else {
        let s = match e.stream {
            engine::LogStreamKind::Stdout => stream::STDOUT,
            engine::LogStreamKind::Stderr => stream::STDERR,
        };
        frame(s, &payload)
    }
}

fn parse_time(v: Option<&String>) -> ApiResult<Option<f64>> {
    match v.map(String::as_str) {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => s
            .parse::<f64>()
            .map(Some)
            .or_else(|_| chrono::DateTime::parse_from_rfc3339(s).map(|t| Some(t.timestamp() as f64)))
            .map_err(|_| ApiError::bad_request(format!("invalid time {s:?}: use unix seconds or RFC 3339"))),
    }
}

pub async fn logs(State(engine): State<Shared>, Path(id): Path<String>, q: Params) -> ApiResult<Response> {
    let (stdout, stderr) = (flag(&q, "stdout"), flag(&q, "stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let tail = q.get("tail").filter(|t| t.as_str() != "all").and_then(|t| t.parse().ok());
    let opts = engine::LogOptions {
        stdout,
        stderr,
        follow: flag(&q, "follow"),
        tail,
        since: parse_time(q.get("since"))?,
        until: parse_time(q.get("until"))?,
    };
    let timestamps = flag(&q, "timestamps");
    let (rec, entries) = engine.logs(&id, opts).await?;
    let tty = rec.config.tty;
    let body = tokio_stream_from(entries).map(move |e| Ok::<_, std::io::Error>(Bytes::from(render_entry(&e, tty, timestamps))));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, if tty { stream::RAW } else { stream::MULTIPLEXED })
        .body(Body::from_stream(body))
        .unwrap_or_default())
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Hijacks the connection: container output (from now until exit) goes out, client input goes to
/// the container's stdin; a half-close from the client closes stdin but keeps output flowing.
pub async fn attach(State(engine): State<Shared>, Path(id): Path<String>, q: Params, req: Request) -> ApiResult<Response> {
    let want_stdin = flag(&q, "stdin");
    let (rec, mut entries) = engine.attach_output(&id, flag(&q, "stdout"), flag(&q, "stderr")).await?;
    let tty = rec.config.tty;
    let stdin_wanted = want_stdin && rec.config.open_stdin;
    Ok(stream::hijack(req, tty, move |conn| async move {
        let (mut rd, mut wr) = tokio::io::split(conn);
        if stdin_wanted {
            let engine = engine.clone();
            let name = rec.id.clone();
            tokio::spawn(async move {
                match engine.container_stdin(&name).await {
                    Ok(mut stdin) => {
                        let _ = tokio::io::copy(&mut rd, &mut stdin).await;
                    }
                    Err(e) => tracing::debug!(container = %name, error = %e, "stdin not attached"),
                }
            });
        }
        while let Some(e) = entries.recv().await {
            if wr.write_all(&render_entry(&e, tty, false)).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    }))
}
