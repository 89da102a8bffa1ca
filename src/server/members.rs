//! `RAFT MEMBER ...` on the client port (DESIGN.md 8): what `sraft member`
//! sends, so that any Redis client can script membership changes.
//!
//! - `RAFT MEMBER LIST`: any node answers with its view; the first line
//!   names the node, its term and leader, the rest one member each, as
//!   `key=value` pairs (`-` when unknown).
//! - `RAFT MEMBER ADD ID PEER_ADDR [CLIENT_ADDR] [LEARNER]`: leader only.
//!   The new node must answer at PEER_ADDR (started with `--join`). It is
//!   added as a learner; without `LEARNER` it is promoted once caught up,
//!   and the reply comes when it votes. If it never catches up it is
//!   removed again, so that a failed add leaves the cluster as it was.
//! - `RAFT MEMBER PROMOTE ID`: leader only; the learner must be caught up.
//! - `RAFT MEMBER REMOVE ID`: leader only; the leader itself included (it
//!   hands over to its primary sub-leader once the change commits).

use super::ServerContext;
use super::admin::not_leader;
use crate::core::{ConfChange, ConfChangeError, MemberAddrs, NodeId};
use crate::kv::resp::Value;
use crate::runtime::{ConfChangeDone, ConfChangeFailure, MembersView, Request};
use crossbeam_channel::{RecvTimeoutError, bounded};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a change may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a new learner may take to catch up before the add is undone:
/// an InstallSnapshot of a million keys takes about a second here.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the leader tries to reach a new node before refusing it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a waiting command looks at the leader's view again.
const POLL: Duration = Duration::from_millis(10);

const USAGE: &str = "ERR usage: RAFT MEMBER LIST | ADD ID PEER_ADDR [CLIENT_ADDR] [LEARNER] | PROMOTE ID | REMOVE ID";

pub fn handle(args: &[Vec<u8>], ctx: &ServerContext) -> Value {
    let Some(sub) = args.first() else {
        return Value::error(USAGE);
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_uppercase();
    let rest = &args[1..];
    let result = match (sub.as_str(), rest) {
        ("LIST", []) => return list(ctx),
        ("ADD", [id, peer, options @ ..]) if options.len() <= 2 => add(id, peer, options, ctx),
        ("PROMOTE", [id]) => node_id(id).and_then(|id| promote(id, ctx)),
        ("REMOVE", [id]) => node_id(id).and_then(|id| {
            change(ConfChange::Remove { id }, ctx)
                .map(|done| format!("OK node {id} removed (configuration index {})", done.index))
        }),
        _ => return Value::error(USAGE),
    };
    match result {
        Ok(text) => Value::Simple(text),
        Err(error) => error,
    }
}

fn node_id(arg: &[u8]) -> Result<NodeId, Value> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(NodeId)
        .ok_or_else(|| {
            Value::error(format!(
                "ERR node id '{}' is not a number",
                String::from_utf8_lossy(arg)
            ))
        })
}

/// The node's view of the members, one line each.
fn list(ctx: &ServerContext) -> Value {
    let Some(view) = members(ctx) else {
        return busy();
    };
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let leader_addr = view
        .leader
        .and_then(|l| view.member(l).and_then(|m| m.client_addr))
        .or_else(|| view.leader.and_then(|l| ctx.client_addrs.get(l)));
    let mut lines = vec![format!(
        "node={} term={} leader={} leader_client_addr={} config_index={} config_committed={}",
        view.id,
        view.term,
        dash(view.leader.map(|l| l.to_string())),
        dash(leader_addr.map(|a| a.to_string())),
        view.config_index,
        if view.config_committed { "yes" } else { "no" },
    )];
    for m in &view.members {
        let role = match (Some(m.info.id) == view.leader, m.info.voter) {
            (true, _) => "leader",
            (false, true) => "follower",
            (false, false) => "learner",
        };
        let leads = view.leader == Some(view.id);
        lines.push(format!(
            "id={} peer_addr={} client_addr={} voter={} role={} match_index={} caught_up={}",
            m.info.id,
            dash(m.peer_addr.map(|a| a.to_string())),
            dash(m.client_addr.map(|a| a.to_string())),
            if m.info.voter { "yes" } else { "no" },
            role,
            dash(m.info.match_index.map(|i| i.to_string())),
            match leads {
                true if m.caught_up => "yes",
                true => "no",
                false => "-",
            },
        ));
    }
    Value::Array(
        lines
            .into_iter()
            .map(|l| Value::Bulk(l.into_bytes()))
            .collect(),
    )
}

