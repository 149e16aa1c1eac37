//! # The HTTP face of a node
//!
//! Every node serves the same API over actix-web, backed by its [`Replica`] (the Paxos
//! roles' [`NodeHandle`], or the Raft engine's node: the front does not care which).
//! Writes go through the replicated log ([`NodeHandle::submit`], which forwards to the
//! leader, so any node may be asked); linearizable reads use a read index confirmed by
//! the leader with a quorum and do not write the log ([`NodeHandle::read`]); local reads
//! answer from the node's own state ([`NodeHandle::read_local`], fast and possibly stale).
//! Membership changes (`/v1/members`) run on the Paxos engine only: a Raft node answers
//! them 501.
//!
//! | endpoint                        | what                                                 |
//! |---------------------------------|------------------------------------------------------|
//! | `POST /v3/kv/put`               | etcd gateway: put (`prev_kv`)                        |
//! | `POST /v3/kv/range`             | etcd gateway: get one key or a range (`range_end`, `limit`, `serializable`, `keys_only`, `count_only`) |
//! | `POST /v3/kv/deleterange`       | etcd gateway: delete a key or a range (`prev_kv`)    |
//! | `POST /v3/kv/txn`               | etcd gateway: compares, then success or failure ops  |
//! | `GET /v1/kv/{key}`              | raw value (404 if absent; `?stale=true`: local read) |
//! | `PUT /v1/kv/{key}`              | set to the raw body                                  |
//! | `DELETE /v1/kv/{key}`           | delete (404 if absent)                               |
//! | `POST /v1/cas/{key}`            | `{"expected": "old" or null, "new": "v"}`; 409 if the value differs |
//! | `GET /status`, `/health`, `/metrics` | node state as JSON; liveness; Prometheus text   |
//! | `GET /v1/members`, `POST /v1/members`, `DELETE /v1/members/{id}`, `POST /v1/members/{id}/replace` | membership: list, add, remove, replace ([`members`]) |
//! | `POST /v3/cluster/member/list`, `.../add`, `.../remove` | etcd gateway: the same ([`members`]) |
//!
//! The etcd subset follows etcd's JSON gateway: keys and values are base64 (standard or
//! URL alphabet, padding optional), 64-bit integers are JSON strings (numbers are
//! accepted too), `snake_case` or `camelCase` field names, and fields at their zero value
//! are left out of answers. The header's `raft_term` is the round of the highest ballot
//! this node has seen; `cluster_id` is a 64-bit hash of the configured cluster name;
//! `member_id` is the node id. Responses nested in a txn carry only `revision` in their
//! header.
//!
//! Errors are JSON `{"error": "...", "code": N}`: 400 for malformed input (naming the
//! field), 404, 405, 409 for a failed compare-and-swap (and a refused membership change,
//! with the current `members`), 410 from a node removed from the cluster (with the
//! `members` to ask instead; `/status`, `/metrics` and `GET /v1/members` still answer),
//! 413 for a body larger than `max_body_bytes`, 503 with `Retry-After` when no quorum
//! answered in time (and from a node that is still joining).
//!
//! Wire it with [`HttpState`] and [`configure`]:
//! `App::new().app_data(web::Data::new(state)).configure(rolepax::http::configure)`.
//!
//! **Left out.** Historical reads (`revision`), sorting, leases, watches, auth, the
//! `min/max_*_revision` range filters, compares over a `range_end`, and the etcd
//! rule that a txn may not write one key twice.

pub mod join;
mod lock_routes;
pub mod members;

#[cfg(doc)]
use crate::actors::node::NodeHandle;
use crate::actors::node::NodeStatus;
use crate::app::kv::{Compare, CompareOp, CompareTarget, KeyValue, KvCommand, KvReply, KvResult};
use crate::app::service::{ServiceCommand, ServiceReply};
use crate::engine::{EngineStatus, Replica};
use crate::error::Error;
use crate::raft::RaftStatus;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Snapshot of the transport's counters as JSON (`TcpTransport::counters`), for
/// `/status` and `/metrics`. Expected shape: numbers at the top, and a `peers` map of
/// peer id to an object of numbers and booleans.
pub type TransportInfo = Arc<dyn Fn() -> Value + Send + Sync>;

/// What every handler shares: the node, names, limits and the HTTP layer's metrics.
pub struct HttpState {
    pub node: Replica,
    /// The configured cluster name (empty: not known; a joining node learns it, and
    /// [`HttpState::cluster_name`] then answers the node's).
    pub cluster_name: String,
    /// `cluster_id` in etcd headers: [`cluster_hash`] of the configured name.
    pub cluster_id: u64,
    pub max_body_bytes: usize,
    pub transport: Option<TransportInfo>,
    pub metrics: HttpMetrics,
}

impl HttpState {
    pub fn new(node: impl Into<Replica>, cluster_name: &str, max_body_bytes: usize) -> Self {
        HttpState {
            node: node.into(),
            cluster_name: cluster_name.to_string(),
            cluster_id: cluster_hash(cluster_name),
            max_body_bytes,
            transport: None,
            metrics: HttpMetrics::default(),
        }
    }

    pub fn with_transport(mut self, info: TransportInfo) -> Self {
        self.transport = Some(info);
        self
    }

