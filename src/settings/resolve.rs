//! Stacks flags over environment over config file, fills defaults, and
//! checks the result.

use super::cli::{Cli, ClusterArgs, ServerArgs, SubCommand};
use super::discovery::find_self;
use super::file::{CLIENT_PORT_OFFSET_DEFAULT, ConfigFile};
use super::peers::{default_bind_ip, parse_bind_host, parse_peers, split_list};
use super::*;
use crate::core::ConfigError;
use crate::limits::Limits;
use crate::secret::Secret;
use crate::tls::{ClientTls, NodeTls, TlsFiles};
use clap::Parser;
use std::net::IpAddr;
use std::path::Path;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
type IsLocal<'a> = &'a dyn Fn(IpAddr) -> bool;

/// cluster_id travels in every handshake frame; keep it short.
const CLUSTER_ID_BYTES_MAX: usize = 64;

pub(crate) fn command<I, T>(args: I, env: Env, is_local: IsLocal) -> Result<Command, SettingsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        None => server(&cli.server, env, is_local).map(Command::Server),
        Some(SubCommand::Client(args)) => {
            let (peers, client_addrs, password, tls) = cluster(&args.cluster, env)?;
            Ok(Command::Client(ClientSettings {
                peers,
                client_addrs,
                password,
                tls,
                op: args.op,
            }))
        }
        Some(SubCommand::Status(args)) => Ok(Command::Status(status_settings(
            &args.cluster,
            env,
            args.json,
        )?)),
        Some(SubCommand::TransferLeader(args)) => {
            Ok(Command::TransferLeader(TransferLeaderSettings {
                cluster: status_settings(&args.cluster, env, false)?,
                target: args.id,
            }))
        }
        Some(SubCommand::Member(args)) => Ok(Command::Member(MemberSettings {
            cluster: status_settings(&args.cluster, env, false)?,
            op: args.op,
        })),
    }
}

/// Where a tool that asks the nodes finds them.
fn status_settings(
    args: &ClusterArgs,
    env: Env,
    json: bool,
) -> Result<StatusSettings, SettingsError> {
    let (peers, client_addrs, password, tls) = cluster(args, env)?;
    Ok(StatusSettings {
        peers,
        client_addrs,
        password,
        tls,
        json,
    })
}

/// One source's view of the settings that more than one source can give.
/// `a.or(b)` keeps what `a` says and takes the rest from `b`.
#[derive(Debug, Default)]
struct Layer {
    node_id: Option<u64>,
    peers: Option<Vec<String>>,
    host: Option<String>,
    port: Option<u16>,
    client_port: Option<u16>,
    data_dir: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
    metrics_addr: Option<String>,
    cluster_id: Option<String>,
    cluster_secret_file: Option<PathBuf>,
    client_password_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_ca_cert_file: Option<PathBuf>,
    debug: Option<bool>,
    enable_subleader: Option<bool>,
}

impl Layer {
    fn or(self, lower: Layer) -> Layer {
        Layer {
            node_id: self.node_id.or(lower.node_id),
            peers: self.peers.or(lower.peers),
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            client_port: self.client_port.or(lower.client_port),
            data_dir: self.data_dir.or(lower.data_dir),
            metrics_file: self.metrics_file.or(lower.metrics_file),
            metrics_addr: self.metrics_addr.or(lower.metrics_addr),
            cluster_id: self.cluster_id.or(lower.cluster_id),
            cluster_secret_file: self.cluster_secret_file.or(lower.cluster_secret_file),
            client_password_file: self.client_password_file.or(lower.client_password_file),
            tls_cert_file: self.tls_cert_file.or(lower.tls_cert_file),
            tls_key_file: self.tls_key_file.or(lower.tls_key_file),
            tls_ca_cert_file: self.tls_ca_cert_file.or(lower.tls_ca_cert_file),
            debug: self.debug.or(lower.debug),
            enable_subleader: self.enable_subleader.or(lower.enable_subleader),
        }
    }

