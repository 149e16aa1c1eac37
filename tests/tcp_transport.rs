//! The TCP transport end to end: real sockets on ephemeral localhost ports, nodes in one
//! process, and a hostile client poking at a node's peer port.
//!
//! Everything waits by polling with generous deadlines (the machine may be loaded).

use rolepax::actors::node::{Node, NodeConfig, NodeHandle};
use rolepax::messages::{Ballot, ElectorMessage, Envelope, NodeId, PeerMessage};
use rolepax::net::Transport;
use rolepax::net::tcp::{Handshake, PROTOCOL_VERSION, TcpConfig, TcpTransport};
use rolepax::{KvCommand, KvStore};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Logs go to the test's captured output (shown when a test fails); `RUST_LOG` overrides.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Free localhost addresses: bound all at once (so they differ), then released.
fn pick_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind ephemeral port"))
        .collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr")).collect()
}

fn tcp_config(id: NodeId, addrs: &BTreeMap<NodeId, SocketAddr>) -> TcpConfig {
    let peers = addrs.iter().filter(|(p, _)| **p != id).map(|(p, a)| (*p, *a)).collect();
    let mut cfg = TcpConfig::new(id, addrs[&id], peers);
    cfg.handshake_timeout = Duration::from_secs(2);
    cfg.backoff_max = Duration::from_millis(500);
    cfg
}

struct TcpCluster {
    transports: BTreeMap<NodeId, Arc<TcpTransport>>,
    nodes: BTreeMap<NodeId, NodeHandle<KvStore>>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    _dirs: Vec<tempfile::TempDir>,
}

impl TcpCluster {
    async fn start() -> TcpCluster {
        init_tracing();
        let ids: Vec<NodeId> = vec![1, 2, 3];
        // Another process may take a port between picking and binding it: pick again.
        let mut attempt = 0;
        let (addrs, transports) = loop {
            attempt += 1;
            let addrs: BTreeMap<NodeId, SocketAddr> = ids.iter().copied().zip(pick_addrs(ids.len())).collect();
            let mut transports = BTreeMap::new();
            let mut failed = None;
            for &id in &ids {
                match TcpTransport::start(tcp_config(id, &addrs)).await {
                    Ok(t) => {
                        assert_eq!(t.local_addr(), addrs[&id]);
                        transports.insert(id, t);
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => break (addrs, transports),
                Some(e) if attempt < 5 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Some(e) => panic!("starting transports: {e}"),
            }
        };
        let mut nodes = BTreeMap::new();
        let mut dirs = Vec::new();
        for &id in &ids {
            let dir = tempfile::tempdir().expect("temp dir");
            let cfg = NodeConfig::new(id, ids.clone(), dir.path().join(format!("node-{id}")));
            let t = transports[&id].clone();
            let node = Node::start::<KvStore>(cfg, t.clone()).expect("node starts");
            t.set_inbound(node.inbound());
            nodes.insert(id, node);
            dirs.push(dir);
        }
        TcpCluster {
            transports,
            nodes,
            addrs,
            _dirs: dirs,
        }
    }

    /// Waits until every node names the same leader and that leader's proposer leads.
    async fn wait_for_leader(&self) -> NodeId {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let leaders: Vec<Option<NodeId>> = self.nodes.values().map(|n| n.leader()).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && let Ok(status) = self.nodes[l].status().await
                && status.proposer.leading
            {
                return *l;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {DEADLINE:?}: {leaders:?}; counters: {:?}",
                self.counters()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes through `via_put` and reads the value back through `via_get`, retrying
    /// through leader changes.
    async fn put_get(&self, via_put: NodeId, via_get: NodeId, key: &str, value: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.nodes[&via_put].submit(KvCommand::put(key, value)).await {
                Ok(_) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "put {key} via node {via_put} failed: {e}; counters: {:?}",
                    self.counters()
                ),
            }
        }
        loop {
            match self.nodes[&via_get].submit(KvCommand::get(key)).await {
                Ok(reply) => {
                    assert_eq!(reply.value(), Some(value.as_bytes()), "get {key}");
                    return;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "get {key} via node {via_get} failed: {e}; counters: {:?}",
                    self.counters()
                ),
            }
        }
    }

    fn counters(&self) -> Vec<(NodeId, rolepax::net::tcp::TransportCounters)> {
        self.transports.iter().map(|(&id, t)| (id, t.counters())).collect()
    }
}

impl Drop for TcpCluster {
    fn drop(&mut self) {
        for node in self.nodes.values() {
            node.halt();
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn handshake_frame(version: u16, cluster_id: &str, node_id: NodeId) -> Vec<u8> {
    let mut h = Handshake::new(cluster_id, node_id);
    h.version = version;
    frame(&h.encode().expect("encode handshake"))
}

fn envelope(from: NodeId, to: NodeId) -> Envelope {
    Envelope {
        from,
        to,
        msg: PeerMessage::Elector(ElectorMessage::Heartbeat {
            ballot: Ballot::new(1, from),
        }),
    }
}

/// Reads until the server closes the connection (EOF or reset) or `within` passes.
fn wait_closed(stream: &mut TcpStream, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("connection still open after {within:?}"));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => return Err(format!("server sent {n} bytes instead of closing")),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                continue;
            }
            Err(_) => return Ok(()), // reset: closed too
        }
    }
}

/// Connects to `addr`, sends `bytes` and stays silent; Ok if the server closes.
fn probe(addr: SocketAddr, bytes: Vec<u8>) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    // The server may close before it read everything: a failed write is fine.
    let _ = stream.write_all(&bytes);
    wait_closed(&mut stream, DEADLINE)
}

