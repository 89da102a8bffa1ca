//! The runtime's side of membership changes (DESIGN.md 8): which peers the
//! transport talks to as the configuration changes, what the leader records
//! of members that never had addresses in a configuration, and the view an
//! operator gets of the members.

use crate::core::{ClusterConfig, LogIndex, MemberAddrs, MemberInfo, NodeId, Raft, Term};
use crate::transport::ClientAddrs;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The members as the leader (or any node) sees them, for `sraft member
/// list` and the admin commands that wait on a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersView {
    pub id: NodeId,
    pub term: Term,
    pub leader: Option<NodeId>,
    /// The index of the configuration in force, and whether it committed.
    pub config_index: LogIndex,
    pub config_committed: bool,
    pub members: Vec<MemberRow>,
}

/// One member: its addresses as this node knows them (from the
/// configuration, else the static peer list and the hellos), and on the
/// leader its replication progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    pub info: MemberInfo,
    pub peer_addr: Option<SocketAddr>,
    pub client_addr: Option<SocketAddr>,
    /// Leader only: holds everything committed and answers promptly.
    pub caught_up: bool,
}

impl MembersView {
    pub fn member(&self, id: NodeId) -> Option<&MemberRow> {
        self.members.iter().find(|m| m.info.id == id)
    }
}

/// Where this node finds its peers.
#[derive(Clone, Debug, Default)]
pub struct PeerBook {
    /// The static `--peers` list, index = node id (empty with `--join`).
    pub static_peers: Vec<SocketAddr>,
}

impl PeerBook {
    /// `id`'s peer address: the configuration's, else the static list's.
    pub fn peer_addr(&self, config: &ClusterConfig, id: NodeId) -> Option<SocketAddr> {
        config
            .addrs
            .get(&id)
            .and_then(|a| parse_addr(&a.peer_addr))
            .or_else(|| self.static_peers.get(id.0 as usize).copied())
    }

    /// The peers the transport should have senders for: every other
    /// member, and (on a leader) the departing nodes it still tells of
    /// their removal, at the address they have now.
    pub fn transport_peers(
        &self,
        raft: &Raft,
        current: &BTreeMap<NodeId, SocketAddr>,
        learned: &BTreeMap<NodeId, SocketAddr>,
    ) -> BTreeMap<NodeId, SocketAddr> {
        let config = raft.cluster();
        let mut peers = BTreeMap::new();
        for id in config.members() {
            if id == raft.id() {
                continue;
            }
            let addr = self
                .peer_addr(config, id)
                .or_else(|| current.get(&id).copied())
                .or_else(|| learned.get(&id).copied());
            match addr {
                Some(addr) => {
                    peers.insert(id, addr);
                }
                // Checked once a second: not a warning each time.
                None => log::debug!(
                    "Node {}: member {id} has no known peer address; it is reached once it connects",
                    raft.id()
                ),
            }
        }
        for (&id, &addr) in current {
            if !peers.contains_key(&id) && raft.is_departing(id) {
                peers.insert(id, addr);
            }
        }
        // A leader this node was never told of (it started with --join)
        // stays reachable while it leads.
        if let Some(leader) = raft.leader().filter(|l| *l != raft.id())
            && !peers.contains_key(&leader)
            && let Some(addr) = current.get(&leader).or(learned.get(&leader))
        {
            peers.insert(leader, *addr);
        }
        peers
    }

    /// Addresses for the members the configuration has none for, so that
    /// the leader's next change records them (`Raft::set_addr_hints`).
    pub fn hints(&self, raft: &Raft, client_addrs: &ClientAddrs) -> BTreeMap<NodeId, MemberAddrs> {
        let config = raft.cluster();
        config
            .members()
            .into_iter()
            .filter(|id| !config.addrs.contains_key(id))
            .filter_map(|id| {
                let peer = self.peer_addr(config, id)?;
                let client = client_addrs.get(id);
                Some((
                    id,
                    MemberAddrs {
                        peer_addr: peer.to_string(),
                        client_addr: client.map(|a| a.to_string()).unwrap_or_default(),
                    },
                ))
            })
            .collect()
    }

    /// The view `sraft member list` prints.
    pub fn view(&self, raft: &Raft, client_addrs: &ClientAddrs) -> MembersView {
        let config = raft.cluster();
        let members = raft
            .members()
            .into_iter()
            .map(|info| MemberRow {
                peer_addr: self.peer_addr(config, info.id),
                client_addr: parse_addr(&info.addrs.client_addr)
                    .or_else(|| client_addrs.get(info.id)),
                caught_up: info.id == raft.id() || raft.is_caught_up(info.id),
                info,
            })
            .collect();
        MembersView {
            id: raft.id(),
            term: raft.term(),
            leader: raft.leader(),
            config_index: raft.config_index(),
            config_committed: raft.config_committed(),
            members,
        }
    }
}

/// A member address as the configuration holds it: `IP:PORT`. Names are
/// resolved once, on the leader's client thread, when the member is added
/// (`RAFT MEMBER ADD`), so that the Raft thread, which reads these at every
/// configuration change and once a second, never waits on a resolver.
/// Empty or not an address: None.
pub fn parse_addr(text: &str) -> Option<SocketAddr> {
    text.parse().ok()
}