    /// The cluster's name: the node's (from its membership file, or learned while
    /// joining), else the configured one.
    pub fn cluster_name(&self) -> String {
        let learned = self.node.membership().cluster;
        if learned.is_empty() {
            self.cluster_name.clone()
        } else {
            learned
        }
    }

    /// `cluster_id` in etcd headers: [`cluster_hash`] of [`HttpState::cluster_name`].
    pub fn cluster_hash(&self) -> u64 {
        let learned = self.node.membership().cluster;
        if learned.is_empty() || learned == self.cluster_name {
            self.cluster_id
        } else {
            cluster_hash(&learned)
        }
    }
}

/// FNV-1a of the cluster name: a stable 64-bit cluster id.
pub fn cluster_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Upper bounds (seconds) of the commit latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Measured here, not in the roles: how long commands take through the log.
#[derive(Default)]
pub struct HttpMetrics {
    /// Per bucket (not cumulative); the last slot counts what exceeds every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
    failures: AtomicU64,
}

impl HttpMetrics {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn commits(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// An HTTP error answer: status and message, rendered as `{"error", "code"}` (and
/// `"members"` when the answer names the cluster's members).
#[derive(Debug)]
pub struct Reject {
    pub status: StatusCode,
    pub message: String,
    pub members: Option<Value>,
}

impl Reject {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Reject {
            status,
            message: message.into(),
            members: None,
        }
    }

    /// Names the cluster's members in the answer (`[{id, peer_addr, http_addr}]`).
    pub fn with_members(mut self, members: Value) -> Self {
        self.members = Some(members);
        self
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl From<Error> for Reject {
    fn from(e: Error) -> Self {
        if let Error::Removed { message, members } = e {
            let members = members
                .into_iter()
                .map(|(id, peer_addr, http_addr)| json!({"id": id, "peer_addr": peer_addr, "http_addr": http_addr}))
                .collect();
            return Reject::new(StatusCode::GONE, message).with_members(Value::Array(members));
        }
        let status = match &e {
            Error::Removed { .. } => StatusCode::GONE,
            Error::Unavailable(_) | Error::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            Error::InvalidInput(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Storage(_) | Error::Config(_) | Error::Protocol(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Reject::new(status, e.to_string())
    }
}

impl ResponseError for Reject {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        let mut body = json!({"error": self.message, "code": self.status.as_u16()});
        if let (Some(members), Value::Object(m)) = (&self.members, &mut body) {
            m.insert("members".into(), members.clone());
        }
        res.json(body)
    }
}

pub(crate) type Answer = Result<HttpResponse, Reject>;

/// Registers every route. Needs `web::Data<HttpState>` as app data.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v3/kv/put").route(web::post().to(etcd_put)))
        .service(resource("/v3/kv/range").route(web::post().to(etcd_range)))
        .service(resource("/v3/kv/deleterange").route(web::post().to(etcd_delete_range)))
        .service(resource("/v3/kv/txn").route(web::post().to(etcd_txn)))
        .service(
            resource("/v1/kv/{key:.+}")
                .route(web::get().to(plain_get))
                .route(web::put().to(plain_put))
                .route(web::delete().to(plain_delete)),
        )
        .service(resource("/v1/cas/{key:.+}").route(web::post().to(plain_cas)))
        .service(resource("/status").route(web::get().to(status)))
        .service(resource("/health").route(web::get().to(health)))
        .service(resource("/metrics").route(web::get().to(metrics)))
        .configure(lock_routes::configure)
        .configure(members::configure)
        .default_service(web::to(not_found));
}

pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> Answer {
    Err(Reject::new(
        StatusCode::NOT_FOUND,
        format!("no endpoint {} {}", req.method(), req.path()),
    ))
}

async fn method_not_allowed(req: HttpRequest) -> Answer {
    Err(Reject::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

/// Reads the body, refusing (413) more than `max_body_bytes`.
async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::Bytes, Reject> {
    let too_big = |size: String| {
        Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is {size} bytes, more than max_body_bytes = {limit}"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(too_big(len.to_string()));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Reject::bad(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_big(format!("over {limit}")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

pub(crate) async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    st: &HttpState,
) -> Result<Map<String, Value>, Reject> {
    let body = read_body(req, payload, st.max_body_bytes).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(Reject::bad(format!(
            "bad JSON: expected an object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(Reject::bad(format!("bad JSON: {e}"))),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs a command through the log, timing it for the latency histogram.
async fn submit(st: &HttpState, cmd: KvCommand) -> Result<KvReply, Reject> {
    timed(st, st.node.submit(ServiceCommand::Kv(cmd))).await
}

/// A linearizable read that does not write the log (read index; see [`NodeHandle::read`]).
async fn read_linearizable(st: &HttpState, cmd: KvCommand) -> Result<KvReply, Reject> {
    timed(st, st.node.read(ServiceCommand::Kv(cmd))).await
}

/// Awaits a key-value request, recording its latency or its failure in the metrics.
async fn timed(st: &HttpState, request: impl Future<Output = crate::Result<ServiceReply>>) -> Result<KvReply, Reject> {
    let started = Instant::now();
    match request.await {
        Ok(reply) => {
            st.metrics.observe(started.elapsed());
            kv_reply(reply)
        }
        Err(e) => {
            st.metrics.failures.fetch_add(1, Ordering::Relaxed);
            Err(e.into())
        }
    }
}

fn kv_reply(reply: ServiceReply) -> Result<KvReply, Reject> {
    match reply {
        ServiceReply::Kv(reply) => Ok(reply),
        ServiceReply::Lock(_) => Err(Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a key-value request got a lock reply",
        )),
    }
}

/// Answers a read-only key-value command from this node's state (possibly stale).
async fn read_local(st: &HttpState, cmd: KvCommand) -> Result<KvReply, Reject> {
    kv_reply(st.node.read_local(ServiceCommand::Kv(cmd)).await?)
}

// ---------------------------------------------------------------------------------
// Reading etcd JSON requests.

const B64_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One JSON object of a request, with its place in the request for messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

/// Whether `name` is the camelCase form of the snake_case `snake` (`prevKv` of
/// `prev_kv`): etcd's gateway takes both. Compared in place, nothing allocated: every
/// request looks up its optional fields this way.
fn is_camel_of(snake: &str, name: &str) -> bool {
    let mut name = name.bytes();
    let mut upper = false;
    for c in snake.bytes() {
        if c == b'_' {
            upper = true;
            continue;
        }
        let want = if upper { c.to_ascii_uppercase() } else { c };
        upper = false;
        if name.next() != Some(want) {
            return false;
        }
    }
    name.next().is_none()
}

impl<'a> Obj<'a> {
    fn new(map: &'a Map<String, Value>, at: impl Into<String>) -> Self {
        Obj { map, at: at.into() }
    }

    fn path(&self, name: &str) -> String {
        if self.at.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.at)
        }
    }

    /// Refuses fields this API does not know (so an unsupported option is not ignored).
    fn only(&self, known: &[&str]) -> Result<(), Reject> {
        for k in self.map.keys() {
            if !known.iter().any(|n| n == k || is_camel_of(n, k)) {
                return Err(Reject::bad(format!(
                    "unknown or unsupported field `{}` (known: {})",
                    self.path(k),
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map
            .get(name)
            .or_else(|| {
                let camel = name
                    .contains('_')
                    .then(|| self.map.iter().find(|(k, _)| is_camel_of(name, k)));
                camel.flatten().map(|(_, v)| v)
            })
            .filter(|v| !v.is_null())
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>, Reject> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => B64_STD.decode(s).or_else(|_| B64_URL.decode(s)).map_err(|e| {
                Reject::bad(format!(
                    "bad base64 in `{}`: {e} (keys and values are base64, e.g. \"Zm9v\" for foo)",
                    self.path(name)
                ))
            }),
            Some(v) => Err(Reject::bad(format!(
                "`{}` must be a base64 string, not {}",
                self.path(name),
                kind(v)
            ))),
        }
    }

    fn key(&self) -> Result<Vec<u8>, Reject> {
        let key = self.bytes("key")?;
        if key.is_empty() {
            return Err(Reject::bad(format!("missing key: `{}` is required", self.path("key"))));
        }
        Ok(key)
    }

    /// A non-negative 64-bit integer, given as a JSON string or number.
    fn uint(&self, name: &str) -> Result<u64, Reject> {
        let wrong = |what: String| Reject::bad(format!("`{}` {what}", self.path(name)));
        let n: i64 = match self.get(name) {
            None => 0,
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| wrong(format!("must be a 64-bit integer, not {n}")))?,
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_err(|_| wrong(format!("must be an integer (as a string), not {s:?}")))?,
            Some(v) => return Err(wrong(format!("must be an integer, not {}", kind(v)))),
        };
        u64::try_from(n).map_err(|_| wrong(format!("must not be negative ({n})")))
    }

    fn flag(&self, name: &str) -> Result<bool, Reject> {
        match self.get(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(Reject::bad(format!(
                "`{}` must be true or false, not {}",
                self.path(name),
                kind(v)
            ))),
        }
    }

    fn object(&self, name: &str) -> Result<Option<Obj<'a>>, Reject> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Obj::new(m, self.path(name)))),
            Some(v) => Err(Reject::bad(format!(
                "`{}` must be an object, not {}",
                self.path(name),
                kind(v)
            ))),
        }
    }

    fn list(&self, name: &str) -> Result<Vec<Obj<'a>>, Reject> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(Obj::new(m, format!("{}[{i}]", self.path(name)))),
                    other => Err(Reject::bad(format!(
                        "`{}[{i}]` must be an object, not {}",
                        self.path(name),
                        kind(other)
                    ))),
                })
                .collect(),
            Some(v) => Err(Reject::bad(format!(
                "`{}` must be a list, not {}",
                self.path(name),
                kind(v)
            ))),
        }
    }

    /// An etcd enum, by name or number.
    fn choice(&self, name: &str, names: &[&str]) -> Result<usize, Reject> {
        let pick = match self.get(name) {
            None => Some(0),
            Some(Value::String(s)) => names.iter().position(|n| n == s),
            Some(Value::Number(n)) => n.as_u64().map(|n| n as usize).filter(|n| *n < names.len()),
            Some(_) => None,
        };
        pick.ok_or_else(|| Reject::bad(format!("`{}` must be one of {}", self.path(name), names.join(", "))))
    }

    /// A field that must keep its zero value (an etcd option this API does not offer).
    fn unsupported(&self, name: &str, why: &str) -> Result<(), Reject> {
        let set = match self.get(name) {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Number(n)) => n.as_i64() != Some(0),
            Some(Value::String(s)) => !(s.is_empty() || s == "0"),
            Some(_) => true,
        };
        if set {
            return Err(Reject::bad(format!("`{}` is not supported: {why}", self.path(name))));
        }
        Ok(())
    }
}

/// How to render the answer to one operation (what the request asked to see).
enum View {
    Range { keys_only: bool, count_only: bool },
    Put { prev_kv: bool },
    Delete { prev_kv: bool },
    Txn { success: Vec<View>, failure: Vec<View> },
}

struct RangeReq {
    cmd: KvCommand,
    view: View,
    serializable: bool,
}

fn parse_range(o: &Obj) -> Result<RangeReq, Reject> {
    o.only(&[
        "key",
        "range_end",
        "limit",
        "revision",
        "serializable",
        "keys_only",
        "count_only",
        "sort_order",
        "sort_target",
    ])?;
    o.unsupported("revision", "historical reads are not kept")?;
    o.unsupported("sort_order", "keys come in key order")?;
    o.unsupported("sort_target", "keys come in key order")?;
    Ok(RangeReq {
        cmd: KvCommand::Range {
            key: o.key()?,
            range_end: o.bytes("range_end")?,
            limit: o.uint("limit")?,
        },
        view: View::Range {
            keys_only: o.flag("keys_only")?,
            count_only: o.flag("count_only")?,
        },
        serializable: o.flag("serializable")?,
    })
}

fn parse_put(o: &Obj) -> Result<(KvCommand, View), Reject> {
    o.only(&["key", "value", "prev_kv", "lease", "ignore_value", "ignore_lease"])?;
    o.unsupported("lease", "there are no leases")?;
    o.unsupported("ignore_value", "give the value")?;
    o.unsupported("ignore_lease", "there are no leases")?;
    Ok((
        KvCommand::Put {
            key: o.key()?,
            value: o.bytes("value")?,
        },
        View::Put {
            prev_kv: o.flag("prev_kv")?,
        },
    ))
}

fn parse_delete(o: &Obj) -> Result<(KvCommand, View), Reject> {
    o.only(&["key", "range_end", "prev_kv"])?;
    Ok((
        KvCommand::Delete {
            key: o.key()?,
            range_end: o.bytes("range_end")?,
        },
        View::Delete {
            prev_kv: o.flag("prev_kv")?,
        },
    ))
}

fn parse_compare(o: &Obj) -> Result<Compare, Reject> {
    o.only(&[
        "result",
        "target",
        "key",
        "version",
        "create_revision",
        "mod_revision",
        "value",
        "range_end",
        "lease",
    ])?;
    o.unsupported("range_end", "compare one key at a time")?;
    let op = match o.choice("result", &["EQUAL", "GREATER", "LESS", "NOT_EQUAL"])? {
        0 => CompareOp::Equal,
        1 => CompareOp::Greater,
        2 => CompareOp::Less,
        _ => CompareOp::NotEqual,
    };
    let target = match o.choice("target", &["VERSION", "CREATE", "MOD", "VALUE", "LEASE"])? {
        0 => CompareTarget::Version(o.uint("version")?),
        1 => CompareTarget::CreateRevision(o.uint("create_revision")?),
        2 => CompareTarget::ModRevision(o.uint("mod_revision")?),
        3 => CompareTarget::Value(o.bytes("value")?),
        _ => {
            return Err(Reject::bad(format!(
                "`{}` LEASE is not supported: there are no leases",
                o.path("target")
            )));
        }
    };
    Ok(Compare {
        key: o.key()?,
        op,
        target,
    })
}

/// One `RequestOp`: exactly one of `request_range`, `request_put`,
/// `request_delete_range`, `request_txn`.
fn parse_op(o: &Obj) -> Result<(KvCommand, View), Reject> {
    const KINDS: [&str; 4] = ["request_range", "request_put", "request_delete_range", "request_txn"];
    o.only(&KINDS)?;
    let given: Vec<&str> = KINDS.iter().copied().filter(|k| o.get(k).is_some()).collect();
    if given.len() != 1 {
        return Err(Reject::bad(format!(
            "`{}` must hold exactly one of {} (found {})",
            o.at,
            KINDS.join(", "),
            given.len()
        )));
    }
    let inner = o
        .object(given[0])?
        .ok_or_else(|| Reject::bad(format!("`{}` is empty", o.at)))?;
    match given[0] {
        "request_range" => {
            let r = parse_range(&inner)?;
            if r.serializable {
                return Err(Reject::bad(format!(
                    "`{}`: a range inside a txn cannot be serializable",
                    inner.at
                )));
            }
            Ok((r.cmd, r.view))
        }
        "request_put" => parse_put(&inner),
        "request_delete_range" => parse_delete(&inner),
        _ => parse_txn(&inner),
    }
}

fn parse_txn(o: &Obj) -> Result<(KvCommand, View), Reject> {
    o.only(&["compare", "success", "failure"])?;
    let compare = o
        .list("compare")?
        .iter()
        .map(parse_compare)
        .collect::<Result<Vec<_>, _>>()?;
    let (success, success_views): (Vec<_>, Vec<_>) = o
        .list("success")?
        .iter()
        .map(parse_op)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let (failure, failure_views): (Vec<_>, Vec<_>) = o
        .list("failure")?
        .iter()
        .map(parse_op)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    Ok((
        KvCommand::Txn {
            compare,
            success,
            failure,
        },
        View::Txn {
            success: success_views,
            failure: failure_views,
        },
    ))
}

// ---------------------------------------------------------------------------------
// Writing etcd JSON answers.

/// Sets `name` unless the value is zero (etcd's gateway leaves zero values out).
fn put_u64(m: &mut Map<String, Value>, name: &str, v: u64) {
    if v != 0 {
        m.insert(name.into(), Value::String(v.to_string()));
    }
}

fn kv_json(kv: &KeyValue, keys_only: bool) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::String(b64(&kv.key)));
    put_u64(&mut m, "create_revision", kv.create_revision);
    put_u64(&mut m, "mod_revision", kv.mod_revision);
    put_u64(&mut m, "version", kv.version);
    if !keys_only && !kv.value.is_empty() {
        m.insert("value".into(), Value::String(b64(&kv.value)));
    }
    Value::Object(m)
}

pub(crate) async fn header(st: &HttpState, revision: u64) -> Value {
    let term = st.node.term();
    let mut m = Map::new();
    put_u64(&mut m, "cluster_id", st.cluster_hash());
    put_u64(&mut m, "member_id", st.node.id());
    put_u64(&mut m, "revision", revision);
    put_u64(&mut m, "raft_term", term);
    Value::Object(m)
}

fn inner_header(revision: u64) -> Value {
    let mut m = Map::new();
    put_u64(&mut m, "revision", revision);
    Value::Object(m)
}

/// The body of one answer (without its header), as the request's view asks.
fn render(view: &View, result: &KvResult) -> Result<Map<String, Value>, Reject> {
    let mut m = Map::new();
    match (view, result) {
        (View::Range { keys_only, count_only }, KvResult::Range { kvs, count, more }) => {
            if !count_only && !kvs.is_empty() {
                m.insert(
                    "kvs".into(),
                    Value::Array(kvs.iter().map(|kv| kv_json(kv, *keys_only)).collect()),
                );
            }
            if *more {
                m.insert("more".into(), Value::Bool(true));
            }
            put_u64(&mut m, "count", *count);
        }
        (View::Put { prev_kv }, KvResult::Put { prev }) => {
            if let (true, Some(prev)) = (prev_kv, prev) {
                m.insert("prev_kv".into(), kv_json(prev, false));
            }
        }
        (View::Delete { prev_kv }, KvResult::Delete { deleted }) => {
            put_u64(&mut m, "deleted", deleted.len() as u64);
            if *prev_kv && !deleted.is_empty() {
                m.insert(
                    "prev_kvs".into(),
                    Value::Array(deleted.iter().map(|kv| kv_json(kv, false)).collect()),
                );
            }
        }
        (
            View::Txn { success, failure },
            KvResult::Txn {
                succeeded,
                results,
                revisions,
            },
        ) => {
            if *succeeded {
                m.insert("succeeded".into(), Value::Bool(true));
            }
            let views = if *succeeded { success } else { failure };
            let mut responses = Vec::new();
            for ((view, result), &at) in views.iter().zip(results).zip(revisions) {
                let mut body = render(view, result)?;
                body.insert("header".into(), inner_header(at));
                let name = match view {
                    View::Range { .. } => "response_range",
                    View::Put { .. } => "response_put",
                    View::Delete { .. } => "response_delete_range",
                    View::Txn { .. } => "response_txn",
                };
                responses.push(json!({ name: body }));
            }
            if !responses.is_empty() {
                m.insert("responses".into(), Value::Array(responses));
            }
        }
        _ => {
            return Err(Reject::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store answered with a result of another kind than asked",
            ));
        }
    }
    Ok(m)
}

async fn etcd_answer(st: &HttpState, view: &View, reply: &KvReply) -> Answer {
    let mut body = render(view, &reply.result)?;
    body.insert("header".into(), header(st, reply.revision).await);
    Ok(HttpResponse::Ok().json(Value::Object(body)))
}

async fn etcd_put(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let m = read_json(&req, payload, &st).await?;
    let (cmd, view) = parse_put(&Obj::new(&m, ""))?;
    let reply = submit(&st, cmd).await?;
    etcd_answer(&st, &view, &reply).await
}

async fn etcd_range(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let m = read_json(&req, payload, &st).await?;
    let r = parse_range(&Obj::new(&m, ""))?;
    let reply = if r.serializable {
        read_local(&st, r.cmd).await?
    } else {
        read_linearizable(&st, r.cmd).await?
    };
    etcd_answer(&st, &r.view, &reply).await
}

async fn etcd_delete_range(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let m = read_json(&req, payload, &st).await?;
    let (cmd, view) = parse_delete(&Obj::new(&m, ""))?;
    let reply = submit(&st, cmd).await?;
    etcd_answer(&st, &view, &reply).await
}

async fn etcd_txn(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let m = read_json(&req, payload, &st).await?;
    let (cmd, view) = parse_txn(&Obj::new(&m, ""))?;
    let reply = submit(&st, cmd).await?;
    etcd_answer(&st, &view, &reply).await
}

// ---------------------------------------------------------------------------------
// The plain API.

fn path_key(req: &HttpRequest) -> Result<Vec<u8>, Reject> {
    let key = req.match_info().query("key");
    if key.is_empty() {
        return Err(Reject::bad("missing key in the path"));
    }
    Ok(key.as_bytes().to_vec())
}

/// `?stale=true|false` (also 1/0); anything else is refused.
fn stale(req: &HttpRequest) -> Result<bool, Reject> {
    let mut stale = false;
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, "true"));
        match (name, value) {
            ("stale", "true" | "1" | "") => stale = true,
            ("stale", "false" | "0") => stale = false,
            ("stale", other) => return Err(Reject::bad(format!("`stale` must be true or false, not {other:?}"))),
            (other, _) => return Err(Reject::bad(format!("unknown query parameter `{other}` (known: stale)"))),
        }
    }
    Ok(stale)
}

