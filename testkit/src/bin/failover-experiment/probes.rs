//! The probes: one INFO poller per node (about every millisecond, over a
//! persistent connection) and one writer (a SET about every millisecond
//! through a chosen node), sharing what they see with the trial.

use parking_lot::Mutex;
use sraft::kv::resp::Value;
use sraft_testkit::{Auth, Conn, Info};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A poll of INFO waits at most this long.
const POLL_TIMEOUT: Duration = Duration::from_millis(300);
/// A SET waits at most this long (a frozen leader's followers answer).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A node's last INFO and when it arrived; empty while it does not answer.
#[derive(Clone, Default)]
pub struct View {
    pub info: Option<Info>,
    pub at: Option<Instant>,
}

impl View {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.info.as_ref()?.field(k)
    }
    pub fn num(&self, k: &str) -> Option<u64> {
        self.info.as_ref()?.number_field(k)
    }
    /// The sub-leaders it names (a leader's view), primary first.
    pub fn sub_leaders(&self) -> Vec<usize> {
        self.info
            .as_ref()
            .map(Info::sub_leaders)
            .unwrap_or_default()
    }
}

/// The first sighting of a new leader after the fault.
pub struct Watch {
    pub fault_at: Instant,
    pub victim: usize,
    pub old_term: u64,
    pub found: Option<(Instant, usize, u64)>,
}

pub struct Shared {
    pub views: Mutex<Vec<View>>,
    /// Pollers skip these nodes (the faulted one).
    pub paused: Vec<AtomicBool>,
    pub watch: Mutex<Option<Watch>>,
    pub stop: AtomicBool,
    /// The node the writer sends through.
    pub target: AtomicUsize,
    /// (sent, acked) of every acknowledged SET since the last clear.
    pub acks: Mutex<Vec<(Instant, Instant)>>,
    /// The target and send time of the last acknowledged SET.
    pub last_ack: Mutex<Option<(usize, Instant)>>,
    pub write_errors: AtomicUsize,
}

impl Shared {
    pub fn new(nodes: usize) -> Shared {
        Shared {
            views: Mutex::new(vec![View::default(); nodes]),
            paused: (0..nodes).map(|_| AtomicBool::new(false)).collect(),
            watch: Mutex::new(None),
            stop: AtomicBool::new(false),
            target: AtomicUsize::new(0),
            acks: Mutex::new(Vec::new()),
            last_ack: Mutex::new(None),
            write_errors: AtomicUsize::new(0),
        }
    }
}

/// Polls node `id` at `addr` until told to stop; reports the first node
/// other than the victim that leads a higher term after the fault.
pub fn poller(shared: Arc<Shared>, addr: SocketAddr, id: usize) {
    let mut conn = Conn::new(addr, &Auth::default(), POLL_TIMEOUT);
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.paused[id].load(Ordering::SeqCst) {
            shared.views.lock()[id] = View::default();
            conn.reset();
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        match conn.call(&[b"INFO"]).ok().and_then(Info::from_reply) {
            Some(info) => {
                let now = Instant::now();
                if let Some(w) = shared.watch.lock().as_mut() {
                    let term = info.number_field("term").unwrap_or(0);
                    if id != w.victim
                        && now > w.fault_at
                        && info.is_leader()
                        && term > w.old_term
                        && w.found.is_none_or(|(t, _, _)| now < t)
                    {
                        w.found = Some((now, id, term));
                    }
                }
                shared.views.lock()[id] = View {
                    info: Some(info),
                    at: Some(now),
                };
            }
            None => {
                shared.views.lock()[id] = View::default();
                thread::sleep(Duration::from_millis(5));
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// SETs through the node `shared.target` names (of `addrs`) until told to
/// stop, recording every acknowledgement.
pub fn writer(shared: Arc<Shared>, addrs: Vec<SocketAddr>) {
    let mut conn: Option<(usize, Conn)> = None;
    let mut n: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let target = shared.target.load(Ordering::SeqCst);
        n += 1;
        if conn.as_ref().is_none_or(|(t, _)| *t != target) {
            conn = Some((
                target,
                Conn::new(addrs[target], &Auth::default(), WRITE_TIMEOUT),
            ));
        }
        let (_, c) = conn.as_mut().expect("just set");
        let sent = Instant::now();
        match c.call(&[b"SET", b"failover", n.to_string().as_bytes()]) {
            Ok(Value::Simple(_)) => {
                let acked = Instant::now();
                shared.acks.lock().push((sent, acked));
                *shared.last_ack.lock() = Some((target, sent));
            }
            _ => {
                shared.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}
