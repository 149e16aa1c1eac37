//! The Raft node: openraft started on the project's storage and transport, and the
//! door clients use ([`RaftNode`](super::RaftNode): submit, read, read_local, status, halt).
//!
//! **Where openraft runs.** On a multi-thread tokio runtime of its own (two workers)
//! that the node owns, not on the node's actix thread: openraft's core, its
//! replication tasks, its state-machine worker and the serving of peer requests all
//! run there, and the actix thread (HTTP, the TCP transport's actors) only hands work
//! over. A client call is spawned onto that runtime and its `JoinHandle` awaited from
//! the caller's runtime. Why: openraft does real work per message (encoding, the
//! engine's bookkeeping, applying), and on the single actix thread it would compete
//! with the HTTP front for one core; with its own workers the two cores are shared by
//! the kernel. (Measured figures are in docs/EVALUATION.md.)
//!
//! **Timing.** openraft wants `heartbeat < election_min < election_max` (ms, integers):
//! the heartbeat is at least 1 ms, the election minimum above it, the maximum above
//! that; a range the configuration gives outside this is clamped so (the 0-5 ms range
//! of the evaluation runs as heartbeat 1 ms, election 2-5 ms). openraft also uses the
//! heartbeat interval as the time limit of an AppendEntries, so with a 1 ms heartbeat
//! a follower's fsync makes many of them time out: that is openraft's design, reported
//! as such.
//!
//! **Commands: applied at most once.** At the leader a command goes to openraft's
//! `client_write` in a batch of the commands waiting with it ([`super::batch`]: one
//! entry, one sync for all of them); at a follower it is forwarded once to the leader (`Forward`). A
//! command is only ever re-sent elsewhere when the node asked says it did not lead
//! (nothing was proposed). Anything else without an answer (a timeout, leadership lost
//! while in flight) is `Error::Unavailable`: its outcome is unknown, and the client
//! decides.
//!
//! **Reads.** `read` is linearizable without writing the log: the leader's read index
//! (openraft's `get_read_log_id`: leadership confirmed by a quorum after the read
//! began); a follower asks the leader for it (`ReadIndex`), waits until it has applied
//! that far, and answers from its own state. `read_local` answers from local state.
//!
//! **Cluster start.** The lowest node id initializes the cluster (all nodes voters)
//! when its log and vote are empty; every other node waits to hear from a leader. A
//! restarted node never initializes again. A cluster whose lowest node never starts
//! with an empty data directory is never initialized.
//!
//! **Clock commands** (the lock service's expiry): while this node leads, every
//! `clock_interval` it proposes the application's clock command, if any.

use super::batch::Batcher;
use super::log_store::{LogCloser, LogStore};
use super::network::{CallError, NetworkFactory, RaftNet};
use super::state_machine::{self, StateMachineStore};
use super::types::{ForwardError, ForwardReply, Raft, ReadIndexReply, TypeConfig};
use super::{RaftConfig, RaftDetail, RaftStatus};
use crate::app::Application;
use crate::error::{Error, Result};
use crate::messages::raft::RaftRpc;
use crate::messages::{Envelope, NodeId, PeerMessage, RaftMessage, codec};
use crate::net::{Inbound, Transport};
use openraft::error::{InitializeError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{ServerState, SnapshotPolicy};
use serde::Serialize;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Worker threads of a node's openraft runtime.
pub const RUNTIME_WORKERS: usize = 2;

/// Entries per AppendEntries at most (fewer if they exceed the message budget).
pub const MAX_PAYLOAD_ENTRIES: u64 = 512;

/// What the tasks on the node's runtime share.
pub(super) struct Core<A: Application> {
    cfg: RaftConfig,
    raft: Raft,
    sm: Arc<state_machine::Shared<A>>,
    net: Arc<RaftNet>,
    log: LogCloser,
    /// Commands into entries at the leader ([`super::batch`]).
    batcher: Batcher,
    handle: tokio::runtime::Handle,
    stopping: Arc<AtomicBool>,
    /// The last log index this node held when it started: the floor of every read
    /// index it gives (see [`Core::read_index_here`]).
    startup_last_log: Option<u64>,
}

/// What only the node's handles hold: the runtime (so that dropping the last handle
/// shuts it down, never a task on it).
pub(super) struct Owner {
    id: NodeId,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    log: Mutex<Option<LogCloser>>,
    stopping: Arc<AtomicBool>,
    halted: Arc<AtomicBool>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(log) = self.log.lock().unwrap_or_else(PoisonError::into_inner).take() {
            log.close();
        }
        if let Some(rt) = self.runtime.lock().unwrap_or_else(PoisonError::into_inner).take() {
            // Not a plain drop: the last handle may be dropped inside an async context.
            rt.shutdown_background();
        }
        tracing::debug!(node = self.id, "raft node dropped");
    }
}

