//! # Node: the wiring of one replica
//!
//! [`Node::start`] opens the node's storage, restores each role's core from it, creates
//! the five actors, hands each the mailboxes it sends to, and returns a [`NodeHandle`]:
//! the one door for clients (submit a command, read locally, ask for status) and for
//! the transport (deliver an inbound message).
//!
//! **The path of one command.** A client asks any node ([`NodeHandle::submit`]). That
//! node registers a waiter with its state machine, then sends `Propose` to the proposer
//! of the node its elector says leads (itself, or forwarded over the network). The
//! leader's proposer puts the command in a slot and runs phase 2 with the acceptors;
//! on a quorum it sends `Decide` to every learner; each learner hands the slot, in
//! order, to its state machine, which applies it and answers the waiter if the client
//! asked this node. If no answer comes within `retry_interval` (a lost message, a leader
//! change), the node proposes again (the state machine deduplicates); after
//! `request_timeout` it gives up with `Error::Unavailable`.

use super::acceptor::{AcceptorActor, AcceptorStatus, GetAcceptorStatus};
use super::elector::{ElectorActor, ElectorStatus, GetElectorStatus, Leadership};
use super::learner::{GetDecidedLog, GetLearnerStatus, LearnerActor, LearnerStatus};
use super::proposer::{GetProposerStatus, ProposerActor, ProposerStatus};
use super::state_machine::{
    ClockCommand, GetApplied, GetStateMachineStatus, ReadLocal, ReadWait, StateMachineActor, StateMachineStatus,
    Unregister, Waiters,
};
use super::{Halt, LocalRoles, Peers};
use crate::app::Application;
use crate::error::{Error, Result};
use crate::messages::codec;
use crate::messages::{Ballot, Command, Envelope, NodeId, PeerMessage, ProposerMessage, RequestId, Slot, Value};
use crate::net::{Inbound, Transport};
use crate::roles::acceptor::Acceptor;
use crate::roles::bugs::PlantedBugs;
use crate::roles::elector::{Elector, ElectorConfig};
use crate::roles::learner::{Learner, LearnerConfig};
use crate::roles::proposer::{Proposer, ProposerConfig};
use crate::roles::ready::Outcome;
use crate::roles::state_machine::{CompactPolicy, SnapshotPolicy, StateMachine};
use crate::storage::Storage;
use crate::storage::acceptor_log::AcceptorLog;
use crate::storage::decided_log::DecidedLog;
use actix::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot, watch};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Every node of the cluster, this one included.
    pub nodes: Vec<NodeId>,
    pub data_dir: PathBuf,
    /// One tick of the role cores' clocks.
    pub tick: Duration,
    pub elector: ElectorConfig,
    pub proposer: ProposerConfig,
    pub learner: LearnerConfig,
    /// A client request fails with `Unavailable` after this long without an answer.
    pub request_timeout: Duration,
    /// Propose again after this long without an answer.
    pub retry_interval: Duration,
    /// Persist a state machine snapshot every this many slots (0: never).
    pub snapshot_every: u64,
    /// Log compaction: snapshot by this policy too, and give back the log space a
    /// durable snapshot covers (`None`: the logs are kept whole).
    pub compact: Option<CompactPolicy>,
    /// Keep the sequence of applied requests in memory (for tests).
    pub record_applied: bool,
    /// Seeds the elector's randomized timeouts.
    pub seed: u64,
    /// How often the leader asks the application for a clock command (lock expiry).
    pub clock_interval: Duration,
    /// Subtracted from the leader's clock in clock commands, so that a session expires
    /// later by the replicas' reckoning than by its client's.
    pub clock_margin: Duration,
    /// The acceptor keeps the values of this many of its most recent durable slots in
    /// memory; older ones are read from its log if a new leader asks for them.
    pub acceptor_hot_slots: u64,
    /// Test-only planted bugs; all off by default.
    pub bugs: PlantedBugs,
}

