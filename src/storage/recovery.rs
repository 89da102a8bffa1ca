//! Rebuilding the log and hard state from the segment files at startup.
//!
//! Replay applies every record in order with the same truncation rule as
//! `persist`. Only the end of the log may be damaged by a crash: a torn last
//! record of the last segment is cut off. Damage anywhere else is reported,
//! never skipped, since the records after it may hold entries this node has
//! acknowledged, and losing those could lose committed data.
//!
//! Replay starts at the first segment on disk. Once snapshot compaction has
//! deleted the segments before it, its header's last index is the base the
//! log continues from; `reconcile` then checks that a snapshot covers it.

use super::StorageError;
use super::record::{
    Defect, Frame, Record, SegmentHeader, WAL_MAGIC, WAL_VERSION, decode_record, defect_is_at_tail,
    next_frame,
};
use super::segment::sync_dir;
use crate::core::types::{Entry, HardState, LogIndex, SnapshotMeta, Term};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

/// A segment that survived recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub seq: u64,
    /// The last log index when the segment was started.
    pub last_index_before: LogIndex,
}

/// What replay found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The log continues after this index: the first replayed segment's
    /// header's last index, or the snapshot index of the last `Reset`. The
    /// entries up to it must come from a snapshot.
    pub base: LogIndex,
    /// Contiguous from `base + 1`.
    pub entries: Vec<Entry>,
    /// Surviving segments, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// The last surviving segment: where appending resumes.
    pub tail: Option<Tail>,
}

#[derive(Debug)]
pub struct Tail {
    pub seq: u64,
    pub path: PathBuf,
    /// Length of the records, once a torn tail, if any, is cut off.
    pub bytes: u64,
    /// File length: `bytes` and the preallocated zeros after them.
    pub allocated: u64,
    /// Records after the header.
    pub batches: u64,
}

impl Recovered {
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.base.0 + self.entries.len() as u64)
    }
}

/// Replays `segments` (ascending sequence numbers, from `list_segments`),
/// cutting off a torn tail of the last one on disk.
pub fn recover(dir: &Path, segments: &[(u64, PathBuf)]) -> Result<Recovered, StorageError> {
    let mut recovered = Recovered::default();
    for (position, (seq, path)) in segments.iter().enumerate() {
        if let Some(previous) = recovered.segments.last()
            && *seq != previous.seq + 1
        {
            let reason = format!("segment {} is missing before it", previous.seq + 1);
            return Err(StorageError::corrupt(path, 0, reason));
        }
        let is_last = position + 1 == segments.len();
        let bytes = fs::read(path).map_err(|e| StorageError::io(path, "read WAL segment", e))?;
        let (good_bytes, batches) = replay_segment(&mut recovered, *seq, path, &bytes, is_last)?;
        if good_bytes == 0 {
            // Only the last segment gets here (`replay_segment` rejects an
            // empty one elsewhere): it was being created when the node
            // stopped, before its header was durable, so it holds nothing.
            log::warn!(
                "WAL segment {} has no complete header: removing it",
                path.display()
            );
            fs::remove_file(path)
                .map_err(|e| StorageError::io(path, "remove torn WAL segment", e))?;
            sync_dir(dir)?;
            continue;
        }
        // Zeros after the records are the segment's preallocated space
        // (segment.rs), kept for the appends to come; anything else after
        // them is a torn record, cut off.
        let zero_tail = bytes[good_bytes..].iter().all(|&b| b == 0);
        if !zero_tail {
            cut_torn_tail(path, good_bytes as u64)?;
        }
        recovered.tail = Some(Tail {
            seq: *seq,
            path: path.clone(),
            bytes: good_bytes as u64,
            allocated: if zero_tail { bytes.len() } else { good_bytes } as u64,
            batches,
        });
    }
    Ok(recovered)
}

/// Replays one segment held in memory, as the last one on disk: what the
/// simulator's disk recovers after a crash, with the same rules as a real
/// restart. Returns the log, and the length of the good prefix (a torn tail
/// after it is to be cut).
pub fn recover_segment_bytes(
    path: &Path,
    bytes: &[u8],
) -> Result<(Recovered, usize), StorageError> {
    let mut recovered = Recovered::default();
    let (good_bytes, _) = replay_segment(&mut recovered, 1, path, bytes, true)?;
    Ok((recovered, good_bytes))
}

