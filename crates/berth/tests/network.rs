//! The default bridge: addresses, container-to-container traffic, published ports from the host's
//! own addresses and 127.0.0.1, conflicts, cleanup and reconciliation after a crash. User
//! networks: names and aliases through their DNS, isolation, connect and disconnect, errors.
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
    let leases: usize = std::fs::read_dir(e.root.join("network/leases"))
        .map(|d| d.flatten().map(|b| std::fs::read_dir(b.path()).map(|l| l.count()).unwrap_or(0)).sum())
        .unwrap_or(0);
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
    assert!(stderr(&out).contains("network appnet not found"), "{}", stderr(&out));
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
fn a_clean_shutdown_removes_the_table_and_a_restart_publishes_the_ports_again() {
    if !can_run() {
        return;
    }
    let mut e = TestEngine::start();
    e.import_busybox("bb:1");
    let port = free_port();
    e.ok(&["run", "-d", "--name", "web", "-p", &format!("{port}:80"), "bb:1", "sh", "-c", WEB]);
    eventually_serves(&format!("127.0.0.1:{port}"));
    let table = format!("berth_{}", e.bridge);
    let table_exists = || std::process::Command::new("nft").args(["list", "table", "ip", &table]).output().is_ok_and(|o| o.status.success());
    assert!(table_exists());
    e.stop_and_restart_with(|| {
        assert!(!table_exists(), "the engine's nftables table goes with it");
    });
    assert!(table_exists(), "a restarted engine rebuilds it");
    eventually_serves(&format!("127.0.0.1:{port}"));
    e.ok(&["rm", "-f", "web"]);
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

    // User networks through the docker CLI: create, run with an alias, resolve, inspect, remove.
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker").arg("-H").arg(e.host()).args(args).output().expect("docker");
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subnet = e.user_subnet(1);
    docker(&["network", "create", "--subnet", &subnet, "dnet"]);
    assert!(docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]).contains("dnet bridge"));
    docker(&["run", "-d", "--name", "dapi", "--network", "dnet", "--network-alias", "svc", "bb:1", "sh", "-c", WEB]);
    let body = docker(&["run", "--rm", "--network", "dnet", "bb:1", "sh", "-c", "for i in 1 2 3 4 5; do wget -qO- http://svc/ && exit 0; sleep 0.2; done; exit 1"]);
    assert_eq!(body, "hello-web\n");
    let aliases = docker(&["inspect", "-f", "{{.NetworkSettings.Networks.dnet.Aliases}} {{.NetworkSettings.Networks.dnet.DNSNames}}", "dapi"]);
    assert!(aliases.contains("svc") && aliases.contains("dapi"), "{aliases}");
    assert_eq!(docker(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "dnet"]).trim(), subnet);
    docker(&["rm", "-f", "dapi"]);
    docker(&["network", "rm", "dnet"]);
}

