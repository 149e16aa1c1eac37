//! # StateMachine
//!
//! The state machine applies decided commands to the application strictly in slot order
//! and answers the clients waiting on this node (PMMC §3, the Replica's `perform`).
//!
//! **Exactly once.** Every command carries a client id and a per-client sequence number.
//! The replicated state keeps, per client, the replies of requests not yet acknowledged
//! (`ack_below` in each command says which the client no longer needs), so a retried
//! request that was decided twice, in two slots, is applied once and answered the same
//! both times. This table is part of the replicated state and of the snapshot.
//!
//! **Durability.** Decided values are durable at the acceptors and written to the
//! learner's log. Every `snapshot_every` slots (once the commands applied since add up
//! to twice the last snapshot's size) the core asks for a snapshot
//! ([`Write::Snapshot`]): the host streams the applied index, the application, the
//! client table and the configuration to a temporary file, syncs the decided log (the
//! slots a snapshot covers must stay servable to lagging peers), then syncs and renames
//! the file over `snapshot.bin`, all while applies go on, and says so with
//! [`StateMachineInput::SnapshotInstalled`] (at most one snapshot at a time). A restart
//! replays only the log after it.
//!
//! **Compaction.** With compaction on ([`SnapshotPolicy::compact`]) a snapshot is also
//! taken every `every_slots` slots or once `every_bytes` of commands (at least half the
//! last snapshot's size) were applied, whichever comes first, and once it is durable the
//! core tells the acceptor ([`LocalMessage::Compact`]) and the learner
//! ([`LocalMessage::SnapshotDurable`]) that every slot below it is in a durable
//! snapshot: their logs give the space back. Never before it is durable: a crash would
//! otherwise leave a node whose logs start above its snapshot.
//!
//! **Installing a received snapshot.** The learner hands over a snapshot it received
//! from a peer ([`StateMachineInput::InstallSnapshot`]). If it is ahead of what is
//! applied here, and once no snapshot of this node's own is being made durable (so two
//! renames never race and the durable snapshot never goes back), the host makes it
//! durable in place of the current one ([`Write::InstallSnapshot`]) and hands its bytes
//! back ([`StateMachineInput::Restored`]); the core then replaces its state with it and
//! tells the learner (and the acceptor) where it now stands.
//!
//! **Membership.** The configuration in force ([`Configuration`]: its id, first slot and
//! members) is replicated state like the client table: it starts as the config file's
//! ([`StateMachine::with_configuration`], id 0), is in every snapshot, and changes only
//! by applying a StopSign (rule 4 of [`crate::messages::membership`]). A StopSign at
//! slot `s` whose `prev` names the configuration in force starts the next one,
//! `current.after(&stop, s)`, in force from `s + 1`; the `Ready` then holds, in order,
//! [`Write::Membership`] (the host records it and reaches the new members), a
//! [`Write::Snapshot`] at `s + 1` (a snapshot exactly at the StopSign: every old member
//! holds the same bytes there, so a new member pulls it from several of them at once;
//! skipped if a snapshot or an install is already under way, one at a time, or if the
//! change adds no member) and
//! [`LocalMessage::Reconfigure`] (the host hands it to the acceptor, proposer, elector
//! and learner). Its request gets no answer: the node's gateway watches the
//! configuration. A StopSign whose `prev` is not the configuration in force (a change
//! raced with another), or that names no member at all, changes nothing and its request
//! is answered `Err("refused: ...")`. A StopSign never reaches the application and takes no entry in
//! the client table. Because a [`Write::Snapshot`] is of the state as it stands when the
//! host carries it out, a StopSign that changes the configuration must be the last value
//! of its `Apply` batch: the learner cuts batches after a StopSign, and this core asserts
//! it. A received snapshot that holds a newer configuration than the one in force gives
//! the same [`Write::Membership`] and [`LocalMessage::Reconfigure`] once restored.
//!
//! **Answering.** Applying a request's command answers it ([`Ready::answers`]). A
//! linearizable read (read index, Raft dissertation §6.4) waits here too: it is
//! registered with `ReadWait`, gets its index from the leader's `ReadIndexReply`, and is
//! answered from the application once every slot below the index is applied.
//!
//! **Invariant.** Slot `n` is applied only right after slot `n - 1`; an out-of-order
//! delivery panics rather than diverge from the other replicas. Configuration ids only
//! go up.
//!
//! **Left out.** Incremental snapshots: every snapshot is the whole state.

