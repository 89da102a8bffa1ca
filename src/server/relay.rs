//! Forwarding over the peer transport (DESIGN.md 4.4): a follower's client
//! threads send writes and reads to the leader (during an election, to the
//! candidate this node voted for, which holds them until it knows whether
//! it won) as `Forward` frames, many in flight on one peer connection, and
//! wait for the `ForwardReply` with the same request id; the leader serves
//! them as ordinary requests of its Raft thread and sends the answers back
//! from one `forward-replies` thread. No connection and no thread per
//! client on the leader, and nothing of the cluster protocol on the client
//! port.

use super::connection::{read_query, refusal};
use crate::core::{NodeId, Term};
use crate::kv::command::{CommandLimits, Request as KvRequest};
use crate::kv::reply::KvReply;
use crate::kv::resp::Value;
use crate::kv::store::KvStore;
use crate::limits::Limits;
use crate::metrics::{ForwardKind, Metrics};
use crate::runtime::oneshot::{AnswerRx, AnswerTx, answer_slot};
use crate::runtime::{ForwardedOp, ForwardedReply, Leadership, NodeHandle, Request, RequestError};
use crate::transport::{ForwardHandler, ForwardOutcome, ForwardRequest, TransportHandle};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// What this node last learned about who leads, and a counter of changes
/// that waiters compare against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Bumped on every change of leader or term, and whenever an outbound
    /// peer connection comes up (an unreachable leader may be reachable).
    pub generation: u64,
    pub leader: Option<NodeId>,
    pub term: Term,
    /// With no leader known, the candidate this node voted for
    /// (`Leadership::candidate`).
    pub candidate: Option<NodeId>,
}

impl Seen {
    /// Where a request goes now: the leader, or else the candidate this
    /// node voted for, which holds it until it knows whether it won.
    pub fn target(&self) -> Option<NodeId> {
        self.leader.or(self.candidate)
    }
}

/// How one forwarded request ended, as the client thread sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Forwarded {
    /// The leader's answer.
    Outcome(ForwardOutcome),
    /// Not sent: no connection to `leader`, or its queue is full, or the
    /// frame was dropped before any byte of it was written.
    Unreachable,
    /// Sent, then given up because this node learned of another leader or
    /// of none: a frozen leader never answers. It may take effect there.
    Abandoned,
    /// Sent, and no answer by the deadline. It may take effect.
    TimedOut,
    /// Not sent: its frame would exceed the peers' `frame_bytes_max`.
    TooLarge {
        frame_bytes: usize,
        frame_bytes_max: usize,
    },
    /// Not sent: forwarded bytes awaiting answers stayed at their bound
    /// until the deadline.
    Busy,
}

/// What the peer reader or the leader watch tells a waiting client thread.
#[derive(Debug)]
enum Event {
    Outcome(ForwardOutcome),
    Abandoned,
    Undelivered,
}

struct Pending {
    to: NodeId,
    /// The first event is the only one: whoever sends it removes the entry.
    events: AnswerTx<Event>,
}

/// The follower's requests in flight, by request id; a reply is accepted
/// only from the node the request went to.
#[derive(Default)]
struct PendingMap {
    by_id: Mutex<HashMap<u64, Pending>>,
}

impl PendingMap {
    fn insert(&self, request_id: u64, to: NodeId) -> AnswerRx<Event> {
        let (events, rx) = answer_slot();
        self.by_id.lock().insert(request_id, Pending { to, events });
        rx
    }

    fn remove(&self, request_id: u64) {
        self.by_id.lock().remove(&request_id);
    }

    /// Routes `event` to request `request_id` if it went to `from`; false
    /// if there is no such request (answered, abandoned or timed out).
    fn route(&self, from: NodeId, request_id: u64, event: Event) -> bool {
        let mut by_id = self.by_id.lock();
        match by_id.get(&request_id) {
            Some(pending) if pending.to == from => {
                let pending = by_id.remove(&request_id).expect("present");
                pending.events.send(event);
                true
            }
            _ => false,
        }
    }

