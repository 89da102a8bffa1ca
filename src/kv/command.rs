//! From a parsed RESP request to a typed [`Request`], with Redis's own error
//! texts, so that client libraries and people who know Redis see what they
//! expect.
//!
//! Every request is one of three kinds, and the kind decides its path
//! through the cluster:
//! - `Local`: answered by the node that received it (PING, ECHO, INFO);
//! - `Read`: answered from the local store once ReadIndex (or the lease)
//!   says it is up to date (GET, EXISTS, MGET);
//! - `Write`: proposed to the log and answered with what the store returned
//!   when it applied it (SET, DEL, APPEND, INCR, INCRBY, CAS).

use serde::{Deserialize, Serialize};
use std::fmt;

use super::resp::{Value, parse_i64};
use crate::limits::Limits;

/// A typed client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Local(LocalOp),
    Read(ReadOp),
    Write(WriteOp),
}

/// Requests answered by the receiving node, without the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalOp {
    /// `PING [message]`
    Ping(Option<Vec<u8>>),
    /// `ECHO message`
    Echo(Vec<u8>),
    /// `INFO [section ...]`, sections lowercased; empty means the default.
    Info(Vec<String>),
    /// `BGSAVE [SCHEDULE]`: take a snapshot now (DESIGN.md 5), in the
    /// background as Redis does.
    BgSave,
}

/// Requests served from the store after a linearizable read barrier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOp {
    Get(Vec<u8>),
    /// Counts duplicates, like Redis: `EXISTS k k` is 2 when `k` exists.
    Exists(Vec<Vec<u8>>),
    MGet(Vec<Vec<u8>>),
}

/// Requests that go through the log. This type is part of the log format
/// (postcard-encoded inside `KvCommand`): add variants at the end only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// `SET key value [NX|XX] [GET]`
    // serde_bytes: the same encoding as a sequence of u8 in postcard (the
    // log format does not change), copied in one go instead of per byte.
    Set {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        condition: SetCondition,
        /// Reply with the old value (nil if none) instead of OK.
        get: bool,
    },
    /// `DEL key [key ...]`: replies with the number of keys removed.
    Del(Vec<Vec<u8>>),
    /// `APPEND key value`: replies with the new length.
    Append {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// `INCR key` is `IncrBy { delta: 1 }`.
    IncrBy {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        delta: i64,
    },
    /// `CAS key expected new` (sraft extension): set to `new` iff the
    /// current value is exactly `expected`; replies :1 if it did, :0 if not
    /// (including when the key is missing: use `SET NX` to create).
    Cas {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Vec<u8>,
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    Always,
    /// `NX`: only if the key does not exist.
    IfAbsent,
    /// `XX`: only if the key exists.
    IfPresent,
}

/// The path a request takes through the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandClass {
    Local,
    Read,
    Write,
}

/// Limits checked when a request arrives, before it is proposed. They need
/// not be the same on every node: they only decide what enters the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLimits {
    /// Largest value SET, APPEND or CAS may carry.
    pub value_bytes_max: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits {
            value_bytes_max: Limits::default().value_bytes_max,
        }
    }
}

/// Why a request was refused. `Display` is the exact Redis error text,
/// including its `ERR` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The request was not an array of bulk strings (a nested array, an
    /// integer, ...). Redis cannot receive these; RESP allows sending them.
    NotBulkStrings,
    UnknownCommand {
        name: Vec<u8>,
        args: Vec<Vec<u8>>,
    },
    /// Carries the command's lowercase name, as Redis prints it.
    WrongArity {
        command: &'static str,
    },
    Syntax,
    NotAnInteger,
    /// SET with EX/PX/EXAT/PXAT: expiry would need a replicated clock.
    ExpiryUnsupported,
    ValueTooLarge {
        value_bytes: usize,
        value_bytes_max: usize,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NotBulkStrings => {
                f.write_str("ERR Protocol error: expected an array of bulk strings")
            }
            CommandError::UnknownCommand { name, args } => {
                write_unknown_command(f, name, args)
            }
            CommandError::WrongArity { command } => {
                write!(f, "ERR wrong number of arguments for '{command}' command")
            }
            CommandError::Syntax => f.write_str("ERR syntax error"),
            CommandError::NotAnInteger => f.write_str("ERR value is not an integer or out of range"),
            CommandError::ExpiryUnsupported => f.write_str(
                "ERR expiry is not supported (sraft does not replicate TTLs); SET without EX/PX/EXAT/PXAT",
            ),
            CommandError::ValueTooLarge {
                value_bytes,
                value_bytes_max,
            } => write!(
                f,
                "ERR value is too large ({value_bytes} bytes, limit {value_bytes_max})"
            ),
        }
    }
}

impl std::error::Error for CommandError {}

