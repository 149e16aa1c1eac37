//! # Settings of a process node
//!
//! One TOML file describes the whole cluster (every node's peer and HTTP address) and
//! the tuning every node shares; a process picks its own entry with `--id`. The file is
//! read with the `config` crate, then `ROLEPAX_`-prefixed environment variables
//! override top-level keys (`ROLEPAX_DATA_DIR=/srv/rp`, `ROLEPAX_ELECTION_MIN_MS=500`).
//!
//! ```toml
//! cluster_id = "local"
//! tick_ms = 10            # optional keys: see `Settings` for all of them
//!
//! [[nodes]]
//! id = 1
//! peer_addr = "127.0.0.1:7101"
//! http_addr = "127.0.0.1:7201"
//! ```
//!
//! Everything is checked before a node starts: a wrong setting is refused with an
//! [`Error::Config`] that names the key (and the file) and says what is wrong. Times are
//! given in milliseconds and turned into ticks of `tick_ms` for the role cores.
//!
//! **Membership.** `[[nodes]]` is the cluster's first configuration (id 0). Once a
//! membership change was applied, a node restarts from its data directory's `membership`
//! file instead, whatever `[[nodes]]` says. A node that joins a running cluster
//! (`rolepax-node --join`) needs no file: [`Settings::load_tuning`] reads only the
//! tuning keys (defaults without a file), its `[[nodes]]` (if any) are ignored, and
//! [`Settings::for_joining`] describes the node from its command line. Its cluster id is
//! the file's `cluster_id` if the file sets one (then a cluster of another id is
//! refused), else it is learned from the members.
//!
//! **Left out.** Host names (addresses must be `IP:port`), per-node tuning (only
//! `data_dir` may differ per node), environment overrides of `[[nodes]]` entries, and
//! reloading a changed file.

use crate::actors::node::NodeConfig;
use crate::error::{Error, Result};
use crate::messages::codec::message_budget;
use crate::messages::{Member, NodeId};
use crate::net::tcp::TcpConfig;
use crate::roles::bugs::PlantedBugs;
use crate::roles::state_machine::CompactPolicy;
use crate::storage::failpoint;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The prefix of environment variables that override top-level keys.
pub const ENV_PREFIX: &str = "ROLEPAX";

/// Top-level keys, `nodes` last (it cannot come from the environment).
const TOP_LEVEL_KEYS: &[&str] = &[
    "cluster_id",
    "engine",
    "data_dir",
    "tick_ms",
    "heartbeat_ms",
    "election_min_ms",
    "election_max_ms",
    "request_timeout_ms",
    "retry_interval_ms",
    "max_batch",
    "max_inflight",
    "thrifty",
    "pre_vote",
    "max_frame_bytes",
    "max_body_bytes",
    "snapshot_every",
    "compaction",
    "compact_every_slots",
    "compact_every_bytes",
    "log_level",
    "nodes",
];

/// `ROLEPAX_` environment variables that are not settings: the failpoint test hook
/// ([`crate::storage::failpoint`]).
const NOT_SETTINGS: &[&str] = &[failpoint::ENV, failpoint::DIR_ENV, PLANTED_BUGS_ENV];

/// One `[[nodes]]` entry as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: NodeId,
    peer_addr: String,
    http_addr: String,
    #[serde(default)]
    data_dir: Option<String>,
}

/// The file as written, before checks.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    /// `None`: not given (the default applies; a joining node learns the real one).
    #[serde(default)]
    cluster_id: Option<String>,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default = "defaults::data_dir")]
    data_dir: String,
    #[serde(default = "defaults::tick_ms")]
    tick_ms: u64,
    #[serde(default = "defaults::heartbeat_ms")]
    heartbeat_ms: u64,
    #[serde(default = "defaults::election_min_ms")]
    election_min_ms: u64,
    #[serde(default = "defaults::election_max_ms")]
    election_max_ms: u64,
    #[serde(default = "defaults::request_timeout_ms")]
    request_timeout_ms: u64,
    #[serde(default = "defaults::retry_interval_ms")]
    retry_interval_ms: u64,
    #[serde(default = "defaults::max_batch")]
    max_batch: usize,
    #[serde(default = "defaults::max_inflight")]
    max_inflight: usize,
    #[serde(default = "defaults::thrifty")]
    thrifty: bool,
    #[serde(default = "defaults::pre_vote")]
    pre_vote: bool,
    #[serde(default = "defaults::max_frame_bytes")]
    max_frame_bytes: usize,
    #[serde(default = "defaults::max_body_bytes")]
    max_body_bytes: usize,
    #[serde(default = "defaults::snapshot_every")]
    snapshot_every: u64,
    #[serde(default = "defaults::compaction")]
    compaction: bool,
    #[serde(default = "defaults::compact_every_slots")]
    compact_every_slots: u64,
    #[serde(default = "defaults::compact_every_bytes")]
    compact_every_bytes: u64,
    #[serde(default = "defaults::log_level")]
    log_level: String,
    #[serde(default = "defaults::engine")]
    engine: String,
}

