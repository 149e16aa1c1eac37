//! # Membership over HTTP: list, add, remove, replace
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/members` | none | the configuration in force here (see below) |
//! | `POST /v1/members` | `{"id": 4, "peer_addr": "IP:port", "http_addr": "IP:port", "from": [1, 2]}` (`from` optional) | 200 with the new configuration, once it is active |
//! | `DELETE /v1/members/{id}` | none | 200 with the new configuration |
//! | `POST /v1/members/{old}/replace` | `{"id": 5, "peer_addr": ..., "http_addr": ..., "from": [..]}` | 200: `old` removed and `id` added by one StopSign |
//! | `POST /v3/cluster/member/list` | anything | etcd's `MemberListResponse` |
//! | `POST /v3/cluster/member/add` | `{"peerURLs": ["http://IP:port"], "ID": "4", "clientURLs": ["http://IP:port"]}` | etcd's `MemberAddResponse` |
//! | `POST /v3/cluster/member/remove` | `{"ID": "3"}` | etcd's `MemberRemoveResponse` |
//!
//! `GET /v1/members` answers on any node in any state: `{"cluster_id", "node_id",
//! "membership": "member"|"joining"|"removed", "config_id", "start", "leader", "members":
//! [{"id", "peer_addr", "http_addr", "role": "leader"|"follower"|"joining"}], "sources",
//! "removed"}`, members sorted by id. `role` is this node's view: the leader its elector
//! names, `joining` only for this node itself while it joins (whether another member
//! has caught up is not known here cheaply). `sources` are the members of the previous
//! configuration a new member pulls the state from. A removed node answers with its
//! latest configuration and `"removed": true`; a joining node with `config_id` null (or
//! the configuration that adds it, once a member told it) and its own id, which is how
//! a change checks that the node it adds was started to join.
//!
//! **A change** is checked first, and refused with 409 (the message says what is wrong,
//! `members` lists the configuration in force) if: the id to add is a member already,
//! or its peer or HTTP address is a member's; the node to remove or replace is not a
//! member, or is the last one; `from` names a node that is not a member or that the
//! change removes; another change this node took is still running (or a StopSign
//! proposed through this node is not applied yet); the node to add does not answer
//! `GET /v1/members` on its HTTP address within 2 s, or answers but is not a joining
//! node with that id (start it with `rolepax-node ... --join URL` first); or fewer than
//! a majority of the new configuration's members answer `GET /status` within 2 s (so
//! many would be removed, or are down, that the new configuration could not work). A
//! malformed body is 400. Only then is the StopSign proposed
//! ([`crate::actors::node::NodeHandle::reconfigure`]): a refusal by the state machine
//! (another change was decided first) is 409, no quorum in time is 503. An added member
//! is then waited for until it applied up to the new configuration's start (`?timeout=`
//! seconds, default 60; 503 if it has not by then, though the configuration changed),
//! and then (up to 10 s more) for a leader of the new configuration: the answer means
//! the new configuration is active.
//!
//! etcd's `MemberAdd` carries no id and no client URL (etcd assigns ids; a rolepax node
//! is started with its id): rolepax takes them as extensions of the request, `"ID"`
//! and `"clientURLs"`, and refuses an add without them (400). etcd's `isLearner` is not
//! supported.
//!
//! **Left out.** Adding or removing several nodes in one request (except replace), and
//! learners (non-voting members).

use super::{Answer, HttpState, Reject, header, kind, read_json, resource};
use crate::actors::node::{MembershipState, MembershipView};
use crate::error::Error;
use crate::messages::{Configuration, Member, NodeId};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a node checked before a change may take to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a change waits, by default, for an added member to catch up.
pub const DEFAULT_CATCH_UP: Duration = Duration::from_secs(60);

/// How long a change waits at most, once applied, for the new configuration's leader
/// (it answers anyway then: the configuration is in force, its election still running).
const LEADER_WAIT: Duration = Duration::from_secs(10);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/members")
            .route(web::get().to(list))
            .route(web::post().to(add)),
    )
    .service(resource("/v1/members/{id}").route(web::delete().to(remove)))
    .service(resource("/v1/members/{id}/replace").route(web::post().to(replace)))
    .service(resource("/v3/cluster/member/list").route(web::post().to(etcd_list)))
    .service(resource("/v3/cluster/member/add").route(web::post().to(etcd_add)))
    .service(resource("/v3/cluster/member/remove").route(web::post().to(etcd_remove)));
}

