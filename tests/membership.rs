//! Membership change against real `rolepax-node` processes under continuous load
//! (issue #16's "what it must show").
//!
//! Eight client threads run puts, linearizable gets and compare-and-swaps on a few keys
//! through the HTTP API of whichever nodes are members, every operation recorded with
//! its invocation and response time, while the operator, with the `rolepax member`
//! commands a person would type:
//!
//! 1. SIGKILLs node 3 for good;
//! 2. starts node 4 with `--join` and adds it, pulling the state from nodes 1 and 2;
//! 3. removes node 3 (dead: its replacement is in);
//! 4. grows the cluster to five (nodes 5 and 6 join);
//! 5. shrinks it back to three (removes 5 and 6).
//!
//! Then the history must be linearizable (the project's checker), every node of the
//! final configuration must converge on the final values (so no acknowledged write is
//! lost), and node 4 must answer linearizable reads. The longest wait of any answered
//! request during each change is printed (the "client-visible pause"); it is measured,
//! not asserted (benchmarks are not timed tests).

mod common;

use common::client::{Reply, Rng, agent, kv_output, kv_request, note_seen, reply};
use common::procs::Procs;
use rolepax::harness::check::linearizability::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const KEYS: u64 = 4;
const CLIENTS: u64 = 8;

/// What the clients share with the operator: where to send, and when to stop.
struct Shared {
    start: Instant,
    /// HTTP base URLs of the current members (the operator updates it after a change).
    urls: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
    fn urls(&self) -> Vec<String> {
        self.urls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Default)]
struct ClientLog {
    ops: Vec<Operation<KvInput, KvOutput>>,
    unknown: u64,
    /// Requests a node refused because it is not a member (410), or that never left.
    redirected: u64,
    unexpected: Vec<String>,
}

fn kv_client(sh: &Shared, client: u64) -> ClientLog {
    let agent = agent(Duration::from_secs(8));
    let mut rng = Rng(0x5EED ^ (client << 32));
    let mut node = client as usize;
    let mut seen: Vec<Option<String>> = vec![None; KEYS as usize];
    let mut log = ClientLog::default();
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        n += 1;
        let urls = sh.urls();
        if n.is_multiple_of(20) {
            node += 1;
        }
        let base = &urls[node % urls.len()];
        let k = rng.below(KEYS) as usize;
        let key = format!("k{k}");
        let value = format!("c{client}.{n}");
        let call = sh.now_us();
        let (input, r) = kv_request(&agent, base, &mut rng, &key, &value, seen[k].clone());
        let ret = sh.now_us();
        let output = match (&input, r) {
            (_, Reply::Status(status, body)) if kv_output(&input, status, &body).is_some() => {
                kv_output(&input, status, &body)
            }
            // Not a member (any more): the node did nothing with it; go elsewhere.
            (_, Reply::Status(410, _)) | (_, Reply::NotSent) => {
                log.redirected += 1;
                node += 1;
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            (_, Reply::Status(503, _)) | (_, Reply::Lost(_)) => None,
            (_, Reply::Status(status, body)) => {
                log.unexpected.push(format!("{input:?} via {base}: {status} {body}"));
                None
            }
        };
        match output {
            Some(out) => {
                note_seen(&mut seen[k], &input, &out, &value);
                log.ops.push(Operation::done(client, input, call, ret, out));
            }
            None => {
                log.unknown += 1;
                log.ops.push(Operation::unknown(client, input, call));
                node += 1;
            }
        }
    }
    log
}

/// Runs `rolepax member ARGS` through `via` and insists on exit 0.
fn member_ok(procs: &Procs, via: &[u64], args: &[&str]) -> String {
    let (code, out, err) = procs.member(via, args);
    assert_eq!(
        code,
        0,
        "rolepax member {args:?} failed: exit {code}\nstdout: {out}\nstderr: {err}\n{}",
        procs.logs()
    );
    out
}

/// The member ids node `id` reports, with the configuration id.
fn members_of(procs: &Procs, id: u64) -> Option<(u64, Vec<u64>)> {
    let v = procs.members(id)?;
    let config = v["config_id"].as_u64()?;
    let ids = v["members"]
        .as_array()?
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    Some((config, ids))
}

