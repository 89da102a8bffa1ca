//! Snapshots and log compaction on real processes (DESIGN.md 5; issue 10):
//! the data dir stays bounded while the log grows, every acknowledged write
//! survives kill -9 of every node (restart = snapshot + WAL tail), a wiped
//! follower catches up by InstallSnapshot, and a node killed while it
//! writes a snapshot restarts from the older one plus the WAL.

use sraft::kv::resp::{RespLimits, Value, parse_reply};
use sraft_testkit::{TestCluster, deadline_in, poll_until};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

const SNAPSHOT_ENTRIES: u64 = 1000;
const KEYS: usize = 50_000;
const WRITERS: usize = 8;
/// Commands written before their replies are read, per connection.
const PIPELINE: usize = 100;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const ELECTION: Duration = Duration::from_secs(20);
/// Small segments, so that compaction has whole segments to delete.
const SEGMENT_BYTES: u64 = 1 << 20;

fn value_of(key: usize) -> String {
    format!("value-{key:06}-{}", "v".repeat(40))
}

/// A cluster whose nodes snapshot every `SNAPSHOT_ENTRIES` entries, with
/// 1 MiB WAL segments; the config file lives in `config_dir`.
fn cluster(config_dir: &Path) -> TestCluster {
    let config = config_dir.join("sraft.toml");
    fs::write(
        &config,
        format!("[storage]\nsegment_bytes_max = {SEGMENT_BYTES}\n"),
    )
    .expect("write the config file");
    TestCluster::builder(3)
        .arg("--snapshot-entries")
        .arg(&SNAPSHOT_ENTRIES.to_string())
        .arg("--config")
        .arg(&config.display().to_string())
        .start()
}

