//! # Phase 1: prepare, promises, recovery, becoming leader
//!
//! Lamport, "Paxos Made Simple" §3: a new leader runs phase 1 once for all the slots it
//! has not learned, "for infinitely many instances" with one message, and then proposes
//! in each slot the value a promise forced on it, filling the gaps with no-ops (the
//! "no-op" commands of §3). Van Renesse and Altinbuken, "Paxos Made Moderately Complex"
//! (PMMC) §3, call this the Scout: it adopts the ballot once a majority of acceptors
//! promised, together with every pvalue they reported.
//!
//! 1. **Prepare.** `Lead(ballot)` starts a quorum call of `Prepare { ballot, from_slot }`
//!    to every acceptor, `from_slot` being the first slot this node has not learned.
//!    Silent acceptors are asked again every `retry_ticks`; after
//!    `prepare_timeout_ticks` without a majority the proposer gives up and tells the
//!    elector (`PrepareTimedOut`), which tries again later.
//! 2. **Promises, whole or in parts.** A report too large for one message stops with
//!    `more_from`: the proposer keeps what came and asks that acceptor again from there
//!    under the same ballot. An acceptor counts toward the majority only once its report
//!    is whole. A report naming a slot more than [`MAX_RECOVERY_SLOTS`] past `from_slot`
//!    is refused as corrupt.
//! 3. **Recovery.** Once a majority promised, each reported slot gets the value with the
//!    highest ballot reported for it, each hole below the highest reported slot a no-op,
//!    and they go out in `Accept` batches at once, whatever the window: they must be
//!    decided before anything else.
//! 4. **Leading.** The proposer tells the elector (`Elected`) and starts phase 2
//!    ([`super::phase2`]) with the commands that queued meanwhile.
//!
//! **Left out.** A bound on how many slots a promise reports (every accepted slot from
//! `from_slot` on, cut into parts only to fit a frame; snapshots will bound it), and
//! PMMC's Scout choosing a higher ballot by itself when preempted (the elector picks
//! ballots here).

use super::phase2::Leading;
use super::{MAX_RECOVERY_SLOTS, Proposer, ProposerOutput, Shared, State};
use crate::messages::acceptor::{CallId, PValue};
use crate::messages::local::{LocalMessage, ProposerEvent};
use crate::messages::{AcceptorRequest, Ballot, NodeId, PeerMessage, Slot, Value};
use crate::roles::quorum::{QuorumCall, QuorumRule, QuorumStatus};
use std::collections::BTreeMap;

/// Phase 1 of one ballot in progress.
#[derive(Debug)]
pub(super) struct Preparing {
    ballot: Ballot,
    call_id: CallId,
    call: QuorumCall<Vec<PValue>>,
    /// The first slot this node had not learned when phase 1 began.
    from_slot: Slot,
    /// When the `Prepare`s last went out.
    sent_at: u64,
    /// Acceptors whose report came in parts: what they sent so far, and the slot to
    /// ask again from. An acceptor counts toward the quorum once its report is whole.
    partial: BTreeMap<NodeId, (Slot, Vec<PValue>)>,
}

/// A promise for the current phase 1, as an acceptor sent it.
struct Promise {
    from: NodeId,
    accepted: Vec<PValue>,
    more_from: Option<Slot>,
}

impl Proposer {
    /// `Lead(ballot)`: leaves any earlier ballot (its waiting reads ask again) and starts
    /// phase 1 of `ballot` for every slot not yet learned.
    pub(super) fn lead(&mut self, ballot: Ballot, out: &mut ProposerOutput) {
        assert_eq!(
            ballot.node, self.shared.id,
            "a proposer leads only with its own ballots"
        );
        // Reads waiting under an earlier ballot carry an index that ballot stamped; a
        // newer leader may have decided writes above it meanwhile. They ask again.
        self.leave_ballot(out);
        if self.shared.bugs.proposer_skips_phase_one() {
            // Planted bug: lead without learning what earlier ballots may have chosen.
            let s = &self.shared;
            self.state = State::Leading(Leading::new(ballot, s.learned, s.now));
            out.local.push(LocalMessage::Event(ProposerEvent::Elected(ballot)));
            return;
        }
        self.state = State::Preparing(Preparing::start(ballot, &mut self.shared, out));
    }

    /// A `Promise` arrived: counted if it belongs to the phase 1 running now; a quorum
    /// of whole reports makes this proposer lead.
    pub(super) fn on_promise(
        &mut self,
        from: NodeId,
        call: CallId,
        ballot: Ballot,
        accepted: Vec<PValue>,
        more_from: Option<Slot>,
        out: &mut ProposerOutput,
    ) {
        let State::Preparing(p) = &mut self.state else {
            return; // Not in phase 1: stale.
        };
        if call != p.call_id || ballot != p.ballot {
            return; // An earlier call or ballot: stale.
        }
        let promise = Promise {
            from,
            accepted,
            more_from,
        };
        if p.on_promise(promise, out) == QuorumStatus::Reached {
            let (ballot, from_slot, recovered) = (p.ballot, p.from_slot, p.recovered());
            self.become_leader(ballot, from_slot, recovered, out);
        }
    }