/// How the replayed WAL and the newest valid snapshot fit together.
#[derive(Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// The WAL holds the snapshot's last entry (or starts right after the
    /// snapshot): the entries after the snapshot stand, the commit index is
    /// at least the snapshot's.
    Fits {
        hard_state: HardState,
        entries: Vec<Entry>,
    },
    /// The WAL does not hold the snapshot's last entry: a snapshot was
    /// installed and the node stopped before the `Reset` record was
    /// written. Every WAL entry is void (Raft paper, figure 13: a log that
    /// does not contain the snapshot's last entry is discarded whole), and
    /// a `Reset` with this hard state must be written before anything else,
    /// or the next replay would revive them.
    NeedsReset { hard_state: HardState },
}

/// The snapshot index the WAL needs, when no snapshot covers it.
#[derive(Debug, PartialEq, Eq)]
pub struct SnapshotGap {
    pub wal_start_index: LogIndex,
}

/// Fits the replayed WAL (`recovered`) to `snapshot`, the newest valid one
/// (`None`: no snapshot, the empty prefix). The state machine restored from
/// the snapshot must be followed by every entry after it, so a WAL that
/// starts after the snapshot index is an error, never an empty start.
pub fn reconcile(
    recovered: &Recovered,
    snapshot: Option<&SnapshotMeta>,
) -> Result<Reconciled, SnapshotGap> {
    let (snapshot_index, snapshot_term) =
        snapshot.map_or((LogIndex(0), Term(0)), |m| (m.last_index, m.last_term));
    let base = recovered.base;
    if base > snapshot_index {
        return Err(SnapshotGap {
            wal_start_index: base,
        });
    }
    let hard_state = HardState {
        commit: recovered.hard_state.commit.max(snapshot_index),
        ..recovered.hard_state
    };
    if snapshot_index == base {
        return Ok(Reconciled::Fits {
            hard_state,
            entries: recovered.entries.clone(),
        });
    }
    let position = (snapshot_index.0 - base.0 - 1) as usize;
    match recovered.entries.get(position) {
        Some(entry) if entry.term == snapshot_term => Ok(Reconciled::Fits {
            hard_state,
            entries: recovered.entries[position + 1..].to_vec(),
        }),
        Some(_) | None => Ok(Reconciled::NeedsReset { hard_state }),
    }
}

/// Applies the records of one segment; returns the length of its good
/// prefix, which is shorter than `bytes` only for a torn tail of the last
/// segment, and the number of records after the header.
fn replay_segment(
    recovered: &mut Recovered,
    seq: u64,
    path: &Path,
    bytes: &[u8],
    is_last: bool,
) -> Result<(usize, u64), StorageError> {
    let mut offset = 0;
    let mut batches = 0;
    loop {
        match next_frame(bytes, offset) {
            Frame::End if offset == 0 && !is_last => {
                return Err(StorageError::corrupt(path, 0, "empty WAL segment"));
            }
            Frame::End => return Ok((offset, batches)),
            // The preallocated end of the last segment (segment.rs); any
            // record whose write a crash cut short left zeros only.
            Frame::Bad(Defect::ZeroFill) if is_last && offset > 0 => {
                return Ok((offset, batches));
            }
            Frame::Bad(defect) => {
                if is_last && is_torn_tail(bytes, offset, &defect) {
                    log::warn!(
                        "torn WAL record in {} at offset {offset} ({}): cutting the log off there",
                        path.display(),
                        defect.describe()
                    );
                    return Ok((offset, batches));
                }
                return Err(StorageError::corrupt(
                    path,
                    offset as u64,
                    defect.describe(),
                ));
            }
            Frame::Good { payload, end } => {
                let corrupt = |reason| StorageError::corrupt(path, offset as u64, reason);
                let record = decode_record(payload).map_err(corrupt)?;
                apply_record(recovered, seq, offset == 0, record).map_err(corrupt)?;
                batches += u64::from(offset > 0);
                offset = end;
            }
        }
    }
}

