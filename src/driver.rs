//! # The driver: the one place where a role's [`Ready`] is carried out
//!
//! A role core returns a [`Ready`] for every input; a [`Driver`] (one per role instance)
//! carries it out by the ordering rules written on [`Ready`], through a [`Host`]: the
//! few primitive operations the surroundings provide (append a write, start a sync,
//! deliver a message, read a log). The node's actors are hosts over real files, the
//! blocking pool and the transport; the simulator is a host over a simulated disk and
//! network. Both run this code, so what the simulator checks is the ordering production
//! runs: a bug in when replies leave relative to syncs shows in the simulated runs.
//!
//! ```text
//!   input ──▶ core.handle ──▶ Ready ──▶ Driver::carry_out ──▶ Host::append (writes, in order)
//!                                              │                Host::start_sync ─ … ─▶ Driver::synced
//!                                              └─ effects held until durable, then in order:
//!                                                 Host::local, Host::leader, Host::send,
//!                                                 Host::read_decided (serve), Host::answer,
//!                                                 Host::retry_read
//! ```
//!
//! **Group commit.** While one sync runs, the effects of later `Ready`s wait behind it
//! in arrival order, and their writes are appended at once; when the sync completes, one
//! more sync covers everything appended meanwhile. Under load one `fdatasync` thus
//! covers many requests.
//!
//! **Fail-stop.** If a write or a sync fails the role's state is ahead of its disk: the
//! driver drops every held effect, ignores every later `Ready`, and asks the host to stop
//! the node ([`Host::fail_stop`]).

use crate::error::{Error, Result};
use crate::messages::LearnerMessage;
use crate::messages::local::LocalMessage;
use crate::messages::{AcceptorRequest, NodeId, PeerMessage, RequestId, Slot, Value};
use crate::roles::acceptor::Acceptor;
use crate::roles::learner::fetched;
use crate::roles::ready::{Outcome, Ready, ServeSnapshot, Write};
use std::collections::VecDeque;

/// Whether a sync the host was asked to start is done already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// Everything appended is durable now (the host synced in place).
    Done,
    /// The sync runs; the host calls [`Driver::synced`] when it completes.
    Started,
}

/// What the surroundings of a role provide. A host serves one role instance, so a
/// method the role never needs keeps its default, which refuses.
pub trait Host<R = ()> {
    /// Appends `write` to this node's storage. It need not be durable yet.
    fn append(&mut self, write: Write) -> Result<()>;

    /// Starts making every write appended so far durable.
    fn start_sync(&mut self) -> Result<Sync> {
        Ok(Sync::Done)
    }

    /// Puts `msg` into the mailbox of the role of node `to` that handles it (this node's
    /// own roles included, without the network).
    fn send(&mut self, to: NodeId, msg: PeerMessage);

    /// Puts `msg` into the mailbox of another role of this node.
    fn local(&mut self, msg: LocalMessage) {
        tracing::error!(role = msg.role(), "this role has no local mailbox to send to; dropped");
    }

    /// The leader this node follows is now `leader` (`None`: unknown).
    fn leader(&mut self, _leader: Option<NodeId>) {}

    /// The decided value of `slot`, from the decided log (`None`: not there).
    fn read_decided(&mut self, _slot: Slot) -> Result<Option<Value>> {
        Err(Error::Storage("this role has no decided log".into()))
    }

    /// `max_bytes` bytes from `offset` of this node's snapshot covering the slots below
    /// `at`, if it still has that one (a host may keep serving a snapshot that was just
    /// replaced, so that a transfer under load is not started over at every snapshot);
    /// otherwise the piece says which slots its current durable snapshot covers, and the
    /// driver offers that one instead. `None`: it has no snapshot.
    fn read_snapshot(&mut self, _at: Slot, _offset: u64, _max_bytes: usize) -> Result<Option<SnapshotPiece>> {
        Err(Error::Storage("this role serves no snapshot".into()))
    }

    /// The client requests of one `Ready` were answered, in order (all at once, so that
    /// a host can take them under one lock).
    fn answer(&mut self, _answers: Vec<(RequestId, Outcome<R>)>) {}

    /// The linearizable read `id`, still waiting, must ask the leader again: the node
    /// asked does not lead.
    fn retry_read(&mut self, _id: RequestId) {}

