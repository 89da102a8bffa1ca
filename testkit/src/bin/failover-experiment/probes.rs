//! The probes: one status poller per node (about every millisecond, over a
//! persistent connection) and one writer (about one write a millisecond
//! through a chosen node), sharing what they see with the trial. Both
//! reach the nodes through the cluster's [`Connector`], whatever the
//! system.

use crate::cluster::{Connector, NodeConn, Status};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A status poll waits at most this long.
const POLL_TIMEOUT: Duration = Duration::from_millis(300);
/// The writer starts a write at most this often.
const WRITE_INTERVAL: Duration = Duration::from_millis(1);
/// A write unanswered this long gets company: the writer starts the next
/// one on another connection. A follower that forwarded a write to a leader
/// that has just died may hold it until its own request timeout (etcd:
/// 5 s + 2 election timeouts) and a one-at-a-time client would then
/// measure that timeout, not the failover; hedging bounds that error by
/// this interval.
const HEDGE_AFTER: Duration = Duration::from_millis(10);
/// Connections (and threads) of the writer: at most this many writes are
/// outstanding.
const WRITE_CONNS: usize = 32;
/// A write is abandoned (its connection closed) after this, so that with
/// [`WRITE_CONNS`] connections one is free again every [`HEDGE_AFTER`]
/// even when every write hangs.
const WRITE_ABANDON: Duration = Duration::from_millis(10 * WRITE_CONNS as u64);
/// How often the writer's dispatcher looks whether a write is due.
const WRITER_TICK: Duration = Duration::from_micros(500);

/// A node's last status and when it arrived; empty while it does not
/// answer.
#[derive(Clone, Default)]
pub struct View {
    pub status: Option<Status>,
    pub at: Option<Instant>,
}

impl View {
    pub fn term(&self) -> Option<u64> {
        self.status.as_ref().map(|s| s.term)
    }
    /// Node `id` (this view's node) says it leads.
    pub fn leads(&self, id: usize) -> bool {
        self.status.as_ref().is_some_and(|s| s.leads(id))
    }
    pub fn leader(&self) -> Option<usize> {
        self.status.as_ref()?.leader
    }
    pub fn log_index(&self) -> Option<u64> {
        self.status.as_ref().map(|s| s.log_index)
    }
    /// The sub-leaders it names (a leader's view), primary first.
    pub fn sub_leaders(&self) -> Vec<usize> {
        self.status
            .as_ref()
            .map(|s| s.sub_leaders.clone())
            .unwrap_or_default()
    }
}

/// Who may witness the new leader after a fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Witness {
    /// Only the new leader itself (sraft: its INFO says `role:leader`).
    TheLeader,
    /// Any survivor naming a leader other than the victim (etcd: a
    /// status's `leader`, which a member sets on the first message of the
    /// new term's leader).
    AnySurvivor,
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
    /// (sent, acked) of every acknowledged write since the last clear.
    pub acks: Mutex<Vec<(Instant, Instant)>>,
    /// The target and send time of the latest-sent acknowledged write.
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

