//! The Raft and S-Raft rules, one test each, against the pure core. Each test
//! quotes the sentence of the Raft paper (Ongaro & Ousterhout 2014), the
//! thesis (Ongaro 2014) or DESIGN.md that it checks.
//!
//! `Net` is a small timed network: per-node one-way latency, links that can
//! be cut, nodes that can be stopped; messages that must wait for a persist
//! leave after it (the persist itself is instant here).

use sraft::core::{
    ClusterConfig, ConfChange, ConfChangeError, Designation, ElectionKind, Entry, EntryPayload,
    Event, HardState, LogIndex, MemberAddrs, Message, MessageBody, NodeId, Raft, RaftConfig,
    ReadMode, RestoredState, Role, SnapshotMeta, Term, TransferError,
};
use sraft::limits::Limits;
use sraft::runtime::{ConfChangeFailure, ConfReply, Node, Reply, RequestError, SyncWriter};
use sraft::state_machine::StateMachine;
use sraft::storage::MemStorage;
use sraft::transport::PeerFrame;
use sraft::transport::frame::encode_frame;
use std::collections::{BTreeMap, BTreeSet};

/// The state machine of these tests: remembers the last index applied.
#[derive(Default)]
struct LastIndex(LogIndex);

impl StateMachine for LastIndex {
    type Output = Vec<u8>;

    fn apply(&mut self, index: LogIndex, _command: &[u8]) -> Vec<u8> {
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
        payload: EntryPayload::Command(vec![index as u8]),
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

fn replies(rd: &sraft::core::Ready) -> Vec<Message> {
    rd.messages
        .iter()
        .chain(&rd.messages_after_persist)
        .cloned()
        .collect()
}

// ---- Elections (paper 5.2, thesis 9.6, 4.2.3) -------------------------------

#[test]
fn a_candidate_with_a_majority_of_votes_becomes_the_only_leader() {
    // "A candidate wins an election if it receives votes from a majority of
    // the servers in the full cluster for the same term." (5.2)
    for n in [3, 5, 7] {
        let mut net = Net::new(n);
        let l = net.elect();
        let term = net.node(l).term();
        let leaders = (0..n)
            .filter(|&i| net.node(i).role() == Role::Leader && net.node(i).term() == term)
            .count();
        assert_eq!(leaders, 1, "{n} nodes");
    }
}

#[test]
fn a_new_leader_appends_a_noop_and_commits_it() {
    // "Raft handles this by having each leader commit a blank no-op entry
    // into the log at the start of its term." (8)
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let last = net.node(l).last_index();
    assert_eq!(net.node(l).entry(last).unwrap().payload, EntryPayload::Noop);
    assert_eq!(net.node(l).commit_index(), last);
}

#[test]
fn a_voter_grants_at_most_one_vote_per_term() {
    // "Each server will vote for at most one candidate in a given term, on a
    // first-come-first-served basis." (5.2)
    let mut net = Net::new(3);
    let vote = |from| {
        msg(
            from,
            0,
            1,
            MessageBody::Vote {
                last_index: LogIndex(0),
                last_term: Term(0),
                transfer: false,
            },
        )
    };
    let first = net.exchange(0, vote(1));
    let second = net.exchange(0, vote(2));
    assert!(matches!(
        first[0].body,
        MessageBody::VoteReply { granted: true }
    ));
    assert!(matches!(
        second[0].body,
        MessageBody::VoteReply { granted: false }
    ));
    assert_eq!(net.node(0).vote(), Some(NodeId(1)));
}

#[test]
fn a_vote_grant_leaves_only_after_the_vote_is_persisted() {
    // Thesis 3.8: a server must persist its vote before replying, or a
    // restart could vote twice in one term.
    let mut node = restored_node(0, HardState::default(), vec![]);
    node.step(
        0,
        msg(
            1,
            0,
            1,
            MessageBody::Vote {
                last_index: LogIndex(0),
                last_term: Term(0),
                transfer: false,
            },
        ),
    );
    let rd = node.ready();
    assert_eq!(rd.hard_state.unwrap().vote, Some(NodeId(1)));
    assert!(rd.messages.is_empty(), "{:?}", rd.messages);
    assert!(matches!(
        rd.messages_after_persist[0].body,
        MessageBody::VoteReply { granted: true }
    ));
}

#[test]
fn a_voter_denies_a_candidate_whose_log_is_less_up_to_date() {
    // "The voter denies its vote if its own log is more up-to-date than that
    // of the candidate." (5.4.1)
    let hs = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(0),
    };
    let mut node = restored_node(0, hs, vec![entry(1, 1), entry(2, 2)]);
    for (last_index, last_term) in [(5, 1), (1, 2)] {
        node.step(
            0,
            msg(
                1,
                0,
                3,
                MessageBody::Vote {
                    last_index: LogIndex(last_index),
                    last_term: Term(last_term),
                    transfer: false,
                },
            ),
        );
        let rd = node.ready();
        let out = replies(&rd);
        persist(&mut node, &rd);
        assert!(
            matches!(out[0].body, MessageBody::VoteReply { granted: false }),
            "candidate log ({last_index},{last_term}) got {:?}",
            out[0]
        );
    }
    assert_eq!(node.vote(), None);
}

#[test]
fn a_restarted_node_keeps_its_term_and_vote() {
    // "Updated on stable storage before responding to RPCs" (Figure 2).
    let hs = HardState {
        term: Term(4),
        vote: Some(NodeId(1)),
        commit: LogIndex(0),
    };
    let mut node = restored_node(0, hs, vec![]);
    assert_eq!((node.term(), node.vote()), (Term(4), Some(NodeId(1))));
    node.step(
        0,
        msg(
            2,
            0,
            4,
            MessageBody::Vote {
                last_index: LogIndex(0),
                last_term: Term(0),
                transfer: false,
            },
        ),
    );
    let rd = node.ready();
    assert!(matches!(
        replies(&rd)[0].body,
        MessageBody::VoteReply { granted: false }
    ));
}

#[test]
fn a_leader_that_sees_a_higher_term_steps_down() {
    // "If a candidate or leader discovers that its term is out of date, it
    // immediately reverts to follower state." (5.1)
    let mut net = Net::new(3);
    let l = net.elect();
    let term = net.node(l).term().0;
    let other = (l + 1) % 3;
    net.exchange(
        l,
        msg(
            other as u64,
            l as u64,
            term + 5,
            MessageBody::AppendReply {
                success: false,
                index: LogIndex(0),
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: 0,
            },
        ),
    );
    assert_eq!(net.node(l).role(), Role::Follower);
    assert_eq!(net.node(l).term(), Term(term + 5));
}

#[test]
fn a_request_with_a_stale_term_is_rejected() {
    // "If a server receives a request with a stale term number, it rejects
    // the request." (5.1)
    let hs = HardState {
        term: Term(5),
        vote: None,
        commit: LogIndex(0),
    };
    let mut node = restored_node(0, hs, vec![]);
    node.step(
        0,
        msg(
            1,
            0,
            3,
            MessageBody::Append {
                prev_index: LogIndex(0),
                prev_term: Term(0),
                entries: vec![entry(1, 3)],
                commit: LogIndex(1),
                sent_at_us: 0,
            },
        ),
    );
    let rd = node.ready();
    assert!(
        rd.entries.is_empty(),
        "a stale leader's entries were accepted"
    );
    let out = replies(&rd);
    assert!(out.iter().all(|m| m.term == Term(5)), "{out:?}");
    assert_eq!(node.last_index(), LogIndex(0));
}

#[test]
fn messages_for_others_or_from_ourselves_are_dropped() {
    let mut node = restored_node(0, HardState::default(), vec![]);
    let vote = MessageBody::Vote {
        last_index: LogIndex(0),
        last_term: Term(0),
        transfer: false,
    };
    node.step(0, msg(1, 2, 1, vote.clone()));
    node.step(0, msg(0, 0, 1, vote));
    assert!(!node.has_ready());
    assert_eq!(node.term(), Term(0));
}

#[test]
fn a_vote_request_from_outside_our_configuration_is_answered() {
    // Thesis 4.1: "servers process incoming RPC requests without consulting
    // their current configurations". (Until issue 11 a vote request from a
    // node outside the configuration was dropped; with membership changes
    // that can leave a cluster unable to elect: a voter whose log lacks
    // the candidate's addition may be the vote it needs, simulator
    // membership seed 327.)
    let mut node = restored_node(0, HardState::default(), vec![]);
    let vote = MessageBody::Vote {
        last_index: LogIndex(0),
        last_term: Term(0),
        transfer: false,
    };
    node.step(0, msg(99, 0, 1, vote));
    let rd = node.ready();
    assert_eq!(node.term(), Term(1));
    assert!(
        rd.messages_after_persist
            .iter()
            .any(|m| m.to == NodeId(99) && matches!(m.body, MessageBody::VoteReply { .. })),
        "{rd:?}"
    );
}

#[test]
fn prevote_keeps_a_partitioned_node_from_inflating_terms() {
    // Thesis 9.6: "a server that has been partitioned ... will not be able to
    // increment its term, since it cannot receive permission from a majority".
    let mut net = Net::new(3);
    let l = net.elect();
    let term = net.node(l).term();
    let lone = (l + 1) % 3;
    net.isolate(lone);
    net.run_for_ms(5_000);
    assert_eq!(net.node(lone).term(), term);
    net.cut.clear();
    net.run_for_ms(500);
    assert_eq!(
        net.leader(),
        Some(l),
        "the rejoining node deposed the leader"
    );
    assert_eq!(net.node(l).term(), term);
}

#[test]
fn a_voter_that_hears_from_its_leader_refuses_to_depose_it() {
    // Thesis 4.2.3: "if a server receives a RequestVote request within the
    // minimum election timeout of hearing from a current leader, it does not
    // update its term or grant its vote."
    let mut net = Net::new(3);
    let l = net.elect();
    let term = net.node(l).term().0;
    let voter = (l + 1) % 3;
    let candidate = (l + 2) % 3;
    let last = net.node(voter).last_index();
    let out = net.exchange(
        voter,
        msg(
            candidate as u64,
            voter as u64,
            term + 1,
            MessageBody::Vote {
                last_index: last,
                last_term: Term(term),
                transfer: false,
            },
        ),
    );
    assert_eq!(net.node(voter).term(), Term(term), "term was bumped");
    assert!(
        out.iter()
            .all(|m| !matches!(m.body, MessageBody::VoteReply { granted: true })),
        "{out:?}"
    );
}

#[test]
fn a_leader_without_a_quorum_steps_down() {
    // Thesis 6.2: "a leader ... steps down if an election timeout elapses
    // without a successful round of heartbeats to a majority of its cluster."
    let mut net = Net::new(3);
    let l = net.elect();
    net.isolate(l);
    net.run_for_ms(1_500);
    assert_ne!(net.node(l).role(), Role::Leader);
}

// ---- Replication (paper 5.3, 5.4) -----------------------------------------

#[test]
fn an_append_past_the_end_of_the_log_is_rejected_with_a_hint() {
    // "If a follower's log is inconsistent with the leader's, the
    // AppendEntries consistency check will fail." (5.3)
    let mut node = restored_node(0, HardState::default(), vec![entry(1, 1)]);
    node.step(
        0,
        msg(
            1,
            0,
            1,
            MessageBody::Append {
                prev_index: LogIndex(9),
                prev_term: Term(1),
                entries: vec![entry(10, 1)],
                commit: LogIndex(9),
                sent_at_us: 0,
            },
        ),
    );
    let rd = node.ready();
    let out = replies(&rd);
    match out[0].body {
        MessageBody::AppendReply {
            success,
            hint_index,
            ..
        } => {
            assert!(!success);
            assert_eq!(hint_index, LogIndex(1));
        }
        ref other => panic!("expected AppendReply, got {other:?}"),
    }
    assert_eq!(node.commit_index(), LogIndex(0));
}

#[test]
fn a_diverged_follower_is_repaired_in_a_few_round_trips() {
    // "When rejecting an AppendEntries request, the follower can include the
    // term of the conflicting entry and the first index it stores for that
    // term." (5.3)
    let mut net = Net::new(3);
    let l = net.elect();
    let lagging = (l + 1) % 3;
    net.isolate(lagging);
    for i in 0..200u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    net.cut.clear();
    let before = net.sent.len();
    net.run_for_ms(100);
    assert_eq!(net.node(lagging).last_index(), net.node(l).last_index());
    assert_eq!(net.node(lagging).commit_index(), net.node(l).commit_index());
    let rejections = net.sent[before..]
        .iter()
        .filter(|m| matches!(m.body, MessageBody::AppendReply { success: false, .. }))
        .count();
    assert!(rejections <= 2, "{rejections} rejections to catch up");
}

#[test]
fn a_follower_overwrites_conflicting_uncommitted_entries() {
    // "If an existing entry conflicts with a new one (same index but
    // different terms), delete the existing entry and all that follow it."
    // (Figure 2)
    let hs = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(1),
    };
    let mut node = restored_node(0, hs, vec![entry(1, 1), entry(2, 2), entry(3, 2)]);
    node.step(
        0,
        msg(
            1,
            0,
            3,
            MessageBody::Append {
                prev_index: LogIndex(1),
                prev_term: Term(1),
                entries: vec![entry(2, 3)],
                commit: LogIndex(2),
                sent_at_us: 0,
            },
        ),
    );
    let rd = node.ready();
    assert_eq!(rd.entries, vec![entry(2, 3)]);
    persist(&mut node, &rd);
    assert_eq!(node.last_index(), LogIndex(2));
    assert_eq!(node.term_at(LogIndex(2)), Some(Term(3)));
}

