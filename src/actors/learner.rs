//! The learner's shell: hands the core ([`crate::roles::learner`]) decisions and ticks,
//! and hosts it over `decided.wal` (appended without a sync: the state machine syncs it
//! before a snapshot that covers it is installed; compacted below each durable
//! snapshot) and over the snapshot files of a transfer: it serves chunks of
//! `snapshot.bin` to lagging peers and writes the chunks it receives
//! (`crate::storage::snapshot`).

use super::{FromPeer, Halt, Local, Peers};
use crate::driver::SnapshotPiece;
use crate::driver::{Driver, Host};
use crate::error::{Error, Result};
use crate::messages::local::LocalMessage;
use crate::messages::{LearnerMessage, NodeId, PeerMessage, Slot, Value};
use crate::roles::learner::{Learner, LearnerInput};
use crate::roles::ready::Write;
use crate::storage::Storage;
use crate::storage::decided_log::DecidedLog;
use crate::storage::failpoint;
use crate::storage::snapshot::SnapshotSource;
use actix::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LearnerStatus {
    /// First slot not yet handed to the state machine (= decided prefix length).
    pub next_undecided: Slot,
    pub commit: Slot,
    /// Decided values waiting in memory for the state machine.
    pub pending_slots: u64,
    pub handled: u64,
    pub fetches_sent: u64,
    /// Snapshot chunks received from peers and sent to them.
    pub snapshot_chunks_received: u64,
    pub snapshot_chunks_sent: u64,
    /// Bytes given back by compacting the decided log, and bytes its files take now.
    pub compacted_bytes: u64,
    pub log_bytes: u64,
    /// Snapshot chunks taken from each source in migrations (a joining node pulling the
    /// state from several members in parallel).
    pub migration_chunks: BTreeMap<NodeId, u64>,
}

#[derive(Message)]
#[rtype(result = "LearnerStatus")]
pub struct GetLearnerStatus;

/// A copy of the decided log, for tests that compare nodes slot by slot.
#[derive(Message)]
#[rtype(result = "BTreeMap<Slot, Value>")]
pub struct GetDecidedLog;

/// The learner actor.
pub struct LearnerActor {
    core: Learner,
    driver: Driver,
    io: Io,
    tick: std::time::Duration,
    handled: u64,
}

/// The learner's host: the decided log and the peers.
struct Io {
    log: DecidedLog,
    /// The last record read from the log (serving a fetch reads a record's slots in a row).
    cache: Option<(u64, (Slot, Vec<Value>))>,
    peers: Peers,
    fetches_sent: u64,
    storage: Storage,
    source: SnapshotSource,
    chunks_received: u64,
    chunks_sent: u64,
    compacted_bytes: u64,
}

impl Host for Io {
    fn append(&mut self, write: Write) -> Result<()> {
        match write {
            Write::Decided(values) => self.log.append(&values),
            Write::Compact { below } => {
                failpoint::hit("compaction");
                let freed = self.log.compact(below)?;
                failpoint::hit("compacted");
                self.compacted_bytes += freed;
                tracing::info!(
                    node = self.peers.id,
                    role = "learner",
                    below,
                    freed,
                    "decided log compacted"
                );
                Ok(())
            }
            Write::SnapshotChunk {
                offset, data, fresh, ..
            } => {
                self.chunks_received += 1;
                self.storage.write_incoming(offset, &data, fresh)
            }
            Write::SnapshotReceived { at } => {
                tracing::info!(node = self.peers.id, role = "learner", at, "snapshot received");
                self.storage.finish_incoming(at)
            }
            other => Err(Error::Storage(format!("the learner cannot write {other:?}"))),
        }
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        if let PeerMessage::Learner(LearnerMessage::Fetch { .. }) = &msg {
            self.fetches_sent += 1;
        }
        self.peers.send(to, msg);
    }

    fn local(&mut self, msg: LocalMessage) {
        if let LocalMessage::Apply(batch) = &msg
            && let (Some((first, _)), Some((last, _))) = (batch.first(), batch.last())
        {
            tracing::debug!(node = self.peers.id, role = "learner", slot = first, last, "deliver");
        }
        self.peers.local.deliver_local(msg);
    }

