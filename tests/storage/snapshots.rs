//! Snapshots and compaction (DESIGN.md 5.7): restart is the newest valid
//! snapshot plus the WAL after it; compaction deletes only what a snapshot
//! covers.

use super::*;

fn open_snap(dir: &Path, options: WalOptions) -> (FileStorage, RestoredState, Option<Vec<u8>>) {
    FileStorage::open_with_snapshot(dir, config(), options).expect("open WAL with snapshot")
}

fn open_snap_err(dir: &Path, options: WalOptions) -> StorageError {
    match FileStorage::open_with_snapshot(dir, config(), options) {
        Ok(_) => panic!("opening {} should fail", dir.display()),
        Err(err) => err,
    }
}

fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index: LogIndex(index),
        last_term: Term(term),
        config: config(),
    }
}

fn payload_at(index: u64) -> Vec<u8> {
    format!("state machine after index {index}").into_bytes()
}

fn write_snapshot(dir: &Path, index: u64, term: u64) -> SnapshotFile {
    let payload = payload_at(index);
    let mut writer = SnapshotWriter::create(dir, &meta(index, term), payload.len() as u64).unwrap();
    writer.write(&payload[..5]).unwrap();
    writer.write(&payload[5..]).unwrap();
    writer.finish().unwrap()
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Flips one byte in the middle of a file.
fn flip_middle_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

/// Entries 1..=10 of term 1 with commit 8, one segment each.
fn ten_entries_in_ten_segments(dir: &Path) -> FileStorage {
    let (mut storage, _) = open(dir, tiny_segments());
    for index in 1..=10 {
        let commit = index.min(8);
        storage
            .persist(Some(&hard_state(1, Some(0), commit)), &[entry(index, 1)])
            .unwrap();
    }
    storage
}

#[test]
fn restart_is_the_newest_snapshot_plus_the_entries_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    drop(ten_entries_in_ten_segments(tmp.path()));
    write_snapshot(tmp.path(), 3, 1);
    write_snapshot(tmp.path(), 6, 1);
    let (_storage, state, payload) = open_snap(tmp.path(), tiny_segments());
    assert_eq!(payload, Some(payload_at(6)));
    assert_eq!(state.snapshot, meta(6, 1));
    assert_eq!(state.entries, entries(7..=10, 1));
    assert_eq!(state.hard_state, hard_state(1, Some(0), 8));
}

#[test]
fn without_a_snapshot_open_with_snapshot_restores_the_empty_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let (_storage, state, payload) = open_snap(tmp.path(), fast());
    assert_eq!(state, RestoredState::fresh(config()));
    assert_eq!(payload, None);
}

#[test]
fn a_snapshot_with_a_bad_crc_falls_back_to_the_older_one_and_names_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    drop(ten_entries_in_ten_segments(tmp.path()));
    write_snapshot(tmp.path(), 3, 1);
    let newest = write_snapshot(tmp.path(), 6, 1);
    flip_middle_byte(&newest.path);
    match newest.read_payload().unwrap_err() {
        StorageError::SnapshotCorrupt { path, reason } => {
            assert_eq!(path, newest.path);
            assert!(reason.contains("crc mismatch"), "{reason}");
        }
        other => panic!("expected SnapshotCorrupt, got {other}"),
    }
    let err = newest.read_payload().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("corrupt snapshot file {}", newest.path.display())),
        "{err}"
    );
    let (_storage, state, payload) = open_snap(tmp.path(), tiny_segments());
    assert_eq!(payload, Some(payload_at(3)));
    assert_eq!(state.snapshot, meta(3, 1));
    assert_eq!(state.entries, entries(4..=10, 1));
}

#[test]
fn a_wal_that_needs_a_snapshot_refuses_to_start_when_all_snapshots_are_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let mut storage = ten_entries_in_ten_segments(tmp.path());
    let old = write_snapshot(tmp.path(), 3, 1);
    let newest = write_snapshot(tmp.path(), 6, 1);
    storage.compact(LogIndex(6)).unwrap();
    drop(storage);
    let first_left = segment_files(tmp.path()).remove(0);
    flip_middle_byte(&newest.path);

    // The older snapshot is whole but ends before the WAL starts.
    let err = open_snap_err(tmp.path(), tiny_segments());
    match &err {
        StorageError::MissingSnapshot {
            segment,
            wal_start_index,
            snapshot_index,
        } => {
            assert_eq!(segment, &first_left);
            assert_eq!(*wal_start_index, LogIndex(6));
            assert_eq!(*snapshot_index, Some(LogIndex(3)));
        }
        other => panic!("expected MissingSnapshot, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&first_left.display().to_string()),
        "{message}"
    );
    assert!(message.contains("refusing to start"), "{message}");

    // No valid snapshot at all: the same refusal, never an empty start.
    flip_middle_byte(&old.path);
    let err = open_snap_err(tmp.path(), tiny_segments());
    assert!(
        matches!(
            err,
            StorageError::MissingSnapshot {
                snapshot_index: None,
                ..
            }
        ),
        "{err}"
    );
    fs::remove_file(&old.path).unwrap();
    fs::remove_file(&newest.path).unwrap();
    let err = open_snap_err(tmp.path(), tiny_segments());
    assert!(matches!(err, StorageError::MissingSnapshot { .. }), "{err}");
}

