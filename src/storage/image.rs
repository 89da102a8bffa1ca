//! [`WalImage`]: one WAL segment in memory, written with the real record
//! encoding and recovered with the real replay code. The simulator's disk:
//! bytes sit in a "page cache" until an fsync, a crash keeps any prefix of
//! them, and what a restart finds is decided by the same recovery that runs
//! on a real data dir.

use super::StorageError;
use super::WalOptions;
use super::record::{
    RECORD_BYTES_MAX, Record, SegmentHeader, WAL_MAGIC, WAL_VERSION, encode_frame, persist_records,
};
use super::recovery::{Reconciled, reconcile, recover_segment_bytes};
use super::wal::reset_record;
use crate::core::types::{Entry, HardState, LogIndex, SnapshotMeta};
use std::path::{Path, PathBuf};

/// The name failures report for the in-memory segment.
const IMAGE_PATH: &str = "<simulated>/wal-0000000000000001.log";

#[derive(Clone, Debug)]
pub struct WalImage {
    /// What an fsync made durable.
    durable: Vec<u8>,
    /// Written, not yet fsynced.
    cached: Vec<u8>,
    frame: Vec<u8>,
    /// Largest record written, as `WalOptions::record_bytes_max`.
    record_bytes_max: usize,
    /// The commit index of the last hard state written.
    commit: LogIndex,
}

impl Default for WalImage {
    fn default() -> WalImage {
        WalImage::new()
    }
}

impl WalImage {
    /// A fresh segment: only its header, durable.
    pub fn new() -> WalImage {
        let header = Record::Header(SegmentHeader {
            magic: WAL_MAGIC,
            version: WAL_VERSION,
            seq: 1,
            hard_state: HardState::default(),
            last_index: LogIndex(0),
        });
        let mut durable = Vec::new();
        encode_frame(&header, &mut durable, RECORD_BYTES_MAX).expect("a header is small");
        WalImage {
            durable,
            cached: Vec::new(),
            frame: Vec::new(),
            record_bytes_max: WalOptions::default().record_bytes_max,
            commit: LogIndex(0),
        }
    }

    /// Appends the records of one persist, split as `FileStorage::persist`
    /// splits them, to the cache.
    pub fn write(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        let max = self.record_bytes_max;
        let records = persist_records(hard_state, self.commit, entries, max)
            .map_err(|bytes| StorageError::RecordTooLarge { bytes, max })?;
        for record in &records {
            encode_frame(record, &mut self.frame, max).expect("persist_records bounds each record");
            self.cached.extend_from_slice(&self.frame);
        }
        if let Some(hard_state) = hard_state {
            self.commit = hard_state.commit;
        }
        Ok(())
    }

    /// Appends the record that replaces the log by the snapshot `meta`
    /// (`Storage::reset_to_snapshot`) to the cache.
    pub fn reset_to_snapshot(&mut self, meta: &SnapshotMeta, hard_state: &HardState) {
        let record = reset_record(meta, hard_state);
        encode_frame(&record, &mut self.frame, RECORD_BYTES_MAX).expect("a reset is small");
        self.cached.extend_from_slice(&self.frame);
        self.commit = meta.last_index;
    }

    /// Bytes written and not yet durable.
    pub fn cached_bytes(&self) -> usize {
        self.cached.len()
    }

    /// Makes the first `bytes` of the cache durable (an fsync that started
    /// when that much had been written).
    pub fn fsync(&mut self, bytes: usize) {
        assert!(bytes <= self.cached.len(), "fsync beyond what was written");
        self.durable.extend(self.cached.drain(..bytes));
    }

    /// A crash: the first `keep` bytes of the cache reached the disk anyway
    /// (possibly cutting a record in two), the rest is gone.
    pub fn crash(&mut self, keep: usize) {
        let keep = keep.min(self.cached.len());
        self.durable.extend_from_slice(&self.cached[..keep]);
        self.cached.clear();
    }

    /// Recovers as a restart without a snapshot would: `recover_after(None)`.
    pub fn recover(&mut self) -> Result<(HardState, Vec<Entry>), StorageError> {
        self.recover_after(None)
    }

