//! One client connection: parse pipelined RESP requests, answer each in
//! order. Framing garbage gets Redis's protocol error and closes this
//! connection only; a bad command gets an error reply and the connection
//! goes on.

use super::ServerContext;
use super::admin;
use super::auth;
use super::forward::Forwarder;
use super::info::info_text;
use super::reply;
use crate::core::NodeId;
use crate::kv::command::{CommandLimits, LocalOp, ReadOp, Request as KvRequest, WriteOp};
use crate::kv::resp::{Value, parse, parse_reply};
use crate::kv::store::{KvCommand, KvStore};
use crate::metrics::ForwardKind;
use crate::runtime::{Reply, Request, RequestError};
use crate::tls::Stream;
use crossbeam_channel::bounded;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Internal commands between nodes' client ports. A follower forwards a
/// write as the exact log command it built (client id and sequence number
/// inside), so that a retried forward is deduplicated by the state machine
/// and never applied twice.
const PROPOSE: &[u8] = b"SRAFT.PROPOSE";
/// A read forwarded to the leader: serve it here or fail, never forward again.
const LOCAL: &[u8] = b"SRAFT.LOCAL";
/// Prefix of the error a node answers when it cannot serve an internal
/// command because it is not the leader.
const NOT_LEADER: &str = "NOTLEADER";
/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts while a leader is being elected.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

pub(super) struct Session {
    /// Shown by HELLO, as Redis shows its connection ids.
    connection_id: u64,
    /// The KV session this connection's writes are deduplicated by: the
    /// index of its registration (DESIGN.md 4.3), made at the first write.
    client_id: Option<u64>,
    seq: u64,
    forwarder: Forwarder,
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
        connection_id: rand::random::<u64>() | 1,
        client_id: None,
        seq: 0,
        forwarder: Forwarder::new(
            ctx.password.clone(),
            ctx.tls.as_ref().map(|tls| tls.client_client.clone()),
        ),
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
    if let Some(args) = args_of(&value)
        && let Some(name) = args.first()
    {
        if name.eq_ignore_ascii_case(b"AUTH") {
            ctx.metrics.client_command(name);
            return Some(auth::auth(&args, session, ctx).to_bytes());
        }
        if name.eq_ignore_ascii_case(b"HELLO") {
            ctx.metrics.client_command(name);
            return Some(auth::hello(&args, session, session.connection_id, ctx).to_bytes());
        }
    }
    if !session.authenticated && !auth::allowed_before_auth(&value) {
        return Some(auth::noauth().to_bytes());
    }
    if let Some(args) = args_of(&value)
        && let Some(name) = args.first()
    {
        if name.eq_ignore_ascii_case(PROPOSE) {
            ctx.metrics.forward_received(ForwardKind::Write);
            return Some(match args.get(1) {
                Some(command) if args.len() == 2 => {
                    write(command.clone(), session, ctx, false, &mut 0)
                }
                _ => {
                    Value::Error("ERR wrong number of arguments for 'sraft.propose' command".into())
                        .to_bytes()
                }
            });
        }
        if name.eq_ignore_ascii_case(LOCAL) {
            ctx.metrics.forward_received(ForwardKind::Read);
            let inner = Value::Array(args[1..].iter().cloned().map(Value::Bulk).collect());
            return dispatch(inner, session, ctx, false);
        }
        ctx.metrics.client_command(name);
        if admin::is_admin(name) {
            return Some(admin::handle(&args, ctx).to_bytes());
        }
        if name.eq_ignore_ascii_case(b"QUIT") {
            return Some(Value::ok().to_bytes());
        }
    }
    dispatch(value, session, ctx, true)
}

fn dispatch(
    value: Value,
    session: &mut Session,
    ctx: &ServerContext,
    may_forward: bool,
) -> Option<Vec<u8>> {
    let args = args_of(&value).unwrap_or_default();
    let limits = CommandLimits {
        value_bytes_max: ctx.value_bytes_max,
    };
    let request = match KvRequest::from_value(value, &limits) {
        Ok(Some(request)) => request,
        Ok(None) => return None,
        Err(error) => return Some(error.to_reply().to_bytes()),
    };
    Some(match request {
        KvRequest::Local(op) => local(&op, ctx).to_bytes(),
        KvRequest::Read(op) => read(op, args, session, ctx, may_forward),
        KvRequest::Write(op) => write_in_session(op, session, ctx, may_forward),
    })
}