impl NodeConfig {
    /// The default [`NodeConfig::tick`] (the elector's defaults are in ticks of it).
    pub const DEFAULT_TICK: Duration = Duration::from_millis(10);
    /// The default [`NodeConfig::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default [`NodeConfig::retry_interval`].
    pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);
    /// The default [`NodeConfig::snapshot_every`].
    pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
    /// The default [`NodeConfig::compact`]: a snapshot every 500,000 slots or every
    /// 16 MiB of commands, whichever comes first. At 128-byte puts that is about every
    /// 100,000 slots, a few seconds at full load: the logs between two snapshots take
    /// tens of megabytes, and a 100,000-key store snapshots in well under a second.
    pub const DEFAULT_COMPACT: CompactPolicy = CompactPolicy {
        every_slots: 500_000,
        every_bytes: 16 << 20,
    };

    /// The defaults: each role's own (`Default`), and the `DEFAULT_` constants above.
    pub fn new(id: NodeId, nodes: Vec<NodeId>, data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            id,
            nodes,
            data_dir: data_dir.into(),
            tick: Self::DEFAULT_TICK,
            elector: ElectorConfig::default(),
            proposer: ProposerConfig::default(),
            learner: LearnerConfig::default(),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            retry_interval: Self::DEFAULT_RETRY_INTERVAL,
            snapshot_every: Self::DEFAULT_SNAPSHOT_EVERY,
            compact: Some(Self::DEFAULT_COMPACT),
            record_applied: false,
            seed: id,
            clock_interval: Duration::from_millis(250),
            clock_margin: Duration::from_millis(500),
            acceptor_hot_slots: crate::roles::acceptor::DEFAULT_HOT_SLOTS,
            bugs: PlantedBugs::default(),
        }
    }
}

/// Every role's state, for `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    pub elector: ElectorStatus,
    pub proposer: ProposerStatus,
    pub acceptor: AcceptorStatus,
    pub learner: LearnerStatus,
    pub state_machine: StateMachineStatus,
}

pub struct Node;

impl Node {
    /// Starts a node's actors on the current actix arbiter.
    pub fn start<A: Application + Default>(cfg: NodeConfig, transport: Arc<dyn Transport>) -> Result<NodeHandle<A>> {
        if !cfg.nodes.contains(&cfg.id) {
            return Err(Error::Config(format!(
                "node id {} is not among the nodes {:?}",
                cfg.id, cfg.nodes
            )));
        }
        let mut nodes = cfg.nodes.clone();
        nodes.sort_unstable();
        nodes.dedup();
        let storage = Storage::open(&cfg.data_dir)?;
        // First: a data directory whose ballot cannot be known is refused untouched.
        let used = storage.load_ballot()?;
        // Replayed write by write, evicting as it goes: a long log need not fit in memory.
        let (mut acceptor, hot) = (Acceptor::default(), cfg.acceptor_hot_slots);
        let acceptor_log = AcceptorLog::open(&cfg.data_dir, |write| {
            acceptor.replay(write);
            if acceptor.accepted().len() as u64 > 2 * hot + 1024 {
                acceptor.evict_all_but(hot);
            }
        })?;
        let promised = acceptor.promised();
        let sm = match storage.load_snapshot()? {
            Some(bytes) => StateMachine::<A>::restore(&bytes)?,
            None => StateMachine::new(A::default()),
        }
        .with_bugs(cfg.bugs)
        .with_snapshots(SnapshotPolicy {
            every: cfg.snapshot_every,
            compact: cfg.compact,
        });
        // The slots the snapshot covers are decided: the acceptor forgets them (a new
        // leader learns from its promise not to propose there).
        let acceptor = acceptor.with_floor(sm.next());
        let (decided_log, log) = DecidedLog::open(&cfg.data_dir, sm.next())?;
        tracing::info!(node = cfg.id, %promised, accepted = acceptor.accepted_slots(), decided = log.len(), applied = sm.next(), "node starting");

        // Below the run of slots the decided log holds up to the snapshot, the slots are
        // only in the snapshot (compacted, or never learned here: a received snapshot
        // covered them).
        let floor = decided_log.held_through(sm.next());
        let learner = Learner::restore(cfg.id, cfg.learner.clone(), log, sm.next())
            .with_snapshot(sm.next(), floor)
            .with_bugs(cfg.bugs);
        // The state machine gets a thread of its own: applying commands and taking
        // snapshots of a large application must not delay heartbeats, acceptor replies
        // or proposals (a stalled elector makes the followers elect another leader).
        let sm_arbiter = actix::Arbiter::new().handle();
        let waiters = Waiters::<A::Reply>::default();
        let acceptor_ctx = Context::<AcceptorActor>::new();
        let proposer_ctx = Context::<ProposerActor>::new();
        let learner_ctx = Context::<LearnerActor>::new();
        let elector_ctx = Context::<ElectorActor>::new();
        let (acceptor_addr, proposer_addr) = (acceptor_ctx.address(), proposer_ctx.address());
        let (learner_addr, elector_addr) = (learner_ctx.address(), elector_ctx.address());
        let nodes_arc = Arc::new(nodes.clone());
        let peers_with = {
            let (id, transport) = (cfg.id, transport.clone());
            move |sm: &Addr<StateMachineActor<A>>| Peers {
                id,
                nodes: nodes_arc.clone(),
                transport: transport.clone(),
                local: LocalRoles {
                    acceptor: acceptor_addr.clone(),
                    proposer: proposer_addr.clone(),
                    learner: learner_addr.clone(),
                    elector: elector_addr.clone(),
                    reads: sm.clone().recipient(),
                    state_machine: sm.clone().recipient(),
                    state_machine_halt: sm.clone().recipient(),
                },
            }
        };
        let sm_actor = {
            let (storage, decided, waiters) = (storage.clone(), decided_log.sync_handle(), waiters.clone());
            let (peers_with, record) = (peers_with.clone(), cfg.record_applied);
            move |ctx: &mut Context<StateMachineActor<A>>| {
                StateMachineActor::new(sm, storage, decided, waiters, peers_with(&ctx.address()), record)
            }
        };
        let sm_addr = StateMachineActor::start_in_arbiter(&sm_arbiter, sm_actor);
        let peers = peers_with(&sm_addr);
        let (leader_tx, leader_rx) = watch::channel(Leadership::default());
        let elector = Elector::new(cfg.id, nodes.clone(), cfg.elector.clone(), cfg.seed, promised.max(used));
        acceptor_ctx.run(AcceptorActor::new(
            // A Promise's values are proposed again in batches of the leader's proposer:
            // the same budget, within one frame.
            acceptor
                .with_max_promise_bytes(cfg.proposer.max_batch_bytes)
                .with_hot_slots(cfg.acceptor_hot_slots)
                .with_bugs(cfg.bugs),
            acceptor_log,
            peers.clone(),
        ));
        proposer_ctx.run(ProposerActor::new(
            Proposer::new(cfg.id, nodes, cfg.proposer.clone()).with_bugs(cfg.bugs),
            peers.clone(),
            cfg.tick,
        ));
        learner_ctx.run(LearnerActor::new(
            learner,
            decided_log,
            storage.clone(),
            peers.clone(),
            cfg.tick,
        ));
        elector_ctx.run(ElectorActor::new(elector, storage, peers.clone(), cfg.tick, leader_tx));

        // A client id per incarnation: the node id in the top bits, the start time below.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let client = (cfg.id << 48) ^ (nanos & ((1 << 48) - 1));
        let handle = NodeHandle {
            inner: Arc::new(Inner {
                cfg,
                peers,
                sm: sm_addr,
                sm_arbiter,
                waiters,
                leader: leader_rx,
                client,
                next_seq: AtomicU64::new(1),
                outstanding: Mutex::new(BTreeSet::new()),
            }),
        };
        handle.start_clock();
        Ok(handle)
    }
}

