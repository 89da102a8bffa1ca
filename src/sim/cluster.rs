//! The simulated cluster: nodes running the production driver (and so the
//! real core) over a simulated network and a simulated disk that loses what
//! was not fsynced, driven by one event queue.

use super::checker::{
    Checker, LogTip, check_committed_kept, check_hard_state_transition, check_voter_quorum, fnv1a,
};
use super::disk::{Durable, SimDisk};
use super::net::{NetConfig, Partitions, message_bytes};
use super::snapshots::{SimSnapshots, SnapshotFiles};
use super::store::{SimStore, Tagged};
use crate::core::ConfChange;
use crate::core::{
    ClusterConfig, Entry, Event, HardState, LogIndex, Message, MessageBody, NodeId, Raft,
    RaftConfig, RestoredState, Role, SnapshotMeta, Term,
};
use crate::runtime::node::{AppliedEntry, ConfReply, DriverMutations, LogWrite, Node, Reply};
use crate::state_machine::StateMachine;
use crate::storage::WalImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub raft: RaftConfig,
    pub net: NetConfig,
    /// Each node's clock runs at 1 +- up to this many parts per million.
    pub clock_skew_ppm_max: u64,
    /// Time an fsync takes: writes become durable, and the messages that
    /// wait for them leave, this long after they were handed out...
    pub fsync_us: u64,
    /// ... plus the time to write their bytes at this rate.
    pub disk_bytes_per_us: u64,
    /// Deliver the crash fast path's hint (EOF + refused reconnect) to the
    /// survivors of a crash, as the runtime's transport does for SIGKILL.
    pub crash_hints: bool,
    /// Chance that a newly elected leader is cut off from every other node
    /// at once, its messages in flight lost: its first entries stay its
    /// own, and logs diverge as in the Raft paper's Figure 8.
    pub isolate_new_leader: f64,
    /// Recent events kept for the failure report.
    pub trace_len: usize,
    /// Test-only bugs switched into every node's driver (the core's are in
    /// `raft.mutations`).
    pub driver_mutations: DriverMutations,
    /// Nodes 0..initial_voters form the first configuration; the others
    /// start as `--join` nodes do, knowing none, until added (DESIGN.md 8).
    pub initial_voters: usize,
    /// 0: a node's driver hands out its output after every input. Above
    /// 0: after an input, the driver takes further inputs for a drawn
    /// 0..=this many microseconds before it hands out once for all of
    /// them, as the Raft thread steps everything queued for it before one
    /// `handle_output` (runtime/raft_loop.rs, `drain_inputs`). A Ready
    /// then spans several messages, ticks and fsyncs.
    pub batch_window_us: u64,
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
            disk_bytes_per_us: 500,
            crash_hints: false,
            isolate_new_leader: 0.0,
            trace_len: 80,
            driver_mutations: DriverMutations::default(),
            initial_voters: nodes,
            batch_window_us: 0,
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
    /// The snapshot being written is durable (unless the node crashed).
    SnapshotDone {
        node: usize,
        incarnation: u64,
    },
    /// The end of a batch window: the driver hands out its output.
    Process {
        node: usize,
        incarnation: u64,
    },
    /// A paused process runs again (SIGCONT).
    Resume {
        node: usize,
        incarnation: u64,
    },
    /// A KV client's request that reached a paused node: it waits in the
    /// node's held inputs, never in the queue.
    Request {
        node: usize,
        request: HeldRequest,
    },
}

enum HeldRequest {
    Read { key: Vec<u8>, ticket: Ticket },
    Write { command: Vec<u8>, ticket: Ticket },
}

/// Where a client request goes (`Cluster::route_request`).
#[derive(PartialEq, Eq)]
enum Route {
    /// To the driver now.
    Now,
    /// Into a paused node's backlog.
    Hold,
    /// Nowhere: the node is down, or paused and the request not a KV
    /// client's.
    Refuse,
}

impl SimEvent {
    /// The node whose thread takes this event as an input.
    fn target(&self) -> Option<usize> {
        match self {
            SimEvent::Deliver(msg) => Some(msg.to.0 as usize),
            SimEvent::Tick { node, .. }
            | SimEvent::Hint { node, .. }
            | SimEvent::Fsync { node, .. }
            | SimEvent::SnapshotDone { node, .. }
            | SimEvent::Process { node, .. }
            | SimEvent::Request { node, .. } => Some(*node),
            SimEvent::Resume { .. } => None,
        }
    }
}

/// What an event did to its node.
enum Stepped {
    Nothing,
    /// The driver took an input; its output waits for `input_done`.
    Input(usize),
    /// The driver must hand out its output now.
    Process(usize),
}

