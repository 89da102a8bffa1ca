//! The event lines of the log. Where seed 001 (section 7) shows a line, ours
//! starts with exactly its text and puts any detail of sraft's after it, so
//! that the seed's habits (`grep "INSTANT PROMOTION SUCCESS" node.log`,
//! `tail -f node.log`) keep working:
//!
//! | seed 001 (and shared DESIGN.md 3) | sraft |
//! |---|---|
//! | `[ELECTION SUCCESS]` | `[ELECTION SUCCESS] Node 2 -> LEADER (term 1, initial)` |
//! | `[Leader X] Sub-leaders assigned` | `[Leader 2] Sub-leaders assigned (term 1): primary=Node 4 (rtt 0.212 ms), ...` |
//! | `[S-RAFT INSTANT PROMOTION] Node X` | `[S-RAFT INSTANT PROMOTION] Node 4 (primary) timer fired: pre-vote for term 2` |
//! | `[INSTANT PROMOTION SUCCESS] Node X -> LEADER` / `Time: 89.3ms` | `[INSTANT PROMOTION SUCCESS] Node 4 -> LEADER Time: 89.3ms (term 2, primary; since the old leader was last heard)` |
//! | `[FALLBACK ELECTION]` | `[FALLBACK ELECTION] Node 1: no sub-leader took over; pre-vote for term 3` |
//!
//! The seed prints `Time:` on a line of its own; here it joins the success
//! line, so that one `grep` finds both. It is the failover time as this node
//! saw it: from the last message of the old leader to leadership.

use crate::core::{ElectionKind, Event, NodeId, Term};
use log::Level;

/// The names the log and the metrics file give election kinds.
pub fn kind_name(kind: ElectionKind) -> &'static str {
    match kind {
        ElectionKind::Initial => "initial",
        ElectionKind::SubLeader { .. } => "subleader",
        ElectionKind::CrashHint { .. } => "crash_hint",
        ElectionKind::Fallback => "fallback",
        ElectionKind::Original => "original",
        ElectionKind::Transfer => "transfer",
        ElectionKind::HandOff { .. } => "hand_off",
    }
}

pub fn kind_rank(kind: ElectionKind) -> Option<usize> {
    match kind {
        ElectionKind::SubLeader { rank } | ElectionKind::CrashHint { rank } => Some(rank),
        ElectionKind::HandOff { rank } => rank,
        _ => None,
    }
}

/// A rank a node may not hold: a hand-off can go to an unranked voter.
fn held_rank_name(rank: Option<usize>) -> String {
    rank.map_or_else(|| "unranked".to_string(), rank_name)
}

/// Who a promotion's log lines say won: the rank, and for a hand-off that
/// it was one (an unranked voter can be handed the election too).
fn promotion_name(kind: ElectionKind) -> Option<String> {
    match kind {
        ElectionKind::SubLeader { rank } | ElectionKind::CrashHint { rank } => {
            Some(rank_name(rank))
        }
        ElectionKind::HandOff { rank } => Some(format!("{}, handed off", held_rank_name(rank))),
        _ => None,
    }
}

pub fn rank_name(rank: usize) -> String {
    match rank {
        0 => "primary".into(),
        1 => "secondary".into(),
        r => format!("rank {r}"),
    }
}

pub fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Formats one node's events. It remembers the term of the last pre-vote
/// round, so that the RequestVote round that follows it is told apart from
/// the start of an election: the seed's line marks the start only.
pub struct EventLines {
    id: NodeId,
    pre_vote_term: Option<Term>,
}

impl EventLines {
    pub fn new(id: NodeId) -> EventLines {
        EventLines {
            id,
            pre_vote_term: None,
        }
    }

