//! The one RESP client of the toolkit: [`Conn`], one cached connection to
//! one node's client port, over the library's own client
//! (`sraft::server::Forwarder`, the `sraft::kv::resp` codec), with the TLS
//! and AUTH a cluster asks for ([`Auth`]).

use sraft::kv::resp::{RespLimits, Value};
use sraft::secret::Secret;
use sraft::server::{ForwardError, Forwarder};
use sraft::tls::ClientTls;
use std::net::SocketAddr;
use std::time::Duration;

/// Timeout of one INFO / probe request.
pub const INFO_TIMEOUT: Duration = Duration::from_millis(500);
/// Longer than the server's request timeout (5 s): a client call that
/// should be answered, not hang.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// What a client must do to be let in: TLS against the cluster's CA, AUTH
/// with its password; both optional.
#[derive(Clone, Default)]
pub struct Auth {
    pub password: Option<Secret>,
    pub tls: Option<ClientTls>,
}

/// A RESP connection to one address, opened on the first call and after
/// any failed one (a late reply must never answer the next request).
pub struct Conn {
    addr: SocketAddr,
    timeout: Duration,
    auth: Auth,
    forwarder: Forwarder,
}

impl Conn {
    /// A connection to `addr` (not opened yet) whose calls wait `timeout`.
    pub fn new(addr: SocketAddr, auth: &Auth, timeout: Duration) -> Conn {
        Conn {
            addr,
            timeout,
            auth: auth.clone(),
            forwarder: forwarder(auth),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One request, one reply.
    pub fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Value> {
        self.call_tracking_sent(args).map_err(|e| e.error)
    }

    /// [`Conn::call`], telling on failure whether the request may have
    /// reached the node (false only if it failed before anything was sent:
    /// then it certainly had no effect).
    pub fn call_tracking_sent(&mut self, args: &[&[u8]]) -> Result<Value, ForwardError> {
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        self.forwarder
            .call_tracking_sent(self.addr, &args, self.timeout, &RespLimits::default())
    }

    /// Forgets the connection: the next call opens a new one (a new
    /// server-side session).
    pub fn reset(&mut self) {
        self.forwarder = forwarder(&self.auth);
    }
}

fn forwarder(auth: &Auth) -> Forwarder {
    Forwarder::new(
        auth.password.clone(),
        auth.tls.as_ref().map(|t| t.0.clone()),
    )
}

/// One request on a connection of its own.
pub fn call(
    addr: SocketAddr,
    auth: &Auth,
    args: &[&[u8]],
    timeout: Duration,
) -> std::io::Result<Value> {
    Conn::new(addr, auth, timeout).call(args)
}