/// Polls node `id` until told to stop; reports the first new leader a
/// survivor other than the victim shows in a higher term after the fault.
pub fn poller(shared: Arc<Shared>, connect: Connector, id: usize, witness: Witness) {
    let mut conn = connect(id, POLL_TIMEOUT);
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.paused[id].load(Ordering::SeqCst) {
            shared.views.lock()[id] = View::default();
            conn.reset();
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        match conn.status() {
            Some(status) => {
                let now = Instant::now();
                if let Some(w) = shared.watch.lock().as_mut() {
                    see_new_leader(w, id, &status, now, witness);
                }
                shared.views.lock()[id] = View {
                    status: Some(status),
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

/// Records `status` (node `id`'s, seen at `now`) in `w` if it is the
/// earliest sighting of a new leader.
fn see_new_leader(w: &mut Watch, id: usize, status: &Status, now: Instant, witness: Witness) {
    let leader = match witness {
        Witness::TheLeader => status.leader.filter(|&l| l == id),
        Witness::AnySurvivor => status.leader,
    };
    if let Some(l) = leader
        && id != w.victim
        && l != w.victim
        && now > w.fault_at
        && status.term > w.old_term
        && w.found.is_none_or(|(t, _, _)| now < t)
    {
        w.found = Some((now, l, status.term));
    }
}

/// Which of the writer's connections are free, and when the last write
/// started.
struct Gate {
    idle: Vec<usize>,
    outstanding: usize,
    last_start: Option<Instant>,
}

impl Gate {
    /// Takes a free connection if a write is due at `now`: one at a time
    /// (at most every [`WRITE_INTERVAL`]) while writes are answered, and a
    /// further one every [`HEDGE_AFTER`] while they are not.
    fn start(&mut self, now: Instant) -> Option<usize> {
        let due = self.last_start.is_none_or(|t| {
            let since = now.duration_since(t);
            since >= WRITE_INTERVAL && (self.outstanding == 0 || since >= HEDGE_AFTER)
        });
        if !due {
            return None;
        }
        let w = self.idle.pop()?;
        self.outstanding += 1;
        self.last_start = Some(now);
        Some(w)
    }
}

/// Writes through the node `shared.target` names until told to stop,
/// recording every acknowledgement; see [`HEDGE_AFTER`].
pub fn writer(shared: Arc<Shared>, connect: Connector) {
    let gate = Arc::new(Mutex::new(Gate {
        idle: (0..WRITE_CONNS).collect(),
        outstanding: 0,
        last_start: None,
    }));
    let (senders, workers): (Vec<Sender<u64>>, Vec<JoinHandle<()>>) = (0..WRITE_CONNS)
        .map(|w| {
            let (tx, rx) = channel();
            let (s, g, c) = (shared.clone(), gate.clone(), connect.clone());
            let handle = thread::Builder::new()
                .name(format!("write-{w}"))
                .spawn(move || write_worker(w, s, g, rx, c))
                .expect("spawn a write worker");
            (tx, handle)
        })
        .unzip();
    let mut n: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(w) = gate.lock().start(Instant::now()) {
            n += 1;
            senders[w]
                .send(n)
                .expect("write workers end after the writer");
        }
        thread::sleep(WRITER_TICK);
    }
    drop(senders);
    for worker in workers {
        let _ = worker.join();
    }
}

/// One of the writer's connections: a write of value `n` per message.
fn write_worker(
    w: usize,
    shared: Arc<Shared>,
    gate: Arc<Mutex<Gate>>,
    rx: Receiver<u64>,
    connect: Connector,
) {
    let mut conn: Option<(usize, Box<dyn NodeConn>)> = None;
    while let Ok(n) = rx.recv() {
        let target = shared.target.load(Ordering::SeqCst);
        if conn.as_ref().is_none_or(|(t, _)| *t != target) {
            conn = Some((target, connect(target, WRITE_ABANDON)));
        }
        let (_, c) = conn.as_mut().expect("just set");
        let sent = Instant::now();
        match c.put("failover", &n.to_string()) {
            Ok(()) => {
                let acked = Instant::now();
                shared.acks.lock().push((sent, acked));
                let mut last = shared.last_ack.lock();
                if last.is_none_or(|(_, s)| s <= sent) {
                    *last = Some((target, sent));
                }
            }
            Err(_) => {
                shared.write_errors.fetch_add(1, Ordering::Relaxed);
                c.reset();
            }
        }
        let mut g = gate.lock();
        g.outstanding -= 1;
        g.idle.push(w);
    }
}

/// The user who arrives with the fault (issue 13's "tried as a new user
/// would"): SETs through `target` from the moment the fault is in (for
/// SIGKILL once the process is reaped, about a millisecond after the
/// signal; for SIGSTOP at once), the first on a connection opened
/// beforehand, paced by the writer's [`Gate`]: one write at a time while
/// writes are answered (an error is an answer; the next write, on a fresh
/// connection, starts [`WRITE_INTERVAL`] after the last one started), and
/// a further one every [`HEDGE_AFTER`] while none is (at most
/// [`WRITE_CONNS`] at once).
/// Its first ack is the measure. The writer's own first ack after the
/// fault comes one write later when the write it had in flight is
/// answered first, since only that answer starts its next write.
pub struct NewUser {
    go: Sender<()>,
    done: Receiver<Option<Instant>>,
    stop: Arc<AtomicBool>,
}

impl NewUser {
    /// Connects to `target` and waits for [`NewUser::go`].
    pub fn ready(connect: &Connector, target: usize, key: String) -> NewUser {
        let (go, go_rx) = channel();
        let (done_tx, done) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut first = connect(target, WRITE_ABANDON);
        // Opens the connection now: a user's connect is not the failover.
        let _ = first.status();
        let (connect, flag) = (connect.clone(), stop.clone());
        thread::Builder::new()
            .name("new-user".into())
            .spawn(move || {
                if go_rx.recv().is_ok() {
                    let _ = done_tx.send(new_user_writes(first, &connect, target, &key, &flag));
                }
            })
            .expect("spawn the new user");
        NewUser { go, done, stop }
    }

    /// The fault is in: write now.
    pub fn go(&self) {
        let _ = self.go.send(());
    }

    /// The first acknowledgement, waiting until `deadline` at most.
    pub fn first_ack(self, deadline: Instant) -> Option<Instant> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        self.done.recv_timeout(timeout).ok().flatten()
    }
}

impl Drop for NewUser {
    fn drop(&mut self) {
        // No more writes, whatever became of the trial.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The new user's writes (see [`NewUser`]) until one is acknowledged (its
/// time) or `stop`. Each write runs on its own thread, so that a hung one
/// does not hold back the next; a thread ends with its write, within
/// [`WRITE_ABANDON`].
fn new_user_writes(
    first: Box<dyn NodeConn>,
    connect: &Connector,
    target: usize,
    key: &str,
    stop: &AtomicBool,
) -> Option<Instant> {
    // The writer's own pacing: its Gate, with the connection slot of each
    // write coming back with its answer.
    let mut gate = Gate {
        idle: (0..WRITE_CONNS).collect(),
        outstanding: 0,
        last_start: None,
    };
    let (tx, rx) = channel::<(usize, Option<Instant>)>();
    let mut conn = Some(first);
    while !stop.load(Ordering::SeqCst) {
        if let Some(w) = gate.start(Instant::now()) {
            let mut c = conn
                .take()
                .unwrap_or_else(|| connect(target, WRITE_ABANDON));
            let (tx, key) = (tx.clone(), key.to_string());
            thread::Builder::new()
                .name("new-user-write".into())
                .spawn(move || {
                    let answer = c.put(&key, "new-user").ok().map(|()| Instant::now());
                    let _ = tx.send((w, answer));
                })
                .expect("spawn a new user's write");
        }
        match rx.recv_timeout(WRITER_TICK) {
            Ok((_, Some(acked))) => {
                // Another write may have been answered a moment earlier
                // and be about to say so: the earliest within 2 ms.
                let grace = Instant::now() + Duration::from_millis(2);
                let mut first = acked;
                while let Ok((_, answer)) =
                    rx.recv_timeout(grace.saturating_duration_since(Instant::now()))
                {
                    first = answer.map_or(first, |t| first.min(t));
                }
                return Some(first);
            }
            Ok((w, None)) => {
                gate.outstanding -= 1;
                gate.idle.push(w);
            }
            Err(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_hedges_only_after_a_write_hangs() {
        let t0 = Instant::now();
        let mut g = Gate {
            idle: vec![0, 1],
            outstanding: 0,
            last_start: None,
        };
        assert_eq!(g.start(t0), Some(1));
        // Outstanding and not yet HEDGE_AFTER old: wait.
        assert_eq!(g.start(t0 + WRITE_INTERVAL), None);
        assert_eq!(g.start(t0 + HEDGE_AFTER), Some(0));
        // Both hang: no free connection.
        assert_eq!(g.start(t0 + 3 * HEDGE_AFTER), None);
    }
}
