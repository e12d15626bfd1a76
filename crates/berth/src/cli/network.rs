//! `berth network create|ls|inspect|rm|connect|disconnect|prune`.
use serde_json::{json, Value};

use super::http::query_escape;
use super::table::Format;
use super::{out, CliError, CliResult, Client};

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    Create {
        /// Driver to manage the network (bridge).
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR format, e.g. 10.89.0.0/24 (default: a free block from Docker's pools).
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway for the subnet (the bridge's address: the subnet's first).
        #[arg(long)]
        gateway: Option<String>,
        /// Restrict external access to the network.
        #[arg(long)]
        internal: bool,
        /// Enable manual container attachment.
        #[arg(long)]
        attachable: bool,
        /// Set metadata on a network.
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        /// Set driver specific options.
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
        #[arg(value_name = "NETWORK")]
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Provide filter values (driver=bridge, name=…, id=…, label=…, type=custom|builtin, dangling=true).
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// Format output using a Go template.
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate the output.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Display detailed information on one or more networks.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Remove one or more networks.
    #[command(alias = "remove")]
    Rm {
        /// Do not error if the network does not exist.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Connect a container to a network.
    Connect {
        /// Add a network-scoped alias for the container.
        #[arg(long = "alias")]
        aliases: Vec<String>,
        #[arg(value_name = "NETWORK")]
        network: String,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect {
        /// Force the container to disconnect from a network.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(value_name = "NETWORK")]
        network: String,
        #[arg(value_name = "CONTAINER")]
        container: String,
    },
    /// Remove all unused networks.
    Prune {
        /// Do not prompt for confirmation.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

fn pairs(list: &[String]) -> serde_json::Map<String, Value> {
    list.iter().map(|kv| kv.split_once('=').map_or((kv.clone(), json!("")), |(k, v)| (k.to_string(), json!(v)))).collect()
}

pub async fn network(c: &Client, cmd: NetworkCmd) -> CliResult<u8> {
    match cmd {
        NetworkCmd::Create { driver, subnet, gateway, internal, attachable, labels, opts, name } => {
            let config: Vec<Value> = subnet.map(|s| json!({"Subnet": s, "Gateway": gateway.unwrap_or_default()})).into_iter().collect();
            let body = json!({
                "Name": name, "Driver": driver, "Internal": internal, "Attachable": attachable,
                "IPAM": {"Driver": "default", "Config": config}, "Labels": pairs(&labels), "Options": pairs(&opts),
            })
            .to_string();
            let answer = c.ep.send("POST", "/networks/create", Some(body.as_bytes())).await?.body().await?;
            let v: Value = serde_json::from_slice(&answer).map_err(|e| CliError::Other(format!("invalid answer: {e}")))?;
            out(&format!("{}\n", v["Id"].as_str().unwrap_or_default()));
            Ok(0)
        }
        NetworkCmd::Ls { quiet, filter, format, no_trunc } => {
            let path = super::with_filters("/networks", &filter)?;
            let list = c.ep.json("GET", &path).await?;
            let rows: Vec<Value> = list
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    let id = n["Id"].as_str().unwrap_or_default();
                    let id = if no_trunc { id } else { &id[..id.len().min(12)] };
                    json!({"ID": id, "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"], "Internal": n["Internal"], "Labels": n["Labels"]})
                })
                .collect();
            if quiet && format.is_none() {
                for r in &rows {
                    out(&format!("{}\n", r["ID"].as_str().unwrap_or_default()));
                }
                return Ok(0);
            }
            let headers = [("ID", "NETWORK ID"), ("Name", "NAME"), ("Driver", "DRIVER"), ("Scope", "SCOPE")].iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            out(&Format::parse(format.as_deref(), "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}")?.render(&rows, &headers)?);
            Ok(0)
        }
        NetworkCmd::Inspect { format, names } => {
            let mut all = Vec::new();
            let mut failed = false;
            for n in &names {
                match c.ep.json("GET", &format!("/networks/{}", query_escape(n))).await {
                    Ok(v) => all.push(v),
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            match format {
                Some(f) => out(&Format::parse(Some(&f), "")?.render(&all, &serde_json::Map::new())?),
                None => out(&format!("{}\n", serde_json::to_string_pretty(&all).unwrap_or_default())),
            }
            Ok(u8::from(failed))
        }
        NetworkCmd::Rm { force, names } => {
            let mut failed = false;
            for n in &names {
                match c.ep.send("DELETE", &format!("/networks/{}", query_escape(n)), None).await {
                    Ok(p) => {
                        p.body().await?;
                        out(&format!("{n}\n"));
                    }
                    Err(e) if force && e.to_string().contains("not found") => {}
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Ok(u8::from(failed))
        }
        NetworkCmd::Connect { aliases, network, container } => {
            let body = json!({"Container": container, "EndpointConfig": {"Aliases": aliases}}).to_string();
            c.ep.send("POST", &format!("/networks/{}/connect", query_escape(&network)), Some(body.as_bytes())).await?.body().await?;
            Ok(0)
        }
        NetworkCmd::Disconnect { force, network, container } => {
            let body = json!({"Container": container, "Force": force}).to_string();
            c.ep.send("POST", &format!("/networks/{}/disconnect", query_escape(&network)), Some(body.as_bytes())).await?.body().await?;
            Ok(0)
        }
        NetworkCmd::Prune { force } => {
            if !force
                && !super::confirm("all custom networks not used by at least one container") {
                    return Ok(0);
                }
            let body = c.ep.send("POST", "/networks/prune", None).await?.body().await?;
            let v: Value = serde_json::from_slice(&body).map_err(|e| CliError::Other(format!("invalid answer: {e}")))?;
            let deleted = v["NetworksDeleted"].as_array().cloned().unwrap_or_default();
            if !deleted.is_empty() {
                out("Deleted Networks:\n");
                for d in deleted {
                    out(&format!("{}\n", d.as_str().unwrap_or_default()));
                }
            }
            Ok(0)
        }
    }
}