    /// A boolean flag can only say "yes"; its absence says nothing, so that
    /// the environment and the file still count.
    fn from_flags(args: &ServerArgs) -> Layer {
        Layer {
            node_id: args.node_id,
            peers: args.peers.as_deref().map(split_list),
            host: args.host.clone(),
            port: args.port,
            client_port: args.client_port,
            data_dir: args.data_dir.clone(),
            metrics_file: args.metrics_file.clone(),
            metrics_addr: args.metrics_addr.clone(),
            cluster_id: args.cluster_id.clone(),
            cluster_secret_file: args.cluster_secret_file.clone(),
            client_password_file: args.client_password_file.clone(),
            tls_cert_file: args.tls_cert_file.clone(),
            tls_key_file: args.tls_key_file.clone(),
            tls_ca_cert_file: args.tls_ca_cert_file.clone(),
            debug: args.debug.then_some(true),
            enable_subleader: args.original_raft.then_some(false),
        }
    }

    fn from_env(env: Env) -> Result<Layer, SettingsError> {
        Ok(Layer {
            node_id: env_value(env, ENV_NODE_ID, parse_node_id)?,
            peers: env_value(env, ENV_PEERS, |s| Ok(split_list(s)))?,
            port: env_value(env, ENV_PORT, parse_port)?,
            data_dir: env_value(env, ENV_DATA_DIR, |s| Ok(PathBuf::from(s)))?,
            enable_subleader: env_value(env, ENV_ENABLE_SUBLEADER, parse_bool)?,
            ..Layer::default()
        })
    }

    fn from_file(file: &ConfigFile) -> Layer {
        Layer {
            node_id: file.node_id,
            peers: file.peers.clone(),
            host: file.host.clone(),
            port: file.port,
            client_port: file.client_port,
            data_dir: file.data_dir.clone(),
            metrics_file: file.metrics_file.clone(),
            metrics_addr: file.metrics_addr.clone(),
            cluster_id: file.cluster_id.clone(),
            cluster_secret_file: file.cluster_secret_file.clone(),
            client_password_file: file.client_password_file.clone(),
            tls_cert_file: file.tls_cert_file.clone(),
            tls_key_file: file.tls_key_file.clone(),
            tls_ca_cert_file: file.tls_ca_cert_file.clone(),
            debug: file.debug,
            // The file says this in [raft], applied in `raft_config`.
            enable_subleader: None,
        }
    }
}

/// An empty variable counts as unset: scripts often `export RAFT_NODE_ID=`
/// to clear a value, and clap treats empty variables the same way.
fn env_value<T>(
    env: Env,
    var: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, SettingsError> {
    match env(var) {
        Some(value) if !value.trim().is_empty() => parse(value.trim())
            .map(Some)
            .map_err(|reason| SettingsError::BadEnv { var, value, reason }),
        _ => Ok(None),
    }
}

fn parse_node_id(s: &str) -> Result<u64, String> {
    s.parse()
        .map_err(|_| "not a node id (a number from 0)".to_owned())
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("not a port (1-65535)".to_owned()),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err("expected true, false, 1 or 0".to_owned()),
    }
}

fn load_file(path: Option<&Path>) -> Result<ConfigFile, SettingsError> {
    path.map_or_else(|| Ok(ConfigFile::default()), ConfigFile::load)
}

