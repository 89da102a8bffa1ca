//! The simulated cluster: nodes running the production driver (and so the
//! real core) over a simulated network and a simulated disk that loses what
//! was not fsynced, driven by one event queue.

use super::checker::{Checker, chain_hash, check_hard_state_transition, fnv1a};
use super::net::{NetConfig, Partitions};
use crate::core::{
    ClusterConfig, Entry, Event, HardState, LogIndex, Message, MessageBody, NodeId, Raft,
    RaftConfig, RestoredState, Role, Term,
};
use crate::runtime::node::{
    AppliedEntry, DriverMutations, LogWrite, LogWriter, Network, Node, Reply,
};
use crate::state_machine::StateMachine;
use crate::storage::{StorageError, WalImage};
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
    /// Time an fsync takes: writes become durable, and the messages that
    /// wait for them leave, this long after they were handed out.
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
    /// An fsync that started when write `seq` was the last one queued.
    Fsync {
        node: usize,
        incarnation: u64,
        seq: u64,
    },
}

/// What survives a crash: the fsynced hard state and log.
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

/// The simulated disk: each write is encoded into an in-memory WAL segment
/// with the real record format and sits in the page cache until an fsync,
/// which takes `SimConfig::fsync_us`. A crash keeps any prefix of the cache
/// (a torn write), and the real WAL recovery decides what a restart finds.
#[derive(Default)]
pub struct SimDisk {
    image: WalImage,
    /// Writes in the cache, oldest first, with their encoded length.
    unsynced: VecDeque<(LogWrite, usize)>,
    /// The last write an fsync already covers (scheduled, not yet done).
    fsync_through: u64,
}

impl LogWriter for SimDisk {
    fn submit(&mut self, write: LogWrite) -> Result<bool, StorageError> {
        let before = self.image.cached_bytes();
        self.image
            .write(write.hard_state.as_ref(), &write.entries)?;
        let bytes = self.image.cached_bytes() - before;
        self.unsynced.push_back((write, bytes));
        Ok(false)
    }
}

/// The simulated network's outbox: the cluster routes what the driver sent.
#[derive(Default)]
pub struct SimNet {
    outbox: Vec<Message>,
}

impl Network for SimNet {
    fn send(&mut self, msg: Message) {
        self.outbox.push(msg);
    }
}

/// The simulated state machine: a hash chain of the applied commands, so
/// that equal hashes mean equal histories.
#[derive(Default)]
pub struct HashMachine {
    pub state_hash: u64,
    /// The index of the last command applied (no-ops do not reach here).
    pub applied: LogIndex,
}

impl StateMachine for HashMachine {
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Vec<u8> {
        assert!(
            index > self.applied,
            "applied {index} after {}",
            self.applied
        );
        self.applied = index;
        self.state_hash = fnv1a(self.state_hash, command);
        index.0.to_le_bytes().to_vec()
    }
    fn applied_index(&self) -> LogIndex {
        self.applied
    }
    fn snapshot(&self) -> Vec<u8> {
        self.state_hash.to_le_bytes().to_vec()
    }
    fn restore(&mut self, index: LogIndex, snapshot: &[u8]) -> Result<(), String> {
        let bytes: [u8; 8] = snapshot.try_into().map_err(|_| "bad snapshot".to_owned())?;
        self.state_hash = u64::from_le_bytes(bytes);
        self.applied = index;
        Ok(())
    }
}

/// The production driver, as the simulator runs it; clients hold tickets.
pub type SimDriver = Node<HashMachine, SimDisk, SimNet, u64>;

pub struct SimNode {
    pub id: NodeId,
    pub driver: Option<SimDriver>,
    /// The model of what is durable, kept by the simulator for its checks.
    durable: Durable,
    /// The disk while the node is down (the driver owns it while up).
    image: WalImage,
    skew_ppm: i64,
    tick_token: u64,
    pub incarnation: u64,
}

