//! # `rolepax-bench report`: docs/EVALUATION.md from the experiments' CSV files
//!
//! `rolepax-bench report --dir docs/eval --out docs/EVALUATION.md [--command TEXT]
//! [--commit TEXT]` reads `failover.csv`, `size.csv`, `mix.csv`, `stragglers.csv` and
//! `headline.csv` from `--dir` (written by `rolepax-bench experiment`), draws one SVG per
//! chart into the same directory, and writes the markdown: how it was produced (the
//! command, the commit, `+changes` when tracked files other than the report's own
//! differ from it, the machine), then per experiment a chart, a table of the numbers and
//! a "what this shows" paragraph computed from them (medians, spreads, ratios, the
//! issue's goals checked). `concerns.md` and `answer.md` from `--dir`, when present, are
//! included verbatim (written by hand or by other tools).
//!
//! Only what the CSVs hold is reported: a missing file or a failed run shows as "not
//! measured" or with its error, never as a number.
//!
//! **Left out.** Statistics beyond medians and percentiles of the trials (no confidence
//! intervals), HTML.

use crate::charts::{BarChart, Bars, Line, LineChart, Point, bar_chart, line_chart};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct ReportArgs {
    pub dir: PathBuf,
    pub out: PathBuf,
    pub command: Option<String>,
    pub commit: Option<String>,
}

pub fn parse(mut args: impl Iterator<Item = String>) -> Result<ReportArgs, String> {
    let (mut dir, mut out, mut command, mut commit) = (None, None, None, None);
    while let Some(arg) = args.next() {
        let (flag, inline) = crate::split_flag(&arg);
        let mut value = || crate::flag_value(&flag, inline.as_deref(), &mut args);
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--command" => command = Some(value()?),
            "--commit" => commit = Some(value()?),
            other => return Err(format!("report: unknown argument {other:?}")),
        }
    }
    Ok(ReportArgs {
        dir: dir.ok_or("report: --dir DIR (the experiments' CSV files) is required")?,
        out: out.ok_or("report: --out FILE.md is required")?,
        command,
        commit,
    })
}

/// One CSV file: rows as column -> value.
#[derive(Debug, Default)]
pub struct Table {
    pub rows: Vec<BTreeMap<String, String>>,
}

impl Table {
    pub fn parse(text: &str) -> Table {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(head) = lines.next() else {
            return Table::default();
        };
        let header = crate::split_csv(head);
        let rows = lines
            .map(crate::split_csv)
            .filter(|f| f.first() != header.first())
            .map(|f| header.iter().cloned().zip(f).collect())
            .collect();
        Table { rows }
    }

    fn read(path: &Path) -> Option<Table> {
        std::fs::read_to_string(path).ok().map(|t| Table::parse(&t))
    }
}

fn get<'a>(row: &'a BTreeMap<String, String>, col: &str) -> &'a str {
    row.get(col).map_or("", String::as_str)
}

fn num(row: &BTreeMap<String, String>, col: &str) -> Option<f64> {
    get(row, col).parse().ok().filter(|v: &f64| v.is_finite())
}

fn ok(row: &BTreeMap<String, String>) -> bool {
    get(row, "status") == "ok"
}

/// The `q` quantile (0..1) of `v` by linear interpolation; `None` when empty.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    Some(s[i] + (s[(i + 1).min(s.len() - 1)] - s[i]) * frac)
}

fn median(v: &[f64]) -> Option<f64> {
    quantile(v, 0.5)
}

