//! Snapshot files: the state machine at some log index, plus the metadata
//! of the log prefix it replaces.
//!
//! ```text
//! | magic "SRAFTSNP" | version: u32 LE | meta length: u32 LE | postcard(SnapshotMeta)
//! | payload length: u64 LE | payload | crc32(everything before): u32 LE |
//! ```
//!
//! The whole file is what a leader streams to a follower in chunks
//! (`InstallSnapshot`), so one format and one check serve both: a file is
//! only ever renamed to its final name `snap-<index>-<term>.snap` after it
//! was written in full, fsynced and (when received) verified, and the
//! directory is fsynced after the rename. A crash leaves at worst a temp
//! file, which the next `load_latest` removes.

use super::StorageError;
use super::segment::sync_dir;
use crate::core::types::{LogIndex, SnapshotMeta, Term, VotersOnlySnapshotMeta};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"SRAFTSNP";
pub const SNAPSHOT_VERSION: u32 = 2;
/// Format 1 held a configuration of voters only (before issue 11); it is
/// still read.
const SNAPSHOT_VERSION_VOTERS_ONLY: u32 = 1;

/// Magic, version and the meta length.
const FIXED_HEADER_BYTES: usize = 16;
const PAYLOAD_LENGTH_BYTES: usize = 8;
const TRAILER_BYTES: u64 = 4;
/// Bounds the meta length field, so that a damaged one reads as corruption
/// instead of an allocation of up to 4 GiB. A meta is a few bytes per voter.
const META_BYTES_MAX: usize = 1 << 20;

const NAME_PREFIX: &str = "snap-";
const NAME_SUFFIX: &str = ".snap";
const NUMBER_DIGITS: usize = 20;
/// Appended to the final name for the temp names of a snapshot being
/// written locally (`*.snap.tmp`) and of one being received
/// (`*.snap.recv.tmp`): distinct, so that a node receiving a snapshot while
/// it writes its own of the same index never mixes the two.
const WRITER_TMP_SUFFIX: &str = ".tmp";
const RECEIVER_TMP_SUFFIX: &str = ".recv.tmp";
/// Every temp name ends so; `load_latest` removes such leftovers.
const TMP_SUFFIX: &str = ".tmp";

pub fn snapshot_file_name(index: LogIndex, term: Term) -> String {
    format!(
        "{NAME_PREFIX}{:0w$}-{:0w$}{NAME_SUFFIX}",
        index.0,
        term.0,
        w = NUMBER_DIGITS
    )
}