#[test]
fn user_networks_resolve_names_and_aliases_isolate_and_connect() {
    if !can_run() {
        return;
    }
    let mut e = TestEngine::start();
    e.import_busybox("bb:1");
    let subnet = e.user_subnet(0);
    let id = e.ok(&["network", "create", "--subnet", &subnet, "appnet"]).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ls = e.ok(&["network", "ls"]);
    for name in ["appnet", "bridge", "host", "none"] {
        assert!(ls.contains(name), "{ls}");
    }
    assert_eq!(e.ok(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}} {{.Driver}}", "appnet"]).trim(), format!("{subnet} bridge"));
    let bridge = format!("br-{}", &id[..12]);
    assert!(e.user_bridges().contains(&bridge));

    e.ok(&["run", "-d", "--network", "appnet", "--name", "api", "--network-alias", "backend", "bb:1", "sh", "-c", WEB]);
    let api_ip = e.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.appnet.IPAddress}}", "api"]).trim().to_string();
    let s: net_subnet::Subnet = subnet.parse().expect("subnet");
    assert!(s.contains(&api_ip), "{api_ip} in {subnet}");
    eventually_serves(&format!("{api_ip}:80"));
    // Members reach each other by name and by alias; nslookup sees the address.
    for name in ["api", "backend", "API"] {
        let body = e.ok(&["run", "--rm", "--network", "appnet", "bb:1", "wget", "-qO-", &format!("http://{name}/")]);
        assert_eq!(body, "hello-web\n", "{name}");
    }
    let lookup = e.ok(&["run", "--rm", "--network", "appnet", "bb:1", "nslookup", "api"]);
    assert!(lookup.contains(&api_ip), "{lookup}");
    let inspect = e.ok(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "appnet"]);
    assert!(inspect.contains("api"), "{inspect}");

    // The default bridge is another network: it reaches neither the name nor the address.
    let out = e.berth(&["run", "--rm", "bb:1", "wget", "-T", "2", "-qO-", &format!("http://{api_ip}/")]);
    assert!(!out.status.success(), "networks are isolated: {}", stdout(&out));

    // A container on the default bridge joins appnet while it runs, then leaves again.
    e.ok(&["run", "-d", "--name", "client", "bb:1", "sleep", "1000"]);
    e.ok(&["network", "connect", "appnet", "client"]);
    assert_eq!(e.ok(&["exec", "client", "wget", "-qO-", "http://api/"]), "hello-web\n");
    let nets = e.ok(&["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "client"]);
    assert_eq!(nets.trim(), "appnet bridge");
    e.ok(&["network", "disconnect", "appnet", "client"]);
    let out = e.berth(&["exec", "client", "wget", "-T", "2", "-qO-", &format!("http://{api_ip}/")]);
    assert!(!out.status.success(), "after disconnect appnet is out of reach");

    // Names survive an engine crash (the restarted engine serves them again).
    e.kill_and_restart();
    let body = e.ok(&["run", "--rm", "--network", "appnet", "bb:1", "wget", "-qO-", "http://backend/"]);
    assert_eq!(body, "hello-web\n");

    // Errors that name the conflict.
    let err = |args: &[&str]| {
        let out = e.berth(args);
        assert!(!out.status.success(), "{args:?} should fail");
        stderr(&out)
    };
    assert!(err(&["network", "create", "appnet"]).contains("network with name appnet already exists"));
    let overlap = err(&["network", "create", "--subnet", &subnet, "other"]);
    assert!(overlap.contains("overlaps with network appnet"), "{overlap}");
    let bad = err(&["network", "create", "--subnet", "10.1.2.0/33", "bad"]);
    assert!(bad.contains("invalid subnet \"10.1.2.0/33\""), "{bad}");
    assert!(err(&["network", "create", "--subnet", "nonsense", "bad"]).contains("invalid subnet"));
    assert!(err(&["network", "rm", "bridge"]).contains("bridge is a pre-defined network and cannot be removed"));
    let busy = err(&["network", "rm", "appnet"]);
    assert!(busy.contains("has active endpoints"), "{busy}");
    assert!(err(&["network", "inspect", "nosuch"]).contains("network nosuch not found"));
    assert!(err(&["run", "--rm", "--network-alias", "x", "bb:1", "true"]).contains("user-defined networks"));

    e.ok(&["rm", "-f", "api", "client"]);
    e.ok(&["network", "rm", "appnet"]);
    assert!(!e.ok(&["network", "ls"]).contains("appnet"));
    let links = String::from_utf8_lossy(&std::process::Command::new("ip").args(["-o", "link"]).output().expect("ip").stdout).into_owned();
    assert!(!links.contains(&bridge), "the network's bridge is removed");
    assert!(e.user_bridges().is_empty());
}

/// Subnet arithmetic for assertions, without depending on berth's crates.
mod net_subnet {
    pub struct Subnet {
        network: u32,
        prefix: u32,
    }
    impl std::str::FromStr for Subnet {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            let (a, p) = s.split_once('/').ok_or("no prefix")?;
            let a: std::net::Ipv4Addr = a.parse().map_err(|_| "bad address")?;
            Ok(Subnet { network: u32::from(a), prefix: p.parse().map_err(|_| "bad prefix")? })
        }
    }
    impl Subnet {
        pub fn contains(&self, ip: &str) -> bool {
            let mask = u32::MAX << (32 - self.prefix);
            ip.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| u32::from(ip) & mask == self.network & mask)
        }
    }
}
