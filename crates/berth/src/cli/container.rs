//! Container lifecycle commands: start, stop, restart, kill, rm, wait, logs.
use bollard::query_parameters::{KillContainerOptions, RemoveContainerOptions, StopContainerOptions};

use super::attach::{self, RawTerminal};
use super::http::query_escape;
use super::run::stream_until_exit;
use super::{each, CliError, CliResult, Client};

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach the container's STDIN.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short = 't', long = "time", visible_alias = "timeout", allow_negative_numbers = true)]
    pub time: Option<i32>,
    /// Signal to send to the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs ("all" for everything).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative time.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub name: String,
}

pub async fn start(c: &Client, a: StartArgs) -> CliResult<u8> {
    if a.attach || a.interactive {
        if a.names.len() > 1 {
            return Err(CliError::Other("you cannot start and attach multiple containers at once".into()));
        }
        return start_attached(c, &a.names[0], a.interactive).await;
    }
    each(&a.names, |name| async move {
        c.docker.start_container(&name, None).await.map_err(|e| c.err(e))?;
        Ok(Some(name))
    })
    .await
}

/// `start -a [-i]`: inspect → attach → wait registered → start → stream → exit status.
async fn start_attached(c: &Client, name: &str, interactive: bool) -> CliResult<u8> {
    let info = c.ep.json("GET", &format!("/containers/{name}/json")).await?;
    let id = info.get("Id").and_then(|v| v.as_str()).unwrap_or(name).to_string();
    let tty = info.pointer("/Config/Tty").and_then(|v| v.as_bool()).unwrap_or(false);
    let stdin = interactive && info.pointer("/Config/OpenStdin").and_then(|v| v.as_bool()).unwrap_or(false);
    let auto_remove = info.pointer("/HostConfig/AutoRemove").and_then(|v| v.as_bool()).unwrap_or(false);
    let attach = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(stdin));
    let (output, input) = c.ep.upgrade("POST", &attach, None).await?.hijack();
    let condition = if auto_remove { "removed" } else { "next-exit" };
    let waiting = c.ep.send("POST", &format!("/containers/{id}/wait?condition={condition}"), None).await?;
    let exit = tokio::spawn(waiting.body());
    let raw = if tty && stdin { RawTerminal::enable() } else { None };
    if let Err(e) = c.docker.start_container(&id, None).await {
        drop(raw);
        // docker start reports start failures with exit 1 (run is the one that maps 125-127).
        return Ok(super::report(&c.err(e), false));
    }
    let _helpers = attach::Helpers::start(c, &id, tty, attach::Target::Container);
    let code = stream_until_exit(&id, output, input, stdin, tty, exit).await;
    drop(raw);
    code
}

pub async fn stop(c: &Client, a: StopArgs, restart: bool) -> CliResult<u8> {
    let (time, signal) = (a.time, a.signal.clone());
    each(&a.names, |name| {
        let signal = signal.clone();
        async move {
            if restart {
                let opts = bollard::query_parameters::RestartContainerOptions { signal, t: time };
                c.docker.restart_container(&name, Some(opts)).await
            } else {
                c.docker.stop_container(&name, Some(StopContainerOptions { signal, t: time })).await
            }
            .map_err(|e| c.err(e))?;
            Ok(Some(name))
        }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> CliResult<u8> {
    let signal = a.signal.clone();
    each(&a.names, |name| {
        let opts = KillContainerOptions { signal: signal.clone() };
        async move {
            c.docker.kill_container(&name, Some(opts)).await.map_err(|e| c.err(e))?;
            Ok(Some(name))
        }
    })
    .await
}

pub async fn rm(c: &Client, a: RmArgs) -> CliResult<u8> {
    let opts = RemoveContainerOptions { v: a.volumes, force: a.force, link: false };
    each(&a.names, |name| {
        let opts = opts.clone();
        async move {
            c.docker.remove_container(&name, Some(opts)).await.map_err(|e| c.err(e))?;
            Ok(Some(name))
        }
    })
    .await
}

pub async fn wait(c: &Client, a: WaitArgs) -> CliResult<u8> {
    each(&a.names, |name| async move {
        let body = c.ep.send("POST", &format!("/containers/{name}/wait"), None).await?.body().await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| CliError::Other(format!("invalid wait answer: {e}")))?;
        let code = v.get("StatusCode").and_then(|c| c.as_i64()).unwrap_or(-1);
        Ok(Some(code.to_string()))
    })
    .await
}

pub async fn logs(c: &Client, a: LogsArgs) -> CliResult<u8> {
    // Inspect first, as docker does: it tells whether the log is raw (tty) or multiplexed.
    let info = c.ep.json("GET", &format!("/containers/{}/json", a.name)).await?;
    let tty = info.pointer("/Config/Tty").and_then(|v| v.as_bool()).unwrap_or(false);
    let now = chrono::Utc::now().timestamp();
    let mut query = format!(
        "stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        u8::from(a.follow),
        u8::from(a.timestamps),
        query_escape(&a.tail)
    );
    for (key, value) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = value {
            query += &format!("&{key}={}", parse_time(v, now).map_err(CliError::Other)?);
        }
    }
    let body = c.ep.send("GET", &format!("/containers/{}/logs?{query}", a.name), None).await?.reader();
    attach::pump(body, tty).await?;
    Ok(0)
}

/// `--since/--until`: Unix seconds, RFC 3339, a date, or a duration before now (`10m`, `1h30m`).
pub fn parse_time(s: &str, now: i64) -> Result<i64, String> {
    if let Ok(secs) = s.split('.').next().unwrap_or(s).parse::<i64>() {
        if s.split('.').count() <= 2 && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Ok(secs);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp()).unwrap_or(0));
    }
    parse_go_duration(s).map(|d| now - d).ok_or_else(|| format!("invalid value for \"since\"/\"until\": {s:?}"))
}

/// Go duration strings in whole seconds: "90s", "10m", "1h30m", "1.5h".
fn parse_go_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let scale = match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * scale;
        num.clear();
    }
    num.is_empty().then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_unix_seconds_dates_and_durations() {
        assert_eq!(parse_time("1700000000", 0), Ok(1_700_000_000));
        assert_eq!(parse_time("1700000000.5", 0), Ok(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z", 0), Ok(1_700_000_000));
        assert_eq!(parse_time("1970-01-02", 0), Ok(86_400));
        assert_eq!(parse_time("10m", 1000), Ok(400));
        assert_eq!(parse_time("1h30m", 10_000), Ok(10_000 - 5400));
        assert!(parse_time("yesterday", 0).is_err());
        assert!(parse_time("10", 0).is_ok());
        assert!(parse_time("10x", 0).is_err());
    }
}