fn is_torn_tail(bytes: &[u8], offset: usize, defect: &Defect) -> bool {
    defect.is_torn_write() && defect_is_at_tail(bytes, offset, defect)
}

/// Applies one decoded record; the error is the reason it is corrupt.
fn apply_record(
    recovered: &mut Recovered,
    seq: u64,
    is_first_in_segment: bool,
    record: Record<'static>,
) -> Result<(), String> {
    match (record, is_first_in_segment) {
        (Record::Header(header), true) => {
            check_header(recovered, seq, &header)?;
            recovered.segments.push(SegmentInfo {
                seq,
                last_index_before: header.last_index,
            });
            Ok(())
        }
        (Record::Header(_), false) => Err("segment header in the middle of a segment".into()),
        (Record::Batch { .. } | Record::Reset { .. }, true) => {
            Err("segment does not start with a header".into())
        }
        (
            Record::Reset {
                hard_state,
                snapshot_index,
                snapshot_term: _,
            },
            false,
        ) => apply_reset(recovered, hard_state, snapshot_index),
        (
            Record::Batch {
                hard_state,
                entries,
            },
            false,
        ) => apply_batch(recovered, hard_state, entries.into_owned()),
    }
}

fn check_header(recovered: &mut Recovered, seq: u64, header: &SegmentHeader) -> Result<(), String> {
    if header.magic != WAL_MAGIC {
        return Err(format!("bad magic {:#018x}", header.magic));
    }
    if header.version != WAL_VERSION {
        return Err(format!(
            "WAL format version {} (this build reads {WAL_VERSION})",
            header.version
        ));
    }
    if header.seq != seq {
        return Err(format!(
            "header says segment {}, file name says {seq}",
            header.seq
        ));
    }
    if recovered.segments.is_empty() {
        // The first segment on disk: the log continues from its header.
        // Whether a snapshot covers what came before is `reconcile`'s check.
        if header.hard_state.commit > header.last_index {
            return Err(format!(
                "segment starts with commit index {} beyond its last index {}",
                header.hard_state.commit, header.last_index
            ));
        }
        recovered.base = header.last_index;
        recovered.hard_state = header.hard_state;
        return Ok(());
    }
    // Every later header must agree with what the segments before it
    // produced.
    let last_index = recovered.last_index();
    if header.last_index != last_index {
        return Err(format!(
            "segment starts after index {} but the log before it ends at {last_index}",
            header.last_index
        ));
    }
    if header.hard_state != recovered.hard_state {
        return Err(format!(
            "segment starts with hard state {:?} but the log before it has {:?}",
            header.hard_state, recovered.hard_state
        ));
    }
    Ok(())
}

fn apply_batch(
    recovered: &mut Recovered,
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
) -> Result<(), String> {
    if let Some(first) = entries.first() {
        let last_index = recovered.last_index();
        let commit = recovered.hard_state.commit;
        if first.index.0 == 0 || first.index > last_index.next() {
            return Err(format!(
                "entries start at index {} but the log holds indexes {} to {last_index}",
                first.index,
                recovered.base.next()
            ));
        }
        if first.index <= commit {
            return Err(format!(
                "entries at index {} replace committed ones (commit {commit})",
                first.index
            ));
        }
        for pair in entries.windows(2) {
            if pair[1].index != pair[0].index.next() {
                return Err(format!(
                    "entries not contiguous: {} then {}",
                    pair[0].index, pair[1].index
                ));
            }
        }
        if first.index <= recovered.base {
            // Only in the first segment on disk after compaction: its header
            // recorded the last index when it began, and this batch replaced
            // uncommitted entries below it (the commit check above holds).
            // The log now continues from just before the batch; the snapshot
            // `reconcile` finds must cover that far.
            recovered.base = first.index.prev();
            recovered.entries.clear();
        } else {
            recovered
                .entries
                .truncate((first.index.0 - recovered.base.0 - 1) as usize);
        }
        recovered.entries.extend(entries);
    }
    if let Some(hard_state) = hard_state {
        recovered.hard_state = hard_state;
    }
    let (commit, last_index) = (recovered.hard_state.commit, recovered.last_index());
    if commit > last_index {
        return Err(format!(
            "commit index {commit} is beyond the last log index {last_index}"
        ));
    }
    Ok(())
}

