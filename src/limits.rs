//! Every byte limit of a node, in one table (DESIGN.md 7), the way
//! etcd-io/raft keeps `MaxSizePerMsg`, `MaxUncommittedEntriesSize` and
//! `MaxCommittedSizePerReady` in one `Config`.
//!
//! Only `value_bytes_max` is usually chosen; every other limit is derived
//! from it unless set. [`Limits::validate`] asserts the chain that keeps one
//! client request from producing a message the transport cannot carry or a
//! record the WAL refuses:
//!
//! ```text
//! value_bytes_max + ENTRY_OVERHEAD_BYTES <= entry_bytes_max
//!   <= append_bytes_max
//!   append_bytes_max + MESSAGE_OVERHEAD_BYTES <= frame_bytes_max
//!   frame_bytes_max <= wal_record_bytes_max <= WAL_RECORD_FORMAT_BYTES_MAX
//! append_bytes_max <= inflight_bytes_max
//! entry_bytes_max <= apply_bytes_max
//!   snapshot_chunk_bytes + SNAPSHOT_META_BYTES_MAX + MESSAGE_OVERHEAD_BYTES <= frame_bytes_max
//! entry_bytes_max <= uncommitted_bytes_max
//! entry_bytes_max <= request_bytes_max
//! ```
//!
//! One count sits in the table too: `sessions_max`, the client sessions
//! the KV store remembers for exactly-once writes (DESIGN.md 4.3).
//!
//! Sizes of entries are [`Entry::size_bytes`](crate::core::Entry::size_bytes),
//! an upper bound of their encoding, so a sum of them bounds the bytes on
//! the wire and on disk.

use serde::Deserialize;
use std::fmt;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// What one log entry adds to the value a client command carries: the key,
/// the session id and sequence number, the operation and the entry's own
/// header. A command whose key is too long for it is refused as too large.
pub const ENTRY_OVERHEAD_BYTES: usize = 64 * KIB;

/// What an Append message adds to its entries in a peer frame: the frame
/// enum tag, the message header (from, to, term) and the Append's fixed
/// fields, each a varint of at most 10 bytes (checked by a test).
pub const MESSAGE_OVERHEAD_BYTES: usize = 256;

/// Room an InstallSnapshot chunk leaves in its frame for the snapshot's
/// metadata (index, term and the cluster configuration).
pub const SNAPSHOT_META_BYTES_MAX: usize = 64 * KIB;

/// Snapshot chunks are at most this large by default (if the frame allows).
const SNAPSHOT_CHUNK_BYTES_DEFAULT: usize = MIB;

/// The largest record the WAL format admits: a length field above it is
/// corruption, not a torn write, whatever `wal_record_bytes_max` a writer
/// used (`storage::record`).
pub const WAL_RECORD_FORMAT_BYTES_MAX: usize = 256 * MIB;

/// Defaults that are not derived from `value_bytes_max`.
pub const VALUE_BYTES_MAX_DEFAULT: usize = MIB;
/// Appends are never smaller than this by default, so that a small value
/// limit does not shrink the batches of small entries.
const APPEND_BYTES_MIN_DEFAULT: usize = MIB;
/// WAL records are never smaller than this by default: one persist of many
/// small entries is written as few records as possible.
const WAL_RECORD_BYTES_MIN_DEFAULT: usize = 16 * MIB;
/// Bytes in flight to one follower, in Appends of the largest size: enough
/// to keep a LAN link busy for a round trip, little enough that a heartbeat
/// queued behind them on the same connection is late by milliseconds only.
const INFLIGHT_APPENDS_DEFAULT: usize = 4;
/// Uncommitted bytes on the leader, in entries of the largest size.
const UNCOMMITTED_ENTRIES_DEFAULT: usize = 8;
/// Bytes of one client request, in values of the largest size: CAS carries
/// two, and a value a few times too large still gets the clear
/// "value is too large" error instead of a closed connection.
const REQUEST_VALUES_DEFAULT: usize = 4;
/// Client sessions kept by the KV store: Redis-style deployments hold a few
/// hundred connections; each session costs a few dozen bytes plus its
/// last reply.
pub const SESSIONS_MAX_DEFAULT: usize = 10_000;

