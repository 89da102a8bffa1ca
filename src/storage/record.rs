//! The on-disk record format.
//!
//! A segment is a sequence of frames:
//!
//! ```text
//! | length: u32 LE | crc32(payload): u32 LE | payload: postcard(Record) |
//! ```
//!
//! The first record of every segment is a [`SegmentHeader`]; every other
//! record is a [`Record::Batch`], the whole of one `persist` call, or a
//! [`Record::Reset`], the log replaced by a snapshot. Putting
//! the hard state and the entries of one call in one CRC-checked record makes
//! the call atomic: a crash can never leave a commit index on disk without
//! the entries it covers.

use crate::core::types::{Entry, HardState, LogIndex, Term};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// "SRAFTWAL" read as a little-endian u64.
pub const WAL_MAGIC: u64 = u64::from_le_bytes(*b"SRAFTWAL");
pub const WAL_VERSION: u32 = 1;

/// Length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;

/// No record is larger, whatever `WalOptions::record_bytes_max` a writer
/// used. A length field above it cannot come from a torn write (which leaves
/// a prefix of what we wrote), so it is reported as corruption instead of
/// being cut off as a torn tail.
pub const RECORD_BYTES_MAX: usize = crate::limits::WAL_RECORD_FORMAT_BYTES_MAX;

/// What a `Record::Batch` adds to its entries' `Entry::size_bytes`: the
/// record tag, an optional hard state and the entry count, each varint at
/// its longest (checked by a test).
pub const BATCH_OVERHEAD_BYTES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeader {
    pub magic: u64,
    pub version: u32,
    /// Must match the sequence number in the file name: catches a renamed or
    /// copied segment.
    pub seq: u64,
    /// The hard state when the segment was started, so that a segment can be
    /// replayed without the ones before it once those are compacted away.
    pub hard_state: HardState,
    /// The last log index when the segment was started: entries in this
    /// segment begin at or below `last_index + 1`.
    pub last_index: LogIndex,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record<'a> {
    Header(SegmentHeader),
    /// One `persist` call. `Cow` lets the writer borrow the caller's slice
    /// while the reader gets owned entries.
    Batch {
        hard_state: Option<HardState>,
        entries: Cow<'a, [Entry]>,
    },
    /// The log was replaced by a snapshot (an installed one, or one this
    /// node found at restart that its log did not contain): every entry
    /// before is void, the log continues after `snapshot_index`, and
    /// `hard_state.commit` is `snapshot_index`. Last among the variants:
    /// postcard numbers them in order, so files written before it existed
    /// still decode.
    Reset {
        hard_state: HardState,
        snapshot_index: LogIndex,
        snapshot_term: Term,
    },
}

