//! Everything the simulated clients do: the log-level tracker, the KV
//! clients whose history must be linearizable, and now and then an
//! oversized write.

use super::cluster::{Answer, Cluster, Ticket};
use super::kv_client::KvClients;
use super::tracker::Tracker;
use crate::kv::command::{SetCondition, WriteOp};
use crate::kv::reply::KvReply;
use crate::kv::store::KvCommand;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Oversized writes: SETs of 64 KiB to 2 MiB (log-uniform) to one key,
/// proposed to the leader, a few per seed. The cluster must stay live and
/// safe; a refusal or any other error means "not applied".
pub struct Bulk {
    enabled: bool,
    next_us: u64,
    pub sent: u64,
    pub applied: u64,
    pub refused: u64,
}

pub const BULK_KEY: &[u8] = b"bulk";
pub const BULK_BYTES_MIN: u64 = 64 * 1024;
pub const BULK_BYTES_MAX: u64 = 2 * 1024 * 1024;
/// At most this many per seed: each one is kept in every node's log.
const BULK_PER_SEED_MAX: u64 = 4;

impl Bulk {
    fn step(&mut self, cluster: &mut Cluster, rng: &mut StdRng) {
        if !self.enabled || cluster.now_us < self.next_us || self.sent >= BULK_PER_SEED_MAX {
            return;
        }
        let Some(leader) = cluster.leader() else {
            return;
        };
        self.next_us = cluster.now_us + rng.random_range(300_000..2_000_000);
        self.sent += 1;
        let (min, max) = ((BULK_BYTES_MIN as f64).ln(), (BULK_BYTES_MAX as f64).ln());
        let bytes = rng.random_range(min..=max).exp() as usize;
        let command = KvCommand {
            client_id: 0,
            seq: 0,
            op: WriteOp::Set {
                key: BULK_KEY.to_vec(),
                value: vec![self.sent as u8; bytes],
                condition: SetCondition::Always,
                get: false,
            },
        }
        .encode();
        cluster.propose(leader, command, Ticket::Bulk(self.sent));
    }

    fn on_answer(&mut self, answer: &Answer) {
        match &answer.reply {
            Ok((_, KvReply::Ok)) => self.applied += 1,
            _ => self.refused += 1,
        }
    }
}

pub struct Workload {
    pub tracker: Tracker,
    pub kv: KvClients,
    pub bulk: Bulk,
    rng: StdRng,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed ^ 0xc11e);
        let bulk = Bulk {
            enabled: rng.random_bool(0.3),
            next_us: rng.random_range(0..2_000_000),
            sent: 0,
            applied: 0,
            refused: 0,
        };
        Workload {
            tracker: Tracker::default(),
            kv: KvClients::default(),
            bulk,
            rng,
        }
    }

    /// Takes in what the cluster applied and answered since the last call.
    pub fn observe(&mut self, cluster: &mut Cluster) {
        for (_, index, term, command) in std::mem::take(&mut cluster.applied) {
            self.tracker.on_applied(index, term, command.as_deref());
        }
        for answer in std::mem::take(&mut cluster.answers) {
            match answer.ticket {
                Ticket::Tracked(_) | Ticket::Filler | Ticket::Probe(_) => {
                    self.tracker.on_answer(answer)
                }
                Ticket::Kv { .. } => self.kv.on_answer(answer),
                Ticket::Bulk(_) => self.bulk.on_answer(&answer),
                Ticket::Conf(_) => unreachable!("membership answers go to conf_answers"),
            }
        }
    }

    /// One round of client activity; `new` false once the faults stop:
    /// only what is in flight goes on.
    pub fn step(&mut self, cluster: &mut Cluster, new: bool) {
        self.tracker.step(cluster, new);
        let acked = self.tracker.acked_index;
        self.kv.step(cluster, &mut self.rng, acked, new);
        if new {
            self.bulk.step(cluster, &mut self.rng);
        }
    }

    pub fn settled(&self) -> bool {
        self.tracker.settled() && self.kv.settled()
    }
}
