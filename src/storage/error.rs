//! The storage layer's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::core::types::LogIndex;

/// What went wrong with stable storage. Every variant names the file or
/// directory involved, so that the one-line message an operator sees says
/// where to look.
#[derive(Debug)]
pub enum StorageError {
    /// An operating-system call failed. `op` says what we were doing
    /// ("create data dir", "fsync", ...).
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// A record before the end of the log is damaged or does not make sense.
    /// Never repaired silently: the entries after it may be acknowledged
    /// ones, and dropping them could lose committed data.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Another process holds the data dir's lock.
    Locked { dir: PathBuf },
    /// A single `persist` call would make a record larger than the log
    /// accepts; the caller must bound its batches.
    RecordTooLarge { bytes: usize, max: usize },
    /// An earlier write or fsync failed. After a failed fsync the kernel may
    /// have dropped dirty pages, so nothing written since can be trusted
    /// (PostgreSQL's "fsyncgate"): the node must restart and recover.
    Poisoned { path: PathBuf },
    /// No snapshot file for this index is (still) kept.
    SnapshotMissing { index: crate::core::LogIndex },
    /// A snapshot file (or one being received) is damaged or is not the
    /// snapshot it claims to be.
    SnapshotCorrupt { path: PathBuf, reason: String },
    /// A snapshot chunk arrived at another offset than the end of what was
    /// received so far.
    SnapshotChunk {
        path: PathBuf,
        expected_offset: u64,
        offset: u64,
    },
    /// A snapshot's payload (writer) or file (receiver) is not the size
    /// announced when it was created.
    SnapshotSize {
        path: PathBuf,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    /// The WAL holds only the log after `wal_start_index`, and no valid
    /// snapshot covers the entries up to it: starting would silently lose
    /// them, so the node refuses.
    MissingSnapshot {
        segment: PathBuf,
        wal_start_index: LogIndex,
        snapshot_index: Option<LogIndex>,
    },
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn snapshot_corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StorageError::SnapshotCorrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, op, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            StorageError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt WAL record in {} at offset {offset}: {reason}",
                path.display()
            ),
            StorageError::Locked { dir } => {
                write!(f, "data dir {} is in use by another process", dir.display())
            }
            StorageError::RecordTooLarge { bytes, max } => write!(
                f,
                "WAL record of {bytes} bytes exceeds the maximum of {max} bytes"
            ),
            StorageError::Poisoned { path } => write!(
                f,
                "WAL {} is unusable after an earlier write or fsync failure; restart to recover",
                path.display()
            ),
            StorageError::SnapshotMissing { index } => {
                write!(f, "no snapshot file for index {index} is kept")
            }
            StorageError::SnapshotCorrupt { path, reason } => {
                write!(f, "corrupt snapshot file {}: {reason}", path.display())
            }
            StorageError::SnapshotChunk {
                path,
                expected_offset,
                offset,
            } => write!(
                f,
                "snapshot {}: chunk at offset {offset}, expected one at offset {expected_offset}",
                path.display()
            ),
            StorageError::SnapshotSize {
                path,
                expected_bytes,
                actual_bytes,
            } => write!(
                f,
                "snapshot {}: {actual_bytes} bytes written, {expected_bytes} bytes announced",
                path.display()
            ),
            StorageError::MissingSnapshot {
                segment,
                wal_start_index,
                snapshot_index,
            } => {
                let newest = match snapshot_index {
                    Some(index) => format!("the newest valid snapshot ends at index {index}"),
                    None => "there is no valid snapshot".to_string(),
                };
                write!(
                    f,
                    "the WAL from segment {} continues after index {wal_start_index} but \
                     {newest} (see the snapshot errors logged before): refusing to start \
                     without the entries up to index {wal_start_index}",
                    segment.display()
                )
            }
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Io { source, .. } => Some(source),
            StorageError::Corrupt { .. }
            | StorageError::Locked { .. }
            | StorageError::RecordTooLarge { .. }
            | StorageError::Poisoned { .. }
            | StorageError::SnapshotMissing { .. }
            | StorageError::SnapshotCorrupt { .. }
            | StorageError::SnapshotChunk { .. }
            | StorageError::SnapshotSize { .. }
            | StorageError::MissingSnapshot { .. } => None,
        }
    }
}
