//! Raft's log and vote on the project's WAL ([`crate::storage::wal`]): openraft's
//! [`RaftLogStorage`] and [`RaftLogReader`].
//!
//! **Job.** Keep what a Raft node must not lose (its vote and its log entries) durable
//! before openraft acts on it, with one `fdatasync` per group of appends, as the Paxos
//! acceptor does.
//!
//! **On disk.** The log `raft.wal` in the data directory, segmented like every WAL of
//! the project. Each record is one [`Record`] (bincode, [`crate::messages::codec`]):
//! the vote, a batch of entries, a truncation (a conflict: entries from an index on are
//! gone), a purge (entries up to a log id are in a snapshot and gone), or the committed
//! log id. Replaying the records in order rebuilds the state; a record that does not
//! decode stops the open with an error naming its offset (never a panic).
//!
//! **In memory.** Every entry not purged, with the offset of the record that holds it
//! (what bounds the disk space a purge can give back). Memory is bounded by purging,
//! which follows the snapshots (`snapshot_every`); without snapshots the log grows.
//!
//! **Group commit.** [`LogStore::append`] encodes the entries into the WAL's pending
//! buffer and returns; a writer thread takes the buffer ([`Wal::take_pending`]), writes
//! and syncs it, and only then calls each `LogFlushed` callback of that group. Appends
//! that arrive while a sync runs share the next write and sync. openraft needs its IO in
//! order: a vote goes into the same buffer, after the appends before it, and
//! [`LogStore::save_vote`] returns once its group is synced, so a vote never overtakes
//! an earlier append and is durable before openraft sends a message that depends on it.
//! Truncations and committed marks ride along with the next group (nothing waits for
//! them alone: a crash that loses one only brings back a state the node was in before).
//!
//! **Purge and disk space.** A purge drops the entries in memory, then, once a whole
//! segment lies below the oldest entry still needed, writes the vote, the committed mark
//! and the purge mark again at the end, waits for them to be durable, and deletes the
//! segments below ([`Wal::truncate_below`]): the latest vote is never only in a deleted
//! segment.
//!
//! **Planted bug** (`raft_acks_before_durable`, tests only): appends are acknowledged as
//! soon as they are buffered, and the buffer is written only every
//! [`LAZY_WRITE_INTERVAL`]: a crash of the whole cluster loses acknowledged writes.
//!
//! **Left out.** Entries are never read back from disk after the open (they stay in
//! memory until purged); a failed write or sync makes the store refuse all further IO
//! (what is durable is unknown after a failed `fdatasync`): openraft then stops the node.

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::error::{Error, Result};
use crate::messages::{NodeId, codec};
use crate::storage::wal::{self, Wal};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The log's name in the data directory.
pub const WAL_NAME: &str = "raft.wal";

/// With the planted bug on, how often the buffered records are written.
pub const LAZY_WRITE_INTERVAL: Duration = Duration::from_millis(200);

/// One record of the log, as decoded on replay.
#[derive(Debug, Deserialize)]
enum Record {
    Vote(Vote),
    Entries(Vec<Entry>),
    /// Entries at this index and above are gone (a conflict with the leader's log).
    TruncateFrom(u64),
    /// Entries up to this log id are in a snapshot and gone.
    Purge(LogId),
    Committed(Option<LogId>),
}

