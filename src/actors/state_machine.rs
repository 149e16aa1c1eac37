//! The state machine's shell: feeds the core ([`crate::roles::state_machine`]) decided
//! values and reads through the driver, answers the node's waiting clients, and hosts
//! snapshots: the core's [`Write::Snapshot`] is streamed to a temporary file on this
//! actor's thread; then, on the blocking pool, the decided log is synced (the slots a
//! snapshot covers must stay servable to lagging peers), and the file synced and renamed
//! over `snapshot.bin`, while applies go on. A snapshot the learner received from a
//! peer ([`Write::InstallSnapshot`]) is read, synced and renamed over `snapshot.bin` on
//! the blocking pool too, then handed back to the core to restore.
//!
//! **Membership.** A configuration the core applies ([`Write::Membership`]: a StopSign,
//! or a restored snapshot holding a newer one) is recorded here before the roles hear of
//! it: written to the `membership` file (synced; a restart starts from it), given to the
//! transport (which dials the new members and stops dialing those that left), and
//! published to the node's gateway ([`MembershipView`]), which answers the change's
//! request from it. One whose id is not above the last one recorded is ignored (a
//! restarted node applies old StopSigns from its log again). The sources a new member
//! pulls the state from are those of the StopSign, seen here as it is applied.

use super::node::MembershipView;
use super::{FromPeer, Halt, Local, Peers};
use crate::app::Application;
use crate::driver::{Driver, Host};
use crate::error::{Error, Result};
use crate::messages::local::LocalMessage;
use crate::messages::{Configuration, NodeId, PeerMessage, RequestId, Slot, StateMachineMessage, StopSign, Value};
use crate::roles::ready::{Outcome, Write};
use crate::roles::state_machine::{StateMachine, StateMachineInput};
use crate::storage::Storage;
use crate::storage::wal::SyncHandle;
use actix::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, oneshot, watch};

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
    /// Notified when the node asked refused to confirm the read (it does not lead):
    /// the gateway asks the leader again.
    pub retry: Arc<Notify>,
}

/// Where a linearizable read the core holds is answered, or told to ask again.
struct ReadWaiter<R> {
    reply: oneshot::Sender<Outcome<R>>,
    retry: Arc<Notify>,
}

impl<A: Application> Message for ReadWait<A> {
    type Result = ();
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
/// tests comparing replicas; recorded only when the node is configured to. It starts
/// again after a snapshot received from a peer is installed.
#[derive(Message)]
#[rtype(result = "Vec<(Slot, Option<RequestId>)>")]
pub struct GetApplied;

/// The state machine actor.
pub struct StateMachineActor<A: Application> {
    core: StateMachine<A>,
    driver: Driver<A::Reply>,
    io: Io<A>,
    record: Option<Vec<(Slot, Option<RequestId>)>>,
}

/// What the state machine's host works with.
struct Io<A: Application> {
    node: NodeId,
    storage: Storage,
    /// The decided log, synced before a snapshot covering it is installed.
    decided: SyncHandle,
    waiters: Waiters<A::Reply>,
    /// Linearizable reads the core holds, by id: where their answers go.
    reads: HashMap<RequestId, ReadWaiter<A::Reply>>,
    peers: Peers,
    /// Where the configurations applied are published (`None`: not published, tests).
    membership: Option<Arc<watch::Sender<MembershipView>>>,
    /// The latest StopSign applied: the sources of the configuration it starts.
    last_stop: Option<StopSign>,
}

/// The host of one call into the driver: the core is read to stream a snapshot.
struct StateMachineIo<'a, A: Application> {
    io: &'a mut Io<A>,
    core: &'a StateMachine<A>,
    ctx: &'a mut Context<StateMachineActor<A>>,
}

