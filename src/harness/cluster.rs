//! In-process clusters: n nodes in one process over a [`MemoryNetwork`], each with its
//! own data directory, for tests and for trying rolepax out without processes.
//!
//! ```no_run
//! # async fn demo() -> rolepax::Result<()> {
//! use rolepax::{Cluster, KvCommand};
//! let mut cluster: Cluster = Cluster::start(3).await?;
//! let leader = cluster.wait_for_leader().await?;
//! cluster.node(leader).submit(KvCommand::put("k", "v")).await?;
//! cluster.crash(leader);
//! cluster.restart(leader).await?;
//! # Ok(()) }
//! ```
//!
//! Must run inside an actix system (`#[actix_rt::test]` or `actix_rt::System::new()`).

use crate::actors::node::{Node, NodeConfig, NodeHandle};
use crate::app::Application;
use crate::app::kv::KvStore;
use crate::error::{Error, Result};
use crate::messages::{NodeId, RequestId, Slot, Value};
use crate::net::memory::MemoryNetwork;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a node applied, in order: (slot, request or `None` for a no-op).
pub type AppliedSequence = Vec<(Slot, Option<RequestId>)>;

pub struct Cluster<A: Application + Default = KvStore> {
    pub net: Arc<MemoryNetwork>,
    configs: BTreeMap<NodeId, NodeConfig>,
    nodes: BTreeMap<NodeId, NodeHandle<A>>,
    /// Crashed nodes whose actors may still be stopping (they hold the storage lock).
    crashed: BTreeMap<NodeId, NodeHandle<A>>,
    _dir: tempfile::TempDir,
}