    /// Abandons every request sent to a node other than `target`.
    fn abandon_all_but(&self, target: Option<NodeId>) -> usize {
        let abandoned: Vec<Pending> = self
            .by_id
            .lock()
            .extract_if(|_, pending| Some(pending.to) != target)
            .map(|(_, pending)| pending)
            .collect();
        let count = abandoned.len();
        for pending in abandoned {
            pending.events.send(Event::Abandoned);
        }
        count
    }
}

/// One per node: the follower side (pending map, leader watch) and the
/// leader side (turning `Forward` frames into requests of the Raft
/// thread) of forwarding.
pub struct Relay {
    me: NodeId,
    transport: TransportHandle,
    requests: Sender<Request<KvStore>>,
    metrics: Arc<Metrics>,
    limits: CommandLimits,
    next_request_id: AtomicU64,
    pending: PendingMap,
    seen: Mutex<Seen>,
    changed: Condvar,
    inflight: InflightBytes,
}

/// Bytes of forwarded requests sent and not yet answered. They share the
/// connection to the leader with this node's Raft replies, and whatever the
/// kernel holds ahead of a heartbeat reply cannot be overtaken by the
/// control lane: bounded like the leader's Appends (`inflight_bytes_max`,
/// DESIGN.md 2.6 and 7), so that a burst of large forwarded writes cannot
/// delay this node's replies for long. One request larger than the bound
/// still goes, alone.
struct InflightBytes {
    bytes: Mutex<usize>,
    freed: Condvar,
    bytes_max: usize,
}

impl InflightBytes {
    /// Waits (notified) until `bytes` fit, or `deadline`: false.
    fn acquire(&self, bytes: usize, deadline: Instant) -> bool {
        let mut inflight = self.bytes.lock();
        while *inflight > 0 && *inflight + bytes > self.bytes_max {
            if self.freed.wait_until(&mut inflight, deadline).timed_out() {
                return false;
            }
        }
        *inflight += bytes;
        true
    }

    fn release(&self, bytes: usize) {
        let mut inflight = self.bytes.lock();
        assert!(*inflight >= bytes, "inflight={} release={bytes}", *inflight);
        *inflight -= bytes;
        self.freed.notify_all();
    }
}

impl Relay {
    /// Wires forwarding into a started node: installs the transport's
    /// forward handler, subscribes to leader changes and starts the
    /// `forward-replies` thread, which ends when the node stops.
    pub fn start(node: &NodeHandle<KvStore>, limits: &Limits) -> std::io::Result<Arc<Relay>> {
        let relay = Arc::new(Relay {
            me: node.transport.id(),
            transport: node.transport.clone(),
            requests: node.requests.clone(),
            metrics: node.metrics.clone(),
            limits: CommandLimits {
                value_bytes_max: limits.value_bytes_max,
            },
            next_request_id: AtomicU64::new(1),
            pending: PendingMap::default(),
            seen: Mutex::new(Seen::default()),
            changed: Condvar::new(),
            inflight: InflightBytes {
                bytes: Mutex::new(0),
                freed: Condvar::new(),
                bytes_max: limits.inflight_bytes_max,
            },
        });
        let weak = Arc::downgrade(&relay);
        node.leader_watch.subscribe(Box::new(move |now| {
            if let Some(relay) = weak.upgrade() {
                relay.leader_changed(now);
            }
        }));
        {
            let status = node.status.lock();
            relay.leader_changed(Leadership {
                leader: status.leader,
                term: status.term,
                candidate: None,
            });
        }
        node.transport
            .set_forward_handler(Arc::new(Handler(Arc::downgrade(&relay))));
        let replies = node.forwarded_replies.clone();
        let transport = node.transport.clone();
        std::thread::Builder::new()
            .name("forward-replies".into())
            .spawn(move || send_replies(&replies, &transport))?;
        Ok(relay)
    }

    /// Who leads, as last published.
    pub fn seen(&self) -> Seen {
        *self.seen.lock()
    }

    /// Waits until something changed since `generation` (leader, term, a
    /// peer connected) or `deadline` passes; returns what is seen then.
    /// Notified by the Raft thread and the transport, never polled.
    pub fn wait_for_change(&self, generation: u64, deadline: Instant) -> Seen {
        let mut seen = self.seen.lock();
        while seen.generation == generation {
            if self.changed.wait_until(&mut seen, deadline).timed_out() {
                break;
            }
        }
        *seen
    }

