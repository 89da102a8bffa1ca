//! The WAL thread (DESIGN.md 2.4): owns the log files, writes and fsyncs in
//! batches (group commit), sends the messages each write held (append
//! replies, vote grants and requests) to the peers' queues once it is
//! durable, and reports each durable write back to the Raft thread, which
//! goes on ticking and heartbeating meanwhile. The Raft thread owns all
//! Raft state; this thread owns the files and sends, never decides.

use super::node::{LogWrite, LogWriter, Submitted};
use crate::core::Message;
#[cfg(test)]
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

/// Where the WAL thread sends the messages a durable write releases (vote
/// grants and requests, append acknowledgements): straight into a peer's
/// queue, so that an acknowledgement leaves the moment its fsync returns
/// instead of after a hand-off to the Raft thread. `Err(msg)`: it cannot
/// go from here (no sender for its peer yet); the Raft thread sends it.
pub type Outbox = Box<dyn FnMut(Message) -> Result<(), Message> + Send>;

/// What the WAL thread reports to the Raft thread.
#[derive(Debug)]
pub enum WalEvent {
    /// Every write through `seq` is durable, and its held messages are
    /// queued for their peers, except `unsent`, which the Raft thread sends.
    Durable { seq: u64, unsent: Vec<Message> },
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
    /// Every held message comes back in `WalEvent::Durable`.
    pub fn start<S: Storage + 'static>(
        storage: S,
        events: Sender<WalEvent>,
    ) -> std::io::Result<WalWriter> {
        WalWriter::start_with(storage, events, Arc::default(), None)
    }

    /// `start`, counting group commits and their durations in `metrics`,
    /// and sending held messages through `outbox` if there is one.
    pub fn start_with<S: Storage + 'static>(
        storage: S,
        events: Sender<WalEvent>,
        metrics: Arc<Metrics>,
        outbox: Option<Outbox>,
    ) -> std::io::Result<WalWriter> {
        let (tx, rx) = bounded(WAL_QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || run(storage, rx, events, &metrics, outbox))?;
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
    fn submit(&mut self, write: LogWrite) -> Result<Submitted, StorageError> {
        let sender = self.writes.as_ref().expect("submit after finish");
        // Fails only if the WAL thread is gone, which it is only after it
        // reported a failure: the Raft thread is stopping already.
        let _ = sender.send(write);
        Ok(Submitted::Queued)
    }
}