/// Index and term of a snapshot file name; `None` for other files.
fn parse_snapshot_file_name(name: &str) -> Option<(LogIndex, Term)> {
    let middle = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    let (index, term) = middle.split_once('-')?;
    let number = |digits: &str| {
        (digits.len() == NUMBER_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    Some((LogIndex(number(index)?), Term(number(term)?)))
}

/// Magic, version, meta and payload length: everything before the payload.
fn encode_header(meta: &SnapshotMeta, payload_bytes: u64) -> Vec<u8> {
    let meta_bytes = postcard::to_allocvec(meta).expect("postcard encodes a SnapshotMeta");
    assert!(
        meta_bytes.len() <= META_BYTES_MAX,
        "snapshot meta of {} bytes",
        meta_bytes.len()
    );
    let mut header = Vec::with_capacity(FIXED_HEADER_BYTES + meta_bytes.len() + 8);
    header.extend_from_slice(&SNAPSHOT_MAGIC);
    header.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    header.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    header.extend_from_slice(&meta_bytes);
    header.extend_from_slice(&payload_bytes.to_le_bytes());
    header
}

/// The meta in the layout of format `version` (1 or 2).
fn decode_meta(version: u32, raw: &[u8]) -> Result<SnapshotMeta, postcard::Error> {
    if version == SNAPSHOT_VERSION_VOTERS_ONLY {
        return postcard::from_bytes::<VotersOnlySnapshotMeta>(raw).map(SnapshotMeta::from);
    }
    postcard::from_bytes(raw)
}

/// The file size of a snapshot of `meta` with `payload_bytes` of payload.
pub fn snapshot_file_bytes(meta: &SnapshotMeta, payload_bytes: u64) -> u64 {
    encode_header(meta, 0).len() as u64 + payload_bytes + TRAILER_BYTES
}

/// A snapshot file that was durable and complete when it was listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    pub meta: SnapshotMeta,
    pub path: PathBuf,
    /// The whole file, header and trailer included: what is sent.
    pub file_bytes: u64,
}

impl SnapshotFile {
    /// Up to `len` bytes of the file from `offset` (fewer at the end, none
    /// past it): one chunk of an `InstallSnapshot` transfer.
    pub fn read_chunk(&self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let len = len.min(self.file_bytes.saturating_sub(offset) as usize);
        let mut chunk = vec![0; len];
        if len > 0 {
            let file = File::open(&self.path)
                .map_err(|e| StorageError::io(&self.path, "open snapshot", e))?;
            file.read_exact_at(&mut chunk, offset)
                .map_err(|e| StorageError::io(&self.path, "read snapshot", e))?;
        }
        Ok(chunk)
    }

    /// The state-machine bytes, after checking the whole file's CRC and
    /// that it still holds the snapshot it was listed as.
    pub fn read_payload(&self) -> Result<Vec<u8>, StorageError> {
        let Verified { meta, payload, .. } = read_verified(&self.path, true)?;
        if meta != self.meta {
            let reason = format!("header holds {meta:?}, expected {:?}", self.meta);
            return Err(StorageError::snapshot_corrupt(&self.path, reason));
        }
        Ok(payload.expect("asked for the payload"))
    }
}

/// What `read_verified` found in a whole, good snapshot file.
struct Verified {
    meta: SnapshotMeta,
    file_bytes: u64,
    /// Only when asked for.
    payload: Option<Vec<u8>>,
}

/// Reads and checks a whole snapshot file: magic, version, lengths and the
/// CRC. Returns the payload too if `keep_payload`. Streams, so that
/// verifying a large file does not need its size in memory.
fn read_verified(path: &Path, keep_payload: bool) -> Result<Verified, StorageError> {
    let corrupt = |reason: String| StorageError::snapshot_corrupt(path, reason);
    let read_error = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("file ends early".to_string()),
        _ => StorageError::io(path, "read snapshot", e),
    };
    let file = File::open(path).map_err(|e| StorageError::io(path, "open snapshot", e))?;
    let file_bytes = file
        .metadata()
        .map_err(|e| StorageError::io(path, "stat snapshot", e))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut crc = crc32fast::Hasher::new();
    let mut read = |len: usize, crc: &mut crc32fast::Hasher| -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0; len];
        reader.read_exact(&mut buf).map_err(read_error)?;
        crc.update(&buf);
        Ok(buf)
    };
    let fixed = read(FIXED_HEADER_BYTES, &mut crc)?;
    if fixed[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(format!("bad magic {:?}", &fixed[..8])));
    }
    let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_VOTERS_ONLY {
        return Err(corrupt(format!(
            "snapshot format version {version} (this build reads {SNAPSHOT_VERSION})"
        )));
    }
    let meta_bytes = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes")) as usize;
    if meta_bytes > META_BYTES_MAX || meta_bytes as u64 > file_bytes {
        return Err(corrupt(format!("meta length {meta_bytes} is implausible")));
    }
    let meta_raw = read(meta_bytes, &mut crc)?;
    let payload_length = read(PAYLOAD_LENGTH_BYTES, &mut crc)?;
    let payload_bytes = u64::from_le_bytes(payload_length.try_into().expect("8 bytes"));
    let header_bytes = (FIXED_HEADER_BYTES + meta_bytes + PAYLOAD_LENGTH_BYTES) as u64;
    let expected_bytes = header_bytes
        .checked_add(payload_bytes)
        .and_then(|b| b.checked_add(TRAILER_BYTES));
    if expected_bytes != Some(file_bytes) {
        // A flipped byte in a length shows here first; name it as the
        // damage it is when the CRC disagrees too.
        if let Some(reason) = crc_mismatch(path, file_bytes)? {
            return Err(corrupt(reason));
        }
        return Err(corrupt(format!(
            "file is {file_bytes} bytes but its header announces {payload_bytes} bytes of payload \
             after {header_bytes} bytes of header"
        )));
    }
    let mut payload = keep_payload.then(|| Vec::with_capacity(payload_bytes as usize));
    let mut left = payload_bytes;
    let mut buf = vec![0; 1 << 16];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.read_exact(&mut buf[..n]).map_err(read_error)?;
        crc.update(&buf[..n]);
        if let Some(payload) = payload.as_mut() {
            payload.extend_from_slice(&buf[..n]);
        }
        left -= n as u64;
    }
    let mut trailer = [0; TRAILER_BYTES as usize];
    reader.read_exact(&mut trailer).map_err(read_error)?;
    let (stored, computed) = (u32::from_le_bytes(trailer), crc.finalize());
    if stored != computed {
        return Err(corrupt(format!(
            "crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
        )));
    }
    // Decoded after the CRC check: a damaged meta is reported as the
    // damage it is (a flipped byte in a length can make it undecodable).
    let meta = decode_meta(version, &meta_raw)
        .map_err(|e| corrupt(format!("undecodable snapshot meta: {e}")))?;
    Ok(Verified {
        meta,
        file_bytes,
        payload,
    })
}

