//! # Phase 1: prepare, promises, selective synchronisation, becoming leader
//!
//! Lamport, "Paxos Made Simple" §3: a new leader runs phase 1 once for all the slots it
//! has not learned, "for infinitely many instances" with one message, and then proposes
//! in each slot the value a promise forced on it, filling the gaps with no-ops (the
//! "no-op" commands of §3). Van Renesse and Altinbuken, "Paxos Made Moderately Complex"
//! (PMMC) §3, call this the Scout: it adopts the ballot once a majority of acceptors
//! promised, together with every pvalue they reported. Omni-Paxos's promises carry
//! whole log suffixes, most of them redundant; here they carry summaries and the leader
//! pulls each value once, from one acceptor that holds it (selective log
//! synchronisation, after the Omni-Paxos project brief, §2.2.2).
//!
//! 1. **Prepare.** `Lead(ballot)` starts a quorum call of `Prepare { ballot, from_slot }`
//!    to every acceptor, `from_slot` being the first slot this node has not learned.
//!    Silent acceptors are asked again every `retry_ticks`; after
//!    `prepare_timeout_ticks` without a majority the proposer gives up and tells the
//!    elector (`PrepareTimedOut`), which tries again later.
//! 2. **Promises, whole or in parts.** A `Promise` carries the acceptor's floor
//!    (`decided_below`: every slot below is decided) and the runs of slots it accepted
//!    values in, each with its ballot, but no values. A summary too large for one
//!    message stops with `more_from`: the proposer keeps what came and asks that
//!    acceptor again from there under the same ballot. An acceptor counts toward the
//!    majority only once its report is whole. A report whose runs overlap, or name a
//!    slot more than [`MAX_RECOVERY_SLOTS`] past where it starts, is refused as corrupt.
//! 3. **The plan.** Once a majority promised, the proposer starts at
//!    `start = max(from_slot, highest floor in the quorum)`: every slot below is decided,
//!    and it proposes nothing there, not even a no-op. If `start` is above what its own
//!    learner has learned it tells the learner (`CatchUp { below: start, from }`, `from`
//!    an acceptor that reported that floor). From `start` on, per slot, it takes the
//!    highest ballot the quorum reported and the acceptors that hold the slot at that
//!    ballot. Slots held by this node's own acceptor at that ballot are pulled from it
//!    (no network); the others are split into parts spread over the acceptors holding
//!    them, pulled in parallel.
//! 4. **Pull.** `Pull { ballot, first, end }` to each part's acceptor; `Pulled` answers
//!    with each value and its ballot, in parts if large (`more_from`). A value whose
//!    ballot is not the planned one, or an answer that stops short, is not adopted: the
//!    part goes to the next acceptor holding it at the next retry. Silent acceptors are
//!    asked again (the next holder) every `retry_ticks`; without progress for
//!    `prepare_timeout_ticks`, phase 1 gives up as in step 1.
//! 5. **Recovery.** Once every part is in, each planned slot gets its pulled value, each
//!    hole up to the highest reported slot a no-op. Then the **recovery cut** (below):
//!    at a StopSign of this configuration that may have been chosen, everything after
//!    it is dropped. What is left goes out in `Accept` batches at once, whatever the
//!    window: it must be decided before anything else.
//! 6. **Leading.** The proposer tells the elector (`Elected`) and starts phase 2
//!    ([`super::phase2`]) with the commands that queued meanwhile, or, if the cut
//!    stopped it, keeps them queued for the next configuration.
//!
//! **The recovery cut** (Lamport, Malkhi and Zhou, "Stoppable Paxos", 2008; rule 2 of
//! `crate::messages::membership`). Among the forced values, take the lowest slot `s`
//! holding a StopSign of this configuration, reported at ballot `b_s`. If some slot
//! above `s` was reported at a ballot higher than `b_s`, the StopSign is replaced by a
//! no-op and the next StopSign is looked at; otherwise the StopSign is proposed again
//! at `s`, nothing above `s` is proposed (neither the values reported there nor no-ops
//! for the holes), and the ballot is stopped at `s` as if it had assigned the StopSign
//! itself. The values above `s` are pulled all the same (the StopSigns are only known
//! once the values are in), but nothing is proposed before the cut is made. Holes count
//! for nothing; a ballot equal to `b_s` above `s` cannot occur (lemma A) and does not
//! replace it.
//!
//! **Why the cut is safe.** All ballots below are of one configuration and go to its
//! acceptors (a proposer leads only ballots of its configuration; the acceptors refuse
//! the others). Write "v is chosen at b" for "a majority accepted v at ballot b".
//!
//! * *Lemma A.* One ballot never proposes both a StopSign at `s` and a value above `s`:
//!   fresh slots come after every recovered one and stop at a StopSign (phase 2's stop
//!   rule), and the cut leaves nothing of recovery above the StopSign it keeps.
//! * *Claim 1.* If the leader of ballot `b` proposes a value at `t > s`, no StopSign `X`
//!   at `s` is chosen at any ballot `b_x < b`. Suppose it is, by majority `Q_x`. The
//!   phase-1 quorum of `b` meets `Q_x` in an acceptor that accepted `X` at `b_x` before
//!   it promised `b`, so slot `s` is reported at some `b_s ≥ b_x`, and by Paxos's own
//!   invariant (P2c) the value there is `X`. The cut either stops at a StopSign at or
//!   below `s` (then nothing is proposed at `t`: contradiction) or replaces `X`, which
//!   takes a value at some slot above `s` reported at a ballot `b' > b_s ≥ b_x`, `b' < b`:
//!   the leader of `b'` proposed above `s` although `X` was chosen below `b'`, which
//!   contradicts claim 1 for `b'` (induction on ballots; `b' = b_x` is lemma A).
//! * *Claim 2.* If the leader of ballot `b` proposes a StopSign `X` at `s`, no value
//!   above `s` is chosen at any ballot `b_v < b`. Suppose `v` is, at `t > s`, by `Q_v`.
//!   The phase-1 quorum of `b` reports `t` at a ballot `≥ b_v`, so `X` at `s` cannot be a
//!   fresh proposal (fresh slots lie above every reported one): it was recovered, at a
//!   ballot `b_s` that the cut compared with `t`'s: `b_s ≥ b_v`. `b_s = b_v` is lemma A
//!   for the leader of `b_v`; `b_s > b_v` means the leader of `b_s < b` proposed `X` at
//!   `s` while `v` was chosen below `b_s`: claim 2 for `b_s`, by induction.
//! * *So* a chosen StopSign at `s` (at `b_x`) and a chosen value above it (at `b_v`)
//!   never coexist: `b_v ≥ b_x` contradicts claim 1 (or lemma A), `b_v < b_x` claim 2.
//!   The configuration decides nothing after its StopSign, and the next configuration
//!   (which starts at `s + 1` with a fresh set of acceptors) never meets a slot the old
//!   one also decided.
//!
//! The rule's other half matters as much: a StopSign reported below a higher ballot
//! must *not* stop the log, or a StopSign that was never chosen would cut off values
//! that were (claim 1's contradiction is exactly such a value).
//!
//! **Why this is safe.** Paxos asks a leader of ballot `b` to propose, in each slot, the
//! value accepted at the highest ballot among a majority of promises for `b`, or anything
//! if there is none (Lamport §2.2, P2c; PMMC's Scout adopts the pvalue with the highest
//! ballot per slot). The summaries name that ballot per slot exactly as the values would
//! have; only the values travel separately. Any acceptor that reported the slot at that
//! ballot holds the same value: a ballot is led by one proposer, which proposes one value
//! per slot (the proposer's invariant below), and an acceptor accepts at a ballot only
//! what that proposer sent. The acceptor cannot have changed it between its `Promise`
//! and the `Pull`: it answers a `Pull` only under the ballot it promised, and under that
//! promise it accepts nothing at a lower ballot, and at a higher one it would have
//! promised higher. The proposer checks each pulled value's ballot against its plan
//! anyway and adopts nothing else: a value at a lower ballot may be one that was never
//! chosen while the highest one was. Slots below the highest floor need no value: they
//! are decided (the acceptor's node holds a durable snapshot of them), so whatever a
//! leader proposed there could only be the chosen value (P2c) or, worse, a different
//! one if its plan missed it; proposing nothing there is both cheaper and safe.
//!
//! **Left out.** PMMC's Scout choosing a higher ballot by itself when preempted (the
//! elector picks ballots here); answering a `Pull` for slots an acceptor compacted after
//! its `Promise` (the phase times out and the next one sees the higher floor); pulling
//! only up to the first StopSign (the StopSigns are known only once the values are in).

