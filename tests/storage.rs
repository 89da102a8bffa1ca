//! The WAL's contract, end to end through the file system: what is persisted
//! comes back after a reopen; a torn tail is cut off; damage before the end
//! is reported with its file and offset. With snapshots: restart = newest
//! valid snapshot + WAL tail, compaction deletes only what a snapshot
//! covers, and a WAL that needs a missing snapshot refuses to start.

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
        payload: EntryPayload::Command(format!("command {index} of term {term}").into_bytes()),
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

/// No fsync: these tests check the format and recovery, not the disk.
fn fast() -> WalOptions {
    WalOptions {
        fsync: false,
        ..WalOptions::default()
    }
}

fn tiny_segments() -> WalOptions {
    WalOptions {
        segment_bytes_max: 1,
        fsync: false,
        ..WalOptions::default()
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

#[test]
fn a_missing_dir_is_created_and_restores_the_empty_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/node-0");
    let (_storage, state) = open(&dir, WalOptions::default());
    assert_eq!(state, RestoredState::fresh(config()));
    assert_eq!(segment_files(&dir).len(), 1);
}

#[test]
fn hard_state_and_entries_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let hs = hard_state(3, Some(1), 2);
    {
        let (mut storage, _) = open(tmp.path(), WalOptions::default());
        storage
            .persist(Some(&hard_state(3, Some(1), 0)), &[])
            .unwrap();
        storage.persist(Some(&hs), &entries(1..=4, 3)).unwrap();
        storage.sync().unwrap();
    }
    let (_storage, state) = open(tmp.path(), WalOptions::default());
    assert_eq!(state, restored(hs, entries(1..=4, 3)));
}

#[test]
fn one_persist_is_one_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path(), WalOptions::default());
    let before = storage.stats();
    storage
        .persist(Some(&hard_state(1, None, 0)), &entries(1..=64, 1))
        .unwrap();
    let after = storage.stats();
    assert_eq!(after.fsyncs - before.fsyncs, 1);
    assert_eq!(after.records_written - before.records_written, 1);
}

// ---- Records above the limit (DESIGN.md 7: "no burst can make a record
// that storage refuses") --------------------------------------------------

#[test]
fn a_persist_above_the_record_limit_is_split_with_one_fsync_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let options = WalOptions {
        fsync: true,
        ..small_records(1000)
    };
    let hs = hard_state(2, Some(1), 40);
    {
        let (mut storage, _) = open(tmp.path(), options);
        let before = storage.stats();
        storage.persist(Some(&hs), &entries(1..=100, 2)).unwrap();
        let after = storage.stats();
        let records = after.records_written - before.records_written;
        assert!(
            records >= 6,
            "{records} records for ~7 KB at 1000 bytes each"
        );
        assert_eq!(after.fsyncs - before.fsyncs, 1, "still one fsync");
    }
    let (_storage, state) = open(tmp.path(), options);
    assert_eq!(state, restored(hs, entries(1..=100, 2)));
}

#[test]
fn a_split_persist_that_replaces_entries_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let options = small_records(300);
    let hs = hard_state(3, Some(2), 12);
    {
        let (mut storage, _) = open(tmp.path(), options);
        storage
            .persist(Some(&hard_state(1, Some(0), 2)), &entries(1..=10, 1))
            .unwrap();
        storage.persist(Some(&hs), &entries(3..=30, 3)).unwrap();
    }
    let mut want = entries(1..=2, 1);
    want.extend(entries(3..=30, 3));
    assert_eq!(open(tmp.path(), options).1, restored(hs, want));
}