#[test]
fn a_leader_commits_an_entry_once_a_majority_stores_it() {
    // "A log entry is committed once the leader that created the entry has
    // replicated it on a majority of the servers." (5.3)
    let mut net = Net::new(5);
    let l = net.elect();
    net.run_for_ms(5);
    let down: Vec<usize> = (0..5).filter(|&i| i != l).take(2).collect();
    for &d in &down {
        net.isolate(d);
    }
    let (index, _) = net.propose(l, b"x");
    net.run_for_ms(5);
    assert!(net.node(l).commit_index() >= index, "3 of 5 is a majority");
    let third = (0..5).find(|i| *i != l && !down.contains(i)).unwrap();
    net.isolate(third);
    let (index2, _) = net.propose(l, b"y");
    net.run_for_ms(5);
    assert!(
        net.node(l).commit_index() < index2,
        "2 of 5 is not a majority"
    );
}

#[test]
fn a_leader_never_commits_an_old_term_entry_by_counting_replicas() {
    // "Raft never commits log entries from previous terms by counting
    // replicas. Only log entries from the leader's current term are
    // committed by counting replicas." (5.4.2, Figure 8)
    let hs = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(0),
    };
    let mut restored = RestoredState::fresh(ClusterConfig::new(ids(3)));
    restored.hard_state = hs;
    restored.entries = vec![entry(1, 1), entry(2, 2)];
    let mut leader = Raft::new(NodeId(0), RaftConfig::default(), restored, 1, 0);
    // Win term 3 with node 1's vote.
    let mut now = 0;
    while leader.role() != Role::Candidate {
        now += 10_000;
        leader.tick(now);
        let rd = leader.ready();
        persist(&mut leader, &rd);
        if leader.role() == Role::PreCandidate {
            leader.step(
                now,
                msg(
                    1,
                    0,
                    3,
                    MessageBody::PreVoteReply {
                        granted: true,
                        sticky: false,
                    },
                ),
            );
            let rd = leader.ready();
            persist(&mut leader, &rd);
        }
    }
    leader.step(now, msg(1, 0, 3, MessageBody::VoteReply { granted: true }));
    assert_eq!(leader.role(), Role::Leader);
    let rd = leader.ready();
    persist(&mut leader, &rd);
    // Node 1 acknowledges index 2 (an old-term entry) but not the no-op.
    leader.step(
        now,
        msg(
            1,
            0,
            3,
            MessageBody::AppendReply {
                success: true,
                index: LogIndex(2),
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: now,
            },
        ),
    );
    assert_eq!(
        leader.commit_index(),
        LogIndex(0),
        "old-term entry committed by count"
    );
    leader.step(
        now,
        msg(
            1,
            0,
            3,
            MessageBody::AppendReply {
                success: true,
                index: LogIndex(3),
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: now,
            },
        ),
    );
    assert_eq!(
        leader.commit_index(),
        LogIndex(3),
        "the no-op commits all before it"
    );
}

#[test]
fn pipelined_appends_stay_within_the_inflight_bound() {
    let config = RaftConfig {
        inflight_appends_max: 4,
        append_entries_max: 1,
        ..RaftConfig::default()
    };
    let mut net = Net::with_config(3, config);
    let l = net.elect();
    net.run_for_ms(5);
    let follower = (l + 1) % 3;
    // Replies never arrive: the leader may have at most 4 appends in flight.
    net.cut.insert((follower, l));
    let before = net.sent.len();
    for i in 0..50u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(20);
    let appends = net.sent[before..]
        .iter()
        .filter(|m| m.to == NodeId(follower as u64))
        .filter(|m| matches!(&m.body, MessageBody::Append { entries, .. } if !entries.is_empty()))
        .count();
    assert!(appends <= 4, "{appends} appends in flight");
    assert!(appends >= 1);
}

/// etcd's MaxInflightBytes: a follower whose acknowledgements stop gets at
/// most `inflight_bytes_max` of entries (plus the one Append that crosses
/// it), however many messages the count bound would allow; once it
/// acknowledges, the rest follows.
#[test]
fn bytes_in_flight_to_a_follower_are_bounded() {
    // Every entry limit carries 64 KiB of overhead room: 40 entries of 10 kB
    // are about five times the smallest bound the table admits.
    const ENTRY: usize = 10_000;
    let mut limits = Limits::derive(ENTRY);
    limits.append_bytes_max = limits.entry_bytes_max;
    limits.inflight_bytes_max = limits.append_bytes_max;
    let config = RaftConfig {
        inflight_appends_max: 256,
        limits: limits.clone(),
        ..RaftConfig::default()
    };
    let mut net = Net::with_config(3, config);
    let l = net.elect();
    net.run_for_ms(5);
    let follower = (l + 1) % 3;
    net.cut.insert((follower, l));
    let before = net.sent.len();
    for i in 0..40u8 {
        net.propose(l, &[i; ENTRY - 100]);
        net.run_for_ms(1);
    }
    let to_follower = |net: &Net, from: usize| -> usize {
        net.sent[from..]
            .iter()
            .filter(|m| m.to == NodeId(follower as u64))
            .map(|m| match &m.body {
                MessageBody::Append { entries, .. } => entries.iter().map(Entry::size_bytes).sum(),
                _ => 0,
            })
            .sum()
    };
    let in_flight = to_follower(&net, before);
    assert!(in_flight > 0);
    assert!(
        in_flight < limits.inflight_bytes_max + limits.append_bytes_max,
        "{in_flight} bytes sent without an acknowledgement, bound {}",
        limits.inflight_bytes_max
    );
    net.cut.clear();
    net.run_for_ms(200);
    assert_eq!(
        net.node(follower).last_index(),
        net.node(l).last_index(),
        "the follower caught up once it acknowledged"
    );
}

#[test]
fn a_follower_refuses_proposals_and_names_the_leader() {
    let mut net = Net::new(3);
    let l = net.elect();
    let f = (l + 1) % 3;
    assert_eq!(net.nodes[f].propose(net.now_us, b"x".to_vec(), 9), None);
    let (_, err) = net.nodes[f].take_answers().pop().expect("answered at once");
    assert_eq!(
        err,
        Err(RequestError::NotLeader {
            leader: Some(NodeId(l as u64))
        })
    );
}

// ---- Reads and leadership transfer (thesis 6.4, 3.10) ---------------------

#[test]
fn read_index_waits_for_a_quorum_round_after_the_noop_commits() {
    // Thesis 6.4: the leader "needs to make sure it hasn't been superseded by
    // a newer leader ... by exchanging heartbeats with a majority".
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let commit = net.node(l).commit_index();
    let before = net.sent.len();
    net.read(l, 42);
    assert!(net.answers.is_empty(), "served before a heartbeat round");
    assert!(
        net.sent[before..]
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat { read_round, .. } if read_round > 0)),
        "the read starts its own heartbeat round"
    );
    net.run_for_ms(1);
    assert_eq!(net.answers.len(), 1);
    let (node, ticket, reply) = net.answers.pop().unwrap();
    assert_eq!((node, ticket), (l, 42));
    let served = u64::from_le_bytes(reply.expect("served")[..8].try_into().unwrap());
    assert!(LogIndex(served) <= commit, "nothing was written since");
}

