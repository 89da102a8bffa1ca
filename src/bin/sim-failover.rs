//! The failover experiment in simulation (EXPERIMENTS.md):
//! `cargo run --release --features sim --bin sim-failover -- [trials] [first_seed] [lan|cross-az]`.
//! Prints the Markdown table of crash-to-new-leader times per mode.

use sraft::sim::failover::{Env, Mode, run_mode_in, summarize, table};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let first_seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let env = match args.next().as_deref() {
        None | Some("lan") => Env::lan(),
        Some("cross-az") => Env::cross_az(),
        Some(other) => {
            eprintln!("sim-failover: unknown environment '{other}' (lan or cross-az)");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let summaries: Vec<_> = Mode::ALL
        .iter()
        .map(|&mode| summarize(mode, &run_mode_in(mode, &env, trials, first_seed)))
        .collect();
    print!("{}", table(&summaries));
    eprintln!(
        "{trials} trials per mode from seed {first_seed} ({}), {:.1}s",
        env.name,
        started.elapsed().as_secs_f64()
    );
}
