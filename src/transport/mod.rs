//! Peer transport: length-prefixed postcard frames over TCP (or TLS,
//! DESIGN.md 9), with no async runtime (DESIGN.md 1, 2.4 and 2.6).
//!
//! Threads, each named and each ending when its channel closes or on
//! [`Transport::shutdown`]:
//! - `listener` accepts peer connections and spawns a `conn-<addr>` reader per
//!   connection, which runs the handshake of `auth.rs` (the cluster secret's
//!   challenge-response) and then forwards messages to the inbox;
//! - `peer-<id>` owns the outbound connection to one peer: it drains two
//!   bounded queues, writes every queued frame in one `write`, and reconnects
//!   with backoff. Appends go in the bulk lane; every other message
//!   (heartbeats, votes, replies) in the control lane, which is written
//!   first, so that a heartbeat never waits behind megabytes of queued
//!   Appends (etcd keeps separate streams for the same reason); `peer-<id>-watch` blocks on a read of that connection to notice
//!   the moment the peer's kernel closes it (DESIGN.md 3.5).
//!
//! The callers (the Raft thread, the WAL thread with the acknowledgements it
//! holds, client threads forwarding) never block here: [`Transport::send`] is a
//! `try_send`, and a full queue drops the message and counts it, because Raft
//! retransmits whatever still matters.

pub mod auth;
mod forward;
pub mod frame;
mod listener;
mod sender;

use crate::core::{Message, NodeId};
use crate::secret::Secret;
use crate::tls::NodeTls;
use auth::PeerAuth;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use forward::{ClientAddrs, ForwardHandler, TransportHandle};
pub use frame::{ForwardOutcome, ForwardRequest, FrameError, Hello, PROTOCOL_VERSION, PeerFrame};

/// What the transport hands to the Raft thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// A message from a peer whose hello was accepted.
    Message(Message),
    /// Crash hint (DESIGN.md 3.5): a connection with this peer ended and an
    /// immediate reconnect was refused, so no process is listening at its
    /// address. Sent once per outage: not again until a connection to the peer
    /// has succeeded. A hint that may start an election, never authority.
    PeerUnreachable(NodeId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    pub id: NodeId,
    /// Peers refuse connections whose hello names another cluster, so that two
    /// clusters sharing hosts and ports can never exchange votes.
    pub cluster_id: String,
    pub listen: SocketAddr,
    /// Every other voter, by id. Must not contain `id`.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Largest payload accepted or sent; a larger length prefix closes the
    /// connection before any allocation.
    pub frame_bytes_max: u32,
    /// Messages queued per peer and lane before `send` starts dropping.
    pub queue_depth: usize,
    pub reconnect_backoff_ms_min: u64,
    pub reconnect_backoff_ms_max: u64,
    /// How long either side of a connection may take over the handshake.
    pub hello_timeout_ms: u64,
    /// How long a crash probe made while disconnected, whose connect
    /// succeeded, waits for a dying listener's reset (DESIGN.md 3.5).
    pub probe_answer_wait_ms: u64,
    /// The cluster secret every peer must prove it knows (DESIGN.md 9);
    /// None: peers are not authenticated.
    pub secret: Option<Secret>,
    /// Mutual TLS on every peer connection (DESIGN.md 9); None: plain TCP.
    pub tls: Option<NodeTls>,
    /// TEST-ONLY one-way delay emulation (the kernel here has no netem): the
    /// sender holds each message until its enqueue time plus this delay.
    pub delay_us: u64,
    /// TEST-ONLY: per-peer delays that replace `delay_us` for the peers
    /// they name (RTT zones on one machine, issue 13).
    pub delay_us_by_peer: BTreeMap<NodeId, u64>,
    /// This node's client address as announced in every hello (DESIGN.md
    /// 4.4); None: it serves no clients.
    pub client_addr: Option<SocketAddr>,
    /// This node's peer address as announced in every hello (DESIGN.md 8):
    /// where a node that does not know it connects back. None: not
    /// announced, and only nodes that know it from their configuration
    /// answer it.
    pub peer_addr: Option<SocketAddr>,
}

impl TransportConfig {
    /// The default limits table's frame limit; a node takes its own from
    /// its `Limits` (DESIGN.md 7).
    pub fn frame_bytes_max_default() -> u32 {
        crate::limits::Limits::default().frame_bytes_max_u32()
    }
    pub const QUEUE_DEPTH_DEFAULT: usize = 4096;

