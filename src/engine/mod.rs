//! # The engine a node runs, seen from its front
//!
//! A node replicates its application with one of two engines: the Paxos roles
//! ([`crate::actors::node`], the project itself) or Raft ([`crate::raft`], openraft,
//! for the side-by-side comparison). [`Replica`] is the one door the HTTP front and the
//! lock client use, whichever runs: submit a command, read linearizably or locally, who
//! leads, what term, the node's status. Only the Paxos engine changes membership; the
//! Raft engine runs the configuration file's nodes, fixed, and its membership view is
//! that configuration.
//!
//! [`lock_client`] is the lock service as a client sees it through a `Replica`
//! (blocking acquire with a FIFO wait, try-lock with a timeout), for either engine.

pub mod lock_client;

use crate::actors::node::{MembershipView, NodeHandle, NodeStatus};
use crate::app::service::{Service, ServiceCommand, ServiceReply};
use crate::config::Engine;
use crate::error::Result;
use crate::messages::{Configuration, Member, NodeId};
use crate::raft::{RaftNode, RaftStatus};
use serde::Serialize;
use std::collections::BTreeMap;

/// A running node of either engine.
#[derive(Clone)]
pub enum Replica {
    Paxos(NodeHandle<Service>),
    Raft {
        node: RaftNode<Service>,
        /// The configuration file's nodes (fixed for the Raft engine).
        view: MembershipView,
    },
}

/// The node's state as `/status` shows it, per engine.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum EngineStatus {
    Paxos(Box<NodeStatus>),
    Raft(RaftStatus),
}

impl EngineStatus {
    pub fn node_id(&self) -> NodeId {
        match self {
            EngineStatus::Paxos(s) => s.node_id,
            EngineStatus::Raft(s) => s.node_id,
        }
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        match self {
            EngineStatus::Paxos(s) => s.leader_id,
            EngineStatus::Raft(s) => s.leader_id,
        }
    }

    /// This node leads (the Paxos engine: its elector says so and its proposer took
    /// over; Raft: it is the leader of the current term).
    pub fn is_leader(&self) -> bool {
        match self {
            EngineStatus::Paxos(s) => s.leader_id == Some(s.node_id) && s.proposer.leading,
            EngineStatus::Raft(s) => s.leader_id == Some(s.node_id),
        }
    }

    /// `leader`, `follower`, `candidate`... as each engine names it.
    pub fn role(&self) -> String {
        match self {
            EngineStatus::Paxos(s) => s.elector.role.to_string(),
            EngineStatus::Raft(s) if s.leader_id == Some(s.node_id) => "leader".into(),
            EngineStatus::Raft(s) if s.leader_id.is_some() => "follower".into(),
            EngineStatus::Raft(_) => "candidate".into(),
        }
    }
}

impl Replica {
    /// A Raft node serving the configuration file's `members` in cluster `cluster`.
    pub fn raft(node: RaftNode<Service>, cluster: &str, members: BTreeMap<NodeId, Member>) -> Self {
        let view = MembershipView {
            cluster: cluster.to_string(),
            config: Some(Configuration::initial(members)),
            ..MembershipView::default()
        };
        Replica::Raft { node, view }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Replica::Paxos(_) => Engine::Paxos,
            Replica::Raft { .. } => Engine::Raft,
        }
    }

    /// The Paxos node, for what only it does (membership change, joining).
    pub fn paxos(&self) -> Option<&NodeHandle<Service>> {
        match self {
            Replica::Paxos(node) => Some(node),
            Replica::Raft { .. } => None,
        }
    }

    pub fn id(&self) -> NodeId {
        match self {
            Replica::Paxos(node) => node.id(),
            Replica::Raft { node, .. } => node.id(),
        }
    }

    /// The leader this node believes in.
    pub fn leader(&self) -> Option<NodeId> {
        match self {
            Replica::Paxos(node) => node.leader(),
            Replica::Raft { node, .. } => node.leader(),
        }
    }

    /// etcd's `raft_term`: the round of the highest ballot known here, or Raft's term.
    pub fn term(&self) -> u64 {
        match self {
            Replica::Paxos(node) => node.ballot().round,
            Replica::Raft { node, .. } => node.term(),
        }
    }

    pub fn membership(&self) -> MembershipView {
        match self {
            Replica::Paxos(node) => node.membership(),
            Replica::Raft { view, .. } => view.clone(),
        }
    }

    /// Refuses client requests on a node that is not a member (Paxos: removed or
    /// joining; a Raft node always serves).
    pub fn serving(&self) -> Result<()> {
        match self {
            Replica::Paxos(node) => node.serving(),
            Replica::Raft { .. } => Ok(()),
        }
    }

    /// Replicates `command` and answers what applying it replied.
    pub async fn submit(&self, command: ServiceCommand) -> Result<ServiceReply> {
        match self {
            Replica::Paxos(node) => node.submit(command).await,
            Replica::Raft { node, .. } => node.submit(command).await,
        }
    }

    /// A linearizable read that does not write the log.
    pub async fn read(&self, command: ServiceCommand) -> Result<ServiceReply> {
        match self {
            Replica::Paxos(node) => node.read(command).await,
            Replica::Raft { node, .. } => node.read(command).await,
        }
    }

    /// A read of this node's own state (possibly stale).
    pub async fn read_local(&self, command: ServiceCommand) -> Result<ServiceReply> {
        match self {
            Replica::Paxos(node) => node.read_local(command).await,
            Replica::Raft { node, .. } => node.read_local(command).await,
        }
    }

    pub async fn status(&self) -> Result<EngineStatus> {
        match self {
            Replica::Paxos(node) => Ok(EngineStatus::Paxos(Box::new(node.status().await?))),
            Replica::Raft { node, .. } => Ok(EngineStatus::Raft(node.status().await?)),
        }
    }

    pub fn halt(&self) {
        match self {
            Replica::Paxos(node) => node.halt(),
            Replica::Raft { node, .. } => node.halt(),
        }
    }

    pub fn is_halted(&self) -> bool {
        match self {
            Replica::Paxos(node) => node.is_halted(),
            Replica::Raft { node, .. } => node.is_halted(),
        }
    }
}

impl From<NodeHandle<Service>> for Replica {
    fn from(node: NodeHandle<Service>) -> Self {
        Replica::Paxos(node)
    }
}
