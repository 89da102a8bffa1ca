//! The Raft node: state, public inputs, the Ready/persisted cycle and role
//! transitions. Message handlers live in election.rs, replication.rs,
//! read.rs and subleader.rs, as further `impl Raft` blocks.

use super::config::RaftConfig;
use super::detector::HeartbeatGaps;
use super::election::HeldPreVote;
use super::log::RaftLog;
use super::membership::Departing;
use super::message::{Message, MessageBody};
use super::progress::Progress;
use super::read::{Lease, ReadQueue};
use super::ready::{ElectionKind, Event, Ready};
use super::types::{
    ClusterConfig, Entry, EntryPayload, HardState, LogIndex, NodeId, RestoredState, SnapshotMeta,
    Term,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    /// The names INFO reports (DESIGN.md 4.6).
    pub fn name(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// Only the leader accepts proposals; `leader` is the best guess.
    NotLeader { leader: Option<NodeId> },
    /// A leadership transfer is under way (thesis 3.10: stop accepting).
    TransferInProgress,
    /// The entry would exceed `entry_bytes_max`: it could never be sent or
    /// stored within the limits (DESIGN.md 7). Refused on every node.
    TooLarge {
        entry_bytes: usize,
        entry_bytes_max: usize,
    },
    /// The leader's uncommitted entries would exceed
    /// `uncommitted_bytes_max` (etcd's ErrProposalDropped): retry once
    /// commits catch up.
    Busy {
        uncommitted_bytes: usize,
        uncommitted_bytes_max: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferError {
    NotLeader,
    UnknownTarget(NodeId),
    AlreadyLeader,
    /// No other voter to hand over to (a one-node cluster).
    NoTarget,
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::NotLeader => f.write_str("this node is not the leader"),
            TransferError::UnknownTarget(id) => {
                write!(f, "node {id} is not a voter of the cluster")
            }
            TransferError::AlreadyLeader => f.write_str("the target already leads"),
            TransferError::NoTarget => f.write_str("there is no other voter to hand over to"),
        }
    }
}

/// A rank a follower was given, valid only within its scope (DESIGN.md 3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RankScope {
    pub term: Term,
    pub leader: NodeId,
    pub config_index: LogIndex,
    pub rank: usize,
}

pub struct Raft {
    pub(super) id: NodeId,
    pub(super) config: RaftConfig,
    pub(super) rng: StdRng,
    pub(super) now_us: u64,

    // Persistent state (Raft paper Figure 2).
    pub(super) term: Term,
    pub(super) vote: Option<NodeId>,
    pub(super) log: RaftLog,
    /// The latest configuration in the log, and where it is.
    pub(super) cluster: ClusterConfig,
    pub(super) cluster_index: LogIndex,
    /// The index of the latest configuration in the log (or snapshot) that
    /// names this node: a later committed one without it is a removal. A
    /// node that is joining has none; one whose addition was truncated
    /// away has none either (simulator membership seed 656).
    pub(super) member_at: Option<LogIndex>,
    /// `Event::RemovedSelf` was emitted for the configuration in force.
    pub(super) removed_reported: bool,

    pub(super) role: Role,
    pub(super) leader: Option<NodeId>,
    pub(super) ever_had_leader: bool,
    pub(super) election_deadline_us: u64,
    /// Candidate: when voters that have not answered are asked again.
    pub(super) vote_resend_at_us: u64,
    pub(super) election_kind: ElectionKind,
    pub(super) last_leader_contact_us: Option<u64>,
    /// The leader whose process the runtime told us is gone (a crash
    /// hint, DESIGN.md 3.5): no stickiness, and it answers no pre-vote.
    pub(super) lost_leader: Option<NodeId>,
    /// Crash fast path in progress (`CrashHint` for our rank, or
    /// `HandOff`), with retries left (DESIGN.md 3.5).
    pub(super) crash_path: Option<ElectionKind>,
    pub(super) crash_retries_left: u64,
    /// Pre-votes we refused only for stickiness, by candidate: answered
    /// again when a crash hint ends the stickiness (DESIGN.md 3.5).
    pub(super) held_pre_votes: BTreeMap<NodeId, HeldPreVote>,
    /// A hand-off that came before our own crash hint: (term, the leader
    /// it says is gone, the candidate that sent it).
    pub(super) pending_hand_off: Option<(Term, NodeId, NodeId)>,
    pub(super) votes: BTreeMap<NodeId, bool>,
    /// Pre-vote refusals of this round that were only for stickiness.
    pub(super) sticky_refusals: BTreeSet<NodeId>,
    /// Lease mode: until this time (our clock) we grant no vote or
    /// pre-vote, except for a leadership transfer, and do not campaign:
    /// the promise a lease rests on (DESIGN.md 3.8). No hint shortens it.
    pub(super) promise_until_us: u64,