use super::phase2::{Leading, Stop};
use super::{MAX_RECOVERY_SLOTS, Proposer, ProposerOutput, Shared, State};
use crate::messages::acceptor::{AcceptedRun, CallId};
use crate::messages::local::{LocalMessage, ProposerEvent};
use crate::messages::{AcceptorRequest, Ballot, MAX_SLOT, NodeId, PeerMessage, Slot, Value};
use crate::roles::quorum::{QuorumCall, QuorumRule, QuorumStatus};
use crate::roles::runs::Runs;
use std::collections::{BTreeMap, BTreeSet};

/// The values phase 1 forces from its first slot on, in slot order, each with the
/// ballot it was reported at (`None`: a hole, filled with a no-op).
pub(super) type Forced = Vec<(Option<Ballot>, Value)>;

/// Phase 1 of one ballot in progress.
#[derive(Debug)]
pub(super) struct Preparing {
    ballot: Ballot,
    call_id: CallId,
    call: QuorumCall<Report>,
    /// The first slot this node had not learned when phase 1 began.
    from_slot: Slot,
    /// When the `Prepare`s last went out.
    sent_at: u64,
    /// Acceptors whose report came in parts: what they sent so far, and the slot to
    /// ask again from. An acceptor counts toward the quorum once its report is whole.
    partial: BTreeMap<NodeId, (Slot, Report)>,
    /// Once a majority promised: the values being pulled.
    pulling: Option<Pulling>,
}

