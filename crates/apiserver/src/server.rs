//! HTTP(S) serving: TLS with optional client certificates, authentication (client certificate
//! or bearer token), authorization (RBAC), routing to discovery, OpenAPI and the resources.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use serde_json::Value;

use crate::rbac::{Attributes, User};
use crate::rest::{self, Api, Body, Reply};
use crate::status::ApiError;
use crate::{discovery, rbac};

pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Who may call: static bearer tokens (the admin's) and service account tokens map to users;
/// client certificates are checked by TLS and mapped in `serve`.
#[derive(Default)]
pub struct Authenticator {
    /// Bearer token → user.
    pub tokens: HashMap<String, User>,
    /// Signs and verifies service account tokens.
    pub sa_key: Vec<u8>,
}

pub struct Server {
    pub api: Arc<Api>,
    pub auth: Authenticator,
}

fn json_response(code: u16, v: &Value, warnings: &[String]) -> Response<ResponseBody> {
    let mut b = Response::builder().status(code).header("Content-Type", "application/json");
    for w in warnings {
        b = b.header("Warning", format!("299 - \"{}\"", w.replace('"', "\\\"")));
    }
    b.body(Full::new(Bytes::from(v.to_string())).boxed()).unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn text(code: u16, body: &'static str) -> Response<ResponseBody> {
    Response::builder()
        .status(code)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error(e: &ApiError) -> Response<ResponseBody> {
    json_response(e.code, &e.to_status(), &[])
}

fn reply(r: Reply) -> Response<ResponseBody> {
    match r.body {
        Body::Json(v) => json_response(r.code, &v, &r.warnings),
        Body::Stream(rx) => {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx)) });
            Response::builder()
                .status(200)
                .header("Content-Type", "application/json")
                .body(StreamBody::new(stream).boxed())
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
        }
    }
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in uri.query().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k), percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request body, at most `MAX_BODY`. A larger one is read to its end (up to 64 MiB) and
/// discarded, so the client reads the 413 instead of a reset stream.
async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total <= rest::MAX_BODY {
                buf.extend_from_slice(&data);
            } else if total > 64 << 20 {
                break;
            }
        }
    }
    if total > rest::MAX_BODY {
        return Err(ApiError::too_large());
    }
    Ok(buf.freeze())
}

