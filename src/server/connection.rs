//! One client connection: parse pipelined RESP requests, answer each in
//! order. Framing garbage gets Redis's protocol error and closes this
//! connection only; a bad command gets an error reply and the connection
//! goes on.

use super::ServerContext;
use super::admin;
use super::auth;
use super::info::info_text;
use super::relay::{Forwarded, Seen};
use super::reply;
use crate::core::{NodeId, Term};
use crate::kv::command::{CommandLimits, LocalOp, ReadOp, Request as KvRequest, WriteOp};
use crate::kv::reply::KvReply;
use crate::kv::resp::{Value, parse, parse_reply};
use crate::kv::store::{KvCommand, KvStore};
use crate::runtime::oneshot::{AnswerTx, answer_slot};
use crate::runtime::{Query, Reply, Request, RequestError};
use crate::tls::Stream;
use crate::transport::{ForwardOutcome, ForwardRequest};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait before a retry after a leader lost track of a write: a new
/// leader is usually announced sooner, and wakes the wait.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

pub(super) struct Session {
    /// Shown by HELLO, as Redis shows its connection ids.
    connection_id: u64,
    /// The KV session this connection's writes are deduplicated by: the
    /// index of its registration (DESIGN.md 4.2), made at the first write.
    client_id: Option<u64>,
    seq: u64,
    /// AUTH succeeded, or no password is set.
    pub(super) authenticated: bool,
}

pub fn refuse(mut stream: TcpStream, message: &str) -> io::Result<()> {
    stream.write_all(&Value::Error(message.into()).to_bytes())
}

pub fn serve(stream: TcpStream, ctx: &ServerContext) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("client {peer}: {e}");
        return;
    }
    // A plain-TCP client on a TLS port fails here and is closed; the
    // node goes on (DESIGN.md 9).
    let tls = ctx.tls.as_ref().map(|tls| &tls.client_server);
    let stream = match Stream::accept(stream, tls, TLS_HANDSHAKE_TIMEOUT) {
        Ok(stream) => stream,
        Err(e) => {
            log::info!("client {peer}: TLS handshake failed: {e}; closing");
            return;
        }
    };
    if let Err(e) = serve_inner(stream, &peer, ctx) {
        log::debug!("client {peer}: connection ended: {e}");
    }
}

