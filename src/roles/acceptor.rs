//! # Acceptor
//!
//! The acceptor is Paxos's memory (Lamport, "Paxos Made Simple" §2.2; PMMC §3, the
//! Acceptor). It remembers one ballot it has *promised* and, per log slot, the value it
//! *accepted* with the ballot it was accepted at. It never initiates anything; it only
//! answers proposers:
//!
//! - `Prepare { ballot, from_slot }`: if `ballot` is not below the promise, promise it
//!   and answer `Promise` with every (slot, ballot, value) accepted from `from_slot` on;
//!   otherwise answer `Rejected` naming the promise.
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
//! **Memory.** Values accepted long ago are only needed again if a new leader's phase 1
//! asks for them. Once durable, all but the most recent ones leave memory
//! ([`Acceptor::evict_below`]); the core keeps just their ballots, in runs. A `Promise`
//! never skips such a *stored* slot: it stops there (`more_from`), and the driver reads
//! the values back from the log ([`Acceptor::reload_from`]) before it hands the core the
//! `Prepare` that asks for them. Which values are durable the core learns from the
//! driver ([`Acceptor::durable_through`]).
//!
//! **Left out.** Garbage collection of accepted values below the decided prefix (needs
//! snapshots, a later issue); reconfiguration (Lamport §3's α window; PMMC §4).

use super::bugs::PlantedBugs;
use super::ready::{AcceptorWrite, Ready, Write};
use super::runs::Runs;
use crate::messages::acceptor::PValue;
use crate::messages::codec;
use crate::messages::{AcceptorReply, AcceptorRequest, Ballot, MAX_ROUND, MAX_SLOT, NodeId, PeerMessage, Slot, Value};
use std::collections::{BTreeMap, VecDeque};

/// Default budget of value bytes in one Promise: what fits a frame of the default size.
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
    /// Most value bytes in one Promise (it must fit a transport frame).
    max_promise_bytes: usize,
    /// Values of this many of the most recent durable slots stay in memory.
    hot_slots: u64,
    /// Writes returned so far (the driver appends them in this order).
    writes: u64,
    /// Writes with accepted values not yet known durable: (write number, lowest slot,
    /// highest slot), oldest first. Their slots stay in memory.
    unsynced: VecDeque<(u64, Slot, Slot)>,
    bugs: PlantedBugs,
}

impl Acceptor {
    /// An acceptor with the state it persisted.
    pub fn restore(promised: Ballot, accepted: BTreeMap<Slot, (Ballot, Value)>) -> Self {
        Acceptor {
            promised,
            accepted,
            stored: Runs::new(),
            max_promise_bytes: DEFAULT_MAX_PROMISE_BYTES,
            hot_slots: DEFAULT_HOT_SLOTS,
            writes: 0,
            unsynced: VecDeque::new(),
            bugs: PlantedBugs::default(),
        }
    }

    /// Caps the value bytes of one Promise (the rest is reported on request).
    pub fn with_max_promise_bytes(mut self, bytes: usize) -> Self {
        self.max_promise_bytes = bytes;
        self
    }

