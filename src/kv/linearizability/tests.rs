use super::*;
use proptest::prelude::*;

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// An operation on key "x" by client 0.
fn op(invoke_us: u64, complete_us: u64, kv: KvOp, result: Outcome) -> Operation {
    Operation {
        client: 0,
        key: b("x"),
        invoke_us,
        complete_us: Some(complete_us),
        op: kv,
        result,
    }
}

fn timed_out(invoke_us: u64, kv: KvOp) -> Operation {
    Operation {
        client: 9,
        key: b("x"),
        invoke_us,
        complete_us: None,
        op: kv,
        result: Outcome::Unknown,
    }
}

fn get(invoke_us: u64, complete_us: u64, seen: Option<&str>) -> Operation {
    op(
        invoke_us,
        complete_us,
        KvOp::Get,
        Outcome::Value(seen.map(b)),
    )
}

fn set(invoke_us: u64, complete_us: u64, value: &str) -> Operation {
    op(invoke_us, complete_us, KvOp::Set(b(value)), Outcome::Ok)
}

fn violation(history: &[Operation]) -> Violation {
    match check(history) {
        Verdict::NotLinearizable(v) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn accepts_a_sequential_history() {
    let history = vec![
        get(0, 1, None),
        set(2, 3, "1"),
        get(4, 5, Some("1")),
        op(6, 7, KvOp::Append(b("2")), Outcome::Int(2)),
        op(8, 9, KvOp::Incr, Outcome::Int(13)),
        op(
            10,
            11,
            KvOp::Cas {
                expected: b("13"),
                new: b("a"),
            },
            Outcome::Bool(true),
        ),
        op(12, 13, KvOp::Incr, Outcome::Error),
        op(14, 15, KvOp::Del, Outcome::Int(1)),
        op(16, 17, KvOp::Del, Outcome::Int(0)),
        get(18, 19, None),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn accepts_reads_concurrent_with_a_write_seeing_either_value() {
    for seen in [None, Some("1")] {
        let history = vec![set(0, 100, "1"), get(10, 20, seen)];
        assert_eq!(check(&history), Verdict::Linearizable, "{seen:?}");
    }
    // Two concurrent reads may see the write in either order only
    // consistently with one point for the write.
    let history = vec![set(0, 100, "1"), get(10, 20, Some("1")), get(30, 40, None)];
    assert!(
        !check(&history).is_linearizable(),
        "the value cannot disappear"
    );
}

#[test]
fn accepts_concurrent_writes_in_either_order() {
    let history = vec![set(0, 50, "a"), set(0, 50, "b"), get(60, 70, Some("a"))];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn rejects_a_stale_read_after_an_acknowledged_write() {
    let history = vec![set(0, 10, "1"), get(20, 30, None)];
    let v = violation(&history);
    assert_eq!(v.key, b("x"));
    assert_eq!(v.stuck, history[1]);
    assert_eq!(v.state, Some(b("1")));
    let text = v.to_string();
    assert!(text.contains("key \"x\" is not linearizable"), "{text}");
}

#[test]
fn rejects_reading_an_overwritten_value() {
    let history = vec![set(0, 10, "1"), set(20, 30, "2"), get(40, 50, Some("1"))];
    let v = violation(&history);
    assert_eq!(v.ordered, 2);
    assert_eq!(v.stuck, history[2]);
}

#[test]
fn touching_intervals_count_as_concurrent() {
    // The write completes at the instant the read starts: either order is
    // possible as far as the clocks can tell.
    let history = vec![set(0, 10, "1"), get(10, 20, None)];
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn a_timed_out_write_may_take_effect_later_or_never() {
    let later = vec![
        timed_out(0, KvOp::Set(b("1"))),
        get(10, 20, None),
        get(1000, 1010, Some("1")),
        get(2000, 2010, Some("1")),
    ];
    assert_eq!(check(&later), Verdict::Linearizable);
    let never = vec![
        timed_out(0, KvOp::Set(b("1"))),
        get(10, 20, None),
        get(30, 40, None),
    ];
    assert_eq!(check(&never), Verdict::Linearizable);
}

#[test]
fn a_timed_out_write_cannot_take_effect_before_it_was_sent() {
    let history = vec![get(0, 10, Some("1")), timed_out(20, KvOp::Set(b("1")))];
    assert!(!check(&history).is_linearizable());
}

#[test]
fn a_timed_out_write_once_seen_cannot_be_unseen() {
    let history = vec![
        timed_out(0, KvOp::Set(b("1"))),
        get(10, 20, Some("1")),
        get(30, 40, None),
    ];
    assert!(!check(&history).is_linearizable());
}

#[test]
fn a_timed_out_increment_applies_at_most_once() {
    let history = vec![
        timed_out(0, KvOp::Incr),
        op(10, 20, KvOp::Incr, Outcome::Int(2)),
        get(30, 40, Some("2")),
    ];
    assert_eq!(check(&history), Verdict::Linearizable);
    let twice = vec![
        timed_out(0, KvOp::Incr),
        op(10, 20, KvOp::Incr, Outcome::Int(3)),
    ];
    assert!(!check(&twice).is_linearizable());
}

#[test]
fn cas_results_must_match_the_value() {
    let history = vec![
        set(0, 10, "a"),
        op(
            20,
            30,
            KvOp::Cas {
                expected: b("a"),
                new: b("b"),
            },
            Outcome::Bool(true),
        ),
        op(
            40,
            50,
            KvOp::Cas {
                expected: b("a"),
                new: b("c"),
            },
            Outcome::Bool(true),
        ),
    ];
    assert!(
        !check(&history).is_linearizable(),
        "two CAS from the same value cannot both win"
    );
}

#[test]
fn keys_are_checked_independently_and_the_bad_key_is_named() {
    let mut history = vec![set(0, 10, "1"), get(20, 30, Some("1"))];
    let mut bad = vec![set(0, 10, "1"), get(20, 30, None)];
    for o in &mut bad {
        o.key = b("y");
    }
    history.append(&mut bad);
    assert_eq!(violation(&history).key, b("y"));
}

#[test]
fn a_spent_budget_gives_unknown_not_a_verdict() {
    let history: Vec<Operation> = (0..20)
        .map(|i| set(0, 100, &i.to_string()))
        .chain([get(200, 300, Some("7"))])
        .collect();
    assert!(matches!(
        check_with_budget(&history, 5),
        Verdict::Unknown { .. }
    ));
    assert_eq!(check(&history), Verdict::Linearizable);
}

#[test]
fn an_empty_history_is_linearizable() {
    assert_eq!(check(&[]), Verdict::Linearizable);
}

fn arb_op() -> impl Strategy<Value = KvOp> {
    let value = prop_oneof![Just(b("1")), Just(b("2")), Just(b("a"))];
    prop_oneof![
        Just(KvOp::Get),
        value.clone().prop_map(KvOp::Set),
        value.clone().prop_map(KvOp::Append),
        (value.clone(), value).prop_map(|(expected, new)| KvOp::Cas { expected, new }),
        Just(KvOp::Del),
        Just(KvOp::Incr),
    ]
}

/// (key, op, invoke lead, completion lag, 0 = completed, 1 = timed out
/// after taking effect, 2 = timed out without taking effect)
fn arb_step() -> impl Strategy<Value = (u8, KvOp, u64, u64, u8)> {
    (
        0..3u8,
        arb_op(),
        0..60u64,
        0..60u64,
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Runs the operations one at a time against the model, each at its own
    /// instant inside a random interval around it: the execution order is a
    /// linearization, so the checker must accept whatever overlaps result.
    #[test]
    fn histories_of_a_sequential_execution_are_accepted(steps in proptest::collection::vec(arb_step(), 0..40)) {
        let mut values: BTreeMap<u8, Option<Vec<u8>>> = BTreeMap::new();
        let mut history = Vec::new();
        for (i, (key, kv, lead, lag, fate)) in steps.into_iter().enumerate() {
            let at_us = 100 + 10 * i as u64;
            let state = values.entry(key).or_default();
            let result = if fate == 2 {
                Outcome::Unknown
            } else {
                let (next, outcome) = step(state, &kv);
                *state = next;
                outcome
            };
            history.push(Operation {
                client: i as u64 % 4,
                key: vec![key],
                invoke_us: at_us - lead,
                complete_us: (fate == 0).then_some(at_us + lag),
                op: kv,
                result,
            });
        }
        prop_assert_eq!(check(&history), Verdict::Linearizable);
    }
}

#[test]
fn a_long_concurrent_history_is_checked_quickly() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let seed: u64 = std::env::var("KV_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values: BTreeMap<u8, Option<Vec<u8>>> = BTreeMap::new();
    let mut history = Vec::new();
    for i in 0..3000u64 {
        let key = rng.random_range(0..3u8);
        let kv = match rng.random_range(0..4) {
            0 => KvOp::Set(rng.random_range(0..5u8).to_string().into_bytes()),
            1 => KvOp::Incr,
            2 => KvOp::Cas {
                expected: b("1"),
                new: b("2"),
            },
            _ => KvOp::Get,
        };
        let state = values.entry(key).or_default();
        let (next, result) = step(state, &kv);
        *state = next;
        // About eight operations in flight at any moment.
        let at_us = 1000 + 10 * i;
        history.push(Operation {
            client: i % 8,
            key: vec![key],
            invoke_us: at_us - rng.random_range(0..40),
            complete_us: Some(at_us + rng.random_range(0..40)),
            op: kv,
            result,
        });
    }
    assert_eq!(check(&history), Verdict::Linearizable, "seed {seed}");
    // Corrupt one late read: it now returns a value nobody wrote.
    let last_get = history
        .iter()
        .rposition(|o| o.op == KvOp::Get)
        .expect("a get");
    history[last_get].result = Outcome::Value(Some(b("never written")));
    assert_eq!(violation(&history).stuck, history[last_get], "seed {seed}");
}
