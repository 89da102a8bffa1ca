//! The node's counters (DESIGN.md 4.8): served as Prometheus text at
//! `GET /metrics` by a small blocking HTTP thread (`http.rs`,
//! `--metrics-addr`), and as INFO's `# Stats`, `# Replication` and
//! `# Commandstats` sections.
//!
//! A hand-rolled registry rather than the `prometheus` crate: every metric
//! and every label value is known at compile time (six election kinds, a
//! dozen commands), so plain atomics in one struct give the Raft and WAL
//! threads a lock-free, allocation-free `fetch_add` with no registry lookup
//! on their hot paths, and the text format is a page of code
//! (`text.rs`). Node state that the Raft thread already publishes
//! (`NodeStatus`: term, role, indexes) is read from there at scrape time
//! rather than mirrored.

mod histogram;
pub mod http;
mod text;

pub use histogram::{FAILOVER_BUCKETS_US, Histogram, HistogramSnapshot, LATENCY_BUCKETS_US};
pub use text::render;

use crate::core::{ElectionKind, NodeId};
use crate::transport::{PeerStats, PeerStatsReader};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Label values of `kind` for elections, in `kind_index` order; the same
/// names as the log and the metrics file.
pub const ELECTION_KINDS: [&str; 7] = [
    "initial",
    "subleader",
    "crash_hint",
    "fallback",
    "original",
    "transfer",
    "hand_off",
];

pub fn kind_index(kind: ElectionKind) -> usize {
    match kind {
        ElectionKind::Initial => 0,
        ElectionKind::SubLeader { .. } => 1,
        ElectionKind::CrashHint { .. } => 2,
        ElectionKind::Fallback => 3,
        ElectionKind::Original => 4,
        ElectionKind::Transfer => 5,
        ElectionKind::HandOff { .. } => 6,
    }
}

pub fn kind_label(kind: ElectionKind) -> &'static str {
    ELECTION_KINDS[kind_index(kind)]
}

/// How a client request handed to the Raft thread ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A write committed and applied, or a read served.
    Ok,
    /// This node does not lead (the client thread then forwards).
    NotLeader,
    /// Leadership changed before it was done (the client thread retries).
    Lost,
    /// Refused at once: busy, too large, too many uncommitted bytes.
    Refused,
}

pub const OUTCOMES: [&str; 4] = ["ok", "not_leader", "lost", "refused"];

impl Outcome {
    fn index(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::NotLeader => 1,
            Outcome::Lost => 2,
            Outcome::Refused => 3,
        }
    }
}

/// Client commands counted by name (lower case, sorted); anything else is
/// `other`. `kv::command` parses each of these (a unit test checks).
pub const COMMANDS: [&str; 14] = [
    "append", "bgsave", "cas", "del", "echo", "exists", "get", "incr", "incrby", "info", "mget",
    "ping", "quit", "set",
];
const OTHER_COMMAND: usize = COMMANDS.len();

/// Forwarded requests, by what they carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardKind {
    Write,
    Read,
}

pub const FORWARD_KINDS: [&str; 2] = ["write", "read"];

impl ForwardKind {
    fn index(self) -> usize {
        match self {
            ForwardKind::Write => 0,
            ForwardKind::Read => 1,
        }
    }
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read<const N: usize>(counters: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| counters[i].load(Ordering::Relaxed))
}

