//! Jepsen-style tests against real `sraft` processes: five nodes on
//! loopback, concurrent RESP clients recording every operation's real-time
//! interval, a nemesis that SIGKILLs, restarts, pauses and resumes nodes
//! (the leader and its primary sub-leader among them), then the history is
//! checked for linearizability, key by key.
//!
//! Recording rules (what may be claimed about an operation):
//! - a reply is a completed operation with that result;
//! - a write answered `-TRYAGAIN ...` or `-ERR busy` had no effect (the
//!   server returns them only when no attempt of the write can have reached
//!   a state machine; see `src/server/connection.rs`), so it is left out;
//! - any other error to a write, a client-side timeout or a broken
//!   connection is indeterminate (`complete_us: None`): it may take effect
//!   at any time after its invocation, or never. The client then opens a
//!   new connection, so a new server-side session;
//! - a read that failed constrains nothing and is left out.
//!
//! Addresses: node i binds 127.0.0.(11 + i), so that a packet filter can
//! tell the nodes apart (`common::partition`). Ports: peers 26000-26999,
//! client ports (peer + 1000) 27000-27999.
//!
//! Security is on (DESIGN.md 9): the nodes share a cluster secret and speak
//! TLS on both ports, and every client connection starts with AUTH.

mod common;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sraft::kv::linearizability::{KvOp, Operation, Outcome, Verdict, check};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const NODES: usize = 5;
const PEER_PORT_MIN: u16 = 26000;
const PEER_PORT_MAX: u16 = 26999;
const CLIENT_PORT_OFFSET: u16 = 1000;
/// Longer than the server's request timeout (5 s), so that the server's own
/// answer (an error naming the reason) normally arrives first.
/// The client password of every node; the cluster secret is random.
const PASSWORD: &str = "jepsen-password";

/// One CA and node certificate for the whole test process, in memory
/// (each cluster writes them into its own temp dir), and the client side's
/// TLS configuration, which `Conn::open` needs without a cluster at hand.
fn tls() -> &'static (common::CertPems, sraft::tls::ClientTls) {
    static TLS: std::sync::OnceLock<(common::CertPems, sraft::tls::ClientTls)> =
        std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let pems = common::cert_pems("jepsen");
        // Read back from a temp dir that is gone when this returns.
        let dir = tempfile::tempdir().expect("temp dir");
        let files = common::write_certs(dir.path(), "jepsen", &pems);
        let client = sraft::tls::ClientTls::load(&files.ca).expect("CA loads");
        (pems, client)
    })
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(7);

/// Cluster tests share two cores with other builders: one at a time.
static CLUSTER_LOCK: Mutex<()> = Mutex::new(());
static NEXT_BASE: AtomicU16 = AtomicU16::new(0);

fn cluster_lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------- cluster

struct Node {
    ip: Ipv4Addr,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// Five `sraft` processes, our children; Drop kills them (by pid) and the
/// temporary directory goes with the struct.
struct Cluster {
    nodes: Vec<Node>,
    peers: String,
    cluster_id: String,
    /// The certificates of `tls()`, written into `_dir`.
    tls: sraft::tls::TlsFiles,
    /// Flags every node starts with besides the cluster's own.
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

/// Node i's own loopback address (the whole 127/8 is local on Linux).
fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 11 + i as u8)
}

fn port_free(ip: Ipv4Addr, port: u16) -> bool {
    TcpListener::bind((ip, port)).is_ok()
}

/// A base port in our range such that all peer and client ports are free,
/// starting after the last base handed out (tests in this binary may run in
/// other threads; other agents use other ranges).
fn pick_base() -> u16 {
    let span = PEER_PORT_MAX - PEER_PORT_MIN + 1;
    let slots = span / NODES as u16;
    let seed = (std::process::id() as u16) % slots;
    for _ in 0..slots {
        let slot = (seed + NEXT_BASE.fetch_add(1, Ordering::SeqCst)) % slots;
        let base = PEER_PORT_MIN + slot * NODES as u16;
        let all_free = (0..NODES as u16).all(|i| {
            let ip = node_ip(i as usize);
            port_free(ip, base + i) && port_free(ip, base + i + CLIENT_PORT_OFFSET)
        });
        if all_free {
            return base;
        }
    }
    panic!("no free ports in {PEER_PORT_MIN}-{PEER_PORT_MAX}");
}

impl Cluster {
    fn start(name: &str) -> Cluster {
        Cluster::start_with(name, &[])
    }

