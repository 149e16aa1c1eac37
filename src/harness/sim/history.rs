//! What the simulated clients did and what they were told: one record per operation,
//! with the simulated times of its invocation and of its response, in the shape a
//! linearizability checker wants (Porcupine's "operations": input, output, call, return).

use crate::messages::NodeId;

/// One client operation on the key-value store, as the client meant it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpInput {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Set `key` to `new` if it holds `expected` (`None`: if absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

impl OpInput {
    pub fn key(&self) -> &[u8] {
        match self {
            OpInput::Get { key } | OpInput::Put { key, .. } | OpInput::Cas { key, .. } => key,
        }
    }

    pub fn is_write(&self) -> bool {
        !matches!(self, OpInput::Get { .. })
    }
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpOutput {
    /// A get's answer: the value, or `None` if the key was absent.
    Got(Option<Vec<u8>>),
    /// A put was applied.
    Put,
    /// A compare-and-swap was applied; did it swap?
    Cas(bool),
    /// The node answered with an error (an undecodable command; never expected here).
    Error(String),
    /// No answer: the request timed out, or the node it asked crashed. The operation
    /// may or may not have taken effect, at any time after its invocation.
    Unknown,
}

/// One operation of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    pub client: u64,
    /// The node the client asked.
    pub node: NodeId,
    pub input: OpInput,
    /// A get served by read index (`NodeHandle::read`), not through the log.
    pub read_index: bool,
    /// Simulated time of the invocation, in microseconds.
    pub invoked_us: u64,
    /// Simulated time of the response (or of giving up), in microseconds; `None` if the
    /// run ended first.
    pub completed_us: Option<u64>,
    pub output: Option<OpOutput>,
}

impl OpRecord {
    /// True if the client learned the outcome.
    pub fn is_definite(&self) -> bool {
        matches!(self.output, Some(OpOutput::Got(_) | OpOutput::Put | OpOutput::Cas(_)))
    }
}
