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
//! the core says which slots to serve ([`Ready::serve`]) and the driver reads them.
//!
//! **Compaction.** Once a snapshot covering every slot below `at` is durable on this node
//! the state machine says so ([`LearnerInput::SnapshotDurable`]); the learner asks its
//! log to give back the space below `at` ([`Write::Compact`]) and from then on answers a
//! `Fetch` for those slots with `SnapshotOffer { at }`: they are only in the snapshot.
//!
//! **Snapshot transfer.** A learner offered a snapshot ahead of what it has applied
//! takes it from the offering peer one chunk at a time (`SnapshotRead` →
//! `SnapshotChunk`, about 1 MiB each, [`LearnerConfig::snapshot_chunk_bytes`]): only one
//! chunk is in flight, so a transfer never takes more than one chunk's share of the
//! link from the leader's traffic. Each chunk carries the CRC-32 of its bytes and of the
//! whole snapshot; a chunk that fails its checksum or does not continue where the last
//! one ended is dropped, and a chunk not answered within `fetch_retry_ticks` is asked for
//! again from the same offset (resumed, not restarted, after a cut connection). The
//! chunks go to a file on disk ([`Write::SnapshotChunk`]); once the last one is in and
//! the whole-snapshot checksum matches ([`Write::SnapshotReceived`]) the state machine is
//! told to install it ([`LocalMessage::InstallSnapshot`]). It installs it atomically and
//! answers with `SnapshotDurable { at }`: the learner then continues from `at`,
//! delivering what it already holds above and fetching the rest. A snapshot offered by
//! a peer whose snapshot has moved on meanwhile is offered again at its new position.
//!
//! **Left out.** Receiving from several peers at once, and resuming a transfer across a
//! restart of the receiving node (it starts over).

use super::bugs::PlantedBugs;
use super::ready::{Ready, Serve, ServeSnapshot, Write};
use crate::messages::codec;
use crate::messages::local::LocalMessage;
use crate::messages::{Configuration, LearnerMessage, MAX_SLOT, NodeId, PeerMessage, Slot, Value};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct LearnerConfig {
    /// Ask again after this many ticks without an answer.
    pub fetch_retry_ticks: u64,
    /// Most slots in one `Fetched`.
    pub max_fetch: u64,
    /// Most payload bytes in one `Fetched` (it must fit a transport frame); at least
    /// one value is sent whatever its size. By default what fits a default frame.
    pub max_fetch_bytes: usize,
    /// Bytes of snapshot in one `SnapshotChunk` (it must fit a transport frame).
    pub snapshot_chunk_bytes: usize,
}

/// Default bytes of snapshot in one chunk (1 MiB, or what fits the frame if less).
pub fn default_chunk_bytes(max_frame: usize) -> usize {
    (1 << 20).min(codec::message_budget(max_frame))
}

impl Default for LearnerConfig {
    fn default() -> Self {
        LearnerConfig {
            fetch_retry_ticks: 20,
            max_fetch: 1024,
            max_fetch_bytes: codec::message_budget(codec::DEFAULT_MAX_FRAME),
            snapshot_chunk_bytes: default_chunk_bytes(codec::DEFAULT_MAX_FRAME),
        }
    }
}

#[derive(Debug)]
pub enum LearnerInput {
    Peer(NodeId, LearnerMessage),
    Tick,
    /// From the state machine: a snapshot covering every slot below `at` is durable here
    /// (its own, or one received and installed).
    SnapshotDurable {
        at: Slot,
    },
    /// From the proposer: every slot below `below` is decided, and node `from` has them.
    CatchUp {
        below: Slot,
        from: NodeId,
    },
    /// From the local state machine: this configuration is in force here.
    Reconfigure(Configuration),
    /// From the node, joining: pull the state below `below` from `sources` in parallel.
    Migrate {
        below: Slot,
        sources: Vec<NodeId>,
    },
}

/// A snapshot being received from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Incoming {
    from: NodeId,
    at: Slot,
    /// Bytes received so far (the next chunk starts here), and their CRC-32.
    offset: u64,
    crc: u32,
    /// When the last chunk was asked for, and how often in a row without an answer.
    asked_at: u64,
    unanswered: u32,
    /// Complete and handed to the state machine: waiting for `SnapshotDurable`.
    installing: bool,
}

