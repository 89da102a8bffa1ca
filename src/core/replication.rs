//! Log replication (Raft paper 5.3) with pipelining and fast back-off,
//! heartbeats, commit, CheckQuorum, and the leader's timers.

use super::message::{Message, MessageBody};
use super::progress::{InflightLimits, ProgressState};
use super::quorum::committed_index;
use super::raft::{Raft, Role};
use super::ready::{ChunkReceived, ChunkToSend};
use super::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// A follower in the replicate state with an Append unacknowledged this
/// long (plus its RTT) is probed again; at least 100 ms, the seed's two
/// heartbeats, whatever the heartbeat interval.
const STALL_US_MIN: u64 = 100_000;

impl Raft {
    /// One handler per message; the term has been reconciled already.
    pub(super) fn dispatch(&mut self, msg: Message) {
        let Message {
            from, term, body, ..
        } = msg;
        match body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => self.on_pre_vote(from, term, last_index, last_term),
            MessageBody::PreVoteReply { granted, sticky } => {
                self.on_pre_vote_reply(from, term, granted, sticky)
            }
            MessageBody::Vote {
                last_index,
                last_term,
                transfer,
            } => self.on_vote(from, last_index, last_term, transfer),
            MessageBody::VoteReply { granted } => self.on_vote_reply(from, granted),
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
                sent_at_us,
            } => self.on_append(from, prev_index, prev_term, &entries, commit, sent_at_us),
            MessageBody::AppendReply {
                success,
                index,
                hint_index,
                hint_term,
                sent_at_us,
            } => self.on_append_reply(from, success, index, hint_index, hint_term, sent_at_us),
            MessageBody::Heartbeat {
                commit,
                sent_at_us,
                read_round,
                designation,
            } => self.on_heartbeat(from, commit, sent_at_us, read_round, designation),
            MessageBody::HeartbeatReply {
                sent_at_us,
                read_round,
                log_lost,
            } => self.on_heartbeat_reply(from, sent_at_us, read_round, log_lost),
            MessageBody::TimeoutNow => self.on_timeout_now(from),
            MessageBody::HandOff { leader } => self.on_hand_off(from, leader),
            MessageBody::InstallSnapshot {
                meta,
                file_bytes,
                offset,
                data,
            } => self.on_install_snapshot(from, term, meta, file_bytes, offset, data),
            MessageBody::InstallSnapshotReply {
                snapshot_index,
                snapshot_term,
                next_offset,
                rejected,
            } => self.on_install_snapshot_reply(
                from,
                snapshot_index,
                snapshot_term,
                next_offset,
                rejected,
            ),
        }
    }

    /// Follower: one chunk of a snapshot file (Raft paper Figure 13, in
    /// order, resumable). Chunks are taken only at the offset expected
    /// next; any other is answered with that offset so the leader resends
    /// from there. A chunk at offset 0 starts the transfer over.
    fn on_install_snapshot(
        &mut self,
        from: NodeId,
        term: Term,
        meta: SnapshotMeta,
        file_bytes: u64,
        offset: u64,
        data: Vec<u8>,
    ) {
        self.note_leader_contact(from);
        let commit = self.log.commit();
        if meta.last_index <= commit {
            // We hold all of it already: report the match instead.
            self.receiving = None;
            let ack = MessageBody::AppendReply {
                success: true,
                index: commit,
                hint_index: LogIndex(0),
                hint_term: Term(0),
                sent_at_us: 0,
            };
            self.send(from, ack);
            return;
        }
        let same = |r: &super::raft::Receiving| r.meta == meta && r.file_bytes == file_bytes;
        let reply = |next_offset, rejected| MessageBody::InstallSnapshotReply {
            snapshot_index: meta.last_index,
            snapshot_term: meta.last_term,
            next_offset,
            rejected,
        };
        if !self.receiving.as_ref().is_some_and(same) {
            // A new transfer: it starts at offset 0, and any other chunk of
            // it (we missed its start) is answered with "from 0".
            self.receiving = Some(super::raft::Receiving {
                leader: from,
                term,
                meta: meta.clone(),
                file_bytes,
                next_offset: 0,
                rejected_at_us: None,
            });
        }
        let receiving = self.receiving.as_mut().expect("set above");
        if receiving.is_complete() {
            return; // Being installed; a duplicate needs no answer.
        }
        let expected = receiving.next_offset;
        let end = offset + data.len() as u64;
        if offset != expected || data.is_empty() || end > file_bytes {
            let now = self.now_us;
            let quiet_us = self.config.heartbeat_interval_ms * 1000;
            if receiving
                .rejected_at_us
                .is_none_or(|at| now.saturating_sub(at) >= quiet_us)
            {
                receiving.rejected_at_us = Some(now);
                self.send(from, reply(expected, true));
            }
            return;
        }
        receiving.next_offset = end;
        receiving.rejected_at_us = None;
        self.out.chunks_received.push(ChunkReceived {
            meta: meta.clone(),
            file_bytes,
            offset,
            data,
        });
        // Not durable yet, and need not be: the file is fsynced whole
        // before it is installed, and a crash restarts the transfer.
        self.send(from, reply(end, false));
    }

    /// Leader: how much of the snapshot file a follower holds.
    fn on_install_snapshot_reply(
        &mut self,
        from: NodeId,
        snapshot_index: LogIndex,
        snapshot_term: Term,
        next_offset: u64,
        rejected: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now_us;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        let Some(send) = pr
            .snapshot
            .as_mut()
            .filter(|s| s.index == snapshot_index && s.term == snapshot_term)
        else {
            return; // an older transfer
        };
        if next_offset != send.acked_offset {
            send.progress_us = now;
        }
        send.acked_offset = next_offset.min(send.file_bytes);
        if rejected {
            // Resend from what the follower holds (a chunk was lost or
            // reordered, or the follower started over).
            send.next_offset = send.acked_offset;
        } else {
            send.next_offset = send.next_offset.max(send.acked_offset);
        }
        self.send_append(from);
    }

    /// Leader: switches `to` to snapshot transfer, if a snapshot file
    /// exists. Returns whether it did.
    fn start_snapshot_transfer(&mut self, to: NodeId) -> bool {
        let Some((meta, file_bytes)) = self.snapshot_file.clone() else {
            log::warn!(
                "node {}: {to} needs entries before our log start {} and no snapshot file is known",
                self.id,
                self.log.first_index()
            );
            return false;
        };
        log::info!(
            "node {}: sending snapshot {} (term {}, {file_bytes} bytes) to {to}",
            self.id,
            meta.last_index,
            meta.last_term
        );
        let now = self.now_us;
        self.progress.get_mut(&to).expect("a peer").become_snapshot(
            meta.last_index,
            meta.last_term,
            file_bytes,
            now,
        );
        true
    }

    /// Leader: asks the runtime to send the next chunk of the snapshot to
    /// `to`, if flow control allows.
    fn send_snapshot_chunk(&mut self, to: NodeId, limits: InflightLimits) -> bool {
        let chunk_bytes = self.config.limits.snapshot_chunk_bytes as u64;
        let term = self.term;
        let Some((meta, _)) = self.snapshot_file.clone() else {
            return false;
        };
        let Some(pr) = self.progress.get_mut(&to) else {
            return false;
        };
        if !pr.can_send(limits) {
            return false;
        }
        let send = pr.snapshot.as_mut().expect("Snapshot state has a transfer");
        if send.index != meta.last_index || send.term != meta.last_term {
            // A newer snapshot replaced the one under way, whose file the
            // runtime may have deleted: start over with the newer one.
            let file_bytes = self.snapshot_file.as_ref().map_or(0, |(_, b)| *b);
            let now = self.now_us;
            pr.become_snapshot(meta.last_index, meta.last_term, file_bytes, now);
            return true;
        }
        let offset = send.next_offset;
        let len = chunk_bytes.min(send.file_bytes - offset);
        send.next_offset += len;
        self.out.chunks_to_send.push(ChunkToSend {
            to,
            term,
            meta,
            file_bytes: send.file_bytes,
            offset,
            len: len as usize,
        });
        true
    }

    /// A message from the leader of our term: follow it, restart the timer.
    fn note_leader_contact(&mut self, from: NodeId) {
        assert!(
            self.role != Role::Leader,
            "two leaders in term {}: {} and {from}",
            self.term,
            self.id
        );
        if self.role != Role::Follower {
            let term = self.term;
            self.become_follower(term, Some(from));
        }
        self.set_leader(Some(from));
        self.last_leader_contact_us = Some(self.now_us);
        self.extend_promise();
        self.lost_leader = None;
        self.crash_path = None;
        self.pending_hand_off = None;
        self.reset_election_timer();
    }

    fn on_append(
        &mut self,
        from: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
        leader_commit: LogIndex,
        sent_at_us: u64,
    ) {
        self.note_leader_contact(from);
        let reply = |success, index, hint_index, hint_term| MessageBody::AppendReply {
            success,
            index,
            hint_index,
            hint_term,
            sent_at_us,
        };
        if prev_index < self.log.commit() {
            // Everything through our commit matches the leader already.
            let commit = self.log.commit();
            self.send(from, reply(true, commit, LogIndex(0), Term(0)));
            return;
        }
        match self.log.try_append(prev_index, prev_term, entries) {
            Some(last_new) => {
                self.config_after_append(entries);
                self.log.commit_to(leader_commit.min(last_new));
                self.send(from, reply(true, last_new, LogIndex(0), Term(0)));
            }
            None => {
                let hint_index = self
                    .log
                    .index_at_or_before_term(prev_index.min(self.log.last_index()), prev_term);
                let hint_term = self.log.term_at(hint_index).unwrap_or(Term(0));
                self.send(from, reply(false, prev_index, hint_index, hint_term));
            }
        }
    }

    fn on_append_reply(
        &mut self,
        from: NodeId,
        success: bool,
        index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
        sent_at_us: u64,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        if success && index > last {
            log::warn!(
                "node {}: {from} acknowledged index {index} past our last {last}",
                self.id
            );
            return;
        }
        let now = self.now_us;
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.record_ack(now, sent_at_us);
        self.lease.on_ack(from, sent_at_us);
        if success {
            if pr.record_match(index) {
                self.maybe_commit();
            }
            self.maybe_send_timeout_now(from);
        } else {
            if index <= pr.match_index
                || pr.state == ProgressState::Snapshot
                || (pr.state == ProgressState::Probe && index != pr.next_index.prev())
            {
                return; // stale rejection (of an Append sent before a transfer)
            }
            let next = match pr.state {
                ProgressState::Replicate | ProgressState::Snapshot => pr.match_index.next(),
                ProgressState::Probe => {
                    let probe = self.log.index_at_or_before_term(hint_index, hint_term);
                    index.min(probe.next())
                }
            };
            let pr = self.progress.get_mut(&from).expect("checked above");
            pr.become_probe(next.min(last.next()));
        }
        self.send_append(from);
    }

    fn on_heartbeat(
        &mut self,
        from: NodeId,
        commit: LogIndex,
        sent_at_us: u64,
        read_round: u64,
        designation: Option<super::message::Designation>,
    ) {
        self.note_heartbeat_arrival(from);
        self.note_leader_contact(from);
        // The leader sends min(our match, its commit): safe to adopt.
        let last = self.log.last_index();
        self.log.commit_to(commit.min(last));
        self.update_rank(from, designation);
        self.send(
            from,
            MessageBody::HeartbeatReply {
                sent_at_us,
                read_round,
                log_lost: (last < commit).then_some(last),
            },
        );
    }

    /// Feeds the primary's failure detector (DESIGN.md 3.3): the gaps
    /// between this leader's heartbeats; no gap spans two leaders, but the
    /// statistics carry over. Before `note_leader_contact`, which draws the next deadline.
    fn note_heartbeat_arrival(&mut self, from: NodeId) {
        let (term, leader, gaps) = &mut self.heartbeat_gaps;
        if (*term, *leader) != (self.term, from) {
            (*term, *leader) = (self.term, from);
            gaps.new_leader();
        }
        gaps.on_heartbeat(self.now_us, self.config.heartbeat_interval_ms * 1000);
    }

    fn on_heartbeat_reply(
        &mut self,
        from: NodeId,
        sent_at_us: u64,
        read_round: u64,
        log_lost: Option<LogIndex>,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now_us;
        // Two heartbeats of the seed's 50 ms: at 10 ms heartbeats (issue 13)
        // an fsync of 20 ms would otherwise make a healthy follower look
        // stalled and restart its replication from a probe.
        let stall_us = (self.config.heartbeat_interval_ms * 2000).max(STALL_US_MIN);
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        pr.record_ack(now, sent_at_us);
        pr.probe_sent = false;
        self.lease.on_ack(from, sent_at_us);
        if let Some(follower_last) = log_lost
            && follower_last < pr.match_index
        {
            // Outside Raft's failure model (DESIGN.md 10), but the leader
            // can still heal it: a match it believed is gone, so replicate
            // from what the follower has (a snapshot when compacted away).
            // Lowering a match index only makes commit more conservative.
            log::warn!(
                "[Node {}] node {from} lost its log after index {follower_last} (it had acknowledged {}); replicating to it again",
                self.id,
                pr.match_index
            );
            pr.match_index = follower_last;
            pr.become_probe(follower_last.next());
        }
        let departing = self.departing.contains_key(&from);
        if let Some(send) = pr.snapshot.as_mut()
            && now.saturating_sub(send.progress_us) > stall_us + pr.srtt_us.unwrap_or(0)
        {
            if send.acked_offset >= send.file_bytes {
                // Delivered whole, and the install's acknowledgement never
                // came (lost, or the install failed): ask where the
                // follower's log stands, as after any stall.
                let next = pr.match_index.next();
                pr.become_probe(next);
            } else {
                // Chunks sent and never acknowledged: lost. Resend from
                // what the follower holds.
                send.next_offset = send.acked_offset;
                send.progress_us = now;
            }
        }
        if pr.state == ProgressState::Replicate
            && pr.is_stalled(now, stall_us + pr.srtt_us.unwrap_or(0))
        {
            let next = pr.match_index.next();
            pr.become_probe(next);
        }
        let behind = pr.match_index < last;
        if read_round > 0 {
            self.on_read_ack(from, read_round);
        }
        if behind {
            self.send_append(from);
        }
        if departing {
            self.maybe_forget_departed(from, sent_at_us);
        }
    }

    /// Sends `to` as many Appends as flow control allows. Returns whether
    /// anything was sent.
    pub(super) fn send_append(&mut self, to: NodeId) -> bool {
        let mut sent = false;
        while self.send_one_append(to) {
            sent = true;
        }
        sent
    }

    fn send_one_append(&mut self, to: NodeId) -> bool {
        let limits = InflightLimits {
            messages: self.config.inflight_appends_max,
            bytes: self.config.limits.inflight_bytes_max,
        };
        if self
            .progress
            .get(&to)
            .is_some_and(|pr| pr.state == ProgressState::Snapshot)
        {
            return self.send_snapshot_chunk(to, limits);
        }
        let (count_max, bytes_max) = (
            self.config.append_entries_max,
            self.config.limits.append_bytes_max,
        );
        let Some(pr) = self.progress.get(&to) else {
            return false;
        };
        if !pr.can_send(limits) {
            return false;
        }
        let next = pr.next_index;
        let prev_index = next.prev();
        let Some(prev_term) = self.log.term_at(prev_index) else {
            // Compacted away (Raft paper 7): send the snapshot instead.
            return self.start_snapshot_transfer(to);
        };
        let entries = self.log.entries_from(next, count_max, bytes_max);
        if entries.is_empty() && pr.state == ProgressState::Replicate {
            return false;
        }
        let last = LogIndex(prev_index.0 + entries.len() as u64);
        let bytes = entries.iter().map(Entry::size_bytes).sum();
        let (commit, now) = (self.log.commit(), self.now_us);
        self.progress
            .get_mut(&to)
            .expect("checked above")
            .on_sent(last, now, bytes);
        let body = MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
            sent_at_us: now,
        };
        self.send(to, body);
        true
    }

    pub(super) fn broadcast_append(&mut self) {
        self.append_pending = false;
        for peer in self.replication_targets() {
            self.send_append(peer);
        }
    }

    pub(super) fn broadcast_heartbeat(&mut self, read_round: u64) {
        let designation = self.current_designation();
        let (commit, now) = (self.log.commit(), self.now_us);
        for peer in self.replication_targets() {
            let matched = self
                .progress
                .get(&peer)
                .map_or(LogIndex(0), |pr| pr.match_index);
            self.note_departing_told(peer, commit.min(matched));
            let body = MessageBody::Heartbeat {
                commit: commit.min(matched),
                sent_at_us: now,
                read_round,
                designation: designation.clone(),
            };
            self.send(peer, body);
        }
    }

    /// Raft paper 5.3-5.4: commit the highest index a quorum holds, if it
    /// is of our term (Figure 8: older terms commit only indirectly).
    pub(super) fn maybe_commit(&mut self) -> bool {
        let matches: Vec<LogIndex> = self
            .cluster
            .voters
            .iter()
            .map(|v| match *v == self.id {
                true => self.log.persisted(),
                false => self
                    .progress
                    .get(v)
                    .map_or(LogIndex(0), |pr| pr.match_index),
            })
            .collect();
        let index = committed_index(&matches, self.cluster.quorum());
        // Raft paper 5.4.2: only an entry of our own term commits by
        // counting replicas (the mutation is a test-only bug).
        let own_term = self.log.term_at(index) == Some(self.term)
            || self.config.mutations.commit_old_term_by_counting;
        if index <= self.log.commit() || !own_term {
            return false;
        }
        let released = self.uncommitted_bytes_between(self.log.commit(), index);
        self.uncommitted_bytes =
            self.uncommitted_bytes
                .checked_sub(released)
                .unwrap_or_else(|| {
                    panic!(
                        "uncommitted_bytes={} below the {released} bytes committed",
                        self.uncommitted_bytes
                    )
                });
        self.log.commit_to(index);
        self.on_commit_advanced();
        true
    }

    pub(super) fn tick_leader(&mut self) {
        let now = self.now_us;
        if now >= self.heartbeat_deadline_us {
            self.heartbeat_deadline_us = now + self.config.heartbeat_interval_ms * 1000;
            self.update_designation();
            let round = self.reads.latest_round();
            self.broadcast_heartbeat(round);
        }
        if now >= self.check_quorum_deadline_us {
            self.check_quorum_deadline_us = now + self.config.follower_timeout_ms_min * 1000;
            self.check_quorum();
        }
        if let Some((target, deadline)) = self.transfer
            && now >= deadline
        {
            log::warn!(
                "node {}: leadership transfer to {target} timed out",
                self.id
            );
            self.transfer = None;
        }
    }

    /// Thesis 6.2: a leader that cannot reach a quorum steps down, so that
    /// clients stop waiting on it.
    fn check_quorum(&mut self) {
        if !self.config.check_quorum {
            return;
        }
        let active = self.active_voters();
        for pr in self.progress.values_mut() {
            pr.recent_active = false;
        }
        if active < self.cluster.quorum() {
            log::warn!(
                "node {}: heard from {active} of {} voters, stepping down",
                self.id,
                self.cluster.voters.len()
            );
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) {
        let Some((target, _)) = self.transfer else {
            return;
        };
        let caught_up = self
            .progress
            .get(&peer)
            .is_some_and(|pr| pr.match_index == self.log.last_index());
        if target == peer && caught_up {
            self.send(peer, MessageBody::TimeoutNow);
        }
    }
}