#[test]
fn compaction_deletes_exactly_the_segments_below_the_snapshot_and_reopen_recovers_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let mut storage = ten_entries_in_ten_segments(tmp.path());
    let before = segment_files(tmp.path());
    assert_eq!(before.len(), 10);
    write_snapshot(tmp.path(), 6, 1);
    storage.compact(LogIndex(6)).unwrap();
    // Segment k holds entry k and starts after index k - 1: segments 1 to 6
    // hold only indexes up to 6.
    assert_eq!(storage.stats().segments_deleted, 6);
    assert_eq!(segment_files(tmp.path()), before[6..].to_vec());
    // Compacting again to the same index deletes nothing more.
    storage.compact(LogIndex(6)).unwrap();
    assert_eq!(storage.stats().segments_deleted, 6);
    storage.persist(None, &[entry(11, 1)]).unwrap();
    drop(storage);

    let (storage, state, payload) = open_snap(tmp.path(), tiny_segments());
    assert_eq!(payload, Some(payload_at(6)));
    assert_eq!(state.snapshot, meta(6, 1));
    assert_eq!(state.entries, entries(7..=11, 1));
    assert_eq!(state.hard_state, hard_state(1, Some(0), 8));
    drop(storage);
    // And once more, after the reopen appended to the active segment.
    assert_eq!(open_snap(tmp.path(), tiny_segments()).1, state);
}

#[test]
fn replay_from_a_compacted_segment_whose_first_batch_replaced_entries_below_its_header() {
    // Found by the model test: a segment's header records the last index
    // when it began, but its first batch may replace uncommitted entries
    // below that index.
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), tiny_segments());
        storage
            .persist(Some(&hard_state(1, None, 0)), &entries(1..=5, 1))
            .unwrap();
        storage.persist(None, &entries(6..=8, 1)).unwrap();
        // Segment 3 starts after index 8 and replaces 6..=8.
        storage
            .persist(Some(&hard_state(2, None, 8)), &entries(6..=9, 2))
            .unwrap();
        storage.persist(None, &[entry(10, 2)]).unwrap();
        write_snapshot(tmp.path(), 8, 2);
        storage.compact(LogIndex(8)).unwrap();
        assert_eq!(storage.stats().segments_deleted, 2);
    }
    let (_storage, state, _) = open_snap(tmp.path(), tiny_segments());
    assert_eq!(state.snapshot, meta(8, 2));
    assert_eq!(state.entries, entries(9..=10, 2));
    assert_eq!(state.hard_state, hard_state(2, None, 8));
}

#[test]
fn compaction_never_deletes_the_active_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path(), fast());
    storage
        .persist(Some(&hard_state(1, None, 5)), &entries(1..=5, 1))
        .unwrap();
    write_snapshot(tmp.path(), 5, 1);
    storage.compact(LogIndex(5)).unwrap();
    assert_eq!(storage.stats().segments_deleted, 0);
    drop(storage);
    let (_storage, state, _) = open_snap(tmp.path(), fast());
    assert_eq!(state.snapshot, meta(5, 1));
    assert!(state.entries.is_empty());
}

