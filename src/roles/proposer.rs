//! # Proposer
//!
//! The proposer is the Multi-Paxos leader's engine (Lamport, "Paxos Made Simple" §3;
//! PMMC §3, the Leader with its Scouts and Commanders). It is idle until the
//! leader-elector tells it to lead with a ballot; then:
//!
//! 1. **Phase 1, once per ballot, for all slots**: a quorum call of `Prepare { ballot,
//!    from_slot }` to every acceptor, `from_slot` being the first slot this node has not
//!    learned. A majority of `Promise`s reports what was accepted in those slots.
//! 2. **Recovery**: for each slot reported, the value with the highest ballot is
//!    proposed again; the holes up to the highest reported slot are filled with no-ops.
//! 3. **Phase 2, per batch of slots**: client commands get the next slots and go out in
//!    `Accept` messages, up to `max_batch` commands per message and `max_inflight`
//!    messages in flight at once. Thrifty by default: an `Accept` goes only to a majority
//!    (this node and the acceptors that completed quorums fastest; any majority decides,
//!    so which one is a matter of speed, not safety), and to the rest if no quorum comes
//!    within `thrifty_ticks`. A majority of `Accepted` for a batch decides it: the
//!    proposer sends `Decide` to its own learner at once, and to the others behind its
//!    next `Accept` or at the next tick (at once if a client or a read waits on them).
//!
//! A `Rejected` naming a higher ballot means another proposer got ahead: this one stops
//! at once and tells the elector (`Preempted`). Replies for calls it no longer runs are
//! stale and ignored. Lost messages are resent to the acceptors that have not answered,
//! every `retry_ticks`; an in-flight batch is never abandoned while this node leads,
//! because a hole would stall every state machine.
//!
//! **Invariant.** In a ballot `b`, the proposer proposes in slot `s` only the value that
//! phase 1 of `b` forced on it (the highest-ballot value a promise reported for `s`) or,
//! if none was reported, a value of its own choosing, and never two different values for
//! one slot. Together with the acceptor's invariant this keeps one value chosen per slot.
//!
//! **Left out.** Leases and read-only fast paths (a later issue), reconfiguration (PMMC
//! §4), and window limits on phase-1 replies (a promise lists every accepted slot from
//! `from_slot` on; snapshots will bound it).

use super::bugs::PlantedBugs;
use super::quorum::{QuorumCall, QuorumRule, QuorumStatus};
use super::ready::Ready;
use crate::messages::acceptor::{CallId, PValue};
use crate::messages::local::{LocalMessage, ProposerEvent};
use crate::messages::{
    AcceptorReply, AcceptorRequest, Ballot, Command, LearnerMessage, NodeId, PeerMessage, RequestId, Slot,
    StateMachineMessage, Value,
};
use std::collections::{BTreeMap, VecDeque};

/// A recovery never spans more slots than this past the first unlearned one: a Promise
/// naming a slot further ahead is corrupt (no leader keeps that many slots in flight).
pub const MAX_RECOVERY_SLOTS: Slot = 1 << 24;

/// Tunables of the proposer, in ticks and counts.
#[derive(Clone, Debug)]
pub struct ProposerConfig {
    /// Most commands in one Accept.
    pub max_batch: usize,
    /// Most Accepts waiting for a quorum at once. A partial batch is sent only when
    /// none is in flight, so more than one is in flight only when batches are full.
    pub max_inflight: usize,
    /// Resend to silent acceptors after this many ticks.
    pub retry_ticks: u64,
    /// Give up phase 1 after this many ticks (the elector then tries again later).
    pub prepare_timeout_ticks: u64,
    /// While leading, tell learners how far the log is decided at least this often.
    pub beacon_ticks: u64,
    /// Most client commands queued while waiting for a window; more are dropped
    /// (their clients retry or time out).
    pub max_queue: usize,
    /// Most payload bytes in one Accept (it must fit a transport frame); a batch holds
    /// at least one command whatever its size.
    pub max_batch_bytes: usize,
    /// Thrifty phase 2: an `Accept` goes only to a quorum (this node and the other
    /// acceptors that answered fastest), not to every acceptor.
    pub thrifty: bool,
    /// A thrifty batch still undecided after this many ticks goes to the acceptors it
    /// skipped.
    pub thrifty_ticks: u64,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            max_batch: 256,
            max_inflight: 32,
            retry_ticks: 20,
            prepare_timeout_ticks: 100,
            beacon_ticks: 10,
            max_queue: 100_000,
            max_batch_bytes: 1 << 20,
            thrifty: true,
            thrifty_ticks: 2,
        }
    }
}

/// What the proposer is told.
#[derive(Debug)]
pub enum ProposerInput {
    /// From the elector: lead with this ballot.
    Lead(Ballot),
    /// From the elector: stop leading.
    StepDown,
    /// From a node (this one or another): a client command to put in the log.
    Propose(NodeId, Command),
    /// From an acceptor.
    Reply(NodeId, AcceptorReply),
    /// From any node: a linearizable read began there; confirm leadership (read index).
    ReadIndex(NodeId, RequestId),
    /// From the local learner: every slot below this one is learned here.
    Learned(Slot),
    Tick,
}

/// What the proposer asks to have done.
pub type ProposerOutput = Ready;

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

/// A linearizable read waiting for leadership to be confirmed (read index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingRead {
    from: NodeId,
    id: RequestId,
    /// Every slot below this was assigned when the read arrived.
    index: Slot,
}