/// Defaults of the optional keys (also listed in `config/local-3.toml`). Each is taken
/// from where the setting is used: a role's `Default`, [`NodeConfig`]'s constants, the
/// transport's; times in ticks are turned into milliseconds at the default tick.
pub mod defaults {
    use crate::actors::node::NodeConfig;
    use crate::messages::codec;
    use crate::net::tcp;
    use crate::roles::elector::ElectorConfig;
    use crate::roles::proposer::ProposerConfig;
    use std::time::Duration;

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }
    pub fn cluster_id() -> String {
        tcp::DEFAULT_CLUSTER_ID.into()
    }
    /// `{id}` is replaced by the node's id; relative to the working directory.
    pub fn data_dir() -> String {
        "data/node-{id}".into()
    }
    pub fn tick_ms() -> u64 {
        ms(NodeConfig::DEFAULT_TICK)
    }
    pub fn heartbeat_ms() -> u64 {
        ElectorConfig::default().heartbeat_ticks * tick_ms()
    }
    pub fn election_min_ms() -> u64 {
        ElectorConfig::default().election_min_ticks * tick_ms()
    }
    pub fn election_max_ms() -> u64 {
        ElectorConfig::default().election_max_ticks * tick_ms()
    }
    pub fn request_timeout_ms() -> u64 {
        ms(NodeConfig::DEFAULT_REQUEST_TIMEOUT)
    }
    pub fn retry_interval_ms() -> u64 {
        ms(NodeConfig::DEFAULT_RETRY_INTERVAL)
    }
    pub fn max_batch() -> usize {
        ProposerConfig::default().max_batch
    }
    pub fn max_inflight() -> usize {
        ProposerConfig::default().max_inflight
    }
    pub fn thrifty() -> bool {
        ProposerConfig::default().thrifty
    }
    pub fn pre_vote() -> bool {
        ElectorConfig::default().pre_vote
    }
    pub fn max_frame_bytes() -> usize {
        codec::DEFAULT_MAX_FRAME
    }
    /// A quarter of the default frame: well within a message's budget (half a frame),
    /// as `Settings` requires of every body size.
    pub fn max_body_bytes() -> usize {
        codec::message_budget(codec::DEFAULT_MAX_FRAME) / 2
    }
    pub fn snapshot_every() -> u64 {
        NodeConfig::DEFAULT_SNAPSHOT_EVERY
    }
    pub fn compaction() -> bool {
        NodeConfig::new(1, vec![1], "").compact.is_some()
    }
    pub fn compact_every_slots() -> u64 {
        NodeConfig::DEFAULT_COMPACT.every_slots
    }
    pub fn compact_every_bytes() -> u64 {
        NodeConfig::DEFAULT_COMPACT.every_bytes
    }
    pub fn engine() -> String {
        "paxos".into()
    }

    pub fn log_level() -> String {
        "info".into()
    }
}

/// One node of the cluster, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: NodeId,
    pub peer_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// A per-node data directory (overrides the top-level `data_dir`).
    pub data_dir: Option<String>,
}

/// The whole file, checked: every value is usable as is.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the settings came from (for messages).
    pub source: String,
    pub cluster_id: String,
    /// `cluster_id` was given (in the file or the environment), not defaulted.
    pub cluster_given: bool,
    pub nodes: BTreeMap<NodeId, NodeEntry>,
    pub data_dir: String,
    pub tick: Duration,
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    pub request_timeout: Duration,
    pub retry_interval: Duration,
    pub max_batch: usize,
    pub max_inflight: usize,
    pub thrifty: bool,
    pub pre_vote: bool,
    pub max_frame_bytes: usize,
    pub max_body_bytes: usize,
    pub snapshot_every: u64,
    /// Log compaction and its policy (`None`: off).
    pub compact: Option<CompactPolicy>,
    pub log_level: String,
    /// Which replication engine runs the applications (`engine = "paxos"` or `"raft"`).
    pub engine: Engine,
}

