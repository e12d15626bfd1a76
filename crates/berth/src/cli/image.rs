//! Image commands: images, rmi, import, tag.
use bollard::query_parameters::{CreateImageOptions, RemoveImageOptions, TagImageOptions};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::table::{short_id, Format};
use super::units::{ago, human_size};
use super::{each, out, CliError, CliResult, Client};

const DEFAULT_FORMAT: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
const DIGEST_FORMAT: &str = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided (dangling=true|false, reference=PATTERN).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Format output using a Go template, "table …" or "json".
    #[arg(long)]
    pub format: Option<String>,
    /// Only show images of this repository[:tag].
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Force removal of the image.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents.
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Tarball to import, or - for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// Name the image REPOSITORY[:TAG].
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Set a commit message for the imported image.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Apply Dockerfile instructions to the created image.
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

/// `repo:tag` → (repo, Some(tag)); a `:` inside a registry host:port is not a tag.
pub fn split_reference(r: &str) -> (String, Option<String>) {
    let r = r.split_once('@').map_or(r, |(name, _)| name);
    match r.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), Some(tag.to_string())),
        _ => (r.to_string(), None),
    }
}

pub async fn images(c: &Client, a: ImagesArgs) -> CliResult<u8> {
    let mut query = Vec::new();
    if a.all {
        query.push("all=1");
    }
    if a.digests {
        query.push("digests=1");
    }
    let mut filters: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &a.filter {
        let (k, v) = f.split_once('=').ok_or_else(|| CliError::Other(format!("bad format of filter (expected name=value): {f}")))?;
        filters.entry(k.to_string()).or_default().push(v.to_string());
    }
    let filter_query = (!filters.is_empty()).then(|| format!("filters={}", super::http::query_escape(&serde_json::to_string(&filters).unwrap_or_default())));
    let mut query: Vec<String> = query.into_iter().map(String::from).collect();
    query.extend(filter_query);
    let path = if query.is_empty() { "/images/json".to_string() } else { format!("/images/json?{}", query.join("&")) };
    let list = c.ep.json("GET", &path).await?;
    let mut images = list.as_array().cloned().unwrap_or_default();
    images.sort_by_key(|i| std::cmp::Reverse(i.get("Created").and_then(Value::as_i64).unwrap_or(0)));
    out(&render(&images, &a, chrono::Utc::now().timestamp())?);
    Ok(0)
}

