//! A follower's connections to the leader's client port, for forwarding.
//! One cached connection per target node, per client connection: requests
//! on a client connection are sequential, so no multiplexing is needed.

use crate::kv::resp::{RespLimits, Value, parse_reply};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Default)]
pub struct Forwarder {
    conn: Option<(SocketAddr, TcpStream, Vec<u8>)>,
}

/// A failed forward, and whether the request may have reached the target
/// (false only when it failed before anything was sent).
#[derive(Debug)]
pub struct ForwardError {
    pub error: io::Error,
    pub maybe_sent: bool,
}

impl Forwarder {
    /// Sends `args` as a RESP array to `addr` and waits for one reply.
    pub fn call(
        &mut self,
        addr: SocketAddr,
        args: &[Vec<u8>],
        timeout: Duration,
        limits: &RespLimits,
    ) -> io::Result<Value> {
        self.call_tracking_sent(addr, args, timeout, limits)
            .map_err(|e| e.error)
    }

    /// `call`, telling on failure whether the request may have been sent.
    pub fn call_tracking_sent(
        &mut self,
        addr: SocketAddr,
        args: &[Vec<u8>],
        timeout: Duration,
        limits: &RespLimits,
    ) -> Result<Value, ForwardError> {
        if self.conn.as_ref().is_none_or(|(a, _, _)| *a != addr) {
            self.conn = None;
            let connected = TcpStream::connect_timeout(&addr, timeout).and_then(|stream| {
                stream.set_nodelay(true)?;
                Ok(stream)
            });
            match connected {
                Ok(stream) => self.conn = Some((addr, stream, Vec::new())),
                Err(error) => {
                    return Err(ForwardError {
                        error,
                        maybe_sent: false,
                    });
                }
            }
        }
        let result = self.try_call(args, timeout, limits);
        if result.is_err() {
            // The connection is in an unknown state: a late reply must not
            // be taken for the answer to the next request.
            self.conn = None;
        }
        result.map_err(|error| ForwardError {
            error,
            maybe_sent: true,
        })
    }

    fn try_call(
        &mut self,
        args: &[Vec<u8>],
        timeout: Duration,
        limits: &RespLimits,
    ) -> io::Result<Value> {
        let (_, stream, buf) = self.conn.as_mut().expect("connected by call");
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let request = Value::Array(args.iter().map(|a| Value::Bulk(a.clone())).collect());
        stream.write_all(&request.to_bytes())?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match parse_reply(buf, limits) {
                Ok(Some((value, used))) => {
                    buf.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "leader closed the connection",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}
