//! Test harnesses, apart from the production path: an in-process cluster of real nodes
//! ([`cluster`]), the deterministic simulator ([`sim`]) and the linearizability checker
//! ([`check`]).

pub mod check;
pub mod cluster;
pub mod sim;
