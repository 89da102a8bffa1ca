//! A linearizability checker for key-value histories, for the cluster tests
//! and the fault-injection experiments.
//!
//! A history is linearizable if every operation can be given a single point
//! in time, between its invocation and its completion, such that executing
//! the operations one by one in that order against a plain map yields the
//! results the clients saw (Herlihy & Wing, 1990).
//!
//! The search is Wing & Gong's, with Lowe's memoization of (operations
//! already ordered, resulting state) so that no configuration is explored
//! twice ("Testing for linearizability", Lowe 2017; the same algorithm as
//! Porcupine and Knossos). Linearizability is compositional
//! (P-compositionality, Horn & Kroening 2015): a history is linearizable iff
//! each key's sub-history is, so each key is checked on its own, which turns
//! one exponential search into many small ones.
//!
//! An operation without a completion (a timeout, a dropped connection) may
//! have taken effect at any time after its invocation, or never. Its result
//! is unknown, so it constrains nothing if ordered last: "never" is the same
//! as "after everything else", and the search succeeds once every completed
//! operation is ordered.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use super::resp::parse_i64;

/// What a client asked for, on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    Get,
    Set(Vec<u8>),
    Append(Vec<u8>),
    Cas { expected: Vec<u8>, new: Vec<u8> },
    Del,
    Incr,
}

/// What the client saw.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// GET: the value, or `None` for nil.
    Value(Option<Vec<u8>>),
    /// SET
    Ok,
    /// APPEND (new length), DEL (keys removed), INCR (new value).
    Int(i64),
    /// CAS: whether it swapped.
    Bool(bool),
    /// INCR on a non-integer or at the overflow edge.
    Error,
    /// Not known: matches anything. Operations without a completion are
    /// unknown whatever this says.
    Unknown,
}

/// One client operation on one key, with its real-time interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub key: Vec<u8>,
    pub invoke_us: u64,
    /// `None`: indeterminate; it may take effect any time after invocation,
    /// or never.
    pub complete_us: Option<u64>,
    pub op: KvOp,
    pub result: Outcome,
}

/// The result of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Violation),
    /// The step budget ran out on this key before an answer was found.
    Unknown {
        key: Vec<u8>,
        steps: u64,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Why one key's history has no linearization: the deepest partial order
/// the search found, and the operation that could not come next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: Vec<u8>,
    pub operations: usize,
    /// The longest prefix of a valid order the search found (its last few
    /// operations are in `ordered_tail`).
    pub ordered: usize,
    pub ordered_tail: Vec<Operation>,
    /// An operation that had completed, so had to come next, but whose
    /// result contradicts the state left by `ordered` operations.
    pub stuck: Operation,
    pub state: Option<Vec<u8>>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {:?} is not linearizable: at most {} of its {} operations can be ordered; ",
            String::from_utf8_lossy(&self.key),
            self.ordered,
            self.operations
        )?;
        write!(f, "after [")?;
        for (i, op) in self.ordered_tail.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}", describe(op))?;
        }
        write!(
            f,
            "] the value is {}, which contradicts {}",
            describe_value(&self.state),
            describe(&self.stuck)
        )
    }
}

fn describe(op: &Operation) -> String {
    let done = op.complete_us.map_or("?".to_string(), |t| t.to_string());
    format!(
        "client {} {:?} -> {:?} [{}us, {}us]",
        op.client, op.op, op.result, op.invoke_us, done
    )
}

fn describe_value(value: &Option<Vec<u8>>) -> String {
    match value {
        Some(v) => format!("{:?}", String::from_utf8_lossy(v)),
        None => "nil".to_string(),
    }
}

/// Default search budget: generous for test histories of thousands of
/// operations, small enough that a pathological history fails in seconds.
pub const STEPS_MAX_DEFAULT: u64 = 10_000_000;

/// Checks a history with the default budget.
pub fn check(history: &[Operation]) -> Verdict {
    check_with_budget(history, STEPS_MAX_DEFAULT)
}

