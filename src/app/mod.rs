//! Applications: deterministic state machines that know nothing of Paxos.
//!
//! An [`Application`] turns commands into replies, one at a time, the same way on every
//! replica. It never sees slots, ballots or nodes, so another replication engine (a Raft
//! library, for the side-by-side comparison) can drive the very same type unchanged.
//! Client deduplication lives outside it, in the replicated [`StateMachine`] wrapper.
//!
//! [`StateMachine`]: crate::roles::state_machine::StateMachine

pub mod kv;
pub mod lock_service;
pub mod service;

use crate::error::Result;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

pub trait Application: Send + Unpin + 'static {
    /// A command, as clients send it and the log carries it (encoded).
    type Command: Serialize + DeserializeOwned + Clone + Debug + Send + Unpin + 'static;
    /// What applying (or reading) a command answers.
    type Reply: Serialize + DeserializeOwned + Clone + Debug + Send + Unpin + 'static;

    /// Applies one command. Must be deterministic: same state and command, same result.
    fn apply(&mut self, command: Self::Command) -> Self::Reply;

    /// Answers a read-only command from local state without changing it, or `None` if the
    /// command is not read-only (it must then go through the log).
    fn read(&self, command: &Self::Command) -> Option<Self::Reply>;

    /// A command the leader should propose now that its clock reads `now_ms`, if any
    /// (the lock service's expiry tick). Time enters the state machine only this way,
    /// through the log, so every replica agrees on it.
    fn clock_command(&self, _now_ms: u64) -> Option<Self::Command> {
        None
    }

    /// Writes the whole state to `w`, streamed: a large state never becomes one buffer.
    /// Called twice per snapshot (a first pass counts the bytes), so it must write the
    /// same bytes for the same state: no `HashMap` iteration order in it.
    fn write_snapshot(&self, w: &mut dyn std::io::Write) -> Result<()>;

    /// The whole state as bytes (what [`Application::write_snapshot`] writes).
    fn snapshot(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.write_snapshot(&mut bytes)?;
        Ok(bytes)
    }

    /// Rebuilds the state from [`Application::snapshot`]'s bytes.
    fn restore(bytes: &[u8]) -> Result<Self>
    where
        Self: Sized;
}

/// [`Application::write_snapshot`] for an application whose snapshot is its own
/// encoding (bincode, through serde).
pub fn write_encoded<T: Serialize>(state: &T, mut w: &mut dyn std::io::Write) -> Result<()> {
    crate::messages::codec::encode_to_writer(state, &mut w)?;
    Ok(())
}

/// [`Application::restore`] for an application whose snapshot is its own encoding;
/// `what` names it in the error.
pub fn restore_encoded<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    crate::messages::codec::decode_local(bytes).map_err(|e| crate::Error::Storage(format!("{what} snapshot: {e}")))
}