/// Who waits for an answer: the client models of `run` and `workload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ticket {
    /// A tracked proposal, by id.
    Tracked(u64),
    /// An untracked proposal that fills a gap in the log.
    Filler,
    /// A read that checks only the index it was served at.
    Probe(u64),
    /// One attempt at a KV client's operation `seq`.
    Kv {
        client: usize,
        seq: u64,
        attempt: u64,
    },
    /// An oversized write.
    Bulk(u64),
    /// A membership change of the membership nemesis.
    Conf(u64),
}

/// A client answer as it left a node.
#[derive(Clone, Debug)]
pub struct Answer {
    pub at_us: u64,
    pub node: NodeId,
    pub ticket: Ticket,
    pub reply: Reply<Tagged>,
}

/// What a driver holds for one client request: a number unique in the
/// run, so that the simulator can check each request is answered once.
#[derive(Clone, Copy, Debug)]
pub struct Handle {
    id: u64,
    ticket: Ticket,
}

/// The requests a live node holds, to check that each is answered exactly
/// once, and a write no later than when its node applies its index.
#[derive(Default)]
struct OpenRequests {
    /// Request id -> the index an accepted write landed at (None: a read,
    /// or a write refused at once).
    by_id: BTreeMap<u64, Option<LogIndex>>,
    /// (index, request id) of the accepted writes.
    writes: BTreeSet<(LogIndex, u64)>,
}

/// The production driver, as the simulator runs it, with the real KV store.
/// The network is an outbox: the cluster routes what the driver sent.
pub type SimDriver = Node<SimStore, SimDisk, Vec<Message>, Handle, SimSnapshots>;

pub struct SimNode {
    pub id: NodeId,
    pub driver: Option<SimDriver>,
    /// The model of what is durable, kept by the simulator for its checks.
    durable: Durable,
    /// The disk while the node is down (the driver owns it while up).
    image: WalImage,
    /// Durable snapshot files: they outlive the driver.
    snapshots: SnapshotFiles,
    skew_ppm: i64,
    tick_token: u64,
    pub incarnation: u64,
    /// The driver's `lease_reads_served` when last checked.
    lease_reads_seen: u64,
    /// The newest term whose leadership the checker has seen this node's
    /// log for (Leader Completeness).
    completeness_checked: Term,
    /// A `Process` event is queued (batch window open).
    process_pending: bool,
    /// The process is stopped (SIGSTOP): what reaches it waits here, in
    /// order, for its threads to run again. What it had sent is on the
    /// wire and still arrives.
    paused: bool,
    held: Vec<SimEvent>,
}

