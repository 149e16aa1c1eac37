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
//!
//! **Membership.** The node starts in the configuration its `membership` file holds (the
//! latest one it applied, whatever the config file says), else in the config file's
//! nodes as configuration 0, else (started to join, [`NodeConfig::join`]) in none: it
//! then waits to be added, and a joining loop ([`crate::http::join`]) hands it the
//! configuration that adds it ([`NodeHandle::begin_join`]). The state machine's host
//! publishes every configuration the node applies ([`MembershipView`], a watch the
//! gateway reads for `/status` and `/v1/members` and waits on). A membership change is
//! a StopSign submitted like a command ([`NodeHandle::reconfigure`]), answered when the
//! configuration it names is in force here. A node that is not a member of its own
//! latest configuration was removed: it refuses client requests
//! ([`Error::Removed`]).

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
use crate::messages::local::LocalMessage;
use crate::messages::{
    Ballot, Command, ConfigId, Configuration, Envelope, Member, NodeId, PeerMessage, ProposerMessage, RequestId, Slot,
    StopSign, Value,
};
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot, watch};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    /// Every node of the first configuration (id 0, the config file's), this one
    /// included. A node whose data directory holds a `membership` file starts from
    /// that instead.
    pub nodes: Vec<NodeId>,
    /// How the nodes are reached (peer and HTTP addresses; this node's own too). Empty
    /// in-process, where nodes have no addresses.
    pub addresses: BTreeMap<NodeId, Member>,
    /// The cluster's name (its `cluster_id`); empty if not known (in-process, or a node
    /// that joins without a config file: it learns it from a member).
    pub cluster: String,
    /// Start as a joining node: no configuration, no campaign, no vote, until a
    /// configuration that adds it is applied. Ignored if the data directory holds a
    /// `membership` file (the node was a member already and restarts as one).
    pub join: bool,
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
            addresses: BTreeMap::new(),
            cluster: String::new(),
            join: false,
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

    /// Configuration 0: `nodes`, at `addresses` (members without addresses in-process).
    pub fn initial_configuration(&self) -> Configuration {
        let members = self
            .nodes
            .iter()
            .map(|&n| (n, self.addresses.get(&n).cloned().unwrap_or_default()))
            .collect();
        Configuration::initial(members)
    }
}

/// What this node knows of the cluster's membership, published by the state machine's
/// host (each configuration applied) and the joining loop, read by the gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipView {
    /// The cluster's name (empty while a joining node has not learned it).
    pub cluster: String,
    /// The latest configuration this node applied (`None`: a joining node, which holds
    /// no state yet).
    pub config: Option<Configuration>,
    /// The members of the configuration before `config` that a new member of `config`
    /// pulls the state from: the StopSign's sources, or else the old members it kept
    /// (empty: not known here, e.g. the configuration came in a snapshot).
    pub sources: Vec<NodeId>,
    /// A joining node: the configuration that adds it, as a member told it; it is pulling
    /// the state up to its start.
    pub learned: Option<Configuration>,
    /// A joining node: why it has not joined yet (its join URLs' last answer or error).
    pub join_error: Option<String>,
}

/// Where a node stands in its cluster's membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipState {
    /// A member of the configuration it applied last.
    Member,
    /// Started to join: holds no configuration yet.
    Joining,
    /// Its latest configuration does not count it: it was removed from the cluster.
    Removed,
}

impl MembershipState {
    pub fn as_str(self) -> &'static str {
        match self {
            MembershipState::Member => "member",
            MembershipState::Joining => "joining",
            MembershipState::Removed => "removed",
        }
    }
}

impl MembershipView {
    /// Where node `id` stands by this view.
    pub fn state(&self, id: NodeId) -> MembershipState {
        match &self.config {
            None => MembershipState::Joining,
            Some(c) if c.contains(id) => MembershipState::Member,
            Some(_) => MembershipState::Removed,
        }
    }
}

/// One member as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub peer_addr: String,
    pub http_addr: String,
}

