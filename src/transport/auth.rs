//! The peer handshake: a mutual challenge-response over the cluster secret
//! before any Raft frame is accepted (DESIGN.md 2.6 and 9).
//!
//! ```text
//! connector C                                   acceptor A
//!   Hello { version, cluster id, C, nonce_c } ->
//!                                             <- Challenge { A, nonce_a }
//!   Proof(mac(k, "connector", ...))           ->   A checks, or closes
//!                                             <- Proof(mac(k, "acceptor", ...))
//!   C checks, or closes; then only C writes, Raft frames.
//! ```
//!
//! Each MAC is HMAC-SHA256 keyed by the secret over the role, the cluster
//! id, both node ids and both nonces. Fresh nonces on both sides make every
//! proof good for one connection only (no replay); the role makes the two
//! proofs of one connection differ, so a proof the acceptor sends cannot be
//! reflected back to it as the connector's. The connector proves itself
//! first, so the node being joined learns (and logs) a wrong secret; and a
//! process that merely listens at a peer's address learns nothing usable
//! from a connector, whose proof covers the acceptor nonce and the two ids.
//!
//! Without a secret file the key is empty: the exchange still runs (one
//! protocol, one code path) but proves nothing but the cluster id.

use super::frame::{FrameError, PROTOCOL_VERSION, PeerFrame, encode_frame, read_frame};
use crate::core::NodeId;
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::io::{self, Read, Write};

pub use super::frame::Hello;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 32;
/// Bytes of a proof (an HMAC-SHA256 tag).
pub const PROOF_BYTES: usize = 32;

pub type Nonce = [u8; NONCE_BYTES];

/// The acceptor's answer to a hello: who it is, and its nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub node_id: NodeId,
    pub nonce: Nonce,
}

/// An HMAC-SHA256 tag over one connection's handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof(pub [u8; PROOF_BYTES]);

/// Which end of the connection a proof speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Connector,
    Acceptor,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Connector => b"sraft peer handshake v1: connector",
            Role::Acceptor => b"sraft peer handshake v1: acceptor",
        }
    }
}

/// What both ends must agree on: the key and the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAuth {
    pub cluster_id: String,
    /// None: peers are not authenticated (the key is empty).
    pub secret: Option<Secret>,
}

/// Everything one connection's proofs cover.
#[derive(Clone, Copy, Debug)]
pub struct Transcript<'a> {
    pub cluster_id: &'a str,
    pub connector: NodeId,
    pub acceptor: NodeId,
    pub connector_nonce: &'a Nonce,
    pub acceptor_nonce: &'a Nonce,
}

impl PeerAuth {
    fn mac(&self, role: Role, t: &Transcript<'_>) -> Hmac<Sha256> {
        let key = self.secret.as_ref().map_or(&[][..], Secret::as_bytes);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        // Every field is fixed-size or length-prefixed, so two different
        // transcripts never feed the MAC the same bytes.
        let label = role.label();
        mac.update(&(label.len() as u32).to_be_bytes());
        mac.update(label);
        mac.update(&(t.cluster_id.len() as u32).to_be_bytes());
        mac.update(t.cluster_id.as_bytes());
        mac.update(&t.connector.0.to_be_bytes());
        mac.update(&t.acceptor.0.to_be_bytes());
        mac.update(t.connector_nonce);
        mac.update(t.acceptor_nonce);
        mac
    }

    /// The proof that `role` knows the secret, for this transcript.
    pub fn prove(&self, role: Role, t: &Transcript<'_>) -> Proof {
        Proof(self.mac(role, t).finalize().into_bytes().into())
    }

    /// Checks `proof` in constant time (`verify_slice`).
    pub fn verify(&self, role: Role, t: &Transcript<'_>, proof: &Proof) -> bool {
        self.mac(role, t).verify_slice(&proof.0).is_ok()
    }
}