    fn start_with(name: &str, extra_args: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sraft-jepsen-{name}-"))
            .tempdir()
            .expect("temp dir");
        let base = pick_base();
        let peers = (0..NODES)
            .map(|i| format!("{}:{}", node_ip(i), base + i as u16))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..NODES)
            .map(|i| Node {
                ip: node_ip(i),
                peer_port: base + i as u16,
                data_dir: dir.path().join(format!("node-{i}")),
                log_path: dir.path().join(format!("node-{i}.log")),
                child: None,
                paused: false,
            })
            .collect();
        for (file, text) in [
            (
                "cluster.secret",
                format!("{:032x}\n", rand::random::<u128>()),
            ),
            ("client.password", format!("{PASSWORD}\n")),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(file);
            std::fs::write(&path, text).expect("write a secret file");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("chmod a secret file");
        }
        let mut cluster = Cluster {
            nodes,
            peers,
            cluster_id: format!("jepsen-{name}-{}-{base}", std::process::id()),
            tls: common::write_certs(&dir.path().join("tls"), "jepsen", &tls().0),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            _dir: dir,
        };
        for i in 0..NODES {
            cluster.start_node(i);
        }
        eprintln!(
            "[jepsen] cluster {} on peer ports {base}..",
            cluster.cluster_id
        );
        cluster
    }

    fn secret_file(&self, name: &str) -> String {
        self._dir.path().join(name).display().to_string()
    }

    fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} already running");
        let secret = self.secret_file("cluster.secret");
        let password = self.secret_file("client.password");
        let node = &mut self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .expect("log file");
        writeln!(&log, "===== [jepsen] starting node {i} =====").ok();
        let child = Command::new(env!("CARGO_BIN_EXE_sraft"))
            .args(["--node-id", &i.to_string()])
            .args(["--peers", &self.peers])
            .args(["--data-dir", node.data_dir.to_str().expect("utf-8 path")])
            .args(["--cluster-id", &self.cluster_id])
            .args(["--cluster-secret-file", &secret])
            .args(["--client-password-file", &password])
            .args(["--tls-cert-file", path(&self.tls.cert)])
            .args(["--tls-key-file", path(&self.tls.key)])
            .args(["--tls-ca-cert-file", path(&self.tls.ca)])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn sraft");
        node.child = Some(child);
        node.paused = false;
    }

    /// SIGKILL, by our child's pid.
    fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            if node.paused {
                signal(&child, "CONT");
            }
            let _ = child.kill();
            let _ = child.wait();
            if let Ok(mut log) = OpenOptions::new().append(true).open(&node.log_path) {
                writeln!(log, "===== [jepsen] node {i} killed (SIGKILL) =====").ok();
            }
        }
        node.paused = false;
    }

    fn pause_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(child) = &node.child {
            signal(child, "STOP");
            node.paused = true;
        }
    }

    fn resume_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(child) = &node.child
            && node.paused
        {
            signal(child, "CONT");
        }
        node.paused = false;
    }

    /// Every node running and none paused.
    fn heal(&mut self) {
        for i in 0..NODES {
            self.resume_node(i);
            if self.nodes[i].child.is_none() {
                self.start_node(i);
            }
        }
    }

    fn kill_all(&mut self) {
        for i in 0..NODES {
            self.kill_node(i);
        }
    }

    fn client_addr(&self, i: usize) -> SocketAddr {
        let node = &self.nodes[i];
        SocketAddr::from((node.ip, node.peer_port + CLIENT_PORT_OFFSET))
    }

    fn peer_addr(&self, i: usize) -> SocketAddr {
        let node = &self.nodes[i];
        SocketAddr::from((node.ip, node.peer_port))
    }

    fn client_addrs(&self) -> Vec<SocketAddr> {
        (0..NODES).map(|i| self.client_addr(i)).collect()
    }

    fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some() && !self.nodes[i].paused
    }

    /// The node that says it leads (and the sub-leaders it names), asking
    /// the running nodes; of several claims (a deposed leader that has not
    /// heard of the new term yet), the highest term's.
    fn leader(&self) -> Option<(usize, Vec<usize>)> {
        self.leader_in_term().map(|(i, _, subs)| (i, subs))
    }

    fn leader_in_term(&self) -> Option<(usize, u64, Vec<usize>)> {
        let mut best: Option<(usize, u64, Vec<usize>)> = None;
        for i in (0..NODES).filter(|&i| self.running(i)) {
            let Ok(info) = info(self.client_addr(i)) else {
                continue;
            };
            if info.get("role").map(String::as_str) != Some("leader") {
                continue;
            }
            let term = info.get("term").and_then(|t| t.parse().ok()).unwrap_or(0);
            let subs = info
                .get("sub_leaders")
                .map(|s| {
                    s.split(|c: char| !c.is_ascii_digit())
                        .filter_map(|t| t.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            if best.as_ref().is_none_or(|(_, t, _)| term > *t) {
                best = Some((i, term, subs));
            }
        }
        best
    }

    fn wait_for_leader(&self, timeout: Duration) -> Option<(usize, Vec<usize>)> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(found) = self.leader() {
                return Some(found);
            }
            thread::sleep(Duration::from_millis(100));
        }
        None
    }

    fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out += &format!(
                "----- node {i} log tail ({}) -----\n",
                node.log_path.display()
            );
            out += &tail(&node.log_path, lines);
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill -{sig} {}",
        child.id()
    );
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(file) = File::open(path) else {
        return "(no log)\n".into();
    };
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    let from = all.len().saturating_sub(lines);
    all[from..].iter().map(|l| format!("{l}\n")).collect()
}

// ---------------------------------------------------------------- RESP client

#[derive(Clone, Debug, PartialEq, Eq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

struct Conn {
    /// Reads through the buffer, writes through `get_mut()`: one TLS
    /// stream cannot be split in two.
    stream: BufReader<sraft::tls::Stream>,
}

impl Conn {
    fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let stream = sraft::tls::Stream::connect(stream, addr, Some(&tls().1.0), timeout)?;
        let mut conn = Conn {
            stream: BufReader::new(stream),
        };
        match conn.call(&[b"AUTH", PASSWORD.as_bytes()])? {
            Reply::Simple(ok) if ok == "OK" => Ok(conn),
            other => Err(bad(&format!("AUTH answered {other:?}"))),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&req)?;
        self.stream.get_mut().flush()?;
        read_reply(&mut self.stream)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    line.strip_suffix("\r\n")
        .map(str::to_string)
        .ok_or_else(|| bad("unterminated line"))
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty line"))?;
    let number = || rest.parse::<i64>().map_err(|_| bad("bad number"));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(number()?),
        "$" => {
            let n = number()?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut data = vec![0u8; n as usize + 2];
                r.read_exact(&mut data)?;
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
        }
        "*" => {
            let n = number()?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        _ => return Err(bad("unknown reply type")),
    })
}

