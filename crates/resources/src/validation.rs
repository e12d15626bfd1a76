//! Object-metadata validation as the apiserver runs it on create and update.
//!
//! The `is_*` functions return the list of problems (empty when valid) with
//! apimachinery's wording, because the apiserver joins them into the
//! `metadata.name: Invalid value: ...` messages clients print as-is.

use std::fmt;

use serde_json::{Map, Value};

use crate::go_quote;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Longest DNS-1123 label, DNS-1035 label, qualified-name part and label value.
pub const MAX_LABEL_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const MAX_SUBDOMAIN_LENGTH: usize = 253;
/// Limit on the summed length of all annotation keys and values.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// `generateName` prefixes are cut to this so prefix plus suffix fit a label.
pub const MAX_GENERATED_PREFIX_LENGTH: usize = 58;
const RANDOM_SUFFIX_LENGTH: usize = 5;
/// Kubernetes' alphabet for random suffixes: no vowels (no accidental words)
/// and no look-alike characters.
const RANDOM_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// apimachinery's RegexError: the message, examples and the regex shown.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = String::from(msg);
    if examples.is_empty() {
        out.push_str(&format!(" (regex used for validation is '{fmt}')"));
        return out;
    }
    out.push_str(" (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        // The double space after the comma is what the apiserver prints.
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without a regex engine.
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

fn matches_dns1035_label(s: &str) -> bool {
    s.as_bytes().first().is_some_and(|b| b.is_ascii_lowercase()) && matches_dns1123_label(s)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the name part of qualified
/// names and (when non-empty) label values.
pub(crate) fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Problems with `value` as a DNS-1123 subdomain (most object names).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > MAX_SUBDOMAIN_LENGTH {
        errs.push(max_len_error(MAX_SUBDOMAIN_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Problems with `value` as a DNS-1123 label (namespace names).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > MAX_LABEL_LENGTH {
        errs.push(max_len_error(MAX_LABEL_LENGTH));
    }
    if !matches_dns1123_label(value) {
        // A valid subdomain that is not a label can only be failing on dots,
        // and upstream says so instead of printing the regex.
        if matches_dns1123_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Problems with `value` as a DNS-1035 label (Service names: they become DNS
/// names and environment variables, so must start with a letter).
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > MAX_LABEL_LENGTH {
        errs.push(max_len_error(MAX_LABEL_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(
            DNS1035_LABEL_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Problems with `value` as a qualified name: an optional DNS-1123 subdomain
/// prefix and '/', then a name of at most 63 characters (label and
/// annotation keys, finalizers).
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > MAX_LABEL_LENGTH {
        errs.push(format!("name part {}", max_len_error(MAX_LABEL_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Problems with `value` as a label value (may be empty).
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > MAX_LABEL_LENGTH {
        errs.push(max_len_error(MAX_LABEL_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Which rule a kind's `metadata.name` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Most kinds (ConfigMap, Secret, Pod, Deployment, Node...).
    Dns1123Subdomain,
    /// Namespaces.
    Dns1123Label,
    /// Services.
    Dns1035Label,
    /// Kinds whose names only have to be usable as a URL path segment
    /// (RBAC roles and bindings, for example).
    PathSegment,
}

impl NameRule {
    /// Problems with `name`; `prefix` is set when checking a
    /// `generateName`, which may end in '-' since a suffix follows.
    pub fn check(self, name: &str, prefix: bool) -> Vec<String> {
        if self == NameRule::PathSegment {
            return path_segment_errors(name, prefix);
        }
        let masked;
        let name = if prefix {
            masked = mask_trailing_dash(name);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => Vec::new(),
        }
    }
}

/// A generateName ends where the random suffix starts, so a trailing '-' is
/// fine. Upstream replaces the last two characters with "a" (dropping one);
/// kept identical so the same prefixes are accepted and rejected.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        if name.is_char_boundary(cut) {
            return format!("{}a", &name[..cut]);
        }
    }
    name.to_string()
}

fn path_segment_errors(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for bad in [".", ".."] {
            if name == bad {
                return vec![format!("may not be '{bad}'")];
            }
        }
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(**bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// A StatusCause's `reason` (metav1.CauseType) for field errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseReason {
    FieldValueInvalid,
    FieldValueRequired,
    FieldValueTooLong,
    FieldValueForbidden,
}

impl CauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseReason::FieldValueInvalid => "FieldValueInvalid",
            CauseReason::FieldValueRequired => "FieldValueRequired",
            CauseReason::FieldValueTooLong => "FieldValueTooLong",
            CauseReason::FieldValueForbidden => "FieldValueForbidden",
        }
    }
}

impl fmt::Display for CauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field error, shaped like a StatusCause: `message` is the error body
/// (`Invalid value: "x": ...`) without the field, as upstream puts it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: CauseReason,
    pub field: String,
    pub message: String,
}

impl Cause {
    /// `Invalid value: <value>: <detail>`; `value` is already formatted.
    fn invalid(field: &str, value: String, detail: &str) -> Self {
        Cause {
            reason: CauseReason::FieldValueInvalid,
            field: field.to_string(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    fn invalid_str(field: &str, value: &str, detail: &str) -> Self {
        Cause::invalid(field, go_quote(value), detail)
    }

    fn required(field: &str, detail: &str) -> Self {
        Cause {
            reason: CauseReason::FieldValueRequired,
            field: field.to_string(),
            message: with_detail("Required value", detail),
        }
    }

    fn forbidden(field: &str, detail: &str) -> Self {
        Cause {
            reason: CauseReason::FieldValueForbidden,
            field: field.to_string(),
            message: with_detail("Forbidden", detail),
        }
    }

    fn too_long(field: &str, max_bytes: usize) -> Self {
        Cause {
            reason: CauseReason::FieldValueTooLong,
            field: field.to_string(),
            message: format!("Too long: may not be more than {max_bytes} bytes"),
        }
    }
}

fn with_detail(kind: &str, detail: &str) -> String {
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The Status message of a 422 Invalid answer, e.g.
/// `ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: ...`.
/// `qualified_kind` is `Kind` for the core group, `Kind.group` otherwise.
/// Several causes are bracketed and comma-joined like apimachinery's
/// aggregate errors, with duplicates dropped.
pub fn invalid_message(qualified_kind: &str, name: &str, causes: &[Cause]) -> String {
    let mut msgs: Vec<String> = Vec::new();
    for c in causes {
        let m = c.to_string();
        if !msgs.contains(&m) {
            msgs.push(m);
        }
    }
    let head = format!("{qualified_kind} {} is invalid", go_quote(name));
    match msgs.as_slice() {
        [] => head,
        [one] => format!("{head}: {one}"),
        many => format!("{head}: [{}]", many.join(", ")),
    }
}

fn str_field<'a>(meta: &'a Value, key: &str) -> &'a str {
    meta.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A JSON value as Go's field errors print non-string bad values.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

fn validate_string_map(
    map: Option<&Value>,
    field: &str,
    causes: &mut Vec<Cause>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match map {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => out.push((k.clone(), s.clone())),
                    // Upstream fails to decode these; answering with a field
                    // error keeps the stored object's maps all-string.
                    other => {
                        causes.push(Cause::invalid(field, go_value(other), "must be a string"))
                    }
                }
            }
        }
        Some(other) => causes.push(Cause::invalid(field, go_value(other), "must be an object")),
    }
    out
}

fn validate_labels(meta: &Value, causes: &mut Vec<Cause>) {
    let field = "metadata.labels";
    for (k, v) in validate_string_map(meta.get("labels"), field, causes) {
        for msg in is_qualified_name(&k) {
            causes.push(Cause::invalid_str(field, &k, &msg));
        }
        for msg in is_valid_label_value(&v) {
            causes.push(Cause::invalid_str(field, &v, &msg));
        }
    }
}

fn validate_annotations(meta: &Value, causes: &mut Vec<Cause>) {
    let field = "metadata.annotations";
    let mut total = 0usize;
    for (k, v) in validate_string_map(meta.get("annotations"), field, causes) {
        // Annotation keys are case-insensitive qualified names.
        for msg in is_qualified_name(&k.to_lowercase()) {
            causes.push(Cause::invalid_str(field, &k, &msg));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        causes.push(Cause::too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(meta: &Value, causes: &mut Vec<Cause>) {
    let field = "metadata.ownerReferences";
    let refs = match meta.get("ownerReferences") {
        None | Some(Value::Null) => return,
        Some(Value::Array(a)) => a,
        Some(other) => {
            causes.push(Cause::invalid(field, go_value(other), "must be a list"));
            return;
        }
    };
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = str_field(r, "apiVersion");
        let kind = str_field(r, "kind");
        let name = str_field(r, "name");
        let uid = str_field(r, "uid");
        // Upstream parses group/version and complains about the version,
        // so "apps/" and "a/b/c" fail the same way an empty one does.
        let (group, version) = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => ("", *v),
            [g, v] => (*g, *v),
            _ => ("", ""),
        };
        // Like upstream, the paths carry no list index.
        if version.is_empty() {
            causes.push(Cause::invalid_str(
                &format!("{field}.apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            causes.push(Cause::invalid_str(
                &format!("{field}.kind"),
                kind,
                "kind must not be empty",
            ));
        }
        if name.is_empty() {
            causes.push(Cause::invalid_str(
                &format!("{field}.name"),
                name,
                "name must not be empty",
            ));
        }
        if uid.is_empty() {
            causes.push(Cause::invalid_str(
                &format!("{field}.uid"),
                uid,
                "uid must not be empty",
            ));
        }
        // Events are deleted by TTL, never by the garbage collector.
        if kind == "Event" && version == "v1" && (group.is_empty() || group == "events.k8s.io") {
            causes.push(Cause::invalid(
                field,
                r.to_string(),
                &format!("{group}/{version}, Kind={kind} is disallowed from being an owner"),
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => causes.push(Cause::invalid(
                    field,
                    Value::Array(refs.clone()).to_string(),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

const FINALIZER_ORPHAN: &str = "orphan";
const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

fn string_list(meta: &Value, key: &str, field: &str, causes: &mut Vec<Cause>) -> Vec<String> {
    match meta.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                other => {
                    causes.push(Cause::invalid(field, go_value(other), "must be a string"));
                    None
                }
            })
            .collect(),
        Some(other) => {
            causes.push(Cause::invalid(field, go_value(other), "must be a list"));
            Vec::new()
        }
    }
}

fn validate_finalizers(meta: &Value, causes: &mut Vec<Cause>) {
    let field = "metadata.finalizers";
    let finalizers = string_list(meta, "finalizers", field, causes);
    for f in &finalizers {
        for msg in is_qualified_name(f) {
            causes.push(Cause::invalid_str(field, f, &msg));
        }
    }
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    // The garbage collector cannot both orphan and delete the dependents.
    if has(FINALIZER_ORPHAN) && has(FINALIZER_FOREGROUND) {
        causes.push(Cause::invalid(
            field,
            crate::go_string_slice(&finalizers),
            &format!("finalizer {FINALIZER_ORPHAN} and {FINALIZER_FOREGROUND} cannot be both set"),
        ));
    }
}

fn validate_generation(meta: &Value, causes: &mut Vec<Cause>) {
    if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
        if g < 0 {
            causes.push(Cause::invalid(
                "metadata.generation",
                g.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// Validates an object's `metadata` on create. `namespaced` says whether the
/// kind lives in namespaces (then `metadata.namespace` is required, and
/// otherwise forbidden; the server should clear it for cluster-scoped kinds
/// beforehand, as upstream does). The server is expected to have turned
/// `generateName` into a `name` already; both are checked.
pub fn validate_object_meta(meta: &Value, namespaced: bool, name_rule: NameRule) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !meta.is_object() {
        causes.push(Cause::required("metadata", ""));
        return causes;
    }
    let generate_name = str_field(meta, "generateName");
    if !generate_name.is_empty() {
        for msg in name_rule.check(generate_name, true) {
            causes.push(Cause::invalid_str(
                "metadata.generateName",
                generate_name,
                &msg,
            ));
        }
    }
    let name = str_field(meta, "name");
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for msg in name_rule.check(name, false) {
            causes.push(Cause::invalid_str("metadata.name", name, &msg));
        }
    }
    let namespace = str_field(meta, "namespace");
    if namespaced {
        if namespace.is_empty() {
            causes.push(Cause::required("metadata.namespace", ""));
        } else {
            for msg in is_dns1123_label(namespace) {
                causes.push(Cause::invalid_str("metadata.namespace", namespace, &msg));
            }
        }
    } else if !namespace.is_empty() {
        causes.push(Cause::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    validate_generation(meta, &mut causes);
    validate_labels(meta, &mut causes);
    validate_annotations(meta, &mut causes);
    validate_owner_references(meta, &mut causes);
    validate_finalizers(meta, &mut causes);
    causes
}

/// Go prints metav1.Time through time.Time's String(); mirror that for the
/// RFC 3339 UTC form the API uses, and quote anything else.
fn go_time(v: &Value) -> String {
    if let Some(s) = v.as_str() {
        if let Some(stamp) = s.strip_suffix('Z') {
            if let Some((date, time)) = stamp.split_once('T') {
                return format!("{date} {time} +0000 UTC");
            }
        }
    }
    go_value(v)
}

/// Rejects a change to `metadata.<key>`. `zero` is how Go prints the field's
/// zero value when the new object leaves it out.
fn immutable(
    new: &Value,
    old: &Value,
    key: &str,
    zero: &str,
    show: fn(&Value) -> String,
    causes: &mut Vec<Cause>,
) {
    // An empty string and an absent field are the same zero value in Go.
    let norm = |v: Option<&Value>| -> Value {
        match v {
            None => Value::Null,
            Some(Value::String(s)) if s.is_empty() => Value::Null,
            Some(other) => other.clone(),
        }
    };
    let n = norm(new.get(key));
    if n != norm(old.get(key)) {
        let shown = if n.is_null() {
            zero.to_string()
        } else {
            show(&n)
        };
        causes.push(Cause::invalid(
            &format!("metadata.{key}"),
            shown,
            "field is immutable",
        ));
    }
}

/// Validates `metadata` on update against the stored object's: identity
/// fields may not change, generation may not go down, finalizers may not be
/// added once deletion started, and the new labels, annotations, owner
/// references and finalizers must be valid. Name rules are not re-checked
/// since the name cannot change.
pub fn validate_object_meta_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !new.is_object() {
        causes.push(Cause::required("metadata", ""));
        return causes;
    }
    let empty = Value::Object(Map::new());
    let old = if old.is_object() { old } else { &empty };

    if old.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        let field = "metadata.finalizers";
        let old_f = string_list(old, "finalizers", field, &mut Vec::new());
        let mut extra: Vec<String> = string_list(new, "finalizers", field, &mut Vec::new())
            .into_iter()
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            causes.push(Cause::forbidden(
                field,
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    crate::go_string_slice(&extra)
                ),
            ));
        }
    }

    let new_gen = new.get("generation").and_then(Value::as_i64).unwrap_or(0);
    let old_gen = old.get("generation").and_then(Value::as_i64).unwrap_or(0);
    if new_gen < old_gen {
        causes.push(Cause::invalid(
            "metadata.generation",
            new_gen.to_string(),
            "must not be decremented",
        ));
    }

    let c = &mut causes;
    immutable(new, old, "name", "\"\"", go_value, c);
    immutable(new, old, "namespace", "\"\"", go_value, c);
    immutable(new, old, "uid", "\"\"", go_value, c);
    immutable(
        new,
        old,
        "creationTimestamp",
        "0001-01-01 00:00:00 +0000 UTC",
        go_time,
        c,
    );
    immutable(new, old, "deletionTimestamp", "null", go_time, c);
    immutable(new, old, "deletionGracePeriodSeconds", "null", go_value, c);

    validate_generation(new, &mut causes);
    validate_labels(new, &mut causes);
    validate_annotations(new, &mut causes);
    validate_owner_references(new, &mut causes);
    validate_finalizers(new, &mut causes);
    causes
}

/// `prefix` followed by five random characters from Kubernetes' alphabet,
/// the prefix first cut to 58 bytes so the result fits a 63-byte label.
pub fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    let mut cut = prefix.len().min(MAX_GENERATED_PREFIX_LENGTH);
    // Names are ASCII once validated; stay on a char boundary regardless.
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut rng = rand::thread_rng();
    let mut out = String::with_capacity(cut + RANDOM_SUFFIX_LENGTH);
    out.push_str(&prefix[..cut]);
    for _ in 0..RANDOM_SUFFIX_LENGTH {
        let i = rng.gen_range(0..RANDOM_ALPHABET.len());
        out.push(char::from(RANDOM_ALPHABET[i]));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(causes: &[Cause]) -> Vec<(&str, CauseReason)> {
        causes
            .iter()
            .map(|c| (c.field.as_str(), c.reason))
            .collect()
    }

    #[test]
    fn dns1123_subdomain() {
        assert!(is_dns1123_subdomain("example.com").is_empty());
        assert!(is_dns1123_subdomain("a").is_empty());
        assert!(is_dns1123_subdomain("a-b.c-d.0").is_empty());
        for bad in ["", "A", "a_b", "-a", "a-", "a..b", ".a", "a."] {
            assert_eq!(is_dns1123_subdomain(bad).len(), 1, "{bad}");
        }
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(62),
        ]
        .join(".");
        assert_eq!(long.len(), 254);
        assert_eq!(
            is_dns1123_subdomain(&long),
            ["must be no more than 253 characters"]
        );
        assert!(is_dns1123_subdomain(&long[1..]).is_empty());
    }

    #[test]
    fn dns1123_label() {
        assert!(is_dns1123_label("kube-system").is_empty());
        assert!(is_dns1123_label("0abc").is_empty());
        assert_eq!(is_dns1123_label("a.b"), ["must not contain dots"]);
        assert_eq!(
            is_dns1123_label("Bad"),
            ["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        assert_eq!(
            is_dns1123_label(&"a".repeat(64)),
            ["must be no more than 63 characters"]
        );
        assert!(is_dns1123_label(&"a".repeat(63)).is_empty());
    }

    #[test]
    fn dns1035_label() {
        assert!(is_dns1035_label("my-svc").is_empty());
        let e = is_dns1035_label("1svc");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("a DNS-1035 label must consist"), "{e:?}");
        assert!(e[0].ends_with("regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"));
    }

    #[test]
    fn qualified_names() {
        for ok in ["app", "App_1.x-y", "example.com/MyName", "a/b", "9"] {
            assert!(is_qualified_name(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_qualified_name("/a"), ["prefix part must be non-empty"]);
        let e = is_qualified_name("a/");
        assert_eq!(e[0], "name part must be non-empty");
        assert!(e[1].starts_with("name part must consist of alphanumeric"));
        assert!(is_qualified_name("Example.com/a")[0]
            .starts_with("prefix part a lowercase RFC 1123 subdomain"));
        assert!(is_qualified_name("a/b/c")[0].ends_with(
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ));
        assert_eq!(
            is_qualified_name(&"k".repeat(64)),
            ["name part must be no more than 63 characters"]
        );
        assert!(is_qualified_name(&format!("{}/k", "p".repeat(253))).is_empty());
    }

    #[test]
    fn label_values() {
        for ok in ["", "a", "MyValue", "my_value", "1.2-3"] {
            assert!(is_valid_label_value(ok).is_empty(), "{ok}");
        }
        assert_eq!(is_valid_label_value("-x").len(), 1);
        assert_eq!(is_valid_label_value("x_").len(), 1);
        assert_eq!(is_valid_label_value("a b").len(), 1);
        assert_eq!(
            is_valid_label_value(&"v".repeat(64)),
            ["must be no more than 63 characters"]
        );
    }

    #[test]
    fn bad_name_message_matches_upstream() {
        let causes = validate_object_meta(
            &json!({"name": "Bad_Name", "namespace": "default"}),
            true,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(causes[0].reason, CauseReason::FieldValueInvalid);
        assert_eq!(
            causes[0].message,
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        );
        assert_eq!(
            invalid_message("ConfigMap", "Bad_Name", &causes),
            format!(
                "ConfigMap \"Bad_Name\" is invalid: metadata.name: {}",
                causes[0].message
            )
        );
    }

    #[test]
    fn valid_meta_has_no_causes() {
        let meta = json!({
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "app.kubernetes.io/part-of": ""},
            "annotations": {"Example.com/Note": "anything at all, spaces too"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u1", "controller": true}],
            "finalizers": ["kubernetes.io/pvc-protection"]
        });
        assert_eq!(
            validate_object_meta(&meta, true, NameRule::Dns1123Subdomain),
            []
        );
    }

    #[test]
    fn name_required() {
        let causes = validate_object_meta(
            &json!({"namespace": "default"}),
            true,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(
            fields(&causes),
            [("metadata.name", CauseReason::FieldValueRequired)]
        );
        assert_eq!(
            causes[0].message,
            "Required value: name or generateName is required"
        );
    }

    #[test]
    fn generate_name_is_validated_as_prefix() {
        let ok = json!({"generateName": "web-", "name": "web-x7k2p", "namespace": "d"});
        assert_eq!(
            validate_object_meta(&ok, true, NameRule::Dns1123Subdomain),
            []
        );
        let bad = json!({"generateName": "Web-", "name": "web-x7k2p", "namespace": "d"});
        let causes = validate_object_meta(&bad, true, NameRule::Dns1123Subdomain);
        assert_eq!(
            fields(&causes),
            [("metadata.generateName", CauseReason::FieldValueInvalid)]
        );
        assert!(causes[0]
            .message
            .starts_with("Invalid value: \"Web-\": a lowercase RFC 1123 subdomain"));
    }

    #[test]
    fn namespace_rules() {
        let missing = validate_object_meta(&json!({"name": "a"}), true, NameRule::Dns1123Subdomain);
        assert_eq!(
            fields(&missing),
            [("metadata.namespace", CauseReason::FieldValueRequired)]
        );
        assert_eq!(missing[0].message, "Required value");
        let dotted = validate_object_meta(
            &json!({"name": "a", "namespace": "a.b"}),
            true,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(
            dotted[0].message,
            "Invalid value: \"a.b\": must not contain dots"
        );
        let cluster = validate_object_meta(
            &json!({"name": "a", "namespace": "x"}),
            false,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(
            fields(&cluster),
            [("metadata.namespace", CauseReason::FieldValueForbidden)]
        );
        assert_eq!(cluster[0].message, "Forbidden: not allowed on this type");
        assert_eq!(
            validate_object_meta(&json!({"name": "a"}), false, NameRule::Dns1123Subdomain),
            []
        );
    }

    #[test]
    fn name_rules() {
        let check = |name: &str, rule| validate_object_meta(&json!({"name": name}), false, rule);
        assert_eq!(check("a.b", NameRule::Dns1123Subdomain), []);
        assert_eq!(
            check("a.b", NameRule::Dns1123Label)[0].message,
            "Invalid value: \"a.b\": must not contain dots"
        );
        assert_eq!(check("1svc", NameRule::Dns1035Label).len(), 1);
        assert_eq!(check("system:admin", NameRule::PathSegment), []);
        assert_eq!(
            check("..", NameRule::PathSegment)[0].message,
            "Invalid value: \"..\": may not be '..'"
        );
        assert_eq!(check("a/b%", NameRule::PathSegment).len(), 2);
    }

    #[test]
    fn label_causes() {
        let meta = json!({"name": "a", "labels": {"-k": "v", "k": "-v", "n": 1}});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(causes.len(), 3);
        assert!(causes.iter().all(|c| c.field == "metadata.labels"));
        assert!(causes.iter().any(|c| c
            .message
            .starts_with("Invalid value: \"-k\": name part must consist")));
        assert!(causes.iter().any(|c| c
            .message
            .starts_with("Invalid value: \"-v\": a valid label must be")));
        assert!(causes
            .iter()
            .any(|c| c.message == "Invalid value: 1: must be a string"));
    }

    #[test]
    fn annotation_keys_and_size() {
        let meta = json!({"name": "a", "annotations": {"bad key": "v"}});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(
            fields(&causes),
            [("metadata.annotations", CauseReason::FieldValueInvalid)]
        );
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let meta = json!({"name": "a", "annotations": {"k": big}});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(
            fields(&causes),
            [("metadata.annotations", CauseReason::FieldValueTooLong)]
        );
        assert_eq!(
            causes[0].message,
            "Too long: may not be more than 262144 bytes"
        );
        let fits = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT - 1);
        assert_eq!(
            validate_object_meta(
                &json!({"name": "a", "annotations": {"k": fits}}),
                false,
                NameRule::Dns1123Subdomain
            ),
            []
        );
    }

    #[test]
    fn owner_reference_fields() {
        let meta = json!({"name": "a", "ownerReferences": [{"apiVersion": "apps/", "kind": "", "name": "", "uid": ""}]});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(
            fields(&causes),
            [
                (
                    "metadata.ownerReferences.apiVersion",
                    CauseReason::FieldValueInvalid
                ),
                (
                    "metadata.ownerReferences.kind",
                    CauseReason::FieldValueInvalid
                ),
                (
                    "metadata.ownerReferences.name",
                    CauseReason::FieldValueInvalid
                ),
                (
                    "metadata.ownerReferences.uid",
                    CauseReason::FieldValueInvalid
                ),
            ]
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: \"apps/\": version must not be empty"
        );
        assert_eq!(
            causes[3].message,
            "Invalid value: \"\": uid must not be empty"
        );
    }

    #[test]
    fn owner_reference_single_controller_and_banned_event() {
        let r = |name: &str| json!({"apiVersion": "v1", "kind": "Pod", "name": name, "uid": name, "controller": true});
        let meta = json!({"name": "a", "ownerReferences": [r("x"), r("y")]});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(causes.len(), 1);
        assert!(causes[0].message.ends_with("Only one reference can have Controller set to true. Found \"true\" in references for Pod/x and Pod/y"));
        let meta = json!({"name": "a", "ownerReferences": [{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}]});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert!(causes[0]
            .message
            .ends_with("/v1, Kind=Event is disallowed from being an owner"));
    }

    #[test]
    fn finalizers() {
        let meta = json!({"name": "a", "finalizers": ["ok", "example.com/ok", "bad name"]});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(
            fields(&causes),
            [("metadata.finalizers", CauseReason::FieldValueInvalid)]
        );
        assert!(causes[0].message.starts_with("Invalid value: \"bad name\""));
        let meta = json!({"name": "a", "finalizers": ["orphan", "foregroundDeletion"]});
        let causes = validate_object_meta(&meta, false, NameRule::Dns1123Subdomain);
        assert_eq!(
            causes[0].message,
            "Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set"
        );
    }

    #[test]
    fn negative_generation() {
        let causes = validate_object_meta(
            &json!({"name": "a", "generation": -1}),
            false,
            NameRule::Dns1123Subdomain,
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
    }

    #[test]
    fn update_immutable_fields() {
        let old = json!({"name": "a", "namespace": "d", "uid": "u1", "creationTimestamp": "2024-01-02T03:04:05Z", "resourceVersion": "5"});
        let mut new = old.clone();
        new["labels"] = json!({"x": "y"});
        new["resourceVersion"] = json!("6");
        assert_eq!(validate_object_meta_update(&new, &old), []);

        let new = json!({"name": "b", "namespace": "e", "uid": "u2", "creationTimestamp": "2025-01-01T00:00:00Z"});
        let causes = validate_object_meta_update(&new, &old);
        assert_eq!(
            fields(&causes),
            [
                ("metadata.name", CauseReason::FieldValueInvalid),
                ("metadata.namespace", CauseReason::FieldValueInvalid),
                ("metadata.uid", CauseReason::FieldValueInvalid),
                ("metadata.creationTimestamp", CauseReason::FieldValueInvalid),
            ]
        );
        assert_eq!(
            causes[0].message,
            "Invalid value: \"b\": field is immutable"
        );
        assert_eq!(
            causes[3].message,
            "Invalid value: 2025-01-01 00:00:00 +0000 UTC: field is immutable"
        );
        assert!(causes
            .iter()
            .all(|c| c.message.ends_with("field is immutable")));
    }

    #[test]
    fn update_absent_equals_empty() {
        let old = json!({"name": "a", "namespace": ""});
        let new = json!({"name": "a"});
        assert_eq!(validate_object_meta_update(&new, &old), []);
        let old = json!({"name": "a", "uid": "u"});
        let causes = validate_object_meta_update(&new, &old);
        assert_eq!(causes[0].message, "Invalid value: \"\": field is immutable");
    }

    #[test]
    fn update_generation_and_finalizers_while_deleting() {
        let old = json!({"name": "a", "generation": 3, "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a/x"]});
        let mut new = old.clone();
        new["generation"] = json!(2);
        new["finalizers"] = json!(["a/x", "a/y"]);
        let causes = validate_object_meta_update(&new, &old);
        assert_eq!(
            fields(&causes),
            [
                ("metadata.finalizers", CauseReason::FieldValueForbidden),
                ("metadata.generation", CauseReason::FieldValueInvalid),
            ]
        );
        assert_eq!(
            causes[0].message,
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"a/y\"}"
        );
        // Removing finalizers while deleting is how deletion completes.
        new["generation"] = json!(3);
        new["finalizers"] = json!([]);
        assert_eq!(validate_object_meta_update(&new, &old), []);
    }

    #[test]
    fn update_validates_new_labels() {
        let old = json!({"name": "a"});
        let new = json!({"name": "a", "labels": {"k": "bad value"}});
        assert_eq!(
            fields(&validate_object_meta_update(&new, &old)),
            [("metadata.labels", CauseReason::FieldValueInvalid)]
        );
    }

    #[test]
    fn generated_names() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(n[4..].bytes().all(|b| RANDOM_ALPHABET.contains(&b)));
        let long = "p".repeat(100);
        let n = generate_name(&long);
        assert_eq!(n.len(), 63);
        assert!(n.starts_with(&"p".repeat(58)));
        assert!(is_dns1123_label(&n).is_empty());
        assert_eq!(generate_name("").len(), 5);
        // Never splits a multi-byte character.
        assert!(generate_name(&"é".repeat(40)).starts_with(&"é".repeat(29)));
    }

    #[test]
    fn invalid_message_aggregates() {
        let causes = validate_object_meta(
            &json!({"name": "A", "labels": {"-k": "v"}}),
            true,
            NameRule::Dns1123Subdomain,
        );
        let msg = invalid_message("Deployment.apps", "A", &causes);
        assert!(
            msg.starts_with(
                "Deployment.apps \"A\" is invalid: [metadata.name: Invalid value: \"A\""
            ),
            "{msg}"
        );
        assert!(
            msg.contains(
                ", metadata.namespace: Required value, metadata.labels: Invalid value: \"-k\""
            ),
            "{msg}"
        );
        assert!(msg.ends_with(']'));
        assert_eq!(invalid_message("Pod", "p", &[]), "Pod \"p\" is invalid");
    }

    #[test]
    fn go_quoting() {
        assert_eq!(crate::go_quote("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\x01\"");
    }
}
