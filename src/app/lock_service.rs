//! The replicated lock service: named locks with FIFO waiters, client sessions with a
//! time-to-live, and fencing tokens, the coordination primitive Chubby, ZooKeeper and
//! etcd offer, as one more deterministic [`Application`].
//!
//! - **Sessions.** A client opens a session with a TTL and keeps it alive. Time here is
//!   *log time*, which only the leader's [`LockCommand::Tick`] moves (its clock minus a
//!   safety margin, proposed while sessions exist), so every replica agrees on it and a
//!   client with a fast clock cannot push it. A client command marks its session alive at
//!   its node's clock; a session whose last sign of life is more than its TTL behind log
//!   time expires, releasing its locks and leaving every queue.
//! - **Locks.** `Lock` grants a free lock at once; otherwise the session joins the lock's
//!   FIFO queue and the grant happens later, when the holder unlocks or expires. A wait
//!   is replicated state, not a connection: asking again (from any node) answers
//!   `Granted` once it is. `Cancel` leaves the queue (a `try_lock` that gave up).
//!   Only the holder may `Unlock`.
//! - **Fencing tokens.** Every grant gets a token from one counter that only grows, so
//!   tokens strictly increase per lock and a downstream service can refuse a stale holder.
//!
//! Left out: lock modes (shared/exclusive), lock-delay after expiry (Chubby §2.4).

use super::Application;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

