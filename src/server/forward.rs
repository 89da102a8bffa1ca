//! A small RESP client of a node's client port: one cached connection,
//! one request at a time, with optional TLS and AUTH. `sraft client`,
//! `sraft status`, the tests and the experiments use it. Nodes no longer
//! use it to forward to each other: that goes over the peer transport
//! (`relay.rs`, DESIGN.md 4.4).

use crate::kv::resp::{RespLimits, Value, parse_reply};
use crate::secret::Secret;
use crate::tls::Stream;
use rustls::ClientConfig;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often `call_unless` asks whether to give up while waiting.
const GIVE_UP_POLL: Duration = Duration::from_millis(5);

#[derive(Default)]
pub struct Forwarder {
    conn: Option<(SocketAddr, Stream, Vec<u8>)>,
    /// TLS to the target's client port, verified against the CA.
    tls: Option<Arc<ClientConfig>>,
    /// Sent with AUTH first on every new connection, for nodes that ask
    /// every client for the password.
    password: Option<Secret>,
}

/// A failed forward, and whether the request may have reached the target
/// (false only when it failed before anything was sent).
#[derive(Debug)]
pub struct ForwardError {
    pub error: io::Error,
    pub maybe_sent: bool,
}

impl Forwarder {
    /// A forwarder that authenticates each connection with `password`.
    pub fn with_password(password: Option<Secret>) -> Forwarder {
        Forwarder::new(password, None)
    }

    /// A forwarder that speaks TLS (when `tls` is given) and then sends
    /// AUTH (when `password` is) on each new connection.
    pub fn new(password: Option<Secret>, tls: Option<Arc<ClientConfig>>) -> Forwarder {
        Forwarder {
            conn: None,
            tls,
            password,
        }
    }

    /// Sends `args` as a RESP array to `addr` and waits for one reply.
    pub fn call(
        &mut self,
        addr: SocketAddr,
        args: &[Vec<u8>],
        timeout: Duration,
        limits: &RespLimits,
    ) -> io::Result<Value> {
        self.call_unless(addr, args, timeout, limits, || false)
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
        self.call_unless(addr, args, timeout, limits, || false)
    }

    /// Like `call_tracking_sent`, but while waiting for the reply asks
    /// `give_up` every few milliseconds and, when it says so, abandons the
    /// request with an `Interrupted` error (the connection is dropped), for
    /// a caller that must stop waiting on a node that froze.
    pub fn call_unless(
        &mut self,
        addr: SocketAddr,
        args: &[Vec<u8>],
        timeout: Duration,
        limits: &RespLimits,
        give_up: impl FnMut() -> bool,
    ) -> Result<Value, ForwardError> {
        if self.conn.as_ref().is_none_or(|(a, _, _)| *a != addr) {
            self.conn = None;
            let tls = self.tls.as_ref();
            let connected = TcpStream::connect_timeout(&addr, timeout).and_then(|stream| {
                stream.set_nodelay(true)?;
                Stream::connect(stream, addr, tls, timeout)
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
            if let Err(error) = self.authenticate(timeout, limits) {
                self.conn = None;
                return Err(ForwardError {
                    error,
                    maybe_sent: false,
                });
            }
        }
        let result = self.try_call(args, timeout, limits, give_up);
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

    /// AUTH on a fresh connection, when there is a password. A refusal is
    /// `PermissionDenied` with the server's words.
    fn authenticate(&mut self, timeout: Duration, limits: &RespLimits) -> io::Result<()> {
        let Some(password) = self.password.clone() else {
            return Ok(());
        };
        let args = [b"AUTH".to_vec(), password.as_bytes().to_vec()];
        match self.try_call(&args, timeout, limits, || false)? {
            Value::Simple(ok) if ok == "OK" => Ok(()),
            Value::Error(e) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("AUTH refused: {e}"),
            )),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to AUTH: {other:?}"),
            )),
        }
    }

    fn try_call(
        &mut self,
        args: &[Vec<u8>],
        timeout: Duration,
        limits: &RespLimits,
        mut give_up: impl FnMut() -> bool,
    ) -> io::Result<Value> {
        let deadline = Instant::now() + timeout;
        let (_, stream, buf) = self.conn.as_mut().expect("connected by call_unless");
        stream
            .tcp()
            .set_read_timeout(Some(timeout.min(GIVE_UP_POLL)))?;
        stream.tcp().set_write_timeout(Some(timeout))?;
        let request = Value::Array(args.iter().map(|a| Value::Bulk(a.clone())).collect());
        stream.write_all(&request.to_bytes())?;
        stream.flush()?;
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
            let n = match stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(e);
                    }
                    if give_up() {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "request abandoned",
                        ));
                    }
                    stream
                        .tcp()
                        .set_read_timeout(Some((deadline - now).min(GIVE_UP_POLL)))?;
                    continue;
                }
                Err(e) => return Err(e),
            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A peer that accepts and reads but never answers, like a leader under
    /// SIGSTOP: `call_unless` returns as soon as `give_up` says so, long
    /// before the timeout.
    #[test]
    fn a_silent_peer_is_abandoned_when_asked() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
        });
        let started = Instant::now();
        let mut f = Forwarder::default();
        let args = vec![b"PING".to_vec()];
        let err = f
            .call_unless(
                addr,
                &args,
                Duration::from_secs(10),
                &RespLimits::default(),
                || started.elapsed() > Duration::from_millis(50),
            )
            .unwrap_err();
        assert_eq!(err.error.kind(), io::ErrorKind::Interrupted);
        assert!(err.maybe_sent);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(f.conn.is_none(), "the connection must be dropped");
    }
}
