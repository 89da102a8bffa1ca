//! An in-memory [`Storage`], for tests and benchmarks: the same contract as
//! the WAL, minus durability.

use super::record::Record;
use super::wal::reset_record;
use super::{Storage, StorageError, check_persist};
use crate::core::types::{ClusterConfig, Entry, HardState, LogIndex, RestoredState, SnapshotMeta};

#[derive(Clone, Debug)]
pub struct MemStorage {
    /// The log prefix compacted away or replaced (at first the empty prefix
    /// with the initial configuration).
    snapshot: SnapshotMeta,
    hard_state: HardState,
    /// Contiguous from `snapshot.last_index + 1`.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// A node that has never run: empty log, `config` as the initial
    /// configuration.
    pub fn new(config: ClusterConfig) -> (MemStorage, RestoredState) {
        let restored = RestoredState::fresh(config);
        let storage = MemStorage {
            snapshot: restored.snapshot.clone(),
            hard_state: HardState::default(),
            entries: Vec::new(),
        };
        (storage, restored)
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Stored entries, contiguous from `snapshot().last_index + 1`.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The prefix the stored entries follow.
    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.last_index.0 + self.entries.len() as u64)
    }

    /// What a restart would recover: lets tests simulate a crash. The
    /// commit index is at least the snapshot's, as `FileStorage` restores it.
    pub fn restored(&self) -> RestoredState {
        RestoredState {
            hard_state: HardState {
                commit: self.hard_state.commit.max(self.snapshot.last_index),
                ..self.hard_state
            },
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// The position of `index` in `entries`.
    fn position(&self, index: LogIndex) -> usize {
        assert!(
            index > self.snapshot.last_index,
            "index={index} at or below snapshot index={}",
            self.snapshot.last_index
        );
        (index.0 - self.snapshot.last_index.0 - 1) as usize
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
            let position = self.position(first.index);
            self.entries.truncate(position);
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
        meta: &SnapshotMeta,
        hard_state: &HardState,
    ) -> Result<(), StorageError> {
        let Record::Reset { hard_state, .. } = reset_record(meta, hard_state) else {
            unreachable!("reset_record makes a Reset");
        };
        self.snapshot = meta.clone();
        self.hard_state = hard_state;
        self.entries.clear();
        Ok(())
    }

    /// Drops the entries up to `snapshot_index`; the prefix they leave
    /// takes the term of the last one dropped and the configuration in
    /// force there (the last `Config` entry dropped, else the prefix's).
    fn compact(&mut self, snapshot_index: LogIndex) -> Result<(), StorageError> {
        if snapshot_index <= self.snapshot.last_index {
            return Ok(());
        }
        assert!(
            snapshot_index <= self.last_index(),
            "compact to index={snapshot_index} beyond last index={}",
            self.last_index()
        );
        let dropped: Vec<Entry> = self
            .entries
            .drain(..=self.position(snapshot_index))
            .collect();
        let config = dropped.iter().rev().find_map(|e| e.payload.config());
        self.snapshot = SnapshotMeta {
            last_index: snapshot_index,
            last_term: dropped.last().expect("at least one entry dropped").term,
            config: config.unwrap_or_else(|| self.snapshot.config.clone()),
        };
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
            payload: EntryPayload::Command(vec![index as u8].into()),
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
    fn compaction_keeps_the_entries_after_and_the_configuration_in_force() {
        let (mut storage, _) = MemStorage::new(config());
        let new_config = ClusterConfig::new(vec![NodeId(0), NodeId(1)]);
        let mut log: Vec<Entry> = (1..=5).map(|i| entry(i, 2)).collect();
        log[1].payload = EntryPayload::Config(new_config.clone());
        let hs = HardState {
            commit: LogIndex(4),
            ..HardState::default()
        };
        storage.persist(Some(&hs), &log).unwrap();
        storage.compact(LogIndex(3)).unwrap();
        let restored = storage.restored();
        assert_eq!(restored.snapshot.last_index, LogIndex(3));
        assert_eq!(restored.snapshot.last_term, Term(2));
        assert_eq!(restored.snapshot.config, new_config);
        assert_eq!(restored.entries, log[3..].to_vec());
        storage.persist(None, &[entry(5, 3)]).unwrap();
        assert_eq!(storage.last_index(), LogIndex(5));
    }

    #[test]
    fn a_reset_replaces_the_log_and_raises_the_commit_index() {
        let (mut storage, _) = MemStorage::new(config());
        storage.persist(None, &[entry(1, 1), entry(2, 1)]).unwrap();
        let meta = SnapshotMeta {
            last_index: LogIndex(10),
            last_term: Term(4),
            config: config(),
        };
        let hs = HardState {
            term: Term(5),
            vote: None,
            commit: LogIndex(0),
        };
        storage.reset_to_snapshot(&meta, &hs).unwrap();
        let restored = storage.restored();
        assert_eq!(restored.snapshot, meta);
        assert!(restored.entries.is_empty());
        assert_eq!(restored.hard_state.commit, LogIndex(10));
        assert_eq!(restored.hard_state.term, Term(5));
        storage.persist(None, &[entry(11, 5)]).unwrap();
        assert_eq!(storage.last_index(), LogIndex(11));
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