    // Leader state.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    pub(super) heartbeat_deadline_us: u64,
    pub(super) check_quorum_deadline_us: u64,
    pub(super) append_pending: bool,
    pub(super) transfer: Option<(NodeId, u64)>,
    pub(super) designation: Vec<NodeId>,
    /// Leader: no re-ranking for speed alone before this time (DESIGN.md
    /// 3.2).
    pub(super) rerank_due_us: u64,
    /// Leader: who has beaten the ranks at every re-ranking, and since
    /// when (DESIGN.md 3.2; `None` inside: a lower rank beat a higher one).
    pub(super) challenge: Option<(Option<NodeId>, u64)>,
    /// Nodes removed from the configuration that still get the log until
    /// they know (DESIGN.md 8).
    pub(super) departing: BTreeMap<NodeId, Departing>,
    /// Addresses of members the configuration has none for, from the
    /// runtime (`set_addr_hints`).
    pub(super) addr_hints: BTreeMap<NodeId, super::types::MemberAddrs>,
    pub(super) reads: ReadQueue,
    /// Lease mode: what the leader's lease rests on (DESIGN.md 3.8).
    pub(super) lease: Lease,
    /// `size_bytes` of the commands this leader appended in its term and
    /// has not committed yet (etcd's uncommittedSize); bounded by
    /// `uncommitted_bytes_max`.
    pub(super) uncommitted_bytes: usize,

    // Follower's sub-leader rank.
    pub(super) rank: Option<RankScope>,
    /// Follower: the ranks its leader last named, with the (term, leader)
    /// they were named in; reported by INFO, never acted on.
    pub(super) heard_designation: Option<(Term, NodeId, Vec<NodeId>)>,
    /// Follower: heartbeat gaps of the leader of (term, leader), for the
    /// adaptive primary timeout (DESIGN.md 3.3).
    pub(super) heartbeat_gaps: (Term, NodeId, HeartbeatGaps),

    /// The newest durable snapshot file the runtime can send chunks of,
    /// with its length.
    pub(super) snapshot_file: Option<(SnapshotMeta, u64)>,
    /// Follower: the snapshot transfer under way.
    pub(super) receiving: Option<Receiving>,

    pub(super) out: Ready,
    pub(super) last_hard_state: HardState,
}

/// A follower's snapshot transfer: from which leader (of the current
/// term), and how much of the file it holds in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Receiving {
    pub leader: NodeId,
    pub term: Term,
    pub meta: SnapshotMeta,
    pub file_bytes: u64,
    pub next_offset: u64,
    /// When a chunk that did not start at `next_offset` was last answered
    /// with a rejection: the chunks sent with it would only repeat it (and
    /// make the leader resend the file once per chunk), so they get none
    /// for a heartbeat interval. After that a rejection is answered again:
    /// the leader's stall timer resends what it believes we hold, and if
    /// our only rejection was lost (we restarted mid-transfer and expect
    /// offset 0), that resend must learn where we stand.
    pub rejected_at_us: Option<u64>,
}

impl Receiving {
    pub fn leader_is_current(&self, term: Term, leader: Option<NodeId>) -> bool {
        self.term == term && leader == Some(self.leader)
    }

    /// Every byte arrived; the runtime is installing it.
    pub fn is_complete(&self) -> bool {
        self.next_offset == self.file_bytes
    }
}

