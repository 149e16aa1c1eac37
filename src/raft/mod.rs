//! # The Raft engine: the same applications on openraft, for the comparison
//!
//! (Interface fixed on main; the body is being written. Every method below keeps its
//! signature.)
//!
//! `rolepax-node --engine raft` runs the very same [`Application`] (the key-value store
//! and the lock service, [`crate::app::service::Service`]) behind the very same HTTP
//! front, replicated by openraft 0.9 instead of the Paxos roles: openraft's log storage
//! sits on the project's own WAL ([`crate::storage::wal`]: fdatasync, group commit),
//! its messages travel over the project's transports as [`crate::messages::RaftMessage`]s,
//! and its state machine drives the application through the [`Application`] trait.

use crate::app::Application;
use crate::error::{Error, Result};
use crate::messages::NodeId;
use crate::net::{Inbound, Transport};
use crate::roles::bugs::PlantedBugs;
use serde::Serialize;
use std::marker::PhantomData;
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
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: u64,
    pub snapshot_index: Option<u64>,
}

/// A running Raft node: the door for clients, as [`crate::actors::node::NodeHandle`] is
/// for a Paxos node.
pub struct RaftNode<A: Application> {
    id: NodeId,
    _app: PhantomData<fn() -> A>,
}

impl<A: Application> Clone for RaftNode<A> {
    fn clone(&self) -> Self {
        RaftNode {
            id: self.id,
            _app: PhantomData,
        }
    }
}

impl<A: Application + Default> RaftNode<A> {
    /// Opens the node's storage and starts openraft; messages leave through `transport`.
    /// The caller hands [`RaftNode::inbound`] to the transport.
    pub async fn start(cfg: RaftConfig, _transport: Arc<dyn Transport>) -> Result<Self> {
        Err(Error::Config(format!(
            "node {}: the Raft engine is not built yet",
            cfg.id
        )))
    }
}

impl<A: Application> RaftNode<A> {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the transport hands this node's messages.
    pub fn inbound(&self) -> Inbound {
        Arc::new(|_| {})
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        None
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        0
    }

    /// Replicates `command` and answers what applying it replied (forwarded to the
    /// leader if this node does not lead). Applied at most once.
    pub async fn submit(&self, _command: A::Command) -> Result<A::Reply> {
        Err(Error::Unavailable("the Raft engine is not built yet".into()))
    }

    /// A linearizable read (read index at the leader), without writing the log.
    pub async fn read(&self, _command: A::Command) -> Result<A::Reply> {
        Err(Error::Unavailable("the Raft engine is not built yet".into()))
    }

    /// A read of this node's own state (possibly stale).
    pub async fn read_local(&self, _command: A::Command) -> Result<A::Reply> {
        Err(Error::Unavailable("the Raft engine is not built yet".into()))
    }

    pub async fn status(&self) -> Result<RaftStatus> {
        Ok(RaftStatus {
            node_id: self.id,
            ..RaftStatus::default()
        })
    }

    /// Stops the node (openraft shut down, storage closed).
    pub fn halt(&self) {}

    pub fn is_halted(&self) -> bool {
        true
    }
}