pub type SessionId = u64;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockCommand {
    OpenSession {
        ttl_ms: u64,
        now_ms: u64,
    },
    KeepAlive {
        session: SessionId,
        now_ms: u64,
    },
    CloseSession {
        session: SessionId,
    },
    Lock {
        name: String,
        session: SessionId,
        now_ms: u64,
    },
    /// Leave the queue of `name` (a try-lock that timed out); if the lock was granted in
    /// the meantime, the answer says so and the session holds it.
    Cancel {
        name: String,
        session: SessionId,
    },
    Unlock {
        name: String,
        session: SessionId,
    },
    /// Log time advances to `now_ms`; expired sessions are removed.
    Tick {
        now_ms: u64,
    },
    /// Read-only: one lock's state.
    Get {
        name: String,
    },
    /// Read-only: every lock with a holder or a queue.
    List,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub name: String,
    pub holder: Option<SessionId>,
    pub token: u64,
    pub queue: Vec<SessionId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockReply {
    SessionOpened {
        session: SessionId,
        ttl_ms: u64,
    },
    SessionAlive {
        session: SessionId,
    },
    SessionClosed {
        session: SessionId,
    },
    Granted {
        name: String,
        token: u64,
    },
    Queued {
        name: String,
        position: usize,
    },
    Cancelled {
        name: String,
    },
    Released {
        name: String,
    },
    /// The session is unknown or expired.
    NoSession {
        session: SessionId,
    },
    /// Unlock by a session that does not hold the lock.
    NotHolder {
        name: String,
        holder: Option<SessionId>,
    },
    Ticked {
        expired: Vec<SessionId>,
    },
    Lock(LockInfo),
    Locks(Vec<LockInfo>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    ttl_ms: u64,
    last_seen_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Lock {
    holder: Option<SessionId>,
    token: u64,
    queue: VecDeque<SessionId>,
}

/// The lock service's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockService {
    now_ms: u64,
    next_session: SessionId,
    next_token: u64,
    sessions: BTreeMap<SessionId, Session>,
    locks: BTreeMap<String, Lock>,
}

impl LockService {
    pub fn new() -> Self {
        Self::default()
    }

    /// True while any session exists (the leader then proposes ticks).
    pub fn has_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// Log time: where the decided `Tick`s moved it (a session's last sign of life is on
    /// this scale too).
    pub fn log_time_ms(&self) -> u64 {
        self.now_ms
    }

    /// Every live session, in id order: its id, TTL and last sign of life.
    pub fn sessions(&self) -> impl Iterator<Item = (SessionId, u64, u64)> + '_ {
        self.sessions.iter().map(|(&id, s)| (id, s.ttl_ms, s.last_seen_ms))
    }

    /// Only the leader's `Tick` moves log time (its clock minus a safety margin). A
    /// client command's clock never does: one node with a fast clock must not expire
    /// everybody's sessions.
    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// When a client command shows its session alive: the taking node's clock, but not
    /// before log time (a session is never seen in the past).
    fn seen_at(&self, now_ms: u64) -> u64 {
        now_ms.max(self.now_ms)
    }

    fn info(&self, name: &str) -> LockInfo {
        let lock = self.locks.get(name).cloned().unwrap_or_default();
        LockInfo {
            name: name.to_string(),
            holder: lock.holder,
            token: lock.token,
            queue: lock.queue.into_iter().collect(),
        }
    }

    /// Hands `name` to the next live waiter, if it is free.
    fn grant_next(&mut self, name: &str) {
        let Some(lock) = self.locks.get_mut(name) else { return };
        if lock.holder.is_none()
            && let Some(next) = lock.queue.pop_front()
        {
            self.next_token += 1;
            lock.holder = Some(next);
            lock.token = self.next_token;
        }
        if lock.holder.is_none() && lock.queue.is_empty() {
            self.locks.remove(name);
        }
    }

    /// Removes a session: releases its locks (granting them on) and leaves every queue.
    fn end_session(&mut self, session: SessionId) {
        self.sessions.remove(&session);
        let names: Vec<String> = self.locks.keys().cloned().collect();
        for name in names {
            if let Some(lock) = self.locks.get_mut(&name) {
                lock.queue.retain(|&s| s != session);
                if lock.holder == Some(session) {
                    lock.holder = None;
                }
            }
            self.grant_next(&name);
        }
    }

    fn expire(&mut self) -> Vec<SessionId> {
        let now = self.now_ms;
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| now > s.last_seen_ms.saturating_add(s.ttl_ms))
            .map(|(&id, _)| id)
            .collect();
        for &id in &expired {
            self.end_session(id);
        }
        expired
    }

    fn run(&mut self, command: LockCommand) -> LockReply {
        match command {
            // A new session, alive from now.
            LockCommand::OpenSession { ttl_ms, now_ms } => {
                self.next_session += 1;
                let session = self.next_session;
                self.sessions.insert(
                    session,
                    Session {
                        ttl_ms,
                        last_seen_ms: self.seen_at(now_ms),
                    },
                );
                LockReply::SessionOpened { session, ttl_ms }
            }
            // Keep-alive: refresh, unless it already expired.
            LockCommand::KeepAlive { session, now_ms } => {
                let seen = self.seen_at(now_ms);
                match self.sessions.get_mut(&session) {
                    Some(s) => {
                        s.last_seen_ms = s.last_seen_ms.max(seen);
                        LockReply::SessionAlive { session }
                    }
                    None => LockReply::NoSession { session },
                }
            }
            // Close: like expiry, but now.
            LockCommand::CloseSession { session } => {
                if !self.sessions.contains_key(&session) {
                    return LockReply::NoSession { session };
                }
                self.end_session(session);
                LockReply::SessionClosed { session }
            }
            // Lock: grant if free, else queue (once); asking again reports the state.
            LockCommand::Lock { name, session, now_ms } => {
                let seen = self.seen_at(now_ms);
                let Some(s) = self.sessions.get_mut(&session) else {
                    return LockReply::NoSession { session };
                };
                s.last_seen_ms = s.last_seen_ms.max(seen);
                let lock = self.locks.entry(name.clone()).or_default();
                if lock.holder == Some(session) {
                    return LockReply::Granted {
                        name,
                        token: lock.token,
                    };
                }
                if !lock.queue.contains(&session) {
                    lock.queue.push_back(session);
                }
                self.grant_next(&name);
                let info = self.info(&name);
                if info.holder == Some(session) {
                    LockReply::Granted {
                        name,
                        token: info.token,
                    }
                } else {
                    let position = info.queue.iter().position(|&s| s == session).unwrap_or(0);
                    LockReply::Queued { name, position }
                }
            }
            // Give up waiting; a grant that already happened stands.
            LockCommand::Cancel { name, session } => {
                let info = self.info(&name);
                if info.holder == Some(session) {
                    return LockReply::Granted {
                        name,
                        token: info.token,
                    };
                }
                if let Some(lock) = self.locks.get_mut(&name) {
                    lock.queue.retain(|&s| s != session);
                }
                self.grant_next(&name);
                LockReply::Cancelled { name }
            }
            // Unlock: only by the holder; the next waiter gets it.
            LockCommand::Unlock { name, session } => {
                let holder = self.locks.get(&name).and_then(|l| l.holder);
                if holder != Some(session) {
                    return LockReply::NotHolder { name, holder };
                }
                if let Some(lock) = self.locks.get_mut(&name) {
                    lock.holder = None;
                }
                self.grant_next(&name);
                LockReply::Released { name }
            }
            // Log time moves on; sessions past their TTL expire.
            LockCommand::Tick { now_ms } => {
                self.advance(now_ms);
                LockReply::Ticked { expired: self.expire() }
            }
            LockCommand::Get { name } => LockReply::Lock(self.info(&name)),
            LockCommand::List => LockReply::Locks(self.locks.keys().map(|n| self.info(n)).collect()),
        }
    }
}

