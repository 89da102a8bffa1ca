//! Real-process cluster tests: `sraft` nodes as child processes on
//! loopback, killed (SIGKILL), frozen (SIGSTOP), terminated (SIGTERM) and
//! restarted, checked through their client ports (RESP, INFO) and their
//! logs. Every wait is a poll against a deadline.

use sraft::core::NodeId;
use sraft::kv::resp::Value;
use sraft::transport::auth::{PeerAuth, connect_handshake};
use sraft::transport::frame::encode_frame;
use sraft::transport::{Hello, PROTOCOL_VERSION, PeerFrame};
use sraft_testkit::{
    CALL_TIMEOUT, NodeState, TestCluster, deadline_in, poll_until, reserve_ports, run_to_exit,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Loose on purpose: the machine is a loaded 2-core box and the nodes are
/// debug builds. The timing claims of S-Raft are checked in simulation
/// (tests/failover.rs), not here.
const ELECTION_DEADLINE: Duration = Duration::from_secs(20);
/// How long a node may take to close a connection that broke the protocol.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// The server's request timeout (5 s) plus slack for a loaded machine.
const REQUEST_BOUND: Duration = Duration::from_secs(8);

fn key(i: usize) -> String {
    format!("key-{i:03}")
}

fn value(i: usize, round: usize) -> String {
    format!("value-{i}-round-{round}")
}

/// DESIGN.md 3.2: "names the fastest max(1, floor(N * subleader_ratio)) as
/// sub-leaders" and logs `[Leader X] Sub-leaders assigned`.
#[test]
fn five_nodes_elect_one_leader_and_assign_sub_leaders() {
    let cluster = TestCluster::builder(5).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let leader = lead.leader;
    assert!(
        cluster
            .wait_log_line(
                leader,
                0,
                "[ELECTION SUCCESS]",
                deadline_in(Duration::from_secs(5))
            )
            .is_some(),
        "no [ELECTION SUCCESS] in leader {leader}'s log"
    );
    let info = cluster
        .wait_info(leader, deadline_in(Duration::from_secs(10)), |info| {
            info.role() == "leader" && !info.sub_leaders().is_empty()
        })
        .unwrap_or_else(|| panic!("leader {leader} never named sub-leaders"));
    let subs = info.sub_leaders();
    assert!(
        !subs.contains(&leader),
        "leader {leader} among its sub-leaders {subs:?}"
    );
    let mut distinct = subs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), subs.len(), "sub-leaders repeat: {subs:?}");
    assert!(
        subs.len() <= 2,
        "5 nodes * 0.4 = at most 2 sub-leaders, got {subs:?}"
    );
    let needle = format!("[Leader {leader}] Sub-leaders assigned");
    let line = poll_until(deadline_in(Duration::from_secs(5)), || {
        cluster
            .log_since(leader, 0)
            .lines()
            .find(|l| l.contains(&needle) && !l.ends_with("none"))
            .map(str::to_string)
    });
    assert!(
        line.is_some(),
        "no {needle:?} line naming a node in leader {leader}'s log"
    );
    // Exactly one node thinks it leads, and the others agree on who.
    assert_eq!(
        lead.infos.values().filter(|i| i.role() == "leader").count(),
        1,
        "{:?}",
        lead.infos
    );
}

