//! RESP2, the Redis serialization protocol
//! (<https://redis.io/docs/latest/develop/reference/protocol-spec/>).
//!
//! The parser is incremental in the simplest way: it is handed everything
//! buffered so far and either returns one complete value and the number of
//! bytes it used, or `None` when the value is not complete yet (the caller
//! reads more and calls again with the longer buffer). It never consumes a
//! partial value, so the caller's buffer handling is a `drain(..consumed)`.
//!
//! Two entry points:
//! - [`parse`] is for the server. Clients send arrays of bulk strings, but
//!   `redis-cli` piped input and telnet users send *inline commands*: one
//!   line of space-separated, optionally quoted words. Like Redis, any first
//!   byte that is not a RESP type byte starts an inline command, which comes
//!   back as an array of bulk strings so the command layer sees one shape.
//! - [`parse_reply`] is for the command-line client reading replies: full
//!   RESP2 values, and a first byte that is not a type byte is an error.
//!
//! Errors are framing errors: the stream cannot be resynchronized after one,
//! so the server replies with the error (`RespError::to_reply`) and closes
//! the connection, as Redis does.

mod inline;
#[cfg(test)]
mod tests;

use std::fmt;

/// A RESP2 value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK\r\n`. Must not contain CR or LF.
    Simple(String),
    /// `-ERR message\r\n`. Must not contain CR or LF. By Redis convention
    /// the first word is the error kind (`ERR`, `WRONGTYPE`, ...).
    Error(String),
    /// `:42\r\n`
    Integer(i64),
    /// `$5\r\nhello\r\n`: binary-safe.
    Bulk(Vec<u8>),
    /// `$-1\r\n`: Redis's "nil" reply (GET of a missing key).
    NullBulk,
    /// `*2\r\n...`
    Array(Vec<Value>),
    /// `*-1\r\n`
    NullArray,
}

/// Upper bounds on what a peer can make us buffer or allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RespLimits {
    /// Largest bulk string accepted. Redis's `proto-max-bulk-len` is 512 MiB;
    /// a replicated value travels through the log, the WAL and snapshots, so
    /// sraft defaults to far less.
    pub bulk_bytes_max: usize,
    /// Most elements in one array (Redis: 1024 * 1024 for a request).
    pub array_len_max: usize,
    /// Longest line: an inline command, a simple string, an error, or a
    /// length header (Redis: `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub inline_bytes_max: usize,
    /// Deepest nesting of arrays. Requests are flat and real replies nest a
    /// few levels; the bound keeps `*1\r\n*1\r\n...` from exhausting the
    /// stack of the recursive parser.
    pub nesting_depth_max: usize,
}

impl Default for RespLimits {
    fn default() -> Self {
        RespLimits {
            bulk_bytes_max: 64 * 1024 * 1024,
            array_len_max: 1024 * 1024,
            inline_bytes_max: 64 * 1024,
            nesting_depth_max: 32,
        }
    }
}

/// A framing error. `Display` gives Redis's text for the same problem
/// (`Protocol error: invalid bulk length`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespError {
    /// A bulk length that is not an integer, is below -1 or above
    /// `bulk_bytes_max`.
    InvalidBulkLength,
    /// An array length that is not an integer, is below -1 or above
    /// `array_len_max`.
    InvalidMultibulkLength,
    /// A `:` reply that is not a 64-bit signed decimal integer.
    InvalidInteger,
    /// An inline command with no newline within `inline_bytes_max` bytes.
    TooBigInlineRequest,
    /// A header, simple string or error line longer than `inline_bytes_max`.
    TooBigLine,
    /// An inline command with an unterminated quote, or a closing quote not
    /// followed by a space.
    UnbalancedQuotes,
    /// A line ended by a bare LF, or a CR not followed by LF.
    ExpectedCrlf,
    /// A bulk string whose payload is not followed by CRLF.
    BulkNotTerminated,
    /// A simple string or error line that is not UTF-8.
    InvalidUtf8,
    /// Arrays nested deeper than `nesting_depth_max`.
    NestingTooDeep,
    /// (Replies only.) A first byte that is not `+ - : $ *`.
    InvalidTypeByte(u8),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            RespError::InvalidBulkLength => f.write_str("invalid bulk length"),
            RespError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            RespError::InvalidInteger => f.write_str("invalid integer"),
            RespError::TooBigInlineRequest => f.write_str("too big inline request"),
            RespError::TooBigLine => f.write_str("too big count string"),
            RespError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            RespError::ExpectedCrlf => f.write_str("expected CRLF line terminator"),
            RespError::BulkNotTerminated => f.write_str("bulk string not terminated by CRLF"),
            RespError::InvalidUtf8 => f.write_str("invalid UTF-8 in simple string or error"),
            RespError::NestingTooDeep => f.write_str("arrays nested too deeply"),
            RespError::InvalidTypeByte(b) => {
                write!(f, "invalid type byte '{}'", b.escape_ascii())
            }
        }
    }
}

