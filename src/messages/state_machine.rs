//! Messages to the state machine from other nodes: the answer to a read-index request.

use super::{RequestId, Slot};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateMachineMessage {
    /// The answer to `ProposerMessage::ReadIndex`: the leader confirmed, after the read
    /// `id` began, that it still leads; the read may be served once every slot below
    /// `index` is applied. `None`: the asked node does not lead (ask again).
    ReadIndexReply { id: RequestId, index: Option<Slot> },
}
