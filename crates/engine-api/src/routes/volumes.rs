//! `/volumes`: create, list, inspect, remove, prune (driver `local`).
use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{filters, flag, Params, Shared};
use crate::error::ApiResult;

fn render(engine: &Shared, v: &engine::volumes::Volume) -> Value {
    let mut out = serde_json::to_value(v).unwrap_or_default();
    out["UsageData"] = json!({"RefCount": engine.volume_users(&v.name).len(), "Size": -1});
    out
}

pub async fn list(State(engine): State<Shared>, q: Params) -> ApiResult<impl IntoResponse> {
    let f = filters(&q)?;
    let dangling = f.get("dangling").and_then(|v| v.first()).map(|v| v == "true" || v == "1");
    let names = f.get("name").cloned().unwrap_or_default();
    let vols: Vec<Value> = engine
        .volumes()
        .iter()
        .filter(|v| dangling.is_none_or(|d| d == engine.volume_users(&v.name).is_empty()))
        .filter(|v| names.is_empty() || names.iter().any(|n| v.name.contains(n.as_str())))
        .map(|v| render(&engine, v))
        .collect();
    Ok(Json(json!({"Volumes": vols, "Warnings": []})))
}

pub async fn create(State(engine): State<Shared>, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    let labels: BTreeMap<String, String> = serde_json::from_value(body["Labels"].clone()).unwrap_or_default();
    let mut options: BTreeMap<String, String> = serde_json::from_value(body["DriverOpts"].clone()).unwrap_or_default();
    if let Some(d) = body["Driver"].as_str().filter(|d| !d.is_empty() && *d != "local") {
        options.insert("driver".into(), d.to_string());
    }
    let v = engine.create_volume(body["Name"].as_str(), labels, options)?;
    Ok((StatusCode::CREATED, Json(render(&engine, &v))))
}

pub async fn inspect(State(engine): State<Shared>, Path(name): Path<String>) -> ApiResult<impl IntoResponse> {
    let v = engine.volume(&name)?;
    Ok(Json(render(&engine, &v)))
}

pub async fn remove(State(engine): State<Shared>, Path(name): Path<String>, q: Params) -> ApiResult<impl IntoResponse> {
    engine.remove_volume(&name, flag(&q, "force"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `filters={"all":["true"]}` prunes named volumes too (Docker 23+ prunes anonymous ones by default).
pub async fn prune(State(engine): State<Shared>, q: Params) -> ApiResult<impl IntoResponse> {
    let f = filters(&q)?;
    let all = f.get("all").and_then(|v| v.first()).is_some_and(|v| v == "true" || v == "1");
    let (removed, bytes) = engine.prune_volumes(all);
    Ok(Json(json!({"VolumesDeleted": removed, "SpaceReclaimed": bytes})))
}
