//! The REST semantics of every resource: paths, get, list (selectors, paging, tables), watch,
//! create, update, patch (JSON, merge, strategic, apply), delete (finalizers, propagation,
//! graceful pods, namespaces) and the status and scale subresources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use store::{Revision, Store, StoreError};
use tokio::sync::mpsc;

use crate::cache::{Cache, Change};
use crate::kinds::{self, Kind};
use resources::selector::{escape_field_value, FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::{table, validate};

/// Largest request body accepted (Kubernetes' limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Namespaces that exist from the start and cannot be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// What a handler answers: a JSON document or a stream of newline-delimited JSON (watch).
pub enum Body {
    Json(Value),
    Stream(mpsc::Receiver<Bytes>),
}

pub struct Reply {
    pub code: u16,
    pub body: Body,
    /// `Warning` headers (fieldValidation=Warn).
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn json(code: u16, v: Value) -> Reply {
        Reply { code, body: Body::Json(v), warnings: Vec::new() }
    }
}

/// A request, already authenticated and authorized.
pub struct Request {
    pub method: String,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub body: Bytes,
}

/// A resource path: the kind, its namespace, name and subresource.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    /// Under the deprecated `/watch/` prefix.
    pub watch_prefix: bool,
}

/// Parses the segments after `/api/v1` or `/apis/{group}/{version}`.
pub fn target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let (watch_prefix, rest) = match rest.first() {
        Some(&"watch") => (true, &rest[1..]),
        _ => (false, rest),
    };
    let find = |plural: &str| kinds::find(group, version, plural);
    let t = |kind, namespace: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
        kind,
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        sub: sub.map(String::from),
        watch_prefix,
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|k| k.namespaced) => {
            let kind = find(plural)?;
            match tail {
                [] => Some(t(kind, Some(ns), None, None)),
                [name] => Some(t(kind, Some(ns), Some(name), None)),
                [name, sub] => Some(t(kind, Some(ns), Some(name), Some(sub))),
                _ => None,
            }
        }
        [plural, tail @ ..] => {
            let kind = find(plural)?;
            match tail {
                [] => Some(t(kind, None, None, None)),
                [name] if !kind.namespaced => Some(t(kind, None, Some(name), None)),
                [name, sub] if !kind.namespaced => Some(t(kind, None, Some(name), Some(sub))),
                _ => None,
            }
        }
        _ => None,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_uid() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The object as clients see it: `resourceVersion` is the datastore revision of its last write.
fn decode(kv: &store::KeyValue) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    v["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(v)
}

fn with_rv(v: &Value, rv: Revision) -> Value {
    let mut v = v.clone();
    v["metadata"]["resourceVersion"] = json!(rv.to_string());
    v
}

fn encode(v: &Value) -> ApiResult<Vec<u8>> {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&v).map_err(|e| ApiError::internal(e.to_string()))
}

fn parse_body(req: &Request) -> ApiResult<Value> {
    if req.body.len() > MAX_BODY {
        return Err(ApiError::too_large());
    }
    if req.content_type.starts_with(crate::proto::CONTENT_TYPE) {
        return crate::proto::decode_object(&req.body).map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as protobuf: {e}")));
    }
    if req.content_type.contains("yaml") {
        serde_yaml::from_slice::<Value>(&req.body).map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(&req.body).map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))
    }
}

fn rv_of(v: &Value) -> Option<Revision> {
    v["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()).and_then(|s| s.parse().ok())
}

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v["metadata"][field].as_str().unwrap_or_default()
}

/// How unknown fields are treated (`fieldValidation`); Warn when not given, as upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    Strict,
    Warn,
    Ignore,
}

fn strictness(q: &HashMap<String, String>) -> ApiResult<Strictness> {
    match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(Strictness::Warn),
        Some("Strict") => Ok(Strictness::Strict),
        Some("Ignore") => Ok(Strictness::Ignore),
        Some(other) => Err(ApiError::bad_request(format!("fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"))),
    }
}

fn dry_run(q: &HashMap<String, String>) -> bool {
    q.get("dryRun").is_some_and(|v| v == "All")
}

fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// Continue tokens: the revision of the first page and the last key served.
fn continue_token(rv: Revision, key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(json!({"rv": rv, "start": key}).to_string())
}

