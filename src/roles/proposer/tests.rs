//! The proposer's unit tests: phase 1 and recovery, phase 2 and its window, thrifty
//! acceptors and deferred decides, reads, and what a deposed proposer does.

use super::*;
use crate::messages::acceptor::{AcceptedRun, CallId};
use crate::messages::local::{LocalMessage, ProposerEvent};
use crate::messages::{AcceptorRequest, LearnerMessage, PeerMessage, RequestId, StateMachineMessage};
use std::collections::BTreeMap;

fn cmd(seq: u64) -> Command {
    Command {
        id: RequestId { client: 7, seq },
        ack_below: 0,
        payload: vec![seq as u8],
    }
}

fn prepares(out: &ProposerOutput) -> Vec<(NodeId, CallId)> {
    out.send
        .iter()
        .filter_map(|(to, m)| match m {
            PeerMessage::AcceptorRequest(AcceptorRequest::Prepare { call, .. }) => Some((*to, *call)),
            _ => None,
        })
        .collect()
}

fn accepts(out: &ProposerOutput) -> Vec<(NodeId, CallId, Slot, Vec<Value>)> {
    out.send
        .iter()
        .filter_map(|(to, m)| match m {
            PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
                call,
                first_slot,
                values,
                ..
            }) => Some((*to, *call, *first_slot, values.clone())),
            _ => None,
        })
        .collect()
}

fn promise(call: CallId, ballot: Ballot, accepted: Vec<AcceptedRun>) -> AcceptorReply {
    AcceptorReply::Promise {
        call,
        ballot,
        decided_below: 0,
        accepted,
        more_from: None,
    }
}

fn run(first: Slot, end: Slot, ballot: Ballot) -> AcceptedRun {
    AcceptedRun { first, end, ballot }
}

/// The `Pull`s sent: (to, first, end).
fn pulls(out: &ProposerOutput) -> Vec<(NodeId, Slot, Slot)> {
    out.send
        .iter()
        .filter_map(|(to, m)| match m {
            PeerMessage::AcceptorRequest(AcceptorRequest::Pull { first, end, .. }) => Some((*to, *first, *end)),
            _ => None,
        })
        .collect()
}

/// A whole `Pulled` of `values` (each with its ballot) from `first_slot`.
fn pulled(call: CallId, ballot: Ballot, first_slot: Slot, values: Vec<(Ballot, Value)>) -> AcceptorReply {
    AcceptorReply::Pulled {
        call,
        ballot,
        first_slot,
        values,
        more_from: None,
    }
}

/// Runs phase 1 of `b` with two empty promises: `p` leads from slot 0.
fn become_leader_unopposed(p: &mut Proposer, b: Ballot) {
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
    p.handle(ProposerInput::Reply(2, promise(call, b, vec![])));
    assert!(p.is_leading());
}

/// A leader of ballot (1, 1) over nodes 1–3 with room for one batch in flight.
fn leader_with_window_of_one(cfg: ProposerConfig) -> (Proposer, Ballot) {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig { max_inflight: 1, ..cfg });
    let b = Ballot::new(1, 1);
    become_leader_unopposed(&mut p, b);
    (p, b)
}

#[test]
fn proposer_recovery_adopts_highest_ballot_and_fills_holes() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(5, 1);
    let out = p.handle(ProposerInput::Lead(b));
    let call = prepares(&out)[0].1;
    assert_eq!(prepares(&out).len(), 3, "phase 1 goes to every acceptor");
    let (b12, b33) = (Ballot::new(1, 2), Ballot::new(3, 3));
    let newer = Value::Command(cmd(2));
    p.handle(ProposerInput::Reply(
        2,
        promise(call, b, vec![run(0, 1, b12), run(2, 3, b12)]),
    ));
    let out = p.handle(ProposerInput::Reply(3, promise(call, b, vec![run(0, 1, b33)])));
    assert!(!p.is_leading() && p.is_pulling());
    assert_eq!(
        pulls(&out),
        vec![(3, 0, 1), (2, 2, 3)],
        "slot 0 from the acceptor holding its highest ballot, slot 2 from its only holder"
    );
    p.handle(ProposerInput::Reply(3, pulled(call, b, 0, vec![(b33, newer.clone())])));
    let out = p.handle(ProposerInput::Reply(
        2,
        pulled(call, b, 2, vec![(b12, Value::Command(cmd(3)))]),
    ));
    assert!(p.is_leading());
    assert_eq!(out.local, vec![LocalMessage::Event(ProposerEvent::Elected(b))]);
    let acc = accepts(&out);
    assert_eq!(acc.len(), 3);
    assert_eq!(acc[0].2, 0);
    assert_eq!(
        acc[0].3,
        vec![newer, Value::Noop, Value::Command(cmd(3))],
        "highest ballot wins; the hole gets a no-op"
    );
    assert_eq!(p.next_slot(), Some(3));
}

#[test]
fn proposer_pulls_from_its_own_acceptor_what_it_holds_at_the_highest_ballot() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(5, 1);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    let b11 = Ballot::new(1, 1);
    p.handle(ProposerInput::Reply(1, promise(call, b, vec![run(0, 10, b11)])));
    let out = p.handle(ProposerInput::Reply(2, promise(call, b, vec![run(0, 10, b11)])));
    assert_eq!(pulls(&out), vec![(1, 0, 10)], "no value crosses the network");
}

#[test]
fn proposer_spreads_parts_over_the_acceptors_holding_them() {
    let mut p = Proposer::new(1, vec![1, 2, 3, 4, 5], ProposerConfig::default());
    let b = Ballot::new(5, 1);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    let b22 = Ballot::new(2, 2);
    // Node 1 lags (its promise is late); 2 and 3 hold slots 0-9, 4 holds 10-13 only.
    p.handle(ProposerInput::Reply(2, promise(call, b, vec![run(0, 10, b22)])));
    p.handle(ProposerInput::Reply(4, promise(call, b, vec![run(10, 14, b22)])));
    assert!(!p.is_pulling(), "two of five: not yet");
    let out = p.handle(ProposerInput::Reply(3, promise(call, b, vec![run(0, 10, b22)])));
    assert_eq!(
        pulls(&out),
        vec![(2, 0, 5), (3, 5, 10), (4, 10, 14)],
        "two holders of 0-9 split it; 10-13 from its holder"
    );
    let v = |n: u64| Value::Command(cmd(n));
    let answer = |first: Slot, end: Slot| (first..end).map(|n| (b22, v(n))).collect::<Vec<_>>();
    p.handle(ProposerInput::Reply(4, pulled(call, b, 10, answer(10, 14))));
    p.handle(ProposerInput::Reply(3, pulled(call, b, 5, answer(5, 10))));
    assert!(!p.is_leading(), "a part is still missing");
    let out = p.handle(ProposerInput::Reply(2, pulled(call, b, 0, answer(0, 5))));
    assert!(p.is_leading());
    assert_eq!(accepts(&out)[0].3, (0..14).map(v).collect::<Vec<_>>());
}

