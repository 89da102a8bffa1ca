//! Newtypes and plain data shared by the core, the storage and the runtime.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A node's id: its position (from 0) in the cluster's peer list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// A Raft term. Terms only grow, on every node, across restarts.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

/// A position in the replicated log; the first entry has index 1.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogIndex(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Term {
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The previous index, saturating at 0 (the index "before the log").
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

/// A member's advertised addresses, "host:port" each. Empty when unknown:
/// a static `--peers` cluster takes its addresses from flags (DESIGN.md 8).
/// The core only carries them; it never connects anywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberAddrs {
    pub peer_addr: String,
    pub client_addr: String,
}

/// Longest address the core accepts in a configuration change: a host
/// name (at most 253 bytes) and a port.
pub const MEMBER_ADDR_BYTES_MAX: usize = 262;

/// The cluster's members (DESIGN.md 8): voters, and learners that receive
/// the log but never vote, count toward a quorum, campaign or become
/// sub-leaders. A value carried in the log (`EntryPayload::Config`) and in
/// snapshots, so that membership changes are replicated like any entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Sorted, without duplicates.
    pub voters: Vec<NodeId>,
    /// Sorted, without duplicates, disjoint from `voters`.
    pub learners: Vec<NodeId>,
    /// Addresses of members that advertised them; a member without an
    /// entry has empty addresses.
    pub addrs: BTreeMap<NodeId, MemberAddrs>,
}

impl ClusterConfig {
    /// Voters only, addresses unknown: a static `--peers` cluster.
    pub fn new(mut voters: Vec<NodeId>) -> ClusterConfig {
        voters.sort();
        voters.dedup();
        ClusterConfig {
            voters,
            learners: Vec::new(),
            addrs: BTreeMap::new(),
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// A voter or a learner.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Voters and learners, by id.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.voters.iter().chain(&self.learners).copied().collect();
        all.sort();
        all
    }

    /// `id`'s advertised addresses (empty strings when unknown).
    pub fn addrs_of(&self, id: NodeId) -> MemberAddrs {
        self.addrs.get(&id).cloned().unwrap_or_default()
    }

    /// Votes or acknowledgements needed for a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// How many of `ids` are voters: only they count toward a quorum.
    pub fn count_voters<'a>(&self, ids: impl IntoIterator<Item = &'a NodeId>) -> usize {
        ids.into_iter().filter(|id| self.is_voter(**id)).count()
    }

    /// Debug builds: the sets are sorted, deduplicated and disjoint, and
    /// only members have addresses.
    pub fn check_invariants(&self) {
        assert!(
            self.voters.windows(2).all(|w| w[0] < w[1]),
            "voters not sorted: {:?}",
            self.voters
        );
        assert!(
            self.learners.windows(2).all(|w| w[0] < w[1]),
            "learners not sorted: {:?}",
            self.learners
        );
        assert!(
            self.learners.iter().all(|l| !self.is_voter(*l)),
            "voters {:?} and learners {:?} overlap",
            self.voters,
            self.learners
        );
        assert!(
            self.addrs.keys().all(|id| self.is_member(*id)),
            "addresses of non-members: {:?}",
            self.addrs.keys().collect::<Vec<_>>()
        );
    }
}

/// The configuration as binaries before issue 11 wrote it: voters only.
/// Still decoded from old WAL records (`EntryPayload::VotersOnly`) and
/// snapshot files (format 1); never written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VotersOnlyConfig {
    pub voters: Vec<NodeId>,
}