impl Raft {
    /// A node restarting from `restored` (or starting fresh), at time `now_us`
    /// of its monotonic clock, with its own `seed` for election timeouts.
    pub fn new(
        id: NodeId,
        config: RaftConfig,
        restored: RestoredState,
        seed: u64,
        now_us: u64,
    ) -> Raft {
        config
            .validate()
            .expect("RaftConfig is validated by the caller");
        let RestoredState {
            hard_state,
            snapshot,
            entries,
        } = restored;
        let (mut cluster, mut cluster_index) = (snapshot.config.clone(), snapshot.last_index);
        // Some configuration this node holds names it. Not "it has a log":
        // a learner gets entries before the one that adds it (simulator,
        // membership seed 56). A removal whose only witness was compacted
        // into the snapshot goes unreported after a restart.
        let mut member_at = cluster.is_member(id).then_some(cluster_index);
        for entry in &entries {
            if let Some(c) = entry.payload.config() {
                if c.is_member(id) {
                    member_at = Some(entry.index);
                }
                (cluster, cluster_index) = (c, entry.index);
            }
        }
        let log = RaftLog::new(snapshot, entries, hard_state.commit);
        let mut raft = Raft {
            id,
            config,
            rng: StdRng::seed_from_u64(seed),
            now_us,
            term: hard_state.term,
            vote: hard_state.vote,
            last_hard_state: HardState {
                commit: log.commit(),
                ..hard_state
            },
            log,
            cluster,
            cluster_index,
            member_at,
            removed_reported: false,
            role: Role::Follower,
            leader: None,
            ever_had_leader: false,
            election_deadline_us: 0,
            vote_resend_at_us: u64::MAX,
            election_kind: ElectionKind::Initial,
            last_leader_contact_us: None,
            lost_leader: None,
            crash_path: None,
            crash_retries_left: 0,
            held_pre_votes: BTreeMap::new(),
            pending_hand_off: None,
            votes: BTreeMap::new(),
            sticky_refusals: BTreeSet::new(),
            promise_until_us: 0,
            progress: BTreeMap::new(),
            heartbeat_deadline_us: 0,
            check_quorum_deadline_us: 0,
            append_pending: false,
            transfer: None,
            designation: Vec::new(),
            rerank_due_us: 0,
            challenge: None,
            departing: BTreeMap::new(),
            addr_hints: BTreeMap::new(),
            reads: ReadQueue::default(),
            lease: Lease::default(),
            uncommitted_bytes: 0,
            rank: None,
            heard_designation: None,
            heartbeat_gaps: (Term(0), id, HeartbeatGaps::default()),
            snapshot_file: None,
            receiving: None,
            out: Ready::default(),
        };
        // A restart forgets the promises made before it: keep them for a
        // whole promise from boot, which is later than any of them ends
        // (DESIGN.md 3.8).
        raft.extend_promise();
        raft.reset_election_timer();
        raft
    }

