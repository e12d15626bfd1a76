//! Applying strategic merge patches (apimachinery's strategicpatch semantics).

use serde_json::{Map, Value};

use crate::schema::{field, Field};
use crate::PatchError;

pub(crate) const PATCH: &str = "$patch";
pub(crate) const RETAIN_KEYS: &str = "$retainKeys";
pub(crate) const SET_ORDER: &str = "$setElementOrder/";
pub(crate) const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Merges `patch` into `original` (a map of type `ty`).
pub(crate) fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: &str,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    match patch.get(PATCH) {
        None => {}
        Some(Value::String(s)) if s == "replace" => return Ok(strip_directives(patch)),
        Some(Value::String(s)) if s == "delete" => return Ok(Map::new()),
        Some(Value::String(s)) if s == "merge" => {}
        Some(other) => {
            return Err(PatchError::directive(path, format!("unknown $patch value {other}; use replace, delete or merge")))
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        let keys = keys.as_array().ok_or_else(|| {
            PatchError::directive(path, "$retainKeys must be a list of field names".to_string())
        })?;
        let keys: Vec<&str> = keys
            .iter()
            .map(|k| k.as_str().ok_or_else(|| PatchError::directive(path, "$retainKeys must be a list of strings".into())))
            .collect::<Result<_, _>>()?;
        for k in patch.keys().filter(|k| !k.starts_with('$')) {
            if !keys.contains(&k.as_str()) && !patch[k].is_null() {
                return Err(PatchError::directive(path, format!("field {k:?} is set but missing from $retainKeys")));
            }
        }
        original.retain(|k, _| keys.contains(&k.as_str()));
    }
    // Deletions from primitive lists come before the merge, as upstream does.
    for (k, v) in patch {
        if let Some(name) = k.strip_prefix(DELETE_PRIMITIVE) {
            let dels = v.as_array().ok_or_else(|| {
                PatchError::directive(path, format!("{k} must be a list"))
            })?;
            if let Some(Value::Array(list)) = original.get_mut(name) {
                list.retain(|e| !dels.contains(e));
            }
        }
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            if k == PATCH || k == RETAIN_KEYS || k.starts_with(DELETE_PRIMITIVE) || k.starts_with(SET_ORDER) {
                continue;
            }
            return Err(PatchError::directive(path, format!("unknown directive {k:?}")));
        }
        let how = field(ty, k);
        let sub = join(path, k);
        if v.is_null() {
            original.remove(k);
            continue;
        }
        let merged = match (original.remove(k), v) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                let m = merge_map(o, p, how.ty, &sub)?;
                // `$patch: delete` of a nested map removes the field.
                if p.get(PATCH).and_then(Value::as_str) == Some("delete") {
                    continue;
                }
                Value::Object(m)
            }
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(o, p, how, &sub)?),
            (None, Value::Object(p)) => {
                if p.get(PATCH).and_then(Value::as_str) == Some("delete") {
                    continue;
                }
                Value::Object(merge_map(Map::new(), p, how.ty, &sub)?)
            }
            (None, Value::Array(p)) => Value::Array(merge_list(Vec::new(), p, how, &sub)?),
            (_, v) => v.clone(),
        };
        original.insert(k.clone(), merged);
    }
    for (k, v) in patch {
        if let Some(name) = k.strip_prefix(SET_ORDER) {
            let order = v.as_array().ok_or_else(|| PatchError::directive(path, format!("{k} must be a list")))?;
            let how = field(ty, name);
            check_order(patch.get(name), order, how.key, &join(path, name))?;
            if let Some(Value::Array(list)) = original.get_mut(name) {
                let taken = std::mem::take(list);
                *list = reorder(taken, order, how.key, &join(path, name))?;
            }
        }
    }
    Ok(original)
}

