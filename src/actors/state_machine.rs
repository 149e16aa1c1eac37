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
//! learner's log; every `snapshot_every` slots the actor streams a snapshot of the
//! application, the client table and the applied index to a temporary file; then it
//! asks the learner to sync its log (`SyncDecided`: the slots a snapshot covers must
//! stay servable to lagging peers), and a blocking-pool thread syncs the file and
//! renames it over `snapshot.bin`, all while applies go on (at most one snapshot at a
//! time). A restart replays only the log after it.
//!
//! **Answering.** The node's gateway puts a waiter for each request in a table shared
//! with this actor ([`Waiters`]); applying the request's command answers it.
//!
//! **Invariant.** Slot `n` is applied only right after slot `n - 1`; an out-of-order
//! delivery panics rather than diverge from the other replicas.
//!
//! **Left out.** Truncating the log behind a snapshot and shipping snapshots to a
//! lagging node (a later issue).

use super::learner::SyncDecided;
use super::{FromPeer, Halt, PlantedBugs};
use crate::app::Application;
use crate::codec;
use crate::error::{Error, Result};
use crate::messages::{ClientId, RequestId, Slot, StateMachineMessage, Value};
use crate::storage::Storage;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// What a request got: the application's reply, or why it could not run.
pub type Outcome<R> = std::result::Result<R, String>;

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
    bugs: PlantedBugs,
}

impl<A: Application + Default> Default for StateMachine<A> {
    fn default() -> Self {
        StateMachine {
            app: A::default(),
            next: 0,
            sessions: BTreeMap::new(),
            bugs: PlantedBugs::default(),
        }
    }
}

