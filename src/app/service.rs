//! The application a `rolepax-node` runs: the key-value store and the lock service side
//! by side in one replicated state machine, so both share one log and one leader.

use super::Application;
use super::kv::{KvCommand, KvReply, KvStore};
use super::lock_service::{LockCommand, LockReply, LockService};
use crate::error::Result;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub kv: KvStore,
    pub locks: LockService,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceCommand {
    Kv(KvCommand),
    Lock(LockCommand),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceReply {
    Kv(KvReply),
    Lock(LockReply),
}

impl Application for Service {
    type Command = ServiceCommand;
    type Reply = ServiceReply;

    fn apply(&mut self, command: ServiceCommand) -> ServiceReply {
        match command {
            ServiceCommand::Kv(c) => ServiceReply::Kv(self.kv.apply(c)),
            ServiceCommand::Lock(c) => ServiceReply::Lock(self.locks.apply(c)),
        }
    }

    fn read(&self, command: &ServiceCommand) -> Option<ServiceReply> {
        match command {
            ServiceCommand::Kv(c) => self.kv.read(c).map(ServiceReply::Kv),
            ServiceCommand::Lock(c) => self.locks.read(c).map(ServiceReply::Lock),
        }
    }

    fn clock_command(&self, now_ms: u64) -> Option<ServiceCommand> {
        self.locks
            .has_sessions()
            .then_some(ServiceCommand::Lock(LockCommand::Tick { now_ms }))
    }

    fn write_snapshot(&self, w: &mut dyn std::io::Write) -> Result<()> {
        super::write_encoded(self, w)
    }

    fn restore(bytes: &[u8]) -> Result<Self> {
        super::restore_encoded(bytes, "service")
    }
}