    fn read_decided(&mut self, slot: Slot) -> Result<Option<Value>> {
        self.log.get(slot, &mut self.cache)
    }

    fn read_snapshot(&mut self, at: Slot, offset: u64, max_bytes: usize) -> Result<Option<SnapshotPiece>> {
        self.chunks_sent += 1;
        self.source.read(&self.storage, at, offset, max_bytes)
    }

    fn fail_stop(&mut self, error: &Error) {
        self.peers.fail_stop("learner", error);
    }
}

impl LearnerActor {
    pub fn new(core: Learner, log: DecidedLog, storage: Storage, peers: Peers, tick: std::time::Duration) -> Self {
        LearnerActor {
            core,
            driver: Driver::new(),
            io: Io {
                log,
                cache: None,
                peers,
                fetches_sent: 0,
                storage,
                source: SnapshotSource::default(),
                chunks_received: 0,
                chunks_sent: 0,
                compacted_bytes: 0,
            },
            tick,
            handled: 0,
        }
    }

    fn run(&mut self, input: LearnerInput) {
        let ready = self.core.handle(input);
        self.driver.carry_out(ready, &mut self.io);
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let ready = self.core.start();
        self.driver.carry_out(ready, &mut self.io);
        ctx.run_interval(self.tick, |act, _| act.run(LearnerInput::Tick));
    }
}

impl Handler<FromPeer<LearnerMessage>> for LearnerActor {
    type Result = ();

    fn handle(&mut self, FromPeer(from, msg): FromPeer<LearnerMessage>, _: &mut Context<Self>) {
        self.handled += 1;
        if let LearnerMessage::Decide {
            first_slot,
            values,
            commit,
        } = &msg
        {
            let (node, count) = (self.io.peers.id, values.len());
            tracing::debug!(node, role = "learner", from, slot = first_slot, count, commit, "decide");
        }
        self.run(LearnerInput::Peer(from, msg));
    }
}

impl Handler<Local> for LearnerActor {
    type Result = ();

    fn handle(&mut self, Local(msg): Local, _: &mut Context<Self>) {
        match msg {
            // The state machine made a snapshot durable (its own, or one we received).
            LocalMessage::SnapshotDurable { at } => self.run(LearnerInput::SnapshotDurable { at }),
            // The proposer leads above what we have learned.
            LocalMessage::CatchUp { below, from } => self.run(LearnerInput::CatchUp { below, from }),
            LocalMessage::Reconfigure(config) => self.run(LearnerInput::Reconfigure(config)),
            LocalMessage::Migrate { below, sources } => self.run(LearnerInput::Migrate { below, sources }),
            other => tracing::error!(
                node = self.io.peers.id,
                role = "learner",
                ?other,
                "not a learner's message"
            ),
        }
    }
}

impl Handler<GetLearnerStatus> for LearnerActor {
    type Result = MessageResult<GetLearnerStatus>;

    fn handle(&mut self, _: GetLearnerStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(LearnerStatus {
            next_undecided: self.core.next(),
            commit: self.core.commit(),
            pending_slots: self.core.pending().len() as u64,
            handled: self.handled,
            fetches_sent: self.io.fetches_sent,
            snapshot_chunks_received: self.io.chunks_received,
            snapshot_chunks_sent: self.io.chunks_sent,
            compacted_bytes: self.io.compacted_bytes,
            log_bytes: self.io.log.disk_bytes(),
            migration_chunks: self.core.migration_chunks().clone(),
        })
    }
}

impl Handler<GetDecidedLog> for LearnerActor {
    type Result = MessageResult<GetDecidedLog>;

    fn handle(&mut self, _: GetDecidedLog, _: &mut Context<Self>) -> Self::Result {
        match self.io.log.read_all() {
            Ok(log) => MessageResult(log),
            Err(e) => {
                tracing::error!(node = self.io.peers.id, role = "learner", error = %e, "cannot read decided log");
                MessageResult(BTreeMap::new())
            }
        }
    }
}

impl Handler<Halt> for LearnerActor {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