// ---------------------------------------------------------------------------------
// Answers.

/// `[{id, peer_addr, http_addr}]` of a configuration (the `members` of a refusal).
pub fn member_addresses(config: &Configuration) -> Value {
    Value::Array(
        config
            .members
            .iter()
            .map(|(id, m)| json!({"id": id, "peer_addr": m.peer_addr, "http_addr": m.http_addr}))
            .collect(),
    )
}

/// The `GET /v1/members` answer of this node.
fn members_json(st: &HttpState) -> Value {
    let node = &st.node;
    let (me, view) = (node.id(), node.membership());
    let state = view.state(me);
    let leader = node.leader();
    let shown = view.config.as_ref().or(view.learned.as_ref());
    let members: Vec<Value> = shown
        .map(|c| {
            c.members
                .iter()
                .map(|(&id, m)| {
                    let role = if id == me && state == MembershipState::Joining {
                        "joining"
                    } else if Some(id) == leader {
                        "leader"
                    } else {
                        "follower"
                    };
                    json!({"id": id, "peer_addr": m.peer_addr, "http_addr": m.http_addr, "role": role})
                })
                .collect()
        })
        .unwrap_or_default();
    let cluster = st.cluster_name();
    json!({
        "cluster_id": if cluster.is_empty() { Value::Null } else { Value::String(cluster) },
        "node_id": me,
        "membership": state.as_str(),
        "config_id": shown.map(|c| c.id),
        "start": shown.map(|c| c.start),
        "leader": leader,
        "members": members,
        "sources": view.sources,
        "removed": state == MembershipState::Removed,
    })
}

async fn list(st: web::Data<HttpState>) -> Answer {
    Ok(HttpResponse::Ok().json(members_json(&st)))
}

// ---------------------------------------------------------------------------------
// Reading a change.

/// A change asked for, checked against nothing yet.
#[derive(Clone, Debug)]
enum Change {
    Add {
        id: NodeId,
        member: Member,
        from: Vec<NodeId>,
    },
    Remove {
        id: NodeId,
    },
    Replace {
        old: NodeId,
        id: NodeId,
        member: Member,
        from: Vec<NodeId>,
    },
}

impl Change {
    fn added(&self) -> Option<(NodeId, &Member)> {
        match self {
            Change::Add { id, member, .. } | Change::Replace { id, member, .. } => Some((*id, member)),
            Change::Remove { .. } => None,
        }
    }

    fn removed(&self) -> Option<NodeId> {
        match self {
            Change::Remove { id } => Some(*id),
            Change::Replace { old, .. } => Some(*old),
            Change::Add { .. } => None,
        }
    }

    fn from(&self) -> &[NodeId] {
        match self {
            Change::Add { from, .. } | Change::Replace { from, .. } => from,
            Change::Remove { .. } => &[],
        }
    }
}

/// A node id: a positive integer, as a JSON number or string.
fn node_id(v: &Value, what: &str) -> Result<NodeId, Reject> {
    let id = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match id {
        Some(id) if id > 0 => Ok(id),
        _ => Err(Reject::bad(format!(
            "`{what}` must be a node id (a positive integer), not {}",
            match v {
                Value::String(s) => format!("{s:?}"),
                Value::Number(n) => n.to_string(),
                other => kind(other).to_string(),
            }
        ))),
    }
}

/// `IP:port`, normalized (so that two spellings of one address compare equal).
fn address(text: &str, what: &str) -> Result<String, Reject> {
    text.trim().parse::<SocketAddr>().map(|a| a.to_string()).map_err(|_| {
        Reject::bad(format!(
            "`{what}` must be an address like \"127.0.0.1:7104\", not {text:?}"
        ))
    })
}

