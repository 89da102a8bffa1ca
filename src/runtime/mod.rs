//! The thread-per-node runtime around the pure core (DESIGN.md 2): the Raft
//! thread, the peer transport, the durable log; the client port sits on top.

mod clock;
mod log_lines;
pub mod members;
pub mod memory_keeper;
pub mod node;
mod observe;
pub mod oneshot;
mod raft_loop;
pub mod snapshots;
mod status;
pub mod wal_thread;

pub use clock::Clock;
pub use members::{MemberRow, MembersView, PeerBook};
pub use node::{
    ConfChangeDone, ConfChangeFailure, ConfReply, LogWrite, LogWriter, MemSnapshots, Network, Node,
    Query, Reply, RequestError, SnapshotStore, Submitted, SyncWriter,
};
pub use observe::Observer;
pub use raft_loop::{
    ForwardedOp, ForwardedReply, Inboxes, ProductionNode, RaftLoop, Request, Waiter,
};
pub use snapshots::{FileSnapshots, SnapshotEvent};
pub use status::{LeaderListener, LeaderWatch, Leadership, NodeStatus};
pub use wal_thread::{Outbox, WalEvent, WalWriter};

use crate::core::{ClusterConfig, LogIndex, NodeId, Raft, RaftConfig};
use crate::metrics::Metrics;
use crate::state_machine::StateMachine;
use crate::storage::{FileStorage, StorageError, WalOptions};
use crate::transport::{Transport, TransportConfig, TransportError, TransportHandle};
use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Everything a node needs to start, already validated.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    pub cluster_id: String,
    /// The secret of the peer handshake; None: peers are not authenticated.
    pub cluster_secret: Option<crate::secret::Secret>,
    /// Mutual TLS on peer connections; None: plain TCP.
    pub tls: Option<crate::tls::NodeTls>,
    /// Peer addresses by node id (position), including this node's own:
    /// the initial configuration of a static cluster. Empty with `join`.
    pub peers: Vec<SocketAddr>,
    /// Started with `--join`: the node knows no cluster and waits for a
    /// leader to add it (DESIGN.md 8). A restarted node takes its
    /// configuration from its log and snapshot either way.
    pub join: bool,
    /// This node's peer address as other nodes reach it, announced in
    /// every hello; None: its entry in `peers`, else `listen`.
    pub peer_addr: Option<SocketAddr>,
    /// Where this node's peer listener binds.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub raft: RaftConfig,
    pub wal: WalOptions,
    pub frame_bytes_max: u32,
    pub queue_depth: usize,
    /// Test-only one-way delay in the transport (the kernel has no netem).
    pub delay_us: u64,
    /// Test-only per-peer one-way delays, replacing `delay_us` for the
    /// peers named (RTT zones, `SRAFT_TEST_DELAY_US_BY_PEER`).
    pub delay_us_by_peer: BTreeMap<NodeId, u64>,
    pub metrics_file: Option<PathBuf>,
    /// Test-only: the snapshot thread waits this long before writing, so
    /// that a test can kill the node mid-snapshot.
    pub snapshot_delay_ms: u64,
    /// Where this node serves clients, announced to its peers in every
    /// hello (DESIGN.md 4.4); None: it serves none.
    pub client_addr: Option<SocketAddr>,
}

impl NodeOptions {
    /// Node `id` of the cluster whose peer addresses are `peers` (index =
    /// node id), keeping its log in `data_dir`, with every other setting at
    /// its default: cluster id `sraft`, S-Raft timings, the default limits
    /// table (DESIGN.md 7), fsync on. The embedding entry point; change
    /// fields afterwards as needed.
    pub fn new(id: NodeId, peers: Vec<SocketAddr>, data_dir: impl Into<PathBuf>) -> NodeOptions {
        let listen = *peers
            .get(id.0 as usize)
            .unwrap_or_else(|| panic!("node id {id} is not an index of {} peers", peers.len()));
        let raft = RaftConfig::default();
        NodeOptions {
            id,
            cluster_id: crate::settings::CLUSTER_ID_DEFAULT.to_owned(),
            cluster_secret: None,
            tls: None,
            peers,
            join: false,
            peer_addr: None,
            listen,
            data_dir: data_dir.into(),
            wal: WalOptions {
                record_bytes_max: raft.limits.wal_record_bytes_max,
                ..WalOptions::default()
            },
            frame_bytes_max: raft.limits.frame_bytes_max_u32(),
            raft,
            queue_depth: TransportConfig::QUEUE_DEPTH_DEFAULT,
            delay_us: 0,
            delay_us_by_peer: BTreeMap::new(),
            metrics_file: None,
            snapshot_delay_ms: 0,
            client_addr: None,
        }
    }
}

impl NodeOptions {
    /// A node started with `--join`: it listens at `listen` (also its
    /// advertised peer address) and waits for a leader to add it.
    pub fn joining(id: NodeId, listen: SocketAddr, data_dir: impl Into<PathBuf>) -> NodeOptions {
        let mut options = NodeOptions::new(NodeId(0), vec![listen], data_dir);
        options.id = id;
        options.peers = Vec::new();
        options.join = true;
        options
    }

