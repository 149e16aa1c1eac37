//! # TCP transport: envelopes between processes
//!
//! [`TcpTransport`] carries a node's [`Envelope`]s to the other nodes of the cluster over
//! TCP, and hands the envelopes it receives to the node's [`Inbound`] callback (which puts
//! each one in the mailbox of the role that handles it). Like every transport it is best
//! effort: Paxos tolerates lost, late and reordered messages, so when in doubt this
//! module drops a message and counts it rather than block or buffer without bound.
//!
//! ## Frame format
//!
//! Every frame is a 4-byte big-endian length followed by that many payload bytes
//! (tokio-util's [`LengthDelimitedCodec`] with its defaults). The length is checked
//! against the limit *before* anything is allocated for the payload (the codec compares
//! the prefix with `max_frame_length` in its header decoding, then reserves), so a
//! prefix claiming 4 GiB costs nothing but the connection. The limit is
//! [`MAX_HANDSHAKE_FRAME`] (1 KiB) until the handshake is done, then
//! [`TcpConfig::max_frame`] (4 MiB by default).
//!
//! - The **first frame** of a connection, from the side that dialed, is the handshake:
//!   `b"RPAX"` (4 bytes), the protocol version ([`PROTOCOL_VERSION`], `u16` big-endian),
//!   then the bincode 2 encoding ([`crate::messages::codec`]) of `(cluster_id: String, node_id: u64)`.
//!   The version sits in a fixed place so that a node can refuse a peer of another
//!   version even if the rest of that peer's handshake looks different. See [`Handshake`].
//! - The accepting side checks the version, the cluster id and that the node id is one
//!   of its peers (or, with [`TcpConfig::accept_unknown`], any node but itself: see
//!   "Peers change" below); on any mismatch it logs a warning and closes the
//!   connection. Otherwise it answers with its own handshake (same format), which the
//!   dialer checks the same way, and that the node id is the peer it meant to reach.
//! - Every **later frame** from the dialer is one [`Envelope`], bincode 2 encoded. The
//!   acceptor drops (with a warning) an envelope whose `from` is not the handshake's node
//!   id or whose `to` is not this node. The acceptor never sends anything after its
//!   handshake; the dialer treats anything it does send as a protocol violation.
//!
//! ## Connection model: one direction per connection
//!
//! Each node dials every peer once and uses that connection only for its own traffic to
//! that peer; it receives through the connections the peers dialed to it. So between
//! two nodes there are two connections, one per direction, and neither side ever has
//! to decide which of two simultaneous dials wins.
//!
//! - **Outbound**: one actor per peer (`PeerLink`) owns a bounded queue of encoded
//!   frames ([`TcpConfig::queue_capacity`]). [`Transport::send`] encodes the envelope on
//!   the caller's thread and `try_send`s it: when the queue is full (the peer is down or
//!   slow) the message is dropped and counted, so `send` never blocks and memory does
//!   not grow while a peer is away. The actor dials, handshakes, then writes queued
//!   frames in batches; when the connection fails it redials after a capped exponential
//!   backoff (50 ms doubling up to [`TcpConfig::backoff_max`], with jitter). Messages
//!   still queued when a connection breaks are sent on the next one.
//! - **Inbound**: a listener actor accepts connections and starts one actor per
//!   connection (`InboundConn`), which reads frames as an actix stream, checks the
//!   handshake and then each envelope, and calls the node's [`Inbound`] callback. A newer
//!   connection from the same node replaces an older one (the older is closed), which
//!   clears away half-open connections left by a peer that restarted.
//!
//! ## Peers change (membership)
//!
//! The peers are not fixed: when the node applies a configuration (or a joining node
//! learns the one that adds it), [`TcpTransport::set_peers`] (through
//! [`Transport::set_members`]) starts dialing the new peers and stops dialing the ones
//! that left: their queue is dropped, so their link ends once it has written what was
//! already queued, or at once if it is not connected. A peer whose address changed is
//! dialed afresh at the new one.
//!
//! Inbound, a node of a changing cluster must accept nodes it does not know yet: a new
//! member dials the old ones before they applied the StopSign that adds it, and a
//! joining node hears from the members before it holds any configuration. With
//! [`TcpTransport`]'s `accept_unknown` (on in `rolepax-node`), a handshake from any node id
//! other than this node's own is accepted if the cluster id matches, and logged. A
//! joining node without a configuration file does not know the cluster id until a
//! member tells it ([`TcpTransport::set_cluster_id`]); until then its id is empty and it
//! accepts no one.
//!
//! ## Bad input
//!
//! Whatever arrives on the port can close only its own connection: garbage, a frame
//! over the limit, a bad handshake (wrong magic, version or cluster id, unknown node id),
//! an undecodable envelope, no handshake within [`TcpConfig::handshake_timeout`], or a
//! connection that goes silent in the middle of a frame for that long. Each is logged
//! with `tracing::warn!` and counted in [`TransportCounters::rejected_connections`]; the
//! node keeps serving every other connection. At most [`MAX_PENDING_HANDSHAKES`]
//! connections may be waiting for their handshake at once; more are closed at once.
//! Nothing that came from the network is `unwrap`ped.
//!
//! ## Deliberately left out
//!
//! No TLS and no authentication: the handshake's cluster id and node id catch
//! misconfiguration, not attackers. Anyone who can reach the peer port can pose as a
//! node, so keep that port on a trusted network. No compression, no message priority,
//! no acknowledgements or retransmission (Paxos retries at its own level).

use super::{Inbound, Transport};
use crate::messages::codec;
use crate::messages::{Configuration, Envelope, NodeId};
use crate::roles::rng::SeededRng;
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Decoder, FramedRead, FramedWrite, LengthDelimitedCodec};

/// The version of the wire protocol; peers of another version are refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// The first four bytes of every handshake.
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"RPAX";

/// The frame limit until the handshake is done (a handshake is a few dozen bytes).
pub const MAX_HANDSHAKE_FRAME: usize = 1024;

/// The longest cluster id a handshake may carry.
pub const MAX_CLUSTER_ID_LEN: usize = 256;

/// The cluster id of a [`TcpConfig::new`] (and of a configuration file without one).
pub const DEFAULT_CLUSTER_ID: &str = "rolepax";

/// At most this many accepted connections may wait for their handshake at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// The first reconnect delay; it doubles per failure up to `backoff_max`.
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// How many queued frames the writer takes before flushing.
const WRITE_BATCH: usize = 256;

