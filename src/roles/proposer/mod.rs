//! # Proposer
//!
//! The proposer is the Multi-Paxos leader's engine (Lamport, "Paxos Made Simple" §3;
//! van Renesse and Altinbuken, "Paxos Made Moderately Complex", PMMC below, §3: the
//! Leader with its Scouts and Commanders). It is idle until the
//! leader-elector tells it to lead with a ballot; then:
//!
//! 1. **Phase 1, once per ballot, for all slots**: a quorum call of `Prepare { ballot,
//!    from_slot }` to every acceptor, `from_slot` being the first slot this node has not
//!    learned. A majority of `Promise`s reports each acceptor's floor (every slot below
//!    is decided) and which slots it accepted values in, at which ballots; no values.
//! 2. **Recovery, by selective synchronisation**: above the highest floor of the
//!    quorum, for each slot reported, the value with the highest ballot is pulled
//!    (`Pull`/`Pulled`) from one acceptor that holds it at that ballot (this node's own
//!    if it does; the rest spread over the others, in parallel) and proposed again; the
//!    holes up to the highest reported slot are filled with no-ops. Nothing is proposed
//!    below the highest floor; this node's learner is told to catch up there
//!    (`CatchUp`) if it is behind.
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
//! because a hole would stall every state machine. Reads waiting on a ballot this
//! proposer leaves are told to ask again (`ReadIndexReply { index: None }`).
//!
//! **Invariant.** In a ballot `b`, the proposer proposes in slot `s` only the value that
//! phase 1 of `b` forced on it (the value accepted at the highest ballot a promise
//! reported for `s`, pulled from an acceptor that reported `s` at that very ballot) or,
//! if none was reported, a value of its own choosing, never two different values for
//! one slot, and nothing below the highest floor its quorum reported. Together with the
//! acceptor's invariant this keeps one value chosen per slot.
//!
//! **Why a promise never has to carry a compacted value.** An acceptor forgets a slot
//! only once its node holds a durable snapshot of it, i.e. once the slot is decided; it
//! reports that as its floor. The proposer starts proposing at the highest floor of its
//! quorum, so it never needs to know what was accepted below: those slots are decided
//! already, and its own learner fetches them (a snapshot or the values) from a node that
//! has them. Above that floor every acceptor of the quorum still reports what it
//! accepted, so each slot's majority intersection argument (P2c) holds as before.
//! `phase1.rs` argues the pulls.
//!
//! **Membership change** (`crate::messages::membership`; Lamport, Malkhi and Zhou,
//! "Stoppable Paxos", 2008; Omni-Paxos's StopSign). The proposer belongs to one
//! configuration at a time (its id, [`Proposer::config_id`]; its members are the
//! acceptors and learners it talks to) and leads only ballots of it.
//!
//! - `ProposeStop`: a StopSign waits in the queue in order with the commands, under the
//!   same rules (dropped by a proposer with no ballot or a full queue; the asking node
//!   retries).
//! - **Stop rule** (phase 2): once a StopSign of this configuration has a slot `s`, the
//!   ballot assigns no slot above `s`: the StopSign ends its batch, later commands stay
//!   queued, and reads arriving now wait, with no barrier ([`Proposer::stopped_at`]).
//!   Only a StopSign naming the configuration in force stops: one naming an older one
//!   (a second change raced with the first) is decided as a no-op by every state
//!   machine (rule 4), so it is proposed like a command. A leader of configuration `c`
//!   assigns only slots that `c` decides, so "names `c`" gives the same answer here as
//!   in the state machine; stopping at a StopSign no state machine applies would stop
//!   the log for good.
//! - **Recovery rule** (phase 1): the lowest StopSign phase 1 forces is proposed again
//!   with nothing after it, unless a value after it was reported at a higher ballot, in
//!   which case it was not chosen and becomes a no-op (`phase1.rs` argues why).
//! - `Reconfigure(config)`, once the state machine applied the StopSign (ignored unless
//!   `config` is newer): the members change (the old ones' learners hear every deferred
//!   decision first), every slot below `config.start` counts as learned (no phase 1 of
//!   `config` reaches below it, where older configurations decided), a ballot of the
//!   older configuration is left (its reads ask again) but the queue is kept: the
//!   commands that waited behind the StopSign go out if this node is ordered to lead
//!   `config` (a `StepDown` drops them as ever). A node that is no member drops them
//!   and leads nothing. A `Lead` with a ballot of an older configuration is refused
//!   with `Preempted(c:0.0)` (the elector is behind); one of a newer configuration
//!   waits for its `Reconfigure`.
//!
//! **Left out.** Leases and read-only fast paths (a later issue); serving reads past a
//! StopSign (they wait for the next configuration's leader); handing the queue over to
//! the next configuration's leader when this node does not lead it (its nodes propose
//! the commands again).
//!
//! # Layout
//!
//! | file | holds |
//! |------|-------|
//! | `mod.rs` | this essay, [`Proposer`], [`ProposerConfig`], [`ProposerInput`], and [`Proposer::handle`]: one `match` on the input |
//! | `phase1.rs` | prepare, summaries whole or in parts, floors, the plan and the pulls of the values it forces, no-op filling, the recovery cut at a StopSign, becoming leader |
//! | `phase2.rs` | accept, accepted, decide, deferred decides, the pipelining window, the stop rule, thrifty acceptors, resends, beacons |
//! | `reads.rs` | linearizable reads: read-index waiting and answering |
//!
//! The state is one `State` per ballot: `Idle`, `Preparing` (phase 1's own struct) or
//! `Leading` (phase 2's own struct, with the reads waiting on it). What outlives a
//! ballot (identity, configuration and its members, clock, the queue of commands and
//! StopSigns, decisions not yet told to the other learners) is `Shared`, which the per-phase methods are handed. A transition
//! assigns the next state; no state is ever taken apart to build the next one.

