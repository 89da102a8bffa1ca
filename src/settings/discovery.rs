//! Which peer am I? Without `--node-id` a node finds itself in the peer list
//! by its own addresses (DESIGN.md 4.1), so one command line, or one config
//! file, serves every machine of an EC2 cluster.

use super::SettingsError;
use crate::core::NodeId;
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Whether `ip` is assigned to this host. Binding a UDP socket to it, port 0,
/// succeeds exactly then (EADDRNOTAVAIL otherwise): no packet is sent, no
/// privilege is needed, no port is taken for longer than the call. A host
/// with `net.ipv4.ip_nonlocal_bind=1` passes for every address, which
/// discovery reports as ambiguous, and the operator passes `--node-id`.
pub(crate) fn is_local_ip(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The one peer whose address is local and, when `port` is given, whose
/// port is `port`. Several matches (a loopback cluster, or two entries for
/// two IPs of one machine) are an error, never a guess: two processes that
/// guessed the same id would both vote as that node.
pub(crate) fn find_self(
    peers: &[SocketAddr],
    port: Option<u16>,
    is_local: &dyn Fn(IpAddr) -> bool,
) -> Result<NodeId, SettingsError> {
    let ids: Vec<NodeId> = peers
        .iter()
        .enumerate()
        .filter(|(_, addr)| port.is_none_or(|port| addr.port() == port))
        .filter(|(_, addr)| is_local(addr.ip()))
        .map(|(i, _)| NodeId(i as u64))
        .collect();
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => Err(SettingsError::NotAPeer {
            peers: peers.to_vec(),
            port,
        }),
        _ => Err(SettingsError::SeveralPeersAreThisHost { ids }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &str) -> Vec<SocketAddr> {
        list.split(',').map(|p| p.parse().unwrap()).collect()
    }

    /// This "host" owns 192.0.2.12 and loopback (injected, not this machine).
    fn ec2_host(ip: IpAddr) -> bool {
        ip.is_loopback() || ip == "192.0.2.12".parse::<IpAddr>().unwrap()
    }

    #[test]
    fn the_one_local_address_is_this_node() {
        let list = peers("192.0.2.10:5000,192.0.2.11:5000,192.0.2.12:5000");
        assert_eq!(find_self(&list, None, &ec2_host).unwrap(), NodeId(2));
        assert_eq!(find_self(&list, Some(5000), &ec2_host).unwrap(), NodeId(2));
    }

    #[test]
    fn no_local_address_asks_for_node_id() {
        let list = peers("192.0.2.10:5000,192.0.2.11:5000");
        let e = find_self(&list, None, &ec2_host).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this host is none of the peers (192.0.2.10:5000, 192.0.2.11:5000); pass --node-id"
        );
    }

    #[test]
    fn a_local_address_on_another_port_is_not_this_node() {
        let list = peers("192.0.2.11:5000,192.0.2.12:5000");
        let e = find_self(&list, Some(5001), &ec2_host).unwrap_err();
        assert!(
            e.to_string().contains("with port 5001; pass --node-id"),
            "{e}"
        );
    }

    #[test]
    fn loopback_cluster_is_ambiguous_without_port() {
        let list = peers("127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5002");
        let e = find_self(&list, None, &ec2_host).unwrap_err();
        assert_eq!(
            e.to_string(),
            "several peers are this host (ids 0,1,2); pass --node-id or --port"
        );
        assert_eq!(find_self(&list, Some(5001), &ec2_host).unwrap(), NodeId(1));
    }

    #[test]
    fn loopback_is_local_and_an_unassigned_address_is_not() {
        assert!(is_local_ip("127.0.0.1".parse().unwrap()));
        // 240.0.0.0/4 is reserved (RFC 1112 4) and so on no interface;
        // documentation ranges are no such guarantee: containers use them.
        assert!(!is_local_ip("240.0.0.1".parse().unwrap()));
    }
}
