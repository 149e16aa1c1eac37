//! # Learner
//!
//! The learner finds out which value each slot chose and hands decided commands to the
//! state machine strictly in slot order (Lamport, "Paxos Made Simple" §2.3; PMMC §3,
//! the Replica's `decisions`).
//!
//! **How it learns.** From the leader's `Decide`: the proposer already counts a quorum of
//! `Accepted` for each batch (a quorum call), so it tells every learner the batch's
//! values instead of every acceptor telling every learner (n messages per batch instead
//! of n², at the price of one extra hop; the proposer defers the other nodes' `Decide`s to
//! its next `Accept` or tick). A learner that missed decisions, or
//! restarted, notices a gap between what it has and the `commit` index the leader's
//! `Decide` messages (and empty beacons) carry, and asks the sender with `Fetch`; any
//! learner answers `Fetch` with `Fetched` from its own decided log.
//!
//! **Invariant.** A slot, once learned, never changes: learning a different value for a
//! slot still held in memory is a safety violation and panics (applied slots are
//! compared across nodes by the tests' safety checks instead). Decided values leave for
//! the state machine in slot order, each exactly once per incarnation, with no gap.
//!
//! **Memory.** Only values not yet handed to the state machine stay in memory; the rest
//! live in the decided log on disk. A `Fetch` for applied slots is answered from there:
//! the core says which slots to serve (`LearnerOutput::serve`) and the actor reads them.
//!
//! **Left out.** Log truncation after a snapshot (a later issue): the decided log on disk
//! is kept whole.

use super::proposer::Learned;
use super::state_machine::ApplyBatch;
use super::{FromPeer, Halt, Peers, PlantedBugs};
use crate::messages::{LearnerMessage, MAX_SLOT, NodeId, PeerMessage, Slot, Value};
use crate::storage::DecidedLog;
use actix::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct LearnerConfig {
    /// Ask again after this many ticks without an answer.
    pub fetch_retry_ticks: u64,
    /// Most slots in one `Fetched`.
    pub max_fetch: u64,
    /// Most payload bytes in one `Fetched` (it must fit a transport frame); at least
    /// one value is sent whatever its size.
    pub max_fetch_bytes: usize,
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            fetch_retry_ticks: 20,
            max_fetch: 1024,
            max_fetch_bytes: 1 << 20,
        }
    }
}

#[derive(Debug)]
pub enum LearnerInput {
    Peer(NodeId, LearnerMessage),
    Tick,
}

/// What the learner asks its actor to do.
#[derive(Debug, Default, PartialEq)]
pub struct LearnerOutput {
    /// Newly learned values, to write to the decided log.
    pub persist: Vec<(Slot, Value)>,
    /// Values for the state machine, consecutive, in slot order.
    pub apply: Vec<(Slot, Value)>,
    pub send: Vec<(NodeId, PeerMessage)>,
    /// Fetches to answer from the decided log on disk: (peer, first slot, end slot).
    pub serve: Vec<(NodeId, Slot, Slot)>,
    /// Every slot below this one is now learned (tell the proposer).
    pub learned: Option<Slot>,
}

/// The learner's state machine: no I/O.
#[derive(Debug)]
pub struct Learner {
    id: NodeId,
    cfg: LearnerConfig,
    now: u64,
    /// Decided values not yet handed to the state machine (slots from `next` on).
    log: BTreeMap<Slot, Value>,
    /// The first slot not yet handed to the state machine.
    next: Slot,
    /// The highest commit index a leader announced.
    commit: Slot,
    bugs: PlantedBugs,
    /// Who announced it, to fetch from.
    source: Option<NodeId>,
    /// An outstanding fetch: from which slot, sent when.
    fetching: Option<(Slot, u64)>,
}

impl Learner {
    /// A learner with its persisted log, handing the state machine slots from `next` on
    /// (values below `next` are applied already and are not kept in memory).
    pub fn restore(id: NodeId, cfg: LearnerConfig, mut log: BTreeMap<Slot, Value>, next: Slot) -> Self {
        Learner {
            id,
            cfg,
            now: 0,
            log: log.split_off(&next),
            next,
            commit: 0,
            source: None,
            fetching: None,
            bugs: PlantedBugs::default(),
        }
    }

