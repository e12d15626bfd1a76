//! PKI for berth's Kubernetes API server.
//!
//! One directory holds a CA (`ca.crt`/`ca.key`), the API server's serving
//! certificate (`server.crt`/`server.key`), an admin client certificate
//! (`admin.crt`/`admin.key`, CN=admin, O=system:masters) and a bearer
//! `token`. Keys are ECDSA P-256: Go's crypto/tls (kubectl) and rustls both
//! accept it everywhere. Files are created on first use, reused afterwards,
//! and leaves are reissued when they near expiry or miss a requested SAN.

mod der;
mod fsutil;
mod identity;
mod kubeconfig;

use std::fs::{self, Permissions};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SigningKey, PKCS_ECDSA_P256_SHA256,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use fsutil::{io_err, read_opt, write_atomic};
pub use identity::{client_identity, Identity};
pub use kubeconfig::{kubeconfig_yaml, write_kubeconfig};

pub const CA_CRT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CRT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";
pub const ADMIN_CRT: &str = "admin.crt";
pub const ADMIN_KEY: &str = "admin.key";
pub const TOKEN: &str = "token";

/// The admin certificate's user and group; system:masters is the group
/// Kubernetes RBAC lets do everything.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_GROUP: &str = "system:masters";

/// Names every in-cluster client and local tool uses for the API server.
pub const DEFAULT_SANS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;
const RENEW_BEFORE_DAYS: i64 = 30;
/// Backdate not_before a little so a peer whose clock lags still accepts
/// a certificate issued a moment ago.
const BACKDATE: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("invalid subject alternative name {0:?}")]
    InvalidSan(String),
    #[error("invalid certificate subject: {0}")]
    InvalidSubject(String),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("random number generator: {0}")]
    Random(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// 32 random bytes, URL-safe base64 without padding (43 characters): a
/// bearer token that needs no quoting in headers, URLs or files.
pub fn generate_token() -> Result<String> {
    let mut buf = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| Error::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A subject alternative name, normalized for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
}

impl San {
    fn parse(s: &str) -> Result<San> {
        let s = s.trim();
        // Accept "[::1]" as people write IPv6 in URLs.
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let valid = !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'*' | b'_'));
        if !valid {
            return Err(Error::InvalidSan(s.to_string()));
        }
        // DNS names compare case-insensitively; store them lower-case.
        Ok(San::Dns(s.to_ascii_lowercase()))
    }

    fn to_rcgen(&self) -> Result<SanType> {
        Ok(match self {
            San::Dns(d) => SanType::DnsName(
                d.clone()
                    .try_into()
                    .map_err(|_| Error::InvalidSan(d.clone()))?,
            ),
            San::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

/// The default names plus `extra`, deduplicated in order.
fn wanted_sans(extra: &[String]) -> Result<Vec<San>> {
    let mut out: Vec<San> = Vec::new();
    for s in DEFAULT_SANS
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        let san = San::parse(s)?;
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

fn cert_sans(cert: &X509Certificate<'_>) -> Vec<San> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(San::Dns(d.to_ascii_lowercase())),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| San::Ip(IpAddr::from(a))),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| San::Ip(IpAddr::from(a))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn random_serial() -> Result<SerialNumber> {
    let mut b = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| Error::Random(e.to_string()))?;
    // Positive and minimally encoded (Go rejects non-minimal INTEGERs):
    // top bit clear, second-highest set.
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&b))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn renew_deadline() -> i64 {
    (now() + Duration::days(RENEW_BEFORE_DAYS)).unix_timestamp()
}

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn first_cert(pem: &[u8]) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).next()?.ok()
}

/// The certificate authority: its certificate and signing key.
struct Ca {
    cert_pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
    not_after: OffsetDateTime,
}