/// Waits until every node in `ids` reports configuration `want` with members `ids`, and
/// the configuration's leader is one of them.
fn wait_for_config(procs: &Procs, ids: &[u64]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen: Vec<Option<(u64, Vec<u64>)>> = ids.iter().map(|&id| members_of(procs, id)).collect();
        let leader = procs.status(ids[0]).and_then(|s| s["leader_id"].as_u64());
        if let Some(Some((config, members))) = seen.first()
            && members == ids
            && seen.iter().all(|s| s.as_ref() == Some(&(*config, ids.to_vec())))
            && leader.is_some_and(|l| ids.contains(&l))
        {
            return *config;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes {ids:?} never agreed on a configuration of themselves with a leader: {seen:?}, leader {leader:?}\n{}",
            procs.logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Reads `key` through the log from node `via` (retrying), as a definite operation.
fn final_read(sh: &Shared, via: &str, key: &str, deadline: Instant) -> Operation<KvInput, KvOutput> {
    let agent = agent(Duration::from_secs(8));
    let mut errors = Vec::new();
    loop {
        let call = sh.now_us();
        let r = reply(agent.get(&format!("{via}/v1/kv/{key}")).call());
        let ret = sh.now_us();
        let input = KvInput::Get {
            key: key.as_bytes().to_vec(),
        };
        match r {
            Reply::Status(200, body) => {
                return Operation::done(9_999, input, call, ret, KvOutput::Got(Some(body.into_bytes())));
            }
            Reply::Status(404, _) => return Operation::done(9_999, input, call, ret, KvOutput::Got(None)),
            Reply::Status(s, b) => errors.push(format!("{s} {b}")),
            Reply::NotSent => errors.push("not sent".into()),
            Reply::Lost(e) => errors.push(e),
        }
        assert!(
            Instant::now() < deadline,
            "no final read of {key} via {via}: {errors:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Polls a local read of `key` on `via` until it shows `want`.
fn converge(via: &str, key: &str, want: &Option<Vec<u8>>, deadline: Instant) {
    let agent = agent(Duration::from_secs(8));
    loop {
        let last = match reply(agent.get(&format!("{via}/v1/kv/{key}?stale=true")).call()) {
            Reply::Status(200, body) if Some(body.as_bytes()) == want.as_deref() => return,
            Reply::Status(404, _) if want.is_none() => return,
            Reply::Status(s, b) => format!("{s} {b}"),
            Reply::NotSent => "not sent".to_string(),
            Reply::Lost(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "{via} never showed {key} = {:?} (last: {last})",
            want.as_deref().map(String::from_utf8_lossy)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The longest wait of an answered operation that overlapped `[from, to]` (µs).
fn longest_wait(ops: &[Operation<KvInput, KvOutput>], from: u64, to: u64) -> u64 {
    ops.iter()
        .filter(|o| o.required() && o.call <= to && o.ret.is_some_and(|r| r >= from))
        .map(|o| o.ret.unwrap_or(o.call) - o.call)
        .max()
        .unwrap_or(0)
}

#[test]
fn membership_replace_grow_shrink_under_load_is_linearizable() {
    let mut procs = Procs::new(3);
    procs.start_all();
    let sh = Arc::new(Shared {
        start: Instant::now(),
        urls: Mutex::new((1..=3).map(|id| procs.http[&id].clone()).collect()),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|c| {
            let sh = sh.clone();
            thread::spawn(move || kv_client(&sh, c))
        })
        .collect();
    let set_members = |procs: &Procs, ids: &[u64]| {
        *sh.urls.lock().unwrap_or_else(|e| e.into_inner()) = ids.iter().map(|id| procs.http[id].clone()).collect();
    };
    let mut windows: Vec<(String, u64, u64)> = Vec::new();
    let settle = || thread::sleep(Duration::from_millis(1500));
    settle();

    // 1. Node 3 dies for good.
    procs.kill(3);
    set_members(&procs, &[1, 2]);
    settle();

    // 2. Node 4 joins, pulling from nodes 1 and 2.
    let (peer4, http4) = procs.start_joining(4, &[1, 2], false);
    let t0 = sh.now_us();
    let out = member_ok(
        &procs,
        &[1, 2],
        &[
            "add",
            "4",
            "--peer-addr",
            &peer4,
            "--http-addr",
            &http4,
            "--from",
            "1,2",
        ],
    );
    windows.push(("add 4 (from 1,2)".into(), t0, sh.now_us()));
    println!("add 4:\n{out}");
    set_members(&procs, &[1, 2, 4]);
    settle();

    // 3. Node 3, dead, is removed.
    let t0 = sh.now_us();
    member_ok(&procs, &[1, 2], &["remove", "3"]);
    windows.push(("remove 3".into(), t0, sh.now_us()));
    assert!(wait_for_config(&procs, &[1, 2, 4]) >= 2);
    settle();

    // 4. Grow to five.
    for id in [5, 6] {
        let (peer, http) = procs.start_joining(id, &[1, 2], false);
        let t0 = sh.now_us();
        member_ok(
            &procs,
            &[1, 2],
            &["add", &id.to_string(), "--peer-addr", &peer, "--http-addr", &http],
        );
        windows.push((format!("add {id}"), t0, sh.now_us()));
    }
    assert_eq!(wait_for_config(&procs, &[1, 2, 4, 5, 6]), 4);
    set_members(&procs, &[1, 2, 4, 5, 6]);
    settle();

    // 5. Shrink back to three.
    set_members(&procs, &[1, 2, 4]);
    for id in [5, 6] {
        let t0 = sh.now_us();
        member_ok(&procs, &[1, 2], &["remove", &id.to_string()]);
        windows.push((format!("remove {id}"), t0, sh.now_us()));
    }
    assert_eq!(wait_for_config(&procs, &[1, 2, 4]), 6);
    settle();

    sh.stop.store(true, Ordering::Relaxed);
    let logs: Vec<ClientLog> = clients
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| panic!("a client thread panicked")))
        .collect();

    // A removed node says so, naming the members.
    let agent = agent(Duration::from_secs(8));
    match reply(agent.get(&format!("{}/v1/kv/k0", procs.http[&5])).call()) {
        Reply::Status(410, body) => assert!(body.contains("removed"), "410 without a reason: {body}"),
        Reply::Status(s, b) => panic!("removed node 5 answered {s} {b}"),
        _ => panic!("removed node 5 did not answer"),
    }

    // Node 4 answers linearizable reads; the final reads go through it.
    let deadline = Instant::now() + Duration::from_secs(90);
    let via4 = procs.http[&4].clone();
    let mut history: Vec<Operation<KvInput, KvOutput>> = logs.iter().flat_map(|l| l.ops.iter().cloned()).collect();
    let finals: Vec<_> = (0..KEYS)
        .map(|k| final_read(&sh, &via4, &format!("k{k}"), deadline))
        .collect();
    history.extend(finals.iter().cloned());

    let definite = history.iter().filter(|o| o.required()).count();
    let unknown: u64 = logs.iter().map(|l| l.unknown).sum();
    let redirected: u64 = logs.iter().map(|l| l.redirected).sum();
    println!(
        "history: {} operations ({definite} answered, {unknown} unknown; {redirected} refused by non-members or not sent)",
        history.len()
    );
    for (what, from, to) in &windows {
        println!(
            "{what}: {:.2} s for the command; longest answered request overlapping it waited {:.3} s",
            (to - from) as f64 / 1e6,
            longest_wait(&history, *from, *to) as f64 / 1e6
        );
    }
    let unexpected: Vec<&String> = logs.iter().flat_map(|l| &l.unexpected).collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:#?}");
    assert!(
        definite > 200,
        "the clients got answers throughout ({definite})\n{}",
        procs.logs()
    );

    let result = check(
        &KvModel,
        &history,
        Budget {
            max_steps: 50_000_000,
            max_time: Duration::from_secs(90),
        },
    );
    println!("linearizability: {result}");
    assert_eq!(result.verdict, Verdict::Linearizable, "{result}");

    // Every member of the final configuration converges on the final values, which hold
    // every acknowledged write or a later one.
    for (k, op) in finals.iter().enumerate() {
        let Some(KvOutput::Got(want)) = &op.output else {
            unreachable!("final reads are answered")
        };
        for id in [1, 2, 4] {
            converge(&procs.http[&id], &format!("k{k}"), want, deadline);
        }
    }
    let status4: Option<Value> = procs.status(4);
    println!("node 4 status: {status4:?}");
}
