//! Raft's log and vote on the project's WAL ([`crate::storage::wal`]): openraft's
//! [`RaftLogStorage`] and [`RaftLogReader`].
//!
//! **Job.** Keep what a Raft node must not lose (its vote and its log entries) durable
//! before openraft acts on it, with one `fdatasync` per group of appends, as the Paxos
//! acceptor does.
//!
//! **On disk.** The log `raft.wal` in the data directory, segmented like every WAL of
//! the project. Each record is one `Record` (bincode, [`crate::messages::codec`]):
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
//! [`LAZY_WRITE_INTERVAL`], one interval late: a crash of the whole cluster loses
//! acknowledged writes.
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
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// The log's name in the data directory.
pub const WAL_NAME: &str = "raft.wal";

/// With the planted bug on, how often the buffered records are written (at the
/// multiples of this since the epoch).
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
    /// Bumped each time a group of appends was acknowledged to openraft (after its
    /// sync; at once with the planted bug): the node's command batcher cuts the next
    /// batch then ([`LogCloser::acknowledged`]).
    acknowledged: tokio::sync::watch::Sender<u64>,
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

    /// Told each time appends were acknowledged to openraft (a counter of such groups).
    pub fn acknowledged(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.acknowledged.subscribe()
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
        if acks_before_durable {
            tracing::warn!(
                node,
                "PLANTED BUG raft_acks_before_durable: appends acknowledged before they are durable"
            );
        }
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
            acknowledged: tokio::sync::watch::Sender::new(0),
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
///
/// With the planted bug, groups are taken at each tick of [`LAZY_WRITE_INTERVAL`] on
/// the wall clock (the same instants on every node of a machine) and written one tick
/// later: what was acknowledged in the last interval or two is only in memory, on every
/// node at once, even if the nodes of a cluster are killed one after the other across
/// a tick. A waiter (a vote) still gets everything before it written.
fn write_loop(shared: &Shared) {
    let mut last_tick = SystemTime::now();
    // The planted bug's group taken at the last tick, written at the next.
    let mut held: Option<wal::PendingWrite> = None;
    loop {
        let (groups, waiters) = {
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
                let tick = next_lazy_tick(last_tick);
                let now = SystemTime::now();
                if now >= tick {
                    last_tick = now;
                    if held.is_some() || st.wal.as_ref().is_some_and(|w| w.pending() > 0) {
                        break;
                    }
                    continue;
                }
                let wait = tick.duration_since(now).unwrap_or(Duration::ZERO);
                st = shared
                    .wake
                    .wait_timeout(st, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            let Some(wal) = st.wal.as_mut() else { return };
            let group = wal.take_pending();
            let waiters = std::mem::take(&mut st.waiting);
            let mut groups: Vec<wal::PendingWrite> = held.take().into_iter().collect();
            if shared.acks_before_durable && waiters.is_empty() {
                held = Some(group);
            } else {
                groups.push(group);
            }
            (groups, waiters)
        };
        let result = groups
            .iter()
            .try_for_each(wal::PendingWrite::write_and_sync)
            .map_err(|e| e.to_string());
        drop(groups);
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
        shared.acknowledged.send_modify(|n| *n += 1);
    }
}

/// The first multiple of [`LAZY_WRITE_INTERVAL`] since the epoch after `after`.
fn next_lazy_tick(after: SystemTime) -> SystemTime {
    let interval = LAZY_WRITE_INTERVAL.as_millis() as u64;
    let since = after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    UNIX_EPOCH + Duration::from_millis((since / interval + 1) * interval)
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
            self.shared.acknowledged.send_modify(|n| *n += 1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::service::Service;
    use crate::raft::state_machine::StateMachineStore;
    use crate::raft::types::{CommandBatch, EncodedCommand};
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn blank(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(store: &LogStore) -> Vec<(u64, u64)> {
        let st = store.shared.lock();
        st.entries
            .values()
            .map(|(_, e)| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    /// Builds fresh stores in a temporary directory for openraft's own storage suite.
    struct Fresh;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<Service>, (tempfile::TempDir, LogCloser)> for Fresh {
        async fn build(
            &self,
        ) -> Result<((tempfile::TempDir, LogCloser), LogStore, StateMachineStore<Service>), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, _) = LogStore::open(dir.path(), 1, false).expect("open log");
            let sm = StateMachineStore::open(dir.path(), 1).expect("open state machine");
            let closer = log.closer();
            Ok(((dir, closer), log, sm))
        }
    }

    #[test]
    fn raft_log_store_passes_openraft_storage_suite() {
        Suite::test_all(Fresh).expect("openraft's storage suite");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft_log_store_replays_vote_entries_truncation_and_purge_after_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let (mut store, recovered) = LogStore::open(dir.path(), 1, false).expect("open");
            assert!(recovered.vote.is_none() && recovered.last_log.is_none());
            store.save_vote(&Vote::new(2, 1)).await.expect("vote");
            store
                .blocking_append((1..=5).map(|i| blank(1, i)))
                .await
                .expect("append");
            // A conflict: 4 and 5 go, 4..6 of term 2 come.
            store.truncate(log_id(1, 4)).await.expect("truncate");
            store
                .blocking_append((4..=6).map(|i| blank(2, i)))
                .await
                .expect("append");
            store.purge(log_id(1, 2)).await.expect("purge");
            store.save_committed(Some(log_id(2, 5))).await.expect("committed");
            store.save_vote(&Vote::new_committed(2, 1)).await.expect("vote");
            assert_eq!(indexes(&store), vec![(1, 3), (2, 4), (2, 5), (2, 6)]);
            store.closer().close();
        }
        let (mut store, recovered) = LogStore::open(dir.path(), 1, false).expect("reopen");
        assert_eq!(recovered.vote, Some(Vote::new_committed(2, 1)));
        assert_eq!(recovered.purged, Some(log_id(1, 2)));
        assert_eq!(recovered.last_log, Some(log_id(2, 6)));
        assert_eq!(recovered.committed, Some(log_id(2, 5)));
        assert_eq!(indexes(&store), vec![(1, 3), (2, 4), (2, 5), (2, 6)]);
        let state = store.get_log_state().await.expect("log state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 6)));
        let read = store.try_get_log_entries(3..5).await.expect("read");
        assert_eq!(
            read.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            vec![log_id(1, 3), log_id(2, 4)]
        );
        store.closer().close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft_log_store_torn_tail_drops_only_the_unfinished_record() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let (mut store, _) = LogStore::open(dir.path(), 1, false).expect("open");
            store.save_vote(&Vote::new(1, 1)).await.expect("vote");
            store
                .blocking_append((1..=3).map(|i| blank(1, i)))
                .await
                .expect("append");
            store.closer().close();
        }
        // A record half written by a crash: its header claims more than follows.
        let segment = dir.path().join(format!("{WAL_NAME}.{:016x}", 0));
        let len = std::fs::metadata(&segment).expect("segment").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .expect("open segment");
        std::os::unix::fs::FileExt::write_all_at(&file, &[200, 0, 0, 0, 1, 2, 3, 4, 9, 9], len).expect("tear");
        drop(file);
        let (store, recovered) = LogStore::open(dir.path(), 1, false).expect("reopen after a torn write");
        assert_eq!(recovered.vote, Some(Vote::new(1, 1)));
        assert_eq!(indexes(&store), vec![(1, 1), (1, 2), (1, 3)]);
        store.closer().close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft_log_store_undecodable_record_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let (store, _) = LogStore::open(dir.path(), 1, false).expect("open");
            store.closer().close();
        }
        {
            // An intact frame (right length and CRC) whose payload is no Record.
            let mut wal = Wal::open(dir.path(), WAL_NAME, wal::SEGMENT_SIZE, 0, |_, _| Ok(())).expect("wal");
            wal.append_with(|buf| {
                buf.extend_from_slice(&[0xff, 0xff, 0xff]);
                Ok(())
            })
            .expect("append");
            wal.take_pending().write_and_sync().expect("write");
        }
        let err = LogStore::open(dir.path(), 1, false).err().expect("the open must fail");
        assert!(err.to_string().contains("does not decode"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft_log_store_purge_gives_back_segments_and_keeps_the_vote() {
        let dir = tempfile::tempdir().expect("temp dir");
        let big = |term: u64, index: u64| Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(CommandBatch(vec![EncodedCommand(vec![7; 64 << 10])])),
        };
        {
            let (mut store, _) = LogStore::open(dir.path(), 1, false).expect("open");
            store.save_vote(&Vote::new_committed(3, 1)).await.expect("vote");
            // About 3 segments of 8 MiB.
            for i in 1..=400 {
                store.blocking_append([big(3, i)]).await.expect("append");
            }
            let before = store.shared.lock().wal.as_ref().map(Wal::disk_bytes).unwrap_or(0);
            store.purge(log_id(3, 390)).await.expect("purge");
            let after = store.shared.lock().wal.as_ref().map(Wal::disk_bytes).unwrap_or(0);
            assert!(
                after + (8 << 20) <= before,
                "segments deleted: {before} -> {after} bytes"
            );
            store.closer().close();
        }
        let (store, recovered) = LogStore::open(dir.path(), 1, false).expect("reopen");
        assert_eq!(
            recovered.vote,
            Some(Vote::new_committed(3, 1)),
            "the vote survives the deletion"
        );
        assert_eq!(recovered.purged, Some(log_id(3, 390)));
        assert_eq!(indexes(&store).first(), Some(&(3, 391)));
        assert_eq!(indexes(&store).len(), 10);
        store.closer().close();
    }
}
