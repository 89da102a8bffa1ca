//! `sraft member list|add|promote|remove` (DESIGN.md 8): `RAFT MEMBER ...`
//! sent to the leader, found through any endpoint's redirect.

use super::{call_with, render};
use crate::kv::resp::Value;
use crate::settings::{MemberOp, MemberSettings, StatusSettings};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Runs one `sraft member` command. Returns the exit status: 0 done, 1
/// refused or failed (the reason printed), 2 no node or no leader answered.
pub fn run_member(settings: &MemberSettings, timeout: Duration) -> i32 {
    let cluster = &settings.cluster;
    if let MemberOp::List { json } = settings.op {
        return list(cluster, json, timeout);
    }
    let args: Vec<String> = match &settings.op {
        MemberOp::List { .. } => unreachable!("handled above"),
        MemberOp::Add {
            id,
            peer_addr,
            client_addr,
            learner,
        } => {
            let mut args = vec!["ADD".to_string(), id.to_string(), peer_addr.clone()];
            args.extend(client_addr.clone());
            if *learner {
                args.push("LEARNER".into());
            }
            args
        }
        MemberOp::Promote { id } => vec!["PROMOTE".into(), id.to_string()],
        MemberOp::Remove { id } => vec!["REMOVE".into(), id.to_string()],
    };
    let mut full: Vec<&[u8]> = vec![b"RAFT", b"MEMBER"];
    full.extend(args.iter().map(|a| a.as_bytes()));
    // Adding waits for the new node to catch up (up to 30 s on the node).
    report_on_leader(
        "member",
        cluster,
        &full,
        timeout.max(Duration::from_secs(40)),
    )
}

/// `sraft member ...` and `sraft transfer-leader`: sends `args` to the
/// leader ([`on_leader`]) and prints its answer. Returns the exit status:
/// 0 done, 1 refused or failed (the reason printed), 2 no leader reached.
pub(super) fn report_on_leader(
    tool: &str,
    cluster: &StatusSettings,
    args: &[&[u8]],
    timeout: Duration,
) -> i32 {
    match on_leader(cluster, args, timeout) {
        Ok(Value::Simple(ok)) => {
            println!("{ok}");
            0
        }
        Ok(Value::Error(e)) => {
            eprintln!("sraft {tool}: {e}");
            1
        }
        Ok(other) => {
            eprintln!("sraft {tool}: unexpected answer {}", render(&other));
            1
        }
        Err(e) => {
            eprintln!("sraft {tool}: failed: {e}");
            2
        }
    }
}

/// Sends `args` to the leader: to each endpoint in turn, following a
/// `NOTLEADER ... at ADDR` redirect once, retrying while no leader is
/// known, until `timeout`.
pub fn on_leader(
    cluster: &StatusSettings,
    args: &[&[u8]],
    timeout: Duration,
) -> Result<Value, String> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no node answered");
    let call = |addr: SocketAddr| {
        call_with(
            addr,
            args,
            deadline.saturating_duration_since(Instant::now()),
            cluster.password.as_ref(),
            cluster.tls.as_ref(),
        )
    };
    while Instant::now() < deadline {
        for &addr in &cluster.client_addrs {
            let mut answer = call(addr);
            if let Ok(Value::Error(e)) = &answer
                && let Some(leader) = redirect(e)
            {
                answer = call(leader);
            }
            match answer {
                Ok(Value::Error(e)) if e.starts_with("NOTLEADER") => last_error = e,
                // A wrong password is wrong everywhere.
                Ok(Value::Error(e)) if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") => {
                    return Ok(Value::Error(e));
                }
                Ok(value) => return Ok(value),
                Err(e) => last_error = format!("{addr}: {e}"),
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last_error)
}

/// The leader's client address in `NOTLEADER node N leads term T at ADDR; ...`.
fn redirect(error: &str) -> Option<SocketAddr> {
    let rest = error.strip_prefix("NOTLEADER ")?;
    let (_, after) = rest.split_once(" at ")?;
    after.split(';').next()?.trim().parse().ok()
}

/// `key=value key=value` as a map.
fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The lines of a `RAFT MEMBER LIST` answer: the node's header, then one
/// map per member.
type Listing = (BTreeMap<String, String>, Vec<BTreeMap<String, String>>);

fn parse_list(value: Value) -> Result<Listing, String> {
    let Value::Array(items) = value else {
        return Err(match value {
            Value::Error(e) => e,
            other => format!("unexpected answer {}", render(&other)),
        });
    };
    let mut lines = items.into_iter().map(|item| match item {
        Value::Bulk(b) => Ok(fields(&String::from_utf8_lossy(&b))),
        other => Err(format!("unexpected line {}", render(&other))),
    });
    let header = lines.next().ok_or("empty member list")??;
    let members = lines.collect::<Result<Vec<_>, _>>()?;
    Ok((header, members))
}

