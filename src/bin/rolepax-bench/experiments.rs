//! # The experiments of the engine comparison (issue #17)
//!
//! `rolepax-bench experiment NAME --engines paxos,raft[,etcd] --node-bin PATH --out-dir DIR
//! [knobs]` runs one experiment against clusters of real `rolepax-node` processes it
//! starts itself ([`crate::cluster`]) and appends one CSV row per run or trial to
//! `DIR/NAME.csv` (a header when the file is new). The load is the benchmark's own loop
//! ([`crate::run`]: closed loop, one keep-alive connection per client, HDR histograms,
//! `POST /v3/kv/put` and linearizable `POST /v3/kv/range`).
//!
//! * `failover`: per election-timeout range and engine, one cluster; per trial the
//!   leader is SIGKILLed while one writer per survivor puts in a loop; measured are the
//!   time from the kill to the first `/status` of a survivor saying `is_leader` (every
//!   survivor polled about every millisecond over keep-alive connections) and the
//!   client-visible gap: from the last put acknowledged before the kill to the first
//!   acknowledged put that was *sent* after it. The node is restarted and the cluster
//!   waits for a leader every node names before the next trial.
//! * `size`: per N and engine, put throughput at `--clients` connections and put
//!   latency at one connection, every client connected to the leader.
//! * `mix`: 3 nodes, reads 0/50/95/100 % (write-only, YCSB A, B, C) with uniform and
//!   zipfian keys over preloaded keys, at `--clients` connections to the leader.
//! * `stragglers`: `--nodes` (5) nodes, puts at `--clients` connections to the leader:
//!   baseline, one slow follower, a majority of the followers slow. Slow = SIGSTOP for
//!   `--stop-ms` out of every `--period-ms` (this machine's kernel has no `sch_netem`,
//!   so loopback delay with `tc netem` is not available); the slow followers are
//!   stopped at the same moments.
//! * `headline`: `--rounds` alternating rounds of put throughput at `--clients`
//!   connections and put latency at one connection, 3 nodes, each round on a fresh
//!   cluster.
//!
//! `etcd` in `--engines` with `--etcd URL,...` (leader first, as
//! `../shared/bench/etcd-cluster.sh start` prints them) adds the reference etcd as a
//! third column to `mix` and `headline`; without URLs its rows say `skipped`. The other
//! experiments do not apply to a fixed 3-member etcd started elsewhere.
//!
//! **Failures.** A cluster that does not start (a Raft node refused, no leader) or a
//! trial that goes wrong writes a row with `status = error` and the reason in `note`,
//! and the experiment continues with the next engine or parameter; the exit code is 1
//! when any row is an error.
//!
//! **Left out.** Open-loop load, more than one machine, loopback delay (see above).

use crate::cluster::{self, Cluster, Spec, Timing};
use crate::{Config, Conn, Distribution, Endpoint, Tally, YCSB_THETA, preflight, run};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const EXPERIMENTS: [&str; 5] = ["failover", "size", "mix", "stragglers", "headline"];

#[derive(Debug, Clone, PartialEq)]
pub struct ExpArgs {
    pub name: String,
    pub engines: Vec<String>,
    pub node_bin: PathBuf,
    pub out_dir: PathBuf,
    pub etcd: Vec<Endpoint>,
    pub trials: usize,
    pub ranges: Vec<(u64, u64)>,
    pub sizes: Vec<usize>,
    pub nodes: Option<usize>,
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub keys: Option<u64>,
    pub rounds: usize,
    pub stop_ms: u64,
    pub period_ms: u64,
}

pub const EXPERIMENT_USAGE: &str = "\
rolepax-bench experiment NAME --engines paxos,raft[,etcd] --node-bin PATH --out-dir DIR [knobs]
  NAME: failover | size | mix | stragglers | headline
  --etcd URL,...        the reference etcd's client URLs, leader first (mix, headline)
  --trials N            failover: trials per range and engine (default 20)
  --ranges A-B,...      failover: election timeouts in ms (default 0-5,12-25,150-300,300-500)
  --sizes N,...         size: cluster sizes (default 3,5,7,9,11)
  --nodes N             stragglers: cluster size (default 5)
  --clients N           connections of the throughput runs (default 64)
  --duration SECS       measured seconds per load run (default 5)
  --warmup SECS         unmeasured seconds before it (default 1)
  --keys N              key space (mix: 10000, preloaded; others: 100000)
  --rounds N            headline: alternating rounds (default 3)
  --stop-ms MS          stragglers: a slow follower is stopped this long (default 20) ...
  --period-ms MS        ... out of every MS (default 40)";

