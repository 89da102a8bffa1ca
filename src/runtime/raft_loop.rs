//! The Raft thread (DESIGN.md 2): owns the core, the storage and the state
//! machine; loops on `select!` over its inboxes with a deadline at the next
//! tick; after each batch of inputs persists what the core asks (one fsync
//! for the batch), hands out messages, applies committed entries and answers
//! clients.

use super::clock::Clock;
use super::observe::Observer;
use super::status::NodeStatus;
use crate::core::{EntryPayload, LogIndex, NodeId, ProposeError, Raft, ReadError, Ready, Term};
use crate::state_machine::StateMachine;
use crate::storage::{Storage, StorageError};
use crate::transport::{Transport, TransportEvent};
use crossbeam_channel::{Receiver, Sender, select};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Inputs taken per batch before the core's output is handled: many client
/// writes then share one fsync (group commit), while a flood of input can
/// still not starve the output.
const BATCH_INPUTS_MAX: usize = 4096;
/// Writes awaiting commit, or reads awaiting confirmation; beyond this a
/// new request of that kind is refused as busy.
const PENDING_REQUESTS_MAX: usize = 100_000;

/// Why a client request could not be served here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Not the leader; the best guess of who is.
    NotLeader { leader: Option<NodeId> },
    /// The entry was overwritten by a new leader: it was not committed.
    LeadershipLost,
    /// A leadership transfer is under way; retry shortly.
    TransferInProgress,
    /// Too many requests are waiting.
    Busy,
}

pub type Reply = Result<Vec<u8>, RequestError>;
pub type Query<S> = Box<dyn FnOnce(&S) -> Vec<u8> + Send>;

pub enum Request<S> {
    /// Replicate `command`; reply with the state machine's output once it is
    /// committed and applied.
    Write {
        command: Vec<u8>,
        reply: Sender<Reply>,
    },
    /// A linearizable read (ReadIndex): `query` runs once this node has
    /// applied everything committed when the read arrived.
    Read {
        query: Query<S>,
        reply: Sender<Reply>,
    },
}

struct PendingRead<S> {
    query: Query<S>,
    reply: Sender<Reply>,
}

pub struct RaftLoop<S> {
    raft: Raft,
    storage: Box<dyn Storage>,
    state_machine: S,
    transport: Transport,
    clock: Clock,
    observer: Observer,
    peer_rx: Receiver<TransportEvent>,
    request_rx: Receiver<Request<S>>,
    shutdown_rx: Receiver<()>,
    status: Arc<Mutex<NodeStatus>>,
    pending_writes: BTreeMap<LogIndex, (Term, Sender<Reply>)>,
    pending_reads: BTreeMap<u64, PendingRead<S>>,
    /// Reads confirmed by a heartbeat round, waiting for apply to reach
    /// their index.
    confirmed_reads: Vec<(LogIndex, PendingRead<S>)>,
    next_read_ctx: u64,
}

