//! sraft: S-Raft (Raft with RTT-ranked sub-leaders) and a replicated,
//! Redis-compatible key-value store. See docs/DESIGN.md (section 2) for the
//! architecture.
//!
//! # Embedding
//!
//! The `sraft` binary runs the KV store ([`kv::store::KvStore`]), but any
//! deterministic [`state_machine::StateMachine`] can be replicated: give
//! [`runtime::start`] (or [`runtime::start_on`], with the peer port already
//! bound) the node's [`runtime::NodeOptions`] and your state machine, then
//! send commands to the leader with [`runtime::NodeHandle::write`] and
//! read with [`runtime::NodeHandle::read`]. A replicated counter on a
//! one-node cluster:
//!
//! ```
//! use sraft::core::{LogIndex, NodeId};
//! use sraft::runtime::{self, NodeOptions};
//! use sraft::state_machine::{Bytes, StateMachine};
//! use std::time::{Duration, Instant};
//!
//! /// Adds each command (a little-endian u64) to a total.
//! #[derive(Default)]
//! struct Counter {
//!     applied: LogIndex,
//!     total: u64,
//! }
//!
//! impl StateMachine for Counter {
//!     /// The total after the command: typed, the caller picks a wire format.
//!     type Output = u64;
//!
//!     fn apply(&mut self, index: LogIndex, command: &Bytes) -> u64 {
//!         self.applied = index;
//!         // Deterministic even for bad input: every node applies the same.
//!         let add = command[..].try_into().map(u64::from_le_bytes).unwrap_or(0);
//!         self.total += add;
//!         self.total
//!     }
//!     fn applied_index(&self) -> LogIndex {
//!         self.applied
//!     }
//!     fn snapshot(&self) -> Vec<u8> {
//!         self.total.to_le_bytes().to_vec()
//!     }
//!     fn restore(&mut self, index: LogIndex, snapshot: &[u8]) -> Result<(), String> {
//!         let bytes = snapshot.try_into().map_err(|_| "not 8 bytes".to_string())?;
//!         (self.applied, self.total) = (index, u64::from_le_bytes(bytes));
//!         Ok(())
//!     }
//! }
//!
//! # fn free_listener() -> std::net::TcpListener {
//! #     // Tests keep below the ephemeral range (32768+), on a port found free.
//! #     let ports = 29_000..30_000;
//! #     ports.into_iter().find_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok()).unwrap()
//! # }
//! let dir = tempfile::tempdir().unwrap();
//! // Any bound listener; binding "127.0.0.1:0" lets the OS pick the port.
//! let listener = free_listener();
//! let peers = vec![listener.local_addr().unwrap()]; // index = node id
//! let options = NodeOptions::new(NodeId(0), peers, dir.path());
//! let node = runtime::start_on(listener, &options, Counter::default()).unwrap();
//!
//! // Wait for the election, then replicate two commands.
//! let until = Instant::now() + Duration::from_secs(10);
//! while node.status().role != "leader" {
//!     assert!(Instant::now() < until, "no leader");
//!     std::thread::sleep(Duration::from_millis(10));
//! }
//! let timeout = Duration::from_secs(5);
//! node.write(2u64.to_le_bytes().to_vec(), timeout).unwrap().unwrap();
//! let total = node.write(40u64.to_le_bytes().to_vec(), timeout).unwrap().unwrap();
//! assert_eq!(total, 42);
//! // A linearizable read runs a query on the state machine.
//! let read = node.read(|c: &Counter| c.total, timeout);
//! assert_eq!(read.unwrap().unwrap(), 42);
//! node.stop().unwrap();
//! ```
//!
//! `examples/bank` replicates a bank ledger on three nodes
//! (`cargo run --example bank`).

pub mod client;
pub mod core;
pub mod kv;
pub mod limits;
pub mod metrics;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod settings;
/// The seeded whole-cluster simulator (DESIGN.md 2.8): test tooling, only
/// with the `sim` feature (on for `cargo test`).
#[cfg(feature = "sim")]
pub mod sim;
pub mod state_machine;
pub mod storage;
pub mod tls;
pub mod transport;

pub use limits::Limits;
