//! JSON patch, merge patch, three-way apply patches and server-side apply.

use patch::{json_patch, merge_patch, server_side_apply, strategic_merge, three_way_merge, two_way_merge, PatchError, PatchSchema};
use serde_json::{json, Value};

fn deploy() -> PatchSchema {
    PatchSchema::for_kind("apps/v1", "Deployment").expect("Deployment schema")
}

#[test]
fn json_patch_rfc6902() {
    let doc = json!({"a": {"b": [1, 2, 3]}, "c/d": 1, "e~f": 2});
    let p = json!([
        {"op": "add", "path": "/a/b/1", "value": 9},
        {"op": "add", "path": "/a/b/-", "value": 4},
        {"op": "remove", "path": "/a/b/0"},
        {"op": "replace", "path": "/c~1d", "value": 5},
        {"op": "copy", "from": "/e~0f", "path": "/g"},
        {"op": "move", "from": "/a/b", "path": "/h"},
        {"op": "test", "path": "/g", "value": 2},
    ]);
    assert_eq!(
        json_patch(&doc, &p),
        Ok(json!({"a": {}, "c/d": 5, "e~f": 2, "g": 2, "h": [9, 2, 3, 4]}))
    );
    // Failures name the operation and leave nothing half-applied.
    let err = json_patch(&doc, &json!([{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/x", "value": 2}]));
    assert!(matches!(err, Err(PatchError::JsonPatch { index: 1, ref op, .. }) if op == "test"), "{err:?}");
    for bad in [
        json!([{"op": "remove", "path": "/nope"}]),
        json!([{"op": "replace", "path": "/a/b/7", "value": 1}]),
        json!([{"op": "add", "path": "/a/b/01", "value": 1}]),
        json!([{"op": "move", "from": "/a", "path": "/a/z"}]),
        json!([{"op": "frob", "path": "/a"}]),
        json!([{"op": "add", "path": "/a"}]),
        json!([{"op": "add", "path": "a", "value": 1}]),
        json!({"op": "add"}),
    ] {
        assert!(json_patch(&doc, &bad).is_err(), "{bad} should fail");
    }
    assert_eq!(json_patch(&doc, &json!([{"op": "replace", "path": "", "value": 1}])), Ok(json!(1)));
}

#[test]
fn merge_patch_rfc7386() {
    // The examples of RFC 7386 section 3, in spirit.
    for (o, p, want) in [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
        (json!(["a"]), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        (json!({"spec": {"replicas": 1, "x": 2}}), json!({"spec": {"replicas": 3}}), json!({"spec": {"replicas": 3, "x": 2}})),
    ] {
        assert_eq!(merge_patch(&o, &p), want, "{o} + {p}");
    }
}

fn app(env: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "busybox", "env": env}]}}}
    })
}

/// The patch kubectl's CreateThreeWayMergePatch builds when an env var is
/// dropped from the applied file: a `$patch: delete` element plus the
/// `$setElementOrder` of both merged lists on the way down.
#[test]
fn kubectl_reapply_after_removing_env_var() {
    let last = app(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]), json!({"app": "web"}));
    let mut current = last.clone();
    current["spec"]["replicas"] = json!(5); // scaled by someone else
    current["status"] = json!({"replicas": 5});
    let modified = app(json!([{"name": "A", "value": "1"}]), json!({"app": "web"}));
    let p = three_way_merge(&last, &modified, &current, &deploy()).expect("patch");
    assert_eq!(
        p,
        json!({"spec": {"replicas": 1, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"name": "c", "$setElementOrder/env": [{"name": "A"}], "env": [{"name": "B", "$patch": "delete"}]}]
        }}}})
    );
    let applied = strategic_merge(&current, &p, &deploy()).expect("apply");
    assert_eq!(applied["spec"]["template"], modified["spec"]["template"]);
    assert_eq!(applied["status"], json!({"replicas": 5}), "fields only the server has survive");
}

#[test]
fn kubectl_reapply_after_removing_label() {
    let last = app(json!([]), json!({"app": "web", "tier": "x"}));
    let mut current = last.clone();
    current["metadata"]["labels"]["added-by-server"] = json!("y");
    let modified = app(json!([]), json!({"app": "web"}));
    let p = three_way_merge(&last, &modified, &current, &deploy()).expect("patch");
    // Only what the last apply set is deleted; the server's label is not touched.
    assert_eq!(p, json!({"metadata": {"labels": {"tier": null}}}));
    let applied = strategic_merge(&current, &p, &deploy()).expect("apply");
    assert_eq!(applied["metadata"]["labels"], json!({"app": "web", "added-by-server": "y"}));
}

