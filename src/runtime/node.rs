//! The node driver (DESIGN.md 2.2): the one place that turns the core's
//! `Ready` into send → persist → apply → answer, messages that must wait
//! for an fsync held in the write that makes them safe.
//!
//! It is generic over the log writer, the network and the state machine, so
//! that production (a WAL thread, TCP senders, the KV store), the simulator
//! (a simulated disk that loses unsynced writes, a simulated network) and the
//! tests run this same code. It owns no thread and reads no clock: every
//! input carries the time, like the core's.
//!
//! Persistence is asynchronous (Raft thesis 10.2.1, etcd-io/raft's
//! asynchronous storage writes): a write is handed to the [`LogWriter`] and
//! the node goes on stepping messages and sending heartbeats while it is
//! fsynced. The rules that make this safe:
//! - messages that promise durability (vote grants and requests, append
//!   acknowledgements) are held until the write that covers them is
//!   durable (thesis 3.8): they travel with the write, and the writer that
//!   makes it durable sends them (the WAL thread the moment its fsync
//!   returns), except those produced when there was nothing new to write,
//!   which wait here for the report of the last write;
//! - the leader counts its own log toward commit only through what is
//!   durable (`Raft::persisted`);
//! - only committed entries that are durable here are applied.

use crate::core::{
    ChunkReceived, ClusterConfig, ConfChange, ConfChangeError, Entry, EntryPayload, Event,
    HardState, LogIndex, Message, MessageBody, NodeId, ProposeError, Raft, ReadError, Role,
    SnapshotMeta, Term, TransferError,
};
use crate::state_machine::{SnapshotJob, StateMachine};
use crate::storage::{Storage, StorageError};
use std::collections::{BTreeMap, VecDeque};

/// Why a client request could not be served here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Not the leader; the best guess of who is.
    NotLeader { leader: Option<NodeId> },
    /// This node lost track of the entry: a new leader overwrote it (it
    /// was not committed), or this node installed a snapshot over it
    /// before applying it (it may have been). Proposing it again is safe
    /// when the command is deduplicated by a session.
    LeadershipLost,
    /// A leadership transfer is under way; retry shortly.
    TransferInProgress,
    /// Too many requests are waiting.
    Busy,
    /// The command's entry exceeds `entry_bytes_max` (DESIGN.md 7).
    TooLarge {
        entry_bytes: usize,
        entry_bytes_max: usize,
    },
    /// The leader's uncommitted bytes are at `uncommitted_bytes_max`.
    UncommittedFull {
        uncommitted_bytes: usize,
        uncommitted_bytes_max: usize,
    },
}

/// A membership change that committed and was applied here: the
/// configuration it put in force, at its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChangeDone {
    pub index: LogIndex,
    pub config: ClusterConfig,
}

/// Why a membership change has no outcome here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChangeFailure {
    /// Refused at once; the configuration is unchanged.
    Refused(ConfChangeError),
    /// Its entry was overwritten by another leader's (not committed), or
    /// this node installed a snapshot over it before applying it (it may
    /// have committed): read the configuration and decide again.
    LeadershipLost,
    /// Too many requests are waiting.
    Busy,
}

impl std::fmt::Display for ConfChangeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfChangeFailure::Refused(e) => write!(f, "{e}"),
            ConfChangeFailure::LeadershipLost => write!(
                f,
                "leadership changed before the change was applied here; check the member list"
            ),
            ConfChangeFailure::Busy => write!(f, "too many requests waiting; retry shortly"),
        }
    }
}

/// The answer to a membership change, separate from the state machine's.
pub type ConfReply = Result<ConfChangeDone, ConfChangeFailure>;

/// The answer to a client request: the state machine's output, or why
/// there is none.
pub type Reply<O = Vec<u8>> = Result<O, RequestError>;
/// A read, run on the state machine once it is linearizable to do so.
pub type Query<M> = Box<dyn FnOnce(&M) -> <M as StateMachine>::Output + Send>;

/// One write for the log: hard state and entries land together, after every
/// earlier write (writes are ordered by `seq`).
#[derive(Clone, Debug)]
pub struct LogWrite {
    pub seq: u64,
    /// First: every stored entry is void, the log continues after this
    /// installed snapshot (`Storage::reset_to_snapshot`).
    pub reset: Option<SnapshotMeta>,
    pub hard_state: Option<HardState>,
    /// Contiguous; replace any stored entries from `entries[0].index` on.
    pub entries: Vec<Entry>,
    /// Last: a durable snapshot covers the log through this index, so the
    /// log files wholly before it may go (`Storage::compact`).
    pub compact_through: Option<LogIndex>,
    /// Messages that promise what this write makes durable (vote grants
    /// and requests, append acknowledgements): they leave once it is, never
    /// before (Raft thesis 3.8).
    pub held: Vec<Message>,
}

