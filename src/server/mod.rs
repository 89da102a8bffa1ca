//! The client port (DESIGN.md 4): RESP2, a thread per connection, requests
//! answered in order. Any node accepts any command: a follower forwards
//! writes and reads to the leader (during an election, to the candidate it
//! voted for) over the peer transport (`relay`) and relays the answer.

mod admin;
mod auth;
mod connection;
mod forward;
mod info;
mod members;
mod relay;
pub mod reply;

pub use forward::{ForwardError, Forwarder};
pub use info::{info_text, parse_info};
pub use relay::Relay;

use crate::kv::resp::RespLimits;
use crate::kv::store::KvStore;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::runtime::{NodeStatus, Request};
use crate::secret::Secret;
use crate::tls::NodeTls;
use crate::transport::ClientAddrs;
use crossbeam_channel::Sender;
use parking_lot::Mutex;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What every connection thread shares.
pub struct ServerContext {
    pub node_id: u64,
    pub requests: Sender<Request<KvStore>>,
    pub status: Arc<Mutex<NodeStatus>>,
    /// The node's counters: commands, forwards and connections are counted
    /// here; INFO reads them.
    pub metrics: Arc<Metrics>,
    /// Client addresses by node id, as the nodes announce them in their
    /// hellos (the configured guesses until then), for INFO.
    pub client_addrs: ClientAddrs,
    /// Forwarding to the leader over the peer transport; None: a follower
    /// does not forward, and answers that it cannot reach the leader.
    pub relay: Option<Arc<Relay>>,
    pub limits: RespLimits,
    /// Largest value accepted by SET, APPEND, CAS (limits.value_bytes_max).
    pub value_bytes_max: usize,
    /// Bytes buffered for one incomplete request before the connection is
    /// closed (limits.request_bytes_max).
    pub request_bytes_max: usize,
    /// How long a request may wait for a leader, a commit or a forward
    /// before the client gets an error.
    pub request_timeout: Duration,
    pub connections_max: u64,
    /// Redis AUTH (DESIGN.md 9): until a connection gives this password,
    /// it may only AUTH, HELLO, PING and QUIT. None: no password.
    pub password: Option<Secret>,
    /// TLS on the client port (DESIGN.md 9).
    pub tls: Option<NodeTls>,
    connections: AtomicU64,
    stopping: AtomicBool,
}

impl ServerContext {
    /// A context with the byte limits of `limits`, validated by the caller.
    pub fn new(
        node_id: u64,
        requests: Sender<Request<KvStore>>,
        status: Arc<Mutex<NodeStatus>>,
        metrics: Arc<Metrics>,
        client_addrs: ClientAddrs,
        limits: &Limits,
    ) -> ServerContext {
        ServerContext {
            node_id,
            requests,
            status,
            metrics,
            client_addrs,
            relay: None,
            limits: RespLimits::default(),
            value_bytes_max: limits.value_bytes_max,
            request_bytes_max: limits.request_bytes_max,
            request_timeout: Duration::from_secs(5),
            connections_max: 1024,
            password: None,
            tls: None,
            connections: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }
}

pub struct ClientServer {
    addr: SocketAddr,
    context: Arc<ServerContext>,
    listener: Option<JoinHandle<()>>,
}

impl ClientServer {
    /// Binds the client port (so "address in use" fails before the node
    /// starts serving) and starts accepting.
    pub fn start(listen: SocketAddr, context: ServerContext) -> io::Result<ClientServer> {
        ClientServer::from_listener(TcpListener::bind(listen)?, context)
    }

    /// Serves on a listener bound earlier.
    pub fn from_listener(
        listener: TcpListener,
        context: ServerContext,
    ) -> io::Result<ClientServer> {
        let addr = listener.local_addr()?;
        let context = Arc::new(context);
        let shared = context.clone();
        let handle = thread::Builder::new()
            .name("client-listener".into())
            .spawn(move || accept_loop(listener, shared))?;
        Ok(ClientServer {
            addr,
            context,
            listener: Some(handle),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; open connections end when their clients leave or
    /// their next request finds the node gone.
    pub fn shutdown(&mut self) {
        self.context.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.listener.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for ClientServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, context: Arc<ServerContext>) {
    let mut next_conn: u64 = 0;
    for stream in listener.incoming() {
        if context.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("client port: accept failed: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if context.connections.load(Ordering::SeqCst) >= context.connections_max {
            log::warn!(
                "client port: {} connections open; refusing another",
                context.connections_max
            );
            context.metrics.connection_refused();
            let _ = connection::refuse(stream, "ERR max number of clients reached");
            continue;
        }
        next_conn += 1;
        context.connections.fetch_add(1, Ordering::SeqCst);
        context.metrics.connection_accepted();
        let slot = Slot(context.clone());
        let spawned = thread::Builder::new()
            .name(format!("client-{next_conn}"))
            .spawn(move || connection::serve(stream, &slot.0));
        if let Err(e) = spawned {
            // The closure, and with it the slot, is dropped: released.
            log::warn!("client port: cannot start a connection thread: {e}");
        }
    }
}

/// One of `connections_max` connection slots, released when its thread
/// ends, even by a panic: a bug in one command must cost its connection,
/// not the port. Released by hand, 1,024 panicking INFOs once left a node
/// refusing every client.
struct Slot(Arc<ServerContext>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.connection_closed();
    }
}