/// "crc mismatch (...)" if the whole file's CRC disagrees with its
/// trailer, None if it agrees.
fn crc_mismatch(path: &Path, file_bytes: u64) -> Result<Option<String>, StorageError> {
    if file_bytes < TRAILER_BYTES {
        return Ok(None);
    }
    let io_error = |e| StorageError::io(path, "read snapshot", e);
    let file = File::open(path).map_err(io_error)?;
    // Streamed: the file may be large, and this is only an error path.
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut crc = crc32fast::Hasher::new();
    let mut left = file_bytes - TRAILER_BYTES;
    let mut buf = vec![0; 1 << 16];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        reader.read_exact(&mut buf[..n]).map_err(io_error)?;
        crc.update(&buf[..n]);
        left -= n as u64;
    }
    let mut trailer = [0; TRAILER_BYTES as usize];
    reader.read_exact(&mut trailer).map_err(io_error)?;
    let (stored, computed) = (u32::from_le_bytes(trailer), crc.finalize());
    Ok((stored != computed)
        .then(|| format!("crc mismatch (stored {stored:#010x}, computed {computed:#010x})")))
}

/// Writes a snapshot taken on this node, streaming its payload.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    meta: SnapshotMeta,
    file: BufWriter<File>,
    crc: crc32fast::Hasher,
    payload_bytes: u64,
    written_bytes: u64,
    file_bytes: u64,
    /// Renamed to its final name: the drop must not remove anything.
    finished: bool,
}

impl SnapshotWriter {
    /// Starts `snap-<index>-<term>.snap.tmp` in `dir` with its header.
    /// `payload_bytes` is the exact payload length the header announces.
    pub fn create(
        dir: &Path,
        meta: &SnapshotMeta,
        payload_bytes: u64,
    ) -> Result<SnapshotWriter, StorageError> {
        let name = snapshot_file_name(meta.last_index, meta.last_term);
        let tmp_path = dir.join(format!("{name}{WRITER_TMP_SUFFIX}"));
        // truncate: a temp file of the same name is a leftover of an attempt
        // that crashed; its bytes mean nothing.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| StorageError::io(&tmp_path, "create snapshot", e))?;
        let header = encode_header(meta, payload_bytes);
        let mut writer = SnapshotWriter {
            dir: dir.to_path_buf(),
            final_path: dir.join(name),
            tmp_path,
            meta: meta.clone(),
            file: BufWriter::with_capacity(1 << 16, file),
            crc: crc32fast::Hasher::new(),
            payload_bytes,
            written_bytes: 0,
            file_bytes: header.len() as u64 + payload_bytes + TRAILER_BYTES,
            finished: false,
        };
        writer.write_raw(&header)?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.tmp_path
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.crc.update(bytes);
        self.file
            .write_all(bytes)
            .map_err(|e| StorageError::io(&self.tmp_path, "write snapshot", e))
    }

