//! The resources the server knows: group, version, kind, names, scope, subresources, and the
//! k8s-openapi type each object must decode into. Adding a built-in kind is one row here.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use k8s_openapi::api::{apps, batch, coordination, core, discovery, networking, policy, rbac};

/// One served resource.
#[derive(Debug)]
pub struct Kind {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// `all` puts it in `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource (status changes only through it).
    pub status: bool,
    /// Has a `/scale` subresource (autoscaling/v1 Scale of `spec.replicas`).
    pub scale: bool,
    /// Field selectors besides metadata.name and metadata.namespace.
    pub fields: &'static [&'static str],
    /// Decodes into the k8s-openapi type and encodes back: a type error, or the object as the
    /// type sees it (fields the type does not know are missing: that is how unknown fields are
    /// found without a schema walker of our own).
    pub typed: fn(&Value) -> Result<Value, String>,
    /// The type's JSON schema with its definitions (OpenAPI documents, `kubectl explain`).
    pub schema: fn() -> Value,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How errors name the resource: `configmaps`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The datastore key prefix of all objects of this kind.
    pub fn prefix(&self) -> String {
        format!("/registry/{}/{}/", if self.group.is_empty() { "core" } else { self.group }, self.plural)
    }

    /// The key prefix of one namespace's objects (all of them for cluster-scoped kinds).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.prefix()),
            _ => format!("{}{name}", self.prefix()),
        }
    }

    pub fn supports_field(&self, field: &str) -> bool {
        matches!(field, "metadata.name" | "metadata.namespace") || self.fields.contains(&field)
    }
}

fn schema<T: schemars::JsonSchema>() -> Value {
    // OpenAPI 3 settings: definitions under #/components/schemas, nullable instead of type arrays.
    let settings = schemars::gen::SchemaSettings::openapi3();
    let root = settings.into_generator().into_root_schema_for::<T>();
    serde_json::to_value(root).unwrap_or(Value::Null)
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(&t).map_err(|e| e.to_string())
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

macro_rules! kind {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $short:expr, $ns:expr, $cat:expr, $status:expr, $scale:expr, $fields:expr, $ty:ty) => {
        Kind {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            namespaced: $ns,
            categories: $cat,
            status: $status,
            scale: $scale,
            fields: $fields,
            typed: roundtrip::<$ty>,
            schema: schema::<$ty>,
        }
    };
}

/// Every served kind, in discovery order.
pub static KINDS: &[Kind] = &[
    kind!("", "v1", "Namespace", "namespaces", "namespace", &["ns"], false, NONE, true, false, &["status.phase"], core::v1::Namespace),
    kind!("", "v1", "ConfigMap", "configmaps", "configmap", &["cm"], true, NONE, false, false, NONE, core::v1::ConfigMap),
    kind!("", "v1", "Secret", "secrets", "secret", NONE, true, NONE, false, false, &["type"], core::v1::Secret),
    kind!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", &["sa"], true, NONE, false, false, NONE, core::v1::ServiceAccount),
    kind!(
        "", "v1", "Event", "events", "event", &["ev"], true, NONE, false, false,
        &[
            "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
            "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
            "reason", "reportingComponent", "source", "type",
        ],
        core::v1::Event
    ),
    kind!("", "v1", "Node", "nodes", "node", &["no"], false, NONE, true, false, &["spec.unschedulable"], core::v1::Node),
    kind!(
        "", "v1", "Pod", "pods", "pod", &["po"], true, ALL, true, false,
        &[
            "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
            "status.phase", "status.podIP", "status.nominatedNodeName",
        ],
        core::v1::Pod
    ),
    kind!("", "v1", "Service", "services", "service", &["svc"], true, ALL, true, false, NONE, core::v1::Service),
    kind!("", "v1", "Endpoints", "endpoints", "endpoints", &["ep"], true, NONE, false, false, NONE, core::v1::Endpoints),
    kind!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", &["pvc"], true, NONE, true, false, NONE, core::v1::PersistentVolumeClaim),
    kind!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", &["quota"], true, NONE, true, false, NONE, core::v1::ResourceQuota),
    kind!("", "v1", "LimitRange", "limitranges", "limitrange", &["limits"], true, NONE, false, false, NONE, core::v1::LimitRange),
    kind!("apps", "v1", "Deployment", "deployments", "deployment", &["deploy"], true, ALL, true, true, NONE, apps::v1::Deployment),
    kind!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", &["rs"], true, ALL, true, true, NONE, apps::v1::ReplicaSet),
    kind!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", &["ds"], true, ALL, true, false, NONE, apps::v1::DaemonSet),
    kind!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", &["sts"], true, ALL, true, true, NONE, apps::v1::StatefulSet),
    kind!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", NONE, true, NONE, false, false, NONE, apps::v1::ControllerRevision),
    kind!("batch", "v1", "Job", "jobs", "job", NONE, true, ALL, true, false, NONE, batch::v1::Job),
    kind!("batch", "v1", "CronJob", "cronjobs", "cronjob", &["cj"], true, ALL, true, false, NONE, batch::v1::CronJob),
    kind!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", NONE, true, NONE, false, false, NONE, discovery::v1::EndpointSlice),
    kind!("coordination.k8s.io", "v1", "Lease", "leases", "lease", NONE, true, NONE, false, false, NONE, coordination::v1::Lease),
    kind!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", &["ing"], true, NONE, true, false, NONE, networking::v1::Ingress),
    kind!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", &["netpol"], true, NONE, false, false, NONE, networking::v1::NetworkPolicy),
    kind!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", &["pdb"], true, NONE, true, false, NONE, policy::v1::PodDisruptionBudget),
    kind!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", NONE, true, NONE, false, false, NONE, rbac::v1::Role),
    kind!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", NONE, true, NONE, false, false, NONE, rbac::v1::RoleBinding),
    kind!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", NONE, false, NONE, false, false, NONE, rbac::v1::ClusterRole),
    kind!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", NONE, false, NONE, false, false, NONE, rbac::v1::ClusterRoleBinding),
];

