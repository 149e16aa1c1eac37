//! [`Ready`]: the one output type of every role core, and the rules for carrying it out.
//!
//! A core's `handle` takes one input (a message, a tick) and returns a `Ready`: what must
//! be written, what must be sent, and to whom, in the spirit of etcd raft's `Ready`. A
//! core does nothing itself; [`crate::driver::Driver`] carries a `Ready` out, the same
//! code in the node's actors and in the simulator.
//!
//! # Ordering rules
//!
//! 1. **Writes first, in order.** Every [`Write`] is appended to the node's storage
//!    before any effect of the same `Ready` takes place.
//! 2. **Durable before revealed.** A write that [`Write::must_sync`] (an acceptor's
//!    promise or acceptance, the elector's ballot) is durable before any effect of its
//!    `Ready`, or of a later `Ready` of the same role, takes place: the messages, local
//!    messages, leader change and answers wait for the sync (group commit: one sync
//!    covers every write made while the previous one ran). This is what makes an
//!    acceptor's `Promise`/`Accepted` a promise that survives a crash, and why a
//!    proposer never leads with a ballot a restart could reuse.
//! 3. **Effects in order.** A role's effects take place in the order it returned them:
//!    no later `Ready` overtakes an earlier one, even one waiting for a sync. Within one
//!    `Ready`: local messages, then the leader change, then peer messages, then the
//!    serving of reads from the decided log and of snapshot chunks, then client answers, then the reads to
//!    ask the leader again for.
//! 4. **Decided values and snapshots need not be durable at once.** A lost tail of the
//!    decided log is fetched again or recovered by phase 1 (decided values are durable at
//!    a majority of acceptors); a snapshot is made durable off the role's thread, after
//!    the decided log it covers has been synced, and the state machine is told with
//!    `SnapshotInstalled` when it is.
//! 5. **A failed write stops the role.** The core's state is then ahead of the disk, so
//!    nothing it says may leave any more: the driver drops every held effect and asks
//!    the host to stop the node (fail-stop).

use crate::messages::local::LocalMessage;
use crate::messages::{Ballot, Configuration, NodeId, PeerMessage, RequestId, Slot, Value};
use serde::{Deserialize, Serialize};

/// What a request got: the application's reply, or why it could not run.
pub type Outcome<R> = std::result::Result<R, String>;

/// What the acceptor must persist before answering.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorWrite {
    pub promised: Option<Ballot>,
    pub accepted: Vec<(Slot, Ballot, Value)>,
}

/// One write to the node's storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// The acceptor's promise and acceptances (`acceptor.wal`).
    Acceptor(AcceptorWrite),
    /// The highest ballot this node's elector used (`ballot`).
    Ballot(Ballot),
    /// Newly learned values (`decided.wal`).
    Decided(Vec<(Slot, Value)>),
    /// A snapshot of the state machine as it stands now, covering every slot below `at`
    /// (`snapshot.bin`).
    Snapshot { at: Slot },
    /// Every slot below `below` is covered by a durable snapshot: the role's log may give
    /// back the space its records of those slots take, once every write returned before
    /// this one is durable (the acceptor re-records its promise just before, so no record
    /// it still needs is lost).
    Compact { below: Slot },
    /// Bytes of a snapshot being received from peers (the learner): `data` at `offset`
    /// of the incoming snapshot covering slots below `at`. Chunks of one transfer may
    /// come in any order (a migration pulls them from several peers at once): the host
    /// writes each at its offset, growing the file as needed (a gap reads as zeros until
    /// its chunk comes). `fresh`: the first write of a new transfer, whatever its
    /// offset: the host first drops whatever the incoming file held. (Offset 0 means
    /// nothing of the kind: it may come last.)
    SnapshotChunk {
        at: Slot,
        offset: u64,
        data: Vec<u8>,
        fresh: bool,
    },
    /// The incoming snapshot covering slots below `at` is complete and checksummed (the
    /// learner): keep it for the state machine to install.
    SnapshotReceived { at: Slot },
    /// Install the received snapshot covering slots below `at` (the state machine): make
    /// it durable in place of the current one, then hand it back to the core to restore
    /// (`StateMachineInput::Restored`). A crash before the replacing rename leaves the
    /// old snapshot and logs, which still make a consistent node.
    InstallSnapshot { at: Slot },
    /// This configuration is now in force on this node (the state machine applied the
    /// StopSign that starts it, or restored a snapshot holding it): the host records it
    /// (the `membership` file, which a restart prefers to the config file) and reaches
    /// its members (the transport's addresses), before the roles hear of it.
    Membership(Configuration),
}

impl Write {
    /// Must this write be durable before the effects that follow it (rule 2)?
    pub fn must_sync(&self) -> bool {
        matches!(self, Write::Acceptor(_) | Write::Ballot(_))
    }
}

/// A `Fetch` to answer from the decided log on disk: a `Fetched` to `to` with the
/// consecutive values of slots `first..end` the log holds, at most `max_bytes` of them
/// past the first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serve {
    pub to: NodeId,
    pub first: Slot,
    pub end: Slot,
    pub max_bytes: usize,
}

/// A snapshot chunk to answer a peer's `SnapshotRead` with, from the node's durable
/// snapshot: `max_bytes` bytes from `offset` of the snapshot covering slots below `at`
/// (if the node's snapshot is another one by now, the peer is offered that one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeSnapshot {
    pub to: NodeId,
    pub at: Slot,
    pub offset: u64,
    pub max_bytes: usize,
}

/// Everything a role core asks for after one input. See the module docs for the rules
/// by which it is carried out. `R` is the application's reply type (only the state
/// machine answers clients).
#[derive(Debug, PartialEq)]
pub struct Ready<R = ()> {
    /// Writes, appended in order before anything else (rule 1).
    pub writes: Vec<Write>,
    /// Messages to other roles of this node.
    pub local: Vec<LocalMessage>,
    /// The leader this node follows changed (the elector): `Some(None)` means unknown.
    pub leader: Option<Option<NodeId>>,
    /// Messages to a role of node `.0` (this node included: it goes to the local
    /// mailbox, never the network).
    pub send: Vec<(NodeId, PeerMessage)>,
    /// Fetches to answer from the decided log on disk.
    pub serve: Vec<Serve>,
    /// Snapshot chunks to answer from the snapshot on disk.
    pub serve_snapshot: Vec<ServeSnapshot>,
    /// Client requests answered (commands applied, reads served).
    pub answers: Vec<(RequestId, Outcome<R>)>,
    /// Linearizable reads still waiting that the node asked refused to confirm (it does
    /// not lead): the node that took each asks the leader it knows again, without waiting
    /// out its retry interval.
    pub retry_reads: Vec<RequestId>,
}

impl<R> Default for Ready<R> {
    fn default() -> Self {
        Ready {
            writes: Vec::new(),
            local: Vec::new(),
            leader: None,
            send: Vec::new(),
            serve: Vec::new(),
            serve_snapshot: Vec::new(),
            answers: Vec::new(),
            retry_reads: Vec::new(),
        }
    }
}

impl<R> Ready<R> {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
            && self.local.is_empty()
            && self.leader.is_none()
            && self.send.is_empty()
            && self.serve.is_empty()
            && self.serve_snapshot.is_empty()
            && self.answers.is_empty()
            && self.retry_reads.is_empty()
    }
}
