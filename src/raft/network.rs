//! openraft's network over the project's transports: [`RaftNetworkFactory`] and
//! [`RaftNetwork`] as request/response pairs of [`RaftMessage`]s.
//!
//! **Job.** Turn an RPC call (openraft's AppendEntries, Vote, InstallSnapshot, and the
//! node's own Forward and ReadIndex) into one [`Envelope`] carrying
//! `PeerMessage::Raft(RaftMessage::Request { id, rpc, payload })`, the request
//! bincode-encoded in `payload`, and wait for the `Response` with the same `id`.
//!
//! - **Matching.** Each call registers a oneshot under a fresh id (ids start from the
//!   clock, so a response to a request of an earlier run of the node cannot match a new
//!   one); the inbound side ([`RaftNet::complete`]) completes it. The entry is removed
//!   when the call ends for any reason (answer, timeout, the caller dropped), so
//!   nothing leaks.
//! - **Failures.** No answer within the call's time: `RPCError::Timeout`; after
//!   [`UNREACHABLE_AFTER`] such timeouts in a row to a peer, `RPCError::Unreachable`,
//!   so that openraft backs off ([`RaftNetwork::backoff`]) instead of re-sending to a
//!   dead node at every heartbeat. An answer that does not decode counts as a network
//!   error.
//! - **Size.** An AppendEntries whose encoding exceeds the message budget
//!   (`RaftConfig::max_message_bytes`) is not sent: openraft is told `PayloadTooLarge`
//!   with half the entries as its hint, and retries with fewer. Snapshot chunks are cut
//!   by openraft to `snapshot_max_chunk_size`, set below the same budget.
//! - **Counters.** Requests and responses sent and received, per RPC kind, for the
//!   evaluation's messages per command.
//!
//! The serving side (what a node does with a request) is in [`super::node`].
//!
//! **Left out.** No retry inside an RPC (openraft decides), no streaming of snapshots
//! (chunks, as openraft's `Chunked` sends them).

use super::types::TypeConfig;
use crate::messages::{Envelope, NodeId, PeerMessage, RaftMessage, codec, raft::RaftRpc};
use crate::net::Transport;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{EmptyNode, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// Timeouts in a row to one peer after which it is reported unreachable.
pub const UNREACHABLE_AFTER: u32 = 3;

/// The RPC kinds, in counter order.
const KINDS: [RaftRpc; 5] = [
    RaftRpc::AppendEntries,
    RaftRpc::Vote,
    RaftRpc::InstallSnapshot,
    RaftRpc::Forward,
    RaftRpc::ReadIndex,
];

fn kind_index(rpc: RaftRpc) -> usize {
    match rpc {
        RaftRpc::AppendEntries => 0,
        RaftRpc::Vote => 1,
        RaftRpc::InstallSnapshot => 2,
        RaftRpc::Forward => 3,
        RaftRpc::ReadIndex => 4,
    }
}

/// The name of an RPC kind in counters.
pub fn kind_name(rpc: RaftRpc) -> &'static str {
    match rpc {
        RaftRpc::AppendEntries => "append_entries",
        RaftRpc::Vote => "vote",
        RaftRpc::InstallSnapshot => "install_snapshot",
        RaftRpc::Forward => "forward",
        RaftRpc::ReadIndex => "read_index",
    }
}

/// Messages of one kind: requests and responses, each way.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct MessageCounts {
    pub requests_sent: u64,
    pub requests_received: u64,
    pub responses_sent: u64,
    pub responses_received: u64,
}

#[derive(Default)]
struct Counters {
    requests_sent: [AtomicU64; 5],
    requests_received: [AtomicU64; 5],
    responses_sent: [AtomicU64; 5],
    responses_received: [AtomicU64; 5],
}

/// Why a call got no answer.
#[derive(Debug)]
pub enum CallError {
    /// Nothing came back in time.
    Timeout,
    /// The node is stopping.
    Closed,
}

/// A call waiting for its answer: its kind (for the counters) and where the answer goes.
type Waiting = (RaftRpc, oneshot::Sender<Vec<u8>>);

/// One node's end of the Raft traffic: outgoing calls and their pending answers.
pub struct RaftNet {
    me: NodeId,
    transport: Arc<dyn Transport>,
    next_id: AtomicU64,
    /// Calls waiting for an answer: id -> (kind, sender).
    pending: Mutex<HashMap<u64, Waiting>>,
    max_message_bytes: usize,
    /// How long openraft waits between retries to an unreachable peer.
    backoff: Duration,
    counters: Counters,
}

