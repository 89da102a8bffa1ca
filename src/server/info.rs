//! INFO in Redis's format: `# Section` headers and `key:value` lines
//! (DESIGN.md 4.6). Redis's own sections where sraft has their meaning
//! (`# Server`, `# Clients`, `# Replication`, `# Stats`, `# Commandstats`,
//! from the same counters as `/metrics`), then sraft's `# Raft`. `# Raft`
//! comes last: `role` is in both it and `# Replication` (Redis's
//! `master`/`slave` there), and a reader that keeps the last value of a key
//! then gets Raft's role, as it always has.

use crate::core::NodeId;
use crate::metrics::{Metrics, Totals};
use crate::runtime::NodeStatus;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;

/// Sections in output order, as `INFO <section>` names them.
const SECTIONS: [&str; 6] = [
    "server",
    "clients",
    "replication",
    "stats",
    "commandstats",
    "raft",
];

/// INFO's text; `sections` as the client named them (none, `all`,
/// `everything` or `default`: every section).
pub fn info_text(
    status: &NodeStatus,
    client_addrs: &BTreeMap<NodeId, SocketAddr>,
    metrics: &Metrics,
    sections: &[String],
) -> String {
    let all = sections.is_empty()
        || sections.iter().any(|s| {
            ["all", "everything", "default"]
                .iter()
                .any(|a| s.eq_ignore_ascii_case(a))
        });
    let wanted = |name: &str| all || sections.iter().any(|s| s.eq_ignore_ascii_case(name));
    let totals = metrics.totals();
    let mut out = String::new();
    for section in SECTIONS.into_iter().filter(|s| wanted(s)) {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match section {
            "server" => server(&mut out),
            "clients" => clients(&mut out, &totals),
            "replication" => replication(&mut out, status, client_addrs, metrics),
            "stats" => stats(&mut out, &totals),
            "commandstats" => commandstats(&mut out, &totals),
            _ => raft(&mut out, status, client_addrs),
        }
    }
    out
}