impl Application for LockService {
    type Command = LockCommand;
    type Reply = LockReply;

    fn apply(&mut self, command: LockCommand) -> LockReply {
        self.run(command)
    }

    fn read(&self, command: &LockCommand) -> Option<LockReply> {
        match command {
            LockCommand::Get { name } => Some(LockReply::Lock(self.info(name))),
            LockCommand::List => Some(LockReply::Locks(self.locks.keys().map(|n| self.info(n)).collect())),
            _ => None,
        }
    }

    fn write_snapshot(&self, w: &mut dyn std::io::Write) -> Result<()> {
        super::write_encoded(self, w)
    }

    fn restore(bytes: &[u8]) -> Result<Self> {
        super::restore_encoded(bytes, "lock service")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(l: &mut LockService, ttl_ms: u64, now_ms: u64) -> SessionId {
        match l.apply(LockCommand::OpenSession { ttl_ms, now_ms }) {
            LockReply::SessionOpened { session, .. } => session,
            other => panic!("expected a session, got {other:?}"),
        }
    }

    fn lock(l: &mut LockService, session: SessionId, now_ms: u64) -> LockReply {
        l.apply(LockCommand::Lock {
            name: "L".into(),
            session,
            now_ms,
        })
    }

    #[test]
    fn lock_grants_in_fifo_order_with_growing_tokens() {
        let mut l = LockService::new();
        let (a, b, c) = (
            open(&mut l, 10_000, 0),
            open(&mut l, 10_000, 0),
            open(&mut l, 10_000, 0),
        );
        assert_eq!(
            lock(&mut l, a, 1),
            LockReply::Granted {
                name: "L".into(),
                token: 1
            }
        );
        assert_eq!(
            lock(&mut l, b, 2),
            LockReply::Queued {
                name: "L".into(),
                position: 0
            }
        );
        assert_eq!(
            lock(&mut l, c, 3),
            LockReply::Queued {
                name: "L".into(),
                position: 1
            }
        );
        assert_eq!(
            lock(&mut l, b, 4),
            LockReply::Queued {
                name: "L".into(),
                position: 0
            },
            "asking again does not requeue"
        );
        l.apply(LockCommand::Unlock {
            name: "L".into(),
            session: a,
        });
        assert_eq!(
            lock(&mut l, b, 5),
            LockReply::Granted {
                name: "L".into(),
                token: 2
            },
            "b was first in line"
        );
        l.apply(LockCommand::Unlock {
            name: "L".into(),
            session: b,
        });
        assert_eq!(l.info("L").holder, Some(c));
        assert_eq!(l.info("L").token, 3);
    }

    #[test]
    fn lock_unlock_by_non_holder_is_refused() {
        let mut l = LockService::new();
        let (a, b) = (open(&mut l, 10_000, 0), open(&mut l, 10_000, 0));
        lock(&mut l, a, 1);
        let r = l.apply(LockCommand::Unlock {
            name: "L".into(),
            session: b,
        });
        assert_eq!(
            r,
            LockReply::NotHolder {
                name: "L".into(),
                holder: Some(a)
            }
        );
        assert_eq!(l.info("L").holder, Some(a));
    }

    #[test]
    fn lock_expired_session_releases_to_next_waiter() {
        let mut l = LockService::new();
        let (a, b) = (open(&mut l, 1_000, 0), open(&mut l, 60_000, 0));
        lock(&mut l, a, 0);
        lock(&mut l, b, 0);
        assert_eq!(
            l.apply(LockCommand::Tick { now_ms: 900 }),
            LockReply::Ticked { expired: vec![] }
        );
        assert_eq!(
            l.apply(LockCommand::Tick { now_ms: 1_001 }),
            LockReply::Ticked { expired: vec![a] }
        );
        assert_eq!(l.info("L").holder, Some(b));
        assert_eq!(
            l.apply(LockCommand::KeepAlive {
                session: a,
                now_ms: 1_002
            }),
            LockReply::NoSession { session: a }
        );
    }

    #[test]
    fn lock_keepalive_keeps_session() {
        let mut l = LockService::new();
        let a = open(&mut l, 1_000, 0);
        lock(&mut l, a, 0);
        for t in (500..5_000).step_by(500) {
            assert_eq!(
                l.apply(LockCommand::KeepAlive { session: a, now_ms: t }),
                LockReply::SessionAlive { session: a }
            );
        }
        l.apply(LockCommand::Tick { now_ms: 5_000 });
        assert_eq!(l.info("L").holder, Some(a));
    }

    #[test]
    fn lock_cancel_leaves_queue_but_keeps_a_grant() {
        let mut l = LockService::new();
        let (a, b, c) = (
            open(&mut l, 10_000, 0),
            open(&mut l, 10_000, 0),
            open(&mut l, 10_000, 0),
        );
        lock(&mut l, a, 0);
        lock(&mut l, b, 0);
        lock(&mut l, c, 0);
        assert_eq!(
            l.apply(LockCommand::Cancel {
                name: "L".into(),
                session: b
            }),
            LockReply::Cancelled { name: "L".into() }
        );
        l.apply(LockCommand::Unlock {
            name: "L".into(),
            session: a,
        });
        assert_eq!(l.info("L").holder, Some(c), "b left the queue");
        assert!(matches!(
            l.apply(LockCommand::Cancel {
                name: "L".into(),
                session: c
            }),
            LockReply::Granted { .. }
        ));
    }

    #[test]
    fn lock_close_session_releases_everything() {
        let mut l = LockService::new();
        let (a, b) = (open(&mut l, 10_000, 0), open(&mut l, 10_000, 0));
        l.apply(LockCommand::Lock {
            name: "x".into(),
            session: a,
            now_ms: 0,
        });
        l.apply(LockCommand::Lock {
            name: "y".into(),
            session: b,
            now_ms: 0,
        });
        l.apply(LockCommand::Lock {
            name: "y".into(),
            session: a,
            now_ms: 0,
        });
        l.apply(LockCommand::CloseSession { session: a });
        assert_eq!(l.info("x").holder, None);
        assert!(l.info("y").queue.is_empty());
        assert_eq!(l.read(&LockCommand::List), Some(LockReply::Locks(vec![l.info("y")])));
    }

    #[test]
    fn lock_a_fast_client_clock_does_not_expire_other_sessions() {
        let mut l = LockService::new();
        let a = open(&mut l, 1_000, 0);
        lock(&mut l, a, 0);
        let b = open(&mut l, 1_000, 0);
        // b's node has a clock ten seconds fast: b stays alive, a is not expired by it.
        l.apply(LockCommand::KeepAlive {
            session: b,
            now_ms: 10_000,
        });
        l.apply(LockCommand::Lock {
            name: "L".into(),
            session: b,
            now_ms: 10_000,
        });
        assert_eq!(l.info("L").holder, Some(a), "only the leader's tick moves log time");
        l.apply(LockCommand::Tick { now_ms: 1_001 });
        assert_eq!(l.info("L").holder, Some(b), "a expired by the log's clock; b took over");
    }
}