/// The openraft configuration for `cfg` (see the module docs for the clamping).
pub fn openraft_config(cfg: &RaftConfig) -> Result<openraft::Config> {
    let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let heartbeat = ms(cfg.heartbeat).max(1);
    let election_min = ms(cfg.election_min).max(heartbeat + 1);
    let election_max = ms(cfg.election_max).max(election_min + 1);
    let budget = cfg.max_message_bytes.max(64 << 10) as u64;
    let config = openraft::Config {
        cluster_name: "rolepax".into(),
        heartbeat_interval: heartbeat,
        election_timeout_min: election_min,
        election_timeout_max: election_max,
        install_snapshot_timeout: ms(cfg.request_timeout).max(1000),
        max_payload_entries: MAX_PAYLOAD_ENTRIES,
        snapshot_policy: match cfg.snapshot_every {
            0 => SnapshotPolicy::Never,
            n => SnapshotPolicy::LogsSinceLast(n),
        },
        // A chunk and its request's framing fit the message budget.
        snapshot_max_chunk_size: budget - budget / 8,
        // Keep one snapshot interval of log behind the snapshot, so that a follower a
        // little behind catches up by log rather than by a whole snapshot.
        max_in_snapshot_log_to_keep: cfg.snapshot_every.clamp(1, 100_000),
        replication_lag_threshold: cfg.snapshot_every.max(5000),
        ..openraft::Config::default()
    };
    config
        .validate()
        .map_err(|e| Error::Config(format!("node {}: raft timing: {e}", cfg.id)))
}

/// A running Raft node's handle (see [`super::RaftNode`], which wraps it).
pub(super) struct Parts<A: Application> {
    pub core: Arc<Core<A>>,
    pub owner: Arc<Owner>,
}

