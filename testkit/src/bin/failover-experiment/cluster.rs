//! The experiment's cluster: five nodes of the toolkit's [`TestCluster`]
//! with the mode's flags and timings, and the fault and its healing.

use crate::NODES;
use crate::options::{Fault, Mode, Options, SEED_TIMINGS_TOML};
use sraft::settings::test_delay::ENV_DELAY_US_BY_PEER;
use sraft_testkit::TestCluster;
use std::path::Path;
use std::time::Instant;

/// Original Raft with the paper's timeouts (150-300 ms).
const PAPER_TOML: &str = "# Raft paper timeouts (original Raft, 150-300 ms)\n[raft]\nenable_subleader = false\n\
    follower_timeout_ms_min = 150\nfollower_timeout_ms_max = 300\n";

/// Starts the nodes on the run's ports, logs in `logs_dir` (replacing an
/// earlier run's), data in a temporary directory (kept with `--keep`).
pub fn start(o: &Options, logs_dir: &Path) -> std::io::Result<TestCluster> {
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
        Mode::Seed => builder.config("seed-timings.toml", SEED_TIMINGS_TOML),
        Mode::Sraft | Mode::Original => builder,
    };
    if let Some(zones) = &o.zones {
        for i in 0..NODES {
            let row = zones.env_value(sraft::core::NodeId(i as u64));
            builder = builder.env(i, ENV_DELAY_US_BY_PEER, &row);
        }
    }
    builder.try_start()
}

/// The fault on node `id`. Returns the instant just before the signal.
pub fn inject(cluster: &mut TestCluster, id: usize, fault: Fault) -> Instant {
    let at = Instant::now();
    match fault {
        // SIGKILL, then the dead process is reaped.
        Fault::Kill => cluster.kill(id),
        Fault::Stop => cluster.stop(id),
    }
    at
}

/// Undoes the fault: restart on the same data dir, or SIGCONT.
pub fn heal(cluster: &mut TestCluster, id: usize, fault: Fault) -> std::io::Result<()> {
    match fault {
        Fault::Kill => cluster.try_restart(id),
        Fault::Stop => {
            cluster.cont(id);
            Ok(())
        }
    }
}
