//! Failover on real processes (EXPERIMENTS.md section 4).
//!
//! Starts a local 5-node cluster of `sraft` processes on loopback, then per
//! trial: waits for a stable leader (same leader, term and sub-leaders for
//! at least a second), waits a random phase of 0-50 ms, kills (SIGKILL) or
//! freezes (SIGSTOP) the leader and measures on one monotonic clock from the
//! signal:
//!
//! - election: until a surviving node's INFO says `role:leader` in a higher
//!   term (every survivor is polled about every millisecond over a
//!   persistent connection);
//! - unavailability: a writer thread sends `SET` about every millisecond
//!   through a follower that survives (it forwards to the leader); the
//!   client-visible gap is the first ack after the fault (of a SET sent
//!   after the fault) minus the last ack before it.
//!
//! Then it heals (restart on the same data dir, or SIGCONT) and waits for the
//! healed node's applied index to reach the leader's.
//!
//! ```text
//! cargo run --release --bin failover-experiment -- --mode sraft --fault kill --trials 200 --out results/
//! failover-experiment --summarize results/      # one table from every CSV there
//! ```
//!
//! Modes: `sraft` (defaults), `seed` (S-Raft with seed 000's timings,
//! conf/seed-timings.toml), `original` (`--original-raft`, follower
//! timeouts 300-1000 ms), `paper` (original with 150-300 ms). `--zones
//! 0,0,1,1,2` puts the nodes in availability zones with the transport's
//! test-only per-peer delay (`SRAFT_TEST_DELAY_US_BY_PEER`; 0.1 ms within a
//! zone, 1.5 ms across unless `--same-zone-delay-us`/`--cross-zone-delay-us`
//! say otherwise). Linux only (signals). Only processes this program
//! started are signalled, by pid.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sraft::kv::resp::{RespLimits, Value};
use sraft::server::{Forwarder, parse_info};
use sraft::settings::test_delay::{ENV_DELAY_US_BY_PEER, ZoneLayout};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const NODES: usize = 5;
const PORT_MIN: u16 = 24000;
/// Peer ports stay below this, so client ports (peer + 1000) stay in
/// 25000-25999.
const PORT_MAX: u16 = 24999;
const CLIENT_OFFSET: u16 = 1000;
const SIGKILL: i32 = 9;
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;
/// A trial without a new leader or an ack this long after the fault fails.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(15);
const STABLE_FOR: Duration = Duration::from_millis(1000);

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

fn signal(pid: u32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid of a child this program spawned.
    if unsafe { kill(pid as i32, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Sraft,
    /// S-Raft with seed 000's timings: conf/seed-timings.toml, as shipped.
    Seed,
    Original,
    Paper,
}

/// The seed-timing row runs with the file users get, not a copy of it.
const SEED_TIMINGS_TOML: &str = include_str!("../../conf/seed-timings.toml");

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sraft => "sraft",
            Mode::Seed => "seed",
            Mode::Original => "original",
            Mode::Paper => "paper",
        }
    }
    fn parse(s: &str) -> Option<Mode> {
        [Mode::Sraft, Mode::Seed, Mode::Original, Mode::Paper]
            .into_iter()
            .find(|m| m.name() == s)
    }
    fn index(self) -> u16 {
        match self {
            Mode::Sraft => 0,
            Mode::Original => 1,
            Mode::Paper => 2,
            Mode::Seed => 3,
        }
    }
    fn is_sraft(self) -> bool {
        matches!(self, Mode::Sraft | Mode::Seed)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Kill,
    Stop,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Stop => "stop",
        }
    }
    fn parse(s: &str) -> Option<Fault> {
        [Fault::Kill, Fault::Stop]
            .into_iter()
            .find(|f| f.name() == s)
    }
}

struct Options {
    sraft: PathBuf,
    mode: Mode,
    fault: Fault,
    trials: usize,
    out: PathBuf,
    base_port: u16,
    seed: u64,
    keep: bool,
    /// Availability zones emulated with per-peer delays, if any.
    zones: Option<ZoneLayout>,
    /// `--soak SECONDS`: no fault; count the elections a healthy cluster
    /// starts under the writer's load and whatever else runs on the host.
    soak_secs: u64,
}

impl Options {
    /// The name of this run's files: mode, fault, and the layout.
    fn stem(&self) -> String {
        let zones = if self.zones.is_some() { "-zones" } else { "" };
        if self.soak_secs > 0 {
            return format!("soak-{}{zones}", self.mode.name());
        }
        format!("failover-{}-{}{zones}", self.mode.name(), self.fault.name())
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: failover-experiment --mode sraft|seed|original|paper --fault kill|stop [--trials N] \
         [--out DIR] [--sraft PATH] [--base-port P (24000-24995)] [--seed S] [--keep] \
         [--zones 0,0,1,1,2 [--same-zone-delay-us 100] [--cross-zone-delay-us 1500]]\n\
         \x20      failover-experiment --mode M --soak SECONDS [--out DIR] [--zones ...]   (no fault: count elections)\n\
         \x20      failover-experiment --summarize DIR"
    );
    std::process::exit(2)
}