/// A crash during a split persist keeps some prefix of its records. Each
/// prefix must be a log a node may restart from: entries end at a record
/// boundary, the new term and vote are stored with the first record (no
/// entry of a term newer than the stored term), and the new commit index
/// only with the last (never past the entries on disk).
#[test]
fn a_torn_tail_at_any_record_of_a_split_persist_is_cut_off() {
    let source = tempfile::tempdir().unwrap();
    let options = small_records(400);
    let (path, bytes, split_offset) = {
        let (mut storage, _) = open(source.path(), options);
        storage
            .persist(Some(&hard_state(1, Some(0), 2)), &entries(1..=3, 1))
            .unwrap();
        let path = segment_files(source.path()).remove(0);
        let split_offset = file_len(&path);
        let records_before = storage.stats().records_written;
        storage
            .persist(Some(&hard_state(2, Some(1), 20)), &entries(4..=20, 2))
            .unwrap();
        assert!(storage.stats().records_written - records_before >= 3);
        drop(storage);
        (path.clone(), fs::read(&path).unwrap(), split_offset)
    };
    let file_name = path.file_name().unwrap();
    let mut record_ends = BTreeSet::new();
    for cut in split_offset as usize..=bytes.len() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(file_name), &bytes[..cut]).unwrap();
        let (mut storage, state) = open(tmp.path(), options);
        let last = state.entries.len() as u64;
        let mut want = entries(1..=3, 1);
        want.extend(entries(4..=last, 2));
        let want_hs = match last {
            3 => hard_state(1, Some(0), 2),
            20 => hard_state(2, Some(1), 20),
            _ => hard_state(2, Some(1), 2),
        };
        assert_eq!(state, restored(want_hs, want), "cut={cut}");
        record_ends.insert(last);
        // The cut log goes on: the next persist lands after the good prefix.
        storage
            .persist(Some(&hard_state(3, None, 2)), &[entry(last + 1, 3)])
            .unwrap();
        drop(storage);
        let (_storage, state) = open(tmp.path(), options);
        assert_eq!(state.entries.len() as u64, last + 1, "cut={cut}");
    }
    assert!(record_ends.len() >= 4, "prefixes seen: {record_ends:?}");
    assert!(record_ends.contains(&3) && record_ends.contains(&20));
}

#[test]
fn an_entry_larger_than_a_record_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path(), small_records(150));
    let big = Entry {
        payload: EntryPayload::Command(vec![1; 200]),
        ..entry(2, 1)
    };
    let err = storage
        .persist(Some(&hard_state(1, None, 0)), &[entry(1, 1), big])
        .unwrap_err();
    assert!(
        matches!(err, StorageError::RecordTooLarge { max: 150, .. }),
        "{err}"
    );
    storage.persist(None, &[entry(1, 1)]).unwrap();
    drop(storage);
    assert_eq!(
        open(tmp.path(), fast()).1,
        restored(HardState::default(), entries(1..=1, 1))
    );
}

#[test]
fn conflicting_entries_are_replaced_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), fast());
        storage.persist(None, &entries(1..=6, 1)).unwrap();
        storage
            .persist(Some(&hard_state(2, None, 2)), &entries(4..=5, 2))
            .unwrap();
    }
    let (mut storage, state) = open(tmp.path(), fast());
    let mut want = entries(1..=3, 1);
    want.extend(entries(4..=5, 2));
    assert_eq!(state, restored(hard_state(2, None, 2), want.clone()));

    storage.persist(None, &[entry(6, 2)]).unwrap();
    drop(storage);
    want.push(entry(6, 2));
    assert_eq!(open(tmp.path(), fast()).1.entries, want);
}

#[test]
fn truncation_reaching_into_an_earlier_segment_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), tiny_segments());
        for index in 1..=10 {
            storage.persist(None, &[entry(index, 1)]).unwrap();
        }
        assert_eq!(segment_files(tmp.path()).len(), 10);
        storage
            .persist(Some(&hard_state(2, Some(0), 2)), &entries(3..=4, 2))
            .unwrap();
    }
    let (mut storage, state) = open(tmp.path(), tiny_segments());
    let mut want = entries(1..=2, 1);
    want.extend(entries(3..=4, 2));
    assert_eq!(state, restored(hard_state(2, Some(0), 2), want.clone()));

    storage.persist(None, &[entry(5, 2)]).unwrap();
    drop(storage);
    want.push(entry(5, 2));
    assert_eq!(open(tmp.path(), tiny_segments()).1.entries, want);
}

