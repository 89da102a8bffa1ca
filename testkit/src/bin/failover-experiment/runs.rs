//! The runs of a results directory: each `failover-<mode>-<fault>[-zones].csv`
//! read into a [`Row`], in the report's order (layout, fault, mode).

use crate::fault::Fault;
use crate::options::Mode;
use crate::report::{Row, row_from_csv};
use std::path::Path;

/// Where the nodes ran: plain loopback, or three emulated zones.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Layout {
    Lan,
    Zones,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Lan, Layout::Zones];
    pub fn name(self) -> &'static str {
        match self {
            Layout::Lan => "lan",
            Layout::Zones => "zones",
        }
    }
    pub fn is_zones(self) -> bool {
        self == Layout::Zones
    }
    /// The suffix of a run's file names.
    fn suffix(self) -> &'static str {
        match self {
            Layout::Lan => "",
            Layout::Zones => "-zones",
        }
    }
    /// How the report and the plots' titles say it.
    pub fn title(self) -> &'static str {
        match self {
            Layout::Lan => "LAN (loopback)",
            Layout::Zones => "3 emulated zones",
        }
    }
}

/// One run's trials.
pub struct Run {
    pub mode: Mode,
    pub fault: Fault,
    pub layout: Layout,
    /// Its file name without `.csv`.
    pub stem: String,
    pub row: Row,
}

/// The file name (without `.csv`) of a run.
pub fn stem(mode: Mode, fault: Fault, layout: Layout) -> String {
    format!(
        "failover-{}-{}{}",
        mode.name(),
        fault.name(),
        layout.suffix()
    )
}

/// Every run in `dir` that has a readable CSV, ordered by layout, fault,
/// then mode ([`Mode::ALL`]).
pub fn runs_in(dir: &Path) -> Vec<Run> {
    let mut runs = vec![];
    for layout in Layout::ALL {
        for fault in [Fault::Kill, Fault::Stop] {
            for mode in Mode::ALL {
                let stem = stem(mode, fault, layout);
                if let Some(row) = row_from_csv(&dir.join(format!("{stem}.csv"))) {
                    runs.push(Run {
                        mode,
                        fault,
                        layout,
                        stem,
                        row,
                    });
                }
            }
        }
    }
    runs
}

/// The (fault, layout) pairs present in `runs`, in their order.
pub fn groups(runs: &[Run]) -> Vec<(Fault, Layout)> {
    let mut g: Vec<(Fault, Layout)> = runs.iter().map(|r| (r.fault, r.layout)).collect();
    g.dedup();
    g
}