impl<A: Application> Host<A::Reply> for StateMachineIo<'_, A> {
    fn append(&mut self, write: Write) -> Result<()> {
        let at = match write {
            Write::Snapshot { at } => at,
            Write::InstallSnapshot { at } => {
                self.install_received(at);
                return Ok(());
            }
            Write::Membership(config) => return self.io.record_membership(config),
            other => return Err(Error::Storage(format!("the state machine cannot write {other:?}"))),
        };
        let started = std::time::Instant::now();
        let node = self.io.node;
        let file = match self.io.storage.write_snapshot(|w| self.core.write_snapshot(w)) {
            Ok(file) => file,
            Err(e) => {
                // Not fatal: the log still holds everything; the core tries again later.
                self.ctx.notify(Installed(Err(e.to_string())));
                return Ok(());
            }
        };
        let written = started.elapsed();
        let decided = self.io.decided.clone();
        let install = actix_rt::task::spawn_blocking(move || {
            decided.sync()?;
            file.install()
        });
        self.ctx.spawn(
            actix::fut::wrap_future::<_, StateMachineActor<A>>(install).map(move |res, act, ctx| {
                let res = res
                    .map_err(|e| Error::Storage(format!("snapshot task: {e}")))
                    .and_then(|r| r);
                if let Ok(bytes) = &res {
                    let (written_ms, durable_ms) = (written.as_millis() as u64, started.elapsed().as_millis() as u64);
                    tracing::info!(
                        node,
                        role = "state_machine",
                        slot = at,
                        bytes,
                        written_ms,
                        durable_ms,
                        "snapshot installed"
                    );
                }
                act.run(
                    StateMachineInput::SnapshotInstalled(res.map_err(|e| e.to_string())),
                    ctx,
                );
            }),
        );
        Ok(())
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.io.peers.send(to, msg);
    }

    /// `Compact` to the acceptor, `SnapshotDurable` to the learner.
    fn local(&mut self, msg: LocalMessage) {
        self.io.peers.local.deliver_local(msg);
    }

    /// Reads go to their channels; commands to the waiters' table, locked once for the
    /// whole batch (the gateway's workers register there on every request).
    fn answer(&mut self, answers: Vec<(RequestId, Outcome<A::Reply>)>) {
        let mut waiters = None;
        for (id, outcome) in answers {
            if let Some(read) = self.io.reads.remove(&id) {
                let _ = read.reply.send(outcome);
                continue;
            }
            let waiters = waiters.get_or_insert_with(|| self.io.waiters.lock().unwrap_or_else(|e| e.into_inner()));
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

    fn retry_read(&mut self, id: RequestId) {
        if let Some(read) = self.io.reads.get(&id) {
            read.retry.notify_one();
        }
    }

    fn fail_stop(&mut self, error: &Error) {
        self.io.peers.fail_stop("state_machine", error);
        self.ctx.stop();
    }
}

impl<A: Application> Io<A> {
    /// Carries out [`Write::Membership`] (see the module docs): the file, the transport,
    /// the gateway. A failed write of the file stops the node like any failed write.
    fn record_membership(&mut self, config: Configuration) -> Result<()> {
        let Some(tx) = self.membership.clone() else {
            return Ok(());
        };
        let (cluster, previous) = {
            let view = tx.borrow();
            (view.cluster.clone(), view.config.clone())
        };
        if let Some(prev) = previous.as_ref().filter(|p| p.id >= config.id) {
            tracing::debug!(
                node = self.node,
                role = "state_machine",
                recorded = prev.id,
                config = config.id,
                "configuration not newer than the one recorded; ignored"
            );
            return Ok(());
        }
        self.storage.save_membership(&cluster, &config)?;
        self.peers.transport.set_members(&config);
        let sources = match (&self.last_stop, &previous) {
            (Some(stop), _) if stop.prev + 1 == config.id && !stop.sources.is_empty() => stop.sources.clone(),
            (_, Some(prev)) if prev.id + 1 == config.id => {
                prev.ids().into_iter().filter(|id| config.contains(*id)).collect()
            }
            _ => Vec::new(),
        };
        tracing::info!(
            node = self.node,
            role = "state_machine",
            config = %config,
            member = config.contains(self.node),
            ?sources,
            "configuration applied"
        );
        tx.send_modify(|v| {
            v.config = Some(config);
            v.sources = sources;
            v.learned = None;
            v.join_error = None;
        });
        Ok(())
    }
}

impl<A: Application> StateMachineIo<'_, A> {
    /// Installs the snapshot the learner received, off this thread; the core restores it
    /// once it is durable in place of the current one.
    fn install_received(&mut self, at: Slot) {
        let storage = self.io.storage.clone();
        let started = std::time::Instant::now();
        // Restored once before it replaces the current snapshot: one this build cannot
        // load must never become the snapshot the node restarts from.
        let check = |bytes: &[u8]| StateMachine::<A>::restore(bytes).map(drop);
        let install = actix_rt::task::spawn_blocking(move || storage.install_received(at, check));
        let node = self.io.node;
        self.ctx.spawn(
            actix::fut::wrap_future::<_, StateMachineActor<A>>(install).map(move |res, act, ctx| {
                let result = res
                    .map_err(|e| Error::Storage(format!("snapshot install task: {e}")))
                    .and_then(|r| r)
                    .map_err(|e| e.to_string());
                if let Ok(bytes) = &result {
                    let (bytes, ms) = (bytes.len(), started.elapsed().as_millis() as u64);
                    tracing::info!(
                        node,
                        role = "state_machine",
                        slot = at,
                        bytes,
                        ms,
                        "received snapshot installed"
                    );
                }
                act.run(StateMachineInput::Restored { at, result }, ctx);
            }),
        );
    }
}

