//! Pull, push, login against Debian's real `docker-registry` on a loopback port, with skopeo and
//! umoci as independent producers and checkers of images; a small fake registry in the test for
//! what a real one never sends (a manifest that lies about its digest, a truncated blob).
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const REGISTRY: &str = "/usr/bin/docker-registry";

fn have(tools: &[&str]) -> bool {
    for t in tools {
        if !Path::new(t).exists() {
            eprintln!("skipping: {t} is not installed (see scripts/test)");
            return false;
        }
    }
    can_run()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A private docker-registry, optionally behind htpasswd Basic auth; killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(user: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((u, p)) = user {
            let htpasswd = dir.path().join("htpasswd");
            let st = Command::new("htpasswd").args(["-Bbc"]).arg(&htpasswd).args([u, p]).stdout(Stdio::null()).stderr(Stdio::null()).status();
            assert!(matches!(st, Ok(s) if s.success()), "htpasswd (apache2-utils) failed");
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", htpasswd.display()));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("config");
        let child = Command::new(REGISTRY).arg("serve").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start docker-registry");
        let r = Registry { child, port, _dir: dir };
        eventually("docker-registry answers", Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run a tool");
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An OCI layout made by umoci: layer 1 has busybox, /etc/gone and /d/{a,b}; layer 2 deletes
/// /etc/gone (a whiteout), replaces /d with a directory holding only c, and adds /x.
fn umoci_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("oci");
    let image = format!("{}:bb", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    let b1 = dir.join("b1");
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&b1));
    let root = b1.join("rootfs");
    for d in ["bin", "etc", "d"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    for a in ["sh", "cat", "ls", "test", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("link");
    }
    std::fs::write(root.join("etc/gone"), "x").expect("file");
    std::fs::write(root.join("d/a"), "a").expect("file");
    std::fs::write(root.join("d/b"), "b").expect("file");
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&b1));
    let b2 = dir.join("b2");
    run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&b2));
    let root = b2.join("rootfs");
    std::fs::remove_file(root.join("etc/gone")).expect("rm");
    std::fs::remove_dir_all(root.join("d")).expect("rm -r");
    std::fs::create_dir(root.join("d")).expect("mkdir");
    std::fs::write(root.join("d/c"), "c").expect("file");
    std::fs::write(root.join("x"), "second\n").expect("file");
    run(Command::new("umoci").args(["repack", "--image", &image]).arg(&b2));
    run(Command::new("umoci").args(["config", "--image", &image, "--config.cmd", "sh"]));
    layout
}

fn skopeo_push(layout: &Path, dest: &str) {
    run(Command::new("skopeo").args(["copy", "--dest-tls-verify=false"]).arg(format!("oci:{}:bb", layout.display())).arg(format!("docker://{dest}")));
}

#[test]
fn an_image_skopeo_pushed_is_pulled_with_its_layers_and_whiteouts_and_runs() {
    if !have(&[REGISTRY, "/usr/bin/skopeo", "/usr/bin/umoci"]) {
        return;
    }
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().expect("tmp");
    let name = format!("{}/team/bb:1", reg.host());
    skopeo_push(&umoci_layout(tmp.path()), &name);
    let e = TestEngine::start();
    let out = e.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains(&format!("Status: Downloaded newer image for {name}")), "{out}");
    assert!(out.trim_end().ends_with(&name), "docker pull ends with the name: {out}");
    let seen = e.ok(&["run", "--rm", &name, "sh", "-c", "cat /x; ls /d; test -e /etc/gone || echo gone"]);
    assert_eq!(seen, "second\nc\ngone\n", "layer 2's whiteouts and opaque directory apply");
    // The same image again: nothing to fetch.
    let again = e.ok(&["pull", &name]);
    assert!(again.contains("Already exists") && again.contains("Image is up to date"), "{again}");
}

