//! Membership changes on real processes (DESIGN.md 8, issue 11): growing,
//! replacing and removing nodes while clients write, with every history
//! checked for linearizability, the leaderless gaps measured, and the
//! operator's bad input refused with one line that names the reason.
//!
//! The changes go through the `sraft member` command line, as an operator
//! would run them; spare nodes start with `--join`.

use rand::Rng;
use sraft::kv::linearizability::KvOp;
use sraft::kv::resp::Value;
use sraft_testkit::history::{Classified, Recorder, check_or_panic, classify, command_of};
use sraft_testkit::{Auth, Conn, TestCluster, deadline_in, poll_until, sraft_bin};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One request of the workload: long enough for the server's own request
/// timeout (5 s) to answer first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
const CLIENTS: u64 = 3;
/// Longest time the cluster may go without a leader during a change.
const LEADERLESS_GAP_MAX: Duration = Duration::from_secs(3);

// ------------------------------------------------------------- workload

/// Clients writing and reading through a changing set of nodes, every
/// operation recorded for the checker (`sraft_testkit::history`, the
/// Jepsen test's recording rules).
struct Workload {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    recorder: Recorder,
    clients: Vec<JoinHandle<()>>,
    monitor: Option<JoinHandle<Duration>>,
}

impl Workload {
    fn start(cluster: &TestCluster, nodes: &[usize]) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(
            nodes.iter().map(|&i| cluster.client_addr(i)).collect(),
        ));
        let recorder = Recorder::new();
        let clients = (0..CLIENTS)
            .map(|client| {
                let (stop, targets, recorder) = (stop.clone(), targets.clone(), recorder.clone());
                let auth = cluster.auth().clone();
                thread::spawn(move || client_loop(client, &auth, &stop, &targets, &recorder))
            })
            .collect();
        let all: Vec<SocketAddr> = (0..cluster.len()).map(|i| cluster.client_addr(i)).collect();
        let monitor_stop = stop.clone();
        let monitor = thread::spawn(move || longest_leaderless_gap(&all, &monitor_stop));
        Workload {
            stop,
            targets,
            recorder,
            clients,
            monitor: Some(monitor),
        }
    }

    /// Clients talk to these nodes from now on.
    fn retarget(&self, cluster: &TestCluster, nodes: &[usize]) {
        *self.targets.lock().unwrap() = nodes.iter().map(|&i| cluster.client_addr(i)).collect();
    }

    /// Stops the clients, checks the history, and returns the longest
    /// leaderless gap seen.
    fn finish(mut self, cluster: &TestCluster, what: &str) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients.drain(..) {
            client.join().expect("client thread");
        }
        let gap = self.monitor.take().unwrap().join().expect("monitor thread");
        let history = self.recorder.history();
        let ok = history.iter().filter(|op| op.complete_us.is_some()).count();
        eprintln!(
            "{what}: {} operations ({ok} completed); longest leaderless gap {} ms",
            history.len(),
            gap.as_millis()
        );
        check_or_panic(cluster, &history);
        assert!(ok > 50, "{what}: only {ok} operations completed");
        assert!(
            gap <= LEADERLESS_GAP_MAX,
            "{what}: no leader for {} ms",
            gap.as_millis()
        );
        gap
    }
}

const KEYS: [&[u8]; 2] = [b"k0", b"k1"];

