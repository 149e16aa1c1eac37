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
        self.wal
            .truncate_below(lowest.map_or(keep_from, |lowest| lowest.min(keep_from)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Ballot, Command, RequestId};

    fn value(slot: Slot) -> Value {
        Value::Command(Command {
            id: RequestId { client: 1, seq: slot },
            ack_below: 0,
            payload: slot.to_le_bytes().to_vec(),
        })
    }

    /// Accepts `slots` with ballot `(round, 1)`.
    fn accept(slots: std::ops::Range<Slot>, round: u64) -> AcceptorWrite {
        AcceptorWrite {
            promised: None,
            accepted: slots.map(|s| (s, Ballot::new(round, 1), value(s))).collect(),
        }
    }

    fn promise(round: u64) -> AcceptorWrite {
        AcceptorWrite {
            promised: Some(Ballot::new(round, 1)),
            accepted: Vec::new(),
        }
    }

    /// Appends `write` and writes its group; returns its offset.
    fn write(log: &mut AcceptorLog, write: &AcceptorWrite) -> u64 {
        let offset = log.append(write).expect("append");
        log.take_pending().write_and_sync().expect("write");
        offset
    }

    /// Accepts `slots` ten at a time, a group each (written, not synced: nothing here
    /// needs it).
    fn accept_in_batches(log: &mut AcceptorLog, slots: std::ops::Range<Slot>, round: u64) {
        for first in slots.clone().step_by(10) {
            log.append(&accept(first..(first + 10).min(slots.end), round))
                .expect("append");
            log.take_pending().write().expect("write");
        }
    }

    /// Every write the log replays on opening, with its segments of `segment_size`.
    fn replayed(dir: &Path, segment_size: u64) -> (AcceptorLog, Vec<AcceptorWrite>) {
        let mut writes = Vec::new();
        let log = AcceptorLog::open_with_segment_size(dir, segment_size, |w| writes.push(w)).expect("open");
        (log, writes)
    }

    /// The latest ballot accepted for `slot` in `writes`.
    fn latest(writes: &[AcceptorWrite], slot: Slot) -> Option<Ballot> {
        let accepted = writes.iter().flat_map(|w| &w.accepted);
        accepted.filter(|(s, _, _)| *s == slot).map(|(_, b, _)| *b).next_back()
    }

    #[test]
    fn acceptor_log_compact_keeps_a_slot_whose_latest_acceptance_is_in_an_old_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        const FAR: Slot = 1_000_000;
        let (mut log, _) = replayed(dir.path(), 4096);
        write(&mut log, &accept(FAR..FAR + 1, 1));
        accept_in_batches(&mut log, 0..2000, 1);
        let keep_from = write(&mut log, &promise(2));
        let before = log.disk_bytes();
        assert!(log.wal.bases().len() > 5, "{:?}", log.wal.bases());

        // Slot FAR is not compacted, and its acceptance is in the first segment: it stays.
        assert_eq!(log.compact(2000, keep_from).expect("compact"), 0);
        assert_eq!(log.read(FAR, &mut None).expect("read"), value(FAR));
        assert!(log.read(5, &mut None).is_err(), "slots below the bound are forgotten");
        drop(log);
        let (mut log, writes) = replayed(dir.path(), 4096);
        assert_eq!(
            latest(&writes, FAR),
            Some(Ballot::new(1, 1)),
            "replayed after a restart"
        );

        // Accepted again, later: its old record is no longer needed.
        write(&mut log, &accept(FAR..FAR + 1, 3));
        let keep_from = write(&mut log, &promise(3));
        let freed = log.compact(2000, keep_from).expect("compact");
        assert!(freed > 0 && log.disk_bytes() < before, "freed {freed} of {before}");
        assert_eq!(log.read(FAR, &mut None).expect("read"), value(FAR));
        drop(log);
        let (_, writes) = replayed(dir.path(), 4096);
        assert_eq!(latest(&writes, FAR), Some(Ballot::new(3, 1)));
        assert_eq!(
            writes.iter().filter_map(|w| w.promised).max(),
            Some(Ballot::new(3, 1)),
            "the promise survives"
        );
    }

    #[test]
    fn acceptor_log_compact_keeps_the_record_at_keep_from() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = replayed(dir.path(), 4096);
        accept_in_batches(&mut log, 0..500, 1);
        let keep_from = write(&mut log, &promise(7));
        accept_in_batches(&mut log, 500..1000, 1);
        // Every slot compacted: only the promise record bounds what goes.
        log.compact(1000, keep_from).expect("compact");
        let first = log.wal.first_offset();
        assert!(
            first > 0 && first <= keep_from,
            "the segment of {keep_from} kept, from {first}"
        );
        drop(log);
        let (_, writes) = replayed(dir.path(), 4096);
        assert_eq!(writes.iter().filter_map(|w| w.promised).max(), Some(Ballot::new(7, 1)));
        assert_eq!(latest(&writes, 999), Some(Ballot::new(1, 1)), "later records kept");
    }

    #[test]
    fn acceptor_log_compaction_bounds_disk_and_index_over_100k_slots() {
        let dir = tempfile::tempdir().expect("tempdir");
        const SEGMENT: u64 = 64 << 10;
        let (mut log, _) = replayed(dir.path(), SEGMENT);
        let (mut written, mut freed) = (0, 0);
        for round in 0..10 {
            let slots = round * 10_000..(round + 1) * 10_000;
            let before = log.disk_bytes();
            accept_in_batches(&mut log, slots.clone(), 1);
            written += log.disk_bytes() - before;
            let keep_from = write(&mut log, &promise(round + 1));
            // The latest 1000 slots are not in a snapshot yet.
            freed += log.compact(slots.end - 1000, keep_from).expect("compact");
            let entries = log.index.ranges_from(0).count();
            assert!(entries <= 100, "one entry per batch of the 1000 slots left: {entries}");
            assert!(
                log.disk_bytes() <= 3 * SEGMENT,
                "a few segments left: {}",
                log.disk_bytes()
            );
        }
        assert!(freed > 9 * written / 10, "freed {freed} of {written}");
        assert_eq!(log.read(99_999, &mut None).expect("read"), value(99_999));
    }
}