    /// Recovers as `FileStorage::open_with_snapshot` would with `snapshot`
    /// as the newest valid snapshot file: cuts a torn tail off the image,
    /// and returns the hard state (commit at least the snapshot's index)
    /// and the entries after the snapshot. If the log does not hold the
    /// snapshot's last entry, writes the `Reset` record durably first, as a
    /// real restart does.
    pub fn recover_after(
        &mut self,
        snapshot: Option<&SnapshotMeta>,
    ) -> Result<(HardState, Vec<Entry>), StorageError> {
        assert!(self.cached.is_empty(), "recover after crash()");
        let (recovered, good_bytes) = recover_segment_bytes(Path::new(IMAGE_PATH), &self.durable)?;
        self.durable.truncate(good_bytes);
        self.commit = recovered.hard_state.commit;
        let reconciled =
            reconcile(&recovered, snapshot).map_err(|gap| StorageError::MissingSnapshot {
                segment: PathBuf::from(IMAGE_PATH),
                wal_start_index: gap.wal_start_index,
                snapshot_index: snapshot.map(|m| m.last_index),
            })?;
        match reconciled {
            Reconciled::Fits {
                hard_state,
                entries,
            } => Ok((hard_state, entries)),
            Reconciled::NeedsReset { hard_state } => {
                let meta = snapshot.expect("only a snapshot can need a reset");
                self.reset_to_snapshot(meta, &hard_state);
                self.fsync(self.cached.len());
                Ok((hard_state, Vec::new()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{EntryPayload, NodeId, Term};

    fn entries(from: u64, n: u64) -> Vec<Entry> {
        (from..from + n)
            .map(|i| Entry {
                term: Term(1),
                index: LogIndex(i),
                payload: EntryPayload::Command(vec![i as u8; 100].into()),
            })
            .collect()
    }

    #[test]
    fn fsynced_records_survive_and_cached_ones_do_not() {
        let mut image = WalImage::new();
        let hs = HardState {
            term: Term(1),
            vote: Some(NodeId(0)),
            commit: LogIndex(0),
        };
        image.write(Some(&hs), &entries(1, 2)).unwrap();
        image.fsync(image.cached_bytes());
        image.write(None, &entries(3, 2)).unwrap();
        image.crash(0);
        let (recovered_hs, log) = image.recover().unwrap();
        assert_eq!(recovered_hs, hs);
        assert_eq!(log, entries(1, 2));
    }

    /// The simulator's disk splits a large write as the real WAL does, so a
    /// crash in the middle keeps a prefix of whole records: term and vote
    /// from the first, the commit index only with the last.
    #[test]
    fn a_crash_inside_a_split_write_keeps_whole_records_only() {
        let hs = HardState {
            term: Term(2),
            vote: Some(NodeId(1)),
            commit: LogIndex(10),
        };
        let mut probe = WalImage::new();
        probe.record_bytes_max = 400;
        probe.write(Some(&hs), &entries(1, 10)).unwrap();
        let written = probe.cached_bytes();
        let mut prefixes = std::collections::BTreeSet::new();
        for keep in 0..=written {
            let mut image = WalImage::new();
            image.record_bytes_max = 400;
            image.write(Some(&hs), &entries(1, 10)).unwrap();
            image.crash(keep);
            let (recovered, log) = image.recover().unwrap();
            assert_eq!(log, entries(1, log.len() as u64), "kept {keep}");
            let want = match log.len() {
                0 => HardState::default(),
                10 => hs,
                _ => HardState {
                    commit: LogIndex(0),
                    ..hs
                },
            };
            assert_eq!(recovered, want, "kept {keep} of {written}");
            prefixes.insert(log.len());
        }
        assert!(prefixes.len() >= 4, "whole-record prefixes: {prefixes:?}");
    }

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_index: LogIndex(index),
            last_term: Term(term),
            config: crate::core::types::ClusterConfig::new(vec![NodeId(0)]),
        }
    }

    #[test]
    fn recover_after_a_snapshot_returns_only_the_entries_after_it() {
        let mut image = WalImage::new();
        let hs = HardState {
            term: Term(1),
            vote: None,
            commit: LogIndex(2),
        };
        image.write(Some(&hs), &entries(1, 5)).unwrap();
        image.fsync(image.cached_bytes());
        let (recovered_hs, log) = image.recover_after(Some(&meta(3, 1))).unwrap();
        assert_eq!(recovered_hs.commit, LogIndex(3));
        assert_eq!(log, entries(4, 2));
    }

    #[test]
    fn a_reset_survives_and_a_torn_reset_is_cut_off() {
        let hs = HardState {
            term: Term(3),
            vote: Some(NodeId(0)),
            commit: LogIndex(1),
        };
        let mut image = WalImage::new();
        image.write(Some(&hs), &entries(1, 3)).unwrap();
        image.fsync(image.cached_bytes());
        image.reset_to_snapshot(&meta(50, 2), &hs);
        let reset_bytes = image.cached_bytes();
        for keep in 0..reset_bytes {
            let mut torn = image.clone();
            torn.crash(keep);
            let (recovered_hs, log) = torn.recover_after(None).unwrap();
            assert_eq!((recovered_hs, log), (hs, entries(1, 3)), "kept {keep}");
        }
        image.fsync(reset_bytes);
        image.write(None, &entries(51, 2)).unwrap();
        image.fsync(image.cached_bytes());
        let (recovered_hs, log) = image.recover_after(Some(&meta(50, 2))).unwrap();
        assert_eq!(recovered_hs.commit, LogIndex(50));
        assert_eq!(log, entries(51, 2));
        let err = image.recover_after(Some(&meta(40, 2))).unwrap_err();
        assert!(matches!(err, StorageError::MissingSnapshot { .. }), "{err}");
    }

    #[test]
    fn a_snapshot_the_log_does_not_hold_is_made_durable_with_a_reset() {
        let mut image = WalImage::new();
        image.write(None, &entries(1, 3)).unwrap();
        image.fsync(image.cached_bytes());
        let (hs, log) = image.recover_after(Some(&meta(10, 4))).unwrap();
        assert_eq!(hs.commit, LogIndex(10));
        assert!(log.is_empty());
        image.write(None, &entries(11, 1)).unwrap();
        image.fsync(image.cached_bytes());
        let (_, log) = image.recover_after(Some(&meta(10, 4))).unwrap();
        assert_eq!(log, entries(11, 1));
    }

    #[test]
    fn a_torn_record_is_cut_at_every_length() {
        let mut probe = WalImage::new();
        probe.write(None, &entries(3, 3)).unwrap();
        let record_bytes = probe.cached_bytes();
        for keep in 0..=record_bytes {
            let mut image = WalImage::new();
            image.write(None, &entries(1, 2)).unwrap();
            image.fsync(image.cached_bytes());
            image.write(None, &entries(3, 3)).unwrap();
            image.crash(keep);
            let (_, log) = image.recover().unwrap();
            let expected = if keep == record_bytes { 5 } else { 2 };
            assert_eq!(log.len(), expected, "kept {keep} of {record_bytes} bytes");
            // Appending after the cut must replay cleanly.
            image
                .write(None, &entries(log.len() as u64 + 1, 1))
                .unwrap();
            image.fsync(image.cached_bytes());
            assert_eq!(image.recover().unwrap().1.len(), expected + 1);
        }
    }
}
