//! KV clients with sessions, as the server runs them
//! (src/server/connection.rs): each client first registers its session
//! (its id is the registration's index), then numbers its writes inside
//! `KvCommand`s, keeps one operation in flight, and retries a write with
//! the same number, at every node that believes it leads, until one
//! answers; the store's sessions make the copies apply once. Every
//! operation is recorded with its invocation and completion in simulated
//! time, and at the end of the seed the history must be linearizable
//! (src/kv/linearizability.rs).

use super::cluster::{Answer, Cluster, Ticket};
use crate::core::LogIndex;
use crate::kv::command::{SetCondition, WriteOp};
use crate::kv::linearizability::{KvOp, Operation, Outcome, Verdict, check_with_budget};
use crate::kv::reply::{KvError, KvReply};
use crate::kv::store::KvCommand;
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;

/// The keys the clients share: few, so that operations contend.
pub const KV_KEYS: [&[u8]; 3] = [b"k0", b"k1", b"k2"];
pub const CLIENTS: usize = 4;
/// Operations started per seed, at most: keeps each key's history small
/// enough that checking it takes milliseconds.
pub const OPS_MAX: u64 = 360;
/// Pause between one client's operations.
const THINK_US_MAX: u64 = 40_000;
/// A write unanswered this long is also sent to the current leaders (the
/// old attempt may still land: the session applies it once).
const RETRY_US: u64 = 300_000;
/// A read unanswered this long is abandoned; it constrains nothing.
const READ_TIMEOUT_US: u64 = 1_000_000;
/// Search steps for the final check: far above what these histories need.
const CHECK_STEPS_MAX: u64 = 20_000_000;

struct Attempt {
    node: usize,
    incarnation: u64,
    sent_us: u64,
}

enum Kind {
    /// Opening the session: retried like a write; the first answer wins
    /// (a second registration only leaves a session nobody uses).
    Register {
        command: Vec<u8>,
    },
    Read,
    Write {
        op: KvOp,
        command: Vec<u8>,
    },
}

struct InFlight {
    seq: u64,
    key: Vec<u8>,
    kind: Kind,
    invoke_us: u64,
    /// The highest index known applied anywhere at invocation: a read must
    /// be served at or after it.
    acked_at_invoke: LogIndex,
    attempts: BTreeMap<u64, Attempt>,
    next_attempt: u64,
    /// The client's pause after this operation.
    think_us: u64,
}

struct Session {
    /// Names the client in the history.
    name: u64,
    /// The registered session, once there is one.
    client_id: Option<u64>,
    /// The last operation number used; a write carries its number as its
    /// `KvCommand::seq`.
    seq: u64,
    op: Option<InFlight>,
    next_op_us: u64,
    /// Replies to completed writes: a late copy must repeat its reply.
    replies: BTreeMap<u64, KvReply>,
    /// The last value seen per key, which CAS expects.
    last_seen: BTreeMap<Vec<u8>, Vec<u8>>,
}

pub struct KvClients {
    sessions: Vec<Session>,
    pub history: Vec<Operation>,
    pub started: u64,
}

impl Default for KvClients {
    fn default() -> KvClients {
        let sessions = (0..CLIENTS)
            .map(|i| Session {
                name: i as u64 + 1,
                client_id: None,
                seq: 0,
                op: None,
                next_op_us: 0,
                replies: BTreeMap::new(),
                last_seen: BTreeMap::new(),
            })
            .collect();
        KvClients {
            sessions,
            history: Vec::new(),
            started: 0,
        }
    }
}

impl KvClients {
    /// Starts, retries or abandons operations. `acked` is the highest index
    /// applied anywhere so far.
    pub fn step(&mut self, cluster: &mut Cluster, rng: &mut StdRng, acked: LogIndex, new: bool) {
        for client in 0..self.sessions.len() {
            if self.sessions[client].op.is_some() {
                self.keep_going(cluster, client);
            } else if new
                && self.started < OPS_MAX
                && cluster.now_us >= self.sessions[client].next_op_us
            {
                self.start(cluster, rng, client, acked);
            }
        }
    }

    fn start(&mut self, cluster: &mut Cluster, rng: &mut StdRng, client: usize, acked: LogIndex) {
        if cluster.believed_leaders().is_empty() {
            return;
        }
        let session = &mut self.sessions[client];
        session.seq += 1;
        let key = KV_KEYS[rng.random_range(0..KV_KEYS.len())].to_vec();
        let kind = match session.client_id {
            None => Kind::Register {
                command: KvCommand::register(),
            },
            Some(client_id) => {
                self.started += 1;
                match random_op(rng, session, &key) {
                    KvOp::Get => Kind::Read,
                    op => {
                        let command = KvCommand {
                            client_id,
                            seq: session.seq,
                            op: write_op(&key, &op),
                        }
                        .encode();
                        Kind::Write { op, command }
                    }
                }
            }
        };
        session.op = Some(InFlight {
            seq: session.seq,
            key,
            kind,
            invoke_us: cluster.now_us,
            acked_at_invoke: acked,
            attempts: BTreeMap::new(),
            next_attempt: 0,
            think_us: rng.random_range(0..THINK_US_MAX),
        });
        self.send(cluster, client);
    }

