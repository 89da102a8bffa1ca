//! `sraft`: one S-Raft node per process (DESIGN.md 4), plus the `client`
//! and `status` tools.

use sraft::kv::store::{KvStore, KvStoreConfig};
use sraft::metrics::http::MetricsServer;
use sraft::runtime::memory_keeper::{self, ENV_MEMORY_KEEPER};
use sraft::runtime::{self, NodeOptions};
use sraft::server::{ClientServer, Relay, ServerContext};
use sraft::settings::test_delay::{ENV_DELAY_US_BY_PEER, parse_delay_us_by_peer};
use sraft::settings::{Command, Settings};
use std::time::Duration;

fn main() {
    let command = Settings::from_process().unwrap_or_else(|e| e.exit());
    let code = match command {
        Command::Server(settings) => {
            init_logging(settings.debug);
            for warning in &settings.warnings {
                log::warn!("{warning}");
            }

            run_server(settings)
        }
        Command::Client(settings) => {
            init_logging(false);
            sraft::client::run_client(&settings, Duration::from_secs(10))
        }
        Command::Status(settings) => {
            init_logging(false);
            sraft::client::run_status(&settings)
        }
        Command::TransferLeader(settings) => {
            init_logging(false);
            sraft::client::run_transfer_leader(&settings, Duration::from_secs(10))
        }
        Command::Member(settings) => {
            init_logging(false);
            sraft::client::run_member(&settings, Duration::from_secs(10))
        }
    };
    std::process::exit(code);
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_micros()
        .init();
}

