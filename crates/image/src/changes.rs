//! `docker import --change`: the Dockerfile instructions that only touch the image config.
use serde_json::{json, Value};

use crate::Error;

/// A JSON array (`["a","b"]`) or the shell form (`sh -c "…"`).
fn command(arg: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(arg) {
        Ok(v) => json!(v),
        Err(_) => json!(["/bin/sh", "-c", arg]),
    }
}

fn key_values(arg: &str) -> Vec<(String, String)> {
    if !arg.contains('=') {
        return match arg.split_once(char::is_whitespace) {
            Some((k, v)) => vec![(k.to_string(), v.trim().to_string())],
            None => vec![(arg.to_string(), String::new())],
        };
    }
    arg.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

pub fn apply(config: &mut Value, change: &str) -> Result<(), Error> {
    let change = change.trim();
    let (instr, arg) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let arg = arg.trim();
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => config["Cmd"] = command(arg),
        "ENTRYPOINT" => config["Entrypoint"] = command(arg),
        "WORKDIR" => config["WorkingDir"] = json!(arg),
        "USER" => config["User"] = json!(arg),
        "STOPSIGNAL" => config["StopSignal"] = json!(arg),
        "ENV" => {
            let mut env: Vec<String> = serde_json::from_value(config["Env"].take()).unwrap_or_default();
            for (k, v) in key_values(arg) {
                env.retain(|e| !e.starts_with(&format!("{k}=")));
                env.push(format!("{k}={v}"));
            }
            config["Env"] = json!(env);
        }
        "LABEL" => {
            for (k, v) in key_values(arg) {
                config["Labels"][k] = json!(v);
            }
        }
        "EXPOSE" => {
            for p in arg.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                config["ExposedPorts"][p] = json!({});
            }
        }
        "VOLUME" => config["Volumes"][arg] = json!({}),
        other => {
            return Err(Error::InvalidChange(format!(
                "{other} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR"
            )))
        }
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
        apply(&mut c, "ENV A=1 B=2").expect("env");
        apply(&mut c, "WORKDIR /www").expect("workdir");
        apply(&mut c, "EXPOSE 80").expect("expose");
        assert_eq!(c["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(c["Env"], json!(["A=1", "B=2"]));
        assert_eq!(c["WorkingDir"], "/www");
        assert!(c["ExposedPorts"]["80/tcp"].is_object());
        assert!(apply(&mut c, "RUN rm -rf /").is_err());
    }
}
