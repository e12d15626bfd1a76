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
    let other = format!("{bridge}o");
    let base: net::Subnet = subnet.parse().expect("subnet");
    let o = base.network.octets();
    let other_subnet = format!("{}.{}.{}.0/24", o[0], o[1], o[2] + 1);
    let state = tempfile::tempdir().expect("tmp");
    let bridges = [
        net::Bridge { name: bridge.clone(), subnet: subnet.parse().expect("subnet"), internal: false },
        net::Bridge { name: other.clone(), subnet: other_subnet.parse().expect("subnet"), internal: false },
    ];
    let net = net::Host::open(net::Config { state_dir: state.path().to_path_buf(), nft_table: table.clone() }, &bridges).expect("open");
    let cleanup = scopeguard(|| net.destroy());
    let a_ns = net.create_netns("sandbox-a").expect("netns a");
    let b_ns = net.create_netns("sandbox-b").expect("netns b");
    let c_ns = net.create_netns("sandbox-c").expect("netns c");
    let a = net.attach("sandbox-a", &a_ns, &bridge, "eth0", true, &[]).expect("attach a");
    let b = net.attach("sandbox-b", &b_ns, &bridge, "eth0", true, &[]).expect("attach b");
    let c = net.attach("sandbox-c", &c_ns, &other, "eth0", true, &[]).expect("attach c");
    assert_ne!(a.ip, b.ip);
    let ping = |ns: &std::path::Path, ip: std::net::Ipv4Addr| {
        Command::new("nsenter").arg(format!("--net={}", ns.display())).args(["/bin/busybox", "ping", "-c", "1", "-W", "2"]).arg(ip.to_string()).status().expect("ping").success()
    };
    assert!(ping(&a_ns, b.ip), "a reaches b across the bridge");
    assert!(ping(&b_ns, a.gateway), "b reaches the gateway");
    assert!(Command::new("/bin/busybox").args(["ping", "-c", "1", "-W", "2"]).arg(a.ip.to_string()).status().expect("ping").success(), "the host reaches a");
    let table_text = String::from_utf8_lossy(&Command::new("nft").args(["list", "table", "ip", &table]).output().expect("nft").stdout).into_owned();
    assert!(table_text.contains("masquerade"), "{table_text}");
    assert!(!ping(&a_ns, c.ip), "networks are isolated from each other");
    // b joins the second network too (eth1, no second default route) and reaches c there.
    let b2 = net.attach("sandbox-b", &b_ns, &other, "eth1", false, &[]).expect("attach b to the second bridge");
    assert!(other_subnet.parse::<net::Subnet>().expect("s").contains(b2.ip));
    assert!(ping(&b_ns, c.ip), "b reaches c over its second interface");
    net.detach_from("sandbox-b", &other).expect("leave the second network");
    assert!(!links().contains(&net::host_veth_name("sandbox-b", &other)), "that veth is removed");
    assert!(!ping(&b_ns, c.ip), "and c is out of reach again");
    for id in ["sandbox-a", "sandbox-b", "sandbox-c"] {
        net.detach(id).expect("detach");
    }
    assert!(!links().contains(&net::host_veth_name("sandbox-a", &bridge)), "veth removed");
    assert!(!a_ns.exists() && !b_ns.exists() && !c_ns.exists(), "pinned namespaces removed");
    drop(cleanup);
    assert!(!links().contains(&bridge) && !links().contains(&other), "bridges removed");
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
