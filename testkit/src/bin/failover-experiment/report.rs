//! The report: one Markdown row per run (mode x fault) from its trials or
//! its CSV, with the toolkit's percentiles (`sraft_testkit::stats`).

use crate::options::Mode;
use crate::runs::runs_in;
use sraft_testkit::stats::{Percentiles, percentile, sorted};
use std::fs;
use std::path::Path;

/// The measures of one run, per trial that measured them.
pub struct Row {
    pub mode: String,
    pub fault: String,
    pub trials: usize,
    pub election: Vec<f64>,
    pub unavailable: Vec<f64>,
    /// Fault to the first acknowledged SET sent after it (issue 13's
    /// measure).
    pub first_ack: Vec<f64>,
    /// Fault to the first ack of a write sent at the fault by a user who
    /// had none in flight (`NewUser`); empty for CSVs from before it.
    pub new_user: Vec<f64>,
    pub by_primary: usize,
    pub by_sub: usize,
    pub any_subs: bool,
    /// The 1-minute load average when each trial's fault was injected.
    pub load1: Vec<f64>,
}

impl Row {
    /// A row of no trials yet.
    pub fn new(mode: &str, fault: &str) -> Row {
        Row {
            mode: mode.to_string(),
            fault: fault.to_string(),
            trials: 0,
            election: vec![],
            unavailable: vec![],
            first_ack: vec![],
            new_user: vec![],
            by_primary: 0,
            by_sub: 0,
            any_subs: false,
            load1: vec![],
        }
    }
}

pub fn table_header() -> String {
    "| mode | fault | trials | election p50 | p90 | p99 | max | unavailability p50 | p90 | p99 | max | first ack after the fault p50 | p99 | new user's ack p50 | p99 | won by primary | won by a sub-leader |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        .to_string()
}

pub fn table_row(r: &Row) -> String {
    let stats = |v: &[f64], n: usize| Percentiles::of(v).cells(v.len(), n);
    let a = sorted(&r.first_ack);
    let u = sorted(&r.new_user);
    // Runs from before the new user was measured show a dash.
    let new_user = |p: f64| {
        if u.is_empty() {
            "-".to_string()
        } else {
            format!("{:.1}", percentile(&u, p))
        }
    };
    let etcd = Mode::parse(&r.mode).is_some_and(Mode::is_etcd);
    let won = |k: usize| {
        if etcd {
            "-".into()
        } else if r.any_subs {
            k.to_string()
        } else {
            "- (none named)".into()
        }
    };
    format!(
        "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
        r.mode,
        r.fault,
        r.trials,
        stats(&r.election, r.trials),
        stats(&r.unavailable, r.trials),
        percentile(&a, 50.0),
        percentile(&a, 99.0),
        new_user(50.0),
        new_user(99.0),
        won(r.by_primary),
        won(r.by_sub)
    )
}

/// The row of one run's CSV (None if it cannot be read or lacks a
/// column).
pub fn row_from_csv(path: &Path) -> Option<Row> {
    let text = fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let ca = col("first_ack_after_ms")?;
    let cl = col("load1");
    let cn = col("new_user_ack_ms");
    let (cm, cf, ce, cu, cp, cs, csub) = (
        col("mode")?,
        col("fault")?,
        col("election_ms")?,
        col("unavailable_ms")?,
        col("won_by_primary")?,
        col("won_by_subleader")?,
        col("sub_leaders")?,
    );
    let mut row = Row::new("", "");
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != header.len() {
            continue;
        }
        row.mode = f[cm].to_string();
        row.fault = f[cf].to_string();
        row.trials += 1;
        if let Ok(x) = f[ce].parse() {
            row.election.push(x);
        }
        if let Ok(x) = f[cu].parse() {
            row.unavailable.push(x);
        }
        if let Ok(x) = f[ca].parse() {
            row.first_ack.push(x);
        }
        row.by_primary += (f[cp] == "1") as usize;
        row.by_sub += (f[cs] == "1") as usize;
        row.any_subs |= !f[csub].is_empty();
        if let Some(x) = cl.and_then(|c| f[c].parse().ok()) {
            row.load1.push(x);
        }
        if let Some(x) = cn.and_then(|c| f[c].parse().ok()) {
            row.new_user.push(x);
        }
    }
    Some(row)
}

pub fn summarize_dir(dir: &Path) {
    let mut out = table_header();
    for run in runs_in(dir) {
        let mut r = run.row;
        if run.layout.is_zones() {
            r.mode += "-zones";
        }
        out.push_str(&table_row(&r));
    }
    print!("{out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_from_before_the_new_user_shows_a_dash() {
        let dir = tempfile::tempdir().unwrap();
        // The tiny CSV without its last column, as runs before the new
        // user wrote them.
        let old: String = crate::plot::tests::tiny_csv()
            .lines()
            .map(|l| format!("{}\n", &l[..l.rfind(',').unwrap()]))
            .collect();
        let path = dir.path().join("failover-sraft-stop.csv");
        fs::write(&path, old).unwrap();
        let row = row_from_csv(&path).unwrap();
        assert_eq!(row.trials, 4);
        assert!(row.new_user.is_empty());
        assert!(
            table_row(&row).contains(" 60.0 | 90.0 | - | - | "),
            "{}",
            table_row(&row)
        );
    }
}
