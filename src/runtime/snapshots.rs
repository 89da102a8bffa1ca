//! Snapshot files of a production node (DESIGN.md 5): the driver's
//! [`SnapshotStore`] over the data dir. A snapshot of our own state is
//! serialized and written on a `snapshot` thread while the Raft thread goes
//! on; chunks are read and received on the Raft thread (one chunk at a
//! time, written to the page cache; the whole file is fsynced once, when
//! the last chunk is in).

use super::node::SnapshotStore;
use crate::core::{ChunkReceived, SnapshotMeta};
use crate::state_machine::SnapshotJob;
use crate::storage::{
    SnapshotFile, SnapshotReceiver, SnapshotWriter, StorageError, retain_snapshots,
    snapshot_file_bytes, snapshot_file_name,
};
use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// What the `snapshot` thread reports to the Raft thread.
#[derive(Debug)]
pub enum SnapshotEvent {
    /// The file for this snapshot is durable.
    Saved(SnapshotFile),
    Failed(SnapshotMeta, StorageError),
}

pub struct FileSnapshots {
    dir: PathBuf,
    /// Durable files that chunks may be read from, newest last (the newest
    /// two: `retain_snapshots` deletes older ones).
    files: Vec<SnapshotFile>,
    receiver: Option<SnapshotReceiver>,
    events: Sender<SnapshotEvent>,
    saver: Option<JoinHandle<()>>,
    /// Test-only: the snapshot thread sleeps this long after writing the
    /// file and before making it durable (`SRAFT_TEST_SNAPSHOT_DELAY_MS`),
    /// so a test can kill a node while a snapshot is half done.
    pub test_delay_ms: u64,
}

impl FileSnapshots {
    /// `loaded`: the snapshot the WAL was opened with (its meta and payload
    /// length), whose file can be sent to followers at once.
    pub fn new(
        dir: &Path,
        loaded: Option<(SnapshotMeta, u64)>,
        events: Sender<SnapshotEvent>,
    ) -> FileSnapshots {
        let files = loaded
            .map(|(meta, payload_bytes)| SnapshotFile {
                path: dir.join(snapshot_file_name(meta.last_index, meta.last_term)),
                file_bytes: snapshot_file_bytes(&meta, payload_bytes),
                meta,
            })
            .into_iter()
            .collect();
        FileSnapshots {
            dir: dir.to_path_buf(),
            files,
            receiver: None,
            events,
            saver: None,
            test_delay_ms: 0,
        }
    }

    /// The newest durable file.
    pub fn newest(&self) -> Option<&SnapshotFile> {
        self.files.last()
    }

    /// The Raft thread's part of a `Saved` event: the file may be sent now,
    /// and older ones go.
    pub fn on_saved(&mut self, file: SnapshotFile) {
        if let Some(saver) = self.saver.take() {
            let _ = saver.join();
        }
        self.add(file);
    }

    pub fn on_failed(&mut self) {
        if let Some(saver) = self.saver.take() {
            let _ = saver.join();
        }
    }

    fn add(&mut self, file: SnapshotFile) {
        if let Err(e) = retain_snapshots(&self.dir, &file) {
            log::warn!("cannot remove old snapshots: {e}");
        }
        self.files.push(file);
        self.files
            .sort_by_key(|f| (f.meta.last_index, f.meta.last_term));
        let excess = self.files.len().saturating_sub(2);
        self.files.drain(..excess);
    }

    /// Waits for a snapshot being written (at shutdown).
    pub fn finish(&mut self) {
        if let Some(saver) = self.saver.take() {
            let _ = saver.join();
        }
    }

    fn file(&self, meta: &SnapshotMeta) -> Result<&SnapshotFile, StorageError> {
        self.files
            .iter()
            .rev()
            .find(|f| f.meta == *meta)
            .ok_or(StorageError::SnapshotMissing {
                index: meta.last_index,
            })
    }
}

fn write_snapshot(
    dir: &Path,
    meta: &SnapshotMeta,
    job: SnapshotJob,
    test_delay_ms: u64,
) -> Result<SnapshotFile, StorageError> {
    let started = Instant::now();
    let payload = job();
    let serialized = started.elapsed();
    let mut writer = SnapshotWriter::create(dir, meta, payload.len() as u64)?;
    writer.write(&payload)?;
    if test_delay_ms > 0 {
        thread::sleep(std::time::Duration::from_millis(test_delay_ms));
    }
    let file = writer.finish()?;
    log::debug!(
        "snapshot {}: serialized {} bytes in {serialized:?}, durable after {:?}",
        meta.last_index,
        payload.len(),
        started.elapsed()
    );
    Ok(file)
}

impl SnapshotStore for FileSnapshots {
    fn save(&mut self, meta: &SnapshotMeta, job: SnapshotJob) -> Result<Option<u64>, StorageError> {
        let (dir, meta, events) = (self.dir.clone(), meta.clone(), self.events.clone());
        let delay_ms = self.test_delay_ms;
        let spawned = thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let event = match write_snapshot(&dir, &meta, job, delay_ms) {
                    Ok(file) => SnapshotEvent::Saved(file),
                    Err(e) => SnapshotEvent::Failed(meta, e),
                };
                // Closed: the node is stopping, and the file (if any) is
                // found at the next start.
                let _ = events.send(event);
            })
            .map_err(|e| StorageError::io(&self.dir, "spawn the snapshot thread", e))?;
        self.saver = Some(spawned);
        Ok(None)
    }

    fn read_chunk(
        &mut self,
        meta: &SnapshotMeta,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StorageError> {
        self.file(meta)?.read_chunk(offset, len)
    }

    fn receive_chunk(&mut self, chunk: &ChunkReceived) -> Result<(), StorageError> {
        if chunk.offset == 0 {
            // Dropping an unfinished receiver removes its temp file.
            self.receiver = Some(SnapshotReceiver::create(
                &self.dir,
                &chunk.meta,
                chunk.file_bytes,
            )?);
        }
        let receiver = self
            .receiver
            .as_mut()
            .ok_or(StorageError::SnapshotMissing {
                index: chunk.meta.last_index,
            })?;
        receiver.write_chunk(chunk.offset, &chunk.data)
    }

    fn finish_receive(&mut self, meta: &SnapshotMeta) -> Result<Vec<u8>, StorageError> {
        let receiver = self.receiver.take().ok_or(StorageError::SnapshotMissing {
            index: meta.last_index,
        })?;
        // One verifying read of the file serves the restore as well.
        let (file, payload) = receiver.finish_with_payload()?;
        self.add(file);
        Ok(payload)
    }
}
