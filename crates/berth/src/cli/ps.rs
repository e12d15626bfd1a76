//! `berth ps`: docker's columns, wording and `--format` over the engine's container list.
use serde_json::{json, Map, Value};

use super::http::query_escape;
use super::table::{ellipsis, go_quote, short_id, Format};
use super::units::{ago, human_size};
use super::{out, CliError, CliResult, Client};

const DEFAULT_FORMAT: &str = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
const SIZE_FORMAT: &str = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}";

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Display total file sizes.
    #[arg(short = 's', long)]
    pub size: bool,
    /// Filter output based on conditions provided (key=value).
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template, "table …" or "json".
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long = "last", allow_negative_numbers = true)]
    pub last: Option<i64>,
    /// Show the latest created container (includes all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
}

/// `-f a=b -f a=c -f k=v` → `{"a":{"b":true,"c":true},"k":{"v":true}}` (docker's shape).
pub fn filters_json(filters: &[String]) -> Result<Option<String>, CliError> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut m: Map<String, Value> = Map::new();
    for f in filters {
        let Some((k, v)) = f.split_once('=') else {
            return Err(CliError::Other(format!("bad format of filter (expected name=value): {f}")));
        };
        let entry = m.entry(k.to_string()).or_insert_with(|| json!({}));
        if let Some(o) = entry.as_object_mut() {
            o.insert(v.to_string(), Value::Bool(true));
        }
    }
    Ok(Some(Value::Object(m).to_string()))
}

pub async fn ps(c: &Client, a: PsArgs) -> CliResult<u8> {
    let mut query = Vec::new();
    let limit = if a.latest { Some(1) } else { a.last.filter(|n| *n > 0) };
    if a.all || limit.is_some() {
        query.push("all=1".to_string());
    }
    if let Some(n) = limit {
        query.push(format!("limit={n}"));
    }
    if a.size {
        query.push("size=1".to_string());
    }
    if let Some(f) = filters_json(&a.filter)? {
        query.push(format!("filters={}", query_escape(&f)));
    }
    let path = if query.is_empty() { "/containers/json".to_string() } else { format!("/containers/json?{}", query.join("&")) };
    let list = c.ep.json("GET", &path).await?;
    let mut containers = list.as_array().cloned().unwrap_or_default();
    containers.sort_by_key(|c| std::cmp::Reverse(c.get("Created").and_then(Value::as_i64).unwrap_or(0)));
    out(&render(&containers, &a, chrono::Utc::now().timestamp())?);
    Ok(0)
}

fn render(containers: &[Value], a: &PsArgs, now: i64) -> CliResult<String> {
    let rows: Vec<Value> = containers.iter().map(|c| row(c, !a.no_trunc, now)).collect();
    if a.quiet && a.format.is_none() {
        return Ok(rows.iter().map(|r| format!("{}\n", r["ID"].as_str().unwrap_or_default())).collect());
    }
    let default = if a.size { SIZE_FORMAT } else { DEFAULT_FORMAT };
    Format::parse(a.format.as_deref(), default)?.render(&rows, &headers())
}

fn headers() -> Map<String, Value> {
    let pairs = [
        ("ID", "CONTAINER ID"),
        ("Image", "IMAGE"),
        ("Command", "COMMAND"),
        ("CreatedAt", "CREATED AT"),
        ("RunningFor", "CREATED"),
        ("Ports", "PORTS"),
        ("State", "STATE"),
        ("Status", "STATUS"),
        ("Size", "SIZE"),
        ("Names", "NAMES"),
        ("Labels", "LABELS"),
        ("Mounts", "MOUNTS"),
        ("Networks", "NETWORKS"),
    ];
    pairs.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect()
}

/// One container as docker's formatter sees it: every field a display string.
fn row(c: &Value, trunc: bool, now: i64) -> Value {
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let id = s("Id");
    let mut image = s("Image");
    if image.is_empty() {
        image = "<no image>".to_string();
    } else if trunc && image.starts_with("sha256:") {
        image = short_id(&image);
    }
    let command = if trunc { ellipsis(&s("Command"), 20) } else { s("Command") };
    let created = c.get("Created").and_then(Value::as_i64).unwrap_or(0);
    let names: Vec<String> = c
        .get("Names")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|n| n.trim_start_matches('/').to_string())
        // Legacy link names (containing another '/') only without truncation, as docker.
        .filter(|n| !trunc || !n.contains('/'))
        .collect();
    let state = s("State");
    let status = match s("Status") {
        st if !st.is_empty() => st,
        _ if state == "created" => "Created".to_string(),
        _ => state.clone(),
    };
    let labels = c.get("Labels").and_then(Value::as_object).map(|m| {
        let mut kv: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
        kv.sort();
        kv.join(",")
    });
    let networks = c.pointer("/NetworkSettings/Networks").and_then(Value::as_object).map(|m| m.keys().cloned().collect::<Vec<_>>().join(","));
    let mounts = c.get("Mounts").and_then(Value::as_array).map(|m| {
        m.iter().filter_map(|x| x.get("Name").or(x.get("Source")).and_then(Value::as_str)).map(|n| ellipsis(n, 15)).collect::<Vec<_>>().join(",")
    });
    json!({
        "ID": if trunc { short_id(&id) } else { id },
        "Image": image,
        "Command": go_quote(&command),
        "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
        "RunningFor": ago(created, now),
        "Ports": ports(c.get("Ports")),
        "State": state,
        "Status": status,
        "Size": size(c),
        "Names": names.join(","),
        "Labels": labels.unwrap_or_default(),
        "Mounts": mounts.unwrap_or_default(),
        "Networks": networks.unwrap_or_default(),
    })
}

