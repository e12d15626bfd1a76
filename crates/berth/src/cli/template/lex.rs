//! The template lexer: splits text from `{{ }}` actions (applying trim markers) and turns an
//! action into tokens.
use serde_json::Value;

use super::{err, TemplateError};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Field(Vec<String>),
    Var(String, Vec<String>),
    /// Fields right after a `)`.
    Chain(Vec<String>),
    Lit(Value),
    Ident(String),
    Pipe,
    Open,
    Close,
    Declare,
    Comma,
}

/// Raw pieces: literal text or the inside of one `{{ }}`, with trim markers applied.
pub(super) enum Piece {
    Text(String),
    Action(Vec<Tok>),
}

pub(super) fn split_actions(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let mut inner = &rest[start + 2..];
        if inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n") {
            text = text.trim_end();
            inner = &inner[1..];
        }
        pieces.push(Piece::Text(text.to_string()));
        let end = find_close(inner).ok_or_else(|| TemplateError("unclosed action".into()))?;
        let mut body = &inner[..end];
        trim_next = body.ends_with(" -") || body.ends_with("\t-") || body.ends_with("\n-");
        if trim_next {
            body = &body[..body.len() - 1];
        }
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            pieces.push(Piece::Action(lex(body)?));
        }
        rest = &inner[end + 2..];
    }
    pieces.push(Piece::Text(if trim_next { rest.trim_start() } else { rest }.to_string()));
    Ok(pieces)
}

/// The `}}` closing an action, skipping any inside string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let (mut i, mut quote) = (0, None::<u8>);
    while i < b.len() {
        match (quote, b[i]) {
            (Some(b'"'), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (None, c @ (b'"' | b'`')) => quote = Some(c),
            (None, b'}') if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn lex(s: &str) -> Result<Vec<Tok>, TemplateError> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let word_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '|' => (toks.push(Tok::Pipe), i += 1).1,
            '(' => (toks.push(Tok::Open), i += 1).1,
            ')' => (toks.push(Tok::Close), i += 1).1,
            ',' => (toks.push(Tok::Comma), i += 1).1,
            ':' if chars.get(i + 1) == Some(&'=') => (toks.push(Tok::Declare), i += 2).1,
            '.' | '$' => {
                let start = i;
                i += 1;
                let mut head = String::from(c);
                if c == '$' {
                    while i < chars.len() && word_char(chars[i]) {
                        head.push(chars[i]);
                        i += 1;
                    }
                } else {
                    i = start;
                }
                let mut fields = Vec::new();
                while i < chars.len() && chars[i] == '.' {
                    let f_start = i + 1;
                    i += 1;
                    while i < chars.len() && word_char(chars[i]) {
                        i += 1;
                    }
                    if i > f_start {
                        fields.push(chars[f_start..i].iter().collect());
                    } else if !(c == '.' && fields.is_empty() && i == start + 1) {
                        return err(format!("bad field syntax in {s:?}"));
                    }
                }
                toks.push(match c {
                    '$' => Tok::Var(head, fields),
                    _ if start > 0 && chars[start - 1] == ')' => Tok::Chain(fields),
                    _ => Tok::Field(fields),
                });
            }
            '"' => {
                let (lit, next) = lex_string(&chars, i)?;
                toks.push(Tok::Lit(Value::String(lit)));
                i = next;
            }
            '`' => {
                let end = chars[i + 1..].iter().position(|&c| c == '`').ok_or_else(|| TemplateError("unterminated raw string".into()))?;
                toks.push(Tok::Lit(Value::String(chars[i + 1..i + 1 + end].iter().collect())));
                i += end + 2;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let v = if let Ok(n) = text.parse::<i64>() {
                    Value::from(n)
                } else {
                    text.parse::<f64>().map(Value::from).map_err(|_| TemplateError(format!("bad number syntax: {text:?}")))?
                };
                toks.push(Tok::Lit(v));
            }
            c if word_char(c) => {
                let start = i;
                while i < chars.len() && word_char(chars[i]) {
                    i += 1;
                }
                let w: String = chars[start..i].iter().collect();
                toks.push(match w.as_str() {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "nil" => Tok::Lit(Value::Null),
                    _ => Tok::Ident(w),
                });
            }
            other => return err(format!("unexpected {other:?} in action {{{{{s}}}}}")),
        }
    }
    Ok(toks)
}

fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                i += 1;
                match chars.get(i) {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(&c @ ('"' | '\\')) => out.push(c),
                    other => return err(format!("unsupported escape \\{}", other.map(|c| c.to_string()).unwrap_or_default())),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    err("unterminated quoted string")
}
