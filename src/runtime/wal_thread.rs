//! The WAL thread (DESIGN.md 2.4): owns the log files, writes and fsyncs in
//! batches (group commit) and reports each durable write back to the Raft
//! thread, which goes on ticking and heartbeating meanwhile. The Raft thread
//! owns all Raft state; this thread owns only the files.

use super::node::{LogWrite, LogWriter};
use crate::core::{Entry, HardState};
use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError};
use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Writes queued for the WAL thread. When the disk is this far behind the
/// Raft thread waits for it: backpressure instead of unbounded memory
/// (writes are already bounded in bytes by the leader's uncommitted limit
/// and the followers' in-flight window).
const WAL_QUEUE_DEPTH: usize = 1024;

/// Writes merged into one record and one fsync, at most.
const GROUP_WRITES_MAX: usize = 256;

/// What the WAL thread reports to the Raft thread.
#[derive(Debug)]
pub enum WalEvent {
    /// Every write through this sequence number is durable.
    Durable(u64),
    /// A write or fsync failed: the node must stop (its promises can no
    /// longer be kept). Nothing after the failed write was acknowledged.
    Failed(StorageError),
}

/// The Raft thread's side: hands writes to the WAL thread.
pub struct WalWriter {
    writes: Option<Sender<LogWrite>>,
    thread: Option<JoinHandle<()>>,
}

impl WalWriter {
    /// Starts the thread that owns `storage`; `events` receives its reports.
    pub fn start<S: Storage + 'static>(
        storage: S,
        events: Sender<WalEvent>,
    ) -> std::io::Result<WalWriter> {
        WalWriter::start_with(storage, events, Arc::default())
    }

    /// `start`, counting group commits and their durations in `metrics`.
    pub fn start_with<S: Storage + 'static>(
        storage: S,
        events: Sender<WalEvent>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<WalWriter> {
        let (tx, rx) = bounded(WAL_QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || run(storage, rx, events, &metrics))?;
        Ok(WalWriter {
            writes: Some(tx),
            thread: Some(thread),
        })
    }

    /// Closes the queue and waits until every write handed over is written
    /// and fsynced (orderly shutdown).
    pub fn finish(&mut self) {
        self.writes.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        self.finish();
    }
}

impl LogWriter for WalWriter {
    fn submit(&mut self, write: LogWrite) -> Result<bool, StorageError> {
        let sender = self.writes.as_ref().expect("submit after finish");
        // Fails only if the WAL thread is gone, which it is only after it
        // reported a failure: the Raft thread is stopping already.
        let _ = sender.send(write);
        Ok(false)
    }
}

fn run<S: Storage>(
    mut storage: S,
    writes: Receiver<LogWrite>,
    events: Sender<WalEvent>,
    metrics: &Metrics,
) {
    while let Ok(first) = writes.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_WRITES_MAX {
            match writes.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        let seq = group.last().expect("one write").seq;
        let merged = group.len();
        let (hard_state, entries) = merge(group);
        let started = Instant::now();
        let persisted = storage.persist(hard_state.as_ref(), &entries);
        let elapsed_us = started.elapsed().as_micros() as u64;
        match persisted {
            Ok(()) => {
                metrics.wal_synced(merged, entries.len(), elapsed_us);
                if events.send(WalEvent::Durable(seq)).is_err() {
                    break;
                }
            }
            Err(error) => {
                let _ = events.send(WalEvent::Failed(error));
                return;
            }
        }
    }
    if let Err(error) = storage.sync() {
        log::error!("final WAL sync failed: {error}");
    }
}

/// Folds consecutive writes into one with the same effect: the last hard
/// state, and the entries as they stand after every replacement.
pub fn merge(group: Vec<LogWrite>) -> (Option<HardState>, Vec<Entry>) {
    let mut hard_state = None;
    let mut entries: Vec<Entry> = Vec::new();
    for write in group {
        if write.hard_state.is_some() {
            hard_state = write.hard_state;
        }
        let Some(first) = write.entries.first() else {
            continue;
        };
        match entries.first() {
            // A later write replaces entries from its first index on.
            Some(start) if first.index >= start.index => {
                entries.truncate((first.index.0 - start.index.0) as usize);
            }
            _ => entries.clear(),
        }
        entries.extend(write.entries);
    }
    (hard_state, entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{EntryPayload, LogIndex, Term};

    fn entries(from: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry {
                term: Term(*t),
                index: LogIndex(from + i as u64),
                payload: EntryPayload::Noop,
            })
            .collect()
    }

    fn write(seq: u64, hs_term: Option<u64>, entries: Vec<Entry>) -> LogWrite {
        LogWrite {
            seq,
            hard_state: hs_term.map(|t| HardState {
                term: Term(t),
                ..HardState::default()
            }),
            entries,
        }
    }

    fn shape(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index.0, e.term.0)).collect()
    }

    #[test]
    fn merged_writes_keep_the_last_hard_state_and_every_entry() {
        let (hs, merged) = merge(vec![
            write(1, Some(1), entries(1, &[1, 1])),
            write(2, None, entries(3, &[1])),
            write(3, Some(2), Vec::new()),
        ]);
        assert_eq!(hs.map(|h| h.term), Some(Term(2)));
        assert_eq!(shape(&merged), vec![(1, 1), (2, 1), (3, 1)]);
    }

    #[test]
    fn a_later_conflict_replaces_the_suffix_as_storage_would() {
        let (_, merged) = merge(vec![
            write(1, None, entries(5, &[1, 1, 1])),
            write(2, None, entries(6, &[2])),
        ]);
        assert_eq!(shape(&merged), vec![(5, 1), (6, 2)]);
        let (_, merged) = merge(vec![
            write(1, None, entries(5, &[1, 1])),
            write(2, None, entries(3, &[2])),
        ]);
        assert_eq!(shape(&merged), vec![(3, 2)]);
    }
}