async fn probe_async(addr: SocketAddr, what: &str, bytes: Vec<u8>) {
    let result = tokio::task::spawn_blocking(move || probe(addr, bytes))
        .await
        .expect("probe thread");
    if let Err(e) = result {
        panic!("{what}: {e}");
    }
}

#[actix_rt::test]
async fn tcp_three_nodes_commit_writes() {
    let cluster = TcpCluster::start().await;
    let leader = cluster.wait_for_leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    let other = 6 - leader - follower;
    // Through a follower (forwarded to the leader over TCP), read through another node.
    cluster.put_get(follower, other, "k1", "v1").await;
    cluster.put_get(leader, follower, "k2", "v2").await;
    cluster.put_get(other, leader, "k1", "v1b").await;
    for (id, c) in cluster.counters() {
        assert!(c.sent > 0 && c.received > 0, "node {id}: {c:?}");
        assert_eq!(c.rejected_connections, 0, "node {id}: {c:?}");
        assert!(
            c.peers.values().all(|p| p.connected),
            "node {id} not connected to every peer: {c:?}"
        );
    }
}

#[actix_rt::test]
async fn tcp_bad_input_is_refused_and_node_keeps_serving() {
    let cluster = TcpCluster::start().await;
    let leader = cluster.wait_for_leader().await;
    cluster.put_get(leader, leader, "before", "1").await;

    let target = 1;
    let addr = cluster.addrs[&target];
    let before = cluster.transports[&target].counters().rejected_connections;

    probe_async(
        addr,
        "garbage (HTTP request)",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    )
    .await;
    probe_async(
        addr,
        "garbage inside a plausible frame",
        frame(b"\x00\x13\x37not a handshake at all"),
    )
    .await;
    probe_async(addr, "4 GiB length prefix", vec![0xff, 0xff, 0xff, 0xff, 1, 2]).await;
    probe_async(
        addr,
        "wrong cluster id",
        handshake_frame(PROTOCOL_VERSION, "another-cluster", 2),
    )
    .await;
    probe_async(
        addr,
        "unknown node id",
        handshake_frame(PROTOCOL_VERSION, "rolepax", 99),
    )
    .await;
    probe_async(
        addr,
        "own node id",
        handshake_frame(PROTOCOL_VERSION, "rolepax", target),
    )
    .await;
    probe_async(
        addr,
        "wrong protocol version",
        handshake_frame(PROTOCOL_VERSION + 1, "rolepax", 2),
    )
    .await;
    let mut half = 100u32.to_be_bytes().to_vec();
    half.extend_from_slice(b"RPAX\x00\x01 and then...");
    probe_async(addr, "half a frame, then silence", half).await;
    probe_async(addr, "connect and say nothing", Vec::new()).await;

    let after = cluster.transports[&target].counters().rejected_connections;
    assert!(
        after >= before + 9,
        "expected 9 more rejected connections, counters went {before} -> {after}"
    );

    // The cluster still commits, through the node that was poked and through the others.
    let leader = cluster.wait_for_leader().await;
    cluster.put_get(target, leader, "after", "2").await;
    let other = if target == 2 { 3 } else { 2 };
    cluster.put_get(other, target, "after2", "3").await;
}

