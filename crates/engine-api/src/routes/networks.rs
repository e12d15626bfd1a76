//! `/networks`: create, list, inspect, remove, prune, connect and disconnect (driver `bridge`).
use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{filters, Params, Shared};
use crate::error::{ApiError, ApiResult};

fn render(engine: &Shared, r: &engine::network::NetworkRecord) -> Value {
    let containers: serde_json::Map<String, Value> = engine
        .network_members(&r.id)
        .into_iter()
        .map(|(c, ep)| {
            let a = &ep.attachment;
            (c.id.clone(), json!({"Name": c.name, "EndpointID": c.id, "MacAddress": a.mac, "IPv4Address": format!("{}/{}", a.ip, a.prefix), "IPv6Address": ""}))
        })
        .collect();
    let config: Vec<Value> = match (&r.subnet, &r.gateway) {
        (Some(s), Some(g)) => vec![json!({"Subnet": s, "Gateway": g})],
        _ => Vec::new(),
    };
    json!({
        "Name": r.name,
        "Id": r.id,
        "Created": r.created,
        "Scope": "local",
        "Driver": r.driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": config},
        "Internal": r.internal,
        "Attachable": r.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": r.options,
        "Labels": r.labels,
    })
}

fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

/// Filters: name (substring), id (prefix), driver, label, type (custom|builtin), dangling.
pub async fn list(State(engine): State<Shared>, q: Params) -> ApiResult<impl IntoResponse> {
    let f = filters(&q)?;
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| f.get(key).is_none_or(|vs| vs.is_empty() || vs.iter().any(|v| pred(v)));
    let out: Vec<Value> = engine
        .networks()
        .iter()
        .filter(|r| any("name", &|v| r.name.contains(v)))
        .filter(|r| any("id", &|v| r.id.starts_with(v)))
        .filter(|r| any("driver", &|v| r.driver == v))
        .filter(|r| f.get("label").is_none_or(|vs| vs.iter().all(|v| label_matches(&r.labels, v))))
        .filter(|r| any("type", &|v| (v == "builtin") == r.predefined))
        .filter(|r| any("dangling", &|v| (v == "true" || v == "1") == (!r.predefined && engine.network_members(&r.id).is_empty())))
        .map(|r| render(&engine, r))
        .collect();
    Ok(Json(out))
}

pub async fn create(State(engine): State<Shared>, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    let name = body["Name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(ApiError::bad_request("network name is required (docker network create NAME)"));
    }
    if body["EnableIPv6"].as_bool() == Some(true) {
        return Err(ApiError::bad_request("IPv6 networks are not supported yet"));
    }
    let ipam = body.pointer("/IPAM/Config/0").cloned().unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let req = engine::network::CreateNetwork {
        name,
        driver: body["Driver"].as_str().unwrap_or_default().to_string(),
        subnet: text(&ipam["Subnet"]),
        gateway: text(&ipam["Gateway"]),
        internal: body["Internal"].as_bool().unwrap_or(false),
        attachable: body["Attachable"].as_bool().unwrap_or(false),
        labels: serde_json::from_value(body["Labels"].clone()).unwrap_or_default(),
        options: serde_json::from_value(body["Options"].clone()).unwrap_or_default(),
    };
    let engine2 = engine.clone();
    let r = tokio::task::spawn_blocking(move || engine2.create_network(req)).await.map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(json!({"Id": r.id, "Warning": ""}))))
}

pub async fn inspect(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let r = engine.network(&id)?;
    Ok(Json(render(&engine, &r)))
}

pub async fn remove(State(engine): State<Shared>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let engine2 = engine.clone();
    tokio::task::spawn_blocking(move || engine2.remove_network(&id)).await.map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn prune(State(engine): State<Shared>) -> ApiResult<impl IntoResponse> {
    let engine2 = engine.clone();
    let removed = tokio::task::spawn_blocking(move || engine2.prune_networks()).await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({"NetworksDeleted": removed})))
}

fn container_of(body: &Value) -> ApiResult<String> {
    body["Container"].as_str().filter(|s| !s.is_empty()).map(str::to_string).ok_or_else(|| ApiError::bad_request("Container is required"))
}

pub async fn connect(State(engine): State<Shared>, Path(id): Path<String>, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    let container = container_of(&body)?;
    let settings: engine::network::EndpointSettings = match body.get("EndpointConfig") {
        Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("invalid EndpointConfig: {e}")))?,
        _ => Default::default(),
    };
    engine.connect_network(&id, &container, settings).await?;
    Ok(StatusCode::OK)
}

pub async fn disconnect(State(engine): State<Shared>, Path(id): Path<String>, Json(body): Json<Value>) -> ApiResult<impl IntoResponse> {
    let container = container_of(&body)?;
    engine.disconnect_network(&id, &container).await?;
    Ok(StatusCode::OK)
}