/// Merges a patch list into an original list of a field patched as `how`.
fn merge_list(original: Vec<Value>, patch: &[Value], how: Field, path: &str) -> Result<Vec<Value>, PatchError> {
    if !how.merge {
        // Replace strategy: the patch list is the new value, minus directives.
        return patch.iter().map(|e| strip_value(e, how, path)).collect();
    }
    if let Some(pos) = patch.iter().position(|e| directive_of(e) == Some("replace")) {
        let mut out = Vec::new();
        for (i, e) in patch.iter().enumerate() {
            if i != pos {
                out.push(strip_value(e, how, path)?);
            }
        }
        return Ok(out);
    }
    if how.key.is_empty() {
        // A set of primitives (or maps without a key, merged as opaque values).
        let mut out = original;
        for e in patch {
            if let Some(d) = directive_of(e) {
                return Err(PatchError::directive(path, format!("$patch: {d} is not allowed in a list of primitives")));
            }
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        return Ok(out);
    }
    let mut out = original;
    for e in patch {
        let Value::Object(p) = e else {
            return Err(PatchError::MissingMergeKey { path: path.to_string(), key: how.key.to_string() });
        };
        let key = p.get(how.key).ok_or_else(|| PatchError::MissingMergeKey {
            path: path.to_string(),
            key: how.key.to_string(),
        })?;
        let pos = out.iter().position(|o| o.get(how.key) == Some(key));
        match p.get(PATCH).and_then(Value::as_str) {
            Some("delete") => {
                out.retain(|o| o.get(how.key) != Some(key));
                continue;
            }
            Some("replace") => {
                let v = Value::Object(strip_directives(p));
                match pos {
                    Some(i) => out[i] = v,
                    None => out.push(v),
                }
                continue;
            }
            _ => {}
        }
        let sub = format!("{path}[{}={}]", how.key, key);
        match pos {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut out[i]) else {
                    out[i] = Value::Object(merge_map(Map::new(), p, how.ty, &sub)?);
                    continue;
                };
                out[i] = Value::Object(merge_map(o, p, how.ty, &sub)?);
            }
            None => out.push(Value::Object(merge_map(Map::new(), p, how.ty, &sub)?)),
        }
    }
    Ok(out)
}

/// Orders `list` like `$setElementOrder`; elements the order does not name (those
/// only the server had) stay after the element that preceded them before.
fn reorder(list: Vec<Value>, order: &[Value], key: &str, path: &str) -> Result<Vec<Value>, PatchError> {
    let id = |e: &Value| -> Option<Value> {
        if key.is_empty() { Some(e.clone()) } else { e.get(key).cloned() }
    };
    let mut wanted = Vec::new();
    for o in order {
        let k = if key.is_empty() { Some(o.clone()) } else { o.get(key).cloned() };
        match k {
            Some(k) => wanted.push(k),
            None => {
                return Err(PatchError::directive(path, format!("$setElementOrder entries must carry the merge key {key:?}")))
            }
        }
    }
    let mut ordered: Vec<Value> = Vec::new();
    for w in &wanted {
        if let Some(e) = list.iter().find(|e| id(e).as_ref() == Some(w)) {
            ordered.push(e.clone());
        }
    }
    // Insert server-only elements after their former predecessor.
    for (i, e) in list.iter().enumerate() {
        if id(e).is_some_and(|k| wanted.contains(&k)) {
            continue;
        }
        let at = list[..i]
            .iter()
            .rev()
            .find_map(|prev| ordered.iter().position(|x| x == prev))
            .map(|p| p + 1)
            .unwrap_or(0);
        ordered.insert(at, e.clone());
    }
    Ok(ordered)
}

/// Every element the patch list sets must be named in its `$setElementOrder`,
/// as apimachinery requires; otherwise the order would be ambiguous.
fn check_order(list: Option<&Value>, order: &[Value], key: &str, path: &str) -> Result<(), PatchError> {
    let Some(Value::Array(list)) = list else {
        return Ok(());
    };
    for e in list {
        if directive_of(e).is_some() {
            continue;
        }
        let named = if key.is_empty() {
            order.contains(e)
        } else {
            let k = e.get(key);
            order.iter().any(|o| o.get(key) == k)
        };
        if !named {
            return Err(PatchError::directive(path, format!("element {e} is missing from $setElementOrder")));
        }
    }
    Ok(())
}

fn directive_of(e: &Value) -> Option<&str> {
    e.get(PATCH).and_then(Value::as_str)
}

/// A patch value used as a new value: directives are applied against nothing.
fn strip_value(v: &Value, how: Field, path: &str) -> Result<Value, PatchError> {
    Ok(match v {
        Value::Object(p) => Value::Object(merge_map(Map::new(), p, how.ty, path)?),
        other => other.clone(),
    })
}

fn strip_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(crate) fn join(path: &str, k: &str) -> String {
    if path.is_empty() { k.to_string() } else { format!("{path}.{k}") }
}
