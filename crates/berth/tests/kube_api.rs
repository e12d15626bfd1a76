//! The Kubernetes API server (`berth server`) driven by the real kubectl 1.32, curl and the
//! official Python client, on SQLite and on etcd: discovery, CRUD, selectors, patches, apply,
//! watch, errors as kubectl prints them, authentication and RBAC, and no acknowledged write lost
//! to `kill -9`.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Kills the child on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private etcd on loopback ports.
struct Etcd {
    _proc: Proc,
    endpoint: String,
    _dir: tempfile::TempDir,
}

fn etcd() -> Option<Etcd> {
    if !Path::new("/usr/bin/etcd").exists() {
        eprintln!("skipping: /usr/bin/etcd is not installed (Debian package etcd-server)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (client, peer) = (free_port(), free_port());
    let endpoint = format!("http://127.0.0.1:{client}");
    let child = Command::new("/usr/bin/etcd")
        .arg("--data-dir")
        .arg(dir.path().join("etcd"))
        .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}"), "--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    Some(Etcd { _proc: Proc(child), endpoint, _dir: dir })
}

struct Server {
    tmp: tempfile::TempDir,
    port: u16,
    datastore: Option<String>,
    proc: Option<Proc>,
}

impl Server {
    fn start(datastore: Option<&str>) -> Server {
        let mut s = Server { tmp: tempfile::Builder::new().prefix("berth-api-").tempdir().expect("tmp"), port: free_port(), datastore: datastore.map(String::from), proc: None };
        s.spawn();
        s
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.root().join("kubeconfig.yaml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.tmp.path().join("server.log")).expect("log");
        let mut cmd = Command::new(BERTH);
        cmd.arg("server").arg("--root").arg(self.root()).args(["--api-port", &self.port.to_string()]);
        if let Some(d) = &self.datastore {
            cmd.args(["--datastore-endpoint", d]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().expect("berth server");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("berth server did not come up:\n{}", self.log());
    }

    fn kill9(&mut self) {
        self.proc.take();
    }

    fn kubectl_in(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.tmp.path().join("kcache"))
            .args(args)
            .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            let _ = stdin.write_all(text.as_bytes());
        }
        child.wait_with_output().expect("kubectl output")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed:\n{}\nserver log:\n{}", String::from_utf8_lossy(&out.stderr), self.log());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, yaml: &str) -> String {
        let out = self.kubectl_in(&["apply", "-f", "-"], Some(yaml));
        assert!(out.status.success(), "kubectl apply failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// curl against the API with the admin token (or none), returning (status, body).
    fn curl(&self, method: &str, path: &str, body: Option<&Path>, content_type: &str, token: bool) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert"]).arg(self.root().join("pki/ca.crt"));
        if token {
            let t = std::fs::read_to_string(self.root().join("pki/token")).expect("token");
            cmd.args(["-H", &format!("Authorization: Bearer {}", t.trim())]);
        }
        if let Some(b) = body {
            cmd.args(["-H", &format!("Content-Type: {content_type}"), "--data-binary"]).arg(format!("@{}", b.display()));
        }
        let out = cmd.arg(format!("https://127.0.0.1:{}{path}", self.port)).output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

fn skip() -> bool {
    if !have("kubectl") {
        eprintln!("skipping: kubectl is not installed");
        return true;
    }
    false
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: shop, labels: {tier: web}}
data: {color: blue}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: db-config, namespace: shop, labels: {tier: db}}
data: {size: small}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cache-config, namespace: shop, labels: {tier: cache}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: bb:1
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
"#;

/// What a kubectl user does first, on whichever datastore the server has.
fn core_flows(s: &Server) {
    let ns = s.ok(&["get", "ns"]);
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(n), "{ns}");
    }
    // Typed create commands (protobuf bodies) and selectors.
    s.ok(&["create", "ns", "a"]);
    s.ok(&["-n", "a", "create", "configmap", "c", "--from-literal=k=v"]);
    assert_eq!(s.ok(&["-n", "a", "get", "cm", "c", "-o", "jsonpath={.data.k}"]), "v");
    // `kubectl apply -f DIR/`, one manifest per file.
    let dir = s.tmp.path().join("manifests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (i, doc) in MANIFESTS.split("\n---\n").enumerate() {
        std::fs::write(dir.join(format!("{i}.yaml")), doc).expect("write manifest");
    }
    let applied = s.ok(&["apply", "-f", &format!("{}/", dir.display())]);
    assert!(applied.contains("deployment.apps/web created") && applied.contains("configmap/db-config created"), "{applied}");
    let names = s.ok(&["get", "cm", "-A", "-l", "tier in (web,db)", "-o", "name"]);
    assert_eq!(names.lines().collect::<Vec<_>>(), vec!["configmap/db-config", "configmap/web-config"]);
    assert_eq!(s.ok(&["-n", "shop", "get", "cm", "-l", "tier!=web,tier", "-o", "name"]).lines().count(), 2);
    assert_eq!(s.ok(&["-n", "shop", "get", "cm", "-l", "!tier", "-o", "name"]).trim(), "configmap/kube-root-ca.crt");
    assert_eq!(s.ok(&["-n", "shop", "get", "cm", "--field-selector", "metadata.name=db-config", "-o", "name"]).trim(), "configmap/db-config");
    // The table has kubectl's columns; the namespace got its ServiceAccount and CA bundle.
    let table = s.ok(&["-n", "shop", "get", "cm"]);
    assert!(table.starts_with("NAME") && table.contains("DATA") && table.contains("AGE"), "{table}");
    s.ok(&["-n", "shop", "get", "sa", "default"]);
    assert!(s.ok(&["-n", "shop", "get", "cm", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}"]).contains("BEGIN CERTIFICATE"));
    // label, annotate, the three patch types, replace.
    s.ok(&["-n", "shop", "label", "cm", "web-config", "owner=team-a"]);
    s.ok(&["-n", "shop", "annotate", "cm", "web-config", "note=hello"]);
    s.ok(&["-n", "shop", "patch", "cm", "web-config", "-p", r#"{"data":{"size":"large"}}"#]);
    s.ok(&["-n", "shop", "patch", "cm", "web-config", "--type=merge", "-p", r#"{"data":{"color":"green"}}"#]);
    s.ok(&["-n", "shop", "patch", "cm", "web-config", "--type=json", "-p", r#"[{"op":"remove","path":"/data/size"}]"#]);
    assert_eq!(s.ok(&["-n", "shop", "get", "cm", "web-config", "-o", "jsonpath={.data}"]), r#"{"color":"green"}"#);
    let labels = s.ok(&["-n", "shop", "get", "cm", "web-config", "-o", "jsonpath={.metadata.labels.owner} {.metadata.annotations.note}"]);
    assert_eq!(labels, "team-a hello");
    let yaml = s.ok(&["-n", "shop", "get", "cm", "db-config", "-o", "yaml"]).replace("size: small", "size: huge");
    let out = s.kubectl_in(&["replace", "-f", "-"], Some(&yaml));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.ok(&["-n", "shop", "get", "cm", "db-config", "-o", "jsonpath={.data.size}"]), "huge");
    let edited = Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBE_EDITOR", "sed -i s/size:\\ huge/size:\\ edited/")
        .args(["-n", "shop", "edit", "cm", "db-config"])
        .output()
        .expect("kubectl edit");
    assert!(edited.status.success(), "{}", String::from_utf8_lossy(&edited.stderr));
    assert_eq!(s.ok(&["-n", "shop", "get", "cm", "db-config", "-o", "jsonpath={.data.size}"]), "edited");
    // Re-apply with an env var removed: the three-way strategic merge drops it, generation moves.
    let gen1 = s.ok(&["-n", "shop", "get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]);
    s.apply(&MANIFESTS.replace(r#", {name: B, value: "2"}"#, ""));
    let env = s.ok(&["-n", "shop", "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"]);
    assert_eq!(env, "A");
    let gen2 = s.ok(&["-n", "shop", "get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"]);
    assert_ne!(gen1, gen2, "a spec change bumps metadata.generation");
    s.ok(&["-n", "shop", "scale", "deploy", "web", "--replicas=3"]);
    assert_eq!(s.ok(&["-n", "shop", "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    assert!(s.ok(&["api-resources"]).contains("deployments"));
    assert!(s.ok(&["explain", "configmap.data"]).contains("Data contains the configuration data"), "explain reads the OpenAPI v3 schemas");
    // Errors as kubectl prints them.
    assert!(s.fails(&["-n", "shop", "get", "cm", "nosuch"]).contains(r#"Error from server (NotFound): configmaps "nosuch" not found"#));
    assert!(s.fails(&["-n", "shop", "get", "deploy", "nosuch"]).contains(r#"deployments.apps "nosuch" not found"#));
    assert!(s.fails(&["create", "ns", "a"]).contains(r#"Error from server (AlreadyExists): namespaces "a" already exists"#));
    let invalid = s.fails(&["-n", "shop", "create", "configmap", "Bad_Name"]);
    assert!(invalid.contains(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name""#), "{invalid}");
    let out = s.kubectl_in(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo, namespace: shop}\ndatum: {a: b}\n"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(r#"unknown field "datum""#), "{err}");
    assert!(s.fails(&["delete", "ns", "default"]).contains("forbidden"));
    let out = s.kubectl_in(&["apply", "-f", "-"], Some("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: nosel, namespace: shop}\nspec:\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c}]}\n"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"The Deployment "nosel" is invalid"#) && err.contains("spec.selector: Required value") && err.contains("spec.template.spec.containers[0].image: Required value"), "{err}");
    // Deleting a namespace removes what is in it, and kubectl waits for it.
    s.ok(&["delete", "ns", "shop"]);
    assert!(s.fails(&["get", "ns", "shop"]).contains("NotFound"));
    s.ok(&["create", "ns", "shop"]);
    assert!(s.fails(&["-n", "shop", "get", "cm", "web-config"]).contains("NotFound"), "a recreated namespace starts empty");
}

#[test]
fn kubectl_works_against_the_server_on_sqlite() {
    if skip() {
        return;
    }
    let s = Server::start(None);
    core_flows(&s);
}

#[test]
fn kubectl_works_against_the_server_on_etcd() {
    if skip() {
        return;
    }
    let Some(etcd) = etcd() else { return };
    let s = Server::start(Some(&etcd.endpoint));
    core_flows(&s);
}

#[test]
fn kubectl_get_watch_streams_changes() {
    if skip() {
        return;
    }
    let s = Server::start(None);
    s.ok(&["create", "ns", "w"]);
    s.ok(&["-n", "w", "create", "configmap", "first"]);
    let mut watcher = Command::new("kubectl")
        .env("KUBECONFIG", s.kubeconfig())
        .args(["-n", "w", "get", "cm", "-w", "--output-watch-events", "-o", "custom-columns=EVENT:.type,NAME:.object.metadata.name,V:.object.data.v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl -w");
    let stdout = watcher.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let _guard = Proc(watcher);
    let wait_for = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                if line.split_whitespace().collect::<Vec<_>>().join(" ") == want {
                    return;
                }
                seen.push(line);
            }
        }
        panic!("no watch line {want:?}; saw {seen:?}");
    };
    wait_for("ADDED first <none>");
    s.ok(&["-n", "w", "create", "configmap", "second", "--from-literal=v=1"]);
    wait_for("ADDED second 1");
    s.ok(&["-n", "w", "patch", "cm", "second", "-p", r#"{"data":{"v":"2"}}"#]);
    wait_for("MODIFIED second 2");
    s.ok(&["-n", "w", "delete", "cm", "second"]);
    wait_for("DELETED second 2");
}

#[test]
fn unauthenticated_requests_get_401_and_rbac_is_enforced() {
    if skip() || !have("curl") {
        return;
    }
    let s = Server::start(None);
    let (code, body) = s.curl("GET", "/api/v1/namespaces", None, "", false);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains(r#""reason":"Unauthorized""#), "{body}");
    assert_eq!(s.curl("GET", "/readyz", None, "", false).0, 200, "health is public");
    assert_eq!(s.curl("GET", "/api/v1/namespaces", None, "", true).0, 200, "the admin token works");
    // Jane has a certificate from the cluster CA but no role yet.
    let pki = pki::Pki::load_or_create(&s.root().join("pki"), &[]).expect("pki");
    let (cert, key) = pki.issue_client_cert("jane", &["devs"]).expect("a client cert");
    let dir = s.tmp.path();
    std::fs::write(dir.join("jane.crt"), cert).expect("write");
    std::fs::write(dir.join("jane.key"), key).expect("write");
    let jane_cfg = dir.join("jane.kubeconfig");
    let server = format!("https://127.0.0.1:{}", s.port);
    let kc = |args: &[&str]| Command::new("kubectl").env("KUBECONFIG", &jane_cfg).args(args).output().expect("kubectl");
    for args in [
        vec!["config", "set-cluster", "berth", "--server", &server, "--certificate-authority"],
        vec!["config", "set-credentials", "jane", "--client-certificate"],
        vec!["config", "set-context", "jane", "--cluster", "berth", "--user", "jane"],
        vec!["config", "use-context", "jane"],
    ] {
        let mut a: Vec<String> = args.iter().map(|x| x.to_string()).collect();
        if a[1] == "set-cluster" {
            a.push(s.root().join("pki/ca.crt").display().to_string());
        }
        if a[1] == "set-credentials" {
            a.push(dir.join("jane.crt").display().to_string());
            a.push("--client-key".into());
            a.push(dir.join("jane.key").display().to_string());
        }
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        assert!(kc(&refs).status.success());
    }
    s.ok(&["create", "ns", "team"]);
    let denied = kc(&["-n", "team", "get", "configmaps"]);
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains(r#"Error from server (Forbidden): configmaps is forbidden: User "jane" cannot list resource "configmaps" in API group "" in the namespace "team""#), "{err}");
    let can_i = |extra: &[&str]| {
        let mut args = vec!["auth", "can-i", "list", "configmaps", "-n", "team"];
        args.extend_from_slice(extra);
        String::from_utf8_lossy(&s.kubectl(&args).stdout).trim().to_string()
    };
    assert_eq!(can_i(&["--as", "jane", "--as-group", "devs"]), "no");
    s.ok(&["-n", "team", "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps"]);
    s.ok(&["-n", "team", "create", "rolebinding", "devs-read", "--role=cm-reader", "--group=devs"]);
    assert_eq!(can_i(&["--as", "jane", "--as-group", "devs"]), "yes", "SelfSubjectAccessReview through impersonation");
    assert_eq!(can_i(&[]), "yes");
    assert!(s.ok(&["auth", "whoami"]).contains("admin"));
    let allowed = kc(&["-n", "team", "get", "configmaps", "-o", "name"]);
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("kube-root-ca.crt"));
    assert!(!kc(&["-n", "team", "delete", "configmap", "kube-root-ca.crt"]).status.success(), "get and list only");
    assert!(!kc(&["-n", "default", "get", "configmaps"]).status.success(), "only in its namespace");

    // Service account tokens: issued by the TokenRequest API, bound by RBAC, dead with their account.
    s.ok(&["-n", "team", "create", "serviceaccount", "robot"]);
    let token = s.ok(&["-n", "team", "create", "token", "robot"]).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let as_robot = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(s.root().join("pki/ca.crt"))
            .args(["-H", &format!("Authorization: Bearer {token}"), &format!("https://127.0.0.1:{}{path}", s.port)])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
        (code.trim().parse::<u16>().unwrap_or(0), body.to_string())
    };
    let (code, body) = as_robot("/api/v1/namespaces/team/configmaps");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"system:serviceaccount:team:robot\" cannot list resource \"configmaps\""#), "{body}");
    s.ok(&["-n", "team", "create", "rolebinding", "robot-read", "--role=cm-reader", "--serviceaccount=team:robot"]);
    assert_eq!(as_robot("/api/v1/namespaces/team/configmaps").0, 200);
    s.ok(&["-n", "team", "delete", "serviceaccount", "robot"]);
    assert_eq!(as_robot("/api/v1/namespaces/team/configmaps").0, 401, "a deleted account's token is dead");
}

#[test]
fn bad_bodies_get_status_errors_not_panics() {
    if skip() || !have("curl") {
        return;
    }
    let s = Server::start(None);
    let dir = s.tmp.path();
    let path = "/api/v1/namespaces/default/configmaps";
    let write = |name: &str, data: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, data).expect("write");
        p
    };
    let big = write("big.json", format!(r#"{{"metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#, "a".repeat(4 << 20)).as_bytes());
    assert_eq!(s.curl("POST", path, Some(&big), "application/json", true).0, 413);
    let (code, body) = s.curl("POST", path, Some(&write("bad.json", b"{not json")), "application/json", true);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#""kind":"Status""#));
    let (code, body) = s.curl("POST", path, Some(&write("types.json", br#"{"metadata":{"name":"t"},"data":{"k":1}}"#)), "application/json", true);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("cannot be handled as a ConfigMap"), "{body}");
    let (code, body) = s.curl("POST", &format!("{path}?fieldValidation=Strict"), Some(&write("unknown.json", br#"{"metadata":{"name":"u"},"bogus":1}"#)), "application/json", true);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#"strict decoding error: unknown field \"bogus\""#), "{body}");
    let (code, _) = s.curl("POST", path, Some(&write("pb.bin", b"k8s\0\x0a\xff\xff")), "application/vnd.kubernetes.protobuf", true);
    assert_eq!(code, 400);
    let (code, body) = s.curl("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b", None, "", true);
    assert_eq!(code, 400, "{body}");
    assert_eq!(s.curl("GET", "/api/v1/nosuch", None, "", true).0, 404);
    assert!(s.ok(&["get", "ns", "default"]).contains("default"), "still serving");
}

#[test]
fn no_acknowledged_write_is_lost_to_kill_9() {
    if skip() || !have("curl") {
        return;
    }
    let mut s = Server::start(None);
    let token = std::fs::read_to_string(s.root().join("pki/token")).expect("token").trim().to_string();
    let ca = s.root().join("pki/ca.crt");
    let url = format!("https://127.0.0.1:{}/api/v1/namespaces/default/configmaps", s.port);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let acks = acknowledged.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..10_000 {
            let name = format!("w{i}");
            let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"i":"{i}"}}}}"#);
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "2", "--cacert"])
                .arg(&ca)
                .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json", "-d", &body, &url])
                .output();
            let Ok(out) = out else { return };
            let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
                Ok(v) => v,
                Err(_) => return,
            };
            match v["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()) {
                Some(rv) => acks.lock().unwrap_or_else(|p| p.into_inner()).push((name, rv)),
                None => return,
            }
        }
    });
    // Let writes flow, then kill the server in the middle of them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap_or_else(|p| p.into_inner()).len() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    let _ = writer.join();
    let acked = acknowledged.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(acked.len() >= 40, "writes were acknowledged before the kill: {}", acked.len());
    s.spawn();
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["-n", "default", "get", "cm", "-o", "json"])).expect("json");
    let stored: std::collections::HashMap<String, u64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| Some((i["metadata"]["name"].as_str()?.to_string(), i["metadata"]["resourceVersion"].as_str()?.parse().ok()?)))
        .collect();
    for (name, rv) in &acked {
        assert_eq!(stored.get(name), Some(rv), "acknowledged write {name} at {rv} survived the kill");
    }
}

fn python() -> Option<String> {
    match std::env::var("BERTH_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            eprintln!("skipping: BERTH_TEST_PYTHON is not set (scripts/test makes a virtualenv with the kubernetes client)");
            None
        }
    }
}

#[test]
fn the_python_client_works_on_sqlite() {
    let Some(python) = python() else { return };
    if skip() {
        return;
    }
    python_flow(&python, &Server::start(None));
}

#[test]
fn the_python_client_works_on_etcd() {
    let Some(python) = python() else { return };
    if skip() {
        return;
    }
    let Some(etcd) = etcd() else { return };
    python_flow(&python, &Server::start(Some(&etcd.endpoint)));
}

fn python_flow(python: &str, s: &Server) {
    let script = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
assert "default" in [n.metadata.name for n in v1.list_namespace().items]
v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c", labels={"tier": "web"}), data={"k": "v"})
created = v1.create_namespaced_config_map("py", cm)
assert created.metadata.uid and int(created.metadata.resource_version) > 0
assert [c.metadata.name for c in v1.list_namespaced_config_map("py", label_selector="tier=web").items] == ["c"]
v1.patch_namespaced_config_map("c", "py", {"data": {"k2": "v2"}})
got = v1.read_namespaced_config_map("c", "py")
assert got.data == {"k": "v", "k2": "v2"}, got.data
try:
    v1.read_namespaced_config_map("nosuch", "py")
    raise SystemExit("expected 404")
except client.exceptions.ApiException as e:
    assert e.status == 404 and "not found" in e.body
events = []
for ev in watch.Watch().stream(v1.list_namespaced_config_map, "py", timeout_seconds=2):
    events.append((ev["type"], ev["object"].metadata.name))
assert ("ADDED", "c") in events, events
apps = client.AppsV1Api()
dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
       "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "bb:1"}]}}}}
apps.create_namespaced_deployment("py", dep)
apps.patch_namespaced_deployment("web", "py", {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "bb:2"}]}}}})
assert apps.read_namespaced_deployment("web", "py").spec.template.spec.containers[0].image == "bb:2"
v1.delete_namespace("py")
print("ok")
"#;
    let out = Command::new(python).arg("-c").arg(script).arg(s.kubeconfig()).output().expect("python");
    assert!(out.status.success(), "python client failed:\n{}\n{}\nserver log:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr), s.log());
}
