//! # Linearizable reads: read index
//!
//! A read must see every write that completed before it began, yet need not go through
//! the log. Paxos itself has nothing to say on reads: Lamport's "Paxos Made Simple" §3
//! and van Renesse and Altinbuken's "Paxos Made Moderately Complex" §3 both treat a read
//! as one more command, decided in a slot like any other. This is the read index of the
//! Raft dissertation (§6.4) instead, batched into the phase-2 stream ([`super::phase2`]):
//!
//! 1. A node that takes a read sends `ReadIndex` to the leader's proposer. The leader
//!    notes its next free slot as the read's **index**: every write completed before the
//!    read began lies below it.
//! 2. The read waits for the next `Accept` batch to leave (an empty batch, which costs the
//!    acceptors no flush, if no commands wait) and rides with it. A batch already in
//!    flight does not count: its quorum may have been gathered before the read arrived.
//! 3. When that batch gathers a majority, no higher ballot had been promised by a
//!    majority after the read arrived, so this node was still the leader when the read
//!    began. The proposer answers `ReadIndexReply { index: Some(index) }`; the asking
//!    node's state machine serves the read once it has applied every slot below it.
//!
//! A proposer that does not lead, or stops leading (deposed, preempted, a new ballot, a
//! phase 1 that timed out), answers every read waiting on it with
//! `ReadIndexReply { index: None }`: the asking node asks the leader again at once
//! instead of waiting out its retry interval. A deposed leader cannot gather the
//! majority of step 3, so it never serves a stale read.
//!
//! **Left out.** Leader leases (reads without any round trip, at the price of trusting
//! clocks), and serving reads on the leader without the asking node's state machine.

use super::phase2::Leading;
use super::{Proposer, ProposerOutput, State};
use crate::messages::{NodeId, PeerMessage, RequestId, Slot, StateMachineMessage};

/// A linearizable read waiting for leadership to be confirmed (read index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PendingRead {
    from: NodeId,
    id: RequestId,
    /// Every slot below this was assigned when the read arrived.
    index: Slot,
}

impl Proposer {
    /// `ReadIndex` from `from`: a leader notes the read and sends a barrier if the
    /// window allows; any other proposer tells the asker to ask again.
    pub(super) fn read_index(&mut self, from: NodeId, id: RequestId, out: &mut ProposerOutput) {
        let State::Leading(l) = &mut self.state else {
            return reply(from, id, None, out);
        };
        let index = l.next_slot();
        if self.shared.bugs.proposer_reads_without_quorum() {
            // Planted bug: trust our leadership without a quorum's word.
            return reply(from, id, Some(index), out);
        }
        l.reads.push(PendingRead { from, id, index });
        l.maybe_send_accepts(&mut self.shared, out);
    }
}

impl Leading {
    /// This proposer stops leading: every read waiting on it, attached to a batch in
    /// flight (oldest first) or waiting for the next batch, is told to ask again.
    pub(super) fn answer_reads_not_leader(&mut self, out: &mut ProposerOutput) {
        for reads in self.attached_reads() {
            for read in reads.drain(..) {
                reply(read.from, read.id, None, out);
            }
        }
        for read in self.reads.drain(..) {
            reply(read.from, read.id, None, out);
        }
    }
}

/// A batch carrying `reads` was decided: leadership is confirmed for each of them.
/// Returns whether a read came from a node other than `me` (which then waits on its own
/// learner to reach the index, so the decision must not be deferred).
pub(super) fn answer_confirmed(reads: &[PendingRead], me: NodeId, out: &mut ProposerOutput) -> bool {
    for read in reads {
        reply(read.from, read.id, Some(read.index), out);
    }
    reads.iter().any(|r| r.from != me)
}

/// Sends `ReadIndexReply { id, index }` to the state machine of `to`.
fn reply(to: NodeId, id: RequestId, index: Option<Slot>, out: &mut ProposerOutput) {
    let msg = StateMachineMessage::ReadIndexReply { id, index };
    out.send.push((to, PeerMessage::StateMachine(msg)));
}
