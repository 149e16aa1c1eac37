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
//! - **The stop rule** (rule 1 of `crate::messages::membership`). A StopSign of this
//!   configuration ends its batch (such a batch counts as full: it may pipeline), and
//!   once it has its slot `s` the ballot assigns nothing above `s`: the batches in flight
//!   are resent and decided as ever, queued commands wait for the next configuration,
//!   and reads arriving now wait with no barrier (a barrier's quorum of this
//!   configuration could confirm a read index of `s + 1` while the next configuration
//!   already decided writes there). They are told to ask again when the proposer leaves
//!   the ballot (`Reconfigure`, `StepDown`). Reads that rode with a batch up to the
//!   StopSign's are answered as usual: every later write completes after the StopSign
//!   is chosen.
//!
//! **Left out.** Flow control by the acceptors (they take what comes), a separate
//! commit-index message (it rides on `Decide`), and PMMC's per-slot Commanders (one
//! quorum call per batch instead).

use super::reads::PendingRead;
use super::{Proposer, ProposerOutput, Shared, State};
use crate::messages::acceptor::CallId;
use crate::messages::{AcceptorRequest, Ballot, LearnerMessage, NodeId, PeerMessage, Slot, Value};
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
    /// The StopSign this ballot assigned (or recovered): nothing above its slot.
    stop: Option<Stop>,
}

/// A StopSign this ballot proposed: the stop rule's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stop {
    /// Its slot: this ballot assigns no slot above it.
    pub(super) at: Slot,
    /// The next configuration's members (where the planted
    /// `proposer_starts_next_config_early` sends what follows).
    pub(super) members: Vec<NodeId>,
}

impl Stop {
    /// The record of `value` assigned to slot `at`, if it is a StopSign.
    pub(super) fn of(value: &Value, at: Slot) -> Option<Stop> {
        match value {
            Value::StopSign(stop) => Some(Stop {
                at,
                members: stop.members.keys().copied().collect(),
            }),
            _ => None,
        }
    }
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
    /// `Propose` or `ProposeStop`: queues the value while this proposer has a ballot
    /// (phase 1 or 2) and room in its queue, and sends what the window and the stop
    /// rule allow.
    pub(super) fn propose(&mut self, from: NodeId, value: Value, out: &mut ProposerOutput) {
        if matches!(self.state, State::Idle) || self.shared.queue.len() >= self.shared.cfg.max_queue {
            // Not leading (or overloaded): the node that asked will retry.
            return;
        }
        self.shared.queue.push_back((from, value));
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
            stop: None,
        }
    }

    /// The slot of the StopSign this ballot assigned, if any.
    pub(super) fn stopped_at(&self) -> Option<Slot> {
        self.stop.as_ref().map(|stop| stop.at)
    }

    /// Phase 1 recovered a StopSign and proposed it again as its last value: stopped.
    pub(super) fn stop_at(&mut self, stop: Stop) {
        assert_eq!(
            stop.at + 1,
            self.next_slot,
            "a recovered StopSign is the last slot its ballot assigns"
        );
        self.stop = Some(stop);
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

    /// Sends queued values (or a barrier for waiting reads) while the window has room
    /// and no StopSign was assigned (the stop rule: nothing above it; queued values and
    /// new reads wait for the next configuration).
    pub(super) fn maybe_send_accepts(&mut self, s: &mut Shared, out: &mut ProposerOutput) {
        // Planted bug: what follows a StopSign goes to the next configuration's members
        // before it is decided.
        let early = s.bugs.proposer_starts_next_config_early();
        loop {
            if self.stop.is_some() && !early {
                // Stopped. A read barrier is held back too: past the StopSign the next
                // configuration may decide writes this ballot's quorum never sees.
                return;
            }
            // Nagle-like: a partial batch leaves only when nothing is in flight; while a
            // batch is out, commands gather into the next one. Only full batches pipeline.
            let nothing_to_send = s.queue.is_empty() && self.reads.is_empty();
            let (n, full) = s.next_batch_len();
            let wait_to_fill = !self.inflight.is_empty() && !full;
            if self.inflight.len() >= s.cfg.max_inflight || nothing_to_send || wait_to_fill {
                return;
            }
            // Queued values, or else an empty batch: a barrier that confirms waiting reads.
            let id = s.id;
            let mut remote = false;
            let values: Vec<Value> = s
                .queue
                .drain(..n)
                .map(|(from, value)| {
                    remote |= from != id;
                    value
                })
                .collect();
            // The stop rule: a StopSign ends its batch (`next_batch_len`) and this ballot.
            let stop = values
                .last()
                .filter(|last| s.stops(last))
                .and_then(|last| Stop::of(last, self.next_slot + values.len() as u64 - 1));
            self.send_accept(s, values, remote, out);
            if stop.is_some() && self.stop.is_none() {
                self.stop = stop;
            }
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
        // Planted bug: past its StopSign, the next configuration's members decide
        // (before the StopSign is decided, and at this configuration's ballot).
        let nodes = match &self.stop {
            Some(stop) if s.bugs.proposer_starts_next_config_early() && !stop.members.is_empty() => &stop.members,
            _ => &s.nodes,
        };
        let call = QuorumCall::new(nodes.iter().copied(), rule, s.now, u64::MAX);
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

    /// Whether `value` stops this proposer's slot numbering: a StopSign of the
    /// configuration it proposes in (one naming another configuration is decided as a
    /// no-op: the state machine refuses it, so it is a value like any other). Planted
    /// bug: none does.
    pub(super) fn stops(&self, value: &Value) -> bool {
        let stop_sign = matches!(value, Value::StopSign(stop) if stop.prev == self.config);
        stop_sign && !self.bugs.proposer_proposes_past_stop_sign()
    }

    /// How many queued values the next batch takes (by count and by bytes), and
    /// whether that batch is full: `max_batch` values, or one more would pass
    /// `max_batch_bytes`, or it ends with a StopSign that stops this proposer, after
    /// which nothing may join it.
    fn next_batch_len(&self) -> (usize, bool) {
        let max = self.cfg.max_batch.max(1);
        let mut bytes = 0;
        for (i, (_, value)) in self.queue.iter().enumerate() {
            let size = value.wire_size();
            if i == max || (i > 0 && bytes + size > self.cfg.max_batch_bytes) {
                return (i, true);
            }
            if self.stops(value) {
                return (i + 1, true);
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
