//! The review APIs that ask the server about the caller: `kubectl auth can-i`
//! (SelfSubjectAccessReview, SubjectAccessReview) and `kubectl auth whoami` (SelfSubjectReview).
//! They are created, answered and never stored.

use serde_json::{json, Value};

use crate::cache::Cache;
use crate::rbac::{self, Attributes, User};
use crate::status::{ApiError, ApiResult};

/// Served beside the kinds: (group, version, resource, kind).
pub const REVIEWS: &[(&str, &str, &str, &str)] = &[
    ("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview"),
    ("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview"),
];

fn access(cache: &Cache, user: &User, spec: &Value) -> Value {
    let ra = &spec["resourceAttributes"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (verb, group, resource, sub, ns, name) = (s(&ra["verb"]), s(&ra["group"]), s(&ra["resource"]), s(&ra["subresource"]), s(&ra["namespace"]), s(&ra["name"]));
    let attrs = Attributes { verb: &verb, group: &group, resource: &resource, subresource: &sub, namespace: &ns, name: &name };
    let allowed = !ra.is_null() && rbac::authorize(cache, user, &attrs);
    // Upstream's RBAC gives no reason when nothing allows it (kubectl prints a bare "no").
    json!({"allowed": allowed})
}

/// Answers a review `POST`ed by `user`.
pub fn answer(cache: &Cache, user: &User, resource: &str, body: &Value) -> ApiResult<Value> {
    let (group, version, _, kind) = REVIEWS.iter().find(|r| r.2 == resource).copied().ok_or_else(|| ApiError::path_not_found(resource))?;
    let mut out = json!({"kind": kind, "apiVersion": format!("{group}/{version}"), "metadata": {"creationTimestamp": null}, "spec": body["spec"]});
    match resource {
        "selfsubjectaccessreviews" => out["status"] = access(cache, user, &body["spec"]),
        "subjectaccessreviews" => {
            // Asking about someone else needs the right to (upstream: create subjectaccessreviews).
            let me = Attributes { verb: "create", group, resource, subresource: "", namespace: "", name: "" };
            if !rbac::authorize(cache, user, &me) {
                return Err(rbac::forbidden(user, &me));
            }
            let spec = &body["spec"];
            let who = User {
                name: spec["user"].as_str().unwrap_or_default().to_string(),
                groups: spec["groups"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(String::from)).collect(),
            };
            out["status"] = access(cache, &who, spec);
        }
        _ => {
            out["status"] = json!({"userInfo": {"username": user.name, "groups": user.groups}});
            if let Some(m) = out.as_object_mut() {
                m.remove("spec");
            }
        }
    }
    Ok(out)
}

/// Discovery entries of the review resources of one group version.
pub fn resources(group: &str, version: &str) -> Vec<Value> {
    REVIEWS
        .iter()
        .filter(|r| r.0 == group && r.1 == version)
        .map(|(_, _, resource, kind)| json!({"name": resource, "singularName": "", "namespaced": false, "kind": kind, "verbs": ["create"]}))
        .collect()
}