fn parse_continue(token: &str) -> ApiResult<(Revision, String)> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((v["rv"].as_i64().ok_or_else(bad)?, v["start"].as_str().ok_or_else(bad)?.to_string()))
}

/// The API over a datastore and its watch cache.
pub struct Api {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
}

struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    fn parse(kind: &Kind, q: &HashMap<String, String>) -> ApiResult<Selectors> {
        let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or_default()).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or_default()).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if let Some(f) = fields.fields().find(|f| !kind.supports_field(f)) {
            return Err(ApiError::bad_request(format!("field label not supported: {f}")));
        }
        Ok(Selectors { labels, fields })
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_json(obj["metadata"]["labels"].as_object()) && self.fields.matches_json(obj)
    }
}

impl Api {
    pub async fn get(&self, t: &Target) -> ApiResult<Value> {
        let name = t.name.as_deref().unwrap_or_default();
        let kv = self.store.get(&t.kind.key(t.namespace.as_deref(), name)).await?.ok_or_else(|| ApiError::not_found(t.kind, name))?;
        decode(&kv)
    }

    /// `GET` of a collection: from the cache, filtered, paged, as a list or a Table.
    pub async fn list(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let sel = Selectors::parse(t.kind, &req.query)?;
        let limit: Option<usize> = req.query.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0);
        let prefix = t.kind.namespace_prefix(t.namespace.as_deref());
        let (items, revision, more_after) = match req.query.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let (rv, start) = parse_continue(token)?;
                self.page_from_store(&prefix, rv, &start, limit, &sel).await?
            }
            None => {
                // resourceVersion=0: any state will do; otherwise a consistent (fresh) read.
                if req.query.get("resourceVersion").is_none_or(|rv| rv != "0") {
                    self.cache.fresh().await?;
                }
                let (all, revision) = self.cache.list(&prefix);
                let mut out = Vec::new();
                let mut last = None;
                for o in all.iter().filter(|o| sel.matches(&o.value)) {
                    if limit.is_some_and(|l| out.len() >= l) {
                        break;
                    }
                    last = Some(o.key.clone());
                    out.push(with_rv(&o.value, o.mod_revision));
                }
                let more = limit.is_some_and(|l| out.len() >= l) && all.iter().filter(|o| sel.matches(&o.value)).count() > out.len();
                (out, revision, if more { last } else { None })
            }
        };
        let token = more_after.map(|k| continue_token(revision, &k));
        if wants_table(&req.accept) {
            let refs: Vec<&Value> = items.iter().collect();
            return Ok(Reply::json(200, table::table(t.kind, &refs, &revision.to_string(), token.as_deref(), true)));
        }
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if let Some(tok) = token {
            meta["continue"] = json!(tok);
        }
        Ok(Reply::json(200, json!({"kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version(), "metadata": meta, "items": items})))
    }

    /// A later page: read from the datastore at the first page's revision (consistent paging
    /// even while the cache moves on).
    async fn page_from_store(&self, prefix: &str, rv: Revision, start: &str, limit: Option<usize>, sel: &Selectors) -> ApiResult<(Vec<Value>, Revision, Option<String>)> {
        let mut out = Vec::new();
        let mut after = start.to_string();
        loop {
            let opts = store::ListOptions { revision: rv, start_after: Some(after.clone()), limit: Some(limit.unwrap_or(500).max(100)) };
            let page = self.store.list(prefix, &opts).await.map_err(|e| match e {
                StoreError::Compacted { .. } => ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."),
                other => other.into(),
            })?;
            for kv in &page.items {
                after = kv.key.clone();
                let v = decode(kv)?;
                if sel.matches(&v) {
                    out.push(v);
                    if limit.is_some_and(|l| out.len() >= l) {
                        let more = page.more || kv.key != page.items.last().map(|k| k.key.clone()).unwrap_or_default();
                        return Ok((out, rv, more.then_some(after)));
                    }
                }
            }
            if !page.more {
                return Ok((out, rv, None));
            }
        }
    }

    /// `?watch=true`: newline-delimited events, from the cache.
    pub async fn watch(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let mut sel = Selectors::parse(t.kind, &req.query)?;
        if let Some(name) = &t.name {
            // The deprecated single-object watch path.
            sel.fields = FieldSelector::parse(&format!("metadata.name={}", escape_field_value(name))).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        let table = wants_table(&req.accept);
        let bookmarks = req.query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
        let timeout = req.query.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).map(Duration::from_secs).unwrap_or(Duration::from_secs(1800));
        let prefix = t.kind.namespace_prefix(t.namespace.as_deref());
        let rv_param = req.query.get("resourceVersion").cloned().unwrap_or_default();
        let send_initial = rv_param.is_empty() || rv_param == "0" || req.query.get("sendInitialEvents").is_some_and(|v| v == "true");
        let (initial, from) = if send_initial {
            if rv_param.is_empty() {
                self.cache.fresh().await?;
            }
            let (all, rev) = self.cache.list(&prefix);
            let initial: Vec<Value> = all.iter().filter(|o| sel.matches(&o.value)).map(|o| with_rv(&o.value, o.mod_revision)).collect();
            (initial, rev)
        } else {
            let rv: Revision = rv_param.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version {rv_param:?}")))?;
            (Vec::new(), rv)
        };
        let kind = t.kind;
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let sub = self.cache.subscribe(from);
        tokio::spawn(async move {
            let mut first = true;
            let mut emit = |kind_of: &str, obj: &Value| -> Bytes {
                let object = if table && kind_of != "BOOKMARK" && kind_of != "ERROR" {
                    let t = table::table(kind, &[obj], meta_str(obj, "resourceVersion"), None, first);
                    first = false;
                    t
                } else {
                    obj.clone()
                };
                let mut line = json!({"type": kind_of, "object": object}).to_string();
                line.push('\n');
                Bytes::from(line)
            };
            let mut sub = match sub {
                Ok(s) => s,
                Err(e) => {
                    // Too old: one ERROR event carrying 410, as upstream.
                    let _ = tx.send(emit("ERROR", &e.to_status())).await;
                    return;
                }
            };
            for obj in &initial {
                if tx.send(emit("ADDED", obj)).await.is_err() {
                    return;
                }
            }
            let mut last = from;
            let deadline = tokio::time::Instant::now() + timeout;
            let mut backlog = std::mem::take(&mut sub.backlog).into_iter();
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            // Events that are ready go out together: one write (and one TLS record) for many
            // events, rather than one per event, when a watcher has a burst to catch up on.
            let mut pending: Vec<u8> = Vec::new();
            loop {
                let ready = match backlog.next() {
                    Some(e) => Some(e),
                    None => match sub.live.try_recv() {
                        Ok(e) => Some(e),
                        Err(tokio::sync::broadcast::error::TryRecvError::Empty) => None,
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                            let gone = ApiError::gone(format!("too old resource version: {last}: the watch fell behind"));
                            let _ = tx.send(emit("ERROR", &gone.to_status())).await;
                            return;
                        }
                        Err(tokio::sync::broadcast::error::TryRecvError::Closed) => return,
                    },
                };
                let ev = match ready {
                    Some(e) => e,
                    None if !pending.is_empty() => {
                        if tx.send(Bytes::from(std::mem::take(&mut pending))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    None => tokio::select! {
                        r = sub.live.recv() => match r {
                            Ok(e) => e,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                let gone = ApiError::gone(format!("too old resource version: {last}: the watch fell behind"));
                                let _ = tx.send(emit("ERROR", &gone.to_status())).await;
                                return;
                            }
                            Err(_) => return,
                        },
                        _ = tick.tick() => {
                            if bookmarks {
                                let b = json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": {"resourceVersion": last.to_string()}});
                                if tx.send(emit("BOOKMARK", &b)).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = tx.closed() => return,
                    },
                };
                if ev.revision <= last || !ev.obj.key.starts_with(&prefix) {
                    continue;
                }
                last = ev.revision;
                let now_matches = ev.change != Change::Deleted && sel.matches(&ev.obj.value);
                let was_matching = ev.prev.as_ref().is_some_and(|p| sel.matches(&p.value));
                let kind_of = match (ev.change, was_matching, now_matches) {
                    (Change::Deleted, true, _) => "DELETED",
                    (Change::Deleted, false, _) => continue,
                    (_, true, true) => "MODIFIED",
                    (_, false, true) => "ADDED",
                    // Stopped matching the selector: gone from this watcher's view.
                    (_, true, false) => "DELETED",
                    (_, false, false) => continue,
                };
                if table {
                    pending.extend_from_slice(&emit(kind_of, &with_rv(&ev.obj.value, ev.revision)));
                } else {
                    // The shared serialization: one per change, not one per watcher.
                    pending.extend_from_slice(b"{\"type\":\"");
                    pending.extend_from_slice(kind_of.as_bytes());
                    pending.extend_from_slice(b"\",\"object\":");
                    pending.extend_from_slice(ev.object_json().as_bytes());
                    pending.extend_from_slice(b"}\n");
                }
                if pending.len() >= 256 * 1024 && tx.send(Bytes::from(std::mem::take(&mut pending))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Reply { code: 200, body: Body::Stream(rx), warnings: Vec::new() })
    }

    async fn namespace_ok(&self, ns: &str) -> ApiResult<()> {
        let nsk = kinds::by_kind("v1", "Namespace").ok_or_else(|| ApiError::internal("no namespace kind"))?;
        let kv = self.store.get(&nsk.key(None, ns)).await?.ok_or_else(|| ApiError::namespace_not_found(ns))?;
        let v = decode(&kv)?;
        if !v["metadata"]["deletionTimestamp"].is_null() {
            return Err(ApiError::forbidden(format!("unable to create new content in namespace {ns} because it is being terminated")));
        }
        Ok(())
    }

    /// Type check and unknown fields per `fieldValidation`; returns the object as its type has
    /// it (unknown fields dropped) and the warnings.
    fn check_types(kind: &Kind, obj: &Value, strict: Strictness) -> ApiResult<(Value, Vec<String>)> {
        let typed = (kind.typed)(obj).map_err(|e| ApiError::bad_request(format!("{} in version \"{}\" cannot be handled as a {}: {e}", kind.kind, kind.version, kind.kind)))?;
        let unknown = kinds::unknown_fields(obj, &typed);
        if unknown.is_empty() || strict == Strictness::Ignore {
            return Ok((typed, Vec::new()));
        }
        let msgs: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
        if strict == Strictness::Strict {
            return Err(ApiError::bad_request(format!("strict decoding error: {}", msgs.join(", "))));
        }
        Ok((typed, msgs))
    }

    fn check_identity(kind: &Kind, t: &Target, obj: &mut Value) -> ApiResult<()> {
        let av = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        let k = obj["kind"].as_str().unwrap_or_default().to_string();
        if !av.is_empty() && av != kind.api_version() {
            return Err(ApiError::bad_request(format!("the API version in the data ({av}) does not match the expected API version ({})", kind.api_version())));
        }
        if !k.is_empty() && k != kind.kind {
            return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({})", kind.kind)));
        }
        obj["apiVersion"] = json!(kind.api_version());
        obj["kind"] = json!(kind.kind);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if kind.namespaced {
            let ns = t.namespace.clone().unwrap_or_default();
            match obj["metadata"]["namespace"].as_str() {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        Ok(())
    }

    /// `POST` to a collection.
    pub async fn create(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let kind = t.kind;
        let mut obj = parse_body(req)?;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request must be a JSON object"));
        }
        Self::check_identity(kind, t, &mut obj)?;
        let (mut obj, warnings) = Self::check_types(kind, &obj, strictness(&req.query)?)?;
        self.create_object(t, &mut obj, dry_run(&req.query)).await.map(|v| Reply { code: 201, body: Body::Json(v), warnings })
    }

    /// Creation after decoding: names, defaults, server-set metadata, the write.
    pub async fn create_object(&self, t: &Target, obj: &mut Value, dry: bool) -> ApiResult<Value> {
        let kind = t.kind;
        if meta_str(obj, "name").is_empty() {
            let prefix = meta_str(obj, "generateName").to_string();
            if !prefix.is_empty() {
                obj["metadata"]["name"] = json!(validate::generate_name(&prefix));
            }
        }
        let name = meta_str(obj, "name").to_string();
        let causes = validate::object_meta(kind, obj);
        if !causes.is_empty() {
            return Err(ApiError::invalid(kind, &name, &causes));
        }
        if kind.namespaced {
            self.namespace_ok(t.namespace.as_deref().unwrap_or_default()).await?;
        }
        validate::defaults(kind, obj);
        let meta = obj["metadata"].as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now()));
        for server_owned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"] {
            meta.remove(server_owned);
        }
        if obj.get("spec").is_some() || kind.status {
            obj["metadata"]["generation"] = json!(1);
        }
        if kind.status && !matches!(kind.kind, "Namespace" | "Node" | "Pod") {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        if kind.kind == "Pod" {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        let key = kind.key(t.namespace.as_deref(), &name);
        if dry {
            if self.store.get(&key).await?.is_some() {
                return Err(ApiError::already_exists(kind, &name));
            }
            return Ok(obj.clone());
        }
        match self.store.create(&key, encode(obj)?).await {
            Ok(kv) => decode(&kv),
            Err(StoreError::AlreadyExists { .. }) => Err(ApiError::already_exists(kind, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Merges what an update may change into the current object: status only through /status,
    /// server-owned metadata kept, generation bumped on spec changes.
    fn prepare_update(kind: &Kind, sub: Option<&str>, new: Value, old: &Value) -> ApiResult<Value> {
        let mut obj = if sub == Some("status") {
            let mut o = old.clone();
            o["status"] = new["status"].clone();
            o
        } else {
            let mut o = new;
            if kind.status && kind.kind != "Namespace" {
                o["status"] = old["status"].clone();
                if o["status"].is_null() {
                    if let Some(m) = o.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            o
        };
        for keep in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match old["metadata"].get(keep) {
                Some(v) => obj["metadata"][keep] = v.clone(),
                None => {
                    if let Some(m) = obj["metadata"].as_object_mut() {
                        m.remove(keep);
                    }
                }
            }
        }
        if kind.kind == "Namespace" {
            obj["status"] = old["status"].clone();
        }
        let spec_changed = {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("metadata");
                    m.remove("status");
                }
                v
            };
            strip(&obj) != strip(old)
        };
        if spec_changed && !old["metadata"]["generation"].is_null() {
            obj["metadata"]["generation"] = json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
        }
        let name = meta_str(old, "name");
        if meta_str(&obj, "name") != name {
            return Err(ApiError::bad_request(format!("the name of the object ({}) does not match the name on the URL ({name})", meta_str(&obj, "name"))));
        }
        let mut causes = validate::object_meta(kind, &obj);
        causes.extend(validate::object_meta_update(&obj, old));
        causes.extend(validate::immutable(kind, &obj, old));
        if !causes.is_empty() {
            return Err(ApiError::invalid(kind, name, &causes));
        }
        Ok(obj)
    }

    /// Writes an update with compare-and-swap on `expected`; an object being deleted whose last
    /// finalizer went is deleted instead.
    async fn commit(&self, t: &Target, obj: Value, expected: Revision, dry: bool) -> ApiResult<Value> {
        let name = meta_str(&obj, "name").to_string();
        let key = t.kind.key(t.namespace.as_deref(), &name);
        if dry {
            return Ok(obj);
        }
        let finalized = !obj["metadata"]["deletionTimestamp"].is_null() && obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        let result = if finalized {
            self.store.delete(&key, Some(expected)).await.map(|kv| with_rv(&obj, kv.mod_revision))
        } else {
            self.store.update(&key, encode(&obj)?, expected).await.and_then(|kv| decode(&kv).map_err(|e| StoreError::Backend(e.message)))
        };
        match result {
            Ok(v) => Ok(v),
            Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(t.kind, &name)),
            Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(t.kind, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// `PUT` of an object (or its status).
    pub async fn update(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let kind = t.kind;
        if t.sub.as_deref() == Some("scale") {
            return self.update_scale(t, req).await;
        }
        let mut obj = parse_body(req)?;
        Self::check_identity(kind, t, &mut obj)?;
        let (obj, warnings) = Self::check_types(kind, &obj, strictness(&req.query)?)?;
        let current = self.get(t).await?;
        let current_rv = rv_of(&current).unwrap_or(0);
        if let Some(rv) = rv_of(&obj) {
            if rv != current_rv {
                return Err(ApiError::conflict(kind, t.name.as_deref().unwrap_or_default()));
            }
        }
        let mut merged = Self::prepare_update(kind, t.sub.as_deref(), obj, &current)?;
        validate::defaults(kind, &mut merged);
        let v = self.commit(t, merged, current_rv, dry_run(&req.query)).await?;
        Ok(Reply { code: 200, body: Body::Json(v), warnings })
    }

    /// `PATCH`: the four patch types, retried on a concurrent write (the patch is re-applied to
    /// the newer object, as upstream does).
    pub async fn patch(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let kind = t.kind;
        let patch_doc = parse_body(req)?;
        let ct = req.content_type.split(';').next().unwrap_or_default().trim().to_string();
        let strict = strictness(&req.query)?;
        if ct == "application/apply-patch+yaml" && req.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
            return Err(ApiError::bad_request("PATCH, fieldManager: Required value: is required for apply patch"));
        }
        for _attempt in 0..5 {
            let current = match self.get(t).await {
                Ok(c) => c,
                Err(e) if e.code == 404 && ct == "application/apply-patch+yaml" && t.sub.is_none() => {
                    // Server-side apply creates what does not exist.
                    let mut obj = patch_doc.clone();
                    Self::check_identity(kind, t, &mut obj)?;
                    if meta_str(&obj, "name").is_empty() {
                        obj["metadata"]["name"] = json!(t.name.clone().unwrap_or_default());
                    }
                    let (mut obj, warnings) = Self::check_types(kind, &obj, strict)?;
                    let v = self.create_object(t, &mut obj, dry_run(&req.query)).await?;
                    return Ok(Reply { code: 201, body: Body::Json(v), warnings });
                }
                Err(e) => return Err(e),
            };
            if t.sub.as_deref() == Some("scale") {
                let scale = scale_of(kind, &current);
                let patched = apply_patch(&ct, &scale, &patch_doc, None)?;
                return self.write_scale(t, &current, &patched, dry_run(&req.query)).await.map(|v| Reply::json(200, v));
            }
            let current_rv = rv_of(&current).unwrap_or(0);
            let mut patched = apply_patch(&ct, &current, &patch_doc, Some(kind))?;
            Self::check_identity(kind, t, &mut patched)?;
            let (patched, warnings) = Self::check_types(kind, &patched, strict)?;
            let mut merged = Self::prepare_update(kind, t.sub.as_deref(), patched, &current)?;
            validate::defaults(kind, &mut merged);
            match self.commit(t, merged, current_rv, dry_run(&req.query)).await {
                Ok(v) => return Ok(Reply { code: 200, body: Body::Json(v), warnings }),
                Err(e) if e.reason == "Conflict" && rv_of(&patch_doc).is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(kind, t.name.as_deref().unwrap_or_default()))
    }

    /// `POST serviceaccounts/NAME/token` (TokenRequest): a signed token for the account.
    pub async fn create_token(&self, t: &Target, req: &Request, key: &[u8]) -> ApiResult<Reply> {
        let sa = self.get(&Target { sub: None, ..t.clone() }).await?;
        let body = if req.body.is_empty() { json!({}) } else { parse_body(req)? };
        let seconds = body["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
        if seconds < 600 {
            return Err(ApiError::bad_request("spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes"));
        }
        let audiences: Vec<String> = body["spec"]["audiences"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
        let (ns, name) = (t.namespace.clone().unwrap_or_default(), meta_str(&sa, "name").to_string());
        let (token, exp) = crate::tokens::issue(key, &ns, &name, meta_str(&sa, "uid"), &audiences, seconds).ok_or_else(|| ApiError::internal("cannot sign the token"))?;
        let expires = chrono::DateTime::from_timestamp(exp, 0).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default();
        Ok(Reply::json(
            201,
            json!({
                "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": now()},
                "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": body["spec"]["boundObjectRef"]},
                "status": {"token": token, "expirationTimestamp": expires},
            }),
        ))
    }

    pub async fn get_scale(&self, t: &Target) -> ApiResult<Value> {
        let current = self.get(t).await?;
        Ok(scale_of(t.kind, &current))
    }

    async fn update_scale(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let scale = parse_body(req)?;
        let current = self.get(t).await?;
        self.write_scale(t, &current, &scale, dry_run(&req.query)).await.map(|v| Reply::json(200, v))
    }

    async fn write_scale(&self, t: &Target, current: &Value, scale: &Value, dry: bool) -> ApiResult<Value> {
        let replicas = scale["spec"]["replicas"].as_i64().ok_or_else(|| {
            ApiError::invalid(t.kind, meta_str(current, "name"), &[crate::status::Cause { reason: "FieldValueRequired", field: "spec.replicas".into(), message: "Required value".into() }])
        })?;
        if replicas < 0 {
            return Err(ApiError::invalid(t.kind, meta_str(current, "name"), &[crate::status::Cause {
                reason: "FieldValueInvalid",
                field: "spec.replicas".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            }]));
        }
        let mut obj = current.clone();
        obj["spec"]["replicas"] = json!(replicas);
        let rv = rv_of(current).unwrap_or(0);
        let merged = Self::prepare_update(t.kind, None, obj, current)?;
        let v = self.commit(t, merged, rv, dry).await?;
        Ok(scale_of(t.kind, &v))
    }

    /// `DELETE` of one object.
    pub async fn delete(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let kind = t.kind;
        let name = t.name.clone().unwrap_or_default();
        let opts: Value = if req.body.is_empty() { json!({}) } else { parse_body(req)? };
        let policy = opts["propagationPolicy"].as_str().map(String::from).or_else(|| req.query.get("propagationPolicy").cloned()).unwrap_or_else(|| "Background".into());
        if !matches!(policy.as_str(), "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::bad_request(format!("propagationPolicy: Unsupported value: {policy:?}: supported values: \"Foreground\", \"Background\", \"Orphan\"")));
        }
        let grace = opts["gracePeriodSeconds"].as_i64().or_else(|| req.query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
        let current = self.get(t).await?;
        if let Some(uid) = opts["preconditions"]["uid"].as_str() {
            if uid != meta_str(&current, "uid") {
                return Err(ApiError::conflict_message(kind, &name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta_str(&current, "uid"))));
            }
        }
        if let Some(rv) = opts["preconditions"]["resourceVersion"].as_str() {
            if Some(rv) != current["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::conflict(kind, &name));
            }
        }
        let v = self.delete_object(t, current, &policy, grace, dry_run(&req.query)).await?;
        Ok(Reply::json(200, v))
    }

    /// Deletion semantics: namespaces terminate, finalizers and Foreground/Orphan keep the object
    /// with a deletionTimestamp, scheduled running pods wait for their node; the rest go now.
    pub async fn delete_object(&self, t: &Target, current: Value, policy: &str, grace: Option<i64>, dry: bool) -> ApiResult<Value> {
        let kind = t.kind;
        let name = meta_str(&current, "name").to_string();
        let rv = rv_of(&current).unwrap_or(0);
        let mut obj = current;
        if kind.kind == "Namespace" {
            if SYSTEM_NAMESPACES.contains(&name.as_str()) {
                return Err(ApiError::forbidden(format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")));
            }
            if obj["metadata"]["deletionTimestamp"].is_null() {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            }
            obj["status"]["phase"] = json!("Terminating");
            return self.write_raw(t, obj, rv, dry).await;
        }
        let mut finalizers: Vec<String> = obj["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(String::from)).collect();
        match policy {
            "Foreground" if !finalizers.iter().any(|f| f == "foregroundDeletion") => finalizers.push("foregroundDeletion".into()),
            "Orphan" if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            _ => {}
        }
        let phase = obj["status"]["phase"].as_str().unwrap_or_default();
        let graceful_pod = kind.kind == "Pod" && !obj["spec"]["nodeName"].is_null() && !matches!(phase, "Succeeded" | "Failed") && grace != Some(0);
        if !finalizers.is_empty() || graceful_pod {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                let g = if graceful_pod { grace.or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(30) } else { 0 };
                obj["metadata"]["deletionTimestamp"] = json!((chrono::Utc::now() + chrono::Duration::seconds(g)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(g);
            }
            obj["metadata"]["finalizers"] = json!(finalizers);
            if finalizers.is_empty() {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("finalizers");
                }
            }
            return self.write_raw(t, obj, rv, dry).await;
        }
        if dry {
            return Ok(obj);
        }
        match self.store.delete(&kind.key(t.namespace.as_deref(), &name), Some(rv)).await {
            Ok(kv) => Ok(with_rv(&obj, kv.mod_revision)),
            Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(kind, &name)),
            Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(kind, &name)),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_raw(&self, t: &Target, obj: Value, rv: Revision, dry: bool) -> ApiResult<Value> {
        let name = meta_str(&obj, "name").to_string();
        if dry {
            return Ok(obj);
        }
        match self.store.update(&t.kind.key(t.namespace.as_deref(), &name), encode(&obj)?, rv).await {
            Ok(kv) => decode(&kv),
            Err(StoreError::Conflict { .. }) => Err(ApiError::conflict(t.kind, &name)),
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE` of a collection: every matching object, each by the rules above.
    pub async fn delete_collection(&self, t: &Target, req: &Request) -> ApiResult<Reply> {
        let sel = Selectors::parse(t.kind, &req.query)?;
        let opts: Value = if req.body.is_empty() { json!({}) } else { parse_body(req)? };
        let policy = opts["propagationPolicy"].as_str().unwrap_or("Background").to_string();
        self.cache.fresh().await?;
        let (all, rev) = self.cache.list(&t.kind.namespace_prefix(t.namespace.as_deref()));
        let mut items = Vec::new();
        for o in all.iter().filter(|o| sel.matches(&o.value)) {
            let obj = with_rv(&o.value, o.mod_revision);
            let mut target = t.clone();
            target.namespace = obj["metadata"]["namespace"].as_str().map(String::from);
            match self.delete_object(&target, obj, &policy, None, dry_run(&req.query)).await {
                Ok(v) => items.push(v),
                Err(e) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Reply::json(200, json!({"kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version(), "metadata": {"resourceVersion": rev.to_string()}, "items": items})))
    }
}

/// autoscaling/v1 Scale of an object with `spec.replicas`.
fn scale_of(kind: &Kind, obj: &Value) -> Value {
    let selector = obj["spec"]["selector"].get("matchLabels").or(obj["spec"].get("selector")).and_then(Value::as_object).map(|m| {
        m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
    });
    let _ = kind;
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"], "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.unwrap_or_default()},
    })
}

/// One patch of a content type applied to `current`.
fn apply_patch(content_type: &str, current: &Value, patch_doc: &Value, kind: Option<&Kind>) -> ApiResult<Value> {
    let bad = |e: patch::PatchError| match e {
        patch::PatchError::UnsupportedKind { .. } => ApiError::unsupported_media(e.to_string()),
        other => ApiError::new(422, "Invalid", other.to_string()),
    };
    let schema = || match kind {
        Some(k) => patch::PatchSchema::for_kind(&k.api_version(), k.kind).unwrap_or_else(patch::PatchSchema::untyped),
        None => patch::PatchSchema::untyped(),
    };
    match content_type {
        "application/json-patch+json" => patch::json_patch(current, patch_doc).map_err(bad),
        "application/merge-patch+json" => Ok(patch::merge_patch(current, patch_doc)),
        "application/strategic-merge-patch+json" => patch::strategic_merge(current, patch_doc, &schema()).map_err(bad),
        "application/apply-patch+yaml" => patch::server_side_apply(Some(current), patch_doc, &schema()).map_err(bad),
        other => Err(ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format ({other:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_kind_namespace_name_and_subresource() {
        let t = target("", "v1", &["namespaces", "a", "configmaps", "c"]).expect("cm");
        assert_eq!((t.kind.kind, t.namespace.as_deref(), t.name.as_deref()), ("ConfigMap", Some("a"), Some("c")));
        let t = target("", "v1", &["namespaces", "a"]).expect("ns");
        assert_eq!((t.kind.kind, t.name.as_deref(), t.namespace), ("Namespace", Some("a"), None));
        let t = target("", "v1", &["namespaces", "a", "status"]).expect("ns status");
        assert_eq!(t.sub.as_deref(), Some("status"));
        let t = target("apps", "v1", &["namespaces", "d", "deployments", "x", "scale"]).expect("scale");
        assert_eq!((t.kind.kind, t.sub.as_deref()), ("Deployment", Some("scale")));
        let t = target("", "v1", &["pods"]).expect("all pods");
        assert!(t.namespace.is_none() && t.name.is_none());
        let t = target("", "v1", &["watch", "namespaces", "a", "pods"]).expect("watch");
        assert!(t.watch_prefix);
        assert!(target("", "v1", &["nosuch"]).is_none());
        assert!(target("", "v1", &["configmaps", "x"]).is_none(), "namespaced objects need their namespace");
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = continue_token(42, "/registry/core/configmaps/a/c");
        assert_eq!(parse_continue(&t).expect("parse"), (42, "/registry/core/configmaps/a/c".to_string()));
        assert!(parse_continue("!!").is_err());
    }

    #[test]
    fn uids_look_like_uuids() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
