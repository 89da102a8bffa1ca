//! The crash fast path and the stickiness margin (DESIGN.md 3.4-3.5).

use super::*;

/// An `n`-node cluster, every link `latency_us` one way, with a leader that
/// has named its sub-leaders.
pub(crate) fn ranked_net_of(n: usize, latency_us: u64) -> (Net, usize) {
    ranked_net_with(RaftConfig::default(), n, latency_us)
}

pub(crate) fn ranked_net_with(config: RaftConfig, n: usize, latency_us: u64) -> (Net, usize) {
    let mut net = Net::with_config(n, config);
    net.latency_us = vec![latency_us; n];
    let l = net.elect();
    net.run_for_ms(500);
    assert_eq!(
        net.node(l).subleaders().len(),
        RaftConfig::default().subleader_count(n)
    );
    (net, l)
}

pub(crate) fn subleader(net: &Net, l: usize, rank: usize) -> usize {
    net.node(l).subleaders()[rank].0 as usize
}

/// Tells each of `nodes` that leader `l`'s process is gone (DESIGN.md 3.5).
pub(crate) fn hint(net: &mut Net, l: usize, nodes: &[usize]) {
    for &i in nodes {
        net.nodes[i].peer_unreachable(net.now_us, NodeId(l as u64));
        net.flush(i);
    }
}

/// Elections node `i` started so far: (pre-vote rounds, vote rounds).
pub(crate) fn elections_by(net: &Net, i: usize) -> (usize, usize) {
    let starts = |pre: bool| {
        net.events
            .iter()
            .filter(|(n, e)| {
                *n == i && matches!(e, Event::ElectionStarted { pre_vote, .. } if *pre_vote == pre)
            })
            .count()
    };
    (starts(true), starts(false))
}

/// Node `i` leads, in the term after `old_term`, having won an election
/// handed to it (DESIGN.md 3.5) while holding `rank`.
fn assert_handed_to(net: &Net, i: usize, rank: Option<usize>, old_term: Term) {
    assert_eq!(net.leader(), Some(i), "the hand-off's target does not lead");
    assert_eq!(won_as(net, i), Some(ElectionKind::HandOff { rank }));
    assert_eq!(net.node(i).term(), old_term.next(), "term inflated");
}

pub(crate) fn won_as(net: &Net, i: usize) -> Option<ElectionKind> {
    net.events.iter().find_map(|(n, e)| match e {
        Event::BecameLeader { kind, .. } if *n == i => Some(*kind),
        _ => None,
    })
}

/// Runs until leader `l` sends a heartbeat to `to`, and one more
/// millisecond so that it is delivered.
pub(crate) fn run_past_heartbeat(net: &mut Net, l: usize, to: usize) {
    loop {
        let before = net.sent.len();
        let deadline = net.node(l).next_deadline_us();
        net.run_until(deadline);
        let sent = net.sent[before..].iter().any(|m| {
            m.from == NodeId(l as u64)
                && m.to == NodeId(to as u64)
                && matches!(m.body, MessageBody::Heartbeat { .. })
        });
        if sent {
            net.run_for_ms(1);
            return;
        }
    }
}

/// Leader `l`'s heartbeats stop reaching `deaf` for the next `missed`
/// heartbeats, which the others all get; then `l` stops.
pub(crate) fn stop_leader_after_missed_heartbeats(
    net: &mut Net,
    l: usize,
    deaf: usize,
    missed: u64,
) {
    run_past_heartbeat(net, l, deaf);
    net.cut.insert((l, deaf));
    let hb_ms = net.node(l).config().heartbeat_interval_ms;
    net.run_for_ms(missed * hb_ms);
    net.stop(l);
}

/// Leader `l` appends an entry that reaches every follower but `missed`,
/// then stops; the events so far are cleared.
pub(crate) fn stop_after_an_append_that_misses(net: &mut Net, l: usize, missed: &[usize]) {
    for &i in missed {
        net.cut.insert((l, i));
    }
    net.propose(l, b"not every follower gets this");
    net.run_for_ms(5);
    net.stop(l);
    net.events.clear();
}

/// Who missed the dead leader's last Append (`leader_dies_mid_append`).
#[derive(Clone, Copy)]
enum Who {
    Primary,
    Secondary,
    FirstUnranked,
}