#[test]
fn proposer_never_adopts_a_pulled_value_at_an_unplanned_ballot() {
    let cfg = ProposerConfig {
        retry_ticks: 2,
        prepare_timeout_ticks: 6,
        ..ProposerConfig::default()
    };
    let mut p = Proposer::new(1, vec![1, 2, 3, 4, 5], cfg);
    let b = Ballot::new(5, 1);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    let (b22, b33) = (Ballot::new(2, 2), Ballot::new(3, 3));
    p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
    p.handle(ProposerInput::Reply(2, promise(call, b, vec![run(0, 1, b33)])));
    let out = p.handle(ProposerInput::Reply(3, promise(call, b, vec![run(0, 1, b33)])));
    assert_eq!(pulls(&out), vec![(2, 0, 1)]);
    // Acceptor 2 answers with a value at a lower ballot than it reported: ignored.
    p.handle(ProposerInput::Reply(2, pulled(call, b, 0, vec![(b22, Value::Noop)])));
    assert!(!p.is_leading(), "a value at a lower ballot is never adopted");
    p.handle(ProposerInput::Tick);
    let out = p.handle(ProposerInput::Tick);
    assert_eq!(pulls(&out), vec![(3, 0, 1)], "the other holder is asked at the retry");
    let good = Value::Command(cmd(9));
    let out = p.handle(ProposerInput::Reply(3, pulled(call, b, 0, vec![(b33, good.clone())])));
    assert!(p.is_leading());
    assert_eq!(accepts(&out)[0].3, vec![good]);
}

#[test]
fn proposer_pull_without_progress_times_out_phase_one() {
    let cfg = ProposerConfig {
        retry_ticks: 2,
        prepare_timeout_ticks: 5,
        ..ProposerConfig::default()
    };
    let mut p = Proposer::new(1, vec![1, 2, 3], cfg);
    let b = Ballot::new(5, 1);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
    p.handle(ProposerInput::Reply(
        2,
        promise(call, b, vec![run(0, 1, Ballot::new(1, 2))]),
    ));
    let mut events = Vec::new();
    let mut asked = Vec::new();
    for _ in 0..5 {
        let out = p.handle(ProposerInput::Tick);
        asked.extend(pulls(&out));
        events.extend(out.local);
    }
    assert_eq!(asked, vec![(2, 0, 1), (2, 0, 1)], "asked again every retry");
    assert_eq!(events, vec![LocalMessage::Event(ProposerEvent::PrepareTimedOut(b))]);
    assert_eq!(p.ballot(), None);
}

#[test]
fn proposer_floor_skips_decided_slots_and_tells_learner_to_catch_up() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    p.handle(ProposerInput::Learned(2));
    let b = Ballot::new(5, 1);
    let out = p.handle(ProposerInput::Lead(b));
    let call = prepares(&out)[0].1;
    let b12 = Ballot::new(1, 2);
    p.handle(ProposerInput::Reply(1, promise(call, b, vec![run(2, 8, b12)])));
    let floor = AcceptorReply::Promise {
        call,
        ballot: b,
        decided_below: 6,
        accepted: vec![run(6, 7, b12)],
        more_from: None,
    };
    let out = p.handle(ProposerInput::Reply(3, floor));
    assert_eq!(
        out.local,
        vec![LocalMessage::CatchUp { below: 6, from: 3 }],
        "slots 2-5 are decided: the learner catches up from node 3"
    );
    assert_eq!(pulls(&out), vec![(1, 6, 8)], "nothing below the floor is pulled");
    let out = p.handle(ProposerInput::Reply(
        1,
        pulled(call, b, 6, vec![(b12, Value::Noop), (b12, Value::Command(cmd(7)))]),
    ));
    let acc = accepts(&out);
    assert_eq!(acc[0].2, 6, "nothing is proposed below the floor");
    assert_eq!(p.next_slot(), Some(8));
    // Its learner still reports slot 2 for a while: the leader decides regardless.
    p.handle(ProposerInput::Learned(2));
    p.handle(accepted(1, acc[0].1, b, 6, 2));
    let out = p.handle(accepted(2, acc[0].1, b, 6, 2));
    assert_eq!(decides_to(&out, 6), vec![1], "decided; its own learner hears at once");
}

#[test]
fn proposer_decides_on_majority_and_batches_queued_commands() {
    let (mut p, b) = leader_with_window_of_one(ProposerConfig::default());
    let out = p.handle(ProposerInput::Propose(1, cmd(1)));
    let first = accepts(&out);
    assert_eq!(first.len(), 3);
    // The window is full: these two wait and then leave together.
    assert!(accepts(&p.handle(ProposerInput::Propose(1, cmd(2)))).is_empty());
    p.handle(ProposerInput::Propose(1, cmd(3)));
    let c = first[0].1;
    let accepted = |from| accepted(from, c, b, 0, 1);
    assert!(p.handle(accepted(3)).send.is_empty(), "one acceptor is not a majority");
    let out = p.handle(accepted(1));
    let decides = out
        .send
        .iter()
        .filter(|(_, m)| matches!(m, PeerMessage::Learner(LearnerMessage::Decide { first_slot: 0, .. })))
        .count();
    assert_eq!(decides, 3, "every learner hears the decision");
    let next = accepts(&out);
    assert_eq!(next[0].2, 1);
    assert_eq!(next[0].3.len(), 2, "queued commands leave as one batch");
    assert!(p.handle(accepted(2)).send.is_empty(), "a late Accepted changes nothing");
}