/// The replication engine a node runs: the project's Paxos roles (the default), or
/// Raft (openraft, [`crate::raft`]) for the side-by-side comparison. Every node of a
/// cluster must run the same one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    Paxos,
    Raft,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Paxos => "paxos",
            Engine::Raft => "raft",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "paxos" => Ok(Engine::Paxos),
            "raft" => Ok(Engine::Raft),
            _ => Err(format!("{s:?} is not an engine (paxos or raft)")),
        }
    }
}

/// What one process runs: the checked settings and its own node.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub settings: Settings,
    pub me: NodeEntry,
    pub data_dir: PathBuf,
    /// The node joins a running cluster (`--join`): it starts with no configuration
    /// (unless its data directory holds one), and `settings.nodes` are not used.
    pub join: bool,
    /// Test-only planted bugs (the binary sets them from [`PLANTED_BUGS_ENV`] in builds
    /// with the `planted-bugs` feature; never from the file).
    pub bugs: PlantedBugs,
}

/// Names planted bugs (comma-separated field names of [`PlantedBugs`]) for a node
/// process, in test builds: how the chaos tests show they catch a bug in a real process.
pub const PLANTED_BUGS_ENV: &str = "ROLEPAX_PLANTED_BUGS";

fn bad(source: &str, key: &str, problem: impl std::fmt::Display) -> Error {
    Error::Config(format!("{source}: `{key}`: {problem}"))
}

