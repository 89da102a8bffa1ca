//! The simulated disk: the real WAL record format in memory, what a node has
//! fsynced (and so survives a crash), and the writes still in the page cache.

use super::checker::{Checker, chain_hash};
use crate::core::{Entry, HardState, NodeId};
use crate::runtime::node::{LogWrite, LogWriter};
use crate::storage::{StorageError, WalImage};
use std::collections::VecDeque;

/// What survives a crash: the fsynced hard state and log.
#[derive(Default)]
pub(super) struct Durable {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    /// chains[i] is the chain hash of entries[..=i].
    pub chains: Vec<u64>,
}

impl Durable {
    pub fn store(&mut self, node: NodeId, entries: &[Entry], checker: &mut Checker) {
        let Some(first) = entries.first() else { return };
        let keep = (first.index.0 - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "node {node}: gap in persisted log at {}",
            first.index
        );
        self.entries.truncate(keep);
        self.chains.truncate(keep);
        for entry in entries {
            let prev = self.chains.last().copied().unwrap_or(0);
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
    fn submit(&mut self, write: LogWrite) -> Result<bool, StorageError> {
        let before = self.image.cached_bytes();
        self.image
            .write(write.hard_state.as_ref(), &write.entries)?;
        let bytes = self.image.cached_bytes() - before;
        self.unsynced.push_back((write, bytes));
        Ok(false)
    }
}