/// The byte limits of one node. Build it with [`Limits::derive`] (or
/// `Default`), override what must differ, then [`Limits::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest value SET, APPEND (the result) and CAS accept. Shapes the
    /// state machine (APPEND's answer): the same on every node.
    pub value_bytes_max: usize,
    /// Largest log entry the leader accepts (`Entry::size_bytes`); a larger
    /// proposal is refused at once.
    pub entry_bytes_max: usize,
    /// Entries' bytes in one Append message (etcd's MaxSizePerMsg).
    pub append_bytes_max: usize,
    /// Entries' bytes the leader has sent to one follower and not yet seen
    /// acknowledged (etcd's MaxInflightBytes); further Appends wait.
    pub inflight_bytes_max: usize,
    /// Bytes of committed entries handed to the state machine in one Ready
    /// (etcd's MaxCommittedSizePerReady); a backlog is applied over several.
    pub apply_bytes_max: usize,
    /// Bytes of snapshot file in one InstallSnapshot message.
    pub snapshot_chunk_bytes: usize,
    /// Largest peer frame payload sent or accepted.
    pub frame_bytes_max: usize,
    /// Largest WAL record written: a persist of more is split.
    pub wal_record_bytes_max: usize,
    /// Bytes of entries the leader has appended in its term and not yet
    /// committed; beyond it a proposal is refused as busy (etcd's
    /// MaxUncommittedEntriesSize).
    pub uncommitted_bytes_max: usize,
    /// Bytes buffered for one incomplete client request; beyond it the
    /// connection is closed with a protocol error.
    pub request_bytes_max: usize,
    /// Client sessions the KV store remembers; past it, the least recently
    /// used is forgotten, and its writes are refused until the client
    /// registers again. Shapes the replicated state: the same on every node.
    pub sessions_max: usize,
}

/// The limits a config file sets (its `[limits]` table); the others are
/// derived by [`Limits::with_overrides`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsOverrides {
    pub value_bytes_max: Option<usize>,
    pub entry_bytes_max: Option<usize>,
    pub append_bytes_max: Option<usize>,
    pub inflight_bytes_max: Option<usize>,
    pub apply_bytes_max: Option<usize>,
    pub snapshot_chunk_bytes: Option<usize>,
    pub frame_bytes_max: Option<usize>,
    pub wal_record_bytes_max: Option<usize>,
    pub uncommitted_bytes_max: Option<usize>,
    pub request_bytes_max: Option<usize>,
    pub sessions_max: Option<usize>,
}

/// A relation between limits that does not hold; names the values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsError {
    /// The limit to change, as spelled in the config file's `[limits]`.
    pub key: &'static str,
    pub reason: String,
}

impl fmt::Display for LimitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad limits.{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for LimitsError {}

impl Default for Limits {
    fn default() -> Limits {
        Limits::derive(VALUE_BYTES_MAX_DEFAULT)
    }
}

impl Limits {
    /// The table for `value_bytes_max`, every other limit derived from it.
    pub fn derive(value_bytes_max: usize) -> Limits {
        Limits::with_overrides(&LimitsOverrides {
            value_bytes_max: Some(value_bytes_max),
            ..LimitsOverrides::default()
        })
    }