impl Server {
    fn authenticate(&self, req: &Request<Incoming>, cert_user: Option<&User>) -> Option<User> {
        if let Some(token) = req.headers().get("authorization").and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer ")) {
            let token = token.trim();
            if let Some(u) = self.auth.tokens.get(token) {
                return Some(u.clone());
            }
            let claims = crate::tokens::verify(&self.auth.sa_key, token)?;
            // Only while the service account it names still exists (same uid).
            let sa = &claims["kubernetes.io"]["serviceaccount"];
            let key = format!("/registry/core/serviceaccounts/{}/{}", claims["kubernetes.io"]["namespace"].as_str()?, sa["name"].as_str()?);
            let live = self.api.cache.get(&key)?;
            return (live.value["metadata"]["uid"] == sa["uid"]).then(|| crate::tokens::user_of(&claims)).flatten();
        }
        cert_user.cloned()
    }

    /// `Impersonate-User` / `Impersonate-Group` (kubectl `--as`, `--as-group`): allowed to those
    /// RBAC lets `impersonate` users (and groups), as upstream.
    fn impersonate(&self, req: &Request<Incoming>, user: User) -> Result<User, ApiError> {
        let headers = req.headers();
        let Some(name) = headers.get("impersonate-user").and_then(|h| h.to_str().ok()) else { return Ok(user) };
        let groups: Vec<String> = headers.get_all("impersonate-group").iter().filter_map(|h| h.to_str().ok().map(String::from)).collect();
        let check = |resource: &str, target: &str| {
            let a = rbac::Attributes { verb: "impersonate", group: "", resource, subresource: "", namespace: "", name: target };
            if rbac::authorize(&self.api.cache, &user, &a) { Ok(()) } else { Err(rbac::forbidden(&user, &a)) }
        };
        check("users", name)?;
        for g in &groups {
            check("groups", g)?;
        }
        let mut groups = groups;
        groups.push("system:authenticated".into());
        Ok(User { name: name.to_string(), groups })
    }

    /// One request, end to end.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, cert_user: Option<User>) -> Response<ResponseBody> {
        let path = req.uri().path().to_string();
        let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        // Health and version are public, as upstream's system:public-info-viewer makes them.
        match segs.as_slice() {
            ["healthz", ..] | ["livez", ..] | ["readyz", ..] => return text(200, "ok"),
            ["version"] => return json_response(200, &discovery::version(), &[]),
            _ => {}
        }
        let Some(user) = self.authenticate(&req, cert_user.as_ref()) else {
            return error(&ApiError::unauthorized());
        };
        let user = match self.impersonate(&req, user) {
            Ok(u) => u,
            Err(e) => return error(&e),
        };
        let started = std::time::Instant::now();
        let method = req.method().as_str().to_string();
        let response = match self.route(req, &segs, &user).await {
            Ok(r) => reply(r),
            Err(e) => error(&e),
        };
        tracing::debug!(%method, %path, user = %user.name, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
        response
    }

    async fn route(&self, req: Request<Incoming>, segs: &[&str], user: &User) -> Result<Reply, ApiError> {
        let ok = |v: Option<Value>, path: &str| v.map(|v| Reply::json(200, v)).ok_or_else(|| ApiError::path_not_found(path));
        let path = format!("/{}", segs.join("/"));
        let get_only = req.method() == hyper::Method::GET;
        match segs {
            [] if get_only => return Ok(Reply::json(200, serde_json::json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]}))),
            ["api"] if get_only => return Ok(Reply::json(200, discovery::api_versions())),
            ["api", "v1"] if get_only => return ok(discovery::resource_list("", "v1"), &path),
            ["apis"] if get_only => return Ok(Reply::json(200, discovery::api_groups())),
            ["apis", g] if get_only => return ok(discovery::api_group(g), &path),
            ["apis", g, v] if get_only => return ok(discovery::resource_list(g, v), &path),
            ["openapi", "v3"] if get_only => return Ok(Reply::json(200, discovery::openapi_index())),
            ["openapi", "v3", "api", v] if get_only => return ok(discovery::openapi_document("", v), &path),
            ["openapi", "v3", "apis", g, v] if get_only => return ok(discovery::openapi_document(g, v), &path),
            _ => {}
        }
        if let ["apis", g, v, resource] = segs {
            if req.method() == hyper::Method::POST && crate::reviews::REVIEWS.iter().any(|r| r.0 == *g && r.1 == *v && r.2 == *resource) {
                let resource = resource.to_string();
                let protobuf = req.headers().get("content-type").and_then(|h| h.to_str().ok()).is_some_and(|c| c.starts_with(crate::proto::CONTENT_TYPE));
                let body = read_body(req.into_body()).await?;
                let doc: Value = if protobuf {
                    crate::proto::decode_object(&body).map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as protobuf: {e}")))?
                } else {
                    serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))?
                };
                return crate::reviews::answer(&self.api.cache, user, &resource, &doc).map(|v| Reply::json(201, v));
            }
        }
        let target = match segs {
            ["api", "v1", rest @ ..] => rest::target("", "v1", rest),
            ["apis", g, v, rest @ ..] => rest::target(g, v, rest),
            _ => None,
        }
        .ok_or_else(|| ApiError::path_not_found(&path))?;
        let q = query(req.uri());
        let method = req.method().clone();
        let is_watch = target.watch_prefix || q.get("watch").is_some_and(|w| w == "true" || w == "1");
        let verb = match (method.as_str(), target.name.is_some()) {
            ("GET", _) if is_watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", false) => "create",
            ("POST", true) if target.sub.as_deref() == Some("token") && target.kind.kind == "ServiceAccount" => "create",
            ("PUT", true) => "update",
            ("PATCH", true) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            (m, _) => return Err(ApiError::method_not_allowed(format!("the server does not allow this method on the requested resource ({m} {path})"))),
        };
        let attrs = Attributes {
            verb,
            group: target.kind.group,
            resource: target.kind.plural,
            subresource: target.sub.as_deref().unwrap_or_default(),
            namespace: target.namespace.as_deref().unwrap_or_default(),
            name: target.name.as_deref().unwrap_or_default(),
        };
        if !rbac::authorize(&self.api.cache, user, &attrs) {
            return Err(rbac::forbidden(user, &attrs));
        }
        if let Some(sub) = target.sub.as_deref() {
            let allowed = (sub == "status" && target.kind.status)
                || (sub == "scale" && target.kind.scale)
                || (sub == "finalize" && target.kind.kind == "Namespace")
                || (sub == "token" && target.kind.kind == "ServiceAccount");
            if !allowed {
                return Err(ApiError::path_not_found(&path));
            }
        }
        let headers = req.headers();
        let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
        let (accept, content_type) = (header("accept"), header("content-type"));
        let body = read_body(req.into_body()).await?;
        let request = rest::Request { method: method.to_string(), query: q, accept, content_type, body };
        let api = &self.api;
        match verb {
            "watch" => api.watch(&target, &request).await,
            "get" if target.sub.as_deref() == Some("scale") => api.get_scale(&target).await.map(|v| Reply::json(200, v)),
            "get" => api.get(&target).await.map(|v| {
                if request.accept.split(',').next().is_some_and(|a| a.contains("as=Table")) {
                    Reply::json(200, crate::table::table(target.kind, &[&v], v["metadata"]["resourceVersion"].as_str().unwrap_or_default(), None, true))
                } else {
                    Reply::json(200, v)
                }
            }),
            "list" => api.list(&target, &request).await,
            "create" if target.sub.is_some() => api.create_token(&target, &request, &self.auth.sa_key).await,
            "create" => api.create(&target, &request).await,
            "update" if target.sub.as_deref() == Some("finalize") => api.update(&rest::Target { sub: None, ..target.clone() }, &request).await,
            "update" => api.update(&target, &request).await,
            "patch" => api.patch(&target, &request).await,
            "delete" => api.delete(&target, &request).await,
            _ => api.delete_collection(&target, &request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let q = query(&"/x?labelSelector=tier%20in%20(a%2Cb)&watch=true&fieldSelector=metadata.name%3Dc".parse().expect("uri"));
        assert_eq!(q["labelSelector"], "tier in (a,b)");
        assert_eq!(q["fieldSelector"], "metadata.name=c");
        assert_eq!(q["watch"], "true");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