/// Checks a history, key by key, spending at most `steps_max` search steps
/// in all. Panics on a malformed history (completion before invocation):
/// that is a bug in the test that recorded it.
pub fn check_with_budget(history: &[Operation], steps_max: u64) -> Verdict {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for op in history {
        if let Some(done) = op.complete_us {
            assert!(
                done >= op.invoke_us,
                "operation completes before it starts: {op:?}"
            );
        }
        by_key.entry(op.key.as_slice()).or_default().push(op);
    }
    let mut steps_left = steps_max;
    for (key, ops) in by_key {
        match Search::new(&ops).run(&mut steps_left) {
            SearchResult::Linearizable => {}
            SearchResult::OutOfSteps => {
                return Verdict::Unknown {
                    key: key.to_vec(),
                    steps: steps_max,
                };
            }
            SearchResult::Stuck(deepest) => {
                return Verdict::NotLinearizable(deepest.into_violation(key, &ops));
            }
        }
    }
    Verdict::Linearizable
}

/// The sequential specification: a key's value (`None` when absent) and an
/// operation give the next value and the outcome Redis would report.
fn step(state: &Option<Vec<u8>>, op: &KvOp) -> (Option<Vec<u8>>, Outcome) {
    match op {
        KvOp::Get => (state.clone(), Outcome::Value(state.clone())),
        KvOp::Set(v) => (Some(v.clone()), Outcome::Ok),
        KvOp::Append(v) => {
            let mut next = state.clone().unwrap_or_default();
            next.extend_from_slice(v);
            let len = next.len() as i64;
            (Some(next), Outcome::Int(len))
        }
        KvOp::Cas { expected, new } if state.as_ref() == Some(expected) => {
            (Some(new.clone()), Outcome::Bool(true))
        }
        KvOp::Cas { .. } => (state.clone(), Outcome::Bool(false)),
        KvOp::Del => (None, Outcome::Int(i64::from(state.is_some()))),
        KvOp::Incr => {
            let current = match state {
                None => Some(0),
                Some(v) => parse_i64(v),
            };
            match current.and_then(|n| n.checked_add(1)) {
                Some(n) => (Some(n.to_string().into_bytes()), Outcome::Int(n)),
                None => (state.clone(), Outcome::Error),
            }
        }
    }
}

fn admits(op: &Operation, outcome: &Outcome) -> bool {
    op.complete_us.is_none() || op.result == Outcome::Unknown || op.result == *outcome
}

const NIL: usize = usize::MAX;
/// The list head sentinel is node 0; operation entries follow.
const HEAD: usize = 0;

#[derive(Clone, Copy)]
enum EntryKind {
    /// The invocation of operation `op`; `ret` is its return entry, if any.
    Call { op: usize, ret: Option<usize> },
    /// The completion of operation `op`.
    Return { op: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(bits: usize) -> Self {
        Bitset(vec![0; bits.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

enum SearchResult {
    Linearizable,
    OutOfSteps,
    Stuck(Deepest),
}

/// The deepest point the search reached, for the violation report.
#[derive(Default)]
struct Deepest {
    ordered: Vec<usize>,
    stuck: usize,
    state: Option<Vec<u8>>,
}

impl Deepest {
    fn into_violation(self, key: &[u8], ops: &[&Operation]) -> Violation {
        let tail_from = self.ordered.len().saturating_sub(3);
        Violation {
            key: key.to_vec(),
            operations: ops.len(),
            ordered: self.ordered.len(),
            ordered_tail: self.ordered[tail_from..]
                .iter()
                .map(|&i| ops[i].clone())
                .collect(),
            stuck: ops[self.stuck].clone(),
            state: self.state,
        }
    }
}

/// One key's search: the history as a doubly linked list of call and
/// return entries in time order, from which ordered operations are unlinked
/// (and relinked on backtracking, in reverse order).
struct Search<'a> {
    ops: &'a [&'a Operation],
    kinds: Vec<EntryKind>,
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [&'a Operation]) -> Self {
        // (time, calls before returns at equal times so that touching
        // intervals count as concurrent, entry) sorted.
        let mut events: Vec<(u64, u8, EntryKind)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke_us, 0, EntryKind::Call { op: i, ret: None }));
            if let Some(done) = op.complete_us {
                events.push((done, 1, EntryKind::Return { op: i }));
            }
        }
        events.sort_by_key(|&(time, order, kind)| (time, order, entry_op(kind)));
        let mut kinds = vec![EntryKind::Return { op: NIL }]; // the head
        let mut return_of = vec![None; ops.len()];
        for (_, _, kind) in &events {
            if let EntryKind::Return { op } = kind {
                return_of[*op] = Some(kinds.len());
            }
            kinds.push(*kind);
        }
        for kind in kinds.iter_mut().skip(1) {
            if let EntryKind::Call { op, ret } = kind {
                *ret = return_of[*op];
            }
        }
        let n = kinds.len();
        let next = (0..n)
            .map(|i| if i + 1 < n { i + 1 } else { NIL })
            .collect();
        let prev = (0..n).map(|i| if i == 0 { NIL } else { i - 1 }).collect();
        Search {
            ops,
            kinds,
            next,
            prev,
        }
    }