/// The records one `persist` call is written as: runs of `entries` whose
/// `Entry::size_bytes` sum to at most `record_bytes_max` less the batch
/// overhead (always at least one record). A crash may keep any prefix of
/// them, so each must leave a well-formed log on its own:
/// - term and vote go with the first record, so that no entry of a new
///   term is on disk under an older term;
/// - the commit index goes with the last, so that it never covers entries
///   that are not on disk (records before it repeat `stored_commit`, the
///   commit index on disk, which a truncation never passes).
///
/// `Err` carries the size of a record holding an entry that alone does not
/// fit; nothing should be written then.
pub fn persist_records<'a>(
    hard_state: Option<&HardState>,
    stored_commit: LogIndex,
    entries: &'a [Entry],
    record_bytes_max: usize,
) -> Result<Vec<Record<'a>>, usize> {
    let budget_bytes = record_bytes_max.saturating_sub(BATCH_OVERHEAD_BYTES);
    if let Some(entry) = entries.iter().find(|e| e.size_bytes() > budget_bytes) {
        return Err(entry.size_bytes() + BATCH_OVERHEAD_BYTES);
    }
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, entry) in entries.iter().enumerate() {
        if i > start && bytes + entry.size_bytes() > budget_bytes {
            runs.push(&entries[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += entry.size_bytes();
    }
    runs.push(&entries[start..]);
    let last = runs.len() - 1;
    let records = runs
        .into_iter()
        .enumerate()
        .map(|(i, run)| Record::Batch {
            hard_state: match (hard_state, i == last) {
                (Some(hs), true) => Some(*hs),
                (Some(hs), false) if i == 0 => Some(HardState {
                    commit: stored_commit,
                    ..*hs
                }),
                (Some(_), false) | (None, _) => None,
            },
            entries: Cow::Borrowed(run),
        })
        .collect();
    Ok(records)
}

/// Encodes `record` as one frame, replacing the contents of `buf`; a
/// payload above `payload_bytes_max` is an error carrying its size.
pub fn encode_frame(
    record: &Record<'_>,
    buf: &mut Vec<u8>,
    payload_bytes_max: usize,
) -> Result<(), usize> {
    buf.clear();
    buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    let taken = std::mem::take(buf);
    *buf = postcard::to_extend(record, taken)
        .expect("postcard encoding into a Vec only fails on unsupported types");
    let payload_bytes = buf.len() - FRAME_HEADER_BYTES;
    if payload_bytes > payload_bytes_max.min(RECORD_BYTES_MAX) {
        return Err(payload_bytes);
    }
    let crc = crc32fast::hash(&buf[FRAME_HEADER_BYTES..]);
    buf[0..4].copy_from_slice(&(payload_bytes as u32).to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Why the bytes at some offset are not a good frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Fewer than 8 bytes left for the frame header.
    ShortHeader {
        bytes_left: usize,
    },
    /// Only zero bytes from here to the end of the file: a file extended by
    /// the file system whose data never reached the disk.
    ZeroFill,
    ZeroLength,
    LengthTooLarge {
        length: usize,
    },
    /// The payload runs past the end of the file.
    ShortPayload {
        length: usize,
        bytes_left: usize,
    },
    CrcMismatch {
        stored: u32,
        computed: u32,
    },
}

impl Defect {
    /// Whether this defect, found in the last record of the last segment,
    /// looks like a write that a crash interrupted. Writes are appends, and a
    /// crash keeps some prefix of the last one, possibly with garbage or
    /// zeros in the sectors that did not make it.
    pub fn is_torn_write(&self) -> bool {
        match self {
            Defect::ShortHeader { .. }
            | Defect::ZeroFill
            | Defect::ShortPayload { .. }
            | Defect::CrcMismatch { .. } => true,
            Defect::ZeroLength | Defect::LengthTooLarge { .. } => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Defect::ShortHeader { bytes_left } => {
                format!("only {bytes_left} bytes left for an 8-byte frame header")
            }
            Defect::ZeroFill => "zero bytes to the end of the file".to_string(),
            Defect::ZeroLength => "zero-length record".to_string(),
            Defect::LengthTooLarge { length } => {
                format!("record length {length} exceeds the maximum {RECORD_BYTES_MAX}")
            }
            Defect::ShortPayload { length, bytes_left } => {
                format!("record of {length} bytes but only {bytes_left} bytes left in the file")
            }
            Defect::CrcMismatch { stored, computed } => {
                format!("crc mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
        }
    }
}

/// What [`next_frame`] found at an offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A frame with a good CRC; the next one starts at `end`.
    Good {
        payload: &'a [u8],
        end: usize,
    },
    /// Clean end of the file.
    End,
    Bad(Defect),
}

/// Reads the frame starting at `offset` in `bytes` (a whole segment).
pub fn next_frame(bytes: &[u8], offset: usize) -> Frame<'_> {
    let rest = &bytes[offset..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.iter().all(|&b| b == 0) {
        return Frame::Bad(Defect::ZeroFill);
    }
    if rest.len() < FRAME_HEADER_BYTES {
        return Frame::Bad(Defect::ShortHeader {
            bytes_left: rest.len(),
        });
    }
    let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if length == 0 {
        return Frame::Bad(Defect::ZeroLength);
    }
    if length > RECORD_BYTES_MAX {
        return Frame::Bad(Defect::LengthTooLarge { length });
    }
    let bytes_left = rest.len() - FRAME_HEADER_BYTES;
    if length > bytes_left {
        return Frame::Bad(Defect::ShortPayload { length, bytes_left });
    }
    let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length];
    let computed = crc32fast::hash(payload);
    if computed != stored {
        return Frame::Bad(Defect::CrcMismatch { stored, computed });
    }
    Frame::Good {
        payload,
        end: offset + FRAME_HEADER_BYTES + length,
    }
}

/// Whether a bad frame at `offset` is the last thing in the file: true when
/// nothing but zeros follows the bytes the frame claims, and no intact frame
/// starts anywhere after `offset`. A CRC mismatch with real data after it is
/// damage in the middle of the log, not a torn tail; so is a flipped length
/// field that makes a record appear to run past the end of the file while
/// good records follow it (a torn write is always the last thing written).
pub fn defect_is_at_tail(bytes: &[u8], offset: usize, defect: &Defect) -> bool {
    let claimed_end = match defect {
        Defect::CrcMismatch { .. } => {
            let rest = &bytes[offset..];
            let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            offset + FRAME_HEADER_BYTES + length
        }
        Defect::ShortHeader { .. } | Defect::ShortPayload { .. } | Defect::ZeroFill => bytes.len(),
        Defect::ZeroLength | Defect::LengthTooLarge { .. } => return false,
    };
    bytes[claimed_end..].iter().all(|&b| b == 0) && !intact_frame_after(bytes, offset)
}

/// Whether a frame with a good CRC and a decodable payload starts at some
/// offset after `offset`. Runs only on recovery, only after a defect.
fn intact_frame_after(bytes: &[u8], offset: usize) -> bool {
    let last_start = bytes.len().saturating_sub(FRAME_HEADER_BYTES + 1);
    (offset + 1..=last_start).any(|start| {
        let rest = &bytes[start..];
        let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if length == 0 || length > rest.len() - FRAME_HEADER_BYTES {
            return false;
        }
        let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let payload = &rest[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length];
        crc32fast::hash(payload) == stored && decode_record(payload).is_ok()
    })
}

/// Decodes a payload whose CRC was good. The CRC makes a decoding failure
/// a bug or a format mismatch, never a torn write.
pub fn decode_record(payload: &[u8]) -> Result<Record<'static>, String> {
    match postcard::take_from_bytes::<Record<'static>>(payload) {
        Ok((record, [])) => Ok(record),
        Ok((_, rest)) => Err(format!("{} undecoded bytes after the record", rest.len())),
        Err(err) => Err(format!("undecodable record: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{EntryPayload, NodeId, Term};

    fn batch() -> Record<'static> {
        let entries = vec![Entry {
            term: Term(2),
            index: LogIndex(1),
            payload: EntryPayload::Command(b"hello".to_vec().into()),
        }];
        Record::Batch {
            hard_state: Some(HardState {
                term: Term(2),
                vote: Some(NodeId(4)),
                commit: LogIndex(1),
            }),
            entries: Cow::Owned(entries),
        }
    }

    fn framed(record: &Record<'_>) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_frame(record, &mut buf, RECORD_BYTES_MAX).unwrap();
        buf
    }

    #[test]
    fn a_batch_adds_at_most_its_overhead_to_its_entries() {
        let entries: Vec<Entry> = [0usize, 5, 70_000]
            .iter()
            .map(|bytes| Entry {
                term: Term(u64::MAX),
                index: LogIndex(u64::MAX),
                payload: EntryPayload::Command(vec![0xff; *bytes].into()),
            })
            .collect();
        let entry_bytes: usize = entries.iter().map(Entry::size_bytes).sum();
        let record = Record::Batch {
            hard_state: Some(HardState {
                term: Term(u64::MAX),
                vote: Some(NodeId(u64::MAX)),
                commit: LogIndex(u64::MAX),
            }),
            entries: Cow::Owned(entries),
        };
        let payload = postcard::to_allocvec(&record).unwrap().len();
        assert!(
            payload <= entry_bytes + BATCH_OVERHEAD_BYTES,
            "payload={payload} entries={entry_bytes}"
        );
    }

    #[test]
    fn a_frame_decodes_to_the_record_written() {
        let bytes = framed(&batch());
        let Frame::Good { payload, end } = next_frame(&bytes, 0) else {
            panic!("bad frame");
        };
        assert_eq!(end, bytes.len());
        assert_eq!(decode_record(payload).unwrap(), batch());
        assert_eq!(next_frame(&bytes, end), Frame::End);
    }

    #[test]
    fn every_proper_prefix_of_a_frame_is_a_torn_tail() {
        let bytes = framed(&batch());
        for cut in 1..bytes.len() {
            let Frame::Bad(defect) = next_frame(&bytes[..cut], 0) else {
                panic!("prefix of {cut} bytes read as good");
            };
            assert!(defect.is_torn_write(), "cut={cut} {defect:?}");
            assert!(defect_is_at_tail(&bytes[..cut], 0, &defect), "cut={cut}");
        }
    }

    #[test]
    fn a_flipped_payload_byte_fails_the_crc() {
        let mut bytes = framed(&batch());
        let middle = FRAME_HEADER_BYTES + (bytes.len() - FRAME_HEADER_BYTES) / 2;
        bytes[middle] ^= 0x40;
        assert!(matches!(
            next_frame(&bytes, 0),
            Frame::Bad(Defect::CrcMismatch { .. })
        ));
    }

    #[test]
    fn a_crc_mismatch_followed_by_data_is_not_at_the_tail() {
        let mut bytes = framed(&batch());
        bytes[FRAME_HEADER_BYTES] ^= 1;
        let first_len = bytes.len();
        bytes.extend(framed(&batch()));
        let Frame::Bad(defect) = next_frame(&bytes, 0) else {
            panic!("flipped byte read as good");
        };
        assert!(!defect_is_at_tail(&bytes, 0, &defect));
        assert!(defect_is_at_tail(&bytes[..first_len], 0, &defect));
    }

    #[test]
    fn trailing_zeros_are_zero_fill() {
        let mut bytes = framed(&batch());
        let end = bytes.len();
        bytes.extend([0u8; 100]);
        assert_eq!(next_frame(&bytes, end), Frame::Bad(Defect::ZeroFill));
    }

    #[test]
    fn a_huge_length_is_corruption_not_a_torn_write() {
        let mut bytes = framed(&batch());
        bytes[3] = 0xff;
        let Frame::Bad(defect) = next_frame(&bytes, 0) else {
            panic!("huge length read as good");
        };
        assert!(!defect.is_torn_write());
    }

    #[test]
    fn variant_tags_are_stable_so_older_files_still_decode() {
        // postcard writes the variant's position as the first byte: Reset
        // came last, so Header and Batch kept the tags older WALs hold.
        let header = Record::Header(SegmentHeader {
            magic: WAL_MAGIC,
            version: WAL_VERSION,
            seq: 1,
            hard_state: HardState::default(),
            last_index: LogIndex(0),
        });
        let reset = Record::Reset {
            hard_state: HardState::default(),
            snapshot_index: LogIndex(3),
            snapshot_term: Term(1),
        };
        let tags: Vec<u8> = [header, batch(), reset]
            .iter()
            .map(|r| postcard::to_allocvec(r).unwrap()[0])
            .collect();
        assert_eq!(tags, vec![0, 1, 2]);
    }

    #[test]
    fn trailing_bytes_inside_a_payload_are_rejected() {
        let mut payload = postcard::to_allocvec(&batch()).unwrap();
        payload.push(0);
        assert!(decode_record(&payload).is_err());
    }
}
