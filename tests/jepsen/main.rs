//! Jepsen-style tests against real `sraft` processes: five nodes on
//! loopback, concurrent RESP clients recording every operation's real-time
//! interval, a nemesis that SIGKILLs, restarts, pauses and resumes nodes
//! (the leader and its primary sub-leader among them), then the history is
//! checked for linearizability, key by key.
//!
//! Recording rules (what may be claimed about an operation):
//! - a reply is a completed operation with that result;
//! - a write answered `-TRYAGAIN ...` or `-ERR busy` had no effect (the
//!   server returns them only when no attempt of the write can have reached
//!   a state machine; see `src/server/connection.rs`), so it is left out;
//! - any other error to a write, a client-side timeout or a broken
//!   connection is indeterminate (`complete_us: None`): it may take effect
//!   at any time after its invocation, or never. The client then opens a
//!   new connection, so a new server-side session;
//! - a read that failed constrains nothing and is left out.
//!
//! Addresses: node i binds 127.0.0.(11 + i), so that a packet filter can
//! tell the nodes apart (`sraft_testkit::partition`); ports are the
//! toolkit's (`sraft_testkit::ports`).
//!
//! Parts: `workload.rs` (clients, the run), `nemesis.rs` (process
//! faults, partitions, convergence); the cluster, the RESP client, INFO and
//! the firewall are the toolkit's (`sraft_testkit`).
//!
//! Security is on (DESIGN.md 9): the nodes share a cluster secret and speak
//! TLS on both ports, and every client connection starts with AUTH.

mod nemesis;
mod workload;

use nemesis::{PartitionOutcome, assert_converges, partition_nemesis, process_nemesis};
use sraft::kv::linearizability::{KvOp, Operation, Outcome, Verdict, check};
use sraft::kv::resp::Value;
use sraft_testkit::cluster::node_ip;
use sraft_testkit::history::{Recorder, check_or_panic, classify};
use sraft_testkit::{Auth, Conn, Firewall, firewall_or_skip};
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use workload::{
    CLIENT_TIMEOUT, NODES, Options, env_secs, run_workload, run_workload_with, seed_from_env,
    start_cluster, wait_for_leader,
};

/// Cluster tests share two cores with other builders: one at a time.
static CLUSTER_LOCK: Mutex<()> = Mutex::new(());

fn cluster_lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn linearizable_under_kills_pauses_and_leader_failover() {
    let _guard = cluster_lock();
    let seed = seed_from_env();
    let nemesis_for = env_secs("JEPSEN_NEMESIS_SECS", 25);
    run_workload("lin", seed, |cluster, rng| {
        process_nemesis(cluster, rng, nemesis_for)
    });
}

/// Partitions of the real network between real processes (nftables drop
/// rules between the nodes' own loopback addresses): the leader isolated,
/// a 2/3 split, the primary sub-leader isolated, a one-way cut of the
/// leader's outbound links, and a bridge node that sees both halves. The
/// history must be linearizable and, once healed, every node must apply
/// the same log. Skips, saying why, where nftables cannot be used (not
/// root, no `nft`); CI sets `SRAFT_REQUIRE_PARTITIONS` so it cannot skip
/// there.
/// The same workload and faults with lease reads (docs/DESIGN.md 3.8):
/// leaders answer GETs locally while their lease holds; a killed or
/// paused leader's successor must not be elected while it still does.
#[test]
fn lease_reads_linearizable_under_kills_pauses_and_leader_failover() {
    let _guard = cluster_lock();
    let seed = seed_from_env();
    let nemesis_for = env_secs("JEPSEN_NEMESIS_SECS", 15);
    let options = Options {
        extra_args: &["--read-mode", "lease"],
        ..Options::default()
    };
    run_workload_with("lease", seed, options, |cluster, rng| {
        process_nemesis(cluster, rng, nemesis_for)
    });
}

