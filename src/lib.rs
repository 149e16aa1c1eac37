//! # rolepax
//!
//! A Multi-Paxos replicated state machine in which each Paxos role (Proposer, Acceptor,
//! Learner, Leader-elector, StateMachine) is its own actix actor, connected to the others
//! only by typed messages. See `docs/ARCHITECTURE.md` for the tour.
//!
//! | folder       | what is in it |
//! |--------------|---------------|
//! | [`roles`]    | the five role cores: plain state machines, no I/O, one output type ([`roles::ready::Ready`]) |
//! | [`driver`]   | the one driver that carries a `Ready` out, in the actors and in the simulator |
//! | [`engine`]   | the door the HTTP front and the lock client use, whichever engine runs (Paxos or Raft) |
//! | [`actors`]   | the actix shells around the cores, and the wiring of one node |
//! | [`messages`] | every message between roles, local and over the network, and the codec |
//! | [`net`]      | transports: in-process and framed TCP |
//! | [`storage`]  | the write-ahead log, the acceptor's and the learner's logs, ballot and snapshot files |
//! | [`app`]      | the applications: key-value store, lock service |
//! | [`raft`]     | the second engine: the same applications on openraft, for the comparison |
//! | [`http`]     | the HTTP front (plain, etcd gateway, locks) |
//! | [`harness`]  | for tests: the in-process cluster, the simulator, the linearizability checker |

pub mod actors;
pub mod app;
pub mod config;
pub mod driver;
pub mod engine;
pub mod error;
pub mod harness;
pub mod http;
pub mod messages;
pub mod net;
pub mod raft;
pub mod roles;
pub mod storage;

pub use app::Application;
pub use app::kv::{KvCommand, KvReply, KvStore};
pub use error::{Error, Result};
pub use harness::cluster::Cluster;