    /// Sends the operation in flight to every node that believes it leads
    /// and was not sent it recently. A write's earlier attempt at a node
    /// may wait for an index that node's log no longer reaches: like a real
    /// client's timeout, a new attempt goes there too.
    fn send(&mut self, cluster: &mut Cluster, client: usize) {
        let now = cluster.now_us;
        let op = self.sessions[client].op.as_mut().expect("in flight");
        for node in cluster.believed_leaders() {
            if op
                .attempts
                .values()
                .any(|a| a.node == node && now - a.sent_us < RETRY_US)
            {
                continue;
            }
            op.next_attempt += 1;
            let ticket = Ticket::Kv {
                client,
                seq: op.seq,
                attempt: op.next_attempt,
            };
            let sent = match &op.kind {
                Kind::Read => cluster.read(node, op.key.clone(), ticket),
                Kind::Write { command, .. } | Kind::Register { command } => {
                    cluster.propose(node, command.clone(), ticket);
                    true
                }
            };
            if sent {
                let attempt = Attempt {
                    node,
                    incarnation: cluster.nodes[node].incarnation,
                    sent_us: cluster.now_us,
                };
                op.attempts.insert(op.next_attempt, attempt);
            }
        }
    }

    /// Forgets attempts that can no longer answer, then retries a write or
    /// ends a read that has none left.
    fn keep_going(&mut self, cluster: &mut Cluster, client: usize) {
        let now = cluster.now_us;
        let op = self.sessions[client].op.as_mut().expect("in flight");
        op.attempts.retain(|_, a| {
            let alive = cluster.is_up(a.node) && cluster.nodes[a.node].incarnation == a.incarnation;
            alive && (!matches!(op.kind, Kind::Read) || now - a.sent_us < READ_TIMEOUT_US)
        });
        match op.kind {
            Kind::Read if op.attempts.is_empty() => self.finish(client, now),
            Kind::Read => {}
            Kind::Write { .. } | Kind::Register { .. } => {
                if op.attempts.values().all(|a| now - a.sent_us >= RETRY_US) {
                    self.send(cluster, client);
                }
            }
        }
    }

    fn finish(&mut self, client: usize, now_us: u64) {
        let session = &mut self.sessions[client];
        let op = session.op.take().expect("in flight");
        session.next_op_us = now_us + op.think_us;
    }

    pub fn on_answer(&mut self, answer: Answer) {
        let Ticket::Kv {
            client,
            seq,
            attempt,
        } = answer.ticket
        else {
            return;
        };
        let session = &mut self.sessions[client];
        let current = session
            .op
            .as_mut()
            .filter(|op| op.seq == seq && op.attempts.contains_key(&attempt));
        let Some(op) = current else {
            return self.on_late_answer(client, seq, answer);
        };
        op.attempts.remove(&attempt);
        let Ok(output) = answer.reply else {
            // Refused or overwritten: not applied through this attempt.
            if matches!(op.kind, Kind::Read) && op.attempts.is_empty() {
                self.finish(client, answer.at_us);
            }
            return;
        };
        let (index, value) = output;
        let kv_op = match &op.kind {
            Kind::Register { .. } => {
                let KvReply::Registered(id) = value else {
                    panic!("node {}: registration answered {value:?}", answer.node);
                };
                assert_eq!(id, index.0, "a session's id is its registration's index");
                session.client_id = Some(id);
                session.op = None;
                session.next_op_us = answer.at_us;
                return;
            }
            Kind::Read => {
                assert!(
                    index >= op.acked_at_invoke,
                    "node {}: read of client {} served at applied index {index}, missing acknowledged index {}",
                    answer.node,
                    session.name,
                    op.acked_at_invoke
                );
                KvOp::Get
            }
            Kind::Write { op, .. } => op.clone(),
        };
        let result = outcome(&kv_op, &value);
        if let Outcome::Value(Some(v)) = &result {
            session.last_seen.insert(op.key.clone(), v.clone());
        }
        if let KvOp::Set(v) = &kv_op {
            session.last_seen.insert(op.key.clone(), v.clone());
        }
        self.history.push(Operation {
            client: session.name,
            key: op.key.clone(),
            invoke_us: op.invoke_us,
            complete_us: Some(answer.at_us),
            op: kv_op,
            result,
        });
        let done = match op.kind {
            Kind::Register { .. } => unreachable!("answered above"),
            Kind::Read => op.attempts.is_empty(),
            Kind::Write { .. } => {
                session.replies.insert(seq, value);
                true
            }
        };
        if done {
            self.finish(client, answer.at_us);
        }
    }

