//! Peer wire format: a 4-byte big-endian payload length, then a postcard
//! payload (DESIGN.md 2.6).
//!
//! Every peer connection opens with the handshake of `auth.rs` (a
//! [`Hello`], a challenge, two proofs); every later frame carries one
//! [`Message`], or a forwarded client request or its reply (DESIGN.md 4.4).
//! All travel as a [`PeerFrame`] so that a reader can tell a
//! misbehaving peer (a message before the handshake, a second hello) from a
//! decoding error.

use super::auth::{Challenge, Nonce, Proof};
use crate::core::{Message, NodeId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;

/// Bumped whenever `PeerFrame` or `Message` change incompatibly: a node
/// refuses a connection whose hello names another version, instead of
/// misreading its frames. 3: the hello carries a nonce, and the
/// challenge-response of `auth.rs` follows it. 4: InstallSnapshot and its
/// reply (snapshot transfer, DESIGN.md 5). 5: the hello carries the
/// node's client address; client requests forwarded to the leader and their
/// replies (`Forward`, `ForwardReply`, DESIGN.md 4.4); a heartbeat reply
/// tells a lost log (`log_lost`). 6: configurations with learners and
/// member addresses, in `SnapshotMeta` and in log entries (DESIGN.md 8).
/// 7: the hello carries the node's peer address, so that a node started
/// with `--join` can answer a leader it was never told of. 8: `HandOff`, a
/// crash-path candidate behind the log hands the election on (DESIGN.md 3.5).
pub const PROTOCOL_VERSION: u32 = 8;

/// Bytes of the length prefix in front of every payload.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Most of a payload buffer allocated before its bytes arrive.
const PAYLOAD_PREALLOCATE_BYTES_MAX: usize = 64 << 10;

/// The first frame on a peer connection: who is calling, and in which cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub cluster_id: String,
    pub node_id: NodeId,
    /// The connector's fresh nonce, covered by both proofs.
    pub nonce: Nonce,
    /// Where the connector serves RESP clients, as it advertises it: the
    /// acceptor records it (once the handshake passes) for `INFO
    /// leader_addr` and `sraft status`, so that per-node client ports need
    /// not be guessed from the peer port. None: the connector serves no
    /// clients (an embedded node, a test).
    pub client_addr: Option<SocketAddr>,
    /// Where the connector accepts peer connections, as it advertises it:
    /// the acceptor connects back there when it does not know the
    /// connector (a node started with `--join` learns its leader this
    /// way, DESIGN.md 8). None: not announced; the acceptor refuses a
    /// connector it does not know.
    pub peer_addr: Option<SocketAddr>,
}

/// A client request a follower relays to the leader (DESIGN.md 4.4).
// serde_bytes (here and in `ForwardOutcome`): postcard writes the same
// bytes as for a sequence of u8, so the protocol is unchanged, but copies
// them in one go. Per byte, a follower's sender thread spent more CPU on
// forwarding 900 KiB values than the leader's Raft thread could get.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// The exact log command the follower built, its client id and
    /// sequence number inside: a retry after a lost reply or a leader
    /// change is deduplicated by the session table, never applied twice.
    Write {
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
    },
    /// A read command as the client sent it (name and arguments). The
    /// leader serves it through its own ReadIndex path and never forwards
    /// it again.
    Read {
        #[serde(with = "byte_strings")]
        args: Vec<Vec<u8>>,
    },
}

