//! Forwarding over the peer transport (DESIGN.md 4.4, issue 12), with real
//! processes on loopback: a follower relays client writes and reads to the
//! leader as peer frames, finds the leader's real client address in its
//! hello, and the client port no longer accepts the internal commands that
//! forwarding once used.

use sraft::kv::command::{SetCondition, WriteOp};
use sraft::kv::resp::Value;
use sraft::kv::store::KvCommand;
use sraft_testkit::{CALL_TIMEOUT, TestCluster, deadline_in};
use std::time::{Duration, Instant};

/// Loose on purpose: a loaded 2-core machine, debug builds.
const ELECTION_DEADLINE: Duration = Duration::from_secs(20);
/// How long INFO may take to show an address learned from a hello.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// The bound on a write through a follower while the leader is frozen:
/// the server's request timeout (5 s) plus slack for a loaded machine.
const FROZEN_LEADER_BOUND: Duration = Duration::from_secs(8);

fn followers(cluster: &TestCluster, leader: usize) -> Vec<usize> {
    (0..cluster.len()).filter(|i| *i != leader).collect()
}

/// Issue 12: "any per-node client ports (not peer + 1000) work for
/// forwarding and `INFO leader_addr`".
#[test]
fn forwarding_and_leader_addr_work_with_client_ports_of_the_nodes_own_choosing() {
    let cluster = TestCluster::builder(3).own_client_ports().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let leader_addr = cluster.client_addr(lead.leader).to_string();
    for f in followers(&cluster, lead.leader) {
        let info = cluster.wait_info(f, deadline_in(HELLO_DEADLINE), |info| {
            info.get("leader_addr") == leader_addr
        });
        assert!(
            info.is_some(),
            "node {f}: INFO leader_addr is not the leader's client address {leader_addr}: {:?}",
            cluster.info(f).map(|i| i.get("leader_addr").to_string())
        );
    }
    for f in followers(&cluster, lead.leader) {
        for n in 0..20 {
            cluster.set(f, &format!("via-{f}-{n}"), &format!("v{n}"));
        }
    }
    for i in 0..cluster.len() {
        for f in followers(&cluster, lead.leader) {
            assert_eq!(
                cluster.get(i, &format!("via-{f}-19")).as_deref(),
                Some("v19"),
                "via-{f}-19 read through node {i}"
            );
        }
    }
    // Reads and writes that the leader refuses come back as its errors.
    let f = followers(&cluster, lead.leader)[0];
    let key = format!("via-{f}-0");
    let reply = cluster.call(f, &[b"INCR", key.as_bytes()], CALL_TIMEOUT);
    assert!(
        matches!(&reply, Ok(Value::Error(e)) if e.starts_with("ERR value is not an integer")),
        "{reply:?}"
    );
}

/// Issue 12: "a forged session cannot be injected from the client port".
/// The internal commands of the old client-port forwarding are unknown
/// commands now, on the leader as on a follower, with or without a
/// well-formed log command behind them.
#[test]
fn the_client_port_refuses_the_internal_forwarding_commands() {
    let cluster = TestCluster::builder(3).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    // A write under another client's session: if it were appended, the
    // victim's next write with this sequence number would be swallowed.
    let forged = KvCommand {
        client_id: 12345,
        seq: 1,
        op: WriteOp::Set {
            key: b"forged".to_vec(),
            value: b"injected".to_vec(),
            condition: SetCondition::Always,
            get: false,
        },
    }
    .encode();
    for node in [lead.leader, followers(&cluster, lead.leader)[0]] {
        for args in [
            vec![b"SRAFT.PROPOSE".to_vec(), forged.clone()],
            vec![b"sraft.propose".to_vec(), forged.clone()],
            vec![b"SRAFT.LOCAL".to_vec(), b"GET".to_vec(), b"forged".to_vec()],
        ] {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let reply = cluster.call(node, &args, CALL_TIMEOUT);
            assert!(
                matches!(&reply, Ok(Value::Error(e)) if e.starts_with("ERR unknown command")),
                "node {node}: {:?} answered {reply:?}",
                String::from_utf8_lossy(args[0])
            );
        }
    }
    // Nothing reached the log: a linearizable read sees no such key.
    for i in 0..cluster.len() {
        assert_eq!(cluster.get(i, "forged"), None, "node {i}");
    }
}