/// The new member of an add or replace body: `{"id", "peer_addr", "http_addr", "from"}`.
fn new_member(m: &Map<String, Value>) -> Result<(NodeId, Member, Vec<NodeId>), Reject> {
    const KNOWN: [&str; 4] = ["id", "peer_addr", "http_addr", "from"];
    if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Reject::bad(format!(
            "unknown field `{k}` (known: {})",
            KNOWN.join(", ")
        )));
    }
    let id = node_id(
        m.get("id")
            .ok_or_else(|| Reject::bad("missing `id` (the new node's id)"))?,
        "id",
    )?;
    let text = |name: &str| match m.get(name) {
        Some(Value::String(s)) => address(s, name),
        Some(v) => Err(Reject::bad(format!(
            "`{name}` must be a string \"IP:port\", not {}",
            kind(v)
        ))),
        None => Err(Reject::bad(format!(
            "missing `{name}` (the new node's {name}, \"IP:port\")"
        ))),
    };
    let member = Member {
        peer_addr: text("peer_addr")?,
        http_addr: text("http_addr")?,
    };
    let from = match m.get("from") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .enumerate()
            .map(|(i, v)| node_id(v, &format!("from[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(Reject::bad(format!(
                "`from` must be a list of node ids, not {}",
                kind(v)
            )));
        }
    };
    let mut sorted = from.clone();
    sorted.sort_unstable();
    sorted.dedup();
    Ok((id, member, sorted))
}

fn path_id(req: &HttpRequest) -> Result<NodeId, Reject> {
    let text = req.match_info().get("id").unwrap_or_default();
    node_id(&Value::String(text.to_string()), "id in the path")
}

/// `?timeout=SECS`: how long to wait for an added member to catch up.
fn catch_up_timeout(req: &HttpRequest) -> Result<Duration, Reject> {
    let mut timeout = DEFAULT_CATCH_UP;
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("timeout", v)) => match v.parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs <= 3600.0 => timeout = Duration::from_secs_f64(secs),
                _ => {
                    return Err(Reject::bad(format!(
                        "`timeout` must be seconds from 0 to 3600, not {v:?}"
                    )));
                }
            },
            _ => {
                return Err(Reject::bad(format!(
                    "unknown query parameter {pair:?} (known: timeout)"
                )));
            }
        }
    }
    Ok(timeout)
}

async fn add(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let timeout = catch_up_timeout(&req)?;
    let m = read_json(&req, payload, &st).await?;
    let (id, member, from) = new_member(&m)?;
    let config = change(&st, Change::Add { id, member, from }, timeout).await?;
    Ok(HttpResponse::Ok().json(config_json(&st, &config)))
}

async fn remove(st: web::Data<HttpState>, req: HttpRequest) -> Answer {
    let timeout = catch_up_timeout(&req)?;
    let id = path_id(&req)?;
    let config = change(&st, Change::Remove { id }, timeout).await?;
    Ok(HttpResponse::Ok().json(config_json(&st, &config)))
}

async fn replace(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let timeout = catch_up_timeout(&req)?;
    let old = path_id(&req)?;
    let m = read_json(&req, payload, &st).await?;
    let (id, member, from) = new_member(&m)?;
    let config = change(&st, Change::Replace { old, id, member, from }, timeout).await?;
    Ok(HttpResponse::Ok().json(config_json(&st, &config)))
}

/// A configuration in the shape of `GET /v1/members` (as this node sees it now).
fn config_json(st: &HttpState, config: &Configuration) -> Value {
    let mut v = members_json(st);
    let leader = st.node.leader();
    if let Value::Object(m) = &mut v {
        m.insert("config_id".into(), json!(config.id));
        m.insert("start".into(), json!(config.start));
        let members: Vec<Value> = config
            .members
            .iter()
            .map(|(&id, mm)| {
                let role = if Some(id) == leader { "leader" } else { "follower" };
                json!({"id": id, "peer_addr": mm.peer_addr, "http_addr": mm.http_addr, "role": role})
            })
            .collect();
        m.insert("members".into(), Value::Array(members));
    }
    v
}

// ---------------------------------------------------------------------------------
// Running a change.

/// A refusal of a change: 409, naming the members of `config`.
fn refuse(config: &Configuration, message: impl Into<String>) -> Reject {
    Reject::new(StatusCode::CONFLICT, message).with_members(member_addresses(config))
}

