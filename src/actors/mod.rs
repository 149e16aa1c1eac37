//! The roles of a node, each a plain state machine (no I/O, no actix, no clock, no
//! randomness) wrapped by a thin actix actor that persists, sends and sets timers.
//!
//! | module            | role            | keeps                                               |
//! |-------------------|-----------------|-----------------------------------------------------|
//! | [`acceptor`]      | Acceptor        | promised ballot, accepted (ballot, value) per slot  |
//! | [`proposer`]      | Proposer        | ballot it leads with, slots in flight               |
//! | [`learner`]       | Learner         | decided values, the first slot not yet applied      |
//! | [`elector`]       | Leader-elector  | who leads, with which ballot; heartbeats            |
//! | [`state_machine`] | StateMachine    | the application, applied index, client replies      |
//! | [`node`]          | wiring          | starts the five actors of one node and routes messages |
//!
//! Roles talk only by messages. Messages to another node go through [`Peers::send`],
//! which also short-cuts messages a node sends to itself (a proposer's Prepare to its
//! own acceptor) straight into the local mailbox.

pub mod acceptor;
pub mod elector;
pub mod learner;
pub mod node;
pub mod proposer;
pub mod state_machine;

use crate::messages::{Envelope, NodeId, PeerMessage, StateMachineMessage};
use crate::net::Transport;
use actix::prelude::*;
use std::sync::Arc;

/// Deliberately planted bugs, one per role, to show that the safety checks can fail.
/// **Test-only**: every field is false in any real configuration, and the node's config
/// file cannot set them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// The acceptor answers without asking for its state to be persisted first.
    pub acceptor_skips_persist: bool,
    /// The proposer skips phase 1 when it becomes leader (proposes into slots blindly).
    pub proposer_skips_phase_one: bool,
    /// The proposer declares a batch decided on the first `Accepted` (a minority).
    pub proposer_decides_on_minority: bool,
    /// The learner hands values to the state machine as they come, gaps or not, and the
    /// state machine applies whatever slot it is given.
    pub learner_applies_out_of_order: bool,
    /// The proposer answers a `ReadIndex` at once with its next slot, without waiting
    /// for a quorum of the next Accept batch to confirm it still leads (a deposed leader
    /// then serves stale reads).
    pub proposer_reads_without_quorum: bool,
    /// The acceptor forgets accepted values evicted from memory: it neither reads them
    /// back for a `Prepare` nor stops its `Promise` at them.
    pub acceptor_promise_skips_stored: bool,
}

/// Time, for role cores: every actor with timers gets one `Tick` per `tick` interval.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Tick;

/// A message from a role of node `.0` (possibly this node).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FromPeer<M>(pub NodeId, pub M);

/// Stops an actor at once, dropping whatever it had not made durable (a crash).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Halt;

/// The mailboxes of one node's roles.
#[derive(Clone)]
pub struct LocalRoles {
    pub acceptor: Addr<acceptor::AcceptorActor>,
    pub proposer: Addr<proposer::ProposerActor>,
    pub learner: Addr<learner::LearnerActor>,
    pub elector: Addr<elector::ElectorActor>,
    /// The state machine's mailbox for read-index answers (it is generic over the
    /// application, so it is reached through a recipient).
    pub reads: Recipient<FromPeer<StateMachineMessage>>,
}

impl LocalRoles {
    /// Puts a message from `from` into the mailbox of the role that handles it.
    pub fn deliver(&self, from: NodeId, msg: PeerMessage) {
        match msg {
            PeerMessage::AcceptorRequest(m) => self.acceptor.do_send(FromPeer(from, m)),
            PeerMessage::AcceptorReply(m) => self.proposer.do_send(FromPeer(from, m)),
            PeerMessage::Learner(m) => self.learner.do_send(FromPeer(from, m)),
            PeerMessage::Elector(m) => self.elector.do_send(FromPeer(from, m)),
            PeerMessage::Proposer(m) => self.proposer.do_send(FromPeer(from, m)),
            PeerMessage::StateMachine(m) => self.reads.do_send(FromPeer(from, m)),
        }
    }
}

/// A node's way out: sends to the other nodes through the transport, to itself directly.
#[derive(Clone)]
pub struct Peers {
    pub id: NodeId,
    /// Every node of the configuration, this one included, ascending.
    pub nodes: Arc<Vec<NodeId>>,
    pub transport: Arc<dyn Transport>,
    pub local: LocalRoles,
}

impl Peers {
    pub fn send(&self, to: NodeId, msg: PeerMessage) {
        if to == self.id {
            self.local.deliver(to, msg);
        } else {
            self.transport.send(Envelope { from: self.id, to, msg });
        }
    }

    pub fn send_all(&self, out: impl IntoIterator<Item = (NodeId, PeerMessage)>) {
        for (to, msg) in out {
            self.send(to, msg);
        }
    }
}