    /// The limits `overrides` sets, each other one derived from the limits
    /// before it in the chain (so raising `entry_bytes_max` alone raises the
    /// Append, frame and WAL record limits that must hold it).
    pub fn with_overrides(overrides: &LimitsOverrides) -> Limits {
        let value_bytes_max = overrides.value_bytes_max.unwrap_or(VALUE_BYTES_MAX_DEFAULT);
        let entry_bytes_max = overrides
            .entry_bytes_max
            .unwrap_or(value_bytes_max.saturating_add(ENTRY_OVERHEAD_BYTES));
        let append_bytes_max = overrides
            .append_bytes_max
            .unwrap_or(entry_bytes_max.max(APPEND_BYTES_MIN_DEFAULT));
        let frame_bytes_max = overrides
            .frame_bytes_max
            .unwrap_or(append_bytes_max.saturating_add(MESSAGE_OVERHEAD_BYTES));
        Limits {
            value_bytes_max,
            entry_bytes_max,
            append_bytes_max,
            inflight_bytes_max: overrides
                .inflight_bytes_max
                .unwrap_or(append_bytes_max.saturating_mul(INFLIGHT_APPENDS_DEFAULT)),
            apply_bytes_max: overrides
                .apply_bytes_max
                .unwrap_or(append_bytes_max.saturating_mul(INFLIGHT_APPENDS_DEFAULT)),
            snapshot_chunk_bytes: overrides.snapshot_chunk_bytes.unwrap_or(
                SNAPSHOT_CHUNK_BYTES_DEFAULT.min(
                    frame_bytes_max
                        .saturating_sub(SNAPSHOT_META_BYTES_MAX + MESSAGE_OVERHEAD_BYTES)
                        .max(1),
                ),
            ),
            frame_bytes_max,
            wal_record_bytes_max: overrides
                .wal_record_bytes_max
                .unwrap_or(frame_bytes_max.max(WAL_RECORD_BYTES_MIN_DEFAULT)),
            uncommitted_bytes_max: overrides
                .uncommitted_bytes_max
                .unwrap_or(entry_bytes_max.saturating_mul(UNCOMMITTED_ENTRIES_DEFAULT)),
            request_bytes_max: overrides.request_bytes_max.unwrap_or(
                value_bytes_max
                    .saturating_mul(REQUEST_VALUES_DEFAULT)
                    .saturating_add(ENTRY_OVERHEAD_BYTES),
            ),
            sessions_max: overrides.sessions_max.unwrap_or(SESSIONS_MAX_DEFAULT),
        }
    }

