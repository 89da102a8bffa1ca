//! The longest the Raft thread is kept from its other work (heartbeats,
//! votes, other clients) while a 16 MiB entry is persisted with fsync on,
//! side by side: the production WAL thread (the Raft thread only hands the
//! write over) against writing and fsyncing on the Raft thread itself (how
//! sraft worked before the WAL thread). Goal: well below one heartbeat
//! interval (50 ms). Each iteration proposes one entry on the leader of a
//! one-node cluster and measures the longest of the two Raft-thread steps:
//! propose + hand out, and durable report + apply.
//! `cargo bench --bench raft_stall`

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_channel::{Receiver, bounded};
use sraft::core::{ClusterConfig, LogIndex, Message, NodeId, Raft, RaftConfig, Role};
use sraft::limits::Limits;
use sraft::runtime::{LogWriter, Node, SyncWriter, WalEvent, WalWriter};
use sraft::state_machine::{Bytes, StateMachine};
use sraft::storage::{FileStorage, WalOptions};
use std::time::{Duration, Instant};

const ENTRY_BYTES: usize = 16 << 20;

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

/// The limits table for values of `ENTRY_BYTES` (DESIGN.md 7).
fn limits() -> Limits {
    Limits::derive(ENTRY_BYTES)
}

fn config() -> RaftConfig {
    RaftConfig {
        limits: limits(),
        ..RaftConfig::default()
    }
}

/// A one-node cluster's leader over `writer`, elected.
fn leader<W: LogWriter>(
    restored: sraft::core::RestoredState,
    writer: W,
    durable: Option<&Receiver<WalEvent>>,
) -> Node<Count, W, Vec<Message>, ()> {
    let raft = Raft::new(NodeId(0), config(), restored, 1, 0);
    let mut node = Node::new(raft, writer, Vec::new(), Count::default());
    let mut now = 0;
    while node.raft().role() != Role::Leader {
        now += 10_000;
        node.tick(now);
        node.process().expect("process");
        if let Some(rx) = durable {
            while node.unsynced_writes() > 0 {
                wait_durable(&mut node, rx);
            }
        }
    }
    node
}

fn wait_durable<W: LogWriter>(
    node: &mut Node<Count, W, Vec<Message>, ()>,
    rx: &Receiver<WalEvent>,
) {
    match rx.recv().expect("WAL thread alive") {
        WalEvent::Durable { seq, unsent } => {
            node.network_mut().extend(unsent);
            let now = node.raft().now_us();
            node.persisted(now, seq);
            node.process().expect("process");
        }
        WalEvent::Failed(e) => panic!("WAL failed: {e}"),
    }
}

fn open(dir: &std::path::Path) -> (FileStorage, sraft::core::RestoredState) {
    FileStorage::open(
        dir,
        ClusterConfig::new(vec![NodeId(0)]),
        WalOptions {
            record_bytes_max: limits().wal_record_bytes_max,
            ..WalOptions::default()
        },
    )
    .expect("open WAL")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("raft_thread_stall_16MiB_entry");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let payload = vec![0x5a; ENTRY_BYTES];

    group.bench_function("wal_thread", |b| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (storage, restored) = open(tmp.path());
        let (tx, rx) = bounded(1024);
        let writer = WalWriter::start(storage, tx).expect("WAL thread");
        let mut node = leader(restored, writer, Some(&rx));
        b.iter_custom(|iters| {
            let mut stall = Duration::ZERO;
            for _ in 0..iters {
                let target = node.state_machine().0 + 1;
                let command = payload.clone();
                let start = Instant::now();
                let now = node.raft().now_us() + 1;
                node.propose(now, command, ());
                node.process().expect("process");
                let handed_over = start.elapsed();
                let mut longest = handed_over;
                while node.state_machine().0 < target {
                    let rx_wait = rx.recv().expect("WAL thread alive");
                    let start = Instant::now();
                    match rx_wait {
                        WalEvent::Durable { seq, unsent } => {
                            node.network_mut().extend(unsent);
                            node.persisted(now, seq);
                            node.process().expect("process");
                        }
                        WalEvent::Failed(e) => panic!("WAL failed: {e}"),
                    }
                    longest = longest.max(start.elapsed());
                }
                stall += longest;
            }
            stall
        });
    });

    group.bench_function("fsync_on_raft_thread", |b| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (storage, restored) = open(tmp.path());
        let mut node = leader(restored, SyncWriter(storage), None);
        b.iter_custom(|iters| {
            let mut stall = Duration::ZERO;
            for _ in 0..iters {
                let target = node.state_machine().0 + 1;
                let command = payload.clone();
                let start = Instant::now();
                let now = node.raft().now_us() + 1;
                node.propose(now, command, ());
                node.process().expect("process");
                assert!(node.state_machine().0 >= target, "applied in the same step");
                stall += start.elapsed();
            }
            stall
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
