//! Client histories of real-process tests: one clock for every invocation
//! and completion, what a reply means for the history, and the
//! linearizability check of it (`sraft::kv::linearizability`). The Jepsen
//! test and the membership test record through it.
//!
//! Recording rules (what may be claimed about an operation):
//! - a reply is a completed operation with that result;
//! - a write answered `-TRYAGAIN ...` or `-ERR busy` had no effect (the
//!   server returns them only when no attempt of the write can have reached
//!   a state machine; docs/DESIGN.md 4.3), so it is left out;
//! - any other error to a write, a client-side timeout or a broken
//!   connection after the request was sent is indeterminate
//!   (`complete_us: None`): it may take effect at any time after its
//!   invocation, or never;
//! - a read that failed constrains nothing and is left out.

use crate::TestCluster;
use sraft::kv::linearizability::{KvOp, Operation, Outcome, Verdict, check};
use sraft::kv::resp::Value;
use sraft::server::ForwardError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One shared monotonic clock for every invocation and completion.
#[derive(Clone)]
pub struct Recorder {
    epoch: Instant,
    ops: Arc<Mutex<Vec<Operation>>>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            epoch: Instant::now(),
            ops: Arc::default(),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub fn record(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }

    /// Records `op` on `key` by `client`, invoked at `invoke_us`, as
    /// `classified` says: completed now, indeterminate, or not at all.
    pub fn record_classified(
        &self,
        client: u64,
        key: &[u8],
        invoke_us: u64,
        op: KvOp,
        classified: &Classified,
    ) {
        let (complete_us, result) = match classified {
            Classified::Done(outcome) => (Some(self.now_us()), outcome.clone()),
            Classified::Indeterminate => (None, Outcome::Unknown),
            Classified::Failed => return,
        };
        self.record(Operation {
            client,
            key: key.to_vec(),
            invoke_us,
            complete_us,
            op,
            result,
        });
    }

    pub fn history(&self) -> Vec<Operation> {
        self.ops.lock().unwrap().clone()
    }
}

/// What a reply means for the history.
pub enum Classified {
    /// Completed with this result.
    Done(Outcome),
    /// Certainly had no effect: left out of the history.
    Failed,
    /// May have taken effect, or not.
    Indeterminate,
}

pub fn is_write(op: &KvOp) -> bool {
    !matches!(op, KvOp::Get)
}

/// Errors the server returns only when the request cannot have taken effect
/// (DESIGN.md 4.3): `TRYAGAIN` (no leader, or the leader unreachable, so
/// nothing was sent) and `ERR busy`.
fn no_effect_error(e: &str) -> bool {
    e.starts_with("TRYAGAIN") || e.starts_with("ERR busy")
}

pub fn classify(op: &KvOp, reply: Result<Value, ForwardError>) -> Classified {
    let reply = match reply {
        Ok(reply) => reply,
        // Never sent (no connection, refused AUTH): no effect.
        Err(e) if !e.maybe_sent => return Classified::Failed,
        Err(_) if is_write(op) => return Classified::Indeterminate,
        Err(_) => return Classified::Failed,
    };
    match (op, reply) {
        (_, Value::Error(e)) if !is_write(op) || no_effect_error(&e) => Classified::Failed,
        (KvOp::Incr, Value::Error(e)) if e.contains("not an integer") => {
            Classified::Done(Outcome::Error)
        }
        (_, Value::Error(_)) => Classified::Indeterminate,
        (KvOp::Get, Value::Bulk(v)) => Classified::Done(Outcome::Value(Some(v))),
        (KvOp::Get, Value::NullBulk) => Classified::Done(Outcome::Value(None)),
        (KvOp::Set(_), Value::Simple(s)) if s == "OK" => Classified::Done(Outcome::Ok),
        (KvOp::Append(_) | KvOp::Del | KvOp::Incr, Value::Integer(n)) => {
            Classified::Done(Outcome::Int(n))
        }
        (KvOp::Cas { .. }, Value::Integer(n)) => Classified::Done(Outcome::Bool(n == 1)),
        (op, reply) => panic!("unexpected reply {reply:?} to {op:?}"),
    }
}

pub fn command_of(key: &[u8], op: &KvOp) -> Vec<Vec<u8>> {
    let k = key.to_vec();
    match op {
        KvOp::Get => vec![b"GET".to_vec(), k],
        KvOp::Set(v) => vec![b"SET".to_vec(), k, v.clone()],
        KvOp::Append(v) => vec![b"APPEND".to_vec(), k, v.clone()],
        KvOp::Cas { expected, new } => vec![b"CAS".to_vec(), k, expected.clone(), new.clone()],
        KvOp::Del => vec![b"DEL".to_vec(), k],
        KvOp::Incr => vec![b"INCR".to_vec(), k],
    }
}

fn describe_failure(cluster: &TestCluster, what: &str, history: &[Operation]) -> String {
    let mut by_key: BTreeMap<&[u8], usize> = BTreeMap::new();
    for op in history {
        *by_key.entry(op.key.as_slice()).or_default() += 1;
    }
    format!(
        "{what}\nhistory: {} operations, per key {:?}\n{}",
        history.len(),
        by_key
            .iter()
            .map(|(k, n)| (String::from_utf8_lossy(k).to_string(), *n))
            .collect::<Vec<_>>(),
        cluster.log_tails(40)
    )
}

pub fn check_or_panic(cluster: &TestCluster, history: &[Operation]) {
    let started = Instant::now();
    let verdict = check(history);
    eprintln!(
        "[history] checked {} operations in {:.2}s: {}",
        history.len(),
        started.elapsed().as_secs_f64(),
        if verdict.is_linearizable() {
            "linearizable"
        } else {
            "NOT linearizable"
        }
    );
    match verdict {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(violation) => panic!(
            "{}",
            describe_failure(cluster, &format!("VIOLATION: {violation}"), history)
        ),
        Verdict::Unknown { key, steps } => panic!(
            "{}",
            describe_failure(
                cluster,
                &format!(
                    "inconclusive: the checker ran out of its {steps} steps on key {:?}",
                    String::from_utf8_lossy(&key)
                ),
                history
            )
        ),
    }
}
