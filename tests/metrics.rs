//! The metrics endpoint on real processes (issue 13): "`curl -s
//! localhost:PORT/metrics` works on a local cluster; a test scrapes it and
//! checks a few counters move". Three `sraft` nodes with `--metrics-addr`,
//! scraped with a plain HTTP/1.1 GET over a `TcpStream`.

use sraft_testkit::{TestCluster, deadline_in};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const ELECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Longer than the server's own request timeout (2 s), which a silent client
/// may use up before our request is read.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `request` and reads the whole response (the server closes).
fn http(addr: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// One scrape: every sample as `series -> value`, series written as in the
/// text (`sraft_role{role="leader"}`).
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn of(cluster: &TestCluster, i: usize) -> Scrape {
        let response = get(cluster.metrics_addr(i), "/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics of node {i}: {e}"));
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {response:?}"));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        let samples = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect(l);
                let value = value.parse().unwrap_or_else(|e| panic!("{l}: {e}"));
                (series.to_string(), value)
            })
            .collect();
        Scrape(samples)
    }

    fn value(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series} in {:?}", self.0.keys()))
    }

    /// The sum over every label of `name`.
    fn total(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.0
            .iter()
            .filter(|(series, _)| series.starts_with(&prefix) || *series == name)
            .map(|(_, value)| value)
            .sum()
    }
}

#[test]
fn metrics_endpoint_reports_state_and_counters_that_move_with_a_failover() {
    let mut cluster = TestCluster::builder(3).metrics().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let leader = lead.leader;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");

    // State: every node's view of term and leader, one leader by role.
    let scrapes: Vec<Scrape> = (0..3).map(|i| Scrape::of(&cluster, i)).collect();
    for (i, s) in scrapes.iter().enumerate() {
        assert!(s.value("sraft_term") >= 1.0, "node {i}");
        assert_eq!(s.value("sraft_leader_id"), leader as f64, "node {i}");
        let is_leader = s.value("sraft_role{role=\"leader\"}");
        assert_eq!(is_leader, f64::from(u8::from(i == leader)), "node {i}");
    }
    assert!(scrapes[leader].total("sraft_elections_won_total") >= 1.0);

    // A write through a follower: forwarded there, committed here, fsynced.
    cluster.set(follower, "metrics", "move");
    let at_follower = Scrape::of(&cluster, follower);
    assert_eq!(
        at_follower.value("sraft_client_commands_total{command=\"set\"}"),
        1.0
    );
    assert!(at_follower.value("sraft_forwards_sent_total{kind=\"write\"}") >= 1.0);
    let at_leader = Scrape::of(&cluster, leader);
    // Received over the peer transport (DESIGN.md 4.4), not as a client.
    assert!(at_leader.value("sraft_forwards_received_total{kind=\"write\"}") >= 1.0);
    assert_eq!(
        at_leader.value("sraft_client_commands_total{command=\"set\"}"),
        0.0
    );
    assert!(at_leader.value("sraft_proposals_total{outcome=\"ok\"}") >= 1.0);
    assert!(at_leader.value("sraft_commit_latency_seconds_count") >= 1.0);
    assert!(at_leader.value("sraft_wal_fsyncs_total") >= 1.0);
    assert!(
        at_leader.value("sraft_commit_index") >= 2.0,
        "no-op and the write"
    );

    // Kill the leader: the survivors' election counters move, and the new
    // leader records a failover duration.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let elections_before: f64 = survivors
        .iter()
        .map(|i| Scrape::of(&cluster, *i).total("sraft_elections_total"))
        .sum();
    cluster.kill(leader);
    let new = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION_DEADLINE));
    let elections_after: f64 = survivors
        .iter()
        .map(|i| Scrape::of(&cluster, *i).total("sraft_elections_total"))
        .sum();
    assert!(
        elections_after > elections_before,
        "elections {elections_before} -> {elections_after}"
    );
    let winner = Scrape::of(&cluster, new.leader);
    assert!(winner.value("sraft_term") > lead.term as f64);
    assert!(winner.total("sraft_elections_won_total") >= 1.0);
    assert!(winner.value("sraft_failover_duration_seconds_count") >= 1.0);

    // INFO's Redis sections read the same counters.
    let info = cluster.call(
        new.leader,
        &[b"INFO", b"replication", b"stats"],
        sraft_testkit::CALL_TIMEOUT,
    );
    let Ok(sraft::kv::resp::Value::Bulk(text)) = info else {
        panic!("INFO replication stats: {info:?}");
    };
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("# Replication\r\nrole:master\r\n"), "{text}");
    assert!(text.contains("\r\nraft_elections_won:"), "{text}");
}

#[test]
fn the_metrics_endpoint_refuses_bad_requests_and_serves_on() {
    let cluster = TestCluster::builder(1).metrics().start();
    let addr = cluster.metrics_addr(0);
    cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let status = |response: std::io::Result<String>| {
        let response = response.expect("an answer");
        response.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(status(get(addr, "/")), "HTTP/1.1 404 Not Found");
    assert_eq!(
        status(http(addr, "POST /metrics HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        status(http(addr, "\u{16}\u{3}\u{1} hello\r\n\r\n")),
        "HTTP/1.1 400 Bad Request"
    );
    // A client that connects and says nothing holds the thread for at most
    // the request timeout.
    let silent = TcpStream::connect(addr).expect("connect");
    assert_eq!(status(get(addr, "/metrics")), "HTTP/1.1 200 OK");
    drop(silent);
    assert_eq!(cluster.info(0).expect("INFO").role(), "leader");
}
