//! The replicated key-value state machine.
//!
//! Every node applies the same committed `KvCommand`s in the same order and
//! must end in the same state with the same replies, so everything here is a
//! function of the log alone: ordered maps, no clock, no randomness, and
//! limits taken from a [`KvStoreConfig`] that must be identical on every node.
//!
//! **Exactly-once writes.** A client's write can reach the log twice: the
//! forwarder times out and retries, or a new leader re-proposes. Each command
//! carries `(client_id, seq)`; the store remembers, per client, the last seq
//! it applied and the reply it gave, and answers a repeat from that memory
//! instead of applying again (Raft dissertation, section 6.3). This requires
//! that a client (a `client_id`) has at most one write in flight and numbers
//! its writes 1, 2, 3, ...; `seq == 0` opts out of deduplication.
//!
//! **Sessions are registered and bounded.** A client first commits a
//! registration; its id is that entry's log index, so ids are unique and
//! every id the cluster ever gave out is below the applied index. The
//! table keeps at most `sessions_max` sessions and forgets the least
//! recently used. A command whose session is unknown is refused
//! (`SessionExpired`), never executed: a late copy of a write whose session
//! was forgotten could otherwise run a second time (dissertation 6.3). The
//! client registers again and decides what to tell its user.

#[cfg(test)]
mod tests;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::command::{ReadOp, SetCondition, WriteOp};
use super::reply::{KvError, KvReply, Shared};
use super::resp::{RespLimits, Value, parse_i64, parse_reply};
use crate::core::LogIndex;
use crate::limits::Limits;
use crate::state_machine::{SnapshotJob, StateMachine};

/// First byte of every log command: log entries outlive binaries.
/// 1: a bare `KvCommand`, whose unknown session was created by its first
/// write (still read, with that meaning, from old logs).
const COMMAND_FORMAT_LEGACY: u8 = 1;
/// 2: a [`LogCommand`]; sessions are registered, an unknown one expired.
const COMMAND_FORMAT_VERSION: u8 = 2;
/// First byte of every snapshot. 2: keys and values as byte strings, the
/// map and the sessions as sequences (written from persistent maps), each
/// session's last reply in RESP (still read). 3: the replies typed.
const SNAPSHOT_FORMAT_LEGACY: u8 = 2;
const SNAPSHOT_FORMAT_VERSION: u8 = 3;

/// The maps are persistent (imbl): cloning one is O(1) and later writes
/// copy only the nodes they touch, so a snapshot is a clone taken on the
/// Raft thread and serialized on another (DESIGN.md 5). Values are shared
/// (`Bytes`), so a copied node copies pointers, not megabytes of values.
type Data = imbl::OrdMap<Vec<u8>, Shared>;
type Sessions = imbl::OrdMap<u64, Session>;

/// One write, as stored in the Raft log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCommand {
    pub client_id: u64,
    /// 1, 2, 3, ... per client; 0 means "do not deduplicate".
    pub seq: u64,
    pub op: WriteOp,
}

/// One entry's command, as stored in the Raft log (format 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogCommand {
    /// Open a client session; its id is this entry's index.
    Register,
    Write(KvCommand),
}

/// A `KvCommand` with the op borrowed. Postcard writes a struct as its
/// fields in order and a reference as what it refers to, and an enum as
/// its variant index and then its content, so `LogWrite(KvCommandRef)`
/// encodes to the bytes of `LogCommand::Write(KvCommand)` (tested).
#[derive(Serialize)]
struct KvCommandRef<'a> {
    client_id: u64,
    seq: u64,
    op: &'a WriteOp,
}

struct LogWrite<'a>(KvCommandRef<'a>);

/// `LogCommand::Write`'s index among `LogCommand`'s variants.
const LOG_COMMAND_WRITE: u32 = 1;

impl Serialize for LogWrite<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_variant("LogCommand", LOG_COMMAND_WRITE, "Write", &self.0)
    }
}

/// A decoded log command, and whether it follows the registered-session
/// rule (format 2) or the legacy one (format 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub command: LogCommand,
    pub registered_sessions: bool,
}

