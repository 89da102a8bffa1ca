//! Linearizable reads without log writes: ReadIndex (Raft thesis 6.4).
//! The leader records its commit index, confirms it is still leader with a
//! round of heartbeats, and the read may be served once applied reaches it.

use super::raft::{Raft, Role};
use super::ready::ReadState;
use super::types::NodeId;
use std::collections::{BTreeSet, VecDeque};

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

impl Raft {
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
