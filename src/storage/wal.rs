//! An append-only log of records in a sequence of segment files: what the acceptor must
//! not lose, and the learner's decided log.
//!
//! Each record is framed as `len: u32 LE | crc32(payload): u32 LE | payload`. Appends go
//! to a buffer in memory; [`Wal::take_pending`] hands the buffer to whoever writes it
//! (the acceptor does so off its actor's thread, then calls `fdatasync` once for the
//! whole group); [`Wal::read_at`] reads one record back by its offset.
//!
//! **Segments.** The log `<name>` is the files `<name>.<base>` in the data directory,
//! `<base>` being 16 lowercase hex digits of the segment's base offset (e.g.
//! `acceptor.wal.0000000000000000`). Offsets are *logical*: a record's offset is the
//! base of its segment plus its position in the file, and it never changes, so the
//! callers' indexes of where a slot's record lies stay valid across segments and across
//! truncation. A segment's records lie in `[base, next segment's base)`. A group
//! ([`PendingWrite`]) is never split across two files: once the segment written to has
//! reached the segment size, the next [`Wal::take_pending`] starts a new segment at the
//! logical end, so one write and one `fdatasync` still cover a group.
//!
//! **Durability of a new segment.** A file whose data was synced is lost in a crash if
//! its directory entry was not made durable, so a sync of a new segment counts only once
//! the directory has been synced after the file was created. `take_pending` creates the
//! file (on the caller's thread; cheap), and the first write into it syncs the directory
//! before writing, on the thread that writes the group. Every sync of that segment
//! (by [`PendingWrite::write_and_sync`] or a [`SyncHandle`]) comes after a write into
//! it returned, so after that directory sync.
//!
//! **What a sync covers.** A write marks its segment as written since the last sync; a
//! sync (`write_and_sync`, or [`SyncHandle::sync`] from another thread) `fdatasync`s
//! every segment so marked, one sync at a time (a sync that finds nothing left to do
//! still waits for one running, which may be syncing what it needs). So a sync makes
//! durable every group whose write returned before it began, in whichever segment.
//! That matters for the decided log, written without syncs on the learner's thread and
//! synced through a `SyncHandle` before a snapshot is installed: between two such syncs
//! it may have moved on to a new segment, and the earlier one must be synced too. Only
//! the segment written to stays open; earlier ones are synced through a descriptor
//! opened for it (`fsync` flushes a file's pages whichever descriptor asks), so a log
//! synced rarely holds no file open per segment. The acceptor syncs each group before
//! it takes the next, so it syncs one segment per group, as with one file.
//!
//! **Recovery.** [`Wal::open`] replays every segment in base order, every intact record
//! in order. A crash can leave the last record half written (a torn tail): in the last
//! segment the first record whose header runs past the end of the file, or whose
//! checksum does not match, ends the log, and the file is cut there so later appends
//! follow the last intact record. Nothing after it was acknowledged on the strength of
//! that record: replies leave only after `fdatasync` returned for the write that holds
//! it. A segment that is not the last ends at the next one's base: replay stops at its
//! first invalid record, and what follows is zeros (preallocated space), or a tail a
//! crash lost before it reached the disk (the decided log's segments are not synced
//! before the next one starts; its values above the snapshot are fetched again). But a
//! record that fails its checksum with an intact record right after it is damage, not
//! a torn write: the log does not open, and the error names the file and the offset
//! (rather than silently drop the records after it).
//!
//! **Migration.** A data directory from before segments has the plain file `<name>`:
//! it becomes the segment at base 0 (renamed, directory synced) when the log opens.
//!
//! **Truncation.** [`Wal::truncate_below`] deletes (unlinks, on the caller's thread)
//! every segment whose records all lie below an offset, never the one written to; a
//! read below the first kept segment is an error. The directory is not synced after: a
//! crash may bring the oldest deleted segments back, which only replays records the
//! log held before (the next truncation deletes them again).
//!
//! **Locking.** One instance writes a log at a time: a second one (or a halted one whose
//! last write is still running) would interleave its writes with ours. The log holds an
//! exclusive `flock` on `<name>.lock`, released when the log, and every group and sync
//! handle it gave out, are gone; a second instance fails to open with "cannot lock".
//!
//! **Preallocation.** A log synced per group (the acceptor's) fills each segment with
//! zeros ahead of its records, 16 MiB at a time but not beyond the segment size, so that
//! a group's `fdatasync` only flushes data into blocks that already exist: no size
//! change, no journal commit (except for the group that crosses the segment size, once
//! per segment). A log written without syncs (the learner's, written on its actor's
//! thread) does not preallocate. A CRC that covers the length field tells a zeroed
//! header from a record; on open, whatever follows the last intact record of the last
//! segment is cut off.
//!
//! **Why not sled for this.** sled 0.34 makes writes durable with `sync_file_range`,
//! which does not flush the device's write cache or the file's metadata, and its IO
//! thread pool cost a third of a node's CPU under load (see docs/BENCHMARK.md). A log
//! that only appends needs neither pages nor trees: one `pwrite` and one `fdatasync`
//! per group.

