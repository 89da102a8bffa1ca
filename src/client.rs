//! `sraft client` and `sraft status` (DESIGN.md 4.5): small RESP clients of
//! the nodes' client ports.

use crate::kv::resp::{RespLimits, Value};
use crate::secret::Secret;
use crate::server::Forwarder;
use crate::server::parse_info;
use crate::settings::{ClientOp, ClientSettings, StatusSettings};
use crate::tls::ClientTls;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One request to one address.
pub fn call(addr: SocketAddr, args: &[&[u8]], timeout: Duration) -> std::io::Result<Value> {
    call_with_password(addr, args, timeout, None)
}

/// One request to one address, after AUTH with `password` if there is one.
pub fn call_with_password(
    addr: SocketAddr,
    args: &[&[u8]],
    timeout: Duration,
    password: Option<&Secret>,
) -> std::io::Result<Value> {
    call_with(addr, args, timeout, password, None)
}

/// One request to one address, over TLS if `tls` is given, after AUTH with
/// `password` if there is one.
pub fn call_with(
    addr: SocketAddr,
    args: &[&[u8]],
    timeout: Duration,
    password: Option<&Secret>,
    tls: Option<&ClientTls>,
) -> std::io::Result<Value> {
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
    Forwarder::new(password.cloned(), tls.map(|tls| tls.0.clone())).call(
        addr,
        &args,
        timeout,
        &RespLimits::default(),
    )
}

fn op_args(op: &ClientOp) -> Vec<Vec<u8>> {
    let v = |items: &[&str]| items.iter().map(|s| s.as_bytes().to_vec()).collect();
    match op {
        ClientOp::Set { key, value } => v(&["SET", key, value]),
        ClientOp::Get { key } => v(&["GET", key]),
        ClientOp::Del { key } => v(&["DEL", key]),
        ClientOp::Cas { key, expected, new } => v(&["CAS", key, expected, new]),
        ClientOp::Incr { key } => v(&["INCR", key]),
    }
}

/// Prints a reply the way redis-cli does.
pub fn render(value: &Value) -> String {
    match value {
        Value::Simple(s) => s.clone(),
        Value::Error(e) => format!("(error) {e}"),
        Value::Integer(i) => format!("(integer) {i}"),
        Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Value::NullBulk | Value::NullArray => "(nil)".into(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{}) {}", i + 1, render(v)))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Runs one client command: tries each node (any node forwards to the
/// leader), retries while no leader is elected, for up to `timeout`.
/// Returns the process exit status.
pub fn run_client(settings: &ClientSettings, timeout: Duration) -> i32 {
    let args = op_args(&settings.op);
    // Only GET may be retried after a request was sent and its answer lost:
    // a write could then be applied twice (INCR twice), so its outcome is
    // reported as unknown instead.
    let idempotent = matches!(settings.op, ClientOp::Get { .. });
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no node answered");
    let mut forwarder = Forwarder::new(
        settings.password.clone(),
        settings.tls.as_ref().map(|tls| tls.0.clone()),
    );
    while Instant::now() < deadline {
        for addr in &settings.client_addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            match forwarder.call_tracking_sent(
                *addr,
                &args,
                remaining.min(Duration::from_secs(6)),
                &RespLimits::default(),
            ) {
                Ok(Value::Error(e))
                    if e.starts_with("ERR no leader") || e.starts_with("NOTLEADER") =>
                {
                    last_error = format!("{addr}: {e}");
                }
                Ok(Value::Error(e)) => {
                    eprintln!("sraft client: {e}");
                    return 1;
                }
                // A wrong or missing password is wrong at every node.
                Err(e) if e.error.kind() == std::io::ErrorKind::PermissionDenied => {
                    eprintln!("sraft client: {addr}: {}", e.error);
                    return 1;
                }
                Ok(value) => {
                    println!("{}", render(&value));
                    return 0;
                }
                Err(e) if e.maybe_sent && !idempotent => {
                    eprintln!(
                        "sraft client: {addr}: {}; the write may or may not have been applied",
                        e.error
                    );
                    return 3;
                }
                Err(e) => last_error = format!("{addr}: {}", e.error),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("sraft client: failed: {last_error}");
    2
}

/// One node's row in `sraft status`.
#[derive(Clone, Debug)]
pub struct NodeRow {
    pub node: usize,
    pub peer_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// None: the node did not answer.
    pub info: Option<BTreeMap<String, String>>,
    pub error: Option<String>,
}

pub fn query_status(settings: &StatusSettings, timeout: Duration) -> Vec<NodeRow> {
    settings
        .client_addrs
        .iter()
        .enumerate()
        .map(|(node, addr)| {
            let info = call_with(
                *addr,
                &[b"INFO", b"raft"],
                timeout,
                settings.password.as_ref(),
                settings.tls.as_ref(),
            );
            let (info, error) = match info {
                Ok(Value::Bulk(text)) => (Some(parse_info(&String::from_utf8_lossy(&text))), None),
                Ok(other) => (None, Some(format!("unexpected reply {other:?}"))),
                Err(e) => (None, Some(e.to_string())),
            };
            NodeRow {
                node,
                peer_addr: settings.peers[node],
                client_addr: *addr,
                info,
                error,
            }
        })
        .collect()
}

pub fn run_status(settings: &StatusSettings) -> i32 {
    let rows = query_status(settings, Duration::from_millis(1000));
    if settings.json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "node": r.node, "peer_addr": r.peer_addr.to_string(),
                    "client_addr": r.client_addr.to_string(), "up": r.info.is_some(),
                    "info": r.info, "error": r.error,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        println!(
            "{:<4} {:<21} {:<5} {:<13} {:>5} {:>6} {:>8} {:>8} {:<6} sub-leaders (rtt ms)",
            "node", "client address", "up", "role", "term", "leader", "commit", "applied", "mode"
        );
        for r in &rows {
            match &r.info {
                Some(info) => {
                    let get = |k: &str| info.get(k).cloned().unwrap_or_else(|| "-".into());
                    println!(
                        "{:<4} {:<21} {:<5} {:<13} {:>5} {:>6} {:>8} {:>8} {:<6} {}",
                        r.node,
                        r.client_addr.to_string(),
                        "up",
                        get("role"),
                        get("term"),
                        get("leader_id"),
                        get("commit_index"),
                        get("applied_index"),
                        get("mode"),
                        get("sub_leader_rtt_ms"),
                    );
                }
                None => println!(
                    "{:<4} {:<21} {:<5} {}",
                    r.node,
                    r.client_addr.to_string(),
                    "down",
                    r.error.clone().unwrap_or_default()
                ),
            }
        }
    }
    // Non-zero when no node answers: scripts can wait on it.
    if rows.iter().any(|r| r.info.is_some()) {
        0
    } else {
        1
    }
}
