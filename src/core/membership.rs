//! Membership changes, one server at a time (Raft thesis 4.1-4.3, with the
//! errata's rule that a leader first commits an entry of its own term), and
//! learners (DESIGN.md 8).
//!
//! A configuration takes effect on a node as soon as its entry is in the
//! node's log, committed or not, and is rolled back if a conflict truncates
//! that entry away. Only voters vote-count, commit-count and campaign;
//! learners and departing nodes only receive the log.

use super::message::MessageBody;
use super::progress::Progress;
use super::raft::{Raft, Role};
use super::ready::Event;
use super::types::{
    ClusterConfig, Entry, EntryPayload, LogIndex, MEMBER_ADDR_BYTES_MAX, MemberAddrs, NodeId, Term,
};
use std::collections::BTreeMap;
use std::fmt;

/// One change of the configuration: one server at a time, so that any
/// majority of the old voters and any majority of the new overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// A new member that receives the log but does not vote, at the given
    /// advertised addresses (empty strings when unknown).
    AddLearner { id: NodeId, addrs: MemberAddrs },
    /// A learner becomes a voter.
    Promote { id: NodeId },
    /// A voter or a learner leaves, the leader included.
    Remove { id: NodeId },
}

impl ConfChange {
    pub fn id(&self) -> NodeId {
        match self {
            ConfChange::AddLearner { id, .. }
            | ConfChange::Promote { id }
            | ConfChange::Remove { id } => *id,
        }
    }
}

/// Why a configuration change was refused; the configuration is unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChangeError {
    /// Only the leader changes the configuration; `leader` is the best guess.
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The change at `index` is not committed yet: one at a time.
    ChangeInFlight {
        index: LogIndex,
    },
    /// A new leader has not committed an entry of its term yet (thesis
    /// errata): an uncommitted change of an earlier leader may still be
    /// lost, and a change on top of it could skip the overlap.
    LeaderNotReady,
    AlreadyMember(NodeId),
    NotMember(NodeId),
    /// Only a learner can be promoted.
    NotLearner(NodeId),
    /// A configuration without voters could never elect or commit.
    LastVoter(NodeId),
    /// A leadership transfer (or the removed leader's hand-over) is under way.
    TransferInProgress,
    /// An advertised address longer than `MEMBER_ADDR_BYTES_MAX`.
    AddressTooLong {
        bytes: usize,
    },
    /// The configuration entry would exceed `entry_bytes_max`.
    TooLarge {
        entry_bytes: usize,
        entry_bytes_max: usize,
    },
}

impl fmt::Display for ConfChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfChangeError::NotLeader { leader: Some(l) } => {
                write!(f, "not the leader (the leader is node {l})")
            }
            ConfChangeError::NotLeader { leader: None } => {
                write!(f, "not the leader (no leader known)")
            }
            ConfChangeError::ChangeInFlight { index } => write!(
                f,
                "another membership change (log index {index}) is not committed yet; one at a time"
            ),
            ConfChangeError::LeaderNotReady => write!(
                f,
                "the leader has not committed an entry of its term yet; retry shortly"
            ),
            ConfChangeError::AlreadyMember(id) => write!(f, "node {id} is already a member"),
            ConfChangeError::NotMember(id) => write!(f, "node {id} is not a member"),
            ConfChangeError::NotLearner(id) => {
                write!(
                    f,
                    "node {id} is not a learner: only a learner can be promoted"
                )
            }
            ConfChangeError::LastVoter(id) => {
                write!(
                    f,
                    "node {id} is the last voter: the cluster would have none"
                )
            }
            ConfChangeError::TransferInProgress => {
                write!(f, "a leadership transfer is in progress; retry shortly")
            }
            ConfChangeError::AddressTooLong { bytes } => write!(
                f,
                "an address of {bytes} bytes is longer than {MEMBER_ADDR_BYTES_MAX}"
            ),
            ConfChangeError::TooLarge {
                entry_bytes,
                entry_bytes_max,
            } => write!(
                f,
                "the configuration entry of {entry_bytes} bytes exceeds entry_bytes_max {entry_bytes_max}"
            ),
        }
    }
}

impl std::error::Error for ConfChangeError {}

/// One member as the node sees it, for `member list` and auto-promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub addrs: MemberAddrs,
    pub voter: bool,
    /// Leader: how far the member's log is known to match (its own: its
    /// durable last index). None on other nodes.
    pub match_index: Option<LogIndex>,
}