mod phase1;
mod phase2;
mod reads;
#[cfg(test)]
mod tests;

use super::bugs::PlantedBugs;
use super::ready::Ready;
use crate::messages::acceptor::CallId;
use crate::messages::codec;
use crate::messages::local::{LocalMessage, ProposerEvent};
use crate::messages::{
    AcceptorReply, Ballot, Command, ConfigId, Configuration, NodeId, RequestId, Slot, StopSign, Value,
};
use phase1::Preparing;
use phase2::Leading;
use std::collections::VecDeque;

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
            max_batch_bytes: codec::message_budget(codec::DEFAULT_MAX_FRAME),
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
    /// From a node (this one or another): a membership change to put in the log.
    ProposeStop(NodeId, StopSign),
    /// From the local state machine: this configuration is in force here.
    Reconfigure(Configuration),
    Tick,
}

/// What the proposer asks to have done.
pub type ProposerOutput = Ready;

/// Where the proposer stands in its current ballot.
#[derive(Debug)]
enum State {
    /// No ballot: not asked to lead, deposed, or phase 1 timed out.
    Idle,
    /// Phase 1 of a ballot runs.
    Preparing(Preparing),
    /// Phase 1 succeeded: phase 2 for every new slot.
    Leading(Leading),
}

/// What outlives a ballot, and what every phase reads or adds to.
#[derive(Debug)]
struct Shared {
    id: NodeId,
    /// The acceptors and learners of the configuration in force here: Prepare, Pull,
    /// Accept and Decide go to them, and majorities are of them.
    nodes: Vec<NodeId>,
    /// The configuration in force here ([`Configuration::id`]): every ballot this
    /// proposer leads is of it.
    config: ConfigId,
    /// A `Lead` with a ballot of a configuration this node has not applied yet (the
    /// elector heard of it first): started once the configuration is in force here.
    pending_lead: Option<Ballot>,
    cfg: ProposerConfig,
    /// Ticks so far.
    now: u64,
    next_call: CallId,
    /// Every slot below this is learned by this node's learner.
    learned: Slot,
    /// Values waiting for a batch (commands and StopSigns, in the order they came), with
    /// the node each came through. They wait through phase 1 too, and leave once this
    /// node leads; behind a StopSign they wait for the next configuration.
    queue: VecDeque<(NodeId, Value)>,
    /// Decided batches the other nodes' learners have not been told of yet, merged where
    /// consecutive. They leave behind the next `Accept`, at the next tick, or at once
    /// when another node waits on them (see [`Leading::decide`]).
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

impl Shared {
    /// A fresh call id (phase 1 and every batch of phase 2 each get one).
    fn call_id(&mut self) -> CallId {
        self.next_call += 1;
        self.next_call
    }
}

/// The proposer's state machine: no I/O.
#[derive(Debug)]
pub struct Proposer {
    state: State,
    shared: Shared,
}

impl Proposer {
    pub fn new(id: NodeId, nodes: Vec<NodeId>, cfg: ProposerConfig) -> Self {
        Proposer {
            state: State::Idle,
            shared: Shared {
                id,
                nodes,
                config: 0,
                pending_lead: None,
                cfg,
                now: 0,
                next_call: 1,
                learned: 0,
                queue: VecDeque::new(),
                deferred: Vec::new(),
                fastest: Vec::new(),
                batches: 0,
                batched: 0,
                bugs: PlantedBugs::default(),
            },
        }
    }

