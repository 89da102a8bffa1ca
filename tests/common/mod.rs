//! A harness for real-process cluster tests: `sraft` nodes as child
//! processes on loopback, each with its own data dir and log file in one
//! temporary directory. Every wait polls a condition against a deadline;
//! a failing test prints the tail of every node's log (from `Drop`).

#![allow(dead_code)] // Each test binary uses its own part of the harness.

pub mod partition;

use sraft::kv::resp::Value;
use sraft::server::parse_info;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_sraft");

/// This suite's port range (other suites on the machine use others; ports
/// above 32768 are the kernel's ephemeral range). Peer ports are taken from
/// the lower part so that client ports (peer + 1000) stay inside it.
const PORT_MIN: u16 = 20_000;
const PORT_MAX: u16 = 23_999;
const CLIENT_PORT_OFFSET: u16 = 1000;

/// How often the waits poll.
pub const POLL: Duration = Duration::from_millis(10);
/// Timeout of one INFO / probe request.
pub const INFO_TIMEOUT: Duration = Duration::from_millis(500);
/// Longer than the server's request timeout (5 s): a client call that
/// should be answered, not hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Ports handed to clusters of this process: a port found free is not
/// handed out twice before its node binds it.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Picks `n` consecutive peer ports whose client ports are free too, and
/// reserves all of them for this process.
pub fn reserve_ports(n: u16) -> Vec<u16> {
    let last_base = PORT_MAX - CLIENT_PORT_OFFSET - n + 1;
    for _ in 0..200 {
        let base = PORT_MIN + rand::random::<u16>() % (last_base - PORT_MIN + 1);
        let peers: Vec<u16> = (base..base + n).collect();
        let all: Vec<u16> = peers
            .iter()
            .flat_map(|p| [*p, p + CLIENT_PORT_OFFSET])
            .collect();
        let mut reserved = RESERVED_PORTS.lock().unwrap();
        if all.iter().any(|p| reserved.contains(p)) {
            continue;
        }
        if all.iter().all(|p| port_is_free(*p)) {
            reserved.extend(all);
            return peers;
        }
    }
    panic!("no {n} free peer/client port pairs in {PORT_MIN}-{PORT_MAX} after 200 tries");
}

/// Picks `n` single free ports (for metrics endpoints) and reserves them.
pub fn reserve_single_ports(n: usize) -> Vec<u16> {
    let mut picked = Vec::new();
    for _ in 0..200 * n {
        if picked.len() == n {
            break;
        }
        let port = PORT_MIN + rand::random::<u16>() % (PORT_MAX - PORT_MIN + 1);
        let mut reserved = RESERVED_PORTS.lock().unwrap();
        if !reserved.contains(&port) && port_is_free(port) {
            reserved.insert(port);
            picked.push(port);
        }
    }
    assert_eq!(
        picked.len(),
        n,
        "no {n} free ports in {PORT_MIN}-{PORT_MAX}"
    );
    picked
}

pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `condition` every [`POLL`] until it returns `Some` or `deadline`
/// passes.
pub fn poll_until<T>(deadline: Instant, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

pub fn deadline_in(duration: Duration) -> Instant {
    Instant::now() + duration
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// SIGSTOPped: alive but silent; not asked anything until continued.
    Stopped,
    /// Killed or exited.
    Down,
}

/// One node's view, from INFO.
#[derive(Clone, Debug)]
pub struct Info {
    pub fields: BTreeMap<String, String>,
}

impl Info {
    pub fn get(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("INFO has no {key}: {:?}", self.fields))
    }

    pub fn role(&self) -> &str {
        self.get("role")
    }

    pub fn term(&self) -> u64 {
        self.number("term")
    }

    pub fn leader_id(&self) -> Option<usize> {
        self.get("leader_id").parse().ok()
    }

    pub fn commit_index(&self) -> u64 {
        self.number("commit_index")
    }

    pub fn applied_index(&self) -> u64 {
        self.number("applied_index")
    }

    pub fn sub_leaders(&self) -> Vec<usize> {
        self.get("sub_leaders")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|e| panic!("sub_leaders {s:?}: {e}"))
            })
            .collect()
    }

    fn number(&self, key: &str) -> u64 {
        let text = self.get(key);
        text.parse()
            .unwrap_or_else(|e| panic!("INFO {key}:{text} is not a number: {e}"))
    }
}

