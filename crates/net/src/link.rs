//! Links, addresses and routes through rtnetlink, and pinned network namespaces. Netlink sockets
//! act in the namespace they were opened in, so work inside a sandbox runs on a short-lived
//! thread that has entered it (a thread's network namespace is its own).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::{Error, Result};

fn nl(context: &str) -> impl Fn(rtnetlink::Error) -> Error + '_ {
    move |e| Error::Netlink(format!("{context}: {e}"))
}

/// Runs `f` with a netlink handle on a fresh thread (optionally inside `netns`), with its own
/// single-threaded runtime: callable from sync code and from inside the engine's runtime.
fn with_netlink<T: Send + 'static>(
    netns: Option<&Path>,
    f: impl FnOnce(Handle) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>> + Send + 'static,
) -> Result<T> {
    let netns = netns.map(Path::to_path_buf);
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<T> {
                if let Some(ns) = &netns {
                    let fd: OwnedFd = std::fs::File::open(ns).map_err(crate::io(format!("opening {}", ns.display())))?.into();
                    nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netlink(format!("entering {}: {e}", ns.display())))?;
                }
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(crate::io("starting a netlink runtime"))?;
                rt.block_on(async move {
                    let (conn, handle, _) = rtnetlink::new_connection().map_err(crate::io("opening a netlink socket"))?;
                    let task = tokio::spawn(conn);
                    let out = f(handle).await;
                    task.abort();
                    out
                })
            })
            .join()
            .map_err(|_| Error::Netlink("a netlink thread panicked".into()))?
    })
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        // ENODEV: no such link.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(Error::Netlink(format!("looking up {name}: {e}"))),
    }
}

async fn add_address(handle: &Handle, index: u32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
    match handle.address().add(index, IpAddr::V4(ip), prefix).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
        Err(e) => Err(Error::Netlink(format!("adding {ip}/{prefix}: {e}"))),
    }
}

/// The bridge, its gateway address, up.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    let name = name.to_string();
    with_netlink(None, move |h| {
        Box::pin(async move {
            let index = match index_of(&h, &name).await? {
                Some(i) => i,
                None => {
                    match h.link().add(LinkBridge::new(&name).build()).execute().await {
                        Ok(()) => {}
                        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                        Err(e) => return Err(Error::Netlink(format!("creating bridge {name}: {e}"))),
                    }
                    index_of(&h, &name).await?.ok_or_else(|| Error::Netlink(format!("bridge {name} vanished")))?
                }
            };
            add_address(&h, index, gateway, prefix).await?;
            h.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await.map_err(nl("bringing the bridge up"))?;
            Ok(())
        })
    })
}

/// A new network namespace bind-mounted at `path` (so it lives without a process), `lo` up.
pub fn pin_new_netns(path: &Path) -> Result<()> {
    let pinned = path.to_path_buf();
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<()> {
                let path = pinned;
                std::fs::File::create(&path).map_err(crate::io(format!("creating {}", path.display())))?;
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netlink(format!("creating a network namespace: {e}")))?;
                // This thread's namespace, pinned by a bind mount of its nsfs file.
                nix::mount::mount(Some("/proc/thread-self/ns/net"), &path, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
                    .map_err(|e| Error::Netlink(format!("pinning the namespace at {}: {e}", path.display())))?;
                Ok(())
            })
            .join()
            .map_err(|_| Error::Netlink("a namespace thread panicked".into()))?
    })?;
    with_netlink(Some(path), |h| {
        Box::pin(async move {
            let lo = index_of(&h, "lo").await?.ok_or_else(|| Error::Netlink("no lo in a new namespace".into()))?;
            h.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await.map_err(nl("bringing lo up"))
        })
    })
}

pub fn unpin_netns(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// A veth pair: `host_veth` on the bridge, its peer created directly inside `netns` as `ifname`
/// (moving a device between namespaces waits ~20 ms in the kernel; creating it there does not)
/// with `ip`, the MAC and, given a gateway, the default route through it.
#[allow(clippy::too_many_arguments)]
pub fn connect(bridge: &str, host_veth: &str, netns: &Path, ifname: &str, ip: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>, mac: &str) -> Result<()> {
    use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
    let (bridge, host_veth, ifname) = (bridge.to_string(), host_veth.to_string(), ifname.to_string());
    let inner = ifname.clone();
    let ns_fd: OwnedFd = std::fs::File::open(netns).map_err(crate::io(format!("opening {}", netns.display())))?.into();
    let raw = ns_fd.as_raw_fd();
    let mac_bytes: Vec<u8> = mac.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    with_netlink(None, move |h| {
        Box::pin(async move {
            let _keep = ns_fd;
            let peer = LinkUnspec::new_with_name(&ifname).setns_by_fd(raw).address(mac_bytes).build();
            let veth = rtnetlink::LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                .name(host_veth.clone())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .build();
            h.link().add(veth).execute().await.map_err(nl("creating the veth pair"))?;
            let host = index_of(&h, &host_veth).await?.ok_or_else(|| Error::Netlink(format!("{host_veth} vanished")))?;
            let br = index_of(&h, &bridge).await?.ok_or_else(|| Error::Netlink(format!("bridge {bridge} is gone")))?;
            h.link().set(LinkUnspec::new_with_index(host).controller(br).up().build()).execute().await.map_err(nl("attaching the veth to the bridge"))?;
            Ok(())
        })
    })?;
    with_netlink(Some(netns), move |h| {
        Box::pin(async move {
            let p = index_of(&h, &inner).await?.ok_or_else(|| Error::Netlink(format!("{inner} is not in the namespace")))?;
            add_address(&h, p, ip, prefix).await?;
            h.link().set(LinkUnspec::new_with_index(p).up().build()).execute().await.map_err(nl("bringing the interface up"))?;
            if let Some(gateway) = gateway {
                let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(p).build();
                h.route().add(route).execute().await.map_err(nl("adding the default route"))?;
            }
            Ok(())
        })
    })
}

/// Deletes a link by name (its veth peer goes with it); absent is fine.
pub fn delete_link(name: &str) -> Result<()> {
    let name = name.to_string();
    with_netlink(None, move |h| {
        Box::pin(async move {
            if let Some(i) = index_of(&h, &name).await? {
                h.link().del(i).execute().await.map_err(nl("deleting a link"))?;
            }
            Ok(())
        })
    })
}