fn revision_header(res: &mut actix_web::HttpResponseBuilder, name: &'static str, v: u64) {
    res.insert_header((name, v.to_string()));
}

async fn plain_get(st: web::Data<HttpState>, req: HttpRequest) -> Answer {
    let key = path_key(&req)?;
    let cmd = KvCommand::get(key.clone());
    let reply = if stale(&req)? {
        read_local(&st, cmd).await?
    } else {
        read_linearizable(&st, cmd).await?
    };
    let KvResult::Range { kvs, .. } = &reply.result else {
        return Err(Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a get answered something else than a range",
        ));
    };
    let Some(kv) = kvs.first() else {
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("key not found: {}", String::from_utf8_lossy(&key)),
        ));
    };
    let mut res = HttpResponse::Ok();
    res.content_type("application/octet-stream");
    revision_header(&mut res, "X-Revision", reply.revision);
    revision_header(&mut res, "X-Mod-Revision", kv.mod_revision);
    revision_header(&mut res, "X-Version", kv.version);
    Ok(res.body(kv.value.clone()))
}

async fn plain_put(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let key = path_key(&req)?;
    if !req.query_string().is_empty() {
        return Err(Reject::bad(
            "PUT /v1/kv/{key} takes no query parameters (for compare-and-swap use POST /v1/cas/{key})",
        ));
    }
    let value = read_body(&req, payload, st.max_body_bytes).await?;
    let reply = submit(&st, KvCommand::put(key, value.to_vec())).await?;
    let created = matches!(reply.result, KvResult::Put { prev: None });
    Ok(HttpResponse::Ok().json(json!({"revision": reply.revision, "created": created})))
}

