//! The real docker CLI (v28) against berth's engine: it must work unchanged.
mod common;

use std::process::{Command, Output, Stdio};

use common::*;

fn docker_available() -> bool {
    Command::new("docker").arg("--version").output().is_ok_and(|o| o.status.success())
}

fn docker(e: &TestEngine, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(e.host())
        .args(args)
        .env("DOCKER_CONFIG", e.root.parent().expect("tmp").join("docker-config"))
        .stdin(Stdio::null())
        .output()
        .expect("running docker")
}

fn docker_ok(e: &TestEngine, args: &[&str]) -> String {
    let out = docker(e, args);
    assert!(
        out.status.success(),
        "docker {args:?} failed ({:?}): {}\nengine log:\n{}",
        out.status.code(),
        stderr(&out),
        e.engine_log()
    );
    stdout(&out)
}

#[test]
fn docker_cli_runs_containers_against_berth() {
    if !can_run() || !docker_available() {
        eprintln!("skipping: needs root, busybox and the docker CLI");
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let version = docker_ok(&e, &["version", "--format", "{{.Server.APIVersion}}"]);
    assert_eq!(version.trim(), "1.44");
    assert_eq!(docker_ok(&e, &["run", "--rm", "bb:1", "echo", "hello"]), "hello\n");
    let out = docker(&e, &["run", "--rm", "bb:1", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));

    let id = docker_ok(&e, &["run", "-d", "--name", "d1", "bb:1", "sleep", "1000"]);
    let ps = docker_ok(&e, &["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("d1 Up"), "{ps}");
    assert_eq!(docker_ok(&e, &["exec", "d1", "echo", "in"]).trim(), "in");
    assert_eq!(docker(&e, &["exec", "d1", "sh", "-c", "exit 5"]).status.code(), Some(5));
    let inspect = docker_ok(&e, &["inspect", "-f", "{{.State.Running}} {{.Config.Image}}", "d1"]);
    assert_eq!(inspect.trim(), "true bb:1");
    docker_ok(&e, &["rm", "-f", id.trim()]);

    let images = docker_ok(&e, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images.trim(), "bb:1");
    let out = docker(&e, &["inspect", "nothing-here"]);
    assert!(stderr(&out).contains("No such object") || stderr(&out).contains("No such"), "{}", stderr(&out));
}
