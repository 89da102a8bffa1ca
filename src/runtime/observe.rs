//! Turns core events into the seed's log lines (`tail -f node.log` tells the
//! story; `log_lines.rs`), into the counters of `/metrics` and INFO, and,
//! with `--metrics-file`, into one JSON object per line for the experiments
//! to read.

use super::log_lines::{EventLines, kind_name, kind_rank, ms};
use crate::core::{Event, NodeId, Term};
use crate::metrics::Metrics;
use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Observer {
    id: NodeId,
    lines: EventLines,
    counters: Arc<Metrics>,
    /// The term this node last campaigned for, and when its first round
    /// for it (pre-vote, retries, vote) started: a promotion's duration.
    attempt: Option<(Term, u64)>,
    metrics: Option<File>,
}

impl Observer {
    pub fn new(
        id: NodeId,
        metrics_file: Option<&Path>,
        counters: Arc<Metrics>,
    ) -> io::Result<Observer> {
        let metrics = match metrics_file {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Some(OpenOptions::new().create(true).append(true).open(path)?)
            }
            None => None,
        };
        Ok(Observer {
            id,
            lines: EventLines::new(id),
            counters,
            attempt: None,
            metrics,
        })
    }

    pub fn on_event(&mut self, now_us: u64, event: &Event) {
        for (level, line) in self.lines.lines(event) {
            log::log!(level, "{line}");
        }
        self.count(now_us, event);
        if self.metrics.is_some() {
            self.write_metric(now_us, record(event));
        }
    }

    fn count(&mut self, now_us: u64, event: &Event) {
        let m = &self.counters;
        match event {
            Event::ElectionStarted {
                term,
                kind,
                pre_vote,
            } => {
                if self.attempt.is_none_or(|(t, _)| t != *term) {
                    self.attempt = Some((*term, now_us));
                }
                m.election_started(*kind, *pre_vote);
            }
            Event::BecameLeader {
                term,
                kind,
                leader_silence_us,
            } => {
                let attempt_us = self
                    .attempt
                    .filter(|(t, _)| t == term)
                    .map(|(_, started)| now_us.saturating_sub(started));
                m.election_won(*kind, attempt_us, *leader_silence_us);
            }
            Event::SubleadersAssigned { .. } => m.subleaders_assigned(),
            Event::RankChanged { .. } => {}
            Event::LeaderChanged { leader, .. } => {
                if leader.is_some() {
                    m.leader_changed();
                }
            }
            Event::SteppedDown { .. } => m.stepped_down(),
            Event::LeaderUnreachable { .. } => m.crash_hint(),
            Event::SnapshotSaved { .. }
            | Event::SnapshotInstalled { .. }
            | Event::ConfigChanged { .. }
            | Event::RemovedSelf { .. }
            | Event::VoteGranted { .. } => {}
        }
    }

    fn write_metric(&mut self, now_us: u64, mut record: Value) {
        let Some(file) = self.metrics.as_mut() else {
            return;
        };
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        record["node"] = json!(self.id.0);
        record["unix_ms"] = json!(unix_ms);
        record["mono_us"] = json!(now_us);
        let mut line = record.to_string();
        line.push('\n');
        if let Err(e) = file.write_all(line.as_bytes()) {
            // Metrics are an aid, not part of the node's duty: warn, go on.
            log::warn!("cannot write metrics: {e}; metrics disabled");
            self.metrics = None;
        }
    }
}

/// The `--metrics-file` object of one event.
fn record(event: &Event) -> Value {
    match event {
        Event::ElectionStarted {
            term,
            kind,
            pre_vote,
        } => json!({"event": "election_started", "term": term.0, "kind": kind_name(*kind),
                    "rank": kind_rank(*kind), "pre_vote": pre_vote}),
        Event::BecameLeader {
            term,
            kind,
            leader_silence_us,
        } => json!({"event": "became_leader", "term": term.0, "kind": kind_name(*kind),
                    "rank": kind_rank(*kind), "promotion": kind.is_promotion(),
                    "leader_silence_ms": leader_silence_us.map(ms)}),
        Event::SubleadersAssigned { term, ranks } => {
            let ranks: Vec<Value> = ranks
                .iter()
                .map(|(node, rtt)| json!({"node": node.0, "rtt_ms": ms(*rtt)}))
                .collect();
            json!({"event": "subleaders_assigned", "term": term.0, "ranks": ranks})
        }
        Event::RankChanged { term, leader, rank } => {
            json!({"event": "rank_changed", "term": term.0, "leader": leader.0, "rank": rank})
        }
        Event::LeaderChanged { term, leader } => {
            json!({"event": "leader_changed", "term": term.0, "leader": leader.map(|l| l.0)})
        }
        Event::SteppedDown { term, reason } => {
            json!({"event": "stepped_down", "term": term.0, "reason": reason})
        }
        Event::LeaderUnreachable { term, leader } => {
            json!({"event": "leader_unreachable", "term": term.0, "leader": leader.0})
        }
        Event::SnapshotSaved {
            index,
            term,
            file_bytes,
            took_us,
        } => json!({"event": "snapshot_saved", "index": index.0, "term": term.0,
                    "bytes": file_bytes, "took_ms": ms(*took_us)}),
        Event::SnapshotInstalled {
            index,
            term,
            file_bytes,
        } => json!({"event": "snapshot_installed", "index": index.0, "term": term.0,
                    "bytes": file_bytes}),
        Event::ConfigChanged { index, config } => {
            let ids = |ids: &[crate::core::NodeId]| ids.iter().map(|id| id.0).collect::<Vec<_>>();
            json!({"event": "config_changed", "index": index.0,
                   "voters": ids(&config.voters), "learners": ids(&config.learners)})
        }
        Event::RemovedSelf { index } => json!({"event": "removed_self", "index": index.0}),
        Event::VoteGranted { term, candidate } => {
            json!({"event": "vote_granted", "term": term.0, "candidate": candidate.0})
        }
    }
}