/// A handshaken connection that sends a good envelope, a misaddressed one, then half a
/// frame and goes silent: the first is delivered, the second dropped, and the
/// connection is closed by the mid-frame read timeout.
#[actix_rt::test]
async fn tcp_silent_mid_frame_after_handshake_is_closed() {
    init_tracing();
    let addrs: BTreeMap<NodeId, SocketAddr> = [1, 2].into_iter().zip(pick_addrs(2)).collect();
    let mut cfg = tcp_config(1, &addrs);
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let transport = TcpTransport::start(cfg).await.expect("transport starts");
    let got: Arc<Mutex<Vec<Envelope>>> = Arc::default();
    let sink = got.clone();
    transport.set_inbound(Arc::new(move |env| {
        sink.lock().expect("lock").push(env);
    }));
    let addr = transport.local_addr();

    let client = tokio::task::spawn_blocking(move || -> Result<Handshake, String> {
        let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        s.write_all(&handshake_frame(PROTOCOL_VERSION, "rolepax", 2))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(DEADLINE)).map_err(|e| e.to_string())?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(|e| format!("ack length: {e}"))?;
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut answer).map_err(|e| format!("ack payload: {e}"))?;
        let ack = Handshake::decode(&answer).map_err(|e| e.to_string())?;
        let good = rolepax::messages::codec::encode(&envelope(2, 1)).map_err(|e| e.to_string())?;
        let bad = rolepax::messages::codec::encode(&envelope(3, 1)).map_err(|e| e.to_string())?;
        let mut bytes = frame(&good);
        bytes.extend(frame(&bad));
        bytes.extend_from_slice(&[0, 0, 0, 50, 1, 2, 3]);
        s.write_all(&bytes).map_err(|e| e.to_string())?;
        wait_closed(&mut s, DEADLINE)?;
        Ok(ack)
    });
    let ack = client.await.expect("client thread").expect("client");
    assert_eq!(ack, Handshake::new("rolepax", 1));
    assert_eq!(*got.lock().expect("lock"), vec![envelope(2, 1)]);
    let c = transport.counters();
    assert_eq!(c.received, 1, "{c:?}");
    assert_eq!(c.peers[&2].received, 1, "{c:?}");
    assert_eq!(c.peers[&2].dropped, 1, "misaddressed envelope: {c:?}");
    assert_eq!(c.rejected_connections, 1, "{c:?}");
}

#[actix_rt::test]
async fn tcp_peer_down_queue_stays_bounded() {
    init_tracing();
    // Node 2's address is picked and released: nothing ever listens there.
    let addrs: BTreeMap<NodeId, SocketAddr> = [1, 2].into_iter().zip(pick_addrs(2)).collect();
    let mut cfg = tcp_config(1, &addrs);
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let capacity = cfg.queue_capacity as u64;
    let transport = TcpTransport::start(cfg).await.expect("transport starts");

    let n = 100_000u64;
    let started = Instant::now();
    for _ in 0..n {
        transport.send(envelope(1, 2));
    }
    transport.send(envelope(1, 42)); // not a peer at all
    let took = started.elapsed();

    // The queue takes `capacity` messages, the rest and the one to node 42 are dropped.
    let at_least = n - capacity + 1;
    let c = transport.counters();
    assert!(c.dropped >= at_least, "expected at least {at_least} dropped, got {c:?}");
    assert_eq!(c.sent, 0, "{c:?}");
    assert!(!c.peers[&2].connected, "{c:?}");
    assert!(c.peers[&2].dropped >= n - capacity, "{c:?}");
    // Not a timing benchmark: only that 100k sends did not wait on the dead peer.
    assert!(took < DEADLINE, "100k sends took {took:?}");

    // The runtime is still responsive while the link keeps redialing, and sends keep
    // being dropped rather than queued.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = transport.counters().dropped;
    for _ in 0..1000 {
        transport.send(envelope(1, 2));
    }
    assert_eq!(transport.counters().dropped, before + 1000);
}
