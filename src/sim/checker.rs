//! Safety invariants, checked after every simulated event (Raft paper
//! Figure 3): election safety, log matching, leader completeness, state
//! machine safety, plus durable term/vote monotonicity.

use crate::core::{
    ClusterConfig, Entry, EntryPayload, HardState, LogIndex, NodeId, Raft, Role, Term,
};
use std::collections::BTreeMap;

/// FNV-1a: stable across Rust versions and platforms, unlike DefaultHasher.
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = seed ^ 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

pub fn payload_hash(payload: &EntryPayload) -> u64 {
    match payload {
        EntryPayload::Noop => 1,
        EntryPayload::Command(data) => fnv1a(2, data),
        EntryPayload::VotersOnly(_) | EntryPayload::Config(_) => fnv1a(
            3,
            &postcard::to_allocvec(payload).expect("a payload encodes"),
        ),
    }
}

/// Hash of a log prefix ending with `entry`, chained from the previous one:
/// equal chain hashes at an index mean equal prefixes (Log Matching).
pub fn chain_hash(prev: u64, entry: &Entry) -> u64 {
    let mut bytes = prev.to_le_bytes().to_vec();
    bytes.extend_from_slice(&entry.term.0.to_le_bytes());
    bytes.extend_from_slice(&payload_hash(&entry.payload).to_le_bytes());
    fnv1a(4, &bytes)
}

#[derive(Default)]
pub struct Checker {
    /// Election Safety: at most one leader per term, ever.
    leaders: BTreeMap<Term, NodeId>,
    /// (index, term) -> chain hash, over every entry any node ever stored.
    chains: BTreeMap<(LogIndex, Term), u64>,
    /// index -> (term, chain hash) of every entry known committed.
    committed: BTreeMap<LogIndex, (Term, u64)>,
    /// index -> a term the entry was committed in or after: every leader
    /// of a later term must hold it. A leader of an older term, elected
    /// late (its vote grants waited in a stopped process's backlog), need
    /// not. The smallest of two bounds over every node that applied it:
    /// the newest term that had a leader then, and the node's own term
    /// (it learned the commit from a leader of the commit's term or a
    /// later one).
    committed_by_term: BTreeMap<LogIndex, Term>,
    /// Hash of the state machine's serialized state at each snapshot index
    /// seen: every node's state at an index must serialize alike, and a
    /// restored state must serialize as the state it was taken from.
    snapshot_states: BTreeMap<LogIndex, (NodeId, u64)>,
    /// The newest term whose leader committed an entry of its own (its
    /// no-op first): from then on no leader of an older term may serve a
    /// lease read (DESIGN.md 3.8).
    newest_leader_commit: Term,
}

impl Checker {
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    /// The chain hash of the committed log through `index`, which must be
    /// committed with `term` (a snapshot covers only committed entries).
    pub fn committed_chain(&self, index: LogIndex, term: Term) -> u64 {
        match self.committed.get(&index) {
            Some((t, chain)) => {
                assert_eq!(
                    *t, term,
                    "snapshot at {index} of term {term} over committed term {t}"
                );
                *chain
            }
            None => panic!("snapshot at {index} (term {term}) of an uncommitted index"),
        }
    }

    /// `node`'s state machine at `index` serializes as `state`.
    pub fn on_snapshot_state(&mut self, node: NodeId, index: LogIndex, state: &[u8]) {
        let hash = fnv1a(5, state);
        if let Some((other, known)) = self.snapshot_states.get(&index) {
            assert_eq!(
                *known, hash,
                "state machine safety: node {node}'s state at {index} differs from node {other}'s"
            );
        } else {
            self.snapshot_states.insert(index, (node, hash));
        }
    }

    /// Election Safety: `node` became the leader of `term`.
    pub fn on_leader(&mut self, node: NodeId, term: Term) {
        if let Some(other) = self.leaders.insert(term, node) {
            assert_eq!(
                other, node,
                "election safety: {other} and {node} both led term {term}"
            );
        }
    }

    /// `raft`, the leader of `term`, as it stands right after the input
    /// that elected it (the driver's batch may go on to take a newer
    /// leader's entries, which say nothing of the log it was elected with).
    pub fn leader_completeness(&self, node: NodeId, term: Term, raft: &Raft) {
        // Leader Completeness: a new leader holds every entry committed in
        // an earlier term, in its log or in the snapshot its log starts
        // after.
        let base = raft.snapshot_meta();
        if base.last_index.0 > 0 {
            assert_eq!(
                self.committed.get(&base.last_index).map(|(t, _)| *t),
                Some(base.last_term),
                "leader completeness: node {node}'s snapshot at {} is not the committed entry",
                base.last_index
            );
        }
        for (index, (committed_term, _)) in self.committed.range(base.last_index.next()..) {
            if self.committed_by_term[index] >= term {
                continue;
            }
            assert_eq!(
                raft.term_at(*index),
                Some(*committed_term),
                "leader completeness: node {node} leads term {term} without committed index {index}"
            );
        }
    }

    /// Log Matching, checked on every entry as it is stored.
    pub fn on_stored(&mut self, node: NodeId, entry: &Entry, chain: u64) {
        let key = (entry.index, entry.term);
        if let Some(known) = self.chains.insert(key, chain) {
            assert_eq!(
                known, chain,
                "log matching: node {node} holds index {} term {} with a different prefix",
                entry.index, entry.term
            );
        }
    }