impl std::error::Error for RespError {}

impl RespError {
    /// The error reply Redis sends before closing the connection.
    pub fn to_reply(&self) -> Value {
        Value::Error(format!("ERR {self}"))
    }
}

impl Value {
    /// `+OK`
    pub fn ok() -> Value {
        Value::Simple("OK".to_string())
    }

    /// An error reply. CR and LF would break the framing, so they become
    /// spaces (Redis does the same to error texts that echo user input).
    pub fn error(message: impl Into<String>) -> Value {
        let message: String = message.into();
        Value::Error(message.replace(['\r', '\n'], " "))
    }

    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Value {
        Value::Bulk(bytes.into())
    }

    /// A bulk string, or nil for `None`: how Redis answers GET.
    pub fn bulk_or_nil(bytes: Option<&[u8]>) -> Value {
        match bytes {
            Some(bytes) => Value::Bulk(bytes.to_vec()),
            None => Value::NullBulk,
        }
    }

    /// Appends the RESP2 encoding of `self` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => encode_line(out, b'+', s),
            Value::Error(s) => encode_line(out, b'-', s),
            Value::Integer(n) => encode_header(out, b':', *n),
            Value::Bulk(bytes) => {
                encode_header(out, b'$', bytes.len() as i64);
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Value::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Value::Array(items) => {
                encode_header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(out);
                }
            }
            Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
        }
    }

    /// The RESP2 encoding of `self`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

