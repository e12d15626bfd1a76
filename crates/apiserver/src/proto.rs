//! Reads Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! kubectl's typed commands send (`kubectl create namespace|configmap|deployment …`), into the
//! JSON form the rest of the server works with. Responses stay JSON (clients accept both).
//!
//! The wire reader is ours (a few dozen lines); the field table is generated from k8s-pb and
//! k8s-openapi by scripts/gen-k8s-proto-schema.py. No Rust crate turns k8s protobuf into k8s
//! JSON: k8s-pb's prost types have no serde, and k8s-openapi speaks JSON only.

use base64::Engine as _;
use serde_json::{json, Map, Value};

#[cfg(test)]
use crate::kinds;
use crate::proto_schema::MESSAGES;

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug)]
pub enum Ty {
    Str,
    Bool,
    I32,
    I64,
    F64,
    F32,
    Bytes,
    Message(&'static str),
    Map(&'static Ty, &'static Ty),
}

#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    pub json: &'static str,
    pub ty: Ty,
    pub repeated: bool,
}

#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// Go marshals non-pointer fields even when zero, and omits them from JSON; these optional
/// (pointer) fields mean something at zero and are kept.
const ZERO_MEANS_SOMETHING: &[&str] = &[
    "replicas", "parallelism", "completions", "backoffLimit", "terminationGracePeriodSeconds", "activeDeadlineSeconds",
    "ttlSecondsAfterFinished", "revisionHistoryLimit", "progressDeadlineSeconds", "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit", "startingDeadlineSeconds", "automountServiceAccountToken", "suspend",
    "allowPrivilegeEscalation", "readOnlyRootFilesystem", "runAsNonRoot", "privileged", "runAsUser", "runAsGroup",
    "fsGroup", "expirationSeconds", "defaultMode", "mode", "enableServiceLinks", "hostUsers", "shareProcessNamespace",
];

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("truncated field".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| "fixed64")?)),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Wire::Bytes(self.take(n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| "fixed32")?)),
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((tag, wire)))
    }
}

fn message(name: &str) -> Result<&'static Message, String> {
    MESSAGES.iter().find(|m| m.name == name).ok_or_else(|| format!("no protobuf schema for {name}"))
}

fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Value {
    match chrono::DateTime::from_timestamp(seconds, u32::try_from(nanos).unwrap_or(0)) {
        Some(t) if micro => json!(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        Some(t) => json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => Value::Null,
    }
}

/// A message's value, with the types Kubernetes encodes specially in JSON turned into their JSON
/// forms. `None` for a zero Time (JSON null, i.e. absent).
fn decode_message(name: &str, buf: &[u8]) -> Result<Option<Value>, String> {
    let m = message(name)?;
    let obj = decode_fields(m, buf)?;
    let int = |k: &str| obj.get(k).and_then(Value::as_i64).unwrap_or(0);
    Ok(match name {
        "apimachinery/pkg/apis/meta/v1/Time" | "apimachinery/pkg/apis/meta/v1/MicroTime" => {
            let (s, n) = (int("seconds"), int("nanos"));
            if s == 0 && n == 0 {
                None
            } else {
                Some(rfc3339(s, n, name.ends_with("MicroTime")))
            }
        }
        "apimachinery/pkg/util/intstr/IntOrString" => Some(if int("type") == 1 {
            obj.get("strVal").cloned().unwrap_or_else(|| json!(""))
        } else {
            json!(int("intVal"))
        }),
        "apimachinery/pkg/api/resource/Quantity" => Some(obj.get("string").cloned().unwrap_or_else(|| json!("0"))),
        "apimachinery/pkg/runtime/RawExtension" | "apimachinery/pkg/apis/meta/v1/FieldsV1" => {
            let raw = obj.get("raw").and_then(Value::as_str).unwrap_or_default();
            let bytes = base64::engine::general_purpose::STANDARD.decode(raw).map_err(|e| e.to_string())?;
            Some(if bytes.is_empty() { json!({}) } else { serde_json::from_slice(&bytes).map_err(|e| format!("{name} is not JSON: {e}"))? })
        }
        _ => Some(Value::Object(obj)),
    })
}

fn scalar(ty: &Ty, wire: &Wire<'_>) -> Result<Value, String> {
    Ok(match (ty, wire) {
        (Ty::Str, Wire::Bytes(b)) => json!(std::str::from_utf8(b).map_err(|_| "a string is not UTF-8")?),
        (Ty::Bytes, Wire::Bytes(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Ty::Bool, Wire::Varint(v)) => json!(*v != 0),
        // int32 travels sign-extended to 64 bits.
        (Ty::I32, Wire::Varint(v)) => json!(*v as i64 as i32),
        (Ty::I64, Wire::Varint(v)) => json!(*v as i64),
        (Ty::F64, Wire::Fixed64(v)) => json!(f64::from_bits(*v)),
        (Ty::F32, Wire::Fixed32(v)) => json!(f32::from_bits(*v)),
        _ => return Err(format!("wire type does not match {ty:?}")),
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn decode_fields(m: &Message, buf: &[u8]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut r = Reader { buf };
    while let Some((tag, wire)) = r.next()? {
        let f = m.fields.iter().find(|f| f.tag == tag).ok_or_else(|| format!("{} has no field number {tag}", m.name))?;
        let value = match (&f.ty, &wire) {
            (Ty::Message(name), Wire::Bytes(b)) => match decode_message(name, b)? {
                Some(v) => v,
                None => continue,
            },
            (Ty::Map(kt, vt), Wire::Bytes(b)) => {
                let (mut k, mut v) = (Value::Null, Value::Null);
                let mut e = Reader { buf: b };
                while let Some((t, w)) = e.next()? {
                    let ty = if t == 1 { kt } else { vt };
                    let val = match (ty, &w) {
                        (Ty::Message(name), Wire::Bytes(b)) => decode_message(name, b)?.unwrap_or(Value::Null),
                        _ => scalar(ty, &w)?,
                    };
                    if t == 1 {
                        k = val;
                    } else {
                        v = val;
                    }
                }
                let key = k.as_str().map(String::from).unwrap_or_default();
                if v.is_null() {
                    v = match vt {
                        Ty::Str | Ty::Bytes => json!(""),
                        _ => Value::Null,
                    };
                }
                out.entry(f.json).or_insert_with(|| json!({}))[key] = v;
                continue;
            }
            // Packed repeated scalars.
            (ty, Wire::Bytes(b)) if f.repeated && !matches!(ty, Ty::Str | Ty::Bytes) => {
                let mut p = Reader { buf: b };
                let list = out.entry(f.json).or_insert_with(|| json!([]));
                while !p.buf.is_empty() {
                    let w = match ty {
                        Ty::F64 => Wire::Fixed64(u64::from_le_bytes(p.take(8)?.try_into().map_err(|_| "fixed64")?)),
                        Ty::F32 => Wire::Fixed32(u32::from_le_bytes(p.take(4)?.try_into().map_err(|_| "fixed32")?)),
                        _ => Wire::Varint(p.varint()?),
                    };
                    if let Some(a) = list.as_array_mut() {
                        a.push(scalar(ty, &w)?);
                    }
                }
                continue;
            }
            (ty, w) => scalar(ty, w)?,
        };
        if f.repeated {
            if let Some(a) = out.entry(f.json).or_insert_with(|| json!([])).as_array_mut() {
                a.push(value);
            }
        } else if !is_zero(&value) || ZERO_MEANS_SOMETHING.contains(&f.json) {
            out.insert(f.json.to_string(), value);
        }
    }
    Ok(out)
}

/// The schema name of a type: `api/apps/v1/Deployment`, `api/core/v1/Namespace`,
/// `api/authentication/v1/TokenRequest`.
fn schema_name_of(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let group = group.split('.').next().filter(|g| !g.is_empty()).unwrap_or("core");
    format!("api/{group}/{version}/{kind}")
}

#[cfg(test)]
fn schema_name(kind: &kinds::Kind) -> String {
    schema_name_of(&kind.api_version(), kind.kind)
}

/// A protobuf request body (the `k8s\0` envelope around a runtime.Unknown) as a JSON object.
pub fn decode_object(body: &[u8]) -> Result<Value, String> {
    let rest = body.strip_prefix(MAGIC).ok_or("the protobuf body lacks the k8s envelope")?;
    let mut r = Reader { buf: rest };
    let (mut api_version, mut kind, mut raw, mut encoding) = (String::new(), String::new(), &[][..], String::new());
    while let Some((tag, wire)) = r.next()? {
        match (tag, wire) {
            (1, Wire::Bytes(tm)) => {
                let mut t = Reader { buf: tm };
                while let Some((tt, w)) = t.next()? {
                    if let Wire::Bytes(b) = w {
                        let s = String::from_utf8_lossy(b).into_owned();
                        if tt == 1 {
                            api_version = s;
                        } else if tt == 2 {
                            kind = s;
                        }
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            (3, Wire::Bytes(b)) => encoding = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(format!("protobuf content encoding {encoding:?} is not supported"));
    }
    let name = schema_name_of(&api_version, &kind);
    if message(&name).is_err() {
        return Err(format!("no protobuf decoding for {kind} in {api_version}: send JSON"));
    }
    let mut obj = decode_message(&name, raw)?.unwrap_or_else(|| json!({}));
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(tag: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes_field(1, api_version.as_bytes(), &mut tm);
        bytes_field(2, kind.as_bytes(), &mut tm);
        let mut u = Vec::new();
        bytes_field(1, &tm, &mut u);
        bytes_field(2, raw, &mut u);
        let mut out = MAGIC.to_vec();
        out.extend(u);
        out
    }

    #[test]
    fn every_message_referenced_is_in_the_table_and_every_kind_has_a_schema() {
        for m in MESSAGES {
            for f in m.fields {
                let names: Vec<&str> = match &f.ty {
                    Ty::Message(n) => vec![n],
                    Ty::Map(_, Ty::Message(n)) => vec![n],
                    _ => vec![],
                };
                for n in names {
                    assert!(message(n).is_ok(), "{} refers to {n}", m.name);
                }
            }
        }
        for k in kinds::KINDS {
            assert!(message(&schema_name(k)).is_ok(), "{}", k.kind);
        }
    }

    #[test]
    fn a_configmap_with_metadata_maps_and_zero_fields_decodes_like_its_json() {
        // ObjectMeta: name "c" (1), generateName "" (2, zero: dropped), labels {a: b} (11),
        // creationTimestamp zero (8: null, dropped).
        let mut meta = Vec::new();
        bytes_field(1, b"c", &mut meta);
        bytes_field(2, b"", &mut meta);
        let mut entry = Vec::new();
        bytes_field(1, b"a", &mut entry);
        bytes_field(2, b"b", &mut entry);
        bytes_field(11, &entry, &mut meta);
        bytes_field(8, &[], &mut meta);
        let mut cm = Vec::new();
        bytes_field(1, &meta, &mut cm);
        let mut data = Vec::new();
        bytes_field(1, b"k", &mut data);
        bytes_field(2, b"v", &mut data);
        bytes_field(2, &data, &mut cm);
        let obj = decode_object(&envelope("v1", "ConfigMap", &cm)).expect("decodes");
        assert_eq!(obj, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}}));
    }

    #[test]
    fn replicas_zero_survives_and_int_or_string_and_quantities_take_their_json_forms() {
        // DeploymentSpec: replicas 0 (1).
        let mut spec = vec![];
        varint(1 << 3, &mut spec);
        varint(0, &mut spec);
        let mut d = Vec::new();
        bytes_field(2, &spec, &mut d);
        let obj = decode_object(&envelope("apps/v1", "Deployment", &d)).expect("decodes");
        assert_eq!(obj["spec"]["replicas"], 0);
        let mut ios = Vec::new();
        varint(1 << 3, &mut ios);
        varint(1, &mut ios);
        bytes_field(3, b"25%", &mut ios);
        assert_eq!(decode_message("apimachinery/pkg/util/intstr/IntOrString", &ios).expect("ok"), Some(json!("25%")));
        let mut q = Vec::new();
        bytes_field(1, b"100m", &mut q);
        assert_eq!(decode_message("apimachinery/pkg/api/resource/Quantity", &q).expect("ok"), Some(json!("100m")));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_object(b"nope").is_err());
        assert!(decode_object(b"k8s\0\x0a\xff").is_err());
        assert!(decode_object(&envelope("v1", "Nope", &[])).is_err());
        let mut bad = Vec::new();
        bytes_field(99, b"x", &mut bad);
        assert!(decode_object(&envelope("v1", "ConfigMap", &bad)).expect_err("unknown field").contains("no field number 99"));
    }
}