/// The same workload and faults with clients that talk only to followers
/// (issue 12): every write and read is forwarded to the leader over the
/// peer transport, and a leader's death must cost them no acknowledged
/// write and no stale read.
#[test]
fn clients_on_followers_linearizable_under_kills_pauses_and_leader_failover() {
    let _guard = cluster_lock();
    let seed = seed_from_env();
    let nemesis_for = env_secs("JEPSEN_NEMESIS_SECS", 15);
    let options = Options {
        followers_only: true,
        ..Options::default()
    };
    run_workload_with("followers", seed, options, |cluster, rng| {
        process_nemesis(cluster, rng, nemesis_for)
    });
}

/// Partitions of the real network between real processes (nftables drop
/// rules between the nodes' own loopback addresses): the leader isolated,
/// a 2/3 split, the primary sub-leader isolated, a one-way cut of the
/// leader's outbound links, and a bridge node that sees both halves. The
/// history must be linearizable and, once healed, every node must apply
/// the same log. Skips, saying why, where nftables cannot be used (not
/// root, no `nft`); CI sets `SRAFT_REQUIRE_PARTITIONS` so it cannot skip
/// there.
#[test]
fn linearizable_under_network_partitions() {
    partitions_test(
        "linearizable_under_network_partitions",
        "part",
        Options::default(),
    );
}

/// The same partitions with lease reads (docs/DESIGN.md 3.8): an isolated
/// leader keeps answering GETs from its lease, which must end before the
/// majority elects its successor.
#[test]
fn lease_reads_linearizable_under_network_partitions() {
    partitions_test(
        "lease_reads_linearizable_under_network_partitions",
        "lease-part",
        Options {
            extra_args: &["--read-mode", "lease"],
            ..Options::default()
        },
    );
}

fn partitions_test(test: &str, name: &str, options: Options) {
    let _guard = cluster_lock();
    let Some(firewall) = firewall_or_skip(test) else {
        return;
    };
    let table = firewall.table().to_string();
    let seed = seed_from_env();
    let nemesis_for = env_secs("JEPSEN_PARTITION_SECS", 20);
    let mut firewall = firewall;
    let mut outcome = PartitionOutcome::default();
    let cluster = run_workload_with(name, seed, options, |cluster, rng| {
        partition_nemesis(cluster, &mut firewall, rng, nemesis_for, &mut outcome)
    });
    assert!(
        outcome.majority_elected > 0,
        "no isolated leader was ever replaced by the majority: do the cuts work? {outcome:?}\n{}",
        cluster.log_tails(40)
    );
    assert_converges(&cluster, Duration::from_secs(15));
    drop(firewall);
    assert!(
        !Firewall::table_exists(&table),
        "nftables table {table} left behind"
    );
    eprintln!("[jepsen] {name} partitions: {outcome:?}");
}

/// The checker, fed through the same recording types, rejects a stale read:
/// a GET that starts after a SET was acknowledged must not see the old value.
#[test]
fn checker_rejects_a_stale_read_after_an_acknowledged_write() {
    let recorder = Recorder::new();
    let op = |client, invoke_us, complete_us, op, result| Operation {
        client,
        key: b"k0".to_vec(),
        invoke_us,
        complete_us,
        op,
        result,
    };
    recorder.record(op(0, 0, Some(10), KvOp::Set(b"a".to_vec()), Outcome::Ok));
    recorder.record(op(1, 20, Some(30), KvOp::Set(b"b".to_vec()), Outcome::Ok));
    // An indeterminate write that could explain "a" only if it were "a".
    recorder.record(op(2, 5, None, KvOp::Set(b"c".to_vec()), Outcome::Unknown));
    let fresh = op(
        3,
        40,
        Some(50),
        KvOp::Get,
        Outcome::Value(Some(b"b".to_vec())),
    );
    let stale = op(
        4,
        60,
        Some(70),
        KvOp::Get,
        Outcome::Value(Some(b"a".to_vec())),
    );

    recorder.record(fresh);
    assert_eq!(check(&recorder.history()), Verdict::Linearizable);

    recorder.record(stale.clone());
    match check(&recorder.history()) {
        Verdict::NotLinearizable(v) => {
            assert_eq!(v.key, b"k0");
            assert_eq!(v.stuck, stale, "{v}");
        }
        other => panic!("stale read accepted: {other:?}"),
    }

    // The same read concurrent with the second SET is fine.
    let mut concurrent = recorder.history();
    concurrent.pop();
    concurrent.push(op(
        4,
        25,
        Some(70),
        KvOp::Get,
        Outcome::Value(Some(b"a".to_vec())),
    ));
    assert_eq!(check(&concurrent), Verdict::Linearizable);
}