/// A snapshot could not even be written: tell the core on the next turn.
struct Installed(std::result::Result<u64, String>);

impl Message for Installed {
    type Result = ();
}

impl<A: Application> StateMachineActor<A> {
    pub fn new(
        core: StateMachine<A>,
        storage: Storage,
        decided: SyncHandle,
        waiters: Waiters<A::Reply>,
        peers: Peers,
        record_applied: bool,
    ) -> Self {
        StateMachineActor {
            core,
            driver: Driver::new(),
            io: Io {
                node: peers.id,
                storage,
                decided,
                waiters,
                reads: HashMap::new(),
                peers,
                membership: None,
                last_stop: None,
            },
            record: record_applied.then(Vec::new),
        }
    }

    /// Publishes the configurations applied to the node's gateway through `tx` (and
    /// records them; see the module docs).
    pub fn with_membership(mut self, tx: Arc<watch::Sender<MembershipView>>) -> Self {
        self.io.membership = Some(tx);
        self
    }

    fn run(&mut self, input: StateMachineInput<A::Command>, ctx: &mut Context<Self>) {
        let before = self.core.next();
        let restored = matches!(input, StateMachineInput::Restored { .. });
        let ready = self.core.handle(input);
        if restored
            && self.core.next() > before
            && let Some(record) = &mut self.record
        {
            // A received snapshot replaced the state: the applied sequence starts again
            // from where it ends.
            record.clear();
        }
        let mut host = StateMachineIo {
            io: &mut self.io,
            core: &self.core,
            ctx,
        };
        self.driver.carry_out(ready, &mut host);
    }
}

impl<A: Application> Actor for StateMachineActor<A> {
    type Context = Context<Self>;
}

impl<A: Application> Handler<Local> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, Local(msg): Local, ctx: &mut Context<Self>) {
        let batch = match msg {
            LocalMessage::Apply(batch) => batch,
            // The learner received a snapshot from a peer.
            LocalMessage::InstallSnapshot { at } => return self.run(StateMachineInput::InstallSnapshot { at }, ctx),
            other => {
                return tracing::error!(
                    node = self.io.node,
                    role = "state_machine",
                    ?other,
                    "not a state machine's message"
                );
            }
        };
        for (slot, value) in &batch {
            let id = match value {
                Value::Command(c) => Some(c.id),
                Value::StopSign(s) => {
                    if *slot >= self.core.next() {
                        self.io.last_stop = Some(s.clone());
                    }
                    Some(s.id)
                }
                Value::Noop => None,
            };
            let (client, seq) = (id.map(|i| i.client), id.map(|i| i.seq));
            tracing::debug!(node = self.io.node, role = "state_machine", slot, client, seq, "apply");
            if let Some(record) = &mut self.record
                && *slot >= self.core.next()
            {
                record.push((*slot, id));
            }
        }
        self.run(StateMachineInput::Apply(batch), ctx);
    }
}

impl<A: Application> Handler<ReadWait<A>> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, r: ReadWait<A>, ctx: &mut Context<Self>) {
        let waiter = ReadWaiter {
            reply: r.reply,
            retry: r.retry,
        };
        self.io.reads.insert(r.id, waiter);
        self.run(
            StateMachineInput::ReadWait {
                id: r.id,
                command: r.command,
            },
            ctx,
        );
    }
}

impl<A: Application> Handler<FromPeer<StateMachineMessage>> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, FromPeer(from, msg): FromPeer<StateMachineMessage>, ctx: &mut Context<Self>) {
        match msg {
            // The leader confirmed a read index (or said it does not lead).
            StateMachineMessage::ReadIndexReply { id, index } => {
                let (client, seq) = (id.client, id.seq);
                tracing::debug!(
                    node = self.io.node,
                    role = "state_machine",
                    from,
                    client,
                    seq,
                    ?index,
                    "read index"
                );
                self.run(StateMachineInput::ReadIndexReply { id, index }, ctx);
            }
        }
    }
}

impl<A: Application> Handler<Installed> for StateMachineActor<A> {
    type Result = ();

    fn handle(&mut self, Installed(result): Installed, ctx: &mut Context<Self>) {
        self.run(StateMachineInput::SnapshotInstalled(result), ctx);
    }
}

impl<A: Application> Handler<Unregister> for StateMachineActor<A> {
    type Result = ();

    /// Request ids are unique per request, so nothing else waits on this one.
    fn handle(&mut self, Unregister(id): Unregister, ctx: &mut Context<Self>) {
        self.io.reads.remove(&id);
        self.run(StateMachineInput::Unregister(id), ctx);
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
            waiting_clients: self.io.waiters.lock().map_or(0, |w| w.len()),
            snapshots: self.core.snapshots(),
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
        self.io.waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
        ctx.stop();
    }
}
