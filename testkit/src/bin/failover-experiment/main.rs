//! Failover on real processes (EXPERIMENTS.md sections 4 and 12).
//!
//! Starts a local 5-node cluster (`sraft` processes, or `etcd` members) on
//! loopback, then per trial: waits for a stable leader (same leader, term
//! and sub-leaders for at least a second), waits a random phase of 0-50 ms,
//! kills (SIGKILL) or freezes (SIGSTOP) the leader and measures on one
//! monotonic clock from the signal:
//!
//! - election: until a survivor shows a new leader in a higher term (sraft:
//!   the new leader's INFO says `role:leader`; etcd: a survivor's status
//!   names a leader other than the victim); every survivor is polled about
//!   every millisecond over a persistent connection;
//! - unavailability: a writer writes (`SET`, or etcd's put) about every
//!   millisecond through a follower that survives (it forwards to the
//!   leader), hedging a write unanswered for 10 ms with the next one on
//!   another connection (`probes.rs`); the client-visible gap is the first
//!   ack after the fault (of a write sent after the fault) minus the last
//!   ack before it.
//!
//! Then it heals (restart on the same data dir, or SIGCONT) and waits for the
//! healed node's log (sraft: applied index, etcd: raftIndex) to reach the
//! leader's.
//!
//! ```text
//! cargo run --release --bin failover-experiment -- --mode sraft --fault kill --trials 200 --out results/
//! failover-experiment --summarize results/      # one table from every CSV there
//! ```
//!
//! Modes: `sraft` (defaults), `seed` (S-Raft with seed 000's timings,
//! conf/seed-timings.toml), `original` (`--original-raft`, follower
//! timeouts 300-1000 ms), `paper` (original with 150-300 ms),
//! `original-fast` (original with S-Raft's 10 ms heartbeat and the
//! primary's 40-80 ms on every follower: the control for the timeouts
//! alone), and for
//! comparison `etcd` (etcd 3.4, `/usr/bin/etcd`, its default heartbeat
//! 100 ms and election timeout 1000 ms) and `etcd-fast` (50 ms, 300 ms),
//! driven through etcd's v3 JSON gateway. `--zones 0,0,1,1,2` (sraft modes)
//! puts the nodes in availability zones with the transport's test-only
//! per-peer delay (`SRAFT_TEST_DELAY_US_BY_PEER`; 0.1 ms within a zone,
//! 1.5 ms across unless `--same-zone-delay-us`/`--cross-zone-delay-us` say
//! otherwise). Linux only (signals). Only processes this program started
//! are signalled, by pid.
//!
//! From the CSVs of a directory: `--summarize DIR` (one table), `--plot
//! DIR` (CDF plots, SVG), `--report DIR --experiments EXPERIMENTS.md`
//! (regenerates the file's experiment v2 section, issue 13).
//!
//! Parts: `options.rs` (command line), `cluster.rs` (the seam between
//! measurement and processes: [`cluster::Status`], [`cluster::NodeConn`]),
//! `sraft_nodes.rs` and `etcd_nodes.rs` (each system's nodes and
//! connections; `etcd_http.rs`, the gateway's HTTP), `fault.rs` (the
//! faults and healing), `probes.rs` (status pollers, the writer),
//! `trial.rs` (one trial and its CSV row), `soak.rs` (`--soak`),
//! `report.rs` (the Markdown tables from the CSVs), `runs.rs` (reading a
//! directory's CSVs), `plot.rs` (CDF plots), `experiments.rs` (the v2
//! section).

mod cluster;
mod etcd_http;
mod etcd_nodes;
mod experiments;
mod fault;
mod options;
mod plot;
mod probes;
mod report;
mod runs;
mod soak;
mod sraft_nodes;
mod trial;

use cluster::Cluster;
use options::{Command, Options, parse_options};
use probes::{Shared, Witness, poller, writer as writer_loop};
use rand::SeedableRng;
use rand::rngs::StdRng;
use report::{Row, summarize_dir, table_header, table_row};
use soak::soak;
use std::fs::{self, File};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::Instant;
use trial::{Trial, load1, run_trial};

const NODES: usize = 5;

