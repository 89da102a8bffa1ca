//! The `sraft` command line as clap sees it: raw, optional values. Nothing
//! here has a default, because a flag that was not given must fall through
//! to the environment and then the config file (`resolve.rs`). For the same
//! reason clap's `env` attribute is not used: the environment is read
//! through an injectable function, and listed in the help by hand.

use crate::core::ReadMode;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sraft",
    version,
    about = "S-Raft: Raft with RTT-ranked sub-leaders, and a replicated Redis-compatible KV store",
    long_about = None,
    after_help = "Without a subcommand, runs a server node. Each setting comes from its flag, \
                  else its environment variable, else the config file, else its default.",
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: Option<SubCommand>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SubCommand {
    /// Sends one command to the cluster through any node's client port.
    Client(ClientArgs),
    /// Prints each node's role, term, leader, indexes and sub-leaders.
    Status(StatusArgs),
    /// Has the leader hand over to node ID, or to its primary sub-leader;
    /// returns once the new leader leads, or fails with the reason.
    TransferLeader(TransferLeaderArgs),
    /// Lists, adds, promotes or removes cluster members (DESIGN.md 8).
    Member(MemberArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// This node's id: its position in the peer list, from 0 [env: RAFT_NODE_ID]
    /// [default: the peer whose address is this host's]
    #[arg(long, value_name = "N")]
    pub node_id: Option<u64>,
    /// Every node's peer address, in id order: host:port,host:port,...
    /// [env: RAFT_PEERS]
    #[arg(long, value_name = "H:P,H:P,...")]
    pub peers: Option<String>,
    /// Join an existing cluster: start knowing no peers (no --peers) and wait
    /// for its leader to add this node (`sraft member add`); needs
    /// --node-id (an id no member has) and --host (the address other
    /// nodes reach this one at)
    #[arg(long)]
    pub join: bool,
    /// IP address to bind [default: the own peer IP if loopback, else 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub host: Option<String>,
    /// Peer port to bind; without --node-id, also picks this node's entry
    /// among peers on one host [env: RAFT_PORT] [default: own entry's port]
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Client (RESP) port [default: peer port + client_port_offset (1000)]
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    pub client_port: Option<u16>,
    /// TOML config file; flags and environment variables override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write-ahead log and snapshots; {id} is replaced by the node id
    /// [env: RAFT_DATA_DIR] [default: ./data/node-{id}]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log at debug level (default: info)
    #[arg(long)]
    pub debug: bool,
    /// Disable sub-leaders: plain Raft, for comparison
    /// [env: ENABLE_SUBLEADER=false]
    #[arg(long)]
    pub original_raft: bool,
    /// Append one JSON object per event to FILE; {id} is replaced
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://H:P/metrics; :P binds this node's
    /// own address [default: off]
    #[arg(long, value_name = "H:P")]
    pub metrics_addr: Option<String>,
    /// Name checked in every peer handshake [default: sraft]
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// Snapshot the state (and compact the log) every N applied entries
    /// [default: 100000; config: [raft] snapshot_entries]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_entries: Option<u64>,
    /// ...or once the log holds N bytes [default: 268435456; config:
    /// [raft] snapshot_log_bytes]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_log_bytes: Option<u64>,
    /// How the leader serves linearizable reads: read_index (a heartbeat
    /// round) or lease (locally, while its lease holds; DESIGN.md 3.8)
    /// [default: read_index; config: [raft] read_mode]
    #[arg(long, value_name = "MODE")]
    pub read_mode: Option<ReadMode>,
    /// Lease mode: the most one node's clock may run faster than another's,
    /// in parts per million [default: 50000; config: [raft]
    /// clock_drift_ppm_max]
    #[arg(long, value_name = "PPM")]
    pub clock_drift_ppm_max: Option<u64>,
    /// File holding the shared secret every peer must prove it knows (mode
    /// 0600) [default: peers are not authenticated]
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// File holding the password clients must give with AUTH (mode 0600)
    /// [default: clients are not authenticated]
    #[arg(long, value_name = "FILE")]
    pub client_password_file: Option<PathBuf>,
    /// This node's certificate (PEM) for TLS on both ports; needs
    /// --tls-key-file and --tls-ca-cert-file [default: plain TCP]
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// The CA (PEM) that every peer's certificate must chain to
    #[arg(long, value_name = "FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,
}

/// Where a client-side tool finds the cluster.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// Every node's peer address, in id order; client ports are derived
    /// from them [env: RAFT_PEERS]
    #[arg(long, value_name = "H:P,H:P,...")]
    pub peers: Option<String>,
    /// TOML config file to take peers, client_port_offset and
    /// client_password_file from
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Client (RESP) addresses of any members, H:P,H:P,...: used instead of
    /// client addresses derived from --peers (a cluster whose membership
    /// changed, or whose nodes chose their own client ports)
    #[arg(long, value_name = "H:P,H:P,...")]
    pub endpoints: Option<String>,
    /// File holding the nodes' client password (mode 0600)
    /// [env: SRAFT_PASSWORD holds the password itself]
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Speak TLS to the nodes, verifying them against this CA (PEM)
    /// [default: the config file's tls_ca_cert_file, else plain TCP]
    #[arg(long, value_name = "FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub op: ClientOp,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// One JSON object per node instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TransferLeaderArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The node to hand over to [default: the leader's primary sub-leader]
    pub id: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct MemberArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub op: MemberOp,
}

/// One `sraft member` command; each maps to `RAFT MEMBER ...` on the
/// leader's client port.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum MemberOp {
    /// Every member: id, peer and client address, voter or learner, match
    /// index (as the leader knows it), role
    List {
        /// One JSON object per member instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Adds node ID at PEER_ADDR (started with --join): as a learner, then,
    /// once it has caught up, as a voter; returns when it votes, or fails
    /// with the reason (the cluster then unchanged)
    Add {
        id: u64,
        #[arg(value_name = "PEER_ADDR")]
        peer_addr: String,
        /// Where the new node serves clients [default: what it announces]
        #[arg(long, value_name = "H:P")]
        client_addr: Option<String>,
        /// Stay a learner: receive the log, never vote
        #[arg(long)]
        learner: bool,
    },
    /// Makes learner ID a voter, once it has caught up
    Promote { id: u64 },
    /// Removes member ID (a voter, a learner, or the leader itself, which
    /// hands over to its primary sub-leader first)
    Remove { id: u64 },
}

/// One `sraft client` command; each maps to the RESP command of that name.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum ClientOp {
    /// SET key value
    Set { key: String, value: String },
    /// GET key
    Get { key: String },
    /// DEL key
    Del { key: String },
    /// CAS key expected new: set to NEW only if the value is EXPECTED
    Cas {
        key: String,
        expected: String,
        new: String,
    },
    /// INCR key
    Incr { key: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