fn render(images: &[Value], a: &ImagesArgs, now: i64) -> CliResult<String> {
    let mut rows: Vec<Value> = images.iter().flat_map(|i| rows(i, !a.no_trunc, now)).collect();
    if let Some(r) = &a.reference {
        let (repo, tag) = split_reference(r);
        rows.retain(|row| row["Repository"] == repo.as_str() && tag.as_ref().is_none_or(|t| row["Tag"] == t.as_str()));
    }
    if a.quiet && a.format.is_none() {
        let mut seen = Vec::new();
        for r in &rows {
            let id = r["ID"].as_str().unwrap_or_default().to_string();
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        return Ok(seen.iter().map(|id| format!("{id}\n")).collect());
    }
    let default = if a.digests { DIGEST_FORMAT } else { DEFAULT_FORMAT };
    Format::parse(a.format.as_deref(), default)?.render(&rows, &headers())
}

fn headers() -> Map<String, Value> {
    [
        ("Repository", "REPOSITORY"),
        ("Tag", "TAG"),
        ("Digest", "DIGEST"),
        ("ID", "IMAGE ID"),
        ("CreatedSince", "CREATED"),
        ("CreatedAt", "CREATED AT"),
        ("Size", "SIZE"),
        ("Containers", "CONTAINERS"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
    .collect()
}

/// One row per tag (or one `<none>` row), as docker lists images.
fn rows(i: &Value, trunc: bool, now: i64) -> Vec<Value> {
    let id = i.get("Id").and_then(Value::as_str).unwrap_or_default();
    let created = i.get("Created").and_then(Value::as_i64).unwrap_or(0);
    let size = i.get("Size").and_then(Value::as_i64).unwrap_or(0);
    let strings = |k: &str| -> Vec<String> { i.get(k).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(String::from).collect() };
    let digests = strings("RepoDigests");
    let mut names: Vec<(String, String)> = strings("RepoTags")
        .iter()
        .filter(|t| t.as_str() != "<none>:<none>")
        .map(|t| {
            let (repo, tag) = split_reference(t);
            (repo, tag.unwrap_or_else(|| "<none>".into()))
        })
        .collect();
    if names.is_empty() {
        let repo = digests.first().and_then(|d| d.split_once('@')).map_or("<none>".to_string(), |(r, _)| r.to_string());
        names.push((repo, "<none>".into()));
    }
    names
        .into_iter()
        .map(|(repo, tag)| {
            let digest = digests.iter().find_map(|d| d.strip_prefix(&format!("{repo}@"))).unwrap_or("<none>");
            json!({
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "ID": if trunc { short_id(id) } else { id.to_string() },
                "CreatedSince": ago(created, now),
                "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
                "Size": human_size(size as f64, 3),
                "Containers": i.get("Containers").map(|c| c.to_string()).unwrap_or_else(|| "N/A".into()),
            })
        })
        .collect()
}

pub async fn rmi(c: &Client, a: RmiArgs) -> CliResult<u8> {
    let opts = RemoveImageOptions { force: a.force, noprune: a.no_prune, platforms: None };
    each(&a.names, |name| {
        let opts = opts.clone();
        async move {
            let items = c.docker.remove_image(&name, Some(opts), None).await.map_err(|e| c.err(e))?;
            let mut lines = Vec::new();
            for item in items {
                if let Some(u) = item.untagged {
                    lines.push(format!("Untagged: {u}"));
                }
                if let Some(d) = item.deleted {
                    lines.push(format!("Deleted: {d}"));
                }
            }
            Ok((!lines.is_empty()).then(|| lines.join("\n")))
        }
    })
    .await
}

pub async fn import(c: &Client, a: ImportArgs) -> CliResult<u8> {
    let (repo, tag) = match a.reference.as_deref() {
        Some(r) => {
            let (repo, tag) = split_reference(r);
            (Some(repo), tag)
        }
        None => (None, None),
    };
    let body = if a.file == "-" {
        bollard::body_try_stream(tokio_util::io::ReaderStream::new(tokio::io::stdin()))
    } else {
        let f = tokio::fs::File::open(&a.file).await.map_err(|e| CliError::Other(format!("open {}: {e}", a.file)))?;
        bollard::body_try_stream(tokio_util::io::ReaderStream::new(f))
    };
    let opts = CreateImageOptions {
        from_src: Some("-".into()),
        repo,
        tag,
        message: a.message.clone(),
        changes: a.change.clone(),
        ..Default::default()
    };
    let mut stream = std::pin::pin!(c.docker.create_image(Some(opts), Some(body), None));
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| c.err(e))?;
        if let Some(status) = msg.status.filter(|s| !s.is_empty()) {
            out(&format!("{status}\n"));
        }
    }
    Ok(0)
}

pub async fn tag(c: &Client, a: TagArgs) -> CliResult<u8> {
    let (repo, tag) = split_reference(&a.target);
    let opts = TagImageOptions { repo: Some(repo), tag: Some(tag.unwrap_or_else(|| "latest".into())) };
    c.docker.tag_image(&a.source, Some(opts)).await.map_err(|e| c.err(e))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ImagesArgs,
    }

    fn args(v: &[&str]) -> ImagesArgs {
        T::try_parse_from(std::iter::once("images").chain(v.iter().copied())).map(|t| t.a).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sample(now: i64) -> Vec<Value> {
        vec![
            json!({"Id": "sha256:5d0da3dc976460b72c77d94c8a1ad043720b0416bfc16c52c45d4847e53fadb6", "RepoTags": ["bb:1", "busybox:latest"],
                   "RepoDigests": [], "Created": now - 7200, "Size": 4_264_000, "Containers": -1}),
            json!({"Id": "sha256:aaaaaaaaaaaabbbb", "RepoTags": [], "RepoDigests": null, "Created": now - 30, "Size": 999}),
        ]
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(split_reference("bb:1"), ("bb".into(), Some("1".into())));
        assert_eq!(split_reference("bb"), ("bb".into(), None));
        assert_eq!(split_reference("localhost:5000/bb"), ("localhost:5000/bb".into(), None));
        assert_eq!(split_reference("localhost:5000/bb:2"), ("localhost:5000/bb".into(), Some("2".into())));
    }

    #[test]
    fn the_default_table_has_one_row_per_tag() {
        let now = 10_000;
        let expected = "\
REPOSITORY   TAG       IMAGE ID       CREATED          SIZE
<none>       <none>    aaaaaaaaaaaa   30 seconds ago   999B
bb           1         5d0da3dc9764   2 hours ago      4.26MB
busybox      latest    5d0da3dc9764   2 hours ago      4.26MB
";
        let mut newest_first = sample(now);
        newest_first.reverse();
        assert_eq!(render(&newest_first, &args(&[]), now).unwrap_or_default(), expected);
    }

    #[test]
    fn quiet_lists_each_image_id_once() {
        let s = render(&sample(0), &args(&["-q"]), 0).unwrap_or_default();
        assert_eq!(s, "5d0da3dc9764\naaaaaaaaaaaa\n");
        let full = render(&sample(0), &args(&["-q", "--no-trunc"]), 0).unwrap_or_default();
        assert!(full.starts_with("sha256:5d0da3dc9764"), "{full}");
    }

    #[test]
    fn formats_and_reference_filters_apply() {
        let s = render(&sample(0), &args(&["--format", "{{.Repository}}:{{.Tag}}"]), 0).unwrap_or_default();
        assert_eq!(s, "bb:1\nbusybox:latest\n<none>:<none>\n");
        let s = render(&sample(0), &args(&["--format", "{{.Repository}}:{{.Tag}}", "busybox"]), 0).unwrap_or_default();
        assert_eq!(s, "busybox:latest\n");
    }
}