#[test]
fn push_then_pull_round_trips_by_tag_and_digest_and_shares_layers() {
    if !have(&[REGISTRY, "/usr/bin/skopeo"]) {
        return;
    }
    let reg = Registry::start(None);
    // 256 KiB chunks: the ~2 MB busybox layer goes up as a chunked upload (PATCHes, then PUT).
    let e = TestEngine::start_with_env(&[("BERTH_PUSH_CHUNK", "262144")]);
    e.import_busybox("bb:1");
    let name = format!("{}/team/app:1.2", reg.host());
    e.ok(&["tag", "bb:1", &name]);
    let pushed = e.ok(&["push", &name]);
    assert!(pushed.contains("Pushed"), "{pushed}");
    let digest = pushed
        .lines()
        .find_map(|l| l.strip_prefix("1.2: digest: ").and_then(|r| r.split_whitespace().next()))
        .unwrap_or_else(|| panic!("no digest line: {pushed}"))
        .to_string();
    // An independent reader of what berth pushed.
    let inspected = run(Command::new("skopeo").args(["inspect", "--tls-verify=false"]).arg(format!("docker://{name}")));
    assert!(inspected.contains(&digest), "skopeo sees the pushed digest: {inspected}");
    assert!(e.ok(&["push", &name]).contains("Layer already exists"));
    let other = format!("{}/other/app:1", reg.host());
    e.ok(&["tag", "bb:1", &other]);
    assert!(e.ok(&["push", &other]).contains("Mounted from team/app"), "cross-repository mount");

    e.ok(&["rmi", &name, &other, "bb:1"]);
    assert!(e.ok(&["images", "-q"]).trim().is_empty());
    let pulled = e.ok(&["pull", &name]);
    assert!(pulled.contains(&format!("Digest: {digest}")), "{pulled}");
    assert_eq!(e.ok(&["run", "--rm", &name, "echo", "ok"]), "ok\n");
    let by_digest = format!("{}/team/app@{digest}", reg.host());
    let again = e.ok(&["pull", &by_digest]);
    assert!(again.contains("Already exists"), "the layer is stored once: {again}");
    let digests = e.ok(&["images", "--digests", "--format", "{{.Digest}}"]);
    assert!(digests.contains(&digest), "{digests}");
}

