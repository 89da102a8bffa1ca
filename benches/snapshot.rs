//! What a snapshot of 1,000,000 keys of 100 bytes costs (issue 10), side
//! by side:
//! - the Raft thread's pause: making the snapshot job (two O(1) clones of
//!   the persistent maps) against serializing the whole state there, which
//!   is what the Raft thread would do without them;
//! - the snapshot thread's work: serializing the view;
//! - a restart's or an install's work: restoring the state from the bytes.
//!
//! And the cost the view puts on the Raft thread while the job runs: one
//! write that must copy the map nodes it touches, against one write to an
//! unshared map.
//! `cargo bench --bench snapshot`

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sraft::core::LogIndex;
use sraft::kv::command::{SetCondition, WriteOp};
use sraft::kv::store::{KvCommand, KvStore, KvStoreConfig};
use sraft::state_machine::{Bytes, StateMachine};
use std::time::{Duration, Instant};

const KEYS: u64 = 1_000_000;
const VALUE_BYTES: usize = 100;

fn set(key: u64, seq: u64) -> Bytes {
    KvCommand {
        client_id: 1 + key % 64,
        seq,
        op: WriteOp::Set {
            key: format!("key:{key:012}").into_bytes(),
            value: vec![b'v'; VALUE_BYTES],
            condition: SetCondition::Always,
            get: false,
        },
    }
    .encode()
    .into()
}

fn store() -> KvStore {
    let mut store = KvStore::new(KvStoreConfig::default());
    for key in 0..KEYS {
        store.apply(LogIndex(key + 1), &set(key, key / 64 + 1));
    }
    store
}

fn bench(c: &mut Criterion) {
    let mut store = store();
    let bytes = store.snapshot();
    eprintln!(
        "state: {KEYS} keys of {VALUE_BYTES} bytes, snapshot payload {} MiB",
        bytes.len() >> 20
    );
    let mut g = c.benchmark_group("snapshot_1m_keys");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("raft_thread_pause_with_view", |b| {
        b.iter(|| std::hint::black_box(store.snapshot_job()))
    });
    g.bench_function("raft_thread_pause_serializing_there", |b| {
        b.iter(|| std::hint::black_box(store.snapshot()))
    });
    g.bench_function("snapshot_thread_serializes_the_view", |b| {
        b.iter_batched(
            || store.snapshot_job(),
            |job| std::hint::black_box(job()),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("restore_for_restart_or_install", |b| {
        b.iter_batched(
            || KvStore::new(KvStoreConfig::default()),
            |mut fresh| {
                fresh.restore(LogIndex(KEYS), &bytes).expect("restores");
                fresh
            },
            BatchSize::PerIteration,
        )
    });
    let mut index = KEYS;
    // The first write after a view is taken copies the nodes on its path:
    // the worst case, measured on a fresh view each time.
    g.bench_function("write_while_a_view_is_held", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let job = store.snapshot_job();
                index += 1;
                let started = Instant::now();
                store.apply(LogIndex(index), &set(index % KEYS, index));
                total += started.elapsed();
                drop(job);
            }
            total
        })
    });
    g.bench_function("write_with_no_view", |b| {
        b.iter(|| {
            index += 1;
            store.apply(LogIndex(index), &set(index % KEYS, index))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