pub fn parse(mut args: impl Iterator<Item = String>) -> Result<ExpArgs, String> {
    let name = args
        .next()
        .ok_or("experiment: name one: failover, size, mix, stragglers, headline")?;
    if !EXPERIMENTS.contains(&name.as_str()) {
        return Err(format!(
            "experiment {name:?}: expected one of {}",
            EXPERIMENTS.join(", ")
        ));
    }
    let mut a = ExpArgs {
        name,
        engines: vec!["paxos".into(), "raft".into()],
        node_bin: PathBuf::new(),
        out_dir: PathBuf::new(),
        etcd: Vec::new(),
        trials: 20,
        ranges: vec![(0, 5), (12, 25), (150, 300), (300, 500)],
        sizes: vec![3, 5, 7, 9, 11],
        nodes: None,
        clients: 64,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        keys: None,
        rounds: 3,
        stop_ms: 20,
        period_ms: 40,
    };
    let (mut bin, mut out) = (None, None);
    while let Some(arg) = args.next() {
        let (flag, inline) = crate::split_flag(&arg);
        let mut value = || crate::flag_value(&flag, inline.as_deref(), &mut args);
        let num = |v: &str| crate::number::<u64>(&flag, v, "a whole number");
        match flag.as_str() {
            "--engines" => {
                a.engines = value()?
                    .split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
                if let Some(bad) = a
                    .engines
                    .iter()
                    .find(|e| !["paxos", "raft", "etcd"].contains(&e.as_str()))
                {
                    return Err(format!("--engines: {bad:?} is not paxos, raft or etcd"));
                }
            }
            "--node-bin" => bin = Some(PathBuf::from(value()?)),
            "--out-dir" => out = Some(PathBuf::from(value()?)),
            "--etcd" => {
                a.etcd = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(Endpoint::parse)
                    .collect::<Result<_, _>>()?
            }
            "--trials" => a.trials = num(&value()?)?.max(1) as usize,
            "--ranges" => {
                a.ranges = value()?
                    .split(',')
                    .map(|r| {
                        let (lo, hi) = r.split_once('-').ok_or(format!("--ranges: {r:?} is not MIN-MAX"))?;
                        let (lo, hi) = (num(lo)?, num(hi)?);
                        if hi <= lo || hi < 3 {
                            return Err(format!("--ranges: {r:?}: MAX must be above MIN and at least 3"));
                        }
                        Ok((lo, hi))
                    })
                    .collect::<Result<_, String>>()?
            }
            "--sizes" => {
                a.sizes = value()?
                    .split(',')
                    .map(|n| num(n).map(|n| n as usize))
                    .collect::<Result<_, _>>()?;
                if a.sizes.iter().any(|&n| !(1..=50).contains(&n)) {
                    return Err("--sizes: 1 to 50 nodes".into());
                }
            }
            "--nodes" => a.nodes = Some((num(&value()?)? as usize).clamp(3, 50)),
            "--clients" => a.clients = (num(&value()?)? as usize).clamp(1, 10_000),
            "--duration" => a.duration = crate::seconds(&flag, &value()?, false)?,
            "--warmup" => a.warmup = crate::seconds(&flag, &value()?, true)?,
            "--keys" => a.keys = Some(num(&value()?)?.max(1)),
            "--rounds" => a.rounds = num(&value()?)?.max(1) as usize,
            "--stop-ms" => a.stop_ms = num(&value()?)?,
            "--period-ms" => a.period_ms = num(&value()?)?.max(1),
            other => return Err(format!("experiment: unknown argument {other:?}")),
        }
    }
    if a.stop_ms >= a.period_ms {
        return Err("--stop-ms must be below --period-ms".into());
    }
    a.node_bin = bin.ok_or("experiment: --node-bin PATH (the rolepax-node binary) is required")?;
    a.out_dir = out.ok_or("experiment: --out-dir DIR is required")?;
    Ok(a)
}

