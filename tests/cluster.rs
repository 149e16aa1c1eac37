//! Scenario tests over in-process clusters: each test is the script of one situation.
//! After every scenario the nodes' decided logs are compared slot by slot and their
//! applied sequences checked to be prefixes of one another (`Cluster::check_safety`).

mod common;

use common::*;
use rolepax::messages::acceptor::AcceptedRun;
use rolepax::messages::{
    AcceptorReply, AcceptorRequest, Ballot, Command, ElectorMessage, Envelope, LearnerMessage, PeerMessage, RequestId,
    Value,
};
use rolepax::net::memory::Faults;
use rolepax::roles::bugs::PlantedBugs;
use rolepax::roles::state_machine::CompactPolicy;
use rolepax::{Cluster, Error, KvCommand, KvStore};
use std::time::Duration;

#[actix_rt::test]
async fn cluster_three_nodes_commit_concurrent_writes() {
    let c = cluster(3).await;
    c.wait_for_leader().await.expect("a leader");
    let nodes: Vec<_> = c.ids().into_iter().map(|id| c.node(id).clone()).collect();
    let acked = write_concurrently(nodes.clone(), 6, 20, "w").await;
    assert_eq!(acked.len(), 120, "every write is acknowledged in a healthy cluster");
    wait_all_present(&nodes, &acked).await;
    assert!(c.check_safety().await.expect("safety") >= 120);
}

