//! Security (DESIGN.md 9) with real processes on loopback: the cluster
//! secret keeps a node with another secret out, and a secret file that
//! others can read refuses start. Every wait is a poll against a deadline.

mod common;

use common::{TestCluster, deadline_in, reserve_ports, run_to_exit, write_private};
use std::time::Duration;

/// Loose on purpose: a loaded 2-core box running debug builds.
const ELECTION_DEADLINE: Duration = Duration::from_secs(20);
const LOG_DEADLINE: Duration = Duration::from_secs(10);

/// A node restarted with the wrong cluster secret cannot rejoin: the
/// healthy nodes refuse its connections and say why, it says why it cannot
/// connect, and the healthy nodes' leader and term do not move; writes go on
/// without it.
#[test]
fn a_node_with_the_wrong_secret_cannot_join_or_disturb_the_cluster() {
    let mut cluster = TestCluster::builder(3).cluster_secret().start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    let leader = lead.leader;
    let intruder = (leader + 1) % cluster.len();
    let healthy: Vec<usize> = (0..cluster.len()).filter(|&i| i != intruder).collect();
    cluster.set(leader, "before", "1");

    cluster.kill(intruder);
    let wrong = cluster.dir().join("wrong.secret");
    write_private(&wrong, "not-the-cluster-secret\n");
    cluster.set_flag(
        intruder,
        "--cluster-secret-file",
        &wrong.display().to_string(),
    );
    let marks: Vec<u64> = (0..cluster.len()).map(|i| cluster.log_len(i)).collect();
    cluster.restart(intruder);

    let refused = cluster.wait_log_line(
        leader,
        marks[leader],
        &format!("node {intruder} authentication failed"),
        deadline_in(LOG_DEADLINE),
    );
    let refused = refused.expect("the leader logged no refusal of the intruder");
    assert!(
        refused.contains("closing connection from 127.0.0.1:"),
        "{refused}"
    );
    let own = cluster.wait_log_line(
        intruder,
        marks[intruder],
        "authentication failed",
        deadline_in(LOG_DEADLINE),
    );
    assert!(own.is_some(), "the intruder's log does not say why");
    let own = cluster.wait_log_line(
        intruder,
        marks[intruder],
        "refused our proof",
        deadline_in(LOG_DEADLINE),
    );
    assert!(
        own.is_some(),
        "the intruder's log does not say it was refused"
    );

    // Several election timeouts of the intruder's.
    std::thread::sleep(Duration::from_secs(3));
    cluster.set(leader, "after", "2");
    for &i in &healthy {
        let info = cluster.info(i).expect("a healthy node answers INFO");
        assert_eq!(info.term(), lead.term, "node {i}'s term moved");
        assert_eq!(info.leader_id(), Some(leader), "node {i}'s leader moved");
    }
    let outside = cluster.info(intruder).expect("the intruder answers INFO");
    assert_eq!(outside.leader_id(), None, "the intruder found a leader");
    assert!(
        outside.commit_index() < cluster.info(leader).unwrap().commit_index(),
        "the intruder got the new entries"
    );
    // One line per source and reason per interval, not one per attempt.
    let refusals = cluster
        .log_since(leader, marks[leader])
        .lines()
        .filter(|l| l.contains(&format!("node {intruder} authentication failed")))
        .count();
    assert!(
        refusals <= 2,
        "{refusals} refusal lines in 3 s: not rate-limited"
    );
}

/// A secret file that group or others can read, or an empty one, refuses
/// start with one line on stderr and exit status 2, before anything is
/// opened.
#[test]
fn a_bad_secret_file_refuses_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ports = reserve_ports(1);
    let path = dir.path().join("secret");
    for (mode, text, expected) in [
        (
            0o644,
            "s3cret\n",
            "mode 0644 lets group or others read it; chmod 600 it",
        ),
        (0o640, "s3cret\n", "mode 0640"),
        (0o600, "\n", "empty"),
    ] {
        write_private(&path, text);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let args: Vec<String> = [
            "--node-id",
            "0",
            "--peers",
            &format!("127.0.0.1:{}", ports[0]),
            "--data-dir",
            &dir.path().join("data").display().to_string(),
            "--cluster-secret-file",
            &path.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (status, _, stderr) = run_to_exit(&args, deadline_in(Duration::from_secs(10)));
        assert_eq!(status.code(), Some(2), "{mode:o}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{mode:o}: {stderr}");
        assert!(
            stderr.starts_with("sraft: bad cluster_secret_file '"),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{mode:o}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "the data dir was created"
        );
    }
}