impl Ca {
    fn create(dir: &Path) -> Result<Ca> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "berth-ca");
        params.distinguished_name = dn;
        // pathlen 0: this CA signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let start = now();
        params.not_before = start - BACKDATE;
        params.not_after = start + Duration::days(CA_DAYS);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        write_atomic(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&dir.join(CA_CRT), cert_pem.as_bytes(), 0o644)?;
        Ok(Ca {
            cert_pem,
            der: cert.der().clone(),
            key,
            not_after: params.not_after,
        })
    }

    fn parse(dir: &Path, crt: &[u8], key: &[u8]) -> Result<Ca> {
        let crt_path = dir.join(CA_CRT);
        let key_path = dir.join(CA_KEY);
        let der = first_cert(crt).ok_or_else(|| invalid(&crt_path, "no PEM certificate"))?;
        let (_, x509) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| invalid(&crt_path, e.to_string()))?;
        if !x509.is_ca() {
            return Err(invalid(&crt_path, "not a CA certificate"));
        }
        let key_str = std::str::from_utf8(key).map_err(|_| invalid(&key_path, "not PEM text"))?;
        let key = KeyPair::from_pem(key_str).map_err(|e| invalid(&key_path, e.to_string()))?;
        if key.subject_public_key_info() != x509.public_key().raw {
            return Err(invalid(&key_path, "does not match ca.crt"));
        }
        let not_after = OffsetDateTime::from_unix_timestamp(x509.validity().not_after.timestamp())
            .map_err(|e| invalid(&crt_path, e.to_string()))?;
        let cert_pem = String::from_utf8_lossy(crt).into_owned();
        Ok(Ca {
            cert_pem,
            der,
            key,
            not_after,
        })
    }

    /// Signs a fresh P-256 key into a leaf certificate: (cert PEM, key PEM).
    fn issue(
        &self,
        cn: &str,
        orgs: &[&str],
        sans: &[San],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String)> {
        if cn.is_empty() {
            return Err(Error::InvalidSubject("empty common name".into()));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(o) = orgs.first() {
            dn.push(DnType::OrganizationName, *o);
        }
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let start = now();
        params.not_before = start - BACKDATE;
        // Never outlive the CA: such a leaf would fail verification anyway.
        params.not_after = (start + Duration::days(LEAF_DAYS)).min(self.not_after);
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&self.der, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        let der = if orgs.len() > 1 {
            // rcgen keeps one O per name; write the full subject ourselves.
            let subject = der::subject_name(cn, orgs);
            der::replace_subject(cert.der(), &subject, |tbs| self.key.sign(tbs))
                .ok_or_else(|| Error::InvalidSubject("unexpected certificate layout".into()))??
        } else {
            cert.der().to_vec()
        };
        let cert_pem = pem_encode("CERTIFICATE", &der);
        Ok((cert_pem, key.serialize_pem()))
    }

    /// Whether a stored leaf can be kept: parses, matches its key, was signed
    /// by this CA, is not within the renewal window, and satisfies `ok`.
    fn leaf_is_current(
        &self,
        crt: &[u8],
        key: &[u8],
        ok: impl Fn(&X509Certificate<'_>) -> bool,
    ) -> bool {
        let Some(der) = first_cert(crt) else {
            return false;
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
            return false;
        };
        let Ok(key) = std::str::from_utf8(key)
            .map_err(|_| ())
            .and_then(|k| KeyPair::from_pem(k).map_err(|_| ()))
        else {
            return false;
        };
        let Ok((_, ca)) = x509_parser::parse_x509_certificate(self.der.as_ref()) else {
            return false;
        };
        key.subject_public_key_info() == cert.public_key().raw
            && cert.verify_signature(Some(ca.public_key())).is_ok()
            && cert.validity().not_after.timestamp() > renew_deadline()
            && ok(&cert)
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // 64-column lines, as RFC 7468 and every PEM reader expect.
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The API server's certificates, loaded from or created in one directory.
pub struct Pki {
    dir: PathBuf,
    ca: Ca,
    server_cert_pem: String,
    server_key_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
    token: String,
    server_config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Pki {
    // Hand-written so private keys and the token never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Loads a leaf pair from `dir`, or issues and writes a new one when absent,
/// broken, expiring, from another CA, or rejected by `ok`.
fn load_or_issue_leaf(
    dir: &Path,
    crt_name: &str,
    key_name: &str,
    ca: &Ca,
    force: bool,
    ok: impl Fn(&X509Certificate<'_>) -> bool,
    issue: impl FnOnce() -> Result<(String, String)>,
) -> Result<(String, String)> {
    let crt_path = dir.join(crt_name);
    let key_path = dir.join(key_name);
    if !force {
        if let (Some(crt), Some(key)) = (read_opt(&crt_path)?, read_opt(&key_path)?) {
            if ca.leaf_is_current(&crt, &key, ok) {
                return Ok((
                    String::from_utf8_lossy(&crt).into_owned(),
                    String::from_utf8_lossy(&key).into_owned(),
                ));
            }
        }
    }
    let (crt, key) = issue()?;
    // Key first: a crash between the two leaves a cert/key mismatch, which
    // the next load detects and repairs by reissuing.
    write_atomic(&key_path, key.as_bytes(), 0o600)?;
    write_atomic(&crt_path, crt.as_bytes(), 0o644)?;
    Ok((crt, key))
}

impl Pki {
    /// Loads the PKI in `dir`, creating what is missing. `sans` are extra
    /// names or IPs for the server certificate beyond [`DEFAULT_SANS`].
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki> {
        let wanted = wanted_sans(sans)?;
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        // The directory holds private keys: owner only.
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(io_err(dir))?;

        let (ca, ca_new) = match (read_opt(&dir.join(CA_CRT))?, read_opt(&dir.join(CA_KEY))?) {
            (Some(crt), Some(key)) => {
                // A CA that is present but unreadable is an error, not
                // something to replace silently: every kubeconfig trusts it.
                let ca = Ca::parse(dir, &crt, &key)?;
                if ca.not_after.unix_timestamp() > renew_deadline() {
                    (ca, false)
                } else {
                    // About to expire: nothing it signs would last, rotate.
                    (Ca::create(dir)?, true)
                }
            }
            // Nothing, or half a CA that cannot sign or be trusted: start over.
            _ => (Ca::create(dir)?, true),
        };

        let (server_cert_pem, server_key_pem) = load_or_issue_leaf(
            dir,
            SERVER_CRT,
            SERVER_KEY,
            &ca,
            ca_new,
            |cert| {
                let have = cert_sans(cert);
                wanted.iter().all(|s| have.contains(s))
            },
            || {
                ca.issue(
                    "kube-apiserver",
                    &[],
                    &wanted,
                    ExtendedKeyUsagePurpose::ServerAuth,
                )
            },
        )?;
        let (admin_cert_pem, admin_key_pem) = load_or_issue_leaf(
            dir,
            ADMIN_CRT,
            ADMIN_KEY,
            &ca,
            ca_new,
            |cert| {
                identity::client_identity(&[CertificateDer::from(cert.as_raw())])
                    == Some(Identity {
                        user: ADMIN_USER.into(),
                        groups: vec![ADMIN_GROUP.into()],
                    })
            },
            || {
                ca.issue(
                    ADMIN_USER,
                    &[ADMIN_GROUP],
                    &[],
                    ExtendedKeyUsagePurpose::ClientAuth,
                )
            },
        )?;

        let token_path = dir.join(TOKEN);
        let token = match read_opt(&token_path)? {
            Some(t) if !String::from_utf8_lossy(&t).trim().is_empty() => {
                String::from_utf8_lossy(&t).trim().to_string()
            }
            _ => {
                let t = generate_token()?;
                write_atomic(&token_path, format!("{t}\n").as_bytes(), 0o600)?;
                t
            }
        };

        let server_config = build_server_config(&ca, &server_cert_pem, &server_key_pem, dir)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca,
            server_cert_pem,
            server_key_pem,
            admin_cert_pem,
            admin_key_pem,
            token,
            server_config,
        })
    }

    /// A client certificate for `cn` with groups `orgs`, signed by the CA
    /// (for nodes and agents): (cert PEM, key PEM). Nothing is written.
    pub fn issue_client_cert<S: AsRef<str>>(
        &self,
        cn: &str,
        orgs: &[S],
    ) -> Result<(String, String)> {
        let orgs: Vec<&str> = orgs.iter().map(AsRef::as_ref).collect();
        self.ca
            .issue(cn, &orgs, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// TLS config for the API server: serves server.crt, offers h2 and
    /// http/1.1, and asks for (but does not require) a client certificate
    /// signed by the CA, since bearer tokens authenticate too.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.ca.der
    }
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin_cert_pem
    }
    pub fn admin_key_pem(&self) -> &str {
        &self.admin_key_pem
    }
    /// The bearer token kept in `dir/token`.
    pub fn token(&self) -> &str {
        &self.token
    }
}

fn build_server_config(
    ca: &Ca,
    cert_pem: &str,
    key_pem: &str,
    dir: &Path,
) -> Result<Arc<ServerConfig>> {
    // One provider, named explicitly, so the build never depends on which
    // rustls crypto features other crates happen to enable.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone())?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&dir.join(SERVER_CRT), e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| invalid(&dir.join(SERVER_KEY), e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn san_parsing() {
        assert_eq!(
            San::parse("10.0.0.1").ok(),
            Some(San::Ip("10.0.0.1".parse().expect("ip")))
        );
        assert_eq!(
            San::parse("[fd00::1]").ok(),
            Some(San::Ip("fd00::1".parse().expect("ip")))
        );
        assert_eq!(
            San::parse("Node-1.Example").ok(),
            Some(San::Dns("node-1.example".into()))
        );
        assert!(San::parse("").is_err());
        assert!(San::parse("a b").is_err());
    }

    #[test]
    fn token_shape() {
        let t = generate_token().expect("token");
        assert_eq!(t.len(), 43);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(t, generate_token().expect("token"));
    }

    #[test]
    fn wanted_sans_dedup() {
        let w = wanted_sans(&["LOCALHOST".into(), "127.0.0.1".into(), "x".into()]).expect("sans");
        assert_eq!(w.len(), DEFAULT_SANS.len() + 1);
    }
}
