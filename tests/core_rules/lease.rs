//! Lease reads (DESIGN.md 3.8).

use super::*;
use crate::crash_path::{ranked_net_with, subleader};

fn lease_config() -> RaftConfig {
    RaftConfig {
        read_mode: ReadMode::Lease,
        ..RaftConfig::default()
    }
}

/// Whether a heartbeat of a ReadIndex round left since `before`.
fn read_round_sent(net: &Net, before: usize) -> bool {
    net.sent[before..]
        .iter()
        .any(|m| matches!(m.body, MessageBody::Heartbeat { read_round, .. } if read_round > 0))
}

fn vote_request(from: usize, to: usize, term: Term, last: (LogIndex, Term)) -> Message {
    msg(
        from as u64,
        to as u64,
        term.0,
        MessageBody::Vote {
            last_index: last.0,
            last_term: last.1,
            transfer: false,
        },
    )
}

fn granted(out: &[Message]) -> bool {
    out.iter()
        .any(|m| matches!(m.body, MessageBody::VoteReply { granted: true }))
}

#[test]
fn a_lease_read_is_served_without_a_heartbeat_round() {
    // DESIGN.md 3.8: "a leader serves reads locally while it holds a lease".
    let mut net = Net::with_config(3, lease_config());
    let l = net.elect();
    net.run_for_ms(20);
    assert!(net.node(l).lease_valid());
    let before = net.sent.len();
    net.read(l, 1);
    assert_eq!(net.answers.len(), 1, "served at once");
    assert!(!read_round_sent(&net, before), "no heartbeat round");
    assert_eq!(net.node(l).lease_reads_served(), 1);
}

#[test]
fn read_index_stays_the_default() {
    assert_eq!(RaftConfig::default().read_mode, ReadMode::ReadIndex);
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(20);
    assert!(!net.node(l).lease_valid());
    net.read(l, 1);
    assert!(net.answers.is_empty(), "served before a heartbeat round");
}

#[test]
fn a_lease_expires_when_the_quorum_stops_answering() {
    // DESIGN.md 3.8: the lease ends `lease_duration_us` after the send time
    // of the last round a quorum acknowledged, on the leader's clock.
    let mut net = Net::with_config(3, lease_config());
    let l = net.elect();
    net.run_for_ms(20);
    net.isolate(l);
    let isolated_at = net.now_us;
    net.run_for_ms(1);
    assert!(net.node(l).lease_valid(), "acknowledged 1 ms ago");
    let lease_us = lease_config().lease_duration_us();
    assert_eq!(lease_us, 30_000 * 1_000_000 / 1_050_000 - 2);
    net.run_until(isolated_at + lease_us + 1);
    assert!(!net.node(l).lease_valid(), "lease outlived its last round");
    let before = net.sent.len();
    net.read(l, 2);
    assert!(net.answers.is_empty(), "served on an expired lease");
    assert!(read_round_sent(&net, before), "falls back to ReadIndex");
}

#[test]
fn no_lease_read_before_the_first_entry_of_the_term_commits() {
    // DESIGN.md 3.8, as thesis 6.4 step 1 for ReadIndex: a new leader's
    // commit index may lag the writes of earlier leaders until its own
    // first entry commits.
    // A transfer makes a new leader at a known moment: catch it before
    // its no-op commits.
    let mut net = Net::with_config(3, lease_config());
    let first = net.elect();
    net.run_for_ms(20);
    let target = (first + 1) % 3;
    net.nodes[first]
        .transfer_leadership(net.now_us, Some(NodeId(target as u64)))
        .unwrap();
    net.flush(first);
    while net.node(target).role() != Role::Leader {
        net.run_until(net.now_us + 50);
    }
    let t = net.node(target);
    assert_ne!(
        t.term_at(t.commit_index()),
        Some(t.term()),
        "no-op committed already"
    );
    assert!(!t.lease_valid(), "lease before the no-op committed");
    net.read(target, 3);
    assert!(net.answers.is_empty(), "served before the no-op committed");
    net.run_for_ms(5);
    assert_eq!(net.answers.len(), 1, "served once the no-op committed");
}

#[test]
fn no_lease_read_once_timeout_now_is_sent_or_the_leader_steps_down() {
    // DESIGN.md 3.8: voters grant a transfer's votes inside their promise,
    // so the lease ends when TimeoutNow leaves, for the rest of the term.
    let mut net = Net::with_config(3, lease_config());
    let l = net.elect();
    net.run_for_ms(20);
    assert!(net.node(l).lease_valid());
    let target = (l + 1) % 3;
    net.cut.insert((l, target)); // TimeoutNow is sent but never arrives
    net.nodes[l]
        .transfer_leadership(net.now_us, Some(NodeId(target as u64)))
        .unwrap();
    net.flush(l);
    assert!(
        net.sent
            .iter()
            .any(|m| matches!(m.body, MessageBody::TimeoutNow)),
        "TimeoutNow left"
    );
    assert_eq!(net.node(l).role(), Role::Leader);
    assert!(!net.node(l).lease_valid(), "lease after TimeoutNow");
    net.run_for_ms(200); // the transfer times out; the term goes on
    assert_eq!(net.node(l).role(), Role::Leader);
    assert!(!net.node(l).lease_valid(), "lease again in the same term");
    // A leader that steps down (here for a reply of a higher term) holds
    // no lease either.
    let term = net.node(l).term();
    let other = (l + 2) % 3;
    let reply = MessageBody::HeartbeatReply {
        sent_at_us: net.now_us,
        read_round: 0,
        log_lost: None,
    };
    net.nodes[l].step(net.now_us, msg(other as u64, l as u64, term.0 + 1, reply));
    net.flush(l);
    assert_ne!(net.node(l).role(), Role::Leader);
    assert!(!net.node(l).lease_valid());
}