use super::bugs::PlantedBugs;
use super::ready::{Outcome, Ready, Write};
use crate::app::Application;
use crate::error::{Error, Result};
use crate::messages::codec;
use crate::messages::local::LocalMessage;
use crate::messages::{ClientId, Configuration, RequestId, Slot, StopSign, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the state machine is told.
#[derive(Debug)]
pub enum StateMachineInput<C> {
    /// From the learner: decided values, consecutive, in slot order.
    Apply(Vec<(Slot, Value)>),
    /// From the node's gateway: answer read-only `command` once a leader confirmed a
    /// read index for `id` and every slot below it is applied here.
    ReadWait { id: RequestId, command: C },
    /// From the leader's proposer: the read `id` may be served once every slot below
    /// `index` is applied (`None`: the node asked does not lead; the gateway asks again
    /// at once, [`Ready::retry_reads`]).
    ReadIndexReply { id: RequestId, index: Option<Slot> },
    /// From the node's gateway: it stopped waiting for `id`.
    Unregister(RequestId),
    /// From the host: the snapshot asked for is durable (`Ok` with its size in bytes),
    /// or could not be made so.
    SnapshotInstalled(std::result::Result<u64, String>),
    /// From the learner: a snapshot covering every slot below `at` was received from a
    /// peer and is complete on disk.
    InstallSnapshot { at: Slot },
    /// From the host: the received snapshot covering slots below `at` is durable in
    /// place of the current one; its bytes (or why it could not be installed).
    Restored {
        at: Slot,
        result: std::result::Result<Vec<u8>, String>,
    },
}

/// When to snapshot.
#[derive(Clone, Copy, Debug, Default)]
pub struct SnapshotPolicy {
    /// At most every this many applied slots (0: never), once the commands applied since
    /// add up to twice the last snapshot's size.
    pub every: u64,
    /// Compaction: snapshot more often, and let the logs give back what a durable
    /// snapshot covers (`None`: the logs are kept whole).
    pub compact: Option<CompactPolicy>,
}

/// How often to snapshot for compaction: whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactPolicy {
    /// Every this many applied slots.
    pub every_slots: u64,
    /// Once this many bytes of commands were applied (but at least half the last
    /// snapshot's size, so that snapshotting a large state costs at most about twice
    /// the log it saves).
    pub every_bytes: u64,
}

/// A read waiting for its index, then for the state machine to reach it.
#[derive(Debug)]
struct PendingRead<C> {
    command: C,
    index: Option<Slot>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Session<R> {
    ack_below: u64,
    replies: BTreeMap<u64, Outcome<R>>,
}

/// The replicated state machine: no I/O.
pub struct StateMachine<A: Application> {
    app: A,
    next: Slot,
    sessions: BTreeMap<ClientId, Session<A::Reply>>,
    /// The configuration in force after the slots applied (replicated state: in the
    /// snapshot).
    configuration: Configuration,
    /// Linearizable reads waiting for their index or for applies to reach it.
    reads: BTreeMap<RequestId, PendingRead<A::Command>>,
    policy: SnapshotPolicy,
    /// The slot the last durable snapshot covers up to, and its size: a snapshot is
    /// taken only when the command bytes applied since are at least twice that size, so
    /// snapshotting a large state costs at most about half of the log volume.
    last_snapshot: Slot,
    last_snapshot_bytes: u64,
    applied_bytes: u64,
    /// A snapshot taken at this slot is being made durable (at most one at a time).
    snapshotting: Option<Slot>,
    /// A received snapshot covering slots below this one is being installed.
    installing: Option<Slot>,
    /// A received snapshot to install once `snapshotting` is done.
    install_next: Option<Slot>,
    snapshots: u64,
    bugs: PlantedBugs,
}

impl<A: Application + Default> Default for StateMachine<A> {
    fn default() -> Self {
        StateMachine::new(A::default())
    }
}

impl<A: Application> StateMachine<A> {
    pub fn new(app: A) -> Self {
        StateMachine::from_parts(app, 0, BTreeMap::new(), Configuration::default())
    }

    fn from_parts(
        app: A,
        next: Slot,
        sessions: BTreeMap<ClientId, Session<A::Reply>>,
        configuration: Configuration,
    ) -> Self {
        StateMachine {
            app,
            next,
            sessions,
            configuration,
            reads: BTreeMap::new(),
            policy: SnapshotPolicy::default(),
            last_snapshot: next,
            last_snapshot_bytes: 0,
            applied_bytes: 0,
            snapshotting: None,
            installing: None,
            install_next: None,
            snapshots: 0,
            bugs: PlantedBugs::default(),
        }
    }

    /// Snapshots by `policy` (none by default).
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The configuration in force before any slot is applied: the config file's (id 0).
    /// A state machine restored from a snapshot holding a newer configuration keeps that
    /// one (and one holding the same id with members keeps its own): pass the config
    /// file's configuration here, never the host's `membership` file, which may be ahead
    /// of the snapshot (the StopSigns after the snapshot are applied again from the log
    /// and move the configuration on themselves).
    pub fn with_configuration(mut self, configuration: Configuration) -> Self {
        let current = &self.configuration;
        if configuration.id > current.id || (configuration.id == current.id && current.members.is_empty()) {
            self.configuration = configuration;
        }
        self
    }

    /// The configuration in force here (after the slots applied so far).
    pub fn configuration(&self) -> &Configuration {
        &self.configuration
    }

    /// Snapshots made durable so far.
    pub fn snapshots(&self) -> u64 {
        self.snapshots
    }

    /// Linearizable reads waiting here.
    pub fn waiting_reads(&self) -> usize {
        self.reads.len()
    }