/// [`Record`] as encoded: the same variants in the same order, borrowing (bincode
/// writes a slice as it writes a vector).
#[derive(Serialize)]
enum RecordRef<'a> {
    Vote(&'a Vote),
    Entries(&'a [Entry]),
    TruncateFrom(u64),
    Purge(&'a LogId),
    Committed(&'a Option<LogId>),
}

/// Who waits for the group a record went into to be durable.
enum Waiter {
    Flushed(LogFlushed<TypeConfig>),
    Done(oneshot::Sender<Result<(), String>>),
}

struct State {
    /// `None` once closed.
    wal: Option<Wal>,
    /// Every entry not purged: index -> (offset of its record, entry).
    entries: BTreeMap<u64, (u64, Entry)>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
    /// Completions of the records in the WAL's pending buffer, in order.
    waiting: Vec<Waiter>,
    /// A write or sync failed: nothing more is written (see the module docs).
    failed: Option<String>,
    stop: bool,
}

struct Shared {
    node: NodeId,
    state: Mutex<State>,
    /// Wakes the writer: records to write, or stop.
    wake: Condvar,
    acks_before_durable: bool,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The log store openraft owns; [`LogReader`]s share it.
pub struct LogStore {
    shared: Arc<Shared>,
}

/// A reader of the same log (for openraft's replication tasks).
#[derive(Clone)]
pub struct LogReader {
    shared: Arc<Shared>,
}

/// What the store held when it was opened, for the node's start.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub vote: Option<Vote>,
    pub last_log: Option<LogId>,
    pub purged: Option<LogId>,
    pub committed: Option<LogId>,
    pub entries: usize,
}

/// A handle to close the store when the node halts (openraft owns the store itself).
#[derive(Clone)]
pub struct LogCloser {
    shared: Arc<Shared>,
}

impl LogCloser {
    /// The committed log id openraft last recorded (for `/status`).
    pub fn committed(&self) -> Option<LogId> {
        self.shared.lock().committed
    }

    /// Stops the writer (records not yet handed to it are dropped, as a crash would)
    /// and closes the WAL, releasing its lock. Blocking: waits for a write in progress.
    pub fn close(&self) {
        let wal = {
            let mut st = self.shared.lock();
            st.stop = true;
            for waiter in std::mem::take(&mut st.waiting) {
                complete(waiter, Err("the log is closed".into()));
            }
            st.wal.take()
        };
        self.shared.wake.notify_all();
        let writer = self.shared.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            tracing::error!(node = self.shared.node, "raft log writer panicked");
        }
        drop(wal);
    }
}

fn complete(waiter: Waiter, result: Result<(), String>) {
    match waiter {
        Waiter::Flushed(callback) => {
            callback.log_io_completed(result.map_err(std::io::Error::other));
        }
        Waiter::Done(tx) => {
            let _ = tx.send(result);
        }
    }
}

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, message: impl ToString) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::error(message)).into()
}

fn encode_record(wal: &mut Wal, record: &RecordRef<'_>) -> Result<u64> {
    wal.append_with(|buf| {
        codec::encode_into(record, buf)?;
        Ok(())
    })
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replays it and starts the writer thread.
    pub fn open(dir: &Path, node: NodeId, acks_before_durable: bool) -> Result<(LogStore, Recovered)> {
        let mut entries: BTreeMap<u64, (u64, Entry)> = BTreeMap::new();
        let (mut vote, mut committed, mut purged) = (None, None, None::<LogId>);
        let wal = Wal::open(dir, WAL_NAME, wal::SEGMENT_SIZE, wal::PREALLOCATE, |offset, payload| {
            let record: Record = codec::decode_local(payload).map_err(|e| {
                Error::Storage(format!(
                    "{WAL_NAME}: the record at offset {offset} does not decode: {e}"
                ))
            })?;
            match record {
                Record::Vote(v) => vote = Some(v),
                Record::Entries(batch) => {
                    for entry in batch {
                        if purged.as_ref().is_none_or(|p| entry.log_id.index > p.index) {
                            entries.insert(entry.log_id.index, (offset, entry));
                        }
                    }
                }
                Record::TruncateFrom(index) => {
                    entries.split_off(&index);
                }
                Record::Purge(log_id) => {
                    entries = entries.split_off(&(log_id.index + 1));
                    if purged.as_ref().is_none_or(|p| log_id > *p) {
                        purged = Some(log_id);
                    }
                }
                Record::Committed(c) => committed = c,
            }
            Ok(())
        })?;
        let recovered = Recovered {
            vote,
            last_log: entries.values().next_back().map(|(_, e)| e.log_id).or(purged),
            purged,
            committed,
            entries: entries.len(),
        };
        let shared = Arc::new(Shared {
            node,
            state: Mutex::new(State {
                wal: Some(wal),
                entries,
                vote,
                committed,
                purged,
                waiting: Vec::new(),
                failed: None,
                stop: false,
            }),
            wake: Condvar::new(),
            acks_before_durable,
            writer: Mutex::new(None),
        });
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name(format!("raft-wal-{node}"))
            .spawn(move || write_loop(&writer_shared))
            .map_err(|e| Error::Storage(format!("cannot start the raft log writer: {e}")))?;
        *shared.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(writer);
        Ok((LogStore { shared }, recovered))
    }

    /// The handle that closes this store when the node halts.
    pub fn closer(&self) -> LogCloser {
        LogCloser {
            shared: self.shared.clone(),
        }
    }

    /// Buffers `record`, and returns the receiver told when it is durable.
    fn append_and_wait(
        &self,
        what: &str,
        record: impl FnOnce(&mut State) -> Result<(), String>,
    ) -> Result<oneshot::Receiver<Result<(), String>>, String> {
        let mut st = self.shared.lock();
        usable(&st)?;
        record(&mut st)?;
        let (tx, rx) = oneshot::channel();
        st.waiting.push(Waiter::Done(tx));
        drop(st);
        self.shared.wake.notify_one();
        tracing::trace!(node = self.shared.node, what, "raft log: waiting for a sync");
        Ok(rx)
    }
}