impl SimNode {
    /// Equal on two nodes that applied the same commands into equal stores.
    pub fn state_hash(&self) -> u64 {
        self.driver
            .as_ref()
            .map_or(0, |d| d.state_machine().state_hash())
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
    pub answers: Vec<Answer>,
    pub steps: u64,
    /// Directed link and lane (true: Appends) -> when it finishes sending
    /// what is queued on it: a large Append delays the Appends behind it,
    /// as on one TCP connection, but not the control lane (heartbeats,
    /// votes, replies), which the real sender writes first (DESIGN.md 2.6).
    link_free_us: BTreeMap<(NodeId, NodeId, bool), u64>,
    /// By node; emptied when the node crashes.
    open_requests: Vec<OpenRequests>,
    next_request_id: u64,
    /// Membership change answers, in the order they left their node.
    pub conf_answers: Vec<(u64, NodeId, Ticket, ConfReply)>,
    /// Nodes that reported their committed removal: stopped, as the
    /// runtime stops them, at the next step.
    removed: Vec<usize>,
    /// (term, candidate) -> voters whose granted vote reached it: a leader
    /// must have a quorum of its own configuration's voters among them
    /// (learners' votes never count, DESIGN.md 8).
    vote_grants: BTreeMap<(Term, NodeId), BTreeSet<NodeId>>,
    /// Reads served under a lease and checked (DESIGN.md 3.8).
    pub lease_reads_checked: u64,
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
                snapshots: SnapshotFiles::default(),
                skew_ppm,
                tick_token: 0,
                incarnation: 0,
                lease_reads_seen: 0,
                completeness_checked: Term(0),
                process_pending: false,
                paused: false,
                held: Vec::new(),
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
            link_free_us: BTreeMap::new(),
            open_requests: Vec::new(),
            next_request_id: 0,
            conf_answers: Vec::new(),
            removed: Vec::new(),
            vote_grants: BTreeMap::new(),
            lease_reads_checked: 0,
        };
        cluster
            .open_requests
            .resize_with(cluster.nodes.len(), OpenRequests::default);
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
        let files = self.nodes[node].snapshots.clone();
        let snapshot = super::snapshots::newest(&files);
        let (hard_state, entries) = image
            .recover_after(snapshot.as_ref().map(|(meta, _)| meta))
            .unwrap_or_else(|e| panic!("node {id}: recovery failed: {e}"));
        let initial = match node < self.config.initial_voters {
            true => ClusterConfig::new(self.ids()[..self.config.initial_voters].to_vec()),
            false => ClusterConfig::default(),
        };
        let mut restored = RestoredState::fresh(initial);
        let mut store = SimStore::default();
        if let Some((meta, payload)) = &snapshot {
            store
                .restore(meta.last_index, payload)
                .unwrap_or_else(|e| panic!("node {id}: snapshot does not restore: {e}"));
            self.checker
                .on_snapshot_state(id, meta.last_index, &store.kv().snapshot());
            restored.snapshot = meta.clone();
        }
        self.reconcile(node, hard_state, &restored.snapshot, &entries);
        restored.hard_state = hard_state;
        restored.entries = entries;
        let now = self.local_time(node);
        let mut raft = Raft::new(id, self.config.raft.clone(), restored, seed, now);
        if let Some((meta, payload)) = snapshot {
            let bytes = crate::runtime::node::frame_snapshot(&payload).len() as u64;
            raft.snapshot_saved(now, meta, bytes);
        }
        let disk = SimDisk {
            image,
            ..SimDisk::default()
        };
        let mut driver =
            Node::with_snapshots(raft, disk, Vec::new(), store, SimSnapshots::new(files));
        driver.trace_applied(true);
        driver.mutations = self.config.driver_mutations;
        self.nodes[node].driver = Some(driver);
        self.after_input(node);
    }

    /// What recovery found must hold everything fsynced that a restart may
    /// not lose: the term and vote, and the committed prefix. Beyond that a
    /// torn write may have added or replaced entries; the model follows.
    fn reconcile(
        &mut self,
        node: usize,
        hard_state: HardState,
        snapshot: &SnapshotMeta,
        entries: &[Entry],
    ) {
        let id = self.nodes[node].id;
        let model = &self.nodes[node].durable;
        check_hard_state_transition(id, &model.hard_state, &hard_state);
        let commit = model.hard_state.commit;
        let base = snapshot.last_index;
        let recovered_last = LogIndex(base.0 + entries.len() as u64);
        assert!(
            recovered_last >= commit,
            "node {id}: recovery lost committed entries (commit {commit}, recovered through {recovered_last})"
        );
        for index in (base.0.max(model.base.0) + 1)..=commit.0 {
            let recovered = &entries[(index - base.0 - 1) as usize];
            assert!(
                model.entry(LogIndex(index)) == Some(recovered),
                "node {id}: recovery changed committed index {index}"
            );
        }
        let chain = match base.0 {
            0 => 0,
            _ => self.checker.committed_chain(base, snapshot.last_term),
        };
        let durable = &mut self.nodes[node].durable;
        durable.hard_state = hard_state;
        durable.reset(base, snapshot.last_term, chain, snapshot.config.clone());
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
        match event.target() {
            Some(node) if self.nodes[node].paused => self.hold(node, event),
            _ => match self.take_event(event) {
                Stepped::Nothing => {}
                Stepped::Input(node) => self.input_done(node),
                Stepped::Process(node) => self.after_input(node),
            },
        }
        for node in std::mem::take(&mut self.removed) {
            self.trace_line(format!("stop removed {node}"));
            self.crash(node);
        }
        true
    }

    /// Feeds one event to its node's driver, without handing out output.
    fn take_event(&mut self, event: SimEvent) -> Stepped {
        match event {
            SimEvent::Deliver(msg) => return self.deliver(msg),
            SimEvent::Tick { node, token } => {
                if self.nodes[node].tick_token == token && self.is_up(node) {
                    let now = self.local_time(node);
                    self.driver_mut(node).tick(now);
                    return Stepped::Input(node);
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
                    return Stepped::Input(node);
                }
            }
            SimEvent::Fsync {
                node,
                incarnation,
                seq,
            } => {
                if self.nodes[node].incarnation == incarnation && self.is_up(node) {
                    self.fsync_done(node, seq);
                    return Stepped::Input(node);
                }
            }
            SimEvent::SnapshotDone { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.is_up(node) {
                    self.snapshot_done(node);
                    return Stepped::Input(node);
                }
            }
            SimEvent::Process { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.is_up(node) {
                    self.nodes[node].process_pending = false;
                    return Stepped::Process(node);
                }
            }
            SimEvent::Resume { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].paused {
                    return self.resume(node);
                }
            }
            SimEvent::Request { node, request } => {
                if self.is_up(node) {
                    match request {
                        HeldRequest::Read { key, ticket } => self.take_read(node, key, ticket),
                        HeldRequest::Write { command, ticket } => {
                            self.take_write(node, command, ticket);
                        }
                    }
                    return Stepped::Input(node);
                }
            }
        }
        Stepped::Nothing
    }

    /// After an input: hand out now, or open a batch window.
    fn input_done(&mut self, node: usize) {
        let window = self.config.batch_window_us;
        if window == 0 {
            return self.after_input(node);
        }
        self.check_inside_batch(node);
        if !self.nodes[node].process_pending {
            self.nodes[node].process_pending = true;
            let incarnation = self.nodes[node].incarnation;
            let delay = self.rng.random_range(0..=window);
            self.push(self.now_us + delay, SimEvent::Process { node, incarnation });
        }
    }

    /// An event for a paused node waits for it. A message cut off by a
    /// partition before it arrived never does.
    fn hold(&mut self, node: usize, event: SimEvent) {
        if let SimEvent::Deliver(msg) = &event
            && self.partitions.is_blocked(msg.from, msg.to)
        {
            return;
        }
        self.nodes[node].held.push(event);
    }

    fn snapshot_done(&mut self, node: usize) {
        let id = self.nodes[node].id;
        let now = self.local_time(node);
        let driver = self.driver_mut(node);
        let Some((meta, bytes, state)) = driver.snapshots_mut().complete() else {
            return;
        };
        self.checker.on_snapshot_state(id, meta.last_index, &state);
        self.trace_line(format!("snapshot {id} at {} durable", meta.last_index));
        self.driver_mut(node).snapshot_saved(now, meta, bytes);
    }

    /// A snapshot save takes an fsync and its bytes' time on the disk.
    fn schedule_snapshot(&mut self, node: usize) {
        let incarnation = self.nodes[node].incarnation;
        let delay = {
            let rate = self.config.disk_bytes_per_us.max(1);
            let fsync_us = self.config.fsync_us;
            let snapshots = self.driver_mut(node).snapshots_mut();
            let Some((_, file)) = snapshots.pending.as_ref().filter(|_| !snapshots.scheduled)
            else {
                return;
            };
            let delay = fsync_us + file.len() as u64 / rate;
            snapshots.scheduled = true;
            delay
        };
        self.push(
            self.now_us + delay,
            SimEvent::SnapshotDone { node, incarnation },
        );
    }

    /// Runs every event up to `until_us`, then sets the clock there.
    pub fn run_until(&mut self, until_us: u64) {
        while self.next_event_time().is_some_and(|t| t <= until_us) {
            self.step();
        }
        self.now_us = self.now_us.max(until_us);
    }

    fn deliver(&mut self, msg: Message) -> Stepped {
        let to = msg.to.0 as usize;
        if !self.is_up(to) || self.partitions.is_blocked(msg.from, msg.to) {
            return Stepped::Nothing;
        }
        self.receive(msg)
    }

    /// `msg` is in its node's socket buffer: the node takes it.
    fn receive(&mut self, msg: Message) -> Stepped {
        let to = msg.to.0 as usize;
        self.trace_line(format!(
            "deliver {}->{} t{} {}",
            msg.from,
            msg.to,
            msg.term,
            msg.body.kind()
        ));
        if let MessageBody::VoteReply { granted: true } = msg.body {
            let grants = self.vote_grants.entry((msg.term, msg.to)).or_default();
            grants.insert(msg.from);
        }
        let now = self.local_time(to);
        self.driver_mut(to).step(now, msg);
        Stepped::Input(to)
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
            let sent = self.transmit(&msg);
            let latency = self.net.draw_latency_us(&mut self.rng, msg.from, msg.to);
            self.push(sent + latency, SimEvent::Deliver(msg.clone()));
        }
    }

    /// Queues `msg` on its link; returns when its last byte is sent.
    fn transmit(&mut self, msg: &Message) -> u64 {
        let bytes = message_bytes(msg);
        let bulk = matches!(msg.body, MessageBody::Append { .. });
        let free = self
            .link_free_us
            .entry((msg.from, msg.to, bulk))
            .or_insert(0);
        let start = (*free).max(self.now_us);
        *free = start + bytes / self.net.bytes_per_us.max(1);
        *free
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
        self.schedule_snapshot(node);
        let raft = self.raft(node).expect("up");
        self.checker.check_node(self.nodes[node].id, raft);
        self.check_lease_reads(node);
        self.check_writes_answered(node);
        self.schedule_tick(node);
    }

    /// Records a leader's commit of its own term, and checks any read the
    /// node just served under a lease against every such commit so far.
    /// Called after every input, since that is when a read is served: a
    /// batch's answers may leave later, once a newer leader committed.
    fn check_lease_reads(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let raft = n.driver.as_ref().expect("up").raft();
        self.checker.on_leader_commit(raft);
        let served = raft.lease_reads_served();
        if served > n.lease_reads_seen {
            self.checker.on_lease_read(n.id, raft);
            self.lease_reads_checked += served - n.lease_reads_seen;
        }
        n.lease_reads_seen = served;
    }

    /// After one input of a batch whose output is handed out later. A
    /// lease read is served when its input is stepped; its answer leaves
    /// with the batch's output, perhaps after a pause. A leader is elected
    /// by one input too, and its log then is the one Leader Completeness
    /// is about: the batch may go on to take a newer leader's entries.
    fn check_inside_batch(&mut self, node: usize) {
        self.check_lease_reads(node);
        let raft = self.raft(node).expect("up");
        if let (Role::Leader, term) = (raft.role(), raft.term()) {
            self.check_leader_completeness(node, term);
        }
    }

    /// Leader Completeness for `node`, leader of `term`, on its log as it
    /// is now, once per term.
    fn check_leader_completeness(&mut self, node: usize, term: Term) {
        let n = &mut self.nodes[node];
        if term > n.completeness_checked {
            n.completeness_checked = term;
            let raft = n.driver.as_ref().expect("up").raft();
            self.checker.leader_completeness(n.id, term, raft);
        }
    }

    /// A write is decided when its node applies its index: applied there,
    /// or replaced by another entry. Its answer must have left by then.
    fn check_writes_answered(&self, node: usize) {
        let applied = self.raft(node).expect("up").applied_index();
        if let Some((index, request)) = self.open_requests[node].writes.first() {
            assert!(
                *index > applied,
                "node {}: applied through {applied} but never answered the write it accepted at {index} (request {request})",
                self.nodes[node].id
            );
        }
    }

    /// One fsync covers every write queued when it starts (group commit).
    fn schedule_fsync(&mut self, node: usize) {
        let incarnation = self.nodes[node].incarnation;
        let (now_us, fsync_us) = (self.now_us, self.config.fsync_us);
        let disk_bytes_per_us = self.config.disk_bytes_per_us.max(1);
        let driver = self.nodes[node].driver.as_mut().expect("node is up");
        let last = driver.last_write_seq();
        let disk = driver.writer_mut();
        if disk.fsync_through >= last || disk.unsynced.is_empty() {
            return;
        }
        // One fsync at a time, as the WAL thread does them; each flushes
        // the bytes written since the last one.
        let bytes = disk.bytes_after(disk.fsync_through);
        let at = now_us.max(disk.busy_until_us) + fsync_us + bytes / disk_bytes_per_us;
        disk.fsync_through = last;
        disk.busy_until_us = at;
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
            let (mut write, bytes) = disk.unsynced.pop_front().expect("checked");
            disk.image.fsync(bytes);
            self.make_durable(node, &write);
            // What the write made true may be said now, and from here, as
            // the WAL thread sends them: before the driver hears of it.
            for msg in std::mem::take(&mut write.held) {
                self.check_durable_for(node, &msg);
                self.send(msg);
            }
        }
        self.trace_line(format!("fsync {id} through write {seq}"));
        let now = self.local_time(node);
        self.driver_mut(node).persisted(now, seq);
    }

    fn make_durable(&mut self, node: usize, write: &LogWrite) {
        let id = self.nodes[node].id;
        if let Some(meta) = &write.reset {
            let chain = self
                .checker
                .committed_chain(meta.last_index, meta.last_term);
            self.nodes[node].durable.reset(
                meta.last_index,
                meta.last_term,
                chain,
                meta.config.clone(),
            );
        }
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
        let outbox = std::mem::take(driver.network_mut());
        let applied = driver.take_applied();
        let answers = driver.take_answers();
        let conf_answers = driver.take_conf_answers();
        let events = driver.take_events();
        for msg in outbox {
            self.check_durable_for(node, &msg);
            self.send(msg);
        }
        for entry in applied {
            self.on_applied(node, entry);
        }
        for (handle, reply) in answers {
            let open = &mut self.open_requests[node];
            let landed = open.by_id.remove(&handle.id);
            assert!(
                landed.is_some(),
                "node {id}: answered request {} ({:?}) twice",
                handle.id,
                handle.ticket
            );
            if let Some(Some(index)) = landed {
                open.writes.remove(&(index, handle.id));
            }
            self.answers.push(Answer {
                at_us: self.now_us,
                node: id,
                ticket: handle.ticket,
                reply,
            });
        }
        for (handle, reply) in conf_answers {
            let landed = self.open_requests[node].by_id.remove(&handle.id);
            assert!(
                landed.is_some(),
                "node {id}: answered change {} twice",
                handle.id
            );
            self.trace_line(format!("conf answer {id} {:?} {reply:?}", handle.ticket));
            self.conf_answers
                .push((self.now_us, id, handle.ticket, reply));
        }
        for event in &events {
            self.on_event(node, event);
        }
    }

    fn on_applied(&mut self, node: usize, entry: AppliedEntry) {
        let n = &self.nodes[node];
        assert!(
            n.durable
                .entry(entry.index)
                .is_some_and(|e| e.term == entry.term),
            "node {}: applying unpersisted {} (term {})",
            n.id,
            entry.index,
            entry.term
        );
        let chain = n.durable.chain_at(entry.index).expect("held");
        let term = n.driver.as_ref().expect("up").raft().term();
        let first = self
            .checker
            .on_committed(n.id, entry.index, entry.term, chain, term);
        if first {
            self.check_committed_kept(entry.index, entry.term);
        }
        self.applied
            .push((n.id, entry.index, entry.term, entry.command));
    }

    /// See `checker::check_committed_kept`: every durable log, and every
    /// live node's log, either holds the newly committed entry or could not
    /// win an election.
    fn check_committed_kept(&self, index: LogIndex, term: Term) {
        let mut durable = Vec::new();
        let mut lacking = Vec::new();
        for n in &self.nodes {
            let tip = LogTip {
                last_term: n.durable.last_term(),
                last_index: n.durable.last_index(),
            };
            durable.push((n.id, tip));
            if !n.durable.holds(index, term) {
                // A restart puts the durable log's configuration in force.
                lacking.push((n.id, tip, n.durable.latest_config()));
            }
            if let Some(raft) = n.driver.as_ref().map(|d| d.raft())
                && index > raft.snapshot_meta().last_index
                && raft.term_at(index) != Some(term)
            {
                let last_index = raft.last_index();
                let last_term = raft.term_at(last_index).unwrap_or(Term(0));
                lacking.push((
                    n.id,
                    LogTip {
                        last_term,
                        last_index,
                    },
                    raft.cluster().clone(),
                ));
            }
        }
        check_committed_kept(index, term, &lacking, &durable);
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
            } => {
                assert!(
                    durable.last_index() >= *index,
                    "node {}: acknowledged index {index} with its log persisted through {}",
                    msg.from,
                    durable.last_index()
                );
                // The acknowledged entry is the leader's of `msg.term`, of
                // that term or an earlier one: not one a newer leader wrote.
                if let Some(entry) = durable.entry(*index) {
                    assert!(
                        entry.term <= msg.term,
                        "node {}: acknowledged index {index} in term {} over its durable entry of term {}",
                        msg.from,
                        msg.term,
                        entry.term
                    );
                }
            }
            _ => {}
        }
    }

    fn on_event(&mut self, node: usize, event: &Event) {
        let id = self.nodes[node].id;
        if let Event::RemovedSelf { .. } = event {
            self.removed.push(node);
        }
        if let Event::BecameLeader { kind, term, .. } = event {
            self.checker.on_leader(id, *term);
            // Inside a batch window, checked already when it was elected.
            self.check_leader_completeness(node, *term);
            let raft = self.nodes[node].driver.as_ref().expect("up").raft();
            let grants = self
                .vote_grants
                .get(&(*term, id))
                .cloned()
                .unwrap_or_default();
            check_voter_quorum(id, *term, raft, *kind, &grants);
            let isolate = self.config.isolate_new_leader;
            if isolate > 0.0 && self.rng.random_bool(isolate) {
                let all = self.ids();
                self.partitions.split(&[id], &all);
                self.trace_line(format!("isolate new leader {id}"));
            }
        }
        if let Event::SnapshotInstalled { index, .. } = event {
            // The restored state must serialize exactly as the state it
            // was taken from (checked against every snapshot of `index`).
            let driver = self.nodes[node].driver.as_ref().expect("up");
            let state = driver.state_machine().kv().snapshot();
            self.checker.on_snapshot_state(id, *index, &state);
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

    /// `crash`, and with probability `lose` per peer, the messages to that
    /// peer still in flight are cut at a random point: those sent after it
    /// are lost. A real process hands frames to one sender thread per
    /// peer, and a kill between their writes leaves the peers with
    /// different prefixes of the leader's last Appends (EXPERIMENTS.md 12);
    /// a TCP stream loses a suffix, never a gap. Only the failover
    /// experiment under writes uses it, so the random stream of every other
    /// seed is unchanged.
    pub fn crash_losing_in_flight(&mut self, node: usize, lose: f64) {
        let dead = self.nodes[node].id;
        let mut by_peer: BTreeMap<NodeId, Vec<(u64, u64)>> = BTreeMap::new();
        for (key, event) in &self.queue {
            if let SimEvent::Deliver(m) = event
                && m.from == dead
            {
                by_peer.entry(m.to).or_default().push(*key);
            }
        }
        for (peer, mut keys) in by_peer {
            if !self.rng.random_bool(lose) {
                continue;
            }
            // In the order they were sent (the queue's sequence number).
            keys.sort_by_key(|(_, seq)| *seq);
            let cut = self.rng.random_range(0..keys.len());
            for key in &keys[cut..] {
                self.queue.remove(key);
            }
            self.trace_line(format!(
                "crash {node} loses its last {} frames to {peer}",
                keys.len() - cut
            ));
        }
        self.crash(node);
    }

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
        let n = &mut self.nodes[node];
        n.image = image;
        n.incarnation += 1;
        n.tick_token += 1;
        n.process_pending = false;
        n.paused = false;
        n.held.clear();
        // A leader whose term was not yet durable (a single voter wins on
        // its own vote in one step) may win that term again after this.
        n.completeness_checked = Term(0);
        // A crash answers nobody: its clients time out.
        self.open_requests[node] = OpenRequests::default();
        // Its connections are gone, and what was queued on them.
        let id = self.nodes[node].id;
        self.link_free_us
            .retain(|(from, to, _), _| *from != id && *to != id);
        self.trace_line(format!("crash {node}"));
        if self.config.crash_hints {
            let dead = self.nodes[node].id;
            let survivors: Vec<usize> = (0..self.nodes.len())
                .filter(|o| *o != node && self.is_up(*o))
                .collect();
            for other in survivors {
                // EOF, then a refused reconnect: about one round trip.
                let rtt = 2 * self
                    .net
                    .draw_latency_us(&mut self.rng, dead, self.nodes[other].id);
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

    /// Stops `node`'s process for `for_us` (SIGSTOP, then SIGCONT): its
    /// timers, fsyncs and the messages sent to it wait, and its clients
    /// get no answer. Then its Raft thread takes all of it in one batch,
    /// as the real one drains its backlog: the Ready that follows spans
    /// everything that arrived meanwhile.
    pub fn pause(&mut self, node: usize, for_us: u64) {
        if !self.is_up(node) || self.nodes[node].paused {
            return;
        }
        self.nodes[node].paused = true;
        let incarnation = self.nodes[node].incarnation;
        self.trace_line(format!("pause {node} for {for_us}us"));
        self.push(self.now_us + for_us, SimEvent::Resume { node, incarnation });
    }

    /// Runs a paused node again: every input it missed, then one
    /// hand-out, as the Raft thread drains its backlog (raft_loop.rs): its
    /// channels round-robin (the WAL's and snapshot writer's reports, peer
    /// messages and hints, client requests), each in arrival order, then
    /// a tick. A message in the node's socket before a partition began
    /// still arrives. (The real thread hands out after at most 4096 rounds
    /// and takes snapshot reports one per wake-up; here the whole backlog
    /// is one batch, the harder case.)
    fn resume(&mut self, node: usize) -> Stepped {
        let held = std::mem::take(&mut self.nodes[node].held);
        self.nodes[node].paused = false;
        self.trace_line(format!("resume {node} with {} inputs waiting", held.len()));
        let mut lanes: [VecDeque<SimEvent>; 3] = Default::default();
        for event in held {
            match event {
                SimEvent::Fsync { .. } | SimEvent::SnapshotDone { .. } => lanes[0].push_back(event),
                SimEvent::Deliver(_) | SimEvent::Hint { .. } => lanes[1].push_back(event),
                SimEvent::Request { .. } => lanes[2].push_back(event),
                // The tick below and the hand-out replace them.
                SimEvent::Tick { .. } | SimEvent::Process { .. } | SimEvent::Resume { .. } => {}
            }
        }
        while lanes.iter().any(|lane| !lane.is_empty()) {
            for lane in lanes.iter_mut() {
                // Each input's own output waits for the one hand-out below.
                let stepped = match lane.pop_front() {
                    Some(SimEvent::Deliver(msg)) => self.receive(msg),
                    Some(event) => self.take_event(event),
                    None => Stepped::Nothing,
                };
                if let Stepped::Input(node) = stepped {
                    self.check_inside_batch(node);
                }
            }
        }
        self.nodes[node].process_pending = false;
        let now = self.local_time(node);
        self.driver_mut(node).tick(now);
        Stepped::Process(node)
    }

    /// Where a client request to `node` goes. Only the KV clients'
    /// requests wait at a paused node: they model clients whose connection
    /// stays open, and their answers are matched by ticket, however late.
    /// The other client models need to know at once where a write lands,
    /// and take a paused node as a refusal.
    fn route_request(&self, node: usize, ticket: Ticket) -> Route {
        if !self.is_up(node) {
            return Route::Refuse;
        }
        match (self.nodes[node].paused, ticket) {
            (false, _) => Route::Now,
            (true, Ticket::Kv { .. }) => Route::Hold,
            (true, _) => Route::Refuse,
        }
    }

    /// A request waits in paused `node`'s backlog.
    fn hold_request(&mut self, node: usize, request: HeldRequest) {
        self.nodes[node]
            .held
            .push(SimEvent::Request { node, request });
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
    /// `ticket`. Returns where it will land, when accepted at once.
    pub fn propose(
        &mut self,
        node: usize,
        command: Vec<u8>,
        ticket: Ticket,
    ) -> Option<(LogIndex, Term)> {
        match self.route_request(node, ticket) {
            Route::Now => {
                let landed = self.take_write(node, command, ticket);
                self.input_done(node);
                landed
            }
            Route::Hold => {
                self.hold_request(node, HeldRequest::Write { command, ticket });
                None
            }
            Route::Refuse => None,
        }
    }

    fn take_write(
        &mut self,
        node: usize,
        command: Vec<u8>,
        ticket: Ticket,
    ) -> Option<(LogIndex, Term)> {
        let now = self.local_time(node);
        let handle = self.new_handle(ticket);
        let landed = self.driver_mut(node).propose(now, command, handle);
        let index = landed.map(|(index, _)| index);
        let open = &mut self.open_requests[node];
        open.by_id.insert(handle.id, index);
        if let Some(index) = index {
            open.writes.insert((index, handle.id));
        }
        landed
    }

    fn new_handle(&mut self, ticket: Ticket) -> Handle {
        self.next_request_id += 1;
        Handle {
            id: self.next_request_id,
            ticket,
        }
    }

    /// A linearizable `GET key` at `node`, answered with the store's
    /// applied index and value when the read was served. False: not sent.
    pub fn read(&mut self, node: usize, key: Vec<u8>, ticket: Ticket) -> bool {
        match self.route_request(node, ticket) {
            Route::Refuse => false,
            Route::Now => {
                self.take_read(node, key, ticket);
                self.input_done(node);
                true
            }
            Route::Hold => {
                self.hold_request(node, HeldRequest::Read { key, ticket });
                true
            }
        }
    }

    fn take_read(&mut self, node: usize, key: Vec<u8>, ticket: Ticket) {
        let now = self.local_time(node);
        let query = Box::new(move |sm: &SimStore| sm.get(&key));
        let handle = self.new_handle(ticket);
        self.driver_mut(node).read(now, query, handle);
        self.open_requests[node].by_id.insert(handle.id, None);
    }

    /// A membership change at `node`; the answer arrives in
    /// `conf_answers` under `ticket`. Returns where it will land.
    pub fn propose_conf_change(
        &mut self,
        node: usize,
        change: ConfChange,
        ticket: Ticket,
    ) -> Option<(LogIndex, Term)> {
        if self.route_request(node, ticket) != Route::Now {
            return None;
        }
        self.trace_line(format!("propose {node} {change:?}"));
        let now = self.local_time(node);
        let handle = self.new_handle(ticket);
        let landed = self
            .driver_mut(node)
            .propose_conf_change(now, change, handle);
        self.open_requests[node]
            .by_id
            .insert(handle.id, landed.map(|(index, _)| index));
        self.input_done(node);
        landed
    }

    pub fn transfer_leadership(&mut self, node: usize, target: NodeId) {
        if self.is_up(node) && !self.nodes[node].paused {
            let now = self.local_time(node);
            let _ = self.driver_mut(node).transfer_leadership(now, Some(target));
            self.input_done(node);
        }
    }
}
