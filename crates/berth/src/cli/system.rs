//! `berth version` and `berth info`, in docker's layout, with `--format` templates.
use serde_json::{json, Value};

use super::template::Template;
use super::units::bytes_size;
use super::{out, CliError, CliResult, Client, API_VERSION};

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Format output using a Go template (fields: .Client, .Server).
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Format output using a Go template over the engine's /info answer.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

fn client_info() -> Value {
    json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "APIVersion": API_VERSION,
        "Os": std::env::consts::OS,
        "Arch": go_arch(std::env::consts::ARCH),
    })
}

/// Rust's architecture names in Go's spelling, which docker users see.
fn go_arch(a: &str) -> &str {
    match a {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn template(f: &str) -> CliResult<Template> {
    Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n")).map_err(|e| CliError::Other(e.to_string()))
}

fn render(t: &Template, v: &Value) -> CliResult<()> {
    out(&format!("{}\n", t.render(v).map_err(|e| CliError::Other(e.to_string()))?));
    Ok(())
}

pub async fn version(c: &Client, a: VersionArgs) -> CliResult<u8> {
    let client = client_info();
    let tpl = a.format.as_deref().map(template).transpose()?;
    if tpl.is_none() {
        out(&client_text(&client));
    }
    let mut server = c.ep.json("GET", "/version").await?;
    // docker's templates name the Go fields (.Server.APIVersion), the JSON says ApiVersion.
    if let Some(o) = server.as_object_mut() {
        for (go, api) in [("APIVersion", "ApiVersion"), ("MinAPIVersion", "MinAPIVersion")] {
            if let Some(v) = o.get(api).cloned() {
                o.insert(go.to_string(), v);
            }
        }
    }
    match tpl {
        Some(t) => render(&t, &json!({"Client": client, "Server": server}))?,
        None => out(&server_text(&server)),
    }
    Ok(0)
}

fn client_text(c: &Value) -> String {
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    format!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           {}/{}\n\n",
        s("Version"),
        s("APIVersion"),
        s("Os"),
        s("Arch")
    )
}

fn server_text(v: &Value) -> String {
    let s = |k: &str| v.get(k).map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string())).unwrap_or_default();
    format!(
        "Server:\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  OS/Arch:          {}/{}\n  Kernel Version:   {}\n",
        s("Version"),
        s("ApiVersion"),
        s("MinAPIVersion"),
        s("Os"),
        s("Arch"),
        s("KernelVersion")
    )
}

pub async fn info(c: &Client, a: InfoArgs) -> CliResult<u8> {
    let tpl = a.format.as_deref().map(template).transpose()?;
    let info = c.ep.json("GET", "/info").await?;
    match tpl {
        Some(t) => render(&t, &info)?,
        None => out(&info_text(&info)),
    }
    Ok(0)
}

fn info_text(v: &Value) -> String {
    let s = |k: &str| match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    };
    let mut t = String::from("Server:\n");
    t += &format!(" Containers: {}\n", s("Containers"));
    for (label, key) in [("Running", "ContainersRunning"), ("Paused", "ContainersPaused"), ("Stopped", "ContainersStopped")] {
        t += &format!("  {label}: {}\n", s(key));
    }
    let lines = [
        ("Images", "Images"),
        ("Server Version", "ServerVersion"),
        ("Storage Driver", "Driver"),
        ("Logging Driver", "LoggingDriver"),
        ("Cgroup Driver", "CgroupDriver"),
        ("Cgroup Version", "CgroupVersion"),
        ("Kernel Version", "KernelVersion"),
        ("Operating System", "OperatingSystem"),
        ("OSType", "OSType"),
        ("Architecture", "Architecture"),
        ("CPUs", "NCPU"),
    ];
    for (label, key) in lines {
        if v.get(key).is_some() {
            t += &format!(" {label}: {}\n", s(key));
        }
    }
    if let Some(mem) = v.get("MemTotal").and_then(Value::as_f64) {
        t += &format!(" Total Memory: {}\n", bytes_size(mem));
    }
    for (label, key) in [("Name", "Name"), ("ID", "ID"), ("Docker Root Dir", "DockerRootDir"), ("Debug Mode", "Debug")] {
        if v.get(key).is_some() {
            t += &format!(" {label}: {}\n", s(key));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_text_has_client_and_server_sections() {
        let c = client_text(&client_info());
        assert!(c.starts_with("Client:\n Version:") && c.contains(" API version:       1.44\n"), "{c}");
        let s = server_text(&json!({"Version": "0.1.0", "ApiVersion": "1.44", "MinAPIVersion": "1.24", "Os": "linux", "Arch": "amd64"}));
        assert!(s.contains("  API version:      1.44 (minimum version 1.24)\n"), "{s}");
    }

    #[test]
    fn info_text_reads_like_docker_info() {
        let t = info_text(&json!({"Containers": 3, "ContainersRunning": 1, "ContainersPaused": 0, "ContainersStopped": 2,
            "Images": 1, "ServerVersion": "0.1.0", "MemTotal": 2_087_354_368u64, "Name": "box"}));
        assert!(t.contains(" Containers: 3\n  Running: 1\n  Paused: 0\n  Stopped: 2\n Images: 1\n"), "{t}");
        assert!(t.contains(" Total Memory: 1.944GiB\n") && t.contains(" Name: box\n"), "{t}");
    }

    #[test]
    fn architectures_use_go_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }
}
