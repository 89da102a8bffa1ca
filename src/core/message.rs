//! Messages between Raft nodes. The transport frames them with postcard.

use super::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};
use serde::{Deserialize, Serialize};

/// Sub-leader ranks named by a leader. A follower honours them only while the
/// scope (term, leader, configuration) they were named in is unchanged
/// (DESIGN.md 3.2): the term and leader are the enclosing message's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Designation {
    /// Index of the configuration entry the ranks were computed under.
    pub config_index: LogIndex,
    /// Sub-leaders in rank order: `ranks[0]` is the primary.
    pub ranks: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term, or for a PreVote the term it would campaign in.
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Thesis 9.6: would you vote for me at `term`? Changes no state.
    PreVote {
        last_index: LogIndex,
        last_term: Term,
    },
    PreVoteReply {
        granted: bool,
        /// Refused only for leader stickiness (thesis 4.2.3): the voter
        /// heard from a live leader too recently, and would otherwise have
        /// granted. A refused primary then keeps its rank and asks again.
        sticky: bool,
    },
    Vote {
        last_index: LogIndex,
        last_term: Term,
        /// Set for a leadership transfer (TimeoutNow): voters ignore their
        /// leader stickiness, because the leader itself asked for this.
        transfer: bool,
    },
    VoteReply {
        granted: bool,
    },
    Append {
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
        /// Leader's clock at send time, echoed for RTT (DESIGN.md 3.1).
        sent_at_us: u64,
    },
    AppendReply {
        /// Accepted: the follower's log matches the leader's through `index`.
        /// Rejected: `index` is the `prev_index` that did not match.
        success: bool,
        index: LogIndex,
        /// On rejection, where the leader should look for the match
        /// (the follower's last index or an earlier index of `hint_term`).
        hint_index: LogIndex,
        hint_term: Term,
        sent_at_us: u64,
    },
    Heartbeat {
        /// min(follower's match, leader's commit): never past what the
        /// follower is known to hold.
        commit: LogIndex,
        sent_at_us: u64,
        /// ReadIndex round this heartbeat confirms leadership for (0: none).
        read_round: u64,
        designation: Option<Designation>,
    },
    HeartbeatReply {
        sent_at_us: u64,
        read_round: u64,
        /// Set when the follower's log ends (at this index) before the
        /// heartbeat's commit index, which never exceeds what the follower
        /// acknowledged: it lost acknowledged entries (its data dir was
        /// wiped or restored from a backup). The leader probes it again
        /// instead of waiting for a write that may never come.
        log_lost: Option<LogIndex>,
    },
    /// Leadership transfer: start an election now, skipping PreVote.
    TimeoutNow,
    /// One chunk of the snapshot file for `meta` (Raft paper Figure 13,
    /// chunked): the bytes at `offset` of a file of `file_bytes`. Sent when
    /// the follower needs entries the leader compacted away.
    InstallSnapshot {
        meta: SnapshotMeta,
        file_bytes: u64,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The follower holds the first `next_offset` bytes of that snapshot's
    /// file. `rejected`: a chunk did not start there (lost or reordered),
    /// so the leader resends from `next_offset`. A finished install is
    /// acknowledged with an `AppendReply` instead, as a match.
    InstallSnapshotReply {
        snapshot_index: LogIndex,
        snapshot_term: Term,
        next_offset: u64,
        rejected: bool,
    },
    /// Crash fast path (DESIGN.md 3.5): the sender's pre-vote for term + 1
    /// was refused for its log by a majority, counting `leader`, whose
    /// process is gone; the receiver refused it for its log, so holds
    /// entries the sender lacks, and should campaign now. A hint, like the
    /// crash hint itself: it starts an ordinary PreVote + RequestVote.
    HandOff {
        leader: NodeId,
    },
}

impl MessageBody {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteReply { .. } => "PreVoteReply",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteReply { .. } => "VoteReply",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendReply { .. } => "AppendReply",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatReply { .. } => "HeartbeatReply",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::InstallSnapshotReply { .. } => "InstallSnapshotReply",
            MessageBody::HandOff { .. } => "HandOff",
        }
    }
}
