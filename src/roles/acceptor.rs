//! # Acceptor
//!
//! The acceptor is Paxos's memory (Lamport, "Paxos Made Simple" §2.2; PMMC §3, the
//! Acceptor). It remembers one ballot it has *promised* and, per log slot, the value it
//! *accepted* with the ballot it was accepted at. It never initiates anything; it only
//! answers proposers:
//!
//! - `Prepare { ballot, from_slot }`: if `ballot` is not below the promise, promise it
//!   and answer `Promise` with its *floor* (`decided_below`, below) and a summary of
//!   what it accepted from `from_slot` on: runs of consecutive slots accepted at one
//!   ballot, without the values; otherwise answer `Rejected` naming the promise.
//! - `Pull { ballot, first, end }`: only under the ballot it promised, answer `Pulled`
//!   with the values accepted in `first..end`, each with its ballot; otherwise
//!   `Rejected`. This is how a new leader fetches just the values it must propose again
//!   (selective log synchronisation: Omni-Paxos's Promise carries the whole log suffix;
//!   here it carries a summary and the leader pulls each part from one acceptor that
//!   holds it at the highest ballot; see `super::proposer::phase1`).
//! - `Accept { ballot, first_slot, values }`: if `ballot` is not below the promise,
//!   accept each value in its slot (and promise `ballot`); answer `Accepted`; otherwise
//!   `Rejected`.
//!
//! **Invariant.** The promised ballot never decreases, and nothing is ever accepted at a
//! ballot below the promise, so once a majority promised `b` no ballot below `b` can
//! gather a new majority. The answer that reveals a new promise or acceptance leaves
//! the node only after that state is on disk.
//!
//! **Durability and group commit.** [`Acceptor::handle`] returns, with every reply, the
//! write that must be durable first ([`Write::Acceptor`] in the same [`Ready`]). The
//! driver (`crate::driver`) appends writes to the log (`acceptor.wal`) at once but holds
//! replies back until a sync covers them; one sync covers every request that arrived
//! while the previous one ran. Replies leave in arrival order.
//!
//! **Memory.** Values accepted long ago are only needed again if a new leader pulls
//! them. Once durable, all but the most recent ones leave memory
//! ([`Acceptor::evict_below`]); the core keeps just their ballots, in runs, so a
//! `Prepare`'s summary needs no disk read. Before the core answers a `Pull`, the driver
//! reads the stored values it asks for back from the log ([`Acceptor::reload_range`]);
//! a `Pulled` never skips a stored slot (it stops there, with `more_from`). Which values
//! are durable the core learns from the driver ([`Acceptor::durable_through`]).
//!
//! **The floor (compaction).** Once the node's state machine holds a durable snapshot
//! of every slot below `below`, those slots are decided and their acceptances are
//! needed by nobody: [`Acceptor::compact`] raises the *floor* to `below`, drops their
//! values and ballots from memory (so memory stays flat however long the log grows),
//! and asks for the log to be truncated ([`Write::Compact`], behind a write that
//! re-records the promise, so no record still needed lies below the cut). A restarted
//! node sets the floor from its snapshot ([`Acceptor::with_floor`]). From then on:
//!
//! - A `Promise` reports `decided_below: floor` and nothing below it. It never has to
//!   return a compacted value: Paxos needs a promise's acceptances only so that a new
//!   leader proposes, in each slot that may have been chosen, the chosen value (P2c).
//!   Below the floor the slot *is* chosen and the leader is told so instead: it
//!   proposes nothing below the highest floor of its quorum, and its learner catches up
//!   on those slots from a node that holds them. Every other quorum of that leader's
//!   ballot still intersects the majority that chose each slot above the floor.
//! - An `Accept` for slots below the floor stores nothing for them but is answered
//!   `Accepted` all the same. That is safe: the slot is chosen, with some value `v` at
//!   some ballot `b0`. A proposal at a ballot at or above `b0` carries `v` (P2c: its
//!   phase 1 met the majority that chose `v`); a proposer whose quorum included this
//!   acceptor after its floor rose proposes nothing there at all. An `Accept` below
//!   `b0` passes only if this acceptor never promised above it, so it was in no
//!   phase-1 quorum of a higher ballot before its floor rose, and each of those quorums
//!   met the other acceptors that accepted at that ballot: the usual induction of P2c
//!   goes through with this acceptance standing in as the floor. Storing it would only
//!   grow the log with a value nobody will ask for.
//!
//! **Configurations** (`crate::messages::membership`). The acceptor knows the id of the
//! configuration its node has applied ([`Acceptor::reconfigure`]; `None` on a node
//! that joins and holds no state yet). A request of an older configuration's ballot is
//! `Rejected` naming the first ballot of ours, so its proposer is preempted and its
//! elector learns it is behind; a request of a newer configuration's ballot is refused
//! without preempting anyone (`Rejected` naming our lower promise, which a proposer
//! ignores and resends later) until this node applied the StopSign that starts it: a
//! new member takes part only once it holds the state up to the StopSign.
//!
//! **Left out.** Lamport §3's α window (reconfiguration is by StopSign); answering a `Pull`
//! for slots compacted since the `Promise` (the leader's phase 1 then times out and
//! tries again, and sees the higher floor).

