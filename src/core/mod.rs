//! The pure, deterministic Raft + S-Raft state machine (DESIGN.md 2-3).
//! No sockets, threads, files, clocks or unseeded randomness: time arrives
//! with every input, randomness from a seeded RNG.

pub mod config;
pub mod message;
pub mod types;

pub use config::{ConfigError, RaftConfig};
pub use message::{Designation, Message, MessageBody};
pub use types::{
    ClusterConfig, Entry, EntryPayload, HardState, LogIndex, NodeId, RestoredState, SnapshotMeta,
    Term,
};
