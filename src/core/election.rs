//! Elections: staged timers, PreVote (thesis 9.6), RequestVote, leader
//! stickiness (thesis 4.2.3) and the S-Raft promotion rules (DESIGN.md 3.3-3.5).

use super::message::{Message, MessageBody};
use super::progress::Progress;
use super::quorum::{VoteResult, vote_result};
use super::raft::{Raft, Role};
use super::ready::{ElectionKind, Event};
use super::types::{EntryPayload, LogIndex, NodeId, Term};
use std::collections::{BTreeMap, BTreeSet};

/// A pre-vote refused only for stickiness (`Raft::held_pre_votes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct HeldPreVote {
    pub term: Term,
    pub last_index: LogIndex,
    pub last_term: Term,
    /// When it arrived (our clock).
    pub at_us: u64,
}

fn ms_range(min_ms: u64, max_ms: u64) -> (u64, u64) {
    (min_ms * 1000, max_ms * 1000)
}

impl Raft {
    /// The range this node draws its election timeout from, in
    /// microseconds: by sub-leader rank in S-Raft mode (DESIGN.md 3.3), the
    /// ordinary range otherwise. The adaptive primary's range is one point.
    fn election_timeout_range_us(&self) -> (u64, u64) {
        let c = &self.config;
        match self.valid_rank().filter(|_| self.role == Role::Follower) {
            Some(0) if c.primary_timeout_adaptive => {
                let timeout_us = self.heartbeat_gaps.2.timeout_us(
                    c.heartbeat_interval_ms * 1000,
                    c.primary_timeout_ms_min * 1000,
                    c.primary_timeout_ms_max * 1000,
                );
                (timeout_us, timeout_us)
            }
            Some(0) => ms_range(c.primary_timeout_ms_min, c.primary_timeout_ms_max),
            Some(rank) => {
                // Rank 1 is the secondary; further ranks get successive,
                // disjoint windows after it, so that ranks never compete.
                let width = c.secondary_timeout_ms_max - c.secondary_timeout_ms_min + 1;
                let shift = (rank as u64 - 1) * width;
                ms_range(
                    c.secondary_timeout_ms_min + shift,
                    c.secondary_timeout_ms_max + shift,
                )
            }
            None => ms_range(c.follower_timeout_ms_min, c.follower_timeout_ms_max),
        }
    }

    pub(super) fn reset_election_timer(&mut self) {
        if self.crash_path.is_some() && self.role == Role::PreCandidate {
            // A crash-hinted pre-vote round that stays undecided (a voter
            // that has not yet seen the leader's sockets close refuses it, the
            // dead leader never answers) is retried soon, not after a whole
            // timeout: a pre-vote changes no term, so a retry costs nothing.
            // Not the RequestVote round: it takes a round trip and two fsyncs,
            // more than `crash_retry_ms` across zones, and abandoning it
            // would start another term (issue 9). It keeps the ordinary
            // deadline below.
            self.election_deadline_us = self.now_us + self.config.crash_retry_ms * 1000;
            return;
        }
        let (min_us, max_us) = self.election_timeout_range_us();
        self.election_deadline_us = self.now_us + self.random_between_us(min_us, max_us);
    }

    /// The rank this follower holds, if its scope is still current. A term
    /// has one leader (Election Safety), so an unknown leader in the same
    /// term (we left it to campaign) is the same scope.
    pub(super) fn valid_rank(&self) -> Option<usize> {
        let scope = self.rank?;
        let current = self.config.enable_subleader
            && scope.term == self.term
            && self.leader.is_none_or(|l| l == scope.leader)
            && scope.config_index == self.cluster_index;
        current.then_some(scope.rank)
    }

    pub(super) fn timeout_kind(&self) -> ElectionKind {
        if !self.config.enable_subleader {
            return ElectionKind::Original;
        }
        if let Some(kind) = self.crash_path {
            return kind;
        }
        if let Some(rank) = self.valid_rank().filter(|_| self.role == Role::Follower) {
            return ElectionKind::SubLeader { rank };
        }
        if self.ever_had_leader {
            ElectionKind::Fallback
        } else {
            ElectionKind::Initial
        }
    }

