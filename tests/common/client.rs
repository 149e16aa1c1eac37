//! What the tests that drive real nodes with recorded histories share: a seeded random
//! workload, an HTTP agent that sends each operation exactly once, and what one request
//! came to.
#![allow(dead_code)]

use std::time::Duration;

/// SplitMix64, for schedules and workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// An agent without pooled connections: ureq may resend an idempotent request on a
/// pooled connection that turns out dead, and one operation must be one request.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(1))
        .timeout(timeout)
        .max_idle_connections(0)
        .build()
}

/// What one HTTP request came to.
pub enum Reply {
    /// A status and a body.
    Status(u16, String),
    /// The connection was refused or never made: the request did not leave.
    NotSent,
    /// Sent, but no answer (timeout, reset): unknown.
    Lost(String),
}

pub fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    match r {
        Ok(res) => {
            let status = res.status();
            Reply::Status(status, res.into_string().unwrap_or_default())
        }
        Err(ureq::Error::Status(status, res)) => Reply::Status(status, res.into_string().unwrap_or_default()),
        Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => Reply::NotSent,
        Err(ureq::Error::Transport(t)) => Reply::Lost(t.to_string()),
    }
}