pub fn encode_line(out: &mut Vec<u8>, type_byte: u8, line: &str) {
    // A CR or LF here would let a reply smuggle a second reply into the
    // stream: it is a bug in whoever built the value.
    assert!(
        !line.contains(['\r', '\n']),
        "RESP simple string or error contains CR or LF: {line:?}"
    );
    out.push(type_byte);
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn encode_header(out: &mut Vec<u8>, type_byte: u8, n: i64) {
    out.push(type_byte);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Parses one request from the start of `buf`: a RESP value, or an inline
/// command returned as an array of bulk strings. An empty inline line comes
/// back as an empty array, which Redis silently skips.
pub fn parse(buf: &[u8], limits: &RespLimits) -> Result<Option<(Value, usize)>, RespError> {
    match buf.first() {
        None => Ok(None),
        Some(b) if is_type_byte(*b) => Parser::new(buf, limits).value_at(0, 0),
        Some(_) => inline::parse_inline(buf, limits),
    }
}

/// Parses one reply from the start of `buf`. Unlike [`parse`], there are no
/// inline replies: a first byte that is not a type byte is an error.
pub fn parse_reply(buf: &[u8], limits: &RespLimits) -> Result<Option<(Value, usize)>, RespError> {
    Parser::new(buf, limits).value_at(0, 0)
}

fn is_type_byte(b: u8) -> bool {
    matches!(b, b'+' | b'-' | b':' | b'$' | b'*')
}

/// `Ok(None)`: not enough bytes yet.
type Partial<T> = Result<Option<T>, RespError>;

struct Parser<'a> {
    buf: &'a [u8],
    limits: &'a RespLimits,
}

impl<'a> Parser<'a> {
    fn new(buf: &'a [u8], limits: &'a RespLimits) -> Self {
        Parser { buf, limits }
    }

    /// The value starting at `pos` and the position just past it.
    fn value_at(&self, pos: usize, depth: usize) -> Partial<(Value, usize)> {
        let Some(&type_byte) = self.buf.get(pos) else {
            return Ok(None);
        };
        let Some((line, after_line)) = self.line_at(pos + 1)? else {
            return Ok(None);
        };
        match type_byte {
            b'+' => Ok(Some((Value::Simple(utf8(line)?), after_line))),
            b'-' => Ok(Some((Value::Error(utf8(line)?), after_line))),
            b':' => {
                let n = parse_i64(line).ok_or(RespError::InvalidInteger)?;
                Ok(Some((Value::Integer(n), after_line)))
            }
            b'$' => self.bulk_body(line, after_line),
            b'*' => self.array_items(line, after_line, depth),
            other => Err(RespError::InvalidTypeByte(other)),
        }
    }

    /// The line starting at `pos` (without its CRLF) and the position just
    /// past the CRLF.
    fn line_at(&self, pos: usize) -> Partial<(&'a [u8], usize)> {
        let rest = &self.buf[pos.min(self.buf.len())..];
        match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None if rest.len() > self.limits.inline_bytes_max => Err(RespError::TooBigLine),
            None => Ok(None),
            Some(end) if end > self.limits.inline_bytes_max => Err(RespError::TooBigLine),
            Some(end) if rest[end] == b'\n' => Err(RespError::ExpectedCrlf),
            Some(end) => match rest.get(end + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((&rest[..end], pos + end + 2))),
                Some(_) => Err(RespError::ExpectedCrlf),
            },
        }
    }

    fn bulk_body(&self, len_line: &[u8], start: usize) -> Partial<(Value, usize)> {
        let len = parse_i64(len_line).ok_or(RespError::InvalidBulkLength)?;
        if len == -1 {
            return Ok(Some((Value::NullBulk, start)));
        }
        let len = usize::try_from(len).map_err(|_| RespError::InvalidBulkLength)?;
        if len > self.limits.bulk_bytes_max {
            return Err(RespError::InvalidBulkLength);
        }
        // Saturating: the limit is configurable, up to `usize::MAX`.
        let end = start.saturating_add(len);
        if self.buf.len() < end.saturating_add(2) {
            return Ok(None);
        }
        if &self.buf[end..end + 2] != b"\r\n" {
            return Err(RespError::BulkNotTerminated);
        }
        Ok(Some((Value::Bulk(self.buf[start..end].to_vec()), end + 2)))
    }

    fn array_items(&self, len_line: &[u8], start: usize, depth: usize) -> Partial<(Value, usize)> {
        let len = parse_i64(len_line).ok_or(RespError::InvalidMultibulkLength)?;
        if len == -1 {
            return Ok(Some((Value::NullArray, start)));
        }
        let len = usize::try_from(len).map_err(|_| RespError::InvalidMultibulkLength)?;
        if len > self.limits.array_len_max {
            return Err(RespError::InvalidMultibulkLength);
        }
        if len > 0 && depth >= self.limits.nesting_depth_max {
            return Err(RespError::NestingTooDeep);
        }
        // The length is the peer's claim: reserve a little, grow as the
        // elements actually arrive.
        let mut items = Vec::with_capacity(len.min(1024));
        let mut pos = start;
        for _ in 0..len {
            let Some((item, next)) = self.value_at(pos, depth + 1)? else {
                return Ok(None);
            };
            items.push(item);
            pos = next;
        }
        Ok(Some((Value::Array(items), pos)))
    }
}

fn utf8(line: &[u8]) -> Result<String, RespError> {
    String::from_utf8(line.to_vec()).map_err(|_| RespError::InvalidUtf8)
}

/// Parses a decimal i64 the way Redis's `string2ll` does: an optional `-`,
/// then digits with no leading zero (except "0" itself), no `+`, no spaces,
/// no overflow. Shared with the store, where INCR must accept exactly the
/// strings Redis accepts.
pub fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN, whose magnitude has no
    // positive i64, parses without a special case.
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(b - b'0'))?;
    }
    if negative { Some(n) } else { n.checked_neg() }
}
