use super::*;
use crate::kv::command::{CommandLimits, Request};

/// A store plus a log position, applying commands the way the Raft thread
/// does (one index per command).
struct Harness {
    store: KvStore,
    next_index: u64,
}

impl Harness {
    fn new() -> Self {
        Self::with_config(KvStoreConfig::default())
    }

    fn with_config(config: KvStoreConfig) -> Self {
        Harness {
            store: KvStore::new(config),
            next_index: 1,
        }
    }

    fn apply_bytes(&mut self, bytes: &[u8]) -> KvReply {
        let index = LogIndex(self.next_index);
        self.next_index += 1;
        self.store.apply(index, &Bytes::copy_from_slice(bytes))
    }

    fn apply_as(&mut self, client_id: u64, seq: u64, op: WriteOp) -> Value {
        let reply = self.apply_bytes(&KvCommand { client_id, seq, op }.encode());
        reply_value(&reply)
    }

    /// Opens a session; its id is the registration's index.
    fn register(&mut self) -> u64 {
        let index = self.next_index;
        assert_eq!(
            self.apply_bytes(&KvCommand::register()),
            KvReply::Registered(index)
        );
        index
    }

    /// Runs a command line, writes through the log and reads directly.
    fn run(&mut self, words: &[&str]) -> Value {
        let args = words[1..].iter().map(|w| w.as_bytes().to_vec()).collect();
        let request = Request::from_args(words[0].into(), args, &CommandLimits::default())
            .unwrap_or_else(|e| panic!("{words:?}: {e}"));
        match request {
            Request::Write(op) => self.apply_as(0, 0, op),
            Request::Read(op) => reply_value(&self.store.read(&op)),
            Request::Local(op) => panic!("local command in a store test: {op:?}"),
        }
    }
}

/// The reply as a Redis client would see it.
fn reply_value(reply: &KvReply) -> Value {
    let bytes = &crate::server::reply::to_bytes(reply);
    let (value, used) = crate::kv::resp::parse_reply(bytes, &Default::default())
        .expect("reply is valid RESP")
        .expect("reply is complete");
    assert_eq!(used, bytes.len(), "reply is exactly one value");
    value
}

fn bulk(s: &str) -> Value {
    Value::bulk(s.as_bytes())
}

trait IsError {
    fn is_error_reply(&self) -> bool;
}

impl IsError for Value {
    fn is_error_reply(&self) -> bool {
        matches!(self, Value::Error(_))
    }
}

fn int(n: i64) -> Value {
    Value::Integer(n)
}

fn err(s: &str) -> Value {
    Value::Error(s.to_string())
}

fn set_op(key: &str, value: &str) -> WriteOp {
    WriteOp::Set {
        key: key.into(),
        value: value.into(),
        condition: SetCondition::Always,
        get: false,
    }
}

#[test]
fn set_then_get() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SET", "k", "v"]), Value::ok());
    assert_eq!(h.run(&["GET", "k"]), bulk("v"));
    assert_eq!(h.run(&["GET", "missing"]), Value::NullBulk);
}

#[test]
fn set_nx_and_xx_follow_redis() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SET", "k", "1", "XX"]), Value::NullBulk);
    assert_eq!(h.run(&["GET", "k"]), Value::NullBulk);
    assert_eq!(h.run(&["SET", "k", "1", "NX"]), Value::ok());
    assert_eq!(h.run(&["SET", "k", "2", "NX"]), Value::NullBulk);
    assert_eq!(h.run(&["GET", "k"]), bulk("1"));
    assert_eq!(h.run(&["SET", "k", "3", "XX"]), Value::ok());
    assert_eq!(h.run(&["GET", "k"]), bulk("3"));
}

#[test]
fn set_get_returns_the_old_value_whether_or_not_it_wrote() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["SET", "k", "1", "GET"]), Value::NullBulk);
    assert_eq!(h.run(&["SET", "k", "2", "GET"]), bulk("1"));
    // NX GET on an existing key: not written, old value returned.
    assert_eq!(h.run(&["SET", "k", "3", "NX", "GET"]), bulk("2"));
    assert_eq!(h.run(&["GET", "k"]), bulk("2"));
    // XX GET on a missing key: not written, nil returned.
    assert_eq!(h.run(&["SET", "j", "1", "XX", "GET"]), Value::NullBulk);
    assert_eq!(h.run(&["EXISTS", "j"]), int(0));
    assert_eq!(h.run(&["SET", "k", "4", "XX", "GET"]), bulk("2"));
    assert_eq!(h.run(&["GET", "k"]), bulk("4"));
}