/// A fresh nonce. `rand::random` draws from the thread-local CSPRNG, seeded
/// from the OS: nonces must be unpredictable, not replayable.
pub fn fresh_nonce() -> Nonce {
    rand::random()
}

/// Why a handshake failed. The connection is closed in every case.
#[derive(Debug)]
pub enum HandshakeError {
    /// Closed before the first byte of a hello: a port probe, nothing wrong.
    Probe,
    /// The other end closed or reset the connection mid-handshake.
    Closed(String),
    /// The other end sent nothing within the handshake timeout.
    Timeout,
    /// The other end broke the protocol or failed to prove the secret.
    Rejected(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Probe => write!(f, "closed before its hello"),
            HandshakeError::Closed(why) => write!(f, "closed during the handshake: {why}"),
            HandshakeError::Timeout => write!(f, "handshake timed out"),
            HandshakeError::Rejected(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl HandshakeError {
    fn from_frame(e: FrameError, expected: &str) -> HandshakeError {
        match e {
            FrameError::Eof => HandshakeError::Closed(format!("no {expected}")),
            FrameError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                HandshakeError::Timeout
            }
            FrameError::Io(e) => HandshakeError::Closed(e.to_string()),
            e @ (FrameError::TooLarge { .. } | FrameError::Decode(_)) => {
                HandshakeError::Rejected(e.to_string())
            }
        }
    }

    fn from_write(e: io::Error) -> HandshakeError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HandshakeError::Timeout,
            _ => HandshakeError::Closed(e.to_string()),
        }
    }
}

fn send(stream: &mut impl Write, frame: &PeerFrame) -> Result<(), HandshakeError> {
    let mut buf = Vec::new();
    encode_frame(frame, &mut buf);
    stream
        .write_all(&buf)
        .and_then(|()| stream.flush())
        .map_err(HandshakeError::from_write)
}

fn pick_proof(frame: PeerFrame) -> Option<Proof> {
    match frame {
        PeerFrame::Proof(proof) => Some(proof),
        _ => None,
    }
}

/// Reads the handshake's next frame, which must be the `what` that `pick`
/// takes out of it; any other frame is a one-line refusal.
fn receive<T>(
    stream: &mut impl Read,
    frame_bytes_max: u32,
    what: &str,
    pick: impl FnOnce(PeerFrame) -> Option<T>,
) -> Result<T, FrameOrRefusal> {
    let frame = read_frame::<PeerFrame>(stream, frame_bytes_max).map_err(FrameOrRefusal::Frame)?;
    let kind = frame.kind();
    pick(frame).ok_or_else(|| {
        FrameOrRefusal::Refused(HandshakeError::Rejected(format!(
            "expected a {what}, got {kind}"
        )))
    })
}

/// Why `receive` returned no frame: the stream failed (the caller decides
/// what an end of stream means at that step), or the peer sent another.
enum FrameOrRefusal {
    Frame(FrameError),
    Refused(HandshakeError),
}

impl FrameOrRefusal {
    /// The error, an end of stream included, as any step reports it.
    fn at(self, what: &str) -> HandshakeError {
        match self {
            FrameOrRefusal::Frame(e) => HandshakeError::from_frame(e, what),
            FrameOrRefusal::Refused(e) => e,
        }
    }
}

/// Why a proof is refused. A proof cannot tell which side holds the wrong
/// secret (or none), only that the two differ.
const WRONG_SECRET: &str = "authentication failed: its proof does not verify (a different cluster secret, or none where one is set)";

/// The connector's side. Returns once the acceptor has proven the secret;
/// the caller then sets its own timeouts back.
pub fn connect_handshake(
    stream: &mut (impl Read + Write),
    auth: &PeerAuth,
    me: NodeId,
    peer: NodeId,
    frame_bytes_max: u32,
) -> Result<(), HandshakeError> {
    connect_handshake_advertising(
        stream,
        auth,
        me,
        peer,
        Advertised::default(),
        frame_bytes_max,
    )
}

