//! On-disk behaviour: creation, reuse, reissue, permissions, openssl's view.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use pki::{client_identity, Identity, Pki};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).expect("read pki file")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn have(tool: &str) -> bool {
    let ok = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !ok {
        println!("skipping: {tool} not found");
    }
    ok
}

/// `openssl verify` of `cert` (a path) against the CA in `dir`.
fn openssl_verify(dir: &Path, cert: &Path, purpose: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-purpose")
        .arg(purpose)
        .arg("-CAfile")
        .arg(dir.join("ca.crt"))
        .arg(cert)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn create_then_load_reuses_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    let first = Pki::load_or_create(&dir, &[]).expect("create");
    let files: Vec<String> = [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "admin.crt",
        "admin.key",
        "token",
    ]
    .iter()
    .map(|n| read(&dir, n))
    .collect();
    let second = Pki::load_or_create(&dir, &[]).expect("load");
    assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
    assert_eq!(first.server_cert_pem(), second.server_cert_pem());
    assert_eq!(first.admin_cert_pem(), second.admin_cert_pem());
    assert_eq!(first.token(), second.token());
    for (n, before) in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "admin.crt",
        "admin.key",
        "token",
    ]
    .iter()
    .zip(&files)
    {
        assert_eq!(&read(&dir, n), before, "{n} rewritten on reload");
    }
    assert_eq!(first.ca_cert_pem(), read(&dir, "ca.crt"));
    assert_eq!(first.token().len(), 43);
}

#[test]
fn permissions_and_no_temp_files_left() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pki");
    Pki::load_or_create(&dir, &[]).expect("create");
    assert_eq!(mode(&dir), 0o700);
    for key in ["ca.key", "server.key", "admin.key", "token"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    for crt in ["ca.crt", "server.crt", "admin.crt"] {
        assert_eq!(mode(&dir.join(crt)), 0o644, "{crt}");
    }
    let names: Vec<String> = fs::read_dir(&dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 7, "unexpected files: {names:?}");
}

#[test]
fn admin_identity_from_stored_cert() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(tmp.path(), &[]).expect("create");
    let der = CertificateDer::from_pem_slice(pki.admin_cert_pem().as_bytes()).expect("pem");
    assert_eq!(
        client_identity(&[der]),
        Some(Identity {
            user: "admin".into(),
            groups: vec!["system:masters".into()],
        })
    );
    assert_eq!(client_identity(&[]), None);
}

#[test]
fn client_cert_with_several_groups() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(tmp.path(), &[]).expect("create");
    let (crt, key) = pki
        .issue_client_cert("system:node:n1", &["system:nodes", "team-a", "team-b"])
        .expect("issue");
    assert!(key.contains("PRIVATE KEY"));
    let der = CertificateDer::from_pem_slice(crt.as_bytes()).expect("pem");
    assert_eq!(
        client_identity(&[der]),
        Some(Identity {
            user: "system:node:n1".into(),
            groups: vec!["system:nodes".into(), "team-a".into(), "team-b".into()],
        })
    );
    let (one, _) = pki.issue_client_cert("agent", &["g"]).expect("issue");
    let none: &[&str] = &[];
    let (zero, _) = pki.issue_client_cert("solo", none).expect("issue");
    for (pem, user, groups) in [(one, "agent", vec!["g"]), (zero, "solo", vec![])] {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
        let id = client_identity(&[der]).expect("identity");
        assert_eq!(id.user, user);
        assert_eq!(id.groups, groups);
    }
    assert!(pki.issue_client_cert("", none).is_err());

    // The re-signed multi-group certificate must still verify.
    if have("openssl") {
        let path = tmp.path().join("node.crt");
        fs::write(&path, &crt).expect("write");
        let (ok, text) = openssl_verify(tmp.path(), &path, "sslclient");
        assert!(ok, "openssl verify: {text}");
    }
}

#[test]
fn openssl_verifies_server_and_admin() {
    if !have("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    Pki::load_or_create(dir, &["10.9.8.7".into(), "api.example".into()]).expect("create");
    let (ok, text) = openssl_verify(dir, &dir.join("server.crt"), "sslserver");
    assert!(ok, "server.crt: {text}");
    let (ok, text) = openssl_verify(dir, &dir.join("admin.crt"), "sslclient");
    assert!(ok, "admin.crt: {text}");

    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.join("server.crt"))
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "DNS:kubernetes.default.svc.cluster.local",
        "IP Address:10.9.8.7",
        "DNS:api.example",
        "TLS Web Server Authentication",
        "prime256v1",
    ] {
        assert!(text.contains(want), "server.crt lacks {want}:\n{text}");
    }
    // The server certificate is no client certificate, and vice versa.
    let (ok, _) = openssl_verify(dir, &dir.join("server.crt"), "sslclient");
    assert!(!ok);
}

