//! Statistics and report cells for the experiments: nearest-rank
//! percentiles and the Markdown table cells that print them.

use std::fmt::Write as _;

/// The nearest-rank `p`th percentile (0 < p <= 100) of `sorted` (ascending);
/// NaN for no values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// `values`, sorted ascending (NaN last).
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// p50, p90, p99 and max of a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(values: &[f64]) -> Percentiles {
        let v = sorted(values);
        Percentiles {
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// Four Markdown cells `p50 | p90 | p99 | max`, one decimal, then
    /// `(N timed out)` when `trials` is more than the values measured.
    pub fn cells(&self, measured: usize, trials: usize) -> String {
        let mut s = format!(
            "{:.1} | {:.1} | {:.1} | {:.1}",
            self.p50, self.p90, self.p99, self.max
        );
        let missing = trials.saturating_sub(measured);
        if missing > 0 {
            let _ = write!(s, " ({missing} timed out)");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 1.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn cells_say_how_many_timed_out() {
        let p = Percentiles::of(&[3.0, 1.0, 2.0]);
        assert_eq!(p.max, 3.0);
        assert_eq!(p.cells(3, 3), "2.0 | 3.0 | 3.0 | 3.0");
        assert_eq!(p.cells(3, 5), "2.0 | 3.0 | 3.0 | 3.0 (2 timed out)");
    }
}
