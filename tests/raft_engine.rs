//! The Raft engine (src/raft) in one process, over the in-memory network: election,
//! replication, forwarding, linearizable reads at followers, failover, restarts from
//! the data directory (by log and by snapshot), the lock service, and the planted bug
//! that acknowledges appends before they are durable.

use rolepax::app::kv::{KvCommand, KvReply, KvResult};
use rolepax::app::lock_service::{LockCommand, LockReply};
use rolepax::app::service::{Service, ServiceCommand, ServiceReply};
use rolepax::messages::NodeId;
use rolepax::net::memory::MemoryNetwork;
use rolepax::raft::{RaftConfig, RaftNode};
use rolepax::roles::bugs::PlantedBugs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generous: the machine is shared, and a debug build is slow.
const DEADLINE: Duration = Duration::from_secs(30);

fn config(id: NodeId, nodes: &[NodeId], dir: &Path, bugs: PlantedBugs) -> RaftConfig {
    RaftConfig {
        id,
        nodes: nodes.to_vec(),
        data_dir: dir.join(format!("node-{id}")),
        heartbeat: Duration::from_millis(30),
        election_min: Duration::from_millis(150),
        election_max: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        snapshot_every: 0,
        clock_interval: Duration::from_millis(100),
        clock_margin: Duration::ZERO,
        max_message_bytes: 1 << 20,
        bugs,
    }
}

struct Cluster {
    net: Arc<MemoryNetwork>,
    ids: Vec<NodeId>,
    dir: tempfile::TempDir,
    nodes: BTreeMap<NodeId, RaftNode<Service>>,
    bugs: PlantedBugs,
    snapshot_every: u64,
}

impl Cluster {
    async fn start(n: u64, bugs: PlantedBugs, snapshot_every: u64) -> Cluster {
        let mut cluster = Cluster {
            net: MemoryNetwork::new(7),
            ids: (1..=n).collect(),
            dir: tempfile::tempdir().expect("temp dir"),
            nodes: BTreeMap::new(),
            bugs,
            snapshot_every,
        };
        for id in cluster.ids.clone() {
            cluster.start_node(id).await;
        }
        cluster
    }

    fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    async fn start_node(&mut self, id: NodeId) {
        let mut cfg = config(id, &self.ids, &self.dir(), self.bugs);
        cfg.snapshot_every = self.snapshot_every;
        let node = RaftNode::<Service>::start(cfg, self.net.clone())
            .await
            .unwrap_or_else(|e| panic!("node {id} does not start: {e}"));
        self.net.register(id, node.inbound());
        self.nodes.insert(id, node);
    }

