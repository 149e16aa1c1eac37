//! # rolepax-bench: load generator for the etcd v3 JSON gateway
//!
//! Drives any server that speaks the etcd v3 JSON gateway (rolepax or a real etcd) with
//! `POST /v3/kv/put` of random keys `key-<n>` and random values, and `POST /v3/kv/range`
//! of single keys, then reports throughput and latency percentiles.
//!
//! ```text
//! rolepax-bench --endpoints http://127.0.0.1:7201 --clients 16 --read-ratio 0.5 \
//!     --duration 10 --warmup 2 --json runs.jsonl --csv runs.csv --label rolepax-c16
//! rolepax-bench plot --out bench.svg runs.csv
//! ```
//!
//! **How it works.** Each client is a thread with one persistent HTTP/1.1 keep-alive
//! connection (a small hand-written client over `std::net::TcpStream`: content-length,
//! chunked and read-to-close bodies), spread round-robin over the endpoints. Closed loop
//! by default: a client sends its next request as soon as the previous answer came.
//! With `--rate R` the loop is open: every client sends at fixed intervals (`R` in total,
//! staggered) and latency is measured from the *scheduled* send time, so a stalled
//! server shows up as latency instead of silently lowering the offered load
//! (no coordinated omission).
//!
//! A request counts in the results when its answer arrives inside the measured window
//! (after the warm-up, before the end). Latencies of every HTTP answer, 2xx or not, go
//! into HDR histograms (1 µs to 60 s, 3 significant digits); transport failures
//! (refused, reset, timed out, unparsable answers) are counted as errors and the
//! connection is reopened, so a server dying mid-run shows up as errors while the run
//! goes on. With `--requests N` the run ends instead once `N` requests sent after the
//! warm-up have answered 2xx: each such request holds one of `N` tickets, and a failed
//! one (error or non-2xx) gives its ticket back, so exactly `N` succeed (unless a given
//! `--duration` runs out first); the measured time ends with the `N`th success.
//! Throughput counts 2xx answers per measured second. In open loop, requests
//! that fell due in the window but were never sent (the client was still waiting on
//! earlier ones) are reported as `unsent`.
//!
//! Output: a summary on stdout, a `\r` progress line on stderr while running (when
//! stderr is a terminal: elapsed time, current req/s, errors so far), and with
//! `--json FILE` / `--csv FILE` one line per run *appended* to the file (JSON Lines; the
//! CSV gets a header when it is new), so several runs build a data set for plots. `-`
//! writes to stdout. `plot` turns such CSV files into an SVG of throughput against p99
//! latency, one series per label, one point per client count.
//!
//! Exit codes: 0 after a run, 1 when no request in the window succeeded, 2 for bad
//! usage, a bad URL or an endpoint that cannot be reached (or does not serve
//! `/v3/kv/range`) at the start.
//!
//! Keys are drawn uniformly, or with `--distribution zipfian` by YCSB's zipfian
//! generator (theta 0.99, key 0 the hottest: [`KeyGen`]).
//!
//! **The engine comparison** (issue #17) lives in submodules: `experiment NAME` runs one
//! experiment (failover, size, mix, stragglers, headline) against clusters of
//! `rolepax-node` processes it starts ([`cluster`], [`experiments`]), reusing this
//! file's load loop ([`run`]); `report` turns their CSV files into
//! `docs/EVALUATION.md` with SVG charts ([`report`], [`charts`]).
//! `scripts/evaluate.sh` runs them all.
//!
//! **Left out.** TLS, authentication, pipelining, HTTP/2, ranges over more than one key,
//! deletes and txns, key distributions other than uniform and zipfian, and retries (a
//! failed request is counted, never retried).

mod charts;
mod cluster;
mod experiments;
mod report;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
usage: rolepax-bench [options]
       rolepax-bench plot [--title TEXT] --out FILE.svg CSV...
       rolepax-bench sample --dirs DIR,... [--pids PID,...] [--interval-ms MS] --out FILE.csv
       rolepax-bench plot-disk [--title TEXT] --out FILE.svg SAMPLES.csv
       rolepax-bench experiment NAME --engines paxos,raft[,etcd] --node-bin PATH --out-dir DIR [knobs]
       rolepax-bench report --dir DIR --out FILE.md [--command TEXT] [--commit TEXT]

Closed-loop (or, with --rate, open-loop) load against the etcd v3 JSON gateway
(POST /v3/kv/put, POST /v3/kv/range) of rolepax or etcd.

options:
  --endpoints URL,...   servers, clients spread round-robin (default http://127.0.0.1:7201)
  --clients N           concurrent clients, one keep-alive connection each (default 16)
  --read-ratio R        share of requests that are ranges, 0.0..1.0 (default 0)
  --keys N              keys key-0 .. key-<N-1> (default 100000)
  --distribution D      how keys are chosen: uniform (default) or zipfian (YCSB's,
                        theta 0.99: key-0 the hottest)
  --value-size BYTES    size of each written value (default 128)
  --duration SECS       measured time (default 10; with --requests, a time limit only
                        when given)
  --requests N          stop once N requests sent after the warm-up have succeeded
                        (2xx) instead of after --duration
  --warmup SECS         unmeasured time before it (default 2)
  --rate REQ_PER_SEC    open loop: total requests per second at fixed intervals,
                        latency measured from the scheduled time
  --serializable        ranges are serializable (local, possibly stale) reads
  --fill                puts take the keys in order (key-0, key-1, ..., wrapping)
                        instead of at random: with --requests N and --keys N every
                        key is written about once (loading a state of N keys)
  --timeout SECS        per-request timeout; longer counts as an error (default 10)
  --json FILE           append the run's summary as one JSON line (- for stdout)
  --csv FILE            append the run's summary as one CSV row (header when new)
  --label NAME          names the run in the JSON and CSV (default: run)
  -h, --help            this text

plot: reads CSV files written by --csv and draws throughput (x) against p99 latency
(y, log scale) as an SVG, one line per label, one point per client count.

sample: every --interval-ms (default 1000) writes one CSV row: seconds since start,
unix ms, and per data directory N (in the order given): disk_N (allocated bytes of every
file below it, as du counts), apparent_N (their sizes), snapshot_N (size of its
snapshot.bin), rss_N (VmRSS of the Nth pid, empty once it is gone). Stops when every pid
is gone, or on SIGTERM / Ctrl-C (each row is flushed as it is written).

plot-disk: draws such samples as an SVG (disk use per node with its bound
3 x snapshot + 64 MiB, and RSS, over time) and prints per node whether every sample
stayed below the bound, the worst ratio to it, and RSS first / peak / last.

experiment: runs one experiment of the engine comparison (failover, size, mix,
stragglers, headline) on clusters of rolepax-node processes it starts on 127.0.0.1,
appending one CSV row per run or trial to DIR/NAME.csv; exits 1 when a run failed
(its row says why); its knobs are listed at the end of this text.

report: writes FILE.md (docs/EVALUATION.md) and its SVG charts from the CSV files in
DIR, including DIR/concerns.md and DIR/answer.md when present.

exit codes:
  0  the run finished (errors, if any, are in the report)
  1  no request succeeded in the measured window
  2  bad usage, bad URL, or an endpoint unreachable at the start";

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7201";
/// Largest response body accepted; anything bigger is a protocol error.
const MAX_BODY: usize = 64 << 20;
/// Largest status line plus headers accepted.
const MAX_HEAD: usize = 64 << 10;
/// Highest latency the histograms track, in microseconds (longer ones are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;

// ---------------------------------------------------------------------------------
// Arguments

/// One server: where to connect and what to put in `Host:`.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    /// As given, normalized to `http://host:port`.
    url: String,
    host: String,
    port: u16,
}

impl Endpoint {
    /// Accepts `http://host[:port][/]` or `host:port`; refuses other schemes and paths.
    fn parse(text: &str) -> Result<Endpoint, String> {
        let t = text.trim();
        let rest = match t.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => return Err(format!("{t:?}: only http:// is supported, not {scheme}://")),
            None => t,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') || authority.contains('?') || authority.contains('#') {
            return Err(format!("{t:?}: give only scheme, host and port (no path)"));
        }
        if authority.contains('@') {
            return Err(format!("{t:?}: user info in URLs is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{t:?}: unclosed [ in an IPv6 address"))?;
            match after {
                "" => (h.to_string(), None),
                p => match p.strip_prefix(':') {
                    Some(p) => (h.to_string(), Some(p)),
                    None => return Err(format!("{t:?}: expected :port after ]")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{t:?}: no host"));
        }
        if host.contains(':') && !authority.starts_with('[') {
            return Err(format!(
                "{t:?}: write IPv6 addresses in brackets, like http://[::1]:2379"
            ));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("{t:?}: bad port {p:?}")),
            },
        };
        let shown = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(Endpoint {
            url: format!("http://{shown}:{port}"),
            host,
            port,
        })
    }

