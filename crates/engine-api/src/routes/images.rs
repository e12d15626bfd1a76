//! `/images/…`. Names carry '/' and ':', so `/images/{*rest}` is split on its known suffixes here.
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::{filters, flag, Params, Shared};
use crate::error::{ApiError, ApiResult};
use crate::render;

pub async fn list(State(engine): State<Shared>, q: Params) -> ApiResult<impl IntoResponse> {
    let f = filters(&q)?;
    let dangling = f.get("dangling").and_then(|v| v.first()).map(|v| v == "true" || v == "1");
    let mut out: Vec<Value> = engine
        .images()
        .iter()
        .filter(|i| dangling.is_none_or(|d| d == i.repo_tags.is_empty()))
        .filter(|i| match f.get("reference") {
            Some(refs) if !refs.is_empty() => refs.iter().any(|r| i.repo_tags.iter().any(|t| t == r || t.starts_with(&format!("{r}:")))),
            _ => true,
        })
        .map(|i| render::image_summary(i, engine.image_users(&i.id.to_string())))
        .collect();
    out.sort_by_key(|v| std::cmp::Reverse(v["Created"].as_i64().unwrap_or(0)));
    Ok(Json(out))
}

fn json_lines(lines: Vec<Value>) -> Response {
    let body: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// `POST /images/create`: `fromSrc=-` imports the request body. Pulling arrives with registry support.
pub async fn create(State(engine): State<Shared>, q: Params, req: Request) -> ApiResult<Response> {
    if q.get("fromSrc").map(String::as_str) == Some("-") {
        let body = req.into_body().into_data_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(body);
        let sync_reader = tokio_util::io::SyncIoBridge::new(reader);
        let changes: Vec<String> = q.get("changes").map(|c| vec![c.clone()]).unwrap_or_default();
        let imported = engine
            .import_image(
                Box::new(sync_reader),
                engine::ImportRequest {
                    repo: q.get("repo").cloned().unwrap_or_default(),
                    tag: q.get("tag").cloned().unwrap_or_default(),
                    message: q.get("message").cloned().unwrap_or_default(),
                    changes,
                },
            )
            .await;
        return Ok(match imported {
            Ok(img) => json_lines(vec![json!({"status": img.id.to_string()})]),
            Err(e) => {
                let msg = e.to_string();
                json_lines(vec![json!({"errorDetail": {"message": msg}, "error": msg})])
            }
        });
    }
    if let Some(from) = q.get("fromImage") {
        let request = engine::PullRequest {
            image: from.clone(),
            tag: q.get("tag").cloned().unwrap_or_default(),
            platform: q.get("platform").cloned(),
            credentials: registry_auth(req.headers()),
        };
        return pull(engine, request).await;
    }
    Err(ApiError::bad_request("either fromSrc or fromImage must be given"))
}

/// `GET /images/get?names=a&names=b`: one archive of several images.
pub async fn get_many(State(engine): State<Shared>, req: Request) -> ApiResult<Response> {
    let names: Vec<String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "names")
        .filter_map(|(_, v)| percent_decode(v))
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("no images to save: give names=IMAGE"));
    }
    save(engine, names).await
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Streams the archive as it is written (through a pipe from the blocking writer).
async fn save(engine: Shared, names: Vec<String>) -> ApiResult<Response> {
    for n in &names {
        engine.image(n)?;
    }
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let out = tokio_util::io::SyncIoBridge::new(writer);
    tokio::spawn(async move {
        if let Err(e) = engine.save_images(names, out).await {
            // The client sees a short archive; the reason goes to the log.
            tracing::warn!(error = %e, "saving images failed mid-stream");
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024)))
        .unwrap_or_default())
}

/// `POST /images/load`: the archive is the body; Docker's `{"stream":"Loaded image: …\n"}` lines.
pub async fn load(State(engine): State<Shared>, q: Params, req: Request) -> ApiResult<Response> {
    let body = req.into_body().into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
    let lines = engine.load_images(Box::new(reader)).await?;
    let _quiet = flag(&q, "quiet");
    Ok(json_lines(lines.into_iter().map(|l| json!({"stream": format!("{l}\n")})).collect()))
}

/// `POST /images/prune`: `filters={"dangling":["false"]}` prunes every unused image.
pub async fn prune(State(engine): State<Shared>, q: Params) -> ApiResult<impl IntoResponse> {
    let f = filters(&q)?;
    let all = f.get("dangling").and_then(|v| v.first()).is_some_and(|v| v == "false" || v == "0");
    let pruned = engine.prune_images(all).await?;
    let deleted: Vec<Value> = pruned
        .removed
        .iter()
        .map(|r| match r {
            image::Removed::Untagged(n) => json!({"Untagged": n}),
            image::Removed::Deleted(d) => json!({"Deleted": d.to_string()}),
        })
        .collect();
    Ok(Json(json!({"ImagesDeleted": if deleted.is_empty() { Value::Null } else { Value::Array(deleted) }, "SpaceReclaimed": pruned.reclaimed})))
}

/// `POST /auth`: checks credentials against a registry (the CLI stores them on success).
pub async fn auth(State(engine): State<Shared>, Json(body): Json<Value>) -> ApiResult<Response> {
    let server = body["serveraddress"].as_str().unwrap_or("docker.io");
    let domain = server.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/').trim_end_matches("/v1");
    let domain = if domain.is_empty() || domain == "index.docker.io" { "docker.io" } else { domain };
    let creds = registry::Credentials {
        username: body["username"].as_str().unwrap_or_default().to_string(),
        password: body["password"].as_str().unwrap_or_default().to_string(),
    };
    engine.check_login(domain, &creds).await?;
    Ok(Json(json!({"Status": "Login Succeeded", "IdentityToken": ""})).into_response())
}

