//! Transports: how one node's role messages reach another node.
//!
//! A transport only moves [`Envelope`]s. It may drop, delay, duplicate or reorder them,
//! since Paxos tolerates all of that; it must never alter one. Outbound, a node calls
//! [`Transport::send`]; inbound, the transport hands each envelope to the node's
//! [`Inbound`] callback, which puts it in the right role's mailbox.
//!
//! - [`memory`]: an in-process network for tests and `Cluster`, with fault injection.
//! - [`tcp`]: the network between processes: length-delimited bincode frames over TCP,
//!   a handshake, one actor per peer connection, bounded queues, reconnect with backoff.

pub mod memory;
pub mod tcp;

use crate::messages::{Configuration, Envelope};
use std::sync::Arc;

/// Delivers envelopes to other nodes, best effort.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, envelope: Envelope);

    /// The node now talks to `config`'s members (a configuration was applied, or a
    /// joining node learned the one that adds it): reach each at its peer address, and
    /// stop reaching nodes that are not members. An in-process network, which reaches
    /// every registered node, needs nothing.
    fn set_members(&self, _config: &Configuration) {}

    /// The cluster id peers must present (a joining node learns it from a member).
    fn set_cluster_id(&self, _cluster_id: &str) {}
}

/// Where a transport hands the envelopes addressed to a node.
pub type Inbound = Arc<dyn Fn(Envelope) + Send + Sync>;
