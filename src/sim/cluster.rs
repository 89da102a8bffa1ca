//! The simulated cluster: nodes running the real core over a simulated
//! network and simulated durable storage, driven by one event queue.

use super::checker::{Checker, chain_hash, check_hard_state_transition, fnv1a};
use super::net::{NetConfig, Partitions};
use crate::core::{
    ClusterConfig, Entry, Event, HardState, LogIndex, Message, MessageBody, NodeId, ProposeError,
    Raft, RaftConfig, ReadError, ReadState, Ready, RestoredState, Role, Term,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub raft: RaftConfig,
    pub net: NetConfig,
    /// Each node's clock runs at 1 +- up to this many parts per million.
    pub clock_skew_ppm_max: u64,
    /// Time an fsync takes: messages that wait for the persist leave later.
    pub fsync_us: u64,
    /// Deliver the crash fast path's hint (EOF + refused reconnect) to the
    /// survivors of a crash, as the runtime's transport does for SIGKILL.
    pub crash_hints: bool,
    /// Recent events kept for the failure report.
    pub trace_len: usize,
}

impl SimConfig {
    pub fn new(nodes: usize, seed: u64) -> SimConfig {
        SimConfig {
            nodes,
            seed,
            raft: RaftConfig::default(),
            net: NetConfig::lan(),
            clock_skew_ppm_max: 0,
            fsync_us: 0,
            crash_hints: false,
            trace_len: 80,
        }
    }
}

enum SimEvent {
    Deliver(Message),
    Tick {
        node: usize,
        token: u64,
    },
    Hint {
        node: usize,
        dead: NodeId,
        incarnation: u64,
    },
}

/// What survives a crash: the persisted hard state and log.
#[derive(Default)]
struct Durable {
    hard_state: HardState,
    entries: Vec<Entry>,
    /// chains[i] is the chain hash of entries[..=i].
    chains: Vec<u64>,
}

impl Durable {
    fn store(&mut self, node: NodeId, entries: &[Entry], checker: &mut Checker) {
        let Some(first) = entries.first() else { return };
        let keep = (first.index.0 - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "node {node}: gap in persisted log at {}",
            first.index
        );
        self.entries.truncate(keep);
        self.chains.truncate(keep);
        for entry in entries {
            let prev = self.chains.last().copied().unwrap_or(0);
            let chain = chain_hash(prev, entry);
            checker.on_stored(node, entry, chain);
            self.entries.push(entry.clone());
            self.chains.push(chain);
        }
    }
}

pub struct SimNode {
    pub id: NodeId,
    pub raft: Option<Raft>,
    durable: Durable,
    skew_ppm: i64,
    tick_token: u64,
    pub incarnation: u64,
    /// Hash of the applied command sequence: the "state machine".
    pub state_hash: u64,
    pub applied: LogIndex,
}

/// One applied entry, for the client model: (node, index, term, command).
pub type Applied = (NodeId, LogIndex, Term, Option<Vec<u8>>);

pub struct Cluster {
    pub config: SimConfig,
    pub now_us: u64,
    pub rng: StdRng,
    seq: u64,
    queue: BTreeMap<(u64, u64), SimEvent>,
    pub nodes: Vec<SimNode>,
    pub net: NetConfig,
    pub partitions: Partitions,
    pub checker: Checker,
    trace: VecDeque<String>,
    pub trace_hash: u64,
    /// Core events with their global time, for experiments; drained by callers.
    pub events: Vec<(u64, NodeId, Event)>,
    pub applied: Vec<Applied>,
    pub reads: Vec<(NodeId, ReadState)>,
    pub reads_dropped: Vec<(NodeId, u64)>,
    pub steps: u64,
}

