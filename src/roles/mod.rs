//! # The role cores
//!
//! Each Paxos role is a plain state machine here: one input in, one [`Ready`] out. No
//! actor framework, no async runtime, no clock, no randomness, no files or sockets: time arrives as
//! `Tick` inputs, randomness as a seed, and everything a role wants done (writes,
//! messages to roles of this node or of others, client answers) leaves as a returned
//! [`Ready`], which one driver ([`crate::driver`]) carries out, the same code in the
//! node's actors and in the simulator.
//!
//! | module            | role            | keeps                                               |
//! |-------------------|-----------------|-----------------------------------------------------|
//! | [`acceptor`]      | Acceptor        | promised ballot, accepted (ballot, value) per slot  |
//! | [`proposer`]      | Proposer        | ballot it leads with, slots in flight, waiting reads |
//! | [`learner`]       | Learner         | decided values, the first slot not yet applied      |
//! | [`elector`]       | Leader-elector  | who leads, with which ballot; heartbeats; pre-vote  |
//! | [`state_machine`] | StateMachine    | the application, applied index, client replies      |
//!
//! Roles meet only through messages ([`crate::messages`]): no role module imports
//! another. The support modules beside them are plain data: [`ready`] (the output type
//! and its ordering rules), [`quorum`] (quorum calls), [`runs`] (ranges of slots),
//! [`rng`] (the seeded generator) and [`bugs`] (planted bugs, for the safety tests).
//!
//! [`Ready`]: ready::Ready

pub mod acceptor;
pub mod bugs;
pub mod elector;
pub mod learner;
pub mod proposer;
pub mod quorum;
pub mod ready;
pub mod rng;
pub mod runs;
pub mod state_machine;
