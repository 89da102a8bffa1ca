//! A one-thread, seeded, logical-time simulator that runs whole clusters of
//! the production driver (and so the real core) with the real KV store
//! (TigerBeetle's VOPR in spirit): message loss, delay, reordering,
//! duplication, partitions, link bandwidth, crashes that lose everything not
//! fsynced (and may tear the write being flushed), restarts, clock-rate
//! skew, spurious crash hints and oversized writes; invariants checked after
//! every event, and every seed's KV history checked for linearizability. A
//! failure names the seed; `SRAFT_SEED=<n>` replays one. Known bugs can be
//! switched on (`mutation`) to show that the checks catch them.

pub mod checker;
pub mod cluster;
pub mod disk;
pub mod failover;
pub mod kv_client;
pub mod membership;
pub mod mutation;
pub mod net;
pub mod run;
pub mod snapshots;
pub mod stats;
pub mod store;
pub mod tracker;
pub mod workload;

pub use cluster::{Cluster, SimConfig};
pub use net::NetConfig;
