//! The Redis encoding of the KV store's typed replies: the only place a
//! state-machine output becomes RESP (DESIGN.md 4.1).

use crate::kv::reply::KvReply;
use crate::kv::resp::{encode_header, encode_line};

/// Appends the RESP2 encoding of `reply` to `out`, writing each value's
/// bytes straight from the store's shared copy.
pub fn encode(reply: &KvReply, out: &mut Vec<u8>) {
    let bulk = |out: &mut Vec<u8>, value: &[u8]| {
        encode_header(out, b'$', value.len() as i64);
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    match reply {
        KvReply::Ok => out.extend_from_slice(b"+OK\r\n"),
        KvReply::Nil => out.extend_from_slice(b"$-1\r\n"),
        KvReply::Value(value) => bulk(out, value),
        KvReply::Integer(n) => encode_header(out, b':', *n),
        KvReply::Registered(id) => encode_header(out, b':', *id as i64),
        KvReply::Values(values) => {
            encode_header(out, b'*', values.len() as i64);
            for value in values {
                match value {
                    Some(value) => bulk(out, value),
                    None => out.extend_from_slice(b"$-1\r\n"),
                }
            }
        }
        // The texts are one line by construction; `encode_line` asserts it,
        // and user input (a key in a message) is not part of any.
        KvReply::Error(error) => {
            encode_line(out, b'-', &error.to_string().replace(['\r', '\n'], " "))
        }
    }
}

/// The RESP2 encoding of `reply`.
pub fn to_bytes(reply: &KvReply) -> Vec<u8> {
    let mut out = Vec::new();
    encode(reply, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::reply::{KvError, Shared};
    use crate::kv::resp::Value;

    /// Each reply encodes exactly as the RESP value Redis would send.
    #[test]
    fn replies_encode_as_redis_does() {
        let cases = [
            (KvReply::Ok, Value::ok()),
            (KvReply::Nil, Value::NullBulk),
            (
                KvReply::Value(Shared::from(&b"a\r\nb"[..])),
                Value::Bulk(b"a\r\nb".to_vec()),
            ),
            (KvReply::Integer(-3), Value::Integer(-3)),
            (
                KvReply::Values(vec![Some(Shared::from(&b"x"[..])), None]),
                Value::Array(vec![Value::Bulk(b"x".to_vec()), Value::NullBulk]),
            ),
            (
                KvReply::Error(KvError::NotAnInteger),
                Value::Error("ERR value is not an integer or out of range".into()),
            ),
            (
                KvReply::Error(KvError::Undecodable {
                    index: crate::core::LogIndex(9),
                    problem: "bad\r\nbytes".into(),
                }),
                Value::Error("ERR undecodable command at index 9: bad  bytes".into()),
            ),
        ];
        for (reply, value) in cases {
            assert_eq!(to_bytes(&reply), value.to_bytes(), "{reply:?}");
        }
    }
}