    pub fn handle(&mut self, input: StateMachineInput<A::Command>) -> Ready<A::Reply> {
        let mut out = Ready::default();
        match input {
            // Decided values: apply each in slot order, answer the commands, then the
            // reads whose index is reached; snapshot if it is time. A StopSign that
            // changes the configuration ends the batch (the learner cuts batches after
            // one): its snapshot is of the state at it.
            StateMachineInput::Apply(batch) => {
                let last = batch.len().saturating_sub(1);
                for (i, (slot, value)) in batch.into_iter().enumerate() {
                    if slot < self.next {
                        continue; // Re-delivered after a restart race; already applied.
                    }
                    if let Value::Command(c) = &value {
                        self.applied_bytes += c.payload.len() as u64;
                    }
                    let before = self.configuration.clone();
                    if let Some(answer) = self.apply(slot, value) {
                        out.answers.push(answer);
                    }
                    if self.configuration.id != before.id {
                        assert!(
                            i == last,
                            "an Apply batch went on past the StopSign of slot {slot}: the snapshot \
                             at it would hold later slots"
                        );
                        let adds = self.configuration.ids().iter().any(|&n| !before.contains(n));
                        self.reconfigured(adds, &mut out);
                    }
                }
                self.answer_reads(&mut out);
                self.maybe_snapshot(&mut out);
            }
            // A read begins: it waits for its index.
            StateMachineInput::ReadWait { id, command } => {
                self.reads.insert(id, PendingRead { command, index: None });
            }
            // The leader confirmed a read index: the first confirmation counts. A
            // refusal (the node asked does not lead) sends a read still without an
            // index to ask again at once.
            StateMachineInput::ReadIndexReply { id, index } => match (self.reads.get_mut(&id), index) {
                (Some(read), Some(index)) => {
                    read.index.get_or_insert(index);
                    self.answer_reads(&mut out);
                }
                (Some(read), None) if read.index.is_none() => out.retry_reads.push(id),
                _ => {}
            },
            // Nobody waits for this read any more.
            StateMachineInput::Unregister(id) => {
                self.reads.remove(&id);
            }
            // The snapshot asked for is durable (or failed; the next one is due after as
            // much log again, not on every batch): the logs may give back what it
            // covers. Then a received snapshot that waited for it may be installed.
            StateMachineInput::SnapshotInstalled(result) => {
                let at = self.snapshotting.take();
                match (at, result) {
                    (Some(at), Ok(bytes)) => {
                        self.last_snapshot = at;
                        self.last_snapshot_bytes = bytes;
                        self.snapshots += 1;
                        if self.policy.compact.is_some() && !self.bugs.state_machine_compacts_early() {
                            compact(at, &mut out);
                        }
                    }
                    (_, Err(e)) => tracing::error!(role = "state_machine", error = %e, "snapshot failed"),
                    (None, Ok(_)) => {}
                }
                if let Some(at) = self.install_next.take() {
                    self.install(at, &mut out);
                }
            }
            // The learner received a snapshot from a peer.
            StateMachineInput::InstallSnapshot { at } => {
                if self.snapshotting.is_some() {
                    self.install_next = self.install_next.max(Some(at));
                } else {
                    self.install(at, &mut out);
                }
            }
            // The received snapshot is durable in place of ours: it becomes our state.
            // A newer configuration in it is recorded and the roles follow it, once the
            // logs stand on the snapshot.
            StateMachineInput::Restored { at, result } => {
                self.installing = None;
                let queued = self.install_next.take();
                let config = self.configuration.id;
                match result.and_then(|bytes| self.restore_in_place(at, &bytes).map_err(|e| e.to_string())) {
                    Ok(()) => {
                        if self.policy.compact.is_some() {
                            out.local.push(LocalMessage::Compact { below: at });
                        }
                        out.local.push(LocalMessage::SnapshotDurable { at });
                        if self.configuration.id > config {
                            out.writes.push(Write::Membership(self.configuration.clone()));
                            out.local.push(LocalMessage::Reconfigure(self.configuration.clone()));
                        }
                        self.answer_reads(&mut out);
                    }
                    Err(e) => {
                        tracing::error!(role = "state_machine", at, error = %e, "cannot install a received snapshot")
                    }
                }
                if let Some(next) = queued {
                    self.install(next, &mut out);
                }
            }
        }
        out
    }

    /// Installs a received snapshot covering slots below `at`, if it is ahead of what is
    /// applied here (an older one would take the state, and the durable snapshot, back).
    fn install(&mut self, at: Slot, out: &mut Ready<A::Reply>) {
        if at <= self.next || self.installing.is_some_and(|i| i >= at) {
            return;
        }
        if self.installing.is_some() {
            // One install at a time: this one once the running one is done.
            self.install_next = self.install_next.max(Some(at));
            return;
        }
        self.installing = Some(at);
        out.writes.push(Write::InstallSnapshot { at });
    }

    /// A StopSign just applied started a new configuration: the host records it, a
    /// snapshot is taken exactly at the StopSign (every old member then holds the same
    /// bytes there, which a new member pulls from several of them at once), and the
    /// node's roles follow it. The snapshot is skipped if one is being made durable or
    /// installed (one at a time): a new member then takes what most sources hold; and
    /// if the change `adds` nobody, since no one pulls it then (writing the whole state
    /// stalls applies for as long, on every node: a second or more at 200 MB).
    fn reconfigured(&mut self, adds: bool, out: &mut Ready<A::Reply>) {
        out.writes.push(Write::Membership(self.configuration.clone()));
        if adds && self.snapshotting.is_none() && self.installing.is_none() {
            self.take_snapshot(out);
        }
        out.local.push(LocalMessage::Reconfigure(self.configuration.clone()));
    }

    /// Replaces the state with the snapshot `bytes`, which must cover slots below `at`.
    fn restore_in_place(&mut self, at: Slot, bytes: &[u8]) -> Result<()> {
        let SnapshotIn(next, app, sessions, configuration) = decode_snapshot::<A::Reply>(bytes)?;
        if next != at {
            return Err(Error::Storage(format!(
                "the snapshot covers slots below {next}, not {at}"
            )));
        }
        if next <= self.next {
            return Ok(()); // Applied past it meanwhile: nothing to take.
        }
        self.app = A::restore(&app)?;
        self.sessions = sessions;
        // Never back: a snapshot's configuration is the one in force at its slot, and
        // this node applied nothing past that slot.
        if configuration.id >= self.configuration.id {
            self.configuration = configuration;
        }
        self.next = next;
        self.last_snapshot = next;
        self.last_snapshot_bytes = bytes.len() as u64;
        self.applied_bytes = 0;
        self.snapshots += 1;
        Ok(())
    }

