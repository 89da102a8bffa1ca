//! The Raft and S-Raft rules, one test each, against the pure core. Each test
//! quotes the sentence of the Raft paper (Ongaro & Ousterhout 2014), the
//! thesis (Ongaro 2014) or DESIGN.md that it checks.
//!
//! `Net` is a small timed network: per-node one-way latency, links that can
//! be cut, nodes that can be stopped; messages that must wait for a persist
//! leave after it (the persist itself is instant here).
//!
//! One file per topic: elections, replication, reads and transfer, the
//! sub-leaders, the crash path, byte limits, snapshots, membership, lease
//! reads, the driver's hold on durable promises; this file holds the
//! harness.

mod byte_limits;
mod crash_path;
mod driver;
mod elections;
mod lease;
mod membership;
mod reads_and_transfer;
mod replication;
mod snapshots;
mod subleaders;

use sraft::core::{
    ClusterConfig, ConfChange, ConfChangeError, Designation, ElectionKind, Entry, EntryPayload,
    Event, HardState, LogIndex, MemberAddrs, Message, MessageBody, NodeId, Raft, RaftConfig,
    ReadMode, RestoredState, Role, SnapshotMeta, Term, TransferError,
};
use sraft::limits::Limits;
use sraft::runtime::{ConfChangeFailure, ConfReply, Node, Reply, RequestError, SyncWriter};
use sraft::state_machine::{Bytes, StateMachine};
use sraft::storage::MemStorage;
use sraft::transport::PeerFrame;
use sraft::transport::frame::encode_frame;
use std::collections::{BTreeMap, BTreeSet};

/// The state machine of these tests: remembers the last index applied.
#[derive(Default)]
struct LastIndex(LogIndex);

impl StateMachine for LastIndex {
    type Output = Vec<u8>;

    fn apply(&mut self, index: LogIndex, _command: &Bytes) -> Vec<u8> {
        self.0 = index;
        index.0.to_le_bytes().to_vec()
    }
    fn applied_index(&self) -> LogIndex {
        self.0
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.0.to_le_bytes().to_vec()
    }
    fn restore(&mut self, index: LogIndex, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "not 8 bytes".to_string())?;
        let applied = LogIndex(u64::from_le_bytes(bytes));
        if applied > index {
            return Err(format!("snapshot of {applied} installed at {index}"));
        }
        self.0 = index;
        Ok(())
    }
}

/// The production driver over in-memory storage that fsyncs at once.
type TestNode = Node<LastIndex, SyncWriter<MemStorage>, Vec<Message>, u64>;

struct Net {
    nodes: Vec<TestNode>,
    now_us: u64,
    /// (deliver at, sequence) -> message.
    queue: BTreeMap<(u64, u64), Message>,
    seq: u64,
    latency_us: Vec<u64>,
    stopped: BTreeSet<usize>,
    cut: BTreeSet<(usize, usize)>,
    events: Vec<(usize, Event)>,
    /// Every message handed to the network, for inspection.
    sent: Vec<Message>,
    /// Client answers: (node, ticket, reply).
    answers: Vec<(usize, u64, Reply)>,
    /// Membership change answers: (node, ticket, reply).
    conf_answers: Vec<(usize, u64, ConfReply)>,
}

fn ids(n: usize) -> Vec<NodeId> {
    (0..n as u64).map(NodeId).collect()
}

impl Net {
    fn new(n: usize) -> Net {
        Net::with_config(n, RaftConfig::default())
    }

    fn with_config(n: usize, config: RaftConfig) -> Net {
        Net::with_voters(n, n, config)
    }