/// The timing keys for an election-timeout range of `lo`-`hi` ms: the nearest setting
/// both engines accept (a heartbeat of at least 1 ms below the minimum, so a minimum of
/// 0 becomes 2), ticks of 1 ms below 50 ms (the Paxos elector counts in ticks).
pub fn timing_for(lo: u64, hi: u64) -> Timing {
    let min = lo.max(2);
    let fine = min < 50;
    Timing {
        tick_ms: if fine { 1 } else { 10 },
        heartbeat_ms: if fine { (min / 3).max(1) } else { 50.min(min / 3) },
        election_min_ms: min,
        election_max_ms: hi.max(min + 1),
    }
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn escape(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Appends one row to `dir/name.csv`, with `header` first when the file is new.
fn append(dir: &Path, name: &str, header: &[&str], values: &[String]) -> Result<(), String> {
    debug_assert_eq!(header.len(), values.len());
    let path = dir.join(format!("{name}.csv"));
    let line: Vec<String> = values.iter().map(|v| escape(v)).collect();
    crate::append_line(&path, Some(&header.join(",")), &line.join(","))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn f3(x: f64) -> String {
    format!("{x:.3}")
}

/// What one load run measured.
struct LoadResult {
    throughput: f64,
    p50: f64,
    p99: f64,
    read_p50: Option<f64>,
    write_p50: Option<f64>,
    ok: u64,
    errors: u64,
}

fn p(h: &hdrhistogram::Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

fn summarize(t: &Tally, measured: Duration) -> LoadResult {
    LoadResult {
        throughput: t.ok as f64 / measured.as_secs_f64().max(1e-9),
        p50: p(&t.all, 0.5).unwrap_or(f64::NAN),
        p99: p(&t.all, 0.99).unwrap_or(f64::NAN),
        read_p50: p(&t.reads, 0.5),
        write_p50: p(&t.writes, 0.5),
        ok: t.ok,
        errors: t.errors + t.non_2xx(),
    }
}

struct Load<'a> {
    endpoints: &'a [Endpoint],
    clients: usize,
    read_ratio: f64,
    keys: u64,
    distribution: Distribution,
    duration: Duration,
    warmup: Duration,
}

fn load(l: &Load) -> Result<LoadResult, String> {
    let cfg = Config {
        endpoints: l.endpoints.to_vec(),
        clients: l.clients,
        read_ratio: l.read_ratio,
        keys: l.keys,
        duration: l.duration,
        warmup: l.warmup,
        distribution: l.distribution,
        timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let addrs = preflight(&cfg)?;
    let (tally, measured) = run(&cfg, &addrs);
    let r = summarize(&tally, measured);
    if r.ok == 0 {
        return Err(format!("no request succeeded ({} errors)", r.errors));
    }
    Ok(r)
}

/// Writes key-0 .. key-(n-1) once each, 64 connections.
fn preload(endpoints: &[Endpoint], keys: u64) -> Result<(), String> {
    let cfg = Config {
        endpoints: endpoints.to_vec(),
        clients: 64,
        keys,
        fill: true,
        requests: Some(keys),
        duration: Duration::from_secs(300),
        duration_given: true,
        warmup: Duration::ZERO,
        ..Config::default()
    };
    let addrs = preflight(&cfg)?;
    let (tally, _) = run(&cfg, &addrs);
    if tally.ok < keys {
        return Err(format!("preload: only {} of {keys} puts succeeded", tally.ok));
    }
    Ok(())
}

/// Runs the experiment; answers the exit code (0, or 1 when a row is an error).
pub fn main(a: &ExpArgs) -> u8 {
    cluster::install_signal_handlers();
    if let Err(e) = std::fs::create_dir_all(&a.out_dir) {
        eprintln!("rolepax-bench experiment: cannot create {}: {e}", a.out_dir.display());
        return 2;
    }
    let mut x = Exp { a, errors: 0 };
    let done = match a.name.as_str() {
        "failover" => x.failover(),
        "size" => x.size(),
        "mix" => x.mix(),
        "stragglers" => x.stragglers(),
        _ => x.headline(),
    };
    match done {
        Err(e) => {
            eprintln!("rolepax-bench experiment {}: {e}", a.name);
            2
        }
        Ok(()) if x.errors > 0 => {
            eprintln!(
                "rolepax-bench experiment {}: {} row(s) with status error (see note in {}/{}.csv)",
                a.name,
                x.errors,
                a.out_dir.display(),
                a.name
            );
            1
        }
        Ok(()) => 0,
    }
}

struct Exp<'a> {
    a: &'a ExpArgs,
    errors: usize,
}

const FAILOVER_HEADER: [&str; 16] = [
    "engine",
    "range",
    "tick_ms",
    "heartbeat_ms",
    "election_min_ms",
    "election_max_ms",
    "nodes",
    "trial",
    "killed",
    "new_leader",
    "election_ms",
    "gap_ms",
    "acked_before",
    "status",
    "note",
    "started_unix",
];

const LOAD_HEADER_TAIL: [&str; 9] = [
    "throughput_rps",
    "p50_ms",
    "p99_ms",
    "read_p50_ms",
    "write_p50_ms",
    "ok",
    "errors",
    "status",
    "note",
];

/// The CSV header of a load experiment: its own `lead` columns, a load run's columns,
/// then when the run started.
fn load_header(lead: &[&'static str]) -> Vec<&'static str> {
    lead.iter()
        .copied()
        .chain(LOAD_HEADER_TAIL)
        .chain(["started_unix"])
        .collect()
}

fn load_values(r: &Result<LoadResult, String>) -> Vec<String> {
    let opt = |v: Option<f64>| v.map(f3).unwrap_or_default();
    match r {
        Ok(r) => vec![
            format!("{:.1}", r.throughput),
            f3(r.p50),
            f3(r.p99),
            opt(r.read_p50),
            opt(r.write_p50),
            r.ok.to_string(),
            r.errors.to_string(),
            "ok".into(),
            String::new(),
        ],
        Err(e) => {
            let mut v = vec![String::new(); 7];
            v.extend(["error".to_string(), e.replace('\n', " | ")]);
            v
        }
    }
}

fn skipped(note: &str) -> Vec<String> {
    let mut v = vec![String::new(); 7];
    v.extend(["skipped".to_string(), note.to_string()]);
    v
}

/// One trial's outcome.
struct Trial {
    killed: u64,
    new_leader: u64,
    election_ms: f64,
    gap_ms: Option<f64>,
    acked_before: usize,
}

/// Puts in a loop through `addr` until `stop`, noting (sent, acknowledged) of each 2xx
/// in `acks` as it goes.
fn writer(addr: SocketAddr, tag: u64, stop: &AtomicBool, acks: &Mutex<Vec<(Instant, Instant)>>) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (mut conn, mut k) = (None::<Conn>, 0u64);
    let host = addr.to_string();
    while !stop.load(Ordering::SeqCst) {
        k += 1;
        let body = format!(
            "{{\"key\":\"{}\",\"value\":\"{}\"}}",
            b64.encode(format!("failover-{tag}-{}", k % 1000)),
            b64.encode(k.to_string())
        );
        let sent = Instant::now();
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::open(&[addr], Duration::from_secs(2)) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        match c.post(&host, "/v3/kv/put", body.as_bytes(), &mut Vec::new()) {
            Ok(r) if (200..300).contains(&r.status) => {
                let done = Instant::now();
                if let Ok(mut a) = acks.lock() {
                    a.push((sent, done));
                }
                if r.close {
                    conn = None;
                }
            }
            Ok(r) => {
                if r.close {
                    conn = None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => {
                conn = None;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Exp<'_> {
    fn has(&self, engine: &str) -> bool {
        self.a.engines.iter().any(|e| e == engine)
    }

    /// The rolepax engines asked for (etcd is a column of mix and headline only).
    fn rolepax_engines(&self) -> Vec<String> {
        if self.has("etcd") && !matches!(self.a.name.as_str(), "mix" | "headline") {
            eprintln!("{}: etcd does not apply to this experiment; skipped", self.a.name);
        }
        self.a.engines.iter().filter(|e| *e != "etcd").cloned().collect()
    }

    fn spec(&self, engine: &str, nodes: usize, timing: Timing, retry_ms: Option<u64>) -> Spec {
        Spec {
            engine: engine.to_string(),
            nodes,
            timing,
            retry_ms,
            bin: self.a.node_bin.clone(),
        }
    }

    /// Puts only, uniform keys, for the experiment's duration and warm-up.
    fn puts(&self, endpoints: &[Endpoint], clients: usize, keys: u64) -> Result<LoadResult, String> {
        load(&Load {
            endpoints,
            clients,
            read_ratio: 0.0,
            keys,
            distribution: Distribution::Uniform,
            duration: self.a.duration,
            warmup: self.a.warmup,
        })
    }

    fn row(&mut self, name: &str, header: &[&str], values: Vec<String>) -> Result<(), String> {
        if values.iter().any(|v| v == "error") {
            self.errors += 1;
        }
        append(&self.a.out_dir, name, header, &values)
    }

    // -----------------------------------------------------------------------------
    // failover

    fn failover(&mut self) -> Result<(), String> {
        let a = self.a;
        for engine in self.rolepax_engines() {
            for &(lo, hi) in &a.ranges {
                let t = timing_for(lo, hi);
                let range = format!("{lo}-{hi}");
                let base = |trial: usize| {
                    vec![
                        engine.clone(),
                        range.clone(),
                        t.tick_ms.to_string(),
                        t.heartbeat_ms.to_string(),
                        t.election_min_ms.to_string(),
                        t.election_max_ms.to_string(),
                        "3".to_string(),
                        trial.to_string(),
                    ]
                };
                // A follower re-proposes an unanswered request after retry_interval: keep
                // it near the election timeout so a forwarded put is not stuck for 1 s.
                let retry = (2 * t.election_max_ms).max(20);
                let spec = self.spec(&engine, 3, t, Some(retry));
                let mut c = match Cluster::start(&spec, Duration::from_secs(60)) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("failover {engine} {range}: {e}");
                        let mut v = base(0);
                        v.extend(["", "", "", "", ""].map(String::from));
                        v.extend(["error".into(), e.replace('\n', " | "), now_unix().to_string()]);
                        self.row("failover", &FAILOVER_HEADER, v)?;
                        continue;
                    }
                };
                let mut failures = 0;
                for trial in 1..=a.trials {
                    let started = now_unix();
                    let mut v = base(trial);
                    match failover_trial(&mut c, t) {
                        Ok(r) => {
                            failures = 0;
                            eprintln!(
                                "failover {engine} {range} trial {trial}/{}: node {} killed, node {} leads after \
                                 {:.1} ms, client gap {}",
                                a.trials,
                                r.killed,
                                r.new_leader,
                                r.election_ms,
                                r.gap_ms.map_or("-".into(), |g| format!("{g:.1} ms"))
                            );
                            v.extend([
                                r.killed.to_string(),
                                r.new_leader.to_string(),
                                f3(r.election_ms),
                                r.gap_ms.map(f3).unwrap_or_default(),
                                r.acked_before.to_string(),
                                "ok".into(),
                                if r.gap_ms.is_none() {
                                    "no acknowledged put on one side of the kill".into()
                                } else {
                                    String::new()
                                },
                                started.to_string(),
                            ]);
                        }
                        Err(e) => {
                            failures += 1;
                            eprintln!("failover {engine} {range} trial {trial}: {e}");
                            v.extend(["", "", "", "", ""].map(String::from));
                            v.extend(["error".into(), e.replace('\n', " | "), started.to_string()]);
                            // Bring every node back for the next trial.
                            let down: Vec<u64> = c.nodes.iter().filter(|n| n.pid().is_none()).map(|n| n.id).collect();
                            for id in down {
                                let _ = c.restart(id);
                            }
                        }
                    }
                    self.row("failover", &FAILOVER_HEADER, v)?;
                    if failures >= 3 {
                        eprintln!("failover {engine} {range}: three trials in a row failed; next range");
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // size

    fn size(&mut self) -> Result<(), String> {
        let a = self.a;
        let header = load_header(&["engine", "nodes", "clients", "target", "op"]);
        let keys = a.keys.unwrap_or(100_000);
        for &n in &a.sizes {
            for engine in self.rolepax_engines() {
                let runs = [a.clients, 1];
                let spec = self.spec(&engine, n, Timing::DEFAULT, None);
                let started = now_unix();
                let results: Vec<(usize, Result<LoadResult, String>)> =
                    match Cluster::start(&spec, Duration::from_secs(90)) {
                        Err(e) => runs.iter().map(|&c| (c, Err(e.clone()))).collect(),
                        Ok(mut c) => runs
                            .iter()
                            .map(|&clients| {
                                let r = c.wait_stable(Duration::from_secs(30)).and_then(|l| {
                                    let ep = [c.node(l).map(cluster::Node::endpoint).ok_or("no leader node")?];
                                    self.puts(&ep, clients, keys)
                                });
                                (clients, r)
                            })
                            .collect(),
                    };
                for (clients, r) in results {
                    report_load(&format!("size {engine} N={n} c={clients}"), &r);
                    let mut v = vec![
                        engine.clone(),
                        n.to_string(),
                        clients.to_string(),
                        "leader".into(),
                        "put".into(),
                    ];
                    v.extend(load_values(&r));
                    v.push(started.to_string());
                    self.row("size", &header, v)?;
                }
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // mix

    fn mix(&mut self) -> Result<(), String> {
        let a = self.a;
        let header = load_header(&[
            "engine",
            "workload",
            "read_pct",
            "distribution",
            "nodes",
            "clients",
            "keys",
        ]);
        let keys = a.keys.unwrap_or(10_000);
        let nodes = a.nodes.unwrap_or(3);
        let workloads = [(0u32, "write-only"), (50, "YCSB A"), (95, "YCSB B"), (100, "YCSB C")];
        let dists = [Distribution::Uniform, Distribution::Zipfian(YCSB_THETA)];
        for engine in a.engines.clone() {
            let started = now_unix();
            // Where the load goes: a cluster of ours (kept for the whole engine) or etcd.
            let mut cluster = None;
            let target: Result<Vec<Endpoint>, String> = if engine == "etcd" {
                match a.etcd.first() {
                    Some(ep) => Ok(vec![ep.clone()]),
                    None => Err(String::new()),
                }
            } else {
                Cluster::start(
                    &self.spec(&engine, nodes, Timing::DEFAULT, None),
                    Duration::from_secs(60),
                )
                .and_then(|c| {
                    let l = c.leader().ok_or("no leader")?;
                    let ep = c.node(l).map(cluster::Node::endpoint).ok_or("no leader node")?;
                    cluster = Some(c);
                    Ok(vec![ep])
                })
            };
            let target = target.and_then(|eps| {
                eprintln!("mix {engine}: preloading {keys} keys");
                preload(&eps, keys).map(|()| eps)
            });
            for dist in dists {
                for (read_pct, workload) in workloads {
                    let mut v = vec![
                        engine.clone(),
                        workload.to_string(),
                        read_pct.to_string(),
                        dist.name().to_string(),
                        if engine == "etcd" {
                            "3".into()
                        } else {
                            nodes.to_string()
                        },
                        a.clients.to_string(),
                        keys.to_string(),
                    ];
                    match &target {
                        Err(e) if e.is_empty() => v.extend(skipped("etcd not available (no --etcd URLs given)")),
                        Err(e) => v.extend(load_values(&Err(e.clone()))),
                        Ok(eps) => {
                            let r = load(&Load {
                                endpoints: eps,
                                clients: a.clients,
                                read_ratio: f64::from(read_pct) / 100.0,
                                keys,
                                distribution: dist,
                                duration: a.duration,
                                warmup: a.warmup,
                            });
                            report_load(&format!("mix {engine} {workload} {}", dist.name()), &r);
                            v.extend(load_values(&r));
                        }
                    }
                    v.push(started.to_string());
                    self.row("mix", &header, v)?;
                }
            }
            drop(cluster);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // stragglers

    fn stragglers(&mut self) -> Result<(), String> {
        let a = self.a;
        let header = load_header(&[
            "engine",
            "condition",
            "slow_nodes",
            "method",
            "nodes",
            "clients",
            "leader_after",
        ]);
        let nodes = a.nodes.unwrap_or(5);
        let keys = a.keys.unwrap_or(100_000);
        let method = format!("SIGSTOP {} ms of every {} ms", a.stop_ms, a.period_ms);
        for engine in self.rolepax_engines() {
            let started = now_unix();
            let spec = self.spec(&engine, nodes, Timing::DEFAULT, None);
            let mut c = match Cluster::start(&spec, Duration::from_secs(60)) {
                Ok(c) => Some(c),
                Err(e) => {
                    let mut v = vec![engine.clone(), "baseline".into(), String::new(), method.clone()];
                    v.extend([nodes.to_string(), a.clients.to_string(), String::new()]);
                    v.extend(load_values(&Err(e)));
                    v.push(started.to_string());
                    self.row("stragglers", &header, v)?;
                    continue;
                }
            };
            let majority = (nodes - 1) / 2 + 1;
            for (condition, slow_count) in [("baseline", 0usize), ("one-slow", 1), ("majority-slow", majority)] {
                let Some(cl) = c.as_mut() else { break };
                let outcome = cl.wait_stable(Duration::from_secs(30)).and_then(|leader| {
                    let followers: Vec<u64> = cl.nodes.iter().map(|n| n.id).filter(|&id| id != leader).collect();
                    let slow: Vec<u64> = followers.iter().rev().take(slow_count).copied().collect();
                    let ep = [cl.node(leader).map(cluster::Node::endpoint).ok_or("no leader node")?];
                    let stop = AtomicBool::new(false);
                    let cl_ref = &*cl;
                    let r = std::thread::scope(|s| {
                        let duty = s.spawn(|| {
                            if slow.is_empty() {
                                return;
                            }
                            let (off, period) = (Duration::from_millis(a.stop_ms), Duration::from_millis(a.period_ms));
                            let mut next = Instant::now();
                            while !stop.load(Ordering::SeqCst) {
                                for &id in &slow {
                                    cl_ref.signal(id, libc::SIGSTOP);
                                }
                                std::thread::sleep(off);
                                for &id in &slow {
                                    cl_ref.signal(id, libc::SIGCONT);
                                }
                                next += period;
                                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                            }
                            for &id in &slow {
                                cl_ref.signal(id, libc::SIGCONT);
                            }
                        });
                        let r = self.puts(&ep, a.clients, keys);
                        stop.store(true, Ordering::SeqCst);
                        let _ = duty.join();
                        r
                    });
                    Ok((slow, r, cl.leader()))
                });
                let (slow, r, after) = match outcome {
                    Ok((slow, r, after)) => (slow, r, after),
                    Err(e) => (Vec::new(), Err(e), None),
                };
                report_load(&format!("stragglers {engine} {condition}"), &r);
                let slow_text: Vec<String> = slow.iter().map(u64::to_string).collect();
                let mut v = vec![
                    engine.clone(),
                    condition.to_string(),
                    slow_text.join(" "),
                    method.clone(),
                    nodes.to_string(),
                    a.clients.to_string(),
                    after.map(|l| l.to_string()).unwrap_or_default(),
                ];
                v.extend(load_values(&r));
                v.push(started.to_string());
                self.row("stragglers", &header, v)?;
            }
            c.take();
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------
    // headline

    fn headline(&mut self) -> Result<(), String> {
        let a = self.a;
        let header = load_header(&["engine", "round", "nodes", "clients", "op"]);
        let keys = a.keys.unwrap_or(100_000);
        for round in 1..=a.rounds {
            let mut order = a.engines.clone();
            if round % 2 == 0 {
                order.reverse();
            }
            for engine in order {
                let started = now_unix();
                let runs = [a.clients, 1];
                let mut cluster = None;
                let target: Result<Vec<Endpoint>, String> = if engine == "etcd" {
                    a.etcd.first().map(|e| vec![e.clone()]).ok_or_default()
                } else {
                    Cluster::start(&self.spec(&engine, 3, Timing::DEFAULT, None), Duration::from_secs(60)).and_then(
                        |c| {
                            let l = c.leader().ok_or("no leader")?;
                            let ep = c.node(l).map(cluster::Node::endpoint).ok_or("no leader node")?;
                            cluster = Some(c);
                            Ok(vec![ep])
                        },
                    )
                };
                for clients in runs {
                    let mut v = vec![
                        engine.clone(),
                        round.to_string(),
                        "3".into(),
                        clients.to_string(),
                        "put".into(),
                    ];
                    match &target {
                        Err(e) if e.is_empty() => v.extend(skipped("etcd not available (no --etcd URLs given)")),
                        Err(e) => v.extend(load_values(&Err(e.clone()))),
                        Ok(eps) => {
                            let r = self.puts(eps, clients, keys);
                            report_load(&format!("headline round {round} {engine} c={clients}"), &r);
                            v.extend(load_values(&r));
                        }
                    }
                    v.push(started.to_string());
                    self.row("headline", &header, v)?;
                }
                drop(cluster);
            }
        }
        Ok(())
    }
}

trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, String>;
}

impl<T> OkOrDefault<T> for Option<T> {
    /// `Err("")` for `None`: "not available", as opposed to a failure with a reason.
    fn ok_or_default(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

fn report_load(what: &str, r: &Result<LoadResult, String>) {
    match r {
        Ok(r) => eprintln!(
            "{what}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            r.throughput, r.p50, r.p99, r.errors
        ),
        Err(e) => eprintln!("{what}: FAILED: {e}"),
    }
}

/// One failover trial on a running cluster (see the module docs).
fn failover_trial(c: &mut Cluster, t: Timing) -> Result<Trial, String> {
    c.wait_stable(Duration::from_secs(30))?;
    // Let the cluster settle (the restarted node catches up, no election under way).
    std::thread::sleep(Duration::from_millis(2 * t.election_max_ms + 200));
    let leader = c.wait_stable(Duration::from_secs(30))?;
    let survivors: Vec<(u64, SocketAddr)> = c.running().filter(|n| n.id != leader).map(|n| (n.id, n.http)).collect();
    let stop = AtomicBool::new(false);
    let killed_at: OnceLock<Instant> = OnceLock::new();
    let acks: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());
    let outcome = std::thread::scope(|s| {
        for &(id, addr) in &survivors {
            let (stop, acks) = (&stop, &acks);
            s.spawn(move || writer(addr, id, stop, acks));
        }
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let _ = killed_at.set(t0);
        let killed = c.kill(leader);
        let elected = killed.and_then(|()| poll_for_leader(&survivors, t0, Duration::from_secs(20)));
        // Writers go on until a put sent after the kill is acknowledged.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
            if acks_after(&acks, t0) {
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
        elected
    });
    let t0 = *killed_at.get().ok_or("the kill did not happen")?;
    c.restart(leader)?;
    let (new_leader, elected_at) = outcome?;
    let acks = acks.into_inner().map_err(|_| "a writer panicked".to_string())?;
    let last_before = acks.iter().map(|a| a.1).filter(|&done| done <= t0).max();
    let first_after = acks.iter().filter(|a| a.0 >= t0).map(|a| a.1).min();
    let gap_ms = match (last_before, first_after) {
        (Some(b), Some(f)) => Some((f - b).as_secs_f64() * 1000.0),
        _ => None,
    };
    Ok(Trial {
        killed: leader,
        new_leader,
        election_ms: (elected_at - t0).as_secs_f64() * 1000.0,
        gap_ms,
        acked_before: acks.iter().filter(|a| a.1 <= t0).count(),
    })
}

/// Whether a put sent after `t0` has been acknowledged.
fn acks_after(acks: &Mutex<Vec<(Instant, Instant)>>, t0: Instant) -> bool {
    acks.lock().is_ok_and(|a| a.iter().any(|x| x.0 >= t0))
}

/// Polls every survivor's `/status` about every millisecond until one says it leads.
fn poll_for_leader(survivors: &[(u64, SocketAddr)], t0: Instant, deadline: Duration) -> Result<(u64, Instant), String> {
    let mut conns: Vec<Option<Conn>> = survivors.iter().map(|_| None).collect();
    let mut next = t0;
    loop {
        for (i, &(id, addr)) in survivors.iter().enumerate() {
            let conn = match conns[i].as_mut() {
                Some(c) => c,
                None => match Conn::open(&[addr], Duration::from_millis(200)) {
                    Ok(c) => conns[i].insert(c),
                    Err(_) => continue,
                },
            };
            match conn.get(&addr.to_string(), "/status") {
                Ok(r) => {
                    if r.close {
                        conns[i] = None;
                    }
                    if cluster::json_of(r).is_some_and(|s| cluster::says_leader(&s)) {
                        return Ok((id, Instant::now()));
                    }
                }
                Err(_) => conns[i] = None,
            }
        }
        if t0.elapsed() > deadline {
            return Err(format!("no survivor said it leads within {deadline:?} of the kill"));
        }
        next += Duration::from_millis(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<ExpArgs, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn experiment_arguments_parse_and_bad_ones_are_named() {
        let a =
            args("failover --engines paxos --node-bin n --out-dir o --trials 3 --ranges 0-5,150-300").expect("parses");
        assert_eq!((a.name.as_str(), a.trials), ("failover", 3));
        assert_eq!(a.engines, vec!["paxos".to_string()]);
        assert_eq!(a.ranges, vec![(0, 5), (150, 300)]);
        let a = args("mix --node-bin n --out-dir o --etcd http://127.0.0.1:12379 --engines=paxos,raft,etcd")
            .expect("parses");
        assert_eq!((a.etcd.len(), a.engines.len(), a.clients), (1, 3, 64));
        for (line, mentions) in [
            ("nosuch --node-bin n --out-dir o", "nosuch"),
            ("failover --out-dir o", "--node-bin"),
            ("failover --node-bin n", "--out-dir"),
            ("failover --node-bin n --out-dir o --engines zab", "zab"),
            ("failover --node-bin n --out-dir o --ranges 5-5", "--ranges"),
            (
                "stragglers --node-bin n --out-dir o --stop-ms 40 --period-ms 40",
                "--stop-ms",
            ),
        ] {
            match args(line) {
                Err(e) => assert!(e.contains(mentions), "{line:?}: {e:?} should mention {mentions:?}"),
                Ok(a) => panic!("{line:?} was accepted as {a:?}"),
            }
        }
    }

    #[test]
    fn election_ranges_map_to_settings_both_engines_accept() {
        for (lo, hi) in [(0, 5), (12, 25), (150, 300), (300, 500), (1, 3)] {
            let t = timing_for(lo, hi);
            // The node's own checks: every value at least a tick, heartbeat < min < max.
            assert!(t.tick_ms >= 1 && t.heartbeat_ms >= t.tick_ms, "{t:?}");
            assert!(
                t.heartbeat_ms < t.election_min_ms && t.election_min_ms < t.election_max_ms,
                "{t:?}"
            );
            assert!(
                t.election_min_ms >= lo && t.election_max_ms == hi.max(t.election_min_ms + 1),
                "{t:?}"
            );
        }
        assert_eq!(timing_for(0, 5).election_min_ms, 2);
        assert_eq!(timing_for(150, 300).tick_ms, 10);
    }
}
