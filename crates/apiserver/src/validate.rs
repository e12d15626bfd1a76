//! What the server checks and fills in on every object: metadata validation with Kubernetes'
//! messages, immutable fields, and the defaults clients rely on.

use serde_json::{json, Value};

use crate::kinds::Kind;
use crate::status::Cause;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn is_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn qualified_name_error(k: &str) -> Option<String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if !is_dns1123_subdomain(p) {
            return Some(format!("prefix part {SUBDOMAIN_MSG}"));
        }
    }
    if name.is_empty() {
        return Some("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Some("name part must be no more than 63 characters".into());
    }
    if !is_label_value(name) {
        return Some(QUALIFIED_MSG.into());
    }
    None
}

/// Kinds whose names are DNS labels rather than subdomains.
fn label_named(kind: &Kind) -> bool {
    matches!(kind.kind, "Namespace" | "Service")
}

fn invalid(field: &str, value: &str, msg: &str) -> Cause {
    Cause { reason: "FieldValueInvalid", field: field.into(), message: format!("Invalid value: \"{value}\": {msg}") }
}

/// Metadata checks of a create or update.
pub fn object_meta(kind: &Kind, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause { reason: "FieldValueRequired", field: "metadata.name".into(), message: "Required value: name or generateName is required".into() });
    } else if label_named(kind) && !is_dns1123_label(name) {
        causes.push(invalid("metadata.name", name, LABEL_MSG));
    } else if !is_dns1123_subdomain(name) {
        causes.push(invalid("metadata.name", name, SUBDOMAIN_MSG));
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            if let Some(msg) = qualified_name_error(k) {
                causes.push(invalid("metadata.labels", k, &msg));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => causes.push(invalid("metadata.labels", v.as_str().unwrap_or_default(), VALUE_MSG)),
            }
        }
    }
    if let Some(ann) = meta["annotations"].as_object() {
        let mut total = 0;
        for (k, v) in ann {
            if let Some(msg) = qualified_name_error(&k.to_ascii_lowercase()) {
                causes.push(invalid("metadata.annotations", k, &msg));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            causes.push(Cause { reason: "FieldValueTooLong", field: "metadata.annotations".into(), message: "Too long: must have at most 262144 bytes".into() });
        }
    }
    for (i, f) in meta["finalizers"].as_array().into_iter().flatten().enumerate() {
        let f = f.as_str().unwrap_or_default();
        if let Some(msg) = qualified_name_error(f) {
            causes.push(invalid(&format!("metadata.finalizers[{i}]"), f, &msg));
        }
    }
    for (i, r) in meta["ownerReferences"].as_array().into_iter().flatten().enumerate() {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if r[field].as_str().unwrap_or_default().is_empty() {
                causes.push(Cause { reason: "FieldValueRequired", field: format!("metadata.ownerReferences[{i}].{field}"), message: "Required value".into() });
            }
        }
    }
    if kind.kind == "Pod" && obj["spec"]["containers"].as_array().is_none_or(|c| c.is_empty()) {
        causes.push(Cause { reason: "FieldValueRequired", field: "spec.containers".into(), message: "Required value".into() });
    }
    causes
}

/// Fields an update may not change.
pub fn immutable(kind: &Kind, new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let immutable_flag = old["immutable"].as_bool() == Some(true);
    if immutable_flag && matches!(kind.kind, "ConfigMap" | "Secret") {
        for field in ["data", "binaryData", "stringData"] {
            if new[field] != old[field] {
                causes.push(Cause { reason: "FieldValueForbidden", field: field.into(), message: "Forbidden: field is immutable when `immutable` is set".into() });
            }
        }
        if new["immutable"] != old["immutable"] {
            causes.push(Cause { reason: "FieldValueForbidden", field: "immutable".into(), message: "Forbidden: field is immutable when `immutable` is set".into() });
        }
    }
    if matches!(kind.kind, "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job") && new["spec"]["selector"] != old["spec"]["selector"] && !old["spec"]["selector"].is_null() {
        causes.push(Cause { reason: "FieldValueInvalid", field: "spec.selector".into(), message: format!("Invalid value: {}: field is immutable", new["spec"]["selector"]) });
    }
    causes
}

/// Random suffix of `generateName` (Kubernetes' alphabet: no vowels, no confusable digits).
pub fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..5).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    let prefix = if prefix.len() > 58 { &prefix[..58] } else { prefix };
    format!("{prefix}{suffix}")
}

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.to_string(), value);
        }
    }
}