    /// Appends the next part of the payload.
    pub fn write(&mut self, payload_part: &[u8]) -> Result<(), StorageError> {
        let after = self.written_bytes + payload_part.len() as u64;
        if after > self.payload_bytes {
            return Err(StorageError::SnapshotSize {
                path: self.tmp_path.clone(),
                expected_bytes: self.payload_bytes,
                actual_bytes: after,
            });
        }
        self.write_raw(payload_part)?;
        self.written_bytes = after;
        Ok(())
    }

    /// Writes the trailer, fsyncs the file, renames it to its final name
    /// and fsyncs the directory: only then does the snapshot exist, whole.
    pub fn finish(mut self) -> Result<SnapshotFile, StorageError> {
        if self.written_bytes != self.payload_bytes {
            return Err(StorageError::SnapshotSize {
                path: self.tmp_path.clone(),
                expected_bytes: self.payload_bytes,
                actual_bytes: self.written_bytes,
            });
        }
        let crc = self.crc.clone().finalize();
        self.file
            .write_all(&crc.to_le_bytes())
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.get_ref().sync_all())
            .map_err(|e| StorageError::io(&self.tmp_path, "fsync snapshot", e))?;
        publish(&self.dir, &self.tmp_path, &self.final_path)?;
        self.finished = true;
        Ok(SnapshotFile {
            meta: self.meta.clone(),
            path: self.final_path.clone(),
            file_bytes: self.file_bytes,
        })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            remove_abandoned(&self.tmp_path);
        }
    }
}

/// Renames a complete, fsynced temp file to its final name and makes the
/// rename durable. The final name may exist (the same snapshot again): the
/// rename replaces it atomically.
fn publish(dir: &Path, tmp_path: &Path, final_path: &Path) -> Result<(), StorageError> {
    fs::rename(tmp_path, final_path)
        .map_err(|e| StorageError::io(final_path, "rename snapshot", e))?;
    sync_dir(dir)
}

fn remove_abandoned(tmp_path: &Path) {
    if let Err(e) = fs::remove_file(tmp_path)
        && e.kind() != io::ErrorKind::NotFound
    {
        log::warn!(
            "cannot remove abandoned snapshot {}: {e}",
            tmp_path.display()
        );
    }
}

/// Receives a snapshot file sent in chunks by a leader.
#[derive(Debug)]
pub struct SnapshotReceiver {
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    meta: SnapshotMeta,
    file: File,
    file_bytes: u64,
    next_offset: u64,
    finished: bool,
}

impl SnapshotReceiver {
    /// Starts receiving the `file_bytes`-byte file of the snapshot `meta`
    /// into `snap-<index>-<term>.snap.recv.tmp`.
    pub fn create(
        dir: &Path,
        meta: &SnapshotMeta,
        file_bytes: u64,
    ) -> Result<SnapshotReceiver, StorageError> {
        let name = snapshot_file_name(meta.last_index, meta.last_term);
        let tmp_path = dir.join(format!("{name}{RECEIVER_TMP_SUFFIX}"));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| StorageError::io(&tmp_path, "create snapshot", e))?;
        Ok(SnapshotReceiver {
            dir: dir.to_path_buf(),
            final_path: dir.join(name),
            tmp_path,
            meta: meta.clone(),
            file,
            file_bytes,
            next_offset: 0,
            finished: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.tmp_path
    }

    /// The offset of the next chunk expected: where a resumed transfer
    /// continues.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Writes the chunk at `offset`, which must be exactly the end of what
    /// was received so far: the file is written in order, without holes.
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if offset != self.next_offset {
            return Err(StorageError::SnapshotChunk {
                path: self.tmp_path.clone(),
                expected_offset: self.next_offset,
                offset,
            });
        }
        let end = offset + data.len() as u64;
        if end > self.file_bytes {
            return Err(StorageError::SnapshotSize {
                path: self.tmp_path.clone(),
                expected_bytes: self.file_bytes,
                actual_bytes: end,
            });
        }
        // Positional: a chunk retried after a failed write lands in the
        // same place, whatever part of it the failure left behind.
        self.file
            .write_all_at(data, offset)
            .map_err(|e| StorageError::io(&self.tmp_path, "write snapshot", e))?;
        self.next_offset = end;
        Ok(())
    }

