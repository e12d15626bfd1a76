//! A small Go text/template evaluator over JSON, for `inspect -f`, `ps --format` and
//! `images --format`. Hand-written because no crate evaluates Go templates over serde_json values,
//! and docker users expect Go's syntax and Go's printing (`map[k:v]`, `<no value>`, `1` not `1.0`).
//!
//! Supported: text, `{{.A.B}}`, `{{.}}`, `$` and `$var` (with fields), string/number/bool literals,
//! pipelines (`{{.Config | json}}`), parenthesised sub-expressions, `{{if}}`/`{{else if}}`/
//! `{{else}}`, `{{range}}` (with `$i, $v :=`), `{{with}}`, `{{$x := …}}`, trim markers `{{-`/`-}}`,
//! and the functions json, index, len, join, split, upper, lower, title, truncate, print, println,
//! eq, ne, lt, le, gt, ge, not, and, or. Anything else is a clear error, never silently ignored.
mod lex;

use serde_json::Value;

use lex::{split_actions, Piece, Tok};

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template: {}", self.0)
    }
}

impl std::error::Error for TemplateError {}

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

/// A parsed template, evaluated as often as needed (once per container in `ps --format`).
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipeline),
    If { pipe: Pipeline, then: Vec<Node>, els: Vec<Node> },
    With { pipe: Pipeline, then: Vec<Node>, els: Vec<Node> },
    Range { pipe: Pipeline, body: Vec<Node>, els: Vec<Node> },
}

#[derive(Debug, Clone)]
struct Pipeline {
    decl: Vec<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Lit(Value),
    Func(String),
    /// A parenthesised pipeline, with fields read from its result: `(index .Mounts 0).Source`.
    Sub(Pipeline, Vec<String>),
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut actions = split_actions(src)?.into_iter();
        match parse_list(&mut actions)? {
            (nodes, Closer::Eof) => Ok(Template { nodes }),
            (_, Closer::End) => err("unexpected {{end}}"),
            (_, Closer::Else | Closer::ElseIf(_)) => err("unexpected {{else}}"),
        }
    }

    /// Renders the template with `dot` as `.` and `$`.
    pub fn render(&self, dot: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut scope = Scope { vars: vec![("$".to_string(), dot.clone())] };
        exec_list(&self.nodes, Some(dot), &mut scope, &mut out)?;
        Ok(out)
    }
}

/// What closed a list of nodes.
enum Closer {
    Eof,
    End,
    Else,
    /// `{{else if COND}}`: closes this branch and opens a nested if in the else branch.
    ElseIf(Vec<Tok>),
}

/// Parses nodes up to a closing keyword (`end`, `else`, `else if …`) or the end of input.
fn parse_list(pieces: &mut impl Iterator<Item = Piece>) -> Result<(Vec<Node>, Closer), TemplateError> {
    let mut nodes = Vec::new();
    while let Some(p) = pieces.next() {
        let toks = match p {
            Piece::Text(t) if t.is_empty() => continue,
            Piece::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Piece::Action(toks) => toks,
        };
        match toks.first() {
            Some(Tok::Ident(kw)) if kw == "end" => return Ok((nodes, Closer::End)),
            Some(Tok::Ident(kw)) if kw == "else" => {
                return match toks.get(1) {
                    None => Ok((nodes, Closer::Else)),
                    Some(Tok::Ident(k)) if k == "if" => Ok((nodes, Closer::ElseIf(toks[2..].to_vec()))),
                    Some(_) => err("expected \"if\" after \"else\""),
                };
            }
            Some(Tok::Ident(kw)) if matches!(kw.as_str(), "if" | "with" | "range") => {
                let kw = kw.clone();
                nodes.push(parse_block(&kw, &toks[1..], pieces)?);
            }
            Some(Tok::Ident(kw)) if matches!(kw.as_str(), "define" | "template" | "block" | "break" | "continue") => {
                return err(format!("{{{{{kw}}}}} is not supported"));
            }
            _ => nodes.push(Node::Action(parse_pipeline(&toks)?)),
        }
    }
    Ok((nodes, Closer::Eof))
}

