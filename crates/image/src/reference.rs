//! Docker image references: `[domain[:port]/]path[:tag][@digest]`, normalised as Docker does
//! (`bb:1` is `docker.io/library/bb:1`, no tag and no digest means `latest`).
use std::fmt;
use std::str::FromStr;

use crate::{Digest, Error};

pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Older clients still say `index.docker.io`; it is the same registry.
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME: usize = 255;
const FORM: &str = "[registry[:port]/]name[:tag][@sha256:<64 hex>], e.g. busybox:1.36 or localhost:5000/team/app";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, …
    pub domain: String,
    /// `library/busybox`, `team/app`, …
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn invalid(input: &str, why: impl fmt::Display) -> Error {
    Error::InvalidReference { reference: input.to_string(), reason: format!("{why}; the accepted form is {FORM}") }
}

fn alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A path component: `[a-z0-9]+` runs joined by one of `.`, `_`, `__` or any run of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !alnum_lower(b[0]) || !alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Host name (labels of letters, digits and inner `-`, joined by `.`) or `[ipv6]`, with an optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if d.starts_with('[') {
        match d.find(']') {
            Some(end) => (&d[..=end], d[end + 1..].strip_prefix(':').or(Some(&d[end + 1..]).filter(|r| !r.is_empty()))),
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

/// Docker's rule: the first component is a registry when it has a `.` or `:`, is `localhost`, or
/// has upper-case letters (which a repository path may not).
fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.bytes().any(|b| b.is_ascii_uppercase()) => {
            let domain = if first == LEGACY_DEFAULT_DOMAIN { DEFAULT_DOMAIN } else { first };
            (domain.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(input: &str) -> Result<Self, Error> {
        if input.is_empty() {
            return Err(invalid(input, "the reference is empty"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|e| invalid(input, e))?)),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = tag.as_deref().filter(|t| !valid_tag(t)) {
            return Err(invalid(input, format!("invalid tag {t:?} (letters, digits, `_`, `.`, `-`; at most 128)")));
        }
        if name.len() > MAX_NAME {
            return Err(invalid(input, format!("the repository name is longer than {MAX_NAME} characters")));
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(input, "a repository name cannot be a 64-digit hex string (an image id?)"));
        }
        let (domain, path) = split_domain(name);
        if !valid_domain(&domain) {
            return Err(invalid(input, format!("invalid registry {domain:?}")));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(input, format!("repository name {path:?} must be lowercase")));
        }
        if let Some(bad) = path.split('/').find(|c| !valid_component(c)) {
            return Err(invalid(input, format!("invalid repository name component {bad:?}")));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') { format!("{OFFICIAL_PREFIX}{path}") } else { path };
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Reference { domain, path, tag, digest })
    }
}

impl Reference {
    /// `docker.io/library/bb` → `bb`, `docker.io/team/app` → `team/app`; other registries keep
    /// their domain.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path.strip_prefix(OFFICIAL_PREFIX).unwrap_or(&self.path).to_string()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// The short form users type: `bb:1`, `reg:5000/team/app@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// `domain/path`, the name a registry knows.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The same repository at another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, Error> {
        if !valid_tag(tag) {
            return Err(invalid(tag, format!("invalid tag {tag:?}")));
        }
        Ok(Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() })
    }

    /// The same repository pinned by digest (`repo@sha256:…`, a RepoDigest).
    pub fn with_digest(&self, digest: &Digest) -> Reference {
        Reference { tag: None, digest: Some(digest.clone()), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse::<Reference>().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_normalise_as_docker_does() {
        let d = format!("sha256:{}", "a".repeat(64));
        let table = [
            ("bb", "docker.io/library/bb:latest", "bb:latest"),
            ("bb:1", "docker.io/library/bb:1", "bb:1"),
            ("library/bb", "docker.io/library/bb:latest", "bb:latest"),
            ("docker.io/bb:1", "docker.io/library/bb:1", "bb:1"),
            ("index.docker.io/bb", "docker.io/library/bb:latest", "bb:latest"),
            ("docker.io/library/bb:1", "docker.io/library/bb:1", "bb:1"),
            ("team/app:2", "docker.io/team/app:2", "team/app:2"),
            ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
            ("localhost:5000/app:v1", "localhost:5000/app:v1", "localhost:5000/app:v1"),
            ("127.0.0.1:5000/team/app:1.2", "127.0.0.1:5000/team/app:1.2", "127.0.0.1:5000/team/app:1.2"),
            ("reg.example/a/b/c", "reg.example/a/b/c:latest", "reg.example/a/b/c:latest"),
            ("Reg.Example:443/app", "Reg.Example:443/app:latest", "Reg.Example:443/app:latest"),
            ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"),
            ("[fe80::1]/app", "[fe80::1]/app:latest", "[fe80::1]/app:latest"),
            ("a__b/c.d/e-f--g:Tag_1.x", "docker.io/a__b/c.d/e-f--g:Tag_1.x", "a__b/c.d/e-f--g:Tag_1.x"),
        ];
        for (input, full, familiar) in table {
            let r = parse(input);
            assert_eq!((r.to_string().as_str(), r.familiar().as_str()), (full, familiar), "{input}");
        }
        let pinned = parse(&format!("bb@{d}"));
        assert_eq!((pinned.to_string(), pinned.tag.clone()), (format!("docker.io/library/bb@{d}"), None));
        assert_eq!(parse(&format!("bb:1@{d}")).to_string(), format!("docker.io/library/bb:1@{d}"));
        assert_eq!(parse("reg:5000/team/app:1").repository(), "reg:5000/team/app");
    }

    #[test]
    fn malformed_references_say_what_is_wrong_and_show_the_form() {
        let hex = "a".repeat(64);
        let cases = [
            ("", "empty"),
            ("Upper", "lowercase"),
            ("docker.io/Upper", "lowercase"),
            ("a:b:c", "component"),
            ("bad name", "component"),
            ("bb:bad tag", "invalid tag"),
            ("x:-t", "invalid tag"),
            ("a@sha256:zz", "64 lowercase hex"),
            ("a//b", "component"),
            ("a..b", "component"),
            ("-a", "component"),
            ("a_", "component"),
            ("a___b", "component"),
            (hex.as_str(), "64-digit hex"),
            ("bad_host.com/x", "invalid registry"),
            ("host:port/x", "invalid registry"),
        ];
        for (input, why) in cases {
            let err = input.parse::<Reference>().expect_err(input).to_string();
            assert!(err.contains(why) && err.contains("accepted form"), "{input}: {err}");
        }
        assert!(format!("a/{}", "b".repeat(260)).parse::<Reference>().is_err());
    }

    #[test]
    fn retagging_keeps_the_repository() {
        let r = parse("reg:5000/x:1");
        assert_eq!(r.with_tag("2").expect("tag").familiar(), "reg:5000/x:2");
        assert!(r.with_tag("bad tag").is_err());
        let d = Digest::sha256_of(b"m");
        assert_eq!(r.with_digest(&d).to_string(), format!("reg:5000/x@{d}"));
    }
}
