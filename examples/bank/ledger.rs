//! A bank ledger as an sraft state machine: accounts with balances, and
//! transfers that must never create or destroy money. Shared by the `bank`
//! example and `tests/embedding.rs`.
//!
//! Everything a replicated state machine needs is here: commands encoded
//! as bytes (postcard), a deterministic `apply` (same commands in the same
//! order give the same balances and outcomes on every node), and a snapshot
//! that captures the whole state with its applied index.

#![allow(dead_code)] // The example and the test each use part of it.

use serde::{Deserialize, Serialize};
use sraft::core::{LogIndex, NodeId};
use sraft::runtime::{self, NodeHandle, NodeOptions, RequestError};
use sraft::state_machine::{Bytes, StateMachine};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What clients ask the ledger to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens `account` with an initial deposit: the only way money enters.
    Open { account: String, deposit: u64 },
    /// Moves `amount` from one account to another, or nothing at all.
    Transfer {
        from: String,
        to: String,
        amount: u64,
    },
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("encoding to a Vec cannot fail")
    }
}

/// What `apply` answers, the same on every node, and what a read query
/// answers (`Total`): the state machine's typed output, handed to the
/// caller as is (no encoding on the way).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Opened,
    AlreadyOpen,
    Transferred,
    NoSuchAccount(String),
    InsufficientFunds {
        balance: u64,
    },
    /// Bytes that are no command: still "applied", so nodes stay in step.
    Undecodable,
    /// A read: the money in all accounts.
    Total(u64),
}

/// The ledger's whole state: what snapshots hold.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounts {
    pub applied: LogIndex,
    pub balances: BTreeMap<String, u64>,
}

impl Accounts {
    /// All money in the ledger: changes only when an account is opened.
    pub fn total(&self) -> u64 {
        self.balances.values().sum()
    }

    fn execute(&mut self, command: Command) -> Outcome {
        match command {
            Command::Open { account, deposit } => {
                if self.balances.contains_key(&account) {
                    return Outcome::AlreadyOpen;
                }
                self.balances.insert(account, deposit);
                Outcome::Opened
            }
            Command::Transfer { from, to, amount } => {
                let Some(&balance) = self.balances.get(&from) else {
                    return Outcome::NoSuchAccount(from);
                };
                if !self.balances.contains_key(&to) {
                    return Outcome::NoSuchAccount(to);
                }
                if balance < amount {
                    return Outcome::InsufficientFunds { balance };
                }
                // Debit before credit, so that a transfer to oneself is a
                // no-op, not a doubling.
                *self.balances.get_mut(&from).expect("checked above") -= amount;
                *self.balances.get_mut(&to).expect("checked above") += amount;
                Outcome::Transferred
            }
        }
    }
}

/// The state machine. It shares its state with a [`Replica`] view, so the
/// application can look at this node's copy without going through Raft (a
/// possibly stale read, fine for monitoring; `NodeHandle::read` gives the
/// linearizable one).
pub struct Ledger {
    state: Arc<Mutex<Accounts>>,
}

/// This node's copy of the ledger, as last applied.
#[derive(Clone)]
pub struct Replica(Arc<Mutex<Accounts>>);

impl Replica {
    pub fn accounts(&self) -> Accounts {
        self.0.lock().unwrap().clone()
    }
}

impl Ledger {
    /// The state, for a query in `NodeHandle::read`.
    pub fn accounts(&self) -> Accounts {
        self.state.lock().unwrap().clone()
    }

    pub fn new() -> (Ledger, Replica) {
        let state = Arc::new(Mutex::new(Accounts::default()));
        (
            Ledger {
                state: Arc::clone(&state),
            },
            Replica(state),
        )
    }
}

impl StateMachine for Ledger {
    type Output = Outcome;

    fn apply(&mut self, index: LogIndex, command: &Bytes) -> Outcome {
        let mut state = self.state.lock().unwrap();
        assert!(
            index > state.applied,
            "apply out of order: index={index} applied={}",
            state.applied
        );
        state.applied = index;
        match postcard::from_bytes::<Command>(command) {
            Ok(command) => state.execute(command),
            Err(_) => Outcome::Undecodable,
        }
    }

    fn applied_index(&self) -> LogIndex {
        self.state.lock().unwrap().applied
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&*self.state.lock().unwrap()).expect("encoding to a Vec cannot fail")
    }

    fn restore(&mut self, index: LogIndex, snapshot: &[u8]) -> Result<(), String> {
        let accounts: Accounts =
            postcard::from_bytes(snapshot).map_err(|e| format!("bad ledger snapshot: {e}"))?;
        if accounts.applied != index {
            return Err(format!(
                "snapshot says index {} but was taken at {index}",
                accounts.applied
            ));
        }
        *self.state.lock().unwrap() = accounts;
        Ok(())
    }
}

/// One node of a local cluster: its handle while running, and its replica.
pub struct Member {
    pub node: Option<NodeHandle<Ledger>>,
    pub replica: Replica,
}

/// Starts node `id` of the cluster whose peer addresses are `peers`, with
/// its log in `dir/node-<id>`: on `listener` if the caller bound the port
/// already, else binding it (a restart).
pub fn start_member(
    id: u64,
    peers: &[SocketAddr],
    dir: &Path,
    listener: Option<TcpListener>,
) -> Member {
    let mut options = NodeOptions::new(NodeId(id), peers.to_vec(), dir.join(format!("node-{id}")));
    options.cluster_id = "bank".into();
    let (ledger, replica) = Ledger::new();
    let node = match listener {
        Some(listener) => runtime::start_on(listener, &options, ledger),
        None => runtime::start(&options, ledger),
    }
    .unwrap_or_else(|e| panic!("node {id}: {e}"));
    Member {
        node: Some(node),
        replica,
    }
}

/// The node that says it leads in the highest term, if any.
fn leader(members: &[Member]) -> Option<&NodeHandle<Ledger>> {
    members
        .iter()
        .filter_map(|m| m.node.as_ref())
        .filter(|node| node.status().role == "leader")
        .max_by_key(|node| node.status().term)
}

/// Runs `command` on whichever node leads, retrying while there is none or
/// leadership moves, for up to `timeout`. A write that timed out may still
/// commit, so a retried command may apply twice; use it where that is
/// harmless or checked (a duplicate transfer moves money, never makes it).
pub fn submit(members: &[Member], command: &Command, timeout: Duration) -> Option<Outcome> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if let Some(node) = leader(members) {
            match node.write(command.encode(), Duration::from_secs(2)) {
                Some(Ok(outcome)) => return Some(outcome),
                Some(Err(RequestError::NotLeader { .. } | RequestError::LeadershipLost)) => {}
                Some(Err(e)) => panic!("{command:?}: {e:?}"),
                None => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits until every running node has applied all it knows committed and
/// every replica holds the same accounts; returns them.
pub fn converged(members: &[Member], timeout: Duration) -> Option<Accounts> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        let running: Vec<&Member> = members.iter().filter(|m| m.node.is_some()).collect();
        let commits: Vec<LogIndex> = running
            .iter()
            .map(|m| m.node.as_ref().expect("running").status().commit_index)
            .collect();
        let replicas: Vec<Accounts> = running.iter().map(|m| m.replica.accounts()).collect();
        let same_commit = commits.windows(2).all(|w| w[0] == w[1]);
        let all_applied = replicas.iter().zip(&commits).all(|(r, c)| r.applied == *c);
        if same_commit && all_applied && replicas.windows(2).all(|w| w[0] == w[1]) {
            return replicas.into_iter().next();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
