//! The Raft thread (DESIGN.md 2.4): a thin shell around the node driver. It
//! loops on `select!` over its inboxes with a deadline at the next tick,
//! feeds each input to the driver, and after each batch lets the driver
//! hand out the result. Writes go to the WAL thread, which sends the
//! acknowledgements they carry once they are durable (the few it has no
//! peer queue for come back here), while this thread keeps ticking.

use super::clock::Clock;
use super::members::{MembersView, PeerBook};
use super::node::{ConfReply, Network, Node, Query, Reply, RequestError};
use super::observe::Observer;
use super::oneshot::AnswerTx;
use super::snapshots::{FileSnapshots, SnapshotEvent};
use super::status::{LeaderWatch, Leadership, NodeStatus};
use super::wal_thread::{WalEvent, WalWriter};
use crate::core::{ConfChange, Event, Message, NodeId, Role, TransferError};
use crate::metrics::{Metrics, Outcome};
use crate::state_machine::StateMachine;
use crate::storage::StorageError;
use crate::transport::{Transport, TransportEvent};
use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;

/// Inputs taken per batch before the driver's output is handled: many client
/// writes then share one write to the WAL thread, while a flood of input can
/// still not starve the output.
const BATCH_INPUTS_MAX: usize = 4096;

pub enum Request<S: StateMachine> {
    /// Replicate `command`; reply with the state machine's output once it is
    /// committed and applied.
    Write {
        command: Vec<u8>,
        reply: AnswerTx<Reply<S::Output>>,
    },
    /// A linearizable read (ReadIndex): `query` runs once this node has
    /// applied everything committed when the read arrived.
    Read {
        query: Query<S>,
        reply: AnswerTx<Reply<S::Output>>,
    },
    /// Take a snapshot now (BGSAVE); answered at once, `Err(Busy)` when
    /// one is being written.
    Snapshot { reply: AnswerTx<Reply<()>> },
    /// Hand leadership over (thesis 3.10) to `target`, or to the primary
    /// sub-leader when None; answered at once with the target, or why not.
    /// The caller watches the published status for the handover itself.
    TransferLeader {
        target: Option<NodeId>,
        reply: Sender<Result<NodeId, TransferError>>,
    },
    /// A membership change (DESIGN.md 8); answered once its entry is
    /// applied here, or at once when refused.
    ConfChange {
        change: ConfChange,
        reply: Sender<ConfReply>,
    },
    /// The members as this node sees them.
    Members { reply: Sender<MembersView> },
    /// A write or read a follower forwarded over the peer transport
    /// (DESIGN.md 4.4). Served like `Write` and `Read`; the answer goes,
    /// tagged with `from` and `request_id`, to the node's one channel of
    /// forwarded replies, whose thread sends it back to the follower. No
    /// thread waits per request.
    Forwarded {
        from: NodeId,
        request_id: u64,
        op: ForwardedOp<S>,
    },
}

/// What a follower forwarded.
pub enum ForwardedOp<S: StateMachine> {
    Write(Vec<u8>),
    Read(Query<S>),
}

/// The answer to a forwarded request, for the thread that sends it back
/// (and encodes the state machine's output for the wire).
#[derive(Debug)]
pub struct ForwardedReply<O> {
    pub to: NodeId,
    pub request_id: u64,
    pub answer: Reply<O>,
}

impl Network for Transport {
    fn send(&mut self, msg: Message) {
        Transport::send(self, msg);
    }
}

/// The production node: the KV store (or any state machine), the WAL
/// thread, the TCP transport, clients answered over channels.
pub type ProductionNode<S> =
    Node<S, WalWriter, Transport, Waiter<<S as StateMachine>::Output>, FileSnapshots>;

/// A client request the driver holds until it is answered: where the
/// answer goes, and what the metrics need to time it.
pub struct Waiter<O> {
    reply: ReplyTo<O>,
    received_us: u64,
    write: bool,
}

