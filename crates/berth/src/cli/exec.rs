//! `berth exec`: create the exec, start it hijacked, stream, then read its exit code.
use bollard::exec::StartExecOptions;
use bollard::models::ExecConfig;

use super::attach::{self, RawTerminal};
use super::run::expand_env;
use super::{CliError, CliResult, Client};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep STDIN open even if not attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Detached mode: run the command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Username or UID (format: name|uid[:group|gid]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command.
    #[arg(long)]
    pub privileged: bool,
    /// CONTAINER COMMAND [ARG...]
    #[arg(value_name = "CONTAINER COMMAND [ARG...]", required = true, num_args = 2.., trailing_var_arg = true)]
    pub argv: Vec<String>,
}

impl ExecArgs {
    /// The exec body docker's CLI sends for these flags.
    pub fn config(&self, lookup: &dyn Fn(&str) -> Option<String>) -> ExecConfig {
        let env: Vec<String> = self.env.iter().filter_map(|e| expand_env(e, lookup)).collect();
        ExecConfig {
            attach_stdin: Some(self.interactive && !self.detach),
            attach_stdout: Some(!self.detach),
            attach_stderr: Some(!self.detach),
            tty: Some(self.tty),
            env: (!env.is_empty()).then_some(env),
            user: self.user.clone(),
            working_dir: self.workdir.clone(),
            privileged: Some(self.privileged),
            cmd: Some(self.argv[1..].to_vec()),
            ..Default::default()
        }
    }
}

pub async fn exec(c: &Client, a: ExecArgs) -> CliResult<u8> {
    if a.tty && a.interactive && !attach::stdin_is_terminal() {
        return Err(CliError::Other("the input device is not a TTY".into()));
    }
    let container = &a.argv[0];
    let config = a.config(&|k| std::env::var(k).ok());
    let created = c.docker.create_exec(container, config).await.map_err(|e| c.err(e))?;
    let id = created.id;
    if a.detach {
        let start = StartExecOptions { detach: true, tty: a.tty, output_capacity: None };
        c.docker.start_exec(&id, Some(start)).await.map_err(|e| c.err(e))?;
        return Ok(0);
    }
    let raw = if a.tty && a.interactive { RawTerminal::enable() } else { None };
    let body = serde_json::json!({"Detach": false, "Tty": a.tty}).to_string();
    let (output, input) = c.ep.upgrade("POST", &format!("/exec/{id}/start"), Some(body.as_bytes())).await?.hijack();
    let _helpers = attach::Helpers::start(c, container, a.tty, attach::Target::Exec(id.clone()));
    let (stdin, _idle_input) = if a.interactive { (Some(attach::spawn_stdin(input)), None) } else { (None, Some(input)) };
    let streamed = attach::pump(output, a.tty).await;
    drop(raw);
    if let Some(s) = stdin {
        s.abort();
    }
    if let Err(e) = streamed {
        tracing::debug!("output stream of exec {id} ended badly: {e}");
    }
    exit_code(c, &id).await
}

/// The exec's exit code. The stream can close a moment before the engine records the exit, so a
/// still-running answer is asked again for a short while.
async fn exit_code(c: &Client, id: &str) -> CliResult<u8> {
    for _ in 0..100 {
        let info = c.ep.json("GET", &format!("/exec/{id}/json")).await?;
        let running = info.get("Running").and_then(|v| v.as_bool()).unwrap_or(false);
        match info.get("ExitCode").and_then(|v| v.as_i64()) {
            Some(code) if !running => return Ok((code & 0xff) as u8),
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    Err(CliError::Other(format!("exec {id} did not report an exit code")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ExecArgs,
    }

    fn args(v: &[&str]) -> ExecArgs {
        T::try_parse_from(std::iter::once("exec").chain(v.iter().copied())).map(|t| t.a).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn exec_flags_map_to_the_exec_body() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        let c = args(&["-it", "-e", "A=1", "-e", "HOME", "-u", "33", "-w", "/tmp", "--privileged", "web", "sh", "-c", "ls -l"]).config(&lookup);
        assert_eq!(c.cmd, Some(vec!["sh".into(), "-c".into(), "ls -l".into()]));
        assert_eq!((c.tty, c.attach_stdin, c.attach_stdout), (Some(true), Some(true), Some(true)));
        assert_eq!(c.env, Some(vec!["A=1".into(), "HOME=/root".into()]));
        assert_eq!((c.user.as_deref(), c.working_dir.as_deref(), c.privileged), (Some("33"), Some("/tmp"), Some(true)));
    }

    #[test]
    fn detached_exec_attaches_nothing() {
        let c = args(&["-d", "web", "touch", "/x"]).config(&|_| None);
        assert_eq!((c.attach_stdin, c.attach_stdout, c.attach_stderr), (Some(false), Some(false), Some(false)));
    }

    #[test]
    fn exec_streams_output_and_exits_with_the_exec_code() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        let (code, reqs) = rt.block_on(async {
            let fake = super::super::fake_engine::FakeEngine::start(super::super::fake_engine::Script { exit_code: 7, ..Default::default() });
            let client = super::super::host::connect(fake.socket.clone()).unwrap_or_else(|e| panic!("{e}"));
            (exec(&client, args(&["c1", "sh", "-c", "exit 7"])).await.ok(), fake.requests())
        });
        assert_eq!(code, Some(7), "{reqs:?}");
        let paths: Vec<&str> = reqs.iter().filter_map(|l| l.split_whitespace().nth(1)).collect();
        assert_eq!(paths, ["/v1.44/containers/c1/exec", "/v1.44/exec/e1/start", "/v1.44/exec/e1/json"]);
    }

    #[test]
    fn exec_needs_a_container_and_a_command() {
        assert!(T::try_parse_from(["exec", "web"]).is_err());
    }
}