impl<A: Application> Clone for Parts<A> {
    fn clone(&self) -> Self {
        Parts {
            core: self.core.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl<A: Application + Default> Parts<A> {
    pub async fn start(cfg: RaftConfig, transport: Arc<dyn Transport>) -> Result<Parts<A>> {
        let id = cfg.id;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_WORKERS)
            .thread_name(format!("raft-{id}"))
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("node {id}: cannot start the raft runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let owner = Arc::new(Owner {
            id,
            runtime: Mutex::new(Some(runtime)),
            log: Mutex::new(None),
            stopping: stopping.clone(),
            halted: Arc::new(AtomicBool::new(false)),
        });
        let built = handle.spawn(Core::<A>::build(cfg, transport, handle.clone(), stopping));
        let core = built
            .await
            .map_err(|e| Error::Storage(format!("node {id}: the raft start task failed: {e}")))??;
        *owner.log.lock().unwrap_or_else(PoisonError::into_inner) = Some(core.log.clone());
        Ok(Parts { core, owner })
    }
}

impl<A: Application + Default> Core<A> {
    async fn build(
        cfg: RaftConfig,
        transport: Arc<dyn Transport>,
        handle: tokio::runtime::Handle,
        stopping: Arc<AtomicBool>,
    ) -> Result<Arc<Core<A>>> {
        let id = cfg.id;
        let config = Arc::new(openraft_config(&cfg)?);
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| Error::Storage(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
        let (log_store, recovered) = LogStore::open(&cfg.data_dir, id, cfg.bugs.raft_acks_before_durable())?;
        let log = log_store.closer();
        let opened = async {
            let sm_store = StateMachineStore::<A>::open(&cfg.data_dir, id)?;
            let sm = sm_store.shared();
            let backoff = Duration::from_millis(config.election_timeout_min.clamp(10, 500));
            let net = Arc::new(RaftNet::new(id, transport, cfg.max_message_bytes, backoff));
            let factory = NetworkFactory { net: net.clone() };
            let raft = Raft::new(id, config.clone(), factory, log_store, sm_store)
                .await
                .map_err(|e| Error::Storage(format!("node {id}: openraft did not start: {e}")))?;
            Ok::<_, Error>((sm, net, raft))
        };
        let (sm, net, raft) = match opened.await {
            Ok(parts) => parts,
            Err(e) => {
                let log = log.clone();
                let _ = tokio::task::spawn_blocking(move || log.close()).await;
                return Err(e);
            }
        };
        tracing::info!(
            node = id,
            vote = ?recovered.vote,
            last_log = ?recovered.last_log,
            purged = ?recovered.purged,
            entries = recovered.entries,
            heartbeat_ms = config.heartbeat_interval,
            election_ms = ?(config.election_timeout_min, config.election_timeout_max),
            "raft node started"
        );
        let batcher = Batcher::start(
            id,
            raft.clone(),
            log.acknowledged(),
            cfg.max_message_bytes / 4,
            cfg.request_timeout,
            &handle,
        );
        let core = Arc::new(Core {
            cfg,
            raft,
            sm,
            net,
            log,
            batcher,
            handle,
            stopping,
            startup_last_log: recovered.last_log.map(|l| l.index),
        });
        let lowest = core.cfg.nodes.iter().min().copied().unwrap_or(id);
        if lowest == id && recovered.vote.is_none() && recovered.last_log.is_none() {
            let members: BTreeSet<NodeId> = core.cfg.nodes.iter().copied().chain([id]).collect();
            match core.raft.initialize(members.clone()).await {
                Ok(()) => tracing::info!(node = id, ?members, "raft: cluster initialized"),
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::info!(node = id, reason = %e, "raft: already initialized")
                }
                Err(e) => return Err(Error::Storage(format!("node {id}: cannot initialize the cluster: {e}"))),
            }
        }
        Core::start_clock(&core);
        Ok(core)
    }
}

/// Encodes an answer; encoding our own types only fails on a bug, which is logged.
fn encode_answer<T: Serialize>(answer: &T) -> Option<Vec<u8>> {
    codec::encode(answer)
        .map_err(|e| tracing::error!(error = %e, "raft: cannot encode an answer"))
        .ok()
}

impl<A: Application> Core<A> {
    fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The leader this node knows of (none once its openraft core has failed: its
    /// metrics then stay as they were when it died).
    fn leader(&self) -> Option<NodeId> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.running_state.as_ref().ok().and(m.current_leader)
    }

