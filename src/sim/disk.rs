//! The simulated disk: the real WAL record format in memory, what a node has
//! fsynced (and so survives a crash), and the writes still in the page cache.

use super::checker::{Checker, chain_hash};
use crate::core::{ClusterConfig, Entry, HardState, LogIndex, NodeId, Term};
use crate::runtime::node::{LogWrite, LogWriter, Submitted};
use crate::storage::{StorageError, WalImage};
use std::collections::VecDeque;

/// What survives a crash: the fsynced hard state and log. The log starts
/// after `base`, the index of the snapshot it was last reset to (0: none);
/// everything through `base` is committed, and covered by that snapshot.
#[derive(Default)]
pub(super) struct Durable {
    pub hard_state: HardState,
    pub base: LogIndex,
    pub base_term: Term,
    /// The chain hash of the committed log through `base`.
    pub base_chain: u64,
    /// `entries[i].index == base + 1 + i`.
    pub entries: Vec<Entry>,
    /// chains[i] is the chain hash of the log through entries[i].
    pub chains: Vec<u64>,
    /// The configuration of the snapshot at `base` (or the initial one).
    pub base_config: ClusterConfig,
    /// Indexes of the configuration entries in `entries`, ascending: what
    /// a restart would put in force, without scanning the log.
    pub config_indexes: Vec<LogIndex>,
}

impl Durable {
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.base.0 + self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.base_term, |e| e.term)
    }

    fn position(&self, index: LogIndex) -> Option<usize> {
        (index > self.base).then(|| (index.0 - self.base.0 - 1) as usize)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.entries.get(self.position(index)?)
    }

    pub fn chain_at(&self, index: LogIndex) -> Option<u64> {
        if index == self.base {
            return Some(self.base_chain);
        }
        self.chains.get(self.position(index)?).copied()
    }

    /// Holds the entry at `index` of `term`, in its log or, at or below the
    /// base, in the committed prefix its snapshot covers.
    pub fn holds(&self, index: LogIndex, term: Term) -> bool {
        index <= self.base || self.entry(index).is_some_and(|e| e.term == term)
    }

    /// The log was reset to a snapshot of the committed log through `index`.
    pub fn reset(&mut self, index: LogIndex, term: Term, chain: u64, config: ClusterConfig) {
        self.base = index;
        self.base_term = term;
        self.base_chain = chain;
        self.base_config = config;
        self.entries.clear();
        self.chains.clear();
        self.config_indexes.clear();
    }

    /// The configuration a restart from this log puts in force: the latest
    /// in the log, or the snapshot's.
    pub fn latest_config(&self) -> ClusterConfig {
        self.config_indexes
            .last()
            .and_then(|i| self.entry(*i))
            .and_then(|e| e.payload.config())
            .unwrap_or_else(|| self.base_config.clone())
    }

    pub fn store(&mut self, node: NodeId, entries: &[Entry], checker: &mut Checker) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.base,
            "node {node}: persisting index {} at or below the snapshot base {}",
            first.index,
            self.base
        );
        let keep = (first.index.0 - self.base.0 - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "node {node}: gap in persisted log at {}",
            first.index
        );
        self.entries.truncate(keep);
        self.chains.truncate(keep);
        let last_kept = LogIndex(self.base.0 + keep as u64);
        self.config_indexes.retain(|i| *i <= last_kept);
        for entry in entries {
            if entry.payload.config().is_some() {
                self.config_indexes.push(entry.index);
            }
            let prev = self.chains.last().copied().unwrap_or(self.base_chain);
            let chain = chain_hash(prev, entry);
            checker.on_stored(node, entry, chain);
            self.entries.push(entry.clone());
            self.chains.push(chain);
        }
    }
}

/// The simulated disk: each write is encoded into an in-memory WAL segment
/// with the real record format ([`WalImage`]) and sits in the page cache
/// until an fsync, which takes `SimConfig::fsync_us` plus the time to write
/// its bytes. A crash keeps any prefix of the cache (a torn write), and the
/// real WAL recovery decides what a restart finds.
#[derive(Default)]
pub struct SimDisk {
    pub(super) image: WalImage,
    /// Writes in the cache, oldest first, with their encoded length.
    pub(super) unsynced: VecDeque<(LogWrite, usize)>,
    /// The last write an fsync already covers (scheduled, not yet done).
    pub(super) fsync_through: u64,
    /// When the fsync under way ends.
    pub(super) busy_until_us: u64,
}

impl SimDisk {
    /// Encoded bytes of the writes after `seq`, which the next fsync must
    /// flush.
    pub(super) fn bytes_after(&self, seq: u64) -> u64 {
        self.unsynced
            .iter()
            .filter(|(w, _)| w.seq > seq)
            .map(|(_, bytes)| *bytes as u64)
            .sum()
    }
}

impl LogWriter for SimDisk {
    /// The write's held messages wait with it in the cache: the cluster
    /// sends them when its fsync completes, as the WAL thread does.
    fn submit(&mut self, write: LogWrite) -> Result<Submitted, StorageError> {
        let before = self.image.cached_bytes();
        if let Some(meta) = &write.reset {
            let hard_state = write.hard_state.expect("a reset moves the commit index");
            self.image.reset_to_snapshot(meta, &hard_state);
        }
        // Compaction deletes whole segment files; the image is one segment
        // and keeps everything, which recovery must (and does) tolerate.
        self.image
            .write(write.hard_state.as_ref(), &write.entries)?;
        let bytes = self.image.cached_bytes() - before;
        self.unsynced.push_back((write, bytes));
        Ok(Submitted::Queued)
    }
}