fn run_server(settings: Settings) -> i32 {
    // First, before any file or socket is open (DESIGN.md 3.5); reported
    // once the node is up, so that a failed start stays one line.
    let keeper = match std::env::var(ENV_MEMORY_KEEPER) {
        Ok(v) if v == "off" => None,
        _ => Some(memory_keeper::spawn()),
    };
    // Test-only; read before anything opens, so that a bad value is the
    // one line of a failed start (DESIGN.md 4.1).
    let delay_us_by_peer = match std::env::var(ENV_DELAY_US_BY_PEER) {
        Ok(text) => match parse_delay_us_by_peer(&text) {
            Ok(delays) => delays,
            Err(e) => {
                eprintln!("sraft: {e}");
                return sraft::settings::EXIT_STATUS_BAD_SETTINGS;
            }
        },
        Err(_) => Default::default(),
    };
    let options = NodeOptions {
        id: settings.node_id,
        cluster_id: settings.cluster_id.clone(),
        cluster_secret: settings.cluster_secret.clone(),
        tls: settings.tls.clone(),
        peers: settings.peers.clone(),
        join: settings.join,
        peer_addr: Some(settings.peer_addr),
        listen: settings.listen,
        data_dir: settings.data_dir.clone(),
        raft: settings.raft.clone(),
        wal: sraft::storage::WalOptions {
            fsync: settings.storage.fsync,
            segment_bytes_max: settings.storage.segment_bytes_max,
            record_bytes_max: settings.raft.limits.wal_record_bytes_max,
            ..Default::default()
        },
        frame_bytes_max: settings.raft.limits.frame_bytes_max_u32(),
        queue_depth: settings.transport.queue_depth,
        delay_us: test_env("SRAFT_TEST_DELAY_US"),
        delay_us_by_peer,
        metrics_file: settings.metrics_file.clone(),
        snapshot_delay_ms: test_env("SRAFT_TEST_SNAPSHOT_DELAY_MS"),
        client_addr: Some(advertised_client_addr(&settings)),
    };
    // Bind every port first: a port in use is reported before the node
    // opens its log or talks to peers (DESIGN.md 2.7, 4.1).
    let client_listener = match std::net::TcpListener::bind(settings.client_listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "sraft: cannot listen for clients on {}: {e}",
                settings.client_listen
            );
            return 1;
        }
    };
    let peer_listener = match std::net::TcpListener::bind(settings.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sraft: cannot listen for peers on {}: {e}", settings.listen);
            return 1;
        }
    };
    let metrics_listener = match settings.metrics_addr.map(std::net::TcpListener::bind) {
        None => None,
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            eprintln!(
                "sraft: cannot serve metrics on {}: {e}",
                settings.metrics_addr.expect("some")
            );
            return 1;
        }
    };
    // APPEND's result is bounded like any value, and the sessions table:
    // both shape the replicated state, so they must match on every node.
    let store = KvStore::new(KvStoreConfig {
        value_bytes_max: settings.raft.limits.value_bytes_max,
        sessions_max: settings.raft.limits.sessions_max,
    });
    let mut node = match runtime::start_on(peer_listener, &options, store) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("sraft: {e}");
            return 1;
        }
    };
    // The guesses (peer port + offset) stand until each node's hello
    // announces its real client address (DESIGN.md 4.4).
    let client_addrs = node.transport.client_addrs().clone();
    for (id, addr) in settings.client_addrs.iter().enumerate() {
        client_addrs.configure(sraft::core::NodeId(id as u64), *addr);
    }
    let relay = match Relay::start(&node, &settings.raft.limits) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("sraft: cannot start forwarding: {e}");
            return 1;
        }
    };
    let mut context = ServerContext::new(
        settings.node_id.0,
        node.requests.clone(),
        node.status.clone(),
        node.metrics.clone(),
        client_addrs,
        &settings.raft.limits,
    );
    context.relay = Some(relay);
    context.password = settings.client_password.clone();
    context.tls = settings.tls.clone();
    let mut server = match ClientServer::from_listener(client_listener, context) {
        Ok(server) => server,
        Err(e) => {
            eprintln!(
                "sraft: cannot serve clients on {}: {e}",
                settings.client_listen
            );
            return 1;
        }
    };
    let mut metrics_server = match metrics_listener.map(|listener| serve_metrics(listener, &node)) {
        None => None,
        Some(Ok(server)) => Some(server),
        Some(Err(e)) => {
            eprintln!("sraft: cannot serve metrics: {e}");
            return 1;
        }
    };
    let shutdown = node.shutdown_sender();
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = shutdown.try_send(());
    }) {
        log::warn!("cannot install the SIGINT/SIGTERM handler: {e}");
    }
    match keeper {
        None => log::info!(
            "memory keeper off ({ENV_MEMORY_KEEPER}=off): a kill -9 closes our sockets only after our memory is freed"
        ),
        Some(Ok(pid)) => log::info!(
            "memory keeper pid {pid}: a kill -9 closes our sockets before our memory is freed"
        ),
        Some(Err(e)) => log::warn!(
            "memory keeper not started ({e}): a kill -9 closes our sockets only after our memory is freed"
        ),
    }
    log::info!(
        "Node {} up: peers on {}, clients on {}, data in {}, mode {}",
        settings.node_id,
        settings.listen,
        server.local_addr(),
        settings.data_dir.display(),
        if settings.raft.enable_subleader {
            "s-raft"
        } else {
            "original"
        }
    );
    let mut options_delay_note = Vec::new();
    if options.delay_us > 0 {
        options_delay_note.push(format!("SRAFT_TEST_DELAY_US={}", options.delay_us));
    }
    if !options.delay_us_by_peer.is_empty() {
        let row: Vec<String> = options
            .delay_us_by_peer
            .iter()
            .map(|(peer, us)| format!("{}:{us}", peer.0))
            .collect();
        options_delay_note.push(format!("{ENV_DELAY_US_BY_PEER}={}", row.join(",")));
    }
    let options_delay_note = options_delay_note.join(", ");
    if !options_delay_note.is_empty() {
        log::warn!(
            "Node {}: TEST-ONLY network delay active ({options_delay_note}): not for production",
            settings.node_id
        );
    }
    // Logged once the node is up, so that a start that fails still says
    // only its one line of why.
    if settings.join {
        log::info!(
            "Node {}: started with --join: waiting for a leader to add this node (sraft member add {} {})",
            settings.node_id,
            settings.node_id,
            settings.peer_addr
        );
    }
    if settings.cluster_secret.is_none() && (settings.peers.len() > 1 || settings.join) {
        log::warn!(
            "peers are not authenticated: any process that reaches the peer port and \
             knows the cluster id can vote and append; set cluster_secret_file"
        );
    }
    if let Some(metrics) = &metrics_server {
        log::info!(
            "Node {}: metrics at http://{}/metrics",
            settings.node_id,
            metrics.local_addr()
        );
    }
    let result = node.join();
    server.shutdown();
    if let Some(metrics) = metrics_server.as_mut() {
        metrics.shutdown();
    }
    match result {
        Ok(()) => {
            log::info!("Node {}: stopped cleanly", settings.node_id);
            0
        }
        Err(e) => {
            log::error!("Node {}: stopping: {e}", settings.node_id);
            eprintln!("sraft: {e}");
            1
        }
    }
}

/// The client address this node announces to its peers: the host it is
/// known by in the peer list, and the port it really serves clients on
/// (`--client-port` wins over peer port + offset).
fn advertised_client_addr(settings: &Settings) -> std::net::SocketAddr {
    std::net::SocketAddr::new(settings.peer_addr.ip(), settings.client_listen.port())
}

/// `GET /metrics`: the node's status as the Raft thread last published it
/// (copied under its lock, rendered after), and its counters.
fn serve_metrics<S: sraft::state_machine::StateMachine>(
    listener: std::net::TcpListener,
    node: &runtime::NodeHandle<S>,
) -> std::io::Result<MetricsServer> {
    let status = node.status.clone();
    let metrics = node.metrics.clone();
    MetricsServer::from_listener(listener, move || {
        let status = status.lock().clone();
        sraft::metrics::render(&metrics, &status)
    })
}

/// Test-only knobs, never set in production: `SRAFT_TEST_DELAY_US` makes
/// the transport hold every message that long (the kernel here has no
/// netem); `SRAFT_TEST_SNAPSHOT_DELAY_MS` holds every snapshot write that
/// long, so that a test can kill a node while it writes one.
fn test_env(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
