//! The safety invariants, checked after every step of a run against a global view that
//! no real node has: every acceptance, promise, learned value and applied command of
//! every node, across crashes.
//!
//! | invariant | how it is observed |
//! |-----------|--------------------|
//! | one value chosen per slot | every `Accepted` an acceptor core answers is recorded as (slot, ballot, value, acceptor); a value is *chosen* once a majority accepted it at one ballot; a second, different chosen value for the slot is a violation |
//! | learned ⇒ chosen | every value a learner asks to persist must be the value chosen for its slot |
//! | applied sequences are prefixes | every state machine's applied (slot, value) sequence, each incarnation from its start, must be a prefix of one canonical sequence |
//! | acceptor promises | the promised ballot never decreases, not even across a crash and restart, and is never below a ballot the acceptor accepted at |
//! | phase 1 binds the proposer | a proposer leads ballot `b` only after a majority promised `b`; in each slot it proposes the value those promises forced (the one proposed at the highest ballot their summaries reported for the slot, however the proposer pulled it), never two values for one slot, and nothing below the highest floor (`decided_below`) of that majority |
//! | floors are decided | every slot below the floor an acceptor reports in a `Promise` was seen chosen; an acceptor answers `Accepted` for a slot it does not store only if the slot was chosen with the value proposed |
//!
//! A violation is reported as a message; the run stops there.

use crate::messages::acceptor::AcceptedRun;
use crate::messages::{Ballot, NodeId, Slot, Value};
use crate::roles::acceptor::Acceptor;
use crate::roles::quorum::majority;
use std::collections::{BTreeMap, BTreeSet};

/// Why a run failed: at which step and simulated time, and what broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The step (1-based) after which it was detected: the run of that many steps fails.
    pub step: u64,
    pub time_us: u64,
    pub message: String,
}

/// What phase 1 of one ballot gathered.
#[derive(Debug, Default)]
struct Phase1 {
    /// The whole report (floor, runs) of each acceptor, as the proposer's quorum call
    /// keeps it: the first one complete.
    promises: BTreeMap<NodeId, (Slot, Vec<AcceptedRun>)>,
    /// Reports that came in parts, not yet whole.
    partial: BTreeMap<NodeId, (Slot, Vec<AcceptedRun>)>,
    /// Once the proposer leads: the highest floor of its quorum, and per slot above it
    /// the value the promises forced.
    forced: Option<(Slot, Forced)>,
}

/// Per slot, the value phase 1 forced and the ballot it was accepted at.
type Forced = BTreeMap<Slot, (Ballot, Value)>;

/// The global view and the invariants over it.
#[derive(Debug)]
pub struct Checker {
    nodes: usize,
    /// Who accepted which value in each (slot, ballot).
    accepts: BTreeMap<(Slot, Ballot), (Value, BTreeSet<NodeId>)>,
    /// The value chosen in each slot (with the first ballot seen to choose it).
    chosen: BTreeMap<Slot, (Ballot, Value)>,
    /// Every slot below this one has a chosen value.
    chosen_prefix: Slot,
    /// The highest ballot each acceptor ever promised, in any incarnation.
    max_promised: BTreeMap<NodeId, Ballot>,
    /// The longest applied sequence seen; every other must be a prefix of it.
    canon: Vec<(Slot, Value)>,
    /// How far each node's current incarnation has applied.
    applied: BTreeMap<NodeId, usize>,
    phase1: BTreeMap<Ballot, Phase1>,
    /// What each ballot proposed in each slot.
    proposed: BTreeMap<(Ballot, Slot), Value>,
}

type Check = Result<(), String>;

impl Checker {
    pub fn new(nodes: usize) -> Self {
        Checker {
            nodes,
            accepts: BTreeMap::new(),
            chosen: BTreeMap::new(),
            chosen_prefix: 0,
            max_promised: BTreeMap::new(),
            canon: Vec::new(),
            applied: BTreeMap::new(),
            phase1: BTreeMap::new(),
            proposed: BTreeMap::new(),
        }
    }

    fn is_majority(&self, count: usize) -> bool {
        count >= majority(self.nodes)
    }

    /// Slots with a chosen value.
    pub fn chosen_slots(&self) -> usize {
        self.chosen.len()
    }

    /// The length of the longest applied sequence.
    pub fn applied_len(&self) -> usize {
        self.canon.len()
    }

    /// The acceptor of `node` revealed a promise of `ballot` (a `Promise` or `Accepted`
    /// left it): no incarnation of it may promise less from now on.
    pub fn promise_revealed(&mut self, node: NodeId, ballot: Ballot) {
        let max = self.max_promised.entry(node).or_insert(Ballot::ZERO);
        *max = (*max).max(ballot);
    }