/// The settings of one node's TCP transport.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    pub id: NodeId,
    /// Must be the same on every node; a peer with another cluster id is refused.
    pub cluster_id: String,
    /// This node's peer address (port 0 picks a free port; see [`TcpTransport::local_addr`]).
    pub listen: SocketAddr,
    /// The other nodes (not this one) and their peer addresses.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The largest frame (one encoded envelope) sent or accepted.
    pub max_frame: usize,
    /// Outbound messages queued per peer; more are dropped.
    pub queue_capacity: usize,
    /// The cap of the reconnect backoff.
    pub backoff_max: Duration,
    /// How long a handshake may take; also how long a connection may stay silent in the
    /// middle of a frame.
    pub handshake_timeout: Duration,
    /// Accept inbound connections from nodes that are not (yet) peers, if their cluster
    /// id matches (a cluster whose membership changes; see the module docs). Off in
    /// [`TcpConfig::new`]: a fixed cluster refuses unknown node ids.
    pub accept_unknown: bool,
}

impl TcpConfig {
    /// The defaults: cluster id [`DEFAULT_CLUSTER_ID`], frames of at most
    /// [`codec::DEFAULT_MAX_FRAME`], 4096 queued messages per peer, 2 s backoff cap, 5 s
    /// handshake timeout.
    pub fn new(id: NodeId, listen: SocketAddr, peers: BTreeMap<NodeId, SocketAddr>) -> Self {
        TcpConfig {
            id,
            cluster_id: DEFAULT_CLUSTER_ID.to_string(),
            listen,
            peers,
            max_frame: codec::DEFAULT_MAX_FRAME,
            queue_capacity: 4096,
            backoff_max: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            accept_unknown: false,
        }
    }

    fn validate(&self) -> io::Result<()> {
        let invalid = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if self.peers.contains_key(&self.id) {
            return invalid(format!("tcp transport: peers must not include this node ({})", self.id));
        }
        if self.cluster_id.len() > MAX_CLUSTER_ID_LEN {
            return invalid(format!(
                "tcp transport: cluster id is {} bytes, at most {MAX_CLUSTER_ID_LEN} allowed",
                self.cluster_id.len()
            ));
        }
        if self.max_frame < 64 || self.max_frame > codec::DECODE_LIMIT {
            return invalid(format!(
                "tcp transport: max_frame {} is outside 64..={}",
                self.max_frame,
                codec::DECODE_LIMIT
            ));
        }
        if self.queue_capacity == 0 {
            return invalid("tcp transport: queue_capacity must be at least 1".into());
        }
        if self.handshake_timeout.is_zero() {
            return invalid("tcp transport: handshake_timeout must be above zero".into());
        }
        Ok(())
    }
}

/// Counters of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerCounters {
    /// The outbound connection to this peer is up (handshake done).
    pub connected: bool,
    /// Envelopes to this peer written to its connection.
    pub sent: u64,
    /// Envelopes from this peer handed to the node.
    pub received: u64,
    /// Envelopes to or from this peer lost here (queue full, too large, misaddressed,
    /// no inbound callback yet).
    pub dropped: u64,
}

/// What the transport has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TransportCounters {
    pub sent: u64,
    pub received: u64,
    /// Includes messages addressed to a node that is not a peer.
    pub dropped: u64,
    /// Connections closed for bad input (bad handshake, bad or oversized frame, silence
    /// mid-frame or before the handshake, too many pending handshakes).
    pub rejected_connections: u64,
    pub peers: BTreeMap<NodeId, PeerCounters>,
}

#[derive(Default)]
struct PeerStats {
    connected: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
}

/// What the actors share with the transport. It holds no queue senders, so the queues
/// close when the [`TcpTransport`] is dropped.
struct Shared {
    id: NodeId,
    /// Empty: not known yet (a joining node), and no handshake is accepted.
    cluster_id: RwLock<String>,
    max_frame: usize,
    handshake_timeout: Duration,
    backoff_max: Duration,
    accept_unknown: bool,
    /// The counters of every peer, and of nodes that connected without being one.
    stats: RwLock<BTreeMap<NodeId, Arc<PeerStats>>>,
    totals: Totals,
    inbound: RwLock<Option<Inbound>>,
    /// The connection serial of the newest handshaken inbound connection per peer.
    current_inbound: Mutex<BTreeMap<NodeId, u64>>,
    next_serial: AtomicU64,
    pending_handshakes: AtomicUsize,
    shutdown: AtomicBool,
}