/// A log command as the store decodes it: its byte strings borrowed from
/// the entry, so that a SET's value is kept as a slice of the entry's
/// buffer (`Bytes::slice_ref`), not copied out of it. The `*In` types
/// mirror `LogCommand`, `KvCommand` and `WriteOp` variant for variant and
/// field for field: postcard writes a `Vec<u8>` and a `&[u8]` alike (a
/// length, then the bytes), so they read the same log format (tested).
struct DecodedIn<'a> {
    command: LogCommandIn<'a>,
    registered_sessions: bool,
}

#[derive(Deserialize)]
enum LogCommandIn<'a> {
    Register,
    Write(#[serde(borrow)] KvCommandIn<'a>),
}

#[derive(Deserialize)]
struct KvCommandIn<'a> {
    client_id: u64,
    seq: u64,
    #[serde(borrow)]
    op: WriteOpIn<'a>,
}

#[derive(Deserialize)]
enum WriteOpIn<'a> {
    Set {
        key: &'a [u8],
        value: &'a [u8],
        condition: SetCondition,
        get: bool,
    },
    Del(#[serde(borrow)] Vec<&'a [u8]>),
    Append {
        key: &'a [u8],
        value: &'a [u8],
    },
    IncrBy {
        key: &'a [u8],
        delta: i64,
    },
    Cas {
        key: &'a [u8],
        expected: &'a [u8],
        new: &'a [u8],
    },
}

impl<'a> DecodedIn<'a> {
    fn decode(bytes: &'a [u8]) -> Result<DecodedIn<'a>, String> {
        match bytes.first() {
            Some(&COMMAND_FORMAT_LEGACY) => Ok(DecodedIn {
                command: LogCommandIn::Write(decode_exact(&bytes[1..], "command")?),
                registered_sessions: false,
            }),
            _ => {
                let body = versioned_body(bytes, COMMAND_FORMAT_VERSION, "command")?;
                Ok(DecodedIn {
                    command: decode_exact(body, "command")?,
                    registered_sessions: true,
                })
            }
        }
    }

    fn owned(&self) -> Decoded {
        let command = match &self.command {
            LogCommandIn::Register => LogCommand::Register,
            LogCommandIn::Write(c) => LogCommand::Write(KvCommand {
                client_id: c.client_id,
                seq: c.seq,
                op: c.op.owned(),
            }),
        };
        Decoded {
            command,
            registered_sessions: self.registered_sessions,
        }
    }
}

impl WriteOpIn<'_> {
    fn owned(&self) -> WriteOp {
        match *self {
            WriteOpIn::Set {
                key,
                value,
                condition,
                get,
            } => WriteOp::Set {
                key: key.to_vec(),
                value: value.to_vec(),
                condition,
                get,
            },
            WriteOpIn::Del(ref keys) => WriteOp::Del(keys.iter().map(|k| k.to_vec()).collect()),
            WriteOpIn::Append { key, value } => WriteOp::Append {
                key: key.to_vec(),
                value: value.to_vec(),
            },
            WriteOpIn::IncrBy { key, delta } => WriteOp::IncrBy {
                key: key.to_vec(),
                delta,
            },
            WriteOpIn::Cas { key, expected, new } => WriteOp::Cas {
                key: key.to_vec(),
                expected: expected.to_vec(),
                new: new.to_vec(),
            },
        }
    }
}

impl KvCommand {
    /// The bytes to propose: a version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        KvCommand::encode_parts(self.client_id, self.seq, &self.op)
    }

    /// The bytes of `LogCommand::Write` of a `KvCommand` with these fields,
    /// from a borrowed op: a client thread encodes a write from the op it
    /// parsed (once per attempt), never from a copy of it.
    pub fn encode_parts(client_id: u64, seq: u64, op: &WriteOp) -> Vec<u8> {
        command_bytes(&LogWrite(KvCommandRef { client_id, seq, op }))
    }

    /// The bytes of a session registration.
    pub fn register() -> Vec<u8> {
        LogCommand::Register.encode()
    }
}

impl LogCommand {
    pub fn encode(&self) -> Vec<u8> {
        command_bytes(self)
    }

    /// Decodes what the store would apply (through the same decoder).
    pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
        DecodedIn::decode(bytes).map(|decoded| decoded.owned())
    }
}