    /// Storage failed under the role: stop the node; nothing it held may leave.
    fn fail_stop(&mut self, error: &Error);
}

/// A piece of a node's durable snapshot, as [`Host::read_snapshot`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPiece {
    /// The snapshot covers every slot below this one.
    pub at: Slot,
    /// Its size in bytes, and the CRC-32 of all of them.
    pub total: u64,
    pub file_crc: u32,
    /// The bytes asked for (fewer at the end).
    pub data: Vec<u8>,
}

/// Counters of one driver, for `/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriverStats {
    /// Syncs completed.
    pub syncs: u64,
    /// `Ready`s whose effects waited for a sync, and the most one sync released.
    pub synced_readies: u64,
    pub largest_group: u64,
    /// Writes appended that had to be durable.
    pub durable_writes: u64,
}

/// Carries out one role's `Ready`s: see the module docs.
pub struct Driver<R = ()> {
    /// `Ready`s whose writes are appended, waiting for a sync to take effect, oldest first.
    held: VecDeque<Ready<R>>,
    /// How many of `held` the running sync releases.
    covered: usize,
    syncing: bool,
    /// A write that must be durable was appended since the running sync started.
    dirty: bool,
    /// Writes that must be durable: appended, covered by the running sync, and durable.
    appended: u64,
    syncing_through: u64,
    durable: u64,
    stopped: bool,
    stats: DriverStats,
}

impl<R> Default for Driver<R> {
    fn default() -> Self {
        Driver {
            held: VecDeque::new(),
            covered: 0,
            syncing: false,
            dirty: false,
            appended: 0,
            syncing_through: 0,
            durable: 0,
            stopped: false,
            stats: DriverStats::default(),
        }
    }
}

impl<R> Driver<R> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// The role stopped for good after a storage failure.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Carries out `ready` (rules 1 to 5 of [`Ready`]).
    pub fn carry_out(&mut self, mut ready: Ready<R>, host: &mut impl Host<R>) {
        if self.stopped {
            return;
        }
        for write in std::mem::take(&mut ready.writes) {
            let durable = write.must_sync();
            if let Err(e) = host.append(write) {
                return self.fail(host, &e);
            }
            if durable {
                self.appended += 1;
                self.stats.durable_writes += 1;
                self.dirty = true;
            }
        }
        if !self.dirty && !self.syncing && self.held.is_empty() {
            return perform(ready, host);
        }
        self.held.push_back(ready);
        self.maybe_sync(host);
    }

    /// The sync the driver asked its host to start completed with `result`.
    pub fn synced(&mut self, result: Result<()>, host: &mut impl Host<R>) {
        assert!(self.syncing || self.stopped, "a sync completed that was never started");
        self.syncing = false;
        if self.stopped {
            return;
        }
        if let Err(e) = result {
            return self.fail(host, &e);
        }
        self.durable = self.syncing_through;
        self.stats.syncs += 1;
        self.stats.synced_readies += self.covered as u64;
        self.stats.largest_group = self.stats.largest_group.max(self.covered as u64);
        for _ in 0..std::mem::take(&mut self.covered) {
            if let Some(effects) = self.held.pop_front() {
                perform(effects, host);
            }
        }
        self.maybe_sync(host);
    }

    /// How many writes that had to be durable are durable now (counted in the order
    /// they were appended, from 1).
    pub fn durable_through(&self) -> u64 {
        self.durable
    }

    /// Starts a sync if writes wait for one and none runs; releases held effects that
    /// need none.
    fn maybe_sync(&mut self, host: &mut impl Host<R>) {
        if self.syncing || self.stopped {
            return;
        }
        if !self.dirty {
            // Effects that queued behind a sync but revealed no new write.
            while let Some(effects) = self.held.pop_front() {
                perform(effects, host);
            }
            return;
        }
        self.dirty = false;
        self.syncing = true;
        self.covered = self.held.len();
        self.syncing_through = self.appended;
        match host.start_sync() {
            Ok(Sync::Done) => self.synced(Ok(()), host),
            Ok(Sync::Started) => {}
            Err(e) => self.fail(host, &e),
        }
    }

    fn fail(&mut self, host: &mut impl Host<R>, error: &Error) {
        self.stopped = true;
        self.held.clear();
        self.covered = 0;
        host.fail_stop(error);
    }
}