/// Whether the store still takes IO.
fn usable(st: &State) -> Result<(), String> {
    if let Some(failed) = &st.failed {
        return Err(format!("an earlier write failed ({failed}); nothing more is written"));
    }
    if st.stop || st.wal.is_none() {
        return Err("the log is closed".into());
    }
    Ok(())
}

fn wal_of(st: &mut State) -> Result<&mut Wal, String> {
    st.wal.as_mut().ok_or_else(|| "the log is closed".to_string())
}

/// The writer thread: takes the pending buffer, writes and syncs it, then completes
/// every waiter of that group. Exits when the store is closed.
fn write_loop(shared: &Shared) {
    let mut last_lazy_write = Instant::now();
    loop {
        let (group, waiters) = {
            let mut st = shared.lock();
            loop {
                if st.stop {
                    return;
                }
                if !st.waiting.is_empty() {
                    break;
                }
                if !shared.acks_before_durable {
                    st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                // The planted bug: what was acknowledged is written every interval.
                let since = last_lazy_write.elapsed();
                if since >= LAZY_WRITE_INTERVAL {
                    if st.wal.as_ref().is_some_and(|w| w.pending() > 0) {
                        break;
                    }
                    last_lazy_write = Instant::now();
                    continue;
                }
                let wait = LAZY_WRITE_INTERVAL - since;
                st = shared
                    .wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let Some(wal) = st.wal.as_mut() else { return };
            let group = wal.take_pending();
            (group, std::mem::take(&mut st.waiting))
        };
        last_lazy_write = Instant::now();
        let result = group.write_and_sync().map_err(|e| e.to_string());
        drop(group);
        if let Err(e) = &result {
            tracing::error!(node = shared.node, error = %e, "raft log: write failed; the store stops");
            shared.lock().failed = Some(e.clone());
        }
        for waiter in waiters {
            complete(waiter, result.clone());
        }
        if result.is_err() {
            return;
        }
    }
}

fn entries_in<RB: RangeBounds<u64>>(shared: &Shared, range: RB) -> Vec<Entry> {
    let st = shared.lock();
    st.entries.range(range).map(|(_, (_, e))| e.clone()).collect()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.shared, range))
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(entries_in(&self.shared, range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let st = self.shared.lock();
        let last = st.entries.values().next_back().map(|(_, e)| e.log_id).or(st.purged);
        Ok(LogState {
            last_purged_log_id: st.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let fail = |e: String| io_error(ErrorSubject::Vote, ErrorVerb::Write, e);
        let rx = self
            .append_and_wait("vote", |st| {
                encode_record(wal_of(st)?, &RecordRef::Vote(vote)).map_err(|e| e.to_string())?;
                st.vote = Some(*vote);
                Ok(())
            })
            .map_err(fail)?;
        rx.await
            .map_err(|_| fail("the log writer stopped".into()))?
            .map_err(fail)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.shared.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Rides along with the next group: nothing waits for it (see the module docs).
        let mut st = self.shared.lock();
        let fail = |e: String| io_error(ErrorSubject::Store, ErrorVerb::Write, e);
        usable(&st).map_err(fail)?;
        encode_record(wal_of(&mut st).map_err(fail)?, &RecordRef::Committed(&committed))
            .map_err(|e| fail(e.to_string()))?;
        st.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.shared.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let fail = |e: String| io_error(ErrorSubject::Logs, ErrorVerb::Write, e);
        let mut st = self.shared.lock();
        usable(&st).map_err(fail)?;
        if entries.is_empty() {
            st.waiting.push(Waiter::Flushed(callback));
            drop(st);
            self.shared.wake.notify_one();
            return Ok(());
        }
        let offset = encode_record(wal_of(&mut st).map_err(fail)?, &RecordRef::Entries(&entries))
            .map_err(|e| fail(e.to_string()))?;
        for entry in entries {
            st.entries.insert(entry.log_id.index, (offset, entry));
        }
        if self.shared.acks_before_durable {
            // The planted bug: acknowledged before anything reached the disk.
            drop(st);
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        st.waiting.push(Waiter::Flushed(callback));
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let fail = |e: String| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
        let mut st = self.shared.lock();
        usable(&st).map_err(fail)?;
        encode_record(wal_of(&mut st).map_err(fail)?, &RecordRef::TruncateFrom(log_id.index))
            .map_err(|e| fail(e.to_string()))?;
        st.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let fail = |e: String| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e);
        let reclaim = {
            let mut st = self.shared.lock();
            usable(&st).map_err(fail)?;
            encode_record(wal_of(&mut st).map_err(fail)?, &RecordRef::Purge(&log_id))
                .map_err(|e| fail(e.to_string()))?;
            st.entries = st.entries.split_off(&(log_id.index + 1));
            if st.purged.is_none_or(|p| log_id > p) {
                st.purged = Some(log_id);
            }
            let Some(log) = st.wal.as_ref() else {
                return Err(fail("the log is closed".into()));
            };
            let oldest_needed = first_entry_offset(&st).unwrap_or_else(|| log.end());
            oldest_needed >= log.first_offset() + wal::SEGMENT_SIZE
        };
        if !reclaim {
            return Ok(());
        }
        // Write the vote, committed and purge marks again at the end, durably, before
        // deleting the segments that held them.
        let mut marks_at = 0;
        let rx = self
            .append_and_wait("purge marks", |st| {
                let (vote, committed, purged) = (st.vote, st.committed, st.purged);
                let wal = wal_of(st)?;
                let to_string = |e: Error| e.to_string();
                marks_at = wal.end();
                if let Some(vote) = &vote {
                    encode_record(wal, &RecordRef::Vote(vote)).map_err(to_string)?;
                }
                encode_record(wal, &RecordRef::Committed(&committed)).map_err(to_string)?;
                if let Some(purged) = &purged {
                    encode_record(wal, &RecordRef::Purge(purged)).map_err(to_string)?;
                }
                Ok(())
            })
            .map_err(fail)?;
        rx.await
            .map_err(|_| fail("the log writer stopped".into()))?
            .map_err(fail)?;
        let mut st = self.shared.lock();
        let cut = first_entry_offset(&st).map_or(marks_at, |o| o.min(marks_at));
        let wal = wal_of(&mut st).map_err(fail)?;
        let freed = wal.truncate_below(cut).map_err(|e| fail(e.to_string()))?;
        tracing::debug!(
            node = self.shared.node,
            cut,
            freed,
            "raft log: segments below the purge deleted"
        );
        Ok(())
    }
}

/// The offset of the oldest record holding an entry still kept: the first entry's
/// (an entry is only ever written again after every entry above it was truncated, so
/// offsets grow with the index).
fn first_entry_offset(st: &State) -> Option<u64> {
    st.entries.values().next().map(|(offset, _)| *offset)
}
