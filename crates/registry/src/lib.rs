//! A client of the OCI distribution API (Docker Registry HTTP API v2): the `/v2/` ping, the
//! WWW-Authenticate challenge (Bearer token or Basic), manifests and indexes by tag or digest
//! (verified), blobs as byte streams, blob existence checks, cross-repository mounts, uploads
//! and manifest pushes. Credentials come from Docker's `config.json` (`auths`).
//!
//! Written on reqwest rather than through oci-client: berth needs the blob as a stream it can
//! hash, store and unpack while the bytes arrive, per-layer progress, and the upload steps one
//! by one (HEAD, mount, upload) to report them as Docker does; oci-client buffers or hides those.
//! It owns no storage: callers decide where bytes go.

mod auth;
mod config;

use std::sync::Mutex;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use image::{Digest, Reference};
use reqwest::{header, Method, StatusCode};

pub use auth::Credentials;
/// An upload body (a stream of the blob's bytes).
pub use reqwest::Body;
pub use config::{load_credentials, remove_credentials, store_credentials, DockerConfig};

/// Media types of manifests this client asks for and understands.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Get \"{url}\": {cause}")]
    Unreachable { url: String, cause: String },
    #[error("unauthorized: authentication required to access {registry}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Unauthorized { registry: String, message: String },
    #[error("manifest for {reference} not found: manifest unknown: {message}")]
    ManifestUnknown { reference: String, message: String },
    #[error("blob {digest} not found in {repository}")]
    BlobUnknown { repository: String, digest: String },
    #[error("manifest for {reference} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { reference: String, expected: String, actual: String },
    #[error("registry {registry}: {status}: {message}")]
    Status { registry: String, status: u16, message: String },
    #[error("registry {registry}: {message}")]
    Protocol { registry: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A manifest (or index) as the registry sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// A blob being downloaded: its size (when the registry says) and its bytes as they arrive.
pub struct Blob {
    pub size: Option<u64>,
    pub stream: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Registries (`host[:port]`) spoken to over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
}

/// One client for every registry; bearer tokens are cached per registry and scope.
pub struct Client {
    http: reqwest::Client,
    options: Options,
    tokens: Mutex<std::collections::HashMap<(String, String), String>>,
}

/// The host a registry's API is on: Docker Hub's API is not at docker.io itself.
pub fn api_host(domain: &str) -> &str {
    match domain {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h).unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    pub fn new(options: Options) -> Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| Error::Protocol { registry: String::new(), message: format!("building the HTTP client: {e}") })?;
        Ok(Client { http, options, tokens: Mutex::new(Default::default()) })
    }

    /// `http://` for loopback and `--insecure-registry` hosts, `https://` for the rest.
    pub fn base_url(&self, domain: &str) -> String {
        let host = api_host(domain);
        let plain = is_loopback(host) || self.options.insecure_registries.iter().any(|r| r == host || r == domain);
        format!("{}://{host}", if plain { "http" } else { "https" })
    }

    /// Sends a request, answering an auth challenge once (Bearer token for `scope`, or Basic).
    async fn send(&self, domain: &str, scope: &str, creds: Option<&Credentials>, build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let key = (domain.to_string(), scope.to_string());
        let cached = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        let first = build(&self.http);
        let first = match &cached {
            Some(token) => first.bearer_auth(token),
            None => first,
        };
        let resp = self.execute(domain, first).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp.headers().get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(auth::Challenge::parse);
        let retry = build(&self.http);
        let retry = match challenge {
            Some(auth::Challenge::Bearer { realm, service }) => {
                let token = self.token(domain, &realm, service.as_deref(), scope, creds).await?;
                if let Ok(mut t) = self.tokens.lock() {
                    t.insert(key, token.clone());
                }
                retry.bearer_auth(token)
            }
            Some(auth::Challenge::Basic) => match creds {
                Some(c) => retry.basic_auth(&c.username, Some(&c.password)),
                None => return Err(Error::Unauthorized { registry: domain.to_string(), message: "no credentials (berth login)".into() }),
            },
            None => return Err(Error::Unauthorized { registry: domain.to_string(), message: error_message(resp).await }),
        };
        let resp = self.execute(domain, retry).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(Error::Unauthorized { registry: domain.to_string(), message: error_message(resp).await });
        }
        Ok(resp)
    }

    async fn execute(&self, domain: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        req.send().await.map_err(|e| {
            let url = e.url().map(|u| u.to_string()).unwrap_or_else(|| self.base_url(domain));
            Error::Unreachable { url, cause: root_cause(&e) }
        })
    }

    /// A bearer token from the challenge's realm (with Basic credentials when we have them).
    async fn token(&self, domain: &str, realm: &str, service: Option<&str>, scope: &str, creds: Option<&Credentials>) -> Result<String> {
        let mut req = self.http.get(realm).query(&[("scope", scope)]);
        if let Some(s) = service {
            req = req.query(&[("service", s)]);
        }
        if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = self.execute(domain, req).await?;
        if !resp.status().is_success() {
            return Err(Error::Unauthorized { registry: domain.to_string(), message: error_message(resp).await });
        }
        let raw = resp.bytes().await.map_err(|e| Error::Protocol { registry: domain.to_string(), message: format!("token response: {e}") })?;
        let body: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| Error::Protocol { registry: domain.to_string(), message: format!("token response: {e}") })?;
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .map(String::from)
            .ok_or_else(|| Error::Protocol { registry: domain.to_string(), message: "token response without a token".into() })
    }

    /// Checks that the registry answers and that the credentials are accepted (`berth login`).
    pub async fn ping(&self, domain: &str, creds: Option<&Credentials>) -> Result<()> {
        let url = format!("{}/v2/", self.base_url(domain));
        let resp = self.send(domain, "registry:catalog:*", creds, |h| h.get(&url)).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(domain, resp).await)
        }
    }

    /// The manifest or index `reference` names, verified against the digest asked for (or the
    /// one the registry states).
    pub async fn manifest(&self, reference: &Reference, creds: Option<&Credentials>) -> Result<Manifest> {
        let target = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        self.manifest_at(reference, &target, creds).await
    }

    /// A manifest of `reference`'s repository by digest (an index entry).
    pub async fn manifest_by_digest(&self, reference: &Reference, digest: &Digest, creds: Option<&Credentials>) -> Result<Manifest> {
        let pinned = reference.with_digest(digest);
        self.manifest_at(&pinned, &digest.to_string(), creds).await
    }

    async fn manifest_at(&self, reference: &Reference, target: &str, creds: Option<&Credentials>) -> Result<Manifest> {
        let url = format!("{}/v2/{}/manifests/{target}", self.base_url(&reference.domain), reference.path);
        let accept = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST].join(", ");
        let scope = format!("repository:{}:pull", reference.path);
        let resp = self.send(&reference.domain, &scope, creds, |h| h.get(&url).header(header::ACCEPT, &accept)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            let message = error_message(resp).await;
            return Err(Error::ManifestUnknown { reference: reference.familiar(), message: if message.is_empty() { "manifest unknown".into() } else { message } });
        }
        if !resp.status().is_success() {
            return Err(status_error(&reference.domain, resp).await);
        }
        let stated: Option<Digest> = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
        let media_type = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let bytes = resp.bytes().await.map_err(|e| Error::Unreachable { url: url.clone(), cause: root_cause(&e) })?.to_vec();
        let digest = Digest::sha256_of(&bytes);
        let expected = reference.digest.clone().or(stated);
        if let Some(want) = expected {
            if want != digest {
                return Err(Error::DigestMismatch { reference: reference.familiar(), expected: want.to_string(), actual: digest.to_string() });
            }
        }
        // Old registries send text/plain: the document's own mediaType then decides.
        let media_type = match media_type.filter(|m| m.starts_with("application/vnd.")) {
            Some(m) => m,
            None => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(String::from))
                .unwrap_or_else(|| OCI_MANIFEST.to_string()),
        };
        Ok(Manifest { bytes, media_type, digest })
    }

    /// A blob's bytes as they arrive (the caller verifies the digest while consuming them).
    pub async fn blob(&self, reference: &Reference, digest: &Digest, creds: Option<&Credentials>) -> Result<Blob> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base_url(&reference.domain), reference.path);
        let scope = format!("repository:{}:pull", reference.path);
        let resp = self.send(&reference.domain, &scope, creds, |h| h.get(&url)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::BlobUnknown { repository: reference.repository(), digest: digest.to_string() });
        }
        if !resp.status().is_success() {
            return Err(status_error(&reference.domain, resp).await);
        }
        let size = resp.content_length();
        let stream = resp.bytes_stream().map(move |r| r.map_err(|e| Error::Unreachable { url: url.clone(), cause: root_cause(&e) }));
        Ok(Blob { size, stream: Box::pin(stream) })
    }

    /// Whether the repository already has the blob (a push skips it).
    pub async fn blob_exists(&self, reference: &Reference, digest: &Digest, creds: Option<&Credentials>) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base_url(&reference.domain), reference.path);
        let scope = format!("repository:{}:pull,push", reference.path);
        let resp = self.send(&reference.domain, &scope, creds, |h| h.head(&url)).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&reference.domain, resp).await),
        }
    }

    /// Asks the registry to link a blob from another repository of the same registry; false
    /// when it would not (the caller uploads instead).
    pub async fn mount_blob(&self, reference: &Reference, digest: &Digest, from: &str, creds: Option<&Credentials>) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base_url(&reference.domain), reference.path);
        let scope = format!("repository:{}:pull,push repository:{from}:pull", reference.path);
        let query = [("mount", digest.to_string()), ("from", from.to_string())];
        let resp = self.send(&reference.domain, &scope, creds, |h| h.post(&url).query(&query).header(header::CONTENT_LENGTH, "0")).await?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            // 202: the registry opened an upload session instead; it expires unused.
            s if s.is_success() => Ok(false),
            _ => Err(status_error(&reference.domain, resp).await),
        }
    }

    /// Uploads a blob: one monolithic streamed PUT when it is at most `chunk` bytes, else a
    /// chunked upload (PATCHes of `chunk` bytes with Content-Range, then the closing PUT), which
    /// registries with request-size limits need. `body(offset, len)` streams that range.
    pub async fn upload_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        chunk: u64,
        body: impl Fn(u64, u64) -> reqwest::Body,
        creds: Option<&Credentials>,
    ) -> Result<()> {
        let base = self.base_url(&reference.domain);
        let url = format!("{base}/v2/{}/blobs/uploads/", reference.path);
        let scope = format!("repository:{}:pull,push", reference.path);
        let resp = self.send(&reference.domain, &scope, creds, |h| h.post(&url).header(header::CONTENT_LENGTH, "0")).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(&reference.domain, resp).await);
        }
        let mut location = self.location(&reference.domain, &base, &resp)?;
        let chunk = chunk.max(1);
        let monolithic = size <= chunk;
        let mut offset = 0;
        while !monolithic && offset < size {
            let len = chunk.min(size - offset);
            let at = location.clone();
            let resp = self
                .send(&reference.domain, &scope, creds, |h| {
                    h.request(Method::PATCH, at.clone())
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .header(header::CONTENT_LENGTH, len)
                        .header(header::CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                        .body(body(offset, len))
                })
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(status_error(&reference.domain, resp).await);
            }
            location = self.location(&reference.domain, &base, &resp)?;
            offset += len;
        }
        location.query_pairs_mut().append_pair("digest", &digest.to_string());
        let resp = self
            .send(&reference.domain, &scope, creds, |h| {
                let req = h.request(Method::PUT, location.clone()).header(header::CONTENT_TYPE, "application/octet-stream");
                if monolithic {
                    req.header(header::CONTENT_LENGTH, size).body(body(0, size))
                } else {
                    req.header(header::CONTENT_LENGTH, 0)
                }
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&reference.domain, resp).await);
        }
        Ok(())
    }

    /// The upload session's next URL (relative Locations are resolved against the registry).
    fn location(&self, domain: &str, base: &str, resp: &reqwest::Response) -> Result<reqwest::Url> {
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol { registry: domain.to_string(), message: "upload session without a Location".into() })?;
        reqwest::Url::parse(base)
            .and_then(|b| b.join(location))
            .map_err(|e| Error::Protocol { registry: domain.to_string(), message: format!("upload location {location:?}: {e}") })
    }

    /// Puts a manifest under a tag (or its digest); returns the digest the registry stored.
    pub async fn put_manifest(&self, reference: &Reference, target: &str, bytes: Vec<u8>, media_type: &str, creds: Option<&Credentials>) -> Result<Digest> {
        let url = format!("{}/v2/{}/manifests/{target}", self.base_url(&reference.domain), reference.path);
        let scope = format!("repository:{}:pull,push", reference.path);
        let resp = self.send(&reference.domain, &scope, creds, |h| h.put(&url).header(header::CONTENT_TYPE, media_type).body(bytes.clone())).await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(status_error(&reference.domain, resp).await);
        }
        Ok(Digest::sha256_of(&bytes))
    }
}

/// The innermost cause of a transport error ("connection refused"), as one line.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The registry's error text: `{"errors":[{"code":"…","message":"…"}]}` or the raw body.
async fn error_message(resp: reqwest::Response) -> String {
    let body = resp.bytes().await.unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let Some(errors) = v["errors"].as_array() {
            let msgs: Vec<String> = errors.iter().filter_map(|e| e["message"].as_str().map(String::from)).collect();
            if !msgs.is_empty() {
                return msgs.join("; ");
            }
        }
    }
    String::from_utf8_lossy(&body).trim().chars().take(300).collect()
}

async fn status_error(registry: &str, resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    Error::Status { registry: registry.to_string(), status, message: error_message(resp).await }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_registries_speak_plain_http() {
        let c = Client::new(Options { insecure_registries: vec!["reg.lan:5000".into()] }).expect("client");
        assert_eq!(c.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(c.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(c.base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(c.base_url("reg.lan:5000"), "http://reg.lan:5000");
        assert_eq!(c.base_url("docker.io"), "https://registry-1.docker.io");
        assert_eq!(c.base_url("quay.io"), "https://quay.io");
    }
}