fn parse_options(args: Vec<String>) -> Options {
    let mut it = args.into_iter();
    let (mut mode, mut fault) = (None, None);
    let mut o = Options {
        sraft: PathBuf::from("target/release/sraft"),
        mode: Mode::Sraft,
        fault: Fault::Kill,
        trials: 200,
        out: PathBuf::from("results"),
        base_port: 0,
        seed: 0,
        keep: false,
        zones: None,
        soak_secs: 0,
    };
    let mut seed = None;
    let mut layout = ZoneLayout::three_zones();
    let mut zoned = false;
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--sraft" => o.sraft = PathBuf::from(value()),
            "--mode" => mode = Some(Mode::parse(&value()).unwrap_or_else(|| usage())),
            "--fault" => fault = Some(Fault::parse(&value()).unwrap_or_else(|| usage())),
            "--trials" => o.trials = value().parse().unwrap_or_else(|_| usage()),
            "--out" => o.out = PathBuf::from(value()),
            "--base-port" => o.base_port = value().parse().unwrap_or_else(|_| usage()),
            "--seed" => seed = Some(value().parse().unwrap_or_else(|_| usage())),
            "--keep" => o.keep = true,
            "--soak" => {
                o.soak_secs = value().parse().unwrap_or_else(|_| usage());
                fault = fault.or(Some(Fault::Kill));
            }
            "--zones" => {
                layout.zones = ZoneLayout::parse_zones(&value()).unwrap_or_else(|e| {
                    eprintln!("--zones: {e}");
                    usage()
                });
                zoned = true;
            }
            "--same-zone-delay-us" => {
                layout.same_zone_delay_us = value().parse().unwrap_or_else(|_| usage())
            }
            "--cross-zone-delay-us" => {
                layout.cross_zone_delay_us = value().parse().unwrap_or_else(|_| usage())
            }
            "--summarize" => {
                summarize_dir(Path::new(&value()));
                std::process::exit(0)
            }
            _ => usage(),
        }
    }
    o.mode = mode.unwrap_or_else(|| usage());
    o.fault = fault.unwrap_or_else(|| usage());
    if zoned {
        if layout.zones.len() != NODES {
            eprintln!("--zones needs one zone per node ({NODES})");
            std::process::exit(2);
        }
        o.zones = Some(layout);
    }
    if o.base_port == 0 {
        // One block of ports per combination, so that sequential runs do
        // not meet each other's lingering sockets.
        let f = if o.fault == Fault::Kill { 0 } else { 50 };
        let z = if o.zones.is_some() { 10 } else { 0 };
        // A soak may run next to the trials of its mode.
        let soak = if o.soak_secs > 0 { 20 } else { 0 };
        o.base_port = PORT_MIN + o.mode.index() * 100 + f + z + soak;
    }
    if o.base_port < PORT_MIN || o.base_port + NODES as u16 - 1 > PORT_MAX {
        eprintln!("--base-port must keep peer ports in {PORT_MIN}-{PORT_MAX}");
        std::process::exit(2);
    }
    o.seed = seed.unwrap_or(o.base_port as u64 * 7919 + o.trials as u64);
    o
}

// ---------------------------------------------------------------- cluster

struct Node {
    id: usize,
    child: Option<Child>,
    stopped: bool,
}