#[test]
fn del_counts_keys_actually_removed() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    h.run(&["SET", "b", "1"]);
    assert_eq!(h.run(&["DEL", "a", "b", "c", "a"]), int(2));
    assert_eq!(h.run(&["DEL", "a"]), int(0));
}

#[test]
fn exists_counts_duplicates() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    assert_eq!(h.run(&["EXISTS", "a", "a", "b"]), int(2));
}

#[test]
fn append_creates_missing_keys_and_returns_the_length() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["APPEND", "k", "ab"]), int(2));
    assert_eq!(h.run(&["APPEND", "k", "cde"]), int(5));
    assert_eq!(h.run(&["GET", "k"]), bulk("abcde"));
}

#[test]
fn append_beyond_the_value_limit_is_refused_and_changes_nothing() {
    let mut h = Harness::with_config(KvStoreConfig {
        value_bytes_max: 4,
        ..Default::default()
    });
    assert_eq!(h.run(&["APPEND", "k", "abc"]), int(3));
    assert_eq!(
        h.run(&["APPEND", "k", "de"]),
        err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    assert_eq!(h.run(&["GET", "k"]), bulk("abc"));
}

#[test]
fn incr_follows_redis() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["INCR", "n"]), int(1));
    assert_eq!(h.run(&["INCRBY", "n", "41"]), int(42));
    assert_eq!(h.run(&["INCRBY", "n", "-50"]), int(-8));
    assert_eq!(h.run(&["GET", "n"]), bulk("-8"));
    h.run(&["SET", "s", "abc"]);
    assert_eq!(
        h.run(&["INCR", "s"]),
        err("ERR value is not an integer or out of range")
    );
    h.run(&["SET", "s", " 1"]);
    assert_eq!(
        h.run(&["INCR", "s"]),
        err("ERR value is not an integer or out of range")
    );
    h.run(&["SET", "max", &i64::MAX.to_string()]);
    assert_eq!(
        h.run(&["INCR", "max"]),
        err("ERR increment or decrement would overflow")
    );
    assert_eq!(h.run(&["GET", "max"]), bulk(&i64::MAX.to_string()));
    h.run(&["SET", "min", &i64::MIN.to_string()]);
    assert_eq!(
        h.run(&["INCRBY", "min", "-1"]),
        err("ERR increment or decrement would overflow")
    );
}

#[test]
fn cas_swaps_only_on_an_exact_match() {
    let mut h = Harness::new();
    assert_eq!(
        h.run(&["CAS", "k", "a", "b"]),
        int(0),
        "missing key never matches"
    );
    assert_eq!(h.run(&["EXISTS", "k"]), int(0));
    h.run(&["SET", "k", "a"]);
    assert_eq!(h.run(&["CAS", "k", "x", "b"]), int(0));
    assert_eq!(h.run(&["CAS", "k", "a", "b"]), int(1));
    assert_eq!(h.run(&["GET", "k"]), bulk("b"));
}

#[test]
fn mget_returns_nil_for_missing_keys() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    h.run(&["SET", "c", "3"]);
    assert_eq!(
        h.run(&["MGET", "a", "b", "c"]),
        Value::Array(vec![bulk("1"), Value::NullBulk, bulk("3")])
    );
}

#[test]
fn a_retried_write_applies_once_and_gets_the_same_reply() {
    let mut h = Harness::new();
    let incr = WriteOp::IncrBy {
        key: "n".into(),
        delta: 1,
    };
    let (a, b) = (h.register(), h.register());
    assert_eq!(h.apply_as(a, 1, incr.clone()), int(1));
    assert_eq!(
        h.apply_as(a, 1, incr.clone()),
        int(1),
        "duplicate replays the reply"
    );
    assert_eq!(h.store.get(b"n"), Some(&b"1"[..]));
    assert_eq!(h.apply_as(a, 2, incr.clone()), int(2));
    assert_eq!(
        h.apply_as(b, 1, incr.clone()),
        int(3),
        "sessions are per client"
    );
}

#[test]
fn a_superseded_duplicate_is_refused_not_applied() {
    let mut h = Harness::new();
    let incr = WriteOp::IncrBy {
        key: "n".into(),
        delta: 1,
    };
    let c = h.register();
    h.apply_as(c, 1, incr.clone());
    h.apply_as(c, 2, incr.clone());
    let Value::Error(text) = h.apply_as(c, 1, incr) else {
        panic!("expected an error")
    };
    assert!(text.starts_with("ERR duplicate request"), "{text}");
    assert_eq!(h.store.get(b"n"), Some(&b"2"[..]));
}

