//! Messages of the learner: decisions from the leader's proposer, and catch-up between
//! learners: `Fetch`/`Fetched` for decided values a peer still has in its log, and, for
//! slots a peer has compacted away, its snapshot: `SnapshotOffer` (the answer to such a
//! `Fetch`), then `SnapshotRead`/`SnapshotChunk`, one bounded chunk at a time.

use super::{Slot, Value};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnerMessage {
    /// The proposer saw a quorum accept `values` in the slots from `first_slot`. `commit`
    /// says every slot below it is decided (an empty Decide is the leader's progress
    /// beacon, so a learner that missed decisions notices and fetches them).
    Decide {
        first_slot: Slot,
        values: Vec<Value>,
        commit: Slot,
    },
    /// A learner asks another for decided slots `from..to` it is missing.
    Fetch { from: Slot, to: Slot },
    /// The answer: the consecutive decided values from `first_slot` the sender has
    /// (possibly fewer than asked for, possibly none).
    Fetched { first_slot: Slot, values: Vec<Value> },
    /// The answer to a `Fetch` for slots the sender no longer keeps in its decided log:
    /// they are in its snapshot, which covers every slot below `at`.
    SnapshotOffer { at: Slot },
    /// Asks for the bytes of the sender's snapshot covering slots below `at`, from
    /// `offset` on (one chunk: the next is asked for once this one arrived).
    SnapshotRead { at: Slot, offset: u64 },
    /// Bytes `offset..offset + data.len()` of the snapshot covering slots below `at`,
    /// which is `total` bytes long; `crc` is the CRC-32 of `data`, `file_crc` that of the
    /// whole snapshot.
    SnapshotChunk {
        at: Slot,
        offset: u64,
        total: u64,
        file_crc: u32,
        crc: u32,
        #[serde(with = "crate::messages::codec::bytes")]
        data: Vec<u8>,
    },
}
