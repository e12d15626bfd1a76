//! Registry commands: `pull` (also `run`'s pull of an absent image), `push`, `login`, `logout`,
//! `manifest inspect`. Pull and push progress is Docker's JSON stream, rendered as one bar per
//! layer on a terminal (indicatif) and as plain `id: status` lines otherwise.
use std::collections::HashMap;
use std::io::IsTerminal;

use base64::Engine as _;

use super::http::query_escape;
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

/// The X-Registry-Auth header the docker CLI would send for the image's registry (from
/// ~/.docker/config.json): base64url of `{"username","password","serveraddress"}`.
pub fn auth_header(name: &str) -> Vec<(&'static str, String)> {
    let Some(r) = name.parse::<image::Reference>().ok() else { return Vec::new() };
    let Some(c) = registry::load_credentials(&r.domain) else { return Vec::new() };
    let json = serde_json::json!({"username": c.username, "password": c.password, "serveraddress": r.domain});
    vec![("X-Registry-Auth", base64::engine::general_purpose::URL_SAFE.encode(json.to_string()))]
}

/// Reads a JSON-lines progress stream into the view; an `errorDetail` line is the error.
async fn follow(pending: super::http::Pending, view: &mut View, quiet: bool) -> CliResult<()> {
    let mut reader = pending.reader();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = reader.next().await?;
        let done = chunk.is_none();
        if let Some(c) = chunk {
            buf.extend_from_slice(&c);
        }
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
            if let Some(e) = msg["errorDetail"]["message"].as_str().or_else(|| msg["error"].as_str()) {
                view.finish();
                return Err(CliError::Daemon { status: 500, message: e.to_string() });
            }
            if !quiet {
                let detail = &msg["progressDetail"];
                view.update(msg["id"].as_str(), msg["status"].as_str().unwrap_or_default(), detail["current"].as_i64(), detail["total"].as_i64());
            }
        }
        if done {
            view.finish();
            return Ok(());
        }
    }
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
    let mut path = format!("/images/create?fromImage={}", query_escape(&repo));
    if let Some(t) = tag {
        path.push_str(&format!("&tag={}", query_escape(&t)));
    }
    if let Some(p) = platform.filter(|p| !p.is_empty()) {
        path.push_str(&format!("&platform={}", query_escape(p)));
    }
    let pending = c.ep.send_with("POST", &path, None, &auth_header(name)).await?;
    let terminal = if to_stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
    let mut view = View::new(terminal && !quiet, to_stderr);
    follow(pending, &mut view, quiet).await?;
    if !to_stderr {
        // `docker pull` ends with the image's full name (alone with -q).
        println!("{}", canonical(name));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
}

pub async fn push(c: &Client, a: PushArgs) -> CliResult<u8> {
    let r: image::Reference = a.name.parse().map_err(|e| CliError::Other(format!("invalid reference format: {e}")))?;
    let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
    let (repo, _) = split_reference(&a.name);
    let path = format!("/images/{}/push?tag={}", repo, query_escape(&tag));
    let pending = c.ep.send_with("POST", &path, None, &auth_header(&a.name)).await?;
    let mut view = View::new(std::io::stdout().is_terminal() && !a.quiet, false);
    follow(pending, &mut view, a.quiet).await?;
    if a.quiet {
        println!("{}", r);
    }
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Username.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// The registry (default Docker Hub).
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

fn registry_domain(server: Option<&str>) -> String {
    let s = server.unwrap_or("docker.io").trim_start_matches("https://").trim_start_matches("http://");
    let s = s.split('/').next().unwrap_or(s);
    if s.is_empty() || s == "index.docker.io" { "docker.io".into() } else { s.to_string() }
}

fn prompt(label: &str, hidden: bool) -> CliResult<String> {
    use std::io::Write;
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = if hidden { nix::sys::termios::tcgetattr(&stdin).ok() } else { None };
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet);
    }
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    if let Some(t) = &saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, t);
        eprintln!();
    }
    read.map_err(|e| CliError::Other(format!("reading {label}: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn login(c: &Client, a: LoginArgs) -> CliResult<u8> {
    let domain = registry_domain(a.server.as_deref());
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ", false)?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| CliError::Other(format!("reading the password from stdin: {e}")))?;
        s.trim_end_matches(['\r', '\n']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        prompt("Password: ", true)?
    };
    if username.is_empty() || password.is_empty() {
        return Err(CliError::Other("Error: Cannot perform an interactive login from a non TTY device; give -u and --password-stdin".into()));
    }
    let body = serde_json::json!({"username": username, "password": password, "serveraddress": domain}).to_string();
    c.ep.send("POST", "/auth", Some(body.as_bytes())).await?.body().await?;
    let creds = registry::Credentials { username, password };
    let path = registry::store_credentials(&domain, &creds).map_err(|e| CliError::Other(format!("storing the credentials: {e}")))?;
    eprintln!("WARNING! Your password will be stored unencrypted in {}.", path.display());
    println!("Login Succeeded");
    Ok(0)
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

pub async fn logout(a: LogoutArgs) -> CliResult<u8> {
    let domain = registry_domain(a.server.as_deref());
    match registry::remove_credentials(&domain) {
        Ok(true) => println!("Removing login credentials for {domain}"),
        Ok(false) => println!("Not logged in to {domain}"),
        Err(e) => return Err(CliError::Other(format!("removing the credentials: {e}"))),
    }
    Ok(0)
}

#[derive(Debug, clap::Subcommand)]
pub enum ManifestCmd {
    /// Display an image's manifest or manifest list, as the registry has it.
    Inspect {
        /// Allow plain HTTP to this registry (loopback registries always are).
        #[arg(long)]
        insecure: bool,
        #[arg(value_name = "NAME[:TAG|@DIGEST]")]
        name: String,
    },
}

/// Like `docker manifest inspect`, this talks to the registry directly, not through the engine.
pub async fn manifest(cmd: ManifestCmd) -> CliResult<u8> {
    let ManifestCmd::Inspect { insecure, name } = cmd;
    let r: image::Reference = name.parse().map_err(|e| CliError::Other(format!("invalid reference format: {e}")))?;
    let insecure_registries = if insecure { vec![r.domain.clone()] } else { Vec::new() };
    let client = registry::Client::new(registry::Options { insecure_registries }).map_err(|e| CliError::Other(e.to_string()))?;
    let creds = registry::load_credentials(&r.domain);
    let m = client.manifest(&r, creds.as_ref()).await.map_err(|e| CliError::Other(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&m.bytes).map_err(|e| CliError::Other(format!("manifest of {name}: {e}")))?;
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(0)
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
