//! One toolkit for everything that runs real `sraft` processes: the
//! integration tests in `tests/`, the Jepsen test and the failover
//! experiment (`src/bin/failover-experiment/`) all start, kill, pause and
//! partition nodes through it (docs/DESIGN.md, "Test toolkit").
//!
//! - [`cluster`]: [`TestCluster`] and its builder: nodes as child processes
//!   on loopback (one shared address, or one address per node), each with
//!   its own data dir and log in one directory; kill -9, SIGSTOP/SIGCONT,
//!   SIGTERM, restart; waits for an agreed leader; everything killed by pid
//!   and the directory removed on drop.
//! - [`ports`]: free ports below the kernel's ephemeral range (32768),
//!   never handed out twice by one process.
//! - [`resp`]: the one RESP client ([`Conn`]), a thin owner of the
//!   library's `sraft::server::Forwarder` (the `sraft::kv::resp` codec).
//! - [`history`]: client histories, the recording rules and the
//!   linearizability check.
//! - [`info`]: the one INFO parser's typed view ([`Info`]), over
//!   `sraft::server::parse_info`.
//! - [`partition`]: nftables partitions between nodes' own loopback
//!   addresses ([`Firewall`]).
//! - [`stats`]: percentiles and the Markdown table cells of the reports.
//! - [`process`]: the `sraft` binary, hermetic commands, runs to exit.
//! - [`certs`]: a CA and node certificates for TLS clusters.
//! - [`wait`]: bounded polls.

pub mod certs;
pub mod cluster;
pub mod history;
pub mod info;
pub mod partition;
pub mod ports;
pub mod process;
pub mod resp;
pub mod stats;
pub mod wait;

pub use certs::{CertPems, cert_pems, make_certs, write_certs, write_private};
pub use cluster::{NodeState, TestCluster, TestClusterBuilder};
pub use info::{Info, Leadership};
pub use partition::{Firewall, firewall_or_skip};
pub use ports::{addr, port_is_free, reserve_ports, reserve_single_ports};
pub use process::{hermetic_command, run_command_to_exit, run_to_exit, sraft_bin};
pub use resp::{Auth, CALL_TIMEOUT, Conn, INFO_TIMEOUT};
pub use wait::{POLL, deadline_in, poll_until};