#[test]
fn seq_zero_is_never_deduplicated() {
    let mut h = Harness::new();
    let incr = WriteOp::IncrBy {
        key: "n".into(),
        delta: 1,
    };
    h.apply_as(7, 0, incr.clone());
    assert_eq!(h.apply_as(7, 0, incr), int(2));
    assert_eq!(h.store.session_count(), 0);
}

#[test]
fn sessions_are_evicted_least_recently_used_first() {
    let mut h = Harness::with_config(KvStoreConfig {
        sessions_max: 2,
        ..Default::default()
    });
    let (c1, c2) = (h.register(), h.register());
    h.apply_as(c1, 1, set_op("a", "1"));
    h.apply_as(c2, 1, set_op("a", "2"));
    h.apply_as(c1, 1, set_op("a", "1")); // a duplicate refreshes client 1
    let c3 = h.register(); // evicts client 2
    h.apply_as(c3, 1, set_op("a", "3"));
    assert_eq!(h.store.session_count(), 2);
    // Client 2 was forgotten: a late copy of its write is refused, not run
    // again (it was applied at its first copy).
    let Value::Error(text) = h.apply_as(c2, 1, set_op("a", "2")) else {
        panic!("expected an error")
    };
    assert!(text.starts_with("SESSIONEXPIRED"), "{text}");
    assert_eq!(h.store.get(b"a"), Some(&b"3"[..]));
    // Client 3 was remembered, so its retry is deduplicated.
    h.apply_as(c3, 1, set_op("a", "4"));
    assert_eq!(h.store.get(b"a"), Some(&b"3"[..]));
    // So is a never-registered id: nothing is applied.
    assert!(h.apply_as(999, 1, set_op("a", "5")).is_error_reply());
    assert_eq!(h.store.get(b"a"), Some(&b"3"[..]));
}

/// Logs written before sessions were registered (command format 1) keep
/// their meaning on replay: a client's first write opens its session.
#[test]
fn a_format_1_command_opens_its_session_as_before() {
    let mut h = Harness::new();
    let legacy = |client_id, seq, op| {
        let mut bytes = vec![COMMAND_FORMAT_LEGACY];
        postcard::to_io(&KvCommand { client_id, seq, op }, &mut bytes).unwrap();
        bytes
    };
    let incr = WriteOp::IncrBy {
        key: "n".into(),
        delta: 1,
    };
    assert_eq!(
        h.apply_bytes(&legacy(7, 1, incr.clone())),
        KvReply::Integer(1)
    );
    assert_eq!(
        h.apply_bytes(&legacy(7, 1, incr.clone())),
        KvReply::Integer(1)
    );
    assert_eq!(h.store.session_count(), 1);
    assert_eq!(h.store.get(b"n"), Some(&b"1"[..]));
}

#[test]
fn an_undecodable_command_is_applied_as_an_error() {
    let mut h = Harness::new();
    for garbage in [&b""[..], b"\x01\xff\xff", b"\x09abc"] {
        let Value::Error(text) = reply_value(&h.apply_bytes(garbage)) else {
            panic!("not an error")
        };
        assert!(
            text.starts_with("ERR undecodable command at index"),
            "{text}"
        );
    }
    assert_eq!(h.store.applied_index(), LogIndex(3));
}

