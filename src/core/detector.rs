//! The primary sub-leader's failure detector (DESIGN.md 3.3, issue 13): a
//! Jacobson/Karels estimate (RFC 6298's weights) of the gaps between the
//! heartbeats of the current leader, from which the primary's timeout is
//! its floor plus the observed jitter. Pure arithmetic on the times the
//! core is handed; nothing here decides an election, it only moves the
//! primary's deadline within [primary_timeout_ms_min, primary_timeout_ms_max].

/// Deviations added above the floor, as in RFC 6298's RTO = SRTT + 4 RTTVAR.
const DEVIATIONS: u64 = 4;

/// The deviation falls by 1/DECAY of the difference per sample, where
/// RFC 6298 uses 1/4 both ways. Heartbeats come 100 times a second, not
/// once per RTT: with 1/4 a 50 ms stall of a loaded host was forgotten
/// within 0.2 s, and the next stall a few seconds later fired the primary
/// again (EXPERIMENTS.md 10, the soak). Rising fast and falling over a few
/// seconds keeps the timeout up for as long as the host stays jittery.
const DECAY: u64 = 256;

/// Heartbeat inter-arrival statistics for one (term, leader).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatGaps {
    /// When the last heartbeat of this leader arrived.
    last_us: Option<u64>,
    /// Smoothed gap and its mean deviation; None until the first gap.
    smoothed: Option<(u64, u64)>,
}

impl HeartbeatGaps {
    /// A heartbeat arrived at `now_us`; the leader sends one every
    /// `interval_us`. A heartbeat sooner than half an interval after the
    /// last one counted is an extra round for ReadIndex (DESIGN.md 2.5),
    /// not the periodic one: it is not a sample, or reads would shrink the
    /// mean and inflate the deviation.
    pub fn on_heartbeat(&mut self, now_us: u64, interval_us: u64) {
        if let Some(last) = self.last_us {
            let gap = now_us.saturating_sub(last);
            if gap < interval_us / 2 {
                return;
            }
            self.smoothed = Some(match self.smoothed {
                // The first sample: no deviation seen yet.
                None => (gap, 0),
                // RFC 6298 2.3 for a rise: dev = 3/4 dev + 1/4 |mean - gap|;
                // a fall is slower (DECAY). Then mean = 7/8 mean + 1/8 gap.
                Some((mean, dev)) => {
                    let err = mean.abs_diff(gap);
                    let dev = if err >= dev {
                        (3 * dev + err) / 4
                    } else {
                        dev - (dev - err).div_ceil(DECAY)
                    };
                    ((7 * mean + gap) / 8, dev)
                }
            });
        }
        self.last_us = Some(now_us);
    }

    /// A new leader or term: its first heartbeat is no gap after the last
    /// leader's. The statistics stay: the jitter is the host's and the
    /// network's more than any one leader's.
    pub fn new_leader(&mut self) {
        self.last_us = None;
    }

    /// The primary's timeout: the floor, plus 4 deviations of the gap, plus
    /// how much later than `interval_us` heartbeats arrive on average (a
    /// loaded host that runs the leader's timer late), capped at `max_us`.
    /// Before any gap was seen: the cap, the safe side.
    pub fn timeout_us(&self, interval_us: u64, min_us: u64, max_us: u64) -> u64 {
        let Some((mean, dev)) = self.smoothed else {
            return max_us;
        };
        let late = mean.saturating_sub(interval_us);
        min_us
            .saturating_add(DEVIATIONS * dev)
            .saturating_add(late)
            .clamp(min_us, max_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: u64 = 10_000;
    const MIN: u64 = 40_000;
    const MAX: u64 = 80_000;

    fn after(gaps: &[u64]) -> HeartbeatGaps {
        let mut g = HeartbeatGaps::default();
        let mut t = 1_000_000;
        g.on_heartbeat(t, HB);
        for gap in gaps {
            t += gap;
            g.on_heartbeat(t, HB);
        }
        g
    }

    #[test]
    fn no_gap_seen_yet_means_the_ceiling() {
        assert_eq!(HeartbeatGaps::default().timeout_us(HB, MIN, MAX), MAX);
        assert_eq!(after(&[]).timeout_us(HB, MIN, MAX), MAX);
    }

    #[test]
    fn steady_heartbeats_converge_to_the_floor() {
        let g = after(&[HB; 64]);
        assert_eq!(g.timeout_us(HB, MIN, MAX), MIN);
    }

    #[test]
    fn jittery_heartbeats_raise_the_timeout_within_the_ceiling() {
        let steady = after(&[HB; 64]).timeout_us(HB, MIN, MAX);
        let gaps: Vec<u64> = (0..64)
            .map(|i| if i % 2 == 0 { 4_000 } else { 16_000 })
            .collect();
        let jittery = after(&gaps).timeout_us(HB, MIN, MAX);
        assert!(jittery > steady, "jittery={jittery} steady={steady}");
        assert!(jittery <= MAX, "jittery={jittery}");
        let wild: Vec<u64> = (0..64)
            .map(|i| if i % 2 == 0 { 0 } else { 200_000 })
            .collect();
        assert_eq!(after(&wild).timeout_us(HB, MIN, MAX), MAX);
    }

    #[test]
    fn extra_heartbeats_for_reads_are_not_samples() {
        let mut g = after(&[HB; 64]);
        let mut t = 1_000_000 + 64 * HB;
        for _ in 0..64 {
            g.on_heartbeat(t + 2_000, HB); // a read's round
            t += HB;
            g.on_heartbeat(t, HB);
        }
        assert_eq!(g.timeout_us(HB, MIN, MAX), MIN);
    }

    #[test]
    fn a_stall_is_remembered_for_seconds_not_heartbeats() {
        let mut gaps = vec![HB; 64];
        gaps.push(60_000); // a 60 ms stall of the leader's host
        gaps.extend([HB; 100]); // one second of steady heartbeats after it
        let t = after(&gaps).timeout_us(HB, MIN, MAX);
        assert!(t >= MIN + 20_000, "t={t}");
        // ... and forgotten after a minute of steady heartbeats.
        gaps.extend([HB; 6_000]);
        assert_eq!(after(&gaps).timeout_us(HB, MIN, MAX), MIN);
    }

    #[test]
    fn a_new_leader_keeps_the_statistics_but_not_the_gap() {
        let mut g = after(&[30_000; 8]);
        let before = g.timeout_us(HB, MIN, MAX);
        g.new_leader();
        g.on_heartbeat(100_000_000, HB); // far later: no gap sample
        assert_eq!(g.timeout_us(HB, MIN, MAX), before);
    }

    #[test]
    fn late_heartbeats_raise_the_timeout() {
        let g = after(&[15_000; 64]);
        let t = g.timeout_us(HB, MIN, MAX);
        assert!(t >= MIN + 4_000, "t={t}");
    }
}
