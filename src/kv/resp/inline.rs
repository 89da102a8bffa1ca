//! Inline commands: `SET "my key" 'it\'s' \r\n` typed into telnet or piped
//! into `redis-cli`. Word splitting follows Redis's `sdssplitargs` so that a
//! line means the same thing to sraft as to Redis.

use super::{RespError, RespLimits, Value};

/// Parses one inline command line from the start of `buf` into an array of
/// bulk strings.
pub(super) fn parse_inline(
    buf: &[u8],
    limits: &RespLimits,
) -> Result<Option<(Value, usize)>, RespError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > limits.inline_bytes_max {
            Err(RespError::TooBigInlineRequest)
        } else {
            Ok(None)
        };
    };
    if newline > limits.inline_bytes_max {
        return Err(RespError::TooBigInlineRequest);
    }
    // Redis accepts a bare LF here (unlike in RESP framing): people type it.
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let words = split_args(line).ok_or(RespError::UnbalancedQuotes)?;
    let items = words.into_iter().map(Value::Bulk).collect();
    Ok(Some((Value::Array(items), newline + 1)))
}

/// Splits a line into words: blanks separate words, `"..."` quotes with the
/// escapes `\n \r \t \b \a \\ \" \xHH`, `'...'` quotes with only `\'`.
/// `None` for an unterminated quote, or a closing quote followed by
/// something other than a blank (`"a"b`), which Redis also rejects.
pub(super) fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let mut pos = 0;
    loop {
        while line.get(pos).is_some_and(|b| is_space(*b)) {
            pos += 1;
        }
        if pos >= line.len() {
            return Some(words);
        }
        let (word, next) = split_word(line, pos)?;
        words.push(word);
        pos = next;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

/// One word starting at `pos` (not a blank) and the position after it.
fn split_word(line: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut word = Vec::new();
    let mut quote = Quote::None;
    loop {
        let c = line.get(pos).copied();
        match (quote, c) {
            (Quote::None, None) => return Some((word, pos)),
            (Quote::None, Some(c)) if is_space(c) => return Some((word, pos)),
            (Quote::None, Some(b'"')) => quote = Quote::Double,
            (Quote::None, Some(b'\'')) => quote = Quote::Single,
            (Quote::None, Some(c)) => word.push(c),
            // Unterminated quote.
            (Quote::Double | Quote::Single, None) => return None,
            (Quote::Double, Some(b'\\')) if line.get(pos + 1).is_some() => {
                let (byte, len) = double_quoted_escape(&line[pos + 1..]);
                word.push(byte);
                pos += len;
            }
            (Quote::Single, Some(b'\\')) if line.get(pos + 1) == Some(&b'\'') => {
                word.push(b'\'');
                pos += 1;
            }
            (Quote::Double, Some(b'"')) | (Quote::Single, Some(b'\'')) => {
                return match line.get(pos + 1) {
                    Some(next) if !is_space(*next) => None,
                    _ => Some((word, pos + 1)),
                };
            }
            (Quote::Double | Quote::Single, Some(c)) => word.push(c),
        }
        pos += 1;
    }
}

/// The byte an escape inside double quotes stands for, given the bytes after
/// the backslash, and how many of them it used.
fn double_quoted_escape(after: &[u8]) -> (u8, usize) {
    if let [b'x', hi, lo, ..] = after
        && let (Some(hi), Some(lo)) = (hex_value(*hi), hex_value(*lo))
    {
        return (hi * 16 + lo, 3);
    }
    let byte = match after[0] {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 0x08,
        b'a' => 0x07,
        other => other,
    };
    (byte, 1)
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// C's `isspace`, which `sdssplitargs` uses.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}