/// A client write, deduplicated by this connection's session: registers
/// the session first when it has none. When the cluster has forgotten the
/// session (the table is bounded), the write was refused without effect;
/// it is sent again in a new session only when no earlier copy of it can
/// have reached a log (KvStore's module docs).
fn write_in_session(
    op: WriteOp,
    session: &mut Session,
    ctx: &ServerContext,
    may_forward: bool,
) -> Vec<u8> {
    let mut renewed = false;
    loop {
        let client_id = match session.client_id {
            Some(id) => id,
            None => match register(session, ctx, may_forward) {
                Ok(id) => id,
                Err(answer) => return answer,
            },
        };
        session.seq += 1;
        let command = KvCommand {
            client_id,
            seq: session.seq,
            op: op.clone(),
        }
        .encode();
        let mut proposals = 0;
        let answer = write(command, session, ctx, may_forward, &mut proposals);
        if !answer.starts_with(b"-SESSIONEXPIRED") {
            return answer;
        }
        session.client_id = None;
        log::info!(
            "client session {client_id} was forgotten by the cluster (limits.sessions_max); {}",
            if renewed || proposals > 1 {
                "the write's outcome is unknown"
            } else {
                "opening a new one"
            }
        );
        if renewed || proposals > 1 {
            return Value::error(
                "ERR session expired: the cluster forgot this connection's session; the write may or may not have been applied",
            )
            .to_bytes();
        }
        renewed = true;
    }
}

