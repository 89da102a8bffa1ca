//! What the KV state machine answers: typed, independent of any wire
//! format. The same replies are kept in the client sessions (and so in
//! snapshots), so their serialized form is part of the snapshot format;
//! the Redis encoding is the server's business (`src/server/reply.rs`).

use crate::core::LogIndex;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A stored value, shared between the log entry that wrote it (a SET's
/// value is a slice of its entry's buffer), the map, the replies that
/// return it and any snapshot being written: reading a megabyte value
/// copies a pointer. `Bytes` serializes as a byte string.
pub type Shared = bytes::Bytes;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvReply {
    /// The write happened (SET).
    Ok,
    /// No value: GET of a missing key, SET NX/XX that did not write, or
    /// SET GET of a key that had none.
    Nil,
    /// A value: GET, or SET GET's old value.
    Value(Shared),
    /// A count or a number: DEL, EXISTS, APPEND, INCR, CAS (1 or 0).
    Integer(i64),
    /// MGET: one entry per key asked for.
    Values(Vec<Option<Shared>>),
    /// The client's session was registered under this id (its
    /// registration's log index).
    Registered(u64),
    /// The command was refused; nothing changed.
    Error(KvError),
}

/// Why a command was refused. The texts (`Display`) are Redis's where
/// Redis has the same check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvError {
    /// INCR of a value that is not a decimal i64.
    NotAnInteger,
    /// INCR past i64's range.
    Overflow,
    /// APPEND past `value_bytes_max`.
    StringTooLong,
    /// A copy of a write older than the client's last one: its reply was
    /// delivered already (one write in flight per client), so it is never
    /// applied.
    Superseded {
        client_id: u64,
        seq: u64,
        last_seq: u64,
    },
    /// The session is unknown: forgotten to make room for newer ones (the
    /// table is bounded), or never registered. The command is not applied,
    /// because a forgotten session can no longer tell a retry from a new
    /// write; the client must register again.
    SessionExpired { client_id: u64 },
    /// Bytes in the log that are no command of this version.
    Undecodable { index: LogIndex, problem: String },
    /// An error reply kept, as text, by a session in a snapshot written
    /// before replies were typed (snapshot format 2).
    Legacy(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::NotAnInteger => f.write_str("ERR value is not an integer or out of range"),
            KvError::Overflow => f.write_str("ERR increment or decrement would overflow"),
            // Redis's text for the same check (`checkStringLength`).
            KvError::StringTooLong => {
                f.write_str("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
            }
            KvError::Superseded {
                client_id,
                seq,
                last_seq,
            } => write!(
                f,
                "ERR duplicate request: client {client_id} seq {seq} was superseded by seq {last_seq}"
            ),
            KvError::SessionExpired { client_id } => write!(
                f,
                "SESSIONEXPIRED client session {client_id} is unknown to the cluster (forgotten or never registered); the command was not applied"
            ),
            KvError::Undecodable { index, problem } => {
                write!(f, "ERR undecodable command at index {index}: {problem}")
            }
            KvError::Legacy(text) => f.write_str(text),
        }
    }
}

impl KvReply {
    pub fn value_or_nil(value: Option<&Shared>) -> KvReply {
        match value {
            Some(v) => KvReply::Value(v.clone()),
            None => KvReply::Nil,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, KvReply::Error(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_through_postcard() {
        let replies = [
            KvReply::Ok,
            KvReply::Nil,
            KvReply::Value(Shared::from(&b"v\r\n\0"[..])),
            KvReply::Integer(-7),
            KvReply::Values(vec![Some(Shared::from(&b"a"[..])), None]),
            KvReply::Registered(42),
            KvReply::Error(KvError::Superseded {
                client_id: 1,
                seq: 2,
                last_seq: 3,
            }),
            KvReply::Error(KvError::Legacy("ERR old".into())),
        ];
        for reply in replies {
            let bytes = postcard::to_allocvec(&reply).unwrap();
            assert_eq!(postcard::from_bytes::<KvReply>(&bytes).unwrap(), reply);
        }
    }

    /// A value is written as its bytes, not as a sequence of numbers.
    #[test]
    fn a_value_is_stored_as_a_byte_string() {
        let bytes = postcard::to_allocvec(&KvReply::Value(Shared::from(vec![200u8; 300]))).unwrap();
        assert_eq!(bytes.len(), 1 + 2 + 300);
    }
}
