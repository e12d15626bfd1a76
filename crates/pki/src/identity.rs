//! Kubernetes-style identity from a verified client certificate.

use rustls_pki_types::CertificateDer;

/// Who a client certificate says the caller is: CN is the user name and
/// each O is a group, the mapping kube-apiserver's x509 authenticator uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Identity of the peer's leaf certificate (the first in `certs`).
///
/// This does not verify anything: call it on the chain rustls hands back
/// after the handshake, which the client verifier has already checked
/// against the CA. `None` without a certificate or without a CN, since
/// Kubernetes refuses certificates with an empty common name.
pub fn client_identity(certs: &[CertificateDer<'_>]) -> Option<Identity> {
    let leaf = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if user.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(Identity { user, groups })
}
