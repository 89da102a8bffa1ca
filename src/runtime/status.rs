//! A node's state as INFO and `sraft status` report it (DESIGN.md 4.6),
//! published by the Raft thread after every batch so that readers never
//! wait on it.

use crate::core::{LogIndex, NodeId, Raft, Role, Term};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: u64,
    pub role: &'static str,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit_index: LogIndex,
    pub applied_index: LogIndex,
    pub last_log_index: LogIndex,
    /// The prefix the newest snapshot replaced, and where the log starts.
    pub snapshot_index: LogIndex,
    pub snapshot_term: Term,
    pub log_first_index: LogIndex,
    /// Bytes of the newest snapshot file (0 when none).
    pub snapshot_bytes: u64,
    /// Bytes of the entries in the log (`Entry::size_bytes`).
    pub log_bytes: u64,
    /// Sub-leaders in rank order with the leader's smoothed RTT to each
    /// (leader only).
    pub subleaders: Vec<(NodeId, Option<u64>)>,
    /// This follower's own rank, while valid.
    pub subleader_rank: Option<usize>,
    /// Leader only: every other voter with the log index it is known to
    /// hold (INFO's `# Replication`, `/metrics`).
    pub followers: Vec<(NodeId, LogIndex)>,
    pub original_mode: bool,
    /// `read_index` or `lease` (DESIGN.md 3.8).
    pub read_mode: &'static str,
    /// Reads this node served under a lease since it started.
    pub lease_reads: u64,
}

impl NodeStatus {
    pub fn of(raft: &Raft) -> NodeStatus {
        NodeStatus {
            node_id: raft.id().0,
            role: role_name(raft),
            term: raft.term(),
            leader: raft.leader(),
            commit_index: raft.commit_index(),
            applied_index: raft.applied_index(),
            last_log_index: raft.last_index(),
            snapshot_index: raft.snapshot_meta().last_index,
            snapshot_term: raft.snapshot_meta().last_term,
            log_first_index: raft.log_first_index(),
            snapshot_bytes: raft.snapshot_file_bytes().unwrap_or(0),
            log_bytes: raft.log_bytes() as u64,
            subleaders: raft
                .known_subleaders()
                .iter()
                .map(|id| (*id, raft.srtt_us(*id)))
                .collect(),
            subleader_rank: raft.subleader_rank(),
            followers: followers(raft),
            original_mode: !raft.config().enable_subleader,
            read_mode: raft.config().read_mode.name(),
            lease_reads: raft.lease_reads_served(),
        }
    }
}

/// The role INFO reports: the core's, or `learner` for a member that does
/// not vote, or `joining` for a node no configuration it holds names (it
/// was started with `--join` and no leader has added it yet, DESIGN.md 8).
fn role_name(raft: &Raft) -> &'static str {
    let cluster = raft.cluster();
    if cluster.is_learner(raft.id()) {
        "learner"
    } else if !cluster.is_member(raft.id()) && raft.role() == Role::Follower {
        "joining"
    } else {
        raft.role().name()
    }
}

fn followers(raft: &Raft) -> Vec<(NodeId, LogIndex)> {
    if raft.role() != Role::Leader {
        return Vec::new();
    }
    raft.cluster()
        .voters
        .iter()
        .filter(|id| **id != raft.id())
        .filter_map(|id| raft.match_index(*id).map(|index| (*id, index)))
        .collect()
}

/// Who leads, as the Raft thread knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<NodeId>,
    pub term: Term,
    /// With no leader known: the candidate this node voted for in `term`
    /// (never itself), the likely next leader. The client port forwards
    /// to it at once, and it holds what it receives until it wins or loses
    /// (DESIGN.md 4.4), instead of every follower waiting to hear of the
    /// winner before sending.
    pub candidate: Option<NodeId>,
}

impl Leadership {
    pub fn of(raft: &Raft) -> Leadership {
        let leader = raft.leader();
        let candidate = match (leader, raft.role()) {
            (None, Role::Follower) => raft.vote().filter(|id| *id != raft.id()),
            _ => None,
        };
        Leadership {
            leader,
            term: raft.term(),
            candidate,
        }
    }
}

/// Called by the Raft thread whenever the leader it knows of, its term or
/// the candidate it voted for changes. Must not block: it runs on the Raft
/// thread.
pub type LeaderListener = Box<dyn Fn(Leadership) + Send + Sync>;

/// Who leads, as the Raft thread last published it, and the listeners told
/// when that changes: the client port's forwarder abandons requests sent to
/// a leader that is no longer one (a frozen leader never answers) and wakes
/// the requests waiting for a leader (DESIGN.md 4.4).
#[derive(Default)]
pub struct LeaderWatch {
    last: parking_lot::Mutex<Leadership>,
    listeners: parking_lot::RwLock<Vec<LeaderListener>>,
}

impl LeaderWatch {
    pub fn subscribe(&self, listener: LeaderListener) {
        self.listeners.write().push(listener);
    }

    /// Tells the listeners if `now` differs from the last call.
    pub fn publish(&self, now: Leadership) {
        {
            let mut last = self.last.lock();
            if *last == now {
                return;
            }
            *last = now;
        }
        for listener in self.listeners.read().iter() {
            listener(now);
        }
    }
}
