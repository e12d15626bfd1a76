//! Patch strategies of the built-in kinds, as a compact type graph.
//!
//! Each row says how one field of one Go type is patched. The rows mirror the
//! `patchStrategy`/`patchMergeKey` struct tags of k8s.io/api (the same data
//! OpenAPI publishes as `x-kubernetes-patch-strategy`/`-merge-key`); fields
//! without a row are maps merged recursively or lists replaced whole, which is
//! the upstream default.

use serde_json::Value;

use crate::PatchError;

/// How a list or map field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    /// Type name of the field's value (or of its list elements), "" if untyped.
    pub(crate) ty: &'static str,
    /// `patchStrategy:"merge"`: lists are merged (by `key`, or as a set of primitives).
    pub(crate) merge: bool,
    /// `patchStrategy:"retainKeys"`: a map (or each element of a merged list) keeps only
    /// the keys listed in `$retainKeys`.
    pub(crate) retain_keys: bool,
    /// `patchMergeKey`; "" for lists of primitives.
    pub(crate) key: &'static str,
}

const fn t(ty: &'static str) -> Field {
    Field { ty, merge: false, retain_keys: false, key: "" }
}
const fn m(ty: &'static str, key: &'static str) -> Field {
    Field { ty, merge: true, retain_keys: false, key }
}
const fn mr(ty: &'static str, key: &'static str) -> Field {
    Field { ty, merge: true, retain_keys: true, key }
}
const fn r(ty: &'static str) -> Field {
    Field { ty, merge: false, retain_keys: true, key: "" }
}
/// A merged list of primitives (a set).
const SET: Field = Field { ty: "", merge: true, retain_keys: false, key: "" };

/// (type, field, how). Type names follow k8s.io/api.
pub(crate) const FIELDS: &[(&str, &str, Field)] = &[
    // meta/v1
    ("ObjectMeta", "ownerReferences", m("", "uid")),
    ("ObjectMeta", "finalizers", SET),
    // core/v1 pods
    ("Pod", "metadata", t("ObjectMeta")),
    ("Pod", "spec", t("PodSpec")),
    ("Pod", "status", t("PodStatus")),
    ("PodTemplate", "metadata", t("ObjectMeta")),
    ("PodTemplate", "template", t("PodTemplateSpec")),
    ("PodTemplateSpec", "metadata", t("ObjectMeta")),
    ("PodTemplateSpec", "spec", t("PodSpec")),
    ("PodSpec", "volumes", mr("", "name")),
    ("PodSpec", "initContainers", m("Container", "name")),
    ("PodSpec", "containers", m("Container", "name")),
    ("PodSpec", "ephemeralContainers", m("Container", "name")),
    ("PodSpec", "imagePullSecrets", m("", "name")),
    ("PodSpec", "hostAliases", m("", "ip")),
    ("PodSpec", "topologySpreadConstraints", m("", "topologyKey")),
    ("PodSpec", "resourceClaims", mr("", "name")),
    ("PodSpec", "schedulingGates", m("", "name")),
    ("Container", "ports", m("", "containerPort")),
    ("Container", "env", m("", "name")),
    ("Container", "volumeMounts", m("", "mountPath")),
    ("Container", "volumeDevices", m("", "devicePath")),
    ("Container", "resizePolicy", m("", "resourceName")),
    ("PodStatus", "conditions", m("", "type")),
    ("PodStatus", "podIPs", m("", "ip")),
    ("PodStatus", "hostIPs", m("", "ip")),
    // apps/v1
    ("Deployment", "metadata", t("ObjectMeta")),
    ("Deployment", "spec", t("DeploymentSpec")),
    ("Deployment", "status", t("WorkloadStatus")),
    ("DeploymentSpec", "template", t("PodTemplateSpec")),
    ("DeploymentSpec", "strategy", r("")),
    ("ReplicaSet", "metadata", t("ObjectMeta")),
    ("ReplicaSet", "spec", t("ReplicaSetSpec")),
    ("ReplicaSet", "status", t("WorkloadStatus")),
    ("ReplicaSetSpec", "template", t("PodTemplateSpec")),
    ("StatefulSet", "metadata", t("ObjectMeta")),
    ("StatefulSet", "spec", t("StatefulSetSpec")),
    ("StatefulSet", "status", t("WorkloadStatus")),
    ("StatefulSetSpec", "template", t("PodTemplateSpec")),
    ("DaemonSet", "metadata", t("ObjectMeta")),
    ("DaemonSet", "spec", t("DaemonSetSpec")),
    ("DaemonSet", "status", t("WorkloadStatus")),
    ("DaemonSetSpec", "template", t("PodTemplateSpec")),
    ("WorkloadStatus", "conditions", m("", "type")),
    // batch/v1
    ("Job", "metadata", t("ObjectMeta")),
    ("Job", "spec", t("JobSpec")),
    ("Job", "status", t("WorkloadStatus")),
    ("JobSpec", "template", t("PodTemplateSpec")),
    ("CronJob", "metadata", t("ObjectMeta")),
    ("CronJob", "spec", t("CronJobSpec")),
    ("CronJobSpec", "jobTemplate", t("JobTemplateSpec")),
    ("JobTemplateSpec", "metadata", t("ObjectMeta")),
    ("JobTemplateSpec", "spec", t("JobSpec")),
    // core/v1 services and friends
    ("Service", "metadata", t("ObjectMeta")),
    ("Service", "spec", t("ServiceSpec")),
    ("Service", "status", t("ServiceStatus")),
    ("ServiceSpec", "ports", m("", "port")),
    ("ServiceStatus", "conditions", m("", "type")),
    ("Endpoints", "metadata", t("ObjectMeta")),
    ("Node", "metadata", t("ObjectMeta")),
    ("Node", "spec", t("NodeSpec")),
    ("Node", "status", t("NodeStatus")),
    ("NodeSpec", "podCIDRs", SET),
    ("NodeStatus", "conditions", m("", "type")),
    ("NodeStatus", "addresses", m("", "type")),
    ("Namespace", "metadata", t("ObjectMeta")),
    ("Namespace", "status", t("NamespaceStatus")),
    ("NamespaceStatus", "conditions", m("", "type")),
    ("ConfigMap", "metadata", t("ObjectMeta")),
    ("Secret", "metadata", t("ObjectMeta")),
    ("ServiceAccount", "metadata", t("ObjectMeta")),
    ("ServiceAccount", "secrets", m("", "name")),
    ("PersistentVolumeClaim", "metadata", t("ObjectMeta")),
    ("PersistentVolumeClaim", "status", t("PvcStatus")),
    ("PvcStatus", "conditions", m("", "type")),
    // Built-ins whose fields all take the default strategies: only metadata is typed.
    ("Event", "metadata", t("ObjectMeta")),
    ("LimitRange", "metadata", t("ObjectMeta")),
    ("ResourceQuota", "metadata", t("ObjectMeta")),
    ("PersistentVolume", "metadata", t("ObjectMeta")),
    ("ControllerRevision", "metadata", t("ObjectMeta")),
    ("Lease", "metadata", t("ObjectMeta")),
    ("EndpointSlice", "metadata", t("ObjectMeta")),
    ("Ingress", "metadata", t("ObjectMeta")),
    ("NetworkPolicy", "metadata", t("ObjectMeta")),
    ("Role", "metadata", t("ObjectMeta")),
    ("ClusterRole", "metadata", t("ObjectMeta")),
    ("RoleBinding", "metadata", t("ObjectMeta")),
    ("ClusterRoleBinding", "metadata", t("ObjectMeta")),
    ("PriorityClass", "metadata", t("ObjectMeta")),
    ("StorageClass", "metadata", t("ObjectMeta")),
    ("HorizontalPodAutoscaler", "metadata", t("ObjectMeta")),
    ("PodDisruptionBudget", "metadata", t("ObjectMeta")),
    ("PodDisruptionBudget", "status", t("PdbStatus")),
    ("PdbStatus", "conditions", m("", "type")),
    ("CustomResourceDefinition", "metadata", t("ObjectMeta")),
];

