#!/usr/bin/env python3
"""Generates crates/apiserver/src/proto_schema.rs: the protobuf field table of the Kubernetes
types berth serves, so the API server can read the protobuf bodies kubectl's typed commands send
(`kubectl create namespace|configmap|deployment …`).

Field numbers and wire types come from the k8s-pb crate (prost bindings of the upstream .proto
files); JSON field names from k8s-openapi (its Deserialize impls map JSON names to fields). Both
crates are in ~/.cargo/registry once `cargo fetch` has run. Re-run after upgrading either crate:
    python3 scripts/gen-k8s-proto-schema.py > crates/apiserver/src/proto_schema.rs
"""
import glob, os, re, sys

REG = os.path.expanduser("~/.cargo/registry/src")
PB = sorted(glob.glob(f"{REG}/*/k8s-pb-0.7.0/src"))[0]
OA = sorted(glob.glob(f"{REG}/*/k8s-openapi-0.24.0/src/v1_32"))[0]

# Roots: the kinds the server serves (module path, type).
ROOTS = [
    ("api/core/v1", t) for t in ["Namespace", "ConfigMap", "Secret", "ServiceAccount", "Event", "Node", "Pod", "Service",
                                 "Endpoints", "PersistentVolumeClaim", "ResourceQuota", "LimitRange"]
] + [("api/apps/v1", t) for t in ["Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "ControllerRevision"]] + [
    ("api/batch/v1", "Job"), ("api/batch/v1", "CronJob"), ("api/discovery/v1", "EndpointSlice"),
    ("api/coordination/v1", "Lease"), ("api/networking/v1", "Ingress"), ("api/networking/v1", "NetworkPolicy"),
    ("api/policy/v1", "PodDisruptionBudget"),
] + [("api/rbac/v1", t) for t in ["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]] + [
    # Subresource bodies kubectl sends typed.
    ("api/authentication/v1", "TokenRequest"), ("api/autoscaling/v1", "Scale"),
    ("api/authentication/v1", "SelfSubjectReview"), ("api/authorization/v1", "SelfSubjectAccessReview"),
    ("api/authorization/v1", "SubjectAccessReview"),
]

SCALARS = {"string": "Str", "bool": "Bool", "int32": "I32", "int64": "I64", "double": "F64", "float": "F32", "bytes": "Bytes"}

def parse_pb():
    msgs = {}
    for path in glob.glob(f"{PB}/**/mod.rs", recursive=True):
        mod = os.path.relpath(os.path.dirname(path), PB)
        text = open(path).read()
        for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", text, re.S):
            name, body = m.group(1), m.group(2)
            fields = []
            for f in re.finditer(r'#\[prost\(([^\]]*?)tag = "(\d+)"\)\]\s*pub (r#)?(\w+):', body, re.S):
                attr, tag, _, field = f.groups()
                # The type runs to the first comma outside angle brackets (rustfmt splits long ones).
                depth, end = 0, f.end()
                while end < len(body) and not (body[end] == "," and depth == 0):
                    depth += {"<": 1, ">": -1}.get(body[end], 0)
                    end += 1
                rtype = "".join(body[f.end():end].split())
                fields.append((int(tag), field, attr, rtype))
            msgs[(mod, name)] = fields
    return msgs

def resolve(mod, rtype):
    """The (module, type) a Rust type path names, from module `mod`."""
    t = re.sub(r"::core::option::Option<(.*?),?>$", r"\1", rtype)
    t = re.sub(r"::prost::alloc::vec::Vec<(.*?),?>$", r"\1", t)
    t = re.sub(r"::prost::alloc::boxed::Box<(.*?),?>$", r"\1", t)
    m = re.match(r"::prost::alloc::collections::BTreeMap<[^,]+,\s*(.*?),?>$", t)
    if m:
        t = m.group(1)
    parts = t.strip().split("::")
    base = mod.split("/")
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    return ("/".join(base + parts[:-1]), parts[-1])

def parse_openapi():
    names = {}
    for path in glob.glob(f"{OA}/**/*.rs", recursive=True):
        mod = os.path.relpath(os.path.dirname(path), OA)
        text = open(path).read()
        s = re.search(r"pub struct (\w+)", text)
        if not s:
            continue
        keys = dict((snake, js) for js, snake in re.findall(r'"([^"]+)" => Field::Key_(\w+),', text))
        names[(mod, s.group(1))] = keys
    return names

def camel(snake):
    p = snake.split("_")
    return p[0] + "".join(x[:1].upper() + x[1:] for x in p[1:])

def main():
    msgs, json_names = parse_pb(), parse_openapi()
    out, todo, seen = [], list(ROOTS), set()
    while todo:
        key = todo.pop()
        if key in seen or key not in msgs:
            continue
        seen.add(key)
        mod, name = key
        fields = []
        for tag, field, attr, rtype in msgs[key]:
            js = json_names.get(key, {}).get(field) or camel(field)
            repeated = "repeated" in attr
            mm = re.match(r'\s*btree_map = "(\w+), (\w+)"', attr)
            if mm:
                k, v = mm.groups()
                if v == "message":
                    target = resolve(mod, rtype)
                    todo.append(target)
                    vt = f'Ty::Message("{"/".join(target)}")'
                else:
                    vt = f"Ty::{SCALARS[v]}"
                ty = f"Ty::Map(&Ty::{SCALARS[k]}, &{vt})"
            else:
                kind = attr.split(",")[0].strip().split(" ")[0].split("=")[0].strip()
                if kind == "message":
                    target = resolve(mod, rtype)
                    todo.append(target)
                    ty = f'Ty::Message("{"/".join(target)}")'
                elif kind in SCALARS:
                    ty = f"Ty::{SCALARS[kind]}"
                else:
                    sys.exit(f"unknown prost kind {kind!r} in {key} {field}")
            fields.append(f'        Field {{ tag: {tag}, json: "{js}", ty: {ty}, repeated: {str(repeated).lower()} }},')
        out.append(f'    Message {{ name: "{mod}/{name}", fields: &[\n' + "\n".join(fields) + "\n    ] },")
    print("// Generated by scripts/gen-k8s-proto-schema.py from k8s-pb 0.7.0 and k8s-openapi 0.24.0 (v1_32): do not edit.")
    print("use crate::proto::{Field, Message, Ty};\n")
    print("#[rustfmt::skip]")
    print("pub static MESSAGES: &[Message] = &[")
    print("\n".join(sorted(out)))
    print("];")

main()