fn parse_block(kw: &str, toks: &[Tok], pieces: &mut impl Iterator<Item = Piece>) -> Result<Node, TemplateError> {
    if toks.is_empty() {
        return err(format!("missing value for {kw}"));
    }
    let pipe = parse_pipeline(toks)?;
    let (then, end) = parse_list(pieces)?;
    let els = match end {
        Closer::End => Vec::new(),
        Closer::Else => match parse_list(pieces)? {
            (els, Closer::End) => els,
            _ => return err(format!("expected {{{{end}}}} after {{{{else}}}} of {kw}")),
        },
        Closer::ElseIf(cond) => vec![parse_block("if", &cond, pieces)?],
        Closer::Eof => return err(format!("unexpected EOF: {{{{{kw}}}}} has no {{{{end}}}}")),
    };
    Ok(match kw {
        "if" => Node::If { pipe, then, els },
        "with" => Node::With { pipe, then, els },
        _ => Node::Range { pipe, body: then, els },
    })
}

fn parse_pipeline(toks: &[Tok]) -> Result<Pipeline, TemplateError> {
    let mut toks = toks;
    let mut decl = Vec::new();
    if let Some(pos) = toks.iter().position(|t| *t == Tok::Declare) {
        for t in &toks[..pos] {
            match t {
                Tok::Var(name, f) if f.is_empty() => decl.push(name.clone()),
                Tok::Comma => {}
                _ => return err("bad variable declaration"),
            }
        }
        toks = &toks[pos + 1..];
    }
    let mut cmds = Vec::new();
    let mut i = 0;
    let mut cmd = Vec::new();
    while i < toks.len() {
        match &toks[i] {
            Tok::Pipe => {
                if cmd.is_empty() {
                    return err("missing command before |");
                }
                cmds.push(std::mem::take(&mut cmd));
            }
            Tok::Open => {
                let close = matching_close(toks, i)?;
                cmd.push(Arg::Sub(parse_pipeline(&toks[i + 1..close])?, Vec::new()));
                i = close;
            }
            Tok::Close => return err("unexpected )"),
            Tok::Declare | Tok::Comma => return err("unexpected := or ,"),
            Tok::Chain(f) => match cmd.last_mut() {
                Some(Arg::Sub(_, fields)) if fields.is_empty() => *fields = f.clone(),
                _ => return err("unexpected field chain"),
            },
            Tok::Field(f) => cmd.push(Arg::Field(f.clone())),
            Tok::Var(n, f) => cmd.push(Arg::Var(n.clone(), f.clone())),
            Tok::Lit(v) => cmd.push(Arg::Lit(v.clone())),
            Tok::Ident(name) if FUNCS.contains(&name.as_str()) => cmd.push(Arg::Func(name.clone())),
            Tok::Ident(name) => return err(format!("function {name:?} not defined")),
        }
        i += 1;
    }
    if cmd.is_empty() {
        return err("missing value in action");
    }
    cmds.push(cmd);
    Ok(Pipeline { decl, cmds })
}

fn matching_close(toks: &[Tok], open: usize) -> Result<usize, TemplateError> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close if depth == 1 => return Ok(i),
            Tok::Close => depth -= 1,
            _ => {}
        }
    }
    err("unclosed (")
}

const FUNCS: &[&str] = &[
    "json", "index", "len", "join", "split", "upper", "lower", "title", "truncate", "print", "println", "eq", "ne",
    "lt", "le", "gt", "ge", "not", "and", "or",
];

struct Scope {
    vars: Vec<(String, Value)>,
}

impl Scope {
    fn get(&self, name: &str) -> Result<Value, TemplateError> {
        match self.vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => err(format!("undefined variable: {name}")),
        }
    }
}