fn server(args: &ServerArgs, env: Env, is_local: IsLocal) -> Result<Settings, SettingsError> {
    let file = load_file(args.config.as_deref())?;
    let layer = Layer::from_flags(args)
        .or(Layer::from_env(env)?)
        .or(Layer::from_file(&file));
    let mut warnings = Vec::new();

    let offset = file
        .client_port_offset
        .unwrap_or(CLIENT_PORT_OFFSET_DEFAULT);
    let (node_id, peers, client_addrs, peer_addr, listen, client_listen) = if args.join {
        joining_addrs(args, &layer, offset)?
    } else {
        let peers = parse_peers(layer.peers.as_deref().unwrap_or_default())?;
        let node_id = match layer.node_id {
            Some(id) if id < peers.len() as u64 => NodeId(id),
            Some(id) => {
                return Err(SettingsError::NodeIdOutOfRange {
                    node_id: id,
                    peer_count: peers.len(),
                });
            }
            None => find_self(&peers, layer.port, is_local)?,
        };
        let index = node_id.0 as usize;
        let client_addrs = client_addrs(&peers, offset)?;
        let (listen, client_listen) = listen_addrs(
            &layer,
            node_id,
            peers[index],
            client_addrs[index],
            &mut warnings,
        )?;
        warnings.extend(cluster_shape_warnings(&peers));
        let peer_addr = peers[index];
        (
            node_id,
            peers,
            client_addrs,
            peer_addr,
            listen,
            client_listen,
        )
    };
    let metrics_addr = layer
        .metrics_addr
        .as_deref()
        .map(|text| metrics_addr(text, listen, client_listen))
        .transpose()?;

    let limits = Limits::with_overrides(&file.limits);
    limits.validate().map_err(|e| SettingsError::BadValue {
        key: format!("limits.{}", e.key),
        reason: e.reason,
    })?;
    let file_raft = &file.raft.0;
    let raft = raft_config(
        RaftConfig {
            limits,
            snapshot_entries: args.snapshot_entries.unwrap_or(file_raft.snapshot_entries),
            snapshot_log_bytes: args
                .snapshot_log_bytes
                .unwrap_or(file_raft.snapshot_log_bytes),
            read_mode: args.read_mode.unwrap_or(file_raft.read_mode),
            clock_drift_ppm_max: args
                .clock_drift_ppm_max
                .unwrap_or(file_raft.clock_drift_ppm_max),
            ..file_raft.clone()
        },
        layer.enable_subleader,
    )
    .map_err(|e| match e {
        SettingsError::Raft(ConfigError(message)) => {
            let note = file.raft.alias_note(&message);
            SettingsError::Raft(ConfigError(message + &note))
        }
        other => other,
    })?;
    file.storage.validate()?;
    file.transport.validate()?;
    let cluster_secret = secret_file("cluster_secret_file", layer.cluster_secret_file.as_deref())?;
    let client_password = secret_file(
        "client_password_file",
        layer.client_password_file.as_deref(),
    )?;
    let tls = node_tls(&layer)?;
    Ok(Settings {
        node_id,
        cluster_id: cluster_id(layer.cluster_id)?,
        cluster_secret,
        client_password,
        tls,
        join: args.join,
        peers,
        peer_addr,
        listen,
        client_listen,
        client_addrs,
        data_dir: substitute_id(
            &layer.data_dir.unwrap_or_else(|| DATA_DIR_DEFAULT.into()),
            node_id,
        ),
        debug: layer.debug.unwrap_or(false),
        metrics_file: layer.metrics_file.map(|path| substitute_id(&path, node_id)),
        metrics_addr,
        raft,
        storage: file.storage,
        transport: file.transport,
        warnings,
    })
}