/// A lock's guard even if a thread panicked while holding it (the data are counters and
/// maps that stay consistent).
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn count_sent(&self, stats: &PeerStats) {
        self.totals.sent.fetch_add(1, Ordering::Relaxed);
        stats.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn count_received(&self, stats: &PeerStats) {
        self.totals.received.fetch_add(1, Ordering::Relaxed);
        stats.received.fetch_add(1, Ordering::Relaxed);
    }

    /// A message to or from `stats`'s peer lost (`None`: a node that is no peer).
    fn count_dropped(&self, stats: Option<&PeerStats>) {
        self.totals.dropped.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = stats {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn count_rejected(&self) {
        self.totals.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of `peer`, made if it has none yet.
    fn stats_of(&self, peer: NodeId) -> Arc<PeerStats> {
        if let Some(s) = read(&self.stats).get(&peer) {
            return s.clone();
        }
        write(&self.stats).entry(peer).or_default().clone()
    }

    fn cluster_id(&self) -> String {
        read(&self.cluster_id).clone()
    }

    fn inbound(&self) -> Option<Inbound> {
        self.inbound
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn is_current_inbound(&self, peer: NodeId, serial: u64) -> bool {
        self.current_inbound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&peer)
            .is_none_or(|&s| s == serial)
    }

    fn hello(&self) -> Handshake {
        Handshake::new(self.cluster_id(), self.id)
    }
}

/// The way to one peer: where it is, its queue (dropping the sender ends its link), and
/// its counters.
struct Link {
    addr: SocketAddr,
    queue: mpsc::Sender<Bytes>,
    stats: Arc<PeerStats>,
}

/// A node's TCP transport. See the module documentation.
pub struct TcpTransport {
    shared: Arc<Shared>,
    links: RwLock<BTreeMap<NodeId, Link>>,
    queue_capacity: usize,
    /// Where the outbound links run (the arbiter that started the transport), also for
    /// peers added later from another thread.
    arbiter: actix::ArbiterHandle,
    local_addr: SocketAddr,
    /// Dropping it stops the listener.
    _stop: watch::Sender<bool>,
}

impl fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTransport")
            .field("id", &self.shared.id)
            .field("local_addr", &self.local_addr)
            .field("peers", &read(&self.links).keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TcpTransport {
    /// Binds the listener and starts the outbound connection actors. Must be called
    /// inside a running actix System; the actors run on the current arbiter.
    pub async fn start(cfg: TcpConfig) -> io::Result<Arc<TcpTransport>> {
        cfg.validate()?;
        if actix_rt::System::try_current().is_none() {
            return Err(io::Error::other(
                "tcp transport: TcpTransport::start must run inside an actix System",
            ));
        }
        let listener = TcpListener::bind(cfg.listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            id: cfg.id,
            cluster_id: RwLock::new(cfg.cluster_id.clone()),
            max_frame: cfg.max_frame,
            handshake_timeout: cfg.handshake_timeout,
            backoff_max: cfg.backoff_max.max(BACKOFF_MIN),
            accept_unknown: cfg.accept_unknown,
            stats: RwLock::new(BTreeMap::new()),
            totals: Totals::default(),
            inbound: RwLock::new(None),
            current_inbound: Mutex::new(BTreeMap::new()),
            next_serial: AtomicU64::new(1),
            pending_handshakes: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let listener_shared = shared.clone();
        Listener::create(move |ctx| {
            ctx.add_stream(accept_stream(listener, stop_rx));
            Listener {
                shared: listener_shared,
            }
        });
        tracing::info!(node = cfg.id, %local_addr, peers = ?cfg.peers, "tcp transport listening");
        let transport = TcpTransport {
            shared,
            links: RwLock::new(BTreeMap::new()),
            queue_capacity: cfg.queue_capacity,
            arbiter: actix::Arbiter::current(),
            local_addr,
            _stop: stop_tx,
        };
        transport.set_peers(cfg.peers);
        Ok(Arc::new(transport))
    }

    /// The peers become `peers` (this node's own id, if there, is left out): new ones
    /// are dialed, the queues of those that left are dropped (their links end), and a
    /// peer at a new address is dialed there afresh. Callable from any thread.
    pub fn set_peers(&self, mut peers: BTreeMap<NodeId, SocketAddr>) {
        peers.remove(&self.shared.id);
        let mut links = write(&self.links);
        let before: Vec<NodeId> = links.keys().copied().collect();
        links.retain(|id, link| peers.get(id) == Some(&link.addr));
        for (&peer, &addr) in &peers {
            if links.contains_key(&peer) {
                continue;
            }
            let (tx, rx) = mpsc::channel(self.queue_capacity);
            let stats = self.shared.stats_of(peer);
            links.insert(
                peer,
                Link {
                    addr,
                    queue: tx,
                    stats: stats.clone(),
                },
            );
            let link = PeerLink {
                shared: self.shared.clone(),
                peer,
                addr,
                stats,
                rx: Some(rx),
                backoff: BACKOFF_MIN,
                failures: 0,
                rng: SeededRng::new((self.shared.id << 32) ^ peer ^ 0x7c9_5eed),
            };
            PeerLink::start_in_arbiter(&self.arbiter, move |_| link);
        }
        let gone: Vec<NodeId> = before.iter().copied().filter(|p| !peers.contains_key(p)).collect();
        if !gone.is_empty() {
            let mut stats = write(&self.shared.stats);
            for peer in &gone {
                stats.remove(peer);
            }
        }
        if !before_is(&before, &peers) {
            tracing::info!(node = self.shared.id, peers = ?peers, left = ?gone, "tcp: peers changed");
        }
    }

    /// The peers and their addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        read(&self.links).iter().map(|(&id, l)| (id, l.addr)).collect()
    }

    /// Sets the cluster id handshakes carry and require (a joining node learns it from a
    /// member). Connections already made are kept.
    pub fn set_cluster_id(&self, cluster_id: &str) {
        let mut id = write(&self.shared.cluster_id);
        if *id != cluster_id {
            tracing::info!(node = self.shared.id, cluster = cluster_id, "tcp: cluster id set");
            *id = cluster_id.to_string();
        }
    }

    /// Where inbound envelopes go; until set, inbound messages are dropped (counted).
    /// Setting it again replaces the previous callback.
    pub fn set_inbound(&self, inbound: Inbound) {
        *self
            .shared
            .inbound
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(inbound);
    }

    pub fn counters(&self) -> TransportCounters {
        let s = &self.shared;
        TransportCounters {
            sent: s.totals.sent.load(Ordering::Relaxed),
            received: s.totals.received.load(Ordering::Relaxed),
            dropped: s.totals.dropped.load(Ordering::Relaxed),
            rejected_connections: s.totals.rejected.load(Ordering::Relaxed),
            peers: read(&s.stats)
                .iter()
                .map(|(&id, p)| {
                    (
                        id,
                        PeerCounters {
                            connected: p.connected.load(Ordering::Relaxed),
                            sent: p.sent.load(Ordering::Relaxed),
                            received: p.received.load(Ordering::Relaxed),
                            dropped: p.dropped.load(Ordering::Relaxed),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The address the listener is bound to (with the real port if `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Whether the peer ids `before` are exactly those of `peers`.
fn before_is(before: &[NodeId], peers: &BTreeMap<NodeId, SocketAddr>) -> bool {
    before.len() == peers.len() && before.iter().zip(peers.keys()).all(|(a, b)| a == b)
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        // The queues close with `self.links`, the listener with `_stop`; inbound
        // connections notice this flag at their next watchdog tick.
        self.shared.shutdown.store(true, Ordering::Relaxed);
    }
}

impl Transport for TcpTransport {
    fn send(&self, envelope: Envelope) {
        let to = envelope.to;
        let links = read(&self.links);
        let Some(link) = links.get(&to) else {
            tracing::debug!(node = self.shared.id, to, "tcp: no such peer, message dropped");
            self.shared.count_dropped(None);
            return;
        };
        let stats = Some(&*link.stats);
        let frame = match codec::encode(&envelope) {
            Ok(bytes) if bytes.len() <= self.shared.max_frame => Bytes::from(bytes),
            Ok(bytes) => {
                tracing::warn!(
                    node = self.shared.id,
                    to,
                    role = envelope.msg.role(),
                    len = bytes.len(),
                    max_frame = self.shared.max_frame,
                    "tcp: message larger than max_frame, dropped"
                );
                self.shared.count_dropped(stats);
                return;
            }
            Err(e) => {
                tracing::warn!(node = self.shared.id, to, error = %e, "tcp: cannot encode message, dropped");
                self.shared.count_dropped(stats);
                return;
            }
        };
        if link.queue.try_send(frame).is_err() {
            // Full (the peer is down or slow) or closed (shutting down): Paxos copes.
            self.shared.count_dropped(stats);
        }
    }

    /// The members of `config` other than this node, at their peer addresses (an
    /// address that does not parse is left out, with a warning).
    fn set_members(&self, config: &Configuration) {
        let mut peers = BTreeMap::new();
        for (&id, member) in &config.members {
            if id == self.shared.id {
                continue;
            }
            match member.peer_addr.parse::<SocketAddr>() {
                Ok(addr) => {
                    peers.insert(id, addr);
                }
                Err(_) => tracing::warn!(
                    node = self.shared.id,
                    peer = id,
                    addr = member.peer_addr,
                    "tcp: a member's peer address is not IP:port; it cannot be reached"
                ),
            }
        }
        self.set_peers(peers);
    }

    fn set_cluster_id(&self, cluster_id: &str) {
        TcpTransport::set_cluster_id(self, cluster_id);
    }
}

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

/// The first frame of a connection, in both directions. See the module documentation
/// for its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub version: u16,
    pub cluster_id: String,
    pub node_id: NodeId,
}

/// Why a handshake frame was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// Shorter than magic and version.
    Truncated(usize),
    /// Does not start with [`HANDSHAKE_MAGIC`]: not a rolepax peer.
    BadMagic,
    /// A protocol version other than [`PROTOCOL_VERSION`].
    Version(u16),
    /// The cluster id and node id do not decode.
    Body(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Truncated(n) => write!(f, "handshake of {n} bytes is too short"),
            HandshakeError::BadMagic => write!(f, "not a rolepax handshake (bad magic)"),
            HandshakeError::Version(v) => write!(f, "protocol version {v}, this node speaks {PROTOCOL_VERSION}"),
            HandshakeError::Body(e) => write!(f, "malformed handshake: {e}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl Handshake {
    /// A handshake of this protocol version.
    pub fn new(cluster_id: impl Into<String>, node_id: NodeId) -> Self {
        Handshake {
            version: PROTOCOL_VERSION,
            cluster_id: cluster_id.into(),
            node_id,
        }
    }

    /// The frame payload (without the length prefix). Writes `self.version` as is.
    pub fn encode(&self) -> Result<Vec<u8>, bincode::error::EncodeError> {
        let body = codec::encode(&(&self.cluster_id, self.node_id))?;
        let mut out = Vec::with_capacity(6 + body.len());
        out.extend_from_slice(&HANDSHAKE_MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Parses a frame payload; a version other than [`PROTOCOL_VERSION`] is an error
    /// (the body is not even looked at, its layout may differ).
    pub fn decode(payload: &[u8]) -> Result<Handshake, HandshakeError> {
        let (magic, rest) = payload
            .split_first_chunk::<4>()
            .ok_or(HandshakeError::Truncated(payload.len()))?;
        if *magic != HANDSHAKE_MAGIC {
            return Err(HandshakeError::BadMagic);
        }
        let (version, body) = rest
            .split_first_chunk::<2>()
            .ok_or(HandshakeError::Truncated(payload.len()))?;
        let version = u16::from_be_bytes(*version);
        if version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version(version));
        }
        let (cluster_id, node_id): (String, NodeId) =
            codec::decode(body).map_err(|e| HandshakeError::Body(e.to_string()))?;
        Ok(Handshake {
            version,
            cluster_id,
            node_id,
        })
    }
}

/// Why an inbound envelope frame was not delivered.
#[derive(Debug, PartialEq, Eq)]
enum EnvelopeError {
    /// Not an envelope at all: the connection is closed.
    Malformed(String),
    /// A well-formed envelope with the wrong addresses: dropped, the connection stays.
    Misaddressed { from: NodeId, to: NodeId },
}

/// Decodes one envelope frame that arrived on the connection of `peer` to node `me`.
fn parse_envelope(frame: &[u8], peer: NodeId, me: NodeId) -> Result<Envelope, EnvelopeError> {
    let envelope: Envelope = codec::decode(frame).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if envelope.from != peer || envelope.to != me {
        return Err(EnvelopeError::Misaddressed {
            from: envelope.from,
            to: envelope.to,
        });
    }
    Ok(envelope)
}

fn frame_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_frame)
        .new_codec()
}

// ---------------------------------------------------------------------------------------
// Inbound framing with progress tracking
// ---------------------------------------------------------------------------------------

/// What an inbound connection's actor needs to know about its decoder, which lives
/// inside the actix stream (same thread, hence `Rc`/`Cell`).
struct FrameProgress {
    /// The current frame limit (raised after the handshake).
    limit: Cell<usize>,
    /// Some bytes of a frame have arrived, but not the whole frame.
    mid_frame: Cell<bool>,
    /// When bytes last arrived.
    last_byte: Cell<Instant>,
}

impl FrameProgress {
    fn new(limit: usize) -> Rc<Self> {
        Rc::new(FrameProgress {
            limit: Cell::new(limit),
            mid_frame: Cell::new(false),
            last_byte: Cell::new(Instant::now()),
        })
    }
}

/// [`LengthDelimitedCodec`] that also reports whether it is in the middle of a frame
/// and when bytes last came in (the codec keeps a consumed header in private state, so
/// this counts consumed header bytes itself).
struct FrameDecoder {
    codec: LengthDelimitedCodec,
    progress: Rc<FrameProgress>,
    /// Bytes of the current frame the codec consumed without yielding a frame.
    consumed: usize,
    /// The buffer length the last call left behind.
    left: usize,
}

impl FrameDecoder {
    fn new(progress: Rc<FrameProgress>) -> Self {
        FrameDecoder {
            codec: frame_codec(progress.limit.get()),
            progress,
            consumed: 0,
            left: 0,
        }
    }
}

impl Decoder for FrameDecoder {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        if src.len() > self.left {
            self.progress.last_byte.set(Instant::now());
        }
        self.codec.set_max_frame_length(self.progress.limit.get());
        let before = src.len();
        let result = self.codec.decode(src);
        match &result {
            Ok(Some(_)) => self.consumed = 0,
            Ok(None) => self.consumed += before.saturating_sub(src.len()),
            Err(_) => {}
        }
        self.left = src.len();
        self.progress.mid_frame.set(self.consumed > 0 || !src.is_empty());
        result
    }
}

// ---------------------------------------------------------------------------------------
// Listener actor
// ---------------------------------------------------------------------------------------

type Accepted = io::Result<(TcpStream, SocketAddr)>;

/// Accepted connections until the transport is dropped.
fn accept_stream(listener: TcpListener, stop: watch::Receiver<bool>) -> impl futures_util::Stream<Item = Accepted> {
    futures_util::stream::unfold((listener, stop), |(listener, mut stop)| async move {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return None,
        };
        if accepted.is_err() {
            // Out of file descriptors and the like: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some((accepted, (listener, stop)))
    })
}

struct Listener {
    shared: Arc<Shared>,
}

impl Actor for Listener {
    type Context = Context<Self>;
}

impl StreamHandler<Accepted> for Listener {
    fn handle(&mut self, item: Accepted, _ctx: &mut Context<Self>) {
        let (stream, remote) = match item {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(node = self.shared.id, error = %e, "tcp: accept failed");
                return;
            }
        };
        let pending = self.shared.pending_handshakes.fetch_add(1, Ordering::Relaxed);
        if pending >= MAX_PENDING_HANDSHAKES {
            self.shared.pending_handshakes.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                node = self.shared.id,
                %remote,
                "tcp: too many connections waiting for their handshake, closing this one"
            );
            self.shared.count_rejected();
            return;
        }
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let shared = self.shared.clone();
        let serial = shared.next_serial.fetch_add(1, Ordering::Relaxed);
        InboundConn::create(move |ctx| {
            let progress = FrameProgress::new(MAX_HANDSHAKE_FRAME);
            ctx.add_stream(FramedRead::new(read_half, FrameDecoder::new(progress.clone())));
            InboundConn {
                shared,
                remote,
                serial,
                progress,
                write_half: Some(write_half),
                writer: None,
                peer: None,
                stats: None,
                opened: Instant::now(),
                closing: false,
                pending: true,
                misaddressed: 0,
            }
        });
    }
}

// ---------------------------------------------------------------------------------------
// Inbound connection actor
// ---------------------------------------------------------------------------------------

type FrameSink = FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>;

/// One accepted connection: handshake, then envelopes into the node.
struct InboundConn {
    shared: Arc<Shared>,
    remote: SocketAddr,
    serial: u64,
    progress: Rc<FrameProgress>,
    /// Until the handshake answer is written.
    write_half: Option<OwnedWriteHalf>,
    /// Kept open after the answer: closing it tells the dialer the connection is gone.
    writer: Option<actix::io::SinkWrite<Bytes, FrameSink>>,
    /// The node at the other end, once it handshook, and its counters.
    peer: Option<NodeId>,
    stats: Option<Arc<PeerStats>>,
    opened: Instant,
    closing: bool,
    /// Counted in `pending_handshakes`.
    pending: bool,
    misaddressed: u64,
}

impl Actor for InboundConn {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = (self.shared.handshake_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        ctx.run_interval(every, |act, ctx| act.watchdog(ctx));
    }
}

impl Drop for InboundConn {
    fn drop(&mut self) {
        self.release_pending();
    }
}

impl InboundConn {
    fn release_pending(&mut self) {
        if self.pending {
            self.pending = false;
            self.shared.pending_handshakes.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Closes the connection for bad input.
    fn reject(&mut self, ctx: &mut Context<Self>, reason: &str) {
        tracing::warn!(
            node = self.shared.id,
            remote = %self.remote,
            peer = ?self.peer,
            reason,
            "tcp: bad input, closing connection"
        );
        self.shared.count_rejected();
        self.close(ctx);
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        ctx.stop();
    }

    fn watchdog(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        let limit = self.shared.handshake_timeout;
        if self.shared.shutdown.load(Ordering::Relaxed) {
            self.close(ctx);
        } else if self.peer.is_none() && self.opened.elapsed() > limit {
            self.reject(ctx, &format!("no handshake within {limit:?}"));
        } else if self.progress.mid_frame.get() && self.progress.last_byte.get().elapsed() > limit {
            self.reject(ctx, &format!("silent for {limit:?} in the middle of a frame"));
        } else if let Some(peer) = self.peer
            && !self.shared.is_current_inbound(peer, self.serial)
        {
            tracing::info!(node = self.shared.id, peer, remote = %self.remote, "tcp: inbound connection replaced by a newer one");
            self.close(ctx);
        }
    }

    fn on_handshake(&mut self, frame: &[u8], ctx: &mut Context<Self>) {
        let hello = match Handshake::decode(frame) {
            Ok(h) => h,
            Err(e) => return self.reject(ctx, &e.to_string()),
        };
        let cluster_id = self.shared.cluster_id();
        if cluster_id.is_empty() {
            return self.reject(
                ctx,
                "this node does not know its cluster's id yet (it is joining and no member has answered)",
            );
        }
        if hello.cluster_id != cluster_id {
            return self.reject(
                ctx,
                &format!("cluster id {:?}, this node is in {:?}", hello.cluster_id, cluster_id),
            );
        }
        if hello.node_id == self.shared.id {
            return self.reject(ctx, &format!("node id {} is this node's own", hello.node_id));
        }
        let known = read(&self.shared.stats).contains_key(&hello.node_id);
        if !known {
            if !self.shared.accept_unknown {
                return self.reject(ctx, &format!("unknown node id {}", hello.node_id));
            }
            tracing::info!(
                node = self.shared.id,
                peer = hello.node_id,
                remote = %self.remote,
                "tcp: accepted a node that is not (yet) a peer (a member being added, or one that left)"
            );
        }
        let answer = match self.shared.hello().encode() {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) => {
                tracing::warn!(node = self.shared.id, error = %e, "tcp: cannot encode handshake");
                return self.close(ctx);
            }
        };
        let Some(write_half) = self.write_half.take() else {
            return self.close(ctx);
        };
        let mut writer = actix::io::SinkWrite::new(FramedWrite::new(write_half, frame_codec(MAX_HANDSHAKE_FRAME)), ctx);
        if writer.write(answer).is_err() {
            return self.close(ctx);
        }
        self.writer = Some(writer);
        self.peer = Some(hello.node_id);
        self.stats = Some(self.shared.stats_of(hello.node_id));
        self.progress.limit.set(self.shared.max_frame);
        self.release_pending();
        self.shared
            .current_inbound
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(hello.node_id, self.serial);
        tracing::info!(node = self.shared.id, peer = hello.node_id, remote = %self.remote, "tcp: peer connected (inbound)");
    }

    fn on_envelope(&mut self, peer: NodeId, frame: &[u8], ctx: &mut Context<Self>) {
        let stats = self.stats.clone().unwrap_or_else(|| self.shared.stats_of(peer));
        match parse_envelope(frame, peer, self.shared.id) {
            Ok(envelope) => match self.shared.inbound() {
                Some(inbound) => {
                    self.shared.count_received(&stats);
                    inbound(envelope);
                }
                None => self.shared.count_dropped(Some(&stats)),
            },
            Err(EnvelopeError::Malformed(e)) => {
                self.reject(ctx, &format!("undecodable envelope: {e}"));
            }
            Err(EnvelopeError::Misaddressed { from, to }) => {
                self.shared.count_dropped(Some(&stats));
                self.misaddressed += 1;
                // Warn on the 1st, 2nd, 4th, 8th, ... so a broken peer cannot flood the log.
                if self.misaddressed.is_power_of_two() {
                    tracing::warn!(
                        node = self.shared.id,
                        peer,
                        from,
                        to,
                        count = self.misaddressed,
                        "tcp: envelope with wrong addresses dropped"
                    );
                }
            }
        }
    }
}

impl StreamHandler<io::Result<BytesMut>> for InboundConn {
    fn handle(&mut self, item: io::Result<BytesMut>, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        match item {
            Ok(frame) => match self.peer {
                None => self.on_handshake(&frame, ctx),
                Some(peer) => self.on_envelope(peer, &frame, ctx),
            },
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let limit = self.progress.limit.get();
                self.reject(ctx, &format!("{e} (limit {limit} bytes)"));
            }
            Err(e) => {
                tracing::info!(node = self.shared.id, peer = ?self.peer, remote = %self.remote, error = %e, "tcp: inbound connection lost");
                self.close(ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if !self.closing {
            tracing::debug!(node = self.shared.id, peer = ?self.peer, remote = %self.remote, "tcp: inbound connection closed by peer");
        }
        self.close(ctx);
    }
}

impl actix::io::WriteHandler<io::Error> for InboundConn {}

// ---------------------------------------------------------------------------------------
// Outbound: one actor per peer
// ---------------------------------------------------------------------------------------

enum SessionEnd {
    /// The transport was dropped.
    Shutdown,
    /// The connection failed or broke; `established` if the handshake had completed.
    Ended { established: bool, reason: String },
}

/// Dials one peer, again and again, and writes its queue to the connection.
struct PeerLink {
    shared: Arc<Shared>,
    peer: NodeId,
    addr: SocketAddr,
    stats: Arc<PeerStats>,
    /// The queue; inside the session future while a session runs.
    rx: Option<mpsc::Receiver<Bytes>>,
    backoff: Duration,
    failures: u32,
    rng: SeededRng,
}

impl Actor for PeerLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.dial(ctx);
    }
}

impl PeerLink {
    fn dial(&mut self, ctx: &mut Context<Self>) {
        // Closed: the transport was dropped, or the peer left the configuration.
        if self.shared.shutdown.load(Ordering::Relaxed) || self.rx.as_ref().is_some_and(|rx| rx.is_closed()) {
            tracing::debug!(
                node = self.shared.id,
                peer = self.peer,
                "tcp: link to a former peer ends"
            );
            ctx.stop();
            return;
        }
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        let (shared, peer, addr, stats) = (self.shared.clone(), self.peer, self.addr, self.stats.clone());
        let session = async move {
            let end = run_session(&shared, &stats, peer, addr, &mut rx).await;
            (rx, end)
        };
        ctx.spawn(
            session
                .into_actor(self)
                .map(|(rx, end), act, ctx| act.session_ended(rx, end, ctx)),
        );
    }

    fn session_ended(&mut self, rx: mpsc::Receiver<Bytes>, end: SessionEnd, ctx: &mut Context<Self>) {
        self.stats.connected.store(false, Ordering::Relaxed);
        let closed = rx.is_closed();
        self.rx = Some(rx);
        let (node, peer, addr) = (self.shared.id, self.peer, self.addr);
        match end {
            SessionEnd::Shutdown => {
                ctx.stop();
                return;
            }
            SessionEnd::Ended {
                established: true,
                reason,
            } => {
                tracing::info!(node, peer, %addr, reason, "tcp: connection to peer lost, reconnecting");
                self.backoff = BACKOFF_MIN;
                self.failures = 0;
            }
            SessionEnd::Ended {
                established: false,
                reason,
            } => {
                self.failures = self.failures.saturating_add(1);
                if self.failures == 1 {
                    tracing::info!(node, peer, %addr, reason, "tcp: cannot reach peer, will keep retrying");
                } else {
                    tracing::debug!(node, peer, %addr, reason, failures = self.failures, "tcp: peer still unreachable");
                }
            }
        }
        if closed || self.shared.shutdown.load(Ordering::Relaxed) {
            ctx.stop();
            return;
        }
        // Jitter in [backoff/2, backoff], so restarted peers are not dialed in lockstep.
        let ceiling = self.backoff.as_micros() as u64;
        let delay = Duration::from_micros(self.rng.between(ceiling / 2, ceiling));
        self.backoff = self.backoff.saturating_mul(2).min(self.shared.backoff_max);
        ctx.run_later(delay, |act, ctx| act.dial(ctx));
    }
}

/// One connection to `peer`: dial, handshake, then write the queue until something breaks.
async fn run_session(
    shared: &Shared,
    stats: &PeerStats,
    peer: NodeId,
    addr: SocketAddr,
    rx: &mut mpsc::Receiver<Bytes>,
) -> SessionEnd {
    let failed = |reason: String| SessionEnd::Ended {
        established: false,
        reason,
    };
    let limit = shared.handshake_timeout;
    let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return failed(format!("connect: {e}")),
        Err(_) => return failed(format!("connect: no answer within {limit:?}")),
    };
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let mut reader = FramedRead::new(read_half, frame_codec(MAX_HANDSHAKE_FRAME));
    let mut writer = FramedWrite::new(write_half, frame_codec(shared.max_frame));

    let hello = match shared.hello().encode() {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => return failed(format!("cannot encode handshake: {e}")),
    };
    match tokio::time::timeout(limit, writer.send(hello)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return failed(format!("sending handshake: {e}")),
        Err(_) => return failed(format!("sending handshake: stuck for {limit:?}")),
    }
    let answer = match tokio::time::timeout(limit, reader.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(Some(Err(e))) => return failed(format!("handshake answer: {e}")),
        Ok(None) => {
            return failed(
                "peer closed the connection during the handshake (see its log: other cluster id or version, or it does not know this node)"
                    .into(),
            );
        }
        Err(_) => return failed(format!("no handshake answer within {limit:?}")),
    };
    let cluster_id = shared.cluster_id();
    let refused = match Handshake::decode(&answer) {
        Ok(h) if h.cluster_id != cluster_id => Some(format!(
            "peer is in cluster {:?}, this node in {:?}",
            h.cluster_id, cluster_id
        )),
        Ok(h) if h.node_id != peer => Some(format!("node {} answered at {addr}, expected node {peer}", h.node_id)),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    if let Some(reason) = refused {
        tracing::warn!(node = shared.id, peer, %addr, reason, "tcp: peer's handshake refused");
        return failed(reason);
    }
    stats.connected.store(true, Ordering::Relaxed);
    tracing::info!(node = shared.id, peer, %addr, "tcp: connected to peer (outbound)");

    let lost = |reason: String| SessionEnd::Ended {
        established: true,
        reason,
    };
    loop {
        tokio::select! {
            biased;
            // The acceptor never writes after its handshake: anything here ends the session.
            incoming = reader.next() => {
                return lost(match incoming {
                    None => "closed by peer".into(),
                    Some(Err(e)) => e.to_string(),
                    Some(Ok(_)) => {
                        tracing::warn!(node = shared.id, peer, %addr, "tcp: peer sent data on an outbound connection, closing it");
                        "protocol violation: data from the accepting side".into()
                    }
                });
            }
            next = rx.recv() => {
                let Some(first) = next else {
                    let _ = tokio::time::timeout(limit, SinkExt::<Bytes>::close(&mut writer)).await;
                    return SessionEnd::Shutdown;
                };
                let mut frame = Some(first);
                let mut batch = 0;
                while let Some(f) = frame.take() {
                    if let Err(e) = writer.feed(f).await {
                        shared.count_dropped(Some(stats));
                        return lost(format!("write: {e}"));
                    }
                    shared.count_sent(stats);
                    batch += 1;
                    if batch < WRITE_BATCH {
                        frame = rx.try_recv().ok();
                    }
                }
                if let Err(e) = SinkExt::<Bytes>::flush(&mut writer).await {
                    return lost(format!("write: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Ballot, ElectorMessage, PeerMessage};
    use tokio_util::codec::Encoder;

    fn envelope(from: NodeId, to: NodeId, round: u64) -> Envelope {
        Envelope {
            from,
            to,
            msg: PeerMessage::Elector(ElectorMessage::Heartbeat {
                ballot: Ballot::new(round, from),
            }),
        }
    }

    fn framed(payloads: &[Vec<u8>]) -> BytesMut {
        let mut codec = frame_codec(1 << 20);
        let mut out = BytesMut::new();
        for p in payloads {
            codec
                .encode(Bytes::copy_from_slice(p), &mut out)
                .expect("encode test frame");
        }
        out
    }

    #[derive(Debug, Default, PartialEq)]
    struct Outcome {
        handshake: Option<Handshake>,
        envelopes: Vec<Envelope>,
        misaddressed: usize,
        error: Option<String>,
    }

    /// The inbound path without sockets: frames, handshake, envelopes, fed in `chunks`.
    fn run_inbound(stream: &[u8], chunks: &[usize], max_frame: usize) -> Outcome {
        let progress = FrameProgress::new(MAX_HANDSHAKE_FRAME);
        let mut decoder = FrameDecoder::new(progress.clone());
        let mut buf = BytesMut::new();
        let mut out = Outcome::default();
        let mut pos = 0;
        let mut chunk = chunks.iter().cycle();
        while pos < stream.len() {
            let n = (*chunk.next().unwrap_or(&1)).clamp(1, stream.len() - pos);
            buf.extend_from_slice(&stream[pos..pos + n]);
            pos += n;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => match &out.handshake {
                        None => match Handshake::decode(&frame) {
                            Ok(h) => {
                                out.handshake = Some(h);
                                progress.limit.set(max_frame);
                            }
                            Err(e) => {
                                out.error = Some(e.to_string());
                                return out;
                            }
                        },
                        Some(h) => match parse_envelope(&frame, h.node_id, 1) {
                            Ok(env) => out.envelopes.push(env),
                            Err(EnvelopeError::Misaddressed { .. }) => out.misaddressed += 1,
                            Err(EnvelopeError::Malformed(e)) => {
                                out.error = Some(e);
                                return out;
                            }
                        },
                    },
                    Ok(None) => break,
                    Err(e) => {
                        out.error = Some(e.to_string());
                        return out;
                    }
                }
            }
        }
        out
    }

    fn valid_stream() -> (Vec<u8>, Vec<Envelope>) {
        let hello = Handshake::new("rolepax", 2).encode().expect("handshake");
        let envs: Vec<Envelope> = (0..5).map(|i| envelope(2, 1, i)).collect();
        let mut payloads = vec![hello];
        payloads.extend(envs.iter().map(|e| codec::encode(e).expect("envelope")));
        (framed(&payloads).to_vec(), envs)
    }

    #[test]
    fn handshake_round_trips() {
        let h = Handshake::new("prod-eu", 7);
        let bytes = h.encode().expect("encode");
        assert_eq!(&bytes[..4], b"RPAX");
        assert_eq!(&bytes[4..6], &PROTOCOL_VERSION.to_be_bytes());
        assert_eq!(Handshake::decode(&bytes), Ok(h));
    }

    #[test]
    fn handshake_refusals() {
        assert_eq!(Handshake::decode(b""), Err(HandshakeError::Truncated(0)));
        assert_eq!(Handshake::decode(b"RPAX\0"), Err(HandshakeError::Truncated(5)));
        assert_eq!(Handshake::decode(b"GET / HTTP/1.1\r\n"), Err(HandshakeError::BadMagic));
        let mut other = Handshake::new("rolepax", 1);
        other.version = PROTOCOL_VERSION + 1;
        let bytes = other.encode().expect("encode");
        assert_eq!(
            Handshake::decode(&bytes),
            Err(HandshakeError::Version(PROTOCOL_VERSION + 1))
        );
        let mut trailing = Handshake::new("rolepax", 1).encode().expect("encode");
        trailing.push(0);
        assert!(matches!(Handshake::decode(&trailing), Err(HandshakeError::Body(_))));
        assert!(matches!(
            Handshake::decode(b"RPAX\0\x01\xff\xff\xff"),
            Err(HandshakeError::Body(_))
        ));
    }

    #[test]
    fn valid_stream_decodes_in_any_chunking() {
        let (stream, envs) = valid_stream();
        for chunks in [&[1usize][..], &[3, 7], &[stream.len()], &[2, 100, 5]] {
            let out = run_inbound(&stream, chunks, 4 << 20);
            assert_eq!(out.error, None);
            assert_eq!(out.handshake, Some(Handshake::new("rolepax", 2)));
            assert_eq!(out.envelopes, envs);
        }
    }

    #[test]
    fn misaddressed_envelopes_are_not_delivered() {
        let hello = Handshake::new("rolepax", 2).encode().expect("handshake");
        let wrong_from = codec::encode(&envelope(3, 1, 1)).expect("encode");
        let wrong_to = codec::encode(&envelope(2, 9, 1)).expect("encode");
        let good = codec::encode(&envelope(2, 1, 1)).expect("encode");
        let stream = framed(&[hello, wrong_from, wrong_to, good]);
        let out = run_inbound(&stream, &[4096], 4 << 20);
        assert_eq!(out.misaddressed, 2);
        assert_eq!(out.envelopes, vec![envelope(2, 1, 1)]);
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_allocating() {
        // 4 GiB claimed before the handshake, and 4 MiB + 1 after it.
        let out = run_inbound(&[0xff, 0xff, 0xff, 0xff, 0], &[5], 4 << 20);
        assert!(out.error.is_some(), "{out:?}");
        let progress = FrameProgress::new(MAX_HANDSHAKE_FRAME);
        let mut decoder = FrameDecoder::new(progress.clone());
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let err = decoder.decode(&mut buf).expect_err("must refuse");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(buf.capacity() < 1 << 16, "allocated {}", buf.capacity());

        let (hello, _) = valid_stream();
        let hello_len = 4 + Handshake::new("rolepax", 2).encode().expect("hs").len();
        let mut stream = hello[..hello_len].to_vec();
        stream.extend_from_slice(&((4u32 << 20) + 1).to_be_bytes());
        let out = run_inbound(&stream, &[stream.len()], 4 << 20);
        assert!(out.handshake.is_some());
        assert!(out.error.is_some(), "{out:?}");
    }

    #[test]
    fn decoder_tracks_mid_frame() {
        let progress = FrameProgress::new(MAX_HANDSHAKE_FRAME);
        let mut decoder = FrameDecoder::new(progress.clone());
        let mut buf = BytesMut::new();
        assert!(matches!(decoder.decode(&mut buf), Ok(None)));
        assert!(!progress.mid_frame.get());
        // A whole header and nothing else: the codec consumes it, we are mid-frame.
        buf.extend_from_slice(&[0, 0, 0, 3]);
        assert!(matches!(decoder.decode(&mut buf), Ok(None)));
        assert!(buf.is_empty());
        assert!(progress.mid_frame.get());
        buf.extend_from_slice(&[1, 2]);
        assert!(matches!(decoder.decode(&mut buf), Ok(None)));
        assert!(progress.mid_frame.get());
        buf.extend_from_slice(&[3]);
        assert!(matches!(decoder.decode(&mut buf), Ok(Some(f)) if f[..] == [1, 2, 3]));
        assert!(!progress.mid_frame.get());
        buf.extend_from_slice(&[0, 0]);
        assert!(matches!(decoder.decode(&mut buf), Ok(None)));
        assert!(progress.mid_frame.get());
    }

    /// Thousands of random buffers and random mutations of a valid stream, fed through
    /// the framing, handshake and envelope decoding: no panic, and every failure is a
    /// clean error.
    #[test]
    fn random_bytes_never_panic() {
        let mut rng = SeededRng::new(0x7c9_f022);
        let (valid, _) = valid_stream();
        let mut errors = 0;
        const ROUNDS: u64 = 20_000;
        for round in 0..ROUNDS {
            let stream: Vec<u8> = match round % 3 {
                // Pure noise.
                0 => {
                    let len = rng.between(0, 300) as usize;
                    (0..len).map(|_| rng.next_u64() as u8).collect()
                }
                // Noise behind a valid handshake (so envelope decoding sees it).
                1 => {
                    let hs_len = 4 + Handshake::new("rolepax", 2).encode().expect("hs").len();
                    let mut s = valid[..hs_len].to_vec();
                    let len = rng.between(1, 60) as usize;
                    let mut payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                    // Mostly a plausible length prefix, sometimes a wild one.
                    let prefix = if rng.between(0, 3) == 0 {
                        rng.next_u64() as u32
                    } else {
                        len as u32
                    };
                    s.extend_from_slice(&prefix.to_be_bytes());
                    s.append(&mut payload);
                    s
                }
                // A valid stream with a few bytes flipped, inserted, removed, or cut.
                _ => {
                    let mut s = valid.clone();
                    for _ in 0..rng.between(1, 4) {
                        let at = rng.between(0, s.len().saturating_sub(1) as u64) as usize;
                        match rng.between(0, 3) {
                            0 if at < s.len() => s[at] ^= 1 << rng.between(0, 7),
                            1 if at < s.len() => s[at] = rng.next_u64() as u8,
                            2 => s.insert(at.min(s.len()), rng.next_u64() as u8),
                            _ if at < s.len() => {
                                s.remove(at);
                            }
                            _ => {}
                        }
                    }
                    if rng.between(0, 4) == 0 {
                        let keep = rng.between(0, s.len() as u64) as usize;
                        s.truncate(keep);
                    }
                    s
                }
            };
            let chunks: Vec<usize> = (0..4).map(|_| rng.between(1, 64) as usize).collect();
            let out = run_inbound(&stream, &chunks, 4096);
            if let Some(e) = &out.error {
                assert!(!e.is_empty());
                errors += 1;
            }
        }
        // The noise must actually have been refused, not silently swallowed.
        assert!(errors > ROUNDS / 3, "only {errors} of {ROUNDS} random streams refused");
    }
}
