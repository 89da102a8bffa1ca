//! TLS on both ports with rustls over blocking sockets (DESIGN.md 9): no
//! async runtime, one thread per connection as before.
//!
//! One certificate and key per node, one CA for the cluster (Redis's
//! `tls-cert-file`, `tls-key-file`, `tls-ca-cert-file`). Peers use mutual
//! TLS: each side's certificate must chain to the CA, so that a stolen
//! password alone does not let a process in, and the connector checks the
//! acceptor's certificate against the peer's IP address. Clients verify the
//! node's certificate; the node does not ask clients for one (they give the
//! password).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls::{StreamOwned, crypto::CryptoProvider};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The three files of `--tls-cert-file`, `--tls-key-file` and
/// `--tls-ca-cert-file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A node's TLS configurations, built once at start.
#[derive(Clone)]
pub struct NodeTls {
    /// Peer port: the client's certificate must chain to the CA.
    pub peer_server: Arc<ServerConfig>,
    /// Outbound peer connections: present our certificate, verify theirs.
    pub peer_client: Arc<ClientConfig>,
    /// Client port: our certificate; clients authenticate with AUTH.
    pub client_server: Arc<ServerConfig>,
    /// Forwarding to another node's client port.
    pub client_client: Arc<ClientConfig>,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeTls")
    }
}

/// Configurations compare equal only when they are the same ones.
impl PartialEq for NodeTls {
    fn eq(&self, other: &NodeTls) -> bool {
        Arc::ptr_eq(&self.peer_server, &other.peer_server)
    }
}

impl Eq for NodeTls {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {what} '{}': {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {what} '{}'", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read tls_key_file '{}': {e}", path.display()))
}

/// The CA's certificates as a root store.
pub fn roots(ca: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca, "tls_ca_cert_file")? {
        roots
            .add(cert)
            .map_err(|e| format!("bad CA certificate in '{}': {e}", ca.display()))?;
    }
    Ok(Arc::new(roots))
}

/// A client configuration that trusts `roots` and presents no certificate
/// (`sraft client`, `sraft status`, tests).
pub fn client_config(roots: Arc<RootCertStore>) -> Result<Arc<ClientConfig>, String> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl NodeTls {
    /// Reads and checks the three files; every error is one line naming the
    /// file.
    pub fn load(files: &TlsFiles) -> Result<NodeTls, String> {
        let certs = read_certs(&files.cert, "tls_cert_file")?;
        let key = read_key(&files.key)?;
        let roots = roots(&files.ca)?;
        let bad_pair = |e: rustls::Error| {
            format!(
                "tls_cert_file '{}' and tls_key_file '{}': {e}",
                files.cert.display(),
                files.key.display()
            )
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| format!("bad tls_ca_cert_file '{}': {e}", files.ca.display()))?;
        let mut peer_server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(bad_pair)?;
        // No session tickets: once the handshake is done, the acceptor of a
        // peer connection must send nothing (the connector's watcher takes
        // any byte it reads as noise and only EOF as news, DESIGN.md 3.5),
        // and peer connections are long-lived anyway.
        peer_server.send_tls13_tickets = 0;
        let peer_client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(bad_pair)?;
        let client_server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(bad_pair)?;
        Ok(NodeTls {
            peer_server: Arc::new(peer_server),
            peer_client: Arc::new(peer_client),
            client_server: Arc::new(client_server),
            client_client: client_config(roots)?,
        })
    }
}

/// A socket, plain or inside TLS.
pub enum Stream {
    Plain(TcpStream),
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    /// The socket underneath, for timeouts, shutdown and clones.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Client(s) => &s.sock,
            Stream::Server(s) => &s.sock,
        }
    }

    /// Runs the TLS handshake to its end now (not at the first read or
    /// write), within `timeout`, so that a bad certificate or a plain-TCP
    /// client fails here with the reason. Plain streams pass through.
    /// The socket's own timeouts are restored afterwards.
    fn handshake(mut self, timeout: Duration) -> io::Result<Stream> {
        let tcp = self.tcp().try_clone()?;
        let (read_timeout, write_timeout) = (tcp.read_timeout()?, tcp.write_timeout()?);
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        match &mut self {
            Stream::Plain(_) => {}
            Stream::Client(s) => {
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
            }
            Stream::Server(s) => {
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
            }
        }
        tcp.set_read_timeout(read_timeout)?;
        tcp.set_write_timeout(write_timeout)?;
        Ok(self)
    }

    /// The connector's side: TLS to `addr` (its certificate must name
    /// `addr`'s IP) when `config` is given, else plain.
    pub fn connect(
        stream: TcpStream,
        addr: SocketAddr,
        config: Option<&Arc<ClientConfig>>,
        timeout: Duration,
    ) -> io::Result<Stream> {
        let Some(config) = config else {
            return Ok(Stream::Plain(stream));
        };
        let name = ServerName::from(addr.ip());
        let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        Stream::Client(Box::new(StreamOwned::new(conn, stream))).handshake(timeout)
    }

    /// The acceptor's side: TLS when `config` is given, else plain.
    pub fn accept(
        stream: TcpStream,
        config: Option<&Arc<ServerConfig>>,
        timeout: Duration,
    ) -> io::Result<Stream> {
        let Some(config) = config else {
            return Ok(Stream::Plain(stream));
        };
        let conn = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Stream::Server(Box::new(StreamOwned::new(conn, stream))).handshake(timeout)
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Client(s) => s.read(buf),
            Stream::Server(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Client(s) => s.write(buf),
            Stream::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Client(s) => s.flush(),
            Stream::Server(s) => s.flush(),
        }
    }
}

/// What `sraft client` and `sraft status` need to reach a TLS client port:
/// the CA to verify nodes against.
#[derive(Clone)]
pub struct ClientTls(pub Arc<ClientConfig>);

impl ClientTls {
    pub fn load(ca: &Path) -> Result<ClientTls, String> {
        client_config(roots(ca)?).map(ClientTls)
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientTls")
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &ClientTls) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ClientTls {}
