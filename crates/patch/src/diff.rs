//! Computing strategic merge patches: two-way diffs and kubectl's three-way apply patch.

use serde_json::{Map, Value};

use crate::schema::{field, Field};
use crate::smp::{DELETE_PRIMITIVE, PATCH, RETAIN_KEYS, SET_ORDER};
use crate::PatchError;

#[derive(Clone, Copy)]
pub(crate) struct Opts {
    pub(crate) ignore_deletions: bool,
    pub(crate) ignore_changes_and_additions: bool,
}

pub(crate) fn diff_maps(
    o: &Map<String, Value>,
    m: &Map<String, Value>,
    ty: &str,
    retain_keys: bool,
    opts: Opts,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    let adds = !opts.ignore_changes_and_additions;
    let mut patch = Map::new();
    for (k, mv) in m {
        let how = field(ty, k);
        let sub = crate::smp::join(path, k);
        match (o.get(k), mv) {
            (None, _) => {
                if adds {
                    patch.insert(k.clone(), mv.clone());
                }
            }
            (Some(ov), _) if ov == mv => {}
            (Some(Value::Object(o2)), Value::Object(m2)) => {
                let d = diff_maps(o2, m2, how.ty, how.retain_keys, opts, &sub)?;
                if !d.is_empty() {
                    patch.insert(k.clone(), Value::Object(d));
                }
            }
            (Some(Value::Array(ol)), Value::Array(ml)) if how.merge => {
                diff_lists(ol, ml, k, how, opts, &mut patch, &sub)?;
            }
            (Some(_), _) => {
                if adds {
                    patch.insert(k.clone(), mv.clone());
                }
            }
        }
    }
    if !opts.ignore_deletions {
        for k in o.keys() {
            if !m.contains_key(k) {
                patch.insert(k.clone(), Value::Null);
            }
        }
    }
    if retain_keys && !patch.is_empty() {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        patch.insert(RETAIN_KEYS.into(), Value::Array(keys.into_iter().map(|k| Value::String(k.clone())).collect()));
    }
    Ok(patch)
}

fn diff_lists(
    ol: &[Value],
    ml: &[Value],
    k: &str,
    how: Field,
    opts: Opts,
    patch: &mut Map<String, Value>,
    path: &str,
) -> Result<(), PatchError> {
    let adds = !opts.ignore_changes_and_additions;
    let dels = !opts.ignore_deletions;
    if how.key.is_empty() {
        let added: Vec<Value> = ml.iter().filter(|e| !ol.contains(e)).cloned().collect();
        let removed: Vec<Value> = ol.iter().filter(|e| !ml.contains(e)).cloned().collect();
        let common_o: Vec<&Value> = ol.iter().filter(|e| ml.contains(e)).collect();
        let common_m: Vec<&Value> = ml.iter().filter(|e| ol.contains(e)).collect();
        let reordered = common_o != common_m;
        if adds && !added.is_empty() {
            patch.insert(k.into(), Value::Array(added.clone()));
        }
        if dels && !removed.is_empty() {
            patch.insert(format!("{DELETE_PRIMITIVE}{k}"), Value::Array(removed.clone()));
        }
        if (adds && (!added.is_empty() || reordered)) || (dels && !removed.is_empty()) {
            patch.insert(format!("{SET_ORDER}{k}"), Value::Array(ml.to_vec()));
        }
        return Ok(());
    }
    let key_of = |e: &Value| -> Result<Value, PatchError> {
        e.get(how.key).cloned().ok_or_else(|| PatchError::MissingMergeKey {
            path: path.to_string(),
            key: how.key.to_string(),
        })
    };
    let mut out = Vec::new();
    let mut mkeys = Vec::new();
    for me in ml {
        let kv = key_of(me)?;
        let sub = format!("{path}[{}={}]", how.key, kv);
        mkeys.push(kv.clone());
        match ol.iter().find(|oe| oe.get(how.key) == Some(&kv)) {
            None => {
                if adds {
                    out.push(me.clone());
                }
            }
            Some(oe) if oe == me => {}
            Some(oe) => match (oe, me) {
                (Value::Object(o2), Value::Object(m2)) => {
                    let mut d = diff_maps(o2, m2, how.ty, how.retain_keys, opts, &sub)?;
                    if !d.is_empty() {
                        d.insert(how.key.to_string(), kv);
                        out.push(Value::Object(d));
                    }
                }
                _ => {
                    if adds {
                        out.push(me.clone());
                    }
                }
            },
        }
    }
    let mut okeys = Vec::new();
    let mut removed = false;
    for oe in ol {
        let kv = key_of(oe)?;
        if mkeys.contains(&kv) {
            okeys.push(kv);
        } else if dels {
            removed = true;
            let mut d = Map::new();
            d.insert(how.key.to_string(), kv);
            d.insert(PATCH.into(), Value::String("delete".into()));
            out.push(Value::Object(d));
        }
    }
    let common_m: Vec<&Value> = mkeys.iter().filter(|k| okeys.contains(k)).collect();
    let reordered = okeys.iter().collect::<Vec<_>>() != common_m;
    let changed = !out.is_empty();
    if changed {
        patch.insert(k.into(), Value::Array(out));
    }
    if changed || removed || (adds && reordered) {
        let order = mkeys
            .into_iter()
            .map(|kv| {
                let mut e = Map::new();
                e.insert(how.key.to_string(), kv);
                Value::Object(e)
            })
            .collect();
        patch.insert(format!("{SET_ORDER}{k}"), Value::Array(order));
    }
    Ok(())
}

/// Combines the deletions patch and the changes patch of a three-way merge into
/// one patch; elements of merged lists with the same key are combined.
pub(crate) fn union(a: Map<String, Value>, b: Map<String, Value>, ty: &str) -> Map<String, Value> {
    let mut out = a;
    for (k, bv) in b {
        let how = field(ty, k.strip_prefix(SET_ORDER).unwrap_or(&k));
        let merged = match (out.remove(&k), bv) {
            (Some(Value::Object(x)), Value::Object(y)) => Value::Object(union(x, y, how.ty)),
            (Some(Value::Array(mut x)), Value::Array(y))
                if !k.starts_with('$') && how.merge && !how.key.is_empty() =>
            {
                for e in y {
                    let kv = e.get(how.key).cloned();
                    let pos = x.iter().position(|xe| kv.is_some() && xe.get(how.key) == kv.as_ref());
                    match (pos, e) {
                        (Some(i), Value::Object(ey)) => {
                            if let Value::Object(ex) = std::mem::take(&mut x[i]) {
                                x[i] = Value::Object(union(ex, ey, how.ty));
                            }
                        }
                        (_, e) => x.push(e),
                    }
                }
                Value::Array(x)
            }
            (Some(Value::Array(mut x)), Value::Array(y)) if !k.starts_with('$') && how.merge => {
                for e in y {
                    if !x.contains(&e) {
                        x.push(e);
                    }
                }
                Value::Array(x)
            }
            (_, bv) => bv,
        };
        out.insert(k, merged);
    }
    out
}