/// DESIGN.md 3.5: a SIGKILLed leader's sockets close; a sub-leader takes
/// over in a higher term, and the cluster keeps taking writes.
#[test]
fn sigkill_of_the_leader_promotes_a_sub_leader() {
    let mut cluster = TestCluster::builder(5).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    cluster.set(lead.leader, "before", "crash");
    // Sub-leaders are named once followers are caught up; read them (and
    // the term) right before the kill, as the cluster saw them.
    let old = cluster
        .wait_info(lead.leader, deadline_in(Duration::from_secs(10)), |info| {
            info.role() == "leader" && !info.sub_leaders().is_empty()
        })
        .expect("sub-leaders named");
    let old_subs = old.sub_leaders();
    let marks: Vec<u64> = (0..cluster.len()).map(|i| cluster.log_len(i)).collect();
    cluster.kill(lead.leader);
    let new = cluster.wait_for_leader_above(old.term(), deadline_in(ELECTION_DEADLINE));
    assert_ne!(new.leader, lead.leader);
    // The leader re-ranks at every heartbeat (10 ms since issue 13), so the
    // list read above may be a designation older than the one in force at
    // the kill. The winner's own promotion line is the race-free evidence
    // that it held a rank of the old leader's designation when it ran
    // (DESIGN.md 3.4: logged only for an election of kind sub-leader or
    // crash hint).
    let log = cluster.log_since(new.leader, marks[new.leader]);
    assert!(
        log.contains(&format!(
            "[INSTANT PROMOTION SUCCESS] Node {} -> LEADER",
            new.leader
        )),
        "new leader {} did not win as a sub-leader (sub-leaders read before the kill: \
         {old_subs:?}); its log since the kill:\n{log}",
        new.leader
    );
    // Seed 001 7.2: "[INSTANT PROMOTION SUCCESS] Node X -> LEADER" with its
    // "Time: 89.3ms", here on the same line.
    let promotion = format!(
        "[INSTANT PROMOTION SUCCESS] Node {} -> LEADER Time: ",
        new.leader
    );
    if let Some(line) = log.lines().find(|l| l.contains(&promotion)) {
        let time = line.split(&promotion).nth(1).unwrap_or_default();
        let number = time.split("ms").next().unwrap_or_default();
        assert!(
            time.contains("ms") && number.parse::<f64>().is_ok(),
            "the promotion time is not N.Nms: {line}"
        );
    }
    for i in cluster.running() {
        cluster.set(i, &format!("after-{i}"), "crash");
    }
    for i in cluster.running() {
        assert_eq!(cluster.get(i, "before").as_deref(), Some("crash"));
        for j in cluster.running() {
            assert_eq!(
                cluster.get(i, &format!("after-{j}")).as_deref(),
                Some("crash")
            );
        }
    }
}

/// DESIGN.md 3.5: a frozen leader gives no crash hint; the timers elect a
/// new leader, and the old one steps down when it wakes up.
#[test]
fn sigstopped_leader_is_replaced_and_follows_after_sigcont() {
    let mut cluster = TestCluster::builder(5).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let old = lead.leader;
    cluster.stop(old);
    let new = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION_DEADLINE));
    assert_ne!(new.leader, old);
    cluster.set(new.leader, "during-stop", "1");
    cluster.cont(old);
    let info = cluster
        .wait_info(old, deadline_in(ELECTION_DEADLINE), |info| {
            info.role() == "follower" && info.term() >= new.term && info.leader_id().is_some()
        })
        .unwrap_or_else(|| panic!("old leader {old} never stepped down to follow"));
    let settled = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION_DEADLINE));
    assert_ne!(
        settled.leader, old,
        "the thawed node took leadership back: {info:?}"
    );
    assert_eq!(cluster.get(old, "during-stop").as_deref(), Some("1"));
    cluster.set(old, "after-cont", "2");
    assert_eq!(
        cluster.get(settled.leader, "after-cont").as_deref(),
        Some("2")
    );
}