/// (apiVersion, kind) → root type in [`FIELDS`].
pub(crate) const KINDS: &[(&str, &str)] = &[
    ("v1", "Pod"),
    ("v1", "PodTemplate"),
    ("v1", "Service"),
    ("v1", "Endpoints"),
    ("v1", "Node"),
    ("v1", "Namespace"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("v1", "PersistentVolumeClaim"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
    ("v1", "Event"),
    ("events.k8s.io/v1", "Event"),
    ("v1", "LimitRange"),
    ("v1", "ResourceQuota"),
    ("v1", "PersistentVolume"),
    ("apps/v1", "ControllerRevision"),
    ("coordination.k8s.io/v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("autoscaling/v1", "HorizontalPodAutoscaler"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
];

/// The patch strategies of one kind, used by [`crate::strategic_merge`] and
/// [`crate::three_way_merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchSchema {
    /// Root type name in [`FIELDS`]; "" means untyped (maps merge, lists replace).
    root: &'static str,
}

impl PatchSchema {
    /// The schema of a built-in kind, or `None` for kinds without a compiled-in
    /// table (custom resources, or built-ins berth does not know yet).
    pub fn for_kind(api_version: &str, kind: &str) -> Option<Self> {
        KINDS
            .iter()
            .find(|(v, k)| *v == api_version && *k == kind)
            .map(|(_, k)| PatchSchema { root: k })
    }

    /// The schema of the object's `apiVersion`/`kind`. Unknown kinds get
    /// [`PatchError::UnsupportedKind`], which an API server answers with 415 like
    /// upstream does for strategic merge patches of custom resources.
    pub fn for_object(obj: &Value) -> Result<Self, PatchError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        Self::for_kind(api_version, kind).ok_or_else(|| PatchError::UnsupportedKind {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })
    }

    /// No strategies at all: maps merge recursively, lists are replaced. This is
    /// what a strategic merge of an unknown type degenerates to, and how
    /// [`crate::server_side_apply`] treats custom resources.
    pub fn untyped() -> Self {
        PatchSchema { root: "" }
    }

    pub(crate) fn root(&self) -> &'static str {
        self.root
    }
}

