//! Membership (DESIGN.md 8; Raft thesis 4).

use super::*;

impl Net {
    /// Proposes `change` through node `i`'s driver; the refusal if refused.
    fn change(
        &mut self,
        i: usize,
        change: ConfChange,
    ) -> Result<(LogIndex, Term), ConfChangeError> {
        let ticket = self.conf_answers.len() as u64 + 1000;
        if let Some(at) = self.nodes[i].propose_conf_change(self.now_us, change, ticket) {
            self.flush(i);
            return Ok(at);
        }
        let (_, refusal) = self.nodes[i]
            .take_conf_answers()
            .pop()
            .expect("refused at once");
        match refusal {
            Err(ConfChangeFailure::Refused(e)) => Err(e),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    /// Proposes `change` and runs until it is committed on the leader.
    fn change_committed(&mut self, i: usize, change: ConfChange) -> LogIndex {
        let (index, _) = self.change(i, change.clone()).expect("change accepted");
        for _ in 0..200 {
            self.run_for_ms(5);
            if self.node(i).commit_index() >= index {
                return index;
            }
        }
        panic!("{change:?} at {index} not committed");
    }

    fn learner(id: u64) -> ConfChange {
        ConfChange::AddLearner {
            id: NodeId(id),
            addrs: MemberAddrs {
                peer_addr: format!("10.0.0.{id}:5000"),
                client_addr: format!("10.0.0.{id}:6000"),
            },
        }
    }

    fn campaigned(&self, i: usize) -> bool {
        self.sent.iter().any(|m| {
            m.from == NodeId(i as u64)
                && matches!(
                    m.body,
                    MessageBody::PreVote { .. } | MessageBody::Vote { .. }
                )
        })
    }
}

#[test]
fn a_learner_receives_the_log_but_never_campaigns_or_counts() {
    // Thesis 4.2.1: new servers join as non-voting members until caught up.
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let leader = net.elect();
    net.change_committed(leader, Net::learner(3));
    let (index, _) = net.propose(leader, b"x");
    net.run_for_ms(200);
    assert!(net.node(3).is_learner());
    assert_eq!(net.node(3).term_at(index), net.node(leader).term_at(index));
    assert_eq!(
        net.node(3).cluster().addrs_of(NodeId(3)).client_addr,
        "10.0.0.3:6000"
    );
    // With the leader and one voter gone, the learner is no majority: nothing
    // commits, and it never asks for a vote however long the silence.
    let other = (0..3).find(|i| *i != leader).unwrap();
    net.stop(leader);
    net.stop(other);
    net.run_for_ms(5_000);
    assert!(!net.campaigned(3), "a learner started an election");
    assert_eq!(net.node(3).role(), Role::Follower);
    let members = net.node(3).members();
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3);
    assert!(members.iter().any(|m| m.id == NodeId(3) && !m.voter));
}

#[test]
fn a_promoted_learner_votes_and_counts_toward_commit() {
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let leader = net.elect();
    net.change_committed(leader, Net::learner(3));
    net.run_for_ms(100);
    assert!(net.node(leader).is_caught_up(NodeId(3)));
    let index = net.change_committed(leader, ConfChange::Promote { id: NodeId(3) });
    let answer = net.conf_answers.iter().find_map(|(_, _, r)| match r {
        Ok(done) if done.index == index => Some(done.config.clone()),
        _ => None,
    });
    assert_eq!(answer.expect("answered when applied").voters, ids(4));
    // Four voters: a quorum is three, so the leader and the new voter and
    // one more commit; with two stopped nothing would.
    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    net.stop(others[0]);
    let (index, _) = net.propose(leader, b"y");
    net.run_for_ms(100);
    assert!(net.node(leader).commit_index() >= index);
    net.stop(others[1]);
    let (index, _) = net.propose(leader, b"z");
    net.run_for_ms(100);
    assert!(
        net.node(leader).commit_index() < index,
        "two of four voters committed"
    );
}

#[test]
fn a_change_waits_for_the_leaders_first_commit_and_for_the_previous_change() {
    // Thesis 4 errata: "a leader may not append a new configuration entry
    // until it has committed an entry from its current term".
    let mut net = Net::with_voters(5, 3, RaftConfig::default());
    let leader = loop {
        net.run_until(net.now_us + 50);
        if let Some(l) = net.leader() {
            break l;
        }
    };
    assert_eq!(
        net.change(leader, Net::learner(3)),
        Err(ConfChangeError::LeaderNotReady)
    );
    net.run_for_ms(50);
    let (index, _) = net.change(leader, Net::learner(3)).expect("accepted");
    assert_eq!(
        net.change(leader, Net::learner(4)),
        Err(ConfChangeError::ChangeInFlight { index })
    );
    net.run_for_ms(50);
    net.change(leader, Net::learner(4))
        .expect("the first committed");
}

#[test]
fn bad_changes_are_refused_with_a_reason_and_change_nothing() {
    let mut net = Net::with_voters(3, 1, RaftConfig::default());
    let leader = net.elect();
    let before = net.node(leader).cluster().clone();
    let refusals = [
        (
            ConfChange::Remove { id: NodeId(0) },
            ConfChangeError::LastVoter(NodeId(0)),
        ),
        (Net::learner(0), ConfChangeError::AlreadyMember(NodeId(0))),
        (
            ConfChange::Remove { id: NodeId(7) },
            ConfChangeError::NotMember(NodeId(7)),
        ),
        (
            ConfChange::Promote { id: NodeId(7) },
            ConfChangeError::NotMember(NodeId(7)),
        ),
        (
            ConfChange::Promote { id: NodeId(0) },
            ConfChangeError::NotLearner(NodeId(0)),
        ),
    ];
    for (change, expected) in refusals {
        let refused = net.change(leader, change).expect_err("refused");
        assert_eq!(refused, expected);
        let line = refused.to_string();
        assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
    }
    assert_eq!(net.node(leader).cluster(), &before);
    assert!(matches!(
        net.change(1, Net::learner(1)),
        Err(ConfChangeError::NotLeader { .. })
    ));
}

#[test]
fn a_removed_leader_leads_until_the_change_commits_then_hands_over() {
    // Thesis 4.2.2: the removed leader manages the cluster until the
    // configuration commits, then steps down.
    let mut net = Net::new(3);
    let leader = net.elect();
    let index = net.change_committed(
        leader,
        ConfChange::Remove {
            id: NodeId(leader as u64),
        },
    );
    net.run_for_ms(500);
    let new_leader = net.leader().expect("a new leader");
    assert_ne!(new_leader, leader);
    assert_eq!(net.node(new_leader).cluster().voters.len(), 2);
    assert!(net.node(new_leader).commit_index() >= index);
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == leader && *e == Event::RemovedSelf { index })
    );
    assert!(net.events.iter().any(|(i, e)| *i == new_leader
        && matches!(
            e,
            Event::BecameLeader {
                kind: ElectionKind::Transfer,
                ..
            }
        )));
    // The removed node never campaigns again, and the rest go on.
    let sent_before = net.sent.len();
    net.run_for_ms(3_000);
    assert!(
        net.sent[sent_before..]
            .iter()
            .all(|m| m.from != NodeId(leader as u64)
                || !matches!(
                    m.body,
                    MessageBody::PreVote { .. } | MessageBody::Vote { .. }
                ))
    );
    let (index, _) = net.propose(new_leader, b"after");
    net.run_for_ms(100);
    assert!(net.node(new_leader).commit_index() >= index);
}

