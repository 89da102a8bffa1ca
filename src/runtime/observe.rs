//! Turns core events into the seed's log lines (`tail -f node.log` tells the
//! story) and, with `--metrics-file`, one JSON object per line for the
//! experiments to read.

use crate::core::{ElectionKind, Event, NodeId};
use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Observer {
    id: NodeId,
    metrics: Option<File>,
}

fn kind_name(kind: ElectionKind) -> &'static str {
    match kind {
        ElectionKind::Initial => "initial",
        ElectionKind::SubLeader { .. } => "subleader",
        ElectionKind::CrashHint { .. } => "crash_hint",
        ElectionKind::Fallback => "fallback",
        ElectionKind::Original => "original",
        ElectionKind::Transfer => "transfer",
    }
}

fn kind_rank(kind: ElectionKind) -> Option<usize> {
    match kind {
        ElectionKind::SubLeader { rank } | ElectionKind::CrashHint { rank } => Some(rank),
        _ => None,
    }
}

fn rank_name(rank: usize) -> String {
    match rank {
        0 => "primary".into(),
        1 => "secondary".into(),
        r => format!("rank {r}"),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Observer {
    pub fn new(id: NodeId, metrics_file: Option<&Path>) -> io::Result<Observer> {
        let metrics = match metrics_file {
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Some(OpenOptions::new().create(true).append(true).open(path)?)
            }
            None => None,
        };
        Ok(Observer { id, metrics })
    }

    pub fn on_event(&mut self, now_us: u64, event: &Event) {
        let id = self.id;
        let record = match event {
            Event::ElectionStarted {
                term,
                kind,
                pre_vote,
            } => {
                let phase = if *pre_vote { "pre-vote" } else { "vote" };
                match kind {
                    ElectionKind::Fallback if *pre_vote => log::info!(
                        "[FALLBACK ELECTION] Node {id}: no sub-leader took over; ordinary election for term {term}"
                    ),
                    ElectionKind::SubLeader { rank } => log::info!(
                        "[PROMOTION] Node {id} ({}) timer fired: {phase} for term {term}",
                        rank_name(*rank)
                    ),
                    ElectionKind::CrashHint { rank } => log::info!(
                        "[PROMOTION] Node {id} ({}) saw the leader's process gone: {phase} for term {term}",
                        rank_name(*rank)
                    ),
                    _ => log::info!(
                        "[ELECTION] Node {id}: {phase} for term {term} ({})",
                        kind_name(*kind)
                    ),
                }
                json!({"event": "election_started", "term": term.0, "kind": kind_name(*kind),
                       "rank": kind_rank(*kind), "pre_vote": pre_vote})
            }
            Event::BecameLeader {
                term,
                kind,
                leader_silence_us,
            } => {
                log::info!(
                    "[ELECTION SUCCESS] Node {id} -> LEADER for term {term} ({})",
                    kind_name(*kind)
                );
                if let Some(rank) = kind_rank(*kind) {
                    let silence = leader_silence_us
                        .map(|us| format!("{:.3}", ms(us)))
                        .unwrap_or_else(|| "-".into());
                    log::info!(
                        "[INSTANT PROMOTION SUCCESS] Node {id} -> LEADER (term {term}, {}) Time: {silence} ms since the old leader was last heard",
                        rank_name(rank)
                    );
                }
                json!({"event": "became_leader", "term": term.0, "kind": kind_name(*kind),
                       "rank": kind_rank(*kind), "promotion": kind.is_promotion(),
                       "leader_silence_ms": leader_silence_us.map(ms)})
            }
            Event::SubleadersAssigned { term, ranks } => {
                let list: Vec<String> = ranks
                    .iter()
                    .enumerate()
                    .map(|(i, (node, rtt))| {
                        format!("{}=Node {node} (rtt {:.3} ms)", rank_name(i), ms(*rtt))
                    })
                    .collect();
                log::info!(
                    "[Leader {id}] Sub-leaders assigned (term {term}): {}",
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                );
                let ranks: Vec<Value> = ranks
                    .iter()
                    .map(|(node, rtt)| json!({"node": node.0, "rtt_ms": ms(*rtt)}))
                    .collect();
                json!({"event": "subleaders_assigned", "term": term.0, "ranks": ranks})
            }
            Event::RankChanged { term, leader, rank } => {
                log::debug!(
                    "Node {id}: sub-leader rank {rank:?} under leader {leader} in term {term}"
                );
                json!({"event": "rank_changed", "term": term.0, "leader": leader.0, "rank": rank})
            }
            Event::LeaderChanged { term, leader } => {
                match leader {
                    Some(l) => log::info!("Node {id}: leader is Node {l} (term {term})"),
                    None => log::info!("Node {id}: no leader (term {term})"),
                }
                json!({"event": "leader_changed", "term": term.0, "leader": leader.map(|l| l.0)})
            }
            Event::SteppedDown { term, reason } => {
                log::info!("Node {id}: stepped down in term {term}: {reason}");
                json!({"event": "stepped_down", "term": term.0, "reason": reason})
            }
            Event::LeaderUnreachable { term, leader } => {
                log::info!(
                    "[CRASH HINT] Node {id}: leader Node {leader}'s connection closed and a reconnect was refused (term {term})"
                );
                json!({"event": "leader_unreachable", "term": term.0, "leader": leader.0})
            }
        };
        self.write_metric(now_us, record);
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
