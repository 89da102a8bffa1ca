//! The workload: recording clients of random keys and operations, and the
//! run that puts them against a cluster while a nemesis does its worst.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sraft::kv::linearizability::{KvOp, Outcome};
use sraft::kv::resp::Value;
use sraft::server::ForwardError;
use sraft_testkit::history::{Classified, Recorder, check_or_panic, classify, command_of};
use sraft_testkit::{Auth, Conn, Info, TestCluster, deadline_in, poll_until};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const NODES: usize = 5;
const CLIENTS: u64 = 5;
/// Longer than the server's request timeout (5 s), so that the server's own
/// answer (an error naming the reason) normally arrives first.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(7);
const KEYS: [&[u8]; 3] = [b"k0", b"k1", b"k2"];
const COUNTER: &[u8] = b"ctr";

/// Five nodes, each on its own loopback address (so that a packet filter
/// can tell them apart), with a cluster secret, TLS on both ports and a
/// client password (DESIGN.md 9).
pub fn start_cluster(name: &str, extra_args: &[&str]) -> TestCluster {
    let mut builder = TestCluster::builder(NODES)
        .name(&format!("jepsen-{name}"))
        .own_addresses()
        .cluster_secret()
        .tls()
        .client_password();
    for arg in extra_args {
        builder = builder.arg(arg);
    }
    let cluster = builder.start();
    eprintln!(
        "[jepsen] cluster {} on {}",
        cluster.cluster_id(),
        cluster.peers_arg()
    );
    cluster
}

/// The node that says it leads and the sub-leaders it names, polled until
/// `timeout`.
pub fn wait_for_leader(cluster: &TestCluster, timeout: Duration) -> Option<(usize, Vec<usize>)> {
    poll_until(deadline_in(timeout), || {
        let found = cluster.claimed_leader();
        if found.is_none() {
            thread::sleep(Duration::from_millis(100));
        }
        found.map(|(i, info)| (i, info.sub_leaders()))
    })
}

/// A client: one connection at a time to one node; a fresh connection (a
/// new session) after anything indeterminate or any I/O error.
struct Client {
    id: u64,
    addrs: Vec<SocketAddr>,
    auth: Auth,
    /// The connection and the node it goes to.
    conn: Option<(Conn, usize)>,
    /// Followers-only mode: the node the watcher last saw lead, which this
    /// client stays away from.
    avoid: Option<Arc<AtomicUsize>>,
    recorder: Recorder,
    rng: StdRng,
    stats: Stats,
}

#[derive(Default, Debug, Clone)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    pub indeterminate: u64,
    /// Error replies and I/O errors, by their first words.
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.indeterminate += other.indeterminate;
        for (e, n) in other.errors {
            *self.errors.entry(e).or_default() += n;
        }
    }
}

fn error_kind(reply: &Result<Value, ForwardError>) -> Option<String> {
    match reply {
        Ok(Value::Error(e)) => Some(e.split(':').next().unwrap_or(e).to_string()),
        Ok(_) => None,
        Err(e) => Some(format!("io: {:?}", e.error.kind())),
    }
}

impl Client {
    /// Runs one operation and records it; returns the outcome if completed.
    fn run(&mut self, key: &[u8], op: KvOp) -> Option<Outcome> {
        let avoid = self.avoid.as_ref().map(|a| a.load(Ordering::Relaxed));
        if self
            .conn
            .as_ref()
            .is_some_and(|(_, node)| Some(*node) == avoid)
        {
            self.conn = None; // It leads now: go to a follower.
        }
        let conn = match &mut self.conn {
            Some((conn, _)) => conn,
            None => {
                let node = loop {
                    let node = self.rng.random_range(0..self.addrs.len());
                    if Some(node) != avoid {
                        break node;
                    }
                };
                let conn = Conn::new(self.addrs[node], &self.auth, CLIENT_TIMEOUT);
                &mut self.conn.insert((conn, node)).0
            }
        };
        let invoke_us = self.recorder.now_us();
        let args = command_of(key, &op);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let reply = conn.call_tracking_sent(&args);
        let io_error = reply.is_err();
        if let Some(kind) = error_kind(&reply) {
            *self.stats.errors.entry(kind).or_default() += 1;
        }
        let classified = classify(&op, reply);
        self.recorder
            .record_classified(self.id, key, invoke_us, op, &classified);
        let result = match classified {
            Classified::Done(outcome) => {
                self.stats.ok += 1;
                Some(outcome)
            }
            Classified::Failed => {
                self.stats.failed += 1;
                None
            }
            Classified::Indeterminate => {
                self.stats.indeterminate += 1;
                self.conn = None;
                None
            }
        };
        if io_error {
            self.conn = None;
        }
        if result.is_none() {
            // Back off a little while the cluster recovers.
            thread::sleep(Duration::from_millis(10));
        } else if self.rng.random_ratio(1, 20) {
            // Move to another node now and then.
            self.conn = None;
        }
        result
    }
}

fn client_loop(mut client: Client, stop: Arc<AtomicBool>) -> Stats {
    let mut n = 0u64;
    // The last value this client saw per key, to make CAS succeed sometimes.
    let mut seen: BTreeMap<&[u8], Vec<u8>> = BTreeMap::new();
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let roll = client.rng.random_range(0..100);
        if roll < 15 {
            let op = if client.rng.random_bool(0.7) {
                KvOp::Incr
            } else {
                KvOp::Get
            };
            client.run(COUNTER, op);
            continue;
        }
        let key = KEYS[client.rng.random_range(0..KEYS.len())];
        let unique = format!("c{}n{n}", client.id).into_bytes();
        let op = match roll {
            15..=49 => KvOp::Get,
            50..=69 => KvOp::Set(unique.clone()),
            70..=79 => KvOp::Append(format!("+{n}").into_bytes()),
            _ => KvOp::Cas {
                expected: seen.get(key).cloned().unwrap_or_else(|| b"none".to_vec()),
                new: unique.clone(),
            },
        };
        match (&op, client.run(key, op.clone())) {
            (KvOp::Get, Some(Outcome::Value(Some(v)))) => {
                seen.insert(key, v);
            }
            (KvOp::Set(v), Some(_)) | (KvOp::Cas { new: v, .. }, Some(Outcome::Bool(true))) => {
                seen.insert(key, v.clone());
            }
            _ => {}
        }
    }
    client.stats
}