/// A ranked 5-node cluster (100 us links) whose leader died right after
/// an Append that the nodes in `missed` did not get: the hand-off cases
/// of DESIGN.md 3.5. No hint is given yet.
struct MidAppend {
    net: Net,
    l: usize,
    old_term: Term,
    primary: usize,
    secondary: usize,
    /// The survivors that hold no rank, lowest id first.
    unranked: Vec<usize>,
    survivors: Vec<usize>,
}

fn leader_dies_mid_append(config: RaftConfig, missed: &[Who]) -> MidAppend {
    let (mut net, l) = ranked_net_with(config, 5, 100);
    let old_term = net.node(l).term();
    let (primary, secondary) = (subleader(&net, l, 0), subleader(&net, l, 1));
    let unranked: Vec<usize> = (0..5)
        .filter(|&i| i != l && i != primary && i != secondary)
        .collect();
    let missed: Vec<usize> = missed
        .iter()
        .map(|who| match who {
            Who::Primary => primary,
            Who::Secondary => secondary,
            Who::FirstUnranked => unranked[0],
        })
        .collect();
    stop_after_an_append_that_misses(&mut net, l, &missed);
    MidAppend {
        net,
        l,
        old_term,
        primary,
        secondary,
        unranked,
        survivors: (0..5).filter(|&i| i != l).collect(),
    }
}

/// Runs in 100 us steps until some live node leads, at most `max_ms`;
/// returns the time that took.
pub(crate) fn run_until_a_leader(net: &mut Net, max_ms: u64) -> Option<u64> {
    let start = net.now_us;
    while net.now_us - start < max_ms * 1000 {
        if net.leader().is_some() {
            return Some(net.now_us - start);
        }
        net.run_until(net.now_us + 100);
    }
    net.leader().map(|_| net.now_us - start)
}

#[test]
fn a_crash_hinted_vote_round_keeps_an_ordinary_deadline() {
    // Issue 9: "The short retry applies only to a refused or lost PreVote;
    // the RequestVote round has an ordinary deadline." Here a vote round
    // takes 6 ms, more than crash_retry_ms (5 ms).
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 3_000);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.stop(l);
    // A dead process's last frames arrive before its EOF (DESIGN.md 3.5):
    // let the heartbeats in flight land before the hint, or one landing
    // after it would make its receiver follow the leader again.
    net.run_for_ms(4);
    let survivors: Vec<usize> = (0..5).filter(|&i| i != l).collect();
    net.events.clear();
    hint(&mut net, l, &survivors);
    // The pre-vote round trip (6 ms) is over: the primary asks for votes.
    net.run_for_ms(7);
    assert_eq!(net.node(primary).role(), Role::Candidate);
    let left_us = net.node(primary).election_deadline_us() - net.now_us;
    assert!(
        left_us > (config.follower_timeout_ms_min - 2) * 1000,
        "vote round deadline in {left_us} us"
    );
    net.run_for_ms(100);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), old_term.next(), "term inflated");
    // The pre-vote round (6 ms) may be asked twice; votes only once.
    assert_eq!(elections_by(&net, primary).1, 1);
}

#[test]
fn a_crash_hinted_pre_vote_refused_for_stickiness_is_answered_again_at_the_hint() {
    // DESIGN.md 3.5: voters that have not seen the sockets close yet still
    // hold the leader's stickiness. Their refusal is provisional: the round
    // stays open, and each answers again, granting, when its own hint
    // comes. A quarter of kill -9 failovers lost 5 ms to a retry before.
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.stop(l);
    net.events.clear();
    hint(&mut net, l, &[primary]);
    net.run_for_ms(1);
    assert_eq!(
        net.node(primary).role(),
        Role::PreCandidate,
        "a refusal for stickiness decided the round"
    );
    let retry_in_us = net.node(primary).election_deadline_us() - net.now_us;
    assert!(retry_in_us <= config.crash_retry_ms * 1000, "{retry_in_us}");
    let others: Vec<usize> = (0..5).filter(|&i| i != l && i != primary).collect();
    hint(&mut net, l, &others);
    let took_us = run_until_a_leader(&mut net, 20).expect("a leader");
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), old_term.next());
    assert_eq!(elections_by(&net, primary), (1, 1), "asked again");
    assert!(took_us < config.crash_retry_ms * 1000, "{took_us} us");
}

