//! Just enough HTTP/1.1 and JSON for etcd's v3 JSON gateway: POST a small
//! JSON body on one persistent connection and read the answer
//! (`Content-Length` or chunked); read a number field of the answer; the
//! base64 the gateway wants for keys and values.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer larger than this is not etcd's status or put reply.
const BODY_BYTES_MAX: usize = 1 << 20;

/// A persistent HTTP/1.1 connection to one address; reconnects after any
/// error or timeout (a request cut off mid-way leaves the stream unusable).
pub struct HttpConn {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<BufReader<TcpStream>>,
}

impl HttpConn {
    pub fn new(addr: SocketAddr, timeout: Duration) -> HttpConn {
        HttpConn {
            addr,
            timeout,
            stream: None,
        }
    }

    pub fn reset(&mut self) {
        self.stream = None;
    }

    /// POSTs `body` (JSON) to `path`; the status code and the body.
    pub fn post(&mut self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let answer = self.try_post(path, body);
        if answer.is_err() {
            self.stream = None;
        }
        answer
    }

    fn try_post(&mut self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(self.timeout))?;
            s.set_write_timeout(Some(self.timeout))?;
            self.stream = Some(BufReader::new(s));
        }
        let reader = self.stream.as_mut().expect("just connected");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        reader.get_mut().write_all(request.as_bytes())?;
        let (code, body, close) = read_response(reader)?;
        if close {
            self.stream = None;
        }
        Ok((code, body))
    }
}

fn bad(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// One response: (status code, body, whether the server closes).
fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, String, bool)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("status line {line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the headers".into()));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad(format!("header {header:?}")));
        };
        let (name, value) = (name.to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(r)?
    } else {
        let n = length.ok_or_else(|| bad("no Content-Length".into()))?;
        read_exact_vec(r, n)?
    };
    let body = String::from_utf8(body).map_err(|e| bad(format!("body: {e}")))?;
    Ok((code, body, close))
}

fn read_exact_vec(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    if n > BODY_BYTES_MAX {
        return Err(bad(format!("body of {n} bytes")));
    }
    let mut v = vec![0; n];
    r.read_exact(&mut v)?;
    Ok(v)
}

fn read_chunked(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size_hex = line.trim().split(';').next().unwrap_or("");
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| bad(format!("chunk size {line:?}")))?;
        if body.len() + size > BODY_BYTES_MAX {
            return Err(bad("chunked body too large".into()));
        }
        body.extend(read_exact_vec(r, size)?);
        line.clear();
        r.read_line(&mut line)?; // the CRLF after the chunk (or the trailer's end)
        if size == 0 {
            return Ok(body);
        }
    }
}

/// The unsigned number of the first `"key":` in `json`, written either as
/// a number or as a string (the gateway writes uint64 as strings).
pub fn json_u64(json: &str, key: &str) -> Option<u64> {
    let pattern = format!("\"{key}\":");
    let at = json.find(&pattern)? + pattern.len();
    let rest = json[at..].trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let digits: &str = &rest[..rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len())];
    digits.parse().ok()
}

/// Standard base64 with padding (RFC 4648, section 4).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn json_u64_reads_string_and_number_fields() {
        // As etcd 3.4's gateway answers /v3/maintenance/status.
        let status = r#"{"header":{"cluster_id":"124","member_id":"1520713267247070721","revision":"1","raft_term":"2"},"version":"3.4.23","leader":"1520713267247070721","raftIndex":"4","raftTerm":"2"}"#;
        assert_eq!(json_u64(status, "member_id"), Some(1520713267247070721));
        assert_eq!(json_u64(status, "leader"), Some(1520713267247070721));
        assert_eq!(json_u64(status, "raftTerm"), Some(2));
        assert_eq!(json_u64(status, "raftIndex"), Some(4));
        assert_eq!(json_u64(r#"{"n": 17}"#, "n"), Some(17));
        assert_eq!(json_u64(status, "absent"), None);
    }

    #[test]
    fn reads_content_length_and_chunked_responses() {
        let plain = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let (code, body, close) = read_response(&mut plain.as_bytes()).unwrap();
        assert_eq!((code, body.as_str(), close), (200, "{}", false));
        let chunked = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\
                       Connection: close\r\n\r\n3\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n";
        let (code, body, close) = read_response(&mut chunked.as_bytes()).unwrap();
        assert_eq!((code, body.as_str(), close), (503, "{\"a\"}", true));
    }
}