    /// The acceptor of `node` answered `Accepted` for `count` slots from `first` at
    /// `ballot`. `written` is every acceptance it wrote, `durable` what its disk holds.
    /// An acceptance counts (towards a value being chosen) from the moment it is
    /// revealed, with the value it wrote; by then its disk must hold that slot at
    /// `ballot` or a higher one (accepted again since, in the same sync). A slot below
    /// the acceptor's floor is answered without being stored: that is fine only if the
    /// slot was chosen, with the value proposed at `ballot`.
    pub fn accepted_revealed(
        &mut self,
        node: NodeId,
        written: &BTreeMap<(Slot, Ballot), Value>,
        durable: &BTreeMap<Slot, (Ballot, Value)>,
        first: Slot,
        count: u64,
        ballot: Ballot,
    ) -> Check {
        self.promise_revealed(node, ballot);
        for slot in first..first + count {
            if durable.get(&slot).is_none_or(|(b, _)| *b < ballot) {
                let chosen = self.chosen.get(&slot).map(|(_, v)| v);
                if chosen.is_some() && chosen == self.proposed.get(&(ballot, slot)) {
                    continue; // Decided below the acceptor's floor: answered, not stored.
                }
                return Err(format!(
                    "acceptor {node} answered Accepted for slot {slot} at {ballot}, but its disk does not hold that"
                ));
            }
            let Some(value) = written.get(&(slot, ballot)) else {
                return Err(format!(
                    "acceptor {node} answered Accepted for slot {slot} at {ballot}, which it never wrote"
                ));
            };
            self.record_accept(node, slot, ballot, value)?;
        }
        Ok(())
    }

    /// An acceptor came back from its disk.
    pub fn acceptor_restored(&mut self, node: NodeId, acceptor: &Acceptor) -> Check {
        self.acceptor_promise(node, acceptor)?;
        for (slot, (ballot, _)) in acceptor.accepted() {
            if *ballot > acceptor.promised() {
                return Err(format!(
                    "acceptor {node} restarted with slot {slot} accepted at {ballot} above its promise {}",
                    acceptor.promised()
                ));
            }
        }
        Ok(())
    }

    fn acceptor_promise(&mut self, node: NodeId, acceptor: &Acceptor) -> Check {
        let now = acceptor.promised();
        let max = self.max_promised.entry(node).or_insert(Ballot::ZERO);
        if now < *max {
            return Err(format!(
                "acceptor {node}'s promise went down from {max} to {now} (a promise it made was not durable)"
            ));
        }
        *max = now;
        Ok(())
    }

    fn record_accept(&mut self, node: NodeId, slot: Slot, ballot: Ballot, value: &Value) -> Check {
        let entry = self
            .accepts
            .entry((slot, ballot))
            .or_insert_with(|| (value.clone(), BTreeSet::new()));
        if &entry.0 != value {
            return Err(format!(
                "slot {slot}: two different values accepted at one ballot {ballot}: {:?} and {value:?}",
                entry.0
            ));
        }
        entry.1.insert(node);
        let count = entry.1.len();
        if !self.is_majority(count) {
            return Ok(());
        }
        match self.chosen.get(&slot) {
            Some((b, v)) if v != value => Err(format!(
                "slot {slot}: two values chosen: {v:?} at ballot {b} and {value:?} at ballot {ballot}"
            )),
            Some(_) => Ok(()),
            None => {
                self.chosen.insert(slot, (ballot, value.clone()));
                while self.chosen.contains_key(&self.chosen_prefix) {
                    self.chosen_prefix += 1;
                }
                Ok(())
            }
        }
    }