/// Which nodes a `Decide` for `first_slot` goes to in `out`, in order.
fn decides_to(out: &ProposerOutput, first_slot: Slot) -> Vec<NodeId> {
    out.send
        .iter()
        .filter(|(_, m)| matches!(m, PeerMessage::Learner(LearnerMessage::Decide { first_slot: f, values, .. }) if *f == first_slot && !values.is_empty()))
        .map(|(to, _)| *to)
        .collect()
}

/// `from` accepted the one-value batch `call` at `first_slot`.
fn accepted_one(from: NodeId, call: CallId, ballot: Ballot, first_slot: Slot) -> ProposerInput {
    accepted(from, call, ballot, first_slot, 1)
}

/// `from` accepted the batch `call` of `count` values from `first_slot`.
fn accepted(from: NodeId, call: CallId, ballot: Ballot, first_slot: Slot, count: u64) -> ProposerInput {
    ProposerInput::Reply(
        from,
        AcceptorReply::Accepted {
            call,
            ballot,
            first_slot,
            count,
        },
    )
}

#[test]
fn proposer_defers_other_learners_decisions_to_the_next_accept_or_tick() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(1, 1);
    become_leader_unopposed(&mut p, b);
    let accepted = |from, call, first_slot| accepted_one(from, call, b, first_slot);
    // A command of this node's client: only this node's learner hears at once.
    let c0 = accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].1;
    p.handle(accepted(1, c0, 0));
    assert_eq!(decides_to(&p.handle(accepted(2, c0, 0)), 0), vec![1]);
    // The next Accept carries the deferred decision behind it.
    let out = p.handle(ProposerInput::Propose(1, cmd(2)));
    assert_eq!(decides_to(&out, 0), vec![2, 3], "the others hear with the next Accept");
    let last_accept = out
        .send
        .iter()
        .rposition(|(_, m)| matches!(m, PeerMessage::AcceptorRequest(_)));
    let first_decide = out.send.iter().position(|(_, m)| matches!(m, PeerMessage::Learner(_)));
    assert!(
        last_accept < first_decide,
        "Accepts leave before the Decides behind them"
    );
    // With no next Accept, the tick tells them.
    let c1 = accepts(&out)[0].1;
    p.handle(accepted(1, c1, 1));
    assert_eq!(decides_to(&p.handle(accepted(3, c1, 1)), 1), vec![1]);
    assert_eq!(decides_to(&p.handle(ProposerInput::Tick), 1), vec![2, 3]);
    // A command that came through node 2: its client waits there, so no deferring.
    let c2 = accepts(&p.handle(ProposerInput::Propose(2, cmd(3))))[0].1;
    p.handle(accepted(1, c2, 2));
    assert_eq!(decides_to(&p.handle(accepted(2, c2, 2)), 2), vec![1, 2, 3]);
}

#[test]
fn proposer_thrifty_accepts_go_to_the_fastest_quorum_and_later_to_the_rest() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(1, 1);
    become_leader_unopposed(&mut p, b);
    let to = |out: &ProposerOutput| accepts(out).iter().map(|a| a.0).collect::<Vec<_>>();
    let accepted = |from, call, first_slot| accepted_one(from, call, b, first_slot);
    // Nobody has answered yet: the first batch goes to every acceptor.
    let out = p.handle(ProposerInput::Propose(1, cmd(1)));
    assert_eq!(to(&out), vec![1, 2, 3]);
    let c0 = accepts(&out)[0].1;
    p.handle(accepted(1, c0, 0));
    p.handle(accepted(3, c0, 0));
    // Node 3 completed the quorum: the next batch goes to this node and node 3 only.
    let out = p.handle(ProposerInput::Propose(1, cmd(2)));
    assert_eq!(to(&out), vec![1, 3], "a thrifty Accept goes to a quorum");
    // Node 3 falls silent: after thrifty_ticks the skipped node 2 is asked too.
    let c1 = accepts(&out)[0].1;
    p.handle(accepted(1, c1, 1));
    assert!(accepts(&p.handle(ProposerInput::Tick)).is_empty());
    assert_eq!(
        to(&p.handle(ProposerInput::Tick)),
        vec![2],
        "the skipped acceptor gets the batch"
    );
    assert_eq!(decides_to(&p.handle(accepted(2, c1, 1)), 1), vec![1]);
    // A tick forgot who was fastest: the next batch measures again, at every acceptor.
    p.handle(ProposerInput::Tick);
    assert_eq!(to(&p.handle(ProposerInput::Propose(1, cmd(3)))), vec![1, 2, 3]);
    // Thrifty off: always every acceptor.
    let cfg = ProposerConfig {
        thrifty: false,
        ..ProposerConfig::default()
    };
    let mut p = Proposer::new(1, vec![1, 2, 3], cfg);
    become_leader_unopposed(&mut p, b);
    let c0 = accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].1;
    p.handle(accepted(1, c0, 0));
    p.handle(accepted(3, c0, 0));
    assert_eq!(to(&p.handle(ProposerInput::Propose(1, cmd(2)))), vec![1, 2, 3]);
}

#[test]
fn proposer_preempted_by_higher_ballot_stops_and_tells_elector() {
    let mut p = Proposer::new(2, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(1, 2);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    let out = p.handle(ProposerInput::Reply(
        1,
        AcceptorReply::Rejected {
            call,
            ballot: b,
            promised: Ballot::new(4, 3),
        },
    ));
    assert_eq!(
        out.local,
        vec![LocalMessage::Event(ProposerEvent::Preempted(Ballot::new(4, 3)))]
    );
    assert!(p.ballot().is_none());
    assert!(
        p.handle(ProposerInput::Propose(1, cmd(1))).send.is_empty(),
        "an idle proposer proposes nothing"
    );
}

#[test]
fn proposer_ignores_stale_and_unexpected_replies() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    // A promise for a ballot never sent, before leading at all.
    assert_eq!(
        p.handle(ProposerInput::Reply(2, promise(99, Ballot::new(9, 1), vec![]))),
        ProposerOutput::default()
    );
    let b = Ballot::new(2, 1);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    // A promise for an older ballot, an Accepted while preparing, and a duplicate.
    p.handle(ProposerInput::Reply(2, promise(call, Ballot::new(1, 1), vec![])));
    p.handle(ProposerInput::Reply(
        2,
        AcceptorReply::Accepted {
            call,
            ballot: b,
            first_slot: 0,
            count: 1,
        },
    ));
    p.handle(ProposerInput::Reply(2, promise(call, b, vec![])));
    p.handle(ProposerInput::Reply(2, promise(call, b, vec![])));
    assert!(
        !p.is_leading(),
        "one acceptor, however often it answers, is not a majority"
    );
    // A rejection of an old ballot does not depose the current one.
    p.handle(ProposerInput::Reply(
        3,
        AcceptorReply::Rejected {
            call: 1,
            ballot: Ballot::new(1, 1),
            promised: Ballot::new(1, 3),
        },
    ));
    assert_eq!(p.ballot(), Some(b));
}

