//! Inbound side: the `listener` thread, and one `conn-<addr>` reader thread per
//! accepted connection that runs the handshake (auth.rs) and forwards messages.

use super::auth::{HandshakeError, accept_handshake};
use super::frame::{FrameError, PeerFrame, read_frame};
use super::{Nudge, Shared, TransportError, TransportEvent, join};
use crate::core::NodeId;
use crate::tls::Stream;
use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Read buffer per connection: large enough to take a sender's whole batch
/// in a few syscalls.
const READ_BUFFER_BYTES: usize = 64 << 10;

/// Pause after a failed `accept` (say, out of file descriptors), so that a
/// persistent failure is logged a few times a second, not in a hot loop.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Inbound connections served at once. Each costs a thread; a healthy
/// cluster needs one per peer (two while a peer reconnects), so this bounds
/// what a misbehaving client can take, not what peers need.
const INBOUND_CONNECTIONS_MAX: usize = 64;

/// How long `shutdown` waits to reach its own listener.
const WAKE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Refusals of one source and reason logged at most once per this.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Sources and reasons remembered for the rate limit; past it the memory is
/// cleared, which costs at most one extra line per source.
const REFUSAL_LOG_ENTRIES_MAX: usize = 256;

/// The rate limit on log lines about refused connections, per source IP,
/// authenticated peer (if any) and reason.
#[derive(Default)]
pub(super) struct RefusalLog {
    /// (source, peer, reason) -> (when last logged, refusals not logged since).
    seen: BTreeMap<(IpAddr, Option<NodeId>, String), (Instant, u64)>,
}

impl RefusalLog {
    /// Some(refusals suppressed since the last line) if this one should be
    /// logged, None if it should be counted only.
    pub(super) fn admit(
        &mut self,
        source: IpAddr,
        peer: Option<NodeId>,
        reason: &str,
    ) -> Option<u64> {
        let now = Instant::now();
        let key = (source, peer, reason.to_owned());
        if let Some((logged_at, suppressed)) = self.seen.get_mut(&key) {
            if now.duration_since(*logged_at) < REFUSAL_LOG_INTERVAL {
                *suppressed += 1;
                return None;
            }
            let count = std::mem::take(suppressed);
            *logged_at = now;
            return Some(count);
        }
        if self.seen.len() >= REFUSAL_LOG_ENTRIES_MAX {
            self.seen.clear();
        }
        self.seen.insert(key, (now, 0));
        Some(0)
    }
}

/// Live reader threads, with a handle on each socket so that shutdown can
/// close it (a blocked `read` only returns when its socket is shut down).
#[derive(Default)]
pub(super) struct Readers {
    next_id: u64,
    live: BTreeMap<u64, (TcpStream, JoinHandle<()>)>,
}

impl Readers {
    pub(super) fn close_and_join(self) {
        for (stream, _) in self.live.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, (_, handle)) in self.live {
            join(handle);
        }
    }
}

pub(super) fn spawn(
    listener: TcpListener,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, TransportError> {
    thread::Builder::new()
        .name("listener".into())
        .spawn(move || accept_loop(listener, &shared))
        .map_err(TransportError::Spawn)
}

/// Unblocks the listener's `accept` by connecting to it: std offers no other
/// way to interrupt a blocking accept.
pub(super) fn wake(listen_addr: SocketAddr) {
    let mut addr = listen_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    if let Err(e) = TcpStream::connect_timeout(&addr, WAKE_CONNECT_TIMEOUT) {
        log::error!("cannot wake the listener on {addr} for shutdown: {e}");
    }
}

fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.shutting_down.load(Ordering::SeqCst) {
            return; // Dropping the listener closes the port.
        }
        match accepted {
            Ok((stream, addr)) => spawn_reader(stream, addr, shared),
            Err(e) => {
                log::warn!("[Node {}] accept failed: {e}", shared.id);
                // Returns early on shutdown; the next accept then takes the
                // wake connection and the check above ends the loop.
                let _ = shared.shutdown_rx.recv_timeout(ACCEPT_RETRY_PAUSE);
            }
        }
    }
}

