//! The crate graph follows design.md's rules: this test reads `cargo metadata` and fails on an edge
//! that breaks them, so a layering mistake is caught when it is made, not in review.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Crate → its direct dependencies (workspace and third-party, normal and build kinds).
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let mut graph = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("package name").to_string();
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            // dev-dependencies may reach further (tests drive real clients); the rules are about
            // what a crate is built from.
            .filter(|d| d["kind"].as_str() != Some("dev"))
            .map(|d| d["name"].as_str().expect("dependency name").to_string())
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// Every (crate, dependency) edge where a crate in `from` depends on one in `to`.
fn edges<'a>(graph: &'a BTreeMap<String, BTreeSet<String>>, from: &[&str], to: &[&str]) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    for (name, deps) in graph {
        if !from.contains(&name.as_str()) {
            continue;
        }
        for dep in deps {
            if to.iter().any(|t| dep == t || (t.ends_with('*') && dep.starts_with(t.trim_end_matches('*')))) {
                found.push((name.as_str(), dep.as_str()));
            }
        }
    }
    found
}

const ENGINE_SIDE: &[&str] =
    &["cgroups", "seccomp", "runtime", "shim", "snapshot", "image", "registry", "net", "engine", "engine-api"];
const CLUSTER_CONTROL: &[&str] = &["store", "apiserver", "resources", "patch", "pki"];
const API_CLIENTS: &[&str] = &["agent", "controllers", "scheduler"];
const KUBERNETES_TYPES: &[&str] = &["k8s-openapi", "kube", "kube-*"];

#[test]
fn no_crate_depends_on_the_binary() {
    let graph = dependency_graph();
    let all: Vec<&str> = graph.keys().map(String::as_str).collect();
    assert_eq!(edges(&graph, &all, &["berth"]), vec![]);
}

#[test]
fn the_engine_side_knows_nothing_of_kubernetes() {
    let graph = dependency_graph();
    let mut forbidden: Vec<&str> = CLUSTER_CONTROL.to_vec();
    forbidden.extend(API_CLIENTS);
    forbidden.extend(KUBERNETES_TYPES);
    assert_eq!(edges(&graph, ENGINE_SIDE, &forbidden), vec![]);
}

#[test]
fn the_control_plane_knows_nothing_of_the_engine() {
    let graph = dependency_graph();
    assert_eq!(edges(&graph, CLUSTER_CONTROL, ENGINE_SIDE), vec![]);
}

#[test]
fn controllers_scheduler_and_agent_reach_the_cluster_only_through_the_api() {
    let graph = dependency_graph();
    let forbidden = ["apiserver", "store", "engine", "engine-api", "runtime", "shim"];
    assert_eq!(edges(&graph, API_CLIENTS, &forbidden), vec![]);
}

#[test]
fn lower_engine_layers_do_not_depend_on_upper_ones() {
    let graph = dependency_graph();
    let lower = ["cgroups", "seccomp", "runtime", "shim", "snapshot", "image", "registry", "net"];
    assert_eq!(edges(&graph, &lower, &["engine", "engine-api"]), vec![]);
    assert_eq!(edges(&graph, &["engine"], &["engine-api"]), vec![]);
}

#[test]
fn the_datastore_and_the_resource_model_do_not_depend_on_the_server() {
    let graph = dependency_graph();
    assert_eq!(edges(&graph, &["store", "resources", "patch"], &["apiserver"]), vec![]);
    assert_eq!(edges(&graph, &["resources", "patch"], &["store"]), vec![]);
}

#[test]
fn the_graph_is_read_from_the_real_workspace() {
    // Guards the rules above against passing vacuously on an empty or misread graph.
    let graph = dependency_graph();
    for name in ["berth", "engine", "runtime", "store"] {
        assert!(graph.contains_key(name), "{name} missing from cargo metadata");
    }
    assert!(graph["berth"].contains("engine"));
}