impl From<VotersOnlyConfig> for ClusterConfig {
    fn from(old: VotersOnlyConfig) -> ClusterConfig {
        ClusterConfig::new(old.voters)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader: committing it commits everything before
    /// it (Raft paper 5.4.2) and makes ReadIndex safe (thesis 6.4).
    Noop,
    /// An opaque command for the state machine.
    // Bytes: a clone shares the buffer, so that handing entries to the WAL,
    // to each follower's Append and to the state machine copies no command
    // (these copies were 35% of a leader's Raft thread under large writes).
    // Serialized as bytes: postcard writes the same bytes as for a sequence
    // of u8, copied in one go instead of one serde call per byte.
    Command(bytes::Bytes),
    /// A configuration in the layout before learners and addresses: read
    /// from old logs, never written. postcard encodes a variant by its
    /// position, so this one keeps the third place and its layout.
    VotersOnly(VotersOnlyConfig),
    /// A new cluster configuration, effective as soon as it is appended
    /// (Raft thesis 4.1). Last: variants are numbered in order.
    Config(ClusterConfig),
}

impl EntryPayload {
    /// The configuration this entry carries, in either layout.
    pub fn config(&self) -> Option<ClusterConfig> {
        match self {
            EntryPayload::Config(config) => Some(config.clone()),
            EntryPayload::VotersOnly(old) => Some(old.clone().into()),
            EntryPayload::Noop | EntryPayload::Command(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: EntryPayload,
}

/// Longest postcard varint of a u64.
const VARINT_BYTES_MAX: usize = 10;
/// Term, index, payload tag and a length, each a varint at its longest.
const ENTRY_HEADER_BYTES_MAX: usize = 4 * VARINT_BYTES_MAX;

impl Entry {
    /// An upper bound of the bytes this entry's encoding takes on the wire
    /// and on disk: sums of it bound Append messages and WAL records
    /// (`Limits`, DESIGN.md 7).
    pub fn size_bytes(&self) -> usize {
        match &self.payload {
            EntryPayload::Noop => ENTRY_HEADER_BYTES_MAX,
            EntryPayload::Command(data) => Entry::command_size_bytes(data.len()),
            EntryPayload::VotersOnly(config) => {
                ENTRY_HEADER_BYTES_MAX + VARINT_BYTES_MAX * config.voters.len()
            }
            EntryPayload::Config(config) => ENTRY_HEADER_BYTES_MAX + config_size_bytes(config),
        }
    }

    /// `size_bytes` of an entry carrying a command of `command_bytes`.
    pub fn command_size_bytes(command_bytes: usize) -> usize {
        ENTRY_HEADER_BYTES_MAX + command_bytes
    }
}

/// An upper bound of a configuration's encoding: three sequence lengths,
/// then per member its id twice (in its set and as an address key) and
/// two strings, each with a length.
pub fn config_size_bytes(config: &ClusterConfig) -> usize {
    let addrs: usize = config
        .addrs
        .values()
        .map(|a| 3 * VARINT_BYTES_MAX + a.peer_addr.len() + a.client_addr.len())
        .sum();
    3 * VARINT_BYTES_MAX + VARINT_BYTES_MAX * (config.voters.len() + config.learners.len()) + addrs
}

/// What must be on stable storage before a node may answer a vote or an
/// append: a restart must not vote twice in one term (Raft paper, Figure 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    /// A lower bound of the commit index; persisting it lets a restarted node
    /// re-apply committed entries without waiting for a leader.
    pub commit: LogIndex,
}

/// Describes the log prefix that a snapshot replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_index: LogIndex,
    pub last_term: Term,
    pub config: ClusterConfig,
}

/// `SnapshotMeta` as snapshot files of format 1 hold it (voters only);
/// read, never written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VotersOnlySnapshotMeta {
    pub last_index: LogIndex,
    pub last_term: Term,
    pub config: VotersOnlyConfig,
}

impl From<VotersOnlySnapshotMeta> for SnapshotMeta {
    fn from(old: VotersOnlySnapshotMeta) -> SnapshotMeta {
        SnapshotMeta {
            last_index: old.last_index,
            last_term: old.last_term,
            config: old.config.into(),
        }
    }
}

/// Everything a node recovers from stable storage when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredState {
    pub hard_state: HardState,
    /// The prefix replaced by a snapshot, or the empty prefix (index 0,
    /// term 0) holding the initial configuration.
    pub snapshot: SnapshotMeta,
    /// Entries after `snapshot.last_index`, contiguous.
    pub entries: Vec<Entry>,
}

