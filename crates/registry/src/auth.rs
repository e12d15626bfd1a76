//! The registry's WWW-Authenticate challenge and the credentials that answer it.

/// A user name and password (or identity token) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// What a 401 asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Get a token from `realm` (for `service`) and send it as `Authorization: Bearer`.
    Bearer { realm: String, service: Option<String> },
    /// Send the credentials as `Authorization: Basic`.
    Basic,
}

impl Challenge {
    /// `Bearer realm="https://auth.example/token",service="registry.example",scope="…"` or
    /// `Basic realm="Registry Realm"`.
    pub(crate) fn parse(header: &str) -> Challenge {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Challenge::Basic;
        }
        let params = params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        match get("realm") {
            Some(realm) => Challenge::Bearer { realm, service: get("service") },
            None => Challenge::Basic,
        }
    }
}

/// `a="x, y",b=z` → [(a, "x, y"), (b, z)]: commas inside quotes do not split.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else { break };
        let name = name.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((name, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_names_its_realm_and_service() {
        let c = Challenge::parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#);
        assert_eq!(c, Challenge::Bearer { realm: "https://auth.docker.io/token".into(), service: Some("registry.docker.io".into()) });
    }

    #[test]
    fn basic_and_unknown_schemes_are_answered_with_basic() {
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), Challenge::Basic);
        assert_eq!(Challenge::parse("Bearer"), Challenge::Basic, "a bearer challenge without a realm cannot be answered with a token");
    }
}
