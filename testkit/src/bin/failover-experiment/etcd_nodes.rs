//! The etcd modes' cluster: five `etcd` 3.4 members on loopback, started
//! with a static `--initial-cluster`, each with its own data dir in one
//! temporary directory and its log in the run's logs dir; driven through
//! the v3 JSON gateway (`etcd_http.rs`). fsync stays on (etcd's default).

use crate::NODES;
use crate::cluster::{Connector, NodeConn, Status};
use crate::etcd_http::{HttpConn, base64, json_u64};
use crate::options::Options;
use sraft_testkit::port_is_free;
use sraft_testkit::process::{Signal, send_signal};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long the members get to answer their first status.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a killed member's ports may stay taken before a restart fails.
const PORTS_FREE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client port is the peer port + this (as the sraft modes' nodes).
const CLIENT_PORT_OFFSET: u16 = 1000;
/// Keep the key's history short: the writer puts one key a few hundred
/// times a second for hours, and a restart replays what is not compacted.
/// Housekeeping only: no Raft timing depends on it.
const COMPACTION_RETENTION_REVISIONS: &str = "10000";

pub struct EtcdCluster {
    bin: PathBuf,
    dir: Option<TempDir>,
    keep: bool,
    logs_dir: PathBuf,
    base_port: u16,
    /// `--heartbeat-interval` and `--election-timeout`, in ms.
    heartbeat_ms: u64,
    election_timeout_ms: u64,
    token: String,
    children: Vec<Option<Child>>,
    /// Each node's etcd member id, by node index.
    members: Arc<Vec<u64>>,
}

impl EtcdCluster {
    /// Starts the five members and waits until each answers its status
    /// (which names its member id).
    pub fn start(o: &Options, logs_dir: &Path) -> std::io::Result<EtcdCluster> {
        let (heartbeat_ms, election_timeout_ms) = o
            .mode
            .etcd_timings_ms()
            .unwrap_or_else(|| panic!("mode {} is not etcd", o.mode.name()));
        fs::create_dir_all(logs_dir)?;
        let mut c = EtcdCluster {
            bin: o.etcd.clone(),
            dir: Some(
                tempfile::Builder::new()
                    .prefix("failover-etcd-")
                    .tempdir()?,
            ),
            keep: o.keep,
            logs_dir: logs_dir.to_path_buf(),
            base_port: o.base_port,
            heartbeat_ms,
            election_timeout_ms,
            token: format!("failover-{}-{}", o.mode.name(), o.fault.name()),
            children: (0..NODES).map(|_| None).collect(),
            members: Arc::new(vec![]),
        };
        for i in 0..NODES {
            let _ = fs::remove_file(c.log_path(i));
            for port in [c.peer_port(i), c.client_port(i)] {
                if !port_is_free(port) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        format!("port {port} (etcd member {i}) is taken"),
                    ));
                }
            }
        }
        for i in 0..NODES {
            c.spawn(i)?;
        }
        c.members = Arc::new(c.member_ids()?);
        Ok(c)
    }

    fn peer_port(&self, i: usize) -> u16 {
        self.base_port + i as u16
    }

    fn client_port(&self, i: usize) -> u16 {
        self.peer_port(i) + CLIENT_PORT_OFFSET
    }

    fn client_addr(&self, i: usize) -> SocketAddr {
        sraft_testkit::addr(self.client_port(i))
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.logs_dir.join(format!("etcd-{i}.log"))
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir
            .as_ref()
            .expect("alive")
            .path()
            .join(format!("n{i}"))
    }

    /// Member `i`'s flags; the same for a restart (etcd then ignores the
    /// `--initial-*` flags and reads its data dir).
    fn args(&self, i: usize) -> Vec<String> {
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let cluster: Vec<String> = (0..NODES)
            .map(|j| format!("n{j}={}", url(self.peer_port(j))))
            .collect();
        let flags = [
            ("--name", format!("n{i}")),
            ("--data-dir", self.data_dir(i).display().to_string()),
            ("--listen-peer-urls", url(self.peer_port(i))),
            ("--initial-advertise-peer-urls", url(self.peer_port(i))),
            ("--listen-client-urls", url(self.client_port(i))),
            ("--advertise-client-urls", url(self.client_port(i))),
            ("--initial-cluster", cluster.join(",")),
            ("--initial-cluster-state", "new".into()),
            ("--initial-cluster-token", self.token.clone()),
            ("--heartbeat-interval", self.heartbeat_ms.to_string()),
            ("--election-timeout", self.election_timeout_ms.to_string()),
            ("--auto-compaction-mode", "revision".into()),
            (
                "--auto-compaction-retention",
                COMPACTION_RETENTION_REVISIONS.into(),
            ),
            ("--logger", "zap".into()),
            ("--log-outputs", "stderr".into()),
        ];
        flags
            .into_iter()
            .flat_map(|(k, v)| [k.to_string(), v])
            .collect()
    }

    fn mark_log(&self, i: usize, what: &str) {
        if let Ok(mut f) = OpenOptions::new().append(true).open(self.log_path(i)) {
            let _ = writeln!(f, "=== failover-experiment: {what}");
        }
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let mut command = Command::new(&self.bin);
        // The caller's ETCD_* variables would override flags' defaults.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .args(self.args(i))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.bin.display())))?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Each member's id, from its status (all five must answer).
    fn member_ids(&mut self) -> std::io::Result<Vec<u64>> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut ids = vec![None; NODES];
        while ids.iter().any(Option::is_none) {
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "etcd members did not answer their status within {START_TIMEOUT:?}: {ids:?}"
                )));
            }
            self.check_alive().map_err(std::io::Error::other)?;
            for (i, id) in ids.iter_mut().enumerate().filter(|(_, id)| id.is_none()) {
                let mut http = HttpConn::new(self.client_addr(i), Duration::from_millis(500));
                if let Ok((200, body)) = http.post("/v3/maintenance/status", "{}") {
                    *id = json_u64(&body, "member_id");
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        Ok(ids
            .into_iter()
            .map(|id| id.expect("all answered"))
            .collect())
    }

    pub fn connector(&self) -> Connector {
        let addrs: Vec<SocketAddr> = (0..NODES).map(|i| self.client_addr(i)).collect();
        let members = self.members.clone();
        Arc::new(move |id: usize, timeout: Duration| -> Box<dyn NodeConn> {
            Box::new(EtcdConn {
                http: HttpConn::new(addrs[id], timeout),
                members: members.clone(),
            })
        })
    }

    pub fn check_alive(&mut self) -> Result<(), String> {
        for (i, child) in self.children.iter_mut().enumerate() {
            if let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait) {
                return Err(format!("etcd member {i} exited by itself: {status}"));
            }
        }
        Ok(())
    }

    fn pid(&self, i: usize) -> u32 {
        self.children[i]
            .as_ref()
            .unwrap_or_else(|| panic!("etcd member {i} is not running"))
            .id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
            self.mark_log(i, "killed (SIGKILL)");
        }
    }

    pub fn stop(&mut self, i: usize) {
        let pid = self.pid(i);
        send_signal(pid, Signal::Stop).unwrap_or_else(|e| panic!("kill -STOP {pid}: {e}"));
    }

    pub fn cont(&mut self, i: usize) -> std::io::Result<()> {
        send_signal(self.pid(i), Signal::Cont)
    }

    /// Starts a killed member again on its data dir, once its ports are
    /// free.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        assert!(self.children[i].is_none(), "restart of a live member {i}");
        let deadline = Instant::now() + PORTS_FREE_TIMEOUT;
        while !(port_is_free(self.peer_port(i)) && port_is_free(self.client_port(i))) {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("etcd member {i}'s ports are still taken"),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        self.mark_log(i, "restarted");
        self.spawn(i)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // SIGKILL works on a stopped process too; our own children only.
        for i in 0..NODES {
            self.kill(i);
        }
        if self.keep
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

struct EtcdConn {
    http: HttpConn,
    members: Arc<Vec<u64>>,
}

impl NodeConn for EtcdConn {
    fn status(&mut self) -> Option<Status> {
        let (code, body) = self.http.post("/v3/maintenance/status", "{}").ok()?;
        if code != 200 {
            return None;
        }
        status_of(&body, &self.members)
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        let body = format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            base64(key.as_bytes()),
            base64(value.as_bytes())
        );
        match self.http.post("/v3/kv/put", &body) {
            Ok((200, _)) => Ok(()),
            Ok((code, answer)) => Err(format!("put answered {code}: {answer}")),
            Err(e) => Err(format!("put: {e}")),
        }
    }

    fn reset(&mut self) {
        self.http.reset();
    }
}

