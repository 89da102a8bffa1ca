//! `sraft client` and `sraft status` (DESIGN.md 4.5): small RESP clients of
//! the nodes' client ports.

mod member;

pub use member::{on_leader, run_member};

use crate::kv::resp::{RespLimits, Value};
use crate::secret::Secret;
use crate::server::Forwarder;
use crate::server::parse_info;
use crate::settings::{ClientOp, ClientSettings, StatusSettings, TransferLeaderSettings};
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
                // No effect, and retrying may help: no leader yet, or the
                // leader was unreachable from that node.
                Ok(Value::Error(e)) if e.starts_with("TRYAGAIN") => {
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
    /// None: the tool was given client addresses (`--endpoints`) only.
    pub peer_addr: Option<SocketAddr>,
    pub client_addr: SocketAddr,
    /// None: the node did not answer.
    pub info: Option<BTreeMap<String, String>>,
    pub error: Option<String>,
}

/// Every node's row: the given addresses, then the members that the first
/// node to answer lists and the given addresses miss (nodes added since the
/// peer list was written, DESIGN.md 8). A node's number is its id as its
/// INFO says, else its position in the list.
pub fn query_status(settings: &StatusSettings, timeout: Duration) -> Vec<NodeRow> {
    let info_of = |addr: SocketAddr| match call_with(
        addr,
        &[b"INFO", b"raft"],
        timeout,
        settings.password.as_ref(),
        settings.tls.as_ref(),
    ) {
        Ok(Value::Bulk(text)) => (Some(parse_info(&String::from_utf8_lossy(&text))), None),
        Ok(other) => (None, Some(format!("unexpected reply {other:?}"))),
        Err(e) => (None, Some(e.to_string())),
    };
    let node_id = |info: &Option<BTreeMap<String, String>>| {
        info.as_ref()
            .and_then(|i| i.get("node_id"))
            .and_then(|id| id.parse::<usize>().ok())
    };
    let mut rows: Vec<NodeRow> = settings
        .client_addrs
        .iter()
        .enumerate()
        .map(|(position, addr)| {
            let (info, error) = info_of(*addr);
            NodeRow {
                node: node_id(&info).unwrap_or(position),
                peer_addr: settings.peers.get(position).copied(),
                client_addr: *addr,
                info,
                error,
            }
        })
        .collect();
    let Some(first) = rows
        .iter()
        .find(|r| r.info.is_some())
        .map(|r| r.client_addr)
    else {
        return rows;
    };
    let listed = call_with(
        first,
        &[b"RAFT", b"MEMBER", b"LIST"],
        timeout,
        settings.password.as_ref(),
        settings.tls.as_ref(),
    );
    for member in member::members_of(listed) {
        let Some(addr) = member.get("client_addr").and_then(|a| a.parse().ok()) else {
            continue;
        };
        if rows.iter().any(|r| r.client_addr == addr) {
            continue;
        }
        let (info, error) = info_of(addr);
        let id = member.get("id").and_then(|id| id.parse().ok());
        rows.push(NodeRow {
            node: node_id(&info).or(id).unwrap_or(rows.len()),
            peer_addr: member.get("peer_addr").and_then(|a| a.parse().ok()),
            client_addr: addr,
            info,
            error,
        });
    }
    rows
}

/// `sraft status --json`: an array with one object per node, numbers as
/// JSON numbers and "none" as `null` (DESIGN.md 4.5):
///
/// `{"node":0,"peer_addr":"..","client_addr":"..","up":true,"error":null,
///   "node_id":0,"role":"leader","term":3,"leader_id":0,
///   "leader_addr":"127.0.0.1:6000","commit_index":9,
///   "applied_index":9,"last_log_index":9,"mode":"s-raft",
///   "subleader_rank":null,"sub_leaders":[{"id":2,"rank":0,"rtt_ms":0.21}]}`
///
/// `sub_leaders` is what the node knows (a follower learns the ids from
/// heartbeats, only the leader measures RTTs: `rtt_ms` is `null` elsewhere
/// or before a first measurement). A node that did not answer has
/// `"up":false`, its `error`, and `null` for every INFO field.
pub fn status_json(rows: &[NodeRow]) -> serde_json::Value {
    let nodes = rows
        .iter()
        .map(|r| {
            let mut node = json!({
                "node": r.node, "peer_addr": r.peer_addr.map(|a| a.to_string()),
                "client_addr": r.client_addr.to_string(), "up": r.info.is_some(),
                "error": r.error,
            });
            let fields = info_json(r.info.as_ref());
            let object = node.as_object_mut().expect("an object");
            object.extend(fields);
            node
        })
        .collect();
    serde_json::Value::Array(nodes)
}

