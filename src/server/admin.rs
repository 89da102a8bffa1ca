//! Cluster administration on the client port: the `RAFT` command family
//! (DESIGN.md 4.2), so that any Redis client can script it, and what
//! `sraft transfer-leader` sends.
//!
//! - `RAFT TRANSFER-LEADER [ID]`: the leader hands over to node ID, or to
//!   its primary sub-leader; the reply comes once the new leader is known
//!   here (`+OK node N leads term T (after M ms)`) or the transfer failed.
//!
//! - `RAFT MEMBER ...`: membership changes (`members.rs`).
//!
//! Sent to a node that does not lead, a command is refused with the
//! leader's id and client address (`-NOTLEADER ...`), the way Redis Cluster
//! redirects with `-MOVED`: admin commands are rare, and an operator wants
//! to know which node acted.

use super::ServerContext;
use super::connection::seen as look;
use crate::core::{NodeId, TransferError};
use crate::kv::resp::Value;
use crate::runtime::Request;
use crossbeam_channel::bounded;
use std::time::{Duration, Instant};

/// How long a transfer may take before it is reported as failed: the
/// target's election normally takes one round trip plus its fsync; the
/// core abandons a transfer after `follower_timeout_ms_min` anyway.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the published status is checked while a transfer runs, when
/// the node has no leader watch to wait on.
const TRANSFER_POLL: Duration = Duration::from_millis(1);

const USAGE: &str = "ERR unknown RAFT subcommand; try RAFT TRANSFER-LEADER [ID] or RAFT MEMBER LIST|ADD|PROMOTE|REMOVE";

/// Whether `name` is the admin family's command.
pub fn is_admin(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"RAFT")
}

/// Answers one `RAFT ...` command.
pub fn handle(args: &[Vec<u8>], ctx: &ServerContext) -> Value {
    let Some(sub) = args.get(1) else {
        return Value::error(USAGE);
    };
    if sub.eq_ignore_ascii_case(b"TRANSFER-LEADER") {
        let target = match args.get(2..).unwrap_or_default() {
            [] => None,
            [id] => match std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                Some(id) => Some(NodeId(id)),
                None => {
                    return Value::error(format!(
                        "ERR node id '{}' is not a number",
                        String::from_utf8_lossy(id)
                    ));
                }
            },
            _ => {
                return Value::error(
                    "ERR wrong number of arguments for 'raft transfer-leader' command",
                );
            }
        };
        return transfer_leader(target, ctx);
    }
    if sub.eq_ignore_ascii_case(b"MEMBER") {
        return super::members::handle(&args[2..], ctx);
    }
    Value::error(USAGE)
}

fn transfer_leader(target: Option<NodeId>, ctx: &ServerContext) -> Value {
    let started = Instant::now();
    // Taken before the request, so that no change after it is missed.
    let mut seen = look(ctx);
    let before = seen.term;
    let (reply, answer) = bounded(1);
    let request = Request::TransferLeader { target, reply };
    if ctx
        .requests
        .send_timeout(request, TRANSFER_TIMEOUT)
        .is_err()
    {
        return Value::error("ERR node is shutting down or too busy; retry");
    }
    let target = match answer.recv_timeout(TRANSFER_TIMEOUT) {
        Ok(Ok(target)) => target,
        Ok(Err(TransferError::NotLeader)) => return not_leader(ctx),
        Ok(Err(e)) => return Value::error(format!("ERR cannot transfer leadership: {e}")),
        Err(_) => return Value::error("ERR node is shutting down or too busy; retry"),
    };
    let deadline = started + TRANSFER_TIMEOUT;
    loop {
        let (term, leader) = (seen.term, seen.leader);
        if term > before && leader == Some(target) {
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            return Value::Simple(format!(
                "OK node {target} leads term {term} (after {ms:.1} ms)"
            ));
        }
        if let Some(other) = leader.filter(|_| term > before) {
            return Value::error(format!(
                "ERR transfer to node {target} failed: node {other} won term {term} instead"
            ));
        }
        if Instant::now() >= deadline {
            return Value::error(format!(
                "ERR transfer to node {target} did not complete within {} ms (term {term}, leader {}); the old leader leads on or an election is running",
                TRANSFER_TIMEOUT.as_millis(),
                leader.map_or("none".to_string(), |l| l.to_string()),
            ));
        }
        seen = match &ctx.relay {
            // Woken by the Raft thread when the leader or term changes.
            Some(relay) => relay.wait_for_change(seen.generation, deadline),
            // An embedding without forwarding has no watch: look again soon.
            None => {
                std::thread::sleep(TRANSFER_POLL);
                look(ctx)
            }
        };
    }
}

/// Names the leader this node knows, with its client address.
pub(super) fn not_leader(ctx: &ServerContext) -> Value {
    let status = ctx.status.lock().clone();
    match status.leader {
        Some(leader) => Value::error(format!(
            "NOTLEADER node {leader} leads term {} at {}; send RAFT commands there",
            status.term,
            ctx.client_addrs
                .get(leader)
                .map_or("an unknown address".to_string(), |a| a.to_string())
        )),
        None => Value::error(format!(
            "NOTLEADER no leader is known (term {}); retry",
            status.term
        )),
    }
}