/// Every counter of one node. Shared as `Arc<Metrics>`; each field is
/// written by one kind of thread (named on the field) and read by the
/// metrics thread and INFO.
pub struct Metrics {
    // Raft thread (`runtime/observe.rs`, `runtime/raft_loop.rs`).
    /// RequestVote rounds started (each a new term), by kind.
    elections: [AtomicU64; ELECTION_KINDS.len()],
    /// PreVote rounds started (no new term), by kind.
    pre_votes: [AtomicU64; ELECTION_KINDS.len()],
    /// Elections won, by kind.
    elections_won: [AtomicU64; ELECTION_KINDS.len()],
    /// A sub-leader's election, from its first round to leadership.
    promotion: Histogram,
    /// Any election won after a leader was known: from the last message of
    /// the old leader to leadership (the seed's "Time: N ms").
    failover: Histogram,
    leader_changes: AtomicU64,
    step_downs: AtomicU64,
    crash_hints: AtomicU64,
    subleader_assignments: AtomicU64,
    /// Writes handed to the Raft thread, by outcome.
    proposals: [AtomicU64; 4],
    /// A write from its arrival at the Raft thread to its answer
    /// (committed and applied), for writes that succeeded.
    commit: Histogram,
    /// Linearizable reads, by outcome, and their latency when served.
    reads: [AtomicU64; 4],
    read: Histogram,
    // WAL thread (`runtime/wal_thread.rs`).
    /// Group commits: one record write and one fdatasync each.
    wal_syncs: AtomicU64,
    wal_sync: Histogram,
    /// Writes of the Raft thread merged into those group commits.
    wal_writes: AtomicU64,
    wal_entries: AtomicU64,
    // Client threads (`server/`).
    commands: [AtomicU64; COMMANDS.len() + 1],
    forwards_sent: [AtomicU64; 2],
    forwards_failed: [AtomicU64; 2],
    forwards_received: [AtomicU64; 2],
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    // Set once at start-up, when the transport exists.
    peers: OnceLock<PeerStatsReader>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            elections: counters(),
            pre_votes: counters(),
            elections_won: counters(),
            promotion: Histogram::new(FAILOVER_BUCKETS_US),
            failover: Histogram::new(FAILOVER_BUCKETS_US),
            leader_changes: AtomicU64::new(0),
            step_downs: AtomicU64::new(0),
            crash_hints: AtomicU64::new(0),
            subleader_assignments: AtomicU64::new(0),
            proposals: counters(),
            commit: Histogram::new(LATENCY_BUCKETS_US),
            reads: counters(),
            read: Histogram::new(LATENCY_BUCKETS_US),
            wal_syncs: AtomicU64::new(0),
            wal_sync: Histogram::new(LATENCY_BUCKETS_US),
            wal_writes: AtomicU64::new(0),
            wal_entries: AtomicU64::new(0),
            commands: counters(),
            forwards_sent: counters(),
            forwards_failed: counters(),
            forwards_received: counters(),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            peers: OnceLock::new(),
        }
    }

    // ----- Raft thread -----

    pub fn election_started(&self, kind: ElectionKind, pre_vote: bool) {
        let table = if pre_vote {
            &self.pre_votes
        } else {
            &self.elections
        };
        bump(&table[kind_index(kind)]);
    }

    /// `attempt_us`: since this node's first round for the term it won;
    /// `leader_silence_us`: since it last heard from the previous leader.
    pub fn election_won(
        &self,
        kind: ElectionKind,
        attempt_us: Option<u64>,
        leader_silence_us: Option<u64>,
    ) {
        bump(&self.elections_won[kind_index(kind)]);
        if let (true, Some(us)) = (kind.is_promotion(), attempt_us) {
            self.promotion.observe_us(us);
        }
        if let Some(us) = leader_silence_us {
            self.failover.observe_us(us);
        }
    }

    pub fn leader_changed(&self) {
        bump(&self.leader_changes);
    }

    pub fn stepped_down(&self) {
        bump(&self.step_downs);
    }

    pub fn crash_hint(&self) {
        bump(&self.crash_hints);
    }

    pub fn subleaders_assigned(&self) {
        bump(&self.subleader_assignments);
    }

    /// A write answered `elapsed_us` after it reached the Raft thread.
    pub fn proposal(&self, outcome: Outcome, elapsed_us: u64) {
        bump(&self.proposals[outcome.index()]);
        if outcome == Outcome::Ok {
            self.commit.observe_us(elapsed_us);
        }
    }

    pub fn read(&self, outcome: Outcome, elapsed_us: u64) {
        bump(&self.reads[outcome.index()]);
        if outcome == Outcome::Ok {
            self.read.observe_us(elapsed_us);
        }
    }

    // ----- WAL thread -----

    /// One group commit of `writes` writes and `entries` entries, which
    /// took `elapsed_us` to write and fdatasync.
    pub fn wal_synced(&self, writes: usize, entries: usize, elapsed_us: u64) {
        bump(&self.wal_syncs);
        self.wal_writes.fetch_add(writes as u64, Ordering::Relaxed);
        self.wal_entries
            .fetch_add(entries as u64, Ordering::Relaxed);
        self.wal_sync.observe_us(elapsed_us);
    }

    // ----- client threads -----

    /// A command by its name as the client sent it (any case).
    pub fn client_command(&self, name: &[u8]) {
        let index = COMMANDS
            .iter()
            .position(|c| name.eq_ignore_ascii_case(c.as_bytes()))
            .unwrap_or(OTHER_COMMAND);
        bump(&self.commands[index]);
    }

    /// A follower relayed a request to the leader; `delivered` is false
    /// when the forward broke and the request is retried.
    pub fn forward_sent(&self, kind: ForwardKind, delivered: bool) {
        bump(&self.forwards_sent[kind.index()]);
        if !delivered {
            bump(&self.forwards_failed[kind.index()]);
        }
    }

    /// The leader got a request another node relayed.
    pub fn forward_received(&self, kind: ForwardKind) {
        bump(&self.forwards_received[kind.index()]);
    }

    pub fn connection_accepted(&self) {
        bump(&self.connections_accepted);
        bump(&self.connections_open);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connection_refused(&self) {
        bump(&self.connections_refused);
    }

    // ----- start-up -----

    /// Makes the transport's per-peer counters readable here. Once.
    pub fn set_peers(&self, peers: PeerStatsReader) {
        if self.peers.set(peers).is_err() {
            panic!("Metrics::set_peers called twice");
        }
    }

    // ----- readers -----

    pub fn peer_stats(&self) -> BTreeMap<NodeId, PeerStats> {
        self.peers
            .get()
            .map(PeerStatsReader::read)
            .unwrap_or_default()
    }

    /// The totals INFO shows, as of now.
    pub fn totals(&self) -> Totals {
        let sum = |counters: &[AtomicU64]| -> u64 {
            counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
        };
        Totals {
            commands: read(&self.commands),
            connections_accepted: self.connections_accepted.load(Ordering::Relaxed),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            connections_open: self.connections_open.load(Ordering::Relaxed),
            forwards_sent: sum(&self.forwards_sent),
            forwards_received: sum(&self.forwards_received),
            proposals_committed: self.proposals[Outcome::Ok.index()].load(Ordering::Relaxed),
            reads_served: self.reads[Outcome::Ok.index()].load(Ordering::Relaxed),
            elections: sum(&self.elections),
            pre_votes: sum(&self.pre_votes),
            elections_won: sum(&self.elections_won),
            promotions_won: self.elections_won[kind_index(ElectionKind::SubLeader { rank: 0 })]
                .load(Ordering::Relaxed)
                + self.elections_won[kind_index(ElectionKind::CrashHint { rank: 0 })]
                    .load(Ordering::Relaxed)
                + self.elections_won[kind_index(ElectionKind::HandOff { rank: None })]
                    .load(Ordering::Relaxed),
            leader_changes: self.leader_changes.load(Ordering::Relaxed),
            crash_hints: self.crash_hints.load(Ordering::Relaxed),
            wal_syncs: self.wal_syncs.load(Ordering::Relaxed),
        }
    }
}