/// Credentials from the `X-Registry-Auth` header: base64url of `{"username","password",…}`.
pub(crate) fn registry_auth(headers: &axum::http::HeaderMap) -> Option<registry::Credentials> {
    use base64::Engine as _;
    let raw = headers.get("x-registry-auth")?.to_str().ok()?.trim();
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw))
        .ok()?;
    let v: Value = serde_json::from_slice(&decoded).ok()?;
    let username = v["username"].as_str().unwrap_or_default();
    let password = v["password"].as_str().or_else(|| v["identitytoken"].as_str()).unwrap_or_default();
    (!username.is_empty() || !password.is_empty()).then(|| registry::Credentials { username: username.into(), password: password.into() })
}

/// One progress message as Docker's JSON stream writes it.
pub(crate) fn progress_json(p: &engine::Progress) -> Value {
    let mut v = json!({"status": p.status});
    if let Some(id) = &p.id {
        v["id"] = json!(id);
        v["progressDetail"] = match (p.current, p.total) {
            (Some(c), Some(t)) => json!({"current": c, "total": t}),
            (Some(c), None) => json!({"current": c}),
            _ => json!({}),
        };
        if let (Some(c), Some(t)) = (p.current, p.total) {
            v["progress"] = json!(render::progress_bar(c, t));
        }
    }
    v
}

/// Runs a pull and streams its progress. An error before the first message is an HTTP error
/// (the CLI prints `Error response from daemon: …`); later ones end the stream as Docker's
/// `{"errorDetail":…}` line.
async fn pull(engine: Shared, request: engine::PullRequest) -> ApiResult<Response> {
    let (tx, rx) = tokio::sync::mpsc::channel::<engine::Progress>(64);
    let task = tokio::spawn(async move { engine.pull_image(request, tx).await });
    progress_response(rx, task).await
}

/// Streams a long operation's progress (pull, push) as Docker's JSON lines.
async fn progress_response<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<engine::Progress>,
    task: tokio::task::JoinHandle<engine::Result<T>>,
) -> ApiResult<Response> {
    let first = rx.recv().await;
    let Some(first) = first else {
        // The pull ended without a word: it failed early, or (impossible) succeeded silently.
        return match task.await {
            Ok(Ok(_)) => Ok(json_lines(Vec::new())),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        };
    };
    let stream = async_stream_lines(first, rx, task);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default())
}

fn async_stream_lines<T: Send + 'static>(
    first: engine::Progress,
    rx: tokio::sync::mpsc::Receiver<engine::Progress>,
    task: tokio::task::JoinHandle<engine::Result<T>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let line = |v: Value| Ok::<Bytes, std::io::Error>(Bytes::from(format!("{v}\r\n")));
    let head = futures_util::stream::iter([line(progress_json(&first))]);
    let body = tokio_stream_from(rx).map(move |p| line(progress_json(&p)));
    let tail = futures_util::stream::once(async move {
        let err = match task.await {
            Ok(Ok(_)) => return None,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        Some(line(json!({"errorDetail": {"message": err}, "error": err})))
    })
    .filter_map(|x| async move { x });
    head.chain(body).chain(tail)
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Splits `name/with:tag/json` into ("name/with:tag", "json").
fn split(rest: &str) -> (&str, &str) {
    for suffix in ["json", "tag", "history", "push", "get"] {
        if let Some(name) = rest.strip_suffix(suffix).and_then(|r| r.strip_suffix('/')) {
            return (name, suffix);
        }
    }
    (rest, "")
}

pub async fn get(State(engine): State<Shared>, Path(rest): Path<String>) -> ApiResult<Response> {
    match split(&rest) {
        (name, "json") => {
            let img = engine.image(name)?;
            Ok(Json(render::image_inspect(&img)).into_response())
        }
        (name, "get") => save(engine, vec![name.to_string()]).await,
        (name, "history") => Ok(Json(engine.image_history(name)?).into_response()),
        _ => Err(ApiError::not_found("page not found")),
    }
}

pub async fn post(State(engine): State<Shared>, Path(rest): Path<String>, q: Params, headers: axum::http::HeaderMap, _body: Bytes) -> ApiResult<Response> {
    match split(&rest) {
        (name, "push") => {
            let (tx, rx) = tokio::sync::mpsc::channel::<engine::Progress>(64);
            let (name, tag, creds) = (name.to_string(), q.get("tag").cloned().unwrap_or_default(), registry_auth(&headers));
            let task = tokio::spawn(async move { engine.push_image(&name, &tag, creds, tx).await });
            progress_response(rx, task).await
        }
        (name, "tag") => {
            let repo = q.get("repo").cloned().unwrap_or_default();
            if repo.is_empty() {
                return Err(ApiError::bad_request("repository name must have at least one component"));
            }
            engine.tag_image(name, &repo, q.get("tag").map(String::as_str).unwrap_or("")).await?;
            Ok(StatusCode::CREATED.into_response())
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

pub async fn remove(State(engine): State<Shared>, Path(rest): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    let removed = engine.remove_image(&rest, flag(&q, "force")).await?;
    let out: Vec<Value> = removed
        .iter()
        .map(|r| match r {
            image::Removed::Untagged(n) => json!({"Untagged": n}),
            image::Removed::Deleted(d) => json!({"Deleted": d.to_string()}),
        })
        .collect();
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths_split_on_their_suffix() {
        assert_eq!(split("reg:5000/team/app:1/json"), ("reg:5000/team/app:1", "json"));
        assert_eq!(split("bb:1/tag"), ("bb:1", "tag"));
        assert_eq!(split("bb:1"), ("bb:1", ""));
    }
}
