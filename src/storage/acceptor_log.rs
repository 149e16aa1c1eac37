//! `acceptor.wal`: the acceptor's promises and acceptances, in order, in segments (see
//! [`super::wal`]), with an index of where each slot's latest acceptance lies.
//!
//! **Compaction.** Once a snapshot covers the slots below `below`, their values are
//! decided and need not be read back: [`AcceptorLog::compact`] forgets their index
//! entries and deletes the segments that hold nothing still needed, that is every
//! segment lying wholly below both the record the caller appended to re-record the
//! promise (`keep_from`) and the lowest record a remaining slot's latest acceptance
//! lies in. A slot at or above `below` keeps its record even if that lies in an old
//! segment (it pins its segment until a later acceptance of the slot, or a compaction
//! above it, lets it go). On a restart the replay sees the promise (the record at
//! `keep_from` or a later one) and every slot at or above `below`; the index then also
//! holds the lower slots of the kept segments until the next compaction.

use super::record_at;
use super::wal::{PREALLOCATE, PendingWrite, SEGMENT_SIZE, Wal};
use crate::error::{Error, Result};
use crate::messages::codec;
use crate::messages::{Slot, Value};
use crate::roles::ready::AcceptorWrite;
use crate::roles::runs::Runs;
use std::path::Path;

/// The name of the acceptor's log in the data directory (its segments are
/// `acceptor.wal.<base>`).
pub const ACCEPTOR: &str = "acceptor.wal";

/// The acceptor's log: every [`AcceptorWrite`], in the order the core made them, and an
/// index of where each slot's latest acceptance is (to read values evicted from memory).
pub struct AcceptorLog {
    wal: Wal,
    /// Slot -> offset of the record holding its latest acceptance.
    index: Runs<u64>,
}

impl AcceptorLog {
    /// Opens the log in `dir` (segments of [`SEGMENT_SIZE`]), handing every write in it
    /// to `replay`, in order.
    pub fn open(dir: &Path, replay: impl FnMut(AcceptorWrite)) -> Result<AcceptorLog> {
        AcceptorLog::open_with_segment_size(dir, SEGMENT_SIZE, replay)
    }

    /// [`AcceptorLog::open`], starting a new segment every `segment_size` bytes.
    pub fn open_with_segment_size(
        dir: &Path,
        segment_size: u64,
        mut replay: impl FnMut(AcceptorWrite),
    ) -> Result<AcceptorLog> {
        let mut index = Runs::new();
        let wal = Wal::open(dir, ACCEPTOR, segment_size, PREALLOCATE, |offset, record| {
            let write: AcceptorWrite = codec::decode_local(record)?;
            index_write(&mut index, &write, offset);
            replay(write);
            Ok(())
        })?;
        Ok(AcceptorLog { wal, index })
    }

    /// Adds a write to the next group (durable once that group's sync returns); returns
    /// the offset of its record.
    pub fn append(&mut self, write: &AcceptorWrite) -> Result<u64> {
        let offset = self
            .wal
            .append_with(|buf| codec::encode_into(write, buf).map(drop).map_err(Into::into))?;
        index_write(&mut self.index, write, offset);
        Ok(offset)
    }

    /// The group of writes appended since the last call, to write and sync.
    pub fn take_pending(&mut self) -> PendingWrite {
        self.wal.take_pending()
    }

    /// Reads back the value last accepted in `slot` (its group must have been written),
    /// through `cache` (see `record_at`).
    pub fn read(&self, slot: Slot, cache: &mut Option<(u64, AcceptorWrite)>) -> Result<Value> {
        let (_, offset) = self
            .index
            .get(slot)
            .ok_or_else(|| Error::Storage(format!("acceptor log holds no slot {slot}")))?;
        let write = record_at(&self.wal, offset, cache)?;
        let found = write.accepted.iter().find(|(s, _, _)| *s == slot);
        found
            .map(|(_, _, value)| value.clone())
            .ok_or_else(|| Error::Storage(format!("acceptor log record at {offset} lacks slot {slot}")))
    }

    /// Forgets the slots below `below` (decided, and in a durable snapshot) and deletes
    /// every segment wholly below both `keep_from` and the records of the slots left;
    /// returns the bytes freed. `keep_from` is the offset [`AcceptorLog::append`]
    /// returned for a record that re-records the promise, durable before this call:
    /// the records before it are then needed only for the slots they hold.
    pub fn compact(&mut self, below: Slot, keep_from: u64) -> Result<u64> {
        assert!(
            keep_from < self.wal.end(),
            "acceptor log: compacting up to {keep_from}, past the last record appended (the log ends at {})",
            self.wal.end()
        );
        self.index.remove(0, below);
        let lowest = self.index.ranges_from(0).map(|(_, _, offset)| offset).min();
        self.wal.truncate_below(lowest.map_or(keep_from, |lowest| lowest.min(keep_from)))
    }

    /// Bytes of the log's files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }
}

/// Points the slots of `write` (one Accept batch: consecutive slots) at its record.
fn index_write(index: &mut Runs<u64>, write: &AcceptorWrite, offset: u64) {
    for run in write.accepted.chunk_by(|a, b| b.0 == a.0 + 1) {
        index.insert(run[0].0, run[run.len() - 1].0 + 1, offset);
    }
}