    fn node(&self, id: NodeId) -> &RaftNode<Service> {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Halts a node (as a crash would, for what was not yet durable) and waits until
    /// it is stopped.
    async fn halt(&mut self, id: NodeId) {
        let node = self
            .nodes
            .remove(&id)
            .unwrap_or_else(|| panic!("node {id} is not running"));
        self.net.set_down(id);
        node.halt();
        poll("the node halts", || async { node.is_halted() }).await;
    }

    /// The leader every running node agrees on.
    async fn leader(&self) -> NodeId {
        let start = Instant::now();
        loop {
            let leaders: Vec<Option<NodeId>> = self.nodes.values().map(|n| n.leader()).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && self.nodes.contains_key(l)
            {
                return *l;
            }
            assert!(start.elapsed() < DEADLINE, "no leader known to every node: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn follower(&self, leader: NodeId) -> NodeId {
        *self.nodes.keys().find(|id| **id != leader).expect("a follower")
    }
}

/// Polls `check` until it holds, or panics after [`DEADLINE`] naming `what`.
async fn poll<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn put(key: &str, value: &str) -> ServiceCommand {
    ServiceCommand::Kv(KvCommand::put(key.as_bytes().to_vec(), value.as_bytes().to_vec()))
}

fn get(key: &str) -> ServiceCommand {
    ServiceCommand::Kv(KvCommand::get(key.as_bytes().to_vec()))
}

fn value_of(reply: &ServiceReply) -> Option<String> {
    match reply {
        ServiceReply::Kv(r) => r.value().map(|v| String::from_utf8_lossy(v).into_owned()),
        other => panic!("not a key-value reply: {other:?}"),
    }
}

/// The value a put replaced.
fn replaced(reply: &ServiceReply) -> Option<String> {
    match reply {
        ServiceReply::Kv(KvReply {
            result: KvResult::Put { prev },
            ..
        }) => prev.as_ref().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
        other => panic!("not a put's reply: {other:?}"),
    }
}

/// Puts `key = value` through `node`, retrying only while no leader is known.
async fn put_at(node: &RaftNode<Service>, key: &str, value: &str) {
    node.submit(put(key, value))
        .await
        .unwrap_or_else(|e| panic!("put {key} at node {}: {e}", node.id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_three_nodes_elect_replicate_and_read_linearizably_at_a_follower() {
    let cluster = Cluster::start(3, PlantedBugs::default(), 0).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);

    put_at(cluster.node(leader), "a", "1").await;
    // At a follower: forwarded to the leader.
    put_at(cluster.node(follower), "a", "2").await;
    for id in cluster.ids.clone() {
        let reply = cluster.node(id).read(get("a")).await.expect("linearizable read");
        assert_eq!(
            value_of(&reply).as_deref(),
            Some("2"),
            "node {id} reads the latest write"
        );
    }
    // Every node applies it; a local read then sees it.
    for id in cluster.ids.clone() {
        poll("every node applied the put", || async {
            let reply = cluster.node(id).read_local(get("a")).await.expect("local read");
            value_of(&reply).as_deref() == Some("2")
        })
        .await;
    }
    // A write through every node in turn, each read back at another node at once.
    for (i, id) in cluster.ids.clone().into_iter().enumerate() {
        let value = format!("v{i}");
        put_at(cluster.node(id), "b", &value).await;
        let other = cluster.ids[(i + 1) % cluster.ids.len()];
        let reply = cluster.node(other).read(get("b")).await.expect("read");
        assert_eq!(
            value_of(&reply),
            Some(value),
            "node {other} sees the write made through node {id}"
        );
    }
    let status = cluster.node(leader).status().await.expect("status");
    assert_eq!(status.leader_id, Some(leader));
    assert_eq!(status.detail.state, "Leader");
    assert_eq!(status.detail.membership, vec![1, 2, 3]);
    assert!(status.applied >= 5, "applied {}", status.applied);
    assert!(status.detail.messages["append_entries"].requests_sent > 0);
    assert!(status.detail.fsyncs > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_concurrent_commands_share_entries_and_each_gets_its_own_reply() {
    let cluster = Arc::new(Cluster::start(3, PlantedBugs::default(), 0).await);
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    put_at(cluster.node(leader), "warm", "up").await;
    let before = cluster.node(leader).status().await.expect("status").last_log_index;
    // 200 commands at once, through the leader and (forwarded) through a follower.
    const N: usize = 200;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let cluster = cluster.clone();
        let via = if i % 2 == 0 { leader } else { follower };
        tasks.spawn(async move {
            let key = format!("c{i}");
            let first = cluster.node(via).submit(put(&key, "old")).await;
            let second = cluster.node(via).submit(put(&key, &format!("v{i}"))).await;
            (i, first, second)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, first, second) = done.expect("task");
        let first = first.unwrap_or_else(|e| panic!("first put c{i}: {e}"));
        let second = second.unwrap_or_else(|e| panic!("second put c{i}: {e}"));
        // A put answers the key as it was: each command got its own reply.
        assert_eq!(replaced(&first), None, "c{i} was new");
        assert_eq!(
            replaced(&second).as_deref(),
            Some("old"),
            "c{i}'s second put replaced the first"
        );
    }
    let after = cluster.node(leader).status().await.expect("status").last_log_index;
    let entries = after.unwrap_or(0) - before.unwrap_or(0);
    assert!(
        entries < 2 * N as u64,
        "{} commands took {entries} entries: none shared an entry",
        2 * N
    );
    for i in [0, 1, N / 2, N - 1] {
        let reply = cluster.node(follower).read(get(&format!("c{i}"))).await.expect("read");
        assert_eq!(value_of(&reply), Some(format!("v{i}")), "c{i} at a follower");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_leader_halted_a_new_leader_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(3, PlantedBugs::default(), 0).await;
    let leader = cluster.leader().await;
    for i in 0..20 {
        put_at(cluster.node(leader), &format!("k{i}"), &format!("{i}")).await;
    }
    cluster.halt(leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    for i in 0..20 {
        let reply = cluster
            .node(new_leader)
            .read(get(&format!("k{i}")))
            .await
            .expect("read");
        assert_eq!(value_of(&reply), Some(format!("{i}")), "k{i} survives the failover");
    }
    put_at(cluster.node(new_leader), "after", "x").await;
    // The old leader comes back from its data directory and catches up.
    cluster.start_node(leader).await;
    poll("the old leader catches up", || async {
        let reply = cluster.node(leader).read_local(get("after")).await.expect("local read");
        value_of(&reply).as_deref() == Some("x")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_restarted_follower_catches_up_by_log() {
    let mut cluster = Cluster::start(3, PlantedBugs::default(), 0).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    put_at(cluster.node(leader), "before", "1").await;
    cluster.halt(follower).await;
    for i in 0..30 {
        put_at(cluster.node(leader), &format!("k{i}"), "x").await;
    }
    cluster.start_node(follower).await;
    poll("the restarted follower catches up", || async {
        let reply = cluster.node(follower).read_local(get("k29")).await.expect("local read");
        value_of(&reply).as_deref() == Some("x")
    })
    .await;
    let reply = cluster
        .node(follower)
        .read_local(get("before"))
        .await
        .expect("local read");
    assert_eq!(
        value_of(&reply).as_deref(),
        Some("1"),
        "what it held before the halt is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_restarted_follower_catches_up_by_snapshot() {
    // A snapshot every 10 entries, and the log purged behind it: a follower away for
    // 60 entries comes back to a log that no longer holds what it misses.
    let mut cluster = Cluster::start(3, PlantedBugs::default(), 10).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    cluster.halt(follower).await;
    for i in 0..60 {
        put_at(cluster.node(leader), &format!("k{i}"), &format!("{i}")).await;
    }
    poll("the leader snapshots and purges", || async {
        let status = cluster.node(leader).status().await.expect("status");
        status.snapshot_index.is_some_and(|s| s >= 40) && status.detail.purged_index.is_some()
    })
    .await;
    cluster.start_node(follower).await;
    poll("the restarted follower catches up", || async {
        let reply = cluster.node(follower).read_local(get("k59")).await.expect("local read");
        value_of(&reply).as_deref() == Some("59")
    })
    .await;
    let status = cluster.node(follower).status().await.expect("status");
    assert!(
        status.snapshot_index.is_some(),
        "the follower caught up through a snapshot: {status:?}"
    );
    for i in 0..60 {
        let reply = cluster
            .node(follower)
            .read_local(get(&format!("k{i}")))
            .await
            .expect("read");
        assert_eq!(value_of(&reply), Some(format!("{i}")), "k{i} at the restarted follower");
    }
    // And the whole cluster restarts from its snapshots and logs.
    for id in cluster.ids.clone() {
        cluster.halt(id).await;
    }
    for id in cluster.ids.clone() {
        cluster.start_node(id).await;
    }
    let leader = cluster.leader().await;
    // The last write first: a leader restarted with its vote leads at once, and its
    // read index must still cover what it acknowledged before the restart.
    for i in [59, 58, 33, 0] {
        let reply = cluster.node(leader).read(get(&format!("k{i}"))).await.expect("read");
        assert_eq!(value_of(&reply), Some(format!("{i}")), "k{i} after a full restart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_lock_service_acquires_and_releases() {
    let cluster = Cluster::start(3, PlantedBugs::default(), 0).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower(leader);
    let node = cluster.node(follower);
    // Log time is the leader's clock (its clock commands expire sessions).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let open = |ttl_ms| ServiceCommand::Lock(LockCommand::OpenSession { ttl_ms, now_ms: now });
    let session = |reply: ServiceReply| match reply {
        ServiceReply::Lock(LockReply::SessionOpened { session, .. }) => session,
        other => panic!("not a session: {other:?}"),
    };
    let a = session(node.submit(open(60_000)).await.expect("open a"));
    let b = session(node.submit(open(60_000)).await.expect("open b"));
    let lock = |session| {
        ServiceCommand::Lock(LockCommand::Lock {
            name: "L".into(),
            session,
            now_ms: now,
        })
    };
    let granted = node.submit(lock(a)).await.expect("lock a");
    assert!(
        matches!(granted, ServiceReply::Lock(LockReply::Granted { .. })),
        "{granted:?}"
    );
    let queued = node.submit(lock(b)).await.expect("lock b");
    assert!(
        matches!(queued, ServiceReply::Lock(LockReply::Queued { .. })),
        "{queued:?}"
    );
    let unlock = ServiceCommand::Lock(LockCommand::Unlock {
        name: "L".into(),
        session: a,
    });
    node.submit(unlock).await.expect("unlock a");
    let info = cluster
        .node(leader)
        .read(ServiceCommand::Lock(LockCommand::Get { name: "L".into() }))
        .await
        .expect("get lock");
    match info {
        ServiceReply::Lock(LockReply::Lock(info)) => assert_eq!(info.holder, Some(b), "b holds the lock now"),
        other => panic!("not a lock's state: {other:?}"),
    }
}

/// Writes keys through the leader, halts every node right after the last
/// acknowledgement, restarts them all, and counts the acknowledged keys missing.
async fn acknowledged_writes_lost_in_a_full_crash(bugs: PlantedBugs) -> usize {
    let mut cluster = Cluster::start(3, bugs, 0).await;
    let leader = cluster.leader().await;
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let key = format!("k{i}");
        put_at(cluster.node(leader), &key, "v").await;
        acknowledged.push(key);
    }
    for id in cluster.ids.clone() {
        cluster.halt(id).await;
    }
    for id in cluster.ids.clone() {
        cluster.start_node(id).await;
    }
    let leader = cluster.leader().await;
    let mut lost = 0;
    for key in &acknowledged {
        let reply = cluster.node(leader).read(get(key)).await.expect("read after restart");
        if value_of(&reply).is_none() {
            lost += 1;
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_planted_acks_before_durable_loses_writes() {
    let bugs = PlantedBugs {
        raft_acks_before_durable: true,
        ..PlantedBugs::default()
    };
    let lost = acknowledged_writes_lost_in_a_full_crash(bugs).await;
    assert!(
        lost > 0,
        "the planted bug must lose acknowledged writes in a full crash"
    );
    let lost = acknowledged_writes_lost_in_a_full_crash(PlantedBugs::default()).await;
    assert_eq!(lost, 0, "without the bug no acknowledged write is lost");
}
