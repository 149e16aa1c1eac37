//! # The Raft engine: the same applications on openraft, for the comparison
//!
//! `rolepax-node --engine raft` runs the very same [`Application`] (the key-value store
//! and the lock service, [`crate::app::service::Service`]) behind the very same HTTP
//! front, replicated by openraft 0.9 instead of the Paxos roles: openraft's log storage
//! sits on the project's own WAL ([`crate::storage::wal`]: fdatasync, group commit),
//! its messages travel over the project's transports as [`crate::messages::RaftMessage`]s,
//! and its state machine drives the application through the [`Application`] trait.
//!
//! ## What openraft does, and what the glue does
//!
//! openraft (0.9.25, `storage-v2`) is the whole protocol: election (RequestVote with
//! randomized timeouts, terms as "leader ids"), replication (one task per follower
//! sending AppendEntries, pipelined), commit (the leader's quorum of flushed logs), the
//! apply loop, snapshots (when to build, sending them in chunks, installing) and log
//! compaction. It asks its user for four things, and this module provides them:
//!
//! | openraft trait | file | on what |
//! |---|---|---|
//! | `RaftLogStorage`, `RaftLogReader` | [`log_store`] | the project's WAL, `raft.wal`: vote, entries, truncations, purges; a writer thread syncs groups |
//! | `RaftStateMachine`, `RaftSnapshotBuilder` | [`state_machine`] | any [`Application`]; snapshots in `raft.snapshot` |
//! | `RaftNetworkFactory`, `RaftNetwork` | [`network`] | any [`Transport`] (memory, TCP), request/response matched by id |
//! | type configuration | [`types`] | commands and replies as bytes; nodes without addresses |
//!
//! and [`node`] starts it all and is the clients' door: forwarding commands to the
//! leader, linearizable reads by read index, the lock service's clock commands, status;
//! at the leader, [`batch`] gathers the commands that arrive while an entry is being
//! synced into the next entry (openraft 0.9 syncs its entries one at a time).
//!
//! ## How the roles map
//!
//! | Paxos engine (src/roles) | Raft engine |
//! |---|---|
//! | Elector (heartbeats, pre-vote, leader lease of sorts) | openraft's election: vote requests, randomized timeout |
//! | Proposer phase 1 (Prepare/Promise, adopting values) | a Raft candidate's vote: no values to adopt, the most up-to-date log wins |
//! | Proposer phase 2 + Acceptor (Accept/Accepted, durable) | AppendEntries + the follower's log store (durable before it answers) |
//! | Learner (decided log, catch-up by Fetch) | commit index in AppendEntries; catch-up is the leader's replication task |
//! | StateMachine (apply in slot order, snapshots) | [`state_machine`] (apply in log order, snapshots) |
//! | ReadIndex at the proposer | `get_read_log_id` at the leader, `ReadIndex` RPC from a follower |
//!
//! Raft merges what Paxos separates: the log a follower accepts *is* its decided
//! log, and only the leader's log can win, so there is no recovery of values from a
//! quorum after an election, and no separate learner.
//!
//! ## Left out
//!
//! Membership changes (the cluster is the fixed `nodes` list; openraft can change it,
//! the HTTP front does not ask), client deduplication across retries (a command is
//! proposed at most once by the node a client asked; an unknown outcome is reported,
//! not retried), pre-vote (openraft 0.9 has none), and reading entries back from disk
//! (the log stays in memory until a snapshot purges it).

pub mod batch;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod types;