struct Cluster {
    sraft: PathBuf,
    args: Vec<Vec<String>>,
    /// Per node: the test-only delay row of its zone layout, if any.
    envs: Vec<Option<(&'static str, String)>>,
    logs: Vec<PathBuf>,
    nodes: Vec<Node>,
    data_root: PathBuf,
    keep: bool,
}

impl Cluster {
    fn start(o: &Options, logs_dir: &Path) -> std::io::Result<Cluster> {
        for i in 0..NODES as u16 {
            for port in [o.base_port + i, o.base_port + i + CLIENT_OFFSET] {
                TcpListener::bind(("127.0.0.1", port)).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("port {port} is not free: {e}"))
                })?;
            }
        }
        let data_root = std::env::temp_dir().join(format!(
            "sraft-failover-{}-{}-{}",
            o.mode.name(),
            o.fault.name(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&data_root);
        fs::create_dir_all(&data_root)?;
        fs::create_dir_all(logs_dir)?;
        let peers: Vec<String> = (0..NODES as u16)
            .map(|i| format!("127.0.0.1:{}", o.base_port + i))
            .collect();
        let config = match o.mode {
            Mode::Paper => {
                let path = data_root.join("paper.toml");
                fs::write(
                    &path,
                    "# Raft paper timeouts (original Raft, 150-300 ms)\n[raft]\nenable_subleader = false\n\
                     follower_timeout_ms_min = 150\nfollower_timeout_ms_max = 300\n",
                )?;
                Some(path)
            }
            // Its peers, data dir, cluster id and metrics file are
            // overridden by the flags below (flags come first, DESIGN.md
            // 4.1); its [raft] table is what this row measures.
            Mode::Seed => {
                let path = data_root.join("seed-timings.toml");
                fs::write(&path, SEED_TIMINGS_TOML)?;
                Some(path)
            }
            Mode::Sraft | Mode::Original => None,
        };
        let cluster_id = format!("failover-{}", std::process::id());
        let mut args = Vec::new();
        let mut logs = Vec::new();
        for id in 0..NODES {
            let dir = data_root.join(format!("node-{id}"));
            fs::create_dir_all(&dir)?;
            let mut a = vec![
                "--node-id".to_string(),
                id.to_string(),
                "--peers".into(),
                peers.join(","),
                "--data-dir".into(),
                dir.display().to_string(),
                "--cluster-id".into(),
                cluster_id.clone(),
                "--metrics-file".into(),
                dir.join("metrics.jsonl").display().to_string(),
            ];
            if !o.mode.is_sraft() {
                a.push("--original-raft".into());
            }
            if let Some(c) = &config {
                a.push("--config".into());
                a.push(c.display().to_string());
            }
            args.push(a);
            let log = logs_dir.join(format!("node-{id}.log"));
            let _ = fs::remove_file(&log);
            logs.push(log);
        }
        let envs = (0..NODES)
            .map(|id| {
                o.zones.as_ref().map(|z| {
                    (
                        ENV_DELAY_US_BY_PEER,
                        z.env_value(sraft::core::NodeId(id as u64)),
                    )
                })
            })
            .collect();
        let mut cluster = Cluster {
            sraft: o.sraft.clone(),
            args,
            envs,
            logs,
            nodes: (0..NODES)
                .map(|id| Node {
                    id,
                    child: None,
                    stopped: false,
                })
                .collect(),
            data_root,
            keep: o.keep,
        };
        for id in 0..NODES {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, id: usize) -> std::io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.logs[id])?;
        let mut command = Command::new(&self.sraft);
        if let Some((name, value)) = &self.envs[id] {
            command.env(name, value);
        }
        let child = command
            .args(&self.args[id])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.nodes[id].child = Some(child);
        self.nodes[id].stopped = false;
        Ok(())
    }

    fn pid(&self, id: usize) -> u32 {
        self.nodes[id].child.as_ref().expect("node is running").id()
    }

    /// The fault. Returns the instant just before the signal was sent.
    fn inject(&mut self, id: usize, fault: Fault) -> Instant {
        let pid = self.pid(id);
        let sig = if fault == Fault::Kill {
            SIGKILL
        } else {
            SIGSTOP
        };
        let at = Instant::now();
        signal(pid, sig).expect("signal the leader");
        self.nodes[id].stopped = fault == Fault::Stop;
        at
    }

    /// After a kill: collect the dead process.
    fn reap(&mut self, id: usize) {
        if let Some(mut child) = self.nodes[id].child.take() {
            let _ = child.wait();
        }
    }

    fn heal(&mut self, id: usize, fault: Fault) -> std::io::Result<()> {
        match fault {
            Fault::Kill => self.spawn(id),
            Fault::Stop => {
                signal(self.pid(id), SIGCONT)?;
                self.nodes[id].stopped = false;
                Ok(())
            }
        }
    }

    /// A node that exited on its own is a finding: report it.
    fn check_alive(&mut self) -> Result<(), String> {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("node {} exited by itself: {status}", node.id));
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = signal(child.id(), SIGKILL);
                let _ = child.wait();
            }
        }
        if !self.keep {
            let _ = fs::remove_dir_all(&self.data_root);
        }
    }
}

// ---------------------------------------------------------------- probes

#[derive(Clone, Default)]
struct View {
    info: Option<BTreeMap<String, String>>,
    at: Option<Instant>,
}

impl View {
    fn get(&self, k: &str) -> Option<&str> {
        self.info.as_ref()?.get(k).map(|s| s.as_str())
    }
    fn num(&self, k: &str) -> Option<u64> {
        self.get(k)?.parse().ok()
    }
}

