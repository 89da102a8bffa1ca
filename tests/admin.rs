//! Cluster administration on real processes (issue 11): `sraft
//! transfer-leader` and the client port's `RAFT` command family.

use sraft::kv::resp::Value;
use sraft::settings::test_delay::ENV_DELAY_US_BY_PEER;
use sraft_testkit::{TestCluster, deadline_in, poll_until, run_to_exit};
use std::time::Duration;

const ELECTION: Duration = Duration::from_secs(20);
const CALL: Duration = Duration::from_secs(10);

fn transfer(cluster: &TestCluster, id: Option<usize>) -> (bool, String, String) {
    let mut args = vec![
        "transfer-leader".to_string(),
        "--peers".into(),
        cluster.peers_arg(),
    ];
    args.extend(id.map(|id| id.to_string()));
    let (status, stdout, stderr) = run_to_exit(&args, deadline_in(Duration::from_secs(20)));
    (status.success(), stdout, stderr)
}

/// The leader's primary sub-leader, as its INFO names it.
fn primary_subleader(cluster: &TestCluster, leader: usize) -> usize {
    poll_until(deadline_in(Duration::from_secs(10)), || {
        cluster.info(leader)?.sub_leaders().first().copied()
    })
    .expect("the leader names a sub-leader")
}

/// Node 2 is 2 ms away from the others (the transport's test-only delay),
/// so that whichever of nodes 0 and 1 leads, the other is its primary
/// sub-leader, beyond the designation's hysteresis: on plain loopback the
/// two followers' RTTs are equal within noise and the primary may change
/// between reading it and the transfer.
fn cluster_with_a_far_node() -> TestCluster {
    TestCluster::builder(3)
        .env(0, ENV_DELAY_US_BY_PEER, "2:2000")
        .env(1, ENV_DELAY_US_BY_PEER, "2:2000")
        .env(2, ENV_DELAY_US_BY_PEER, "0:2000,1:2000")
        .start()
}

#[test]
fn transfer_leader_hands_over_to_the_named_node_or_the_primary_subleader() {
    let cluster = cluster_with_a_far_node();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION));
    cluster.set(lead.leader, "before", "1");

    // To a named node: one of the two near nodes.
    let target = if lead.leader == 0 { 1 } else { 0 };
    let (ok, stdout, stderr) = transfer(&cluster, Some(target));
    assert!(ok, "stdout {stdout:?} stderr {stderr:?}");
    assert!(
        stdout.starts_with(&format!("OK node {target} leads term ")),
        "{stdout:?}"
    );
    let now = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION));
    assert_eq!(now.leader, target);
    assert_eq!(cluster.get(target, "before"), Some("1".into()));
    cluster.set(target, "after", "2");

    // Without a target: the primary sub-leader, the other near node (once
    // the new leader has measured RTTs, it names it and keeps it).
    let primary = 1 - target;
    poll_until(deadline_in(Duration::from_secs(10)), || {
        (primary_subleader(&cluster, target) == primary).then_some(())
    })
    .expect("the near follower becomes the primary sub-leader");
    let (ok, stdout, stderr) = transfer(&cluster, None);
    assert!(ok, "stdout {stdout:?} stderr {stderr:?}");
    assert!(
        stdout.starts_with(&format!("OK node {primary} leads term ")),
        "{stdout:?}"
    );
    assert_eq!(cluster.get(primary, "after"), Some("2".into()));
}

#[test]
fn transfer_leader_refusals_name_the_reason_and_change_nothing() {
    let cluster = TestCluster::builder(3).start();
    let lead = cluster.wait_for_leader(deadline_in(ELECTION));

    let (ok, stdout, stderr) = transfer(&cluster, Some(9));
    assert!(!ok, "stdout {stdout:?}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains("node 9 is not a voter"), "{stderr:?}");
    let (ok, _, stderr) = transfer(&cluster, Some(lead.leader));
    assert!(!ok);
    assert!(stderr.contains("already leads"), "{stderr:?}");

    // A follower redirects to the leader; bad arguments are errors.
    let follower = (lead.leader + 1) % 3;
    let answer = cluster.call(follower, &[b"RAFT", b"TRANSFER-LEADER"], CALL);
    match answer {
        Ok(Value::Error(e)) => assert!(
            e.starts_with(&format!("NOTLEADER node {} leads", lead.leader)),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    for args in [
        &[&b"RAFT"[..]][..],
        &[b"RAFT", b"NOPE"],
        &[b"RAFT", b"TRANSFER-LEADER", b"x"],
        &[b"RAFT", b"TRANSFER-LEADER", b"1", b"2"],
    ] {
        match cluster.call(lead.leader, args, CALL) {
            Ok(Value::Error(e)) => assert!(e.starts_with("ERR"), "{e}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    let still = cluster.wait_for_leader(deadline_in(ELECTION));
    assert_eq!((still.leader, still.term), (lead.leader, lead.term));
}
