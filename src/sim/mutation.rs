//! The mutation check: known bugs, each behind a test-only switch in the
//! core (`RaftConfig::mutations`) or the driver (`Node::mutations`). A short
//! campaign must catch every one of them (tests/mutations.rs); a simulator
//! that cannot is not testing what it claims to.

use super::cluster::SimConfig;
use crate::core::ReadMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Core: grant votes without the log up-to-date check (paper 5.4.1).
    VoteWithoutLogCheck,
    /// Driver: send vote grants and append acknowledgements before fsync.
    AckBeforeFsync,
    /// Core: commit an earlier term's entry by counting replicas (paper
    /// 5.4.2, Figure 8).
    CommitOldTermByCounting,
    /// Core: answer ReadIndex reads without the heartbeat round.
    ReadIndexWithoutHeartbeat,
    /// Driver: report writes durable on submission, so committed entries
    /// are applied before they are on disk.
    ApplyBeforePersist,
    /// Core, lease mode: voters keep only the old stickiness, which a
    /// crash hint drops and a restart forgets, and campaign inside it.
    LeaseWithoutVoterPromise,
    /// Core: install a received snapshot that the commit index passed in
    /// the same batch, taking the state machine back behind what it
    /// applied. Needs a Ready spanning several messages: the stall
    /// profile's batches.
    InstallOvertakenSnapshot,
    /// Simulator, lease mode: clocks skewed by up to 70% each, far beyond
    /// the 5% relative drift the lease is computed for. Not in `ALL`: the
    /// lease profile catches it in about 2 seeds of 300 (EXPERIMENTS.md
    /// 11), too rarely for the mutation check's bound.
    LeaseSkewBeyondBound,
}

impl Mutation {
    /// Every mutation the mutation check must catch.
    pub const ALL: [Mutation; 7] = [
        Mutation::VoteWithoutLogCheck,
        Mutation::AckBeforeFsync,
        Mutation::CommitOldTermByCounting,
        Mutation::ReadIndexWithoutHeartbeat,
        Mutation::ApplyBeforePersist,
        Mutation::LeaseWithoutVoterPromise,
        Mutation::InstallOvertakenSnapshot,
    ];

    /// Mutations a campaign can switch on but the check does not require.
    pub const UNCHECKED: [Mutation; 1] = [Mutation::LeaseSkewBeyondBound];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::VoteWithoutLogCheck => "vote-without-log-check",
            Mutation::AckBeforeFsync => "ack-before-fsync",
            Mutation::CommitOldTermByCounting => "commit-old-term-by-counting",
            Mutation::ReadIndexWithoutHeartbeat => "read-index-without-heartbeat",
            Mutation::ApplyBeforePersist => "apply-before-persist",
            Mutation::LeaseWithoutVoterPromise => "lease-without-voter-promise",
            Mutation::InstallOvertakenSnapshot => "install-overtaken-snapshot",
            Mutation::LeaseSkewBeyondBound => "lease-skew-beyond-bound",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL
            .into_iter()
            .chain(Mutation::UNCHECKED)
            .find(|m| m.name() == name)
    }

    /// Switches the bug on for every node of a simulated cluster.
    pub fn apply(self, config: &mut SimConfig) {
        let core = &mut config.raft.mutations;
        let driver = &mut config.driver_mutations;
        match self {
            Mutation::VoteWithoutLogCheck => core.vote_without_log_check = true,
            Mutation::AckBeforeFsync => driver.ack_before_fsync = true,
            Mutation::CommitOldTermByCounting => core.commit_old_term_by_counting = true,
            Mutation::ReadIndexWithoutHeartbeat => core.read_index_without_heartbeat = true,
            Mutation::ApplyBeforePersist => driver.apply_before_persist = true,
            Mutation::LeaseWithoutVoterPromise => {
                config.raft.read_mode = ReadMode::Lease;
                config.raft.mutations.lease_without_voter_promise = true;
            }
            Mutation::InstallOvertakenSnapshot => core.install_overtaken_snapshot = true,
            Mutation::LeaseSkewBeyondBound => {
                config.raft.read_mode = ReadMode::Lease;
                config.clock_skew_ppm_max = 700_000;
            }
        }
    }
}