/// Issue 12: "a write through a follower during a leader's SIGSTOP is
/// answered within your bound". The frozen leader accepts the forward and
/// never answers; the follower abandons it as soon as it learns of a new
/// leader and retries there (the session deduplicates the retry), or,
/// failing that, answers with an error that says what happened, within
/// the request timeout.
#[test]
fn a_write_through_a_follower_while_the_leader_is_frozen_is_answered_in_bounded_time() {
    let mut cluster = TestCluster::builder(3).own_client_ports().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let f = followers(&cluster, lead.leader)[0];
    cluster.set(f, "before", "1");
    cluster.stop(lead.leader);
    let started = Instant::now();
    let reply = cluster.call(f, &[b"SET", b"during", b"2"], CALL_TIMEOUT);
    let elapsed = started.elapsed();
    eprintln!(
        "write through node {f} with leader {} frozen: {reply:?} after {elapsed:?}",
        lead.leader
    );
    cluster.cont(lead.leader);
    assert!(
        elapsed < FROZEN_LEADER_BOUND,
        "answered after {elapsed:?}, bound {FROZEN_LEADER_BOUND:?}"
    );
    match &reply {
        Ok(Value::Simple(ok)) if ok == "OK" => {
            // Acknowledged: committed by the new leader, visible everywhere.
            let new = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION_DEADLINE));
            for i in 0..cluster.len() {
                assert_eq!(
                    cluster.get(i, "during").as_deref(),
                    Some("2"),
                    "node {i}, leader {}",
                    new.leader
                );
            }
        }
        Ok(Value::Error(e)) => assert!(
            e.starts_with("TRYAGAIN") || e.starts_with("ERR timeout"),
            "an error that does not say what happened: {e}"
        ),
        other => panic!("write answered {other:?}"),
    }
}

/// A request that waits for a leader gets an error naming the situation
/// when none is elected within the request timeout: here a lone follower
/// of a cluster whose other nodes are frozen.
#[test]
fn a_request_without_a_leader_gets_tryagain_naming_the_situation() {
    let mut cluster = TestCluster::builder(3).own_client_ports().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let f = followers(&cluster, lead.leader)[0];
    let other = followers(&cluster, lead.leader)[1];
    cluster.stop(other);
    cluster.stop(lead.leader);
    // The follower hears nothing, campaigns and cannot win: no leader.
    let started = Instant::now();
    let write = cluster.call(f, &[b"SET", b"k", b"v"], CALL_TIMEOUT);
    let read = cluster.call(f, &[b"GET", b"k"], CALL_TIMEOUT);
    let elapsed = started.elapsed();
    cluster.cont(other);
    cluster.cont(lead.leader);
    eprintln!("without a leader: {write:?}, {read:?} after {elapsed:?}");
    // The write may have been forwarded to the frozen leader before the
    // follower gave up on it: then its outcome is unknown, and says so. A
    // new connection first registers its session: when that is what
    // timed out, the write itself was never sent.
    assert!(
        matches!(&write, Ok(Value::Error(e))
            if e.starts_with("TRYAGAIN no leader elected yet (term ")
                || e == "TRYAGAIN timeout opening a client session: the leader did not commit it in time; the write was not applied"
                || e == "ERR timeout: the write may or may not have been applied"),
        "{write:?}"
    );
    assert!(
        matches!(&read, Ok(Value::Error(e)) if e.starts_with("TRYAGAIN no leader elected yet (term ")),
        "{read:?}"
    );
    assert!(elapsed < 2 * FROZEN_LEADER_BOUND, "{elapsed:?}");
}