/// Who leads, as every running node agreed at one poll.
#[derive(Clone, Debug)]
pub struct Leadership {
    pub leader: usize,
    pub term: u64,
    pub infos: BTreeMap<usize, Info>,
}

pub struct TestCluster {
    dir: TempDir,
    peer_ports: Vec<u16>,
    cluster_id: String,
    extra_args: Vec<String>,
    /// The client password the harness's calls give, if any.
    password: Option<String>,
    /// TLS for the harness's calls, if the nodes speak it.
    client_tls: Option<sraft::tls::ClientTls>,
    /// Flags of one node that replace the cluster's own (`set_flag`).
    node_flags: BTreeMap<usize, BTreeMap<String, String>>,
    /// One `--metrics-addr` port per node, or none.
    metrics_ports: Vec<u16>,
    /// One `--client-port` per node, unrelated to its peer port; empty:
    /// every node serves clients at peer port + `CLIENT_PORT_OFFSET`.
    client_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    states: Vec<NodeState>,
    /// Extra environment per node, applied at every (re)start.
    node_env: Vec<Vec<(String, String)>>,
    /// Nodes from this id on are spares: not in the static peer list,
    /// started with `--join` by `start_spare` (DESIGN.md 8).
    initial: usize,
}

pub struct TestClusterBuilder {
    nodes: usize,
    spares: usize,
    extra_args: Vec<String>,
    metrics: bool,
    cluster_secret: bool,
    client_password: bool,
    tls: bool,
    node_env: Vec<Vec<(String, String)>>,
    own_client_ports: bool,
}

impl TestClusterBuilder {
    /// `key=value` in node `i`'s environment from its first start on.
    pub fn env(mut self, i: usize, key: &str, value: &str) -> Self {
        self.node_env[i].push((key.to_string(), value.to_string()));
        self
    }

    /// Every node serves clients on a port of its own given by
    /// `--client-port`, not at peer port + offset: the other nodes must
    /// learn it from the node itself.
    pub fn own_client_ports(mut self) -> Self {
        self.own_client_ports = true;
        self
    }

    /// `n` more nodes with ids after the initial ones, not in the peer
    /// list: started with `--join` by `TestCluster::start_spare`.
    pub fn spares(mut self, n: usize) -> Self {
        self.spares = n;
        self.node_env.extend((0..n).map(|_| Vec::new()));
        self
    }

    /// Extra flags for every node (e.g. `--original-raft`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Every node serves `/metrics` on a port of its own (`metrics_addr`).
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// TLS on both ports: one CA, one certificate for 127.0.0.1 shared by
    /// every node (`TestCluster::tls_dir()`); the harness's calls speak TLS.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Every node asks clients for a password (AUTH); the harness's own
    /// calls give it. The file is `TestCluster::password_path()`.
    pub fn client_password(mut self) -> Self {
        self.client_password = true;
        self
    }

    /// Every node proves a shared secret in the peer handshake; the file
    /// is `TestCluster::secret_path()`.
    pub fn cluster_secret(mut self) -> Self {
        self.cluster_secret = true;
        self
    }

