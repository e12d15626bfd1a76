//! Helpers the Kubernetes API server needs for every resource kind: label and
//! field selectors as the `labelSelector`/`fieldSelector` query parameters and
//! `metav1.LabelSelector` objects express them, the object-metadata
//! validation run on create and update (with the apiserver's wording, since
//! kubectl and client libraries show it verbatim), and `generateName`.

pub mod selector;
pub mod validation;

pub use selector::{
    escape_field_value, json_field_value, FieldOperator, FieldRequirement, FieldSelector,
    LabelSelector, Operator, Requirement, SelectorError,
};
pub use validation::{
    generate_name, invalid_message, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain,
    is_qualified_name, is_valid_label_value, validate_object_meta, validate_object_meta_update,
    Cause, CauseReason, NameRule,
};

/// Quotes a string the way Go's `%q` does, because apiserver messages embed
/// bad values that way and clients compare or display them verbatim.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%#v` of a `[]string`, which NewRequirement-style errors print.
pub(crate) fn go_string_slice(values: &[String]) -> String {
    let inner: Vec<String> = values.iter().map(|v| go_quote(v)).collect();
    format!("[]string{{{}}}", inner.join(", "))
}
