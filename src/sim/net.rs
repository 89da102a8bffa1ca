//! The simulated network and fault model: latency, loss, duplication,
//! reordering (from random latency), partitions; all from one seeded RNG.

use crate::core::{Message, MessageBody, NodeId};
use crate::settings::test_delay::ZoneLayout;
use rand::Rng;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub struct NetConfig {
    /// One-way latency, drawn uniformly per message: reordering comes free.
    /// With `zones`, the jitter on top of the zone delay.
    pub latency_us_min: u64,
    pub latency_us_max: u64,
    /// Availability zones (issue 13): the same layout the real transport
    /// emulates with `SRAFT_TEST_DELAY_US_BY_PEER`; each message takes its
    /// link's zone delay plus the drawn latency.
    pub zones: Option<ZoneLayout>,
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
            zones: None,
            loss: 0.0,
            duplicate: 0.0,
            bytes_per_us: 1_250,
        }
    }
}

impl NetConfig {
    /// Nodes in `layout`'s zones, with up to `jitter_us` on top of each
    /// zone delay.
    pub fn zones(layout: ZoneLayout, jitter_us: u64) -> NetConfig {
        NetConfig {
            latency_us_min: 0,
            latency_us_max: jitter_us,
            zones: Some(layout),
            ..NetConfig::lan()
        }
    }

    /// One message's one-way latency from `from` to `to`.
    pub fn draw_latency_us(&self, rng: &mut impl Rng, from: NodeId, to: NodeId) -> u64 {
        let drawn = rng.random_range(self.latency_us_min..=self.latency_us_max);
        let zone_us = self.zones.as_ref().map_or(0, |z| z.delay_us(from, to));
        zone_us + drawn
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
