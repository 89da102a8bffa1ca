//! The limits table under load, on real processes (DESIGN.md 7): "No client
//! request can make a message that the transport cannot carry, and no burst
//! can make a record that storage refuses." Three `sraft` nodes with the
//! default table (values up to 1 MiB), twenty clients writing 900 KiB
//! values for ten seconds, small writes interleaved, and one 2 MiB SET.
//!
//! "No election" (the term unchanged on every node) also needs every Raft
//! thread to run at least once per heartbeat interval while the clients,
//! senders and WAL threads around it encode and copy megabytes; on a small
//! loaded machine it can fail there. The assertion is the target and stays
//! as it is.

use sraft::kv::resp::{RespLimits, Value};
use sraft::server::Forwarder;
use sraft_testkit::{TestCluster, deadline_in};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const ELECTION_DEADLINE: Duration = Duration::from_secs(20);
const LOAD_DURATION: Duration = Duration::from_secs(10);
const LARGE_WRITERS: usize = 20;
const LARGE_VALUE_BYTES: usize = 900 << 10;
/// Above the default value_bytes_max (1 MiB).
const OVERSIZED_VALUE_BYTES: usize = 2 << 20;
/// Longer than the server's request timeout (5 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(8);
/// Pause before retrying a write refused as busy.
const BUSY_PAUSE: Duration = Duration::from_millis(10);
/// Between small writes, and between INFO polls.
const SMALL_WRITE_PERIOD: Duration = Duration::from_millis(50);
const INFO_PERIOD: Duration = Duration::from_millis(100);
/// A small SET, retried while busy, must be acknowledged within this (the
/// server's request timeout), and acknowledgements must never stop for
/// longer: "small SETs keep being acknowledged", where the measured failure
/// was a cluster whose commit never moved again. Generous, because the
/// nodes are debug builds on a small shared machine.
const SMALL_WRITE_BOUND: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Tally {
    acknowledged: u64,
    busy: u64,
    /// Anything else: timeouts, other errors, broken connections.
    failures: Vec<String>,
    /// Longest time from a small write's first attempt to its +OK.
    slowest: Duration,
    /// When each small write was acknowledged.
    acknowledged_at: Vec<Instant>,
}

fn set(conn: &mut Forwarder, addr: std::net::SocketAddr, key: &str, value: &[u8]) -> Value {
    let args = vec![b"SET".to_vec(), key.as_bytes().to_vec(), value.to_vec()];
    match conn.call(addr, &args, CALL_TIMEOUT, &RespLimits::default()) {
        Ok(value) => value,
        Err(e) => Value::Error(format!("(client) {e}")),
    }
}

fn is_busy(reply: &Value) -> bool {
    matches!(reply, Value::Error(e) if e.starts_with("ERR busy"))
}

fn is_ok(reply: &Value) -> bool {
    matches!(reply, Value::Simple(s) if s == "OK")
}

/// One client writing `LARGE_VALUE_BYTES` values until `stop`.
fn large_writer(addr: std::net::SocketAddr, writer: usize, stop: Arc<AtomicBool>) -> Tally {
    let mut conn = Forwarder::default();
    let mut tally = Tally::default();
    let mut round = 0u8;
    while !stop.load(Ordering::SeqCst) {
        round = round.wrapping_add(1);
        let value = vec![round; LARGE_VALUE_BYTES];
        let reply = set(&mut conn, addr, &format!("large-{writer}"), &value);
        if is_ok(&reply) {
            tally.acknowledged += 1;
        } else if is_busy(&reply) {
            tally.busy += 1;
            thread::sleep(BUSY_PAUSE);
        } else {
            tally.failures.push(format!("{reply:?}"));
        }
    }
    tally
}

