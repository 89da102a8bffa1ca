//! The mutation check: known bugs, each behind a test-only switch in the
//! core (`RaftConfig::mutations`) or the driver (`Node::mutations`). A short
//! campaign must catch every one of them (tests/mutations.rs); a simulator
//! that cannot is not testing what it claims to.

use super::cluster::SimConfig;

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
}

impl Mutation {
    pub const ALL: [Mutation; 5] = [
        Mutation::VoteWithoutLogCheck,
        Mutation::AckBeforeFsync,
        Mutation::CommitOldTermByCounting,
        Mutation::ReadIndexWithoutHeartbeat,
        Mutation::ApplyBeforePersist,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::VoteWithoutLogCheck => "vote-without-log-check",
            Mutation::AckBeforeFsync => "ack-before-fsync",
            Mutation::CommitOldTermByCounting => "commit-old-term-by-counting",
            Mutation::ReadIndexWithoutHeartbeat => "read-index-without-heartbeat",
            Mutation::ApplyBeforePersist => "apply-before-persist",
        }
    }

    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
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
        }
    }
}