/// Settings that shape the replicated state: every node of a cluster must
/// use the same values, or their states (and replies) diverge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStoreConfig {
    /// Client sessions remembered for deduplication; past this, the session
    /// used least recently (by log index) is forgotten.
    pub sessions_max: usize,
    /// Longest value APPEND may produce (SET's values are checked before
    /// they reach the log, by `CommandLimits`).
    pub value_bytes_max: usize,
}

impl Default for KvStoreConfig {
    fn default() -> Self {
        KvStoreConfig {
            sessions_max: Limits::default().sessions_max,
            value_bytes_max: Limits::default().value_bytes_max,
        }
    }
}

/// What the store remembers about one client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    last_seq: u64,
    /// The reply to `last_seq`, replayed to a retry.
    last_reply: KvReply,
    /// The log index that last used this session: the eviction order.
    last_used: LogIndex,
}

#[derive(Debug)]
pub struct KvStore {
    config: KvStoreConfig,
    data: Data,
    sessions: Sessions,
    /// `last_used` → client id, for least-recently-used eviction. Exactly
    /// the inverse of `sessions`' `last_used`: one index touches one session.
    sessions_by_use: BTreeMap<LogIndex, u64>,
    applied: LogIndex,
}

/// The snapshot's contents, a view for writing: (applied, [(key, value)],
/// [(client id, session)]), each sequence with its length first.
struct SnapshotView {
    applied: LogIndex,
    data: Data,
    sessions: Sessions,
}

impl Serialize for SnapshotView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let data = Pairs(
            self.data
                .iter()
                .map(|(k, v)| (serde_bytes::Bytes::new(k), serde_bytes::Bytes::new(v))),
        );
        let sessions = Pairs(self.sessions.iter());
        let mut tuple = serializer.serialize_tuple(3)?;
        tuple.serialize_element(&self.applied)?;
        tuple.serialize_element(&data)?;
        tuple.serialize_element(&sessions)?;
        tuple.end()
    }
}

/// Serializes an iterator of known length as a sequence, without
/// collecting it first.
struct Pairs<I>(I);

impl<I, T> Serialize for Pairs<I>
where
    I: Iterator<Item = T> + ExactSizeIterator + Clone,
    T: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

/// The snapshot's contents, owned for reading.
#[derive(Deserialize)]
struct SnapshotOwned {
    applied: LogIndex,
    data: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    sessions: Vec<(u64, Session)>,
}

/// Format 2's contents: each session's reply in RESP.
#[derive(Deserialize)]
struct SnapshotLegacy {
    applied: LogIndex,
    data: Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>,
    sessions: Vec<(u64, SessionLegacy)>,
}

#[derive(Deserialize)]
struct SessionLegacy {
    last_seq: u64,
    #[serde(with = "serde_bytes")]
    last_reply: Vec<u8>,
    last_used: LogIndex,
}

impl SnapshotLegacy {
    fn upgrade(self) -> Result<SnapshotOwned, String> {
        let sessions = self
            .sessions
            .into_iter()
            .map(|(client_id, s)| {
                let last_reply = typed_legacy_reply(&s.last_reply)
                    .map_err(|e| format!("session of client {client_id}: {e}"))?;
                let session = Session {
                    last_seq: s.last_seq,
                    last_reply,
                    last_used: s.last_used,
                };
                Ok((client_id, session))
            })
            .collect::<Result<_, String>>()?;
        Ok(SnapshotOwned {
            applied: self.applied,
            data: self.data,
            sessions,
        })
    }
}

/// A reply the store of snapshot format 2 kept in RESP, typed.
fn typed_legacy_reply(resp: &[u8]) -> Result<KvReply, String> {
    let value = match parse_reply(resp, &RespLimits::default()) {
        Ok(Some((value, used))) if used == resp.len() => value,
        _ => return Err("its last reply is not one RESP value".into()),
    };
    let bulk = |v: Value| match v {
        Value::Bulk(b) => Ok(Some(Shared::from(b))),
        Value::NullBulk => Ok(None),
        other => Err(format!("unexpected item {other:?} in a reply")),
    };
    Ok(match value {
        Value::Simple(s) if s == "OK" => KvReply::Ok,
        Value::NullBulk => KvReply::Nil,
        Value::Bulk(b) => KvReply::Value(Shared::from(b)),
        Value::Integer(n) => KvReply::Integer(n),
        Value::Error(text) => KvReply::Error(KvError::Legacy(text)),
        Value::Array(items) => {
            KvReply::Values(items.into_iter().map(bulk).collect::<Result<_, _>>()?)
        }
        other => return Err(format!("unexpected reply {other:?}")),
    })
}

