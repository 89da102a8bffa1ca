//! The membership nemesis (DESIGN.md 8): random configuration changes
//! through the leader's driver, one at a time, under every other fault.
//! Adds learners, promotes them (caught up or not), removes voters,
//! learners and the leader itself, and replaces a voter (add, promote,
//! remove). A removed id is never added again: its process kept its old
//! state, and etcd likewise never reuses a removed member's id.

use super::cluster::{Cluster, Ticket};
use crate::core::{ConfChange, MemberAddrs, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, VecDeque};

pub struct MembershipNemesis {
    rng: StdRng,
    /// Changes still to make, in order (a replacement is three).
    plan: VecDeque<ConfChange>,
    /// Ids ever removed: never added again.
    retired: BTreeSet<NodeId>,
    next_ticket: u64,
    pub proposed: u64,
}

impl MembershipNemesis {
    pub fn new(seed: u64) -> MembershipNemesis {
        MembershipNemesis {
            rng: StdRng::seed_from_u64(seed ^ 0x6e6d),
            plan: VecDeque::new(),
            retired: BTreeSet::new(),
            next_ticket: 0,
            proposed: 0,
        }
    }

    /// One attempt; returns the time until the next.
    pub fn step(&mut self, cluster: &mut Cluster) -> u64 {
        let pause_us = self.rng.random_range(50_000..400_000);
        let Some(leader) = cluster.leader() else {
            return pause_us;
        };
        if self.plan.is_empty() {
            self.draw(cluster, leader);
        }
        let Some(change) = self.plan.front().cloned() else {
            return pause_us;
        };
        if let ConfChange::AddLearner { id, .. } = &change {
            // The new process starts (as with `--join`) before it is added.
            cluster.restart(id.0 as usize);
        }
        if let ConfChange::Remove { id } = &change {
            self.retired.insert(*id);
        }
        // Answers of earlier changes were checked for arriving once, by
        // the cluster; only this attempt's refusal matters here.
        cluster.conf_answers.clear();
        self.next_ticket += 1;
        let landed = cluster.propose_conf_change(leader, change, Ticket::Conf(self.next_ticket));
        let refused_for_now = cluster
            .conf_answers
            .last()
            .is_some_and(|(_, _, ticket, reply)| {
                *ticket == Ticket::Conf(self.next_ticket)
                    && matches!(
                        reply,
                        Err(crate::runtime::ConfChangeFailure::Refused(
                            crate::core::ConfChangeError::ChangeInFlight { .. }
                                | crate::core::ConfChangeError::LeaderNotReady
                                | crate::core::ConfChangeError::TransferInProgress
                                | crate::core::ConfChangeError::NotLeader { .. }
                        ))
                    )
            });
        if landed.is_some() {
            self.proposed += 1;
            self.plan.pop_front();
        } else if !refused_for_now {
            // The configuration moved on (a lost change, another removal):
            // this plan no longer fits it.
            self.plan.clear();
        }
        pause_us
    }

    /// Draws the next change (or replacement) from the leader's
    /// configuration.
    fn draw(&mut self, cluster: &Cluster, leader: usize) {
        let raft = cluster.raft(leader).expect("the leader is up");
        let config = raft.cluster().clone();
        let leader_id = raft.id();
        let spares: Vec<NodeId> = cluster
            .ids()
            .into_iter()
            .filter(|id| !config.is_member(*id) && !self.retired.contains(id))
            .collect();
        let others: Vec<NodeId> = config
            .voters
            .iter()
            .copied()
            .filter(|v| *v != leader_id)
            .collect();
        // Keep two voters at least, so that faults leave some availability.
        let can_remove_voter = config.voters.len() > 2;
        let pick = |rng: &mut StdRng, ids: &[NodeId]| ids[rng.random_range(0..ids.len())];
        let addrs = |id: NodeId| MemberAddrs {
            peer_addr: format!("10.0.0.{}:5000", id.0),
            client_addr: format!("10.0.0.{}:6000", id.0),
        };
        match self.rng.random_range(0..10) {
            0..=2 if !spares.is_empty() => {
                let id = pick(&mut self.rng, &spares);
                self.plan.push_back(ConfChange::AddLearner {
                    id,
                    addrs: addrs(id),
                });
            }
            3..=4 if !config.learners.is_empty() => {
                let id = pick(&mut self.rng, &config.learners);
                self.plan.push_back(ConfChange::Promote { id });
            }
            5 if can_remove_voter && !others.is_empty() => {
                let id = pick(&mut self.rng, &others);
                self.plan.push_back(ConfChange::Remove { id });
            }
            6 if can_remove_voter => {
                self.plan.push_back(ConfChange::Remove { id: leader_id });
            }
            7 if !config.learners.is_empty() => {
                let id = pick(&mut self.rng, &config.learners);
                self.plan.push_back(ConfChange::Remove { id });
            }
            8..=9 if !spares.is_empty() => {
                let id = pick(&mut self.rng, &spares);
                let old = pick(&mut self.rng, &config.voters);
                self.plan.push_back(ConfChange::AddLearner {
                    id,
                    addrs: addrs(id),
                });
                self.plan.push_back(ConfChange::Promote { id });
                self.plan.push_back(ConfChange::Remove { id: old });
            }
            _ => {}
        }
    }
}