impl SimNode {
    pub fn state_hash(&self) -> u64 {
        self.driver
            .as_ref()
            .map_or(0, |d| d.state_machine().state_hash)
    }
    /// Everything applied, no-ops included.
    pub fn applied(&self) -> LogIndex {
        self.driver
            .as_ref()
            .map_or(LogIndex(0), |d| d.raft().applied_index())
    }
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
    /// Client answers: (node, ticket, reply).
    pub answers: Vec<(NodeId, u64, Reply)>,
    pub steps: u64,
    /// Test-only bugs switched into every node's driver.
    pub driver_mutations: DriverMutations,
}

impl Cluster {
    pub fn new(config: SimConfig) -> Cluster {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut nodes = Vec::new();
        for i in 0..config.nodes {
            let skew = config.clock_skew_ppm_max as i64;
            let skew_ppm = if skew > 0 {
                rng.random_range(-skew..=skew)
            } else {
                0
            };
            nodes.push(SimNode {
                id: NodeId(i as u64),
                driver: None,
                durable: Durable::default(),
                image: WalImage::new(),
                skew_ppm,
                tick_token: 0,
                incarnation: 0,
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
            answers: Vec::new(),
            steps: 0,
            driver_mutations: DriverMutations::default(),
        };
        for i in 0..cluster.nodes.len() {
            let seed = cluster.config.seed.wrapping_mul(31).wrapping_add(i as u64);
            cluster.boot(i, seed);
        }
        cluster
    }

    /// Starts node `i`'s driver from what the real WAL recovery finds on
    /// its disk.
    fn boot(&mut self, node: usize, seed: u64) {
        let id = self.nodes[node].id;
        let mut image = std::mem::take(&mut self.nodes[node].image);
        let (hard_state, entries) = image
            .recover()
            .unwrap_or_else(|e| panic!("node {id}: recovery failed: {e}"));
        self.reconcile(node, hard_state, &entries);
        let voters = ClusterConfig::new(self.ids());
        let mut restored = RestoredState::fresh(voters);
        restored.hard_state = hard_state;
        restored.entries = entries;
        let now = self.local_time(node);
        let raft = Raft::new(id, self.config.raft.clone(), restored, seed, now);
        let disk = SimDisk {
            image,
            ..SimDisk::default()
        };
        let mut driver = Node::new(raft, disk, SimNet::default(), HashMachine::default());
        driver.trace_applied(true);
        driver.mutations = self.driver_mutations;
        self.nodes[node].driver = Some(driver);
        self.after_input(node);
    }

    /// What recovery found must hold everything fsynced that a restart may
    /// not lose: the term and vote, and the committed prefix. Beyond that a
    /// torn write may have added or replaced entries; the model follows.
    fn reconcile(&mut self, node: usize, hard_state: HardState, entries: &[Entry]) {
        let id = self.nodes[node].id;
        let model = &self.nodes[node].durable;
        check_hard_state_transition(id, &model.hard_state, &hard_state);
        let commit = model.hard_state.commit.0 as usize;
        assert!(
            entries.len() >= commit && entries[..commit] == model.entries[..commit],
            "node {id}: recovery lost committed entries (commit {commit}, recovered {})",
            entries.len()
        );
        let durable = &mut self.nodes[node].durable;
        durable.hard_state = hard_state;
        durable.entries.clear();
        durable.chains.clear();
        durable.store(id, entries, &mut self.checker);
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
        self.nodes[node].driver.is_some()
    }

    pub fn raft(&self, node: usize) -> Option<&Raft> {
        self.nodes[node].driver.as_ref().map(|d| d.raft())
    }

    pub fn driver(&self, node: usize) -> Option<&SimDriver> {
        self.nodes[node].driver.as_ref()
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

    /// Every live node that believes it leads (a deposed leader may not know
    /// yet): clients talk to all of them, as real clients would.
    pub fn believed_leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.raft(*i).is_some_and(|r| r.role() == Role::Leader))
            .collect()
    }

    // ---- Event loop --------------------------------------------------------

    fn push(&mut self, at_us: u64, event: SimEvent) {
        self.seq += 1;
        self.queue.insert((at_us.max(self.now_us), self.seq), event);
    }

    pub fn next_event_time(&self) -> Option<u64> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    fn driver_mut(&mut self, node: usize) -> &mut SimDriver {
        self.nodes[node].driver.as_mut().expect("node is up")
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
                    self.driver_mut(node).tick(now);
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
                    self.driver_mut(node).peer_unreachable(now, dead);
                    self.after_input(node);
                }
            }
            SimEvent::Fsync {
                node,
                incarnation,
                seq,
            } => {
                if self.nodes[node].incarnation == incarnation && self.is_up(node) {
                    self.fsync_done(node, seq);
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
        self.driver_mut(to).step(now, msg);
        self.after_input(to);
    }

    fn send(&mut self, msg: Message) {
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
            self.push(self.now_us + latency, SimEvent::Deliver(msg.clone()));
        }
    }

