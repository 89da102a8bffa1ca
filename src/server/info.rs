//! INFO in Redis's format: `# Section` headers and `key:value` lines
//! (DESIGN.md 4.6).

use crate::runtime::NodeStatus;
use std::fmt::Write;
use std::net::SocketAddr;

pub fn info_text(status: &NodeStatus, client_addrs: &[SocketAddr]) -> String {
    let mut out = String::new();
    let leader_addr = status
        .leader
        .and_then(|l| client_addrs.get(l.0 as usize))
        .map(|a| a.to_string())
        .unwrap_or_default();
    let subleaders: Vec<String> = status
        .subleaders
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    let rtts: Vec<String> = status
        .subleaders
        .iter()
        .map(|(id, rtt)| match rtt {
            Some(us) => format!("{id}={:.3}", *us as f64 / 1000.0),
            None => format!("{id}=-"),
        })
        .collect();
    // redis-cli and client libraries look for a server section and a version.
    let _ = write!(
        out,
        "# Server\r\nredis_version:7.0.0\r\nsraft_version:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = write!(
        out,
        "# Raft\r\nnode_id:{}\r\nrole:{}\r\nterm:{}\r\nleader_id:{}\r\nleader_addr:{}\r\n\
         commit_index:{}\r\napplied_index:{}\r\nlast_log_index:{}\r\nsub_leaders:{}\r\n\
         sub_leader_rtt_ms:{}\r\nsubleader_rank:{}\r\nmode:{}\r\n",
        status.node_id,
        status.role,
        status.term,
        status
            .leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into()),
        leader_addr,
        status.commit_index,
        status.applied_index,
        status.last_log_index,
        subleaders.join(","),
        rtts.join(","),
        status
            .subleader_rank
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
        if status.original_mode {
            "original"
        } else {
            "s-raft"
        },
    );
    out
}

/// Parses INFO's `key:value` lines (used by `sraft status` and tests).
pub fn parse_info(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
