//! The failover experiment in simulation (EXPERIMENTS.md):
//! `cargo run --release --features sim --bin sim-failover -- [trials] [first_seed] [lan|cross-az|zones]`.
//! Prints the Markdown table of fault-to-new-leader times per mode: the
//! leader crashed in every mode, then paused (issue 13), with the defaults
//! and with the seed's timings (`RaftConfig::seed_timings`).

use sraft::core::RaftConfig;
use sraft::sim::failover::{
    Env, Fault, Mode, run_mode_in, run_with, summarize, summarize_as, table,
};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let first_seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let env = match args.next().as_deref() {
        None | Some("lan") => Env::lan(),
        Some("cross-az") => Env::cross_az(),
        Some("zones") => Env::three_zones(),
        Some(other) => {
            eprintln!("sim-failover: unknown environment '{other}' (lan, cross-az or zones)");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let mut summaries: Vec<_> = Mode::ALL
        .iter()
        .map(|&mode| summarize(mode, &run_mode_in(mode, &env, trials, first_seed)))
        .collect();
    let defaults = RaftConfig::default();
    let seed = RaftConfig::default().seed_timings();
    for (label, raft, mode, fault) in [
        ("S-Raft (pause)", &defaults, Mode::SRaft, Fault::Pause),
        (
            "S-Raft, seed timings (silent crash)",
            &seed,
            Mode::SRaft,
            Fault::Crash,
        ),
        (
            "S-Raft, seed timings (pause)",
            &seed,
            Mode::SRaft,
            Fault::Pause,
        ),
        (
            "S-Raft, seed timings (crash fast path)",
            &seed,
            Mode::SRaftCrashHint,
            Fault::Crash,
        ),
    ] {
        let trials = run_with(raft, mode, &env, fault, trials, first_seed);
        summaries.push(summarize_as(label, mode, &trials));
    }
    print!("{}", table(&summaries));
    eprintln!(
        "{trials} trials per mode from seed {first_seed} ({}), {:.1}s",
        env.name,
        started.elapsed().as_secs_f64()
    );
}