/// The kind served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// The kind of an `apiVersion`/`kind` pair.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.kind == kind && k.api_version() == api_version)
}

/// Served group versions, core first: (group, version).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in KINDS {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

/// Paths of `value` (dotted, lists as `[i]`) present in `input` but missing from the typed
/// round trip: the unknown fields of strict field validation. Nulls are never unknown (the type
/// drops them as it drops absent fields).
pub fn unknown_fields(input: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(input, typed, "", &mut out);
    out
}

fn walk_unknown(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match t.get(k) {
                    Some(tv) => walk_unknown(v, tv, &p, out),
                    None if v.is_null() => {}
                    // A map type (labels, data) keeps every key; a struct drops unknown ones. An
                    // empty object that the type dropped is a defaulted struct, not a field.
                    None if v.as_object().is_some_and(|o| o.is_empty()) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (iv, tv)) in i.iter().zip(t.iter()).enumerate() {
                walk_unknown(iv, tv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_are_unique_and_found_by_path_and_kind() {
        for k in KINDS {
            assert_eq!(KINDS.iter().filter(|o| o.group == k.group && o.plural == k.plural).count(), 1, "{}", k.plural);
        }
        assert_eq!(find("apps", "v1", "deployments").map(|k| k.kind), Some("Deployment"));
        assert_eq!(by_kind("v1", "ConfigMap").map(|k| k.plural), Some("configmaps"));
        assert_eq!(find("apps", "v1", "deployments").map(|k| k.qualified()), Some("deployments.apps".into()));
        assert_eq!(group_versions()[0], ("", "v1"));
    }

    #[test]
    fn unknown_fields_are_found_by_the_typed_round_trip() {
        let k = by_kind("v1", "ConfigMap").expect("cm");
        let input = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}, "bogus": 1}, "data": {"k": "v"}, "extra": true});
        let typed = (k.typed)(&input).expect("decodes");
        assert_eq!(unknown_fields(&input, &typed), vec!["extra".to_string(), "metadata.bogus".to_string()]);
        let pod = by_kind("v1", "Pod").expect("pod");
        let input = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}});
        let typed = (pod.typed)(&input).expect("decodes");
        assert_eq!(unknown_fields(&input, &typed), vec!["spec.containers[0].imagePolicy".to_string()]);
    }

    #[test]
    fn wrong_types_fail_to_decode() {
        let k = by_kind("v1", "ConfigMap").expect("cm");
        let err = (k.typed)(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": 1}})).expect_err("a number is not a string");
        assert!(err.contains("string"), "{err}");
    }
}
