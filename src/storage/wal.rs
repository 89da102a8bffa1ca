//! [`FileStorage`]: the write-ahead log in segment files.
//!
//! The data dir holds `LOCK`, segments `wal-<16-digit seq>.log` and snapshot
//! files (`snapshot.rs`). Each
//! `persist` call appends one record (see `record.rs`) to the newest segment
//! and fsyncs it once, however many entries it carries; a call whose entries
//! exceed `record_bytes_max` is split into several records, still with one
//! fsync. When a segment reaches `segment_bytes_max`, the next record goes
//! to a new segment that starts with the current hard state and last index.
//!
//! Once a snapshot is durable, `compact` deletes the segments wholly at or
//! below its index; replay then starts at the first segment left, from the
//! snapshot (`recovery::reconcile`).

use super::record::{
    BATCH_OVERHEAD_BYTES, RECORD_BYTES_MAX, Record, encode_frame, persist_records,
};
use super::recovery::{Reconciled, Recovered, SegmentInfo, reconcile, recover};
use super::segment::{
    ActiveSegment, create_and_lock_dir, list_segments, segment_file_name, sync_dir,
};
use super::snapshot::load_latest;
use super::{Storage, StorageError, check_persist};
use crate::core::types::{ClusterConfig, Entry, HardState, LogIndex, RestoredState, SnapshotMeta};
use crate::limits::Limits;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// A segment that has reached this size gets no more records; the next
    /// one starts a new segment. Small segments let snapshot compaction
    /// reclaim space sooner; each costs a file and a directory fsync.
    pub segment_bytes_max: u64,
    /// Turning this off gives up durability: only for benchmarks and tests.
    pub fsync: bool,
    /// Largest record payload written (limits.wal_record_bytes_max): a
    /// `persist` of more is split. At most the format's `RECORD_BYTES_MAX`.
    pub record_bytes_max: usize,
    /// Segments grow by zero-filled chunks of this many bytes ahead of their
    /// records, so that an fsync commits no metadata (segment.rs); 0: they
    /// grow by each record.
    pub preallocate_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes_max: 64 << 20,
            fsync: true,
            record_bytes_max: Limits::default().wal_record_bytes_max,
            preallocate_bytes: 1 << 20,
        }
    }
}

/// Counters since `open`, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    pub bytes_written: u64,
    pub records_written: u64,
    /// File and directory fsyncs.
    pub fsyncs: u64,
    pub segments_created: u64,
    /// By `compact`.
    pub segments_deleted: u64,
}

#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    options: WalOptions,
    /// Holds the data dir's flock until the storage is dropped.
    _lock: File,
    active: ActiveSegment,
    /// Every segment on disk, oldest first; the last one is `active`.
    segments: Vec<SegmentInfo>,
    /// A segment was created without a directory fsync (`fsync: false`).
    dir_unsynced: bool,
    hard_state: HardState,
    last_index: LogIndex,
    /// Reused across `persist` calls to encode the record.
    frame_buf: Vec<u8>,
    stats: WalStats,
    /// Set when a write or fsync failed; see `StorageError::Poisoned`.
    poisoned: bool,
}

impl FileStorage {
    /// Opens the WAL in `dir` for a caller that cannot restore a snapshot:
    /// as [`FileStorage::open_with_snapshot`], and panics if the data dir
    /// holds one (dropping it would lose the entries it replaced).
    // Kept until the runtime and the benches move to `open_with_snapshot`.
    pub fn open(
        dir: &Path,
        initial_config: ClusterConfig,
        options: WalOptions,
    ) -> Result<(FileStorage, RestoredState), StorageError> {
        let (storage, restored, payload) =
            FileStorage::open_with_snapshot(dir, initial_config, options)?;
        assert!(
            payload.is_none(),
            "data dir {} holds a snapshot at index {}: open it with open_with_snapshot",
            dir.display(),
            restored.snapshot.last_index
        );
        Ok((storage, restored))
    }

