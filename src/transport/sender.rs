//! Outbound side: the `peer-<id>` thread that owns the connection to one peer,
//! and the `peer-<id>-watch` thread that notices when the peer closes it.

use super::auth::{Advertised, HandshakeError, connect_handshake_advertising};
use super::frame::{PeerFrame, encode_frame};
use super::{
    Lane, Nudge, PeerCounters, PeerHandle, Queued, Shared, SocketSlot, TransportConfig,
    TransportError, TransportEvent, join,
};
use crate::core::NodeId;
use crate::tls::Stream;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A batch is written once it reaches this size, so that one burst of large
/// appends does not build an unbounded buffer.
const BATCH_BYTES_MAX: usize = 1 << 20;

/// Longest wait for a TCP handshake. A peer whose host is down (no RST comes
/// back) costs one of these per attempt, and shutdown may wait for one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A dying process's kernel resets its connections before it closes its
/// listener, so a crash probe can land in between: its connect is accepted
/// and then reset (or reset outright) instead of refused. Such a probe is
/// asked again this much later (a loopback connect costs tens of
/// microseconds; 2 ms cost a hinted voter up to 2 ms of stickiness)...
const PROBE_AGAIN_AFTER: Duration = Duration::from_micros(500);
/// ...at most this many times after one EOF (50 ms in all), until a refusal
/// (the process is gone) or an answered handshake (it lives).
const PROBES_AGAIN_MAX: u32 = 100;
/// A probe made while the outbound connection still looks up (the inbound
/// one ended first) waits at most this long: a refusal comes back within a
/// round trip, and the sender has heartbeats to write.
const PROBE_WHILE_CONNECTED_TIMEOUT: Duration = Duration::from_millis(20);

pub(super) fn spawn(
    config: &TransportConfig,
    peer: NodeId,
    addr: SocketAddr,
    nudges: Receiver<Nudge>,
    nudge_tx: Sender<Nudge>,
    shared: Arc<Shared>,
) -> Result<PeerHandle, TransportError> {
    let (queue_tx, queue) = crossbeam_channel::bounded(config.queue_depth);
    let (control_tx, control) = crossbeam_channel::bounded(config.queue_depth);
    let counters = Arc::new(PeerCounters::default());
    let outbound = Arc::new(Mutex::new(SocketSlot::default()));
    let sender = PeerSender {
        peer,
        addr,
        source: outbound_source(config.listen, addr),
        frame_bytes_max: config.frame_bytes_max,
        delay: Duration::from_micros(config.delay_us_to(peer)),
        pending_max: config.queue_depth,
        handshake_timeout: Duration::from_millis(config.hello_timeout_ms),
        probe_answer_wait: Duration::from_millis(config.probe_answer_wait_ms),
        queue,
        control,
        nudges,
        nudge_tx,
        counters: Arc::clone(&counters),
        outbound: Arc::clone(&outbound),
        shared,
        backoff: Backoff::new(
            Duration::from_millis(config.reconnect_backoff_ms_min),
            Duration::from_millis(config.reconnect_backoff_ms_max),
        ),
        conn: None,
        generation: 0,
        connected_before: false,
        failures_in_a_row: 0,
        probe: false,
        probes_left: 0,
        unreachable_reported: false,
        reconnect_at: Instant::now(),
        pending: VecDeque::new(),
        pending_control: VecDeque::new(),
        buf: Vec::new(),
    };
    let thread = thread::Builder::new()
        .name(format!("peer-{peer}"))
        .spawn(move || sender.run())
        .map_err(TransportError::Spawn)?;
    Ok(PeerHandle {
        addr,
        queue: Some(queue_tx),
        control: Some(control_tx),
        counters,
        outbound,
        thread: Some(thread),
    })
}

/// The source address for connections to `peer`: on loopback, this node's
/// own listen address (port 0: any), so that a cluster whose nodes have
/// their own 127.x addresses shows who sends each packet. Without it the
/// kernel picks 127.0.0.1 for every node, and a packet filter could not cut
/// the link from one node to another (the Jepsen test's partitions,
/// DESIGN.md 2.6). Elsewhere the kernel's routing choice stands: a node bound
/// to 0.0.0.0, or behind NAT, must not pin a source it cannot route from.
pub(super) fn outbound_source(listen: SocketAddr, peer: SocketAddr) -> Option<SocketAddr> {
    let ip = listen.ip();
    (ip.is_loopback() && peer.ip().is_loopback()).then(|| SocketAddr::new(ip, 0))
}