impl Settings {
    /// Reads `path` and overrides its top-level keys from `env` (pairs of variable name
    /// and value; only `ROLEPAX_*` names are used). Pass `std::env::vars()` in a binary.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let (source, raw) = Self::read(Some(path), env)?;
        Self::check(source, raw, true)
    }

    /// The tuning of a joining node: `path`'s keys (its `[[nodes]]`, if any, are not
    /// used), or the defaults without a file; `ROLEPAX_*` variables override either.
    pub fn load_tuning(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let (source, raw) = Self::read(path, env)?;
        Self::check(source, raw, false)
    }

    /// The file (none: every key at its default) with the environment's overrides.
    fn read(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<(String, RawSettings)> {
        let source = path.map_or("<defaults>".to_string(), |p| p.display().to_string());
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(Error::Config(format!(
                "{source}: no such configuration file (give an existing TOML file with --config)"
            )));
        }
        let prefix = format!("{ENV_PREFIX}_");
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix) && !NOT_SETTINGS.contains(&k.as_str()))
            .collect();
        for name in overrides.keys() {
            let key = name[prefix.len()..].to_ascii_lowercase();
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) || key == "nodes" {
                return Err(Error::Config(format!(
                    "environment variable {name}: `{key}` is not a top-level key that can be \
                     overridden (known: {})",
                    TOP_LEVEL_KEYS[..TOP_LEVEL_KEYS.len() - 1].join(", ")
                )));
            }
        }
        let builder = match path {
            Some(path) => {
                config::Config::builder().add_source(config::File::from(path).format(config::FileFormat::Toml))
            }
            None => config::Config::builder(),
        };
        let raw = builder
            .add_source(config::Environment::with_prefix(ENV_PREFIX).source(Some(overrides)))
            .build()
            .and_then(|c| c.try_deserialize::<RawSettings>())
            .map_err(|e| Error::Config(describe_config_error(&source, &e)))?;
        Ok((source, raw))
    }

    /// Parses TOML text (no environment), for tests and embedding.
    pub fn from_toml(text: &str) -> Result<Self> {
        let source = "<inline>".to_string();
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<RawSettings>())
            .map_err(|e| Error::Config(describe_config_error(&source, &e)))?;
        Self::check(source, raw, true)
    }

    /// Checks every value; `[[nodes]]` only if `with_nodes` (a joining node's are not
    /// used).
    fn check(source: String, mut raw: RawSettings, with_nodes: bool) -> Result<Self> {
        let s = source.as_str();
        let cluster_given = raw.cluster_id.is_some();
        let cluster_id = raw.cluster_id.take().unwrap_or_else(defaults::cluster_id);
        if cluster_id.trim().is_empty() {
            return Err(bad(s, "cluster_id", "must not be empty"));
        }
        if !with_nodes {
            raw.nodes.clear();
        }
        if raw.nodes.is_empty() && with_nodes {
            return Err(bad(
                s,
                "nodes",
                "no [[nodes]] entry: list every node with id, peer_addr and http_addr",
            ));
        }
        let mut nodes = BTreeMap::new();
        let mut addrs: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            if n.id == 0 {
                return Err(bad(s, &format!("nodes[{i}].id"), "must be at least 1"));
            }
            if nodes.contains_key(&n.id) {
                return Err(bad(
                    s,
                    &format!("nodes[{i}].id"),
                    format!("duplicate id {} (ids must be unique)", n.id),
                ));
            }
            let mut parse = |field: &str, text: &str| -> Result<SocketAddr> {
                let key = format!("nodes[{i}].{field}");
                let addr: SocketAddr = text
                    .trim()
                    .parse()
                    .map_err(|_| bad(s, &key, format!("{text:?} is not an address like \"127.0.0.1:7101\"")))?;
                // Port 0 (any free port) may repeat; a real port may not.
                if addr.port() != 0
                    && let Some(other) = addrs.insert(addr, key.clone())
                {
                    return Err(bad(s, &key, format!("address {addr} is already used by `{other}`")));
                }
                Ok(addr)
            };
            let peer_addr = parse("peer_addr", &n.peer_addr)?;
            let http_addr = parse("http_addr", &n.http_addr)?;
            if n.data_dir.as_ref().is_some_and(|d| d.trim().is_empty()) {
                return Err(bad(s, &format!("nodes[{i}].data_dir"), "must not be empty"));
            }
            nodes.insert(
                n.id,
                NodeEntry {
                    id: n.id,
                    peer_addr,
                    http_addr,
                    data_dir: n.data_dir.clone(),
                },
            );
        }
        if raw.data_dir.trim().is_empty() {
            return Err(bad(s, "data_dir", "must not be empty"));
        }
        if raw.tick_ms == 0 {
            return Err(bad(s, "tick_ms", "must be at least 1"));
        }
        for (key, v) in [
            ("heartbeat_ms", raw.heartbeat_ms),
            ("election_min_ms", raw.election_min_ms),
            ("election_max_ms", raw.election_max_ms),
        ] {
            if v < raw.tick_ms {
                return Err(bad(
                    s,
                    key,
                    format!("{v} is shorter than one tick (tick_ms = {})", raw.tick_ms),
                ));
            }
        }
        if raw.election_min_ms >= raw.election_max_ms {
            return Err(bad(
                s,
                "election_min_ms",
                format!(
                    "{} must be below election_max_ms ({})",
                    raw.election_min_ms, raw.election_max_ms
                ),
            ));
        }
        if raw.heartbeat_ms >= raw.election_min_ms {
            return Err(bad(
                s,
                "heartbeat_ms",
                format!(
                    "{} must be below election_min_ms ({}), or followers time out between heartbeats",
                    raw.heartbeat_ms, raw.election_min_ms
                ),
            ));
        }
        for (key, v) in [
            ("request_timeout_ms", raw.request_timeout_ms),
            ("retry_interval_ms", raw.retry_interval_ms),
            ("max_batch", raw.max_batch as u64),
            ("max_inflight", raw.max_inflight as u64),
            ("max_body_bytes", raw.max_body_bytes as u64),
        ] {
            if v == 0 {
                return Err(bad(s, key, "must be at least 1"));
            }
        }
        if cluster_id.len() > crate::net::tcp::MAX_CLUSTER_ID_LEN {
            return Err(bad(
                s,
                "cluster_id",
                format!(
                    "is {} bytes, at most {} allowed",
                    cluster_id.len(),
                    crate::net::tcp::MAX_CLUSTER_ID_LEN
                ),
            ));
        }
        if raw.max_frame_bytes > crate::messages::codec::DECODE_LIMIT {
            return Err(bad(
                s,
                "max_frame_bytes",
                format!(
                    "{} is more than the decoder accepts ({})",
                    raw.max_frame_bytes,
                    crate::messages::codec::DECODE_LIMIT
                ),
            ));
        }
        if raw.compaction && (raw.compact_every_slots == 0 || raw.compact_every_bytes < 1024) {
            return Err(bad(
                s,
                if raw.compact_every_slots == 0 {
                    "compact_every_slots"
                } else {
                    "compact_every_bytes"
                },
                "must be at least 1 slot and 1024 bytes (or set compaction = false to keep the logs whole)",
            ));
        }
        if raw.max_frame_bytes < 1024 {
            return Err(bad(
                s,
                "max_frame_bytes",
                format!("{} is too small (at least 1024)", raw.max_frame_bytes),
            ));
        }
        // One request of the largest body must fit in an Accept, a Decide and a Fetched
        // with room to spare; otherwise it could never be replicated and would wedge the log.
        if raw.max_body_bytes > message_budget(raw.max_frame_bytes) {
            return Err(bad(
                s,
                "max_body_bytes",
                format!(
                    "{} must be at most half of max_frame_bytes ({}), so that a command always fits a peer frame",
                    raw.max_body_bytes, raw.max_frame_bytes
                ),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log_level) {
            return Err(bad(
                s,
                "log_level",
                format!("{:?} is not a level or filter: {e}", raw.log_level),
            ));
        }
        let engine: Engine = raw.engine.parse().map_err(|e| bad(s, "engine", e))?;
        let ms = Duration::from_millis;
        Ok(Settings {
            source,
            cluster_id,
            cluster_given,
            nodes,
            data_dir: raw.data_dir,
            tick: ms(raw.tick_ms),
            heartbeat: ms(raw.heartbeat_ms),
            election_min: ms(raw.election_min_ms),
            election_max: ms(raw.election_max_ms),
            request_timeout: ms(raw.request_timeout_ms),
            retry_interval: ms(raw.retry_interval_ms),
            max_batch: raw.max_batch,
            max_inflight: raw.max_inflight,
            thrifty: raw.thrifty,
            pre_vote: raw.pre_vote,
            max_frame_bytes: raw.max_frame_bytes,
            max_body_bytes: raw.max_body_bytes,
            snapshot_every: raw.snapshot_every,
            compact: raw.compaction.then_some(CompactPolicy {
                every_slots: raw.compact_every_slots,
                every_bytes: raw.compact_every_bytes,
            }),
            log_level: raw.log_level,
            engine,
        })
    }

    /// Picks node `id` (from `--id`); `data_dir` (from `--data-dir`) overrides the file.
    pub fn for_node(&self, id: NodeId, data_dir: Option<PathBuf>) -> Result<NodeSettings> {
        let me = self.nodes.get(&id).cloned().ok_or_else(|| {
            let known: Vec<String> = self.nodes.keys().map(|k| k.to_string()).collect();
            bad(
                &self.source,
                "id",
                format!("no [[nodes]] entry has id {id} (known ids: {})", known.join(", ")),
            )
        })?;
        let data_dir = data_dir.unwrap_or_else(|| {
            let pattern = me.data_dir.as_deref().unwrap_or(&self.data_dir);
            PathBuf::from(pattern.replace("{id}", &id.to_string()))
        });
        Ok(NodeSettings {
            settings: self.clone(),
            me,
            data_dir,
            join: false,
            bugs: PlantedBugs::default(),
        })
    }

    /// A node that joins a running cluster (`--join`), described by its command line:
    /// `id` and its addresses; `data_dir` (else the file's pattern for `id`).
    pub fn for_joining(
        &self,
        id: NodeId,
        peer_addr: SocketAddr,
        http_addr: SocketAddr,
        data_dir: Option<PathBuf>,
    ) -> Result<NodeSettings> {
        if id == 0 {
            return Err(bad(&self.source, "id", "must be at least 1"));
        }
        if peer_addr == http_addr {
            return Err(bad(
                &self.source,
                "peer_addr",
                format!("{peer_addr} is the http_addr too: a node needs two ports"),
            ));
        }
        let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(self.data_dir.replace("{id}", &id.to_string())));
        Ok(NodeSettings {
            settings: self.clone(),
            me: NodeEntry {
                id,
                peer_addr,
                http_addr,
                data_dir: None,
            },
            data_dir,
            join: true,
            bugs: PlantedBugs::default(),
        })
    }

    /// A number of ticks covering `d` (at least one).
    fn ticks(&self, d: Duration) -> u64 {
        let tick = self.tick.as_millis().max(1);
        (d.as_millis().div_ceil(tick) as u64).max(1)
    }
}