async fn plain_delete(st: web::Data<HttpState>, req: HttpRequest) -> Answer {
    let key = path_key(&req)?;
    let reply = submit(&st, KvCommand::delete(key.clone())).await?;
    match &reply.result {
        KvResult::Delete { deleted } if deleted.is_empty() => Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("key not found: {}", String::from_utf8_lossy(&key)),
        )),
        KvResult::Delete { deleted } => {
            Ok(HttpResponse::Ok().json(json!({"revision": reply.revision, "deleted": deleted.len()})))
        }
        _ => Err(Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a delete answered something else",
        )),
    }
}

/// `POST /v1/cas/{key}` with `{"expected": "old" | null, "new": "value"}` (UTF-8 text;
/// `null` means "only if the key is absent").
async fn plain_cas(st: web::Data<HttpState>, req: HttpRequest, payload: web::Payload) -> Answer {
    let key = path_key(&req)?;
    let m = read_json(&req, payload, &st).await?;
    if let Some(k) = m.keys().find(|k| *k != "expected" && *k != "new") {
        return Err(Reject::bad(format!("unknown field `{k}` (known: expected, new)")));
    }
    let expected = match m.get("expected") {
        None => {
            return Err(Reject::bad(
                "missing `expected` (the current value, or null for 'absent')",
            ));
        }
        Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(v) => {
            return Err(Reject::bad(format!(
                "`expected` must be a string or null, not {}",
                kind(v)
            )));
        }
    };
    let new = match m.get("new") {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        None => return Err(Reject::bad("missing `new` (the value to set)")),
        Some(v) => return Err(Reject::bad(format!("`new` must be a string, not {}", kind(v)))),
    };
    let reply = submit(&st, KvCommand::cas(key, expected, new)).await?;
    match reply.result {
        KvResult::Cas { succeeded: true, .. } => {
            Ok(HttpResponse::Ok().json(json!({"revision": reply.revision, "succeeded": true})))
        }
        KvResult::Cas { current, .. } => {
            let now = match current {
                Some(kv) => format!("the current value is {:?}", String::from_utf8_lossy(&kv.value)),
                None => "the key is absent".to_string(),
            };
            Err(Reject::new(StatusCode::CONFLICT, format!("compare failed: {now}")))
        }
        _ => Err(Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a cas answered something else",
        )),
    }
}