/// Where an answer goes.
enum ReplyTo<O> {
    /// A client thread of this node, waiting on its own channel.
    Local(AnswerTx<Reply<O>>),
    /// A follower's forwarded request.
    Peer { from: NodeId, request_id: u64 },
    /// An operator's membership change.
    Conf(Sender<ConfReply>),
}

/// How an answer counts in the metrics.
fn outcome<O>(answer: &Reply<O>) -> Outcome {
    match answer {
        Ok(_) => Outcome::Ok,
        Err(RequestError::NotLeader { .. }) => Outcome::NotLeader,
        Err(RequestError::LeadershipLost | RequestError::TransferInProgress) => Outcome::Lost,
        Err(
            RequestError::Busy
            | RequestError::TooLarge { .. }
            | RequestError::UncommittedFull { .. },
        ) => Outcome::Refused,
    }
}

/// The inputs of the Raft thread.
pub struct Inboxes<S: StateMachine> {
    pub peers: Receiver<TransportEvent>,
    pub requests: Receiver<Request<S>>,
    pub wal: Receiver<WalEvent>,
    pub snapshots: Receiver<SnapshotEvent>,
    pub shutdown: Receiver<()>,
}

pub struct RaftLoop<S: StateMachine> {
    node: ProductionNode<S>,
    clock: Clock,
    observer: Observer,
    inboxes: Inboxes<S>,
    status: Arc<Mutex<NodeStatus>>,
    metrics: Arc<Metrics>,
    /// Told whenever the leader or term changes.
    leader_watch: Arc<LeaderWatch>,
    /// Answers to forwarded requests; bounded and fed with `try_send`, so
    /// that a stuck sender thread can never block this one (a dropped
    /// answer: the follower times out and retries, deduplicated).
    forwarded_replies: Option<Sender<ForwardedReply<S::Output>>>,
    /// Where peers are, as the configuration changes (DESIGN.md 8).
    peer_book: PeerBook,
    /// When the transport's peers were last matched to the configuration.
    peers_synced_us: u64,
    /// A committed configuration (at this index) removed this node: it
    /// stops once it has applied that entry, so that the operator's change
    /// is answered, or after `REMOVED_DRAIN` at the latest.
    removed: Option<(crate::core::LogIndex, Instant)>,
    /// Forwarded requests that reached this node while it was a candidate,
    /// sent by voters betting on its win (DESIGN.md 4.4). Served the moment
    /// it leads, in the same round as its no-op; once it is no longer a
    /// candidate of the term they came in, served as any request is (a
    /// follower answers `NotLeader`).
    held_forwards: Vec<HeldForward<S>>,
}

/// A forwarded request a candidate holds.
struct HeldForward<S: StateMachine> {
    term: crate::core::Term,
    reply: ReplyTo<S::Output>,
    op: ForwardedOp<S>,
    received_us: u64,
}

/// Forwarded requests a candidate holds at most; beyond, they are answered
/// at once (`NotLeader`) and their followers wait for the election's end.
const HELD_FORWARDS_MAX: usize = 4096;

/// How often the transport's peers are matched to the configuration even
/// without a change: departing nodes leave once told, a `--join` node's
/// leader is kept while it leads.
const PEER_SYNC_INTERVAL_US: u64 = 1_000_000;

/// Longest wait of a removed node for its removal's entry to be applied
/// and, if it led, for its hand-over.
const REMOVED_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

impl<S: StateMachine> RaftLoop<S> {
    /// Finds peers the configuration has no address for in the static
    /// `--peers` list (`book`).
    pub fn with_peer_book(mut self, book: PeerBook) -> RaftLoop<S> {
        self.peer_book = book;
        self
    }

