//! Messages of the acceptor: phase 1 (`Prepare`/`Promise`) and phase 2
//! (`Accept`/`Accepted`), each answered by `Rejected` when a higher ballot was promised.

use super::{Ballot, Slot, Value};
use serde::{Deserialize, Serialize};

/// Names one quorum call of a proposer, so replies match the request they answer.
pub type CallId = u64;

/// A proposer asks the acceptors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptorRequest {
    /// Phase 1a: promise to ignore ballots below `ballot`, and report what you accepted
    /// in slots `from_slot..` (one Prepare covers every slot: Multi-Paxos).
    Prepare {
        call: CallId,
        ballot: Ballot,
        from_slot: Slot,
    },
    /// Phase 2a: accept `values` in the consecutive slots from `first_slot`.
    Accept {
        call: CallId,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
    },
}

/// What one slot's acceptor had accepted when it promised (a "pvalue" in PMMC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PValue {
    pub slot: Slot,
    pub ballot: Ballot,
    pub value: Value,
}

/// An acceptor answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptorReply {
    /// Phase 1b: promised `ballot`; `accepted` lists the slots from the requested one on
    /// in which a value was accepted, with the ballot it was accepted at. If they would
    /// not fit one message, the list stops early and `more_from` says where to ask again
    /// (another `Prepare` of the same ballot from that slot).
    Promise {
        call: CallId,
        ballot: Ballot,
        accepted: Vec<PValue>,
        more_from: Option<Slot>,
    },
    /// Phase 2b: accepted the Accept of this call (its slots and values) at `ballot`.
    Accepted {
        call: CallId,
        ballot: Ballot,
        first_slot: Slot,
        count: u64,
    },
    /// The request's ballot is below `promised`: the proposer has been preempted.
    Rejected {
        call: CallId,
        ballot: Ballot,
        promised: Ballot,
    },
}
