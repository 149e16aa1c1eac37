//! # Joining a running cluster
//!
//! A node started with `--join URL,...` holds no configuration: it takes part in
//! nothing and serves no request, but its HTTP API answers (`/status` says `"joining"`)
//! and its transport listens. [`spawn`] polls `GET {url}/v1/members` of the join URLs,
//! one every [`POLL_INTERVAL`], in turn, and:
//!
//! 1. learns the cluster's id (with a configuration file that names one, a member of
//!    another cluster is refused instead);
//! 2. waits until a member's configuration counts this node, with this node's own
//!    addresses (the operator's `rolepax member add`, which checks first that this node
//!    answers as a joining node with that id);
//! 3. then reaches that configuration's members and has its learner pull the state below
//!    the configuration's start from the sources the answer names (else from every other
//!    member), in parallel ([`crate::actors::node::NodeHandle::begin_join`]). Once the
//!    state machine installed it, it applies the configuration from it, records it in
//!    the `membership` file, and the node is a member: the loop ends.
//!
//! Nothing here crashes the node or loops fast: an unreachable URL, an answer of another
//! cluster, or a configuration that lists this node's id at other addresses (the id is
//! taken) is logged once (again at debug level) and shown in `/status` as `join_error`,
//! and the loop goes on.

use crate::actors::node::NodeHandle;
use crate::app::Application;
use crate::messages::{Configuration, Member, NodeId};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How often the join URLs are asked (one URL per round).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long one ask may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// What one answer of a join URL means for this node.
#[derive(Debug, PartialEq)]
pub enum Reading {
    /// Not added yet: why (shown in `/status`).
    Waiting(String),
    /// The configuration that adds this node, and the members to pull the state from.
    Added(Configuration, Vec<NodeId>),
}

/// Reads a `GET /v1/members` answer for node `me` at `addresses`: the cluster id it
/// names, and what it means. `Err` is a problem the operator must fix (another cluster,
/// the id taken by other addresses).
pub fn read_members(
    answer: &Value,
    me: NodeId,
    addresses: &Member,
    cluster: &str,
) -> Result<(String, Reading), String> {
    let named = answer["cluster_id"].as_str().unwrap_or_default().to_string();
    if named.is_empty() {
        return Ok((
            named,
            Reading::Waiting("the node asked does not know its cluster's id".into()),
        ));
    }
    if !cluster.is_empty() && named != cluster {
        return Err(format!(
            "cluster id mismatch: the node asked is in cluster {named:?}, this node belongs to {cluster:?} \
             (its configuration file or data directory): it will not join another cluster"
        ));
    }
    if answer["membership"].as_str() != Some("member") {
        return Ok((
            named,
            Reading::Waiting("the node asked is not a member (joining or removed); asking the others".into()),
        ));
    }
    let (Some(id), Some(start)) = (answer["config_id"].as_u64(), answer["start"].as_u64()) else {
        return Ok((named, Reading::Waiting("the answer names no configuration".into())));
    };
    let mut members = BTreeMap::new();
    for m in answer["members"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let (Some(node), Some(peer), Some(http)) = (m["id"].as_u64(), m["peer_addr"].as_str(), m["http_addr"].as_str())
        else {
            return Ok((
                named,
                Reading::Waiting(format!("a member in the answer is malformed: {m}")),
            ));
        };
        members.insert(
            node,
            Member {
                peer_addr: peer.to_string(),
                http_addr: http.to_string(),
            },
        );
    }
    let config = Configuration { id, start, members };
    let Some(mine) = config.members.get(&me) else {
        return Ok((
            named,
            Reading::Waiting(format!(
                "waiting to be added: configuration {id} has members {:?}, not node {me} (run `rolepax member add {me} --peer-addr {} --http-addr {}`)",
                config.ids(),
                addresses.peer_addr,
                addresses.http_addr
            )),
        ));
    };
    if !same_address(&mine.peer_addr, &addresses.peer_addr) || !same_address(&mine.http_addr, &addresses.http_addr) {
        return Err(format!(
            "node id {me} is already a member of configuration {id} at peer {}, http {}, but this node is at peer {}, http {}: \
             the id is taken; start this node with another --id (or with the member's addresses)",
            mine.peer_addr, mine.http_addr, addresses.peer_addr, addresses.http_addr
        ));
    }
    let listed: BTreeSet<NodeId> = answer["sources"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_u64)
        .filter(|s| *s != me && config.contains(*s))
        .collect();
    let sources = if listed.is_empty() {
        config.ids().into_iter().filter(|s| *s != me).collect()
    } else {
        listed.into_iter().collect()
    };
    Ok((named, Reading::Added(config, sources)))
}