    fn schedule_tick(&mut self, node: usize) {
        let Some(raft) = self.raft(node) else {
            return;
        };
        let at = self.global_of_local(node, raft.next_deadline_us());
        self.nodes[node].tick_token += 1;
        let token = self.nodes[node].tick_token;
        self.push(at, SimEvent::Tick { node, token });
    }

    /// After any input: the driver hands out its output (the production
    /// sequence, unchanged), then the simulator routes it and checks.
    fn after_input(&mut self, node: usize) {
        if let Err(e) = self.driver_mut(node).process() {
            panic!("node {node}: simulated storage failed: {e}");
        }
        self.route_output(node);
        self.schedule_fsync(node);
        let raft = self.raft(node).expect("up");
        self.checker.check_node(self.nodes[node].id, raft);
        self.schedule_tick(node);
    }

    /// One fsync covers every write queued when it starts (group commit).
    fn schedule_fsync(&mut self, node: usize) {
        let incarnation = self.nodes[node].incarnation;
        let driver = self.driver_mut(node);
        let last = driver.last_write_seq();
        let disk = driver.writer_mut();
        if disk.fsync_through >= last || disk.unsynced.is_empty() {
            return;
        }
        disk.fsync_through = last;
        let at = self.now_us + self.config.fsync_us;
        self.push(
            at,
            SimEvent::Fsync {
                node,
                incarnation,
                seq: last,
            },
        );
    }

    fn fsync_done(&mut self, node: usize, seq: u64) {
        let id = self.nodes[node].id;
        loop {
            let disk = self.driver_mut(node).writer_mut();
            if disk.unsynced.front().is_none_or(|(w, _)| w.seq > seq) {
                break;
            }
            let (write, bytes) = disk.unsynced.pop_front().expect("checked");
            disk.image.fsync(bytes);
            self.make_durable(node, &write);
        }
        self.trace_line(format!("fsync {id} through write {seq}"));
        let now = self.local_time(node);
        self.driver_mut(node).persisted(now, seq);
        self.after_input(node);
    }

    fn make_durable(&mut self, node: usize, write: &LogWrite) {
        let id = self.nodes[node].id;
        let durable = &mut self.nodes[node].durable;
        durable.store(id, &write.entries, &mut self.checker);
        if let Some(hs) = write.hard_state {
            check_hard_state_transition(id, &durable.hard_state, &hs);
            durable.hard_state = hs;
        }
    }

    fn route_output(&mut self, node: usize) {
        let id = self.nodes[node].id;
        let driver = self.driver_mut(node);
        let outbox = std::mem::take(&mut driver.network_mut().outbox);
        let applied = driver.take_applied();
        let answers = driver.take_answers();
        let events = driver.take_events();
        for msg in outbox {
            self.check_durable_for(node, &msg);
            self.send(msg);
        }
        for entry in applied {
            self.on_applied(node, entry);
        }
        for (ticket, reply) in answers {
            self.answers.push((id, ticket, reply));
        }
        for event in &events {
            self.on_event(node, event);
        }
    }

