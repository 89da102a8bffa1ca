//! Elections (paper 5.2, thesis 9.6, 4.2.3).

use super::*;

#[test]
fn a_candidate_with_a_majority_of_votes_becomes_the_only_leader() {
    // "A candidate wins an election if it receives votes from a majority of
    // the servers in the full cluster for the same term." (5.2)
    for n in [3, 5, 7] {
        let mut net = Net::new(n);
        let l = net.elect();
        let term = net.node(l).term();
        let leaders = (0..n)
            .filter(|&i| net.node(i).role() == Role::Leader && net.node(i).term() == term)
            .count();
        assert_eq!(leaders, 1, "{n} nodes");
    }
}

#[test]
fn a_new_leader_appends_a_noop_and_commits_it() {
    // "Raft handles this by having each leader commit a blank no-op entry
    // into the log at the start of its term." (8)
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let last = net.node(l).last_index();
    assert_eq!(net.node(l).entry(last).unwrap().payload, EntryPayload::Noop);
    assert_eq!(net.node(l).commit_index(), last);
}

#[test]
fn a_voter_grants_at_most_one_vote_per_term() {
    // "Each server will vote for at most one candidate in a given term, on a
    // first-come-first-served basis." (5.2)
    let mut net = Net::new(3);
    let first = net.exchange(0, vote_request(1, 0, 1));
    let second = net.exchange(0, vote_request(2, 0, 1));
    assert!(matches!(
        first[0].body,
        MessageBody::VoteReply { granted: true }
    ));
    assert!(matches!(
        second[0].body,
        MessageBody::VoteReply { granted: false }
    ));
    assert_eq!(net.node(0).vote(), Some(NodeId(1)));
}

#[test]
fn a_vote_grant_leaves_only_after_the_vote_is_persisted() {
    // Thesis 3.8: a server must persist its vote before replying, or a
    // restart could vote twice in one term.
    let mut node = restored_node(0, HardState::default(), vec![]);
    node.step(
        0,
        msg(
            1,
            0,
            1,
            MessageBody::Vote {
                last_index: LogIndex(0),
                last_term: Term(0),
                transfer: false,
            },
        ),
    );
    let rd = node.ready();
    assert_eq!(rd.hard_state.unwrap().vote, Some(NodeId(1)));
    assert!(rd.messages.is_empty(), "{:?}", rd.messages);
    assert!(matches!(
        rd.messages_after_persist[0].body,
        MessageBody::VoteReply { granted: true }
    ));
}

#[test]
fn a_voter_denies_a_candidate_whose_log_is_less_up_to_date() {
    // "The voter denies its vote if its own log is more up-to-date than that
    // of the candidate." (5.4.1)
    let hs = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(0),
    };
    let mut node = restored_node(0, hs, vec![entry(1, 1), entry(2, 2)]);
    for (last_index, last_term) in [(5, 1), (1, 2)] {
        node.step(
            0,
            msg(
                1,
                0,
                3,
                MessageBody::Vote {
                    last_index: LogIndex(last_index),
                    last_term: Term(last_term),
                    transfer: false,
                },
            ),
        );
        let rd = node.ready();
        let out = replies(&rd);
        persist(&mut node, &rd);
        assert!(
            matches!(out[0].body, MessageBody::VoteReply { granted: false }),
            "candidate log ({last_index},{last_term}) got {:?}",
            out[0]
        );
    }
    assert_eq!(node.vote(), None);
}

#[test]
fn a_restarted_node_keeps_its_term_and_vote() {
    // "Updated on stable storage before responding to RPCs" (Figure 2).
    let hs = HardState {
        term: Term(4),
        vote: Some(NodeId(1)),
        commit: LogIndex(0),
    };
    let mut node = restored_node(0, hs, vec![]);
    assert_eq!((node.term(), node.vote()), (Term(4), Some(NodeId(1))));
    node.step(
        0,
        msg(
            2,
            0,
            4,
            MessageBody::Vote {
                last_index: LogIndex(0),
                last_term: Term(0),
                transfer: false,
            },
        ),
    );
    let rd = node.ready();
    assert!(matches!(
        replies(&rd)[0].body,
        MessageBody::VoteReply { granted: false }
    ));
}

#[test]
fn a_leader_that_sees_a_higher_term_steps_down() {
    // "If a candidate or leader discovers that its term is out of date, it
    // immediately reverts to follower state." (5.1)
    let mut net = Net::new(3);
    let l = net.elect();
    let term = net.node(l).term().0;
    let other = (l + 1) % 3;
    net.exchange(
        l,
        msg(
            other as u64,
            l as u64,
            term + 5,
            MessageBody::AppendReply {
                success: false,
                index: LogIndex(0),
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: 0,
            },
        ),
    );
    assert_eq!(net.node(l).role(), Role::Follower);
    assert_eq!(net.node(l).term(), Term(term + 5));
}