/// Totals for INFO's `# Stats` and `# Commandstats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Per name of `COMMANDS`, then `other`.
    pub commands: [u64; COMMANDS.len() + 1],
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub connections_open: u64,
    pub forwards_sent: u64,
    pub forwards_received: u64,
    pub proposals_committed: u64,
    pub reads_served: u64,
    pub elections: u64,
    pub pre_votes: u64,
    pub elections_won: u64,
    pub promotions_won: u64,
    pub leader_changes: u64,
    pub crash_hints: u64,
    pub wal_syncs: u64,
}

impl Totals {
    /// (name, calls) of every command called at least once, `other` last.
    pub fn command_calls(&self) -> Vec<(&'static str, u64)> {
        COMMANDS
            .iter()
            .copied()
            .chain(std::iter::once("other"))
            .zip(self.commands)
            .filter(|(_, calls)| *calls > 0)
            .collect()
    }

    pub fn commands_processed(&self) -> u64 {
        self.commands.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_the_store_parses_is_counted_by_name() {
        for name in crate::kv::command::command_names() {
            assert!(COMMANDS.contains(&name), "{name} is not in COMMANDS");
        }
        assert!(COMMANDS.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn commands_are_counted_in_any_case_and_unknown_ones_as_other() {
        let m = Metrics::new();
        m.client_command(b"GET");
        m.client_command(b"get");
        m.client_command(b"FLUSHALL");
        assert_eq!(m.totals().command_calls(), vec![("get", 2), ("other", 1)]);
        assert_eq!(m.totals().commands_processed(), 3);
    }

    #[test]
    fn a_won_promotion_feeds_both_histograms_and_an_ordinary_win_only_failover() {
        let m = Metrics::new();
        m.election_won(
            ElectionKind::SubLeader { rank: 0 },
            Some(2_000),
            Some(160_000),
        );
        m.election_won(ElectionKind::Fallback, Some(3_000), Some(900_000));
        m.election_won(ElectionKind::Initial, Some(1_000), None);
        assert_eq!(m.promotion.snapshot().count(), 1);
        assert_eq!(m.failover.snapshot().count(), 2);
        let totals = m.totals();
        assert_eq!((totals.elections_won, totals.promotions_won), (3, 1));
    }

    #[test]
    fn only_successful_requests_feed_the_latency_histograms() {
        let m = Metrics::new();
        m.proposal(Outcome::Ok, 700);
        m.proposal(Outcome::NotLeader, 5);
        m.read(Outcome::Refused, 5);
        assert_eq!(m.commit.snapshot().count(), 1);
        assert_eq!(m.read.snapshot().count(), 0);
        assert_eq!(m.totals().proposals_committed, 1);
        assert_eq!(
            m.proposals[Outcome::NotLeader.index()].load(Ordering::Relaxed),
            1
        );
    }
}