/// `--join`: no peer list; the node's own id, host and ports say where it
/// is, and it advertises exactly that (DESIGN.md 8).
fn joining_addrs(
    args: &ServerArgs,
    layer: &Layer,
    offset: u16,
) -> Result<JoinAddrs, SettingsError> {
    let bad = |key: &str, reason: &str| SettingsError::BadValue {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    if args.peers.is_some() {
        return Err(bad(
            "join",
            "--join and --peers exclude each other: a joining node learns its cluster from the leader that adds it",
        ));
    }
    let node_id = NodeId(layer.node_id.ok_or_else(|| {
        bad(
            "node_id",
            "--join needs --node-id: an id that no member of the cluster has",
        )
    })?);
    let host = layer.host.as_deref().ok_or_else(|| {
        bad(
            "host",
            "--join needs --host: the address the other nodes reach this node at",
        )
    })?;
    let ip = parse_bind_host(host)?;
    if ip.is_unspecified() {
        return Err(bad(
            "host",
            "--join needs --host to be the address the other nodes reach this node at, not 0.0.0.0",
        ));
    }
    let port = layer.port.unwrap_or(PEER_PORT_DEFAULT);
    let client_port = match layer.client_port {
        Some(port) => port,
        None => port.checked_add(offset).ok_or_else(|| {
            bad(
                "client_port",
                &format!("peer port {port} + client_port_offset {offset} exceeds 65535"),
            )
        })?,
    };
    if client_port == port {
        return Err(bad(
            "client_port",
            &format!("{client_port} is also the peer port"),
        ));
    }
    let listen = SocketAddr::new(ip, port);
    Ok((
        node_id,
        Vec::new(),
        Vec::new(),
        listen,
        listen,
        SocketAddr::new(ip, client_port),
    ))
}

/// Node id, peers, client addresses, advertised peer address, and the peer
/// and client addresses to bind.
type JoinAddrs = (
    NodeId,
    Vec<SocketAddr>,
    Vec<SocketAddr>,
    SocketAddr,
    SocketAddr,
    SocketAddr,
);

/// The peer and client addresses to bind.
///
/// `--port` (or RAFT_PORT) that disagrees with this node's entry in the
/// peer list: like etcd's listen vs advertise URLs, the node binds the port
/// it was told to and stays known to the others at the listed address. That
/// is right behind a port mapping (a container's `-p 5000:7000`) and wrong
/// otherwise, so it is a warning, not an error. Only possible with an
/// explicit node id: discovery by port never picks a disagreeing entry.
fn listen_addrs(
    layer: &Layer,
    node_id: NodeId,
    own: SocketAddr,
    own_client: SocketAddr,
    warnings: &mut Vec<String>,
) -> Result<(SocketAddr, SocketAddr), SettingsError> {
    let ip = match &layer.host {
        Some(host) => parse_bind_host(host)?,
        None => default_bind_ip(own.ip()),
    };
    let port = layer.port.unwrap_or(own.port());
    if port != own.port() {
        warnings.push(format!(
            "node {node_id} listens on port {port} but the peer list has it at {own}; \
             peers will dial {own}, so something must forward that to port {port}"
        ));
    }
    let client_port = layer.client_port.unwrap_or(own_client.port());
    if client_port != own_client.port() {
        warnings.push(format!(
            "node {node_id} serves clients on port {client_port}; the other nodes learn it \
             from its hello, but `sraft status` and `sraft client` expect it at {own_client} \
             (peer port + client_port_offset)"
        ));
    }
    if client_port == port {
        return Err(SettingsError::BadValue {
            key: "client_port".to_owned(),
            reason: format!("{client_port} is also the peer port"),
        });
    }
    Ok((SocketAddr::new(ip, port), SocketAddr::new(ip, client_port)))
}

/// The metrics endpoint's address: `IP:PORT`, or `:PORT` for this node's
/// own bind address (so that one config file serves every node, even
/// several on one host), and not one of this node's other two ports (a
/// clash would otherwise surface as a bind error).
fn metrics_addr(
    text: &str,
    listen: SocketAddr,
    client_listen: SocketAddr,
) -> Result<SocketAddr, SettingsError> {
    let bad = |reason: String| SettingsError::BadValue {
        key: "metrics_addr".to_owned(),
        reason,
    };
    let text = text.trim();
    let parsed = match text.strip_prefix(':') {
        Some(port) => port
            .parse::<u16>()
            .map(|port| SocketAddr::new(listen.ip(), port))
            .ok(),
        None => text.parse().ok(),
    };
    let addr = parsed.ok_or_else(|| {
        bad(format!(
            "'{text}' is not IP:PORT or :PORT (e.g. 127.0.0.1:9100)"
        ))
    })?;
    if addr.port() == 0 {
        return Err(bad(format!("'{text}' needs a port (1-65535)")));
    }
    for (what, taken) in [("peer", listen), ("client", client_listen)] {
        let same_ip =
            addr.ip() == taken.ip() || addr.ip().is_unspecified() || taken.ip().is_unspecified();
        if addr.port() == taken.port() && same_ip {
            return Err(bad(format!("{addr} is also the {what} address {taken}")));
        }
    }
    Ok(addr)
}

/// Every node's client address: its peer address with the port moved by
/// `offset`. Every node and tool computes the same list from the same peers.
/// On one host a small offset can land a client port on another node's peer
/// port (offset 1 with peers 5000, 5001), which is refused here rather than
/// as a bind error in whichever node starts second.
fn client_addrs(peers: &[SocketAddr], offset: u16) -> Result<Vec<SocketAddr>, SettingsError> {
    let addrs = shifted_ports(peers, offset)?;
    if let Some(clash) = addrs.iter().find(|addr| peers.contains(addr)) {
        return Err(SettingsError::BadValue {
            key: "client_port_offset".to_owned(),
            reason: format!("{offset} puts a client port on peer address {clash}"),
        });
    }
    Ok(addrs)
}

fn shifted_ports(peers: &[SocketAddr], offset: u16) -> Result<Vec<SocketAddr>, SettingsError> {
    peers
        .iter()
        .map(|peer| match peer.port().checked_add(offset) {
            Some(port) if offset > 0 => Ok(SocketAddr::new(peer.ip(), port)),
            _ => Err(SettingsError::BadValue {
                key: "client_port_offset".to_owned(),
                reason: format!(
                    "{offset} must be > 0 and keep the client port of {peer} within 65535"
                ),
            }),
        })
        .collect()
}

/// Legal clusters that an operator probably did not mean.
fn cluster_shape_warnings(peers: &[SocketAddr]) -> Vec<String> {
    let mut warnings = Vec::new();
    let n = peers.len();
    if n > 1 && n.is_multiple_of(2) {
        warnings.push(format!(
            "{n} nodes tolerate {} failure(s), no more than {}: an odd size is cheaper",
            (n - 1) / 2,
            n - 1
        ));
    }
    let loopback = peers.iter().find(|p| p.ip().is_loopback());
    let remote = peers.iter().find(|p| !p.ip().is_loopback());
    if let (Some(loopback), Some(remote)) = (loopback, remote) {
        warnings.push(format!(
            "peers mix loopback and network addresses: {remote} cannot reach {loopback}"
        ));
    }
    warnings
}

/// The file's [raft] table with the mode from flag or environment on top.
fn raft_config(
    file_raft: RaftConfig,
    enable_subleader: Option<bool>,
) -> Result<RaftConfig, SettingsError> {
    let raft = match enable_subleader {
        Some(false) => file_raft.original(),
        Some(true) => RaftConfig {
            enable_subleader: true,
            ..file_raft
        },
        None => file_raft,
    };
    raft.validate()?;
    Ok(raft)
}

fn cluster_id(id: Option<String>) -> Result<String, SettingsError> {
    let id = id.unwrap_or_else(|| CLUSTER_ID_DEFAULT.to_owned());
    let printable = id.chars().all(|c| c.is_ascii_graphic());
    if id.is_empty() || id.len() > CLUSTER_ID_BYTES_MAX || !printable {
        return Err(SettingsError::BadValue {
            key: "cluster_id".to_owned(),
            reason: format!(
                "'{id}' must be 1 to {CLUSTER_ID_BYTES_MAX} printable ASCII characters, no spaces"
            ),
        });
    }
    Ok(id)
}

/// TLS needs all three files or none; they are read and checked here, so
/// that a bad one is a one-line error before anything is opened.
fn node_tls(layer: &Layer) -> Result<Option<NodeTls>, SettingsError> {
    let bad = |reason: String| SettingsError::BadValue {
        key: "tls".to_owned(),
        reason,
    };
    match (
        &layer.tls_cert_file,
        &layer.tls_key_file,
        &layer.tls_ca_cert_file,
    ) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), Some(ca)) => NodeTls::load(&TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
        })
        .map(Some)
        .map_err(bad),
        _ => Err(bad(
            "tls_cert_file, tls_key_file and tls_ca_cert_file go together: give all three or none"
                .into(),
        )),
    }
}

