//! Snapshots and log compaction (Raft paper 7, Figure 13; DESIGN.md 5).

use super::*;

fn snapshot_config(entries: u64, chunk_bytes: usize) -> RaftConfig {
    let limits = Limits {
        snapshot_chunk_bytes: chunk_bytes,
        ..Limits::default()
    };
    RaftConfig {
        snapshot_entries: entries,
        limits,
        ..RaftConfig::default()
    }
}

/// A 3-node cluster snapshotting every 10 entries with 5-byte chunks, and
/// a follower cut off while 40 entries commit: the leader's log no longer
/// holds what it needs. Returns (net, leader, follower), links still cut.
fn follower_cut_off_past_the_compacted_log() -> (Net, usize, usize) {
    let mut net = Net::with_config(3, snapshot_config(10, 5));
    let l = net.elect();
    net.run_for_ms(5);
    let f = (l + 1) % 3;
    net.cut.insert((l, f));
    net.cut.insert((f, l));
    for i in 0..40u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    (net, l, f)
}

fn installs(net: &Net, i: usize) -> usize {
    net.events
        .iter()
        .filter(|(n, e)| *n == i && matches!(e, Event::SnapshotInstalled { .. }))
        .count()
}

fn chunks_to(net: &Net, i: usize, from: usize) -> Vec<u64> {
    net.sent[from..]
        .iter()
        .filter(|m| m.to == NodeId(i as u64))
        .filter_map(|m| match &m.body {
            MessageBody::InstallSnapshot { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect()
}

/// Node 0's chunk of `meta`'s file of `file_bytes` to node 1, in `term`:
/// `len` bytes at `offset`.
fn chunk_to_1(meta: &SnapshotMeta, term: u64, file_bytes: u64, offset: u64, len: usize) -> Message {
    msg(
        0,
        1,
        term,
        MessageBody::InstallSnapshot {
            meta: meta.clone(),
            file_bytes,
            offset,
            data: vec![1; len],
        },
    )
}

#[test]
fn the_leader_compacts_its_log_after_snapshot_entries_applied() {
    let mut net = Net::with_config(3, snapshot_config(10, 1 << 20));
    let l = net.elect();
    for i in 0..35u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    for i in 0..3 {
        let raft = net.node(i);
        assert_eq!(
            raft.applied_index(),
            raft.last_index(),
            "node {i} applied all"
        );
        let first = raft.log_first_index();
        assert!(
            first.0 > 30,
            "node {i} kept its log from {first} (applied {})",
            raft.applied_index()
        );
        assert_eq!(raft.snapshot_meta().last_index, first.prev());
        assert!(raft.last_index().0 - raft.snapshot_meta().last_index.0 < 10);
    }
}

/// A follower that missed entries the leader compacted away gets the
/// snapshot in chunks, installs it (its log did not hold the snapshot's
/// last entry, so it discards its log), and replicates from there.
#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_chunked_snapshot() {
    let (mut net, l, f) = follower_cut_off_past_the_compacted_log();
    assert!(net.node(l).log_first_index() > net.node(f).last_index().next());
    let before = net.sent.len();
    net.cut.clear();
    net.run_for_ms(300);
    let offsets = chunks_to(&net, f, before);
    assert_eq!(
        offsets,
        vec![0, 5, 10, 15],
        "a 16-byte file in 5-byte chunks"
    );
    assert_eq!(installs(&net, f), 1);
    assert_eq!(net.node(f).applied_index(), net.node(l).applied_index());
    assert!(net.nodes[f].state_machine().0 >= net.node(f).snapshot_meta().last_index);
    // And it keeps replicating after the snapshot.
    let (index, _) = net.propose(l, b"after");
    net.run_for_ms(100);
    assert_eq!(net.node(f).commit_index(), index);
    assert_eq!(net.node(f).term(), net.node(l).term(), "no election");
}

/// A follower whose data dir was wiped (outside Raft's failure model, but
/// an operator's mistake to survive) answers the leader's heartbeat with
/// the log it has left; the leader replicates to it again, by snapshot,
/// without waiting for a new write.
#[test]
fn a_wiped_follower_is_caught_up_without_a_new_write() {
    let mut net = Net::with_config(3, snapshot_config(10, 1 << 20));
    let l = net.elect();
    for i in 0..35u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(50);
    let f = (l + 1) % 3;
    let applied = net.node(l).applied_index();
    assert_eq!(net.node(f).applied_index(), applied);
    // The same id, an empty disk.
    let cluster = ClusterConfig::new(ids(3));
    let (storage, restored) = MemStorage::new(cluster);
    let raft = Raft::new(
        NodeId(f as u64),
        snapshot_config(10, 1 << 20),
        restored,
        77,
        net.now_us,
    );
    net.nodes[f] = Node::new(raft, SyncWriter(storage), Vec::new(), LastIndex::default());
    net.run_for_ms(300);
    assert_eq!(installs(&net, f), 1, "caught up by InstallSnapshot");
    assert_eq!(net.node(f).applied_index(), applied);
    assert!(net.nodes[f].state_machine().0 >= net.node(f).snapshot_meta().last_index);
}

/// A lost first chunk: the follower rejects the next one (it does not start
/// at what it holds), and the leader resends from offset 0.
#[test]
fn a_lost_snapshot_chunk_is_resent_from_what_the_follower_holds() {
    let (mut net, l, f) = follower_cut_off_past_the_compacted_log();
    net.cut.clear();
    let before = net.sent.len();
    let mut dropped = false;
    for _ in 0..20_000 {
        let step = net.now_us + 50;
        net.run_until(step);
        let first_chunk = net.queue.iter().find_map(|(k, m)| match &m.body {
            MessageBody::InstallSnapshot { offset: 0, .. } if m.to == NodeId(f as u64) => Some(*k),
            _ => None,
        });
        if let Some(key) = first_chunk {
            net.queue.remove(&key);
            dropped = true;
            break;
        }
    }
    assert!(dropped, "no snapshot chunk was sent");
    net.run_for_ms(500);
    let offsets = chunks_to(&net, f, before);
    assert_eq!(
        offsets.iter().filter(|o| **o == 0).count(),
        2,
        "{offsets:?}"
    );
    assert_eq!(installs(&net, f), 1);
    assert_eq!(net.node(f).applied_index(), net.node(l).applied_index());
}

/// Raft paper Figure 13 step 6: a follower whose log already holds the
/// snapshot's last entry keeps the entries after it.
#[test]
fn a_follower_holding_the_snapshot_entry_keeps_the_entries_after_it() {
    let mut net = Net::with_config(3, snapshot_config(1000, 1 << 20));
    let l = net.elect();
    net.run_for_ms(5);
    for i in 0..5u32 {
        net.propose(l, &i.to_be_bytes());
    }
    net.run_for_ms(20);
    let f = (l + 1) % 3;
    let raft = net.nodes[f].raft();
    let last = raft.last_index();
    let meta = SnapshotMeta {
        last_index: LogIndex(3),
        last_term: raft.term_at(LogIndex(3)).unwrap(),
        config: raft.cluster().clone(),
    };
    let mut follower = Raft::new(
        NodeId(9),
        RaftConfig::default(),
        RestoredState {
            hard_state: HardState {
                term: net.node(l).term(),
                vote: None,
                commit: LogIndex(1),
            },
            snapshot: SnapshotMeta {
                last_index: LogIndex(0),
                last_term: Term(0),
                config: ClusterConfig::new(vec![NodeId(l as u64), NodeId(9)]),
            },
            entries: (1..=last.0)
                .map(|i| net.nodes[f].raft().entry(LogIndex(i)).unwrap().clone())
                .collect(),
        },
        7,
        0,
    );
    let term = follower.term();
    let data = {
        // The LastIndex snapshot file of MemSnapshots: length, then index 3.
        let mut file = 8u64.to_le_bytes().to_vec();
        file.extend_from_slice(&3u64.to_le_bytes());
        file
    };
    follower.step(
        1,
        Message {
            from: NodeId(l as u64),
            to: NodeId(9),
            term,
            body: MessageBody::InstallSnapshot {
                meta: meta.clone(),
                file_bytes: data.len() as u64,
                offset: 0,
                data: data.clone(),
            },
        },
    );
    let rd = follower.ready();
    assert_eq!(rd.chunks_received.len(), 1);
    assert!(rd.chunks_received[0].is_last());
    follower.snapshot_installed(2, meta, data.len() as u64);
    let rd = follower.ready();
    assert_eq!(
        rd.log_reset, None,
        "the entries after the snapshot are kept"
    );
    assert_eq!(follower.last_index(), last);
    assert_eq!(follower.log_first_index(), LogIndex(4));
    assert_eq!(follower.commit_index(), LogIndex(3));
    assert!(
        rd.messages_after_persist.iter().any(|m| matches!(
            m.body,
            MessageBody::AppendReply {
                success: true,
                index: LogIndex(3),
                ..
            }
        )),
        "the install is acknowledged as a match, after the persist"
    );
}

/// A snapshot's last chunk, then in the same batch (before the driver takes
/// the Ready) an Append that matches the follower's log and moves its
/// commit index past the snapshot: the snapshot is not handed out to be
/// installed, since that would take the state machine back behind the
/// entries the same Ready applies. Found on real processes (experiment
/// v2, original mode in zones, SIGSTOP of the leader): the deposed leader
/// panicked "installing snapshot 225008 at or below commit 225130".
#[test]
fn a_snapshot_overtaken_by_the_commit_index_is_not_installed() {
    let hard_state = HardState {
        term: Term(2),
        vote: None,
        commit: LogIndex(1),
    };
    let mut f = restored_node(1, hard_state, (1..=3).map(|i| entry(i, 2)).collect());
    let meta = SnapshotMeta {
        last_index: LogIndex(3),
        last_term: Term(2),
        config: ClusterConfig::new(ids(3)),
    };
    let chunk = |offset: u64| chunk_to_1(&meta, 2, 10, offset, 5);
    f.step(1, chunk(0));
    assert_eq!(f.ready().chunks_received.len(), 1, "the first half");
    // The last chunk, and after it in the same batch the leader's Append
    // of entries 4 and 5 with its commit index at 5.
    f.step(2, chunk(5));
    f.step(
        3,
        msg(
            0,
            1,
            2,
            MessageBody::Append {
                prev_index: LogIndex(3),
                prev_term: Term(2),
                entries: vec![entry(4, 2), entry(5, 2)],
                commit: LogIndex(5),
                sent_at_us: 0,
            },
        ),
    );
    assert_eq!(f.commit_index(), LogIndex(5));
    let rd = f.ready();
    assert!(
        rd.chunks_received.is_empty(),
        "a snapshot at 3 handed out at commit 5"
    );
    assert!(
        rd.messages_after_persist.iter().any(|m| matches!(
            m.body,
            MessageBody::AppendReply {
                success: true,
                index: LogIndex(5),
                ..
            }
        )),
        "the Append's reply tells the leader the match"
    );
    // The transfer is over: a resent last chunk is answered as held.
    f.step(4, chunk(5));
    let rd = f.ready();
    assert!(rd.chunks_received.is_empty());
    assert!(rd.messages_after_persist.iter().any(|m| matches!(
        m.body,
        MessageBody::AppendReply {
            success: true,
            index: LogIndex(5),
            ..
        }
    )));
}

/// A transfer belongs to its leader's term: chunks of an older transfer
/// after a term change start nothing.
#[test]
fn a_snapshot_transfer_is_abandoned_on_a_term_change() {
    let meta = SnapshotMeta {
        last_index: LogIndex(50),
        last_term: Term(1),
        config: ClusterConfig::new(ids(3)),
    };
    let restored = RestoredState::fresh(ClusterConfig::new(ids(3)));
    let mut f = Raft::new(NodeId(1), RaftConfig::default(), restored, 3, 0);
    let chunk = |term: u64, offset: u64| chunk_to_1(&meta, term, 10, offset, 5);
    f.step(1, chunk(1, 0));
    assert_eq!(f.ready().chunks_received.len(), 1);
    // A new leader in term 2; the old leader's second chunk is stale.
    f.step(
        2,
        Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(2),
            body: MessageBody::Heartbeat {
                commit: LogIndex(0),
                sent_at_us: 0,
                read_round: 0,
                designation: None,
            },
        },
    );
    f.step(3, chunk(1, 5));
    let rd = f.ready();
    assert!(rd.chunks_received.is_empty(), "a stale term's chunk");
    // The new leader's own transfer must start at offset 0.
    f.step(4, chunk(2, 5));
    let rd = f.ready();
    assert!(
        rd.chunks_received.is_empty(),
        "no transfer under way in term 2"
    );
    assert!(rd.messages.iter().any(|m| matches!(
        m.body,
        MessageBody::InstallSnapshotReply {
            next_offset: 0,
            rejected: true,
            ..
        }
    )));
}

/// The install's acknowledgement is lost: every chunk was acknowledged, so
/// nothing is left to resend; after a stall the leader probes the follower's
/// log again instead of waiting forever (found by the simulator, seeds 55
/// and 201).
#[test]
fn a_lost_install_acknowledgement_ends_in_a_probe_not_a_stall() {
    let (mut net, l, f) = follower_cut_off_past_the_compacted_log();
    net.cut.clear();
    let mut dropped = false;
    for _ in 0..20_000 {
        let step = net.now_us + 50;
        net.run_until(step);
        let ack = net.queue.iter().find_map(|(k, m)| match &m.body {
            MessageBody::AppendReply { success: true, .. }
                if m.from == NodeId(f as u64) && installs(&net, f) == 1 =>
            {
                Some(*k)
            }
            _ => None,
        });
        if let Some(key) = ack {
            net.queue.remove(&key);
            dropped = true;
            break;
        }
    }
    assert!(dropped, "no install acknowledgement was sent");
    let (index, _) = net.propose(l, b"after");
    net.run_for_ms(500);
    assert_eq!(installs(&net, f), 1, "installed once");
    assert_eq!(net.node(f).commit_index(), index, "replicating again");
}

/// A follower answers one rejection per heartbeat interval, not one per
/// chunk, and then answers again: if its only rejection is lost (it
/// restarted mid-transfer and expects offset 0, while the leader resends
/// from what it held before), the leader's stall resend must still learn
/// where it stands (stall seed 39109 never converged: the follower stayed
/// silent, the leader resent from offset 81920 forever).
#[test]
fn a_rejected_chunk_is_answered_again_after_a_heartbeat_interval() {
    let mut f = restored_node(1, HardState::default(), vec![]);
    let meta = SnapshotMeta {
        last_index: LogIndex(9),
        last_term: Term(1),
        config: ClusterConfig::new(ids(3)),
    };
    let chunk = |offset: u64| chunk_to_1(&meta, 1, 100, offset, 10);
    let rejections = |rd: &sraft::core::Ready| -> Vec<u64> {
        rd.messages
            .iter()
            .filter_map(|m| match m.body {
                MessageBody::InstallSnapshotReply {
                    next_offset,
                    rejected: true,
                    ..
                } => Some(next_offset),
                _ => None,
            })
            .collect()
    };
    let interval_us = RaftConfig::default().heartbeat_interval_ms * 1000;
    f.step(1_000, chunk(40));
    f.step(1_001, chunk(50));
    assert_eq!(
        rejections(&f.ready()),
        vec![0],
        "one rejection for the burst"
    );
    f.step(1_000 + interval_us / 2, chunk(60));
    assert!(rejections(&f.ready()).is_empty(), "still quiet");
    f.step(1_000 + interval_us, chunk(40));
    assert_eq!(rejections(&f.ready()), vec![0], "the resend learns: from 0");
    f.step(1_000 + interval_us + 1, chunk(0));
    let rd = f.ready();
    assert_eq!(rd.chunks_received.len(), 1, "the transfer goes on from 0");
}
