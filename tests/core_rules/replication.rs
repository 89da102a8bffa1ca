//! Replication (paper 5.3, 5.4).

use super::*;

#[test]
fn an_append_past_the_end_of_the_log_is_rejected_with_a_hint() {
    // "If a follower's log is inconsistent with the leader's, the
    // AppendEntries consistency check will fail." (5.3)
    let mut node = restored_node(0, HardState::default(), vec![entry(1, 1)]);
    node.step(
        0,
        msg(
            1,
            0,
            1,
            MessageBody::Append {
                prev_index: LogIndex(9),
                prev_term: Term(1),
                entries: vec![entry(10, 1)],
                commit: LogIndex(9),
                sent_at_us: 0,
            },
        ),
    );
    let rd = node.ready();
    let out = replies(&rd);
    match out[0].body {
        MessageBody::AppendReply {
            success,
            hint_index,
            ..
        } => {
            assert!(!success);
            assert_eq!(hint_index, LogIndex(1));
        }
        ref other => panic!("expected AppendReply, got {other:?}"),
    }
    assert_eq!(node.commit_index(), LogIndex(0));
}

#[test]
fn a_diverged_follower_is_repaired_in_a_few_round_trips() {
    // "When rejecting an AppendEntries request, the follower can include the
    // term of the conflicting entry and the first index it stores for that
    // term." (5.3)
    let mut net = Net::new(3);
    let l = net.elect();
    let lagging = (l + 1) % 3;
    net.isolate(lagging);
    for i in 0..200u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    net.cut.clear();
    let before = net.sent.len();
    net.run_for_ms(100);
    assert_eq!(net.node(lagging).last_index(), net.node(l).last_index());
    assert_eq!(net.node(lagging).commit_index(), net.node(l).commit_index());
    let rejections = net.sent[before..]
        .iter()
        .filter(|m| matches!(m.body, MessageBody::AppendReply { success: false, .. }))
        .count();
    assert!(rejections <= 2, "{rejections} rejections to catch up");
}

#[test]
fn a_follower_overwrites_conflicting_uncommitted_entries() {
    // "If an existing entry conflicts with a new one (same index but
    // different terms), delete the existing entry and all that follow it."
    // (Figure 2)
    let hs = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(1),
    };
    let mut node = restored_node(0, hs, vec![entry(1, 1), entry(2, 2), entry(3, 2)]);
    node.step(
        0,
        msg(
            1,
            0,
            3,
            MessageBody::Append {
                prev_index: LogIndex(1),
                prev_term: Term(1),
                entries: vec![entry(2, 3)],
                commit: LogIndex(2),
                sent_at_us: 0,
            },
        ),
    );
    let rd = node.ready();
    assert_eq!(rd.entries, vec![entry(2, 3)]);
    persist(&mut node, &rd);
    assert_eq!(node.last_index(), LogIndex(2));
    assert_eq!(node.term_at(LogIndex(2)), Some(Term(3)));
}

#[test]
fn a_leader_commits_an_entry_once_a_majority_stores_it() {
    // "A log entry is committed once the leader that created the entry has
    // replicated it on a majority of the servers." (5.3)
    let mut net = Net::new(5);
    let l = net.elect();
    net.run_for_ms(5);
    let down: Vec<usize> = (0..5).filter(|&i| i != l).take(2).collect();
    for &d in &down {
        net.isolate(d);
    }
    let (index, _) = net.propose(l, b"x");
    net.run_for_ms(5);
    assert!(net.node(l).commit_index() >= index, "3 of 5 is a majority");
    let third = (0..5).find(|i| *i != l && !down.contains(i)).unwrap();
    net.isolate(third);
    let (index2, _) = net.propose(l, b"y");
    net.run_for_ms(5);
    assert!(
        net.node(l).commit_index() < index2,
        "2 of 5 is not a majority"
    );
}