    /// The `Host:` header value.
    fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Config {
    endpoints: Vec<Endpoint>,
    clients: usize,
    read_ratio: f64,
    keys: u64,
    value_size: usize,
    duration: Duration,
    /// With `requests`: whether `--duration` was given (then it is a time limit).
    duration_given: bool,
    warmup: Duration,
    /// Stop after this many successful requests sent after the warm-up.
    requests: Option<u64>,
    rate: Option<f64>,
    serializable: bool,
    /// Puts take the keys in order instead of at random.
    fill: bool,
    /// How keys are drawn (puts without `--fill`, and every range).
    distribution: Distribution,
    timeout: Duration,
    json: Option<PathBuf>,
    csv: Option<PathBuf>,
    label: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoints: Vec::new(),
            clients: 16,
            read_ratio: 0.0,
            keys: 100_000,
            value_size: 128,
            duration: Duration::from_secs(10),
            duration_given: false,
            warmup: Duration::from_secs(2),
            requests: None,
            rate: None,
            serializable: false,
            fill: false,
            distribution: Distribution::Uniform,
            timeout: Duration::from_secs(10),
            json: None,
            csv: None,
            label: "run".into(),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Run(Config),
    Plot {
        title: String,
        out: PathBuf,
        inputs: Vec<PathBuf>,
    },
    Sample(SampleArgs),
    PlotDisk {
        title: String,
        out: PathBuf,
        input: PathBuf,
    },
    Experiment(experiments::ExpArgs),
    Report(report::ReportArgs),
}

#[derive(Debug, PartialEq)]
struct SampleArgs {
    dirs: Vec<PathBuf>,
    /// Empty, or one per directory.
    pids: Vec<u32>,
    interval: Duration,
    out: PathBuf,
}

fn number<T: std::str::FromStr>(flag: &str, v: &str, what: &str) -> Result<T, String> {
    v.trim()
        .parse::<T>()
        .map_err(|_| format!("{flag} {v:?}: expected {what}"))
}

fn seconds(flag: &str, v: &str, allow_zero: bool) -> Result<Duration, String> {
    let s: f64 = number(flag, v, "a number of seconds")?;
    if !s.is_finite() || s < 0.0 || (!allow_zero && s == 0.0) || s > 1e7 {
        let want = if allow_zero { "zero or more" } else { "more than zero" };
        return Err(format!("{flag} {v:?}: expected {want} seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Splits `--flag=value` into its parts.
fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

/// The value of `flag`: given inline (`--flag=value`) or the next argument.
fn flag_value(flag: &str, inline: Option<&str>, args: &mut impl Iterator<Item = String>) -> Result<String, String> {
    inline
        .map(str::to_string)
        .or_else(|| args.next())
        .ok_or_else(|| format!("{flag} needs a value"))
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    match args.peek().map(String::as_str) {
        Some("plot") => {
            args.next();
            return parse_plot_args("plot", DEFAULT_PLOT_TITLE, args);
        }
        Some("plot-disk") => {
            args.next();
            return match parse_plot_args("plot-disk", DEFAULT_DISK_TITLE, args)? {
                Command::Plot { title, out, inputs } if inputs.len() == 1 => Ok(Command::PlotDisk {
                    title,
                    out,
                    input: inputs.into_iter().next().unwrap_or_default(),
                }),
                Command::Plot { .. } => Err("plot-disk: give exactly one samples CSV file".into()),
                other => Ok(other),
            };
        }
        Some("sample") => {
            args.next();
            return parse_sample_args(args);
        }
        Some("experiment") => {
            args.next();
            if args.peek().is_some_and(|a| a == "-h" || a == "--help") {
                return Ok(Command::Help);
            }
            return experiments::parse(args).map(Command::Experiment);
        }
        Some("report") => {
            args.next();
            return report::parse(args).map(Command::Report);
        }
        _ => {}
    }
    let mut cfg = Config::default();
    let mut endpoints = DEFAULT_ENDPOINT.to_string();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = || flag_value(&flag, inline.as_deref(), &mut args);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--endpoints" => endpoints = value()?,
            "--clients" => {
                let v = value()?;
                cfg.clients = number(&flag, &v, "a whole number of clients")?;
                if !(1..=10_000).contains(&cfg.clients) {
                    return Err(format!("{flag} {v:?}: expected 1 to 10000 clients"));
                }
            }
            "--read-ratio" => {
                let v = value()?;
                cfg.read_ratio = number(&flag, &v, "a number from 0.0 to 1.0")?;
                if !(0.0..=1.0).contains(&cfg.read_ratio) {
                    return Err(format!("{flag} {v:?}: expected a number from 0.0 to 1.0"));
                }
            }
            "--keys" => {
                let v = value()?;
                cfg.keys = number(&flag, &v, "a whole number of keys")?;
                if cfg.keys == 0 {
                    return Err(format!("{flag} {v:?}: expected at least one key"));
                }
            }
            "--value-size" => {
                let v = value()?;
                cfg.value_size = number(&flag, &v, "a size in bytes")?;
                if cfg.value_size > 16 << 20 {
                    return Err(format!("{flag} {v:?}: at most 16 MiB"));
                }
            }
            "--duration" => {
                cfg.duration = seconds(&flag, &value()?, false)?;
                cfg.duration_given = true;
            }
            "--requests" => {
                let v = value()?;
                let n: u64 = number(&flag, &v, "a whole number of requests")?;
                if n == 0 {
                    return Err(format!("{flag} {v:?}: expected at least one request"));
                }
                cfg.requests = Some(n);
            }
            "--warmup" => cfg.warmup = seconds(&flag, &value()?, true)?,
            "--timeout" => cfg.timeout = seconds(&flag, &value()?, false)?,
            "--rate" => {
                let v = value()?;
                let r: f64 = number(&flag, &v, "requests per second")?;
                if !r.is_finite() || r <= 0.0 || r > 1e8 {
                    return Err(format!(
                        "{flag} {v:?}: expected a positive number of requests per second"
                    ));
                }
                cfg.rate = Some(r);
            }
            "--serializable" => {
                if inline.is_some() {
                    return Err("--serializable takes no value".into());
                }
                cfg.serializable = true;
            }
            "--fill" => {
                if inline.is_some() {
                    return Err("--fill takes no value".into());
                }
                cfg.fill = true;
            }
            "--distribution" => {
                let v = value()?;
                cfg.distribution = Distribution::parse(&v).map_err(|e| format!("{flag} {v:?}: {e}"))?;
            }
            "--json" => cfg.json = Some(PathBuf::from(value()?)),
            "--csv" => cfg.csv = Some(PathBuf::from(value()?)),
            "--label" => {
                let v = value()?;
                if v.is_empty() || v.contains(['\n', '\r']) {
                    return Err(format!("{flag} {v:?}: expected a non-empty, one-line name"));
                }
                cfg.label = v;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    cfg.endpoints = endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(Endpoint::parse)
        .collect::<Result<_, _>>()?;
    if cfg.endpoints.is_empty() {
        return Err("--endpoints is empty".into());
    }
    Ok(Command::Run(cfg))
}

const DEFAULT_PLOT_TITLE: &str = "throughput vs p99 latency";
const DEFAULT_DISK_TITLE: &str = "disk use and RSS over time";

/// The arguments of `plot` (`cmd` names it in messages), or of `plot-disk` as a `Plot`.
fn parse_plot_args(cmd: &str, title: &str, mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let (mut title, mut out, mut inputs) = (title.to_string(), None, Vec::new());
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = || flag_value(&flag, inline.as_deref(), &mut args);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--title" => title = value()?,
            "--out" => out = Some(PathBuf::from(value()?)),
            f if f.starts_with('-') && f.len() > 1 => return Err(format!("{cmd}: unknown argument {f:?}")),
            _ => inputs.push(PathBuf::from(arg)),
        }
    }
    if inputs.is_empty() {
        return Err(format!("{cmd}: give at least one CSV file"));
    }
    Ok(Command::Plot {
        title,
        out: out.ok_or_else(|| format!("{cmd}: --out FILE.svg is required"))?,
        inputs,
    })
}

fn parse_sample_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let (mut dirs, mut pids, mut interval, mut out) = (Vec::new(), Vec::new(), Duration::from_secs(1), None);
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = || flag_value(&flag, inline.as_deref(), &mut args);
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--dirs" => {
                dirs = value()?
                    .split(',')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect()
            }
            "--pids" => {
                pids = value()?
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| number::<u32>(&flag, p, "process ids"))
                    .collect::<Result<_, _>>()?;
            }
            "--interval-ms" => {
                let v = value()?;
                let ms: u64 = number(&flag, &v, "milliseconds")?;
                if !(10..=3_600_000).contains(&ms) {
                    return Err(format!("{flag} {v:?}: expected 10 to 3600000 milliseconds"));
                }
                interval = Duration::from_millis(ms);
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("sample: unknown argument {other:?}")),
        }
    }
    if dirs.is_empty() {
        return Err("sample: --dirs DIR,... is required".into());
    }
    if !pids.is_empty() && pids.len() != dirs.len() {
        return Err(format!(
            "sample: {} --pids for {} --dirs: give one pid per directory",
            pids.len(),
            dirs.len()
        ));
    }
    Ok(Command::Sample(SampleArgs {
        dirs,
        pids,
        interval,
        out: out.ok_or("sample: --out FILE.csv is required")?,
    }))
}

// ---------------------------------------------------------------------------------
// HTTP/1.1 client

