//! An in-memory [`Storage`], for tests and benchmarks: the same contract as
//! the WAL, minus durability.

use super::{Storage, StorageError, check_persist};
use crate::core::types::{ClusterConfig, Entry, HardState, LogIndex, RestoredState};

#[derive(Clone, Debug)]
pub struct MemStorage {
    config: ClusterConfig,
    hard_state: HardState,
    /// The index before `entries[0]` (a reset to a snapshot moves it).
    base: LogIndex,
    entries: Vec<Entry>,
}

impl MemStorage {
    /// A node that has never run: empty log, `config` as the initial
    /// configuration.
    pub fn new(config: ClusterConfig) -> (MemStorage, RestoredState) {
        let restored = RestoredState::fresh(config.clone());
        let storage = MemStorage {
            config,
            hard_state: HardState::default(),
            base: LogIndex(0),
            entries: Vec::new(),
        };
        (storage, restored)
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Stored entries, contiguous from index 1.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.base.0 + self.entries.len() as u64)
    }

    /// What a restart would recover: lets tests simulate a crash.
    pub fn restored(&self) -> RestoredState {
        RestoredState {
            hard_state: self.hard_state,
            entries: self.entries.clone(),
            ..RestoredState::fresh(self.config.clone())
        }
    }
}

impl Storage for MemStorage {
    fn persist(
        &mut self,
        hard_state: Option<&HardState>,
        entries: &[Entry],
    ) -> Result<(), StorageError> {
        check_persist(
            self.last_index(),
            self.hard_state.commit,
            hard_state,
            entries,
        );
        if let Some(first) = entries.first() {
            // Index i lives at position i - 1 - base.
            self.entries
                .truncate((first.index.0 - 1 - self.base.0) as usize);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = *hs;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn reset_to_snapshot(
        &mut self,
        meta: &crate::core::SnapshotMeta,
        hard_state: &HardState,
    ) -> Result<(), StorageError> {
        self.entries.clear();
        self.base = meta.last_index;
        self.hard_state = *hard_state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{EntryPayload, NodeId, Term};

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Command(vec![index as u8]),
        }
    }

    fn config() -> ClusterConfig {
        ClusterConfig::new(vec![NodeId(0), NodeId(1), NodeId(2)])
    }

    #[test]
    fn fresh_storage_restores_the_empty_prefix() {
        let (storage, restored) = MemStorage::new(config());
        assert_eq!(restored, RestoredState::fresh(config()));
        assert_eq!(storage.restored(), restored);
    }

    #[test]
    fn conflicting_entries_replace_the_suffix() {
        let (mut storage, _) = MemStorage::new(config());
        let first: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
        storage.persist(None, &first).unwrap();
        storage.persist(None, &[entry(3, 2)]).unwrap();
        let terms: Vec<u64> = storage.entries().iter().map(|e| e.term.0).collect();
        assert_eq!(terms, vec![1, 1, 2]);
    }

    #[test]
    fn hard_state_is_kept_with_the_entries() {
        let (mut storage, _) = MemStorage::new(config());
        let hs = HardState {
            term: Term(3),
            vote: Some(NodeId(1)),
            commit: LogIndex(1),
        };
        storage.persist(Some(&hs), &[entry(1, 3)]).unwrap();
        assert_eq!(storage.restored().hard_state, hs);
    }

    #[test]
    #[should_panic(expected = "gap in log")]
    fn a_gap_is_a_caller_bug() {
        let (mut storage, _) = MemStorage::new(config());
        let _ = storage.persist(None, &[entry(2, 1)]);
    }

    #[test]
    #[should_panic(expected = "overwriting committed entry")]
    fn replacing_a_committed_entry_is_a_caller_bug() {
        let (mut storage, _) = MemStorage::new(config());
        let hs = HardState {
            commit: LogIndex(2),
            ..HardState::default()
        };
        storage
            .persist(Some(&hs), &[entry(1, 1), entry(2, 1)])
            .unwrap();
        let _ = storage.persist(None, &[entry(2, 2)]);
    }
}