fn add(id: &[u8], peer: &[u8], options: &[Vec<u8>], ctx: &ServerContext) -> Result<String, Value> {
    let id = node_id(id)?;
    let peer_text = String::from_utf8_lossy(peer).into_owned();
    let mut client_text = String::new();
    let mut learner = false;
    for option in options {
        if option.eq_ignore_ascii_case(b"LEARNER") {
            learner = true;
        } else {
            client_text = String::from_utf8_lossy(option).into_owned();
        }
    }
    // Resolved here, once: the configuration holds addresses, never names
    // for the Raft thread to look up (`runtime::members::parse_addr`).
    let peer_addr = address("peer", &peer_text)?;
    if !client_text.is_empty() {
        client_text = address("client", &client_text)?.to_string();
    }
    // Refused before anything changes: a node nobody can reach would be a
    // learner that never catches up (and, promoted, a voter that never
    // votes).
    let view = leader_view(ctx)?;
    if view.member(id).is_some() {
        return Err(refused(&ConfChangeError::AlreadyMember(id)));
    }
    if let Err(e) = TcpStream::connect_timeout(&peer_addr, PROBE_TIMEOUT) {
        return Err(Value::error(format!(
            "ERR node {id} at {peer_text} is unreachable ({e}); start it with --join first; the cluster is unchanged"
        )));
    }
    let started = Instant::now();
    let addrs = MemberAddrs {
        peer_addr: peer_addr.to_string(),
        client_addr: client_text,
    };
    let done = change(ConfChange::AddLearner { id, addrs }, ctx)?;
    if learner {
        return Ok(format!(
            "OK node {id} added as a learner at {peer_text} (configuration index {})",
            done.index
        ));
    }
    // Promoted only once it holds everything committed, so that the new
    // quorum does not wait for it (thesis 4.2.1).
    let deadline = started + CATCH_UP_TIMEOUT;
    loop {
        let view = leader_view(ctx)?;
        match view.member(id) {
            Some(m) if m.caught_up => break,
            Some(_) => {}
            None => {
                return Err(Value::error(format!(
                    "ERR node {id} left the configuration while catching up"
                )));
            }
        }
        if Instant::now() >= deadline {
            let matched = view.member(id).and_then(|m| m.info.match_index);
            let undone = change(ConfChange::Remove { id }, ctx);
            return Err(Value::error(format!(
                "ERR node {id} did not catch up within {} s (match index {}); {}",
                CATCH_UP_TIMEOUT.as_secs(),
                matched.map_or("unknown".to_string(), |i| i.to_string()),
                match undone {
                    Ok(_) => "it was removed again; the cluster is unchanged".to_string(),
                    Err(_) => format!(
                        "removing it again failed: it is still a learner; run RAFT MEMBER REMOVE {id}"
                    ),
                }
            )));
        }
        std::thread::sleep(POLL);
    }
    let caught_up_ms = started.elapsed().as_secs_f64() * 1000.0;
    let done = change_retrying(ConfChange::Promote { id }, ctx)?;
    Ok(format!(
        "OK node {id} is a voter (configuration index {}; caught up in {caught_up_ms:.0} ms)",
        done.index
    ))
}

fn promote(id: NodeId, ctx: &ServerContext) -> Result<String, Value> {
    let view = leader_view(ctx)?;
    match view.member(id) {
        Some(m) if m.info.voter => return Err(refused(&ConfChangeError::NotLearner(id))),
        Some(m) if !m.caught_up => {
            return Err(Value::error(format!(
                "ERR node {id} has not caught up (match index {}); promote it once it has",
                m.info
                    .match_index
                    .map_or("unknown".to_string(), |i| i.to_string())
            )));
        }
        Some(_) => {}
        None => return Err(refused(&ConfChangeError::NotMember(id))),
    }
    let done = change(ConfChange::Promote { id }, ctx)?;
    Ok(format!(
        "OK node {id} is a voter (configuration index {})",
        done.index
    ))
}