#[derive(Debug)]
enum State {
    Idle,
    Preparing {
        ballot: Ballot,
        call_id: CallId,
        call: QuorumCall<Vec<PValue>>,
        from_slot: Slot,
        sent_at: u64,
        /// Acceptors whose report came in parts: what they sent so far, and the slot to
        /// ask again from. An acceptor counts toward the quorum once its report is whole.
        partial: BTreeMap<NodeId, (Slot, Vec<PValue>)>,
    },
    Leading {
        ballot: Ballot,
        next_slot: Slot,
        inflight: BTreeMap<CallId, Inflight>,
        last_beacon: u64,
    },
}

/// The proposer's state machine: no I/O.
#[derive(Debug)]
pub struct Proposer {
    id: NodeId,
    nodes: Vec<NodeId>,
    cfg: ProposerConfig,
    now: u64,
    next_call: CallId,
    learned: Slot,
    state: State,
    /// Commands waiting for a batch, with the node each came through.
    queue: VecDeque<(NodeId, Command)>,
    /// Reads waiting for the next batch to leave.
    reads: Vec<PendingRead>,
    /// Decided batches the other nodes' learners have not been told of yet, merged where
    /// consecutive. They leave behind the next `Accept`, at the next tick, or at once
    /// when another node waits on them (see [`Proposer::maybe_decide`]).
    deferred: Vec<(Slot, Vec<Value>)>,
    /// Other acceptors whose `Accepted` completed a quorum, most recent first: the ones
    /// a thrifty `Accept` goes to. Cleared every tick, so the first batch after a tick
    /// goes to every acceptor and finds again which answer fastest.
    fastest: Vec<NodeId>,
    /// Accept batches sent, and the commands (or no-ops) they carried: their ratio is
    /// the batch size.
    batches: u64,
    batched: u64,
    bugs: PlantedBugs,
}

impl Proposer {
    pub fn new(id: NodeId, nodes: Vec<NodeId>, cfg: ProposerConfig) -> Self {
        Proposer {
            id,
            nodes,
            cfg,
            now: 0,
            next_call: 1,
            learned: 0,
            state: State::Idle,
            queue: VecDeque::new(),
            reads: Vec::new(),
            deferred: Vec::new(),
            fastest: Vec::new(),
            batches: 0,
            batched: 0,
            bugs: PlantedBugs::default(),
        }
    }

    /// Test-only: plants bugs (see [`PlantedBugs`]).
    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// The ballot this proposer leads (or tries to lead) with.
    pub fn ballot(&self) -> Option<Ballot> {
        match &self.state {
            State::Idle => None,
            State::Preparing { ballot, .. } | State::Leading { ballot, .. } => Some(*ballot),
        }
    }

    pub fn is_leading(&self) -> bool {
        matches!(self.state, State::Leading { .. })
    }

    /// The next slot a new command would get, while leading.
    pub fn next_slot(&self) -> Option<Slot> {
        match &self.state {
            State::Leading { next_slot, .. } => Some(*next_slot),
            _ => None,
        }
    }

    pub fn inflight(&self) -> usize {
        match &self.state {
            State::Leading { inflight, .. } => inflight.len(),
            _ => 0,
        }
    }