    /// Why openraft's core stopped by itself (a storage error, or a panic on a
    /// violated invariant), if it did.
    fn failed(&self) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string())
    }

    fn leads(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.running_state.is_ok() && m.state == ServerState::Leader && m.current_leader == Some(self.id())
    }

    /// The leader, waiting for one to be known until `deadline`.
    /// Resolves once this node no longer follows `leader` (an election began, another
    /// node leads, or openraft stopped); never while it still does.
    async fn leader_left(&self, leader: NodeId) {
        let mut rx = self.raft.metrics();
        loop {
            {
                let m = rx.borrow_and_update();
                if m.running_state.is_err() || m.current_leader != Some(leader) {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    async fn wait_leader(&self, deadline: Instant) -> Result<NodeId> {
        let mut rx = self.raft.metrics();
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return Err(Error::Stopped);
            }
            {
                let m = rx.borrow_and_update();
                if let Err(e) = &m.running_state {
                    return Err(Error::Storage(format!("node {}: openraft stopped: {e}", self.id())));
                }
                if let Some(leader) = m.current_leader {
                    return Ok(leader);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "node {}: no leader known within {:?}; retry later",
                        self.id(),
                        self.cfg.request_timeout
                    )));
                }
            }
        }
    }

    /// Waits a little for the leadership to change (after a node said it does not lead).
    async fn pause(&self, deadline: Instant) -> Result<()> {
        let mut rx = self.raft.metrics();
        rx.borrow_and_update();
        let until = (Instant::now() + Duration::from_millis(20)).min(deadline);
        let _ = tokio::time::timeout_at(until, rx.changed()).await;
        if Instant::now() >= deadline {
            return Err(Error::Unavailable(format!(
                "node {}: no leader served the request within {:?}",
                self.id(),
                self.cfg.request_timeout
            )));
        }
        Ok(())
    }

    /// Proposes `command` here (this node leads), in the next batch: the reply, or an
    /// unknown outcome.
    async fn write_here(&self, command: Vec<u8>, deadline: Instant) -> Result<Vec<u8>> {
        self.batcher.write(self.id(), command, deadline).await
    }

    /// Replicates an encoded command, here or at the leader, and answers its reply.
    async fn submit_encoded(&self, command: Vec<u8>) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        loop {
            let leader = self.wait_leader(deadline).await?;
            if leader == self.id() {
                if self.leads() {
                    return self.write_here(command, deadline).await;
                }
                self.pause(deadline).await?;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // A leader that dies answers nothing: stop waiting once this node follows
            // another (or none), instead of for the whole request timeout. The outcome
            // is unknown either way (the old leader may have committed it).
            let answer = tokio::select! {
                answer = self.net.call(leader, RaftRpc::Forward, command.clone(), left) => answer,
                () = self.leader_left(leader) => {
                    return Err(Error::Unavailable(format!(
                        "node {}: node {leader}, to which the command was forwarded, no longer leads; its \
                         outcome is unknown",
                        self.id()
                    )));
                }
            };
            let unknown = |why: String| {
                Error::Unavailable(format!(
                    "node {}: the command forwarded to node {leader} {why}; its outcome is unknown",
                    self.id()
                ))
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(CallError::Timeout) => return Err(unknown(format!("got no answer within {:?}", left))),
                Err(CallError::Closed) => return Err(Error::Stopped),
            };
            match codec::decode::<ForwardReply>(&answer) {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(ForwardError::NotLeader { .. })) => self.pause(deadline).await?,
                Ok(Err(ForwardError::Unknown(why))) => return Err(unknown(why)),
                Ok(Err(ForwardError::Invalid(why))) => return Err(Error::InvalidInput(why)),
                Err(e) => return Err(unknown(format!("got an answer that does not decode ({e})"))),
            }
        }
    }

    /// The read index a linearizable read must see applied, from the leader.
    async fn read_index(&self, deadline: Instant) -> Result<Option<u64>> {
        loop {
            let leader = self.wait_leader(deadline).await?;
            if leader == self.id() {
                match self.read_index_here(deadline).await {
                    Ok(index) => return Ok(index),
                    Err(ForwardError::NotLeader { .. }) => self.pause(deadline).await?,
                    Err(ForwardError::Unknown(why) | ForwardError::Invalid(why)) => {
                        return Err(Error::Unavailable(why));
                    }
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // A read has no effect: if the leader asked goes away, ask the next one.
            let call = tokio::select! {
                call = self.net.call(leader, RaftRpc::ReadIndex, Vec::new(), left) => call,
                () = self.leader_left(leader) => continue,
            };
            let answer = match call {
                Ok(answer) => answer,
                Err(CallError::Timeout) => {
                    return Err(Error::Unavailable(format!(
                        "node {}: the leader {leader} gave no read index within {left:?}",
                        self.id()
                    )));
                }
                Err(CallError::Closed) => return Err(Error::Stopped),
            };
            match codec::decode::<ReadIndexReply>(&answer) {
                Ok(Ok(index)) => return Ok(index),
                Ok(Err(ForwardError::NotLeader { .. })) => self.pause(deadline).await?,
                Ok(Err(ForwardError::Unknown(why) | ForwardError::Invalid(why))) => {
                    return Err(Error::Unavailable(why));
                }
                Err(e) => {
                    return Err(Error::Unavailable(format!(
                        "node {}: the read index from node {leader} does not decode: {e}",
                        self.id()
                    )));
                }
            }
        }
    }

    /// The read index at this node, if it leads.
    async fn read_index_here(&self, deadline: Instant) -> Result<Option<u64>, ForwardError> {
        if !self.leads() {
            return Err(ForwardError::NotLeader { leader: self.leader() });
        }
        match tokio::time::timeout_at(deadline, self.raft.get_read_log_id()).await {
            // openraft 0.9.25 gives max(its committed index, the first entry of the
            // leader's term). A leader restarted with its vote keeps leading without an
            // election, and the term's first entry is then long committed while the
            // committed index it recovered may lag behind entries it had committed and
            // acknowledged before the restart: a read could miss them. Every such entry
            // is in this leader's log at start, so the start's last index is a floor;
            // capped by the log's end now (a tail truncated since was never committed),
            // so that an idle cluster's reads never wait for entries that may not come.
            Ok(Ok((read_log_id, _applied))) => {
                let log_end = self.raft.metrics().borrow().last_log_index;
                let floor = self.startup_last_log.min(log_end);
                Ok(read_log_id.map(|l| l.index).max(floor))
            }
            Ok(Err(RaftError::APIError(e))) => {
                let leader = self.leader().filter(|l| *l != self.id());
                tracing::debug!(node = self.id(), error = %e, "raft: read index refused");
                Err(ForwardError::NotLeader { leader })
            }
            Ok(Err(RaftError::Fatal(e))) => Err(ForwardError::Unknown(format!("node {}: {e}", self.id()))),
            Err(_) => Err(ForwardError::Unknown(format!(
                "node {}: leadership not confirmed by a quorum within {:?}",
                self.id(),
                self.cfg.request_timeout
            ))),
        }
    }

    /// A linearizable read of a read-only command.
    async fn read_linearizable(&self, command: A::Command) -> Result<A::Reply> {
        let deadline = Instant::now() + self.cfg.request_timeout;
        let index = self.read_index(deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(left))
            .applied_index_at_least(index, "linearizable read")
            .await
            .map_err(|e| {
                Error::Unavailable(format!(
                    "node {}: did not apply up to the read index {index:?} in time: {e}",
                    self.id()
                ))
            })?;
        let applied = self.sm.lock();
        applied
            .app
            .read(&command)
            .ok_or_else(|| Error::InvalidInput("not a read-only command".into()))
    }

    /// Serves a forwarded command at this node (the leader, the sender believes).
    async fn serve_forward(&self, command: Vec<u8>) -> ForwardReply {
        if let Err(e) = codec::decode::<A::Command>(&command) {
            return Err(ForwardError::Invalid(format!(
                "the forwarded command does not decode: {e}"
            )));
        }
        if !self.leads() {
            return Err(ForwardError::NotLeader { leader: self.leader() });
        }
        let deadline = Instant::now() + self.cfg.request_timeout;
        self.write_here(command, deadline).await.map_err(|e| match e {
            Error::InvalidInput(why) => ForwardError::Invalid(why),
            other => ForwardError::Unknown(other.to_string()),
        })
    }

    /// Serves one peer request and sends the answer back.
    async fn serve(self: Arc<Self>, from: NodeId, id: u64, rpc: RaftRpc, payload: Vec<u8>) {
        self.net.note_request(rpc);
        let malformed = |e: bincode::error::DecodeError| {
            tracing::warn!(node = self.id(), from, ?rpc, error = %e, "raft: malformed request dropped");
        };
        let answer = match rpc {
            RaftRpc::AppendEntries => match codec::decode::<AppendEntriesRequest<TypeConfig>>(&payload) {
                Ok(request) => encode_answer(&self.raft.append_entries(request).await),
                Err(e) => {
                    malformed(e);
                    None
                }
            },
            RaftRpc::Vote => match codec::decode::<VoteRequest<NodeId>>(&payload) {
                Ok(request) => encode_answer(&self.raft.vote(request).await),
                Err(e) => {
                    malformed(e);
                    None
                }
            },
            RaftRpc::InstallSnapshot => match codec::decode::<InstallSnapshotRequest<TypeConfig>>(&payload) {
                Ok(request) => encode_answer(&self.raft.install_snapshot(request).await),
                Err(e) => {
                    malformed(e);
                    None
                }
            },
            RaftRpc::Forward => encode_answer(&self.serve_forward(payload).await),
            RaftRpc::ReadIndex => {
                let deadline = Instant::now() + self.cfg.request_timeout;
                encode_answer::<ReadIndexReply>(&self.read_index_here(deadline).await)
            }
        };
        if let Some(answer) = answer
            && !self.stopping.load(Ordering::Acquire)
        {
            self.net.respond(from, id, rpc, answer);
        }
    }

    /// While this node leads, proposes the application's clock command every interval.
    fn start_clock(core: &Arc<Core<A>>) {
        let weak = Arc::downgrade(core);
        let interval = core.cfg.clock_interval.max(Duration::from_millis(1));
        core.handle.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(core) = weak.upgrade() else { return };
                if core.stopping.load(Ordering::Acquire) {
                    return;
                }
                if !core.leads() {
                    continue;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.saturating_sub(core.cfg.clock_margin).as_millis() as u64)
                    .unwrap_or(0);
                let command = core.sm.lock().app.clock_command(now);
                let Some(command) = command else { continue };
                let encoded = match codec::encode(&command) {
                    Ok(encoded) => encoded,
                    Err(e) => {
                        tracing::error!(node = core.id(), error = %e, "raft: cannot encode a clock command");
                        continue;
                    }
                };
                let deadline = Instant::now() + core.cfg.request_timeout;
                if let Err(e) = core.write_here(encoded, deadline).await {
                    tracing::debug!(node = core.id(), error = %e, "raft: clock command not committed");
                }
            }
        });
    }
}

