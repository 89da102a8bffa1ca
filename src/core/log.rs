//! The in-memory Raft log: a snapshot-replaced prefix, then entries.
//! Durability is the runtime's job; this tracks what it has not yet persisted.

use super::types::{Entry, LogIndex, SnapshotMeta, Term};

pub struct RaftLog {
    /// The prefix a snapshot replaced (index 0, term 0 when none).
    snapshot: SnapshotMeta,
    /// `entries[i].index == snapshot.last_index + 1 + i`.
    entries: Vec<Entry>,
    commit: LogIndex,
    /// Last index handed to the application.
    applied: LogIndex,
    /// Entries at or below this index are known to be on stable storage.
    persisted: LogIndex,
    /// Lowest index changed since the last `take_unpersisted` (None: none).
    dirty_from: Option<LogIndex>,
    /// Sum of `Entry::size_bytes` over `entries`: what a snapshot would
    /// free (the `snapshot_log_bytes` policy).
    bytes: usize,
}

impl RaftLog {
    pub fn new(snapshot: SnapshotMeta, entries: Vec<Entry>, commit: LogIndex) -> RaftLog {
        for (offset, entry) in entries.iter().enumerate() {
            let expected = LogIndex(snapshot.last_index.0 + 1 + offset as u64);
            assert_eq!(entry.index, expected, "restored log is not contiguous");
        }
        let mut log = RaftLog {
            applied: snapshot.last_index,
            commit: snapshot.last_index,
            persisted: snapshot.last_index,
            bytes: entries.iter().map(Entry::size_bytes).sum(),
            snapshot,
            entries,
            dirty_from: None,
        };
        log.persisted = log.last_index();
        // The persisted commit is a lower bound; never past what we hold.
        log.commit = commit.max(log.snapshot.last_index).min(log.last_index());
        log
    }

    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// Bytes of the entries held (after the snapshot).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the entries a durable snapshot of our own applied state
    /// covers (log compaction, Raft paper 7).
    pub fn compact(&mut self, meta: SnapshotMeta) {
        let index = meta.last_index;
        assert!(
            index > self.snapshot.last_index && index <= self.applied,
            "compaction to {index} outside ({}, applied {}]",
            self.snapshot.last_index,
            self.applied
        );
        assert_eq!(
            self.term_at(index),
            Some(meta.last_term),
            "snapshot term at {index}"
        );
        self.drop_through(index);
        self.snapshot = meta;
    }

    /// Replaces the log's prefix with an installed snapshot (Raft paper
    /// Figure 13, steps 6-7): if the log holds the snapshot's last entry,
    /// the entries after it stay; otherwise the whole log is discarded.
    /// Returns whether entries were kept (if not, storage must void every
    /// stored entry). Everything through the snapshot is committed,
    /// applied (the state machine was restored from it) and durable.
    pub fn install_snapshot(&mut self, meta: SnapshotMeta) -> bool {
        let index = meta.last_index;
        assert!(
            index > self.commit,
            "installing snapshot {index} at or below commit {}",
            self.commit
        );
        let kept = self.term_at(index) == Some(meta.last_term);
        if kept {
            self.drop_through(index);
            self.persisted = self.persisted.max(index);
        } else {
            // A divergent tail, however long and however durable, is gone:
            // the log ends at the snapshot (found by the mutation check: a
            // follower with a persisted, uncommitted tail past the
            // snapshot's index on another branch).
            self.entries.clear();
            self.bytes = 0;
            self.dirty_from = None;
            self.persisted = index;
        }
        self.snapshot = meta;
        self.commit = index;
        self.applied = index;
        kept
    }

    /// Removes the entries through `index` (all held and <= last).
    fn drop_through(&mut self, index: LogIndex) {
        let count = (index.0 - self.snapshot.last_index.0) as usize;
        let dropped: usize = self.entries[..count].iter().map(Entry::size_bytes).sum();
        self.entries.drain(..count);
        self.bytes -= dropped;
        if self.dirty_from.is_some_and(|d| d <= index) {
            self.dirty_from = (!self.entries.is_empty()).then(|| index.next());
        }
    }