#[test]
fn proposer_resends_to_silent_acceptors_and_times_out_phase_one() {
    let cfg = ProposerConfig {
        retry_ticks: 2,
        prepare_timeout_ticks: 5,
        ..ProposerConfig::default()
    };
    let mut p = Proposer::new(1, vec![1, 2, 3], cfg);
    let b = Ballot::new(1, 1);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
    p.handle(ProposerInput::Tick);
    let resent = prepares(&p.handle(ProposerInput::Tick));
    assert_eq!(
        resent,
        vec![(2, call), (3, call)],
        "resent only to those that did not answer"
    );
    let mut events = Vec::new();
    for _ in 0..5 {
        events.extend(p.handle(ProposerInput::Tick).local);
    }
    assert_eq!(events, vec![LocalMessage::Event(ProposerEvent::PrepareTimedOut(b))]);
}

#[test]
fn proposer_read_index_confirmed_only_by_a_quorum_after_the_read() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let id = RequestId { client: 9, seq: 1 };
    // Not leading: the asker is told to ask again.
    let out = p.handle(ProposerInput::ReadIndex(2, id));
    assert_eq!(
        out.send,
        vec![(
            2,
            PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index: None })
        )]
    );
    let b = Ballot::new(1, 1);
    become_leader_unopposed(&mut p, b);
    let first = accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].1;
    // A read arriving now must see slot 0: its index is 1. It waits for a batch sent
    // after it arrived: the one in flight does not count.
    assert!(
        accepts(&p.handle(ProposerInput::ReadIndex(3, id))).is_empty(),
        "the barrier waits for the batch in flight"
    );
    let done = |from| accepted(from, first, b, 0, 1);
    p.handle(done(1));
    let out = p.handle(done(2));
    assert!(
        !out.send.iter().any(|(_, m)| matches!(m, PeerMessage::StateMachine(_))),
        "the earlier batch confirms nothing"
    );
    let barrier = accepts(&out);
    assert_eq!(barrier.len(), 2, "a thrifty barrier: this node and node 2");
    assert!(barrier[0].3.is_empty(), "with no commands queued the barrier is empty");
    let c = barrier[0].1;
    let accepted = |from| accepted(from, c, b, 1, 0);
    assert!(
        p.handle(accepted(1)).send.is_empty(),
        "one acceptor does not confirm leadership"
    );
    let out = p.handle(accepted(2));
    assert_eq!(
        out.send,
        vec![(
            3,
            PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index: Some(1) })
        )],
        "no Decide for an empty barrier"
    );
}

#[test]
fn proposer_new_ballot_sends_pending_reads_away() {
    let (mut p, _) = leader_with_window_of_one(ProposerConfig::default());
    p.handle(ProposerInput::Propose(1, cmd(1)));
    let id = RequestId { client: 9, seq: 1 };
    p.handle(ProposerInput::ReadIndex(3, id)); // waits behind the batch in flight
    // A newer ballot: the read's index was stamped under the old one; it must ask again.
    let out = p.handle(ProposerInput::Lead(Ballot::new(2, 1)));
    let none = PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index: None });
    assert!(out.send.contains(&(3, none)), "the pending read is told to ask again");
}

#[test]
fn proposer_batches_are_capped_by_bytes_so_they_fit_a_frame() {
    let (mut p, b) = leader_with_window_of_one(ProposerConfig {
        max_batch_bytes: 1000,
        ..ProposerConfig::default()
    });
    let big = |seq| Command {
        id: RequestId { client: 7, seq },
        ack_below: 0,
        payload: vec![0; 600],
    };
    let first = accepts(&p.handle(ProposerInput::Propose(1, big(1))));
    for seq in 2..=4 {
        p.handle(ProposerInput::Propose(1, big(seq)));
    }
    let c = first[0].1;
    p.handle(accepted_one(1, c, b, 0));
    let out = p.handle(accepted_one(2, c, b, 0));
    let next = accepts(&out);
    assert_eq!(
        next[0].3.len(),
        1,
        "two 600-byte commands exceed 1000 bytes: one per batch"
    );
}

#[test]
fn proposer_counts_an_acceptor_only_once_its_report_is_whole() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(3, 1);
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    let b12 = Ballot::new(1, 2);
    let part = AcceptorReply::Promise {
        call,
        ballot: b,
        decided_below: 0,
        accepted: vec![run(0, 1, Ballot::new(1, 1))],
        more_from: Some(1),
    };
    let out = p.handle(ProposerInput::Reply(2, part));
    assert_eq!(prepares(&out), vec![(2, call)], "the rest is asked for");
    p.handle(ProposerInput::Reply(1, promise(call, b, vec![])));
    assert!(!p.is_pulling(), "a partial report does not count toward the quorum");
    let rest = AcceptorReply::Promise {
        call,
        ballot: b,
        decided_below: 0,
        accepted: vec![run(1, 2, b12)],
        more_from: None,
    };
    let out = p.handle(ProposerInput::Reply(2, rest));
    assert_eq!(pulls(&out), vec![(2, 0, 2)], "both parts were summarised");
    let out = p.handle(ProposerInput::Reply(
        2,
        pulled(
            call,
            b,
            0,
            vec![
                (Ballot::new(1, 1), Value::Command(cmd(1))),
                (b12, Value::Command(cmd(2))),
            ],
        ),
    ));
    assert!(p.is_leading());
    assert_eq!(
        accepts(&out)[0].3,
        vec![Value::Command(cmd(1)), Value::Command(cmd(2))],
        "both parts were recovered"
    );
}

