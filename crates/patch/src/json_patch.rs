//! JSON patch (RFC 6902). Written here rather than pulled in because it is a
//! hundred lines on top of serde_json and needs error messages in berth's
//! (kubectl's) style naming the failing operation.

use serde_json::Value;

use crate::PatchError;

/// Applies a JSON patch (`application/json-patch+json`) atomically: on any
/// failure the original is untouched and the failing operation is named.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::Invalid(format!("a JSON patch must be a list of operations, got {}", crate::kind_of(patch))))?;
    let mut doc = original.clone();
    for (index, op) in ops.iter().enumerate() {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("").to_string();
        let fail = |reason: String| PatchError::JsonPatch { index, op: name.clone(), reason };
        let str_field = |f: &str| -> Result<String, PatchError> {
            op.get(f)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| fail(format!("missing string field {f:?}")))
        };
        let value = || op.get("value").cloned().ok_or_else(|| fail("missing field \"value\"".into()));
        let path = str_field("path")?;
        match name.as_str() {
            "add" => add(&mut doc, &path, value()?).map_err(fail)?,
            "remove" => {
                remove(&mut doc, &path).map_err(fail)?;
            }
            "replace" => {
                let v = value()?;
                let target = get_mut(&mut doc, &path).map_err(fail)?;
                *target = v;
            }
            "move" => {
                let from = str_field("from")?;
                if path != from && path.starts_with(&format!("{from}/")) {
                    return Err(fail(format!("cannot move {from} into its own child {path}")));
                }
                let v = remove(&mut doc, &from).map_err(fail)?;
                add(&mut doc, &path, v).map_err(fail)?;
            }
            "copy" => {
                let from = str_field("from")?;
                let v = get_mut(&mut doc, &from).map_err(fail)?.clone();
                add(&mut doc, &path, v).map_err(fail)?;
            }
            "test" => {
                let v = value()?;
                let cur = get_mut(&mut doc, &path).map_err(fail)?;
                if *cur != v {
                    return Err(fail(format!("value at {path} is {cur}, not {v}")));
                }
            }
            other => return Err(fail(format!("unknown op {other:?}; use add, remove, replace, move, copy or test"))),
        }
    }
    Ok(doc)
}

fn tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or_else(|| format!("path {path:?} must start with '/'"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn index(list: &[Value], tok: &str, allow_end: bool) -> Result<usize, String> {
    if allow_end && tok == "-" {
        return Ok(list.len());
    }
    let bad = || format!("invalid list index {tok:?}");
    if tok.len() > 1 && tok.starts_with('0') {
        return Err(bad());
    }
    let i: usize = tok.parse().map_err(|_| bad())?;
    let max = if allow_end { list.len() } else { list.len().saturating_sub(1) };
    if i > max || (!allow_end && list.is_empty()) {
        return Err(format!("list index {i} out of range"));
    }
    Ok(i)
}

fn get_mut<'a>(doc: &'a mut Value, path: &str) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for tok in tokens(path)? {
        cur = match cur {
            Value::Object(m) => m.get_mut(&tok).ok_or_else(|| format!("path {path} does not exist"))?,
            Value::Array(l) => {
                let i = index(l, &tok, false)?;
                &mut l[i]
            }
            _ => return Err(format!("path {path} does not exist")),
        };
    }
    Ok(cur)
}

fn split(path: &str) -> Result<(String, String), String> {
    let toks = tokens(path)?;
    let Some(last) = toks.last() else {
        return Err("the root cannot be the target of this operation".into());
    };
    let cut = path.rfind('/').unwrap_or(0);
    Ok((path[..cut].to_string(), last.clone()))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match get_mut(doc, &parent)? {
        Value::Object(m) => {
            m.insert(last, v);
        }
        Value::Array(l) => {
            let i = index(l, &last, true)?;
            l.insert(i, v);
        }
        _ => return Err(format!("parent of {path} is not an object or a list")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    match get_mut(doc, &parent)? {
        Value::Object(m) => m.remove(&last).ok_or_else(|| format!("path {path} does not exist")),
        Value::Array(l) => {
            let i = index(l, &last, false)?;
            Ok(l.remove(i))
        }
        _ => Err(format!("path {path} does not exist")),
    }
}
