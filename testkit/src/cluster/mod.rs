//! [`TestCluster`]: `sraft` nodes as child processes on loopback, each with
//! its own data dir and log file in one directory (a temporary one, removed
//! on drop unless kept). Every wait polls against a deadline; a failing
//! test prints the tail of every node's log (from `Drop`), and every node is
//! killed by its pid.
//!
//! - this file: the builder and the cluster's layout (addresses, ports,
//!   paths, command lines);
//! - `lifecycle.rs`: start, kill -9, SIGSTOP/SIGCONT, SIGTERM, restart;
//! - `observe.rs`: client calls, INFO, leader waits, logs.

mod lifecycle;
mod observe;

use crate::certs::{make_certs, write_private};
use crate::ports::{CLIENT_PORT_OFFSET, release_ports, reserve_ports_on, reserve_single_ports};
use crate::resp::Auth;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use tempfile::TempDir;

pub use lifecycle::NodeState;

/// Node `i`'s own loopback address with `own_addresses()`: 127.0.0.(11+i)
/// (the whole 127/8 is local on Linux; the test certificates name
/// 127.0.0.11-20).
pub fn node_ip(i: usize) -> Ipv4Addr {
    assert!(i < 10, "own loopback addresses exist for 10 nodes, not {i}");
    Ipv4Addr::new(127, 0, 0, 11 + i as u8)
}

pub struct TestCluster {
    dir: TempDir,
    /// Keep `dir` after the drop (the experiment's `--keep`).
    keep_dir: bool,
    /// Node logs go here, if not into `dir`.
    logs_dir: Option<PathBuf>,
    bin: PathBuf,
    ips: Vec<IpAddr>,
    peer_ports: Vec<u16>,
    /// Ports this cluster reserved (given back on drop); empty when the
    /// caller chose the base port.
    reserved_ports: Vec<u16>,
    cluster_id: String,
    extra_args: Vec<String>,
    /// What the toolkit's own calls present: the client password and TLS.
    auth: Auth,
    /// Flags of one node that replace the cluster's own (`set_flag`).
    node_flags: BTreeMap<usize, BTreeMap<String, String>>,
    /// One `--metrics-addr` port per node, or none.
    metrics_ports: Vec<u16>,
    /// One `--client-port` per node, unrelated to its peer port; empty:
    /// every node serves clients at peer port + `CLIENT_PORT_OFFSET`.
    client_ports: Vec<u16>,
    /// Every node writes `--metrics-file <data dir>/metrics.jsonl`.
    metrics_files: bool,
    /// Keep sraft's environment variables of this process for the nodes.
    inherit_env: bool,
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
    name: String,
    extra_args: Vec<String>,
    metrics: bool,
    metrics_files: bool,
    cluster_secret: bool,
    client_password: bool,
    tls: bool,
    node_env: Vec<Vec<(String, String)>>,
    own_client_ports: bool,
    own_addresses: bool,
    bin: Option<PathBuf>,
    base_port: Option<u16>,
    logs_dir: Option<PathBuf>,
    keep_dir: bool,
    inherit_env: bool,
    config: Option<(String, String)>,
}

impl TestClusterBuilder {
    /// Names the cluster's directory and id (`sraft-NAME-...`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

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