// ---------------------------------------------------------------------------------
// Status, health, metrics.

async fn status(st: web::Data<HttpState>) -> Answer {
    let s = st.node.status().await?;
    let mut v =
        serde_json::to_value(&s).map_err(|e| Reject::new(StatusCode::INTERNAL_SERVER_ERROR, format!("status: {e}")))?;
    if let Value::Object(m) = &mut v {
        m.insert("cluster".into(), Value::String(st.cluster_name()));
        m.insert("engine".into(), Value::String(st.node.engine().as_str().into()));
        m.insert("role".into(), Value::String(s.role()));
        m.insert("is_leader".into(), Value::Bool(s.is_leader()));
        m.insert("transport".into(), st.transport.as_ref().map_or(Value::Null, |t| t()));
    }
    Ok(HttpResponse::Ok().json(v))
}

/// Liveness: the node's actors answer. Says who leads, but a node without a leader
/// is still healthy (it may be electing one).
async fn health(st: web::Data<HttpState>) -> Answer {
    let s = st.node.status().await?;
    Ok(HttpResponse::Ok().json(json!({"status": "ok", "node_id": s.node_id(), "leader_id": s.leader_id()})))
}

/// Prometheus text exposition, written by hand.
struct Prom(String);

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: impl fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}=\"{}\"",
                        v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
                    )
                })
                .collect();
            self.0.push_str(&format!("{{{}}}", inner.join(",")));
        }
        self.0.push_str(&format!(" {value}\n"));
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family with one sample per value of the label `label`.
    fn labelled(&mut self, name: &str, kind: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        self.family(name, kind, help);
        for (v, value) in values {
            self.sample(name, &[(label, v.to_string())], value);
        }
    }
}

