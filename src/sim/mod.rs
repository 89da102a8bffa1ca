//! A one-thread, seeded, logical-time simulator that runs whole clusters of
//! the real core (TigerBeetle's VOPR in spirit): message loss, delay,
//! reordering, duplication, partitions, crashes that lose everything not
//! persisted, restarts, and clock-rate skew; invariants checked after every
//! event. A failure names the seed; `SRAFT_SEED=<n>` replays one.

pub mod checker;
pub mod cluster;
pub mod failover;
pub mod net;
pub mod run;

pub use cluster::{Cluster, SimConfig};
pub use net::NetConfig;
