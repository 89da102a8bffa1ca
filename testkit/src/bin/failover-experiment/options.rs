//! The experiment's command line: modes, and the options of a run or of
//! the commands that read runs' CSVs.

use crate::NODES;
use crate::fault::Fault;
use sraft::settings::test_delay::ZoneLayout;
use std::path::PathBuf;

/// The experiment's peer ports (client ports 1000 above, 25000-25999):
/// above the test toolkit's range, so that tests and a run can share a
/// host. Each mode has a block of 100 (sraft modes 24000-24399 and
/// 24600-24699, etcd 24400-24599).
pub const PORT_MIN: u16 = 24000;
/// Peer ports stay below this, so client ports (peer + 1000) stay in
/// 25000-25999.
pub const PORT_MAX: u16 = 24999;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Sraft,
    /// S-Raft with seed 000's timings: conf/seed-timings.toml, as shipped.
    Seed,
    Original,
    Paper,
    /// etcd 3.4 with its defaults (heartbeat 100 ms, election timeout
    /// 1000 ms).
    Etcd,
    /// etcd 3.4 with heartbeat 50 ms, election timeout 300 ms.
    EtcdFast,
    /// Original Raft with S-Raft's own detection timings on every
    /// follower: heartbeat 10 ms, timeouts 40-80 ms (the primary's range).
    /// The control for "is the gain only the shorter timeout?".
    OriginalFast,
}

/// The seed-timing row runs with the file users get, not a copy of it.
pub const SEED_TIMINGS_TOML: &str = include_str!("../../../../conf/seed-timings.toml");

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sraft => "sraft",
            Mode::Seed => "seed",
            Mode::Original => "original",
            Mode::Paper => "paper",
            Mode::Etcd => "etcd",
            Mode::EtcdFast => "etcd-fast",
            Mode::OriginalFast => "original-fast",
        }
    }
    /// Every mode, in the order of the report's rows.
    pub const ALL: [Mode; 7] = [
        Mode::Sraft,
        Mode::Seed,
        Mode::Original,
        Mode::Paper,
        Mode::OriginalFast,
        Mode::Etcd,
        Mode::EtcdFast,
    ];
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
    fn index(self) -> u16 {
        match self {
            Mode::Sraft => 0,
            Mode::Original => 1,
            Mode::Paper => 2,
            Mode::Seed => 3,
            Mode::Etcd => 4,
            Mode::EtcdFast => 5,
            Mode::OriginalFast => 6,
        }
    }
    /// S-Raft (sub-leaders named), not original Raft or etcd.
    pub fn is_sraft(self) -> bool {
        matches!(self, Mode::Sraft | Mode::Seed)
    }
    pub fn is_etcd(self) -> bool {
        self.etcd_timings_ms().is_some()
    }
    /// etcd's `--heartbeat-interval` and `--election-timeout` (ms).
    pub fn etcd_timings_ms(self) -> Option<(u64, u64)> {
        match self {
            Mode::Etcd => Some((100, 1000)),
            Mode::EtcdFast => Some((50, 300)),
            Mode::Sraft | Mode::Seed | Mode::Original | Mode::Paper | Mode::OriginalFast => None,
        }
    }
}

/// What the command line asks for.
pub enum Command {
    /// Trials (or a soak) of one mode.
    Run(Options),
    /// `--summarize DIR`: one Markdown table of every CSV in DIR.
    Summarize(PathBuf),
    /// `--plot DIR`: CDF plots (SVG) of every fault and layout in DIR.
    Plot(PathBuf),
    /// `--report DIR --experiments FILE`: the v2 section of FILE.
    Report { dir: PathBuf, experiments: PathBuf },
}

pub struct Options {
    pub sraft: PathBuf,
    /// The etcd binary of the etcd modes.
    pub etcd: PathBuf,
    pub mode: Mode,
    pub fault: Fault,
    pub trials: usize,
    pub out: PathBuf,
    pub base_port: u16,
    pub seed: u64,
    pub keep: bool,
    /// Availability zones emulated with per-peer delays, if any.
    pub zones: Option<ZoneLayout>,
    /// `--soak SECONDS`: no fault; count the elections a healthy cluster
    /// starts under the writer's load and whatever else runs on the host.
    pub soak_secs: u64,
}

impl Options {
    /// The name of this run's files: mode, fault, and the layout.
    pub fn stem(&self) -> String {
        let zones = if self.zones.is_some() { "-zones" } else { "" };
        if self.soak_secs > 0 {
            return format!("soak-{}{zones}", self.mode.name());
        }
        format!("failover-{}-{}{zones}", self.mode.name(), self.fault.name())
    }
}