/// The Raft engine's counterparts of the roles' metrics.
fn raft_metrics(p: &mut Prom, s: &RaftStatus) {
    p.one("rolepax_raft_term", "gauge", "The current Raft term.", s.term);
    p.one(
        "rolepax_slots_decided_total",
        "counter",
        "Log entries known committed here (Raft's commit index).",
        s.committed.unwrap_or(0),
    );
    p.one(
        "rolepax_slots_applied",
        "gauge",
        "Log entries applied to the state machine.",
        s.applied,
    );
}

fn role_metrics(p: &mut Prom, s: &NodeStatus) {
    p.labelled(
        "rolepax_messages_handled_total",
        "counter",
        "Messages each role has handled.",
        "role",
        &[
            ("acceptor", s.acceptor.handled),
            ("proposer", s.proposer.handled),
            ("learner", s.learner.handled),
            ("elector", s.elector.handled),
        ],
    );
    p.labelled(
        "rolepax_messages_rejected_total",
        "counter",
        "Messages a role refused: acceptor requests below its promise, proposer preemptions.",
        "role",
        &[("acceptor", s.acceptor.rejected), ("proposer", s.proposer.preempted)],
    );
    p.one(
        "rolepax_slots_decided_total",
        "counter",
        "Slots this node's learner knows decided (its commit index).",
        s.learner.commit,
    );
    p.one(
        "rolepax_slots_applied",
        "gauge",
        "Slots applied to the state machine.",
        s.state_machine.applied,
    );
    p.one(
        "rolepax_learner_fetches_sent_total",
        "counter",
        "Fetches of missing slots sent.",
        s.learner.fetches_sent,
    );
    p.labelled(
        "rolepax_log_bytes",
        "gauge",
        "Bytes the log's segment files take on disk.",
        "log",
        &[("acceptor", s.acceptor.log_bytes), ("decided", s.learner.log_bytes)],
    );
    p.labelled(
        "rolepax_log_compacted_bytes_total",
        "counter",
        "Bytes the log gave back after durable snapshots.",
        "log",
        &[
            ("acceptor", s.acceptor.compacted_bytes),
            ("decided", s.learner.compacted_bytes),
        ],
    );
    p.labelled(
        "rolepax_snapshot_chunks_total",
        "counter",
        "Snapshot chunks received from lagging-node transfers, and sent to lagging peers.",
        "direction",
        &[
            ("received", s.learner.snapshot_chunks_received),
            ("sent", s.learner.snapshot_chunks_sent),
        ],
    );
    p.one(
        "rolepax_acceptor_flushes_total",
        "counter",
        "Durable flushes of the acceptor.",
        s.acceptor.flushes,
    );
    p.one(
        "rolepax_acceptor_flushed_replies_total",
        "counter",
        "Replies released by acceptor flushes (divide by flushes for the mean batch).",
        s.acceptor.flushed_replies,
    );
    p.one(
        "rolepax_acceptor_largest_batch",
        "gauge",
        "Most replies released by one flush.",
        s.acceptor.largest_batch,
    );
    p.one(
        "rolepax_acceptor_accepted_slots",
        "gauge",
        "Slots the acceptor holds a vote for.",
        s.acceptor.accepted_slots,
    );
    p.one(
        "rolepax_proposer_inflight",
        "gauge",
        "Accepts waiting for a quorum.",
        s.proposer.inflight,
    );
    p.one(
        "rolepax_proposer_batches_total",
        "counter",
        "Accept batches the proposer sent (batched values / batches = batch size).",
        s.proposer.batches,
    );
    p.one(
        "rolepax_proposer_batched_values_total",
        "counter",
        "Commands and no-ops carried by those batches.",
        s.proposer.batched_values,
    );
    p.one(
        "rolepax_proposer_queued",
        "gauge",
        "Commands waiting for a window.",
        s.proposer.queued,
    );
    p.one(
        "rolepax_state_machine_snapshots_total",
        "counter",
        "Snapshots persisted.",
        s.state_machine.snapshots,
    );
    p.one(
        "rolepax_state_machine_waiting_clients",
        "gauge",
        "Clients waiting for an answer.",
        s.state_machine.waiting_clients,
    );
    p.one(
        "rolepax_ballot_round",
        "gauge",
        "Round of the highest ballot seen.",
        s.elector.highest_ballot.round,
    );
    p.one(
        "rolepax_election_timeouts_total",
        "counter",
        "Election timeouts that fired here (each a pre-vote, or a campaign).",
        s.elector.timeouts,
    );
    p.one(
        "rolepax_leader_id",
        "gauge",
        "The leader this node believes in (0: none).",
        s.leader_id.unwrap_or(0),
    );
    let leading = s.leader_id == Some(s.node_id) && s.proposer.leading;
    p.one("rolepax_is_leader", "gauge", "1 if this node leads.", u8::from(leading));
}

