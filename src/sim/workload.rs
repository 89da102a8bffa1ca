//! Everything the simulated clients do: the log-level tracker and the KV
//! clients whose history must be linearizable.

use super::cluster::{Cluster, Ticket};
use super::kv_client::KvClients;
use super::tracker::Tracker;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub struct Workload {
    pub tracker: Tracker,
    pub kv: KvClients,
    rng: StdRng,
}

impl Workload {
    pub fn new(seed: u64) -> Workload {
        Workload {
            tracker: Tracker::default(),
            kv: KvClients::default(),
            rng: StdRng::seed_from_u64(seed ^ 0xc11e),
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
            }
        }
    }

    /// One round of client activity; `new` false once the faults stop:
    /// only what is in flight goes on.
    pub fn step(&mut self, cluster: &mut Cluster, new: bool) {
        self.tracker.step(cluster, new);
        let acked = self.tracker.acked_index;
        self.kv.step(cluster, &mut self.rng, acked, new);
    }

    pub fn settled(&self) -> bool {
        self.tracker.settled() && self.kv.settled()
    }
}
