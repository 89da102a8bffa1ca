//! Reads and leadership transfer (thesis 6.4, 3.10).

use super::*;
use crate::crash_path::subleader;
use crate::subleaders::ranked_net;

#[test]
fn read_index_waits_for_a_quorum_round_after_the_noop_commits() {
    // Thesis 6.4: the leader "needs to make sure it hasn't been superseded by
    // a newer leader ... by exchanging heartbeats with a majority".
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let commit = net.node(l).commit_index();
    let before = net.sent.len();
    net.read(l, 42);
    assert!(net.answers.is_empty(), "served before a heartbeat round");
    assert!(
        net.sent[before..]
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat { read_round, .. } if read_round > 0)),
        "the read starts its own heartbeat round"
    );
    net.run_for_ms(1);
    assert_eq!(net.answers.len(), 1);
    let (node, ticket, reply) = net.answers.pop().unwrap();
    assert_eq!((node, ticket), (l, 42));
    let served = u64::from_le_bytes(reply.expect("served")[..8].try_into().unwrap());
    assert!(LogIndex(served) <= commit, "nothing was written since");
}

#[test]
fn an_isolated_leader_cannot_serve_a_read() {
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    net.isolate(l);
    net.read(l, 7);
    net.run_for_ms(1500);
    assert!(
        net.answers.iter().all(|(_, _, reply)| reply.is_err()),
        "an isolated leader served a read: {:?}",
        net.answers
    );
}

#[test]
fn leadership_transfer_hands_over_in_the_next_term() {
    // Thesis 3.10: the prior leader sends a TimeoutNow request to the target
    // server ... the target server starts a new election.
    let mut net = Net::new(5);
    let l = net.elect();
    net.run_for_ms(20);
    let term = net.node(l).term();
    let target = (l + 3) % 5;
    let chosen = net.nodes[l].transfer_leadership(net.now_us, Some(NodeId(target as u64)));
    assert_eq!(chosen, Ok(NodeId(target as u64)));
    net.flush(l);
    net.run_for_ms(20);
    assert_eq!(net.leader(), Some(target));
    assert_eq!(net.node(target).term(), term.next());
}

/// Without a named target, the leader hands over to its primary
/// sub-leader; a follower refuses, and so does a leader asked to hand over
/// to a node that is not a voter.
#[test]
fn a_transfer_without_a_target_goes_to_the_primary_subleader() {
    let (mut net, l) = ranked_net([900, 700, 200, 500, 300]);
    net.run_for_ms(300);
    let primary = subleader(&net, l, 0);
    let f = (l + 1) % 5;
    assert_eq!(
        net.nodes[f].transfer_leadership(net.now_us, None),
        Err(TransferError::NotLeader)
    );
    assert_eq!(
        net.nodes[l].transfer_leadership(net.now_us, Some(NodeId(9))),
        Err(TransferError::UnknownTarget(NodeId(9)))
    );
    let term = net.node(l).term();
    let chosen = net.nodes[l].transfer_leadership(net.now_us, None);
    assert_eq!(chosen, Ok(NodeId(primary as u64)));
    net.flush(l);
    net.run_for_ms(20);
    assert_eq!(net.leader(), Some(primary));
    assert_eq!(net.node(primary).term(), term.next());
}