    /// A voter refuses (pre-)votes for a non-transfer election: sticky to
    /// a live leader (thesis 4.2.3), or bound by its lease promise
    /// (DESIGN.md 3.8), which no crash hint shortens.
    pub(super) fn refuses_for_leader(&self) -> bool {
        self.is_sticky() || self.in_promise()
    }

    /// Stickiness: a voter that heard from a live leader recently refuses
    /// to help depose it, unless told the leader's process is gone.
    pub(super) fn is_sticky(&self) -> bool {
        if !self.config.check_quorum || self.lost_leader.is_some() {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        let window_us = self.config.leader_stickiness_ms * 1000;
        self.leader.is_some()
            && self
                .last_leader_contact_us
                .is_some_and(|t| self.now_us.saturating_sub(t) < window_us)
    }

    /// The election timer fired on a follower, pre-candidate or candidate.
    pub(super) fn on_election_timeout(&mut self) {
        match self.role {
            // Undecided at its deadline: settle it as a lost round would,
            // and ask again now.
            Role::PreCandidate => self.end_pre_vote_round(self.now_us),
            Role::Candidate => {
                if self.crash_path.take().is_some() {
                    // The crash path's quick retries are for the pre-vote
                    // only (issue 9); an undecided RequestVote round is
                    // followed by an ordinary election.
                    log::info!(
                        "node {}: crash fast path vote round for term {} timed out",
                        self.id,
                        self.term
                    );
                }
            }
            Role::Follower | Role::Leader => {}
        }
        let kind = self.timeout_kind();
        self.campaign(kind);
    }

    pub(super) fn campaign(&mut self, kind: ElectionKind) {
        if !self.cluster.is_voter(self.id) {
            // Learners and removed nodes never start an election (DESIGN.md 8).
            log::debug!("node {}: not a voter, not campaigning", self.id);
            self.reset_election_timer();
            return;
        }
        if kind != ElectionKind::Transfer && self.in_promise() {
            // Our own vote is a vote too: no candidacy while we promised a
            // leader none (DESIGN.md 3.8). A crash hint waits here as well.
            log::debug!(
                "node {}: {kind:?} election deferred to the end of our lease promise",
                self.id
            );
            self.election_deadline_us = self.promise_until_us;
            return;
        }
        // A crash hint buys a bounded number of quick retries; after that the
        // ordinary timers take over.
        let kind = match self.crash_path {
            Some(_) if self.crash_retries_left > 0 => {
                self.crash_retries_left -= 1;
                kind
            }
            Some(_) => {
                self.crash_path = None;
                self.rank = None;
                ElectionKind::Fallback
            }
            None => kind,
        };
        self.election_kind = kind;
        // A rank lasts through the pre-vote round: a primary refused only
        // for stickiness keeps it (`end_pre_vote_round`); the RequestVote
        // round uses it up (`become_candidate`).
        if self.config.pre_vote && kind != ElectionKind::Transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.set_leader(None);
        self.start_count();
        self.reset_election_timer();
        let term = self.term.next();
        self.out.events.push(Event::ElectionStarted {
            term,
            kind: self.election_kind,
            pre_vote: true,
        });
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for peer in self.peers() {
            self.send_with_term(
                peer,
                term,
                MessageBody::PreVote {
                    last_index,
                    last_term,
                },
            );
        }
        self.tally_votes();
    }

    fn become_candidate(&mut self) {
        assert!(
            self.election_kind == ElectionKind::Transfer || !self.in_promise(),
            "node {}: candidate at {} inside its lease promise (until {})",
            self.id,
            self.now_us,
            self.promise_until_us
        );
        self.term = self.term.next();
        self.receiving = None;
        self.drop_stale_votes();
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        // A rank is for one attempt; the next term has its own leader.
        self.rank = None;
        self.set_leader(None);
        self.start_count();
        self.reset_election_timer();
        let term = self.term;
        self.out.events.push(Event::ElectionStarted {
            term,
            kind: self.election_kind,
            pre_vote: false,
        });
        self.request_votes(&self.peers());
        self.tally_votes();
    }

    fn request_votes(&mut self, peers: &[NodeId]) {
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let transfer = self.election_kind == ElectionKind::Transfer;
        for &peer in peers {
            self.send(
                peer,
                MessageBody::Vote {
                    last_index,
                    last_term,
                    transfer,
                },
            );
        }
        self.vote_resend_at_us = self.now_us + self.sticky_retry_us();
    }

    /// Candidate, one heartbeat interval after asking: asks again the
    /// voters that have not answered. A voter that heard from its leader
    /// within the stickiness window ignores a RequestVote without an answer
    /// (thesis 4.2.3); when that leader had only stalled, woke up between
    /// our pre-vote and our vote, and then stepped down on seeing our term,
    /// nobody would lead until the fallback timeouts (667 ms in a soak,
    /// EXPERIMENTS.md 10). Asking again is safe: a voter grants one vote
    /// per term, and the same request in the same term decides the same.
    pub(super) fn ask_again(&mut self) {
        let silent: Vec<NodeId> = self
            .peers()
            .into_iter()
            .filter(|p| !self.votes.contains_key(p))
            .collect();
        self.request_votes(&silent);
    }

    fn start_count(&mut self) {
        self.votes = BTreeMap::from([(self.id, true)]);
        self.sticky_refusals = BTreeSet::new();
    }

    fn tally_votes(&mut self) {
        // Only the voters of our configuration count: a learner's answer
        // (or a removed node's) decides nothing (DESIGN.md 8).
        let granted = self
            .cluster
            .count_voters(self.votes.iter().filter(|(_, g)| **g).map(|(id, _)| id));
        let mut rejected = self
            .cluster
            .count_voters(self.votes.iter().filter(|(_, g)| !**g).map(|(id, _)| id));
        if self.role == Role::PreCandidate && self.crash_path.is_some() {
            // On the crash path a refusal for stickiness is provisional: the
            // voter has not seen the leader's sockets close yet, and answers
            // again, granting, when it does (`answer_held_pre_votes`). The
            // round stays open until then or its deadline (`crash_retry_ms`)
            // rather than being lost and asked again 5 ms later, which cost a
            // quarter of kill -9 failovers 5 ms (EXPERIMENTS.md 12).
            rejected -= self.cluster.count_voters(self.sticky_refusals.iter());
            rejected += self.gone_voters();
        }
        match (
            vote_result(granted, rejected, self.cluster.voters.len()),
            self.role,
        ) {
            (VoteResult::Won, Role::PreCandidate) => self.become_candidate(),
            (VoteResult::Won, Role::Candidate) => self.become_leader(),
            (VoteResult::Lost, _) => self.on_election_lost(),
            _ => {}
        }
    }

    fn on_election_lost(&mut self) {
        if self.role == Role::PreCandidate {
            self.end_pre_vote_round(self.now_us + self.sticky_retry_us());
            if self.crash_path.is_some() {
                // The other voters may not have seen the leader's sockets
                // close yet; ask again soon rather than after a whole
                // timeout (`campaign` counts the retries).
                self.election_deadline_us = self.now_us + self.config.crash_retry_ms * 1000;
            } else if self.valid_rank() == Some(0) {
                self.election_deadline_us = self.now_us + self.sticky_retry_us();
            }
            return;
        }
        // A lost RequestVote round ends the crash path: the quick retries
        // are for the pre-vote only (issue 9).
        self.crash_path = None;
        let term = self.term;
        self.become_follower(term, None);
    }

    /// A pre-vote round ended without a win: lost, or undecided at its
    /// deadline. Decides whether the crash path goes on and whether our rank
    /// survives for an attempt at `retry_at_us`, then returns to follower in
    /// the same term.
    fn end_pre_vote_round(&mut self, retry_at_us: u64) {
        assert_eq!(self.role, Role::PreCandidate, "no pre-vote round to end");
        let voters = self.cluster.voters.len();
        let refused = self.votes.values().filter(|g| !**g).count();
        let refused_not_sticky = refused - self.sticky_refusals.len();
        // On the crash path the leader whose process is gone answers no
        // pre-vote: it counts as a refusal. Without it, a primary behind
        // two of four survivors (an Append the dead leader sent them and
        // not us) stayed undecided, asked again for the whole retry window
        // and held the secondary back meanwhile: 3.5% of kill -9 failovers
        // took 55-720 ms (EXPERIMENTS.md 12).
        let gone = self.gone_voters();
        // Refusals for the log or the term alone decide the round: asking
        // again cannot help, since no leader changes anyone's log meanwhile.
        let futile = vote_result(0, refused_not_sticky + gone, voters) == VoteResult::Lost;
        if futile && self.crash_path.take().is_some() {
            log::info!(
                "node {}: crash fast path over: a majority refused term {} for its log",
                self.id,
                self.term.next()
            );
            self.hand_off();
        }
        let only_sticky = !futile && !self.sticky_refusals.is_empty();
        if !(only_sticky && self.primary_keeps_rank(retry_at_us)) {
            self.rank = None;
        } else {
            log::debug!(
                "node {}: primary refused only for stickiness; keeps its rank and asks again",
                self.id
            );
        }
        let term = self.term;
        self.become_follower(term, None);
    }

    /// On the crash path, the voters that will not answer our pre-vote: the
    /// leader whose process is gone, until it does answer (a hint is a
    /// hint). Counted as refusals, so that a round the survivors alone
    /// cannot win ends as soon as their answers are in.
    fn gone_voters(&self) -> usize {
        self.lost_leader
            .filter(|l| {
                self.crash_path.is_some()
                    && self.cluster.is_voter(*l)
                    && !self.votes.contains_key(l)
            })
            .map_or(0, |_| 1)
    }

    /// A primary refused only for voters' stickiness keeps its rank and asks
    /// again at `retry_at_us` (issue 9): the voters heard from the leader
    /// after we did, and if it is dead their stickiness runs out soon. Only
    /// while the retry lands before the secondary's window opens
    /// (`secondary_timeout_ms_min` after our last heartbeat), so that ranks
    /// still do not compete; the crash path has its own retries.
    fn primary_keeps_rank(&self, retry_at_us: u64) -> bool {
        let window_end_us = self
            .last_leader_contact_us
            .map_or(0, |t| t + self.config.secondary_timeout_ms_min * 1000);
        self.crash_path.is_none()
            && self.rank.is_some_and(|s| s.rank == 0)
            && self.valid_rank().is_some()
            && retry_at_us <= window_end_us
    }

    /// A live leader refreshes stickiness once per heartbeat interval; one
    /// interval without a heartbeat reaching us is the time to ask again.
    fn sticky_retry_us(&self) -> u64 {
        self.config.heartbeat_interval_ms * 1000
    }

    /// Crash fast path, rank > 0: campaign no sooner than `crash_stagger_ms`
    /// after seeing a higher-ranked sub-leader of the crashed leader campaign
    /// for a later term (a PreVote or a Vote), so that ranks never compete
    /// (issue 9). A live primary asks again every `crash_retry_ms` while
    /// refused for stickiness, and its vote round ends within a round trip
    /// and two fsyncs; we start only once it has gone quiet: given up,
    /// crashed, or lost. Promotion itself stays plain PreVote + RequestVote.
    fn defer_to_higher_rank(&mut self, from: NodeId, term: Term) {
        // A hand-off came from the higher rank that gave up: no deferring.
        let Some(ElectionKind::CrashHint { rank: rank @ 1.. }) = self.crash_path else {
            return;
        };
        let higher = match &self.heard_designation {
            Some((ranked_term, _, ranks)) => {
                term > *ranked_term && ranks.iter().take(rank).any(|id| *id == from)
            }
            None => false,
        };
        if !higher {
            return;
        }
        let until_us = self.now_us + self.config.crash_stagger_ms * 1000;
        if self.role == Role::PreCandidate {
            // We started first (our hint came early, its PreVote late):
            // step back rather than compete.
            let own = self.term;
            self.become_follower(own, None);
            self.election_deadline_us = until_us;
        } else if until_us > self.election_deadline_us {
            log::debug!(
                "node {}: rank {rank} defers its crash fast path: {from} is campaigning",
                self.id
            );
            self.election_deadline_us = until_us;
        }
    }

    /// The secondary refused the primary's pre-vote for its log while not
    /// hearing the leader (issue 13): the primary's timer fired, so the
    /// leader has been silent for the primary's whole timeout, and the
    /// primary lacks entries we hold (the leader froze with an Append to it
    /// still unsent), so it may not win. Rather than wait out our own
    /// window (100-150 ms), we campaign one heartbeat interval from now:
    /// if the primary can still win with the others' grants, its first
    /// heartbeat reaches us before that and resets the timer; if not, our
    /// pre-vote finds the voters free. Only when our timer runs; an
    /// ordinary PreVote + RequestVote follows (DESIGN.md 3.4, 3.7).
    fn take_over_from_a_primary_behind(&mut self, from: NodeId, term: Term) {
        let primary = match &self.heard_designation {
            Some((t, leader, ranks)) if *t == self.term && self.leader == Some(*leader) => {
                ranks.first().copied()
            }
            _ => None,
        };
        if self.role != Role::Follower
            || self.valid_rank() != Some(1)
            || primary != Some(from)
            || term != self.term.next()
        {
            return;
        }
        let at_us = self.now_us + self.config.heartbeat_interval_ms * 1000;
        if at_us < self.election_deadline_us {
            log::info!(
                "node {}: primary {from} is behind our log; the secondary campaigns in {} ms",
                self.id,
                self.config.heartbeat_interval_ms
            );
            self.election_deadline_us = at_us;
        }
    }

    pub(super) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        self.role = Role::Leader;
        self.set_leader(Some(self.id));
        self.crash_path = None;
        self.lost_leader = None;
        let next = self.log.last_index().next();
        self.progress = self
            .member_peers()
            .into_iter()
            .map(|p| (p, Progress::new(next)))
            .collect();
        self.designation.clear();
        self.lease.begin_term(self.now_us);
        // etcd resets uncommittedSize on becoming leader: only entries
        // proposed in this term count (the no-op counts nothing).
        self.uncommitted_bytes = 0;
        let silence = self.last_leader_contact_us.map(|t| self.now_us - t);
        self.out.events.push(Event::BecameLeader {
            term: self.term,
            kind: self.election_kind,
            leader_silence_us: silence,
        });
        // Raft paper 5.4.2 / thesis 6.4: commit an entry of our own term.
        self.log.append_new(self.term, EntryPayload::Noop);
        self.append_pending = true;
        self.heartbeat_deadline_us = self.now_us + self.config.heartbeat_interval_ms * 1000;
        self.check_quorum_deadline_us = self.now_us + self.config.follower_timeout_ms_min * 1000;
    }