/// Raft 5.3: a follower that missed entries is brought up to date by the
/// leader's log replication after it restarts.
#[test]
fn restarted_node_catches_up_on_missed_writes() {
    let mut cluster = TestCluster::builder(5).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let victim = (lead.leader + 1) % cluster.len();
    for i in 0..10 {
        cluster.set(lead.leader, &key(i), &value(i, 0));
    }
    cluster.kill(victim);
    let keys = 30;
    for i in 0..keys {
        cluster.set(lead.leader, &key(i), &value(i, 1));
    }
    cluster.restart(victim);
    let now = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let target = now.infos[&now.leader].commit_index();
    let caught_up = cluster.wait_info(victim, deadline_in(ELECTION_DEADLINE), |info| {
        info.applied_index() >= target
    });
    assert!(
        caught_up.is_some(),
        "restarted node {victim} never applied up to the leader's commit index {target}: {:?}",
        cluster.info(victim)
    );
    for i in 0..keys {
        assert_eq!(
            cluster.get(victim, &key(i)),
            Some(value(i, 1)),
            "{}",
            key(i)
        );
    }
}

/// DESIGN.md 5.6: an acknowledged write was fsynced on a majority before the
/// ack, so killing every node loses none of them; and a persisted term
/// never goes backwards.
#[test]
fn acknowledged_writes_survive_sigkill_of_every_node() {
    let mut cluster = TestCluster::builder(5).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let keys = 40;
    for i in 0..keys {
        // Through every node, so forwarded writes count too.
        cluster.set(i % cluster.len(), &key(i), &value(i, 0));
    }
    let terms: Vec<u64> = (0..cluster.len())
        .map(|i| cluster.info(i).expect("INFO before the crash").term())
        .collect();
    assert!(terms.iter().all(|t| *t >= lead.term), "{terms:?}");
    for i in 0..cluster.len() {
        cluster.kill(i);
    }
    for i in 0..cluster.len() {
        cluster.restart(i);
    }
    for (i, before) in terms.iter().enumerate() {
        let info = cluster
            .wait_info(i, deadline_in(ELECTION_DEADLINE), |_| true)
            .unwrap_or_else(|| panic!("node {i} did not come back"));
        assert!(
            info.term() >= *before,
            "node {i}: term {} < {before} before the crash",
            info.term()
        );
    }
    let now = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    assert!(
        now.term > lead.term,
        "term {} after restart, {} before",
        now.term,
        lead.term
    );
    for i in 0..keys {
        assert_eq!(
            cluster.get(i % cluster.len(), &key(i)),
            Some(value(i, 0)),
            "{}",
            key(i)
        );
    }
}

/// Reads until the peer closes; fails if it has not within `CLOSE_DEADLINE`.
/// A reset counts as closed (the node closed with our bytes unread).
fn assert_closed_by_node(mut stream: TcpStream, what: &str) -> Vec<u8> {
    let deadline = deadline_in(CLOSE_DEADLINE);
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(
            !remaining.is_zero(),
            "{what}: connection still open after {CLOSE_DEADLINE:?}"
        );
        stream
            .set_read_timeout(Some(remaining))
            .expect("set timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return received,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: connection still open after {CLOSE_DEADLINE:?}")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return received,
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("set timeout");
    stream
}

fn hello_frame(cluster_id: &str, node_id: u64, protocol_version: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    encode_frame(
        &PeerFrame::Hello(Hello {
            protocol_version,
            cluster_id: cluster_id.to_string(),
            node_id: NodeId(node_id),
            nonce: [0; 32],
            client_addr: None,
            peer_addr: None,
        }),
        &mut buf,
    );
    buf
}

/// A length prefix of 8 and eight bytes that are no postcard `PeerFrame`.
fn undecodable_frame() -> Vec<u8> {
    let mut frame = 8u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0xff; 8]);
    frame
}

