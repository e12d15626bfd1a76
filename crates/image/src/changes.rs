//! `docker import --change`: the Dockerfile instructions that only touch the image config.
use serde_json::{json, Value};

use crate::Error;

const SUPPORTED: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR";

/// A JSON array (`["a","b"]`) or the shell form (`sh -c "…"`), as Dockerfiles write them.
fn command(arg: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(arg) {
        Ok(v) => json!(v),
        Err(_) => json!(["/bin/sh", "-c", arg]),
    }
}

/// Splits on unquoted whitespace; quotes group and are removed, a backslash escapes one character.
fn words(arg: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = arg.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', q) if q != Some('\'') => {
                cur.extend(chars.next());
                in_word = true;
            }
            (q, None) if q == '"' || q == '\'' => {
                quote = Some(q);
                in_word = true;
            }
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (c, _) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::InvalidChange(format!("unterminated quote in {arg:?}")));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `ENV`/`LABEL` arguments: `k=v k2="v 2"`, or the legacy single pair `k v w`.
fn key_values(instr: &str, arg: &str) -> Result<Vec<(String, String)>, Error> {
    let first = arg.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        return match arg.split_once(char::is_whitespace) {
            Some((k, v)) if !v.trim().is_empty() => Ok(vec![(k.to_string(), words(v)?.join(" "))]),
            _ => Err(Error::InvalidChange(format!("{instr} needs key=value or `key value`, got {arg:?}"))),
        };
    }
    words(arg)?
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::InvalidChange(format!("{instr}: {kv:?} is not key=value"))),
        })
        .collect()
}

/// A JSON array or whitespace-separated list (`VOLUME`).
fn list(arg: &str) -> Result<Vec<String>, Error> {
    match serde_json::from_str::<Vec<String>>(arg) {
        Ok(v) => Ok(v),
        Err(_) => words(arg),
    }
}

/// Applies one instruction to a config's `config` object.
pub fn apply(config: &mut Value, change: &str) -> Result<(), Error> {
    let change = change.trim();
    let (instr, arg) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let arg = arg.trim();
    let instr = instr.to_ascii_uppercase();
    if arg.is_empty() {
        return Err(Error::InvalidChange(format!("{instr} needs an argument")));
    }
    match instr.as_str() {
        "CMD" => config["Cmd"] = command(arg),
        "ENTRYPOINT" => config["Entrypoint"] = command(arg),
        "WORKDIR" => config["WorkingDir"] = json!(arg),
        "USER" => config["User"] = json!(arg),
        "STOPSIGNAL" => config["StopSignal"] = json!(arg),
        "ENV" => {
            let mut env: Vec<String> = serde_json::from_value(config["Env"].take()).unwrap_or_default();
            for (k, v) in key_values("ENV", arg)? {
                env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            config["Env"] = json!(env);
        }
        "LABEL" => {
            for (k, v) in key_values("LABEL", arg)? {
                config["Labels"][k] = json!(v);
            }
        }
        "EXPOSE" => {
            for p in words(arg)? {
                let p = if p.contains('/') { p } else { format!("{p}/tcp") };
                config["ExposedPorts"][p] = json!({});
            }
        }
        "VOLUME" => {
            for v in list(arg)? {
                config["Volumes"][v] = json!({});
            }
        }
        other => return Err(Error::InvalidChange(format!("{other} is not one of {SUPPORTED}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_set_the_config() {
        let mut c = json!({});
        apply(&mut c, r#"CMD ["httpd","-f"]"#).expect("cmd");
        apply(&mut c, "entrypoint /bin/init").expect("entrypoint");
        apply(&mut c, r#"ENV A=1 B="two words""#).expect("env");
        apply(&mut c, "ENV A 3").expect("legacy env");
        apply(&mut c, "WORKDIR /www").expect("workdir");
        apply(&mut c, "EXPOSE 80 53/udp").expect("expose");
        apply(&mut c, r#"VOLUME ["/data", "/logs"]"#).expect("volume");
        apply(&mut c, r#"LABEL org.x="a b""#).expect("label");
        assert_eq!(c["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/init"]));
        assert_eq!(c["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(c["WorkingDir"], "/www");
        assert!(c["ExposedPorts"]["80/tcp"].is_object() && c["ExposedPorts"]["53/udp"].is_object());
        assert!(c["Volumes"]["/data"].is_object() && c["Volumes"]["/logs"].is_object());
        assert_eq!(c["Labels"]["org.x"], "a b");
    }

    #[test]
    fn unsupported_or_malformed_changes_are_refused() {
        let mut c = json!({});
        for bad in ["RUN rm -rf /", "CMD", "ENV A", r#"ENV A="open"#, "LABEL =x"] {
            let err = apply(&mut c, bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidChange(_)), "{bad}");
        }
    }
}
