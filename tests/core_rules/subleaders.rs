//! S-Raft sub-leaders (DESIGN.md 3).

use super::*;

/// A 5-node cluster where node `l` leads and followers' latencies differ.
pub(crate) fn ranked_net(latencies_us: [u64; 5]) -> (Net, usize) {
    let mut net = Net::new(5);
    net.latency_us = latencies_us.to_vec();
    let l = net.elect();
    net.run_for_ms(500);
    (net, l)
}

#[test]
fn the_leader_names_the_fastest_caught_up_followers_as_subleaders() {
    // DESIGN.md 3.2: "ranks the followers that are caught up ... by RTT, and
    // names the fastest max(1, floor(N * subleader_ratio))".
    let (net, l) = ranked_net([100, 100, 100, 100, 100]);
    let mut net = net;
    // Make follower latencies distinct, then let the SRTTs converge.
    let followers: Vec<usize> = (0..5).filter(|&i| i != l).collect();
    for (k, &f) in followers.iter().enumerate() {
        net.latency_us[f] = 400 - 100 * k as u64;
    }
    net.latency_us[l] = 0;
    net.run_for_ms(2_000);
    let expected = vec![NodeId(followers[3] as u64), NodeId(followers[2] as u64)];
    assert_eq!(net.node(l).subleaders(), expected.as_slice());
    let srtt = |f: usize| net.node(l).srtt_us(NodeId(f as u64)).unwrap();
    assert!(srtt(followers[3]) < srtt(followers[2]));
}

#[test]
fn a_follower_that_falls_behind_loses_its_designation() {
    // DESIGN.md 3.2: "the leader withdraws it from a follower that falls
    // behind."
    let (mut net, l) = ranked_net([100; 5]);
    let primary = net.node(l).subleaders()[0].0 as usize;
    net.isolate(primary);
    for i in 0..10u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(500);
    assert!(!net.node(l).subleaders().contains(&NodeId(primary as u64)));
    assert_eq!(net.node(l).subleaders().len(), 2, "a replacement was named");
}

#[test]
fn the_primary_takes_over_after_a_silent_leader_failure_without_a_split_vote() {
    // DESIGN.md 3.3-3.4: the primary's timer (150-200 ms) fires first; the
    // ranks are disjoint, so one uncontested election decides.
    let (mut net, l) = ranked_net([100; 5]);
    let old_term = net.node(l).term();
    let primary = net.node(l).subleaders()[0].0 as usize;
    net.stop(l);
    let stopped_at = net.now_us;
    net.events.clear();
    net.run_for_ms(400);
    let new = net.leader().expect("a new leader");
    assert_eq!(new, primary);
    assert_eq!(
        net.node(new).term(),
        old_term.next(),
        "more than one election"
    );
    let (at, kind) = net
        .events
        .iter()
        .find_map(|(i, e)| match e {
            Event::BecameLeader { kind, .. } if *i == new => Some((net.now_us, *kind)),
            _ => None,
        })
        .unwrap();
    assert_eq!(kind, ElectionKind::SubLeader { rank: 0 });
    assert!(at > stopped_at);
    let starts = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::ElectionStarted { pre_vote: true, .. }))
        .count();
    assert_eq!(starts, 1, "only the primary campaigned");
}

#[test]
fn the_crash_hint_starts_the_primary_at_once() {
    // DESIGN.md 3.5: "A sub-leader that sees both starts its promotion
    // immediately, and voters that see them drop stickiness."
    let (mut net, l) = ranked_net([100; 5]);
    let primary = net.node(l).subleaders()[0].0 as usize;
    net.stop(l);
    let at = net.now_us;
    for i in 0..5 {
        if i != l {
            net.nodes[i].peer_unreachable(at, NodeId(l as u64));
            net.flush(i);
        }
    }
    net.run_for_ms(3);
    assert_eq!(net.leader(), Some(primary));
    assert!(net.events.iter().any(|(i, e)| *i == primary
        && matches!(
            e,
            Event::BecameLeader {
                kind: ElectionKind::CrashHint { rank: 0 },
                ..
            }
        )));
}

