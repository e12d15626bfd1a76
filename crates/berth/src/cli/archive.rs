//! `save`, `load`, `history` and `image prune`: archives stream between the engine and a file
//! (or stdout/stdin), as docker does.
use std::io::{IsTerminal, Write};

use serde_json::Value;

use super::http::query_escape;
use super::table::{short_id, Format};
use super::units::{ago, human_size};
use super::{out, CliError, CliResult, Client};

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short = 'o', long)]
    pub output: Option<std::path::PathBuf>,
    #[arg(required = true, value_name = "IMAGE")]
    pub names: Vec<String>,
}

pub async fn save(c: &Client, a: SaveArgs) -> CliResult<u8> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::Other("cowardly refusing to save to a terminal. Use the -o flag or redirect".into()));
    }
    let query: Vec<String> = a.names.iter().map(|n| format!("names={}", query_escape(n))).collect();
    let pending = c.ep.send("GET", &format!("/images/get?{}", query.join("&")), None).await?;
    let mut reader = pending.reader();
    // Written beside the target and renamed into place: a failed save leaves no half archive.
    let (mut sink, tmp): (Box<dyn Write>, Option<std::path::PathBuf>) = match &a.output {
        Some(p) => {
            let tmp = p.with_extension("berth-partial");
            let f = std::fs::File::create(&tmp).map_err(|e| CliError::Other(format!("failed to save image: {}: {e}", tmp.display())))?;
            (Box::new(std::io::BufWriter::with_capacity(256 * 1024, f)), Some(tmp))
        }
        None => (Box::new(std::io::stdout().lock()), None),
    };
    let written = async {
        while let Some(chunk) = reader.next().await? {
            sink.write_all(&chunk).map_err(|e| CliError::Other(format!("failed to save image: {e}")))?;
        }
        sink.flush().map_err(|e| CliError::Other(format!("failed to save image: {e}")))
    }
    .await;
    drop(sink);
    match (written, tmp, &a.output) {
        (Ok(()), Some(tmp), Some(dest)) => std::fs::rename(&tmp, dest).map_err(|e| CliError::Other(format!("failed to save image: {e}")))?,
        (Err(e), Some(tmp), _) => {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
        (r, _, _) => r?,
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short = 'i', long)]
    pub input: Option<std::path::PathBuf>,
    /// Suppress the load output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

pub async fn load(c: &Client, a: LoadArgs) -> CliResult<u8> {
    let data = match &a.input {
        Some(p) => tokio::fs::read(p).await.map_err(|e| CliError::Other(format!("open {}: {e}", p.display())))?,
        None => {
            if std::io::stdin().is_terminal() {
                return Err(CliError::Other("requested load from stdin, but stdin is empty: use -i FILE or redirect".into()));
            }
            let mut v = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut v).await.map_err(|e| CliError::Other(format!("reading stdin: {e}")))?;
            v
        }
    };
    let body = c.ep.send("POST", &format!("/images/load?quiet={}", u8::from(a.quiet)), Some(&data)).await?.body().await?;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<Value>(line) else { continue };
        if let Some(e) = v["errorDetail"]["message"].as_str() {
            return Err(CliError::Daemon { status: 500, message: e.to_string() });
        }
        if let Some(s) = v["stream"].as_str() {
            if !a.quiet || s.starts_with("Loaded") {
                out(s);
            }
        }
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format output using a Go template.
    #[arg(long)]
    pub format: Option<String>,
    #[arg(value_name = "IMAGE")]
    pub name: String,
}

pub async fn history(c: &Client, a: HistoryArgs) -> CliResult<u8> {
    let rows = c.ep.json("GET", &format!("/images/{}/history", a.name)).await?;
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Value> = rows
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let id = r["Id"].as_str().unwrap_or_default();
            let created = r["Created"].as_i64().unwrap_or(0);
            let by = r["CreatedBy"].as_str().unwrap_or_default();
            let size = r["Size"].as_i64().unwrap_or(0);
            let by = if a.no_trunc || by.chars().count() <= 45 { by.to_string() } else { format!("{}…", by.chars().take(44).collect::<String>()) };
            serde_json::json!({
                "ID": if a.no_trunc || id == "<missing>" { id.to_string() } else { short_id(id) },
                "CreatedSince": if a.human { ago(created, now) } else { chrono::DateTime::from_timestamp(created, 0).map(|t| t.to_rfc3339()).unwrap_or_default() },
                "CreatedBy": by,
                "Size": if a.human { human_size(size as f64, 3) } else { size.to_string() },
                "Comment": r["Comment"].as_str().unwrap_or_default(),
            })
        })
        .collect();
    if a.quiet {
        for r in &rows {
            out(&format!("{}\n", r["ID"].as_str().unwrap_or_default()));
        }
        return Ok(0);
    }
    let headers = [("ID", "IMAGE"), ("CreatedSince", "CREATED"), ("CreatedBy", "CREATED BY"), ("Size", "SIZE"), ("Comment", "COMMENT")]
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    out(&Format::parse(a.format.as_deref(), "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}")?.render(&rows, &headers)?);
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
}

pub async fn prune(c: &Client, a: PruneArgs) -> CliResult<u8> {
    if !a.force {
        let what = if a.all { "all images without at least one container associated to them" } else { "all dangling images" };
        if !super::confirm(what) {
            return Ok(0);
        }
    }
    let filters = if a.all { r#"{"dangling":["false"]}"# } else { r#"{"dangling":["true"]}"# };
    let body = c.ep.send("POST", &format!("/images/prune?filters={}", query_escape(filters)), None).await?.body().await?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| CliError::Other(format!("invalid answer to image prune: {e}")))?;
    let deleted = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !deleted.is_empty() {
        out("Deleted Images:\n");
        for d in &deleted {
            if let Some(u) = d["Untagged"].as_str() {
                out(&format!("untagged: {u}\n"));
            }
            if let Some(x) = d["Deleted"].as_str() {
                out(&format!("deleted: {x}\n"));
            }
        }
        out("\n");
    }
    out(&format!("Total reclaimed space: {}\n", human_size(v["SpaceReclaimed"].as_f64().unwrap_or(0.0), 3)));
    Ok(0)
}