    /// Publishes leader changes to `watch` and sends the answers to
    /// forwarded requests to `replies`.
    pub fn with_forwarding(
        mut self,
        watch: Arc<LeaderWatch>,
        replies: Sender<ForwardedReply<S::Output>>,
    ) -> RaftLoop<S> {
        self.leader_watch = watch;
        self.forwarded_replies = Some(replies);
        self
    }

    pub fn new(
        node: ProductionNode<S>,
        clock: Clock,
        observer: Observer,
        inboxes: Inboxes<S>,
        status: Arc<Mutex<NodeStatus>>,
        metrics: Arc<Metrics>,
    ) -> RaftLoop<S> {
        RaftLoop {
            node,
            clock,
            observer,
            inboxes,
            status,
            metrics,
            leader_watch: Arc::default(),
            forwarded_replies: None,
            peer_book: PeerBook::default(),
            peers_synced_us: 0,
            removed: None,
            held_forwards: Vec::new(),
        }
    }

    /// Runs until shutdown is requested (Ok) or storage fails (Err: the node
    /// must stop, it can no longer keep its promises).
    pub fn run(mut self) -> Result<(), StorageError> {
        let result = self.run_until_stopped();
        log::info!("Node {}: shutting down", self.node.raft().id());
        // Orderly: every write handed out is written and fsynced first.
        self.node.writer_mut().finish();
        self.node.snapshots_mut().finish();
        self.node.network_mut().shutdown();
        result
    }