#[test]
fn a_removed_follower_learns_that_its_removal_committed() {
    let mut net = Net::new(3);
    let leader = net.elect();
    let gone = (leader + 1) % 3;
    let index = net.change_committed(
        leader,
        ConfChange::Remove {
            id: NodeId(gone as u64),
        },
    );
    net.run_for_ms(300);
    assert!(
        net.events
            .iter()
            .any(|(i, e)| *i == gone && *e == Event::RemovedSelf { index })
    );
    assert!(!net.node(gone).cluster().is_member(NodeId(gone as u64)));
    assert_eq!(
        net.node(leader).match_index(NodeId(gone as u64)),
        None,
        "still replicated to"
    );
}

#[test]
fn a_configuration_takes_effect_when_appended_and_is_rolled_back_when_truncated() {
    // Thesis 4.1: "a server always uses the latest configuration in its
    // log, regardless of whether the entry is committed".
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let old = net.elect();
    net.isolate(old);
    net.change(old, Net::learner(3))
        .expect("accepted while cut off");
    assert!(net.node(old).cluster().is_learner(NodeId(3)));
    let original = ClusterConfig::new(ids(3));
    net.run_for_ms(3_000);
    let new = net
        .leader()
        .filter(|l| *l != old)
        .expect("the majority elects");
    net.propose(new, b"other");
    net.cut.clear();
    net.run_for_ms(1_000);
    assert_eq!(
        net.node(old).cluster(),
        &original,
        "the truncated change is rolled back"
    );
    assert!(net.events.iter().any(|(i, e)| *i == old
        && matches!(e, Event::ConfigChanged { config, .. } if *config == original)));
}

#[test]
fn a_learner_restarted_before_its_own_addition_does_not_take_itself_for_removed() {
    // DESIGN.md 8: only a node some configuration named reports its removal
    // (simulator membership seed 56: a learner got entries before the one
    // that added it, restarted, and stopped itself).
    let hard_state = HardState {
        term: Term(1),
        vote: None,
        commit: LogIndex(1),
    };
    let config = Entry {
        term: Term(1),
        index: LogIndex(1),
        payload: EntryPayload::Config(ClusterConfig::new(ids(3))),
    };
    let mut joiner = restored_node(4, hard_state, vec![config.clone()]);
    let rd = joiner.ready();
    assert!(
        !rd.events
            .iter()
            .any(|e| matches!(e, Event::RemovedSelf { .. })),
        "{:?}",
        rd.events
    );
    // A node that a configuration in its log named, and a later committed
    // one left out, does report it.
    let mut named = ClusterConfig::new(ids(3));
    named.learners.push(NodeId(4));
    let entries = vec![
        Entry {
            payload: EntryPayload::Config(named),
            ..config.clone()
        },
        Entry {
            index: LogIndex(2),
            ..config
        },
    ];
    let hard_state = HardState {
        commit: LogIndex(2),
        ..hard_state
    };
    let mut removed = restored_node(4, hard_state, entries);
    let rd = removed.ready();
    assert!(
        rd.events
            .contains(&Event::RemovedSelf { index: LogIndex(2) })
    );
}

#[test]
fn a_change_overwritten_by_another_leader_is_answered_as_lost() {
    let mut net = Net::with_voters(4, 3, RaftConfig::default());
    let old = net.elect();
    net.isolate(old);
    net.change(old, Net::learner(3))
        .expect("accepted while cut off");
    net.run_for_ms(3_000);
    let new = net
        .leader()
        .filter(|l| *l != old)
        .expect("the majority elects");
    net.propose(new, b"other");
    net.cut.clear();
    net.run_for_ms(1_000);
    assert!(
        net.conf_answers
            .iter()
            .any(|(i, _, r)| *i == old && *r == Err(ConfChangeFailure::LeadershipLost)),
        "{:?}",
        net.conf_answers
    );
}
