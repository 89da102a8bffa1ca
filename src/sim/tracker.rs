//! The log-level client: proposals with unique ids, resolved by what gets
//! applied, so that a proposal committed twice, an acknowledgement that
//! names another entry, or a read that misses an acknowledged write fails
//! the seed. It talks to every node that believes it leads, as real clients
//! would, not only to the newest leader.

use super::cluster::{Answer, Cluster, Ticket};
use super::store::Tagged;
use crate::core::{LogIndex, NodeId, Term};
use crate::kv::command::{SetCondition, WriteOp};
use crate::kv::reply::KvReply;
use crate::kv::store::KvCommand;
use crate::runtime::Reply;
use std::collections::{BTreeMap, VecDeque};

/// The key the tracker's commands write (no KV client uses it).
pub const TRACKER_KEY: &[u8] = b"tracker";

/// The bytes of proposal `id` (a filler is `None`): a plain SET, without a
/// session, so that the log holds exactly what the tracker proposed.
pub fn tracked_command(id: Option<u64>) -> Vec<u8> {
    let value = id.map_or(b"filler".to_vec(), |id| id.to_le_bytes().to_vec());
    KvCommand {
        client_id: 0,
        seq: 0,
        op: WriteOp::Set {
            key: TRACKER_KEY.to_vec(),
            value,
            condition: SetCondition::Always,
            get: false,
        },
    }
    .encode()
}

#[derive(Default)]
pub struct Tracker {
    next_id: u64,
    next_read: u64,
    /// (index, term) -> id of proposals awaiting their fate. Two nodes that
    /// both believe they lead can place proposals at one index.
    pending: BTreeMap<(LogIndex, Term), u64>,
    retry: VecDeque<u64>,
    committed: BTreeMap<u64, LogIndex>,
    /// The term of the entry applied at each index, on whichever node
    /// applied it first (State Machine Safety makes it one term).
    applied_terms: BTreeMap<LogIndex, Term>,
    /// Highest index known committed to the client: every later read must
    /// reflect it (linearizability of ReadIndex).
    pub acked_index: LogIndex,
    /// Read ticket -> the acknowledged index when it was issued.
    reads: BTreeMap<u64, LogIndex>,
    pub proposals: u64,
    pub reads_done: u64,
}

impl Tracker {
    fn propose(&mut self, cluster: &mut Cluster, id: Option<u64>) {
        let leaders = cluster.believed_leaders();
        let mut placed = false;
        let mut dropped = Vec::new();
        for leader in leaders {
            let ticket = id.map_or(Ticket::Filler, Ticket::Tracked);
            if let Some((index, term)) = cluster.propose(leader, tracked_command(id), ticket) {
                placed = true;
                if let Some(id) = id {
                    self.proposals += 1;
                    self.pending.insert((index, term), id);
                    // A deposed leader that does not know it yet appends at
                    // an index the cluster applied already; its entry is
                    // dropped, and no node may ever apply that index again
                    // (the deposed one gets a snapshot): resolve it now.
                    if let Some(applied) = self.applied_terms.get(&index).copied() {
                        assert_ne!(applied, term, "proposal {id} applied before it was made");
                        dropped.push((index, term));
                    }
                }
            }
        }
        // Only once every leader has its copy: resolving a deposed
        // leader's copy before the live leader's was placed retried the
        // proposal beside that copy, and both committed (lease profile
        // seeds 169 and 268, an isolated leader with a lower id).
        for key in dropped {
            self.resolve_dropped(key);
        }
        if let Some(id) = id.filter(|_| !placed) {
            self.retry.push_back(id);
        }
    }

    pub fn step(&mut self, cluster: &mut Cluster, new_proposals: bool) {
        let id = match self.retry.pop_front() {
            Some(id) => Some(id),
            None if new_proposals => {
                self.next_id += 1;
                Some(self.next_id)
            }
            None => None,
        };
        match id {
            Some(id) => self.propose(cluster, Some(id)),
            None => self.fill_gaps(cluster),
        }
        for leader in cluster.believed_leaders() {
            self.next_read += 1;
            let ticket = self.next_read;
            if cluster.read(leader, TRACKER_KEY.to_vec(), Ticket::Probe(ticket)) {
                self.reads.insert(ticket, self.acked_index);
            }
        }
    }

    /// A proposal whose index no log reaches any more is resolved only when
    /// something else lands there: propose untracked fillers.
    fn fill_gaps(&mut self, cluster: &mut Cluster) {
        let Some(leader) = cluster.leader() else {
            return;
        };
        let last = cluster.raft(leader).expect("leader is up").last_index();
        if self
            .pending
            .keys()
            .next_back()
            .is_some_and(|(i, _)| *i > last)
        {
            self.propose(cluster, None);
        }
    }

    /// One entry applied on some node.
    pub fn on_applied(&mut self, index: LogIndex, term: Term, command: Option<&[u8]>) {
        if command.is_some() {
            // Only commands are acknowledged to clients; reads answer
            // with the last command applied.
            self.acked_index = self.acked_index.max(index);
        }
        let here: Vec<(LogIndex, Term)> = self
            .pending
            .range((index, Term(0))..=(index, Term(u64::MAX)))
            .map(|(k, _)| *k)
            .collect();
        self.applied_terms.entry(index).or_insert(term);
        for key in here {
            if key.1 != term {
                self.resolve_dropped(key);
                continue;
            }
            let id = self.pending.remove(&key).expect("listed");
            assert!(
                command == Some(tracked_command(Some(id)).as_slice()),
                "index {index} holds another command than proposal {id}"
            );
            if let Some(before) = self.committed.insert(id, index) {
                panic!("proposal {id} committed twice: at {before} and {index}");
            }
            self.retry.retain(|r| *r != id);
        }
    }

    /// The proposal at `key` was definitively dropped (another term's entry
    /// was applied at its index); it is retried unless another copy
    /// committed or may still commit.
    fn resolve_dropped(&mut self, key: (LogIndex, Term)) {
        let id = self.pending.remove(&key).expect("pending");
        let elsewhere = self.pending.values().any(|other| *other == id);
        if !self.committed.contains_key(&id) && !elsewhere {
            self.retry.push_back(id);
        }
    }

    pub fn on_answer(&mut self, answer: Answer) {
        let Answer {
            node,
            ticket,
            reply,
            ..
        } = answer;
        match ticket {
            Ticket::Probe(read) => self.on_read_answer(node, read, reply),
            Ticket::Tracked(id) => {
                if let Ok((index, value)) = reply {
                    // An acknowledged write is committed where it says.
                    assert_eq!(
                        self.committed.get(&id),
                        Some(&index),
                        "node {node} acknowledged proposal {id} at {index}, not what was applied"
                    );
                    assert_eq!(value, KvReply::Ok, "proposal {id} at {index}");
                }
            }
            Ticket::Filler | Ticket::Kv { .. } | Ticket::Bulk(_) | Ticket::Conf(_) => {}
        }
    }

    fn on_read_answer(&mut self, node: NodeId, ticket: u64, reply: Reply<Tagged>) {
        let acked = self
            .reads
            .remove(&ticket)
            .expect("an answer for a read we issued");
        if let Ok((served, _)) = reply {
            assert!(
                served >= acked,
                "node {node}: read {ticket} served at applied index {served}, missing acknowledged index {acked}"
            );
            self.reads_done += 1;
        }
    }

    pub fn settled(&self) -> bool {
        self.pending.is_empty() && self.retry.is_empty()
    }

    pub fn unsettled(&self) -> (usize, usize) {
        (self.pending.len(), self.retry.len())
    }
}
