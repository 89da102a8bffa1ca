//! Entries committed per second through a 3-node cluster of the real core,
//! in memory, on one thread: no network, no disk, no invariant checker. It
//! measures the core's own cost per entry (batching, pipelining, commit).
//! `cargo bench --bench core_throughput`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sraft::core::{ClusterConfig, Message, NodeId, Raft, RaftConfig, RestoredState, Role};
use std::collections::VecDeque;

struct Harness {
    nodes: Vec<Raft>,
    inbox: VecDeque<Message>,
    now_us: u64,
    committed_on_leader: u64,
}

impl Harness {
    fn new() -> Harness {
        let ids: Vec<NodeId> = (0..3).map(NodeId).collect();
        let cluster = ClusterConfig::new(ids.clone());
        let nodes = ids
            .iter()
            .map(|&id| {
                let restored = RestoredState::fresh(cluster.clone());
                Raft::new(id, RaftConfig::default(), restored, id.0 + 1, 0)
            })
            .collect();
        let mut h = Harness {
            nodes,
            inbox: VecDeque::new(),
            now_us: 0,
            committed_on_leader: 0,
        };
        while !h.nodes.iter().any(|n| n.role() == Role::Leader) {
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
            .find(|i| self.nodes[*i].role() == Role::Leader)
            .expect("a leader")
    }

    /// Delivers messages until the cluster is quiet. Persisting is free.
    fn pump(&mut self) {
        loop {
            for i in 0..self.nodes.len() {
                if !self.nodes[i].has_ready() {
                    continue;
                }
                let rd = self.nodes[i].ready();
                if self.nodes[i].role() == Role::Leader {
                    self.committed_on_leader += rd.committed.len() as u64;
                }
                self.inbox.extend(rd.messages.iter().cloned());
                self.inbox.extend(rd.messages_after_persist.iter().cloned());
                self.nodes[i].advance(&rd);
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
        let target = self.committed_on_leader + batch as u64;
        for _ in 0..batch {
            self.nodes[leader]
                .propose(self.now_us, payload.to_vec())
                .expect("leader accepts");
        }
        self.pump();
        assert!(self.committed_on_leader >= target, "batch not committed");
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