use crate::app::Application;
use crate::error::Result;
use crate::messages::NodeId;
use crate::net::{Inbound, Transport};
use crate::roles::bugs::PlantedBugs;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything a Raft node needs to start (the Raft counterpart of
/// [`crate::actors::node::NodeConfig`]).
#[derive(Clone, Debug)]
pub struct RaftConfig {
    pub id: NodeId,
    /// Every node of the cluster, this one included (fixed: no membership change).
    pub nodes: Vec<NodeId>,
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// A client request fails with `Unavailable` after this long without an answer.
    pub request_timeout: Duration,
    /// Build a snapshot (and purge the log below it) after this many entries (0: never).
    pub snapshot_every: u64,
    /// How often the leader asks the application for a clock command (lock expiry).
    pub clock_interval: Duration,
    /// Subtracted from the leader's clock in clock commands (see `NodeConfig`).
    pub clock_margin: Duration,
    /// Largest payload of one message (entries per AppendEntries, snapshot chunks).
    pub max_message_bytes: usize,
    /// Test-only planted bugs; all off by default.
    pub bugs: PlantedBugs,
}

/// The Raft node's state, for `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RaftStatus {
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    /// The last index in this node's log.
    pub last_log_index: Option<u64>,
    /// The last index this node knows committed (from its log store's commit mark).
    pub committed: Option<u64>,
    /// The last index applied to the state machine (0 before any).
    pub applied: u64,
    /// The last index the latest snapshot covers.
    pub snapshot_index: Option<u64>,
    /// The rest, boxed so the status stays small to move around (shown inline).
    #[serde(flatten)]
    pub detail: Box<RaftDetail>,
}

/// The parts of [`RaftStatus`] beyond the positions in the log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RaftDetail {
    /// openraft's server state: Leader, Follower, Candidate or Learner (or `Failed: why`
    /// once openraft stopped by itself).
    pub state: String,
    /// The log is purged up to here (in a snapshot).
    pub purged_index: Option<u64>,
    /// At the leader: how long ago a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// The voters of the membership in force.
    pub membership: Vec<NodeId>,
    /// Raft messages so far, per RPC kind.
    pub messages: std::collections::BTreeMap<String, network::MessageCounts>,
    /// `fdatasync`s of every log of this process ([`crate::storage::wal::fsyncs_total`]).
    pub fsyncs: u64,
    /// Calls waiting for an answer (a leak shows here).
    pub pending_calls: usize,
    pub halted: bool,
}

/// A running Raft node: the door for clients, as [`crate::actors::node::NodeHandle`] is
/// for a Paxos node.
pub struct RaftNode<A: Application> {
    id: NodeId,
    parts: node::Parts<A>,
}

impl<A: Application> Clone for RaftNode<A> {
    fn clone(&self) -> Self {
        RaftNode {
            id: self.id,
            parts: self.parts.clone(),
        }
    }
}

impl<A: Application + Default> RaftNode<A> {
    /// Opens the node's storage and starts openraft; messages leave through `transport`.
    /// The caller hands [`RaftNode::inbound`] to the transport.
    pub async fn start(cfg: RaftConfig, transport: Arc<dyn Transport>) -> Result<Self> {
        let id = cfg.id;
        let parts = node::Parts::start(cfg, transport).await?;
        Ok(RaftNode { id, parts })
    }
}

impl<A: Application> RaftNode<A> {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the transport hands this node's messages.
    pub fn inbound(&self) -> Inbound {
        self.parts.inbound()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.parts.leader()
    }

    /// Why openraft stopped by itself, if it did (a storage error, or a panic on an
    /// invariant it checks, such as a follower's log going back past what it
    /// acknowledged). Such a node serves nothing; its process should exit and be
    /// restarted.
    pub fn failed(&self) -> Option<String> {
        self.parts.failed()
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.parts.term()
    }

    /// Replicates `command` and answers what applying it replied (forwarded to the
    /// leader if this node does not lead). Applied at most once.
    pub async fn submit(&self, command: A::Command) -> Result<A::Reply> {
        self.parts.submit(command).await
    }

    /// A linearizable read (read index at the leader), without writing the log.
    pub async fn read(&self, command: A::Command) -> Result<A::Reply> {
        self.parts.read(command).await
    }

    /// A read of this node's own state (possibly stale).
    pub async fn read_local(&self, command: A::Command) -> Result<A::Reply> {
        self.parts.read_local(command).await
    }

    pub async fn status(&self) -> Result<RaftStatus> {
        Ok(self.parts.status())
    }

    /// Stops the node (openraft shut down, storage closed). Returns at once; the node
    /// is stopped when [`RaftNode::is_halted`] says so.
    pub fn halt(&self) {
        self.parts.halt()
    }

    pub fn is_halted(&self) -> bool {
        self.parts.is_halted()
    }
}
