//! TEST-ONLY network emulation on one machine (issue 13): a one-way delay
//! per peer, so that five processes on loopback can stand for five
//! machines in three availability zones (the kernel here has no netem).
//! Off unless the environment sets it; never read from a config file.
//!
//! ```text
//! SRAFT_TEST_DELAY_US_BY_PEER="1:100,2:1500,3:1500,4:1500" sraft --node-id 0 ...
//! ```
//!
//! Each node gets its own row: the delay it adds to what it sends to each
//! peer. [`ZoneLayout`] makes the rows from a zone per node, and the
//! simulator uses the same layout (`sim::net::NetConfig::zones`).

use crate::core::NodeId;
use std::collections::BTreeMap;

/// The environment variable that sets the per-peer delay.
pub const ENV_DELAY_US_BY_PEER: &str = "SRAFT_TEST_DELAY_US_BY_PEER";

/// Parses `"1:100,2:1500"` (peer id, one-way delay in microseconds).
pub fn parse_delay_us_by_peer(text: &str) -> Result<BTreeMap<NodeId, u64>, String> {
    let mut out = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (peer, delay) = item
            .split_once(':')
            .ok_or_else(|| format!("{ENV_DELAY_US_BY_PEER}: `{item}` is not PEER:MICROSECONDS"))?;
        let peer: u64 = peer
            .trim()
            .parse()
            .map_err(|_| format!("{ENV_DELAY_US_BY_PEER}: bad peer id in `{item}`"))?;
        let delay: u64 = delay
            .trim()
            .parse()
            .map_err(|_| format!("{ENV_DELAY_US_BY_PEER}: bad delay in `{item}`"))?;
        if out.insert(NodeId(peer), delay).is_some() {
            return Err(format!(
                "{ENV_DELAY_US_BY_PEER}: peer {peer} is given twice"
            ));
        }
    }
    Ok(out)
}

/// Nodes in availability zones: `zones[id]` is node id's zone; a message
/// within a zone takes `same_zone_delay_us`, across zones
/// `cross_zone_delay_us` (one way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneLayout {
    pub zones: Vec<u32>,
    pub same_zone_delay_us: u64,
    pub cross_zone_delay_us: u64,
}

impl ZoneLayout {
    /// Issue 13's example: five nodes in three zones, 0.1 ms within a
    /// zone, 1.5 ms across (EC2 inside one region).
    pub fn three_zones() -> ZoneLayout {
        ZoneLayout {
            zones: vec![0, 0, 1, 1, 2],
            same_zone_delay_us: 100,
            cross_zone_delay_us: 1_500,
        }
    }

    /// Parses `"0,0,1,1,2"`.
    pub fn parse_zones(text: &str) -> Result<Vec<u32>, String> {
        text.split(',')
            .map(|z| {
                z.trim()
                    .parse()
                    .map_err(|_| format!("bad zone `{z}` in `{text}`"))
            })
            .collect()
    }

    /// One-way delay from `from` to `to`.
    pub fn delay_us(&self, from: NodeId, to: NodeId) -> u64 {
        if self.zones.get(from.0 as usize) == self.zones.get(to.0 as usize) {
            self.same_zone_delay_us
        } else {
            self.cross_zone_delay_us
        }
    }

    /// Node `me`'s row, as `SRAFT_TEST_DELAY_US_BY_PEER` spells it.
    pub fn env_value(&self, me: NodeId) -> String {
        (0..self.zones.len() as u64)
            .map(NodeId)
            .filter(|peer| *peer != me)
            .map(|peer| format!("{}:{}", peer.0, self.delay_us(me, peer)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_layout_row_parses_back_to_its_delays() {
        let layout = ZoneLayout::three_zones();
        let row = layout.env_value(NodeId(0));
        assert_eq!(row, "1:100,2:1500,3:1500,4:1500");
        let parsed = parse_delay_us_by_peer(&row).unwrap();
        for (peer, delay) in parsed {
            assert_eq!(delay, layout.delay_us(NodeId(0), peer), "peer {peer}");
        }
    }

    #[test]
    fn bad_rows_are_errors_naming_the_item() {
        for (text, part) in [
            ("1=100", "`1=100`"),
            ("x:100", "bad peer id"),
            ("1:fast", "bad delay"),
            ("1:1,1:2", "given twice"),
        ] {
            let e = parse_delay_us_by_peer(text).unwrap_err();
            assert!(e.contains(part), "{text}: {e}");
            assert!(e.contains(ENV_DELAY_US_BY_PEER), "{e}");
        }
        assert!(parse_delay_us_by_peer("").unwrap().is_empty());
    }

    #[test]
    fn zones_parse() {
        assert_eq!(ZoneLayout::parse_zones("0, 0,1").unwrap(), vec![0, 0, 1]);
        assert!(ZoneLayout::parse_zones("0,a").is_err());
    }
}