#[test]
fn commands_round_trip_through_their_encoding() {
    let command = KvCommand {
        client_id: u64::MAX,
        seq: 3,
        op: WriteOp::Cas {
            key: "k".into(),
            expected: vec![0, 255],
            new: vec![],
        },
    };
    let bytes = command.encode();
    assert_eq!(bytes[0], COMMAND_FORMAT_VERSION);
    assert_eq!(
        LogCommand::decode(&bytes),
        Ok(Decoded {
            command: LogCommand::Write(command),
            registered_sessions: true,
        })
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(
        LogCommand::decode(&trailing)
            .unwrap_err()
            .contains("trailing")
    );
    assert_eq!(
        LogCommand::decode(&KvCommand::register()).map(|d| d.command),
        Ok(LogCommand::Register)
    );
}

#[test]
fn snapshot_round_trips_data_sessions_and_index() {
    let mut h = Harness::new();
    let client = h.register();
    h.apply_as(
        client,
        1,
        WriteOp::IncrBy {
            key: "n".into(),
            delta: 5,
        },
    );
    let snapshot = h.store.snapshot();

    let mut restored = KvStore::new(KvStoreConfig::default());
    restored.restore(LogIndex(2), &snapshot).expect("restores");
    assert_eq!(restored.applied_index(), LogIndex(2));
    assert_eq!(restored.snapshot(), snapshot);
    // The session came along: the retry is still deduplicated.
    let retry = KvCommand {
        client_id: client,
        seq: 1,
        op: WriteOp::IncrBy {
            key: "n".into(),
            delta: 5,
        },
    };
    assert_eq!(
        reply_value(&restored.apply(LogIndex(3), &retry.encode().into())),
        int(5)
    );
    assert_eq!(restored.get(b"n"), Some(&b"5"[..]));
}

/// A snapshot of format 2 (replies kept in RESP) still restores, its
/// sessions' replies typed.
#[test]
fn a_format_2_snapshot_restores_with_typed_replies() {
    #[derive(serde::Serialize)]
    struct OldSession {
        last_seq: u64,
        #[serde(with = "serde_bytes")]
        last_reply: Vec<u8>,
        last_used: LogIndex,
    }
    let data = vec![(
        serde_bytes::ByteBuf::from(b"k".to_vec()),
        serde_bytes::ByteBuf::from(b"v".to_vec()),
    )];
    let sessions = vec![
        (
            7u64,
            OldSession {
                last_seq: 3,
                last_reply: b":12\r\n".to_vec(),
                last_used: LogIndex(4),
            },
        ),
        (
            9u64,
            OldSession {
                last_seq: 1,
                last_reply: b"-ERR boom\r\n".to_vec(),
                last_used: LogIndex(5),
            },
        ),
    ];
    let mut bytes = vec![SNAPSHOT_FORMAT_LEGACY];
    postcard::to_io(&(LogIndex(5), data, sessions), &mut bytes).unwrap();
    let mut store = KvStore::new(KvStoreConfig::default());
    store.restore(LogIndex(5), &bytes).expect("restores");
    assert_eq!(store.get(b"k"), Some(&b"v"[..]));
    let retry = |client_id| KvCommand {
        client_id,
        seq: if client_id == 7 { 3 } else { 1 },
        op: set_op("k", "x"),
    };
    assert_eq!(
        store.apply(LogIndex(6), &retry(7).encode().into()),
        KvReply::Integer(12)
    );
    assert_eq!(
        store.apply(LogIndex(7), &retry(9).encode().into()),
        KvReply::Error(KvError::Legacy("ERR boom".into()))
    );
    assert_eq!(store.get(b"k"), Some(&b"v"[..]));
}

#[test]
fn restore_may_land_past_the_snapshots_own_index() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    let mut restored = KvStore::new(KvStoreConfig::default());
    restored
        .restore(LogIndex(5), &h.store.snapshot())
        .expect("restores");
    // The store's own index, as on the node it was taken from (indexes 2-5
    // carried no command): both serialize alike.
    assert_eq!(restored.applied_index(), h.store.applied_index());
    assert_eq!(restored.snapshot(), h.store.snapshot());
    assert!(
        restored
            .restore(LogIndex(0), &h.store.snapshot())
            .unwrap_err()
            .contains("index")
    );
}

#[test]
fn restore_of_garbage_names_the_problem_and_keeps_the_state() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    let good = h.store.snapshot();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty snapshot"),
        (vec![99, 0], "version 99"),
        (vec![SNAPSHOT_FORMAT_VERSION, 0xff, 0xff], "does not decode"),
        ([good.as_slice(), &[0]].concat(), "trailing"),
    ];
    for (bytes, expected) in cases {
        let problem = h.store.restore(LogIndex(10), &bytes).unwrap_err();
        assert!(
            problem.contains(expected),
            "{problem:?} should mention {expected:?}"
        );
    }
    assert_eq!(h.store.get(b"a"), Some(&b"1"[..]));
    assert_eq!(h.store.applied_index(), LogIndex(1));
}

