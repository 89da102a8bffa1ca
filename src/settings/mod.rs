//! Command line, environment and config file, resolved into one validated
//! `Settings` before the node opens a file or a socket (DESIGN.md 4.1).
//!
//! Precedence, for every setting: flag, then environment variable, then the
//! `--config` TOML file, then the default. clap parses the flags into
//! options; `resolve.rs` stacks the three sources and fills the defaults.
//!
//! ```text
//! sraft [--node-id N] --peers H:P,H:P,... [--host IP] [--port P] [--client-port P]
//!       [--config FILE] [--data-dir DIR] [--debug] [--original-raft]
//!       [--metrics-file FILE] [--metrics-addr H:P] [--cluster-id ID]
//!       [--cluster-secret-file FILE] [--client-password-file FILE]
//!       [--tls-cert-file FILE --tls-key-file FILE --tls-ca-cert-file FILE]
//! sraft client [--peers ...] [--config FILE] [--password-file FILE] set K V | get K | del K | cas K EXPECTED NEW | incr K
//! sraft status [--peers ...] [--config FILE] [--password-file FILE] [--json]
//! ```

mod cli;
mod discovery;
mod error;
mod file;
mod peers;
mod raft_table;
mod resolve;
pub mod test_delay;

pub use cli::{ClientOp, MemberOp};
pub use error::{EXIT_STATUS_BAD_SETTINGS, SettingsError};
pub use file::{CLIENT_PORT_OFFSET_DEFAULT, StorageSettings, TransportSettings};
pub use peers::PEER_PORT_DEFAULT;
pub use raft_table::SEED_ALIASES;

use crate::core::{NodeId, RaftConfig};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

pub const ENV_NODE_ID: &str = "RAFT_NODE_ID";
pub const ENV_PORT: &str = "RAFT_PORT";
pub const ENV_PEERS: &str = "RAFT_PEERS";
pub const ENV_DATA_DIR: &str = "RAFT_DATA_DIR";
/// `true`/`false`/`1`/`0`; false means original Raft, like `--original-raft`.
pub const ENV_ENABLE_SUBLEADER: &str = "ENABLE_SUBLEADER";
/// The client password itself, for `sraft client` and `sraft status`, as
/// redis-cli's REDISCLI_AUTH.
pub const ENV_PASSWORD: &str = "SRAFT_PASSWORD";

pub const CLUSTER_ID_DEFAULT: &str = "sraft";
/// `{id}` is replaced by the node id.
pub const DATA_DIR_DEFAULT: &str = "./data/node-{id}";

/// What the command line asks for.
// Built once per process, so boxing `Settings` to shrink the enum would only
// make every `main` match uglier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Server(Settings),
    Client(ClientSettings),
    Status(StatusSettings),
    TransferLeader(TransferLeaderSettings),
    Member(MemberSettings),
}

/// Everything a server node needs, resolved and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub node_id: NodeId,
    /// Sent in the peer handshake; a node of another cluster is refused.
    pub cluster_id: String,
    /// The secret of the peer handshake (DESIGN.md 9); None: peers are not
    /// authenticated, and the node says so at start.
    pub cluster_secret: Option<crate::secret::Secret>,
    /// The password of Redis AUTH on the client port; None: clients are not
    /// authenticated.
    pub client_password: Option<crate::secret::Secret>,
    /// TLS on both ports, loaded and checked; None: plain TCP.
    pub tls: Option<crate::tls::NodeTls>,
    /// Started with `--join` (DESIGN.md 8): `peers` and `client_addrs`
    /// are empty, and the node waits for a leader to add it.
    pub join: bool,
    /// Peer (Raft) address of every node; index = node id.
    pub peers: Vec<SocketAddr>,
    /// This node's own peer address as the others reach it.
    pub peer_addr: SocketAddr,
    /// Where this node accepts peer connections.
    pub listen: SocketAddr,
    /// Where this node accepts RESP clients.
    pub client_listen: SocketAddr,
    /// Client address of every node; index = node id. A follower tells
    /// clients, and `sraft status` asks, at these.
    pub client_addrs: Vec<SocketAddr>,
    pub data_dir: PathBuf,
    pub debug: bool,
    pub metrics_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere.
    pub metrics_addr: Option<SocketAddr>,
    /// `enable_subleader` already reflects `--original-raft` and
    /// `ENABLE_SUBLEADER`; `raft.limits` is the validated limits table
    /// (the config file's `[limits]`), which the runtime, the transport,
    /// the WAL and the client port take their byte limits from.
    pub raft: RaftConfig,
    pub storage: StorageSettings,
    pub transport: TransportSettings,
    /// Legal but suspicious choices (an even cluster, a bind port that is not
    /// the advertised one). Settings are resolved before the logger exists,
    /// since `--debug` sets its level, so `main` logs these once it does.
    pub warnings: Vec<String>,
}

/// `sraft client`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    pub peers: Vec<SocketAddr>,
    pub client_addrs: Vec<SocketAddr>,
    /// Sent with AUTH on every connection.
    pub password: Option<crate::secret::Secret>,
    /// TLS to the nodes' client ports, when they speak it.
    pub tls: Option<crate::tls::ClientTls>,
    pub op: ClientOp,
}

/// `sraft status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusSettings {
    pub peers: Vec<SocketAddr>,
    pub client_addrs: Vec<SocketAddr>,
    /// Sent with AUTH on every connection.
    pub password: Option<crate::secret::Secret>,
    /// TLS to the nodes' client ports, when they speak it.
    pub tls: Option<crate::tls::ClientTls>,
    pub json: bool,
}

/// `sraft transfer-leader`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferLeaderSettings {
    /// Where to look for the leader (and the password and TLS to use).
    pub cluster: StatusSettings,
    /// None: the leader's primary sub-leader.
    pub target: Option<u64>,
}

/// `sraft member ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSettings {
    /// Where to look for the leader (and the password and TLS to use).
    pub cluster: StatusSettings,
    pub op: MemberOp,
}

impl Settings {
    /// Parses `args` (program name first, as from `std::env::args_os()`),
    /// reading environment variables through `env`, so tests need not touch
    /// the process environment. Discovery tests this host's real addresses.
    pub fn from_args<I, T>(
        args: I,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Command, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        resolve::command(args, env, &discovery::is_local_ip)
    }

    /// `from_args` on this process's arguments and environment.
    pub fn from_process() -> Result<Command, SettingsError> {
        Settings::from_args(std::env::args_os(), &|var| std::env::var(var).ok())
    }
}