#[test]
fn an_isolated_leader_cannot_serve_a_read() {
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    net.isolate(l);
    net.read(l, 7);
    net.run_for_ms(1500);
    assert!(
        net.answers.iter().all(|(_, _, reply)| reply.is_err()),
        "an isolated leader served a read: {:?}",
        net.answers
    );
}

#[test]
fn leadership_transfer_hands_over_in_the_next_term() {
    // Thesis 3.10: the prior leader sends a TimeoutNow request to the target
    // server ... the target server starts a new election.
    let mut net = Net::new(5);
    let l = net.elect();
    net.run_for_ms(20);
    let term = net.node(l).term();
    let target = (l + 3) % 5;
    let chosen = net.nodes[l].transfer_leadership(net.now_us, Some(NodeId(target as u64)));
    assert_eq!(chosen, Ok(NodeId(target as u64)));
    net.flush(l);
    net.run_for_ms(20);
    assert_eq!(net.leader(), Some(target));
    assert_eq!(net.node(target).term(), term.next());
}

/// Without a named target, the leader hands over to its primary
/// sub-leader; a follower refuses, and so does a leader asked to hand over
/// to a node that is not a voter.
#[test]
fn a_transfer_without_a_target_goes_to_the_primary_subleader() {
    let (mut net, l) = ranked_net([900, 700, 200, 500, 300]);
    net.run_for_ms(300);
    let primary = subleader(&net, l, 0);
    let f = (l + 1) % 5;
    assert_eq!(
        net.nodes[f].transfer_leadership(net.now_us, None),
        Err(TransferError::NotLeader)
    );
    assert_eq!(
        net.nodes[l].transfer_leadership(net.now_us, Some(NodeId(9))),
        Err(TransferError::UnknownTarget(NodeId(9)))
    );
    let term = net.node(l).term();
    let chosen = net.nodes[l].transfer_leadership(net.now_us, None);
    assert_eq!(chosen, Ok(NodeId(primary as u64)));
    net.flush(l);
    net.run_for_ms(20);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), term.next());
}

// ---- S-Raft (DESIGN.md 3) ---------------------------------------------------

/// A 5-node cluster where node `l` leads and followers' latencies differ.
fn ranked_net(latencies_us: [u64; 5]) -> (Net, usize) {
    let mut net = Net::new(5);
    net.latency_us = latencies_us.to_vec();
    let l = net.elect();
    net.run_for_ms(500);
    (net, l)
}

#[test]
fn the_leader_names_the_fastest_caught_up_followers_as_subleaders() {
    // DESIGN.md 3.2: "ranks the followers that are caught up ... by RTT, and
    // names the fastest max(1, floor(N * subleader_ratio))".
    let (net, l) = ranked_net([100, 100, 100, 100, 100]);
    let mut net = net;
    // Make follower latencies distinct, then let the SRTTs converge.
    let followers: Vec<usize> = (0..5).filter(|&i| i != l).collect();
    for (k, &f) in followers.iter().enumerate() {
        net.latency_us[f] = 400 - 100 * k as u64;
    }
    net.latency_us[l] = 0;
    net.run_for_ms(2_000);
    let expected = vec![NodeId(followers[3] as u64), NodeId(followers[2] as u64)];
    assert_eq!(net.node(l).subleaders(), expected.as_slice());
    let srtt = |f: usize| net.node(l).srtt_us(NodeId(f as u64)).unwrap();
    assert!(srtt(followers[3]) < srtt(followers[2]));
}

#[test]
fn a_follower_that_falls_behind_loses_its_designation() {
    // DESIGN.md 3.2: "the leader withdraws it from a follower that falls
    // behind."
    let (mut net, l) = ranked_net([100; 5]);
    let primary = net.node(l).subleaders()[0].0 as usize;
    net.isolate(primary);
    for i in 0..10u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(500);
    assert!(!net.node(l).subleaders().contains(&NodeId(primary as u64)));
    assert_eq!(net.node(l).subleaders().len(), 2, "a replacement was named");
}

#[test]
fn the_primary_takes_over_after_a_silent_leader_failure_without_a_split_vote() {
    // DESIGN.md 3.3-3.4: the primary's timer (150-200 ms) fires first; the
    // ranks are disjoint, so one uncontested election decides.
    let (mut net, l) = ranked_net([100; 5]);
    let old_term = net.node(l).term();
    let primary = net.node(l).subleaders()[0].0 as usize;
    net.stop(l);
    let stopped_at = net.now_us;
    net.events.clear();
    net.run_for_ms(400);
    let new = net.leader().expect("a new leader");
    assert_eq!(new, primary);
    assert_eq!(
        net.node(new).term(),
        old_term.next(),
        "more than one election"
    );
    let (at, kind) = net
        .events
        .iter()
        .find_map(|(i, e)| match e {
            Event::BecameLeader { kind, .. } if *i == new => Some((net.now_us, *kind)),
            _ => None,
        })
        .unwrap();
    assert_eq!(kind, ElectionKind::SubLeader { rank: 0 });
    assert!(at > stopped_at);
    let starts = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::ElectionStarted { pre_vote: true, .. }))
        .count();
    assert_eq!(starts, 1, "only the primary campaigned");
}

#[test]
fn the_crash_hint_starts_the_primary_at_once() {
    // DESIGN.md 3.5: "A sub-leader that sees both starts its promotion
    // immediately, and voters that see them drop stickiness."
    let (mut net, l) = ranked_net([100; 5]);
    let primary = net.node(l).subleaders()[0].0 as usize;
    net.stop(l);
    let at = net.now_us;
    for i in 0..5 {
        if i != l {
            net.nodes[i].peer_unreachable(at, NodeId(l as u64));
            net.flush(i);
        }
    }
    net.run_for_ms(3);
    assert_eq!(net.leader(), Some(primary));
    assert!(net.events.iter().any(|(i, e)| *i == primary
        && matches!(
            e,
            Event::BecameLeader {
                kind: ElectionKind::CrashHint { rank: 0 },
                ..
            }
        )));
}

#[test]
fn a_crash_hint_about_a_non_leader_changes_nothing() {
    // The hint starts an election only about the current leader; it is
    // never authority to lead.
    let (mut net, l) = ranked_net([100; 5]);
    let term = net.node(l).term();
    let primary = net.node(l).subleaders()[0].0 as usize;
    let bystander = (0..5).find(|&i| i != l && i != primary).unwrap();
    net.nodes[primary].peer_unreachable(net.now_us, NodeId(bystander as u64));
    net.flush(primary);
    net.run_for_ms(100);
    assert_eq!(net.leader(), Some(l));
    assert_eq!(net.node(l).term(), term);
}

#[test]
fn original_mode_names_no_subleaders() {
    let mut net = Net::with_config(5, RaftConfig::default().original());
    let l = net.elect();
    net.run_for_ms(1_000);
    assert!(net.node(l).subleaders().is_empty());
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| matches!(e, Event::SubleadersAssigned { .. }))
    );
}

#[test]
fn followers_know_the_subleaders_their_leader_named() {
    // INFO's `sub_leaders` on any node (DESIGN.md 4.6): what the current
    // leader last named, and nothing once that leader is gone.
    let (mut net, l) = ranked_net([100; 5]);
    let named = net.node(l).subleaders().to_vec();
    assert_eq!(named.len(), 2);
    for i in (0..5).filter(|&i| i != l) {
        assert_eq!(net.node(i).known_subleaders(), named.as_slice(), "node {i}");
    }
    net.stop(l);
    net.run_for_ms(400);
    let new = net.leader().expect("a new leader");
    for i in (0..5).filter(|&i| i != l && i != new) {
        assert!(
            !net.node(i).known_subleaders().contains(&NodeId(new as u64)),
            "node {i} still reports the old ranking naming the new leader"
        );
    }
}

// ---- Crash fast path and stickiness margin (issue 9) ------------------------

/// An `n`-node cluster, every link `latency_us` one way, with a leader that
/// has named its sub-leaders.
fn ranked_net_of(n: usize, latency_us: u64) -> (Net, usize) {
    ranked_net_with(RaftConfig::default(), n, latency_us)
}

fn ranked_net_with(config: RaftConfig, n: usize, latency_us: u64) -> (Net, usize) {
    let mut net = Net::with_config(n, config);
    net.latency_us = vec![latency_us; n];
    let l = net.elect();
    net.run_for_ms(500);
    assert_eq!(
        net.node(l).subleaders().len(),
        RaftConfig::default().subleader_count(n)
    );
    (net, l)
}

fn subleader(net: &Net, l: usize, rank: usize) -> usize {
    net.node(l).subleaders()[rank].0 as usize
}

/// Tells each of `nodes` that leader `l`'s process is gone (DESIGN.md 3.5).
fn hint(net: &mut Net, l: usize, nodes: &[usize]) {
    for &i in nodes {
        net.nodes[i].peer_unreachable(net.now_us, NodeId(l as u64));
        net.flush(i);
    }
}

/// Elections node `i` started so far: (pre-vote rounds, vote rounds).
fn elections_by(net: &Net, i: usize) -> (usize, usize) {
    let starts = |pre: bool| {
        net.events
            .iter()
            .filter(|(n, e)| {
                *n == i && matches!(e, Event::ElectionStarted { pre_vote, .. } if *pre_vote == pre)
            })
            .count()
    };
    (starts(true), starts(false))
}

fn won_as(net: &Net, i: usize) -> Option<ElectionKind> {
    net.events.iter().find_map(|(n, e)| match e {
        Event::BecameLeader { kind, .. } if *n == i => Some(*kind),
        _ => None,
    })
}

/// Runs until leader `l` sends a heartbeat to `to`, and one more
/// millisecond so that it is delivered.
fn run_past_heartbeat(net: &mut Net, l: usize, to: usize) {
    loop {
        let before = net.sent.len();
        let deadline = net.node(l).next_deadline_us();
        net.run_until(deadline);
        let sent = net.sent[before..].iter().any(|m| {
            m.from == NodeId(l as u64)
                && m.to == NodeId(to as u64)
                && matches!(m.body, MessageBody::Heartbeat { .. })
        });
        if sent {
            net.run_for_ms(1);
            return;
        }
    }
}