    pub fn first_index(&self) -> LogIndex {
        self.snapshot.last_index.next()
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.last_index.0 + self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.snapshot.last_term, |entry| entry.term)
    }

    pub fn commit(&self) -> LogIndex {
        self.commit
    }

    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    pub fn persisted(&self) -> LogIndex {
        self.persisted
    }

    /// The term of the entry at `index`; None when compacted away or past the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last_index {
            return Some(self.snapshot.last_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.last_index {
            return None;
        }
        self.entries
            .get((index.0 - self.snapshot.last_index.0 - 1) as usize)
    }

    /// Entries from `from`, at most `count_max` and about `bytes_max` bytes
    /// (always at least one entry when there is one).
    pub fn entries_from(&self, from: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        if from > self.last_index() || from < self.first_index() {
            return Vec::new();
        }
        let start = (from.0 - self.first_index().0) as usize;
        let mut bytes = 0;
        let mut out = Vec::new();
        for entry in self.entries[start..].iter().take(count_max) {
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > bytes_max {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// Raft paper 5.4.1: is a log ending at (last_index, last_term) at least
    /// as up to date as ours?
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Appends one entry as leader; returns its index.
    pub fn append_new(&mut self, term: Term, payload: super::EntryPayload) -> LogIndex {
        let index = self.last_index().next();
        assert!(
            term >= self.last_term(),
            "term={term} last_term={}",
            self.last_term()
        );
        let entry = Entry {
            term,
            index,
            payload,
        };
        self.bytes += entry.size_bytes();
        self.entries.push(entry);
        self.mark_dirty(index);
        index
    }

    /// The follower side of AppendEntries (Raft paper Figure 2, steps 2-4):
    /// if our log holds `prev_index` with `prev_term`, merges `entries`,
    /// truncating at the first conflict, and returns the index of the last
    /// entry the leader sent. Returns None on a mismatch.
    pub fn try_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> Option<LogIndex> {
        if self.term_at(prev_index) != Some(prev_term) {
            return None;
        }
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        for (offset, entry) in entries.iter().enumerate() {
            let expected = LogIndex(prev_index.0 + 1 + offset as u64);
            if entry.index != expected {
                log::warn!("append with non-contiguous entries at {}", entry.index);
                return None;
            }
        }
        let conflict = entries
            .iter()
            .find(|entry| self.term_at(entry.index) != Some(entry.term));
        if let Some(first_new) = conflict {
            assert!(
                first_new.index > self.commit,
                "overwriting committed index={} commit={}",
                first_new.index,
                self.commit
            );
            self.truncate_from(first_new.index);
            let start = (first_new.index.0 - prev_index.0 - 1) as usize;
            self.bytes += entries[start..]
                .iter()
                .map(Entry::size_bytes)
                .sum::<usize>();
            self.entries.extend_from_slice(&entries[start..]);
            self.mark_dirty(first_new.index);
        }
        Some(last_new)
    }

    /// The largest index <= `index` whose term is <= `term` (etcd's
    /// findConflictByTerm): every entry after it is known not to match.
    pub fn index_at_or_before_term(&self, index: LogIndex, term: Term) -> LogIndex {
        let mut probe = index.min(self.last_index());
        while probe > self.snapshot.last_index {
            match self.term_at(probe) {
                Some(t) if t <= term => return probe,
                _ => probe = probe.prev(),
            }
        }
        probe
    }

    fn truncate_from(&mut self, index: LogIndex) {
        let keep = (index.0 - self.first_index().0) as usize;
        let dropped: usize = self.entries[keep..].iter().map(Entry::size_bytes).sum();
        self.bytes -= dropped;
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(index.prev());
        self.mark_dirty(index);
    }

    fn mark_dirty(&mut self, index: LogIndex) {
        self.dirty_from = Some(self.dirty_from.map_or(index, |d| d.min(index)));
    }

    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        assert!(
            index <= self.last_index(),
            "commit={index} last={}",
            self.last_index()
        );
        if index > self.commit {
            self.commit = index;
            return true;
        }
        false
    }

    /// Entries changed since the last call; the runtime must persist them
    /// (overwriting from the first one's index) before `mark_persisted`.
    pub fn take_unpersisted(&mut self) -> Vec<Entry> {
        match self.dirty_from.take() {
            Some(from) => self.entries_from(from, usize::MAX, usize::MAX),
            None => Vec::new(),
        }
    }

    pub fn has_unpersisted(&self) -> bool {
        self.dirty_from.is_some()
    }

    pub fn mark_persisted(&mut self, index: LogIndex) {
        assert!(
            index <= self.last_index(),
            "persisted={index} last={}",
            self.last_index()
        );
        self.persisted = self.persisted.max(index);
    }

    /// The highest index that may be applied: committed by the cluster and
    /// durable here, so that what the state machine saw survives a restart
    /// in the log it is rebuilt from.
    fn appliable(&self) -> LogIndex {
        self.commit.min(self.persisted)
    }

    /// Committed, durable entries not yet handed to the application, about
    /// `bytes_max` of them at most (at least one): a follower that catches
    /// up applies its backlog over several Readys instead of holding it all
    /// at once (etcd's MaxCommittedSizePerReady).
    pub fn take_committed(&mut self, bytes_max: usize) -> Vec<Entry> {
        let to = self.appliable();
        if to <= self.applied {
            return Vec::new();
        }
        let count = (to.0 - self.applied.0) as usize;
        let out = self.entries_from(self.applied.next(), count, bytes_max);
        assert!(!out.is_empty(), "committed entries missing from the log");
        self.applied = out.last().expect("not empty").index;
        out
    }

    pub fn has_committed_to_apply(&self) -> bool {
        self.appliable() > self.applied
    }

    pub fn check_invariants(&self) {
        let (applied, commit, last) = (self.applied, self.commit, self.last_index());
        assert!(applied <= commit, "applied={applied} commit={commit}");
        assert!(commit <= last, "commit={commit} last={last}");
        assert!(
            self.persisted <= last,
            "persisted={} last={last}",
            self.persisted
        );
        assert!(
            applied <= self.persisted,
            "applied={applied} persisted={}",
            self.persisted
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{ClusterConfig, EntryPayload, NodeId};

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_index: LogIndex(0),
            last_term: Term(0),
            config: ClusterConfig::new(vec![NodeId(0)]),
        }
    }

    fn entries(terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry {
                term: Term(*t),
                index: LogIndex(i as u64 + 1),
                payload: EntryPayload::Noop,
            })
            .collect()
    }

    #[test]
    fn append_truncates_at_first_conflict_only() {
        let mut log = RaftLog::new(meta(), entries(&[1, 1, 2, 2]), LogIndex(0));
        // Leader has [1,1,3]: index 3 conflicts, index 4 must go.
        let new = entries(&[1, 1, 3]);
        assert_eq!(
            log.try_append(LogIndex(1), Term(1), &new[1..]),
            Some(LogIndex(3))
        );
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(3)));
        assert_eq!(log.take_unpersisted().len(), 1);
    }

    #[test]
    fn stale_append_does_not_truncate_a_longer_matching_log() {
        // Raft paper 5.3: "If an existing entry conflicts ... delete": entries
        // that match must not be deleted by a delayed, shorter append.
        let mut log = RaftLog::new(meta(), entries(&[1, 1, 1]), LogIndex(0));
        assert_eq!(
            log.try_append(LogIndex(0), Term(0), &entries(&[1])),
            Some(LogIndex(1))
        );
        assert_eq!(log.last_index(), LogIndex(3));
        assert!(!log.has_unpersisted());
    }

    #[test]
    fn mismatched_prev_is_rejected() {
        let mut log = RaftLog::new(meta(), entries(&[1, 2]), LogIndex(0));
        assert_eq!(log.try_append(LogIndex(2), Term(1), &[]), None);
        assert_eq!(log.try_append(LogIndex(5), Term(2), &[]), None);
    }

    #[test]
    fn conflict_search_skips_whole_terms() {
        let log = RaftLog::new(meta(), entries(&[1, 1, 2, 2, 2, 4]), LogIndex(0));
        assert_eq!(
            log.index_at_or_before_term(LogIndex(6), Term(3)),
            LogIndex(5)
        );
        assert_eq!(
            log.index_at_or_before_term(LogIndex(6), Term(1)),
            LogIndex(2)
        );
        assert_eq!(
            log.index_at_or_before_term(LogIndex(9), Term(9)),
            LogIndex(6)
        );
        assert_eq!(
            log.index_at_or_before_term(LogIndex(6), Term(0)),
            LogIndex(0)
        );
    }

    #[test]
    fn committed_entries_are_handed_out_once() {
        let mut log = RaftLog::new(meta(), entries(&[1, 1, 1]), LogIndex(0));
        log.commit_to(LogIndex(2));
        assert_eq!(log.take_committed(usize::MAX).len(), 2);
        assert!(log.take_committed(usize::MAX).is_empty());
        log.commit_to(LogIndex(3));
        assert_eq!(log.take_committed(usize::MAX)[0].index, LogIndex(3));
    }

    #[test]
    fn only_durable_committed_entries_are_applied() {
        let mut log = RaftLog::new(meta(), entries(&[1]), LogIndex(0));
        let index = log.append_new(Term(1), EntryPayload::Noop);
        log.commit_to(index);
        assert_eq!(
            log.take_committed(usize::MAX).len(),
            1,
            "index 1 was restored, so durable"
        );
        assert!(!log.has_committed_to_apply(), "index 2 is not yet durable");
        log.mark_persisted(index);
        assert_eq!(log.take_committed(usize::MAX)[0].index, index);
    }

    #[test]
    fn committed_entries_are_handed_out_in_batches_of_bounded_bytes() {
        let mut log = RaftLog::new(meta(), entries(&[1, 1, 1, 1, 1]), LogIndex(0));
        log.commit_to(LogIndex(5));
        let one = entries(&[1])[0].size_bytes();
        assert_eq!(log.take_committed(2 * one).len(), 2);
        assert_eq!(log.applied(), LogIndex(2));
        assert!(log.has_committed_to_apply());
        assert_eq!(log.take_committed(1).len(), 1, "at least one entry");
        assert_eq!(log.take_committed(usize::MAX).len(), 2);
        assert!(!log.has_committed_to_apply());
    }

    #[test]
    fn installing_over_a_longer_divergent_durable_tail_ends_the_log_at_the_snapshot() {
        // Entries 1-6 of term 1 are durable; the cluster committed another
        // branch through index 4 (term 2). The whole tail goes.
        let mut log = RaftLog::new(meta(), entries(&[1, 1, 1, 1, 1, 1]), LogIndex(1));
        assert_eq!(log.persisted(), LogIndex(6));
        let snapshot = SnapshotMeta {
            last_index: LogIndex(4),
            last_term: Term(2),
            ..meta()
        };
        assert!(!log.install_snapshot(snapshot));
        assert_eq!(log.last_index(), LogIndex(4));
        assert_eq!(log.persisted(), LogIndex(4));
        assert_eq!(log.bytes(), 0);
        log.check_invariants();
    }

    #[test]
    fn installing_over_a_matching_entry_keeps_the_entries_after_it() {
        let mut log = RaftLog::new(meta(), entries(&[1, 1, 2, 2, 2]), LogIndex(1));
        let snapshot = SnapshotMeta {
            last_index: LogIndex(3),
            last_term: Term(2),
            ..meta()
        };
        assert!(log.install_snapshot(snapshot));
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.last_index(), LogIndex(5));
        assert_eq!((log.commit(), log.applied()), (LogIndex(3), LogIndex(3)));
        assert_eq!(log.bytes(), 2 * entries(&[2])[0].size_bytes());
        log.check_invariants();
    }

    #[test]
    fn byte_limit_still_sends_one_entry() {
        let log = RaftLog::new(meta(), entries(&[1, 1, 1]), LogIndex(0));
        assert_eq!(log.entries_from(LogIndex(1), 10, 1).len(), 1);
        assert_eq!(log.entries_from(LogIndex(2), 10, usize::MAX).len(), 2);
        assert!(log.entries_from(LogIndex(4), 10, usize::MAX).is_empty());
    }
}