impl<A: Application> StateMachine<A> {
    pub fn new(app: A) -> Self {
        StateMachine {
            app,
            next: 0,
            sessions: BTreeMap::new(),
            bugs: PlantedBugs::default(),
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
        if self.bugs.learner_applies_out_of_order {
            self.next = slot; // Planted bug: apply whatever slot comes.
        }
        assert_eq!(
            slot, self.next,
            "state machine must apply slot {} next, got slot {slot}",
            self.next
        );
        self.next += 1;
        let Value::Command(cmd) = value else {
            return None;
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
    /// table), which is what [`StateMachine::restore`] reads.
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
        Ok(())
    }

    pub fn restore(bytes: &[u8]) -> Result<Self> {
        let SnapshotIn(next, app, sessions): SnapshotIn<A::Reply> = codec::decode_local(bytes)?;
        Ok(StateMachine {
            app: A::restore(&app)?,
            next,
            sessions,
            bugs: PlantedBugs::default(),
        })
    }
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
/// byte string (not a sequence of `u8`s, which serde would decode one byte at a time)
/// and the client table.
#[derive(Deserialize)]
struct SnapshotIn<R>(
    Slot,
    #[serde(with = "codec::bytes")] Vec<u8>,
    BTreeMap<ClientId, Session<R>>,
);

/// From the learner: decided values in slot order.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ApplyBatch(pub Vec<(Slot, Value)>);

/// Clients waiting for their commands to be applied, shared between the node's gateway
/// (which adds a waiter before it proposes) and the state machine (which answers it).
/// A table instead of a message: registering must not wake the state machine's thread
/// once per request (measured: it cost about a tenth of the leader's CPU under load).
/// Several may wait for one id (a client retrying while its first attempt still waits).
pub type Waiters<R> = Arc<Mutex<HashMap<RequestId, Vec<oneshot::Sender<Outcome<R>>>>>>;

/// From the node's gateway: answer read-only `command` once a leader confirmed a read
/// index for `id` and this node has applied up to it (a linearizable read that does not
/// write the log).
pub struct ReadWait<A: Application> {
    pub id: RequestId,
    pub command: A::Command,
    pub reply: oneshot::Sender<Outcome<A::Reply>>,
}

impl<A: Application> Message for ReadWait<A> {
    type Result = ();
}

/// A read waiting for its index, then for the state machine to reach it.
struct PendingRead<A: Application> {
    command: A::Command,
    index: Option<Slot>,
    reply: oneshot::Sender<Outcome<A::Reply>>,
}

/// From the node's gateway: I stopped waiting for `id`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister(pub RequestId);

/// A local, possibly stale read; `None` if the command is not read-only.
pub struct ReadLocal<A: Application>(pub A::Command);

impl<A: Application> ReadLocal<A> {
    pub fn new(command: A::Command) -> Self {
        ReadLocal(command)
    }
}

impl<A: Application> Message for ReadLocal<A> {
    type Result = Option<A::Reply>;
}

/// From the node's clock loop: what should the leader propose at this time, if anything?
pub struct ClockCommand<A: Application>(pub u64, pub std::marker::PhantomData<A>);

impl<A: Application> Message for ClockCommand<A> {
    type Result = Option<A::Command>;
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StateMachineStatus {
    /// Slots applied (= index of the next slot to apply).
    pub applied: Slot,
    pub waiting_clients: usize,
    pub snapshots: u64,
}

#[derive(Message)]
#[rtype(result = "StateMachineStatus")]
pub struct GetStateMachineStatus;

/// The sequence of requests applied so far (slot, request or None for a no-op), for
/// tests comparing replicas; recorded only when the node is configured to.
#[derive(Message)]
#[rtype(result = "Vec<(Slot, Option<RequestId>)>")]
pub struct GetApplied;

/// The state machine actor.
pub struct StateMachineActor<A: Application> {
    node: u64,
    core: StateMachine<A>,
    storage: Storage,
    /// This node's learner, asked to sync its log before a snapshot is installed.
    learner: Recipient<SyncDecided>,
    waiters: Waiters<A::Reply>,
    reads: BTreeMap<RequestId, PendingRead<A>>,
    snapshot_every: u64,
    last_snapshot: Slot,
    /// Size of the last snapshot, and command bytes applied since: a snapshot is taken
    /// only when the log written since is at least twice its size, so snapshotting a
    /// large state costs at most about half of the log volume.
    last_snapshot_bytes: u64,
    applied_bytes: u64,
    /// A snapshot is being made durable (at most one at a time).
    snapshotting: bool,
    snapshots: u64,
    record: Option<Vec<(Slot, Option<RequestId>)>>,
}

impl<A: Application> StateMachineActor<A> {
    pub fn new(
        node: u64,
        core: StateMachine<A>,
        storage: Storage,
        learner: Recipient<SyncDecided>,
        waiters: Waiters<A::Reply>,
        snapshot_every: u64,
        record_applied: bool,
    ) -> Self {
        let last_snapshot = core.next();
        StateMachineActor {
            node,
            core,
            storage,
            learner,
            waiters,
            reads: BTreeMap::new(),
            snapshot_every,
            last_snapshot,
            last_snapshot_bytes: 0,
            applied_bytes: 0,
            snapshotting: false,
            snapshots: 0,
            record: record_applied.then(Vec::new),
        }
    }

    /// Every `snapshot_every` slots (and once the log written since is twice the last
    /// snapshot's size), writes a snapshot here and makes it durable off this thread:
    /// syncing a large one takes tens of milliseconds, during which applies (and the
    /// clients waiting on them) go on.
    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        if self.snapshot_every == 0
            || self.snapshotting
            || self.core.next() - self.last_snapshot < self.snapshot_every
            || self.applied_bytes < 2 * self.last_snapshot_bytes
        {
            return;
        }
        let started = std::time::Instant::now();
        let file = match self.storage.write_snapshot(|w| self.core.write_snapshot(w)) {
            Ok(file) => file,
            Err(e) => {
                tracing::error!(node = self.node, role = "state_machine", error = %e, "snapshot failed");
                return;
            }
        };
        let taken_at = self.core.next();
        let written = started.elapsed();
        self.snapshotting = true;
        // Counted from this snapshot on, even if installing it fails: a failing disk is
        // then retried after as much log again, not on every batch.
        self.applied_bytes = 0;
        // The learner's log first: everything applied here was written there before.
        let sync_decided = self.learner.send(SyncDecided);
        let install = async move {
            sync_decided.await.map_err(|_| Error::Stopped)??;
            actix_rt::task::spawn_blocking(move || file.install())
                .await
                .map_err(|e| Error::Storage(format!("snapshot task: {e}")))?
        };
        ctx.spawn(
            actix::fut::wrap_future(install).map(move |installed, act: &mut Self, _| {
                act.snapshotting = false;
                match installed {
                    Ok(size) => {
                        tracing::info!(
                            node = act.node,
                            role = "state_machine",
                            slot = taken_at,
                            bytes = size,
                            written_ms = written.as_millis() as u64,
                            durable_ms = started.elapsed().as_millis() as u64,
                            "snapshot installed"
                        );
                        act.last_snapshot = taken_at;
                        act.last_snapshot_bytes = size;
                        act.snapshots += 1;
                    }
                    Err(e) => {
                        tracing::error!(node = act.node, role = "state_machine", error = %e, "snapshot failed")
                    }
                }
            }),
        );
    }
}

impl<A: Application> Actor for StateMachineActor<A> {
    type Context = Context<Self>;
}

impl<A: Application> Handler<ApplyBatch> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, ApplyBatch(batch): ApplyBatch, ctx: &mut Context<Self>) {
        let mut answered = Vec::new();
        for (slot, value) in batch {
            if slot < self.core.next() {
                continue; // Re-delivered after a restart race; already applied.
            }
            let id = match &value {
                Value::Command(c) => Some(c.id),
                Value::Noop => None,
            };
            tracing::debug!(
                node = self.node,
                role = "state_machine",
                slot,
                client = id.map(|i| i.client),
                seq = id.map(|i| i.seq),
                "apply"
            );
            if let Value::Command(c) = &value {
                self.applied_bytes += c.payload.len() as u64;
            }
            if let Some(record) = &mut self.record {
                record.push((slot, id));
            }
            if let Some(answer) = self.core.apply(slot, value) {
                answered.push(answer);
            }
        }
        if !answered.is_empty() {
            let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            for (id, outcome) in answered {
                // Usually one waiter: it takes the outcome itself, any others a copy.
                let mut waiting = waiters.remove(&id).unwrap_or_default();
                if let Some(last) = waiting.pop() {
                    for waiter in waiting {
                        let _ = waiter.send(outcome.clone());
                    }
                    let _ = last.send(outcome);
                }
            }
        }
        self.maybe_answer_reads();
        self.maybe_snapshot(ctx);
    }
}

impl<A: Application> StateMachineActor<A> {
    /// Answers every read whose index the state machine has reached.
    fn maybe_answer_reads(&mut self) {
        let next = self.core.next();
        let ready: Vec<RequestId> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= next))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(read) = self.reads.remove(&id) {
                let answer = self
                    .core
                    .read(&read.command)
                    .ok_or_else(|| "not a read-only command".to_string());
                let _ = read.reply.send(answer);
            }
        }
    }
}