impl<S: StateMachine> RaftLoop<S> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft: Raft,
        storage: Box<dyn Storage>,
        state_machine: S,
        transport: Transport,
        clock: Clock,
        observer: Observer,
        peer_rx: Receiver<TransportEvent>,
        request_rx: Receiver<Request<S>>,
        shutdown_rx: Receiver<()>,
        status: Arc<Mutex<NodeStatus>>,
    ) -> RaftLoop<S> {
        RaftLoop {
            raft,
            storage,
            state_machine,
            transport,
            clock,
            observer,
            peer_rx,
            request_rx,
            shutdown_rx,
            status,
            pending_writes: BTreeMap::new(),
            pending_reads: BTreeMap::new(),
            confirmed_reads: Vec::new(),
            next_read_ctx: 1,
        }
    }

    /// Runs until shutdown is requested (Ok) or storage fails (Err: the node
    /// must stop, it can no longer keep its promises).
    pub fn run(mut self) -> Result<(), StorageError> {
        self.handle_ready()?;
        loop {
            let deadline = self.clock.instant_at(self.raft.next_deadline_us());
            // Output left over from a busy batch must not wait for the next
            // tick, which for a follower can be a second away.
            let timeout = if self.raft.has_ready() {
                std::time::Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            select! {
                recv(self.peer_rx) -> event => match event {
                    Ok(event) => self.on_peer(event),
                    Err(_) => break,
                },
                recv(self.request_rx) -> request => {
                    if let Ok(request) = request {
                        self.on_request(request);
                    }
                },
                recv(self.shutdown_rx) -> _ => break,
                default(timeout) => {}
            }
            self.drain_inputs();
            let now = self.clock.now_us();
            if now >= self.raft.next_deadline_us() {
                self.raft.tick(now);
            }
            self.handle_ready()?;
        }
        self.shutdown()
    }

    fn drain_inputs(&mut self) {
        for _ in 0..BATCH_INPUTS_MAX {
            let mut got = false;
            if let Ok(event) = self.peer_rx.try_recv() {
                self.on_peer(event);
                got = true;
            }
            if let Ok(request) = self.request_rx.try_recv() {
                self.on_request(request);
                got = true;
            }
            if !got {
                return;
            }
        }
    }

    fn on_peer(&mut self, event: TransportEvent) {
        let now = self.clock.now_us();
        match event {
            TransportEvent::Message(msg) => self.raft.step(now, msg),
            TransportEvent::PeerUnreachable(node) => self.raft.leader_unreachable(now, node),
        }
    }

    fn on_request(&mut self, request: Request<S>) {
        let now = self.clock.now_us();
        match request {
            Request::Write { command, reply } => {
                if self.pending_writes.len() >= PENDING_REQUESTS_MAX {
                    let _ = reply.send(Err(RequestError::Busy));
                    return;
                }
                match self.raft.propose(now, command) {
                    Ok((index, term)) => {
                        self.pending_writes.insert(index, (term, reply));
                    }
                    Err(ProposeError::NotLeader { leader }) => {
                        let _ = reply.send(Err(RequestError::NotLeader { leader }));
                    }
                    Err(ProposeError::TransferInProgress) => {
                        let _ = reply.send(Err(RequestError::TransferInProgress));
                    }
                }
            }
            Request::Read { query, reply } => {
                if self.pending_reads.len() >= PENDING_REQUESTS_MAX {
                    let _ = reply.send(Err(RequestError::Busy));
                    return;
                }
                let ctx = self.next_read_ctx;
                self.next_read_ctx += 1;
                match self.raft.read_index(now, ctx) {
                    Ok(()) => {
                        self.pending_reads.insert(ctx, PendingRead { query, reply });
                    }
                    Err(ReadError::NotLeader { leader }) => {
                        let _ = reply.send(Err(RequestError::NotLeader { leader }));
                    }
                }
            }
        }
    }

    /// Persist, then send what depended on it, then apply (DESIGN.md 2).
    fn handle_ready(&mut self) -> Result<(), StorageError> {
        // A few rounds: applying can make the core produce more output
        // (a leader's reads, a follower's acknowledgements).
        for _ in 0..4 {
            if !self.raft.has_ready() {
                break;
            }
            let mut rd = self.raft.ready();
            for msg in std::mem::take(&mut rd.messages) {
                self.transport.send(msg);
            }
            if rd.hard_state.is_some() || !rd.entries.is_empty() {
                self.storage.persist(rd.hard_state.as_ref(), &rd.entries)?;
            }
            // Vote grants and append acknowledgements leave only now, after
            // the fsync (Raft thesis 3.8).
            for msg in std::mem::take(&mut rd.messages_after_persist) {
                self.transport.send(msg);
            }
            self.apply(&rd);
            let now = self.clock.now_us();
            for event in &rd.events {
                self.observer.on_event(now, event);
            }
            self.raft.advance(&rd);
        }
        self.serve_confirmed_reads();
        *self.status.lock() = NodeStatus::of(&self.raft);
        Ok(())
    }

    fn apply(&mut self, rd: &Ready) {
        for entry in &rd.committed {
            let mut output = match &entry.payload {
                EntryPayload::Command(data) => Some(self.state_machine.apply(entry.index, data)),
                EntryPayload::Noop | EntryPayload::Config(_) => None,
            };
            // Every pending write at or below this index is decided now: its
            // own entry was applied (same term) or replaced (another term).
            while let Some(entry_pending) = self.pending_writes.first_entry() {
                if *entry_pending.key() > entry.index {
                    break;
                }
                let (index, (term, reply)) = entry_pending.remove_entry();
                let result = if index == entry.index && term == entry.term {
                    Ok(output.take().unwrap_or_default())
                } else {
                    Err(RequestError::LeadershipLost)
                };
                let _ = reply.send(result);
            }
        }
        for read in &rd.read_states {
            if let Some(pending) = self.pending_reads.remove(&read.ctx) {
                self.confirmed_reads.push((read.index, pending));
            }
        }
        for ctx in &rd.reads_dropped {
            if let Some(pending) = self.pending_reads.remove(ctx) {
                let _ = pending.reply.send(Err(RequestError::NotLeader {
                    leader: self.raft.leader(),
                }));
            }
        }
    }

    fn serve_confirmed_reads(&mut self) {
        if self.confirmed_reads.is_empty() {
            return;
        }
        let applied = self.raft.applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed_reads = waiting;
        for (_, read) in ready {
            let _ = read.reply.send(Ok((read.query)(&self.state_machine)));
        }
    }

    fn shutdown(mut self) -> Result<(), StorageError> {
        log::info!("Node {}: shutting down", self.raft.id());
        let result = self.storage.sync();
        self.transport.shutdown();
        result
    }
}