/// One client: a connection to a random node of `targets` per operation
/// (a new session each time), GET, SET and INCR.
fn client_loop(
    client: u64,
    auth: &Auth,
    stop: &AtomicBool,
    targets: &Mutex<Vec<SocketAddr>>,
    recorder: &Recorder,
) {
    let mut rng = rand::rng();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let addr = {
            let targets = targets.lock().unwrap();
            targets[rng.random_range(0..targets.len())]
        };
        let (key, op): (&[u8], KvOp) = match rng.random_range(0..10) {
            0..=3 => (KEYS[rng.random_range(0..KEYS.len())], KvOp::Get),
            4..=7 => (
                KEYS[rng.random_range(0..KEYS.len())],
                KvOp::Set(format!("c{client}n{n}").into_bytes()),
            ),
            _ => (b"ctr", KvOp::Incr),
        };
        let invoke_us = recorder.now_us();
        let args = command_of(key, &op);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let reply = Conn::new(addr, auth, REQUEST_TIMEOUT).call_tracking_sent(&args);
        let classified = classify(&op, reply);
        let done = matches!(classified, Classified::Done(_));
        recorder.record_classified(client, key, invoke_us, op, &classified);
        if !done {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls every node's INFO until `stop`; the longest stretch in which no
/// node reported itself leader.
fn longest_leaderless_gap(nodes: &[SocketAddr], stop: &AtomicBool) -> Duration {
    let mut longest = Duration::ZERO;
    let mut since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let led = nodes.iter().any(|addr| {
            matches!(
                sraft::client::call(*addr, &[b"INFO", b"raft"], Duration::from_millis(200)),
                Ok(Value::Bulk(text)) if String::from_utf8_lossy(&text).contains("role:leader")
            )
        });
        match (led, since) {
            (true, Some(from)) => {
                longest = longest.max(started.duration_since(from));
                since = None;
            }
            (false, None) => since = Some(started),
            _ => {}
        }
        thread::sleep(Duration::from_millis(20));
    }
    longest
}

// ------------------------------------------------------------- operator

/// Runs `sraft member ARGS --endpoints ...` against the cluster.
fn member(cluster: &TestCluster, args: &[&str]) -> Output {
    let mut command = Command::new(sraft_bin());
    command
        .arg("member")
        .args(["--endpoints", &cluster.endpoints_arg()])
        .args(args);
    let output = command.output().expect("run sraft member");
    eprintln!(
        "sraft member {}: {} {}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    output
}

fn member_ok(cluster: &TestCluster, args: &[&str]) -> String {
    let output = member(cluster, args);
    assert!(
        output.status.success(),
        "sraft member {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The command fails with exit status 1 and one line naming `reason`.
fn member_refused(cluster: &TestCluster, args: &[&str], reason: &str) {
    let output = member(cluster, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(reason), "{args:?}: {stderr}");
}

/// `sraft member list --json`: id → voter.
fn members(cluster: &TestCluster) -> BTreeMap<u64, bool> {
    let text = member_ok(cluster, &["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&text).expect("member list is JSON");
    rows.as_array()
        .expect("an array")
        .iter()
        .map(|row| {
            (
                row["id"].as_u64().expect("id"),
                row["voter"].as_bool().expect("voter"),
            )
        })
        .collect()
}

fn voters(ids: &[u64]) -> BTreeMap<u64, bool> {
    ids.iter().map(|&id| (id, true)).collect()
}

fn add_arg(cluster: &TestCluster, i: usize) -> String {
    cluster.peer_addr(i).to_string()
}

/// Every node of `nodes` has applied the same index, and the highest.
fn assert_converged(cluster: &TestCluster, nodes: &[usize]) {
    let converged = poll_until(deadline_in(Duration::from_secs(10)), || {
        let applied: Vec<u64> = nodes
            .iter()
            .map(|&i| cluster.info(i).map_or(0, |info| info.applied_index()))
            .collect();
        (applied.iter().all(|a| *a == applied[0] && *a > 0)).then_some(applied[0])
    });
    assert!(converged.is_some(), "nodes {nodes:?} did not converge");
}

/// Starts spare `i` with `--join` and waits until it says so.
fn start_joining(cluster: &mut TestCluster, i: usize) {
    cluster.start_spare(i);
    let joining = cluster.wait_info(i, deadline_in(Duration::from_secs(10)), |info| {
        info.role() == "joining"
    });
    assert!(joining.is_some(), "node {i} does not say it is joining");
}

fn run_for(duration: Duration) {
    thread::sleep(duration);
}

// ------------------------------------------------------------- tests

#[test]
fn grow_three_to_five_under_writes() {
    let mut cluster = TestCluster::builder(3).spares(2).start();
    cluster.wait_for_leader(deadline_in(Duration::from_secs(10)));
    let workload = Workload::start(&cluster, &[0, 1, 2]);
    run_for(Duration::from_millis(500));
    for new in [3, 4] {
        start_joining(&mut cluster, new);
        let out = member_ok(
            &cluster,
            &["add", &new.to_string(), &add_arg(&cluster, new)],
        );
        assert!(out.contains(&format!("node {new} is a voter")), "{out}");
        run_for(Duration::from_millis(300));
    }
    assert_eq!(members(&cluster), voters(&[0, 1, 2, 3, 4]));
    // `sraft status` given the original peer list finds the new members.
    let status = Command::new(sraft_bin())
        .args(["status", "--json", "--peers", &cluster.peers_arg()])
        .output()
        .expect("run sraft status");
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status JSON");
    let ids: Vec<u64> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["up"] == true)
        .map(|r| r["node_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4], "{rows}");
    // The new members serve clients too.
    workload.retarget(&cluster, &[0, 1, 2, 3, 4]);
    run_for(Duration::from_secs(1));
    workload.finish(&cluster, "grow 3 -> 5");
    assert_converged(&cluster, &[0, 1, 2, 3, 4]);
    // Five voters: two of them may fail.
    let leader = cluster
        .wait_for_leader(deadline_in(Duration::from_secs(5)))
        .leader;
    cluster.kill(leader);
    let other = (0..5).find(|i| *i != leader).unwrap();
    cluster.kill(other);
    let rest: Vec<usize> = (0..5).filter(|i| *i != leader && *i != other).collect();
    let answered = poll_until(deadline_in(Duration::from_secs(10)), || {
        match cluster.call(
            rest[0],
            &[b"SET", b"after", b"two-failures"],
            REQUEST_TIMEOUT,
        ) {
            Ok(Value::Simple(s)) if s == "OK" => Some(()),
            _ => None,
        }
    });
    assert!(answered.is_some(), "three of five voters did not commit");
}

#[test]
fn replace_a_failed_node_under_writes() {
    let mut cluster = TestCluster::builder(3).spares(1).start();
    let leader = cluster
        .wait_for_leader(deadline_in(Duration::from_secs(10)))
        .leader;
    let failed = (0..3).find(|i| *i != leader).unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != failed).collect();
    let workload = Workload::start(&cluster, &survivors);
    run_for(Duration::from_millis(300));
    cluster.kill(failed);
    start_joining(&mut cluster, 3);
    let out = member_ok(&cluster, &["add", "3", &add_arg(&cluster, 3)]);
    assert!(out.contains("node 3 is a voter"), "{out}");
    member_ok(&cluster, &["remove", &failed.to_string()]);
    let mut expected: Vec<u64> = survivors.iter().map(|&i| i as u64).collect();
    expected.push(3);
    assert_eq!(members(&cluster), voters(&expected));
    let mut now: Vec<usize> = survivors.clone();
    now.push(3);
    workload.retarget(&cluster, &now);
    run_for(Duration::from_secs(1));
    workload.finish(&cluster, "replace a failed node");
    assert_converged(&cluster, &now);
}

#[test]
fn remove_the_leader_under_writes() {
    let mut cluster = TestCluster::builder(3).start();
    let leader = cluster
        .wait_for_leader(deadline_in(Duration::from_secs(10)))
        .leader;
    let rest: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let workload = Workload::start(&cluster, &rest);
    run_for(Duration::from_millis(300));
    member_ok(&cluster, &["remove", &leader.to_string()]);
    // It hands over, hears that its removal committed, and stops by itself.
    let exited = poll_until(deadline_in(Duration::from_secs(10)), || {
        cluster.exit_status(leader)
    });
    let status = exited.expect("the removed leader did not stop");
    assert!(status.success(), "the removed leader exited with {status}");
    cluster.kill(leader); // Reaped: the harness no longer counts it.
    let log = std::fs::read_to_string(cluster.log_path(leader)).unwrap();
    assert!(
        log.contains("removed from the cluster"),
        "the removed leader does not say so"
    );
    run_for(Duration::from_secs(1));
    workload.finish(&cluster, "remove the leader");
    assert_eq!(
        members(&cluster),
        voters(&rest.iter().map(|&i| i as u64).collect::<Vec<_>>())
    );
    let new = cluster.wait_for_leader(deadline_in(Duration::from_secs(5)));
    assert_ne!(new.leader, leader);
    assert_converged(&cluster, &rest);
}

#[test]
fn a_learner_receives_the_log_but_never_votes() {
    let mut cluster = TestCluster::builder(3).spares(1).start();
    let first = cluster.wait_for_leader(deadline_in(Duration::from_secs(10)));
    start_joining(&mut cluster, 3);
    let out = member_ok(&cluster, &["add", "3", &add_arg(&cluster, 3), "--learner"]);
    assert!(out.contains("added as a learner"), "{out}");
    cluster.set(0, "seen-by", "the learner");
    let learner = cluster.wait_info(3, deadline_in(Duration::from_secs(5)), |info| {
        info.role() == "learner" && info.applied_index() > 0
    });
    assert!(learner.is_some(), "node 3 is not a learner with the log");
    // Elections happen; the learner takes no part in them.
    cluster.kill(first.leader);
    let second = cluster.wait_for_leader_above(first.term, deadline_in(Duration::from_secs(10)));
    assert_ne!(second.leader, 3);
    let elected = poll_until(deadline_in(Duration::from_secs(5)), || {
        cluster.get(3, "seen-by").filter(|v| v == "the learner")
    });
    assert!(elected.is_some(), "the learner does not serve the log");
    let log = std::fs::read_to_string(cluster.log_path(3)).unwrap();
    assert!(!log.contains("[VOTE]"), "the learner voted:\n{log}");
    let voters_log = std::fs::read_to_string(cluster.log_path(second.leader)).unwrap();
    assert!(
        voters_log.contains("[ELECTION"),
        "no election in the voters' logs"
    );
    assert_eq!(
        members(&cluster).get(&3),
        Some(&false),
        "node 3 is not listed as a learner"
    );
}

#[test]
fn bad_membership_changes_are_refused_and_change_nothing() {
    let mut cluster = TestCluster::builder(3).spares(1).start();
    let leader = cluster
        .wait_for_leader(deadline_in(Duration::from_secs(10)))
        .leader;
    let before = members(&cluster);
    // An id that exists.
    member_refused(
        &cluster,
        &["add", "1", &add_arg(&cluster, 3)],
        "node 1 is already a member",
    );
    // A node nobody can reach (spare 3 is not running yet).
    member_refused(
        &cluster,
        &["add", "3", &add_arg(&cluster, 3)],
        "is unreachable",
    );
    // Not a member; not a learner.
    member_refused(&cluster, &["remove", "7"], "node 7 is not a member");
    member_refused(&cluster, &["promote", "0"], "node 0 is not a learner");
    assert_eq!(
        members(&cluster),
        before,
        "a refused change changed the cluster"
    );
    // A second change while one is in flight: with both followers down
    // the first cannot commit, and the leader leads on until its quorum
    // check (follower_timeout_ms_min, 300 ms) finds them gone.
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    start_joining(&mut cluster, 3);
    for &f in &followers {
        cluster.kill(f);
    }
    let leader_addr = cluster.client_addr(leader);
    let spare = add_arg(&cluster, 3);
    let first = thread::spawn(move || {
        let args: [&[u8]; 6] = [
            b"RAFT",
            b"MEMBER",
            b"ADD",
            b"3",
            spare.as_bytes(),
            b"LEARNER",
        ];
        sraft::client::call(leader_addr, &args, REQUEST_TIMEOUT)
    });
    thread::sleep(Duration::from_millis(50));
    let remove = followers[0].to_string();
    let second = cluster.call(
        leader,
        &[b"RAFT", b"MEMBER", b"REMOVE", remove.as_bytes()],
        REQUEST_TIMEOUT,
    );
    match second {
        Ok(Value::Error(e)) => assert!(
            e.contains("is not committed yet; one at a time")
                && e.contains("the cluster is unchanged"),
            "{e}"
        ),
        other => panic!("a second change in flight was answered {other:?}"),
    }
    match first.join().unwrap() {
        Ok(Value::Error(e)) => assert!(e.contains("did not commit"), "{e}"),
        other => panic!("a change without a quorum was answered {other:?}"),
    }
    for &f in &followers {
        cluster.restart(f);
    }
    // Only the voters are asked: node 3 may have been left out (below).
    cluster.wait_for_leader_among(&[0, 1, 2], 0, deadline_in(Duration::from_secs(10)));
    // The refused removal never happened; the first change commits or is
    // overwritten, depending on which node the voters elect.
    let after = members(&cluster);
    for id in 0..3u64 {
        assert_eq!(after.get(&id), Some(&true), "voter {id} is gone: {after:?}");
    }
    match after.get(&3) {
        // Committed (the old leader, whose log has it, won): node 3 is a
        // learner and follows the leader like everyone else.
        Some(false) => {
            println!("node 3's addition committed");
            cluster.wait_for_leader(deadline_in(Duration::from_secs(10)));
        }
        // Overwritten (a follower without it won): node 3 is no member,
        // and nothing it believes counts; nobody sends it anything.
        None => println!("node 3's addition was overwritten"),
        Some(true) => panic!("node 3 was added as a voter: {after:?}"),
    }
}

#[test]
fn the_last_voter_cannot_be_removed() {
    let cluster = TestCluster::builder(1).start();
    cluster.wait_for_leader(deadline_in(Duration::from_secs(10)));
    member_refused(&cluster, &["remove", "0"], "node 0 is the last voter");
    assert_eq!(members(&cluster), voters(&[0]));
}

#[test]
fn a_joining_node_refuses_clients_until_added() {
    let mut cluster = TestCluster::builder(1).spares(1).start();
    cluster.wait_for_leader(deadline_in(Duration::from_secs(10)));
    start_joining(&mut cluster, 1);
    match cluster.call(1, &[b"SET", b"k", b"v"], REQUEST_TIMEOUT) {
        Ok(Value::Error(e)) => assert!(e.starts_with("JOINING"), "{e}"),
        other => panic!("a joining node answered {other:?}"),
    }
    member_ok(&cluster, &["add", "1", &add_arg(&cluster, 1)]);
    // Added, it serves clients (forwarding to the leader), and a restart
    // takes its configuration from its own log.
    cluster.set(1, "k", "v");
    cluster.kill(1);
    cluster.restart(1);
    let back = cluster.wait_info(1, deadline_in(Duration::from_secs(10)), |info| {
        info.role() == "follower" || info.role() == "leader"
    });
    assert!(back.is_some(), "the restarted member does not rejoin");
    assert_eq!(cluster.get(1, "k").as_deref(), Some("v"));
}