    /// Opens the WAL in `dir`, creating the dir if it is missing, and
    /// recovers what was persisted: the newest valid snapshot (its meta in
    /// `RestoredState::snapshot`, its payload returned for the state
    /// machine), then the WAL's log after it. Without a snapshot, the log
    /// starts from the empty prefix with `initial_config`. A WAL that
    /// starts after the snapshot's index (its segments before were compacted
    /// away and the snapshot they relied on is missing or damaged) is an
    /// error naming the segment: never an empty start.
    pub fn open_with_snapshot(
        dir: &Path,
        initial_config: ClusterConfig,
        options: WalOptions,
    ) -> Result<(FileStorage, RestoredState, Option<Vec<u8>>), StorageError> {
        // Validated with the limits table (`Limits::validate`).
        assert!(
            options.record_bytes_max > BATCH_OVERHEAD_BYTES
                && options.record_bytes_max <= RECORD_BYTES_MAX,
            "record_bytes_max={} outside ({BATCH_OVERHEAD_BYTES}, {RECORD_BYTES_MAX}]",
            options.record_bytes_max
        );
        let lock = create_and_lock_dir(dir)?;
        let (snapshot_meta, payload) = match load_latest(dir)? {
            Some((file, payload)) => (Some(file.meta), Some(payload)),
            None => (None, None),
        };
        let listed = list_segments(dir)?;
        let recovered = recover(dir, &listed)?;
        let reconciled = reconcile(&recovered, snapshot_meta.as_ref()).map_err(|gap| {
            StorageError::MissingSnapshot {
                segment: dir.join(segment_file_name(recovered.segments[0].seq)),
                wal_start_index: gap.wal_start_index,
                snapshot_index: snapshot_meta.as_ref().map(|m| m.last_index),
            }
        })?;
        let mut storage = FileStorage::resume(dir, options, lock, &listed, &recovered)?;
        let snapshot = match snapshot_meta {
            Some(meta) => meta,
            None => RestoredState::fresh(initial_config).snapshot,
        };
        let (hard_state, entries) = match reconciled {
            Reconciled::Fits {
                hard_state,
                entries,
            } => (hard_state, entries),
            Reconciled::NeedsReset { hard_state } => {
                log::warn!(
                    "WAL {} does not hold snapshot index {} term {}: finishing its install",
                    dir.display(),
                    snapshot.last_index,
                    snapshot.last_term
                );
                storage.reset_to_snapshot(&snapshot, &hard_state)?;
                (hard_state, Vec::new())
            }
        };
        log::info!(
            "WAL {} opened: snapshot index {}, {} entries after it, hard state {hard_state:?}, \
             {} segments",
            dir.display(),
            snapshot.last_index,
            entries.len(),
            storage.segments.len()
        );
        let restored = RestoredState {
            hard_state,
            snapshot,
            entries,
        };
        Ok((storage, restored, payload))
    }

