//! The actix shells around the role cores ([`crate::roles`]), and the wiring of a node.
//!
//! Each shell owns its core and a [`Driver`](crate::driver::Driver), feeds the core its
//! mailbox messages and ticks, and is the driver's [`Host`](crate::driver::Host): it
//! appends to the real files, runs syncs on the blocking pool, and delivers messages.
//! What to do with a core's output, and in which order, is the driver's business, not
//! the shell's.
//!
//! | module            | shell of        | host for                                           |
//! |-------------------|-----------------|----------------------------------------------------|
//! | [`acceptor`]      | Acceptor        | `acceptor.wal` (group commit on the blocking pool) |
//! | [`proposer`]      | Proposer        | messages only                                      |
//! | [`learner`]       | Learner         | `decided.wal`                                      |
//! | [`elector`]       | Leader-elector  | the `ballot` file; publishes who leads             |
//! | [`state_machine`] | StateMachine    | `snapshot.bin`, the `membership` file; answers the node's waiting clients; publishes each configuration applied |
//! | [`node`]          | wiring          | starts the five actors of one node in the configuration in force; the client-facing handle (commands, reads, membership changes) |
//!
//! Roles talk only by messages. Messages to another node go through [`Peers::send`],
//! which also short-cuts messages a node sends to itself (a proposer's Prepare to its
//! own acceptor) straight into the local mailbox; messages between roles of one node
//! go through [`LocalRoles::deliver_local`].

pub mod acceptor;
pub mod elector;
pub mod learner;
pub mod node;
pub mod proposer;
pub mod state_machine;

use crate::messages::local::LocalMessage;
use crate::messages::{Envelope, NodeId, PeerMessage, StateMachineMessage};
use crate::net::Transport;
use actix::prelude::*;
use std::sync::Arc;

/// A message from a role of node `.0` (possibly this node).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct FromPeer<M>(pub NodeId, pub M);

/// A message from another role of this node.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Local(pub LocalMessage);

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
    /// The state machine's mailboxes (it is generic over the application, so it is
    /// reached through recipients): read-index answers, decided values, a stop.
    pub reads: Recipient<FromPeer<StateMachineMessage>>,
    pub state_machine: Recipient<Local>,
    pub state_machine_halt: Recipient<Halt>,
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
            // A Paxos node has no Raft roles: a Raft node on a Paxos cluster is misconfigured.
            PeerMessage::Raft(_) => tracing::warn!(from, "dropped a Raft message: this node runs the Paxos engine"),
        }
    }

    /// Puts a message from another role of this node into the mailbox of its role.
    pub fn deliver_local(&self, msg: LocalMessage) {
        match msg {
            LocalMessage::Order(_) | LocalMessage::Learned(_) => self.proposer.do_send(Local(msg)),
            LocalMessage::Event(_) => self.elector.do_send(Local(msg)),
            LocalMessage::Apply(_) | LocalMessage::InstallSnapshot { .. } => self.state_machine.do_send(Local(msg)),
            LocalMessage::Compact { .. } => self.acceptor.do_send(Local(msg)),
            LocalMessage::SnapshotDurable { .. } | LocalMessage::CatchUp { .. } | LocalMessage::Migrate { .. } => {
                self.learner.do_send(Local(msg))
            }
            // Every role but the state machine (which sent it) hears of a configuration.
            LocalMessage::Reconfigure(_) => {
                self.acceptor.do_send(Local(msg.clone()));
                self.proposer.do_send(Local(msg.clone()));
                self.elector.do_send(Local(msg.clone()));
                self.learner.do_send(Local(msg));
            }
        }
    }

    /// Stops every role of the node at once: a role's storage failed, and the node must
    /// not go on as if it had not (fail-stop; an operator restarts it from its disk).
    pub fn halt_all(&self) {
        self.acceptor.do_send(Halt);
        self.proposer.do_send(Halt);
        self.learner.do_send(Halt);
        self.elector.do_send(Halt);
        self.state_machine_halt.do_send(Halt);
    }
}

/// A node's way out: sends to the other nodes through the transport, to itself directly.
#[derive(Clone)]
pub struct Peers {
    pub id: NodeId,
    /// Reaches the other nodes; its peers follow the configuration in force (the state
    /// machine's host sets them when it applies one). Which nodes each role talks to is
    /// the role core's business (each holds the configuration's members).
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

    /// A role's storage failed: the whole node stops (see [`LocalRoles::halt_all`]).
    pub fn fail_stop(&self, role: &'static str, error: &crate::Error) {
        tracing::error!(node = self.id, role, %error, "storage failed: the node stops (fail-stop)");
        self.local.halt_all();
    }
}
