//! What can be wrong with a command line, the environment or a config file.
//! Every variant but `Usage` displays as one line that names the bad flag,
//! variable, key or value, because `main` prints it and exits before
//! anything is opened (DESIGN.md 4.1).

use crate::core::{ConfigError, NodeId};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Exit status for a bad configuration: 2, the status clap uses for a bad
/// command line, since both mean "the operator must fix the invocation".
pub const EXIT_STATUS_BAD_SETTINGS: i32 = 2;

#[derive(Debug)]
pub enum SettingsError {
    /// clap's own outcome: `--help`, `--version`, or a malformed command
    /// line. `exit()` prints it in clap's format with clap's exit status.
    Usage(clap::Error),
    /// An environment variable is set to something that does not parse.
    BadEnv {
        var: &'static str,
        value: String,
        reason: String,
    },
    ConfigRead {
        path: PathBuf,
        source: io::Error,
    },
    /// TOML syntax, a wrong type, or an unknown key (typos are errors, not
    /// silently ignored settings).
    ConfigParse {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    NoPeers,
    BadPeer {
        item: String,
        reason: String,
    },
    DuplicatePeer {
        addr: SocketAddr,
        first: NodeId,
        second: NodeId,
    },
    NodeIdOutOfRange {
        node_id: u64,
        peer_count: usize,
    },
    /// Discovery found no peer entry with a local address (and `port`).
    NotAPeer {
        peers: Vec<SocketAddr>,
        port: Option<u16>,
    },
    /// Discovery found several, as on a loopback cluster.
    SeveralPeersAreThisHost {
        ids: Vec<NodeId>,
    },
    BadHost {
        host: String,
        reason: String,
    },
    /// A value out of its range; `key` is spelled as in the config file.
    BadValue {
        key: String,
        reason: String,
    },
    Raft(ConfigError),
    /// A secret file (`key` names the setting) that is unreadable, empty,
    /// or readable by group or others.
    SecretFile {
        key: &'static str,
        error: crate::secret::SecretFileError,
    },
}

impl SettingsError {
    /// Prints the error and ends the process: clap's errors the way clap
    /// does it (status 0 for `--help`), ours as `sraft: <line>` on stderr.
    pub fn exit(self) -> ! {
        match self {
            SettingsError::Usage(e) if usage_is_output(&e) => e.exit(),
            SettingsError::Usage(e) => {
                // DESIGN.md 4.1: a bad command line is one line on stderr, as
                // every other bad setting is; clap's usage block and tips
                // stay behind `--help`.
                eprintln!("sraft: {} (see --help)", usage_error_line(&e));
                std::process::exit(e.exit_code())
            }
            other => {
                eprintln!("sraft: {other}");
                std::process::exit(EXIT_STATUS_BAD_SETTINGS)
            }
        }
    }
}

/// `--help`, `--version` and a bare subcommand: clap's text is the
/// requested output, not an error.
fn usage_is_output(e: &clap::Error) -> bool {
    matches!(
        e.kind(),
        clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// The first line of clap's message ("error: unexpected argument '--x'
/// found"), without the "error: " prefix.
fn usage_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad command line");
    first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .trim()
        .to_string()
}

fn join<T: fmt::Display>(items: &[T], separator: &str) -> String {
    let strings: Vec<String> = items.iter().map(T::to_string).collect();
    strings.join(separator)
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Usage(e) => write!(f, "{e}"),
            SettingsError::BadEnv { var, value, reason } => {
                write!(f, "bad {var}='{value}': {reason}")
            }
            SettingsError::ConfigRead { path, source } => {
                write!(f, "cannot read config file '{}': {source}", path.display())
            }
            SettingsError::ConfigParse {
                path,
                line: Some(line),
                message,
            } => write!(f, "config file '{}' line {line}: {message}", path.display()),
            SettingsError::ConfigParse {
                path,
                line: None,
                message,
            } => write!(f, "config file '{}': {message}", path.display()),
            SettingsError::NoPeers => write!(
                f,
                "no peers: pass --peers, set RAFT_PEERS, or list peers in the config file"
            ),
            SettingsError::BadPeer { item, reason } => write!(f, "bad peer '{item}': {reason}"),
            SettingsError::DuplicatePeer {
                addr,
                first,
                second,
            } => write!(
                f,
                "duplicate peer {addr}: ids {first} and {second} are the same address"
            ),
            SettingsError::NodeIdOutOfRange {
                node_id,
                peer_count,
            } => write!(
                f,
                "node id {node_id} is out of range: the peer list has {peer_count} entries (ids 0..={})",
                peer_count.saturating_sub(1)
            ),
            SettingsError::NotAPeer { peers, port: None } => write!(
                f,
                "this host is none of the peers ({}); pass --node-id",
                join(peers, ", ")
            ),
            SettingsError::NotAPeer {
                peers,
                port: Some(port),
            } => write!(
                f,
                "this host is none of the peers ({}) with port {port}; pass --node-id",
                join(peers, ", ")
            ),
            SettingsError::SeveralPeersAreThisHost { ids } => write!(
                f,
                "several peers are this host (ids {}); pass --node-id or --port",
                join(ids, ",")
            ),
            SettingsError::BadHost { host, reason } => write!(f, "bad host '{host}': {reason}"),
            SettingsError::BadValue { key, reason } => write!(f, "bad {key}: {reason}"),
            SettingsError::Raft(e) => write!(f, "{e}"),
            SettingsError::SecretFile { key, error } => write!(f, "bad {key} {error}"),
        }
    }
}

impl std::error::Error for SettingsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SettingsError::Usage(e) => Some(e),
            SettingsError::ConfigRead { source, .. } => Some(source),
            SettingsError::Raft(e) => Some(e),
            _ => None,
        }
    }
}

impl From<clap::Error> for SettingsError {
    fn from(e: clap::Error) -> SettingsError {
        SettingsError::Usage(e)
    }
}

impl From<ConfigError> for SettingsError {
    fn from(e: ConfigError) -> SettingsError {
        SettingsError::Raft(e)
    }
}