    /// Answers every read whose index this state machine has reached.
    fn answer_reads(&mut self, out: &mut Ready<A::Reply>) {
        let next = self.next;
        let ready: Vec<RequestId> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= next))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(read) = self.reads.remove(&id) {
                let answer = self
                    .read(&read.command)
                    .ok_or_else(|| "not a read-only command".to_string());
                out.answers.push((id, answer));
            }
        }
    }

    /// Asks for a snapshot when [`SnapshotPolicy`] says it is due and none is being made
    /// durable or installed.
    fn maybe_snapshot(&mut self, out: &mut Ready<A::Reply>) {
        let since = self.next - self.last_snapshot;
        let periodic =
            self.policy.every > 0 && since >= self.policy.every && self.applied_bytes >= 2 * self.last_snapshot_bytes;
        let for_compaction = self.policy.compact.is_some_and(|c| {
            since > 0
                && (since >= c.every_slots || self.applied_bytes >= c.every_bytes.max(self.last_snapshot_bytes / 2))
        });
        if self.snapshotting.is_some() || self.installing.is_some() || !(periodic || for_compaction) {
            return;
        }
        self.take_snapshot(out);
    }

    /// Asks for a snapshot of the state as it stands now.
    fn take_snapshot(&mut self, out: &mut Ready<A::Reply>) {
        self.snapshotting = Some(self.next);
        self.applied_bytes = 0;
        out.writes.push(Write::Snapshot { at: self.next });
        if self.policy.compact.is_some() && self.bugs.state_machine_compacts_early() {
            compact(self.next, out); // Planted bug: before the snapshot is durable.
        }
    }

    /// Test-only: plants bugs (see [`PlantedBugs`]).
    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// The first slot not yet applied.
    pub fn next(&self) -> Slot {
        self.next
    }

    pub fn app(&self) -> &A {
        &self.app
    }

    /// Applies slot `slot`; returns the request it answered and the outcome, if any.
    pub fn apply(&mut self, slot: Slot, value: Value) -> Option<(RequestId, Outcome<A::Reply>)> {
        if self.bugs.learner_applies_out_of_order() {
            self.next = slot; // Planted bug: apply whatever slot comes.
        }
        assert_eq!(
            slot, self.next,
            "state machine must apply slot {} next, got slot {slot}",
            self.next
        );
        self.next += 1;
        let cmd = match value {
            Value::Noop => return None,
            Value::StopSign(stop) => return self.apply_stop(slot, stop),
            Value::Command(cmd) => cmd,
        };
        let session = self.sessions.entry(cmd.id.client).or_insert_with(|| Session {
            ack_below: 0,
            replies: BTreeMap::new(),
        });
        if cmd.ack_below > session.ack_below {
            session.ack_below = cmd.ack_below;
            session.replies = session.replies.split_off(&cmd.ack_below);
        }
        if cmd.id.seq < session.ack_below {
            return None; // Answered and acknowledged long ago: a stale duplicate.
        }
        if let Some(done) = session.replies.get(&cmd.id.seq) {
            return Some((cmd.id, done.clone())); // A duplicate: the same answer again.
        }
        let outcome = match codec::decode::<A::Command>(&cmd.payload) {
            Ok(command) => Ok(self.app.apply(command)),
            Err(e) => Err(format!("undecodable command: {e}")),
        };
        session.replies.insert(cmd.id.seq, outcome.clone());
        Some((cmd.id, outcome))
    }

    /// Applies the StopSign of slot `slot` (rule 4 of [`crate::messages::membership`]):
    /// the next configuration is in force from the slot after it if the StopSign ends
    /// the one in force; otherwise nothing changes and its request is refused. Never the
    /// application's, and no entry in the client table: a retry of the request decided
    /// again is refused like any stale StopSign (its gateway watched the configuration).
    fn apply_stop(&mut self, slot: Slot, stop: StopSign) -> Option<(RequestId, Outcome<A::Reply>)> {
        if stop.members.is_empty() {
            // Nobody could decide the next slot: the log would stop for good.
            let refused = "refused: a configuration needs at least one member; nothing changed".to_string();
            return Some((stop.id, Err(refused)));
        }
        if stop.prev != self.configuration.id {
            let refused = format!(
                "refused: this change was made against configuration {} but configuration {} is in force; \
                 nothing changed",
                stop.prev, self.configuration.id
            );
            return Some((stop.id, Err(refused)));
        }
        self.configuration = self.configuration.after(&stop, slot);
        None
    }

    /// Answers a read-only command from local state (possibly stale).
    pub fn read(&self, command: &A::Command) -> Option<A::Reply> {
        self.app.read(command)
    }

    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.write_snapshot(&mut bytes)?;
        Ok(bytes)
    }

    /// Writes the snapshot straight to `w`, the application's part streamed too: a
    /// first pass only counts its bytes, for the length in front of them. (Building it
    /// as one buffer first cost a cold allocation as large as the state, tens of
    /// milliseconds at 100,000 keys, on this actor's thread.) The bytes are those of
    /// encoding the tuple (applied index, application bytes as one byte string, client
    /// table, configuration), which is what [`StateMachine::restore`] reads.
    pub fn write_snapshot(&self, w: &mut impl std::io::Write) -> Result<()> {
        let mut counted = Counted::new(std::io::sink());
        self.app.write_snapshot(&mut counted)?;
        // bincode writes a tuple as its fields one after the other, and a byte string
        // as its length (a varint u64) and then the bytes.
        codec::encode_to_writer(&self.next, w)?;
        codec::encode_to_writer(&counted.bytes, w)?;
        let mut written = Counted::new(&mut *w);
        self.app.write_snapshot(&mut written)?;
        if written.bytes != counted.bytes {
            return Err(Error::Storage(format!(
                "snapshot: the application wrote {} bytes, then {} (its snapshot must be deterministic)",
                counted.bytes, written.bytes
            )));
        }
        codec::encode_to_writer(&self.sessions, w)?;
        codec::encode_to_writer(&self.configuration, w)?;
        Ok(())
    }

    /// The state machine a snapshot holds (its configuration included).
    pub fn restore(bytes: &[u8]) -> Result<Self> {
        let SnapshotIn(next, app, sessions, configuration) = decode_snapshot::<A::Reply>(bytes)?;
        Ok(StateMachine::from_parts(
            A::restore(&app)?,
            next,
            sessions,
            configuration,
        ))
    }
}