impl LogWrite {
    /// Applies this write to `storage`, in the order above.
    pub fn apply_to<S: Storage>(&self, storage: &mut S) -> Result<(), StorageError> {
        if let Some(meta) = &self.reset {
            let hard_state = self.hard_state.expect("a reset moves the commit index");
            storage.reset_to_snapshot(meta, &hard_state)?;
        }
        storage.persist(self.hard_state.as_ref(), &self.entries)?;
        if let Some(index) = self.compact_through {
            storage.compact(index)?;
        }
        Ok(())
    }
}

/// Snapshot files (DESIGN.md 5): the driver never holds a whole file, only
/// the state machine's serialized state when it takes a snapshot and the
/// chunks that pass through it.
pub trait SnapshotStore {
    /// Starts writing the snapshot file for `meta` holding what `job`
    /// serializes (on another thread, if the store has one).
    /// `Ok(Some(file_bytes))`: it is durable already. `Ok(None)`: the owner
    /// of the node reports it later with [`Node::snapshot_saved`].
    fn save(&mut self, meta: &SnapshotMeta, job: SnapshotJob) -> Result<Option<u64>, StorageError>;
    /// `len` bytes at `offset` of the file for `meta` (fewer at its end).
    fn read_chunk(
        &mut self,
        meta: &SnapshotMeta,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StorageError>;
    /// Appends a chunk of a file being received; offset 0 starts it over.
    fn receive_chunk(&mut self, chunk: &ChunkReceived) -> Result<(), StorageError>;
    /// After the last chunk: checks the file, makes it durable and returns
    /// the state machine's payload in it.
    fn finish_receive(&mut self, meta: &SnapshotMeta) -> Result<Vec<u8>, StorageError>;
}

/// Snapshot "files" in memory: for tests and benchmarks. A file is the
/// payload's length (8 bytes, little-endian) and the payload, so that even
/// an empty state is a non-empty file that a truncated transfer can never
/// pass for.
#[derive(Debug, Default)]
pub struct MemSnapshots {
    /// The newest two, oldest first.
    files: Vec<(SnapshotMeta, Vec<u8>)>,
    receiving: MemReceiver,
}

/// A snapshot "file" of MemSnapshots (and the simulator): the payload's
/// length, then the payload.
pub fn frame_snapshot(payload: &[u8]) -> Vec<u8> {
    let mut file = (payload.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(payload);
    file
}

/// The payload of a whole file made by [`frame_snapshot`], or None if it
/// is not one (truncated, or longer than announced).
pub fn unframe_snapshot(file: &[u8]) -> Option<&[u8]> {
    let (length, payload) = file.split_at_checked(8)?;
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    (length == payload.len() as u64).then_some(payload)
}

fn missing(meta: &SnapshotMeta) -> StorageError {
    StorageError::SnapshotMissing {
        index: meta.last_index,
    }
}

/// `len` bytes at `offset` of the in-memory file for `meta` among `files`
/// (fewer at its end).
pub fn mem_chunk(
    files: &[(SnapshotMeta, Vec<u8>)],
    meta: &SnapshotMeta,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, StorageError> {
    let (_, file) = files
        .iter()
        .find(|(m, _)| m == meta)
        .ok_or_else(|| missing(meta))?;
    let start = (offset as usize).min(file.len());
    let end = start.saturating_add(len).min(file.len());
    Ok(file[start..end].to_vec())
}

/// Adds `file` to `files` (oldest first) and keeps the newest two, as the
/// data dir does.
pub fn keep_newest_two(
    files: &mut Vec<(SnapshotMeta, Vec<u8>)>,
    meta: SnapshotMeta,
    file: Vec<u8>,
) {
    files.push((meta, file));
    files.sort_by_key(|(m, _)| (m.last_index, m.last_term));
    let excess = files.len().saturating_sub(2);
    files.drain(..excess);
}

/// A snapshot file received in memory, in order, chunk by chunk.
#[derive(Debug, Default)]
pub struct MemReceiver(Option<(SnapshotMeta, Vec<u8>)>);

impl MemReceiver {
    /// Appends `chunk`; offset 0 starts a new file.
    pub fn receive(&mut self, chunk: &ChunkReceived) -> Result<(), StorageError> {
        if chunk.offset == 0 {
            self.0 = Some((chunk.meta.clone(), Vec::new()));
        }
        match &mut self.0 {
            Some((meta, bytes)) if *meta == chunk.meta && bytes.len() as u64 == chunk.offset => {
                bytes.extend_from_slice(&chunk.data);
                Ok(())
            }
            _ => Err(missing(&chunk.meta)),
        }
    }

    /// The whole file received for `meta`, and its payload.
    pub fn finish(&mut self, meta: &SnapshotMeta) -> Result<(Vec<u8>, Vec<u8>), StorageError> {
        let Some((_, file)) = self.0.take().filter(|(m, _)| m == meta) else {
            return Err(missing(meta));
        };
        let payload = unframe_snapshot(&file)
            .ok_or_else(|| missing(meta))?
            .to_vec();
        Ok((file, payload))
    }
}

impl SnapshotStore for MemSnapshots {
    fn save(&mut self, meta: &SnapshotMeta, job: SnapshotJob) -> Result<Option<u64>, StorageError> {
        let file = frame_snapshot(&job());
        let bytes = file.len() as u64;
        keep_newest_two(&mut self.files, meta.clone(), file);
        Ok(Some(bytes))
    }

    fn read_chunk(
        &mut self,
        meta: &SnapshotMeta,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StorageError> {
        mem_chunk(&self.files, meta, offset, len)
    }

    fn receive_chunk(&mut self, chunk: &ChunkReceived) -> Result<(), StorageError> {
        self.receiving.receive(chunk)
    }

    fn finish_receive(&mut self, meta: &SnapshotMeta) -> Result<Vec<u8>, StorageError> {
        let (file, payload) = self.receiving.finish(meta)?;
        keep_newest_two(&mut self.files, meta.clone(), file);
        Ok(payload)
    }
}

/// Where the driver sends its writes. Writes become durable in `seq` order.
pub trait LogWriter {
    /// Starts making `write` durable.
    fn submit(&mut self, write: LogWrite) -> Result<Submitted, StorageError>;
}

/// What became of a write handed to a [`LogWriter`].
#[derive(Debug)]
pub enum Submitted {
    /// It is durable already (a writer that fsyncs in the calling thread):
    /// the driver sends its held messages.
    Durable(Vec<Message>),
    /// It is on its way: the writer sends its held messages once it is
    /// durable, and whoever owns the node then reports it with
    /// [`Node::persisted`].
    Queued,
}

/// Any [`Storage`], written and fsynced in the calling thread: for tests,
/// benchmarks and tools. Production uses the WAL thread instead.
pub struct SyncWriter<S>(pub S);

impl<S: Storage> LogWriter for SyncWriter<S> {
    fn submit(&mut self, write: LogWrite) -> Result<Submitted, StorageError> {
        write.apply_to(&mut self.0)?;
        Ok(Submitted::Durable(write.held))
    }
}

/// The outbound side of the transport. Never blocks: a message that cannot
/// be queued is dropped, and Raft retransmits.
pub trait Network {
    fn send(&mut self, msg: Message);
}

/// An outbox: the simulator, the tests and the benches route what the
/// driver sent themselves.
impl Network for Vec<Message> {
    fn send(&mut self, msg: Message) {
        self.push(msg);
    }
}

/// Writes awaiting commit, or reads awaiting confirmation; beyond this a
/// new request of that kind is refused as busy.
pub const PENDING_REQUESTS_MAX: usize = 100_000;

/// Rounds of Ready per `process` call: applying can make the core produce
/// more output (a leader's reads, a follower's acknowledgements), but a
/// flood must not keep the caller from its other inputs.
const READY_ROUNDS_MAX: usize = 4;

/// A write handed to the writer and not yet reported durable.
struct Unsynced {
    seq: u64,
    /// The last entry of the write, reported to the core when durable.
    last: Option<(LogIndex, Term)>,
    /// Messages that promise only what this write (or an earlier one)
    /// makes durable and were produced after it was handed to the writer:
    /// the driver sends them when the write is reported durable.
    late: Vec<Message>,
}

struct PendingRead<M: StateMachine, R> {
    query: Query<M>,
    reply: R,
}

/// What the driver saw applied, for the simulator's checker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEntry {
    pub index: LogIndex,
    pub term: Term,
    pub command: Option<Vec<u8>>,
}

/// The driver. `R` is the caller's handle for answering a client (a
/// channel in production, a ticket in the simulator).
pub struct Node<M: StateMachine, W, N, R, S = MemSnapshots> {
    raft: Raft,
    writer: W,
    network: N,
    state_machine: M,
    snapshots: S,
    /// The snapshot being saved (at most one at a time), and when it was
    /// taken.
    saving: Option<(SnapshotMeta, u64)>,
    /// A snapshot was asked for (BGSAVE): take one at the next chance.
    snapshot_requested: bool,
    /// The newest durable snapshot's index. The log files are compacted
    /// only through the snapshot before it, so that the older snapshot the
    /// data dir keeps stays a usable fallback should the newest one ever
    /// read back damaged (DESIGN.md 5).
    newest_snapshot: Option<LogIndex>,
    /// Oldest first.
    unsynced: VecDeque<Unsynced>,
    last_seq: u64,
    /// By (index, term): a node that lost its entry at an index and leads
    /// again can place a new one there while the first still waits (it may
    /// yet commit through another leader); each is decided when this node
    /// applies that index.
    pending_writes: BTreeMap<(LogIndex, Term), R>,
    /// Membership changes by (index, term), decided like writes when their
    /// index is applied; answered apart from the state machine's output.
    pending_conf_changes: BTreeMap<(LogIndex, Term), R>,
    conf_answers: Vec<(R, ConfReply)>,
    pending_reads: BTreeMap<u64, PendingRead<M, R>>,
    /// Reads confirmed by a heartbeat round, waiting for apply to reach
    /// their index.
    confirmed_reads: Vec<(LogIndex, PendingRead<M, R>)>,
    next_read_ctx: u64,
    answers: Vec<(R, Reply<M::Output>)>,
    events: Vec<Event>,
    /// Kept only when `trace_applied` is set (the simulator's checker).
    applied: Vec<AppliedEntry>,
    trace_applied: bool,
    /// Test-only: deliberate bugs that the simulator must catch.
    pub mutations: DriverMutations,
}

/// Test-only switches that break the driver on purpose, so that a test can
/// show the simulator catches each bug (TigerBeetle-style mutation check).
/// All off in production.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverMutations {
    /// Send vote grants and append acknowledgements before their fsync.
    pub ack_before_fsync: bool,
    /// Tell the core a write is durable when it is handed to the writer,
    /// not when the writer reports it: committed entries are then applied
    /// (and the leader counts its own log) before they are on disk here.
    pub apply_before_persist: bool,
}

impl<M: StateMachine, W: LogWriter, N: Network, R> Node<M, W, N, R, MemSnapshots> {
    /// A node with its snapshots in memory (tests and benchmarks).
    pub fn new(raft: Raft, writer: W, network: N, state_machine: M) -> Self {
        Node::with_snapshots(
            raft,
            writer,
            network,
            state_machine,
            MemSnapshots::default(),
        )
    }
}

impl<M: StateMachine, W: LogWriter, N: Network, R, S: SnapshotStore> Node<M, W, N, R, S> {
    pub fn with_snapshots(
        raft: Raft,
        writer: W,
        network: N,
        state_machine: M,
        snapshots: S,
    ) -> Node<M, W, N, R, S> {
        let newest_snapshot = Some(raft.snapshot_meta().last_index).filter(|i| i.0 > 0);
        Node {
            raft,
            writer,
            network,
            state_machine,
            snapshots,
            saving: None,
            snapshot_requested: false,
            newest_snapshot,
            unsynced: VecDeque::new(),
            last_seq: 0,
            pending_writes: BTreeMap::new(),
            pending_conf_changes: BTreeMap::new(),
            conf_answers: Vec::new(),
            pending_reads: BTreeMap::new(),
            confirmed_reads: Vec::new(),
            next_read_ctx: 1,
            answers: Vec::new(),
            events: Vec::new(),
            applied: Vec::new(),
            trace_applied: false,
            mutations: DriverMutations::default(),
        }
    }

    // ---- Accessors -------------------------------------------------------

    pub fn raft(&self) -> &Raft {
        &self.raft
    }
    pub fn state_machine(&self) -> &M {
        &self.state_machine
    }
    pub fn writer(&self) -> &W {
        &self.writer
    }
    pub fn writer_mut(&mut self) -> &mut W {
        &mut self.writer
    }
    pub fn network(&self) -> &N {
        &self.network
    }
    pub fn network_mut(&mut self) -> &mut N {
        &mut self.network
    }
    pub fn snapshots(&self) -> &S {
        &self.snapshots
    }
    pub fn snapshots_mut(&mut self) -> &mut S {
        &mut self.snapshots
    }
    /// The snapshot being written, if any.
    pub fn snapshot_in_progress(&self) -> Option<&SnapshotMeta> {
        self.saving.as_ref().map(|(meta, _)| meta)
    }
    /// The sequence number of the last write handed to the writer.
    pub fn last_write_seq(&self) -> u64 {
        self.last_seq
    }
    /// Writes handed out and not yet durable.
    pub fn unsynced_writes(&self) -> usize {
        self.unsynced.len()
    }
    pub fn pending_requests(&self) -> usize {
        self.pending_writes.len()
            + self.pending_reads.len()
            + self.confirmed_reads.len()
            + self.pending_conf_changes.len()
    }

    /// Keeps every applied entry for `take_applied` (the simulator's checker).
    pub fn trace_applied(&mut self, on: bool) {
        self.trace_applied = on;
    }

    /// Answers produced since the last call, in the order they were decided.
    pub fn take_answers(&mut self) -> Vec<(R, Reply<M::Output>)> {
        std::mem::take(&mut self.answers)
    }
    /// Membership change answers produced since the last call.
    pub fn take_conf_answers(&mut self) -> Vec<(R, ConfReply)> {
        std::mem::take(&mut self.conf_answers)
    }
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
    pub fn take_applied(&mut self) -> Vec<AppliedEntry> {
        std::mem::take(&mut self.applied)
    }

    // ---- Inputs: each feeds the core; `process` hands out the result -----

    pub fn step(&mut self, now_us: u64, msg: Message) {
        self.raft.step(now_us, msg);
    }

    /// Fires the core's timers if one is due.
    pub fn tick(&mut self, now_us: u64) {
        if now_us >= self.raft.next_deadline_us() {
            self.raft.tick(now_us);
        }
    }

    /// The transport saw `node`'s connection close and a reconnect refused.
    pub fn peer_unreachable(&mut self, now_us: u64, node: NodeId) {
        self.raft.leader_unreachable(now_us, node);
    }

    /// Asks the leader to hand over to `target` (thesis 3.10), or to
    /// [`Raft::transfer_target`] when None. Returns the target.
    pub fn transfer_leadership(
        &mut self,
        now_us: u64,
        target: Option<NodeId>,
    ) -> Result<NodeId, TransferError> {
        let target = match target {
            Some(target) => target,
            None if self.raft.role() != Role::Leader => return Err(TransferError::NotLeader),
            None => self.raft.transfer_target().ok_or(TransferError::NoTarget)?,
        };
        self.raft
            .transfer_leadership(now_us, target)
            .inspect_err(|e| {
                log::info!("node {}: transfer to {target} refused: {e}", self.raft.id())
            })?;
        Ok(target)
    }

    /// A client write: answered once committed and applied, or refused now.
    /// Returns where the entry will land when accepted.
    pub fn propose(&mut self, now_us: u64, command: Vec<u8>, reply: R) -> Option<(LogIndex, Term)> {
        if self.pending_writes.len() >= PENDING_REQUESTS_MAX {
            self.answers.push((reply, Err(RequestError::Busy)));
            return None;
        }
        match self.raft.propose(now_us, command) {
            Ok((index, term)) => {
                let earlier = self.pending_writes.insert((index, term), reply);
                assert!(earlier.is_none(), "two proposals at {index} in term {term}");
                Some((index, term))
            }
            Err(e) => {
                let error = match e {
                    ProposeError::NotLeader { leader } => RequestError::NotLeader { leader },
                    ProposeError::TransferInProgress => RequestError::TransferInProgress,
                    ProposeError::TooLarge {
                        entry_bytes,
                        entry_bytes_max,
                    } => RequestError::TooLarge {
                        entry_bytes,
                        entry_bytes_max,
                    },
                    ProposeError::Busy {
                        uncommitted_bytes,
                        uncommitted_bytes_max,
                    } => RequestError::UncommittedFull {
                        uncommitted_bytes,
                        uncommitted_bytes_max,
                    },
                };
                self.answers.push((reply, Err(error)));
                None
            }
        }
    }

    /// Addresses of members the configuration has none for; the next
    /// change this node proposes as leader records them (DESIGN.md 8).
    pub fn set_addr_hints(&mut self, hints: BTreeMap<NodeId, crate::core::MemberAddrs>) {
        self.raft.set_addr_hints(hints);
    }

    /// A membership change (DESIGN.md 8): answered once its entry is
    /// applied here, with the configuration it put in force, or refused
    /// now. Returns where the entry will land when accepted.
    pub fn propose_conf_change(
        &mut self,
        now_us: u64,
        change: ConfChange,
        reply: R,
    ) -> Option<(LogIndex, Term)> {
        if self.pending_conf_changes.len() >= PENDING_REQUESTS_MAX {
            self.conf_answers
                .push((reply, Err(ConfChangeFailure::Busy)));
            return None;
        }
        match self.raft.propose_conf_change(now_us, change) {
            Ok((index, term)) => {
                let earlier = self.pending_conf_changes.insert((index, term), reply);
                assert!(earlier.is_none(), "two changes at {index} in term {term}");
                Some((index, term))
            }
            Err(e) => {
                self.conf_answers
                    .push((reply, Err(ConfChangeFailure::Refused(e))));
                None
            }
        }
    }

    /// A linearizable read (ReadIndex, thesis 6.4): `query` runs once this
    /// node has applied everything committed when the read arrived and a
    /// heartbeat round confirmed it still leads.
    pub fn read(&mut self, now_us: u64, query: Query<M>, reply: R) {
        if self.pending_reads.len() + self.confirmed_reads.len() >= PENDING_REQUESTS_MAX {
            self.answers.push((reply, Err(RequestError::Busy)));
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        match self.raft.read_index(now_us, ctx) {
            Ok(()) => {
                self.pending_reads.insert(ctx, PendingRead { query, reply });
            }
            Err(ReadError::NotLeader { leader }) => {
                self.answers
                    .push((reply, Err(RequestError::NotLeader { leader })));
            }
        }
    }

    /// The writer made every write through `seq` durable.
    pub fn persisted(&mut self, now_us: u64, seq: u64) {
        assert!(
            seq <= self.last_seq,
            "persisted seq={seq} beyond the last write {}",
            self.last_seq
        );
        while self.unsynced.front().is_some_and(|w| w.seq <= seq) {
            let write = self.unsynced.pop_front().expect("checked");
            // The writer sent the write's own held messages; these came
            // after it was handed over, and also leave only now, after the
            // fsync (Raft thesis 3.8).
            for msg in write.late {
                self.network.send(msg);
            }
            if let Some((index, term)) = write.last {
                self.raft.persisted(now_us, index, term);
            }
        }
    }

    /// Asks for a snapshot now (Redis's BGSAVE), whatever the policy says.
    /// Returns false when one is being written already.
    pub fn request_snapshot(&mut self) -> bool {
        if self.saving.is_some() {
            return false;
        }
        self.snapshot_requested = true;
        true
    }

    /// The snapshot file for `meta` is durable (`file_bytes` long): the
    /// core compacts its log and may send the file, and the log files it
    /// covers can go.
    pub fn snapshot_saved(&mut self, now_us: u64, meta: SnapshotMeta, file_bytes: u64) {
        let started_us = self
            .saving
            .take_if(|(m, _)| *m == meta)
            .map_or(now_us, |(_, started)| started);
        self.events.push(Event::SnapshotSaved {
            index: meta.last_index,
            term: meta.last_term,
            file_bytes,
            took_us: now_us.saturating_sub(started_us),
        });
        let index = meta.last_index;
        self.raft.snapshot_saved(now_us, meta, file_bytes);
        self.on_new_snapshot(index);
    }

    /// Compacts the log files through the previous snapshot. A snapshot
    /// older than the newest (an own save that finished after a newer
    /// install) changes nothing.
    fn on_new_snapshot(&mut self, index: LogIndex) {
        match self.newest_snapshot {
            Some(newest) if newest >= index => {}
            Some(previous) => {
                self.newest_snapshot = Some(index);
                self.compact_log(previous);
            }
            None => self.newest_snapshot = Some(index),
        }
    }

    /// Writing the snapshot for `meta` failed: the log stays as it is, and
    /// the policy asks again later.
    pub fn snapshot_save_failed(&mut self, meta: &SnapshotMeta, error: &StorageError) {
        log::error!(
            "node {}: snapshot at index {} failed: {error}",
            self.raft.id(),
            meta.last_index
        );
        self.saving.take_if(|(m, _)| m == meta);
    }

    /// Queues the deletion of log files through `index` behind every
    /// write handed out so far.
    fn compact_log(&mut self, index: LogIndex) {
        let write = LogWrite {
            seq: 0,
            reset: None,
            hard_state: None,
            entries: Vec::new(),
            compact_through: Some(index),
            held: Vec::new(),
        };
        if let Err(e) = self.submit(write) {
            log::error!(
                "node {}: compacting the log through {index} failed: {e}",
                self.raft.id()
            );
        }
    }

    /// Takes a snapshot of the applied state if the policy (or a request)
    /// asks for one and none is being written.
    fn maybe_snapshot(&mut self) {
        if self.saving.is_some() || !(self.snapshot_requested || self.raft.snapshot_due()) {
            return;
        }
        let Some(meta) = self.raft.snapshot_meta_at_applied() else {
            self.snapshot_requested = false;
            return;
        };
        self.snapshot_requested = false;
        debug_assert!(self.state_machine.applied_index() <= meta.last_index);
        let now_us = self.raft.now_us();
        self.saving = Some((meta.clone(), now_us));
        // A copy-on-write view: the serialization runs elsewhere.
        let job = self.state_machine.snapshot_job();
        match self.snapshots.save(&meta, job) {
            Ok(Some(file_bytes)) => self.snapshot_saved(now_us, meta, file_bytes),
            Ok(None) => {}
            Err(e) => self.snapshot_save_failed(&meta, &e),
        }
    }

    /// Leader: reads each chunk the core asked for and sends it.
    fn send_chunks(&mut self, chunks: Vec<crate::core::ChunkToSend>) {
        for chunk in chunks {
            match self
                .snapshots
                .read_chunk(&chunk.meta, chunk.offset, chunk.len)
            {
                Ok(data) => self.network.send(Message {
                    from: self.raft.id(),
                    to: chunk.to,
                    term: chunk.term,
                    body: MessageBody::InstallSnapshot {
                        meta: chunk.meta,
                        file_bytes: chunk.file_bytes,
                        offset: chunk.offset,
                        data,
                    },
                }),
                // The core resends or starts over with a newer file when
                // the follower does not acknowledge.
                Err(e) => log::warn!(
                    "node {}: snapshot chunk for {} not sent: {e}",
                    self.raft.id(),
                    chunk.to
                ),
            }
        }
    }

    /// Follower: writes each chunk; after the last, installs the file.
    fn receive_chunks(&mut self, chunks: Vec<ChunkReceived>) {
        for chunk in chunks {
            let now_us = self.raft.now_us();
            if let Err(e) = self.snapshots.receive_chunk(&chunk) {
                log::warn!(
                    "node {}: snapshot chunk at {} not written: {e}",
                    self.raft.id(),
                    chunk.offset
                );
                self.raft.snapshot_failed(now_us, &chunk.meta);
                continue;
            }
            if !chunk.is_last() {
                continue;
            }
            let meta = chunk.meta;
            let restored = self
                .snapshots
                .finish_receive(&meta)
                .map_err(|e| e.to_string())
                .and_then(|payload| self.state_machine.restore(meta.last_index, &payload));
            match restored {
                Ok(()) => {
                    self.events.push(Event::SnapshotInstalled {
                        index: meta.last_index,
                        term: meta.last_term,
                        file_bytes: chunk.file_bytes,
                    });
                    let index = meta.last_index;
                    self.raft.snapshot_installed(now_us, meta, chunk.file_bytes);
                    self.on_new_snapshot(index);
                    // Writes this node accepted as leader at indexes the
                    // snapshot covers: their entries will never be applied
                    // here, so their outcome is unknown here.
                    while let Some(pending) = self.pending_writes.first_entry() {
                        if pending.key().0 > index {
                            break;
                        }
                        let reply = pending.remove();
                        self.answers
                            .push((reply, Err(RequestError::LeadershipLost)));
                    }
                    while let Some(pending) = self.pending_conf_changes.first_entry() {
                        if pending.key().0 > index {
                            break;
                        }
                        let reply = pending.remove();
                        self.conf_answers
                            .push((reply, Err(ConfChangeFailure::LeadershipLost)));
                    }
                }
                Err(e) => {
                    log::error!(
                        "node {}: snapshot {} received but not installed: {e}",
                        self.raft.id(),
                        meta.last_index
                    );
                    self.raft.snapshot_failed(now_us, &meta);
                }
            }
        }
    }

    // ---- Output ------------------------------------------------------------

    /// Hands out what the inputs since the last call produced: sends what
    /// may leave now, starts the write, holds what must wait for it, applies
    /// what is committed and durable, and answers clients. A writer error
    /// means the node can no longer keep its promises: the caller stops.
    pub fn process(&mut self) -> Result<(), StorageError> {
        for _ in 0..READY_ROUNDS_MAX {
            if !self.raft.has_ready() {
                break;
            }
            let mut rd = self.raft.ready();
            for msg in std::mem::take(&mut rd.messages) {
                self.network.send(msg);
            }
            self.send_chunks(std::mem::take(&mut rd.chunks_to_send));
            let held = std::mem::take(&mut rd.messages_after_persist);
            self.write(
                rd.log_reset.take(),
                rd.hard_state.take(),
                std::mem::take(&mut rd.entries),
                held,
            )?;
            self.apply(&rd.committed);
            self.receive_chunks(std::mem::take(&mut rd.chunks_received));
            for read in &rd.read_states {
                if let Some(pending) = self.pending_reads.remove(&read.ctx) {
                    self.confirmed_reads.push((read.index, pending));
                }
            }
            for ctx in &rd.reads_dropped {
                if let Some(pending) = self.pending_reads.remove(ctx) {
                    let leader = self.raft.leader();
                    self.answers
                        .push((pending.reply, Err(RequestError::NotLeader { leader })));
                }
            }
            self.events.append(&mut rd.events);
            self.maybe_snapshot();
        }
        self.serve_confirmed_reads();
        Ok(())
    }

    fn write(
        &mut self,
        reset: Option<SnapshotMeta>,
        hard_state: Option<HardState>,
        entries: Vec<Entry>,
        mut held: Vec<Message>,
    ) -> Result<(), StorageError> {
        if self.mutations.ack_before_fsync {
            for msg in held.drain(..) {
                self.network.send(msg);
            }
        }
        if reset.is_none() && hard_state.is_none() && entries.is_empty() {
            // Nothing new to write: the messages promise only what earlier
            // writes hold, so they wait for the last of those.
            match self.unsynced.back_mut() {
                Some(last) => last.late.append(&mut held),
                None => {
                    for msg in held {
                        self.network.send(msg);
                    }
                }
            }
            return Ok(());
        }
        let last = entries.last().map(|e| (e.index, e.term));
        self.submit(LogWrite {
            seq: 0,
            reset,
            hard_state,
            entries,
            compact_through: None,
            held,
        })?;
        if let Some((index, term)) = last.filter(|_| self.mutations.apply_before_persist) {
            let now_us = self.raft.now_us();
            self.raft.persisted(now_us, index, term); // Test-only bug.
        }
        Ok(())
    }

    /// Hands `write` to the writer with the next sequence number.
    fn submit(&mut self, mut write: LogWrite) -> Result<(), StorageError> {
        self.last_seq += 1;
        let seq = self.last_seq;
        write.seq = seq;
        let last = write.entries.last().map(|e| (e.index, e.term));
        self.unsynced.push_back(Unsynced {
            seq,
            last,
            late: Vec::new(),
        });
        if let Submitted::Durable(held) = self.writer.submit(write)? {
            // The writer fsynced in this thread; no later time to report it.
            for msg in held {
                self.network.send(msg);
            }
            let now_us = self.raft.now_us();
            self.persisted(now_us, seq);
        }
        Ok(())
    }

    fn apply(&mut self, committed: &[Entry]) {
        for entry in committed {
            let mut output = match &entry.payload {
                EntryPayload::Command(data) => Some(self.state_machine.apply(entry.index, data)),
                EntryPayload::Noop | EntryPayload::VotersOnly(_) | EntryPayload::Config(_) => None,
            };
            if self.trace_applied {
                self.applied.push(AppliedEntry {
                    index: entry.index,
                    term: entry.term,
                    command: match &entry.payload {
                        EntryPayload::Command(data) => Some(data.to_vec()),
                        _ => None,
                    },
                });
            }
            // Every pending write at or below this index is decided now: its
            // own entry was applied (same term) or replaced (another term).
            while let Some(pending) = self.pending_writes.first_entry() {
                if pending.key().0 > entry.index {
                    break;
                }
                let ((index, term), reply) = pending.remove_entry();
                let result = if index == entry.index && term == entry.term {
                    // A pending write's index and term name its own command.
                    Ok(output
                        .take()
                        .expect("a proposal's entry carries its command"))
                } else {
                    Err(RequestError::LeadershipLost)
                };
                self.answers.push((reply, result));
            }
            self.decide_conf_changes(entry);
        }
    }

    /// Every pending membership change at or below `entry`'s index is
    /// decided: its own entry was applied (same term), or another took its
    /// place.
    fn decide_conf_changes(&mut self, entry: &Entry) {
        while let Some(pending) = self.pending_conf_changes.first_entry() {
            if pending.key().0 > entry.index {
                break;
            }
            let ((index, term), reply) = pending.remove_entry();
            let result = match entry.payload.config() {
                Some(config) if index == entry.index && term == entry.term => {
                    Ok(ConfChangeDone { index, config })
                }
                _ => Err(ConfChangeFailure::LeadershipLost),
            };
            self.conf_answers.push((reply, result));
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
            let output = (read.query)(&self.state_machine);
            self.answers.push((read.reply, Ok(output)));
        }
    }

    /// Takes the node apart: what a crash leaves is the writer's business.
    pub fn into_parts(self) -> (Raft, W, N, M) {
        (self.raft, self.writer, self.network, self.state_machine)
    }
}
