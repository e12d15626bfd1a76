//! `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`: the container's published ports.
use super::http::query_escape;
use super::{out, CliError, CliResult, Client};

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub port: Option<String>,
}

pub async fn port(c: &Client, a: PortArgs) -> CliResult<u8> {
    let info = c.ep.json("GET", &format!("/containers/{}/json", query_escape(&a.container))).await?;
    let wanted = a.port.as_ref().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") });
    let mut found = false;
    if let Some(ports) = info["NetworkSettings"]["Ports"].as_object() {
        for (key, bindings) in ports {
            if wanted.as_ref().is_some_and(|w| w != key) {
                continue;
            }
            for b in bindings.as_array().into_iter().flatten() {
                found = true;
                let ip = b["HostIp"].as_str().unwrap_or("0.0.0.0");
                let port = b["HostPort"].as_str().unwrap_or_default();
                if wanted.is_some() {
                    out(&format!("{ip}:{port}\n"));
                } else {
                    out(&format!("{key} -> {ip}:{port}\n"));
                }
            }
        }
    }
    if let (Some(w), false) = (wanted, found) {
        return Err(CliError::Other(format!("Error: No public port '{w}' published for {}", a.container)));
    }
    Ok(0)
}