/// DESIGN.md 2.6: "A length above the configured maximum, or bytes that do not
/// decode, close that connection and nothing else"; a hello mismatch closes
/// the connection.
#[test]
fn peer_port_closes_connections_that_break_the_protocol() {
    let cluster = TestCluster::builder(3).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let target = lead.leader;
    let other = (target + 1) % cluster.len();
    let id = cluster.cluster_id().to_string();
    // Each case, and the reason the node must log for closing it: the
    // reason shows the bytes were judged, not left to the hello timeout.
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "text garbage",
            b"GET / HTTP/1.1\r\nHost: sraft\r\n\r\n".to_vec(),
            "frame too large".into(),
        ),
        (
            "undecodable frame",
            undecodable_frame(),
            "undecodable frame".into(),
        ),
        (
            "hello with a wrong cluster id",
            hello_frame("not-this-cluster", other as u64, PROTOCOL_VERSION),
            "wrong cluster id".into(),
        ),
        (
            "hello with a wrong protocol version",
            hello_frame(&id, other as u64, PROTOCOL_VERSION + 1),
            format!("protocol version {}", PROTOCOL_VERSION + 1),
        ),
        (
            "hello from an unknown node",
            hello_frame(&id, 99, PROTOCOL_VERSION),
            "unknown node 99".into(),
        ),
        (
            "length 0xFFFFFFFF",
            vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            "frame too large 4294967295".into(),
        ),
        // Written after a handshake that passes, as node `other`.
        (
            "valid handshake, then garbage",
            undecodable_frame(),
            format!("peer {other} at 127.0.0.1:"),
        ),
    ];
    for (what, bytes, reason) in cases {
        let mark = cluster.log_len(target);
        let mut stream = connect(cluster.peer_addr(target));
        if what == "valid handshake, then garbage" {
            let auth = PeerAuth {
                cluster_id: id.clone(),
                secret: None,
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("set timeout");
            connect_handshake(
                &mut stream,
                &auth,
                NodeId(other as u64),
                NodeId(target as u64),
                1 << 20,
            )
            .unwrap_or_else(|e| panic!("{what}: handshake: {e}"));
        }
        stream
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("{what}: write: {e}"));
        assert_closed_by_node(stream, what);
        let logged = poll_until(deadline_in(CLOSE_DEADLINE), || {
            cluster
                .log_since(target, mark)
                .lines()
                .find(|l| {
                    l.contains("closing connection from")
                        && l.contains(&reason)
                        && (what != "valid handshake, then garbage"
                            || l.contains("undecodable frame"))
                })
                .map(str::to_string)
        });
        assert!(
            logged.is_some(),
            "{what}: node {target} logged no close with {reason:?}"
        );
        assert!(
            cluster.info(target).is_some(),
            "node {target} stopped answering after {what}"
        );
    }
    // The node is up and the cluster still commits writes, through it and
    // through another node.
    for i in 0..cluster.len() {
        assert_eq!(cluster.state(i), NodeState::Running);
        cluster.set(i, &format!("after-garbage-{i}"), "ok");
    }
    for i in 0..cluster.len() {
        assert_eq!(
            cluster
                .get(target, &format!("after-garbage-{i}"))
                .as_deref(),
            Some("ok")
        );
    }
}