#[test]
fn a_voter_refuses_votes_during_its_promise_even_with_a_crash_hint() {
    // DESIGN.md 3.8: "a crash hint must never shorten a voter's promise to
    // the lease holder". In ReadIndex mode the hint drops stickiness
    // (DESIGN.md 3.5); in lease mode the promise stays.
    for (config, refused) in [(lease_config(), true), (RaftConfig::default(), false)] {
        let mut net = Net::with_config(3, config);
        let l = net.elect();
        net.run_for_ms(20);
        let (voter, candidate) = ((l + 1) % 3, (l + 2) % 3);
        net.isolate(l);
        // The candidate is only the messages below: the voter cannot win.
        net.stop(candidate);
        net.nodes[voter].peer_unreachable(net.now_us, NodeId(l as u64));
        net.flush(voter);
        let term = net.node(voter).term();
        let last = (net.node(voter).last_index(), term);
        let out = net.exchange(voter, vote_request(candidate, voter, term.next(), last));
        assert_eq!(granted(&out), !refused, "{out:?}");
        if refused {
            assert_eq!(
                net.node(voter).term(),
                term,
                "term bumped inside the promise"
            );
            // Once the promise is over, the same request is granted.
            net.run_for_ms(31);
            let term = net.node(voter).term();
            let last = (
                net.node(voter).last_index(),
                net.node(voter)
                    .term_at(net.node(voter).last_index())
                    .unwrap(),
            );
            let out = net.exchange(voter, vote_request(candidate, voter, term.next(), last));
            assert!(granted(&out), "refused after the promise: {out:?}");
        }
    }
}

#[test]
fn a_crash_hinted_primary_campaigns_only_when_its_promise_ends() {
    // DESIGN.md 3.8: our own vote is a vote; the crash fast path waits for
    // the promise, and then wins as before (term + 1, the primary).
    let (mut net, l) = ranked_net_with(lease_config(), 5, 100);
    let primary = subleader(&net, l, 0);
    let term = net.node(l).term();
    net.stop(l);
    let at = net.now_us;
    for i in (0..5).filter(|i| *i != l) {
        net.nodes[i].peer_unreachable(at, NodeId(l as u64));
        net.flush(i);
    }
    net.run_for_ms(3);
    assert_eq!(
        net.node(primary).role(),
        Role::Follower,
        "campaigned inside its promise"
    );
    assert_eq!(net.node(primary).term(), term);
    net.run_for_ms(40);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), term.next());
}

#[test]
fn a_restarted_voter_keeps_a_promise_from_boot() {
    // DESIGN.md 3.8: a restart forgets when it last heard the leader, so
    // it promises a whole window from boot.
    let restored = RestoredState::fresh(ClusterConfig::new(ids(3)));
    let boot_us = 5_000_000;
    let mut voter = Raft::new(NodeId(1), lease_config(), restored, 7, boot_us);
    let vote = |at_us: u64, voter: &mut Raft| {
        voter.step(
            at_us,
            vote_request(2, 1, Term(voter.term().0 + 1), (LogIndex(0), Term(0))),
        );
        granted(&replies(&voter.ready()))
    };
    assert!(
        !vote(boot_us + 29_999, &mut voter),
        "voted inside the boot promise"
    );
    assert!(
        vote(boot_us + 30_000, &mut voter),
        "refused after the boot promise"
    );
}

#[test]
fn without_the_promise_a_spurious_hint_lets_a_cut_off_leader_read_stale() {
    // Why DESIGN.md 3.8 binds the voters, not the timers: a live leader is
    // cut off and its followers are told it is gone. With voters that drop
    // their stickiness on the hint (the test-only mutation) its successor
    // commits within a millisecond while its lease runs on; with the
    // promise, the successor waits until the lease is over.
    for mutated in [true, false] {
        let mut config = lease_config();
        config.mutations.lease_without_voter_promise = mutated;
        let (mut net, l) = ranked_net_with(config, 3, 100);
        let term = net.node(l).term();
        net.isolate(l);
        let at = net.now_us;
        for i in (0..3).filter(|i| *i != l) {
            net.nodes[i].peer_unreachable(at, NodeId(l as u64));
            net.flush(i);
        }
        let (mut stale, mut successor) = (false, false);
        for _ in 0..1200 {
            net.run_until(net.now_us + 50);
            successor |= (0..3).any(|i| {
                let r = net.node(i);
                r.role() == Role::Leader
                    && r.term() > term
                    && r.term_at(r.commit_index()) == Some(r.term())
            });
            stale |= successor && net.node(l).lease_valid();
        }
        assert!(successor, "mutated={mutated}: nobody took over");
        assert_eq!(stale, mutated, "mutated={mutated}");
    }
}
