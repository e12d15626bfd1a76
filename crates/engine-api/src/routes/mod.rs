//! Route table. Image names contain '/' and ':', so image routes match greedily and dispatch on suffix.
mod containers;
mod exec;
mod images;
mod networks;
mod system;
mod volumes;

use std::collections::HashMap;
use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;

pub type Shared = Arc<engine::Engine>;
pub type Params = axum::extract::Query<HashMap<String, String>>;

pub fn router(engine: Shared) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}", delete(containers::remove))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/auth", post(images::auth))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes/{name}", get(volumes::inspect).delete(volumes::remove))
        .route("/images/get", get(images::get_many))
        .route("/images/load", post(images::load))
        .route("/images/prune", post(images::prune))
        .route("/images/{*rest}", get(images::get).post(images::post).delete(images::remove))
        .with_state(engine)
}

/// Docker's boolean query values: 1/true/True/yes; absent is false.
pub fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The `filters` query parameter in both spellings clients use: `{"k":{"v":true}}` (Go) and
/// `{"k":["v"]}` (docker-py).
pub fn filters(q: &HashMap<String, String>) -> Result<HashMap<String, Vec<String>>, crate::ApiError> {
    let Some(raw) = q.get("filters").filter(|s| !s.is_empty()) else { return Ok(HashMap::new()) };
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| crate::ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
    let mut out = HashMap::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        let list: Vec<String> = match vals {
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_accept_go_and_python_shapes() {
        let mut q = HashMap::new();
        q.insert("filters".to_string(), r#"{"label":{"a=b":true}}"#.to_string());
        assert_eq!(filters(&q).expect("go")["label"], vec!["a=b"]);
        q.insert("filters".to_string(), r#"{"label":["a=b"]}"#.to_string());
        assert_eq!(filters(&q).expect("py")["label"], vec!["a=b"]);
    }

    #[test]
    fn boolean_query_values() {
        let mut q = HashMap::new();
        q.insert("all".to_string(), "True".to_string());
        assert!(flag(&q, "all"));
        assert!(!flag(&q, "size"));
    }
}