/// Reads one RESP reply line (up to CRLF) within a deadline.
fn read_line(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set timeout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => panic!(
                "connection closed after {:?}",
                String::from_utf8_lossy(&line)
            ),
            Ok(_) => line.push(byte[0]),
            Err(e) => panic!("read after {:?}: {e}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

fn ping(stream: &mut TcpStream) {
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .expect("write PING");
    assert_eq!(read_line(stream), "+PONG");
}

/// Redis's behaviour: framing garbage gets a protocol error and the
/// connection closes; a bad command gets an error and the connection goes on.
#[test]
fn client_port_closes_on_framing_garbage_and_survives_bad_commands() {
    let cluster = TestCluster::builder(3).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let node = (lead.leader + 1) % cluster.len();
    let addr = cluster.client_addr(node);
    let mut bystander = connect(addr);
    ping(&mut bystander);

    for garbage in [
        &b"*abc\r\n"[..],
        b"*1\r\n$-7x\r\n",
        b"*1\r\n$99999999999999999999\r\n",
    ] {
        let mut bad = connect(addr);
        bad.write_all(garbage).expect("write garbage");
        let reply = assert_closed_by_node(bad, &format!("{garbage:?}"));
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("-ERR Protocol error"),
            "{garbage:?} got {reply:?}"
        );
    }
    ping(&mut bystander);

    let mut client = connect(addr);
    client.write_all(b"*1\r\n$3\r\nGET\r\n").expect("write GET");
    let reply = read_line(&mut client);
    assert!(
        reply.starts_with("-ERR wrong number of arguments"),
        "{reply}"
    );
    client
        .write_all(b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n")
        .expect("write SET");
    let reply = read_line(&mut client);
    assert!(
        reply.starts_with("-ERR wrong number of arguments"),
        "{reply}"
    );
    client
        .write_all(b"*1\r\n$7\r\nNOSUCHC\r\n")
        .expect("write an unknown command");
    let reply = read_line(&mut client);
    assert!(reply.starts_with("-ERR"), "{reply}");
    ping(&mut client);
    client
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        .expect("write SET");
    assert_eq!(read_line(&mut client), "+OK");
    assert_eq!(cluster.get(lead.leader, "k").as_deref(), Some("v"));
}

/// Asserts one line on stderr naming `needle`, and a non-zero exit.
fn assert_refused(args: &[String], needle: &str) -> String {
    let (status, _stdout, stderr) = run_to_exit(args, deadline_in(Duration::from_secs(15)));
    assert!(
        !status.success(),
        "sraft {args:?} exited with {status}; stderr: {stderr}"
    );
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "sraft {args:?}: not one line on stderr:\n{stderr}"
    );
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "sraft {args:?}: {:?} does not name {needle:?}",
        lines[0]
    );
    lines[0].to_string()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn assert_untouched(path: &Path) {
    assert!(
        !path.exists(),
        "{} was created by a refused start",
        path.display()
    );
}

/// DESIGN.md 4.1: "Bad flags or config: a one-line error naming the problem
/// and a non-zero exit, before anything is opened."
#[test]
fn bad_command_lines_exit_with_one_line_before_opening_anything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let metrics = dir.path().join("metrics.jsonl");
    let ports = reserve_ports(3);
    let peers: String = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut args = strings(&["--node-id", "0", "--peers", &peers]);
        args.extend(strings(&["--data-dir", data.to_str().unwrap()]));
        args.extend(strings(&["--metrics-file", metrics.to_str().unwrap()]));
        args.extend(strings(extra));
        args
    };

    assert_refused(&base(&["--no-such-flag"]), "--no-such-flag");
    let mut bad_peers = base(&[]);
    bad_peers[3] = format!("{peers},not-an-address");
    assert_refused(&bad_peers, "not-an-address");
    let mut out_of_range = base(&[]);
    out_of_range[1] = "3".into();
    assert_refused(&out_of_range, "3");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "cluster_id = \"x\"\nno_such_key = 1\n").expect("write config");
    assert_refused(
        &base(&["--config", config.to_str().unwrap()]),
        "no_such_key",
    );
    assert_untouched(&data);
    assert_untouched(&metrics);

    // A data dir that is a regular file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write file");
    let mut on_file = base(&[]);
    on_file[5] = file.display().to_string();
    assert_refused(&on_file, &file.display().to_string());

    // Ports in use, peer and client: bind them ourselves first.
    for port in [ports[0], ports[0] + 1000] {
        let _holder = TcpListener::bind(("127.0.0.1", port)).expect("bind the port first");
        assert_refused(&base(&[]), &port.to_string());
        assert_untouched(&data);
        assert_untouched(&metrics);
    }
}