fn size(c: &Value) -> String {
    let rw = c.get("SizeRw").and_then(Value::as_i64).unwrap_or(0);
    let root = c.get("SizeRootFs").and_then(Value::as_i64).unwrap_or(0);
    let srw = human_size(rw as f64, 3);
    if root > 0 {
        format!("{srw} (virtual {})", human_size(root as f64, 3))
    } else {
        srw
    }
}

/// "0.0.0.0:8080->80/tcp, 443/tcp", in the engine's order.
fn ports(p: Option<&Value>) -> String {
    let Some(list) = p.and_then(Value::as_array) else { return String::new() };
    list.iter()
        .map(|p| {
            let private = p.get("PrivatePort").and_then(Value::as_u64).unwrap_or(0);
            let proto = p.get("Type").and_then(Value::as_str).unwrap_or("tcp");
            match (p.get("IP").and_then(Value::as_str), p.get("PublicPort").and_then(Value::as_u64)) {
                (Some(ip), Some(public)) if public > 0 => {
                    let ip = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
                    format!("{ip}:{public}->{private}/{proto}")
                }
                _ => format!("{private}/{proto}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: PsArgs,
    }

    fn args(v: &[&str]) -> PsArgs {
        T::try_parse_from(std::iter::once("ps").chain(v.iter().copied())).map(|t| t.a).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sample(now: i64) -> Vec<Value> {
        vec![
            json!({
                "Id": "4f2a6b0e9c1d1234567890abcdef1234567890abcdef1234567890abcdef1234",
                "Names": ["/web"], "Image": "bb:1", "Command": "sh -c 'echo started; exec sleep 1000'",
                "Created": now - 5, "State": "running", "Status": "Up 3 seconds", "Ports": [],
                "Labels": {"b": "2", "a": "1"}
            }),
            json!({
                "Id": "0123456789ab0000", "Names": ["/old"], "Image": "sha256:aabbccddeeff00112233",
                "Command": "true", "Created": now - 7200, "State": "exited", "Status": "Exited (0) 2 minutes ago",
                "Ports": [{"PrivatePort": 80, "PublicPort": 8080, "IP": "0.0.0.0", "Type": "tcp"}, {"PrivatePort": 53, "Type": "udp"}]
            }),
        ]
    }

    #[test]
    fn the_default_table_matches_docker_layout() {
        let now = 1_000_000;
        let s = render(&sample(now), &args(&[]), now).unwrap_or_default();
        let expected = "\
CONTAINER ID   IMAGE          COMMAND                  CREATED         STATUS                     PORTS                          NAMES
4f2a6b0e9c1d   bb:1           \"sh -c 'echo started…\"   5 seconds ago   Up 3 seconds                                              web
0123456789ab   aabbccddeeff   \"true\"                   2 hours ago     Exited (0) 2 minutes ago   0.0.0.0:8080->80/tcp, 53/udp   old
";
        assert_eq!(s, expected);
    }

    #[test]
    fn quiet_prints_short_ids_or_full_ones_with_no_trunc() {
        let now = 0;
        assert_eq!(render(&sample(now), &args(&["-q"]), now).unwrap_or_default(), "4f2a6b0e9c1d\n0123456789ab\n");
        let full = render(&sample(now), &args(&["-aq", "--no-trunc"]), now).unwrap_or_default();
        assert!(full.starts_with("4f2a6b0e9c1d1234567890abcdef"), "{full}");
    }

    #[test]
    fn custom_formats_see_docker_field_names() {
        let now = 100;
        let s = render(&sample(now), &args(&["--format", "{{.Names}} {{.Status}} {{.Labels}}"]), now).unwrap_or_default();
        assert_eq!(s, "web Up 3 seconds a=1,b=2\nold Exited (0) 2 minutes ago \n");
        let t = render(&sample(now)[..1], &args(&["--format", "table {{.Names}}\\t{{.RunningFor}}"]), now).unwrap_or_default();
        assert_eq!(t, "NAMES     CREATED\nweb       5 seconds ago\n");
    }

    #[test]
    fn size_column_shows_writable_and_virtual_sizes() {
        assert_eq!(size(&json!({"SizeRw": 12, "SizeRootFs": 4_260_000})), "12B (virtual 4.26MB)");
        assert_eq!(size(&json!({})), "0B");
    }

    #[test]
    fn filters_use_docker_map_shape() {
        let f = filters_json(&["label=a=b".into(), "status=exited".into(), "status=created".into()]).ok().flatten();
        let v: Value = serde_json::from_str(&f.unwrap_or_default()).unwrap_or_default();
        assert_eq!(v, json!({"label": {"a=b": true}, "status": {"exited": true, "created": true}}));
        assert!(filters_json(&["nonsense".into()]).is_err());
        assert_eq!(filters_json(&[]).ok().flatten(), None);
    }
}