use super::bugs::PlantedBugs;
use super::ready::{AcceptorWrite, Ready, Write};
use super::runs::Runs;
use crate::messages::acceptor::AcceptedRun;
use crate::messages::codec;
use crate::messages::{
    AcceptorReply, AcceptorRequest, Ballot, ConfigId, MAX_ROUND, MAX_SLOT, NodeId, PeerMessage, Slot, Value,
};
use std::collections::{BTreeMap, VecDeque};

/// Default budget of value bytes in one Promise or Pulled: what fits a frame of the
/// default size.
pub const DEFAULT_MAX_PROMISE_BYTES: usize = codec::message_budget(codec::DEFAULT_MAX_FRAME);

/// Default number of recent durable slots whose values stay in memory.
pub const DEFAULT_HOT_SLOTS: u64 = 4096;

impl Default for Acceptor {
    fn default() -> Self {
        Acceptor::restore(Ballot::ZERO, BTreeMap::new())
    }
}

/// The acceptor's state machine: no I/O.
#[derive(Clone, Debug)]
pub struct Acceptor {
    promised: Ballot,
    /// Accepted values held in memory.
    accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Ballots of accepted values moved out of memory (they are on disk), in runs.
    /// Never overlaps `accepted`.
    stored: Runs<Ballot>,
    /// Every slot below this is decided and covered by the node's durable snapshot:
    /// nothing below it is kept or reported.
    floor: Slot,
    /// Most bytes in one Promise or Pulled (it must fit a transport frame).
    max_promise_bytes: usize,
    /// Values of this many of the most recent durable slots stay in memory.
    hot_slots: u64,
    /// Writes returned so far (the driver appends them in this order).
    writes: u64,
    /// Writes with accepted values not yet known durable: (write number, lowest slot,
    /// highest slot), oldest first. Their slots stay in memory.
    unsynced: VecDeque<(u64, Slot, Slot)>,
    /// The configuration this node has applied (`None`: joining, none yet).
    config: Option<ConfigId>,
    bugs: PlantedBugs,
}

impl Acceptor {
    /// An acceptor with the state it persisted.
    pub fn restore(promised: Ballot, accepted: BTreeMap<Slot, (Ballot, Value)>) -> Self {
        Acceptor {
            promised,
            accepted,
            stored: Runs::new(),
            floor: 0,
            max_promise_bytes: DEFAULT_MAX_PROMISE_BYTES,
            hot_slots: DEFAULT_HOT_SLOTS,
            writes: 0,
            unsynced: VecDeque::new(),
            config: Some(0),
            bugs: PlantedBugs::default(),
        }
    }

    /// Caps the bytes of one Promise's summary or one Pulled's values (the rest is
    /// reported on request).
    pub fn with_max_promise_bytes(mut self, bytes: usize) -> Self {
        self.max_promise_bytes = bytes;
        self
    }

    /// Keeps the values of the `hot` most recent durable slots in memory (the rest are
    /// read back from disk when a `Pull` asks for them).
    pub fn with_hot_slots(mut self, hot: u64) -> Self {
        self.hot_slots = hot;
        self
    }

    /// At restart: the node's durable snapshot covers every slot below `below`, so they
    /// are decided: the floor starts there (what is below leaves memory; no write).
    pub fn with_floor(mut self, below: Slot) -> Self {
        self.drop_below(below);
        self
    }

    /// The configuration this node has applied at start (`None`: a joining node, which
    /// answers no ballot until it holds a configuration).
    pub fn with_config(mut self, config: Option<ConfigId>) -> Self {
        self.config = config;
        self
    }

    /// This node applied configuration `id` (never goes back).
    pub fn reconfigure(&mut self, id: ConfigId) {
        self.config = Some(self.config.map_or(id, |c| c.max(id)));
    }

    /// The configuration this node has applied.
    pub fn config(&self) -> Option<ConfigId> {
        self.config
    }

    /// Every slot below this is decided and no longer kept or reported.
    pub fn floor(&self) -> Slot {
        self.floor
    }

    /// A snapshot covering every slot below `below` is durable on this node: raises the
    /// floor to `below` and forgets every acceptance below it. The `Ready` re-records
    /// the promise (so the log records before it may go) and then asks for the log to
    /// be compacted below `below`. Nothing to do if the floor is there already.
    pub fn compact(&mut self, below: Slot) -> Ready {
        let mut ready = Ready::default();
        if below <= self.floor {
            return ready;
        }
        self.drop_below(below);
        // The promise write is numbered like every write `handle` returns, so that
        // `durable_through` keeps counting right; it carries no slots.
        self.writes += 1;
        ready.writes.push(Write::Acceptor(AcceptorWrite {
            promised: Some(self.promised),
            accepted: Vec::new(),
        }));
        ready.writes.push(Write::Compact { below });
        ready
    }