/// `None` is Go's "no value" (a missing map key), distinct from JSON null.
type Val = Option<Value>;

fn exec_list(nodes: &[Node], dot: Option<&Value>, scope: &mut Scope, out: &mut String) -> Result<(), TemplateError> {
    for n in nodes {
        let mark = scope.vars.len();
        exec_node(n, dot, scope, out)?;
        if !matches!(n, Node::Action(p) if !p.decl.is_empty()) {
            scope.vars.truncate(mark);
        }
    }
    Ok(())
}

fn exec_node(node: &Node, dot: Option<&Value>, scope: &mut Scope, out: &mut String) -> Result<(), TemplateError> {
    match node {
        Node::Text(t) => out.push_str(t),
        Node::Action(p) => {
            let v = eval_pipeline(p, dot, scope)?;
            if p.decl.is_empty() {
                out.push_str(&print(&v));
            } else {
                scope.vars.push((p.decl[0].clone(), v.unwrap_or(Value::Null)));
            }
        }
        Node::If { pipe, then, els } => {
            let v = eval_pipeline(pipe, dot, scope)?;
            exec_list(if truthy(&v) { then } else { els }, dot, scope, out)?;
        }
        Node::With { pipe, then, els } => {
            let v = eval_pipeline(pipe, dot, scope)?;
            if truthy(&v) {
                exec_list(then, v.as_ref(), scope, out)?;
            } else {
                exec_list(els, dot, scope, out)?;
            }
        }
        Node::Range { pipe, body, els } => exec_range(pipe, body, els, dot, scope, out)?,
    }
    Ok(())
}

fn exec_range(pipe: &Pipeline, body: &[Node], els: &[Node], dot: Option<&Value>, scope: &mut Scope, out: &mut String) -> Result<(), TemplateError> {
    let items: Vec<(Value, Value)> = match eval_pipeline(pipe, dot, scope)? {
        Some(Value::Array(a)) => a.into_iter().enumerate().map(|(i, v)| (Value::from(i), v)).collect(),
        Some(Value::Object(m)) => {
            let mut kv: Vec<_> = m.into_iter().map(|(k, v)| (Value::String(k), v)).collect();
            kv.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
            kv
        }
        Some(Value::Number(n)) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0)).map(|i| (Value::from(i), Value::from(i))).collect(),
        None | Some(Value::Null) => Vec::new(),
        Some(other) => return err(format!("range can't iterate over {}", print(&Some(other)))),
    };
    if items.is_empty() {
        return exec_list(els, dot, scope, out);
    }
    for (key, item) in items {
        let mark = scope.vars.len();
        match pipe.decl.as_slice() {
            [v] => scope.vars.push((v.clone(), item.clone())),
            [k, v] => {
                scope.vars.push((k.clone(), key));
                scope.vars.push((v.clone(), item.clone()));
            }
            _ => {}
        }
        exec_list(body, Some(&item), scope, out)?;
        scope.vars.truncate(mark);
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, dot: Option<&Value>, scope: &Scope) -> Result<Val, TemplateError> {
    let mut piped: Option<Val> = None;
    for cmd in &p.cmds {
        piped = Some(eval_command(cmd, dot, scope, piped)?);
    }
    Ok(piped.flatten())
}

fn eval_command(cmd: &[Arg], dot: Option<&Value>, scope: &Scope, piped: Option<Val>) -> Result<Val, TemplateError> {
    match cmd {
        [Arg::Func(name), rest @ ..] => {
            let mut args = rest.iter().map(|a| eval_arg(a, dot, scope)).collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            call(name, &args)
        }
        [single] if piped.is_none() => eval_arg(single, dot, scope),
        [_] => err("can't give argument to non-function"),
        _ => err("can't give argument to non-function"),
    }
}

