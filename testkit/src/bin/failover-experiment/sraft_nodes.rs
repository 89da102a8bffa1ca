//! The sraft modes' cluster: five nodes of the toolkit's [`TestCluster`]
//! with the mode's flags and timings, and their connections: INFO for the
//! status, SET for the writes.

use crate::NODES;
use crate::cluster::{Connector, NodeConn, Status};
use crate::options::{Mode, Options, SEED_TIMINGS_TOML};
use sraft::kv::resp::Value;
use sraft::settings::test_delay::ENV_DELAY_US_BY_PEER;
use sraft_testkit::{Auth, Conn, Info, TestCluster};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Original Raft with the paper's timeouts (150-300 ms).
const PAPER_TOML: &str = "# Raft paper timeouts (original Raft, 150-300 ms)\n[raft]\nenable_subleader = false\n\
    follower_timeout_ms_min = 150\nfollower_timeout_ms_max = 300\n";

/// Original Raft with S-Raft's detection timings on every follower.
const ORIGINAL_FAST_TOML: &str = "# original Raft, S-Raft's heartbeat and primary timeouts on every follower\n\
    [raft]\nenable_subleader = false\nheartbeat_interval_ms = 10\n\
    follower_timeout_ms_min = 40\nfollower_timeout_ms_max = 80\n";

/// Starts the nodes on the run's ports, logs in `logs_dir` (replacing an
/// earlier run's), data in a temporary directory (kept with `--keep`).
pub fn start(o: &Options, logs_dir: &Path) -> std::io::Result<TestCluster> {
    assert!(!o.mode.is_etcd(), "mode {} is not sraft", o.mode.name());
    for i in 0..NODES {
        let _ = std::fs::remove_file(logs_dir.join(format!("node-{i}.log")));
    }
    let mut builder = TestCluster::builder(NODES)
        .name(&format!("failover-{}-{}", o.mode.name(), o.fault.name()))
        .bin(&o.sraft)
        .base_port(o.base_port)
        .logs_dir(logs_dir)
        .keep_dir(o.keep)
        .metrics_files()
        // SRAFT_TEST_DELAY_US and friends from the caller's environment
        // reach the nodes (EXPERIMENTS.md 4 uses them).
        .inherit_env();
    if !o.mode.is_sraft() {
        builder = builder.arg("--original-raft");
    }
    // The config's peers, data dir, cluster id and metrics file are
    // overridden by the flags (flags come first, DESIGN.md 4.1); its
    // [raft] table is what this row measures.
    builder = match o.mode {
        Mode::Paper => builder.config("paper.toml", PAPER_TOML),
        Mode::OriginalFast => builder.config("original-fast.toml", ORIGINAL_FAST_TOML),
        Mode::Seed => builder.config("seed-timings.toml", SEED_TIMINGS_TOML),
        Mode::Sraft | Mode::Original | Mode::Etcd | Mode::EtcdFast => builder,
    };
    if let Some(zones) = &o.zones {
        for i in 0..NODES {
            let row = zones.env_value(sraft::core::NodeId(i as u64));
            builder = builder.env(i, ENV_DELAY_US_BY_PEER, &row);
        }
    }
    builder.try_start()
}

/// Connections to the nodes' client ports.
pub fn connector(cluster: &TestCluster) -> Connector {
    let addrs = cluster.client_addrs();
    Arc::new(move |id: usize, timeout: Duration| -> Box<dyn NodeConn> {
        Box::new(SraftConn {
            id,
            conn: Conn::new(addrs[id], &Auth::default(), timeout),
        })
    })
}

struct SraftConn {
    id: usize,
    conn: Conn,
}

impl NodeConn for SraftConn {
    fn status(&mut self) -> Option<Status> {
        // Only the Raft section: a poll about every millisecond per node
        // must not load the nodes it measures (the full INFO formats every
        // section and counter).
        let info = self
            .conn
            .call(&[b"INFO", b"raft"])
            .ok()
            .and_then(Info::from_reply)?;
        Some(status_of(self.id, &info))
    }

    fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        match self.conn.call(&[b"SET", key.as_bytes(), value.as_bytes()]) {
            Ok(Value::Simple(_)) => Ok(()),
            Ok(other) => Err(format!("SET answered {other:?}")),
            Err(e) => Err(format!("SET: {e}")),
        }
    }

    fn reset(&mut self) {
        self.conn.reset();
    }
}

/// Node `id`'s INFO as a [`Status`].
fn status_of(id: usize, info: &Info) -> Status {
    Status {
        leader: if info.is_leader() {
            Some(id)
        } else {
            info.leader_id()
        },
        term: info.term(),
        log_index: info.applied_index(),
        sub_leaders: info.sub_leaders(),
    }
}
