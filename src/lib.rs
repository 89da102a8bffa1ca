//! sraft: S-Raft (Raft with RTT-ranked sub-leaders) and a replicated,
//! Redis-compatible key-value store. See docs/DESIGN.md (section 2) for the
//! architecture.

pub mod client;
pub mod core;
pub mod kv;
pub mod limits;
pub mod metrics;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod settings;
pub mod sim;
pub mod state_machine;
pub mod storage;
pub mod tls;
pub mod transport;

pub use limits::Limits;
