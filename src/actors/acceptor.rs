//! The acceptor's shell: feeds requests to the core ([`crate::roles::acceptor`]) through
//! the driver, and hosts it over `acceptor.wal`: writes are appended on the actor's
//! thread, and each sync (one `fdatasync` for every write appended while the previous
//! one ran: group commit) runs on the blocking pool. Told by the state machine that a
//! durable snapshot covers the slots below `s`, the core re-records its promise; once
//! a sync has made that record durable the log gives back the records it no longer
//! needs ([`Write::Compact`]).

use super::{FromPeer, Halt, Local, Peers};
use crate::driver::{self, AcceptorHost, Driver, Host, Sync};
use crate::error::{Error, Result};
use crate::messages::local::LocalMessage;
use crate::messages::{AcceptorReply, AcceptorRequest, Ballot, NodeId, PeerMessage, Slot, Value};
use crate::roles::acceptor::Acceptor;
use crate::roles::ready::Write;
use crate::storage::acceptor_log::AcceptorLog;
use crate::storage::failpoint;
use actix::prelude::*;

/// Counters for `/status` and `/metrics`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AcceptorStatus {
    pub promised: Ballot,
    pub accepted_slots: u64,
    /// Accepted slots whose values are in memory (the rest are read from disk if needed).
    pub slots_in_memory: u64,
    pub handled: u64,
    pub rejected: u64,
    pub flushes: u64,
    pub flushed_replies: u64,
    pub largest_batch: u64,
    /// Bytes given back by compacting the log, and bytes its files take now.
    pub compacted_bytes: u64,
    pub log_bytes: u64,
}

#[derive(Message)]
#[rtype(result = "AcceptorStatus")]
pub struct GetAcceptorStatus;

/// The acceptor actor.
pub struct AcceptorActor {
    core: Acceptor,
    driver: Driver,
    io: Io,
}

/// What the driver works through: the log, the peers, and the actor's context (to
/// spawn a sync).
struct Io {
    log: AcceptorLog,
    peers: Peers,
    handled: u64,
    rejected: u64,
    /// Offset of the last record appended, and the log's end covered by the last
    /// completed sync.
    last_record: u64,
    durable_end: u64,
    /// A compaction below `.0` waiting for the record at `.1` to be durable.
    compact: Option<(Slot, u64)>,
    compacted_bytes: u64,
}

impl Io {
    /// Compacts the log if the compaction waiting is covered by a completed sync.
    fn maybe_compact(&mut self) -> Result<()> {
        let Some((below, keep_from)) = self.compact else {
            return Ok(());
        };
        if keep_from >= self.durable_end {
            return Ok(());
        }
        self.compact = None;
        failpoint::hit("compaction");
        let freed = self.log.compact(below, keep_from)?;
        failpoint::hit("compacted");
        self.compacted_bytes += freed;
        tracing::info!(
            node = self.peers.id,
            role = "acceptor",
            below,
            freed,
            "acceptor log compacted"
        );
        Ok(())
    }
}

/// The host of one call into the driver.
struct AcceptorIo<'a> {
    io: &'a mut Io,
    ctx: &'a mut Context<AcceptorActor>,
}

impl Host for AcceptorIo<'_> {
    fn append(&mut self, write: Write) -> Result<()> {
        match write {
            Write::Acceptor(w) => {
                self.io.last_record = self.io.log.append(&w)?;
                Ok(())
            }
            // After the promise was re-recorded (the write before this one).
            Write::Compact { below } => {
                self.io.compact = Some((below, self.io.last_record));
                Ok(())
            }
            other => Err(Error::Storage(format!("the acceptor cannot write {other:?}"))),
        }
    }

    fn start_sync(&mut self) -> Result<Sync> {
        let group = self.io.log.take_pending();
        let end = group.end();
        let sync = actix_rt::task::spawn_blocking(move || group.write_and_sync());
        self.ctx.spawn(actix::fut::wrap_future::<_, AcceptorActor>(sync).map(
            move |res, act: &mut AcceptorActor, ctx| {
                let res = match res {
                    Ok(r) => r,
                    Err(e) => Err(Error::Storage(format!("acceptor sync task: {e}"))),
                };
                let res = res.and_then(|()| {
                    act.io.durable_end = end;
                    act.io.maybe_compact()
                });
                let mut host = AcceptorIo { io: &mut act.io, ctx };
                driver::acceptor_synced(&mut act.core, &mut act.driver, &mut host, res);
            },
        ));
        Ok(Sync::Started)
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        if let PeerMessage::AcceptorReply(AcceptorReply::Rejected { promised, .. }) = &msg {
            self.io.rejected += 1;
            tracing::debug!(node = self.io.peers.id, role = "acceptor", %promised, to, "rejected");
        }
        self.io.peers.send(to, msg);
    }

    fn fail_stop(&mut self, error: &Error) {
        self.io.peers.fail_stop("acceptor", error);
        self.ctx.stop();
    }
}

