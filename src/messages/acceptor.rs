//! Messages of the acceptor: phase 1 (`Prepare`/`Promise`, then `Pull`/`Pulled` for the
//! values a new leader must propose again: selective log synchronisation) and phase 2
//! (`Accept`/`Accepted`), each answered by `Rejected` when a higher ballot was promised.

use super::{Ballot, Slot, Value};
use serde::{Deserialize, Serialize};

/// Names one quorum call of a proposer, so replies match the request they answer.
pub type CallId = u64;

/// A proposer asks the acceptors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptorRequest {
    /// Phase 1a: promise to ignore ballots below `ballot`, and report which slots from
    /// `from_slot` on you accepted values in, and at which ballots (one Prepare covers
    /// every slot: Multi-Paxos).
    Prepare {
        call: CallId,
        ballot: Ballot,
        from_slot: Slot,
    },
    /// Phase 1, selective synchronisation: under `ballot`, which you promised, send the
    /// values you accepted in slots `first..end`, each with its ballot.
    Pull {
        call: CallId,
        ballot: Ballot,
        first: Slot,
        end: Slot,
    },
    /// Phase 2a: accept `values` in the consecutive slots from `first_slot`.
    Accept {
        call: CallId,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<Value>,
    },
}

/// Consecutive slots `first..end` whose values an acceptor accepted at one `ballot` (what
/// a `Promise` reports instead of the values themselves).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedRun {
    pub first: Slot,
    pub end: Slot,
    pub ballot: Ballot,
}

impl AcceptedRun {
    /// Roughly the most bytes one run takes in a message (three varints and a ballot).
    pub const WIRE_BYTES: usize = 40;
}

/// An acceptor answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptorReply {
    /// Phase 1b: promised `ballot`. Every slot below `decided_below` is decided (this
    /// acceptor's node holds a durable snapshot of them) and no longer reported;
    /// `accepted` lists, from the requested slot (or `decided_below`, if higher) on, the
    /// runs of slots in which a value was accepted, with the ballot it was accepted at.
    /// If they would not fit one message, the list stops early and `more_from` says
    /// where to ask again (another `Prepare` of the same ballot from that slot).
    Promise {
        call: CallId,
        ballot: Ballot,
        decided_below: Slot,
        accepted: Vec<AcceptedRun>,
        more_from: Option<Slot>,
    },
    /// Answer to a `Pull`: the values accepted in the consecutive slots from
    /// `first_slot`, each with the ballot it was accepted at. It stops early at a slot
    /// this acceptor holds no value in (`more_from: None`), or where a message would be
    /// full (`more_from`: ask again from there).
    Pulled {
        call: CallId,
        ballot: Ballot,
        first_slot: Slot,
        values: Vec<(Ballot, Value)>,
        more_from: Option<Slot>,
    },
    /// Phase 2b: accepted the Accept of this call (its slots and values) at `ballot`.
    Accepted {
        call: CallId,
        ballot: Ballot,
        first_slot: Slot,
        count: u64,
    },
    /// The request's ballot is below `promised` (or, for a `Pull`, is not the promised
    /// one): the proposer has been preempted.
    Rejected {
        call: CallId,
        ballot: Ballot,
        promised: Ballot,
    },
}
