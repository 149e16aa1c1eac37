//! # Phase 2: accept, accepted, decide
//!
//! Lamport, "Paxos Made Simple" §3: once phase 1 is done, the leader runs only phase 2
//! for each new command, in the next free slot, and may have several slots in flight at
//! once. Van Renesse and Altinbuken, "Paxos Made Moderately Complex" (PMMC) §3, call
//! one slot's phase 2 a Commander: it sends `p2a` to the acceptors and, on a majority
//! of `p2b`, tells every replica the decision.
//!
//! Here a phase-2 call covers a **batch** of consecutive slots, and:
//!
//! - **Pipelining window.** At most `max_inflight` batches wait for a quorum at once. A
//!   partial batch leaves only when nothing is in flight (Nagle-like); while one is out,
//!   commands gather into the next, so only full batches pipeline. A batch is cut at
//!   `max_batch` commands or `max_batch_bytes` (it must fit a transport frame), but
//!   holds at least one command.
//! - **Thrifty choice of acceptors.** An `Accept` goes to this node and as many of the
//!   other acceptors as a majority needs, those whose `Accepted` completed a quorum most
//!   recently; any majority decides, so the choice is about speed, not safety. The list
//!   is forgotten every tick, so the first batch after a tick goes to every acceptor and
//!   measures again. A batch still undecided after `thrifty_ticks` goes to the acceptors
//!   it skipped.
//! - **Resends.** Every `retry_ticks` a batch goes again to every acceptor that has not
//!   answered; an in-flight batch is never abandoned while this node leads, because a
//!   hole would stall every state machine.
//! - **Deferred decides.** A decided batch goes to this node's learner at once (its
//!   clients wait on it). The other learners hear of it behind the next `Accept` (in the
//!   same frame, after it, so that an acceptor starts its flush before its learner
//!   applies), at the next tick, or at once if a command of the batch came through
//!   another node or a read from another node waits on it. Raft piggybacks its commit
//!   index on AppendEntries likewise.
//! - **Beacons.** Every `beacon_ticks` an empty `Decide` tells the other learners how
//!   far the log is learned here, so that one that lost a decision fetches it.
//!
//! **Left out.** Flow control by the acceptors (they take what comes), a separate
//! commit-index message (it rides on `Decide`), and PMMC's per-slot Commanders (one
//! quorum call per batch instead).

use super::reads::PendingRead;
use super::{Proposer, ProposerOutput, Shared, State};
use crate::messages::acceptor::CallId;
use crate::messages::{AcceptorRequest, Ballot, Command, LearnerMessage, NodeId, PeerMessage, Slot, Value};
use crate::roles::quorum::{QuorumCall, QuorumRule, QuorumStatus, majority};
use std::collections::BTreeMap;

/// The proposer's state while it leads a ballot (phase 1 done).
#[derive(Debug)]
pub(super) struct Leading {
    ballot: Ballot,
    /// The slot the next batch starts at.
    next_slot: Slot,
    inflight: BTreeMap<CallId, Inflight>,
    /// When the last beacon went out.
    last_beacon: u64,
    /// Reads waiting for the next batch to leave (see [`super::reads`]).
    pub(super) reads: Vec<PendingRead>,
}

/// A batch in phase 2.
#[derive(Debug)]
struct Inflight {
    first_slot: Slot,
    values: Vec<Value>,
    call: QuorumCall<()>,
    sent_at: u64,
    /// Acceptors a thrifty `Accept` skipped; they get it if no quorum comes in time.
    skipped: Vec<NodeId>,
    /// Reads that arrived before this batch left: its quorum confirms our leadership.
    reads: Vec<PendingRead>,
    /// A command of the batch came through another node, whose client waits for that
    /// node's learner: its decision must not be deferred.
    remote: bool,
}

impl Proposer {
    /// `Propose`: queues the command while this proposer has a ballot (phase 1 or 2)
    /// and room in its queue, and sends what the window allows.
    pub(super) fn propose(&mut self, from: NodeId, command: Command, out: &mut ProposerOutput) {
        if matches!(self.state, State::Idle) || self.shared.queue.len() >= self.shared.cfg.max_queue {
            // Not leading (or overloaded): the node that asked will retry.
            return;
        }
        self.shared.queue.push_back((from, command));
        if let State::Leading(l) = &mut self.state {
            l.maybe_send_accepts(&mut self.shared, out);
        }
    }

