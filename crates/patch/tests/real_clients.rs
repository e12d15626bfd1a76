//! The patches real clients send: kubectl 1.32's client-side apply and the
//! Python client's dict PATCH, recorded by tests/support/capture_server.py,
//! must be what `three_way_merge` computes and must apply as intended.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use patch::{strategic_merge, three_way_merge, PatchSchema};
use serde_json::{json, Value};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Temporary directory and capture server, removed/killed even on panic.
struct Capture {
    dir: PathBuf,
    server: Child,
    port: u16,
}

impl Capture {
    fn start(python: &str, name: &str, live: &Value) -> Capture {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("berth-patch-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("out")).expect("temp dir");
        std::fs::write(dir.join("live.json"), live.to_string()).expect("write live object");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/capture_server.py");
        let mut server = Command::new(python)
            .arg(script)
            .arg(dir.join("live.json"))
            .arg(dir.join("out"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start capture server");
        let mut line = String::new();
        if let Some(out) = server.stdout.take() {
            BufReader::new(out).read_line(&mut line).expect("read port");
        }
        let port = line.trim().parse().unwrap_or_else(|_| panic!("capture server printed {line:?}"));
        Capture { dir, server, port }
    }

    fn patches(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for i in 0.. {
            let Ok(s) = std::fs::read_to_string(self.dir.join("out").join(format!("patch-{i}.json"))) else {
                break;
            };
            out.push(serde_json::from_str(&s).expect("captured json"));
        }
        out
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn python() -> Option<String> {
    match std::env::var("BERTH_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!("skipping: BERTH_TEST_PYTHON is not set (scripts/test sets it)");
            None
        }
    }
}

fn deployment(env: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]}}}
    })
}

/// Runs `kubectl apply` of `new` against a live object last applied from
/// `old` (and changed by `server_side`), and checks that kubectl's PATCH is
/// exactly berth's three-way patch. Returns the live object and the patch.
fn kubectl_reapply(python: &str, name: &str, old: &Value, new: &Value, server_side: impl Fn(&mut Value)) -> Option<(Value, Value)> {
    let mut last = old.clone();
    last["metadata"]["annotations"] = json!({});
    let mut live = old.clone();
    live["metadata"]["uid"] = json!("u1");
    live["metadata"]["resourceVersion"] = json!("7");
    live["metadata"]["annotations"] = json!({ LAST_APPLIED: format!("{}\n", last) });
    server_side(&mut live);
    let cap = Capture::start(python, name, &live);

    let file = cap.dir.join("new.json");
    std::fs::write(&file, new.to_string()).expect("write manifest");
    let out = Command::new("kubectl")
        .args(["--server", &format!("http://127.0.0.1:{}", cap.port), "--validate=false", "apply", "-f"])
        .arg(&file)
        .env("KUBECONFIG", cap.dir.join("no-kubeconfig"))
        .output()
        .expect("run kubectl (installed in the test image)");
    assert!(out.status.success(), "{name}: kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    let patches = cap.patches();
    if patches.is_empty() {
        return None; // nothing to change: kubectl sends no PATCH
    }
    assert_eq!(patches.len(), 1, "{name}: {patches:?}");
    assert_eq!(patches[0]["contentType"], json!("application/strategic-merge-patch+json"));
    let sent = patches[0]["body"].clone();

    // kubectl's modified object is the file plus the new last-applied annotation.
    let new_last = sent["metadata"]["annotations"][LAST_APPLIED].clone();
    let mut modified = new.clone();
    modified["metadata"]["annotations"] = json!({ LAST_APPLIED: new_last });
    let schema = PatchSchema::for_object(&live).expect("schema");
    let ours = three_way_merge(&last, &modified, &live, &schema).expect("three-way patch");
    assert_eq!(ours, sent, "{name}: berth's three-way patch differs from kubectl's");
    let applied = strategic_merge(&live, &sent, &schema).expect("apply kubectl's patch");
    Some((live, applied))
}

/// `kubectl apply` of a file that dropped env var B and label tier, against a
/// live object that was scaled to 3 by someone else.
#[test]
fn kubectl_apply_patch_matches_three_way_merge() {
    let Some(python) = python() else { return };
    let old = deployment(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]), json!({"app": "web", "tier": "x"}));
    let new = deployment(json!([{"name": "A", "value": "1"}]), json!({"app": "web"}));
    let (_, applied) = kubectl_reapply(&python, "env", &old, &new, |live| live["spec"]["replicas"] = json!(3))
        .expect("kubectl sends a patch");
    assert_eq!(applied["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(applied["spec"]["template"]["spec"]["containers"][0]["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(applied["spec"]["replicas"], json!(3), "kubectl apply keeps fields it never set");
}

/// More re-apply shapes: reordered containers with a new port, a volume whose
/// source changes (retainKeys), a strategy switch (retainKeys map), and a
/// finalizer removed.
#[test]
fn kubectl_apply_other_shapes_match() {
    let Some(python) = python() else { return };
    let base = || deployment(json!([{"name": "A", "value": "1"}]), json!({"app": "web"}));
    let mut old = base();
    old["metadata"]["finalizers"] = json!(["x.io/a", "x.io/b"]);
    old["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
    old["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}]},
        {"name": "b", "image": "busybox"}
    ]);
    old["spec"]["template"]["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
    let mut new = base();
    new["metadata"]["finalizers"] = json!(["x.io/b"]);
    new["spec"]["strategy"] = json!({"type": "Recreate"});
    new["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "b", "image": "busybox"},
        {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}, {"containerPort": 443}]}
    ]);
    new["spec"]["template"]["spec"]["volumes"] = json!([{"name": "v", "hostPath": {"path": "/srv"}}]);
    let (_, applied) = kubectl_reapply(&python, "shapes", &old, &new, |live| {
        live["metadata"]["finalizers"] = json!(["x.io/a", "x.io/b", "server.io/c"]);
    })
    .expect("kubectl sends a patch");
    assert_eq!(applied["metadata"]["finalizers"], json!(["x.io/b", "server.io/c"]));
    assert_eq!(applied["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(applied["spec"]["template"]["spec"]["containers"], new["spec"]["template"]["spec"]["containers"]);
    assert_eq!(applied["spec"]["template"]["spec"]["volumes"], new["spec"]["template"]["spec"]["volumes"]);
}

/// The Python client sends a dict body as a strategic merge patch, unchanged.
#[test]
fn python_client_dict_patch_is_strategic() {
    let Some(python) = python() else { return };
    let mut live = deployment(json!([{"name": "A", "value": "1"}]), json!({"app": "web"}));
    live["metadata"]["uid"] = json!("u1");
    let cap = Capture::start(&python, "py", &live);
    let body = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    let script = format!(
        "import json,sys\nfrom kubernetes import client\nc=client.Configuration()\nc.host='http://127.0.0.1:{}'\n\
         api=client.AppsV1Api(client.ApiClient(c))\napi.patch_namespaced_deployment('web','default',json.loads(sys.argv[1]))\n",
        cap.port
    );
    let out = Command::new(&python).arg("-c").arg(script).arg(body.to_string()).output().expect("run python");
    assert!(out.status.success(), "python client: {}", String::from_utf8_lossy(&out.stderr));
    let patches = cap.patches();
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert_eq!(patches[0]["contentType"], json!("application/strategic-merge-patch+json"));
    assert_eq!(patches[0]["body"], body);
    let schema = PatchSchema::for_object(&live).expect("schema");
    let got = strategic_merge(&live, &body, &schema).expect("apply");
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c", "image": "busybox:2", "env": [{"name": "A", "value": "1"}]}])
    );
}
