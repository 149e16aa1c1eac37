//! An append-only log of records in one file: what the acceptor must not lose, and the
//! learner's decided log.
//!
//! Each record is framed as `len: u32 LE | crc32(payload): u32 LE | payload`. Appends go
//! to a buffer in memory; [`Wal::take_pending`] hands the buffer to whoever writes it
//! (the acceptor does so off its actor's thread, then calls `fdatasync` once for the
//! whole group); [`Wal::read_at`] reads one record back by its offset.
//!
//! **Recovery.** [`Wal::open`] replays every intact record in order. A crash can leave
//! the last record half written (a torn tail): the first record whose header runs past
//! the end of the file, or whose checksum does not match, ends the log, and the file is
//! cut there so later appends follow the last intact record. Nothing before it was
//! acknowledged on the strength of that record: replies leave only after `fdatasync`
//! returned for the write that holds it.
//!
//! **Preallocation.** A log synced per group (the acceptor's) grows 16 MiB at a time,
//! written with zeros, so that a group's `fdatasync` only flushes data into blocks that
//! already exist: no size change, no journal commit. A log written without syncs (the
//! learner's, written on its actor's thread) does not preallocate. A CRC that covers
//! the length field tells a zeroed header from a record; on open, whatever follows the
//! last intact record is cut off.
//!
//! **Why not sled for this.** sled 0.34 makes writes durable with `sync_file_range`,
//! which does not flush the device's write cache or the file's metadata, and its IO
//! thread pool cost a third of a node's CPU under load (see docs/BENCHMARK.md). A log
//! that only appends needs neither pages nor trees: one `pwrite` and one `fdatasync`
//! per group.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of framing before each payload.
const HEADER: usize = 8;
/// What a log synced per group grows by at a time, filled with zeros ahead of the records.
pub const PREALLOCATE: u64 = 16 << 20;
/// Refuses to read a record claiming more than this (a corrupt length).
const MAX_RECORD: usize = 1 << 30;

/// One append-only log file.
pub struct Wal {
    path: PathBuf,
    file: Arc<File>,
    /// Offset where the pending buffer starts (everything before it was handed out).
    written: u64,
    /// Framed records not yet handed out for writing.
    pending: Vec<u8>,
    /// Grow the file this much at a time, with zeros (0: no preallocation).
    preallocate: u64,
    allocated: Arc<AtomicU64>,
}

/// A group of records to write at `offset`, then (for durability) sync.
pub struct PendingWrite {
    file: Arc<File>,
    offset: u64,
    bytes: Vec<u8>,
    preallocate: u64,
    /// How far the file is filled with zeros (shared with the log). Groups must be written
    /// one at a time, in the order they were handed out (the acceptor runs one flush at
    /// a time; the learner writes on its own thread).
    allocated: Arc<AtomicU64>,
}

