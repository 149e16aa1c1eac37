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
//! the state machine in slot order, each exactly once per incarnation, with no gap, and
//! an `Apply` batch never goes on past a StopSign: the values after one go in a second
//! `Apply` of the same `Ready` (the state machine snapshots the state exactly at a
//! StopSign, so it must be the last value of its batch).
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
//! **Membership.** [`LearnerInput::Reconfigure`] (from the state machine, which applied
//! a StopSign or restored a snapshot holding a configuration) tells the configuration in
//! force: an older or the same id is ignored (a restarted node applies old StopSigns
//! again), a newer one's members other than this node are the peers it knows
//! ([`Learner::peers`]), and a fetch source that left it is replaced by one of them.
//!
//! **Migration** (Omni-Paxos's parallel log migration, done on the snapshot at the
//! StopSign). A node that joins holds nothing below `below`, the first slot of the
//! configuration it joins; [`LearnerInput::Migrate`] names the old members to pull
//! that state from. Every old member took a snapshot exactly at the StopSign, so they
//! hold the same bytes, and the learner pulls different chunks from different sources
//! at once, one chunk in flight per source (as a single transfer, each takes at most
//! one chunk's share of its link):
//!
//! 1. *Ask.* Source `k` (in id order) is asked for chunk `k` of the snapshot at `below`
//!    (`SnapshotRead { at: below, offset: k × chunk }`). It answers with that chunk (so
//!    it holds that snapshot; the chunk is kept, a piece past the end is empty) or
//!    offers the one it holds (`SnapshotOffer { at }`, its chunk goes back to be asked
//!    of another). Those holding the snapshot at `below` are given further chunks at
//!    once, before the choice: it is usually the one chosen.
//! 2. *Choose.* Once every source said what it holds (or a retry interval after the
//!    first did), the snapshot most sources hold is pulled (ties: the highest slot; only
//!    one ahead of what this node applied: the log after it is fetched as usual).
//!    Sources holding another are dropped; if the chosen one is not the one at `below`,
//!    what was written of that one is dropped too.
//! 3. *Pull.* The next missing chunk (offsets are multiples of
//!    [`LearnerConfig::snapshot_chunk_bytes`]; a range that did not come is handed out
//!    again first) goes to whichever source is free. A chunk unanswered for a retry
//!    interval is asked again; a source silent twice in a row, or now offering another
//!    snapshot, is dropped and its chunk handed to another. Each chunk is checked
//!    against its CRC; written at its offset as it comes, in any order
//!    ([`Write::SnapshotChunk`]: the first write of a transfer is marked `fresh`); the
//!    whole snapshot's CRC-32 is checked at the end, combined from the chunks' (a
//!    mismatch starts the pull over). [`Learner::migration_chunks`] counts the chunks
//!    each source served.
//! 4. *Hand over* as a single transfer does ([`LocalMessage::InstallSnapshot`], then
//!    `SnapshotDurable`), and fetch the log after it as usual.
//!
//! If no source is left (none answers, none holds a snapshot ahead of this node), the
//! migration is given up and the slots below `below` are fetched as usual: a source
//! that compacted them offers its snapshot, taken from it alone. One transfer at a time:
//! a migration replaces a single transfer not yet complete, and no offer is taken while
//! a migration runs.
//!
//! **Left out.** Resuming a transfer across a restart of the receiving node (it starts
//! over), and a single transfer (one offered after a `Fetch`) from several peers: only
//! a migration pulls in parallel.

use super::bugs::PlantedBugs;
use super::ready::{Ready, Serve, ServeSnapshot, Write};
use crate::messages::codec;
use crate::messages::local::LocalMessage;
use crate::messages::{ConfigId, Configuration, LearnerMessage, MAX_SLOT, NodeId, PeerMessage, Slot, Value};
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

/// Asks in a row without an answer after which a migration source is dropped and its
/// chunk handed to another (one lost message is asked again, not held against it).
const MIGRATION_SILENCE: u32 = 2;

/// A joining node's pull of the state below `below` from several sources at once.
#[derive(Debug)]
struct Migration {
    below: Slot,
    /// Every source asked, by id.
    sources: BTreeMap<NodeId, Source>,
    /// When the sources were first asked: the choice waits for the slow ones at most a
    /// retry interval once one answered.
    started: u64,
    /// The snapshot to pull is chosen. Before, the one at `below` (the StopSign's) is
    /// pulled already from those that hold it: it is usually the one chosen.
    chosen: bool,
    pull: Pull,
    /// Complete and handed to the state machine at this tick: waiting for
    /// `SnapshotDurable`.
    installing: Option<u64>,
}

/// One source of a migration.
#[derive(Debug, Default)]
struct Source {
    /// The snapshot it holds (covering slots below this one), once it said: a
    /// `SnapshotChunk` of it or a `SnapshotOffer`.
    holds: Option<Slot>,
    /// The one chunk it was asked for.
    task: Option<Task>,
    /// Silent, or holding another snapshot than the one pulled: asked no more.
    dropped: bool,
}

/// A chunk asked of a source: bytes `start..end` of the snapshot covering slots below
/// `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Task {
    at: Slot,
    start: u64,
    end: u64,
    asked_at: u64,
    unanswered: u32,
}