/// The `# Raft` section's fields, typed.
fn info_json(
    info: Option<&BTreeMap<String, String>>,
) -> serde_json::Map<String, serde_json::Value> {
    let get = |key: &str| info.and_then(|i| i.get(key)).map(String::as_str);
    // "-" (none) and anything unparsable are null, never a made-up number.
    let number = |key: &str| json!(get(key).and_then(|v| v.parse::<u64>().ok()));
    let text = |key: &str| json!(get(key));
    let ids: Vec<u64> = get("sub_leaders")
        .unwrap_or("")
        .split(',')
        .filter_map(|id| id.parse().ok())
        .collect();
    let rtts: BTreeMap<u64, f64> = get("sub_leader_rtt_ms")
        .unwrap_or("")
        .split(',')
        .filter_map(|item| item.split_once('='))
        .filter_map(|(id, ms)| Some((id.parse().ok()?, ms.parse().ok()?)))
        .collect();
    let sub_leaders: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(rank, id)| json!({"id": id, "rank": rank, "rtt_ms": rtts.get(id)}))
        .collect();
    let mut map = serde_json::Map::new();
    for key in [
        "node_id",
        "term",
        "leader_id",
        "commit_index",
        "applied_index",
        "last_log_index",
        "subleader_rank",
    ] {
        map.insert(key.into(), number(key));
    }
    for key in ["role", "mode"] {
        map.insert(key.into(), text(key));
    }
    // The leader's client address as the node learned it from the
    // leader's hello (DESIGN.md 4.4): right even when client ports are set
    // per node; null while no leader is known.
    let leader_addr = get("leader_addr").filter(|a| !a.is_empty());
    map.insert("leader_addr".into(), json!(leader_addr));
    map.insert(
        "sub_leaders".into(),
        match info {
            Some(_) => json!(sub_leaders),
            None => serde_json::Value::Null,
        },
    );
    map
}

pub fn run_status(settings: &StatusSettings) -> i32 {
    let rows = query_status(settings, Duration::from_millis(1000));
    if settings.json {
        println!("{}", status_json(&rows));
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

/// `sraft transfer-leader [ID]`: finds the leader (INFO on every node) and
/// sends it `RAFT TRANSFER-LEADER [ID]`, which answers once the new leader
/// leads. Retries while no leader is known or leadership moved meanwhile,
/// for up to `timeout`. Returns the process exit status: 0 done, 1 refused
/// or failed (the reason printed), 2 no leader found.
pub fn run_transfer_leader(settings: &TransferLeaderSettings, timeout: Duration) -> i32 {
    let id = settings.target.map(|id| id.to_string());
    let mut args: Vec<&[u8]> = vec![b"RAFT", b"TRANSFER-LEADER"];
    if let Some(id) = &id {
        args.push(id.as_bytes());
    }
    member::report_on_leader("transfer-leader", &settings.cluster, &args, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: usize, info: Option<&[(&str, &str)]>) -> NodeRow {
        NodeRow {
            node,
            peer_addr: Some(SocketAddr::from(([127, 0, 0, 1], 5000 + node as u16))),
            client_addr: SocketAddr::from(([127, 0, 0, 1], 6000 + node as u16)),
            info: info.map(|fields| {
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            error: info.is_none().then(|| "connection refused".to_string()),
        }
    }

    #[test]
    fn status_json_has_numbers_as_numbers_and_none_as_null() {
        let leader = [
            ("node_id", "0"),
            ("role", "leader"),
            ("term", "7"),
            ("leader_id", "0"),
            ("commit_index", "42"),
            ("applied_index", "41"),
            ("last_log_index", "43"),
            ("sub_leaders", "2,1"),
            ("sub_leader_rtt_ms", "2=0.250,1=-"),
            ("subleader_rank", "-"),
            ("mode", "s-raft"),
            ("leader_addr", "127.0.0.1:17000"),
        ];
        let follower = [
            ("role", "follower"),
            ("leader_id", "-"),
            ("term", "7"),
            ("leader_addr", ""),
        ];
        let json = status_json(&[row(0, Some(&leader)), row(1, Some(&follower)), row(2, None)]);
        let nodes = json.as_array().unwrap();
        assert_eq!(nodes[0]["term"], json!(7));
        assert_eq!(nodes[0]["commit_index"], json!(42));
        assert_eq!(nodes[0]["applied_index"], json!(41));
        assert_eq!(nodes[0]["last_log_index"], json!(43));
        assert_eq!(nodes[0]["leader_id"], json!(0));
        assert_eq!(nodes[0]["role"], json!("leader"));
        assert_eq!(nodes[0]["subleader_rank"], serde_json::Value::Null);
        assert_eq!(
            nodes[0]["sub_leaders"],
            json!([{"id": 2, "rank": 0, "rtt_ms": 0.25}, {"id": 1, "rank": 1, "rtt_ms": null}])
        );
        assert_eq!(nodes[0]["leader_addr"], json!("127.0.0.1:17000"));
        assert_eq!(nodes[1]["leader_id"], serde_json::Value::Null);
        assert_eq!(nodes[1]["leader_addr"], serde_json::Value::Null);
        assert_eq!(nodes[1]["sub_leaders"], json!([]));
        assert_eq!(nodes[2]["up"], json!(false));
        assert_eq!(nodes[2]["term"], serde_json::Value::Null);
        assert_eq!(nodes[2]["error"], json!("connection refused"));
        assert_eq!(nodes[2]["client_addr"], json!("127.0.0.1:6002"));
    }
}