/// A status answer as a [`Status`]; the leader's member id mapped to its
/// node index (`leader` 0: none known). The gateway's JSON leaves out
/// fields at their zero value, so no `leader` at all also means none known
/// (it used to fail the parse and make the poller back off mid-election).
fn status_of(body: &str, members: &[u64]) -> Option<Status> {
    let leader_id = json_u64(body, "leader").unwrap_or(0);
    Some(Status {
        leader: members.iter().position(|&m| m == leader_id && m != 0),
        term: json_u64(body, "raftTerm")?,
        log_index: json_u64(body, "raftIndex")?,
        sub_leaders: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_maps_the_leader_member_to_its_node() {
        let members = [11, 22, 33, 44, 55];
        let body = r#"{"header":{"member_id":"22","raft_term":"7"},"leader":"44","raftIndex":"90","raftTerm":"7"}"#;
        let s = status_of(body, &members).unwrap();
        assert_eq!(s.leader, Some(3));
        assert_eq!((s.term, s.log_index), (7, 90));
        let none = r#"{"leader":"0","raftIndex":"90","raftTerm":"8"}"#;
        assert_eq!(status_of(none, &members).unwrap().leader, None);
        // What the gateway sends mid-election: the zero leader left out.
        let omitted = r#"{"header":{"raft_term":"8"},"raftIndex":"90","raftTerm":"8"}"#;
        let s = status_of(omitted, &members).unwrap();
        assert_eq!((s.leader, s.term), (None, 8));
    }
}