impl NodeSettings {
    pub fn id(&self) -> NodeId {
        self.me.id
    }

    /// The other nodes' peer addresses (none for a joining node: it learns them).
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        if self.join {
            return BTreeMap::new();
        }
        self.settings
            .nodes
            .values()
            .filter(|n| n.id != self.me.id)
            .map(|n| (n.id, n.peer_addr))
            .collect()
    }

    /// The cluster id this node knows before it starts: the settings', unless it joins
    /// and none was given (then empty: it learns it from a member).
    pub fn known_cluster_id(&self) -> String {
        if self.join && !self.settings.cluster_given {
            String::new()
        } else {
            self.settings.cluster_id.clone()
        }
    }

    /// Every node's HTTP address (for clients and `/status`).
    pub fn http_addrs(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.settings.nodes.values().map(|n| (n.id, n.http_addr)).collect()
    }

    /// The node's transport settings (queue, backoff and handshake keep their defaults;
    /// nodes that are not peers yet are accepted: the membership may change).
    pub fn tcp_config(&self) -> TcpConfig {
        let mut cfg = TcpConfig::new(self.me.id, self.me.peer_addr, self.peers());
        cfg.cluster_id = self.known_cluster_id();
        cfg.max_frame = self.settings.max_frame_bytes;
        cfg.accept_unknown = true;
        cfg
    }

    /// The node's Paxos settings.
    pub fn node_config(&self) -> NodeConfig {
        let s = &self.settings;
        let nodes = if self.join {
            Vec::new()
        } else {
            s.nodes.keys().copied().collect()
        };
        let mut cfg = NodeConfig::new(self.me.id, nodes, self.data_dir.clone());
        let member = |n: &NodeEntry| Member {
            peer_addr: n.peer_addr.to_string(),
            http_addr: n.http_addr.to_string(),
        };
        cfg.addresses = if self.join {
            [(self.me.id, member(&self.me))].into_iter().collect()
        } else {
            s.nodes.values().map(|n| (n.id, member(n))).collect()
        };
        cfg.cluster = self.known_cluster_id();
        cfg.join = self.join;
        cfg.tick = s.tick;
        cfg.elector.heartbeat_ticks = s.ticks(s.heartbeat);
        cfg.elector.election_min_ticks = s.ticks(s.election_min);
        cfg.elector.election_max_ticks = s.ticks(s.election_max).max(cfg.elector.election_min_ticks + 1);
        cfg.elector.step_down_ticks = cfg.elector.election_max_ticks;
        cfg.elector.pre_vote = s.pre_vote;
        cfg.proposer.max_batch = s.max_batch;
        cfg.proposer.max_inflight = s.max_inflight;
        cfg.proposer.thrifty = s.thrifty;
        // Batches, promises (see `Node::start`) and catch-up answers stay within half a
        // frame (a single command may be up to max_body_bytes, itself at most half a frame).
        cfg.proposer.max_batch_bytes = message_budget(s.max_frame_bytes);
        cfg.learner.max_fetch_bytes = message_budget(s.max_frame_bytes);
        cfg.request_timeout = s.request_timeout;
        cfg.retry_interval = s.retry_interval;
        cfg.snapshot_every = s.snapshot_every;
        cfg.compact = s.compact;
        cfg.bugs = self.bugs;
        cfg.learner.snapshot_chunk_bytes = crate::roles::learner::default_chunk_bytes(s.max_frame_bytes);
        cfg
    }

    /// The settings of a Raft node (`engine = "raft"`): the same timing keys, read as
    /// Raft reads them (heartbeat interval, randomized election timeout range).
    pub fn raft_config(&self) -> crate::raft::RaftConfig {
        let s = &self.settings;
        let paxos = self.node_config();
        crate::raft::RaftConfig {
            id: self.me.id,
            nodes: s.nodes.keys().copied().collect(),
            data_dir: self.data_dir.clone(),
            heartbeat: s.heartbeat,
            election_min: s.election_min,
            election_max: s.election_max,
            request_timeout: s.request_timeout,
            snapshot_every: match s.compact {
                Some(policy) => policy.every_slots.min(s.snapshot_every.max(1)),
                None => s.snapshot_every,
            },
            clock_interval: paxos.clock_interval,
            clock_margin: paxos.clock_margin,
            max_message_bytes: message_budget(s.max_frame_bytes),
            bugs: paxos.bugs,
        }
    }
}

