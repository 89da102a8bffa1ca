//! Prometheus's text exposition format, version 0.0.4: for each metric a
//! `# HELP` and a `# TYPE` line, then one sample per line, `name{label="v"}
//! value`. Durations are in seconds, as Prometheus's conventions ask.

use super::{
    ELECTION_KINDS, FORWARD_KINDS, HistogramSnapshot, Metrics, OTHER_COMMAND, OUTCOMES, read,
};
use crate::runtime::NodeStatus;
use crate::transport::PeerStats;
use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const ROLES: [&str; 4] = ["leader", "follower", "candidate", "pre-candidate"];

struct Text(String);

impl Text {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: &AtomicU64) {
        self.header(name, "counter", help);
        self.sample(name, &[], value.load(Ordering::Relaxed));
    }

    /// One counter with one label, a sample per label value.
    fn counters<const N: usize>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
        counters: &[AtomicU64; N],
    ) {
        self.header(name, "counter", help);
        for (value, count) in values.iter().zip(read(counters)) {
            self.sample(name, &[(label, value)], count);
        }
    }

    fn histogram(&mut self, name: &str, help: &str, snapshot: &HistogramSnapshot) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound_us, count) in snapshot.cumulative() {
            let le = seconds(bound_us).to_string();
            self.sample(&bucket, &[("le", &le)], count);
        }
        let count = snapshot.count();
        self.sample(&bucket, &[("le", "+Inf")], count);
        self.sample(&format!("{name}_sum"), &[], seconds(snapshot.sum_us));
        self.sample(&format!("{name}_count"), &[], count);
    }
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn id_or_minus_one<T: Into<i64>>(value: Option<T>) -> i64 {
    value.map_or(-1, Into::into)
}

/// Everything `GET /metrics` returns: the node's state as the Raft thread
/// last published it, then its counters.
pub fn render(metrics: &Metrics, status: &NodeStatus) -> String {
    let mut out = Text(String::with_capacity(16 * 1024));
    state(&mut out, status);
    elections(&mut out, metrics);
    requests(&mut out, metrics);
    wal(&mut out, metrics);
    clients(&mut out, metrics);
    peers(&mut out, metrics);
    out.0
}