/// Write with retries until acknowledged, through node `i`, then the next
/// ones in turn. Retrying SET of the same value is harmless whatever the
/// earlier attempts did.
fn set_acknowledged(
    conn: &mut Option<Conn>,
    (addrs, auth): (&[SocketAddr], &Auth),
    i: usize,
    key: &[u8],
    value: &[u8],
) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    while Instant::now() < until {
        let c = conn.get_or_insert_with(|| {
            Conn::new(addrs[(i + attempt) % addrs.len()], auth, CLIENT_TIMEOUT)
        });
        attempt += 1;
        match c.call(&[b"SET", key, value]) {
            Ok(Value::Simple(s)) if s == "OK" => return,
            Ok(_) => {}
            Err(_) => *conn = None,
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("SET {} never acknowledged", String::from_utf8_lossy(key));
}

#[test]
fn acknowledged_writes_survive_kill_9_of_every_node() {
    let _guard = cluster_lock();
    let started = Instant::now();
    let mut cluster = start_cluster("durable", &[]);
    assert!(
        wait_for_leader(&cluster, Duration::from_secs(20)).is_some(),
        "no leader\n{}",
        cluster.log_tails(40)
    );
    let addrs = cluster.client_addrs();
    let auth = cluster.auth().clone();
    let recorder = Recorder::new();
    const KEYS_N: usize = 200;
    let mut conn = None;
    for i in 0..KEYS_N {
        let key = format!("durable-{i}").into_bytes();
        let value = format!("value-{i}").into_bytes();
        let invoke_us = recorder.now_us();
        set_acknowledged(&mut conn, (&addrs, &auth), i, &key, &value);
        recorder.record(Operation {
            client: 0,
            key,
            invoke_us,
            complete_us: Some(recorder.now_us()),
            op: KvOp::Set(value),
            result: Outcome::Ok,
        });
    }
    drop(conn);
    eprintln!("[jepsen] {KEYS_N} writes acknowledged; kill -9 every node");
    cluster.kill_all();
    cluster.recover_all();
    assert!(
        wait_for_leader(&cluster, Duration::from_secs(20)).is_some(),
        "no leader after restart\n{}",
        cluster.log_tails(40)
    );
    let mut missing = Vec::new();
    for i in 0..KEYS_N {
        let key = format!("durable-{i}").into_bytes();
        let until = Instant::now() + Duration::from_secs(20);
        let mut conn = Conn::new(addrs[i % NODES], &auth, CLIENT_TIMEOUT);
        loop {
            assert!(Instant::now() < until, "GET durable-{i} never answered");
            let invoke_us = recorder.now_us();
            let value = match conn.call(&[b"GET", &key]) {
                Ok(Value::Bulk(value)) => Some(value),
                Ok(Value::NullBulk) => None,
                _ => {
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if value.as_deref() != Some(format!("value-{i}").as_bytes()) {
                missing.push((
                    i,
                    value
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v).to_string()),
                ));
            }
            recorder.record(Operation {
                client: 1,
                key: key.clone(),
                invoke_us,
                complete_us: Some(recorder.now_us()),
                op: KvOp::Get,
                result: Outcome::Value(value),
            });
            break;
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged writes lost or changed after kill -9 of every node: {missing:?}\n{}",
        cluster.log_tails(40)
    );
    check_or_panic(&cluster, &recorder.history());
    eprintln!(
        "[jepsen] durability: {KEYS_N} keys read back after kill -9 of all nodes in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// A write whose forward to the leader failed may still commit later, so the
/// follower must not answer it with an error that claims "no effect".
/// Leader and one follower alive, the other three killed: the leader takes
/// the write, replicates it to the follower but cannot commit it; then the
/// leader is killed too, so the follower's forward breaks and it retries in
/// vain until its deadline. Restarting the three lets the follower, whose
/// log holds the write, win the election and commit it.
#[test]
fn a_write_answered_as_not_executed_never_takes_effect() {
    let _guard = cluster_lock();
    let mut cluster = start_cluster("noeffect", &[]);
    let Some((leader, _)) = wait_for_leader(&cluster, Duration::from_secs(20)) else {
        panic!("no leader\n{}", cluster.log_tails(40));
    };
    let follower = (leader + 1) % NODES;
    let others: Vec<usize> = (0..NODES)
        .filter(|&i| i != leader && i != follower)
        .collect();
    for &i in &others {
        cluster.kill(i);
    }
    let recorder = Recorder::new();
    let mut conn = cluster.conn(follower, CLIENT_TIMEOUT);
    let op = KvOp::Set(b"committed-later".to_vec());
    let invoke_us = recorder.now_us();
    let request = thread::spawn(move || {
        conn.call_tracking_sent(&[b"SET".as_slice(), b"probe", b"committed-later"])
    });
    thread::sleep(Duration::from_secs(1));
    cluster.kill(leader);
    let reply = request.join().expect("client thread");
    eprintln!(
        "[jepsen] SET through follower {follower} without a quorum, leader {leader} killed after 1 s: {reply:?}"
    );
    let classified = classify(&op, reply);
    recorder.record_classified(0, b"probe", invoke_us, op, &classified);
    for &i in &others {
        cluster.restart(i);
    }
    assert!(
        wait_for_leader(&cluster, Duration::from_secs(20)).is_some(),
        "no leader after restarting nodes {others:?}\n{}",
        cluster.log_tails(40)
    );
    let until = Instant::now() + Duration::from_secs(20);
    let mut conn = cluster.conn(others[0], CLIENT_TIMEOUT);
    loop {
        assert!(Instant::now() < until, "GET probe never answered");
        let invoke_us = recorder.now_us();
        let value = match conn.call(&[b"GET".as_slice(), b"probe"]) {
            Ok(Value::Bulk(value)) => Some(value),
            Ok(Value::NullBulk) => None,
            _ => {
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        eprintln!("[jepsen] GET probe after the restart: {value:?}");
        recorder.record(Operation {
            client: 1,
            key: b"probe".to_vec(),
            invoke_us,
            complete_us: Some(recorder.now_us()),
            op: KvOp::Get,
            result: Outcome::Value(value),
        });
        break;
    }
    check_or_panic(&cluster, &recorder.history());
}

/// The partition tool itself: a rule cuts exactly the direction it names,
/// healing restores it, and the table is gone after the firewall is.
#[test]
fn a_cut_drops_one_direction_of_one_link_until_healed() {
    let Some(mut firewall) = firewall_or_skip("a_cut_drops_one_direction_of_one_link_until_healed")
    else {
        return;
    };
    let table = firewall.table().to_string();
    let a = TcpListener::bind((node_ip(0), 0)).expect("bind a");
    let b = TcpListener::bind((node_ip(1), 0)).expect("bind b");
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    // A connection from `from`'s address to `to`, as a node's sender opens it.
    let reaches = |from: SocketAddr, to: SocketAddr| {
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        socket.bind(&SocketAddr::new(from.ip(), 0).into()).unwrap();
        socket
            .connect_timeout(&to.into(), Duration::from_millis(300))
            .is_ok()
    };
    let c_addr = SocketAddr::from((node_ip(2), 1));
    assert!(reaches(a_addr, b_addr) && reaches(b_addr, a_addr));
    firewall.cut(a_addr, b_addr);
    assert!(
        !reaches(a_addr, b_addr),
        "a -> b still connects after the cut"
    );
    assert!(reaches(b_addr, a_addr), "the cut also dropped b -> a");
    assert!(reaches(c_addr, b_addr), "the cut also dropped c -> b");
    firewall.heal();
    assert!(reaches(a_addr, b_addr), "a -> b still cut after healing");
    drop(firewall);
    assert!(!Firewall::table_exists(&table), "table {table} left behind");
}