    /// Sends `request` to `leader` (or the candidate this node voted for)
    /// and waits for its outcome until `deadline`, or until this node
    /// learns of another leader or candidate.
    pub fn call(&self, leader: NodeId, request: ForwardRequest, deadline: Instant) -> Forwarded {
        let kind = match request {
            ForwardRequest::Write { .. } => ForwardKind::Write,
            ForwardRequest::Read { .. } => ForwardKind::Read,
        };
        let forwarded = self.call_inner(leader, request, deadline);
        let delivered = matches!(forwarded, Forwarded::Outcome(_));
        self.metrics.forward_sent(kind, delivered);
        forwarded
    }

    fn call_inner(&self, leader: NodeId, request: ForwardRequest, deadline: Instant) -> Forwarded {
        // A request whose entry would fit the log always fits a frame (the
        // limits table keeps entry_bytes_max + overhead within
        // frame_bytes_max, DESIGN.md 7); a larger one is refused here rather
        // than dropped by the sender.
        let frame_bytes = request.frame_bytes_bound();
        let frame_bytes_max = self.transport.frame_bytes_max();
        if frame_bytes > frame_bytes_max {
            return Forwarded::TooLarge {
                frame_bytes,
                frame_bytes_max,
            };
        }
        if !self.transport.is_connected(leader) {
            return Forwarded::Unreachable;
        }
        let bytes = request.payload_bytes();
        if !self.inflight.acquire(bytes, deadline) {
            return Forwarded::Busy;
        }
        let forwarded = self.send_and_wait(leader, request, deadline);
        self.inflight.release(bytes);
        forwarded
    }

    fn send_and_wait(
        &self,
        leader: NodeId,
        request: ForwardRequest,
        deadline: Instant,
    ) -> Forwarded {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let events = self.pending.insert(request_id, leader);
        // The leader watch abandons requests to a former leader when the
        // leader changes; one registered just after such a change is
        // caught here instead (the watch updates `seen` before it scans).
        if self.seen().target() != Some(leader) {
            self.pending.remove(request_id);
            return Forwarded::Unreachable;
        }
        if !self.transport.forward(leader, request_id, request) {
            self.pending.remove(request_id);
            return Forwarded::Unreachable;
        }
        match events.recv_deadline(deadline) {
            Some(Event::Outcome(outcome)) => Forwarded::Outcome(outcome),
            Some(Event::Abandoned) => Forwarded::Abandoned,
            Some(Event::Undelivered) => Forwarded::Unreachable,
            None => {
                self.pending.remove(request_id);
                Forwarded::TimedOut
            }
        }
    }

    /// Called on the Raft thread when the leader, the term or the
    /// candidate voted for changes: wakes the waiters, and abandons what
    /// was sent to a node that is no longer the target (a frozen leader
    /// would keep it until the deadline).
    fn leader_changed(&self, now: Leadership) {
        let target = {
            let mut seen = self.seen.lock();
            seen.generation += 1;
            seen.leader = now.leader;
            seen.term = now.term;
            seen.candidate = now.candidate;
            seen.target()
        };
        self.changed.notify_all();
        let abandoned = self.pending.abandon_all_but(target);
        if abandoned > 0 {
            log::debug!(
                "[Node {}] now {now:?}: {abandoned} forwarded requests abandoned",
                self.me
            );
        }
    }

    fn peer_connected(&self) {
        self.seen.lock().generation += 1;
        self.changed.notify_all();
    }