#[test]
fn a_crash_hinted_pre_vote_refused_for_stickiness_is_retried_soon() {
    // Issue 9: "The short retry applies only to a refused or lost PreVote".
    // Voters that never get a hint (their connection to the leader was
    // already down) let go when their stickiness runs out; the primary asks
    // again every crash_retry_ms meanwhile, in the same term.
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.stop(l);
    net.events.clear();
    hint(&mut net, l, &[primary]);
    net.run_for_ms(config.crash_retry_ms + 1);
    assert_eq!(elections_by(&net, primary), (2, 0), "not asked again");
    net.run_for_ms(config.leader_stickiness_ms + 2 * config.crash_retry_ms);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), old_term.next());
    assert_eq!(elections_by(&net, primary).1, 1);
}

#[test]
fn a_crash_hinted_secondary_waits_while_the_primary_campaigns() {
    // Issue 9: "the secondary's crash path waits until the primary's
    // attempt has visibly failed", so that ranks never compete
    // (DESIGN.md 3.4: "Ranks are disjoint, so the election is uncontested").
    // Two voters never see the hint: they refuse the primary until their
    // stickiness runs out. With the seed's timings that is 100 ms, twice
    // crash_stagger_ms, so the secondary must keep deferring; the defaults'
    // 30 ms stickiness ends before the secondary's stagger could.
    let (mut net, l) = ranked_net_with(RaftConfig::default().seed_timings(), 5, 100);
    let old_term = net.node(l).term();
    let (primary, secondary) = (subleader(&net, l, 0), subleader(&net, l, 1));
    run_past_heartbeat(&mut net, l, primary);
    net.stop(l);
    net.events.clear();
    hint(&mut net, l, &[primary, secondary]);
    net.run_for_ms(300);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(
        won_as(&net, primary),
        Some(ElectionKind::CrashHint { rank: 0 })
    );
    assert_eq!(net.node(primary).term(), old_term.next());
    let (pre_votes, votes) = elections_by(&net, primary);
    assert!(pre_votes > 10, "the primary asked only {pre_votes} times");
    assert_eq!(votes, 1);
    assert_eq!(elections_by(&net, secondary), (0, 0), "ranks competed");
}

/// A follower of three restored from a snapshot at `snapshot_index` and
/// `tail` entries after it (term 1, everything committed), and the rank a
/// heartbeat of leader 0 naming it primary under `config_index` gives it.
pub(crate) fn rank_after_restart(
    snapshot_index: u64,
    tail: u64,
    config_index: u64,
) -> Option<usize> {
    rank_after_restart_and_snapshot(snapshot_index, tail, snapshot_index, config_index)
}

/// [`rank_after_restart`], the follower having applied its tail and taken
/// a snapshot at `compact_to` (> `snapshot_index`) before the heartbeat.
pub(crate) fn rank_after_restart_and_snapshot(
    snapshot_index: u64,
    tail: u64,
    compact_to: u64,
    config_index: u64,
) -> Option<usize> {
    let last = snapshot_index + tail;
    let restored = RestoredState {
        hard_state: HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(last),
        },
        snapshot: SnapshotMeta {
            last_index: LogIndex(snapshot_index),
            last_term: Term(1),
            config: ClusterConfig::new(ids(3)),
        },
        entries: (snapshot_index + 1..=last).map(|i| entry(i, 1)).collect(),
    };
    let mut follower = Raft::new(NodeId(1), RaftConfig::default(), restored, 7, 0);
    if compact_to > snapshot_index {
        let applied = follower.ready().committed.len() as u64;
        assert_eq!(applied, tail, "the restored tail is applied");
        let meta = SnapshotMeta {
            last_index: LogIndex(compact_to),
            last_term: Term(1),
            config: ClusterConfig::new(ids(3)),
        };
        follower.snapshot_saved(500, meta, 100);
        assert_eq!(follower.snapshot_meta().last_index, LogIndex(compact_to));
    }
    let heartbeat = Message {
        from: NodeId(0),
        to: NodeId(1),
        term: Term(1),
        body: MessageBody::Heartbeat {
            commit: LogIndex(last),
            sent_at_us: 1,
            read_round: 0,
            designation: Some(Designation {
                config_index: LogIndex(config_index),
                ranks: vec![NodeId(1)],
            }),
        },
    };
    follower.step(1_000, heartbeat);
    follower.subleader_rank()
}