/// Carries out the effects of one `Ready` whose writes are appended (and durable where
/// they must be), in the order of rule 3.
fn perform<R>(effects: Ready<R>, host: &mut impl Host<R>) {
    for msg in effects.local {
        host.local(msg);
    }
    if let Some(leader) = effects.leader {
        host.leader(leader);
    }
    for (to, msg) in effects.send {
        host.send(to, msg);
    }
    for serve in effects.serve {
        match fetched(serve.first, serve.end, serve.max_bytes, |slot| host.read_decided(slot)) {
            Ok(reply) => host.send(serve.to, PeerMessage::Learner(reply)),
            // The asking learner asks again later (or another learner).
            Err(e) => tracing::error!(error = %e, "cannot read the decided log to answer a fetch"),
        }
    }
    for serve in effects.serve_snapshot {
        serve_snapshot(serve, host);
    }
    if !effects.answers.is_empty() {
        host.answer(effects.answers);
    }
    for id in effects.retry_reads {
        host.retry_read(id);
    }
}

/// Answers a peer's `SnapshotRead`: the chunk it asked for, or, if this node's snapshot
/// is another one by now, an offer of that one.
fn serve_snapshot<R>(serve: ServeSnapshot, host: &mut impl Host<R>) {
    let reply = match host.read_snapshot(serve.at, serve.offset, serve.max_bytes) {
        Ok(Some(piece)) if piece.at == serve.at => LearnerMessage::SnapshotChunk {
            at: piece.at,
            offset: serve.offset,
            total: piece.total,
            file_crc: piece.file_crc,
            crc: crc32fast::hash(&piece.data),
            data: piece.data,
        },
        Ok(Some(piece)) => LearnerMessage::SnapshotOffer { at: piece.at },
        Ok(None) => return,
        // The asking learner asks again later.
        Err(e) => return tracing::error!(error = %e, "cannot read the snapshot to send a chunk"),
    };
    host.send(serve.to, PeerMessage::Learner(reply));
}

/// What an acceptor needs from its host beyond a [`Host`]: reading back accepted values
/// that left memory.
pub trait AcceptorHost: Host {
    /// The value this acceptor accepted in `slot`, from its log.
    fn read_accepted(&mut self, slot: Slot) -> Result<Value>;
}

/// Hands an acceptor a request from `from`, the same way in the node and in the
/// simulator: the values a `Pull` asks for that left memory are read back from the log
/// first (the answer stops at the first one it does not hold), then the acceptor
/// answers and the driver carries the answer out. (A `Prepare` needs no read: the core
/// keeps the ballots of what left memory.)
pub fn acceptor_request(
    core: &mut Acceptor,
    driver: &mut Driver,
    host: &mut impl AcceptorHost,
    from: NodeId,
    request: AcceptorRequest,
) {
    if driver.stopped() {
        return;
    }
    if let AcceptorRequest::Pull { ballot, first, end, .. } = &request
        && *ballot == core.promised()
        && let Err(e) = core.reload_range(*first, *end, |slot| host.read_accepted(slot))
    {
        return driver.fail(host, &e);
    }
    let ready = core.handle(from, request);
    driver.carry_out(ready, host);
    core.durable_through(driver.durable_through());
}

/// Tells an acceptor that a durable snapshot covers every slot below `below`: it forgets
/// those slots and re-records its promise, and its log gives back the space once that
/// write is durable (the host carries out [`Write::Compact`] only then).
pub fn acceptor_compact(core: &mut Acceptor, driver: &mut Driver, host: &mut impl AcceptorHost, below: Slot) {
    if driver.stopped() {
        return;
    }
    let ready = core.compact(below);
    driver.carry_out(ready, host);
    core.durable_through(driver.durable_through());
}

