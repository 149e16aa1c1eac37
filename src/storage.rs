//! Durable state of a node, in one sled database under the node's data directory.
//!
//! | tree       | key                 | value                         | written by     |
//! |------------|---------------------|-------------------------------|----------------|
//! | `acceptor` | `p`                 | the promised ballot           | acceptor       |
//! | `acceptor` | `a` + slot (BE)     | (ballot, value) accepted      | acceptor       |
//! | `log`      | slot (8 bytes, BE)  | the decided value             | learner        |
//! | `meta`     | `ballot`            | highest ballot this node used | leader-elector |
//! | `meta`     | `snapshot`          | state machine snapshot        | state machine  |
//!
//! Writes land in sled's memory first; [`Storage::flush`] makes everything written so
//! far durable. The acceptor flushes before any reply leaves (one flush per batch);
//! the elector flushes before it uses a ballot; the state machine flushes its
//! snapshots. The learner's log does not flush itself: decided values are durable
//! at the acceptors anyway, and the next flush of the database covers them.

use crate::codec;
use crate::error::{Error, Result};
use crate::messages::{Ballot, Slot, Value};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone)]
pub struct Storage {
    db: sled::Db,
    acceptor: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
}

/// Per slot, the (ballot, value) an acceptor accepted.
pub type AcceptedMap = BTreeMap<Slot, (Ballot, Value)>;

/// What the acceptor must persist before answering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptorWrite {
    pub promised: Option<Ballot>,
    pub accepted: Vec<(Slot, Ballot, Value)>,
}

impl Storage {
    /// Opens (or creates) the database in `dir`. Fails if another instance holds it.
    pub fn open(dir: &Path) -> Result<Storage> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(64 << 20)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None)
            .open()
            .map_err(|e| Error::Storage(format!("cannot open {}: {e}", dir.display())))?;
        Ok(Storage {
            acceptor: db.open_tree("acceptor")?,
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Makes every write so far durable. Blocking: call it off the actor's thread.
    pub fn flush(&self) -> Result<usize> {
        Ok(self.db.flush()?)
    }

    pub fn load_acceptor(&self) -> Result<(Ballot, AcceptedMap)> {
        let promised = match self.acceptor.get(PROMISED)? {
            Some(b) => codec::decode(&b)?,
            None => Ballot::ZERO,
        };
        let mut accepted = BTreeMap::new();
        for item in self.acceptor.scan_prefix(ACCEPTED) {
            let (k, v) = item?;
            accepted.insert(slot_of(&k[ACCEPTED.len()..])?, codec::decode(&v)?);
        }
        Ok((promised, accepted))
    }

    pub fn write_acceptor(&self, w: &AcceptorWrite) -> Result<()> {
        let mut batch = sled::Batch::default();
        if let Some(b) = w.promised {
            batch.insert(PROMISED, codec::encode(&b)?);
        }
        for (slot, ballot, value) in &w.accepted {
            batch.insert(&accepted_key(*slot)[..], codec::encode(&(ballot, value))?);
        }
        Ok(self.acceptor.apply_batch(batch)?)
    }

    pub fn load_log(&self) -> Result<BTreeMap<Slot, Value>> {
        let mut log = BTreeMap::new();
        for item in self.log.iter() {
            let (k, v) = item?;
            log.insert(slot_of(&k)?, codec::decode(&v)?);
        }
        Ok(log)
    }

    pub fn append_log(&self, entries: &[(Slot, Value)]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (slot, value) in entries {
            batch.insert(&slot.to_be_bytes()[..], codec::encode(value)?);
        }
        Ok(self.log.apply_batch(batch)?)
    }

    pub fn load_ballot(&self) -> Result<Ballot> {
        match self.meta.get(b"ballot")? {
            Some(b) => Ok(codec::decode(&b)?),
            None => Ok(Ballot::ZERO),
        }
    }

    pub fn save_ballot(&self, b: Ballot) -> Result<()> {
        self.meta.insert(b"ballot", codec::encode(&b)?)?;
        Ok(())
    }

    pub fn load_snapshot(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(b"snapshot")?.map(|v| v.to_vec()))
    }

    pub fn save_snapshot(&self, bytes: &[u8]) -> Result<()> {
        self.meta.insert(b"snapshot", bytes)?;
        Ok(())
    }
}

const PROMISED: &[u8] = b"p";
const ACCEPTED: &[u8] = b"a";

fn accepted_key(slot: Slot) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = ACCEPTED[0];
    key[1..].copy_from_slice(&slot.to_be_bytes());
    key
}

fn slot_of(key: &[u8]) -> Result<Slot> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| Error::Storage(format!("bad slot key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Command, RequestId};

    #[test]
    fn storage_acceptor_state_round_trips_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = Value::Command(Command {
            id: RequestId { client: 1, seq: 1 },
            ack_below: 0,
            payload: vec![7],
        });
        {
            let s = Storage::open(dir.path()).expect("open");
            let write = AcceptorWrite {
                promised: Some(Ballot::new(3, 2)),
                accepted: vec![
                    (0, Ballot::new(3, 2), value.clone()),
                    (9, Ballot::new(1, 1), Value::Noop),
                ],
            };
            s.write_acceptor(&write).expect("write");
            s.append_log(&[(0, value.clone())]).expect("log");
            s.save_ballot(Ballot::new(4, 2)).expect("ballot");
            s.flush().expect("flush");
        }
        let s = Storage::open(dir.path()).expect("reopen");
        let (promised, accepted) = s.load_acceptor().expect("load");
        assert_eq!(promised, Ballot::new(3, 2));
        assert_eq!(accepted.get(&0), Some(&(Ballot::new(3, 2), value.clone())));
        assert_eq!(accepted.get(&9), Some(&(Ballot::new(1, 1), Value::Noop)));
        assert_eq!(accepted.len(), 2, "the promise key is not mistaken for a slot");
        assert_eq!(s.load_log().expect("log").get(&0), Some(&value));
        assert_eq!(s.load_ballot().expect("ballot"), Ballot::new(4, 2));
    }
}