#[test]
fn a_leader_never_commits_an_old_term_entry_by_counting_replicas() {
    // "Raft never commits log entries from previous terms by counting
    // replicas. Only log entries from the leader's current term are
    // committed by counting replicas." (5.4.2, Figure 8)
    let hs = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(0),
    };
    let mut restored = RestoredState::fresh(ClusterConfig::new(ids(3)));
    restored.hard_state = hs;
    restored.entries = vec![entry(1, 1), entry(2, 2)];
    let mut leader = Raft::new(NodeId(0), RaftConfig::default(), restored, 1, 0);
    // Win term 3 with node 1's vote.
    let now = tick_to_candidate(&mut leader, &[1]);
    leader.step(now, msg(1, 0, 3, MessageBody::VoteReply { granted: true }));
    assert_eq!(leader.role(), Role::Leader);
    let rd = leader.ready();
    persist(&mut leader, &rd);
    // Node 1 acknowledges index 2 (an old-term entry) but not the no-op.
    leader.step(
        now,
        msg(
            1,
            0,
            3,
            MessageBody::AppendReply {
                success: true,
                index: LogIndex(2),
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: now,
            },
        ),
    );
    assert_eq!(
        leader.commit_index(),
        LogIndex(0),
        "old-term entry committed by count"
    );
    leader.step(
        now,
        msg(
            1,
            0,
            3,
            MessageBody::AppendReply {
                success: true,
                index: LogIndex(3),
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: now,
            },
        ),
    );
    assert_eq!(
        leader.commit_index(),
        LogIndex(3),
        "the no-op commits all before it"
    );
}

#[test]
fn pipelined_appends_stay_within_the_inflight_bound() {
    let config = RaftConfig {
        inflight_appends_max: 4,
        append_entries_max: 1,
        ..RaftConfig::default()
    };
    let mut net = Net::with_config(3, config);
    let l = net.elect();
    net.run_for_ms(5);
    let follower = (l + 1) % 3;
    // Replies never arrive: the leader may have at most 4 appends in flight.
    net.cut.insert((follower, l));
    let before = net.sent.len();
    for i in 0..50u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(20);
    let appends = net.sent[before..]
        .iter()
        .filter(|m| m.to == NodeId(follower as u64))
        .filter(|m| matches!(&m.body, MessageBody::Append { entries, .. } if !entries.is_empty()))
        .count();
    assert!(appends <= 4, "{appends} appends in flight");
    assert!(appends >= 1);
}

/// etcd's MaxInflightBytes: a follower whose acknowledgements stop gets at
/// most `inflight_bytes_max` of entries (plus the one Append that crosses
/// it), however many messages the count bound would allow; once it
/// acknowledges, the rest follows.
#[test]
fn bytes_in_flight_to_a_follower_are_bounded() {
    // Every entry limit carries 64 KiB of overhead room: 40 entries of 10 kB
    // are about five times the smallest bound the table admits.
    const ENTRY: usize = 10_000;
    let mut limits = Limits::derive(ENTRY);
    limits.append_bytes_max = limits.entry_bytes_max;
    limits.inflight_bytes_max = limits.append_bytes_max;
    let config = RaftConfig {
        inflight_appends_max: 256,
        limits: limits.clone(),
        ..RaftConfig::default()
    };
    let mut net = Net::with_config(3, config);
    let l = net.elect();
    net.run_for_ms(5);
    let follower = (l + 1) % 3;
    net.cut.insert((follower, l));
    let before = net.sent.len();
    for i in 0..40u8 {
        net.propose(l, &[i; ENTRY - 100]);
        net.run_for_ms(1);
    }
    let to_follower = |net: &Net, from: usize| -> usize {
        net.sent[from..]
            .iter()
            .filter(|m| m.to == NodeId(follower as u64))
            .map(|m| match &m.body {
                MessageBody::Append { entries, .. } => entries.iter().map(Entry::size_bytes).sum(),
                _ => 0,
            })
            .sum()
    };
    let in_flight = to_follower(&net, before);
    assert!(in_flight > 0);
    assert!(
        in_flight < limits.inflight_bytes_max + limits.append_bytes_max,
        "{in_flight} bytes sent without an acknowledgement, bound {}",
        limits.inflight_bytes_max
    );
    net.cut.clear();
    net.run_for_ms(200);
    assert_eq!(
        net.node(follower).last_index(),
        net.node(l).last_index(),
        "the follower caught up once it acknowledged"
    );
}

#[test]
fn a_follower_refuses_proposals_and_names_the_leader() {
    let mut net = Net::new(3);
    let l = net.elect();
    let f = (l + 1) % 3;
    assert_eq!(net.nodes[f].propose(net.now_us, b"x".to_vec(), 9), None);
    let (_, err) = net.nodes[f].take_answers().pop().expect("answered at once");
    assert_eq!(
        err,
        Err(RequestError::NotLeader {
            leader: Some(NodeId(l as u64))
        })
    );
}

/// A follower (node 1 of 3) in term 1 holding entries 1 and 2 of term 1.
fn follower_with_two_entries() -> Raft {
    let hard_state = HardState {
        term: Term(1),
        vote: None,
        commit: LogIndex(2),
    };
    restored_node(1, hard_state, vec![entry(1, 1), entry(2, 1)])
}

