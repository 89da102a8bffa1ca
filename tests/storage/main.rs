//! The WAL's contract, end to end through the file system: what is persisted
//! comes back after a reopen; a torn tail is cut off; damage before the end
//! is reported with its file and offset. With snapshots: restart = newest
//! valid snapshot + WAL tail, compaction deletes only what a snapshot
//! covers, and a WAL that needs a missing snapshot refuses to start.
//!
//! `wal.rs`: records, segments, recovery and corruption; `snapshots.rs`:
//! snapshot files, restart from them, and compaction.

mod snapshots;
mod wal;

use proptest::prelude::*;
use sraft::core::types::{
    ClusterConfig, Entry, EntryPayload, HardState, LogIndex, NodeId, RestoredState, SnapshotMeta,
    Term,
};
use sraft::storage::{
    FileStorage, SnapshotFile, SnapshotReceiver, SnapshotWriter, Storage, StorageError, WalOptions,
    load_latest, retain_snapshots, snapshot_file_name,
};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn config() -> ClusterConfig {
    ClusterConfig::new(vec![NodeId(0), NodeId(1), NodeId(2)])
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(
            format!("command {index} of term {term}")
                .into_bytes()
                .into(),
        ),
    }
}

fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes.map(|index| entry(index, term)).collect()
}

fn hard_state(term: u64, vote: Option<u64>, commit: u64) -> HardState {
    HardState {
        term: Term(term),
        vote: vote.map(NodeId),
        commit: LogIndex(commit),
    }
}

/// No fsync: these tests check the format and recovery, not the disk. No
/// preallocation: they read where the next record starts off the file's
/// length (`preallocated` turns it on).
fn fast() -> WalOptions {
    WalOptions {
        fsync: false,
        preallocate_bytes: 0,
        ..WalOptions::default()
    }
}

/// `fast`, with segments that grow by zero-filled chunks of `chunk` bytes.
fn preallocated(chunk: u64) -> WalOptions {
    WalOptions {
        preallocate_bytes: chunk,
        ..fast()
    }
}

fn tiny_segments() -> WalOptions {
    WalOptions {
        segment_bytes_max: 1,
        ..fast()
    }
}

/// Records of at most `record_bytes_max`: a few test entries each.
fn small_records(record_bytes_max: usize) -> WalOptions {
    WalOptions {
        record_bytes_max,
        ..fast()
    }
}

fn open(dir: &Path, options: WalOptions) -> (FileStorage, RestoredState) {
    FileStorage::open(dir, config(), options).expect("open WAL")
}

fn open_err(dir: &Path) -> StorageError {
    match FileStorage::open(dir, config(), fast()) {
        Ok(_) => panic!("opening {} should fail", dir.display()),
        Err(err) => err,
    }
}

fn restored(hs: HardState, entries: Vec<Entry>) -> RestoredState {
    RestoredState {
        hard_state: hs,
        entries,
        ..RestoredState::fresh(config())
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-"))
        .collect();
    files.sort();
    files
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn assert_corrupt_at(err: StorageError, want_path: &Path, want_offset: u64) {
    match &err {
        StorageError::Corrupt { path, offset, .. } => {
            assert_eq!(path, want_path, "{err}");
            assert_eq!(*offset, want_offset, "{err}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "corrupt WAL record in {} at offset {want_offset}: ",
            want_path.display()
        )),
        "{message}"
    );
}