/// Leader: a node removed from the configuration that still gets the log
/// and heartbeats until it has heard that its removal committed, so that it
/// can stop and say so (`Event::RemovedSelf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Departing {
    /// The index of the configuration that removed it.
    pub removed_at: LogIndex,
    /// When a heartbeat first told it a commit index at or past
    /// `removed_at`; a reply to that heartbeat (or a later one) ends it.
    pub told_at_us: Option<u64>,
}

/// `config` changed by `change`, or why it cannot be.
pub fn apply_change(
    config: &ClusterConfig,
    change: &ConfChange,
) -> Result<ClusterConfig, ConfChangeError> {
    let mut next = config.clone();
    match change {
        ConfChange::AddLearner { id, addrs } => {
            if config.is_member(*id) {
                return Err(ConfChangeError::AlreadyMember(*id));
            }
            let bytes = addrs.peer_addr.len().max(addrs.client_addr.len());
            if bytes > MEMBER_ADDR_BYTES_MAX {
                return Err(ConfChangeError::AddressTooLong { bytes });
            }
            next.learners.push(*id);
            next.learners.sort();
            if *addrs != MemberAddrs::default() {
                next.addrs.insert(*id, addrs.clone());
            }
        }
        ConfChange::Promote { id } => {
            if config.is_voter(*id) {
                return Err(ConfChangeError::NotLearner(*id));
            }
            if !config.is_learner(*id) {
                return Err(ConfChangeError::NotMember(*id));
            }
            next.learners.retain(|l| l != id);
            next.voters.push(*id);
            next.voters.sort();
        }
        ConfChange::Remove { id } => {
            if !config.is_member(*id) {
                return Err(ConfChangeError::NotMember(*id));
            }
            if config.voters == [*id] {
                return Err(ConfChangeError::LastVoter(*id));
            }
            next.voters.retain(|v| v != id);
            next.learners.retain(|l| l != id);
            next.addrs.remove(id);
        }
    }
    next.check_invariants();
    Ok(next)
}

impl Raft {
    // ---- Accessors ---------------------------------------------------------

    /// The index of the configuration in force (the latest in the log or
    /// the snapshot; 0 for the initial one).
    pub fn config_index(&self) -> LogIndex {
        self.cluster_index
    }

    /// Whether the configuration in force is committed (no change in flight).
    pub fn config_committed(&self) -> bool {
        self.cluster_index <= self.log.commit()
    }

    /// This node is a learner in the configuration in force.
    pub fn is_learner(&self) -> bool {
        self.cluster.is_learner(self.id)
    }

    /// Every member with its addresses; on the leader with match indexes.
    pub fn members(&self) -> Vec<MemberInfo> {
        let leader = self.role == Role::Leader;
        self.cluster
            .members()
            .into_iter()
            .map(|id| MemberInfo {
                id,
                addrs: self.cluster.addrs_of(id),
                voter: self.cluster.is_voter(id),
                match_index: match (leader, id == self.id) {
                    (false, _) => None,
                    (true, true) => Some(self.log.persisted()),
                    (true, false) => self.progress.get(&id).map(|pr| pr.match_index),
                },
            })
            .collect()
    }

    /// Leader: `id` holds everything committed and acknowledged within the
    /// primary's shortest timeout: a learner ready to be promoted without
    /// stalling commits.
    pub fn is_caught_up(&self, id: NodeId) -> bool {
        let responsive_us = self.config.primary_timeout_ms_min * 1000;
        self.role == Role::Leader
            && self.progress.get(&id).is_some_and(|pr| {
                pr.match_index >= self.log.commit()
                    && pr
                        .last_ack_us
                        .is_some_and(|t| self.now_us.saturating_sub(t) <= responsive_us)
            })
    }

    /// `id` is departing: removed from the configuration, but still sent
    /// the log until it has heard so (leader only).
    pub fn is_departing(&self, id: NodeId) -> bool {
        self.departing.contains_key(&id)
    }

    // ---- Input -------------------------------------------------------------

    /// The addresses the runtime knows of members that have none in the
    /// configuration (a static `--peers` cluster's): the next change the
    /// leader proposes records them (DESIGN.md 8).
    pub fn set_addr_hints(&mut self, hints: BTreeMap<NodeId, MemberAddrs>) {
        self.addr_hints = hints;
    }