    /// Accept batches sent, and the values they carried.
    pub fn batch_counts(&self) -> (u64, u64) {
        (self.batches, self.batched)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn handle(&mut self, input: ProposerInput) -> ProposerOutput {
        let mut out = Ready::default();
        match input {
            // The elector made us a candidate: start phase 1 for every slot not yet learned.
            ProposerInput::Lead(ballot) => self.start_prepare(ballot, &mut out),
            // The elector deposed us: forget the ballot; queued commands go with it.
            // What was decided stays decided: the other learners hear of it still.
            ProposerInput::StepDown => {
                self.flush_decides(&mut out);
                self.state = State::Idle;
                self.queue.clear();
                self.reads.clear();
            }
            // A command: queue it; it leaves at once if the window has room.
            ProposerInput::Propose(from, command) => {
                if matches!(self.state, State::Idle) || self.queue.len() >= self.cfg.max_queue {
                    // Not leading (or overloaded): the node that asked will retry.
                    return out;
                }
                self.queue.push_back((from, command));
                self.maybe_send_accepts(&mut out);
            }
            // A read: only a leader confirmed by a quorum after the read began may answer.
            ProposerInput::ReadIndex(from, id) => match &self.state {
                State::Leading { next_slot, .. } if self.bugs.proposer_reads_without_quorum() => {
                    // Planted bug: trust our leadership without a quorum's word.
                    let reply = StateMachineMessage::ReadIndexReply {
                        id,
                        index: Some(*next_slot),
                    };
                    out.send.push((from, PeerMessage::StateMachine(reply)));
                }
                State::Leading { next_slot, .. } => {
                    self.reads.push(PendingRead {
                        from,
                        id,
                        index: *next_slot,
                    });
                    self.maybe_send_accepts(&mut out);
                }
                _ => {
                    let reply = StateMachineMessage::ReadIndexReply { id, index: None };
                    out.send.push((from, PeerMessage::StateMachine(reply)));
                }
            },
            // An acceptor answered a call.
            ProposerInput::Reply(from, reply) => self.on_reply(from, reply, &mut out),
            // The local learner progressed.
            ProposerInput::Learned(slot) => self.learned = self.learned.max(slot),
            // Time passes: resend what is unanswered, expire phase 1, send a beacon.
            ProposerInput::Tick => self.on_tick(&mut out),
        }
        out
    }

    /// Tells every waiting read to ask again (this proposer cannot confirm it).
    fn answer_reads_not_leader(&mut self, out: &mut ProposerOutput) {
        for read in self.reads.drain(..) {
            let reply = StateMachineMessage::ReadIndexReply {
                id: read.id,
                index: None,
            };
            out.send.push((read.from, PeerMessage::StateMachine(reply)));
        }
    }

    fn call_id(&mut self) -> CallId {
        self.next_call += 1;
        self.next_call
    }

    fn start_prepare(&mut self, ballot: Ballot, out: &mut ProposerOutput) {
        assert_eq!(ballot.node, self.id, "a proposer leads only with its own ballots");
        // Reads waiting under an earlier ballot carry an index that ballot stamped; a
        // newer leader may have decided writes above it meanwhile. They ask again.
        self.answer_reads_not_leader(out);
        if self.bugs.proposer_skips_phase_one() {
            // Planted bug: lead without learning what earlier ballots may have chosen.
            let (next_slot, last_beacon) = (self.learned, self.now);
            self.state = State::Leading {
                ballot,
                next_slot,
                inflight: BTreeMap::new(),
                last_beacon,
            };
            out.local.push(LocalMessage::Event(ProposerEvent::Elected(ballot)));
            return;
        }
        let call_id = self.call_id();
        let call = QuorumCall::new(
            self.nodes.iter().copied(),
            QuorumRule::Majority,
            self.now,
            self.cfg.prepare_timeout_ticks,
        );
        let from_slot = self.learned;
        for to in call.targets() {
            out.send.push((
                to,
                PeerMessage::AcceptorRequest(AcceptorRequest::Prepare {
                    call: call_id,
                    ballot,
                    from_slot,
                }),
            ));
        }
        self.state = State::Preparing {
            ballot,
            call_id,
            call,
            from_slot,
            sent_at: self.now,
            partial: BTreeMap::new(),
        };
    }

    fn on_reply(&mut self, from: NodeId, reply: AcceptorReply, out: &mut ProposerOutput) {
        match (&mut self.state, reply) {
            // A promise for our current phase 1.
            (
                State::Preparing {
                    ballot,
                    call_id,
                    call,
                    partial,
                    from_slot,
                    ..
                },
                AcceptorReply::Promise {
                    call: c,
                    ballot: b,
                    accepted,
                    more_from,
                },
            ) if c == *call_id && b == *ballot => match more_from {
                // Part of a report too large for one message: keep it, ask for the rest.
                Some(next) => {
                    let entry = partial.entry(from).or_insert_with(|| (next, Vec::new()));
                    entry.0 = next;
                    entry.1.extend(accepted);
                    let msg = AcceptorRequest::Prepare {
                        call: c,
                        ballot: b,
                        from_slot: next,
                    };
                    out.send.push((from, PeerMessage::AcceptorRequest(msg)));
                }
                // The whole report (duplicated parts are harmless: recovery keeps the
                // highest ballot per slot).
                None => {
                    let mut report = partial.remove(&from).map(|(_, parts)| parts).unwrap_or_default();
                    report.extend(accepted);
                    if report
                        .iter()
                        .any(|pv| pv.slot > from_slot.saturating_add(MAX_RECOVERY_SLOTS))
                    {
                        // No honest acceptor reports a slot this far ahead: refuse the report.
                        tracing::warn!(from, "promise names a slot far beyond the log; ignored");
                        return;
                    }
                    let reached = call.reply(from, report) == QuorumStatus::Reached;
                    if reached {
                        self.become_leader(out);
                    }
                }
            },
            // An acceptor accepted one of our batches.
            (State::Leading { ballot, inflight, .. }, AcceptorReply::Accepted { call: c, ballot: b, .. })
                if b == *ballot =>
            {
                let reached = inflight.get_mut(&c).is_some_and(|f| {
                    f.call.status() == QuorumStatus::Pending && f.call.reply(from, ()) == QuorumStatus::Reached
                });
                if reached {
                    if from != self.id {
                        self.fastest.retain(|&n| n != from);
                        self.fastest.insert(0, from);
                    }
                    self.maybe_decide(c, out);
                    self.maybe_send_accepts(out);
                }
            }
            // Someone promised a higher ballot: we are preempted, if this was about our ballot.
            (
                State::Preparing { ballot, .. } | State::Leading { ballot, .. },
                AcceptorReply::Rejected {
                    ballot: b, promised, ..
                },
            ) if b == *ballot && promised > *ballot => {
                self.state = State::Idle;
                self.queue.clear();
                self.reads.clear();
                self.flush_decides(out);
                out.local.push(LocalMessage::Event(ProposerEvent::Preempted(promised)));
            }
            // Anything else is stale (an old call or ballot) or a duplicate: ignore it.
            _ => {}
        }
    }

    /// Phase 1 succeeded: adopt the highest-ballot value per slot, fill holes, lead.
    fn become_leader(&mut self, out: &mut ProposerOutput) {
        let State::Preparing {
            ballot,
            call,
            from_slot,
            ..
        } = std::mem::replace(&mut self.state, State::Idle)
        else {
            unreachable!("become_leader is called only while preparing")
        };
        let mut forced: BTreeMap<Slot, (Ballot, Value)> = BTreeMap::new();
        for pv in call.into_replies().into_values().flatten() {
            if pv.slot < from_slot {
                continue;
            }
            match forced.get(&pv.slot) {
                Some((b, _)) if *b >= pv.ballot => {}
                _ => {
                    forced.insert(pv.slot, (pv.ballot, pv.value));
                }
            }
        }
        let end = forced.keys().next_back().map_or(from_slot, |s| s + 1);
        let recovered: Vec<Value> = (from_slot..end)
            .map(|s| forced.remove(&s).map_or(Value::Noop, |(_, v)| v))
            .collect();
        self.state = State::Leading {
            ballot,
            next_slot: from_slot,
            inflight: BTreeMap::new(),
            last_beacon: self.now,
        };
        // Recovery batches go out regardless of the window: they must be decided first.
        let mut batch = Vec::new();
        let mut bytes = 0;
        for value in recovered {
            let size = value.wire_size();
            if !batch.is_empty()
                && (batch.len() == self.cfg.max_batch.max(1) || bytes + size > self.cfg.max_batch_bytes)
            {
                self.send_accept(std::mem::take(&mut batch), false, out);
                bytes = 0;
            }
            bytes += size;
            batch.push(value);
        }
        if !batch.is_empty() {
            self.send_accept(batch, false, out);
        }
        out.local.push(LocalMessage::Event(ProposerEvent::Elected(ballot)));
        self.maybe_send_accepts(out);
    }

    /// Sends queued commands while the window has room.
    fn maybe_send_accepts(&mut self, out: &mut ProposerOutput) {
        while let State::Leading { inflight, .. } = &self.state {
            // Nagle-like: a partial batch leaves only when nothing is in flight; while a
            // batch is out, commands gather into the next one. Only full batches pipeline.
            let nothing_to_send = self.queue.is_empty() && self.reads.is_empty();
            let (n, full) = self.next_batch_len();
            let wait_to_fill = !inflight.is_empty() && !full;
            if inflight.len() >= self.cfg.max_inflight || nothing_to_send || wait_to_fill {
                return;
            }
            // Queued commands, or else an empty batch: a barrier that confirms waiting reads.
            let id = self.id;
            let mut remote = false;
            let values = self
                .queue
                .drain(..n)
                .map(|(from, command)| {
                    remote |= from != id;
                    Value::Command(command)
                })
                .collect();
            self.send_accept(values, remote, out);
        }
    }

    /// How many queued commands the next batch takes (by count and by bytes), and
    /// whether that batch is full.
    fn next_batch_len(&self) -> (usize, bool) {
        let mut bytes = 0;
        for (i, (_, c)) in self.queue.iter().enumerate() {
            let size = c.payload.len() + 32; // as Value::wire_size counts a command
            if i == self.cfg.max_batch.max(1) || (i > 0 && bytes + size > self.cfg.max_batch_bytes) {
                return (i, true);
            }
            bytes += size;
        }
        (self.queue.len(), false)
    }

    /// Assigns the next slots to `values` and starts their phase 2; decisions deferred
    /// so far ride behind the `Accept`s (after them, so that an acceptor starts its
    /// flush before its learner applies).
    fn send_accept(&mut self, values: Vec<Value>, remote: bool, out: &mut ProposerOutput) {
        self.batches += 1;
        self.batched += values.len() as u64;
        let call_id = self.call_id();
        let now = self.now;
        let nodes = self.nodes.iter().copied();
        let State::Leading {
            ballot,
            next_slot,
            inflight,
            ..
        } = &mut self.state
        else {
            unreachable!("send_accept is called only while leading")
        };
        let first_slot = *next_slot;
        *next_slot += values.len() as u64;
        let rule = if self.bugs.proposer_decides_on_minority() {
            QuorumRule::First
        } else {
            QuorumRule::Majority
        };
        let call = QuorumCall::new(nodes, rule, now, u64::MAX);
        // Thrifty: this node and as many of the fastest others as a majority needs,
        // once that many are known; every acceptor otherwise.
        let others = call.targets().count() / 2;
        let thrifty = self.cfg.thrifty && self.fastest.len() >= others;
        let fastest = &self.fastest[..others.min(self.fastest.len())];
        let (sent, skipped): (Vec<NodeId>, Vec<NodeId>) = call
            .targets()
            .partition(|n| !thrifty || *n == self.id || fastest.contains(n));
        for to in sent {
            let msg = AcceptorRequest::Accept {
                call: call_id,
                ballot: *ballot,
                first_slot,
                values: values.clone(),
            };
            out.send.push((to, PeerMessage::AcceptorRequest(msg)));
        }
        inflight.insert(
            call_id,
            Inflight {
                first_slot,
                values,
                call,
                sent_at: now,
                skipped,
                reads: std::mem::take(&mut self.reads),
                remote,
            },
        );
        self.flush_decides(out);
    }

    /// A batch reached its quorum: it is chosen. This node's learner hears at once (its
    /// clients wait on it); the other learners at once only if a client or a read waits
    /// on them, and otherwise with the next `Accept` or tick: under load a `Decide`
    /// shares its frame with an `Accept`, and a lone client's round trip carries no
    /// follower work (Raft piggybacks its commit index on AppendEntries likewise).
    fn maybe_decide(&mut self, call_id: CallId, out: &mut ProposerOutput) {
        let State::Leading { inflight, .. } = &mut self.state else {
            return;
        };
        let Some(batch) = inflight.remove(&call_id) else {
            return;
        };
        for read in &batch.reads {
            let reply = StateMachineMessage::ReadIndexReply {
                id: read.id,
                index: Some(read.index),
            };
            out.send.push((read.from, PeerMessage::StateMachine(reply)));
        }
        let waited_on = batch.remote || batch.reads.iter().any(|r| r.from != self.id);
        if !batch.values.is_empty() {
            let msg = LearnerMessage::Decide {
                first_slot: batch.first_slot,
                values: batch.values.clone(),
                commit: self.learned,
            };
            out.send.push((self.id, PeerMessage::Learner(msg)));
            match self.deferred.last_mut() {
                Some((first, values)) if *first + values.len() as u64 == batch.first_slot => {
                    values.extend(batch.values)
                }
                _ => self.deferred.push((batch.first_slot, batch.values)),
            }
        }
        if waited_on {
            self.flush_decides(out);
        }
    }

    /// Tells the other nodes' learners every decision deferred so far.
    fn flush_decides(&mut self, out: &mut ProposerOutput) {
        if self.deferred.is_empty() {
            return; // Every Accept and tick comes here: most find nothing to send.
        }
        let commit = self.learned;
        let others: Vec<NodeId> = self.nodes.iter().copied().filter(|&n| n != self.id).collect();
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

    fn on_tick(&mut self, out: &mut ProposerOutput) {
        self.now += 1;
        self.fastest.clear();
        // Before any beacon: its `commit` must not run ahead of the decisions sent.
        self.flush_decides(out);
        let now = self.now;
        let retry = self.cfg.retry_ticks;
        match &mut self.state {
            State::Idle => {}
            State::Preparing {
                ballot,
                call_id,
                call,
                from_slot,
                sent_at,
                partial,
            } => {
                if call.tick(now) == QuorumStatus::Expired {
                    let ballot = *ballot;
                    self.state = State::Idle;
                    self.answer_reads_not_leader(out);
                    out.local
                        .push(LocalMessage::Event(ProposerEvent::PrepareTimedOut(ballot)));
                } else if now - *sent_at >= retry {
                    *sent_at = now;
                    for to in call.missing() {
                        // Resume a report that came in parts where it stopped.
                        let from_slot = partial.get(&to).map_or(*from_slot, |(next, _)| *next);
                        let msg = AcceptorRequest::Prepare {
                            call: *call_id,
                            ballot: *ballot,
                            from_slot,
                        };
                        out.send.push((to, PeerMessage::AcceptorRequest(msg)));
                    }
                }
            }
            State::Leading {
                ballot,
                inflight,
                last_beacon,
                ..
            } => {
                for (&call_id, batch) in inflight.iter_mut() {
                    let resend: Vec<NodeId> = if now - batch.sent_at >= retry {
                        // Lost on the way, or a slow acceptor: ask every silent one again.
                        batch.sent_at = now;
                        batch.skipped.clear();
                        batch.call.missing().collect()
                    } else if now - batch.sent_at >= self.cfg.thrifty_ticks {
                        // A thrifty batch waited too long: ask the acceptors it skipped.
                        std::mem::take(&mut batch.skipped)
                    } else {
                        Vec::new()
                    };
                    for to in resend {
                        let msg = AcceptorRequest::Accept {
                            call: call_id,
                            ballot: *ballot,
                            first_slot: batch.first_slot,
                            values: batch.values.clone(),
                        };
                        out.send.push((to, PeerMessage::AcceptorRequest(msg)));
                    }
                }
                if now - *last_beacon >= self.cfg.beacon_ticks {
                    *last_beacon = now;
                    for &to in self.nodes.iter().filter(|&&n| n != self.id) {
                        let msg = LearnerMessage::Decide {
                            first_slot: self.learned,
                            values: Vec::new(),
                            commit: self.learned,
                        };
                        out.send.push((to, PeerMessage::Learner(msg)));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::RequestId;

    fn cmd(seq: u64) -> Command {
        Command {
            id: RequestId { client: 7, seq },
            ack_below: 0,
            payload: vec![seq as u8],
        }
    }

    fn prepares(out: &ProposerOutput) -> Vec<(NodeId, CallId)> {
        out.send
            .iter()
            .filter_map(|(to, m)| match m {
                PeerMessage::AcceptorRequest(AcceptorRequest::Prepare { call, .. }) => Some((*to, *call)),
                _ => None,
            })
            .collect()
    }

    fn accepts(out: &ProposerOutput) -> Vec<(NodeId, CallId, Slot, Vec<Value>)> {
        out.send
            .iter()
            .filter_map(|(to, m)| match m {
                PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
                    call,
                    first_slot,
                    values,
                    ..
                }) => Some((*to, *call, *first_slot, values.clone())),
                _ => None,
            })
            .collect()
    }

    fn promise(call: CallId, ballot: Ballot, accepted: Vec<PValue>) -> AcceptorReply {
        AcceptorReply::Promise {
            call,
            ballot,
            accepted,
            more_from: None,
        }
    }

    /// Runs phase 1 of `b` with two empty promises: `p` leads from slot 0.
    fn become_leader_unopposed(p: &mut Proposer, b: Ballot) {
        let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
        p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
        p.handle(ProposerInput::Reply(2, promise(call, b, vec![])));
        assert!(p.is_leading());
    }

    /// A leader of ballot (1, 1) over nodes 1–3 with room for one batch in flight.
    fn leader_with_window_of_one(cfg: ProposerConfig) -> (Proposer, Ballot) {
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig { max_inflight: 1, ..cfg });
        let b = Ballot::new(1, 1);
        become_leader_unopposed(&mut p, b);
        (p, b)
    }

    #[test]
    fn proposer_recovery_adopts_highest_ballot_and_fills_holes() {
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
        let b = Ballot::new(5, 1);
        let out = p.handle(ProposerInput::Lead(b));
        let call = prepares(&out)[0].1;
        assert_eq!(prepares(&out).len(), 3, "phase 1 goes to every acceptor");
        let old = Value::Command(cmd(1));
        let newer = Value::Command(cmd(2));
        p.handle(ProposerInput::Reply(
            2,
            promise(
                call,
                b,
                vec![
                    PValue {
                        slot: 0,
                        ballot: Ballot::new(1, 2),
                        value: old,
                    },
                    PValue {
                        slot: 2,
                        ballot: Ballot::new(1, 2),
                        value: Value::Command(cmd(3)),
                    },
                ],
            ),
        ));
        let out = p.handle(ProposerInput::Reply(
            3,
            promise(
                call,
                b,
                vec![PValue {
                    slot: 0,
                    ballot: Ballot::new(3, 3),
                    value: newer.clone(),
                }],
            ),
        ));
        assert!(p.is_leading());
        assert_eq!(out.local, vec![LocalMessage::Event(ProposerEvent::Elected(b))]);
        let acc = accepts(&out);
        assert_eq!(acc.len(), 3);
        assert_eq!(acc[0].2, 0);
        assert_eq!(
            acc[0].3,
            vec![newer, Value::Noop, Value::Command(cmd(3))],
            "highest ballot wins; the hole gets a no-op"
        );
        assert_eq!(p.next_slot(), Some(3));
    }

    #[test]
    fn proposer_decides_on_majority_and_batches_queued_commands() {
        let (mut p, b) = leader_with_window_of_one(ProposerConfig::default());
        let out = p.handle(ProposerInput::Propose(1, cmd(1)));
        let first = accepts(&out);
        assert_eq!(first.len(), 3);
        // The window is full: these two wait and then leave together.
        assert!(accepts(&p.handle(ProposerInput::Propose(1, cmd(2)))).is_empty());
        p.handle(ProposerInput::Propose(1, cmd(3)));
        let c = first[0].1;
        let accepted = |from| {
            ProposerInput::Reply(
                from,
                AcceptorReply::Accepted {
                    call: c,
                    ballot: b,
                    first_slot: 0,
                    count: 1,
                },
            )
        };
        assert!(p.handle(accepted(3)).send.is_empty(), "one acceptor is not a majority");
        let out = p.handle(accepted(1));
        let decides = out
            .send
            .iter()
            .filter(|(_, m)| matches!(m, PeerMessage::Learner(LearnerMessage::Decide { first_slot: 0, .. })))
            .count();
        assert_eq!(decides, 3, "every learner hears the decision");
        let next = accepts(&out);
        assert_eq!(next[0].2, 1);
        assert_eq!(next[0].3.len(), 2, "queued commands leave as one batch");
        assert!(p.handle(accepted(2)).send.is_empty(), "a late Accepted changes nothing");
    }

    /// Which nodes a `Decide` for `first_slot` goes to in `out`, in order.
    fn decides_to(out: &ProposerOutput, first_slot: Slot) -> Vec<NodeId> {
        out.send
            .iter()
            .filter(|(_, m)| matches!(m, PeerMessage::Learner(LearnerMessage::Decide { first_slot: f, values, .. }) if *f == first_slot && !values.is_empty()))
            .map(|(to, _)| *to)
            .collect()
    }

    /// `from` accepted the one-value batch `call` at `first_slot`.
    fn accepted_one(from: NodeId, call: CallId, ballot: Ballot, first_slot: Slot) -> ProposerInput {
        ProposerInput::Reply(
            from,
            AcceptorReply::Accepted {
                call,
                ballot,
                first_slot,
                count: 1,
            },
        )
    }

    #[test]
    fn proposer_defers_other_learners_decisions_to_the_next_accept_or_tick() {
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
        let b = Ballot::new(1, 1);
        become_leader_unopposed(&mut p, b);
        let accepted = |from, call, first_slot| accepted_one(from, call, b, first_slot);
        // A command of this node's client: only this node's learner hears at once.
        let c0 = accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].1;
        p.handle(accepted(1, c0, 0));
        assert_eq!(decides_to(&p.handle(accepted(2, c0, 0)), 0), vec![1]);
        // The next Accept carries the deferred decision behind it.
        let out = p.handle(ProposerInput::Propose(1, cmd(2)));
        assert_eq!(decides_to(&out, 0), vec![2, 3], "the others hear with the next Accept");
        let last_accept = out
            .send
            .iter()
            .rposition(|(_, m)| matches!(m, PeerMessage::AcceptorRequest(_)));
        let first_decide = out.send.iter().position(|(_, m)| matches!(m, PeerMessage::Learner(_)));
        assert!(
            last_accept < first_decide,
            "Accepts leave before the Decides behind them"
        );
        // With no next Accept, the tick tells them.
        let c1 = accepts(&out)[0].1;
        p.handle(accepted(1, c1, 1));
        assert_eq!(decides_to(&p.handle(accepted(3, c1, 1)), 1), vec![1]);
        assert_eq!(decides_to(&p.handle(ProposerInput::Tick), 1), vec![2, 3]);
        // A command that came through node 2: its client waits there, so no deferring.
        let c2 = accepts(&p.handle(ProposerInput::Propose(2, cmd(3))))[0].1;
        p.handle(accepted(1, c2, 2));
        assert_eq!(decides_to(&p.handle(accepted(2, c2, 2)), 2), vec![1, 2, 3]);
    }

    #[test]
    fn proposer_thrifty_accepts_go_to_the_fastest_quorum_and_later_to_the_rest() {
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
        let b = Ballot::new(1, 1);
        become_leader_unopposed(&mut p, b);
        let to = |out: &ProposerOutput| accepts(out).iter().map(|a| a.0).collect::<Vec<_>>();
        let accepted = |from, call, first_slot| accepted_one(from, call, b, first_slot);
        // Nobody has answered yet: the first batch goes to every acceptor.
        let out = p.handle(ProposerInput::Propose(1, cmd(1)));
        assert_eq!(to(&out), vec![1, 2, 3]);
        let c0 = accepts(&out)[0].1;
        p.handle(accepted(1, c0, 0));
        p.handle(accepted(3, c0, 0));
        // Node 3 completed the quorum: the next batch goes to this node and node 3 only.
        let out = p.handle(ProposerInput::Propose(1, cmd(2)));
        assert_eq!(to(&out), vec![1, 3], "a thrifty Accept goes to a quorum");
        // Node 3 falls silent: after thrifty_ticks the skipped node 2 is asked too.
        let c1 = accepts(&out)[0].1;
        p.handle(accepted(1, c1, 1));
        assert!(accepts(&p.handle(ProposerInput::Tick)).is_empty());
        assert_eq!(
            to(&p.handle(ProposerInput::Tick)),
            vec![2],
            "the skipped acceptor gets the batch"
        );
        assert_eq!(decides_to(&p.handle(accepted(2, c1, 1)), 1), vec![1]);
        // A tick forgot who was fastest: the next batch measures again, at every acceptor.
        p.handle(ProposerInput::Tick);
        assert_eq!(to(&p.handle(ProposerInput::Propose(1, cmd(3)))), vec![1, 2, 3]);
        // Thrifty off: always every acceptor.
        let cfg = ProposerConfig {
            thrifty: false,
            ..ProposerConfig::default()
        };
        let mut p = Proposer::new(1, vec![1, 2, 3], cfg);
        become_leader_unopposed(&mut p, b);
        let c0 = accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].1;
        p.handle(accepted(1, c0, 0));
        p.handle(accepted(3, c0, 0));
        assert_eq!(to(&p.handle(ProposerInput::Propose(1, cmd(2)))), vec![1, 2, 3]);
    }

    #[test]
    fn proposer_preempted_by_higher_ballot_stops_and_tells_elector() {
        let mut p = Proposer::new(2, vec![1, 2, 3], ProposerConfig::default());
        let b = Ballot::new(1, 2);
        let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
        let out = p.handle(ProposerInput::Reply(
            1,
            AcceptorReply::Rejected {
                call,
                ballot: b,
                promised: Ballot::new(4, 3),
            },
        ));
        assert_eq!(
            out.local,
            vec![LocalMessage::Event(ProposerEvent::Preempted(Ballot::new(4, 3)))]
        );
        assert!(p.ballot().is_none());
        assert!(
            p.handle(ProposerInput::Propose(1, cmd(1))).send.is_empty(),
            "an idle proposer proposes nothing"
        );
    }

    #[test]
    fn proposer_ignores_stale_and_unexpected_replies() {
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
        // A promise for a ballot never sent, before leading at all.
        assert_eq!(
            p.handle(ProposerInput::Reply(2, promise(99, Ballot::new(9, 1), vec![]))),
            ProposerOutput::default()
        );
        let b = Ballot::new(2, 1);
        let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
        // A promise for an older ballot, an Accepted while preparing, and a duplicate.
        p.handle(ProposerInput::Reply(2, promise(call, Ballot::new(1, 1), vec![])));
        p.handle(ProposerInput::Reply(
            2,
            AcceptorReply::Accepted {
                call,
                ballot: b,
                first_slot: 0,
                count: 1,
            },
        ));
        p.handle(ProposerInput::Reply(2, promise(call, b, vec![])));
        p.handle(ProposerInput::Reply(2, promise(call, b, vec![])));
        assert!(
            !p.is_leading(),
            "one acceptor, however often it answers, is not a majority"
        );
        // A rejection of an old ballot does not depose the current one.
        p.handle(ProposerInput::Reply(
            3,
            AcceptorReply::Rejected {
                call: 1,
                ballot: Ballot::new(1, 1),
                promised: Ballot::new(1, 3),
            },
        ));
        assert_eq!(p.ballot(), Some(b));
    }

    #[test]
    fn proposer_resends_to_silent_acceptors_and_times_out_phase_one() {
        let cfg = ProposerConfig {
            retry_ticks: 2,
            prepare_timeout_ticks: 5,
            ..ProposerConfig::default()
        };
        let mut p = Proposer::new(1, vec![1, 2, 3], cfg);
        let b = Ballot::new(1, 1);
        let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
        p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
        p.handle(ProposerInput::Tick);
        let resent = prepares(&p.handle(ProposerInput::Tick));
        assert_eq!(
            resent,
            vec![(2, call), (3, call)],
            "resent only to those that did not answer"
        );
        let mut events = Vec::new();
        for _ in 0..5 {
            events.extend(p.handle(ProposerInput::Tick).local);
        }
        assert_eq!(events, vec![LocalMessage::Event(ProposerEvent::PrepareTimedOut(b))]);
    }

    #[test]
    fn proposer_read_index_confirmed_only_by_a_quorum_after_the_read() {
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
        let id = RequestId { client: 9, seq: 1 };
        // Not leading: the asker is told to ask again.
        let out = p.handle(ProposerInput::ReadIndex(2, id));
        assert_eq!(
            out.send,
            vec![(
                2,
                PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index: None })
            )]
        );
        let b = Ballot::new(1, 1);
        become_leader_unopposed(&mut p, b);
        let first = accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].1;
        // A read arriving now must see slot 0: its index is 1. It waits for a batch sent
        // after it arrived: the one in flight does not count.
        assert!(
            accepts(&p.handle(ProposerInput::ReadIndex(3, id))).is_empty(),
            "the barrier waits for the batch in flight"
        );
        let done = |from| {
            ProposerInput::Reply(
                from,
                AcceptorReply::Accepted {
                    call: first,
                    ballot: b,
                    first_slot: 0,
                    count: 1,
                },
            )
        };
        p.handle(done(1));
        let out = p.handle(done(2));
        assert!(
            !out.send.iter().any(|(_, m)| matches!(m, PeerMessage::StateMachine(_))),
            "the earlier batch confirms nothing"
        );
        let barrier = accepts(&out);
        assert_eq!(barrier.len(), 2, "a thrifty barrier: this node and node 2");
        assert!(barrier[0].3.is_empty(), "with no commands queued the barrier is empty");
        let c = barrier[0].1;
        let accepted = |from| {
            ProposerInput::Reply(
                from,
                AcceptorReply::Accepted {
                    call: c,
                    ballot: b,
                    first_slot: 1,
                    count: 0,
                },
            )
        };
        assert!(
            p.handle(accepted(1)).send.is_empty(),
            "one acceptor does not confirm leadership"
        );
        let out = p.handle(accepted(2));
        assert_eq!(
            out.send,
            vec![(
                3,
                PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index: Some(1) })
            )],
            "no Decide for an empty barrier"
        );
    }

    #[test]
    fn proposer_new_ballot_sends_pending_reads_away() {
        let (mut p, _) = leader_with_window_of_one(ProposerConfig::default());
        p.handle(ProposerInput::Propose(1, cmd(1)));
        let id = RequestId { client: 9, seq: 1 };
        p.handle(ProposerInput::ReadIndex(3, id)); // waits behind the batch in flight
        // A newer ballot: the read's index was stamped under the old one; it must ask again.
        let out = p.handle(ProposerInput::Lead(Ballot::new(2, 1)));
        let none = PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index: None });
        assert!(out.send.contains(&(3, none)), "the pending read is told to ask again");
    }

    #[test]
    fn proposer_batches_are_capped_by_bytes_so_they_fit_a_frame() {
        let (mut p, b) = leader_with_window_of_one(ProposerConfig {
            max_batch_bytes: 1000,
            ..ProposerConfig::default()
        });
        let big = |seq| Command {
            id: RequestId { client: 7, seq },
            ack_below: 0,
            payload: vec![0; 600],
        };
        let first = accepts(&p.handle(ProposerInput::Propose(1, big(1))));
        for seq in 2..=4 {
            p.handle(ProposerInput::Propose(1, big(seq)));
        }
        let c = first[0].1;
        p.handle(ProposerInput::Reply(
            1,
            AcceptorReply::Accepted {
                call: c,
                ballot: b,
                first_slot: 0,
                count: 1,
            },
        ));
        let out = p.handle(ProposerInput::Reply(
            2,
            AcceptorReply::Accepted {
                call: c,
                ballot: b,
                first_slot: 0,
                count: 1,
            },
        ));
        let next = accepts(&out);
        assert_eq!(
            next[0].3.len(),
            1,
            "two 600-byte commands exceed 1000 bytes: one per batch"
        );
    }

    #[test]
    fn proposer_counts_an_acceptor_only_once_its_report_is_whole() {
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
        let b = Ballot::new(3, 1);
        let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
        let pv = |slot, seq| PValue {
            slot,
            ballot: Ballot::new(1, 2),
            value: Value::Command(cmd(seq)),
        };
        let part = AcceptorReply::Promise {
            call,
            ballot: b,
            accepted: vec![pv(0, 1)],
            more_from: Some(1),
        };
        let out = p.handle(ProposerInput::Reply(2, part));
        assert_eq!(prepares(&out), vec![(2, call)], "the rest is asked for");
        p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
        assert!(!p.is_leading(), "a partial report does not count toward the quorum");
        let rest = AcceptorReply::Promise {
            call,
            ballot: b,
            accepted: vec![pv(1, 2)],
            more_from: None,
        };
        let out = p.handle(ProposerInput::Reply(2, rest));
        assert!(p.is_leading());
        assert_eq!(
            accepts(&out)[0].3,
            vec![Value::Command(cmd(1)), Value::Command(cmd(2))],
            "both parts were recovered"
        );
    }
}
