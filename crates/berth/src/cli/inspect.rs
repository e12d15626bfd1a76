//! `berth inspect`: containers first, then images (docker's fall-through), printed as a JSON array
//! with 4-space indentation or through a Go template.
use serde::Serialize;
use serde_json::Value;

use super::template::Template;
use super::{out, CliError, CliResult, Client};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Format output using a Go template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only inspect objects of this type (container or image).
    #[arg(long = "type", value_parser = ["container", "image"])]
    pub kind: Option<String>,
    /// Display total file sizes if the type is container.
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

pub async fn inspect(c: &Client, a: InspectArgs) -> CliResult<u8> {
    let template = a
        .format
        .as_deref()
        .map(|f| Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n")))
        .transpose()
        .map_err(|e| CliError::Other(e.to_string()))?;
    let mut found = Vec::new();
    let mut failed = false;
    for name in &a.names {
        match lookup(c, name, a.kind.as_deref(), a.size).await {
            Ok(v) => found.push(v),
            Err(e @ CliError::Unreachable { .. }) => return Err(e),
            Err(CliError::Daemon { status: 404, .. }) if a.kind.is_none() => {
                failed = true;
                eprintln!("Error: No such object: {name}");
            }
            Err(e) => {
                failed = true;
                eprintln!("{e}");
            }
        }
    }
    match template {
        Some(t) => {
            for v in &found {
                match t.render(v) {
                    Ok(s) => out(&format!("{s}\n")),
                    Err(e) => {
                        eprintln!("berth: {e}");
                        return Ok(1);
                    }
                }
            }
        }
        None => out(&format!("{}\n", pretty(&Value::Array(found)))),
    }
    Ok(u8::from(failed))
}

async fn lookup(c: &Client, name: &str, kind: Option<&str>, size: bool) -> CliResult<Value> {
    let size_q = if size { "?size=1" } else { "" };
    if kind != Some("image") {
        match c.ep.json("GET", &format!("/containers/{name}/json{size_q}")).await {
            Err(e) if e.is_not_found() && kind.is_none() => {}
            other => return other,
        }
    }
    c.ep.json("GET", &format!("/images/{name}/json")).await
}

/// JSON with 4-space indentation, as docker's `json.MarshalIndent(v, "", "    ")`.
pub fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(buf).unwrap_or_else(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inspect_against(names: &[&str]) -> (CliResult<u8>, Vec<String>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let fake = super::super::fake_engine::FakeEngine::start(Default::default());
            let client = super::super::host::connect(fake.socket.clone()).unwrap_or_else(|e| panic!("{e}"));
            let a = InspectArgs { format: Some("{{.Id}}".into()), kind: None, size: false, names: names.iter().map(|n| n.to_string()).collect() };
            (inspect(&client, a).await, fake.requests())
        })
    }

    #[test]
    fn inspect_falls_through_from_containers_to_images() {
        let (code, reqs) = inspect_against(&["bb:1"]);
        assert_eq!(code.ok(), Some(0));
        let paths: Vec<&str> = reqs.iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
        assert_eq!(paths, ["/v1.44/containers/bb:1/json", "/v1.44/images/bb:1/json"]);
    }

    #[test]
    fn inspecting_nothing_that_exists_fails_with_exit_1() {
        let (code, _) = inspect_against(&["c1", "nothing-here"]);
        assert_eq!(code.ok(), Some(1));
    }

    #[test]
    fn json_is_indented_with_four_spaces() {
        let v = json!([{"Id": "x", "State": {"Running": true}}]);
        assert_eq!(pretty(&v), "[\n    {\n        \"Id\": \"x\",\n        \"State\": {\n            \"Running\": true\n        }\n    }\n]");
        assert_eq!(pretty(&json!([])), "[]");
    }
}