fn apply_reset(
    recovered: &mut Recovered,
    hard_state: HardState,
    snapshot_index: LogIndex,
) -> Result<(), String> {
    if hard_state.commit != snapshot_index {
        return Err(format!(
            "reset to snapshot index {snapshot_index} with commit index {}",
            hard_state.commit
        ));
    }
    recovered.entries.clear();
    recovered.base = snapshot_index;
    recovered.hard_state = hard_state;
    Ok(())
}

/// Cuts a torn tail so that appends continue right after the last good
/// record instead of after garbage that would fail the next recovery.
fn cut_torn_tail(path: &Path, good_bytes: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, "open WAL segment", e))?;
    file.set_len(good_bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StorageError::io(path, "truncate torn WAL segment", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{EntryPayload, Term};
    use crate::storage::record::encode_frame;
    use crate::storage::segment::segment_file_name;
    use std::borrow::Cow;

    fn entry(index: u64) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Noop,
        }
    }

    fn header(seq: u64, last_index: u64) -> Record<'static> {
        Record::Header(SegmentHeader {
            magic: WAL_MAGIC,
            version: WAL_VERSION,
            seq,
            hard_state: HardState::default(),
            last_index: LogIndex(last_index),
        })
    }

    fn batch(commit: u64, indexes: &[u64]) -> Record<'static> {
        Record::Batch {
            hard_state: Some(HardState {
                commit: LogIndex(commit),
                ..HardState::default()
            }),
            entries: Cow::Owned(indexes.iter().map(|&i| entry(i)).collect()),
        }
    }

    /// Writes `records` as segment 1 and recovers; returns the error's
    /// offset and reason, with the offset of the last record for reference.
    fn recover_records(records: &[Record<'static>]) -> (Result<Recovered, StorageError>, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(segment_file_name(1));
        let (mut bytes, mut frame, mut last_offset) = (Vec::new(), Vec::new(), 0);
        for record in records {
            encode_frame(record, &mut frame, crate::storage::record::RECORD_BYTES_MAX).unwrap();
            last_offset = bytes.len() as u64;
            bytes.extend_from_slice(&frame);
        }
        fs::write(&path, &bytes).unwrap();
        (recover(tmp.path(), &[(1, path)]), last_offset)
    }

    fn corrupt_reason(records: &[Record<'static>]) -> (u64, String, u64) {
        match recover_records(records) {
            (Err(StorageError::Corrupt { offset, reason, .. }), last) => (offset, reason, last),
            (other, _) => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn well_formed_records_replay() {
        let (recovered, _) = recover_records(&[header(1, 0), batch(1, &[1, 2]), batch(2, &[2])]);
        let recovered = recovered.unwrap();
        assert_eq!(recovered.entries.len(), 2);
        assert_eq!(recovered.hard_state.commit, LogIndex(2));
        assert_eq!(recovered.tail.unwrap().batches, 2);
    }

    #[test]
    fn a_commit_index_beyond_the_log_is_corruption() {
        let (offset, reason, last) = corrupt_reason(&[header(1, 0), batch(3, &[1, 2])]);
        assert_eq!(offset, last);
        assert!(
            reason.contains("commit index 3 is beyond the last log index 2"),
            "{reason}"
        );
    }

    #[test]
    fn a_gap_in_the_entries_is_corruption() {
        let (offset, reason, last) =
            corrupt_reason(&[header(1, 0), batch(0, &[1]), batch(0, &[3])]);
        assert_eq!(offset, last);
        assert!(reason.contains("entries start at index 3"), "{reason}");
    }

    #[test]
    fn non_contiguous_entries_are_corruption() {
        let (_, reason, _) = corrupt_reason(&[header(1, 0), batch(0, &[1, 3])]);
        assert!(reason.contains("not contiguous"), "{reason}");
    }

    #[test]
    fn replacing_a_committed_entry_is_corruption() {
        let (_, reason, _) = corrupt_reason(&[header(1, 0), batch(2, &[1, 2]), batch(2, &[2])]);
        assert!(reason.contains("replace committed"), "{reason}");
    }

    #[test]
    fn the_first_segment_on_disk_sets_the_base_the_log_continues_from() {
        let (recovered, _) = recover_records(&[header(1, 5), batch(5, &[6, 7])]);
        let recovered = recovered.unwrap();
        assert_eq!(recovered.base, LogIndex(5));
        assert_eq!(recovered.last_index(), LogIndex(7));
        // A batch that replaced uncommitted entries below the header's last
        // index: the log continues from before it.
        let (recovered, _) = recover_records(&[header(1, 5), batch(4, &[5])]);
        let recovered = recovered.unwrap();
        assert_eq!(recovered.base, LogIndex(4));
        assert_eq!(recovered.entries, vec![entry(5)]);
        let (_, reason, _) = corrupt_reason(&[header(1, 5), batch(5, &[6]), batch(5, &[5])]);
        assert!(reason.contains("replace committed"), "{reason}");
    }

    fn reset(snapshot_index: u64, commit: u64) -> Record<'static> {
        Record::Reset {
            hard_state: HardState {
                commit: LogIndex(commit),
                ..HardState::default()
            },
            snapshot_index: LogIndex(snapshot_index),
            snapshot_term: Term(1),
        }
    }

    #[test]
    fn a_reset_voids_the_entries_before_it() {
        let (recovered, _) = recover_records(&[
            header(1, 0),
            batch(1, &[1, 2]),
            reset(9, 9),
            batch(9, &[10]),
        ]);
        let recovered = recovered.unwrap();
        assert_eq!(recovered.base, LogIndex(9));
        assert_eq!(recovered.entries, vec![entry(10)]);
        assert_eq!(recovered.hard_state.commit, LogIndex(9));
        let (_, reason, _) = corrupt_reason(&[header(1, 0), reset(9, 3)]);
        assert!(reason.contains("commit index 3"), "{reason}");
        let (_, reason, _) = corrupt_reason(&[header(1, 0), reset(9, 9), batch(9, &[9])]);
        assert!(reason.contains("replace committed"), "{reason}");
    }

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_index: LogIndex(index),
            last_term: Term(term),
            config: crate::core::types::ClusterConfig::new(vec![]),
        }
    }

    #[test]
    fn reconcile_keeps_what_follows_a_snapshot_the_log_holds() {
        let (recovered, _) = recover_records(&[header(1, 0), batch(2, &[1, 2, 3, 4])]);
        let recovered = recovered.unwrap();
        let Ok(Reconciled::Fits {
            hard_state,
            entries,
        }) = reconcile(&recovered, Some(&meta(3, 1)))
        else {
            panic!("snapshot 3 fits");
        };
        assert_eq!(hard_state.commit, LogIndex(3));
        assert_eq!(entries, vec![entry(4)]);
        // Another term at the snapshot index, or a log too short: void.
        assert!(matches!(
            reconcile(&recovered, Some(&meta(3, 2))),
            Ok(Reconciled::NeedsReset { .. })
        ));
        assert!(matches!(
            reconcile(&recovered, Some(&meta(9, 1))),
            Ok(Reconciled::NeedsReset { .. })
        ));
    }

    #[test]
    fn reconcile_refuses_a_log_that_starts_after_the_snapshot() {
        let (recovered, _) = recover_records(&[header(1, 5), batch(5, &[6])]);
        let recovered = recovered.unwrap();
        let gap = SnapshotGap {
            wal_start_index: LogIndex(5),
        };
        assert_eq!(reconcile(&recovered, None), Err(gap));
        assert!(reconcile(&recovered, Some(&meta(4, 1))).is_err());
        assert!(reconcile(&recovered, Some(&meta(5, 1))).is_ok());
    }

    #[test]
    fn a_segment_must_start_with_its_own_header() {
        let (offset, reason, _) = corrupt_reason(&[batch(0, &[1])]);
        assert_eq!(offset, 0);
        assert!(reason.contains("does not start with a header"), "{reason}");

        let (_, reason, _) = corrupt_reason(&[header(7, 0)]);
        assert!(reason.contains("header says segment 7"), "{reason}");

        let (_, reason, _) = corrupt_reason(&[header(1, 0), batch(0, &[1]), header(1, 1)]);
        assert!(reason.contains("middle of a segment"), "{reason}");
    }
}