impl PendingWrite {
    /// The log's end once this group is written.
    pub fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }

    /// Writes the group. Blocking: call it off an actor's thread if it must be fast.
    pub fn write(&self) -> Result<()> {
        let fail = |e: std::io::Error| Error::Storage(format!("log write: {e}"));
        let end = self.offset + self.bytes.len() as u64;
        let allocated = self.allocated.load(Ordering::Acquire);
        if self.preallocate > 0 && end > allocated {
            // Overwriting blocks already written needs no metadata change, so its
            // fdatasync skips the filesystem journal: measured here with three processes
            // syncing at once, p50 0.22-0.28 ms instead of 0.43-0.48 ms for appends.
            let new_end = end.div_ceil(self.preallocate) * self.preallocate;
            let zeros = vec![0u8; 1 << 20];
            let mut at = end.max(allocated);
            while at < new_end {
                let n = (new_end - at).min(zeros.len() as u64);
                self.file.write_all_at(&zeros[..n as usize], at).map_err(fail)?;
                at += n;
            }
            self.allocated.store(new_end, Ordering::Release);
        }
        self.file.write_all_at(&self.bytes, self.offset).map_err(fail)
    }

    /// Writes the group and waits until it (and every earlier group) is on disk.
    pub fn write_and_sync(&self) -> Result<()> {
        self.write()?;
        fdatasync(&self.file)
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Syncs a log's file: everything written to it so far becomes durable.
#[derive(Clone)]
pub struct SyncHandle(Arc<File>);

impl SyncHandle {
    /// Blocking (an `fdatasync`): call it off an actor's thread.
    pub fn sync(&self) -> Result<()> {
        fdatasync(&self.0)
    }
}

fn fdatasync(file: &File) -> Result<()> {
    file.sync_data()
        .map_err(|e| Error::Storage(format!("log fdatasync: {e}")))
}

impl Wal {
    /// Opens (or creates) the log at `path`, calling `replay(offset, payload)` for every
    /// intact record in order, and cuts off a torn tail. A log synced per group should
    /// `preallocate` ([`PREALLOCATE`]); one written without syncs gains nothing by it.
    pub fn open(path: &Path, preallocate: u64, mut replay: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<Wal> {
        let fail = |what: &str, e: std::io::Error| Error::Storage(format!("{what} {}: {e}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| fail("cannot open", e))?;
        // One instance at a time: a second one (or a halted one whose last write is still
        // running) would interleave its writes with ours. Released when every handle closes.
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::Storage(format!("cannot lock {}: {e}", path.display())));
        }
        // What we replay is treated as durable, so make it so: a crash may have come
        // before the last group's fdatasync, or before the new file's directory entry
        // reached the disk.
        file.sync_all().map_err(|e| fail("cannot sync", e))?;
        if let Some(dir) = path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail("cannot sync the directory of", e))?;
        }
        let len = file.metadata().map_err(|e| fail("cannot stat", e))?.len();
        // Streamed, record by record: a log may be larger than the memory it may use.
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let (mut at, mut payload) = (0u64, Vec::new());
        loop {
            let mut header = [0u8; HEADER];
            if at + HEADER as u64 > len {
                break; // The end, or a torn header.
            }
            reader.read_exact(&mut header).map_err(|e| fail("cannot read", e))?;
            let (size, crc) = split_header(&header);
            if size > MAX_RECORD || at + (HEADER + size) as u64 > len {
                break; // A torn record, or a corrupt length.
            }
            payload.resize(size, 0);
            reader.read_exact(&mut payload).map_err(|e| fail("cannot read", e))?;
            if checksum(&header[..4], &payload) != crc {
                break;
            }
            replay(at, &payload)?;
            at += (HEADER + size) as u64;
        }
        if at < len {
            // Preallocated zeros, or a torn tail: either way nothing of it was acknowledged.
            // Cut it, so that stale bytes can never follow records written from now on.
            tracing::info!(path = %path.display(), kept = at, dropped = len - at, "log: cut after the last record");
            file.set_len(at).map_err(|e| fail("cannot cut the tail of", e))?;
            file.sync_all().map_err(|e| fail("cannot sync", e))?;
        }
        Ok(Wal {
            path: path.to_path_buf(),
            file: Arc::new(file),
            written: at,
            pending: Vec::new(),
            preallocate,
            allocated: Arc::new(AtomicU64::new(at)),
        })
    }

    /// Appends a record built by `encode` straight into the pending buffer (no copy).
    pub fn append_with(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<u64> {
        let start = self.pending.len();
        let offset = self.written + start as u64;
        self.pending.extend_from_slice(&[0; HEADER]);
        if let Err(e) = encode(&mut self.pending) {
            self.pending.truncate(start);
            return Err(e);
        }
        let payload = &self.pending[start + HEADER..];
        if payload.len() > MAX_RECORD {
            self.pending.truncate(start);
            return Err(Error::Storage("log record too large".into()));
        }
        let len = (payload.len() as u32).to_le_bytes();
        let crc = checksum(&len, payload).to_le_bytes();
        self.pending[start..start + 4].copy_from_slice(&len);
        self.pending[start + 4..start + HEADER].copy_from_slice(&crc);
        Ok(offset)
    }

    /// A handle that syncs this log's file from another thread.
    pub fn sync_handle(&self) -> SyncHandle {
        SyncHandle(self.file.clone())
    }

    /// Bytes appended but not yet handed out.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Hands out everything appended so far, to be written (in the order handed out).
    pub fn take_pending(&mut self) -> PendingWrite {
        // The next group is likely about this one's size: start it with that much room
        // (up to 1 MiB) instead of growing it record by record.
        let room = self.pending.len().min(1 << 20);
        let bytes = std::mem::replace(&mut self.pending, Vec::with_capacity(room));
        let offset = self.written;
        self.written += bytes.len() as u64;
        PendingWrite {
            file: self.file.clone(),
            offset,
            bytes,
            preallocate: self.preallocate,
            allocated: self.allocated.clone(),
        }
    }

    /// Reads back the record at `offset` (which must have been written).
    pub fn read_at(&self, offset: u64) -> Result<Vec<u8>> {
        let mut header = [0u8; HEADER];
        self.file
            .read_exact_at(&mut header, offset)
            .map_err(|e| Error::Storage(format!("log read at {offset} in {}: {e}", self.path.display())))?;
        let (len, crc) = split_header(&header);
        if len > MAX_RECORD {
            return Err(Error::Storage(format!("log record at {offset}: bad length {len}")));
        }
        let mut payload = vec![0u8; len];
        self.file
            .read_exact_at(&mut payload, offset + HEADER as u64)
            .map_err(|e| Error::Storage(format!("log read at {offset} in {}: {e}", self.path.display())))?;
        if checksum(&header[..4], &payload) != crc {
            return Err(Error::Storage(format!("log record at {offset}: checksum mismatch")));
        }
        Ok(payload)
    }
}

/// CRC-32 of the length field and the payload: a zeroed header (preallocated space) is
/// never a valid record, not even an empty one.
fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

fn split_header(header: &[u8; HEADER]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, crc)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Wal {
        /// Frames a copy of `payload` (production code encodes in place instead).
        fn append(&mut self, payload: &[u8]) -> u64 {
            self.append_with(|buf| {
                buf.extend_from_slice(payload);
                Ok(())
            })
            .expect("append")
        }
    }

    fn replay_all(path: &Path) -> (Wal, Vec<(u64, Vec<u8>)>) {
        let mut seen = Vec::new();
        let wal = Wal::open(path, PREALLOCATE, |at, p| {
            seen.push((at, p.to_vec()));
            Ok(())
        })
        .expect("open");
        (wal, seen)
    }

    #[test]
    fn wal_records_round_trip_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wal");
        let (mut wal, seen) = replay_all(&path);
        assert!(seen.is_empty());
        let a = wal.append(b"first");
        let b = wal
            .append_with(|buf| {
                buf.extend_from_slice(b"second");
                Ok(())
            })
            .expect("append");
        wal.take_pending().write_and_sync().expect("sync");
        let c = wal.append(b"");
        wal.take_pending().write_and_sync().expect("sync");
        assert_eq!(wal.read_at(b).expect("read"), b"second");
        drop(wal);
        let (wal, seen) = replay_all(&path);
        assert_eq!(
            seen,
            vec![(a, b"first".to_vec()), (b, b"second".to_vec()), (c, Vec::new())]
        );
        assert_eq!(wal.read_at(a).expect("read"), b"first");
    }

    #[test]
    fn wal_torn_tail_is_cut_and_appends_follow_the_last_intact_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wal");
        let (mut wal, _) = replay_all(&path);
        wal.append(b"kept");
        let torn = wal.append(b"torn record");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        assert!(
            std::fs::metadata(&path).expect("stat").len() >= PREALLOCATE,
            "preallocated"
        );
        // A crash in the middle of the second record: its last bytes are still the zeros
        // the file was preallocated with.
        let end = torn + (HEADER + b"torn record".len()) as u64;
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0; 3], end - 3).expect("tear");
        let (mut wal, seen) = replay_all(&path);
        assert_eq!(
            seen.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
            vec![b"kept".to_vec()]
        );
        wal.append(b"after");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        let (_, seen) = replay_all(&path);
        assert_eq!(
            seen.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
            vec![b"kept".to_vec(), b"after".to_vec()]
        );
    }

    #[test]
    fn wal_corrupt_record_ends_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wal");
        let (mut wal, _) = replay_all(&path);
        wal.append(b"good");
        let bad = wal.append(b"flipped");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(b"X", bad + HEADER as u64 + 2).expect("flip");
        let (wal, seen) = replay_all(&path);
        assert_eq!(seen.len(), 1, "a record failing its checksum is not replayed");
        assert!(wal.read_at(bad).is_err(), "and cannot be read back");
    }
}