impl Cluster {
    pub fn new(config: SimConfig) -> Cluster {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let voters = ClusterConfig::new((0..config.nodes as u64).map(NodeId).collect());
        let mut nodes = Vec::new();
        for i in 0..config.nodes {
            let skew = config.clock_skew_ppm_max as i64;
            let skew_ppm = if skew > 0 {
                rng.random_range(-skew..=skew)
            } else {
                0
            };
            let id = NodeId(i as u64);
            let seed = config.seed.wrapping_mul(31).wrapping_add(i as u64);
            let raft = Raft::new(
                id,
                config.raft.clone(),
                RestoredState::fresh(voters.clone()),
                seed,
                0,
            );
            nodes.push(SimNode {
                id,
                raft: Some(raft),
                durable: Durable::default(),
                skew_ppm,
                tick_token: 0,
                incarnation: 0,
                state_hash: 0,
                applied: LogIndex(0),
            });
        }
        let net = config.net.clone();
        let mut cluster = Cluster {
            config,
            now_us: 0,
            rng,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            net,
            partitions: Partitions::default(),
            checker: Checker::default(),
            trace: VecDeque::new(),
            trace_hash: 0,
            events: Vec::new(),
            applied: Vec::new(),
            reads: Vec::new(),
            reads_dropped: Vec::new(),
            steps: 0,
        };
        for i in 0..cluster.nodes.len() {
            cluster.schedule_tick(i);
        }
        cluster
    }

    // ---- Clocks ------------------------------------------------------------

    pub fn local_time(&self, node: usize) -> u64 {
        let rate = 1_000_000 + self.nodes[node].skew_ppm;
        (self.now_us as u128 * rate as u128 / 1_000_000) as u64
    }

    fn global_of_local(&self, node: usize, local_us: u64) -> u64 {
        let rate = (1_000_000 + self.nodes[node].skew_ppm) as u128;
        (local_us as u128 * 1_000_000).div_ceil(rate) as u64
    }

    // ---- Queries -----------------------------------------------------------

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn is_up(&self, node: usize) -> bool {
        self.nodes[node].raft.is_some()
    }

    pub fn raft(&self, node: usize) -> Option<&Raft> {
        self.nodes[node].raft.as_ref()
    }

