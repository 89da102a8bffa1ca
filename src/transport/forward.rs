//! Client requests forwarded between nodes over the peer connections
//! (DESIGN.md 4.4): the hooks the transport calls when forward frames
//! arrive, the handle other threads queue them with, and the directory of
//! client addresses the nodes announce in their hellos.
//!
//! The transport knows nothing of RESP or of the state machine: requests
//! and replies are opaque here, and the client port (`server::relay`)
//! gives them meaning.

use super::frame::{ForwardOutcome, ForwardRequest, PeerFrame};
use super::{Shared, enqueue};
use crate::core::{Message, NodeId};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What the transport does with forward frames and the events a
/// forwarder waits on. Called from transport threads: implementations
/// must not block for long (a reader blocked here stops reading its
/// peer's Raft messages too).
pub trait ForwardHandler: Send + Sync {
    /// A follower `from` asks this node, as leader, to serve `request`.
    fn on_forward(&self, from: NodeId, request_id: u64, request: ForwardRequest);
    /// `from` answers a request this node forwarded to it.
    fn on_reply(&self, from: NodeId, request_id: u64, outcome: ForwardOutcome);
    /// A request this node forwarded to `to` was dropped before any byte
    /// of it was written (the connection failed, or it was too large): it
    /// cannot take effect.
    fn on_undelivered(&self, to: NodeId, request_id: u64);
    /// An outbound connection to `peer` is up: requests waiting for an
    /// unreachable leader may go now.
    fn on_connected(&self, peer: NodeId);
}

/// Where each node serves RESP clients: first the configured guess (peer
/// port + offset), then what the node announced in its hello, which wins
/// from then on. One place, so that issue 11's configuration entries can
/// feed it too.
#[derive(Clone, Debug, Default)]
pub struct ClientAddrs {
    inner: Arc<RwLock<BTreeMap<NodeId, (SocketAddr, Source)>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Configured,
    Announced,
}

impl ClientAddrs {
    /// Records a configured address for `id`, unless `id` announced its own.
    pub fn configure(&self, id: NodeId, addr: SocketAddr) {
        let mut map = self.inner.write();
        if map.get(&id).is_none_or(|(_, s)| *s == Source::Configured) {
            map.insert(id, (addr, Source::Configured));
        }
    }

    /// Records the address `id` announced in an authenticated hello.
    pub fn announce(&self, id: NodeId, addr: SocketAddr) {
        let previous = self.inner.write().insert(id, (addr, Source::Announced));
        if previous.is_none_or(|(old, _)| old != addr) {
            log::info!("node {id} serves clients at {addr}");
        }
    }

    pub fn get(&self, id: NodeId) -> Option<SocketAddr> {
        self.inner.read().get(&id).map(|(addr, _)| *addr)
    }

    /// Every known address, by node id.
    pub fn all(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.inner
            .read()
            .iter()
            .map(|(&id, (addr, _))| (id, *addr))
            .collect()
    }
}

/// Queues frames for peers from any thread, without blocking (`try_send`,
/// like `Transport::send`): forwarded requests and replies, and the Raft
/// messages the WAL thread releases after an fsync.
#[derive(Clone)]
pub struct TransportHandle {
    shared: Arc<Shared>,
}