/// Two `IP:port` texts name the same address (spelled alike once parsed).
fn same_address(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::SocketAddr>(), b.parse::<std::net::SocketAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Starts polling `urls` until `node` is a member (see the module docs). `addresses`
/// are this node's own, as the configuration that adds it must list them.
pub fn spawn<A: Application>(node: NodeHandle<A>, urls: Vec<String>, addresses: Member) {
    let urls: Vec<String> = urls
        .into_iter()
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        node.set_join_error(Some("no join URL given".into()));
        return;
    }
    tracing::info!(
        node = node.id(),
        ?urls,
        "joining: asking the join URLs for the cluster's members"
    );
    actix_rt::spawn(async move {
        let mut said = BTreeSet::new();
        let mut at = 0;
        loop {
            if node.is_halted() {
                return;
            }
            if node.membership().config.is_some() {
                tracing::info!(node = node.id(), "joined: a member of the cluster");
                node.set_join_error(None);
                return;
            }
            let url = &urls[at % urls.len()];
            at += 1;
            let cluster = node.membership().cluster;
            let outcome = match super::members::probe(url, "/v1/members", ASK_TIMEOUT).await {
                Err(e) => Err(format!("cannot ask {url}: {e}")),
                Ok(answer) => read_members(&answer, node.id(), &addresses, &cluster),
            };
            match outcome {
                Ok((named, reading)) => {
                    if cluster.is_empty() && !named.is_empty() {
                        tracing::info!(node = node.id(), cluster = named, "joining: learned the cluster id");
                        node.set_cluster(&named);
                    }
                    match reading {
                        Reading::Waiting(why) => {
                            if said.insert(why.clone()) {
                                tracing::info!(node = node.id(), url, "joining: {why}");
                            }
                            node.set_join_error(Some(why));
                        }
                        Reading::Added(config, sources) => {
                            node.set_join_error(Some(format!(
                                "added in configuration {}: pulling the state below slot {} from {sources:?}",
                                config.id, config.start
                            )));
                            node.begin_join(config, sources);
                        }
                    }
                }
                Err(e) => {
                    if said.insert(e.clone()) {
                        tracing::warn!(node = node.id(), url, "joining: {e}");
                    } else {
                        tracing::debug!(node = node.id(), url, "joining: {e}");
                    }
                    node.set_join_error(Some(e));
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me() -> Member {
        Member {
            peer_addr: "127.0.0.1:7104".into(),
            http_addr: "127.0.0.1:7204".into(),
        }
    }

    fn answer(members: Value, sources: Value) -> Value {
        json!({"cluster_id": "c", "node_id": 1, "membership": "member", "config_id": 1, "start": 17,
               "leader": 1, "members": members, "sources": sources})
    }

    #[test]
    fn join_reading_of_a_members_answer() {
        let three = json!([
            {"id": 1, "peer_addr": "127.0.0.1:7101", "http_addr": "127.0.0.1:7201"},
            {"id": 2, "peer_addr": "127.0.0.1:7102", "http_addr": "127.0.0.1:7202"},
        ]);
        let (named, r) = read_members(&answer(three.clone(), json!([])), 4, &me(), "").expect("fine");
        assert_eq!(named, "c");
        assert!(
            matches!(r, Reading::Waiting(ref w) if w.contains("waiting to be added")),
            "{r:?}"
        );

        let mut four = three.as_array().cloned().unwrap_or_default();
        four.push(json!({"id": 4, "peer_addr": "127.0.0.1:7104", "http_addr": "127.0.0.1:7204"}));
        let (_, r) = read_members(&answer(json!(four), json!([2, 4, 9])), 4, &me(), "c").expect("fine");
        let Reading::Added(config, sources) = r else {
            panic!("{r:?}")
        };
        assert_eq!((config.id, config.start, config.ids()), (1, 17, vec![1, 2, 4]));
        assert_eq!(sources, vec![2], "only members other than this node");
        let (_, r) = read_members(&answer(json!(four), json!([])), 4, &me(), "c").expect("fine");
        assert!(matches!(r, Reading::Added(_, ref s) if *s == vec![1, 2]), "{r:?}");

        let e = read_members(&answer(json!(four), json!([])), 4, &me(), "other").expect_err("mismatch");
        assert!(e.contains("cluster id mismatch"), "{e}");
        let elsewhere = Member {
            peer_addr: "127.0.0.1:9999".into(),
            ..me()
        };
        let e = read_members(&answer(json!(four), json!([])), 4, &elsewhere, "c").expect_err("taken");
        assert!(e.contains("id is taken"), "{e}");
    }
}