/// One parsed answer.
#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    body: Vec<u8>,
    /// The server will close the connection after this answer.
    close: bool,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one CRLF (or LF) terminated line, without the terminator; `budget` caps the
/// bytes read over a whole head.
fn read_line<R: BufRead>(r: &mut R, budget: &mut usize) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed by the server",
        ));
    }
    if n > *budget {
        return Err(invalid("response head too long"));
    }
    *budget -= n;
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| invalid("response head is not UTF-8"))
}

/// Reads one HTTP/1.x response (skipping 1xx interim answers). `head_only` is for
/// answers to HEAD, which have no body whatever their headers say.
fn read_response<R: BufRead>(r: &mut R, head_only: bool) -> io::Result<Response> {
    loop {
        let mut budget = MAX_HEAD;
        let status_line = read_line(r, &mut budget)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let keep_alive_default = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            _ => return Err(invalid(format!("not an HTTP/1.x status line: {status_line:?}"))),
        };
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let (mut length, mut chunked, mut close) = (None, false, !keep_alive_default);
        loop {
            let line = read_line(r, &mut budget)?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = value
                        .parse::<usize>()
                        .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(invalid("conflicting Content-Length headers"));
                    }
                    length = Some(n);
                }
                "transfer-encoding" => {
                    let last = value.rsplit(',').next().unwrap_or_default().trim();
                    if last.eq_ignore_ascii_case("chunked") {
                        chunked = true;
                    } else {
                        return Err(invalid(format!("unsupported Transfer-Encoding {value:?}")));
                    }
                }
                "connection" => {
                    for token in value.split(',').map(str::trim) {
                        if token.eq_ignore_ascii_case("close") {
                            close = true;
                        } else if token.eq_ignore_ascii_case("keep-alive") {
                            close = false;
                        }
                    }
                }
                _ => {}
            }
        }
        if (100..200).contains(&status) && status != 101 {
            continue; // interim answer: the real one follows
        }
        let bodyless = head_only || status == 204 || status == 304 || status == 101;
        let body = if bodyless {
            Vec::new()
        } else if chunked {
            read_chunked(r)?
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(invalid(format!("response body of {n} bytes is too large")));
            }
            let mut body = vec![0; n];
            r.read_exact(&mut body)?;
            body
        } else {
            close = true; // the body runs to the end of the connection
            let mut body = Vec::new();
            r.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(invalid("response body too large"));
            }
            body
        };
        return Ok(Response { status, body, close });
    }
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let line = read_line(r, &mut budget)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(r, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("chunked response body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

/// A keep-alive connection to one endpoint.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(addrs: &[SocketAddr], timeout: Duration) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
        for addr in addrs {
            match TcpStream::connect_timeout(addr, timeout.min(Duration::from_secs(5))) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    return Ok(Conn {
                        reader: BufReader::with_capacity(16 << 10, stream),
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sends one `GET` and reads the answer.
    fn get(&mut self, host: &str, path: &str) -> io::Result<Response> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        self.reader.get_mut().write_all(request.as_bytes())?;
        read_response(&mut self.reader, false)
    }

    /// Sends one `POST` with a JSON body and reads the answer.
    fn post(&mut self, host: &str, path: &str, body: &[u8], scratch: &mut Vec<u8>) -> io::Result<Response> {
        scratch.clear();
        let _ = write!(
            scratch,
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        scratch.extend_from_slice(body);
        let stream = self.reader.get_mut();
        stream.write_all(scratch)?;
        read_response(&mut self.reader, false)
    }
}

/// Resolves an endpoint's host name once, at the start.
fn resolve(ep: &Endpoint) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: cannot resolve {:?}: {e}", ep.url, ep.host))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{}: {:?} has no address", ep.url, ep.host));
    }
    Ok(addrs)
}

// ---------------------------------------------------------------------------------
// Load

/// splitmix64: fast, good enough to pick keys and fill values.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// How the load picks its keys.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Distribution {
    Uniform,
    /// YCSB's zipfian generator with this skew (0.99 in YCSB's core workloads).
    Zipfian(f64),
}

/// YCSB's skew for its zipfian request distribution.
const YCSB_THETA: f64 = 0.99;