#[test]
fn a_follower_restored_from_a_snapshot_takes_the_rank_of_the_same_configuration() {
    // DESIGN.md 3.2: "A follower takes its rank only if the configuration
    // index is its own". A node restarted from a snapshot knows the
    // configuration by the snapshot's index (the entry was compacted),
    // while the leader still says 0 for the same configuration, or the
    // reverse. Found on real processes: ranks ignored after the first
    // snapshot, crash fast paths turned into fallback elections.
    // Ours from our snapshot at 100, the leader's entry at 0 or 90.
    assert_eq!(rank_after_restart(100, 0, 0), Some(0));
    assert_eq!(rank_after_restart(100, 0, 90), Some(0));
    assert_eq!(rank_after_restart(100, 0, 100), Some(0));
    // Ours the initial entry (0), the leader's from its snapshot at 90,
    // which we committed through.
    assert_eq!(rank_after_restart(0, 100, 90), Some(0));
    // A configuration index past what we committed: maybe a change we have
    // not seen, so no rank yet.
    assert_eq!(rank_after_restart(100, 0, 101), None);
    assert_eq!(rank_after_restart(0, 100, 101), None);
}

#[test]
fn a_follower_that_snapshotted_again_after_a_restart_still_takes_its_rank() {
    // EXPERIMENTS.md 12: a node restarted from its snapshot at 100 (so its
    // configuration is "as of 100"), which then took a newer snapshot
    // (140), under a leader whose own configuration index is older (90,
    // from the leader's older snapshot, or 0): the same configuration.
    // The rank was ignored, and as the primary the node took no crash
    // hint; 3 kill -9 failovers in 1000 waited for the secondary's 50 ms.
    for config_index in [0, 90, 100, 140, 150] {
        assert_eq!(
            rank_after_restart_and_snapshot(100, 50, 140, config_index),
            Some(0),
            "leader's configuration index {config_index}"
        );
    }
    assert_eq!(rank_after_restart_and_snapshot(100, 50, 140, 151), None);
}

#[test]
fn a_secondary_ahead_of_a_primary_that_timed_out_takes_over_before_its_own_window() {
    // DESIGN.md 3.4 (issue 13): "If it loses (say it was behind), the next
    // rank tries". A leader that freezes with an Append to the primary
    // unsent leaves the primary behind every other voter; the secondary,
    // refusing the primary's pre-vote for its log while it no longer hears
    // the leader, campaigns one heartbeat later instead of at its own
    // window, in term old + 1, by PreVote and RequestVote.
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let (primary, secondary) = (subleader(&net, l, 0), subleader(&net, l, 1));
    stop_after_an_append_that_misses(&mut net, l, &[primary]);
    net.run_for_ms(config.secondary_timeout_ms_min - 10);
    assert_eq!(elections_by(&net, primary), (1, 0), "the primary's attempt");
    assert_eq!(net.leader(), Some(secondary));
    assert_eq!(
        won_as(&net, secondary),
        Some(ElectionKind::SubLeader { rank: 1 })
    );
    assert_eq!(net.node(secondary).term(), old_term.next());
    assert_eq!(elections_by(&net, secondary), (1, 1));
}

#[test]
fn a_crash_hinted_primary_refused_for_its_log_hands_the_election_to_the_secondary() {
    // Issue 9: the secondary "waits until the primary's attempt has visibly
    // failed"; a primary that a majority refuses for its log (Raft paper
    // 5.4.1) cannot win by asking again, so its attempt ends at once, and
    // it hands the election to the best-ranked voter that refused it
    // (DESIGN.md 3.5) instead of leaving it to crash_stagger_ms.
    let config = RaftConfig::default();
    let MidAppend {
        mut net,
        l,
        old_term,
        primary,
        secondary,
        survivors,
        ..
    } = leader_dies_mid_append(config.clone(), &[Who::Primary]);
    hint(&mut net, l, &survivors);
    let took_us = run_until_a_leader(&mut net, 100).expect("a leader");
    net.run_for_ms(5);
    assert_eq!(net.node(primary).subleader_rank(), None, "rank kept");
    assert_eq!(elections_by(&net, primary), (1, 0), "futile retries");
    assert_handed_to(&net, secondary, Some(1), old_term);
    // Before the hand-off: crash_stagger_ms (50) after the primary's try.
    assert!(
        took_us < config.crash_stagger_ms * 1000 / 10,
        "{took_us} us"
    );
    let others: Vec<usize> = survivors
        .iter()
        .copied()
        .filter(|&i| i != primary && i != secondary)
        .collect();
    for i in others {
        assert_eq!(elections_by(&net, i), (0, 0), "node {i} campaigned");
    }
}

