//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!key`, `>`/`<`) and field selectors
//! (`=`, `==`, `!=` on dotted paths), parsed from the query parameters as Kubernetes parses them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, Op)>,
}

fn valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn valid_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    });
    prefix_ok && !name.is_empty() && valid_label_value(name)
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn values(list: &str, req: &str) -> Result<Vec<String>, String> {
    let inner = list.trim();
    let inner = inner
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("unable to parse requirement: found '{inner}', expected: '(' in {req:?}"))?;
    let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    for v in &vals {
        if !valid_label_value(v) {
            return Err(invalid_value(v));
        }
    }
    Ok(vals)
}

fn invalid_value(v: &str) -> String {
    format!(
        "unable to parse requirement: values[0][{v}]: Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
    )
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { reqs });
        }
        for part in split_top(s) {
            let req = part.trim();
            if req.is_empty() {
                return Err(format!("found '', expected: identifier in selector {s:?}"));
            }
            let words: Vec<&str> = req.split_whitespace().collect();
            let (key, op) = if let Some(k) = req.strip_prefix('!') {
                (k.trim().to_string(), Op::NotExists)
            } else if let Some((k, v)) = req.split_once("!=") {
                (k.trim().to_string(), Op::NotEq(v.trim().to_string()))
            } else if let Some((k, v)) = req.split_once("==") {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = req.split_once('=') {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if words.len() >= 2 && words[1] == "in" {
                (words[0].to_string(), Op::In(values(req.split_once(" in").map_or("", |x| x.1), req)?))
            } else if words.len() >= 2 && words[1] == "notin" {
                (words[0].to_string(), Op::NotIn(values(req.split_once(" notin").map_or("", |x| x.1), req)?))
            } else if let Some((k, v)) = req.split_once('>') {
                (k.trim().to_string(), Op::Gt(v.trim().parse().map_err(|_| format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {req:?}"))?))
            } else if let Some((k, v)) = req.split_once('<') {
                (k.trim().to_string(), Op::Lt(v.trim().parse().map_err(|_| format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {req:?}"))?))
            } else if words.len() == 1 {
                (req.to_string(), Op::Exists)
            } else {
                return Err(format!("unable to parse requirement: found '{}', expected: in, notin, =, ==, !=, gt, lt", words.get(1).unwrap_or(&"")));
            };
            if !valid_label_key(&key) {
                return Err(format!("unable to parse requirement: key: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
            }
            if let Op::Eq(v) | Op::NotEq(v) = &op {
                if !valid_label_value(v) {
                    return Err(invalid_value(v));
                }
            }
            reqs.push((key, op));
        }
        Ok(LabelSelector { reqs })
    }

    /// From a metav1.LabelSelector object (`matchLabels`, `matchExpressions`).
    pub fn from_object(v: &Value) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if let Some(m) = v.get("matchLabels").and_then(Value::as_object) {
            for (k, val) in m {
                reqs.push((k.clone(), Op::Eq(val.as_str().unwrap_or_default().to_string())));
            }
        }
        for e in v.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
            let vals: Vec<String> = e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect();
            let op = match e.get("operator").and_then(Value::as_str) {
                Some("In") => Op::In(vals),
                Some("NotIn") => Op::NotIn(vals),
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::NotExists,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            reqs.push((key, op));
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Against an object's `metadata.labels`.
    pub fn matches(&self, labels: Option<&Value>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(k, op)| match op {
            Op::Eq(v) => get(k) == Some(v.as_str()),
            Op::NotEq(v) => get(k) != Some(v.as_str()),
            Op::In(vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Op::Exists => get(k).is_some(),
            Op::NotExists => get(k).is_none(),
            Op::Gt(n) => get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > *n),
            Op::Lt(n) => get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x < *n),
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

/// Splits on `sep` not preceded by a backslash, and unescapes `\,` `\=` `\\`.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut esc) = (Vec::new(), String::new(), false);
    for c in s.chars() {
        if esc {
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        // Operators are found before unescaping: split on unescaped commas, then on the operator.
        for part in split_escaped(&s.replace("\\=", "\u{0}").replace("\\!", "\u{1}"), ',') {
            let part = part.replace('\u{0}', "=").replace('\u{1}', "!");
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{part}'; can't understand '{part}'"));
            };
            reqs.push((field.trim().to_string(), eq, value.to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.reqs.iter().map(|(f, _, _)| f.as_str())
    }

    /// The value `metadata.name=` asks for, if any (a single-object watch).
    pub fn name(&self) -> Option<&str> {
        self.reqs.iter().find(|(f, eq, _)| f == "metadata.name" && *eq).map(|(_, _, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Against the object: a dotted path's value as a string (absent = "").
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(field, eq, want)| {
            let mut v = obj;
            for part in field.split('.') {
                v = v.get(part).unwrap_or(&Value::Null);
            }
            let got = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Bool(b) => b.to_string(),
                other => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_parse_and_match_like_kubernetes() {
        let labels = json!({"tier": "web", "env": "prod", "n": "5"});
        let m = |s: &str| LabelSelector::parse(s).expect(s).matches(Some(&labels));
        assert!(m("tier=web") && m("tier==web") && m("tier!=db") && m("tier in (web, db)") && m("tier in (web,db),env"));
        assert!(m("tier notin (db)") && m("missing notin (x)") && m("!missing") && m("env") && m("n>3") && m("n<6") && m(""));
        assert!(!m("tier=db") && !m("tier in (db)") && !m("!env") && !m("missing") && !m("n>5"));
        assert!(m("  tier  in  ( web ) , env = prod"));
        assert!(LabelSelector::parse("tier in db").expect_err("no parens").contains("expected: '('"));
        assert!(LabelSelector::parse("a=-x").expect_err("bad value").contains("Invalid value: \"-x\""));
        assert!(LabelSelector::parse("bad key=1").is_err());
        assert!(LabelSelector::parse("example.com/app=x").is_ok());
    }

    #[test]
    fn label_selector_objects_match_expressions() {
        let s = LabelSelector::from_object(&json!({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]})).expect("parse");
        assert!(s.matches(Some(&json!({"app": "a", "tier": "web"}))));
        assert!(!s.matches(Some(&json!({"app": "a"}))));
    }

    #[test]
    fn field_selectors_parse_escapes_and_match_paths() {
        let obj = json!({"metadata": {"name": "a,b", "namespace": "x"}, "status": {"phase": "Running"}, "spec": {}});
        let f = FieldSelector::parse("metadata.name=a\\,b,status.phase!=Pending").expect("parse");
        assert!(f.matches(&obj));
        assert_eq!(f.fields().collect::<Vec<_>>(), vec!["metadata.name", "status.phase"]);
        assert_eq!(f.name(), Some("a,b"));
        assert!(FieldSelector::parse("spec.nodeName=").expect("empty value").matches(&obj));
        assert!(!FieldSelector::parse("status.phase==Pending").expect("p").matches(&obj));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