    /// The learner of `node` learned (asks to persist) these values.
    pub fn learned(&self, node: NodeId, values: &[(Slot, Value)]) -> Check {
        for (slot, value) in values {
            match self.chosen.get(slot) {
                Some((_, v)) if v == value => {}
                Some((b, v)) => {
                    return Err(format!(
                        "learner {node} learned {value:?} in slot {slot}, but {v:?} was chosen (ballot {b})"
                    ));
                }
                None => {
                    return Err(format!(
                        "learner {node} learned {value:?} in slot {slot}, which no majority accepted at one ballot"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The state machine of `node` applied `value` in `slot`.
    pub fn applied(&mut self, node: NodeId, slot: Slot, value: &Value) -> Check {
        let index = self.applied.entry(node).or_insert(0);
        let at = *index;
        *index += 1;
        match self.canon.get(at) {
            None => {
                self.canon.push((slot, value.clone()));
                Ok(())
            }
            Some((s, v)) if *s == slot && v == value => Ok(()),
            Some((s, v)) => Err(format!(
                "state machine {node} applied slot {slot} = {value:?} as its command #{at}, but another applied slot {s} = {v:?} there"
            )),
        }
    }

    /// A node restarted: its state machine starts over from its snapshot, which covers
    /// the slots below `from` (0: no snapshot).
    pub fn restarted(&mut self, node: NodeId, from: Slot) {
        self.applied.insert(node, from as usize);
    }

    /// The acceptor of `node` revealed its floor in a `Promise`: every slot below it
    /// must have been chosen.
    pub fn floor_revealed(&self, node: NodeId, floor: Slot) -> Check {
        if floor > self.chosen_prefix {
            return Err(format!(
                "acceptor {node} reports every slot below {floor} decided, but slot {} was never chosen",
                self.chosen_prefix
            ));
        }
        Ok(())
    }

    /// A promise (or a part of one, if `more_from` names where it goes on) for `ballot`
    /// reached its proposer while that proposer gathered promises for it.
    pub fn promise_received(
        &mut self,
        ballot: Ballot,
        from: NodeId,
        decided_below: Slot,
        accepted: &[AcceptedRun],
        more_from: Option<Slot>,
    ) {
        let phase1 = self.phase1.entry(ballot).or_default();
        let part = phase1.partial.entry(from).or_default();
        part.0 = part.0.max(decided_below);
        part.1.extend_from_slice(accepted);
        if more_from.is_none()
            && let Some(whole) = phase1.partial.remove(&from)
        {
            phase1.promises.entry(from).or_insert(whole);
        }
    }

    /// The proposer leads `ballot` now: it must hold a majority of promises for it.
    pub fn proposer_leads(&mut self, node: NodeId, ballot: Ballot) -> Check {
        let majority = majority(self.nodes);
        let phase1 = self.phase1.entry(ballot).or_default();
        if phase1.forced.is_some() {
            return Ok(());
        }
        if phase1.promises.len() < majority {
            return Err(format!(
                "proposer {node} leads ballot {ballot} with {} promise(s); phase 1 needs {majority}",
                phase1.promises.len()
            ));
        }
        let floor = phase1.promises.values().map(|(f, _)| *f).max().unwrap_or(0);
        // Per slot, the highest ballot reported ...
        let mut highest: BTreeMap<Slot, Ballot> = BTreeMap::new();
        for run in phase1.promises.values().flat_map(|(_, runs)| runs) {
            for slot in run.first.max(floor)..run.end {
                let b = highest.entry(slot).or_insert(run.ballot);
                *b = (*b).max(run.ballot);
            }
        }
        // ... and the value proposed at it: one ballot proposes one value per slot.
        let mut forced = BTreeMap::new();
        for (slot, b) in highest {
            let Some(value) = self.proposed.get(&(b, slot)) else {
                return Err(format!(
                    "a promise for ballot {ballot} reports slot {slot} accepted at {b}, where nothing was proposed"
                ));
            };
            forced.insert(slot, (b, value.clone()));
        }
        phase1.forced = Some((floor, forced));
        Ok(())
    }

    /// The proposer of `node` sent an Accept of `values` from `first_slot` at `ballot`.
    pub fn accept_sent(&mut self, node: NodeId, ballot: Ballot, first_slot: Slot, values: &[Value]) -> Check {
        let Some((floor, forced)) = self.phase1.get(&ballot).and_then(|p| p.forced.as_ref()) else {
            return Err(format!(
                "proposer {node} sent Accept at ballot {ballot} without a phase-1 majority of promises"
            ));
        };
        if first_slot < *floor && !values.is_empty() {
            return Err(format!(
                "proposer {node} proposed in slot {first_slot} at ballot {ballot}, below the floor {floor} its quorum reported (decided there)"
            ));
        }
        for (slot, value) in (first_slot..).zip(values) {
            if let Some((b, v)) = forced.get(&slot)
                && v != value
            {
                return Err(format!(
                    "proposer {node} proposed {value:?} in slot {slot} at ballot {ballot}, but phase 1 forced {v:?} (accepted at {b})"
                ));
            }
            match self.proposed.get(&(ballot, slot)) {
                Some(v) if v != value => {
                    return Err(format!(
                        "proposer {node} proposed two values in slot {slot} at ballot {ballot}: {v:?} and {value:?}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.proposed.insert((ballot, slot), value.clone());
                }
            }
        }
        Ok(())
    }
}