/// The Python client sends a dict body to patch_namespaced_deployment as
/// `application/strategic-merge-patch+json`, unchanged.
#[test]
fn python_client_dict_patch() {
    let current = app(json!([{"name": "A", "value": "1"}]), json!({"app": "web"}));
    let body = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    let got = strategic_merge(&current, &body, &deploy()).expect("apply");
    assert_eq!(got["spec"]["replicas"], json!(3));
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"],
        json!([{"name": "c", "image": "busybox:2", "env": [{"name": "A", "value": "1"}]}])
    );
}

#[test]
fn finalizer_removal_via_three_way_and_two_way() {
    let schema = PatchSchema::for_kind("v1", "ConfigMap").expect("schema");
    let o = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
    let m = json!({"metadata": {"finalizers": ["a", "c"]}});
    let p = two_way_merge(&o, &m, &schema).expect("diff");
    assert_eq!(
        p,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "$setElementOrder/finalizers": ["a", "c"]}})
    );
    assert_eq!(strategic_merge(&o, &p, &schema), Ok(m));
}

#[test]
fn server_side_apply_creates_or_merges() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}});
    let schema = PatchSchema::for_object(&cm).expect("schema");
    assert_eq!(server_side_apply(None, &cm, &schema), Ok(cm.clone()));
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "uid": "u"}, "data": {"a": "0", "b": "2"}});
    let got = server_side_apply(Some(&live), &cm, &schema).expect("apply");
    assert_eq!(got["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(got["metadata"]["uid"], json!("u"));
    // Custom resources: maps merge, lists replace.
    let cr = json!({"spec": {"items": [1, 2], "m": {"x": 1}}});
    let got = server_side_apply(Some(&cr), &json!({"spec": {"items": [3], "m": {"y": 2}}}), &PatchSchema::untyped());
    assert_eq!(got, Ok(json!({"spec": {"items": [3], "m": {"x": 1, "y": 2}}})));
}

/// A small deterministic generator (xorshift) for the property test below;
/// no dependency needed for a few hundred random objects.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn subset(&mut self, pool: &[&str]) -> Vec<String> {
        pool.iter().filter(|_| self.pick(2) == 0).map(|s| s.to_string()).collect()
    }
}

fn random_deployment(r: &mut Rng) -> Value {
    let containers: Vec<Value> = r
        .subset(&["a", "b", "c", "d"])
        .into_iter()
        .map(|name| {
            let env: Vec<Value> = r
                .subset(&["E1", "E2", "E3"])
                .into_iter()
                .map(|n| json!({"name": n, "value": r.pick(3).to_string()}))
                .collect();
            let ports: Vec<Value> = r.subset(&["80", "443"]).into_iter().map(|p| json!({"containerPort": p.parse::<u16>().unwrap_or(80)})).collect();
            let mut c = json!({"name": name, "image": format!("img{}", r.pick(3))});
            if !env.is_empty() {
                c["env"] = Value::Array(env);
            }
            if !ports.is_empty() {
                c["ports"] = Value::Array(ports);
            }
            if r.pick(2) == 0 {
                c["args"] = json!(r.subset(&["x", "y", "z"]));
            }
            c
        })
        .collect();
    let mut labels = serde_json::Map::new();
    for l in r.subset(&["app", "tier", "team"]) {
        labels.insert(l, json!(r.pick(2).to_string()));
    }
    let mut d = json!({
        "metadata": {"name": "d", "labels": labels, "finalizers": r.subset(&["f1", "f2", "f3"])},
        "spec": {"replicas": r.pick(4), "template": {"spec": {"containers": containers}}}
    });
    if r.pick(2) == 0 {
        d["spec"]["strategy"] = if r.pick(2) == 0 {
            json!({"type": "Recreate"})
        } else {
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}})
        };
    }
    d
}

/// For random last-applied/modified pairs, with the live object equal to the
/// last applied one, the three-way patch turns the live object into exactly
/// `modified`; with a server-only field added to the live object, that field
/// survives and everything `modified` says still holds.
#[test]
fn three_way_patch_yields_modified() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..400 {
        let original = random_deployment(&mut r);
        let modified = random_deployment(&mut r);
        let p = three_way_merge(&original, &modified, &original, &deploy()).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let got = strategic_merge(&original, &p, &deploy()).unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(got, modified, "case {i}: original {original}\nmodified {modified}\npatch {p}");

        let mut current = original.clone();
        current["status"] = json!({"observedGeneration": i});
        current["metadata"]["annotations"] = json!({"server": "yes"});
        let p = three_way_merge(&original, &modified, &current, &deploy()).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let got = strategic_merge(&current, &p, &deploy()).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let mut want = modified.clone();
        want["status"] = json!({"observedGeneration": i});
        want["metadata"]["annotations"] = json!({"server": "yes"});
        assert_eq!(got, want, "case {i} with server fields: patch {p}");
    }
}
