//! Volumes and a container's mounts: named and anonymous volumes (driver `local`, kept in
//! `<root>/volumes/<name>/_data` until removed), bind mounts, tmpfs, `--volumes-from`, and the
//! image's VOLUME entries. A new empty volume mounted over image content gets a copy of it first,
//! as Docker does. Targets are placed inside the root by the runtime (openat2 RESOLVE_IN_ROOT), so
//! a symlink in the image cannot send a mount outside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::HostConfig;
use crate::Engine;

/// One mount of a container, resolved at create time and kept in its record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    pub name: String,
    /// Host path (binds and volumes).
    pub source: String,
    pub destination: String,
    pub rw: bool,
    /// The options as given (`ro`, `z`, …), for inspect's `Mode`.
    pub mode: String,
    pub propagation: String,
    /// tmpfs mount options (`size=…`, `mode=…`).
    pub options: Vec<String>,
    /// Created for this container alone: removed with `rm -v` and `--rm`.
    pub anonymous: bool,
}

/// A volume as `docker volume inspect` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub scope: String,
    /// Not part of Docker's answer: whether berth made it for one container (`-v /path`, VOLUME).
    #[serde(default, skip_serializing)]
    pub anonymous: bool,
}

/// `HostConfig.Mounts[]` as the API sends it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub bind_options: Option<BindOptions>,
    pub volume_options: Option<VolumeOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
    pub create_mountpoint: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
}

const PROPAGATIONS: &[&str] = &["shared", "slave", "private", "rshared", "rslave", "rprivate"];

fn valid_volume_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn check_destination(spec: &str, dest: &str) -> Result<()> {
    if !dest.starts_with('/') {
        return Err(Error::InvalidArgument(format!("invalid mount config: invalid mount path: '{dest}' mount path must be absolute ({spec})")));
    }
    if dest == "/" {
        return Err(Error::InvalidArgument(format!("invalid mount config: invalid specification: destination can't be '/' ({spec})")));
    }
    Ok(())
}