impl SnapshotView {
    fn encode(&self) -> Vec<u8> {
        // Not sized first: that would walk every key twice.
        versioned_bytes(SNAPSHOT_FORMAT_VERSION, self, 0)
    }
}

impl KvStore {
    pub fn new(config: KvStoreConfig) -> KvStore {
        assert!(config.sessions_max > 0, "sessions_max must be positive");
        KvStore {
            config,
            data: Data::new(),
            sessions: Sessions::new(),
            sessions_by_use: BTreeMap::new(),
            applied: LogIndex(0),
        }
    }

    /// Serves a read. The caller is responsible for linearizability: call
    /// only once `applied_index()` has reached the read's ReadIndex.
    pub fn read(&self, op: &ReadOp) -> KvReply {
        match op {
            ReadOp::Get(key) => KvReply::value_or_nil(self.data.get(key)),
            ReadOp::Exists(keys) => {
                let count = keys.iter().filter(|k| self.data.contains_key(*k)).count();
                KvReply::Integer(count as i64)
            }
            ReadOp::MGet(keys) => {
                KvReply::Values(keys.iter().map(|k| self.data.get(k).cloned()).collect())
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.data.get(key).map(|v| &v[..])
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Number of client sessions remembered for deduplication.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// A short description of the state, for failure reports: the applied
    /// index, each key with its value's length and hash, each session.
    pub fn describe(&self) -> String {
        let hash = |b: &[u8]| {
            b.iter().fold(0xcbf29ce484222325u64, |h, x| {
                (h ^ *x as u64).wrapping_mul(0x100000001b3)
            })
        };
        let keys: Vec<String> = self
            .data
            .iter()
            .map(|(k, v)| format!("{}={}b/{:x}", String::from_utf8_lossy(k), v.len(), hash(v)))
            .collect();
        let sessions: Vec<String> = self
            .sessions
            .iter()
            .map(|(c, s)| {
                let reply = postcard::to_allocvec(&s.last_reply).expect("a Vec cannot fail");
                format!("{c}:seq{}@{}/{:x}", s.last_seq, s.last_used, hash(&reply))
            })
            .collect();
        format!(
            "applied {} keys [{}] sessions [{}]",
            self.applied,
            keys.join(" "),
            sessions.join(" ")
        )
    }

    /// Applies one decoded command at `index`, deduplicating by session;
    /// `entry` is the buffer it was decoded from.
    fn apply_command(&mut self, index: LogIndex, decoded: DecodedIn, entry: &Bytes) -> KvReply {
        let command = match decoded.command {
            LogCommandIn::Register => {
                let reply = KvReply::Registered(index.0);
                self.record_session(index.0, 0, reply.clone(), index);
                return reply;
            }
            LogCommandIn::Write(command) => command,
        };
        let KvCommandIn { client_id, seq, op } = command;
        if seq == 0 {
            return self.execute(op, entry);
        }
        match self.sessions.get(&client_id) {
            Some(session) => {
                let last_seq = session.last_seq;
                if seq < last_seq {
                    // Its reply was delivered (one write in flight per
                    // client) or nobody waits for it; never apply it.
                    return KvReply::Error(KvError::Superseded {
                        client_id,
                        seq,
                        last_seq,
                    });
                }
                if seq == last_seq {
                    let reply = session.last_reply.clone();
                    self.touch_session(client_id, index);
                    return reply;
                }
            }
            // Forgotten, or never registered: this may be a late copy of a
            // write that was applied, so it must not run (module docs).
            None if decoded.registered_sessions => {
                return KvReply::Error(KvError::SessionExpired { client_id });
            }
            // Format 1: the first write opened the session.
            None => {}
        }
        let reply = self.execute(op, entry);
        self.record_session(client_id, seq, reply.clone(), index);
        reply
    }

    /// Stored values are slices of `entry`, the op's own buffer.
    fn execute(&mut self, op: WriteOpIn, entry: &Bytes) -> KvReply {
        match op {
            WriteOpIn::Set {
                key,
                value,
                condition,
                get,
            } => self.set(key, entry.slice_ref(value), condition, get),
            WriteOpIn::Del(keys) => {
                let removed = keys
                    .iter()
                    .filter(|k| self.data.remove(**k).is_some())
                    .count();
                KvReply::Integer(removed as i64)
            }
            WriteOpIn::Append { key, value } => self.append(key, value),
            WriteOpIn::IncrBy { key, delta } => self.incr_by(key, delta),
            WriteOpIn::Cas { key, expected, new } => match self.data.get_mut(key) {
                Some(current) if **current == *expected => {
                    *current = entry.slice_ref(new);
                    KvReply::Integer(1)
                }
                _ => KvReply::Integer(0),
            },
        }
    }

    /// Redis 7 semantics: with GET the reply is the old value (or nil)
    /// whether or not the condition let the write happen; without GET it is
    /// OK, or nil when NX/XX prevented the write.
    fn set(&mut self, key: &[u8], value: Shared, condition: SetCondition, get: bool) -> KvReply {
        let old = self.data.get(key);
        let allowed = match condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => old.is_none(),
            SetCondition::IfPresent => old.is_some(),
        };
        let reply = match (get, allowed) {
            (true, _) => KvReply::value_or_nil(old),
            (false, true) => KvReply::Ok,
            (false, false) => KvReply::Nil,
        };
        if allowed {
            self.data.insert(key.to_vec(), value);
        }
        reply
    }

    fn append(&mut self, key: &[u8], value: &[u8]) -> KvReply {
        let current_len = self.data.get(key).map_or(0, |v| v.len());
        let new_len = current_len.saturating_add(value.len());
        if new_len > self.config.value_bytes_max {
            return KvReply::Error(KvError::StringTooLong);
        }
        let mut appended = Vec::with_capacity(new_len);
        appended.extend_from_slice(self.data.get(key).map_or(&[][..], |v| &v[..]));
        appended.extend_from_slice(value);
        self.data.insert(key.to_vec(), Shared::from(appended));
        KvReply::Integer(new_len as i64)
    }

    fn incr_by(&mut self, key: &[u8], delta: i64) -> KvReply {
        let current = match self.data.get(key) {
            None => 0,
            Some(bytes) => match parse_i64(bytes) {
                Some(n) => n,
                None => return KvReply::Error(KvError::NotAnInteger),
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return KvReply::Error(KvError::Overflow);
        };
        self.data
            .insert(key.to_vec(), Shared::from(next.to_string().into_bytes()));
        KvReply::Integer(next)
    }

    fn record_session(&mut self, client_id: u64, seq: u64, reply: KvReply, index: LogIndex) {
        if let Some(old) = self.sessions.insert(
            client_id,
            Session {
                last_seq: seq,
                last_reply: reply,
                last_used: index,
            },
        ) {
            self.sessions_by_use.remove(&old.last_used);
        }
        self.sessions_by_use.insert(index, client_id);
        self.evict_sessions();
    }

    fn touch_session(&mut self, client_id: u64, index: LogIndex) {
        let session = self
            .sessions
            .get_mut(&client_id)
            .expect("touched session exists");
        self.sessions_by_use.remove(&session.last_used);
        session.last_used = index;
        self.sessions_by_use.insert(index, client_id);
    }

    /// Forgets the least recently used sessions beyond `sessions_max`. The
    /// order is by log index, so every node forgets the same ones.
    fn evict_sessions(&mut self) {
        while self.sessions.len() > self.config.sessions_max {
            let (_, client_id) = self
                .sessions_by_use
                .pop_first()
                .expect("index matches sessions");
            self.sessions.remove(&client_id);
        }
        self.assert_sessions_indexed();
    }

    fn assert_sessions_indexed(&self) {
        debug_assert_eq!(
            self.sessions.len(),
            self.sessions_by_use.len(),
            "sessions and their use index disagree"
        );
    }
}

impl StateMachine for KvStore {
    type Output = KvReply;

    fn apply(&mut self, index: LogIndex, command: &Bytes) -> KvReply {
        assert!(
            index > self.applied,
            "apply out of order: index={index} applied={}",
            self.applied
        );
        self.applied = index;
        match DecodedIn::decode(command) {
            Ok(decoded) => self.apply_command(index, decoded, command),
            // Still applied: every node decodes the same bytes the same way.
            Err(problem) => KvReply::Error(KvError::Undecodable { index, problem }),
        }
    }

    fn applied_index(&self) -> LogIndex {
        self.applied
    }

    fn snapshot(&self) -> Vec<u8> {
        self.snapshot_job()()
    }

    /// Two O(1) clones of the persistent maps; the job serializes them.
    fn snapshot_job(&self) -> SnapshotJob {
        let view = SnapshotView {
            applied: self.applied,
            data: self.data.clone(),
            sessions: self.sessions.clone(),
        };
        Box::new(move || view.encode())
    }

    /// `index` may be past the snapshot's own applied index: entries that
    /// carry no command (no-ops, configuration) advance the log without
    /// reaching the store.
    fn restore(&mut self, index: LogIndex, snapshot: &[u8]) -> Result<(), String> {
        let contents: SnapshotOwned = match snapshot.first() {
            Some(&SNAPSHOT_FORMAT_LEGACY) => {
                decode_exact::<SnapshotLegacy>(&snapshot[1..], "snapshot")?.upgrade()?
            }
            _ => {
                let body = versioned_body(snapshot, SNAPSHOT_FORMAT_VERSION, "snapshot")?;
                decode_exact(body, "snapshot")?
            }
        };
        if contents.applied > index {
            return Err(format!(
                "snapshot covers index {} but was installed at index {index}",
                contents.applied
            ));
        }
        let mut sessions_by_use = BTreeMap::new();
        for (client_id, session) in &contents.sessions {
            if session.last_used > contents.applied {
                return Err(format!(
                    "snapshot session of client {client_id} used at index {} after the snapshot's index {}",
                    session.last_used, contents.applied
                ));
            }
            if let Some(other) = sessions_by_use.insert(session.last_used, *client_id) {
                return Err(format!(
                    "snapshot sessions of clients {other} and {client_id} both used at index {}",
                    session.last_used
                ));
            }
        }
        self.data = contents
            .data
            .into_iter()
            .map(|(k, v)| (k.into_vec(), Shared::from(v.into_vec())))
            .collect();
        self.sessions = contents.sessions.into_iter().collect();
        self.sessions_by_use = sessions_by_use;
        // The store's own applied index, as on every node that applied the
        // log: entries after it up to `index` carried no command.
        self.applied = contents.applied;
        self.evict_sessions();
        Ok(())
    }
}

/// A version byte, then `value` in postcard: the form of every log command
/// and snapshot this store writes (read back by `versioned_body`).
fn versioned_bytes(version: u8, value: &impl Serialize, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(version);
    postcard::to_io(value, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// A log command, in a buffer sized exactly: a SET's value stays a slice
/// of it for as long as the key holds it, spare capacity included.
fn command_bytes(command: &impl Serialize) -> Vec<u8> {
    let len = postcard::experimental::serialized_size(command).expect("sizing cannot fail");
    let out = versioned_bytes(COMMAND_FORMAT_VERSION, command, 1 + len);
    debug_assert_eq!(out.len(), 1 + len, "postcard sized it");
    out
}

/// The bytes after a matching version byte.
fn versioned_body<'a>(bytes: &'a [u8], version: u8, what: &str) -> Result<&'a [u8], String> {
    match bytes.split_first() {
        None => Err(format!("empty {what}")),
        Some((&found, body)) if found == version => Ok(body),
        Some((&found, _)) => Err(format!(
            "{what} format version {found} is not supported (expected {version})"
        )),
    }
}

/// Decodes postcard and insists that every byte was used: trailing bytes
/// mean the writer and reader disagree about the format.
fn decode_exact<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, String> {
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| format!("{what} does not decode: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{what} has {} trailing bytes", rest.len()));
    }
    Ok(value)
}