#[test]
fn a_reset_replaces_the_log_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), tiny_segments());
        storage
            .persist(Some(&hard_state(2, Some(1), 2)), &entries(1..=5, 2))
            .unwrap();
        // InstallSnapshot: the file first, then the reset.
        write_snapshot(tmp.path(), 20, 3);
        storage
            .reset_to_snapshot(&meta(20, 3), &hard_state(4, None, 2))
            .unwrap();
        assert_eq!(storage.last_index(), LogIndex(20));
        assert_eq!(storage.hard_state(), hard_state(4, None, 20));
        storage.persist(None, &entries(21..=22, 4)).unwrap();
    }
    let (storage, state, payload) = open_snap(tmp.path(), tiny_segments());
    assert_eq!(payload, Some(payload_at(20)));
    assert_eq!(state.snapshot, meta(20, 3));
    assert_eq!(state.hard_state, hard_state(4, None, 20));
    assert_eq!(state.entries, entries(21..=22, 4));
    drop(storage);

    // Without the installed snapshot, the WAL's log after the reset has
    // nothing to follow: a refusal, not a start from the void entries.
    fs::remove_file(tmp.path().join(snapshot_file_name(LogIndex(20), Term(3)))).unwrap();
    let err = open_snap_err(tmp.path(), tiny_segments());
    assert!(
        matches!(
            err,
            StorageError::MissingSnapshot {
                wal_start_index: LogIndex(20),
                snapshot_index: None,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
#[should_panic(expected = "below commit")]
fn a_reset_behind_the_commit_index_is_a_caller_bug() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path(), fast());
    let _ = storage.reset_to_snapshot(&meta(3, 1), &hard_state(1, None, 4));
}

#[test]
fn a_torn_reset_at_the_tail_is_cut_off_and_the_log_is_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, reset_offset, full) = {
        let (mut storage, _) = open(tmp.path(), fast());
        storage
            .persist(Some(&hard_state(1, None, 1)), &entries(1..=3, 1))
            .unwrap();
        let path = segment_files(tmp.path()).remove(0);
        let reset_offset = file_len(&path);
        storage
            .reset_to_snapshot(&meta(9, 2), &hard_state(2, None, 1))
            .unwrap();
        let full = fs::read(&path).unwrap();
        (path, reset_offset, full)
    };
    for cut in reset_offset as usize..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let (storage, state) = open(tmp.path(), fast());
        assert_eq!(
            state,
            restored(hard_state(1, None, 1), entries(1..=3, 1)),
            "cut at {cut}"
        );
        assert_eq!(file_len(&path), reset_offset, "torn reset cut off");
        drop(storage);
    }
}

#[test]
fn a_snapshot_file_the_wal_does_not_hold_gets_its_reset_at_open() {
    // The node crashed after the installed snapshot's file was durable and
    // before its reset record was: the WAL's entries (one in conflict with
    // the snapshot at its index) are void.
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), fast());
        storage
            .persist(Some(&hard_state(1, None, 2)), &entries(1..=8, 1))
            .unwrap();
    }
    write_snapshot(tmp.path(), 6, 2);
    let (mut storage, state, _) = open_snap(tmp.path(), fast());
    assert_eq!(state.snapshot, meta(6, 2));
    assert!(state.entries.is_empty(), "{:?}", state.entries);
    assert_eq!(state.hard_state.commit, LogIndex(6));
    storage.persist(None, &[entry(7, 2)]).unwrap();
    drop(storage);
    let (_storage, state, _) = open_snap(tmp.path(), fast());
    assert_eq!(state.entries, vec![entry(7, 2)]);
}

#[test]
fn an_unfinished_snapshot_is_removed_and_the_older_one_used() {
    let tmp = tempfile::tempdir().unwrap();
    drop(ten_entries_in_ten_segments(tmp.path()));
    write_snapshot(tmp.path(), 4, 1);
    // A crash while writing snapshot 8 and while receiving snapshot 9: the
    // drops that would remove the temp files never run.
    let mut writer = SnapshotWriter::create(tmp.path(), &meta(8, 1), 100).unwrap();
    writer.write(&[1; 50]).unwrap();
    std::mem::forget(writer);
    let mut receiver = SnapshotReceiver::create(tmp.path(), &meta(9, 1), 100).unwrap();
    receiver.write_chunk(0, &[2; 30]).unwrap();
    std::mem::forget(receiver);
    assert_eq!(
        file_names(tmp.path())
            .iter()
            .filter(|n| n.ends_with(".tmp"))
            .count(),
        2
    );
    let (_storage, state, payload) = open_snap(tmp.path(), tiny_segments());
    assert_eq!(state.snapshot, meta(4, 1));
    assert_eq!(payload, Some(payload_at(4)));
    assert_eq!(state.entries, entries(5..=10, 1));
    let names = file_names(tmp.path());
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn a_receiver_rejects_an_out_of_order_chunk_naming_both_offsets() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = write_snapshot(from.path(), 5, 1);
    let mut receiver = SnapshotReceiver::create(to.path(), &file.meta, file.file_bytes).unwrap();
    receiver
        .write_chunk(0, &file.read_chunk(0, 10).unwrap())
        .unwrap();
    let err = receiver
        .write_chunk(20, &file.read_chunk(20, 10).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::SnapshotChunk {
                expected_offset: 10,
                offset: 20,
                ..
            }
        ),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("offset 20") && message.contains("offset 10"),
        "{message}"
    );
    // The transfer goes on from the right offset.
    let rest = file.read_chunk(10, usize::MAX >> 1).unwrap();
    receiver.write_chunk(10, &rest).unwrap();
    let received = receiver.finish().unwrap();
    assert_eq!(received.read_payload().unwrap(), payload_at(5));
    assert_eq!(received.meta, meta(5, 1));
}