fn spawn_reader(stream: TcpStream, addr: SocketAddr, shared: &Arc<Shared>) {
    let closer = match stream.try_clone() {
        Ok(closer) => closer,
        Err(e) => {
            log::warn!("[Node {}] dropping connection from {addr}: {e}", shared.id);
            return;
        }
    };
    // The lock is held across the spawn so that the thread, which removes its
    // own entry on exit, cannot do so before the entry exists.
    let mut readers = shared.readers.lock();
    if readers.live.len() >= INBOUND_CONNECTIONS_MAX {
        log::warn!(
            "[Node {}] refusing connection from {addr}: {INBOUND_CONNECTIONS_MAX} connections open",
            shared.id
        );
        return;
    }
    let reader_id = readers.next_id;
    readers.next_id += 1;
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("conn-{addr}"))
        .spawn(move || {
            let closer = stream.try_clone();
            serve(stream, addr, &thread_shared);
            if let Ok(closer) = closer {
                let _ = closer.shutdown(Shutdown::Both);
            }
            thread_shared.readers.lock().live.remove(&reader_id);
        });
    match spawned {
        Ok(handle) => {
            readers.live.insert(reader_id, (closer, handle));
        }
        Err(e) => log::warn!("[Node {}] dropping connection from {addr}: {e}", shared.id),
    }
}

/// How a connection ended, which decides what is logged and whether the
/// peer's sender hears about it.
enum End {
    /// EOF or a reset from the peer's side: maybe its process died.
    PeerClosed(String),
    /// The peer broke the protocol: we close, and say why.
    Rejected(String),
    /// Closed before its hello with nothing sent, as a port probe does.
    Probe,
    /// Our own shutdown.
    Shutdown,
}

fn serve(stream: TcpStream, addr: SocketAddr, shared: &Shared) {
    let tls = shared.tls.as_ref().map(|tls| &tls.peer_server);
    let (peer, end) = match Stream::accept(stream, tls, shared.hello_timeout) {
        // A crash probe or port scan: closed before a byte of TLS.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => (None, End::Probe),
        Err(e) => (None, End::Rejected(format!("TLS handshake failed: {e}"))),
        Ok(mut stream) => match handshake(&mut stream, shared) {
            Ok(peer) => {
                log::info!("[Node {}] accepted peer {peer} from {addr}", shared.id);
                let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
                (Some(peer), forward(&mut reader, peer, shared))
            }
            Err(end) => (None, end),
        },
    };
    let end = if shared.shutting_down.load(Ordering::SeqCst) {
        End::Shutdown
    } else {
        end
    };
    let who = match peer {
        Some(peer) => format!("peer {peer} at {addr}"),
        None => addr.to_string(),
    };
    match end {
        End::PeerClosed(reason) => {
            log::info!("[Node {}] connection from {who} ended: {reason}", shared.id);
            // Crash fast path (DESIGN.md 3.5): the peer's sender probes it.
            if let Some(peer) = peer
                && let Some(lanes) = shared.lanes.read().get(&peer)
            {
                let _ = lanes.nudge.try_send(Nudge::InboundClosed);
            }
        }
        End::Rejected(reason) => {
            // A misconfigured peer (a wrong secret) retries on every
            // backoff: one line per source and reason per interval.
            let suppressed = shared.refusals.lock().admit(addr.ip(), peer, &reason);
            if let Some(suppressed) = suppressed {
                let more = if suppressed > 0 {
                    format!(" ({suppressed} more like it not logged)")
                } else {
                    String::new()
                };
                log::warn!(
                    "[Node {}] closing connection from {who}: {reason}{more}",
                    shared.id
                );
            }
        }
        End::Probe => log::debug!("[Node {}] {who} closed before its hello", shared.id),
        End::Shutdown => {}
    }
}

