//! What a fresh cluster has and what keeps it tidy: the system namespaces, each namespace's
//! `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, the `kubernetes` Service, the
//! default ClusterRoles; emptying and finalizing deleted namespaces; garbage collection of
//! objects whose owners are gone (Background), Foreground and Orphan deletion.
//!
//! Upstream runs these in kube-controller-manager. They run here, in the server process and on
//! the server's own API object, until berth's controllers crate exists; they keep to the same
//! rules (every change is an ordinary write through `rest::Api`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::kinds::{self, Kind};
use crate::rest::{Api, Target, SYSTEM_NAMESPACES};
use crate::status::ApiResult;

fn kind(api_version: &str, k: &str) -> &'static Kind {
    kinds::by_kind(api_version, k).unwrap_or(&kinds::KINDS[0])
}

fn target(k: &'static Kind, ns: Option<&str>, name: Option<&str>) -> Target {
    Target { kind: k, namespace: ns.map(String::from), name: name.map(String::from), sub: None, watch_prefix: false }
}

/// Creates `obj` unless it exists.
async fn ensure(api: &Api, k: &'static Kind, ns: Option<&str>, mut obj: Value) -> ApiResult<()> {
    match api.create_object(&target(k, ns, None), &mut obj, false).await {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The objects every cluster starts with.
pub async fn bootstrap(api: &Api) -> ApiResult<()> {
    let ns = kind("v1", "Namespace");
    for name in SYSTEM_NAMESPACES {
        ensure(api, ns, None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).await?;
    }
    let cr = kind("rbac.authorization.k8s.io/v1", "ClusterRole");
    let all = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
    let read = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]);
    let edit = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]}]);
    for (name, rules) in [("cluster-admin", all.clone()), ("admin", edit.clone()), ("edit", edit), ("view", read)] {
        ensure(api, cr, None, json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})).await?;
    }
    let crb = kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding");
    ensure(
        api,
        crb,
        None,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "cluster-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}],
        }),
    )
    .await?;
    let svc = kind("v1", "Service");
    ensure(
        api,
        svc,
        Some("default"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"], "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        }),
    )
    .await
}

/// Runs the tidy-up passes whenever the cluster changes (at most every 200 ms).
pub fn spawn(api: Arc<Api>, ca_pem: String) {
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            let rev = api.cache.revision();
            if rev != last {
                last = rev;
                if let Err(e) = pass(&api, &ca_pem).await {
                    tracing::warn!(error = %e.message, "housekeeping pass failed");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

async fn pass(api: &Api, ca_pem: &str) -> ApiResult<()> {
    let ns_kind = kind("v1", "Namespace");
    let (namespaces, _) = api.cache.list(&ns_kind.prefix());
    for ns in namespaces {
        let name = ns.value["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if ns.value["metadata"]["deletionTimestamp"].is_null() {
            per_namespace(api, &name, ca_pem).await?;
        } else {
            finalize_namespace(api, &name).await?;
        }
    }
    collect_garbage(api).await
}

/// Each live namespace has its `default` ServiceAccount and the cluster CA for projected tokens.
async fn per_namespace(api: &Api, ns: &str, ca_pem: &str) -> ApiResult<()> {
    let sa = kind("v1", "ServiceAccount");
    if api.cache.get(&sa.key(Some(ns), "default")).is_none() {
        ensure(api, sa, Some(ns), json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}})).await?;
    }
    let cm = kind("v1", "ConfigMap");
    if api.cache.get(&cm.key(Some(ns), "kube-root-ca.crt")).is_none() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": ns, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
            "data": {"ca.crt": ca_pem},
        });
        ensure(api, cm, Some(ns), obj).await?;
    }
    Ok(())
}