pub fn usage() -> ! {
    eprintln!(
        "usage: failover-experiment --mode sraft|seed|original|paper|original-fast|etcd|etcd-fast --fault kill|stop \
         [--trials N] [--out DIR] [--sraft PATH] [--etcd PATH (/usr/bin/etcd)] \
         [--base-port P (24000-24995)] [--seed S] [--keep] \
         [--zones 0,0,1,1,2 [--same-zone-delay-us 100] [--cross-zone-delay-us 1500]] (sraft modes)\n\
         \x20      failover-experiment --mode M --soak SECONDS [--out DIR] [--zones ...]   (sraft modes; no fault: count elections)\n\
         \x20      failover-experiment --summarize DIR\n\
         \x20      failover-experiment --plot DIR          (CDF plots, SVG, into DIR)\n\
         \x20      failover-experiment --report DIR --experiments EXPERIMENTS.md   (rewrites its v2 section)"
    );
    std::process::exit(2)
}

/// Exits with `message` and the usage.
fn usage_error(message: &str) -> ! {
    eprintln!("{message}");
    usage()
}

pub fn parse_options(args: Vec<String>) -> Command {
    let mut it = args.into_iter();
    let (mut mode, mut fault) = (None, None);
    let mut o = Options {
        sraft: PathBuf::from("target/release/sraft"),
        etcd: PathBuf::from("/usr/bin/etcd"),
        mode: Mode::Sraft,
        fault: Fault::Kill,
        trials: 200,
        out: PathBuf::from("results"),
        base_port: 0,
        seed: 0,
        keep: false,
        zones: None,
        soak_secs: 0,
    };
    let mut seed = None;
    let mut layout = ZoneLayout::three_zones();
    let mut zoned = false;
    let (mut report, mut experiments) = (None, None);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--sraft" => o.sraft = PathBuf::from(value()),
            "--etcd" => o.etcd = PathBuf::from(value()),
            "--mode" => mode = Some(Mode::parse(&value()).unwrap_or_else(|| usage())),
            "--fault" => fault = Some(Fault::parse(&value()).unwrap_or_else(|| usage())),
            "--trials" => o.trials = value().parse().unwrap_or_else(|_| usage()),
            "--out" => o.out = PathBuf::from(value()),
            "--base-port" => o.base_port = value().parse().unwrap_or_else(|_| usage()),
            "--seed" => seed = Some(value().parse().unwrap_or_else(|_| usage())),
            "--keep" => o.keep = true,
            "--soak" => {
                o.soak_secs = value().parse().unwrap_or_else(|_| usage());
                fault = fault.or(Some(Fault::Kill));
            }
            "--zones" => {
                layout.zones = ZoneLayout::parse_zones(&value())
                    .unwrap_or_else(|e| usage_error(&format!("--zones: {e}")));
                zoned = true;
            }
            "--same-zone-delay-us" => {
                layout.same_zone_delay_us = value().parse().unwrap_or_else(|_| usage())
            }
            "--cross-zone-delay-us" => {
                layout.cross_zone_delay_us = value().parse().unwrap_or_else(|_| usage())
            }
            "--summarize" => return Command::Summarize(PathBuf::from(value())),
            "--plot" => return Command::Plot(PathBuf::from(value())),
            "--report" => report = Some(PathBuf::from(value())),
            "--experiments" => experiments = Some(PathBuf::from(value())),
            _ => usage(),
        }
    }
    match (report, experiments) {
        (Some(dir), Some(experiments)) => return Command::Report { dir, experiments },
        (None, None) => {}
        _ => usage_error("--report DIR and --experiments FILE go together"),
    }
    o.mode = mode.unwrap_or_else(|| usage());
    o.fault = fault.unwrap_or_else(|| usage());
    if zoned {
        if o.mode.is_etcd() {
            usage_error(
                "--zones is not supported for the etcd modes: the zones are emulated by \
                 sraft's test-only per-peer delay, which etcd does not have",
            );
        }
        if layout.zones.len() != NODES {
            usage_error(&format!("--zones needs one zone per node ({NODES})"));
        }
        o.zones = Some(layout);
    }
    if o.soak_secs > 0 && o.mode.is_etcd() {
        usage_error("--soak is for the sraft modes (it counts elections in sraft's metrics files)");
    }
    if o.base_port == 0 {
        // One block of ports per combination, so that sequential runs do
        // not meet each other's lingering sockets.
        let f = if o.fault == Fault::Kill { 0 } else { 50 };
        let z = if o.zones.is_some() { 10 } else { 0 };
        // A soak may run next to the trials of its mode.
        let soak = if o.soak_secs > 0 { 20 } else { 0 };
        o.base_port = PORT_MIN + o.mode.index() * 100 + f + z + soak;
    }
    if o.base_port < PORT_MIN || o.base_port + NODES as u16 - 1 > PORT_MAX {
        usage_error(&format!(
            "--base-port must keep peer ports in {PORT_MIN}-{PORT_MAX}"
        ));
    }
    o.seed = seed.unwrap_or(o.base_port as u64 * 7919 + o.trials as u64);
    Command::Run(o)
}
