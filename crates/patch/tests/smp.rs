//! Strategic merge patch cases, written after the semantics of apimachinery's
//! strategicpatch tests.

use patch::{strategic_merge, PatchError, PatchSchema};
use serde_json::{json, Value};

fn pod() -> PatchSchema {
    PatchSchema::for_kind("v1", "Pod").expect("Pod schema")
}
fn deploy() -> PatchSchema {
    PatchSchema::for_kind("apps/v1", "Deployment").expect("Deployment schema")
}

/// (name, schema, original, patch, expected)
fn cases() -> Vec<(&'static str, PatchSchema, Value, Value, Value)> {
    vec![
        (
            "maps merge recursively and null deletes",
            pod(),
            json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
            json!({"metadata": {"name": "p", "labels": {"b": "2", "c": "3"}}}),
        ),
        (
            "containers merge by name",
            pod(),
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "z"}, {"name": "c", "image": "w"}]}}),
        ),
        (
            "$patch: delete removes a list element by key",
            pod(),
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
            json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "y"}]}}),
        ),
        (
            "$patch: replace in a list replaces the whole list",
            pod(),
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "q"}, {"$patch": "replace"}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "q"}]}}),
        ),
        (
            "$patch: replace on a map replaces it",
            pod(),
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            json!({"metadata": {"labels": {"c": "3", "$patch": "replace"}}}),
            json!({"metadata": {"labels": {"c": "3"}}}),
        ),
        (
            "$patch: delete on a map removes the field",
            pod(),
            json!({"metadata": {"name": "p", "labels": {"a": "1"}}}),
            json!({"metadata": {"labels": {"$patch": "delete"}}}),
            json!({"metadata": {"name": "p"}}),
        ),
        (
            "lists without a strategy are replaced",
            pod(),
            json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}),
            json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
            json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
        ),
        (
            "tolerations are atomic",
            pod(),
            json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
            json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
        ),
        (
            "$setElementOrder reorders, server-only elements keep their place",
            pod(),
            json!({"spec": {"containers": [{"name": "a"}, {"name": "s"}, {"name": "b"}, {"name": "c"}]}}),
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "b"}, {"name": "a"}], "containers": [{"name": "c", "image": "i"}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "i"}, {"name": "b"}, {"name": "a"}, {"name": "s"}]}}),
        ),
        (
            "$setElementOrder on a primitive list",
            pod(),
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
            json!({"metadata": {"finalizers": ["c", "b", "a"]}}),
        ),
        (
            "$retainKeys drops unlisted keys",
            deploy(),
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        ),
        (
            "$retainKeys in volumes (merge,retainKeys)",
            pod(),
            json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/x"}}]}}),
            json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}, {"name": "w", "emptyDir": {}}]}}),
        ),
        (
            "$deleteFromPrimitiveList",
            pod(),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            json!({"metadata": {"finalizers": ["a", "c"]}}),
        ),
        (
            "finalizers merge as a set",
            pod(),
            json!({"metadata": {"finalizers": ["a", "b"]}}),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
        ),
        (
            "null deletes inside a merged element",
            pod(),
            json!({"spec": {"containers": [{"name": "a", "image": "x", "command": ["sh"]}]}}),
            json!({"spec": {"containers": [{"name": "a", "command": null}]}}),
            json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
        ),
        (
            "env merges inside a Deployment's template",
            deploy(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}}),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}]}}}}),
        ),
        (
            "ports merge by containerPort",
            pod(),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 8080}]}]}}),
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "web"}, {"containerPort": 443}, {"containerPort": 8080}]}]}}),
        ),
        (
            "ownerReferences merge by uid",
            pod(),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}}),
            json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
        ),
        (
            "service ports merge by port",
            PatchSchema::for_kind("v1", "Service").expect("Service schema"),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
        ),
        (
            "CronJob containers merge through jobTemplate",
            PatchSchema::for_kind("batch/v1", "CronJob").expect("CronJob schema"),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}}}}}),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}}}}),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "y"}, {"name": "b"}]}}}}}}),
        ),
        (
            "ConfigMap data is a plain map",
            PatchSchema::for_kind("v1", "ConfigMap").expect("ConfigMap schema"),
            json!({"data": {"a": "1", "b": "2"}}),
            json!({"data": {"b": null, "c": "3"}}),
            json!({"data": {"a": "1", "c": "3"}}),
        ),
        (
            "directives in new elements are stripped",
            pod(),
            json!({"spec": {}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "$setElementOrder/env": [{"name": "X"}]}]}}),
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}),
        ),
        (
            "node conditions merge by type",
            PatchSchema::for_kind("v1", "Node").expect("Node schema"),
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}}),
        ),
    ]
}

#[test]
fn strategic_merge_cases() {
    for (name, schema, original, patch, want) in cases() {
        let got = strategic_merge(&original, &patch, &schema).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "case {name:?}");
    }
}

#[test]
fn malformed_directives_are_errors() {
    let o = json!({"spec": {"containers": [{"name": "a"}]}});
    let bad = [
        json!({"spec": {"$patch": "explode"}}),
        json!({"spec": {"$retainKeys": "containers"}}),
        json!({"spec": {"$retainKeys": ["x"], "containers": []}}),
        json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
        json!({"spec": {"$deleteFromPrimitiveList/x": "a"}}),
        json!({"spec": {"$unknown": 1}}),
        json!({"metadata": {"finalizers": [{"$patch": "delete"}]}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b"}]}}),
    ];
    for p in bad {
        match strategic_merge(&o, &p, &pod()) {
            Err(PatchError::InvalidDirective { .. }) => {}
            other => panic!("patch {p} gave {other:?}"),
        }
    }
    let missing = strategic_merge(&o, &json!({"spec": {"containers": [{"image": "x"}]}}), &pod());
    assert!(matches!(missing, Err(PatchError::MissingMergeKey { ref key, .. }) if key == "name"), "{missing:?}");
    assert!(matches!(strategic_merge(&json!([]), &json!({}), &pod()), Err(PatchError::Invalid(_))));
}

#[test]
fn unknown_kinds_are_refused() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget"});
    match PatchSchema::for_object(&cr) {
        Err(e @ PatchError::UnsupportedKind { .. }) => assert!(e.to_string().contains("Widget")),
        other => panic!("{other:?}"),
    }
    assert!(PatchSchema::for_object(&json!({"apiVersion": "apps/v1", "kind": "Deployment"})).is_ok());
}