/// Redis's `processCommand` text: the name cut at 128 bytes, then each
/// argument quoted and followed by a space while the list is under 128 bytes.
fn write_unknown_command(f: &mut fmt::Formatter<'_>, name: &[u8], args: &[Vec<u8>]) -> fmt::Result {
    let name = String::from_utf8_lossy(&name[..name.len().min(128)]);
    let mut listed = String::new();
    for arg in args {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        let arg = String::from_utf8_lossy(&arg[..arg.len().min(room)]);
        listed.push_str(&format!("'{arg}' "));
    }
    write!(
        f,
        "ERR unknown command '{name}', with args beginning with: {listed}"
    )
}

impl CommandError {
    /// The error reply to send (line breaks from echoed input made spaces).
    pub fn to_reply(&self) -> Value {
        Value::error(self.to_string())
    }
}

impl Request {
    /// Types a request parsed by `resp::parse`. `Ok(None)` for an empty
    /// request (a blank inline line, `*0`), which Redis answers with nothing.
    pub fn from_value(
        value: Value,
        limits: &CommandLimits,
    ) -> Result<Option<Request>, CommandError> {
        let Value::Array(items) = value else {
            return Err(CommandError::NotBulkStrings);
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Value::Bulk(bytes) => args.push(bytes),
                _ => return Err(CommandError::NotBulkStrings),
            }
        }
        if args.is_empty() {
            return Ok(None);
        }
        let name = args.remove(0);
        Request::from_args(name, args, limits).map(Some)
    }

    /// Types a request from its name and arguments.
    pub fn from_args(
        name: Vec<u8>,
        args: Vec<Vec<u8>>,
        limits: &CommandLimits,
    ) -> Result<Request, CommandError> {
        let Some(spec) = COMMANDS
            .iter()
            .find(|spec| name.eq_ignore_ascii_case(spec.name.as_bytes()))
        else {
            return Err(CommandError::UnknownCommand { name, args });
        };
        if !spec.arity.admits(args.len()) {
            return Err(CommandError::WrongArity { command: spec.name });
        }
        let request = (spec.build)(args)?;
        check_value_sizes(&request, limits)?;
        Ok(request)
    }

    pub fn class(&self) -> CommandClass {
        match self {
            Request::Local(_) => CommandClass::Local,
            Request::Read(_) => CommandClass::Read,
            Request::Write(_) => CommandClass::Write,
        }
    }
}

impl ReadOp {
    /// The request as a client would send it: what a follower forwards to the
    /// leader, which types it again with [`Request::from_value`].
    pub fn to_args(&self) -> Vec<Vec<u8>> {
        let (name, keys): (&[u8], &[Vec<u8>]) = match self {
            ReadOp::Get(key) => (b"GET", std::slice::from_ref(key)),
            ReadOp::Exists(keys) => (b"EXISTS", keys),
            ReadOp::MGet(keys) => (b"MGET", keys),
        };
        let mut args = Vec::with_capacity(1 + keys.len());
        args.push(name.to_vec());
        args.extend(keys.iter().cloned());
        args
    }
}

impl LocalOp {
    /// The reply for requests that need nothing from the node (PING, ECHO);
    /// `None` for INFO, which the runtime fills with the node's Raft state.
    pub fn stateless_reply(&self) -> Option<Value> {
        match self {
            LocalOp::Ping(None) => Some(Value::Simple("PONG".to_string())),
            LocalOp::Ping(Some(message)) | LocalOp::Echo(message) => {
                Some(Value::Bulk(message.clone()))
            }
            LocalOp::Info(_) | LocalOp::BgSave => None,
        }
    }
}

/// Argument counts (excluding the name) a command accepts.
#[derive(Clone, Copy)]
enum Arity {
    Exactly(usize),
    AtLeast(usize),
    Between(usize, usize),
}

impl Arity {
    fn admits(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::Between(lo, hi) => (lo..=hi).contains(&n),
        }
    }
}

struct CommandSpec {
    name: &'static str,
    arity: Arity,
    /// Called with an argument count the arity admits.
    build: fn(Vec<Vec<u8>>) -> Result<Request, CommandError>,
}