/// The member lines of a `RAFT MEMBER LIST` answer; none if it failed.
pub(super) fn members_of(answer: std::io::Result<Value>) -> Vec<BTreeMap<String, String>> {
    answer
        .map_err(|e| e.to_string())
        .and_then(parse_list)
        .map(|(_, members)| members)
        .unwrap_or_default()
}

/// Any node's list, then the leader's if the first node named one (only
/// the leader knows match indexes).
fn list(cluster: &StatusSettings, json: bool, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    let args: &[&[u8]] = &[b"RAFT", b"MEMBER", b"LIST"];
    let ask = |addr: SocketAddr| {
        call_with(
            addr,
            args,
            deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(5)),
            cluster.password.as_ref(),
            cluster.tls.as_ref(),
        )
        .map_err(|e| format!("{addr}: {e}"))
        .and_then(parse_list)
    };
    let mut last_error = String::from("no endpoint given");
    let mut listing = None;
    for &addr in &cluster.client_addrs {
        match ask(addr) {
            Ok(found) => {
                listing = Some(found);
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let Some(mut listing) = listing else {
        eprintln!("sraft member list: {last_error}");
        return 2;
    };
    let leads =
        |h: &BTreeMap<String, String>| h.get("node").is_some() && h.get("node") == h.get("leader");
    if !leads(&listing.0)
        && let Some(addr) = listing
            .0
            .get("leader_client_addr")
            .and_then(|a| a.parse().ok())
        && let Ok(found) = ask(addr)
    {
        listing = found;
    }
    let (header, members) = listing;
    if json {
        println!("{}", members_json(&members));
        return 0;
    }
    println!(
        "as seen by node {} (term {}, configuration index {}{})",
        header.get("node").map_or("?", String::as_str),
        header.get("term").map_or("?", String::as_str),
        header.get("config_index").map_or("?", String::as_str),
        if header.get("config_committed").map(String::as_str) == Some("no") {
            ", not committed yet"
        } else {
            ""
        }
    );
    println!(
        "{:<4} {:<21} {:<21} {:<8} {:<9} {:>10}",
        "ID", "PEER_ADDR", "CLIENT_ADDR", "TYPE", "ROLE", "MATCH"
    );
    for m in &members {
        let get = |k: &str| m.get(k).cloned().unwrap_or_else(|| "-".into());
        println!(
            "{:<4} {:<21} {:<21} {:<8} {:<9} {:>10}",
            get("id"),
            get("peer_addr"),
            get("client_addr"),
            if get("voter") == "yes" {
                "voter"
            } else {
                "learner"
            },
            get("role"),
            get("match_index"),
        );
    }
    0
}

/// `sraft member list --json`: numbers as JSON numbers, `-` as null.
fn members_json(members: &[BTreeMap<String, String>]) -> serde_json::Value {
    let text = |m: &BTreeMap<String, String>, k: &str| m.get(k).filter(|v| *v != "-").cloned();
    let number =
        |m: &BTreeMap<String, String>, k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
    let flag = |m: &BTreeMap<String, String>, k: &str| match m.get(k).map(String::as_str) {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    };
    serde_json::Value::Array(
        members
            .iter()
            .map(|m| {
                json!({
                    "id": number(m, "id"),
                    "peer_addr": text(m, "peer_addr"),
                    "client_addr": text(m, "client_addr"),
                    "voter": flag(m, "voter"),
                    "role": text(m, "role"),
                    "match_index": number(m, "match_index"),
                    "caught_up": flag(m, "caught_up"),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_reads_the_leaders_client_address() {
        assert_eq!(
            redirect("NOTLEADER node 2 leads term 7 at 127.0.0.1:6002; send RAFT commands there"),
            Some("127.0.0.1:6002".parse().unwrap())
        );
        assert_eq!(
            redirect("NOTLEADER no leader is known (term 3); retry"),
            None
        );
        assert_eq!(redirect("ERR something else"), None);
    }

    #[test]
    fn list_lines_become_json_numbers() {
        let value = Value::Array(vec![
            Value::Bulk(b"node=0 term=3 leader=0 leader_client_addr=127.0.0.1:6000 config_index=9 config_committed=yes".to_vec()),
            Value::Bulk(b"id=4 peer_addr=127.0.0.1:5004 client_addr=- voter=no role=learner match_index=12 caught_up=no".to_vec()),
        ]);
        let (header, members) = parse_list(value).unwrap();
        assert_eq!(header["leader"], "0");
        let json = members_json(&members);
        assert_eq!(json[0]["id"], 4);
        assert_eq!(json[0]["match_index"], 12);
        assert_eq!(json[0]["client_addr"], serde_json::Value::Null);
        assert_eq!(json[0]["voter"], false);
    }
}
