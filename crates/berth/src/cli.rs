//! The `berth` command line: a Docker Engine API client with docker's flags, output and exit
//! codes, plus `berth engine` (runs the engine in the foreground) and `berth bench`.
//!
//! Layout: `host` finds and connects to the engine; bollard (pinned to API 1.44) makes the plain
//! calls, while `http`, a tiny raw client, serves raw JSON (inspect, lists), header-first waits and
//! the byte streams (attach, exec start, logs), which it hands over exactly; `run`, `container`,
//! `exec`, `ps`, `image`, `inspect`, `system` are the command groups; `attach` holds the terminal
//! and stream plumbing; `template` evaluates Go templates; `units` and `table` reproduce docker's
//! wording and column layout; `fake_engine` is a scripted API server for the flow tests.
mod archive;
mod attach;
mod container;
mod exec;
#[cfg(test)]
mod fake_engine;
mod host;
mod http;
mod image;
mod inspect;
mod network;
mod port;
mod ps;
mod pull;
mod run;
mod system;
mod table;
mod template;
mod units;
mod volume;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The API version the client speaks; the engine claims exactly this one.
pub const API_VERSION: &str = "1.44";

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "A Docker-compatible container engine and its client", disable_help_subcommand = true)]
struct Cli {
    /// Engine socket to connect to (unix://PATH); default $BERTH_HOST or unix:///run/berth/berth.sock.
    #[arg(short = 'H', long, global = true, value_name = "HOST")]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create and run a new container from an image.
    Run(run::RunArgs),
    /// Create a new container.
    Create(run::RunArgs),
    /// Start one or more stopped containers.
    Start(container::StartArgs),
    /// Stop one or more running containers.
    Stop(container::StopArgs),
    /// Kill one or more running containers.
    Kill(container::KillArgs),
    /// Restart one or more containers.
    Restart(container::StopArgs),
    /// Remove one or more containers.
    Rm(container::RmArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(container::WaitArgs),
    /// Fetch the logs of a container.
    Logs(container::LogsArgs),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// List containers.
    Ps(ps::PsArgs),
    /// List port mappings of a container.
    Port(port::PortArgs),
    /// List images.
    Images(image::ImagesArgs),
    /// Remove one or more images.
    Rmi(image::RmiArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(image::ImportArgs),
    /// Download an image from a registry.
    Pull(pull::PullArgs),
    /// Upload an image to a registry.
    Push(pull::PushArgs),
    /// Log in to a registry (credentials are stored in ~/.docker/config.json, as docker does).
    Login(pull::LoginArgs),
    /// Log out from a registry.
    Logout(pull::LogoutArgs),
    /// Inspect manifests in a registry.
    #[command(subcommand)]
    Manifest(pull::ManifestCmd),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(image::TagArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default).
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN.
    Load(archive::LoadArgs),
    /// Show the history of an image.
    History(archive::HistoryArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Return low-level information on containers or images.
    Inspect(inspect::InspectArgs),
    /// Show the client and engine version information.
    Version(system::VersionArgs),
    /// Display system-wide information.
    Info(system::InfoArgs),
    /// Run the engine (Docker Engine API server) in the foreground.
    Engine(EngineArgs),
    /// Run the Kubernetes API server in the foreground (writes <root>/kubeconfig.yaml).
    Server(crate::server::ServerArgs),
    /// Time `berth run --rm` against runc on this machine.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, clap::Args)]
struct EngineArgs {
    /// State root (images, containers, volumes).
    #[arg(long, default_value = "/var/lib/berth")]
    root: std::path::PathBuf,
    /// Docker Engine API unix socket to serve.
    #[arg(long, default_value = host::DEFAULT_SOCKET)]
    socket: std::path::PathBuf,
    /// Verbose logs.
    #[arg(long)]
    debug: bool,
    /// A registry (host[:port]) to speak plain HTTP to; loopback registries always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// The default bridge device (`none` disables bridge networking).
    #[arg(long, default_value = "berth0")]
    bridge: String,
    /// The bridge's subnet, e.g. 10.89.0.0/16 (default 172.18.0.0/16, or the next free 172.x.0.0/16).
    #[arg(long)]
    bip: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ImageCmd {
    /// List images.
    #[command(alias = "list")]
    Ls(image::ImagesArgs),
    /// Remove one or more images.
    Rm(image::RmiArgs),
    /// Display detailed information on one or more images.
    Inspect {
        /// Format output using a Go template.
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true, value_name = "IMAGE")]
        names: Vec<String>,
    },
    /// Remove unused images.
    Prune(archive::PruneArgs),
    /// Show the history of an image.
    History(archive::HistoryArgs),
    /// Save one or more images to a tar archive.
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN.
    Load(archive::LoadArgs),
    /// Download an image from a registry.
    Pull(pull::PullArgs),
    /// Upload an image to a registry.
    Push(pull::PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(image::TagArgs),
    /// Import the contents from a tarball to create a filesystem image.
    Import(image::ImportArgs),
}

/// What went wrong talking to the engine, printed as docker prints it.
#[derive(Debug)]
pub enum CliError {
    /// The socket is missing or nobody listens on it.
    Unreachable { host: String },
    /// The engine answered with an error status.
    Daemon { status: u16, message: String },
    /// Anything else (bad input, I/O, malformed answers).
    Other(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Unreachable { host } => write!(
                f,
                "cannot connect to the berth engine at {host}: is it running? Start it with 'berth engine' (or 'berth up')"
            ),
            CliError::Daemon { message, .. } => write!(f, "Error response from daemon: {message}"),
            CliError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// Socket errors: a missing socket or a refused connection means the engine is not running.
    pub fn io(host: &str, e: std::io::Error) -> CliError {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound | ConnectionRefused => CliError::Unreachable { host: host.to_string() },
            PermissionDenied => CliError::Other(format!("permission denied while trying to connect to the berth engine at {host}")),
            _ => CliError::Other(format!("talking to the berth engine at {host}: {e}")),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, CliError::Daemon { status: 404, .. })
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// The connection every client command uses: bollard for typed calls and streams, the raw
/// endpoint for raw JSON and header-first waits.
pub struct Client {
    pub docker: bollard::Docker,
    pub ep: http::Endpoint,
}

impl Client {
    /// Maps a bollard error, naming this engine when it cannot be reached.
    pub fn err(&self, e: bollard::errors::Error) -> CliError {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError { status_code, message } => CliError::Daemon { status: status_code, message },
            B::SocketNotFoundError(_) => CliError::Unreachable { host: self.ep.host() },
            B::HyperLegacyError { err } if err.is_connect() => CliError::Unreachable { host: self.ep.host() },
            B::IOError { err } => CliError::io(&self.ep.host(), err),
            B::DockerStreamError { error } => CliError::Other(error),
            other => CliError::Other(other.to_string()),
        }
    }
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let run_like = is_run_like(&args);
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // docker answers flag errors of run/create with 125.
            return ExitCode::from(match e.exit_code() {
                0 => 0,
                _ if run_like => 125,
                c => c as u8,
            });
        }
    };
    match cli.cmd {
        Cmd::Server(a) => return finish(crate::server::run(a)),
        Cmd::Engine(a) => return finish(crate::daemon::run(crate::daemon::EngineOptions { root: a.root, socket: a.socket, debug: a.debug, insecure_registries: a.insecure_registries, bridge: a.bridge, bip: a.bip })),
        Cmd::Bench(a) => return finish(crate::bench::run(a)),
        _ => {}
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async {
        let socket = host::resolve(cli.host.as_deref(), std::env::var("BERTH_HOST").ok().as_deref())?;
        let client = host::connect(socket)?;
        dispatch(&client, cli.cmd).await
    });
    // A blocked stdin reader must not hold the process open.
    rt.shutdown_background();
    match code {
        Ok(c) => ExitCode::from(c),
        Err(e) => ExitCode::from(report(&e, run_like)),
    }
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Prints an error as docker does and returns the exit code.
pub fn report(e: &CliError, run_like: bool) -> u8 {
    match e {
        CliError::Unreachable { .. } => {
            eprintln!("berth: {e}");
            1
        }
        _ if run_like => {
            eprintln!("berth: {e}");
            125
        }
        CliError::Daemon { .. } => {
            eprintln!("{e}");
            1
        }
        CliError::Other(_) => {
            eprintln!("berth: {e}");
            1
        }
    }
}

/// Whether the subcommand is run or create (their flag errors exit 125, as docker's do).
fn is_run_like(args: &[OsString]) -> bool {
    let mut it = args.iter().skip(1).filter_map(|a| a.to_str());
    while let Some(a) = it.next() {
        match a {
            "-H" | "--host" => {
                it.next();
            }
            a if a.starts_with('-') => {}
            a => return a == "run" || a == "create",
        }
    }
    false
}

async fn dispatch(c: &Client, cmd: Cmd) -> CliResult<u8> {
    match cmd {
        Cmd::Run(a) => run::run(c, a).await,
        Cmd::Create(a) => run::create(c, a).await,
        Cmd::Start(a) => container::start(c, a).await,
        Cmd::Stop(a) => container::stop(c, a, false).await,
        Cmd::Restart(a) => container::stop(c, a, true).await,
        Cmd::Kill(a) => container::kill(c, a).await,
        Cmd::Rm(a) => container::rm(c, a).await,
        Cmd::Wait(a) => container::wait(c, a).await,
        Cmd::Logs(a) => container::logs(c, a).await,
        Cmd::Exec(a) => exec::exec(c, a).await,
        Cmd::Ps(a) => ps::ps(c, a).await,
        Cmd::Images(a) => image::images(c, a).await,
        Cmd::Rmi(a) => image::rmi(c, a).await,
        Cmd::Import(a) => image::import(c, a).await,
        Cmd::Pull(a) => pull::pull(c, a).await,
        Cmd::Push(a) => pull::push(c, a).await,
        Cmd::Login(a) => pull::login(c, a).await,
        Cmd::Logout(a) => pull::logout(a).await,
        Cmd::Manifest(m) => pull::manifest(m).await,
        Cmd::Tag(a) => image::tag(c, a).await,
        Cmd::Save(a) => archive::save(c, a).await,
        Cmd::Load(a) => archive::load(c, a).await,
        Cmd::History(a) => archive::history(c, a).await,
        Cmd::Volume(v) => volume::volume(c, v).await,
        Cmd::Network(n) => network::network(c, n).await,
        Cmd::Port(a) => port::port(c, a).await,
        Cmd::Image(sub) => match sub {
            ImageCmd::Ls(a) => image::images(c, a).await,
            ImageCmd::Rm(a) => image::rmi(c, a).await,
            ImageCmd::Inspect { format, names } => inspect::inspect(c, inspect::InspectArgs { format, kind: Some("image".into()), size: false, names }).await,
            ImageCmd::Prune(a) => archive::prune(c, a).await,
            ImageCmd::History(a) => archive::history(c, a).await,
            ImageCmd::Save(a) => archive::save(c, a).await,
            ImageCmd::Load(a) => archive::load(c, a).await,
            ImageCmd::Pull(a) => pull::pull(c, a).await,
            ImageCmd::Push(a) => pull::push(c, a).await,
            ImageCmd::Tag(a) => image::tag(c, a).await,
            ImageCmd::Import(a) => image::import(c, a).await,
        },
        Cmd::Inspect(a) => inspect::inspect(c, a).await,
        Cmd::Version(a) => system::version(c, a).await,
        Cmd::Info(a) => system::info(c, a).await,
        Cmd::Engine(_) | Cmd::Server(_) | Cmd::Bench(_) => Ok(0),
    }
}

/// Writes to stdout, ignoring a closed pipe (`berth ps | head`) instead of panicking.
/// Docker's prune prompt: `WARNING! This will remove {what}.` and a y/N question on stderr.
pub fn confirm(what: &str) -> bool {
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// `path` with `-f key=value` flags as Docker's `filters` query parameter.
pub fn with_filters(path: &str, filter: &[String]) -> CliResult<String> {
    let mut filters: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in filter {
        let (k, v) = f.split_once('=').ok_or_else(|| CliError::Other(format!("bad format of filter (expected name=value): {f}")))?;
        filters.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(if filters.is_empty() { path.to_string() } else { format!("{path}?filters={}", http::query_escape(&serde_json::to_string(&filters).unwrap_or_default())) })
}

pub fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

/// Runs `f` on each name; prints `name` on success or the error, as docker's multi-object
/// commands do; exit 1 if any failed.
pub async fn each<F, Fut>(names: &[String], mut f: F) -> CliResult<u8>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = CliResult<Option<String>>>,
{
    let mut failed = false;
    for name in names {
        match f(name.clone()).await {
            Ok(Some(line)) => out(&format!("{line}\n")),
            Ok(None) => {}
            Err(e @ CliError::Unreachable { .. }) => return Err(e),
            Err(e) => {
                failed = true;
                report(&e, false);
            }
        }
    }
    Ok(u8::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_and_create_are_recognised_past_global_flags() {
        assert!(is_run_like(&os(&["berth", "run", "bb:1"])));
        assert!(is_run_like(&os(&["berth", "-H", "unix:///x", "create", "bb:1"])));
        assert!(!is_run_like(&os(&["berth", "-H", "run", "ps"])));
        assert!(!is_run_like(&os(&["berth", "ps"])));
    }

    #[test]
    fn run_flag_errors_exit_125_like_docker() {
        assert_eq!(main(os(&["berth", "run", "--no-such-flag", "bb:1"])), ExitCode::from(125));
        assert_eq!(main(os(&["berth", "run", "-m", "12x", "bb:1"])), ExitCode::from(125));
        assert_eq!(main(os(&["berth", "ps", "--no-such-flag"])), ExitCode::from(2));
    }

    #[test]
    fn an_unreachable_engine_is_one_line_and_exit_1() {
        let e = CliError::io("unix:///nope.sock", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(matches!(e, CliError::Unreachable { .. }));
        let text = e.to_string();
        assert!(text.contains("unix:///nope.sock") && text.contains("berth engine") && !text.contains('\n'), "{text}");
        assert_eq!(report(&e, true), 1);
        let refused = CliError::io("unix:///x", std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(refused, CliError::Unreachable { .. }));
    }

    #[test]
    fn daemon_errors_exit_1_or_125_for_run() {
        let e = CliError::Daemon { status: 404, message: "No such container: x".into() };
        assert_eq!(e.to_string(), "Error response from daemon: No such container: x");
        assert_eq!(report(&e, false), 1);
        assert_eq!(report(&e, true), 125);
        assert!(e.is_not_found());
    }

    #[test]
    fn commands_parse_with_docker_flags() {
        let cli = Cli::try_parse_from(["berth", "-H", "unix:///s", "run", "--rm", "-h", "box", "-e", "A=1", "bb:1", "sh", "-c", "x"]);
        let cli = cli.map_err(|e| e.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.host.as_deref(), Some("unix:///s"));
        let Cmd::Run(a) = cli.cmd else { panic!("not run") };
        assert!(a.rm);
        assert_eq!(a.hostname.as_deref(), Some("box"));
        assert_eq!(a.image(), "bb:1");
        assert_eq!(a.command(), ["sh", "-c", "x"]);
        assert!(Cli::try_parse_from(["berth", "ps", "-aq"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "stop", "-t", "1", "web"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "exec", "-it", "web", "sh", "-c", "ls -l"]).is_ok());
        assert!(Cli::try_parse_from(["berth", "inspect", "-f", "{{.Id}}", "x"]).is_ok());
    }
}
