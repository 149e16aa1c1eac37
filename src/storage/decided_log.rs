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
