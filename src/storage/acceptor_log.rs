//! `acceptor.wal`: the acceptor's promises and acceptances, in order.

use super::record_at;
use super::wal::{PREALLOCATE, PendingWrite, Wal};
use crate::error::{Error, Result};
use crate::messages::codec;
use crate::messages::{Slot, Value};
use crate::roles::ready::AcceptorWrite;
use crate::roles::runs::Runs;
use std::path::Path;

/// The acceptor's log: every [`AcceptorWrite`], in the order the core made them, and an
/// index of where each slot's latest acceptance is (to read values evicted from memory).
pub struct AcceptorLog {
    wal: Wal,
    /// Slot -> offset of the record holding its latest acceptance.
    index: Runs<u64>,
}

impl AcceptorLog {
    /// Opens the log in `dir`, handing every write in it to `replay`, in order.
    pub fn open(dir: &Path, mut replay: impl FnMut(AcceptorWrite)) -> Result<AcceptorLog> {
        let mut index = Runs::new();
        let wal = Wal::open(&dir.join("acceptor.wal"), PREALLOCATE, |offset, record| {
            let write: AcceptorWrite = codec::decode_local(record)?;
            index_write(&mut index, &write, offset);
            replay(write);
            Ok(())
        })?;
        Ok(AcceptorLog { wal, index })
    }

    /// Adds a write to the next group (durable once that group's sync returns).
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
}

/// Points the slots of `write` (one Accept batch: consecutive slots) at its record.
fn index_write(index: &mut Runs<u64>, write: &AcceptorWrite, offset: u64) {
    for run in write.accepted.chunk_by(|a, b| b.0 == a.0 + 1) {
        index.insert(run[0].0, run[run.len() - 1].0 + 1, offset);
    }
}

// PROVISIONAL until the segmented-log branch lands: gives nothing back.
impl AcceptorLog {
    pub fn compact(&mut self, _below: Slot, _keep_from: u64) -> Result<u64> {
        Ok(0)
    }
}
