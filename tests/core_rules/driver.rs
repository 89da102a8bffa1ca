//! The node driver's hold on messages that promise durability (DESIGN.md
//! 2.2), with a writer that makes writes durable later, as the WAL thread
//! and the simulator's disk do.

use super::*;
use sraft::runtime::{LogWrite, LogWriter, Submitted};
use sraft::storage::StorageError;

/// Keeps every write it is handed; nothing is durable until the test says.
#[derive(Default)]
struct LaterWriter(Vec<LogWrite>);

impl LogWriter for LaterWriter {
    fn submit(&mut self, write: LogWrite) -> Result<Submitted, StorageError> {
        self.0.push(write);
        Ok(Submitted::Queued)
    }
}

fn is_grant(m: &Message) -> bool {
    matches!(m.body, MessageBody::VoteReply { granted: true })
}

#[test]
fn a_grant_travels_with_its_write_and_a_repeat_waits_for_that_write() {
    // Thesis 3.8: the vote is on disk before the grant leaves. The writer
    // that makes the write durable sends the grant; a grant repeated while
    // that write is in flight promises nothing new, so it waits in the
    // driver for the write's report.
    let (_, restored) = MemStorage::new(ClusterConfig::new(ids(3)));
    let raft = Raft::new(NodeId(0), RaftConfig::default(), restored, 7, 0);
    let mut node: Node<LastIndex, LaterWriter, Vec<Message>, u64> = Node::new(
        raft,
        LaterWriter::default(),
        Vec::new(),
        LastIndex::default(),
    );

    node.step(0, vote_request(1, 0, 1));
    node.process().unwrap();
    let writes = &node.writer().0;
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].hard_state.map(|h| h.vote), Some(Some(NodeId(1))));
    assert!(writes[0].held.iter().any(is_grant), "{:?}", writes[0].held);
    assert!(
        !node.network().iter().any(is_grant),
        "no grant before the fsync"
    );

    node.step(10, vote_request(1, 0, 1));
    node.process().unwrap();
    assert_eq!(node.writer().0.len(), 1, "nothing new to write");
    assert!(!node.network().iter().any(is_grant), "the repeat waits too");

    let seq = node.writer().0[0].seq;
    node.persisted(20, seq);
    assert_eq!(node.network().iter().filter(|m| is_grant(m)).count(), 1);
}