/// One client connection, kept across calls (one client session).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, CALL_TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `commands` pipelined, `PIPELINE` at a time, and returns the
    /// replies.
    fn send(&mut self, commands: &[Vec<Vec<u8>>]) -> Vec<Value> {
        let mut replies = Vec::with_capacity(commands.len());
        for batch in commands.chunks(PIPELINE) {
            let mut out = Vec::new();
            for command in batch {
                let args = command.iter().cloned().map(Value::Bulk).collect();
                out.extend(Value::Array(args).to_bytes());
            }
            self.stream.write_all(&out).expect("send a batch");
            let mut got = 0;
            while got < batch.len() {
                match parse_reply(&self.buf, &RespLimits::default()).expect("a RESP reply") {
                    Some((value, used)) => {
                        self.buf.drain(..used);
                        replies.push(value);
                        got += 1;
                    }
                    None => {
                        let mut chunk = [0u8; 64 << 10];
                        let n = self.stream.read(&mut chunk).expect("read replies");
                        assert!(
                            n > 0,
                            "connection closed with {} replies missing",
                            batch.len() - got
                        );
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
        replies
    }

    fn call(&mut self, args: &[&str]) -> Value {
        let command = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.send(&[command]).remove(0)
    }
}

/// Sends `commands` pipelined on a new connection; returns the replies.
fn pipeline(addr: SocketAddr, commands: &[Vec<Vec<u8>>]) -> Vec<Value> {
    Conn::open(addr).send(commands)
}

/// Writes keys `keys` through node `addr` with `WRITERS` connections;
/// every SET must be acknowledged.
fn write_keys(addr: SocketAddr, keys: std::ops::Range<usize>) {
    let per = keys.len().div_ceil(WRITERS);
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let start = keys.start + w * per;
            let end = (start + per).min(keys.end);
            thread::spawn(move || {
                let commands: Vec<Vec<Vec<u8>>> = (start..end)
                    .map(|k| {
                        vec![
                            b"SET".to_vec(),
                            format!("key-{k:06}").into_bytes(),
                            value_of(k).into_bytes(),
                        ]
                    })
                    .collect();
                for (i, reply) in pipeline(addr, &commands).into_iter().enumerate() {
                    assert_eq!(reply, Value::ok(), "SET key-{:06}", start + i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
}

/// Every key in `keys` reads back through `addr` with its value.
fn check_keys(addr: SocketAddr, keys: std::ops::Range<usize>) {
    let commands: Vec<Vec<Vec<u8>>> = keys
        .clone()
        .step_by(500)
        .map(|start| {
            let mut command = vec![b"MGET".to_vec()];
            command.extend(
                (start..(start + 500).min(keys.end)).map(|k| format!("key-{k:06}").into_bytes()),
            );
            command
        })
        .collect();
    for (batch, reply) in pipeline(addr, &commands).into_iter().enumerate() {
        let Value::Array(values) = reply else {
            panic!("MGET batch {batch}: {reply:?}");
        };
        for (i, value) in values.into_iter().enumerate() {
            let k = keys.start + batch * 500 + i;
            assert_eq!(value, Value::Bulk(value_of(k).into_bytes()), "key-{k:06}");
        }
    }
}

/// (bytes of WAL segments, bytes of snapshot files, snapshot files) in `dir`.
fn data_dir_usage(dir: &Path) -> (u64, u64, usize) {
    let (mut wal, mut snap, mut snaps) = (0, 0, 0);
    for entry in fs::read_dir(dir).expect("read the data dir") {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        if name.starts_with("wal-") {
            wal += len;
        } else if name.ends_with(".snap") {
            snap += len;
            snaps += 1;
        }
    }
    (wal, snap, snaps)
}

fn wait_log(cluster: &TestCluster, i: usize, from: u64, needle: &str, within: Duration) -> String {
    cluster
        .wait_log_line(i, from, needle, deadline_in(within))
        .unwrap_or_else(|| panic!("node {i} never logged {needle:?}"))
}

#[test]
fn fifty_thousand_keys_stay_in_a_bounded_data_dir_and_survive_kill_9_of_every_node() {
    let config_dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(config_dir.path());
    let lead = cluster.wait_for_leader(deadline_in(ELECTION));
    let addr = cluster.client_addr(lead.leader);
    let started = Instant::now();
    write_keys(addr, 0..KEYS);
    let took = started.elapsed();
    // Every node snapshots on its own; wait until each has compacted.
    for i in 0..3 {
        wait_log(&cluster, i, 0, "[SNAPSHOT]", Duration::from_secs(20));
    }
    let mut usage = Vec::new();
    for i in 0..3 {
        let (wal, snap, snaps) = data_dir_usage(&cluster.data_dir(i));
        // The bound: the two snapshots kept, the WAL since the older one
        // (2 x 1000 entries of ~100 bytes) and the segments they end in.
        let newest = snap / snaps.max(1) as u64;
        let bound = 2 * newest + 2 * SEGMENT_BYTES + 2 * SNAPSHOT_ENTRIES * 1024;
        usage.push((wal, snap, snaps, bound));
        assert!(snaps <= 2, "node {i} keeps {snaps} snapshots");
        assert!(
            wal + snap <= bound,
            "node {i}: data dir holds {wal} bytes of WAL and {snap} of snapshots, bound {bound}"
        );
    }
    let info = cluster.info(lead.leader).expect("INFO");
    let first: u64 = info.get("log_first_index").parse().unwrap();
    assert!(
        first > SNAPSHOT_ENTRIES,
        "the leader's log starts at {first}"
    );
    eprintln!(
        "measured: {KEYS} SETs in {took:?}; data dirs (wal, snapshots, files, bound) {usage:?}"
    );

    for i in 0..3 {
        cluster.kill(i);
    }
    let marks: Vec<u64> = (0..3).map(|i| cluster.log_len(i)).collect();
    let restarted = Instant::now();
    for i in 0..3 {
        cluster.restart(i);
    }
    let lead = cluster.wait_for_leader(deadline_in(ELECTION));
    let serving = restarted.elapsed();
    for (i, mark) in marks.into_iter().enumerate() {
        let line = wait_log(&cluster, i, mark, "recovered term", Duration::from_secs(10));
        eprintln!("measured: node {i} {}", line.trim());
        assert!(
            !line.contains("snapshot at index 0 "),
            "node {i} ignored its snapshot: {line}"
        );
    }
    eprintln!("measured: all three restarted and a leader elected in {serving:?}");
    check_keys(cluster.client_addr(lead.leader), 0..KEYS);
}

#[test]
fn a_wiped_follower_catches_up_by_install_snapshot_and_serves_every_key() {
    let config_dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(config_dir.path());
    let lead = cluster.wait_for_leader(deadline_in(ELECTION));
    let follower = (lead.leader + 1) % 3;
    write_keys(cluster.client_addr(lead.leader), 0..5_000);
    cluster.kill(follower);
    fs::remove_dir_all(cluster.data_dir(follower)).expect("wipe the follower");
    // More writes while it is away: the leader compacts past them all.
    write_keys(cluster.client_addr(lead.leader), 5_000..10_000);
    let mark = cluster.log_len(follower);
    let started = Instant::now();
    cluster.restart(follower);
    let line = wait_log(
        &cluster,
        follower,
        mark,
        "installed index",
        Duration::from_secs(30),
    );
    let caught_up = poll_until(deadline_in(Duration::from_secs(30)), || {
        let leader = cluster.info(lead.leader)?;
        let mine = cluster.info(follower)?;
        (mine.applied_index() >= leader.commit_index()).then_some(())
    });
    assert!(caught_up.is_some(), "the wiped follower never caught up");
    eprintln!(
        "measured: wiped follower caught up in {:?}: {}",
        started.elapsed(),
        line.trim()
    );
    let info = cluster.info(follower).expect("INFO");
    assert!(info.get("snapshot_index").parse::<u64>().unwrap() >= SNAPSHOT_ENTRIES);
    // The old leader goes: the wiped node is now half of every quorum.
    cluster.kill(lead.leader);
    let next = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION));
    assert_ne!(next.leader, lead.leader);
    write_keys(cluster.client_addr(follower), 10_000..11_000);
    check_keys(cluster.client_addr(follower), 0..11_000);
}

#[test]
fn a_node_killed_while_writing_a_snapshot_restarts_from_the_older_one_and_the_wal() {
    let config_dir = tempfile::tempdir().unwrap();
    let mut cluster = cluster(config_dir.path());
    let lead = cluster.wait_for_leader(deadline_in(ELECTION));
    let victim = (lead.leader + 1) % 3;
    write_keys(cluster.client_addr(lead.leader), 0..3_000);
    wait_log(&cluster, victim, 0, "[SNAPSHOT]", Duration::from_secs(20));
    // Its next snapshot stays half written for a minute.
    cluster.kill(victim);
    cluster.set_env(victim, "SRAFT_TEST_SNAPSHOT_DELAY_MS", "60000");
    cluster.restart(victim);
    write_keys(cluster.client_addr(lead.leader), 3_000..6_000);
    let dir = cluster.data_dir(victim);
    let half_written = poll_until(deadline_in(Duration::from_secs(30)), || {
        fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".snap.tmp"))
            .then_some(())
    });
    assert!(half_written.is_some(), "no snapshot was being written");
    cluster.kill(victim);
    cluster.set_env(victim, "SRAFT_TEST_SNAPSHOT_DELAY_MS", "");
    let mark = cluster.log_len(victim);
    cluster.restart(victim);
    let line = wait_log(
        &cluster,
        victim,
        mark,
        "recovered term",
        Duration::from_secs(10),
    );
    eprintln!("measured: {}", line.trim());
    assert!(
        !line.contains("snapshot at index 0 "),
        "restarted without its older snapshot: {line}"
    );
    let leftover = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"));
    assert!(!leftover, "the half-written snapshot was not cleaned up");
    // Its own data: with the leader gone, it is half of every quorum.
    cluster.kill(lead.leader);
    cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION));
    check_keys(cluster.client_addr(victim), 0..6_000);
}

/// The sessions table is bounded (`[limits] sessions_max`): a connection
/// whose session the cluster forgot gets a new one, transparently, and its
/// write applies once; the forgotten session's writes are refused, never
/// run again (the store's unit tests check the refusal itself).
#[test]
fn a_connection_whose_session_was_forgotten_writes_on_in_a_new_one() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("sraft.toml");
    fs::write(&config, "[limits]\nsessions_max = 2\n").unwrap();
    let cluster = TestCluster::builder(3)
        .arg("--config")
        .arg(&config.display().to_string())
        .start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION));
    let follower = (lead.leader + 1) % cluster.len();
    // Through a follower, so that registration is forwarded too.
    let mut old = Conn::open(cluster.client_addr(follower));
    assert_eq!(old.call(&["INCR", "n"]), Value::Integer(1));
    // Three newer sessions push the first out of a table of two.
    for expected in 2..=4 {
        let mut newer = Conn::open(cluster.client_addr(lead.leader));
        assert_eq!(newer.call(&["INCR", "n"]), Value::Integer(expected));
    }
    assert_eq!(old.call(&["INCR", "n"]), Value::Integer(5));
    assert_eq!(old.call(&["GET", "n"]), Value::Bulk(b"5".to_vec()));
    let log = fs::read_to_string(cluster.log_path(follower)).unwrap();
    assert!(
        log.contains("was forgotten by the cluster (limits.sessions_max); opening a new one"),
        "the old session was not renewed:\n{log}"
    );
}
