//! What the server checks and fills in on every object: metadata validation with Kubernetes'
//! messages, immutable fields, and the defaults clients rely on.

use serde_json::{json, Value};

use crate::kinds::Kind;
use crate::status::Cause;

use resources::validation::{self as v, NameRule};

/// The rule a kind's names follow (upstream's per-kind choice).
fn name_rule(kind: &Kind) -> NameRule {
    match kind.kind {
        "Namespace" => NameRule::Dns1123Label,
        "Service" => NameRule::Dns1035Label,
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

fn causes(list: Vec<v::Cause>) -> Vec<Cause> {
    list.into_iter().map(|c| Cause { reason: c.reason.as_str(), field: c.field, message: c.message }).collect()
}

/// Metadata checks of a create or update (the `resources` crate has the rules and wording), and
/// the required fields of the specs users write most.
pub fn object_meta(kind: &Kind, obj: &Value) -> Vec<Cause> {
    let mut out = causes(v::validate_object_meta(&obj["metadata"], kind.namespaced, name_rule(kind)));
    out.extend(spec(kind, obj));
    out
}

fn required(field: &str) -> Cause {
    Cause { reason: "FieldValueRequired", field: field.into(), message: "Required value".into() }
}

fn unsupported(field: &str, value: &Value, allowed: &[&str]) -> Cause {
    let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    Cause { reason: "FieldValueNotSupported", field: field.into(), message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")) }
}

fn is_blank(v: &Value) -> bool {
    v.as_str().is_none_or(str::is_empty)
}

/// A pod spec at `path`: containers, each with a name and an image.
fn pod_spec_causes(spec: &Value, path: &str, out: &mut Vec<Cause>) {
    let containers = spec["containers"].as_array();
    if containers.is_none_or(|c| c.is_empty()) {
        out.push(required(&format!("{path}.containers")));
    }
    for list in ["containers", "initContainers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            for field in ["name", "image"] {
                if is_blank(&c[field]) {
                    out.push(required(&format!("{path}.{list}[{i}].{field}")));
                }
            }
        }
    }
}

/// Required fields and cross-field rules Kubernetes enforces on what users write.
fn spec(kind: &Kind, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = &obj["spec"];
    match kind.kind {
        "Pod" => pod_spec_causes(spec, "spec", &mut out),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            let selector = &spec["selector"];
            if selector.as_object().is_none_or(|s| s.values().all(|v| v.is_null() || v.as_object().is_some_and(|m| m.is_empty()) || v.as_array().is_some_and(|a| a.is_empty()))) {
                out.push(required("spec.selector"));
            } else if let Ok(sel) = resources::selector::LabelSelector::from_label_selector_json(selector) {
                let labels = spec["template"]["metadata"]["labels"].as_object();
                if !sel.matches_json(labels) {
                    let shown = serde_json::to_string(&spec["template"]["metadata"]["labels"]).unwrap_or_default();
                    out.push(Cause {
                        reason: "FieldValueInvalid",
                        field: "spec.template.metadata.labels".into(),
                        message: format!("Invalid value: {shown}: `selector` does not match template `labels`"),
                    });
                }
            }
            pod_spec_causes(&spec["template"]["spec"], "spec.template.spec", &mut out);
        }
        "Job" => {
            pod_spec_causes(&spec["template"]["spec"], "spec.template.spec", &mut out);
            let policy = &spec["template"]["spec"]["restartPolicy"];
            if !matches!(policy.as_str(), Some("Never" | "OnFailure")) {
                out.push(unsupported("spec.template.spec.restartPolicy", policy, &["OnFailure", "Never"]));
            }
        }
        "CronJob" => {
            if is_blank(&spec["schedule"]) {
                out.push(required("spec.schedule"));
            }
            pod_spec_causes(&spec["jobTemplate"]["spec"]["template"]["spec"], "spec.jobTemplate.spec.template.spec", &mut out);
        }
        "Service" => {
            let ty = spec["type"].as_str().unwrap_or("ClusterIP");
            let headless = spec["clusterIP"].as_str() == Some("None");
            if ty != "ExternalName" && !headless && spec["ports"].as_array().is_none_or(|p| p.is_empty()) {
                out.push(required("spec.ports"));
            }
            for (i, p) in spec["ports"].as_array().into_iter().flatten().enumerate() {
                if !p["port"].as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
                    out.push(Cause { reason: "FieldValueInvalid", field: format!("spec.ports[{i}].port"), message: format!("Invalid value: {}: must be between 1 and 65535, inclusive", p["port"]) });
                }
            }
        }
        "ConfigMap" | "Secret" => {
            for field in ["data", "binaryData"] {
                for key in obj[field].as_object().into_iter().flatten().map(|(k, _)| k) {
                    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
                        out.push(Cause {
                            reason: "FieldValueInvalid",
                            field: format!("{field}[{key}]"),
                            message: format!("Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
                        });
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Metadata an update may not change (name, namespace, uid, creationTimestamp, …).
pub fn object_meta_update(new: &Value, old: &Value) -> Vec<Cause> {
    causes(v::validate_object_meta_update(&new["metadata"], &old["metadata"]))
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

/// `generateName` plus upstream's five random characters.
pub fn generate_name(prefix: &str) -> String {
    v::generate_name(prefix)
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
        let c = object_meta(cm, &json!({"metadata": {"name": "Bad_Name", "namespace": "a", "labels": {"ok": "-x"}}}));
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].message.starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{c:?}");
        assert_eq!(c[1].field, "metadata.labels");
        let ns = by_kind("v1", "Namespace").expect("ns");
        assert_eq!(object_meta(ns, &json!({"metadata": {"name": "a.b"}}))[0].field, "metadata.name", "namespaces are DNS labels");
        assert!(object_meta(cm, &json!({"metadata": {"name": "fine.name", "namespace": "a", "labels": {"example.com/x": "y"}}})).is_empty());
        assert_eq!(object_meta(cm, &json!({"metadata": {"namespace": "a"}}))[0].reason, "FieldValueRequired");
        let svc = by_kind("v1", "Service").expect("svc");
        assert!(!object_meta(svc, &json!({"metadata": {"name": "1abc", "namespace": "a"}})).is_empty(), "services are DNS-1035 labels");
    }

    #[test]
    fn workloads_need_a_matching_selector_and_containers_with_images() {
        let d = by_kind("apps/v1", "Deployment").expect("deploy");
        let obj = json!({"metadata": {"name": "d", "namespace": "a"}, "spec": {"template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c"}]}}}});
        let fields: Vec<String> = object_meta(d, &obj).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["spec.selector", "spec.template.spec.containers[0].image"]);
        let obj = json!({"metadata": {"name": "d", "namespace": "a"}, "spec": {"selector": {"matchLabels": {"a": "x"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let c = object_meta(d, &obj);
        assert_eq!(c.len(), 1);
        assert!(c[0].message.ends_with("`selector` does not match template `labels`"), "{c:?}");
        let j = by_kind("batch/v1", "Job").expect("job");
        let obj = json!({"metadata": {"name": "j", "namespace": "a"}, "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(object_meta(j, &obj)[0].reason, "FieldValueNotSupported");
        let cm = by_kind("v1", "ConfigMap").expect("cm");
        assert_eq!(object_meta(cm, &json!({"metadata": {"name": "c", "namespace": "a"}, "data": {"bad key": "v"}}))[0].field, "data[bad key]");
        let svc = by_kind("v1", "Service").expect("svc");
        assert_eq!(object_meta(svc, &json!({"metadata": {"name": "s", "namespace": "a"}, "spec": {}}))[0].field, "spec.ports");
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
