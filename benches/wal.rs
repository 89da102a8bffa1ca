//! WAL throughput with fsync on: entries/s for `persist` batches of 1 and 64
//! entries of 100-byte commands. One batch costs one fsync, so the figure
//! for 64 shows what group commit buys.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sraft::core::types::{ClusterConfig, Entry, EntryPayload, LogIndex, NodeId, Term};
use sraft::storage::{FileStorage, Storage, WalOptions};

const COMMAND_BYTES: usize = 100;

fn bench_persist(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_persist_fsync");
    for batch_entries in [1u64, 64] {
        group.throughput(Throughput::Elements(batch_entries));
        group.bench_with_input(
            BenchmarkId::from_parameter(batch_entries),
            &batch_entries,
            |b, &batch_entries| {
                let tmp = tempfile::tempdir().expect("tempdir");
                let config = ClusterConfig::new(vec![NodeId(0)]);
                let (mut storage, _) =
                    FileStorage::open(tmp.path(), config, WalOptions::default()).expect("open WAL");
                let mut next_index = 1u64;
                b.iter(|| {
                    let batch: Vec<Entry> = (next_index..next_index + batch_entries)
                        .map(|index| Entry {
                            term: Term(1),
                            index: LogIndex(index),
                            payload: EntryPayload::Command(vec![0xab; COMMAND_BYTES].into()),
                        })
                        .collect();
                    storage.persist(None, &batch).expect("persist");
                    next_index += batch_entries;
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_persist);
criterion_main!(benches);