/// Leader `l`'s heartbeats stop reaching `deaf` for the next `missed`
/// heartbeats, which the others all get; then `l` stops.
fn stop_leader_after_missed_heartbeats(net: &mut Net, l: usize, deaf: usize, missed: u64) {
    run_past_heartbeat(net, l, deaf);
    net.cut.insert((l, deaf));
    let hb_ms = net.node(l).config().heartbeat_interval_ms;
    net.run_for_ms(missed * hb_ms);
    net.stop(l);
}

#[test]
fn a_crash_hinted_vote_round_keeps_an_ordinary_deadline() {
    // Issue 9: "The short retry applies only to a refused or lost PreVote;
    // the RequestVote round has an ordinary deadline." Here a vote round
    // takes 6 ms, more than crash_retry_ms (5 ms).
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 3_000);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.stop(l);
    // A dead process's last frames arrive before its EOF (DESIGN.md 3.5):
    // let the heartbeats in flight land before the hint, or one landing
    // after it would make its receiver follow the leader again.
    net.run_for_ms(4);
    let survivors: Vec<usize> = (0..5).filter(|&i| i != l).collect();
    net.events.clear();
    hint(&mut net, l, &survivors);
    // The pre-vote round trip (6 ms) is over: the primary asks for votes.
    net.run_for_ms(7);
    assert_eq!(net.node(primary).role(), Role::Candidate);
    let left_us = net.node(primary).election_deadline_us() - net.now_us;
    assert!(
        left_us > (config.follower_timeout_ms_min - 2) * 1000,
        "vote round deadline in {left_us} us"
    );
    net.run_for_ms(100);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), old_term.next(), "term inflated");
    // The pre-vote round (6 ms) may be asked twice; votes only once.
    assert_eq!(elections_by(&net, primary).1, 1);
}

#[test]
fn a_crash_hinted_pre_vote_refused_for_stickiness_is_retried_soon() {
    // Issue 9: "The short retry applies only to a refused or lost PreVote".
    // DESIGN.md 3.5: voters that have not seen the sockets close yet still
    // hold the leader's stickiness; the primary asks again crash_retry_ms
    // later, in the same term.
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.stop(l);
    net.events.clear();
    hint(&mut net, l, &[primary]);
    net.run_for_ms(1);
    assert_eq!(net.node(primary).role(), Role::Follower, "refused");
    let retry_in_us = net.node(primary).election_deadline_us() - net.now_us;
    assert!(retry_in_us <= config.crash_retry_ms * 1000, "{retry_in_us}");
    let others: Vec<usize> = (0..5).filter(|&i| i != l && i != primary).collect();
    hint(&mut net, l, &others);
    net.run_for_ms(20);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), old_term.next());
    assert_eq!(elections_by(&net, primary), (2, 1));
}

#[test]
fn a_crash_hinted_secondary_waits_while_the_primary_campaigns() {
    // Issue 9: "the secondary's crash path waits until the primary's
    // attempt has visibly failed", so that ranks never compete
    // (DESIGN.md 3.4: "Ranks are disjoint, so the election is uncontested").
    // Two voters never see the hint: they refuse the primary until their
    // stickiness runs out. With the seed's timings that is 100 ms, twice
    // crash_stagger_ms, so the secondary must keep deferring; the defaults'
    // 30 ms stickiness ends before the secondary's stagger could.
    let (mut net, l) = ranked_net_with(RaftConfig::default().seed_timings(), 5, 100);
    let old_term = net.node(l).term();
    let (primary, secondary) = (subleader(&net, l, 0), subleader(&net, l, 1));
    run_past_heartbeat(&mut net, l, primary);
    net.stop(l);
    net.events.clear();
    hint(&mut net, l, &[primary, secondary]);
    net.run_for_ms(300);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(
        won_as(&net, primary),
        Some(ElectionKind::CrashHint { rank: 0 })
    );
    assert_eq!(net.node(primary).term(), old_term.next());
    let (pre_votes, votes) = elections_by(&net, primary);
    assert!(pre_votes > 10, "the primary asked only {pre_votes} times");
    assert_eq!(votes, 1);
    assert_eq!(elections_by(&net, secondary), (0, 0), "ranks competed");
}

/// A follower of three restored from a snapshot at `snapshot_index` and
/// `tail` entries after it (term 1, everything committed), and the rank a
/// heartbeat of leader 0 naming it primary under `config_index` gives it.
fn rank_after_restart(snapshot_index: u64, tail: u64, config_index: u64) -> Option<usize> {
    let last = snapshot_index + tail;
    let restored = RestoredState {
        hard_state: HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(last),
        },
        snapshot: SnapshotMeta {
            last_index: LogIndex(snapshot_index),
            last_term: Term(1),
            config: ClusterConfig::new(ids(3)),
        },
        entries: (snapshot_index + 1..=last).map(|i| entry(i, 1)).collect(),
    };
    let mut follower = Raft::new(NodeId(1), RaftConfig::default(), restored, 7, 0);
    let heartbeat = Message {
        from: NodeId(0),
        to: NodeId(1),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(last),
            sent_at_us: 1,
            read_round: 0,
            designation: Some(Designation {
                config_index: LogIndex(config_index),
                ranks: vec![NodeId(1)],
            }),
        },
    };
    follower.step(1_000, heartbeat);
    follower.subleader_rank()
}

#[test]
fn a_follower_restored_from_a_snapshot_takes_the_rank_of_the_same_configuration() {
    // DESIGN.md 3.2: "A follower takes its rank only if the configuration
    // index is its own". A node restarted from a snapshot knows the
    // configuration by the snapshot's index (the entry was compacted),
    // while the leader still says 0 for the same configuration, or the
    // reverse. Found on real processes: ranks ignored after the first
    // snapshot, crash fast paths turned into fallback elections.
    // Ours from our snapshot at 100, the leader's entry at 0 or 90.
    assert_eq!(rank_after_restart(100, 0, 0), Some(0));
    assert_eq!(rank_after_restart(100, 0, 90), Some(0));
    assert_eq!(rank_after_restart(100, 0, 100), Some(0));
    // Ours the initial entry (0), the leader's from its snapshot at 90,
    // which we committed through.
    assert_eq!(rank_after_restart(0, 100, 90), Some(0));
    // A configuration index past what we committed: maybe a change we have
    // not seen, so no rank yet.
    assert_eq!(rank_after_restart(100, 0, 101), None);
    assert_eq!(rank_after_restart(0, 100, 101), None);
}

#[test]
fn a_secondary_ahead_of_a_primary_that_timed_out_takes_over_before_its_own_window() {
    // DESIGN.md 3.4 (issue 13): "If it loses (say it was behind), the next
    // rank tries". A leader that freezes with an Append to the primary
    // unsent leaves the primary behind every other voter; the secondary,
    // refusing the primary's pre-vote for its log while it no longer hears
    // the leader, campaigns one heartbeat later instead of at its own
    // window, in term old + 1, by PreVote and RequestVote.
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let (primary, secondary) = (subleader(&net, l, 0), subleader(&net, l, 1));
    net.cut.insert((l, primary));
    net.propose(l, b"the primary never gets this");
    net.run_for_ms(5);
    net.stop(l);
    net.events.clear();
    net.run_for_ms(config.secondary_timeout_ms_min - 10);
    assert_eq!(elections_by(&net, primary), (1, 0), "the primary's attempt");
    assert_eq!(net.leader(), Some(secondary));
    assert_eq!(
        won_as(&net, secondary),
        Some(ElectionKind::SubLeader { rank: 1 })
    );
    assert_eq!(net.node(secondary).term(), old_term.next());
    assert_eq!(elections_by(&net, secondary), (1, 1));
}

#[test]
fn a_crash_hinted_secondary_takes_over_once_the_primary_is_refused_for_its_log() {
    // Issue 9: the secondary "waits until the primary's attempt has visibly
    // failed"; a primary that a majority refuses for its log (Raft paper
    // 5.4.1) cannot win by asking again, so its attempt ends at once.
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let (primary, secondary) = (subleader(&net, l, 0), subleader(&net, l, 1));
    net.cut.insert((l, primary));
    net.propose(l, b"the primary never gets this");
    net.run_for_ms(5);
    net.stop(l);
    net.events.clear();
    let survivors: Vec<usize> = (0..5).filter(|&i| i != l).collect();
    let hinted_at = net.now_us;
    hint(&mut net, l, &survivors);
    net.run_for_ms(5);
    assert_eq!(net.node(primary).subleader_rank(), None, "rank kept");
    assert_eq!(elections_by(&net, primary), (1, 0), "futile retries");
    net.run_for_ms(config.crash_stagger_ms - 10);
    assert_eq!(elections_by(&net, secondary), (0, 0), "started too soon");
    net.run_for_ms(100);
    assert_eq!(net.leader(), Some(secondary));
    assert_eq!(
        won_as(&net, secondary),
        Some(ElectionKind::CrashHint { rank: 1 })
    );
    assert_eq!(net.node(secondary).term(), old_term.next());
    assert!(net.now_us - hinted_at >= config.crash_stagger_ms * 1000);
}

#[test]
fn stickiness_leaves_a_heartbeat_of_margin_below_the_primary_timeout() {
    // Issue 9: "the default stickiness leaves at least one heartbeat
    // interval of margin below the primary's minimum timeout (validated)".
    let config = RaftConfig::default();
    assert!(
        config.leader_stickiness_ms + config.heartbeat_interval_ms <= config.primary_timeout_ms_min
    );
    let tight = RaftConfig {
        leader_stickiness_ms: config.primary_timeout_ms_min - config.heartbeat_interval_ms + 1,
        ..config.clone()
    };
    let e = tight.validate().unwrap_err().to_string();
    for value in [
        format!("leader_stickiness_ms={}", tight.leader_stickiness_ms),
        format!("heartbeat_interval_ms={}", config.heartbeat_interval_ms),
        format!("primary_timeout_ms_min={}", config.primary_timeout_ms_min),
    ] {
        assert!(e.contains(&value), "{e}");
    }
}

