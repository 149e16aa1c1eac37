//! # rolepax
//!
//! A Multi-Paxos replicated state machine in which each Paxos role (Proposer, Acceptor,
//! Learner, Leader-elector, StateMachine) is its own actix actor, connected to the others
//! only by typed messages. See `docs/ARCHITECTURE.md` for the tour.

pub mod actors;
pub mod app;
pub mod check;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod error;
pub mod http;
pub mod locks;
pub mod messages;
pub mod net;
pub mod quorum;
pub mod runs;
pub mod sim;
pub mod storage;
pub mod wal;

pub use app::Application;
pub use app::kv::{KvCommand, KvReply, KvStore};
pub use cluster::Cluster;
pub use error::{Error, Result};