fn server(out: &mut String) {
    // redis-cli and client libraries look for a server section and a version.
    let _ = write!(
        out,
        "# Server\r\nredis_version:7.0.0\r\nsraft_version:{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
}

fn clients(out: &mut String, totals: &Totals) {
    let _ = write!(
        out,
        "# Clients\r\nconnected_clients:{}\r\n",
        totals.connections_open
    );
}

/// Redis's replication view of Raft: the leader is the master, every
/// follower a replica, offsets are log indexes.
fn replication(
    out: &mut String,
    status: &NodeStatus,
    client_addrs: &BTreeMap<NodeId, SocketAddr>,
    metrics: &Metrics,
) {
    out.push_str("# Replication\r\n");
    if status.role == "leader" {
        let peers = metrics.peer_stats();
        let online = |id| peers.get(&id).is_some_and(|p| p.connected);
        let connected = status
            .followers
            .iter()
            .filter(|(id, _)| online(*id))
            .count();
        let _ = write!(out, "role:master\r\nconnected_slaves:{connected}\r\n");
        for (n, (id, match_index)) in status.followers.iter().enumerate() {
            let Some(addr) = client_addrs.get(id) else {
                continue;
            };
            let state = if online(*id) { "online" } else { "offline" };
            let _ = write!(
                out,
                "slave{n}:ip={},port={},state={state},offset={match_index},node_id={id}\r\n",
                addr.ip(),
                addr.port()
            );
        }
    } else {
        out.push_str("role:slave\r\n");
        let leader_addr = status.leader.and_then(|l| client_addrs.get(&l));
        if let Some(addr) = leader_addr {
            let _ = write!(
                out,
                "master_host:{}\r\nmaster_port:{}\r\n",
                addr.ip(),
                addr.port()
            );
        }
        let link = if leader_addr.is_some() { "up" } else { "down" };
        let _ = write!(
            out,
            "master_link_status:{link}\r\nslave_repl_offset:{}\r\n",
            status.last_log_index
        );
    }
    let _ = write!(out, "master_repl_offset:{}\r\n", status.last_log_index);
}

fn stats(out: &mut String, t: &Totals) {
    let lines: [(&str, u64); 14] = [
        ("total_connections_received", t.connections_accepted),
        ("rejected_connections", t.connections_refused),
        ("total_commands_processed", t.commands_processed()),
        ("total_forwards_sent", t.forwards_sent),
        ("total_forwards_received", t.forwards_received),
        ("total_proposals_committed", t.proposals_committed),
        ("total_reads_served", t.reads_served),
        ("raft_elections_started", t.elections),
        ("raft_pre_vote_rounds", t.pre_votes),
        ("raft_elections_won", t.elections_won),
        ("raft_promotions_won", t.promotions_won),
        ("raft_leader_changes", t.leader_changes),
        ("raft_crash_hints", t.crash_hints),
        ("wal_fsyncs", t.wal_syncs),
    ];
    out.push_str("# Stats\r\n");
    for (key, value) in lines {
        let _ = write!(out, "{key}:{value}\r\n");
    }
}

fn commandstats(out: &mut String, totals: &Totals) {
    out.push_str("# Commandstats\r\n");
    for (name, calls) in totals.command_calls() {
        let _ = write!(out, "cmdstat_{name}:calls={calls}\r\n");
    }
}

fn raft(out: &mut String, status: &NodeStatus, client_addrs: &BTreeMap<NodeId, SocketAddr>) {
    let leader_addr = status
        .leader
        .and_then(|l| client_addrs.get(&l))
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
    let _ = write!(
        out,
        "# Raft\r\nnode_id:{}\r\nrole:{}\r\nterm:{}\r\nleader_id:{}\r\nleader_addr:{}\r\n\
         commit_index:{}\r\napplied_index:{}\r\nlast_log_index:{}\r\n\
         log_first_index:{}\r\nlog_bytes:{}\r\nsnapshot_index:{}\r\nsnapshot_term:{}\r\n\
         snapshot_bytes:{}\r\nsub_leaders:{}\r\n\
         sub_leader_rtt_ms:{}\r\nsubleader_rank:{}\r\nmode:{}\r\n\
         read_mode:{}\r\nlease_reads:{}\r\n",
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
        status.log_first_index,
        status.log_bytes,
        status.snapshot_index,
        status.snapshot_term,
        status.snapshot_bytes,
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
        status.read_mode,
        status.lease_reads,
    );
}

/// Parses INFO's `key:value` lines (used by `sraft status` and tests). A key
/// in `# Raft` wins over the same key elsewhere (`role`).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut in_raft = false;
    for line in text.lines() {
        if let Some(section) = line.strip_prefix('#') {
            in_raft = section.trim().eq_ignore_ascii_case("raft");
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_string();
        if in_raft || !fields.contains_key(&key) {
            fields.insert(key, value.trim().to_string());
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{LogIndex, Term};

    fn addrs() -> BTreeMap<NodeId, SocketAddr> {
        (0..3)
            .map(|i| {
                (
                    NodeId(i),
                    SocketAddr::from(([127, 0, 0, 1], 6000 + i as u16)),
                )
            })
            .collect()
    }

    fn leader() -> NodeStatus {
        NodeStatus {
            node_id: 0,
            role: "leader",
            term: Term(4),
            leader: Some(NodeId(0)),
            commit_index: LogIndex(9),
            applied_index: LogIndex(9),
            last_log_index: LogIndex(10),
            followers: vec![(NodeId(1), LogIndex(10)), (NodeId(2), LogIndex(7))],
            read_mode: "lease",
            lease_reads: 12,
            ..NodeStatus::default()
        }
    }

    #[test]
    fn every_section_is_there_and_raft_keeps_its_role() {
        let metrics = Metrics::new();
        metrics.client_command(b"SET");
        metrics.client_command(b"set");
        metrics.connection_accepted();
        let text = info_text(&leader(), &addrs(), &metrics, &[]);
        for header in [
            "# Server",
            "# Clients",
            "# Replication",
            "# Stats",
            "# Commandstats",
            "# Raft",
        ] {
            assert!(text.contains(&format!("{header}\r\n")), "{header}:\n{text}");
        }
        assert!(text.contains("\r\nrole:master\r\n"), "{text}");
        assert!(
            text.contains("\r\nslave1:ip=127.0.0.1,port=6002,state=offline,offset=7,node_id=2\r\n")
        );
        assert!(text.contains("\r\ncmdstat_set:calls=2\r\n"), "{text}");
        assert!(
            text.contains("\r\ntotal_commands_processed:2\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nconnected_clients:1\r\n"), "{text}");
        let fields = parse_info(&text);
        assert_eq!(fields["role"], "leader");
        assert_eq!(fields["master_repl_offset"], "10");
        assert_eq!(fields["read_mode"], "lease");
        assert_eq!(fields["lease_reads"], "12");
        // A reader that keeps the last value of a key agrees.
        let last = text.lines().rev().find_map(|l| l.strip_prefix("role:"));
        assert_eq!(last, Some("leader"));
    }

    #[test]
    fn a_follower_is_a_replica_of_the_leaders_client_address() {
        let follower = NodeStatus {
            node_id: 2,
            role: "follower",
            leader: Some(NodeId(0)),
            last_log_index: LogIndex(8),
            ..NodeStatus::default()
        };
        let text = info_text(
            &follower,
            &addrs(),
            &Metrics::new(),
            &["replication".into()],
        );
        assert_eq!(
            text,
            "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6000\r\n\
             master_link_status:up\r\nslave_repl_offset:8\r\nmaster_repl_offset:8\r\n"
        );
    }

    #[test]
    fn named_sections_only_in_any_case() {
        let text = info_text(
            &leader(),
            &addrs(),
            &Metrics::new(),
            &["RAFT".into(), "stats".into()],
        );
        assert!(text.starts_with("# Stats\r\n"), "{text}");
        assert!(text.contains("\r\n\r\n# Raft\r\n"), "{text}");
        assert!(!text.contains("# Server"), "{text}");
        assert_eq!(
            info_text(&leader(), &addrs(), &Metrics::new(), &["nope".into()]),
            ""
        );
    }
}