/// Turns a `config` crate error into a message naming the file and the key.
fn describe_config_error(source: &str, e: &config::ConfigError) -> String {
    let text = e.to_string();
    if text.contains("unknown field") {
        format!("{source}: {text} (misspelled key?)")
    } else if text.contains("TOML parse error") {
        format!("{source}: not valid TOML: {text}")
    } else {
        format!("{source}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster_id = "t"
[[nodes]]
id = 1
peer_addr = "127.0.0.1:7101"
http_addr = "127.0.0.1:7201"
[[nodes]]
id = 2
peer_addr = "127.0.0.1:7102"
http_addr = "127.0.0.1:7202"
[[nodes]]
id = 3
peer_addr = "127.0.0.1:7103"
http_addr = "127.0.0.1:7203"
"#;

    fn err(text: &str) -> String {
        match Settings::from_toml(text) {
            Ok(_) => panic!("accepted a bad config:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn config_good_file_converts_to_node_config() {
        let s = Settings::from_toml(GOOD).expect("good config");
        let n = s.for_node(2, None).expect("node 2");
        assert_eq!(n.data_dir, PathBuf::from("data/node-2"));
        assert_eq!(n.peers().keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        let cfg = n.node_config();
        assert_eq!(cfg.nodes, vec![1, 2, 3]);
        assert_eq!(cfg.elector.election_min_ticks, 30);
        assert_eq!(cfg.elector.election_max_ticks, 60);
        assert_eq!(cfg.elector.heartbeat_ticks, 5);
        assert_eq!(cfg.tick, Duration::from_millis(10));
        let tcp = n.tcp_config();
        assert_eq!((tcp.id, tcp.cluster_id.as_str()), (2, "t"));
        assert_eq!(tcp.listen.port(), 7102);
        assert!(!tcp.peers.contains_key(&2));
    }

    #[test]
    fn config_without_tunables_yields_the_cores_defaults() {
        use crate::messages::codec;
        use crate::roles::acceptor::{DEFAULT_HOT_SLOTS, DEFAULT_MAX_PROMISE_BYTES};
        use crate::roles::elector::ElectorConfig;
        use crate::roles::proposer::ProposerConfig;
        let bare = GOOD.replace("cluster_id = \"t\"\n", "");
        let n = Settings::from_toml(&bare)
            .expect("no tunables")
            .for_node(1, None)
            .expect("node 1");
        let cfg = n.node_config();
        // Derived on purpose from other settings: the byte budgets of one message from
        // max_frame_bytes (the acceptor's promise budget is the proposer's batch budget,
        // in `Node::start`), the leader's step-down from the election timeout.
        let budget = message_budget(codec::DEFAULT_MAX_FRAME);
        assert_eq!(cfg.proposer.max_batch_bytes, budget);
        assert_eq!(cfg.learner.max_fetch_bytes, budget);
        assert_eq!(cfg.proposer.max_batch_bytes, DEFAULT_MAX_PROMISE_BYTES);
        assert_eq!(cfg.elector.step_down_ticks, cfg.elector.election_max_ticks);
        assert_eq!(cfg.acceptor_hot_slots, DEFAULT_HOT_SLOTS);
        // Everything else is the roles' and the node's own default (and the file's nodes).
        let mut core = NodeConfig::new(1, vec![1, 2, 3], "data/node-1");
        core.addresses = n
            .settings
            .nodes
            .values()
            .map(|e| {
                let member = Member {
                    peer_addr: e.peer_addr.to_string(),
                    http_addr: e.http_addr.to_string(),
                };
                (e.id, member)
            })
            .collect();
        core.cluster = defaults::cluster_id();
        let expected = NodeConfig {
            proposer: ProposerConfig {
                max_batch_bytes: budget,
                ..ProposerConfig::default()
            },
            elector: ElectorConfig {
                step_down_ticks: ElectorConfig::default().election_max_ticks,
                ..ElectorConfig::default()
            },
            ..core
        };
        assert_eq!(format!("{cfg:?}"), format!("{expected:?}"));
        let tcp = n.tcp_config();
        let default_tcp = TcpConfig {
            accept_unknown: true,
            ..TcpConfig::new(tcp.id, tcp.listen, tcp.peers.clone())
        };
        assert_eq!(format!("{tcp:?}"), format!("{default_tcp:?}"));
    }

    #[test]
    fn config_joining_node_needs_no_nodes_and_learns_the_cluster_id() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let bare = Settings::load_tuning(None, Vec::new()).expect("defaults");
        assert!(bare.nodes.is_empty() && !bare.cluster_given);
        let n = bare.for_joining(4, addr(7104), addr(7204), None).expect("joining");
        assert_eq!(n.data_dir, PathBuf::from("data/node-4"));
        assert!(n.peers().is_empty());
        let cfg = n.node_config();
        assert!(cfg.join && cfg.nodes.is_empty());
        assert_eq!(cfg.cluster, "", "learned from the members");
        assert_eq!(cfg.addresses[&4].http_addr, "127.0.0.1:7204");
        assert_eq!(n.tcp_config().cluster_id, "");
        assert!(
            bare.for_joining(4, addr(7104), addr(7104), None).is_err(),
            "one port for both"
        );

        // A file's tuning and cluster id count; its [[nodes]] do not.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, format!("tick_ms = 5\n{GOOD}")).expect("write");
        let s = Settings::load_tuning(Some(&path), Vec::new()).expect("tuning");
        assert!(s.nodes.is_empty() && s.cluster_given);
        let n = s
            .for_joining(4, addr(7104), addr(7204), Some(PathBuf::from("/d")))
            .expect("joining");
        assert_eq!(n.node_config().cluster, "t");
        assert_eq!(n.node_config().tick, Duration::from_millis(5));
        assert_eq!(n.data_dir, PathBuf::from("/d"));
    }

    #[test]
    fn config_unknown_id_names_id() {
        let s = Settings::from_toml(GOOD).expect("good config");
        let e = s.for_node(9, None).expect_err("no node 9").to_string();
        assert!(e.contains("`id`") && e.contains('9'), "{e}");
    }

    #[test]
    fn config_duplicates_are_refused() {
        let dup_id = GOOD.replace("id = 3", "id = 2");
        assert!(err(&dup_id).contains("nodes[2].id"), "{}", err(&dup_id));
        let dup_addr = GOOD.replace("127.0.0.1:7203", "127.0.0.1:7101");
        assert!(err(&dup_addr).contains("nodes[2].http_addr"), "{}", err(&dup_addr));
    }

    #[test]
    fn config_bad_values_name_their_key() {
        let cases = [
            (GOOD.replace("127.0.0.1:7102", "localhost"), "nodes[1].peer_addr"),
            (format!("tick_ms = 0\n{GOOD}"), "tick_ms"),
            (
                format!("election_min_ms = 600\nelection_max_ms = 600\n{GOOD}"),
                "election_min_ms",
            ),
            (format!("heartbeat_ms = 400\n{GOOD}"), "heartbeat_ms"),
            (format!("max_batch = 0\n{GOOD}"), "max_batch"),
            (format!("log_level = \"[[\"\n{GOOD}"), "log_level"),
            (format!("electon_min_ms = 5\n{GOOD}"), "electon_min_ms"),
            (format!("tick_ms = \"fast\"\n{GOOD}"), "tick_ms"),
            ("cluster_id = \"x\"".to_string(), "nodes"),
            ("[[nodes]\nid = ".to_string(), "TOML"),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "expected {key:?} in {e:?}");
        }
    }

    #[test]
    fn config_env_overrides_top_level_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, GOOD).expect("write");
        let env = vec![
            ("ROLEPAX_DATA_DIR".to_string(), "/srv/rp-{id}".to_string()),
            ("ROLEPAX_ELECTION_MIN_MS".to_string(), "200".to_string()),
            ("ROLEPAX_THRIFTY".to_string(), "false".to_string()),
            ("ROLEPAX_PRE_VOTE".to_string(), "false".to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
            ("ROLEPAX_FAILPOINT".to_string(), "compaction".to_string()),
        ];
        let typo = vec![("ROLEPAX_TICKS".to_string(), "5".to_string())];
        let e = Settings::load(&path, typo).expect_err("unknown env key");
        assert!(e.to_string().contains("ROLEPAX_TICKS"), "{e}");
        let s = Settings::load(&path, env).expect("load");
        assert_eq!(s.election_min, Duration::from_millis(200));
        assert!(!s.thrifty, "a boolean key is overridden too");
        assert!(!s.pre_vote, "and a key with an underscore");
        let n = s.for_node(3, None).expect("node 3");
        assert_eq!(n.data_dir, PathBuf::from("/srv/rp-3"));
        let n = s.for_node(3, Some(PathBuf::from("/elsewhere"))).expect("node 3");
        assert_eq!(n.data_dir, PathBuf::from("/elsewhere"));
        let bad_env = vec![("ROLEPAX_TICK_MS".to_string(), "0".to_string())];
        let e = Settings::load(&path, bad_env).expect_err("zero tick");
        assert!(e.to_string().contains("tick_ms"), "{e}");
    }

    #[test]
    fn config_missing_file_is_refused() {
        let e = Settings::load(Path::new("/nonexistent/rolepax.toml"), Vec::new()).expect_err("missing");
        assert!(e.to_string().contains("no such configuration file"), "{e}");
    }

    #[test]
    fn config_shipped_local_3_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/local-3.toml");
        let s = Settings::load(&path, Vec::new()).expect("config/local-3.toml");
        assert_eq!(s.nodes.len(), 3);
        assert_eq!(s.for_node(3, None).expect("node 3").me.http_addr.port(), 7203);
    }
}
