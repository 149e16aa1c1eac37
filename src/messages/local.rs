//! Messages between the roles of one node. They never cross the network, but they are
//! messages all the same: a role never calls into another role, it hands one of these to
//! the driver, which puts it into the other role's mailbox (an actor's in production, an
//! event at the current time in the simulator).
//!
//! | message                       | from → to                 |
//! |-------------------------------|---------------------------|
//! | [`ElectorOrder::Lead`], [`ElectorOrder::StepDown`] | elector → proposer |
//! | [`ProposerEvent::Elected`], [`ProposerEvent::Preempted`], [`ProposerEvent::PrepareTimedOut`] | proposer → elector |
//! | [`LocalMessage::Learned`]     | learner → proposer        |
//! | [`LocalMessage::Apply`]       | learner → state machine   |
//! | [`LocalMessage::Compact`]     | state machine → acceptor  |
//! | [`LocalMessage::SnapshotDurable`] | state machine → learner |
//! | [`LocalMessage::CatchUp`]     | proposer → learner        |
//! | [`LocalMessage::InstallSnapshot`] | learner → state machine |
//! | [`LocalMessage::Reconfigure`] | state machine → acceptor, proposer, elector, learner |
//! | [`LocalMessage::Migrate`]     | node (joining) → learner  |

use super::{Ballot, Configuration, NodeId, Slot, Value};

/// From the elector to its proposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectorOrder {
    /// Run phase 1 with this (durable, fresh) ballot and lead if it succeeds.
    Lead(Ballot),
    /// Stop leading or trying to.
    StepDown,
}

/// From the proposer to its elector: how phase 1 went, or that it was preempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposerEvent {
    /// Phase 1 of this ballot succeeded: this node leads.
    Elected(Ballot),
    /// An acceptor promised this higher ballot.
    Preempted(Ballot),
    /// Phase 1 of this ballot got no majority in time.
    PrepareTimedOut(Ballot),
}

/// A message from one role of a node to another role of the same node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalMessage {
    /// Elector → proposer.
    Order(ElectorOrder),
    /// Proposer → elector.
    Event(ProposerEvent),
    /// Learner → proposer: every slot below this one is learned here.
    Learned(Slot),
    /// Learner → state machine: decided values, consecutive, in slot order.
    Apply(Vec<(Slot, Value)>),
    /// State machine → acceptor: a snapshot covering every slot below `below` is durable
    /// on this node, so those slots are decided and the acceptor may forget them.
    Compact { below: Slot },
    /// State machine → learner: the node's durable snapshot now covers every slot below
    /// `at` (its own, or one received from a peer): the decided log may give back the
    /// space below `at`, and a lagging peer asking for those slots gets this snapshot.
    SnapshotDurable { at: Slot },
    /// Proposer → learner: every slot below `below` is decided, and node `from` holds
    /// them (a phase-1 promise said it compacted them): catch up from there.
    CatchUp { below: Slot, from: NodeId },
    /// Learner → state machine: a snapshot covering every slot below `at` was received
    /// from a peer and is complete on disk (checksummed): install it in place of the
    /// current state if it is ahead of it.
    InstallSnapshot { at: Slot },
    /// State machine → acceptor, proposer, elector and learner: this configuration is in
    /// force on this node (a StopSign was applied, or a snapshot holding it restored, or
    /// the node started with it). Sent to each of the four roles.
    Reconfigure(Configuration),
    /// Node → learner, on a node that joins: a configuration starting at `below` counts
    /// this node as a member, but it holds nothing yet: pull the state below `below`
    /// (the snapshot at the StopSign, then the log) from `sources`, in parallel.
    Migrate { below: Slot, sources: Vec<NodeId> },
}

impl LocalMessage {
    /// The role that handles this message, for tracing and metrics.
    pub fn role(&self) -> &'static str {
        match self {
            LocalMessage::Order(_) | LocalMessage::Learned(_) => "proposer",
            LocalMessage::Event(_) => "elector",
            LocalMessage::Apply(_) | LocalMessage::InstallSnapshot { .. } => "state_machine",
            LocalMessage::Compact { .. } => "acceptor",
            LocalMessage::SnapshotDurable { .. } | LocalMessage::CatchUp { .. } | LocalMessage::Migrate { .. } => {
                "learner"
            }
            LocalMessage::Reconfigure(_) => "every role",
        }
    }
}
