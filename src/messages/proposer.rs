//! Messages of the proposer from other nodes: client commands forwarded to the leader,
//! and read-index requests (answered by `StateMachineMessage::ReadIndexReply`).

use super::{Command, RequestId, StopSign};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposerMessage {
    /// Put this command in the log. Sent by the node a client asked, to the node it
    /// believes leads; dropped by a proposer that does not lead (the asking node retries).
    Propose { command: Command },
    /// Put this StopSign in the log (a membership change). Like `Propose`: dropped by a
    /// proposer that does not lead, retried by the asking node.
    ProposeStop { stop: StopSign },
    /// A linearizable read `id` began at the sender: confirm leadership and say up to
    /// which slot the sender must have applied before it answers.
    ReadIndex { id: RequestId },
}