    /// Checks that the whole file arrived, fsyncs it, verifies it (CRC, and
    /// that it holds the snapshot announced), renames it to its final name
    /// and fsyncs the directory.
    pub fn finish(self) -> Result<SnapshotFile, StorageError> {
        self.finish_reading(false).map(|(file, _)| file)
    }

    /// As `finish`, and returns the payload read by the same verifying pass
    /// (an install restores from it: one read of the file, not two).
    pub fn finish_with_payload(self) -> Result<(SnapshotFile, Vec<u8>), StorageError> {
        self.finish_reading(true)
            .map(|(file, payload)| (file, payload.expect("asked for the payload")))
    }

    fn finish_reading(
        mut self,
        want_payload: bool,
    ) -> Result<(SnapshotFile, Option<Vec<u8>>), StorageError> {
        if self.next_offset != self.file_bytes {
            return Err(StorageError::SnapshotSize {
                path: self.tmp_path.clone(),
                expected_bytes: self.file_bytes,
                actual_bytes: self.next_offset,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| StorageError::io(&self.tmp_path, "fsync snapshot", e))?;
        let Verified { meta, payload, .. } = read_verified(&self.tmp_path, want_payload)?;
        if meta != self.meta {
            let reason = format!("header holds {meta:?}, announced {:?}", self.meta);
            return Err(StorageError::snapshot_corrupt(&self.tmp_path, reason));
        }
        publish(&self.dir, &self.tmp_path, &self.final_path)?;
        self.finished = true;
        let file = SnapshotFile {
            meta,
            path: self.final_path.clone(),
            file_bytes: self.file_bytes,
        };
        Ok((file, payload))
    }
}

impl Drop for SnapshotReceiver {
    fn drop(&mut self) {
        if !self.finished {
            remove_abandoned(&self.tmp_path);
        }
    }
}

/// Snapshot files in `dir` (final names only), newest (index, term) first.
/// Removes leftover temp files when `remove_tmp`.
fn list_snapshots(
    dir: &Path,
    remove_tmp: bool,
) -> Result<Vec<(LogIndex, Term, PathBuf)>, StorageError> {
    let read_dir = fs::read_dir(dir).map_err(|e| StorageError::io(dir, "list data dir", e))?;
    let mut snapshots = Vec::new();
    let mut removed_any = false;
    for dir_entry in read_dir {
        let dir_entry = dir_entry.map_err(|e| StorageError::io(dir, "list data dir", e))?;
        let name = dir_entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(NAME_PREFIX) {
            continue;
        }
        let path = dir_entry.path();
        if name.ends_with(TMP_SUFFIX) {
            if remove_tmp {
                // A snapshot interrupted by a crash: never renamed, so never
                // used; the previous snapshot is still whole.
                log::warn!("removing unfinished snapshot {}", path.display());
                fs::remove_file(&path)
                    .map_err(|e| StorageError::io(&path, "remove unfinished snapshot", e))?;
                removed_any = true;
            }
            continue;
        }
        match parse_snapshot_file_name(name) {
            Some((index, term)) => snapshots.push((index, term, path)),
            None if name.ends_with(NAME_SUFFIX) => log::error!(
                "ignoring misnamed snapshot file {} (expected snap-<20 digits>-<20 digits>.snap)",
                path.display()
            ),
            None => {}
        }
    }
    if removed_any {
        sync_dir(dir)?;
    }
    snapshots.sort_by_key(|s| std::cmp::Reverse((s.0, s.1)));
    Ok(snapshots)
}

/// The newest snapshot in `dir` that reads back whole, with its payload.
/// A damaged one is logged with its file name and the next older one is
/// tried; the caller decides whether what is left is enough (the WAL may
/// need a newer one: see `FileStorage::open_with_snapshot`). Removes
/// leftover temp files of interrupted writes and transfers: call it only at
/// start-up, with the data dir locked, never while a `SnapshotWriter` or a
/// `SnapshotReceiver` is at work in `dir`.
pub fn load_latest(dir: &Path) -> Result<Option<(SnapshotFile, Vec<u8>)>, StorageError> {
    for (index, term, path) in list_snapshots(dir, true)? {
        let checked = read_verified(&path, true).and_then(|verified| {
            let meta = &verified.meta;
            if (meta.last_index, meta.last_term) != (index, term) {
                let reason = format!(
                    "header says index {} term {}, file name says index {index} term {term}",
                    meta.last_index, meta.last_term
                );
                return Err(StorageError::snapshot_corrupt(&path, reason));
            }
            Ok(verified)
        });
        match checked {
            Ok(verified) => {
                let file = SnapshotFile {
                    meta: verified.meta,
                    path,
                    file_bytes: verified.file_bytes,
                };
                return Ok(Some((
                    file,
                    verified.payload.expect("asked for the payload"),
                )));
            }
            Err(err) => log::error!(
                "snapshot {} is unusable, trying an older one: {err}",
                path.display()
            ),
        }
    }
    Ok(None)
}

/// Deletes every snapshot older than `newest` and the one before it: the
/// one before stays as the fallback should `newest` ever read back damaged.
/// Call it only after `newest` is durable (its `finish` returned).
pub fn retain_snapshots(dir: &Path, newest: &SnapshotFile) -> Result<(), StorageError> {
    let key = (newest.meta.last_index, newest.meta.last_term);
    let older: Vec<PathBuf> = list_snapshots(dir, false)?
        .into_iter()
        .filter(|(index, term, _)| (*index, *term) < key)
        .map(|(_, _, path)| path)
        .collect();
    if older.len() <= 1 {
        return Ok(());
    }
    for path in &older[1..] {
        fs::remove_file(path).map_err(|e| StorageError::io(path, "remove old snapshot", e))?;
        log::info!("removed old snapshot {}", path.display());
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::types::{ClusterConfig, NodeId};

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_index: LogIndex(index),
            last_term: Term(term),
            config: ClusterConfig::new(vec![NodeId(0), NodeId(1), NodeId(2)]),
        }
    }

    fn write(dir: &Path, meta: &SnapshotMeta, payload: &[u8]) -> SnapshotFile {
        let mut writer = SnapshotWriter::create(dir, meta, payload.len() as u64).unwrap();
        for part in payload.chunks(7) {
            writer.write(part).unwrap();
        }
        writer.finish().unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_names_round_trip() {
        let name = snapshot_file_name(LogIndex(42), Term(7));
        assert_eq!(name, "snap-00000000000000000042-00000000000000000007.snap");
        assert_eq!(
            parse_snapshot_file_name(&name),
            Some((LogIndex(42), Term(7)))
        );
        assert_eq!(parse_snapshot_file_name("snap-1-2.snap"), None);
        assert_eq!(parse_snapshot_file_name(&format!("{name}.tmp")), None);
    }

    #[test]
    fn a_written_snapshot_reads_back_and_its_size_is_known_up_front() {
        let tmp = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let file = write(tmp.path(), &meta(10, 2), &payload);
        assert_eq!(file.read_payload().unwrap(), payload);
        assert_eq!(
            file.file_bytes,
            fs::metadata(&file.path).unwrap().len(),
            "file_bytes"
        );
        assert_eq!(snapshot_file_bytes(&meta(10, 2), 1000), file.file_bytes);
        assert_eq!(
            names(tmp.path()),
            vec![snapshot_file_name(LogIndex(10), Term(2))]
        );
    }

    #[test]
    fn a_wrong_payload_length_is_an_error_and_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = SnapshotWriter::create(tmp.path(), &meta(1, 1), 4).unwrap();
        writer.write(b"abc").unwrap();
        let err = writer.finish().unwrap_err();
        assert!(err.to_string().contains("3 bytes"), "{err}");
        let mut writer = SnapshotWriter::create(tmp.path(), &meta(1, 1), 2).unwrap();
        let err = writer.write(b"abc").unwrap_err();
        assert!(matches!(err, StorageError::SnapshotSize { .. }), "{err}");
        drop(writer);
        assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
    }

    #[test]
    fn chunks_read_from_one_file_rebuild_it_in_another_dir() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let payload = vec![9u8; 5000];
        let file = write(from.path(), &meta(5, 1), &payload);
        let mut receiver =
            SnapshotReceiver::create(to.path(), &file.meta, file.file_bytes).unwrap();
        let mut offset = 0;
        loop {
            let chunk = file.read_chunk(offset, 1024).unwrap();
            if chunk.is_empty() {
                break;
            }
            receiver.write_chunk(offset, &chunk).unwrap();
            offset += chunk.len() as u64;
        }
        let received = receiver.finish().unwrap();
        assert_eq!(received.read_payload().unwrap(), payload);
        assert_eq!(
            fs::read(&received.path).unwrap(),
            fs::read(&file.path).unwrap()
        );
    }

