//! The write-ahead log: what is persisted comes back; torn tails, damage
//! and misnamed files (DESIGN.md 5.2-5.4).

use super::*;

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
        payload: EntryPayload::Command(vec![1; 200].into()),
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

    // Zeros after the last good record: a segment's preallocated space, or
    // a crash after the file system grew the file but before the data
    // blocks were written. Either way they end the log, and are kept for
    // the appends to come, which go right after the records.
    let mut zero_filled = bytes.clone();
    zero_filled.extend([0u8; 4096]);
    fs::write(&path, &zero_filled).unwrap();
    let full = restored(hard_state(1, Some(0), 3), entries(1..=5, 1));
    let (mut storage, state) = open(source.path(), fast());
    assert_eq!(state, full);
    assert_eq!(file_len(&path), zero_filled.len() as u64);
    storage.persist(None, &entries(6..=6, 1)).unwrap();
    drop(storage);
    let mut full = full;
    full.entries.push(entry(6, 1));
    assert_eq!(open(source.path(), fast()).1, full);
}

// ---- Preallocated segments (segment.rs, DESIGN.md 5.3) -------------------

#[test]
fn a_preallocated_segment_grows_in_chunks_and_reopens_at_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let options = preallocated(512);
    let hs = hard_state(1, Some(0), 0);
    let (mut storage, _) = open(tmp.path(), options);
    storage.persist(Some(&hs), &entries(1..=3, 1)).unwrap();
    let path = segment_files(tmp.path()).remove(0);
    assert_eq!(file_len(&path), 512, "one chunk of zeros after the records");
    drop(storage);
    for round in 0..3u64 {
        let (mut storage, state) = open(tmp.path(), options);
        let last = 3 + round * 40;
        assert_eq!(state, restored(hs, entries(1..=last, 1)), "round {round}");
        assert_eq!(file_len(&path) % 512, 0, "reopen keeps the zeros");
        storage
            .persist(Some(&hs), &entries(last + 1..=last + 40, 1))
            .unwrap();
    }
    assert!(file_len(&path) > 512, "grew past its first chunk");
    assert_eq!(
        open(tmp.path(), options).1,
        restored(hs, entries(1..=123, 1))
    );
}

#[test]
fn a_segment_is_trimmed_to_its_records_when_the_next_one_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_bytes_max: 300,
        ..preallocated(4096)
    };
    let hs = hard_state(1, Some(0), 0);
    let (mut storage, _) = open(tmp.path(), options);
    for first in (1..=60).step_by(5) {
        storage
            .persist(Some(&hs), &entries(first..=first + 4, 1))
            .unwrap();
    }
    drop(storage);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3, "{} segments", files.len());
    for closed in &files[..files.len() - 1] {
        let bytes = fs::read(closed).unwrap();
        assert!(bytes.len() < 4096, "{} kept its zeros", closed.display());
    }
    assert_eq!(file_len(files.last().unwrap()) % 4096, 0);
    assert_eq!(
        open(tmp.path(), options).1,
        restored(hs, entries(1..=60, 1))
    );
}

/// A crash cuts the write at `bytes`, inside the zeros: a torn record there
/// is cut off like any torn tail. Data after the zeros is no crash's doing.
#[test]
fn in_a_preallocated_segment_a_torn_record_is_cut_and_data_after_the_zeros_is_corruption() {
    let source = tempfile::tempdir().unwrap();
    let (path, bytes, record_offset) = log_with_known_last_record(source.path());
    let before_last = restored(hard_state(1, Some(0), 0), entries(1..=3, 1));
    let mut torn = bytes[..bytes.len() - 3].to_vec();
    torn.resize(8192, 0);
    fs::write(&path, &torn).unwrap();
    assert_eq!(open(source.path(), preallocated(4096)).1, before_last);
    assert_eq!(file_len(&path), record_offset, "cut at the torn record");

    let mut stray = bytes.clone();
    stray.resize(8192, 0);
    stray[8000] = 0x5a;
    fs::write(&path, &stray).unwrap();
    assert_corrupt_at(open_err(source.path()), &path, bytes.len() as u64);
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
        preallocate_bytes in prop::sample::select(vec![0u64, 256, 4096]),
        ops in prop::collection::vec((0u8..8, any::<[u64; 4]>(), any::<bool>()), 1..60),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let options = WalOptions { segment_bytes_max, record_bytes_max, ..preallocated(preallocate_bytes) };
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