/// A leader over nodes 1–3 with a window of one, where a read of node 2 rides with the
/// barrier batch in flight and a read of node 3 waits for the next batch.
fn leader_with_two_reads_waiting() -> (Proposer, Ballot, CallId, [RequestId; 2]) {
    let (mut p, b) = leader_with_window_of_one(ProposerConfig::default());
    let reads = [RequestId { client: 9, seq: 1 }, RequestId { client: 9, seq: 2 }];
    let barrier = accepts(&p.handle(ProposerInput::ReadIndex(2, reads[0])));
    assert!(
        barrier[0].3.is_empty(),
        "the first read leaves at once with an empty barrier"
    );
    assert!(
        accepts(&p.handle(ProposerInput::ReadIndex(3, reads[1]))).is_empty(),
        "the second waits: the window is full"
    );
    (p, b, barrier[0].1, reads)
}

/// The reads `out` tells to ask again: (to, read).
fn refused_reads(out: &ProposerOutput) -> Vec<(NodeId, RequestId)> {
    out.send
        .iter()
        .filter_map(|(to, m)| match m {
            PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index: None }) => Some((*to, *id)),
            _ => None,
        })
        .collect()
}

#[test]
fn proposer_step_down_tells_every_waiting_read_to_ask_again() {
    let (mut p, _, _, [first, second]) = leader_with_two_reads_waiting();
    let out = p.handle(ProposerInput::StepDown);
    assert_eq!(
        refused_reads(&out),
        vec![(2, first), (3, second)],
        "the read riding with the batch in flight, then the one waiting for the next"
    );
    assert!(p.ballot().is_none());
    assert!(
        refused_reads(&p.handle(ProposerInput::StepDown)).is_empty(),
        "each read is answered once"
    );
}

#[test]
fn proposer_preempted_tells_every_waiting_read_to_ask_again() {
    let (mut p, b, call, [first, second]) = leader_with_two_reads_waiting();
    let higher = Ballot::new(b.round + 1, 2);
    let out = p.handle(ProposerInput::Reply(
        2,
        AcceptorReply::Rejected {
            call,
            ballot: b,
            promised: higher,
        },
    ));
    assert_eq!(refused_reads(&out), vec![(2, first), (3, second)]);
    assert_eq!(out.local, vec![LocalMessage::Event(ProposerEvent::Preempted(higher))]);
    // A late quorum for the batch confirms nothing any more.
    let accepted = |from| accepted_one(from, call, b, 1);
    p.handle(accepted(1));
    assert!(
        p.handle(accepted(3)).send.is_empty(),
        "a deposed proposer answers no read"
    );
}

// ---- Membership change: the StopSign's stop rule, recovery rule and Reconfigure ----

/// A StopSign ending configuration `prev`, naming `members` as the next one.
fn stop_sign(prev: ConfigId, members: &[NodeId]) -> StopSign {
    StopSign {
        id: RequestId {
            client: 8,
            seq: prev + 1,
        },
        prev,
        members: Configuration::of_ids(members).members,
        sources: Vec::new(),
    }
}

/// The configuration a StopSign of `members` decided at `at` starts (id `id`).
fn next_config(id: ConfigId, members: &[NodeId], at: Slot) -> Configuration {
    Configuration {
        id,
        start: at + 1,
        members: Configuration::of_ids(members).members,
    }
}

/// The values of every `Accept` in `out` by slot, each with the nodes it went to.
fn accepted_slots(out: &ProposerOutput) -> Vec<(Slot, Value, Vec<NodeId>)> {
    let mut slots: Vec<(Slot, Value, Vec<NodeId>)> = Vec::new();
    for (to, _, first, values) in accepts(out) {
        for (slot, value) in (first..).zip(values) {
            match slots.iter_mut().find(|(s, _, _)| *s == slot) {
                Some((_, _, nodes)) => nodes.push(to),
                None => slots.push((slot, value, vec![to])),
            }
        }
    }
    slots
}

#[test]
fn proposer_assigns_no_slot_after_a_stop_sign() {
    let (mut p, b) = leader_with_window_of_one(ProposerConfig::default());
    let stop = stop_sign(0, &[1, 2, 4]);
    let first = accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].1;
    // Behind the batch in flight: a command, the StopSign, and two more commands.
    p.handle(ProposerInput::Propose(1, cmd(2)));
    p.handle(ProposerInput::ProposeStop(2, stop.clone()));
    p.handle(ProposerInput::Propose(1, cmd(3)));
    p.handle(ProposerInput::Propose(3, cmd(4)));
    assert_eq!(p.stopped_at(), None, "not assigned yet: the window is full");
    p.handle(accepted_one(1, first, b, 0));
    let out = p.handle(accepted_one(2, first, b, 0));
    let next = accepts(&out);
    assert_eq!(next[0].2, 1);
    assert_eq!(
        next[0].3,
        vec![Value::Command(cmd(2)), Value::StopSign(stop)],
        "the StopSign ends its batch"
    );
    assert_eq!(p.stopped_at(), Some(2));
    assert_eq!(p.next_slot(), Some(3));
    assert_eq!(p.queued(), 2, "the commands after it stay queued");
    // Its batch decided, the window is free: still nothing above the StopSign.
    let c = next[0].1;
    p.handle(accepted(1, c, b, 1, 2));
    let out = p.handle(accepted(3, c, b, 1, 2));
    assert_eq!(
        decides_to(&out, 1),
        vec![1, 2, 3],
        "the StopSign is decided (it came through node 2: every learner hears at once)"
    );
    assert!(accepts(&out).is_empty(), "no slot after the StopSign");
    // Neither new commands, nor read barriers, nor ticks assign one.
    let id = RequestId { client: 9, seq: 1 };
    assert!(accepts(&p.handle(ProposerInput::Propose(1, cmd(5)))).is_empty());
    assert!(accepts(&p.handle(ProposerInput::ReadIndex(2, id))).is_empty());
    for _ in 0..50 {
        assert!(accepts(&p.handle(ProposerInput::Tick)).is_empty());
    }
    assert_eq!((p.next_slot(), p.queued()), (Some(3), 3));
}

