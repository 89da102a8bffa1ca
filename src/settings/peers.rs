//! The peer list: `host:port` items whose position is the node id.

use super::SettingsError;
use crate::core::NodeId;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Port of a peer item that names none (DESIGN.md 4.1), as in the seed.
pub const PEER_PORT_DEFAULT: u16 = 5000;

/// Splits a comma-separated list (`--peers`, `RAFT_PEERS`) into items,
/// trimming the spaces people leave after commas. Empty items are kept so
/// that `parse_peers` can point at the stray comma.
pub(crate) fn split_list(list: &str) -> Vec<String> {
    if list.trim().is_empty() {
        return Vec::new();
    }
    list.split(',').map(|item| item.trim().to_owned()).collect()
}

/// Resolves every item, in order: index i is node i. Rejects an empty list
/// and two items that resolve to the same address (two ids for one node
/// would let it vote twice).
pub(crate) fn parse_peers(items: &[String]) -> Result<Vec<SocketAddr>, SettingsError> {
    if items.is_empty() {
        return Err(SettingsError::NoPeers);
    }
    let mut peers = Vec::with_capacity(items.len());
    let mut seen: BTreeMap<SocketAddr, NodeId> = BTreeMap::new();
    for (position, item) in items.iter().enumerate() {
        let addr = parse_peer(item).map_err(|reason| SettingsError::BadPeer {
            item: item.clone(),
            reason: if item.is_empty() {
                format!("empty entry at position {position} (stray comma?)")
            } else {
                reason
            },
        })?;
        let id = NodeId(position as u64);
        if let Some(&first) = seen.get(&addr) {
            return Err(SettingsError::DuplicatePeer {
                addr,
                first,
                second: id,
            });
        }
        seen.insert(addr, id);
        peers.push(addr);
    }
    Ok(peers)
}

/// One item: `1.2.3.4:5000`, `[::1]:5000`, `node-3.internal:5000`, or any
/// of them without `:port` for `PEER_PORT_DEFAULT`. The error is the reason
/// alone; the caller names the item.
pub(crate) fn parse_peer(item: &str) -> Result<SocketAddr, String> {
    let (host, port, bracketed) = split_host_port(item)?;
    let port = match port {
        None => PEER_PORT_DEFAULT,
        Some(text) => parse_port(text)?,
    };
    let ip = if bracketed {
        host.parse::<IpAddr>()
            .ok()
            .filter(IpAddr::is_ipv6)
            .ok_or_else(|| "invalid IPv6 address".to_owned())?
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        ip
    } else if looks_like_ipv4(host) {
        // Checked before resolving: "10.0.1.x" is a typo, not a host name,
        // and sending it to DNS would only produce a slower, vaguer error.
        return Err("invalid IP address".to_owned());
    } else {
        resolve(host, port)?
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip} is not an address other nodes can dial"));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Returns (host, port text if any, whether the host was in brackets).
fn split_host_port(item: &str) -> Result<(&str, Option<&str>, bool), String> {
    if item.is_empty() {
        return Err("empty entry".to_owned());
    }
    if let Some(rest) = item.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "missing ']' after the IPv6 address".to_owned())?;
        return match after {
            "" => Ok((host, None, true)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port), true)),
                None => Err(format!("unexpected '{after}' after ']'")),
            },
        };
    }
    match item.matches(':').count() {
        0 => Ok((item, None, false)),
        1 => {
            let (host, port) = item.split_once(':').expect("one colon");
            if host.is_empty() {
                return Err("missing host before ':'".to_owned());
            }
            Ok((host, Some(port), false))
        }
        // "::1:5000" could be [::1]:5000 or [::1:5000]; RFC 3986 brackets
        // exist to settle exactly this, so demand them.
        _ => Err("an IPv6 address needs brackets, as in [::1]:5000".to_owned()),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ if text.is_empty() => Err("missing port after ':'".to_owned()),
        _ => Err(format!("invalid port '{text}' (must be 1-65535)")),
    }
}

/// A host written as dotted numbers is meant as an IPv4 address: no real
/// host name has an all-numeric top-level label (RFC 3696 2), and four
/// labels whose first three are numbers are a mistyped address.
fn looks_like_ipv4(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let numeric = |label: &&str| !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit());
    let last_numeric = labels.last().is_some_and(numeric);
    let first_three_numeric = labels.len() == 4 && labels[..3].iter().all(numeric);
    last_numeric || first_three_numeric
}

/// Resolves a host name. Every node must map a name to the same address, so
/// the choice is deterministic: the first IPv4 address if there is one
/// (resolvers order IPv6 first or not depending on the host's gai.conf),
/// else the first address.
fn resolve(host: &str, port: u16) -> Result<IpAddr, String> {
    let valid_name = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_name {
        return Err("invalid host name".to_owned());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host: {e}"))?
        .collect();
    let ipv4 = addrs.iter().find(|a| a.is_ipv4());
    ipv4.or(addrs.first())
        .map(SocketAddr::ip)
        .ok_or_else(|| "host resolves to no address".to_owned())
}

/// `--host`: an IP address to bind. Like etcd's listen URLs, a name is
/// refused: which interface a name means is a DNS question that can change
/// under a running node.
pub(crate) fn parse_bind_host(host: &str) -> Result<IpAddr, SettingsError> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed
        .parse::<IpAddr>()
        .map_err(|_| SettingsError::BadHost {
            host: host.to_owned(),
            reason: "--host must be an IP address (0.0.0.0 for every interface)".to_owned(),
        })
}

