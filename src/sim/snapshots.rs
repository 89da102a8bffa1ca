//! The simulator's snapshot files: what is durable survives a crash (it is
//! shared with the node's model, outside the driver); a snapshot being
//! written, and one being received, are lost with the process.

use crate::core::{ChunkReceived, SnapshotMeta};
use crate::runtime::node::{
    MemReceiver, SnapshotStore, frame_snapshot, keep_newest_two, mem_chunk, unframe_snapshot,
};
use crate::state_machine::SnapshotJob;
use crate::storage::StorageError;
use std::cell::RefCell;
use std::rc::Rc;

/// Durable snapshot files of one node, oldest first (the newest two, as
/// the real data dir keeps them).
pub type SnapshotFiles = Rc<RefCell<Vec<(SnapshotMeta, Vec<u8>)>>>;

pub struct SimSnapshots {
    pub(super) durable: SnapshotFiles,
    /// Serialized, not yet durable: the cluster's `SnapshotDone` event
    /// makes it so, unless the node crashes first.
    pub(super) pending: Option<(SnapshotMeta, Vec<u8>)>,
    /// A `SnapshotDone` event is queued for `pending`.
    pub(super) scheduled: bool,
    receiving: MemReceiver,
}

impl SimSnapshots {
    pub fn new(durable: SnapshotFiles) -> SimSnapshots {
        SimSnapshots {
            durable,
            pending: None,
            scheduled: false,
            receiving: MemReceiver::default(),
        }
    }

    /// The pending snapshot became durable: its meta, file size and
    /// payload.
    pub(super) fn complete(&mut self) -> Option<(SnapshotMeta, u64, Vec<u8>)> {
        self.scheduled = false;
        let (meta, file) = self.pending.take()?;
        let bytes = file.len() as u64;
        let payload = unframe_snapshot(&file).expect("framed here").to_vec();
        keep_newest_two(&mut self.durable.borrow_mut(), meta.clone(), file);
        Some((meta, bytes, payload))
    }
}

/// The newest durable snapshot: its meta and payload.
pub fn newest(files: &SnapshotFiles) -> Option<(SnapshotMeta, Vec<u8>)> {
    let files = files.borrow();
    let (meta, file) = files.last()?;
    let payload = unframe_snapshot(file).expect("durable files are whole");
    Some((meta.clone(), payload.to_vec()))
}

impl SnapshotStore for SimSnapshots {
    fn save(&mut self, meta: &SnapshotMeta, job: SnapshotJob) -> Result<Option<u64>, StorageError> {
        self.pending = Some((meta.clone(), frame_snapshot(&job())));
        self.scheduled = false;
        Ok(None)
    }

    fn read_chunk(
        &mut self,
        meta: &SnapshotMeta,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StorageError> {
        mem_chunk(&self.durable.borrow(), meta, offset, len)
    }

    fn receive_chunk(&mut self, chunk: &ChunkReceived) -> Result<(), StorageError> {
        self.receiving.receive(chunk)
    }

    fn finish_receive(&mut self, meta: &SnapshotMeta) -> Result<Vec<u8>, StorageError> {
        let (file, payload) = self.receiving.finish(meta)?;
        keep_newest_two(&mut self.durable.borrow_mut(), meta.clone(), file);
        Ok(payload)
    }
}