use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes of framing before each payload.
const HEADER: usize = 8;
/// What a log synced per group grows by at a time, filled with zeros ahead of the records.
pub const PREALLOCATE: u64 = 16 << 20;
/// The size at which a log starts a new segment, unless configured otherwise.
pub const SEGMENT_SIZE: u64 = 8 << 20;
/// Refuses to read a record claiming more than this (a corrupt length).
const MAX_RECORD: usize = 1 << 30;
/// Hex digits of a segment's base in its file name.
const BASE_DIGITS: usize = 16;

/// One append-only log: its segment files, oldest first.
pub struct Wal {
    name: String,
    /// The bases of the segments kept, oldest first; the last one is written to. Never
    /// empty.
    bases: VecDeque<u64>,
    /// The file of the segment written to. Only it stays open: a log not compacted for
    /// long has many segments, and must not run the process out of file descriptors.
    current: Arc<SegmentFile>,
    /// A segment before it, opened to read (reads of one segment come in runs).
    reading: RefCell<Option<(u64, File)>>,
    /// Offset where the pending buffer starts (everything before it was handed out).
    written: u64,
    /// Framed records not yet handed out for writing.
    pending: Vec<u8>,
    /// Grow a segment this much at a time, with zeros (0: no preallocation).
    preallocate: u64,
    /// Start a new segment once the one written to holds this many bytes.
    segment_size: u64,
    shared: Arc<Shared>,
}

/// A segment's file, shared with the groups written into it and with the syncs.
struct SegmentFile {
    path: PathBuf,
    file: File,
    /// How far the file is filled, with records and preallocated zeros. Groups are
    /// written one at a time, in the order they were handed out (the acceptor runs one
    /// flush at a time; the learner writes on its own thread).
    allocated: AtomicU64,
    /// Whether the file's directory entry is known to be durable.
    entry_durable: AtomicBool,
}

impl SegmentFile {
    /// A segment's file, filled up to `allocated`.
    fn new(path: PathBuf, file: File, allocated: u64, entry_durable: bool) -> SegmentFile {
        SegmentFile {
            path,
            file,
            allocated: AtomicU64::new(allocated),
            entry_durable: AtomicBool::new(entry_durable),
        }
    }
}

/// What the log, its groups and its sync handles share.
struct Shared {
    dir: PathBuf,
    /// The exclusive `flock` on `<name>.lock`, held while any handle lives.
    _lock: File,
    /// Segments written to since a sync last covered them.
    dirty: Mutex<Dirty>,
    /// Held for the whole of a sync: one at a time (see the module docs).
    syncing: Mutex<()>,
}

/// Segments written to since a sync last covered them: the one written to last, kept
/// open, and the ones before it by name, their files closed (a log synced rarely must
/// not hold a file open per segment).
#[derive(Default)]
struct Dirty {
    closed: Vec<PathBuf>,
    last: Option<Arc<SegmentFile>>,
}

impl Shared {
    fn mark_dirty(&self, segment: &Arc<SegmentFile>) {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        match dirty.last.replace(segment.clone()) {
            Some(before) if !Arc::ptr_eq(&before, segment) => dirty.closed.push(before.path.clone()),
            _ => {}
        }
    }

    /// Makes every write that returned before this call durable. After a failure,
    /// what is durable is unknown (a failed `fdatasync` may have dropped the pages it
    /// could not write, so trying again proves nothing): the caller stops.
    fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock().unwrap_or_else(PoisonError::into_inner);
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        let fail = |path: &Path, e: std::io::Error| Error::Storage(format!("log fdatasync of {}: {e}", path.display()));
        for path in &dirty.closed {
            // fsync flushes the file's pages whichever descriptor asks. A segment deleted
            // since held only records below a truncation: nothing to keep.
            match File::open(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                opened => opened.and_then(|file| fdatasync(&file)).map_err(|e| fail(path, e))?,
            }
        }
        if let Some(last) = &dirty.last {
            fdatasync(&last.file).map_err(|e| fail(&last.path, e))?;
        }
        Ok(())
    }
}

/// A group of records to write at `offset`, then (for durability) sync.
pub struct PendingWrite {
    segment: Arc<SegmentFile>,
    /// Where the group goes in the segment's file.
    at: u64,
    bytes: Vec<u8>,
    preallocate: u64,
    segment_size: u64,
    shared: Arc<Shared>,
    /// The log's logical end once this group is written.
    end: u64,
}