#[test]
fn new_san_reissues_server_cert_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let a = Pki::load_or_create(dir, &[]).expect("create");
    let b =
        Pki::load_or_create(dir, &["192.168.7.1".into(), "node.example".into()]).expect("reload");
    assert_eq!(a.ca_cert_pem(), b.ca_cert_pem());
    assert_eq!(a.admin_cert_pem(), b.admin_cert_pem());
    assert_ne!(a.server_cert_pem(), b.server_cert_pem());
    assert_ne!(a.server_key_pem(), b.server_key_pem());
    // Same or fewer names than the certificate has: kept.
    let c = Pki::load_or_create(dir, &["NODE.example".into()]).expect("reload");
    assert_eq!(b.server_cert_pem(), c.server_cert_pem());
    let d = Pki::load_or_create(dir, &[]).expect("reload");
    assert_eq!(b.server_cert_pem(), d.server_cert_pem());
    assert!(Pki::load_or_create(dir, &["bad name".into()]).is_err());
}

/// Writes a leaf signed by the stored CA that expires in `days`.
fn write_short_leaf(dir: &Path, name: &str, cn: &str, days: i64) {
    let ca_key = rcgen::KeyPair::from_pem(&read(dir, "ca.key")).expect("ca key");
    let ca_der = CertificateDer::from_pem_slice(read(dir, "ca.crt").as_bytes()).expect("ca pem");
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca_der, &ca_key).expect("issuer");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    let cert = params.signed_by(&key, &issuer).expect("sign");
    fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write crt");
    fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
}

#[test]
fn expiring_or_foreign_leaves_are_reissued() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let a = Pki::load_or_create(dir, &[]).expect("create");

    // Expiring in 10 days: inside the 30-day window, reissued.
    write_short_leaf(dir, "server", "kube-apiserver", 10);
    let short = read(dir, "server.crt");
    let b = Pki::load_or_create(dir, &[]).expect("reload");
    assert_ne!(b.server_cert_pem(), short);
    assert_eq!(a.ca_cert_pem(), b.ca_cert_pem());
    let der = CertificateDer::from_pem_slice(b.server_cert_pem().as_bytes()).expect("pem");
    let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
    let left =
        x.validity().not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(left > 360 * 86400, "leaf should last a year, has {left}s");

    // 60 days left, but lacking the default SANs: reissued too.
    write_short_leaf(dir, "server", "kube-apiserver", 60);
    let sanless = read(dir, "server.crt");
    let c = Pki::load_or_create(dir, &[]).expect("reload");
    assert_ne!(c.server_cert_pem(), sanless);
    assert_eq!(c.server_cert_pem(), read(dir, "server.crt"));

    // Admin cert with the wrong subject: reissued as admin/system:masters.
    write_short_leaf(dir, "admin", "mallory", 300);
    let d = Pki::load_or_create(dir, &[]).expect("reload");
    let der = CertificateDer::from_pem_slice(d.admin_cert_pem().as_bytes()).expect("pem");
    assert_eq!(client_identity(&[der]).expect("identity").user, "admin");

    // A leaf from another CA is replaced by one from ours.
    let other = tempfile::tempdir().expect("tempdir");
    Pki::load_or_create(other.path(), &[]).expect("other");
    fs::copy(other.path().join("admin.crt"), dir.join("admin.crt")).expect("copy");
    fs::copy(other.path().join("admin.key"), dir.join("admin.key")).expect("copy");
    let e = Pki::load_or_create(dir, &[]).expect("reload");
    assert_ne!(e.admin_cert_pem(), read(other.path(), "admin.crt"));
    assert_eq!(e.ca_cert_pem(), a.ca_cert_pem());

    // A key that does not match its certificate: reissued.
    fs::copy(other.path().join("server.key"), dir.join("server.key")).expect("copy");
    let f = Pki::load_or_create(dir, &[]).expect("reload");
    assert_ne!(f.server_key_pem(), read(other.path(), "server.key"));
}

#[test]
fn damaged_ca_is_an_error_not_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    Pki::load_or_create(dir, &[]).expect("create");
    fs::write(dir.join("ca.crt"), "garbage").expect("write");
    let err = Pki::load_or_create(dir, &[]).expect_err("damaged CA must fail");
    assert!(err.to_string().contains("ca.crt"), "{err}");
    assert_eq!(read(dir, "ca.crt"), "garbage");
}

#[test]
fn kubeconfig_is_written_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(&tmp.path().join("pki"), &[]).expect("create");
    let path = tmp.path().join(".kube/config");
    pki::write_kubeconfig(&path, "https://127.0.0.1:6443", "berth", &pki).expect("write");
    assert_eq!(mode(&path), 0o600);
    let text = read(tmp.path(), ".kube/config");
    assert_eq!(
        text,
        pki::kubeconfig_yaml("https://127.0.0.1:6443", "berth", &pki)
    );
    for want in [
        "current-context: \"berth\"",
        "server: \"https://127.0.0.1:6443\"",
        "certificate-authority-data: ",
        "client-certificate-data: ",
        "client-key-data: ",
    ] {
        assert!(text.contains(want), "kubeconfig lacks {want}:\n{text}");
    }
}

#[test]
fn server_config_offers_h2_and_http1() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(tmp.path(), &[]).expect("create");
    let cfg = pki.server_config();
    assert_eq!(
        cfg.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}
