//! The default bridge: addresses, container-to-container traffic, published ports from the host's
//! own addresses and 127.0.0.1, conflicts, cleanup and reconciliation after a crash.
mod common;

use std::time::Duration;

use common::*;

const WEB: &str = "mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 80 -h /www";

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// GET / over plain TCP (no HTTP client needed for busybox httpd).
fn http_get(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn eventually_serves(addr: &str) -> String {
    let mut last = None;
    for _ in 0..50 {
        last = http_get(addr);
        if last.as_deref().is_some_and(|b| b.contains("hello-web")) {
            return last.unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{addr} did not serve: {last:?}");
}

fn host_address() -> Option<String> {
    let out = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback())).map(String::from)
}

#[test]
fn a_published_port_answers_on_loopback_and_the_hosts_address_and_containers_reach_each_other() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let port = free_port();
    e.ok(&["run", "-d", "--name", "web", "-p", &format!("{port}:80"), "bb:1", "sh", "-c", WEB]);
    let ip = e.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]).trim().to_string();
    let subnet: Vec<&str> = e.subnet.split('.').take(3).collect();
    assert!(ip.starts_with(&subnet.join(".")), "{ip} is on the engine's subnet {}", e.subnet);
    assert_eq!(e.ok(&["port", "web"]).trim(), format!("80/tcp -> 0.0.0.0:{port}"));
    assert!(e.ok(&["ps"]).contains(&format!("0.0.0.0:{port}->80/tcp")));
    eventually_serves(&format!("127.0.0.1:{port}"));
    eventually_serves(&format!("{ip}:80"));
    if let Some(host) = host_address() {
        eventually_serves(&format!("{host}:{port}"));
    }
    // Another container reaches it by address, and through the published port (hairpin).
    let body = e.ok(&["run", "--rm", "bb:1", "wget", "-qO-", &format!("http://{ip}/")]);
    assert_eq!(body, "hello-web\n");
    if let Some(host) = host_address() {
        let body = e.ok(&["run", "--rm", "bb:1", "wget", "-qO-", &format!("http://{host}:{port}/")]);
        assert_eq!(body, "hello-web\n");
    }
    // -P picks a free host port for an exposed one.
    e.ok(&["run", "-d", "--name", "auto", "--expose", "80", "-P", "bb:1", "sh", "-c", WEB]);
    let mapped = e.ok(&["port", "auto", "80"]);
    let auto_port = mapped.trim().rsplit(':').next().unwrap_or_default().to_string();
    eventually_serves(&format!("127.0.0.1:{auto_port}"));
    e.ok(&["rm", "-f", "web", "auto"]);
    eventually("the veths go", Duration::from_secs(10), || e.veths().is_empty());
    let leases = std::fs::read_dir(e.root.join("network/leases")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leases, 0, "addresses released");
    assert!(http_get(&format!("127.0.0.1:{port}")).is_none(), "the port is unpublished");
}

#[test]
fn ports_in_use_and_unknown_networks_are_clear_errors() {
    if !can_run() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let busy = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let out = e.berth(&["run", "--rm", "-p", &format!("{port}:80"), "bb:1", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("Bind for 0.0.0.0:{port} failed: port is already allocated")), "{}", stderr(&out));
    drop(busy);
    let port = free_port();
    e.ok(&["run", "-d", "--name", "first", "-p", &format!("{port}:80"), "bb:1", "sleep", "1000"]);
    let out = e.berth(&["run", "--rm", "-p", &format!("{port}:80"), "bb:1", "true"]);
    assert!(stderr(&out).contains("port is already allocated"), "{}", stderr(&out));
    let out = e.berth(&["run", "--rm", "--network", "appnet", "bb:1", "true"]);
    assert!(stderr(&out).contains("No such network: appnet"), "{}", stderr(&out));
    let out = e.berth(&["run", "--rm", "-p", "99999:80", "bb:1", "true"]);
    assert!(!out.status.success());
    e.ok(&["rm", "-f", "first"]);
    eventually("the veths go", Duration::from_secs(10), || e.veths().is_empty());
}

#[test]
fn network_leftovers_of_containers_that_died_during_an_engine_crash_are_removed() {
    if !can_run() {
        return;
    }
    let mut e = TestEngine::start();
    e.import_busybox("bb:1");
    e.ok(&["run", "-d", "--name", "doomed", "bb:1", "sleep", "1000"]);
    e.ok(&["run", "-d", "--name", "survivor", "bb:1", "sleep", "1000"]);
    let pid: i32 = e.ok(&["inspect", "-f", "{{.State.Pid}}", "doomed"]).trim().parse().expect("pid");
    assert_eq!(e.veths().len(), 2);
    // The engine dies; one container dies while it is down.
    e.kill_and_restart_with(|| {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(300));
    });
    eventually("the dead container's veth goes", Duration::from_secs(10), || e.veths().len() == 1);
    let ip = e.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "survivor"]);
    assert!(!ip.trim().is_empty(), "the survivor keeps its address");
    assert_eq!(e.ok(&["inspect", "-f", "{{.State.Status}}", "doomed"]).trim(), "exited");
    e.ok(&["rm", "-f", "doomed", "survivor"]);
    eventually("the veths go", Duration::from_secs(10), || e.veths().is_empty());
}

#[test]
fn the_docker_cli_publishes_ports_through_berth() {
    if !can_run() || !std::path::Path::new("/usr/bin/docker").exists() {
        return;
    }
    let e = TestEngine::start();
    e.import_busybox("bb:1");
    let port = free_port();
    let out = std::process::Command::new("docker").arg("-H").arg(e.host()).args(["run", "-d", "--name", "dweb", "-p", &format!("127.0.0.1:{port}:80"), "bb:1", "sh", "-c", WEB]).output().expect("docker");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually_serves(&format!("127.0.0.1:{port}"));
    let mapped = std::process::Command::new("docker").arg("-H").arg(e.host()).args(["port", "dweb", "80"]).output().expect("docker");
    assert_eq!(String::from_utf8_lossy(&mapped.stdout).trim(), format!("127.0.0.1:{port}"));
    e.ok(&["rm", "-f", "dweb"]);
}