/// Checks `change` (see the module docs), proposes it, and waits until it is active.
async fn change(st: &HttpState, change: Change, catch_up: Duration) -> Result<Configuration, Reject> {
    let Some(node) = st.node.paxos() else {
        return Err(Reject::new(
            StatusCode::NOT_IMPLEMENTED,
            "this node runs the Raft engine (engine = \"raft\"), whose membership is the configuration \
             file's nodes: membership change runs on the Paxos engine only",
        ));
    };
    let view = node.membership();
    let current = match (view.state(node.id()), &view.config) {
        (MembershipState::Member, Some(c)) => c.clone(),
        // Refused with 410 (removed) or 503 (joining), naming the members.
        _ => return Err(not_serving(st, &view)),
    };
    let next = validate(&current, &change)?;
    if let Some(why) = node.change_in_progress() {
        return Err(refuse(&current, why));
    }
    if let Some((id, member)) = change.added() {
        check_joining(&current, id, member).await?;
    }
    check_majority(node.id(), &current, &next, change.added().map(|(id, _)| id)).await?;

    let stop = node.stop_sign(next.clone(), change.from().to_vec())?;
    let config = node.reconfigure(stop).await.map_err(|e| match e {
        Error::Conflict(m) => {
            let now = node.membership().config.unwrap_or_else(|| current.clone());
            refuse(&now, m)
        }
        other => Reject::from(other),
    })?;
    let deadline = Instant::now() + catch_up;
    if let Some((id, member)) = change.added() {
        wait_caught_up(&config, id, member, catch_up).await?;
    }
    // Active: a member of the new configuration leads it (as far as this node, if it is
    // a member, has heard; a leader that removed itself has handed over by then).
    if config.contains(node.id()) {
        let left = deadline.saturating_duration_since(Instant::now()).min(LEADER_WAIT);
        if node.wait_leader_in(&config, left).await.is_none() {
            tracing::info!(node = node.id(), config = %config, "membership change applied; no leader of it heard yet");
        }
    }
    Ok(config)
}

/// Why this node takes no change: removed (410) or joining (503).
fn not_serving(st: &HttpState, view: &MembershipView) -> Reject {
    match st.node.serving() {
        Err(e) => {
            let reject = Reject::from(e);
            match (&reject.members, &view.config) {
                (None, Some(c)) => reject.with_members(member_addresses(c)),
                _ => reject,
            }
        }
        Ok(()) => Reject::new(StatusCode::SERVICE_UNAVAILABLE, "this node holds no configuration"),
    }
}

/// The members of the configuration `change` makes of `current`, or why it is refused.
fn validate(current: &Configuration, change: &Change) -> Result<BTreeMap<NodeId, Member>, Reject> {
    let mut next = current.members.clone();
    let cid = current.id;
    if let Some(old) = change.removed() {
        if !current.contains(old) {
            return Err(refuse(
                current,
                format!(
                    "node {old} is not a member of configuration {cid} (members: {:?})",
                    current.ids()
                ),
            ));
        }
        if current.members.len() == 1 && change.added().is_none() {
            return Err(refuse(
                current,
                format!(
                    "node {old} is the last member of configuration {cid}: a cluster cannot remove its last member"
                ),
            ));
        }
        next.remove(&old);
    }
    if let Some((id, member)) = change.added() {
        if current.contains(id) {
            return Err(refuse(
                current,
                format!(
                    "node {id} is already a member of configuration {cid}: add a node with an id that is not in use"
                ),
            ));
        }
        for (&other, m) in &current.members {
            if Some(other) == change.removed() {
                continue;
            }
            for (what, addr) in [("peer_addr", &member.peer_addr), ("http_addr", &member.http_addr)] {
                if *addr == m.peer_addr || *addr == m.http_addr {
                    return Err(refuse(
                        current,
                        format!(
                            "{what} {addr} is already used by member {other}: each node needs addresses of its own"
                        ),
                    ));
                }
            }
        }
        if member.peer_addr == member.http_addr {
            return Err(Reject::bad(format!(
                "peer_addr and http_addr are both {}: a node needs two ports",
                member.peer_addr
            )));
        }
        next.insert(id, member.clone());
    }
    for &source in change.from() {
        if Some(source) == change.removed() {
            return Err(refuse(
                current,
                format!("`from` names node {source}, which this change removes: name members that stay"),
            ));
        }
        if !current.contains(source) {
            return Err(refuse(
                current,
                format!(
                    "`from` names node {source}, which is not a member of configuration {cid} (members: {:?})",
                    current.ids()
                ),
            ));
        }
    }
    Ok(next)
}

