//! The application side of the embedding API (seed 002): committed commands
//! go in, in log order, on every node; the same sequence must yield the same
//! state and the same outputs everywhere.

use crate::core::LogIndex;
/// A command's buffer, as the log holds it; re-exported so that a state
/// machine needs no dependency of its own to name it.
pub use bytes::Bytes;

/// Serializes a state machine's state as it was when the job was made; run
/// on a background thread while the state machine goes on applying.
pub type SnapshotJob = Box<dyn FnOnce() -> Vec<u8> + Send>;

pub trait StateMachine: Send {
    /// What applying a command (or running a read query) yields for the
    /// client that asked: typed, so that the wire format (RESP for the KV
    /// store) is chosen by the server, not baked into the replicated state.
    type Output: Send + 'static;

    /// Applies one committed command and returns its output. Must be
    /// deterministic: no clock, no randomness, no I/O that can fail
    /// differently on different nodes. A command the state machine cannot
    /// decode is still "applied" (it yields an error reply) so that every
    /// node stays in step. `command` is the log entry's own buffer: a state
    /// machine may keep parts of it (`Bytes::slice_ref`) without a copy.
    fn apply(&mut self, index: LogIndex, command: &Bytes) -> Self::Output;

    /// The index of the last command applied (0 when fresh).
    fn applied_index(&self) -> LogIndex;

    /// Serializes the whole state, as of `applied_index()`.
    fn snapshot(&self) -> Vec<u8>;

    /// A job that serializes the state as of `applied_index()`, taken on
    /// the Raft thread and run on another: it must be cheap to make (a
    /// copy-on-write view), or the Raft thread stalls while it is made.
    /// The default serializes here, which is fine for small states.
    fn snapshot_job(&self) -> SnapshotJob {
        let bytes = self.snapshot();
        Box::new(move || bytes)
    }

    /// Replaces the whole state with a snapshot taken at `index`.
    fn restore(&mut self, index: LogIndex, snapshot: &[u8]) -> Result<(), String>;
}
