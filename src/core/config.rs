//! Tunables of the Raft core. Names follow seed 000's `RaftConfig`, with the
//! unit in the name (milliseconds instead of the seed's seconds).

use crate::limits::Limits;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat period, to every follower; also the sub-leader
    /// re-ranking period. 10 ms by default (seed: 50): on a LAN a heartbeat
    /// costs microseconds, and silent-failure detection is a few heartbeat
    /// gaps (DESIGN.md 3.3).
    pub heartbeat_interval_ms: u64,
    /// S-Raft on (sub-leaders, staged timeouts, crash fast path) or off
    /// (`--original-raft`: every follower uses the follower range).
    pub enable_subleader: bool,
    /// Sub-leaders named: max(1, floor(voters * ratio)).
    pub subleader_ratio: f64,
    /// The primary's timeout: its floor, and its ceiling. Fixed-range
    /// (seed) mode draws from [min, max]; adaptive mode uses min plus the
    /// observed heartbeat jitter, capped at max.
    pub primary_timeout_ms_min: u64,
    pub primary_timeout_ms_max: u64,
    /// Adaptive primary timeout (DESIGN.md 3.3): the primary times out
    /// `primary_timeout_ms_min + 4 * dev + lateness` after its leader's last
    /// message, where `dev` and `lateness` come from a Jacobson/Karels
    /// estimate of heartbeat inter-arrival gaps, capped at
    /// `primary_timeout_ms_max`. Off: a uniform draw from [min, max], as in
    /// the seed.
    pub primary_timeout_adaptive: bool,
    pub secondary_timeout_ms_min: u64,
    pub secondary_timeout_ms_max: u64,
    /// The ordinary randomized election timeout: followers without a rank,
    /// every node in original mode, and every retry after a failed election.
    pub follower_timeout_ms_min: u64,
    pub follower_timeout_ms_max: u64,
    /// A voter that heard from a live leader this recently refuses (pre)votes
    /// (thesis 4.2.3). With sub-leaders, at most `primary_timeout_ms_min -
    /// heartbeat_interval_ms`, so that a designated primary whose timer fired
    /// is not refused for it (DESIGN.md 3.4) even when it missed the last
    /// heartbeat the voters got. Default 30 = 40 - 10: exactly that bound,
    /// three heartbeat intervals, so a live leader stays protected through
    /// two lost heartbeats.
    pub leader_stickiness_ms: u64,
    /// Thesis 9.6: a candidate first asks whether it could win.
    pub pre_vote: bool,
    /// Thesis 6.2: a leader that has not heard from a quorum for
    /// `follower_timeout_ms_min` steps down.
    pub check_quorum: bool,
    /// Crash fast path: the primary campaigns at once, rank r waits
    /// r * this, so that ranks still do not compete.
    pub crash_stagger_ms: u64,
    /// Crash fast path: a refused pre-vote is retried this soon, because the
    /// other voters may not have seen the leader's sockets close yet.
    pub crash_retry_ms: u64,
    /// Crash fast path: how long the quick pre-vote retries go on before
    /// the ordinary timers take over. It must outlast the stickiness of
    /// voters whose own hint comes late (their kernels and threads are as
    /// busy as ours), in absolute time: it was `primary_timeout_ms_min`
    /// (150 ms with the seed's timings) until issue 13 shortened that floor
    /// to 40 ms, which on a loaded host ended crash paths early and sent
    /// them to the 300-1000 ms fallback.
    pub crash_retry_window_ms: u64,
    /// Append messages in flight per follower in the replicate state.
    pub inflight_appends_max: usize,
    /// Entries per Append message.
    pub append_entries_max: usize,
    /// Take a snapshot once this many entries were applied since the last
    /// one (etcd's SnapshotCount)...
    pub snapshot_entries: u64,
    /// ...or once the log holds this many bytes (`Entry::size_bytes`).
    pub snapshot_log_bytes: u64,
    /// The node's byte limits (DESIGN.md 7). The core uses the entry,
    /// Append and uncommitted limits; the config file sets them in its own
    /// `[limits]` table, not under `[raft]`.
    #[serde(skip)]
    pub limits: Limits,
    /// How the leader serves linearizable reads: `read_index` (a heartbeat
    /// round per batch of reads, thesis 6.4; the default) or `lease`
    /// (locally, while a lease that ends before any other node can be
    /// elected holds; DESIGN.md 3.8).
    pub read_mode: ReadMode,
    /// Lease mode: the most one node's clock may run ahead of another's,
    /// in parts per million of elapsed time (over any real interval, no
    /// clock advances more than `1 + clock_drift_ppm_max / 10^6` times as
    /// much as another). The lease is the voters' promise divided by that
    /// (DESIGN.md 3.8). Default 50,000 (5%): far above quartz (100 ppm)
    /// and NTP's slew (500 ppm), and above the simulator's skew.
    pub clock_drift_ppm_max: u64,
    /// Test-only: deliberate bugs. Never read from a config file.
    #[serde(skip)]
    pub mutations: CoreMutations,
}

