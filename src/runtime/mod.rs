//! The thread-per-node runtime around the pure core (DESIGN.md 2): the Raft
//! thread, the peer transport, the durable log; the client port sits on top.

mod clock;
mod log_lines;
pub mod node;
mod observe;
mod raft_loop;
mod status;
pub mod wal_thread;

pub use clock::Clock;
pub use node::{LogWrite, LogWriter, Network, Node, Query, Reply, RequestError, SyncWriter};
pub use observe::Observer;
pub use raft_loop::{Inboxes, ProductionNode, RaftLoop, Request, Waiter};
pub use status::NodeStatus;
pub use wal_thread::{WalEvent, WalWriter};

use crate::core::{ClusterConfig, NodeId, Raft, RaftConfig};
use crate::metrics::Metrics;
use crate::state_machine::StateMachine;
use crate::storage::{FileStorage, StorageError, WalOptions};
use crate::transport::{Transport, TransportConfig, TransportError};
use crossbeam_channel::{Sender, bounded};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Everything a node needs to start, already validated.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    pub id: NodeId,
    pub cluster_id: String,
    /// The secret of the peer handshake; None: peers are not authenticated.
    pub cluster_secret: Option<crate::secret::Secret>,
    /// Mutual TLS on peer connections; None: plain TCP.
    pub tls: Option<crate::tls::NodeTls>,
    /// Peer addresses by node id (position), including this node's own.
    pub peers: Vec<SocketAddr>,
    /// Where this node's peer listener binds.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub raft: RaftConfig,
    pub wal: WalOptions,
    pub frame_bytes_max: u32,
    pub queue_depth: usize,
    /// Test-only one-way delay in the transport (the kernel has no netem).
    pub delay_us: u64,
    pub metrics_file: Option<PathBuf>,
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
        }
    }
}

impl std::error::Error for StartError {}

/// A running node: its request inbox, its published status, and the means
/// to stop it.
pub struct NodeHandle<S> {
    pub requests: Sender<Request<S>>,
    pub status: Arc<Mutex<NodeStatus>>,
    /// The node's counters; the client port and `/metrics` add to and read
    /// them (DESIGN.md 4.8).
    pub metrics: Arc<Metrics>,
    shutdown: Sender<()>,
    thread: Option<JoinHandle<Result<(), StorageError>>>,
}

impl<S> NodeHandle<S> {
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
    state_machine: S,
) -> Result<NodeHandle<S>, StartError> {
    let cluster = ClusterConfig::new((0..options.peers.len() as u64).map(NodeId).collect());
    let (storage, restored) =
        FileStorage::open(&options.data_dir, cluster, options.wal).map_err(StartError::Storage)?;
    log::info!(
        "Node {}: recovered term {} vote {:?} commit {} and {} log entries from {}",
        options.id,
        restored.hard_state.term,
        restored.hard_state.vote,
        restored.hard_state.commit,
        restored.entries.len(),
        options.data_dir.display()
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
    transport_config.secret = options.cluster_secret.clone();
    transport_config.tls = options.tls.clone();
    let (peer_tx, peer_rx) = bounded(INBOX_DEPTH);
    let transport = Transport::start_on(peer_listener, transport_config, peer_tx)
        .map_err(StartError::Transport)?;
    metrics.set_peers(transport.stats_reader());
    let clock = Clock::start();
    // Runtime randomness is fine: only the simulator needs replayable seeds.
    let seed = rand::random::<u64>();
    let raft = Raft::new(
        options.id,
        options.raft.clone(),
        restored,
        seed,
        clock.now_us(),
    );
    let status = Arc::new(Mutex::new(NodeStatus::of(&raft)));
    let (request_tx, request_rx) = bounded(INBOX_DEPTH);
    let (shutdown_tx, shutdown_rx) = bounded(1);
    // Durable reports are few (one per group commit) and must never be
    // dropped: the WAL thread waits rather than lose one.
    let (wal_tx, wal_rx) = bounded(INBOX_DEPTH);
    let writer =
        WalWriter::start_with(storage, wal_tx, metrics.clone()).map_err(StartError::Spawn)?;
    let node = Node::new(raft, writer, transport, state_machine);
    let inboxes = Inboxes {
        peers: peer_rx,
        requests: request_rx,
        wal: wal_rx,
        shutdown: shutdown_rx,
    };
    let raft_loop = RaftLoop::new(
        node,
        clock,
        observer,
        inboxes,
        status.clone(),
        metrics.clone(),
    );
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || raft_loop.run())
        .map_err(StartError::Spawn)?;
    Ok(NodeHandle {
        requests: request_tx,
        status,
        metrics,
        shutdown: shutdown_tx,
        thread: Some(thread),
    })
}
