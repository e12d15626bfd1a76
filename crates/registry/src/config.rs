//! Credentials in Docker's client config (`~/.docker/config.json`, or `$DOCKER_CONFIG/config.json`):
//! `{"auths": {"registry:5000": {"auth": base64("user:password")}}}`. `berth login` writes the same
//! file the docker CLI reads, so either tool's login serves both. Credential helpers are not run.

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::Credentials;

/// Where the docker CLI keeps its config.
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The config file's JSON, kept whole so unknown keys survive a rewrite.
pub struct DockerConfig {
    path: PathBuf,
    doc: serde_json::Value,
}

/// The keys a registry may be stored under (Docker Hub has legacy names).
fn keys_for(registry: &str) -> Vec<String> {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            vec!["https://index.docker.io/v1/".into(), "index.docker.io".into(), "docker.io".into(), "registry-1.docker.io".into()]
        }
        r => vec![r.to_string(), format!("https://{r}"), format!("http://{r}")],
    }
}

impl DockerConfig {
    pub fn load(path: &Path) -> std::io::Result<DockerConfig> {
        let doc = match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => return Err(e),
        };
        Ok(DockerConfig { path: path.to_path_buf(), doc })
    }

    pub fn credentials(&self, registry: &str) -> Option<Credentials> {
        let auths = self.doc.get("auths")?;
        keys_for(registry).iter().find_map(|k| {
            let entry = auths.get(k)?;
            if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
                return Some(Credentials { username: u.into(), password: p.into() });
            }
            let raw = base64::engine::general_purpose::STANDARD.decode(entry["auth"].as_str()?.trim()).ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            Some(Credentials { username: u.into(), password: p.into() })
        })
    }

    pub fn set(&mut self, registry: &str, creds: &Credentials) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.password));
        let key = keys_for(registry).remove(0);
        if !self.doc["auths"].is_object() {
            self.doc["auths"] = serde_json::json!({});
        }
        self.doc["auths"][key] = serde_json::json!({ "auth": auth });
    }

    /// Removes every entry of the registry; false if there was none.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(auths) = self.doc.get_mut("auths").and_then(|a| a.as_object_mut()) else { return false };
        let mut removed = false;
        for k in keys_for(registry) {
            removed |= auths.remove(&k).is_some();
        }
        removed
    }

    /// Written with mode 0600 (it holds passwords), through a temporary file and a rename.
    pub fn save(&self) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&self.doc).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Credentials for a registry from the user's docker config, if any.
pub fn load_credentials(registry: &str) -> Option<Credentials> {
    DockerConfig::load(&config_path()?).ok()?.credentials(registry)
}

pub fn store_credentials(registry: &str, creds: &Credentials) -> std::io::Result<PathBuf> {
    let path = config_path().ok_or_else(|| std::io::Error::other("neither DOCKER_CONFIG nor HOME is set"))?;
    let mut cfg = DockerConfig::load(&path)?;
    cfg.set(registry, creds);
    cfg.save()?;
    Ok(path)
}

/// Whether credentials were stored for the registry.
pub fn remove_credentials(registry: &str) -> std::io::Result<bool> {
    let Some(path) = config_path() else { return Ok(false) };
    let mut cfg = DockerConfig::load(&path)?;
    let removed = cfg.remove(registry);
    if removed {
        cfg.save()?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_round_trip_through_the_docker_config_format() {
        let dir = std::env::temp_dir().join(format!("berth-registry-cfg-{}", std::process::id()));
        let path = dir.join("config.json");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(&path, r#"{"auths":{},"psFormat":"table {{.ID}}"}"#).expect("seed");
        let mut cfg = DockerConfig::load(&path).expect("load");
        cfg.set("127.0.0.1:5000", &Credentials { username: "ann".into(), password: "s:cret".into() });
        cfg.save().expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("YW5uOnM6Y3JldA=="), "base64 of user:password: {text}");
        assert!(text.contains("psFormat"), "other settings survive");
        let again = DockerConfig::load(&path).expect("reload");
        assert_eq!(again.credentials("127.0.0.1:5000"), Some(Credentials { username: "ann".into(), password: "s:cret".into() }));
        let mut again = again;
        assert!(again.remove("127.0.0.1:5000"));
        assert_eq!(again.credentials("127.0.0.1:5000"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
