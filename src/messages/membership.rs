//! Configurations and the StopSign that ends one (membership change).
//!
//! A **configuration** is the set of nodes whose acceptors choose values for a range of
//! slots, with the addresses by which they are reached. The first one (id 0) comes from
//! the config file; every later one is decided in the log.
//!
//! A reconfiguration is a command like any other: a [`StopSign`] naming the next
//! configuration's members (Lamport, Malkhi and Zhou, "Stoppable Paxos", 2008; the
//! StopSign of Omni-Paxos). Once configuration `c` decides a StopSign at slot `s`, it
//! decides nothing after `s`, and configuration `c + 1` decides every slot from `s + 1`
//! on ([`Configuration::start`]). The rules that make this safe:
//!
//! 1. **A leader proposes nothing after a StopSign.** Once it assigned a StopSign to
//!    slot `s`, a proposer of configuration `c` assigns no slot above `s`; commands wait
//!    for the next configuration.
//! 2. **Recovery stops at a StopSign.** A new leader of `c` that finds, in phase 1, a
//!    StopSign at slot `s` (the lowest such slot) re-proposes it and nothing after it,
//!    unless some slot above `s` holds a value of a *higher* ballot than the StopSign:
//!    then a leader of that higher ballot proposed above `s` without a StopSign at `s`,
//!    so the StopSign was not chosen, and it is replaced by a no-op.
//! 3. **Ballots carry the configuration** ([`super::Ballot::config`] orders first), and
//!    an acceptor refuses a ballot of a configuration older than the one its node has
//!    applied, and answers none of a newer one until its node has applied the StopSign
//!    that starts it (a new member takes part only once it holds the state up to the
//!    StopSign).
//! 4. **The state machine applies a StopSign** only if it names the configuration in
//!    force (`prev`): a StopSign proposed against an older configuration (a second change
//!    raced with the first) is decided as a no-op and its request is refused. Applying
//!    it tells every role of the node the new configuration
//!    (`LocalMessage::Reconfigure`).

use super::{NodeId, RequestId, Slot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Configurations are numbered from 0 (the one in the config file), one more per
/// StopSign applied.
pub type ConfigId = u64;

/// How a member is reached. Empty strings in the simulator, which has no addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `IP:port` of its peer (TCP) transport.
    pub peer_addr: String,
    /// `IP:port` of its HTTP API.
    pub http_addr: String,
}

/// A configuration: which nodes choose the slots from `start` on, until a StopSign.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    pub id: ConfigId,
    /// The first slot this configuration decides (0 for the first; one past the
    /// StopSign that started it for the others).
    pub start: Slot,
    /// The members, by node id (sorted: iterating them is deterministic).
    pub members: BTreeMap<NodeId, Member>,
}

impl Configuration {
    /// The first configuration: id 0, from slot 0.
    pub fn initial(members: BTreeMap<NodeId, Member>) -> Self {
        Configuration {
            id: 0,
            start: 0,
            members,
        }
    }

    /// The first configuration of nodes without addresses (simulator, tests).
    pub fn of_ids(ids: &[NodeId]) -> Self {
        Configuration::initial(ids.iter().map(|&n| (n, Member::default())).collect())
    }

    /// The member ids, in ascending order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.keys().copied().collect()
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.members.contains_key(&node)
    }

    /// How many members make a majority.
    pub fn majority(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// The configuration a StopSign decided at slot `at` starts.
    pub fn after(&self, stop: &StopSign, at: Slot) -> Configuration {
        Configuration {
            id: self.id + 1,
            start: at + 1,
            members: stop.members.clone(),
        }
    }
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration {} {:?} from slot {}", self.id, self.ids(), self.start)
    }
}

/// Ends configuration `prev` and names the next one's members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopSign {
    /// The request that asked for the change (answered when the StopSign is applied,
    /// deduplicated like a command).
    pub id: RequestId,
    /// The configuration this StopSign ends; applied only if it is still in force.
    pub prev: ConfigId,
    /// The next configuration's members.
    pub members: BTreeMap<NodeId, Member>,
    /// Members of `prev` a new member pulls the state up to the StopSign from, in
    /// parallel (empty: every member of `prev` that stays).
    pub sources: Vec<NodeId>,
}

impl StopSign {
    /// Roughly how many bytes it takes in a message.
    pub fn wire_size(&self) -> usize {
        48 + self
            .members
            .values()
            .map(|m| 16 + m.peer_addr.len() + m.http_addr.len())
            .sum::<usize>()
            + 8 * self.sources.len()
    }
}