    fn run_until_stopped(&mut self) -> Result<(), StorageError> {
        self.configure_client_addrs();
        self.sync_peers();
        self.handle_output()?;
        loop {
            if let Some((index, since)) = self.removed {
                // A removed leader first hands over (TimeoutNow to its
                // primary once that one has its whole log): stopping before
                // would leave the others to elect by timeout.
                let raft = self.node.raft();
                let done = raft.applied_index() >= index && raft.role() != Role::Leader;
                if done || since.elapsed() >= REMOVED_DRAIN {
                    return Ok(());
                }
            }
            let deadline = self.clock.instant_at(self.node.raft().next_deadline_us());
            // Output left over from a busy batch must not wait for the next
            // tick, which for a follower can be a second away.
            let timeout = if self.node.raft().has_ready() {
                std::time::Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            select! {
                recv(self.inboxes.wal) -> event => match event {
                    Ok(event) => self.on_wal(event)?,
                    Err(_) => return Ok(()),
                },
                recv(self.inboxes.snapshots) -> event => {
                    if let Ok(event) = event {
                        self.on_snapshot(event);
                    }
                },
                recv(self.inboxes.peers) -> event => match event {
                    Ok(event) => self.on_peer(event),
                    Err(_) => return Ok(()),
                },
                recv(self.inboxes.requests) -> request => {
                    if let Ok(request) = request {
                        self.on_request(request);
                    }
                },
                recv(self.inboxes.shutdown) -> _ => return Ok(()),
                default(timeout) => {}
            }
            self.drain_inputs()?;
            self.node.tick(self.clock.now_us());
            self.handle_output()?;
        }
    }

    fn drain_inputs(&mut self) -> Result<(), StorageError> {
        for _ in 0..BATCH_INPUTS_MAX {
            let mut got = false;
            if let Ok(event) = self.inboxes.wal.try_recv() {
                self.on_wal(event)?;
                got = true;
            }
            if let Ok(event) = self.inboxes.peers.try_recv() {
                self.on_peer(event);
                got = true;
            }
            if let Ok(request) = self.inboxes.requests.try_recv() {
                self.on_request(request);
                got = true;
            }
            if !got {
                break;
            }
        }
        Ok(())
    }

    fn on_wal(&mut self, event: WalEvent) -> Result<(), StorageError> {
        match event {
            WalEvent::Durable { seq, unsent } => {
                for msg in unsent {
                    self.node.network_mut().send(msg);
                }
                self.node.persisted(self.clock.now_us(), seq);
                Ok(())
            }
            WalEvent::Failed(error) => {
                log::error!(
                    "Node {}: the write-ahead log failed, stopping: {error}",
                    self.node.raft().id()
                );
                Err(error)
            }
        }
    }

    fn on_snapshot(&mut self, event: SnapshotEvent) {
        let now = self.clock.now_us();
        match event {
            SnapshotEvent::Saved(file) => {
                let (meta, bytes) = (file.meta.clone(), file.file_bytes);
                self.node.snapshots_mut().on_saved(file);
                self.node.snapshot_saved(now, meta, bytes);
            }
            SnapshotEvent::Failed(meta, error) => {
                self.node.snapshots_mut().on_failed();
                self.node.snapshot_save_failed(&meta, &error);
            }
        }
    }

    fn on_peer(&mut self, event: TransportEvent) {
        let now = self.clock.now_us();
        match event {
            TransportEvent::Message(msg) => self.node.step(now, msg),
            TransportEvent::PeerUnreachable(node) => self.node.peer_unreachable(now, node),
        }
    }

    fn on_request(&mut self, request: Request<S>) {
        let now = self.clock.now_us();
        match request {
            Request::Write { command, reply } => {
                let waiter = Waiter {
                    reply: ReplyTo::Local(reply),
                    received_us: now,
                    write: true,
                };
                self.node.propose(now, command, waiter);
            }
            Request::Read { query, reply } => {
                let waiter = Waiter {
                    reply: ReplyTo::Local(reply),
                    received_us: now,
                    write: false,
                };
                self.node.read(now, query, waiter);
            }
            Request::Forwarded {
                from,
                request_id,
                op,
            } => {
                let reply = ReplyTo::Peer { from, request_id };
                let raft = self.node.raft();
                if raft.role() == Role::Candidate && self.held_forwards.len() < HELD_FORWARDS_MAX {
                    self.held_forwards.push(HeldForward {
                        term: raft.term(),
                        reply,
                        op,
                        received_us: now,
                    });
                } else {
                    self.on_forwarded(now, reply, op);
                }
            }
            Request::Snapshot { reply } => {
                let answer = match self.node.request_snapshot() {
                    true => Ok(()),
                    false => Err(RequestError::Busy),
                };
                reply.send(answer);
            }
            Request::TransferLeader { target, reply } => {
                let _ = reply.send(self.node.transfer_leadership(now, target));
            }
            Request::ConfChange { change, reply } => {
                let hints = self.peer_book.hints(
                    self.node.raft(),
                    self.node.network().handle().client_addrs(),
                );
                self.node.set_addr_hints(hints);
                let waiter = Waiter {
                    reply: ReplyTo::Conf(reply),
                    received_us: now,
                    write: true,
                };
                self.node.propose_conf_change(now, change, waiter);
            }
            Request::Members { reply } => {
                let view = self.peer_book.view(
                    self.node.raft(),
                    self.node.network().handle().client_addrs(),
                );
                let _ = reply.send(view);
            }
        }
    }

    /// A follower's forwarded request, received at `received_us`: served
    /// exactly like a local one.
    fn on_forwarded(&mut self, received_us: u64, reply: ReplyTo<S::Output>, op: ForwardedOp<S>) {
        let now = self.clock.now_us();
        match op {
            ForwardedOp::Write(command) => {
                let waiter = Waiter {
                    reply,
                    received_us,
                    write: true,
                };
                self.node.propose(now, command, waiter);
            }
            ForwardedOp::Read(query) => {
                let waiter = Waiter {
                    reply,
                    received_us,
                    write: false,
                };
                self.node.read(now, query, waiter);
            }
        }
    }

    /// Serves the held forwarded requests once this node is no longer the
    /// candidate of the term they came in: as leader, before its first
    /// round leaves, so that they travel with its no-op.
    fn release_held_forwards(&mut self) {
        if self.held_forwards.is_empty() {
            return;
        }
        let raft = self.node.raft();
        let (role, term) = (raft.role(), raft.term());
        let held = std::mem::take(&mut self.held_forwards);
        let mut served = 0;
        for forward in held {
            if role == Role::Candidate && forward.term == term {
                self.held_forwards.push(forward);
            } else {
                served += 1;
                self.on_forwarded(forward.received_us, forward.reply, forward.op);
            }
        }
        if served > 0 {
            log::debug!(
                "Node {}: {served} forwarded requests held during the election served as {}",
                self.node.raft().id(),
                role.name()
            );
        }
    }

    /// The driver does send → persist → apply → answer; this thread then
    /// delivers the answers, logs the events and publishes the status.
    fn handle_output(&mut self) -> Result<(), StorageError> {
        self.release_held_forwards();
        self.node.process()?;
        let now = self.clock.now_us();
        for (waiter, answer) in self.node.take_answers() {
            let elapsed_us = now.saturating_sub(waiter.received_us);
            if waiter.write {
                self.metrics.proposal(outcome(&answer), elapsed_us);
            } else {
                self.metrics.read(outcome(&answer), elapsed_us);
            }
            self.deliver(waiter.reply, answer);
        }
        for (waiter, answer) in self.node.take_conf_answers() {
            if let ReplyTo::Conf(reply) = waiter.reply {
                let _ = reply.send(answer);
            }
        }
        let mut config_changed = false;
        for event in self.node.take_events() {
            self.observer.on_event(now, &event);
            match event {
                Event::ConfigChanged { .. } => config_changed = true,
                // The observer has said so in the log.
                Event::RemovedSelf { index } => self.removed = Some((index, Instant::now())),
                _ => {}
            }
        }
        if config_changed {
            self.configure_client_addrs();
        }
        if config_changed || now.saturating_sub(self.peers_synced_us) >= PEER_SYNC_INTERVAL_US {
            self.sync_peers();
        }
        *self.status.lock() = NodeStatus::of(self.node.raft());
        self.leader_watch.publish(Leadership::of(self.node.raft()));
        Ok(())
    }

    /// Tells the client port where the configuration's members serve
    /// clients (at start and at every configuration change).
    fn configure_client_addrs(&self) {
        let handle = self.node.network().handle();
        for (&id, addrs) in &self.node.raft().cluster().addrs {
            if let Some(addr) = super::members::parse_addr(&addrs.client_addr) {
                handle.client_addrs().configure(id, addr);
            }
        }
    }

    /// Matches the transport's peers to the configuration in force.
    fn sync_peers(&mut self) {
        self.peers_synced_us = self.clock.now_us();
        let transport = self.node.network();
        let current = transport.peer_addrs();
        let learned = transport.learned_addrs();
        let peers = self
            .peer_book
            .transport_peers(self.node.raft(), &current, &learned);
        if peers != current
            && let Err(e) = self.node.network_mut().set_peers(&peers)
        {
            log::error!(
                "Node {}: cannot start a peer sender: {e}",
                self.node.raft().id()
            );
        }
    }

    /// Hands an answer to whoever waits for it, never blocking: a local
    /// client's channel has room for its one answer, and the channel of
    /// forwarded replies is fed with `try_send`.
    fn deliver(&self, reply: ReplyTo<S::Output>, answer: Reply<S::Output>) {
        match reply {
            ReplyTo::Local(reply) => reply.send(answer),
            ReplyTo::Conf(_) => {
                unreachable!("membership changes are answered by take_conf_answers")
            }
            ReplyTo::Peer { from, request_id } => {
                let Some(replies) = &self.forwarded_replies else {
                    return;
                };
                let reply = ForwardedReply {
                    to: from,
                    request_id,
                    answer,
                };
                if replies.try_send(reply).is_err() {
                    log::debug!(
                        "Node {}: answer to forward {request_id} of node {from} dropped: reply queue full",
                        self.node.raft().id()
                    );
                }
            }
        }
    }
}