    /// Leader side: hands a follower's request to the Raft thread as an
    /// ordinary write or ReadIndex read. A full inbox is answered at once
    /// as busy (no effect) rather than blocking the peer's reader thread.
    fn serve(&self, from: NodeId, request_id: u64, request: ForwardRequest) {
        let op = match request {
            ForwardRequest::Write { command } => {
                self.metrics.forward_received(ForwardKind::Write);
                ForwardedOp::Write(command)
            }
            ForwardRequest::Read { args } => {
                self.metrics.forward_received(ForwardKind::Read);
                match self.read_op(args) {
                    Ok(op) => op,
                    Err(reply) => {
                        self.transport
                            .reply(from, request_id, ForwardOutcome::Reply(reply));
                        return;
                    }
                }
            }
        };
        let request = Request::Forwarded {
            from,
            request_id,
            op,
        };
        match self.requests.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let busy = refusal(&RequestError::Busy).to_bytes();
                self.transport
                    .reply(from, request_id, ForwardOutcome::Refused(busy));
            }
            Err(TrySendError::Disconnected(_)) => {} // Stopping.
        }
    }

    /// The query of a forwarded read, or the error reply for anything that
    /// is not a read: a forwarded request is never served as a write.
    fn read_op(&self, args: Vec<Vec<u8>>) -> Result<ForwardedOp<KvStore>, Vec<u8>> {
        let value = Value::Array(args.into_iter().map(Value::Bulk).collect());
        match KvRequest::from_value(value, &self.limits) {
            Ok(Some(KvRequest::Read(op))) => Ok(ForwardedOp::Read(read_query(op))),
            Ok(Some(KvRequest::Write(_) | KvRequest::Local(_))) | Ok(None) => {
                Err(Value::error("ERR not a forwardable read").to_bytes())
            }
            Err(error) => Err(error.to_reply().to_bytes()),
        }
    }
}

/// The transport's hooks. Weak: the transport outlives nothing here.
struct Handler(Weak<Relay>);

impl ForwardHandler for Handler {
    fn on_forward(&self, from: NodeId, request_id: u64, request: ForwardRequest) {
        if let Some(relay) = self.0.upgrade() {
            relay.serve(from, request_id, request);
        }
    }

    fn on_reply(&self, from: NodeId, request_id: u64, outcome: ForwardOutcome) {
        if let Some(relay) = self.0.upgrade()
            && !relay
                .pending
                .route(from, request_id, Event::Outcome(outcome))
        {
            log::debug!(
                "[Node {}] reply to forward {request_id} from node {from}: nobody waits for it",
                relay.me
            );
        }
    }

    fn on_undelivered(&self, to: NodeId, request_id: u64) {
        if let Some(relay) = self.0.upgrade() {
            relay.pending.route(to, request_id, Event::Undelivered);
        }
    }

    fn on_connected(&self, _peer: NodeId) {
        if let Some(relay) = self.0.upgrade() {
            relay.peer_connected();
        }
    }
}

/// The leader's `forward-replies` thread: encodes each answer of the Raft
/// thread once and queues it for the follower that asked. Ends when the
/// Raft thread does.
fn send_replies(replies: &Receiver<ForwardedReply<KvReply>>, transport: &TransportHandle) {
    for reply in replies {
        let outcome = within_frame(outcome_of(reply.answer), transport.frame_bytes_max());
        if !transport.reply(reply.to, reply.request_id, outcome) {
            log::debug!(
                "reply to forward {} of node {} dropped: its queue is full",
                reply.request_id,
                reply.to
            );
        }
    }
}

/// `outcome`, or, if its frame would exceed `frame_bytes_max` (an MGET of
/// many large values), an error the follower relays instead of waiting for
/// a reply the sender would drop. The request was served: the error does
/// not claim it had no effect.
fn within_frame(outcome: ForwardOutcome, frame_bytes_max: usize) -> ForwardOutcome {
    let frame_bytes = outcome.frame_bytes_bound();
    if frame_bytes <= frame_bytes_max {
        return outcome;
    }
    ForwardOutcome::Reply(
        Value::Error(format!(
            "ERR reply too large to forward ({frame_bytes} bytes, peer frame limit \
             {frame_bytes_max}); send the command to the leader"
        ))
        .to_bytes(),
    )
}

