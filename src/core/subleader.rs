//! S-Raft sub-leaders (DESIGN.md 3.1-3.2): the leader ranks caught-up,
//! responsive followers by smoothed RTT; followers honour a rank only within
//! its (term, leader, configuration) scope.

use super::message::Designation;
use super::progress::ProgressState;
use super::raft::{Raft, RankScope};
use super::ready::Event;
use super::types::{LogIndex, NodeId};

/// Ranks are reconsidered for speed at most this often: the seed's
/// heartbeat, the cadence they had before issue 13. Re-ranking at every
/// 10 ms heartbeat, on 5x as many snapshots of noisy loopback RTTs, doubled
/// the designation changes under the same load (EXPERIMENTS.md 10: 3.4 a
/// second against 1.7 with the seed's timings), and every change is a
/// moment when the leader may freeze with the new ranks delivered to some
/// followers only.
const RERANK_INTERVAL_US: u64 = 50_000;

/// A faster challenger replaces a holder (or a lower rank a higher one)
/// only after the same one has been faster at every re-ranking for this
/// long. The margin alone did not hold: an hour's soak at load 20 on
/// loopback, where every follower is equally near and the smoothed RTTs
/// (about 80 ms of memory) jitter by more than 25%, changed the
/// designation 8 times a second, nearly all on the re-ranking grid
/// (EXPERIMENTS.md 10). A real difference, another zone's 1-2 ms against
/// 0.1 ms, wins at every check and moves the ranks after this delay; a
/// holder that falls behind or goes quiet is still replaced at the next
/// heartbeat.
const RERANK_SUSTAIN_US: u64 = 1_000_000;

/// What a re-ranking finds of the current designation.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Standing {
    /// Every holder eligible, the ranks full, nobody faster by the margin.
    Holds,
    /// As `Holds`, except that someone is faster by the margin: the fastest
    /// non-holder that beats the slowest holder, or `None` when only a
    /// lower rank beats a higher one.
    Challenged(Option<NodeId>),
    /// A holder fell behind or went quiet, or a rank is free.
    Vacant,
}

impl Raft {
    /// Leader, every heartbeat: recompute the ranking. A follower that fell
    /// behind or went quiet drops out, and the heartbeat withdraws its rank.
    pub(super) fn update_designation(&mut self) {
        if !self.config.enable_subleader {
            return;
        }
        let responsive_us = self.config.primary_timeout_ms_min * 1000;
        let commit = self.log.commit();
        let now = self.now_us;
        let mut eligible: Vec<(u64, NodeId)> = self
            .progress
            .iter()
            // Voters only: a learner is never a sub-leader (DESIGN.md 8).
            .filter(|(id, _)| self.cluster.is_voter(**id))
            // Caught up: holds everything committed. A current holder under
            // steady writes trails the commit index by the entries in
            // flight, so it stays eligible while it is being replicated to
            // (everything committed already sent, acks arriving); otherwise
            // every burst of writes would reshuffle the ranks.
            .filter(|(id, pr)| {
                pr.match_index >= commit
                    || (self.designation.contains(id)
                        && pr.state == ProgressState::Replicate
                        && pr.next_index > commit)
            })
            .filter(|(_, pr)| {
                pr.last_ack_us
                    .is_some_and(|t| now.saturating_sub(t) <= responsive_us)
            })
            .filter_map(|(id, pr)| pr.srtt_us.map(|rtt| (rtt, *id)))
            .collect();
        eligible.sort();
        let count = self.config.subleader_count(self.cluster.voters.len());
        // A holder that fell behind or went quiet, or a free rank, is acted
        // on at once; a faster challenger is looked at only every
        // RERANK_INTERVAL_US, and wins once it has been the same one at
        // every look for RERANK_SUSTAIN_US.
        let standing = self.standing(&eligible, count);
        if standing != Standing::Vacant && now < self.rerank_due_us {
            return;
        }
        self.rerank_due_us = now + RERANK_INTERVAL_US;
        match standing {
            Standing::Holds => {
                self.challenge = None;
                return;
            }
            Standing::Challenged(by) => {
                let since = match self.challenge {
                    Some((who, since)) if who == by => since,
                    _ => now,
                };
                self.challenge = Some((by, since));
                if now - since < RERANK_SUSTAIN_US {
                    return;
                }
            }
            Standing::Vacant => {}
        }
        self.challenge = None;
        eligible.truncate(count);
        let ranks: Vec<NodeId> = eligible.iter().map(|(_, id)| *id).collect();
        if ranks != self.designation {
            self.designation = ranks;
            let term = self.term;
            let ranks = eligible.into_iter().map(|(rtt, id)| (id, rtt)).collect();
            self.out
                .events
                .push(Event::SubleadersAssigned { term, ranks });
        }
    }