pub fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

pub fn seed_from_env() -> u64 {
    let seed: u64 = std::env::var("JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("[jepsen] seed {seed} (JEPSEN_SEED to replay the nemesis schedule)");
    seed
}

fn spawn_clients(
    cluster: &TestCluster,
    recorder: &Recorder,
    seed: u64,
    stop: &Arc<AtomicBool>,
    avoid: Option<&Arc<AtomicUsize>>,
) -> Vec<thread::JoinHandle<Stats>> {
    (0..CLIENTS)
        .map(|id| {
            let client = Client {
                id,
                addrs: cluster.client_addrs(),
                auth: cluster.auth().clone(),
                conn: None,
                avoid: avoid.cloned(),
                recorder: recorder.clone(),
                rng: StdRng::seed_from_u64(seed ^ (id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                stats: Stats::default(),
            };
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("jepsen-client-{id}"))
                .spawn(move || client_loop(client, stop))
                .expect("spawn a client thread")
        })
        .collect()
}

/// How a workload runs besides its nemesis.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// Flags every node starts with (e.g. `--read-mode lease`).
    pub extra_args: &'a [&'a str],
    /// Clients talk only to nodes that do not lead, as the watcher last
    /// saw them (issue 12): every request is forwarded to the leader over
    /// the peer transport.
    pub followers_only: bool,
}

/// Followers-only mode: keeps `avoid` at the node that claims to lead the
/// highest term, polling every node's INFO (about every 50 ms) until `stop`.
fn watch_leader(addrs: &[SocketAddr], auth: &Auth, avoid: &AtomicUsize, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let leader = addrs
            .iter()
            .enumerate()
            .filter_map(|(i, addr)| Info::fetch(*addr, auth).map(|info| (i, info)))
            .filter(|(_, info)| info.is_leader())
            .max_by_key(|(_, info)| info.term());
        if let Some((i, _)) = leader {
            avoid.store(i, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a cluster, runs [`CLIENTS`] recording clients against it while
/// `nemesis` does its worst, heals every fault, lets the clients run on the
/// healed cluster, then checks the history. Returns the healed cluster.
pub fn run_workload(
    name: &str,
    seed: u64,
    nemesis: impl FnOnce(&Mutex<TestCluster>, &mut StdRng) -> Vec<String>,
) -> TestCluster {
    run_workload_with(name, seed, Options::default(), nemesis)
}

/// `run_workload` with `options`.
pub fn run_workload_with(
    name: &str,
    seed: u64,
    options: Options,
    nemesis: impl FnOnce(&Mutex<TestCluster>, &mut StdRng) -> Vec<String>,
) -> TestCluster {
    let started = Instant::now();
    let cluster = start_cluster(name, options.extra_args);
    let leader = wait_for_leader(&cluster, Duration::from_secs(20));
    assert!(
        leader.is_some(),
        "no leader elected\n{}",
        cluster.log_tails(40)
    );
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let avoid = options.followers_only.then(|| {
        let leader = leader.as_ref().map_or(usize::MAX, |(l, _)| *l);
        Arc::new(AtomicUsize::new(leader))
    });
    let watcher = avoid.as_ref().map(|avoid| {
        let (addrs, auth) = (cluster.client_addrs(), cluster.auth().clone());
        let (avoid, stop) = (avoid.clone(), stop.clone());
        thread::spawn(move || watch_leader(&addrs, &auth, &avoid, &stop))
    });
    let clients = spawn_clients(&cluster, &recorder, seed, &stop, avoid.as_ref());
    let cluster = Mutex::new(cluster);

    thread::sleep(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(seed);
    let actions = nemesis(&cluster, &mut rng);
    cluster.lock().unwrap().recover_all();
    let healed = started.elapsed();
    let leader = wait_for_leader(&cluster.lock().unwrap(), Duration::from_secs(15));
    // Let the clients run against the healed cluster, then stop them; each
    // finishes its operation in flight (bounded by the client timeout).
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut total = Stats::default();
    for c in clients {
        total.add(c.join().expect("client thread"));
    }
    if let Some(watcher) = watcher {
        watcher.join().expect("leader watcher");
    }
    let cluster = cluster.into_inner().unwrap();
    for a in &actions {
        eprintln!("[jepsen] nemesis: {a}");
    }
    eprintln!(
        "[jepsen] healed at {:.1}s, leader after heal {:?}; ops: {} ok, {} failed (no effect), {} indeterminate; errors {:?}",
        healed.as_secs_f64(),
        leader,
        total.ok,
        total.failed,
        total.indeterminate,
        total.errors
    );
    assert!(
        leader.is_some(),
        "no leader after healing\n{}",
        cluster.log_tails(40)
    );
    assert!(
        total.ok >= 100,
        "too few completed operations ({total:?}) to say anything\n{}",
        cluster.log_tails(40)
    );
    check_or_panic(&cluster, &recorder.history());
    eprintln!(
        "[jepsen] {name}: total {:.1}s",
        started.elapsed().as_secs_f64()
    );
    cluster
}