impl TransportHandle {
    pub(super) fn new(shared: &Arc<Shared>) -> TransportHandle {
        TransportHandle {
            shared: Arc::clone(shared),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The largest frame payload a peer accepts: a forwarded request or
    /// reply above it would be dropped, so callers check first.
    pub fn frame_bytes_max(&self) -> usize {
        self.shared.frame_bytes_max as usize
    }

    /// Installs the handler of forward frames; only the first call counts.
    pub fn set_forward_handler(&self, handler: Arc<dyn ForwardHandler>) {
        if self.shared.forward.set(handler).is_err() {
            log::warn!("[Node {}] a forward handler is already set", self.shared.id);
        }
    }

    /// The client addresses peers announced (and the configured guesses).
    pub fn client_addrs(&self) -> &ClientAddrs {
        &self.shared.client_addrs
    }

    /// Whether an outbound connection to `peer` is established now.
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.shared
            .lanes
            .read()
            .get(&peer)
            .is_some_and(|p| p.counters.connected.load(Ordering::Relaxed))
    }

    /// Queues a forwarded request for `to`; false if it could not be queued
    /// (unknown peer, shut down, or its queue is full): it was not sent.
    pub fn forward(&self, to: NodeId, request_id: u64, request: ForwardRequest) -> bool {
        self.queue_forward(
            to,
            PeerFrame::Forward {
                request_id,
                request,
            },
        )
    }

    /// Queues the answer to `to`'s forwarded request; false if it could not
    /// be queued (the follower then times out).
    pub fn reply(&self, to: NodeId, request_id: u64, outcome: ForwardOutcome) -> bool {
        self.queue_forward(
            to,
            PeerFrame::ForwardReply {
                request_id,
                outcome,
            },
        )
    }

    /// Queues a Raft message like `Transport::send`, from a thread other
    /// than the Raft thread. `Err(msg)`: there is no sender for its peer
    /// (only the Raft thread starts one, for a peer that announced its
    /// address), so the caller hands it to the Raft thread. A full queue
    /// drops the message and counts it; Raft retransmits.
    // The message comes back whole, by value: no larger than passing it in.
    #[allow(clippy::result_large_err)]
    pub fn send(&self, msg: Message) -> Result<(), Message> {
        match self.queue(msg.to, PeerFrame::Message(msg)) {
            Enqueued::NoPeer(PeerFrame::Message(msg)) => Err(msg),
            // Shut down: nothing leaves any more.
            _ => Ok(()),
        }
    }

    fn queue_forward(&self, to: NodeId, frame: PeerFrame) -> bool {
        matches!(self.queue(to, frame), Enqueued::Yes)
    }

    fn queue(&self, to: NodeId, frame: PeerFrame) -> Enqueued {
        if self.shared.shutting_down.load(Ordering::SeqCst) {
            return Enqueued::ShutDown;
        }
        let lanes = self.shared.lanes.read();
        let Some(peer) = lanes.get(&to) else {
            return Enqueued::NoPeer(frame);
        };
        match enqueue(&peer.bulk, &peer.control, &peer.counters, frame) {
            true => Enqueued::Yes,
            false => Enqueued::Dropped,
        }
    }
}

/// What became of a frame queued from another thread.
enum Enqueued {
    Yes,
    /// The peer's queue was full: dropped and counted.
    Dropped,
    /// No sender for the peer: the frame, back.
    NoPeer(PeerFrame),
    ShutDown,
}

impl Shared {
    /// The handler of forward frames, if one is installed yet.
    pub(super) fn forward_handler(&self) -> Option<&Arc<dyn ForwardHandler>> {
        self.forward.get()
    }

    /// Tells the forwarder that frames for `to` were dropped unsent: the
    /// forwarded requests among them cannot take effect.
    pub(super) fn undelivered<'a>(&self, to: NodeId, frames: impl Iterator<Item = &'a PeerFrame>) {
        let Some(handler) = self.forward_handler() else {
            return;
        };
        for frame in frames {
            if let PeerFrame::Forward { request_id, .. } = frame {
                handler.on_undelivered(to, *request_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_client_address_wins_over_the_configured_guess() {
        let addrs = ClientAddrs::default();
        let guess: SocketAddr = "127.0.0.1:6001".parse().unwrap();
        let real: SocketAddr = "127.0.0.1:17001".parse().unwrap();
        addrs.configure(NodeId(1), guess);
        assert_eq!(addrs.get(NodeId(1)), Some(guess));
        addrs.announce(NodeId(1), real);
        assert_eq!(addrs.get(NodeId(1)), Some(real));
        addrs.configure(NodeId(1), guess);
        assert_eq!(addrs.get(NodeId(1)), Some(real), "a guess never overrides");
        assert_eq!(addrs.get(NodeId(2)), None);
    }
}
