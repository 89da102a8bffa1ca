//! Network partitions between real processes on one machine, without
//! network namespaces or netem: every node binds its own loopback address
//! (127.0.0.11, 127.0.0.12, ...) and its outbound peer connections carry
//! that address as their source (DESIGN.md 2.6), so one nftables rule
//! `ip saddr A ip daddr B tcp dport P drop` silently drops everything A
//! sends to B's peer port P: one direction of one link. Rules sit in the
//! input hook, so a dropped packet is lost as on a real network (a drop in
//! the output hook would fail the sender's syscall with EPERM, a hint no
//! real partition gives).
//!
//! Every `Firewall` owns one nftables table with a name unique to the test
//! process and instance; it never reads or changes any other table, except
//! that it deletes tables named with its own prefix whose process is gone
//! (left by a test that was SIGKILLed before its `Drop` could run). Rules
//! name the destination port too, so they cannot touch another cluster
//! that happens to use the same loopback addresses.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const TABLE_PREFIX: &str = "sraft_partition_";
static NEXT_TABLE: AtomicU32 = AtomicU32::new(0);

/// CI sets this when it installed nftables as root: there, a firewall that
/// cannot be set up is a failure, not a reason to skip.
pub const REQUIRE_ENV: &str = "SRAFT_REQUIRE_PARTITIONS";

/// One nftables table of our own; dropped = deleted, with every rule in it.
pub struct Firewall {
    table: String,
    /// Cut directions, as (from, to-peer-address).
    cuts: BTreeSet<(SocketAddr, SocketAddr)>,
}

fn nft(args: &[&str]) -> Result<(), String> {
    let out = Command::new("nft")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn nft_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("nft")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deletes tables of ours whose test process no longer exists.
fn delete_orphans() {
    let Ok(list) = nft_output(&["list", "tables"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.strip_prefix("table inet ") else {
            continue;
        };
        let Some(rest) = name.trim().strip_prefix(TABLE_PREFIX) else {
            continue;
        };
        let pid = rest.split('_').next().unwrap_or("");
        let alive = pid.parse::<u32>().is_ok_and(|pid| {
            pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if !alive {
            eprintln!("[partition] deleting orphaned nftables table {name}");
            let _ = nft(&["delete", "table", "inet", name.trim()]);
        }
    }
}

impl Firewall {
    /// Creates the table and its input chain, or says why it cannot (no
    /// `nft`, not root, no nftables in the kernel).
    pub fn new() -> Result<Firewall, String> {
        delete_orphans();
        let table = format!(
            "{TABLE_PREFIX}{}_{}",
            std::process::id(),
            NEXT_TABLE.fetch_add(1, Ordering::SeqCst)
        );
        nft(&["add", "table", "inet", &table])?;
        let firewall = Firewall {
            table,
            cuts: BTreeSet::new(),
        };
        nft(&[
            "add",
            "chain",
            "inet",
            &firewall.table,
            "input",
            "{ type filter hook input priority 0; policy accept; }",
        ])?;
        Ok(firewall)
    }

    /// Packets from `from`'s address to the peer address `to` are dropped
    /// from now on (established connections stall, new ones time out).
    pub fn cut(&mut self, from: SocketAddr, to: SocketAddr) {
        assert_ne!(from.ip(), to.ip(), "a node cannot be cut from itself");
        if !self.cuts.insert((from, to)) {
            return;
        }
        let rule = format!(
            "ip saddr {} ip daddr {} tcp dport {} drop",
            from.ip(),
            to.ip(),
            to.port()
        );
        nft(&["add", "rule", "inet", &self.table, "input", &rule])
            .unwrap_or_else(|e| panic!("cutting {from} -> {to}: {e}"));
    }

    /// Both directions between two nodes' peer addresses.
    pub fn cut_both(&mut self, a: SocketAddr, b: SocketAddr) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Every link between the two groups, both ways.
    pub fn split(&mut self, left: &[SocketAddr], right: &[SocketAddr]) {
        for &a in left {
            for &b in right {
                self.cut_both(a, b);
            }
        }
    }

    pub fn cuts(&self) -> usize {
        self.cuts.len()
    }

    /// Removes every rule; the table stays for the next cut.
    pub fn heal(&mut self) {
        if self.cuts.is_empty() {
            return;
        }
        nft(&["flush", "chain", "inet", &self.table, "input"])
            .unwrap_or_else(|e| panic!("healing: {e}"));
        self.cuts.clear();
    }

    /// Whether our table still exists (for the test that checks clean-up).
    pub fn table_exists(name: &str) -> bool {
        nft_output(&["list", "tables"]).is_ok_and(|list| {
            list.lines()
                .any(|l| l.trim() == format!("table inet {name}"))
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        // Also on panic: a leftover rule would cut the next run's links.
        if let Err(e) = nft(&["delete", "table", "inet", &self.table]) {
            eprintln!("[partition] could not delete table {}: {e}", self.table);
        }
    }
}

/// A firewall, or `None` after printing why partitions are skipped; panics
/// instead when [`REQUIRE_ENV`] is set.
pub fn firewall_or_skip(test: &str) -> Option<Firewall> {
    match Firewall::new() {
        Ok(firewall) => Some(firewall),
        Err(reason) if std::env::var_os(REQUIRE_ENV).is_some() => {
            panic!("{test}: partitions required ({REQUIRE_ENV} is set) but unavailable: {reason}")
        }
        Err(reason) => {
            eprintln!(
                "[partition] SKIPPED {test}: cannot set up nftables: {reason} \
                 (needs root and the nft tool: apt-get install nftables)"
            );
            None
        }
    }
}