#[test]
fn a_crash_hinted_primary_behind_two_of_four_survivors_gives_up_at_once() {
    // EXPERIMENTS.md 12: the leader died with an Append sent to the
    // secondary and one more follower but not to the primary. Two
    // survivors refuse the primary for its log, one grants; the dead leader
    // never answers, so the round can never be won. It used to stay
    // undecided, retried for the whole crash window (150 ms), each retry
    // holding the secondary back (`crash_stagger_ms` after the last), and
    // then fell back to an ordinary election: 55-720 ms instead of ~50.
    // Now it loses at once and hands the election to the secondary.
    let MidAppend {
        mut net,
        l,
        old_term,
        primary,
        secondary,
        survivors,
        ..
    } = leader_dies_mid_append(RaftConfig::default(), &[Who::Primary, Who::FirstUnranked]);
    hint(&mut net, l, &survivors);
    let took_us = run_until_a_leader(&mut net, 200).expect("a leader");
    net.run_for_ms(5);
    assert_eq!(elections_by(&net, primary), (1, 0), "retried a lost round");
    assert_eq!(net.node(primary).subleader_rank(), None, "rank kept");
    assert_handed_to(&net, secondary, Some(1), old_term);
    assert!(took_us <= 5_000, "{took_us} us");
}

#[test]
fn both_sub_leaders_behind_hand_the_election_to_a_follower_ahead_of_them() {
    // EXPERIMENTS.md 12: 3 of 300 kill -9 failovers found the primary and
    // the secondary both behind (the dead leader's last Append reached
    // only the unranked followers), and nobody led until an unranked
    // follower's ordinary timeout, 423-611 ms later. The primary, refused
    // for its log by both, hands the election to one of them; the
    // secondary, behind too, is never asked.
    let MidAppend {
        mut net,
        l,
        old_term,
        secondary,
        unranked: ahead,
        survivors,
        ..
    } = leader_dies_mid_append(RaftConfig::default(), &[Who::Primary, Who::Secondary]);
    hint(&mut net, l, &survivors);
    let took_us = run_until_a_leader(&mut net, 1_000).expect("a leader");
    assert!(took_us <= 5_000, "{took_us} us, not within 5 ms");
    // The lowest id of those ahead.
    let winner = ahead[0];
    assert_handed_to(&net, winner, None, old_term);
    assert_eq!(elections_by(&net, secondary), (0, 0));
    assert_eq!(elections_by(&net, ahead[1]), (0, 0));
    // The entry only the followers ahead held is kept, and commits.
    let last = net.node(winner).last_index();
    net.run_for_ms(20);
    for i in survivors {
        assert!(net.node(i).commit_index() >= last, "node {i}");
    }
}

#[test]
fn a_hand_off_waits_for_the_receivers_own_crash_hint() {
    // DESIGN.md 3.5: a hand-off, like the hint itself, never makes a
    // follower that still hears its leader campaign. One that got the
    // hand-off before its own hint campaigns when the hint comes.
    let MidAppend {
        mut net,
        l,
        old_term,
        primary,
        secondary,
        survivors,
        ..
    } = leader_dies_mid_append(RaftConfig::default(), &[Who::Primary]);
    let early: Vec<usize> = survivors.into_iter().filter(|&i| i != secondary).collect();
    hint(&mut net, l, &early);
    net.run_for_ms(3);
    assert!(
        net.sent.iter().any(|m| m.from == NodeId(primary as u64)
            && m.to == NodeId(secondary as u64)
            && matches!(m.body, MessageBody::HandOff { .. })),
        "no hand-off sent"
    );
    assert_eq!(
        elections_by(&net, secondary),
        (0, 0),
        "campaigned on a hand-off alone"
    );
    assert_eq!(net.leader(), None);
    hint(&mut net, l, &[secondary]);
    let took_us = run_until_a_leader(&mut net, 200).expect("a leader");
    assert_handed_to(&net, secondary, Some(1), old_term);
    assert!(took_us <= 3_000, "{took_us} us after its own hint");
}