/// Where to bind when `--host` is absent. A loopback peer address is bound
/// as is, so a development cluster stays off the network. Any other address
/// binds every interface, as the seed's "auto-detect" did: on EC2 the
/// address peers dial may be NATed and not assigned to any local interface.
pub(crate) fn default_bind_ip(own: IpAddr) -> IpAddr {
    match own {
        ip if ip.is_loopback() => ip,
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(item: &str) -> String {
        parse_peer(item).unwrap_err()
    }

    #[test]
    fn ipv4_ipv6_and_default_port_parse() {
        assert_eq!(
            parse_peer("10.0.1.10:5001").unwrap(),
            "10.0.1.10:5001".parse().unwrap()
        );
        assert_eq!(
            parse_peer("[::1]:7000").unwrap(),
            "[::1]:7000".parse().unwrap()
        );
        assert_eq!(parse_peer("10.0.1.10").unwrap().port(), PEER_PORT_DEFAULT);
        assert_eq!(parse_peer("[fd00::1]").unwrap().port(), PEER_PORT_DEFAULT);
    }

    #[test]
    fn localhost_resolves_preferring_ipv4() {
        let addr = parse_peer("localhost:5000").unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(addr.port(), 5000);
    }

    #[test]
    fn mistyped_ipv4_is_an_invalid_ip_not_a_dns_lookup() {
        assert_eq!(reason("10.0.1.x:5000"), "invalid IP address");
        assert_eq!(reason("10.0.1.256:5000"), "invalid IP address");
        assert_eq!(reason("10.0.1:5000"), "invalid IP address");
    }

    #[test]
    fn bad_ports_are_named() {
        assert_eq!(
            reason("10.0.1.10:70000"),
            "invalid port '70000' (must be 1-65535)"
        );
        assert_eq!(reason("10.0.1.10:0"), "invalid port '0' (must be 1-65535)");
        assert_eq!(reason("10.0.1.10:"), "missing port after ':'");
        assert_eq!(
            reason("10.0.1.10:http"),
            "invalid port 'http' (must be 1-65535)"
        );
    }

    #[test]
    fn ipv6_needs_brackets_and_brackets_need_ipv6() {
        assert!(reason("::1:5000").contains("needs brackets"));
        assert_eq!(reason("[10.0.1.10]:5000"), "invalid IPv6 address");
        assert!(reason("[::1:5000").contains("missing ']'"));
        assert!(reason("[::1]5000").contains("unexpected '5000'"));
    }

    #[test]
    fn undialable_addresses_are_refused() {
        assert!(reason("0.0.0.0:5000").contains("not an address other nodes can dial"));
        assert!(reason("[::]:5000").contains("not an address other nodes can dial"));
        assert!(reason("224.0.0.1:5000").contains("not an address other nodes can dial"));
    }

    #[test]
    fn unresolvable_and_malformed_names_are_named() {
        assert!(reason("no-such-host.invalid:5000").starts_with("cannot resolve host"));
        assert_eq!(reason("bad_host!:5000"), "invalid host name");
        assert_eq!(reason(":5000"), "missing host before ':'");
    }

    #[test]
    fn list_splitting_keeps_stray_commas_visible() {
        assert_eq!(split_list(" a:1 , b:2"), vec!["a:1", "b:2"]);
        assert!(split_list("  ").is_empty());
        let items = split_list("127.0.0.1:5000,,127.0.0.1:5002");
        let e = parse_peers(&items).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad peer '': empty entry at position 1 (stray comma?)"
        );
    }

    #[test]
    fn empty_and_duplicate_lists_are_rejected() {
        assert!(matches!(parse_peers(&[]), Err(SettingsError::NoPeers)));
        let items = split_list("127.0.0.1:5000,127.0.0.1:5001,127.0.0.1:5000");
        assert_eq!(
            parse_peers(&items).unwrap_err().to_string(),
            "duplicate peer 127.0.0.1:5000: ids 0 and 2 are the same address"
        );
    }

    #[test]
    fn bind_host_must_be_an_ip() {
        assert_eq!(parse_bind_host("0.0.0.0").unwrap(), Ipv4Addr::UNSPECIFIED);
        assert!(parse_bind_host("[::]").unwrap().is_unspecified());
        let e = parse_bind_host("eth0").unwrap_err().to_string();
        assert!(
            e.starts_with("bad host 'eth0': --host must be an IP address"),
            "{e}"
        );
    }

    #[test]
    fn loopback_binds_itself_and_anything_else_binds_everything() {
        let lo: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(default_bind_ip(lo), lo);
        assert!(default_bind_ip("10.0.1.10".parse().unwrap()).is_unspecified());
        assert!(default_bind_ip("fd00::1".parse().unwrap()).is_unspecified());
    }
}