    /// `n` nodes of which the first `voters` form the cluster; the others
    /// start as `--join` nodes do, knowing no configuration.
    fn with_voters(n: usize, voters: usize, config: RaftConfig) -> Net {
        let cluster = ClusterConfig::new(ids(voters));
        let nodes = ids(n)
            .into_iter()
            .map(|id| {
                let initial = match id.0 < voters as u64 {
                    true => cluster.clone(),
                    false => ClusterConfig::default(),
                };
                let (storage, restored) = MemStorage::new(initial);
                let raft = Raft::new(id, config.clone(), restored, 1000 + id.0, 0);
                Node::new(raft, SyncWriter(storage), Vec::new(), LastIndex::default())
            })
            .collect();
        Net {
            nodes,
            now_us: 0,
            queue: BTreeMap::new(),
            seq: 0,
            latency_us: vec![150; n],
            stopped: BTreeSet::new(),
            cut: BTreeSet::new(),
            events: Vec::new(),
            sent: Vec::new(),
            answers: Vec::new(),
            conf_answers: Vec::new(),
        }
    }

    fn node(&self, i: usize) -> &Raft {
        self.nodes[i].raft()
    }

    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter(|i| !self.stopped.contains(i))
            .find(|&i| self.node(i).role() == Role::Leader)
    }

    /// Lets node `i`'s driver hand out its output (persist, which is
    /// instant here, send, apply, answer) and puts its messages in flight.
    fn flush(&mut self, i: usize) {
        if self.stopped.contains(&i) {
            return;
        }
        self.nodes[i].process().expect("memory storage never fails");
        for event in self.nodes[i].take_events() {
            self.events.push((i, event));
        }
        for (ticket, reply) in self.nodes[i].take_answers() {
            self.answers.push((i, ticket, reply));
        }
        for (ticket, reply) in self.nodes[i].take_conf_answers() {
            self.conf_answers.push((i, ticket, reply));
        }
        for msg in std::mem::take(self.nodes[i].network_mut()) {
            self.sent.push(msg.clone());
            let to = msg.to.0 as usize;
            if self.cut.contains(&(i, to)) {
                continue;
            }
            let at = self.now_us + self.latency_us[i].max(self.latency_us[to]);
            self.seq += 1;
            self.queue.insert((at, self.seq), msg);
        }
    }

    /// Runs the cluster on logical time until `until_us`.
    fn run_until(&mut self, until_us: u64) {
        loop {
            let next_msg = self.queue.keys().next().map(|k| k.0);
            let next_tick = (0..self.nodes.len())
                .filter(|i| !self.stopped.contains(i))
                .map(|i| (self.node(i).next_deadline_us(), i))
                .min();
            let msg_first = match (next_msg, next_tick) {
                (Some(m), Some((t, _))) => m <= t,
                (Some(_), None) => true,
                _ => false,
            };
            let at = if msg_first {
                next_msg
            } else {
                next_tick.map(|t| t.0)
            };
            let Some(at) = at.filter(|at| *at <= until_us) else {
                self.now_us = until_us;
                return;
            };
            self.now_us = self.now_us.max(at);
            if msg_first {
                let (_, msg) = self.queue.pop_first().expect("a message");
                let to = msg.to.0 as usize;
                if !self.stopped.contains(&to) {
                    self.nodes[to].step(self.now_us, msg);
                    self.flush(to);
                }
            } else {
                let i = next_tick.expect("a timer").1;
                self.nodes[i].tick(self.now_us);
                self.flush(i);
            }
        }
    }

    fn run_for_ms(&mut self, ms: u64) {
        self.run_until(self.now_us + ms * 1000);
    }

    /// Runs until some node leads and every live node follows it.
    fn elect(&mut self) -> usize {
        for _ in 0..200 {
            self.run_for_ms(10);
            if let Some(l) = self.leader() {
                let id = NodeId(l as u64);
                // Nodes that are joining know no leader until added.
                let all = (0..self.nodes.len())
                    .filter(|i| !self.stopped.contains(i))
                    .filter(|i| self.node(*i).cluster().is_member(NodeId(*i as u64)))
                    .all(|i| self.node(i).leader() == Some(id));
                if all {
                    return l;
                }
            }
        }
        panic!("no leader within 2 s");
    }

    fn isolate(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            self.cut.insert((i, j));
            self.cut.insert((j, i));
        }
    }

    fn stop(&mut self, i: usize) {
        self.stopped.insert(i);
    }

    /// Feeds one message to node `to` and returns what it sends back.
    fn exchange(&mut self, to: usize, msg: Message) -> Vec<Message> {
        let before = self.sent.len();
        self.nodes[to].step(self.now_us, msg);
        self.flush(to);
        self.queue.clear();
        self.sent[before..].to_vec()
    }

    fn propose(&mut self, leader: usize, data: &[u8]) -> (LogIndex, Term) {
        let r = self.nodes[leader]
            .propose(self.now_us, data.to_vec(), 0)
            .expect("leader accepts");
        self.flush(leader);
        r
    }

    /// Proposes through node `i`'s driver without a flush: where the entry
    /// will land, or the error it was refused with at once.
    fn try_propose(
        &mut self,
        i: usize,
        command: Vec<u8>,
    ) -> Result<(LogIndex, Term), RequestError> {
        if let Some(at) = self.nodes[i].propose(self.now_us, command, 0) {
            return Ok(at);
        }
        let mut answers = self.nodes[i].take_answers();
        let (_, refusal) = answers.pop().expect("a refusal is answered at once");
        self.answers
            .extend(answers.into_iter().map(|(t, r)| (i, t, r)));
        Err(refusal.expect_err("refused"))
    }

    /// A linearizable read through node `i`'s driver; answers with the last
    /// index applied when it was served.
    fn read(&mut self, i: usize, ticket: u64) {
        let query = Box::new(|sm: &LastIndex| sm.0.0.to_le_bytes().to_vec());
        self.nodes[i].read(self.now_us, query, ticket);
        self.flush(i);
    }
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body,
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(vec![index as u8].into()),
    }
}