/// An Append of `entries` after index 2 of term 1, in `term` from `from`.
fn append_after_two(from: u64, term: u64, entries: Vec<Entry>) -> Message {
    let body = MessageBody::Append {
        prev_index: LogIndex(2),
        prev_term: Term(1),
        entries,
        commit: LogIndex(2),
        sent_at_us: 0,
    };
    msg(from, 1, term, body)
}

/// The successful acknowledgements in `rd`: (to, term, index).
fn acknowledgements(rd: &sraft::core::Ready) -> Vec<(NodeId, Term, LogIndex)> {
    rd.messages_after_persist
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::AppendReply {
                success: true,
                index,
                ..
            } => Some((m.to, m.term, index)),
            _ => None,
        })
        .collect()
}

/// The Raft thread steps a whole batch before one Ready (DESIGN.md 2.3).
/// An acknowledgement of an older leader's entries, followed in the same
/// batch by a newer leader's Append that replaces them, must not leave: it
/// would leave after a write that holds the newer entries, not the ones it
/// promises are durable.
#[test]
fn an_acknowledgement_overtaken_by_a_newer_term_in_one_batch_never_leaves() {
    let mut f = follower_with_two_entries();
    f.step(1, append_after_two(0, 2, vec![entry(3, 2), entry(4, 2)]));
    f.step(2, append_after_two(2, 3, vec![entry(3, 3)]));
    let rd = f.ready();
    assert_eq!(
        rd.entries,
        vec![entry(3, 3)],
        "the write holds term 3's entry"
    );
    assert_eq!(
        acknowledgements(&rd),
        vec![(NodeId(2), Term(3), LogIndex(3))],
        "only the newer leader's entry is acknowledged"
    );
}

/// The same for a vote: granted in term 2, then term 3 began in the same
/// batch. Only term 3's hard state is written, so the grant of term 2
/// must not leave after it.
#[test]
fn a_vote_overtaken_by_a_newer_term_in_one_batch_never_leaves() {
    let mut f = restored_node(1, HardState::default(), vec![]);
    f.step(1, vote_request(2, 1, 2));
    f.step(2, vote_request(0, 1, 3));
    let rd = f.ready();
    assert_eq!(
        rd.hard_state.map(|hs| (hs.term, hs.vote)),
        Some((Term(3), Some(NodeId(0))))
    );
    let grants: Vec<(Term, NodeId)> = rd
        .messages_after_persist
        .iter()
        .filter(|m| matches!(m.body, MessageBody::VoteReply { granted: true }))
        .map(|m| (m.term, m.to))
        .collect();
    assert_eq!(grants, vec![(Term(3), NodeId(0))]);
}

/// Node 1 takes entry 3 of term 1 from leader 0, then (in the same batch)
/// its TimeoutNow: a candidate of term 2 whose acknowledgement of entry 3
/// still waits for its write.
fn candidate_that_acknowledged_entry_3() -> Raft {
    let mut f = follower_with_two_entries();
    f.step(1, append_after_two(0, 1, vec![entry(3, 1)]));
    f.step(2, msg(0, 1, 1, MessageBody::TimeoutNow));
    assert_eq!((f.role(), f.term()), (Role::Candidate, Term(2)));
    f
}

/// A candidate changes no entry: the acknowledgement of its last term's
/// Append, in the same batch as the leader's TimeoutNow, still leaves
/// (and lets the old leader commit its last writes before the transfer).
#[test]
fn a_candidate_keeps_the_acknowledgements_of_the_term_it_left() {
    let mut f = candidate_that_acknowledged_entry_3();
    let rd = f.ready();
    let promises: Vec<(Term, &str)> = rd
        .messages_after_persist
        .iter()
        .filter(|m| m.to == NodeId(0))
        .map(|m| (m.term, m.body.kind()))
        .collect();
    assert_eq!(
        promises,
        vec![(Term(1), "AppendReply"), (Term(2), "Vote")],
        "the acknowledgement of index 3 stays beside the vote request"
    );
}

/// ... but not once this term's leader may overwrite them: the candidate
/// of term 2 takes, in the same batch, term 2's Append from another node,
/// which replaces entry 3; the acknowledgement of term 1's entry 3 must
/// not leave after that write.
#[test]
fn a_candidate_drops_its_last_terms_acknowledgements_once_it_follows() {
    let mut f = candidate_that_acknowledged_entry_3();
    f.step(3, append_after_two(2, 2, vec![entry(3, 2)]));
    let rd = f.ready();
    assert_eq!(rd.entries, vec![entry(3, 2)]);
    assert_eq!(
        acknowledgements(&rd),
        vec![(NodeId(2), Term(2), LogIndex(3))]
    );
}
