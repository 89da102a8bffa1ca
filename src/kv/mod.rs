//! The replicated key-value service, minus its threads and sockets: the
//! Redis wire protocol (`resp`), typed commands (`command`), the replicated
//! state machine (`store`) and a linearizability checker for the histories
//! that clients observe (`linearizability`).
//!
//! The runtime's path for one client request:
//! `resp::parse` → `Request::from_value` → `Local` (answer at once), `Read`
//! (ReadIndex, then `KvStore::read`) or `Write` (wrap in a `KvCommand`,
//! propose, reply with what `KvStore::apply` returned).

pub mod command;
/// Test tooling, only with the `sim` feature (on for `cargo test`).
#[cfg(feature = "sim")]
pub mod linearizability;
pub mod reply;
pub mod resp;
pub mod store;
