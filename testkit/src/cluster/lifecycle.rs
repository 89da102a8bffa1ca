//! Starting, killing, pausing and restarting nodes. Signals go to our own
//! children's pids only (kill(2), `crate::process::send_signal`).

use super::TestCluster;
use crate::ports::port_is_free_on;
use crate::process::{SRAFT_ENV_VARS, Signal, send_signal};
use crate::wait::{deadline_in, poll_until};
use std::fs::OpenOptions;
use std::io::Write;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long `restart` waits for a dead node's ports to be free again.
const PORTS_FREE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// SIGSTOPped: alive but silent; not asked anything until continued.
    Stopped,
    /// Killed or exited.
    Down,
}

impl TestCluster {
    /// Starts node `i`'s process (its log appended to, so that every
    /// incarnation's lines stay in one file).
    pub(super) fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        assert!(self.children[i].is_none(), "node {i} is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let mut command = Command::new(&self.bin);
        if !self.inherit_env {
            for var in SRAFT_ENV_VARS {
                command.env_remove(var);
            }
        }
        let child = command
            .args(self.args(i))
            .envs(self.node_env[i].iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("spawn {}: {e}", self.bin.display()))
            })?;
        self.children[i] = Some(child);
        self.states[i] = NodeState::Running;
        Ok(())
    }

    /// A line in node `i`'s log that says what the toolkit did to it.
    fn mark_log(&self, i: usize, what: &str) {
        if let Ok(mut log) = OpenOptions::new().append(true).open(self.log_path(i)) {
            let _ = writeln!(log, "===== [testkit] node {i} {what} =====");
        }
    }

    /// Starts spare node `i` with `--join`: it waits for a leader to add it.
    pub fn start_spare(&mut self, i: usize) {
        assert!(i >= self.initial, "node {i} is not a spare");
        self.spawn(i)
            .unwrap_or_else(|e| panic!("start spare node {i}: {e}"));
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

    /// The nodes neither killed nor paused.
    pub fn running(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|i| self.states[*i] == NodeState::Running)
            .collect()
    }

    /// Node `i`'s exit status if its process has ended on its own (None
    /// while it runs, or when it was never started or was killed).
    pub fn exit_status(&mut self, i: usize) -> Option<ExitStatus> {
        self.children[i]
            .as_mut()
            .and_then(|child| child.try_wait().expect("try_wait"))
    }

    /// An error naming the first node that exited on its own: for a long
    /// run, where that is a finding, not a test failure.
    pub fn check_alive(&mut self) -> Result<(), String> {
        for i in 0..self.len() {
            if let Some(status) = self.exit_status(i) {
                return Err(format!("node {i} exited by itself: {status}"));
            }
        }
        Ok(())
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.children[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
            .id()
    }

    /// SIGKILL (kill -9), then reap. Does nothing to a node that is down.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            // Wall-clock, like the node's log lines, so that a reader can
            // line the signal up with the survivors' logs.
            let signalled = std::time::SystemTime::now();
            let _ = child.kill();
            let _ = child.wait();
            let unix = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64())
            };
            let dead = std::time::SystemTime::now();
            self.mark_log(
                i,
                &format!(
                    "killed (SIGKILL) at unix {:.6}, reaped {:.3} ms later",
                    unix(signalled),
                    (unix(dead) - unix(signalled)) * 1000.0
                ),
            );
        }
        self.states[i] = NodeState::Down;
    }

    /// Every node killed (SIGKILL).
    pub fn kill_all(&mut self) {
        for i in 0..self.len() {
            self.kill(i);
        }
    }

    /// Sends `signal` to node `i`'s pid.
    pub fn signal(&self, i: usize, signal: Signal) {
        let pid = self.pid(i);
        send_signal(pid, signal).unwrap_or_else(|e| panic!("kill -{signal:?} {pid}: {e}"));
    }

    /// SIGSTOP: the process freezes with its sockets open (no crash hint).
    pub fn stop(&mut self, i: usize) {
        self.signal(i, Signal::Stop);
        self.states[i] = NodeState::Stopped;
    }

    /// SIGCONT after [`TestCluster::stop`].
    pub fn cont(&mut self, i: usize) {
        self.signal(i, Signal::Cont);
        self.states[i] = NodeState::Running;
    }

    /// SIGTERM, and the exit status once the node has exited (None if it
    /// was still running at `deadline`).
    pub fn terminate(&mut self, i: usize, deadline: Instant) -> Option<ExitStatus> {
        self.signal(i, Signal::Term);
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
        self.try_restart(i)
            .unwrap_or_else(|e| panic!("restart node {i}: {e}"));
    }

    /// [`TestCluster::restart`], returning the failure instead.
    pub fn try_restart(&mut self, i: usize) -> std::io::Result<()> {
        assert_eq!(
            self.states[i],
            NodeState::Down,
            "restart of a live node {i}"
        );
        let ip = self.ips[i];
        let peer = self.peer_ports[i];
        let client = self.client_addr(i).port();
        let metrics = self.metrics_ports.get(i).copied();
        let free = poll_until(deadline_in(PORTS_FREE_TIMEOUT), || {
            let free = |port| port_is_free_on(ip, port);
            (free(peer) && free(client) && metrics.is_none_or(free)).then_some(())
        });
        if free.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("node {i}'s ports are still taken"),
            ));
        }
        self.mark_log(i, "restarted");
        self.spawn(i)
    }

    /// Every node running: the paused continued, the down restarted (spares
    /// never started stay down).
    pub fn recover_all(&mut self) {
        for i in 0..self.len() {
            match self.states[i] {
                NodeState::Running => {}
                NodeState::Stopped => self.cont(i),
                NodeState::Down if i >= self.initial && !self.data_dir(i).exists() => {}
                NodeState::Down => self.restart(i),
            }
        }
    }
}