/// A pod spec's defaults (pods and the templates of workloads).
fn pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        // get_mut, not indexing: IndexMut would add the missing list as null.
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let image = c["image"].as_str().unwrap_or_default().to_string();
            // `:latest` or no tag means Always (Kubernetes' rule), a digest or other tag IfNotPresent.
            let tag = image.rsplit('/').next().unwrap_or_default();
            let always = !image.contains('@') && (!tag.contains(':') || tag.ends_with(":latest"));
            set_default(c, "imagePullPolicy", json!(if always { "Always" } else { "IfNotPresent" }));
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            set_default(c, "resources", json!({}));
            for p in c.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                set_default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Kubernetes' defaults for what users write, so that applied manifests and reads agree.
pub fn defaults(kind: &Kind, obj: &mut Value) {
    match kind.kind {
        "Namespace" => {
            set_default(obj, "spec", json!({"finalizers": ["kubernetes"]}));
            obj["status"] = json!({"phase": "Active"});
        }
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                set_default(spec, "serviceAccountName", json!("default"));
                set_default(spec, "enableServiceLinks", json!(true));
                set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
                set_default(spec, "priority", json!(0));
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            if let Some(spec) = obj.get_mut("spec") {
                if kind.kind != "DaemonSet" && kind.kind != "Job" {
                    set_default(spec, "replicas", json!(1));
                }
                if kind.kind == "Deployment" {
                    // An empty strategy (what `kubectl create deployment` sends) is a rolling update.
                    if spec.get("strategy").is_none_or(|s| s.get("type").is_none()) {
                        spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
                    }
                    set_default(spec, "revisionHistoryLimit", json!(10));
                    set_default(spec, "progressDeadlineSeconds", json!(600));
                }
                if let Some(t) = spec.get_mut("template").and_then(|t| t.get_mut("spec")) {
                    pod_spec(t);
                }
            }
        }
        "Service" => {
            if let Some(spec) = obj.get_mut("spec") {
                set_default(spec, "type", json!("ClusterIP"));
                set_default(spec, "sessionAffinity", json!("None"));
                for p in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                    set_default(p, "protocol", json!("TCP"));
                    if p.get("targetPort").is_none() {
                        let port = p["port"].clone();
                        p["targetPort"] = port;
                    }
                }
            }
        }
        "Secret" => {
            set_default(obj, "type", json!("Opaque"));
            // stringData is write-only: it lands in data, base64-encoded.
            if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                use base64::Engine;
                for (k, v) in sd.as_object().into_iter().flatten() {
                    let enc = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or_default());
                    if !obj["data"].is_object() {
                        obj["data"] = json!({});
                    }
                    obj["data"][k] = json!(enc);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;

    #[test]
    fn names_labels_and_annotations_are_checked_with_kubernetes_messages() {
        let cm = by_kind("v1", "ConfigMap").expect("cm");
        let c = object_meta(cm, &json!({"metadata": {"name": "Bad_Name", "labels": {"ok": "-x"}}}));
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].message.starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        assert_eq!(c[1].field, "metadata.labels");
        let ns = by_kind("v1", "Namespace").expect("ns");
        assert_eq!(object_meta(ns, &json!({"metadata": {"name": "a.b"}}))[0].field, "metadata.name", "namespaces are DNS labels");
        assert!(object_meta(cm, &json!({"metadata": {"name": "fine.name", "labels": {"example.com/x": "y"}}})).is_empty());
        assert_eq!(object_meta(cm, &json!({"metadata": {}}))[0].reason, "FieldValueRequired");
    }

    #[test]
    fn generated_names_have_five_safe_characters() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n[4..].chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn defaults_fill_pod_templates_and_secret_string_data() {
        let d = by_kind("apps/v1", "Deployment").expect("deploy");
        let mut obj = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.2", "ports": [{"containerPort": 80}]}]}}}});
        defaults(d, &mut obj);
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(obj["spec"]["strategy"]["type"], "RollingUpdate");
        assert!(obj["spec"]["template"]["spec"].get("initContainers").is_none(), "no null lists appear");
        let s = by_kind("v1", "Secret").expect("secret");
        let mut obj = json!({"stringData": {"k": "v"}});
        defaults(s, &mut obj);
        assert_eq!(obj, json!({"type": "Opaque", "data": {"k": "dg=="}}));
    }
}
