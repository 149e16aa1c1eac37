//! The typed messages of every role.
//!
//! Everything a role says to a role on *another* node is a [`PeerMessage`]: plain
//! serde data that crosses the in-process network and the TCP transport unchanged
//! (bincode 2 on the wire). Messages come in request/response pairs:
//!
//! | request (from)              | response (from)                 | module        |
//! |-----------------------------|---------------------------------|---------------|
//! | `Prepare` (proposer)        | `Promise` / `Rejected` (acceptor) | [`acceptor`] |
//! | `Pull` (proposer)           | `Pulled` / `Rejected` (acceptor) | [`acceptor`] |
//! | `Accept` (proposer)         | `Accepted` / `Rejected` (acceptor) | [`acceptor`] |
//! | `Decide` (proposer)         | none: learners fetch what they miss | [`learner`] |
//! | `Fetch` (learner)           | `Fetched` (learner)             | [`learner`]   |
//! | `Heartbeat` (elector)       | `HeartbeatReply` (elector)      | [`elector`]   |
//! | `PreVote` (elector)         | `PreVoteReply` (elector)        | [`elector`]   |
//! | `Propose` (any node)        | the reply comes from the state machine of the node the client asked | [`proposer`] |
//! | `ReadIndex` (any node)      | `ReadIndexReply` (leader's proposer, to the asker's state machine) | [`proposer`], [`state_machine`] |
//!
//! Messages between roles of the *same* node (the elector telling its proposer to lead,
//! the learner handing decided commands to the state machine) are in [`local`]: they
//! never leave the process, but they are messages all the same.

pub mod acceptor;
pub mod codec;
pub mod elector;
pub mod learner;
pub mod local;
pub mod membership;
pub mod proposer;
pub mod raft;
pub mod state_machine;

use serde::{Deserialize, Serialize};
use std::fmt;

pub use acceptor::{AcceptorReply, AcceptorRequest};
pub use elector::ElectorMessage;
pub use learner::LearnerMessage;
pub use membership::{ConfigId, Configuration, Member, StopSign};
pub use proposer::ProposerMessage;
pub use raft::RaftMessage;
pub use state_machine::StateMachineMessage;

/// A node of the cluster, numbered by configuration (1, 2, 3, ...).
pub type NodeId = u64;

/// A position in the replicated log. Slots start at 0.
pub type Slot = u64;

/// A client of the replicated state machine; with a sequence number ([`RequestId`]) it names one request.
pub type ClientId = u64;

/// A ballot (a "proposal number"): totally ordered, unique per node because the node id
/// breaks ties. `Ballot::ZERO` is below every ballot a proposer uses.
///
/// The configuration comes first (Omni-Paxos's ballots carry it the same way): every
/// ballot of configuration `c + 1` is above every ballot of configuration `c`, so once
/// an acceptor promised a ballot of the next configuration, no leader of an older one
/// can get anything past it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    /// The configuration ([`Configuration::id`]) the leader of this ballot leads.
    pub config: ConfigId,
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot {
        config: 0,
        round: 0,
        node: 0,
    };

    /// A ballot of the first configuration (id 0).
    pub fn new(round: u64, node: NodeId) -> Self {
        Ballot { config: 0, round, node }
    }

    /// A ballot of configuration `config`.
    pub fn in_config(config: ConfigId, round: u64, node: NodeId) -> Self {
        Ballot { config, round, node }
    }

    /// The smallest ballot of `node` above `self`, in the same configuration.
    pub fn next_for(self, node: NodeId) -> Ballot {
        Ballot {
            config: self.config,
            round: self.round.saturating_add(1),
            node,
        }
    }

    /// The smallest ballot of `node` in configuration `config` above `self`: the next
    /// round of `self` if it is of that configuration, round 1 if `self` is of an older
    /// one. (`self` of a newer configuration has no such ballot above it: the node is
    /// behind, and the ballot returned is below `self`.)
    pub fn next_in(self, config: ConfigId, node: NodeId) -> Ballot {
        if self.config == config {
            self.next_for(node)
        } else {
            Ballot { config, round: 1, node }
        }
    }
}

/// The highest slot a message may name: far beyond any real log, low enough that slot
/// arithmetic on what a peer sends can never overflow.
pub const MAX_SLOT: Slot = 1 << 62;

/// The highest ballot round a peer may announce (a larger one is refused as corrupt),
/// so that a node can always pick a higher round of its own.
pub const MAX_ROUND: u64 = 1 << 62;

impl fmt::Display for Ballot {
    /// `round.node` in the first configuration, `c<config>:round.node` after.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.config == 0 {
            write!(f, "{}.{}", self.round, self.node)
        } else {
            write!(f, "c{}:{}.{}", self.config, self.round, self.node)
        }
    }
}

/// The identity of one client request: retries carry the same id, so the state machine
/// applies it once and answers every copy the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: ClientId,
    pub seq: u64,
}

/// A client command as the log carries it. The payload is the application's own
/// command, encoded by the node that took the request; Paxos never looks inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub id: RequestId,
    /// Every request of this client below this sequence number has been answered, so
    /// the state machine may forget their replies (bounds the deduplication table).
    pub ack_below: u64,
    #[serde(with = "crate::messages::codec::bytes")]
    pub payload: Vec<u8>,
}

/// What a log slot holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Fills a hole left by a failed leader (PMMC section 3: "no-op").
    Noop,
    Command(Command),
    /// Stop this configuration here and start the next one after this slot (Lamport,
    /// Malkhi and Zhou, "Stoppable Paxos"; Omni-Paxos's StopSign). See
    /// [`membership`] for the rules.
    StopSign(StopSign),
}

impl Value {
    /// Roughly how many bytes the value takes in a message: what batches and answers
    /// are cut by, so that each fits a transport frame.
    pub fn wire_size(&self) -> usize {
        match self {
            Value::Noop => 1,
            Value::Command(c) => c.wire_size(),
            Value::StopSign(s) => s.wire_size(),
        }
    }
}

impl Command {
    /// Roughly how many bytes the command takes in a message (see [`Value::wire_size`]).
    pub fn wire_size(&self) -> usize {
        self.payload.len() + 32
    }
}

/// Everything one node's role sends to a role of another node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    AcceptorRequest(AcceptorRequest),
    AcceptorReply(AcceptorReply),
    Learner(LearnerMessage),
    Elector(ElectorMessage),
    Proposer(ProposerMessage),
    StateMachine(StateMachineMessage),
    /// The Raft engine's traffic (`--engine raft`, src/raft): opaque to the transport.
    Raft(RaftMessage),
}

impl PeerMessage {
    /// The role that handles this message, for tracing and metrics.
    pub fn role(&self) -> &'static str {
        match self {
            PeerMessage::AcceptorRequest(_) => "acceptor",
            PeerMessage::AcceptorReply(_) => "proposer",
            PeerMessage::Learner(_) => "learner",
            PeerMessage::Elector(_) => "elector",
            PeerMessage::Proposer(_) => "proposer",
            PeerMessage::StateMachine(_) => "state_machine",
            PeerMessage::Raft(_) => "raft",
        }
    }
}

/// A message with its addresses, as the transports carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: PeerMessage,
}
