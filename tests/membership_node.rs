//! Membership change in the production node: the `membership` file and its precedence
//! at start, the transport's changing peers, joining nodes, the HTTP members endpoints
//! and the `rolepax member` CLI with its exit codes (0 done, 2 refused, 3 unavailable).
//!
//! In-process: the transport (real TCP on loopback) and single nodes over the in-memory
//! network. Processes: small clusters of `rolepax-node` (see `common/procs.rs`), each
//! bad operator input in a test of its own, asserting the exit code or HTTP status and
//! the message; then real changes (a node added with `--from` serves a linearizable
//! read; a removed node answers 410 naming the members; restarted from its data
//! directory it stays out and the leader does not change because of it).
//!
//! Leaves out changes under load and failures during a change (the chaos test's).

mod common;

use common::procs::*;
use rolepax::actors::node::{MembershipState, Node, NodeConfig, NodeHandle};
use rolepax::messages::{Ballot, Configuration, ElectorMessage, Envelope, Member, NodeId, PeerMessage};
use rolepax::net::Transport;
use rolepax::net::memory::MemoryNetwork;
use rolepax::net::tcp::{TcpConfig, TcpTransport};
use rolepax::storage::Storage;
use rolepax::{Error, KvCommand, KvStore};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------
// The transport's peers change at run time.

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn heartbeat(from: NodeId, to: NodeId, round: u64) -> Envelope {
    Envelope {
        from,
        to,
        msg: PeerMessage::Elector(ElectorMessage::Heartbeat {
            ballot: Ballot::new(round, from),
        }),
    }
}

/// A transport on an ephemeral port, with no peers, and what it receives.
async fn transport(id: NodeId, cluster: &str, accept_unknown: bool) -> (Arc<TcpTransport>, Arc<Mutex<Vec<Envelope>>>) {
    let mut cfg = TcpConfig::new(id, addr(0), BTreeMap::new());
    cfg.cluster_id = cluster.to_string();
    cfg.accept_unknown = accept_unknown;
    cfg.backoff_max = Duration::from_millis(200);
    let t = TcpTransport::start(cfg).await.expect("transport starts");
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    t.set_inbound(Arc::new(move |e| sink.lock().expect("lock").push(e)));
    (t, got)
}