    /// The storage after replay: appends resume at the end of the last
    /// surviving segment, or in a new one.
    fn resume(
        dir: &Path,
        options: WalOptions,
        lock: File,
        listed: &[(u64, PathBuf)],
        recovered: &Recovered,
    ) -> Result<FileStorage, StorageError> {
        let last_index = recovered.last_index();
        let mut storage = FileStorage {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            active: match &recovered.tail {
                Some(tail) => ActiveSegment::open_at(
                    tail.seq,
                    tail.path.clone(),
                    tail.bytes,
                    tail.allocated,
                    tail.batches,
                    options.preallocate_bytes,
                )?,
                // No segment survived: start the first one. Reusing the
                // number of a segment recovery removed keeps numbers dense.
                None => {
                    let seq = listed.first().map_or(1, |(seq, _)| *seq);
                    ActiveSegment::create(
                        dir,
                        seq,
                        recovered.hard_state,
                        last_index,
                        options.preallocate_bytes,
                    )?
                }
            },
            segments: recovered.segments.clone(),
            dir_unsynced: false,
            hard_state: recovered.hard_state,
            last_index,
            frame_buf: Vec::new(),
            stats: WalStats::default(),
            poisoned: false,
        };
        if recovered.tail.is_none() {
            storage.on_segment_created()?;
        }
        Ok(storage)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> WalStats {
        self.stats
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    /// Bookkeeping for a segment `ActiveSegment::create` just made: its
    /// header and its directory entry must be durable before any record in
    /// it is acknowledged, or a crash could lose the whole file.
    fn on_segment_created(&mut self) -> Result<(), StorageError> {
        self.stats.segments_created += 1;
        self.stats.bytes_written += self.active.bytes;
        self.segments.push(SegmentInfo {
            seq: self.active.seq,
            last_index_before: self.last_index,
        });
        if self.options.fsync {
            self.active.sync()?;
            sync_dir(&self.dir)?;
            self.stats.fsyncs += 2;
        } else {
            self.dir_unsynced = true;
        }
        Ok(())
    }

    /// Starts the next segment with the current hard state, so that replay
    /// can begin at any segment once the ones before it are gone (`compact`).
    fn roll_over(&mut self) -> Result<(), StorageError> {
        // The old segment's handle goes away here, so `sync` could no longer
        // reach it: make it durable now even with `fsync: false`, without
        // its preallocated zeros.
        if self.active.unsynced || self.active.allocated > self.active.bytes {
            self.active.trim()?;
            self.stats.fsyncs += 1;
        }
        let seq = self.active.seq + 1;
        self.active = ActiveSegment::create(
            &self.dir,
            seq,
            self.hard_state,
            self.last_index,
            self.options.preallocate_bytes,
        )?;
        log::debug!("WAL rolled over to {}", self.active.path.display());
        self.on_segment_created()
    }

    /// Appends the record in `frame_buf`, starting a new segment first if
    /// the active one is full. Not durable until `sync_active`.
    fn append_frame(&mut self) -> Result<(), StorageError> {
        if self.active.bytes >= self.options.segment_bytes_max && self.active.batches > 0 {
            self.roll_over()?;
        }
        self.active.append(&self.frame_buf)?;
        self.active.batches += 1;
        self.stats.bytes_written += self.frame_buf.len() as u64;
        self.stats.records_written += 1;
        Ok(())
    }

    /// With `fsync`, makes every record appended so far durable.
    fn sync_active(&mut self) -> Result<(), StorageError> {
        if self.options.fsync {
            self.active.sync()?;
            self.stats.fsyncs += 1;
        }
        Ok(())
    }

    /// Encodes and appends one record of `persist_records`, then moves the
    /// stored view (which a segment started next repeats in its header)
    /// past it.
    fn append_record(&mut self, record: &Record<'_>) -> Result<(), StorageError> {
        // `persist_records` kept the record's `size_bytes` within the limit,
        // and `size_bytes` bounds the encoding: a bigger record is a bug in
        // that bound.
        let max = self.options.record_bytes_max;
        if let Err(bytes) = encode_frame(record, &mut self.frame_buf, max) {
            panic!("WAL record of {bytes} bytes above record_bytes_max={max} after splitting");
        }
        self.append_frame()?;
        self.after_record(record);
        Ok(())
    }

    /// Moves the stored view past a record just appended.
    fn after_record(&mut self, record: &Record<'_>) {
        match record {
            Record::Header(_) => unreachable!("headers are written by ActiveSegment::create"),
            Record::Batch {
                hard_state,
                entries,
            } => {
                if let Some(last) = entries.last() {
                    self.last_index = last.index;
                }
                if let Some(hard_state) = hard_state {
                    self.hard_state = *hard_state;
                }
            }
            Record::Reset {
                hard_state,
                snapshot_index,
                snapshot_term: _,
            } => {
                self.last_index = *snapshot_index;
                self.hard_state = *hard_state;
            }
        }
    }

    fn check_not_poisoned(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned {
                path: self.active.path.clone(),
            });
        }
        Ok(())
    }
}

impl Storage for FileStorage {
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        let last_index =
            check_persist(self.last_index, self.hard_state.commit, hard_state, entries);
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        let records = persist_records(
            hard_state,
            self.hard_state.commit,
            entries,
            self.options.record_bytes_max,
        )
        .map_err(|bytes| StorageError::RecordTooLarge {
            bytes,
            max: self.options.record_bytes_max,
        })?;
        if let Err(err) = self.write_records(&records) {
            // A partial record may now sit at the end of the file; appending
            // after it would turn a torn tail into mid-log corruption.
            self.poisoned = true;
            return Err(err);
        }
        assert_eq!(self.last_index, last_index, "records written end elsewhere");
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        let result = self.sync_everything();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    fn reset_to_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        hard_state: &HardState,
    ) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        let record = reset_record(meta, hard_state);
        encode_frame(&record, &mut self.frame_buf, RECORD_BYTES_MAX)
            .expect("a reset record is a few dozen bytes");
        let result = self.append_frame().and_then(|()| self.sync_active());
        if let Err(err) = result {
            // As in `persist`: a partial record may sit at the end.
            self.poisoned = true;
            return Err(err);
        }
        self.after_record(&record);
        log::info!(
            "WAL {}: log reset to snapshot index {} term {}",
            self.dir.display(),
            meta.last_index,
            meta.last_term
        );
        Ok(())
    }

    fn compact(&mut self, snapshot_index: LogIndex) -> Result<(), StorageError> {
        self.check_not_poisoned()?;
        // Replay may start at segment k once the snapshot covers its
        // header's last index: segment i holds only indexes up to
        // segments[i + 1].last_index_before (an entry above it was truncated
        // before segment i + 1 began). The active segment is never deleted.
        let Some(keep_from) = (1..self.segments.len())
            .rev()
            .find(|&k| self.segments[k].last_index_before <= snapshot_index)
        else {
            return Ok(());
        };
        // The segments that stay must be durable before the ones they
        // replace go: with `fsync: false`, the active one may not be yet.
        if let Err(err) = self.sync_everything() {
            self.poisoned = true;
            return Err(err);
        }
        // Oldest first, forgetting each once it is gone: a crash or an
        // error in between leaves a suffix of the chain, which replays.
        for _ in 0..keep_from {
            let path = self.dir.join(segment_file_name(self.segments[0].seq));
            std::fs::remove_file(&path)
                .map_err(|e| StorageError::io(&path, "remove compacted WAL segment", e))?;
            self.segments.remove(0);
            self.stats.segments_deleted += 1;
        }
        sync_dir(&self.dir)?;
        self.stats.fsyncs += 1;
        log::debug!(
            "WAL {}: deleted {keep_from} segments at or below snapshot index {snapshot_index}",
            self.dir.display()
        );
        Ok(())
    }
}

