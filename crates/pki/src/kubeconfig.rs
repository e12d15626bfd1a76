//! kubeconfig for the admin client certificate.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::fsutil::{io_err, write_atomic};
use crate::{Pki, Result};

/// A YAML scalar that is safe whatever the input: JSON strings are YAML.
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// kubeconfig with one cluster, user and context, all named `cluster_name`,
/// carrying the CA and the admin certificate and key inline, so the file
/// works on its own wherever it is copied.
pub fn kubeconfig_yaml(server_url: &str, cluster_name: &str, pki: &Pki) -> String {
    let name = quote(cluster_name);
    let server = quote(server_url);
    let ca = STANDARD.encode(pki.ca_cert_pem());
    let cert = STANDARD.encode(pki.admin_cert_pem());
    let key = STANDARD.encode(pki.admin_key_pem());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {name}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}
current-context: {name}
preferences: {{}}
"
    )
}

/// Writes [`kubeconfig_yaml`] to `path` atomically with mode 0600: it holds
/// the admin private key. Creates the parent directory (e.g. `~/.kube`).
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    cluster_name: &str,
    pki: &Pki,
) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    write_atomic(
        path,
        kubeconfig_yaml(server_url, cluster_name, pki).as_bytes(),
        0o600,
    )
}
