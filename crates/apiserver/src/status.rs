//! Errors as `metav1.Status`, in the wording kubectl users know
//! (`Error from server (NotFound): configmaps "x" not found`).

use serde_json::{json, Value};

use crate::kinds::Kind;

/// A field-level cause of an Invalid error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, `FieldValueTooLong`, ….
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

/// A failed request: HTTP code, Status reason, message and details.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

fn details(kind: &Kind, name: &str) -> Value {
    json!({"name": name, "group": kind.group, "kind": kind.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn not_found(kind: &Kind, name: &str) -> Self {
        ApiError { details: Some(details(kind, name)), ..Self::new(404, "NotFound", format!("{} \"{name}\" not found", kind.qualified())) }
    }

    /// A namespace that does not exist, when creating into it.
    pub fn namespace_not_found(name: &str) -> Self {
        ApiError { details: Some(json!({"name": name, "kind": "namespaces"})), ..Self::new(404, "NotFound", format!("namespaces \"{name}\" not found")) }
    }

    pub fn already_exists(kind: &Kind, name: &str) -> Self {
        ApiError { details: Some(details(kind, name)), ..Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", kind.qualified())) }
    }

    pub fn conflict(kind: &Kind, name: &str) -> Self {
        ApiError {
            details: Some(details(kind, name)),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", kind.qualified()),
            )
        }
    }

    pub fn conflict_message(kind: &Kind, name: &str, why: &str) -> Self {
        ApiError { details: Some(details(kind, name)), ..Self::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": {why}", kind.qualified())) }
    }

    /// 422 with field causes: `ConfigMap "Bad" is invalid: metadata.name: Invalid value: …`.
    pub fn invalid(kind: &Kind, name: &str, causes: &[Cause]) -> Self {
        let list: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let joined = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let causes: Vec<Value> = causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
        ApiError {
            details: Some(json!({"name": name, "group": kind.group, "kind": kind.kind, "causes": causes})),
            ..Self::new(422, "Invalid", format!("{} \"{name}\" is invalid: {joined}", kind.kind))
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn too_large() -> Self {
        Self::new(413, "RequestEntityTooLarge", "the request is too large: bodies are limited to 3 MiB")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn path_not_found(path: &str) -> Self {
        Self::new(404, "NotFound", format!("the server could not find the requested resource ({path})"))
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Compacted { requested, compacted } => ApiError::gone(format!("too old resource version: {requested} ({compacted})")),
            store::StoreError::FutureRevision { requested, current } => {
                ApiError::new(504, "Timeout", format!("Too large resource version: {requested}, current: {current}"))
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// A successful deletion answered with a Status (collections, some kinds).
pub fn success(kind: &Kind, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": kind.group, "kind": kind.plural, "uid": uid},
    })
}