#[test]
fn a_hand_off_to_a_follower_of_a_live_leader_changes_nothing() {
    // A hand-off is a hint, never authority (DESIGN.md 3.5): sent to a
    // follower whose leader is alive (no crash hint), it starts nothing.
    let (mut net, l) = ranked_net_of(5, 100);
    let term = net.node(l).term();
    let (primary, secondary) = (subleader(&net, l, 0), subleader(&net, l, 1));
    net.events.clear();
    let forged = Message {
        from: NodeId(primary as u64),
        to: NodeId(secondary as u64),
        term,
        body: MessageBody::HandOff {
            leader: NodeId(l as u64),
        },
    };
    net.nodes[secondary].step(net.now_us, forged);
    net.flush(secondary);
    net.run_for_ms(500);
    assert_eq!(net.leader(), Some(l));
    assert_eq!(net.node(l).term(), term);
    assert_eq!(elections_by(&net, secondary), (0, 0));
    // Heard from its leader since: a later crash hint finds no stale
    // hand-off to act on, and the secondary waits its rank's stagger.
    net.stop(l);
    net.events.clear();
    hint(&mut net, l, &[secondary]);
    net.run_for_ms(1);
    assert_eq!(
        elections_by(&net, secondary),
        (0, 0),
        "acted on a stale hand-off"
    );
}

fn config_stagger_us() -> u64 {
    RaftConfig::default().crash_stagger_ms * 1000
}

#[test]
fn in_lease_mode_a_hand_off_waits_for_the_promise_and_is_not_lost() {
    // DESIGN.md 3.8: no hint shortens a voter's promise to the lease
    // holder, and a node inside its promise does not campaign; a hand-off
    // is put off to the promise's end like a crash hint, never dropped.
    // The target heard the dead leader's last Append, so its promise ends
    // after everyone else's.
    let config = RaftConfig {
        read_mode: ReadMode::Lease,
        ..RaftConfig::default()
    };
    let MidAppend {
        mut net,
        l,
        old_term,
        unranked: ahead,
        survivors,
        ..
    } = leader_dies_mid_append(config, &[Who::Primary, Who::Secondary]);
    hint(&mut net, l, &survivors);
    // At the end of the target's promise (25.5 ms here). A dropped
    // hand-off left it to the secondary's crash_stagger_ms and its own
    // hand-off (72.8 ms).
    let took_us = run_until_a_leader(&mut net, 150).expect("a leader within 150 ms");
    assert!(took_us < config_stagger_us(), "{took_us} us");
    assert_handed_to(&net, ahead[0], None, old_term);
}

#[test]
fn stickiness_leaves_a_heartbeat_of_margin_below_the_primary_timeout() {
    // Issue 9: "the default stickiness leaves at least one heartbeat
    // interval of margin below the primary's minimum timeout (validated)".
    let config = RaftConfig::default();
    assert!(
        config.leader_stickiness_ms + config.heartbeat_interval_ms <= config.primary_timeout_ms_min
    );
    let tight = RaftConfig {
        leader_stickiness_ms: config.primary_timeout_ms_min - config.heartbeat_interval_ms + 1,
        ..config.clone()
    };
    let e = tight.validate().unwrap_err().to_string();
    for value in [
        format!("leader_stickiness_ms={}", tight.leader_stickiness_ms),
        format!("heartbeat_interval_ms={}", config.heartbeat_interval_ms),
        format!("primary_timeout_ms_min={}", config.primary_timeout_ms_min),
    ] {
        assert!(e.contains(&value), "{e}");
    }
}

#[test]
fn a_primary_that_missed_the_last_heartbeat_is_not_refused_for_stickiness() {
    // DESIGN.md 3.4: "Voters' leader stickiness ... lasts no longer than the
    // primary's shortest timeout, so a designated sub-leader is never
    // refused for it", with one heartbeat of margin (issue 9): the voters
    // heard the leader one heartbeat later than the primary did.
    let (mut net, l) = ranked_net_of(5, 100);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.events.clear();
    stop_leader_after_missed_heartbeats(&mut net, l, primary, 1);
    net.run_for_ms(300);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(
        won_as(&net, primary),
        Some(ElectionKind::SubLeader { rank: 0 })
    );
    assert_eq!(net.node(primary).term(), old_term.next());
    assert_eq!(elections_by(&net, primary), (1, 1), "refused at first");
}