    pub fn start(self) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("sraft-cluster-")
            .tempdir()
            .expect("create a temp dir");
        let total = self.nodes + self.spares;
        let peer_ports = reserve_ports(total as u16);
        let mut cluster = TestCluster {
            dir,
            peer_ports,
            cluster_id: format!("itest-{:08x}", rand::random::<u32>()),
            extra_args: self.extra_args,
            node_flags: BTreeMap::new(),
            password: None,
            client_tls: None,
            metrics_ports: if self.metrics {
                reserve_single_ports(total)
            } else {
                Vec::new()
            },
            client_ports: if self.own_client_ports {
                reserve_single_ports(total)
            } else {
                Vec::new()
            },
            children: (0..total).map(|_| None).collect(),
            states: vec![NodeState::Down; total],
            node_env: self.node_env,
            initial: self.nodes,
        };
        if self.cluster_secret {
            let path = cluster.secret_path();
            write_private(&path, &format!("{:032x}\n", rand::random::<u128>()));
            cluster
                .extra_args
                .extend(["--cluster-secret-file".into(), path.display().to_string()]);
        }
        if self.tls {
            let dir = cluster.tls_dir();
            let files = make_certs(&dir, "cluster");
            cluster.extra_args.extend([
                "--tls-cert-file".into(),
                files.cert.display().to_string(),
                "--tls-key-file".into(),
                files.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                files.ca.display().to_string(),
            ]);
            cluster.client_tls = Some(sraft::tls::ClientTls::load(&files.ca).expect("CA loads"));
        }
        if self.client_password {
            let password = format!("pw-{:016x}", rand::random::<u64>());
            let path = cluster.password_path();
            write_private(&path, &format!("{password}\n"));
            cluster
                .extra_args
                .extend(["--client-password-file".into(), path.display().to_string()]);
            cluster.password = Some(password);
        }
        for i in 0..self.nodes {
            cluster.spawn(i);
        }
        cluster
    }
}

impl TestCluster {
    pub fn builder(nodes: usize) -> TestClusterBuilder {
        TestClusterBuilder {
            nodes,
            spares: 0,
            extra_args: Vec::new(),
            metrics: false,
            cluster_secret: false,
            client_password: false,
            tls: false,
            node_env: vec![Vec::new(); nodes],
            own_client_ports: false,
        }
    }

    /// Where `tls()` writes the CA and the node certificate.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// The client password file of `client_password()`.
    pub fn password_path(&self) -> PathBuf {
        self.dir.path().join("client.password")
    }

    /// The client password of `client_password()`, if set.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The cluster secret file of `cluster_secret()`.
    pub fn secret_path(&self) -> PathBuf {
        self.dir.path().join("cluster.secret")
    }

    /// Gives node `i` its own value of `flag` from its next start on,
    /// replacing the cluster's (a flag may be given once).
    pub fn set_flag(&mut self, i: usize, flag: &str, value: &str) {
        self.node_flags
            .entry(i)
            .or_default()
            .insert(flag.to_string(), value.to_string());
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        addr(self.peer_ports[i])
    }

    pub fn client_addr(&self, i: usize) -> SocketAddr {
        match self.client_ports.get(i) {
            Some(port) => addr(*port),
            None => addr(self.peer_ports[i] + CLIENT_PORT_OFFSET),
        }
    }