/// `serde(with)` for a list of byte strings: each one as `serde_bytes`
/// writes it (the encoding of a sequence of u8 in postcard).
mod byte_strings {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub fn serialize<S: Serializer>(strings: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(strings.iter().map(|s| Bytes::new(s)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let strings = Vec::<ByteBuf>::deserialize(deserializer)?;
        Ok(strings.into_iter().map(ByteBuf::into_vec).collect())
    }
}

/// Most bytes a varint (request id, length prefix) takes in postcard.
const VARINT_BYTES_MAX: usize = 10;

/// The frame's tag, its request id and the request's or outcome's tag.
const FORWARD_HEADER_BYTES_MAX: usize = 1 + VARINT_BYTES_MAX + 1;

impl ForwardRequest {
    /// Bytes of the request's payload, to pick its lane.
    pub fn payload_bytes(&self) -> usize {
        match self {
            ForwardRequest::Write { command } => command.len(),
            ForwardRequest::Read { args } => args.iter().map(Vec::len).sum(),
        }
    }

    /// An upper bound of the `Forward` frame's payload carrying this
    /// request, to hold against `frame_bytes_max` before sending it.
    pub fn frame_bytes_bound(&self) -> usize {
        let body = match self {
            ForwardRequest::Write { command } => VARINT_BYTES_MAX + command.len(),
            ForwardRequest::Read { args } => {
                VARINT_BYTES_MAX
                    + args
                        .iter()
                        .map(|a| VARINT_BYTES_MAX + a.len())
                        .sum::<usize>()
            }
        };
        FORWARD_HEADER_BYTES_MAX + body
    }
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardOutcome {
    /// The client's answer, RESP-encoded once on the leader: the follower
    /// relays these bytes as they are.
    Reply(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Not the leader (any more): nothing was proposed or read. `leader`
    /// is its best guess of who is.
    NotLeader { leader: Option<NodeId> },
    /// The leader lost track of the write (overwritten by a new leader, or
    /// a snapshot installed over it): it may or may not be applied, and
    /// proposing it again is safe (the session deduplicates it).
    Retry,
    /// Refused before it was proposed (busy, too large, too many
    /// uncommitted bytes): no effect. The RESP error for the client.
    Refused(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl ForwardOutcome {
    /// Bytes of the outcome's payload, to pick its lane.
    pub fn payload_bytes(&self) -> usize {
        match self {
            ForwardOutcome::Reply(bytes) | ForwardOutcome::Refused(bytes) => bytes.len(),
            ForwardOutcome::NotLeader { .. } | ForwardOutcome::Retry => 0,
        }
    }

    /// An upper bound of the `ForwardReply` frame's payload carrying this
    /// outcome, to hold against `frame_bytes_max` before sending it.
    pub fn frame_bytes_bound(&self) -> usize {
        FORWARD_HEADER_BYTES_MAX + 1 + VARINT_BYTES_MAX + self.payload_bytes()
    }
}

/// Everything a peer connection carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerFrame {
    Hello(Hello),
    Message(Message),
    /// The acceptor's answer to a hello.
    Challenge(Challenge),
    /// Either side's proof of the cluster secret.
    Proof(Proof),
    /// A follower's client request for the leader, with an id of the
    /// follower's choosing that the reply carries back; many may be in
    /// flight on one connection.
    Forward {
        request_id: u64,
        request: ForwardRequest,
    },
    /// The leader's answer to `Forward` `request_id`. It travels on the
    /// leader's own outbound connection to the follower: each connection
    /// carries frames one way only (the connector writes, the acceptor
    /// reads), which the crash fast path relies on (DESIGN.md 3.5).
    ForwardReply {
        request_id: u64,
        outcome: ForwardOutcome,
    },
}

impl PeerFrame {
    /// The frame's name for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerFrame::Hello(_) => "hello",
            PeerFrame::Message(_) => "message",
            PeerFrame::Challenge(_) => "challenge",
            PeerFrame::Proof(_) => "proof",
            PeerFrame::Forward { .. } => "forward",
            PeerFrame::ForwardReply { .. } => "forward reply",
        }
    }
}

/// Why a frame could not be read. Every variant but `Eof` closes the
/// connection it came from, and only that connection.
#[derive(Debug)]
pub enum FrameError {
    /// The socket failed, or closed in the middle of a frame.
    Io(io::Error),
    /// The peer closed the connection cleanly, at a frame boundary.
    Eof,
    /// The length prefix exceeds the configured maximum: the payload is not
    /// read (a garbage prefix must not make us allocate 4 GiB).
    TooLarge { len: u32, max: u32 },
    /// The payload is not a postcard encoding of the expected type.
    Decode(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::Eof => write!(f, "connection closed"),
            FrameError::TooLarge { len, max } => write!(f, "frame too large {len} > {max}"),
            FrameError::Decode(e) => write!(f, "undecodable frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            FrameError::Eof | FrameError::TooLarge { .. } | FrameError::Decode(_) => None,
        }
    }
}

/// Appends one frame (length prefix and payload) to `buf` and returns the
/// payload length, so that the caller can hold it against its own maximum.
///
/// Panics if `value` cannot be serialized: postcard only fails on types that
/// do not know their sequence lengths up front, and the wire types are plain
/// derives, so a failure is a bug in this crate, not bad input.
pub fn encode_frame<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    let buf = postcard::to_io(value, buf).expect("wire types always serialize");
    let payload_bytes = buf.len() - start - FRAME_HEADER_BYTES;
    let len = u32::try_from(payload_bytes)
        .unwrap_or_else(|_| panic!("frame payload of {payload_bytes} bytes exceeds u32"));
    buf[start..start + FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    payload_bytes
}

/// Reads one frame and decodes its payload as a `T`.
///
/// Returns `Eof` only when the stream ends before the first byte of a frame;
/// an end inside a frame is an `Io(UnexpectedEof)`, since the peer died (or
/// lied) mid-message. A payload with trailing bytes is a `Decode` error: the
/// length prefix and the encoding must agree exactly.
pub fn read_frame<T: DeserializeOwned>(
    r: &mut impl Read,
    frame_bytes_max: u32,
) -> Result<T, FrameError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    if !read_header(r, &mut header)? {
        return Err(FrameError::Eof);
    }
    let len = u32::from_be_bytes(header);
    if len > frame_bytes_max {
        return Err(FrameError::TooLarge {
            len,
            max: frame_bytes_max,
        });
    }
    // Grown as bytes arrive rather than allocated from the prefix up front:
    // a peer that announces 16 MiB and sends nothing costs nothing.
    let mut payload = Vec::with_capacity((len as usize).min(PAYLOAD_PREALLOCATE_BYTES_MAX));
    r.take(u64::from(len))
        .read_to_end(&mut payload)
        .map_err(FrameError::Io)?;
    if payload.len() < len as usize {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "stream ended after {} of {len} payload bytes",
                payload.len()
            ),
        )));
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(&payload).map_err(|e| FrameError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the payload",
            rest.len()
        )));
    }
    Ok(value)
}

