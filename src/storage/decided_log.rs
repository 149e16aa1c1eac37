//! `decided.wal`: the learner's decided values, in segments (see [`super::wal`]).
//!
//! **Compaction.** Once a durable snapshot covers the slots below `below`, the log need
//! not serve them: [`DecidedLog::compact`] forgets the records that hold only such
//! slots and deletes the segments wholly below the first record it keeps (by offset:
//! values fetched late may be appended after higher slots). A record that holds slots
//! on both sides of `below` is kept whole, so [`DecidedLog::first_slot`] may lie below
//! `below`.

use super::wal::{SEGMENT_SIZE, SyncHandle, Wal};
use super::{DECIDED, record_at};
use crate::error::{Error, Result};
use crate::messages::codec;
use crate::messages::{Slot, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The learner's log of decided values: one record per run of consecutive slots, so
/// no two records hold the same slot; an index in memory finds a slot's record.
pub struct DecidedLog {
    wal: Wal,
    /// First slot of each record -> (last slot, offset of the record).
    index: BTreeMap<Slot, (Slot, u64)>,
    /// A write failed: take nothing more.
    broken: bool,
}

impl DecidedLog {
    /// Opens the log in `dir` (segments of [`SEGMENT_SIZE`]); returns it with the values
    /// of slots from `from` on (the ones below are in the state machine's snapshot
    /// already).
    pub fn open(dir: &Path, from: Slot) -> Result<(DecidedLog, BTreeMap<Slot, Value>)> {
        DecidedLog::open_with_segment_size(dir, from, SEGMENT_SIZE)
    }

    /// [`DecidedLog::open`], starting a new segment every `segment_size` bytes.
    pub fn open_with_segment_size(
        dir: &Path,
        from: Slot,
        segment_size: u64,
    ) -> Result<(DecidedLog, BTreeMap<Slot, Value>)> {
        let (mut log, mut index) = (BTreeMap::new(), BTreeMap::new());
        let wal = Wal::open(dir, DECIDED, segment_size, 0, |offset, record| {
            let (first, values): (Slot, Vec<Value>) = codec::decode_local(record)?;
            if let Some(last) = (first..).take(values.len()).last() {
                index.insert(first, (last, offset));
            }
            log.extend((first..).zip(values).filter(|(slot, _)| *slot >= from));
            Ok(())
        })?;
        Ok((
            DecidedLog {
                wal,
                index,
                broken: false,
            },
            log,
        ))
    }

    /// A handle that makes everything appended so far durable, from another thread (in
    /// every segment written since the last sync).
    pub fn sync_handle(&self) -> SyncHandle {
        self.wal.sync_handle()
    }

    /// Writes newly learned values (not synced: see the module docs).
    /// After a failed write the log takes nothing more (a hole would hide every later
    /// record on the next start); the values stay decided at the acceptors.
    pub fn append(&mut self, entries: &[(Slot, Value)]) -> Result<()> {
        if self.broken {
            return Err(Error::Storage("decided log: an earlier write failed".into()));
        }
        let mut runs = Vec::new();
        for run in entries.chunk_by(|a, b| b.0 == a.0 + 1) {
            let (first, last) = (run[0].0, run[run.len() - 1].0);
            let values: Vec<&Value> = run.iter().map(|(_, v)| v).collect();
            let offset = self
                .wal
                .append_with(|buf| codec::encode_into(&(first, values), buf).map(drop).map_err(Into::into))?;
            runs.push((first, last, offset));
        }
        if let Err(e) = self.wal.take_pending().write() {
            self.broken = true;
            return Err(e);
        }
        for (first, last, offset) in runs {
            self.index.insert(first, (last, offset));
        }
        Ok(())
    }

    /// The decided value of `slot`, if this log holds it, through `cache` (see
    /// `record_at`).
    pub fn get(&self, slot: Slot, cache: &mut Option<(u64, (Slot, Vec<Value>))>) -> Result<Option<Value>> {
        let Some((&first, &(last, offset))) = self.index.range(..=slot).next_back() else {
            return Ok(None);
        };
        if slot > last {
            return Ok(None);
        }
        let (_, values) = record_at(&self.wal, offset, cache)?;
        Ok(values.get((slot - first) as usize).cloned())
    }

    /// Forgets the records holding only slots below `below` (in a durable snapshot) and
    /// deletes the segments wholly below the first record kept; returns the bytes freed.
    pub fn compact(&mut self, below: Slot) -> Result<u64> {
        let above = self.index.split_off(&below);
        let lower = std::mem::replace(&mut self.index, above);
        // Records starting below `below` but reaching it stay whole.
        self.index
            .extend(lower.into_iter().filter(|(_, (last, _))| *last >= below));
        // Nothing kept: every segment but the one written to can go.
        let first_kept = self.index.values().map(|(_, offset)| *offset).min();
        self.wal.truncate_below(first_kept.unwrap_or(u64::MAX))
    }

    /// The lowest slot this log can still serve (`None`: it holds none).
    pub fn first_slot(&self) -> Option<Slot> {
        self.index.keys().next().copied()
    }

    /// The lowest slot from which this log holds every slot up to `end` (exclusive):
    /// `end` itself if it does not hold `end - 1`. Below it a node serves its snapshot,
    /// not its log (a node that installed a received snapshot holds older records, but
    /// not the slots between them and the snapshot).
    pub fn held_through(&self, end: Slot) -> Slot {
        let mut low = end;
        for (&first, &(last, _)) in self.index.range(..end).rev() {
            if last.saturating_add(1) < low {
                break;
            }
            low = low.min(first);
        }
        low
    }

    /// Bytes of the log's files on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.wal.disk_bytes()
    }

    /// Every decided value on disk (for tests that compare nodes slot by slot).
    pub fn read_all(&self) -> Result<BTreeMap<Slot, Value>> {
        let mut log = BTreeMap::new();
        for (&first, &(_, offset)) in &self.index {
            let (_, values): (Slot, Vec<Value>) = codec::decode_local(&self.wal.read_at(offset)?)?;
            log.extend((first..).zip(values));
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Command, RequestId};

    const SEGMENT: u64 = 1024;

    fn value(slot: Slot) -> Value {
        Value::Command(crate::messages::Command {
            id: crate::messages::RequestId { client: 2, seq: slot },
            ack_below: 0,
            payload: slot.to_le_bytes().to_vec(),
        })
    }

    /// Appends `slots` as runs of ten, one write each.
    fn append_runs(log: &mut DecidedLog, slots: std::ops::Range<Slot>) {
        for first in slots.clone().step_by(10) {
            let run: Vec<_> = (first..(first + 10).min(slots.end)).map(|s| (s, value(s))).collect();
            log.append(&run).expect("append");
        }
    }

    fn open(dir: &Path, from: Slot) -> (DecidedLog, BTreeMap<Slot, Value>) {
        DecidedLog::open_with_segment_size(dir, from, SEGMENT).expect("open")
    }

    #[test]
    fn decided_log_compact_frees_segments_below_the_first_kept_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path(), 0);
        append_runs(&mut log, 0..2000);
        assert_eq!(log.first_slot(), Some(0));
        let before = log.disk_bytes();
        // The run 1000..1010 holds slots on both sides of the bound: kept whole.
        let freed = log.compact(1005).expect("compact");
        assert!(freed > 0, "freed");
        assert_eq!(log.disk_bytes(), before - freed);
        assert_eq!(log.first_slot(), Some(1000));
        assert_eq!(log.index.len(), 100, "one entry per run kept");
        assert_eq!(log.get(999, &mut None).expect("get"), None, "forgotten");
        assert_eq!(log.get(1000, &mut None).expect("get"), Some(value(1000)));
        assert_eq!(log.get(1999, &mut None).expect("get"), Some(value(1999)));
        let sync = log.sync_handle();
        sync.sync().expect("sync");
        drop((log, sync));

        let (log, values) = open(dir.path(), 1005);
        assert_eq!(
            values.keys().copied().collect::<Vec<_>>(),
            (1005..2000).collect::<Vec<_>>()
        );
        let first = log.first_slot().expect("some");
        assert!((1..=1000).contains(&first), "the kept segments only: from {first}");
        assert_eq!(log.read_all().expect("read").len() as u64, 2000 - first);
    }

    #[test]
    fn decided_log_compact_keeps_a_record_appended_late_in_an_old_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path(), 0);
        // Slots above the gap first (decided while 0..1000 were being fetched).
        append_runs(&mut log, 1000..1100);
        append_runs(&mut log, 0..1000);
        assert_eq!(
            log.compact(500).expect("compact"),
            0,
            "1000..1100 pin the first segment"
        );
        assert_eq!(log.get(1000, &mut None).expect("get"), Some(value(1000)));
        assert_eq!(log.first_slot(), Some(500));
        assert_eq!(log.get(499, &mut None).expect("get"), None);
    }

    #[test]
    fn decided_log_compact_of_every_slot_keeps_the_segment_written_to() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = open(dir.path(), 0);
        append_runs(&mut log, 0..1000);
        log.compact(Slot::MAX).expect("compact");
        assert_eq!(log.first_slot(), None);
        assert!(
            log.disk_bytes() <= SEGMENT + 200,
            "one segment left: {}",
            log.disk_bytes()
        );
        append_runs(&mut log, 1000..1010);
        assert_eq!(log.first_slot(), Some(1000));
        drop(log);
        let (_, values) = open(dir.path(), 1000);
        assert_eq!(values.len(), 10);
    }

    #[test]
    fn decided_log_held_through_stops_at_a_gap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = DecidedLog::open(dir.path(), 0).expect("open");
        let v = |n: u64| {
            (
                n,
                Value::Command(Command {
                    id: RequestId { client: 1, seq: n },
                    ack_below: 0,
                    payload: vec![],
                }),
            )
        };
        log.append(&[v(0), v(1), v(2)]).expect("append");
        log.append(&[v(3), v(4)]).expect("append");
        // A received snapshot covered 5..20: slots 20 and 21 follow it.
        log.append(&[v(20), v(21)]).expect("append");
        assert_eq!(log.held_through(5), 0, "0..5 in two records");
        assert_eq!(log.held_through(3), 0);
        assert_eq!(log.held_through(20), 20, "nothing below 20 up to it: a gap");
        assert_eq!(log.held_through(22), 20);
        assert_eq!(log.held_through(30), 30, "it does not hold 29");
    }
}