impl<A: Application> Handler<ReadWait<A>> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, r: ReadWait<A>, _: &mut Context<Self>) {
        self.reads.insert(
            r.id,
            PendingRead {
                command: r.command,
                index: None,
                reply: r.reply,
            },
        );
    }
}

impl<A: Application> Handler<FromPeer<StateMachineMessage>> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, FromPeer(from, msg): FromPeer<StateMachineMessage>, _: &mut Context<Self>) {
        match msg {
            // The leader confirmed a read index: the first confirmation counts.
            StateMachineMessage::ReadIndexReply { id, index } => {
                tracing::debug!(
                    node = self.node,
                    role = "state_machine",
                    from,
                    client = id.client,
                    seq = id.seq,
                    ?index,
                    "read index"
                );
                if let (Some(read), Some(index)) = (self.reads.get_mut(&id), index) {
                    read.index.get_or_insert(index);
                }
                self.maybe_answer_reads();
            }
        }
    }
}

impl<A: Application> Handler<Unregister> for StateMachineActor<A> {
    type Result = ();

    /// Request ids are unique per request, so nothing else waits on this one.
    fn handle(&mut self, Unregister(id): Unregister, _: &mut Context<Self>) {
        self.reads.remove(&id);
    }
}

impl<A: Application> Handler<ReadLocal<A>> for StateMachineActor<A> {
    type Result = MessageResult<ReadLocal<A>>;

    fn handle(&mut self, ReadLocal(cmd): ReadLocal<A>, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.read(&cmd))
    }
}

impl<A: Application> Handler<ClockCommand<A>> for StateMachineActor<A> {
    type Result = MessageResult<ClockCommand<A>>;

    fn handle(&mut self, ClockCommand(now_ms, _): ClockCommand<A>, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.app().clock_command(now_ms))
    }
}

impl<A: Application> Handler<GetStateMachineStatus> for StateMachineActor<A> {
    type Result = MessageResult<GetStateMachineStatus>;

    fn handle(&mut self, _: GetStateMachineStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(StateMachineStatus {
            applied: self.core.next(),
            waiting_clients: self.waiters.lock().map_or(0, |w| w.len()),
            snapshots: self.snapshots,
        })
    }
}

impl<A: Application> Handler<GetApplied> for StateMachineActor<A> {
    type Result = MessageResult<GetApplied>;

    fn handle(&mut self, _: GetApplied, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.record.clone().unwrap_or_default())
    }
}

impl<A: Application> Handler<Halt> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::kv::{KvCommand, KvStore};
    use crate::messages::Command;

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
    );

    #[test]
    fn state_machine_streamed_snapshot_is_the_plain_tuple_encoding() {
        let mut sm = StateMachine::new(KvStore::new());
        for slot in 0..300 {
            sm.apply(slot, put(slot % 7 + 1, slot + 1, 0, &format!("k{slot}"), "some value"));
        }
        let streamed = sm.snapshot().expect("snapshot");
        let plain = codec::encode(&SnapshotOut(
            sm.next(),
            &sm.app().snapshot().expect("snapshot"),
            &sm.sessions,
        ))
        .expect("encode");
        assert_eq!(streamed, plain);
    }

    #[test]
    fn state_machine_snapshot_round_trip() {
        let mut sm = StateMachine::new(KvStore::new());
        sm.apply(0, put(1, 1, 0, "k", "a"));
        let copy = StateMachine::<KvStore>::restore(&sm.snapshot().expect("snapshot")).expect("restore");
        assert_eq!(copy.next(), 1);
        assert_eq!(copy.app(), sm.app());
    }
}
