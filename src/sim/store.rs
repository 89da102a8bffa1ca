//! The state machine the simulator runs: the real KV store, its replies
//! tagged with the log index they answer for, so that the client model can
//! check that an acknowledgement names the entry that was applied and that
//! a read was served at or after every write acknowledged before it.

use super::checker::fnv1a;
use crate::core::LogIndex;
use crate::kv::command::ReadOp;
use crate::kv::reply::KvReply;
use crate::kv::store::{KvStore, KvStoreConfig};
use crate::state_machine::{Bytes, StateMachine};

pub struct SimStore {
    kv: KvStore,
}

impl Default for SimStore {
    fn default() -> SimStore {
        SimStore {
            kv: KvStore::new(KvStoreConfig::default()),
        }
    }
}

impl SimStore {
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// Equal on two nodes whose stores hold the same data and sessions at
    /// the same index (the sessions hold each client's last reply; the
    /// client model checks every reply besides).
    pub fn state_hash(&self) -> u64 {
        fnv1a(0, &self.kv.snapshot())
    }

    /// `GET key`, tagged with the index of the last command applied.
    pub fn get(&self, key: &[u8]) -> Tagged {
        let reply = self.kv.read(&ReadOp::Get(key.to_vec()));
        (self.kv.applied_index(), reply)
    }
}

/// A reply and the index it answers for.
pub type Tagged = (LogIndex, KvReply);

impl StateMachine for SimStore {
    type Output = Tagged;

    fn apply(&mut self, index: LogIndex, command: &Bytes) -> Tagged {
        (index, self.kv.apply(index, command))
    }
    fn applied_index(&self) -> LogIndex {
        self.kv.applied_index()
    }
    fn snapshot(&self) -> Vec<u8> {
        self.kv.snapshot()
    }
    fn snapshot_job(&self) -> crate::state_machine::SnapshotJob {
        self.kv.snapshot_job()
    }
    fn restore(&mut self, index: LogIndex, snapshot: &[u8]) -> Result<(), String> {
        self.kv.restore(index, snapshot)
    }
}