impl PendingWrite {
    /// The log's logical end once this group is written (every record below it is in
    /// this group or an earlier one).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Writes the group. Blocking: call it off an actor's thread if it must be fast.
    pub fn write(&self) -> Result<()> {
        let segment = &self.segment;
        let fail = |e: std::io::Error| Error::Storage(format!("log write to {}: {e}", segment.path.display()));
        if !segment.entry_durable.load(Ordering::Acquire) {
            // The first write into a new segment: its name must be durable before any
            // sync of its data counts (see the module docs).
            sync_dir(&self.shared.dir)?;
            segment.entry_durable.store(true, Ordering::Release);
        }
        let end = self.at + self.bytes.len() as u64;
        let allocated = segment.allocated.load(Ordering::Acquire);
        if self.preallocate > 0 && end > allocated {
            // Overwriting blocks already written needs no metadata change, so its
            // fdatasync skips the filesystem journal: measured here with three processes
            // syncing at once, p50 0.22-0.28 ms instead of 0.43-0.48 ms for appends.
            // Not past the segment size: the next group goes to a new segment.
            let new_end = (end.div_ceil(self.preallocate) * self.preallocate)
                .min(self.segment_size)
                .max(end);
            let zeros = vec![0u8; (new_end - end).min(1 << 20) as usize];
            let mut at = end.max(allocated);
            while at < new_end {
                let n = (new_end - at).min(zeros.len() as u64);
                segment.file.write_all_at(&zeros[..n as usize], at).map_err(fail)?;
                at += n;
            }
            segment.allocated.store(new_end, Ordering::Release);
        }
        segment.file.write_all_at(&self.bytes, self.at).map_err(fail)?;
        self.shared.mark_dirty(segment);
        Ok(())
    }

    /// Writes the group and waits until it (and every earlier group) is on disk.
    pub fn write_and_sync(&self) -> Result<()> {
        self.write()?;
        self.shared.sync()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Syncs a log from another thread: every group written so far becomes durable, in
/// whichever segment (see the module docs).
#[derive(Clone)]
pub struct SyncHandle(Arc<Shared>);

impl SyncHandle {
    /// Blocking (an `fdatasync` per segment written to since the last sync, usually
    /// one): call it off an actor's thread.
    pub fn sync(&self) -> Result<()> {
        self.0.sync()
    }
}

/// `fdatasync` calls made by every log of this process, for the evaluation's "fsyncs
/// per committed command" (`rolepax_log_fsyncs_total` in `/metrics`).
static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// How many `fdatasync`s the logs of this process have made (whichever engine runs).
pub fn fsyncs_total() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

fn fdatasync(file: &File) -> std::io::Result<()> {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_data()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Storage(format!("cannot sync the directory {}: {e}", dir.display())))
}

/// The file of the segment of log `name` at `base`.
fn segment_path(dir: &Path, name: &str, base: u64) -> PathBuf {
    dir.join(format!("{name}.{base:0width$x}", width = BASE_DIGITS))
}

/// The base of a segment of log `name`, if `file_name` is one.
fn segment_base(name: &str, file_name: &str) -> Option<u64> {
    let digits = file_name.strip_prefix(name)?.strip_prefix('.')?;
    let hex = digits.len() == BASE_DIGITS && digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex.then(|| u64::from_str_radix(digits, 16).ok()).flatten()
}

/// Takes the exclusive lock of log `name` in `dir`, or fails saying so.
fn lock(dir: &Path, name: &str) -> Result<File> {
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    flock(&file, &path)?;
    Ok(file)
}

fn flock(file: &File, path: &Path) -> Result<()> {
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Storage(format!(
            "cannot lock {}: {e} (does another node instance use this data directory?)",
            path.display()
        )));
    }
    Ok(())
}

/// Turns a log file of before segments, `<name>`, into the segment at base 0.
fn migrate_legacy(dir: &Path, name: &str) -> Result<()> {
    let legacy = dir.join(name);
    let fail = |what: &str, e: std::io::Error| Error::Storage(format!("cannot {what} {}: {e}", legacy.display()));
    match std::fs::symlink_metadata(&legacy) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail("stat", e)),
        Ok(meta) if !meta.is_file() => {
            return Err(Error::Storage(format!("{} is not a log file", legacy.display())));
        }
        Ok(_) => {}
    }
    let first = segment_path(dir, name, 0);
    if first.exists() {
        return Err(Error::Storage(format!(
            "both {} (a log of before segments) and {} exist: which one holds the log is unknown",
            legacy.display(),
            first.display()
        )));
    }
    // A build of before locks the file itself: never move it from under one that runs.
    let file = File::open(&legacy).map_err(|e| fail("open", e))?;
    flock(&file, &legacy)?;
    std::fs::rename(&legacy, &first).map_err(|e| fail("rename", e))?;
    sync_dir(dir)?;
    tracing::info!(from = %legacy.display(), to = %first.display(), "log: a log file of before segments is now its first segment");
    Ok(())
}