fn main() {
    let o = match parse_options(std::env::args().skip(1).collect()) {
        Command::Run(o) => o,
        Command::Summarize(dir) => {
            summarize_dir(&dir);
            return;
        }
        Command::Plot(dir) => exit_on_error(plot::plot_dir(&dir).map(|files| {
            for f in files {
                println!("{}", f.display());
            }
        })),
        Command::Report { dir, experiments } => {
            exit_on_error(experiments::report(&dir, &experiments))
        }
    };
    let (bin, hint) = if o.mode.is_etcd() {
        (
            &o.etcd,
            "install etcd 3.4 (Debian: etcd-server) or pass --etcd PATH",
        )
    } else {
        (&o.sraft, "build it with cargo build --release --bin sraft")
    };
    if !bin.exists() {
        eprintln!("{} not found: {hint}", bin.display());
        std::process::exit(2);
    }
    fs::create_dir_all(&o.out).expect("create --out");
    let stem = o.stem();
    let what = if o.soak_secs > 0 {
        format!("{} s without faults", o.soak_secs)
    } else {
        format!("{} trials", o.trials)
    };
    eprintln!(
        "{stem}: {what}, peer ports {}-{}, seed {}, load {:.2}",
        o.base_port,
        o.base_port + NODES as u16 - 1,
        o.seed,
        load1()
    );
    let logs_dir = o.out.join(format!("logs-{stem}"));
    let mut cluster = Cluster::start(&o, &logs_dir).unwrap_or_else(|e| {
        eprintln!("cannot start the cluster: {e}");
        std::process::exit(1)
    });
    let shared = Arc::new(Shared::new(NODES));
    let witness = if o.mode.is_etcd() {
        Witness::AnySurvivor
    } else {
        Witness::TheLeader
    };
    let threads = start_probes(&shared, &cluster, witness);
    let code = if o.soak_secs > 0 {
        run_soak(&o, &shared, &mut cluster)
    } else {
        run_trials(&o, &shared, &mut cluster)
    };
    shared.stop.store(true, Ordering::SeqCst);
    drop(cluster);
    for t in threads {
        let _ = t.join();
    }
    std::process::exit(code);
}

/// Prints the error and exits 1, or exits 0.
fn exit_on_error(r: Result<(), String>) -> ! {
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

/// One status poller per node and the writer.
fn start_probes(shared: &Arc<Shared>, cluster: &Cluster, witness: Witness) -> Vec<JoinHandle<()>> {
    let connect = cluster.connector();
    let mut threads: Vec<JoinHandle<()>> = (0..NODES)
        .map(|id| {
            let (s, c) = (shared.clone(), connect.clone());
            thread::Builder::new()
                .name(format!("poll-{id}"))
                .spawn(move || poller(s, c, id, witness))
                .expect("spawn a poller")
        })
        .collect();
    let s = shared.clone();
    let writer = thread::Builder::new().name("writer".into());
    threads.push(
        writer
            .spawn(move || writer_loop(s, connect))
            .expect("spawn the writer"),
    );
    threads
}

/// `--soak`: prints and writes its row; the exit code.
fn run_soak(o: &Options, shared: &Shared, cluster: &mut Cluster) -> i32 {
    match soak(o, shared, cluster) {
        Ok(report) => {
            print!("{report}");
            let _ = fs::write(o.out.join(format!("{}.md", o.stem())), &report);
            0
        }
        Err(e) => {
            eprintln!("soak failed: {e}");
            1
        }
    }
}

/// The trials, each a CSV line as it ends, then the run's table; the exit
/// code (1 if a trial could not finish).
fn run_trials(o: &Options, shared: &Shared, cluster: &mut Cluster) -> i32 {
    let stem = o.stem();
    let csv_path = o.out.join(format!("{stem}.csv"));
    let mut csv = File::create(&csv_path).expect("create the CSV");
    writeln!(csv, "{}", Trial::HEADER).unwrap();
    let mut rng = StdRng::seed_from_u64(o.seed);
    let started = Instant::now();
    let mut row = Row::new(o.mode.name(), o.fault.name());
    let mut failure = None;
    for trial in 0..o.trials {
        match run_trial(trial, o, shared, cluster, &mut rng) {
            Ok(t) => {
                writeln!(csv, "{}", t.csv(o.mode, o.fault)).unwrap();
                csv.flush().unwrap();
                add_to_row(&mut row, &t);
                eprintln!(
                    "trial {trial}: leader {} term {} -> {:?} in {:?} ms; unavailable {:?} ms (load {:.2})",
                    t.old_leader,
                    t.old_term,
                    t.new_leader,
                    t.election_ms.map(|x| (x * 10.0).round() / 10.0),
                    t.unavailable_ms.map(|x| (x * 10.0).round() / 10.0),
                    t.load1
                );
            }
            Err(e) => {
                eprintln!("stopping: {e}");
                failure = Some(e);
                break;
            }
        }
    }
    let mut table = table_header();
    table.push_str(&table_row(&row));
    print!("{table}");
    let _ = fs::write(o.out.join(format!("{stem}.md")), &table);
    eprintln!(
        "{} trials in {:.0} s, load {:.2}; CSV {}",
        row.trials,
        started.elapsed().as_secs_f64(),
        load1(),
        csv_path.display()
    );
    match failure {
        Some(e) => {
            eprintln!("run stopped early: {e}");
            1
        }
        None => 0,
    }
}

fn add_to_row(row: &mut Row, t: &Trial) {
    row.trials += 1;
    row.election.extend(t.election_ms);
    row.unavailable.extend(t.unavailable_ms);
    row.first_ack.extend(t.first_ack_after_ms);
    row.new_user.extend(t.new_user_ack_ms);
    row.by_primary += t.won_by_primary() as usize;
    row.by_sub += t.won_by_subleader() as usize;
    row.any_subs |= !t.sub_leaders.is_empty();
    row.load1.push(t.load1);
}
