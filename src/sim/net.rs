//! The simulated network and fault model: latency, loss, duplication,
//! reordering (from random latency), partitions; all from one seeded RNG.

use crate::core::{Message, MessageBody, NodeId};
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct NetConfig {
    /// One-way latency, drawn uniformly per message: reordering comes free.
    pub latency_us_min: u64,
    pub latency_us_max: u64,
    pub loss: f64,
    pub duplicate: f64,
    /// Link bandwidth: a message takes its size over this to send, and
    /// delays the messages queued behind it on the same link.
    pub bytes_per_us: u64,
}

impl NetConfig {
    /// A LAN inside one availability zone: RTT about 0.3 ms with jitter.
    pub fn lan() -> NetConfig {
        NetConfig {
            latency_us_min: 100,
            latency_us_max: 200,
            loss: 0.0,
            duplicate: 0.0,
            bytes_per_us: 1_250,
        }
    }
}

/// A message's size on the wire, roughly: a header plus its entries.
pub fn message_bytes(msg: &Message) -> u64 {
    let entries = match &msg.body {
        MessageBody::Append { entries, .. } => entries.iter().map(|e| e.size_bytes()).sum(),
        _ => 0,
    };
    64 + entries as u64
}

#[derive(Default, Clone, Debug)]
pub struct Partitions {
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
}

impl Partitions {
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Cuts every link between `side` and the rest, both ways.
    pub fn split(&mut self, side: &[NodeId], all: &[NodeId]) {
        for a in side {
            for b in all.iter().filter(|b| !side.contains(b)) {
                self.blocked.insert((*a, *b));
                self.blocked.insert((*b, *a));
            }
        }
    }

    /// One direction only: `from` can no longer reach `to`.
    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    pub fn is_empty(&self) -> bool {
        self.blocked.is_empty()
    }
}
