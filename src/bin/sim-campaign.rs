//! Runs many simulator seeds: `cargo run --release --features sim --bin sim-campaign -- 100000 [first]`.
//! Prints every failing seed's report, then the campaign's election
//! statistics (term inflation, failover times); exits non-zero if any seed
//! failed. `SRAFT_VERBOSE=1` prints every seed's numbers;
//! `SRAFT_PROFILE=hunt` runs the mutation check's short, fault-dense seeds
//! (`membership`, `lease` and `stall` the other profiles, `sim::run::Profile`);
//! `SRAFT_FAULTY_MS` sets the length of the faulty phase;
//! `SRAFT_MUTATION=<name>` switches a known bug on (`sraft::sim::mutation`);
//! `SRAFT_TRACE_LEN=<n>` prints the last n events of a failure (80).

use sraft::sim::run::{RunOptions, RunReport, run_seed};
use sraft::sim::stats::ElectionStats;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let first: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let verbose = std::env::var("SRAFT_VERBOSE").is_ok();
    let options = RunOptions::from_env();
    let started = Instant::now();
    let (mut failed, mut steps, mut committed, mut kv_ops) = (Vec::new(), 0u64, 0usize, 0usize);
    let mut lease_reads = 0u64;
    let mut elections = ElectionStats::default();
    let mut inflated: Vec<(u64, u64, u64)> = Vec::new();
    for seed in first..first + count {
        match run_seed(seed, &options) {
            Ok(report) => {
                steps += report.steps;
                committed += report.committed;
                kv_ops += report.kv_ops;
                lease_reads += report.lease_reads;
                elections.merge(&report.elections);
                let extra_terms = report.elections.terms - report.elections.leader_changes;
                inflated.push((extra_terms, seed, report.elections.leader_changes));
                if verbose {
                    print_seed(&report);
                }
            }
            Err(report) => {
                eprintln!("{report}\n");
                failed.push(seed);
            }
        }
        if (seed - first + 1).is_multiple_of(1000) {
            eprintln!(
                "{} seeds, {} failed, {:.0}s",
                seed - first + 1,
                failed.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} seeds from {first}: {} failed {:?}; {steps} events, {committed} committed entries, {kv_ops} checked KV operations, {lease_reads} checked lease reads, {secs:.1}s ({:.1} seeds/s)",
        failed.len(),
        failed,
        count as f64 / secs
    );
    println!("{}", elections.summary());
    inflated.sort_unstable_by(|a, b| b.cmp(a));
    let worst: Vec<String> = inflated
        .iter()
        .take(5)
        .filter(|(extra, _, _)| *extra > 0)
        .map(|(extra, seed, changes)| {
            format!("seed {seed}: {} terms / {changes} changes", extra + changes)
        })
        .collect();
    println!("most inflated: {}", worst.join(", "));
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

fn print_seed(report: &RunReport) {
    let e = &report.elections;
    println!(
        "seed {}: {} nodes, {} events, {} committed, {} KV ops, bulk {}/{} applied; {} membership changes ({} configurations taken on nodes); {} leader changes, {:.2} terms and {:.2} elections per change; failovers {:?} us",
        report.seed,
        report.nodes,
        report.steps,
        report.committed,
        report.kv_ops,
        report.bulk_applied,
        report.bulk_applied + report.bulk_refused,
        report.conf_changes,
        report.configs_seen,
        e.leader_changes,
        e.term_inflation(),
        e.elections as f64 / e.leader_changes.max(1) as f64,
        e.failover_hinted_us
            .iter()
            .chain(&e.failover_silent_us)
            .collect::<Vec<_>>()
    );
}
