//! A fixed-bucket histogram of durations, updated with relaxed atomic adds
//! and no allocation, so that the Raft and WAL threads can record into it
//! on their hot paths while the metrics thread reads it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Failovers and promotions: around S-Raft's staged timeouts (heartbeat 50
/// ms, primary 150-200, secondary 250-350, others 300-1000), and the crash
/// fast path's few milliseconds.
pub const FAILOVER_BUCKETS_US: &[u64] = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 150_000, 200_000, 300_000, 500_000,
    1_000_000, 2_000_000, 5_000_000,
];

/// Commit and read latency and WAL syncs: from a tmpfs fsync (tens of µs)
/// to the client's request timeout (5 s).
pub const LATENCY_BUCKETS_US: &[u64] = &[
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

pub struct Histogram {
    /// Upper bounds (inclusive), increasing.
    bounds_us: &'static [u64],
    /// One count per bound, and one for everything above the last.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// A histogram as read at one moment: counts per bucket (not cumulative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds_us: &'static [u64],
    pub counts: Vec<u64>,
    pub sum_us: u64,
}

impl Histogram {
    pub fn new(bounds_us: &'static [u64]) -> Histogram {
        assert!(
            bounds_us.windows(2).all(|w| w[0] < w[1]),
            "histogram bounds must increase: {bounds_us:?}"
        );
        Histogram {
            bounds_us,
            counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe_us(&self, us: u64) {
        let bucket = self.bounds_us.partition_point(|&bound| bound < us);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds_us: self.bounds_us,
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    /// Observations in all buckets. Counted from the buckets, so that the
    /// `+Inf` bucket and `_count` always agree even when the snapshot was
    /// taken while another thread was recording.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (upper bound in µs, cumulative count) per bound, Prometheus's `le`.
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut total = 0;
        self.bounds_us
            .iter()
            .zip(&self.counts)
            .map(|(&bound, &count)| {
                total += count;
                (bound, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_holds_it() {
        let h = Histogram::new(&[10, 100]);
        for us in [0, 10, 11, 100, 101, 5_000] {
            h.observe_us(us);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 2, 2]);
        assert_eq!(s.count(), 6);
        assert_eq!(s.sum_us, 5_222);
        assert_eq!(s.cumulative(), vec![(10, 2), (100, 4)]);
    }

    #[test]
    #[should_panic(expected = "must increase")]
    fn bounds_out_of_order_are_a_bug() {
        Histogram::new(&[10, 10]);
    }

    #[test]
    fn shipped_bounds_increase() {
        Histogram::new(FAILOVER_BUCKETS_US);
        Histogram::new(LATENCY_BUCKETS_US);
    }
}