/// The addresses a connector announces in its hello (DESIGN.md 4.4, 8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Advertised {
    pub client_addr: Option<std::net::SocketAddr>,
    pub peer_addr: Option<std::net::SocketAddr>,
}

/// `connect_handshake`, announcing this node's client and peer addresses
/// in the hello.
pub fn connect_handshake_advertising(
    stream: &mut (impl Read + Write),
    auth: &PeerAuth,
    me: NodeId,
    peer: NodeId,
    advertised: Advertised,
    frame_bytes_max: u32,
) -> Result<(), HandshakeError> {
    let connector_nonce = fresh_nonce();
    send(
        stream,
        &PeerFrame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: auth.cluster_id.clone(),
            node_id: me,
            nonce: connector_nonce,
            client_addr: advertised.client_addr,
            peer_addr: advertised.peer_addr,
        }),
    )?;
    let challenge = receive(stream, frame_bytes_max, "challenge", |f| match f {
        PeerFrame::Challenge(challenge) => Some(challenge),
        _ => None,
    })
    .map_err(|e| e.at("challenge"))?;
    if challenge.node_id != peer {
        return Err(HandshakeError::Rejected(format!(
            "answers as node {}, expected node {peer}",
            challenge.node_id
        )));
    }
    let transcript = Transcript {
        cluster_id: &auth.cluster_id,
        connector: me,
        acceptor: peer,
        connector_nonce: &connector_nonce,
        acceptor_nonce: &challenge.nonce,
    };
    send(
        stream,
        &PeerFrame::Proof(auth.prove(Role::Connector, &transcript)),
    )?;
    let proof = receive(stream, frame_bytes_max, "proof", pick_proof).map_err(|e| match e {
        // The acceptor closes without a word when our proof fails; its own
        // log names the reason.
        FrameOrRefusal::Frame(FrameError::Eof) => HandshakeError::Closed(
            "refused our proof (is the cluster secret the same on both nodes?)".into(),
        ),
        e => e.at("proof"),
    })?;
    if !auth.verify(Role::Acceptor, &transcript, &proof) {
        return Err(HandshakeError::Rejected(WRONG_SECRET.into()));
    }
    Ok(())
}

