//! What the Raft engine (`--engine raft`, [`crate::raft`]) sends between nodes, over
//! the same transports as the Paxos roles' messages.
//!
//! Raft has one request/response pair per RPC of its paper (AppendEntries, RequestVote,
//! InstallSnapshot) plus the project's own client forwarding. The payloads are the
//! engine's own types (openraft's requests and responses, bincode-encoded by
//! [`crate::raft`]): this module keeps the wire enum free of the library's types, so
//! the transport and the Paxos messages do not depend on it.

use serde::{Deserialize, Serialize};

/// Which RPC a [`RaftMessage::Request`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRpc {
    /// Raft's AppendEntries (also the heartbeat).
    AppendEntries,
    /// Raft's RequestVote.
    Vote,
    /// Raft's InstallSnapshot, one chunk.
    InstallSnapshot,
    /// A client command a follower forwards to the node it believes leads.
    Forward,
    /// A follower asks the leader for a read index (a linearizable read at a follower).
    ReadIndex,
}

/// A request or its response, matched by `id` (unique per sending node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftMessage {
    Request {
        id: u64,
        rpc: RaftRpc,
        #[serde(with = "crate::messages::codec::bytes")]
        payload: Vec<u8>,
    },
    Response {
        id: u64,
        #[serde(with = "crate::messages::codec::bytes")]
        payload: Vec<u8>,
    },
}