#[test]
fn a_primary_that_missed_the_last_heartbeat_is_not_refused_for_stickiness() {
    // DESIGN.md 3.4: "Voters' leader stickiness ... lasts no longer than the
    // primary's shortest timeout, so a designated sub-leader is never
    // refused for it", with one heartbeat of margin (issue 9): the voters
    // heard the leader one heartbeat later than the primary did.
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.events.clear();
    stop_leader_after_missed_heartbeats(&mut net, l, primary, 1);
    net.run_for_ms(300);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(
        won_as(&net, primary),
        Some(ElectionKind::SubLeader { rank: 0 })
    );
    assert_eq!(net.node(primary).term(), old_term.next());
    assert_eq!(elections_by(&net, primary), (1, 1), "refused at first");
}

fn primary_refused_for_stickiness_keeps_its_rank(voters: usize) {
    // Issue 9: "a primary refused only for stickiness keeps its rank" and
    // asks again. It missed two heartbeats, so the voters are still sticky
    // when its timer fires.
    let (mut net, l) = ranked_net_of(voters, 100);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.events.clear();
    stop_leader_after_missed_heartbeats(&mut net, l, primary, 2);
    while elections_by(&net, primary).0 == 0 {
        net.run_for_ms(1);
    }
    net.run_for_ms(1);
    // Five voters: three refusals lose the round. Three voters: one refusal
    // and the dead leader's silence leave it undecided.
    let role = net.node(primary).role();
    assert!(
        matches!(role, Role::Follower | Role::PreCandidate),
        "{role:?}"
    );
    assert_eq!(net.node(primary).subleader_rank(), Some(0), "rank dropped");
    net.run_for_ms(300);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(
        won_as(&net, primary),
        Some(ElectionKind::SubLeader { rank: 0 })
    );
    assert_eq!(net.node(primary).term(), old_term.next());
    assert_eq!(elections_by(&net, primary), (2, 1));
    for i in (0..voters).filter(|&i| i != primary) {
        assert_eq!(elections_by(&net, i), (0, 0), "node {i} campaigned");
    }
}

#[test]
fn a_primary_refused_only_for_stickiness_keeps_its_rank_and_asks_again() {
    primary_refused_for_stickiness_keeps_its_rank(5);
}

#[test]
fn a_primary_refused_for_stickiness_in_three_voters_asks_again_within_a_heartbeat() {
    // With three voters the dead leader's silence leaves the round undecided;
    // the refused primary still asks again one heartbeat interval later.
    primary_refused_for_stickiness_keeps_its_rank(3);
}

// ---- Byte limits (DESIGN.md 7; etcd-io/raft's MaxSizePerMsg and
// MaxUncommittedEntriesSize) ------------------------------------------------

/// A command whose entry is exactly `entry_bytes` (`Entry::size_bytes`).
fn command_of_entry_bytes(entry_bytes: usize) -> Vec<u8> {
    vec![7; entry_bytes - Entry::command_size_bytes(0)]
}

fn with_limits(limits: Limits) -> RaftConfig {
    RaftConfig {
        limits,
        ..RaftConfig::default()
    }
}

#[test]
fn a_proposal_above_the_entry_limit_is_refused_at_once_on_every_node() {
    // DESIGN.md 7: "No client request can make a message that the transport
    // cannot carry": an entry above entry_bytes_max never enters the log.
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let max = net.node(l).config().limits.entry_bytes_max;
    let last = net.node(l).last_index();
    for i in 0..3 {
        let err = net
            .try_propose(i, command_of_entry_bytes(max + 1))
            .unwrap_err();
        assert_eq!(
            err,
            RequestError::TooLarge {
                entry_bytes: max + 1,
                entry_bytes_max: max
            },
            "node {i}"
        );
    }
    assert_eq!(net.node(l).last_index(), last, "nothing was appended");
    assert_eq!(net.node(l).uncommitted_bytes(), 0);
    let (index, _) = net.propose(l, &command_of_entry_bytes(max));
    net.run_for_ms(20);
    assert!(
        net.node(l).commit_index() >= index,
        "a maximal entry commits"
    );
}

#[test]
fn the_leader_refuses_proposals_beyond_its_uncommitted_bytes_until_commit_catches_up() {
    // DESIGN.md 7: "bytes of uncommitted entries on the leader (beyond it a
    // proposal is refused at once with -ERR busy)"; etcd's raft.go: "limit
    // the size of the uncommitted tail of the log and drop any proposal
    // that would push the size over the limit".
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let limits = net.node(l).config().limits.clone();
    let command = vec![1u8; 1 << 20];
    let entry_bytes = Entry::command_size_bytes(command.len());
    let fits = limits.uncommitted_bytes_max / entry_bytes;
    assert!(fits >= 2, "the default table holds several maximal values");
    // No input reaches the network between these proposals: none commits.
    for n in 0..fits {
        net.try_propose(l, command.clone())
            .unwrap_or_else(|e| panic!("proposal {n} of {fits}: {e:?}"));
    }
    let held = fits * entry_bytes;
    assert_eq!(net.node(l).uncommitted_bytes(), held);
    let last = net.node(l).last_index();
    assert_eq!(
        net.try_propose(l, command.clone()),
        Err(RequestError::UncommittedFull {
            uncommitted_bytes: held,
            uncommitted_bytes_max: limits.uncommitted_bytes_max
        })
    );
    assert_eq!(
        net.node(l).last_index(),
        last,
        "a refused proposal appends nothing"
    );
    net.flush(l);
    net.run_for_ms(50);
    assert_eq!(net.node(l).commit_index(), last);
    assert_eq!(
        net.node(l).uncommitted_bytes(),
        0,
        "commit releases the bytes"
    );
    net.propose(l, &command);
}

#[test]
fn a_proposal_when_nothing_is_uncommitted_is_accepted_if_it_fits_the_entry_limit() {
    // etcd's raft.go: "If the uncommitted tail of the Raft log is empty,
    // allow any size proposal", so one maximal entry always makes progress,
    // even when uncommitted_bytes_max leaves room for nothing else.
    let base = Limits::default();
    let limits = Limits {
        uncommitted_bytes_max: base.entry_bytes_max,
        ..base
    };
    let max = limits.entry_bytes_max;
    let mut net = Net::with_config(3, with_limits(limits));
    let l = net.elect();
    net.run_for_ms(5);
    net.try_propose(l, vec![1]).unwrap();
    let busy = net.try_propose(l, command_of_entry_bytes(max));
    assert!(
        matches!(busy, Err(RequestError::UncommittedFull { .. })),
        "{busy:?}"
    );
    net.flush(l);
    net.run_for_ms(20);
    assert_eq!(net.node(l).uncommitted_bytes(), 0);
    net.try_propose(l, command_of_entry_bytes(max))
        .expect("nothing uncommitted: a maximal entry is accepted");
    let busy = net.try_propose(l, vec![1]);
    assert!(
        matches!(busy, Err(RequestError::UncommittedFull { .. })),
        "{busy:?}"
    );
}

#[test]
fn uncommitted_bytes_start_from_zero_in_each_leadership() {
    // etcd resets uncommittedSize in becomeLeader: entries of earlier terms
    // that a new leader has yet to commit are not its proposals.
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    net.isolate(l);
    net.propose(l, &[9; 1000]);
    assert!(net.node(l).uncommitted_bytes() > 0);
    net.run_for_ms(1_500);
    assert_ne!(net.node(l).role(), Role::Leader, "lost its quorum");
    assert_eq!(net.node(l).uncommitted_bytes(), 0);
    let new = net.leader().expect("the other two elect a leader");
    assert_eq!(net.node(new).uncommitted_bytes(), 0);
}

#[test]
fn an_append_carries_at_most_the_message_limit_and_fits_one_frame() {
    // DESIGN.md 7: "entry max <= bytes per append message <= frame_bytes_max":
    // the leader splits a backlog into Appends of at most append_bytes_max
    // of entries, and each, framed, fits frame_bytes_max.
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let limits = net.node(l).config().limits.clone();
    let before = net.sent.len();
    for n in 0..20u8 {
        // Queued without a flush in between: one backlog to split.
        net.try_propose(l, vec![n; 300 << 10]).unwrap();
    }
    net.flush(l);
    net.run_for_ms(50);
    let mut batched = 0;
    for m in &net.sent[before..] {
        let MessageBody::Append { entries, .. } = &m.body else {
            continue;
        };
        let entry_bytes: usize = entries.iter().map(Entry::size_bytes).sum();
        assert!(
            entry_bytes <= limits.append_bytes_max,
            "Append of {entry_bytes} entry bytes above {}",
            limits.append_bytes_max
        );
        let mut buf = Vec::new();
        let frame_bytes = encode_frame(&PeerFrame::Message(m.clone()), &mut buf);
        assert!(
            frame_bytes <= limits.frame_bytes_max,
            "frame of {frame_bytes} bytes above {}",
            limits.frame_bytes_max
        );
        batched += usize::from(entries.len() > 1);
    }
    assert!(batched > 0, "some Appends carried several entries");
    assert!(net.node(l).commit_index() >= net.node(l).last_index());
}

// ---- Snapshots and log compaction (Raft paper 7, Figure 13; DESIGN.md 5) --

fn snapshot_config(entries: u64, chunk_bytes: usize) -> RaftConfig {
    let limits = Limits {
        snapshot_chunk_bytes: chunk_bytes,
        ..Limits::default()
    };
    RaftConfig {
        snapshot_entries: entries,
        limits,
        ..RaftConfig::default()
    }
}

/// A 3-node cluster snapshotting every 10 entries with 5-byte chunks, and
/// a follower cut off while 40 entries commit: the leader's log no longer
/// holds what it needs. Returns (net, leader, follower), links still cut.
fn follower_cut_off_past_the_compacted_log() -> (Net, usize, usize) {
    let mut net = Net::with_config(3, snapshot_config(10, 5));
    let l = net.elect();
    net.run_for_ms(5);
    let f = (l + 1) % 3;
    net.cut.insert((l, f));
    net.cut.insert((f, l));
    for i in 0..40u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    (net, l, f)
}

fn installs(net: &Net, i: usize) -> usize {
    net.events
        .iter()
        .filter(|(n, e)| *n == i && matches!(e, Event::SnapshotInstalled { .. }))
        .count()
}