/// Removes a call's pending entry when the call ends, however it ends.
struct PendingGuard<'a> {
    net: &'a RaftNet,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.net
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl RaftNet {
    pub fn new(me: NodeId, transport: Arc<dyn Transport>, max_message_bytes: usize, backoff: Duration) -> RaftNet {
        // Ids unique across restarts of the node: start from the clock.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        RaftNet {
            me,
            transport,
            next_id: AtomicU64::new(start),
            pending: Mutex::new(HashMap::new()),
            max_message_bytes,
            backoff,
            counters: Counters::default(),
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Sends `payload` as an `rpc` request to `to` and waits up to `timeout` for the answer.
    pub async fn call(
        &self,
        to: NodeId,
        rpc: RaftRpc,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (rpc, tx));
        let _guard = PendingGuard { net: self, id };
        self.counters.requests_sent[kind_index(rpc)].fetch_add(1, Ordering::Relaxed);
        self.transport.send(Envelope {
            from: self.me,
            to,
            msg: PeerMessage::Raft(RaftMessage::Request { id, rpc, payload }),
        });
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(CallError::Closed),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Hands an answer to the call waiting for it (a late or unknown one is dropped).
    pub fn complete(&self, from: NodeId, id: u64, payload: Vec<u8>) {
        let waiting = self.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        match waiting {
            Some((rpc, tx)) => {
                self.counters.responses_received[kind_index(rpc)].fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(payload);
            }
            None => tracing::trace!(
                node = self.me,
                from,
                id,
                "raft: an answer nobody waits for (late), dropped"
            ),
        }
    }

    /// Counts a request received.
    pub fn note_request(&self, rpc: RaftRpc) {
        self.counters.requests_received[kind_index(rpc)].fetch_add(1, Ordering::Relaxed);
    }

    /// Sends the answer to request `id` of `to`.
    pub fn respond(&self, to: NodeId, id: u64, rpc: RaftRpc, payload: Vec<u8>) {
        self.counters.responses_sent[kind_index(rpc)].fetch_add(1, Ordering::Relaxed);
        self.transport.send(Envelope {
            from: self.me,
            to,
            msg: PeerMessage::Raft(RaftMessage::Response { id, payload }),
        });
    }

    /// Messages so far, per RPC kind (by name).
    pub fn counts(&self) -> BTreeMap<String, MessageCounts> {
        let c = &self.counters;
        KINDS
            .iter()
            .map(|&rpc| {
                let i = kind_index(rpc);
                let n = MessageCounts {
                    requests_sent: c.requests_sent[i].load(Ordering::Relaxed),
                    requests_received: c.requests_received[i].load(Ordering::Relaxed),
                    responses_sent: c.responses_sent[i].load(Ordering::Relaxed),
                    responses_received: c.responses_received[i].load(Ordering::Relaxed),
                };
                (kind_name(rpc).to_string(), n)
            })
            .collect()
    }

    /// Calls waiting for an answer (tests: nothing leaks).
    pub fn pending_calls(&self) -> usize {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Makes a [`Connection`] per peer for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    pub net: Arc<RaftNet>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &EmptyNode) -> Connection {
        Connection {
            net: self.net.clone(),
            target,
            timeouts_in_a_row: 0,
        }
    }
}

/// openraft's client to one peer.
pub struct Connection {
    net: Arc<RaftNet>,
    target: NodeId,
    timeouts_in_a_row: u32,
}

/// A call error as openraft's.
type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, EmptyNode, RaftError<NodeId, E>>>;

/// A message as a `std::error::Error`, for openraft's error wrappers.
#[derive(Debug)]
struct Message(String);

impl std::error::Error for Message {}

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Connection {
    /// One openraft RPC: encode, call, decode the remote result.
    async fn rpc<Req, Resp, E>(
        &mut self,
        rpc: RaftRpc,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = encode_request(request).map_err(RPCError::Network)?;
        self.call(rpc, action, payload, option).await
    }

    /// Sends an encoded request and decodes the remote result.
    async fn call<Resp, E>(
        &mut self,
        rpc: RaftRpc,
        action: RPCTypes,
        payload: Vec<u8>,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        match self.net.call(self.target, rpc, payload, timeout).await {
            Ok(answer) => {
                self.timeouts_in_a_row = 0;
                let result: Result<Resp, RaftError<NodeId, E>> = codec::decode(&answer).map_err(|e| {
                    RPCError::Network(NetworkError::new(&Message(format!(
                        "{} answer from node {} does not decode: {e}",
                        kind_name(rpc),
                        self.target
                    ))))
                })?;
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Err(CallError::Closed) => Err(RPCError::Unreachable(Unreachable::new(&Message(
                "node stopping".into(),
            )))),
            Err(CallError::Timeout) => {
                self.timeouts_in_a_row = self.timeouts_in_a_row.saturating_add(1);
                if self.timeouts_in_a_row >= UNREACHABLE_AFTER {
                    let why = format!(
                        "no answer from node {} to {} calls in a row",
                        self.target, self.timeouts_in_a_row
                    );
                    Err(RPCError::Unreachable(Unreachable::new(&Message(why))))
                } else {
                    Err(RPCError::Timeout(Timeout {
                        action,
                        id: self.net.me,
                        target: self.target,
                        timeout,
                    }))
                }
            }
        }
    }
}

/// A request's payload; encoding our own types only fails on a bug.
fn encode_request<Req: Serialize>(request: &Req) -> Result<Vec<u8>, NetworkError> {
    codec::encode(request).map_err(|e| NetworkError::new(&Message(e.to_string())))
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        // Encoded once: the size check and the message use the same bytes.
        let payload = encode_request(&rpc).map_err(RPCError::Network)?;
        if rpc.entries.len() > 1 && payload.len() > self.net.max_message_bytes {
            let hint = (rpc.entries.len() as u64 / 2).max(1);
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint)));
        }
        self.call(RaftRpc::AppendEntries, RPCTypes::AppendEntries, payload, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(RaftRpc::InstallSnapshot, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(RaftRpc::Vote, RPCTypes::Vote, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.net.backoff))
    }
}
