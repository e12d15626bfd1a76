//! The API server in-process, over SQLite, with TLS and the admin client certificate, driven by
//! kube-rs as a client: typed CRUD, selectors, the patch types including server-side apply,
//! optimistic concurrency, watch from a resourceVersion, status and scale subresources, errors.
use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

struct Running {
    client: kube::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = pki::Pki::load_or_create(&dir.path().join("pki"), &[]).expect("pki");
    let store: Arc<dyn store::Store> = Arc::new(store::SqliteStore::open(dir.path()).expect("sqlite"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let cfg = apiserver::Config { store, tls: Some(pki.server_config()), tokens: Default::default(), ca_pem: pki.ca_cert_pem().to_string(), sa_key: vec![7; 32] };
    let running = apiserver::start(cfg, listener).await.expect("start");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    pki::write_kubeconfig(&kubeconfig, &format!("https://{}", running.addr), "berth", &pki).expect("kubeconfig");
    let kc = Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config");
    Running { client: kube::Client::try_from(config).expect("client"), _dir: dir }
}

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    }))
    .expect("configmap")
}

#[tokio::test]
async fn typed_crud_selectors_patches_and_conflicts() {
    let r = start().await;
    let namespaces: Api<Namespace> = Api::all(r.client.clone());
    let names: Vec<String> = namespaces.list(&ListParams::default()).await.expect("list ns").items.into_iter().filter_map(|n| n.metadata.name).collect();
    assert!(names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()), "{names:?}");

    let cms: Api<ConfigMap> = Api::namespaced(r.client.clone(), "default");
    let created = cms.create(&PostParams::default(), &cm("web", &[("tier", "web")], &[("k", "v")])).await.expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    cms.create(&PostParams::default(), &cm("db", &[("tier", "db")], &[])).await.expect("create db");
    let web: Vec<String> = cms.list(&ListParams::default().labels("tier in (web)")).await.expect("list").items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(web, vec!["web"]);
    let by_field = cms.list(&ListParams::default().fields("metadata.name=db")).await.expect("list");
    assert_eq!(by_field.items.len(), 1);

    // Already exists, not found, conflict: kube-rs sees the Status reasons.
    match cms.create(&PostParams::default(), &cm("web", &[], &[])).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    match cms.get("nosuch").await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.message.as_str()), (404, "configmaps \"nosuch\" not found")),
        other => panic!("expected NotFound, got {other:?}"),
    }
    let mut stale = created.clone();
    cms.patch("web", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v2"}}))).await.expect("merge patch");
    stale.data = Some(BTreeMap::from([("k".to_string(), "lost".to_string())]));
    match cms.replace("web", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(e)) => assert_eq!((e.code, e.reason.as_str()), (409, "Conflict")),
        other => panic!("a stale resourceVersion must conflict, got {other:?}"),
    }

    cms.patch("web", &PatchParams::default(), &Patch::Strategic(json!({"data": {"s": "smp"}}))).await.expect("smp");
    let applied = cms
        .patch("applied", &PatchParams::apply("kube-test").force(), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}})))
        .await
        .expect("server-side apply creates");
    assert_eq!(applied.data.unwrap_or_default().get("a").map(String::as_str), Some("1"));
    let web = cms.get("web").await.expect("get");
    let data = web.data.unwrap_or_default();
    assert_eq!((data["k"].as_str(), data["s"].as_str()), ("v2", "smp"));

    cms.delete("db", &DeleteParams::default()).await.expect("delete");
    assert!(cms.get_opt("db").await.expect("get_opt").is_none());
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let r = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(r.client.clone(), "default");
    let first = cms.create(&PostParams::default(), &cm("one", &[], &[])).await.expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");
    cms.create(&PostParams::default(), &cm("two", &[], &[])).await.expect("create");
    cms.delete("one", &DeleteParams::default()).await.expect("delete");
    // From `rv`: the later create and the delete, in order, then a live change.
    let mut stream = cms.watch(&WatchParams::default().timeout(10), &rv).await.expect("watch").boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        if seen.len() == 2 {
            cms.patch("two", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "y"}}))).await.expect("patch");
        }
        match stream.try_next().await.expect("event") {
            Some(WatchEvent::Added(c)) => seen.push(format!("ADDED {}", c.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Modified(c)) => seen.push(format!("MODIFIED {}", c.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Deleted(c)) => seen.push(format!("DELETED {}", c.metadata.name.unwrap_or_default())),
            Some(WatchEvent::Bookmark(_)) => {}
            Some(WatchEvent::Error(e)) => panic!("watch error {e:?}"),
            None => panic!("the watch ended early: {seen:?}"),
        }
    }
    assert_eq!(seen, vec!["ADDED two", "DELETED one", "MODIFIED two"]);
}

#[tokio::test]
async fn status_and_scale_subresources_change_only_their_part() {
    let r = start().await;
    let deployments: Api<Deployment> = Api::namespaced(r.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "bb:1"}]}}},
        "status": {"replicas": 99},
    }))
    .expect("deployment");
    let created = deployments.create(&PostParams::default(), &d).await.expect("create");
    assert!(created.status.and_then(|s| s.replicas).is_none(), "status is not set through the main resource");
    assert_eq!(created.metadata.generation, Some(1));
    deployments.patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 1, "observedGeneration": 1}}))).await.expect("status");
    let scaled = deployments.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}}))).await.expect("scale");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(4));
    let d = deployments.get("web").await.expect("get");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(4));
    assert_eq!(d.status.as_ref().and_then(|s| s.replicas), Some(1), "the status survives a spec change");
    assert_eq!(d.metadata.generation, Some(2), "a spec change bumps generation; a status change does not");
}

/// Polls `f` for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn deletion_propagates_to_dependents_background_foreground_and_orphan() {
    let r = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(r.client.clone(), "default");
    let owned = |name: &str, owner: &ConfigMap| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid, "blockOwnerDeletion": true,
            }]},
        }))
        .expect("dependent")
    };
    for (policy, owner_name) in [("Background", "bg"), ("Foreground", "fg"), ("Orphan", "orphan")] {
        let owner = cms.create(&PostParams::default(), &cm(owner_name, &[], &[])).await.expect("owner");
        let dep_name = format!("{owner_name}-dep");
        cms.create(&PostParams::default(), &owned(&dep_name, &owner)).await.expect("dependent");
        let dp = match policy {
            "Background" => DeleteParams::background(),
            "Foreground" => DeleteParams::foreground(),
            _ => DeleteParams::orphan(),
        };
        cms.delete(owner_name, &dp).await.expect("delete owner");
        eventually(&format!("{policy}: the owner goes"), || async { cms.get_opt(owner_name).await.ok().flatten().is_none() }).await;
        if policy == "Orphan" {
            let dep = cms.get(&dep_name).await.expect("the orphan stays");
            assert!(dep.metadata.owner_references.unwrap_or_default().is_empty(), "and loses its owner reference");
        } else {
            eventually(&format!("{policy}: the dependent goes"), || async { cms.get_opt(&dep_name).await.ok().flatten().is_none() }).await;
        }
    }
}