fn state(out: &mut Text, status: &NodeStatus) {
    out.header(
        "sraft_node_info",
        "gauge",
        "This node's id, mode (s-raft or original) and version; always 1.",
    );
    let id = status.node_id.to_string();
    let mode = if status.original_mode {
        "original"
    } else {
        "s-raft"
    };
    out.sample(
        "sraft_node_info",
        &[
            ("node_id", &id),
            ("mode", mode),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        1,
    );
    out.gauge("sraft_term", "The current Raft term.", status.term.0);
    out.header("sraft_role", "gauge", "1 for this node's current role.");
    for role in ROLES {
        out.sample(
            "sraft_role",
            &[("role", role)],
            u8::from(status.role == role),
        );
    }
    out.gauge(
        "sraft_leader_id",
        "The node this one takes for leader, -1 if none.",
        id_or_minus_one(status.leader.map(|l| l.0 as i64)),
    );
    out.gauge(
        "sraft_commit_index",
        "The highest log index known committed.",
        status.commit_index.0,
    );
    out.gauge(
        "sraft_applied_index",
        "The highest log index applied to the state machine.",
        status.applied_index.0,
    );
    out.gauge(
        "sraft_last_log_index",
        "The index of the last entry in this node's log.",
        status.last_log_index.0,
    );
    out.gauge(
        "sraft_log_first_index",
        "The first index still in the log (after the newest snapshot).",
        status.log_first_index.0,
    );
    out.gauge(
        "sraft_log_bytes",
        "Bytes of the entries held in the log.",
        status.log_bytes,
    );
    out.gauge(
        "sraft_snapshot_index",
        "The last index the newest snapshot covers (0: none).",
        status.snapshot_index.0,
    );
    out.gauge(
        "sraft_snapshot_bytes",
        "Bytes of the newest snapshot file (0: none).",
        status.snapshot_bytes,
    );
    out.gauge(
        "sraft_subleader_rank",
        "This follower's sub-leader rank (0 primary, 1 secondary), -1 if none.",
        id_or_minus_one(status.subleader_rank.map(|r| r as i64)),
    );
    out.header(
        "sraft_follower_match_index",
        "gauge",
        "Leader only: the log index each follower is known to hold.",
    );
    for (peer, index) in &status.followers {
        out.sample(
            "sraft_follower_match_index",
            &[("peer", &peer.to_string())],
            index.0,
        );
    }
    out.header(
        "sraft_subleader_rtt_seconds",
        "gauge",
        "Leader only: the smoothed round-trip time to each sub-leader, by rank.",
    );
    for (rank, (peer, rtt_us)) in status.subleaders.iter().enumerate() {
        if let Some(us) = rtt_us {
            let (peer, rank) = (peer.to_string(), rank.to_string());
            out.sample(
                "sraft_subleader_rtt_seconds",
                &[("peer", &peer), ("rank", &rank)],
                seconds(*us),
            );
        }
    }
}

fn elections(out: &mut Text, m: &Metrics) {
    out.counters(
        "sraft_elections_total",
        "RequestVote rounds this node started, each in a new term, by kind.",
        "kind",
        &ELECTION_KINDS,
        &m.elections,
    );
    out.counters(
        "sraft_pre_vote_rounds_total",
        "PreVote rounds this node started (no new term), by kind.",
        "kind",
        &ELECTION_KINDS,
        &m.pre_votes,
    );
    out.counters(
        "sraft_elections_won_total",
        "Elections this node won, by kind.",
        "kind",
        &ELECTION_KINDS,
        &m.elections_won,
    );
    out.histogram(
        "sraft_promotion_duration_seconds",
        "A sub-leader's won election, from its first round to leadership.",
        &m.promotion.snapshot(),
    );
    out.histogram(
        "sraft_failover_duration_seconds",
        "A won election, from the last message of the previous leader to leadership.",
        &m.failover.snapshot(),
    );
    out.counter(
        "sraft_leader_changes_total",
        "Times this node learned of a new leader (itself included).",
        &m.leader_changes,
    );
    out.counter(
        "sraft_step_downs_total",
        "Times this node stopped leading.",
        &m.step_downs,
    );
    out.counter(
        "sraft_crash_hints_total",
        "Leader connections closed with a refused reconnect (DESIGN.md 3.5).",
        &m.crash_hints,
    );
    out.counter(
        "sraft_subleader_assignments_total",
        "Times this node, as leader, changed its sub-leader ranking.",
        &m.subleader_assignments,
    );
}

fn requests(out: &mut Text, m: &Metrics) {
    out.counters(
        "sraft_proposals_total",
        "Writes handed to the Raft thread, by outcome (ok: committed and applied).",
        "outcome",
        &OUTCOMES,
        &m.proposals,
    );
    out.histogram(
        "sraft_commit_latency_seconds",
        "A write that succeeded, from the Raft thread's receipt to its answer.",
        &m.commit.snapshot(),
    );
    out.counters(
        "sraft_reads_total",
        "Linearizable reads handed to the Raft thread, by outcome.",
        "outcome",
        &OUTCOMES,
        &m.reads,
    );
    out.histogram(
        "sraft_read_latency_seconds",
        "A read that was served, from the Raft thread's receipt to its answer.",
        &m.read.snapshot(),
    );
}

fn wal(out: &mut Text, m: &Metrics) {
    out.counter(
        "sraft_wal_fsyncs_total",
        "WAL group commits: one record write and one fdatasync each.",
        &m.wal_syncs,
    );
    out.histogram(
        "sraft_wal_fsync_duration_seconds",
        "One WAL group commit: the record write and its fdatasync.",
        &m.wal_sync.snapshot(),
    );
    out.counter(
        "sraft_wal_writes_total",
        "Writes of the Raft thread merged into WAL group commits.",
        &m.wal_writes,
    );
    out.counter(
        "sraft_wal_entries_total",
        "Log entries written to the WAL.",
        &m.wal_entries,
    );
}

fn clients(out: &mut Text, m: &Metrics) {
    let mut names: Vec<&str> = super::COMMANDS.to_vec();
    names.push("other");
    debug_assert_eq!(names.len(), OTHER_COMMAND + 1);
    out.counters(
        "sraft_client_commands_total",
        "Client commands received, by name (other: unknown names).",
        "command",
        &names,
        &m.commands,
    );
    out.counters(
        "sraft_forwards_sent_total",
        "Requests this follower relayed to the leader, by kind.",
        "kind",
        &FORWARD_KINDS,
        &m.forwards_sent,
    );
    out.counters(
        "sraft_forwards_failed_total",
        "Relayed requests whose forward broke (then retried), by kind.",
        "kind",
        &FORWARD_KINDS,
        &m.forwards_failed,
    );
    out.counters(
        "sraft_forwards_received_total",
        "Requests other nodes relayed to this one, by kind.",
        "kind",
        &FORWARD_KINDS,
        &m.forwards_received,
    );
    out.counter(
        "sraft_client_connections_total",
        "Client connections accepted.",
        &m.connections_accepted,
    );
    out.counter(
        "sraft_client_connections_refused_total",
        "Client connections refused at the connection limit.",
        &m.connections_refused,
    );
    out.gauge(
        "sraft_client_connections",
        "Client connections open.",
        m.connections_open.load(Ordering::Relaxed),
    );
}

/// Name, type, help and the value of one per-peer series.
type PeerSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PeerStats) -> u64,
);

