//! # rolepax-node: one replica as a process
//!
//! `rolepax-node --config FILE --id N [--data-dir DIR]` reads the cluster's TOML file
//! (see `rolepax::config`), starts the TCP transport on the node's `peer_addr`, the
//! node's five role actors, and the HTTP API (`rolepax::http`, 2 workers) on its
//! `http_addr`, all in one actix system. SIGTERM or Ctrl-C stops the HTTP server
//! gracefully, halts the actors and exits 0.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the node could not run (an address in
//! use, storage that cannot be opened), 2 for bad usage or a bad configuration (the
//! message on stderr names the key).
//!
//! Logs go to stderr through `tracing-subscriber`; `RUST_LOG` wins over `log_level`.
//!
//! **Joining a running cluster.** `rolepax-node --id N --peer-addr IP:PORT --http-addr
//! IP:PORT --data-dir DIR --join URL[,URL...]` starts a node that is no member yet: its
//! HTTP API and transport run, `/status` says `"joining"`, and it asks the join URLs
//! (members' HTTP addresses) for the cluster's members until an operator adds it
//! (`rolepax member add N --peer-addr ... --http-addr ...`); then it pulls the state
//! and becomes a member (`rolepax::http::join`). `--config FILE` may still be given for
//! the tuning keys and the cluster id (its `[[nodes]]` are not used); without it the
//! defaults apply and the cluster id is learned. A data directory that holds a
//! `membership` file restarts as the member it was: the join URLs are then not used.
//!
//! **Engines.** `--engine raft` (or `engine = "raft"` in the file) runs the same
//! applications and HTTP front on openraft instead of the Paxos roles (`rolepax::raft`,
//! for the comparison in docs/EVALUATION.md); every node of a cluster must run the same
//! engine. The Raft engine's membership is the file's `[[nodes]]`: `--join` and
//! membership changes are the Paxos engine's.
//!
//! **Restarts.** A node whose data directory holds a `membership` file starts in that
//! configuration (the latest it applied), not in the file's `[[nodes]]`.
//!
//! **Left out.** Daemonizing, pid files, reloading the configuration. The flags are
//! parsed by hand: not worth a dependency.