    /// An answer to an attempt the client no longer waits for: a write's
    /// copy must repeat the reply the first one got (exactly-once), or be
    /// refused as superseded.
    fn on_late_answer(&mut self, client: usize, seq: u64, answer: Answer) {
        let session = &self.sessions[client];
        let (Ok(output), Some(first)) = (answer.reply, session.replies.get(&seq)) else {
            return;
        };
        let (index, value) = output;
        let superseded = matches!(&value, KvReply::Error(KvError::Superseded { .. }));
        assert!(
            value == *first || superseded,
            "node {}: client {} write {seq} answered {value:?} at {index}, but first {first:?}",
            answer.node,
            session.name
        );
    }

    pub fn settled(&self) -> bool {
        self.sessions.iter().all(|s| s.op.is_none())
    }

    /// The operations in flight and their attempts, for a failure report.
    pub fn describe_unsettled(&self) -> String {
        let mut out = Vec::new();
        for s in &self.sessions {
            if let Some(op) = &s.op {
                let attempts: Vec<String> = op
                    .attempts
                    .iter()
                    .map(|(n, a)| format!("#{n} at node {} since {}us", a.node, a.sent_us))
                    .collect();
                out.push(format!(
                    "client {} op {} on {:?} invoked at {}us: [{}]",
                    s.name,
                    op.seq,
                    String::from_utf8_lossy(&op.key),
                    op.invoke_us,
                    attempts.join(", ")
                ));
            }
        }
        out.join("; ")
    }

    /// Writes still unanswered, as operations of unknown outcome.
    fn unfinished(&self) -> Vec<Operation> {
        self.sessions
            .iter()
            .filter_map(|s| {
                let op = s.op.as_ref()?;
                let Kind::Write { op: kv_op, .. } = &op.kind else {
                    return None;
                };
                Some(Operation {
                    client: s.name,
                    key: op.key.clone(),
                    invoke_us: op.invoke_us,
                    complete_us: None,
                    op: kv_op.clone(),
                    result: Outcome::Unknown,
                })
            })
            .collect()
    }

    /// The whole history must be linearizable; panics with the violation.
    pub fn check(&self) {
        let mut history = self.history.clone();
        history.extend(self.unfinished());
        match check_with_budget(&history, CHECK_STEPS_MAX) {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable(violation) => panic!("linearizability: {violation}"),
            Verdict::Unknown { key, steps } => panic!(
                "linearizability: no verdict on key {:?} within {steps} steps ({} operations): make histories smaller",
                String::from_utf8_lossy(&key),
                history.len()
            ),
        }
    }
}

fn random_op(rng: &mut StdRng, session: &Session, key: &[u8]) -> KvOp {
    let unique = || format!("c{}.{}", session.name, session.seq).into_bytes();
    let small = |rng: &mut StdRng| rng.random_range(0..20u32).to_string().into_bytes();
    match rng.random_range(0..100) {
        0..40 => KvOp::Get,
        40..58 if rng.random_bool(0.5) => KvOp::Set(small(rng)),
        40..58 => KvOp::Set(unique()),
        58..70 => KvOp::Append(format!("+{}", session.name).into_bytes()),
        70..80 => KvOp::Incr,
        80..90 => KvOp::Cas {
            expected: session
                .last_seen
                .get(key)
                .cloned()
                .unwrap_or_else(|| small(rng)),
            new: if rng.random_bool(0.5) {
                small(rng)
            } else {
                unique()
            },
        },
        _ => KvOp::Del,
    }
}

fn write_op(key: &[u8], op: &KvOp) -> WriteOp {
    let key = key.to_vec();
    match op {
        KvOp::Set(value) => WriteOp::Set {
            key,
            value: value.clone(),
            condition: SetCondition::Always,
            get: false,
        },
        KvOp::Append(value) => WriteOp::Append {
            key,
            value: value.clone(),
        },
        KvOp::Incr => WriteOp::IncrBy { key, delta: 1 },
        KvOp::Cas { expected, new } => WriteOp::Cas {
            key,
            expected: expected.clone(),
            new: new.clone(),
        },
        KvOp::Del => WriteOp::Del(vec![key]),
        KvOp::Get => unreachable!("GET is a read"),
    }
}

/// What the client saw, in the checker's terms; any other reply is a bug.
fn outcome(op: &KvOp, value: &KvReply) -> Outcome {
    match (op, value) {
        (KvOp::Get, KvReply::Value(v)) => Outcome::Value(Some(v.to_vec())),
        (KvOp::Get, KvReply::Nil) => Outcome::Value(None),
        (KvOp::Set(_), KvReply::Ok) => Outcome::Ok,
        (KvOp::Append(_) | KvOp::Del | KvOp::Incr, KvReply::Integer(n)) => Outcome::Int(*n),
        (KvOp::Incr, KvReply::Error(KvError::NotAnInteger)) => Outcome::Error,
        (KvOp::Cas { .. }, KvReply::Integer(n)) => Outcome::Bool(*n == 1),
        _ => panic!("unexpected reply {value:?} to {op:?}"),
    }
}
