//! `berth pull` (and the pull `run` makes for an absent image): Docker's JSON progress stream
//! rendered as one bar per layer on a terminal (indicatif), as plain `id: status` lines otherwise.
use std::collections::HashMap;
use std::io::IsTerminal;

use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use super::image::split_reference;
use super::{CliError, CliResult, Client};

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub name: String,
}

/// The full name Docker prints at the end of a pull (`docker.io/library/busybox:latest`).
fn canonical(name: &str) -> String {
    name.parse::<image::Reference>().map(|r| r.to_string()).unwrap_or_else(|_| name.to_string())
}

/// Credentials the docker CLI would send for the image's registry (from ~/.docker/config.json).
pub fn credentials_for(name: &str) -> Option<bollard::auth::DockerCredentials> {
    let r = name.parse::<image::Reference>().ok()?;
    let c = registry::load_credentials(&r.domain)?;
    Some(bollard::auth::DockerCredentials { username: Some(c.username), password: Some(c.password), serveraddress: Some(r.domain), ..Default::default() })
}

pub async fn pull(c: &Client, a: PullArgs) -> CliResult<u8> {
    if let Err(e) = a.name.parse::<image::Reference>() {
        return Err(CliError::Other(format!("invalid reference format: {e}")));
    }
    run_pull(c, &a.name, a.platform.as_deref(), a.quiet, false).await?;
    Ok(0)
}

/// Pulls `name`, printing progress to stdout (or stderr for `run`'s pull, as Docker does).
pub async fn run_pull(c: &Client, name: &str, platform: Option<&str>, quiet: bool, to_stderr: bool) -> CliResult<()> {
    let (repo, tag) = split_reference(name);
    let tag = match name.split_once('@') {
        Some((_, digest)) => Some(digest.to_string()),
        None => tag,
    };
    let opts = CreateImageOptions { from_image: Some(repo), tag, platform: platform.unwrap_or_default().to_string(), ..Default::default() };
    let mut stream = std::pin::pin!(c.docker.create_image(Some(opts), None, credentials_for(name)));
    let terminal = if to_stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
    let mut view = View::new(terminal && !quiet, to_stderr);
    while let Some(msg) = stream.next().await {
        let msg = msg.map_err(|e| c.err(e))?;
        if let Some(e) = msg.error_detail.and_then(|d| d.message) {
            view.finish();
            return Err(CliError::Daemon { status: 500, message: e });
        }
        if quiet {
            continue;
        }
        let status = msg.status.unwrap_or_default();
        let (current, total) = msg.progress_detail.map(|p| (p.current, p.total)).unwrap_or((None, None));
        view.update(msg.id.as_deref(), &status, current, total);
    }
    view.finish();
    if !to_stderr {
        // `docker pull` ends with the image's full name (alone with -q).
        println!("{}", canonical(name));
    }
    Ok(())
}

/// Per-layer bars on a terminal, plain lines otherwise.
struct View {
    bars: Option<(indicatif::MultiProgress, HashMap<String, indicatif::ProgressBar>)>,
    to_stderr: bool,
    last: HashMap<String, String>,
}

impl View {
    fn new(terminal: bool, to_stderr: bool) -> View {
        let bars = terminal.then(|| {
            let target = if to_stderr { indicatif::ProgressDrawTarget::stderr() } else { indicatif::ProgressDrawTarget::stdout() };
            (indicatif::MultiProgress::with_draw_target(target), HashMap::new())
        });
        View { bars, to_stderr, last: HashMap::new() }
    }

    fn print(&self, line: &str) {
        if self.to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn update(&mut self, id: Option<&str>, status: &str, current: Option<i64>, total: Option<i64>) {
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            match &self.bars {
                Some((mp, _)) => {
                    let _ = mp.println(status);
                }
                None => self.print(status),
            }
            return;
        };
        match &mut self.bars {
            Some((mp, bars)) => {
                let bar = bars.entry(id.to_string()).or_insert_with(|| {
                    let b = mp.add(indicatif::ProgressBar::new(0));
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{prefix}: {msg:<18} {wide_bar} {bytes}/{total_bytes}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    b.set_prefix(id.to_string());
                    b
                });
                bar.set_message(status.to_string());
                if let (Some(c), Some(t)) = (current, total) {
                    bar.set_length(t.max(0) as u64);
                    bar.set_position(c.max(0) as u64);
                }
                if status == "Pull complete" || status == "Already exists" {
                    bar.finish();
                }
            }
            None => {
                // Plain output: one line per change of status, not per byte count.
                if self.last.get(id).map(String::as_str) != Some(status) {
                    self.last.insert(id.to_string(), status.to_string());
                    self.print(&format!("{id}: {status}"));
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some((mp, bars)) = &self.bars {
            for b in bars.values() {
                b.finish();
            }
            let _ = mp.clear();
        }
    }
}