/// DESIGN.md 5.1: the data dir is locked; a second node on it must not run.
#[test]
fn second_node_on_the_same_data_dir_fails_with_a_lock_error() {
    let cluster = TestCluster::builder(1).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    cluster.set(lead.leader, "k", "v");
    let ports = reserve_ports(1);
    let args = strings(&[
        "--node-id",
        "0",
        "--peers",
        &format!("127.0.0.1:{}", ports[0]),
        "--data-dir",
        cluster.data_dir(0).to_str().unwrap(),
        "--cluster-id",
        cluster.cluster_id(),
    ]);
    let line = assert_refused(&args, "in use by another process");
    assert!(
        line.contains(cluster.data_dir(0).to_str().unwrap()),
        "{line}"
    );
    assert!(cluster.info(0).is_some(), "the first node is gone");
    cluster.set(0, "k", "w");
    assert_eq!(cluster.get(0, "k").as_deref(), Some("w"));
}

/// DESIGN.md 4.2-4.4: any node accepts any command and forwards to the leader;
/// with no leader or no quorum, "an -ERR naming the reason, never a silent
/// drop". Since issue 12 the no-leader error has Redis's retry code,
/// `-TRYAGAIN no leader elected yet (term T)`: still an error reply, still
/// naming the reason.
#[test]
fn followers_forward_and_a_write_without_quorum_fails_in_bounded_time() {
    let mut cluster = TestCluster::builder(5).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let followers: Vec<usize> = (0..cluster.len()).filter(|i| *i != lead.leader).collect();
    for (n, f) in followers.iter().enumerate() {
        cluster.set(*f, &format!("via-{f}"), &format!("v{n}"));
    }
    for i in 0..cluster.len() {
        for (n, f) in followers.iter().enumerate() {
            assert_eq!(
                cluster.get(i, &format!("via-{f}")),
                Some(format!("v{n}")),
                "via-{f} read through node {i}"
            );
        }
    }
    // Kill three followers: the leader is left with one follower, no quorum.
    for f in &followers[..3] {
        cluster.kill(*f);
    }
    for node in [lead.leader, followers[3]] {
        let started = Instant::now();
        let reply = cluster.call(
            node,
            &[b"SET", b"no-quorum", b"x"],
            REQUEST_BOUND + CALL_TIMEOUT,
        );
        let elapsed = started.elapsed();
        eprintln!("node {node}: write without quorum: {reply:?} after {elapsed:?}");
        match reply {
            Ok(Value::Error(e)) => {
                let e = e.to_lowercase();
                assert!(
                    (e.starts_with("err") || e.starts_with("tryagain"))
                        && (e.contains("leader") || e.contains("timeout") || e.contains("quorum")),
                    "node {node}: error does not name a reason: {e}"
                );
            }
            other => panic!("node {node}: write without quorum answered {other:?}"),
        }
        assert!(
            elapsed < REQUEST_BOUND,
            "node {node}: the error took {elapsed:?}"
        );
    }
}

/// DESIGN.md 2.7: "ctrlc triggers an orderly shutdown (stop accepting, flush,
/// fsync, exit 0)".
#[test]
fn sigterm_exits_zero_and_a_restart_recovers_everything() {
    let mut cluster = TestCluster::builder(3).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let keys = 20;
    for i in 0..keys {
        cluster.set(i % cluster.len(), &key(i), &value(i, 0));
    }
    let commit = cluster
        .info(lead.leader)
        .expect("leader INFO")
        .commit_index();
    for i in 0..cluster.len() {
        let status = cluster
            .terminate(i, deadline_in(Duration::from_secs(15)))
            .unwrap_or_else(|| panic!("node {i} did not exit after SIGTERM"));
        assert_eq!(status.code(), Some(0), "node {i} exited with {status}");
    }
    for i in 0..cluster.len() {
        let log = cluster.log_since(i, 0);
        assert!(
            log.contains("stopped cleanly"),
            "node {i} did not log a clean stop"
        );
    }
    for i in 0..cluster.len() {
        cluster.restart(i);
    }
    let now = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION_DEADLINE));
    for i in 0..cluster.len() {
        let applied = cluster.wait_info(i, deadline_in(ELECTION_DEADLINE), |info| {
            info.applied_index() >= commit
        });
        assert!(
            applied.is_some(),
            "node {i} did not re-apply up to {commit}"
        );
    }
    for i in 0..keys {
        assert_eq!(
            cluster.get(i % cluster.len(), &key(i)),
            Some(value(i, 0)),
            "{}",
            key(i)
        );
    }
    assert!(now.term > lead.term);
}

