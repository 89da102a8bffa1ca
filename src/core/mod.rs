//! The pure, deterministic Raft + S-Raft state machine (DESIGN.md 2-3).
//! No sockets, threads, files, clocks or unseeded randomness: time arrives
//! with every input, randomness from a seeded RNG.

pub mod config;
pub mod detector;
mod election;
pub mod log;
mod membership;
pub mod message;
pub mod progress;
pub mod quorum;
mod raft;
mod read;
pub mod ready;
mod replication;
mod subleader;
pub mod types;

pub use config::{ConfigError, CoreMutations, RaftConfig, ReadMode};
pub use membership::{ConfChange, ConfChangeError, MemberInfo, apply_change};
pub use message::{Designation, Message, MessageBody};
pub use raft::{ProposeError, Raft, Role, TransferError};
pub use read::ReadError;
pub use ready::{ChunkReceived, ChunkToSend, ElectionKind, Event, ReadState, Ready};
pub use types::{
    ClusterConfig, Entry, EntryPayload, HardState, LogIndex, MemberAddrs, NodeId, RestoredState,
    SnapshotMeta, Term,
};