/// Small SETs, one per period, each retried while busy; records how long
/// each took to be acknowledged.
fn small_writer(addrs: Vec<std::net::SocketAddr>, stop: Arc<AtomicBool>) -> Tally {
    let mut conns: Vec<Forwarder> = addrs.iter().map(|_| Forwarder::default()).collect();
    let mut tally = Tally::default();
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let node = n % addrs.len();
        let started = Instant::now();
        loop {
            let reply = set(&mut conns[node], addrs[node], &format!("small-{n}"), b"v");
            if is_ok(&reply) {
                tally.acknowledged += 1;
                tally.slowest = tally.slowest.max(started.elapsed());
                tally.acknowledged_at.push(Instant::now());
                break;
            }
            if is_busy(&reply) && started.elapsed() < SMALL_WRITE_BOUND {
                tally.busy += 1;
                thread::sleep(BUSY_PAUSE);
                continue;
            }
            tally.failures.push(format!(
                "small-{n} via node {node} after {:?}: {reply:?}",
                started.elapsed()
            ));
            break;
        }
        thread::sleep(SMALL_WRITE_PERIOD);
    }
    tally
}

// Once ignored: a follower missed heartbeats queued behind up to 256
// Appends of ~1 MiB on the same connection and started an election (term
// 1 -> 2 in 2 of 7 runs). Fixed by the transport's control lane and the
// leader's bound on bytes in flight per follower (`inflight_bytes_max`).
// Then flaky (an election in 2 of 13 runs): the Raft threads waited for
// the CPU, 4-14 ms per batch in the run queue, and heartbeat round trips
// reached 30-90 ms. A forwarding path that serialized values byte by byte
// took a quarter of the machine, and 70% of a Raft thread's own time was
// memmove, half of it cloning commands (to the WAL, to each Append, to the
// list of committed entries), the rest the store's decoding.
// Fixed by serde_bytes in the forwarding frames (2 of 8 still failed) and
// shared command buffers in log entries: none in 20 runs, no pre-vote
// either, and 1.4-1.7 GiB written in the ten seconds instead of 0.5-0.8.
#[test]
fn large_writes_are_bounded_without_an_election_and_an_oversized_value_is_refused_at_once() {
    let mut cluster = TestCluster::builder(3).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let (leader, term) = (lead.leader, lead.term);
    let follower = (leader + 1) % 3;
    let addrs: Vec<_> = (0..3).map(|i| cluster.client_addr(i)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let large: Vec<_> = (0..LARGE_WRITERS)
        .map(|w| {
            let (addr, stop) = (addrs[w % 3], stop.clone());
            thread::Builder::new()
                .name(format!("large-{w}"))
                .spawn(move || large_writer(addr, w, stop))
                .expect("spawn a writer")
        })
        .collect();
    let small = {
        let (addrs, stop) = (addrs.clone(), stop.clone());
        thread::Builder::new()
            .name("small".into())
            .spawn(move || small_writer(addrs, stop))
            .expect("spawn the small writer")
    };
    let log_marks: Vec<u64> = (0..3).map(|i| cluster.log_len(i)).collect();

    // Every node's term, sampled all along: an election between two
    // samples still leaves a higher term behind.
    let load_started = Instant::now();
    let mut terms_seen: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut unanswered_info = 0u64;
    let mut oversized: Option<(Value, Duration)> = None;
    while load_started.elapsed() < LOAD_DURATION {
        if oversized.is_none() && load_started.elapsed() >= Duration::from_secs(2) {
            let sent = Instant::now();
            let value = vec![b'x'; OVERSIZED_VALUE_BYTES];
            let reply = set(
                &mut Forwarder::default(),
                addrs[follower],
                "oversized",
                &value,
            );
            oversized = Some((reply, sent.elapsed()));
        }
        for i in 0..3 {
            match cluster.info(i) {
                Some(info) => terms_seen.entry(i).or_default().push(info.term()),
                None => unanswered_info += 1,
            }
        }
        thread::sleep(INFO_PERIOD);
    }
    stop.store(true, Ordering::SeqCst);
    let large: Vec<Tally> = large
        .into_iter()
        .map(|h| h.join().expect("writer"))
        .collect();
    let small = small.join().expect("small writer");

    let exits: Vec<_> = (0..3)
        .filter_map(|i| cluster.exit_status(i).map(|s| (i, s)))
        .collect();
    let final_terms: Vec<Option<u64>> = (0..3).map(|i| cluster.info(i).map(|n| n.term())).collect();
    let terms_above: BTreeMap<usize, u64> = terms_seen
        .iter()
        .map(|(i, terms)| (*i, terms.iter().copied().max().unwrap_or(0)))
        .collect();
    // Pre-votes count too: a timer that fired is a heartbeat that came late.
    let campaigns: Vec<usize> = (0..3)
        .map(|i| {
            let log = cluster.log_since(i, log_marks[i]);
            log.lines()
                .filter(|l| l.contains("[S-RAFT INSTANT PROMOTION]") || l.contains("ELECTION]"))
                .count()
        })
        .collect();
    let load_ended = load_started + LOAD_DURATION;
    let ack_gap_max = std::iter::once(load_started)
        .chain(small.acknowledged_at.iter().copied())
        .chain(std::iter::once(load_ended))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|pair| pair[1].saturating_duration_since(pair[0]))
        .max()
        .unwrap_or_default();
    let large_acknowledged: u64 = large.iter().map(|t| t.acknowledged).sum();
    let large_busy: u64 = large.iter().map(|t| t.busy).sum();
    let large_failures: Vec<&String> = large.iter().flat_map(|t| &t.failures).collect();
    eprintln!(
        "measured: leader {leader} term {term}; highest term seen per node {terms_above:?}, \
         campaigns (pre-vote or vote rounds) started per node {campaigns:?}, \
         final terms {final_terms:?}, {unanswered_info} INFO polls unanswered; \
         large writes acknowledged {large_acknowledged} ({} MiB), busy {large_busy}, \
         failed {}; small writes acknowledged {}, busy retries {}, slowest {:?}, longest gap \
         between acknowledgements {ack_gap_max:?}, failed {}; \
         oversized SET {oversized:?}; exits {exits:?}; first failures {:?}",
        (large_acknowledged * LARGE_VALUE_BYTES as u64) >> 20,
        large_failures.len(),
        small.acknowledged,
        small.busy,
        small.slowest,
        small.failures.len(),
        large_failures.iter().take(3).collect::<Vec<_>>(),
    );

    let (reply, took) = oversized.expect("the oversized SET was sent");
    let want = format!(
        "ERR value is too large ({OVERSIZED_VALUE_BYTES} bytes, limit {})",
        1 << 20
    );
    assert_eq!(reply, Value::Error(want), "the 2 MiB SET");
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    assert!(exits.is_empty(), "nodes exited: {exits:?}");
    assert!(
        terms_above.values().all(|t| *t == term) && final_terms.iter().all(|t| *t == Some(term)),
        "an election happened: term {term} at the start, highest seen {terms_above:?}, \
         final {final_terms:?}"
    );
    assert!(
        small.failures.is_empty(),
        "small writes not acknowledged within {SMALL_WRITE_BOUND:?}: {:?}",
        small.failures
    );
    assert!(
        ack_gap_max <= SMALL_WRITE_BOUND,
        "no small write acknowledged for {ack_gap_max:?}"
    );
    // Large writes refused as busy are the bound working. Other answers
    // are reported above, not asserted: a follower whose timer fired drops
    // its leader for a moment, and a forwarded write retried after that is
    // rightly answered "may or may not have been applied".
    assert!(large_acknowledged > 0, "no large write was acknowledged");
}

/// DESIGN.md 4 and 7: a limits table whose relations do not hold is "a
/// one-line error naming the problem and a non-zero exit, before anything
/// is opened".
#[test]
fn a_broken_limits_table_stops_the_node_with_one_line_before_it_starts() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("bad-limits.toml");
    std::fs::write(
        &config,
        "[limits]\nvalue_bytes_max = 2097152\nentry_bytes_max = 1048576\n",
    )
    .expect("write the config");
    let data_dir = dir.path().join("data");
    let args: Vec<String> = [
        "--node-id",
        "0",
        "--peers",
        "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
    ]
    .map(String::from)
    .to_vec();
    let (status, _, stderr) =
        sraft_testkit::run_to_exit(&args, deadline_in(Duration::from_secs(10)));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        "sraft: bad limits.entry_bytes_max: value_bytes_max + 65536=2162688 exceeds \
         entry_bytes_max=1048576 (an entry must hold the largest value with its key and header)\n"
    );
    assert!(!data_dir.exists(), "the data dir was created");
}