/// How linearizable reads are served (DESIGN.md 2.5, 3.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// ReadIndex (thesis 6.4): every read waits for a heartbeat round.
    #[default]
    ReadIndex,
    /// Leader leases (thesis 6.4.1), with the voters' promise of DESIGN.md 3.8.
    Lease,
}

impl ReadMode {
    /// The name the config file and `--read-mode` use.
    pub fn name(self) -> &'static str {
        match self {
            ReadMode::ReadIndex => "read_index",
            ReadMode::Lease => "lease",
        }
    }
}

impl std::str::FromStr for ReadMode {
    type Err = String;

    fn from_str(s: &str) -> Result<ReadMode, String> {
        match s {
            "read_index" => Ok(ReadMode::ReadIndex),
            "lease" => Ok(ReadMode::Lease),
            other => Err(format!(
                "read_mode {other:?} is not one of \"read_index\", \"lease\""
            )),
        }
    }
}

/// `clock_drift_ppm_max` above this (100%: one clock twice as fast as
/// another) is surely a mistake.
pub const CLOCK_DRIFT_PPM_LIMIT: u64 = 1_000_000;

/// Lease mode: clock readings are whole microseconds, so a measured
/// interval can be up to 1 us off at each end (DESIGN.md 3.8).
pub const LEASE_QUANTUM_MARGIN_US: u64 = 2;

/// Test-only switches that break the core on purpose, so that a test can
/// show the simulator catches each bug (a mutation check, as TigerBeetle's
/// VOPR is checked). All off by default; nothing in production sets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreMutations {
    /// Grant (pre-)votes without the "candidate's log is at least as
    /// up-to-date" check (Raft paper 5.4.1).
    pub vote_without_log_check: bool,
    /// Commit an entry of an earlier term once a majority holds it, by
    /// counting replicas (what Raft paper 5.4.2 / Figure 8 forbids).
    pub commit_old_term_by_counting: bool,
    /// Serve a ReadIndex read without the heartbeat round that confirms
    /// the leader still leads (thesis 6.4 step 3).
    pub read_index_without_heartbeat: bool,
    /// Lease mode: voters keep only the old stickiness (dropped by a crash
    /// hint, forgotten by a restart, not applied to their own candidacy)
    /// instead of the promise of DESIGN.md 3.8.
    pub lease_without_voter_promise: bool,
    /// Hand out the chunks of a received snapshot even when the commit
    /// index passed it in the same batch (the bug c483a50 fixed).
    pub install_overtaken_snapshot: bool,
}

