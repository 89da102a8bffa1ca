//! Stable storage for the Raft log and hard state (DESIGN.md section 5).
//!
//! The core hands out, in each `Ready`, a hard state and a run of entries to
//! persist; the runtime calls [`Storage::persist`] and only then lets vote
//! grants and append acknowledgements leave (Raft thesis 3.8). Two
//! implementations: [`FileStorage`], a write-ahead log of CRC-checked records
//! in segment files, and [`MemStorage`], for tests and benchmarks.

mod error;
mod image;
mod mem;
mod record;
mod recovery;
mod segment;
mod snapshot;
mod wal;

pub use error::StorageError;
pub use image::WalImage;
pub use mem::MemStorage;
pub use snapshot::{
    SnapshotFile, SnapshotReceiver, SnapshotWriter, load_latest, retain_snapshots,
    snapshot_file_bytes, snapshot_file_name,
};
pub use wal::{FileStorage, WalOptions, WalStats};

use crate::core::types::{Entry, HardState, LogIndex, SnapshotMeta};

/// The embedding API: where a node keeps what must survive a crash.
pub trait Storage: Send {
    /// Writes `hard_state` (if `Some`) and `entries`, then makes both durable
    /// with one fsync (group commit). Both land together or not at all.
    ///
    /// `entries` are contiguous. If `entries[0].index` is at or below the last
    /// stored index, that entry and everything after it are replaced (Raft
    /// conflict truncation). Panics if `entries[0].index` would leave a gap,
    /// if the entries are not contiguous, if they would overwrite a committed
    /// entry, or if the commit index would pass the last index: each is a bug
    /// in the caller, and writing it down would only turn it into corruption.
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError>;

    /// Flushes and fsyncs everything (used at orderly shutdown).
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Replaces the whole log by the snapshot `meta` (InstallSnapshot, once
    /// the snapshot file is durable): every stored entry is void, the log
    /// continues after `meta.last_index`, and the stored hard state becomes
    /// `hard_state` with its commit index set to `meta.last_index`. Durable
    /// when it returns. Panics if `hard_state.commit` is beyond
    /// `meta.last_index` (the core must not install a snapshot behind its
    /// commit index). A follower whose log already holds the snapshot's
    /// last entry with its term keeps the entries after it (Raft paper,
    /// figure 13): it calls `compact` instead, not this.
    fn reset_to_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        hard_state: &HardState,
    ) -> Result<(), StorageError>;

    /// Frees the log up to `snapshot_index`, which a durable snapshot must
    /// cover: `FileStorage` deletes every segment wholly at or below it
    /// (never the one being appended to), `MemStorage` drops the entries.
    fn compact(&mut self, snapshot_index: LogIndex) -> Result<(), StorageError>;
}

/// Asserts that a `persist` call keeps the stored log well formed, and
/// returns the last index afterwards. Shared by every implementation so that
/// they all reject the same caller bugs.
fn check_persist(
    last_index: LogIndex,
    commit: LogIndex,
    hard_state: Option<&HardState>,
    entries: &[Entry],
) -> LogIndex {
    let new_last = match entries.first() {
        None => last_index,
        Some(first) => {
            assert!(first.index.0 >= 1, "entry index 0 is reserved");
            assert!(
                first.index <= last_index.next(),
                "gap in log: first new index={} last stored index={last_index}",
                first.index
            );
            // Committed entries are never replaced (Raft paper, Leader
            // Completeness); replacing one here means the core is broken.
            assert!(
                first.index > commit,
                "overwriting committed entry: first new index={} commit={commit}",
                first.index
            );
            for pair in entries.windows(2) {
                assert!(
                    pair[1].index == pair[0].index.next(),
                    "entries not contiguous: {} then {}",
                    pair[0].index,
                    pair[1].index
                );
            }
            LogIndex(first.index.0 + entries.len() as u64 - 1)
        }
    };
    let new_commit = hard_state.map_or(commit, |hs| hs.commit);
    assert!(
        new_commit <= new_last,
        "commit={new_commit} beyond last index={new_last}"
    );
    new_last
}