    /// The live leader of the highest term, if any.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| {
                self.raft(i)
                    .filter(|r| r.role() == Role::Leader)
                    .map(|r| (r.term(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    // ---- Event loop --------------------------------------------------------

    fn push(&mut self, at_us: u64, event: SimEvent) {
        self.seq += 1;
        self.queue.insert((at_us.max(self.now_us), self.seq), event);
    }

    pub fn next_event_time(&self) -> Option<u64> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Processes one event; returns false when nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), event)) = self.queue.pop_first() else {
            return false;
        };
        self.now_us = at;
        self.steps += 1;
        match event {
            SimEvent::Deliver(msg) => self.deliver(msg),
            SimEvent::Tick { node, token } => {
                if self.nodes[node].tick_token == token && self.is_up(node) {
                    let now = self.local_time(node);
                    self.nodes[node].raft.as_mut().expect("up").tick(now);
                    self.after_input(node);
                }
            }
            SimEvent::Hint {
                node,
                dead,
                incarnation,
            } => {
                if self.nodes[node].incarnation == incarnation && self.is_up(node) {
                    self.trace_line(format!("hint {} sees {dead} gone", node));
                    let now = self.local_time(node);
                    self.nodes[node]
                        .raft
                        .as_mut()
                        .expect("up")
                        .leader_unreachable(now, dead);
                    self.after_input(node);
                }
            }
        }
        true
    }

    /// Runs every event up to `until_us`, then sets the clock there.
    pub fn run_until(&mut self, until_us: u64) {
        while self.next_event_time().is_some_and(|t| t <= until_us) {
            self.step();
        }
        self.now_us = self.now_us.max(until_us);
    }

    fn deliver(&mut self, msg: Message) {
        let to = msg.to.0 as usize;
        if !self.is_up(to) || self.partitions.is_blocked(msg.from, msg.to) {
            return;
        }
        self.trace_line(format!(
            "deliver {}->{} t{} {}",
            msg.from,
            msg.to,
            msg.term,
            msg.body.kind()
        ));
        let now = self.local_time(to);
        self.nodes[to].raft.as_mut().expect("up").step(now, msg);
        self.after_input(to);
    }

    fn send(&mut self, msg: Message, extra_delay_us: u64) {
        if self.partitions.is_blocked(msg.from, msg.to) || self.rng.random_bool(self.net.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let latency = self
                .rng
                .random_range(self.net.latency_us_min..=self.net.latency_us_max);
            self.push(
                self.now_us + extra_delay_us + latency,
                SimEvent::Deliver(msg.clone()),
            );
        }
    }

    fn schedule_tick(&mut self, node: usize) {
        let Some(raft) = self.nodes[node].raft.as_ref() else {
            return;
        };
        let at = self.global_of_local(node, raft.next_deadline_us());
        self.nodes[node].tick_token += 1;
        let token = self.nodes[node].tick_token;
        self.push(at, SimEvent::Tick { node, token });
    }

    /// Drains the node's Ready: persist, send, apply, check, advance.
    fn after_input(&mut self, node: usize) {
        while self.nodes[node]
            .raft
            .as_ref()
            .is_some_and(|r| r.has_ready())
        {
            let rd = self.nodes[node].raft.as_mut().expect("up").ready();
            self.handle_ready(node, &rd);
            self.nodes[node].raft.as_mut().expect("up").advance(&rd);
        }
        let raft = self.nodes[node].raft.as_ref().expect("up");
        self.checker.check_node(self.nodes[node].id, raft);
        self.schedule_tick(node);
    }

    fn handle_ready(&mut self, node: usize, rd: &Ready) {
        let id = self.nodes[node].id;
        for msg in &rd.messages {
            check_sendable_before_persist(id, msg);
            self.send(msg.clone(), 0);
        }
        if let Some(hs) = rd.hard_state {
            check_hard_state_transition(id, &self.nodes[node].durable.hard_state, &hs);
            self.nodes[node].durable.hard_state = hs;
        }
        self.nodes[node]
            .durable
            .store(id, &rd.entries, &mut self.checker);
        for msg in &rd.messages_after_persist {
            self.check_durable_for(node, msg);
            self.send(msg.clone(), self.config.fsync_us);
        }
        for entry in &rd.committed {
            self.apply(node, entry);
        }
        for read in &rd.read_states {
            self.reads.push((id, *read));
        }
        for ctx in &rd.reads_dropped {
            self.reads_dropped.push((id, *ctx));
        }
        for event in &rd.events {
            self.on_event(node, event);
        }
    }

    fn apply(&mut self, node: usize, entry: &Entry) {
        let n = &mut self.nodes[node];
        let i = (entry.index.0 - 1) as usize;
        assert_eq!(
            n.applied.next(),
            entry.index,
            "node {}: applied out of order",
            n.id
        );
        assert!(
            i < n.durable.entries.len(),
            "node {}: applying unpersisted {}",
            n.id,
            entry.index
        );
        let chain = n.durable.chains[i];
        self.checker
            .on_committed(n.id, entry.index, entry.term, chain);
        n.applied = entry.index;
        let command = match &entry.payload {
            crate::core::EntryPayload::Command(data) => Some(data.clone()),
            _ => None,
        };
        if let Some(data) = &command {
            n.state_hash = fnv1a(n.state_hash, data);
        }
        self.applied.push((n.id, entry.index, entry.term, command));
    }

    /// A message that waited for the persist must find its premise on disk.
    fn check_durable_for(&self, node: usize, msg: &Message) {
        let durable = &self.nodes[node].durable;
        match &msg.body {
            MessageBody::VoteReply { granted: true } => assert!(
                durable.hard_state.term == msg.term && durable.hard_state.vote == Some(msg.to),
                "node {}: vote for {} in term {} sent before it was persisted",
                msg.from,
                msg.to,
                msg.term
            ),
            MessageBody::AppendReply {
                success: true,
                index,
                ..
            } => assert!(
                durable.entries.len() as u64 >= index.0,
                "node {}: acknowledged index {index} with {} entries persisted",
                msg.from,
                durable.entries.len()
            ),
            _ => {}
        }
    }

    fn on_event(&mut self, node: usize, event: &Event) {
        let id = self.nodes[node].id;
        if let Event::BecameLeader { .. } = event {
            let raft = self.nodes[node].raft.as_ref().expect("up");
            self.checker.on_leader(id, raft);
        }
        self.trace_line(format!("event {id} {event:?}"));
        self.events.push((self.now_us, id, event.clone()));
    }

    fn trace_line(&mut self, line: String) {
        self.trace_hash = fnv1a(self.trace_hash ^ self.now_us, line.as_bytes());
        if self.trace.len() == self.config.trace_len {
            self.trace.pop_front();
        }
        self.trace
            .push_back(format!("{:>10}us {line}", self.now_us));
    }

    pub fn recent_trace(&self) -> String {
        self.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    // ---- Faults and clients -------------------------------------------------

    /// Stops a node at once: all it had not persisted is lost.
    pub fn crash(&mut self, node: usize) {
        if self.nodes[node].raft.take().is_none() {
            return;
        }
        self.nodes[node].incarnation += 1;
        self.nodes[node].tick_token += 1;
        self.trace_line(format!("crash {node}"));
        if self.config.crash_hints {
            let dead = self.nodes[node].id;
            let survivors: Vec<usize> = (0..self.nodes.len())
                .filter(|o| *o != node && self.is_up(*o))
                .collect();
            for other in survivors {
                // EOF, then a refused reconnect: about one round trip.
                let rtt = 2 * self
                    .rng
                    .random_range(self.net.latency_us_min..=self.net.latency_us_max);
                let incarnation = self.nodes[other].incarnation;
                self.push(
                    self.now_us + rtt,
                    SimEvent::Hint {
                        node: other,
                        dead,
                        incarnation,
                    },
                );
            }
        }
    }

    /// Restarts a crashed node from what it had persisted.
    pub fn restart(&mut self, node: usize) {
        if self.is_up(node) {
            return;
        }
        let voters = ClusterConfig::new(self.ids());
        let n = &mut self.nodes[node];
        let mut restored = RestoredState::fresh(voters);
        restored.hard_state = n.durable.hard_state;
        restored.entries = n.durable.entries.clone();
        n.state_hash = 0;
        n.applied = LogIndex(0);
        let seed = self.config.seed ^ (n.incarnation << 32) ^ node as u64;
        let now = self.local_time(node);
        let raft = Raft::new(
            self.nodes[node].id,
            self.config.raft.clone(),
            restored,
            seed,
            now,
        );
        self.nodes[node].raft = Some(raft);
        self.trace_line(format!("restart {node}"));
        self.after_input(node);
    }

    pub fn propose(
        &mut self,
        node: usize,
        command: Vec<u8>,
    ) -> Result<(LogIndex, Term), ProposeError> {
        let now = self.local_time(node);
        let Some(raft) = self.nodes[node].raft.as_mut() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let result = raft.propose(now, command);
        self.after_input(node);
        result
    }

    pub fn read_index(&mut self, node: usize, ctx: u64) -> Result<(), ReadError> {
        let now = self.local_time(node);
        let Some(raft) = self.nodes[node].raft.as_mut() else {
            return Err(ReadError::NotLeader { leader: None });
        };
        let result = raft.read_index(now, ctx);
        self.after_input(node);
        result
    }

    pub fn transfer_leadership(&mut self, node: usize, target: NodeId) {
        let now = self.local_time(node);
        if let Some(raft) = self.nodes[node].raft.as_mut() {
            let _ = raft.transfer_leadership(now, target);
            self.after_input(node);
        }
    }
}

/// Vote grants and append acknowledgements must wait for the persist
/// (thesis 3.8); the core must never put them in `Ready::messages`.
fn check_sendable_before_persist(node: NodeId, msg: &Message) {
    let premature = matches!(
        msg.body,
        MessageBody::VoteReply { granted: true } | MessageBody::AppendReply { success: true, .. }
    );
    assert!(
        !premature,
        "node {node}: {} to {} would leave before the persist",
        msg.body.kind(),
        msg.to
    );
}