/// The bytes of one snapshot gathered chunk by chunk, in any order. Chunk offsets are
/// multiples of the chunk size; a range is handed to one source at a time.
#[derive(Debug)]
struct Pull {
    at: Slot,
    /// Its size and CRC-32, once a chunk said.
    total: Option<(u64, u32)>,
    /// The first chunk offset never handed out.
    next_cell: u64,
    /// Ranges handed out whose bytes did not come: handed out again first.
    retry: BTreeMap<u64, u64>,
    /// Received: offset -> (length, CRC-32 of those bytes). Never overlapping.
    pieces: BTreeMap<u64, (u64, u32)>,
    received: u64,
    /// Nothing written yet: the next write starts the incoming file afresh.
    fresh: bool,
    /// Planted bug `migration_skips_a_chunk`: the chunk at this offset, never asked for.
    skipped: Option<u64>,
}

impl Pull {
    fn new(at: Slot) -> Self {
        Pull {
            at,
            total: None,
            next_cell: 0,
            retry: BTreeMap::new(),
            pieces: BTreeMap::new(),
            received: 0,
            fresh: true,
            skipped: None,
        }
    }

    /// The next range to ask for: one handed out before whose bytes did not come, else
    /// the next chunk (the second one skipped, with the planted bug).
    fn hand_out(&mut self, chunk: u64, skip_second: bool) -> Option<(u64, u64)> {
        if let Some((start, end)) = self.retry.pop_first() {
            return Some((start, end));
        }
        if skip_second && self.next_cell == chunk && self.skipped.is_none() {
            self.skipped = Some(chunk); // Planted bug: treated as received, never asked.
            self.next_cell += chunk;
        }
        if self.total.is_some_and(|(total, _)| self.next_cell >= total) {
            return None;
        }
        let start = self.next_cell;
        self.next_cell += chunk;
        Some((start, start + chunk))
    }

    /// Bytes `start..end` were asked for and did not come: ask for them again.
    fn give_back(&mut self, start: u64, end: u64) {
        let end = self.total.map_or(end, |(total, _)| end.min(total));
        if start < end {
            self.retry.insert(start, end);
        }
    }

    /// A chunk said the snapshot's size and checksum: nothing past its end is asked for.
    fn learn_total(&mut self, total: u64, file_crc: u32) {
        if self.total.is_some() {
            return;
        }
        self.total = Some((total, file_crc));
        let retry = std::mem::take(&mut self.retry);
        for (start, end) in retry {
            self.give_back(start, end);
        }
    }

    /// Every byte is in (the skipped chunk counted as in, with the planted bug).
    fn complete(&self, chunk: u64) -> bool {
        let Some((total, _)) = self.total else { return false };
        let skipped = self.skipped.map_or(0, |s| total.saturating_sub(s).min(chunk));
        self.received + skipped == total
    }

