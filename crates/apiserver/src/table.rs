//! Server-side printing: `meta.k8s.io/v1` Tables with the columns kubectl shows per resource.

use serde_json::{json, Value};

use crate::kinds::Kind;

/// A column: name, type, priority (0 = always shown, 1 = `-o wide` only).
type Column = (&'static str, &'static str, u8);

fn columns(kind: &Kind) -> Vec<Column> {
    match kind.kind {
        "Namespace" => vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        "ConfigMap" => vec![("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        "Secret" => vec![("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        "ServiceAccount" => vec![("Name", "string", 0), ("Secrets", "integer", 0), ("Age", "string", 0)],
        "Pod" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "Service" => vec![
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "Deployment" => vec![
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0), ("Age", "string", 0)],
        "StatefulSet" => vec![("Name", "string", 0), ("Ready", "string", 0), ("Age", "string", 0)],
        "DaemonSet" => vec![
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
        ],
        "Job" => vec![("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0), ("Duration", "string", 0), ("Age", "string", 0)],
        "CronJob" => vec![
            ("Name", "string", 0),
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
        ],
        "Node" => vec![("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0), ("Version", "string", 0)],
        "Event" => vec![("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0), ("Object", "string", 0), ("Message", "string", 0)],
        "Endpoints" => vec![("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        "Lease" => vec![("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        _ => vec![("Name", "string", 0), ("Age", "string", 0)],
    }
}

/// Kubernetes' short durations: `45s`, `3m20s`, `5h`, `2d3h`, `3y`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        s if s < 2 * 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

fn age(ts: &Value) -> String {
    ts.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn len(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len()) + v.as_array().map_or(0, Vec::len)
}

fn n(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let statuses = st["containerStatuses"].as_array().cloned().unwrap_or_default();
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"].as_bool() == Some(true)).count();
    let restarts: i64 = statuses.iter().map(|c| n(&c["restartCount"])).sum();
    let mut status = st["reason"].as_str().map(String::from).unwrap_or_else(|| s(&st["phase"]));
    for c in &statuses {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            status = r.to_string();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            status = r.to_string();
        }
    }
    if !o["metadata"]["deletionTimestamp"].is_null() {
        status = "Terminating".into();
    }
    let node = o["spec"]["nodeName"].as_str().unwrap_or("<none>");
    let ip = o["status"]["podIP"].as_str().unwrap_or("<none>");
    let nominated = o["status"]["nominatedNodeName"].as_str().unwrap_or("<none>");
    vec![json!(format!("{ready}/{total}")), json!(status), json!(restarts.to_string()), json!(age(&o["metadata"]["creationTimestamp"])), json!(ip), json!(node), json!(nominated), json!("<none>")]
}

fn service_ports(spec: &Value) -> String {
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| match p["nodePort"].as_i64() {
            Some(np) => format!("{}:{np}/{}", n(&p["port"]), s(&p["protocol"])),
            None => format!("{}/{}", n(&p["port"]), s(&p["protocol"])),
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn selector_text(sel: &Value) -> String {
    let m = sel.get("matchLabels").unwrap_or(sel);
    let parts: Vec<String> = m.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", s(v))).collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// The cells of one object's row (after its name).
fn cells(kind: &Kind, o: &Value) -> Vec<Value> {
    let name = json!(s(&o["metadata"]["name"]));
    let created = age(&o["metadata"]["creationTimestamp"]);
    let spec = &o["spec"];
    let st = &o["status"];
    let mut row = match kind.kind {
        "Namespace" => vec![name, json!(s(&st["phase"])), json!(created)],
        "ConfigMap" => vec![name, json!(len(&o["data"]) + len(&o["binaryData"])), json!(created)],
        "Secret" => vec![name, json!(s(&o["type"])), json!(len(&o["data"])), json!(created)],
        "ServiceAccount" => vec![name, json!(len(&o["secrets"])), json!(created)],
        "Pod" => {
            let mut v = vec![name];
            v.extend(pod_cells(o));
            v
        }
        "Service" => {
            let external = spec["externalIPs"].as_array().map(|a| a.iter().map(s).collect::<Vec<_>>().join(",")).filter(|e| !e.is_empty()).unwrap_or_else(|| "<none>".into());
            vec![name, json!(s(&spec["type"])), json!(spec["clusterIP"].as_str().unwrap_or("<none>")), json!(external), json!(service_ports(spec)), json!(created), json!(selector_text(&spec["selector"]))]
        }
        "Deployment" => {
            let containers = &spec["template"]["spec"]["containers"];
            let names: Vec<String> = containers.as_array().into_iter().flatten().map(|c| s(&c["name"])).collect();
            let images: Vec<String> = containers.as_array().into_iter().flatten().map(|c| s(&c["image"])).collect();
            vec![
                name,
                json!(format!("{}/{}", n(&st["readyReplicas"]), spec["replicas"].as_i64().unwrap_or(1))),
                json!(n(&st["updatedReplicas"])),
                json!(n(&st["availableReplicas"])),
                json!(created),
                json!(names.join(",")),
                json!(images.join(",")),
                json!(selector_text(&spec["selector"])),
            ]
        }
        "ReplicaSet" => vec![name, json!(spec["replicas"].as_i64().unwrap_or(1)), json!(n(&st["replicas"])), json!(n(&st["readyReplicas"])), json!(created)],
        "StatefulSet" => vec![name, json!(format!("{}/{}", n(&st["readyReplicas"]), spec["replicas"].as_i64().unwrap_or(1))), json!(created)],
        "DaemonSet" => vec![
            name,
            json!(n(&st["desiredNumberScheduled"])),
            json!(n(&st["currentNumberScheduled"])),
            json!(n(&st["numberReady"])),
            json!(n(&st["updatedNumberScheduled"])),
            json!(n(&st["numberAvailable"])),
            json!(selector_text(&spec["template"]["spec"]["nodeSelector"])),
            json!(created),
        ],
        "Job" => {
            let done = st["conditions"].as_array().into_iter().flatten().find(|c| c["status"] == "True").and_then(|c| c["type"].as_str()).unwrap_or("Running");
            let status = match done {
                "Complete" => "Complete",
                "Failed" => "Failed",
                _ => "Running",
            };
            vec![name, json!(status), json!(format!("{}/{}", n(&st["succeeded"]), spec["completions"].as_i64().unwrap_or(1))), json!(""), json!(created)]
        }
        "CronJob" => vec![
            name,
            json!(s(&spec["schedule"])),
            json!(spec["timeZone"].as_str().unwrap_or("<none>")),
            json!(spec["suspend"].as_bool().unwrap_or(false)),
            json!(len(&st["active"])),
            json!(if st["lastScheduleTime"].is_null() { "<none>".to_string() } else { age(&st["lastScheduleTime"]) }),
            json!(created),
        ],
        "Node" => {
            let ready = st["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready").map(|c| c["status"] == "True");
            let mut status = match ready {
                Some(true) => "Ready".to_string(),
                _ => "NotReady".to_string(),
            };
            if spec["unschedulable"].as_bool() == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
                .collect();
            let roles = if roles.is_empty() { "<none>".to_string() } else { roles.join(",") };
            vec![name, json!(status), json!(roles), json!(created), json!(s(&st["nodeInfo"]["kubeletVersion"]))]
        }
        "Event" => {
            let last = if o["lastTimestamp"].is_null() { &o["eventTime"] } else { &o["lastTimestamp"] };
            let io = &o["involvedObject"];
            vec![json!(age(last)), json!(s(&o["type"])), json!(s(&o["reason"])), json!(format!("{}/{}", s(&io["kind"]).to_lowercase(), s(&io["name"]))), json!(s(&o["message"]))]
        }
        "Endpoints" => {
            let eps: Vec<String> = o["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|ss| {
                    let ports: Vec<i64> = ss["ports"].as_array().into_iter().flatten().map(|p| n(&p["port"])).collect();
                    ss["addresses"].as_array().into_iter().flatten().flat_map(move |a| {
                        let ip = s(&a["ip"]);
                        let ports = ports.clone();
                        if ports.is_empty() { vec![ip] } else { ports.into_iter().map(|p| format!("{ip}:{p}")).collect() }
                    })
                })
                .collect();
            vec![name, json!(if eps.is_empty() { "<none>".to_string() } else { eps.join(",") }), json!(created)]
        }
        "Lease" => vec![name, json!(spec["holderIdentity"].as_str().unwrap_or("")), json!(created)],
        _ => vec![name, json!(created)],
    };
    row.truncate(columns(kind).len());
    row
}

/// The row's object: PartialObjectMetadata (what kubectl needs for -A and --show-labels).
fn partial(kind: &Kind, o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"], "_kind": kind.kind})
}

/// A Table of `objects`; `with_columns` false for watch events after the first.
pub fn table(kind: &Kind, objects: &[&Value], resource_version: &str, continue_token: Option<&str>, with_columns: bool) -> Value {
    let defs: Vec<Value> = if with_columns {
        columns(kind)
            .iter()
            .map(|(name, ty, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut p = partial(kind, o);
            if let Some(m) = p.as_object_mut() {
                m.remove("_kind");
            }
            json!({"cells": cells(kind, o), "object": p})
        })
        .collect();
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::by_kind;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(5 * 3600 + 60), "5h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 7200), "3d2h");
        assert_eq!(human_duration(800 * 86400), "2y");
    }

    #[test]
    fn rows_have_one_cell_per_column() {
        for kind in crate::kinds::KINDS {
            let t = table(kind, &[&json!({"metadata": {"name": "x"}})], "1", None, true);
            assert_eq!(t["rows"][0]["cells"].as_array().map(Vec::len), t["columnDefinitions"].as_array().map(Vec::len), "{}", kind.kind);
        }
        let cm = by_kind("v1", "ConfigMap").expect("cm");
        let t = table(cm, &[&json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})], "7", None, true);
        assert_eq!(t["rows"][0]["cells"][1], 2);
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