    /// Checks every relation of the chain in the module comment; the error
    /// names the first that fails, with the values on both sides.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if self.value_bytes_max == 0 {
            return Err(LimitsError {
                key: "value_bytes_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.sessions_max == 0 {
            return Err(LimitsError {
                key: "sessions_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(LimitsError {
                key: "snapshot_chunk_bytes",
                reason: "must be at least 1".into(),
            });
        }
        let value_and_overhead = self.value_bytes_max.saturating_add(ENTRY_OVERHEAD_BYTES);
        let append_and_overhead = self.append_bytes_max.saturating_add(MESSAGE_OVERHEAD_BYTES);
        // (limit to change, smaller side, its value, larger side, its value, why)
        let chunk_and_overhead = self
            .snapshot_chunk_bytes
            .saturating_add(SNAPSHOT_META_BYTES_MAX + MESSAGE_OVERHEAD_BYTES);
        let relations = [
            (
                "entry_bytes_max",
                format!("value_bytes_max + {ENTRY_OVERHEAD_BYTES}"),
                value_and_overhead,
                "entry_bytes_max".to_string(),
                self.entry_bytes_max,
                "an entry must hold the largest value with its key and header",
            ),
            (
                "append_bytes_max",
                "entry_bytes_max".into(),
                self.entry_bytes_max,
                "append_bytes_max".into(),
                self.append_bytes_max,
                "one Append must carry the largest entry",
            ),
            (
                "apply_bytes_max",
                "entry_bytes_max".into(),
                self.entry_bytes_max,
                "apply_bytes_max".into(),
                self.apply_bytes_max,
                "one Ready must carry the largest entry",
            ),
            (
                "inflight_bytes_max",
                "append_bytes_max".into(),
                self.append_bytes_max,
                "inflight_bytes_max".into(),
                self.inflight_bytes_max,
                "a full Append must fit in flight",
            ),
            (
                "frame_bytes_max",
                format!("append_bytes_max + {MESSAGE_OVERHEAD_BYTES}"),
                append_and_overhead,
                "frame_bytes_max".into(),
                self.frame_bytes_max,
                "one frame must carry the largest Append",
            ),
            (
                "snapshot_chunk_bytes",
                format!(
                    "snapshot_chunk_bytes + {}",
                    SNAPSHOT_META_BYTES_MAX + MESSAGE_OVERHEAD_BYTES
                ),
                chunk_and_overhead,
                "frame_bytes_max".into(),
                self.frame_bytes_max,
                "one frame must carry a snapshot chunk with its metadata",
            ),
            (
                "wal_record_bytes_max",
                "frame_bytes_max".into(),
                self.frame_bytes_max,
                "wal_record_bytes_max".into(),
                self.wal_record_bytes_max,
                "one WAL record must hold what one frame carries",
            ),
            (
                "wal_record_bytes_max",
                "wal_record_bytes_max".into(),
                self.wal_record_bytes_max,
                "the WAL format maximum".into(),
                WAL_RECORD_FORMAT_BYTES_MAX,
                "recovery refuses larger records",
            ),
            (
                "frame_bytes_max",
                "frame_bytes_max".into(),
                self.frame_bytes_max,
                "the 4-byte frame length maximum".into(),
                u32::MAX as usize,
                "frames carry a 4-byte length",
            ),
            (
                "uncommitted_bytes_max",
                "entry_bytes_max".into(),
                self.entry_bytes_max,
                "uncommitted_bytes_max".into(),
                self.uncommitted_bytes_max,
                "the leader must accept the largest entry",
            ),
            (
                "request_bytes_max",
                "entry_bytes_max".into(),
                self.entry_bytes_max,
                "request_bytes_max".into(),
                self.request_bytes_max,
                "a client request must carry the largest entry",
            ),
        ];
        for (key, low_name, low, high_name, high, why) in relations {
            if low > high {
                return Err(LimitsError {
                    key,
                    reason: format!("{low_name}={low} exceeds {high_name}={high} ({why})"),
                });
            }
        }
        Ok(())
    }

    /// `frame_bytes_max` as the transport's 4-byte length; valid limits fit.
    pub fn frame_bytes_max_u32(&self) -> u32 {
        u32::try_from(self.frame_bytes_max).expect("validated: frame_bytes_max fits u32")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Term};
    use crate::transport::PeerFrame;

    #[test]
    fn the_default_table_is_valid_and_derived_from_one_mebibyte_values() {
        let limits = Limits::default();
        limits.validate().unwrap();
        assert_eq!(limits.value_bytes_max, MIB);
        assert_eq!(limits.entry_bytes_max, MIB + ENTRY_OVERHEAD_BYTES);
        assert_eq!(limits.append_bytes_max, limits.entry_bytes_max);
        assert_eq!(
            limits.frame_bytes_max,
            limits.append_bytes_max + MESSAGE_OVERHEAD_BYTES
        );
        assert_eq!(limits.wal_record_bytes_max, 16 * MIB);
    }

    #[test]
    fn derived_tables_are_valid_from_one_byte_to_large_values() {
        for value in [1, 100, KIB, MIB, 16 * MIB, 64 * MIB] {
            let limits = Limits::derive(value);
            assert_eq!(limits.validate(), Ok(()), "value_bytes_max={value}");
        }
    }

    #[test]
    fn an_override_raises_the_limits_derived_from_it() {
        let limits = Limits::with_overrides(&LimitsOverrides {
            entry_bytes_max: Some(4 * MIB),
            ..LimitsOverrides::default()
        });
        limits.validate().unwrap();
        assert_eq!(limits.value_bytes_max, MIB);
        assert_eq!(limits.append_bytes_max, 4 * MIB);
        assert_eq!(limits.frame_bytes_max, 4 * MIB + MESSAGE_OVERHEAD_BYTES);
        assert_eq!(limits.uncommitted_bytes_max, 32 * MIB);
    }

