//! Finding the engine: `-H/--host`, then `$BERTH_HOST`, then the default socket.
use std::path::PathBuf;

use super::{http::Endpoint, CliError, CliResult, Client, API_VERSION};

pub const DEFAULT_SOCKET: &str = "/run/berth/berth.sock";

/// Request timeout for bollard. Long because `stop -t N` and `wait` legitimately take a while;
/// an unreachable engine fails at connect, not here.
const TIMEOUT_SECS: u64 = 24 * 3600;

/// The socket path from the flag, else the environment, else the default. Only unix sockets.
pub fn resolve(flag: Option<&str>, env: Option<&str>) -> CliResult<PathBuf> {
    let chosen = flag.or(env.filter(|e| !e.is_empty()));
    let Some(host) = chosen else { return Ok(PathBuf::from(DEFAULT_SOCKET)) };
    let path = match host.strip_prefix("unix://") {
        Some(p) => p,
        None if host.starts_with('/') => host,
        None => return Err(CliError::Other(format!("unsupported engine address {host:?}: berth speaks unix://PATH only"))),
    };
    if path.is_empty() {
        return Err(CliError::Other(format!("invalid engine address {host:?}: no socket path")));
    }
    Ok(PathBuf::from(path))
}

/// Builds the client without talking to the engine (no /version or /_ping round trip: start-up
/// is on the hot path of `berth run`).
pub fn connect(socket: PathBuf) -> CliResult<Client> {
    let ep = Endpoint { socket };
    let version = bollard::ClientVersion { major_version: 1, minor_version: 44 };
    let path = ep.socket.to_string_lossy().into_owned();
    match bollard::Docker::connect_with_unix(&path, TIMEOUT_SECS, &version) {
        Ok(docker) => Ok(Client { docker: docker.with_request_modifier(pin_version), ep }),
        Err(bollard::errors::Error::SocketNotFoundError(_)) => Err(CliError::Unreachable { host: ep.host() }),
        Err(e) => Err(CliError::Other(format!("connecting to {}: {e}", ep.host()))),
    }
}

/// bollard 0.21 drops the `/vX.Y` prefix when it joins a path onto the base URL, so requests
/// would go out unversioned; this puts the pinned version back on every path.
fn pin_version(mut req: bollard::BollardRequest) -> bollard::BollardRequest {
    let pq = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    if pq.starts_with("/v1.") {
        return req;
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(p) = format!("/v{API_VERSION}{pq}").parse() {
        parts.path_and_query = Some(p);
    }
    if let Ok(uri) = TryInto::try_into(parts) {
        *req.uri_mut() = uri;
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(r: CliResult<PathBuf>) -> String {
        r.map(|p| p.display().to_string()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        assert_eq!(path(resolve(Some("unix:///a.sock"), Some("unix:///b.sock"))), "/a.sock");
    }

    #[test]
    fn the_environment_wins_over_the_default() {
        assert_eq!(path(resolve(None, Some("unix:///b.sock"))), "/b.sock");
        assert_eq!(path(resolve(None, Some(""))), DEFAULT_SOCKET);
    }

    #[test]
    fn the_default_socket_is_used_last() {
        assert_eq!(path(resolve(None, None)), "/run/berth/berth.sock");
    }

    #[test]
    fn bare_paths_are_accepted_and_other_schemes_refused() {
        assert_eq!(path(resolve(Some("/tmp/x.sock"), None)), "/tmp/x.sock");
        assert!(resolve(Some("tcp://127.0.0.1:2375"), None).is_err());
        assert!(resolve(Some("unix://"), None).is_err());
    }

    #[test]
    fn a_missing_socket_is_unreachable() {
        let r = connect(PathBuf::from("/nonexistent/berth.sock"));
        assert!(matches!(r, Err(CliError::Unreachable { ref host }) if host == "unix:///nonexistent/berth.sock"));
    }
}