    /// Test-only: plants bugs (see [`PlantedBugs`]).
    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Self {
        self.bugs = bugs;
        self
    }

    pub fn config(&self) -> &LearnerConfig {
        &self.cfg
    }

    /// The first slot not yet handed to the state machine.
    pub fn next(&self) -> Slot {
        self.next
    }

    pub fn commit(&self) -> Slot {
        self.commit.max(self.next)
    }

    /// Decided values not yet handed to the state machine.
    pub fn pending(&self) -> &BTreeMap<Slot, Value> {
        &self.log
    }

    /// Hands over what the persisted log already holds (after a restart).
    /// Always reports where the log stands, even with nothing to hand over (a snapshot
    /// may cover the whole log): the proposer's phase 1 starts from there, not from 0.
    pub fn start(&mut self) -> LearnerOutput {
        let mut out = LearnerOutput::default();
        self.deliver(&mut out);
        out.learned = Some(self.next);
        out
    }

    pub fn handle(&mut self, input: LearnerInput) -> LearnerOutput {
        let mut out = LearnerOutput::default();
        match input {
            // The leader's decision (or its empty beacon): learn, deliver, fetch any gap.
            LearnerInput::Peer(
                from,
                LearnerMessage::Decide {
                    first_slot,
                    values,
                    commit,
                },
            ) => {
                if commit > self.commit {
                    self.commit = commit;
                    self.source = Some(from);
                }
                self.learn(first_slot, values, &mut out);
                self.maybe_fetch(from, &mut out);
            }
            // Another learner asks for slots it lacks: send what we have, consecutive;
            // applied slots are on disk only, so the actor serves those.
            LearnerInput::Peer(from, LearnerMessage::Fetch { from: first, to }) => {
                if first < self.next {
                    out.serve.push((from, first, to.min(self.next)));
                } else {
                    let reply = fetched(&self.cfg, first, to, |s| {
                        Ok::<_, std::convert::Infallible>(self.log.get(&s).cloned())
                    });
                    out.send
                        .push((from, PeerMessage::Learner(reply.unwrap_or_else(|e| match e {}))));
                }
            }
            // The answer to our fetch.
            // An empty answer leaves the retry timer running: the sender has nothing yet,
            // so asking again at once (every tick) would only flood it.
            LearnerInput::Peer(from, LearnerMessage::Fetched { first_slot, values }) => {
                if !values.is_empty() {
                    self.fetching = None;
                    self.learn(first_slot, values, &mut out);
                    self.maybe_fetch(from, &mut out);
                }
            }
            // Time passes: retry a fetch that went unanswered.
            LearnerInput::Tick => {
                self.now += 1;
                if let Some(source) = self.source {
                    self.maybe_fetch(source, &mut out);
                }
            }
        }
        out
    }

    fn learn(&mut self, first_slot: Slot, values: Vec<Value>, out: &mut LearnerOutput) {
        if first_slot.saturating_add(values.len() as u64) > MAX_SLOT {
            return; // Corrupt: no real log reaches that far.
        }
        for (slot, value) in (first_slot..).zip(values) {
            match self.log.get(&slot) {
                Some(known) => assert_eq!(known, &value, "slot {slot} decided twice with different values"),
                None if slot < self.next => {} // applied and no longer in memory
                None => {
                    self.commit = self.commit.max(slot + 1);
                    if self.bugs.learner_applies_out_of_order {
                        out.apply.push((slot, value.clone())); // Planted bug: no waiting for gaps.
                    }
                    out.persist.push((slot, value.clone()));
                    self.log.insert(slot, value);
                }
            }
        }
        self.deliver(out);
    }

    fn deliver(&mut self, out: &mut LearnerOutput) {
        if self.bugs.learner_applies_out_of_order {
            return;
        }
        let start = self.next;
        while let Some(value) = self.log.remove(&self.next) {
            out.apply.push((self.next, value));
            self.next += 1;
        }
        if self.next > start {
            out.learned = Some(self.next);
        }
    }