#[test]
fn a_receiver_rejects_a_damaged_or_incomplete_file_and_leaves_nothing_behind() {
    let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = write_snapshot(from.path(), 5, 1);
    let mut bytes = fs::read(&file.path).unwrap();
    let last = bytes.len() - 6;
    bytes[last] ^= 1;

    let mut receiver = SnapshotReceiver::create(to.path(), &file.meta, file.file_bytes).unwrap();
    let tmp_path = receiver.path().to_path_buf();
    receiver.write_chunk(0, &bytes).unwrap();
    match receiver.finish().unwrap_err() {
        StorageError::SnapshotCorrupt { path, reason } => {
            assert_eq!(path, tmp_path);
            assert!(reason.contains("crc mismatch"), "{reason}");
        }
        other => panic!("expected SnapshotCorrupt, got {other}"),
    }
    assert!(
        file_names(to.path()).is_empty(),
        "{:?}",
        file_names(to.path())
    );

    // A file that holds another snapshot than the one announced.
    let mut receiver = SnapshotReceiver::create(to.path(), &meta(5, 2), file.file_bytes).unwrap();
    receiver
        .write_chunk(0, &fs::read(&file.path).unwrap())
        .unwrap();
    let err = receiver.finish().unwrap_err();
    assert!(err.to_string().contains("announced"), "{err}");

    // Too short, and too long.
    let mut receiver = SnapshotReceiver::create(to.path(), &file.meta, file.file_bytes).unwrap();
    receiver.write_chunk(0, &bytes[..10]).unwrap();
    assert!(matches!(
        receiver.finish().unwrap_err(),
        StorageError::SnapshotSize { .. }
    ));
    let mut receiver = SnapshotReceiver::create(to.path(), &file.meta, 5).unwrap();
    assert!(matches!(
        receiver.write_chunk(0, &bytes).unwrap_err(),
        StorageError::SnapshotSize { .. }
    ));
    drop(receiver);
    assert!(
        file_names(to.path()).is_empty(),
        "{:?}",
        file_names(to.path())
    );
}

#[test]
fn load_latest_skips_a_file_whose_name_and_header_disagree() {
    let tmp = tempfile::tempdir().unwrap();
    write_snapshot(tmp.path(), 3, 1);
    let other = write_snapshot(tmp.path(), 7, 1);
    fs::rename(
        &other.path,
        tmp.path().join(snapshot_file_name(LogIndex(9), Term(1))),
    )
    .unwrap();
    let (file, payload) = load_latest(tmp.path()).unwrap().unwrap();
    assert_eq!(file.meta, meta(3, 1));
    assert_eq!(payload, payload_at(3));
}

#[test]
fn retain_keeps_the_new_snapshot_and_the_one_before() {
    let tmp = tempfile::tempdir().unwrap();
    for index in [2, 4, 6] {
        write_snapshot(tmp.path(), index, 1);
    }
    let newest = write_snapshot(tmp.path(), 8, 1);
    retain_snapshots(tmp.path(), &newest).unwrap();
    assert_eq!(
        file_names(tmp.path()),
        vec![
            snapshot_file_name(LogIndex(6), Term(1)),
            snapshot_file_name(LogIndex(8), Term(1)),
        ]
    );
}

#[test]
#[should_panic(expected = "open_with_snapshot")]
fn open_without_snapshot_support_refuses_a_dir_with_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    drop(ten_entries_in_ten_segments(tmp.path()));
    write_snapshot(tmp.path(), 3, 1);
    let _ = FileStorage::open(tmp.path(), config(), fast());
}