impl<A: Application + Default> Cluster<A> {
    /// Starts `n` nodes (ids 1..=n) with default settings.
    pub async fn start(n: u64) -> Result<Self> {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes, letting `tune` adjust each node's configuration.
    pub async fn start_with(n: u64, tune: impl Fn(&mut NodeConfig)) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| Error::Storage(format!("temporary directory: {e}")))?;
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut cluster = Cluster {
            net: MemoryNetwork::new(0x5eed),
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            crashed: BTreeMap::new(),
            _dir: dir,
        };
        for &id in &ids {
            let mut cfg = NodeConfig::new(id, ids.clone(), cluster._dir.path().join(format!("node-{id}")));
            cfg.record_applied = true;
            // Keep almost no accepted values in memory, so that every scenario also
            // exercises reading them back from the acceptor's log.
            cfg.acceptor_hot_slots = 2;
            tune(&mut cfg);
            cluster.configs.insert(id, cfg);
            cluster.boot(id)?;
        }
        Ok(cluster)
    }

    fn boot(&mut self, id: NodeId) -> Result<()> {
        let cfg = self
            .configs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::Config(format!("no node {id}")))?;
        let handle = Node::start::<A>(cfg, self.net.clone())?;
        self.net.register(id, handle.inbound());
        self.nodes.insert(id, handle);
        Ok(())
    }

    /// Node `id`'s data directory (to wipe it while the node is down, say).
    pub fn data_dir(&self, id: NodeId) -> Option<&std::path::Path> {
        self.configs.get(&id).map(|c| c.data_dir.as_path())
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.configs.keys().copied().collect()
    }

    /// The running nodes' ids.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// A running node. Panics if `id` is not running (a test bug).
    pub fn node(&self, id: NodeId) -> &NodeHandle<A> {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Crashes a node: its actors stop at once, the network forgets it, and whatever
    /// it had not made durable is gone.
    pub fn crash(&mut self, id: NodeId) {
        self.net.set_down(id);
        if let Some(handle) = self.nodes.remove(&id) {
            handle.halt();
            self.crashed.insert(id, handle);
        }
    }

    /// Restarts a crashed node from its data directory, once its old actors have
    /// stopped and released the storage.
    pub async fn restart(&mut self, id: NodeId) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        if let Some(old) = self.crashed.remove(&id) {
            while !old.is_halted() {
                if Instant::now() >= deadline {
                    return Err(Error::Unavailable(format!("node {id} did not stop within 30 s")));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        loop {
            match self.boot(id) {
                // A flush task of the old incarnation may still hold the database or a
                // log file (both locked) briefly.
                Err(Error::Storage(m)) if m.contains("lock") && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Waits (up to 30 s) until every running node agrees on one running leader.
    pub async fn wait_for_leader(&self) -> Result<NodeId> {
        self.wait_for_leader_among(&self.running(), Duration::from_secs(30))
            .await
    }

    /// Waits until the given nodes agree on a leader among them.
    pub async fn wait_for_leader_among(&self, ids: &[NodeId], timeout: Duration) -> Result<NodeId> {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<NodeId>> = ids.iter().map(|&id| self.node(id).leader()).collect();
            if let Some(Some(l)) = leaders.first()
                && ids.contains(l)
                && leaders.iter().all(|x| *x == Some(*l))
                && self.node(*l).status().await?.proposer.leading
            {
                return Ok(*l);
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "no agreed leader among {ids:?} within {timeout:?}: {leaders:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to `timeout`) until every given node has applied at least `slots` slots.
    pub async fn wait_applied(&self, ids: &[NodeId], slots: Slot, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = Vec::new();
            for &id in ids {
                let applied = self.node(id).status().await?.state_machine.applied;
                if applied < slots {
                    behind.push((id, applied));
                }
            }
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "nodes still behind slot {slots} after {timeout:?}: {behind:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The safety check: compares every running node's decided log slot by slot (no
    /// slot decided two different values) and its applied sequence (each agrees, slot by
    /// slot, with what was decided, and applies slots consecutively). Panics on a
    /// violation; returns the number of slots decided somewhere.
    pub async fn check_safety(&self) -> Result<u64> {
        let (decided, violations) = self.safety_violations().await?;
        assert!(violations.is_empty(), "safety violations:\n{}", violations.join("\n"));
        Ok(decided)
    }

    /// Like [`Cluster::check_safety`], but returns the violations it finds instead of
    /// panicking (with the number of slots decided somewhere).
    pub async fn safety_violations(&self) -> Result<(u64, Vec<String>)> {
        // Applied sequences first: everything applied was learned before, so it is in
        // the logs read afterwards.
        let mut applied: Vec<(NodeId, AppliedSequence)> = Vec::new();
        for (&id, node) in &self.nodes {
            applied.push((id, node.applied().await?));
        }
        let mut logs: Vec<(NodeId, BTreeMap<Slot, Value>)> = Vec::new();
        for (&id, node) in &self.nodes {
            logs.push((id, node.decided_log().await?));
        }
        let mut violations = Vec::new();
        let mut chosen: BTreeMap<Slot, (NodeId, &Value)> = BTreeMap::new();
        for (id, log) in &logs {
            for (slot, value) in log {
                match chosen.get(slot) {
                    Some((other, v)) if *v != value => violations.push(format!(
                        "slot {slot}: node {other} decided {v:?} but node {id} decided {value:?}"
                    )),
                    Some(_) => {}
                    None => {
                        chosen.insert(*slot, (*id, value));
                    }
                }
            }
        }
        for (id, seq) in &applied {
            if !seq.windows(2).all(|w| w[1].0 == w[0].0 + 1) {
                let slots: Vec<Slot> = seq.iter().map(|(s, _)| *s).collect();
                violations.push(format!("node {id} applied slots out of order: {slots:?}"));
            }
            for (slot, req) in seq {
                // Compare with the node's own log and with what any node decided.
                let own = logs.iter().find(|(n, _)| n == id).and_then(|(_, log)| log.get(slot));
                // A slot every node compacted away is no longer in any log to compare with.
                for decided in [own, chosen.get(slot).map(|(_, v)| *v)].into_iter().flatten() {
                    let decided = match decided {
                        Value::Command(c) => Some(c.id),
                        Value::StopSign(s) => Some(s.id),
                        Value::Noop => None,
                    };
                    if decided != *req {
                        violations.push(format!(
                            "node {id} applied slot {slot} as {req:?}; decided: {decided:?}"
                        ));
                    }
                }
            }
        }
        violations.dedup();
        Ok((chosen.len() as u64, violations))
    }
}

impl<A: Application + Default> Drop for Cluster<A> {
    fn drop(&mut self) {
        for node in self.nodes.values() {
            node.halt();
        }
    }
}
