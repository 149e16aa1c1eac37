//! The invariants of snapshots and compaction, checked against the global view like
//! those of [`super::checker`]:
//!
//! | invariant | how it is observed |
//! |-----------|--------------------|
//! | a snapshot is the state at its slot | every snapshot made durable or received, on any node, covering slots below `s`, must be byte for byte the first one seen for `s` (the state machine is deterministic, so replicas agree on the state after each slot) |
//! | the durable snapshot never goes back | a node's durable snapshot covers at least the slots its previous one did (else its logs could start above it) |
//! | logs are compacted only below a durable snapshot | a log gives back the slots below `s` only if the node's durable snapshot covers them |
//! | a new configuration starts from one state | when a node's state machine puts a configuration in force having applied exactly the slots below its first slot (an old member applying the StopSign; a new member that applied its way up to it), its state (the snapshot it would take) must be byte for byte the state every other node held there, and every snapshot taken or received at that slot (a new member's migration included) |

use crate::messages::{NodeId, Slot};
use std::collections::BTreeMap;

/// What the snapshot checks remember.
#[derive(Debug, Default)]
pub struct SnapshotCheck {
    /// The first snapshot seen for each slot: its CRC-32 and length.
    canon: BTreeMap<Slot, (u32, usize)>,
    /// The slot each node's durable snapshot covers up to.
    durable: BTreeMap<NodeId, Slot>,
}

type Check = Result<(), String>;

impl SnapshotCheck {
    /// `bytes`, a snapshot covering slots below `at`, must be the one every node takes there.
    fn same_as_canon(&mut self, node: NodeId, at: Slot, bytes: &[u8], what: &str) -> Check {
        let seen = (crc32fast::hash(bytes), bytes.len());
        match self.canon.get(&at) {
            Some(canon) if *canon != seen => Err(format!(
                "node {node} {what} a snapshot below slot {at} ({} bytes, crc {:08x}) that differs from \
                 the one taken there first ({} bytes, crc {:08x})",
                seen.1, seen.0, canon.1, canon.0
            )),
            Some(_) => Ok(()),
            None => {
                self.canon.insert(at, seen);
                Ok(())
            }
        }
    }

    /// Node `node` made a snapshot covering slots below `at` durable (its own or one it
    /// received).
    pub fn snapshot_durable(&mut self, node: NodeId, at: Slot, bytes: &[u8]) -> Check {
        self.same_as_canon(node, at, bytes, "made durable")?;
        let before = self.durable.insert(node, at).unwrap_or(0);
        if at < before {
            return Err(format!(
                "node {node}'s durable snapshot went back from slot {before} to {at}"
            ));
        }
        Ok(())
    }

    /// Node `node` received, whole, a snapshot covering slots below `at` from a peer.
    pub fn snapshot_received(&mut self, node: NodeId, at: Slot, bytes: &[u8]) -> Check {
        self.same_as_canon(node, at, bytes, "received")
    }

    /// Node `node` put the configuration `config` (numbered `id`) in force with every slot
    /// below `at` applied and its state machine's snapshot being `bytes`.
    pub fn state_at_configuration(&mut self, node: NodeId, id: u64, at: Slot, bytes: &[u8]) -> Check {
        self.same_as_canon(node, at, bytes, &format!("put configuration {id} in force with"))
    }

    /// A log of node `node` gives back the slots below `below`; its durable snapshot
    /// covers the slots below `durable`.
    pub fn compacted(&self, node: NodeId, below: Slot, durable: Slot) -> Check {
        if below > durable {
            return Err(format!(
                "node {node} compacts its log below slot {below}, but its durable snapshot covers only the slots below {durable}"
            ));
        }
        Ok(())
    }
}
