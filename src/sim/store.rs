//! The state machine the simulator runs: the real KV store, its replies
//! tagged with the log index they answer for, so that the client model can
//! check that an acknowledgement names the entry that was applied and that
//! a read was served at or after every write acknowledged before it.

use super::checker::fnv1a;
use crate::core::LogIndex;
use crate::kv::command::ReadOp;
use crate::kv::resp::{RespLimits, Value, parse_reply};
use crate::kv::store::{KvStore, KvStoreConfig};
use crate::state_machine::StateMachine;

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
    pub fn get(&self, key: &[u8]) -> Vec<u8> {
        let reply = self.kv.read(&ReadOp::Get(key.to_vec())).to_bytes();
        tagged(self.kv.applied_index(), &reply)
    }
}

impl StateMachine for SimStore {
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Vec<u8> {
        let reply = self.kv.apply(index, command);
        tagged(index, &reply)
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

fn tagged(index: LogIndex, reply: &[u8]) -> Vec<u8> {
    let mut out = index.0.to_le_bytes().to_vec();
    out.extend_from_slice(reply);
    out
}

/// Splits a tagged reply into its index and the store's RESP value.
pub fn untag(output: &[u8]) -> (LogIndex, Value) {
    assert!(output.len() > 8, "untagged reply {output:?}");
    let (index, resp) = output.split_at(8);
    let index = LogIndex(u64::from_le_bytes(index.try_into().expect("8 bytes")));
    let value = match parse_reply(resp, &RespLimits::default()) {
        Ok(Some((value, used))) if used == resp.len() => value,
        other => panic!("the store's reply at {index} does not parse: {other:?}"),
    };
    (index, value)
}