/// Fills `header`; `Ok(false)` if the stream ended before its first byte.
fn read_header(
    r: &mut impl Read,
    header: &mut [u8; FRAME_HEADER_BYTES],
) -> Result<bool, FrameError> {
    let mut filled = 0;
    while filled < header.len() {
        match r.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(FrameError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended after {filled} of {FRAME_HEADER_BYTES} header bytes"),
                )));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{MessageBody, Term};
    use proptest::prelude::*;

    const MAX: u32 = 1 << 20;

    fn message() -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(7),
            body: MessageBody::HeartbeatReply {
                sent_at_us: 123,
                read_round: 4,
                log_lost: None,
            },
        }
    }

    fn encoded(frame: &PeerFrame) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_frame(frame, &mut buf);
        buf
    }

    #[test]
    fn forwarded_bytes_encode_as_the_plain_sequences_of_u8_did() {
        // The layout protocol 8 was released with (derived, no serde_bytes):
        // nodes of both builds must read each other's frames.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum OldRequest {
            Write { command: Vec<u8> },
            Read { args: Vec<Vec<u8>> },
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum OldOutcome {
            Reply(Vec<u8>),
            NotLeader { leader: Option<NodeId> },
            Retry,
            Refused(Vec<u8>),
        }
        let bytes: Vec<u8> = (0..=255).collect();
        let args = vec![b"MGET".to_vec(), Vec::new(), bytes.clone()];
        let pairs = [
            (
                postcard::to_allocvec(&ForwardRequest::Write {
                    command: bytes.clone(),
                }),
                postcard::to_allocvec(&OldRequest::Write {
                    command: bytes.clone(),
                }),
            ),
            (
                postcard::to_allocvec(&ForwardRequest::Read { args: args.clone() }),
                postcard::to_allocvec(&OldRequest::Read { args: args.clone() }),
            ),
            (
                postcard::to_allocvec(&ForwardOutcome::Reply(bytes.clone())),
                postcard::to_allocvec(&OldOutcome::Reply(bytes.clone())),
            ),
            (
                postcard::to_allocvec(&ForwardOutcome::Refused(bytes.clone())),
                postcard::to_allocvec(&OldOutcome::Refused(bytes.clone())),
            ),
        ];
        for (new, old) in pairs {
            assert_eq!(new.unwrap(), old.unwrap());
        }
        let old = postcard::to_allocvec(&OldRequest::Read { args: args.clone() }).unwrap();
        let back: ForwardRequest = postcard::from_bytes(&old).unwrap();
        assert_eq!(back, ForwardRequest::Read { args });
        let old = postcard::to_allocvec(&OldOutcome::Reply(bytes.clone())).unwrap();
        let back: ForwardOutcome = postcard::from_bytes(&old).unwrap();
        assert_eq!(back, ForwardOutcome::Reply(bytes));
    }

    #[test]
    fn frames_round_trip_back_to_back() {
        let hello = PeerFrame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: "c1".into(),
            node_id: NodeId(3),
            nonce: [5; 32],
            client_addr: Some("127.0.0.3:16001".parse().unwrap()),
            peer_addr: Some("127.0.0.3:15001".parse().unwrap()),
        });
        let msg = PeerFrame::Message(message());
        let mut buf = Vec::new();
        let hello_len = encode_frame(&hello, &mut buf);
        encode_frame(&msg, &mut buf);
        assert_eq!(
            u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
            hello_len
        );
        let mut r = &buf[..];
        assert_eq!(read_frame::<PeerFrame>(&mut r, MAX).unwrap(), hello);
        assert_eq!(read_frame::<PeerFrame>(&mut r, MAX).unwrap(), msg);
        assert!(matches!(
            read_frame::<PeerFrame>(&mut r, MAX),
            Err(FrameError::Eof)
        ));
    }

    #[test]
    fn empty_stream_is_a_clean_eof() {
        let mut r: &[u8] = &[];
        assert!(matches!(
            read_frame::<PeerFrame>(&mut r, MAX),
            Err(FrameError::Eof)
        ));
    }

    #[test]
    fn stream_ending_inside_the_header_is_an_io_error() {
        let mut r: &[u8] = &[0, 0];
        let err = read_frame::<PeerFrame>(&mut r, MAX).unwrap_err();
        assert!(
            matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err}"
        );
    }

    #[test]
    fn stream_ending_inside_the_payload_is_an_io_error() {
        let buf = encoded(&PeerFrame::Message(message()));
        let mut r = &buf[..buf.len() - 1];
        let err = read_frame::<PeerFrame>(&mut r, MAX).unwrap_err();
        assert!(
            matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err}"
        );
    }

    #[test]
    fn length_above_the_maximum_is_refused_before_reading_the_payload() {
        let mut r: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let err = read_frame::<PeerFrame>(&mut r, 16 << 20).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: u32::MAX,
                max: 16_777_216
            }
        ));
        assert_eq!(err.to_string(), "frame too large 4294967295 > 16777216");
    }

    #[test]
    fn forward_frames_round_trip_back_to_back() {
        let frames = [
            PeerFrame::Forward {
                request_id: 1,
                request: ForwardRequest::Write {
                    command: vec![0, 1, 2, 255],
                },
            },
            PeerFrame::Forward {
                request_id: u64::MAX,
                request: ForwardRequest::Read {
                    args: vec![b"GET".to_vec(), b"k".to_vec()],
                },
            },
            PeerFrame::ForwardReply {
                request_id: 1,
                outcome: ForwardOutcome::Reply(b"+OK\r\n".to_vec()),
            },
            PeerFrame::ForwardReply {
                request_id: 2,
                outcome: ForwardOutcome::NotLeader {
                    leader: Some(NodeId(2)),
                },
            },
            PeerFrame::ForwardReply {
                request_id: 3,
                outcome: ForwardOutcome::NotLeader { leader: None },
            },
            PeerFrame::ForwardReply {
                request_id: 4,
                outcome: ForwardOutcome::Retry,
            },
            PeerFrame::ForwardReply {
                request_id: 5,
                outcome: ForwardOutcome::Refused(b"-ERR busy\r\n".to_vec()),
            },
        ];
        let mut buf = Vec::new();
        for frame in &frames {
            encode_frame(frame, &mut buf);
        }
        let mut r = &buf[..];
        for frame in &frames {
            assert_eq!(&read_frame::<PeerFrame>(&mut r, MAX).unwrap(), frame);
        }
        assert!(matches!(
            read_frame::<PeerFrame>(&mut r, MAX),
            Err(FrameError::Eof)
        ));
    }

    #[test]
    fn forward_frame_bounds_are_upper_bounds_of_the_encoding() {
        let big = vec![7u8; 70_000];
        let requests = [
            ForwardRequest::Write {
                command: big.clone(),
            },
            ForwardRequest::Read {
                args: vec![b"MGET".to_vec(), big.clone(), vec![1; 300]],
            },
        ];
        for request in requests {
            let bound = request.frame_bytes_bound();
            let frame = PeerFrame::Forward {
                request_id: u64::MAX,
                request,
            };
            let bytes = encode_frame(&frame, &mut Vec::new());
            assert!(bytes <= bound, "encoded={bytes} bound={bound}");
        }
        for outcome in [
            ForwardOutcome::Reply(big.clone()),
            ForwardOutcome::Refused(big),
            ForwardOutcome::NotLeader {
                leader: Some(NodeId(u64::MAX)),
            },
        ] {
            let bound = outcome.frame_bytes_bound();
            let frame = PeerFrame::ForwardReply {
                request_id: u64::MAX,
                outcome,
            };
            let bytes = encode_frame(&frame, &mut Vec::new());
            assert!(bytes <= bound, "encoded={bytes} bound={bound}");
        }
    }

    #[test]
    fn a_truncated_forward_is_refused() {
        let frame = PeerFrame::Forward {
            request_id: 7,
            request: ForwardRequest::Write {
                command: vec![9; 100],
            },
        };
        let mut buf = encoded(&frame);
        // Claim a shorter payload than the encoding needs: the decoder must
        // refuse it, not read past the frame.
        buf.truncate(FRAME_HEADER_BYTES + 20);
        let len = (buf.len() - FRAME_HEADER_BYTES) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let err = read_frame::<PeerFrame>(&mut &buf[..], MAX).unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err}");
    }

    #[test]
    fn an_unknown_forward_outcome_is_refused() {
        // ForwardReply is variant 5; outcome variant 9 does not exist.
        let mut r: &[u8] = &[0, 0, 0, 3, 5, 1, 9];
        let err = read_frame::<PeerFrame>(&mut r, MAX).unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err}");
    }

    #[test]
    fn garbage_payload_is_a_decode_error() {
        // Variant index 9 does not exist in PeerFrame.
        let mut r: &[u8] = &[0, 0, 0, 2, 9, 9];
        let err = read_frame::<PeerFrame>(&mut r, MAX).unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err}");
        assert!(err.to_string().starts_with("undecodable frame"), "{err}");
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_a_decode_error() {
        let mut buf = encoded(&PeerFrame::Message(message()));
        buf.push(0);
        let len = (buf.len() - FRAME_HEADER_BYTES) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let err = read_frame::<PeerFrame>(&mut &buf[..], MAX).unwrap_err();
        assert!(matches!(err, FrameError::Decode(_)), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut r = &bytes[..];
            // Read until the first error: every outcome is a value or an error.
            while read_frame::<PeerFrame>(&mut r, 256).is_ok() {}
        }

        #[test]
        fn arbitrary_payload_behind_a_valid_length_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut buf = (payload.len() as u32).to_be_bytes().to_vec();
            buf.extend_from_slice(&payload);
            let _ = read_frame::<PeerFrame>(&mut &buf[..], MAX);
        }
    }
}