    /// Test-only: plants bugs (see [`PlantedBugs`]).
    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Self {
        self.shared.bugs = bugs;
        self
    }

    /// The configuration in force on this node at start (default 0, the config file's);
    /// `nodes` given to [`Proposer::new`] are its members.
    pub fn with_config_id(mut self, config: ConfigId) -> Self {
        self.shared.config = config;
        self
    }

    /// The configuration this proposer proposes in.
    pub fn config_id(&self) -> ConfigId {
        self.shared.config
    }

    /// The acceptors (and learners) it talks to: the members of its configuration.
    pub fn nodes(&self) -> &[NodeId] {
        &self.shared.nodes
    }

    /// While leading: the slot of the StopSign this proposer assigned (or recovered),
    /// above which it assigns nothing in this configuration.
    pub fn stopped_at(&self) -> Option<Slot> {
        match &self.state {
            State::Leading(l) => l.stopped_at(),
            _ => None,
        }
    }

    /// The ballot this proposer leads (or tries to lead) with.
    pub fn ballot(&self) -> Option<Ballot> {
        match &self.state {
            State::Idle => None,
            State::Preparing(p) => Some(p.ballot()),
            State::Leading(l) => Some(l.ballot()),
        }
    }

    pub fn is_leading(&self) -> bool {
        matches!(self.state, State::Leading(_))
    }

    /// The next slot a new command would get, while leading.
    pub fn next_slot(&self) -> Option<Slot> {
        match &self.state {
            State::Leading(l) => Some(l.next_slot()),
            _ => None,
        }
    }

    pub fn inflight(&self) -> usize {
        match &self.state {
            State::Leading(l) => l.inflight(),
            _ => 0,
        }
    }

    /// Accept batches sent, and the values they carried.
    pub fn batch_counts(&self) -> (u64, u64) {
        (self.shared.batches, self.shared.batched)
    }

    pub fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    pub fn handle(&mut self, input: ProposerInput) -> ProposerOutput {
        let mut out = Ready::default();
        match input {
            // The elector made us a candidate: start phase 1 for every slot not yet
            // learned (phase1.rs).
            ProposerInput::Lead(ballot) => self.lead(ballot, &mut out),
            // The elector deposed us: forget the ballot; queued commands go with it and
            // waiting reads are told to ask again. What was decided stays decided: the
            // other learners hear of it still.
            ProposerInput::StepDown => self.stand_down(&mut out),
            // A command: queue it (phase 1 or 2); it leaves at once if the window has
            // room and no StopSign went before it (phase2.rs).
            ProposerInput::Propose(from, command) => self.propose(from, Value::Command(command), &mut out),
            // A read: only a leader confirmed by a quorum after the read began may
            // answer (reads.rs).
            ProposerInput::ReadIndex(from, id) => self.read_index(from, id, &mut out),
            // A phase-1 summary, whole or in parts; a quorum of them starts the pulls
            // (phase1.rs).
            ProposerInput::Reply(
                from,
                AcceptorReply::Promise {
                    call,
                    ballot,
                    decided_below,
                    accepted,
                    more_from,
                },
            ) => {
                let promise = phase1::Promise {
                    from,
                    decided_below,
                    accepted,
                    more_from,
                };
                self.on_promise(call, ballot, promise, &mut out)
            }
            // Values phase 1 forces, pulled from an acceptor holding them; once all are
            // in, we lead (phase1.rs).
            ProposerInput::Reply(
                from,
                AcceptorReply::Pulled {
                    call,
                    ballot,
                    first_slot,
                    values,
                    more_from,
                },
            ) => {
                let pulled = phase1::Pulled {
                    from,
                    first_slot,
                    values,
                    more_from,
                };
                self.on_pulled(call, ballot, pulled, &mut out)
            }
            // An acceptor accepted one of our batches; a quorum decides it (phase2.rs).
            ProposerInput::Reply(from, AcceptorReply::Accepted { call, ballot, .. }) => {
                self.on_accepted(from, call, ballot, &mut out)
            }
            // Someone promised a higher ballot: if it was about ours, we are preempted.
            ProposerInput::Reply(_, AcceptorReply::Rejected { ballot, promised, .. }) => {
                if self.ballot().is_some_and(|ours| ballot == ours && promised > ours) {
                    self.stand_down(&mut out);
                    out.local.push(LocalMessage::Event(ProposerEvent::Preempted(promised)));
                }
            }
            // The local learner progressed (it may stay below the floor phase 1 started
            // at for a while: `commit` and the next phase 1 just start lower).
            ProposerInput::Learned(slot) => self.shared.learned = self.shared.learned.max(slot),
            // A membership change: queued like a command, in order with them; once it
            // has a slot, nothing is assigned above it (phase2.rs).
            ProposerInput::ProposeStop(from, stop) => self.propose(from, Value::StopSign(stop), &mut out),
            // A StopSign was applied here: talk to the next configuration's members,
            // leave a ballot of the old one, keep the queue for the next (see below).
            ProposerInput::Reconfigure(config) => self.reconfigure(config, &mut out),
            // Time passes: tell the other learners what was decided; resend what is
            // unanswered, expire phase 1 (phase1.rs), send a beacon (phase2.rs).
            ProposerInput::Tick => {
                self.shared.now += 1;
                self.shared.fastest.clear();
                // Before any beacon: its `commit` must not run ahead of the decisions sent.
                self.shared.flush_decides(&mut out);
                match &mut self.state {
                    State::Idle => {}
                    State::Preparing(_) => self.tick_phase1(&mut out),
                    State::Leading(l) => l.on_tick(&self.shared, &mut out),
                }
            }
        }
        out
    }

