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
//! And across configurations (membership changes, `crate::messages::membership`):
//!
//! | invariant | how it is observed |
//! |-----------|--------------------|
//! | one configuration per id | every configuration a node's state machine puts in force (`Write::Membership`) must equal every other node's of the same id (members and first slot) |
//! | quorums are of the ballot's configuration | a value is chosen at ballot `b` once a majority of the members of `b`'s configuration accepted it (acceptances of non-members do not count); an acceptance at a ballot of a configuration no node put in force is a violation. So "one value chosen per slot" holds across configurations: an old configuration's choice above its StopSign and the new one's in the same slot are both choices |
//! | nothing chosen after a StopSign | once configuration `c` chose a StopSign ending it (`prev == c`) at slot `s`, no ballot of `c` chooses a value in a slot above `s` (Stoppable Paxos: the next configuration owns those slots) |
//! | one leader per ballot | a proposer is `Elected` only with a ballot of its own node (so no two nodes with one ballot), and only if that node is a member of the ballot's configuration; its phase 1 counts only members' promises |
//!
//! A violation is reported as a message; the run stops there.

use crate::messages::acceptor::AcceptedRun;
use crate::messages::{Ballot, ConfigId, Configuration, NodeId, Slot, Value};
use crate::roles::acceptor::Acceptor;
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
    /// Every configuration some node put in force, by id (the first one from the start).
    configs: BTreeMap<ConfigId, Configuration>,
    /// Per configuration, the slot of the StopSign ending it, once chosen.
    stopped_at: BTreeMap<ConfigId, Slot>,
    /// Per configuration, the highest slot a ballot of it chose a value in.
    highest_chosen_in: BTreeMap<ConfigId, Slot>,
    /// Which node was elected with each ballot.
    elected: BTreeMap<Ballot, NodeId>,
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
    /// A checker for a cluster of nodes `1..=nodes` that never changes.
    pub fn new(nodes: usize) -> Self {
        let ids: Vec<NodeId> = (1..=nodes as NodeId).collect();
        Checker::with_first(Configuration::of_ids(&ids))
    }

    /// A checker whose first configuration (id 0) is `first`.
    pub fn with_first(first: Configuration) -> Self {
        Checker {
            configs: BTreeMap::from([(first.id, first)]),
            stopped_at: BTreeMap::new(),
            highest_chosen_in: BTreeMap::new(),
            elected: BTreeMap::new(),
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

    /// The configuration ballot `ballot` belongs to, which some node must have put in
    /// force before anyone could use it.
    fn config_of(&self, ballot: Ballot) -> Result<&Configuration, String> {
        self.configs.get(&ballot.config).ok_or_else(|| {
            format!(
                "ballot {ballot} is of configuration {}, which no node has put in force",
                ballot.config
            )
        })
    }

    /// Whether `nodes` hold a majority of the members of `ballot`'s configuration.
    fn is_majority(&self, ballot: Ballot, nodes: &BTreeSet<NodeId>) -> Result<bool, String> {
        let config = self.config_of(ballot)?;
        let members = nodes.iter().filter(|n| config.contains(**n)).count();
        Ok(members >= config.majority())
    }

    /// Node `node`'s state machine put `config` in force: it must be the configuration
    /// every other node put in force under that id.
    pub fn configuration_applied(&mut self, node: NodeId, config: &Configuration) -> Check {
        match self.configs.get(&config.id) {
            Some(known) if known != config => Err(format!(
                "node {node} put {config} in force, but another node put {known} in force under the same id"
            )),
            Some(_) => Ok(()),
            None => {
                self.configs.insert(config.id, config.clone());
                Ok(())
            }
        }
    }

    /// The proposer of `node` was elected with `ballot` (its phase 1 succeeded).
    pub fn elected(&mut self, node: NodeId, ballot: Ballot) -> Check {
        if ballot.node != node {
            return Err(format!("node {node} was elected with ballot {ballot}, another node's"));
        }
        if let Some(other) = self.elected.insert(ballot, node)
            && other != node
        {
            return Err(format!("ballot {ballot} elected two leaders: nodes {other} and {node}"));
        }
        let config = self.config_of(ballot)?;
        if !config.contains(node) {
            return Err(format!(
                "node {node} was elected with ballot {ballot}, but it is not a member of {config}"
            ));
        }
        Ok(())
    }

    /// Every configuration known, by id.
    pub fn configurations(&self) -> &BTreeMap<ConfigId, Configuration> {
        &self.configs
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
        let accepted = entry.1.clone();
        if !self.is_majority(ballot, &accepted)? {
            return Ok(());
        }
        match self.chosen.get(&slot) {
            Some((b, v)) if v != value => {
                return Err(format!(
                    "slot {slot}: two values chosen: {v:?} at ballot {b} and {value:?} at ballot {ballot}"
                ));
            }
            Some(_) => {}
            None => {
                self.chosen.insert(slot, (ballot, value.clone()));
                while self.chosen.contains_key(&self.chosen_prefix) {
                    self.chosen_prefix += 1;
                }
            }
        }
        self.chosen_in(slot, ballot, value)
    }

    /// `value` was chosen in `slot` at `ballot`: configuration `ballot.config` must not
    /// choose anything above the StopSign that ends it.
    fn chosen_in(&mut self, slot: Slot, ballot: Ballot, value: &Value) -> Check {
        let c = ballot.config;
        if let Value::StopSign(stop) = value
            && stop.prev == c
        {
            let at = self.stopped_at.entry(c).or_insert(slot);
            *at = (*at).min(slot);
        }
        let highest = self.highest_chosen_in.entry(c).or_insert(slot);
        *highest = (*highest).max(slot);
        match self.stopped_at.get(&c) {
            Some(&stop) if *highest > stop => Err(format!(
                "configuration {c} chose a value in slot {} (at ballot {ballot} or another of its ballots), \
                 after the StopSign it chose in slot {stop}: the next configuration decides the slots after a StopSign",
                *highest
            )),
            _ => Ok(()),
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

    /// The proposer leads `ballot` now: it must hold promises for it from a majority of
    /// the members of its configuration.
    pub fn proposer_leads(&mut self, node: NodeId, ballot: Ballot) -> Check {
        let config = self.config_of(ballot)?.clone();
        let majority = config.majority();
        let phase1 = self.phase1.entry(ballot).or_default();
        if phase1.forced.is_some() {
            return Ok(());
        }
        let promised: Vec<NodeId> = phase1
            .promises
            .keys()
            .copied()
            .filter(|n| config.contains(*n))
            .collect();
        if promised.len() < majority {
            let of = match config.id {
                0 => String::new(),
                _ => format!(" of the members of {config}"),
            };
            return Err(format!(
                "proposer {node} leads ballot {ballot} with {} promise(s); phase 1 needs {majority}{of}",
                promised.len()
            ));
        }
        let members = || {
            phase1
                .promises
                .iter()
                .filter(|(n, _)| config.contains(**n))
                .map(|(_, p)| p)
        };
        let floor = members().map(|(f, _)| *f).max().unwrap_or(0);
        // Per slot, the highest ballot reported ...
        let mut highest: BTreeMap<Slot, Ballot> = BTreeMap::new();
        for run in members().flat_map(|(_, runs)| runs) {
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