fn eval_arg(a: &Arg, dot: Option<&Value>, scope: &Scope) -> Result<Val, TemplateError> {
    match a {
        Arg::Field(path) => Ok(walk(dot.cloned(), path)),
        Arg::Var(name, path) => Ok(walk(Some(scope.get(name)?), path)),
        Arg::Lit(v) => Ok(Some(v.clone())),
        Arg::Sub(p, fields) => Ok(walk(eval_pipeline(p, dot, scope)?, fields)),
        Arg::Func(name) => call(name, &[]),
    }
}

fn walk(mut v: Val, path: &[String]) -> Val {
    for f in path {
        v = match v {
            Some(Value::Object(mut m)) => m.remove(f),
            _ => None,
        };
    }
    v
}

fn call(name: &str, args: &[Val]) -> Result<Val, TemplateError> {
    let arity = |n: usize| if args.len() == n { Ok(()) } else { err(format!("wrong number of args for {name}: want {n} got {}", args.len())) };
    let s = |v: &Val| match v {
        Some(Value::String(s)) => s.clone(),
        other => print(other),
    };
    Ok(Some(match name {
        "json" => {
            arity(1)?;
            Value::String(serde_json::to_string(args[0].as_ref().unwrap_or(&Value::Null)).unwrap_or_default())
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else { return err("wrong number of args for index") };
            return index(first.clone(), keys);
        }
        "len" => {
            arity(1)?;
            Value::from(match &args[0] {
                Some(Value::Array(a)) => a.len(),
                Some(Value::Object(m)) => m.len(),
                Some(Value::String(s)) => s.len(),
                other => return err(format!("len of {}", print(other))),
            })
        }
        "join" => {
            arity(2)?;
            let Some(Value::Array(items)) = &args[0] else { return err("join expects a list") };
            Value::String(items.iter().map(|i| s(&Some(i.clone()))).collect::<Vec<_>>().join(&s(&args[1])))
        }
        "split" => {
            arity(2)?;
            Value::Array(s(&args[0]).split(s(&args[1]).as_str()).map(|p| Value::String(p.to_string())).collect())
        }
        "upper" | "lower" | "title" => {
            arity(1)?;
            let t = s(&args[0]);
            Value::String(match name {
                "upper" => t.to_uppercase(),
                "lower" => t.to_lowercase(),
                _ => t.split(' ').map(title_word).collect::<Vec<_>>().join(" "),
            })
        }
        "truncate" => {
            arity(2)?;
            let n = args[1].as_ref().and_then(Value::as_u64).unwrap_or(0) as usize;
            Value::String(s(&args[0]).chars().take(n).collect())
        }
        "print" => Value::String(args.iter().map(s).collect()),
        "println" => Value::String(args.iter().map(s).collect::<Vec<_>>().join(" ") + "\n"),
        "eq" | "ne" | "lt" | "le" | "gt" | "ge" => Value::Bool(compare(name, args)?),
        "not" => {
            arity(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" | "or" => {
            if args.is_empty() {
                return err(format!("wrong number of args for {name}"));
            }
            let pick = args.iter().find(|a| truthy(a) == (name == "or")).or(args.last());
            return Ok(pick.cloned().flatten());
        }
        _ => return err(format!("function {name:?} not defined")),
    }))
}

fn title_word(w: &str) -> String {
    let mut c = w.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn index(mut v: Val, keys: &[Val]) -> Result<Val, TemplateError> {
    for k in keys {
        v = match (v, k) {
            // A missing map key yields the zero value, which is "" for docker's string maps.
            (Some(Value::Object(mut m)), Some(Value::String(key))) => Some(m.remove(key).unwrap_or(Value::String(String::new()))),
            (Some(Value::Array(a)), Some(Value::Number(n))) => {
                let i = n.as_u64().ok_or_else(|| TemplateError(format!("index out of range: {n}")))? as usize;
                Some(a.get(i).cloned().ok_or_else(|| TemplateError(format!("index out of range: {i}")))?)
            }
            (None | Some(Value::Null), _) => return err("index of untyped nil"),
            (other, k) => return err(format!("can't index {} with {}", print(&other), print(k))),
        };
    }
    Ok(v)
}

fn compare(op: &str, args: &[Val]) -> Result<bool, TemplateError> {
    let (Some(a), rest) = (args.first(), args.get(1..).unwrap_or(&[])) else { return err(format!("missing argument for {op}")) };
    if rest.is_empty() {
        return err(format!("missing argument for {op}"));
    }
    if op == "eq" {
        return Ok(rest.iter().any(|b| values_equal(a, b)));
    }
    if rest.len() != 1 {
        return err(format!("wrong number of args for {op}"));
    }
    let b = &rest[0];
    if op == "ne" {
        return Ok(!values_equal(a, b));
    }
    let ord = match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64().partial_cmp(&y.as_f64()),
        (Some(Value::String(x)), Some(Value::String(y))) => Some(x.cmp(y)),
        _ => None,
    };
    let Some(ord) = ord else { return err(format!("incompatible types for comparison in {op}")) };
    Ok(match op {
        "lt" => ord.is_lt(),
        "le" => ord.is_le(),
        "gt" => ord.is_gt(),
        _ => ord.is_ge(),
    })
}

fn values_equal(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Go's truth: false, 0, nil, and empty strings, lists and maps are false.
fn truthy(v: &Val) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
    }
}

