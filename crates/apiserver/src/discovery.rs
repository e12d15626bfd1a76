//! Discovery (legacy documents, which kubectl accepts whatever it asks for first), the OpenAPI v3
//! index and per-group-version documents kubectl checks before sending `fieldValidation`, and
//! `/version`.

use serde_json::{json, Value};

use crate::kinds::{Kind, KINDS};

/// Group versions served: the kinds' and the review APIs'.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = crate::kinds::group_versions();
    for (g, v, _, _) in crate::reviews::REVIEWS {
        if !out.contains(&(*g, *v)) {
            out.push((g, v));
        }
    }
    out
}

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-berth", "gitCommit": "", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "n/a", "compiler": "rustc", "platform": format!("linux/{}", std::env::consts::ARCH),
    })
}

pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn group(name: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == name)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": versions, "preferredVersion": preferred})
}

pub fn api_group(name: &str) -> Option<Value> {
    group_versions().iter().any(|(g, _)| *g == name && !g.is_empty()).then(|| group(name))
}

pub fn api_groups() -> Value {
    let mut names: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    let groups: Vec<Value> = names.into_iter().map(|g| {
        let mut v = group(g);
        if let Some(m) = v.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
        v
    }).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource(k: &Kind) -> Value {
    json!({
        "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
        "verbs": VERBS, "shortNames": k.short_names, "categories": k.categories,
    })
}

/// `APIResourceList` of a group version, with `/status` and `/scale` subresources.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = KINDS.iter().filter(|k| k.group == group && k.version == version).collect();
    let mut resources = crate::reviews::resources(group, version);
    if kinds.is_empty() && resources.is_empty() {
        return None;
    }
    for k in kinds {
        resources.push(resource(k));
        if k.status {
            resources.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        }
        if k.kind == "ServiceAccount" {
            resources.push(json!({"name": "serviceaccounts/token", "singularName": "", "namespaced": true, "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}));
        }
        if k.scale {
            resources.push(json!({"name": format!("{}/scale", k.plural), "singularName": "", "namespaced": k.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// The URL path part of a group version's OpenAPI document: `api/v1`, `apis/apps/v1`.
fn openapi_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn doc_hash(group: &str, version: &str) -> String {
    use sha2::Digest;
    let doc = openapi_document(group, version).map(|d| d.to_string()).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(doc.as_bytes())[..8])
}

pub fn openapi_index() -> Value {
    let paths: serde_json::Map<String, Value> = group_versions()
        .into_iter()
        .map(|(g, v)| {
            let p = openapi_path(g, v);
            let url = format!("/openapi/v3/{p}?hash={}", doc_hash(g, v));
            (p, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// The OpenAPI v3 document of one group version: its resource paths with the operations and
/// parameters kubectl looks for (a PATCH that takes `fieldValidation`, tagged with the GVK), and
/// an object schema per kind.
pub fn openapi_document(group: &str, version: &str) -> Option<Value> {
    // Built once per group version: generating the schemas takes milliseconds.
    static DOCS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, Option<Value>>>> = std::sync::OnceLock::new();
    let docs = DOCS.get_or_init(Default::default);
    let key = format!("{group}/{version}");
    if let Some(d) = docs.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return d.clone();
    }
    let d = build_openapi_document(group, version);
    docs.lock().unwrap_or_else(|p| p.into_inner()).insert(key, d.clone());
    d
}

fn build_openapi_document(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&Kind> = KINDS.iter().filter(|k| k.group == group && k.version == version).collect();
    if kinds.is_empty() {
        return None;
    }
    let base = format!("/{}", openapi_path(group, version));
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    for k in kinds {
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        let schema_name = format!("io.k8s.api.{}.{}.{}", if k.group.is_empty() { "core" } else { k.group.split('.').next().unwrap_or(k.group) }, k.version, k.kind);
        let reference = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let body = json!({"content": {"application/json": {"schema": reference}}});
        let op = |action: &str, params: Vec<Value>| {
            json!({
                "operationId": format!("{action}{}", k.kind), "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "parameters": params,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
            })
        };
        let item = if k.namespaced { format!("{base}/namespaces/{{namespace}}/{}/{{name}}", k.plural) } else { format!("{base}/{}/{{name}}", k.plural) };
        let collection = if k.namespaced { format!("{base}/namespaces/{{namespace}}/{}", k.plural) } else { format!("{base}/{}", k.plural) };
        let mut patch = op("patch", vec![query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")]);
        patch["requestBody"] = body.clone();
        let mut put = op("put", vec![query("dryRun"), query("fieldManager"), query("fieldValidation")]);
        put["requestBody"] = body.clone();
        let mut post = op("post", vec![query("dryRun"), query("fieldManager"), query("fieldValidation")]);
        post["requestBody"] = body.clone();
        paths.insert(item, json!({"get": op("get", vec![]), "put": put, "patch": patch, "delete": op("delete", vec![query("dryRun"), query("propagationPolicy")])}));
        paths.insert(collection, json!({"get": op("list", vec![query("labelSelector"), query("fieldSelector"), query("limit"), query("continue"), query("watch")]), "post": post}));
        // The type's schema from k8s-openapi (descriptions included), its definitions beside it.
        let mut root = (k.schema)();
        let definitions = root.as_object_mut().and_then(|m| m.remove("definitions")).and_then(|d| d.as_object().cloned()).unwrap_or_default();
        for (name, def) in definitions {
            schemas.entry(name).or_insert(def);
        }
        if let Some(m) = root.as_object_mut() {
            m.remove("$schema");
            m.remove("title");
            m.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
        schemas.insert(schema_name, root);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-berth"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_resources_with_subresources() {
        let core = resource_list("", "v1").expect("core");
        let names: Vec<&str> = core["resources"].as_array().expect("list").iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods") && names.contains(&"pods/status") && names.contains(&"configmaps"));
        let apps = resource_list("apps", "v1").expect("apps");
        assert!(apps["resources"].as_array().expect("list").iter().any(|r| r["name"] == "deployments/scale" && r["group"] == "autoscaling"));
        assert!(api_groups()["groups"].as_array().expect("groups").iter().any(|g| g["name"] == "apps"));
    }

    #[test]
    fn the_openapi_document_offers_field_validation_on_patch_per_kind() {
        let doc = openapi_document("", "v1").expect("doc");
        let paths = doc["paths"].as_object().expect("paths");
        let patch = paths.values().filter_map(|p| p.get("patch")).find(|op| op["x-kubernetes-group-version-kind"]["kind"] == "ConfigMap").expect("a ConfigMap patch");
        assert!(patch["parameters"].as_array().expect("params").iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        assert!(openapi_index()["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().expect("url").starts_with("/openapi/v3/apis/apps/v1?hash="));
    }
}
