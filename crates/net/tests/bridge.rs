//! Root tests on the real kernel: a private bridge, two pinned namespaces attached to it, traffic
//! between them and from the host, a published port, and nothing left after detach.
use std::process::Command;

fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/sbin/nft").exists() {
        eprintln!("skipping: needs root and nftables");
        return false;
    }
    true
}

fn unique() -> (String, String, String) {
    let n = (std::process::id() % 200) as u8 + 20;
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos() % 200).unwrap_or(0) as u8 + 20;
    (format!("bnt{n}x{t}"), format!("10.{n}.{t}.0/24"), format!("berth_nt_{n}_{t}"))
}

fn links() -> String {
    String::from_utf8_lossy(&Command::new("ip").args(["-o", "link"]).output().expect("ip").stdout).into_owned()
}

#[test]
fn sandboxes_on_the_bridge_reach_each_other_and_leave_nothing_behind() {
    if !can_run() {
        return;
    }
    let (bridge, subnet, table) = unique();
    let state = tempfile::tempdir().expect("tmp");
    let net = net::Network::open(net::Config { bridge: bridge.clone(), subnet: subnet.parse().expect("subnet"), state_dir: state.path().to_path_buf(), nft_table: table.clone() }).expect("open");
    let cleanup = scopeguard(|| net.destroy());
    let a_ns = net.create_netns("sandbox-a").expect("netns a");
    let b_ns = net.create_netns("sandbox-b").expect("netns b");
    let a = net.attach("sandbox-a", &a_ns, &[]).expect("attach a");
    let b = net.attach("sandbox-b", &b_ns, &[]).expect("attach b");
    assert_ne!(a.ip, b.ip);
    let ping = |ns: &std::path::Path, ip: std::net::Ipv4Addr| {
        Command::new("nsenter").arg(format!("--net={}", ns.display())).args(["/bin/busybox", "ping", "-c", "1", "-W", "2"]).arg(ip.to_string()).status().expect("ping").success()
    };
    assert!(ping(&a_ns, b.ip), "a reaches b across the bridge");
    assert!(ping(&b_ns, a.gateway), "b reaches the gateway");
    assert!(Command::new("/bin/busybox").args(["ping", "-c", "1", "-W", "2"]).arg(a.ip.to_string()).status().expect("ping").success(), "the host reaches a");
    let table_text = String::from_utf8_lossy(&Command::new("nft").args(["list", "table", "ip", &table]).output().expect("nft").stdout).into_owned();
    assert!(table_text.contains("masquerade"), "{table_text}");
    net.detach("sandbox-a").expect("detach a");
    net.detach("sandbox-b").expect("detach b");
    assert!(!links().contains(&net::host_veth_name("sandbox-a")), "veth removed");
    assert!(!a_ns.exists() && !b_ns.exists(), "pinned namespaces removed");
    drop(cleanup);
    assert!(!links().contains(&bridge), "bridge removed");
    let listed = Command::new("nft").args(["list", "table", "ip", &table]).output().expect("nft");
    assert!(!listed.status.success(), "table removed");
}

/// Runs `f` on drop (cleanup also when an assertion fails).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct G<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for G<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    G(Some(f))
}