struct Inner<A: Application> {
    cfg: NodeConfig,
    peers: Peers,
    sm: Addr<StateMachineActor<A>>,
    sm_arbiter: actix::ArbiterHandle,
    waiters: Waiters<A::Reply>,
    leader: watch::Receiver<Leadership>,
    client: u64,
    next_seq: AtomicU64,
    outstanding: Mutex<BTreeSet<u64>>,
}

/// A sequence number in flight; removing it on drop lets ack_below advance.
struct Outstanding<'a, A: Application> {
    inner: &'a Inner<A>,
    seq: u64,
}

impl<A: Application> Drop for Outstanding<'_, A> {
    fn drop(&mut self) {
        if let Ok(mut out) = self.inner.outstanding.lock() {
            out.remove(&self.seq);
        }
    }
}

/// Unregisters a waiter when the request ends early (its future dropped).
struct WaiterGuard<'a, A: Application> {
    inner: &'a Inner<A>,
    id: RequestId,
    armed: bool,
}

impl<A: Application> Drop for WaiterGuard<'_, A> {
    fn drop(&mut self) {
        if self.armed {
            self.inner
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&self.id);
            self.inner.sm.do_send(Unregister(self.id));
        }
    }
}

/// Completes when `notify` is notified; never without one.
async fn notified(notify: Option<&Notify>) {
    match notify {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

/// The door to a running node. Cheap to clone; usable from any thread.
pub struct NodeHandle<A: Application> {
    inner: Arc<Inner<A>>,
}

impl<A: Application> Clone for NodeHandle<A> {
    fn clone(&self) -> Self {
        NodeHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Application> NodeHandle<A> {
    pub fn id(&self) -> NodeId {
        self.inner.cfg.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.inner.cfg
    }

    /// The leader as this node's elector believes it.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.leader.borrow().leader
    }

    /// The highest ballot this node knows of (its round is etcd's `raft_term`).
    pub fn ballot(&self) -> Ballot {
        self.inner.leader.borrow().ballot
    }

    /// Where a transport delivers this node's inbound messages.
    pub fn inbound(&self) -> Inbound {
        let local = self.inner.peers.local.clone();
        let id = self.id();
        Arc::new(move |env: Envelope| {
            if env.to == id {
                local.deliver(env.from, env.msg);
            }
        })
    }

    /// Runs a command through the log (linearizable), as this node's own client.
    pub async fn submit(&self, command: A::Command) -> Result<A::Reply> {
        // The sequence number is taken under the lock that computes ack_below, so no
        // command can acknowledge a lower number that is still on its way.
        let (seq, ack_below) = {
            let mut out = self.inner.outstanding.lock().map_err(|_| Error::Stopped)?;
            let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
            out.insert(seq);
            (seq, out.first().copied().unwrap_or(seq))
        };
        // Removed when this future finishes or is dropped (a client that hung up), so a
        // cancelled request cannot hold ack_below back for ever.
        let _outstanding = Outstanding {
            inner: &self.inner,
            seq,
        };
        self.submit_as(
            RequestId {
                client: self.inner.client,
                seq,
            },
            ack_below,
            &command,
        )
        .await
    }

    /// Runs a command with an explicit request id (a client retrying gives the same id:
    /// the command is applied once and answered the same).
    pub async fn submit_as(&self, id: RequestId, ack_below: u64, command: &A::Command) -> Result<A::Reply> {
        let payload = codec::encode(command).map_err(|e| Error::InvalidInput(e.to_string()))?;
        let command = Command { id, ack_below, payload };
        let (tx, rx) = oneshot::channel();
        // The waiter is in the table before the command leaves, so it is there before
        // the command can possibly be applied.
        {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.entry(id).or_default().push(tx);
        }
        let ask = PeerMessage::Proposer(ProposerMessage::Propose { command });
        match self.ask_leader(id, rx, ask, None).await? {
            Ok(reply) => Ok(reply),
            Err(msg) => Err(Error::InvalidInput(msg)),
        }
    }

    /// Sends `ask` to the leader this node's elector names, again every
    /// `retry_interval`, whenever the leader changes, and (a read) whenever the node
    /// asked refuses through `refused` because it does not lead: then at once, but no
    /// sooner than a tick after the last ask, so that a node about to lead again is not
    /// asked in a tight loop. Stops when the state machine answers request `id` through
    /// `rx`; after `request_timeout` stops waiting and fails with `Unavailable`.
    async fn ask_leader<R>(
        &self,
        id: RequestId,
        mut rx: oneshot::Receiver<Outcome<R>>,
        ask: PeerMessage,
        refused: Option<&Notify>,
    ) -> Result<Outcome<R>> {
        let mut waiter = WaiterGuard {
            inner: &self.inner,
            id,
            armed: true,
        };
        let cfg = &self.inner.cfg;
        let deadline = Instant::now() + cfg.request_timeout;
        let mut leader_rx = self.inner.leader.clone();
        let (mut ask_at, mut asked_at) = (Instant::now(), Instant::now());
        loop {
            let now = Instant::now();
            if now >= ask_at {
                if let Some(leader) = leader_rx.borrow_and_update().leader {
                    tracing::debug!(
                        node = self.id(),
                        leader,
                        client = id.client,
                        seq = id.seq,
                        "ask the leader"
                    );
                    self.inner.peers.send(leader, ask.clone());
                }
                (asked_at, ask_at) = (now, now + cfg.retry_interval);
            }
            if now >= deadline {
                break;
            }
            tokio::select! {
                answer = &mut rx => {
                    waiter.armed = answer.is_err(); // an answered waiter is gone already
                    return answer.map_err(|_| Error::Stopped);
                }
                changed = leader_rx.changed() => {
                    if changed.is_err() {
                        return Err(Error::Stopped);
                    }
                    ask_at = Instant::now();
                }
                () = notified(refused) => ask_at = ask_at.min(asked_at + cfg.tick),
                _ = tokio::time::sleep_until(ask_at.min(deadline).into()) => {}
            }
        }
        // The guard unregisters the waiter (also when this future is dropped early).
        Err(Error::Unavailable(format!(
            "no quorum answered within {:?}; retry later",
            self.inner.cfg.request_timeout
        )))
    }

    /// While this node leads, proposes the application's clock command (if any) every
    /// `clock_interval`. Stops when the node stops.
    fn start_clock(&self) {
        let weak = Arc::downgrade(&self.inner);
        let interval = self.inner.cfg.clock_interval;
        actix_rt::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let node = NodeHandle { inner };
                if !node.inner.sm.connected() {
                    return;
                }
                if node.leader() != Some(node.id()) {
                    continue;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.saturating_sub(node.inner.cfg.clock_margin).as_millis() as u64)
                    .unwrap_or(0);
                let asked = node
                    .inner
                    .sm
                    .send(ClockCommand::<A>(now, std::marker::PhantomData))
                    .await;
                if let Ok(Some(command)) = asked
                    && let Err(e) = node.submit(command).await
                {
                    tracing::debug!(node = node.id(), error = %e, "clock command not committed");
                }
            }
        });
    }

    /// A linearizable read that does not write the log (read index): the leader confirms
    /// with a quorum, after the read began, that it still leads and names the log index
    /// the read must see; this node answers from its own state once it has applied that
    /// far. Falls back to [`NodeHandle::submit`] for a command that is not read-only.
    pub async fn read(&self, command: A::Command) -> Result<A::Reply> {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let id = RequestId {
            client: self.inner.client,
            seq,
        };
        let (tx, rx) = oneshot::channel();
        let refused = Arc::new(Notify::new());
        self.inner.sm.do_send(ReadWait::<A> {
            id,
            command: command.clone(),
            reply: tx,
            retry: refused.clone(),
        });
        let ask = PeerMessage::Proposer(ProposerMessage::ReadIndex { id });
        match self.ask_leader(id, rx, ask, Some(&refused)).await? {
            Ok(reply) => Ok(reply),
            // Not read-only after all: it must go through the log.
            Err(_) => self.submit(command).await,
        }
    }

    /// Answers a read-only command from this node's state, without the log: fast, and
    /// possibly stale.
    pub async fn read_local(&self, command: A::Command) -> Result<A::Reply> {
        self.inner
            .sm
            .send(ReadLocal::<A>::new(command))
            .await
            .map_err(|_| Error::Stopped)?
            .ok_or_else(|| Error::InvalidInput("not a read-only command".into()))
    }

    pub async fn status(&self) -> Result<NodeStatus> {
        let l = &self.inner.peers.local;
        let stopped = |_| Error::Stopped;
        Ok(NodeStatus {
            node_id: self.id(),
            leader_id: self.leader(),
            elector: l.elector.send(GetElectorStatus).await.map_err(stopped)?,
            proposer: l.proposer.send(GetProposerStatus).await.map_err(stopped)?,
            acceptor: l.acceptor.send(GetAcceptorStatus).await.map_err(stopped)?,
            learner: l.learner.send(GetLearnerStatus).await.map_err(stopped)?,
            state_machine: self.inner.sm.send(GetStateMachineStatus).await.map_err(stopped)?,
        })
    }

    /// The decided log, slot by slot.
    pub async fn decided_log(&self) -> Result<BTreeMap<Slot, Value>> {
        self.inner
            .peers
            .local
            .learner
            .send(GetDecidedLog)
            .await
            .map_err(|_| Error::Stopped)
    }

    /// The requests applied so far, in order (only with `record_applied`).
    pub async fn applied(&self) -> Result<Vec<(Slot, Option<RequestId>)>> {
        self.inner.sm.send(GetApplied).await.map_err(|_| Error::Stopped)
    }

    /// Stops every actor at once, dropping whatever was not durable: a crash.
    pub fn halt(&self) {
        let l = &self.inner.peers.local;
        l.acceptor.do_send(Halt);
        l.proposer.do_send(Halt);
        l.learner.do_send(Halt);
        l.elector.do_send(Halt);
        self.inner.sm.do_send(Halt);
        self.inner.sm_arbiter.stop();
    }

    /// True once every actor of this node has stopped.
    pub fn is_halted(&self) -> bool {
        let l = &self.inner.peers.local;
        !l.acceptor.connected()
            && !l.proposer.connected()
            && !l.learner.connected()
            && !l.elector.connected()
            && !self.inner.sm.connected()
    }
}