    /// Raises the floor to `below` (if higher) and drops what lies below it.
    fn drop_below(&mut self, below: Slot) {
        if below <= self.floor {
            return;
        }
        self.floor = below;
        self.accepted = self.accepted.split_off(&below);
        self.stored.remove(0, below);
        // Writes not yet durable keep only their slots at or above the floor in memory.
        self.unsynced.retain(|&(_, _, high)| high >= below);
        for entry in &mut self.unsynced {
            entry.1 = entry.1.max(below);
        }
    }

    /// Every write this acceptor returned, up to and including write number `through`
    /// (counted from 1, in the order returned), is durable now: the values of durable
    /// slots, but the `hot_slots` most recent, leave memory. Slots of writes not yet
    /// durable stay.
    pub fn durable_through(&mut self, through: u64) {
        let mut high = None;
        while let Some(&(n, _, h)) = self.unsynced.front()
            && n <= through
        {
            high = high.max(Some(h));
            self.unsynced.pop_front();
        }
        let Some(high) = high else { return };
        let mut below = (high + 1).saturating_sub(self.hot_slots);
        // Any write not yet durable may hold lower slots than the oldest one (a resent
        // Accept, a recovery batch): none of them may leave memory.
        if let Some(low) = self.unsynced.iter().map(|&(_, low, _)| low).min() {
            below = below.min(low);
        }
        if self.accepted.first_key_value().is_some_and(|(&first, _)| first < below) {
            self.evict_below(below);
        }
    }

    /// Everything restored from disk is durable: keeps only the recent values in memory.
    pub fn evict_restored(&mut self) {
        self.evict_all_but(self.hot_slots);
    }

    /// Test-only: plants bugs (see [`PlantedBugs`]).
    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Self {
        self.bugs = bugs;
        self
    }

    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The accepted values held in memory.
    pub fn accepted(&self) -> &BTreeMap<Slot, (Ballot, Value)> {
        &self.accepted
    }

    /// How many accepted slots this acceptor knows of, in memory or stored.
    pub fn accepted_slots(&self) -> u64 {
        self.accepted.len() as u64 + self.stored.slots()
    }

    /// Applies a write read back from disk at startup (one that `handle` once returned).
    /// Acceptances below the floor are decided and stay forgotten.
    pub fn replay(&mut self, write: AcceptorWrite) {
        if let Some(ballot) = write.promised {
            self.promised = self.promised.max(ballot);
        }
        for (slot, ballot, value) in write.accepted {
            if slot < self.floor {
                continue;
            }
            self.stored.remove(slot, slot + 1);
            self.accepted.insert(slot, (ballot, value));
        }
    }

    /// Keeps in memory the values of the `hot` highest slots held, evicting the rest.
    pub fn evict_all_but(&mut self, hot: u64) -> usize {
        match self.accepted.last_key_value() {
            Some((&high, _)) => self.evict_below((high + 1).saturating_sub(hot)),
            None => 0,
        }
    }

    /// Drops from memory the values of slots below `below` (the caller has them on
    /// disk); keeps their ballots. Returns how many left memory.
    pub fn evict_below(&mut self, below: Slot) -> usize {
        let keep = self.accepted.split_off(&below);
        let gone = std::mem::replace(&mut self.accepted, keep);
        for (&slot, (ballot, _)) in &gone {
            self.stored.insert(slot, slot + 1, *ballot);
        }
        gone.len()
    }