    /// Node `i`'s metrics endpoint (the builder's `metrics()`).
    pub fn metrics_addr(&self, i: usize) -> SocketAddr {
        addr(self.metrics_ports[i])
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}.log"))
    }

    pub fn peers_arg(&self) -> String {
        self.peer_ports[..self.initial]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The command line of node `i` (the same on every restart).
    pub fn args(&self, i: usize) -> Vec<String> {
        let mut args = vec!["--node-id".to_string(), i.to_string()];
        if i < self.initial {
            args.extend(["--peers".into(), self.peers_arg()]);
        } else {
            args.extend([
                "--join".into(),
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                self.peer_ports[i].to_string(),
            ]);
        }
        args.extend([
            "--data-dir".into(),
            self.data_dir(i).display().to_string(),
            "--cluster-id".into(),
            self.cluster_id.clone(),
        ]);
        if let Some(port) = self.metrics_ports.get(i) {
            args.push("--metrics-addr".into());
            args.push(addr(*port).to_string());
        }
        if let Some(port) = self.client_ports.get(i) {
            args.push("--client-port".into());
            args.push(port.to_string());
        }
        args.extend(self.extra_args.iter().cloned());
        if let Some(flags) = self.node_flags.get(&i) {
            for (flag, value) in flags {
                match args.iter().position(|a| a == flag) {
                    Some(at) => args[at + 1] = value.clone(),
                    None => args.extend([flag.clone(), value.clone()]),
                }
            }
        }
        args
    }

    fn spawn(&mut self, i: usize) {
        assert!(self.children[i].is_none(), "node {i} is already running");
        // Appends: the log of every incarnation stays in one file.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open the node log");
        let child = hermetic_command(BIN)
            .args(self.args(i))
            .envs(self.node_env[i].iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN}: {e}"));
        self.children[i] = Some(child);
        self.states[i] = NodeState::Running;
    }

    /// Starts spare node `i` with `--join`: it waits for a leader to add it.
    pub fn start_spare(&mut self, i: usize) {
        assert!(i >= self.initial, "node {i} is not a spare");
        self.spawn(i);
    }

    /// The nodes of the static peer list.
    pub fn initial(&self) -> usize {
        self.initial
    }

    /// Every node's client address, spares included: `--endpoints`.
    pub fn endpoints_arg(&self) -> String {
        (0..self.len())
            .map(|i| self.client_addr(i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Sets `key=value` in node `i`'s environment from its next start on;
    /// an empty value removes it.
    pub fn set_env(&mut self, i: usize, key: &str, value: &str) {
        self.node_env[i].retain(|(k, _)| k != key);
        if !value.is_empty() {
            self.node_env[i].push((key.to_string(), value.to_string()));
        }
    }

    pub fn state(&self, i: usize) -> NodeState {
        self.states[i]
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|i| self.states[*i] == NodeState::Running)
            .collect()
    }

    /// Node `i`'s exit status if its process has ended on its own (None
    /// while it runs, or when the test never started it).
    pub fn exit_status(&mut self, i: usize) -> Option<ExitStatus> {
        self.children[i]
            .as_mut()
            .and_then(|child| child.try_wait().expect("try_wait"))
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.children[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
            .id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.states[i] = NodeState::Down;
    }

    /// Sends `signal` (a `kill` name such as "TERM") to node `i`'s pid.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.pid(i).to_string();
        let status = Command::new("kill")
            .args([format!("-{signal}").as_str(), pid.as_str()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}: {status}");
    }

    /// SIGSTOP: the process freezes with its sockets open (no crash hint).
    pub fn stop(&mut self, i: usize) {
        self.signal(i, "STOP");
        self.states[i] = NodeState::Stopped;
    }

    pub fn cont(&mut self, i: usize) {
        self.signal(i, "CONT");
        self.states[i] = NodeState::Running;
    }

    /// SIGTERM, and the exit status once the node has exited (None if it
    /// was still running at `deadline`).
    pub fn terminate(&mut self, i: usize, deadline: Instant) -> Option<ExitStatus> {
        self.signal(i, "TERM");
        let child = self.children[i].as_mut().expect("running");
        let status = poll_until(deadline, || child.try_wait().expect("try_wait"))?;
        self.children[i] = None;
        self.states[i] = NodeState::Down;
        Some(status)
    }

    /// Starts node `i` again with the same flags and data dir. Waits until
    /// its old ports are free (a killed process's sockets close at once, but
    /// the poll keeps the test honest about it).
    pub fn restart(&mut self, i: usize) {
        assert_eq!(
            self.states[i],
            NodeState::Down,
            "restart of a live node {i}"
        );
        let peer = self.peer_ports[i];
        let client = self.client_addr(i).port();
        let metrics = self.metrics_ports.get(i).copied();
        let free = poll_until(deadline_in(Duration::from_secs(5)), || {
            (port_is_free(peer) && port_is_free(client) && metrics.is_none_or(port_is_free))
                .then_some(())
        });
        assert!(free.is_some(), "node {i}'s ports are still taken");
        self.spawn(i);
    }

    /// One RESP call to node `i`'s client port.
    pub fn call(&self, i: usize, args: &[&[u8]], timeout: Duration) -> std::io::Result<Value> {
        let password = self.password.as_deref().map(sraft::secret::Secret::new);
        sraft::client::call_with(
            self.client_addr(i),
            args,
            timeout,
            password.as_ref(),
            self.client_tls.as_ref(),
        )
    }

    pub fn info(&self, i: usize) -> Option<Info> {
        match self.call(i, &[b"INFO"], INFO_TIMEOUT) {
            Ok(Value::Bulk(text)) => Some(Info {
                fields: parse_info(&String::from_utf8_lossy(&text)),
            }),
            _ => None,
        }
    }

    /// Polls INFO until `condition` holds for node `i`.
    pub fn wait_info(
        &self,
        i: usize,
        deadline: Instant,
        mut condition: impl FnMut(&Info) -> bool,
    ) -> Option<Info> {
        poll_until(deadline, || self.info(i).filter(|info| condition(info)))
    }

    /// Polls until every running node answers INFO, exactly one of them is
    /// the leader, and all of them name it as leader in its term, and the
    /// term is above `term_above`. Panics at the deadline with the last
    /// view.
    pub fn wait_for_leader_above(&self, term_above: u64, deadline: Instant) -> Leadership {
        let mut last = BTreeMap::new();
        let found = poll_until(deadline, || {
            let infos: BTreeMap<usize, Info> = self
                .running()
                .into_iter()
                .filter_map(|i| self.info(i).map(|info| (i, info)))
                .collect();
            last = infos.clone();
            if infos.len() != self.running().len() {
                return None;
            }
            let leaders: Vec<usize> = infos
                .iter()
                .filter(|(_, info)| info.role() == "leader")
                .map(|(i, _)| *i)
                .collect();
            let [leader] = leaders[..] else { return None };
            let term = infos[&leader].term();
            let agreed = infos
                .values()
                .all(|info| info.leader_id() == Some(leader) && info.term() == term);
            (agreed && term > term_above).then_some(Leadership {
                leader,
                term,
                infos,
            })
        });
        found.unwrap_or_else(|| {
            let view: Vec<String> = last
                .iter()
                .map(|(i, info)| {
                    format!(
                        "node {i}: role {} term {} leader {}",
                        info.role(),
                        info.term(),
                        info.get("leader_id")
                    )
                })
                .collect();
            panic!(
                "no agreed leader above term {term_above} among running nodes {:?}; last view: {view:?}",
                self.running()
            )
        })
    }

    pub fn wait_for_leader(&self, deadline: Instant) -> Leadership {
        self.wait_for_leader_above(0, deadline)
    }

    /// SET through node `i`; panics unless acknowledged with +OK.
    pub fn set(&self, i: usize, key: &str, value: &str) {
        let reply = self.call(i, &[b"SET", key.as_bytes(), value.as_bytes()], CALL_TIMEOUT);
        match reply {
            Ok(Value::Simple(ok)) if ok == "OK" => {}
            other => panic!("SET {key} {value} via node {i}: {other:?}"),
        }
    }

    /// GET through node `i`; None for a nil reply.
    pub fn get(&self, i: usize, key: &str) -> Option<String> {
        match self.call(i, &[b"GET", key.as_bytes()], CALL_TIMEOUT) {
            Ok(Value::Bulk(b)) => Some(String::from_utf8(b).expect("utf-8 value")),
            Ok(Value::NullBulk) => None,
            other => panic!("GET {key} via node {i}: {other:?}"),
        }
    }

    /// Bytes in node `i`'s log so far: a mark to search after.
    pub fn log_len(&self, i: usize) -> u64 {
        fs::metadata(self.log_path(i)).map(|m| m.len()).unwrap_or(0)
    }

    /// Node `i`'s log from byte `from` on.
    pub fn log_since(&self, i: usize, from: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path(i)) {
            let _ = file.seek(SeekFrom::Start(from));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }

    /// Polls node `i`'s log (after byte `from`) for a line containing
    /// `needle`; returns that line.
    pub fn wait_log_line(
        &self,
        i: usize,
        from: u64,
        needle: &str,
        deadline: Instant,
    ) -> Option<String> {
        poll_until(deadline, || {
            self.log_since(i, from)
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
    }

    fn print_log_tails(&self) {
        for i in 0..self.len() {
            let text = self.log_since(i, 0);
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "----- node {i} ({:?}), last {} lines of {} -----",
                self.states[i],
                tail.len(),
                self.log_path(i).display()
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // A stopped process would not die of SIGTERM, but SIGKILL works on
        // it as on any other; kill by our own children's pids only.
        for i in 0..self.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            self.print_log_tails();
            eprintln!("(the logs were in {})", self.dir.path().display());
        }
        let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        for p in &self.peer_ports {
            reserved.remove(p);
            reserved.remove(&(p + CLIENT_PORT_OFFSET));
        }
        for p in self.metrics_ports.iter().chain(&self.client_ports) {
            reserved.remove(p);
        }
    }
}

/// A CA and one certificate it signed, in PEM.
pub struct CertPems {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// Makes a CA and one certificate for 127.0.0.1, 127.0.0.11-20 and
/// localhost that it signs (for servers and clients both, as peers need), in `dir`:
/// `NAME-ca.crt`, `NAME.crt`, `NAME.key` (mode 0600).
pub fn make_certs(dir: &Path, name: &str) -> sraft::tls::TlsFiles {
    write_certs(dir, name, &cert_pems(name))
}

/// Writes `pems` as `make_certs` does.
pub fn write_certs(dir: &Path, name: &str, pems: &CertPems) -> sraft::tls::TlsFiles {
    fs::create_dir_all(dir).expect("create the tls dir");
    let files = sraft::tls::TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca: dir.join(format!("{name}-ca.crt")),
    };
    fs::write(&files.cert, &pems.cert).expect("write the cert");
    write_private(&files.key, &pems.key);
    fs::write(&files.ca, &pems.ca).expect("write the CA");
    files
}

/// The certificates of `make_certs`, in memory.
pub fn cert_pems(name: &str) -> CertPems {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("sraft test CA {name}"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("node key");
    // 127.0.0.11-20 too: the Jepsen test gives each node its own loopback
    // address (so that packet filters can tell them apart).
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    names.extend((11..=20).map(|i| format!("127.0.0.{i}")));
    let mut params = CertificateParams::new(names).expect("node params");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("sraft node {name}"));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &ca, &ca_key).expect("node cert");
    CertPems {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Writes a secret file with mode 0600, as sraft requires.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write a secret file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod a secret file");
}

/// A command with none of sraft's environment variables inherited, so that
/// the developer's shell cannot change what a test runs.
pub fn hermetic_command(program: &str) -> Command {
    let mut command = Command::new(program);
    for var in [
        "RUST_LOG",
        "RAFT_NODE_ID",
        "RAFT_PORT",
        "RAFT_PEERS",
        "ENABLE_SUBLEADER",
        "RAFT_DATA_DIR",
        "SRAFT_TEST_DELAY_US",
        "SRAFT_TEST_DELAY_US_BY_PEER",
        "SRAFT_TEST_SNAPSHOT_DELAY_MS",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs `sraft args`, expecting it to exit on its own before `deadline`;
/// returns (status, stdout, stderr). Kills it and panics if it does not.
pub fn run_to_exit(args: &[String], deadline: Instant) -> (ExitStatus, String, String) {
    let mut child = hermetic_command(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sraft");
    let status = poll_until(deadline, || child.try_wait().expect("try_wait"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("sraft {args:?} did not exit");
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stdout, stderr)
}
