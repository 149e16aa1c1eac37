//! Using the replicated lock service from one node: sessions, blocking acquire with a
//! FIFO wait, try-lock with a timeout, release. The HTTP endpoints and tests use this.
//!
//! A blocking acquire proposes `Lock` through the log. If the answer is `Queued`, the
//! wait is now replicated state: this node watches its local copy of the lock until its
//! session is the holder, then confirms the grant through the log (which answers the
//! same token, idempotently). Because the wait is state, not a connection, a client that
//! loses its node can ask any other node with the same session and see its grant.
//! A try-lock that times out proposes `Cancel`; if the grant won that race, the cancel
//! answers `Granted` and the caller holds the lock after all.

use crate::app::lock_service::{LockCommand, LockInfo, LockReply, SessionId};
use crate::app::service::{ServiceCommand, ServiceReply};
use crate::engine::Replica;
use crate::error::{Error, Result};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How an acquire ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The session holds the lock; the fencing token of this grant.
    Granted { token: u64 },
    /// The wait ran out; the session left the queue.
    TimedOut,
    /// The wait ran out; the session is still in the queue.
    StillWaiting,
}

/// What to do when a wait runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    LeaveQueue,
    StayQueued,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The lock service as seen through one node.
#[derive(Clone)]
pub struct Locks {
    node: Replica,
}

impl Locks {
    pub fn new(node: impl Into<Replica>) -> Self {
        Locks { node: node.into() }
    }

    async fn run(&self, command: LockCommand) -> Result<LockReply> {
        match self.node.submit(ServiceCommand::Lock(command)).await? {
            ServiceReply::Lock(reply) => Ok(reply),
            ServiceReply::Kv(_) => Err(Error::Protocol("a lock command got a key-value reply".into())),
        }
    }

    async fn read(&self, command: LockCommand) -> Result<LockReply> {
        match self.node.read_local(ServiceCommand::Lock(command)).await? {
            ServiceReply::Lock(reply) => Ok(reply),
            ServiceReply::Kv(_) => Err(Error::Protocol("a lock read got a key-value reply".into())),
        }
    }

    pub async fn open_session(&self, ttl: Duration) -> Result<SessionId> {
        match self
            .run(LockCommand::OpenSession {
                ttl_ms: ttl.as_millis() as u64,
                now_ms: now_ms(),
            })
            .await?
        {
            LockReply::SessionOpened { session, .. } => Ok(session),
            other => Err(Error::Protocol(format!("unexpected answer to open session: {other:?}"))),
        }
    }

    /// Refreshes a session; fails with `NotFound` if it expired.
    pub async fn keep_alive(&self, session: SessionId) -> Result<()> {
        match self
            .run(LockCommand::KeepAlive {
                session,
                now_ms: now_ms(),
            })
            .await?
        {
            LockReply::SessionAlive { .. } => Ok(()),
            _ => Err(Error::NotFound(format!(
                "session {session} has expired or does not exist"
            ))),
        }
    }

    pub async fn close_session(&self, session: SessionId) -> Result<()> {
        match self.run(LockCommand::CloseSession { session }).await? {
            LockReply::SessionClosed { .. } | LockReply::NoSession { .. } => Ok(()),
            other => Err(Error::Protocol(format!(
                "unexpected answer to close session: {other:?}"
            ))),
        }
    }

    /// Takes `name` for `session`, waiting in line as long as `wait` allows (forever if
    /// `None`); when `wait` runs out, the session leaves the queue (a try-lock).
    pub async fn acquire(&self, name: &str, session: SessionId, wait: Option<Duration>) -> Result<Acquired> {
        self.acquire_with(name, session, wait, OnTimeout::LeaveQueue).await
    }

    /// Like [`Locks::acquire`], choosing what happens when `wait` runs out: leave the
    /// queue (`TimedOut`), or stay in it (`StillWaiting`; a long-poll that the client
    /// renews keeps its place in line).
    pub async fn acquire_with(
        &self,
        name: &str,
        session: SessionId,
        wait: Option<Duration>,
        on_timeout: OnTimeout,
    ) -> Result<Acquired> {
        let deadline = wait.map(|t| Instant::now() + t);
        let ask = || LockCommand::Lock {
            name: name.to_string(),
            session,
            now_ms: now_ms(),
        };
        let expired = || {
            Err(Error::NotFound(format!(
                "session {session} has expired or does not exist"
            )))
        };
        let mut reconfirm = Instant::now() + Duration::from_secs(1);
        match self.run(ask()).await? {
            LockReply::Granted { token, .. } => return Ok(Acquired::Granted { token }),
            LockReply::Queued { .. } => {}
            LockReply::NoSession { .. } => return expired(),
            other => return Err(Error::Protocol(format!("unexpected answer to lock: {other:?}"))),
        }
        loop {
            // Watch the local copy; confirm through the log when it shows our grant, and
            // every second anyway (this node may be the one lagging behind).
            let local = self.read(LockCommand::Get { name: name.to_string() }).await?;
            let granted_here = matches!(&local, LockReply::Lock(LockInfo { holder: Some(h), .. }) if *h == session);
            if granted_here || Instant::now() >= reconfirm {
                reconfirm = Instant::now() + Duration::from_secs(1);
                match self.run(ask()).await? {
                    LockReply::Granted { token, .. } => return Ok(Acquired::Granted { token }),
                    LockReply::Queued { .. } => {}
                    LockReply::NoSession { .. } => return expired(),
                    other => return Err(Error::Protocol(format!("unexpected answer to lock: {other:?}"))),
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if on_timeout == OnTimeout::StayQueued {
                    return Ok(Acquired::StillWaiting);
                }
                return match self
                    .run(LockCommand::Cancel {
                        name: name.to_string(),
                        session,
                    })
                    .await?
                {
                    LockReply::Granted { token, .. } => Ok(Acquired::Granted { token }),
                    _ => Ok(Acquired::TimedOut),
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One lock's state, from this node (possibly stale).
    pub async fn get(&self, name: &str) -> Result<LockInfo> {
        match self.read(LockCommand::Get { name: name.to_string() }).await? {
            LockReply::Lock(info) => Ok(info),
            other => Err(Error::Protocol(format!("unexpected answer to get: {other:?}"))),
        }
    }

    /// Releases `name`; refused (`Err(Conflict)`) unless `session` holds it.
    pub async fn release(&self, name: &str, session: SessionId) -> Result<()> {
        match self
            .run(LockCommand::Unlock {
                name: name.to_string(),
                session,
            })
            .await?
        {
            LockReply::Released { .. } => Ok(()),
            LockReply::NotHolder { holder, .. } => Err(Error::Conflict(format!(
                "session {session} does not hold lock {name:?} (holder: {})",
                holder.map_or("nobody".to_string(), |h| h.to_string())
            ))),
            other => Err(Error::Protocol(format!("unexpected answer to unlock: {other:?}"))),
        }
    }

    /// Every lock with a holder or waiters, from this node's state (possibly stale).
    pub async fn list(&self) -> Result<Vec<LockInfo>> {
        match self.read(LockCommand::List).await? {
            LockReply::Locks(list) => Ok(list),
            other => Err(Error::Protocol(format!("unexpected answer to list: {other:?}"))),
        }
    }
}