/// The bases of the segments of log `name` in `dir`, in order.
fn list_segments(dir: &Path, name: &str) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Storage(format!("cannot list {}: {e}", dir.display())))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::Storage(format!("cannot list {}: {e}", dir.display())))?;
        if let Some(base) = entry.file_name().to_str().and_then(|f| segment_base(name, f)) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Why replaying a segment stopped.
enum Stop {
    /// At the end of the file.
    End,
    /// At a header or record running past the end, or claiming an impossible length.
    Torn,
    /// At a record of `size` payload bytes that fails its checksum.
    Checksum { size: usize },
}

/// Replays the intact records of the segment at `base` (of `len` bytes) from its start;
/// returns where they end in the file and why replay stopped there.
fn replay_segment(
    file: &File,
    path: &Path,
    base: u64,
    len: u64,
    next_base: Option<u64>,
    replay: &mut impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<(u64, Stop)> {
    let fail = |e: std::io::Error| Error::Storage(format!("cannot read {}: {e}", path.display()));
    // Streamed, record by record: a log may be larger than the memory it may use.
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut at, mut payload) = (0u64, Vec::new());
    let stop = loop {
        let mut header = [0u8; HEADER];
        if at == len {
            break Stop::End;
        }
        if at + HEADER as u64 > len {
            break Stop::Torn;
        }
        reader.read_exact(&mut header).map_err(fail)?;
        let (size, crc) = split_header(&header);
        if size > MAX_RECORD || at + (HEADER + size) as u64 > len {
            break Stop::Torn;
        }
        payload.resize(size, 0);
        reader.read_exact(&mut payload).map_err(fail)?;
        if checksum(&header[..4], &payload) != crc {
            break Stop::Checksum { size };
        }
        let end = base + at + (HEADER + size) as u64;
        if let Some(next) = next_base
            && end > next
        {
            return Err(Error::Storage(format!(
                "{}: the record at offset {} runs past the next segment's base {next}",
                path.display(),
                base + at
            )));
        }
        replay(base + at, &payload)?;
        at += (HEADER + size) as u64;
    };
    Ok((at, stop))
}

/// Whether an intact record starts at `at` in `file` (of `len` bytes).
fn intact_record_at(file: &File, at: u64, len: u64) -> bool {
    let mut header = [0u8; HEADER];
    if at + HEADER as u64 > len || file.read_exact_at(&mut header, at).is_err() {
        return false;
    }
    let (size, crc) = split_header(&header);
    if size > MAX_RECORD || at + (HEADER + size) as u64 > len {
        return false;
    }
    let mut payload = vec![0u8; size];
    file.read_exact_at(&mut payload, at + HEADER as u64).is_ok() && checksum(&header[..4], &payload) == crc
}