fn chunks_to(net: &Net, i: usize, from: usize) -> Vec<u64> {
    net.sent[from..]
        .iter()
        .filter(|m| m.to == NodeId(i as u64))
        .filter_map(|m| match &m.body {
            MessageBody::InstallSnapshot { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect()
}

#[test]
fn the_leader_compacts_its_log_after_snapshot_entries_applied() {
    let mut net = Net::with_config(3, snapshot_config(10, 1 << 20));
    let l = net.elect();
    for i in 0..35u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    for i in 0..3 {
        let raft = net.node(i);
        assert_eq!(
            raft.applied_index(),
            raft.last_index(),
            "node {i} applied all"
        );
        let first = raft.log_first_index();
        assert!(
            first.0 > 30,
            "node {i} kept its log from {first} (applied {})",
            raft.applied_index()
        );
        assert_eq!(raft.snapshot_meta().last_index, first.prev());
        assert!(raft.last_index().0 - raft.snapshot_meta().last_index.0 < 10);
    }
}

/// A follower that missed entries the leader compacted away gets the
/// snapshot in chunks, installs it (its log did not hold the snapshot's
/// last entry, so it discards its log), and replicates from there.
#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_chunked_snapshot() {
    let (mut net, l, f) = follower_cut_off_past_the_compacted_log();
    assert!(net.node(l).log_first_index() > net.node(f).last_index().next());
    let before = net.sent.len();
    net.cut.clear();
    net.run_for_ms(300);
    let offsets = chunks_to(&net, f, before);
    assert_eq!(
        offsets,
        vec![0, 5, 10, 15],
        "a 16-byte file in 5-byte chunks"
    );
    assert_eq!(installs(&net, f), 1);
    assert_eq!(net.node(f).applied_index(), net.node(l).applied_index());
    assert!(net.nodes[f].state_machine().0 >= net.node(f).snapshot_meta().last_index);
    // And it keeps replicating after the snapshot.
    let (index, _) = net.propose(l, b"after");
    net.run_for_ms(100);
    assert_eq!(net.node(f).commit_index(), index);
    assert_eq!(net.node(f).term(), net.node(l).term(), "no election");
}

/// A follower whose data dir was wiped (outside Raft's failure model, but
/// an operator's mistake to survive) answers the leader's heartbeat with
/// the log it has left; the leader replicates to it again, by snapshot,
/// without waiting for a new write.
#[test]
fn a_wiped_follower_is_caught_up_without_a_new_write() {
    let mut net = Net::with_config(3, snapshot_config(10, 1 << 20));
    let l = net.elect();
    for i in 0..35u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    let f = (l + 1) % 3;
    let applied = net.node(l).applied_index();
    assert_eq!(net.node(f).applied_index(), applied);
    // The same id, an empty disk.
    let cluster = ClusterConfig::new(ids(3));
    let (storage, restored) = MemStorage::new(cluster);
    let raft = Raft::new(
        NodeId(f as u64),
        snapshot_config(10, 1 << 20),
        restored,
        77,
        net.now_us,
    );
    net.nodes[f] = Node::new(raft, SyncWriter(storage), Vec::new(), LastIndex::default());
    net.run_for_ms(300);
    assert_eq!(installs(&net, f), 1, "caught up by InstallSnapshot");
    assert_eq!(net.node(f).applied_index(), applied);
    assert!(net.nodes[f].state_machine().0 >= net.node(f).snapshot_meta().last_index);
}

/// A lost first chunk: the follower rejects the next one (it does not start
/// at what it holds), and the leader resends from offset 0.
#[test]
fn a_lost_snapshot_chunk_is_resent_from_what_the_follower_holds() {
    let (mut net, l, f) = follower_cut_off_past_the_compacted_log();
    net.cut.clear();
    let before = net.sent.len();
    let mut dropped = false;
    for _ in 0..20_000 {
        let step = net.now_us + 50;
        net.run_until(step);
        let first_chunk = net.queue.iter().find_map(|(k, m)| match &m.body {
            MessageBody::InstallSnapshot { offset: 0, .. } if m.to == NodeId(f as u64) => Some(*k),
            _ => None,
        });
        if let Some(key) = first_chunk {
            net.queue.remove(&key);
            dropped = true;
            break;
        }
    }
    assert!(dropped, "no snapshot chunk was sent");
    net.run_for_ms(500);
    let offsets = chunks_to(&net, f, before);
    assert_eq!(
        offsets.iter().filter(|o| **o == 0).count(),
        2,
        "{offsets:?}"
    );
    assert_eq!(installs(&net, f), 1);
    assert_eq!(net.node(f).applied_index(), net.node(l).applied_index());
}

/// Raft paper Figure 13 step 6: a follower whose log already holds the
/// snapshot's last entry keeps the entries after it.
#[test]
fn a_follower_holding_the_snapshot_entry_keeps_the_entries_after_it() {
    let mut net = Net::with_config(3, snapshot_config(1000, 1 << 20));
    let l = net.elect();
    net.run_for_ms(5);
    for i in 0..5u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(20);
    let f = (l + 1) % 3;
    let raft = net.nodes[f].raft();
    let last = raft.last_index();
    let meta = SnapshotMeta {
        last_index: LogIndex(3),
        last_term: raft.term_at(LogIndex(3)).unwrap(),
        config: raft.cluster().clone(),
    };
    let mut follower = Raft::new(
        NodeId(9),
        RaftConfig::default(),
        RestoredState {
            hard_state: HardState {
                term: net.node(l).term(),
                vote: None,
                commit: LogIndex(1),
            },
            snapshot: SnapshotMeta {
                last_index: LogIndex(0),
                last_term: Term(0),
                config: ClusterConfig::new(vec![NodeId(l as u64), NodeId(9)]),
            },
            entries: (1..=last.0)
                .map(|i| net.nodes[f].raft().entry(LogIndex(i)).unwrap().clone())
                .collect(),
        },
        7,
        0,
    );
    let term = follower.term();
    let data = {
        // The LastIndex snapshot file of MemSnapshots: length, then index 3.
        let mut file = 8u64.to_le_bytes().to_vec();
        file.extend_from_slice(&3u64.to_le_bytes());
        file
    };
    follower.step(
        1,
        Message {
            from: NodeId(l as u64),
            to: NodeId(9),
            term,
            body: MessageBody::InstallSnapshot {
                meta: meta.clone(),
                file_bytes: data.len() as u64,
                offset: 0,
                data: data.clone(),
            },
        },
    );
    let rd = follower.ready();
    assert_eq!(rd.chunks_received.len(), 1);
    assert!(rd.chunks_received[0].is_last());
    follower.snapshot_installed(2, meta, data.len() as u64);
    let rd = follower.ready();
    assert_eq!(
        rd.log_reset, None,
        "the entries after the snapshot are kept"
    );
    assert_eq!(follower.last_index(), last);
    assert_eq!(follower.log_first_index(), LogIndex(4));
    assert_eq!(follower.commit_index(), LogIndex(3));
    assert!(
        rd.messages_after_persist.iter().any(|m| matches!(
            m.body,
            MessageBody::AppendReply {
                success: true,
                index: LogIndex(3),
                ..
            }
        )),
        "the install is acknowledged as a match, after the persist"
    );
}

/// A transfer belongs to its leader's term: chunks of an older transfer
/// after a term change start nothing.
#[test]
fn a_snapshot_transfer_is_abandoned_on_a_term_change() {
    let meta = SnapshotMeta {
        last_index: LogIndex(50),
        last_term: Term(1),
        config: ClusterConfig::new(ids(3)),
    };
    let restored = RestoredState::fresh(ClusterConfig::new(ids(3)));
    let mut f = Raft::new(NodeId(1), RaftConfig::default(), restored, 3, 0);
    let chunk = |term: u64, offset: u64| Message {
        from: NodeId(0),
        to: NodeId(1),
        term: Term(term),
        body: MessageBody::InstallSnapshot {
            meta: meta.clone(),
            file_bytes: 10,
            offset,
            data: vec![1; 5],
        },
    };
    f.step(1, chunk(1, 0));
    assert_eq!(f.ready().chunks_received.len(), 1);
    // A new leader in term 2; the old leader's second chunk is stale.
    f.step(
        2,
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(2),
            body: MessageBody::Heartbeat {
                commit: LogIndex(0),
                sent_at_us: 0,
                read_round: 0,
                designation: None,
            },
        },
    );
    f.step(3, chunk(1, 5));
    let rd = f.ready();
    assert!(rd.chunks_received.is_empty(), "a stale term's chunk");
    // The new leader's own transfer must start at offset 0.
    f.step(4, chunk(2, 5));
    let rd = f.ready();
    assert!(
        rd.chunks_received.is_empty(),
        "no transfer under way in term 2"
    );
    assert!(rd.messages.iter().any(|m| matches!(
        m.body,
        MessageBody::InstallSnapshotReply {
            next_offset: 0,
            rejected: true,
            ..
        }
    )));
}

/// The install's acknowledgement is lost: every chunk was acknowledged, so
/// nothing is left to resend; after a stall the leader probes the follower's
/// log again instead of waiting forever (found by the simulator, seeds 55
/// and 201).
#[test]
fn a_lost_install_acknowledgement_ends_in_a_probe_not_a_stall() {
    let (mut net, l, f) = follower_cut_off_past_the_compacted_log();
    net.cut.clear();
    let mut dropped = false;
    for _ in 0..20_000 {
        let step = net.now_us + 50;
        net.run_until(step);
        let ack = net.queue.iter().find_map(|(k, m)| match &m.body {
            MessageBody::AppendReply { success: true, .. }
                if m.from == NodeId(f as u64) && installs(&net, f) == 1 =>
            {
                Some(*k)
            }
            _ => None,
        });
        if let Some(key) = ack {
            net.queue.remove(&key);
            dropped = true;
            break;
        }
    }
    assert!(dropped, "no install acknowledgement was sent");
    let (index, _) = net.propose(l, b"after");
    net.run_for_ms(500);
    assert_eq!(installs(&net, f), 1, "installed once");
    assert_eq!(net.node(f).commit_index(), index, "replicating again");
}

// ---- Membership (DESIGN.md 8; Raft thesis 4) --------------------------------

impl Net {
    /// Proposes `change` through node `i`'s driver; the refusal if refused.
    fn change(
        &mut self,
        i: usize,
        change: ConfChange,
    ) -> Result<(LogIndex, Term), ConfChangeError> {
        let ticket = self.conf_answers.len() as u64 + 1000;
        if let Some(at) = self.nodes[i].propose_conf_change(self.now_us, change, ticket) {
            self.flush(i);
            return Ok(at);
        }
        let (_, refusal) = self.nodes[i]
            .take_conf_answers()
            .pop()
            .expect("refused at once");
        match refusal {
            Err(ConfChangeFailure::Refused(e)) => Err(e),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Proposes `change` and runs until it is committed on the leader.
    fn change_committed(&mut self, i: usize, change: ConfChange) -> LogIndex {
        let (index, _) = self.change(i, change.clone()).expect("change accepted");
        for _ in 0..200 {
            self.run_for_ms(5);
            if self.node(i).commit_index() >= index {
                return index;
            }
        }
        panic!("{change:?} at {index} not committed");
    }

    fn learner(id: u64) -> ConfChange {
        ConfChange::AddLearner {
            id: NodeId(id),
            addrs: MemberAddrs {
                peer_addr: format!("10.0.0.{id}:5000"),
                client_addr: format!("10.0.0.{id}:6000"),
            },
        }
    }

    fn campaigned(&self, i: usize) -> bool {
        self.sent.iter().any(|m| {
            m.from == NodeId(i as u64)
                && matches!(
                    m.body,
                    MessageBody::PreVote { .. } | MessageBody::Vote { .. }
                )
        })
    }
}

#[test]
fn a_learner_receives_the_log_but_never_campaigns_or_counts() {
    // Thesis 4.2.1: new servers join as non-voting members until caught up.
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let leader = net.elect();
    net.change_committed(leader, Net::learner(3));
    let (index, _) = net.propose(leader, b"x");
    net.run_for_ms(200);
    assert!(net.node(3).is_learner());
    assert_eq!(net.node(3).term_at(index), net.node(leader).term_at(index));
    assert_eq!(
        net.node(3).cluster().addrs_of(NodeId(3)).client_addr,
        "10.0.0.3:6000"
    );
    // With the leader and one voter gone, the learner is no majority: nothing
    // commits, and it never asks for a vote however long the silence.
    let other = (0..3).find(|i| *i != leader).unwrap();
    net.stop(leader);
    net.stop(other);
    net.run_for_ms(5_000);
    assert!(!net.campaigned(3), "a learner started an election");
    assert_eq!(net.node(3).role(), Role::Follower);
    let members = net.node(3).members();
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3);
    assert!(members.iter().any(|m| m.id == NodeId(3) && !m.voter));
}

#[test]
fn a_promoted_learner_votes_and_counts_toward_commit() {
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let leader = net.elect();
    net.change_committed(leader, Net::learner(3));
    net.run_for_ms(100);
    assert!(net.node(leader).is_caught_up(NodeId(3)));
    let index = net.change_committed(leader, ConfChange::Promote { id: NodeId(3) });
    let answer = net.conf_answers.iter().find_map(|(_, _, r)| match r {
        Ok(done) if done.index == index => Some(done.config.clone()),
        _ => None,
    });
    assert_eq!(answer.expect("answered when applied").voters, ids(4));
    // Four voters: a quorum is three, so the leader and the new voter and
    // one more commit; with two stopped nothing would.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    net.stop(others[0]);
    let (index, _) = net.propose(leader, b"y");
    net.run_for_ms(100);
    assert!(net.node(leader).commit_index() >= index);
    net.stop(others[1]);
    let (index, _) = net.propose(leader, b"z");
    net.run_for_ms(100);
    assert!(
        net.node(leader).commit_index() < index,
        "two of four voters committed"
    );
}

#[test]
fn a_change_waits_for_the_leaders_first_commit_and_for_the_previous_change() {
    // Thesis 4 errata: "a leader may not append a new configuration entry
    // until it has committed an entry from its current term".
    let mut net = Net::with_voters(5, 3, RaftConfig::default());
    let leader = loop {
        net.run_until(net.now_us + 50);
        if let Some(l) = net.leader() {
            break l;
        }
    };
    assert_eq!(
        net.change(leader, Net::learner(3)),
        Err(ConfChangeError::LeaderNotReady)
    );
    net.run_for_ms(50);
    let (index, _) = net.change(leader, Net::learner(3)).expect("accepted");
    assert_eq!(
        net.change(leader, Net::learner(4)),
        Err(ConfChangeError::ChangeInFlight { index })
    );
    net.run_for_ms(50);
    net.change(leader, Net::learner(4))
        .expect("the first committed");
}

#[test]
fn bad_changes_are_refused_with_a_reason_and_change_nothing() {
    let mut net = Net::with_voters(3, 1, RaftConfig::default());
    let leader = net.elect();
    let before = net.node(leader).cluster().clone();
    let refusals = [
        (
            ConfChange::Remove { id: NodeId(0) },
            ConfChangeError::LastVoter(NodeId(0)),
        ),
        (Net::learner(0), ConfChangeError::AlreadyMember(NodeId(0))),
        (
            ConfChange::Remove { id: NodeId(7) },
            ConfChangeError::NotMember(NodeId(7)),
        ),
        (
            ConfChange::Promote { id: NodeId(7) },
            ConfChangeError::NotMember(NodeId(7)),
        ),
        (
            ConfChange::Promote { id: NodeId(0) },
            ConfChangeError::NotLearner(NodeId(0)),
        ),
    ];
    for (change, expected) in refusals {
        let refused = net.change(leader, change).expect_err("refused");
        assert_eq!(refused, expected);
        let line = refused.to_string();
        assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
    }
    assert_eq!(net.node(leader).cluster(), &before);
    assert!(matches!(
        net.change(1, Net::learner(1)),
        Err(ConfChangeError::NotLeader { .. })
    ));
}

#[test]
fn a_removed_leader_leads_until_the_change_commits_then_hands_over() {
    // Thesis 4.2.2: the removed leader manages the cluster until the
    // configuration commits, then steps down.
    let mut net = Net::new(3);
    let leader = net.elect();
    let index = net.change_committed(
        leader,
        ConfChange::Remove {
            id: NodeId(leader as u64),
        },
    );
    net.run_for_ms(500);
    let new_leader = net.leader().expect("a new leader");
    assert_ne!(new_leader, leader);
    assert_eq!(net.node(new_leader).cluster().voters.len(), 2);
    assert!(net.node(new_leader).commit_index() >= index);
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == leader && *e == Event::RemovedSelf { index })
    );
    assert!(net.events.iter().any(|(i, e)| *i == new_leader
        && matches!(
            e,
            Event::BecameLeader {
                kind: ElectionKind::Transfer,
                ..
            }
        )));
    // The removed node never campaigns again, and the rest go on.
    let sent_before = net.sent.len();
    net.run_for_ms(3_000);
    assert!(
        net.sent[sent_before..]
            .iter()
            .all(|m| m.from != NodeId(leader as u64)
                || !matches!(
                    m.body,
                    MessageBody::PreVote { .. } | MessageBody::Vote { .. }
                ))
    );
    let (index, _) = net.propose(new_leader, b"after");
    net.run_for_ms(100);
    assert!(net.node(new_leader).commit_index() >= index);
}