    /// A config with the default limits, timeouts and no delay.
    pub fn new(
        id: NodeId,
        cluster_id: impl Into<String>,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> TransportConfig {
        TransportConfig {
            id,
            cluster_id: cluster_id.into(),
            listen,
            peers,
            frame_bytes_max: Self::frame_bytes_max_default(),
            queue_depth: Self::QUEUE_DEPTH_DEFAULT,
            reconnect_backoff_ms_min: 5,
            reconnect_backoff_ms_max: 500,
            hello_timeout_ms: 5_000,
            probe_answer_wait_ms: 20,
            secret: None,
            tls: None,
            delay_us: 0,
            delay_us_by_peer: BTreeMap::new(),
            client_addr: None,
            peer_addr: None,
        }
    }

    /// The test-only one-way delay of messages to `peer`.
    pub fn delay_us_to(&self, peer: NodeId) -> u64 {
        self.delay_us_by_peer
            .get(&peer)
            .copied()
            .unwrap_or(self.delay_us)
    }

    /// Names the first bad value.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |reason: String| Err(TransportError::Config(reason));
        if self.peers.contains_key(&self.id) {
            return bad(format!("peers contain this node's own id {}", self.id));
        }
        if self.queue_depth == 0 {
            return bad("queue_depth must be at least 1".into());
        }
        if self.frame_bytes_max == 0 {
            return bad("frame_bytes_max must be at least 1".into());
        }
        if self.reconnect_backoff_ms_min == 0 {
            return bad("reconnect_backoff_ms_min must be at least 1".into());
        }
        if self.reconnect_backoff_ms_min > self.reconnect_backoff_ms_max {
            return bad(format!(
                "reconnect_backoff_ms_min={} exceeds reconnect_backoff_ms_max={}",
                self.reconnect_backoff_ms_min, self.reconnect_backoff_ms_max
            ));
        }
        if self.hello_timeout_ms == 0 {
            return bad("hello_timeout_ms must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug)]
pub enum TransportError {
    Config(String),
    Listen { addr: SocketAddr, source: io::Error },
    Spawn(io::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Config(reason) => write!(f, "bad transport config: {reason}"),
            TransportError::Listen { addr, source } => {
                write!(f, "cannot listen on {addr}: {}", os_error_text(source))
            }
            TransportError::Spawn(e) => write!(f, "cannot spawn a transport thread: {e}"),
        }
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransportError::Config(_) => None,
            TransportError::Listen { source, .. } | TransportError::Spawn(source) => Some(source),
        }
    }
}

/// The OS's wording ("Address already in use") without Rust's " (os error 98)"
/// suffix, which means nothing to an operator.
fn os_error_text(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Counters for one peer, as of the moment they were read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Messages written to the peer's socket.
    pub sent: u64,
    /// Bytes of those messages' frames.
    pub bytes_sent: u64,
    /// Messages dropped: queue full, stale when a connect failed, lost in a
    /// failed write, or larger than `frame_bytes_max`.
    pub dropped: u64,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Whether an outbound connection is established right now.
    pub connected: bool,
}

#[derive(Default)]
struct PeerCounters {
    sent: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
}

impl PeerCounters {
    fn snapshot(&self) -> PeerStats {
        PeerStats {
            sent: self.sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// The per-peer counters, readable from any thread after the transport
/// itself has moved into the Raft thread (the metrics endpoint).
#[derive(Clone)]
pub struct PeerStatsReader {
    shared: Arc<Shared>,
}

impl PeerStatsReader {
    pub fn read(&self) -> BTreeMap<NodeId, PeerStats> {
        self.shared
            .lanes
            .read()
            .iter()
            .map(|(&id, lanes)| (id, lanes.counters.snapshot()))
            .collect()
    }
}

/// Which of a peer's two queues a message waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Everything but Appends: small, and late is as bad as lost.
    Control,
    /// Appends: large, and flow-controlled by the core (inflight bounds).
    Bulk,
}

impl Lane {
    /// Reordering across lanes is safe: Raft tolerates any reordering, and
    /// the core never sends a message whose meaning depends on an Append
    /// before it having arrived (a heartbeat's commit is at most the
    /// follower's acknowledged match; TimeoutNow waits for the match).
    ///
    /// Forwarded client requests and their replies go by size: a small one
    /// in the control lane, where it does not wait behind megabytes of
    /// Appends (a forwarded SET is latency-bound like a heartbeat); one
    /// above `FORWARD_CONTROL_BYTES_MAX` in the bulk lane, so that a large
    /// value never delays the heartbeats that keep the leader in office.
    /// Each request is answered by its id, so no order between them is
    /// needed.
    fn of(frame: &PeerFrame) -> Lane {
        match frame {
            PeerFrame::Message(msg) => match msg.body {
                crate::core::MessageBody::Append { .. }
                | crate::core::MessageBody::InstallSnapshot { .. } => Lane::Bulk,
                _ => Lane::Control,
            },
            PeerFrame::Forward { request, .. } => Lane::by_size(request.payload_bytes()),
            PeerFrame::ForwardReply { outcome, .. } => Lane::by_size(outcome.payload_bytes()),
            // Handshake frames never wait in a queue.
            PeerFrame::Hello(_) | PeerFrame::Challenge(_) | PeerFrame::Proof(_) => Lane::Control,
        }
    }

    fn by_size(payload_bytes: usize) -> Lane {
        if payload_bytes > FORWARD_CONTROL_BYTES_MAX {
            Lane::Bulk
        } else {
            Lane::Control
        }
    }
}

/// Largest forwarded request or reply that travels in the control lane:
/// a few typical values, small next to the 1 MiB batches of the bulk lane.
const FORWARD_CONTROL_BYTES_MAX: usize = 16 << 10;

/// A frame waiting in a peer's queue: a Raft message, or a forwarded client
/// request or reply.
struct Queued {
    frame: PeerFrame,
    /// Only read when `delay_us > 0`.
    enqueued_at: Instant,
}

/// Wakes a peer's sender thread about a connection that ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nudge {
    /// The watcher saw outbound connection `generation` closed by the peer.
    OutboundClosed { generation: u64 },
    /// The peer's connection to us ended with EOF or a reset.
    InboundClosed,
}

/// Capacity of a sender's nudge channel: a nudge means "look now", so one
/// waiting is as good as many and the rest can be dropped.
const NUDGE_DEPTH: usize = 4;

/// Never sent: the channel's only use is to disconnect when the transport
/// shuts down, which wakes every thread blocked in a `select!` on it.
enum Never {}

/// A socket that `shutdown` must close to unblock the thread using it.
/// `closed` is set first, so a socket registered after shutdown began is
/// closed on registration instead of being missed.
#[derive(Default)]
struct SocketSlot {
    closed: bool,
    stream: Option<TcpStream>,
}

impl SocketSlot {
    fn set(&mut self, stream: TcpStream) {
        if self.closed {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        self.stream = Some(stream);
    }

    fn close(&mut self) {
        self.closed = true;
        if let Some(stream) = self.stream.take() {
            // Wakes a blocked read or write on the other handle; an error
            // means the socket is already gone, which is the goal.
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// State the listener, readers and senders share.
struct Shared {
    id: NodeId,
    /// Cluster id and secret, for both sides of the handshake.
    auth: PeerAuth,
    tls: Option<NodeTls>,
    frame_bytes_max: u32,
    hello_timeout: Duration,
    inbox: Sender<TransportEvent>,
    shutdown_rx: Receiver<Never>,
    shutting_down: AtomicBool,
    /// Every peer's queues and nudge channel, changed by the Raft thread as
    /// the configuration changes (`Transport::set_peers`): readers tell a
    /// peer's sender when that peer's inbound connection ends, and
    /// forwarders queue requests and replies.
    lanes: RwLock<BTreeMap<NodeId, PeerLanes>>,
    /// Peer addresses that connectors announced in their hellos, for peers
    /// this node was not told of (DESIGN.md 8): a node started with
    /// `--join` answers its first leader at the address it announced.
    learned: Mutex<BTreeMap<NodeId, SocketAddr>>,
    /// This node's peer address, announced in every hello.
    peer_addr: Option<SocketAddr>,
    readers: Mutex<listener::Readers>,
    /// Rate limit on the log lines about refused connections.
    refusals: Mutex<listener::RefusalLog>,
    /// This node's client address, announced in every hello.
    client_addr: Option<SocketAddr>,
    /// Every node's client address, as announced in hellos.
    client_addrs: ClientAddrs,
    /// Where forwarded requests and replies go (the client port's
    /// forwarder); set once, after the node is started. Until then a
    /// forward is dropped and its sender times out.
    forward: std::sync::OnceLock<Arc<dyn ForwardHandler>>,
}

impl Shared {
    /// Hands `event` to the Raft thread, blocking while its inbox is full
    /// (back-pressure onto the peer's socket) but not past shutdown. Returns
    /// false if the event could not be delivered and the caller should stop.
    fn deliver(&self, event: TransportEvent) -> bool {
        crossbeam_channel::select! {
            send(self.inbox, event) -> sent => sent.is_ok(),
            recv(self.shutdown_rx) -> _ => false,
        }
    }
}

/// What other threads need of a peer's sender: its queues, its nudge
/// channel, its counters.
#[derive(Clone)]
struct PeerLanes {
    bulk: Sender<Queued>,
    control: Sender<Queued>,
    nudge: Sender<Nudge>,
    counters: Arc<PeerCounters>,
}

struct PeerHandle {
    /// Where its sender connects.
    addr: SocketAddr,
    /// Bulk lane (Appends).
    queue: Option<Sender<Queued>>,
    /// Control lane (everything else).
    control: Option<Sender<Queued>>,
    counters: Arc<PeerCounters>,
    outbound: Arc<Mutex<SocketSlot>>,
    thread: Option<JoinHandle<()>>,
}

/// A running transport. Dropping it shuts it down.
pub struct Transport {
    id: NodeId,
    listen_addr: SocketAddr,
    /// What every sender is started with (peers change, the rest does not).
    config: TransportConfig,
    shared: Arc<Shared>,
    shutdown_tx: Option<Sender<Never>>,
    listener: Option<JoinHandle<()>>,
    peers: BTreeMap<NodeId, PeerHandle>,
    /// Senders of peers that left, still ending (a connect in progress
    /// takes up to its timeout); joined at shutdown.
    retired: Vec<PeerHandle>,
}

impl Transport {
    /// Binds the listener (so a port in use fails here, before any thread
    /// exists), then starts the listener and one sender per peer.
    pub fn start(
        config: TransportConfig,
        inbox: Sender<TransportEvent>,
    ) -> Result<Transport, TransportError> {
        config.validate()?;
        let tcp_listener =
            TcpListener::bind(config.listen).map_err(|source| TransportError::Listen {
                addr: config.listen,
                source,
            })?;
        Transport::start_on(tcp_listener, config, inbox)
    }

    /// As `start`, on a listener the caller bound earlier (the binary binds
    /// its ports before it opens the data dir, so that a port in use is
    /// reported before anything is opened).
    pub fn start_on(
        tcp_listener: TcpListener,
        config: TransportConfig,
        inbox: Sender<TransportEvent>,
    ) -> Result<Transport, TransportError> {
        config.validate()?;
        let listen_addr = tcp_listener
            .local_addr()
            .map_err(|source| TransportError::Listen {
                addr: config.listen,
                source,
            })?;
        let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded::<Never>(0);
        let shared = Arc::new(Shared {
            id: config.id,
            auth: PeerAuth {
                cluster_id: config.cluster_id.clone(),
                secret: config.secret.clone(),
            },
            tls: config.tls.clone(),
            frame_bytes_max: config.frame_bytes_max,
            hello_timeout: Duration::from_millis(config.hello_timeout_ms),
            inbox,
            shutdown_rx,
            shutting_down: AtomicBool::new(false),
            lanes: RwLock::new(BTreeMap::new()),
            learned: Mutex::new(BTreeMap::new()),
            peer_addr: config.peer_addr,
            readers: Mutex::new(listener::Readers::default()),
            refusals: Mutex::new(listener::RefusalLog::default()),
            client_addr: config.client_addr,
            client_addrs: ClientAddrs::default(),
            forward: std::sync::OnceLock::new(),
        });
        if let Some(addr) = config.client_addr {
            shared.client_addrs.announce(config.id, addr);
        }
        let peers = config.peers.clone();
        let mut transport = Transport {
            id: config.id,
            listen_addr,
            config,
            shared: Arc::clone(&shared),
            shutdown_tx: Some(shutdown_tx),
            listener: None,
            peers: BTreeMap::new(),
            retired: Vec::new(),
        };
        // From here on, a failure drops `transport`, which shuts down
        // whatever was already started.
        transport.listener = Some(listener::spawn(tcp_listener, Arc::clone(&shared))?);
        for (peer, addr) in peers {
            transport.add_peer(peer, addr)?;
        }
        log::info!(
            "[Node {}] transport listening on {listen_addr}, {} peers",
            transport.id,
            transport.peers.len()
        );
        Ok(transport)
    }

    /// The address the listener is bound to (useful when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Queues `msg` for `msg.to` without blocking. A message for a peer this
    /// transport has no sender for goes to the address the peer announced
    /// in its hello, if it connected to us (DESIGN.md 8); otherwise it is
    /// logged and dropped. A full queue drops the message and counts it.
    pub fn send(&mut self, msg: Message) {
        if !self.peers.contains_key(&msg.to) {
            let learned = self.shared.learned.lock().get(&msg.to).copied();
            let added = learned.is_some_and(|addr| match self.add_peer(msg.to, addr) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!(
                        "[Node {}] cannot start a sender to {}: {e}",
                        self.id,
                        msg.to
                    );
                    false
                }
            });
            if !added {
                log::debug!(
                    "[Node {}] dropping {} for unknown peer {}",
                    self.id,
                    msg.body.kind(),
                    msg.to
                );
                return;
            }
        }
        let peer = &self.peers[&msg.to];
        let (Some(queue), Some(control)) = (&peer.queue, &peer.control) else {
            return; // Shut down: nothing leaves any more.
        };
        enqueue(queue, control, &peer.counters, PeerFrame::Message(msg));
    }

    /// Makes the peer set `peers` (every other member, by id): starts a
    /// sender for each new peer or changed address, and stops the senders
    /// of peers not named. Called by the Raft thread whenever the
    /// configuration changes (DESIGN.md 8).
    pub fn set_peers(
        &mut self,
        peers: &BTreeMap<NodeId, SocketAddr>,
    ) -> Result<(), TransportError> {
        let gone: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(id, handle)| peers.get(id) != Some(&handle.addr))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.remove_peer(id);
        }
        for (&id, &addr) in peers {
            if id != self.id && !self.peers.contains_key(&id) {
                self.add_peer(id, addr)?;
            }
        }
        Ok(())
    }

    /// The peers this transport has a sender for, with their addresses.
    pub fn peer_addrs(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.peers.iter().map(|(&id, p)| (id, p.addr)).collect()
    }

    /// The peer addresses that unknown connectors announced.
    pub fn learned_addrs(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.shared.learned.lock().clone()
    }

    fn add_peer(&mut self, peer: NodeId, addr: SocketAddr) -> Result<(), TransportError> {
        if self.shutdown_tx.is_none() {
            return Ok(());
        }
        let (nudge_tx, nudges) = crossbeam_channel::bounded(NUDGE_DEPTH);
        let handle = sender::spawn(
            &self.config,
            peer,
            addr,
            nudges,
            nudge_tx.clone(),
            Arc::clone(&self.shared),
        )?;
        let lanes = PeerLanes {
            bulk: handle.queue.clone().expect("a new sender has queues"),
            control: handle.control.clone().expect("a new sender has queues"),
            nudge: nudge_tx,
            counters: Arc::clone(&handle.counters),
        };
        self.shared.lanes.write().insert(peer, lanes);
        if let Some(old) = self.peers.insert(peer, handle) {
            self.retire(old);
        }
        log::info!("[Node {}] peer {peer} at {addr}", self.id);
        Ok(())
    }

    fn remove_peer(&mut self, peer: NodeId) {
        self.shared.lanes.write().remove(&peer);
        if let Some(handle) = self.peers.remove(&peer) {
            log::info!("[Node {}] peer {peer} at {} removed", self.id, handle.addr);
            self.retire(handle);
        }
    }

    /// Ends a sender without waiting for it: its closed queues end its
    /// loop, the closed socket wakes a blocked write.
    fn retire(&mut self, mut handle: PeerHandle) {
        drop(handle.queue.take());
        drop(handle.control.take());
        handle.outbound.lock().close();
        self.retired.retain_mut(|old| {
            let finished = old.thread.as_ref().is_none_or(|t| t.is_finished());
            if finished && let Some(thread) = old.thread.take() {
                join(thread);
            }
            !finished
        });
        self.retired.push(handle);
    }

    /// A handle that queues forwarded requests and replies from other
    /// threads, and reads the client addresses peers announced.
    pub fn handle(&self) -> TransportHandle {
        TransportHandle::new(&self.shared)
    }

    /// Counters per peer.
    pub fn stats(&self) -> BTreeMap<NodeId, PeerStats> {
        self.peers
            .iter()
            .map(|(&id, peer)| (id, peer.counters.snapshot()))
            .collect()
    }

    /// A handle on `stats()` for other threads; it follows peer changes.
    pub fn stats_reader(&self) -> PeerStatsReader {
        PeerStatsReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stops accepting, closes every connection, and joins every thread.
    /// Bounded in time: every blocking call a thread can be in is woken by
    /// a closed socket or the disconnected shutdown channel; the longest wait
    /// is a sender's connect timeout. Idempotent.
    pub fn shutdown(&mut self) {
        if self.shutdown_tx.is_none() {
            return;
        }
        self.shared.shutting_down.store(true, Ordering::SeqCst);
        drop(self.shutdown_tx.take());
        // The listener goes first, as with a killed process: once peers see
        // our connections close, a reconnect is refused.
        if let Some(handle) = self.listener.take() {
            listener::wake(self.listen_addr);
            join(handle);
        }
        let readers = std::mem::take(&mut *self.shared.readers.lock());
        readers.close_and_join();
        self.shared.lanes.write().clear();
        let mut all: Vec<PeerHandle> = std::mem::take(&mut self.peers).into_values().collect();
        all.append(&mut self.retired);
        for peer in &mut all {
            drop(peer.queue.take());
            drop(peer.control.take());
            peer.outbound.lock().close();
        }
        for peer in &mut all {
            if let Some(handle) = peer.thread.take() {
                join(handle);
            }
        }
        log::info!("[Node {}] transport shut down", self.id);
    }
}

/// Queues `frame` in its lane without blocking; false (and counted as
/// dropped) if the lane is full.
fn enqueue(
    bulk: &Sender<Queued>,
    control: &Sender<Queued>,
    counters: &PeerCounters,
    frame: PeerFrame,
) -> bool {
    let lane = match Lane::of(&frame) {
        Lane::Bulk => bulk,
        Lane::Control => control,
    };
    let queued = Queued {
        frame,
        enqueued_at: Instant::now(),
    };
    if lane.try_send(queued).is_err() {
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    true
}

// The runtime hands the transport between threads (built in `main`, used by
// the Raft thread): keep it Send and Sync.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Transport>();
};

impl Drop for Transport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Joins a transport thread; a panic in it is a bug in this module, so it is
/// re-raised rather than hidden.
fn join(handle: JoinHandle<()>) {
    let name = handle.thread().name().unwrap_or("?").to_string();
    if let Err(panic) = handle.join() {
        if thread::panicking() {
            log::error!("transport thread {name} panicked");
        } else {
            std::panic::resume_unwind(panic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TransportConfig {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let peers = BTreeMap::from([(NodeId(2), addr(5002)), (NodeId(3), addr(5003))]);
        TransportConfig::new(NodeId(1), "c1", addr(5001), peers)
    }

    fn config_error(config: &TransportConfig) -> String {
        match config.validate() {
            Err(TransportError::Config(reason)) => reason,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn default_config_is_valid() {
        config().validate().unwrap();
    }

    #[test]
    fn validate_names_the_bad_value() {
        let mut c = config();
        c.peers.insert(NodeId(1), c.listen);
        assert_eq!(config_error(&c), "peers contain this node's own id 1");
        let mut c = config();
        c.queue_depth = 0;
        assert_eq!(config_error(&c), "queue_depth must be at least 1");
        let mut c = config();
        c.reconnect_backoff_ms_min = 600;
        assert_eq!(
            config_error(&c),
            "reconnect_backoff_ms_min=600 exceeds reconnect_backoff_ms_max=500"
        );
    }

    #[test]
    fn listen_error_reads_like_the_os_message() {
        let err = TransportError::Listen {
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            source: io::Error::from_raw_os_error(98),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("cannot listen on 127.0.0.1:5000: "),
            "{text}"
        );
        assert!(!text.contains("os error"), "{text}");
    }
}
