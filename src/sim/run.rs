//! One seeded simulation: a faulty phase (crashes, restarts, partitions,
//! loss, duplication, delay, clock skew, leadership transfers) with a client
//! proposing and reading, then a heal after which the cluster must converge.

use super::cluster::{Cluster, SimConfig};
use super::net::NetConfig;
use crate::core::{LogIndex, NodeId, Term};
use crate::runtime::Reply;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub faulty_us: u64,
    pub converge_us_max: u64,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            faulty_us: 8_000_000,
            converge_us_max: 60_000_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub nodes: usize,
    pub steps: u64,
    pub committed: usize,
    pub proposals: u64,
    pub reads: u64,
    pub trace_hash: u64,
}

/// A cluster configuration drawn from the seed: size, mode, faults.
pub fn config_for_seed(seed: u64) -> SimConfig {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let nodes = [3, 5, 5, 7][rng.random_range(0..4)];
    let mut config = SimConfig::new(nodes, seed);
    config.raft.enable_subleader = rng.random_bool(0.75);
    config.crash_hints = rng.random_bool(0.5);
    config.clock_skew_ppm_max = rng.random_range(0..=20_000);
    config.fsync_us = rng.random_range(0..=2_000);
    let latency_max = [200, 2_000, 20_000][rng.random_range(0..3)];
    config.net = NetConfig {
        latency_us_min: 100,
        latency_us_max: latency_max,
        loss: [0.0, 0.01, 0.1][rng.random_range(0..3)],
        duplicate: [0.0, 0.02][rng.random_range(0..2)],
    };
    // Small batches and windows exercise flow control and back-off.
    config.raft.inflight_appends_max = [1, 4, 256][rng.random_range(0..3)];
    config.raft.append_entries_max = [1, 8, 1024][rng.random_range(0..3)];
    config
}

/// The client: proposals with unique ids, resolved by what gets applied;
/// reads whose answers must reflect every write acknowledged before them.
/// It talks to every node that believes it leads, as real clients would,
/// not only to the newest leader.
#[derive(Default)]
struct Client {
    next_id: u64,
    next_read: u64,
    /// (index, term) -> id of proposals awaiting their fate. Two nodes that
    /// both believe they lead can place proposals at one index.
    pending: BTreeMap<(LogIndex, Term), u64>,
    retry: VecDeque<u64>,
    committed: BTreeMap<u64, LogIndex>,
    /// Highest index known committed to the client: every later read must
    /// reflect it (linearizability of ReadIndex).
    acked_index: LogIndex,
    /// Read ticket -> the acknowledged index when it was issued.
    reads: BTreeMap<u64, LogIndex>,
    proposals: u64,
    reads_done: u64,
}

const FILLER: u64 = u64::MAX;
/// Read tickets live above every proposal id.
const READ_TICKET_BASE: u64 = 1 << 62;

impl Client {
    fn propose(&mut self, cluster: &mut Cluster, id: u64) {
        let leaders = cluster.believed_leaders();
        if leaders.is_empty() {
            if id != FILLER {
                self.retry.push_back(id);
            }
            return;
        }
        let mut placed = false;
        for leader in leaders {
            if let Some((index, term)) = cluster.propose(leader, id.to_le_bytes().to_vec(), id) {
                placed = true;
                if id != FILLER {
                    self.proposals += 1;
                    self.pending.insert((index, term), id);
                }
            }
        }
        if !placed && id != FILLER {
            self.retry.push_back(id);
        }
    }

    fn step(&mut self, cluster: &mut Cluster, new_proposals: bool) {
        let id = match self.retry.pop_front() {
            Some(id) => Some(id),
            None if new_proposals => {
                self.next_id += 1;
                Some(self.next_id)
            }
            None => None,
        };
        match id {
            Some(id) => self.propose(cluster, id),
            None => self.fill_gaps(cluster),
        }
        for leader in cluster.believed_leaders() {
            self.next_read += 1;
            let ticket = READ_TICKET_BASE + self.next_read;
            if cluster.read(leader, ticket) {
                self.reads.insert(ticket, self.acked_index);
            }
        }
    }

    /// A proposal whose index no log reaches any more is resolved only when
    /// something else lands there: propose untracked fillers.
    fn fill_gaps(&mut self, cluster: &mut Cluster) {
        let Some(leader) = cluster.leader() else {
            return;
        };
        let last = cluster.raft(leader).expect("leader is up").last_index();
        if self
            .pending
            .keys()
            .next_back()
            .is_some_and(|(i, _)| *i > last)
        {
            self.propose(cluster, FILLER);
        }
    }

    fn observe(&mut self, cluster: &mut Cluster) {
        for (_, index, term, command) in std::mem::take(&mut cluster.applied) {
            if command.is_some() {
                // Only commands are acknowledged to clients; reads answer
                // with the last command applied.
                self.acked_index = self.acked_index.max(index);
            }
            let here: Vec<(LogIndex, Term)> = self
                .pending
                .range((index, Term(0))..=(index, Term(u64::MAX)))
                .map(|(k, _)| *k)
                .collect();
            for key in here {
                let id = self.pending.remove(&key).expect("listed");
                if key.1 != term {
                    // Definitively dropped; retried unless another copy
                    // committed or may still commit.
                    let elsewhere = self.pending.values().any(|other| *other == id);
                    if !self.committed.contains_key(&id) && !elsewhere {
                        self.retry.push_back(id);
                    }
                    continue;
                }
                assert_eq!(
                    command,
                    Some(id.to_le_bytes().to_vec()),
                    "index {index} holds another command"
                );
                if let Some(before) = self.committed.insert(id, index) {
                    panic!("proposal {id} committed twice: at {before} and {index}");
                }
                self.retry.retain(|r| *r != id);
            }
        }
        for (node, ticket, reply) in std::mem::take(&mut cluster.answers) {
            if (READ_TICKET_BASE..FILLER).contains(&ticket) {
                self.on_read_answer(node, ticket, reply);
            } else if let Ok(output) = reply {
                // An acknowledged write is committed where it says.
                let index = LogIndex(u64::from_le_bytes(output[..8].try_into().expect("index")));
                if ticket != FILLER {
                    assert_eq!(
                        self.committed.get(&ticket),
                        Some(&index),
                        "node {node} acknowledged proposal {ticket} at {index}, not what was applied"
                    );
                }
            }
        }
    }