/// `sraft status --json` (DESIGN.md 4.5): one object per node, with term,
/// indexes, leader and sub-leader RTTs as JSON numbers, and a stopped node
/// reported as down.
#[test]
fn status_json_reports_numbers_for_every_node() {
    let mut cluster = TestCluster::builder(3).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    cluster.set(lead.leader, "k", "v");
    let args = |cluster: &TestCluster| {
        vec![
            "status".to_string(),
            "--peers".into(),
            cluster.peers_arg(),
            "--json".into(),
        ]
    };
    let status = |cluster: &TestCluster| {
        let (exit, stdout, stderr) =
            run_to_exit(&args(cluster), deadline_in(Duration::from_secs(15)));
        let json: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}; stderr {stderr}"));
        (exit, json)
    };
    // The leader measures an RTT to each sub-leader within a few heartbeats.
    let json = poll_until(deadline_in(Duration::from_secs(10)), || {
        let (exit, json) = status(&cluster);
        assert!(exit.success(), "status exited with {exit}: {json}");
        let leader = &json[lead.leader];
        let measured = leader["sub_leaders"]
            .as_array()
            .is_some_and(|subs| !subs.is_empty() && subs.iter().all(|s| s["rtt_ms"].is_f64()));
        // A follower learns that "k" committed from the leader's next
        // message; with 10 ms heartbeats the RTTs can be measured before
        // that message arrives (issue 13), so wait for it too.
        let committed = json
            .as_array()
            .is_some_and(|nodes| nodes.iter().all(|n| n["commit_index"].as_u64() >= Some(2)));
        // `status` asks the nodes one after another: the primary may have
        // been asked before the heartbeat naming it arrived, the leader
        // after (failed 1 full run in 3 at load 16).
        let ranked = leader["sub_leaders"][0]["id"]
            .as_u64()
            .is_some_and(|p| json[p as usize]["subleader_rank"] == 0);
        (measured && committed && ranked).then_some(json)
    })
    .expect("the leader never reported a sub-leader RTT, a node never learned commit 2, or the primary never its rank");
    let nodes = json.as_array().expect("an array");
    assert_eq!(nodes.len(), 3, "{json}");
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node["node"], i, "{json}");
        assert_eq!(node["node_id"], i, "{json}");
        assert_eq!(node["up"], true, "{json}");
        assert_eq!(node["leader_id"], lead.leader, "{json}");
        assert_eq!(node["term"], lead.term, "{json}");
        for key in ["commit_index", "applied_index", "last_log_index"] {
            let index = node[key].as_u64();
            assert!(index.is_some_and(|n| n >= 2), "{key} of node {i}: {json}");
        }
        let role = if i == lead.leader {
            "leader"
        } else {
            "follower"
        };
        assert_eq!(node["role"], role, "{json}");
        assert_eq!(node["mode"], "s-raft", "{json}");
    }
    let sub = &nodes[lead.leader]["sub_leaders"][0];
    assert_eq!(sub["rank"], 0, "{json}");
    let primary = sub["id"].as_u64().expect("a numeric id") as usize;
    assert_eq!(nodes[primary]["subleader_rank"], 0, "{json}");

    let down = (lead.leader + 1) % 3;
    cluster.kill(down);
    let (exit, json) = status(&cluster);
    assert!(exit.success(), "two nodes still answer: {json}");
    assert_eq!(json[down]["up"], false, "{json}");
    assert!(json[down]["term"].is_null(), "{json}");
    assert!(json[down]["error"].is_string(), "{json}");
}