    /// Keeps the values of the `hot` most recent durable slots in memory (the rest are
    /// read back from disk when a `Prepare` asks for them).
    pub fn with_hot_slots(mut self, hot: u64) -> Self {
        self.hot_slots = hot;
        self
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
    pub fn replay(&mut self, write: AcceptorWrite) {
        if let Some(ballot) = write.promised {
            self.promised = self.promised.max(ballot);
        }
        for (slot, ballot, value) in write.accepted {
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

    /// Before a `Prepare` from `from`: reads back, with `read`, the stored values it will
    /// report, up to about one Promise's worth (the report stops at the next stored slot).
    pub fn reload_from<E>(&mut self, from: Slot, mut read: impl FnMut(Slot) -> Result<Value, E>) -> Result<(), E> {
        if self.bugs.acceptor_promise_skips_stored() {
            return Ok(()); // Planted bug: what left memory is forgotten.
        }
        let mut bytes = 0;
        let ranges: Vec<(Slot, Slot)> = self.stored_from(from).collect();
        for slot in ranges.into_iter().flat_map(|(first, end)| first..end) {
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
        let before = self.promised;
        let out = match request {
            // Phase 1b: promise, and report what was accepted from the requested slot on.
            AcceptorRequest::Prepare {
                call,
                ballot,
                from_slot,
            } => {
                if ballot < self.promised || ballot.round > MAX_ROUND {
                    return (
                        None,
                        AcceptorReply::Rejected {
                            call,
                            ballot,
                            promised: self.promised,
                        },
                    );
                }
                let write = self.maybe_promise(ballot);
                let (mut accepted, mut bytes, mut more_from) = (Vec::new(), 0, None);
                // A stored slot is never skipped: the report stops there, to be asked
                // again once the driver has read it back.
                let stored = self.stored_from(from_slot).next().map(|(first, _)| first);
                // Planted bug: report only what is in memory, as if nothing else were accepted.
                let stored = stored.filter(|_| !self.bugs.acceptor_promise_skips_stored());
                for (&slot, (b, v)) in self.accepted.range(from_slot..) {
                    bytes += v.wire_size();
                    if let Some(s) = stored.filter(|s| *s < slot) {
                        more_from = Some(s);
                        break;
                    }
                    if !accepted.is_empty() && bytes > self.max_promise_bytes {
                        more_from = Some(slot);
                        break;
                    }
                    accepted.push(PValue {
                        slot,
                        ballot: *b,
                        value: v.clone(),
                    });
                }
                more_from = more_from.or(stored);
                (
                    write,
                    AcceptorReply::Promise {
                        call,
                        ballot,
                        accepted,
                        more_from,
                    },
                )
            }
            // Phase 2b: accept every value of the batch at this ballot.
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
                    return (
                        None,
                        AcceptorReply::Rejected {
                            call,
                            ballot,
                            promised: self.promised,
                        },
                    );
                }
                let mut write = self.maybe_promise(ballot).unwrap_or_default();
                let count = values.len() as u64;
                self.stored.remove(first_slot, first_slot + count);
                for (slot, value) in (first_slot..).zip(values) {
                    self.accepted.insert(slot, (ballot, value.clone()));
                    write.accepted.push((slot, ballot, value));
                }
                // An empty batch at the promised ballot (a read barrier) changes nothing.
                let changed = write.promised.is_some() || !write.accepted.is_empty();
                (
                    changed.then_some(write),
                    AcceptorReply::Accepted {
                        call,
                        ballot,
                        first_slot,
                        count,
                    },
                )
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

// PROVISIONAL until the selective-sync branch lands with the acceptor's floor: forgets
// nothing (so no promise ever lacks a compacted value), asks for no truncation.
impl Acceptor {
    pub fn compact(&mut self, _below: Slot) -> Ready {
        Ready::default()
    }
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
    fn acceptor_promises_and_reports_accepted_values() {
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
        let (w, _) = a.answer(AcceptorRequest::Accept {
            call: 2,
            ballot: b(1, 1),
            first_slot: 3,
            values: vec![cmd(1), cmd(2)],
        });
        assert_eq!(w.map(|w| w.accepted.len()), Some(2));
        let (_, r) = a.answer(AcceptorRequest::Prepare {
            call: 3,
            ballot: b(2, 2),
            from_slot: 4,
        });
        let AcceptorReply::Promise { accepted, .. } = r else {
            panic!("expected a promise")
        };
        assert_eq!(
            accepted,
            vec![PValue {
                slot: 4,
                ballot: b(1, 1),
                value: cmd(2)
            }],
            "only slots from the requested one"
        );
    }

    #[test]
    fn acceptor_rejects_stale_prepare_and_accept() {
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
        let (w, _) = a.answer(AcceptorRequest::Accept {
            call: 1,
            ballot: b(3, 1),
            first_slot: 0,
            values: vec![cmd(1)],
        });
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
    fn acceptor_large_report_comes_in_parts_that_cover_every_slot() {
        let mut a = Acceptor::default().with_max_promise_bytes(100);
        let big = |n| {
            Value::Command(Command {
                id: RequestId { client: 1, seq: n },
                ack_below: 0,
                payload: vec![0; 60],
            })
        };
        a.answer(AcceptorRequest::Accept {
            call: 1,
            ballot: b(1, 1),
            first_slot: 0,
            values: vec![big(1), big(2), big(3)],
        });
        let mut from_slot = 0;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (accepted, more_from) = promise(&mut a, b(2, 2), from_slot);
            assert_eq!(accepted.len(), 1, "each 92-byte value fills a 100-byte part");
            seen.extend(accepted.iter().map(|p| p.slot));
            match more_from {
                Some(next) => from_slot = next,
                None => break,
            }
        }
        assert_eq!(seen, vec![0, 1, 2]);
    }

    /// Prepares at `ballot` from `from_slot`; returns the Promise's report.
    fn promise(a: &mut Acceptor, ballot: Ballot, from_slot: Slot) -> (Vec<PValue>, Option<Slot>) {
        let (_, r) = a.answer(AcceptorRequest::Prepare {
            call: 9,
            ballot,
            from_slot,
        });
        let AcceptorReply::Promise {
            accepted, more_from, ..
        } = r
        else {
            panic!("a promise, not {r:?}")
        };
        (accepted, more_from)
    }

    #[test]
    fn acceptor_promise_stops_at_evicted_slots_until_they_are_reloaded() {
        let mut a = Acceptor::default();
        a.answer(AcceptorRequest::Accept {
            call: 1,
            ballot: b(1, 1),
            first_slot: 0,
            values: vec![cmd(1), cmd(2), cmd(3), cmd(4)],
        });
        assert_eq!(a.evict_below(3), 3);
        assert_eq!(a.accepted().len(), 1, "only slot 3 stays in memory");
        assert_eq!(a.accepted_slots(), 4, "the evicted ones are still accepted");
        // A new leader asks from slot 1: the report must not jump over 1 and 2.
        let (accepted, more_from) = promise(&mut a, b(2, 2), 1);
        assert!(accepted.is_empty());
        assert_eq!(more_from, Some(1), "ask again from the first stored slot");
        assert_eq!(a.stored_from(1).collect::<Vec<_>>(), vec![(1, 3)]);
        // The driver reads them back from disk; now the whole report comes at once.
        a.reload(1, cmd(2));
        a.reload(2, cmd(3));
        let (accepted, more_from) = promise(&mut a, b(2, 2), 1);
        assert_eq!(accepted.iter().map(|p| p.slot).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(
            accepted.iter().all(|p| p.ballot == b(1, 1)),
            "reloaded with their ballots"
        );
        assert_eq!(more_from, None);
        // Accepting over an evicted slot replaces what was stored.
        a.answer(AcceptorRequest::Accept {
            call: 4,
            ballot: b(2, 2),
            first_slot: 0,
            values: vec![cmd(9)],
        });
        assert_eq!(a.stored_from(0).count(), 0);
        assert_eq!(a.accepted().get(&0), Some(&(b(2, 2), cmd(9))));
    }
}