/// The leader's view, or NOTLEADER.
fn leader_view(ctx: &ServerContext) -> Result<MembersView, Value> {
    let view = members(ctx).ok_or_else(busy)?;
    if view.leader != Some(view.id) {
        return Err(not_leader(ctx));
    }
    Ok(view)
}

fn members(ctx: &ServerContext) -> Option<MembersView> {
    let (reply, answer) = bounded(1);
    ctx.requests
        .send_timeout(Request::Members { reply }, COMMIT_TIMEOUT)
        .ok()?;
    answer.recv_timeout(COMMIT_TIMEOUT).ok()
}

/// Proposes `change` and waits until it is applied here. Retried while
/// a new leader has not committed an entry of its term yet (a few
/// milliseconds after an election); any other refusal is the answer.
fn change(change: ConfChange, ctx: &ServerContext) -> Result<ConfChangeDone, Value> {
    propose(change, ctx, |e| {
        matches!(e, ConfChangeError::LeaderNotReady)
    })
}

/// `change`, also retried while the previous change is not applied yet:
/// the promotion that follows an addition this command made.
fn change_retrying(next: ConfChange, ctx: &ServerContext) -> Result<ConfChangeDone, Value> {
    propose(next, ctx, |e| {
        matches!(
            e,
            ConfChangeError::LeaderNotReady | ConfChangeError::ChangeInFlight { .. }
        )
    })
}

fn propose(
    change: ConfChange,
    ctx: &ServerContext,
    transient: impl Fn(&ConfChangeError) -> bool,
) -> Result<ConfChangeDone, Value> {
    let deadline = Instant::now() + COMMIT_TIMEOUT;
    loop {
        let (reply, answer) = bounded(1);
        let request = Request::ConfChange {
            change: change.clone(),
            reply,
        };
        if ctx.requests.send_timeout(request, COMMIT_TIMEOUT).is_err() {
            return Err(busy());
        }
        match answer.recv_timeout(COMMIT_TIMEOUT) {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(ConfChangeFailure::Refused(e)))
                if transient(&e) && Instant::now() < deadline =>
            {
                std::thread::sleep(POLL);
            }
            Ok(Err(ConfChangeFailure::Refused(ConfChangeError::NotLeader { .. }))) => {
                return Err(not_leader(ctx));
            }
            Ok(Err(ConfChangeFailure::Refused(e))) => return Err(refused(&e)),
            Ok(Err(e)) => {
                return Err(Value::error(format!(
                    "ERR the membership change may or may not take effect: {e}"
                )));
            }
            Err(e) => return Err(unanswered(e)),
        }
    }
}

/// No answer from the Raft thread: in time, or at all (it stopped).
fn unanswered(e: RecvTimeoutError) -> Value {
    match e {
        RecvTimeoutError::Timeout => Value::error(format!(
            "ERR the membership change did not commit within {} s; it may still take effect",
            COMMIT_TIMEOUT.as_secs()
        )),
        RecvTimeoutError::Disconnected => Value::error(
            "ERR the node stopped before the membership change was applied here; it may have taken effect",
        ),
    }
}

fn refused(e: &ConfChangeError) -> Value {
    Value::error(format!(
        "ERR membership change refused: {e}; the cluster is unchanged"
    ))
}

fn busy() -> Value {
    Value::error("ERR node is shutting down or too busy; retry")
}

/// `host:port` that resolves.
fn address(what: &str, text: &str) -> Result<SocketAddr, Value> {
    let bad = |reason: String| {
        Value::error(format!(
            "ERR bad {what} address '{text}': {reason}; expected HOST:PORT"
        ))
    };
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
            .ok_or_else(|| bad("not a reachable host and port".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}
