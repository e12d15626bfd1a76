//! Label selectors (`labelSelector` query parameter, `metav1.LabelSelector`
//! objects) and field selectors (`fieldSelector` query parameter), parsed and
//! matched the way apimachinery's `labels` and `fields` packages do, with
//! their error texts.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::validation::{is_qualified_name, is_valid_label_value};
use crate::{go_quote, go_string_slice};

/// Why a selector was rejected. The texts are the apiserver's, since kubectl
/// prints them after `Error from server (BadRequest): `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector's structure is wrong between requirements.
    #[error("{0}")]
    Syntax(String),
    /// One label-selector requirement is malformed or invalid.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// A `metav1.LabelSelector` object holds an invalid key or values.
    #[error("{0}")]
    Invalid(String),
    /// A `matchExpressions` operator other than In, NotIn, Exists,
    /// DoesNotExist.
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    InvalidOperator(String),
    /// A field-selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    /// A backslash followed by something other than `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    FieldEscape(String),
    /// An unescaped `,` or `=` in a field-selector value. (Upstream prints
    /// the rune's code point; the character itself is more useful.)
    #[error("invalid field selector: unescaped character in value: {0}")]
    FieldUnescaped(char),
    /// A field the resource does not index; the server wraps this in its
    /// `Unable to find ... that match label selector ...` message.
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
}

/// A label-selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` condition of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Operator,
    /// Sorted and deduplicated, as upstream keeps them in a string set.
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement after apimachinery's NewRequirement checks; the
    /// error is the aggregated field-error text.
    /// Values are checked in the given order (error indexes refer to it),
    /// then kept sorted and deduplicated.
    pub fn new(key: &str, op: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errs: Vec<String> = Vec::new();
        let key_errs = is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(key),
                key_errs.join("; ")
            ));
        }
        match op {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: for 'in', 'notin' operators, values set can't be empty",
                go_string_slice(&values)
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                errs.push(format!(
                    "values: Invalid value: {}: exact-match compatibility requires one single value",
                    go_string_slice(&values)
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(format!(
                "values: Invalid value: {}: values set must be empty for exists and does not exist",
                go_string_slice(&values)
            )),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(format!(
                        "values: Invalid value: {}: for 'Gt', 'Lt' operators, exactly one value is required",
                        go_string_slice(&values)
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let v_errs = is_valid_label_value(v);
            if !v_errs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    v_errs.join("; ")
                ));
            }
        }
        let mut values = values;
        values.sort();
        values.dedup();
        match errs.len() {
            0 => Ok(Requirement {
                key: key.to_string(),
                op,
                values,
            }),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.op
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.iter().any(|x| x == v)
    }

    /// Whether labels (looked up through `get`) satisfy this requirement.
    /// Negative operators match when the key is absent, as upstream's do.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        let value = get(&self.key);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.has_value(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // A label that is not an integer never compares.
                let (Some(have), [want]) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.as_slice(),
                ) else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Exists => return f.write_str(&self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        let joined = self.values.join(",");
        if matches!(self.op, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({joined})", self.key)
        } else {
            write!(f, "{}{op}{joined}", self.key)
        }
    }
}

/// A parsed label selector: the AND of its requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key, as upstream sorts them.
    requirements: Vec<Requirement>,
    /// Set for a null `metav1.LabelSelector`, which selects nothing.
    nothing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosedPar,
    Comma,
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
    Ident,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn symbol(s: &str) -> Option<Tok> {
    Some(match s {
        "(" => Tok::OpenPar,
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::Bang,
        "=" => Tok::Eq,
        "==" => Tok::DoubleEq,
        "!=" => Tok::NotEq,
        ">" => Tok::Gt,
        "<" => Tok::Lt,
        _ => return None,
    })
}

