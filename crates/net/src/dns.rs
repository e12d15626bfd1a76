//! The embedded DNS server of user-defined networks: it listens on each network's gateway
//! address (port 53, UDP and TCP), answers the names and aliases of the sandboxes on the networks
//! the asking sandbox belongs to, and forwards every other question to the host's resolvers.
//!
//! Listening on the gateway rather than Docker's 127.0.0.11 inside each namespace needs no
//! per-container NAT rule and no listener per container; the server lives in the host's
//! namespace, so even a loopback host resolver (systemd-resolved's 127.0.0.53) is reachable.
//! Messages are parsed and built with hickory-proto; the serving loop is ours (a few lines, no
//! zone machinery on the path of every lookup).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Error, Result};

/// Answers for container names change as containers come and go; resolvers must not keep them long.
const TTL: u32 = 600;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// One sandbox on one network: the names it answers to there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub sandbox: String,
    /// Container name, network aliases, short id: matched case-insensitively.
    pub names: Vec<String>,
    pub ip: Ipv4Addr,
}

/// Entries per network.
#[derive(Debug, Default)]
struct Records {
    networks: HashMap<String, Vec<Entry>>,
}

impl Records {
    /// The networks whose names `src` may resolve: those its sandbox is on (it is a member of
    /// `network`, where it asked); just `network` for an address that is no sandbox's.
    fn scope<'a>(&'a self, network: &'a str, src: Ipv4Addr) -> Vec<&'a str> {
        let sandbox = self.networks.get(network).and_then(|es| es.iter().find(|e| e.ip == src)).map(|e| e.sandbox.as_str());
        let mut out = vec![network];
        if let Some(sb) = sandbox {
            for (name, es) in &self.networks {
                if name != network && es.iter().any(|e| e.sandbox == sb) {
                    out.push(name);
                }
            }
        }
        out
    }

    fn lookup(&self, scope: &[&str], name: &str) -> Vec<Ipv4Addr> {
        for net in scope {
            let ips: Vec<Ipv4Addr> = self
                .networks
                .get(*net)
                .into_iter()
                .flatten()
                .filter(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(name)))
                .map(|e| e.ip)
                .collect();
            if !ips.is_empty() {
                return ips;
            }
        }
        Vec::new()
    }

    fn reverse(&self, scope: &[&str], ip: Ipv4Addr) -> Option<String> {
        scope.iter().find_map(|net| self.networks.get(*net)?.iter().find(|e| e.ip == ip)?.names.first().cloned())
    }
}

struct Listener {
    addr: SocketAddr,
    tasks: Vec<tokio::task::AbortHandle>,
}