    /// State Machine Safety: a committed index never changes. Returns
    /// whether the index is newly known committed. `node_term`: the
    /// applying node's term.
    pub fn on_committed(
        &mut self,
        node: NodeId,
        index: LogIndex,
        term: Term,
        chain: u64,
        node_term: Term,
    ) -> bool {
        let newest_leader = self.leaders.keys().next_back().copied();
        let bound = node_term.min(newest_leader.unwrap_or(Term(0)));
        self.committed_by_term
            .entry(index)
            .and_modify(|known| *known = (*known).min(bound))
            .or_insert(bound);
        match self.committed.get(&index) {
            Some(known) => {
                assert_eq!(
                    *known,
                    (term, chain),
                    "state machine safety: node {node} committed a different entry at {index}"
                );
                false
            }
            None => {
                self.committed.insert(index, (term, chain));
                true
            }
        }
    }

    /// `raft` leads and has committed an entry of its term.
    pub fn on_leader_commit(&mut self, raft: &Raft) {
        if raft.role() == Role::Leader && raft.term_at(raft.commit_index()) == Some(raft.term()) {
            self.newest_leader_commit = self.newest_leader_commit.max(raft.term());
        }
    }

    /// Lease safety, directly (DESIGN.md 3.8): `node` served a read under
    /// its lease just now; no leader of a later term may have committed
    /// anything yet, or that read may miss an acknowledged write.
    pub fn on_lease_read(&self, node: NodeId, raft: &Raft) {
        assert!(
            self.newest_leader_commit <= raft.term(),
            "lease safety: node {node} served a lease read in term {} after the leader of term {} committed",
            raft.term(),
            self.newest_leader_commit
        );
    }

    pub fn check_node(&self, node: NodeId, raft: &Raft) {
        let (applied, commit, last) =
            (raft.applied_index(), raft.commit_index(), raft.last_index());
        assert!(
            applied <= commit,
            "node {node}: applied={applied} commit={commit}"
        );
        assert!(commit <= last, "node {node}: commit={commit} last={last}");
        if raft.role() == Role::Leader {
            assert_eq!(
                self.leaders.get(&raft.term()),
                Some(&node),
                "node {node} leads term {} unannounced",
                raft.term()
            );
        }
    }
}

/// Durable term and vote never go backwards (a restart must not vote twice).
pub fn check_hard_state_transition(node: NodeId, old: &HardState, new: &HardState) {
    assert!(
        new.term >= old.term,
        "node {node}: persisted term went back {} -> {}",
        old.term,
        new.term
    );
    if new.term == old.term && old.vote.is_some() {
        assert_eq!(
            new.vote, old.vote,
            "node {node}: changed its vote within term {}",
            new.term
        );
    }
}

/// Where a log ends, as a vote compares logs (Raft paper 5.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogTip {
    pub last_term: Term,
    pub last_index: LogIndex,
}

/// A leader's election counted only voters of its configuration: the
/// voters among those whose grant reached it, and itself, are a quorum of
/// it. A learner's grant (or a removed node's) never made the difference.
pub fn check_voter_quorum(
    node: NodeId,
    term: Term,
    raft: &Raft,
    kind: crate::core::ElectionKind,
    grants: &std::collections::BTreeSet<NodeId>,
) {
    // The configuration when the batch was handed out: the one of the
    // election unless the same batch took a newer leader's configuration
    // entry (no profile has both batches and membership changes).
    let config = raft.cluster();
    assert!(
        config.is_voter(node),
        "node {node} leads term {term} but is not a voter of {:?}",
        config.voters
    );
    let voters = config.count_voters(grants.iter().chain([&node]));
    assert!(
        voters >= config.quorum(),
        "node {node} leads term {term} ({kind:?}) with grants from {grants:?}: only {voters} voters of {:?}",
        config.voters
    );
}

/// Leader Completeness against every log that could still campaign, not
/// only the leaders elected so far: a log that lacks a committed entry must
/// be less up-to-date than a majority of the durable logs, or its owner
/// could win an election and overwrite the entry. In correct Raft this
/// holds the moment an entry commits: a majority holds the commit's entry
/// of the leader's term durably, and any log without the entry ends
/// before it. `lacking` are the logs without the entry; `durable` the tip
/// of every voter's durable log.
pub fn check_committed_kept(
    index: LogIndex,
    term: Term,
    lacking: &[(NodeId, LogTip, ClusterConfig)],
    durable: &[(NodeId, LogTip)],
) {
    for (node, tip, config) in lacking {
        // It campaigns only as a voter of its own configuration, and needs
        // a quorum of that configuration's voters (DESIGN.md 8).
        if !config.is_voter(*node) {
            continue;
        }
        let voters = durable
            .iter()
            .filter(|(id, v)| config.is_voter(*id) && v <= tip)
            .count();
        assert!(
            voters < config.quorum(),
            "leader completeness: node {node} lacks committed index {index} (term {term}), yet its log (last term {}, last index {}) is as up-to-date as {voters} of the durable logs of its voters {:?}: it could be elected and overwrite it",
            tip.last_term,
            tip.last_index,
            config.voters
        );
    }
}
