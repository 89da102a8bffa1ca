//! The failover experiment in simulation: crash the leader of a 5-node
//! cluster at a random phase of its heartbeat interval and measure, on the
//! simulator's logical clock, how long until a new leader is elected, in
//! which term, and by whom. The network and disk are an `Env`: one LAN
//! (EXPERIMENTS.md 1) or across availability zones (issue 9).

use super::cluster::{Cluster, SimConfig};
use super::net::NetConfig;
use crate::core::{ElectionKind, Event, NodeId, RaftConfig, Role, Term};
use crate::settings::test_delay::ZoneLayout;

/// How the leader fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The process is gone (its state lost past the last fsync); with
    /// `Mode::SRaftCrashHint` the survivors see its sockets close.
    Crash,
    /// SIGSTOP, a frozen VM, a partition: the leader lives on but nothing
    /// it sends arrives and nothing reaches it, and no socket closes. Only
    /// timers can detect it (DESIGN.md 3.3).
    Pause,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// S-Raft, silent failure (SIGSTOP, host crash): timers only.
    SRaft,
    /// S-Raft with the crash fast path (SIGKILL: sockets close at once).
    SRaftCrashHint,
    /// `--original-raft` with the seed's follower timeouts (300-1000 ms).
    Original,
    /// Original Raft with the Raft paper's 150-300 ms.
    RaftPaper,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::SRaft,
        Mode::SRaftCrashHint,
        Mode::Original,
        Mode::RaftPaper,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::SRaft => "S-Raft (silent crash)",
            Mode::SRaftCrashHint => "S-Raft (crash fast path)",
            Mode::Original => "original, seed timeouts 300-1000 ms",
            Mode::RaftPaper => "original, Raft paper 150-300 ms",
        }
    }

    pub fn raft_config(self) -> RaftConfig {
        let base = RaftConfig::default();
        match self {
            Mode::SRaft | Mode::SRaftCrashHint => base,
            Mode::Original => base.original(),
            Mode::RaftPaper => RaftConfig {
                follower_timeout_ms_min: 150,
                follower_timeout_ms_max: 300,
                ..base.original()
            },
        }
    }
}

/// The network and disk a trial runs on.
#[derive(Clone, Debug)]
pub struct Env {
    pub name: &'static str,
    pub net: NetConfig,
    pub fsync_us: u64,
}

impl Env {
    /// One availability zone: one-way 100-200 us, fsync 100 us (a local
    /// NVMe or gp3 volume). The setting of EXPERIMENTS.md 1.
    pub fn lan() -> Env {
        Env {
            name: "LAN",
            net: NetConfig::lan(),
            fsync_us: FSYNC_US,
        }
    }

    /// Across availability zones, as issue 9 measured with
    /// `SRAFT_TEST_DELAY_US=2000`: one-way 2 ms +- 0.2 ms, fsync 3 ms. A
    /// vote round then costs two one-way delays and two fsyncs, 10 ms: far
    /// above `crash_retry_ms`.
    pub fn cross_az() -> Env {
        Env {
            name: "cross-AZ",
            net: NetConfig {
                latency_us_min: 1_800,
                latency_us_max: 2_200,
                ..NetConfig::lan()
            },
            fsync_us: 3_000,
        }
    }

