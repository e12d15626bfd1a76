//! Kubernetes PATCH semantics on `serde_json::Value` objects: strategic merge
//! patch (apimachinery's strategicpatch, with merge keys and strategies of the
//! built-in kinds from a compiled-in table), JSON patch (RFC 6902), JSON merge
//! patch (RFC 7386), kubectl's three-way apply patch, and a managedFields-free
//! server-side apply. The API server calls it to serve PATCH; berth's CLI uses
//! the three-way patch for `apply`.

mod diff;
mod json_patch;
mod schema;
mod smp;

use serde_json::{Map, Value};

pub use json_patch::json_patch;
pub use schema::PatchSchema;

/// Why a patch could not be applied or computed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// Strategic merge patch of a kind without patch strategies (custom
    /// resources): upstream answers 415 Unsupported Media Type.
    #[error("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patch is not supported for {kind} in {api_version})")]
    UnsupportedKind { api_version: String, kind: String },
    /// A malformed `$patch`, `$retainKeys`, `$setElementOrder` or
    /// `$deleteFromPrimitiveList` directive.
    #[error("invalid patch directive at {path}: {reason}")]
    InvalidDirective { path: String, reason: String },
    /// An element of a merged list lacks the list's merge key.
    #[error("map in list {path} does not contain declared merge key: {key}")]
    MissingMergeKey { path: String, key: String },
    /// The patch or the object is not of the shape the patch type needs.
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// A JSON patch operation failed; `index` counts from 0.
    #[error("JSON patch operation {index} ({op}) failed: {reason}")]
    JsonPatch { index: usize, op: String, reason: String },
}

impl PatchError {
    pub(crate) fn directive(path: &str, reason: String) -> Self {
        PatchError::InvalidDirective { path: if path.is_empty() { "<root>".into() } else { path.to_string() }, reason }
    }
}

fn as_map<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, PatchError> {
    v.as_object().ok_or_else(|| PatchError::Invalid(format!("{what} must be a JSON object, got {}", kind_of(v))))
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Applies a strategic merge patch (`application/strategic-merge-patch+json`)
/// to `original`: maps merge recursively, `null` deletes a key, lists whose
/// field has the `merge` strategy are merged by their merge key (others are
/// replaced), and the `$patch`, `$retainKeys`, `$setElementOrder/…` and
/// `$deleteFromPrimitiveList/…` directives are honoured.
pub fn strategic_merge(original: &Value, patch: &Value, schema: &PatchSchema) -> Result<Value, PatchError> {
    let o = as_map(original, "the object")?;
    let p = as_map(patch, "a strategic merge patch")?;
    smp::merge_map(o.clone(), p, schema.root(), "").map(Value::Object)
}

/// Applies a JSON merge patch (RFC 7386, `application/merge-patch+json`).
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match original {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let cur = out.remove(k).unwrap_or(Value::Null);
            out.insert(k.clone(), merge_patch(&cur, v));
        }
    }
    Value::Object(out)
}

/// The two-way strategic merge patch that turns `original` into `modified`
/// (apimachinery's CreateTwoWayMergePatch).
pub fn two_way_merge(original: &Value, modified: &Value, schema: &PatchSchema) -> Result<Value, PatchError> {
    let o = as_map(original, "the original object")?;
    let m = as_map(modified, "the modified object")?;
    let opts = diff::Opts { ignore_deletions: false, ignore_changes_and_additions: false };
    diff::diff_maps(o, m, schema.root(), false, opts, "").map(Value::Object)
}

/// kubectl's client-side apply patch (CreateThreeWayMergePatch): changes and
/// additions come from `current` → `modified`, deletions only from
/// `original` (the last-applied configuration, `Null` if none) → `modified`,
/// so fields other writers set on `current` survive.
pub fn three_way_merge(
    original: &Value,
    modified: &Value,
    current: &Value,
    schema: &PatchSchema,
) -> Result<Value, PatchError> {
    let empty = Value::Object(Map::new());
    let original = if original.is_null() { &empty } else { original };
    let o = as_map(original, "the last-applied configuration")?;
    let m = as_map(modified, "the modified object")?;
    let c = as_map(current, "the live object")?;
    let delta = diff::diff_maps(
        c,
        m,
        schema.root(),
        false,
        diff::Opts { ignore_deletions: true, ignore_changes_and_additions: false },
        "",
    )?;
    let deletions = diff::diff_maps(
        o,
        m,
        schema.root(),
        false,
        diff::Opts { ignore_deletions: false, ignore_changes_and_additions: true },
        "",
    )?;
    Ok(Value::Object(diff::union(deletions, delta, schema.root())))
}

/// Server-side apply without field management: creates `applied` if there is
/// no `current` object, else merges it in with strategic-merge semantics
/// ([`PatchSchema::untyped`] for custom resources: maps merge, lists replace).
/// It does not track managedFields, so fields dropped from a later apply are
/// not removed and conflicts between managers are not detected.
pub fn server_side_apply(current: Option<&Value>, applied: &Value, schema: &PatchSchema) -> Result<Value, PatchError> {
    let empty = Value::Object(Map::new());
    strategic_merge(current.unwrap_or(&empty), applied, schema)
}
