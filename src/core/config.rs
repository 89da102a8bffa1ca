//! Tunables of the Raft core. Names follow seed 000's `RaftConfig`, with the
//! unit in the name (milliseconds instead of the seed's seconds).

use crate::limits::Limits;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    /// Leader heartbeat period; also the sub-leader re-ranking period.
    pub heartbeat_interval_ms: u64,
    /// S-Raft on (sub-leaders, staged timeouts, crash fast path) or off
    /// (`--original-raft`: every follower uses the follower range).
    pub enable_subleader: bool,
    /// Sub-leaders named: max(1, floor(voters * ratio)).
    pub subleader_ratio: f64,
    pub primary_timeout_ms_min: u64,
    pub primary_timeout_ms_max: u64,
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
    /// heartbeat the voters got.
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
    /// Test-only: deliberate bugs. Never read from a config file.
    #[serde(skip)]
    pub mutations: CoreMutations,
}

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
}

impl Default for RaftConfig {
    fn default() -> RaftConfig {
        RaftConfig {
            heartbeat_interval_ms: 50,
            enable_subleader: true,
            subleader_ratio: 0.4,
            primary_timeout_ms_min: 150,
            primary_timeout_ms_max: 200,
            secondary_timeout_ms_min: 250,
            secondary_timeout_ms_max: 350,
            follower_timeout_ms_min: 300,
            follower_timeout_ms_max: 1000,
            leader_stickiness_ms: 100,
            pre_vote: true,
            check_quorum: true,
            crash_stagger_ms: 50,
            crash_retry_ms: 5,
            inflight_appends_max: 256,
            append_entries_max: 1024,
            snapshot_entries: 100_000,
            snapshot_log_bytes: 256 << 20,
            limits: Limits::default(),
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
        self.limits
            .validate()
            .map_err(|e| ConfigError(e.to_string()))
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
    fn stickiness_above_primary_minimum_is_rejected() {
        let config = RaftConfig {
            leader_stickiness_ms: 151,
            ..RaftConfig::default()
        };
        let e = config.validate().unwrap_err();
        assert!(e.0.contains("leader_stickiness_ms=151"), "{e}");
    }

    #[test]
    fn stickiness_leaves_a_heartbeat_of_margin_below_the_primary_minimum() {
        // Issue 9: "the default stickiness leaves at least one heartbeat
        // interval of margin below the primary's minimum timeout (validated)".
        let default = RaftConfig::default();
        assert!(
            default.leader_stickiness_ms + default.heartbeat_interval_ms
                <= default.primary_timeout_ms_min
        );
        let config = RaftConfig {
            leader_stickiness_ms: 101,
            ..RaftConfig::default()
        };
        let e = config.validate().unwrap_err().to_string();
        for value in [
            "leader_stickiness_ms=101",
            "heartbeat_interval_ms=50",
            "primary_timeout_ms_min=150",
        ] {
            assert!(e.contains(value), "{e}");
        }
        // Original mode has no primary: the margin is not required.
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