pub(crate) fn primary_refused_for_stickiness_keeps_its_rank(voters: usize) {
    // Issue 9: "a primary refused only for stickiness keeps its rank" and
    // asks again. It missed two heartbeats, so the voters are still sticky
    // when its timer fires.
    let (mut net, l) = ranked_net_of(voters, 100);
    let old_term = net.node(l).term();
    let primary = subleader(&net, l, 0);
    net.events.clear();
    stop_leader_after_missed_heartbeats(&mut net, l, primary, 2);
    while elections_by(&net, primary).0 == 0 {
        net.run_for_ms(1);
    }
    net.run_for_ms(1);
    // Five voters: three refusals lose the round. Three voters: one refusal
    // and the dead leader's silence leave it undecided.
    let role = net.node(primary).role();
    assert!(
        matches!(role, Role::Follower | Role::PreCandidate),
        "{role:?}"
    );
    assert_eq!(net.node(primary).subleader_rank(), Some(0), "rank dropped");
    net.run_for_ms(300);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(
        won_as(&net, primary),
        Some(ElectionKind::SubLeader { rank: 0 })
    );
    assert_eq!(net.node(primary).term(), old_term.next());
    assert_eq!(elections_by(&net, primary), (2, 1));
    for i in (0..voters).filter(|&i| i != primary) {
        assert_eq!(elections_by(&net, i), (0, 0), "node {i} campaigned");
    }
}

#[test]
fn a_primary_refused_only_for_stickiness_keeps_its_rank_and_asks_again() {
    primary_refused_for_stickiness_keeps_its_rank(5);
}

#[test]
fn a_primary_refused_for_stickiness_in_three_voters_asks_again_within_a_heartbeat() {
    // With three voters the dead leader's silence leaves the round undecided;
    // the refused primary still asks again one heartbeat interval later.
    primary_refused_for_stickiness_keeps_its_rank(3);
}

#[test]
fn a_candidate_asks_again_the_voters_that_did_not_answer() {
    // DESIGN.md 3.4: a voter that heard from its leader within the
    // stickiness window ignores a RequestVote without answering (thesis
    // 4.2.3), and a request can be lost. A leader that only stalled, woke
    // up between the primary's pre-vote and its vote, and stepped down on
    // seeing the new term left nobody leading for 667 ms in a soak
    // (EXPERIMENTS.md 10). The candidate asks the silent voters again one
    // heartbeat later, in the same term, and wins long before any timeout.
    let config = RaftConfig::default();
    let (mut net, l) = ranked_net_of(5, 100);
    let primary = subleader(&net, l, 0);
    let term = net.node(primary).term().next();
    net.stop(l);
    net.events.clear();
    let give_up = net.now_us + config.secondary_timeout_ms_min * 1000;
    while net.node(primary).role() != Role::PreCandidate {
        assert!(net.now_us < give_up, "the primary never campaigned");
        net.run_until(net.now_us + 100);
    }
    // Its RequestVotes go nowhere: the pre-vote round finishes, the vote
    // requests are dropped as they are sent.
    for j in 0..5 {
        net.cut.insert((primary, j));
    }
    while net.node(primary).role() != Role::Candidate {
        assert!(net.now_us < give_up, "the primary's pre-vote failed");
        net.run_until(net.now_us + 100);
    }
    let asked_at = net.now_us;
    net.cut.clear();
    net.run_for_ms(3 * config.heartbeat_interval_ms);
    assert_eq!(
        net.leader(),
        Some(primary),
        "the candidate did not ask again"
    );
    assert_eq!(net.node(primary).term(), term);
    let took_us = net.now_us - asked_at;
    assert!(
        took_us <= 3 * config.heartbeat_interval_ms * 1000,
        "elected {took_us} us after its first vote requests were lost"
    );
    for other in (0..5).filter(|&i| i != primary && i != l) {
        assert_eq!(elections_by(&net, other), (0, 0), "node {other} campaigned");
    }
}