impl<A: Application> Parts<A> {
    pub fn id(&self) -> NodeId {
        self.core.id()
    }

    fn serving(&self) -> Result<()> {
        if self.owner.stopping.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        Ok(())
    }

    /// Runs `work` on the node's runtime and waits for it from the caller's.
    async fn on_runtime<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        self.serving()?;
        self.core.handle.spawn(work).await.map_err(|_| Error::Stopped)?
    }

    pub fn inbound(&self) -> Inbound {
        let weak: Weak<Core<A>> = Arc::downgrade(&self.core);
        let handle = self.core.handle.clone();
        let stopping = self.core.stopping.clone();
        Arc::new(move |envelope: Envelope| {
            if stopping.load(Ordering::Acquire) {
                return;
            }
            let Some(core) = weak.upgrade() else { return };
            match envelope.msg {
                PeerMessage::Raft(RaftMessage::Response { id, payload }) => {
                    core.net.complete(envelope.from, id, payload)
                }
                PeerMessage::Raft(RaftMessage::Request { id, rpc, payload }) => {
                    drop(handle.spawn(core.serve(envelope.from, id, rpc, payload)));
                }
                other => {
                    tracing::debug!(
                        node = core.id(),
                        from = envelope.from,
                        role = other.role(),
                        "raft: a Paxos message dropped"
                    )
                }
            }
        })
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.core.leader()
    }

    pub fn failed(&self) -> Option<String> {
        self.core.failed()
    }

    pub fn term(&self) -> u64 {
        self.core.raft.metrics().borrow().current_term
    }

    pub async fn submit(&self, command: A::Command) -> Result<A::Reply> {
        let encoded =
            codec::encode(&command).map_err(|e| Error::InvalidInput(format!("cannot encode the command: {e}")))?;
        if encoded.len() > self.core.net.max_message_bytes() {
            return Err(Error::InvalidInput(format!(
                "the command takes {} bytes, more than a message may carry ({})",
                encoded.len(),
                self.core.net.max_message_bytes()
            )));
        }
        let core = self.core.clone();
        let reply = self
            .on_runtime(async move { core.submit_encoded(encoded).await })
            .await?;
        codec::decode(&reply).map_err(|e| Error::Protocol(format!("the reply does not decode: {e}")))
    }

    pub async fn read(&self, command: A::Command) -> Result<A::Reply> {
        self.serving()?;
        let read_only = self.core.sm.lock().app.read(&command).is_some();
        if !read_only {
            return self.submit(command).await;
        }
        let core = self.core.clone();
        self.on_runtime(async move { core.read_linearizable(command).await })
            .await
    }

    pub async fn read_local(&self, command: A::Command) -> Result<A::Reply> {
        self.serving()?;
        self.core
            .sm
            .lock()
            .app
            .read(&command)
            .ok_or_else(|| Error::InvalidInput("not a read-only command".into()))
    }

    pub fn status(&self) -> RaftStatus {
        let metrics = self.core.raft.metrics().borrow().clone();
        let membership: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        RaftStatus {
            node_id: self.id(),
            leader_id: self.core.leader(),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            committed: self.core.log.committed().map(|l| l.index),
            applied: metrics.last_applied.map_or(0, |l| l.index),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            detail: Box::new(RaftDetail {
                state: match &metrics.running_state {
                    Ok(()) => format!("{:?}", metrics.state),
                    Err(e) => format!("Failed: {e}"),
                },
                purged_index: metrics.purged.map(|l| l.index),
                millis_since_quorum_ack: metrics.millis_since_quorum_ack,
                membership,
                messages: self.core.net.counts(),
                fsyncs: crate::storage::wal::fsyncs_total(),
                pending_calls: self.core.net.pending_calls(),
                halted: self.is_halted(),
            }),
        }
    }

    /// Stops openraft, then the log writer, then the runtime, on a thread of its own.
    pub fn halt(&self) {
        if self.owner.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let (core, owner) = (self.core.clone(), self.owner.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("raft-halt-{}", self.id()))
            .spawn(move || halt_now(core, owner));
        if let Err(e) = spawned {
            tracing::error!(node = self.id(), error = %e, "raft: cannot start the halt thread");
        }
    }

    pub fn is_halted(&self) -> bool {
        self.owner.halted.load(Ordering::Acquire)
    }
}

fn halt_now<A: Application>(core: Arc<Core<A>>, owner: Arc<Owner>) {
    let id = core.id();
    let raft = core.raft.clone();
    let handle = core.handle.clone();
    let stopped = handle.block_on(async move { tokio::time::timeout(Duration::from_secs(5), raft.shutdown()).await });
    if !matches!(stopped, Ok(Ok(()))) {
        tracing::warn!(node = id, "raft: openraft did not shut down cleanly");
    }
    if let Some(log) = owner.log.lock().unwrap_or_else(PoisonError::into_inner).take() {
        log.close();
    }
    drop(core);
    let runtime = owner.runtime.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(runtime) = runtime {
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
    owner.halted.store(true, Ordering::Release);
    tracing::info!(node = id, "raft node halted");
}