/// Runs the acceptor's side of the handshake (auth.rs); returns the
/// authenticated peer's node id.
fn handshake(stream: &mut Stream, shared: &Shared) -> Result<NodeId, End> {
    // Only the handshake is timed: a silent connection must not hold a
    // thread forever, while an accepted peer may be quiet for as long as it
    // likes.
    let timeout = Some(shared.hello_timeout);
    let tcp = stream
        .tcp()
        .try_clone()
        .map_err(|e| End::Rejected(e.to_string()))?;
    tcp.set_read_timeout(timeout)
        .and_then(|()| tcp.set_write_timeout(timeout))
        .map_err(|e| End::Rejected(format!("cannot set the hello timeout: {e}")))?;
    // Unbuffered: nothing but the handshake may be read here, and a
    // connector writes no message before it has our proof.
    let mut client_addr = None;
    let mut peer_addr = None;
    let peer = accept_handshake(
        stream,
        &shared.auth,
        shared.id,
        shared.frame_bytes_max,
        |hello| {
            client_addr = hello.client_addr;
            peer_addr = hello.peer_addr;
            // A node this one was not told of is answered at the address
            // it announces (a `--join` node learns its leader so, and a
            // member hears from a node added by an entry not yet here).
            if hello.node_id == shared.id {
                Err(format!("node {} is this node's own id", hello.node_id))
            } else if shared.lanes.read().contains_key(&hello.node_id) || hello.peer_addr.is_some()
            {
                Ok(())
            } else {
                Err(format!("unknown node {}", hello.node_id))
            }
        },
    )
    .map_err(|e| match e {
        HandshakeError::Probe => End::Probe,
        HandshakeError::Timeout => End::Rejected(format!(
            "no handshake within {} ms",
            shared.hello_timeout.as_millis()
        )),
        e @ (HandshakeError::Closed(_) | HandshakeError::Rejected(_)) => {
            End::Rejected(e.to_string())
        }
    })?;
    tcp.set_read_timeout(None)
        .and_then(|()| tcp.set_write_timeout(None))
        .map_err(|e| End::Rejected(format!("cannot clear the hello timeout: {e}")))?;
    // Recorded only now that the peer has proven the cluster secret.
    if let Some(addr) = client_addr {
        shared.client_addrs.announce(peer, addr);
    }
    if let Some(addr) = peer_addr {
        let mut learned = shared.learned.lock();
        // Bounded: ids that are not members come and go (a node being
        // added, a removed one retrying), and each learned id may get a
        // sender thread for as long as the Raft thread answers it.
        if learned.len() < LEARNED_PEERS_MAX || learned.contains_key(&peer) {
            learned.insert(peer, addr);
        } else {
            log::warn!(
                "[Node {}] not keeping peer {peer}'s address {addr}: {LEARNED_PEERS_MAX} unknown peers announced theirs already",
                shared.id
            );
        }
    }
    Ok(peer)
}

/// Most peer addresses kept from hellos of nodes this one was not told of.
const LEARNED_PEERS_MAX: usize = 256;

/// Forwards messages from an accepted peer until the connection ends.
fn forward(reader: &mut impl Read, peer: NodeId, shared: &Shared) -> End {
    loop {
        let msg = match read_frame::<PeerFrame>(reader, shared.frame_bytes_max) {
            Ok(PeerFrame::Message(msg)) => msg,
            Ok(PeerFrame::Forward {
                request_id,
                request,
            }) => {
                match shared.forward_handler() {
                    Some(handler) => handler.on_forward(peer, request_id, request),
                    // The node is still starting: the follower times out
                    // and retries, as after any lost request.
                    None => log::debug!(
                        "[Node {}] forward {request_id} from peer {peer} before the client port is up; dropped",
                        shared.id
                    ),
                }
                continue;
            }
            Ok(PeerFrame::ForwardReply {
                request_id,
                outcome,
            }) => {
                if let Some(handler) = shared.forward_handler() {
                    handler.on_reply(peer, request_id, outcome);
                }
                continue;
            }
            Ok(frame @ (PeerFrame::Hello(_) | PeerFrame::Challenge(_) | PeerFrame::Proof(_))) => {
                return End::Rejected(format!("a {} after the handshake", frame.kind()));
            }
            Err(FrameError::Eof) => return End::PeerClosed("closed by the peer".into()),
            Err(FrameError::Io(e)) => return End::PeerClosed(e.to_string()),
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Decode(_))) => {
                return End::Rejected(e.to_string());
            }
        };
        // A node may speak only for itself: `from` decides whose vote or
        // reply this is, so a mismatch is refused, not forwarded.
        if msg.from != peer {
            return End::Rejected(format!(
                "message from node {} on peer {peer}'s connection",
                msg.from
            ));
        }
        if msg.to != shared.id {
            return End::Rejected(format!("message addressed to node {}", msg.to));
        }
        if !shared.deliver(TransportEvent::Message(msg)) {
            return End::Shutdown;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_source_peer_and_reason_per_interval() {
        let mut log = RefusalLog::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(log.admit(ip, None, "wrong secret"), Some(0));
        assert_eq!(log.admit(ip, None, "wrong secret"), None);
        assert_eq!(log.admit(ip, None, "wrong secret"), None);
        assert_eq!(log.admit(ip, None, "another reason"), Some(0));
        assert_eq!(log.admit(ip, Some(NodeId(2)), "wrong secret"), Some(0));
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(log.admit(other, None, "wrong secret"), Some(0));
        // Once the interval has passed, the next line counts the rest.
        let key = (ip, None, "wrong secret".to_owned());
        log.seen.get_mut(&key).unwrap().0 -= REFUSAL_LOG_INTERVAL;
        assert_eq!(log.admit(ip, None, "wrong secret"), Some(2));
    }
}