    /// Stored (not in memory) slots from `from` on, as ranges `[first, end)` in order.
    pub fn stored_from(&self, from: Slot) -> impl Iterator<Item = (Slot, Slot)> + '_ {
        self.stored.ranges_from(from).map(|(first, end, _)| (first, end))
    }

    /// Puts back in memory the value of a stored slot, read from disk by the caller.
    pub fn reload(&mut self, slot: Slot, value: Value) {
        let ballot = self.stored.remove(slot, slot + 1);
        let ballot = ballot.unwrap_or_else(|| panic!("acceptor reloads slot {slot}, which is not stored"));
        self.accepted.insert(slot, (ballot, value));
    }

    /// Before a `Pull` of `first..end`: reads back, with `read`, the stored values it
    /// will report, up to about one Pulled's worth (the answer stops at the next stored
    /// slot, to be asked for again).
    pub fn reload_range<E>(
        &mut self,
        first: Slot,
        end: Slot,
        mut read: impl FnMut(Slot) -> Result<Value, E>,
    ) -> Result<(), E> {
        let mut bytes = 0;
        let ranges: Vec<(Slot, Slot)> = self.stored_from(first).take_while(|(s, _)| *s < end).collect();
        for slot in ranges.into_iter().flat_map(|(s, e)| s..e.min(end)) {
            let value = read(slot)?;
            bytes += value.wire_size();
            self.reload(slot, value);
            if bytes > self.max_promise_bytes {
                break;
            }
        }
        Ok(())
    }

    /// Handles one request from proposer `from`: the reply goes back to it, after the
    /// write (if any) is durable (the ordering rules of [`Ready`]).
    pub fn handle(&mut self, from: NodeId, request: AcceptorRequest) -> Ready {
        let (write, reply) = self.answer(request);
        let mut ready = Ready::default();
        if let Some(write) = write {
            self.writes += 1;
            if let (Some((low, ..)), Some((high, ..))) = (write.accepted.first(), write.accepted.last()) {
                self.unsynced.push_back((self.writes, *low, *high));
            }
            ready.writes.push(Write::Acceptor(write));
        }
        ready.send.push((from, PeerMessage::AcceptorReply(reply)));
        ready
    }

    /// Answers one request; the write, if any, must be durable before the reply leaves.
    pub fn answer(&mut self, request: AcceptorRequest) -> (Option<AcceptorWrite>, AcceptorReply) {
        let (call, ballot) = match &request {
            AcceptorRequest::Prepare { call, ballot, .. }
            | AcceptorRequest::Pull { call, ballot, .. }
            | AcceptorRequest::Accept { call, ballot, .. } => (*call, *ballot),
        };
        match self.config {
            // A ballot of an older configuration: preempt it with the first of ours.
            Some(c) if ballot.config < c => {
                return (
                    None,
                    rejected(call, ballot, self.promised.max(Ballot::in_config(c, 0, 0))),
                );
            }
            // A newer configuration than this node applied (or none yet): not before
            // this node holds the state up to its StopSign. Naming our lower promise
            // preempts nobody; the proposer asks again.
            None => return (None, rejected(call, ballot, self.promised.min(ballot))),
            Some(c) if ballot.config > c => return (None, rejected(call, ballot, self.promised.min(ballot))),
            Some(_) => {}
        }
        let before = self.promised;
        let out = match request {
            // Phase 1b: promise, and summarise what was accepted from the requested slot
            // (or the floor) on.
            AcceptorRequest::Prepare {
                call,
                ballot,
                from_slot,
            } => {
                if ballot < self.promised || ballot.round > MAX_ROUND {
                    return (None, rejected(call, ballot, self.promised));
                }
                let write = self.maybe_promise(ballot);
                let (accepted, more_from) = self.summary(from_slot);
                let reply = AcceptorReply::Promise {
                    call,
                    ballot,
                    decided_below: self.floor,
                    accepted,
                    more_from,
                };
                (write, reply)
            }
            // Selective synchronisation: the values the leader of our promise asks for.
            AcceptorRequest::Pull {
                call,
                ballot,
                first,
                end,
            } => {
                if ballot != self.promised {
                    return (None, rejected(call, ballot, self.promised));
                }
                let (values, more_from) = self.values(first, end);
                let reply = AcceptorReply::Pulled {
                    call,
                    ballot,
                    first_slot: first,
                    values,
                    more_from,
                };
                (None, reply)
            }
            // Phase 2b: accept every value of the batch at this ballot (those below the
            // floor are decided: answered, not stored).
            AcceptorRequest::Accept {
                call,
                ballot,
                first_slot,
                values,
            } => {
                if ballot < self.promised
                    || ballot.round > MAX_ROUND
                    || first_slot.saturating_add(values.len() as u64) > MAX_SLOT
                {
                    return (None, rejected(call, ballot, self.promised));
                }
                let mut write = self.maybe_promise(ballot).unwrap_or_default();
                let count = values.len() as u64;
                let decided = self.floor.saturating_sub(first_slot).min(count);
                self.stored.remove(first_slot + decided, first_slot + count);
                for (slot, value) in (first_slot..).zip(values).skip(decided as usize) {
                    self.accepted.insert(slot, (ballot, value.clone()));
                    write.accepted.push((slot, ballot, value));
                }
                // An empty batch at the promised ballot (a read barrier) changes nothing.
                let changed = write.promised.is_some() || !write.accepted.is_empty();
                let reply = AcceptorReply::Accepted {
                    call,
                    ballot,
                    first_slot,
                    count,
                };
                (changed.then_some(write), reply)
            }
        };
        assert!(
            self.promised >= before,
            "acceptor promise went down from {before} to {}",
            self.promised
        );
        if self.bugs.acceptor_skips_persist() {
            return (None, out.1);
        }
        out
    }

    /// What a Promise reports from `from` (or the floor) on: the runs of slots accepted
    /// at one ballot, in memory or stored, at most one message's worth; and where to ask
    /// again if that was not all.
    fn summary(&self, from: Slot) -> (Vec<AcceptedRun>, Option<Slot>) {
        let from = from.max(self.floor);
        let max_runs = (self.max_promise_bytes / AcceptedRun::WIRE_BYTES).max(1);
        let mut memory = self
            .accepted
            .range(from..)
            .map(|(&s, (b, _))| (s, s + 1, *b))
            .peekable();
        // Planted bug: report only what is in memory, as if nothing else were accepted.
        let skip_stored = self.bugs.acceptor_promise_skips_stored();
        let mut stored = self.stored.ranges_from(from).filter(|_| !skip_stored).peekable();
        let mut runs: Vec<AcceptedRun> = Vec::new();
        loop {
            // The two sources never overlap: take whichever comes first.
            let next = match (memory.peek(), stored.peek()) {
                (Some(m), Some(s)) if m.0 < s.0 => memory.next(),
                (_, Some(_)) => stored.next(),
                (Some(_), None) => memory.next(),
                (None, None) => return (runs, None),
            };
            let Some((first, end, ballot)) = next else {
                return (runs, None);
            };
            let full = runs.len() == max_runs;
            match runs.last_mut() {
                Some(last) if last.end == first && last.ballot == ballot => last.end = end,
                _ if full => return (runs, Some(first)),
                _ => runs.push(AcceptedRun { first, end, ballot }),
            }
        }
    }

    /// What a Pulled reports of `first..end`: the values held in consecutive slots from
    /// `first`, each with its ballot, up to a slot not held (the end of the answer) or a
    /// stored one, or a full message (ask again from there).
    fn values(&self, first: Slot, end: Slot) -> (Vec<(Ballot, Value)>, Option<Slot>) {
        let (mut values, mut bytes) = (Vec::new(), 0);
        let mut next = first;
        for (&slot, (ballot, value)) in self.accepted.range(first..end.max(first)) {
            if slot != next {
                break; // A slot not in memory: stored (ask again) or not held (the end).
            }
            if !values.is_empty() && bytes + value.wire_size() > self.max_promise_bytes {
                return (values, Some(slot));
            }
            bytes += value.wire_size();
            values.push((*ballot, value.clone()));
            next += 1;
        }
        let stored = next < end && self.stored.get(next).is_some();
        (values, stored.then_some(next))
    }

    /// Raises the promise to `ballot` if it is higher; returns the write that makes it durable.
    fn maybe_promise(&mut self, ballot: Ballot) -> Option<AcceptorWrite> {
        if ballot > self.promised {
            self.promised = ballot;
            Some(AcceptorWrite {
                promised: Some(ballot),
                accepted: Vec::new(),
            })
        } else {
            None
        }
    }
}