#[test]
fn from_an_index_with_two_platforms_the_hosts_manifest_is_pulled() {
    if !have(&[REGISTRY, "/usr/bin/curl"]) {
        return;
    }
    let reg = Registry::start(None);
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    // Two images, pushed as two tags; then an index naming one for this host and one for another.
    let host_image = format!("{}/multi/app:host", reg.host());
    let other_image = format!("{}/multi/app:other", reg.host());
    e.ok(&["tag", "bb:1", &host_image]);
    let tmp = tempfile::tempdir().expect("tmp");
    let tar = tmp.path().join("other.tar");
    std::fs::copy(busybox_tar(), &tar).expect("copy");
    e.ok(&["import", "--change", "ENV VARIANT=other", tar.to_str().expect("utf8"), &other_image]);
    let digest_of = |out: String| out.lines().find_map(|l| l.split("digest: ").nth(1)).and_then(|r| r.split_whitespace().next()).map(String::from).expect("digest line");
    let host_digest = digest_of(e.ok(&["push", &host_image]));
    let other_digest = digest_of(e.ok(&["push", &other_image]));
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    let foreign = if arch == "amd64" { "arm64" } else { "amd64" };
    let size = |d: &str| {
        let out = Command::new("curl").args(["-sf", "-H", "Accept: application/vnd.oci.image.manifest.v1+json"]).arg(format!("http://{}/v2/multi/app/manifests/{d}", reg.host())).output().expect("curl");
        out.stdout.len()
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{other_digest}","size":{},"platform":{{"os":"linux","architecture":"{foreign}"}}}},
            {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{host_digest}","size":{},"platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#,
        size(&other_digest),
        size(&host_digest)
    );
    let put = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.index.v1+json", "--data-binary"])
        .arg(&index)
        .arg(format!("http://{}/v2/multi/app/manifests/index", reg.host()))
        .output()
        .expect("curl");
    assert!(put.status.success(), "putting the index: {}", String::from_utf8_lossy(&put.stderr));
    let host_id = e.ok(&["image", "inspect", "-f", "{{.Id}}", &host_image]);
    let indexed = format!("{}/multi/app:index", reg.host());
    e.ok(&["pull", &indexed]);
    assert_eq!(e.ok(&["image", "inspect", "-f", "{{.Id}}", &indexed]), host_id, "the host's platform was picked");
    let out = e.berth(&["pull", "--platform", "linux/s390x", &indexed]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("linux/s390x"), "{}", stderr(&out));
}

#[test]
fn concurrent_pulls_of_one_image_fetch_each_layer_once() {
    if !have(&[REGISTRY]) {
        return;
    }
    let reg = Registry::start(None);
    let e = TestEngine::start();
    // A 24 MiB layer of random bytes, loaded from a docker-archive made here.
    let tmp = tempfile::tempdir().expect("tmp");
    let mut data = vec![0u8; 24 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("blob"), &data).expect("file");
    let layer = Command::new("tar").arg("-C").arg(&src).args(["-cf", "-", "blob"]).output().expect("tar").stdout;
    let diff_id = sha256(&layer);
    let arc = tmp.path().join("arc");
    std::fs::create_dir_all(arc.join("l0")).expect("mkdir");
    std::fs::write(arc.join("l0/layer.tar"), &layer).expect("layer");
    std::fs::write(arc.join("c.json"), format!(r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#)).expect("config");
    let name = format!("{}/big/blob:1", reg.host());
    std::fs::write(arc.join("manifest.json"), format!(r#"[{{"Config":"c.json","RepoTags":["{name}"],"Layers":["l0/layer.tar"]}}]"#)).expect("manifest");
    let archive = tmp.path().join("big.tar");
    run(Command::new("tar").arg("-C").arg(&arc).arg("-cf").arg(&archive).arg("."));
    e.ok(&["load", "-i", archive.to_str().expect("utf8")]);
    e.ok(&["push", &name]);
    e.ok(&["rmi", &name]);
    let spawn = || Command::new(BERTH).arg("-H").arg(e.host()).args(["pull", &name]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("pull");
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().expect("a"), b.wait_with_output().expect("b"));
    assert!(a.status.success() && b.status.success(), "{}{}", stderr(&a), stderr(&b));
    let both = format!("{}{}", stdout(&a), stdout(&b));
    assert_eq!(both.matches("Pulling fs layer").count(), 1, "the layer was fetched once: {both}");
    assert!(both.contains("Waiting") || both.contains("Already exists"), "{both}");
}

#[test]
fn run_pulls_an_absent_image_with_dockers_messages() {
    if !have(&[REGISTRY]) {
        return;
    }
    let reg = Registry::start(None);
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let name = format!("{}/bb:run", reg.host());
    e.ok(&["tag", "bb:1", &name]);
    e.ok(&["push", &name]);
    e.ok(&["rmi", &name, "bb:1"]);
    let out = e.berth(&["run", "--rm", &name, "echo", "hi"]);
    assert_eq!(stdout(&out), "hi\n", "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("Unable to find image '{name}' locally")), "{err}");
    assert!(err.contains("Pull complete"), "{err}");
}

#[test]
fn bad_references_unknown_tags_and_unreachable_registries_are_one_clear_line() {
    if !have(&[REGISTRY]) {
        return;
    }
    let reg = Registry::start(None);
    let e = TestEngine::start();
    let missing = format!("{}/team/none:nope", reg.host());
    let out = e.berth(&["pull", &missing]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim(), format!("Error response from daemon: manifest for {missing} not found: manifest unknown: manifest unknown"));
    let port = free_port();
    let out = e.berth(&["pull", &format!("127.0.0.1:{port}/x:1")]);
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.to_lowercase().contains("refused"), "{err}");
    let out = e.berth(&["pull", "Bad/Name"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("accepted form"), "{}", stderr(&out));
}

#[test]
fn login_stores_docker_config_credentials_and_a_protected_registry_needs_them() {
    if !have(&[REGISTRY, "/usr/bin/htpasswd"]) {
        return;
    }
    let reg = Registry::start(Some(("ann", "s3cret")));
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let cfg = tempfile::tempdir().expect("docker config dir");
    let berth = |args: &[&str], input: Option<&str>| {
        let mut child = Command::new(BERTH)
            .arg("-H")
            .arg(e.host())
            .args(args)
            .env("DOCKER_CONFIG", cfg.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth");
        if let Some(i) = input {
            child.stdin.take().expect("stdin").write_all(i.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("wait")
    };
    let name = format!("{}/private/bb:1", reg.host());
    e.ok(&["tag", "bb:1", &name]);
    let out = berth(&["push", &name], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthorized") && stderr(&out).contains(&reg.host()), "{}", stderr(&out));
    let out = berth(&["login", "-u", "ann", "--password-stdin", &reg.host()], Some("wrong\n"));
    assert!(!out.status.success(), "a wrong password is refused");
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    let out = berth(&["login", "-u", "ann", "--password-stdin", &reg.host()], Some("s3cret\n"));
    assert_eq!(stdout(&out).trim(), "Login Succeeded", "{}", stderr(&out));
    let stored = std::fs::read_to_string(cfg.path().join("config.json")).expect("config.json");
    assert!(stored.contains(&reg.host()), "{stored}");
    let out = berth(&["push", &name], None);
    assert!(out.status.success(), "{}", stderr(&out));
    e.ok(&["rmi", &name]);
    let out = berth(&["pull", &name], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = berth(&["logout", &reg.host()], None);
    assert_eq!(stdout(&out).trim(), format!("Removing login credentials for {}", reg.host()));
}

/// A fixed answer: path, headers, body.
type Route = (String, Vec<(String, String)>, Vec<u8>);

/// A registry that serves fixed answers (what a real one never sends), one thread per connection.
struct FakeRegistry {
    port: u16,
}

/// Bearer token auth as Docker Hub does it: `/v2/…` answers 401 with a challenge naming the
/// token realm, which hands out TOKEN for Basic credentials `ann:s3cret`.
const TOKEN: &str = "good-token";

impl FakeRegistry {
    fn start(routes: Vec<Route>) -> FakeRegistry {
        FakeRegistry::start_auth(routes, false)
    }

    fn start_auth(routes: Vec<Route>, bearer: bool) -> FakeRegistry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let routes = routes.clone();
                std::thread::spawn(move || serve(conn, &routes, bearer.then_some(port)));
            }
        });
        FakeRegistry { port }
    }
}

fn serve(mut conn: std::net::TcpStream, routes: &[Route], bearer: Option<u16>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match conn.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut parts = text.split_whitespace();
        let (method, full_path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = full_path.split('?').next().unwrap_or(full_path);
        let authorization = text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.trim().to_string()));
        let found = routes.iter().find(|(p, _, _)| p == path);
        let challenge = bearer.map(|port| vec![("WWW-Authenticate".to_string(), format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake""#))]);
        let (status, headers, body): (&str, Vec<(String, String)>, Vec<u8>) = match (found, &challenge) {
            // ann:s3cret, base64
            (_, Some(_)) if path == "/token" && authorization.as_deref() == Some("Basic YW5uOnMzY3JldA==") => ("200 OK", Vec::new(), format!(r#"{{"token":"{TOKEN}"}}"#).into_bytes()),
            (_, Some(c)) if path == "/token" => ("401 Unauthorized", c.clone(), br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#.to_vec()),
            (_, Some(c)) if path.starts_with("/v2/") && path != "/v2/" && authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) => {
                ("401 Unauthorized", c.clone(), br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec())
            }
            _ => match found {
            Some((_, h, b)) => ("200 OK", h.clone(), b.clone()),
            None if path == "/v2/" => ("200 OK", Vec::new(), b"{}".to_vec()),
            None => ("404 Not Found", Vec::new(), br#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#.to_vec()),
            },
        };
        // A declared length beyond the body makes a truncated transfer: the client sees EOF early.
        let length = headers.iter().find(|(k, _)| k == "Content-Length").map(|(_, v)| v.clone()).unwrap_or_else(|| body.len().to_string());
        let mut resp = format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\n");
        for (k, v) in headers.iter().filter(|(k, _)| k != "Content-Length") {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        let _ = conn.write_all(resp.as_bytes());
        if method != "HEAD" {
            let _ = conn.write_all(&body);
        }
        if length != body.len().to_string() {
            return;
        }
    }
}

/// A one-file image served by the fake registry: its layer, config and manifest with digests.
struct OneFileImage {
    layer: Vec<u8>,
    layer_digest: String,
    config: String,
    config_digest: String,
    manifest: String,
}

fn one_file_image(content: &str) -> OneFileImage {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("hello"), content).expect("file");
    let layer = Command::new("tar").arg("-C").arg(tmp.path()).args(["-cf", "-", "hello"]).output().expect("tar").stdout;
    let layer_digest = sha256(&layer);
    let config = format!(r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#);
    let config_digest = sha256(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    OneFileImage { layer, layer_digest, config, config_digest, manifest }
}

fn sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

#[test]
fn a_lying_manifest_and_a_truncated_blob_are_refused_and_nothing_is_stored() {
    if !can_run() {
        return;
    }
    let OneFileImage { layer, layer_digest, config, config_digest, manifest } = one_file_image("hello\n");
    let oci = ("Content-Type".to_string(), "application/vnd.oci.image.manifest.v1+json".to_string());
    let wrong = format!("sha256:{}", "0".repeat(64));
    let fake = FakeRegistry::start(vec![
        ("/v2/evil/manifests/1".into(), vec![oci.clone(), ("Docker-Content-Digest".into(), wrong.clone())], manifest.clone().into_bytes()),
        ("/v2/trunc/manifests/1".into(), vec![oci], manifest.clone().into_bytes()),
        (format!("/v2/trunc/blobs/{config_digest}"), Vec::new(), config.clone().into_bytes()),
        (format!("/v2/trunc/blobs/{layer_digest}"), vec![("Content-Length".into(), layer.len().to_string())], layer[..layer.len() / 2].to_vec()),
    ]);
    let e = TestEngine::start();
    let out = e.berth(&["pull", &format!("127.0.0.1:{}/evil:1", fake.port)]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not match its digest"), "{}", stderr(&out));
    let out = e.berth(&["pull", &format!("127.0.0.1:{}/trunc:1", fake.port)]);
    assert!(!out.status.success(), "a truncated layer must fail the pull");
    assert!(stderr(&out).contains(layer_digest.trim_start_matches("sha256:")), "the error names the blob: {}", stderr(&out));
    assert!(e.ok(&["images", "-q"]).trim().is_empty(), "no image registered");
    let blobs = e.root.join("image");
    let layer_hex = layer_digest.trim_start_matches("sha256:");
    let leftovers = Command::new("find").arg(&blobs).args(["-name", &format!("*{layer_hex}*")]).output().expect("find").stdout;
    assert!(leftovers.is_empty(), "the truncated layer was stored: {}", String::from_utf8_lossy(&leftovers));
    let layers = std::fs::read_dir(e.root.join("snapshots/layers")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(layers, 0, "no layer snapshot committed");
}

#[test]
fn a_bearer_token_challenge_is_answered_with_the_users_credentials() {
    if !can_run() {
        return;
    }
    let OneFileImage { layer, layer_digest, config, config_digest, manifest } = one_file_image("behind a token\n");
    let oci = ("Content-Type".to_string(), "application/vnd.oci.image.manifest.v1+json".to_string());
    let expected_id = config_digest.clone();
    let fake = FakeRegistry::start_auth(
        vec![
            ("/v2/private/manifests/1".into(), vec![oci], manifest.into_bytes()),
            (format!("/v2/private/blobs/{config_digest}"), Vec::new(), config.into_bytes()),
            (format!("/v2/private/blobs/{layer_digest}"), Vec::new(), layer),
        ],
        true,
    );
    let e = TestEngine::start();
    let name = format!("127.0.0.1:{}/private:1", fake.port);
    let cfg = tempfile::tempdir().expect("docker config");
    let pull = |config: &Path| Command::new(BERTH).arg("-H").arg(e.host()).args(["pull", &name]).env("DOCKER_CONFIG", config).output().expect("berth");
    let out = pull(cfg.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("unauthorized"), "{}", stderr(&out));
    std::fs::write(cfg.path().join("config.json"), format!(r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"YW5uOnMzY3JldA=="}}}}}}"#, fake.port)).expect("config");
    let out = pull(cfg.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(e.ok(&["image", "inspect", "-f", "{{.Id}}", &name]).trim(), expected_id, "the image behind the token was pulled");
}

#[test]
fn the_docker_cli_pulls_and_pushes_through_berth() {
    if !have(&[REGISTRY, "/usr/bin/docker"]) {
        return;
    }
    let reg = Registry::start(None);
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let name = format!("{}/cli/bb:1", reg.host());
    e.ok(&["tag", "bb:1", &name]);
    let docker = |args: &[&str]| {
        let out = Command::new("docker").arg("-H").arg(e.host()).args(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(docker(&["push", &name]).contains("digest: sha256:"));
    docker(&["rmi", &name]);
    let started = Instant::now();
    let out = docker(&["pull", &name]);
    assert!(out.contains("Pull complete") || out.contains("Already exists"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).contains(&name));
}
