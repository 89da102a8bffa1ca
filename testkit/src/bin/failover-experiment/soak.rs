//! `--soak`: no fault, the writer running; counts the elections a healthy
//! cluster starts (each one spurious).

use crate::NODES;
use crate::cluster::Cluster;
use crate::options::Options;
use crate::probes::Shared;
use crate::trial::wait_stable;
use sraft_testkit::TestCluster;
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

/// (pre-vote rounds, vote rounds) in node `id`'s metrics file so far.
fn elections_in_metrics(cluster: &TestCluster, id: usize) -> (usize, usize) {
    let text = fs::read_to_string(cluster.metrics_file(id)).unwrap_or_default();
    let started = text
        .lines()
        .filter(|l| l.contains("\"event\":\"election_started\""));
    started.fold((0, 0), |(pre, vote), l| {
        if l.contains("\"pre_vote\":true") {
            (pre + 1, vote)
        } else {
            (pre, vote + 1)
        }
    })
}

/// No fault for `soak_secs` after the cluster settled, with the writer
/// running: every election started meanwhile is spurious (issue 13: "spurious
/// elections per hour under a stated background load"). sraft modes only.
pub fn soak(o: &Options, shared: &Shared, nodes: &mut Cluster) -> Result<String, String> {
    let (_, term, _, _) = wait_stable(shared, nodes, o.mode.is_sraft())?;
    let Cluster::Sraft(cluster) = nodes else {
        return Err(format!("--soak needs an sraft mode, not {}", o.mode.name()));
    };
    let before: Vec<(usize, usize)> = (0..NODES)
        .map(|i| elections_in_metrics(cluster, i))
        .collect();
    let (load_before, started) = (
        fs::read_to_string("/proc/loadavg").unwrap_or_default(),
        Instant::now(),
    );
    let acks_before = shared.acks.lock().len();
    while started.elapsed() < Duration::from_secs(o.soak_secs) {
        cluster.check_alive()?;
        thread::sleep(Duration::from_millis(200));
    }
    let secs = started.elapsed().as_secs_f64();
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let after: Vec<(usize, usize)> = (0..NODES)
        .map(|i| elections_in_metrics(cluster, i))
        .collect();
    let pre: usize = (0..NODES).map(|i| after[i].0 - before[i].0).sum();
    let votes: usize = (0..NODES).map(|i| after[i].1 - before[i].1).sum();
    let term_now = shared
        .views
        .lock()
        .iter()
        .filter_map(|v| v.term())
        .max()
        .unwrap_or(term);
    let acks = shared.acks.lock().len() - acks_before;
    let per_hour = |n: usize| n as f64 * 3600.0 / secs;
    Ok(format!(
        "| {} | {:.0} | {pre} ({:.0}/h) | {votes} ({:.0}/h) | {} | {acks} | {} | {} |\n",
        o.stem(),
        secs,
        per_hour(pre),
        per_hour(votes),
        term_now - term,
        load_before.trim(),
        load_after.trim()
    ))
}