/// A number for a table: a few significant digits, "–" when missing.
fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// "lo–hi", or "–" when either is missing.
fn span(lo: Option<f64>, hi: Option<f64>) -> String {
    match (lo, hi) {
        (Some(_), Some(_)) => format!("{}–{}", fmt(lo), fmt(hi)),
        _ => "–".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn ratio_text(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}x"))
}

const ENGINE_ORDER: [&str; 3] = ["paxos", "raft", "etcd"];

fn engine_color(e: &str) -> usize {
    ENGINE_ORDER.iter().position(|x| *x == e).unwrap_or(3)
}

/// The engines present in `t`, in the usual order.
fn engines(t: &Table) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in &t.rows {
        let e = get(r, "engine").to_string();
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    seen.sort_by_key(|e| (engine_color(e), e.clone()));
    seen
}

/// Errors of rows that failed, one line each (deduplicated), for the report.
/// Ends a section: its "what this shows" paragraph, then the runs that failed, each
/// named by `what`.
fn close_section(c: &mut Ctx, text: &str, t: &Table, what: impl Fn(&BTreeMap<String, String>) -> String) {
    let _ = writeln!(c.md, "\n{text}");
    let _ = write!(c.md, "{}", failures(t, what));
}

fn failures(t: &Table, what: impl Fn(&BTreeMap<String, String>) -> String) -> String {
    let mut lines: Vec<String> = Vec::new();
    for r in t.rows.iter().filter(|r| get(r, "status") == "error") {
        let mut note = get(r, "note").to_string();
        if note.len() > 300 {
            let cut = (0..=300).rev().find(|&i| note.is_char_boundary(i)).unwrap_or(0);
            note.truncate(cut);
            note.push_str(" …");
        }
        let line = format!("- {}: {}", what(r), note);
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nFailed runs (no numbers from them above):\n\n{}\n", lines.join("\n"))
    }
}

struct Ctx {
    dir: PathBuf,
    /// The SVGs' path as seen from the markdown file.
    rel: String,
    md: String,
    written: Vec<PathBuf>,
}

impl Ctx {
    fn svg(&mut self, name: &str, alt: &str, svg: String) -> Result<(), String> {
        let path = self.dir.join(name);
        std::fs::write(&path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.written.push(path);
        let _ = writeln!(self.md, "\n![{alt}]({}{name})\n", self.rel);
        Ok(())
    }
}

fn run_git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git rev-parse --short HEAD`, plus `+changes` when tracked or new files other than
/// the evaluation's own outputs differ from it.
pub fn commit_text() -> String {
    let Some(head) = run_git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown (not a git checkout)".into();
    };
    let dirty = run_git(&[
        "status",
        "--porcelain",
        "--",
        ".",
        ":(exclude)docs/eval",
        ":(exclude)docs/EVALUATION.md",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}+changes") } else { head }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map_or(String::new(), |kb| format!(", {:.0} GiB RAM", kb as f64 / 1048576.0));
    format!("{cores} cores ({cpu}){mem}, Linux {}", kernel.trim())
}

/// "Run time: ..." from `timings.csv` (written by scripts/evaluate.sh), if present.
fn timings(dir: &Path) -> String {
    let Some(t) = Table::read(&dir.join("timings.csv")) else {
        return String::new();
    };
    let secs = |r: &BTreeMap<String, String>| num(r, "seconds").map_or("?".into(), |s| format!("{s:.0} s"));
    let total = t.rows.iter().find(|r| get(r, "step") == "total").map(secs);
    let steps: Vec<String> = t
        .rows
        .iter()
        .filter(|r| get(r, "step") != "total")
        .map(|r| format!("{} {}", get(r, "step"), secs(r)))
        .collect();
    match total {
        Some(total) => format!("Run time: {total} in all, build included ({}).  \n", steps.join(", ")),
        None if !steps.is_empty() => format!("Run time: {}.  \n", steps.join(", ")),
        None => String::new(),
    }
}

fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown date".into())
}

pub fn main(a: &ReportArgs) -> Result<(), String> {
    let rel = match (
        a.out.parent(),
        a.dir.strip_prefix(a.out.parent().unwrap_or(Path::new(""))),
    ) {
        (Some(_), Ok(r)) if !r.as_os_str().is_empty() => format!("{}/", r.display()),
        _ => format!("{}/", a.dir.display()),
    };
    let mut c = Ctx {
        dir: a.dir.clone(),
        rel,
        md: String::new(),
        written: Vec::new(),
    };
    let command = a.command.clone().unwrap_or_else(|| {
        format!(
            "rolepax-bench report --dir {} --out {}",
            a.dir.display(),
            a.out.display()
        )
    });
    let commit = a.commit.clone().unwrap_or_else(commit_text);
    let t = |name: &str| Table::read(&a.dir.join(format!("{name}.csv")));
    let _ = write!(
        c.md,
        "# Evaluation: the Paxos roles against Raft (openraft 0.9.25), and etcd\n\n\
         <!-- Generated by rolepax-bench report: edit docs/eval/answer.md or the generator, not this file. -->\n\n\
         Produced by `{command}` at commit `{commit}` on {}.  \n\
         Machine: {}.  \n\
         {}Raw data: the CSV files in `{}` (one row per run or trial); the plots beside them.\n\n\
         Both engines run the same applications (`src/app`) behind the same HTTP front, on the same WAL \
         (fdatasync on, group commit) and the same framed TCP transport, as separate `rolepax-node` \
         processes on 127.0.0.1. Every client request is a `POST /v3/kv/put` or a linearizable \
         `POST /v3/kv/range` through the etcd JSON gateway; the load generator is `rolepax-bench` \
         (closed loop, one keep-alive connection per client, HDR histograms), run on the same machine. \
         **The machine has only {} cores** for every node, the clients and the load generator together: \
         clusters of 5 to 11 processes share those cores, so the size and straggler figures measure \
         CPU contention as much as the protocols, and absolute numbers are far below what separate \
         machines would give. Ratios between engines measured in the same sitting are the meaningful part.\n\n\
         Contents: [1. headline](#1-headline-the-issues-goal) · [2. failover](#2-failover-time-to-a-new-leader) · \
         [3. cluster size](#3-throughput-and-latency-against-cluster-size) · [4. read/write mixes](#4-readwrite-mixes-ycsb) · \
         [5. stragglers](#5-stragglers) · [6. etcd](#6-etcd-in-the-same-sitting) · \
         [7. separation of concerns](#7-separation-of-concerns) · [8. answer](#8-the-answer)\n",
        today(),
        machine(),
        timings(&a.dir),
        c.rel,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    headline(&mut c, t("headline"))?;
    failover(&mut c, t("failover"))?;
    size(&mut c, t("size"))?;
    mix(&mut c, t("mix"))?;
    stragglers(&mut c, t("stragglers"))?;
    etcd(&mut c, t("headline"), t("mix"));
    for (title, file, missing) in [
        (
            "7. Separation of concerns",
            "concerns.md",
            "Not written yet (`docs/eval/concerns.md`: lines of code per concern, message types, messages and fsyncs per command).",
        ),
        (
            "8. The answer",
            "answer.md",
            "Not written yet (`docs/eval/answer.md`: the direct answer to seed 000's question).",
        ),
    ] {
        let _ = writeln!(c.md, "\n## {title}\n");
        match std::fs::read_to_string(a.dir.join(file)) {
            Ok(text) => {
                let _ = writeln!(c.md, "{}", text.trim_end());
            }
            Err(_) => {
                let _ = writeln!(c.md, "{missing}");
            }
        }
    }
    std::fs::write(&a.out, &c.md).map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    eprintln!(
        "rolepax-bench report: wrote {} and {} SVG(s) in {}",
        a.out.display(),
        c.written.len(),
        a.dir.display()
    );
    Ok(())
}

fn not_measured(c: &mut Ctx, what: &str) {
    let _ = writeln!(
        c.md,
        "\nNot measured: `{what}.csv` is missing or empty (run `rolepax-bench experiment {what}`).\n"
    );
}

// ---------------------------------------------------------------------------------
// 1. headline

/// Median of column `col` over ok rows of `engine` with `clients`.
fn med_of(t: &Table, engine: &str, clients: &str, col: &str) -> Option<f64> {
    let v: Vec<f64> = t
        .rows
        .iter()
        .filter(|r| ok(r) && get(r, "engine") == engine && get(r, "clients") == clients)
        .filter_map(|r| num(r, col))
        .collect();
    median(&v)
}

fn headline(c: &mut Ctx, t: Option<Table>) -> Result<(), String> {
    let _ = writeln!(c.md, "\n## 1. Headline: the issue's goal\n");
    let Some(t) = t.filter(|t| !t.rows.is_empty()) else {
        not_measured(c, "headline");
        return Ok(());
    };
    let many = t
        .rows
        .iter()
        .map(|r| get(r, "clients"))
        .filter(|c| *c != "1")
        .max_by_key(|c| c.parse::<u64>().unwrap_or(0))
        .unwrap_or("64")
        .to_string();
    let rounds: Vec<String> = {
        let mut r: Vec<String> = t.rows.iter().map(|r| get(r, "round").to_string()).collect();
        r.sort_by_key(|x| x.parse::<u64>().unwrap_or(0));
        r.dedup();
        r
    };
    let engines = engines(&t);
    let _ = writeln!(
        c.md,
        "Put throughput at {many} connections and put latency (p50) at 1 connection, 3 nodes, fsync on, \
         {} alternating rounds (each engine on a fresh cluster per round, clients on the leader), medians \
         over the rounds. Goal for Paxos: throughput at or above Raft's, p50 at or below Raft's.\n",
        rounds.len()
    );
    let _ = writeln!(
        c.md,
        "| engine | put req/s at {many} conns (median) | per round | put p50 ms at 1 conn (median) | per round | p99 ms at 1 conn (median) |"
    );
    let _ = writeln!(c.md, "|---|---|---|---|---|---|");
    for e in &engines {
        let per = |clients: &str, col: &str| -> String {
            rounds
                .iter()
                .map(|rd| {
                    fmt(t
                        .rows
                        .iter()
                        .find(|r| {
                            ok(r) && get(r, "engine") == e && get(r, "clients") == clients && get(r, "round") == rd
                        })
                        .and_then(|r| num(r, col)))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            c.md,
            "| {e} | {} | {} | {} | {} | {} |",
            fmt(med_of(&t, e, &many, "throughput_rps")),
            per(&many, "throughput_rps"),
            fmt(med_of(&t, e, "1", "p50_ms")),
            per("1", "p50_ms"),
            fmt(med_of(&t, e, "1", "p99_ms")),
        );
    }
    let groups: Vec<String> = rounds
        .iter()
        .map(|r| format!("round {r}"))
        .chain(["median".to_string()])
        .collect();
    let series = |clients: &str, col: &str| -> Vec<Bars> {
        engines
            .iter()
            .map(|e| Bars {
                name: e.clone(),
                color: engine_color(e),
                values: rounds
                    .iter()
                    .map(|rd| {
                        t.rows
                            .iter()
                            .find(|r| {
                                ok(r) && get(r, "engine") == e && get(r, "clients") == clients && get(r, "round") == rd
                            })
                            .and_then(|r| num(r, col))
                    })
                    .chain([med_of(&t, e, clients, col)])
                    .map(|v| v.map(|y| Point { x: 0.0, y, bar: None }))
                    .collect(),
            })
            .collect()
    };
    c.svg(
        "headline-throughput.svg",
        "put throughput per round",
        bar_chart(&BarChart {
            title: &format!("Put throughput, 3 nodes, {many} connections"),
            x_label: "round",
            y_label: "puts per second",
            groups: groups.clone(),
            series: series(&many, "throughput_rps"),
        }),
    )?;
    c.svg(
        "headline-latency.svg",
        "put p50 at one connection per round",
        bar_chart(&BarChart {
            title: "Put latency p50, 3 nodes, 1 connection",
            x_label: "round",
            y_label: "p50 latency (ms)",
            groups,
            series: series("1", "p50_ms"),
        }),
    )?;
    // What this shows.
    let (pt, rt) = (
        med_of(&t, "paxos", &many, "throughput_rps"),
        med_of(&t, "raft", &many, "throughput_rps"),
    );
    let (pl, rl) = (med_of(&t, "paxos", "1", "p50_ms"), med_of(&t, "raft", "1", "p50_ms"));
    let mut text = String::from("**What this shows.** ");
    match ratio(pt, rt) {
        Some(r) if r >= 1.0 => {
            let _ = write!(
                text,
                "Throughput goal met: Paxos {} puts/s against Raft's {} (Paxos/Raft = {r:.2}x). ",
                fmt(pt),
                fmt(rt)
            );
        }
        Some(r) => {
            let _ = write!(
                text,
                "Throughput goal **not met**: Paxos {} puts/s against Raft's {} (Paxos/Raft = {r:.2}x, short by {:.0} %). ",
                fmt(pt),
                fmt(rt),
                (1.0 - r) * 100.0
            );
        }
        None => text.push_str("The throughput goal cannot be checked: one engine has no successful run. "),
    }
    match ratio(pl, rl) {
        Some(r) if r <= 1.0 => {
            let _ = write!(
                text,
                "Latency goal met: Paxos p50 {} ms against Raft's {} ms at one connection (Paxos/Raft = {r:.2}x).",
                fmt(pl),
                fmt(rl)
            );
        }
        Some(r) => {
            let _ = write!(
                text,
                "Latency goal **not met**: Paxos p50 {} ms against Raft's {} ms at one connection (Paxos/Raft = {r:.2}x, \
                 {:.0} % slower).",
                fmt(pl),
                fmt(rl),
                (r - 1.0) * 100.0
            );
        }
        None => text.push_str("The latency goal cannot be checked: one engine has no successful run."),
    }
    let spread = |e: &str| -> Option<f64> {
        let v: Vec<f64> = t
            .rows
            .iter()
            .filter(|r| ok(r) && get(r, "engine") == e && get(r, "clients") == many)
            .filter_map(|r| num(r, "throughput_rps"))
            .collect();
        let (lo, hi, m) = (quantile(&v, 0.0)?, quantile(&v, 1.0)?, median(&v)?);
        (m > 0.0).then(|| (hi - lo) / m * 100.0)
    };
    if let (Some(a), Some(b)) = (spread("paxos"), spread("raft")) {
        let _ = write!(
            text,
            " Across rounds the throughput of each engine spread over {a:.0} % (Paxos) and {b:.0} % (Raft) of its median: \
             differences smaller than that are within this machine's drift."
        );
    }
    close_section(c, &text, &t, |r| {
        format!("{} round {} c={}", get(r, "engine"), get(r, "round"), get(r, "clients"))
    });
    Ok(())
}

// ---------------------------------------------------------------------------------
// 2. failover

fn failover(c: &mut Ctx, t: Option<Table>) -> Result<(), String> {
    let _ = writeln!(c.md, "\n## 2. Failover: time to a new leader\n");
    let Some(t) = t.filter(|t| !t.rows.is_empty()) else {
        not_measured(c, "failover");
        return Ok(());
    };
    let mut ranges: Vec<String> = Vec::new();
    for r in &t.rows {
        let x = get(r, "range").to_string();
        if !ranges.contains(&x) {
            ranges.push(x);
        }
    }
    ranges.sort_by_key(|r| r.split('-').next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0));
    let engines = engines(&t);
    let _ = writeln!(
        c.md,
        "3 nodes; one writer per survivor puts in a loop (1 ms pause) while the leader is SIGKILLed. \
         *Election*: from the kill to the first `/status` of a survivor saying `is_leader` (each survivor polled \
         about every millisecond, so the resolution is 1-2 ms). *Client gap*: from the last put acknowledged \
         before the kill to the first acknowledged put that was sent after it; a writer gives up on a put \
         after 2 s and sends the next, so a gap near 2 s means the puts sent after the kill hung until \
         that client timeout (the node they went to neither answered nor re-routed them). The killed node is restarted \
         and the cluster waits for a leader every node names (plus twice the election maximum) before the \
         next trial. A range's minimum of 0 ms cannot be set (the heartbeat must be at least 1 ms and below \
         the minimum): the settings used are in the table. `retry_interval_ms` is twice the election maximum \
         (at least 20 ms), so a put forwarded to the dead leader is re-proposed soon. Error bars: p10 to p90 \
         of the trials.\n"
    );
    let trials = |e: &str, range: &str, col: &str| -> Vec<f64> {
        t.rows
            .iter()
            .filter(|r| ok(r) && get(r, "engine") == e && get(r, "range") == range)
            .filter_map(|r| num(r, col))
            .collect()
    };
    let _ = writeln!(
        c.md,
        "| engine | range (ms) | settings: tick / heartbeat / election ms | trials ok | election median | p10–p90 | min–max | \
         client gap median | p10–p90 | goal: median < 3 × max |"
    );
    let _ = writeln!(c.md, "|---|---|---|---|---|---|---|---|---|---|");
    let mut goal_misses = Vec::new();
    for e in &engines {
        for range in &ranges {
            let rows: Vec<_> = t
                .rows
                .iter()
                .filter(|r| get(r, "engine") == e && get(r, "range") == range)
                .collect();
            let Some(first) = rows.first() else { continue };
            let el = trials(e, range, "election_ms");
            let gap = trials(e, range, "gap_ms");
            let upper = num(first, "election_max_ms").unwrap_or(0.0);
            let upper_nominal = range
                .split('-')
                .nth(1)
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(upper);
            let m = median(&el);
            let goal = match m {
                Some(m) if m < 3.0 * upper_nominal => format!("met ({:.1}x)", m / upper_nominal),
                Some(m) => {
                    goal_misses.push(format!("{e} {range} ms ({:.1}x the upper end)", m / upper_nominal));
                    format!("**missed** ({:.1}x)", m / upper_nominal)
                }
                None => "–".into(),
            };
            let _ = writeln!(
                c.md,
                "| {e} | {range} | {} / {} / {}–{} | {}/{} | {} | {} | {} | {} | {} | {goal} |",
                get(first, "tick_ms"),
                get(first, "heartbeat_ms"),
                get(first, "election_min_ms"),
                get(first, "election_max_ms"),
                el.len(),
                rows.len(),
                fmt(m),
                span(quantile(&el, 0.1), quantile(&el, 0.9)),
                span(quantile(&el, 0.0), quantile(&el, 1.0)),
                fmt(median(&gap)),
                span(quantile(&gap, 0.1), quantile(&gap, 0.9)),
            );
        }
    }
    let mut lines = Vec::new();
    for (col, label, dashed) in [("election_ms", "election", false), ("gap_ms", "client gap", true)] {
        for e in &engines {
            let points = ranges
                .iter()
                .enumerate()
                .filter_map(|(i, range)| {
                    let v = trials(e, range, col);
                    Some(Point {
                        x: i as f64,
                        y: median(&v)?,
                        bar: Some((quantile(&v, 0.1)?, quantile(&v, 0.9)?)),
                    })
                })
                .collect();
            lines.push(Line {
                name: format!("{e} {label}"),
                points,
                dashed,
                color: engine_color(e),
            });
        }
    }
    lines.push(Line {
        name: "goal: 3 × upper end".into(),
        points: ranges
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                Some(Point {
                    x: i as f64,
                    y: 3.0 * r.split('-').nth(1)?.parse::<f64>().ok()?,
                    bar: None,
                })
            })
            .collect(),
        dashed: true,
        color: 5,
    });
    c.svg(
        "failover.svg",
        "failover time and client gap per election-timeout range",
        line_chart(&LineChart {
            title: "Leader SIGKILLed: time to a new leader, client gap",
            x_label: "election timeout range (ms)",
            y_label: "milliseconds (log scale), median and p10–p90",
            categories: Some(ranges.clone()),
            log_y: true,
            lines,
        }),
    )?;
    let mut text = String::from("**What this shows.** ");
    for range in &ranges {
        let (p, r) = (
            median(&trials("paxos", range, "election_ms")),
            median(&trials("raft", range, "election_ms")),
        );
        let (pg, rg) = (
            median(&trials("paxos", range, "gap_ms")),
            median(&trials("raft", range, "gap_ms")),
        );
        let _ = write!(
            text,
            "{range} ms: election Paxos {} ms, Raft {} ms (Paxos/Raft {}); client gap Paxos {} ms, Raft {} ms. ",
            fmt(p),
            fmt(r),
            ratio_text(ratio(p, r)),
            fmt(pg),
            fmt(rg)
        );
    }
    for e in &engines {
        let all: Vec<f64> = ranges.iter().flat_map(|r| trials(e, r, "gap_ms")).collect();
        let hung = all.iter().filter(|g| **g >= 1900.0).count();
        if hung * 2 > all.len() {
            let _ = write!(
                text,
                "In {hung} of {} {e} trials the client gap reached the writers' 2 s timeout: puts sent to a \
                 survivor after the kill were not answered until the client gave up, whatever the election \
                 took, so {e}'s client-visible gap here is set by the client's timeout, not by the election. ",
                all.len()
            );
        }
    }
    if goal_misses.is_empty() {
        text.push_str("Every measured median is below 3x the upper end of its range.");
    } else {
        let _ = write!(text, "Goal missed for: {}.", goal_misses.join(", "));
    }
    close_section(c, &text, &t, |r| {
        format!("{} {} trial {}", get(r, "engine"), get(r, "range"), get(r, "trial"))
    });
    Ok(())
}

// ---------------------------------------------------------------------------------
// 3. size

fn size(c: &mut Ctx, t: Option<Table>) -> Result<(), String> {
    let _ = writeln!(c.md, "\n## 3. Throughput and latency against cluster size\n");
    let Some(t) = t.filter(|t| !t.rows.is_empty()) else {
        not_measured(c, "size");
        return Ok(());
    };
    let engines = engines(&t);
    let mut sizes: Vec<u64> = t.rows.iter().filter_map(|r| get(r, "nodes").parse().ok()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let many = t
        .rows
        .iter()
        .map(|r| get(r, "clients"))
        .filter(|c| *c != "1")
        .max_by_key(|c| c.parse::<u64>().unwrap_or(0))
        .unwrap_or("64")
        .to_string();
    let val = |e: &str, n: u64, clients: &str, col: &str| -> Option<f64> {
        t.rows
            .iter()
            .find(|r| {
                ok(r) && get(r, "engine") == e && get(r, "nodes") == n.to_string() && get(r, "clients") == clients
            })
            .and_then(|r| num(r, col))
    };
    let _ = writeln!(
        c.md,
        "Puts of 128-byte values over 100,000 keys; every client connects to the leader (the same for both \
         engines). Throughput at {many} connections; latency at 1 connection (closed loop). All N processes, the \
         load generator and its {many} client threads share the machine's cores, so beyond 3 nodes the \
         curve shows how each engine's per-node CPU cost grows with N as much as protocol cost.\n"
    );
    let _ = writeln!(
        c.md,
        "| N | engine | put req/s at {many} conns | p99 ms at {many} | p50 ms at 1 conn | p99 ms at 1 conn |"
    );
    let _ = writeln!(c.md, "|---|---|---|---|---|---|");
    for &n in &sizes {
        for e in &engines {
            let _ = writeln!(
                c.md,
                "| {n} | {e} | {} | {} | {} | {} |",
                fmt(val(e, n, &many, "throughput_rps")),
                fmt(val(e, n, &many, "p99_ms")),
                fmt(val(e, n, "1", "p50_ms")),
                fmt(val(e, n, "1", "p99_ms")),
            );
        }
    }
    let line = |e: &str, clients: &str, col: &str, bar: Option<&str>, dashed: bool, label: &str| Line {
        name: format!("{e}{label}"),
        points: sizes
            .iter()
            .filter_map(|&n| {
                Some(Point {
                    x: n as f64,
                    y: val(e, n, clients, col)?,
                    bar: bar.and_then(|b| Some((val(e, n, clients, col)?, val(e, n, clients, b)?))),
                })
            })
            .collect(),
        dashed,
        color: engine_color(e),
    };
    c.svg(
        "size-throughput.svg",
        "put throughput against cluster size",
        line_chart(&LineChart {
            title: &format!("Put throughput against cluster size, {many} connections"),
            x_label: "nodes (N)",
            y_label: "puts per second",
            categories: None,
            log_y: false,
            lines: engines
                .iter()
                .map(|e| line(e, &many, "throughput_rps", None, false, ""))
                .collect(),
        }),
    )?;
    c.svg(
        "size-latency.svg",
        "put latency at one connection against cluster size",
        line_chart(&LineChart {
            title: "Put latency against cluster size, 1 connection",
            x_label: "nodes (N)",
            y_label: "latency (ms): p50, bar up to p99",
            categories: None,
            log_y: false,
            lines: engines
                .iter()
                .map(|e| line(e, "1", "p50_ms", Some("p99_ms"), false, " p50"))
                .collect(),
        }),
    )?;
    let mut text = String::from("**What this shows.** ");
    for e in &engines {
        if let (Some(&lo), Some(&hi)) = (sizes.first(), sizes.last()) {
            let (a, b) = (val(e, lo, &many, "throughput_rps"), val(e, hi, &many, "throughput_rps"));
            let _ = write!(
                text,
                "{e}: {} puts/s at N={lo}, {} at N={hi} ({} of the N={lo} figure); p50 at 1 connection {} ms to {} ms. ",
                fmt(a),
                fmt(b),
                ratio(b, a).map_or("–".into(), |r| format!("{:.0} %", r * 100.0)),
                fmt(val(e, lo, "1", "p50_ms")),
                fmt(val(e, hi, "1", "p50_ms")),
            );
        }
    }
    let per_n: Vec<String> = sizes
        .iter()
        .filter_map(|&n| {
            let r = ratio(
                val("paxos", n, &many, "throughput_rps"),
                val("raft", n, &many, "throughput_rps"),
            )?;
            Some(format!("N={n} {r:.2}x"))
        })
        .collect();
    if !per_n.is_empty() {
        let _ = write!(text, "Paxos/Raft throughput: {}.", per_n.join(", "));
    }
    close_section(c, &text, &t, |r| {
        format!("{} N={} c={}", get(r, "engine"), get(r, "nodes"), get(r, "clients"))
    });
    Ok(())
}

// ---------------------------------------------------------------------------------
// 4. mix

fn mix(c: &mut Ctx, t: Option<Table>) -> Result<(), String> {
    let _ = writeln!(c.md, "\n## 4. Read/write mixes (YCSB)\n");
    let Some(t) = t.filter(|t| !t.rows.is_empty()) else {
        not_measured(c, "mix");
        return Ok(());
    };
    let engines = engines(&t);
    let mut groups: Vec<(String, String)> = Vec::new();
    for r in &t.rows {
        let g = (get(r, "workload").to_string(), get(r, "distribution").to_string());
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let first = t.rows.first();
    let _ = writeln!(
        c.md,
        "3 nodes, {} connections to the leader, {} preloaded keys, 128-byte values. Write-only = 0 % reads, \
         YCSB A = 50 %, B = 95 %, C = 100 %; keys uniform or zipfian (YCSB's generator, theta 0.99, key 0 \
         hottest). Reads are linearizable in every engine: rolepax's gateway range goes through the Paxos log's \
         read path or Raft's read index, etcd's range is linearizable by default.\n",
        first.map_or("64", |r| get(r, "clients")),
        first.map_or("10000", |r| get(r, "keys")),
    );
    let val = |e: &str, g: &(String, String), col: &str| -> Option<f64> {
        t.rows
            .iter()
            .find(|r| ok(r) && get(r, "engine") == e && get(r, "workload") == g.0 && get(r, "distribution") == g.1)
            .and_then(|r| num(r, col))
    };
    let _ = writeln!(
        c.md,
        "| workload | keys | engine | req/s | p50 ms | p99 ms | read p50 ms | write p50 ms |"
    );
    let _ = writeln!(c.md, "|---|---|---|---|---|---|---|---|");
    for g in &groups {
        for e in &engines {
            let status = t
                .rows
                .iter()
                .find(|r| get(r, "engine") == e && get(r, "workload") == g.0 && get(r, "distribution") == g.1)
                .map_or("", |r| get(r, "status"));
            if status == "skipped" {
                let _ = writeln!(c.md, "| {} | {} | {e} | skipped | | | | |", g.0, g.1);
                continue;
            }
            let _ = writeln!(
                c.md,
                "| {} | {} | {e} | {} | {} | {} | {} | {} |",
                g.0,
                g.1,
                fmt(val(e, g, "throughput_rps")),
                fmt(val(e, g, "p50_ms")),
                fmt(val(e, g, "p99_ms")),
                fmt(val(e, g, "read_p50_ms")),
                fmt(val(e, g, "write_p50_ms")),
            );
        }
    }
    let shown: Vec<&String> = engines
        .iter()
        .filter(|e| groups.iter().any(|g| val(e, g, "throughput_rps").is_some()))
        .collect();
    c.svg(
        "mix.svg",
        "throughput per read/write mix",
        bar_chart(&BarChart {
            title: "Throughput per workload, 3 nodes",
            x_label: "workload / key distribution",
            y_label: "requests per second",
            groups: groups.iter().map(|g| format!("{} / {}", g.0, g.1)).collect(),
            series: shown
                .iter()
                .map(|e| Bars {
                    name: e.to_string(),
                    color: engine_color(e),
                    values: groups
                        .iter()
                        .map(|g| val(e, g, "throughput_rps").map(|y| Point { x: 0.0, y, bar: None }))
                        .collect(),
                })
                .collect(),
        }),
    )?;
    let mut text = String::from("**What this shows.** Paxos/Raft throughput: ");
    let ratios: Vec<String> = groups
        .iter()
        .filter_map(|g| {
            let r = ratio(val("paxos", g, "throughput_rps"), val("raft", g, "throughput_rps"))?;
            Some(format!("{} {} {r:.2}x", g.0, g.1))
        })
        .collect();
    text.push_str(&if ratios.is_empty() {
        "not available".into()
    } else {
        ratios.join(", ")
    });
    text.push_str(". ");
    for e in &engines {
        let w = groups.iter().find(|g| g.0 == "write-only" && g.1 == "uniform");
        let r = groups.iter().find(|g| g.0 == "YCSB C" && g.1 == "uniform");
        if let (Some(w), Some(r)) = (w, r)
            && let Some(x) = ratio(val(e, r, "throughput_rps"), val(e, w, "throughput_rps"))
        {
            let _ = write!(text, "{e}: reads-only runs at {x:.2}x its write-only throughput. ");
        }
    }
    close_section(c, &text, &t, |r| {
        format!("{} {} {}", get(r, "engine"), get(r, "workload"), get(r, "distribution"))
    });
    Ok(())
}

// ---------------------------------------------------------------------------------
// 5. stragglers

fn stragglers(c: &mut Ctx, t: Option<Table>) -> Result<(), String> {
    let _ = writeln!(c.md, "\n## 5. Stragglers\n");
    let Some(t) = t.filter(|t| !t.rows.is_empty()) else {
        not_measured(c, "stragglers");
        return Ok(());
    };
    let engines = engines(&t);
    let conditions = ["baseline", "one-slow", "majority-slow"];
    let first = t.rows.first();
    let (nodes, method) = (
        first.map_or("5", |r| get(r, "nodes")),
        first.map_or("", |r| get(r, "method")),
    );
    let _ = writeln!(
        c.md,
        "{nodes} nodes, puts at {} connections to the leader. A slow follower is stopped with {method} (the slow \
         ones at the same moments). One slow follower leaves a fast majority; a majority of the followers slow \
         means every quorum needs a slow node. Loopback delay with `tc netem` was not possible: this machine's \
         kernel has no `sch_netem` (\"Specified qdisc kind is unknown\").\n",
        first.map_or("64", |r| get(r, "clients")),
    );
    let val = |e: &str, cond: &str, col: &str| -> Option<f64> {
        t.rows
            .iter()
            .find(|r| ok(r) && get(r, "engine") == e && get(r, "condition") == cond)
            .and_then(|r| num(r, col))
    };
    let _ = writeln!(
        c.md,
        "| engine | condition | slow nodes | req/s | of baseline | p50 ms | p99 ms | leader after |"
    );
    let _ = writeln!(c.md, "|---|---|---|---|---|---|---|---|");
    for e in &engines {
        for cond in conditions {
            let row = t
                .rows
                .iter()
                .find(|r| get(r, "engine") == e && get(r, "condition") == cond);
            let _ = writeln!(
                c.md,
                "| {e} | {cond} | {} | {} | {} | {} | {} | {} |",
                row.map_or("", |r| get(r, "slow_nodes")),
                fmt(val(e, cond, "throughput_rps")),
                ratio(val(e, cond, "throughput_rps"), val(e, "baseline", "throughput_rps"))
                    .map_or("–".into(), |r| format!("{:.0} %", r * 100.0)),
                fmt(val(e, cond, "p50_ms")),
                fmt(val(e, cond, "p99_ms")),
                row.map_or("", |r| get(r, "leader_after")),
            );
        }
    }
    c.svg(
        "stragglers.svg",
        "throughput with slow followers",
        bar_chart(&BarChart {
            title: &format!("Put throughput with slow followers, {nodes} nodes"),
            x_label: "condition",
            y_label: "puts per second (bar: p50..p99 latency not shown)",
            groups: conditions.iter().map(|s| s.to_string()).collect(),
            series: engines
                .iter()
                .map(|e| Bars {
                    name: e.clone(),
                    color: engine_color(e),
                    values: conditions
                        .iter()
                        .map(|cond| val(e, cond, "throughput_rps").map(|y| Point { x: 0.0, y, bar: None }))
                        .collect(),
                })
                .collect(),
        }),
    )?;
    let mut text = String::from("**What this shows.** ");
    for e in &engines {
        let b = val(e, "baseline", "throughput_rps");
        let _ = write!(
            text,
            "{e}: one slow follower keeps {} of the baseline throughput, a slow majority {} (p99 {} → {} ms). ",
            ratio(val(e, "one-slow", "throughput_rps"), b).map_or("–".into(), |r| format!("{:.0} %", r * 100.0)),
            ratio(val(e, "majority-slow", "throughput_rps"), b).map_or("–".into(), |r| format!("{:.0} %", r * 100.0)),
            fmt(val(e, "baseline", "p99_ms")),
            fmt(val(e, "majority-slow", "p99_ms")),
        );
    }
    close_section(c, &text, &t, |r| {
        format!("{} {}", get(r, "engine"), get(r, "condition"))
    });
    Ok(())
}

// ---------------------------------------------------------------------------------
// 6. etcd

fn etcd(c: &mut Ctx, headline: Option<Table>, mix: Option<Table>) {
    let _ = writeln!(c.md, "\n## 6. etcd in the same sitting\n");
    let has = |t: &Option<Table>| {
        t.as_ref()
            .is_some_and(|t| t.rows.iter().any(|r| get(r, "engine") == "etcd" && ok(r)))
    };
    if !has(&headline) && !has(&mix) {
        let _ = writeln!(
            c.md,
            "etcd was not measured in this sitting (not installed, or not started: \
             `../shared/bench/etcd-cluster.sh`). Where it applies (headline, mixes) it would be a third column."
        );
        return;
    }
    let _ = write!(
        c.md,
        "The reference etcd (3 members on loopback, Debian's `etcd-server`, fsync on, started by \
         `../shared/bench/etcd-cluster.sh`) ran the headline and mix loads through its own JSON gateway, \
         clients on its leader, in the same sitting. It does not apply to failover (its election timeout is \
         not set by these experiments), cluster size and stragglers (the reference cluster has a fixed 3 \
         members started outside the benchmark). "
    );
    if let Some(t) = &headline {
        let many = t
            .rows
            .iter()
            .map(|r| get(r, "clients"))
            .filter(|c| *c != "1")
            .max_by_key(|c| c.parse::<u64>().unwrap_or(0))
            .unwrap_or("64")
            .to_string();
        let et = med_of(t, "etcd", &many, "throughput_rps");
        let el = med_of(t, "etcd", "1", "p50_ms");
        let _ = write!(
            c.md,
            "Headline: etcd {} puts/s at {many} connections (Paxos/etcd {}, Raft/etcd {}), p50 {} ms at one \
             connection (Paxos/etcd {}, Raft/etcd {}).",
            fmt(et),
            ratio_text(ratio(med_of(t, "paxos", &many, "throughput_rps"), et)),
            ratio_text(ratio(med_of(t, "raft", &many, "throughput_rps"), et)),
            fmt(el),
            ratio_text(ratio(med_of(t, "paxos", "1", "p50_ms"), el)),
            ratio_text(ratio(med_of(t, "raft", "1", "p50_ms"), el)),
        );
    }
    let _ = writeln!(c.md);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILOVER: &str = "engine,range,tick_ms,heartbeat_ms,election_min_ms,election_max_ms,nodes,trial,killed,new_leader,election_ms,gap_ms,acked_before,status,note,started_unix
paxos,0-5,1,1,2,5,3,1,1,2,4.5,9.0,100,ok,,1
paxos,0-5,1,1,2,5,3,2,2,3,5.5,11.0,100,ok,,1
paxos,150-300,10,50,150,300,3,1,1,2,250,400,100,ok,,1
raft,0-5,1,1,2,5,3,0,,,,,,error,\"node 1 exited, \"\"raft\"\" not built\",1
";
    const HEADLINE: &str = "engine,round,nodes,clients,op,throughput_rps,p50_ms,p99_ms,read_p50_ms,write_p50_ms,ok,errors,status,note,started_unix
paxos,1,3,64,put,10000,5,9,,5,50000,0,ok,,1
paxos,1,3,1,put,900,1.1,2,,1.1,4500,0,ok,,1
raft,1,3,64,put,8000,7,12,,7,40000,0,ok,,1
raft,1,3,1,put,1000,1.0,2,,1.0,5000,0,ok,,1
etcd,1,3,64,put,,,,,,,,skipped,etcd not available,1
";
    const SIZE: &str = "engine,nodes,clients,target,op,throughput_rps,p50_ms,p99_ms,read_p50_ms,write_p50_ms,ok,errors,status,note,started_unix
paxos,3,64,leader,put,10000,5,9,,5,1,0,ok,,1
paxos,3,1,leader,put,900,1.1,2,,1.1,1,0,ok,,1
paxos,5,64,leader,put,7000,6,10,,6,1,0,ok,,1
paxos,5,1,leader,put,800,1.2,2,,1.2,1,0,ok,,1
";
    const MIX: &str = "engine,workload,read_pct,distribution,nodes,clients,keys,throughput_rps,p50_ms,p99_ms,read_p50_ms,write_p50_ms,ok,errors,status,note,started_unix
paxos,write-only,0,uniform,3,64,1000,9000,5,9,,5,1,0,ok,,1
paxos,YCSB C,100,zipfian,3,64,1000,20000,2,4,2,,1,0,ok,,1
raft,write-only,0,uniform,3,64,1000,8000,5,9,,5,1,0,ok,,1
";
    const STRAGGLERS: &str = "engine,condition,slow_nodes,method,nodes,clients,leader_after,throughput_rps,p50_ms,p99_ms,read_p50_ms,write_p50_ms,ok,errors,status,note,started_unix
paxos,baseline,,SIGSTOP 20 ms of every 40 ms,5,64,1,9000,5,9,,5,1,0,ok,,1
paxos,one-slow,5,SIGSTOP 20 ms of every 40 ms,5,64,1,8500,5,12,,5,1,0,ok,,1
";

    #[test]
    fn report_names_every_experiment_and_writes_well_formed_svgs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let eval = dir.path().join("eval");
        std::fs::create_dir_all(&eval).expect("mkdir");
        for (name, text) in [
            ("failover", FAILOVER),
            ("headline", HEADLINE),
            ("size", SIZE),
            ("mix", MIX),
            ("stragglers", STRAGGLERS),
        ] {
            std::fs::write(eval.join(format!("{name}.csv")), text).expect("write fixture");
        }
        std::fs::write(eval.join("concerns.md"), "CONCERNS FRAGMENT\n").expect("write");
        let out = dir.path().join("EVALUATION.md");
        let args = ReportArgs {
            dir: eval.clone(),
            out: out.clone(),
            command: Some("scripts/evaluate.sh".into()),
            commit: Some("abc1234".into()),
        };
        main(&args).expect("report");
        let md = std::fs::read_to_string(&out).expect("report written");
        for wanted in [
            "## 1. Headline",
            "## 2. Failover",
            "## 3. Throughput and latency against cluster size",
            "## 4. Read/write mixes",
            "## 5. Stragglers",
            "## 6. etcd",
            "CONCERNS FRAGMENT",
            "Not written yet (`docs/eval/answer.md`",
            "`scripts/evaluate.sh` at commit `abc1234`",
            "Paxos/Raft = 1.25x",              // 10000 / 8000 puts/s
            "Paxos/Raft = 1.10x, 10 % slower", // p50 1.1 vs 1.0
            "](eval/failover.svg)",
            "\"raft\" not built", // the failed cluster's reason is shown
            "| paxos | 0-5 | 1 / 1 / 2–5 | 2/2 | 5.00 |",
        ] {
            assert!(md.contains(wanted), "report lacks {wanted:?}:\n{md}");
        }
        let svgs: Vec<_> = std::fs::read_dir(&eval)
            .expect("list")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "svg"))
            .collect();
        assert!(svgs.len() >= 6, "{svgs:?}");
        for p in svgs {
            let text = std::fs::read_to_string(&p).expect("svg");
            assert!(
                text.starts_with("<svg ") && text.trim_end().ends_with("</svg>"),
                "{}",
                p.display()
            );
            // Every element opened is closed: a cheap well-formedness check.
            let opened = text.matches("<rect").count() + text.matches("<circle").count();
            let closed =
                text.matches("/>").count() + text.matches("</rect>").count() + text.matches("</circle>").count();
            assert!(closed >= opened, "{}", p.display());
            assert!(!text.contains("NaN") && !text.contains("inf"), "{}", p.display());
            assert_eq!(text.matches('<').count(), text.matches('>').count(), "{}", p.display());
        }
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), Some(2.5));
        assert_eq!(quantile(&[0.0, 10.0], 0.1), Some(1.0));
        let t = Table::parse(FAILOVER);
        assert_eq!(t.rows.len(), 4);
        assert_eq!(get(&t.rows[3], "note"), "node 1 exited, \"raft\" not built");
    }
}