    /// `Accepted` from an acceptor: counted if it is about our ballot and a batch still
    /// in flight; a quorum decides the batch.
    pub(super) fn on_accepted(&mut self, from: NodeId, call: CallId, ballot: Ballot, out: &mut ProposerOutput) {
        if let State::Leading(l) = &mut self.state
            && ballot == l.ballot
        {
            l.on_accepted(&mut self.shared, from, call, out);
        }
    }
}

impl Leading {
    /// Leads `ballot` with every slot from `next_slot` free.
    pub(super) fn new(ballot: Ballot, next_slot: Slot, now: u64) -> Leading {
        Leading {
            ballot,
            next_slot,
            inflight: BTreeMap::new(),
            last_beacon: now,
            reads: Vec::new(),
        }
    }

    pub(super) fn ballot(&self) -> Ballot {
        self.ballot
    }

    pub(super) fn next_slot(&self) -> Slot {
        self.next_slot
    }

    pub(super) fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// The reads riding with each batch in flight, oldest batch first.
    pub(super) fn attached_reads(&mut self) -> impl Iterator<Item = &mut Vec<PendingRead>> {
        self.inflight.values_mut().map(|batch| &mut batch.reads)
    }

    /// Sends queued commands (or a barrier for waiting reads) while the window has room.
    pub(super) fn maybe_send_accepts(&mut self, s: &mut Shared, out: &mut ProposerOutput) {
        loop {
            // Nagle-like: a partial batch leaves only when nothing is in flight; while a
            // batch is out, commands gather into the next one. Only full batches pipeline.
            let nothing_to_send = s.queue.is_empty() && self.reads.is_empty();
            let (n, full) = s.next_batch_len();
            let wait_to_fill = !self.inflight.is_empty() && !full;
            if self.inflight.len() >= s.cfg.max_inflight || nothing_to_send || wait_to_fill {
                return;
            }
            // Queued commands, or else an empty batch: a barrier that confirms waiting reads.
            let id = s.id;
            let mut remote = false;
            let values = s
                .queue
                .drain(..n)
                .map(|(from, command)| {
                    remote |= from != id;
                    Value::Command(command)
                })
                .collect();
            self.send_accept(s, values, remote, out);
        }
    }

    /// Assigns the next slots to `values` and starts their phase 2; decisions deferred
    /// so far ride behind the `Accept`s (after them, so that an acceptor starts its
    /// flush before its learner applies).
    pub(super) fn send_accept(&mut self, s: &mut Shared, values: Vec<Value>, remote: bool, out: &mut ProposerOutput) {
        s.batches += 1;
        s.batched += values.len() as u64;
        let call_id = s.call_id();
        let first_slot = self.next_slot;
        self.next_slot += values.len() as u64;
        let rule = if s.bugs.proposer_decides_on_minority() {
            QuorumRule::First
        } else {
            QuorumRule::Majority
        };
        let call = QuorumCall::new(s.nodes.iter().copied(), rule, s.now, u64::MAX);
        // Thrifty: this node and as many of the fastest others as a majority needs,
        // once that many are known; every acceptor otherwise.
        let others = majority(call.targets().count()) - 1;
        let thrifty = s.cfg.thrifty && s.fastest.len() >= others;
        let fastest = &s.fastest[..others.min(s.fastest.len())];
        let (sent, skipped): (Vec<NodeId>, Vec<NodeId>) = call
            .targets()
            .partition(|n| !thrifty || *n == s.id || fastest.contains(n));
        for to in sent {
            out.send.push((to, accept(call_id, self.ballot, first_slot, &values)));
        }
        self.inflight.insert(
            call_id,
            Inflight {
                first_slot,
                values,
                call,
                sent_at: s.now,
                skipped,
                reads: std::mem::take(&mut self.reads),
                remote,
            },
        );
        s.flush_decides(out);
    }

    /// Counts `from`'s `Accepted` for batch `call`; on the quorum, `from` was among the
    /// fastest, the batch is decided and the window has room for the next.
    fn on_accepted(&mut self, s: &mut Shared, from: NodeId, call: CallId, out: &mut ProposerOutput) {
        let reached = self.inflight.get_mut(&call).is_some_and(|f| {
            f.call.status() == QuorumStatus::Pending && f.call.reply(from, ()) == QuorumStatus::Reached
        });
        if !reached {
            return; // Not yet a quorum, or a late or duplicate reply.
        }
        if from != s.id {
            s.fastest.retain(|&n| n != from);
            s.fastest.insert(0, from);
        }
        self.decide(s, call, out);
        self.maybe_send_accepts(s, out);
    }