/// `GET http://{addr}{path}` as JSON, off the async threads, within `timeout`.
pub async fn probe(addr: &str, path: &str, timeout: Duration) -> Result<Value, String> {
    let url = if addr.contains("://") {
        format!("{}{path}", addr.trim_end_matches('/'))
    } else {
        format!("http://{addr}{path}")
    };
    let call = move || {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(timeout)
            .timeout(timeout)
            .build();
        match agent.get(&url).call() {
            Ok(res) => res.into_json::<Value>().map_err(|e| format!("{url}: not JSON: {e}")),
            Err(ureq::Error::Status(code, _)) => Err(format!("{url}: HTTP {code}")),
            Err(ureq::Error::Transport(t)) => Err(format!("{url}: {t}")),
        }
    };
    match actix_rt::task::spawn_blocking(call).await {
        Ok(result) => result,
        Err(e) => Err(format!("probe task: {e}")),
    }
}

/// [`probe`] again until it answers or `within` has passed (a node just started may
/// not listen yet; one that is down is refused at once, so this is not one long wait).
pub async fn probe_within(addr: &str, path: &str, within: Duration) -> Result<Value, String> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match probe(addr, path, left.max(Duration::from_millis(100))).await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() + Duration::from_millis(100) >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The node to add must answer as a joining node with that id.
async fn check_joining(current: &Configuration, id: NodeId, member: &Member) -> Result<(), Reject> {
    let how = format!(
        "start it first with `rolepax-node --id {id} --peer-addr {} --http-addr {} --data-dir DIR --join URL`",
        member.peer_addr, member.http_addr
    );
    let answer = probe_within(&member.http_addr, "/v1/members", PROBE_TIMEOUT)
        .await
        .map_err(|e| {
            refuse(
                current,
                format!(
                    "the new node {id} does not answer on its http_addr {} within {PROBE_TIMEOUT:?} ({e}); {how}; nothing was changed",
                    member.http_addr
                ),
            )
        })?;
    let (said_id, said_state) = (answer["node_id"].as_u64(), answer["membership"].as_str());
    if said_id != Some(id) || said_state != Some("joining") {
        return Err(refuse(
            current,
            format!(
                "the node at {} is not a joining node with id {id}: it says it is node {} ({}); {how}",
                member.http_addr,
                said_id.map_or("?".to_string(), |n| n.to_string()),
                said_state.unwrap_or("no membership state"),
            ),
        ));
    }
    Ok(())
}

/// A majority of the new configuration's members must answer `/status` now: this node
/// (if it stays) and the node added (checked just before) count without asking again.
async fn check_majority(
    me: NodeId,
    current: &Configuration,
    next: &BTreeMap<NodeId, Member>,
    added: Option<NodeId>,
) -> Result<(), Reject> {
    let asks: Vec<_> = next
        .iter()
        .filter(|(id, _)| **id != me && Some(**id) != added)
        .map(|(&id, m)| {
            let addr = m.http_addr.clone();
            async move { (id, probe_within(&addr, "/status", PROBE_TIMEOUT).await) }
        })
        .collect();
    let answers = futures_util::future::join_all(asks).await;
    let mut up: Vec<NodeId> = next
        .keys()
        .copied()
        .filter(|id| *id == me || Some(*id) == added)
        .collect();
    let mut down = Vec::new();
    for (id, answer) in answers {
        match answer {
            Ok(_) => up.push(id),
            Err(e) => down.push(format!("node {id}: {e}")),
        }
    }
    up.sort_unstable();
    let majority = next.len() / 2 + 1;
    if up.len() < majority {
        return Err(refuse(
            current,
            format!(
                "the new configuration {:?} would have no majority reachable: only {} of its {} members ({up:?}) answered /status within {PROBE_TIMEOUT:?}, {majority} needed (so many removed or down that no majority remains reachable); unreachable: {}",
                next.keys().collect::<Vec<_>>(),
                up.len(),
                next.len(),
                down.join("; ")
            ),
        ));
    }
    Ok(())
}