/// Tells the acceptor and the learner that a durable snapshot covers every slot below
/// `at`.
fn compact<R>(at: Slot, out: &mut Ready<R>) {
    out.local.push(LocalMessage::Compact { below: at });
    out.local.push(LocalMessage::SnapshotDurable { at });
}

/// A writer that counts the bytes it passes on.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W> Counted<W> {
    fn new(inner: W) -> Self {
        Counted { inner, bytes: 0 }
    }
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A snapshot as read back: the applied index, the application's own snapshot as one
/// byte string (not a sequence of `u8`s, which serde would decode one byte at a time),
/// the client table and the configuration in force.
#[derive(Deserialize)]
struct SnapshotIn<R>(
    Slot,
    #[serde(with = "codec::bytes")] Vec<u8>,
    BTreeMap<ClientId, Session<R>>,
    Configuration,
);

/// A snapshot written before configurations were in it: the first three fields.
#[derive(Deserialize)]
struct SnapshotBefore<R>(
    Slot,
    #[serde(with = "codec::bytes")] Vec<u8>,
    BTreeMap<ClientId, Session<R>>,
);

/// Decodes a snapshot; one written before configurations were part of it holds the
/// empty configuration 0 (the host's [`StateMachine::with_configuration`] fills it in).
fn decode_snapshot<R: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<SnapshotIn<R>> {
    match codec::decode_local::<SnapshotIn<R>>(bytes) {
        Ok(snapshot) => Ok(snapshot),
        Err(e) => match codec::decode_local::<SnapshotBefore<R>>(bytes) {
            Ok(SnapshotBefore(next, app, sessions)) => Ok(SnapshotIn(next, app, sessions, Configuration::default())),
            Err(_) => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::kv::{KvCommand, KvStore};
    use crate::messages::{Command, ConfigId, NodeId};

    fn put(client: u64, seq: u64, ack_below: u64, k: &str, v: &str) -> Value {
        let payload = codec::encode(&KvCommand::put(k, v)).expect("encode");
        Value::Command(Command {
            id: RequestId { client, seq },
            ack_below,
            payload,
        })
    }

    #[test]
    fn state_machine_applies_retried_command_once() {
        let mut sm = StateMachine::new(KvStore::new());
        let first = sm.apply(0, put(1, 1, 0, "k", "a")).expect("a reply");
        sm.apply(1, put(2, 1, 0, "k", "b"));
        let again = sm.apply(2, put(1, 1, 0, "k", "a")).expect("a reply");
        assert_eq!(first, again, "the duplicate is answered the same");
        let got = sm.read(&KvCommand::get("k")).expect("read");
        assert_eq!(got.value(), Some(&b"b"[..]), "the duplicate was not applied again");
        assert_eq!(sm.app().revision(), 3);
    }

    #[test]
    fn state_machine_forgets_acknowledged_replies() {
        let mut sm = StateMachine::new(KvStore::new());
        sm.apply(0, put(1, 1, 0, "k", "a"));
        sm.apply(1, put(1, 2, 2, "k", "b"));
        assert_eq!(
            sm.apply(2, put(1, 1, 0, "k", "a")),
            None,
            "acknowledged: a stale copy is ignored"
        );
        assert_eq!(
            sm.read(&KvCommand::get("k"))
                .and_then(|r| r.value().map(<[u8]>::to_vec)),
            Some(b"b".to_vec())
        );
    }

    #[test]
    fn state_machine_undecodable_command_fails_deterministically() {
        let mut sm = StateMachine::new(KvStore::new());
        let bad = Value::Command(Command {
            id: RequestId { client: 1, seq: 1 },
            ack_below: 0,
            payload: vec![0xff; 3],
        });
        let (_, outcome) = sm.apply(0, bad).expect("a reply");
        assert!(outcome.is_err());
        assert_eq!(sm.next(), 1);
    }

    #[test]
    #[should_panic(expected = "must apply slot 0 next")]
    fn state_machine_out_of_order_apply_panics() {
        let mut sm = StateMachine::new(KvStore::new());
        sm.apply(1, Value::Noop);
    }

    /// The tuple [`StateMachine::write_snapshot`] streams, encoded the plain way.
    #[derive(Serialize)]
    struct SnapshotOut<'a, R: Serialize>(
        Slot,
        #[serde(with = "codec::bytes")] &'a [u8],
        &'a BTreeMap<ClientId, Session<R>>,
        &'a Configuration,
    );

    #[test]
    fn state_machine_streamed_snapshot_is_the_plain_tuple_encoding() {
        let mut sm = StateMachine::new(KvStore::new()).with_configuration(Configuration::of_ids(&[1, 2, 3]));
        for slot in 0..300 {
            sm.apply(slot, put(slot % 7 + 1, slot + 1, 0, &format!("k{slot}"), "some value"));
        }
        let streamed = sm.snapshot().expect("snapshot");
        let plain = codec::encode(&SnapshotOut(
            sm.next(),
            &sm.app().snapshot().expect("snapshot"),
            &sm.sessions,
            sm.configuration(),
        ))
        .expect("encode");
        assert_eq!(streamed, plain);
    }

    #[test]
    fn state_machine_read_refused_by_a_non_leader_asks_again_at_once() {
        let mut sm = StateMachine::new(KvStore::new());
        let (waiting, confirmed) = (RequestId { client: 9, seq: 1 }, RequestId { client: 9, seq: 2 });
        for id in [waiting, confirmed] {
            let read = StateMachineInput::ReadWait {
                id,
                command: KvCommand::get("k"),
            };
            assert!(sm.handle(read).is_empty());
        }
        let refused = |id| StateMachineInput::ReadIndexReply { id, index: None };
        // The second read has its index (not yet applied): a late refusal changes nothing.
        let out = sm.handle(StateMachineInput::ReadIndexReply {
            id: confirmed,
            index: Some(1),
        });
        assert!(out.answers.is_empty(), "slot 0 is not applied yet");
        assert!(sm.handle(refused(confirmed)).is_empty());
        // The first still waits for an index: a refusal sends it to ask again, unanswered.
        let out = sm.handle(refused(waiting));
        assert_eq!(out.retry_reads, vec![waiting]);
        assert!(out.answers.is_empty());
        assert_eq!(sm.waiting_reads(), 2, "the read still waits for its index");
        // A read nobody waits for any more asks nothing.
        sm.handle(StateMachineInput::Unregister(waiting));
        assert!(sm.handle(refused(waiting)).is_empty());
        // Applying slot 0 serves the confirmed read.
        let out = sm.handle(StateMachineInput::Apply(vec![(0, Value::Noop)]));
        assert_eq!(out.answers.len(), 1);
        assert_eq!(out.answers[0].0, confirmed);
    }

    #[test]
    fn state_machine_snapshot_round_trip() {
        let mut sm = StateMachine::new(KvStore::new());
        sm.apply(0, put(1, 1, 0, "k", "a"));
        let copy = StateMachine::<KvStore>::restore(&sm.snapshot().expect("snapshot")).expect("restore");
        assert_eq!(copy.next(), 1);
        assert_eq!(copy.app(), sm.app());
    }

    fn compacting() -> SnapshotPolicy {
        SnapshotPolicy {
            every: 0,
            compact: Some(CompactPolicy {
                every_slots: 2,
                every_bytes: 1 << 30,
            }),
        }
    }

    #[test]
    fn state_machine_compacts_only_once_its_snapshot_is_durable() {
        let mut sm = StateMachine::new(KvStore::new()).with_snapshots(compacting());
        let out = sm.handle(StateMachineInput::Apply(vec![
            (0, put(1, 1, 0, "a", "1")),
            (1, Value::Noop),
        ]));
        assert_eq!(out.writes, vec![Write::Snapshot { at: 2 }]);
        assert!(out.local.is_empty(), "nothing compacted before the snapshot is durable");
        let out = sm.handle(StateMachineInput::SnapshotInstalled(Ok(100)));
        assert_eq!(
            out.local,
            vec![
                LocalMessage::Compact { below: 2 },
                LocalMessage::SnapshotDurable { at: 2 }
            ]
        );
        // A failed snapshot compacts nothing.
        sm.handle(StateMachineInput::Apply(vec![(2, Value::Noop), (3, Value::Noop)]));
        let out = sm.handle(StateMachineInput::SnapshotInstalled(Err("disk full".into())));
        assert!(out.local.is_empty());
    }

    #[test]
    fn state_machine_installs_a_received_snapshot_ahead_of_it_and_never_one_behind() {
        let mut ahead = StateMachine::new(KvStore::new());
        ahead.handle(StateMachineInput::Apply(
            (0..10).map(|s| (s, put(1, s + 1, s, &format!("k{s}"), "v"))).collect(),
        ));
        let bytes = ahead.snapshot().expect("snapshot");
        let mut sm = StateMachine::new(KvStore::new()).with_snapshots(compacting());
        // Its own snapshot is being made durable: the install waits for it.
        let out = sm.handle(StateMachineInput::Apply(vec![(0, Value::Noop), (1, Value::Noop)]));
        assert_eq!(out.writes, vec![Write::Snapshot { at: 2 }]);
        assert!(
            sm.handle(StateMachineInput::InstallSnapshot { at: 10 })
                .writes
                .is_empty()
        );
        let out = sm.handle(StateMachineInput::SnapshotInstalled(Ok(10)));
        assert!(out.writes.contains(&Write::InstallSnapshot { at: 10 }), "{out:?}");
        let out = sm.handle(StateMachineInput::Restored {
            at: 10,
            result: Ok(bytes.clone()),
        });
        assert_eq!(sm.next(), 10);
        assert_eq!(
            sm.read(&KvCommand::get("k9"))
                .and_then(|r| r.value().map(<[u8]>::to_vec)),
            Some(b"v".to_vec())
        );
        assert!(out.local.contains(&LocalMessage::SnapshotDurable { at: 10 }));
        // One install at a time: a second one waits for the first to be done.
        let mut two = StateMachine::new(KvStore::new());
        assert!(
            two.handle(StateMachineInput::InstallSnapshot { at: 10 })
                .writes
                .contains(&Write::InstallSnapshot { at: 10 })
        );
        assert!(
            two.handle(StateMachineInput::InstallSnapshot { at: 20 })
                .writes
                .is_empty(),
            "waits"
        );
        let failed = two.handle(StateMachineInput::Restored {
            at: 10,
            result: Err("disk".into()),
        });
        assert_eq!(failed.writes, vec![Write::InstallSnapshot { at: 20 }], "then runs");
        // One that covers less than what is applied is never installed.
        assert!(
            sm.handle(StateMachineInput::InstallSnapshot { at: 5 })
                .writes
                .is_empty()
        );
        // Bytes that do not cover the slots they claim are refused, the state kept.
        let out = sm.handle(StateMachineInput::Restored {
            at: 12,
            result: Ok(bytes),
        });
        assert!(out.local.is_empty());
        assert_eq!(sm.next(), 10);
    }

    fn stop(client: u64, prev: ConfigId, ids: &[NodeId]) -> StopSign {
        StopSign {
            id: RequestId { client, seq: 1 },
            prev,
            members: Configuration::of_ids(ids).members,
            sources: Vec::new(),
        }
    }

    #[test]
    fn state_machine_stop_sign_of_the_configuration_in_force_starts_the_next() {
        let mut sm = StateMachine::new(KvStore::new()).with_configuration(Configuration::of_ids(&[1, 2, 3]));
        let out = sm.handle(StateMachineInput::Apply(vec![
            (0, put(1, 1, 0, "k", "a")),
            (1, Value::StopSign(stop(7, 0, &[1, 2, 4]))),
        ]));
        let next = Configuration {
            id: 1,
            start: 2,
            members: Configuration::of_ids(&[1, 2, 4]).members,
        };
        assert_eq!(sm.configuration(), &next);
        assert_eq!(
            out.writes,
            vec![Write::Membership(next.clone()), Write::Snapshot { at: 2 }],
            "recorded first, then a snapshot exactly at the StopSign"
        );
        assert_eq!(out.local, vec![LocalMessage::Reconfigure(next.clone())]);
        assert_eq!(
            out.answers.iter().map(|(id, _)| id.client).collect::<Vec<_>>(),
            vec![1],
            "the command is answered, the StopSign's request is not"
        );
        assert_eq!(sm.next(), 2);
        // The snapshot at the StopSign holds the new configuration.
        let copy = StateMachine::<KvStore>::restore(&sm.snapshot().expect("snapshot")).expect("restore");
        assert_eq!(copy.configuration(), &next);
    }

    #[test]
    fn state_machine_stale_stop_sign_is_refused_and_changes_nothing() {
        let mut sm = StateMachine::new(KvStore::new()).with_configuration(Configuration::of_ids(&[1, 2, 3]));
        sm.handle(StateMachineInput::Apply(vec![(
            0,
            Value::StopSign(stop(7, 0, &[1, 2])),
        )]));
        assert_eq!(sm.configuration().id, 1);
        let in_force = sm.configuration().clone();
        // A second change made against configuration 0 raced with the first.
        let out = sm.handle(StateMachineInput::Apply(vec![
            (1, Value::StopSign(stop(8, 0, &[1, 2, 3, 4]))),
            (2, Value::Noop),
        ]));
        assert_eq!(sm.configuration(), &in_force, "nothing changed");
        assert!(out.writes.is_empty() && out.local.is_empty(), "{out:?}");
        assert_eq!(out.answers.len(), 1);
        let (id, outcome) = &out.answers[0];
        assert_eq!(id.client, 8);
        let why = outcome.as_ref().expect_err("refused");
        assert!(why.starts_with("refused:"), "{why}");
        assert!(
            why.contains("configuration 1"),
            "names the configuration in force: {why}"
        );
        assert_eq!(sm.next(), 3);
        assert!(sm.sessions.is_empty(), "a StopSign takes no entry in the client table");
    }

    #[test]
    fn state_machine_stop_sign_that_adds_nobody_takes_no_snapshot() {
        let mut sm = StateMachine::new(KvStore::new()).with_configuration(Configuration::of_ids(&[1, 2, 3]));
        let out = sm.handle(StateMachineInput::Apply(vec![(
            0,
            Value::StopSign(stop(7, 0, &[1, 2])),
        )]));
        assert_eq!(sm.configuration().ids(), vec![1, 2]);
        assert_eq!(
            out.writes,
            vec![Write::Membership(sm.configuration().clone())],
            "nobody pulls a snapshot at a removal"
        );
        assert_eq!(out.local, vec![LocalMessage::Reconfigure(sm.configuration().clone())]);
    }

    #[test]
    fn state_machine_stop_sign_without_members_is_refused() {
        let mut sm = StateMachine::new(KvStore::new()).with_configuration(Configuration::of_ids(&[1]));
        let out = sm.handle(StateMachineInput::Apply(vec![(0, Value::StopSign(stop(7, 0, &[])))]));
        assert_eq!(sm.configuration().ids(), vec![1], "the log would stop for good");
        assert!(out.writes.is_empty() && out.local.is_empty(), "{out:?}");
        let why = out.answers[0].1.as_ref().expect_err("refused");
        assert!(
            why.starts_with("refused:") && why.contains("at least one member"),
            "{why}"
        );
    }

    #[test]
    fn state_machine_stop_sign_while_a_snapshot_is_under_way_takes_none_of_its_own() {
        let mut sm = StateMachine::new(KvStore::new()).with_snapshots(compacting());
        let out = sm.handle(StateMachineInput::Apply(vec![(0, Value::Noop), (1, Value::Noop)]));
        assert_eq!(out.writes, vec![Write::Snapshot { at: 2 }]);
        let out = sm.handle(StateMachineInput::Apply(vec![(2, Value::StopSign(stop(7, 0, &[1])))]));
        assert_eq!(
            out.writes,
            vec![Write::Membership(sm.configuration().clone())],
            "one snapshot at a time"
        );
        assert_eq!(out.local, vec![LocalMessage::Reconfigure(sm.configuration().clone())]);
    }

    #[test]
    #[should_panic(expected = "went on past the StopSign")]
    fn state_machine_batch_going_on_past_a_stop_sign_panics() {
        let mut sm = StateMachine::new(KvStore::new());
        sm.handle(StateMachineInput::Apply(vec![
            (0, Value::StopSign(stop(7, 0, &[1]))),
            (1, Value::Noop),
        ]));
    }

    #[test]
    fn state_machine_snapshot_round_trip_keeps_the_configuration() {
        let mut sm = StateMachine::new(KvStore::new()).with_configuration(Configuration::of_ids(&[1, 2, 3]));
        sm.handle(StateMachineInput::Apply(vec![(
            0,
            Value::StopSign(stop(7, 0, &[2, 3, 4])),
        )]));
        let bytes = sm.snapshot().expect("snapshot");
        let copy = StateMachine::<KvStore>::restore(&bytes).expect("restore");
        assert_eq!(copy.configuration(), sm.configuration());
        assert_eq!(copy.configuration().ids(), vec![2, 3, 4]);
        // The config file's configuration 0 does not take a restored newer one back.
        let copy = copy.with_configuration(Configuration::of_ids(&[1, 2, 3]));
        assert_eq!(copy.configuration().id, 1);
        assert_eq!(copy.snapshot().expect("snapshot"), bytes, "the same bytes again");
    }

    #[test]
    fn state_machine_snapshot_from_before_configurations_reads_as_configuration_zero() {
        let mut sm = StateMachine::new(KvStore::new());
        sm.apply(0, put(1, 1, 0, "k", "a"));
        // The old layout: index, application bytes, client table (no configuration).
        let mut bytes = codec::encode(&sm.next()).expect("encode");
        let app = sm.app().snapshot().expect("snapshot");
        bytes.extend(codec::encode(&(app.len() as u64)).expect("encode"));
        bytes.extend(&app);
        bytes.extend(codec::encode(&sm.sessions).expect("encode"));
        let copy = StateMachine::<KvStore>::restore(&bytes).expect("restore");
        assert_eq!(copy.next(), 1);
        assert_eq!(copy.configuration(), &Configuration::default());
        let copy = copy.with_configuration(Configuration::of_ids(&[1, 2, 3]));
        assert_eq!(
            copy.configuration().ids(),
            vec![1, 2, 3],
            "the config file's fills it in"
        );
        assert!(StateMachine::<KvStore>::restore(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn state_machine_restored_snapshot_with_a_newer_configuration_tells_the_roles() {
        let first = Configuration::of_ids(&[1, 2, 3]);
        let mut old_member = StateMachine::new(KvStore::new()).with_configuration(first.clone());
        let out = old_member.handle(StateMachineInput::Apply(vec![
            (0, put(1, 1, 0, "k", "a")),
            (1, Value::StopSign(stop(7, 0, &[1, 2, 3, 4]))),
        ]));
        assert!(out.writes.contains(&Write::Snapshot { at: 2 }));
        let bytes = old_member.snapshot().expect("snapshot");
        let next = old_member.configuration().clone();
        // Node 4 joins: it starts with the config file's configuration and installs the
        // snapshot at the StopSign.
        let mut joining = StateMachine::new(KvStore::new()).with_configuration(first);
        let out = joining.handle(StateMachineInput::InstallSnapshot { at: 2 });
        assert_eq!(out.writes, vec![Write::InstallSnapshot { at: 2 }]);
        let out = joining.handle(StateMachineInput::Restored {
            at: 2,
            result: Ok(bytes.clone()),
        });
        assert_eq!(joining.configuration(), &next);
        assert_eq!(out.writes, vec![Write::Membership(next.clone())]);
        assert_eq!(
            out.local,
            vec![
                LocalMessage::SnapshotDurable { at: 2 },
                LocalMessage::Reconfigure(next.clone())
            ],
            "the roles follow once the learner stands on the snapshot"
        );
        // A snapshot holding the configuration already in force tells nobody again.
        let mut same = StateMachine::new(KvStore::new()).with_configuration(next.clone());
        same.handle(StateMachineInput::InstallSnapshot { at: 2 });
        let out = same.handle(StateMachineInput::Restored {
            at: 2,
            result: Ok(bytes),
        });
        assert!(out.writes.is_empty(), "{out:?}");
        assert_eq!(out.local, vec![LocalMessage::SnapshotDurable { at: 2 }]);
    }
}