    /// Leaves the current ballot for good (deposed or preempted): the other learners
    /// hear every decision, waiting reads are told to ask again, queued commands are
    /// dropped (their nodes propose them again to the next leader).
    fn stand_down(&mut self, out: &mut ProposerOutput) {
        self.shared.flush_decides(out);
        self.leave_ballot(out);
        self.shared.queue.clear();
        self.shared.pending_lead = None;
    }

    /// `Reconfigure(config)`: a StopSign was applied on this node (or a snapshot holding
    /// it restored), so `config` decides every slot from `config.start` on. Ignored
    /// unless newer than the configuration in force here (ids never go back; a restarted
    /// node replays old StopSigns). Otherwise the proposer talks to `config`'s members
    /// from now on, counts its majorities among them, and leaves a ballot of the older
    /// configuration (its waiting reads ask again), keeping its queue: the commands that
    /// waited behind the StopSign go out if this node is ordered to lead `config`. A
    /// node that is no member drops them.
    fn reconfigure(&mut self, config: Configuration, out: &mut ProposerOutput) {
        let s = &mut self.shared;
        if config.id <= s.config {
            // Told again (a restart, a replayed StopSign): nothing new, but every slot
            // below its start is decided all the same.
            if config.id == s.config {
                s.learned = s.learned.max(config.start);
            }
            return;
        }
        // The old members' learners hear every decision before the members change.
        s.flush_decides(out);
        s.config = config.id;
        s.nodes = config.ids();
        s.fastest.clear();
        // Every slot below `start` is decided (this node applied the StopSign before
        // it): a phase 1 of `config` never reaches below, where older configurations
        // decided.
        s.learned = s.learned.max(config.start);
        if self.ballot().is_some_and(|b| b.config < config.id) {
            self.leave_ballot(out);
        }
        let member = config.contains(self.shared.id);
        if !member {
            // Removed: this node leads nothing in `config`.
            self.shared.queue.clear();
            self.shared.pending_lead = None;
        }
        match self.shared.pending_lead.take() {
            // The elector heard of `config` before we did: lead now.
            Some(ballot) if ballot.config == config.id => self.lead(ballot, out),
            // Of a configuration still ahead: keep waiting for it.
            Some(ballot) if ballot.config > config.id => self.shared.pending_lead = Some(ballot),
            _ => {}
        }
    }

    /// Forgets the current ballot; the reads waiting on it ask again.
    fn leave_ballot(&mut self, out: &mut ProposerOutput) {
        if let State::Leading(l) = &mut self.state {
            l.answer_reads_not_leader(out);
        }
        self.state = State::Idle;
    }
}
