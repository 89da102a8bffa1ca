//! The storage layer's one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

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
            | StorageError::SnapshotMissing { .. } => None,
        }
    }
}