#[test]
fn a_request_with_a_stale_term_is_rejected() {
    // "If a server receives a request with a stale term number, it rejects
    // the request." (5.1)
    let hs = HardState {
        term: Term(5),
        vote: None,
        commit: LogIndex(0),
    };
    let mut node = restored_node(0, hs, vec![]);
    node.step(
        0,
        msg(
            1,
            0,
            3,
            MessageBody::Append {
                prev_index: LogIndex(0),
                prev_term: Term(0),
                entries: vec![entry(1, 3)],
                commit: LogIndex(1),
                sent_at_us: 0,
            },
        ),
    );
    let rd = node.ready();
    assert!(
        rd.entries.is_empty(),
        "a stale leader's entries were accepted"
    );
    let out = replies(&rd);
    assert!(out.iter().all(|m| m.term == Term(5)), "{out:?}");
    assert_eq!(node.last_index(), LogIndex(0));
}

#[test]
fn messages_for_others_or_from_ourselves_are_dropped() {
    let mut node = restored_node(0, HardState::default(), vec![]);
    let vote = MessageBody::Vote {
        last_index: LogIndex(0),
        last_term: Term(0),
        transfer: false,
    };
    node.step(0, msg(1, 2, 1, vote.clone()));
    node.step(0, msg(0, 0, 1, vote));
    assert!(!node.has_ready());
    assert_eq!(node.term(), Term(0));
}

#[test]
fn a_vote_request_from_outside_our_configuration_is_answered() {
    // Thesis 4.1: "servers process incoming RPC requests without consulting
    // their current configurations". (Until issue 11 a vote request from a
    // node outside the configuration was dropped; with membership changes
    // that can leave a cluster unable to elect: a voter whose log lacks
    // the candidate's addition may be the vote it needs, simulator
    // membership seed 327.)
    let mut node = restored_node(0, HardState::default(), vec![]);
    let vote = MessageBody::Vote {
        last_index: LogIndex(0),
        last_term: Term(0),
        transfer: false,
    };
    node.step(0, msg(99, 0, 1, vote));
    let rd = node.ready();
    assert_eq!(node.term(), Term(1));
    assert!(
        rd.messages_after_persist
            .iter()
            .any(|m| m.to == NodeId(99) && matches!(m.body, MessageBody::VoteReply { .. })),
        "{rd:?}"
    );
}

#[test]
fn prevote_keeps_a_partitioned_node_from_inflating_terms() {
    // Thesis 9.6: "a server that has been partitioned ... will not be able to
    // increment its term, since it cannot receive permission from a majority".
    let mut net = Net::new(3);
    let l = net.elect();
    let term = net.node(l).term();
    let lone = (l + 1) % 3;
    net.isolate(lone);
    net.run_for_ms(5_000);
    assert_eq!(net.node(lone).term(), term);
    net.cut.clear();
    net.run_for_ms(500);
    assert_eq!(
        net.leader(),
        Some(l),
        "the rejoining node deposed the leader"
    );
    assert_eq!(net.node(l).term(), term);
}

#[test]
fn a_voter_that_hears_from_its_leader_refuses_to_depose_it() {
    // Thesis 4.2.3: "if a server receives a RequestVote request within the
    // minimum election timeout of hearing from a current leader, it does not
    // update its term or grant its vote."
    let mut net = Net::new(3);
    let l = net.elect();
    let term = net.node(l).term().0;
    let voter = (l + 1) % 3;
    let candidate = (l + 2) % 3;
    let last = net.node(voter).last_index();
    let out = net.exchange(
        voter,
        msg(
            candidate as u64,
            voter as u64,
            term + 1,
            MessageBody::Vote {
                last_index: last,
                last_term: Term(term),
                transfer: false,
            },
        ),
    );
    assert_eq!(net.node(voter).term(), Term(term), "term was bumped");
    assert!(
        out.iter()
            .all(|m| !matches!(m.body, MessageBody::VoteReply { granted: true })),
        "{out:?}"
    );
}

#[test]
fn a_leader_without_a_quorum_steps_down() {
    // Thesis 6.2: "a leader ... steps down if an election timeout elapses
    // without a successful round of heartbeats to a majority of its cluster."
    let mut net = Net::new(3);
    let l = net.elect();
    net.isolate(l);
    net.run_for_ms(1_500);
    assert_ne!(net.node(l).role(), Role::Leader);
}

#[test]
fn a_late_refusal_does_not_take_back_a_vote_granted_in_the_same_term() {
    // A voter refuses while its promise to a leader lasts, then grants once
    // it ends; the refusal left with nothing new to write, the grant with
    // its vote's write, so the refusal can arrive second. It must not undo
    // the grant: a vote is never taken back within a term.
    let restored = RestoredState::fresh(ClusterConfig::new(ids(5)));
    let mut node = Raft::new(NodeId(0), RaftConfig::default(), restored, 1, 0);
    let now = tick_to_candidate(&mut node, &[1, 2]);
    let term = node.term().0;
    let vote = |from, granted| msg(from, 0, term, MessageBody::VoteReply { granted });
    node.step(now, vote(1, true));
    node.step(now, vote(1, false));
    assert_eq!(node.role(), Role::Candidate);
    node.step(now, vote(2, true));
    assert_eq!(
        node.role(),
        Role::Leader,
        "votes of 0, 1 and 2 are a majority of 5"
    );
}
