//! The nemeses: process faults (kill -9, SIGSTOP of the leader, kill -9 of
//! the leader and its primary sub-leader) and network partitions (nftables
//! cuts between the nodes' own loopback addresses), and the convergence
//! check after healing.

use super::workload::NODES;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use sraft_testkit::{Firewall, TestCluster, deadline_in, poll_until};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

fn elapsed_s(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// The claimed leader and its primary sub-leader (if it names one that is
/// another node).
fn leader_and_primary(cluster: &Mutex<TestCluster>) -> Option<(usize, Vec<usize>, Option<usize>)> {
    let (leader, info) = cluster.lock().unwrap().claimed_leader()?;
    let subs = info.sub_leaders();
    let primary = subs.first().copied().filter(|&s| s != leader && s < NODES);
    Some((leader, subs, primary))
}

/// Rounds of: kill -9 a random node and restart it; SIGSTOP the leader
/// (sometimes beyond the request timeout) and SIGCONT it; kill -9 the
/// leader and its primary sub-leader together and restart both.
pub fn process_nemesis(
    cluster: &Mutex<TestCluster>,
    rng: &mut StdRng,
    duration: Duration,
) -> Vec<String> {
    let mut actions = Vec::new();
    let start = Instant::now();
    let mut round = 0;
    while start.elapsed() < duration {
        thread::sleep(Duration::from_millis(rng.random_range(800..1500)));
        let t = elapsed_s(start);
        match round % 3 {
            0 => {
                let victim = rng.random_range(0..NODES);
                cluster.lock().unwrap().kill(victim);
                actions.push(format!("{t:.1}s kill -9 node {victim}"));
                thread::sleep(Duration::from_millis(rng.random_range(500..2000)));
                cluster.lock().unwrap().restart(victim);
                actions.push(format!("{:.1}s restart node {victim}", elapsed_s(start)));
            }
            1 => match leader_and_primary(cluster) {
                Some((leader, _, _)) => {
                    // Sometimes beyond the request timeout (5 s): the
                    // followers' forwards to it time out, and it wakes up to
                    // requests buffered on connections given up on.
                    cluster.lock().unwrap().stop(leader);
                    actions.push(format!("{t:.1}s SIGSTOP leader {leader}"));
                    thread::sleep(Duration::from_millis(rng.random_range(1000..6500)));
                    cluster.lock().unwrap().cont(leader);
                    actions.push(format!("{:.1}s SIGCONT node {leader}", elapsed_s(start)));
                }
                None => actions.push(format!("{t:.1}s (no leader to pause)")),
            },
            _ => match leader_and_primary(cluster) {
                Some((leader, subs, primary)) => {
                    let victims: Vec<usize> = std::iter::once(leader).chain(primary).collect();
                    let mut c = cluster.lock().unwrap();
                    victims.iter().for_each(|&v| c.kill(v));
                    drop(c);
                    actions.push(format!(
                        "{t:.1}s kill -9 leader {leader} and primary sub-leader {primary:?} (sub_leaders {subs:?})"
                    ));
                    thread::sleep(Duration::from_millis(rng.random_range(1000..2500)));
                    let mut c = cluster.lock().unwrap();
                    victims.iter().for_each(|&v| c.restart(v));
                    actions.push(format!(
                        "{:.1}s restart nodes {leader}, {primary:?}",
                        elapsed_s(start)
                    ));
                }
                None => actions.push(format!("{t:.1}s (no leader to kill)")),
            },
        }
        round += 1;
    }
    actions
}

#[derive(Debug, Default)]
pub struct PartitionOutcome {
    /// Partitions applied.
    pub faults: usize,
    /// Times the majority elected a new leader while the old one was cut
    /// off: proof that the cuts cut.
    pub majority_elected: usize,
    /// From the cut to the majority's new leader, per isolation.
    pub failover_ms: Vec<u64>,
}

#[derive(Clone, Copy, Debug)]
enum Partition {
    /// The leader cut off from everyone, both ways.
    IsolateLeader,
    /// Two random nodes against the other three.
    SplitTwoThree,
    /// The primary sub-leader (or, without one, a follower) cut off.
    IsolatePrimary,
    /// The leader's messages to the others dropped; theirs still arrive.
    LeaderCannotSend,
    /// Two halves of two nodes that cannot talk, and one node that talks
    /// to both.
    Bridge,
}

/// Polls the nodes of `among` until one leads a term above `term_above`.
fn wait_new_leader(
    cluster: &Mutex<TestCluster>,
    among: &[usize],
    term_above: u64,
    timeout: Duration,
) -> Option<usize> {
    poll_until(deadline_in(timeout), || {
        let found = cluster
            .lock()
            .unwrap()
            .claimed_leader_among(among, term_above);
        if found.is_none() {
            thread::sleep(Duration::from_millis(50));
        }
        found.map(|(i, _)| i)
    })
}

/// Cuts the links of `pattern` around `leader` (with sub-leaders `subs`);
/// says what it cut.
fn apply(
    pattern: Partition,
    firewall: &mut Firewall,
    peers: &[SocketAddr],
    (leader, term, subs): (usize, u64, &[usize]),
    rng: &mut StdRng,
) -> String {
    use Partition::*;
    let addrs = |ids: &[usize]| ids.iter().map(|&i| peers[i]).collect::<Vec<_>>();
    let others: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
    let mut shuffled: Vec<usize> = (0..NODES).collect();
    shuffled.shuffle(rng);
    match pattern {
        IsolateLeader => {
            firewall.split(&addrs(&[leader]), &addrs(&others));
            format!("isolate leader {leader} (term {term})")
        }
        SplitTwoThree => {
            let (minority, majority) = shuffled.split_at(2);
            firewall.split(&addrs(minority), &addrs(majority));
            format!("split {minority:?} | {majority:?} (leader {leader})")
        }
        IsolatePrimary => {
            let victim = subs
                .first()
                .copied()
                .filter(|&s| s != leader && s < NODES)
                .unwrap_or(others[rng.random_range(0..others.len())]);
            let rest: Vec<usize> = (0..NODES).filter(|&i| i != victim).collect();
            firewall.split(&addrs(&[victim]), &addrs(&rest));
            format!("isolate primary sub-leader {victim} (sub_leaders {subs:?}, leader {leader})")
        }
        LeaderCannotSend => {
            for &o in &others {
                firewall.cut(peers[leader], peers[o]);
            }
            format!("one-way: leader {leader} cannot send to {others:?}")
        }
        Bridge => {
            let (bridge, halves) = shuffled.split_first().expect("five nodes");
            let (left, right) = halves.split_at(2);
            firewall.split(&addrs(left), &addrs(right));
            format!("bridge {bridge} between {left:?} | {right:?} (leader {leader})")
        }
    }
}

/// Cuts links in the patterns of [`Partition`], holding each a few seconds
/// and healing it before the next: the leader isolation first (it proves
/// the cuts work), then all five in a seeded order, round after round.
pub fn partition_nemesis(
    cluster: &Mutex<TestCluster>,
    firewall: &mut Firewall,
    rng: &mut StdRng,
    duration: Duration,
    outcome: &mut PartitionOutcome,
) -> Vec<String> {
    use Partition::*;
    let peers: Vec<SocketAddr> = {
        let c = cluster.lock().unwrap();
        (0..NODES).map(|i| c.peer_addr(i)).collect()
    };
    let mut all = [
        IsolateLeader,
        SplitTwoThree,
        IsolatePrimary,
        LeaderCannotSend,
        Bridge,
    ];
    all.shuffle(rng);
    let mut schedule = std::iter::once(IsolateLeader).chain(all.into_iter().cycle());
    let mut actions = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = elapsed_s(start);
        let Some((leader, info)) = cluster.lock().unwrap().claimed_leader() else {
            actions.push(format!("{t:.1}s (no leader to partition around)"));
            thread::sleep(Duration::from_millis(500));
            continue;
        };
        let (term, subs) = (info.term(), info.sub_leaders());
        let pattern = schedule.next().expect("endless schedule");
        let what = apply(pattern, firewall, &peers, (leader, term, &subs), rng);
        outcome.faults += 1;
        actions.push(format!("{t:.1}s {what}: {} drop rules", firewall.cuts()));
        let cut_at = Instant::now();
        if let IsolateLeader = pattern {
            let others: Vec<usize> = (0..NODES).filter(|&i| i != leader).collect();
            match wait_new_leader(cluster, &others, term, Duration::from_secs(8)) {
                Some(new) => {
                    let ms = cut_at.elapsed().as_millis() as u64;
                    outcome.majority_elected += 1;
                    outcome.failover_ms.push(ms);
                    actions.push(format!("  majority elected node {new} after {ms} ms"));
                }
                None => actions.push("  no new leader in the majority within 8 s".into()),
            }
            // Let the deposed leader's clients hit it for a while,
            // sometimes beyond the server's request timeout (5 s), so that
            // it answers them with errors that must say the truth.
            thread::sleep(Duration::from_millis(rng.random_range(500..6000)));
        } else {
            thread::sleep(Duration::from_millis(rng.random_range(2000..4000)));
        }
        firewall.heal();
        actions.push(format!("{:.1}s heal", elapsed_s(start)));
        thread::sleep(Duration::from_millis(rng.random_range(1000..2000)));
    }
    firewall.heal();
    actions
}

/// Every node applies the same log: equal commit and applied indexes
/// under one leader and term, within `timeout`.
pub fn assert_converges(cluster: &TestCluster, timeout: Duration) {
    let until = Instant::now() + timeout;
    let mut last = Vec::new();
    while Instant::now() < until {
        last = (0..NODES)
            .map(|i| {
                cluster.info(i).map(|info| {
                    let get = |k: &str| info.field(k).unwrap_or_default().to_string();
                    (
                        get("term"),
                        get("leader_id"),
                        get("commit_index"),
                        get("applied_index"),
                    )
                })
            })
            .collect();
        let first = &last[0];
        let converged = first
            .as_ref()
            .is_some_and(|(_, leader, commit, applied)| leader != "-" && commit == applied)
            && last.iter().all(|v| v == first);
        if converged {
            eprintln!(
                "[jepsen] converged: (term, leader, commit, applied) = {first:?} on every node"
            );
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "nodes did not converge within {timeout:?}: (term, leader, commit, applied) per node {last:?}\n{}",
        cluster.log_tails(40)
    );
}