fn run<S: Storage>(
    mut storage: S,
    writes: Receiver<LogWrite>,
    events: Sender<WalEvent>,
    metrics: &Metrics,
    mut outbox: Option<Outbox>,
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
        let started = Instant::now();
        let mut entries = 0;
        let mut result = Ok(());
        let mut held = Vec::new();
        for mut write in merge(group) {
            entries += write.entries.len();
            result = write.apply_to(&mut storage);
            if result.is_err() {
                break;
            }
            held.append(&mut write.held);
        }
        let elapsed_us = started.elapsed().as_micros() as u64;
        match result {
            Ok(()) => {
                metrics.wal_synced(merged, entries, elapsed_us);
                let unsent = match outbox.as_mut() {
                    Some(send) => held.into_iter().filter_map(|m| send(m).err()).collect(),
                    None => held,
                };
                if events.send(WalEvent::Durable { seq, unsent }).is_err() {
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

/// Folds consecutive writes into as few as have the same effect: one, with
/// the last hard state and the entries as they stand after every
/// replacement, unless a write resets the log (it starts a new one) or
/// compacts it (it ends one).
pub fn merge(group: Vec<LogWrite>) -> Vec<LogWrite> {
    let mut out: Vec<LogWrite> = Vec::new();
    for write in group {
        let last = out
            .last_mut()
            .filter(|last| last.compact_through.is_none() && write.reset.is_none());
        let Some(last) = last else {
            out.push(write);
            continue;
        };
        last.seq = write.seq;
        last.held.extend(write.held);
        if write.hard_state.is_some() {
            last.hard_state = write.hard_state;
        }
        last.compact_through = write.compact_through;
        let Some(first) = write.entries.first() else {
            continue;
        };
        match last.entries.first() {
            // A later write replaces entries from its first index on.
            Some(start) if first.index >= start.index => {
                let keep = (first.index.0 - start.index.0) as usize;
                last.entries.truncate(keep);
            }
            _ => last.entries.clear(),
        }
        last.entries.extend(write.entries);
    }
    out
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
            reset: None,
            hard_state: hs_term.map(|t| HardState {
                term: Term(t),
                ..HardState::default()
            }),
            entries,
            compact_through: None,
            held: Vec::new(),
        }
    }

    fn shape(entries: &[Entry]) -> Vec<(u64, u64)> {
        entries.iter().map(|e| (e.index.0, e.term.0)).collect()
    }

    #[test]
    fn merged_writes_keep_the_last_hard_state_and_every_entry() {
        let merged = merge(vec![
            write(1, Some(1), entries(1, &[1, 1])),
            write(2, None, entries(3, &[1])),
            write(3, Some(2), Vec::new()),
        ]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].seq, 3);
        assert_eq!(merged[0].hard_state.map(|h| h.term), Some(Term(2)));
        assert_eq!(shape(&merged[0].entries), vec![(1, 1), (2, 1), (3, 1)]);
    }

    #[test]
    fn a_later_conflict_replaces_the_suffix_as_storage_would() {
        let merged = merge(vec![
            write(1, None, entries(5, &[1, 1, 1])),
            write(2, None, entries(6, &[2])),
        ]);
        assert_eq!(shape(&merged[0].entries), vec![(5, 1), (6, 2)]);
        let merged = merge(vec![
            write(1, None, entries(5, &[1, 1])),
            write(2, None, entries(3, &[2])),
        ]);
        assert_eq!(shape(&merged[0].entries), vec![(3, 2)]);
    }

    #[test]
    fn a_reset_starts_a_write_and_a_compaction_ends_one() {
        let meta = crate::core::SnapshotMeta {
            last_index: LogIndex(9),
            last_term: Term(2),
            config: crate::core::ClusterConfig::new(vec![crate::core::NodeId(0)]),
        };
        let mut compacting = write(2, None, Vec::new());
        compacting.compact_through = Some(LogIndex(4));
        let mut reset = write(4, Some(2), entries(10, &[2]));
        reset.reset = Some(meta);
        let merged = merge(vec![
            write(1, None, entries(5, &[1])),
            compacting,
            write(3, None, entries(6, &[1])),
            reset,
            write(5, None, entries(11, &[2])),
        ]);
        let shapes: Vec<_> = merged
            .iter()
            .map(|w| {
                (
                    w.seq,
                    w.reset.is_some(),
                    w.compact_through,
                    shape(&w.entries),
                )
            })
            .collect();
        assert_eq!(
            shapes,
            vec![
                (2, false, Some(LogIndex(4)), vec![(5, 1)]),
                (3, false, None, vec![(6, 1)]),
                (5, true, None, vec![(10, 2), (11, 2)]),
            ]
        );
    }

    fn grant(to: u64) -> Message {
        Message {
            from: crate::core::NodeId(0),
            to: crate::core::NodeId(to),
            term: Term(1),
            body: crate::core::MessageBody::VoteReply { granted: true },
        }
    }

    #[test]
    fn merged_writes_keep_every_held_message_in_order() {
        let mut first = write(1, Some(1), entries(1, &[1]));
        first.held = vec![grant(1)];
        let mut second = write(2, None, Vec::new());
        second.held = vec![grant(2), grant(3)];
        let merged = merge(vec![first, second]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].held, vec![grant(1), grant(2), grant(3)]);
    }

    /// What happened, in order, across the storage and the outbox.
    type Journal = Arc<parking_lot::Mutex<Vec<String>>>;

    /// A storage that records its fsyncs in the journal, or fails them.
    struct Journaled {
        journal: Journal,
        fail: bool,
    }

    impl Storage for Journaled {
        fn persist(
            &mut self,
            _hard_state: Option<&HardState>,
            entries: &[Entry],
        ) -> Result<(), StorageError> {
            if self.fail {
                return Err(StorageError::Io {
                    path: "wal".into(),
                    op: "fsync",
                    source: std::io::Error::other("disk gone"),
                });
            }
            self.journal.lock().push(format!("fsync {}", entries.len()));
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StorageError> {
            Ok(())
        }
        fn reset_to_snapshot(
            &mut self,
            _meta: &crate::core::SnapshotMeta,
            _hard_state: &HardState,
        ) -> Result<(), StorageError> {
            unreachable!("not used here")
        }
        fn compact(&mut self, _index: LogIndex) -> Result<(), StorageError> {
            Ok(())
        }
    }

    /// A WAL thread whose outbox has a sender for node 1 only.
    fn journaled_writer(fail: bool) -> (WalWriter, Receiver<WalEvent>, Journal) {
        let journal = Journal::default();
        let storage = Journaled {
            journal: journal.clone(),
            fail,
        };
        let sent = journal.clone();
        #[allow(clippy::result_large_err)] // As `TransportHandle::send`.
        let outbox: Outbox = Box::new(move |msg: Message| {
            if msg.to != crate::core::NodeId(1) {
                return Err(msg);
            }
            sent.lock().push(format!("send to {}", msg.to));
            Ok(())
        });
        let (tx, rx) = bounded(16);
        let writer = WalWriter::start_with(storage, tx, Arc::default(), Some(outbox)).unwrap();
        (writer, rx, journal)
    }

    #[test]
    fn held_messages_leave_from_the_wal_thread_after_the_fsync() {
        let (mut writer, events, journal) = journaled_writer(false);
        let mut first = write(1, Some(1), entries(1, &[1, 1]));
        first.held = vec![grant(1), grant(2)];
        writer.submit(first).unwrap();
        let timeout = std::time::Duration::from_secs(10);
        match events.recv_timeout(timeout).expect("a report") {
            WalEvent::Durable { seq, unsent } => {
                assert_eq!(seq, 1);
                // No sender for node 2 here: the Raft thread sends it.
                assert_eq!(unsent, vec![grant(2)]);
            }
            WalEvent::Failed(e) => panic!("{e}"),
        }
        assert_eq!(*journal.lock(), vec!["fsync 2", "send to 1"]);
    }

    #[test]
    fn a_failed_write_releases_none_of_its_messages() {
        let (mut writer, events, journal) = journaled_writer(true);
        let mut first = write(1, Some(1), entries(1, &[1]));
        first.held = vec![grant(1)];
        writer.submit(first).unwrap();
        let timeout = std::time::Duration::from_secs(10);
        match events.recv_timeout(timeout).expect("a report") {
            WalEvent::Failed(_) => {}
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(journal.lock().is_empty(), "{:?}", journal.lock());
    }
}