    /// Phase 1 succeeded: lead from `from_slot`, proposing the recovered values first.
    fn become_leader(&mut self, ballot: Ballot, from_slot: Slot, recovered: Vec<Value>, out: &mut ProposerOutput) {
        let s = &mut self.shared;
        let mut leading = Leading::new(ballot, from_slot, s.now);
        // Recovery batches go out regardless of the window: they must be decided first.
        let mut batch = Vec::new();
        let mut bytes = 0;
        for value in recovered {
            let size = value.wire_size();
            if !batch.is_empty() && (batch.len() == s.cfg.max_batch.max(1) || bytes + size > s.cfg.max_batch_bytes) {
                leading.send_accept(s, std::mem::take(&mut batch), false, out);
                bytes = 0;
            }
            bytes += size;
            batch.push(value);
        }
        if !batch.is_empty() {
            leading.send_accept(s, batch, false, out);
        }
        out.local.push(LocalMessage::Event(ProposerEvent::Elected(ballot)));
        leading.maybe_send_accepts(s, out);
        self.state = State::Leading(leading);
    }

    /// A tick while preparing: resend to silent acceptors, or give up at the deadline.
    pub(super) fn tick_phase1(&mut self, out: &mut ProposerOutput) {
        let State::Preparing(p) = &mut self.state else {
            return;
        };
        if p.on_tick(&self.shared, out) == QuorumStatus::Expired {
            let ballot = p.ballot;
            self.leave_ballot(out);
            out.local
                .push(LocalMessage::Event(ProposerEvent::PrepareTimedOut(ballot)));
        }
    }
}

impl Preparing {
    /// Sends `Prepare` for every slot from the first one not learned to every acceptor.
    fn start(ballot: Ballot, s: &mut Shared, out: &mut ProposerOutput) -> Preparing {
        let call_id = s.call_id();
        let call = QuorumCall::new(
            s.nodes.iter().copied(),
            QuorumRule::Majority,
            s.now,
            s.cfg.prepare_timeout_ticks,
        );
        let from_slot = s.learned;
        for to in call.targets() {
            out.send.push((to, prepare(call_id, ballot, from_slot)));
        }
        Preparing {
            ballot,
            call_id,
            call,
            from_slot,
            sent_at: s.now,
            partial: BTreeMap::new(),
        }
    }

    pub(super) fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// Keeps a part of a report and asks for the rest, or counts a whole report.
    fn on_promise(&mut self, promise: Promise, out: &mut ProposerOutput) -> QuorumStatus {
        let Promise {
            from,
            accepted,
            more_from,
        } = promise;
        match more_from {
            // Part of a report too large for one message: keep it, ask for the rest.
            Some(next) => {
                let entry = self.partial.entry(from).or_insert_with(|| (next, Vec::new()));
                entry.0 = next;
                entry.1.extend(accepted);
                out.send.push((from, prepare(self.call_id, self.ballot, next)));
                QuorumStatus::Pending
            }
            // The whole report (duplicated parts are harmless: recovery keeps the
            // highest ballot per slot).
            None => {
                let mut report = self.partial.remove(&from).map(|(_, parts)| parts).unwrap_or_default();
                report.extend(accepted);
                let last = self.from_slot.saturating_add(MAX_RECOVERY_SLOTS);
                if report.iter().any(|pv| pv.slot > last) {
                    // No honest acceptor reports a slot this far ahead: refuse the report.
                    tracing::warn!(from, "promise names a slot far beyond the log; ignored");
                    return QuorumStatus::Pending;
                }
                self.call.reply(from, report)
            }
        }
    }

    /// The values phase 1 forces, from `from_slot` on: per slot the value of the highest
    /// ballot reported, a no-op in every hole below the highest slot reported.
    fn recovered(&self) -> Vec<Value> {
        let mut forced: BTreeMap<Slot, (Ballot, &Value)> = BTreeMap::new();
        for pv in self.call.replies().values().flatten() {
            if pv.slot < self.from_slot {
                continue;
            }
            match forced.get(&pv.slot) {
                Some((b, _)) if *b >= pv.ballot => {}
                _ => {
                    forced.insert(pv.slot, (pv.ballot, &pv.value));
                }
            }
        }
        let end = forced.keys().next_back().map_or(self.from_slot, |s| s + 1);
        (self.from_slot..end)
            .map(|s| forced.get(&s).map_or(Value::Noop, |(_, v)| (*v).clone()))
            .collect()
    }

    /// Advances the call's clock; resends to silent acceptors every `retry_ticks`.
    fn on_tick(&mut self, s: &Shared, out: &mut ProposerOutput) -> QuorumStatus {
        let status = self.call.tick(s.now);
        if status == QuorumStatus::Expired || s.now - self.sent_at < s.cfg.retry_ticks {
            return status;
        }
        self.sent_at = s.now;
        for to in self.call.missing() {
            // Resume a report that came in parts where it stopped.
            let from_slot = self.partial.get(&to).map_or(self.from_slot, |(next, _)| *next);
            out.send.push((to, prepare(self.call_id, self.ballot, from_slot)));
        }
        status
    }
}

/// A `Prepare` of call `call` for `ballot`, asking for every slot from `from_slot`.
fn prepare(call: CallId, ballot: Ballot, from_slot: Slot) -> PeerMessage {
    PeerMessage::AcceptorRequest(AcceptorRequest::Prepare {
        call,
        ballot,
        from_slot,
    })
}
