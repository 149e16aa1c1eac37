//! Helpers shared by the scenario tests: writing from several clients at once, reading
//! back, and waiting for conditions with generous deadlines.
#![allow(dead_code)]

pub mod client;
pub mod procs;

use rolepax::actors::node::{NodeConfig, NodeHandle};
use rolepax::{Cluster, KvCommand, KvStore};
use std::time::{Duration, Instant};

/// Generous: these tests run on loaded 2-core machines.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Starts a cluster with short timeouts suited to tests.
pub async fn cluster(n: u64) -> Cluster<KvStore> {
    cluster_with(n, |_| {}).await
}

/// The same, with `tune` applied to every node's configuration after the test defaults.
pub async fn cluster_with(n: u64, tune: impl Fn(&mut NodeConfig)) -> Cluster<KvStore> {
    Cluster::start_with(n, |cfg| {
        cfg.request_timeout = Duration::from_secs(10);
        cfg.retry_interval = Duration::from_millis(300);
        tune(cfg);
    })
    .await
    .expect("cluster starts")
}

/// Writes `key-{client}-{i}` = `v{i}` for i in 0..per_client from `clients` concurrent
/// clients, each through the node given by `via`; returns the acknowledged keys.
pub async fn write_concurrently(
    nodes: Vec<NodeHandle<KvStore>>,
    clients: usize,
    per_client: usize,
    tag: &str,
) -> Vec<(String, String)> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let node = nodes[c % nodes.len()].clone();
        let tag = tag.to_string();
        tasks.push(actix_rt::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..per_client {
                let (k, v) = (format!("{tag}-{c}-{i}"), format!("v{i}"));
                if node.submit(KvCommand::put(k.clone(), v.clone())).await.is_ok() {
                    acked.push((k, v));
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("client task"));
    }
    acked
}

/// Waits until `node` holds `key` = `value` in its local state.
pub async fn wait_local_value(node: &NodeHandle<KvStore>, key: &str, value: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = node
            .read_local(KvCommand::get(key))
            .await
            .ok()
            .and_then(|r| r.value().map(<[u8]>::to_vec));
        if got.as_deref() == Some(value.as_bytes()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} never showed {key}={value} (has {got:?})",
            node.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every acknowledged write is visible on every given node.
pub async fn wait_all_present(nodes: &[NodeHandle<KvStore>], acked: &[(String, String)]) {
    for node in nodes {
        for (k, v) in acked {
            wait_local_value(node, k, v).await;
        }
    }
}

/// A linearizable read through the log.
pub async fn get(node: &NodeHandle<KvStore>, key: &str) -> Option<Vec<u8>> {
    node.submit(KvCommand::get(key))
        .await
        .expect("read through the log")
        .value()
        .map(<[u8]>::to_vec)
}

/// Waits until `f` holds, polling.
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the async condition `f` holds, polling.
pub async fn eventually_async<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