    /// The peer address this node announces.
    pub fn advertised_peer_addr(&self) -> SocketAddr {
        self.peer_addr
            .or_else(|| self.peers.get(self.id.0 as usize).copied())
            .unwrap_or(self.listen)
    }
}

/// Inputs queued for the Raft thread before senders wait: bounded, so a
/// flood of peers or clients slows down at the socket, not in memory.
const INBOX_DEPTH: usize = 16_384;

#[derive(Debug)]
pub enum StartError {
    Storage(StorageError),
    Transport(TransportError),
    Metrics {
        path: PathBuf,
        source: std::io::Error,
    },
    Spawn(std::io::Error),
    /// The snapshot in the data dir does not restore into the state
    /// machine.
    Restore {
        index: LogIndex,
        reason: String,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Storage(e) => write!(f, "{e}"),
            StartError::Transport(e) => write!(f, "{e}"),
            StartError::Metrics { path, source } => {
                write!(f, "cannot open metrics file {}: {source}", path.display())
            }
            StartError::Spawn(e) => write!(f, "cannot start the raft thread: {e}"),
            StartError::Restore { index, reason } => {
                write!(
                    f,
                    "the snapshot at index {index} does not restore: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for StartError {}

/// A running node: its request inbox, its published status, and the means
/// to stop it.
pub struct NodeHandle<S: StateMachine> {
    pub requests: Sender<Request<S>>,
    pub status: Arc<Mutex<NodeStatus>>,
    /// The node's counters; the client port and `/metrics` add to and read
    /// them (DESIGN.md 4.8).
    pub metrics: Arc<Metrics>,
    /// Queues forwarded requests and replies on the peer connections, and
    /// knows the client addresses peers announced (DESIGN.md 4.4).
    pub transport: TransportHandle,
    /// Told whenever the leader or term this node knows of changes.
    pub leader_watch: Arc<LeaderWatch>,
    /// Answers to requests other nodes forwarded here, for the client
    /// port to send back (`server::relay`).
    pub forwarded_replies: Receiver<ForwardedReply<S::Output>>,
    shutdown: Sender<()>,
    thread: Option<JoinHandle<Result<(), StorageError>>>,
}

impl<S: StateMachine> NodeHandle<S> {
    /// Asks for an orderly shutdown (fsync, close) and waits for it.
    pub fn stop(mut self) -> Result<(), StorageError> {
        let _ = self.shutdown.send(());
        self.join()
    }

    /// Waits for the Raft thread to end (after a shutdown or a fatal error).
    pub fn join(&mut self) -> Result<(), StorageError> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            None => Ok(()),
        }
    }

    pub fn shutdown_sender(&self) -> Sender<()> {
        self.shutdown.clone()
    }

    /// Replicates `command` and waits up to `timeout` until it is committed
    /// and applied here, returning the state machine's output. Only the
    /// leader accepts writes: elsewhere `Err(NotLeader)` names the leader it
    /// knows of. `None`: no answer in time, or the node has stopped; the
    /// write may still take effect, as with any timed-out request.
    pub fn write(&self, command: Vec<u8>, timeout: Duration) -> Option<Reply<S::Output>> {
        let (reply, answer) = oneshot::answer_slot();
        self.requests
            .send_timeout(Request::Write { command, reply }, timeout)
            .ok()?;
        answer.recv_timeout(timeout)
    }

    /// A linearizable read (ReadIndex, DESIGN.md 4.2): `query` runs on the
    /// state machine once it reflects every write committed before the read
    /// arrived. Leader only, like [`NodeHandle::write`]; `None` as there.
    pub fn read(
        &self,
        query: impl FnOnce(&S) -> S::Output + Send + 'static,
        timeout: Duration,
    ) -> Option<Reply<S::Output>> {
        let (reply, answer) = oneshot::answer_slot();
        let query: Query<S> = Box::new(query);
        self.requests
            .send_timeout(Request::Read { query, reply }, timeout)
            .ok()?;
        answer.recv_timeout(timeout)
    }

    /// The node's latest published state (role, term, leader, indexes).
    pub fn status(&self) -> NodeStatus {
        self.status.lock().clone()
    }
}

/// Opens the log, binds the peer port, starts the transport and the Raft
/// thread. Every failure here is reported before the node takes part.
pub fn start<S: StateMachine + 'static>(
    options: &NodeOptions,
    state_machine: S,
) -> Result<NodeHandle<S>, StartError> {
    let listener = TcpListener::bind(options.listen).map_err(|source| {
        StartError::Transport(TransportError::Listen {
            addr: options.listen,
            source,
        })
    })?;
    start_on(listener, options, state_machine)
}

/// As `start`, with the peer port already bound by the caller: the binary
/// binds it before opening the data dir, so that a port in use fails before
/// anything is opened (DESIGN.md 2.7, 4.1).
pub fn start_on<S: StateMachine + 'static>(
    peer_listener: TcpListener,
    options: &NodeOptions,
    mut state_machine: S,
) -> Result<NodeHandle<S>, StartError> {
    let started = std::time::Instant::now();
    let cluster = match options.join {
        true => ClusterConfig::default(),
        false => ClusterConfig::new((0..options.peers.len() as u64).map(NodeId).collect()),
    };
    let (storage, restored, payload) =
        FileStorage::open_with_snapshot(&options.data_dir, cluster, options.wal)
            .map_err(StartError::Storage)?;
    let snapshot = restored.snapshot.clone();
    let loaded = match payload {
        Some(payload) => {
            state_machine
                .restore(snapshot.last_index, &payload)
                .map_err(|reason| StartError::Restore {
                    index: snapshot.last_index,
                    reason,
                })?;
            Some((snapshot.clone(), payload.len() as u64))
        }
        None => None,
    };
    log::info!(
        "Node {}: recovered term {} vote {:?} commit {}, snapshot at index {} and {} log entries after it from {} in {:.1} ms",
        options.id,
        restored.hard_state.term,
        restored.hard_state.vote,
        restored.hard_state.commit,
        snapshot.last_index,
        restored.entries.len(),
        options.data_dir.display(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let metrics = Arc::new(Metrics::new());
    let observer = Observer::new(options.id, options.metrics_file.as_deref(), metrics.clone())
        .map_err(|source| StartError::Metrics {
            path: options.metrics_file.clone().unwrap_or_default(),
            source,
        })?;
    let peers: BTreeMap<NodeId, SocketAddr> = options
        .peers
        .iter()
        .enumerate()
        .map(|(i, addr)| (NodeId(i as u64), *addr))
        .filter(|(id, _)| *id != options.id)
        .collect();
    let mut transport_config = TransportConfig::new(
        options.id,
        options.cluster_id.clone(),
        options.listen,
        peers,
    );
    transport_config.frame_bytes_max = options.frame_bytes_max;
    transport_config.queue_depth = options.queue_depth;
    transport_config.delay_us = options.delay_us;
    transport_config.delay_us_by_peer = options.delay_us_by_peer.clone();
    transport_config.secret = options.cluster_secret.clone();
    transport_config.tls = options.tls.clone();
    transport_config.client_addr = options.client_addr;
    transport_config.peer_addr = Some(options.advertised_peer_addr());
    let (peer_tx, peer_rx) = bounded(INBOX_DEPTH);
    let transport = Transport::start_on(peer_listener, transport_config, peer_tx)
        .map_err(StartError::Transport)?;
    let transport_handle = transport.handle();
    metrics.set_peers(transport.stats_reader());
    let clock = Clock::start();
    // Runtime randomness is fine: only the simulator needs replayable seeds.
    let seed = rand::random::<u64>();
    let mut raft = Raft::new(
        options.id,
        options.raft.clone(),
        restored,
        seed,
        clock.now_us(),
    );
    let (snapshot_tx, snapshot_rx) = bounded(4);
    let mut snapshots = FileSnapshots::new(&options.data_dir, loaded, snapshot_tx);
    snapshots.test_delay_ms = options.snapshot_delay_ms;
    if let Some(file) = snapshots.newest() {
        // Followers that need what it covers get this file.
        raft.snapshot_saved(clock.now_us(), file.meta.clone(), file.file_bytes);
    }
    let status = Arc::new(Mutex::new(NodeStatus::of(&raft)));
    let (request_tx, request_rx) = bounded(INBOX_DEPTH);
    let (shutdown_tx, shutdown_rx) = bounded(1);
    // Durable reports are few (one per group commit) and must never be
    // dropped: the WAL thread waits rather than lose one.
    let (wal_tx, wal_rx) = bounded(INBOX_DEPTH);
    // Acknowledgements leave from the WAL thread, the moment they are true.
    let held_outbox = transport.handle();
    #[allow(clippy::result_large_err)] // As `TransportHandle::send`.
    let outbox: Outbox = Box::new(move |msg| held_outbox.send(msg));
    let writer = WalWriter::start_with(storage, wal_tx, metrics.clone(), Some(outbox))
        .map_err(StartError::Spawn)?;
    let node = Node::with_snapshots(raft, writer, transport, state_machine, snapshots);
    let inboxes = Inboxes {
        peers: peer_rx,
        requests: request_rx,
        wal: wal_rx,
        snapshots: snapshot_rx,
        shutdown: shutdown_rx,
    };
    let leader_watch = Arc::new(LeaderWatch::default());
    // As deep as the request inbox: every request in it may be a forward.
    let (forwarded_tx, forwarded_rx) = bounded(INBOX_DEPTH);
    let raft_loop = RaftLoop::new(
        node,
        clock,
        observer,
        inboxes,
        status.clone(),
        metrics.clone(),
    )
    .with_forwarding(leader_watch.clone(), forwarded_tx)
    .with_peer_book(PeerBook {
        static_peers: options.peers.clone(),
    });
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || raft_loop.run())
        .map_err(StartError::Spawn)?;
    Ok(NodeHandle {
        requests: request_tx,
        status,
        metrics,
        transport: transport_handle,
        leader_watch,
        forwarded_replies: forwarded_rx,
        shutdown: shutdown_tx,
        thread: Some(thread),
    })
}