/// The record that replaces the log by the snapshot `meta`: the commit
/// index becomes the snapshot's last index, since nothing after it is left.
pub(crate) fn reset_record(meta: &SnapshotMeta, hard_state: &HardState) -> Record<'static> {
    // Resetting to a snapshot behind the commit index would drop committed
    // entries: the core must ignore such a snapshot.
    assert!(
        hard_state.commit <= meta.last_index,
        "reset to snapshot index {} below commit={}",
        meta.last_index,
        hard_state.commit
    );
    Record::Reset {
        hard_state: HardState {
            commit: meta.last_index,
            ..*hard_state
        },
        snapshot_index: meta.last_index,
        snapshot_term: meta.last_term,
    }
}

impl FileStorage {
    /// The records of one `persist` (see `persist_records`), then one fsync.
    fn write_records(&mut self, records: &[Record<'_>]) -> Result<(), StorageError> {
        for record in records {
            self.append_record(record)?;
        }
        self.sync_active()
    }

    fn sync_everything(&mut self) -> Result<(), StorageError> {
        if self.active.unsynced {
            self.active.sync()?;
            self.stats.fsyncs += 1;
        }
        if self.dir_unsynced {
            sync_dir(&self.dir)?;
            self.stats.fsyncs += 1;
            self.dir_unsynced = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{EntryPayload, NodeId, Term};

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Command(vec![7; 32].into()),
        }
    }

    fn open_fast(dir: &Path, segment_bytes_max: u64) -> FileStorage {
        let options = WalOptions {
            segment_bytes_max,
            fsync: false,
            ..WalOptions::default()
        };
        FileStorage::open(dir, ClusterConfig::new(vec![NodeId(0)]), options)
            .unwrap()
            .0
    }

    #[test]
    fn sync_without_per_persist_fsync_flushes_the_segment_and_the_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let mut storage = open_fast(tmp.path(), u64::MAX);
        storage.persist(None, &[entry(1)]).unwrap();
        assert_eq!(storage.stats().fsyncs, 0);
        storage.sync().unwrap();
        assert_eq!(storage.stats().fsyncs, 2);
        storage.sync().unwrap();
        assert_eq!(storage.stats().fsyncs, 2, "nothing new to sync");
    }

    #[test]
    fn compaction_deletes_the_segments_a_snapshot_covers_and_keeps_the_active_one() {
        let tmp = tempfile::tempdir().unwrap();
        let mut storage = open_fast(tmp.path(), 1);
        for index in 1..=5 {
            storage.persist(None, &[entry(index)]).unwrap();
        }
        // Segments hold entries 1, 2, ..., 5; segment k starts after k - 1.
        storage.compact(LogIndex(2)).unwrap();
        assert_eq!(storage.stats().segments_deleted, 2);
        let seqs: Vec<u64> = storage.segments.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        storage.compact(LogIndex(100)).unwrap();
        assert_eq!(storage.segments.len(), 1, "the active segment stays");
        assert_eq!(storage.stats().segments_deleted, 4);
    }

    #[test]
    fn rollover_syncs_the_segment_it_leaves_even_without_fsync() {
        let tmp = tempfile::tempdir().unwrap();
        let mut storage = open_fast(tmp.path(), 1);
        storage.persist(None, &[entry(1)]).unwrap();
        storage.persist(None, &[entry(2)]).unwrap();
        let stats = storage.stats();
        assert_eq!(stats.segments_created, 2);
        assert_eq!(stats.fsyncs, 1);
        assert_eq!(storage.segments.len(), 2);
        assert_eq!(storage.segments[1].last_index_before, LogIndex(1));
    }

    #[test]
    fn an_empty_persist_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut storage = open_fast(tmp.path(), u64::MAX);
        let before = storage.stats();
        storage.persist(None, &[]).unwrap();
        assert_eq!(storage.stats(), before);
    }
}