    /// The lines `event` is logged as, in order, with their levels.
    pub fn lines(&mut self, event: &Event) -> Vec<(Level, String)> {
        let id = self.id;
        match event {
            Event::ElectionStarted {
                term,
                kind,
                pre_vote,
            } => {
                let follows_pre_vote = !pre_vote && self.pre_vote_term == Some(*term);
                self.pre_vote_term = pre_vote.then_some(*term);
                vec![(
                    Level::Info,
                    election_started(id, *term, *kind, *pre_vote, follows_pre_vote),
                )]
            }
            Event::BecameLeader {
                term,
                kind,
                leader_silence_us,
            } => became_leader(id, *term, *kind, *leader_silence_us),
            Event::SubleadersAssigned { term, ranks } => {
                vec![(Level::Info, subleaders_assigned(id, *term, ranks))]
            }
            Event::RankChanged { term, leader, rank } => vec![(
                Level::Debug,
                format!("Node {id}: sub-leader rank {rank:?} under leader {leader} in term {term}"),
            )],
            Event::LeaderChanged { term, leader } => vec![(
                Level::Info,
                match leader {
                    Some(l) => format!("Node {id}: leader is Node {l} (term {term})"),
                    None => format!("Node {id}: no leader (term {term})"),
                },
            )],
            Event::SteppedDown { term, reason } => vec![(
                Level::Info,
                format!("Node {id}: stepped down in term {term}: {reason}"),
            )],
            Event::LeaderUnreachable { term, leader } => vec![(
                Level::Info,
                format!(
                    "[CRASH HINT] Node {id}: leader Node {leader}'s connection closed and a reconnect was refused (term {term})"
                ),
            )],
            Event::SnapshotSaved {
                index,
                term,
                file_bytes,
                took_us,
            } => vec![(
                Level::Info,
                format!(
                    "[SNAPSHOT] Node {id}: index {index} term {term}, {file_bytes} bytes, {:.1} ms",
                    *took_us as f64 / 1000.0
                ),
            )],
            Event::SnapshotInstalled {
                index,
                term,
                file_bytes,
            } => vec![(
                Level::Info,
                format!(
                    "[SNAPSHOT] Node {id}: installed index {index} term {term} from the leader, {file_bytes} bytes"
                ),
            )],
            Event::ConfigChanged { index, config } => vec![(
                Level::Info,
                format!(
                    "[MEMBERSHIP] Node {id}: configuration at index {index}: voters {:?}, learners {:?}",
                    ids(&config.voters),
                    ids(&config.learners)
                ),
            )],
            Event::RemovedSelf { index } => vec![(
                Level::Warn,
                format!(
                    "[MEMBERSHIP] Node {id}: removed from the cluster (configuration at index {index} committed); stopping"
                ),
            )],
            Event::VoteGranted { term, candidate } => vec![(
                Level::Info,
                format!("[VOTE] Node {id}: voted for node {candidate} in term {term}"),
            )],
        }
    }
}

fn ids(ids: &[NodeId]) -> Vec<u64> {
    ids.iter().map(|id| id.0).collect()
}

fn election_started(
    id: NodeId,
    term: Term,
    kind: ElectionKind,
    pre_vote: bool,
    follows_pre_vote: bool,
) -> String {
    let phase = if pre_vote { "pre-vote" } else { "vote" };
    if follows_pre_vote {
        let rank = kind_rank(kind)
            .map(|r| format!(", {}", rank_name(r)))
            .unwrap_or_default();
        return format!(
            "[ELECTION] Node {id}: pre-vote won; vote for term {term} ({}{rank})",
            kind_name(kind)
        );
    }
    match kind {
        ElectionKind::SubLeader { rank } => format!(
            "[S-RAFT INSTANT PROMOTION] Node {id} ({}) timer fired: {phase} for term {term}",
            rank_name(rank)
        ),
        ElectionKind::CrashHint { rank } => format!(
            "[S-RAFT INSTANT PROMOTION] Node {id} ({}) saw the leader's process gone: {phase} for term {term}",
            rank_name(rank)
        ),
        ElectionKind::HandOff { rank } => format!(
            "[S-RAFT INSTANT PROMOTION] Node {id} ({}) was handed the election by a candidate behind its log: {phase} for term {term}",
            held_rank_name(rank)
        ),
        ElectionKind::Fallback => format!(
            "[FALLBACK ELECTION] Node {id}: no sub-leader took over; {phase} for term {term}"
        ),
        ElectionKind::Initial | ElectionKind::Original | ElectionKind::Transfer => format!(
            "[ELECTION] Node {id}: {phase} for term {term} ({})",
            kind_name(kind)
        ),
    }
}

fn became_leader(
    id: NodeId,
    term: Term,
    kind: ElectionKind,
    leader_silence_us: Option<u64>,
) -> Vec<(Level, String)> {
    let mut lines = vec![(
        Level::Info,
        format!(
            "[ELECTION SUCCESS] Node {id} -> LEADER (term {term}, {})",
            kind_name(kind)
        ),
    )];
    if let Some(who) = promotion_name(kind) {
        // The seed's format: milliseconds, one decimal, no space.
        let time = leader_silence_us
            .map(|us| format!("{:.1}ms", ms(us)))
            .unwrap_or_else(|| "-".into());
        lines.push((
            Level::Info,
            format!(
                "[INSTANT PROMOTION SUCCESS] Node {id} -> LEADER Time: {time} (term {term}, {who}; since the old leader was last heard)"
            ),
        ));
    }
    lines
}

