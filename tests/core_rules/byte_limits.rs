//! Byte limits (DESIGN.md 7; etcd-io/raft's MaxSizePerMsg and MaxUncommittedEntriesSize).

use super::*;

/// A command whose entry is exactly `entry_bytes` (`Entry::size_bytes`).
fn command_of_entry_bytes(entry_bytes: usize) -> Vec<u8> {
    vec![7; entry_bytes - Entry::command_size_bytes(0)]
}

fn with_limits(limits: Limits) -> RaftConfig {
    RaftConfig {
        limits,
        ..RaftConfig::default()
    }
}

#[test]
fn a_proposal_above_the_entry_limit_is_refused_at_once_on_every_node() {
    // DESIGN.md 7: "No client request can make a message that the transport
    // cannot carry": an entry above entry_bytes_max never enters the log.
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let max = net.node(l).config().limits.entry_bytes_max;
    let last = net.node(l).last_index();
    for i in 0..3 {
        let err = net
            .try_propose(i, command_of_entry_bytes(max + 1))
            .unwrap_err();
        assert_eq!(
            err,
            RequestError::TooLarge {
                entry_bytes: max + 1,
                entry_bytes_max: max
            },
            "node {i}"
        );
    }
    assert_eq!(net.node(l).last_index(), last, "nothing was appended");
    assert_eq!(net.node(l).uncommitted_bytes(), 0);
    let (index, _) = net.propose(l, &command_of_entry_bytes(max));
    net.run_for_ms(20);
    assert!(
        net.node(l).commit_index() >= index,
        "a maximal entry commits"
    );
}

#[test]
fn the_leader_refuses_proposals_beyond_its_uncommitted_bytes_until_commit_catches_up() {
    // DESIGN.md 7: "bytes of uncommitted entries on the leader (beyond it a
    // proposal is refused at once with -ERR busy)"; etcd's raft.go: "limit
    // the size of the uncommitted tail of the log and drop any proposal
    // that would push the size over the limit".
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let limits = net.node(l).config().limits.clone();
    let command = vec![1u8; 1 << 20];
    let entry_bytes = Entry::command_size_bytes(command.len());
    let fits = limits.uncommitted_bytes_max / entry_bytes;
    assert!(fits >= 2, "the default table holds several maximal values");
    // No input reaches the network between these proposals: none commits.
    for n in 0..fits {
        net.try_propose(l, command.clone())
            .unwrap_or_else(|e| panic!("proposal {n} of {fits}: {e:?}"));
    }
    let held = fits * entry_bytes;
    assert_eq!(net.node(l).uncommitted_bytes(), held);
    let last = net.node(l).last_index();
    assert_eq!(
        net.try_propose(l, command.clone()),
        Err(RequestError::UncommittedFull {
            uncommitted_bytes: held,
            uncommitted_bytes_max: limits.uncommitted_bytes_max
        })
    );
    assert_eq!(
        net.node(l).last_index(),
        last,
        "a refused proposal appends nothing"
    );
    net.flush(l);
    net.run_for_ms(50);
    assert_eq!(net.node(l).commit_index(), last);
    assert_eq!(
        net.node(l).uncommitted_bytes(),
        0,
        "commit releases the bytes"
    );
    net.propose(l, &command);
}

#[test]
fn a_proposal_when_nothing_is_uncommitted_is_accepted_if_it_fits_the_entry_limit() {
    // etcd's raft.go: "If the uncommitted tail of the Raft log is empty,
    // allow any size proposal", so one maximal entry always makes progress,
    // even when uncommitted_bytes_max leaves room for nothing else.
    let base = Limits::default();
    let limits = Limits {
        uncommitted_bytes_max: base.entry_bytes_max,
        ..base
    };
    let max = limits.entry_bytes_max;
    let mut net = Net::with_config(3, with_limits(limits));
    let l = net.elect();
    net.run_for_ms(5);
    net.try_propose(l, vec![1]).unwrap();
    let busy = net.try_propose(l, command_of_entry_bytes(max));
    assert!(
        matches!(busy, Err(RequestError::UncommittedFull { .. })),
        "{busy:?}"
    );
    net.flush(l);
    net.run_for_ms(20);
    assert_eq!(net.node(l).uncommitted_bytes(), 0);
    net.try_propose(l, command_of_entry_bytes(max))
        .expect("nothing uncommitted: a maximal entry is accepted");
    let busy = net.try_propose(l, vec![1]);
    assert!(
        matches!(busy, Err(RequestError::UncommittedFull { .. })),
        "{busy:?}"
    );
}

#[test]
fn uncommitted_bytes_start_from_zero_in_each_leadership() {
    // etcd resets uncommittedSize in becomeLeader: entries of earlier terms
    // that a new leader has yet to commit are not its proposals.
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    net.isolate(l);
    net.propose(l, &[9; 1000]);
    assert!(net.node(l).uncommitted_bytes() > 0);
    net.run_for_ms(1_500);
    assert_ne!(net.node(l).role(), Role::Leader, "lost its quorum");
    assert_eq!(net.node(l).uncommitted_bytes(), 0);
    let new = net.leader().expect("the other two elect a leader");
    assert_eq!(net.node(new).uncommitted_bytes(), 0);
}

#[test]
fn an_append_carries_at_most_the_message_limit_and_fits_one_frame() {
    // DESIGN.md 7: "entry max <= bytes per append message <= frame_bytes_max":
    // the leader splits a backlog into Appends of at most append_bytes_max
    // of entries, and each, framed, fits frame_bytes_max.
    let mut net = Net::new(3);
    let l = net.elect();
    net.run_for_ms(5);
    let limits = net.node(l).config().limits.clone();
    let before = net.sent.len();
    for n in 0..20u8 {
        // Queued without a flush in between: one backlog to split.
        net.try_propose(l, vec![n; 300 << 10]).unwrap();
    }
    net.flush(l);
    net.run_for_ms(50);
    let mut batched = 0;
    for m in &net.sent[before..] {
        let MessageBody::Append { entries, .. } = &m.body else {
            continue;
        };
        let entry_bytes: usize = entries.iter().map(Entry::size_bytes).sum();
        assert!(
            entry_bytes <= limits.append_bytes_max,
            "Append of {entry_bytes} entry bytes above {}",
            limits.append_bytes_max
        );
        let mut buf = Vec::new();
        let frame_bytes = encode_frame(&PeerFrame::Message(m.clone()), &mut buf);
        assert!(
            frame_bytes <= limits.frame_bytes_max,
            "frame of {frame_bytes} bytes above {}",
            limits.frame_bytes_max
        );
        batched += usize::from(entries.len() > 1);
    }
    assert!(batched > 0, "some Appends carried several entries");
    assert!(net.node(l).commit_index() >= net.node(l).last_index());
}
