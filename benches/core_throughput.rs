//! Entries committed per second through a 3-node cluster of the production
//! node driver (and so the real core), in memory, on one thread: no network, no disk, no invariant checker. It
//! measures the core's own cost per entry (batching, pipelining, commit).
//! `cargo bench --bench core_throughput`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sraft::core::{ClusterConfig, LogIndex, Message, NodeId, Raft, RaftConfig, Role};
use sraft::runtime::{Node, SyncWriter};
use sraft::state_machine::{Bytes, StateMachine};
use sraft::storage::MemStorage;
use std::collections::VecDeque;

/// Counts what it applies; the cost of a real state machine is not measured.
#[derive(Default)]
struct Count(u64);

impl StateMachine for Count {
    type Output = Vec<u8>;

    fn apply(&mut self, _index: LogIndex, _command: &Bytes) -> Vec<u8> {
        self.0 += 1;
        Vec::new()
    }
    fn applied_index(&self) -> LogIndex {
        LogIndex(self.0)
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&mut self, _index: LogIndex, _snapshot: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// The production driver, over memory storage that fsyncs at once.
type BenchNode = Node<Count, SyncWriter<MemStorage>, Vec<Message>, ()>;

struct Harness {
    nodes: Vec<BenchNode>,
    inbox: VecDeque<Message>,
    now_us: u64,
}

impl Harness {
    fn new() -> Harness {
        let ids: Vec<NodeId> = (0..3).map(NodeId).collect();
        let cluster = ClusterConfig::new(ids.clone());
        let nodes = ids
            .iter()
            .map(|&id| {
                let (storage, restored) = MemStorage::new(cluster.clone());
                let raft = Raft::new(id, RaftConfig::default(), restored, id.0 + 1, 0);
                Node::new(raft, SyncWriter(storage), Vec::new(), Count::default())
            })
            .collect();
        let mut h = Harness {
            nodes,
            inbox: VecDeque::new(),
            now_us: 0,
        };
        while !h.nodes.iter().any(|n| n.raft().role() == Role::Leader) {
            h.now_us += 10_000;
            for node in &mut h.nodes {
                node.tick(h.now_us);
            }
            h.pump();
        }
        h
    }

    fn leader(&self) -> usize {
        (0..3)
            .find(|i| self.nodes[*i].raft().role() == Role::Leader)
            .expect("a leader")
    }

    /// Delivers messages until the cluster is quiet.
    fn pump(&mut self) {
        loop {
            for node in &mut self.nodes {
                node.process().expect("memory storage");
                node.take_answers();
                node.take_events();
                self.inbox.extend(node.network_mut().drain(..));
            }
            let Some(msg) = self.inbox.pop_front() else {
                return;
            };
            let to = msg.to.0 as usize;
            self.nodes[to].step(self.now_us, msg);
        }
    }

    fn commit_batch(&mut self, batch: usize, payload: &[u8]) {
        let leader = self.leader();
        let target = self.nodes[leader].state_machine().0 + batch as u64;
        for _ in 0..batch {
            self.nodes[leader]
                .propose(self.now_us, payload.to_vec(), ())
                .expect("leader accepts");
        }
        self.pump();
        let applied = self.nodes[leader].state_machine().0;
        assert!(applied >= target, "batch not committed");
        self.now_us += 100;
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_3_nodes");
    let payload = vec![7u8; 100];
    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::new("entries_100B", batch),
            &batch,
            |b, &batch| {
                let mut h = Harness::new();
                b.iter(|| h.commit_batch(batch, &payload));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