    /// Hysteresis: RTTs on a LAN differ by microseconds and jitter more
    /// than that, so a ranking by raw SRTT would flap every heartbeat. The
    /// current ranks hold while every holder is still eligible and no one
    /// beats a holder (or a lower rank beats a higher one) by more than
    /// `RTT_SWITCH_PERCENT`; a challenger must also last
    /// (`RERANK_SUSTAIN_US`).
    fn standing(&self, eligible: &[(u64, NodeId)], count: usize) -> Standing {
        const RTT_SWITCH_PERCENT: u64 = 25;
        let better = |a: u64, b: u64| a * 100 < b * (100 - RTT_SWITCH_PERCENT);
        let rtt_of = |id: NodeId| eligible.iter().find(|(_, e)| *e == id).map(|(rtt, _)| *rtt);
        let held: Option<Vec<u64>> = self.designation.iter().map(|id| rtt_of(*id)).collect();
        let Some(held) = held else {
            return Standing::Vacant; // a holder fell behind or went quiet
        };
        if held.len() < count.min(eligible.len()) {
            return Standing::Vacant; // room for more sub-leaders
        }
        let in_order = held.windows(2).all(|w| !better(w[1], w[0]));
        let worst = held.iter().copied().max().unwrap_or(0);
        // `eligible` is sorted: the first one found is the fastest.
        let challenger = eligible
            .iter()
            .find(|(rtt, id)| !self.designation.contains(id) && better(*rtt, worst))
            .map(|(_, id)| *id);
        match (challenger, in_order) {
            (Some(id), _) => Standing::Challenged(Some(id)),
            (None, false) => Standing::Challenged(None),
            (None, true) => Standing::Holds,
        }
    }

    pub(super) fn current_designation(&self) -> Option<Designation> {
        self.config.enable_subleader.then(|| Designation {
            config_index: self.cluster_index,
            ranks: self.designation.clone(),
        })
    }

    /// Whether the leader's configuration, the one at `config_index` of its
    /// log, is ours. A node knows a configuration whose entry was compacted
    /// by its snapshot's index instead (`Raft::new`, a snapshot install), so
    /// after a restart from a snapshot one node says 100000 where the others
    /// say 0 for the same configuration; comparing indexes alone made such a
    /// follower ignore every rank, and the crash paths of issue 13's
    /// experiment fell to the fallback election. Designations only time
    /// elections (DESIGN.md 3.7), but the match is exact all the same:
    ///
    /// - the same index names the same configuration (for an entry not yet
    ///   committed too: the leader's log holds it, so ours matches there);
    /// - or both indexes are within what we committed. Our committed prefix
    ///   is the leader's (Leader Completeness); the leader has no
    ///   configuration entry after `config_index`, and we none after ours,
    ///   so both are the configuration in force at our commit index.
    ///
    /// (An earlier rule also asked that our index be our snapshot's, or
    /// below the leader's. A node restarted from a snapshot that has taken
    /// a newer one since fails the first, and a leader restarted from an
    /// older snapshot the second: that follower ignored every rank, and as
    /// the primary took no crash hint, so 3 kill -9 failovers of 1000
    /// waited for the secondary's `crash_stagger_ms` (EXPERIMENTS.md 12).)
    fn same_configuration(&self, config_index: LogIndex) -> bool {
        let (ours, commit) = (self.cluster_index, self.log.commit());
        config_index == ours || (config_index <= commit && ours <= commit)
    }

    /// Follower: adopt the rank a heartbeat of our leader names.
    pub(super) fn update_rank(&mut self, leader: NodeId, designation: Option<Designation>) {
        let before = self.valid_rank();
        self.heard_designation = designation
            .as_ref()
            .filter(|d| self.same_configuration(d.config_index))
            .map(|d| (self.term, leader, d.ranks.clone()));
        let rank = designation
            .filter(|d| self.config.enable_subleader && self.same_configuration(d.config_index))
            .and_then(|d| d.ranks.iter().position(|id| *id == self.id));
        self.rank = rank.map(|rank| RankScope {
            term: self.term,
            leader,
            config_index: self.cluster_index,
            rank,
        });
        if rank != before {
            let term = self.term;
            self.out
                .events
                .push(Event::RankChanged { term, leader, rank });
            // Re-draw the timer from the new rank's range at once.
            self.reset_election_timer();
        }
    }
}
