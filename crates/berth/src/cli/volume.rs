//! `berth volume create|ls|inspect|rm|prune`.
use serde_json::{json, Value};

use super::http::query_escape;
use super::table::Format;
use super::units::human_size;
use super::{out, CliError, CliResult, Client};

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCmd {
    /// Create a volume.
    Create {
        /// Volume name (also as the argument).
        #[arg(long)]
        name: Option<String>,
        /// Volume driver (local).
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        /// Set metadata for a volume.
        #[arg(short = 'l', long = "label")]
        labels: Vec<String>,
        /// Set driver specific options.
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
        #[arg(value_name = "VOLUME")]
        volume: Option<String>,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls {
        /// Only display volume names.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Provide filter values (dangling=true, name=…).
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
        /// Format output using a Go template.
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more volumes.
    Inspect {
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    Rm {
        /// Force the removal of one or more volumes.
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true, value_name = "VOLUME")]
        names: Vec<String>,
    },
    /// Remove unused local volumes (anonymous ones; with -a all).
    Prune {
        /// Remove all unused volumes, not just anonymous ones.
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not prompt for confirmation.
        #[arg(short = 'f', long)]
        force: bool,
    },
}

fn pairs(list: &[String]) -> serde_json::Map<String, Value> {
    list.iter().map(|kv| kv.split_once('=').map_or((kv.clone(), json!("")), |(k, v)| (k.to_string(), json!(v)))).collect()
}

pub async fn volume(c: &Client, cmd: VolumeCmd) -> CliResult<u8> {
    match cmd {
        VolumeCmd::Create { name, driver, labels, opts, volume } => {
            let body = json!({"Name": volume.or(name).unwrap_or_default(), "Driver": driver, "Labels": pairs(&labels), "DriverOpts": pairs(&opts)}).to_string();
            let answer = c.ep.send("POST", "/volumes/create", Some(body.as_bytes())).await?.body().await?;
            let v: Value = serde_json::from_slice(&answer).map_err(|e| CliError::Other(format!("invalid answer: {e}")))?;
            out(&format!("{}\n", v["Name"].as_str().unwrap_or_default()));
            Ok(0)
        }
        VolumeCmd::Ls { quiet, filter, format } => {
            let path = super::with_filters("/volumes", &filter)?;
            let list = c.ep.json("GET", &path).await?;
            let rows: Vec<Value> = list["Volumes"].as_array().cloned().unwrap_or_default().iter().map(|v| json!({"Driver": v["Driver"], "Name": v["Name"], "Mountpoint": v["Mountpoint"]})).collect();
            if quiet && format.is_none() {
                for r in &rows {
                    out(&format!("{}\n", r["Name"].as_str().unwrap_or_default()));
                }
                return Ok(0);
            }
            let headers = [("Driver", "DRIVER"), ("Name", "VOLUME NAME"), ("Mountpoint", "MOUNTPOINT")].iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            out(&Format::parse(format.as_deref(), "table {{.Driver}}\t{{.Name}}")?.render(&rows, &headers)?);
            Ok(0)
        }
        VolumeCmd::Inspect { format, names } => {
            let mut all = Vec::new();
            for n in &names {
                all.push(c.ep.json("GET", &format!("/volumes/{}", query_escape(n))).await?);
            }
            match format {
                Some(f) => out(&Format::parse(Some(&f), "")?.render(&all, &serde_json::Map::new())?),
                None => out(&format!("{}\n", serde_json::to_string_pretty(&all).unwrap_or_default())),
            }
            Ok(0)
        }
        VolumeCmd::Rm { force, names } => {
            let mut failed = false;
            for n in &names {
                match c.ep.send("DELETE", &format!("/volumes/{}?force={}", query_escape(n), u8::from(force)), None).await {
                    Ok(p) => {
                        p.body().await?;
                        out(&format!("{n}\n"));
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        failed = true;
                    }
                }
            }
            Ok(u8::from(failed))
        }
        VolumeCmd::Prune { all, force } => {
            if !force
                && !super::confirm(&format!("{} local volumes not used by at least one container", if all { "all" } else { "anonymous" })) {
                    return Ok(0);
                }
            let filters = if all { r#"{"all":["true"]}"# } else { "{}" };
            let body = c.ep.send("POST", &format!("/volumes/prune?filters={}", query_escape(filters)), None).await?.body().await?;
            let v: Value = serde_json::from_slice(&body).map_err(|e| CliError::Other(format!("invalid answer: {e}")))?;
            let deleted = v["VolumesDeleted"].as_array().cloned().unwrap_or_default();
            if !deleted.is_empty() {
                out("Deleted Volumes:\n");
                for d in deleted {
                    out(&format!("{}\n", d.as_str().unwrap_or_default()));
                }
                out("\n");
            }
            out(&format!("Total reclaimed space: {}\n", human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0), 3)));
            Ok(0)
        }
    }
}