/// Every role's state, for `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    /// Member, joining or removed ([`MembershipState`]).
    pub membership: MembershipState,
    /// The configuration applied here (none while joining), from which slot, and its
    /// members.
    pub config_id: Option<ConfigId>,
    pub config_start: Option<Slot>,
    pub members: Vec<MemberStatus>,
    /// Slots applied (the state machine's, repeated at the top for scripts).
    pub applied: Slot,
    /// A joining node: why it has not joined yet.
    pub join_error: Option<String>,
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
        let storage = Storage::open(&cfg.data_dir)?;
        // First: a data directory whose ballot cannot be known is refused untouched.
        let used = storage.load_ballot()?;
        let (cluster, mut config, remembered) = Self::membership(&cfg, &storage)?;
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
        };
        // The snapshot holds the configuration in force at its slot. It is ahead of the
        // membership file only if the node stopped between installing a received
        // snapshot and recording its configuration: then it counts, and is recorded now.
        let in_snapshot = sm.configuration().clone();
        if !in_snapshot.members.is_empty() && config.as_ref().is_none_or(|c| in_snapshot.id > c.id) {
            tracing::info!(node = cfg.id, config = %in_snapshot, "the snapshot holds a newer configuration than the membership file");
            storage.save_membership(&cluster, &in_snapshot)?;
            config = Some(in_snapshot);
        }
        // The state machine's configuration is replicated state: its snapshot's. The
        // membership file's is given to it only if the state machine stands at or past
        // that configuration's start (a snapshot from before configurations were in
        // snapshots holds none). Otherwise the node stopped after applying a StopSign
        // and before the snapshot at it was durable: replaying the log applies the
        // StopSign again (and takes that snapshot), so the state at every slot stays the
        // same as the other members'. The roles and the transport start in the file's.
        let sm = match &config {
            Some(c) if sm.next() >= c.start => sm.with_configuration(c.clone()),
            // Configuration 0's members, to a state machine that holds none (only then).
            _ if !cfg.nodes.is_empty() => sm.with_configuration(cfg.initial_configuration()),
            _ => sm,
        }
        .with_bugs(cfg.bugs)
        .with_snapshots(SnapshotPolicy {
            every: cfg.snapshot_every,
            compact: cfg.compact,
        });
        if remembered || config.as_ref().is_some_and(|c| c.id > 0) {
            if let Some(c) = &config {
                transport.set_members(c);
            }
            if !cluster.is_empty() {
                transport.set_cluster_id(&cluster);
            }
        }
        // The slots the snapshot covers are decided: the acceptor forgets them (a new
        // leader learns from its promise not to propose there).
        let acceptor = acceptor
            .with_floor(sm.next())
            .with_config(config.as_ref().map(|c| c.id));
        let (decided_log, log) = DecidedLog::open(&cfg.data_dir, sm.next())?;
        let membership = config.as_ref().map_or("joining".to_string(), |c| c.to_string());
        tracing::info!(node = cfg.id, %promised, accepted = acceptor.accepted_slots(), decided = log.len(), applied = sm.next(), %membership, "node starting");

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
        let (view_tx, view_rx) = watch::channel(MembershipView {
            cluster,
            config: config.clone(),
            ..MembershipView::default()
        });
        let view_tx = Arc::new(view_tx);
        let acceptor_ctx = Context::<AcceptorActor>::new();
        let proposer_ctx = Context::<ProposerActor>::new();
        let learner_ctx = Context::<LearnerActor>::new();
        let elector_ctx = Context::<ElectorActor>::new();
        let (acceptor_addr, proposer_addr) = (acceptor_ctx.address(), proposer_ctx.address());
        let (learner_addr, elector_addr) = (learner_ctx.address(), elector_ctx.address());
        let peers_with = {
            let (id, transport) = (cfg.id, transport.clone());
            move |sm: &Addr<StateMachineActor<A>>| Peers {
                id,
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
            let (peers_with, record, view_tx) = (peers_with.clone(), cfg.record_applied, view_tx.clone());
            move |ctx: &mut Context<StateMachineActor<A>>| {
                StateMachineActor::new(sm, storage, decided, waiters, peers_with(&ctx.address()), record)
                    .with_membership(view_tx)
            }
        };
        let sm_addr = StateMachineActor::start_in_arbiter(&sm_arbiter, sm_actor);
        let peers = peers_with(&sm_addr);
        let (leader_tx, leader_rx) = watch::channel(Leadership::default());
        // The roles take the configuration in force and its members (none while
        // joining: the elector never campaigns, the acceptor answers no ballot).
        let members = config.as_ref().map(Configuration::ids).unwrap_or_default();
        let config_id = config.as_ref().map(|c| c.id);
        let elector = Elector::new(
            cfg.id,
            members.clone(),
            cfg.elector.clone(),
            cfg.seed,
            promised.max(used),
        )
        .with_config(config_id);
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
            Proposer::new(cfg.id, members, cfg.proposer.clone())
                .with_config_id(config_id.unwrap_or(0))
                .with_bugs(cfg.bugs),
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
        // The first messages in their mailboxes, before any tick (the learner takes its
        // configuration from it; the others have it already and ignore it).
        if let Some(c) = config.as_ref().filter(|c| c.id > 0) {
            peers.local.deliver_local(LocalMessage::Reconfigure(c.clone()));
        }

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
                membership: view_rx,
                membership_tx: view_tx,
                changing: AtomicBool::new(false),
                proposed_stop: Arc::new(Mutex::new(None)),
                client,
                next_seq: AtomicU64::new(1),
                outstanding: Mutex::new(BTreeSet::new()),
            }),
        };
        handle.start_clock();
        Ok(handle)
    }

    /// The cluster's name, the configuration the node starts in (`None`: joining), and
    /// whether it came from the `membership` file: the file's if there is one (the latest
    /// configuration this node applied, whatever the config file says), else the config
    /// file's nodes as configuration 0, else none for a node started to join.
    fn membership(cfg: &NodeConfig, storage: &Storage) -> Result<(String, Option<Configuration>, bool)> {
        match storage.load_membership()? {
            Some((cluster, config)) => {
                if !cfg.cluster.is_empty() && !cluster.is_empty() && cluster != cfg.cluster {
                    return Err(Error::Config(format!(
                        "the data directory {} belongs to cluster {cluster:?}, not to {:?} as configured: \
                         wrong data directory or wrong configuration file",
                        cfg.data_dir.display(),
                        cfg.cluster
                    )));
                }
                tracing::info!(
                    node = cfg.id,
                    config = %config,
                    "the membership file overrides the configuration file's nodes: this node starts in the latest configuration it applied"
                );
                if cfg.join {
                    tracing::info!(
                        node = cfg.id,
                        "this node has a configuration already: it restarts as it was, the join URLs are not used"
                    );
                }
                let cluster = if cluster.is_empty() {
                    cfg.cluster.clone()
                } else {
                    cluster
                };
                Ok((cluster, Some(config), true))
            }
            None if cfg.join => Ok((cfg.cluster.clone(), None, false)),
            None => {
                if !cfg.nodes.contains(&cfg.id) {
                    return Err(Error::Config(format!(
                        "node id {} is not among the nodes {:?}",
                        cfg.id, cfg.nodes
                    )));
                }
                Ok((cfg.cluster.clone(), Some(cfg.initial_configuration()), false))
            }
        }
    }
}