/// Commits a session registration; its index is the new client id.
fn register(session: &mut Session, ctx: &ServerContext, may_forward: bool) -> Result<u64, Vec<u8>> {
    let answer = write(KvCommand::register(), session, ctx, may_forward, &mut 0);
    match parse_reply(&answer, &ctx.limits) {
        Ok(Some((Value::Integer(id), _))) if id > 0 => {
            session.client_id = Some(id as u64);
            session.seq = 0;
            Ok(id as u64)
        }
        // The client's write was not sent: an indeterminate registration
        // is still a clean failure for it.
        Ok(Some((Value::Error(e), _))) if e.starts_with("ERR timeout") => Err(Value::error(
            "ERR timeout: no client session could be opened, the write was not applied; retry",
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
        let text = info_text(&status, &ctx.client_addrs, &ctx.metrics, sections);
        Value::Bulk(text.into_bytes())
    })
}

/// Submits one request to the Raft thread and waits for its answer.
fn submit<O>(
    ctx: &ServerContext,
    make: impl FnOnce(crossbeam_channel::Sender<Reply<O>>) -> Request<KvStore>,
    deadline: Instant,
) -> Option<Reply<O>> {
    let (tx, rx) = bounded(1);
    let remaining = deadline.saturating_duration_since(Instant::now());
    ctx.requests.send_timeout(make(tx), remaining).ok()?;
    rx.recv_deadline(deadline).ok()
}

fn no_leader(ctx: &ServerContext) -> Value {
    let term = ctx.status.lock().term;
    Value::Error(format!(
        "ERR no leader: none elected within the request timeout (term {term}); retry"
    ))
}

fn is_not_leader(value: &Value) -> bool {
    matches!(value, Value::Error(e) if e.starts_with(NOT_LEADER))
}

fn not_leader(leader: Option<NodeId>) -> Value {
    Value::Error(format!(
        "{NOT_LEADER} {}",
        leader.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
    ))
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

/// Errors that tell the client its request was not executed.
fn claims_no_effect(value: &Value) -> bool {
    matches!(value, Value::Error(e) if e.starts_with("ERR no leader")
        || e.starts_with("ERR busy")
        || e.starts_with("ERR command is too large"))
}

/// Replicates `command` here if this node leads, else (when allowed) at the
/// leader; retries through elections until the request timeout.
///
/// `ERR no leader` and `ERR busy` tell the client the write had no effect,
/// so they are answered only when no attempt can have reached a leader's
/// log: once a forward broke after the command was sent (the leader may
/// have appended it, and a later leader commit it), a write that is not
/// resolved by the deadline is answered as indeterminate.
///
/// `proposals` counts the copies of `command` that may have reached a log.
fn write(
    command: Vec<u8>,
    session: &mut Session,
    ctx: &ServerContext,
    may_forward: bool,
    proposals: &mut u32,
) -> Vec<u8> {
    let deadline = Instant::now() + ctx.request_timeout;
    let mut maybe_applied = false;
    loop {
        *proposals += 1;
        let make = |reply| Request::Write {
            command: command.clone(),
            reply,
        };
        let Some(result) = submit(ctx, make, deadline) else {
            return write_unresolved().to_bytes();
        };
        match result {
            Ok(reply) => return reply::to_bytes(&reply),
            Err(RequestError::NotLeader { leader }) => {
                if !may_forward {
                    return not_leader(leader).to_bytes();
                }
                if let Some(leader) = leader.filter(|l| l.0 != ctx.node_id) {
                    let args = vec![PROPOSE.to_vec(), command.clone()];
                    match forward(leader, ForwardKind::Write, &args, session, ctx, deadline) {
                        Forwarded::Answer(answer) if maybe_applied && claims_no_effect(&answer) => {
                            return write_unresolved().to_bytes();
                        }
                        Forwarded::Answer(answer) => return answer.to_bytes(),
                        Forwarded::Retry { maybe_sent } => maybe_applied |= maybe_sent,
                    }
                }
            }
            // The entry was overwritten (not applied), or a snapshot was
            // installed over it (maybe applied): proposing it again is safe
            // either way, as the session deduplicates it.
            Err(RequestError::LeadershipLost) | Err(RequestError::TransferInProgress) => {}
            Err(RequestError::Busy | RequestError::UncommittedFull { .. })
            | Err(RequestError::TooLarge { .. })
                if maybe_applied =>
            {
                return write_unresolved().to_bytes();
            }
            Err(RequestError::Busy) => return busy().to_bytes(),
            Err(RequestError::TooLarge {
                entry_bytes,
                entry_bytes_max,
            }) => return too_large(entry_bytes, entry_bytes_max).to_bytes(),
            Err(RequestError::UncommittedFull {
                uncommitted_bytes,
                uncommitted_bytes_max,
            }) => return uncommitted_full(uncommitted_bytes, uncommitted_bytes_max).to_bytes(),
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            let answer = if maybe_applied {
                write_unresolved()
            } else {
                no_leader(ctx)
            };
            return answer.to_bytes();
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

fn read(
    op: ReadOp,
    args: Vec<Vec<u8>>,
    session: &mut Session,
    ctx: &ServerContext,
    may_forward: bool,
) -> Vec<u8> {
    let deadline = Instant::now() + ctx.request_timeout;
    loop {
        let op = op.clone();
        let make = |reply| Request::Read {
            query: Box::new(move |kv: &KvStore| kv.read(&op)),
            reply,
        };
        let Some(result) = submit(ctx, make, deadline) else {
            return Value::Error("ERR timeout waiting for a linearizable read".into()).to_bytes();
        };
        match result {
            Ok(reply) => return reply::to_bytes(&reply),
            Err(RequestError::NotLeader { leader }) => {
                if !may_forward {
                    return not_leader(leader).to_bytes();
                }
                if let Some(leader) = leader.filter(|l| l.0 != ctx.node_id) {
                    let mut fwd = vec![LOCAL.to_vec()];
                    fwd.extend(args.iter().cloned());
                    let forwarded =
                        forward(leader, ForwardKind::Read, &fwd, session, ctx, deadline);
                    if let Forwarded::Answer(answer) = forwarded {
                        return answer.to_bytes();
                    }
                }
            }
            Err(RequestError::LeadershipLost) | Err(RequestError::TransferInProgress) => {}
            Err(RequestError::Busy) => return busy().to_bytes(),
            // Reads propose nothing; kept exhaustive all the same.
            Err(RequestError::TooLarge {
                entry_bytes,
                entry_bytes_max,
            }) => return too_large(entry_bytes, entry_bytes_max).to_bytes(),
            Err(RequestError::UncommittedFull {
                uncommitted_bytes,
                uncommitted_bytes_max,
            }) => return uncommitted_full(uncommitted_bytes, uncommitted_bytes_max).to_bytes(),
        }
        if Instant::now() + RETRY_PAUSE >= deadline {
            return no_leader(ctx).to_bytes();
        }
        std::thread::sleep(RETRY_PAUSE);
    }
}

enum Forwarded {
    /// The leader's answer.
    Answer(Value),
    /// The leader could not serve it (gone, or no longer leader); the
    /// caller retries. `maybe_sent`: the request may have reached it, so it
    /// may take effect there even so.
    Retry { maybe_sent: bool },
}

/// Relays a request to the leader.
fn forward(
    leader: NodeId,
    kind: ForwardKind,
    args: &[Vec<u8>],
    session: &mut Session,
    ctx: &ServerContext,
    deadline: Instant,
) -> Forwarded {
    let not_sent = Forwarded::Retry { maybe_sent: false };
    let Some(&addr) = ctx.client_addrs.get(leader.0 as usize) else {
        return not_sent;
    };
    let timeout = deadline.saturating_duration_since(Instant::now());
    if timeout.is_zero() {
        return not_sent;
    }
    // A leader that froze (SIGSTOP, a stalled host) still accepts the
    // connection and the request but never answers: stop waiting as soon as
    // this node learns of another leader, or of none, and let the caller
    // retry there. Safe: a forwarded write carries its client id and
    // sequence number, so a retry is deduplicated.
    let still_leader = || ctx.status.lock().leader == Some(leader);
    let result = session
        .forwarder
        .call_unless(addr, args, timeout, &ctx.limits, || !still_leader());
    ctx.metrics.forward_sent(kind, result.is_ok());
    match result {
        // The leader answers NOTLEADER only when none of its own attempts
        // was proposed or each was overwritten: no effect.
        Ok(answer) if is_not_leader(&answer) => not_sent,
        Ok(answer) => Forwarded::Answer(answer),
        Err(e) => {
            log::debug!("forward to node {leader} at {addr} failed: {}", e.error);
            Forwarded::Retry {
                maybe_sent: e.maybe_sent,
            }
        }
    }
}
