//! What a leader knows about each follower: replication progress (etcd's
//! tracker.Progress) and, for S-Raft, a smoothed round-trip time.

use super::types::LogIndex;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Unknown match: one Append at a time until one succeeds.
    Probe,
    /// Known match: Appends are pipelined, up to `inflight_appends_max`
    /// messages and `inflight_bytes_max` bytes of entries.
    Replicate,
    /// The follower needs entries the leader compacted: its snapshot file
    /// is sent in chunks (`Progress::snapshot`), up to `inflight_bytes_max`
    /// bytes unacknowledged.
    Snapshot,
}

/// A snapshot transfer to one follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSend {
    pub index: LogIndex,
    pub term: super::types::Term,
    pub file_bytes: u64,
    /// The next byte to send.
    pub next_offset: u64,
    /// Bytes the follower acknowledged holding.
    pub acked_offset: u64,
    /// When `acked_offset` last moved (or the transfer started).
    pub progress_us: u64,
}

/// One Append sent and not yet acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflight {
    pub last_index: LogIndex,
    pub sent_at_us: u64,
    /// Its entries' bytes (`Entry::size_bytes`).
    pub bytes: usize,
}

/// How much a leader may have in flight to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InflightLimits {
    pub messages: usize,
    /// Bytes of entries. One Append may cross it, so an entry larger than
    /// the bound still goes out, alone.
    pub bytes: usize,
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// Probe: an Append is outstanding; wait for its reply or a heartbeat.
    pub probe_sent: bool,
    /// Replicate: each Append in flight, oldest first.
    pub inflight: VecDeque<Inflight>,
    /// Sum of `inflight[..].bytes` (etcd's MaxInflightBytes accounting).
    pub inflight_bytes: usize,
    /// Snapshot: the transfer under way.
    pub snapshot: Option<SnapshotSend>,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    pub last_ack_us: Option<u64>,
    /// Smoothed RTT (RFC 6298 weights), from echoed send times.
    pub srtt_us: Option<u64>,
}

