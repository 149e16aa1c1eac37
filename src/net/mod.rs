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

use crate::messages::Envelope;
use std::sync::Arc;

/// Delivers envelopes to other nodes, best effort.
pub trait Transport: Send + Sync + 'static {
    fn send(&self, envelope: Envelope);
}

/// Where a transport hands the envelopes addressed to a node.
pub type Inbound = Arc<dyn Fn(Envelope) + Send + Sync>;