/// Waits until the added node `id` applied up to `config`'s start (it holds the state
/// the configuration began with), up to `timeout`.
async fn wait_caught_up(config: &Configuration, id: NodeId, member: &Member, timeout: Duration) -> Result<(), Reject> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe(&member.http_addr, "/status", PROBE_TIMEOUT).await {
            Ok(s) => {
                let applied = s["applied"].as_u64().unwrap_or(0);
                let config_id = s["config_id"].as_u64();
                if applied >= config.start && config_id.is_some_and(|c| c >= config.id) {
                    return Ok(());
                }
                format!(
                    "it applied {applied} slots of {}, configuration {}",
                    config.start,
                    config_id.map_or("none yet".to_string(), |c| c.to_string())
                )
            }
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(Reject::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{config} is in force, but the new node {id} has not caught up within {timeout:?} ({last}); it keeps catching up (see its /status)"
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------
// The etcd gateway's cluster API.

/// `http://IP:port` (or `IP:port`) to `IP:port`.
fn from_url(url: &str, what: &str) -> Result<String, Reject> {
    let bare = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url)
        .trim_end_matches('/');
    address(bare, what)
}

fn etcd_member(id: NodeId, m: &Member) -> Value {
    json!({
        "ID": id.to_string(),
        "name": id.to_string(),
        "peerURLs": [format!("http://{}", m.peer_addr)],
        "clientURLs": [format!("http://{}", m.http_addr)],
    })
}

fn etcd_members(config: &Configuration) -> Value {
    Value::Array(config.members.iter().map(|(&id, m)| etcd_member(id, m)).collect())
}

async fn etcd_list(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    read_json(&req, payload, &st).await?;
    let view = st.node.membership();
    let members = view.config.as_ref().map_or(Value::Array(Vec::new()), etcd_members);
    Ok(HttpResponse::Ok().json(json!({"header": header(&st, 0).await, "members": members})))
}

/// One URL of a list field (`peerURLs`, `clientURLs`).
fn one_url(m: &Map<String, Value>, name: &str, why: &str) -> Result<String, Reject> {
    match m.get(name) {
        Some(Value::Array(urls)) if urls.len() == 1 => match &urls[0] {
            Value::String(u) => from_url(u, name),
            v => Err(Reject::bad(format!(
                "`{name}[0]` must be a URL string, not {}",
                kind(v)
            ))),
        },
        Some(Value::Array(urls)) if urls.len() > 1 => Err(Reject::bad(format!(
            "`{name}` lists {} URLs: a rolepax node has one",
            urls.len()
        ))),
        Some(v) if !v.is_array() => Err(Reject::bad(format!("`{name}` must be a list of URLs, not {}", kind(v)))),
        _ => Err(Reject::bad(format!("missing `{name}`: {why}"))),
    }
}

async fn etcd_add(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let m = read_json(&req, payload, &st).await?;
    const KNOWN: [&str; 4] = ["peerURLs", "ID", "clientURLs", "isLearner"];
    if let Some(k) = m.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Reject::bad(format!(
            "unknown or unsupported field `{k}` (known: {})",
            KNOWN.join(", ")
        )));
    }
    if m.get("isLearner").is_some_and(|v| v != &Value::Bool(false)) {
        return Err(Reject::bad("`isLearner` is not supported: every rolepax member votes"));
    }
    let peer_addr = one_url(
        &m,
        "peerURLs",
        "the new node's peer URL, e.g. [\"http://127.0.0.1:7104\"]",
    )?;
    let id = node_id(
        m.get("ID").ok_or_else(|| {
            Reject::bad("missing `ID`: a rolepax extension of MemberAdd, required (etcd assigns ids; a rolepax node is started with its id: give the same one)")
        })?,
        "ID",
    )?;
    let http_addr = one_url(
        &m,
        "clientURLs",
        "a rolepax extension of MemberAdd, required: the new node's HTTP URL, e.g. [\"http://127.0.0.1:7204\"]",
    )?;
    let member = Member { peer_addr, http_addr };
    let config = change(
        &st,
        Change::Add {
            id,
            member: member.clone(),
            from: Vec::new(),
        },
        DEFAULT_CATCH_UP,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "header": header(&st, 0).await,
        "member": etcd_member(id, &member),
        "members": etcd_members(&config),
    })))
}