/// `Rejected`: the request's `ballot` is not one this acceptor may answer under `promised`.
fn rejected(call: u64, ballot: Ballot, promised: Ballot) -> AcceptorReply {
    AcceptorReply::Rejected { call, ballot, promised }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Command, RequestId};

    fn b(round: u64, node: u64) -> Ballot {
        Ballot::new(round, node)
    }

    fn cmd(n: u64) -> Value {
        Value::Command(Command {
            id: RequestId { client: 1, seq: n },
            ack_below: 0,
            payload: vec![n as u8],
        })
    }

    fn run(first: Slot, end: Slot, ballot: Ballot) -> AcceptedRun {
        AcceptedRun { first, end, ballot }
    }

    /// Accepts `values` from `first_slot` at `ballot`; returns the write it asked for.
    fn accept(a: &mut Acceptor, ballot: Ballot, first_slot: Slot, values: Vec<Value>) -> Option<AcceptorWrite> {
        let (w, r) = a.answer(AcceptorRequest::Accept {
            call: 1,
            ballot,
            first_slot,
            values,
        });
        assert!(matches!(r, AcceptorReply::Accepted { .. }), "accepted, not {r:?}");
        w
    }

    /// Prepares at `ballot` from `from_slot`; returns the Promise's report.
    fn promise(a: &mut Acceptor, ballot: Ballot, from_slot: Slot) -> (Slot, Vec<AcceptedRun>, Option<Slot>) {
        let (_, r) = a.answer(AcceptorRequest::Prepare {
            call: 9,
            ballot,
            from_slot,
        });
        let AcceptorReply::Promise {
            decided_below,
            accepted,
            more_from,
            ..
        } = r
        else {
            panic!("a promise, not {r:?}")
        };
        (decided_below, accepted, more_from)
    }

    /// Pulls `first..end` at `ballot`; returns the answer.
    fn pull(a: &mut Acceptor, ballot: Ballot, first: Slot, end: Slot) -> AcceptorReply {
        a.answer(AcceptorRequest::Pull {
            call: 10,
            ballot,
            first,
            end,
        })
        .1
    }

    #[test]
    fn acceptor_keeps_in_memory_every_slot_of_a_write_not_yet_durable() {
        let mut a = Acceptor::default().with_hot_slots(0);
        let b = Ballot::new(1, 1);
        let accept = |slot: Slot| AcceptorRequest::Accept {
            call: slot,
            ballot: b,
            first_slot: slot,
            values: vec![Value::Noop],
        };
        // Write 1 (slot 50) syncs; writes 2 (slot 60) and 3 (slot 10, a resent Accept
        // for a lower slot) wait for the next sync.
        for slot in [50, 60, 10] {
            a.handle(1, accept(slot));
        }
        a.durable_through(1);
        let held = |a: &Acceptor| a.accepted().keys().copied().collect::<Vec<Slot>>();
        assert!(
            held(&a).contains(&10) && held(&a).contains(&60),
            "slots 10 and 60 are not durable yet: they stay in memory ({:?})",
            held(&a)
        );
        a.durable_through(3);
        assert!(held(&a).is_empty(), "all durable: all leave memory ({:?})", held(&a));
        assert_eq!(a.accepted_slots(), 3, "and are still known as accepted");
    }

    #[test]
    fn acceptor_promises_and_summarises_accepted_slots() {
        let mut a = Acceptor::default();
        let (w, r) = a.answer(AcceptorRequest::Prepare {
            call: 1,
            ballot: b(1, 1),
            from_slot: 0,
        });
        assert_eq!(
            w.and_then(|w| w.promised),
            Some(b(1, 1)),
            "a new promise must be persisted"
        );
        assert!(matches!(r, AcceptorReply::Promise { accepted, .. } if accepted.is_empty()));
        let w = accept(&mut a, b(1, 1), 3, vec![cmd(1), cmd(2), cmd(3)]);
        assert_eq!(w.map(|w| w.accepted.len()), Some(3));
        let w = accept(&mut a, b(2, 1), 6, vec![cmd(4)]);
        assert_eq!(w.map(|w| w.accepted.len()), Some(1));
        assert_eq!(
            promise(&mut a, b(3, 2), 4),
            (0, vec![run(4, 6, b(1, 1)), run(6, 7, b(2, 1))], None),
            "only slots from the requested one, one run per ballot, no values"
        );
    }

    #[test]
    fn acceptor_rejects_stale_prepare_accept_and_pull() {
        let mut a = Acceptor::default();
        a.answer(AcceptorRequest::Prepare {
            call: 1,
            ballot: b(5, 2),
            from_slot: 0,
        });
        let (w, r) = a.answer(AcceptorRequest::Prepare {
            call: 2,
            ballot: b(5, 1),
            from_slot: 0,
        });
        assert!(w.is_none());
        assert_eq!(
            r,
            AcceptorReply::Rejected {
                call: 2,
                ballot: b(5, 1),
                promised: b(5, 2)
            }
        );
        let (w, r) = a.answer(AcceptorRequest::Accept {
            call: 3,
            ballot: b(4, 9),
            first_slot: 0,
            values: vec![cmd(1)],
        });
        assert!(w.is_none(), "a rejected accept writes nothing");
        assert!(matches!(r, AcceptorReply::Rejected { .. }));
        assert!(a.accepted().is_empty());
        for ballot in [b(5, 1), b(6, 1)] {
            assert!(
                matches!(pull(&mut a, ballot, 0, 1), AcceptorReply::Rejected { promised, .. } if promised == b(5, 2)),
                "a Pull is answered only under the ballot promised, not {ballot}"
            );
        }
    }

    #[test]
    fn acceptor_duplicate_prepare_needs_no_write() {
        let mut a = Acceptor::default();
        a.answer(AcceptorRequest::Prepare {
            call: 1,
            ballot: b(1, 1),
            from_slot: 0,
        });
        let (w, r) = a.answer(AcceptorRequest::Prepare {
            call: 1,
            ballot: b(1, 1),
            from_slot: 0,
        });
        assert!(w.is_none());
        assert!(matches!(r, AcceptorReply::Promise { .. }));
    }

    #[test]
    fn acceptor_accept_at_higher_ballot_raises_promise() {
        let mut a = Acceptor::default();
        let w = accept(&mut a, b(3, 1), 0, vec![cmd(1)]);
        assert_eq!(w.and_then(|w| w.promised), Some(b(3, 1)));
        assert_eq!(a.promised(), b(3, 1));
    }

    #[test]
    fn acceptor_empty_accept_at_promised_ballot_needs_no_write() {
        let mut a = Acceptor::default();
        a.answer(AcceptorRequest::Prepare {
            call: 1,
            ballot: b(2, 1),
            from_slot: 0,
        });
        let (w, r) = a.answer(AcceptorRequest::Accept {
            call: 2,
            ballot: b(2, 1),
            first_slot: 0,
            values: vec![],
        });
        assert!(w.is_none(), "a read barrier must not cost a flush");
        assert!(matches!(r, AcceptorReply::Accepted { count: 0, .. }));
    }

    #[test]
    fn acceptor_large_summary_comes_in_parts_that_cover_every_slot() {
        // 100 bytes: two runs per part.
        let mut a = Acceptor::default().with_max_promise_bytes(100);
        for slot in 0..5 {
            accept(&mut a, b(slot + 1, 1), slot, vec![cmd(slot)]);
        }
        let mut from_slot = 0;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (_, runs, more_from) = promise(&mut a, b(9, 2), from_slot);
            assert!(runs.len() <= 2, "at most two runs in a part: {runs:?}");
            seen.extend(runs.iter().map(|r| r.first));
            match more_from {
                Some(next) => from_slot = next,
                None => break,
            }
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn acceptor_pull_answers_values_with_ballots_in_parts() {
        let big = |n| {
            Value::Command(Command {
                id: RequestId { client: 1, seq: n },
                ack_below: 0,
                payload: vec![0; 60],
            })
        };
        let mut a = Acceptor::default().with_max_promise_bytes(100);
        accept(&mut a, b(1, 1), 0, vec![big(1), big(2)]);
        accept(&mut a, b(2, 1), 2, vec![big(3)]);
        let mut first = 0;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let AcceptorReply::Pulled {
                first_slot,
                values,
                more_from,
                ..
            } = pull(&mut a, b(2, 1), first, 5)
            else {
                panic!("pulled")
            };
            assert_eq!(first_slot, first);
            assert_eq!(values.len(), 1, "each 92-byte value fills a 100-byte part");
            seen.extend(values.iter().map(|(ballot, _)| *ballot));
            match more_from {
                Some(next) => first = next,
                None => break,
            }
        }
        assert_eq!(seen, vec![b(1, 1), b(1, 1), b(2, 1)], "slots 0-2; 3 and 4 are not held");
    }

    #[test]
    fn acceptor_summary_counts_evicted_slots_and_pull_stops_until_they_are_reloaded() {
        let mut a = Acceptor::default();
        accept(&mut a, b(1, 1), 0, vec![cmd(1), cmd(2), cmd(3), cmd(4)]);
        assert_eq!(a.evict_below(3), 3);
        assert_eq!(a.accepted().len(), 1, "only slot 3 stays in memory");
        assert_eq!(a.accepted_slots(), 4, "the evicted ones are still accepted");
        // A new leader asks from slot 1: the summary needs no disk read.
        assert_eq!(promise(&mut a, b(2, 2), 1), (0, vec![run(1, 4, b(1, 1))], None));
        // A Pull does not jump over slots 1 and 2: it stops until they are read back.
        let r = pull(&mut a, b(2, 2), 1, 4);
        assert!(
            matches!(&r, AcceptorReply::Pulled { values, more_from: Some(1), .. } if values.is_empty()),
            "{r:?}"
        );
        a.reload_range(1, 4, |slot| Ok::<_, ()>(cmd(slot + 1)))
            .expect("reads succeed");
        let r = pull(&mut a, b(2, 2), 1, 4);
        assert_eq!(
            r,
            AcceptorReply::Pulled {
                call: 10,
                ballot: b(2, 2),
                first_slot: 1,
                values: vec![(b(1, 1), cmd(2)), (b(1, 1), cmd(3)), (b(1, 1), cmd(4))],
                more_from: None
            }
        );
        // Accepting over an evicted slot replaces what was stored.
        a.evict_below(4);
        accept(&mut a, b(2, 2), 0, vec![cmd(9)]);
        assert_eq!(a.stored_from(0).collect::<Vec<_>>(), vec![(1, 4)]);
        assert_eq!(a.accepted().get(&0), Some(&(b(2, 2), cmd(9))));
    }

    #[test]
    fn acceptor_compact_raises_floor_forgets_below_and_rerecords_promise() {
        let mut a = Acceptor::default().with_hot_slots(2);
        for first in (0..100).step_by(10) {
            let mut r = a.handle(
                1,
                AcceptorRequest::Accept {
                    call: first,
                    ballot: b(1, 1),
                    first_slot: first,
                    values: (0..10).map(cmd).collect(),
                },
            );
            assert_eq!(r.writes.len(), 1);
            r.writes.clear();
        }
        a.durable_through(10);
        assert_eq!(a.accepted_slots(), 100);
        let ready = a.compact(95);
        assert_eq!(
            ready.writes,
            vec![
                Write::Acceptor(AcceptorWrite {
                    promised: Some(b(1, 1)),
                    accepted: vec![]
                }),
                Write::Compact { below: 95 }
            ],
            "the promise is re-recorded before the log is cut"
        );
        assert_eq!(a.floor(), 95);
        assert_eq!(
            a.accepted_slots(),
            5,
            "nothing below the floor is kept, not even ballots"
        );
        assert_eq!(a.compact(95), Ready::default(), "not above the floor: nothing to do");
        assert_eq!(a.compact(50), Ready::default());
        assert_eq!(
            promise(&mut a, b(2, 2), 0),
            (95, vec![run(95, 100, b(1, 1))], None),
            "the floor is reported; nothing below it"
        );
        // The compaction's write counts: a later write is number 12.
        a.handle(
            1,
            AcceptorRequest::Accept {
                call: 99,
                ballot: b(2, 2),
                first_slot: 100,
                values: vec![cmd(100)],
            },
        );
        a.durable_through(11);
        assert!(a.accepted().contains_key(&100), "write 12 is not durable yet");
        a.durable_through(12);
        assert!(!a.accepted().contains_key(&98), "now it is, and older values may leave");
    }

    #[test]
    fn acceptor_with_floor_at_restart_writes_nothing_and_forgets_below() {
        let accepted = (0..10).map(|s| (s, (b(1, 1), cmd(s)))).collect();
        let mut a = Acceptor::restore(b(1, 1), accepted).with_floor(7);
        assert_eq!(a.floor(), 7);
        assert_eq!(a.accepted().keys().copied().collect::<Vec<_>>(), vec![7, 8, 9]);
        a.replay(AcceptorWrite {
            promised: None,
            accepted: vec![(3, b(1, 1), cmd(3))],
        });
        assert_eq!(
            a.accepted_slots(),
            3,
            "a replayed write below the floor stays forgotten"
        );
    }

    #[test]
    fn acceptor_accept_below_floor_is_answered_but_stores_only_slots_above() {
        let mut a = Acceptor::default().with_floor(5);
        let (w, r) = a.answer(AcceptorRequest::Accept {
            call: 1,
            ballot: b(1, 1),
            first_slot: 3,
            values: vec![cmd(3), cmd(4), cmd(5)],
        });
        assert_eq!(
            r,
            AcceptorReply::Accepted {
                call: 1,
                ballot: b(1, 1),
                first_slot: 3,
                count: 3
            }
        );
        assert_eq!(
            w.map(|w| w.accepted),
            Some(vec![(5, b(1, 1), cmd(5))]),
            "slots 3 and 4 are decided: not stored"
        );
        let (w, r) = a.answer(AcceptorRequest::Accept {
            call: 2,
            ballot: b(1, 1),
            first_slot: 0,
            values: vec![cmd(0)],
        });
        assert!(w.is_none(), "all below the floor, no new promise: no write");
        assert!(matches!(r, AcceptorReply::Accepted { count: 1, .. }));
    }

    /// The three requests at `ballot`, each answered by `a` through `handle`: the
    /// `Ready`s, in the order Prepare, Accept (of one value at slot 0), Pull.
    fn all_requests(a: &mut Acceptor, ballot: Ballot) -> Vec<Ready> {
        let requests = [
            AcceptorRequest::Prepare {
                call: 1,
                ballot,
                from_slot: 0,
            },
            AcceptorRequest::Accept {
                call: 2,
                ballot,
                first_slot: 0,
                values: vec![cmd(1)],
            },
            AcceptorRequest::Pull {
                call: 3,
                ballot,
                first: 0,
                end: 1,
            },
        ];
        requests.into_iter().map(|r| a.handle(2, r)).collect()
    }

    /// The `promised` ballot a `Ready` rejects with, if it is one `Rejected` and no write.
    fn rejected_with(ready: &Ready) -> Option<Ballot> {
        match &ready.send[..] {
            [(_, PeerMessage::AcceptorReply(AcceptorReply::Rejected { promised, .. }))] if ready.writes.is_empty() => {
                Some(*promised)
            }
            _ => None,
        }
    }

    #[test]
    fn acceptor_refuses_an_older_configuration_and_preempts_its_proposer() {
        let mut a = Acceptor::default().with_config(Some(1));
        let old = b(7, 1);
        let first_of_ours = Ballot::in_config(1, 0, 0);
        for ready in all_requests(&mut a, old) {
            let promised = rejected_with(&ready);
            assert_eq!(promised, Some(first_of_ours), "{ready:?}");
            assert!(
                promised.is_some_and(|p| p > old),
                "above the ballot: its proposer is preempted"
            );
        }
        assert!(a.accepted().is_empty());
        assert_eq!(a.promised(), Ballot::ZERO, "a refusal promises nothing");
        // Once it promised in configuration 1, the refusal names that promise.
        let ours = Ballot::in_config(1, 3, 2);
        assert_eq!(promise(&mut a, ours, 0), (0, vec![], None));
        for ready in all_requests(&mut a, old) {
            assert_eq!(rejected_with(&ready), Some(ours));
        }
        assert_eq!(a.promised(), ours);
    }

    #[test]
    fn acceptor_newer_configuration_is_refused_without_preempting_until_reconfigured() {
        let mut a = Acceptor::default();
        let ours = b(4, 1);
        accept(&mut a, ours, 0, vec![cmd(1)]);
        let newer = Ballot::in_config(1, 1, 2);
        for ready in all_requests(&mut a, newer) {
            let promised = rejected_with(&ready);
            assert_eq!(promised, Some(ours), "our lower promise, and no write: {ready:?}");
            assert!(
                promised.is_some_and(|p| p < newer),
                "below the ballot: its proposer is not preempted"
            );
        }
        assert_eq!(a.promised(), ours);
        assert_eq!(a.accepted().get(&0), Some(&(ours, cmd(1))), "nothing accepted");
        // The node applied the StopSign: configuration 1 is answered, 0 is refused.
        a.reconfigure(1);
        assert_eq!(a.config(), Some(1));
        assert_eq!(promise(&mut a, newer, 0), (0, vec![run(0, 1, ours)], None));
        accept(&mut a, newer, 1, vec![cmd(2)]);
        assert_eq!(rejected_with(&all_requests(&mut a, b(9, 1))[0]), Some(newer));
        // Configurations never go back.
        a.reconfigure(0);
        assert_eq!(a.config(), Some(1));
    }

    #[test]
    fn acceptor_joining_answers_nothing_until_reconfigured() {
        let mut a = Acceptor::default().with_config(None);
        for ballot in [b(1, 1), Ballot::in_config(1, 1, 1), Ballot::in_config(5, 1, 1)] {
            for ready in all_requests(&mut a, ballot) {
                let promised = rejected_with(&ready);
                assert!(
                    promised.is_some_and(|p| p < ballot),
                    "refused without preempting, no write: {ready:?}"
                );
            }
        }
        assert_eq!((a.promised(), a.accepted().len()), (Ballot::ZERO, 0));
        a.reconfigure(1);
        assert_eq!(a.config(), Some(1));
        let ballot = Ballot::in_config(1, 1, 1);
        let (w, r) = a.answer(AcceptorRequest::Prepare {
            call: 1,
            ballot,
            from_slot: 0,
        });
        assert!(matches!(r, AcceptorReply::Promise { .. }), "{r:?}");
        assert_eq!(w.and_then(|w| w.promised), Some(ballot));
    }
}
