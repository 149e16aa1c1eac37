//! The proposer's shell: ticks the core ([`crate::roles::proposer`]) and hands it its
//! mailbox; the driver sends what it says. The proposer writes nothing.

use super::{FromPeer, Halt, Local, Peers};
use crate::driver::{Driver, Host};
use crate::error::{Error, Result};
use crate::messages::local::{ElectorOrder, LocalMessage, ProposerEvent};
use crate::messages::{AcceptorReply, Ballot, NodeId, PeerMessage, ProposerMessage, Slot};
use crate::roles::proposer::{Proposer, ProposerInput};
use crate::roles::ready::Write;
use actix::prelude::*;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ProposerStatus {
    pub ballot: Option<Ballot>,
    pub leading: bool,
    pub next_slot: Option<Slot>,
    pub inflight: usize,
    pub queued: usize,
    pub handled: u64,
    pub preempted: u64,
    /// Accept batches sent and the values they carried (batched / batches = batch size).
    pub batches: u64,
    pub batched_values: u64,
}

#[derive(Message)]
#[rtype(result = "ProposerStatus")]
pub struct GetProposerStatus;

/// The proposer actor.
pub struct ProposerActor {
    core: Proposer,
    driver: Driver,
    io: Io,
    tick: std::time::Duration,
    handled: u64,
}

/// The proposer's host: the peers, and a count of preemptions for the status.
struct Io {
    peers: Peers,
    preempted: u64,
}

impl Host for Io {
    fn append(&mut self, write: Write) -> Result<()> {
        Err(Error::Storage(format!("the proposer cannot write {write:?}")))
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.peers.send(to, msg);
    }

    fn local(&mut self, msg: LocalMessage) {
        if let LocalMessage::Event(ProposerEvent::Preempted(b)) = &msg {
            self.preempted += 1;
            tracing::info!(node = self.peers.id, role = "proposer", higher = %b, "preempted");
        }
        self.peers.local.deliver_local(msg);
    }

    fn fail_stop(&mut self, error: &Error) {
        self.peers.fail_stop("proposer", error);
    }
}

impl ProposerActor {
    pub fn new(core: Proposer, peers: Peers, tick: std::time::Duration) -> Self {
        ProposerActor {
            core,
            driver: Driver::new(),
            io: Io { peers, preempted: 0 },
            tick,
            handled: 0,
        }
    }

    fn run(&mut self, input: ProposerInput) {
        self.handled += 1;
        let ready = self.core.handle(input);
        self.driver.carry_out(ready, &mut self.io);
    }
}

impl Actor for ProposerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick, |act, _| act.run(ProposerInput::Tick));
    }
}

impl Handler<FromPeer<AcceptorReply>> for ProposerActor {
    type Result = ();

    fn handle(&mut self, FromPeer(from, reply): FromPeer<AcceptorReply>, _: &mut Context<Self>) {
        tracing::trace!(
            node = self.io.peers.id,
            role = "proposer",
            from,
            ?reply,
            "acceptor reply"
        );
        self.run(ProposerInput::Reply(from, reply));
    }
}

impl Handler<FromPeer<ProposerMessage>> for ProposerActor {
    type Result = ();

    fn handle(&mut self, FromPeer(from, msg): FromPeer<ProposerMessage>, _: &mut Context<Self>) {
        let node = self.io.peers.id;
        match msg {
            // A client command, from the node that took it.
            ProposerMessage::Propose { command } => {
                let (client, seq) = (command.id.client, command.id.seq);
                let leading = self.core.is_leading();
                tracing::debug!(node, role = "proposer", from, client, seq, leading, "propose");
                self.run(ProposerInput::Propose(from, command));
            }
            // A membership change, from the node that took it.
            ProposerMessage::ProposeStop { stop } => {
                tracing::info!(node, role = "proposer", from, prev = stop.prev, members = ?stop.members.keys().collect::<Vec<_>>(), "propose stop sign");
                self.run(ProposerInput::ProposeStop(from, stop));
            }
            // A linearizable read began at `from`.
            ProposerMessage::ReadIndex { id } => {
                tracing::debug!(
                    node,
                    role = "proposer",
                    from,
                    client = id.client,
                    seq = id.seq,
                    "read index"
                );
                self.run(ProposerInput::ReadIndex(from, id));
            }
        }
    }
}

impl Handler<Local> for ProposerActor {
    type Result = ();

    fn handle(&mut self, Local(msg): Local, _: &mut Context<Self>) {
        match msg {
            // The elector's order.
            LocalMessage::Order(order) => {
                tracing::info!(node = self.io.peers.id, role = "proposer", ?order, "order from elector");
                match order {
                    ElectorOrder::Lead(b) => self.run(ProposerInput::Lead(b)),
                    ElectorOrder::StepDown => self.run(ProposerInput::StepDown),
                }
            }
            // The learner's progress.
            LocalMessage::Learned(slot) => self.run(ProposerInput::Learned(slot)),
            LocalMessage::Reconfigure(config) => self.run(ProposerInput::Reconfigure(config)),
            other => tracing::error!(
                node = self.io.peers.id,
                role = "proposer",
                ?other,
                "not a proposer's message"
            ),
        }
    }
}

impl Handler<GetProposerStatus> for ProposerActor {
    type Result = MessageResult<GetProposerStatus>;

    fn handle(&mut self, _: GetProposerStatus, _: &mut Context<Self>) -> Self::Result {
        let (batches, batched_values) = self.core.batch_counts();
        MessageResult(ProposerStatus {
            ballot: self.core.ballot(),
            leading: self.core.is_leading(),
            next_slot: self.core.next_slot(),
            inflight: self.core.inflight(),
            queued: self.core.queued(),
            handled: self.handled,
            preempted: self.io.preempted,
            batches,
            batched_values,
        })
    }
}

impl Handler<Halt> for ProposerActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