    // ---- Accessors -------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }
    /// The latest time the core was handed.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> LogIndex {
        self.log.commit()
    }
    pub fn applied_index(&self) -> LogIndex {
        self.log.applied()
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }
    pub fn entry(&self, index: LogIndex) -> Option<&super::types::Entry> {
        self.log.entry(index)
    }
    pub fn cluster(&self) -> &ClusterConfig {
        &self.cluster
    }
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }
    pub fn election_deadline_us(&self) -> u64 {
        self.election_deadline_us
    }
    /// Leader: the current sub-leaders in rank order.
    pub fn subleaders(&self) -> &[NodeId] {
        &self.designation
    }

    /// Sub-leaders in rank order as this node knows them: its own ranking
    /// if it leads, else what its current leader last named.
    pub fn known_subleaders(&self) -> &[NodeId] {
        if self.role == Role::Leader {
            return &self.designation;
        }
        match &self.heard_designation {
            Some((term, leader, ranks)) if *term == self.term && Some(*leader) == self.leader => {
                ranks
            }
            _ => &[],
        }
    }
    /// Leader: smoothed RTT to `peer`, when measured.
    /// This follower's sub-leader rank, while its scope is current.
    pub fn subleader_rank(&self) -> Option<usize> {
        self.valid_rank()
    }

    /// Leader: bytes of its uncommitted commands (0 on other nodes).
    pub fn uncommitted_bytes(&self) -> usize {
        self.uncommitted_bytes
    }

    pub fn srtt_us(&self, peer: NodeId) -> Option<u64> {
        self.progress.get(&peer).and_then(|pr| pr.srtt_us)
    }
    /// Leader: how far `peer` is known to match our log.
    pub fn match_index(&self, peer: NodeId) -> Option<LogIndex> {
        self.progress.get(&peer).map(|pr| pr.match_index)
    }

    /// The time at which `tick` next has work to do.
    pub fn next_deadline_us(&self) -> u64 {
        match self.role {
            Role::Leader => {
                let transfer = self.transfer.map_or(u64::MAX, |(_, t)| t);
                self.heartbeat_deadline_us
                    .min(self.check_quorum_deadline_us)
                    .min(transfer)
            }
            Role::Candidate => self.election_deadline_us.min(self.vote_resend_at_us),
            _ => self.election_deadline_us,
        }
    }

    // ---- Inputs ----------------------------------------------------------

    /// Moves the clock and fires due timers.
    pub fn tick(&mut self, now_us: u64) {
        self.set_now(now_us);
        if self.role == Role::Leader {
            self.tick_leader();
        } else if self.now_us >= self.election_deadline_us {
            self.on_election_timeout();
        } else if self.role == Role::Candidate && self.now_us >= self.vote_resend_at_us {
            self.ask_again();
        }
        self.check_invariants();
    }

    /// A message from a peer.
    pub fn step(&mut self, now_us: u64, msg: Message) {
        self.set_now(now_us);
        if msg.to != self.id {
            log::warn!("node {}: dropping message addressed to {}", self.id, msg.to);
            return;
        }
        // Thesis 4.1: servers process requests without consulting their
        // configuration. A node that is joining knows no member yet; and a
        // voter whose log lacks the candidate's addition must still vote:
        // dropping vote requests from non-members deadlocked simulator
        // membership seed 327 (an empty, newly promoted voter the only
        // missing vote). Removed servers cannot disrupt a live leader:
        // PreVote and stickiness (thesis 4.2.3, DESIGN.md 3.4).
        if msg.from == self.id {
            log::warn!("node {}: dropping {} from itself", self.id, msg.body.kind());
            return;
        }
        if msg.term > self.term && !self.accept_higher_term(&msg) {
            return;
        }
        if msg.term < self.term {
            self.on_stale_term(msg);
            return;
        }
        self.dispatch(msg);
        self.check_invariants();
    }

    /// A client command. Returns where it will land: it is committed if the
    /// entry applied at that index has that term, dropped otherwise.
    ///
    /// Refused at once, never queued, when the entry is too large for the
    /// limits or the leader holds too many uncommitted bytes (DESIGN.md 7).
    pub fn propose(
        &mut self,
        now_us: u64,
        command: Vec<u8>,
    ) -> Result<(LogIndex, Term), ProposeError> {
        self.set_now(now_us);
        let entry_bytes = Entry::command_size_bytes(command.len());
        let limits = &self.config.limits;
        if entry_bytes > limits.entry_bytes_max {
            return Err(ProposeError::TooLarge {
                entry_bytes,
                entry_bytes_max: limits.entry_bytes_max,
            });
        }
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        // etcd's increaseUncommittedSize: with nothing uncommitted, any entry
        // that fits entry_bytes_max is accepted, so one large entry can
        // always make progress.
        let uncommitted_bytes_max = self.config.limits.uncommitted_bytes_max;
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + entry_bytes > uncommitted_bytes_max
        {
            return Err(ProposeError::Busy {
                uncommitted_bytes: self.uncommitted_bytes,
                uncommitted_bytes_max,
            });
        }
        self.uncommitted_bytes += entry_bytes;
        let index = self
            .log
            .append_new(self.term, EntryPayload::Command(command.into()));
        // Sent at the next ready(): many proposals share one Append.
        self.append_pending = true;
        Ok((index, self.term))
    }

    /// Asks the leader to hand over to `target` (thesis 3.10).
    pub fn transfer_leadership(
        &mut self,
        now_us: u64,
        target: NodeId,
    ) -> Result<(), TransferError> {
        self.set_now(now_us);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target == self.id {
            return Err(TransferError::AlreadyLeader);
        }
        if !self.cluster.is_voter(target) {
            return Err(TransferError::UnknownTarget(target));
        }
        let deadline = self.now_us + self.config.follower_timeout_ms_min * 1000;
        self.transfer = Some((target, deadline));
        log::info!("node {}: transferring leadership to {target}", self.id);
        self.maybe_send_timeout_now(target);
        self.send_append(target);
        Ok(())
    }

    /// Whom a transfer without a named target goes to: the same node a
    /// removed leader hands over to (`handover_target`, DESIGN.md 8).
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.handover_target()
    }

    /// Crash fast path (DESIGN.md 3.5): the runtime saw `node`'s connection
    /// close and a reconnect refused. A hint that starts an election early,
    /// never authority to lead.
    pub fn leader_unreachable(&mut self, now_us: u64, node: NodeId) {
        self.set_now(now_us);
        if !self.config.enable_subleader || self.role != Role::Follower || self.leader != Some(node)
        {
            return;
        }
        self.lost_leader = Some(node);
        self.out.events.push(Event::LeaderUnreachable {
            term: self.term,
            leader: node,
        });
        self.answer_held_pre_votes();
        if let Some((term, leader, from)) = self.pending_hand_off.take()
            && term == self.term
            && leader == node
        {
            self.take_hand_off(from);
        } else if let Some(rank) = self.valid_rank() {
            self.start_crash_path(ElectionKind::CrashHint { rank });
            let delay_us = rank as u64 * self.config.crash_stagger_ms * 1000;
            self.election_deadline_us = self.election_deadline_us.min(self.now_us + delay_us);
            if delay_us == 0 {
                self.campaign(ElectionKind::CrashHint { rank });
            }
        }
        self.check_invariants();
    }

    // ---- Snapshots (DESIGN.md 5) ----------------------------------------

    /// The prefix the newest snapshot replaced (index 0 when none).
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        self.log.snapshot_meta()
    }

    /// The first index still in the log.
    pub fn log_first_index(&self) -> LogIndex {
        self.log.first_index()
    }

    /// Bytes of the entries in the log (`Entry::size_bytes`).
    pub fn log_bytes(&self) -> usize {
        self.log.bytes()
    }

    /// Bytes of the newest snapshot file the runtime reported.
    pub fn snapshot_file_bytes(&self) -> Option<u64> {
        self.snapshot_file.as_ref().map(|(_, bytes)| *bytes)
    }

    /// What a snapshot of the state machine as applied now must record:
    /// the applied index, its term and the configuration in force there.
    /// None when nothing was applied since the last snapshot.
    pub fn snapshot_meta_at_applied(&self) -> Option<SnapshotMeta> {
        let index = self.log.applied();
        let base = self.log.snapshot_meta();
        if index <= base.last_index {
            return None;
        }
        let config = (base.last_index.0 + 1..=index.0)
            .rev()
            .find_map(|i| self.log.entry(LogIndex(i))?.payload.config())
            .unwrap_or_else(|| base.config.clone());
        Some(SnapshotMeta {
            last_index: index,
            last_term: self.log.term_at(index).expect("applied entries are held"),
            config,
        })
    }

    /// Whether the snapshot policy asks for a snapshot of the applied state
    /// now: `snapshot_entries` applied since the last one, or the log at
    /// `snapshot_log_bytes`.
    ///
    /// Each node's thresholds are stretched by its own share (0 to 7/16,
    /// by node id): nodes that apply the same log would otherwise all
    /// serialize and write their snapshots in the same second, and on a
    /// small host that burst stalled a leader's heartbeats past the
    /// primary's timeout (EXPERIMENTS.md 10: both spurious elections of a
    /// five-minute soak came at the first snapshot, index 100,000).
    pub fn snapshot_due(&self) -> bool {
        let since = self.log.applied().0 - self.log.snapshot_meta().last_index.0;
        since > 0
            && (since >= stagger(self.config.snapshot_entries, self.id)
                || self.log.bytes() as u64 >= stagger(self.config.snapshot_log_bytes, self.id))
    }

    /// The runtime made a snapshot file of `file_bytes` for `meta` durable:
    /// one of our own state (`meta.last_index` <= applied), or one found at
    /// start-up. The log drops what it covers, and followers that need
    /// compacted entries get this file.
    pub fn snapshot_saved(&mut self, now_us: u64, meta: SnapshotMeta, file_bytes: u64) {
        self.set_now(now_us);
        let base = self.log.snapshot_meta().last_index;
        if meta.last_index > base {
            self.log.compact(meta.clone());
        }
        if self
            .snapshot_file
            .as_ref()
            .is_none_or(|(m, _)| m.last_index < meta.last_index)
            && meta.last_index >= self.log.snapshot_meta().last_index
        {
            self.snapshot_file = Some((meta, file_bytes));
        }
        self.check_invariants();
    }

    /// The runtime made the received snapshot file for `meta` durable and
    /// restored the state machine from it (after the last chunk came in
    /// `Ready::chunks_received`). The log now starts after it.
    pub fn snapshot_installed(&mut self, now_us: u64, meta: SnapshotMeta, file_bytes: u64) {
        self.set_now(now_us);
        // The runtime installs synchronously after the last chunk (no input
        // comes between), so the transfer is still ours.
        let receiving = self.receiving.take().filter(|r| r.meta == meta);
        let kept = self.log.install_snapshot(meta.clone());
        if !kept {
            self.out.log_reset = Some(meta.clone());
        }
        self.config_after_install(kept);
        self.snapshot_file = Some((meta.clone(), file_bytes));
        if let Some(receiving) = receiving.filter(|r| r.leader_is_current(self.term, self.leader)) {
            // Held until the write that records the reset (if any) and the
            // new commit index is durable, as every acknowledgement is.
            let ack = MessageBody::AppendReply {
                success: true,
                index: meta.last_index,
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: 0,
            };
            self.send(receiving.leader, ack);
        }
        self.check_invariants();
    }

    /// The received snapshot file for `meta` was bad (its CRC, its length)
    /// or could not be written: start the transfer over.
    pub fn snapshot_failed(&mut self, now_us: u64, meta: &SnapshotMeta) {
        self.set_now(now_us);
        let Some(receiving) = self.receiving.take_if(|r| r.meta == *meta) else {
            return;
        };
        log::warn!(
            "node {}: snapshot {} from {} failed; asking for it again",
            self.id,
            meta.last_index,
            receiving.leader
        );
        if receiving.leader_is_current(self.term, self.leader) {
            let reply = MessageBody::InstallSnapshotReply {
                snapshot_index: meta.last_index,
                snapshot_term: meta.last_term,
                next_offset: 0,
                rejected: true,
            };
            self.send(receiving.leader, reply);
        }
    }

    // ---- Output ----------------------------------------------------------

    pub fn has_ready(&self) -> bool {
        !self.out.is_empty()
            || self.log.has_unpersisted()
            || self.log.has_committed_to_apply()
            || self.hard_state() != self.last_hard_state
            || (self.role == Role::Leader && (self.append_pending || self.reads.needs_flush()))
            || self.membership_action_due()
    }

    /// Everything produced since the last call. The caller starts persisting
    /// `hard_state` and `entries` (in the order of `ready()` calls), sends
    /// `messages` at once, holds `messages_after_persist` until that write is
    /// durable, and applies `committed`. When the write is durable it reports
    /// it with [`Raft::persisted`]: the core keeps stepping in the meantime
    /// (Raft thesis 10.2.1: the leader writes its log in parallel with
    /// replication; etcd-io/raft's asynchronous storage writes).
    pub fn ready(&mut self) -> Ready {
        self.membership_actions();
        if self.role == Role::Leader {
            if self.append_pending {
                self.broadcast_append();
            }
            self.flush_reads();
        }
        self.drop_overtaken_snapshot();
        let mut rd = std::mem::take(&mut self.out);
        rd.entries = self.log.take_unpersisted();
        let hs = self.hard_state();
        if hs != self.last_hard_state {
            rd.hard_state = Some(hs);
            self.last_hard_state = hs;
        }
        rd.committed = self.log.take_committed(self.config.limits.apply_bytes_max);
        self.check_invariants();
        rd
    }

    /// A received snapshot that the commit index reached before the
    /// driver could install it: a new leader's Appends, sent before it
    /// fell back to a snapshot for us, can arrive together with the
    /// snapshot's last chunk, and one of them after it in the same batch
    /// can match our log and carry the commit past the snapshot. We then
    /// hold all of it; installing it would take the state machine back
    /// behind the entries this Ready applies. Its chunks are not handed
    /// out and the transfer ends; the Append's reply tells the leader our
    /// match, which ends its side (found on real processes: a follower
    /// panicked "installing snapshot 225008 at or below commit 225130").
    fn drop_overtaken_snapshot(&mut self) {
        if self.config.mutations.install_overtaken_snapshot {
            return;
        }
        let commit = self.log.commit();
        self.out
            .chunks_received
            .retain(|chunk| chunk.meta.last_index > commit);
        if self
            .receiving
            .as_ref()
            .is_some_and(|r| r.meta.last_index <= commit)
        {
            self.receiving = None;
        }
    }

    /// The caller's storage made the entries through `index` durable, the
    /// last of them with `term`. A report for entries that a later conflict
    /// replaced (the term no longer matches) is ignored: the write of their
    /// replacements will report in its turn.
    pub fn persisted(&mut self, now_us: u64, index: LogIndex, term: Term) {
        self.set_now(now_us);
        if index <= self.log.persisted() || self.log.term_at(index) != Some(term) {
            return;
        }
        self.log.mark_persisted(index);
        if self.role == Role::Leader {
            // Our own write counts toward the commit quorum only now.
            self.maybe_commit();
        }
        self.check_invariants();
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.commit(),
        }
    }

    // ---- Internals shared by the handlers --------------------------------

    pub(super) fn set_now(&mut self, now_us: u64) {
        // A monotonic clock never goes back; tolerate equal times.
        self.now_us = self.now_us.max(now_us);
    }

    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    pub(super) fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        if matches!(body, MessageBody::TimeoutNow) {
            // Voters grant a transfer's votes inside their promise: no
            // lease read once the target may campaign (DESIGN.md 3.8).
            self.lease.revoke();
        }
        let after_persist = matches!(
            body,
            MessageBody::Vote { .. }
                | MessageBody::VoteReply { .. }
                | MessageBody::AppendReply { .. }
        );
        let msg = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if after_persist {
            self.out.messages_after_persist.push(msg);
        } else {
            self.out.messages.push(msg);
        }
    }

    pub(super) fn peers(&self) -> Vec<NodeId> {
        self.cluster
            .voters
            .iter()
            .copied()
            // Votes are asked of voters only; the log goes to
            // `replication_targets`.
            .filter(|v| *v != self.id)
            .collect()
    }

    pub(super) fn random_between_us(&mut self, min_us: u64, max_us: u64) -> u64 {
        self.rng.random_range(min_us..=max_us)
    }

    pub(super) fn set_leader(&mut self, leader: Option<NodeId>) {
        if leader != self.leader {
            self.leader = leader;
            self.out.events.push(Event::LeaderChanged {
                term: self.term,
                leader,
            });
        }
        if leader.is_some() {
            self.ever_had_leader = true;
        }
    }

    /// Follower of `leader` in `term` (which may be our current term).
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "term={term} current={}", self.term);
        if term > self.term {
            self.term = term;
            self.vote = None;
            // A transfer belongs to its leader's term (DESIGN.md 5).
            self.receiving = None;
        }
        // Also at an equal term: a candidate kept its last term's
        // acknowledgements, which this term's leader may now overwrite.
        self.drop_stale_promises();
        if self.role == Role::Leader {
            self.out.events.push(Event::SteppedDown {
                term: self.term,
                reason: "new term or lost quorum",
            });
            self.leave_leadership();
        }
        self.role = Role::Follower;
        self.votes.clear();
        self.set_leader(leader);
        self.reset_election_timer();
    }

    /// Promises of a term we just left that still wait in this batch for
    /// the write they depend on are dropped. The Raft thread steps a whole
    /// batch before one Ready (DESIGN.md 2.3), and that Ready writes only
    /// the newest state. A grant for term T leaving after a durable T+1
    /// would be harmless (T+1 on disk rules out another vote in T), but an
    /// acknowledgement of an older leader's entries can leave after a
    /// write in which a newer leader's Append replaced them: neither would
    /// find its premise durable, the rule every such message keeps.
    /// Dropped, they are lost messages of a term that is over here.
    ///
    /// A follower drops them all: its new leader may overwrite the entries
    /// an older acknowledgement names.
    pub(super) fn drop_stale_promises(&mut self) {
        let term = self.term;
        self.out
            .messages_after_persist
            .retain(|msg| msg.term >= term);
    }

    /// As [`Self::drop_stale_promises`], for a node that starts an election:
    /// a candidate changes no entry, so it keeps its acknowledgements, and
    /// drops only its vote requests and grants, until it follows a leader.
    pub(super) fn drop_stale_votes(&mut self) {
        let term = self.term;
        self.out
            .messages_after_persist
            .retain(|msg| msg.term >= term || matches!(msg.body, MessageBody::AppendReply { .. }));
    }

    /// A removed leader whose removal committed hands over (TimeoutNow sent
    /// already) and stops leading (DESIGN.md 8).
    pub(super) fn step_down_removed(&mut self) {
        assert_eq!(self.role, Role::Leader, "only a leader hands over");
        self.out.events.push(Event::SteppedDown {
            term: self.term,
            reason: "removed from the configuration",
        });
        self.leave_leadership();
        self.role = Role::Follower;
        self.votes.clear();
        self.set_leader(None);
        self.reset_election_timer();
    }

    fn leave_leadership(&mut self) {
        self.progress.clear();
        self.departing.clear();
        self.transfer = None;
        self.designation.clear();
        self.challenge = None;
        self.append_pending = false;
        self.uncommitted_bytes = 0;
        let dropped = self.reads.drain_all();
        self.out.reads_dropped.extend(dropped);
    }

    pub(super) fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.log.check_invariants();
        self.check_membership_invariants();
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.id), "leader field of a leader");
                assert_eq!(self.vote, Some(self.id), "a leader voted for itself");
                assert_eq!(self.crash_path, None, "a leader on the crash path");
                let counted =
                    self.uncommitted_bytes_between(self.log.commit(), self.log.last_index());
                assert_eq!(
                    self.uncommitted_bytes,
                    counted,
                    "uncommitted_bytes={} but own-term commands after commit={} hold {counted}",
                    self.uncommitted_bytes,
                    self.log.commit()
                );
            }
            _ => {
                assert!(self.progress.is_empty(), "progress kept by a non-leader");
                assert_eq!(
                    self.uncommitted_bytes, 0,
                    "uncommitted bytes of a non-leader"
                );
            }
        }
    }

    /// Bytes counted in `uncommitted_bytes` for the entries in
    /// (`after`, `through`]: this term's commands. A leader appends only in
    /// its own term and never truncates, so these are exactly its proposals.
    pub(super) fn uncommitted_bytes_between(&self, after: LogIndex, through: LogIndex) -> usize {
        (after.0 + 1..=through.0)
            .filter_map(|i| self.log.entry(LogIndex(i)))
            .filter(|entry| entry.term == self.term)
            .filter(|entry| matches!(entry.payload, EntryPayload::Command(_)))
            .map(Entry::size_bytes)
            .sum()
    }
}

/// `threshold` stretched by node `id`'s share of it: 0, 5/16, 2/16, 7/16,
/// 4/16, 1/16, 6/16, 3/16 for ids 0 to 7, and so on (5 is prime to 8, so
/// neighbouring ids land far apart).
fn stagger(threshold: u64, id: NodeId) -> u64 {
    let share = (id.0 % 8) * 5 % 8;
    threshold.saturating_add(threshold / 16 * share)
}