    fn on_applied(&mut self, node: usize, entry: AppliedEntry) {
        let n = &self.nodes[node];
        let i = (entry.index.0 - 1) as usize;
        assert!(
            i < n.durable.entries.len(),
            "node {}: applying unpersisted {}",
            n.id,
            entry.index
        );
        let chain = n.durable.chains[i];
        self.checker
            .on_committed(n.id, entry.index, entry.term, chain);
        self.applied
            .push((n.id, entry.index, entry.term, entry.command));
    }

    /// A message that promises durability must find its premise on disk
    /// when it leaves (Raft thesis 3.8).
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
            MessageBody::Vote { .. } => assert!(
                durable.hard_state.term == msg.term && durable.hard_state.vote == Some(msg.from),
                "node {}: asked for votes in term {} before its own vote was persisted",
                msg.from,
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
            let raft = self.nodes[node].driver.as_ref().expect("up").raft();
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

    /// Stops a node at once: every write not yet fsynced is lost, except
    /// that any prefix of the page cache may have reached the disk (a torn
    /// write); the real recovery sorts it out at restart.
    pub fn crash(&mut self, node: usize) {
        let Some(driver) = self.nodes[node].driver.take() else {
            return;
        };
        let (_, disk, _, _) = driver.into_parts();
        let mut image = disk.image;
        let cached = image.cached_bytes();
        let keep = if cached > 0 && self.rng.random_bool(0.5) {
            self.rng.random_range(0..=cached)
        } else {
            0
        };
        image.crash(keep);
        if keep > 0 {
            self.trace_line(format!(
                "crash {node} leaves {keep} of {cached} unsynced bytes"
            ));
        }
        self.nodes[node].image = image;
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
                self.hint(other, dead, rtt);
            }
        }
    }

    /// Tells `node` that `dead`'s process is gone, after `delay_us`. The
    /// runtime can be wrong about it (a connection reset by a flaky
    /// network): the hint may also name a live leader.
    pub fn hint(&mut self, node: usize, dead: NodeId, delay_us: u64) {
        let incarnation = self.nodes[node].incarnation;
        self.push(
            self.now_us + delay_us,
            SimEvent::Hint {
                node,
                dead,
                incarnation,
            },
        );
    }

    /// Restarts a crashed node from what it had fsynced.
    pub fn restart(&mut self, node: usize) {
        if self.is_up(node) {
            return;
        }
        let seed = self.config.seed ^ (self.nodes[node].incarnation << 32) ^ node as u64;
        self.trace_line(format!("restart {node}"));
        self.boot(node, seed);
    }

    /// A client write to `node`; the answer arrives in `answers` under
    /// `ticket`. Returns where it will land, when accepted.
    pub fn propose(
        &mut self,
        node: usize,
        command: Vec<u8>,
        ticket: u64,
    ) -> Option<(LogIndex, Term)> {
        if !self.is_up(node) {
            return None;
        }
        let now = self.local_time(node);
        let landed = self.driver_mut(node).propose(now, command, ticket);
        self.after_input(node);
        landed
    }

    /// A linearizable read at `node`: answers with the state machine's
    /// applied index when the read was served.
    pub fn read(&mut self, node: usize, ticket: u64) -> bool {
        if !self.is_up(node) {
            return false;
        }
        let now = self.local_time(node);
        let query = Box::new(|sm: &HashMachine| sm.applied.0.to_le_bytes().to_vec());
        self.driver_mut(node).read(now, query, ticket);
        self.after_input(node);
        true
    }

    pub fn transfer_leadership(&mut self, node: usize, target: NodeId) {
        if self.is_up(node) {
            let now = self.local_time(node);
            self.driver_mut(node).transfer_leadership(now, target);
            self.after_input(node);
        }
    }
}
