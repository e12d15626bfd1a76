//! Docker image references: `[domain[:port]/]path[:tag][@digest]`, normalised as Docker does
//! (`bb:1` is `docker.io/library/bb:1`, no tag means `latest`).
use std::fmt;
use std::str::FromStr;

use crate::{Digest, Error};

pub const DEFAULT_DOMAIN: &str = "docker.io";
const FORM: &str = "[registry[:port]/]name[:tag][@sha256:digest], name in lowercase";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn invalid(input: &str, why: &str) -> Error {
    Error::InvalidReference { reference: input.to_string(), reason: format!("{why}; the accepted form is {FORM}") }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by one of `.`, `_`, `__`, or runs of `-`.
    !c.is_empty()
        && c.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && !c.contains("..")
        && !c.contains("___")
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(input: &str) -> Result<Self, Error> {
        if input.is_empty() {
            return Err(invalid(input, "empty reference"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| invalid(input, "invalid digest"))?)),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(invalid(input, &format!("invalid tag {t:?}")));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if name.bytes().any(|b| b.is_ascii_uppercase()) && !domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(input, "repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(invalid(input, "invalid repository name"));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') { format!("library/{path}") } else { path };
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Reference { domain, path, tag, digest })
    }
}

impl Reference {
    /// `docker.io/library/bb` → `bb`; other registries keep their domain.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path.strip_prefix("library/").unwrap_or(&self.path).to_string()
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

    /// `domain/path`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
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

    fn norm(s: &str) -> String {
        s.parse::<Reference>().expect(s).to_string()
    }

    #[test]
    fn docker_normalisation_table() {
        assert_eq!(norm("bb"), "docker.io/library/bb:latest");
        assert_eq!(norm("bb:1"), "docker.io/library/bb:1");
        assert_eq!(norm("team/app:2"), "docker.io/team/app:2");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("127.0.0.1:5000/team/app:1.2"), "127.0.0.1:5000/team/app:1.2");
        assert_eq!(norm("reg.example:5000/a/b/c"), "reg.example:5000/a/b/c:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("bb@{d}")), format!("docker.io/library/bb@{d}"));
    }

    #[test]
    fn familiar_names_drop_the_default_registry() {
        assert_eq!("docker.io/library/bb:1".parse::<Reference>().expect("ref").familiar(), "bb:1");
        assert_eq!("reg:5000/x:1".parse::<Reference>().expect("ref").familiar(), "reg:5000/x:1");
    }

    #[test]
    fn malformed_references_explain_the_form() {
        for bad in ["", "Upper", "a:b:c", "bad tag", "a@sha256:zz", "x:-t"] {
            let err = bad.parse::<Reference>().expect_err(bad).to_string();
            assert!(err.contains("accepted form"), "{bad}: {err}");
        }
    }
}