/// mimalloc instead of glibc's malloc, for two measured reasons. Commands are allocated
/// on an HTTP worker and freed on the state machine's thread (replies the other way);
/// glibc's per-thread arenas make such frees slow: malloc and free were a fifth of the
/// leader's HTTP workers' time under 64-connection puts, and mimalloc cut the cluster's
/// CPU per put by 5-15 % (four alternating runs). And glibc kept what many threads freed
/// instead of giving it back (a leader after a million puts: 418 MB resident, 301 MB
/// after `malloc_trim`), so the node had to trim every ten seconds; with mimalloc the
/// largest node holds 281 MB after the same load, with no trimming.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use actix_web::{App, HttpServer, web};
use rolepax::Error;
use rolepax::actors::node::Node;
use rolepax::app::service::Service;
use rolepax::config::{Engine, NodeSettings, Settings};
use rolepax::engine::Replica;
use rolepax::http::{self, HttpState};
use rolepax::messages::Member;
use rolepax::net::tcp::TcpTransport;
use rolepax::raft::RaftNode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: rolepax-node --config FILE --id N [--data-dir DIR] [--engine paxos|raft]
       rolepax-node --id N --peer-addr IP:PORT --http-addr IP:PORT --data-dir DIR
                    --join URL[,URL...] [--config FILE]

  --config FILE    the cluster's TOML file (e.g. config/local-3.toml); with --join only
                   its tuning keys and cluster_id are used
  --id N           which [[nodes]] entry of the file this process is (with --join: the
                   id the new node gets)
  --data-dir DIR   where this node keeps its state (default: the file's data_dir)
  --engine E       paxos (the default: the project's roles) or raft (openraft, for the
                   comparison); overrides the file's `engine`. Every node of a cluster
                   must run the same engine; membership change and --join are paxos only
  --join URLS      join a running cluster: comma-separated HTTP URLs of members, asked
                   for the cluster's members until an operator adds this node with
                   `rolepax member add N --peer-addr IP:PORT --http-addr IP:PORT`
  --peer-addr A    with --join: this node's peer (TCP) address
  --http-addr A    with --join: this node's HTTP address
  -h, --help       this text

A data directory that holds a `membership` file (a node that applied a membership
change) starts in the configuration it records, whatever the file's [[nodes]] say, and
a joining node restarted with one is a member again (its join URLs are not used).

Top-level keys of the file can be overridden by ROLEPAX_<KEY> environment variables
(e.g. ROLEPAX_DATA_DIR, ROLEPAX_ELECTION_MIN_MS). RUST_LOG overrides log_level.

Exit codes: 0 clean shutdown (SIGTERM, Ctrl-C), 1 could not run, 2 bad usage or config.";

struct Args {
    config: Option<PathBuf>,
    id: u64,
    data_dir: Option<PathBuf>,
    /// `--engine`: overrides the file's `engine`.
    engine: Option<Engine>,
    /// `--join`: the URLs, and this node's peer and HTTP addresses.
    join: Option<(Vec<String>, SocketAddr, SocketAddr)>,
}

/// `Ok(None)` asks for the help text.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let (mut config, mut id, mut data_dir, mut engine) = (None, None, None, None);
    let (mut join, mut peer_addr, mut http_addr) = (None, None, None);
    let addr = |flag: &str, v: String| {
        v.parse::<SocketAddr>()
            .map_err(|_| format!("{flag} {v:?} is not an address like 127.0.0.1:7104"))
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--data-dir" => data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--engine" => {
                engine = Some(
                    value("--engine")?
                        .parse::<Engine>()
                        .map_err(|e| format!("--engine {e}"))?,
                )
            }
            "--join" => {
                let urls: Vec<String> = value("--join")?
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|u| {
                        if u.contains("://") {
                            u.to_string()
                        } else {
                            format!("http://{u}")
                        }
                    })
                    .collect();
                if urls.is_empty() {
                    return Err("--join needs at least one URL of a member".into());
                }
                join = Some(urls);
            }
            "--peer-addr" => peer_addr = Some(addr("--peer-addr", value("--peer-addr")?)?),
            "--http-addr" => http_addr = Some(addr("--http-addr", value("--http-addr")?)?),
            "--id" => {
                let v = value("--id")?;
                id = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("--id {v:?} is not a node id (a positive integer)"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let id = id.ok_or("--id N is required")?;
    let join = match (join, peer_addr, http_addr) {
        (Some(urls), Some(peer), Some(http)) => Some((urls, peer, http)),
        (Some(_), _, _) => return Err("--join needs --peer-addr and --http-addr (this node's addresses)".into()),
        (None, None, None) => {
            if config.is_none() {
                return Err("--config FILE is required (or --join URL to join a running cluster)".into());
            }
            None
        }
        (None, _, _) => {
            return Err("--peer-addr and --http-addr are only for --join (otherwise the config file has them)".into());
        }
    };
    Ok(Some(Args {
        config,
        id,
        data_dir,
        engine,
        join,
    }))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("rolepax-node: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = match (&args.join, &args.config) {
        (Some((_, peer, http)), config) => Settings::load_tuning(config.as_deref(), std::env::vars())
            .and_then(|s| s.for_joining(args.id, *peer, *http, args.data_dir.clone())),
        (None, Some(config)) => {
            Settings::load(config, std::env::vars()).and_then(|s| s.for_node(args.id, args.data_dir))
        }
        (None, None) => Err(Error::Config("--config FILE is required".into())),
    };
    let mut node = match settings {
        Ok(node) => node,
        Err(e) => {
            eprintln!("rolepax-node: refusing to start: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(engine) = args.engine {
        node.settings.engine = engine;
    }
    if let Ok(names) = std::env::var(rolepax::config::PLANTED_BUGS_ENV) {
        match rolepax::roles::bugs::PlantedBugs::from_names(&names) {
            Ok(bugs) => node.bugs = bugs,
            Err(e) => {
                eprintln!(
                    "rolepax-node: refusing to start: {}: {e}",
                    rolepax::config::PLANTED_BUGS_ENV
                );
                return ExitCode::from(2);
            }
        }
    }
    if node.settings.engine == Engine::Raft && args.join.is_some() {
        eprintln!(
            "rolepax-node: refusing to start: --join needs the Paxos engine (the Raft engine's members are the \
             config file's [[nodes]])"
        );
        return ExitCode::from(2);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&node.settings.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let join_urls = args.join.map(|(urls, _, _)| urls);
    let system = actix_rt::System::new();
    match system.block_on(run(node, join_urls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rolepax-node: {e}");
            ExitCode::from(1)
        }
    }
}

/// The file in a data directory that names the engine whose state it holds.
const ENGINE_FILE: &str = "engine";

/// Refuses a data directory that holds another engine's state (each engine would
/// otherwise start afresh beside the other's files, as if the node had lost its disk),
/// and marks a new one with this node's engine. A non-empty directory without the mark
/// is from before there were two engines: Paxos.
fn claim_data_dir(ns: &NodeSettings) -> Result<(), Error> {
    let (dir, engine) = (&ns.data_dir, ns.settings.engine);
    let mark = dir.join(ENGINE_FILE);
    let recorded = match std::fs::read_to_string(&mark) {
        Ok(text) => Some(
            text.parse::<Engine>()
                .map_err(|e| Error::Storage(format!("{}: {e}", mark.display())))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let used = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
            used.then_some(Engine::Paxos)
        }
        Err(e) => return Err(Error::Storage(format!("cannot read {}: {e}", mark.display()))),
    };
    match recorded {
        Some(other) if other != engine => Err(Error::Config(format!(
            "{} holds the state of the {} engine; this node was started with engine {} (use another \
             --data-dir, or the same engine)",
            dir.display(),
            other.as_str(),
            engine.as_str()
        ))),
        Some(_) => Ok(()),
        None => std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&mark, engine.as_str()))
            .map_err(|e| Error::Storage(format!("cannot write {}: {e}", mark.display()))),
    }
}

async fn run(ns: NodeSettings, join: Option<Vec<String>>) -> Result<(), Error> {
    let id = ns.id();
    claim_data_dir(&ns)?;
    let transport = TcpTransport::start(ns.tcp_config())
        .await
        .map_err(|e| Error::Config(format!("cannot listen for peers on {}: {e}", ns.me.peer_addr)))?;
    let node = match ns.settings.engine {
        Engine::Paxos => {
            let node = Node::start::<Service>(ns.node_config(), transport.clone())?;
            transport.set_inbound(node.inbound());
            Replica::Paxos(node)
        }
        Engine::Raft => {
            let node = RaftNode::<Service>::start(ns.raft_config(), transport.clone()).await?;
            transport.set_inbound(node.inbound());
            let members = ns
                .settings
                .nodes
                .values()
                .map(|n| {
                    let member = Member {
                        peer_addr: n.peer_addr.to_string(),
                        http_addr: n.http_addr.to_string(),
                    };
                    (n.id, member)
                })
                .collect();
            Replica::raft(node, &ns.known_cluster_id(), members)
        }
    };

    let counters = transport.clone();
    let state = web::Data::new(
        HttpState::new(node.clone(), &ns.known_cluster_id(), ns.settings.max_body_bytes).with_transport(Arc::new(
            move || serde_json::to_value(counters.counters()).unwrap_or(serde_json::Value::Null),
        )),
    );
    let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(http::configure))
        .workers(2)
        .disable_signals()
        .shutdown_timeout(5)
        .bind(ns.me.http_addr)
        .map_err(|e| Error::Config(format!("cannot serve HTTP on {}: {e}", ns.me.http_addr)))?
        .run();
    let handle = server.handle();
    tracing::info!(
        node = id,
        peer = %transport.local_addr(),
        http = %ns.me.http_addr,
        data_dir = %ns.data_dir.display(),
        engine = ns.settings.engine.as_str(),
        membership = node.membership().state(id).as_str(),
        "node running"
    );
    if let (Some(urls), Some(node)) = (join, node.paxos()) {
        if node.membership().config.is_some() {
            tracing::info!(
                node = id,
                ?urls,
                "the data directory holds a configuration: not joining again"
            );
        } else {
            let me = Member {
                peer_addr: ns.me.peer_addr.to_string(),
                http_addr: ns.me.http_addr.to_string(),
            };
            http::join::spawn(node.clone(), urls, me);
        }
    }

    let mut server = actix_rt::spawn(server);
    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(node = id, "received {signal}: shutting down");
            handle.stop(true).await;
            Ok(())
        }
        ended = &mut server => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Config(format!("HTTP server failed: {e}"))),
            Err(e) => Err(Error::Config(format!("HTTP server task failed: {e}"))),
        },
    };
    node.halt();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.is_halted() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(node = id, "stopped");
    outcome
}

/// Waits for SIGTERM or Ctrl-C (SIGINT); names the one that came.
async fn shutdown_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return "Ctrl-C";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
    }
}