impl Wal {
    /// Opens (or creates) the log `name` in `dir`, calling `replay(offset, payload)` for
    /// every intact record in order, and cuts off a torn tail. A new segment starts once
    /// the current one holds `segment_size` bytes. A log synced per group should
    /// `preallocate` ([`PREALLOCATE`]); one written without syncs gains nothing by it.
    pub fn open(
        dir: &Path,
        name: &str,
        segment_size: u64,
        preallocate: u64,
        mut replay: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<Wal> {
        assert!(segment_size > 0, "log {name}: a segment size of zero");
        let lock = lock(dir, name)?;
        migrate_legacy(dir, name)?;
        let mut bases = list_segments(dir, name)?;
        if bases.is_empty() {
            bases.push(0);
        }
        let mut current = None;
        for (i, &base) in bases.iter().enumerate() {
            let path = segment_path(dir, name, base);
            let fail = |what: &str, e: std::io::Error| Error::Storage(format!("cannot {what} {}: {e}", path.display()));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| fail("open", e))?;
            // What we replay is treated as durable, so make it so: a crash may have come
            // before the last group's fdatasync.
            file.sync_all().map_err(|e| fail("sync", e))?;
            let len = file.metadata().map_err(|e| fail("stat", e))?.len();
            let next = bases.get(i + 1).copied();
            let (at, stop) = replay_segment(&file, &path, base, len, next, &mut replay)?;
            if let Some(next) = next {
                if let Stop::Checksum { size } = stop
                    && intact_record_at(&file, at + (HEADER + size) as u64, len)
                {
                    return Err(Error::Storage(format!(
                        "{}: the record at offset {} (byte {at} of the file) fails its checksum and an intact \
                         record follows it; the segment is not the last one, so this is damage, not a torn \
                         write: not opening the log rather than dropping the records after it",
                        path.display(),
                        base + at,
                    )));
                }
                if base + at < next {
                    tracing::info!(path = %path.display(), records = at, next, "log: a segment ends before the next one's base");
                }
            } else {
                if at < len {
                    // Preallocated zeros, or a torn tail: either way nothing of it was
                    // acknowledged. Cut it, so that stale bytes can never follow records
                    // written from now on.
                    tracing::info!(path = %path.display(), kept = at, dropped = len - at, "log: cut after the last record");
                    file.set_len(at).map_err(|e| fail("cut the tail of", e))?;
                    file.sync_all().map_err(|e| fail("sync", e))?;
                }
                // A crash may have come before a new segment's directory entry reached
                // the disk: synced below, before the log is used.
                let file = SegmentFile::new(path, file, at, true);
                current = Some((base + at, file));
            }
        }
        let (written, current) =
            current.unwrap_or_else(|| panic!("log {name}: no last segment among {} bases", bases.len()));
        sync_dir(dir)?;
        Ok(Wal {
            name: name.to_string(),
            bases: bases.into(),
            current: Arc::new(current),
            reading: RefCell::new(None),
            written,
            pending: Vec::new(),
            preallocate,
            segment_size,
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                _lock: lock,
                dirty: Mutex::new(Dirty::default()),
                syncing: Mutex::new(()),
            }),
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

    /// A handle that syncs this log from another thread.
    pub fn sync_handle(&self) -> SyncHandle {
        SyncHandle(self.shared.clone())
    }

    /// Bytes appended but not yet handed out.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The logical end: the offset the next record appended gets.
    pub fn end(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// The lowest offset a record can still be read at: the first kept segment's base.
    pub fn first_offset(&self) -> u64 {
        self.bases.front().copied().unwrap_or(self.written)
    }

    /// Hands out everything appended so far, to be written (in the order handed out).
    pub fn take_pending(&mut self) -> PendingWrite {
        if !self.pending.is_empty() && self.written - self.current_base() >= self.segment_size {
            self.start_segment();
        }
        // The next group is likely about this one's size: start it with that much room
        // (up to 1 MiB) instead of growing it record by record.
        let room = self.pending.len().min(1 << 20);
        let bytes = std::mem::replace(&mut self.pending, Vec::with_capacity(room));
        let at = self.written - self.current_base();
        let segment = self.current.clone();
        self.written += bytes.len() as u64;
        PendingWrite {
            segment,
            at,
            bytes,
            preallocate: self.preallocate,
            segment_size: self.segment_size,
            shared: self.shared.clone(),
            end: self.written,
        }
    }

    /// Starts a segment at the logical end. If its file cannot be created, the current
    /// one grows on (and the next group tries again).
    fn start_segment(&mut self) {
        let base = self.written;
        let path = segment_path(&self.shared.dir, &self.name, base);
        match OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(file) => {
                // The one before stays open for as long as a group or a sync needs it.
                self.current = Arc::new(SegmentFile::new(path, file, 0, false));
                self.bases.push_back(base);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "log: cannot start a segment; the current one grows on");
            }
        }
    }

    /// The base of the segment written to.
    fn current_base(&self) -> u64 {
        let current = self.bases.back().copied();
        current.unwrap_or_else(|| panic!("log {}: no segment (the one written to is always kept)", self.name))
    }

    fn segment_path(&self, base: u64) -> PathBuf {
        segment_path(&self.shared.dir, &self.name, base)
    }