fn info(addr: SocketAddr) -> io::Result<BTreeMap<String, String>> {
    let mut conn = Conn::open(addr, Duration::from_secs(1))?;
    match conn.call(&[b"INFO"])? {
        Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()),
        other => Err(bad(&format!("INFO answered {other:?}"))),
    }
}

// ---------------------------------------------------------------- history

/// One shared monotonic clock for every invocation and completion.
#[derive(Clone)]
struct Recorder {
    epoch: Instant,
    ops: Arc<Mutex<Vec<Operation>>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            epoch: Instant::now(),
            ops: Arc::default(),
        }
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn record(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }

    fn history(&self) -> Vec<Operation> {
        self.ops.lock().unwrap().clone()
    }
}

/// What a reply means for the history.
enum Classified {
    /// Completed with this result.
    Done(Outcome),
    /// Certainly had no effect: left out of the history.
    Failed,
    /// May have taken effect, or not.
    Indeterminate,
}

fn is_write(op: &KvOp) -> bool {
    !matches!(op, KvOp::Get)
}

/// Errors the server returns only when the request cannot have taken effect
/// (DESIGN.md 4.3): `TRYAGAIN` (no leader, or the leader unreachable, so
/// nothing was sent) and `ERR busy`.
fn no_effect_error(e: &str) -> bool {
    e.starts_with("TRYAGAIN") || e.starts_with("ERR busy")
}

fn classify(op: &KvOp, reply: io::Result<Reply>) -> Classified {
    let reply = match reply {
        Ok(reply) => reply,
        Err(_) if is_write(op) => return Classified::Indeterminate,
        Err(_) => return Classified::Failed,
    };
    match (op, reply) {
        (_, Reply::Error(e)) if !is_write(op) || no_effect_error(&e) => Classified::Failed,
        (KvOp::Incr, Reply::Error(e)) if e.contains("not an integer") => {
            Classified::Done(Outcome::Error)
        }
        (_, Reply::Error(_)) => Classified::Indeterminate,
        (KvOp::Get, Reply::Bulk(v)) => Classified::Done(Outcome::Value(v)),
        (KvOp::Set(_), Reply::Simple(s)) if s == "OK" => Classified::Done(Outcome::Ok),
        (KvOp::Append(_) | KvOp::Del | KvOp::Incr, Reply::Int(n)) => {
            Classified::Done(Outcome::Int(n))
        }
        (KvOp::Cas { .. }, Reply::Int(n)) => Classified::Done(Outcome::Bool(n == 1)),
        (op, reply) => panic!("unexpected reply {reply:?} to {op:?}"),
    }
}

fn command_of(key: &[u8], op: &KvOp) -> Vec<Vec<u8>> {
    let k = key.to_vec();
    match op {
        KvOp::Get => vec![b"GET".to_vec(), k],
        KvOp::Set(v) => vec![b"SET".to_vec(), k, v.clone()],
        KvOp::Append(v) => vec![b"APPEND".to_vec(), k, v.clone()],
        KvOp::Cas { expected, new } => vec![b"CAS".to_vec(), k, expected.clone(), new.clone()],
        KvOp::Del => vec![b"DEL".to_vec(), k],
        KvOp::Incr => vec![b"INCR".to_vec(), k],
    }
}

/// A client: one connection at a time to one node; a fresh connection (a
/// new session) after anything indeterminate or any I/O error.
struct Client {
    id: u64,
    addrs: Vec<SocketAddr>,
    conn: Option<Conn>,
    recorder: Recorder,
    rng: StdRng,
    stats: Stats,
}