    /// The CRC-32 of the pieces in order (crc32fast combines the pieces' checksums: no
    /// byte is read again), if they follow each other with no gap from 0.
    fn crc(&self) -> Option<u32> {
        let mut whole = crc32fast::Hasher::new();
        let mut end = 0;
        for (&offset, &(len, crc)) in &self.pieces {
            if offset != end {
                return None;
            }
            whole.combine(&crc32fast::Hasher::new_with_initial_len(crc, len));
            end += len;
        }
        Some(whole.finalize())
    }
}

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
        // A batch never goes on past a StopSign: the state machine snapshots the state
        // exactly at one, so it must be the last value it applies in that input.
        let mut batch = Vec::new();
        for (slot, value) in out.apply {
            let stop = matches!(value, Value::StopSign(_));
            batch.push((slot, value));
            if stop {
                ready.local.push(LocalMessage::Apply(std::mem::take(&mut batch)));
            }
        }
        if !batch.is_empty() {
            ready.local.push(LocalMessage::Apply(batch));
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
    /// A joining node's migration: the snapshot pulled from several sources at once.
    migration: Option<Migration>,
    /// Chunks taken from each source in migrations, for tests and metrics.
    migration_chunks: BTreeMap<NodeId, u64>,
    /// The configuration in force here (`None`: not told yet), and its other members.
    config: Option<ConfigId>,
    peers: Vec<NodeId>,
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
            migration: None,
            migration_chunks: BTreeMap::new(),
            config: None,
            peers: Vec::new(),
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

    /// The configuration in force here, as the state machine last said (`None`: not
    /// told yet).
    pub fn configuration(&self) -> Option<ConfigId> {
        self.config
    }

    /// The other members of that configuration, in ascending order.
    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    /// A migration (a snapshot pulled from several sources) is under way.
    pub fn migrating(&self) -> bool {
        self.migration.is_some()
    }

    /// Snapshot chunks taken from each source in migrations so far.
    pub fn migration_chunks(&self) -> &BTreeMap<NodeId, u64> {
        &self.migration_chunks
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
            // A newer configuration is in force here: its members are the nodes to fetch
            // from (a source that left it is replaced; the next leader's Decide names
            // one again). An older or the same one changes nothing.
            LearnerInput::Reconfigure(config) => {
                if self.config.is_none_or(|c| config.id > c) {
                    self.config = Some(config.id);
                    self.peers = config.ids().into_iter().filter(|&n| n != self.id).collect();
                    if self.source.is_some_and(|s| !self.peers.contains(&s)) {
                        self.source = self.peers.first().copied();
                        self.fetching = None;
                    }
                }
            }
            // Joining: pull the state below `below` from the sources in parallel.
            LearnerInput::Migrate { below, sources } => self.migrate(below, sources, &mut out),
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
            // During a migration, a source's offer says which snapshot it holds; nobody
            // else's is taken meanwhile.
            LearnerInput::Peer(from, LearnerMessage::SnapshotOffer { at }) if self.migration.is_some() => {
                self.migration_offer(from, at, &mut out);
            }
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
            // A chunk of a snapshot we take. In a migration: keep it if it is intact and
            // the one asked of that source, and give the source the next missing chunk.
            // From a single source: keep it if it is intact and continues where the last
            // one ended; ask for the next, or hand the whole over.
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
            ) => {
                let piece = Piece {
                    at,
                    offset,
                    total,
                    file_crc,
                    crc,
                    data,
                };
                if self.migration.is_some() {
                    self.migration_chunk(from, piece, &mut out);
                } else {
                    self.take_chunk(from, piece, &mut out);
                }
            }
            // Time passes: retry a fetch, or a snapshot chunk, that went unanswered.
            LearnerInput::Tick => {
                self.now += 1;
                self.retry_chunk(&mut out);
                self.migration_tick(&mut out);
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
                if self
                    .migration
                    .as_ref()
                    .is_some_and(|m| m.below <= at || (m.installing.is_some() && m.pull.at <= at))
                {
                    self.migration = None;
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
    fn take_chunk(&mut self, from: NodeId, piece: Piece, out: &mut Output) {
        let Some(inc) = self.incoming.as_mut() else { return };
        let (at, offset, total) = (piece.at, piece.offset, piece.total);
        // Planted bug: any chunk of the snapshot goes on at the end of what we have.
        let misplaced = inc.offset != offset && !self.bugs.learner_takes_chunks_out_of_order();
        if inc.installing || inc.from != from || inc.at != at || misplaced {
            return; // Not the chunk we wait for (a duplicate, or from an older ask).
        }
        let offset = inc.offset;
        if !piece.intact_at(offset) {
            tracing::warn!(
                role = "learner",
                from,
                at,
                offset,
                "snapshot chunk damaged; asking again"
            );
            return; // The retry timer asks again.
        }
        let (file_crc, data) = (piece.file_crc, piece.data);
        let mut hasher = crc32fast::Hasher::new_with_initial(inc.crc);
        hasher.update(&data);
        inc.crc = hasher.finalize();
        inc.offset += data.len() as u64;
        inc.asked_at = self.now;
        inc.unanswered = 0;
        out.writes.push(Write::SnapshotChunk {
            at,
            offset,
            data,
            fresh: offset == 0,
        });
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
        if from == self.id || self.commit <= self.next || self.incoming.is_some() || self.migration.is_some() {
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

/// A snapshot chunk as it came from a source.
#[derive(Debug)]
struct Piece {
    at: Slot,
    offset: u64,
    total: u64,
    file_crc: u32,
    crc: u32,
    data: Vec<u8>,
}

impl Piece {
    /// Its bytes pass their checksum and fit the snapshot as the piece at `offset`: a
    /// piece with bytes ends at or before `total`; an empty one stands at or past the
    /// end (a source asked for a chunk past the end of a small snapshot answers so).
    fn intact_at(&self, offset: u64) -> bool {
        let len = self.data.len() as u64;
        let fits = if len == 0 {
            offset >= self.total
        } else {
            offset + len <= self.total
        };
        fits && crc32fast::hash(&self.data) == self.crc
    }
}

/// Migration: a snapshot pulled from several sources at once.
impl Learner {
    /// Starts pulling the state below `below` from `sources` at once (see the module
    /// docs): each source is asked for a different chunk of the snapshot at `below`,
    /// which tells what it holds.
    fn migrate(&mut self, below: Slot, mut sources: Vec<NodeId>, out: &mut Output) {
        let busy = self.incoming.as_ref().is_some_and(|i| i.installing)
            || self
                .migration
                .as_ref()
                .is_some_and(|m| m.installing.is_some() || m.below >= below);
        if below <= self.next || busy {
            return;
        }
        sources.sort_unstable();
        sources.dedup();
        sources.retain(|&n| n != self.id);
        self.commit = self.commit.max(below);
        self.fetching = None;
        let Some(&first) = sources.first() else {
            tracing::warn!(role = "learner", below, "migration without a source; fetching as usual");
            if let Some(from) = self.source.or(self.peers.first().copied()) {
                self.maybe_fetch(from, out);
            }
            return;
        };
        self.source.get_or_insert(first);
        // At most one transfer: a single-source one not yet complete gives way.
        self.incoming = None;
        let mut m = Migration {
            below,
            sources: BTreeMap::new(),
            started: self.now,
            chosen: false,
            pull: Pull::new(below),
            installing: None,
        };
        let skip = self.bugs.migration_skips_a_chunk() && sources.len() >= 2;
        let chunk = self.chunk_bytes();
        for id in sources {
            let mut source = Source::default();
            if let Some((start, end)) = m.pull.hand_out(chunk, skip) {
                source.task = Some(Task {
                    at: below,
                    start,
                    end,
                    asked_at: self.now,
                    unanswered: 0,
                });
                out.send.push((id, read_at(below, start)));
            }
            m.sources.insert(id, source);
        }
        self.migration = Some(m);
    }

    /// The chunk size, at least one byte.
    fn chunk_bytes(&self) -> u64 {
        self.cfg.snapshot_chunk_bytes.max(1) as u64
    }

    /// A migration source offers the snapshot covering slots below `at`: it holds that
    /// one (an answer to what we asked of it). Its chunk goes back to be asked of
    /// another; once the choice is made, a source holding another snapshot is dropped.
    fn migration_offer(&mut self, from: NodeId, at: Slot, out: &mut Output) {
        let Some(m) = self.migration.as_mut() else { return };
        let Some(src) = m.sources.get_mut(&from) else { return };
        if m.installing.is_some() || src.dropped {
            return;
        }
        src.holds = Some(at);
        if let Some(task) = src.task.take()
            && task.at == m.pull.at
        {
            m.pull.give_back(task.start, task.end);
        }
        if at != m.pull.at && m.chosen {
            src.dropped = true;
        }
        self.migration_step(out);
    }

    /// A chunk from a migration source: kept if intact and the one asked of it; the
    /// source then gets the next missing chunk.
    fn migration_chunk(&mut self, from: NodeId, piece: Piece, out: &mut Output) {
        let misplaced_ok = self.bugs.learner_takes_chunks_out_of_order();
        let Some(m) = self.migration.as_mut() else { return };
        let Some(src) = m.sources.get_mut(&from) else { return };
        let Some(task) = src.task else { return };
        if m.installing.is_some() || src.dropped || piece.at != task.at {
            return; // Not asked of it (a duplicate, or an answer to an older ask).
        }
        // Planted bug: a chunk of another offset is taken as the one asked for.
        if piece.offset != task.start && !misplaced_ok {
            return;
        }
        let (offset, total, len) = (task.start, piece.total, piece.data.len() as u64);
        // An empty piece at or past the end is an answer too: a small snapshot has fewer
        // chunks than there are sources, and the first asks go to chunks 0, 1, 2, ...
        if !piece.intact_at(offset) {
            tracing::warn!(
                role = "learner",
                from,
                at = piece.at,
                offset,
                "migration chunk damaged; asking again"
            );
            return; // The retry timer asks again.
        }
        src.holds = Some(piece.at);
        src.task = None;
        if piece.at != m.pull.at {
            // What it holds is not the snapshot pulled (any more).
            src.dropped = m.chosen;
            return self.migration_step(out);
        }
        if m.pull.total.is_some_and(|t| t != (total, piece.file_crc)) {
            tracing::warn!(
                role = "learner",
                from,
                at = piece.at,
                "migration source holds other bytes at the same slot; dropped"
            );
            src.dropped = true;
            m.pull.give_back(task.start, task.end);
            return self.migration_step(out);
        }
        m.pull.learn_total(total, piece.file_crc);
        let end = task.end.min(total);
        let take = len.min(end.saturating_sub(offset));
        let (mut data, mut crc) = (piece.data, piece.crc);
        if take < len {
            // Its chunks are larger than ours: keep what we asked for.
            data.truncate(take as usize);
            crc = crc32fast::hash(&data);
        }
        if take > 0 {
            m.pull.pieces.insert(offset, (take, crc));
            m.pull.received += take;
            *self.migration_chunks.entry(from).or_default() += 1;
            out.writes.push(Write::SnapshotChunk {
                at: piece.at,
                offset,
                data,
                fresh: std::mem::replace(&mut m.pull.fresh, false),
            });
        }
        if offset + take < end {
            // Its chunks are smaller than ours: the rest is asked for again.
            m.pull.give_back(offset + take, end);
        }
        self.migration_step(out);
    }

    /// Time passes in a migration: a chunk unanswered for a retry interval is asked
    /// again; a source silent for [`MIGRATION_SILENCE`] asks in a row is dropped and its
    /// chunk handed to another. A snapshot handed over that never becomes durable is
    /// given up as a single transfer's is.
    fn migration_tick(&mut self, out: &mut Output) {
        let (now, retry) = (self.now, self.cfg.fetch_retry_ticks);
        let Some(m) = self.migration.as_mut() else { return };
        if let Some(since) = m.installing {
            if now - since > u64::from(20 * MAX_UNANSWERED) * retry.max(1) {
                tracing::warn!(
                    role = "learner",
                    at = m.pull.at,
                    "migrated snapshot never installed; given up"
                );
                self.abandon_migration(out);
            }
            return;
        }
        for (&id, src) in m.sources.iter_mut() {
            let Some(task) = src.task.as_mut() else { continue };
            if src.dropped || now - task.asked_at < retry {
                continue;
            }
            task.asked_at = now;
            task.unanswered += 1;
            if task.unanswered < MIGRATION_SILENCE {
                out.send.push((id, read_at(task.at, task.start)));
                continue;
            }
            tracing::warn!(
                role = "learner",
                from = id,
                at = task.at,
                "migration source silent; dropped"
            );
            let task = *task;
            src.dropped = true;
            src.task = None;
            if task.at == m.pull.at {
                m.pull.give_back(task.start, task.end);
            }
        }
        self.migration_step(out);
    }

    /// After every answer and tick of a migration: choose the snapshot to pull once the
    /// sources said what they hold, hand the missing chunks to the free sources, hand
    /// the snapshot over once complete and checked, or give up if no source is left.
    fn migration_step(&mut self, out: &mut Output) {
        let (now, retry, next, chunk) = (self.now, self.cfg.fetch_retry_ticks, self.next, self.chunk_bytes());
        let unchecked_ok = self.bugs.learner_takes_chunks_out_of_order();
        let skip_bug = self.bugs.migration_skips_a_chunk();
        let Some(m) = self.migration.as_mut() else { return };
        if m.installing.is_some() {
            return;
        }
        if !m.chosen {
            let pending = m.sources.values().any(|s| !s.dropped && s.holds.is_none());
            let answered = m.sources.values().any(|s| !s.dropped && s.holds.is_some());
            if !pending || (answered && now - m.started >= retry) {
                // The snapshot most sources hold (of those ahead of this node); of
                // those, the highest.
                let mut tally: BTreeMap<Slot, usize> = BTreeMap::new();
                for at in m.sources.values().filter(|s| !s.dropped).filter_map(|s| s.holds) {
                    if at > next {
                        *tally.entry(at).or_default() += 1;
                    }
                }
                if let Some((&at, _)) = tally.iter().max_by_key(|&(&at, &n)| (n, at)) {
                    m.chosen = true;
                    if at != m.pull.at {
                        m.pull = Pull::new(at); // What was written of the other is dropped.
                    }
                    for src in m.sources.values_mut() {
                        if src.holds.is_some_and(|h| h != at) {
                            src.dropped = true;
                            src.task = None;
                        }
                    }
                } else if !pending {
                    tracing::warn!(
                        role = "learner",
                        below = m.below,
                        "no migration source holds a snapshot ahead of this node"
                    );
                    return self.abandon_migration(out);
                }
            }
        }
        if m.chosen && m.pull.complete(chunk) {
            let at = m.pull.at;
            let unchecked = unchecked_ok || m.pull.skipped.is_some();
            if unchecked || m.pull.crc() == m.pull.total.map(|(_, crc)| crc) {
                m.installing = Some(now);
                out.writes.push(Write::SnapshotReceived { at });
                out.install = Some(at);
                return;
            }
            tracing::warn!(
                role = "learner",
                at,
                "migrated snapshot fails its checksum; starting over"
            );
            m.pull = Pull::new(at);
            for src in m.sources.values_mut() {
                src.task = None;
            }
        }
        // Hand the missing chunks to the free sources that hold the snapshot pulled.
        let skip = skip_bug && m.sources.len() >= 2;
        for (&id, src) in m.sources.iter_mut() {
            if src.dropped || src.task.is_some() || src.holds != Some(m.pull.at) {
                continue;
            }
            let Some((start, end)) = m.pull.hand_out(chunk, skip) else {
                break;
            };
            src.task = Some(Task {
                at: m.pull.at,
                start,
                end,
                asked_at: now,
                unanswered: 0,
            });
            out.send.push((id, read_at(m.pull.at, start)));
        }
        let pull_at = m.pull.at;
        let chosen = m.chosen;
        let live = m
            .sources
            .values()
            .any(|s| !s.dropped && (!chosen || s.holds.is_none_or(|h| h == pull_at)));
        if !live {
            tracing::warn!(role = "learner", at = pull_at, "no migration source left");
            self.abandon_migration(out);
        }
    }

    /// Gives a migration up: the slots below its `below` are fetched as usual, and a
    /// source that compacted them offers its snapshot, taken from it alone.
    fn abandon_migration(&mut self, out: &mut Output) {
        let Some(m) = self.migration.take() else { return };
        let Some(from) = self.source.or(m.sources.keys().next().copied()) else {
            return;
        };
        self.source = Some(from);
        self.fetching = None;
        self.maybe_fetch(from, out);
    }
}

/// The request for bytes from `offset` of the snapshot covering slots below `at`.
fn read_at(at: Slot, offset: u64) -> PeerMessage {
    PeerMessage::Learner(LearnerMessage::SnapshotRead { at, offset })
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
                data: b"0123".to_vec(),
                fresh: true
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
                    data: b"89".to_vec(),
                    fresh: false
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

    fn stop_sign(client: u64) -> Value {
        Value::StopSign(crate::messages::StopSign {
            id: RequestId { client, seq: 1 },
            prev: 0,
            members: Configuration::of_ids(&[1, 2]).members,
            sources: Vec::new(),
        })
    }

    #[test]
    fn learner_cuts_an_apply_batch_after_a_stop_sign() {
        let mut l = Learner::restore(2, LearnerConfig::default(), BTreeMap::new(), 0);
        let out = l.handle(decide(0, vec![v(1), stop_sign(9), v(3), stop_sign(8)], 4));
        let batches: Vec<Vec<Slot>> = out
            .local
            .iter()
            .filter_map(|m| match m {
                LocalMessage::Apply(batch) => Some(batch.iter().map(|(s, _)| *s).collect()),
                _ => None,
            })
            .collect();
        assert_eq!(
            batches,
            vec![vec![0, 1], vec![2, 3]],
            "each batch ends at its StopSign, in order"
        );
        assert_eq!(learned_of(&out), Some(4));
        assert_eq!(persist_of(&out).len(), 4, "one write for all of them");
    }

    #[test]
    fn learner_reconfigure_takes_only_a_newer_configuration() {
        let mut l = Learner::restore(1, LearnerConfig::default(), BTreeMap::new(), 0);
        assert_eq!(l.configuration(), None);
        l.handle(LearnerInput::Reconfigure(Configuration::of_ids(&[1, 2, 3])));
        assert_eq!((l.configuration(), l.peers()), (Some(0), &[2, 3][..]));
        // The leader, node 3, announces slots; it then leaves the configuration.
        l.handle(LearnerInput::Peer(
            3,
            LearnerMessage::Decide {
                first_slot: 0,
                values: vec![],
                commit: 5,
            },
        ));
        let same = Configuration::of_ids(&[1, 9]);
        assert!(l.handle(LearnerInput::Reconfigure(same)).is_empty());
        assert_eq!(l.peers(), &[2, 3], "the same id again changes nothing");
        let next = Configuration {
            id: 1,
            start: 5,
            members: Configuration::of_ids(&[1, 2, 4]).members,
        };
        l.handle(LearnerInput::Reconfigure(next));
        assert_eq!((l.configuration(), l.peers()), (Some(1), &[2, 4][..]));
        let asked: Vec<_> = (0..LearnerConfig::default().fetch_retry_ticks)
            .flat_map(|_| asks(&l.handle(LearnerInput::Tick)))
            .collect();
        assert_eq!(
            asked,
            vec![(2, LearnerMessage::Fetch { from: 0, to: 5 })],
            "node 3 left: the missing slots are fetched from a member"
        );
        l.handle(LearnerInput::Reconfigure(Configuration::of_ids(&[1, 3])));
        assert_eq!(l.configuration(), Some(1), "never back");
    }

    /// What a peer's learner (and driver) answers to a `SnapshotRead`: a chunk of the
    /// snapshot it holds if that is the one asked for (empty past its end), else an
    /// offer of the one it holds.
    fn serve(held: &(Slot, Vec<u8>), at: Slot, offset: u64, chunk: usize) -> LearnerMessage {
        let (held_at, bytes) = held;
        if *held_at != at {
            return LearnerMessage::SnapshotOffer { at: *held_at };
        }
        let start = (offset as usize).min(bytes.len());
        let data = bytes[start..(start + chunk).min(bytes.len())].to_vec();
        LearnerMessage::SnapshotChunk {
            at,
            offset,
            total: bytes.len() as u64,
            file_crc: crc32fast::hash(bytes),
            crc: crc32fast::hash(&data),
            data,
        }
    }

    /// The incoming file as a host keeps it (see [`Write::SnapshotChunk`]).
    fn write_incoming(file: &mut Vec<u8>, out: &Ready) {
        for w in &out.writes {
            if let Write::SnapshotChunk {
                offset, data, fresh, ..
            } = w
            {
                if *fresh {
                    file.clear();
                }
                let (start, end) = (*offset as usize, *offset as usize + data.len());
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[start..end].copy_from_slice(data);
            }
        }
    }

    fn reads(out: &Ready) -> Vec<(NodeId, Slot, u64)> {
        asks(out)
            .into_iter()
            .filter_map(|(to, m)| match m {
                LearnerMessage::SnapshotRead { at, offset } => Some((to, at, offset)),
                _ => None,
            })
            .collect()
    }

    /// A migration run against sources that answer every read (but those in `silent`),
    /// the oldest and the newest read in turn (so chunks arrive out of order). Checks
    /// that no source ever has two reads in flight, and keeps the incoming file as a
    /// host would.
    struct Run {
        learner: Learner,
        held: BTreeMap<NodeId, (Slot, Vec<u8>)>,
        silent: Vec<NodeId>,
        file: Vec<u8>,
        in_flight: BTreeMap<NodeId, (Slot, u64)>,
        installed: Option<Slot>,
        asked: Vec<(NodeId, Slot, u64)>,
        /// Offsets written, in order.
        written: Vec<u64>,
    }

    impl Run {
        fn new(held: BTreeMap<NodeId, (Slot, Vec<u8>)>, bugs: PlantedBugs) -> Self {
            let cfg = LearnerConfig {
                fetch_retry_ticks: 3,
                snapshot_chunk_bytes: 4,
                ..LearnerConfig::default()
            };
            Run {
                learner: Learner::restore(9, cfg, BTreeMap::new(), 0).with_bugs(bugs),
                held,
                silent: Vec::new(),
                file: Vec::new(),
                in_flight: BTreeMap::new(),
                installed: None,
                asked: Vec::new(),
                written: Vec::new(),
            }
        }

        fn take(&mut self, out: &Ready) {
            write_incoming(&mut self.file, out);
            self.written.extend(out.writes.iter().filter_map(|w| match w {
                Write::SnapshotChunk { offset, .. } => Some(*offset),
                _ => None,
            }));
            if let Some(at) = out.local.iter().find_map(|m| match m {
                LocalMessage::InstallSnapshot { at } => Some(*at),
                _ => None,
            }) {
                assert!(out.writes.contains(&Write::SnapshotReceived { at }));
                self.installed = Some(at);
            }
            for (to, at, offset) in reads(out) {
                let before = self.in_flight.insert(to, (at, offset));
                assert!(
                    before.is_none() || before == Some((at, offset)),
                    "source {to} asked for {offset} while {before:?} is in flight"
                );
                self.asked.push((to, at, offset));
            }
        }

        fn migrate(&mut self, below: Slot) -> Vec<(NodeId, Slot, u64)> {
            let sources = self.held.keys().copied().collect();
            let out = self.learner.handle(LearnerInput::Migrate { below, sources });
            self.take(&out);
            reads(&out)
        }

        /// Answers reads (the oldest and the newest in turn) and ticks until handed
        /// over; at most `steps`.
        fn run(&mut self, steps: usize) {
            for step in 0..steps {
                if self.installed.is_some() {
                    return;
                }
                // The order in which the reads in flight were asked.
                let mut order: Vec<(usize, NodeId)> = self
                    .in_flight
                    .iter()
                    .filter(|(to, _)| !self.silent.contains(to))
                    .map(|(to, read)| {
                        let asked = self.asked.iter().rposition(|&(t, a, o)| (t, (a, o)) == (*to, *read));
                        (asked.unwrap_or(0), *to)
                    })
                    .collect();
                order.sort_unstable();
                let pick = if step % 2 == 0 { order.first() } else { order.last() };
                let answerable = pick.map(|&(_, to)| (to, self.in_flight[&to]));
                let out = match answerable {
                    Some((to, (at, offset))) => {
                        self.in_flight.remove(&to);
                        let answer = serve(&self.held[&to], at, offset, 4);
                        self.learner.handle(peer(to, answer))
                    }
                    None => {
                        // Reads asked again replace the ones in flight.
                        self.in_flight.retain(|to, _| !self.silent.contains(to));
                        self.learner.handle(LearnerInput::Tick)
                    }
                };
                self.take(&out);
            }
        }
    }

    fn sources_holding(at: Slot, bytes: &[u8], ids: &[NodeId]) -> BTreeMap<NodeId, (Slot, Vec<u8>)> {
        ids.iter().map(|&n| (n, (at, bytes.to_vec()))).collect()
    }

    #[test]
    fn learner_migrates_from_three_sources_in_parallel() {
        let whole: Vec<u8> = (0..30u8).collect();
        let mut run = Run::new(sources_holding(10, &whole, &[1, 2, 3]), PlantedBugs::default());
        let first = run.migrate(10);
        assert_eq!(
            first,
            vec![(1, 10, 0), (2, 10, 4), (3, 10, 8)],
            "one chunk each, different chunks, all at once"
        );
        run.run(100);
        assert_eq!(run.installed, Some(10), "handed over to the state machine");
        assert_eq!(run.file, whole, "the bytes the sources hold, whatever the order");
        let served = run.learner.migration_chunks().clone();
        assert_eq!(served.values().sum::<u64>(), 8, "8 chunks of 4 bytes, each taken once");
        assert!(
            served.len() == 3 && served.values().all(|&n| n >= 2),
            "every source served: {served:?}"
        );
        assert!(
            run.written.windows(2).any(|w| w[1] < w[0]),
            "chunks came out of order: {:?}",
            run.written
        );
        // Installed: the learner goes on from the StopSign, fetching the log after it.
        run.learner.handle(decide(12, vec![], 12));
        let out = run.learner.handle(LearnerInput::SnapshotDurable { at: 10 });
        assert!(!run.learner.migrating());
        assert_eq!(run.learner.next(), 10);
        assert_eq!(asks(&out), vec![(1, LearnerMessage::Fetch { from: 10, to: 12 })]);
    }

    #[test]
    fn learner_migration_of_a_snapshot_smaller_than_one_chunk_per_source_waits_for_nothing() {
        // Three bytes: one chunk. Nodes 2 and 3 are asked for chunks past the end and
        // answer with empty pieces, which say they hold the snapshot all the same.
        let whole = vec![7u8, 8, 9];
        let mut run = Run::new(sources_holding(10, &whole, &[1, 2, 3]), PlantedBugs::default());
        assert_eq!(run.migrate(10), vec![(1, 10, 0), (2, 10, 4), (3, 10, 8)]);
        run.run(3);
        assert_eq!(
            run.installed,
            Some(10),
            "handed over on the three answers, no retry interval"
        );
        assert_eq!(run.file, whole);
    }

    #[test]
    fn learner_migration_failing_the_whole_checksum_starts_over() {
        let whole: Vec<u8> = (0..12u8).collect();
        let held = sources_holding(10, &whole, &[1, 2]);
        // Node 2's bytes differ, each chunk with a right checksum of its own, but the
        // whole-snapshot checksum it reports is the right one.
        let mut bad = whole.clone();
        bad[5] ^= 0xff;
        let mut run = Run::new(held.clone(), PlantedBugs::default());
        run.migrate(10);
        let (to, (at, offset)) = (2, run.in_flight[&2]);
        run.in_flight.remove(&2);
        let LearnerMessage::SnapshotChunk { total, file_crc, .. } = serve(&held[&2], at, offset, 4) else {
            panic!("a chunk")
        };
        let data = bad[offset as usize..offset as usize + 4].to_vec();
        let lie = LearnerMessage::SnapshotChunk {
            at,
            offset,
            total,
            file_crc,
            crc: crc32fast::hash(&data),
            data,
        };
        let out = run.learner.handle(peer(to, lie));
        run.take(&out);
        run.run(100);
        assert_eq!(run.installed, Some(10));
        assert_eq!(run.file, whole, "the damaged transfer was taken again");
        assert!(
            run.asked.iter().filter(|&&(_, _, o)| o == 0).count() >= 2,
            "started over"
        );
    }

    #[test]
    fn learner_migration_hands_a_silent_sources_chunk_to_another() {
        let whole: Vec<u8> = (0..30u8).collect();
        let mut run = Run::new(sources_holding(10, &whole, &[1, 2, 3]), PlantedBugs::default());
        run.silent = vec![2];
        assert_eq!(run.migrate(10)[1], (2, 10, 4));
        run.run(200);
        assert_eq!(run.installed, Some(10));
        assert_eq!(run.file, whole);
        assert_eq!(run.learner.migration_chunks().get(&2), None, "node 2 served nothing");
        assert!(
            run.asked.iter().any(|&(to, _, offset)| offset == 4 && to != 2),
            "its chunk was asked of another: {:?}",
            run.asked
        );
        let asked_of_2 = run.asked.iter().filter(|&&(to, ..)| to == 2).count();
        assert_eq!(asked_of_2, MIGRATION_SILENCE as usize, "asked again once, then dropped");
    }

    #[test]
    fn learner_migration_takes_the_snapshot_most_sources_hold() {
        let older: Vec<u8> = (0..20u8).collect();
        let newer: Vec<u8> = (100..126u8).collect();
        // Nodes 1 and 3 hold the snapshot at the StopSign, node 2 a later one.
        let mut held = sources_holding(10, &older, &[1, 3]);
        held.insert(2, (12, newer.clone()));
        let mut run = Run::new(held, PlantedBugs::default());
        run.migrate(10);
        run.run(200);
        assert_eq!(run.installed, Some(10), "two sources hold the one at 10");
        assert_eq!(run.file, older);
        assert_eq!(
            run.asked.iter().filter(|&&(to, ..)| to == 2).count(),
            1,
            "node 2 holds another one: asked once, to say which"
        );
        // Most sources hold a later one: that one, from them only.
        let mut held = sources_holding(12, &newer, &[2, 3]);
        held.insert(1, (10, older.clone()));
        let mut run = Run::new(held, PlantedBugs::default());
        run.migrate(10);
        run.run(200);
        assert_eq!(run.installed, Some(12));
        assert_eq!(run.file, newer, "what was written of the other one is dropped");
        let after_choice: Vec<_> = run.asked.iter().filter(|&&(_, at, _)| at == 12).collect();
        assert!(
            after_choice.iter().all(|&&(to, ..)| to != 1),
            "node 1 holds another one: {after_choice:?}"
        );
        // A tie: the higher slot wins.
        let mut held = sources_holding(12, &newer, &[2]);
        held.insert(1, (10, (0..20u8).collect()));
        let mut run = Run::new(held, PlantedBugs::default());
        run.migrate(10);
        run.run(200);
        assert_eq!(run.installed, Some(12));
        assert_eq!(run.file, newer);
    }

    #[test]
    fn learner_migration_with_no_answer_falls_back_to_fetching() {
        let whole: Vec<u8> = (0..8u8).collect();
        let mut run = Run::new(sources_holding(10, &whole, &[1, 2]), PlantedBugs::default());
        run.silent = vec![1, 2];
        run.migrate(10);
        let mut fetched = Vec::new();
        for _ in 0..20 {
            let out = run.learner.handle(LearnerInput::Tick);
            fetched.extend(
                asks(&out)
                    .into_iter()
                    .filter(|(_, m)| matches!(m, LearnerMessage::Fetch { .. })),
            );
        }
        assert!(!run.learner.migrating(), "given up");
        assert_eq!(
            fetched.first(),
            Some(&(1, LearnerMessage::Fetch { from: 0, to: 10 })),
            "the slots below the StopSign are fetched as usual (a source that compacted them offers its snapshot)"
        );
        // That offer is taken the usual way, from that node alone.
        let out = run.learner.handle(peer(1, LearnerMessage::SnapshotOffer { at: 10 }));
        assert_eq!(
            asks(&out),
            vec![(1, LearnerMessage::SnapshotRead { at: 10, offset: 0 })]
        );
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn learner_planted_migration_skips_a_chunk_hands_over_other_bytes() {
        let whole: Vec<u8> = (1..=30u8).collect();
        let bugs = PlantedBugs {
            migration_skips_a_chunk: true,
            ..PlantedBugs::default()
        };
        let mut run = Run::new(sources_holding(10, &whole, &[1, 2, 3]), bugs);
        run.migrate(10);
        run.run(100);
        assert_eq!(run.installed, Some(10), "handed over, unchecked");
        assert!(
            run.asked.iter().all(|&(_, _, offset)| offset != 4),
            "the second chunk was never asked for"
        );
        assert_ne!(run.file, whole, "the state handed over differs from the sources'");
        // Without the bug the same run hands over the right bytes (see above).
    }
}
