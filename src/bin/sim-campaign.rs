//! Runs many simulator seeds: `cargo run --release --bin sim-campaign -- 100000 [first]`.
//! Prints every failing seed's report; exits non-zero if any failed.

use sraft::sim::run::{RunOptions, run_seed};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let first: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let verbose = std::env::var("SRAFT_VERBOSE").is_ok();
    let options = RunOptions::default();
    let started = Instant::now();
    let (mut failed, mut steps, mut committed) = (Vec::new(), 0u64, 0usize);
    for seed in first..first + count {
        match run_seed(seed, &options) {
            Ok(report) => {
                steps += report.steps;
                committed += report.committed;
                if verbose {
                    println!("{report:?}");
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
    println!(
        "{count} seeds from {first}: {} failed {:?}; {steps} events, {committed} committed entries, {:.1}s",
        failed.len(),
        failed,
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