    /// Reads back the record at `offset` (which must have been written).
    pub fn read_at(&self, offset: u64) -> Result<Vec<u8>> {
        let i = self.bases.partition_point(|base| *base <= offset);
        let Some(&base) = i.checked_sub(1).and_then(|i| self.bases.get(i)) else {
            return Err(Error::Storage(format!(
                "log {}: offset {offset} lies below the first kept segment (base {}): truncated",
                self.name,
                self.first_offset()
            )));
        };
        let fail = |e: std::io::Error| {
            let path = self.segment_path(base);
            Error::Storage(format!("log read at {offset} in {}: {e}", path.display()))
        };
        let at = offset - base;
        let mut reading = self.reading.borrow_mut();
        let file = if base == self.current_base() {
            &self.current.file
        } else {
            match &mut *reading {
                Some((open, file)) if *open == base => file,
                other => {
                    &other
                        .insert((base, File::open(self.segment_path(base)).map_err(fail)?))
                        .1
                }
            }
        };
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, at).map_err(fail)?;
        let (len, crc) = split_header(&header);
        if len > MAX_RECORD {
            return Err(Error::Storage(format!(
                "log {} record at {offset}: bad length {len}",
                self.name
            )));
        }
        let mut payload = vec![0u8; len];
        file.read_exact_at(&mut payload, at + HEADER as u64).map_err(fail)?;
        if checksum(&header[..4], &payload) != crc {
            return Err(Error::Storage(format!(
                "log {} record at {offset}: checksum mismatch",
                self.name
            )));
        }
        Ok(payload)
    }

    /// Deletes every segment whose records all lie below `offset` (never the one written
    /// to); returns the bytes freed. Records at or above `offset` stay readable; reading
    /// one below the first kept segment is an error from now on.
    pub fn truncate_below(&mut self, offset: u64) -> Result<u64> {
        let mut freed = 0;
        while self.bases.len() > 1 && self.bases[1] <= offset {
            let path = self.segment_path(self.bases[0]);
            let fail = |e: std::io::Error| Error::Storage(format!("cannot delete {}: {e}", path.display()));
            let size = std::fs::metadata(&path).map_err(fail)?.len();
            std::fs::remove_file(&path).map_err(fail)?;
            tracing::debug!(path = %path.display(), size, "log: segment deleted");
            if freed == 0 {
                super::failpoint::hit("truncating"); // Tests: a kill between deletions.
            }
            freed += size;
            if self
                .reading
                .borrow()
                .as_ref()
                .is_some_and(|(open, _)| *open == self.bases[0])
            {
                *self.reading.borrow_mut() = None;
            }
            self.bases.pop_front();
        }
        Ok(freed)
    }

    /// Bytes of all segment files on disk (records and preallocated zeros).
    pub fn disk_bytes(&self) -> u64 {
        let size = |base: &u64| std::fs::metadata(self.segment_path(*base)).map_or(0, |m| m.len());
        self.bases.iter().map(size).sum()
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

    const NAME: &str = "x.wal";

    impl Wal {
        /// Frames a copy of `payload` (production code encodes in place instead).
        fn append(&mut self, payload: &[u8]) -> u64 {
            self.append_with(|buf| {
                buf.extend_from_slice(payload);
                Ok(())
            })
            .expect("append")
        }

        /// The bases of the segments kept.
        pub(crate) fn bases(&self) -> Vec<u64> {
            self.bases.iter().copied().collect()
        }
    }

    type Seen = Vec<(u64, Vec<u8>)>;

    fn open_sized(dir: &Path, segment_size: u64) -> Result<(Wal, Seen)> {
        let mut seen = Vec::new();
        let wal = Wal::open(dir, NAME, segment_size, PREALLOCATE, |at, p| {
            seen.push((at, p.to_vec()));
            Ok(())
        })?;
        Ok((wal, seen))
    }

    fn replay_all(dir: &Path) -> (Wal, Seen) {
        open_sized(dir, SEGMENT_SIZE).expect("open")
    }

    fn payloads(seen: &Seen) -> Vec<Vec<u8>> {
        seen.iter().map(|(_, p)| p.clone()).collect()
    }

    /// The segment files of the log in `dir`, by base.
    fn segment_files(dir: &Path) -> Vec<u64> {
        list_segments(dir, NAME).expect("list")
    }

    /// Appends `groups` groups of three 20-byte records (84 bytes framed), writing each;
    /// returns the offsets of each group's records.
    fn write_groups(wal: &mut Wal, groups: usize) -> Vec<Vec<u64>> {
        (0..groups)
            .map(|g| {
                let offsets = (0..3).map(|r| wal.append(&[(g * 3 + r) as u8; 20])).collect();
                wal.take_pending().write().expect("write");
                offsets
            })
            .collect()
    }

    fn flip_byte(path: &Path, at: u64) {
        let file = OpenOptions::new().read(true).write(true).open(path).expect("open");
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).expect("read");
        file.write_all_at(&[byte[0] ^ 0x55], at).expect("flip");
    }

    #[test]
    fn wal_records_round_trip_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, seen) = replay_all(dir.path());
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
        let (wal, seen) = replay_all(dir.path());
        assert_eq!(
            seen,
            vec![(a, b"first".to_vec()), (b, b"second".to_vec()), (c, Vec::new())]
        );
        assert_eq!(wal.read_at(a).expect("read"), b"first");
        assert_eq!(segment_files(dir.path()), vec![0], "one segment, at base 0");
    }

    #[test]
    fn wal_torn_tail_is_cut_and_appends_follow_the_last_intact_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = replay_all(dir.path());
        wal.append(b"kept");
        let torn = wal.append(b"torn record");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        let path = segment_path(dir.path(), NAME, 0);
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            SEGMENT_SIZE,
            "preallocated, but not beyond the segment size"
        );
        // A crash in the middle of the second record: its last bytes are still the zeros
        // the file was preallocated with.
        let end = torn + (HEADER + b"torn record".len()) as u64;
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0; 3], end - 3).expect("tear");
        let (mut wal, seen) = replay_all(dir.path());
        assert_eq!(payloads(&seen), vec![b"kept".to_vec()]);
        wal.append(b"after");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        let (_, seen) = replay_all(dir.path());
        assert_eq!(payloads(&seen), vec![b"kept".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn wal_corrupt_record_in_the_last_segment_ends_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = replay_all(dir.path());
        wal.append(b"good");
        let bad = wal.append(b"flipped");
        wal.append(b"after the flipped one");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        flip_byte(&segment_path(dir.path(), NAME, 0), bad + HEADER as u64 + 2);
        let (wal, seen) = replay_all(dir.path());
        assert_eq!(seen.len(), 1, "a record failing its checksum is not replayed");
        assert!(wal.read_at(bad).is_err(), "and cannot be read back");
    }

    #[test]
    fn wal_segments_roll_at_the_size_and_replay_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open_sized(dir.path(), 100).expect("open");
        let groups = write_groups(&mut wal, 7);
        let bases = wal.bases();
        assert!(bases.len() >= 3, "rolled: {bases:?}");
        assert_eq!(bases, segment_files(dir.path()));
        for group in &groups {
            let in_segment = |offset: &u64| bases.iter().rposition(|b| b <= offset);
            assert!(
                group.iter().all(|o| in_segment(o) == in_segment(&group[0])),
                "a group in one segment: {group:?} across {bases:?}"
            );
        }
        for (i, pair) in bases.windows(2).enumerate() {
            assert!(
                groups.iter().any(|g| g[0] == pair[1]),
                "each segment starts with a group"
            );
            let len = std::fs::metadata(segment_path(dir.path(), NAME, pair[0]))
                .expect("stat")
                .len();
            assert_eq!(len, pair[1] - pair[0], "segment {i} holds its records, no more");
            assert!(pair[1] - pair[0] < 100 + 84, "a segment rolls once it reached the size");
        }
        let all: Vec<u64> = groups.iter().flatten().copied().collect();
        for (i, &offset) in all.iter().enumerate() {
            assert_eq!(wal.read_at(offset).expect("read"), vec![i as u8; 20]);
        }
        let end = wal.end();
        drop(wal);

        let (mut wal, seen) = open_sized(dir.path(), 100).expect("reopen");
        assert_eq!(seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(), all, "same offsets");
        assert_eq!(payloads(&seen), (0..21u8).map(|i| vec![i; 20]).collect::<Vec<_>>());
        assert_eq!(wal.bases(), bases);
        assert_eq!(wal.end(), end);
        let next = wal.append(b"after the reopen");
        assert_eq!(next, end, "appends follow the last record");
        wal.take_pending().write_and_sync().expect("sync");
        assert_eq!(wal.read_at(next).expect("read"), b"after the reopen");
    }

    #[test]
    fn wal_a_new_segment_counts_as_durable_only_after_its_first_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open_sized(dir.path(), 10).expect("open");
        write_groups(&mut wal, 1);
        wal.append(b"into a new segment");
        let group = wal.take_pending();
        assert_eq!(wal.bases().len(), 2, "a new segment for the group");
        assert!(
            !group.segment.entry_durable.load(Ordering::Acquire),
            "its directory entry is synced by the write, not by creating it"
        );
        group.write_and_sync().expect("write");
        assert!(group.segment.entry_durable.load(Ordering::Acquire));
    }

    #[test]
    fn wal_sync_handle_syncs_every_segment_written_since_the_last_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open_sized(dir.path(), 100).expect("open");
        let sync = wal.sync_handle();
        let dirty = |wal: &Wal| {
            let dirty = wal.shared.dirty.lock().expect("lock");
            dirty.closed.len() + dirty.last.iter().count()
        };
        write_groups(&mut wal, 3);
        assert_eq!(wal.bases().len(), 2);
        assert_eq!(dirty(&wal), 2, "the earlier segment and the current one");
        sync.sync().expect("sync");
        assert_eq!(dirty(&wal), 0);
        write_groups(&mut wal, 1);
        assert_eq!(dirty(&wal), 1);
        wal.append(b"x");
        wal.take_pending().write_and_sync().expect("sync");
        assert_eq!(dirty(&wal), 0, "a group's sync covers earlier unsynced writes");
        // A segment written to, then deleted before the sync: nothing to sync there.
        write_groups(&mut wal, 4);
        let closed = wal.shared.dirty.lock().expect("lock").closed.len();
        assert!(closed >= 1, "held by name: {closed}");
        wal.truncate_below(wal.end()).expect("truncate");
        sync.sync().expect("sync");
        assert_eq!(dirty(&wal), 0);
    }

    #[test]
    fn wal_truncate_below_frees_whole_segments_and_never_a_record_at_or_above_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open_sized(dir.path(), 100).expect("open");
        let groups = write_groups(&mut wal, 9);
        let all: Vec<u64> = groups.iter().flatten().copied().collect();
        let bases = wal.bases();
        assert!(bases.len() >= 4, "{bases:?}");
        let before = wal.disk_bytes();
        assert!(before >= wal.end(), "every byte of the log, and the zeros ahead of it");

        assert_eq!(
            wal.read_at(all[0]).expect("read"),
            vec![0u8; 20],
            "opens the first segment to read"
        );
        // A bound inside the third segment: the first two go, the third stays.
        let bound = bases[2] + 1;
        let freed = wal.truncate_below(bound).expect("truncate");
        assert_eq!(freed, bases[2], "the bytes of the first two segments");
        assert_eq!(wal.disk_bytes(), before - freed);
        assert_eq!(wal.bases(), bases[2..].to_vec());
        assert_eq!(segment_files(dir.path()), bases[2..].to_vec());
        assert_eq!(wal.first_offset(), bases[2]);
        for (i, &offset) in all.iter().enumerate() {
            let read = wal.read_at(offset);
            if offset >= bases[2] {
                assert_eq!(read.expect("kept"), vec![i as u8; 20]);
            } else {
                let e = read.expect_err("truncated");
                assert!(e.to_string().contains("below the first kept segment"), "{e}");
            }
        }
        assert_eq!(wal.truncate_below(bound).expect("again"), 0, "nothing more below it");

        // Not even a bound past the end removes the segment written to.
        wal.truncate_below(u64::MAX).expect("truncate");
        assert_eq!(wal.bases(), vec![*bases.last().expect("a segment")]);
        let last: Vec<u64> = all.iter().copied().filter(|o| o >= &bases[bases.len() - 1]).collect();
        drop(wal);

        let (_, seen) = open_sized(dir.path(), 100).expect("reopen");
        assert_eq!(
            seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            last,
            "a reopen replays the kept segments at their offsets"
        );
    }

    #[test]
    fn wal_damage_in_a_segment_that_is_not_the_last_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open_sized(dir.path(), 100).expect("open");
        let groups = write_groups(&mut wal, 4);
        assert!(wal.bases().len() >= 2);
        drop(wal);
        // The second record of the first segment: intact records follow it.
        let bad = groups[0][1];
        flip_byte(&segment_path(dir.path(), NAME, 0), bad + HEADER as u64 + 3);
        let e = open_sized(dir.path(), 100).map(drop).expect_err("damage");
        let e = e.to_string();
        assert!(e.contains(&format!("{NAME}.0000000000000000")), "names the file: {e}");
        assert!(e.contains(&format!("offset {bad}")), "names the offset: {e}");
        assert!(e.contains("damage"), "{e}");
    }

    #[test]
    fn wal_segment_that_is_not_the_last_may_end_in_zeros_or_a_lost_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open_sized(dir.path(), 100).expect("open");
        let groups = write_groups(&mut wal, 4);
        let bases = wal.bases();
        drop(wal);
        let first = segment_path(dir.path(), NAME, 0);
        let file = OpenOptions::new().write(true).open(&first).expect("open");
        // Zeros after its last record: every record replays, at its offset.
        file.set_len(bases[1] + 4096).expect("zeros");
        let (_, seen) = open_sized(dir.path(), 100).expect("reopen");
        let all: Vec<u64> = groups.iter().flatten().copied().collect();
        assert_eq!(seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(), all);
        // Its last record lost (a crash before the unsynced tail reached the disk): the
        // records of the next segments keep their offsets.
        file.set_len(bases[1] - 5).expect("lose the tail");
        let (wal, seen) = open_sized(dir.path(), 100).expect("reopen");
        let lost = all
            .iter()
            .rposition(|o| *o < bases[1])
            .expect("a record in the first segment");
        let mut expected = all.clone();
        expected.remove(lost);
        assert_eq!(seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(), expected);
        assert_eq!(wal.bases(), bases, "not cut: it is not the last");
    }

    #[test]
    fn wal_legacy_file_becomes_the_first_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = replay_all(dir.path());
        let a = wal.append(b"from before segments");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        // What a build of before left: one plain file, the log's name without a suffix.
        std::fs::rename(segment_path(dir.path(), NAME, 0), dir.path().join(NAME)).expect("rename");
        assert_eq!(segment_files(dir.path()), Vec::<u64>::new());

        let (mut wal, seen) = replay_all(dir.path());
        assert_eq!(seen, vec![(a, b"from before segments".to_vec())]);
        assert!(!dir.path().join(NAME).exists(), "renamed");
        assert_eq!(segment_files(dir.path()), vec![0]);
        let b = wal.append(b"after");
        wal.take_pending().write_and_sync().expect("sync");
        drop(wal);
        let (_, seen) = replay_all(dir.path());
        assert_eq!(seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![a, b]);

        // Both a plain file and a first segment: which is the log is unknown.
        std::fs::write(dir.path().join(NAME), b"").expect("write");
        assert!(open_sized(dir.path(), SEGMENT_SIZE).is_err());
    }

    #[test]
    fn wal_second_instance_is_refused_until_every_handle_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = replay_all(dir.path());
        wal.append(b"x");
        let (group, sync) = (wal.take_pending(), wal.sync_handle());
        let refused = |what: &str| {
            let e = open_sized(dir.path(), SEGMENT_SIZE).map(drop).expect_err(what);
            assert!(e.to_string().contains("cannot lock"), "{what}: {e}");
        };
        refused("the log is open");
        drop(wal);
        refused("a group is still to be written");
        drop(group);
        refused("a sync handle remains");
        drop(sync);
        open_sized(dir.path(), SEGMENT_SIZE).expect("every handle gone");
    }
}
