//! RTT zones on real processes (issue 13): five `sraft` nodes on loopback
//! in three emulated availability zones (`SRAFT_TEST_DELAY_US_BY_PEER`,
//! 0.1 ms within a zone, 1.5 ms across). The leader must name its
//! same-zone follower its primary sub-leader, as INFO and the log show.
//! Designation only, no timing assertion: the machine is shared and the
//! nodes are debug builds (timings are measured by failover-experiment
//! and asserted in simulation, tests/failover.rs).

use sraft::core::NodeId;
use sraft::settings::test_delay::{ENV_DELAY_US_BY_PEER, ZoneLayout};
use sraft_testkit::{TestCluster, deadline_in};
use std::time::Duration;

const ELECTION_DEADLINE: Duration = Duration::from_secs(30);
const DESIGNATION_DEADLINE: Duration = Duration::from_secs(20);

fn zoned_cluster(layout: &ZoneLayout) -> TestCluster {
    let mut builder = TestCluster::builder(layout.zones.len());
    for i in 0..layout.zones.len() {
        builder = builder.env(i, ENV_DELAY_US_BY_PEER, &layout.env_value(NodeId(i as u64)));
    }
    builder.start()
}

/// The one other node in `leader`'s zone, if its zone has exactly two.
fn zone_peer(layout: &ZoneLayout, leader: usize) -> Option<usize> {
    let zone = layout.zones[leader];
    let peers: Vec<usize> = (0..layout.zones.len())
        .filter(|n| *n != leader && layout.zones[*n] == zone)
        .collect();
    match peers[..] {
        [peer] => Some(peer),
        _ => None,
    }
}

#[test]
fn in_three_zones_the_leader_names_its_same_zone_follower_primary() {
    let layout = ZoneLayout::three_zones();
    let mut cluster = zoned_cluster(&layout);
    for i in 0..layout.zones.len() {
        let line = cluster.wait_log_line(
            i,
            0,
            "TEST-ONLY network delay active",
            deadline_in(Duration::from_secs(10)),
        );
        let line = line.unwrap_or_else(|| panic!("node {i} logged no test-delay line"));
        assert!(
            line.contains(&layout.env_value(NodeId(i as u64))),
            "node {i}: {line}"
        );
    }
    let mut lead = cluster.wait_for_leader(deadline_in(ELECTION_DEADLINE));
    if zone_peer(&layout, lead.leader).is_none() {
        // The leader sits alone in its zone: make a leader elsewhere, so
        // that there is a same-zone follower to name.
        let alone = lead.leader;
        cluster.kill(alone);
        lead = cluster.wait_for_leader_above(lead.term, deadline_in(ELECTION_DEADLINE));
        cluster.restart(alone);
    }
    let leader = lead.leader;
    let peer = zone_peer(&layout, leader).expect("the new leader has a zone peer");
    let info = cluster
        .wait_info(leader, deadline_in(DESIGNATION_DEADLINE), |info| {
            info.role() == "leader" && info.sub_leaders().first() == Some(&peer)
        })
        .unwrap_or_else(|| {
            panic!(
                "leader {leader} (zone {}) never named its zone peer {peer} primary: {:?}",
                layout.zones[leader],
                cluster.info(leader).map(|i| i.sub_leaders())
            )
        });
    let subs = info.sub_leaders();
    assert_eq!(subs.len(), 2, "{subs:?}");
    // The follower agrees it holds rank 0.
    let ranked = cluster.wait_info(peer, deadline_in(DESIGNATION_DEADLINE), |info| {
        info.get("subleader_rank") == "0"
    });
    assert!(
        ranked.is_some(),
        "node {peer} never reported subleader_rank:0"
    );
    // And the seed's log line says so.
    let needle = format!("[Leader {leader}] Sub-leaders assigned");
    let line = cluster
        .wait_log_line(leader, 0, &needle, deadline_in(DESIGNATION_DEADLINE))
        .expect("a designation line");
    let primary = format!("primary=Node {peer}");
    let found = cluster
        .log_since(leader, 0)
        .lines()
        .any(|l| l.contains(&needle) && l.contains(&primary));
    assert!(found, "no {needle:?} line with {primary:?}; first: {line}");
}