    /// Node `i` binds 127.0.0.(11+i) instead of 127.0.0.1, and its peer
    /// connections leave from there ([`node_ip`]): what the partition
    /// firewall needs to tell the nodes apart.
    pub fn own_addresses(mut self) -> Self {
        self.own_addresses = true;
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

    /// Every node writes its metrics events to
    /// `<data dir>/metrics.jsonl` ([`TestCluster::metrics_file`]).
    pub fn metrics_files(mut self) -> Self {
        self.metrics_files = true;
        self
    }

    /// TLS on both ports: one CA, one certificate for 127.0.0.1 (and the
    /// own addresses) shared by every node (`TestCluster::tls_dir()`); the
    /// toolkit's calls speak TLS.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Every node asks clients for a password (AUTH); the toolkit's own
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

    /// The `sraft` binary to run (default: [`crate::sraft_bin`]).
    pub fn bin(mut self, bin: &Path) -> Self {
        self.bin = Some(bin.to_path_buf());
        self
    }

    /// Peer ports `base`, `base + 1`, ... (client ports 1000 above), which
    /// must be free, instead of free ones picked in the toolkit's range.
    pub fn base_port(mut self, base: u16) -> Self {
        self.base_port = Some(base);
        self
    }

    /// Node logs go to `dir/node-I.log` (kept after the drop) instead of
    /// the cluster's directory.
    pub fn logs_dir(mut self, dir: &Path) -> Self {
        self.logs_dir = Some(dir.to_path_buf());
        self
    }

    /// Keeps the cluster's directory (data dirs) after the drop.
    pub fn keep_dir(mut self, keep: bool) -> Self {
        self.keep_dir = keep;
        self
    }

    /// The nodes inherit sraft's environment variables from this process
    /// (e.g. `SRAFT_TEST_DELAY_US` for the experiment); by default they
    /// start without them ([`crate::hermetic_command`]).
    pub fn inherit_env(mut self) -> Self {
        self.inherit_env = true;
        self
    }

    /// Writes `text` as `file_name` in the cluster's directory and gives
    /// every node `--config` with it (flags still win, DESIGN.md 4.1).
    pub fn config(mut self, file_name: &str, text: &str) -> Self {
        self.config = Some((file_name.to_string(), text.to_string()));
        self
    }

    /// Starts every node; panics if it cannot.
    pub fn start(self) -> TestCluster {
        self.try_start()
            .unwrap_or_else(|e| panic!("cannot start the cluster: {e}"))
    }

    /// Starts every node, or says why it cannot (a chosen port taken, a
    /// directory or a process that cannot be made).
    pub fn try_start(self) -> std::io::Result<TestCluster> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sraft-{}-", self.name))
            .tempdir()?;
        let total = self.nodes + self.spares;
        let ips: Vec<IpAddr> = (0..total)
            .map(|i| match self.own_addresses {
                true => IpAddr::V4(node_ip(i)),
                false => IpAddr::V4(Ipv4Addr::LOCALHOST),
            })
            .collect();
        let (peer_ports, mut reserved_ports) = match self.base_port {
            Some(base) => (chosen_ports(&ips, base)?, Vec::new()),
            None => {
                let peers = reserve_ports_on(&ips);
                let both = peers.iter().flat_map(|p| [*p, p + CLIENT_PORT_OFFSET]);
                (peers.clone(), both.collect())
            }
        };
        let metrics_ports = single_ports(self.metrics, total);
        let client_ports = single_ports(self.own_client_ports, total);
        reserved_ports.extend(metrics_ports.iter().chain(&client_ports));
        if let Some(logs) = &self.logs_dir {
            std::fs::create_dir_all(logs)?;
        }
        let mut cluster = TestCluster {
            cluster_id: format!("{}-{:08x}", self.name, rand::random::<u32>()),
            dir,
            keep_dir: self.keep_dir,
            logs_dir: self.logs_dir,
            bin: match self.bin {
                Some(bin) => bin,
                None => crate::sraft_bin(),
            },
            ips,
            peer_ports,
            reserved_ports,
            extra_args: self.extra_args,
            node_flags: BTreeMap::new(),
            auth: Auth::default(),
            metrics_ports,
            client_ports,
            metrics_files: self.metrics_files,
            inherit_env: self.inherit_env,
            children: (0..total).map(|_| None).collect(),
            states: vec![NodeState::Down; total],
            node_env: self.node_env,
            initial: self.nodes,
        };
        cluster.write_security_files(self.cluster_secret, self.tls, self.client_password);
        if let Some((name, text)) = &self.config {
            let path = cluster.dir().join(name);
            std::fs::write(&path, text)?;
            cluster
                .extra_args
                .extend(["--config".into(), path.display().to_string()]);
        }
        for i in 0..cluster.initial {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }
}

/// `n` single ports if `wanted`.
fn single_ports(wanted: bool, n: usize) -> Vec<u16> {
    match wanted {
        true => reserve_single_ports(n),
        false => Vec::new(),
    }
}

/// The peer ports from `base` on, checked free with their client ports.
fn chosen_ports(ips: &[IpAddr], base: u16) -> std::io::Result<Vec<u16>> {
    let peers: Vec<u16> = (0..ips.len() as u16).map(|i| base + i).collect();
    for (ip, peer) in ips.iter().zip(&peers) {
        for port in [*peer, peer + CLIENT_PORT_OFFSET] {
            std::net::TcpListener::bind((*ip, port)).map_err(|e| {
                std::io::Error::new(e.kind(), format!("port {ip}:{port} is not free: {e}"))
            })?;
        }
    }
    Ok(peers)
}

impl TestCluster {
    /// A builder of an `nodes`-node cluster.
    pub fn builder(nodes: usize) -> TestClusterBuilder {
        TestClusterBuilder {
            nodes,
            spares: 0,
            name: "cluster".into(),
            extra_args: Vec::new(),
            metrics: false,
            metrics_files: false,
            cluster_secret: false,
            client_password: false,
            tls: false,
            node_env: vec![Vec::new(); nodes],
            own_client_ports: false,
            own_addresses: false,
            bin: None,
            base_port: None,
            logs_dir: None,
            keep_dir: false,
            inherit_env: false,
            config: None,
        }
    }