    /// Proposes one membership change. Returns where its entry lands: the
    /// change is committed if the entry applied at that index has that
    /// term. The new configuration is in force on the leader at once.
    pub fn propose_conf_change(
        &mut self,
        now_us: u64,
        change: ConfChange,
    ) -> Result<(LogIndex, Term), ConfChangeError> {
        self.set_now(now_us);
        if self.role != Role::Leader {
            return Err(ConfChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(ConfChangeError::TransferInProgress);
        }
        // Thesis 4 errata: until an entry of this term commits, an earlier
        // leader's uncommitted change may still be overwritten, and a change
        // appended after it could pair configurations that do not overlap.
        if self.log.term_at(self.log.commit()) != Some(self.term) {
            return Err(ConfChangeError::LeaderNotReady);
        }
        if !self.config_committed() {
            return Err(ConfChangeError::ChangeInFlight {
                index: self.cluster_index,
            });
        }
        let mut next = apply_change(&self.cluster, &change)?;
        // Members of a static cluster were never given addresses in a
        // configuration; the first change records what the runtime knows of
        // them, so that a node that joins later can reach every voter.
        for id in next.members() {
            if !next.addrs.contains_key(&id)
                && let Some(addrs) = self.addr_hints.get(&id)
                && addrs.peer_addr.len().max(addrs.client_addr.len()) <= MEMBER_ADDR_BYTES_MAX
            {
                next.addrs.insert(id, addrs.clone());
            }
        }
        let payload = EntryPayload::Config(next.clone());
        let entry_bytes = Entry {
            term: self.term,
            index: LogIndex(0),
            payload: payload.clone(),
        }
        .size_bytes();
        let entry_bytes_max = self.config.limits.entry_bytes_max;
        if entry_bytes > entry_bytes_max {
            return Err(ConfChangeError::TooLarge {
                entry_bytes,
                entry_bytes_max,
            });
        }
        log::info!(
            "node {}: proposing {change:?} (voters {:?}, learners {:?})",
            self.id,
            next.voters,
            next.learners
        );
        let index = self.log.append_new(self.term, payload);
        self.adopt_config(next, index);
        self.append_pending = true;
        self.check_invariants();
        Ok((index, self.term))
    }

    // ---- Following the log -------------------------------------------------

    /// Puts `config`, found at `index`, in force (thesis 4.1: as soon as it
    /// is in the log).
    pub(super) fn adopt_config(&mut self, config: ClusterConfig, index: LogIndex) {
        if index == self.cluster_index && config == self.cluster {
            return;
        }
        log::info!(
            "node {}: configuration at index {index}: voters {:?}, learners {:?}",
            self.id,
            config.voters,
            config.learners
        );
        self.cluster = config;
        self.cluster_index = index;
        if self.cluster.is_member(self.id) {
            self.member_at = Some(index);
            self.removed_reported = false;
        } else if self.member_at.is_some_and(|at| at >= index) {
            // Rolled back past the configuration that named us: it is gone
            // (`rescan_config` looks for an older one).
            self.member_at = None;
        }
        self.out.events.push(Event::ConfigChanged {
            index,
            config: self.cluster.clone(),
        });
        if self.role == Role::Leader {
            self.leader_config_changed();
        } else if self.role != Role::Follower && !self.cluster.is_voter(self.id) {
            // Only by a snapshot, which comes from a leader of our term.
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// Follower, after entries were merged into the log: the latest
    /// configuration in it is in force, including one of the new entries,
    /// and a configuration that a conflict truncated away is rolled back.
    pub(super) fn config_after_append(&mut self, entries: &[Entry]) {
        let base = self.log.snapshot_meta().last_index;
        let intact = self.cluster_index <= base
            || self
                .log
                .entry(self.cluster_index)
                .and_then(|e| e.payload.config())
                .is_some_and(|c| c == self.cluster);
        if !intact {
            self.rescan_config();
            return;
        }
        // The entries after ours hold no configuration (ours is the latest
        // in the log), so a newer one can only be among the new entries.
        let newest = entries
            .iter()
            .rev()
            .filter(|e| e.index > self.cluster_index)
            .filter(|e| self.log.term_at(e.index) == Some(e.term))
            .find_map(|e| e.payload.config().map(|c| (c, e.index)));
        if let Some((config, index)) = newest {
            self.adopt_config(config, index);
        }
    }

    /// The latest configuration in the log, or the snapshot's. Rare: only
    /// after a conflict removed the configuration entry in force.
    fn rescan_config(&mut self) {
        let base = self.log.snapshot_meta();
        let configs: Vec<(ClusterConfig, LogIndex)> = (base.last_index.0 + 1
            ..=self.log.last_index().0)
            .filter_map(|i| {
                let entry = self.log.entry(LogIndex(i))?;
                entry.payload.config().map(|c| (c, entry.index))
            })
            .collect();
        let member_at = configs
            .iter()
            .rev()
            .find(|(c, _)| c.is_member(self.id))
            .map(|(_, i)| *i)
            .or_else(|| base.config.is_member(self.id).then_some(base.last_index));
        let (config, index) = configs
            .last()
            .cloned()
            .unwrap_or_else(|| (base.config.clone(), base.last_index));
        self.adopt_config(config, index);
        self.member_at = member_at;
    }

    /// After a snapshot was installed: its configuration is in force unless
    /// the log kept a newer one after it.
    pub(super) fn config_after_install(&mut self, kept: bool) {
        let meta = self.log.snapshot_meta().clone();
        if !kept || self.cluster_index <= meta.last_index {
            self.adopt_config(meta.config.clone(), meta.last_index);
        }
        if !kept {
            // The discarded log may have named us in an entry that was
            // never committed (an addition a new leader overwrote): only
            // the snapshot's configuration is known (simulator membership
            // seed 1403). A removal learnt only this way goes unreported.
            self.member_at = meta.config.is_member(self.id).then_some(meta.last_index);
        }
    }

    // ---- Leader --------------------------------------------------------------

    /// Replication targets follow the configuration in force: new members
    /// get a progress, removed ones depart, and the sub-leaders are chosen
    /// again among the new voters (DESIGN.md 3.2: a designation is scoped
    /// to its configuration).
    fn leader_config_changed(&mut self) {
        let next = self.log.last_index().next();
        for id in self.cluster.members() {
            if id != self.id {
                self.progress
                    .entry(id)
                    .or_insert_with(|| Progress::new(next));
                self.departing.remove(&id);
            }
        }
        let gone: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|id| !self.cluster.is_member(*id) && !self.departing.contains_key(id))
            .collect();
        for id in gone {
            self.departing.insert(
                id,
                Departing {
                    removed_at: self.cluster_index,
                    told_at_us: None,
                },
            );
        }
        if self
            .transfer
            .is_some_and(|(target, _)| !self.cluster.is_voter(target))
        {
            self.transfer = None;
        }
        self.designation.clear();
        self.update_designation();
    }

    /// Leader, at a heartbeat to departing `peer` carrying `commit`: note
    /// when it is first told that its removal committed.
    pub(super) fn note_departing_told(&mut self, peer: NodeId, commit: LogIndex) {
        let now = self.now_us;
        if let Some(d) = self.departing.get_mut(&peer)
            && commit >= d.removed_at
            && d.told_at_us.is_none()
        {
            d.told_at_us = Some(now);
        }
    }

    /// Leader, at a heartbeat reply: a departing node that answered a
    /// heartbeat telling it of its removal gets nothing more.
    pub(super) fn maybe_forget_departed(&mut self, from: NodeId, sent_at_us: u64) {
        let told = self
            .departing
            .get(&from)
            .and_then(|d| d.told_at_us)
            .is_some_and(|t| sent_at_us >= t);
        if told {
            log::info!(
                "node {}: {from} knows it was removed; no longer replicating to it",
                self.id
            );
            self.departing.remove(&from);
            self.progress.remove(&from);
        }
    }

    /// Whether `ready()` has membership work: a committed removal of this
    /// node to report, or a removed leader's hand-over to start or finish.
    pub(super) fn membership_action_due(&self) -> bool {
        self.removal_to_report() || self.handover_due()
    }

    fn removal_to_report(&self) -> bool {
        !self.removed_reported
            && self.member_at.is_some_and(|at| at < self.cluster_index)
            && !self.cluster.is_member(self.id)
            && self.config_committed()
    }

    fn handover_due(&self) -> bool {
        if self.role != Role::Leader || self.cluster.is_voter(self.id) || !self.config_committed() {
            return false;
        }
        match self.transfer {
            None => true,
            Some((target, _)) => self.target_caught_up(target),
        }
    }

    fn target_caught_up(&self, target: NodeId) -> bool {
        self.progress
            .get(&target)
            .is_some_and(|pr| pr.match_index == self.log.last_index())
    }

    /// Called by `ready()`: reports this node's committed removal, and
    /// makes a removed leader hand over once its removal commits (it led
    /// until then, counting itself in no quorum): TimeoutNow to its primary
    /// sub-leader, or the most up-to-date voter, then it steps down.
    pub(super) fn membership_actions(&mut self) {
        if self.handover_due() {
            let target = match self.transfer {
                Some((target, _)) => target,
                None => {
                    let Some(target) = self.handover_target() else {
                        return;
                    };
                    log::info!(
                        "node {}: removed from the configuration; handing over to {target}",
                        self.id
                    );
                    let deadline = self.now_us + self.config.follower_timeout_ms_min * 1000;
                    self.transfer = Some((target, deadline));
                    self.send_append(target);
                    target
                }
            };
            if self.target_caught_up(target) {
                self.send(target, MessageBody::TimeoutNow);
                self.step_down_removed();
            }
        }
        if self.removal_to_report() {
            self.removed_reported = true;
            log::warn!(
                "node {}: removed from the cluster (configuration at index {} committed)",
                self.id,
                self.cluster_index
            );
            self.out.events.push(Event::RemovedSelf {
                index: self.cluster_index,
            });
        }
    }

    /// The primary sub-leader if there is one, else the voter with the
    /// longest matching log (ties: lowest id).
    pub(super) fn handover_target(&self) -> Option<NodeId> {
        if let Some(primary) = self
            .designation
            .first()
            .filter(|id| self.cluster.is_voter(**id))
        {
            return Some(*primary);
        }
        self.cluster
            .voters
            .iter()
            .filter(|id| **id != self.id)
            .max_by_key(|id| {
                let matched = self
                    .progress
                    .get(id)
                    .map_or(LogIndex(0), |pr| pr.match_index);
                (matched, std::cmp::Reverse(**id))
            })
            .copied()
    }

    /// Leader: the voters other than this node that acknowledged recently
    /// (`recent_active`), plus this node if it is a voter: CheckQuorum's
    /// count (thesis 6.2), in which learners and departing nodes have no
    /// say.
    pub(super) fn active_voters(&self) -> usize {
        let own = usize::from(self.cluster.is_voter(self.id));
        own + self
            .progress
            .iter()
            .filter(|(id, pr)| pr.recent_active && self.cluster.is_voter(**id))
            .count()
    }

    /// Followers and learners that get the log: every member but us, and
    /// the departing nodes not yet told of their removal.
    pub(super) fn replication_targets(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// Members other than this node: whom a new leader replicates to.
    pub(super) fn member_peers(&self) -> Vec<NodeId> {
        self.cluster
            .members()
            .into_iter()
            .filter(|id| *id != self.id)
            .collect()
    }

    /// Debug builds, with the other invariants.
    pub(super) fn check_membership_invariants(&self) {
        self.cluster.check_invariants();
        if self.role == Role::Leader {
            for id in self.cluster.members() {
                assert!(
                    id == self.id || self.progress.contains_key(&id),
                    "leader {} has no progress for member {id}",
                    self.id
                );
            }
            for id in self.progress.keys() {
                assert!(
                    self.cluster.is_member(*id) || self.departing.contains_key(id),
                    "leader {} replicates to {id}, neither member nor departing",
                    self.id
                );
            }
        } else {
            assert!(
                self.departing.is_empty(),
                "departing nodes kept by a non-leader"
            );
            assert!(
                self.role == Role::Follower || self.cluster.is_voter(self.id),
                "node {} campaigns as a non-voter ({:?})",
                self.id,
                self.role
            );
        }
        if self.cluster_index > self.log.snapshot_meta().last_index {
            let held = self
                .log
                .entry(self.cluster_index)
                .and_then(|e| e.payload.config());
            assert_eq!(
                held.as_ref(),
                Some(&self.cluster),
                "node {}: configuration in force is not the entry at {}",
                self.id,
                self.cluster_index
            );
        }
    }
}
