//! The engine's error kinds. The API edge maps each kind to one HTTP status (see engine-api).
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// Docker's wording: `No such container: web`, `No such image: bb:2`.
    #[error("No such {kind}: {name}")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    /// Docker's wording for networks differs from its other objects: `network appnet not found`.
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// Refused by rule, not by state (HTTP 403): removing a predefined network.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The request asked for what already is (start of a running container): HTTP 304.
    #[error("container {0} is already {1}")]
    NotModified(String, &'static str),
    /// The container's process could not be started; `exit_code` is 126/127 as Docker's CLI reports.
    #[error("{message}")]
    Start { message: String, exit_code: i32 },
    #[error("image: {0}")]
    Image(#[from] image::Error),
    #[error("snapshot: {0}")]
    Snapshot(#[from] snapshot::Error),
    #[error("{0}")]
    Registry(#[from] registry::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
    pub fn no_container(name: &str) -> Self {
        Error::NotFound { kind: "container", name: name.to_string() }
    }
    pub fn no_exec(id: &str) -> Self {
        Error::NotFound { kind: "exec instance", name: id.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
