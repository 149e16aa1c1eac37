//! Messages of the proposer from other nodes: client commands forwarded to the leader.

use super::Command;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposerMessage {
    /// Put this command in the log. Sent by the node a client asked, to the node it
    /// believes leads; dropped by a proposer that does not lead (the asking node retries).
    Propose { command: Command },
}