/// An acceptor's sync completed: its held replies leave, and values now durable leave
/// memory (all but the most recent).
pub fn acceptor_synced(core: &mut Acceptor, driver: &mut Driver, host: &mut impl AcceptorHost, result: Result<()>) {
    driver.synced(result, host);
    core.durable_through(driver.durable_through());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AcceptorReply, Ballot};
    use crate::roles::ready::AcceptorWrite;

    /// A host that records what happens, in order, and completes syncs when told.
    #[derive(Default)]
    struct Recorder {
        log: Vec<String>,
        sync_in_place: bool,
        fail_append: bool,
    }

    impl Host for Recorder {
        fn append(&mut self, write: Write) -> Result<()> {
            if self.fail_append {
                return Err(Error::Storage("disk full".into()));
            }
            self.log
                .push(format!("append {}", if write.must_sync() { "durable" } else { "lazy" }));
            Ok(())
        }
        fn start_sync(&mut self) -> Result<Sync> {
            self.log.push("sync".into());
            Ok(if self.sync_in_place { Sync::Done } else { Sync::Started })
        }
        fn send(&mut self, to: NodeId, _msg: PeerMessage) {
            self.log.push(format!("send {to}"));
        }
        fn fail_stop(&mut self, error: &Error) {
            self.log.push(format!("stop: {error}"));
        }
    }

    fn reply(to: NodeId, durable: bool) -> Ready {
        let mut ready = Ready::default();
        if durable {
            ready.writes.push(Write::Acceptor(AcceptorWrite {
                promised: Some(Ballot::new(1, 1)),
                accepted: Vec::new(),
            }));
        }
        let msg = AcceptorReply::Rejected {
            call: 1,
            ballot: Ballot::ZERO,
            promised: Ballot::ZERO,
        };
        ready.send.push((to, PeerMessage::AcceptorReply(msg)));
        ready
    }

    #[test]
    fn driver_holds_replies_until_their_write_is_durable() {
        let (mut d, mut h) = (Driver::new(), Recorder::default());
        d.carry_out(reply(2, true), &mut h);
        assert_eq!(h.log, ["append durable", "sync"], "the reply waits for the sync");
        d.synced(Ok(()), &mut h);
        assert_eq!(h.log, ["append durable", "sync", "send 2"]);
    }

    #[test]
    fn driver_groups_writes_that_arrive_during_a_sync() {
        let (mut d, mut h) = (Driver::new(), Recorder::default());
        d.carry_out(reply(2, true), &mut h);
        d.carry_out(reply(3, true), &mut h);
        d.carry_out(reply(4, false), &mut h);
        d.carry_out(reply(5, true), &mut h);
        d.synced(Ok(()), &mut h);
        d.synced(Ok(()), &mut h);
        assert_eq!(
            h.log,
            [
                "append durable",
                "sync",
                "append durable",
                "append durable",
                "send 2",
                "sync",
                "send 3",
                "send 4",
                "send 5"
            ],
            "one sync for the three requests that came while the first ran; replies in order"
        );
        assert_eq!(d.stats().syncs, 2);
        assert_eq!(d.stats().largest_group, 3);
    }

    #[test]
    fn driver_counts_writes_durable_only_once_their_sync_completed() {
        let (mut d, mut h) = (Driver::new(), Recorder::default());
        d.carry_out(reply(2, true), &mut h);
        assert_eq!(
            d.durable_through(),
            0,
            "the sync of write 1 runs: nothing is durable yet"
        );
        d.carry_out(reply(3, true), &mut h);
        d.synced(Ok(()), &mut h);
        assert_eq!(d.durable_through(), 1, "write 2 waits for the next sync");
        d.synced(Ok(()), &mut h);
        assert_eq!(d.durable_through(), 2);
    }

    /// An acceptor's host whose log holds only what a completed sync covered.
    #[derive(Default)]
    struct AcceptorDisk {
        appended: Vec<AcceptorWrite>,
        durable: usize,
        syncing: usize,
        sent: Vec<PeerMessage>,
    }

    impl Host for AcceptorDisk {
        fn append(&mut self, write: Write) -> Result<()> {
            if let Write::Acceptor(w) = write {
                self.appended.push(w);
            }
            Ok(())
        }
        fn start_sync(&mut self) -> Result<Sync> {
            self.syncing = self.appended.len();
            Ok(Sync::Started)
        }
        fn send(&mut self, _to: NodeId, msg: PeerMessage) {
            self.sent.push(msg);
        }
        fn fail_stop(&mut self, error: &Error) {
            panic!("the acceptor stopped: {error}");
        }
    }

    impl AcceptorHost for AcceptorDisk {
        fn read_accepted(&mut self, slot: Slot) -> Result<Value> {
            let durable = self.appended[..self.durable].iter().rev();
            let found = durable.flat_map(|w| w.accepted.iter()).find(|(s, ..)| *s == slot);
            found
                .map(|(_, _, v)| v.clone())
                .ok_or_else(|| Error::Storage(format!("slot {slot} is not on disk yet")))
        }
    }

    #[test]
    fn driver_acceptor_evicts_only_what_a_completed_sync_covered() {
        let mut core = Acceptor::default().with_hot_slots(0);
        let (mut d, mut disk) = (Driver::new(), AcceptorDisk::default());
        let b = Ballot::new(1, 1);
        let accept = |slot: Slot| AcceptorRequest::Accept {
            call: slot,
            ballot: b,
            first_slot: slot,
            values: vec![Value::Noop],
        };
        acceptor_request(&mut core, &mut d, &mut disk, 1, accept(0));
        assert_eq!(
            core.accepted().len(),
            1,
            "slot 0 is not durable yet: it stays in memory"
        );
        acceptor_request(&mut core, &mut d, &mut disk, 1, accept(1));
        disk.durable = disk.syncing;
        acceptor_synced(&mut core, &mut d, &mut disk, Ok(()));
        assert_eq!(
            core.accepted().keys().copied().collect::<Vec<_>>(),
            vec![1],
            "slot 0 durable and evicted"
        );
        // A new leader's Prepare needs no read; its Pull reads slot 0 back from the log
        // and finds slot 1 in memory.
        let b2 = Ballot::new(2, 2);
        let prepare = AcceptorRequest::Prepare {
            call: 9,
            ballot: b2,
            from_slot: 0,
        };
        acceptor_request(&mut core, &mut d, &mut disk, 2, prepare);
        disk.durable = disk.syncing;
        acceptor_synced(&mut core, &mut d, &mut disk, Ok(()));
        let pull = AcceptorRequest::Pull {
            call: 9,
            ballot: b2,
            first: 0,
            end: 2,
        };
        acceptor_request(&mut core, &mut d, &mut disk, 2, pull);
        acceptor_synced(&mut core, &mut d, &mut disk, Ok(()));
        let pulled: Vec<Ballot> = disk
            .sent
            .iter()
            .flat_map(|m| match m {
                PeerMessage::AcceptorReply(AcceptorReply::Pulled {
                    first_slot: 0,
                    values,
                    more_from: None,
                    ..
                }) => values.iter().map(|(ballot, _)| *ballot).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(pulled, vec![b, b], "the Pulled reports both slots");
    }

    #[test]
    fn driver_sends_at_once_what_reveals_no_write() {
        let (mut d, mut h) = (Driver::new(), Recorder::default());
        d.carry_out(reply(2, false), &mut h);
        assert_eq!(h.log, ["send 2"]);
    }

    #[test]
    fn driver_releases_in_place_when_the_host_synced_already() {
        let mut h = Recorder {
            sync_in_place: true,
            ..Recorder::default()
        };
        let mut d = Driver::new();
        d.carry_out(reply(2, true), &mut h);
        assert_eq!(h.log, ["append durable", "sync", "send 2"]);
        assert_eq!(d.durable_through(), 1);
    }

    #[test]
    fn driver_fails_stop_and_drops_held_effects_when_storage_fails() {
        let (mut d, mut h) = (Driver::new(), Recorder::default());
        d.carry_out(reply(2, true), &mut h);
        d.synced(Err(Error::Storage("EIO".into())), &mut h);
        d.carry_out(reply(3, false), &mut h);
        assert_eq!(h.log, ["append durable", "sync", "stop: storage: EIO"]);
        assert!(d.stopped());

        let mut h = Recorder {
            fail_append: true,
            ..Recorder::default()
        };
        let mut d = Driver::new();
        d.carry_out(reply(2, true), &mut h);
        assert_eq!(
            h.log,
            ["stop: storage: disk full"],
            "nothing leaves after a failed write"
        );
    }
}