#[test]
fn proposer_stop_sign_alone_leaves_at_once_even_with_a_batch_in_flight() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    become_leader_unopposed(&mut p, Ballot::new(1, 1));
    p.handle(ProposerInput::Propose(1, cmd(1)));
    // A batch ending in a StopSign can take nothing more: it pipelines like a full one.
    let out = p.handle(ProposerInput::ProposeStop(1, stop_sign(0, &[1, 2])));
    assert_eq!(accepts(&out)[0].2, 1);
    assert_eq!(p.stopped_at(), Some(1));
    let out = p.handle(ProposerInput::ProposeStop(1, stop_sign(0, &[1, 3])));
    assert!(accepts(&out).is_empty(), "a second StopSign waits like a command");
    assert_eq!(p.queued(), 1);
}

#[test]
fn proposer_carries_queued_commands_into_the_next_configuration() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(1, 1);
    become_leader_unopposed(&mut p, b);
    let call = accepts(&p.handle(ProposerInput::ProposeStop(1, stop_sign(0, &[1, 2, 4]))))[0].1;
    p.handle(ProposerInput::Propose(2, cmd(1)));
    p.handle(ProposerInput::Propose(1, cmd(2)));
    let id = RequestId { client: 9, seq: 1 };
    p.handle(ProposerInput::ReadIndex(3, id));
    p.handle(accepted_one(1, call, b, 0));
    assert_eq!(decides_to(&p.handle(accepted_one(2, call, b, 0)), 0), vec![1]);
    // The StopSign at slot 0 is applied here: configuration 1 is {1, 2, 4} from slot 1.
    let out = p.handle(ProposerInput::Reconfigure(next_config(1, &[1, 2, 4], 0)));
    assert_eq!(
        decides_to(&out, 0),
        vec![2, 3],
        "the old members hear the decision first"
    );
    assert_eq!(refused_reads(&out), vec![(3, id)], "the waiting read asks again");
    assert_eq!((p.ballot(), p.stopped_at(), p.queued()), (None, None, 2));
    assert_eq!((p.config_id(), p.nodes()), (1, &[1, 2, 4][..]));
    // Ordered to lead configuration 1: phase 1 at its members, from its first slot.
    let b1 = Ballot::in_config(1, 1, 1);
    let out = p.handle(ProposerInput::Lead(b1));
    let asked: Vec<(NodeId, Slot)> = out
        .send
        .iter()
        .filter_map(|(to, m)| match m {
            PeerMessage::AcceptorRequest(AcceptorRequest::Prepare { from_slot, ballot, .. }) if *ballot == b1 => {
                Some((*to, *from_slot))
            }
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![(1, 1), (2, 1), (4, 1)]);
    let call = prepares(&out)[0].1;
    p.handle(ProposerInput::Reply(1, promise(call, b1, vec![])));
    assert!(
        !p.is_leading(),
        "node 3's promise would not count: one of three is no majority"
    );
    p.handle(ProposerInput::Reply(3, promise(call, b1, vec![])));
    assert!(!p.is_leading(), "node 3 is no member any more");
    let out = p.handle(ProposerInput::Reply(4, promise(call, b1, vec![])));
    assert!(p.is_leading());
    assert_eq!(
        accepted_slots(&out),
        vec![
            (1, Value::Command(cmd(1)), vec![1, 2, 4]),
            (2, Value::Command(cmd(2)), vec![1, 2, 4]),
        ],
        "the queued commands go out in configuration 1, after the StopSign"
    );
    // A majority of the new members decides them.
    let c = accepts(&out)[0].1;
    p.handle(accepted(1, c, b1, 1, 2));
    let out = p.handle(accepted(4, c, b1, 1, 2));
    assert_eq!(
        decides_to(&out, 1),
        vec![1, 2, 4],
        "a command of node 2: every learner at once"
    );
}

#[test]
fn proposer_reconfigure_ignores_a_configuration_not_newer_than_its_own() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default()).with_config_id(2);
    let b = Ballot::in_config(2, 1, 1);
    become_leader_unopposed(&mut p, b);
    p.handle(ProposerInput::Propose(1, cmd(1)));
    for id in [0, 1, 2] {
        let out = p.handle(ProposerInput::Reconfigure(next_config(id, &[1, 4, 5], 0)));
        assert_eq!(out, ProposerOutput::default(), "configuration {id} is not newer than 2");
    }
    assert_eq!((p.config_id(), p.nodes(), p.ballot()), (2, &[1, 2, 3][..], Some(b)));
}

#[test]
fn proposer_refuses_to_lead_a_ballot_of_another_configuration() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default()).with_config_id(1);
    // The elector is behind: its ballot is of configuration 0.
    let out = p.handle(ProposerInput::Lead(Ballot::new(9, 1)));
    assert!(prepares(&out).is_empty());
    assert_eq!(
        out.local,
        vec![LocalMessage::Event(ProposerEvent::Preempted(Ballot::in_config(
            1, 0, 0
        )))],
        "the elector learns of configuration 1 as an acceptor would tell it"
    );
    // The elector is ahead: the proposer leads once it applied that configuration too.
    let b2 = Ballot::in_config(2, 1, 1);
    let out = p.handle(ProposerInput::Lead(b2));
    assert!(prepares(&out).is_empty() && out.local.is_empty());
    assert_eq!(p.ballot(), None);
    let out = p.handle(ProposerInput::Reconfigure(next_config(2, &[1, 3, 5], 9)));
    assert_eq!(
        prepares(&out).iter().map(|(to, _)| *to).collect::<Vec<_>>(),
        vec![1, 3, 5],
        "phase 1 of the waiting ballot, at the new members"
    );
    assert_eq!(p.ballot(), Some(b2));
}