/// Splits a label selector into tokens. Runs of operator characters take the
/// longest known symbol (`!=`, `==`); anything else up to whitespace or an
/// operator character is an identifier, `in`/`notin` being keywords.
fn lex(input: &str) -> Vec<(Tok, String)> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && is_space(chars[i]) {
            i += 1;
        }
        let Some(&c) = chars.get(i) else {
            out.push((Tok::End, String::new()));
            return out;
        };
        if is_special(c) {
            let mut best = (Tok::End, 0);
            let mut buf = String::new();
            for (n, &d) in chars[i..].iter().enumerate() {
                if !is_special(d) {
                    break;
                }
                buf.push(d);
                match symbol(&buf) {
                    Some(t) => best = (t, n + 1),
                    None => break,
                }
            }
            // Every single special character is a symbol, so best is set.
            let (tok, len) = best;
            out.push((tok, chars[i..i + len].iter().collect()));
            i += len;
        } else {
            let start = i;
            while i < chars.len() && !is_special(chars[i]) && !is_space(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = match word.as_str() {
                "in" => Tok::In,
                "notin" => Tok::NotIn,
                _ => Tok::Ident,
            };
            out.push((tok, word));
        }
    }
}

/// Where a token is read: in value position the keywords are plain words, so
/// `in` works as a key or value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    fn lookahead(&self, ctx: Ctx) -> (Tok, String) {
        let (tok, lit) = self
            .items
            .get(self.pos)
            .cloned()
            .unwrap_or((Tok::End, String::new()));
        let tok = match tok {
            Tok::In | Tok::NotIn if ctx == Ctx::Values => Tok::Ident,
            t => t,
        };
        (tok, lit)
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, String) {
        let item = self.lookahead(ctx);
        if self.pos < self.items.len() {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Bang => {
                    let r = self.requirement().map_err(SelectorError::Requirement)?;
                    reqs.push(r);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Tok::Ident && t2 != Tok::Bang {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        let negated = tok == Tok::Bang;
        if negated {
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let key = lit;
        let key_errs = is_qualified_name(&key);
        if !key_errs.is_empty() {
            // Upstream validates here without a field path, hence "<nil>".
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&key),
                key_errs.join("; ")
            ));
        }
        let (next, _) = self.lookahead(Ctx::Values);
        if negated {
            // Whatever follows `!key` is left for the caller to reject.
            return Requirement::new(&key, Operator::DoesNotExist, Vec::new());
        }
        if next == Tok::End || next == Tok::Comma {
            return Requirement::new(&key, Operator::Exists, Vec::new());
        }
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        let op = match tok {
            Tok::In => Operator::In,
            Tok::NotIn => Operator::NotIn,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::NotEq => Operator::NotEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ))
            }
        };
        let mut values = if matches!(op, Operator::In | Operator::NotIn) {
            self.set_values()?
        } else {
            self.exact_value()?
        };
        // Upstream collects parsed values in a set, so errors index the
        // sorted, deduplicated list.
        values.sort();
        values.dedup();
        Requirement::new(&key, op, values)
    }

    /// `(a,b,...)`; empty entries (`()`, `(a,)`, `(,a)`) stand for "".
    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let values = self.identifier_list()?;
                let (close, _) = self.consume(Ctx::Values);
                if close != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(values)
            }
            Tok::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn identifier_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Ident => {
                    values.push(lit);
                    let (next, next_lit) = self.lookahead(Ctx::Values);
                    match next {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{next_lit}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(Ctx::Values);
                    if next == Tok::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Tok::Comma {
                        self.consume(Ctx::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>`, `<`; nothing there means
    /// the empty value.
    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Tok::Ident {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

fn json_labels<'a>(
    labels: Option<&'a Map<String, Value>>,
) -> impl Fn(&str) -> Option<&'a str> + 'a {
    move |k| labels.and_then(|m| m.get(k)).and_then(Value::as_str)
}

impl LabelSelector {
    /// The selector that matches everything (an empty `labelSelector`).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches nothing (a null `metav1.LabelSelector`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector` query parameter syntax.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            items: lex(input),
            pos: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`,
    /// `matchExpressions`). JSON null selects nothing; an empty object
    /// selects everything.
    pub fn from_label_selector_json(value: &Value) -> Result<Self, SelectorError> {
        let obj = match value {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(o) => o,
            other => {
                return Err(SelectorError::Invalid(format!(
                    "label selector must be an object, got {other}"
                )))
            }
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(SelectorError::Invalid(format!(
                            "matchLabels[{k}]: value must be a string, got {v}"
                        )));
                    };
                    requirements.push(
                        Requirement::new(k, Operator::Equals, vec![v.to_string()])
                            .map_err(SelectorError::Invalid)?,
                    );
                }
            }
            Some(other) => {
                return Err(SelectorError::Invalid(format!(
                    "matchLabels must be an object, got {other}"
                )));
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for expr in exprs {
                    let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
                    let op_name = expr.get("operator").and_then(Value::as_str).unwrap_or("");
                    let op = match op_name {
                        "In" => Operator::In,
                        "NotIn" => Operator::NotIn,
                        "Exists" => Operator::Exists,
                        "DoesNotExist" => Operator::DoesNotExist,
                        other => return Err(SelectorError::InvalidOperator(other.to_string())),
                    };
                    let values = match expr.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| {
                                v.as_str().map(str::to_string).ok_or_else(|| {
                                    SelectorError::Invalid(format!(
                                        "matchExpressions values must be strings, got {v}"
                                    ))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        Some(other) => {
                            return Err(SelectorError::Invalid(format!(
                                "matchExpressions values must be a list, got {other}"
                            )))
                        }
                    };
                    requirements
                        .push(Requirement::new(key, op, values).map_err(SelectorError::Invalid)?);
                }
            }
            Some(other) => {
                return Err(SelectorError::Invalid(format!(
                    "matchExpressions must be a list, got {other}"
                )));
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// True when it matches every object (no requirements).
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether labels looked up through `get` satisfy every requirement.
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str> + Copy) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches_with(get))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Matches an object's `metadata.labels` as JSON (absent means none);
    /// non-string values count as absent.
    pub fn matches_json(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.matches_with(&json_labels(labels))
    }

    /// Matches a whole object through its `metadata.labels`.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches_json(
            object
                .pointer("/metadata/labels")
                .and_then(Value::as_object),
        )
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// A field-selector operator (`=` and `==` mean the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    DoubleEquals,
    NotEquals,
}

/// One `field op value` term of a field selector, value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub op: FieldOperator,
    pub value: String,
}

/// A parsed field selector: the AND of its terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Splits on commas not preceded by a backslash, keeping escapes intact.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&input[start..i]);
            start = i + 1;
        }
    }
    terms.push(&input[start..]);
    terms
}

/// Splits a term at the first operator; the field part has no escaping.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (sym, op) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::DoubleEquals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(sym) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => return Err(SelectorError::FieldEscape(format!("\\{other}"))),
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '=' => return Err(SelectorError::FieldUnescaped(c)),
            other => out.push(other),
        }
    }
    if escaped {
        return Err(SelectorError::FieldEscape("\\".to_string()));
    }
    Ok(out)
}

/// Escapes `\`, `,` and `=` so a value survives a round trip.
pub fn escape_field_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A field of a JSON object by dotted path, as the string a field selector
/// compares against: absent or null is "" (so `spec.nodeName=` finds
/// unscheduled pods), booleans and numbers print as Go formats them.
pub fn json_field_value(object: &Value, path: &str) -> String {
    let mut cur = object;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter. Whitespace is not
    /// trimmed, exactly as upstream: `a = b` names the field "a ".
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut terms = if input.is_empty() {
            Vec::new()
        } else {
            split_terms(input)
        };
        // Sorted like upstream so errors name the same term first.
        terms.sort_unstable();
        let mut requirements = Vec::new();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, op, raw)) = split_term(term) else {
                return Err(SelectorError::FieldTerm {
                    selector: input.to_string(),
                    term: term.to_string(),
                });
            };
            let value = unescape_value(raw)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The field names used, for checking them against the resource's
    /// supported fields.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Errors with `field label not supported: <field>` for the first field
    /// not in `supported`.
    pub fn check_supported(&self, supported: &[&str]) -> Result<(), SelectorError> {
        match self.fields().find(|f| !supported.contains(f)) {
            Some(f) => Err(SelectorError::FieldNotSupported(f.to_string())),
            None => Ok(()),
        }
    }

    /// The value an `=`/`==` term requires for `field`, letting the server
    /// answer `metadata.name=x` with a single lookup.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.op != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }

    /// Whether fields looked up through `get` satisfy every term; a missing
    /// field compares as "".
    pub fn matches(&self, get: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = get(&r.field).unwrap_or_default();
            match r.op {
                FieldOperator::Equals | FieldOperator::DoubleEquals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }

    /// Matches a JSON object, resolving each field as a dotted path.
    pub fn matches_json(&self, object: &Value) -> bool {
        self.matches(&|path| Some(json_field_value(object, path)))
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                // Upstream prints `==` terms back as `=`.
                let op = if r.op == FieldOperator::NotEquals {
                    "!="
                } else {
                    "="
                };
                format!("{}{op}{}", r.field, escape_field_value(&r.value))
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).expect(s)
    }

    fn err(s: &str) -> String {
        LabelSelector::parse(s).expect_err(s).to_string()
    }

    #[test]
    fn empty_selector_matches_everything() {
        for s in ["", "   ", "\t\n"] {
            let l = sel(s);
            assert!(l.is_everything());
            assert!(l.matches(&labels(&[])));
            assert!(l.matches(&labels(&[("a", "b")])));
        }
    }

    #[test]
    fn equals_and_double_equals() {
        for s in ["app=web", "app==web", "app = web", " app  ==  web "] {
            let l = sel(s);
            assert!(l.matches(&labels(&[("app", "web")])), "{s}");
            assert!(!l.matches(&labels(&[("app", "db")])), "{s}");
            assert!(!l.matches(&labels(&[])), "{s}");
        }
    }

    #[test]
    fn not_equals_matches_absent_key() {
        let l = sel("app!=web");
        assert!(!l.matches(&labels(&[("app", "web")])));
        assert!(l.matches(&labels(&[("app", "db")])));
        assert!(l.matches(&labels(&[])));
    }

    #[test]
    fn in_with_whitespace() {
        let l = sel("tier in (web, db)");
        assert!(l.matches(&labels(&[("tier", "web")])));
        assert!(l.matches(&labels(&[("tier", "db")])));
        assert!(!l.matches(&labels(&[("tier", "cache")])));
        assert!(!l.matches(&labels(&[])));
        assert_eq!(l.requirements()[0].values(), ["db", "web"]);
        assert_eq!(sel("tier in(web,db)"), l);
        assert_eq!(sel("tier   in   (  web ,db  )"), l);
    }

    #[test]
    fn notin_matches_absent_key() {
        let l = sel("tier notin (web,db)");
        assert!(!l.matches(&labels(&[("tier", "web")])));
        assert!(l.matches(&labels(&[("tier", "cache")])));
        assert!(l.matches(&labels(&[])));
    }

    #[test]
    fn exists_and_does_not_exist() {
        let l = sel("app");
        assert!(l.matches(&labels(&[("app", "")])));
        assert!(!l.matches(&labels(&[])));
        let l = sel("!app");
        assert!(!l.matches(&labels(&[("app", "x")])));
        assert!(l.matches(&labels(&[])));
        let l = sel(" ! app ");
        assert_eq!(l.requirements()[0].operator(), Operator::DoesNotExist);
    }

    #[test]
    fn greater_and_less_than() {
        let gt = sel("replicas>1");
        assert!(gt.matches(&labels(&[("replicas", "2")])));
        assert!(!gt.matches(&labels(&[("replicas", "1")])));
        assert!(!gt.matches(&labels(&[("replicas", "many")])));
        assert!(!gt.matches(&labels(&[])));
        let lt = sel("replicas < 10");
        assert!(lt.matches(&labels(&[("replicas", "-3")])));
        assert!(!lt.matches(&labels(&[("replicas", "10")])));
    }

    #[test]
    fn gt_requires_integer() {
        assert_eq!(
            err("a>b"),
            "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
    }

    #[test]
    fn multiple_requirements_are_anded_and_sorted() {
        let l = sel("tier in (web),app=x,!gone");
        assert!(l.matches(&labels(&[("tier", "web"), ("app", "x")])));
        assert!(!l.matches(&labels(&[("tier", "web"), ("app", "x"), ("gone", "1")])));
        assert!(!l.matches(&labels(&[("tier", "web")])));
        assert_eq!(l.to_string(), "app=x,!gone,tier in (web)");
    }

    #[test]
    fn empty_values() {
        let l = sel("a=");
        assert_eq!(l.requirements()[0].values(), [""]);
        assert!(l.matches(&labels(&[("a", "")])));
        assert!(!l.matches(&labels(&[("a", "x")])));
        assert_eq!(sel("a=,b").requirements().len(), 2);
        assert_eq!(sel("a in ()").requirements()[0].values(), [""]);
        assert_eq!(sel("a in (,x)").requirements()[0].values(), ["", "x"]);
        assert_eq!(sel("a in (x,)").requirements()[0].values(), ["", "x"]);
        assert_eq!(
            sel("a in (x,,y)").requirements()[0].values(),
            ["", "x", "y"]
        );
    }

    #[test]
    fn keywords_as_keys_and_values() {
        let l = sel("in in (in, notin)");
        assert!(l.matches(&labels(&[("in", "notin")])));
        let l = sel("notin=in");
        assert!(l.matches(&labels(&[("notin", "in")])));
    }

    #[test]
    fn prefixed_keys() {
        let l = sel("app.kubernetes.io/name=nginx");
        assert!(l.matches(&labels(&[("app.kubernetes.io/name", "nginx")])));
    }

    #[test]
    fn in_without_paren_error() {
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
    }

    #[test]
    fn bad_label_value_error() {
        assert_eq!(
            err("a=-x"),
            "unable to parse requirement: values[0][a]: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
    }

    #[test]
    fn long_label_value_error() {
        let v = "a".repeat(64);
        let e = err(&format!("k={v}"));
        assert!(e.contains("must be no more than 63 characters"), "{e}");
        assert!(sel(&format!("k={}", "a".repeat(63))).requirements().len() == 1);
    }

    #[test]
    fn bad_key_error() {
        assert_eq!(
            err("-a=b"),
            "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        let e = err("Bad_Prefix/a=b");
        assert!(
            e.contains("prefix part a lowercase RFC 1123 subdomain"),
            "{e}"
        );
        let e = err(&format!("{}=b", "k".repeat(64)));
        assert!(
            e.contains("name part must be no more than 63 characters"),
            "{e}"
        );
        let e = err("a/b/c");
        assert!(e.contains("a qualified name must consist of"), "{e}");
    }

    #[test]
    fn missing_operator_error() {
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
    }

    #[test]
    fn structural_errors() {
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(err("a=b,,c"), "found ',', expected: identifier after ','");
        assert_eq!(
            err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("=a"),
            "found '=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a in (b c)"),
            "unable to parse requirement: found 'c', expected: ',' or ')'"
        );
        assert_eq!(
            err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            err("a in (=)"),
            "unable to parse requirement: found '=', expected: ',', ')' or identifier"
        );
        assert_eq!(
            err("a==!b"),
            "unable to parse requirement: found '!', expected: identifier"
        );
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(
            err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("! =a"),
            "unable to parse requirement: found '=', expected: identifier"
        );
    }

    #[test]
    fn lexer_longest_match() {
        let toks: Vec<Tok> = lex("a!=b==c=(d)").into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            toks,
            [
                Tok::Ident,
                Tok::NotEq,
                Tok::Ident,
                Tok::DoubleEq,
                Tok::Ident,
                Tok::Eq,
                Tok::OpenPar,
                Tok::Ident,
                Tok::ClosedPar,
                Tok::End
            ]
        );
        // "===" is "==" then "=": the value position sees an operator.
        assert_eq!(
            err("a===b"),
            "unable to parse requirement: found '=', expected: identifier"
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "a=b",
            "a==b",
            "a!=b",
            "a in (x,y)",
            "a notin (x)",
            "a",
            "!a",
            "a>1",
            "a<2",
        ] {
            let l = sel(s);
            assert_eq!(l.to_string(), s);
            assert_eq!(sel(&l.to_string()), l);
        }
    }

    #[test]
    fn matches_json_labels() {
        let obj = json!({"metadata": {"labels": {"app": "web", "n": 3}}});
        let l = sel("app=web");
        assert!(l.matches_object(&obj));
        assert!(l.matches_json(obj.pointer("/metadata/labels").and_then(Value::as_object)));
        assert!(!l.matches_json(None));
        assert!(
            sel("!n").matches_object(&obj),
            "non-string values count as absent"
        );
        assert!(sel("app!=x").matches_object(&json!({"metadata": {}})));
    }

    #[test]
    fn label_selector_json_match_labels_and_expressions() {
        let l = LabelSelector::from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []}
            ]
        }))
        .unwrap();
        assert_eq!(l.requirements().len(), 5);
        assert!(l.matches(&labels(&[("app", "web"), ("tier", "a"), ("team", "x")])));
        assert!(!l.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("env", "prod")
        ])));
        assert!(!l.matches(&labels(&[
            ("app", "web"),
            ("tier", "a"),
            ("team", "x"),
            ("legacy", "1")
        ])));
        assert!(!l.matches(&labels(&[("app", "web"), ("tier", "a")])));
    }

    #[test]
    fn label_selector_json_null_and_empty() {
        let nothing = LabelSelector::from_label_selector_json(&Value::Null).unwrap();
        assert!(!nothing.matches(&labels(&[])));
        assert!(!nothing.is_everything());
        let all = LabelSelector::from_label_selector_json(&json!({})).unwrap();
        assert!(all.is_everything());
        assert!(all.matches(&labels(&[("x", "y")])));
    }

    #[test]
    fn label_selector_json_errors() {
        let e = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"Gt\" is not a valid label selector operator"
        );
        let e = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"
        );
        let e = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
        }))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist"
        );
        let e = LabelSelector::from_label_selector_json(&json!({"matchLabels": {"-bad": "x"}}))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("key: Invalid value: \"-bad\": name part must consist"),
            "{e}"
        );
        let e = LabelSelector::from_label_selector_json(
            &json!({"matchLabels": {"a": "-x", "b": "-y"}}),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("values[0][a]: Invalid value: \"-x\""),
            "{e}"
        );
        assert!(
            LabelSelector::from_label_selector_json(&json!({"matchLabels": {"a": 1}})).is_err()
        );
        assert!(LabelSelector::from_label_selector_json(&json!("a=b")).is_err());
    }

    #[test]
    fn json_expression_errors_index_given_order() {
        let e = LabelSelector::from_label_selector_json(&json!({
            "matchExpressions": [{"key": "a", "operator": "In", "values": ["z", "-bad"]}]
        }))
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("values[1][a]: Invalid value: \"-bad\""),
            "{e}"
        );
        let e = err("a in (z, -bad)");
        assert!(
            e.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-bad\""),
            "{e}"
        );
    }

    #[test]
    fn requirement_aggregates_several_errors() {
        let e = Requirement::new("-k", Operator::Equals, vec!["a".into(), "b".into()]).unwrap_err();
        assert!(e.starts_with("[key: Invalid value: \"-k\""), "{e}");
        assert!(
            e.contains(
                ", values: Invalid value: []string{\"a\", \"b\"}: exact-match compatibility"
            ),
            "{e}"
        );
    }

    fn field_err(s: &str) -> String {
        FieldSelector::parse(s).expect_err(s).to_string()
    }

    #[test]
    fn field_selector_operators() {
        let obj =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("metadata.name=a")
            .unwrap()
            .matches_json(&obj));
        assert!(FieldSelector::parse("metadata.name==a")
            .unwrap()
            .matches_json(&obj));
        assert!(!FieldSelector::parse("metadata.name!=a")
            .unwrap()
            .matches_json(&obj));
        assert!(FieldSelector::parse("metadata.name!=b")
            .unwrap()
            .matches_json(&obj));
        let both = FieldSelector::parse("status.phase=Running,metadata.namespace=ns").unwrap();
        assert!(both.matches_json(&obj));
        let miss = FieldSelector::parse("status.phase=Running,metadata.namespace=other").unwrap();
        assert!(!miss.matches_json(&obj));
    }

    #[test]
    fn field_selector_empty_and_missing_fields() {
        let f = FieldSelector::parse("").unwrap();
        assert!(f.is_empty());
        assert!(f.matches_json(&json!({})));
        assert!(FieldSelector::parse(",,").unwrap().is_empty());
        let pod = json!({"spec": {}});
        assert!(FieldSelector::parse("spec.nodeName=")
            .unwrap()
            .matches_json(&pod));
        assert!(!FieldSelector::parse("spec.nodeName!=")
            .unwrap()
            .matches_json(&pod));
        let scheduled = json!({"spec": {"nodeName": "n1", "hostNetwork": true, "replicas": 3}});
        assert!(FieldSelector::parse("spec.nodeName!=")
            .unwrap()
            .matches_json(&scheduled));
        assert!(FieldSelector::parse("spec.hostNetwork=true")
            .unwrap()
            .matches_json(&scheduled));
        assert!(FieldSelector::parse("spec.replicas=3")
            .unwrap()
            .matches_json(&scheduled));
    }

    #[test]
    fn field_selector_escapes() {
        let f = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").unwrap();
        assert_eq!(f.requirements()[0].value, r"a,b=c\d");
        assert_eq!(f.to_string(), r"metadata.name=a\,b\=c\\d");
        let f = FieldSelector::parse(r"a=x\,y,b=z").unwrap();
        assert_eq!(f.requirements().len(), 2);
        assert_eq!(f.exact_match("a"), Some("x,y"));
        assert_eq!(f.exact_match("b"), Some("z"));
        assert_eq!(f.exact_match("c"), None);
    }

    #[test]
    fn field_selector_errors() {
        assert_eq!(
            field_err("foo"),
            "invalid selector: 'foo'; can't understand 'foo'"
        );
        assert_eq!(
            field_err("a=b,foo"),
            "invalid selector: 'a=b,foo'; can't understand 'foo'"
        );
        assert_eq!(
            field_err(r"a=b\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            field_err(r"a=b\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        assert_eq!(
            field_err("a=b=c"),
            "invalid field selector: unescaped character in value: ="
        );
    }

    #[test]
    fn field_selector_first_operator_splits() {
        let f = FieldSelector::parse("a!=b").unwrap();
        assert_eq!(f.requirements()[0].op, FieldOperator::NotEquals);
        assert_eq!(f.requirements()[0].field, "a");
        // No trimming: the field keeps its space, as upstream.
        let f = FieldSelector::parse("a =b").unwrap();
        assert_eq!(f.fields().collect::<Vec<_>>(), ["a "]);
    }

    #[test]
    fn field_selector_supported_fields() {
        let f = FieldSelector::parse("metadata.name=x,foo=bar").unwrap();
        let e = f
            .check_supported(&["metadata.name", "metadata.namespace"])
            .unwrap_err();
        assert_eq!(e.to_string(), "field label not supported: foo");
        assert_eq!(e, SelectorError::FieldNotSupported("foo".into()));
        assert!(FieldSelector::parse("metadata.name=x")
            .unwrap()
            .check_supported(&["metadata.name"])
            .is_ok());
    }

    #[test]
    fn field_selector_custom_getter() {
        let f = FieldSelector::parse("involvedObject.kind=Pod,type!=Normal").unwrap();
        let get = |k: &str| match k {
            "involvedObject.kind" => Some("Pod".to_string()),
            "type" => Some("Warning".to_string()),
            _ => None,
        };
        assert!(f.matches(&get));
        let event = json!({"involvedObject": {"kind": "Pod"}, "type": "Normal"});
        assert!(!f.matches_json(&event));
    }
}
