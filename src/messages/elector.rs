//! Messages of the leader-elector: the leader's heartbeats and the followers' answers.

use super::Ballot;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectorMessage {
    /// "I lead with `ballot`."
    Heartbeat { ballot: Ballot },
    /// The answer to a heartbeat of `ballot`; `highest` is the highest ballot the sender
    /// knows of, so a deposed leader learns that it was deposed.
    HeartbeatReply { ballot: Ballot, highest: Ballot },
}
