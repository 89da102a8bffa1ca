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

    fn apply_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        let index = LogIndex(self.next_index);
        self.next_index += 1;
        self.store.apply(index, bytes)
    }

    fn apply_as(&mut self, client_id: u64, seq: u64, op: WriteOp) -> Value {
        let reply = self.apply_bytes(&KvCommand { client_id, seq, op }.encode());
        reply_value(&reply)
    }

    /// Runs a command line, writes through the log and reads directly.
    fn run(&mut self, words: &[&str]) -> Value {
        let args = words[1..].iter().map(|w| w.as_bytes().to_vec()).collect();
        let request = Request::from_args(words[0].into(), args, &CommandLimits::default())
            .unwrap_or_else(|e| panic!("{words:?}: {e}"));
        match request {
            Request::Write(op) => self.apply_as(0, 0, op),
            Request::Read(op) => self.store.read(&op),
            Request::Local(op) => panic!("local command in a store test: {op:?}"),
        }
    }
}

fn reply_value(bytes: &[u8]) -> Value {
    let (value, used) = crate::kv::resp::parse_reply(bytes, &Default::default())
        .expect("reply is valid RESP")
        .expect("reply is complete");
    assert_eq!(used, bytes.len(), "reply is exactly one value");
    value
}

fn bulk(s: &str) -> Value {
    Value::bulk(s.as_bytes())
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
    assert_eq!(h.apply_as(7, 1, incr.clone()), int(1));
    assert_eq!(
        h.apply_as(7, 1, incr.clone()),
        int(1),
        "duplicate replays the reply"
    );
    assert_eq!(h.store.get(b"n"), Some(&b"1"[..]));
    assert_eq!(h.apply_as(7, 2, incr.clone()), int(2));
    assert_eq!(
        h.apply_as(8, 1, incr.clone()),
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
    h.apply_as(7, 1, incr.clone());
    h.apply_as(7, 2, incr.clone());
    let Value::Error(text) = h.apply_as(7, 1, incr) else {
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
    h.apply_as(1, 1, set_op("a", "1"));
    h.apply_as(2, 1, set_op("a", "2"));
    h.apply_as(1, 1, set_op("a", "1")); // a duplicate refreshes client 1
    h.apply_as(3, 1, set_op("a", "3")); // evicts client 2
    assert_eq!(h.store.session_count(), 2);
    // Client 2 was forgotten, so its retry applies again.
    h.apply_as(2, 1, set_op("a", "2"));
    assert_eq!(h.store.get(b"a"), Some(&b"2"[..]));
    // Client 3 was remembered, so its retry does not.
    h.apply_as(3, 1, set_op("a", "3"));
    assert_eq!(h.store.get(b"a"), Some(&b"2"[..]));
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
    assert_eq!(KvCommand::decode(&bytes), Ok(command));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(
        KvCommand::decode(&trailing)
            .unwrap_err()
            .contains("trailing")
    );
}

#[test]
fn snapshot_round_trips_data_sessions_and_index() {
    let mut h = Harness::new();
    h.run(&["SET", "a", "1"]);
    h.apply_as(
        9,
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
        client_id: 9,
        seq: 1,
        op: WriteOp::IncrBy {
            key: "n".into(),
            delta: 5,
        },
    };
    assert_eq!(
        reply_value(&restored.apply(LogIndex(3), &retry.encode())),
        int(5)
    );
    assert_eq!(restored.get(b"n"), Some(&b"5"[..]));
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
        let command = KvCommand {
            client_id: rng.random_range(0..20),
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
        let replies: Vec<Vec<u8>> = log.iter().map(|c| h.apply_bytes(c)).collect();
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
            late.apply(LogIndex(1001 + i as u64), c),
            first.0[1000 + i],
            "seed {seed}"
        );
    }
    assert_eq!(late.snapshot(), first.1, "seed {seed}");
}