    #[test]
    fn read_chunk_clamps_at_the_end() {
        let tmp = tempfile::tempdir().unwrap();
        let file = write(tmp.path(), &meta(5, 1), b"payload");
        let tail = file.read_chunk(file.file_bytes - 3, 100).unwrap();
        assert_eq!(tail.len(), 3);
        assert!(
            file.read_chunk(file.file_bytes + 5, 100)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn retain_keeps_the_newest_two() {
        let tmp = tempfile::tempdir().unwrap();
        for index in 1..=4 {
            write(tmp.path(), &meta(index * 10, 1), b"x");
        }
        let newest = write(tmp.path(), &meta(50, 2), b"y");
        retain_snapshots(tmp.path(), &newest).unwrap();
        assert_eq!(
            names(tmp.path()),
            vec![
                snapshot_file_name(LogIndex(40), Term(1)),
                snapshot_file_name(LogIndex(50), Term(2)),
            ]
        );
    }

    #[test]
    fn a_format_1_file_with_a_voters_only_configuration_still_loads() {
        // The bytes a binary before issue 11 wrote: version 1, and the meta
        // (index, term, voters) in postcard with no room for learners.
        #[derive(serde::Serialize)]
        struct OldConfig {
            voters: Vec<NodeId>,
        }
        #[derive(serde::Serialize)]
        struct OldMeta {
            last_index: LogIndex,
            last_term: Term,
            config: OldConfig,
        }
        let old = OldMeta {
            last_index: LogIndex(10),
            last_term: Term(2),
            config: OldConfig {
                voters: vec![NodeId(0), NodeId(1), NodeId(2)],
            },
        };
        let meta_bytes = postcard::to_allocvec(&old).unwrap();
        let payload = b"state".to_vec();
        let mut file = SNAPSHOT_MAGIC.to_vec();
        file.extend_from_slice(&1u32.to_le_bytes());
        file.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
        file.extend_from_slice(&meta_bytes);
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&payload);
        let crc = crc32fast::hash(&file);
        file.extend_from_slice(&crc.to_le_bytes());
        let tmp = tempfile::tempdir().unwrap();
        let name = snapshot_file_name(LogIndex(10), Term(2));
        fs::write(tmp.path().join(name), &file).unwrap();
        let (found, read) = load_latest(tmp.path())
            .unwrap()
            .expect("the old file loads");
        assert_eq!(found.meta, meta(10, 2));
        assert_eq!(read, payload);
    }
}