impl RestoredState {
    /// A node that has never run: empty log, initial configuration.
    pub fn fresh(config: ClusterConfig) -> RestoredState {
        RestoredState {
            hard_state: HardState::default(),
            snapshot: SnapshotMeta {
                last_index: LogIndex(0),
                last_term: Term(0),
                config,
            },
            entries: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bytes_bounds_the_encoding_with_every_varint_at_its_longest() {
        let payloads = [
            EntryPayload::Noop,
            EntryPayload::Command(Vec::new().into()),
            EntryPayload::Command(vec![1; 200_000].into()),
            EntryPayload::Config(ClusterConfig::new(vec![NodeId(u64::MAX), NodeId(1 << 40)])),
            EntryPayload::VotersOnly(VotersOnlyConfig {
                voters: vec![NodeId(u64::MAX), NodeId(1 << 40)],
            }),
            EntryPayload::Config(ClusterConfig {
                voters: vec![NodeId(1), NodeId(u64::MAX)],
                learners: vec![NodeId(1 << 40)],
                addrs: BTreeMap::from([
                    (
                        NodeId(1),
                        MemberAddrs {
                            peer_addr: "x".repeat(MEMBER_ADDR_BYTES_MAX),
                            client_addr: "10.0.0.1:6001".into(),
                        },
                    ),
                    (NodeId(1 << 40), MemberAddrs::default()),
                ]),
            }),
        ];
        for payload in payloads {
            let entry = Entry {
                term: Term(u64::MAX),
                index: LogIndex(u64::MAX),
                payload,
            };
            let encoded = postcard::to_allocvec(&entry).unwrap().len();
            assert!(
                encoded <= entry.size_bytes(),
                "encoded={encoded} size_bytes={}",
                entry.size_bytes()
            );
        }
    }

    #[test]
    fn command_bytes_encode_as_the_plain_sequence_of_u8_did() {
        // The log and wire format from before serde_bytes: a command was a
        // sequence of u8. Both must read each other's bytes.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum OldPayload {
            Noop,
            Command(Vec<u8>),
        }
        let data: Vec<u8> = (0..=255).collect();
        let new = postcard::to_allocvec(&EntryPayload::Command(data.clone().into())).unwrap();
        let old = postcard::to_allocvec(&OldPayload::Command(data.clone())).unwrap();
        assert_eq!(new, old);
        let back: EntryPayload = postcard::from_bytes(&old).unwrap();
        assert_eq!(back, EntryPayload::Command(data.into()));
    }

    /// The layouts binaries before issue 11 wrote (postcard, no schema
    /// evolution): a configuration entry was the third variant holding the
    /// voters, and a snapshot meta held that configuration.
    mod old {
        use super::{LogIndex, NodeId, Term};
        use serde::Serialize;

        #[derive(Serialize)]
        pub struct ClusterConfig {
            pub voters: Vec<NodeId>,
        }
        // Never built: present so that `Config` keeps its position.
        #[allow(dead_code)]
        #[derive(Serialize)]
        pub enum EntryPayload {
            Noop,
            Command(Vec<u8>),
            Config(ClusterConfig),
        }
        #[derive(Serialize)]
        pub struct Entry {
            pub term: Term,
            pub index: LogIndex,
            pub payload: EntryPayload,
        }
        #[derive(Serialize)]
        pub struct SnapshotMeta {
            pub last_index: LogIndex,
            pub last_term: Term,
            pub config: ClusterConfig,
        }
    }

    #[test]
    fn config_entries_written_before_learners_existed_still_decode() {
        let voters = vec![NodeId(0), NodeId(1), NodeId(2)];
        let bytes = postcard::to_allocvec(&old::Entry {
            term: Term(3),
            index: LogIndex(7),
            payload: old::EntryPayload::Config(old::ClusterConfig {
                voters: voters.clone(),
            }),
        })
        .unwrap();
        let entry: Entry = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(entry.index, LogIndex(7));
        assert_eq!(entry.payload.config(), Some(ClusterConfig::new(voters)));
        // And the old entries keep their bytes when written again (a
        // follower's WAL stores what the leader sent).
        assert_eq!(postcard::to_allocvec(&entry).unwrap(), bytes);
    }

    #[test]
    fn snapshot_meta_of_format_1_decodes_as_the_voters_only_layout() {
        let bytes = postcard::to_allocvec(&old::SnapshotMeta {
            last_index: LogIndex(100),
            last_term: Term(4),
            config: old::ClusterConfig {
                voters: vec![NodeId(0), NodeId(2)],
            },
        })
        .unwrap();
        let meta: SnapshotMeta = postcard::from_bytes::<VotersOnlySnapshotMeta>(&bytes)
            .unwrap()
            .into();
        assert_eq!(meta.last_index, LogIndex(100));
        assert_eq!(meta.config, ClusterConfig::new(vec![NodeId(0), NodeId(2)]));
    }

    #[test]
    fn a_configuration_with_learners_and_addresses_round_trips() {
        let mut config = ClusterConfig::new(vec![NodeId(0), NodeId(1)]);
        config.learners.push(NodeId(5));
        config.addrs.insert(
            NodeId(5),
            MemberAddrs {
                peer_addr: "10.0.0.5:5000".into(),
                client_addr: "10.0.0.5:6000".into(),
            },
        );
        config.check_invariants();
        let payload = EntryPayload::Config(config.clone());
        let bytes = postcard::to_allocvec(&payload).unwrap();
        let back: EntryPayload = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.config(), Some(config));
    }
}
