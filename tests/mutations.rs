//! The mutation check: each known bug, switched on by a test-only flag in
//! the core or the driver (`sraft::sim::mutation`), must make some seed of
//! a short campaign fail within a bounded number of seeds, with the
//! invariant that names it; the same seeds must pass without the bug. A
//! simulator that misses one of these is not testing what it claims to.

use sraft::sim::mutation::Mutation;
use sraft::sim::run::{Profile, RunOptions, run_seed};

/// Seeds tried per mutation before the check gives up. The rarest bugs
/// (commit of an old term's entry, ReadIndex without the heartbeat round)
/// fail about one seed in 35 of their campaigns: surviving this many (odds
/// about 1e-5 by chance) means the simulator lost them.
const SEEDS_MAX: u64 = 400;

struct Case {
    mutation: Mutation,
    options: RunOptions,
    /// What the failure report must say: the invariant that caught it.
    caught_by: &'static [&'static str],
}

fn case(mutation: Mutation) -> Case {
    // Three seconds of the ordinary campaign are enough for most bugs.
    let short = RunOptions {
        faulty_us: 3_000_000,
        ..RunOptions::default()
    };
    let (options, caught_by): (RunOptions, &'static [&'static str]) = match mutation {
        Mutation::VoteWithoutLogCheck => (short, &["leader completeness", "state machine safety"]),
        Mutation::AckBeforeFsync => (short, &["was persisted", "entries persisted"]),
        // Needs divergent logs (Raft paper Figure 8): the fault-dense
        // profile, where new leaders are cut off at once.
        Mutation::CommitOldTermByCounting => (
            RunOptions::hunt(),
            &["leader completeness", "state machine safety"],
        ),
        Mutation::ReadIndexWithoutHeartbeat => {
            (short, &["missing acknowledged index", "linearizability"])
        }
        Mutation::ApplyBeforePersist => (short, &["applying unpersisted"]),
        // Needs a Ready that spans a snapshot's last chunk and a later
        // Append: the stall profile's batches, over its full length.
        Mutation::InstallOvertakenSnapshot => (
            RunOptions::for_profile(Profile::Stall),
            &["at or below commit"],
        ),
        // Lease reads (DESIGN.md 3.8): the lease profile's own check, or
        // the stale read it lets through.
        Mutation::LeaseWithoutVoterPromise | Mutation::LeaseSkewBeyondBound => (
            RunOptions {
                profile: Profile::Lease,
                ..short
            },
            &["lease safety", "linearizability"],
        ),
    };
    Case {
        mutation,
        options,
        caught_by,
    }
}

/// The first seed that fails with the mutation on, and its report.
fn first_failure(case: &Case) -> Option<(u64, String)> {
    let options = RunOptions {
        mutation: Some(case.mutation),
        ..case.options.clone()
    };
    (0..SEEDS_MAX).find_map(|seed| run_seed(seed, &options).err().map(|report| (seed, report)))
}

fn check(case: &Case) {
    let name = case.mutation.name();
    let Some((seed, report)) = first_failure(case) else {
        panic!("mutation {name} survived {SEEDS_MAX} seeds: the simulator no longer catches it");
    };
    let headline = report.lines().next().unwrap_or_default().to_string();
    assert!(
        case.caught_by
            .iter()
            .any(|phrase| headline.contains(phrase)),
        "mutation {name} was caught by seed {seed}, but not by the expected invariant {:?}:\n{report}",
        case.caught_by
    );
    eprintln!(
        "mutation {name}: caught after {} seeds: {headline}",
        seed + 1
    );
    for seed in 0..=seed {
        if let Err(report) = run_seed(seed, &case.options) {
            panic!("without mutation {name}, seed {seed} fails too:\n{report}");
        }
    }
}

/// Every mutation `Mutation::ALL` lists, so a new one is checked as soon
/// as it is added.
#[test]
fn every_known_bug_is_caught_and_the_same_seeds_pass_without_it() {
    for mutation in Mutation::ALL {
        check(&case(mutation));
    }
}