/// One acceptor's phase-1 report: its floor and what it accepted above.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Report {
    decided_below: Slot,
    runs: Vec<AcceptedRun>,
}

/// A promise for the current phase 1, as an acceptor sent it.
pub(super) struct Promise {
    pub(super) from: NodeId,
    pub(super) decided_below: Slot,
    pub(super) accepted: Vec<AcceptedRun>,
    pub(super) more_from: Option<Slot>,
}

/// A `Pulled` for the current phase 1, as an acceptor sent it.
pub(super) struct Pulled {
    pub(super) from: NodeId,
    pub(super) first_slot: Slot,
    pub(super) values: Vec<(Ballot, Value)>,
    pub(super) more_from: Option<Slot>,
}

/// Selective synchronisation: the values phase 1 forces, being pulled in parts.
#[derive(Debug)]
struct Pulling {
    /// The first slot to propose in: every slot below is decided.
    start: Slot,
    /// One past the highest slot any promise of the quorum reported.
    end: Slot,
    /// Per slot, the highest ballot the quorum reported; the slots not covered are holes.
    plan: Runs<Ballot>,
    /// In slot order; together they cover the plan.
    parts: Vec<Part>,
    /// When a part last made progress: phase 1 gives up `prepare_timeout_ticks` later.
    progress_at: u64,
}

/// Consecutive planned slots pulled from one acceptor.
#[derive(Debug)]
struct Part {
    first: Slot,
    end: Slot,
    /// Acceptors holding every slot of the part at its planned ballot (this node's own
    /// first if it is one of them), in the order they are asked.
    holders: Vec<NodeId>,
    /// Which of `holders` is asked now.
    at: usize,
    /// The values pulled so far, from `first` on.
    values: Vec<Value>,
    sent_at: u64,
    /// The acceptor asked answered something else than planned: the next one is asked
    /// at the next retry.
    failed: bool,
}

impl Part {
    fn next(&self) -> Slot {
        self.first + self.values.len() as u64
    }

    fn done(&self) -> bool {
        self.next() >= self.end
    }