#[test]
fn the_same_log_yields_the_same_state_and_replies() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let seed: u64 = std::env::var("KV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Vec::new();
    for _ in 0..2000 {
        let key: Vec<u8> = vec![b'a' + rng.random_range(0..4)];
        let value: Vec<u8> = rng.random_range(0..3u8).to_string().into_bytes();
        let op = match rng.random_range(0..6) {
            0 => set_op("a", "x"),
            1 => WriteOp::Set {
                key,
                value,
                condition: SetCondition::IfAbsent,
                get: true,
            },
            2 => WriteOp::Del(vec![key]),
            3 => WriteOp::Append { key, value },
            4 => WriteOp::IncrBy {
                key,
                delta: rng.random_range(-3..4),
            },
            _ => WriteOp::Cas {
                key,
                expected: value.clone(),
                new: b"1".to_vec(),
            },
        };
        if rng.random_range(0..10) == 0 {
            log.push(KvCommand::register());
            continue;
        }
        // Ids are indexes: some name registrations, some do not.
        let command = KvCommand {
            client_id: rng.random_range(0..=log.len() as u64),
            seq: rng.random_range(0..5),
            op,
        };
        log.push(command.encode());
    }
    let config = KvStoreConfig {
        sessions_max: 8,
        ..Default::default()
    };
    let run = |log: &[Vec<u8>]| {
        let mut h = Harness::with_config(config.clone());
        let replies: Vec<KvReply> = log.iter().map(|c| h.apply_bytes(c)).collect();
        (replies, h.store.snapshot())
    };
    let first = run(&log);
    assert_eq!(first, run(&log), "seed {seed}");

    // A node restored from a mid-log snapshot ends in the same place.
    let mut h = Harness::with_config(config.clone());
    for c in &log[..1000] {
        h.apply_bytes(c);
    }
    let mut late = KvStore::new(config);
    late.restore(LogIndex(1000), &h.store.snapshot())
        .expect("restores");
    for (i, c) in log[1000..].iter().enumerate() {
        assert_eq!(
            late.apply(LogIndex(1001 + i as u64), &Bytes::from(c.clone())),
            first.0[1000 + i],
            "seed {seed}"
        );
    }
    assert_eq!(late.snapshot(), first.1, "seed {seed}");
}

/// A write encoded from its borrowed op is byte for byte the log command
/// format 2 has always written, for every kind of op.
#[test]
fn a_write_encoded_from_borrowed_parts_has_the_log_format() {
    let ops = [
        set_op("k", "v"),
        WriteOp::Set {
            key: b"\x00\xff".to_vec(),
            value: vec![7; 300],
            condition: SetCondition::IfPresent,
            get: true,
        },
        WriteOp::Del(vec![b"a".to_vec(), b"bb".to_vec()]),
        WriteOp::Append {
            key: "k".into(),
            value: "tail".into(),
        },
        WriteOp::IncrBy {
            key: "n".into(),
            delta: -5,
        },
        WriteOp::Cas {
            key: "k".into(),
            expected: "old".into(),
            new: "new".into(),
        },
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let (client_id, seq) = (u64::MAX - i as u64, 300 + i as u64);
        let owned = LogCommand::Write(KvCommand {
            client_id,
            seq,
            op: op.clone(),
        })
        .encode();
        assert_eq!(
            KvCommand::encode_parts(client_id, seq, &op),
            owned,
            "{op:?}"
        );
        // The store's borrowing decoder reads what the derived one reads.
        let decoded = LogCommand::decode(&owned).unwrap();
        let derived: LogCommand = postcard::from_bytes(&owned[1..]).unwrap();
        assert_eq!(decoded.command, derived, "{op:?}");
        assert_eq!(
            decoded.command,
            LogCommand::Write(KvCommand { client_id, seq, op })
        );
    }
}

/// SET and CAS keep their value as a slice of the log entry's own buffer:
/// applying a megabyte value copies no megabyte.
#[test]
fn a_written_value_is_a_slice_of_its_entry() {
    let mut store = KvStore::new(KvStoreConfig::default());
    let within = |value: &[u8], entry: &Bytes| {
        let range = entry.as_ptr_range();
        range.start <= value.as_ptr() && value.as_ptr_range().end <= range.end
    };
    let set = Bytes::from(
        KvCommand {
            client_id: 0,
            seq: 0,
            op: set_op("k", &"v".repeat(1000)),
        }
        .encode(),
    );
    assert_eq!(store.apply(LogIndex(1), &set), KvReply::Ok);
    assert!(within(store.get(b"k").unwrap(), &set));
    let cas = Bytes::from(
        KvCommand {
            client_id: 0,
            seq: 0,
            op: WriteOp::Cas {
                key: "k".into(),
                expected: "v".repeat(1000).into(),
                new: "w".repeat(1000).into(),
            },
        }
        .encode(),
    );
    assert_eq!(store.apply(LogIndex(2), &cas), KvReply::Integer(1));
    assert_eq!(store.get(b"k"), Some("w".repeat(1000).as_bytes()));
    assert!(within(store.get(b"k").unwrap(), &cas));
}