/// A `-v` / `Binds` entry: `name:/dst[:opts]` or `/host:/dst[:opts]`.
pub fn parse_bind(spec: &str) -> Result<MountPoint> {
    let parts: Vec<&str> = spec.split(':').collect();
    let invalid = || Error::InvalidArgument(format!("invalid volume specification: '{spec}'"));
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(invalid()),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(invalid());
    }
    check_destination(spec, dst)?;
    let mut m = MountPoint { destination: dst.to_string(), rw: true, mode: opts.to_string(), ..Default::default() };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.rw = false,
            "rw" => m.rw = true,
            // SELinux relabelling and nocopy: accepted, nothing to do here.
            "z" | "Z" | "nocopy" | "copy" => {}
            p if PROPAGATIONS.contains(&p) => m.propagation = p.to_string(),
            other => return Err(Error::InvalidArgument(format!("invalid mode: {other} (in volume specification '{spec}')"))),
        }
    }
    if src.starts_with('/') {
        m.kind = "bind".into();
        m.source = src.to_string();
        if m.propagation.is_empty() {
            m.propagation = "rprivate".into();
        }
    } else {
        if !valid_volume_name(src) {
            return Err(Error::InvalidArgument(format!(
                "create {src}: \"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        m.kind = "volume".into();
        m.name = src.to_string();
    }
    Ok(m)
}

/// A `--mount` / `HostConfig.Mounts` entry.
pub fn parse_mount(spec: &MountSpec) -> Result<MountPoint> {
    let kind = if spec.kind.is_empty() { "volume" } else { spec.kind.as_str() };
    check_destination(&spec.target, &spec.target)?;
    let mut m = MountPoint { kind: kind.to_string(), destination: spec.target.clone(), rw: !spec.read_only, mode: String::new(), ..Default::default() };
    match kind {
        "bind" => {
            if spec.source.is_empty() || !spec.source.starts_with('/') {
                return Err(Error::InvalidArgument(format!("invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute", spec.source)));
            }
            if !Path::new(&spec.source).exists() {
                return Err(Error::InvalidArgument(format!("invalid mount config for type \"bind\": bind source path does not exist: {}", spec.source)));
            }
            m.source = spec.source.clone();
            let p = spec.bind_options.as_ref().map(|b| b.propagation.clone()).unwrap_or_default();
            if !p.is_empty() && !PROPAGATIONS.contains(&p.as_str()) {
                return Err(Error::InvalidArgument(format!("invalid mount config for type \"bind\": invalid propagation mode: {p}")));
            }
            m.propagation = if p.is_empty() { "rprivate".into() } else { p };
        }
        "volume" => {
            if !spec.source.is_empty() && !valid_volume_name(&spec.source) {
                return Err(Error::InvalidArgument(format!("invalid mount config for type \"volume\": invalid volume name {:?}", spec.source)));
            }
            m.name = spec.source.clone();
        }
        "tmpfs" => {
            if !spec.source.is_empty() {
                return Err(Error::InvalidArgument("invalid mount config for type \"tmpfs\": source must not be specified".into()));
            }
            if let Some(t) = &spec.tmpfs_options {
                if t.size_bytes > 0 {
                    m.options.push(format!("size={}", t.size_bytes));
                }
                if t.mode > 0 {
                    m.options.push(format!("mode={:o}", t.mode));
                }
            }
        }
        other => return Err(Error::InvalidArgument(format!("invalid mount config: mount type unknown: {other:?}"))),
    }
    Ok(m)
}

/// `--tmpfs /dst[:opts]` / `HostConfig.Tmpfs`.
pub fn parse_tmpfs(dest: &str, opts: &str) -> Result<MountPoint> {
    check_destination(dest, dest)?;
    let options: Vec<String> = opts.split(',').filter(|o| !o.is_empty()).map(String::from).collect();
    let rw = !options.iter().any(|o| o == "ro");
    Ok(MountPoint { kind: "tmpfs".into(), destination: dest.to_string(), rw, mode: opts.to_string(), options, ..Default::default() })
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.inner.root.join("volumes")
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name)
    }

    /// `docker volume create` (an existing volume is returned as it is, as Docker does).
    pub fn create_volume(&self, name: Option<&str>, labels: BTreeMap<String, String>, options: BTreeMap<String, String>) -> Result<Volume> {
        let (name, anonymous) = match name.filter(|n| !n.is_empty()) {
            Some(n) => (n.to_string(), false),
            None => (crate::lifecycle::new_id(), true),
        };
        if !valid_volume_name(&name) {
            return Err(Error::InvalidArgument(format!("create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed")));
        }
        if let Ok(v) = self.volume(&name) {
            return Ok(v);
        }
        if let Some(d) = options.get("driver").filter(|d| *d != "local") {
            return Err(Error::InvalidArgument(format!("volume driver {d:?} is not available: berth has the local driver")));
        }
        let dir = self.volume_dir(&name);
        std::fs::create_dir_all(dir.join("_data")).map_err(|e| Error::io(format!("creating volume {name}"), e))?;
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: dir.join("_data").display().to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options,
            scope: "local".into(),
            anonymous,
        };
        let meta = serde_json::json!({"volume": v, "anonymous": anonymous});
        crate::store::write_atomic(&dir.join("meta.json"), meta.to_string().as_bytes())?;
        Ok(v)
    }

    pub fn volume(&self, name: &str) -> Result<Volume> {
        let dir = self.volume_dir(name);
        let data = std::fs::read(dir.join("meta.json")).map_err(|_| Error::NotFound { kind: "volume", name: name.to_string() })?;
        let meta: serde_json::Value = serde_json::from_slice(&data).map_err(|e| Error::Internal(format!("volume {name}: {e}")))?;
        let mut v: Volume = serde_json::from_value(meta["volume"].clone()).map_err(|e| Error::Internal(format!("volume {name}: {e}")))?;
        v.anonymous = meta["anonymous"].as_bool().unwrap_or(false);
        Ok(v)
    }

    pub fn volumes(&self) -> Vec<Volume> {
        let Ok(entries) = std::fs::read_dir(self.volumes_dir()) else { return Vec::new() };
        let mut out: Vec<Volume> = entries.flatten().filter_map(|e| self.volume(&e.file_name().to_string_lossy()).ok()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Ids of the containers whose mounts use the volume.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.containers().into_iter().filter(|c| c.mounts.iter().any(|m| m.kind == "volume" && m.name == name)).map(|c| c.id).collect()
    }

    /// `docker volume rm`: refused while a container uses it (even with force, as Docker).
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        if self.volume(name).is_err() {
            return if force { Ok(()) } else { Err(Error::NotFound { kind: "volume", name: name.to_string() }) };
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(Error::Conflict(format!("remove {name}: volume is in use - [{}]", users.join(", "))));
        }
        let dir = self.volume_dir(name);
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("removing volume {name}"), e))
    }

    /// `docker volume prune`: unused anonymous volumes, or with `all` every unused one.
    /// Returns the names and the bytes reclaimed.
    pub fn prune_volumes(&self, all: bool) -> (Vec<String>, u64) {
        let mut removed = Vec::new();
        let mut bytes = 0;
        for v in self.volumes() {
            if (!all && !v.anonymous) || !self.volume_users(&v.name).is_empty() {
                continue;
            }
            let size = dir_size(Path::new(&v.mountpoint));
            if self.remove_volume(&v.name, false).is_ok() {
                removed.push(v.name);
                bytes += size;
            }
        }
        (removed, bytes)
    }

    /// The container's mounts from its host config, `--volumes-from`, `-v /path` and the image's
    /// VOLUMEs; named volumes are created on first use, anonymous ones made here.
    pub(crate) fn resolve_mounts(&self, hc: &HostConfig, config_volumes: &[String], image_volumes: &[String]) -> Result<Vec<MountPoint>> {
        let mut mounts: Vec<MountPoint> = Vec::new();
        let add = |m: MountPoint, mounts: &mut Vec<MountPoint>| -> Result<()> {
            if mounts.iter().any(|x| x.destination == m.destination) {
                return Err(Error::InvalidArgument(format!("Duplicate mount point: {}", m.destination)));
            }
            mounts.push(m);
            Ok(())
        };
        for b in &hc.binds {
            add(parse_bind(b)?, &mut mounts)?;
        }
        for spec in &hc.mounts {
            add(parse_mount(spec)?, &mut mounts)?;
        }
        for (dest, opts) in &hc.tmpfs {
            add(parse_tmpfs(dest, opts)?, &mut mounts)?;
        }
        for from in &hc.volumes_from {
            let (name, mode) = from.split_once(':').unwrap_or((from.as_str(), ""));
            let other = self.container(name)?;
            for m in &other.mounts {
                if m.kind == "tmpfs" || mounts.iter().any(|x| x.destination == m.destination) {
                    continue;
                }
                let mut m = MountPoint { anonymous: false, ..m.clone() };
                match mode {
                    "ro" => m.rw = false,
                    "rw" | "" => {}
                    other => return Err(Error::InvalidArgument(format!("invalid mode for volumes-from: {other}"))),
                }
                mounts.push(m);
            }
        }
        // `-v /path` (Config.Volumes) and the image's VOLUMEs: anonymous volumes where nothing
        // else is mounted.
        for dest in config_volumes.iter().chain(image_volumes) {
            if mounts.iter().any(|m| m.destination == *dest) {
                continue;
            }
            check_destination(dest, dest)?;
            mounts.push(MountPoint { kind: "volume".into(), destination: dest.clone(), rw: true, anonymous: true, ..Default::default() });
        }
        // Make the volumes (and bind sources `-v` may create, as Docker does).
        for m in mounts.iter_mut() {
            match m.kind.as_str() {
                "volume" => {
                    let v = self.create_volume(if m.anonymous || m.name.is_empty() { None } else { Some(&m.name) }, BTreeMap::new(), BTreeMap::new())?;
                    m.anonymous = m.anonymous || m.name.is_empty();
                    m.name = v.name;
                    m.source = v.mountpoint;
                }
                "bind" if !Path::new(&m.source).exists() => {
                    std::fs::create_dir_all(&m.source).map_err(|e| Error::io(format!("creating bind source {}", m.source), e))?;
                }
                _ => {}
            }
        }
        Ok(mounts)
    }

    /// Removes the anonymous volumes of a removed container (`rm -v`, `--rm`).
    pub(crate) fn remove_anonymous_volumes(&self, mounts: &[MountPoint]) {
        for m in mounts.iter().filter(|m| m.anonymous && m.kind == "volume") {
            if let Err(e) = self.remove_volume(&m.name, false) {
                tracing::debug!(volume = %m.name, error = %e, "anonymous volume kept");
            }
        }
    }
}

