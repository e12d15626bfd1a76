//! Images: references and digests, the content store (blobs by sha256), the image store (records
//! and tags, persisted atomically) and `import` of a root filesystem tarball. Layers are unpacked
//! into the `snapshot` crate's store, keyed by chain id (OCI image spec).
//!
//! Owns the `image/` directory. Knows nothing of containers: callers say which images are in use.
//! Registry pull/push and save/load build on the same pieces: blobs go into the `ContentStore`,
//! layers into the snapshotter, and `ImageStore::register` turns a stored manifest into an image.
//!
//! Layout: `digest.rs` (Digest, Digester, chain ids), `reference.rs` (Docker's reference grammar),
//! `content.rs` (blobs), `store.rs` (records, lookup, tags, rmi, GC), `import.rs` (`docker import`),
//! `changes.rs` (`--change` instructions).

mod archive;
mod changes;
mod content;
mod digest;
mod import;
mod reference;
mod store;

pub use content::{BlobWriter, ContentStore};
pub use digest::{chain_id, chain_ids, Digest, Digester};
pub use reference::Reference;
pub use store::ImageStore;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Docker's wording, which clients match on.
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("invalid reference format {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },
    /// Docker's text after `conflict: `, e.g. `unable to delete 4f2a… (must be forced) - …`.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("image id prefix {0:?} matches more than one image")]
    Ambiguous(String),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("invalid --change: {0}")]
    InvalidChange(String),
    #[error(transparent)]
    Snapshot(#[from] snapshot::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt image store: {0}")]
    Corrupt(String),
    /// A `load` input that is not a well-formed image archive; nothing of it was registered.
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
}

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// History comment (`docker import -m`); empty means "Imported from -".
    pub message: String,
    /// Dockerfile instructions applied to the config (`docker import -c 'CMD ["sh"]'`).
    pub changes: Vec<String>,
}

/// What `rmi` did, in Docker's order: every name untagged, then the image id and each layer
/// (chain id) deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

/// An image as callers see it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Config digest: Docker's image id.
    pub id: Digest,
    /// Familiar names: `bb:1`.
    pub repo_tags: Vec<String>,
    /// Familiar `repo@sha256:…` names (set by pulls and pushes).
    pub repo_digests: Vec<String>,
    pub manifest_digest: Digest,
    pub config: oci_spec::image::ImageConfiguration,
    pub created: Option<String>,
    /// Unpacked bytes of all layers.
    pub size: u64,
    /// Chain id of the top layer, what `Snapshotter::prepare` takes; None for zero layers.
    pub top_chain_id: Option<String>,
}

/// The GOARCH-style name OCI configs use for the host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests;