#[test]
fn a_removed_follower_learns_that_its_removal_committed() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let gone = (leader + 1) % 3;
    let index = net.change_committed(
        leader,
        ConfChange::Remove {
            id: NodeId(gone as u64),
        },
    );
    net.run_for_ms(300);
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == gone && *e == Event::RemovedSelf { index })
    );
    assert!(!net.node(gone).cluster().is_member(NodeId(gone as u64)));
    assert_eq!(
        net.node(leader).match_index(NodeId(gone as u64)),
        None,
        "still replicated to"
    );
}

#[test]
fn a_configuration_takes_effect_when_appended_and_is_rolled_back_when_truncated() {
    // Thesis 4.1: "a server always uses the latest configuration in its
    // log, regardless of whether the entry is committed".
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let old = net.elect();
    net.isolate(old);
    net.change(old, Net::learner(3))
        .expect("accepted while cut off");
    assert!(net.node(old).cluster().is_learner(NodeId(3)));
    let original = ClusterConfig::new(ids(3));
    net.run_for_ms(3_000);
    let new = net
        .leader()
        .filter(|l| *l != old)
        .expect("the majority elects");
    net.propose(new, b"other");
    net.cut.clear();
    net.run_for_ms(1_000);
    assert_eq!(
        net.node(old).cluster(),
        &original,
        "the truncated change is rolled back"
    );
    assert!(net.events.iter().any(|(i, e)| *i == old
        && matches!(e, Event::ConfigChanged { config, .. } if *config == original)));
}

#[test]
fn a_learner_restarted_before_its_own_addition_does_not_take_itself_for_removed() {
    // DESIGN.md 8: only a node some configuration named reports its removal
    // (simulator membership seed 56: a learner got entries before the one
    // that added it, restarted, and stopped itself).
    let hard_state = HardState {
        term: Term(1),
        vote: None,
        commit: LogIndex(1),
    };
    let config = Entry {
        term: Term(1),
        index: LogIndex(1),
        payload: EntryPayload::Config(ClusterConfig::new(ids(3))),
    };
    let mut joiner = restored_node(4, hard_state, vec![config.clone()]);
    let rd = joiner.ready();
    assert!(
        !rd.events
            .iter()
            .any(|e| matches!(e, Event::RemovedSelf { .. })),
        "{:?}",
        rd.events
    );
    // A node that a configuration in its log named, and a later committed
    // one left out, does report it.
    let mut named = ClusterConfig::new(ids(3));
    named.learners.push(NodeId(4));
    let entries = vec![
        Entry {
            payload: EntryPayload::Config(named),
            ..config.clone()
        },
        Entry {
            index: LogIndex(2),
            ..config
        },
    ];
    let hard_state = HardState {
        commit: LogIndex(2),
        ..hard_state
    };
    let mut removed = restored_node(4, hard_state, entries);
    let rd = removed.ready();
    assert!(
        rd.events
            .contains(&Event::RemovedSelf { index: LogIndex(2) })
    );
}

#[test]
fn a_change_overwritten_by_another_leader_is_answered_as_lost() {
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let old = net.elect();
    net.isolate(old);
    net.change(old, Net::learner(3))
        .expect("accepted while cut off");
    net.run_for_ms(3_000);
    let new = net
        .leader()
        .filter(|l| *l != old)
        .expect("the majority elects");
    net.propose(new, b"other");
    net.cut.clear();
    net.run_for_ms(1_000);
    assert!(
        net.conf_answers
            .iter()
            .any(|(i, _, r)| *i == old && *r == Err(ConfChangeFailure::LeadershipLost)),
        "{:?}",
        net.conf_answers
    );
}