    /// If slots below the known commit index are missing, ask `from` for them (once per
    /// retry interval).
    fn maybe_fetch(&mut self, from: NodeId, out: &mut LearnerOutput) {
        if from == self.id || self.commit <= self.next {
            return;
        }
        if let Some((slot, at)) = self.fetching
            && slot == self.next
            && self.now - at < self.cfg.fetch_retry_ticks
        {
            return;
        }
        // Stop at the first slot we already hold, so we do not fetch what we have.
        let held = self.log.range(self.next..).next().map_or(self.commit, |(&s, _)| s);
        let to = held.min(self.commit).min(self.next + self.cfg.max_fetch);
        if to <= self.next {
            return;
        }
        self.fetching = Some((self.next, self.now));
        out.send.push((
            from,
            PeerMessage::Learner(LearnerMessage::Fetch { from: self.next, to }),
        ));
    }
}

/// The `Fetched` answer to a `Fetch` for `[first, to)`: consecutive values from
/// `lookup`, at most `max_fetch` of them and (past the first) `max_fetch_bytes`.
pub fn fetched<E>(
    cfg: &LearnerConfig,
    first: Slot,
    to: Slot,
    mut lookup: impl FnMut(Slot) -> Result<Option<Value>, E>,
) -> Result<LearnerMessage, E> {
    let to = to.min(first.saturating_add(cfg.max_fetch));
    let (mut values, mut bytes) = (Vec::new(), 0);
    for slot in first..to {
        let Some(value) = lookup(slot)? else { break };
        bytes += value.wire_size();
        if !values.is_empty() && bytes > cfg.max_fetch_bytes {
            break;
        }
        values.push(value);
    }
    Ok(LearnerMessage::Fetched {
        first_slot: first,
        values,
    })
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LearnerStatus {
    /// First slot not yet handed to the state machine (= decided prefix length).
    pub next_undecided: Slot,
    pub commit: Slot,
    /// Decided values waiting in memory for the state machine.
    pub pending_slots: u64,
    pub handled: u64,
    pub fetches_sent: u64,
}

#[derive(Message)]
#[rtype(result = "LearnerStatus")]
pub struct GetLearnerStatus;

/// From the state machine, before it installs a snapshot: make every decided value
/// written so far durable (the slots a snapshot covers must stay servable to lagging
/// peers after a power loss; there is no snapshot shipping yet). Answers when synced.
#[derive(Message)]
#[rtype(result = "crate::Result<()>")]
pub struct SyncDecided;

/// A copy of the decided log, for tests that compare nodes slot by slot.
#[derive(Message)]
#[rtype(result = "BTreeMap<Slot, Value>")]
pub struct GetDecidedLog;

/// The learner actor: persists learned values, feeds the state machine.
pub struct LearnerActor {
    core: Learner,
    log: DecidedLog,
    peers: Peers,
    state_machine: Recipient<ApplyBatch>,
    tick: std::time::Duration,
    handled: u64,
    fetches_sent: u64,
}

impl LearnerActor {
    pub fn new(
        core: Learner,
        log: DecidedLog,
        peers: Peers,
        state_machine: Recipient<ApplyBatch>,
        tick: std::time::Duration,
    ) -> Self {
        LearnerActor {
            core,
            log,
            peers,
            state_machine,
            tick,
            handled: 0,
            fetches_sent: 0,
        }
    }

    fn emit(&mut self, out: LearnerOutput) {
        if !out.persist.is_empty()
            && let Err(e) = self.log.append(&out.persist)
        {
            // The values stay decided at the acceptors; a restart fetches them again.
            tracing::error!(node = self.peers.id, role = "learner", error = %e, "cannot write decided log");
        }
        if !out.apply.is_empty() {
            let (first, last) = (out.apply[0].0, out.apply[out.apply.len() - 1].0);
            tracing::debug!(node = self.peers.id, role = "learner", slot = first, last, "deliver");
            self.state_machine.do_send(ApplyBatch(out.apply));
        }
        if let Some(slot) = out.learned {
            self.peers.local.proposer.do_send(Learned(slot));
        }
        for (peer, first, to) in out.serve {
            let mut cache = None;
            match fetched(self.core.config(), first, to, |s| self.log.get(s, &mut cache)) {
                Ok(reply) => self.peers.send(peer, PeerMessage::Learner(reply)),
                Err(e) => {
                    tracing::error!(node = self.peers.id, role = "learner", error = %e, "cannot read decided log")
                }
            }
        }
        self.fetches_sent += out
            .send
            .iter()
            .filter(|(_, m)| matches!(m, PeerMessage::Learner(LearnerMessage::Fetch { .. })))
            .count() as u64;
        self.peers.send_all(out.send);
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let out = self.core.start();
        self.emit(out);
        ctx.run_interval(self.tick, |act, _| {
            let out = act.core.handle(LearnerInput::Tick);
            act.emit(out);
        });
    }
}

impl Handler<FromPeer<LearnerMessage>> for LearnerActor {
    type Result = ();

    fn handle(&mut self, FromPeer(from, msg): FromPeer<LearnerMessage>, _: &mut Context<Self>) {
        self.handled += 1;
        if let LearnerMessage::Decide {
            first_slot,
            values,
            commit,
        } = &msg
        {
            tracing::debug!(
                node = self.peers.id,
                role = "learner",
                from,
                slot = first_slot,
                count = values.len(),
                commit,
                "decide"
            );
        }
        let out = self.core.handle(LearnerInput::Peer(from, msg));
        self.emit(out);
    }
}

impl Handler<GetLearnerStatus> for LearnerActor {
    type Result = MessageResult<GetLearnerStatus>;

    fn handle(&mut self, _: GetLearnerStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(LearnerStatus {
            next_undecided: self.core.next(),
            commit: self.core.commit(),
            pending_slots: self.core.pending().len() as u64,
            handled: self.handled,
            fetches_sent: self.fetches_sent,
        })
    }
}

impl Handler<SyncDecided> for LearnerActor {
    type Result = ResponseFuture<crate::Result<()>>;

    fn handle(&mut self, _: SyncDecided, _: &mut Context<Self>) -> Self::Result {
        // Everything this actor appended is written already; the fdatasync runs on the
        // blocking pool, and the answer waits for it.
        let log = self.log.sync_handle();
        Box::pin(async move {
            actix_rt::task::spawn_blocking(move || log.sync())
                .await
                .map_err(|e| crate::Error::Storage(format!("decided log sync task: {e}")))?
        })
    }
}

impl Handler<GetDecidedLog> for LearnerActor {
    type Result = MessageResult<GetDecidedLog>;

    fn handle(&mut self, _: GetDecidedLog, _: &mut Context<Self>) -> Self::Result {
        match self.log.read_all() {
            Ok(log) => MessageResult(log),
            Err(e) => {
                tracing::error!(node = self.peers.id, role = "learner", error = %e, "cannot read decided log");
                MessageResult(BTreeMap::new())
            }
        }
    }
}

impl Handler<Halt> for LearnerActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Command, RequestId};

    fn v(n: u64) -> Value {
        Value::Command(Command {
            id: RequestId { client: 1, seq: n },
            ack_below: 0,
            payload: vec![],
        })
    }

    fn decide(first_slot: Slot, values: Vec<Value>, commit: Slot) -> LearnerInput {
        LearnerInput::Peer(
            1,
            LearnerMessage::Decide {
                first_slot,
                values,
                commit,
            },
        )
    }

    #[test]
    fn learner_delivers_in_slot_order_across_out_of_order_decisions() {
        let mut l = Learner::restore(2, LearnerConfig::default(), BTreeMap::new(), 0);
        let out = l.handle(decide(1, vec![v(2)], 0));
        assert!(out.apply.is_empty(), "slot 0 is missing: nothing may be applied yet");
        assert_eq!(out.persist.len(), 1);
        let out = l.handle(decide(0, vec![v(1)], 0));
        assert_eq!(out.apply, vec![(0, v(1)), (1, v(2))]);
        assert_eq!(out.learned, Some(2));
    }

    #[test]
    fn learner_fetches_gap_below_commit_and_fills_it() {
        let mut l = Learner::restore(2, LearnerConfig::default(), BTreeMap::new(), 0);
        let out = l.handle(decide(3, vec![], 3));
        assert_eq!(
            out.send,
            vec![(1, PeerMessage::Learner(LearnerMessage::Fetch { from: 0, to: 3 }))]
        );
        let out = l.handle(LearnerInput::Peer(
            1,
            LearnerMessage::Fetched {
                first_slot: 0,
                values: vec![v(1), v(2), v(3)],
            },
        ));
        assert_eq!(out.apply.len(), 3);
        assert!(out.send.is_empty(), "nothing left to fetch");
    }

    #[test]
    fn learner_serves_applied_slots_from_disk_and_pending_ones_from_memory() {
        let log = BTreeMap::from([(0, v(1)), (1, v(2)), (3, v(4)), (4, v(5)), (6, v(7))]);
        let mut l = Learner::restore(3, LearnerConfig::default(), log, 3);
        assert_eq!(l.pending().len(), 3, "applied slots are not kept in memory");
        let out = l.handle(LearnerInput::Peer(1, LearnerMessage::Fetch { from: 0, to: 10 }));
        assert_eq!(out.serve, vec![(1, 0, 3)], "the actor reads applied slots from disk");
        assert!(out.send.is_empty());
        let out = l.handle(LearnerInput::Peer(1, LearnerMessage::Fetch { from: 3, to: 10 }));
        assert_eq!(
            out.send,
            vec![(
                1,
                PeerMessage::Learner(LearnerMessage::Fetched {
                    first_slot: 3,
                    values: vec![v(4), v(5)]
                })
            )],
            "consecutive values only"
        );
    }

    #[test]
    fn learner_duplicate_decision_is_harmless() {
        let mut l = Learner::restore(2, LearnerConfig::default(), BTreeMap::new(), 0);
        l.handle(decide(0, vec![v(1)], 0));
        let out = l.handle(decide(0, vec![v(1)], 0));
        assert!(out.apply.is_empty() && out.persist.is_empty());
    }

    #[test]
    #[should_panic(expected = "decided twice")]
    fn learner_conflicting_decision_is_a_safety_violation() {
        let mut l = Learner::restore(2, LearnerConfig::default(), BTreeMap::new(), 0);
        // Slot 1 waits for slot 0, so the learner still holds it when the conflict comes.
        l.handle(decide(1, vec![v(1)], 0));
        l.handle(decide(1, vec![v(2)], 0));
    }

    #[test]
    fn learner_start_reports_position_even_with_nothing_to_deliver() {
        // A snapshot covered slots 0..5; the log holds nothing after it.
        let log = BTreeMap::from([(3, v(1)), (4, v(2))]);
        let mut l = Learner::restore(1, LearnerConfig::default(), log, 5);
        let out = l.start();
        assert!(out.apply.is_empty());
        assert_eq!(
            out.learned,
            Some(5),
            "phase 1 must not start from slot 0 after a restart"
        );
    }

    #[test]
    fn learner_fetched_is_capped_by_bytes_but_carries_at_least_one_value() {
        let big = |n| {
            Value::Command(Command {
                id: RequestId { client: 1, seq: n },
                ack_below: 0,
                payload: vec![0; 700],
            })
        };
        let log = BTreeMap::from([(0, big(1)), (1, big(2)), (2, big(3))]);
        let cfg = LearnerConfig {
            max_fetch_bytes: 1000,
            ..LearnerConfig::default()
        };
        let reply = fetched(&cfg, 0, 3, |s| Ok::<_, std::convert::Infallible>(log.get(&s).cloned()));
        let Ok(LearnerMessage::Fetched { values, .. }) = reply else {
            panic!("a Fetched")
        };
        assert_eq!(values.len(), 1, "a second 700-byte value would pass 1000 bytes");
    }

    #[test]
    fn learner_empty_fetched_waits_for_the_retry_interval() {
        let cfg = LearnerConfig {
            fetch_retry_ticks: 5,
            ..LearnerConfig::default()
        };
        let mut l = Learner::restore(2, cfg, BTreeMap::new(), 0);
        assert_eq!(
            l.handle(decide(3, vec![], 3)).send.len(),
            1,
            "a gap below the commit index: fetch"
        );
        l.handle(LearnerInput::Peer(
            1,
            LearnerMessage::Fetched {
                first_slot: 0,
                values: vec![],
            },
        ));
        let asked: usize = (0..4).map(|_| l.handle(LearnerInput::Tick).send.len()).sum();
        assert_eq!(asked, 0, "no new fetch before the retry interval");
        let asked: usize = (0..2).map(|_| l.handle(LearnerInput::Tick).send.len()).sum();
        assert_eq!(asked, 1, "then one");
    }
}