/// OCI mounts for the spec.
pub(crate) fn spec_mounts(mounts: &[MountPoint]) -> Vec<serde_json::Value> {
    mounts
        .iter()
        .map(|m| match m.kind.as_str() {
            "tmpfs" => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string(), "noexec".to_string()];
                opts.extend(m.options.iter().filter(|o| *o != "rw" && *o != "ro").cloned());
                if !m.rw {
                    opts.push("ro".into());
                }
                serde_json::json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts})
            }
            _ => {
                let mut opts = vec!["rbind".to_string(), if m.rw { "rw" } else { "ro" }.to_string()];
                opts.push(if m.propagation.is_empty() { "rprivate".to_string() } else { m.propagation.clone() });
                serde_json::json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts})
            }
        })
        .collect()
}

/// Docker's copy-up: a volume that is still empty gets what the image has at its destination
/// (modes, owners, links), the first time it is mounted there. Skipped when any component of
/// the destination is a symlink in the image (it could point anywhere on the host).
pub(crate) fn copy_up(rootfs: &Path, mounts: &[MountPoint]) -> Result<()> {
    for m in mounts.iter().filter(|m| m.kind == "volume") {
        let data = Path::new(&m.source);
        if std::fs::read_dir(data).map(|mut d| d.next().is_some()).unwrap_or(true) {
            continue;
        }
        let mut src = rootfs.to_path_buf();
        let mut linked = false;
        for part in Path::new(&m.destination).components().skip(1) {
            src.push(part);
            if src.symlink_metadata().is_ok_and(|md| md.file_type().is_symlink()) {
                linked = true;
                break;
            }
        }
        if linked || !src.is_dir() {
            continue;
        }
        copy_tree(&src, data).map_err(|e| Error::io(format!("copying {} into volume {}", m.destination, m.name), e))?;
        // The volume's root takes the image directory's owner and mode.
        let md = std::fs::symlink_metadata(&src).map_err(|e| Error::io("copy-up", e))?;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let _ = std::os::unix::fs::lchown(data, Some(md.uid()), Some(md.gid()));
        let _ = std::fs::set_permissions(data, std::fs::Permissions::from_mode(md.mode() & 0o7777));
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let md = std::fs::symlink_metadata(&from)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        } else {
            // Devices, fifos, sockets: not copied (Docker copies them; rare in volume paths).
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(md.uid()), Some(md.gid()))?;
    }
    Ok(())
}

fn dir_size(p: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(p) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_as_docker_reads_them() {
        let m = parse_bind("/srv/data:/data:ro,rshared").expect("bind");
        assert_eq!((m.kind.as_str(), m.source.as_str(), m.destination.as_str(), m.rw, m.propagation.as_str()), ("bind", "/srv/data", "/data", false, "rshared"));
        let v = parse_bind("cache:/var/cache").expect("volume");
        assert_eq!((v.kind.as_str(), v.name.as_str(), v.rw), ("volume", "cache", true));
        assert!(parse_bind("/a").is_err());
        assert!(parse_bind("x:relative").expect_err("relative").to_string().contains("must be absolute"));
        assert!(parse_bind("/a:/b:bogus").expect_err("mode").to_string().contains("invalid mode"));
        assert!(parse_bind("bad name:/x").is_err());
    }

    #[test]
    fn a_bind_mount_needs_an_existing_source_with_mount() {
        let spec = MountSpec { kind: "bind".into(), source: "/no/such/dir".into(), target: "/x".into(), ..Default::default() };
        assert_eq!(
            parse_mount(&spec).expect_err("missing").to_string(),
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir"
        );
    }
}