    fn run(mut self, steps_left: &mut u64) -> SearchResult {
        let mut unordered_completed = self
            .ops
            .iter()
            .filter(|op| op.complete_us.is_some())
            .count();
        let mut state: Option<Vec<u8>> = None;
        let mut ordered = Bitset::new(self.ops.len());
        let mut stack: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
        let mut seen: HashSet<(Bitset, Option<Vec<u8>>)> = HashSet::new();
        let mut deepest: Option<Deepest> = None;
        let mut entry = self.next[HEAD];
        while unordered_completed > 0 {
            if *steps_left == 0 {
                return SearchResult::OutOfSteps;
            }
            *steps_left -= 1;
            if let Some(EntryKind::Call { op, ret }) = self.kinds.get(entry).copied() {
                let (next_state, outcome) = step(&state, &self.ops[op].op);
                if admits(self.ops[op], &outcome) {
                    let mut next_ordered = ordered.clone();
                    next_ordered.set(op);
                    if seen.insert((next_ordered.clone(), next_state.clone())) {
                        stack.push((entry, std::mem::replace(&mut state, next_state)));
                        ordered = next_ordered;
                        unordered_completed -= usize::from(ret.is_some());
                        self.lift(entry, ret);
                        entry = self.next[HEAD];
                        continue;
                    }
                }
                entry = self.next[entry];
                continue;
            }
            // A return (or the end of the list): the operation completing
            // here had to be ordered before anything invoked later, and no
            // order tried so far allows it. Undo the last choice.
            if let Some(EntryKind::Return { op }) = self.kinds.get(entry).copied()
                && deepest
                    .as_ref()
                    .is_none_or(|d| stack.len() > d.ordered.len())
            {
                let ordered_ops = stack.iter().map(|&(e, _)| self.entry_op(e)).collect();
                deepest = Some(Deepest {
                    ordered: ordered_ops,
                    stuck: op,
                    state: state.clone(),
                });
            }
            let Some((call, previous_state)) = stack.pop() else {
                return SearchResult::Stuck(
                    deepest.expect("a completed operation was never ordered"),
                );
            };
            let EntryKind::Call { op, ret } = self.kinds[call] else {
                unreachable!("only calls are pushed");
            };
            state = previous_state;
            ordered.clear(op);
            unordered_completed += usize::from(ret.is_some());
            self.unlift(call, ret);
            entry = self.next[call];
        }
        SearchResult::Linearizable
    }

    fn entry_op(&self, entry: usize) -> usize {
        entry_op(self.kinds[entry])
    }

    fn lift(&mut self, call: usize, ret: Option<usize>) {
        self.unlink(call);
        if let Some(ret) = ret {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, call: usize, ret: Option<usize>) {
        if let Some(ret) = ret {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn unlink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Undoes `unlink(entry)`; unlinks must be undone in reverse order.
    fn relink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = entry;
        if next != NIL {
            self.prev[next] = entry;
        }
    }
}

fn entry_op(kind: EntryKind) -> usize {
    match kind {
        EntryKind::Call { op, .. } | EntryKind::Return { op } => op,
    }
}