/// A deleted namespace: everything in it is deleted; once empty, its finalizer goes and so does it.
async fn finalize_namespace(api: &Api, ns: &str) -> ApiResult<()> {
    let mut remaining = 0;
    for k in kinds::KINDS.iter().filter(|k| k.namespaced) {
        let (objs, _) = api.cache.list(&k.namespace_prefix(Some(ns)));
        for o in objs {
            remaining += 1;
            if !o.value["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let mut v = o.value.clone();
            v["metadata"]["resourceVersion"] = json!(o.mod_revision.to_string());
            let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
            // Pods of a terminating namespace go at once when no node runs them.
            if let Err(e) = api.delete_object(&target(k, Some(ns), Some(&name)), v, "Background", None, false).await {
                if e.code != 404 && e.code != 409 {
                    return Err(e);
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(());
    }
    let ns_kind = kind("v1", "Namespace");
    let Some(cur) = api.cache.get(&ns_kind.key(None, ns)) else { return Ok(()) };
    let rv = cur.mod_revision;
    match api.store.delete(&ns_kind.key(None, ns), Some(rv)).await {
        Ok(_) | Err(store::StoreError::NotFound { .. }) | Err(store::StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Background: dependents whose owners are all gone are deleted. Foreground: an owner waits
/// (with `foregroundDeletion`) until its blocking dependents are gone. Orphan: dependents lose
/// the owner reference, then the owner goes.
async fn collect_garbage(api: &Api) -> ApiResult<()> {
    // Only objects with owners or a deletionTimestamp matter (the cache keeps them indexed).
    let candidates = api.cache.gc_candidates();
    if candidates.is_empty() {
        return Ok(());
    }
    let owned: Vec<&Arc<crate::cache::Obj>> = candidates.iter().filter(|o| o.value["metadata"]["ownerReferences"].as_array().is_some_and(|r| !r.is_empty())).collect();
    let owned_by = |uid: &str| -> Vec<&Arc<crate::cache::Obj>> {
        owned.iter().copied().filter(|o| o.value["metadata"]["ownerReferences"].as_array().into_iter().flatten().any(|r| r["uid"].as_str() == Some(uid))).collect()
    };
    let finalizers = |v: &Value| -> Vec<String> { v["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(String::from)).collect() };
    for owner in candidates.iter().filter(|o| !o.value["metadata"]["deletionTimestamp"].is_null()) {
        let uid = owner.value["metadata"]["uid"].as_str().unwrap_or_default();
        let fins = finalizers(&owner.value);
        if fins.iter().any(|f| f == "orphan") {
            for d in owned_by(uid) {
                let mut v = d.value.clone();
                if let Some(refs) = v["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(uid));
                }
                rewrite(api, d, v).await?;
            }
            drop_finalizer(api, owner, "orphan").await?;
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            let dependents = owned_by(uid);
            for d in &dependents {
                if d.value["metadata"]["deletionTimestamp"].is_null() {
                    if let Some(dk) = kind_of_key(&d.key) {
                        let dname = d.value["metadata"]["name"].as_str().unwrap_or_default();
                        let mut v = d.value.clone();
                        v["metadata"]["resourceVersion"] = json!(d.mod_revision.to_string());
                        let _ = api.delete_object(&target(dk, d.value["metadata"]["namespace"].as_str(), Some(dname)), v, "Foreground", None, false).await;
                    }
                }
            }
            let blocking = dependents.iter().any(|d| {
                d.value["metadata"]["ownerReferences"].as_array().into_iter().flatten().any(|r| r["uid"].as_str() == Some(uid) && r["blockOwnerDeletion"].as_bool() == Some(true))
            });
            if !blocking {
                drop_finalizer(api, owner, "foregroundDeletion").await?;
            }
        }
    }
    for o in owned.iter().filter(|o| o.value["metadata"]["deletionTimestamp"].is_null()) {
        let refs = o.value["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        let ns = o.value["metadata"]["namespace"].as_str();
        if refs.iter().all(|r| !owner_exists(api, r, ns)) {
            if let Some(k) = kind_of_key(&o.key) {
                let name = o.value["metadata"]["name"].as_str().unwrap_or_default();
                let mut v = o.value.clone();
                v["metadata"]["resourceVersion"] = json!(o.mod_revision.to_string());
                if let Err(e) = api.delete_object(&target(k, ns, Some(name)), v, "Background", None, false).await {
                    if e.code != 404 && e.code != 409 {
                        return Err(e);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether the object an owner reference names exists with that uid (owners are in the
/// dependent's namespace, or cluster-scoped). An owner of a kind berth does not serve counts as
/// existing: nothing is deleted on a guess.
fn owner_exists(api: &Api, r: &Value, namespace: Option<&str>) -> bool {
    let (Some(av), Some(kind), Some(name), Some(uid)) = (r["apiVersion"].as_str(), r["kind"].as_str(), r["name"].as_str(), r["uid"].as_str()) else {
        return true;
    };
    let Some(k) = kinds::by_kind(av, kind) else { return true };
    let ns = if k.namespaced { namespace } else { None };
    api.cache.get(&k.key(ns, name)).is_some_and(|o| o.value["metadata"]["uid"].as_str() == Some(uid))
}

fn kind_of_key(key: &str) -> Option<&'static Kind> {
    let mut parts = key.trim_start_matches("/registry/").split('/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let group = if group == "core" { "" } else { group };
    kinds::KINDS.iter().find(|k| k.group == group && k.plural == plural)
}

async fn rewrite(api: &Api, o: &crate::cache::Obj, v: Value) -> ApiResult<()> {
    let bytes = serde_json::to_vec(&v).map_err(|e| crate::status::ApiError::internal(e.to_string()))?;
    match api.store.update(&o.key, bytes, o.mod_revision).await {
        Ok(_) | Err(store::StoreError::Conflict { .. }) | Err(store::StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes `finalizer` from a deleting owner; the last one going deletes it.
async fn drop_finalizer(api: &Api, owner: &crate::cache::Obj, finalizer: &str) -> ApiResult<()> {
    let mut v = owner.value.clone();
    if let Some(f) = v["metadata"]["finalizers"].as_array_mut() {
        f.retain(|x| x.as_str() != Some(finalizer));
    }
    if v["metadata"]["finalizers"].as_array().is_some_and(|f| f.is_empty()) {
        // The last finalizer: the object goes.
        return match api.store.delete(&owner.key, Some(owner.mod_revision)).await {
            Ok(_) | Err(store::StoreError::Conflict { .. }) | Err(store::StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    rewrite(api, owner, v).await
}