/// Sends heartbeats from `from` until `got` holds one with a round of at least `round`.
async fn deliver_until(from: &TcpTransport, id: NodeId, to: NodeId, round: u64, got: &Mutex<Vec<Envelope>>) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        from.send(heartbeat(id, to, round));
        let arrived = got.lock().expect("lock").iter().any(
            |e| matches!(&e.msg, PeerMessage::Elector(ElectorMessage::Heartbeat { ballot }) if ballot.round >= round),
        );
        if arrived {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[actix_rt::test]
async fn tcp_set_peers_dials_new_peers_and_drops_removed_ones() {
    let (a, _) = transport(1, "t", true).await;
    let (b, got_b) = transport(2, "t", true).await;
    // Node 1 has no peers: a message to node 2 is dropped at once.
    a.send(heartbeat(1, 2, 1));
    assert_eq!(a.counters().dropped, 1);

    // Node 2 becomes a peer: node 1 dials it, and node 2 accepts node 1, which it does
    // not know (a member being added dials the old ones before they know it).
    a.set_peers([(2, b.local_addr())].into_iter().collect());
    assert_eq!(a.peers().keys().copied().collect::<Vec<_>>(), vec![2]);
    assert!(deliver_until(&a, 1, 2, 2, &got_b).await, "node 2 never heard node 1");
    assert!(b.counters().peers.contains_key(&1), "{:?}", b.counters());

    // Through the trait, as the node does with a configuration: node 2 leaves.
    let config = Configuration::initial(
        [(
            1,
            Member {
                peer_addr: a.local_addr().to_string(),
                http_addr: String::new(),
            },
        )]
        .into_iter()
        .collect(),
    );
    Transport::set_members(&*a, &config);
    assert!(a.peers().is_empty(), "{:?}", a.peers());
    assert!(!a.counters().peers.contains_key(&2), "{:?}", a.counters());
    let dropped = a.counters().dropped;
    for round in 10..20 {
        a.send(heartbeat(1, 2, round));
    }
    assert_eq!(a.counters().dropped, dropped + 10, "sends to a former peer are dropped");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late =
        got_b.lock().expect("lock").iter().any(
            |e| matches!(&e.msg, PeerMessage::Elector(ElectorMessage::Heartbeat { ballot }) if ballot.round >= 10),
        );
    assert!(!late, "a message sent after the peer left reached it");

    // Back, at its address: dialed afresh.
    a.set_peers([(2, b.local_addr())].into_iter().collect());
    assert!(
        deliver_until(&a, 1, 2, 30, &got_b).await,
        "node 2 never heard node 1 again"
    );
}

#[actix_rt::test]
async fn tcp_unknown_inbound_is_accepted_only_from_the_same_cluster() {
    let (b, got_b) = transport(2, "t", true).await;
    // Another cluster's node: refused, even though unknown nodes are accepted.
    let (other, _) = transport(7, "elsewhere", true).await;
    other.set_peers([(2, b.local_addr())].into_iter().collect());
    let deadline = Instant::now() + DEADLINE;
    while b.counters().rejected_connections == 0 {
        other.send(heartbeat(7, 2, 1));
        assert!(Instant::now() < deadline, "another cluster's node was never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got_b.lock().expect("lock").is_empty(), "nothing from another cluster");

    // A strict transport (a fixed cluster) refuses an unknown node of its own cluster.
    let (strict, got_strict) = transport(3, "t", false).await;
    let (c, _) = transport(4, "t", true).await;
    c.set_peers([(3, strict.local_addr())].into_iter().collect());
    let deadline = Instant::now() + DEADLINE;
    while strict.counters().rejected_connections == 0 {
        c.send(heartbeat(4, 3, 1));
        assert!(Instant::now() < deadline, "the unknown node was never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(got_strict.lock().expect("lock").is_empty());

    // A node that does not know its cluster's id yet (joining) accepts no one; once it
    // learned it, it does.
    let (joining, got_joining) = transport(5, "", true).await;
    c.set_peers([(5, joining.local_addr())].into_iter().collect());
    let deadline = Instant::now() + DEADLINE;
    while joining.counters().rejected_connections == 0 {
        c.send(heartbeat(4, 5, 1));
        assert!(
            Instant::now() < deadline,
            "the joining node accepted a handshake without a cluster id"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    joining.set_cluster_id("t");
    assert!(
        deliver_until(&c, 4, 5, 2, &got_joining).await,
        "never delivered once the id was known"
    );
}

// ---------------------------------------------------------------------------------
// Start-up: the membership file wins over the config file.

fn member(port: u16) -> Member {
    Member {
        peer_addr: format!("127.0.0.1:{port}"),
        http_addr: format!("127.0.0.1:{}", port + 100),
    }
}

/// One node over an in-memory network, in `dir`.
fn start_node(cfg: NodeConfig) -> rolepax::Result<NodeHandle<KvStore>> {
    let net = MemoryNetwork::new(7);
    let node = Node::start::<KvStore>(cfg, net.clone())?;
    net.register(node.id(), node.inbound());
    Ok(node)
}

fn node_config(id: NodeId, nodes: Vec<NodeId>, dir: &std::path::Path) -> NodeConfig {
    let mut cfg = NodeConfig::new(id, nodes, dir);
    cfg.cluster = "c".into();
    cfg.request_timeout = Duration::from_secs(2);
    cfg
}

#[actix_rt::test]
async fn node_membership_file_overrides_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let remembered = Configuration {
        id: 2,
        start: 40,
        members: [(1, member(7101)), (2, member(7102)), (5, member(7105))]
            .into_iter()
            .collect(),
    };
    Storage::open(dir.path())
        .expect("storage")
        .save_membership("c", &remembered)
        .expect("save");
    // The config file says nodes 1, 2, 3; the data directory knows better.
    let node = start_node(node_config(1, vec![1, 2, 3], dir.path())).expect("starts");
    let view = node.membership();
    assert_eq!(view.config.as_ref(), Some(&remembered));
    assert_eq!(view.cluster, "c");
    assert_eq!(node.membership_state(), MembershipState::Member);
    let status = node.status().await.expect("status");
    assert_eq!((status.config_id, status.config_start), (Some(2), Some(40)));
    let ids: Vec<NodeId> = status.members.iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![1, 2, 5]);
    assert_eq!(status.members[2].http_addr, "127.0.0.1:7205");
    node.halt();
}

#[actix_rt::test]
async fn node_removed_by_its_membership_file_refuses_client_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let without_me = Configuration {
        id: 3,
        start: 90,
        members: [(2, member(7102)), (3, member(7103))].into_iter().collect(),
    };
    Storage::open(dir.path())
        .expect("storage")
        .save_membership("c", &without_me)
        .expect("save");
    let node = start_node(node_config(1, vec![1, 2, 3], dir.path())).expect("starts");
    assert_eq!(node.membership_state(), MembershipState::Removed);
    match node.submit(KvCommand::put("k", "v")).await {
        Err(Error::Removed { message, members }) => {
            assert!(message.contains("node 1 was removed"), "{message}");
            assert!(
                message.contains("127.0.0.1:7202") && message.contains("127.0.0.1:7203"),
                "{message}"
            );
            let ids: Vec<u64> = members.iter().map(|m| m.0).collect();
            assert_eq!(ids, vec![2, 3]);
        }
        other => panic!("a removed node took a command: {other:?}"),
    }
    assert!(matches!(
        node.read_local(KvCommand::get("k")).await,
        Err(Error::Removed { .. })
    ));
    // Its status still answers.
    let status = node.status().await.expect("status");
    assert_eq!(status.membership, MembershipState::Removed);
    node.halt();
}

#[actix_rt::test]
async fn node_membership_file_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Configuration::initial([(1, member(7101))].into_iter().collect());
    Storage::open(dir.path())
        .expect("storage")
        .save_membership("other", &config)
        .expect("save");
    match start_node(node_config(1, vec![1], dir.path())) {
        Err(Error::Config(m)) => assert!(m.contains("\"other\"") && m.contains("\"c\""), "{m}"),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(node) => {
            node.halt();
            panic!("a data directory of another cluster was taken");
        }
    }
}

#[actix_rt::test]
async fn node_joining_holds_no_configuration_and_serves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = node_config(4, Vec::new(), dir.path());
    cfg.join = true;
    let node = start_node(cfg).expect("starts");
    assert_eq!(node.membership_state(), MembershipState::Joining);
    assert_eq!(node.membership().config, None);
    match node.submit(KvCommand::put("k", "v")).await {
        Err(Error::Unavailable(m)) => assert!(m.contains("joining"), "{m}"),
        other => panic!("a joining node took a command: {other:?}"),
    }
    let status = node.status().await.expect("status");
    assert_eq!((status.membership, status.config_id), (MembershipState::Joining, None));
    node.halt();
}

// ---------------------------------------------------------------------------------
// Processes: the operator's surface.

/// `rolepax --endpoints <all> ARGS`: (exit code, stdout, stderr).
fn cli(procs: &Procs, args: &[&str]) -> (Option<i32>, String, String) {
    let endpoints: Vec<String> = procs.http.values().cloned().collect();
    cli_at(&endpoints, args)
}

fn cli_at(endpoints: &[String], args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rolepax"))
        .args(["--endpoints", &endpoints.join(",")])
        .args(args)
        .output()
        .expect("run rolepax");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `GET {node}{path}` as (status, JSON).
fn get_json(procs: &Procs, id: u64, path: &str) -> Option<(u16, Value)> {
    let url = format!("{}{path}", procs.http[&id]);
    let res = match procs.agent.get(&url).call() {
        Ok(res) => res,
        Err(ureq::Error::Status(_, res)) => res,
        Err(_) => return None,
    };
    let status = res.status();
    Some((status, res.into_json().unwrap_or(Value::Null)))
}

/// Sends a request with a body; (status, JSON).
fn send_json(procs: &Procs, id: u64, method: &str, path: &str, body: &str) -> (u16, Value) {
    let url = format!("{}{path}", procs.http[&id]);
    let res = match procs.agent.request(method, &url).send_string(body) {
        Ok(res) => res,
        Err(ureq::Error::Status(_, res)) => res,
        Err(e) => panic!("{method} {url}: {e}\n{}", procs.logs()),
    };
    let status = res.status();
    (status, res.into_json().unwrap_or(Value::Null))
}

/// Polls until `check` holds for node `id`'s `path` answer.
fn wait_for(procs: &Procs, id: u64, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((_, v)) = get_json(procs, id, path)
            && check(&v)
        {
            return v;
        }
        assert!(Instant::now() < deadline, "node {id}: never {what}\n{}", procs.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every running node's configuration id, by `/status`.
fn config_ids(procs: &Procs) -> Vec<(u64, Option<u64>)> {
    procs
        .running()
        .into_iter()
        .map(|id| {
            (
                id,
                get_json(procs, id, "/status").and_then(|(_, s)| s["config_id"].as_u64()),
            )
        })
        .collect()
}

fn assert_refused(code: Option<i32>, stderr: &str, says: &[&str], procs: &Procs) {
    assert_eq!(
        code,
        Some(2),
        "expected a refusal (exit 2); stderr: {stderr}\n{}",
        procs.logs()
    );
    for s in says {
        assert!(stderr.contains(s), "{s:?} not in the message: {stderr}");
    }
}

#[test]
fn member_list_prints_one_row_per_member() {
    let mut procs = Procs::new(3);
    let leader = procs.start_all();
    let (code, out, err) = cli(&procs, &["member", "list"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three rows:\n{out}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("PEER") && lines[0].contains("CONFIG"),
        "{out}"
    );
    for (i, id) in (1..=3u64).enumerate() {
        let cells: Vec<&str> = lines[i + 1].split_whitespace().collect();
        assert_eq!(cells[0], id.to_string(), "{out}");
        assert!(cells[1].starts_with("127.0.0.1:"), "{out}");
        assert_eq!(format!("http://{}", cells[2]), procs.http[&id], "{out}");
        let role = if id == leader { "leader" } else { "follower" };
        assert_eq!((cells[3], cells[4]), (role, "0"), "{out}");
    }
    // The same through HTTP, and /status carries the configuration too.
    let (_, v) = get_json(&procs, 2, "/v1/members").expect("members");
    assert_eq!(
        (v["cluster_id"].clone(), v["config_id"].clone()),
        (json!("process-test"), json!(0))
    );
    assert_eq!(v["membership"], json!("member"));
    let (_, s) = get_json(&procs, 3, "/status").expect("status");
    assert_eq!(
        (s["membership"].clone(), s["config_id"].clone()),
        (json!("member"), json!(0))
    );
    assert_eq!(s["members"].as_array().map(Vec::len), Some(3), "{s}");
    assert!(s["applied"].is_u64(), "{s}");
}

#[test]
fn member_joining_node_reports_joining_and_learns_the_cluster_id() {
    let mut procs = Procs::new(3);
    procs.start_all();
    // No config file: the cluster id is learned from the join URL.
    procs.start_joining(4, &[2], false);
    let status = wait_for(&procs, 4, "/status", "reports waiting to be added", |s| {
        s["join_error"]
            .as_str()
            .is_some_and(|e| e.contains("waiting to be added"))
    });
    assert_eq!(status["membership"], json!("joining"), "{status}");
    assert_eq!(status["config_id"], Value::Null, "{status}");
    let (_, v) = get_json(&procs, 4, "/v1/members").expect("members");
    assert_eq!(
        (v["node_id"].clone(), v["membership"].clone()),
        (json!(4), json!("joining"))
    );
    assert_eq!(v["cluster_id"], json!("process-test"), "learned: {v}");
    // It serves no request yet (503), and tells why.
    let (code, body) = send_json(&procs, 4, "PUT", "/v1/kv/k", "v");
    assert_eq!(code, 503, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("joining"), "{body}");
}

#[test]
fn member_joining_node_of_another_cluster_says_so_and_keeps_running() {
    let mut procs = Procs::new(1);
    procs.start_all();
    // The joining node's tuning file names another cluster id.
    let ports = free_ports(2);
    let (peer, http) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let tuning = procs.dir.path().join("other.toml");
    std::fs::write(&tuning, "cluster_id = \"another-cluster\"\n").expect("write tuning");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(procs.dir.path().join("node-5.log"))
        .expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_rolepax-node"))
        .arg("--config")
        .arg(&tuning)
        .args(["--id", "5", "--peer-addr", &peer, "--http-addr", &http, "--data-dir"])
        .arg(procs.dir.path().join("data-5"))
        .args(["--join", &procs.http[&1]])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    procs.children.insert(5, child);
    procs.http.insert(5, format!("http://{http}"));
    let status = wait_for(&procs, 5, "/status", "reports the cluster id mismatch", |s| {
        s["join_error"]
            .as_str()
            .is_some_and(|e| e.contains("cluster id mismatch"))
    });
    let error = status["join_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("\"process-test\"") && error.contains("\"another-cluster\""),
        "{error}"
    );
    assert_eq!(status["membership"], json!("joining"), "{status}");
    // Still running and still saying so a while later: no crash, no crash loop.
    std::thread::sleep(Duration::from_secs(1));
    let child = procs.children.get_mut(&5).expect("node 5");
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the joining node exited\n{}",
        procs.logs()
    );
    let (_, again) = get_json(&procs, 5, "/status").expect("status");
    assert_eq!(again["membership"], json!("joining"), "{again}");
}

#[test]
fn member_add_existing_id_is_refused() {
    let mut procs = Procs::new(3);
    procs.start_all();
    let (code, _, err) = cli(
        &procs,
        &[
            "member",
            "add",
            "2",
            "--peer-addr",
            "127.0.0.1:1",
            "--http-addr",
            "127.0.0.1:2",
        ],
    );
    assert_refused(code, &err, &["node 2 is already a member"], &procs);
    // The HTTP answer: 409 with the members.
    let body = json!({"id": 3, "peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}).to_string();
    let (status, v) = send_json(&procs, 1, "POST", "/v1/members", &body);
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("node 3 is already a member"),
        "{v}"
    );
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(config_ids(&procs), vec![(1, Some(0)), (2, Some(0)), (3, Some(0))]);
}

#[test]
fn member_remove_last_member_is_refused() {
    let mut procs = Procs::new(1);
    procs.start_all();
    let (code, _, err) = cli(&procs, &["member", "remove", "1"]);
    assert_refused(code, &err, &["last member"], &procs);
    assert_eq!(config_ids(&procs), vec![(1, Some(0))]);
}

#[test]
fn member_remove_leaving_no_reachable_majority_is_refused() {
    let mut procs = Procs::new(3);
    procs.start_all();
    // Node 2 is down: removing node 3 would leave {1, 2}, of which only node 1 answers.
    procs.kill(2);
    let (code, _, err) = cli_at(&[procs.http[&1].clone()], &["member", "remove", "3"]);
    assert_refused(code, &err, &["no majority", "unreachable", "node 2"], &procs);
    assert_eq!(config_ids(&procs), vec![(1, Some(0)), (3, Some(0))]);
}

#[test]
fn member_add_node_that_never_answers_is_refused_before_anything_is_proposed() {
    let mut procs = Procs::new(3);
    let leader = procs.start_all();
    let ports = free_ports(2);
    let (peer, http) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
    let before = get_json(&procs, leader, "/status").expect("status").1["learner"]["next_undecided"].clone();
    let (code, _, err) = cli(
        &procs,
        &["member", "add", "4", "--peer-addr", &peer, "--http-addr", &http],
    );
    assert_refused(
        code,
        &err,
        &["does not answer", "--join", "nothing was changed"],
        &procs,
    );
    // A node that answers but was not started to join (a member of a cluster of its
    // own): refused too, saying what it is.
    let mut other = Procs::new(1);
    other.start_all();
    let node1 = other.http[&1].trim_start_matches("http://").to_string();
    let (code, _, err) = cli(
        &procs,
        &["member", "add", "4", "--peer-addr", &peer, "--http-addr", &node1],
    );
    assert_refused(code, &err, &["not a joining node with id 4", "node 1 (member)"], &procs);
    assert_eq!(config_ids(&procs), vec![(1, Some(0)), (2, Some(0)), (3, Some(0))]);
    // Nothing went through the log: the leader decided no slot for the refused changes
    // (its clock command runs only while lock sessions exist, and there are none).
    let after = get_json(&procs, leader, "/status").expect("status").1["learner"]["next_undecided"].clone();
    assert_eq!(before, after, "a refused change was proposed");
}

#[test]
fn member_remove_non_member_is_refused() {
    let mut procs = Procs::new(3);
    procs.start_all();
    let (code, _, err) = cli(&procs, &["member", "remove", "9"]);
    assert_refused(code, &err, &["node 9 is not a member"], &procs);
    let (code, _, err) = cli(
        &procs,
        &[
            "member",
            "replace",
            "9",
            "4",
            "--peer-addr",
            "127.0.0.1:1",
            "--http-addr",
            "127.0.0.1:2",
        ],
    );
    assert_refused(code, &err, &["node 9 is not a member"], &procs);
    // `from` must name members that stay.
    let ports = free_ports(2);
    let (code, _, err) = cli(
        &procs,
        &[
            "member",
            "add",
            "4",
            "--peer-addr",
            &format!("127.0.0.1:{}", ports[0]),
            "--http-addr",
            &format!("127.0.0.1:{}", ports[1]),
            "--from",
            "1,8",
        ],
    );
    assert_refused(code, &err, &["`from` names node 8"], &procs);
}

#[test]
fn member_malformed_bodies_are_400() {
    let mut procs = Procs::new(1);
    procs.start_all();
    for (body, says) in [
        ("{not json", "bad JSON"),
        ("[1, 2]", "expected an object"),
        (
            r#"{"peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}"#,
            "missing `id`",
        ),
        (
            r#"{"id": "four", "peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}"#,
            "`id`",
        ),
        (
            r#"{"id": 4, "peer_addr": "node4:7104", "http_addr": "127.0.0.1:2"}"#,
            "`peer_addr`",
        ),
        (
            r#"{"id": 4, "peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "from": "1"}"#,
            "`from`",
        ),
    ] {
        let (status, v) = send_json(&procs, 1, "POST", "/v1/members", body);
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(says),
            "{says:?} for {body}: {v}"
        );
    }
    let (status, v) = send_json(&procs, 1, "DELETE", "/v1/members/zero", "");
    assert_eq!(status, 400, "{v}");
    // The etcd gateway: MemberAdd without the rolepax extensions.
    let (status, v) = send_json(
        &procs,
        1,
        "POST",
        "/v3/cluster/member/add",
        r#"{"peerURLs": ["http://127.0.0.1:7104"]}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("`ID`"), "{v}");
    let (status, v) = send_json(
        &procs,
        1,
        "POST",
        "/v3/cluster/member/add",
        r#"{"peerURLs": ["http://127.0.0.1:7104"], "ID": "4"}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap_or_default().contains("clientURLs"), "{v}");
    // The etcd member list.
    let (status, v) = send_json(&procs, 1, "POST", "/v3/cluster/member/list", "{}");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["members"][0]["ID"], json!("1"), "{v}");
    assert_eq!(v["members"][0]["clientURLs"][0], json!(procs.http[&1]), "{v}");
    assert!(v["header"]["cluster_id"].is_string(), "{v}");
}

// ---------------------------------------------------------------------------------
// Real changes (need the role cores' membership work).

#[test]
fn member_added_with_from_serves_a_linearizable_read() {
    // Small frames, so that the state is several snapshot chunks and the two sources
    // each serve some.
    let mut procs = Procs::with_settings(3, "max_frame_bytes = 65536\nmax_body_bytes = 16384\n");
    procs.start_all();
    let value = |i: usize| format!("{i}-{}", "v".repeat(8000));
    for i in 0..20 {
        procs.put_retrying(&[1, 2, 3], &format!("k{i}"), &value(i));
    }
    let (peer, http) = procs.start_joining(4, &[1, 3], true);
    wait_for(&procs, 4, "/status", "answers as joining", |s| {
        s["membership"] == json!("joining")
    });
    let (code, out, err) = cli(
        &procs,
        &[
            "member",
            "add",
            "4",
            "--peer-addr",
            &peer,
            "--http-addr",
            &http,
            "--from",
            "1,2",
        ],
    );
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}\n{}", procs.logs());
    assert!(out.lines().any(|l| l.starts_with('4') && l.contains(&http)), "{out}");
    assert!(
        out.lines().skip(1).all(|l| l.trim_end().ends_with('1')),
        "configuration 1: {out}"
    );
    // Node 4 holds the state and takes part: a linearizable read through it, a write
    // through it read elsewhere.
    let status = wait_for(&procs, 4, "/status", "is a member", |s| {
        s["membership"] == json!("member")
    });
    assert_eq!(status["config_id"], json!(1), "{status}");
    assert_eq!(procs.get(4, "k7"), Some(value(7)), "{}", procs.logs());
    let chunks = &status["learner"]["migration_chunks"];
    assert!(
        chunks["1"].as_u64().unwrap_or(0) > 0 && chunks["2"].as_u64().unwrap_or(0) > 0,
        "both sources served chunks: {chunks}"
    );
    assert!(chunks.get("3").is_none(), "node 3 was not asked: {chunks}");
    procs.put_retrying(&[4], "from-4", "yes");
    assert_eq!(procs.get(2, "from-4").as_deref(), Some("yes"));
    let (_, v) = get_json(&procs, 1, "/v1/members").expect("members");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(4), "{v}");
    assert_eq!(v["sources"], json!([1, 2]), "{v}");

    // Node 1 restarted with the config file, which lists nodes 1 to 3, starts in the
    // configuration it applied last (its membership file).
    procs.kill(1);
    procs.start(1);
    let v = wait_for(&procs, 1, "/v1/members", "answers after the restart", |v| {
        v["config_id"].is_u64()
    });
    let ids: Vec<u64> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!((v["config_id"].as_u64(), ids), (Some(1), vec![1, 2, 3, 4]), "{v}");
    procs.put_retrying(&[1], "after-restart", "1");
    assert_eq!(procs.get(4, "after-restart").as_deref(), Some("1"));
}

#[test]
fn member_removed_node_answers_410_and_restarted_stays_out() {
    let mut procs = Procs::new(3);
    let leader = procs.start_all();
    procs.put_retrying(&[1, 2, 3], "before", "1");
    // Remove a follower, through another node.
    let gone = (1..=3).find(|id| *id != leader).expect("a follower");
    let via = (1..=3).find(|id| *id != gone).expect("another");
    let (code, out, err) = cli_at(&[procs.http[&via].clone()], &["member", "remove", &gone.to_string()]);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}\n{}", procs.logs());
    assert_eq!(out.lines().count(), 3, "two members left:\n{out}");

    // The removed node answers client requests with 410, naming the members.
    let check_gone = |procs: &Procs| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (status, v) = send_json(procs, gone, "PUT", "/v1/kv/x", "1");
            if status == 410 {
                let msg = v["error"].as_str().unwrap_or_default().to_string();
                assert!(msg.contains(&format!("node {gone} was removed")), "{v}");
                let ids: Vec<u64> = v["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["id"].as_u64())
                    .collect();
                assert!(!ids.contains(&gone) && ids.len() == 2, "{v}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {gone} answered {status}: {v}\n{}",
                procs.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    check_gone(&procs);
    let (_, v) = get_json(&procs, gone, "/v1/members").expect("members still answer");
    assert_eq!(v["removed"], json!(true), "{v}");

    // Restarted from its data directory (and the config file that still lists it), it
    // stays out: 410 again, and it never disturbs the leader.
    procs.kill(gone);
    procs.start(gone);
    let status = wait_for(&procs, gone, "/status", "answers after the restart", |s| {
        s["node_id"].is_u64()
    });
    assert_eq!(status["membership"], json!("removed"), "{status}");
    check_gone(&procs);
    let members: Vec<u64> = (1..=3).filter(|id| *id != gone).collect();
    let leader_now = |procs: &Procs| -> Vec<(Option<u64>, Value)> {
        members
            .iter()
            .map(|id| {
                let s = get_json(procs, *id, "/status").map(|(_, s)| s).unwrap_or(Value::Null);
                (s["leader_id"].as_u64(), s["elector"]["highest_ballot"].clone())
            })
            .collect()
    };
    // Once the members agree on a leader (the hand-over after the removal may still be
    // under way on a loaded machine), nothing changes while the removed node runs.
    let settle = Instant::now() + DEADLINE;
    let before = loop {
        let now = leader_now(&procs);
        if now.iter().all(|(l, _)| l.is_some() && *l == now[0].0) {
            break now;
        }
        assert!(Instant::now() < settle, "no agreed leader: {now:?}\n{}", procs.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    let watch_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watch_until {
        assert_eq!(
            leader_now(&procs),
            before,
            "the leader or its ballot changed with the removed node back\n{}",
            procs.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    procs.put_retrying(&members, "after", "2");
}

#[test]
fn member_replace_swaps_a_node_in_one_change() {
    let mut procs = Procs::new(3);
    let leader = procs.start_all();
    procs.put_retrying(&[1, 2, 3], "kept", "yes");
    let old = (1..=3).find(|id| *id != leader).expect("a follower");
    let stay: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let (peer, http) = procs.start_joining(4, &stay, true);
    let endpoints: Vec<String> = stay.iter().map(|id| procs.http[id].clone()).collect();
    let (code, out, err) = cli_at(
        &endpoints,
        &[
            "member",
            "replace",
            &old.to_string(),
            "4",
            "--peer-addr",
            &peer,
            "--http-addr",
            &http,
        ],
    );
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}\n{}", procs.logs());
    // One configuration (id 1) of the two that stay and node 4, with a leader named.
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    let mut want: Vec<String> = stay.iter().map(u64::to_string).collect();
    want.push("4".into());
    assert_eq!(ids, want, "{out}");
    assert!(rows.iter().all(|r| r[4] == "1"), "{out}");
    assert!(
        rows.iter().any(|r| r[3] == "leader"),
        "a leader of the new configuration: {out}"
    );
    assert_eq!(procs.get(4, "kept").as_deref(), Some("yes"), "{}", procs.logs());
    let (status, v) = send_json(&procs, old, "PUT", "/v1/kv/k", "v");
    assert_eq!(status, 410, "{v}");
    // The etcd gateway lists the same members.
    let (status, v) = send_json(&procs, stay[0], "POST", "/v3/cluster/member/list", "{}");
    assert_eq!(status, 200, "{v}");
    let listed: Vec<&str> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["ID"].as_str())
        .collect();
    assert_eq!(listed, want, "{v}");
}

#[test]
fn member_remove_the_leader_through_itself_hands_over() {
    let mut procs = Procs::new(3);
    let leader = procs.start_all();
    procs.put_retrying(&[1, 2, 3], "before", "1");
    // The leader takes its own removal: it answers once the change is applied.
    let (code, out, err) = cli_at(
        &[procs.http[&leader].clone()],
        &["member", "remove", &leader.to_string()],
    );
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}\n{}", procs.logs());
    let stay: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let ids: Vec<String> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    assert_eq!(ids, stay.iter().map(u64::to_string).collect::<Vec<_>>(), "{out}");
    // The two that stay lead themselves and take writes; the old leader refuses them.
    procs.put_retrying(&stay, "after", "2");
    assert_eq!(procs.get(stay[1], "after").as_deref(), Some("2"));
    let (status, v) = send_json(&procs, leader, "PUT", "/v1/kv/k", "v");
    assert_eq!(status, 410, "{v}");
    let s = wait_for(&procs, stay[0], "/status", "follows a leader that stays", |s| {
        s["leader_id"].as_u64().is_some_and(|l| l != leader)
    });
    assert_eq!(s["config_id"], json!(1), "{s}");
}

#[test]
fn member_second_change_while_one_is_in_progress_is_refused_or_follows_it() {
    // Two operators at once, through two nodes: add 4 and add 5. Each change names the
    // configuration it was made against; whichever StopSign is decided first wins, and
    // the other is either refused (exit 2, saying why) or, if it was made after the
    // first was applied, applied on top of it. Never both against one configuration,
    // never two configurations under one id: every member ends in the same one.
    let mut procs = Procs::new(3);
    procs.start_all();
    let (peer4, http4) = procs.start_joining(4, &[1], true);
    let (peer5, http5) = procs.start_joining(5, &[2], true);
    for id in [4, 5] {
        wait_for(&procs, id, "/status", "answers as joining", |s| {
            s["membership"] == json!("joining")
        });
    }
    let (via1, via2) = (vec![procs.http[&1].clone()], vec![procs.http[&2].clone()]);
    let add4 = std::thread::spawn(move || {
        cli_at(
            &via1,
            &["member", "add", "4", "--peer-addr", &peer4, "--http-addr", &http4],
        )
    });
    let add5 = std::thread::spawn(move || {
        cli_at(
            &via2,
            &["member", "add", "5", "--peer-addr", &peer5, "--http-addr", &http5],
        )
    });
    let results = [
        (4, add4.join().expect("the add-4 thread")),
        (5, add5.join().expect("the add-5 thread")),
    ];
    let mut expected = vec![1, 2, 3];
    for (id, (code, out, err)) in &results {
        match code {
            Some(0) => expected.push(*id),
            Some(2) => assert!(
                err.contains("refused") || err.contains("in progress"),
                "add {id} refused without saying why: {err}"
            ),
            other => panic!(
                "add {id}: exit {other:?}\nstdout: {out}\nstderr: {err}\n{}",
                procs.logs()
            ),
        }
    }
    assert!(
        expected.len() > 3,
        "one of the two changes goes through: {results:?}\n{}",
        procs.logs()
    );
    expected.sort_unstable();
    let config_id = expected.len() as u64 - 3;
    for id in expected.clone() {
        let v = wait_for(&procs, id, "/v1/members", "agrees on the configuration", |v| {
            v["config_id"].as_u64() == Some(config_id)
        });
        let ids: Vec<u64> = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_u64())
            .collect();
        assert_eq!(ids, expected, "node {id}: {v}");
    }
    // And the cluster serves, through a node added.
    let added = *expected.last().expect("a member added");
    procs.put_retrying(&[1, 2, 3], "after-both", "1");
    assert_eq!(procs.get(added, "after-both").as_deref(), Some("1"), "{}", procs.logs());
}
