//! What the core hands to its caller after a batch of inputs.

use super::message::Message;
use super::types::{ClusterConfig, Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};

/// Why an election started; decides the log line and the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionKind {
    /// No leader was ever known: the cluster is starting.
    Initial,
    /// A designated sub-leader's staged timer fired (rank 0 = primary).
    SubLeader { rank: usize },
    /// A sub-leader started early: the leader's connection closed and a
    /// reconnect was refused (DESIGN.md 3.5).
    CrashHint { rank: usize },
    /// Crash fast path: a candidate that voters refused for its log handed
    /// the election to us, a voter ahead of it (DESIGN.md 3.5). `rank` is
    /// ours in the dead leader's designation, if we held one.
    HandOff { rank: Option<usize> },
    /// S-Raft mode, but no sub-leader won in time: ordinary election.
    Fallback,
    /// `--original-raft`: the ordinary randomized election.
    Original,
    /// The leader asked us to take over (TimeoutNow).
    Transfer,
}

impl ElectionKind {
    /// A promotion of a designated sub-leader (the seed's "instant promotion").
    pub fn is_promotion(self) -> bool {
        matches!(
            self,
            ElectionKind::SubLeader { .. }
                | ElectionKind::CrashHint { .. }
                | ElectionKind::HandOff { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ElectionStarted {
        term: Term,
        kind: ElectionKind,
        pre_vote: bool,
    },
    BecameLeader {
        term: Term,
        kind: ElectionKind,
        /// Time since this node last heard from the previous leader, if any:
        /// the failover time the seed reports as "Time: N ms".
        leader_silence_us: Option<u64>,
    },
    /// The leader's sub-leader ranking changed (rank order, with RTT).
    SubleadersAssigned {
        term: Term,
        ranks: Vec<(NodeId, u64)>,
    },
    /// This follower's own rank changed.
    RankChanged {
        term: Term,
        leader: NodeId,
        rank: Option<usize>,
    },
    LeaderChanged {
        term: Term,
        leader: Option<NodeId>,
    },
    SteppedDown {
        term: Term,
        reason: &'static str,
    },
    /// The runtime reported the leader gone (crash fast path).
    LeaderUnreachable {
        term: Term,
        leader: NodeId,
    },
    /// The runtime made a snapshot of this node's applied state durable
    /// (`took_us` from taking it to durable).
    SnapshotSaved {
        index: LogIndex,
        term: Term,
        file_bytes: u64,
        took_us: u64,
    },
    /// The configuration in force changed: an entry appended (by us as
    /// leader, or from our leader), one rolled back by a conflict, or a
    /// snapshot's (DESIGN.md 8).
    ConfigChanged {
        index: LogIndex,
        config: ClusterConfig,
    },
    /// A committed configuration removed this node: the runtime stops it
    /// and says so.
    RemovedSelf {
        index: LogIndex,
    },
    /// This node gave its vote (not a pre-vote) to `candidate` for `term`:
    /// a learner's log never shows one while it is a learner in every
    /// configuration (DESIGN.md 8).
    VoteGranted {
        term: Term,
        candidate: NodeId,
    },
    /// A snapshot received from the leader was installed.
    SnapshotInstalled {
        index: LogIndex,
        term: Term,
        file_bytes: u64,
    },
}

/// A read that became safe: serve it once the state machine has applied
/// through `index` (ReadIndex, Raft thesis 6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub ctx: u64,
    pub index: LogIndex,
}

/// A snapshot chunk the leader's core wants sent: the caller reads `len`
/// bytes at `offset` of its snapshot file for `meta` and sends them as an
/// `InstallSnapshot` (the core never holds snapshot bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkToSend {
    pub to: NodeId,
    pub term: Term,
    pub meta: SnapshotMeta,
    pub file_bytes: u64,
    pub offset: u64,
    pub len: usize,
}

/// A snapshot chunk a follower accepted, in order: the caller appends it to
/// the file being received; after the last one (`is_last`) it verifies and
/// makes the file durable, restores the state machine from it and reports
/// [`Raft::snapshot_installed`](super::Raft::snapshot_installed) or
/// [`Raft::snapshot_failed`](super::Raft::snapshot_failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkReceived {
    pub meta: SnapshotMeta,
    pub file_bytes: u64,
    pub offset: u64,
    pub data: Vec<u8>,
}

impl ChunkReceived {
    pub fn is_last(&self) -> bool {
        self.offset + self.data.len() as u64 == self.file_bytes
    }
}

#[derive(Clone, Debug, Default)]
pub struct Ready {
    /// Set when term, vote or commit changed: persist before the
    /// `messages_after_persist` leave.
    pub hard_state: Option<HardState>,
    /// The log was replaced by this (installed, durable) snapshot: storage
    /// must record that every stored entry is void before it persists
    /// `hard_state` and `entries` of this Ready, which continue after it.
    pub log_reset: Option<SnapshotMeta>,
    /// Entries to persist; they replace any stored entries from
    /// `entries[0].index` on.
    pub entries: Vec<Entry>,
    /// May leave at once, before the persist (a leader's Appends may go out
    /// in parallel with its own write, thesis 10.2.1).
    pub messages: Vec<Message>,
    /// Must leave only after `hard_state` and `entries` are durable: vote
    /// grants and append acknowledgements (thesis 3.8).
    pub messages_after_persist: Vec<Message>,
    /// Committed entries to apply, in order.
    pub committed: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub chunks_to_send: Vec<ChunkToSend>,
    pub chunks_received: Vec<ChunkReceived>,
    /// Reads that can no longer be served here (leadership lost).
    pub reads_dropped: Vec<u64>,
    pub events: Vec<Event>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.log_reset.is_none()
            && self.entries.is_empty()
            && self.chunks_to_send.is_empty()
            && self.chunks_received.is_empty()
            && self.messages.is_empty()
            && self.messages_after_persist.is_empty()
            && self.committed.is_empty()
            && self.read_states.is_empty()
            && self.reads_dropped.is_empty()
            && self.events.is_empty()
    }
}