/// `TcpStream::connect_timeout`, bound first to `source` when given (std
/// has no bind-before-connect).
fn connect_from(source: Option<SocketAddr>, addr: SocketAddr) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT);
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&source.into())?;
    socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT)?;
    Ok(socket.into())
}

/// Exponential backoff between connect attempts.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        assert!(min <= max, "backoff min={min:?} max={max:?}");
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; doubles the one after it.
    fn step(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

struct Connection {
    stream: Stream,
    generation: u64,
    established_at: Instant,
    watcher: Option<JoinHandle<()>>,
}

/// What ended a wait in the sender's loop.
enum Wake {
    Queued(Queued),
    Nudge(Nudge),
    Deadline,
    Shutdown,
}

struct PeerSender {
    peer: NodeId,
    addr: SocketAddr,
    /// The local address outbound connections are bound to, if any.
    source: Option<SocketAddr>,
    frame_bytes_max: u32,
    delay: Duration,
    /// Messages taken off a lane's queue but not yet written, at most this
    /// many per lane.
    pending_max: usize,
    /// Longest wait for each reply of the peer during the handshake.
    handshake_timeout: Duration,
    /// See `probe_now`.
    probe_answer_wait: Duration,
    /// Bulk lane: Appends.
    queue: Receiver<Queued>,
    /// Control lane: every other message, written before any bulk one.
    control: Receiver<Queued>,
    nudges: Receiver<Nudge>,
    /// Given to each watcher, which reports on this sender's own channel.
    nudge_tx: Sender<Nudge>,
    counters: Arc<PeerCounters>,
    outbound: Arc<Mutex<SocketSlot>>,
    shared: Arc<Shared>,
    backoff: Backoff,
    conn: Option<Connection>,
    /// Numbers connections, so that a watcher's report about a connection
    /// already replaced is recognized and ignored.
    generation: u64,
    connected_before: bool,
    failures_in_a_row: u64,
    /// The next connect attempt follows an EOF or reset from the peer: if it
    /// is refused, the peer's process is gone (DESIGN.md 3.5).
    probe: bool,
    /// Probes still allowed after an ambiguous answer (`PROBES_AGAIN_MAX`).
    probes_left: u32,
    /// `PeerUnreachable` was sent and no connect has succeeded since.
    unreachable_reported: bool,
    reconnect_at: Instant,
    /// Bulk messages taken off their queue, in order.
    pending: VecDeque<Queued>,
    /// Control messages taken off their queue, in order.
    pending_control: VecDeque<Queued>,
    /// Reused for every batch.
    buf: Vec<u8>,
}

impl PeerSender {
    fn run(mut self) {
        loop {
            if self.conn.is_none() && Instant::now() >= self.reconnect_at {
                self.connect();
            }
            if self.conn.is_some() {
                self.flush_due();
            }
            match self.wait() {
                Wake::Queued(queued) => {
                    self.lane_mut(Lane::of(&queued.frame)).push_back(queued);
                    self.take_queued();
                }
                Wake::Nudge(nudge) => self.on_nudge(nudge),
                Wake::Deadline => {}
                Wake::Shutdown => break,
            }
        }
        self.disconnect();
    }

    fn lane_mut(&mut self, lane: Lane) -> &mut VecDeque<Queued> {
        match lane {
            Lane::Control => &mut self.pending_control,
            Lane::Bulk => &mut self.pending,
        }
    }

    /// Blocks until there is something to do. While disconnected the queues
    /// are left alone, so that they fill and `send` drops (bounded) instead
    /// of this thread hoarding stale messages.
    fn wait(&self) -> Wake {
        let idle = crossbeam_channel::never();
        let connected = self.conn.is_some();
        let take_bulk = connected && self.pending.len() < self.pending_max;
        let take_control = connected && self.pending_control.len() < self.pending_max;
        let queue = if take_bulk { &self.queue } else { &idle };
        let control = if take_control { &self.control } else { &idle };
        let deadline = match &self.conn {
            Some(_) => [&self.pending_control, &self.pending]
                .iter()
                .filter_map(|lane| lane.front().map(|q| q.enqueued_at + self.delay))
                .min(),
            None => Some(self.reconnect_at),
        };
        let timer = deadline.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        crossbeam_channel::select! {
            recv(control) -> queued => queued.map_or(Wake::Shutdown, Wake::Queued),
            recv(queue) -> queued => queued.map_or(Wake::Shutdown, Wake::Queued),
            recv(self.nudges) -> nudge => nudge.map_or(Wake::Shutdown, Wake::Nudge),
            recv(self.shared.shutdown_rx) -> _ => Wake::Shutdown,
            recv(timer) -> _ => Wake::Deadline,
        }
    }

    /// Takes everything already queued, so that it leaves in one write.
    fn take_queued(&mut self) {
        self.take_control();
        while self.pending.len() < self.pending_max {
            match self.queue.try_recv() {
                Ok(queued) => self.pending.push_back(queued),
                Err(_) => break,
            }
        }
    }

    fn take_control(&mut self) {
        while self.pending_control.len() < self.pending_max {
            match self.control.try_recv() {
                Ok(queued) => self.pending_control.push_back(queued),
                Err(_) => break,
            }
        }
    }

    /// The next message whose (emulated) delay has passed: control first.
    fn next_due(&mut self, now: Instant) -> Option<Queued> {
        let due = |lane: &VecDeque<Queued>| {
            lane.front()
                .is_some_and(|q| q.enqueued_at + self.delay <= now)
        };
        if due(&self.pending_control) {
            self.pending_control.pop_front()
        } else if due(&self.pending) {
            self.pending.pop_front()
        } else {
            None
        }
    }

    fn on_nudge(&mut self, nudge: Nudge) {
        match nudge {
            Nudge::OutboundClosed { generation } => {
                if self.conn.as_ref().map(|c| c.generation) == Some(generation) {
                    self.drop_connection("closed by the peer", true);
                }
            }
            // Without an outbound connection (in backoff, or never
            // connected) this is the only early sign. With one, its watcher
            // sees the same death, but not at the same moment: on a busy
            // host the watcher thread woke up to 2.3 ms after the reader
            // (EXPERIMENTS.md 12), and the hint waited for it. A bare probe
            // now costs one connect; refused, the process is gone whatever
            // the watcher has yet to read; answered, nothing happens.
            Nudge::InboundClosed => {
                if self.unreachable_reported {
                    // The hint went out before the reader had delivered the
                    // peer's last frames, and one of them (a heartbeat sent
                    // just before the kill) may have made the Raft thread
                    // follow the dead leader again, ending its crash path:
                    // 4 of 1000 kill -9 failovers then waited 34-50 ms for
                    // the primary's timer (EXPERIMENTS.md 12). Every frame
                    // of that connection is delivered now; say it again.
                    self.shared
                        .deliver(TransportEvent::PeerUnreachable(self.peer));
                    return;
                }
                self.probes_left = PROBES_AGAIN_MAX;
                if self.conn.is_none() {
                    self.probe_now();
                } else {
                    // Briefly: this thread also carries the live
                    // connection's heartbeats, and a peer whose backlog
                    // drops SYNs must not stall them for CONNECT_TIMEOUT.
                    self.probe_within(PROBE_WHILE_CONNECTED_TIMEOUT);
                    // A reset answer schedules no re-probe while connected:
                    // the watcher's EOF, if the peer is dying, starts them.
                    self.probe = false;
                }
            }
        }
    }

    /// Writes every message whose (emulated) delay has passed, in as few
    /// writes as `BATCH_BYTES_MAX` allows. Control messages that arrive
    /// while a batch of Appends is written go out in the next batch.
    fn flush_due(&mut self) {
        let mut now = Instant::now();
        self.buf.clear();
        let mut batch_messages = 0;
        while let Some(queued) = self.next_due(now) {
            let kind = frame_kind(&queued.frame);
            let start = self.buf.len();
            let payload_bytes = encode_frame(&queued.frame, &mut self.buf);
            if payload_bytes > self.frame_bytes_max as usize {
                // The peer would close the connection on it; better to lose
                // this one message than the connection. A forwarded request
                // this large fails at once rather than at its deadline.
                self.buf.truncate(start);
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .undelivered(self.peer, std::iter::once(&queued.frame));
                log::warn!(
                    "[Node {}] dropping {kind} of {payload_bytes} bytes for peer {}: above frame_bytes_max={}",
                    self.shared.id,
                    self.peer,
                    self.frame_bytes_max
                );
                continue;
            }
            batch_messages += 1;
            if self.buf.len() >= BATCH_BYTES_MAX {
                if !self.write_batch(batch_messages) {
                    return;
                }
                batch_messages = 0;
                self.take_control();
                now = Instant::now();
            }
        }
        if batch_messages > 0 {
            self.write_batch(batch_messages);
        }
    }

    /// Writes `buf`; false if the connection failed and was dropped.
    fn write_batch(&mut self, messages: u64) -> bool {
        let Some(conn) = &mut self.conn else {
            return false;
        };
        let written = conn
            .stream
            .write_all(&self.buf)
            .and_then(|()| conn.stream.flush());
        let bytes = self.buf.len() as u64;
        self.buf.clear();
        match written {
            Ok(()) => {
                self.counters.sent.fetch_add(messages, Ordering::Relaxed);
                self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
                true
            }
            Err(e) => {
                // Some of the batch may have arrived; Raft tolerates both.
                self.counters.dropped.fetch_add(messages, Ordering::Relaxed);
                let by_peer = is_closed_by_peer(&e);
                self.drop_connection(&format!("write failed: {e}"), by_peer);
                false
            }
        }
    }

    fn connect(&mut self) {
        let probe = std::mem::take(&mut self.probe);
        match self.open() {
            Ok(stream) => self.on_connected(stream),
            Err(e) => self.on_connect_failed(&e, probe),
        }
    }

    /// Connects and runs the connector's side of the handshake (auth.rs).
    /// It completes before the watcher starts: the peer writes on this
    /// connection only during the handshake, so that afterwards any read
    /// that returns means the connection ended (DESIGN.md 3.5).
    fn open(&self) -> io::Result<Stream> {
        let stream = connect_from(self.source, self.addr)?;
        // Raft messages are small and latency-bound; batching is done here.
        stream.set_nodelay(true)?;
        // Registered before the handshakes, so that shutdown wakes their reads.
        self.outbound.lock().set(stream.try_clone()?);
        let tls = self.shared.tls.as_ref().map(|tls| &tls.peer_client);
        let mut stream = Stream::connect(stream, self.addr, tls, self.handshake_timeout)
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake failed: {e}")))?;
        stream
            .tcp()
            .set_read_timeout(Some(self.handshake_timeout))?;
        stream
            .tcp()
            .set_write_timeout(Some(self.handshake_timeout))?;
        connect_handshake_advertising(
            &mut stream,
            &self.shared.auth,
            self.shared.id,
            self.peer,
            Advertised {
                client_addr: self.shared.client_addr,
                peer_addr: self.shared.peer_addr,
            },
            self.frame_bytes_max,
        )
        .map_err(|e| {
            let kind = match e {
                HandshakeError::Timeout => io::ErrorKind::TimedOut,
                HandshakeError::Probe | HandshakeError::Closed(_) => {
                    io::ErrorKind::ConnectionAborted
                }
                HandshakeError::Rejected(_) => io::ErrorKind::PermissionDenied,
            };
            io::Error::new(kind, format!("handshake failed: {e}"))
        })?;
        stream.tcp().set_read_timeout(None)?;
        stream.tcp().set_write_timeout(None)?;
        Ok(stream)
    }

    fn on_connected(&mut self, stream: Stream) {
        self.generation += 1;
        let watcher = match stream.tcp().try_clone() {
            Ok(watched) => spawn_watcher(self.peer, watched, self.generation, &self.nudge_tx),
            Err(e) => {
                log::warn!(
                    "[Node {}] cannot watch peer {}: {e}",
                    self.shared.id,
                    self.peer
                );
                None
            }
        };
        if self.connected_before {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.connected_before = true;
        self.failures_in_a_row = 0;
        self.unreachable_reported = false;
        self.probes_left = 0;
        self.counters.connected.store(true, Ordering::Relaxed);
        log::info!(
            "[Node {}] connected to peer {} at {}",
            self.shared.id,
            self.peer,
            self.addr
        );
        self.conn = Some(Connection {
            stream,
            generation: self.generation,
            established_at: Instant::now(),
            watcher,
        });
        if let Some(handler) = self.shared.forward_handler() {
            handler.on_connected(self.peer);
        }
    }

    fn on_connect_failed(&mut self, e: &io::Error, probe: bool) {
        self.outbound.lock().stream = None;
        self.failures_in_a_row += 1;
        if self.failures_in_a_row == 1 {
            log::warn!(
                "[Node {}] cannot connect to peer {} at {}: {e}",
                self.shared.id,
                self.peer,
                self.addr
            );
        } else {
            log::debug!(
                "[Node {}] cannot connect to peer {} at {} (attempt {}): {e}",
                self.shared.id,
                self.peer,
                self.addr,
                self.failures_in_a_row
            );
        }
        // Whatever waited for this connection is stale by the next attempt,
        // and Raft retransmits what still matters. Forwarded requests among
        // it are failed at once: their clients retry or get an error now,
        // not at their deadline.
        let stale: Vec<Queued> = self
            .pending
            .drain(..)
            .chain(self.pending_control.drain(..))
            .chain(self.queue.try_iter())
            .chain(self.control.try_iter())
            .collect();
        self.shared
            .undelivered(self.peer, stale.iter().map(|q| &q.frame));
        let stale = stale.len();
        self.counters
            .dropped
            .fetch_add(stale as u64, Ordering::Relaxed);
        self.reconnect_at = Instant::now() + self.backoff.step();
        if probe {
            self.after_probe(e);
        }
    }

    /// Crash probe (DESIGN.md 3.5) outside the reconnect schedule, made
    /// while disconnected: connect, only to learn whether anything still
    /// listens at the peer's address, and hang up. The peer sees a
    /// connection close before its hello, which it ignores.
    ///
    /// A connect that succeeds is no answer yet: a dying process's kernel
    /// ends its connections before it closes its listener, which meanwhile
    /// completes handshakes into its backlog, and resets them when it
    /// closes. So the probe waits up to `probe_answer_wait` (20 ms; the
    /// listener closes within a millisecond or two of the connections on
    /// loopback) for that reset, then probes again, and is refused. A live
    /// peer says nothing before our hello (auth.rs: the connector speaks
    /// first; TLS too), and the wait ends in a timeout; one that closes the
    /// connection (at its connection limit) lives too. Without the wait,
    /// a young connection's EOF (no reconnect at once, DESIGN.md 3.5) whose
    /// probe landed in that window left the hint to the reconnect backoff:
    /// 11 ms after a kill -9 instead of 2 (EXPERIMENTS.md 12). Nothing is
    /// lost meanwhile: there is no connection to write to.
    fn probe_now(&mut self) {
        if let Err(e) = probe(self.addr, CONNECT_TIMEOUT, Some(self.probe_answer_wait)) {
            self.after_probe(&e);
        }
    }

    /// A bare probe while the outbound connection still looks up: connect
    /// and hang up, waiting for nothing more, because this thread carries
    /// that connection's heartbeats.
    fn probe_within(&mut self, timeout: Duration) {
        if let Err(e) = probe(self.addr, timeout, None) {
            self.after_probe(&e);
        }
    }

    /// Called when a connect that followed an EOF or reset from the peer
    /// failed. Refused means the kernel closed the peer's sockets, listener
    /// included: its process is gone. A frozen process keeps its listener
    /// (the kernel completes handshakes into the backlog), so it is never
    /// reported. A reset or a close before the handshake's answer is what
    /// a process in the middle of dying gives: the next connect is a probe
    /// too, `PROBE_AGAIN_AFTER` from now (bounded by `PROBES_AGAIN_MAX`).
    /// Without that, 35% of kill -9 failovers on loopback missed the hint
    /// at some voters and waited out their stickiness (EXPERIMENTS.md 4).
    fn after_probe(&mut self, e: &io::Error) {
        if e.kind() != io::ErrorKind::ConnectionRefused {
            if is_closed_by_peer(e) && self.probes_left > 0 && !self.unreachable_reported {
                self.probes_left -= 1;
                self.probe = true;
                self.reconnect_at = self.reconnect_at.min(Instant::now() + PROBE_AGAIN_AFTER);
            }
            return;
        }
        if self.unreachable_reported {
            return;
        }
        self.unreachable_reported = true;
        log::warn!(
            "[Node {}] peer {} unreachable: its connection closed and a reconnect was refused",
            self.shared.id,
            self.peer
        );
        self.shared
            .deliver(TransportEvent::PeerUnreachable(self.peer));
    }

    /// Drops the outbound connection and schedules the next attempt: at once
    /// if the connection had been healthy, else after the backoff, so that a
    /// peer that accepts and then closes is not hammered. When the peer
    /// closed it, the next attempt doubles as the crash probe, or, if that
    /// attempt must wait for the backoff, a bare probe goes out now: the hint
    /// is worth most when it is early.
    fn drop_connection(&mut self, reason: &str, closed_by_peer: bool) {
        let lived = self.conn.as_ref().map(|c| c.established_at.elapsed());
        self.disconnect();
        log::info!(
            "[Node {}] connection to peer {} dropped: {reason}",
            self.shared.id,
            self.peer
        );
        let healthy = lived.is_some_and(|lived| lived >= self.backoff.max);
        if closed_by_peer {
            self.probes_left = PROBES_AGAIN_MAX;
        }
        if healthy {
            self.backoff.reset();
            self.reconnect_at = Instant::now();
            self.probe = closed_by_peer;
        } else {
            self.reconnect_at = Instant::now() + self.backoff.step();
            if closed_by_peer {
                self.probe_now();
            }
        }
    }

    fn disconnect(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        self.counters.connected.store(false, Ordering::Relaxed);
        // Wakes the watcher's read so that it can be joined.
        let _ = conn.stream.tcp().shutdown(Shutdown::Both);
        self.outbound.lock().stream = None;
        if let Some(watcher) = conn.watcher {
            join(watcher);
        }
    }
}

/// A queued frame's name for log lines.
fn frame_kind(frame: &PeerFrame) -> &'static str {
    match frame {
        PeerFrame::Message(msg) => msg.body.kind(),
        other => other.kind(),
    }
}

/// Errors that mean the other end closed or reset the connection.
fn is_closed_by_peer(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Connects to `addr` within `timeout` and hangs up. With `answer_wait`, a
/// connect that succeeds then waits that long for a reset, which is what a
/// dying listener sends the connections still in its backlog: Err if it
/// came. A peer that spoke, closed (a live process ends a connection with
/// a FIN), or stayed silent (waiting for a hello) is alive: Ok.
fn probe(addr: SocketAddr, timeout: Duration, answer_wait: Option<Duration>) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let Some(wait) = answer_wait else {
        return Ok(());
    };
    stream.set_read_timeout(Some(wait))?;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(e),
        _ => Ok(()),
    }
}