fn peers(out: &mut Text, m: &Metrics) {
    let stats = m.peer_stats();
    let series: [PeerSeries; 5] = [
        (
            "sraft_peer_messages_sent_total",
            "counter",
            "Messages written to each peer's socket.",
            |s| s.sent,
        ),
        (
            "sraft_peer_bytes_sent_total",
            "counter",
            "Bytes of frames written to each peer's socket.",
            |s| s.bytes_sent,
        ),
        (
            "sraft_peer_messages_dropped_total",
            "counter",
            "Messages to each peer dropped (queue full, stale, failed write); Raft retransmits.",
            |s| s.dropped,
        ),
        (
            "sraft_peer_reconnects_total",
            "counter",
            "Successful reconnects to each peer after the first connect.",
            |s| s.reconnects,
        ),
        (
            "sraft_peer_connected",
            "gauge",
            "1 while the outbound connection to each peer is up.",
            |s| u64::from(s.connected),
        ),
    ];
    for (name, kind, help, value) in series {
        out.header(name, kind, help);
        for (peer, s) in &stats {
            out.sample(name, &[("peer", &peer.to_string())], value(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ElectionKind, LogIndex, NodeId, Term};

    fn status() -> NodeStatus {
        NodeStatus {
            node_id: 2,
            role: "leader",
            term: Term(7),
            leader: Some(NodeId(2)),
            commit_index: LogIndex(40),
            applied_index: LogIndex(39),
            last_log_index: LogIndex(41),
            subleaders: vec![(NodeId(4), Some(250)), (NodeId(0), None)],
            followers: vec![(NodeId(0), LogIndex(38)), (NodeId(4), LogIndex(41))],
            ..NodeStatus::default()
        }
    }

    /// Every non-comment line is `name{labels} value` with a number value,
    /// and every sample's metric has a TYPE line before it.
    fn check_format(text: &str) {
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "value of {line}");
            let name = series.split('{').next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| typed.iter().any(|t| t == b))
                .unwrap_or(name);
            assert!(typed.iter().any(|t| t == base), "no TYPE before {line}");
        }
    }

    #[test]
    fn state_and_counters_render_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.election_started(ElectionKind::SubLeader { rank: 0 }, false);
        metrics.election_won(
            ElectionKind::SubLeader { rank: 0 },
            Some(1_500),
            Some(170_000),
        );
        metrics.client_command(b"SET");
        let text = render(&metrics, &status());
        check_format(&text);
        for line in [
            "sraft_term 7",
            "sraft_role{role=\"leader\"} 1",
            "sraft_role{role=\"follower\"} 0",
            "sraft_leader_id 2",
            "sraft_commit_index 40",
            "sraft_subleader_rank -1",
            "sraft_follower_match_index{peer=\"0\"} 38",
            "sraft_subleader_rtt_seconds{peer=\"4\",rank=\"0\"} 0.00025",
            "sraft_elections_total{kind=\"subleader\"} 1",
            "sraft_elections_total{kind=\"fallback\"} 0",
            "sraft_elections_won_total{kind=\"subleader\"} 1",
            "sraft_promotion_duration_seconds_bucket{le=\"0.001\"} 0",
            "sraft_promotion_duration_seconds_bucket{le=\"0.0025\"} 1",
            "sraft_promotion_duration_seconds_bucket{le=\"+Inf\"} 1",
            "sraft_promotion_duration_seconds_count 1",
            "sraft_failover_duration_seconds_bucket{le=\"0.2\"} 1",
            "sraft_failover_duration_seconds_sum 0.17",
            "sraft_client_commands_total{command=\"set\"} 1",
            "sraft_node_info{node_id=\"2\",mode=\"s-raft\",version=\"",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "no line {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