fn subleaders_assigned(id: NodeId, term: Term, ranks: &[(NodeId, u64)]) -> String {
    let list: Vec<String> = ranks
        .iter()
        .enumerate()
        .map(|(i, (node, rtt))| format!("{}=Node {node} (rtt {:.3} ms)", rank_name(i), ms(*rtt)))
        .collect();
    let list = if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    };
    format!("[Leader {id}] Sub-leaders assigned (term {term}): {list}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 001, section 7.1 and 7.2, verbatim (`X` is the node id), and
    /// shared DESIGN.md 3.4 for the fallback.
    const SEED_ELECTION_SUCCESS: &str = "[ELECTION SUCCESS]";
    const SEED_SUBLEADERS_ASSIGNED: &str = "[Leader X] Sub-leaders assigned";
    const SEED_PROMOTION: &str = "[S-RAFT INSTANT PROMOTION] Node X";
    const SEED_PROMOTION_SUCCESS: &str = "[INSTANT PROMOTION SUCCESS] Node X -> LEADER";
    const SEED_FALLBACK: &str = "[FALLBACK ELECTION]";
    /// Issue 13's one-line form of the seed's success line and its `Time:`.
    const ISSUE_PROMOTION_SUCCESS: &str =
        "[INSTANT PROMOTION SUCCESS] Node 3 -> LEADER Time: 89.3ms";

    fn seed(text: &str, id: u64) -> String {
        text.replace('X', &id.to_string())
    }

    fn texts(lines: Vec<(Level, String)>) -> Vec<String> {
        lines.into_iter().map(|(_, line)| line).collect()
    }

    fn started(term: u64, kind: ElectionKind, pre_vote: bool) -> Event {
        Event::ElectionStarted {
            term: Term(term),
            kind,
            pre_vote,
        }
    }

    #[test]
    fn a_promotion_logs_the_seeds_lines_with_the_time_on_the_success_line() {
        let mut lines = EventLines::new(NodeId(3));
        let primary = ElectionKind::SubLeader { rank: 0 };
        let start = texts(lines.lines(&started(5, primary, true)));
        assert_eq!(start.len(), 1);
        assert!(start[0].starts_with(&seed(SEED_PROMOTION, 3)), "{start:?}");
        let won = texts(lines.lines(&Event::BecameLeader {
            term: Term(5),
            kind: primary,
            leader_silence_us: Some(89_300),
        }));
        assert_eq!(won.len(), 2, "{won:?}");
        assert!(won[0].starts_with(SEED_ELECTION_SUCCESS), "{won:?}");
        assert!(
            won[1].starts_with(&seed(SEED_PROMOTION_SUCCESS, 3)),
            "{won:?}"
        );
        assert!(won[1].starts_with(ISSUE_PROMOTION_SUCCESS), "{won:?}");
    }

    #[test]
    fn a_crash_hint_promotion_is_an_instant_promotion_too() {
        let mut lines = EventLines::new(NodeId(4));
        let secondary = ElectionKind::CrashHint { rank: 1 };
        let start = texts(lines.lines(&started(2, secondary, true)));
        assert!(start[0].starts_with(&seed(SEED_PROMOTION, 4)), "{start:?}");
        let won = texts(lines.lines(&Event::BecameLeader {
            term: Term(2),
            kind: secondary,
            leader_silence_us: Some(8_049),
        }));
        assert!(
            won[1].starts_with("[INSTANT PROMOTION SUCCESS] Node 4 -> LEADER Time: 8.0ms"),
            "{won:?}"
        );
    }

    #[test]
    fn only_the_start_of_an_election_carries_the_seeds_tag() {
        let mut lines = EventLines::new(NodeId(1));
        let fallback = texts(lines.lines(&started(3, ElectionKind::Fallback, true)));
        assert!(fallback[0].starts_with(SEED_FALLBACK), "{fallback:?}");
        let vote = texts(lines.lines(&started(3, ElectionKind::Fallback, false)));
        assert!(
            vote[0].starts_with("[ELECTION] Node 1: pre-vote won"),
            "{vote:?}"
        );
        // Without PreVote the vote round is the start.
        let mut lines = EventLines::new(NodeId(1));
        let direct = texts(lines.lines(&started(3, ElectionKind::Fallback, false)));
        assert!(direct[0].starts_with(SEED_FALLBACK), "{direct:?}");
        let promotion = texts(lines.lines(&started(4, ElectionKind::SubLeader { rank: 0 }, false)));
        assert!(
            promotion[0].starts_with(&seed(SEED_PROMOTION, 1)),
            "{promotion:?}"
        );
    }

    #[test]
    fn an_ordinary_election_has_no_promotion_line() {
        let mut lines = EventLines::new(NodeId(0));
        let won = texts(lines.lines(&Event::BecameLeader {
            term: Term(1),
            kind: ElectionKind::Initial,
            leader_silence_us: None,
        }));
        assert_eq!(
            won,
            vec!["[ELECTION SUCCESS] Node 0 -> LEADER (term 1, initial)"]
        );
    }

    #[test]
    fn a_designation_logs_the_seeds_line() {
        let mut lines = EventLines::new(NodeId(2));
        let assigned = texts(lines.lines(&Event::SubleadersAssigned {
            term: Term(1),
            ranks: vec![(NodeId(4), 212), (NodeId(0), 305)],
        }));
        assert!(
            assigned[0].starts_with(&seed(SEED_SUBLEADERS_ASSIGNED, 2)),
            "{assigned:?}"
        );
        assert_eq!(
            assigned[0],
            "[Leader 2] Sub-leaders assigned (term 1): primary=Node 4 (rtt 0.212 ms), secondary=Node 0 (rtt 0.305 ms)"
        );
    }
}
