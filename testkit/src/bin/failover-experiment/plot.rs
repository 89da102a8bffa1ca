//! `--plot DIR`: for each (fault, layout) in DIR's CSVs, one SVG of the
//! CDF of "first ack after the fault" and one of the election time, a line
//! per mode (plotters' SVG backend: text is SVG `<text>`, no fonts needed
//! to draw).

use crate::fault::Fault;
use crate::options::Mode;
use crate::runs::{Layout, Run, groups, runs_in};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const SIZE_PX: (u32, u32) = (960, 600);
/// Values below this are drawn at it (the x axis is logarithmic).
const X_MS_MIN: f64 = 0.1;

/// One measure of the trials, plotted per (fault, layout).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Measure {
    FirstAck,
    Election,
}

impl Measure {
    pub const ALL: [Measure; 2] = [Measure::FirstAck, Measure::Election];
    fn slug(self) -> &'static str {
        match self {
            Measure::FirstAck => "first-ack",
            Measure::Election => "election",
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Measure::FirstAck => "First ack after the fault",
            Measure::Election => "Election (fault to a new leader seen)",
        }
    }
    fn values(self, run: &Run) -> &[f64] {
        match self {
            Measure::FirstAck => &run.row.first_ack,
            Measure::Election => &run.row.election,
        }
    }
}

/// The plot's file name, e.g. `cdf-first-ack-stop-lan.svg`.
pub fn file_name(measure: Measure, fault: Fault, layout: Layout) -> String {
    format!(
        "cdf-{}-{}-{}.svg",
        measure.slug(),
        fault.name(),
        layout.name()
    )
}

/// The empirical CDF of `values` out of `trials` as a staircase: a
/// trial that measured nothing (timed out) keeps the curve below 1.
pub fn cdf_points(values: &[f64], trials: usize) -> Vec<(f64, f64)> {
    let v = sraft_testkit::stats::sorted(values);
    let n = trials.max(v.len()).max(1) as f64;
    let mut points = Vec::with_capacity(2 * v.len());
    for (i, x) in v.iter().enumerate() {
        points.push((*x, i as f64 / n));
        points.push((*x, (i + 1) as f64 / n));
    }
    points
}

/// A line colour per mode, the same in every plot.
fn colour(mode: Mode) -> RGBColor {
    match mode {
        Mode::Sraft => RGBColor(31, 119, 180),
        Mode::Seed => RGBColor(23, 190, 207),
        Mode::Original => RGBColor(214, 39, 40),
        Mode::Paper => RGBColor(255, 127, 14),
        Mode::Etcd => RGBColor(44, 160, 44),
        Mode::EtcdFast => RGBColor(148, 103, 189),
        Mode::OriginalFast => RGBColor(140, 86, 75),
    }
}

/// The decades around `values`: (10^floor(log10 min), 10^ceil(log10 max)).
fn x_range_ms(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, 0.0_f64), |(lo, hi), x| {
        (lo.min(x.max(X_MS_MIN)), hi.max(x))
    });
    if !lo.is_finite() {
        return (1.0, 1000.0);
    }
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
    (lo, hi)
}

/// Writes every plot of `dir`'s runs into `dir`; their paths.
pub fn plot_dir(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let runs = runs_in(dir);
    if runs.is_empty() {
        return Err(format!("no failover-*.csv in {}", dir.display()));
    }
    let mut files = vec![];
    for (fault, layout) in groups(&runs) {
        let group: Vec<&Run> = runs
            .iter()
            .filter(|r| r.fault == fault && r.layout == layout)
            .collect();
        for measure in Measure::ALL {
            let path = dir.join(file_name(measure, fault, layout));
            draw(&path, measure, fault, layout, &group)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            files.push(path);
        }
    }
    Ok(files)
}

fn draw(
    path: &Path,
    measure: Measure,
    fault: Fault,
    layout: Layout,
    runs: &[&Run],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, SIZE_PX).into_drawing_area();
    root.fill(&WHITE)?;
    let (lo, hi) = x_range_ms(runs.iter().flat_map(|r| measure.values(r).iter().copied()));
    let title = format!(
        "{}: {} of the leader, {}",
        measure.title(),
        match fault {
            Fault::Kill => "SIGKILL",
            Fault::Stop => "SIGSTOP",
        },
        layout.title()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("ms after the fault (log scale)")
        .y_desc("fraction of trials")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .x_label_formatter(&|x| format!("{x}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .draw()?;
    for run in runs {
        let values = measure.values(run);
        let points = cdf_points(values, run.row.trials)
            .into_iter()
            .map(|(x, y)| (x.max(lo), y));
        let style = colour(run.mode).stroke_width(2);
        let missing = run.row.trials - values.len();
        let label = if missing > 0 {
            format!(
                "{} (n={}, {missing} timed out)",
                run.mode.name(),
                run.row.trials
            )
        } else {
            format!("{} (n={})", run.mode.name(), run.row.trials)
        };
        chart
            .draw_series(LineSeries::new(points, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trial::Trial;
    use sraft_testkit::stats::Percentiles;

    /// A CSV of four trials as the experiment writes them; the third
    /// timed out (no election, no ack).
    pub(crate) fn tiny_csv() -> String {
        let line = |t: usize, election: &str, ack: &str, load: &str| {
            format!(
                "{t},sraft,stop,1.0,0,5,1 2,0,3,1,6,{election},1,1,-0.5,{ack},{ack},{ack},0,10.0,{load},{ack}"
            )
        };
        [
            Trial::HEADER.to_string(),
            line(0, "40.000", "60.000", "1.00"),
            line(1, "20.000", "30.000", "2.00"),
            "2,sraft,stop,1.0,0,5,1 2,0,3,,,,0,0,-0.5,,,,0,10.0,3.00,".to_string(),
            line(3, "80.000", "90.000", "0.50"),
        ]
        .join("\n")
            + "\n"
    }

    #[test]
    fn cdf_and_percentiles_of_a_tiny_csv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("failover-sraft-stop.csv"), tiny_csv()).unwrap();
        let runs = runs_in(dir.path());
        assert_eq!(runs.len(), 1, "one run");
        let row = &runs[0].row;
        assert_eq!(row.trials, 4);
        assert_eq!(row.first_ack, vec![60.0, 30.0, 90.0]);
        assert_eq!(row.new_user, vec![60.0, 30.0, 90.0]);
        assert_eq!(row.load1, vec![1.0, 2.0, 3.0, 0.5]);
        assert_eq!(
            cdf_points(&row.first_ack, row.trials),
            vec![
                (30.0, 0.0),
                (30.0, 0.25),
                (60.0, 0.25),
                (60.0, 0.5),
                (90.0, 0.5),
                (90.0, 0.75)
            ]
        );
        let p = Percentiles::of(&row.election);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (40.0, 80.0, 80.0, 80.0));
    }

    #[test]
    fn x_range_covers_whole_decades() {
        assert_eq!(
            x_range_ms([30.0, 90.0, 1500.0].into_iter()),
            (10.0, 10000.0)
        );
        assert_eq!(x_range_ms([0.0, 5.0].into_iter()), (0.1, 10.0));
        assert_eq!(x_range_ms(std::iter::empty()), (1.0, 1000.0));
    }
}
