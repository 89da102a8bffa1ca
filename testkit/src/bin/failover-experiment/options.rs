//! The experiment's command line: modes, faults, and the options of a run.

use crate::NODES;
use crate::report::summarize_dir;
use sraft::settings::test_delay::ZoneLayout;
use std::path::{Path, PathBuf};

/// The experiment's peer ports (client ports 1000 above, 25000-25999):
/// above the test toolkit's range, so that tests and a run can share a
/// host.
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
        }
    }
    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Sraft, Mode::Seed, Mode::Original, Mode::Paper]
            .into_iter()
            .find(|m| m.name() == s)
    }
    fn index(self) -> u16 {
        match self {
            Mode::Sraft => 0,
            Mode::Original => 1,
            Mode::Paper => 2,
            Mode::Seed => 3,
        }
    }
    pub fn is_sraft(self) -> bool {
        matches!(self, Mode::Sraft | Mode::Seed)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    Kill,
    Stop,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Stop => "stop",
        }
    }
    pub fn parse(s: &str) -> Option<Fault> {
        [Fault::Kill, Fault::Stop]
            .into_iter()
            .find(|f| f.name() == s)
    }
}

pub struct Options {
    pub sraft: PathBuf,
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
        "usage: failover-experiment --mode sraft|seed|original|paper --fault kill|stop [--trials N] \
         [--out DIR] [--sraft PATH] [--base-port P (24000-24995)] [--seed S] [--keep] \
         [--zones 0,0,1,1,2 [--same-zone-delay-us 100] [--cross-zone-delay-us 1500]]\n\
         \x20      failover-experiment --mode M --soak SECONDS [--out DIR] [--zones ...]   (no fault: count elections)\n\
         \x20      failover-experiment --summarize DIR"
    );
    std::process::exit(2)
}

pub fn parse_options(args: Vec<String>) -> Options {
    let mut it = args.into_iter();
    let (mut mode, mut fault) = (None, None);
    let mut o = Options {
        sraft: PathBuf::from("target/release/sraft"),
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
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--sraft" => o.sraft = PathBuf::from(value()),
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
                layout.zones = ZoneLayout::parse_zones(&value()).unwrap_or_else(|e| {
                    eprintln!("--zones: {e}");
                    usage()
                });
                zoned = true;
            }
            "--same-zone-delay-us" => {
                layout.same_zone_delay_us = value().parse().unwrap_or_else(|_| usage())
            }
            "--cross-zone-delay-us" => {
                layout.cross_zone_delay_us = value().parse().unwrap_or_else(|_| usage())
            }
            "--summarize" => {
                summarize_dir(Path::new(&value()));
                std::process::exit(0)
            }
            _ => usage(),
        }
    }
    o.mode = mode.unwrap_or_else(|| usage());
    o.fault = fault.unwrap_or_else(|| usage());
    if zoned {
        if layout.zones.len() != NODES {
            eprintln!("--zones needs one zone per node ({NODES})");
            std::process::exit(2);
        }
        o.zones = Some(layout);
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
        eprintln!("--base-port must keep peer ports in {PORT_MIN}-{PORT_MAX}");
        std::process::exit(2);
    }
    o.seed = seed.unwrap_or(o.base_port as u64 * 7919 + o.trials as u64);
    o
}