    fn holder(&self) -> NodeId {
        self.holders[self.at % self.holders.len()]
    }
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
        self.shared.pending_lead = None;
        let config = self.shared.config;
        if ballot.config > config {
            // The elector applied a configuration this proposer has not heard of yet
            // (its `Reconfigure` is on the way): lead once it is in force here.
            self.shared.pending_lead = Some(ballot);
            return;
        }
        if ballot.config < config || !self.shared.nodes.contains(&self.shared.id) {
            // A ballot of an older configuration (the elector is behind; the acceptors
            // would refuse it), or this node is no member: lead nothing. The elector
            // learns of our configuration the way an acceptor would tell it.
            let ours = Ballot::in_config(config, 0, 0);
            out.local.push(LocalMessage::Event(if ours > ballot {
                ProposerEvent::Preempted(ours)
            } else {
                ProposerEvent::PrepareTimedOut(ballot)
            }));
            return;
        }
        if self.shared.bugs.proposer_skips_phase_one() {
            // Planted bug: lead without learning what earlier ballots may have chosen.
            let s = &self.shared;
            self.state = State::Leading(Leading::new(ballot, s.learned, s.now));
            out.local.push(LocalMessage::Event(ProposerEvent::Elected(ballot)));
            return;
        }
        self.state = State::Preparing(Preparing::start(ballot, &mut self.shared, out));
    }

    /// Whether phase 1 has its majority of promises and pulls the values it forces.
    pub fn is_pulling(&self) -> bool {
        matches!(&self.state, State::Preparing(p) if p.pulling.is_some())
    }

    /// A `Promise` arrived: counted if it belongs to the phase 1 running now; a quorum
    /// of whole reports starts the pulls (or, with nothing to pull, makes this proposer
    /// lead).
    pub(super) fn on_promise(&mut self, call: CallId, ballot: Ballot, promise: Promise, out: &mut ProposerOutput) {
        let State::Preparing(p) = &mut self.state else {
            return; // Not in phase 1: stale.
        };
        if call != p.call_id || ballot != p.ballot || p.pulling.is_some() {
            return; // An earlier call or ballot, or late: stale.
        }
        if p.on_promise(promise, out) == QuorumStatus::Reached {
            p.plan(&self.shared, out);
            self.maybe_lead(out);
        }
    }

    /// A `Pulled` arrived: kept if it is the answer a part waits for; once every part
    /// is in, this proposer leads.
    pub(super) fn on_pulled(&mut self, call: CallId, ballot: Ballot, pulled: Pulled, out: &mut ProposerOutput) {
        let State::Preparing(p) = &mut self.state else {
            return; // Not in phase 1: stale.
        };
        if call != p.call_id || ballot != p.ballot {
            return; // An earlier call or ballot: stale.
        }
        p.on_pulled(&self.shared, pulled, out);
        self.maybe_lead(out);
    }

    /// Leads once every part of the plan is in.
    fn maybe_lead(&mut self, out: &mut ProposerOutput) {
        let State::Preparing(p) = &self.state else {
            return;
        };
        let Some((start, mut recovered)) = p.recovered() else {
            return;
        };
        let ballot = p.ballot;
        // The recovery rule (Stoppable Paxos): nothing is proposed past a StopSign that
        // may have been chosen. Planted bug: the values past it are proposed too.
        let stop = if self.shared.bugs.proposer_proposes_past_stop_sign() {
            None
        } else {
            let config = self.shared.config;
            cut_at_stop_sign(&mut recovered, |v| matches!(v, Value::StopSign(s) if s.prev == config))
                .map(|at| start + at as u64)
        };
        let recovered: Vec<Value> = recovered.into_iter().map(|(_, value)| value).collect();
        self.become_leader(ballot, start, recovered, stop, out);
    }

    /// Phase 1 succeeded: lead from `start`, proposing the recovered values first;
    /// stopped after them if the last one is a StopSign at `stop`.
    fn become_leader(
        &mut self,
        ballot: Ballot,
        start: Slot,
        recovered: Vec<Value>,
        stop: Option<Slot>,
        out: &mut ProposerOutput,
    ) {
        let s = &mut self.shared;
        let stop = stop.and_then(|at| {
            let last = recovered.last()?;
            assert_eq!(
                start + recovered.len() as u64,
                at + 1,
                "the recovery cut leaves its StopSign last"
            );
            Stop::of(last, at)
        });
        let mut leading = Leading::new(ballot, start, s.now);
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
        if let Some(stop) = stop {
            leading.stop_at(stop);
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
            pulling: None,
        }
    }

    pub(super) fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// Keeps a part of a report and asks for the rest, or counts a whole report.
    fn on_promise(&mut self, promise: Promise, out: &mut ProposerOutput) -> QuorumStatus {
        let Promise {
            from,
            decided_below,
            accepted,
            more_from,
        } = promise;
        let entry = &mut self.partial.entry(from).or_default().1;
        entry.decided_below = entry.decided_below.max(decided_below);
        entry.runs.extend(accepted);
        match more_from {
            // Part of a report too large for one message: keep it, ask for the rest.
            Some(next) => {
                if let Some((at, _)) = self.partial.get_mut(&from) {
                    *at = next;
                }
                out.send.push((from, prepare(self.call_id, self.ballot, next)));
                QuorumStatus::Pending
            }
            // The whole report.
            None => {
                let Some((_, mut report)) = self.partial.remove(&from) else {
                    return QuorumStatus::Pending;
                };
                // A duplicated part repeats runs: keep each once, in slot order.
                report.runs.sort_by_key(|r| (r.first, r.end, r.ballot));
                report.runs.dedup();
                let base = self.from_slot.max(report.decided_below);
                let last = base.saturating_add(MAX_RECOVERY_SLOTS);
                let overlapping = report.runs.windows(2).any(|w| w[1].first < w[0].end);
                let odd = report.runs.iter().any(|r| r.first >= r.end || r.end > last);
                if overlapping || odd || report.decided_below > MAX_SLOT {
                    // No honest acceptor reports this: refuse the report.
                    tracing::warn!(
                        from,
                        "promise with overlapping runs or slots far beyond the log; ignored"
                    );
                    return QuorumStatus::Pending;
                }
                self.call.reply(from, report)
            }
        }
    }

    /// A majority promised: works out what phase 1 forces and starts pulling it.
    fn plan(&mut self, s: &Shared, out: &mut ProposerOutput) {
        let reports = self.call.replies();
        let (floor, floor_from) = reports
            .iter()
            .map(|(&node, r)| (r.decided_below, node != s.id, std::cmp::Reverse(node)))
            .max()
            .map_or((0, s.id), |(floor, _, node)| (floor, node.0));
        let start = self.from_slot.max(floor);
        if start > s.learned {
            // Decided below `start`, and not learned here: the learner catches up.
            out.local.push(LocalMessage::CatchUp {
                below: start,
                from: floor_from,
            });
        }
        let segments = segments(reports, start);
        let end = segments.last().map_or(start, |seg| seg.end);
        let mut plan = Runs::new();
        let mut parts: Vec<Part> = Vec::new();
        for (n, seg) in segments.iter().enumerate() {
            plan.insert(seg.first, seg.end, seg.ballot);
            // Planted bug: pull from an acceptor that holds the slots at a lower ballot.
            let holders = if s.bugs.proposer_adopts_lower_ballot_part() && !seg.lower.is_empty() {
                &seg.lower
            } else {
                &seg.holders
            };
            for part in split(seg.first, seg.end, holders, s.id, n) {
                match parts.last_mut() {
                    // The same acceptor asked first: one part; the fallbacks must hold both.
                    Some(last) if last.end == part.first && last.holders[0] == part.holders[0] => {
                        last.end = part.end;
                        last.holders.retain(|h| part.holders.contains(h));
                    }
                    _ => parts.push(part),
                }
            }
        }
        for part in &mut parts {
            part.sent_at = s.now;
            out.send
                .push((part.holder(), pull(self.call_id, self.ballot, part.first, part.end)));
        }
        self.pulling = Some(Pulling {
            start,
            end,
            plan,
            parts,
            progress_at: s.now,
        });
    }

    /// Keeps what a `Pulled` brings for the part waiting on it, if it matches the plan,
    /// and asks for the rest of the part.
    fn on_pulled(&mut self, s: &Shared, pulled: Pulled, out: &mut ProposerOutput) {
        let Some(pulling) = &mut self.pulling else {
            return; // Still gathering promises: a stale answer.
        };
        let Pulled {
            from,
            first_slot,
            values,
            more_from,
        } = pulled;
        let Some(part) = pulling
            .parts
            .iter_mut()
            .find(|p| !p.done() && !p.failed && p.holder() == from && p.next() == first_slot)
        else {
            return; // A duplicate, or an answer of an acceptor no longer asked.
        };
        let adopt_any = s.bugs.proposer_adopts_lower_ballot_part();
        let before = part.values.len();
        for (ballot, value) in values {
            let slot = part.next();
            if slot >= part.end {
                break;
            }
            let planned = pulling.plan.get(slot).map(|(_, b)| b);
            if planned != Some(ballot) && !adopt_any {
                // Not the value phase 1 forces: never adopted. Another holder is asked.
                tracing::warn!(from, slot, %ballot, "pulled value at an unplanned ballot; ignored");
                part.failed = true;
                return;
            }
            part.values.push(value);
        }
        if part.values.len() > before {
            pulling.progress_at = s.now;
        }
        if part.done() {
            return;
        }
        match more_from {
            // More to come from this acceptor: ask for it at once.
            Some(next) if next == part.next() => {
                part.sent_at = s.now;
                out.send.push((from, pull(self.call_id, self.ballot, next, part.end)));
            }
            // It stopped short: it does not hold the rest. Another holder is asked.
            _ => part.failed = true,
        }
    }

    /// Once every part is in: the first slot to propose in and the values phase 1
    /// forces from there, each with the ballot it was reported at, a no-op (and no
    /// ballot) in every hole.
    fn recovered(&self) -> Option<(Slot, Forced)> {
        let pulling = self.pulling.as_ref()?;
        if !pulling.parts.iter().all(Part::done) {
            return None;
        }
        let mut values = Vec::new();
        let mut next = pulling.start;
        for part in &pulling.parts {
            values.extend((next..part.first).map(|_| (None, Value::Noop)));
            let ballots = (part.first..).map(|slot| pulling.plan.get(slot).map(|(_, b)| b));
            values.extend(ballots.zip(part.values.iter().cloned()));
            next = part.end;
        }
        values.extend((next..pulling.end).map(|_| (None, Value::Noop)));
        Some((pulling.start, values))
    }

    /// Advances the call's clock; resends to silent acceptors every `retry_ticks`.
    fn on_tick(&mut self, s: &Shared, out: &mut ProposerOutput) -> QuorumStatus {
        if let Some(pulling) = &mut self.pulling {
            if s.now - pulling.progress_at >= s.cfg.prepare_timeout_ticks {
                return QuorumStatus::Expired;
            }
            for part in pulling.parts.iter_mut().filter(|p| !p.done()) {
                if s.now - part.sent_at < s.cfg.retry_ticks {
                    continue;
                }
                // Lost, slow or wrong: ask the next acceptor holding the part.
                part.at = (part.at + 1) % part.holders.len();
                part.failed = false;
                part.sent_at = s.now;
                out.send
                    .push((part.holder(), pull(self.call_id, self.ballot, part.next(), part.end)));
            }
            return QuorumStatus::Pending;
        }
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

/// The recovery rule of Stoppable Paxos on the values phase 1 forces (in slot order,
/// each with the ballot it was reported at, `None` for a hole): takes the lowest value
/// that `stops` (a StopSign of this configuration); if a value after it was reported
/// at a higher ballot, that StopSign cannot have been chosen and becomes a no-op, and
/// the next one is looked at; otherwise everything after it is dropped (values and
/// holes alike) and its index is returned: the proposer stops there.
pub(super) fn cut_at_stop_sign(values: &mut Forced, stops: impl Fn(&Value) -> bool) -> Option<usize> {
    // The highest ballot reported after each position.
    let mut after = vec![None; values.len()];
    for i in (1..values.len()).rev() {
        after[i - 1] = after[i].max(values[i].0);
    }
    for i in 0..values.len() {
        if !stops(&values[i].1) {
            continue;
        }
        if after[i] > values[i].0 {
            // A leader of a higher ballot proposed past this slot without stopping
            // here: this StopSign was not chosen.
            tracing::info!(
                at = i,
                "recovered StopSign followed by a higher ballot: a no-op instead"
            );
            values[i].1 = Value::Noop;
            continue;
        }
        values.truncate(i + 1);
        return Some(i);
    }
    None
}

/// Consecutive slots with one highest reported ballot and the same acceptors holding
/// them at it (and below it).
#[derive(Debug, PartialEq, Eq)]
struct Segment {
    first: Slot,
    end: Slot,
    ballot: Ballot,
    /// The acceptors that reported these slots at `ballot`, ascending.
    holders: Vec<NodeId>,
    /// Those that reported them at a lower ballot, ascending.
    lower: Vec<NodeId>,
}

/// The quorum's reports from `start` on, as segments in slot order (holes between them).
fn segments(reports: &BTreeMap<NodeId, Report>, start: Slot) -> Vec<Segment> {
    let mut points = BTreeSet::new();
    for run in reports.values().flat_map(|r| &r.runs).filter(|r| r.end > start) {
        points.insert(run.first.max(start));
        points.insert(run.end);
    }
    let points: Vec<Slot> = points.into_iter().collect();
    let mut cursors = vec![0; reports.len()];
    let mut segments: Vec<Segment> = Vec::new();
    for w in points.windows(2) {
        let (first, end) = (w[0], w[1]);
        // Each report's run covering `first` covers `first..end` (no boundary inside).
        let mut reported: Vec<(Ballot, NodeId)> = Vec::new();
        for ((&node, report), at) in reports.iter().zip(cursors.iter_mut()) {
            while report.runs.get(*at).is_some_and(|r| r.end <= first) {
                *at += 1;
            }
            if let Some(run) = report.runs.get(*at).filter(|r| r.first <= first) {
                reported.push((run.ballot, node));
            }
        }
        let Some(&(ballot, _)) = reported.iter().max() else {
            continue; // A hole.
        };
        let holders: Vec<NodeId> = reported.iter().filter(|r| r.0 == ballot).map(|r| r.1).collect();
        let lower: Vec<NodeId> = reported.iter().filter(|r| r.0 < ballot).map(|r| r.1).collect();
        match segments.last_mut() {
            Some(last)
                if last.end == first && last.ballot == ballot && last.holders == holders && last.lower == lower =>
            {
                last.end = end
            }
            _ => segments.push(Segment {
                first,
                end,
                ballot,
                holders,
                lower,
            }),
        }
    }
    segments
}

/// Splits `first..end` into parts to pull: all from this node's own acceptor if it holds
/// them, else one part per holder (as far as there are slots), each holder asked first
/// for one part and the others kept as fallbacks. `turn` rotates which holder gets the
/// first part, so that small segments spread over the holders too.
fn split(first: Slot, end: Slot, holders: &[NodeId], me: NodeId, turn: usize) -> Vec<Part> {
    let part = |first, end, lead: usize| {
        let mut order: Vec<NodeId> = holders[lead..].to_vec();
        order.extend(&holders[..lead]);
        Part {
            first,
            end,
            holders: order,
            at: 0,
            values: Vec::new(),
            sent_at: 0,
            failed: false,
        }
    };
    if let Some(mine) = holders.iter().position(|&h| h == me) {
        return vec![part(first, end, mine)];
    }
    let n = (holders.len() as u64).min(end - first).max(1);
    let size = (end - first).div_ceil(n);
    (0..n)
        .map(|i| {
            let lead = (i as usize + turn) % holders.len();
            part(first + i * size, (first + (i + 1) * size).min(end), lead)
        })
        .filter(|p| p.first < p.end)
        .collect()
}

/// A `Prepare` of call `call` for `ballot`, asking for every slot from `from_slot`.
fn prepare(call: CallId, ballot: Ballot, from_slot: Slot) -> PeerMessage {
    PeerMessage::AcceptorRequest(AcceptorRequest::Prepare {
        call,
        ballot,
        from_slot,
    })
}

/// A `Pull` of call `call` under `ballot` for the values of `first..end`.
fn pull(call: CallId, ballot: Ballot, first: Slot, end: Slot) -> PeerMessage {
    PeerMessage::AcceptorRequest(AcceptorRequest::Pull {
        call,
        ballot,
        first,
        end,
    })
}
