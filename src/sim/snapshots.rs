//! The simulator's snapshot files: what is durable survives a crash (it is
//! shared with the node's model, outside the driver); a snapshot being
//! written, and one being received, are lost with the process.

use crate::core::{ChunkReceived, SnapshotMeta};
use crate::runtime::node::{SnapshotStore, frame_snapshot, unframe_snapshot};
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
    receiving: Option<(SnapshotMeta, Vec<u8>)>,
}

impl SimSnapshots {
    pub fn new(durable: SnapshotFiles) -> SimSnapshots {
        SimSnapshots {
            durable,
            pending: None,
            scheduled: false,
            receiving: None,
        }
    }

    fn keep(&self, meta: SnapshotMeta, file: Vec<u8>) {
        let mut durable = self.durable.borrow_mut();
        durable.push((meta, file));
        durable.sort_by_key(|(m, _)| (m.last_index, m.last_term));
        let excess = durable.len().saturating_sub(2);
        durable.drain(..excess);
    }

    /// The pending snapshot became durable: its meta, file size and
    /// payload.
    pub(super) fn complete(&mut self) -> Option<(SnapshotMeta, u64, Vec<u8>)> {
        self.scheduled = false;
        let (meta, file) = self.pending.take()?;
        let bytes = file.len() as u64;
        let payload = unframe_snapshot(&file).expect("framed here").to_vec();
        self.keep(meta.clone(), file);
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
        let durable = self.durable.borrow();
        let Some((_, file)) = durable.iter().find(|(m, _)| m == meta) else {
            return Err(StorageError::SnapshotMissing {
                index: meta.last_index,
            });
        };
        let start = (offset as usize).min(file.len());
        let end = start.saturating_add(len).min(file.len());
        Ok(file[start..end].to_vec())
    }

    fn receive_chunk(&mut self, chunk: &ChunkReceived) -> Result<(), StorageError> {
        if chunk.offset == 0 {
            self.receiving = Some((chunk.meta.clone(), Vec::new()));
        }
        match &mut self.receiving {
            Some((meta, bytes)) if *meta == chunk.meta && bytes.len() as u64 == chunk.offset => {
                bytes.extend_from_slice(&chunk.data);
                Ok(())
            }
            _ => Err(StorageError::SnapshotMissing {
                index: chunk.meta.last_index,
            }),
        }
    }

    fn finish_receive(&mut self, meta: &SnapshotMeta) -> Result<Vec<u8>, StorageError> {
        let missing = StorageError::SnapshotMissing {
            index: meta.last_index,
        };
        let Some((_, file)) = self.receiving.take().filter(|(m, _)| m == meta) else {
            return Err(missing);
        };
        let payload = unframe_snapshot(&file).ok_or(missing)?.to_vec();
        self.keep(meta.clone(), file);
        Ok(payload)
    }
}