#[test]
fn recovery_replays_many_segments_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes_max: 300,
        fsync: false,
        ..WalOptions::default()
    };
    let mut hs = HardState::default();
    {
        let (mut storage, _) = open(tmp.path(), options);
        for batch in 0..100u64 {
            let first = batch * 5 + 1;
            hs = hard_state(1 + batch / 10, Some(batch % 3), first - 1);
            storage
                .persist(Some(&hs), &entries(first..=first + 4, hs.term.0))
                .unwrap();
        }
        assert!(
            storage.stats().segments_created >= 20,
            "{:?}",
            storage.stats()
        );
    }
    let files = segment_files(tmp.path());
    assert!(files.len() >= 20, "{} segments", files.len());
    let (_storage, state) = open(tmp.path(), options);
    assert_eq!(state.hard_state, hs);
    assert_eq!(state.entries.len(), 500);
    for (position, entry) in state.entries.iter().enumerate() {
        assert_eq!(entry.index, LogIndex(position as u64 + 1));
    }
}

/// Writes a log whose last record is a `persist` of entries 4..=5 and
/// commit 3, and returns the segment's bytes and where that record starts.
fn log_with_known_last_record(dir: &Path) -> (PathBuf, Vec<u8>, u64) {
    let (mut storage, _) = open(dir, fast());
    storage
        .persist(Some(&hard_state(1, Some(0), 0)), &entries(1..=3, 1))
        .unwrap();
    let path = segment_files(dir).remove(0);
    let last_record_offset = file_len(&path);
    storage
        .persist(Some(&hard_state(1, Some(0), 3)), &entries(4..=5, 1))
        .unwrap();
    drop(storage);
    let bytes = fs::read(&path).unwrap();
    (path, bytes, last_record_offset)
}

#[test]
fn a_torn_last_record_is_cut_off_at_every_byte_offset() {
    let source = tempfile::tempdir().unwrap();
    let (path, bytes, record_offset) = log_with_known_last_record(source.path());
    let file_name = path.file_name().unwrap();
    let before_last = restored(hard_state(1, Some(0), 0), entries(1..=3, 1));
    for cut in record_offset as usize..bytes.len() {
        let tmp = tempfile::tempdir().unwrap();
        let torn = tmp.path().join(file_name);
        fs::write(&torn, &bytes[..cut]).unwrap();

        let (mut storage, state) = open(tmp.path(), fast());
        assert_eq!(state, before_last, "cut={cut}");
        assert_eq!(file_len(&torn), record_offset, "cut={cut}");
        storage
            .persist(Some(&hard_state(2, None, 3)), &[entry(4, 2)])
            .unwrap();
        drop(storage);

        let mut want = entries(1..=3, 1);
        want.push(entry(4, 2));
        let (_storage, state) = open(tmp.path(), fast());
        assert_eq!(state, restored(hard_state(2, None, 3), want), "cut={cut}");
    }
}

#[test]
fn a_last_record_with_a_bad_crc_or_a_zero_filled_tail_is_cut_off() {
    let source = tempfile::tempdir().unwrap();
    let (path, bytes, record_offset) = log_with_known_last_record(source.path());
    let before_last = restored(hard_state(1, Some(0), 0), entries(1..=3, 1));

    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    fs::write(&path, &flipped).unwrap();
    assert_eq!(open(source.path(), fast()).1, before_last);
    assert_eq!(file_len(&path), record_offset);

    // A crash after the file system grew the file but before the data
    // blocks were written leaves zeros after the last good record.
    let mut zero_filled = bytes.clone();
    zero_filled.extend([0u8; 4096]);
    fs::write(&path, &zero_filled).unwrap();
    let full = restored(hard_state(1, Some(0), 3), entries(1..=5, 1));
    assert_eq!(open(source.path(), fast()).1, full);
    assert_eq!(file_len(&path), bytes.len() as u64);
}