fn serve_inner(mut stream: Stream, peer: &str, ctx: &ServerContext) -> io::Result<()> {
    let mut session = Session {
        // Unique across the cluster and across restarts, without coordination.
        connection_id: rand::random::<u64>() | 1,
        client_id: None,
        seq: 0,
        authenticated: ctx.password.is_none(),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut start = 0;
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match parse(&buf[start..], &ctx.limits) {
                Ok(Some((value, used))) => {
                    start += used;
                    let quit = is_quit(&value);
                    if let Some(reply) = handle(value, &mut session, ctx) {
                        out.extend_from_slice(&reply);
                    }
                    if quit {
                        stream.write_all(&out)?;
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Redis answers framing errors and closes the connection:
                    // the stream cannot be resynchronized.
                    out.extend_from_slice(&e.to_reply().to_bytes());
                    stream.write_all(&out)?;
                    log::info!("client {peer}: {e}; closing");
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out)?;
            out.clear();
        }
        buf.drain(..start);
        start = 0;
        // One request may hold a few values of at most `value_bytes_max`;
        // anything larger that is still incomplete is a client trying to
        // make us buffer without bound (limits.request_bytes_max).
        let request_bytes_max = ctx.request_bytes_max;
        if buf.len() > request_bytes_max {
            let error =
                format!("ERR Protocol error: request larger than {request_bytes_max} bytes");
            stream.write_all(&Value::Error(error).to_bytes())?;
            log::info!("client {peer}: oversized request; closing");
            return Ok(());
        }
        if ctx.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn is_quit(value: &Value) -> bool {
    matches!(value, Value::Array(items) if matches!(items.first(), Some(Value::Bulk(name)) if name.eq_ignore_ascii_case(b"QUIT")))
}

/// The name of a request that is a non-empty array of bulk strings,
/// borrowed; None for anything else (which `KvRequest::from_value` refuses,
/// or, for an empty array, answers with nothing). Every request
/// is looked at by name; only the rare ones that need their arguments as
/// a list (AUTH, HELLO, admin commands) copy them (`args_of`).
fn command_name(value: &Value) -> Option<&[u8]> {
    let Value::Array(items) = value else {
        return None;
    };
    if !items.iter().all(|item| matches!(item, Value::Bulk(_))) {
        return None;
    }
    match items.first() {
        Some(Value::Bulk(name)) => Some(name),
        _ => None,
    }
}

fn args_of(value: &Value) -> Option<Vec<Vec<u8>>> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::Bulk(b) => Some(b.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The RESP-encoded reply to one request; None for an empty request, which
/// Redis answers with nothing. Replies travel encoded: the state machine
/// already returns the exact bytes to send, so they are never re-parsed.
fn handle(value: Value, session: &mut Session, ctx: &ServerContext) -> Option<Vec<u8>> {
    let name = command_name(&value);
    if let Some(name) = name {
        if name.eq_ignore_ascii_case(b"AUTH") {
            ctx.metrics.client_command(name);
            let args = args_of(&value).expect("an array of bulk strings");
            return Some(auth::auth(&args, session, ctx).to_bytes());
        }
        if name.eq_ignore_ascii_case(b"HELLO") {
            ctx.metrics.client_command(name);
            let args = args_of(&value).expect("an array of bulk strings");
            return Some(auth::hello(&args, session, session.connection_id, ctx).to_bytes());
        }
    }
    if !session.authenticated && !auth::allowed_before_auth(&value) {
        return Some(auth::noauth().to_bytes());
    }
    // Nodes forward to each other over the peer transport (DESIGN.md 4.4):
    // the client port speaks only what a Redis client may say, so a client
    // can never append a log command carrying another client's session.
    if let Some(name) = name {
        ctx.metrics.client_command(name);
        if admin::is_admin(name) {
            let args = args_of(&value).expect("an array of bulk strings");
            return Some(admin::handle(&args, ctx).to_bytes());
        }
        if name.eq_ignore_ascii_case(b"QUIT") {
            return Some(Value::ok().to_bytes());
        }
    }
    dispatch(value, session, ctx)
}

fn dispatch(value: Value, session: &mut Session, ctx: &ServerContext) -> Option<Vec<u8>> {
    let limits = CommandLimits {
        value_bytes_max: ctx.value_bytes_max,
    };
    let request = match KvRequest::from_value(value, &limits) {
        Ok(Some(request)) => request,
        Ok(None) => return None,
        Err(error) => return Some(error.to_reply().to_bytes()),
    };
    if !matches!(request, KvRequest::Local(_)) && ctx.status.lock().role == "joining" {
        return Some(joining(ctx).to_bytes());
    }
    Some(match request {
        KvRequest::Local(op) => local(&op, ctx).to_bytes(),
        KvRequest::Read(op) => read(op, ctx),
        KvRequest::Write(op) => write_in_session(op, session, ctx),
    })
}

/// A client write, deduplicated by this connection's session: registers
/// the session first when it has none. When the cluster has forgotten the
/// session (the table is bounded), the write was refused without effect;
/// it is sent again in a new session only when no earlier copy of it can
/// have reached a log (KvStore's module docs).
fn write_in_session(op: WriteOp, session: &mut Session, ctx: &ServerContext) -> Vec<u8> {
    let mut renewed = false;
    loop {
        let client_id = match session.client_id {
            Some(id) => id,
            None => match register(session, ctx) {
                Ok(id) => id,
                Err(answer) => return answer,
            },
        };
        session.seq += 1;
        let seq = session.seq;
        let command = || KvCommand::encode_parts(client_id, seq, &op);
        let mut proposals = 0;
        let answer = write(command, ctx, &mut proposals);
        if !answer.starts_with(b"-SESSIONEXPIRED") {
            return answer;
        }
        session.client_id = None;
        let outcome_unknown = renewed || proposals > 1;
        log::info!(
            "client session {client_id} was forgotten by the cluster (limits.sessions_max); {}",
            if outcome_unknown {
                "the write's outcome is unknown"
            } else {
                "opening a new one"
            }
        );
        if outcome_unknown {
            return Value::error(
                "ERR session expired: the cluster forgot this connection's session; the write may or may not have been applied",
            )
            .to_bytes();
        }
        renewed = true;
    }
}

/// Commits a session registration; its index is the new client id.
fn register(session: &mut Session, ctx: &ServerContext) -> Result<u64, Vec<u8>> {
    let answer = write(KvCommand::register, ctx, &mut 0);
    match parse_reply(&answer, &ctx.limits) {
        Ok(Some((Value::Integer(id), _))) if id > 0 => {
            session.client_id = Some(id as u64);
            session.seq = 0;
            Ok(id as u64)
        }
        // The client's write was not sent: an indeterminate registration
        // is still a clean failure for it.
        Ok(Some((Value::Error(e), _))) if e.starts_with("ERR timeout") => Err(Value::error(
            "TRYAGAIN timeout opening a client session: the leader did not commit it in time; the write was not applied",
        )
        .to_bytes()),
        // Any other error (no leader, busy, ...) says the same already.
        Ok(Some((Value::Error(_), _))) => Err(answer),
        other => Err(Value::error(format!(
            "ERR unexpected answer to a session registration: {other:?}"
        ))
        .to_bytes()),
    }
}

fn local(op: &LocalOp, ctx: &ServerContext) -> Value {
    if *op == LocalOp::BgSave {
        let deadline = Instant::now() + ctx.request_timeout;
        return match submit(ctx, |reply| Request::Snapshot { reply }, deadline) {
            Some(Ok(_)) => Value::Simple("Background saving started".into()),
            Some(Err(_)) => Value::error("ERR Background save already in progress"),
            None => Value::error("ERR node is shutting down or too busy; retry"),
        };
    }
    op.stateless_reply().unwrap_or_else(|| {
        let sections = match op {
            LocalOp::Info(sections) => sections.as_slice(),
            LocalOp::Ping(_) | LocalOp::Echo(_) | LocalOp::BgSave => &[],
        };
        let status = ctx.status.lock().clone();
        let text = info_text(&status, &ctx.client_addrs.all(), &ctx.metrics, sections);
        Value::Bulk(text.into_bytes())
    })
}

/// Submits one request to the Raft thread and waits for its answer.
fn submit<O>(
    ctx: &ServerContext,
    make: impl FnOnce(AnswerTx<Reply<O>>) -> Request<KvStore>,
    deadline: Instant,
) -> Option<Reply<O>> {
    let (tx, rx) = answer_slot();
    let remaining = deadline.saturating_duration_since(Instant::now());
    ctx.requests.send_timeout(make(tx), remaining).ok()?;
    rx.recv_deadline(deadline)
}

/// No leader known, so nothing was sent: the request had no effect.
/// A node started with `--join` that no leader has added yet knows no
/// cluster to send a request to.
fn joining(ctx: &ServerContext) -> Value {
    Value::Error(format!(
        "JOINING node {} is not a member of a cluster yet (started with --join); it serves clients once a leader adds it (sraft member add)",
        ctx.node_id
    ))
}

fn no_leader(term: Term) -> Value {
    Value::Error(format!("TRYAGAIN no leader elected yet (term {term})"))
}

/// The leader's connection is down or its queue full: nothing was sent.
fn leader_unreachable(leader: NodeId) -> Value {
    Value::Error(format!("TRYAGAIN leader {leader} unreachable"))
}

fn write_unresolved() -> Value {
    Value::Error("ERR timeout: the write may or may not have been applied".into())
}

fn busy() -> Value {
    Value::Error("ERR busy: too many requests in flight; retry".into())
}

/// A proposal above `entry_bytes_max` (DESIGN.md 7): refused at once.
fn too_large(entry_bytes: usize, entry_bytes_max: usize) -> Value {
    Value::Error(format!(
        "ERR command is too large ({entry_bytes} bytes as a log entry, limit {entry_bytes_max})"
    ))
}

/// The leader's uncommitted bytes at `uncommitted_bytes_max`: refused at once.
fn uncommitted_full(uncommitted_bytes: usize, uncommitted_bytes_max: usize) -> Value {
    Value::Error(format!(
        "ERR busy: {uncommitted_bytes} bytes of writes await commit (limit {uncommitted_bytes_max}); retry"
    ))
}

/// The client's error for a request refused before it was proposed or
/// read (no effect); None for the errors after which the caller retries.
fn refused(error: &RequestError) -> Option<Value> {
    match *error {
        RequestError::Busy => Some(busy()),
        RequestError::TooLarge {
            entry_bytes,
            entry_bytes_max,
        } => Some(too_large(entry_bytes, entry_bytes_max)),
        RequestError::UncommittedFull {
            uncommitted_bytes,
            uncommitted_bytes_max,
        } => Some(uncommitted_full(uncommitted_bytes, uncommitted_bytes_max)),
        RequestError::NotLeader { .. }
        | RequestError::LeadershipLost
        | RequestError::TransferInProgress => None,
    }
}

/// The error a leader sends back for a forwarded request it refused.
pub(super) fn refusal(error: &RequestError) -> Value {
    refused(error).unwrap_or_else(|| Value::error("ERR request refused; retry"))
}

/// The query a read runs on the state machine, here or, forwarded, on the
/// leader: one place that turns its output into the client's reply.
pub(super) fn read_query(op: ReadOp) -> Query<KvStore> {
    Box::new(move |kv: &KvStore| kv.read(&op))
}

/// What one attempt of a request came to.
enum Attempt {
    /// The client's answer.
    Done(Vec<u8>),
    /// Refused before it took effect; final unless an earlier attempt may
    /// have taken effect.
    Refused(Vec<u8>),
    /// No effect; retry once something changes (a leader, a connection).
    Wait { unreachable: Option<NodeId> },
    /// May have taken effect; retry at once (deduplicated by the session).
    Retry,
    /// No answer by the deadline, and it may have taken effect.
    TimedOut,
}

/// Runs `attempt` against the leader this node knows of (or, while none is
/// known, the candidate it voted for: `Seen::target`) until one answers or
/// the request timeout passes. Waits for a leader, or for an unreachable
/// one, are notified (`Relay::wait_for_change`), never polled.
///
/// The `TRYAGAIN` errors and the refusals tell the client the request had
/// no effect, so for a write they are answered only when no attempt can
/// have reached a leader's log: once one may have (a forward that was sent
/// and abandoned, a leader that lost track of it), a write not resolved by
/// the deadline is answered as indeterminate.
fn retry_until_answered(
    ctx: &ServerContext,
    is_write: bool,
    mut attempt: impl FnMut(Option<NodeId>, Instant) -> Attempt,
) -> Vec<u8> {
    let deadline = Instant::now() + ctx.request_timeout;
    let mut maybe_applied = false;
    let mut unreachable = None;
    let mut seen = seen(ctx);
    loop {
        let wait_until = match attempt(seen.target(), deadline) {
            Attempt::Done(reply) => return reply,
            Attempt::Refused(_) if maybe_applied => return write_unresolved().to_bytes(),
            Attempt::Refused(reply) => return reply,
            Attempt::TimedOut => return timed_out(is_write).to_bytes(),
            Attempt::Wait { unreachable: u } => {
                unreachable = u;
                deadline
            }
            Attempt::Retry => {
                maybe_applied |= is_write;
                // Usually a new leader is being elected: wait for it, but
                // not longer than a pause, as the leader may be unchanged.
                deadline.min(Instant::now() + RETRY_PAUSE)
            }
        };
        seen = match &ctx.relay {
            Some(relay) => relay.wait_for_change(seen.generation, wait_until),
            // An embedding without forwarding has no watch to wait on:
            // look again after a pause.
            None => {
                let pause = wait_until.min(Instant::now() + RETRY_PAUSE);
                std::thread::sleep(pause.saturating_duration_since(Instant::now()));
                current(ctx)
            }
        };
        if Instant::now() >= deadline {
            let answer = if maybe_applied {
                write_unresolved()
            } else if let Some(leader) = unreachable.filter(|l| seen.leader == Some(*l)) {
                leader_unreachable(leader)
            } else if is_write || seen.leader.is_none() {
                no_leader(seen.term)
            } else {
                timed_out(false)
            };
            return answer.to_bytes();
        }
    }
}

fn timed_out(is_write: bool) -> Value {
    if is_write {
        write_unresolved()
    } else {
        Value::Error("ERR timeout waiting for a linearizable read".into())
    }
}

/// Who leads, as this node last published it.
pub(super) fn seen(ctx: &ServerContext) -> Seen {
    match &ctx.relay {
        Some(relay) => relay.seen(),
        None => current(ctx),
    }
}

fn current(ctx: &ServerContext) -> Seen {
    let status = ctx.status.lock();
    Seen {
        generation: 0,
        leader: status.leader,
        term: status.term,
        candidate: None,
    }
}

/// Replicates the bytes `command` returns (the same on every call) here if
/// this node leads, else at the leader over the peer transport (DESIGN.md
/// 4.4); each attempt encodes them afresh rather than copying a first
/// encoding. `proposals` counts the attempts that may have put a copy of
/// it in a log.
fn write(command: impl Fn() -> Vec<u8>, ctx: &ServerContext, proposals: &mut u32) -> Vec<u8> {
    let me = NodeId(ctx.node_id);
    retry_until_answered(ctx, true, |leader, deadline| match leader {
        None => Attempt::Wait { unreachable: None },
        Some(leader) if leader == me => {
            *proposals += 1;
            let make = |reply| Request::Write {
                command: command(),
                reply,
            };
            match submit(ctx, make, deadline) {
                None => Attempt::TimedOut,
                Some(answer) => local_attempt(answer),
            }
        }
        Some(leader) => {
            *proposals += 1;
            forward(
                leader,
                ForwardRequest::Write { command: command() },
                ctx,
                deadline,
            )
        }
    })
}

/// A linearizable read: ReadIndex here if this node leads, else forwarded
/// to the leader, which serves it by its own ReadIndex and never forwards
/// it again.
fn read(op: ReadOp, ctx: &ServerContext) -> Vec<u8> {
    let me = NodeId(ctx.node_id);
    retry_until_answered(ctx, false, |leader, deadline| match leader {
        None => Attempt::Wait { unreachable: None },
        Some(leader) if leader == me => {
            let make = |reply| Request::Read {
                query: read_query(op.clone()),
                reply,
            };
            match submit(ctx, make, deadline) {
                None => Attempt::TimedOut,
                Some(answer) => local_attempt(answer),
            }
        }
        Some(leader) => forward(
            leader,
            ForwardRequest::Read { args: op.to_args() },
            ctx,
            deadline,
        ),
    })
}

/// The Raft thread's answer as an attempt.
fn local_attempt(answer: Reply<KvReply>) -> Attempt {
    match answer {
        Ok(reply) => Attempt::Done(reply::to_bytes(&reply)),
        // The published status was behind: wait until it names the leader.
        Err(RequestError::NotLeader { .. }) => Attempt::Wait { unreachable: None },
        // The entry was overwritten (not applied), or a snapshot was
        // installed over it (maybe applied): proposing it again is safe
        // either way, as the session deduplicates it.
        Err(RequestError::LeadershipLost | RequestError::TransferInProgress) => Attempt::Retry,
        Err(error) => Attempt::Refused(
            refused(&error)
                .expect("every other error is a refusal")
                .to_bytes(),
        ),
    }
}

/// Relays a request to `leader` over the peer transport.
fn forward(
    leader: NodeId,
    request: ForwardRequest,
    ctx: &ServerContext,
    deadline: Instant,
) -> Attempt {
    let Some(relay) = &ctx.relay else {
        return Attempt::Wait {
            unreachable: Some(leader),
        };
    };
    match relay.call(leader, request, deadline) {
        Forwarded::Outcome(ForwardOutcome::Reply(reply)) => Attempt::Done(reply),
        Forwarded::Outcome(ForwardOutcome::Refused(reply)) => Attempt::Refused(reply),
        // Not proposed there: no effect; wait until this node learns who
        // leads now.
        Forwarded::Outcome(ForwardOutcome::NotLeader { .. }) => Attempt::Wait { unreachable: None },
        Forwarded::Outcome(ForwardOutcome::Retry) | Forwarded::Abandoned => Attempt::Retry,
        Forwarded::Unreachable => Attempt::Wait {
            unreachable: Some(leader),
        },
        Forwarded::TimedOut => Attempt::TimedOut,
        Forwarded::Busy => Attempt::Refused(busy().to_bytes()),
        Forwarded::TooLarge {
            frame_bytes,
            frame_bytes_max,
        } => Attempt::Refused(
            Value::Error(format!(
                "ERR command is too large to forward ({frame_bytes} bytes, peer frame limit {frame_bytes_max})"
            ))
            .to_bytes(),
        ),
    }
}