struct Inner<A: Application> {
    cfg: NodeConfig,
    peers: Peers,
    sm: Addr<StateMachineActor<A>>,
    sm_arbiter: actix::ArbiterHandle,
    waiters: Waiters<A::Reply>,
    leader: watch::Receiver<Leadership>,
    membership: watch::Receiver<MembershipView>,
    membership_tx: Arc<watch::Sender<MembershipView>>,
    /// A membership change this node took is in progress.
    changing: AtomicBool,
    /// The configuration the latest StopSign proposed through this node ends, and when
    /// (seen in `ProposeStop`s to this node's proposer, or sent by this node).
    proposed_stop: Arc<Mutex<Option<(ConfigId, Instant)>>>,
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

/// A command's or read's answer from the state machine, as [`NodeHandle::ask_leader`]
/// waits for it.
async fn answer_of<R>(rx: oneshot::Receiver<Outcome<R>>) -> (Result<Outcome<R>>, bool) {
    let answer = rx.await;
    let answered = answer.is_ok();
    (answer.map_err(|_| Error::Stopped), answered)
}

/// A StopSign ending configuration `prev` was proposed through this node now.
fn note_stop(proposed: &Mutex<Option<(ConfigId, Instant)>>, prev: ConfigId) {
    *proposed.lock().unwrap_or_else(|e| e.into_inner()) = Some((prev, Instant::now()));
}

/// How a membership change `stop` ended, by the configuration in force (`None`: not
/// yet): the configuration after `stop.prev` with exactly its members is success; any
/// other configuration past `stop.prev` means another change won.
fn outcome_of(stop: &StopSign, config: Option<&Configuration>) -> Option<Result<Configuration>> {
    let config = config.filter(|c| c.id > stop.prev)?;
    if config.id == stop.prev + 1 && config.members == stop.members {
        return Some(Ok(config.clone()));
    }
    Some(Err(Error::Conflict(format!(
        "refused: another membership change was applied first; {config} is in force now, with members {}",
        describe_members(config)
    ))))
}

/// `1 (peer 127.0.0.1:7101, http 127.0.0.1:7201), 2 (...)`, or the bare ids without
/// addresses.
pub fn describe_members(config: &Configuration) -> String {
    let parts: Vec<String> = config
        .members
        .iter()
        .map(|(id, m)| {
            if m.http_addr.is_empty() {
                id.to_string()
            } else {
                format!("{id} (http {}, peer {})", m.http_addr, m.peer_addr)
            }
        })
        .collect();
    parts.join(", ")
}

/// A configuration's members for `/status`.
fn member_list(config: &Configuration) -> Vec<MemberStatus> {
    config
        .members
        .iter()
        .map(|(&id, m)| MemberStatus {
            id,
            peer_addr: m.peer_addr.clone(),
            http_addr: m.http_addr.clone(),
        })
        .collect()
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

    /// Waits up to `within` until this node follows a leader that is a member of
    /// `config`; returns it (`None` if none showed up in time).
    pub async fn wait_leader_in(&self, config: &Configuration, within: Duration) -> Option<NodeId> {
        let mut rx = self.inner.leader.clone();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(leader) = rx.borrow_and_update().leader.filter(|l| config.contains(*l)) {
                return Some(leader);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// The highest ballot this node knows of (its round is etcd's `raft_term`).
    pub fn ballot(&self) -> Ballot {
        self.inner.leader.borrow().ballot
    }

    /// Where a transport delivers this node's inbound messages. (A StopSign proposed
    /// through this node is noted on the way, so that the gateway can refuse a second
    /// change while one is under way.)
    pub fn inbound(&self) -> Inbound {
        let local = self.inner.peers.local.clone();
        let id = self.id();
        let proposed = self.inner.proposed_stop.clone();
        Arc::new(move |env: Envelope| {
            if env.to != id {
                return;
            }
            if let PeerMessage::Proposer(ProposerMessage::ProposeStop { stop }) = &env.msg {
                note_stop(&proposed, stop.prev);
            }
            local.deliver(env.from, env.msg);
        })
    }

    /// What this node knows of the membership (see [`MembershipView`]).
    pub fn membership(&self) -> MembershipView {
        self.inner.membership.borrow().clone()
    }

    /// A receiver that sees every change of [`NodeHandle::membership`].
    pub fn watch_membership(&self) -> watch::Receiver<MembershipView> {
        self.inner.membership.clone()
    }

    /// Member, joining or removed.
    pub fn membership_state(&self) -> MembershipState {
        self.inner.membership.borrow().state(self.id())
    }

    /// Refuses a client request on a node that is not a member: a removed node names the
    /// members to ask instead; a joining node holds no state yet.
    pub fn serving(&self) -> Result<()> {
        let view = self.inner.membership.borrow();
        match (view.state(self.id()), &view.config) {
            (MembershipState::Member, _) => Ok(()),
            (MembershipState::Removed, Some(config)) => Err(Error::Removed {
                message: format!(
                    "node {} was removed from the cluster (configuration {}); current members: {}",
                    self.id(),
                    config.id,
                    describe_members(config)
                ),
                members: config
                    .members
                    .iter()
                    .map(|(&id, m)| (id, m.peer_addr.clone(), m.http_addr.clone()))
                    .collect(),
            }),
            _ => Err(Error::Unavailable(format!(
                "node {} is joining the cluster and serves no requests until it holds the state (see GET /status)",
                self.id()
            ))),
        }
    }

    /// A joining node learned its cluster's name from a member: handshakes carry it
    /// from now on, and the membership file records it.
    pub fn set_cluster(&self, cluster: &str) {
        if self.inner.membership.borrow().cluster == cluster {
            return;
        }
        self.inner.peers.transport.set_cluster_id(cluster);
        self.inner
            .membership_tx
            .send_modify(|v| v.cluster = cluster.to_string());
    }

    /// A joining node: why it has not joined yet (`None`: nothing wrong).
    pub fn set_join_error(&self, error: Option<String>) {
        self.inner.membership_tx.send_if_modified(|v| {
            let changed = v.join_error != error;
            v.join_error = error;
            changed
        });
    }

    /// A joining node learned `config`, which adds it: reach its members, and pull the
    /// state below its start from `sources` (members of the configuration before it) in
    /// parallel. Its state machine then installs that state, applies `config` from it,
    /// and the node is a member. Ignored on a node that holds a configuration already.
    pub fn begin_join(&self, config: Configuration, sources: Vec<NodeId>) {
        let view = self.membership();
        if view.config.is_some() || view.learned.as_ref().is_some_and(|l| l.id >= config.id) {
            return;
        }
        tracing::info!(node = self.id(), config = %config, ?sources, "joining: pulling the state up to the configuration's start");
        self.inner.peers.transport.set_members(&config);
        self.inner.peers.local.deliver_local(LocalMessage::Migrate {
            below: config.start,
            sources,
        });
        self.inner.membership_tx.send_modify(|v| v.learned = Some(config));
    }

    /// Why a membership change cannot start now, if it cannot: another one this node
    /// took is in progress, or a StopSign proposed through this node against the
    /// configuration in force is not applied yet (for at most `request_timeout`).
    pub fn change_in_progress(&self) -> Option<String> {
        if self.inner.changing.load(Ordering::Acquire) {
            return Some("another membership change taken by this node is in progress; retry when it is done".into());
        }
        let current = self.inner.membership.borrow().config.as_ref().map(|c| c.id)?;
        let proposed = *self.inner.proposed_stop.lock().unwrap_or_else(|e| e.into_inner());
        match proposed {
            Some((prev, at)) if prev == current && at.elapsed() < self.inner.cfg.request_timeout => Some(format!(
                "a membership change of configuration {current} was proposed {} ms ago and is not applied yet; retry when it is",
                at.elapsed().as_millis()
            )),
            _ => None,
        }
    }

    /// A StopSign ending the configuration in force, naming `members` as the next one's
    /// (`sources`: old members a new one pulls the state from; empty: every one that
    /// stays), with a fresh request id.
    pub fn stop_sign(&self, members: BTreeMap<NodeId, Member>, sources: Vec<NodeId>) -> Result<StopSign> {
        let prev = self
            .inner
            .membership
            .borrow()
            .config
            .as_ref()
            .map(|c| c.id)
            .ok_or_else(|| Error::Unavailable(format!("node {} holds no configuration yet", self.id())))?;
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        Ok(StopSign {
            id: RequestId {
                client: self.inner.client,
                seq,
            },
            prev,
            members,
            sources,
        })
    }

    /// Runs a membership change: `stop` goes to the leader like a command (again every
    /// `retry_interval`, to a new leader at once) until the configuration it names is in
    /// force on this node; returns that configuration. Fails with `Conflict` (its message
    /// begins with "refused:") if the configuration changed otherwise first (the state
    /// machine refused the StopSign, or another change was applied), with `Unavailable`
    /// after `request_timeout`. One change at a time per node.
    pub async fn reconfigure(&self, stop: StopSign) -> Result<Configuration> {
        self.serving()?;
        if self.inner.changing.swap(true, Ordering::AcqRel) {
            return Err(Error::Conflict(
                "another membership change taken by this node is in progress; retry when it is done".into(),
            ));
        }
        struct Clear<'a>(&'a AtomicBool);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _clear = Clear(&self.inner.changing);
        note_stop(&self.inner.proposed_stop, stop.prev);
        let (tx, mut rx) = oneshot::channel();
        {
            let mut waiters = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            waiters.entry(stop.id).or_default().push(tx);
        }
        let mut view = self.inner.membership.clone();
        let (id, target) = (stop.id, stop.clone());
        tracing::info!(node = self.id(), prev = stop.prev, members = ?stop.members.keys().collect::<Vec<_>>(), sources = ?stop.sources, "membership change proposed");
        // Done when the configuration after `prev` is in force here: the one asked for,
        // or another one (then this change lost). The state machine answers the request
        // only to refuse it.
        let done = async move {
            loop {
                if let Some(result) = outcome_of(&target, view.borrow_and_update().config.as_ref()) {
                    return (result, false);
                }
                tokio::select! {
                    biased;
                    changed = view.changed() => {
                        if changed.is_err() {
                            return (Err(Error::Stopped), false);
                        }
                    }
                    answer = &mut rx => {
                        // Applied in the meantime after all (a duplicate of the StopSign
                        // was refused once the first one had been applied)?
                        if let Some(Ok(config)) = outcome_of(&target, view.borrow().config.as_ref()) {
                            return (Ok(config), true);
                        }
                        return match answer {
                            Ok(Err(refused)) => (Err(Error::Conflict(refused)), true),
                            Ok(Ok(_)) => (Err(Error::Protocol("a StopSign was answered like a command".into())), true),
                            Err(_) => (Err(Error::Stopped), false),
                        };
                    }
                }
            }
        };
        let ask = PeerMessage::Proposer(ProposerMessage::ProposeStop { stop });
        let result = self.ask_leader(id, done, ask, None).await;
        match &result {
            Ok(config) => tracing::info!(node = self.id(), config = %config, "membership change applied"),
            Err(e) => tracing::info!(node = self.id(), error = %e, "membership change failed"),
        }
        result
    }

    /// Runs a command through the log (linearizable), as this node's own client.
    pub async fn submit(&self, command: A::Command) -> Result<A::Reply> {
        self.serving()?;
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
        self.serving()?;
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
        match self.ask_leader(id, answer_of(rx), ask, None).await? {
            Ok(reply) => Ok(reply),
            Err(msg) => Err(Error::InvalidInput(msg)),
        }
    }

    /// Sends `ask` to the leader this node's elector names, again every
    /// `retry_interval`, whenever the leader changes, and (a read) whenever the node
    /// asked refuses through `refused` because it does not lead: then at once, but no
    /// sooner than a tick after the last ask, so that a node about to lead again is not
    /// asked in a tight loop. Stops when `done` completes (with whether the state
    /// machine's answer took request `id`'s waiter out of the table); after
    /// `request_timeout` stops waiting and fails with `Unavailable`.
    async fn ask_leader<T>(
        &self,
        id: RequestId,
        done: impl Future<Output = (Result<T>, bool)>,
        ask: PeerMessage,
        refused: Option<&Notify>,
    ) -> Result<T> {
        tokio::pin!(done);
        let mut waiter = WaiterGuard {
            inner: &self.inner,
            id,
            armed: true,
        };
        let cfg = &self.inner.cfg;
        let deadline = Instant::now() + cfg.request_timeout;
        let mut leader_rx = self.inner.leader.clone();
        // A membership change watches the configuration itself (its own removal is its
        // success); any other request fails at once if this node is removed meanwhile.
        let (mut membership_rx, mut watching) = (
            self.inner.membership.clone(),
            !matches!(ask, PeerMessage::Proposer(ProposerMessage::ProposeStop { .. })),
        );
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
                (result, answered) = &mut done => {
                    waiter.armed = !answered; // an answered waiter is gone already
                    return result;
                }
                changed = leader_rx.changed() => {
                    if changed.is_err() {
                        return Err(Error::Stopped);
                    }
                    ask_at = Instant::now();
                }
                // Removed while it waited: this node will learn no more of the log, so
                // no answer would come. Whether it was applied is unknown (503).
                changed = membership_rx.changed(), if watching => {
                    watching = changed.is_ok();
                    if watching && self.membership_state() == MembershipState::Removed {
                        return Err(Error::Unavailable(format!(
                            "node {} was removed from the cluster while this request waited; it may or \
                             may not have been applied: retry it at a member",
                            self.id()
                        )));
                    }
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
        self.serving()?;
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
        match self.ask_leader(id, answer_of(rx), ask, Some(&refused)).await? {
            Ok(reply) => Ok(reply),
            // Not read-only after all: it must go through the log.
            Err(_) => self.submit(command).await,
        }
    }

    /// Answers a read-only command from this node's state, without the log: fast, and
    /// possibly stale.
    pub async fn read_local(&self, command: A::Command) -> Result<A::Reply> {
        self.serving()?;
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
        let state_machine = self.inner.sm.send(GetStateMachineStatus).await.map_err(stopped)?;
        let view = self.membership();
        Ok(NodeStatus {
            node_id: self.id(),
            leader_id: self.leader(),
            membership: view.state(self.id()),
            config_id: view.config.as_ref().map(|c| c.id),
            config_start: view.config.as_ref().map(|c| c.start),
            members: view.config.as_ref().map(member_list).unwrap_or_default(),
            applied: state_machine.applied,
            join_error: view.join_error,
            elector: l.elector.send(GetElectorStatus).await.map_err(stopped)?,
            proposer: l.proposer.send(GetProposerStatus).await.map_err(stopped)?,
            acceptor: l.acceptor.send(GetAcceptorStatus).await.map_err(stopped)?,
            learner: l.learner.send(GetLearnerStatus).await.map_err(stopped)?,
            state_machine,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: ConfigId, ids: &[NodeId]) -> Configuration {
        Configuration {
            id,
            start: 10 * id,
            members: ids.iter().map(|&n| (n, Member::default())).collect(),
        }
    }

    fn stop(prev: ConfigId, ids: &[NodeId]) -> StopSign {
        StopSign {
            id: RequestId { client: 1, seq: 1 },
            prev,
            members: config(0, ids).members,
            sources: Vec::new(),
        }
    }

    #[test]
    fn node_change_outcome_is_read_from_the_configuration_in_force() {
        let asked = stop(3, &[1, 2, 4]);
        // Not yet: the configuration it ends is still in force.
        assert!(outcome_of(&asked, Some(&config(3, &[1, 2, 3]))).is_none());
        assert!(outcome_of(&asked, None).is_none());
        // Done: the next configuration, with exactly the members asked for.
        let done = config(4, &[1, 2, 4]);
        assert_eq!(outcome_of(&asked, Some(&done)).and_then(Result::ok), Some(done));
        // Lost: the next configuration has other members (another change won), or the
        // configuration moved on further.
        for other in [config(4, &[1, 2, 3, 5]), config(5, &[1, 2, 4])] {
            match outcome_of(&asked, Some(&other)) {
                Some(Err(Error::Conflict(m))) => assert!(m.starts_with("refused:") && m.contains("another"), "{m}"),
                o => panic!("{other}: {o:?}"),
            }
        }
    }

    #[test]
    fn node_membership_view_states() {
        let view = MembershipView {
            config: Some(config(2, &[1, 3])),
            ..MembershipView::default()
        };
        assert_eq!(view.state(1), MembershipState::Member);
        assert_eq!(view.state(2), MembershipState::Removed);
        assert_eq!(MembershipView::default().state(2), MembershipState::Joining);
    }
}