#[test]
fn a_flipped_byte_in_an_earlier_record_is_corruption_at_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path(), fast());
    storage.persist(None, &entries(1..=3, 1)).unwrap();
    let path = segment_files(tmp.path()).remove(0);
    let second_record = file_len(&path);
    storage.persist(None, &entries(4..=6, 1)).unwrap();
    let third_record = file_len(&path);
    storage.persist(None, &entries(7..=9, 1)).unwrap();
    drop(storage);

    let mut bytes = fs::read(&path).unwrap();
    bytes[((second_record + third_record) / 2) as usize] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    assert_corrupt_at(open_err(tmp.path()), &path, second_record);
}

#[test]
fn a_flipped_length_field_followed_by_good_records_is_corruption_not_a_torn_tail() {
    // A bit flip that makes a record's length run past the end of the file
    // looks like a torn write on its own; the intact records after it show
    // it is not one, and cutting them off would lose acknowledged entries.
    let tmp = tempfile::tempdir().unwrap();
    let (mut storage, _) = open(tmp.path(), fast());
    storage.persist(None, &entries(1..=3, 1)).unwrap();
    let path = segment_files(tmp.path()).remove(0);
    let second_record = file_len(&path);
    storage.persist(None, &entries(4..=6, 1)).unwrap();
    storage.persist(None, &entries(7..=9, 1)).unwrap();
    drop(storage);

    let mut bytes = fs::read(&path).unwrap();
    bytes[second_record as usize + 2] ^= 0x40; // length += 4 MiB
    fs::write(&path, &bytes).unwrap();
    assert_corrupt_at(open_err(tmp.path()), &path, second_record);
}

#[test]
fn damage_at_the_end_of_an_earlier_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), tiny_segments());
        for index in 1..=3 {
            storage.persist(None, &[entry(index, 1)]).unwrap();
        }
    }
    let files = segment_files(tmp.path());
    assert_eq!(files.len(), 3);
    let bytes = fs::read(&files[1]).unwrap();
    // Segment 2 holds its header and one record; find where that record
    // starts by reading the header's length field.
    let header_len = 8 + u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as u64;
    fs::write(&files[1], &bytes[..bytes.len() - 1]).unwrap();
    assert_corrupt_at(open_err(tmp.path()), &files[1], header_len);
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), tiny_segments());
        for index in 1..=3 {
            storage.persist(None, &[entry(index, 1)]).unwrap();
        }
    }
    let files = segment_files(tmp.path());
    fs::remove_file(&files[1]).unwrap();
    assert_corrupt_at(open_err(tmp.path()), &files[2], 0);
}

#[test]
fn a_zero_length_last_segment_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), fast());
        storage.persist(None, &entries(1..=2, 1)).unwrap();
    }
    // A crash right after creating the next segment, before its header.
    let empty = tmp.path().join("wal-0000000000000002.log");
    fs::write(&empty, b"").unwrap();
    let (mut storage, state) = open(tmp.path(), fast());
    assert_eq!(state.entries, entries(1..=2, 1));
    assert!(!empty.exists());
    storage.persist(None, &[entry(3, 1)]).unwrap();
    drop(storage);
    assert_eq!(open(tmp.path(), fast()).1.entries, entries(1..=3, 1));
}

#[test]
fn a_lone_zero_length_segment_opens_as_a_fresh_log() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("wal-0000000000000001.log"), b"").unwrap();
    let (_storage, state) = open(tmp.path(), fast());
    assert_eq!(state, RestoredState::fresh(config()));
    assert_eq!(segment_files(tmp.path()).len(), 1);
}