impl AcceptorHost for AcceptorIo<'_> {
    fn read_accepted(&mut self, slot: Slot) -> Result<Value> {
        self.io.log.read(slot, &mut None)
    }
}

impl AcceptorActor {
    /// An actor over `core`, whose state `log` holds.
    pub fn new(mut core: Acceptor, log: AcceptorLog, peers: Peers) -> Self {
        core.evict_restored();
        AcceptorActor {
            core,
            driver: Driver::new(),
            io: Io {
                log,
                peers,
                handled: 0,
                rejected: 0,
                last_record: 0,
                durable_end: 0,
                compact: None,
                compacted_bytes: 0,
            },
        }
    }
}

impl Actor for AcceptorActor {
    type Context = Context<Self>;
}

impl Handler<FromPeer<AcceptorRequest>> for AcceptorActor {
    type Result = ();

    fn handle(&mut self, FromPeer(from, request): FromPeer<AcceptorRequest>, ctx: &mut Context<Self>) {
        let node = self.io.peers.id;
        match &request {
            AcceptorRequest::Prepare { ballot, from_slot, .. } => {
                tracing::debug!(node, role = "acceptor", %ballot, slot = from_slot, from, "prepare")
            }
            AcceptorRequest::Pull { ballot, first, end, .. } => {
                tracing::debug!(node, role = "acceptor", %ballot, slot = first, end, from, "pull")
            }
            AcceptorRequest::Accept {
                ballot,
                first_slot,
                values,
                ..
            } => {
                tracing::debug!(node, role = "acceptor", %ballot, slot = first_slot, count = values.len(), from, "accept")
            }
        }
        self.io.handled += 1;
        let mut host = AcceptorIo { io: &mut self.io, ctx };
        driver::acceptor_request(&mut self.core, &mut self.driver, &mut host, from, request);
    }
}

impl Handler<Local> for AcceptorActor {
    type Result = ();

    fn handle(&mut self, Local(msg): Local, ctx: &mut Context<Self>) {
        match msg {
            // A durable snapshot covers the slots below `below`: forget them.
            LocalMessage::Compact { below } => {
                let mut host = AcceptorIo { io: &mut self.io, ctx };
                driver::acceptor_compact(&mut self.core, &mut self.driver, &mut host, below);
            }
            // A configuration is in force on this node: refuse older ballots, answer its.
            LocalMessage::Reconfigure(config) => self.core.reconfigure(config.id),
            other => tracing::error!(
                node = self.io.peers.id,
                role = "acceptor",
                ?other,
                "not an acceptor's message"
            ),
        }
    }
}

impl Handler<GetAcceptorStatus> for AcceptorActor {
    type Result = MessageResult<GetAcceptorStatus>;

    fn handle(&mut self, _: GetAcceptorStatus, _: &mut Context<Self>) -> Self::Result {
        let stats = self.driver.stats();
        MessageResult(AcceptorStatus {
            promised: self.core.promised(),
            accepted_slots: self.core.accepted_slots(),
            slots_in_memory: self.core.accepted().len() as u64,
            handled: self.io.handled,
            rejected: self.io.rejected,
            flushes: stats.syncs,
            flushed_replies: stats.synced_readies,
            largest_batch: stats.largest_group,
            compacted_bytes: self.io.compacted_bytes,
            log_bytes: self.io.log.disk_bytes(),
        })
    }
}

impl Handler<Halt> for AcceptorActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
