//! The Raft engine's types: openraft's type configuration and the glue's own wire and
//! disk payloads.
//!
//! openraft is generic over a [`openraft::RaftTypeConfig`]; [`TypeConfig`] is ours. It
//! is *not* generic over the application: a log entry carries a batch of the
//! application's commands already encoded ([`CommandBatch`] of [`EncodedCommand`]s, see
//! [`super::batch`] for why an entry holds several), and applying it answers each
//! command's reply encoded, in the same order ([`ApplyReplies`] of [`ApplyReply`]s). Only the state machine ([`super::state_machine`]) and the node's
//! door ([`super::node`]) know the application's types; the log store and the network
//! move bytes. Nodes carry no address (`EmptyNode`): the transport knows where each
//! node id lives.
//!
//! Also here: what a follower and the leader say to each other beyond openraft's own
//! RPCs (a forwarded command and its answer, a read index), as the payloads of
//! [`crate::messages::RaftMessage`].

use crate::messages::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

openraft::declare_raft_types!(
    /// openraft's type configuration for rolepax's Raft engine.
    pub TypeConfig:
        D = CommandBatch,
        R = ApplyReplies,
        NodeId = u64,
        Node = openraft::EmptyNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One log entry of this engine.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log position with the term (leader id) that wrote it.
pub type LogId = openraft::LogId<NodeId>;
/// A node's vote (term, candidate, committed flag).
pub type Vote = openraft::Vote<NodeId>;
/// The membership as the log or a snapshot records it.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::EmptyNode>;
/// What a snapshot covers.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::EmptyNode>;
/// openraft's storage error, for this engine.
pub type StorageError = openraft::StorageError<NodeId>;
/// openraft's instance, for this engine.
pub type Raft = openraft::Raft<TypeConfig>;

/// An application command as the log carries it (encoded by the node that took it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedCommand(#[serde(with = "crate::messages::codec::bytes")] pub Vec<u8>);

/// The commands of one log entry, applied in this order (never empty when the node's
/// door proposes it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBatch(pub Vec<EncodedCommand>);

impl fmt::Debug for CommandBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandBatch({} commands)", self.0.len())
    }
}

impl fmt::Display for CommandBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} commands", self.0.len())
    }
}

impl fmt::Debug for EncodedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedCommand({} bytes)", self.0.len())
    }
}

impl fmt::Display for EncodedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command of {} bytes", self.0.len())
    }
}

/// What applying one entry answered: one reply per command of its batch, in order (none
/// for a blank or membership entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReplies(pub Vec<ApplyReply>);

/// What applying one command answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyReply {
    /// The application's reply, encoded.
    Reply(#[serde(with = "crate::messages::codec::bytes")] Vec<u8>),
    /// The command did not decode as the application's (every replica skips it alike).
    Rejected(String),
}

/// Why a forwarded command or a read-index request was not served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardError {
    /// The asked node does not lead (it knows of `leader`, if any). Nothing was
    /// proposed: the asker may try the leader.
    NotLeader { leader: Option<NodeId> },
    /// The command may or may not have been proposed (leadership changed while it was
    /// in flight, or the leader stopped): it must not be sent again.
    Unknown(String),
    /// The command or request is malformed: retrying cannot help.
    Invalid(String),
}

/// The answer to a forwarded command: the application's reply, encoded.
pub type ForwardReply = Result<Vec<u8>, ForwardError>;

/// The answer to a read-index request: the log index a linearizable read must see
/// applied (`None`: nothing was ever committed).
pub type ReadIndexReply = Result<Option<u64>, ForwardError>;