#[test]
fn a_garbage_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("wal-0000000000000001.log");
    let garbage: Vec<u8> = (0..1000u32)
        .map(|i| (i * 7919 % 251) as u8 | 0x80)
        .collect();
    fs::write(&path, &garbage).unwrap();
    assert_corrupt_at(open_err(tmp.path()), &path, 0);
}

#[test]
fn a_record_with_a_good_crc_but_an_undecodable_payload_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let (mut storage, _) = open(tmp.path(), fast());
        storage.persist(None, &entries(1..=2, 1)).unwrap();
    }
    let path = segment_files(tmp.path()).remove(0);
    let good_len = file_len(&path);
    let payload = [0xffu8; 16];
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend(crc32fast::hash(&payload).to_le_bytes());
    frame.extend(payload);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend(frame);
    fs::write(&path, &bytes).unwrap();
    assert_corrupt_at(open_err(tmp.path()), &path, good_len);
}

#[test]
fn a_misnamed_segment_is_an_error_not_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    drop(open(tmp.path(), fast()));
    let misnamed = tmp.path().join("wal-2.log");
    fs::write(&misnamed, b"x").unwrap();
    assert_corrupt_at(open_err(tmp.path()), &misnamed, 0);
}

#[test]
fn a_locked_data_dir_cannot_be_opened_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path(), fast());
    let err = open_err(tmp.path());
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "data dir {} is in use by another process",
            tmp.path().display()
        )
    );
    drop(first);
    drop(open(tmp.path(), fast()));
}

#[test]
fn a_data_dir_under_a_regular_file_is_a_one_line_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let dir = file.join("data");
    let err = open_err(&dir);
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

/// The reference the WAL is checked against: a vector and a hard state.
#[derive(Default)]
struct Model {
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl Model {
    fn last_index(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Turns random numbers into a `persist` that a correct Raft core could
    /// issue: it never leaves a gap, never replaces a committed entry, and
    /// never commits past the end of the log.
    fn next_persist(
        &self,
        raw: [u64; 4],
        with_hard_state: bool,
    ) -> (Option<HardState>, Vec<Entry>) {
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
        let hard_state = with_hard_state.then(|| HardState {
            term: Term(term),
            vote: raw[3].is_multiple_of(2).then_some(NodeId(raw[3] % 5)),
            commit: LogIndex(commit + raw[3] % (new_last - commit + 1)),
        });
        (hard_state, new_entries)
    }

    fn apply(&mut self, hard_state: Option<HardState>, new_entries: &[Entry]) {
        if let Some(first) = new_entries.first() {
            self.entries.truncate(first.index.0 as usize - 1);
            self.entries.extend_from_slice(new_entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
    }

    fn restored(&self) -> RestoredState {
        restored(self.hard_state, self.entries.clone())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn restored_state_equals_the_model_after_any_persists_and_reopens(
        segment_bytes_max in prop::sample::select(vec![1u64, 200, 1000, 1 << 20]),
        record_bytes_max in prop::sample::select(vec![150usize, 300, 16 << 20]),
        ops in prop::collection::vec((0u8..8, any::<[u64; 4]>(), any::<bool>()), 1..60),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let options = WalOptions { segment_bytes_max, fsync: false, record_bytes_max };
        let mut model = Model::default();
        let (mut storage, state) = open(tmp.path(), options);
        prop_assert_eq!(state, model.restored());
        for (kind, raw, with_hard_state) in ops {
            if kind == 0 {
                drop(storage);
                let (reopened, state) = open(tmp.path(), options);
                prop_assert_eq!(state, model.restored());
                storage = reopened;
                continue;
            }
            let (hard_state, new_entries) = model.next_persist(raw, with_hard_state);
            storage.persist(hard_state.as_ref(), &new_entries).unwrap();
            model.apply(hard_state, &new_entries);
        }
        drop(storage);
        prop_assert_eq!(open(tmp.path(), options).1, model.restored());
    }
}

// ---- Snapshots and compaction (issue 10) ---------------------------------

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