    fn on_read_answer(&mut self, node: NodeId, ticket: u64, reply: Reply) {
        let acked = self
            .reads
            .remove(&ticket)
            .expect("an answer for a read we issued");
        if let Ok(output) = reply {
            let served = LogIndex(u64::from_le_bytes(output[..8].try_into().expect("index")));
            assert!(
                served >= acked,
                "node {node}: read {ticket} served at applied index {served}, missing acknowledged index {acked}"
            );
            self.reads_done += 1;
        }
    }

    fn settled(&self) -> bool {
        self.pending.is_empty() && self.retry.is_empty()
    }
}

fn nemesis(cluster: &mut Cluster, rng: &mut StdRng) {
    let n = cluster.nodes.len();
    let all: Vec<NodeId> = cluster.ids();
    let node = rng.random_range(0..n);
    match rng.random_range(0..100) {
        0..25 => cluster.crash(node),
        25..40 => {
            if let Some(leader) = cluster.leader() {
                cluster.crash(leader);
            }
        }
        40..60 => {
            let down: Vec<usize> = (0..n).filter(|i| !cluster.is_up(*i)).collect();
            if let Some(i) = down.get(rng.random_range(0..down.len().max(1))) {
                cluster.restart(*i);
            }
        }
        60..72 => {
            let side: Vec<NodeId> = all
                .iter()
                .copied()
                .filter(|_| rng.random_bool(0.4))
                .collect();
            cluster.partitions.split(&side, &all);
        }
        72..80 => {
            let to = rng.random_range(0..n);
            if to != node {
                cluster.partitions.block(all[node], all[to]);
            }
        }
        80..95 => cluster.partitions.heal(),
        _ => {
            if let Some(leader) = cluster.leader() {
                cluster.transfer_leadership(leader, all[node]);
            }
        }
    }
}

fn all_converged(cluster: &Cluster) -> bool {
    let Some(leader) = cluster.leader() else {
        return false;
    };
    let raft = cluster.raft(leader).expect("up");
    let commit = raft.commit_index();
    if raft.term_at(commit) != Some(raft.term()) {
        return false;
    }
    let hash = cluster.nodes[leader].state_hash();
    cluster
        .nodes
        .iter()
        .all(|n| n.driver.is_some() && n.applied() == commit && n.state_hash() == hash)
}

fn drive(cluster: &mut Cluster, options: &RunOptions) -> RunReport {
    let seed = cluster.config.seed;
    let mut rng = StdRng::seed_from_u64(seed ^ 0xfa17);
    let mut client = Client::default();
    let mut next_nemesis = rng.random_range(50_000..300_000);
    let mut next_client = 0;
    while cluster.now_us < options.faulty_us {
        let until = next_nemesis.min(next_client);
        cluster.run_until(until);
        client.observe(cluster);
        if cluster.now_us >= next_nemesis {
            nemesis(cluster, &mut rng);
            next_nemesis = cluster.now_us + rng.random_range(20_000..300_000);
        }
        if cluster.now_us >= next_client {
            client.step(cluster, true);
            next_client = cluster.now_us + rng.random_range(1_000..20_000);
        }
    }
    heal(cluster);
    let deadline = cluster.now_us + options.converge_us_max;
    while !(client.settled() && all_converged(cluster)) {
        assert!(
            cluster.now_us < deadline,
            "did not converge within {} ms after heal: leader={:?} pending={} retry={}",
            options.converge_us_max / 1000,
            cluster.leader(),
            client.pending.len(),
            client.retry.len()
        );
        cluster.run_until(cluster.now_us + 5_000);
        client.observe(cluster);
        client.step(cluster, false);
    }
    RunReport {
        seed,
        nodes: cluster.nodes.len(),
        steps: cluster.steps,
        committed: cluster.checker.committed_len(),
        proposals: client.proposals,
        reads: client.reads_done,
        trace_hash: cluster.trace_hash,
    }
}

fn heal(cluster: &mut Cluster) {
    cluster.partitions.heal();
    cluster.net.loss = 0.0;
    cluster.net.duplicate = 0.0;
    for i in 0..cluster.nodes.len() {
        cluster.restart(i);
    }
}

/// Runs one seed; on any violated invariant returns the report to print:
/// the seed, the panic, the last events, and how to replay it.
pub fn run_seed(seed: u64, options: &RunOptions) -> Result<RunReport, String> {
    let mut cluster = Cluster::new(config_for_seed(seed));
    let result = catch_unwind(AssertUnwindSafe(|| drive(&mut cluster, options)));
    result.map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!(
            "seed {seed} failed at {}us: {what}\nrecent events:\n{}\nreplay: SRAFT_SEED={seed} cargo test --test simulation replay_seed -- --nocapture",
            cluster.now_us,
            cluster.recent_trace()
        )
    })
}

/// Every seed that ever failed: never delete one.
pub const REGRESSION_SEEDS: &[u64] = &[];

pub fn seeds_from_env() -> Option<Vec<u64>> {
    let raw = std::env::var("SRAFT_SEED").ok()?;
    Some(
        raw.split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect(),
    )
}