/// A follower restored with `entries` and `hard_state`, in a 3-node cluster.
fn restored_node(id: u64, hard_state: HardState, entries: Vec<Entry>) -> Raft {
    let mut restored = RestoredState::fresh(ClusterConfig::new(ids(3)));
    restored.hard_state = hard_state;
    restored.entries = entries;
    Raft::new(NodeId(id), RaftConfig::default(), restored, 7, 0)
}

/// What the driver does for a single core when its write is durable at
/// once: reports the write's last entry as persisted.
fn persist(node: &mut Raft, rd: &sraft::core::Ready) {
    if let Some(last) = rd.entries.last() {
        node.persisted(node.now_us(), last.index, last.term);
    }
}

/// Ticks `node` until it is a candidate, granting its pre-votes from
/// `pre_voters`; returns the time it got there.
fn tick_to_candidate(node: &mut Raft, pre_voters: &[u64]) -> u64 {
    let mut now = 0;
    while node.role() != Role::Candidate {
        now += 10_000;
        node.tick(now);
        let rd = node.ready();
        persist(node, &rd);
        if node.role() == Role::PreCandidate {
            let next = node.term().0 + 1;
            for &from in pre_voters {
                let reply = MessageBody::PreVoteReply {
                    granted: true,
                    sticky: false,
                };
                node.step(now, msg(from, node.id().0, next, reply));
            }
            let rd = node.ready();
            persist(node, &rd);
        }
    }
    now
}

/// A RequestVote from `from` to `to` in `term`, with an empty log.
fn vote_request(from: u64, to: u64, term: u64) -> Message {
    msg(
        from,
        to,
        term,
        MessageBody::Vote {
            last_index: LogIndex(0),
            last_term: Term(0),
            transfer: false,
        },
    )
}

fn replies(rd: &sraft::core::Ready) -> Vec<Message> {
    rd.messages
        .iter()
        .chain(&rd.messages_after_persist)
        .cloned()
        .collect()
}
