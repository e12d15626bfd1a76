//! Content digests (`sha256:<64 lowercase hex>`), a streaming hasher and OCI chain ids.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// A sha256 digest, `sha256:<64 lowercase hex>`; the only algorithm berth stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(data))))
    }

    /// From 64 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Result<Digest, Error> {
        format!("sha256:{hex}").parse()
    }

    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    /// The 12-digit form Docker prints as an image id.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidDigest { digest: s.to_string(), reason: reason.to_string() };
        match s.split_once(':') {
            Some(("sha256", hex)) if is_hex64(hex) => Ok(Digest(s.to_string())),
            Some(("sha256", _)) => Err(invalid("expected sha256: and 64 lowercase hex digits")),
            Some((alg, _)) => Err(invalid(&format!("unsupported digest algorithm {alg:?}, only sha256"))),
            None => Err(invalid("expected sha256:<64 hex digits>")),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes what is written through it (or fed with `update`); `finish` gives the digest.
#[derive(Clone, Default)]
pub struct Digester {
    hasher: Sha256,
    size: u64,
}

impl Digester {
    pub fn new() -> Digester {
        Digester::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.size += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digest {
        Digest(format!("sha256:{}", hex::encode(self.hasher.finalize())))
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// OCI chain id of a layer on top of `parent`: chain(L0) = diffid(L0),
/// chain(Ln) = sha256(chain(Ln-1) + " " + diffid(Ln)).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// Chain ids of every layer of a diff id list, bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_id(out.last(), d);
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn digests_parse_only_lowercase_sha256() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(good.parse::<Digest>().expect("good").to_string(), good);
        for bad in ["", "sha256:", "sha256:abc", &format!("sha256:{}", "AB".repeat(32)), &format!("md5:{}", "ab".repeat(32)), &"ab".repeat(32)] {
            let err = bad.parse::<Digest>().expect_err(bad);
            assert!(matches!(err, Error::InvalidDigest { .. }), "{bad}");
        }
        assert!(format!("sha512:{}", "ab".repeat(64)).parse::<Digest>().expect_err("sha512").to_string().contains("sha512"));
    }

    #[test]
    fn the_streaming_hasher_matches_the_one_shot_digest() {
        let mut d = Digester::new();
        d.write_all(b"hel").expect("write");
        d.update(b"lo");
        assert_eq!(d.size(), 5);
        let digest = d.finish();
        assert_eq!(digest, Digest::sha256_of(b"hello"));
        assert_eq!(digest.hex(), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(digest.short(), "2cf24dba5fb0");
    }

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        assert_eq!(chain_id(None, &a), a);
        let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(Some(&a), &b), ab);
        assert_eq!(chain_ids(&[a.clone(), b]), vec![a, ab]);
    }
}