impl Progress {
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            snapshot: None,
            recent_active: false,
            last_ack_us: None,
            srtt_us: None,
        }
    }

    pub fn record_ack(&mut self, now_us: u64, sent_at_us: u64) {
        self.recent_active = true;
        self.last_ack_us = Some(now_us);
        if sent_at_us == 0 || sent_at_us > now_us {
            return; // not ours, or a clock we cannot trust
        }
        let sample = now_us - sent_at_us;
        self.srtt_us = Some(match self.srtt_us {
            None => sample,
            Some(srtt) => (7 * srtt + sample) / 8,
        });
    }

    /// Records a successful append up to `index`; returns whether the match grew.
    pub fn record_match(&mut self, index: LogIndex) -> bool {
        while let Some(acked) = self.inflight.front().filter(|f| f.last_index <= index) {
            self.inflight_bytes -= acked.bytes;
            self.inflight.pop_front();
        }
        self.probe_sent = false;
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        self.next_index = self.next_index.max(index.next());
        // A late acknowledgement of entries from before the transfer must
        // not end it (etcd: leave StateSnapshot only once Match reaches the
        // pending snapshot).
        let transfer_done = self.snapshot.as_ref().is_none_or(|s| index >= s.index);
        if transfer_done {
            self.snapshot = None;
            self.state = ProgressState::Replicate;
        }
        true
    }

    /// Starts sending the snapshot file for (`index`, `term`).
    pub fn become_snapshot(
        &mut self,
        index: LogIndex,
        term: super::types::Term,
        file_bytes: u64,
        now_us: u64,
    ) {
        self.state = ProgressState::Snapshot;
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.probe_sent = false;
        self.snapshot = Some(SnapshotSend {
            index,
            term,
            file_bytes,
            next_offset: 0,
            acked_offset: 0,
            progress_us: now_us,
        });
    }

    /// Back to probing from `next_index` (after a rejection or a stall).
    pub fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ProgressState::Probe;
        self.next_index = next_index.max(self.match_index.next());
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.snapshot = None;
        self.probe_sent = false;
    }

    /// Whether another Append may leave. Bounding bytes, not only messages,
    /// keeps a lagging follower's connection from holding hundreds of
    /// megabytes that every later message on it must wait behind, and
    /// bounds the memory that backlog takes on both ends.
    pub fn can_send(&self, limits: InflightLimits) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent,
            ProgressState::Replicate => {
                self.inflight.len() < limits.messages && self.inflight_bytes < limits.bytes
            }
            ProgressState::Snapshot => self.snapshot.as_ref().is_some_and(|s| {
                s.next_offset < s.file_bytes && s.next_offset - s.acked_offset < limits.bytes as u64
            }),
        }
    }

    pub fn on_sent(&mut self, last_index: LogIndex, now_us: u64, bytes: usize) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => unreachable!("Appends wait while a snapshot is sent"),
            ProgressState::Replicate => {
                self.inflight.push_back(Inflight {
                    last_index,
                    sent_at_us: now_us,
                    bytes,
                });
                self.inflight_bytes += bytes;
                self.next_index = last_index.next();
            }
        }
    }

    /// An Append in flight for longer than `timeout_us` is presumed lost;
    /// without this a pipelined follower whose last Appends were dropped
    /// would wait forever (nothing later arrives to reveal the gap).
    pub fn is_stalled(&self, now_us: u64, timeout_us: u64) -> bool {
        self.inflight
            .front()
            .is_some_and(|f| now_us.saturating_sub(f.sent_at_us) > timeout_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srtt_converges_toward_samples() {
        let mut pr = Progress::new(LogIndex(1));
        pr.record_ack(1_000, 600);
        assert_eq!(pr.srtt_us, Some(400));
        for _ in 0..50 {
            pr.record_ack(10_000, 9_800);
        }
        assert!(pr.srtt_us.unwrap() < 210, "{:?}", pr.srtt_us);
    }

    #[test]
    fn match_frees_inflight_and_switches_to_replicate() {
        let two = InflightLimits {
            messages: 2,
            bytes: usize::MAX,
        };
        let mut pr = Progress::new(LogIndex(5));
        pr.become_probe(LogIndex(5));
        assert!(pr.can_send(two));
        pr.on_sent(LogIndex(7), 0, 10);
        assert!(!pr.can_send(two));
        assert!(pr.record_match(LogIndex(7)));
        assert_eq!(pr.state, ProgressState::Replicate);
        pr.on_sent(LogIndex(9), 1, 10);
        pr.on_sent(LogIndex(11), 2, 10);
        assert!(!pr.can_send(two));
        pr.record_match(LogIndex(9));
        assert_eq!(pr.inflight.len(), 1);
        assert_eq!(pr.inflight_bytes, 10);
        assert_eq!(pr.next_index, LogIndex(12));
    }

    #[test]
    fn bytes_in_flight_are_bounded_but_one_large_append_still_leaves() {
        let limits = InflightLimits {
            messages: 100,
            bytes: 1000,
        };
        let mut pr = Progress::new(LogIndex(1));
        pr.record_match(LogIndex(1));
        pr.on_sent(LogIndex(2), 0, 5000);
        assert!(!pr.can_send(limits), "above the byte bound");
        pr.record_match(LogIndex(2));
        assert_eq!(pr.inflight_bytes, 0);
        assert!(pr.can_send(limits));
        pr.on_sent(LogIndex(3), 0, 600);
        assert!(pr.can_send(limits), "600 of 1000 bytes in flight");
        pr.on_sent(LogIndex(4), 0, 600);
        assert!(!pr.can_send(limits));
        pr.become_probe(LogIndex(3));
        assert_eq!(pr.inflight_bytes, 0);
    }

    #[test]
    fn stale_ack_is_not_progress() {
        let mut pr = Progress::new(LogIndex(1));
        pr.record_match(LogIndex(4));
        assert!(!pr.record_match(LogIndex(3)));
        assert_eq!(pr.match_index, LogIndex(4));
    }
}
