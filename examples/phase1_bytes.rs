//! What a new leader receives in phase 1 when it lags behind: the bytes of every
//! acceptor reply that reaches it over the network (its own acceptor's are local), with
//! the production cores of the acceptor and the proposer wired by hand (no disk, no
//! clock: messages are delivered in the order sent).
//!
//! A cluster of N nodes accepted `BASE` slots everywhere, then node N was paused while
//! nodes 1..N-1 accepted `LAG` more (commands of 128 bytes, in batches of 256). Then node
//! N leads with a fresh ballot: its phase 1 asks from the first slot it has not learned.
//!
//! `cargo run --release --example phase1_bytes` (see docs/benchmark-notes.md, "Selective
//! log synchronisation"). It uses only the request/reply types both protocols share, so
//! the same file runs against the protocol before selective synchronisation too.

use rolepax::messages::codec;
use rolepax::messages::{AcceptorReply, AcceptorRequest, Ballot, Command, NodeId, PeerMessage, RequestId, Value};
use rolepax::roles::acceptor::Acceptor;
use rolepax::roles::proposer::{Proposer, ProposerConfig, ProposerInput};
use std::collections::{BTreeMap, VecDeque};

const BASE: u64 = 1_000;
const LAG: u64 = 50_000;
const BATCH: u64 = 256;
const PAYLOAD: usize = 128;

fn command(seq: u64) -> Value {
    Value::Command(Command {
        id: RequestId { client: 1, seq },
        ack_below: 0,
        payload: vec![7; PAYLOAD],
    })
}

/// Accepts slots `first..end` at `ballot` in `acceptor`, a batch at a time.
fn accept_all(acceptor: &mut Acceptor, ballot: Ballot, first: u64, end: u64) {
    let mut slot = first;
    while slot < end {
        let n = BATCH.min(end - slot);
        let values = (slot..slot + n).map(command).collect();
        let request = AcceptorRequest::Accept {
            call: slot,
            ballot,
            first_slot: slot,
            values,
        };
        acceptor.handle(1, request);
        slot += n;
    }
}

/// What the new leader received: (messages, bytes) per reply kind.
type Received = BTreeMap<&'static str, (u64, u64)>;

fn kind(reply: &AcceptorReply) -> &'static str {
    match reply {
        AcceptorReply::Promise { .. } => "Promise",
        AcceptorReply::Accepted { .. } => "Accepted",
        AcceptorReply::Rejected { .. } => "Rejected",
        #[allow(unreachable_patterns)]
        _ => "Pulled",
    }
}

/// Runs phase 1 of node `n` (lagging) over `n` nodes; returns what reached it.
fn measure(n: u64) -> Received {
    let old = Ballot::new(1, 1);
    let mut acceptors: BTreeMap<NodeId, Acceptor> = (1..=n).map(|id| (id, Acceptor::default())).collect();
    for (&id, acceptor) in acceptors.iter_mut() {
        accept_all(acceptor, old, 0, BASE);
        if id != n {
            accept_all(acceptor, old, BASE, BASE + LAG);
        }
    }
    let nodes: Vec<NodeId> = (1..=n).collect();
    let mut leader = Proposer::new(n, nodes, ProposerConfig::default());
    leader.handle(ProposerInput::Learned(BASE));
    let mut queue: VecDeque<(NodeId, NodeId, PeerMessage)> = VecDeque::new();
    let out = leader.handle(ProposerInput::Lead(Ballot::new(2, n)));
    queue.extend(out.send.into_iter().map(|(to, m)| (n, to, m)));
    let mut received = Received::new();
    while let Some((from, to, msg)) = queue.pop_front() {
        if leader.is_leading() {
            break;
        }
        match msg {
            PeerMessage::AcceptorRequest(request) => {
                let Some(acceptor) = acceptors.get_mut(&to) else {
                    continue;
                };
                let ready = acceptor.handle(from, request);
                queue.extend(ready.send.into_iter().map(|(dest, m)| (to, dest, m)));
            }
            PeerMessage::AcceptorReply(reply) => {
                if from != to {
                    let bytes = codec::encode(&PeerMessage::AcceptorReply(reply.clone())).map_or(0, |b| b.len());
                    let entry = received.entry(kind(&reply)).or_default();
                    entry.0 += 1;
                    entry.1 += bytes as u64;
                }
                let out = leader.handle(ProposerInput::Reply(from, reply));
                queue.extend(out.send.into_iter().map(|(dest, m)| (n, dest, m)));
            }
            _ => {}
        }
    }
    assert!(leader.is_leading(), "phase 1 of node {n} completed");
    received
}

fn main() {
    let raw = LAG * command(0).wire_size() as u64;
    println!("lagging suffix: {LAG} slots of {PAYLOAD}-byte commands (~{raw} value bytes)");
    println!("| nodes | reply kind | messages | bytes | bytes / suffix |");
    println!("|------:|------------|---------:|------:|---------------:|");
    for n in [3, 5] {
        let received = measure(n);
        let total: u64 = received.values().map(|(_, b)| b).sum();
        for (kind, (count, bytes)) in &received {
            println!(
                "| {n} | {kind} | {count} | {bytes} | {:.2} |",
                *bytes as f64 / raw as f64
            );
        }
        println!("| {n} | **total** | | {total} | {:.2} |", total as f64 / raw as f64);
    }
}
