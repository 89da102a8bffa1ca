//! Free ports for test clusters, below the kernel's ephemeral range
//! (32768 and up), so that an outgoing connection's source port never takes
//! a port a node is about to bind. A port found free is reserved for this
//! process until its cluster drops, so two clusters of one test binary never
//! get the same one.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

/// The toolkit's port range (other suites on the machine use others; the
/// failover experiment's default base port, 24000, is above it). Peer ports
/// are taken from the lower part so that client ports (peer +
/// [`CLIENT_PORT_OFFSET`]) stay inside it.
pub const PORT_MIN: u16 = 20_000;
pub const PORT_MAX: u16 = 23_999;
/// A node serves clients at its peer port + this, unless told otherwise.
pub const CLIENT_PORT_OFFSET: u16 = 1000;

/// Ports handed out in this process: not handed out twice before their
/// cluster is dropped.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// How many random bases to try before giving up.
const TRIES: usize = 200;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn reserved() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Picks `n` consecutive peer ports whose client ports are free too on
/// 127.0.0.1, and reserves all of them for this process.
pub fn reserve_ports(n: u16) -> Vec<u16> {
    reserve_ports_on(&vec![LOOPBACK; n as usize])
}

/// Peer ports for nodes bound to `ips` (node `i` on `ips[i]`, peer port
/// base + i): every peer and client port free on its node's address.
pub fn reserve_ports_on(ips: &[IpAddr]) -> Vec<u16> {
    let n = ips.len() as u16;
    let last_base = PORT_MAX - CLIENT_PORT_OFFSET - n + 1;
    for _ in 0..TRIES {
        let base = PORT_MIN + rand::random::<u16>() % (last_base - PORT_MIN + 1);
        let peers: Vec<u16> = (base..base + n).collect();
        let mut reserved = reserved();
        let all = || {
            peers
                .iter()
                .zip(ips)
                .flat_map(|(p, ip)| [(*ip, *p), (*ip, p + CLIENT_PORT_OFFSET)])
        };
        if all().any(|(_, p)| reserved.contains(&p)) {
            continue;
        }
        if all().all(|(ip, p)| port_is_free_on(ip, p)) {
            reserved.extend(all().map(|(_, p)| p));
            return peers;
        }
    }
    panic!("no {n} free peer/client port pairs in {PORT_MIN}-{PORT_MAX} after {TRIES} tries");
}

/// Picks `n` single free ports (metrics endpoints, own client ports) and
/// reserves them.
pub fn reserve_single_ports(n: usize) -> Vec<u16> {
    let mut picked = Vec::new();
    for _ in 0..TRIES * n {
        if picked.len() == n {
            break;
        }
        let port = PORT_MIN + rand::random::<u16>() % (PORT_MAX - PORT_MIN + 1);
        let mut reserved = reserved();
        if !reserved.contains(&port) && port_is_free(port) {
            reserved.insert(port);
            picked.push(port);
        }
    }
    assert_eq!(
        picked.len(),
        n,
        "no {n} free ports in {PORT_MIN}-{PORT_MAX}"
    );
    picked
}

/// Gives reserved ports back (a cluster's, when it is dropped).
pub fn release_ports(ports: impl IntoIterator<Item = u16>) {
    let mut reserved = reserved();
    for port in ports {
        reserved.remove(&port);
    }
}

pub fn port_is_free(port: u16) -> bool {
    port_is_free_on(LOOPBACK, port)
}

pub fn port_is_free_on(ip: IpAddr, port: u16) -> bool {
    TcpListener::bind((ip, port)).is_ok()
}

/// `127.0.0.1:port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(LOOPBACK, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_never_handed_out_twice() {
        let a = reserve_ports(3);
        let b = reserve_ports(3);
        for p in &a {
            assert!(!b.contains(p), "{p} handed out twice: {a:?} {b:?}");
            assert!(*p + CLIENT_PORT_OFFSET <= PORT_MAX, "{p}");
        }
        let singles = reserve_single_ports(4);
        assert!(singles.iter().all(|p| !a.contains(p) && !b.contains(p)));
        release_ports(a.into_iter().chain(b).chain(singles));
    }
}