/// Asks without an answer after which a transfer is given up (a fetch starts over,
/// possibly from another peer).
const MAX_UNANSWERED: u32 = 5;

/// What the learner asks to have done, gathered while it handles one input and then
/// handed over as a [`Ready`]: the learned values are written first, then the state
/// machine gets the ordered ones and the proposer hears how far the log is learned.
#[derive(Debug, Default)]
struct Output {
    writes: Vec<Write>,
    persist: Vec<(Slot, Value)>,
    apply: Vec<(Slot, Value)>,
    install: Option<Slot>,
    send: Vec<(NodeId, PeerMessage)>,
    serve: Vec<Serve>,
    serve_snapshot: Vec<ServeSnapshot>,
    learned: Option<Slot>,
}

impl From<Output> for Ready {
    fn from(out: Output) -> Ready {
        let mut ready = Ready {
            writes: out.writes,
            ..Ready::default()
        };
        if !out.persist.is_empty() {
            ready.writes.push(Write::Decided(out.persist));
        }
        if !out.apply.is_empty() {
            ready.local.push(LocalMessage::Apply(out.apply));
        }
        if let Some(at) = out.install {
            ready.local.push(LocalMessage::InstallSnapshot { at });
        }
        if let Some(slot) = out.learned {
            ready.local.push(LocalMessage::Learned(slot));
        }
        ready.send = out.send;
        ready.serve = out.serve;
        ready.serve_snapshot = out.serve_snapshot;
        ready
    }
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
    /// The decided log holds no slot below this one (given back after a snapshot).
    floor: Slot,
    /// This node's durable snapshot covers every slot below this one (0: none).
    snapshot_at: Slot,
    /// A snapshot being received.
    incoming: Option<Incoming>,
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
            floor: 0,
            snapshot_at: 0,
            incoming: None,
            bugs: PlantedBugs::default(),
        }
    }

    /// After a restart: this node's durable snapshot covers every slot below `at`, and
    /// the decided log holds no slot below `floor` (at most `at`).
    pub fn with_snapshot(mut self, at: Slot, floor: Slot) -> Self {
        self.snapshot_at = at;
        self.floor = floor.min(at);
        self
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
    pub fn start(&mut self) -> Ready {
        let mut out = Output::default();
        self.deliver(&mut out);
        out.learned = Some(self.next);
        out.into()
    }

    pub fn handle(&mut self, input: LearnerInput) -> Ready {
        let mut out = Output::default();
        match input {
            // A new configuration is in force here (membership issue: to do).
            LearnerInput::Reconfigure(_) => {}
            // Joining: pull the state up to the StopSign (membership issue: to do).
            LearnerInput::Migrate { .. } => {}
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
            // applied slots are on disk only, so the driver serves those.
            LearnerInput::Peer(from, LearnerMessage::Fetch { from: first, to }) => {
                if first < self.floor {
                    // Given back: those slots are only in the snapshot now.
                    out.send.push((
                        from,
                        PeerMessage::Learner(LearnerMessage::SnapshotOffer { at: self.snapshot_at }),
                    ));
                } else if first < self.next {
                    out.serve.push(Serve {
                        to: from,
                        first,
                        end: to.min(self.next).min(first.saturating_add(self.cfg.max_fetch)),
                        max_bytes: self.cfg.max_fetch_bytes,
                    });
                } else {
                    let end = to.min(first.saturating_add(self.cfg.max_fetch));
                    let reply = fetched(first, end, self.cfg.max_fetch_bytes, |s| {
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
            // A peer has compacted the slots we asked for: take its snapshot if it is
            // ahead of us and we are not taking one already.
            LearnerInput::Peer(from, LearnerMessage::SnapshotOffer { at }) => {
                // One being installed is never replaced by a newer one meanwhile.
                let taking = self.incoming.as_ref().is_some_and(|i| i.at >= at || i.installing);
                if at > self.next && !taking {
                    self.fetching = None;
                    let incoming = Incoming {
                        from,
                        at,
                        offset: 0,
                        crc: 0,
                        asked_at: self.now,
                        unanswered: 0,
                        installing: false,
                    };
                    out.send.push((from, read_next(&incoming)));
                    self.incoming = Some(incoming);
                }
            }
            // A peer takes our snapshot: one chunk from its offset (from disk, so the
            // driver reads it; it offers our current snapshot if `at` is an older one).
            LearnerInput::Peer(from, LearnerMessage::SnapshotRead { at, offset }) => {
                if self.snapshot_at > 0 {
                    out.serve_snapshot.push(ServeSnapshot {
                        to: from,
                        at,
                        offset,
                        max_bytes: self.cfg.snapshot_chunk_bytes,
                    });
                }
            }
            // A chunk of the snapshot we take: keep it if it is intact and continues
            // where the last one ended; ask for the next, or hand the whole over.
            LearnerInput::Peer(
                from,
                LearnerMessage::SnapshotChunk {
                    at,
                    offset,
                    total,
                    file_crc,
                    crc,
                    data,
                },
            ) => self.take_chunk(from, at, offset, total, file_crc, crc, data, &mut out),
            // Time passes: retry a fetch, or a snapshot chunk, that went unanswered.
            LearnerInput::Tick => {
                self.now += 1;
                self.retry_chunk(&mut out);
                if let Some(source) = self.source {
                    self.maybe_fetch(source, &mut out);
                }
            }
            // A snapshot is durable here: give back the log below it, serve it to lagging
            // peers, and, if it was one we received, continue from where it ends.
            LearnerInput::SnapshotDurable { at } => {
                self.snapshot_at = self.snapshot_at.max(at);
                if at > self.floor {
                    self.floor = at;
                    out.writes.push(Write::Compact { below: at });
                }
                if self.incoming.as_ref().is_some_and(|i| i.at <= at) {
                    self.incoming = None;
                }
                if at > self.next {
                    self.log = self.log.split_off(&at);
                    self.next = at;
                    self.commit = self.commit.max(at);
                    self.fetching = None;
                    out.learned = Some(at);
                    self.deliver(&mut out);
                    if let Some(source) = self.source {
                        self.maybe_fetch(source, &mut out);
                    }
                }
            }
            // Our proposer leads from `below`: the slots under it are decided, and
            // `from` has them.
            LearnerInput::CatchUp { below, from } => {
                self.commit = self.commit.max(below);
                if below > self.next && self.source != Some(from) {
                    // The source we had may be the leader that died: `from` has them.
                    self.source = Some(from);
                    self.fetching = None;
                }
                self.maybe_fetch(from, &mut out);
            }
        }
        out.into()
    }

    /// Takes one chunk of the snapshot being received (see the module docs).
    #[allow(clippy::too_many_arguments)]
    fn take_chunk(
        &mut self,
        from: NodeId,
        at: Slot,
        offset: u64,
        total: u64,
        file_crc: u32,
        crc: u32,
        data: Vec<u8>,
        out: &mut Output,
    ) {
        let Some(inc) = self.incoming.as_mut() else { return };
        // Planted bug: any chunk of the snapshot goes on at the end of what we have.
        let misplaced = inc.offset != offset && !self.bugs.learner_takes_chunks_out_of_order();
        if inc.installing || inc.from != from || inc.at != at || misplaced {
            return; // Not the chunk we wait for (a duplicate, or from an older ask).
        }
        let offset = inc.offset;
        if crc32fast::hash(&data) != crc || offset + data.len() as u64 > total || (data.is_empty() && offset < total) {
            tracing::warn!(
                role = "learner",
                from,
                at,
                offset,
                "snapshot chunk damaged; asking again"
            );
            return; // The retry timer asks again.
        }
        let mut hasher = crc32fast::Hasher::new_with_initial(inc.crc);
        hasher.update(&data);
        inc.crc = hasher.finalize();
        inc.offset += data.len() as u64;
        inc.asked_at = self.now;
        inc.unanswered = 0;
        out.writes.push(Write::SnapshotChunk { at, offset, data });
        if inc.offset < total {
            out.send.push((from, read_next(inc)));
        } else if inc.crc != file_crc && !self.bugs.learner_takes_chunks_out_of_order() {
            tracing::warn!(
                role = "learner",
                from,
                at,
                "received snapshot fails its checksum; starting over"
            );
            inc.offset = 0;
            inc.crc = 0;
            out.send.push((from, read_next(inc)));
        } else {
            inc.installing = true;
            out.writes.push(Write::SnapshotReceived { at });
            out.install = Some(at);
        }
    }

    /// Asks again for a snapshot chunk not answered in time; gives the transfer up after
    /// [`MAX_UNANSWERED`] asks (the next fetch finds a source again). A snapshot handed
    /// to the state machine that never became durable is given up the same way, but
    /// only after much longer: reading, checking and syncing a large one takes time.
    fn retry_chunk(&mut self, out: &mut Output) {
        let Some(inc) = self.incoming.as_mut() else { return };
        if self.now - inc.asked_at < self.cfg.fetch_retry_ticks {
            return;
        }
        inc.asked_at = self.now;
        inc.unanswered += 1;
        let patience = if inc.installing {
            20 * MAX_UNANSWERED
        } else {
            MAX_UNANSWERED
        };
        if inc.unanswered > patience {
            tracing::warn!(
                role = "learner",
                from = inc.from,
                at = inc.at,
                "snapshot transfer given up"
            );
            self.incoming = None;
        } else if !inc.installing {
            out.send.push((inc.from, read_next(inc)));
        }
    }

    fn learn(&mut self, first_slot: Slot, values: Vec<Value>, out: &mut Output) {
        if first_slot.saturating_add(values.len() as u64) > MAX_SLOT {
            return; // Corrupt: no real log reaches that far.
        }
        for (slot, value) in (first_slot..).zip(values) {
            match self.log.get(&slot) {
                Some(known) => assert_eq!(known, &value, "slot {slot} decided twice with different values"),
                None if slot < self.next => {} // applied and no longer in memory
                None => {
                    self.commit = self.commit.max(slot + 1);
                    if self.bugs.learner_applies_out_of_order() {
                        out.apply.push((slot, value.clone())); // Planted bug: no waiting for gaps.
                    }
                    out.persist.push((slot, value.clone()));
                    self.log.insert(slot, value);
                }
            }
        }
        self.deliver(out);
    }

    fn deliver(&mut self, out: &mut Output) {
        if self.bugs.learner_applies_out_of_order() {
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
    fn maybe_fetch(&mut self, from: NodeId, out: &mut Output) {
        if from == self.id || self.commit <= self.next || self.incoming.is_some() {
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

/// The request for the next chunk of `incoming`.
fn read_next(incoming: &Incoming) -> PeerMessage {
    PeerMessage::Learner(LearnerMessage::SnapshotRead {
        at: incoming.at,
        offset: incoming.offset,
    })
}

/// The `Fetched` answer to a `Fetch` for `[first, end)`: consecutive values from
/// `lookup`, at most `max_bytes` of them past the first.
pub fn fetched<E>(
    first: Slot,
    end: Slot,
    max_bytes: usize,
    mut lookup: impl FnMut(Slot) -> Result<Option<Value>, E>,
) -> Result<LearnerMessage, E> {
    let (mut values, mut bytes) = (Vec::new(), 0);
    for slot in first..end {
        let Some(value) = lookup(slot)? else { break };
        bytes += value.wire_size();
        if !values.is_empty() && bytes > max_bytes {
            break;
        }
        values.push(value);
    }
    Ok(LearnerMessage::Fetched {
        first_slot: first,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Command, RequestId};

    fn apply_of(out: &Ready) -> Vec<(Slot, Value)> {
        out.local
            .iter()
            .flat_map(|m| match m {
                LocalMessage::Apply(batch) => batch.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn persist_of(out: &Ready) -> Vec<(Slot, Value)> {
        out.writes
            .iter()
            .flat_map(|w| match w {
                Write::Decided(values) => values.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    fn learned_of(out: &Ready) -> Option<Slot> {
        out.local.iter().find_map(|m| match m {
            LocalMessage::Learned(slot) => Some(*slot),
            _ => None,
        })
    }

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
        assert!(
            apply_of(&out).is_empty(),
            "slot 0 is missing: nothing may be applied yet"
        );
        assert_eq!(persist_of(&out).len(), 1);
        let out = l.handle(decide(0, vec![v(1)], 0));
        assert_eq!(apply_of(&out), vec![(0, v(1)), (1, v(2))]);
        assert_eq!(learned_of(&out), Some(2));
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
        assert_eq!(apply_of(&out).len(), 3);
        assert!(out.send.is_empty(), "nothing left to fetch");
    }

    #[test]
    fn learner_serves_applied_slots_from_disk_and_pending_ones_from_memory() {
        let log = BTreeMap::from([(0, v(1)), (1, v(2)), (3, v(4)), (4, v(5)), (6, v(7))]);
        let mut l = Learner::restore(3, LearnerConfig::default(), log, 3);
        assert_eq!(l.pending().len(), 3, "applied slots are not kept in memory");
        let out = l.handle(LearnerInput::Peer(1, LearnerMessage::Fetch { from: 0, to: 10 }));
        assert_eq!(
            out.serve,
            vec![Serve {
                to: 1,
                first: 0,
                end: 3,
                max_bytes: LearnerConfig::default().max_fetch_bytes
            }],
            "applied slots are read from the decided log on disk"
        );
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
        assert!(apply_of(&out).is_empty() && persist_of(&out).is_empty());
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
        assert!(apply_of(&out).is_empty());
        assert_eq!(
            learned_of(&out),
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
        let reply = fetched(0, 3, 1000, |s| Ok::<_, std::convert::Infallible>(log.get(&s).cloned()));
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

    fn peer(from: NodeId, msg: LearnerMessage) -> LearnerInput {
        LearnerInput::Peer(from, msg)
    }

    fn chunk(at: Slot, offset: u64, whole: &[u8], len: usize) -> LearnerMessage {
        let data = whole[offset as usize..(offset as usize + len).min(whole.len())].to_vec();
        LearnerMessage::SnapshotChunk {
            at,
            offset,
            total: whole.len() as u64,
            file_crc: crc32fast::hash(whole),
            crc: crc32fast::hash(&data),
            data,
        }
    }

    fn asks(out: &Ready) -> Vec<(NodeId, LearnerMessage)> {
        out.send
            .iter()
            .filter_map(|(to, m)| match m {
                PeerMessage::Learner(m) => Some((*to, m.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn learner_compacted_slots_are_offered_as_the_snapshot() {
        let mut l = Learner::restore(1, LearnerConfig::default(), BTreeMap::new(), 100);
        let out = l.handle(LearnerInput::SnapshotDurable { at: 80 });
        assert_eq!(
            out.writes,
            vec![Write::Compact { below: 80 }],
            "the log gives back what it covers"
        );
        let out = l.handle(peer(2, LearnerMessage::Fetch { from: 10, to: 100 }));
        assert_eq!(asks(&out), vec![(2, LearnerMessage::SnapshotOffer { at: 80 })]);
        let out = l.handle(peer(2, LearnerMessage::Fetch { from: 80, to: 100 }));
        assert_eq!(out.serve.len(), 1, "slots above the snapshot are served from the log");
        let out = l.handle(peer(2, LearnerMessage::SnapshotRead { at: 80, offset: 4096 }));
        assert_eq!(
            out.serve_snapshot,
            vec![ServeSnapshot {
                to: 2,
                at: 80,
                offset: 4096,
                max_bytes: LearnerConfig::default().snapshot_chunk_bytes
            }]
        );
    }

    #[test]
    fn learner_takes_a_snapshot_chunk_by_chunk_and_resumes_after_a_loss() {
        let cfg = LearnerConfig {
            fetch_retry_ticks: 3,
            snapshot_chunk_bytes: 4,
            ..LearnerConfig::default()
        };
        let whole = b"0123456789".to_vec();
        let mut l = Learner::restore(3, cfg, BTreeMap::new(), 0);
        l.handle(decide(52, vec![v(53)], 53));
        let out = l.handle(peer(1, LearnerMessage::SnapshotOffer { at: 50 }));
        assert_eq!(
            asks(&out),
            vec![(1, LearnerMessage::SnapshotRead { at: 50, offset: 0 })]
        );
        let out = l.handle(peer(1, chunk(50, 0, &whole, 4)));
        assert_eq!(
            out.writes,
            vec![Write::SnapshotChunk {
                at: 50,
                offset: 0,
                data: b"0123".to_vec()
            }]
        );
        assert_eq!(
            asks(&out),
            vec![(1, LearnerMessage::SnapshotRead { at: 50, offset: 4 })]
        );
        // That ask is lost; a damaged chunk and a stale duplicate are dropped.
        let mut damaged = chunk(50, 4, &whole, 4);
        if let LearnerMessage::SnapshotChunk { data, .. } = &mut damaged {
            data[0] ^= 1;
        }
        assert!(l.handle(peer(1, damaged)).writes.is_empty(), "fails its checksum");
        assert!(
            l.handle(peer(1, chunk(50, 0, &whole, 4))).writes.is_empty(),
            "not where we are"
        );
        let resent: Vec<_> = (0..3).flat_map(|_| asks(&l.handle(LearnerInput::Tick))).collect();
        assert_eq!(
            resent,
            vec![(1, LearnerMessage::SnapshotRead { at: 50, offset: 4 })],
            "asked again from where it stopped, not from the start"
        );
        l.handle(peer(1, chunk(50, 4, &whole, 4)));
        let out = l.handle(peer(1, chunk(50, 8, &whole, 4)));
        assert_eq!(
            out.writes,
            vec![
                Write::SnapshotChunk {
                    at: 50,
                    offset: 8,
                    data: b"89".to_vec()
                },
                Write::SnapshotReceived { at: 50 }
            ]
        );
        assert_eq!(out.local, vec![LocalMessage::InstallSnapshot { at: 50 }]);
        // Installed: it goes on from slot 50 with what it already holds.
        let out = l.handle(LearnerInput::SnapshotDurable { at: 50 });
        assert_eq!(l.next(), 50);
        assert_eq!(learned_of(&out), Some(50));
        assert_eq!(
            asks(&out),
            vec![(1, LearnerMessage::Fetch { from: 50, to: 52 })],
            "then fetches the slots between the snapshot and what it holds"
        );
    }

    #[test]
    fn learner_received_snapshot_failing_its_whole_checksum_is_taken_again() {
        let whole = b"abcdefgh".to_vec();
        let mut l = Learner::restore(3, LearnerConfig::default(), BTreeMap::new(), 0);
        l.handle(peer(1, LearnerMessage::SnapshotOffer { at: 9 }));
        let mut last = chunk(9, 0, &whole, 8);
        if let LearnerMessage::SnapshotChunk { file_crc, .. } = &mut last {
            *file_crc ^= 1;
        }
        let out = l.handle(peer(1, last));
        assert!(
            !out.writes.contains(&Write::SnapshotReceived { at: 9 }),
            "not installed"
        );
        assert_eq!(asks(&out), vec![(1, LearnerMessage::SnapshotRead { at: 9, offset: 0 })]);
    }

    #[test]
    fn learner_catch_up_fetches_from_the_node_that_has_the_slots_not_the_old_leader() {
        let cfg = LearnerConfig {
            fetch_retry_ticks: 2,
            ..LearnerConfig::default()
        };
        let mut l = Learner::restore(3, cfg, BTreeMap::new(), 0);
        // The old leader, node 1, announced slots up to 50, then died.
        l.handle(decide(50, vec![], 50));
        // This node leads now; node 2 reported that it compacted below 30.
        let out = l.handle(LearnerInput::CatchUp { below: 30, from: 2 });
        assert_eq!(asks(&out), vec![(2, LearnerMessage::Fetch { from: 0, to: 50 })]);
        let retried: Vec<_> = (0..2).flat_map(|_| asks(&l.handle(LearnerInput::Tick))).collect();
        assert_eq!(
            retried,
            vec![(2, LearnerMessage::Fetch { from: 0, to: 50 })],
            "retries go to node 2 too"
        );
    }
}
