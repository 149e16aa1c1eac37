//! Checks of what clients saw, after the fact.
//!
//! [`linearizability`] decides whether a recorded client history (each operation's
//! invocation, and its response or the fact that none came) could have come from one
//! copy of the service executing one operation at a time, each at some instant between
//! its invocation and its response. Its [models](linearizability::Model) are the
//! key-value register ([`linearizability::KvModel`]) and the owner-aware FIFO lock
//! ([`linearizability::LockModel`]).

pub mod linearizability;