/// The server: one thread with its own runtime, any number of listeners.
pub struct Dns {
    handle: tokio::runtime::Handle,
    records: Arc<RwLock<Records>>,
    upstreams: Arc<Vec<SocketAddr>>,
    listeners: Mutex<HashMap<String, Listener>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Dns {
    /// Starts the server thread; questions it cannot answer go to `upstreams`.
    pub fn start(upstreams: Vec<SocketAddr>) -> Result<Dns> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(crate::io("starting the DNS runtime"))?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("berth-dns".into())
            .spawn(move || {
                // Listeners are spawned from other threads onto this runtime; it runs them until the
                // server is dropped.
                rt.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(crate::io("starting the DNS thread"))?;
        Ok(Dns { handle, records: Arc::default(), upstreams: Arc::new(upstreams), listeners: Mutex::default(), _stop: stop })
    }

    /// The host's resolvers from resolv.conf text (port 53).
    pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
        text.lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some("nameserver")).then(|| f.next()).flatten()?.parse::<IpAddr>().ok()
            })
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }

    /// Serves `network`'s names on `addr` (UDP and TCP); replaces an earlier listener of it.
    pub fn serve(&self, network: &str, addr: SocketAddr) -> Result<()> {
        self.stop(network);
        let _enter = self.handle.enter();
        let bind_err = |e: std::io::Error| Error::Io { context: format!("DNS for network {network} cannot listen on {addr}"), source: e };
        let udp = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        udp.set_nonblocking(true).map_err(bind_err)?;
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(bind_err)?;
        let tcp = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        tcp.set_nonblocking(true).map_err(bind_err)?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(bind_err)?;
        let ctx = Ctx { network: network.to_string(), records: self.records.clone(), upstreams: self.upstreams.clone() };
        let udp_task = self.handle.spawn(serve_udp(Arc::new(udp), ctx.clone())).abort_handle();
        let tcp_task = self.handle.spawn(serve_tcp(tcp, ctx)).abort_handle();
        lock(&self.listeners).insert(network.to_string(), Listener { addr, tasks: vec![udp_task, tcp_task] });
        Ok(())
    }

    /// Stops serving `network` and forgets its names.
    pub fn stop(&self, network: &str) {
        if let Some(l) = lock(&self.listeners).remove(network) {
            tracing::debug!(network, addr = %l.addr, "DNS listener stopped");
            for t in l.tasks {
                t.abort();
            }
        }
        write(&self.records).networks.remove(network);
    }

    /// Adds (or replaces) the sandbox's names on `network`.
    pub fn set(&self, network: &str, entry: Entry) {
        let mut r = write(&self.records);
        let list = r.networks.entry(network.to_string()).or_default();
        list.retain(|e| e.sandbox != entry.sandbox);
        list.push(entry);
    }

    /// Removes the sandbox's names from `network`.
    pub fn remove(&self, network: &str, sandbox: &str) {
        if let Some(list) = write(&self.records).networks.get_mut(network) {
            list.retain(|e| e.sandbox != sandbox);
        }
    }

    /// Removes the sandbox's names from every network.
    pub fn remove_everywhere(&self, sandbox: &str) {
        for list in write(&self.records).networks.values_mut() {
            list.retain(|e| e.sandbox != sandbox);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct Ctx {
    network: String,
    records: Arc<RwLock<Records>>,
    upstreams: Arc<Vec<SocketAddr>>,
}

async fn serve_udp(sock: Arc<tokio::net::UdpSocket>, ctx: Ctx) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(network = %ctx.network, error = %e, "DNS receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let (sock, ctx) = (sock.clone(), ctx.clone());
        // Each question on its own task: a slow upstream must not hold up local answers.
        tokio::spawn(async move {
            if let Some(reply) = answer(&ctx, &query, peer.ip()).await {
                let _ = sock.send_to(&reply, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: tokio::net::TcpListener, ctx: Ctx) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else { continue };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            // RFC 1035 4.2.2: each message is preceded by its two-byte length.
            loop {
                let Ok(len) = stream.read_u16().await else { return };
                let mut query = vec![0u8; usize::from(len)];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&ctx, &query, peer.ip()).await else { return };
                let Ok(len) = u16::try_from(reply.len()) else { return };
                if stream.write_u16(len).await.is_err() || stream.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// The reply to one message, or None for something that is not a DNS question at all.
async fn answer(ctx: &Ctx, query: &[u8], src: IpAddr) -> Option<Vec<u8>> {
    let msg = Message::from_bytes(query).ok()?;
    if msg.message_type() != MessageType::Query {
        return None;
    }
    if msg.op_code() != OpCode::Query {
        return reply(&msg, ResponseCode::NotImp, Vec::new());
    }
    let Some(q) = msg.queries().first() else { return reply(&msg, ResponseCode::FormErr, Vec::new()) };
    let src = match src {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => ip.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let name = q.name().to_ascii();
    let name = name.trim_end_matches('.');
    let local = {
        let records = ctx.records.read().unwrap_or_else(|p| p.into_inner());
        let scope = records.scope(&ctx.network, src);
        match q.query_type() {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                let ips = records.lookup(&scope, name);
                // A known name has no IPv6 address: answer AAAA with an empty NOERROR at once, or
                // the resolver waits on the upstream for the AAAA half of its parallel lookup.
                (!ips.is_empty()).then(|| {
                    if q.query_type() == RecordType::AAAA {
                        Vec::new()
                    } else {
                        ips.into_iter().map(|ip| Record::from_rdata(q.name().clone(), TTL, RData::A(rdata::A(ip)))).collect()
                    }
                })
            }
            RecordType::PTR => reverse_ip(name).and_then(|ip| records.reverse(&scope, ip)).and_then(|target| {
                let target = Name::from_ascii(format!("{target}.")).ok()?;
                Some(vec![Record::from_rdata(q.name().clone(), TTL, RData::PTR(rdata::PTR(target)))])
            }),
            _ => None,
        }
    };
    match local {
        Some(answers) => reply(&msg, ResponseCode::NoError, answers),
        None => match forward(&ctx.upstreams, query, msg.id()).await {
            Some(r) => Some(r),
            None => reply(&msg, ResponseCode::ServFail, Vec::new()),
        },
    }
}

fn reply(q: &Message, code: ResponseCode, answers: Vec<Record>) -> Option<Vec<u8>> {
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(q.op_code())
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(code == ResponseCode::NoError)
        .set_response_code(code);
    m.add_queries(q.queries().iter().cloned());
    m.add_answers(answers);
    m.to_bytes().ok()
}

/// `4.3.2.1.in-addr.arpa` → 1.2.3.4.
fn reverse_ip(name: &str) -> Option<Ipv4Addr> {
    let lower = name.to_ascii_lowercase();
    let octets: Vec<u8> = lower.strip_suffix(".in-addr.arpa")?.split('.').map(str::parse).collect::<std::result::Result<_, _>>().ok()?;
    let [d, c, b, a] = octets.as_slice() else { return None };
    Some(Ipv4Addr::new(*a, *b, *c, *d))
}

/// Relays the question unchanged to each upstream in turn; the first reply with the same id wins.
async fn forward(upstreams: &[SocketAddr], query: &[u8], id: u16) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else { continue };
        if sock.connect(up).await.is_err() || sock.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        let got = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            loop {
                let n = sock.recv(&mut buf).await.ok()?;
                if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    return Some(buf[..n].to_vec());
                }
            }
        })
        .await;
        if let Ok(Some(r)) = got {
            return Some(r);
        }
        tracing::debug!(upstream = %up, "upstream resolver did not answer");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn question(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7).set_recursion_desired(true);
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
        m.to_bytes().expect("encode")
    }

    fn ctx(upstreams: Vec<SocketAddr>) -> Ctx {
        let mut r = Records::default();
        r.networks.insert("a".into(), vec![
            Entry { sandbox: "s1".into(), names: vec!["api".into(), "backend".into()], ip: Ipv4Addr::new(10, 1, 0, 2) },
            Entry { sandbox: "s2".into(), names: vec!["web".into()], ip: Ipv4Addr::new(10, 1, 0, 3) },
        ]);
        r.networks.insert("b".into(), vec![
            Entry { sandbox: "s2".into(), names: vec!["web".into()], ip: Ipv4Addr::new(10, 2, 0, 2) },
            Entry { sandbox: "s3".into(), names: vec!["db".into()], ip: Ipv4Addr::new(10, 2, 0, 3) },
        ]);
        Ctx { network: "a".into(), records: Arc::new(RwLock::new(r)), upstreams: Arc::new(upstreams) }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt")
    }

    fn a_records(reply: &[u8]) -> (ResponseCode, Vec<Ipv4Addr>) {
        let m = Message::from_bytes(reply).expect("reply parses");
        assert_eq!(m.id(), 7);
        let ips = m.answers().iter().filter_map(|r| match r.data() { RData::A(a) => Some(a.0), _ => None }).collect();
        (m.response_code(), ips)
    }

    #[test]
    fn names_and_aliases_resolve_case_insensitively() {
        let c = ctx(vec![]);
        let rt = rt();
        let src = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3));
        for name in ["api.", "BACKEND.", "api"] {
            let r = rt.block_on(answer(&c, &question(name, RecordType::A), src)).expect("reply");
            assert_eq!(a_records(&r), (ResponseCode::NoError, vec![Ipv4Addr::new(10, 1, 0, 2)]), "{name}");
        }
        let r = rt.block_on(answer(&c, &question("api.", RecordType::AAAA), src)).expect("reply");
        assert_eq!(a_records(&r), (ResponseCode::NoError, vec![]), "a known name answers AAAA empty, not via upstream");
    }

    #[test]
    fn a_sandbox_resolves_names_of_all_its_networks_and_no_others() {
        let c = ctx(vec![]);
        let rt = rt();
        // s2 is on a and b: it sees db (on b) through a's listener.
        let r = rt.block_on(answer(&c, &question("db.", RecordType::A), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3)))).expect("reply");
        assert_eq!(a_records(&r).1, vec![Ipv4Addr::new(10, 2, 0, 3)]);
        // s1 is only on a: db is not its business (no upstream here: SERVFAIL).
        let r = rt.block_on(answer(&c, &question("db.", RecordType::A), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)))).expect("reply");
        assert_eq!(a_records(&r), (ResponseCode::ServFail, vec![]));
        // Its own network's answer wins for a name on several.
        let r = rt.block_on(answer(&c, &question("web.", RecordType::A), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)))).expect("reply");
        assert_eq!(a_records(&r).1, vec![Ipv4Addr::new(10, 1, 0, 3)]);
    }

    #[test]
    fn reverse_lookups_name_the_sandbox() {
        let c = ctx(vec![]);
        let r = rt().block_on(answer(&c, &question("2.0.1.10.in-addr.arpa.", RecordType::PTR), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3)))).expect("reply");
        let m = Message::from_bytes(&r).expect("parse");
        let names: Vec<String> = m.answers().iter().filter_map(|r| match r.data() { RData::PTR(p) => Some(p.0.to_ascii()), _ => None }).collect();
        assert_eq!(names, vec!["api.".to_string()]);
    }

    #[test]
    fn unknown_names_are_forwarded_and_the_upstream_reply_relayed() {
        let rt = rt();
        rt.block_on(async {
            let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
            let up_addr = up.local_addr().expect("addr");
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let (n, peer) = up.recv_from(&mut buf).await.expect("recv");
                let q = Message::from_bytes(&buf[..n]).expect("q");
                let ans = Record::from_rdata(q.queries()[0].name().clone(), 30, RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 9))));
                let r = reply(&q, ResponseCode::NoError, vec![ans]).expect("r");
                up.send_to(&r, peer).await.expect("send");
            });
            let c = ctx(vec![up_addr]);
            let r = answer(&c, &question("example.org.", RecordType::A), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2))).await.expect("reply");
            assert_eq!(a_records(&r), (ResponseCode::NoError, vec![Ipv4Addr::new(192, 0, 2, 9)]));
        });
    }

    #[test]
    fn garbage_gets_no_reply_and_a_served_listener_answers_over_udp_and_tcp() {
        let c = ctx(vec![]);
        assert!(rt().block_on(answer(&c, b"\x00\x01garbage", IpAddr::V4(Ipv4Addr::LOCALHOST))).is_none());

        let dns = Dns::start(vec![]).expect("start");
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        dns.serve("n", addr).expect("serve");
        dns.set("n", Entry { sandbox: "x".into(), names: vec!["svc".into()], ip: Ipv4Addr::new(10, 9, 0, 5) });
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("client");
        client.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        client.send_to(&question("svc.", RecordType::A), addr).expect("send");
        let mut buf = [0u8; 512];
        let n = client.recv(&mut buf).expect("udp reply");
        assert_eq!(a_records(&buf[..n]).1, vec![Ipv4Addr::new(10, 9, 0, 5)]);

        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(addr).expect("tcp");
        tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let q = question("svc.", RecordType::A);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        tcp.write_all(&framed).expect("write");
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).expect("len");
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut body).expect("body");
        assert_eq!(a_records(&body).1, vec![Ipv4Addr::new(10, 9, 0, 5)]);

        dns.remove("n", "x");
        client.send_to(&question("svc.", RecordType::A), addr).expect("send");
        let n = client.recv(&mut buf).expect("reply");
        assert_eq!(a_records(&buf[..n]), (ResponseCode::ServFail, vec![]), "removed names are gone");
        dns.stop("n");
    }
}