async fn etcd_remove(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let m = read_json(&req, payload, &st).await?;
    if let Some(k) = m.keys().find(|k| k.as_str() != "ID") {
        return Err(Reject::bad(format!("unknown or unsupported field `{k}` (known: ID)")));
    }
    let id = node_id(
        m.get("ID")
            .ok_or_else(|| Reject::bad("missing `ID` (the member to remove)"))?,
        "ID",
    )?;
    let config = change(&st, Change::Remove { id }, DEFAULT_CATCH_UP).await?;
    Ok(HttpResponse::Ok().json(json!({"header": header(&st, 0).await, "members": etcd_members(&config)})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Configuration {
        let m = |p: u16| Member {
            peer_addr: format!("127.0.0.1:{p}"),
            http_addr: format!("127.0.0.1:{}", p + 100),
        };
        Configuration::initial([(1, m(7101)), (2, m(7102)), (3, m(7103))].into_iter().collect())
    }

    fn refused(r: Result<BTreeMap<NodeId, Member>, Reject>) -> (u16, String) {
        match r {
            Ok(next) => panic!("accepted: {next:?}"),
            Err(e) => (e.status.as_u16(), e.message),
        }
    }

    fn member(peer: &str, http: &str) -> Member {
        Member {
            peer_addr: peer.into(),
            http_addr: http.into(),
        }
    }

    #[test]
    fn members_validate_refuses_what_cannot_work() {
        let c = config();
        let new = member("127.0.0.1:7104", "127.0.0.1:7204");
        let add = |id, m: Member, from: Vec<NodeId>| Change::Add { id, member: m, from };
        let (code, msg) = refused(validate(&c, &add(2, new.clone(), vec![])));
        assert_eq!(code, 409);
        assert!(msg.contains("node 2 is already a member"), "{msg}");
        let (code, msg) = refused(validate(
            &c,
            &add(4, member("127.0.0.1:7102", "127.0.0.1:7204"), vec![]),
        ));
        assert_eq!(code, 409);
        assert!(msg.contains("127.0.0.1:7102") && msg.contains("member 2"), "{msg}");
        let (code, msg) = refused(validate(&c, &add(4, new.clone(), vec![9])));
        assert_eq!(code, 409);
        assert!(msg.contains("`from` names node 9"), "{msg}");
        let (code, msg) = refused(validate(&c, &Change::Remove { id: 7 }));
        assert_eq!(code, 409);
        assert!(msg.contains("node 7 is not a member"), "{msg}");
        let replace = Change::Replace {
            old: 3,
            id: 4,
            member: new.clone(),
            from: vec![3],
        };
        let (code, msg) = refused(validate(&c, &replace));
        assert_eq!(code, 409);
        assert!(msg.contains("which this change removes"), "{msg}");
        let single = Configuration::initial([(1, new.clone())].into_iter().collect());
        let (code, msg) = refused(validate(&single, &Change::Remove { id: 1 }));
        assert_eq!(code, 409);
        assert!(msg.contains("last member"), "{msg}");

        // What is fine: an add with sources, a replace reusing the old node's addresses.
        let next = validate(&c, &add(4, new.clone(), vec![1, 2])).expect("add");
        assert_eq!(next.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        let reuse = Change::Replace {
            old: 3,
            id: 5,
            member: member("127.0.0.1:7103", "127.0.0.1:7203"),
            from: vec![],
        };
        let next = validate(&c, &reuse).expect("replace");
        assert_eq!(next.keys().copied().collect::<Vec<_>>(), vec![1, 2, 5]);
    }

    #[test]
    fn members_bodies_are_checked_field_by_field() {
        let parse = |text: &str| {
            let Value::Object(m) = serde_json::from_str::<Value>(text).expect("json") else {
                panic!("object")
            };
            new_member(&m)
        };
        let good =
            parse(r#"{"id": "4", "peer_addr": "127.0.0.1:7104", "http_addr": "127.0.0.1:7204", "from": [2, 1, 2]}"#)
                .expect("good");
        assert_eq!(good.0, 4);
        assert_eq!(good.2, vec![1, 2], "sorted, deduplicated");
        for (text, says) in [
            (
                r#"{"peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}"#,
                "missing `id`",
            ),
            (
                r#"{"id": 0, "peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}"#,
                "`id`",
            ),
            (
                r#"{"id": 4, "peer_addr": "localhost:1", "http_addr": "127.0.0.1:2"}"#,
                "`peer_addr`",
            ),
            (r#"{"id": 4, "peer_addr": "127.0.0.1:1"}"#, "missing `http_addr`"),
            (
                r#"{"id": 4, "peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "from": 1}"#,
                "`from`",
            ),
            (
                r#"{"id": 4, "peer_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "form": [1]}"#,
                "unknown field `form`",
            ),
        ] {
            match parse(text) {
                Ok(v) => panic!("accepted {text}: {v:?}"),
                Err(e) => {
                    assert_eq!(e.status.as_u16(), 400, "{text}");
                    assert!(e.message.contains(says), "{says:?} not in {}", e.message);
                }
            }
        }
        assert_eq!(
            from_url("http://127.0.0.1:7104/", "peerURLs").expect("url"),
            "127.0.0.1:7104"
        );
        assert!(from_url("http://node4:7104", "peerURLs").is_err());
    }
}