fn latency_metrics(p: &mut Prom, m: &HttpMetrics) {
    let name = "rolepax_commit_latency_seconds";
    p.family(
        name,
        "histogram",
        "Time for a command through the log, measured by the HTTP layer.",
    );
    let mut cumulative = 0;
    for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += m.buckets[i].load(Ordering::Relaxed);
        p.sample(&format!("{name}_bucket"), &[("le", bound.to_string())], cumulative);
    }
    cumulative += m.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
    p.sample(&format!("{name}_bucket"), &[("le", "+Inf".to_string())], cumulative);
    p.sample(
        &format!("{name}_sum"),
        &[],
        m.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
    p.sample(&format!("{name}_count"), &[], cumulative);
    p.one(
        "rolepax_commit_failures_total",
        "counter",
        "Commands through the log that failed (timeout, shutdown, bad input).",
        m.failures.load(Ordering::Relaxed),
    );
}

fn metric_value(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(u8::from(*b).to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn transport_metrics(p: &mut Prom, t: &Value) {
    let Value::Object(top) = t else { return };
    for (k, v) in top {
        if let Some(value) = metric_value(v) {
            p.one(
                &format!("rolepax_transport_{k}_total"),
                "counter",
                "Transport counter.",
                value,
            );
        }
    }
    let Some(Value::Object(peers)) = top.get("peers") else {
        return;
    };
    let mut fields: Vec<&String> = peers
        .values()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys())
        .collect();
    fields.sort();
    fields.dedup();
    for field in fields {
        let gauge = peers.values().any(|p| p.get(field).is_some_and(Value::is_boolean));
        let name = if gauge {
            format!("rolepax_transport_peer_{field}")
        } else {
            format!("rolepax_transport_peer_{field}_total")
        };
        p.family(
            &name,
            if gauge { "gauge" } else { "counter" },
            "Transport counter per peer.",
        );
        for (peer, counters) in peers {
            if let Some(value) = counters.get(field).and_then(metric_value) {
                p.sample(&name, &[("peer", peer.clone())], value);
            }
        }
    }
}

async fn metrics(st: web::Data<HttpState>) -> Answer {
    let s = st.node.status().await?;
    let mut p = Prom(String::new());
    p.family("rolepax_node_info", "gauge", "This node's id and cluster.");
    p.sample(
        "rolepax_node_info",
        &[
            ("node_id", s.node_id().to_string()),
            ("cluster", st.cluster_name()),
            ("engine", st.node.engine().as_str().to_string()),
        ],
        1,
    );
    match &s {
        EngineStatus::Paxos(s) => role_metrics(&mut p, s),
        EngineStatus::Raft(s) => raft_metrics(&mut p, s),
    }
    p.one(
        "rolepax_log_fsyncs_total",
        "counter",
        "fdatasync calls made by this process's logs (either engine).",
        crate::storage::wal::fsyncs_total(),
    );
    latency_metrics(&mut p, &st.metrics);
    if let Some(t) = &st.transport {
        transport_metrics(&mut p, &t());
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(p.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_camel_case_aliases() {
        assert!(is_camel_of("prev_kv", "prevKv"));
        assert!(is_camel_of("request_delete_range", "requestDeleteRange"));
        assert!(is_camel_of("key", "key"));
        assert!(!is_camel_of("prev_kv", "prevkv"));
        assert!(!is_camel_of("prev_kv", "prevKvX"));
        assert!(!is_camel_of("prev_kv", "prevK"));
        assert!(!is_camel_of("prev_kv", "prev_kv"));
    }

    #[test]
    fn http_parse_txn_reports_field_path() {
        let body: Value = serde_json::from_str(
            r#"{"compare":[{"key":"Zm9v","target":"VALUE","value":"!!"}],"success":[{"requestPut":{"key":"Zm9v"}}]}"#,
        )
        .expect("json");
        let Value::Object(m) = body else { panic!("object") };
        let Err(e) = parse_txn(&Obj::new(&m, "")) else {
            panic!("bad base64 accepted")
        };
        assert!(e.message.contains("compare[0].value"), "{}", e.message);
    }

    #[test]
    fn http_latency_histogram_counts_into_buckets() {
        let m = HttpMetrics::default();
        m.observe(Duration::from_micros(500));
        m.observe(Duration::from_millis(40));
        m.observe(Duration::from_secs(60));
        let mut p = Prom(String::new());
        latency_metrics(&mut p, &m);
        assert!(
            p.0.contains("rolepax_commit_latency_seconds_bucket{le=\"0.001\"} 1\n"),
            "{}",
            p.0
        );
        assert!(
            p.0.contains("rolepax_commit_latency_seconds_bucket{le=\"0.05\"} 2\n"),
            "{}",
            p.0
        );
        assert!(
            p.0.contains("rolepax_commit_latency_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{}",
            p.0
        );
        assert!(p.0.contains("rolepax_commit_latency_seconds_count 3\n"), "{}", p.0);
    }
}
