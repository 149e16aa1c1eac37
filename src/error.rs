//! The one error type of the crate: every recoverable failure, with a message a person
//! can act on. Invariant violations are not errors: they are `assert!`s.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No quorum answered before the request's deadline; retrying later may succeed.
    Unavailable(String),
    /// The client's input was malformed or not allowed.
    InvalidInput(String),
    /// What was asked for does not exist (an unknown or expired lock session).
    NotFound(String),
    /// The request conflicts with the current state (unlock by a non-holder).
    Conflict(String),
    /// Durable storage failed or holds data this version cannot read.
    Storage(String),
    /// A configuration file or setting is wrong; names the key.
    Config(String),
    /// A peer sent something that breaks the protocol (bad frame, wrong cluster, ...).
    Protocol(String),
    /// The node is shutting down.
    Stopped,
    /// This node was removed from the cluster: it serves no client request. `members`
    /// are the current members to ask instead, as (id, peer address, HTTP address).
    Removed {
        message: String,
        members: Vec<(u64, String, String)>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(m) => write!(f, "unavailable: {m}"),
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::Conflict(m) => write!(f, "conflict: {m}"),
            Error::Storage(m) => write!(f, "storage: {m}"),
            Error::Config(m) => write!(f, "config: {m}"),
            Error::Protocol(m) => write!(f, "protocol: {m}"),
            Error::Stopped => write!(f, "node is stopped"),
            Error::Removed { message, .. } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<bincode::error::DecodeError> for Error {
    fn from(e: bincode::error::DecodeError) -> Self {
        Error::Storage(format!("cannot decode stored data: {e}"))
    }
}

impl From<bincode::error::EncodeError> for Error {
    fn from(e: bincode::error::EncodeError) -> Self {
        Error::Storage(format!("cannot encode: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