/// The reference for logs with snapshots: the newest snapshot written, the
/// hard state, and the entries after the snapshot.
struct SnapModel {
    snapshot: SnapshotMeta,
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl SnapModel {
    fn new() -> SnapModel {
        SnapModel {
            snapshot: meta(0, 0),
            hard_state: HardState::default(),
            entries: Vec::new(),
        }
    }

    fn base(&self) -> u64 {
        self.snapshot.last_index.0
    }

    fn last_index(&self) -> u64 {
        self.base() + self.entries.len() as u64
    }

    fn term_at(&self, index: u64) -> Term {
        if index == self.base() {
            return self.snapshot.last_term;
        }
        self.entries[(index - self.base() - 1) as usize].term
    }

    /// As `Model::next_persist`, for a log that starts after the snapshot.
    fn next_persist(&self, raw: [u64; 4]) -> (Option<HardState>, Vec<Entry>) {
        let commit = self.hard_state.commit.0;
        let first = commit + 1 + raw[0] % (self.last_index() - commit + 1);
        let count = raw[1] % 4;
        let term = self.hard_state.term.0 + raw[2] % 2;
        let new_entries: Vec<Entry> = (first..first + count).map(|i| entry(i, term)).collect();
        let new_last = if count == 0 {
            self.last_index()
        } else {
            first + count - 1
        };
        let hard_state = (!raw[3].is_multiple_of(3)).then(|| HardState {
            term: Term(term),
            vote: raw[3].is_multiple_of(2).then_some(NodeId(raw[3] % 5)),
            commit: LogIndex(commit + raw[3] % (new_last - commit + 1)),
        });
        (hard_state, new_entries)
    }

    fn apply(&mut self, hard_state: Option<HardState>, new_entries: &[Entry]) {
        if let Some(first) = new_entries.first() {
            self.entries
                .truncate((first.index.0 - self.base() - 1) as usize);
            self.entries.extend_from_slice(new_entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
    }

    /// A snapshot of the committed prefix up to some index after the
    /// current one, if the commit index has moved past it.
    fn next_snapshot(&self, raw: u64) -> Option<SnapshotMeta> {
        let commit = self.hard_state.commit.0;
        (commit > self.base()).then(|| {
            let index = self.base() + 1 + raw % (commit - self.base());
            SnapshotMeta {
                last_index: LogIndex(index),
                last_term: self.term_at(index),
                config: config(),
            }
        })
    }

    fn compact_to(&mut self, snapshot: SnapshotMeta) {
        self.entries
            .drain(..(snapshot.last_index.0 - self.base()) as usize);
        self.snapshot = snapshot;
    }

    /// An installed snapshot beyond the commit index.
    fn next_install(&self, raw: u64) -> SnapshotMeta {
        meta(
            self.hard_state.commit.0.max(self.base()) + 1 + raw % 8,
            self.hard_state.term.0 + 1,
        )
    }

    fn reset_to(&mut self, snapshot: SnapshotMeta) {
        self.entries.clear();
        self.hard_state.commit = snapshot.last_index;
        self.snapshot = snapshot;
    }

    fn restored(&self) -> RestoredState {
        RestoredState {
            hard_state: HardState {
                commit: self.hard_state.commit.max(self.snapshot.last_index),
                ..self.hard_state
            },
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Persists, snapshots with compaction, installed snapshots (reset)
    /// and reopens in any order: every reopen restores the model, and the
    /// snapshot payload is the newest snapshot's.
    #[test]
    fn restored_state_equals_the_model_after_any_persists_compactions_resets_and_reopens(
        segment_bytes_max in prop::sample::select(vec![1u64, 300, 1 << 20]),
        ops in prop::collection::vec((0u8..10, any::<[u64; 4]>()), 1..60),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let options = WalOptions { segment_bytes_max, fsync: false, ..WalOptions::default() };
        let mut model = SnapModel::new();
        let (mut storage, state, _) = open_snap(dir, options);
        prop_assert_eq!(state, model.restored());
        for (kind, raw) in ops {
            match kind {
                0 => {
                    drop(storage);
                    let (reopened, state, payload) = open_snap(dir, options);
                    prop_assert_eq!(state, model.restored());
                    let want = (model.base() > 0).then(|| payload_at(model.base()));
                    prop_assert_eq!(payload, want);
                    storage = reopened;
                }
                1 | 2 => {
                    let Some(snapshot) = model.next_snapshot(raw[0]) else { continue };
                    let file = write_snapshot(dir, snapshot.last_index.0, snapshot.last_term.0);
                    retain_snapshots(dir, &file).unwrap();
                    storage.compact(snapshot.last_index).unwrap();
                    model.compact_to(snapshot);
                }
                3 => {
                    let snapshot = model.next_install(raw[0]);
                    let file = write_snapshot(dir, snapshot.last_index.0, snapshot.last_term.0);
                    retain_snapshots(dir, &file).unwrap();
                    storage.reset_to_snapshot(&snapshot, &model.hard_state).unwrap();
                    model.reset_to(snapshot);
                }
                _ => {
                    let (hard_state, new_entries) = model.next_persist(raw);
                    storage.persist(hard_state.as_ref(), &new_entries).unwrap();
                    model.apply(hard_state, &new_entries);
                }
            }
        }
        drop(storage);
        prop_assert_eq!(open_snap(dir, options).1, model.restored());
    }
}
