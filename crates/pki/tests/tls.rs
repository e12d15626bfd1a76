//! End to end: a TLS listener using `Pki::server_config()`, reached by curl
//! and kubectl, reporting the client identity it saw.

use std::path::Path;
use std::sync::{Arc, Mutex};

use pki::{client_identity, Identity, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_rustls::TlsAcceptor;

type Seen = Arc<Mutex<Vec<Option<Identity>>>>;

fn have(tool: &str) -> bool {
    let ok = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !ok {
        println!("skipping: {tool} not found");
    }
    ok
}

fn body_for(id: &Option<Identity>) -> String {
    match id {
        Some(id) => serde_json::json!({ "user": id.user, "groups": id.groups }).to_string(),
        None => serde_json::json!({ "user": null, "groups": [] }).to_string(),
    }
}

/// Starts a listener on 127.0.0.1:0 answering every request with the JSON
/// identity of the client; returns its port and the identities seen.
async fn serve(pki: &Pki) -> (u16, Seen) {
    // This toy server speaks HTTP/1.1 only; everything else in the config
    // (certificate, client verifier) is exactly what the API server gets.
    let mut config = (*pki.server_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                // Handshake failures (untrusted client certs) just drop.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let id = client_identity(tls.get_ref().1.peer_certificates().unwrap_or(&[]));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = body_for(&id);
                seen.lock().expect("lock").push(id);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, seen)
}

/// curl against the listener, never through a proxy from the environment.
async fn curl(port: u16, args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "20"])
        .args(args)
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .await
        .expect("run curl")
}

fn admin() -> Identity {
    Identity {
        user: "admin".into(),
        groups: vec!["system:masters".into()],
    }
}

fn p(path: &Path) -> &std::ffi::OsStr {
    path.as_os_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_and_without_client_cert() {
    if !have("curl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let pki = Pki::load_or_create(dir, &[]).expect("pki");
    let (port, seen) = serve(&pki).await;
    let (ca, crt, key) = (
        dir.join("ca.crt"),
        dir.join("admin.crt"),
        dir.join("admin.key"),
    );

    let out = curl(
        port,
        &[
            "--cacert".as_ref(),
            p(&ca),
            "--cert".as_ref(),
            p(&crt),
            "--key".as_ref(),
            p(&key),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json body");
    assert_eq!(body["user"], "admin");
    assert_eq!(body["groups"], serde_json::json!(["system:masters"]));

    // No client certificate: still served, anonymously (tokens come later).
    let out = curl(port, &["--cacert".as_ref(), p(&ca)]).await;
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json body");
    assert_eq!(body["user"], serde_json::Value::Null);

    // A client certificate from another CA is refused at the handshake.
    let other = tempfile::tempdir().expect("tempdir");
    Pki::load_or_create(other.path(), &[]).expect("other pki");
    let out = curl(
        port,
        &[
            "--cacert".as_ref(),
            p(&ca),
            "--cert".as_ref(),
            p(&other.path().join("admin.crt")),
            "--key".as_ref(),
            p(&other.path().join("admin.key")),
        ],
    )
    .await;
    assert!(!out.status.success(), "foreign client cert was accepted");

    // The server certificate does not verify against a foreign CA.
    let out = curl(
        port,
        &["--cacert".as_ref(), p(&other.path().join("ca.crt"))],
    )
    .await;
    assert!(
        !out.status.success(),
        "server verified against a foreign CA"
    );

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, vec![Some(admin()), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_issued_node_cert() {
    if !have("curl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let pki = Pki::load_or_create(dir, &[]).expect("pki");
    let (crt, key) = pki
        .issue_client_cert("system:node:n1", &["system:nodes", "extra"])
        .expect("issue");
    std::fs::write(dir.join("node.crt"), crt).expect("write");
    std::fs::write(dir.join("node.key"), key).expect("write");
    let (port, seen) = serve(&pki).await;
    let out = curl(
        port,
        &[
            "--cacert".as_ref(),
            p(&dir.join("ca.crt")),
            "--cert".as_ref(),
            p(&dir.join("node.crt")),
            "--key".as_ref(),
            p(&dir.join("node.key")),
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![Some(Identity {
            user: "system:node:n1".into(),
            groups: vec!["system:nodes".into(), "extra".into()],
        })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_raw_with_written_kubeconfig() {
    if !have("kubectl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(&tmp.path().join("pki"), &[]).expect("pki");
    let (port, seen) = serve(&pki).await;
    let kubeconfig = tmp.path().join("kube/config");
    pki::write_kubeconfig(
        &kubeconfig,
        &format!("https://127.0.0.1:{port}"),
        "berth",
        &pki,
    )
    .expect("kubeconfig");
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--request-timeout", "20s", "get", "--raw", "/"])
        // Keep kubectl's cache and any proxy settings out of the picture.
        .env("HOME", tmp.path())
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env("NO_PROXY", "*")
        .output()
        .await
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json body");
    assert_eq!(body["user"], "admin");
    let seen = seen.lock().expect("lock").clone();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|s| s.as_ref() == Some(&admin())),
        "{seen:?}"
    );
}
