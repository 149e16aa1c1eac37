//! Messages of the leader-elector: the leader's heartbeats and the followers' answers,
//! and the pre-vote a node asks for before it campaigns.

use super::Ballot;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectorMessage {
    /// "I lead with `ballot`."
    Heartbeat { ballot: Ballot },
    /// The answer to a heartbeat of `ballot`; `highest` is the highest ballot the sender
    /// knows of, so a deposed leader learns that it was deposed.
    HeartbeatReply { ballot: Ballot, highest: Ballot },
    /// "Would you follow me if I campaigned with `ballot`?" Asked before campaigning
    /// (pre-vote), so that a node that cannot reach a majority does not raise its ballot.
    PreVote { ballot: Ballot },
    /// The answer to a pre-vote for `ballot`: `granted` unless the sender hears a leader.
    PreVoteReply { ballot: Ballot, granted: bool },
}