/// The wire form of the Raft thread's answer.
fn outcome_of(answer: Result<KvReply, RequestError>) -> ForwardOutcome {
    match answer {
        Ok(reply) => ForwardOutcome::Reply(super::reply::to_bytes(&reply)),
        Err(RequestError::NotLeader { leader }) => ForwardOutcome::NotLeader { leader },
        Err(RequestError::LeadershipLost | RequestError::TransferInProgress) => {
            ForwardOutcome::Retry
        }
        Err(
            error @ (RequestError::Busy
            | RequestError::TooLarge { .. }
            | RequestError::UncommittedFull { .. }),
        ) => ForwardOutcome::Refused(refusal(&error).to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_reaches_the_request_with_its_id_and_only_from_its_target() {
        let map = PendingMap::default();
        let first = map.insert(1, NodeId(2));
        let second = map.insert(2, NodeId(2));
        let reply = || Event::Outcome(ForwardOutcome::Reply(b"+OK\r\n".to_vec()));
        // From the wrong node: refused, the request still waits.
        assert!(!map.route(NodeId(3), 2, reply()));
        assert!(second.try_recv().is_none());
        assert!(map.route(NodeId(2), 2, reply()));
        assert!(matches!(
            second.try_recv(),
            Some(Event::Outcome(ForwardOutcome::Reply(r))) if r == b"+OK\r\n"
        ));
        assert!(first.try_recv().is_none(), "request 1 is still waiting");
        // A late duplicate finds nobody.
        assert!(!map.route(NodeId(2), 2, reply()));
        assert_eq!(map.by_id.lock().len(), 1);
    }

    #[test]
    fn requests_go_to_the_leader_or_else_to_the_candidate_voted_for() {
        let mut seen = Seen {
            generation: 1,
            leader: None,
            term: Term(3),
            candidate: None,
        };
        assert_eq!(seen.target(), None);
        seen.candidate = Some(NodeId(2));
        assert_eq!(seen.target(), Some(NodeId(2)));
        seen.leader = Some(NodeId(4));
        assert_eq!(seen.target(), Some(NodeId(4)), "a known leader wins");
    }

    #[test]
    fn a_leader_change_abandons_what_went_to_the_former_leader() {
        let map = PendingMap::default();
        let to_old = map.insert(1, NodeId(1));
        let to_new = map.insert(2, NodeId(2));
        assert_eq!(map.abandon_all_but(Some(NodeId(2))), 1);
        assert!(matches!(to_old.try_recv(), Some(Event::Abandoned)));
        assert!(to_new.try_recv().is_none());
        assert_eq!(map.abandon_all_but(None), 1);
        assert!(matches!(to_new.try_recv(), Some(Event::Abandoned)));
    }

    #[test]
    fn forwarded_bytes_in_flight_are_bounded_but_one_large_request_still_goes() {
        let inflight = InflightBytes {
            bytes: Mutex::new(0),
            freed: Condvar::new(),
            bytes_max: 100,
        };
        let soon = || Instant::now() + std::time::Duration::from_millis(20);
        assert!(inflight.acquire(150, soon()), "alone, a large one goes");
        assert!(!inflight.acquire(1, soon()), "nothing more while it is out");
        inflight.release(150);
        assert!(inflight.acquire(60, soon()));
        assert!(inflight.acquire(40, soon()));
        assert!(!inflight.acquire(1, soon()));
        inflight.release(60);
        assert!(inflight.acquire(60, soon()));
    }

    #[test]
    fn a_reply_too_large_for_a_frame_becomes_an_error() {
        let small = ForwardOutcome::Reply(vec![b'+'; 100]);
        assert_eq!(within_frame(small.clone(), 1000), small);
        let big = ForwardOutcome::Reply(vec![b'$'; 2000]);
        assert!(matches!(
            within_frame(big, 1000),
            ForwardOutcome::Reply(e) if e.starts_with(b"-ERR reply too large to forward")
        ));
    }

    #[test]
    fn raft_answers_map_to_outcomes() {
        assert_eq!(
            outcome_of(Ok(KvReply::Integer(1))),
            ForwardOutcome::Reply(b":1\r\n".to_vec())
        );
        assert_eq!(
            outcome_of(Err(RequestError::NotLeader {
                leader: Some(NodeId(4))
            })),
            ForwardOutcome::NotLeader {
                leader: Some(NodeId(4))
            }
        );
        assert_eq!(
            outcome_of(Err(RequestError::LeadershipLost)),
            ForwardOutcome::Retry
        );
        assert!(matches!(
            outcome_of(Err(RequestError::Busy)),
            ForwardOutcome::Refused(e) if e.starts_with(b"-ERR busy")
        ));
    }
}