    /// The files of `cluster_secret()`, `tls()` and `client_password()`,
    /// and the flags that name them.
    fn write_security_files(&mut self, secret: bool, tls: bool, password: bool) {
        if secret {
            let path = self.secret_path();
            write_private(&path, &format!("{:032x}\n", rand::random::<u128>()));
            self.extra_args
                .extend(["--cluster-secret-file".into(), path.display().to_string()]);
        }
        if tls {
            let files = make_certs(&self.tls_dir(), "cluster");
            self.extra_args.extend([
                "--tls-cert-file".into(),
                files.cert.display().to_string(),
                "--tls-key-file".into(),
                files.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                files.ca.display().to_string(),
            ]);
            self.auth.tls = Some(sraft::tls::ClientTls::load(&files.ca).expect("CA loads"));
        }
        if password {
            let password = format!("pw-{:016x}", rand::random::<u64>());
            write_private(&self.password_path(), &format!("{password}\n"));
            self.extra_args.extend([
                "--client-password-file".into(),
                self.password_path().display().to_string(),
            ]);
            self.auth.password = Some(sraft::secret::Secret::new(password));
        }
    }

    /// Where `tls()` writes the CA and the node certificate.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir().join("tls")
    }

    /// The client password file of `client_password()`.
    pub fn password_path(&self) -> PathBuf {
        self.dir().join("client.password")
    }

    /// The client password of `client_password()`, if set.
    pub fn password(&self) -> Option<&str> {
        let password = self.auth.password.as_ref()?;
        Some(std::str::from_utf8(password.as_bytes()).expect("the toolkit's passwords are ASCII"))
    }

    /// The cluster secret file of `cluster_secret()`.
    pub fn secret_path(&self) -> PathBuf {
        self.dir().join("cluster.secret")
    }

    /// What a client of this cluster presents (TLS, password).
    pub fn auth(&self) -> &Auth {
        &self.auth
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

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ips[i], self.peer_ports[i])
    }

    pub fn client_addr(&self, i: usize) -> SocketAddr {
        match self.client_ports.get(i) {
            Some(port) => SocketAddr::new(self.ips[i], *port),
            None => SocketAddr::new(self.ips[i], self.peer_ports[i] + CLIENT_PORT_OFFSET),
        }
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

    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        (0..self.len()).map(|i| self.client_addr(i)).collect()
    }

    /// Node `i`'s metrics endpoint (the builder's `metrics()`).
    pub fn metrics_addr(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.ips[i], self.metrics_ports[i])
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir().join(format!("node-{i}"))
    }

    /// Node `i`'s metrics events (the builder's `metrics_files()`).
    pub fn metrics_file(&self, i: usize) -> PathBuf {
        self.data_dir(i).join("metrics.jsonl")
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        let dir = self.logs_dir.as_deref().unwrap_or(self.dir.path());
        dir.join(format!("node-{i}.log"))
    }

    /// The static peer list (`--peers`): the initial nodes, not the spares.
    pub fn peers_arg(&self) -> String {
        (0..self.initial)
            .map(|i| self.peer_addr(i).to_string())
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
                self.ips[i].to_string(),
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
            args.push(SocketAddr::new(self.ips[i], *port).to_string());
        }
        if let Some(port) = self.client_ports.get(i) {
            args.push("--client-port".into());
            args.push(port.to_string());
        }
        if self.metrics_files {
            args.push("--metrics-file".into());
            args.push(self.metrics_file(i).display().to_string());
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
            eprintln!("(the logs were in {})", self.dir().display());
        }
        release_ports(self.reserved_ports.iter().copied());
        if self.keep_dir {
            let dir = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("a placeholder temp dir"),
            );
            eprintln!("[testkit] kept {}", dir.keep().display());
        }
    }
}
