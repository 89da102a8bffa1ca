//! Linearizable reads without log writes: ReadIndex (Raft thesis 6.4).
//! The leader records its commit index, confirms it is still leader with a
//! round of heartbeats, and the read may be served once applied reaches it.
//! In lease mode the confirmation is a lease instead, when one holds
//! (thesis 6.4.1; the argument is DESIGN.md 3.8), and ReadIndex otherwise.

use super::config::ReadMode;
use super::raft::{Raft, Role};
use super::ready::ReadState;
use super::types::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    NotLeader { leader: Option<NodeId> },
}

#[derive(Debug)]
struct PendingRead {
    ctx: u64,
    index: super::types::LogIndex,
    round: u64,
    acks: BTreeSet<NodeId>,
}

#[derive(Debug, Default)]
pub(super) struct ReadQueue {
    /// Last heartbeat round sent for reads.
    round: u64,
    pending: VecDeque<PendingRead>,
    /// Reads registered before our first entry of this term committed: the
    /// commit index is not known to be current until then.
    waiting_noop: Vec<u64>,
}

impl ReadQueue {
    pub fn latest_round(&self) -> u64 {
        self.round
    }

    pub fn needs_flush(&self) -> bool {
        self.pending.back().is_some_and(|r| r.round > self.round)
    }

    pub fn drain_all(&mut self) -> Vec<u64> {
        let mut out: Vec<u64> = self.pending.drain(..).map(|r| r.ctx).collect();
        out.append(&mut self.waiting_noop);
        out
    }
}

/// The leader's side of a lease (DESIGN.md 3.8): for each follower, the
/// latest send time (our clock) of a message of this term it answered.
/// It noted our contact, and so started a promise, after that time.
#[derive(Debug, Default)]
pub(super) struct Lease {
    /// When we became leader: an echo of an earlier send time is from an
    /// earlier term (a follower answers a stale message with its own term).
    term_start_us: u64,
    acked_sent_us: BTreeMap<NodeId, u64>,
    /// TimeoutNow was sent in this term: no lease until the next one.
    revoked: bool,
    /// Reads served under a lease, ever (the simulator checks each).
    served: u64,
}

impl Lease {
    pub fn begin_term(&mut self, now_us: u64) {
        self.term_start_us = now_us;
        self.acked_sent_us.clear();
        self.revoked = false;
    }

    pub fn revoke(&mut self) {
        self.revoked = true;
    }

    /// `from` answered a message we sent at `sent_at_us` (0: unknown).
    pub fn on_ack(&mut self, from: NodeId, sent_at_us: u64) {
        if sent_at_us <= self.term_start_us {
            return;
        }
        let acked = self.acked_sent_us.entry(from).or_insert(0);
        *acked = (*acked).max(sent_at_us);
    }
}

impl Raft {
    /// Lease mode: the time (our clock) until which we may serve reads
    /// locally, if a lease holds at all. A quorum of voters answered a
    /// message sent at or after `start`, each promising after receiving it
    /// not to vote or campaign for `voter_promise_us`; we count ourselves
    /// until we stop leading.
    pub(super) fn lease_expiry_us(&self) -> Option<u64> {
        if self.config.read_mode != ReadMode::Lease
            || self.role != Role::Leader
            || self.lease.revoked
            || self.log.term_at(self.log.commit()) != Some(self.term)
        {
            return None;
        }
        let sent: Vec<u64> = self
            .cluster
            .voters
            .iter()
            .map(|v| match *v == self.id {
                true => u64::MAX,
                false => self.lease.acked_sent_us.get(v).copied().unwrap_or(0),
            })
            .collect();
        let start_us = super::quorum::quorum_value(&sent, self.cluster.quorum());
        (start_us > 0).then(|| start_us.saturating_add(self.config.lease_duration_us()))
    }

    /// Whether a lease lets us serve a read now, without a heartbeat round.
    pub fn lease_valid(&self) -> bool {
        self.lease_expiry_us().is_some_and(|end| self.now_us < end)
    }

    /// Reads served under a lease since this node started.
    pub fn lease_reads_served(&self) -> u64 {
        self.lease.served
    }

    /// Lease mode: refresh the promise after a message of our leader.
    pub(super) fn extend_promise(&mut self) {
        if self.config.read_mode != ReadMode::Lease
            || self.config.mutations.lease_without_voter_promise
        {
            return;
        }
        let until = self.now_us + self.config.voter_promise_us();
        self.promise_until_us = self.promise_until_us.max(until);
    }

    /// A voter's promise of DESIGN.md 3.8 holds: no vote, no pre-vote and
    /// no candidacy but a leadership transfer's.
    pub(super) fn in_promise(&self) -> bool {
        self.now_us < self.promise_until_us
    }

    /// Registers a read; its `ReadState` arrives in a later `Ready`.
    pub fn read_index(&mut self, now_us: u64, ctx: u64) -> Result<(), ReadError> {
        self.set_now(now_us);
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        if self.log.term_at(self.log.commit()) != Some(self.term) {
            self.reads.waiting_noop.push(ctx);
            return Ok(());
        }
        self.start_read(ctx);
        Ok(())
    }

    fn start_read(&mut self, ctx: u64) {
        let index = self.log.commit();
        if self.lease_valid() {
            // No other node can have been elected yet, so our commit index
            // covers every acknowledged write (DESIGN.md 3.8).
            self.lease.served += 1;
            self.out.read_states.push(ReadState { ctx, index });
            return;
        }
        // Alone, we are the quorum. (The mutation is a test-only bug.)
        if self.cluster.voters == [self.id] || self.config.mutations.read_index_without_heartbeat {
            self.out.read_states.push(ReadState { ctx, index });
            return;
        }
        // Reads registered before the next flush share one heartbeat round.
        let round = self.reads.round + 1;
        let acks = BTreeSet::from([self.id]);
        self.reads.pending.push_back(PendingRead {
            ctx,
            index,
            round,
            acks,
        });
    }

    pub(super) fn flush_reads(&mut self) {
        if self.reads.needs_flush() {
            self.reads.round += 1;
            let round = self.reads.round;
            self.broadcast_heartbeat(round);
        }
    }

    /// A heartbeat reply for `round` confirms our leadership as of every
    /// read registered before that round was sent.
    pub(super) fn on_read_ack(&mut self, from: NodeId, round: u64) {
        for read in self.reads.pending.iter_mut().filter(|r| r.round <= round) {
            read.acks.insert(from);
        }
        let quorum = self.cluster.quorum();
        while let Some(front) = self.reads.pending.front() {
            // Learners and departing nodes confirm nothing (DESIGN.md 8).
            if self.cluster.count_voters(&front.acks) < quorum {
                break;
            }
            let read = self.reads.pending.pop_front().expect("front exists");
            self.out.read_states.push(ReadState {
                ctx: read.ctx,
                index: read.index,
            });
        }
    }

    pub(super) fn on_commit_advanced(&mut self) {
        if self.log.term_at(self.log.commit()) == Some(self.term)
            && !self.reads.waiting_noop.is_empty()
        {
            for ctx in std::mem::take(&mut self.reads.waiting_noop) {
                self.start_read(ctx);
            }
        }
    }
}