struct Watch {
    fault_at: Instant,
    victim: usize,
    old_term: u64,
    found: Option<(Instant, usize, u64)>,
}

struct Shared {
    views: Mutex<Vec<View>>,
    /// Pollers skip these nodes (the faulted one).
    paused: Vec<AtomicBool>,
    watch: Mutex<Option<Watch>>,
    stop: AtomicBool,
    /// The node the writer sends through.
    target: AtomicUsize,
    /// (sent, acked) of every acknowledged SET since the last clear.
    acks: Mutex<Vec<(Instant, Instant)>>,
    /// The target and send time of the last acknowledged SET.
    last_ack: Mutex<Option<(usize, Instant)>>,
    write_errors: AtomicUsize,
}

fn client_addr(base: u16, id: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], base + id as u16 + CLIENT_OFFSET))
}

fn poller(shared: Arc<Shared>, base: u16, id: usize) {
    let addr = client_addr(base, id);
    let mut fwd = Forwarder::default();
    let info = vec![b"INFO".to_vec()];
    let limits = RespLimits::default();
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.paused[id].load(Ordering::SeqCst) {
            shared.views.lock()[id] = View::default();
            fwd = Forwarder::default();
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        match fwd.call(addr, &info, Duration::from_millis(300), &limits) {
            Ok(Value::Bulk(text)) => {
                let now = Instant::now();
                let map = parse_info(&String::from_utf8_lossy(&text));
                if let Some(w) = shared.watch.lock().as_mut() {
                    let term: u64 = map.get("term").and_then(|t| t.parse().ok()).unwrap_or(0);
                    if id != w.victim
                        && now > w.fault_at
                        && map.get("role").map(|s| s.as_str()) == Some("leader")
                        && term > w.old_term
                        && w.found.is_none_or(|(t, _, _)| now < t)
                    {
                        w.found = Some((now, id, term));
                    }
                }
                shared.views.lock()[id] = View {
                    info: Some(map),
                    at: Some(now),
                };
            }
            _ => {
                shared.views.lock()[id] = View::default();
                thread::sleep(Duration::from_millis(5));
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
}

fn writer(shared: Arc<Shared>, base: u16) {
    let mut fwd = Forwarder::default();
    let limits = RespLimits::default();
    let mut n: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let target = shared.target.load(Ordering::SeqCst);
        n += 1;
        let args = vec![
            b"SET".to_vec(),
            b"failover".to_vec(),
            n.to_string().into_bytes(),
        ];
        let sent = Instant::now();
        match fwd.call(
            client_addr(base, target),
            &args,
            Duration::from_secs(30),
            &limits,
        ) {
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

// ---------------------------------------------------------------- trials

struct Trial {
    trial: usize,
    phase_ms: f64,
    old_leader: usize,
    old_term: u64,
    sub_leaders: Vec<usize>,
    subleader_changes: usize,
    writer_target: usize,
    new_leader: Option<usize>,
    new_term: Option<u64>,
    election_ms: Option<f64>,
    last_ack_before_ms: Option<f64>,
    first_ack_after_ms: Option<f64>,
    first_any_ack_after_ms: Option<f64>,
    unavailable_ms: Option<f64>,
    write_errors: usize,
    catch_up_ms: f64,
    load1: f64,
}

impl Trial {
    const HEADER: &str = "trial,mode,fault,phase_ms,old_leader,old_term,sub_leaders,subleader_changes_1s,writer_target,\
        new_leader,new_term,election_ms,won_by_primary,won_by_subleader,last_ack_before_ms,\
        first_ack_after_ms,first_any_ack_after_ms,unavailable_ms,write_errors,catch_up_ms,load1";

    fn won_by_primary(&self) -> bool {
        self.new_leader.is_some() && self.sub_leaders.first().copied() == self.new_leader
    }
    fn won_by_subleader(&self) -> bool {
        self.new_leader
            .is_some_and(|n| self.sub_leaders.contains(&n))
    }

    fn csv(&self, mode: Mode, fault: Fault) -> String {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
        let u = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
        format!(
            "{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.2}",
            self.trial,
            mode.name(),
            fault.name(),
            self.phase_ms,
            self.old_leader,
            self.old_term,
            self.sub_leaders
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            self.subleader_changes,
            self.writer_target,
            u(self.new_leader.map(|x| x as u64)),
            u(self.new_term),
            f(self.election_ms),
            self.won_by_primary() as u8,
            self.won_by_subleader() as u8,
            f(self.last_ack_before_ms),
            f(self.first_ack_after_ms),
            f(self.first_any_ack_after_ms),
            f(self.unavailable_ms),
            self.write_errors,
            self.catch_up_ms,
            self.load1,
        )
    }
}

fn load1() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn ms_between(later: Instant, earlier: Instant) -> f64 {
    later.duration_since(earlier).as_secs_f64() * 1000.0
}

/// Signed: `t - origin` in milliseconds.
fn ms_from(origin: Instant, t: Instant) -> f64 {
    if t >= origin {
        ms_between(t, origin)
    } else {
        -ms_between(origin, t)
    }
}

fn parse_ids(s: &str) -> Vec<usize> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

/// A leader that every node agrees on, in the same term, for STABLE_FOR;
/// in S-Raft mode with sub-leaders named throughout. Which followers hold
/// the ranks may change meanwhile (the leader re-ranks them, see
/// EXPERIMENTS.md 4): the last sub-leader list and the number of changes
/// seen during the window are returned.
fn wait_stable(
    shared: &Shared,
    cluster: &mut Cluster,
    need_subleaders: bool,
) -> Result<(usize, u64, Vec<usize>, usize), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut since: Option<(Instant, usize, u64, Vec<usize>)> = None;
    let mut changes = 0;
    while Instant::now() < deadline {
        cluster.check_alive()?;
        let views = shared.views.lock().clone();
        let now = Instant::now();
        let fresh = views.iter().all(|v| {
            v.info.is_some()
                && v.at
                    .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        });
        let mut current = None;
        if fresh {
            let leaders: Vec<usize> = (0..NODES)
                .filter(|&i| views[i].get("role") == Some("leader"))
                .collect();
            if let [l] = leaders[..] {
                let term = views[l].num("term").unwrap_or(0);
                let subs = parse_ids(views[l].get("sub_leaders").unwrap_or(""));
                let agree = views.iter().all(|v| {
                    v.num("term") == Some(term)
                        && v.get("leader_id") == Some(l.to_string().as_str())
                });
                if agree && (!need_subleaders || !subs.is_empty()) {
                    current = Some((l, term, subs));
                }
            }
        }
        match (current, &mut since) {
            (Some((l, t, s)), Some((start, l0, t0, s0))) if l == *l0 && t == *t0 => {
                if s != *s0 {
                    changes += 1;
                    *s0 = s.clone();
                }
                if now.duration_since(*start) >= STABLE_FOR {
                    return Ok((l, t, s, changes));
                }
            }
            (Some((l, t, s)), _) => {
                since = Some((now, l, t, s));
                changes = 0;
            }
            (None, _) => since = None,
        }
        thread::sleep(Duration::from_millis(5));
    }
    Err("no stable leader within 120 s".into())
}

fn run_trial(
    trial: usize,
    o: &Options,
    shared: &Shared,
    cluster: &mut Cluster,
    rng: &mut StdRng,
) -> Result<Trial, String> {
    let need_subs = o.mode.is_sraft();
    let (leader, term, subs, phase_ms, subleader_changes) = loop {
        let (leader, term, subs, changes) = wait_stable(shared, cluster, need_subs)?;
        // The writer goes through a follower that survives and, if possible,
        // is not a sub-leader, so that writes are forwarded.
        let candidates: Vec<usize> = (0..NODES)
            .filter(|&i| i != leader && !subs.contains(&i))
            .collect();
        let target = candidates[rng.random_range(0..candidates.len())];
        shared.target.store(target, Ordering::SeqCst);
        // The writer must have moved to its new target: a SET still in
        // flight to the old one (possibly the leader itself, which would
        // hang with it under SIGSTOP) would measure the client, not sraft.
        let switched_at = Instant::now();
        let switch_deadline = switched_at + Duration::from_secs(10);
        while !shared
            .last_ack
            .lock()
            .is_some_and(|(t, sent)| t == target && sent >= switched_at)
        {
            if Instant::now() > switch_deadline {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let phase = Duration::from_micros(rng.random_range(0..=50_000));
        // Let the writer settle on its target, then the random phase.
        thread::sleep(Duration::from_millis(20) + phase);
        let views = shared.views.lock().clone();
        if views[leader].get("role") == Some("leader") && views[leader].num("term") == Some(term) {
            let subs_now = parse_ids(views[leader].get("sub_leaders").unwrap_or(""));
            let subs = if subs_now.is_empty() { subs } else { subs_now };
            break (leader, term, subs, phase.as_secs_f64() * 1000.0, changes);
        }
        eprintln!("trial {trial}: leadership moved while arming; waiting again");
    };
    let target = shared.target.load(Ordering::SeqCst);
    shared.paused[leader].store(true, Ordering::SeqCst);
    let errors_before = shared.write_errors.load(Ordering::Relaxed);
    let load = load1();
    let fault_at = {
        let mut w = shared.watch.lock();
        let fault_at = cluster.inject(leader, o.fault);
        *w = Some(Watch {
            fault_at,
            victim: leader,
            old_term: term,
            found: None,
        });
        fault_at
    };
    if o.fault == Fault::Kill {
        cluster.reap(leader);
    }
    // (a) election, (b) first ack after the fault.
    let deadline = fault_at + TRIAL_TIMEOUT;
    let (mut found, mut first_ack) = (None, None);
    while Instant::now() < deadline {
        if found.is_none() {
            found = shared.watch.lock().as_ref().and_then(|w| w.found);
        }
        if first_ack.is_none() {
            first_ack = shared
                .acks
                .lock()
                .iter()
                .filter(|(sent, _)| *sent >= fault_at)
                .map(|(_, acked)| *acked)
                .min();
        }
        if found.is_some() && first_ack.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    // Give a racing poller a moment to report an earlier sighting.
    thread::sleep(Duration::from_millis(5));
    let found = shared.watch.lock().take().and_then(|w| w.found).or(found);
    let (last_before, first_any_after) = {
        let acks = shared.acks.lock();
        let last = acks.iter().map(|(_, a)| *a).filter(|a| *a < fault_at).max();
        let any = acks
            .iter()
            .map(|(_, a)| *a)
            .filter(|a| *a >= fault_at)
            .min();
        (last, any)
    };
    let write_errors = shared.write_errors.load(Ordering::Relaxed) - errors_before;

    // Heal and wait for the healed node to catch up.
    let heal_at = Instant::now();
    cluster
        .heal(leader, o.fault)
        .map_err(|e| format!("heal node {leader}: {e}"))?;
    shared.paused[leader].store(false, Ordering::SeqCst);
    let catch_deadline = Instant::now() + Duration::from_secs(60);
    let mut goal: Option<u64> = None;
    loop {
        if Instant::now() > catch_deadline {
            return Err(format!(
                "trial {trial}: node {leader} did not catch up within 60 s"
            ));
        }
        cluster.check_alive()?;
        let views = shared.views.lock().clone();
        if goal.is_none()
            && let Some(l) =
                (0..NODES).find(|&i| i != leader && views[i].get("role") == Some("leader"))
        {
            goal = views[l].num("applied_index");
        }
        if let (Some(g), Some(a)) = (goal, views[leader].num("applied_index"))
            && a >= g
        {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    let catch_up_ms = ms_between(Instant::now(), heal_at);
    shared.acks.lock().retain(|(_, a)| *a >= fault_at);

    let election_ms = found.map(|(t, _, _)| ms_between(t, fault_at));
    let unavailable_ms = match (first_ack, last_before) {
        (Some(f), Some(l)) => Some(ms_between(f, l)),
        _ => None,
    };
    Ok(Trial {
        trial,
        phase_ms,
        old_leader: leader,
        old_term: term,
        sub_leaders: subs,
        subleader_changes,
        writer_target: target,
        new_leader: found.map(|(_, n, _)| n),
        new_term: found.map(|(_, _, t)| t),
        election_ms,
        last_ack_before_ms: last_before.map(|t| ms_from(fault_at, t)),
        first_ack_after_ms: first_ack.map(|t| ms_from(fault_at, t)),
        first_any_ack_after_ms: first_any_after.map(|t| ms_from(fault_at, t)),
        unavailable_ms,
        write_errors,
        catch_up_ms,
        load1: load,
    })
}

// ---------------------------------------------------------------- soak

/// (pre-vote rounds, vote rounds) in node `id`'s metrics file so far.
fn elections_in_metrics(cluster: &Cluster, id: usize) -> (usize, usize) {
    let path = cluster
        .data_root
        .join(format!("node-{id}"))
        .join("metrics.jsonl");
    let text = fs::read_to_string(path).unwrap_or_default();
    let started = text
        .lines()
        .filter(|l| l.contains("\"event\":\"election_started\""));
    started.fold((0, 0), |(pre, vote), l| {
        if l.contains("\"pre_vote\":true") {
            (pre + 1, vote)
        } else {
            (pre, vote + 1)
        }
    })
}

/// No fault for `soak_secs` after the cluster settled, with the writer
/// running: every election started meanwhile is spurious (issue 13: "spurious
/// elections per hour under a stated background load").
fn soak(o: &Options, shared: &Shared, cluster: &mut Cluster) -> Result<String, String> {
    let (_, term, _, _) = wait_stable(shared, cluster, o.mode.is_sraft())?;
    let before: Vec<(usize, usize)> = (0..NODES)
        .map(|i| elections_in_metrics(cluster, i))
        .collect();
    let (load_before, started) = (
        fs::read_to_string("/proc/loadavg").unwrap_or_default(),
        Instant::now(),
    );
    let acks_before = shared.acks.lock().len();
    while started.elapsed() < Duration::from_secs(o.soak_secs) {
        cluster.check_alive()?;
        thread::sleep(Duration::from_millis(200));
    }
    let secs = started.elapsed().as_secs_f64();
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let after: Vec<(usize, usize)> = (0..NODES)
        .map(|i| elections_in_metrics(cluster, i))
        .collect();
    let pre: usize = (0..NODES).map(|i| after[i].0 - before[i].0).sum();
    let votes: usize = (0..NODES).map(|i| after[i].1 - before[i].1).sum();
    let term_now = shared
        .views
        .lock()
        .iter()
        .filter_map(|v| v.num("term"))
        .max()
        .unwrap_or(term);
    let acks = shared.acks.lock().len() - acks_before;
    let per_hour = |n: usize| n as f64 * 3600.0 / secs;
    Ok(format!(
        "| {} | {:.0} | {pre} ({:.0}/h) | {votes} ({:.0}/h) | {} | {acks} | {} | {} |\n",
        o.stem(),
        secs,
        per_hour(pre),
        per_hour(votes),
        term_now - term,
        load_before.trim(),
        load_after.trim()
    ))
}

// ---------------------------------------------------------------- report

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

struct Row {
    mode: String,
    fault: String,
    trials: usize,
    election: Vec<f64>,
    unavailable: Vec<f64>,
    /// Fault to the first acknowledged SET sent after it (issue 13's
    /// measure).
    first_ack: Vec<f64>,
    by_primary: usize,
    by_sub: usize,
    any_subs: bool,
}

fn table_header() -> String {
    "| mode | fault | trials | election p50 | p90 | p99 | max | unavailability p50 | p90 | p99 | max | first ack after the fault p50 | p99 | won by primary | won by a sub-leader |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        .to_string()
}

fn table_row(r: &Row) -> String {
    let mut e = r.election.clone();
    let mut u = r.unavailable.clone();
    let mut a = r.first_ack.clone();
    e.sort_by(f64::total_cmp);
    u.sort_by(f64::total_cmp);
    a.sort_by(f64::total_cmp);
    let stats = |v: &[f64], n: usize| {
        let missing = n - v.len();
        let mut s = format!(
            "{:.1} | {:.1} | {:.1} | {:.1}",
            percentile(v, 50.0),
            percentile(v, 90.0),
            percentile(v, 99.0),
            v.last().copied().unwrap_or(f64::NAN)
        );
        if missing > 0 {
            let _ = write!(s, " ({missing} timed out)");
        }
        s
    };
    let won = |k: usize| {
        if r.any_subs {
            k.to_string()
        } else {
            "- (none named)".into()
        }
    };
    format!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} |\n",
        r.mode,
        r.fault,
        r.trials,
        stats(&e, r.trials),
        stats(&u, r.trials),
        percentile(&a, 50.0),
        percentile(&a, 99.0),
        won(r.by_primary),
        won(r.by_sub)
    )
}

fn rows_from_csv(path: &Path) -> Option<Row> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let ca = col("first_ack_after_ms")?;
    let (cm, cf, ce, cu, cp, cs, csub) = (
        col("mode")?,
        col("fault")?,
        col("election_ms")?,
        col("unavailable_ms")?,
        col("won_by_primary")?,
        col("won_by_subleader")?,
        col("sub_leaders")?,
    );
    let mut row = Row {
        mode: String::new(),
        fault: String::new(),
        trials: 0,
        election: vec![],
        unavailable: vec![],
        first_ack: vec![],
        by_primary: 0,
        by_sub: 0,
        any_subs: false,
    };
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != header.len() {
            continue;
        }
        row.mode = f[cm].to_string();
        row.fault = f[cf].to_string();
        row.trials += 1;
        if let Ok(x) = f[ce].parse() {
            row.election.push(x);
        }
        if let Ok(x) = f[cu].parse() {
            row.unavailable.push(x);
        }
        if let Ok(x) = f[ca].parse() {
            row.first_ack.push(x);
        }
        row.by_primary += (f[cp] == "1") as usize;
        row.by_sub += (f[cs] == "1") as usize;
        row.any_subs |= !f[csub].is_empty();
    }
    Some(row)
}

fn summarize_dir(dir: &Path) {
    let mut out = table_header();
    for zones in ["", "-zones"] {
        for mode in ["sraft", "seed", "original", "paper"] {
            for fault in ["kill", "stop"] {
                let path = dir.join(format!("failover-{mode}-{fault}{zones}.csv"));
                if let Some(mut r) = rows_from_csv(&path) {
                    r.mode += zones;
                    out.push_str(&table_row(&r));
                }
            }
        }
    }
    print!("{out}");
}

fn main() {
    let o = parse_options(std::env::args().skip(1).collect());
    if !o.sraft.exists() {
        eprintln!(
            "{} not found: build it with cargo build --release --bin sraft",
            o.sraft.display()
        );
        std::process::exit(2);
    }
    fs::create_dir_all(&o.out).expect("create --out");
    let stem = o.stem();
    let csv_path = o.out.join(format!("{stem}.csv"));
    let logs_dir = o.out.join(format!("logs-{stem}"));
    let what = if o.soak_secs > 0 {
        format!("{} s without faults", o.soak_secs)
    } else {
        format!("{} trials", o.trials)
    };
    eprintln!(
        "{stem}: {what}, peer ports {}-{}, seed {}, load {:.2}",
        o.base_port,
        o.base_port + NODES as u16 - 1,
        o.seed,
        load1()
    );
    let mut cluster = Cluster::start(&o, &logs_dir).unwrap_or_else(|e| {
        eprintln!("cannot start the cluster: {e}");
        std::process::exit(1)
    });
    let shared = Arc::new(Shared {
        views: Mutex::new(vec![View::default(); NODES]),
        paused: (0..NODES).map(|_| AtomicBool::new(false)).collect(),
        watch: Mutex::new(None),
        stop: AtomicBool::new(false),
        target: AtomicUsize::new(0),
        acks: Mutex::new(Vec::new()),
        last_ack: Mutex::new(None),
        write_errors: AtomicUsize::new(0),
    });
    let mut threads: Vec<JoinHandle<()>> = (0..NODES)
        .map(|id| {
            let s = shared.clone();
            let base = o.base_port;
            thread::spawn(move || poller(s, base, id))
        })
        .collect();
    {
        let s = shared.clone();
        let base = o.base_port;
        threads.push(thread::spawn(move || writer(s, base)));
    }
    if o.soak_secs > 0 {
        let code = match soak(&o, &shared, &mut cluster) {
            Ok(report) => {
                print!("{report}");
                let _ = fs::write(o.out.join(format!("{stem}.md")), &report);
                0
            }
            Err(e) => {
                eprintln!("soak failed: {e}");
                1
            }
        };
        shared.stop.store(true, Ordering::SeqCst);
        drop(cluster);
        for t in threads {
            let _ = t.join();
        }
        std::process::exit(code);
    }
    let mut csv = File::create(&csv_path).expect("create the CSV");
    writeln!(csv, "{}", Trial::HEADER).unwrap();
    let mut rng = StdRng::seed_from_u64(o.seed);
    let started = Instant::now();
    let mut row = Row {
        mode: o.mode.name().into(),
        fault: o.fault.name().into(),
        trials: 0,
        election: vec![],
        unavailable: vec![],
        first_ack: vec![],
        by_primary: 0,
        by_sub: 0,
        any_subs: false,
    };
    let mut failure = None;
    for trial in 0..o.trials {
        match run_trial(trial, &o, &shared, &mut cluster, &mut rng) {
            Ok(t) => {
                writeln!(csv, "{}", t.csv(o.mode, o.fault)).unwrap();
                csv.flush().unwrap();
                row.trials += 1;
                row.election.extend(t.election_ms);
                row.unavailable.extend(t.unavailable_ms);
                row.first_ack.extend(t.first_ack_after_ms);
                row.by_primary += t.won_by_primary() as usize;
                row.by_sub += t.won_by_subleader() as usize;
                row.any_subs |= !t.sub_leaders.is_empty();
                eprintln!(
                    "trial {trial}: leader {} term {} -> {:?} in {:?} ms; unavailable {:?} ms (load {:.2})",
                    t.old_leader,
                    t.old_term,
                    t.new_leader,
                    t.election_ms.map(|x| (x * 10.0).round() / 10.0),
                    t.unavailable_ms.map(|x| (x * 10.0).round() / 10.0),
                    t.load1
                );
            }
            Err(e) => {
                eprintln!("stopping: {e}");
                failure = Some(e);
                break;
            }
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    drop(cluster);
    for t in threads {
        let _ = t.join();
    }
    let mut table = table_header();
    table.push_str(&table_row(&row));
    print!("{table}");
    let _ = fs::write(o.out.join(format!("{stem}.md")), &table);
    eprintln!(
        "{} trials in {:.0} s, load {:.2}; CSV {}",
        row.trials,
        started.elapsed().as_secs_f64(),
        load1(),
        csv_path.display()
    );
    if let Some(e) = failure {
        eprintln!("run stopped early: {e}");
        std::process::exit(1);
    }
}
