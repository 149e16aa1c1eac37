//! An in-process network for tests and [`Cluster`](crate::Cluster): every node of one
//! process registers its inbound callback here, and faults are injected on the way.
//!
//! - `drop`, `duplicate`: probabilities per message;
//! - `max_delay`: each message waits a random time up to this (so messages reorder);
//! - partitions: groups of nodes that hear only each other;
//! - crashed nodes: neither send nor receive.
//!
//! Randomness comes from one seeded generator, so the fault pattern a seed makes is the
//! same for the same sequence of sends (actors run concurrently, so the sequence itself
//! may differ between runs: for exact replay use the simulator).

use super::{Inbound, Transport};
use crate::messages::{Envelope, NodeId};
use crate::roles::rng::SeededRng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults the network injects into every message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct NetCounters {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

struct State {
    inbound: BTreeMap<NodeId, Inbound>,
    faults: Faults,
    rng: SeededRng,
    /// Node -> its partition group; nodes in different groups cannot talk.
    group: BTreeMap<NodeId, usize>,
    down: BTreeSet<NodeId>,
    counters: NetCounters,
}

pub struct MemoryNetwork {
    state: Mutex<State>,
}

impl MemoryNetwork {
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new(MemoryNetwork {
            state: Mutex::new(State {
                inbound: BTreeMap::new(),
                faults: Faults::default(),
                rng: SeededRng::new(seed),
                group: BTreeMap::new(),
                down: BTreeSet::new(),
                counters: NetCounters::default(),
            }),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Attaches (or re-attaches, after a restart) a node.
    pub fn register(&self, id: NodeId, inbound: Inbound) {
        self.with(|s| {
            s.inbound.insert(id, inbound);
            s.down.remove(&id);
        });
    }

    /// Cuts a node off entirely (it crashed).
    pub fn set_down(&self, id: NodeId) {
        self.with(|s| {
            s.down.insert(id);
            s.inbound.remove(&id);
        });
    }

    pub fn set_faults(&self, faults: Faults) {
        self.with(|s| s.faults = faults);
    }

    /// Splits the nodes into groups that hear only each other; unnamed nodes form one more group.
    pub fn partition(&self, groups: &[&[NodeId]]) {
        self.with(|s| {
            s.group.clear();
            for (i, g) in groups.iter().enumerate() {
                for &n in *g {
                    s.group.insert(n, i + 1);
                }
            }
        });
    }

    pub fn heal(&self) {
        self.with(|s| s.group.clear());
    }

    pub fn counters(&self) -> NetCounters {
        self.with(|s| s.counters.clone())
    }
}

impl Transport for MemoryNetwork {
    fn send(&self, envelope: Envelope) {
        // Decide the message's fate under the lock, deliver outside it.
        let plan = self.with(|s| {
            s.counters.sent += 1;
            let (from, to) = (envelope.from, envelope.to);
            let cut = s.group.get(&from).copied().unwrap_or(0) != s.group.get(&to).copied().unwrap_or(0);
            let target = s.inbound.get(&to).cloned();
            let target = match target {
                Some(t) if !cut && !s.down.contains(&from) && !s.down.contains(&to) => t,
                _ => {
                    s.counters.dropped += 1;
                    return None;
                }
            };
            let roll = |rng: &mut SeededRng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if roll(&mut s.rng) < s.faults.drop {
                s.counters.dropped += 1;
                return None;
            }
            let copies = if roll(&mut s.rng) < s.faults.duplicate {
                s.counters.duplicated += 1;
                2
            } else {
                1
            };
            let max = s.faults.max_delay.as_micros() as u64;
            let delays: Vec<u64> = (0..copies)
                .map(|_| if max == 0 { 0 } else { s.rng.between(0, max) })
                .collect();
            s.counters.delivered += 1;
            Some((target, delays))
        });
        let Some((target, delays)) = plan else { return };
        for delay in delays {
            let env = envelope.clone();
            if delay == 0 {
                target(env);
            } else {
                let target = target.clone();
                actix_rt::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(delay)).await;
                    target(env);
                });
            }
        }
    }
}