/// Reads a secret file named by setting `key`, if one is named.
fn secret_file(key: &'static str, path: Option<&Path>) -> Result<Option<Secret>, SettingsError> {
    path.map(|path| {
        Secret::from_file(path).map_err(|error| SettingsError::SecretFile { key, error })
    })
    .transpose()
}

/// Replaces `{id}` so that one config file or one RAFT_DATA_DIR serves
/// every node. A path that is not UTF-8 cannot contain `{id}` as written
/// and is kept as is.
fn substitute_id(path: &Path, node_id: NodeId) -> PathBuf {
    match path.to_str() {
        Some(text) => PathBuf::from(text.replace("{id}", &node_id.to_string())),
        None => path.to_owned(),
    }
}

/// Peers, client addresses and password for `sraft client` and `sraft
/// status`. The password: `--password-file`, else `SRAFT_PASSWORD`, else the
/// config file's `client_password_file` (the server's own file, where the
/// tool runs on a node).
fn cluster(args: &ClusterArgs, env: Env) -> Result<ClusterView, SettingsError> {
    let file = load_file(args.config.as_deref())?;
    let items = match args.peers.as_deref() {
        Some(list) => Some(split_list(list)),
        None => env_value(env, ENV_PEERS, |s| Ok(split_list(s)))?,
    }
    .or(file.peers);
    let (peers, client_addrs) = match args.endpoints.as_deref() {
        // Client addresses given as such: no peer list is needed.
        Some(list) => {
            let endpoints = parse_peers(&split_list(list)).map_err(|e| match e {
                SettingsError::NoPeers => SettingsError::BadValue {
                    key: "endpoints".to_owned(),
                    reason: "empty list".to_owned(),
                },
                SettingsError::BadPeer { item, reason } => SettingsError::BadValue {
                    key: "endpoints".to_owned(),
                    reason: format!("'{item}': {reason}"),
                },
                other => other,
            })?;
            (Vec::new(), endpoints)
        }
        None => {
            let peers = parse_peers(items.as_deref().unwrap_or_default())?;
            let offset = file
                .client_port_offset
                .unwrap_or(CLIENT_PORT_OFFSET_DEFAULT);
            let client_addrs = client_addrs(&peers, offset)?;
            (peers, client_addrs)
        }
    };
    let password = match args.password_file.as_deref() {
        Some(path) => secret_file("password-file", Some(path))?,
        None => match env(ENV_PASSWORD).filter(|p| !p.is_empty()) {
            Some(password) => Some(Secret::new(password)),
            None => secret_file("client_password_file", file.client_password_file.as_deref())?,
        },
    };
    let tls = args
        .tls_ca_cert_file
        .as_ref()
        .or(file.tls_ca_cert_file.as_ref())
        .map(|ca| ClientTls::load(ca))
        .transpose()
        .map_err(|reason| SettingsError::BadValue {
            key: "tls-ca-cert-file".to_owned(),
            reason,
        })?;
    Ok((peers, client_addrs, password, tls))
}

type ClusterView = (
    Vec<SocketAddr>,
    Vec<SocketAddr>,
    Option<Secret>,
    Option<ClientTls>,
);

#[cfg(test)]
mod tests;