/// How `field` of type `ty` is patched; untyped default if there is no row.
pub(crate) fn field(ty: &str, name: &str) -> Field {
    if ty.is_empty() {
        return t("");
    }
    FIELDS
        .iter()
        .find(|(tt, f, _)| *tt == ty && *f == name)
        .map(|(_, _, how)| *how)
        .unwrap_or(t(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Field paths from each kind to every type it embeds.
    /// A path step: a field, and for typed merged lists the merge key of the
    /// one element the step goes through.
    type Step = (&'static str, Option<&'static str>);

    fn paths(ty: &'static str, prefix: Vec<Step>, out: &mut Vec<(&'static str, Vec<Step>)>) {
        out.push((ty, prefix.clone()));
        for (tt, f, how) in FIELDS {
            if *tt == ty && !how.ty.is_empty() {
                let mut p = prefix.clone();
                p.push((f, how.merge.then_some(how.key)));
                paths(how.ty, p, out);
            }
        }
    }

    fn nest(path: &[Step], leaf: Value) -> Value {
        path.iter().rev().fold(leaf, |acc, (k, key)| match (key, acc) {
            (Some(key), Value::Object(mut m)) => {
                m.insert(key.to_string(), json!("e0"));
                json!({ *k: [m] })
            }
            (_, acc) => json!({ *k: acc }),
        })
    }

    /// Every row of the table is exercised: merged lists merge by their key
    /// (or as sets), retainKeys maps drop unlisted keys, and typed fields are
    /// reachable from a kind (a misspelt type name would leave a row dead).
    #[test]
    fn every_row_behaves_as_declared() {
        let mut reach = Vec::new();
        for (_, k) in KINDS {
            paths(k, vec![], &mut reach);
        }
        let mut tested = 0;
        for (ty, f, how) in FIELDS {
            let (kind_path, root) = KINDS
                .iter()
                .find_map(|(_, k)| {
                    let mut r = Vec::new();
                    paths(k, vec![], &mut r);
                    r.into_iter().find(|(t, _)| t == ty).map(|(_, p)| (p, *k))
                })
                .unwrap_or_else(|| panic!("type {ty} (field {f}) is not reachable from any kind"));
            let api = KINDS.iter().find(|(_, k)| *k == root).map(|(v, _)| *v).unwrap_or("v1");
            let schema = PatchSchema::for_kind(api, root).unwrap_or_else(|| panic!("{root}"));
            let mut at = kind_path.clone();
            at.push((f, None));
            let (orig, patch, want) = if how.merge && how.key.is_empty() {
                (json!(["a", "b"]), json!(["b", "c"]), json!(["a", "b", "c"]))
            } else if how.merge {
                let k = how.key;
                (
                    json!([{k: "1", "x": "o"}, {k: "2", "x": "o"}]),
                    json!([{k: "2", "x": "p"}, {k: "3"}]),
                    json!([{k: "1", "x": "o"}, {k: "2", "x": "p"}, {k: "3"}]),
                )
            } else if how.retain_keys {
                (json!({"a": 1, "b": 2}), json!({"$retainKeys": ["b"], "b": 3}), json!({"b": 3}))
            } else {
                // A typed map: merged recursively.
                (json!({"zz": 1}), json!({"yy": 2}), json!({"zz": 1, "yy": 2}))
            };
            let got = crate::strategic_merge(&nest(&at, orig), &nest(&at, patch), &schema)
                .unwrap_or_else(|e| panic!("{ty}.{f}: {e}"));
            assert_eq!(got, nest(&at, want), "{ty}.{f} via {root}");
            tested += 1;
        }
        assert_eq!(tested, FIELDS.len());
    }

    #[test]
    fn pod_template_is_typed_in_every_workload() {
        for (api, kind, path) in [
            ("apps/v1", "Deployment", vec!["spec", "template"]),
            ("apps/v1", "ReplicaSet", vec!["spec", "template"]),
            ("apps/v1", "StatefulSet", vec!["spec", "template"]),
            ("apps/v1", "DaemonSet", vec!["spec", "template"]),
            ("batch/v1", "Job", vec!["spec", "template"]),
            ("batch/v1", "CronJob", vec!["spec", "jobTemplate", "spec", "template"]),
            ("v1", "PodTemplate", vec!["template"]),
        ] {
            let schema = PatchSchema::for_kind(api, kind).unwrap_or_else(|| panic!("{kind}"));
            let mut p: Vec<Step> = path.iter().map(|s| (*s, None)).collect();
            p.extend([("spec", None), ("containers", None)]);
            let o = nest(&p, json!([{"name": "a", "env": [{"name": "X", "value": "1"}]}]));
            let patch = nest(&p, json!([{"name": "a", "env": [{"name": "Y", "value": "2"}]}]));
            let want = nest(&p, json!([{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}]));
            assert_eq!(crate::strategic_merge(&o, &patch, &schema), Ok(want), "{kind}");
        }
    }
}