    /// A batch reached its quorum: it is chosen. This node's learner hears at once (its
    /// clients wait on it); the other learners at once only if a client or a read waits
    /// on them, and otherwise with the next `Accept` or tick: under load a `Decide`
    /// shares its frame with an `Accept`, and a lone client's round trip carries no
    /// follower work.
    pub(super) fn decide(&mut self, s: &mut Shared, call: CallId, out: &mut ProposerOutput) {
        let Some(batch) = self.inflight.remove(&call) else {
            return;
        };
        let read_elsewhere = super::reads::answer_confirmed(&batch.reads, s.id, out);
        let waited_on = batch.remote || read_elsewhere;
        if !batch.values.is_empty() {
            let msg = LearnerMessage::Decide {
                first_slot: batch.first_slot,
                values: batch.values.clone(),
                commit: s.learned,
            };
            out.send.push((s.id, PeerMessage::Learner(msg)));
            match s.deferred.last_mut() {
                Some((first, values)) if *first + values.len() as u64 == batch.first_slot => {
                    values.extend(batch.values)
                }
                _ => s.deferred.push((batch.first_slot, batch.values)),
            }
        }
        if waited_on {
            s.flush_decides(out);
        }
    }

    /// A tick while leading: resend batches to silent or skipped acceptors; a beacon
    /// when one is due.
    pub(super) fn on_tick(&mut self, s: &Shared, out: &mut ProposerOutput) {
        let now = s.now;
        for (&call_id, batch) in self.inflight.iter_mut() {
            let resend: Vec<NodeId> = if now - batch.sent_at >= s.cfg.retry_ticks {
                // Lost on the way, or a slow acceptor: ask every silent one again.
                batch.sent_at = now;
                batch.skipped.clear();
                batch.call.missing().collect()
            } else if now - batch.sent_at >= s.cfg.thrifty_ticks {
                // A thrifty batch waited too long: ask the acceptors it skipped.
                std::mem::take(&mut batch.skipped)
            } else {
                Vec::new()
            };
            for to in resend {
                out.send
                    .push((to, accept(call_id, self.ballot, batch.first_slot, &batch.values)));
            }
        }
        if now - self.last_beacon >= s.cfg.beacon_ticks {
            self.last_beacon = now;
            for to in s.others() {
                let msg = LearnerMessage::Decide {
                    first_slot: s.learned,
                    values: Vec::new(),
                    commit: s.learned,
                };
                out.send.push((to, PeerMessage::Learner(msg)));
            }
        }
    }
}

impl Shared {
    /// The other nodes, in configuration order.
    fn others(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().copied().filter(move |&n| n != self.id)
    }

    /// How many queued commands the next batch takes (by count and by bytes), and
    /// whether that batch is full: `max_batch` commands, or one more would pass
    /// `max_batch_bytes`.
    fn next_batch_len(&self) -> (usize, bool) {
        let max = self.cfg.max_batch.max(1);
        let mut bytes = 0;
        for (i, (_, c)) in self.queue.iter().enumerate() {
            let size = c.wire_size();
            if i == max || (i > 0 && bytes + size > self.cfg.max_batch_bytes) {
                return (i, true);
            }
            bytes += size;
        }
        (self.queue.len(), self.queue.len() == max)
    }

    /// Tells the other nodes' learners every decision deferred so far.
    pub(super) fn flush_decides(&mut self, out: &mut ProposerOutput) {
        if self.deferred.is_empty() {
            return; // Every Accept and tick comes here: most find nothing to send.
        }
        let commit = self.learned;
        let others: Vec<NodeId> = self.others().collect();
        for (first_slot, mut values) in self.deferred.drain(..) {
            // A copy for all but the last learner, which takes the values themselves.
            for (i, &to) in others.iter().enumerate() {
                let values = if i + 1 == others.len() {
                    std::mem::take(&mut values)
                } else {
                    values.clone()
                };
                let msg = LearnerMessage::Decide {
                    first_slot,
                    values,
                    commit,
                };
                out.send.push((to, PeerMessage::Learner(msg)));
            }
        }
    }
}

/// An `Accept` of `values` from `first_slot` for batch `call` at `ballot`.
fn accept(call: CallId, ballot: Ballot, first_slot: Slot, values: &[Value]) -> PeerMessage {
    PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
        call,
        ballot,
        first_slot,
        values: values.to_vec(),
    })
}