#[test]
fn proposer_removed_from_the_configuration_drops_its_queue_and_leads_nothing() {
    let mut p = Proposer::new(3, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(1, 3);
    become_leader_unopposed(&mut p, b);
    p.handle(ProposerInput::ProposeStop(3, stop_sign(0, &[1, 2, 4])));
    p.handle(ProposerInput::Propose(3, cmd(1)));
    assert_eq!(p.queued(), 1);
    p.handle(ProposerInput::Reconfigure(next_config(1, &[1, 2, 4], 0)));
    assert_eq!((p.ballot(), p.queued()), (None, 0));
    let b1 = Ballot::in_config(1, 1, 3);
    let out = p.handle(ProposerInput::Lead(b1));
    assert!(prepares(&out).is_empty(), "no member: no phase 1");
    assert_eq!(out.local, vec![LocalMessage::Event(ProposerEvent::PrepareTimedOut(b1))]);
}

/// Runs phase 1 of `b` over nodes 1–3 where node 2 reports `two` and node 3 reports
/// `three`, answers every pull with `values` (by slot, with their ballots), and returns
/// the output that made `p` lead.
fn recover(
    p: &mut Proposer,
    b: Ballot,
    two: Vec<AcceptedRun>,
    three: Vec<AcceptedRun>,
    values: &BTreeMap<Slot, (Ballot, Value)>,
) -> ProposerOutput {
    let call = prepares(&p.handle(ProposerInput::Lead(b)))[0].1;
    p.handle(ProposerInput::Reply(2, promise(call, b, two)));
    let out = p.handle(ProposerInput::Reply(3, promise(call, b, three)));
    let mut last = ProposerOutput::default();
    for (to, first, end) in pulls(&out) {
        let answer = (first..end).map(|slot| values[&slot].clone()).collect();
        last = p.handle(ProposerInput::Reply(to, pulled(call, b, first, answer)));
    }
    assert!(p.is_leading());
    last
}

#[test]
fn proposer_recovery_reproposes_a_stop_sign_and_nothing_after_it() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let (low, at_stop) = (Ballot::new(1, 2), Ballot::new(2, 2));
    let stop = Value::StopSign(stop_sign(0, &[1, 2, 4]));
    let values: BTreeMap<Slot, (Ballot, Value)> = [
        (0, (low, Value::Command(cmd(0)))),
        (1, (at_stop, stop.clone())),
        (2, (low, Value::Command(cmd(2)))),
        (3, (at_stop, Value::Command(cmd(3)))),
        (5, (low, Value::Command(cmd(5)))),
    ]
    .into();
    // Slots 2 and 3 at lower or equal ballots than the StopSign's, a hole at 4, 5 lower.
    let two = vec![run(0, 1, low), run(1, 2, at_stop), run(2, 3, low), run(3, 4, at_stop)];
    let three = vec![run(5, 6, low)];
    let out = recover(&mut p, Ballot::new(5, 1), two, three, &values);
    assert_eq!(
        accepted_slots(&out)
            .into_iter()
            .map(|(s, v, _)| (s, v))
            .collect::<Vec<_>>(),
        vec![(0, Value::Command(cmd(0))), (1, stop)],
        "the StopSign again, and nothing after it: no values, no no-ops"
    );
    assert_eq!((p.stopped_at(), p.next_slot()), (Some(1), Some(2)));
    assert!(
        accepts(&p.handle(ProposerInput::Propose(1, cmd(9)))).is_empty(),
        "stopped"
    );
}

#[test]
fn proposer_recovery_replaces_a_stop_sign_followed_by_a_higher_ballot() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let (low, mid, high) = (Ballot::new(1, 2), Ballot::new(2, 2), Ballot::new(3, 3));
    let (first, second) = (stop_sign(0, &[1, 2, 4]), stop_sign(0, &[1, 3, 5]));
    let values: BTreeMap<Slot, (Ballot, Value)> = [
        (0, (mid, Value::StopSign(first))),
        (1, (low, Value::Command(cmd(1)))),
        (2, (high, Value::Command(cmd(2)))),
        (3, (high, Value::StopSign(second.clone()))),
        (4, (low, Value::Command(cmd(4)))),
    ]
    .into();
    // Slot 2 was proposed at a higher ballot than the first StopSign: it was not chosen.
    // The second one has nothing higher after it: it stops the log.
    let two = vec![run(0, 1, mid), run(1, 2, low), run(4, 5, low)];
    let three = vec![run(2, 4, high)];
    let out = recover(&mut p, Ballot::new(5, 1), two, three, &values);
    assert_eq!(
        accepted_slots(&out)
            .into_iter()
            .map(|(s, v, _)| (s, v))
            .collect::<Vec<_>>(),
        vec![
            (0, Value::Noop),
            (1, Value::Command(cmd(1))),
            (2, Value::Command(cmd(2))),
            (3, Value::StopSign(second)),
        ]
    );
    assert_eq!(p.stopped_at(), Some(3));
}

#[test]
fn proposer_recovery_cut_keeps_a_stop_sign_unless_a_strictly_higher_ballot_follows() {
    let s = |b: Option<Ballot>| (b, Value::StopSign(stop_sign(0, &[1])));
    let c = |b: Option<Ballot>| (b, Value::Command(cmd(1)));
    let hole = (None, Value::Noop);
    let (b1, b2) = (Some(Ballot::new(1, 1)), Some(Ballot::new(2, 1)));
    let cases: Vec<(phase1::Forced, Option<usize>, usize)> = vec![
        (vec![c(b1), c(b2)], None, 2),
        (vec![s(b1), c(b1), hole.clone()], Some(0), 1),
        (vec![c(b2), s(b1), hole.clone(), c(b1)], Some(1), 2),
        (vec![s(b1), c(b2)], None, 2),
        (vec![s(b1), c(b2), s(b2), hole.clone()], Some(2), 3),
        (vec![s(b1), s(b2), c(b2)], Some(1), 2),
        (vec![s(Some(Ballot::in_config(1, 1, 1))), c(b2)], Some(0), 1),
    ];
    let of_config_0 = |v: &Value| matches!(v, Value::StopSign(s) if s.prev == 0);
    for (n, (mut values, at, len)) in cases.into_iter().enumerate() {
        assert_eq!(phase1::cut_at_stop_sign(&mut values, of_config_0), at, "case {n}");
        assert_eq!(values.len(), len, "case {n}");
    }
    // A StopSign of another configuration is decided as a no-op: no cut, and it stays.
    let mut values = vec![(b1, Value::StopSign(stop_sign(3, &[1]))), c(b1)];
    assert_eq!(phase1::cut_at_stop_sign(&mut values, of_config_0), None);
    assert!(matches!(values[0].1, Value::StopSign(_)));
}