impl Distribution {
    fn parse(text: &str) -> Result<Distribution, String> {
        match text {
            "uniform" => Ok(Distribution::Uniform),
            "zipfian" => Ok(Distribution::Zipfian(YCSB_THETA)),
            _ => Err("expected uniform or zipfian".into()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian(_) => "zipfian",
        }
    }
}

/// Draws key numbers in `0..n`: uniformly, or as YCSB's `ZipfianGenerator` does (Gray
/// et al., "Quickly generating billion-record synthetic databases", SIGMOD 1994): rank
/// `k` (0-based) has probability `1 / ((k+1)^theta * zeta(n, theta))`, so key 0 is the
/// hottest. The constants are computed once per run (`zeta` is a sum over every key).
#[derive(Debug, Clone, PartialEq)]
struct KeyGen {
    n: u64,
    zipf: Option<Zipf>,
}

#[derive(Debug, Clone, PartialEq)]
struct Zipf {
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

/// `sum_{i=1..n} 1 / i^theta`.
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl KeyGen {
    fn new(d: Distribution, n: u64) -> KeyGen {
        let n = n.max(1);
        let zipf = match d {
            Distribution::Uniform => None,
            Distribution::Zipfian(theta) => {
                let zetan = zeta(n, theta);
                let zeta2 = zeta(2, theta);
                Some(Zipf {
                    theta,
                    alpha: 1.0 / (1.0 - theta),
                    zetan,
                    eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
                })
            }
        };
        KeyGen { n, zipf }
    }

    fn next(&self, rng: &mut Rng) -> u64 {
        let Some(z) = &self.zipf else {
            return rng.below(self.n);
        };
        let u = rng.next_f64();
        let uz = u * z.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(z.theta) {
            return 1.min(self.n - 1);
        }
        let k = (self.n as f64 * (z.eta * u - z.eta + 1.0).powf(z.alpha)) as u64;
        k.min(self.n - 1)
    }

    /// The share of draws rank `k` gets in theory.
    #[cfg(test)]
    fn share(&self, k: u64) -> f64 {
        match &self.zipf {
            None => 1.0 / self.n as f64,
            Some(z) => 1.0 / ((k + 1) as f64).powf(z.theta) / z.zetan,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, 3 digits).
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

/// What one client measured inside the window.
struct Tally {
    all: Histogram<u64>,
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    ok: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    /// Open loop: requests that were due before the end but never sent.
    unsent: u64,
}

impl Tally {
    fn new() -> Self {
        Tally {
            all: new_histogram(),
            reads: new_histogram(),
            writes: new_histogram(),
            ok: 0,
            statuses: BTreeMap::new(),
            errors: 0,
            error_kinds: BTreeMap::new(),
            unsent: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail; a failure would only lose
        // that client's latencies, not counts.
        let _ = self.all.add(&other.all);
        let _ = self.reads.add(&other.reads);
        let _ = self.writes.add(&other.writes);
        self.ok += other.ok;
        self.errors += other.errors;
        self.unsent += other.unsent;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.error_kinds {
            *self.error_kinds.entry(k).or_default() += v;
        }
    }

    fn non_2xx(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Live counters for the progress line (all answers and errors, warm-up included), and
/// the budget of a run with `--requests`.
#[derive(Default)]
struct Live {
    done: AtomicU64,
    errors: AtomicU64,
    /// Tickets held by requests sent after the warm-up; a failed one gives its ticket back.
    claimed: AtomicU64,
    /// Ticketed requests that succeeded.
    succeeded: AtomicU64,
    /// When the last ticketed request succeeded, in µs after the window's start (0: not yet).
    finished_us: AtomicU64,
    /// The next key a put takes with `--fill`.
    next_key: AtomicU64,
}

impl Live {
    /// Takes a ticket for one more request, if fewer than `n` are held or done.
    fn claim(&self, n: u64) -> bool {
        if self.claimed.fetch_add(1, Ordering::SeqCst) < n {
            true
        } else {
            self.claimed.fetch_sub(1, Ordering::SeqCst);
            false
        }
    }

    /// Settles a ticket: a success counts (the `n`th ends the run), a failure frees it.
    fn settle(&self, success: bool, n: u64, win: Window) {
        if !success {
            self.claimed.fetch_sub(1, Ordering::SeqCst);
        } else if self.succeeded.fetch_add(1, Ordering::SeqCst) + 1 == n {
            let us = win.start.elapsed().as_micros().clamp(1, u128::from(u64::MAX)) as u64;
            self.finished_us.store(us, Ordering::SeqCst);
        }
    }

    /// When the run's last request succeeded, if it has.
    fn finished_at(&self, win: Window) -> Option<Instant> {
        match self.finished_us.load(Ordering::SeqCst) {
            0 => None,
            us => Some(win.start + Duration::from_micros(us)),
        }
    }

    /// When the window closes: its end, or earlier once the budget is spent.
    fn stop(&self, win: Window) -> Instant {
        self.finished_at(win).map_or(win.end, |t| t.min(win.end))
    }
}

/// The shared clock of a run.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

fn error_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::InvalidData => format!("bad answer: {e}"),
        kind => kind.to_string(),
    }
}

fn client(
    index: usize,
    cfg: &Config,
    keygen: &KeyGen,
    ep: &Endpoint,
    addrs: &[SocketAddr],
    win: Window,
    live: &Live,
) -> Tally {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (index as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03);
    let mut rng = Rng(seed);
    let mut tally = Tally::new();
    let mut conn: Option<Conn> = None;
    let (mut scratch, mut body, mut raw) = (Vec::new(), String::new(), vec![0u8; cfg.value_size]);
    // Open loop: this client's share of the rate, staggered against the others.
    let interval = cfg.rate.map(|r| Duration::from_secs_f64(cfg.clients as f64 / r));
    let mut next_due = win.start + interval.map_or(Duration::ZERO, |i| i.mul_f64(index as f64 / cfg.clients as f64));
    let host = ep.authority();
    // Every client starts at the window's start (so with no warm-up, every request counts).
    std::thread::sleep(win.start.saturating_duration_since(Instant::now()));
    loop {
        let now = Instant::now();
        if now >= win.end || live.finished_at(win).is_some() {
            break;
        }
        let started = match interval {
            Some(i) => {
                let due = next_due;
                if due >= win.end {
                    break;
                }
                next_due += i;
                if due > now {
                    std::thread::sleep(due - now);
                }
                due
            }
            None => now,
        };
        // With --requests, only requests sent after the warm-up count, each with a ticket.
        let ticket = match cfg.requests {
            Some(n) if started >= win.measure_from => {
                if !live.claim(n) {
                    break;
                }
                Some(n)
            }
            _ => None,
        };
        let read = rng.next_f64() < cfg.read_ratio;
        let n = if cfg.fill && !read {
            live.next_key.fetch_add(1, Ordering::Relaxed) % cfg.keys
        } else {
            keygen.next(&mut rng)
        };
        let key = B64.encode(format!("key-{n}"));
        body.clear();
        let path = if read {
            let extra = if cfg.serializable { ",\"serializable\":true" } else { "" };
            let _ = write!(body, "{{\"key\":\"{key}\"{extra}}}");
            "/v3/kv/range"
        } else {
            for chunk in raw.chunks_mut(8) {
                let r = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            let _ = write!(body, "{{\"key\":\"{key}\",\"value\":\"{}\"}}", B64.encode(&raw));
            "/v3/kv/put"
        };
        let outcome = match conn.as_mut() {
            Some(c) => c.post(host, path, body.as_bytes(), &mut scratch),
            None => match Conn::open(addrs, cfg.timeout) {
                Ok(c) => conn.insert(c).post(host, path, body.as_bytes(), &mut scratch),
                Err(e) => Err(e),
            },
        };
        let done = Instant::now();
        let measured = match ticket {
            Some(_) => done < win.end,
            None => cfg.requests.is_none() && done >= win.measure_from && done < win.end,
        };
        if let Some(n) = ticket {
            let success = measured && outcome.as_ref().is_ok_and(|r| (200..300).contains(&r.status));
            live.settle(success, n, win);
        }
        match outcome {
            Ok(res) => {
                live.done.fetch_add(1, Ordering::Relaxed);
                if res.close {
                    conn = None;
                }
                if measured {
                    let us = (done - started).as_micros().clamp(1, u128::from(MAX_LATENCY_US)) as u64;
                    tally.all.saturating_record(us);
                    if read {
                        tally.reads.saturating_record(us);
                    } else {
                        tally.writes.saturating_record(us);
                    }
                    *tally.statuses.entry(res.status).or_default() += 1;
                    if (200..300).contains(&res.status) {
                        tally.ok += 1;
                    }
                }
            }
            Err(e) => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                let refused = conn.is_none();
                conn = None;
                if measured {
                    tally.errors += 1;
                    *tally.error_kinds.entry(error_kind(&e)).or_default() += 1;
                }
                if refused && interval.is_none() {
                    // Could not even connect: back off a little instead of spinning.
                    std::thread::sleep(Duration::from_millis(50).min(live.stop(win).saturating_duration_since(done)));
                }
            }
        }
    }
    if let Some(i) = interval {
        // Requests due inside the window that this client never got to send.
        let (mut due, stop) = (next_due.max(win.measure_from), live.stop(win));
        while due < stop {
            tally.unsent += 1;
            due += i;
        }
    }
    tally
}

/// Checks that every endpoint answers `/v3/kv/range` before the run; answers their addresses.
fn preflight(cfg: &Config) -> Result<Vec<Vec<SocketAddr>>, String> {
    let mut all = Vec::new();
    for ep in &cfg.endpoints {
        let addrs = resolve(ep)?;
        let mut conn = Conn::open(&addrs, cfg.timeout.min(Duration::from_secs(5)))
            .map_err(|e| format!("{}: cannot connect: {e}", ep.url))?;
        let probe = format!("{{\"key\":\"{}\"}}", B64.encode("key-0"));
        let res = conn
            .post(ep.authority(), "/v3/kv/range", probe.as_bytes(), &mut Vec::new())
            .map_err(|e| format!("{}: no HTTP answer to POST /v3/kv/range: {e}", ep.url))?;
        match res.status {
            200..=299 => {}
            404 | 405 => {
                return Err(format!(
                    "{}: POST /v3/kv/range answered {}: not an etcd v3 JSON gateway",
                    ep.url, res.status
                ));
            }
            s => eprintln!(
                "rolepax-bench: warning: {}: probe answered {s}: {}",
                ep.url,
                String::from_utf8_lossy(&res.body).trim()
            ),
        }
        all.push(addrs);
    }
    Ok(all)
}

/// Longest run with `--requests` and no `--duration` (as long as `--duration` allows).
const NO_TIME_LIMIT: Duration = Duration::from_secs(10_000_000);

/// Runs the load, printing progress on stderr; answers the merged tally and the
/// measured time.
fn run(cfg: &Config, addrs: &[Vec<SocketAddr>]) -> (Tally, Duration) {
    let start = Instant::now() + Duration::from_millis(20);
    let limit = if cfg.requests.is_some() && !cfg.duration_given {
        NO_TIME_LIMIT
    } else {
        cfg.duration
    };
    let win = Window {
        start,
        measure_from: start + cfg.warmup,
        end: start + cfg.warmup + limit,
    };
    let live = Arc::new(Live::default());
    let keygen = KeyGen::new(cfg.distribution, cfg.keys);
    let mut total = Tally::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.clients)
            .map(|i| {
                let n = i % cfg.endpoints.len();
                let (ep, addrs, live, keygen) = (&cfg.endpoints[n], &addrs[n], &live, &keygen);
                s.spawn(move || client(i, cfg, keygen, ep, addrs, win, live))
            })
            .collect();
        if io::stderr().is_terminal() {
            progress(cfg, win, &live);
        }
        for h in handles {
            match h.join() {
                Ok(t) => total.merge(t),
                Err(_) => {
                    total.errors += 1;
                    *total.error_kinds.entry("client thread panicked".into()).or_default() += 1;
                }
            }
        }
    });
    if io::stderr().is_terminal() {
        eprint!("\r{:79}\r", "");
    }
    (total, live.stop(win).saturating_duration_since(win.measure_from))
}

/// The `\r` progress line, until the window ends.
fn progress(cfg: &Config, win: Window, live: &Live) {
    let total = (cfg.warmup + cfg.duration).as_secs_f64();
    let (mut last_t, mut last_n) = (Instant::now(), 0u64);
    let tick = Duration::from_millis(500);
    loop {
        let now = Instant::now();
        if now >= live.stop(win) {
            break;
        }
        std::thread::sleep(tick.min(live.stop(win) - now));
        let now = Instant::now();
        let n = live.done.load(Ordering::Relaxed);
        let rate = (n - last_n) as f64 / (now - last_t).as_secs_f64().max(1e-3);
        (last_t, last_n) = (now, n);
        let phase = if now < win.measure_from { "warm-up" } else { "running" };
        let elapsed = now.saturating_duration_since(win.start).as_secs_f64();
        let clock = match cfg.requests {
            Some(n) => format!("{elapsed:5.1} s, {}/{n} ok", live.succeeded.load(Ordering::Relaxed)),
            None => format!("{elapsed:5.1}/{total:.1} s"),
        };
        eprint!(
            "\r{phase} {clock}  {rate:9.0} req/s  errors {:<8}",
            live.errors.load(Ordering::Relaxed)
        );
        let _ = io::stderr().flush();
    }
}

// ---------------------------------------------------------------------------------
// Reports

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "count": h.len(),
        "mean_ms": round3(h.mean() / 1000.0),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

fn summary_json(cfg: &Config, t: &Tally, measured: Duration, started_unix: u64) -> Value {
    let answered = t.statuses.values().sum::<u64>();
    json!({
        "label": cfg.label,
        "started_unix": started_unix,
        "endpoints": cfg.endpoints.iter().map(|e| e.url.clone()).collect::<Vec<_>>(),
        "clients": cfg.clients,
        "read_ratio": cfg.read_ratio,
        "keys": cfg.keys,
        "value_size": cfg.value_size,
        "duration_s": measured.as_secs_f64(),
        "warmup_s": cfg.warmup.as_secs_f64(),
        "target_requests": cfg.requests,
        "target_rate": cfg.rate,
        "serializable": cfg.serializable,
        "distribution": cfg.distribution.name(),
        "requests": answered + t.errors,
        "ok": t.ok,
        "non_2xx": t.non_2xx(),
        "errors": t.errors,
        "unsent": t.unsent,
        "statuses": t.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "error_kinds": t.error_kinds,
        "throughput_rps": round3(t.ok as f64 / measured.as_secs_f64()),
        "latency": latency_json(&t.all),
        "reads": latency_json(&t.reads),
        "writes": latency_json(&t.writes),
    })
}

const CSV_COLUMNS: [&str; 22] = [
    "label",
    "started_unix",
    "endpoints",
    "clients",
    "read_ratio",
    "keys",
    "value_size",
    "duration_s",
    "warmup_s",
    "target_rate",
    "serializable",
    "requests",
    "ok",
    "non_2xx",
    "errors",
    "throughput_rps",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
];

fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(csv_field).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_row(summary: &Value) -> String {
    CSV_COLUMNS
        .iter()
        .map(|c| match summary.get(*c) {
            Some(v) => csv_field(v),
            None => csv_field(&summary["latency"][*c]),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Appends `line` (plus a newline) to `path`, or prints it for `-`; `header` goes first
/// when the file is new or empty.
fn append_line(path: &Path, header: Option<&str>, line: &str) -> io::Result<()> {
    if path == Path::new("-") {
        println!("{line}");
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut text = String::new();
    if let Some(h) = header
        && f.metadata()?.len() == 0
    {
        text.push_str(h);
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    f.write_all(text.as_bytes())
}

fn print_summary(cfg: &Config, t: &Tally, summary: &Value, measured: Duration) {
    let mut mode = match cfg.rate {
        Some(r) => format!("open loop at {r} req/s"),
        None => "closed loop".into(),
    };
    if let Some(n) = cfg.requests {
        let _ = write!(mode, " until {n} requests succeeded");
    }
    println!(
        "{}: {} clients, {mode}, read ratio {}, {} keys, {}-byte values, {:.1} s measured after {:.1} s warm-up",
        cfg.label,
        cfg.clients,
        cfg.read_ratio,
        cfg.keys,
        cfg.value_size,
        measured.as_secs_f64(),
        cfg.warmup.as_secs_f64()
    );
    let eps: Vec<&str> = cfg.endpoints.iter().map(|e| e.url.as_str()).collect();
    println!("endpoints:  {}", eps.join(" "));
    println!(
        "requests:   {} (ok {}, non-2xx {}, errors {}{})",
        summary["requests"],
        t.ok,
        t.non_2xx(),
        t.errors,
        if cfg.rate.is_some() {
            format!(", due but unsent {}", t.unsent)
        } else {
            String::new()
        }
    );
    println!(
        "throughput: {:.1} req/s",
        summary["throughput_rps"].as_f64().unwrap_or(0.0)
    );
    for (name, h) in [
        ("latency:   ", &t.all),
        ("  reads:   ", &t.reads),
        ("  writes:  ", &t.writes),
    ] {
        if h.is_empty() || (name != "latency:   " && (cfg.read_ratio == 0.0 || cfg.read_ratio == 1.0)) {
            continue;
        }
        println!(
            "{name} mean {:.3} ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms",
            h.mean() / 1000.0,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max())
        );
    }
    let odd: Vec<String> = t
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(s, n)| format!("{s} x{n}"))
        .collect();
    if !odd.is_empty() {
        println!("non-2xx:    {}", odd.join(", "));
    }
    if !t.error_kinds.is_empty() {
        let kinds: Vec<String> = t.error_kinds.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!("errors:     {}", kinds.join(", "));
    }
}

fn bench(cfg: &Config) -> ExitCode {
    let addrs = match preflight(cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rolepax-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (tally, measured) = run(cfg, &addrs);
    let summary = summary_json(cfg, &tally, measured, started_unix);
    print_summary(cfg, &tally, &summary, measured);
    let mut failed = false;
    if let Some(path) = &cfg.json
        && let Err(e) = append_line(path, None, &summary.to_string())
    {
        eprintln!("rolepax-bench: cannot write {}: {e}", path.display());
        failed = true;
    }
    if let Some(path) = &cfg.csv
        && let Err(e) = append_line(path, Some(&CSV_COLUMNS.join(",")), &csv_row(&summary))
    {
        eprintln!("rolepax-bench: cannot write {}: {e}", path.display());
        failed = true;
    }
    if failed {
        ExitCode::from(2)
    } else if tally.ok == 0 {
        eprintln!("rolepax-bench: no request succeeded in the measured window");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------------------------
// Plot

/// Splits one CSV line (quotes as written by [`csv_field`]).
fn split_csv(line: &str) -> Vec<String> {
    let (mut fields, mut cur, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// One point: (clients, throughput, p99 ms), per label in order of appearance.
type Series = Vec<(String, Vec<(u64, f64, f64)>)>;

fn read_series(texts: &[String]) -> Result<Series, String> {
    let mut series: Series = Vec::new();
    for text in texts {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = split_csv(lines.next().ok_or("an empty CSV file")?);
        let col = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| format!("CSV without a {name} column"))
        };
        let (label, clients, rps, p99) = (col("label")?, col("clients")?, col("throughput_rps")?, col("p99_ms")?);
        for line in lines {
            let f = split_csv(line);
            if f.first() == header.first() {
                continue; // a header repeated by concatenated files
            }
            let get = |i: usize| f.get(i).map(String::as_str).unwrap_or_default();
            let (Ok(c), Ok(x), Ok(y)) = (get(clients).parse(), get(rps).parse(), get(p99).parse()) else {
                continue; // a run without successful requests has no p99
            };
            let name = get(label).to_string();
            match series.iter_mut().find(|(n, _)| *n == name) {
                Some((_, pts)) => pts.push((c, x, y)),
                None => series.push((name, vec![(c, x, y)])),
            }
        }
    }
    for (_, pts) in &mut series {
        pts.sort_by_key(|p| p.0);
    }
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Err("no plottable rows (label, clients, throughput_rps, p99_ms)".into());
    }
    Ok(series)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round step for about `n` ticks over `0..max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A tick label: at most three decimals, none when whole.
fn tick_label(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    if r == r.trunc() {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

/// The rectangle of one chart inside an SVG, with its legend to the right.
#[derive(Clone, Copy)]
struct Panel {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
}

impl Panel {
    /// A chart `h` high from `top`, in the column every plot here uses (legend at its right).
    fn at(top: f64, h: f64) -> Panel {
        Panel {
            left: 70.0,
            top,
            w: 520.0,
            h,
        }
    }

    /// Maps `v` in `0..=max` to an x coordinate.
    fn x(&self, v: f64, max: f64) -> f64 {
        self.left + v / max * self.w
    }

    /// Maps `v` in `0..=max` to a y coordinate (up is more).
    fn y(&self, v: f64, max: f64) -> f64 {
        self.top + self.h - v / max * self.h
    }
}

/// The opening of a hand-written SVG of `w` x `h`: the root element (sans-serif text of
/// `font` px), a white background, and `title` centred at `at` with `title_style`
/// attributes. The benchmark plots and the evaluation charts (`charts`) both start so.
fn svg_open(w: f64, h: f64, font: u32, at: (f64, f64), title_style: &str, title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"sans-serif\" font-size=\"{font}\">"
    );
    let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" {title_style}>{}</text>",
        at.0,
        at.1,
        xml_escape(title)
    );
    s
}

/// An SVG being written by hand: header, white background and a title.
struct Svg(String);

impl Svg {
    fn new(w: f64, h: f64, title: &str, title_x: f64) -> Svg {
        Svg(svg_open(w, h, 12, (title_x, 22.0), "font-size=\"15\"", title))
    }

    /// Vertical grid lines and labels under `p` for a linear x axis from 0 to at least
    /// `max` in about `n` steps; answers the axis's end.
    fn x_axis(&mut self, p: Panel, max: f64, n: f64) -> f64 {
        let step = nice_step(max.max(1e-9), n);
        let top = (max / step).ceil().max(1.0) * step;
        for k in 0..=((top / step).round() as u64) {
            let v = k as f64 * step;
            let px = p.x(v, top);
            let _ = writeln!(
                self.0,
                "<line x1=\"{px:.1}\" y1=\"{}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                p.top,
                p.top + p.h,
                p.top + p.h + 16.0,
                tick_label(v)
            );
        }
        top
    }

    /// Horizontal grid lines and labels left of `p` for a linear y axis, as [`Svg::x_axis`].
    fn y_axis(&mut self, p: Panel, max: f64, n: f64) -> f64 {
        let step = nice_step(max.max(1e-9), n);
        let top = (max / step).ceil().max(1.0) * step;
        for k in 0..=((top / step).round() as u64) {
            let v = k as f64 * step;
            self.y_grid_line(p, p.y(v, top), &tick_label(v), "#ddd");
        }
        top
    }

    fn y_grid_line(&mut self, p: Panel, py: f64, label: &str, stroke: &str) {
        let _ = writeln!(
            self.0,
            "<line x1=\"{}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"{stroke}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
            p.left,
            p.left + p.w,
            p.left - 6.0,
            py + 4.0
        );
    }

    /// The panel's border and its axis titles.
    fn frame(&mut self, p: Panel, x_title: &str, y_title: &str) {
        let _ = writeln!(
            self.0,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{x_title}</text>\
             <text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\">{y_title}</text>",
            p.left,
            p.top,
            p.w,
            p.h,
            p.left + p.w / 2.0,
            p.top + p.h + 38.0,
            p.top + p.h / 2.0
        );
    }

    /// A line through `points` (already in SVG coordinates).
    fn polyline(&mut self, points: impl Iterator<Item = (f64, f64)>, color: &str, dashed: bool) {
        let path: Vec<String> = points.map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let dash = if dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            self.0,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>",
            path.join(" ")
        );
    }

    /// Entry `i` of the legend right of `p`.
    fn legend(&mut self, p: Panel, i: usize, color: &str, dashed: bool, name: &str) {
        let ly = p.top + 10.0 + 20.0 * i as f64;
        let dash = if dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            self.0,
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"3\"{dash}/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            p.left + p.w + 12.0,
            p.left + p.w + 32.0,
            p.left + p.w + 38.0,
            ly + 4.0,
            xml_escape(name)
        );
    }

    fn finish(mut self) -> String {
        self.0.push_str("</svg>\n");
        self.0
    }
}

fn render_svg(title: &str, series: &Series) -> String {
    let p = Panel::at(40.0, 390.0);
    let mut svg = Svg::new(760.0, 480.0, title, p.left + p.w / 2.0);
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let max_x = pts.clone().map(|p| p.1).fold(0.0f64, f64::max).max(1.0);
    let (min_y, max_y) = pts
        .map(|p| p.2.max(1e-3))
        .fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let x_top = svg.x_axis(p, max_x, 6.0);
    let (lo_dec, hi_dec) = (
        min_y.log10().floor(),
        max_y.log10().ceil().max(min_y.log10().floor() + 1.0),
    );
    let sx = |x: f64| p.x(x, x_top);
    let sy = |y: f64| p.y(y.max(1e-3).log10() - lo_dec, hi_dec - lo_dec);
    let mut dec = lo_dec;
    while dec <= hi_dec + 0.5 {
        for m in [1.0, 2.0, 5.0] {
            let y = m * 10f64.powf(dec);
            if y.log10() > hi_dec + 1e-9 {
                continue;
            }
            svg.y_grid_line(p, sy(y), &y.to_string(), if m == 1.0 { "#bbb" } else { "#eee" });
        }
        dec += 1.0;
    }
    svg.frame(p, "throughput (req/s)", "p99 latency (ms, log scale)");
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        svg.polyline(points.iter().map(|q| (sx(q.1), sy(q.2))), color, false);
        for (c, x, y) in points {
            let _ = writeln!(
                svg.0,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"><title>{} clients={c}: {x:.0} req/s, \
                 p99 {y} ms</title></circle><text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"10\">c{c}</text>",
                sx(*x),
                sy(*y),
                xml_escape(name),
                sx(*x) + 6.0,
                sy(*y) - 6.0
            );
        }
        svg.legend(p, i, color, false, name);
    }
    svg.finish()
}

/// Writes what subcommand `cmd` drew to `out`, or says why there is nothing; answers
/// whether the SVG was written.
fn write_svg(cmd: &str, out: &Path, drawn: Result<String, String>) -> bool {
    let written =
        drawn.and_then(|svg| std::fs::write(out, svg).map_err(|e| format!("cannot write {}: {e}", out.display())));
    if let Err(e) = &written {
        eprintln!("rolepax-bench {cmd}: {e}");
    }
    written.is_ok()
}

fn plot(title: &str, out: &Path, inputs: &[PathBuf]) -> ExitCode {
    let mut texts = Vec::new();
    for p in inputs {
        match std::fs::read_to_string(p) {
            Ok(t) => texts.push(t),
            Err(e) => {
                eprintln!("rolepax-bench plot: cannot read {}: {e}", p.display());
                return ExitCode::from(2);
            }
        }
    }
    if write_svg("plot", out, read_series(&texts).map(|s| render_svg(title, &s))) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

// ---------------------------------------------------------------------------------
// Disk and memory samples

const MIB: f64 = (1u64 << 20) as f64;
/// The issue's bound on a node's data directory: this many times its latest snapshot...
const BOUND_SNAPSHOTS: u64 = 3;
/// ...plus this much.
const BOUND_SLACK: u64 = 64 << 20;

/// Allocated bytes (512-byte blocks, as `du` counts) and apparent sizes of every file
/// below `dir`. Files deleted while the walk runs are skipped; a missing `dir` is empty.
fn dir_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut allocated, mut apparent) = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                allocated += meta.blocks() * 512;
                apparent += meta.len();
            }
        }
    }
    (allocated, apparent)
}

/// Resident memory of a running process (`VmRSS`); `None` once it is gone (or a zombie).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    kib.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

fn sample_header(nodes: usize) -> String {
    let mut h = String::from("time_s,unix_ms");
    for n in 1..=nodes {
        let _ = write!(h, ",disk_{n},apparent_{n},snapshot_{n},rss_{n}");
    }
    h
}

/// One CSV row for the moment `t` seconds after the start.
fn sample_row(a: &SampleArgs, t: f64) -> String {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut row = format!("{t:.3},{unix_ms}");
    for (i, dir) in a.dirs.iter().enumerate() {
        let (allocated, apparent) = dir_bytes(dir);
        let snapshot = std::fs::metadata(dir.join("snapshot.bin")).map_or(0, |m| m.len());
        let rss = a
            .pids
            .get(i)
            .and_then(|p| rss_bytes(*p))
            .map_or(String::new(), |r| r.to_string());
        let _ = write!(row, ",{allocated},{apparent},{snapshot},{rss}");
    }
    row
}

fn sample(a: &SampleArgs) -> ExitCode {
    let opened: io::Result<Box<dyn Write>> = if a.out == Path::new("-") {
        Ok(Box::new(io::stdout()))
    } else {
        std::fs::File::create(&a.out).map(|f| Box::new(f) as Box<dyn Write>)
    };
    let mut out = match opened {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rolepax-bench sample: cannot write {}: {e}", a.out.display());
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let mut line = sample_header(a.dirs.len());
    for k in 1u32.. {
        // Each row goes out whole and at once, so SIGTERM or Ctrl-C loses nothing written.
        line.push('\n');
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            eprintln!("rolepax-bench sample: cannot write {}: {e}", a.out.display());
            return ExitCode::from(2);
        }
        if !a.pids.is_empty() && a.pids.iter().all(|p| rss_bytes(*p).is_none()) {
            break;
        }
        std::thread::sleep((start + a.interval * (k - 1)).saturating_duration_since(Instant::now()));
        line = sample_row(a, start.elapsed().as_secs_f64());
    }
    ExitCode::SUCCESS
}

/// One node's samples: (seconds, disk bytes, snapshot bytes, RSS bytes if running).
/// Disk is the larger of allocated and apparent bytes, so neither preallocation nor
/// sparse files make it look smaller.
struct DiskTrack {
    node: String,
    points: Vec<(f64, u64, u64, Option<u64>)>,
}

impl DiskTrack {
    fn bound(snapshot: u64) -> u64 {
        BOUND_SNAPSHOTS * snapshot + BOUND_SLACK
    }

    /// The largest share of its bound a sample used.
    fn worst_ratio(&self) -> f64 {
        self.points
            .iter()
            .map(|p| p.1 as f64 / Self::bound(p.2) as f64)
            .fold(0.0, f64::max)
    }

    fn rss(&self) -> impl Iterator<Item = u64> + '_ {
        self.points.iter().filter_map(|p| p.3)
    }

    /// One line of the summary table.
    fn summary(&self) -> String {
        let worst = self.worst_ratio();
        let peak = self.points.iter().map(|p| p.1).max().unwrap_or(0);
        let snap = self.points.last().map_or(0, |p| p.2);
        let mib = |b: Option<u64>| b.map_or("-".to_string(), |b| format!("{:.1}", b as f64 / MIB));
        format!(
            "{:<5} {:>7} {:>13} {:>18} {:>17.3} {:>6}   {} / {} / {}",
            self.node,
            self.points.len(),
            mib(Some(peak)),
            mib(Some(snap)),
            worst,
            if worst < 1.0 { "PASS" } else { "FAIL" },
            mib(self.rss().next()),
            mib(self.rss().max()),
            mib(self.rss().last())
        )
    }
}

const DISK_SUMMARY_HEADER: &str =
    "node  samples  peak disk MiB  last snapshot MiB  worst disk/bound  check   RSS MiB first / peak / last";

/// Parses the CSV written by `sample`: one track per `disk_N` column.
fn read_disk_samples(text: &str) -> Result<Vec<DiskTrack>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("an empty samples file")?.split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("samples without a {name} column"))
    };
    let time = col("time_s")?;
    let mut columns = Vec::new();
    for node in header.iter().filter_map(|h| h.strip_prefix("disk_")) {
        let c = [
            col(&format!("disk_{node}"))?,
            col(&format!("apparent_{node}"))?,
            col(&format!("snapshot_{node}"))?,
            col(&format!("rss_{node}"))?,
        ];
        columns.push((node.to_string(), c));
    }
    if columns.is_empty() {
        return Err("samples without disk_N columns".into());
    }
    let mut tracks: Vec<DiskTrack> = columns
        .iter()
        .map(|(node, _)| DiskTrack {
            node: node.clone(),
            points: Vec::new(),
        })
        .collect();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let bad = |what: &str| format!("samples row {}: bad {what}: {line:?}", i + 2);
        let num = |c: usize| f.get(c).and_then(|v| v.parse::<u64>().ok());
        let t: f64 = f.get(time).and_then(|v| v.parse().ok()).ok_or_else(|| bad("time_s"))?;
        for (track, (_, [disk, apparent, snapshot, rss])) in tracks.iter_mut().zip(&columns) {
            let (Some(d), Some(a), Some(s)) = (num(*disk), num(*apparent), num(*snapshot)) else {
                return Err(bad(&format!("disk_{}", track.node)));
            };
            track.points.push((t, d.max(a), s, num(*rss)));
        }
    }
    if tracks[0].points.is_empty() {
        return Err("samples without rows".into());
    }
    Ok(tracks)
}

/// Disk use against its bound (top) and RSS (bottom) over time, one color per node.
fn render_disk_svg(title: &str, tracks: &[DiskTrack]) -> String {
    let (disk, rss) = (Panel::at(40.0, 360.0), Panel::at(460.0, 200.0));
    let mut svg = Svg::new(800.0, 720.0, title, disk.left + disk.w / 2.0);
    let all = || tracks.iter().flat_map(|t| t.points.iter());
    let max_t = all().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let max_disk = all().map(|p| p.1.max(DiskTrack::bound(p.2))).max().unwrap_or(0) as f64 / MIB;
    let max_rss = all().filter_map(|p| p.3).max().unwrap_or(0) as f64 / MIB;
    let (t_top, disk_top, rss_top) = (
        svg.x_axis(disk, max_t, 8.0),
        svg.y_axis(disk, max_disk.max(1.0), 6.0),
        svg.y_axis(rss, max_rss.max(1.0), 4.0),
    );
    svg.x_axis(rss, max_t, 8.0);
    svg.frame(disk, "time (s)", "data directory (MiB)");
    svg.frame(rss, "time (s)", "RSS (MiB)");
    for (i, track) in tracks.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let at = |p: Panel, t: f64, v: u64, top: f64| (p.x(t, t_top), p.y(v as f64 / MIB, top));
        svg.polyline(track.points.iter().map(|q| at(disk, q.0, q.1, disk_top)), color, false);
        svg.polyline(
            track
                .points
                .iter()
                .map(|q| at(disk, q.0, DiskTrack::bound(q.2), disk_top)),
            color,
            true,
        );
        let running = track
            .points
            .iter()
            .filter_map(|q| q.3.map(|r| at(rss, q.0, r, rss_top)));
        svg.polyline(running, color, false);
        svg.legend(disk, i, color, false, &format!("node {}", track.node));
        svg.legend(rss, i, color, false, &format!("node {}", track.node));
    }
    let n = tracks.len();
    svg.legend(disk, n + 1, "#555", false, "data directory");
    svg.legend(disk, n + 2, "#555", true, "3 × snapshot + 64 MiB");
    svg.finish()
}

fn plot_disk(title: &str, out: &Path, input: &Path) -> ExitCode {
    let tracks = match std::fs::read_to_string(input) {
        Ok(text) => read_disk_samples(&text),
        Err(e) => Err(format!("cannot read {}: {e}", input.display())),
    };
    let drawn = tracks
        .as_ref()
        .map(|t| render_disk_svg(title, t))
        .map_err(String::clone);
    let (true, Ok(tracks)) = (write_svg("plot-disk", out, drawn), tracks) else {
        return ExitCode::from(2);
    };
    println!("{DISK_SUMMARY_HEADER}");
    for t in &tracks {
        println!("{}", t.summary());
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    match parse_args(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}\n\n{}", experiments::EXPERIMENT_USAGE);
            ExitCode::SUCCESS
        }
        Ok(Command::Run(cfg)) => bench(&cfg),
        Ok(Command::Plot { title, out, inputs }) => plot(&title, &out, &inputs),
        Ok(Command::Sample(a)) => sample(&a),
        Ok(Command::PlotDisk { title, out, input }) => plot_disk(&title, &out, &input),
        Ok(Command::Experiment(a)) => ExitCode::from(experiments::main(&a)),
        Ok(Command::Report(a)) => match report::main(&a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rolepax-bench report: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("rolepax-bench: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Command, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    fn cfg(s: &str) -> Config {
        match args(s) {
            Ok(Command::Run(c)) => c,
            other => panic!("{s:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = cfg("");
        assert_eq!(c.endpoints, vec![Endpoint::parse("http://127.0.0.1:7201").unwrap()]);
        assert_eq!((c.clients, c.read_ratio, c.keys, c.value_size), (16, 0.0, 100_000, 128));
        assert_eq!(
            (c.duration, c.warmup),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
        assert_eq!((c.rate, c.serializable, c.json, c.csv), (None, false, None, None));
        assert_eq!((c.requests, c.duration_given), (None, false));
    }

    #[test]
    fn requests_parse_and_make_duration_a_limit_only_when_given() {
        let c = cfg("--requests 5000");
        assert_eq!((c.requests, c.duration_given), (Some(5000), false));
        let c = cfg("--requests=7 --duration 3");
        assert_eq!(
            (c.requests, c.duration_given, c.duration),
            (Some(7), true, Duration::from_secs(3))
        );
        for bad in ["--requests 0", "--requests -1", "--requests lots", "--requests"] {
            assert!(args(bad).is_err_and(|e| e.contains("--requests")), "{bad}");
        }
    }

    #[test]
    fn tickets_make_exactly_n_successes() {
        let start = Instant::now();
        let win = Window {
            start,
            measure_from: start,
            end: start + Duration::from_secs(60),
        };
        let live = Live::default();
        assert!(live.claim(2) && live.claim(2));
        assert!(!live.claim(2), "both tickets are held");
        live.settle(false, 2, win);
        assert!(live.claim(2), "a failure gives its ticket back");
        live.settle(true, 2, win);
        assert_eq!(live.finished_at(win), None);
        live.settle(true, 2, win);
        assert!(live.finished_at(win).is_some_and(|t| t >= start && t <= live.stop(win)));
        assert!(!live.claim(2));
    }

    #[test]
    fn sample_and_plot_disk_arguments() {
        match args("sample --dirs a,b --pids 10,11 --interval-ms=250 --out s.csv") {
            Ok(Command::Sample(a)) => {
                assert_eq!(a.dirs, vec![PathBuf::from("a"), PathBuf::from("b")]);
                assert_eq!((a.pids, a.interval), (vec![10, 11], Duration::from_millis(250)));
                assert_eq!(a.out, PathBuf::from("s.csv"));
            }
            other => panic!("{other:?}"),
        }
        match args("sample --dirs a --out s.csv") {
            Ok(Command::Sample(a)) => assert_eq!((a.pids.len(), a.interval), (0, Duration::from_secs(1))),
            other => panic!("{other:?}"),
        }
        for (line, mentions) in [
            ("sample --out s.csv", "--dirs"),
            ("sample --dirs a", "--out"),
            ("sample --dirs a,b --pids 1 --out s", "one pid per directory"),
            ("sample --dirs a --pids x --out s", "--pids"),
            ("sample --dirs a --interval-ms 0 --out s", "--interval-ms"),
            ("plot-disk --out a.svg", "plot-disk: give at least one"),
            ("plot-disk --out a.svg x.csv y.csv", "exactly one"),
            ("plot-disk x.csv", "plot-disk: --out"),
        ] {
            assert!(
                args(line).is_err_and(|e| e.contains(mentions)),
                "{line:?} should mention {mentions:?}"
            );
        }
        match args("plot-disk --out d.svg s.csv") {
            Ok(Command::PlotDisk { title, out, input }) => {
                assert_eq!(
                    (title.as_str(), out, input),
                    (DEFAULT_DISK_TITLE, "d.svg".into(), "s.csv".into())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn disk_samples_check_the_bound_on_the_larger_measure() {
        let mib = 1u64 << 20;
        let text = format!(
            "{}\n0.0,1,{},{},0,{}\n1.0,2,{},{},{},\n",
            sample_header(1),
            10 * mib,
            mib,
            50 * mib,
            // apparent larger than allocated (a sparse file) counts: 90 of 64 + 3 x 8 MiB
            mib,
            90 * mib,
            8 * mib
        );
        let tracks = read_disk_samples(&text).unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].points.len(), 2);
        assert!((tracks[0].worst_ratio() - 90.0 / 88.0).abs() < 1e-9);
        let line = tracks[0].summary();
        assert!(line.contains("FAIL") && line.contains("50.0 / 50.0 / 50.0"), "{line}");
        let svg = render_disk_svg("a <b>", &tracks);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("stroke-dasharray"));
        // Disk, its bound and RSS: three lines for the node.
        assert_eq!(svg.matches("<polyline").count(), 3);
        for bad in ["", "time_s,unix_ms\n1,2\n", "time_s,disk_1\n0,1\n"] {
            assert!(read_disk_samples(bad).is_err(), "{bad:?}");
        }
        let ragged = format!("{}\n0.0,1,5\n", sample_header(1));
        assert!(read_disk_samples(&ragged).is_err_and(|e| e.contains("row 2")));
    }

    #[test]
    fn tick_labels_are_round() {
        assert_eq!(tick_label(0.30000000000000004), "0.3");
        assert_eq!(tick_label(2500.0), "2500");
    }

    #[test]
    fn every_flag_parses_in_both_spellings() {
        let c = cfg(
            "--endpoints=http://a:1,b:2/ --clients 4 --read-ratio=0.25 --keys 10 --value-size 0 \
             --duration 1.5 --warmup 0 --rate 100 --serializable --fill --timeout 3 --json out.json --csv=o.csv --label x \
             --distribution zipfian",
        );
        assert!(c.fill);
        assert_eq!(c.distribution, Distribution::Zipfian(YCSB_THETA));
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!((c.endpoints[1].host.as_str(), c.endpoints[1].port), ("b", 2));
        assert_eq!((c.clients, c.read_ratio, c.keys, c.value_size), (4, 0.25, 10, 0));
        assert_eq!(c.duration, Duration::from_millis(1500));
        assert_eq!((c.warmup, c.rate, c.serializable), (Duration::ZERO, Some(100.0), true));
        assert_eq!(c.json, Some(PathBuf::from("out.json")));
        assert_eq!(c.csv, Some(PathBuf::from("o.csv")));
        assert_eq!((c.label.as_str(), c.timeout), ("x", Duration::from_secs(3)));
        assert_eq!(args("--clients 2 -h"), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_are_refused_with_the_flag_named() {
        for (line, mentions) in [
            ("--clients 0", "--clients"),
            ("--clients many", "--clients"),
            ("--read-ratio 1.5", "--read-ratio"),
            ("--read-ratio NaN", "--read-ratio"),
            ("--keys 0", "--keys"),
            ("--duration 0", "--duration"),
            ("--duration -1", "--duration"),
            ("--warmup inf", "--warmup"),
            ("--rate 0", "--rate"),
            ("--json", "--json needs a value"),
            ("--serializable=yes", "--serializable"),
            ("--frobnicate", "--frobnicate"),
            ("--distribution pareto", "--distribution"),
            ("--endpoints ,", "empty"),
            ("--endpoints https://x:1", "only http://"),
            ("--endpoints http://x:1/v3", "no path"),
            ("--endpoints http://x:99999", "bad port"),
            ("--endpoints http://:80", "no host"),
            ("--endpoints ::1", "brackets"),
        ] {
            match args(line) {
                Err(e) => assert!(e.contains(mentions), "{line:?}: {e:?} should mention {mentions:?}"),
                Ok(c) => panic!("{line:?} was accepted as {c:?}"),
            }
        }
    }

    #[test]
    fn endpoints_are_normalized() {
        let e = Endpoint::parse(" http://[::1]:2379/ ").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.url.as_str()),
            ("::1", 2379, "http://[::1]:2379")
        );
        assert_eq!(e.authority(), "[::1]:2379");
        let e = Endpoint::parse("localhost").unwrap();
        assert_eq!(e.url, "http://localhost:80");
    }

    #[test]
    fn plot_arguments() {
        match args("plot --out a.svg --title T x.csv y.csv") {
            Ok(Command::Plot { title, out, inputs }) => {
                assert_eq!((title.as_str(), out), ("T", PathBuf::from("a.svg")));
                assert_eq!(inputs.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(args("plot x.csv").is_err_and(|e| e.contains("--out")));
        assert!(args("plot --out a.svg").is_err_and(|e| e.contains("CSV")));
    }

    fn parse(raw: &str) -> io::Result<Response> {
        read_response(&mut io::Cursor::new(raw.as_bytes()), false)
    }

    #[test]
    fn content_length_bodies_and_keep_alive() {
        let two = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-type: x\r\n\r\nhelloHTTP/1.1 503 Busy\r\n\
                   content-length:2\r\n\r\nnoHTTP/1.1 204 No Content\r\n\r\n";
        let mut r = io::Cursor::new(two.as_bytes());
        let a = read_response(&mut r, false).unwrap();
        assert_eq!((a.status, a.body.as_slice(), a.close), (200, &b"hello"[..], false));
        let b = read_response(&mut r, false).unwrap();
        assert_eq!((b.status, b.body.as_slice()), (503, &b"no"[..]));
        let c = read_response(&mut r, false).unwrap();
        assert_eq!((c.status, c.body.len()), (204, 0));
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers() {
        let raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n\
                   0\r\nX-Trailer: t\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 1\n\nz";
        let mut r = io::Cursor::new(raw.as_bytes());
        let a = read_response(&mut r, false).unwrap();
        assert_eq!(a.body, b"hello, world!!!");
        // The next answer on the connection is intact (bare LF line ends too).
        assert_eq!(read_response(&mut r, false).unwrap().body, b"z");
    }

    #[test]
    fn close_delimited_interim_and_connection_headers() {
        let a = parse("HTTP/1.0 200 OK\r\n\r\nuntil the end").unwrap();
        assert_eq!((a.body.as_slice(), a.close), (&b"until the end"[..], true));
        let b = parse(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((b.status, b.close), (201, true));
        let c = parse("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!c.close);
        let head = read_response(
            &mut io::Cursor::new(&b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"[..]),
            true,
        );
        assert_eq!(head.unwrap().body.len(), 0);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for raw in [
            "",
            "garbage\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Le",
        ] {
            assert!(parse(raw).is_err(), "{raw:?} parsed");
        }
        let long = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(parse(&long).is_err_and(|e| e.to_string().contains("too long")));
    }

    #[test]
    fn zipfian_keys_follow_the_theoretical_shares() {
        let zipf = KeyGen::new(Distribution::Zipfian(YCSB_THETA), 1000);
        let mut rng = Rng(42);
        let draws = 400_000;
        let mut counts = vec![0u64; 1000];
        for _ in 0..draws {
            counts[zipf.next(&mut rng) as usize] += 1;
        }
        // Key 0 gets 1/zeta(1000, 0.99), about 13 %; key 1 about half as much; the tail
        // is thin. Within 5 % of theory for the two hottest (the generator's closed form
        // is exact for ranks 0 and 1), and the top ten hold their share within 10 %.
        for k in [0u64, 1] {
            let seen = counts[k as usize] as f64 / draws as f64;
            let want = zipf.share(k);
            assert!((seen / want - 1.0).abs() < 0.05, "key {k}: {seen:.4} vs {want:.4}");
        }
        assert!((0.12..0.15).contains(&zipf.share(0)), "{}", zipf.share(0));
        let top10: f64 = counts[..10].iter().sum::<u64>() as f64 / draws as f64;
        let want10: f64 = (0..10).map(|k| zipf.share(k)).sum();
        assert!((top10 / want10 - 1.0).abs() < 0.10, "top ten {top10:.3} vs {want10:.3}");
        assert!(counts[0] > 10 * counts[99], "skewed: {} vs {}", counts[0], counts[99]);
        // Uniform stays uniform.
        let flat = KeyGen::new(Distribution::Uniform, 10);
        let mut c = [0u64; 10];
        for _ in 0..100_000 {
            c[flat.next(&mut rng) as usize] += 1;
        }
        assert!(c.iter().all(|&n| (9_000..11_000).contains(&n)), "{c:?}");
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng(7);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }

    #[test]
    fn csv_quotes_and_splits_back() {
        let v = json!({"label": "a,\"b\"", "clients": 4, "latency": {"p99_ms": 1.5}, "endpoints": ["x", "y"]});
        let row = csv_row(&v);
        let fields = split_csv(&row);
        assert_eq!(fields.len(), CSV_COLUMNS.len());
        assert_eq!(fields[0], "a,\"b\"");
        assert_eq!(fields[2], "x y");
        assert_eq!(fields[3], "4");
        assert_eq!(fields[19], "1.5");
        assert_eq!(fields[10], "");
    }

    #[test]
    fn plot_draws_one_series_per_label() {
        let header = CSV_COLUMNS.join(",");
        let row = |label: &str, c: u64, rps: f64, p99: f64| {
            csv_row(&json!({"label": label, "clients": c, "throughput_rps": rps, "latency": {"p99_ms": p99}}))
        };
        let text = [
            header.clone(),
            row("etcd", 4, 900.0, 4.0),
            row("etcd", 1, 300.0, 2.0),
            row("rolepax <x>", 1, 100.0, 20.0),
            header,
            row("nothing", 1, 0.0, f64::NAN).replace("NaN", ""),
        ]
        .join("\n");
        let series = read_series(&[text]).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].1.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 4]);
        let svg = render_svg("t & t", &series);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("rolepax &lt;x&gt;") && svg.contains("t &amp; t"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(read_series(&["label,clients\n".to_string()]).is_err());
    }
}