#[derive(Default, Debug, Clone)]
struct Stats {
    ok: u64,
    failed: u64,
    indeterminate: u64,
    /// Error replies and I/O errors, by their first words.
    errors: BTreeMap<String, u64>,
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

fn error_kind(reply: &io::Result<Reply>) -> Option<String> {
    match reply {
        Ok(Reply::Error(e)) => Some(e.split(':').next().unwrap_or(e).to_string()),
        Ok(_) => None,
        Err(e) => Some(format!("io: {:?}", e.kind())),
    }
}

impl Client {
    /// Runs one operation and records it; returns the outcome if completed.
    fn run(&mut self, key: &[u8], op: KvOp) -> Option<Outcome> {
        if self.conn.is_none() {
            let node = self.rng.random_range(0..self.addrs.len());
            self.conn = Conn::open(self.addrs[node], CLIENT_TIMEOUT).ok();
        }
        let invoke_us = self.recorder.now_us();
        let args = command_of(key, &op);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let reply = match self.conn.as_mut() {
            Some(conn) => conn.call(&args),
            // Never sent: no effect.
            None => {
                self.stats.failed += 1;
                thread::sleep(Duration::from_millis(20));
                return None;
            }
        };
        let io_error = reply.is_err();
        if let Some(kind) = error_kind(&reply) {
            *self.stats.errors.entry(kind).or_default() += 1;
        }
        let classified = classify(&op, reply);
        let complete_us = self.recorder.now_us();
        let result = match classified {
            Classified::Done(outcome) => {
                self.stats.ok += 1;
                self.recorder.record(Operation {
                    client: self.id,
                    key: key.to_vec(),
                    invoke_us,
                    complete_us: Some(complete_us),
                    op,
                    result: outcome.clone(),
                });
                Some(outcome)
            }
            Classified::Failed => {
                self.stats.failed += 1;
                None
            }
            Classified::Indeterminate => {
                self.stats.indeterminate += 1;
                self.recorder.record(Operation {
                    client: self.id,
                    key: key.to_vec(),
                    invoke_us,
                    complete_us: None,
                    op,
                    result: Outcome::Unknown,
                });
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

const KEYS: [&[u8]; 3] = [b"k0", b"k1", b"k2"];
const COUNTER: &[u8] = b"ctr";

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

// ---------------------------------------------------------------- nemesis

fn nemesis(cluster: &Mutex<Cluster>, rng: &mut StdRng, duration: Duration) -> Vec<String> {
    let mut actions = Vec::new();
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < duration {
        thread::sleep(Duration::from_millis(rng.random_range(800..1500)));
        let t = start.elapsed().as_secs_f64();
        match round % 3 {
            0 => {
                let victim = rng.random_range(0..NODES);
                cluster.lock().unwrap().kill_node(victim);
                actions.push(format!("{t:.1}s kill -9 node {victim}"));
                thread::sleep(Duration::from_millis(rng.random_range(500..2000)));
                cluster.lock().unwrap().start_node(victim);
                actions.push(format!(
                    "{:.1}s restart node {victim}",
                    start.elapsed().as_secs_f64()
                ));
            }
            1 => {
                let leader = cluster.lock().unwrap().leader();
                if let Some((leader, _)) = leader {
                    // Sometimes beyond the request timeout (5 s): the
                    // followers' forwards to it time out, and it wakes up to
                    // requests buffered on connections given up on.
                    cluster.lock().unwrap().pause_node(leader);
                    actions.push(format!("{t:.1}s SIGSTOP leader {leader}"));
                    thread::sleep(Duration::from_millis(rng.random_range(1000..6500)));
                    cluster.lock().unwrap().resume_node(leader);
                    actions.push(format!(
                        "{:.1}s SIGCONT node {leader}",
                        start.elapsed().as_secs_f64()
                    ));
                } else {
                    actions.push(format!("{t:.1}s (no leader to pause)"));
                }
            }
            _ => {
                let leader = cluster.lock().unwrap().leader();
                if let Some((leader, subs)) = leader {
                    let primary = subs.first().copied().filter(|&s| s != leader && s < NODES);
                    let mut c = cluster.lock().unwrap();
                    c.kill_node(leader);
                    if let Some(p) = primary {
                        c.kill_node(p);
                    }
                    drop(c);
                    actions.push(format!(
                        "{t:.1}s kill -9 leader {leader} and primary sub-leader {primary:?} (sub_leaders {subs:?})"
                    ));
                    thread::sleep(Duration::from_millis(rng.random_range(1000..2500)));
                    let mut c = cluster.lock().unwrap();
                    c.start_node(leader);
                    if let Some(p) = primary {
                        c.start_node(p);
                    }
                    actions.push(format!(
                        "{:.1}s restart nodes {leader}, {primary:?}",
                        start.elapsed().as_secs_f64()
                    ));
                } else {
                    actions.push(format!("{t:.1}s (no leader to kill)"));
                }
            }
        }
        round += 1;
    }
    actions
}

#[derive(Debug, Default)]
struct PartitionOutcome {
    /// Partitions applied.
    faults: usize,
    /// Times the majority elected a new leader while the old one was cut
    /// off: proof that the cuts cut.
    majority_elected: usize,
    /// From the cut to the majority's new leader, per isolation.
    failover_ms: Vec<u64>,
}

#[derive(Clone, Copy, Debug)]
enum Partition {
    /// The leader cut off from everyone, both ways.
    IsolateLeader,
    /// Two random nodes against the other three.
    SplitTwoThree,
    /// The primary sub-leader (or, without one, a follower) cut off.
    IsolatePrimary,
    /// The leader's messages to the others dropped; theirs still arrive.
    LeaderCannotSend,
    /// Two halves of two nodes that cannot talk, and one node that talks
    /// to both.
    Bridge,
}

/// Polls the nodes of `among` until one leads a term above `term_above`.
fn wait_new_leader(
    cluster: &Mutex<Cluster>,
    among: &[usize],
    term_above: u64,
    timeout: Duration,
) -> Option<usize> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        let addrs: Vec<(usize, SocketAddr)> = {
            let c = cluster.lock().unwrap();
            among.iter().map(|&i| (i, c.client_addr(i))).collect()
        };
        for (i, addr) in addrs {
            let Ok(info) = info(addr) else { continue };
            let term: u64 = info.get("term").and_then(|t| t.parse().ok()).unwrap_or(0);
            if info.get("role").map(String::as_str) == Some("leader") && term > term_above {
                return Some(i);
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Cuts links in the patterns of [`Partition`], holding each a few seconds
/// and healing it before the next: the leader isolation first (it proves
/// the cuts work), then all five in a seeded order, round after round.
fn partition_nemesis(
    cluster: &Mutex<Cluster>,
    firewall: &mut common::partition::Firewall,
    rng: &mut StdRng,
    duration: Duration,
    outcome: &mut PartitionOutcome,
) -> Vec<String> {
    use Partition::*;
    let peers: Vec<SocketAddr> = {
        let c = cluster.lock().unwrap();
        (0..NODES).map(|i| c.peer_addr(i)).collect()
    };
    let addrs = |ids: &[usize]| ids.iter().map(|&i| peers[i]).collect::<Vec<_>>();
    let mut all = [
        IsolateLeader,
        SplitTwoThree,
        IsolatePrimary,
        LeaderCannotSend,
        Bridge,
    ];
    all.shuffle(rng);
    let mut schedule = std::iter::once(IsolateLeader).chain(all.into_iter().cycle());
    let mut actions = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = start.elapsed().as_secs_f64();
        let Some((leader, term, subs)) = cluster.lock().unwrap().leader_in_term() else {
            actions.push(format!("{t:.1}s (no leader to partition around)"));
            thread::sleep(Duration::from_millis(500));
            continue;
        };
        let pattern = schedule.next().expect("endless schedule");
        let others: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
        let mut shuffled: Vec<usize> = (0..NODES).collect();
        shuffled.shuffle(rng);
        let what = match pattern {
            IsolateLeader => {
                firewall.split(&addrs(&[leader]), &addrs(&others));
                format!("isolate leader {leader} (term {term})")
            }
            SplitTwoThree => {
                let (minority, majority) = shuffled.split_at(2);
                firewall.split(&addrs(minority), &addrs(majority));
                format!("split {minority:?} | {majority:?} (leader {leader})")
            }
            IsolatePrimary => {
                let victim = subs
                    .first()
                    .copied()
                    .filter(|&s| s != leader && s < NODES)
                    .unwrap_or(others[rng.random_range(0..others.len())]);
                let rest: Vec<usize> = (0..NODES).filter(|&i| i != victim).collect();
                firewall.split(&addrs(&[victim]), &addrs(&rest));
                format!(
                    "isolate primary sub-leader {victim} (sub_leaders {subs:?}, leader {leader})"
                )
            }
            LeaderCannotSend => {
                for &o in &others {
                    firewall.cut(peers[leader], peers[o]);
                }
                format!("one-way: leader {leader} cannot send to {others:?}")
            }
            Bridge => {
                let (bridge, halves) = shuffled.split_first().expect("five nodes");
                let (left, right) = halves.split_at(2);
                firewall.split(&addrs(left), &addrs(right));
                format!("bridge {bridge} between {left:?} | {right:?} (leader {leader})")
            }
        };
        outcome.faults += 1;
        actions.push(format!("{t:.1}s {what}: {} drop rules", firewall.cuts()));
        let cut_at = Instant::now();
        if let IsolateLeader = pattern {
            match wait_new_leader(cluster, &others, term, Duration::from_secs(8)) {
                Some(new) => {
                    let ms = cut_at.elapsed().as_millis() as u64;
                    outcome.majority_elected += 1;
                    outcome.failover_ms.push(ms);
                    actions.push(format!("  majority elected node {new} after {ms} ms"));
                }
                None => actions.push("  no new leader in the majority within 8 s".into()),
            }
            // Let the deposed leader's clients hit it for a while,
            // sometimes beyond the server's request timeout (5 s), so that
            // it answers them with errors that must say the truth.
            thread::sleep(Duration::from_millis(rng.random_range(500..6000)));
        } else {
            thread::sleep(Duration::from_millis(rng.random_range(2000..4000)));
        }
        firewall.heal();
        actions.push(format!("{:.1}s heal", start.elapsed().as_secs_f64()));
        thread::sleep(Duration::from_millis(rng.random_range(1000..2000)));
    }
    firewall.heal();
    actions
}

/// Every node applies the same log: equal commit and applied indexes
/// under one leader and term, within `timeout`.
fn assert_converges(cluster: &Cluster, timeout: Duration) {
    let until = Instant::now() + timeout;
    let mut last = Vec::new();
    while Instant::now() < until {
        last = (0..NODES)
            .map(|i| {
                info(cluster.client_addr(i)).ok().map(|info| {
                    let get = |k: &str| info.get(k).cloned().unwrap_or_default();
                    (
                        get("term"),
                        get("leader_id"),
                        get("commit_index"),
                        get("applied_index"),
                    )
                })
            })
            .collect();
        let first = &last[0];
        let converged = first
            .as_ref()
            .is_some_and(|(_, leader, commit, applied)| leader != "-" && commit == applied)
            && last.iter().all(|v| v == first);
        if converged {
            eprintln!(
                "[jepsen] converged: (term, leader, commit, applied) = {first:?} on every node"
            );
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "nodes did not converge within {timeout:?}: (term, leader, commit, applied) per node {last:?}\n{}",
        cluster.log_tails(40)
    );
}

fn describe_failure(cluster: &Cluster, what: &str, history: &[Operation]) -> String {
    let mut by_key: BTreeMap<&[u8], usize> = BTreeMap::new();
    for op in history {
        *by_key.entry(op.key.as_slice()).or_default() += 1;
    }
    format!(
        "{what}\nhistory: {} operations, per key {:?}\n{}",
        history.len(),
        by_key
            .iter()
            .map(|(k, n)| (String::from_utf8_lossy(k).to_string(), *n))
            .collect::<Vec<_>>(),
        cluster.log_tails(40)
    )
}

fn check_or_panic(cluster: &Cluster, history: &[Operation]) {
    let started = Instant::now();
    let verdict = check(history);
    eprintln!(
        "[jepsen] checked {} operations in {:.2}s: {}",
        history.len(),
        started.elapsed().as_secs_f64(),
        if verdict.is_linearizable() {
            "linearizable"
        } else {
            "NOT linearizable"
        }
    );
    match verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(violation) => panic!(
            "{}",
            describe_failure(cluster, &format!("VIOLATION: {violation}"), history)
        ),
        Verdict::Unknown { key, steps } => panic!(
            "{}",
            describe_failure(
                cluster,
                &format!(
                    "inconclusive: the checker ran out of its {steps} steps on key {:?}",
                    String::from_utf8_lossy(&key)
                ),
                history
            )
        ),
    }
}

// ---------------------------------------------------------------- tests

const CLIENTS: u64 = 5;

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn seed_from_env() -> u64 {
    let seed: u64 = std::env::var("JEPSEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("[jepsen] seed {seed} (JEPSEN_SEED to replay the nemesis schedule)");
    seed
}

/// Starts a cluster, runs [`CLIENTS`] recording clients against it while
/// `nemesis` does its worst, heals every fault, lets the clients run on the
/// healed cluster, then checks the history. Returns the healed cluster.
fn run_workload(
    name: &str,
    seed: u64,
    nemesis: impl FnOnce(&Mutex<Cluster>, &mut StdRng) -> Vec<String>,
) -> Cluster {
    run_workload_with(name, seed, &[], nemesis)
}

/// `run_workload` on nodes started with `extra_args` too.
fn run_workload_with(
    name: &str,
    seed: u64,
    extra_args: &[&str],
    nemesis: impl FnOnce(&Mutex<Cluster>, &mut StdRng) -> Vec<String>,
) -> Cluster {
    let started = Instant::now();
    let cluster = Cluster::start_with(name, extra_args);
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    assert!(
        leader.is_some(),
        "no leader elected\n{}",
        cluster.log_tails(40)
    );
    let addrs = cluster.client_addrs();
    let cluster = Mutex::new(cluster);

    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let client = Client {
                id,
                addrs: addrs.clone(),
                conn: None,
                recorder: recorder.clone(),
                rng: StdRng::seed_from_u64(seed ^ (id + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                stats: Stats::default(),
            };
            let stop = stop.clone();
            thread::spawn(move || client_loop(client, stop))
        })
        .collect();

    thread::sleep(Duration::from_secs(1));
    let mut rng = StdRng::seed_from_u64(seed);
    let actions = nemesis(&cluster, &mut rng);
    cluster.lock().unwrap().heal();
    let healed = started.elapsed();
    let leader = cluster
        .lock()
        .unwrap()
        .wait_for_leader(Duration::from_secs(15));
    // Let the clients run against the healed cluster, then stop them; each
    // finishes its operation in flight (bounded by the client timeout).
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let mut total = Stats::default();
    for c in clients {
        total.add(c.join().expect("client thread"));
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
    let history = recorder.history();
    assert!(
        total.ok >= 100,
        "too few completed operations ({total:?}) to say anything\n{}",
        cluster.log_tails(40)
    );
    check_or_panic(&cluster, &history);
    eprintln!(
        "[jepsen] {name}: total {:.1}s",
        started.elapsed().as_secs_f64()
    );
    cluster
}

#[test]
fn linearizable_under_kills_pauses_and_leader_failover() {
    let _guard = cluster_lock();
    let seed = seed_from_env();
    let nemesis_for = env_secs("JEPSEN_NEMESIS_SECS", 25);
    run_workload("lin", seed, |cluster, rng| {
        nemesis(cluster, rng, nemesis_for)
    });
}

/// The same workload and faults with lease reads (docs/DESIGN.md 3.8):
/// leaders answer GETs locally while their lease holds; a killed or
/// paused leader's successor must not be elected while it still does.
#[test]
fn lease_reads_linearizable_under_kills_pauses_and_leader_failover() {
    let _guard = cluster_lock();
    let seed = seed_from_env();
    let nemesis_for = env_secs("JEPSEN_NEMESIS_SECS", 15);
    run_workload_with("lease", seed, &["--read-mode", "lease"], |cluster, rng| {
        nemesis(cluster, rng, nemesis_for)
    });
}

/// Partitions of the real network between real processes (nftables drop
/// rules between the nodes' own loopback addresses): the leader isolated,
/// a 2/3 split, the primary sub-leader isolated, a one-way cut of the
/// leader's outbound links, and a bridge node that sees both halves. The
/// history must be linearizable and, once healed, every node must apply
/// the same log. Skips, saying why, where nftables cannot be used (not
/// root, no `nft`); CI sets `SRAFT_REQUIRE_PARTITIONS` so it cannot skip
/// there.
#[test]
fn linearizable_under_network_partitions() {
    partitions_test("linearizable_under_network_partitions", "part", &[]);
}

/// The same partitions with lease reads (docs/DESIGN.md 3.8): an isolated
/// leader keeps answering GETs from its lease, which must end before the
/// majority elects its successor.
#[test]
fn lease_reads_linearizable_under_network_partitions() {
    partitions_test(
        "lease_reads_linearizable_under_network_partitions",
        "lease-part",
        &["--read-mode", "lease"],
    );
}

fn partitions_test(test: &str, name: &str, extra_args: &[&str]) {
    let _guard = cluster_lock();
    let Some(firewall) = common::partition::firewall_or_skip(test) else {
        return;
    };
    let table = firewall.table().to_string();
    let seed = seed_from_env();
    let nemesis_for = env_secs("JEPSEN_PARTITION_SECS", 20);
    let mut firewall = firewall;
    let mut outcome = PartitionOutcome::default();
    let cluster = run_workload_with(name, seed, extra_args, |cluster, rng| {
        partition_nemesis(cluster, &mut firewall, rng, nemesis_for, &mut outcome)
    });
    assert!(
        outcome.majority_elected > 0,
        "no isolated leader was ever replaced by the majority: do the cuts work? {outcome:?}\n{}",
        cluster.log_tails(40)
    );
    assert_converges(&cluster, Duration::from_secs(15));
    drop(firewall);
    assert!(
        !common::partition::Firewall::table_exists(&table),
        "nftables table {table} left behind"
    );
    eprintln!("[jepsen] partitions: {outcome:?}");
}

/// The checker, fed through the same recording types, rejects a stale read:
/// a GET that starts after a SET was acknowledged must not see the old value.
#[test]
fn checker_rejects_a_stale_read_after_an_acknowledged_write() {
    let recorder = Recorder::new();
    let op = |client, invoke_us, complete_us, op, result| Operation {
        client,
        key: b"k0".to_vec(),
        invoke_us,
        complete_us,
        op,
        result,
    };
    recorder.record(op(0, 0, Some(10), KvOp::Set(b"a".to_vec()), Outcome::Ok));
    recorder.record(op(1, 20, Some(30), KvOp::Set(b"b".to_vec()), Outcome::Ok));
    // An indeterminate write that could explain "a" only if it were "a".
    recorder.record(op(2, 5, None, KvOp::Set(b"c".to_vec()), Outcome::Unknown));
    let fresh = op(
        3,
        40,
        Some(50),
        KvOp::Get,
        Outcome::Value(Some(b"b".to_vec())),
    );
    let stale = op(
        4,
        60,
        Some(70),
        KvOp::Get,
        Outcome::Value(Some(b"a".to_vec())),
    );

    recorder.record(fresh);
    assert_eq!(check(&recorder.history()), Verdict::Linearizable);

    recorder.record(stale.clone());
    match check(&recorder.history()) {
        Verdict::NotLinearizable(v) => {
            assert_eq!(v.key, b"k0");
            assert_eq!(v.stuck, stale, "{v}");
        }
        other => panic!("stale read accepted: {other:?}"),
    }

    // The same read concurrent with the second SET is fine.
    let mut concurrent = recorder.history();
    concurrent.pop();
    concurrent.push(op(
        4,
        25,
        Some(70),
        KvOp::Get,
        Outcome::Value(Some(b"a".to_vec())),
    ));
    assert_eq!(check(&concurrent), Verdict::Linearizable);
}

/// Write with retries until acknowledged. Retrying SET of the same value is
/// harmless whatever the earlier attempts did.
fn set_acknowledged(
    conn: &mut Option<Conn>,
    addrs: &[SocketAddr],
    i: usize,
    key: &[u8],
    value: &[u8],
) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    while Instant::now() < until {
        if conn.is_none() {
            *conn = Conn::open(addrs[(i + attempt) % addrs.len()], CLIENT_TIMEOUT).ok();
        }
        attempt += 1;
        if let Some(c) = conn.as_mut() {
            match c.call(&[b"SET", key, value]) {
                Ok(Reply::Simple(s)) if s == "OK" => return,
                Ok(_) => {}
                Err(_) => *conn = None,
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("SET {} never acknowledged", String::from_utf8_lossy(key));
}

#[test]
fn acknowledged_writes_survive_kill_9_of_every_node() {
    let _guard = cluster_lock();
    let started = Instant::now();
    let mut cluster = Cluster::start("durable");
    assert!(
        cluster.wait_for_leader(Duration::from_secs(20)).is_some(),
        "no leader\n{}",
        cluster.log_tails(40)
    );
    let addrs = cluster.client_addrs();
    let recorder = Recorder::new();
    const KEYS_N: usize = 200;
    let mut conn = None;
    for i in 0..KEYS_N {
        let key = format!("durable-{i}").into_bytes();
        let value = format!("value-{i}").into_bytes();
        let invoke_us = recorder.now_us();
        set_acknowledged(&mut conn, &addrs, i, &key, &value);
        recorder.record(Operation {
            client: 0,
            key,
            invoke_us,
            complete_us: Some(recorder.now_us()),
            op: KvOp::Set(value),
            result: Outcome::Ok,
        });
    }
    drop(conn);
    eprintln!("[jepsen] {KEYS_N} writes acknowledged; kill -9 every node");
    cluster.kill_all();
    for i in 0..NODES {
        cluster.start_node(i);
    }
    assert!(
        cluster.wait_for_leader(Duration::from_secs(20)).is_some(),
        "no leader after restart\n{}",
        cluster.log_tails(40)
    );
    let mut conn: Option<Conn> = None;
    let mut missing = Vec::new();
    for i in 0..KEYS_N {
        let key = format!("durable-{i}").into_bytes();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < until, "GET durable-{i} never answered");
            if conn.is_none() {
                conn = Conn::open(addrs[i % NODES], CLIENT_TIMEOUT).ok();
            }
            let Some(c) = conn.as_mut() else {
                thread::sleep(Duration::from_millis(50));
                continue;
            };
            let invoke_us = recorder.now_us();
            match c.call(&[b"GET", &key]) {
                Ok(Reply::Bulk(value)) => {
                    if value.as_deref() != Some(format!("value-{i}").as_bytes()) {
                        missing.push((
                            i,
                            value
                                .as_ref()
                                .map(|v| String::from_utf8_lossy(v).to_string()),
                        ));
                    }
                    recorder.record(Operation {
                        client: 1,
                        key: key.clone(),
                        invoke_us,
                        complete_us: Some(recorder.now_us()),
                        op: KvOp::Get,
                        result: Outcome::Value(value),
                    });
                    break;
                }
                Ok(_) => thread::sleep(Duration::from_millis(50)),
                Err(_) => conn = None,
            }
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged writes lost or changed after kill -9 of every node: {missing:?}\n{}",
        cluster.log_tails(40)
    );
    check_or_panic(&cluster, &recorder.history());
    eprintln!(
        "[jepsen] durability: {KEYS_N} keys read back after kill -9 of all nodes in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A write whose forward to the leader failed may still commit later, so the
/// follower must not answer it with an error that claims "no effect".
/// Leader and one follower alive, the other three killed: the leader takes
/// the write, replicates it to the follower but cannot commit it; then the
/// leader is killed too, so the follower's forward breaks and it retries in
/// vain until its deadline. Restarting the three lets the follower, whose
/// log holds the write, win the election and commit it.
#[test]
fn a_write_answered_as_not_executed_never_takes_effect() {
    let _guard = cluster_lock();
    let mut cluster = Cluster::start("noeffect");
    let Some((leader, _)) = cluster.wait_for_leader(Duration::from_secs(20)) else {
        panic!("no leader\n{}", cluster.log_tails(40));
    };
    let follower = (leader + 1) % NODES;
    let others: Vec<usize> = (0..NODES)
        .filter(|&i| i != leader && i != follower)
        .collect();
    for &i in &others {
        cluster.kill_node(i);
    }
    let recorder = Recorder::new();
    let mut conn = Conn::open(cluster.client_addr(follower), CLIENT_TIMEOUT).expect("connect");
    let op = KvOp::Set(b"committed-later".to_vec());
    let invoke_us = recorder.now_us();
    let request = thread::spawn(move || conn.call(&[b"SET", b"probe", b"committed-later"]));
    thread::sleep(Duration::from_secs(1));
    cluster.kill_node(leader);
    let reply = request.join().expect("client thread");
    eprintln!(
        "[jepsen] SET through follower {follower} without a quorum, leader {leader} killed after 1 s: {reply:?}"
    );
    match classify(&op, reply) {
        Classified::Done(result) => recorder.record(Operation {
            client: 0,
            key: b"probe".to_vec(),
            invoke_us,
            complete_us: Some(recorder.now_us()),
            op,
            result,
        }),
        Classified::Failed => {}
        Classified::Indeterminate => recorder.record(Operation {
            client: 0,
            key: b"probe".to_vec(),
            invoke_us,
            complete_us: None,
            op,
            result: Outcome::Unknown,
        }),
    }
    for &i in &others {
        cluster.start_node(i);
    }
    assert!(
        cluster.wait_for_leader(Duration::from_secs(20)).is_some(),
        "no leader after restarting nodes {others:?}\n{}",
        cluster.log_tails(40)
    );
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < until, "GET probe never answered");
        let Ok(mut c) = Conn::open(cluster.client_addr(others[0]), CLIENT_TIMEOUT) else {
            thread::sleep(Duration::from_millis(100));
            continue;
        };
        let invoke_us = recorder.now_us();
        if let Ok(Reply::Bulk(value)) = c.call(&[b"GET", b"probe"]) {
            eprintln!("[jepsen] GET probe after the restart: {value:?}");
            recorder.record(Operation {
                client: 1,
                key: b"probe".to_vec(),
                invoke_us,
                complete_us: Some(recorder.now_us()),
                op: KvOp::Get,
                result: Outcome::Value(value),
            });
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    check_or_panic(&cluster, &recorder.history());
}

/// The partition tool itself: a rule cuts exactly the direction it names,
/// healing restores it, and the table is gone after the firewall is.
#[test]
fn a_cut_drops_one_direction_of_one_link_until_healed() {
    let Some(mut firewall) =
        common::partition::firewall_or_skip("a_cut_drops_one_direction_of_one_link_until_healed")
    else {
        return;
    };
    let table = firewall.table().to_string();
    let a = TcpListener::bind((node_ip(0), 0)).expect("bind a");
    let b = TcpListener::bind((node_ip(1), 0)).expect("bind b");
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // A connection from `from`'s address to `to`, as a node's sender opens it.
    let reaches = |from: SocketAddr, to: SocketAddr| {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket.bind(&SocketAddr::new(from.ip(), 0).into()).unwrap();
        socket
            .connect_timeout(&to.into(), Duration::from_millis(300))
            .is_ok()
    };
    let c_addr = SocketAddr::from((node_ip(2), 1));
    assert!(reaches(a_addr, b_addr) && reaches(b_addr, a_addr));
    firewall.cut(a_addr, b_addr);
    assert!(
        !reaches(a_addr, b_addr),
        "a -> b still connects after the cut"
    );
    assert!(reaches(b_addr, a_addr), "the cut also dropped b -> a");
    assert!(reaches(c_addr, b_addr), "the cut also dropped c -> b");
    firewall.heal();
    assert!(reaches(a_addr, b_addr), "a -> b still cut after healing");
    drop(firewall);
    assert!(
        !common::partition::Firewall::table_exists(&table),
        "table {table} left behind"
    );
}
