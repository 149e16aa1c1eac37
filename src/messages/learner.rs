//! Messages of the learner: decisions from the leader's proposer, and catch-up between
//! learners (`Fetch`/`Fetched`).

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
}