#[actix_rt::test]
async fn cluster_five_nodes_commit_concurrent_writes() {
    let c = cluster(5).await;
    c.wait_for_leader().await.expect("a leader");
    let nodes: Vec<_> = c.ids().into_iter().map(|id| c.node(id).clone()).collect();
    let acked = write_concurrently(nodes.clone(), 10, 10, "w").await;
    assert_eq!(acked.len(), 100);
    wait_all_present(&nodes, &acked).await;
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_leader_crash_new_leader_completes_inflight_slots() {
    let mut c = cluster(3).await;
    let old = c.wait_for_leader().await.expect("a leader");
    let follower = c.ids().into_iter().find(|&id| id != old).expect("a follower");
    let via = c.node(follower).clone();
    // Writes in flight through a follower while the leader dies under them.
    let writer = actix_rt::spawn(write_concurrently(vec![via.clone()], 4, 15, "crash"));
    let leader = c.node(old).clone();
    eventually_async("the leader decides some slots", || async {
        leader
            .status()
            .await
            .map(|s| s.learner.next_undecided >= 5)
            .unwrap_or(false)
    })
    .await;
    // What the old leader knew to be chosen at the moment it died.
    let chosen_before = c.node(old).decided_log().await.expect("log");
    c.crash(old);
    let new = c.wait_for_leader().await.expect("a new leader");
    assert_ne!(new, old);
    let acked = writer.await.expect("writer");
    assert!(!acked.is_empty());
    let survivors: Vec<_> = c.running().into_iter().map(|id| c.node(id).clone()).collect();
    wait_all_present(&survivors, &acked).await;
    // Every slot chosen before the crash keeps its value on the new leader.
    let log = c.node(new).decided_log().await.expect("log");
    for (slot, value) in &chosen_before {
        assert_eq!(
            log.get(slot),
            Some(value),
            "slot {slot} changed or vanished after the leader crash"
        );
    }
    // The new leader filled every slot below its highest decided one (no-ops for holes).
    let last = log.keys().next_back().copied().unwrap_or(0);
    assert!(
        (0..=last).all(|s| log.contains_key(&s)),
        "the new leader filled every slot up to {last}"
    );
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_follower_crash_and_restart_catches_up() {
    let mut c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let follower = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let first = write_concurrently(vec![c.node(leader).clone()], 2, 10, "before").await;
    c.crash(follower);
    let missed = write_concurrently(vec![c.node(leader).clone()], 2, 10, "missed").await;
    assert_eq!(missed.len(), 20, "two of three nodes are a majority");
    c.restart(follower).await.expect("restart");
    let back = c.node(follower).clone();
    wait_all_present(&[back], &[first, missed].concat()).await;
    c.check_safety().await.expect("safety");
}

/// A follower misses more than the others keep in their logs (they compact every 40
/// slots), then comes back, its data kept or wiped: it catches up by a snapshot from a
/// peer plus the log after it, and serves every acknowledged write.
async fn lagging_follower_catches_up_by_snapshot(wipe: bool) {
    let mut c = cluster_with(3, |cfg| {
        cfg.snapshot_every = 0;
        cfg.compact = Some(CompactPolicy {
            every_slots: 40,
            every_bytes: 1 << 30,
        });
        cfg.learner.snapshot_chunk_bytes = 512;
    })
    .await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let follower = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let first = write_concurrently(vec![c.node(leader).clone()], 2, 10, "before").await;
    c.crash(follower);
    let missed = write_concurrently(vec![c.node(leader).clone()], 4, 60, "missed").await;
    assert_eq!(missed.len(), 240, "two of three nodes are a majority");
    let leader_status = c.node(leader).status().await.expect("status");
    assert!(
        leader_status.state_machine.snapshots >= 3,
        "the others compacted: {leader_status:?}"
    );
    if wipe {
        let dir = c.data_dir(follower).expect("a data directory").to_path_buf();
        std::fs::remove_dir_all(&dir).expect("wipe");
    }
    c.restart(follower).await.expect("restart");
    let back = c.node(follower).clone();
    wait_all_present(std::slice::from_ref(&back), &[first, missed].concat()).await;
    let status = back.status().await.expect("status");
    assert!(
        status.learner.snapshot_chunks_received > 1,
        "it caught up by a snapshot sent in chunks: {status:?}"
    );
    // And it serves linearizable reads of what was written while it was away.
    assert_eq!(get(&back, "missed-3-59").await.as_deref(), Some(&b"v59"[..]));
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_lagging_follower_catches_up_by_snapshot() {
    lagging_follower_catches_up_by_snapshot(false).await;
}

#[actix_rt::test]
async fn cluster_wiped_follower_catches_up_by_snapshot() {
    lagging_follower_catches_up_by_snapshot(true).await;
}

#[actix_rt::test]
async fn cluster_minority_partition_stalls_majority_progresses_then_agree() {
    let c = cluster_with(5, |cfg| cfg.request_timeout = Duration::from_secs(2)).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    // Cut the leader and one more node off from the other three.
    let other = c.ids().into_iter().find(|&id| id != leader).expect("another node");
    let minority = [leader, other];
    let majority: Vec<_> = c.ids().into_iter().filter(|id| !minority.contains(id)).collect();
    c.net.partition(&[&minority, &majority]);
    let stuck = c.node(leader).submit(KvCommand::put("minority", "x")).await;
    assert!(
        matches!(stuck, Err(Error::Unavailable(_))),
        "a minority must not commit, got {stuck:?}"
    );
    let new = c
        .wait_for_leader_among(&majority, DEADLINE)
        .await
        .expect("the majority elects a leader");
    assert!(majority.contains(&new));
    let acked = write_concurrently(vec![c.node(new).clone()], 2, 10, "majority").await;
    assert_eq!(acked.len(), 20);
    c.net.heal();
    let all: Vec<_> = c.ids().into_iter().map(|id| c.node(id).clone()).collect();
    wait_all_present(&all, &acked).await;
    c.check_safety().await.expect("safety");
}

/// A follower cut off for several election timeouts asks for pre-votes nobody
/// answers, so its ballot stays where it was; when it returns, the leader keeps leading
/// with the same ballot and the returning node simply follows it.
#[actix_rt::test]
async fn cluster_returning_node_does_not_depose_the_leader() {
    let c = cluster_with(3, rejoin_timeouts).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    c.node(leader)
        .submit(KvCommand::put("before", "1"))
        .await
        .expect("write");
    let ballot = c.node(leader).ballot();
    let away = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let rest: Vec<_> = c.ids().into_iter().filter(|&id| id != away).collect();
    let timeouts = c.node(away).status().await.expect("status").elector.timeouts;
    c.net.partition(&[&[away], &rest]);
    eventually_async("the cut-off node's election timeout fires three times", || async {
        c.node(away)
            .status()
            .await
            .is_ok_and(|s| s.elector.timeouts >= timeouts + 3)
    })
    .await;
    assert_eq!(c.node(away).ballot(), ballot, "no campaign, so no higher ballot");
    c.net.heal();
    eventually("the returning node follows the leader", || {
        c.node(away).leader() == Some(leader)
    })
    .await;
    c.node(leader)
        .submit(KvCommand::put("after", "2"))
        .await
        .expect("write");
    assert_eq!(c.node(leader).leader(), Some(leader), "the leader still leads");
    assert_eq!(c.node(leader).ballot(), ballot, "with the same ballot");
    c.check_safety().await.expect("safety");
}

/// The same without pre-vote: the cut-off node campaigns again and again, and its higher
/// ballot deposes the leader when it returns. (What the test above guards against.)
#[actix_rt::test]
async fn cluster_returning_node_deposes_the_leader_without_pre_vote() {
    let c = cluster_with(3, |cfg| {
        rejoin_timeouts(cfg);
        cfg.elector.pre_vote = false;
    })
    .await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let ballot = c.node(leader).ballot();
    let away = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let rest: Vec<_> = c.ids().into_iter().filter(|&id| id != away).collect();
    c.net.partition(&[&[away], &rest]);
    eventually("the cut-off node campaigns with higher ballots", || {
        c.node(away).ballot().round >= ballot.round + 3
    })
    .await;
    c.net.heal();
    eventually("a higher ballot reaches the leader", || {
        c.node(leader).ballot() > ballot
    })
    .await;
    c.node(leader)
        .submit(KvCommand::put("after", "2"))
        .await
        .expect("write");
    c.check_safety().await.expect("safety");
}

/// Election timeouts of 0.6-1.2 s: a loaded machine does not elect anew by accident
/// while these two tests watch one leader.
fn rejoin_timeouts(cfg: &mut rolepax::actors::node::NodeConfig) {
    cfg.elector.election_min_ticks = 60;
    cfg.elector.election_max_ticks = 120;
    cfg.elector.step_down_ticks = 120;
}

#[actix_rt::test]
async fn cluster_progress_under_twenty_percent_message_loss() {
    let c = cluster(3).await;
    c.wait_for_leader().await.expect("a leader");
    c.net.set_faults(Faults {
        drop: 0.2,
        duplicate: 0.05,
        max_delay: Duration::from_millis(5),
    });
    let nodes: Vec<_> = c.ids().into_iter().map(|id| c.node(id).clone()).collect();
    let acked = write_concurrently(nodes.clone(), 3, 10, "lossy").await;
    assert!(
        acked.len() >= 25,
        "most writes must get through 20% loss, got {}",
        acked.len()
    );
    c.net.set_faults(Faults::default());
    wait_all_present(&nodes, &acked).await;
    c.check_safety().await.expect("safety");
}

/// Crashes every node, restarts them all, and returns the leader they elect.
async fn restart_every_node(c: &mut Cluster<KvStore>) -> u64 {
    for id in c.ids() {
        c.crash(id);
    }
    for id in c.ids() {
        c.restart(id).await.expect("restart");
    }
    c.wait_for_leader().await.expect("a leader after the restart")
}

async fn assert_all_present(node: &rolepax::actors::node::NodeHandle<KvStore>, acked: &[(String, String)]) {
    for (k, v) in acked {
        assert_eq!(get(node, k).await.as_deref(), Some(v.as_bytes()), "{k} survived");
    }
}

#[actix_rt::test]
async fn cluster_restart_every_node_keeps_acknowledged_writes() {
    let mut c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let acked = write_concurrently(vec![c.node(leader).clone()], 3, 10, "durable").await;
    assert_eq!(acked.len(), 30);
    let leader = restart_every_node(&mut c).await;
    assert_all_present(c.node(leader), &acked).await;
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_restart_from_snapshots_keeps_writes_and_remembered_replies() {
    // A snapshot every 5 slots: every node installs some while the writes go on.
    let mut c = cluster_with(3, |cfg| cfg.snapshot_every = 5).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let id = RequestId { client: 4343, seq: 1 };
    let command = KvCommand::put("once", "first");
    let first = c.node(leader).submit_as(id, 0, &command).await.expect("first try");
    c.node(leader)
        .submit(KvCommand::put("once", "second"))
        .await
        .expect("someone else's write");
    let acked = write_concurrently(vec![c.node(leader).clone()], 3, 10, "snapshotted").await;
    assert_eq!(acked.len(), 30);
    for id in c.ids() {
        let node = c.node(id).clone();
        eventually_async("a snapshot installed on every node", || {
            let node = node.clone();
            async move { node.status().await.is_ok_and(|s| s.state_machine.snapshots >= 1) }
        })
        .await;
    }
    let leader = restart_every_node(&mut c).await;
    assert_all_present(c.node(leader), &acked).await;
    // The client table came back too: the retry is answered as the first try was, and
    // not applied again over the later write.
    let retry = c.node(leader).submit_as(id, 0, &command).await.expect("retry");
    assert_eq!(first, retry);
    assert_eq!(get(c.node(leader), "once").await.as_deref(), Some(&b"second"[..]));
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_retried_command_is_applied_once() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let node = c.node(leader);
    let id = RequestId { client: 4242, seq: 1 };
    let first = node
        .submit_as(id, 0, &KvCommand::put("k", "mine"))
        .await
        .expect("first try");
    node.submit(KvCommand::put("k", "theirs"))
        .await
        .expect("someone else's write");
    // The client never saw the answer and retries: same id, same answer, not applied again.
    let retry = node
        .submit_as(id, 0, &KvCommand::put("k", "mine"))
        .await
        .expect("retry");
    assert_eq!(first, retry);
    assert_eq!(get(node, "k").await.as_deref(), Some(&b"theirs"[..]));
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_retry_overlapping_its_first_attempt_gets_the_same_answer() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let node = c.node(leader);
    let id = RequestId { client: 4343, seq: 1 };
    let cmd = KvCommand::put("overlap", "once");
    // The client gives up waiting and retries while the first attempt is still pending:
    // both wait on the same request id, and both must be answered.
    let (first, retry) = futures_util::future::join(node.submit_as(id, 0, &cmd), node.submit_as(id, 0, &cmd)).await;
    let (first, retry) = (first.expect("first attempt"), retry.expect("overlapping retry"));
    assert_eq!(first, retry, "one command, one answer");
    assert_eq!(get(node, "overlap").await.as_deref(), Some(&b"once"[..]));
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_stale_and_unexpected_messages_are_ignored() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    c.node(leader).submit(KvCommand::put("a", "1")).await.expect("write");
    let follower = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let bogus = Value::Command(Command {
        id: RequestId { client: 9, seq: 9 },
        ack_below: 0,
        payload: vec![1, 2, 3],
    });
    let msgs = [
        // An Accept for an old ballot into slot 0.
        PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
            call: 1,
            ballot: Ballot::new(0, 3),
            first_slot: 0,
            values: vec![bogus.clone()],
        }),
        // A Promise, a Pulled and an Accepted for a ballot never sent.
        PeerMessage::AcceptorReply(AcceptorReply::Promise {
            call: 77,
            ballot: Ballot::new(99, leader),
            decided_below: 0,
            accepted: vec![AcceptedRun {
                first: 0,
                end: 1,
                ballot: Ballot::new(98, 1),
            }],
            more_from: None,
        }),
        PeerMessage::AcceptorReply(AcceptorReply::Pulled {
            call: 77,
            ballot: Ballot::new(99, leader),
            first_slot: 0,
            values: vec![(Ballot::new(98, 1), bogus.clone())],
            more_from: None,
        }),
        PeerMessage::AcceptorReply(AcceptorReply::Accepted {
            call: 78,
            ballot: Ballot::new(99, leader),
            first_slot: 0,
            count: 1,
        }),
        // A rejection of a ballot nobody uses.
        PeerMessage::AcceptorReply(AcceptorReply::Rejected {
            call: 79,
            ballot: Ballot::new(1, 2),
            promised: Ballot::new(1, 3),
        }),
        // Fetches for slots that do not exist and an empty Fetched.
        PeerMessage::Learner(LearnerMessage::Fetch {
            from: 1_000_000,
            to: u64::MAX,
        }),
        PeerMessage::Learner(LearnerMessage::Fetched {
            first_slot: 5_000,
            values: vec![],
        }),
    ];
    for target in [leader, follower] {
        let inbound = c.node(target).inbound();
        for msg in &msgs {
            for _ in 0..2 {
                inbound(Envelope {
                    from: follower,
                    to: target,
                    msg: msg.clone(),
                });
            }
        }
    }
    // Still the same leader, still serving, and slot 0 keeps its real value everywhere.
    c.node(leader)
        .submit(KvCommand::put("b", "2"))
        .await
        .expect("still serving");
    assert_eq!(c.wait_for_leader().await.expect("leader"), leader);
    for id in c.ids() {
        let log = c.node(id).decided_log().await.expect("log");
        assert_ne!(log.get(&0), Some(&bogus));
    }
    c.check_safety().await.expect("safety");
}

/// The scenario of a leader cut off alone while a client writes through it; returns what
/// the safety check finds and whether the cut-off leader acknowledged the write.
async fn lone_leader_writes(bugs: PlantedBugs) -> (Vec<String>, bool) {
    let c = Cluster::<rolepax::KvStore>::start_with(3, |cfg| {
        cfg.request_timeout = Duration::from_secs(2);
        cfg.retry_interval = Duration::from_millis(300);
        cfg.bugs = bugs;
    })
    .await
    .expect("cluster");
    let old = c.wait_for_leader().await.expect("a leader");
    c.node(old)
        .submit(KvCommand::put("k", "0"))
        .await
        .expect("a first write");
    let rest: Vec<_> = c.ids().into_iter().filter(|&id| id != old).collect();
    c.net.partition(&[&[old], &rest]);
    let lone = c.node(old).submit(KvCommand::put("k", "lone")).await.is_ok();
    let new = c
        .wait_for_leader_among(&rest, DEADLINE)
        .await
        .expect("the majority elects a leader");
    c.node(new)
        .submit(KvCommand::put("k", "majority"))
        .await
        .expect("the majority commits");
    let (_, violations) = c.safety_violations().await.expect("check");
    (violations, lone)
}

#[actix_rt::test]
async fn cluster_safety_check_catches_planted_minority_decision() {
    // Without the bug: the lone leader cannot commit and nothing is violated.
    let (violations, lone) = lone_leader_writes(PlantedBugs::default()).await;
    assert!(!lone, "a lone leader must not acknowledge a write");
    assert!(violations.is_empty(), "{violations:?}");
    // With it: the lone leader "decides" alone, the majority decides another value in the
    // same slot, and the check must say so.
    let bugs = PlantedBugs {
        proposer_decides_on_minority: true,
        ..PlantedBugs::default()
    };
    let (violations, lone) = lone_leader_writes(bugs).await;
    assert!(lone, "the planted bug lets the lone leader acknowledge");
    assert!(
        violations.iter().any(|v| v.contains("decided")),
        "the check must catch the conflicting slot: {violations:?}"
    );
}

#[actix_rt::test]
async fn cluster_deposed_leader_never_serves_a_stale_read() {
    let c = Cluster::<rolepax::KvStore>::start_with(3, |cfg| {
        cfg.request_timeout = Duration::from_secs(2);
        cfg.retry_interval = Duration::from_millis(300);
        // A deposed leader that does not notice for long: the read path alone must protect it.
        cfg.elector.step_down_ticks = 100_000;
    })
    .await
    .expect("cluster");
    let old = c.wait_for_leader().await.expect("a leader");
    c.node(old).submit(KvCommand::put("k", "old")).await.expect("write");
    let rest: Vec<_> = c.ids().into_iter().filter(|&id| id != old).collect();
    c.net.partition(&[&[old], &rest]);
    // The majority elects a new leader (helped along: the others' timeouts are long too).
    let new = c.wait_for_leader_among(&rest, DEADLINE).await.expect("a new leader");
    c.node(new)
        .submit(KvCommand::put("k", "new"))
        .await
        .expect("the majority writes");
    assert_eq!(
        c.node(old).leader(),
        Some(old),
        "the old leader still believes it leads"
    );
    // The deposed leader must not answer with the old value: it cannot confirm a quorum.
    match c.node(old).read(KvCommand::get("k")).await {
        Ok(reply) => assert_eq!(reply.value(), Some(&b"new"[..]), "a stale read was served"),
        Err(e) => assert!(matches!(e, Error::Unavailable(_)), "{e}"),
    }
    // The new leader and its follower read the new value without writing the log.
    for id in &rest {
        let reply = c.node(*id).read(KvCommand::get("k")).await.expect("read");
        assert_eq!(reply.value(), Some(&b"new"[..]));
    }
    c.net.heal();
    c.check_safety().await.expect("safety");
}

#[actix_rt::test]
async fn cluster_reads_do_not_write_the_log() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    let follower = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    c.node(leader).submit(KvCommand::put("k", "v")).await.expect("write");
    c.wait_applied(&c.ids(), 1, DEADLINE).await.expect("applied everywhere");
    let before = c.node(leader).status().await.expect("status").proposer.next_slot;
    for node in [leader, follower] {
        for _ in 0..20 {
            let reply = c.node(node).read(KvCommand::get("k")).await.expect("read");
            assert_eq!(reply.value(), Some(&b"v"[..]));
        }
    }
    let after = c.node(leader).status().await.expect("status").proposer.next_slot;
    assert_eq!(before, after, "40 linearizable reads took no log slot");
}

#[actix_rt::test]
async fn cluster_absurd_numbers_from_a_peer_are_refused_without_panics() {
    let c = cluster(3).await;
    let leader = c.wait_for_leader().await.expect("a leader");
    c.node(leader).submit(KvCommand::put("a", "1")).await.expect("write");
    let peer = c.ids().into_iter().find(|&id| id != leader).expect("a follower");
    let huge = Ballot::new(u64::MAX, peer);
    let v = Value::Noop;
    let msgs = [
        PeerMessage::Elector(ElectorMessage::Heartbeat { ballot: huge }),
        PeerMessage::Elector(ElectorMessage::HeartbeatReply {
            ballot: huge,
            highest: huge,
        }),
        PeerMessage::Elector(ElectorMessage::PreVote { ballot: huge }),
        PeerMessage::Elector(ElectorMessage::PreVoteReply {
            ballot: huge,
            granted: true,
        }),
        PeerMessage::AcceptorRequest(AcceptorRequest::Prepare {
            call: 1,
            ballot: huge,
            from_slot: 0,
        }),
        PeerMessage::AcceptorRequest(AcceptorRequest::Pull {
            call: 1,
            ballot: huge,
            first: u64::MAX,
            end: 0,
        }),
        PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
            call: 2,
            ballot: Ballot::new(1_000, peer),
            first_slot: u64::MAX,
            values: vec![v.clone(), v.clone()],
        }),
        PeerMessage::Learner(LearnerMessage::Decide {
            first_slot: u64::MAX - 1,
            values: vec![v.clone(), v.clone(), v],
            commit: u64::MAX,
        }),
        PeerMessage::Learner(LearnerMessage::Fetch {
            from: u64::MAX - 1,
            to: u64::MAX,
        }),
    ];
    for target in c.ids() {
        let inbound = c.node(target).inbound();
        for msg in &msgs {
            inbound(Envelope {
                from: peer,
                to: target,
                msg: msg.clone(),
            });
        }
    }
    // Every node still runs, and the cluster still commits (perhaps after an election).
    for id in c.ids() {
        c.node(id).status().await.expect("the node's roles are alive");
    }
    let leader = c.wait_for_leader().await.expect("a leader");
    c.node(leader)
        .submit(KvCommand::put("b", "2"))
        .await
        .expect("still serving");
    c.check_safety().await.expect("safety");
}
