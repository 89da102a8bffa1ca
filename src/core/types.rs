//! Newtypes and plain data shared by the core, the storage and the runtime.

use serde::{Deserialize, Serialize};
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

/// The voting members of the cluster. It is a value carried in the log
/// (`EntryPayload::Config`) and in snapshots, so that membership changes can
/// be replicated like any other entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Sorted, without duplicates.
    pub voters: Vec<NodeId>,
}

impl ClusterConfig {
    pub fn new(mut voters: Vec<NodeId>) -> ClusterConfig {
        voters.sort();
        voters.dedup();
        ClusterConfig { voters }
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// Votes or acknowledgements needed for a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader: committing it commits everything before
    /// it (Raft paper 5.4.2) and makes ReadIndex safe (thesis 6.4).
    Noop,
    /// An opaque command for the state machine.
    // serde_bytes: postcard writes the same bytes as for a sequence of u8,
    // but copies them in one go instead of one serde call per byte.
    Command(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A new cluster configuration, effective as soon as it is appended.
    Config(ClusterConfig),
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
            EntryPayload::Config(config) => {
                ENTRY_HEADER_BYTES_MAX + VARINT_BYTES_MAX * config.voters.len()
            }
        }
    }

    /// `size_bytes` of an entry carrying a command of `command_bytes`.
    pub fn command_size_bytes(command_bytes: usize) -> usize {
        ENTRY_HEADER_BYTES_MAX + command_bytes
    }
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
            EntryPayload::Command(Vec::new()),
            EntryPayload::Command(vec![1; 200_000]),
            EntryPayload::Config(ClusterConfig::new(vec![NodeId(u64::MAX), NodeId(1 << 40)])),
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
        let new = postcard::to_allocvec(&EntryPayload::Command(data.clone())).unwrap();
        let old = postcard::to_allocvec(&OldPayload::Command(data.clone())).unwrap();
        assert_eq!(new, old);
        let back: EntryPayload = postcard::from_bytes(&old).unwrap();
        assert_eq!(back, EntryPayload::Command(data));
    }
}
