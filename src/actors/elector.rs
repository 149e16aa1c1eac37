//! The leader-elector's shell: ticks the core ([`crate::roles::elector`]), hosts it over
//! the `ballot` file (written, synced and renamed in place: once per campaign), and
//! publishes who leads to the rest of the node.

use super::{FromPeer, Halt, Local, Peers};
use crate::driver::{Driver, Host, Sync};
use crate::error::{Error, Result};
use crate::messages::local::LocalMessage;
use crate::messages::{Ballot, ElectorMessage, NodeId, PeerMessage};
use crate::roles::elector::{Elector, ElectorInput};
use crate::roles::ready::Write;
use crate::storage::Storage;
use actix::prelude::*;

/// What the elector publishes to the rest of the node: who leads, and the highest
/// ballot known (etcd's gateway reports its round as `raft_term`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<NodeId>,
    pub ballot: Ballot,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ElectorStatus {
    pub role: &'static str,
    pub leader: Option<NodeId>,
    pub highest_ballot: Ballot,
    /// Election timeouts that fired here (each a pre-vote, or a campaign).
    pub timeouts: u64,
    pub handled: u64,
}

#[derive(Message)]
#[rtype(result = "ElectorStatus")]
pub struct GetElectorStatus;

/// The elector actor.
pub struct ElectorActor {
    core: Elector,
    driver: Driver,
    io: Io,
    tick: std::time::Duration,
    leader_tx: tokio::sync::watch::Sender<Leadership>,
    handled: u64,
}

/// The elector's host: the ballot file and the peers.
struct Io {
    storage: Storage,
    peers: Peers,
}

impl Host for Io {
    fn append(&mut self, write: Write) -> Result<()> {
        match write {
            // Rare (once per campaign), so a blocking write and sync here is acceptable;
            // `start_sync` then finds it durable already.
            Write::Ballot(ballot) => {
                self.storage.save_ballot(ballot)?;
                tracing::info!(node = self.peers.id, role = "elector", %ballot, "campaigning");
                Ok(())
            }
            other => Err(Error::Storage(format!("the elector cannot write {other:?}"))),
        }
    }

    fn start_sync(&mut self) -> Result<Sync> {
        Ok(Sync::Done)
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        self.peers.send(to, msg);
    }

    fn local(&mut self, msg: LocalMessage) {
        self.peers.local.deliver_local(msg);
    }

    fn leader(&mut self, leader: Option<NodeId>) {
        tracing::info!(node = self.peers.id, role = "elector", ?leader, "leader changed");
    }

    fn fail_stop(&mut self, error: &Error) {
        // A ballot that may not be durable must not be used: the node stops.
        self.peers.fail_stop("elector", error);
    }
}

impl ElectorActor {
    pub fn new(
        core: Elector,
        storage: Storage,
        peers: Peers,
        tick: std::time::Duration,
        leader_tx: tokio::sync::watch::Sender<Leadership>,
    ) -> Self {
        ElectorActor {
            core,
            driver: Driver::new(),
            io: Io { storage, peers },
            tick,
            leader_tx,
            handled: 0,
        }
    }

    fn run(&mut self, input: ElectorInput) {
        self.handled += 1;
        let ready = self.core.handle(input);
        self.driver.carry_out(ready, &mut self.io);
        if self.driver.stopped() {
            return;
        }
        let now = Leadership {
            leader: self.core.leader(),
            ballot: self.core.highest(),
        };
        self.leader_tx.send_if_modified(|published| {
            let changed = *published != now;
            *published = now;
            changed
        });
    }
}

impl Actor for ElectorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick, |act, _| act.run(ElectorInput::Tick));
    }
}

impl Handler<FromPeer<ElectorMessage>> for ElectorActor {
    type Result = ();

    fn handle(&mut self, FromPeer(from, msg): FromPeer<ElectorMessage>, _: &mut Context<Self>) {
        tracing::trace!(node = self.io.peers.id, role = "elector", from, ?msg, "peer message");
        self.run(ElectorInput::Peer(from, msg));
    }
}

impl Handler<Local> for ElectorActor {
    type Result = ();

    fn handle(&mut self, Local(msg): Local, _: &mut Context<Self>) {
        match msg {
            // How our proposer's phase 1 went.
            LocalMessage::Reconfigure(config) => self.run(ElectorInput::Reconfigure(config)),
            LocalMessage::Event(event) => {
                tracing::debug!(node = self.io.peers.id, role = "elector", ?event, "from proposer");
                self.run(ElectorInput::Proposer(event));
            }
            other => tracing::error!(
                node = self.io.peers.id,
                role = "elector",
                ?other,
                "not an elector's message"
            ),
        }
    }
}

impl Handler<GetElectorStatus> for ElectorActor {
    type Result = MessageResult<GetElectorStatus>;

    fn handle(&mut self, _: GetElectorStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ElectorStatus {
            role: self.core.role_name(),
            leader: self.core.leader(),
            highest_ballot: self.core.highest(),
            timeouts: self.core.timeouts(),
            handled: self.handled,
        })
    }
}

impl Handler<Halt> for ElectorActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
