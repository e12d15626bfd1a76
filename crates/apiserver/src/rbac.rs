//! Authorization: RBAC over the Roles, ClusterRoles and their bindings in the watch cache.
//! `system:masters` may do anything (the admin's group, as upstream).

use serde_json::Value;

use crate::cache::Cache;
use crate::status::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// What a request does, in RBAC's terms.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    let resource = if a.subresource.is_empty() { a.resource.to_string() } else { format!("{}/{}", a.resource, a.subresource) };
    let any = |field: &str, want: &str| strings(&rule[field]).any(|v| v == "*" || v == want);
    any("verbs", a.verb)
        && any("apiGroups", a.group)
        && (strings(&rule["resources"]).any(|r| r == "*" || r == resource || (a.subresource.is_empty() && r == a.resource) || r == format!("*/{}", a.subresource)))
        && (rule["resourceNames"].as_array().is_none_or(|n| n.is_empty()) || strings(&rule["resourceNames"]).any(|n| n == a.name))
}

fn subject_matches(subject: &Value, user: &User) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("User") => name == user.name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        Some("ServiceAccount") => user.name == format!("system:serviceaccount:{}:{name}", subject["namespace"].as_str().unwrap_or_default()),
        _ => false,
    }
}

/// Whether `user` may do `a`.
pub fn authorize(cache: &Cache, user: &User, a: &Attributes<'_>) -> bool {
    if user.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    let role_rules = |kind: &str, name: &str, namespace: &str| -> Vec<Value> {
        let key = match kind {
            "ClusterRole" => format!("/registry/rbac.authorization.k8s.io/clusterroles/{name}"),
            _ => format!("/registry/rbac.authorization.k8s.io/roles/{namespace}/{name}"),
        };
        cache.get(&key).map(|o| o.value["rules"].as_array().cloned().unwrap_or_default()).unwrap_or_default()
    };
    let binds = |b: &Value| b["subjects"].as_array().into_iter().flatten().any(|s| subject_matches(s, user));
    let (cluster_bindings, _) = cache.list("/registry/rbac.authorization.k8s.io/clusterrolebindings/");
    for b in cluster_bindings.iter().map(|o| &o.value).filter(|b| binds(b)) {
        let rules = role_rules("ClusterRole", b["roleRef"]["name"].as_str().unwrap_or_default(), "");
        if rules.iter().any(|r| rule_allows(r, a)) {
            return true;
        }
    }
    if a.namespace.is_empty() {
        return false;
    }
    let (bindings, _) = cache.list(&format!("/registry/rbac.authorization.k8s.io/rolebindings/{}/", a.namespace));
    for b in bindings.iter().map(|o| &o.value).filter(|b| binds(b)) {
        let kind = b["roleRef"]["kind"].as_str().unwrap_or("Role");
        let rules = role_rules(kind, b["roleRef"]["name"].as_str().unwrap_or_default(), a.namespace);
        if rules.iter().any(|r| rule_allows(r, a)) {
            return true;
        }
    }
    false
}

/// The 403 upstream answers: `pods is forbidden: User "x" cannot list resource "pods" in API
/// group "" in the namespace "default"`.
pub fn forbidden(user: &User, a: &Attributes<'_>) -> ApiError {
    let resource = if a.subresource.is_empty() { a.resource.to_string() } else { format!("{}/{}", a.resource, a.subresource) };
    let what = if a.name.is_empty() { resource.clone() } else { format!("{resource} \"{}\"", a.name) };
    let scope = if a.namespace.is_empty() { "at the cluster scope".to_string() } else { format!("in the namespace \"{}\"", a.namespace) };
    ApiError::forbidden(format!("{what} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}", user.name, a.verb, a.group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs<'a>(verb: &'a str, resource: &'a str, ns: &'a str) -> Attributes<'a> {
        Attributes { verb, group: "", resource, subresource: "", namespace: ns, name: "" }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let rule = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]});
        assert!(rule_allows(&rule, &attrs("list", "pods", "a")));
        assert!(!rule_allows(&rule, &attrs("delete", "pods", "a")));
        assert!(!rule_allows(&rule, &attrs("list", "secrets", "a")));
        let log = Attributes { subresource: "log", ..attrs("get", "pods", "a") };
        assert!(rule_allows(&rule, &log));
        let named = json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["configmaps"], "resourceNames": ["only"]});
        assert!(rule_allows(&named, &Attributes { name: "only", ..attrs("get", "configmaps", "a") }));
        assert!(!rule_allows(&named, &Attributes { name: "other", ..attrs("get", "configmaps", "a") }));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let u = User { name: "system:serviceaccount:a:robot".into(), groups: vec!["system:serviceaccounts".into()] };
        assert!(subject_matches(&json!({"kind": "ServiceAccount", "name": "robot", "namespace": "a"}), &u));
        assert!(subject_matches(&json!({"kind": "Group", "name": "system:serviceaccounts"}), &u));
        assert!(!subject_matches(&json!({"kind": "User", "name": "admin"}), &u));
    }

    #[test]
    fn the_forbidden_message_reads_like_upstream() {
        let u = User { name: "jane".into(), groups: vec![] };
        let e = forbidden(&u, &attrs("list", "pods", "default"));
        assert_eq!(e.message, "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"");
    }
}