const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ping",
        arity: Arity::Between(0, 1),
        build: build_ping,
    },
    CommandSpec {
        name: "echo",
        arity: Arity::Exactly(1),
        build: build_echo,
    },
    CommandSpec {
        name: "info",
        arity: Arity::AtLeast(0),
        build: build_info,
    },
    CommandSpec {
        name: "bgsave",
        arity: Arity::Between(0, 1),
        build: build_bgsave,
    },
    CommandSpec {
        name: "get",
        arity: Arity::Exactly(1),
        build: build_get,
    },
    CommandSpec {
        name: "exists",
        arity: Arity::AtLeast(1),
        build: build_exists,
    },
    CommandSpec {
        name: "mget",
        arity: Arity::AtLeast(1),
        build: build_mget,
    },
    CommandSpec {
        name: "set",
        arity: Arity::AtLeast(2),
        build: build_set,
    },
    CommandSpec {
        name: "del",
        arity: Arity::AtLeast(1),
        build: build_del,
    },
    CommandSpec {
        name: "append",
        arity: Arity::Exactly(2),
        build: build_append,
    },
    CommandSpec {
        name: "incr",
        arity: Arity::Exactly(1),
        build: build_incr,
    },
    CommandSpec {
        name: "incrby",
        arity: Arity::Exactly(2),
        build: build_incrby,
    },
    CommandSpec {
        name: "cas",
        arity: Arity::Exactly(3),
        build: build_cas,
    },
];

/// The names of the commands `Request::from_value` parses, in lower case.
pub fn command_names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().map(|spec| spec.name)
}

/// Moves the arguments out in order; the arity check guarantees the count.
fn take<const N: usize>(args: Vec<Vec<u8>>) -> [Vec<u8>; N] {
    args.try_into().unwrap_or_else(|args: Vec<_>| {
        panic!("arity check admitted {} args, expected {N}", args.len())
    })
}

fn build_ping(mut args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    Ok(Request::Local(LocalOp::Ping(args.pop())))
}

fn build_echo(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let [message] = take(args);
    Ok(Request::Local(LocalOp::Echo(message)))
}

fn build_bgsave(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    match args.first() {
        // SCHEDULE asks Redis to wait for a running rewrite; one snapshot
        // at a time is all there is here, so it means the same.
        Some(arg) if !arg.eq_ignore_ascii_case(b"schedule") => Err(CommandError::Syntax),
        _ => Ok(Request::Local(LocalOp::BgSave)),
    }
}

fn build_info(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let sections = args
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    Ok(Request::Local(LocalOp::Info(sections)))
}

fn build_get(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let [key] = take(args);
    Ok(Request::Read(ReadOp::Get(key)))
}

fn build_exists(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    Ok(Request::Read(ReadOp::Exists(args)))
}

fn build_mget(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    Ok(Request::Read(ReadOp::MGet(args)))
}

/// `SET key value [NX|XX] [GET] [KEEPTTL]`, options in any order, as Redis
/// parses them. KEEPTTL is accepted: with no TTLs there is none to keep.
fn build_set(mut args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let options = args.split_off(2);
    let [key, value] = take(args);
    let mut condition = SetCondition::Always;
    let mut get = false;
    let mut options = options.iter().peekable();
    while let Some(option) = options.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" if condition != SetCondition::IfPresent => condition = SetCondition::IfAbsent,
            b"XX" if condition != SetCondition::IfAbsent => condition = SetCondition::IfPresent,
            b"GET" => get = true,
            b"KEEPTTL" => {}
            // Redis reports a syntax error when the expiry has no argument.
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if options.peek().is_some() => {
                return Err(CommandError::ExpiryUnsupported);
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(Request::Write(WriteOp::Set {
        key,
        value,
        condition,
        get,
    }))
}

fn build_del(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    Ok(Request::Write(WriteOp::Del(args)))
}

fn build_append(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let [key, value] = take(args);
    Ok(Request::Write(WriteOp::Append { key, value }))
}

fn build_incr(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let [key] = take(args);
    Ok(Request::Write(WriteOp::IncrBy { key, delta: 1 }))
}

fn build_incrby(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let [key, delta] = take(args);
    let delta = parse_i64(&delta).ok_or(CommandError::NotAnInteger)?;
    Ok(Request::Write(WriteOp::IncrBy { key, delta }))
}

fn build_cas(args: Vec<Vec<u8>>) -> Result<Request, CommandError> {
    let [key, expected, new] = take(args);
    Ok(Request::Write(WriteOp::Cas { key, expected, new }))
}

/// Values are checked here, before they reach the log; APPEND's resulting
/// length is checked again by the store, which alone knows it.
fn check_value_sizes(request: &Request, limits: &CommandLimits) -> Result<(), CommandError> {
    let values: Vec<&[u8]> = match request {
        Request::Write(WriteOp::Set { value, .. })
        | Request::Write(WriteOp::Append { value, .. }) => {
            vec![value]
        }
        Request::Write(WriteOp::Cas { expected, new, .. }) => vec![expected, new],
        Request::Write(WriteOp::Del(_) | WriteOp::IncrBy { .. })
        | Request::Read(_)
        | Request::Local(_) => Vec::new(),
    };
    match values.iter().find(|v| v.len() > limits.value_bytes_max) {
        Some(value) => Err(CommandError::ValueTooLarge {
            value_bytes: value.len(),
            value_bytes_max: limits.value_bytes_max,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