#[test]
fn a_crash_hint_about_a_non_leader_changes_nothing() {
    // The hint starts an election only about the current leader; it is
    // never authority to lead.
    let (mut net, l) = ranked_net([100; 5]);
    let term = net.node(l).term();
    let primary = net.node(l).subleaders()[0].0 as usize;
    let bystander = (0..5).find(|&i| i != l && i != primary).unwrap();
    net.nodes[primary].peer_unreachable(net.now_us, NodeId(bystander as u64));
    net.flush(primary);
    net.run_for_ms(100);
    assert_eq!(net.leader(), Some(l));
    assert_eq!(net.node(l).term(), term);
}

#[test]
fn original_mode_names_no_subleaders() {
    let mut net = Net::with_config(5, RaftConfig::default().original());
    let l = net.elect();
    net.run_for_ms(1_000);
    assert!(net.node(l).subleaders().is_empty());
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| matches!(e, Event::SubleadersAssigned { .. }))
    );
}

#[test]
fn followers_know_the_subleaders_their_leader_named() {
    // INFO's `sub_leaders` on any node (DESIGN.md 4.6): what the current
    // leader last named, and nothing once that leader is gone.
    let (mut net, l) = ranked_net([100; 5]);
    let named = net.node(l).subleaders().to_vec();
    assert_eq!(named.len(), 2);
    for i in (0..5).filter(|&i| i != l) {
        assert_eq!(net.node(i).known_subleaders(), named.as_slice(), "node {i}");
    }
    net.stop(l);
    net.run_for_ms(400);
    let new = net.leader().expect("a new leader");
    for i in (0..5).filter(|&i| i != l && i != new) {
        assert!(
            !net.node(i).known_subleaders().contains(&NodeId(new as u64)),
            "node {i} still reports the old ranking naming the new leader"
        );
    }
}

/// Equal links from leader `l`, ranks settled; the two non-holders.
fn settled_with_challengers() -> (Net, usize, Vec<NodeId>, [usize; 2]) {
    let (mut net, l) = ranked_net([300; 5]);
    net.latency_us[l] = 0;
    net.run_for_ms(500);
    let held = net.node(l).subleaders().to_vec();
    assert_eq!(held.len(), 2);
    let others: Vec<usize> = (0..5)
        .filter(|&i| i != l && !held.contains(&NodeId(i as u64)))
        .collect();
    (net, l, held, [others[0], others[1]])
}

#[test]
fn a_faster_challenger_moves_the_ranks_only_once_it_stays_faster() {
    // DESIGN.md 3.2: "a holder is replaced for speed alone only after a
    // challenger has beaten it by that margin at every re-ranking for a
    // second". One non-holder four times nearer: for half a second (a
    // burst of noise) the ranks hold, for longer it leads them.
    let (mut net, l, held, [challenger, _]) = settled_with_challengers();
    net.latency_us[challenger] = 75;
    net.run_for_ms(500);
    assert_eq!(net.node(l).subleaders(), held.as_slice(), "a passing burst");
    net.latency_us[challenger] = 300;
    net.run_for_ms(1_000);
    assert_eq!(net.node(l).subleaders(), held.as_slice());
    // The burst's start is forgotten: half a second into the next one the
    // ranks still hold.
    net.latency_us[challenger] = 75;
    net.run_for_ms(600);
    assert_eq!(net.node(l).subleaders(), held.as_slice(), "a new burst");
    net.run_for_ms(1_400);
    assert_eq!(net.node(l).subleaders()[0], NodeId(challenger as u64));
}

#[test]
fn challengers_taking_turns_do_not_move_the_ranks() {
    // Noise on equal links makes a different follower the fastest from
    // one moment to the next: none of them stays faster for a second.
    let (mut net, l, held, [a, b]) = settled_with_challengers();
    for turn in 0..10 {
        let (fast, slow) = if turn % 2 == 0 { (a, b) } else { (b, a) };
        net.latency_us[fast] = 75;
        net.latency_us[slow] = 300;
        net.run_for_ms(400);
    }
    assert_eq!(net.node(l).subleaders(), held.as_slice());
}