impl Default for RaftConfig {
    fn default() -> RaftConfig {
        RaftConfig {
            // Issue 13: silent failures detected in tens of milliseconds
            // (DESIGN.md 3.3). The seed's values (50; 150-200; 250-350;
            // stickiness 100) are `RaftConfig::seed_timings` and
            // conf/seed-timings.toml.
            heartbeat_interval_ms: 10,
            enable_subleader: true,
            subleader_ratio: 0.4,
            primary_timeout_ms_min: 40,
            primary_timeout_ms_max: 80,
            primary_timeout_adaptive: true,
            secondary_timeout_ms_min: 100,
            secondary_timeout_ms_max: 150,
            follower_timeout_ms_min: 300,
            follower_timeout_ms_max: 1000,
            leader_stickiness_ms: 30,
            pre_vote: true,
            check_quorum: true,
            crash_stagger_ms: 50,
            crash_retry_ms: 5,
            crash_retry_window_ms: 150,
            inflight_appends_max: 256,
            append_entries_max: 1024,
            snapshot_entries: 100_000,
            snapshot_log_bytes: 256 << 20,
            limits: Limits::default(),
            read_mode: ReadMode::ReadIndex,
            clock_drift_ppm_max: 50_000,
            mutations: CoreMutations::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl RaftConfig {
    /// The configuration of original Raft: no sub-leaders, one randomized
    /// range for everybody.
    pub fn original(mut self) -> RaftConfig {
        self.enable_subleader = false;
        self
    }

    /// Seed 000's `RaftConfig` timings (heartbeat 50 ms, primary 150-200,
    /// secondary 250-350, followers 300-1000), with the fixed-range primary
    /// and the stickiness the seed-timing runs always used (100 ms): what
    /// conf/seed-timings.toml sets, and the comparison row of every
    /// experiment (EXPERIMENTS.md).
    pub fn seed_timings(self) -> RaftConfig {
        RaftConfig {
            heartbeat_interval_ms: 50,
            primary_timeout_ms_min: 150,
            primary_timeout_ms_max: 200,
            primary_timeout_adaptive: false,
            secondary_timeout_ms_min: 250,
            secondary_timeout_ms_max: 350,
            follower_timeout_ms_min: 300,
            follower_timeout_ms_max: 1000,
            leader_stickiness_ms: 100,
            ..self
        }
    }

    /// Checks every relation the core relies on; the error names the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: String| Err(ConfigError(s));
        if self.heartbeat_interval_ms == 0 {
            return err("heartbeat_interval_ms must be > 0".into());
        }
        for (name, min, max) in [
            (
                "primary_timeout_ms",
                self.primary_timeout_ms_min,
                self.primary_timeout_ms_max,
            ),
            (
                "secondary_timeout_ms",
                self.secondary_timeout_ms_min,
                self.secondary_timeout_ms_max,
            ),
            (
                "follower_timeout_ms",
                self.follower_timeout_ms_min,
                self.follower_timeout_ms_max,
            ),
        ] {
            if min > max {
                return err(format!("{name}_min={min} is above {name}_max={max}"));
            }
            if min <= self.heartbeat_interval_ms {
                return err(format!(
                    "{name}_min={min} must exceed heartbeat_interval_ms={}",
                    self.heartbeat_interval_ms
                ));
            }
        }
        // Ranks must not compete (DESIGN.md 3.3): the primary's window,
        // adaptive or drawn, ends before the secondary's opens.
        if self.enable_subleader && self.primary_timeout_ms_max >= self.secondary_timeout_ms_min {
            return err(format!(
                "primary_timeout_ms_max={} must be below secondary_timeout_ms_min={}: the primary and the secondary would compete",
                self.primary_timeout_ms_max, self.secondary_timeout_ms_min
            ));
        }
        if !(self.subleader_ratio > 0.0 && self.subleader_ratio <= 1.0) {
            return err(format!(
                "subleader_ratio={} must be in (0, 1]",
                self.subleader_ratio
            ));
        }
        if self.leader_stickiness_ms > self.primary_timeout_ms_min {
            return err(format!(
                "leader_stickiness_ms={} exceeds primary_timeout_ms_min={}: a designated primary would be refused",
                self.leader_stickiness_ms, self.primary_timeout_ms_min
            ));
        }
        // A primary that missed the last heartbeat fires up to one heartbeat
        // interval sooner, relative to the voters' last contact, than one
        // that got it; the voters' stickiness must be over by then (issue 9).
        let margin_ms = self
            .leader_stickiness_ms
            .saturating_add(self.heartbeat_interval_ms);
        if self.enable_subleader && margin_ms > self.primary_timeout_ms_min {
            return err(format!(
                "leader_stickiness_ms={} + heartbeat_interval_ms={} exceeds primary_timeout_ms_min={}: a primary that missed one heartbeat would be refused",
                self.leader_stickiness_ms, self.heartbeat_interval_ms, self.primary_timeout_ms_min
            ));
        }
        if self.crash_retry_ms == 0 || self.crash_retry_window_ms < self.crash_retry_ms {
            return err(format!(
                "crash_retry_ms={} must be > 0 and at most crash_retry_window_ms={}",
                self.crash_retry_ms, self.crash_retry_window_ms
            ));
        }
        if self.snapshot_entries == 0 {
            return err("snapshot_entries must be > 0".into());
        }
        if self.snapshot_log_bytes == 0 {
            return err("snapshot_log_bytes must be > 0".into());
        }
        if self.inflight_appends_max == 0 {
            return err("inflight_appends_max must be > 0".into());
        }
        if self.append_entries_max == 0 {
            return err("append_entries_max must be > 0".into());
        }
        self.validate_lease()?;
        self.limits
            .validate()
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// Lease mode (DESIGN.md 3.8): the drift bound is sane and the lease
    /// outlasts a heartbeat interval, or no round could renew it in time.
    fn validate_lease(&self) -> Result<(), ConfigError> {
        if self.clock_drift_ppm_max > CLOCK_DRIFT_PPM_LIMIT {
            return Err(ConfigError(format!(
                "clock_drift_ppm_max={} is above {CLOCK_DRIFT_PPM_LIMIT} (a clock twice as fast as another)",
                self.clock_drift_ppm_max
            )));
        }
        if self.read_mode != ReadMode::Lease {
            return Ok(());
        }
        let lease_us = self.lease_duration_us();
        let heartbeat_us = self.heartbeat_interval_ms * 1000;
        if lease_us <= heartbeat_us {
            return Err(ConfigError(format!(
                "read_mode=lease: the lease (leader_stickiness_ms={} / (1 + clock_drift_ppm_max={} / 10^6) = {lease_us} us) must exceed heartbeat_interval_ms={}",
                self.leader_stickiness_ms, self.clock_drift_ppm_max, self.heartbeat_interval_ms
            )));
        }
        Ok(())
    }

    /// Lease mode: how long a voter promises, after each message of its
    /// leader, neither to vote for another node nor to campaign (DESIGN.md
    /// 3.8). The stickiness window, which the crash hint cannot shorten.
    pub fn voter_promise_us(&self) -> u64 {
        self.leader_stickiness_ms * 1000
    }

    /// Lease mode: how long after sending a round that a quorum
    /// acknowledged the leader may serve reads locally, on its own clock:
    /// the promise divided by the drift bound, rounded down, less the
    /// clock quantum (DESIGN.md 3.8).
    pub fn lease_duration_us(&self) -> u64 {
        let promise_us = self.voter_promise_us() as u128;
        let scaled = promise_us * 1_000_000 / (1_000_000 + self.clock_drift_ppm_max as u128);
        (scaled as u64).saturating_sub(LEASE_QUANTUM_MARGIN_US)
    }

    /// Sub-leaders a leader names in a cluster of `voters`.
    pub fn subleader_count(&self, voters: usize) -> usize {
        ((voters as f64 * self.subleader_ratio).floor() as usize).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        RaftConfig::default().validate().unwrap();
    }

    #[test]
    fn seed_timings_are_valid_and_the_seeds_values() {
        let seed = RaftConfig::default().seed_timings();
        seed.validate().unwrap();
        assert_eq!(seed.heartbeat_interval_ms, 50);
        assert_eq!(
            (seed.primary_timeout_ms_min, seed.primary_timeout_ms_max),
            (150, 200)
        );
        assert!(!seed.primary_timeout_adaptive);
        assert_eq!(seed.leader_stickiness_ms, 100);
    }

    #[test]
    fn stickiness_above_primary_minimum_is_rejected() {
        let default = RaftConfig::default();
        let bad = default.primary_timeout_ms_min + 1;
        let config = RaftConfig {
            leader_stickiness_ms: bad,
            ..default
        };
        let e = config.validate().unwrap_err();
        assert!(e.0.contains(&format!("leader_stickiness_ms={bad}")), "{e}");
    }

    #[test]
    fn stickiness_leaves_a_heartbeat_of_margin_below_the_primary_minimum() {
        // Issue 9: "the default stickiness leaves at least one heartbeat
        // interval of margin below the primary's minimum timeout (validated)".
        for default in [RaftConfig::default(), RaftConfig::default().seed_timings()] {
            assert!(
                default.leader_stickiness_ms + default.heartbeat_interval_ms
                    <= default.primary_timeout_ms_min
            );
            let bad = default.primary_timeout_ms_min - default.heartbeat_interval_ms + 1;
            let config = RaftConfig {
                leader_stickiness_ms: bad,
                ..default.clone()
            };
            let e = config.validate().unwrap_err().to_string();
            for value in [
                format!("leader_stickiness_ms={bad}"),
                format!("heartbeat_interval_ms={}", default.heartbeat_interval_ms),
                format!("primary_timeout_ms_min={}", default.primary_timeout_ms_min),
            ] {
                assert!(e.contains(&value), "{e}");
            }
            // Original mode has no primary: the margin is not required.
            config.original().validate().unwrap();
        }
    }

    #[test]
    fn a_primary_window_reaching_the_secondary_is_rejected() {
        let config = RaftConfig {
            primary_timeout_ms_max: RaftConfig::default().secondary_timeout_ms_min,
            ..RaftConfig::default()
        };
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("primary_timeout_ms_max=100"), "{e}");
        assert!(e.contains("secondary_timeout_ms_min=100"), "{e}");
        config.original().validate().unwrap();
    }

    #[test]
    fn mutations_are_off_by_default_and_no_file_can_switch_one_on() {
        assert_eq!(RaftConfig::default().mutations, CoreMutations::default());
        let parsed = toml::from_str::<RaftConfig>("[mutations]\nvote_without_log_check = true\n");
        assert!(parsed.is_err(), "a config file switched a mutation on");
    }

    #[test]
    fn five_voters_get_two_subleaders_and_three_get_one() {
        let config = RaftConfig::default();
        assert_eq!(config.subleader_count(5), 2);
        assert_eq!(config.subleader_count(3), 1);
        assert_eq!(config.subleader_count(7), 2);
        assert_eq!(config.subleader_count(1), 1);
    }
}