    /// Five nodes in three availability zones, `ZoneLayout::three_zones`
    /// (zones 0,0,1,1,2; one-way 0.1 ms within a zone, 1.5 ms across),
    /// with up to 0.1 ms of jitter and the LAN's fsync: issue 13's RTT
    /// zones, as the real processes emulate them.
    pub fn three_zones() -> Env {
        Env {
            name: "3 zones",
            net: NetConfig::zones(ZoneLayout::three_zones(), 100),
            fsync_us: FSYNC_US,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Trial {
    /// Crash to the new leader's election, logical microseconds.
    pub elapsed_us: u64,
    /// The leader that failed.
    pub old_leader: NodeId,
    pub winner: NodeId,
    /// The sub-leaders the old leader had named, in rank order.
    pub subleaders: Vec<NodeId>,
    pub kind: ElectionKind,
    /// The crashed leader's term, and the term the new leader won.
    pub old_term: Term,
    pub term: Term,
}

impl Trial {
    pub fn winner_rank(&self) -> Option<usize> {
        self.subleaders.iter().position(|id| *id == self.winner)
    }

    /// One uncontested election: the new leader's term is the old one + 1.
    pub fn in_next_term(&self) -> bool {
        self.term == self.old_term.next()
    }
}

/// Fsync latency the LAN experiment assumes (a local NVMe or gp3 volume).
pub const FSYNC_US: u64 = 100;

pub fn trial(seed: u64, mode: Mode) -> Trial {
    trial_in(seed, mode, &Env::lan())
}

pub fn trial_in(seed: u64, mode: Mode, env: &Env) -> Trial {
    trial_with(seed, mode.raft_config(), mode, env, Fault::Crash)
}

/// One failover of the leader by `fault`, with `raft` on every node (the
/// mode's config, or another one such as `RaftConfig::seed_timings`).
pub fn trial_with(seed: u64, raft: RaftConfig, mode: Mode, env: &Env, fault: Fault) -> Trial {
    trial_under_load(seed, raft, mode, env, fault, None)
}

/// `trial_with`, with a client writing to the leader every `write_every_us`
/// (if set) until the fault: the fault then often lands while the leader's
/// last Appends are in flight, so some survivors hold entries others lack,
/// as in the experiment on real processes (EXPERIMENTS.md 12), where 4% of
/// kill -9 failovers found a sub-leader behind.
pub fn trial_under_load(
    seed: u64,
    raft: RaftConfig,
    mode: Mode,
    env: &Env,
    fault: Fault,
    write_every_us: Option<u64>,
) -> Trial {
    let mut config = SimConfig::new(5, seed);
    config.raft = raft;
    config.crash_hints = mode == Mode::SRaftCrashHint;
    config.net = env.net.clone();
    config.fsync_us = env.fsync_us;
    let mut cluster = Cluster::new(config);
    let leader = settle(&mut cluster);
    // A random phase of the heartbeat interval.
    let phase_us = {
        use rand::Rng;
        let hb = cluster.config.raft.heartbeat_interval_ms * 1000;
        cluster.rng.random_range(0..hb)
    };
    let fault_at = cluster.now_us + phase_us;
    match write_every_us {
        Some(every_us) => {
            while cluster.now_us < fault_at {
                let command = super::tracker::tracked_command(None);
                cluster.propose(leader, command, super::cluster::Ticket::Filler);
                cluster.run_until((cluster.now_us + every_us).min(fault_at));
            }
        }
        None => cluster.run_until(fault_at),
    }
    let raft = cluster.raft(leader).expect("leader up");
    let (old_term, subleaders) = (raft.term(), raft.subleaders().to_vec());
    let crash_at = cluster.now_us;
    let old_leader = raft.id();
    match fault {
        // Under writes, the kill also catches frames in the sender queues.
        Fault::Crash if write_every_us.is_some() => cluster.crash_losing_in_flight(leader, 0.5),
        Fault::Crash => cluster.crash(leader),
        Fault::Pause => {
            let all = cluster.ids();
            cluster.partitions.split(&[all[leader]], &all);
        }
    }
    cluster.events.clear();
    let deadline = crash_at + 30_000_000;
    loop {
        assert!(cluster.step(), "seed {seed}: event queue ran dry");
        for (at, id, event) in cluster.events.drain(..) {
            if let Event::BecameLeader { term, kind, .. } = event
                && term > old_term
            {
                return Trial {
                    elapsed_us: at - crash_at,
                    old_leader,
                    winner: id,
                    subleaders,
                    kind,
                    old_term,
                    term,
                };
            }
        }
        assert!(
            cluster.now_us < deadline,
            "seed {seed}: no new leader 30 s after the crash"
        );
    }
}

/// Runs until a leader has led for a second, with its sub-leaders named.
fn settle(cluster: &mut Cluster) -> usize {
    let need_ranks = cluster.config.raft.enable_subleader;
    let mut since: Option<(usize, u64)> = None;
    loop {
        cluster.run_until(cluster.now_us + 10_000);
        let leader = cluster.leader();
        let ranked = leader.is_some_and(|l| {
            let raft = cluster.raft(l).expect("up");
            raft.role() == Role::Leader
                && (!need_ranks || raft.subleaders().len() == raft.config().subleader_count(5))
        });
        since = match (leader, since) {
            (Some(l), Some((s, t))) if l == s && ranked => Some((s, t)),
            (Some(l), _) if ranked => Some((l, cluster.now_us)),
            _ => None,
        };
        if let Some((l, t)) = since
            && cluster.now_us - t >= 1_000_000
        {
            return l;
        }
        assert!(cluster.now_us < 60_000_000, "no stable leader within 60 s");
    }
}

/// Elections started in a healthy cluster (no fault at all) during
/// `duration_us` after it settled: every one is spurious. The failure
/// detector must not mistake the network's jitter for a dead leader.
pub fn spurious_elections(seed: u64, raft: RaftConfig, net: NetConfig, duration_us: u64) -> usize {
    let mut config = SimConfig::new(5, seed);
    config.raft = raft;
    config.net = net;
    config.fsync_us = FSYNC_US;
    let mut cluster = Cluster::new(config);
    settle(&mut cluster);
    cluster.events.clear();
    let end = cluster.now_us + duration_us;
    let mut started = 0;
    while cluster.next_event_time().is_some_and(|t| t <= end) {
        cluster.step();
        started += cluster
            .events
            .drain(..)
            .filter(|(_, _, e)| matches!(e, Event::ElectionStarted { .. }))
            .count();
    }
    started
}

/// The leader once `cluster` settled with its sub-leaders, and those
/// sub-leaders in rank order (for the zone tests).
pub fn settled_designation(env: &Env, raft: RaftConfig, seed: u64) -> (NodeId, Vec<NodeId>) {
    let mut config = SimConfig::new(5, seed);
    config.raft = raft;
    config.net = env.net.clone();
    config.fsync_us = env.fsync_us;
    let mut cluster = Cluster::new(config);
    let leader = settle(&mut cluster);
    let raft = cluster.raft(leader).expect("leader up");
    (raft.id(), raft.subleaders().to_vec())
}

pub struct Summary {
    pub mode: Mode,
    /// The table's row name: the mode's, unless `summarize_as` gave one.
    pub label: String,
    pub trials: usize,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Trials won by the old leader's primary / by any named sub-leader.
    pub won_by_primary: usize,
    pub won_by_subleader: usize,
    /// Trials won in the crashed leader's term + 1 (no term inflation).
    pub in_next_term: usize,
}

pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(mode: Mode, trials: &[Trial]) -> Summary {
    let mut times: Vec<u64> = trials.iter().map(|t| t.elapsed_us).collect();
    times.sort_unstable();
    Summary {
        mode,
        label: mode.name().to_string(),
        trials: trials.len(),
        p50_us: percentile(&times, 50.0),
        p90_us: percentile(&times, 90.0),
        p99_us: percentile(&times, 99.0),
        max_us: *times.last().expect("at least one trial"),
        won_by_primary: trials.iter().filter(|t| t.winner_rank() == Some(0)).count(),
        won_by_subleader: trials.iter().filter(|t| t.winner_rank().is_some()).count(),
        in_next_term: trials.iter().filter(|t| t.in_next_term()).count(),
    }
}

/// `summarize` under another row name (a config other than the mode's).
pub fn summarize_as(label: &str, mode: Mode, trials: &[Trial]) -> Summary {
    Summary {
        label: label.to_string(),
        ..summarize(mode, trials)
    }
}

/// `trials` failovers by `fault` from `first_seed` on, with `raft`.
pub fn run_with(
    raft: &RaftConfig,
    mode: Mode,
    env: &Env,
    fault: Fault,
    trials: usize,
    first_seed: u64,
) -> Vec<Trial> {
    (0..trials as u64)
        .map(|i| trial_with(first_seed + i, raft.clone(), mode, env, fault))
        .collect()
}

pub fn run_mode(mode: Mode, trials: usize, first_seed: u64) -> Vec<Trial> {
    run_mode_in(mode, &Env::lan(), trials, first_seed)
}

pub fn run_mode_in(mode: Mode, env: &Env, trials: usize, first_seed: u64) -> Vec<Trial> {
    (0..trials as u64)
        .map(|i| trial_in(first_seed + i, mode, env))
        .collect()
}

/// The Markdown table EXPERIMENTS.md carries.
pub fn table(summaries: &[Summary]) -> String {
    let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
    let mut out = String::from(
        "| mode | trials | p50 ms | p90 ms | p99 ms | max ms | won by primary | won by a sub-leader | in term old+1 |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in summaries {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            s.label,
            s.trials,
            ms(s.p50_us),
            ms(s.p90_us),
            ms(s.p99_us),
            ms(s.max_us),
            s.won_by_primary,
            s.won_by_subleader,
            s.in_next_term
        );
    }
    out
}