/// Peers never write on a connection we opened once its handshake is done,
/// so a read on it returns only when the connection ends: 0 bytes for a FIN, an error for a RST. That is
/// the first sign that the peer's process died (DESIGN.md 3.5).
fn spawn_watcher(
    peer: NodeId,
    mut stream: TcpStream,
    generation: u64,
    nudges: &Sender<Nudge>,
) -> Option<JoinHandle<()>> {
    let nudges = nudges.clone();
    let spawned = thread::Builder::new()
        .name(format!("peer-{peer}-watch"))
        .spawn(move || {
            let mut discard = [0u8; 256];
            loop {
                match stream.read(&mut discard) {
                    Ok(0) => break,
                    Ok(_) => {} // Not our protocol, but harmless: ignore it.
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            // Full means a nudge is already waiting; closed means shutdown.
            let _ = nudges.try_send(Nudge::OutboundClosed { generation });
        });
    match spawned {
        Ok(handle) => Some(handle),
        Err(e) => {
            log::warn!("cannot spawn the watcher for peer {peer}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(5), ms(30));
        let waits: Vec<_> = (0..5).map(|_| backoff.step()).collect();
        assert_eq!(waits, [ms(5), ms(10), ms(20), ms(30), ms(30)]);
        backoff.reset();
        assert_eq!(backoff.step(), ms(5));
    }

    #[test]
    fn outbound_connections_bind_the_own_loopback_address_only_on_loopback() {
        let a = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert_eq!(
            outbound_source(a("127.0.0.11:26000"), a("127.0.0.12:26001")),
            Some(a("127.0.0.11:0"))
        );
        assert_eq!(
            outbound_source(a("0.0.0.0:5000"), a("10.0.1.11:5000")),
            None
        );
        assert_eq!(
            outbound_source(a("127.0.0.1:5000"), a("10.0.1.11:5000")),
            None
        );
    }

    #[test]
    fn a_connection_from_a_bound_source_shows_that_source() {
        let listener = std::net::TcpListener::bind("127.0.0.12:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let source = outbound_source("127.0.0.11:1".parse().unwrap(), addr);
        let _stream = connect_from(source, addr).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip().to_string(), "127.0.0.11");
    }
}
