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

use rolepax::harness::check::linearizability::{KvInput, KvOutput};

/// One random key-value operation on `key` through node `base`'s plain API: a put of
/// `value` (40 %), a linearizable get (35 %) or a compare-and-swap to `value` (25 %)
/// expecting `seen` (what this client last saw of the key; absent one time in four).
pub fn kv_request(
    agent: &ureq::Agent,
    base: &str,
    rng: &mut Rng,
    key: &str,
    value: &str,
    seen: Option<String>,
) -> (KvInput, Reply) {
    let kind = rng.below(100);
    if kind < 40 {
        let r = agent.put(&format!("{base}/v1/kv/{key}")).send_string(value);
        let input = KvInput::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        };
        (input, reply(r))
    } else if kind < 75 {
        let r = agent.get(&format!("{base}/v1/kv/{key}")).call();
        let input = KvInput::Get {
            key: key.as_bytes().to_vec(),
        };
        (input, reply(r))
    } else {
        let expected = if rng.below(4) == 0 { None } else { seen };
        let r = agent
            .post(&format!("{base}/v1/cas/{key}"))
            .send_json(serde_json::json!({"expected": expected, "new": value}));
        let input = KvInput::Cas {
            key: key.as_bytes().to_vec(),
            expected: expected.map(String::into_bytes),
            new: value.as_bytes().to_vec(),
        };
        (input, reply(r))
    }
}

/// What a definite answer to `input` means in the key-value model (`None`: the answer
/// says nothing definite, e.g. a 503).
pub fn kv_output(input: &KvInput, status: u16, body: &str) -> Option<KvOutput> {
    match (input, status) {
        (KvInput::Put { .. }, 200) => Some(KvOutput::Put),
        (KvInput::Get { .. }, 200) => Some(KvOutput::Got(Some(body.as_bytes().to_vec()))),
        (KvInput::Get { .. }, 404) => Some(KvOutput::Got(None)),
        (KvInput::Cas { .. }, 200) => Some(KvOutput::Cas(true)),
        (KvInput::Cas { .. }, 409) => Some(KvOutput::Cas(false)),
        _ => None,
    }
}

/// What the client now knows of the key after `input` answered `out` (`value`: what a
/// put or compare-and-swap wrote).
pub fn note_seen(seen: &mut Option<String>, input: &KvInput, out: &KvOutput, value: &str) {
    match (input, out) {
        (KvInput::Get { .. }, KvOutput::Got(v)) => *seen = v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
        (KvInput::Put { .. }, _) | (KvInput::Cas { .. }, KvOutput::Cas(true)) => *seen = Some(value.to_string()),
        _ => {}
    }
}