    #[test]
    fn a_value_limit_beyond_the_wal_format_is_refused() {
        let e = Limits::derive(300 * MIB).validate().unwrap_err();
        assert_eq!(e.key, "wal_record_bytes_max", "{e}");
    }

    #[test]
    fn each_broken_relation_names_its_limit_and_values() {
        let base = Limits::default();
        let cases = [
            (
                Limits {
                    value_bytes_max: 0,
                    ..base.clone()
                },
                "bad limits.value_bytes_max: must be at least 1",
            ),
            (
                Limits {
                    entry_bytes_max: MIB,
                    ..base.clone()
                },
                "bad limits.entry_bytes_max: value_bytes_max + 65536=1114112 exceeds entry_bytes_max=1048576",
            ),
            (
                Limits {
                    append_bytes_max: MIB,
                    ..base.clone()
                },
                "bad limits.append_bytes_max: entry_bytes_max=1114112 exceeds append_bytes_max=1048576",
            ),
            (
                Limits {
                    frame_bytes_max: base.append_bytes_max,
                    ..base.clone()
                },
                "bad limits.frame_bytes_max: append_bytes_max + 256=1114368 exceeds frame_bytes_max=1114112",
            ),
            (
                Limits {
                    wal_record_bytes_max: MIB,
                    ..base.clone()
                },
                "bad limits.wal_record_bytes_max: frame_bytes_max=1114368 exceeds wal_record_bytes_max=1048576",
            ),
            (
                Limits {
                    uncommitted_bytes_max: MIB,
                    ..base.clone()
                },
                "bad limits.uncommitted_bytes_max: entry_bytes_max=1114112 exceeds uncommitted_bytes_max=1048576",
            ),
            (
                Limits {
                    inflight_bytes_max: MIB,
                    ..base.clone()
                },
                "bad limits.inflight_bytes_max: append_bytes_max=1114112 exceeds inflight_bytes_max=1048576",
            ),
            (
                Limits {
                    snapshot_chunk_bytes: base.frame_bytes_max,
                    ..base.clone()
                },
                "bad limits.snapshot_chunk_bytes: snapshot_chunk_bytes + 65792=1180160 exceeds frame_bytes_max=1114368",
            ),
            (
                Limits {
                    request_bytes_max: MIB,
                    ..base.clone()
                },
                "bad limits.request_bytes_max: entry_bytes_max=1114112 exceeds request_bytes_max=1048576",
            ),
        ];
        for (limits, want) in cases {
            let line = limits.validate().unwrap_err().to_string();
            assert!(line.starts_with(want), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    fn worst_entry(data_bytes: usize) -> Entry {
        Entry {
            term: Term(u64::MAX),
            index: LogIndex(u64::MAX),
            payload: EntryPayload::Command(vec![0xff; data_bytes].into()),
        }
    }

    /// The relation `append_bytes_max + MESSAGE_OVERHEAD_BYTES <=
    /// frame_bytes_max` is only as good as the two overheads: checked on
    /// the encoding itself, with every varint at its longest.
    #[test]
    fn an_append_at_the_byte_limit_fits_the_frame_limit() {
        let mut entries = Vec::new();
        let mut bytes = 0;
        for size in [Limits::default().value_bytes_max, 1000, 0, 70_000] {
            let entry = worst_entry(size);
            bytes += entry.size_bytes();
            entries.push(entry);
        }
        let frame = PeerFrame::Message(Message {
            from: NodeId(u64::MAX),
            to: NodeId(u64::MAX),
            term: Term(u64::MAX),
            body: MessageBody::Append {
                prev_index: LogIndex(u64::MAX),
                prev_term: Term(u64::MAX),
                entries,
                commit: LogIndex(u64::MAX),
                sent_at_us: u64::MAX,
            },
        });
        let encoded = postcard::to_allocvec(&frame).unwrap().len();
        assert!(
            encoded <= bytes + MESSAGE_OVERHEAD_BYTES,
            "encoded={encoded} entries={bytes} overhead={MESSAGE_OVERHEAD_BYTES}"
        );
    }
}