// ---- Lease reads (DESIGN.md 3.8) -------------------------------------------

fn lease_config() -> RaftConfig {
    RaftConfig {
        read_mode: ReadMode::Lease,
        ..RaftConfig::default()
    }
}

/// Whether a heartbeat of a ReadIndex round left since `before`.
fn read_round_sent(net: &Net, before: usize) -> bool {
    net.sent[before..]
        .iter()
        .any(|m| matches!(m.body, MessageBody::Heartbeat { read_round, .. } if read_round > 0))
}

fn vote_request(from: usize, to: usize, term: Term, last: (LogIndex, Term)) -> Message {
    msg(
        from as u64,
        to as u64,
        term.0,
        MessageBody::Vote {
            last_index: last.0,
            last_term: last.1,
            transfer: false,
        },
    )
}

fn granted(out: &[Message]) -> bool {
    out.iter()
        .any(|m| matches!(m.body, MessageBody::VoteReply { granted: true }))
}

#[test]
fn a_lease_read_is_served_without_a_heartbeat_round() {
    // DESIGN.md 3.8: "a leader serves reads locally while it holds a lease".
    let mut net = Net::with_config(3, lease_config());
    let l = net.elect();
    net.run_for_ms(20);
    assert!(net.node(l).lease_valid());
    let before = net.sent.len();
    net.read(l, 1);
    assert_eq!(net.answers.len(), 1, "served at once");
    assert!(!read_round_sent(&net, before), "no heartbeat round");
    assert_eq!(net.node(l).lease_reads_served(), 1);
}

#[test]
fn read_index_stays_the_default() {
    assert_eq!(RaftConfig::default().read_mode, ReadMode::ReadIndex);
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(20);
    assert!(!net.node(l).lease_valid());
    net.read(l, 1);
    assert!(net.answers.is_empty(), "served before a heartbeat round");
}

#[test]
fn a_lease_expires_when_the_quorum_stops_answering() {
    // DESIGN.md 3.8: the lease ends `lease_duration_us` after the send time
    // of the last round a quorum acknowledged, on the leader's clock.
    let mut net = Net::with_config(3, lease_config());
    let l = net.elect();
    net.run_for_ms(20);
    net.isolate(l);
    let isolated_at = net.now_us;
    net.run_for_ms(1);
    assert!(net.node(l).lease_valid(), "acknowledged 1 ms ago");
    let lease_us = lease_config().lease_duration_us();
    assert_eq!(lease_us, 30_000 * 1_000_000 / 1_050_000 - 2);
    net.run_until(isolated_at + lease_us + 1);
    assert!(!net.node(l).lease_valid(), "lease outlived its last round");
    let before = net.sent.len();
    net.read(l, 2);
    assert!(net.answers.is_empty(), "served on an expired lease");
    assert!(read_round_sent(&net, before), "falls back to ReadIndex");
}

#[test]
fn no_lease_read_before_the_first_entry_of_the_term_commits() {
    // DESIGN.md 3.8, as thesis 6.4 step 1 for ReadIndex: a new leader's
    // commit index may lag the writes of earlier leaders until its own
    // first entry commits.
    // A transfer makes a new leader at a known moment: catch it before
    // its no-op commits.
    let mut net = Net::with_config(3, lease_config());
    let first = net.elect();
    net.run_for_ms(20);
    let target = (first + 1) % 3;
    net.nodes[first]
        .transfer_leadership(net.now_us, Some(NodeId(target as u64)))
        .unwrap();
    net.flush(first);
    while net.node(target).role() != Role::Leader {
        net.run_until(net.now_us + 50);
    }
    let t = net.node(target);
    assert_ne!(
        t.term_at(t.commit_index()),
        Some(t.term()),
        "no-op committed already"
    );
    assert!(!t.lease_valid(), "lease before the no-op committed");
    net.read(target, 3);
    assert!(net.answers.is_empty(), "served before the no-op committed");
    net.run_for_ms(5);
    assert_eq!(net.answers.len(), 1, "served once the no-op committed");
}

#[test]
fn no_lease_read_once_timeout_now_is_sent_or_the_leader_steps_down() {
    // DESIGN.md 3.8: voters grant a transfer's votes inside their promise,
    // so the lease ends when TimeoutNow leaves, for the rest of the term.
    let mut net = Net::with_config(3, lease_config());
    let l = net.elect();
    net.run_for_ms(20);
    assert!(net.node(l).lease_valid());
    let target = (l + 1) % 3;
    net.cut.insert((l, target)); // TimeoutNow is sent but never arrives
    net.nodes[l]
        .transfer_leadership(net.now_us, Some(NodeId(target as u64)))
        .unwrap();
    net.flush(l);
    assert!(
        net.sent
            .iter()
            .any(|m| matches!(m.body, MessageBody::TimeoutNow)),
        "TimeoutNow left"
    );
    assert_eq!(net.node(l).role(), Role::Leader);
    assert!(!net.node(l).lease_valid(), "lease after TimeoutNow");
    net.run_for_ms(200); // the transfer times out; the term goes on
    assert_eq!(net.node(l).role(), Role::Leader);
    assert!(!net.node(l).lease_valid(), "lease again in the same term");
    // A leader that steps down (here for a reply of a higher term) holds
    // no lease either.
    let term = net.node(l).term();
    let other = (l + 2) % 3;
    let reply = MessageBody::HeartbeatReply {
        sent_at_us: net.now_us,
        read_round: 0,
        log_lost: None,
    };
    net.nodes[l].step(net.now_us, msg(other as u64, l as u64, term.0 + 1, reply));
    net.flush(l);
    assert_ne!(net.node(l).role(), Role::Leader);
    assert!(!net.node(l).lease_valid());
}

#[test]
fn a_voter_refuses_votes_during_its_promise_even_with_a_crash_hint() {
    // DESIGN.md 3.8: "a crash hint must never shorten a voter's promise to
    // the lease holder". In ReadIndex mode the hint drops stickiness
    // (DESIGN.md 3.5); in lease mode the promise stays.
    for (config, refused) in [(lease_config(), true), (RaftConfig::default(), false)] {
        let mut net = Net::with_config(3, config);
        let l = net.elect();
        net.run_for_ms(20);
        let (voter, candidate) = ((l + 1) % 3, (l + 2) % 3);
        net.isolate(l);
        // The candidate is only the messages below: the voter cannot win.
        net.stop(candidate);
        net.nodes[voter].peer_unreachable(net.now_us, NodeId(l as u64));
        net.flush(voter);
        let term = net.node(voter).term();
        let last = (net.node(voter).last_index(), term);
        let out = net.exchange(voter, vote_request(candidate, voter, term.next(), last));
        assert_eq!(granted(&out), !refused, "{out:?}");
        if refused {
            assert_eq!(
                net.node(voter).term(),
                term,
                "term bumped inside the promise"
            );
            // Once the promise is over, the same request is granted.
            net.run_for_ms(31);
            let term = net.node(voter).term();
            let last = (
                net.node(voter).last_index(),
                net.node(voter)
                    .term_at(net.node(voter).last_index())
                    .unwrap(),
            );
            let out = net.exchange(voter, vote_request(candidate, voter, term.next(), last));
            assert!(granted(&out), "refused after the promise: {out:?}");
        }
    }
}

#[test]
fn a_crash_hinted_primary_campaigns_only_when_its_promise_ends() {
    // DESIGN.md 3.8: our own vote is a vote; the crash fast path waits for
    // the promise, and then wins as before (term + 1, the primary).
    let (mut net, l) = ranked_net_with(lease_config(), 5, 100);
    let primary = subleader(&net, l, 0);
    let term = net.node(l).term();
    net.stop(l);
    let at = net.now_us;
    for i in (0..5).filter(|i| *i != l) {
        net.nodes[i].peer_unreachable(at, NodeId(l as u64));
        net.flush(i);
    }
    net.run_for_ms(3);
    assert_eq!(
        net.node(primary).role(),
        Role::Follower,
        "campaigned inside its promise"
    );
    assert_eq!(net.node(primary).term(), term);
    net.run_for_ms(40);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), term.next());
}

#[test]
fn a_restarted_voter_keeps_a_promise_from_boot() {
    // DESIGN.md 3.8: a restart forgets when it last heard the leader, so
    // it promises a whole window from boot.
    let restored = RestoredState::fresh(ClusterConfig::new(ids(3)));
    let boot_us = 5_000_000;
    let mut voter = Raft::new(NodeId(1), lease_config(), restored, 7, boot_us);
    let vote = |at_us: u64, voter: &mut Raft| {
        voter.step(
            at_us,
            vote_request(2, 1, Term(voter.term().0 + 1), (LogIndex(0), Term(0))),
        );
        granted(&replies(&voter.ready()))
    };
    assert!(
        !vote(boot_us + 29_999, &mut voter),
        "voted inside the boot promise"
    );
    assert!(
        vote(boot_us + 30_000, &mut voter),
        "refused after the boot promise"
    );
}

#[test]
fn without_the_promise_a_spurious_hint_lets_a_cut_off_leader_read_stale() {
    // Why DESIGN.md 3.8 binds the voters, not the timers: a live leader is
    // cut off and its followers are told it is gone. With voters that drop
    // their stickiness on the hint (the test-only mutation) its successor
    // commits within a millisecond while its lease runs on; with the
    // promise, the successor waits until the lease is over.
    for mutated in [true, false] {
        let mut config = lease_config();
        config.mutations.lease_without_voter_promise = mutated;
        let (mut net, l) = ranked_net_with(config, 3, 100);
        let term = net.node(l).term();
        net.isolate(l);
        let at = net.now_us;
        for i in (0..3).filter(|i| *i != l) {
            net.nodes[i].peer_unreachable(at, NodeId(l as u64));
            net.flush(i);
        }
        let (mut stale, mut successor) = (false, false);
        for _ in 0..1200 {
            net.run_until(net.now_us + 50);
            successor |= (0..3).any(|i| {
                let r = net.node(i);
                r.role() == Role::Leader
                    && r.term() > term
                    && r.term_at(r.commit_index()) == Some(r.term())
            });
            stale |= successor && net.node(l).lease_valid();
        }
        assert!(successor, "mutated={mutated}: nobody took over");
        assert_eq!(stale, mutated, "mutated={mutated}");
    }
}