/// Prints a value as Go's fmt does for the equivalent Go value.
pub fn print(v: &Val) -> String {
    match v {
        None => "<no value>".to_string(),
        Some(v) => print_value(v),
    }
}

fn print_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(print_value).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            format!("map[{}]", keys.iter().map(|k| format!("{k}:{}", print_value(&m[*k]))).collect::<Vec<_>>().join(" "))
        }
    }
}

/// Integers print without a fraction; other floats in Go's shortest form (1.5, 1e+21).
fn go_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else if f.abs() >= 1e21 {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
            _ => s,
        }
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).and_then(|t| t.render(v)).unwrap_or_else(|e| panic!("{t:?}: {e}"))
    }

    fn sample() -> Value {
        json!({
            "Id": "abc123",
            "State": {"Status": "exited", "ExitCode": 137, "Running": false, "Pid": 0},
            "Config": {"Image": "bb:1", "Labels": {"a": "1", "b c": "2"}, "Env": ["A=1", "B=2"], "Tty": false},
            "Mounts": [{"Source": "/x", "Destination": "/y"}, {"Source": "/p", "Destination": "/q"}],
            "Ratio": 1.5,
            "Whole": 3.0,
            "Nothing": null
        })
    }

    #[test]
    fn fields_and_nested_fields_render_like_go() {
        let v = sample();
        assert_eq!(render("{{.Id}}", &v), "abc123");
        assert_eq!(render("{{.State.Status}} {{.State.ExitCode}}", &v), "exited 137");
        assert_eq!(render("{{.State.Running}}", &v), "false");
        assert_eq!(render("{{.Ratio}} {{.Whole}}", &v), "1.5 3");
        assert_eq!(render("id={{ .Id }}\n", &v), "id=abc123\n");
    }

    #[test]
    fn missing_and_null_values_print_as_go_does() {
        let v = sample();
        assert_eq!(render("{{.Nope}}", &v), "<no value>");
        assert_eq!(render("{{.Nope.Deeper}}", &v), "<no value>");
        assert_eq!(render("{{.Nothing}}", &v), "<nil>");
    }

    #[test]
    fn maps_and_lists_print_in_go_syntax() {
        let v = sample();
        assert_eq!(render("{{.Config.Labels}}", &v), "map[a:1 b c:2]");
        assert_eq!(render("{{.Config.Env}}", &v), "[A=1 B=2]");
    }

    #[test]
    fn json_function_and_pipelines_produce_compact_json() {
        let v = sample();
        assert_eq!(render("{{json .Config.Labels}}", &v), r#"{"a":"1","b c":"2"}"#);
        assert_eq!(render("{{.Config.Env | json}}", &v), r#"["A=1","B=2"]"#);
        assert_eq!(render("{{json .Nope}}", &v), "null");
    }

    #[test]
    fn index_reads_map_keys_and_list_positions() {
        let v = sample();
        assert_eq!(render(r#"{{index .Config.Labels "b c"}}"#, &v), "2");
        assert_eq!(render(r#"{{index .Config.Labels "missing"}}"#, &v), "");
        assert_eq!(render("{{index .Config.Env 1}}", &v), "B=2");
        assert_eq!(render("{{(index .Mounts 0).Source}}", &v), "/x");
        assert_eq!(render("{{(index .Mounts 1).Nope}}", &v), "<no value>");
    }

    #[test]
    fn range_iterates_lists_and_maps_with_variables() {
        let v = sample();
        assert_eq!(render("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", &v), "/x:/y /p:/q ");
        assert_eq!(render("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", &v), "a=1;b c=2;");
        assert_eq!(render("{{range .Nope}}x{{else}}empty{{end}}", &v), "empty");
        assert_eq!(render("{{range $i, $m := .Mounts}}{{$i}}{{$.Id}} {{end}}", &v), "0abc123 1abc123 ");
    }

    #[test]
    fn if_else_and_comparisons_follow_go_truth() {
        let v = sample();
        assert_eq!(render("{{if .State.Running}}up{{else}}down{{end}}", &v), "down");
        assert_eq!(render("{{if eq .State.ExitCode 137}}killed{{end}}", &v), "killed");
        assert_eq!(render(r#"{{if eq .State.Status "running"}}r{{else if eq .State.Status "exited"}}e{{else}}?{{end}}"#, &v), "e");
        assert_eq!(render("{{if and .Config.Env (not .Config.Tty)}}yes{{end}}", &v), "yes");
        assert_eq!(render("{{with .Config}}{{.Image}}{{end}}", &v), "bb:1");
        assert_eq!(render("{{len .Mounts}}", &v), "2");
    }

    #[test]
    fn trim_markers_remove_surrounding_space() {
        let v = sample();
        assert_eq!(render("a  {{- .Id -}}  b", &v), "aabc123b");
        assert_eq!(render("{{range .Mounts -}}\n  {{.Source}}\n{{- end}}", &v), "/x/p");
    }

    #[test]
    fn variables_can_be_declared_and_used() {
        assert_eq!(render("{{$s := .State}}{{$s.Status}}", &sample()), "exited");
    }

    #[test]
    fn string_functions_work() {
        let v = json!({"N": "/web", "L": ["a", "b"]});
        assert_eq!(render(r#"{{join .L ","}}"#, &v), "a,b");
        assert_eq!(render(r#"{{upper .N}} {{lower "AB"}} {{title "hello world"}}"#, &v), "/WEB ab Hello World");
        assert_eq!(render(r#"{{index (split "a:b" ":") 1}}"#, &v), "b");
        assert_eq!(render(r#"{{truncate .N 2}}"#, &v), "/w");
    }

    #[test]
    fn unknown_syntax_is_a_clear_error() {
        for bad in ["{{.Id", "{{nosuchfunc .Id}}", "{{if .Id}}x", "{{end}}", "{{template \"x\"}}", "{{.Id @}}", "{{}}"] {
            let r = Template::parse(bad).and_then(|t| t.render(&sample()));
            assert!(r.is_err(), "{bad:?} gave {r:?}");
        }
        let e = Template::parse("{{nosuchfunc .Id}}").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("nosuchfunc"), "{e}");
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(render("no actions here", &json!({})), "no actions here");
        assert_eq!(render("{{/* comment */}}x", &json!({})), "x");
    }
}