    /// Returns whether to go on handling a message of a higher term.
    pub(super) fn accept_higher_term(&mut self, msg: &Message) -> bool {
        match &msg.body {
            // Never change term for a PreVote or a granted pre-vote reply:
            // they carry the term of an election that may never happen.
            MessageBody::PreVote { .. } | MessageBody::PreVoteReply { granted: true, .. } => true,
            // A hand-off concerns the leader of our term; from a term we
            // never saw it is stale news of some other election.
            MessageBody::HandOff { .. } => false,
            MessageBody::Vote {
                transfer: false, ..
            } if self.refuses_for_leader() => {
                log::debug!(
                    "node {}: ignoring vote request of {} at term {}: leader {:?} is alive",
                    self.id,
                    msg.from,
                    msg.term,
                    self.leader
                );
                false
            }
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. }
            | MessageBody::TimeoutNow => {
                self.become_follower(msg.term, Some(msg.from));
                true
            }
            _ => {
                self.become_follower(msg.term, None);
                true
            }
        }
    }

    /// A message from an older term: tell stale leaders and pre-candidates
    /// about our term (so they step down), drop everything else.
    pub(super) fn on_stale_term(&mut self, msg: Message) {
        match msg.body {
            MessageBody::Append {
                prev_index,
                sent_at_us,
                ..
            } => {
                let reply = MessageBody::AppendReply {
                    success: false,
                    index: prev_index,
                    hint_index: LogIndex(0),
                    hint_term: Term(0),
                    sent_at_us,
                };
                self.send(msg.from, reply);
            }
            MessageBody::Heartbeat { sent_at_us, .. } => {
                self.send(
                    msg.from,
                    MessageBody::HeartbeatReply {
                        sent_at_us,
                        read_round: 0,
                        log_lost: None,
                    },
                );
            }
            MessageBody::InstallSnapshot { meta, .. } => {
                // Our term in the reply makes the stale leader step down.
                let reply = MessageBody::InstallSnapshotReply {
                    snapshot_index: meta.last_index,
                    snapshot_term: meta.last_term,
                    next_offset: 0,
                    rejected: true,
                };
                self.send(msg.from, reply);
            }
            MessageBody::PreVote { .. } => {
                let refusal = MessageBody::PreVoteReply {
                    granted: false,
                    sticky: false,
                };
                self.send(msg.from, refusal);
            }
            _ => log::debug!(
                "node {}: ignoring {} of stale term {} < {}",
                self.id,
                msg.body.kind(),
                msg.term,
                self.term
            ),
        }
    }

    /// Raft paper 5.4.1: vote only for a candidate whose log is at least as
    /// up-to-date as ours.
    fn log_allows_vote(&self, last_index: LogIndex, last_term: Term) -> bool {
        if self.config.mutations.vote_without_log_check {
            return true; // Test-only bug.
        }
        self.log.is_up_to_date(last_index, last_term)
    }

    /// Raft paper Figure 2: "If votedFor is null or candidateId".
    fn can_vote_for(&self, candidate: NodeId) -> bool {
        self.vote == Some(candidate) || (self.vote.is_none() && self.leader.is_none())
    }

    pub(super) fn on_pre_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        last_term: Term,
    ) {
        let log_ok = self.log_allows_vote(last_index, last_term);
        let eligible = (term > self.term || self.can_vote_for(from)) && log_ok;
        let in_lease = self.refuses_for_leader();
        if !log_ok && !in_lease {
            self.take_over_from_a_primary_behind(from, term);
        }
        let granted = eligible && !in_lease;
        // A grant carries the election's term so the pre-candidate counts it;
        // a refusal carries ours so a stale pre-candidate catches up.
        let reply_term = if granted { term } else { self.term };
        let sticky = eligible && in_lease;
        if sticky && self.is_sticky() && !self.in_promise() {
            // Only stickiness refused it, and a crash hint ends that.
            self.held_pre_votes.insert(
                from,
                HeldPreVote {
                    term,
                    last_index,
                    last_term,
                    at_us: self.now_us,
                },
            );
        } else {
            self.held_pre_votes.remove(&from);
        }
        self.send_with_term(
            from,
            reply_term,
            MessageBody::PreVoteReply { granted, sticky },
        );
        self.defer_to_higher_rank(from, term);
    }

    /// A crash hint just ended our stickiness: answer again the pre-votes
    /// it alone refused, so that a crash-path candidate whose request
    /// reached us before the leader's sockets closed here wins without
    /// asking again. A pre-vote changes no state, and this answer is the
    /// one a request arriving now would get. Only requests for the next
    /// term, from within one stickiness window ago.
    pub(super) fn answer_held_pre_votes(&mut self) {
        let held = std::mem::take(&mut self.held_pre_votes);
        let window_us = self.config.leader_stickiness_ms * 1000;
        for (from, h) in held {
            if h.term == self.term.next() && self.now_us.saturating_sub(h.at_us) <= window_us {
                log::debug!(
                    "node {}: answering again {from}'s pre-vote for term {}",
                    self.id,
                    h.term
                );
                self.on_pre_vote(from, h.term, h.last_index, h.last_term);
            }
        }
    }

    /// Starts the crash fast path's bounded retries for `kind`.
    pub(super) fn start_crash_path(&mut self, kind: ElectionKind) {
        self.crash_path = Some(kind);
        self.crash_retries_left = self.config.crash_retry_window_ms / self.config.crash_retry_ms;
    }

    /// Our crash-path pre-vote is futile: a majority refused it for its log,
    /// counting the dead leader. The voters that refused for the log hold
    /// entries we lack; one of them can win where we cannot, and without a
    /// word from us it would wait for `crash_stagger_ms` (the secondary) or
    /// an ordinary timeout (anyone else): 55-611 ms in 4% of kill -9
    /// failovers (EXPERIMENTS.md 12). We hand the election to one of them,
    /// the best ranked (then the lowest id); it runs the same PreVote and
    /// RequestVote (3.4). If it is refused for its log in turn it hands on:
    /// each hop goes to a strictly more up-to-date log, so there are at most
    /// as many hops as voters.
    fn hand_off(&mut self) {
        let Some(leader) = self.lost_leader else {
            return;
        };
        let ranks: &[NodeId] = match &self.heard_designation {
            Some((t, l, ranks)) if *t == self.term && *l == leader => ranks,
            _ => &[],
        };
        let refused_for_log = self.votes.iter().filter(|(id, granted)| {
            !**granted && !self.sticky_refusals.contains(id) && self.cluster.is_voter(**id)
        });
        let target = refused_for_log.map(|(id, _)| *id).min_by_key(|id| {
            (
                ranks.iter().position(|r| r == id).unwrap_or(usize::MAX),
                *id,
            )
        });
        if let Some(target) = target {
            log::info!(
                "node {}: handing the election for term {} to {target}, which is ahead of our log",
                self.id,
                self.term.next()
            );
            self.send(target, MessageBody::HandOff { leader });
        }
    }

    /// A crash-path candidate that we refused for its log handed the
    /// election to us (`hand_off`). We campaign at once if we saw `leader`'s
    /// process gone too; if our hint has not come yet, when it does. A
    /// follower of a live leader (no hint) never acts on it: a hand-off is
    /// a hint, never authority, and starts the ordinary election of 3.4.
    pub(super) fn on_hand_off(&mut self, from: NodeId, leader: NodeId) {
        if !self.config.enable_subleader || self.role != Role::Follower {
            log::debug!(
                "node {}: ignoring a hand-off from {from}: {:?}",
                self.id,
                self.role
            );
            return;
        }
        if self.lost_leader == Some(leader) {
            self.take_hand_off(from);
        } else if self.leader == Some(leader) {
            self.pending_hand_off = Some((self.term, leader, from));
        }
    }

    /// Campaigns for a hand-off. Inside a lease promise (3.8) `campaign`
    /// puts the attempt off to the promise's end, crash path kept, as it
    /// does for a crash hint: the hand-off is not lost.
    pub(super) fn take_hand_off(&mut self, from: NodeId) {
        if self.role != Role::Follower {
            return;
        }
        let kind = ElectionKind::HandOff {
            rank: self.valid_rank(),
        };
        log::info!(
            "node {}: {from} is behind our log and handed us the election for term {}",
            self.id,
            self.term.next()
        );
        self.start_crash_path(kind);
        self.campaign(kind);
    }

    pub(super) fn on_pre_vote_reply(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        sticky: bool,
    ) {
        if self.role != Role::PreCandidate || (granted && term != self.term.next()) {
            return;
        }
        self.votes.insert(from, granted);
        let sticky = sticky && !granted;
        if sticky {
            self.sticky_refusals.insert(from);
        } else {
            self.sticky_refusals.remove(&from);
        }
        if sticky && self.crash_path.is_none() && self.valid_rank() == Some(0) {
            // A primary refused for stickiness asks again in one heartbeat
            // interval rather than waiting out the round: in three voters the
            // dead leader's silence would leave it undecided for a whole
            // ordinary timeout.
            let retry_us = self.now_us + self.sticky_retry_us();
            self.election_deadline_us = self.election_deadline_us.min(retry_us);
        }
        self.tally_votes();
    }

    pub(super) fn on_vote(
        &mut self,
        from: NodeId,
        last_index: LogIndex,
        last_term: Term,
        transfer: bool,
    ) {
        // The promise binds in our own term too: a term adopted from some
        // other message must not open a vote inside it (DESIGN.md 3.8).
        let promised = self.in_promise() && !transfer;
        let granted =
            !promised && self.can_vote_for(from) && self.log_allows_vote(last_index, last_term);
        if granted {
            self.vote = Some(from);
            self.reset_election_timer();
            self.out.events.push(Event::VoteGranted {
                term: self.term,
                candidate: from,
            });
        }
        // Leaves only after the vote is on disk (Ready::messages_after_persist).
        self.send(from, MessageBody::VoteReply { granted });
        let term = self.term;
        self.defer_to_higher_rank(from, term);
    }

    pub(super) fn on_vote_reply(&mut self, from: NodeId, granted: bool) {
        if self.role != Role::Candidate {
            return;
        }
        // A voter grants at most one vote per term and never takes it back,
        // but its refusal can arrive after its grant (each leaves once its
        // own write is durable, and the network reorders): a grant sticks.
        *self.votes.entry(from).or_insert(granted) |= granted;
        self.tally_votes();
    }

    pub(super) fn on_timeout_now(&mut self, from: NodeId) {
        if self.role != Role::Follower || self.leader != Some(from) {
            log::debug!(
                "node {}: ignoring TimeoutNow from {from}: not our leader",
                self.id
            );
            return;
        }
        log::info!("node {}: leader {from} asked us to take over", self.id);
        self.campaign(ElectionKind::Transfer);
    }
}