/// The acceptor's side. `check_hello` refuses a hello for reasons of the
/// caller's (an unknown node id); version and cluster id are checked here.
/// Returns the authenticated peer's node id.
pub fn accept_handshake(
    stream: &mut (impl Read + Write),
    auth: &PeerAuth,
    me: NodeId,
    frame_bytes_max: u32,
    check_hello: impl FnOnce(&Hello) -> Result<(), String>,
) -> Result<NodeId, HandshakeError> {
    let hello = match read_frame::<PeerFrame>(stream, frame_bytes_max) {
        Ok(PeerFrame::Hello(hello)) => hello,
        Ok(other) => {
            return Err(HandshakeError::Rejected(format!(
                "no hello: the first frame is a {}",
                other.kind()
            )));
        }
        // A connection closed before any frame: a port probe, not a peer.
        Err(FrameError::Eof) => return Err(HandshakeError::Probe),
        Err(e) => return Err(HandshakeError::from_frame(e, "hello")),
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(HandshakeError::Rejected(format!(
            "protocol version {}, expected {PROTOCOL_VERSION}",
            hello.protocol_version
        )));
    }
    if hello.cluster_id != auth.cluster_id {
        return Err(HandshakeError::Rejected(format!(
            "wrong cluster id {:?} (expected {:?})",
            hello.cluster_id, auth.cluster_id
        )));
    }
    check_hello(&hello).map_err(HandshakeError::Rejected)?;
    let acceptor_nonce = fresh_nonce();
    send(
        stream,
        &PeerFrame::Challenge(Challenge {
            node_id: me,
            nonce: acceptor_nonce,
        }),
    )?;
    let proof = receive(stream, frame_bytes_max, "proof", pick_proof).map_err(|e| e.at("proof"))?;
    let transcript = Transcript {
        cluster_id: &auth.cluster_id,
        connector: hello.node_id,
        acceptor: me,
        connector_nonce: &hello.nonce,
        acceptor_nonce: &acceptor_nonce,
    };
    if !auth.verify(Role::Connector, &transcript, &proof) {
        return Err(HandshakeError::Rejected(format!(
            "node {} {WRONG_SECRET}",
            hello.node_id
        )));
    }
    send(
        stream,
        &PeerFrame::Proof(auth.prove(Role::Acceptor, &transcript)),
    )?;
    Ok(hello.node_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::thread;
    use std::time::Duration;

    const MAX: u32 = 1 << 20;

    fn auth(secret: Option<&str>) -> PeerAuth {
        PeerAuth {
            cluster_id: "c1".into(),
            secret: secret.map(Secret::new),
        }
    }

    /// A connected pair of sockets with short timeouts, so that no test
    /// can hang.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        for s in [&client, &server] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        (client, server)
    }

    /// Runs both sides with their own views of the secret.
    fn run(
        connector: PeerAuth,
        acceptor: PeerAuth,
    ) -> (Result<(), HandshakeError>, Result<NodeId, HandshakeError>) {
        let (mut c, mut a) = pair();
        let accepting = thread::spawn(move || {
            let result = accept_handshake(&mut a, &acceptor, NodeId(2), MAX, |_| Ok(()));
            drop(a); // What the listener does on failure: close.
            result
        });
        let connected = connect_handshake(&mut c, &connector, NodeId(1), NodeId(2), MAX);
        drop(c);
        (connected, accepting.join().unwrap())
    }

    fn transcript<'a>(c: &'a Nonce, a: &'a Nonce) -> Transcript<'a> {
        Transcript {
            cluster_id: "c1",
            connector: NodeId(1),
            acceptor: NodeId(2),
            connector_nonce: c,
            acceptor_nonce: a,
        }
    }

    #[test]
    fn same_secret_authenticates_both_ways() {
        let (c, a) = run(auth(Some("k")), auth(Some("k")));
        c.unwrap();
        assert_eq!(a.unwrap(), NodeId(1));
    }

    #[test]
    fn no_secret_on_both_sides_still_shakes_hands() {
        let (c, a) = run(auth(None), auth(None));
        c.unwrap();
        assert_eq!(a.unwrap(), NodeId(1));
    }

    #[test]
    fn a_wrong_secret_is_refused_by_the_acceptor_with_the_reason() {
        for (connector, acceptor) in [
            (Some("wrong"), Some("k")),
            (None, Some("k")),
            (Some("k"), None),
        ] {
            let (c, a) = run(auth(connector), auth(acceptor));
            let a = a.unwrap_err();
            assert!(
                a.to_string().contains("authentication failed"),
                "{connector:?} {acceptor:?}: {a}"
            );
            assert!(
                matches!(c, Err(HandshakeError::Closed(_))),
                "the connector must not count as connected: {c:?}"
            );
        }
    }

    /// The acceptor's proof, sent back as the connector's, fails: the role
    /// is part of the MAC.
    #[test]
    fn a_reflected_proof_does_not_verify() {
        let auth = auth(Some("k"));
        let (nc, na) = (fresh_nonce(), fresh_nonce());
        let t = transcript(&nc, &na);
        let acceptor_proof = auth.prove(Role::Acceptor, &t);
        assert!(auth.verify(Role::Acceptor, &t, &acceptor_proof));
        assert!(!auth.verify(Role::Connector, &t, &acceptor_proof));
        // Nor does a proof with the ids swapped (the same two nodes talking
        // the other way).
        let swapped = Transcript {
            connector: NodeId(2),
            acceptor: NodeId(1),
            ..t
        };
        assert!(!auth.verify(Role::Connector, &t, &auth.prove(Role::Connector, &swapped)));
    }

    /// A listener that echoes the connector's own nonce as its challenge
    /// and reflects the connector's proof gets nothing past the connector.
    #[test]
    fn a_reflecting_acceptor_is_refused_by_the_connector() {
        let (mut c, mut a) = pair();
        let reflector = thread::spawn(move || {
            let Ok(PeerFrame::Hello(hello)) = read_frame::<PeerFrame>(&mut a, MAX) else {
                panic!("no hello");
            };
            send(
                &mut a,
                &PeerFrame::Challenge(Challenge {
                    node_id: NodeId(2),
                    nonce: hello.nonce,
                }),
            )
            .unwrap();
            let Ok(PeerFrame::Proof(proof)) = read_frame::<PeerFrame>(&mut a, MAX) else {
                panic!("no proof");
            };
            send(&mut a, &PeerFrame::Proof(proof)).unwrap();
        });
        let err =
            connect_handshake(&mut c, &auth(Some("k")), NodeId(1), NodeId(2), MAX).unwrap_err();
        assert!(err.to_string().contains("authentication failed"), "{err}");
        reflector.join().unwrap();
    }

    /// A replayed proof from an earlier connection fails: the acceptor's
    /// nonce is new on every connection.
    #[test]
    fn a_replayed_proof_does_not_verify() {
        let auth = auth(Some("k"));
        let nc = fresh_nonce();
        let (first, second) = (fresh_nonce(), fresh_nonce());
        let old = auth.prove(Role::Connector, &transcript(&nc, &first));
        assert!(!auth.verify(Role::Connector, &transcript(&nc, &second), &old));
    }

    #[test]
    fn garbage_and_truncated_handshakes_fail_cleanly() {
        let cases: [(&str, Vec<u8>); 3] = [
            ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            ("truncated hello", {
                let mut buf = Vec::new();
                encode_frame(
                    &PeerFrame::Hello(Hello {
                        protocol_version: PROTOCOL_VERSION,
                        cluster_id: "c1".into(),
                        node_id: NodeId(1),
                        nonce: [7; NONCE_BYTES],
                        client_addr: None,
                        peer_addr: None,
                    }),
                    &mut buf,
                );
                buf.truncate(buf.len() - 5);
                buf
            }),
            ("nothing", Vec::new()),
        ];
        for (case, bytes) in cases {
            let (mut c, mut a) = pair();
            c.write_all(&bytes).unwrap();
            drop(c);
            let err =
                accept_handshake(&mut a, &auth(Some("k")), NodeId(2), MAX, |_| Ok(())).unwrap_err();
            match case {
                "garbage" => assert!(matches!(err, HandshakeError::Rejected(_)), "{err}"),
                "truncated hello" => assert!(matches!(err, HandshakeError::Closed(_)), "{err}"),
                _ => assert!(matches!(err, HandshakeError::Probe), "{err}"),
            }
        }
    }

    /// A connector that stops after its hello is timed out, not waited for.
    #[test]
    fn a_silent_connector_times_out() {
        let (mut c, mut a) = pair();
        a.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = Vec::new();
        encode_frame(
            &PeerFrame::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                cluster_id: "c1".into(),
                node_id: NodeId(1),
                nonce: fresh_nonce(),
                client_addr: None,
                peer_addr: None,
            }),
            &mut buf,
        );
        c.write_all(&buf).unwrap();
        let err =
            accept_handshake(&mut a, &auth(Some("k")), NodeId(2), MAX, |_| Ok(())).unwrap_err();
        assert!(matches!(err, HandshakeError::Timeout), "{err}");
    }

    #[test]
    fn a_hello_refused_by_the_caller_gets_no_challenge() {
        let (mut c, mut a) = pair();
        let accepting = thread::spawn(move || {
            accept_handshake(&mut a, &auth(Some("k")), NodeId(2), MAX, |h| {
                Err(format!("unknown node {}", h.node_id))
            })
        });
        let c_result = connect_handshake(&mut c, &auth(Some("k")), NodeId(9), NodeId(2), MAX);
        let err = accepting.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "unknown node 9");
        assert!(c_result.is_err());
    }
}