#[test]
fn proposer_stop_sign_of_another_configuration_is_proposed_like_a_command() {
    // Configuration 1 is in force; a StopSign raced with the one that started it and
    // still names configuration 0: the state machine will refuse it, so it stops nothing.
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default()).with_config_id(1);
    let b = Ballot::in_config(1, 1, 1);
    become_leader_unopposed(&mut p, b);
    let call = accepts(&p.handle(ProposerInput::ProposeStop(1, stop_sign(0, &[1, 2]))))[0].1;
    assert_eq!(p.stopped_at(), None);
    p.handle(accepted_one(1, call, b, 0));
    let out = p.handle(accepted_one(2, call, b, 0));
    assert_eq!(accepts(&p.handle(ProposerInput::Propose(1, cmd(1))))[0].2, 1);
    assert_eq!(decides_to(&out, 0), vec![1]);
    // And phase 1 of a later ballot does not stop at it either.
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default()).with_config_id(1);
    let low = Ballot::in_config(1, 1, 2);
    let stale = Value::StopSign(stop_sign(0, &[1, 2]));
    let values: BTreeMap<Slot, (Ballot, Value)> =
        [(0, (low, stale.clone())), (1, (low, Value::Command(cmd(1))))].into();
    let out = recover(
        &mut p,
        Ballot::in_config(1, 5, 1),
        vec![run(0, 2, low)],
        vec![],
        &values,
    );
    assert_eq!(accepts(&out)[0].3, vec![stale, Value::Command(cmd(1))]);
    assert_eq!(p.stopped_at(), None);
}

#[test]
fn proposer_stopped_ballot_answers_reads_only_by_asking_again() {
    let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default());
    let b = Ballot::new(1, 1);
    become_leader_unopposed(&mut p, b);
    let call = accepts(&p.handle(ProposerInput::ProposeStop(1, stop_sign(0, &[1, 2]))))[0].1;
    let id = RequestId { client: 9, seq: 4 };
    p.handle(ProposerInput::ReadIndex(2, id));
    p.handle(accepted_one(1, call, b, 0));
    let out = p.handle(accepted_one(3, call, b, 0));
    assert!(
        refused_reads(&out).is_empty() && accepts(&out).is_empty(),
        "the read waits"
    );
    let out = p.handle(ProposerInput::StepDown);
    assert_eq!(refused_reads(&out), vec![(2, id)]);
}

#[cfg(feature = "planted-bugs")]
mod planted {
    use super::*;
    use crate::roles::bugs::PlantedBugs;

    #[test]
    fn proposer_planted_proposes_past_stop_sign_assigns_slots_after_it() {
        let bugs = PlantedBugs {
            proposer_proposes_past_stop_sign: true,
            ..PlantedBugs::default()
        };
        let mut p = Proposer::new(1, vec![1, 2, 3], ProposerConfig::default()).with_bugs(bugs);
        become_leader_unopposed(&mut p, Ballot::new(1, 1));
        let stop = Value::StopSign(stop_sign(0, &[1, 2, 4]));
        // The first batch is in flight: the StopSign and a command gather behind it.
        p.handle(ProposerInput::Propose(1, cmd(1)));
        p.handle(ProposerInput::ProposeStop(1, stop_sign(0, &[1, 2, 4])));
        p.handle(ProposerInput::Propose(1, cmd(2)));
        assert_eq!(p.stopped_at(), None);
        assert_eq!(p.queued(), 2, "not cut at the StopSign: a partial batch waits");
        // And recovery keeps what was reported past a StopSign (one value per batch:
        // a new command need not wait for the recovery batch).
        let one = ProposerConfig {
            max_batch: 1,
            ..ProposerConfig::default()
        };
        let mut p = Proposer::new(1, vec![1, 2, 3], one).with_bugs(bugs);
        let low = Ballot::new(1, 2);
        let values: BTreeMap<Slot, (Ballot, Value)> =
            [(0, (low, stop.clone())), (1, (low, Value::Command(cmd(1))))].into();
        let out = recover(&mut p, Ballot::new(5, 1), vec![run(0, 2, low)], vec![], &values);
        let recovered: Vec<Value> = accepted_slots(&out).into_iter().map(|(_, v, _)| v).collect();
        assert_eq!(recovered, vec![stop, Value::Command(cmd(1))]);
        assert_eq!((p.stopped_at(), p.next_slot()), (None, Some(2)));
        assert_eq!(
            accepts(&p.handle(ProposerInput::Propose(1, cmd(3))))[0].2,
            2,
            "a new command gets a slot after the StopSign"
        );
    }

    #[test]
    fn proposer_planted_starts_next_config_early_sends_past_the_stop_sign_to_its_members() {
        let bugs = PlantedBugs {
            proposer_starts_next_config_early: true,
            ..PlantedBugs::default()
        };
        // One value per batch: a command need not wait for the StopSign's batch.
        let one = ProposerConfig {
            max_batch: 1,
            ..ProposerConfig::default()
        };
        let mut p = Proposer::new(1, vec![1, 2, 3], one).with_bugs(bugs);
        let b = Ballot::new(1, 1);
        become_leader_unopposed(&mut p, b);
        let out = p.handle(ProposerInput::ProposeStop(1, stop_sign(0, &[1, 4, 5])));
        assert_eq!(
            accepted_slots(&out)[0].2,
            vec![1, 2, 3],
            "the StopSign goes to this configuration"
        );
        assert_eq!(p.stopped_at(), Some(0));
        let out = p.handle(ProposerInput::Propose(1, cmd(1)));
        assert_eq!(
            accepted_slots(&out),
            vec![(1, Value::Command(cmd(1)), vec![1, 4, 5])],
            "the slot after it goes to the next configuration's members"
        );
        // And their quorum decides it, the StopSign undecided.
        let c = accepts(&out)[0].1;
        p.handle(accepted_one(4, c, b, 1));
        assert_eq!(decides_to(&p.handle(accepted_one(5, c, b, 1)), 1), vec![1]);
    }
}
