#!/usr/bin/env bash
# One command for docs/BENCHMARK.md and docs/bench.svg: builds rolepax (release), starts the
# reference 3-member etcd (../shared/bench/etcd-cluster.sh) and a local 3-node rolepax cluster
# (config/local-3.toml, data in a temporary directory), then against the leader of each, in the
# same sitting:
#   - ../shared/bench/gateway-bench.sh (wrk: put c1, put c64, range c64), ROUNDS times (default
#     5), etcd and rolepax alternating; the targets are checked on the medians of the rounds;
#   - rolepax-bench sweeps over 1, 4, 16 and 64 clients, puts then linearizable ranges;
#   - then, on a fresh rolepax cluster, 1,000,000 distinct keys with 128-byte values
#     (scripts/load-1m-keys.lua through wrk) and each node's resident memory.
# The issue's targets are checked against those figures; docs/benchmark-notes.md (what holds
# rolepax back, written by hand) is appended to the report.
# Figures are reported as ratios rolepax/etcd: on a shared machine only those mean something.
#   scripts/bench-report.sh [SECONDS_PER_RUN]     (default 5; wrk uses the same)
#   ROUNDS=9 scripts/bench-report.sh 5            (more wrk rounds: steadier medians)
# Needs ports 7101-7103, 7201-7203 (rolepax) and 12379-32380 (etcd) free; installs etcd-server
# and wrk with apt-get when they are missing (the shared scripts do). Stops everything it
# started on exit; logs are kept in the printed temporary directory when something fails.
set -euo pipefail
secs=${1:-5}
rounds=${ROUNDS:-5}
warmup=1
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init bench
cleanup_more() {
  "$shared/etcd-cluster.sh" stop "$work/etcd" >/dev/null 2>&1 || true
}
bench_ports_free 7201 7202 7203

echo "== building rolepax (release)" >&2
# The revision is noted at build time: the tree may change while the benchmark runs.
built="rolepax $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' plus uncommitted changes') \
built $(date -u '+%H:%M UTC')"
cargo build --release --quiet --bins
bin=$target/release

echo "== starting etcd" >&2
mapfile -t etcd_urls < <("$shared/etcd-cluster.sh" start "$work/etcd")
etcd=${etcd_urls[0]}
echo "etcd leader: $etcd" >&2

# Starts a 3-node rolepax cluster with its data under $1; sets $rolepax to the leader's URL
# and $node_pids to the nodes' process ids.
start_rolepax() {
  node_pids=()
  for id in 1 2 3; do
    RUST_LOG=${RUST_LOG:-warn} "$bin/rolepax-node" --config config/local-3.toml --id "$id" \
      --data-dir "$1/node-$id" >"$1-$id.log" 2>&1 &
    pids+=("$!"); node_pids+=("$!")
  done
  # The leader, from any node's /status (local-3.toml: node N serves HTTP on 720N).
  rolepax=""
  for _ in $(seq 1 300); do
    for id in 1 2 3; do
      leader=$(curl -sf "http://127.0.0.1:720$id/status" 2>/dev/null \
        | python3 -c 'import json,sys; l=json.load(sys.stdin).get("leader_id"); print(l if l else "")' 2>/dev/null || true)
      if [ -n "$leader" ]; then rolepax="http://127.0.0.1:720$leader"; break 2; fi
    done
    sleep 0.2
  done
  [ -n "$rolepax" ] || { echo "bench-report: rolepax elected no leader in 60 s" >&2; exit 1; }
  # The leader must answer a put before the clock starts.
  for _ in $(seq 1 100); do
    curl -sf -X POST "$rolepax/v3/kv/put" -d '{"key":"d2FybQ==","value":"eA=="}' >/dev/null && break
    sleep 0.2
  done
  echo "rolepax leader: $rolepax" >&2
}

echo "== starting rolepax" >&2
start_rolepax "$work/rolepax"

# Alternating rounds: this machine's speed drifts by ±15 % within minutes, so one run of
# each can compare a fast minute with a slow one; medians over alternating rounds do not.
for round in $(seq 1 "$rounds"); do
  echo "== wrk round $round of $rounds (gateway-bench.sh, ${secs}s per load)" >&2
  "$shared/gateway-bench.sh" "$etcd" "$secs" | tee "$work/wrk-etcd-$round.txt" >&2
  "$shared/gateway-bench.sh" "$rolepax" "$secs" | tee "$work/wrk-rolepax-$round.txt" >&2
done

echo "== rolepax-bench sweeps (${secs}s + ${warmup}s warm-up per run)" >&2
commands=()
for op in put range; do
  ratio=0; [ "$op" = range ] && ratio=1
  for c in 1 4 16 64; do
    for name in etcd rolepax; do
      url=$etcd; [ "$name" = rolepax ] && url=$rolepax
      cmd=(rolepax-bench --endpoints "$url" --clients "$c" --read-ratio "$ratio" --duration "$secs"
        --warmup "$warmup" --label "$name $op" --csv runs.csv --json runs.jsonl)
      [ "$c" = 1 ] && [ "$name" = etcd ] && commands+=("$(printf '%q ' "${cmd[@]}")")
      echo "-- $name $op c$c" >&2
      # A run where nothing succeeded exits 1: keep going, the row still lands in the CSV.
      (cd "$work" && "$bin/${cmd[0]}" "${cmd[@]:1}" >>"$work/bench-stdout.txt") || true
    done
  done
done

echo "== memory: 1,000,000 keys with 128-byte values into a fresh cluster" >&2
for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
start_rolepax "$work/rolepax-mem"
count=0 puts=0
# Each wrk run walks the keys from the start again, so a run must be long enough to reach
# them all; a too-short one is followed by a longer one.
for secs_load in 120 240 480; do
  out=$(wrk -t2 -c64 -d${secs_load}s -s scripts/load-1m-keys.lua "$rolepax")
  puts=$((puts + $(awk '/requests in/ {print $1}' <<<"$out")))
  count=$(curl -sf -X POST "$rolepax/v3/kv/range" -d '{"key":"AA==","range_end":"AA==","count_only":true}' \
    | python3 -c 'import json,sys; print(int(json.load(sys.stdin).get("count", 0)))')
  echo "puts so far: $puts, keys: $count" >&2
  [ "$count" -ge 1000001 ] && break   # the leader's warm-up key, plus the million
done
sleep 12  # let the nodes settle: a snapshot in progress finishes, the allocator returns freed pages
{
  echo "keys $count"
  echo "puts $puts"
  for p in "${node_pids[@]}"; do echo "rss_kb $(ps -o rss= -p "$p")"; done
} >"$work/memory.txt"
cat "$work/memory.txt" >&2

echo "== writing docs/BENCHMARK.md and docs/bench.svg" >&2
"$bin/rolepax-bench" plot --title "rolepax vs etcd: throughput vs p99 (clients 1, 4, 16, 64)" \
  --out docs/bench.svg "$work/runs.csv"

machine="$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) cores, \
$(free -g | awk '/Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
versions="$(etcd --version 2>/dev/null | head -1); $(rustc --version); $built"

python3 - "$work" "$secs" "$warmup" "$machine" "$versions" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  "${commands[0]}" "$rounds" >docs/BENCHMARK.md <<'PY'
import csv, re, sys
from statistics import median
work, secs, warmup, machine, versions, when, example, rounds = sys.argv[1:9]
rounds = int(rounds)

def wrk(path):
    rows = {}
    for line in open(path):
        m = re.match(r"(\S+)\s+req/s=(\S+)\s+p50=(\S+)\s+p99=(\S+)\s+non2xx=(\S+)", line)
        if m:
            rows[m[1]] = m.groups()[1:]
    return rows

def ms(text):  # wrk latency like 1.23ms, 456.00us, 1.20s
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text or "")
    if not m:
        return None
    return float(m[1]) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[m[2]]

def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "n/a"

def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"

out = []
w = lambda s="": out.append(s)
w("# Benchmark: rolepax against etcd")
w()
w(f"Generated by `scripts/bench-report.sh {secs}` on {when}; run it again to refresh the figures.")
w()
w(f"- Machine: {machine}.")
w("  Client and both clusters share these cores, so absolute numbers mean little;")
w("  the **ratios rolepax/etcd**, measured in the same sitting, are the figures.")
w(f"- Versions: {versions}.")
w("- etcd: 3 members on loopback (`../shared/bench/etcd-cluster.sh`, fsync on, defaults).")
w("- rolepax: 3 `rolepax-node` processes on loopback, `config/local-3.toml`, release build, data")
w("  in a temporary directory; every request goes to the leader (found via `GET /status`).")
w("- Both clusters run during every measurement; each load ran against etcd, then rolepax.")
w()
w("## wrk: `../shared/bench/gateway-bench.sh URL " + secs + "`")
w()
w(f"{rounds} rounds, each running the three loads against etcd, then against rolepax. This")
w("machine's speed drifts by about ±15 % within minutes, so the figures below are the")
w("**median of the rounds** for each load and measure, and the targets are checked on them;")
w("the per-round ratios after them show the spread.")
w()
LOADS = ["put-c1", "put-c64", "get-c64"]
def rounds_of(name):
    # One dict per round, empty for a round that left no output: rounds stay aligned.
    return [wrk(f"{work}/wrk-{name}-{i}.txt") for i in range(1, rounds + 1)]
def medians(per_round):
    """load -> (req/s, p50 ms, p99 ms, non-2xx summed), medians over the rounds; a load
    is left out if some measure is missing or zero in every round."""
    m = {}
    for load in LOADS:
        rows = [g[load] for g in per_round if load in g]
        col = lambda i, f: [x for x in (f(r[i]) for r in rows) if x]
        cols = [col(0, num), col(1, ms), col(2, ms)]
        if all(cols):
            m[load] = (*(median(c) for c in cols), sum(int(r[3] or 0) for r in rows))
    return m
e_rounds, r_rounds = rounds_of("etcd"), rounds_of("rolepax")
e, r = medians(e_rounds), medians(r_rounds)
w("| load | etcd req/s | rolepax req/s | throughput ratio | etcd p50 / p99 ms | rolepax p50 / p99 ms | p50 ratio | p99 ratio | non-2xx etcd / rolepax |")
w("|---|---|---|---|---|---|---|---|---|")
for load in LOADS:
    ee, rr = e.get(load), r.get(load)
    if not ee or not rr:
        w(f"| {load} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
        continue
    w(f"| {load} | {ee[0]:.0f} | {rr[0]:.0f} | {ratio(rr[0], ee[0])} | {ee[1]:.2f} / {ee[2]:.2f} "
      f"| {rr[1]:.2f} / {rr[2]:.2f} | {ratio(rr[1], ee[1])} | {ratio(rr[2], ee[2])} | {ee[3]} / {rr[3]} |")
w()
w("Per round (rolepax/etcd): put-c64 throughput, put-c1 p50, get-c64 throughput.")
w()
w("| round | put-c64 req/s ratio | put-c1 p50 ratio | get-c64 req/s ratio |")
w("|---|---|---|---|")
for i, (er, rr) in enumerate(zip(e_rounds, r_rounds), 1):
    cell = lambda load, col, f: ratio(f(rr[load][col]), f(er[load][col])) if load in er and load in rr else "n/a"
    w(f"| {i} | {cell('put-c64', 0, num)} | {cell('put-c1', 1, ms)} | {cell('get-c64', 0, num)} |")
w()
w("Ratios: rolepax/etcd (throughput above 1 and p99 below 1 favour rolepax).")
w()
w(f"## rolepax-bench sweeps ({secs} s measured after {warmup} s warm-up, closed loop, 128-byte values, 100000 keys)")
w()
w("Each row ran once per server, e.g.:")
w()
w("```")
w(example.strip())
w("```")
w()
w("(`--read-ratio 1` for ranges: linearizable single-key `POST /v3/kv/range`.)")
w()
runs = {}
for row in csv.DictReader(open(f"{work}/runs.csv")):
    runs[(row["label"], int(row["clients"]))] = row
w("| op | clients | etcd req/s | rolepax req/s | throughput ratio | etcd p50 / p99 ms | rolepax p50 / p99 ms | p99 ratio | errors + non-2xx etcd / rolepax |")
w("|---|---|---|---|---|---|---|---|---|")
for op in ["put", "range"]:
    for c in [1, 4, 16, 64]:
        ee, rr = runs.get((f"etcd {op}", c), {}), runs.get((f"rolepax {op}", c), {})
        bad = lambda x: "n/a" if not x else str(int(x["errors"]) + int(x["non_2xx"]))
        w(f"| {op} | {c} | {fmt(num(ee.get('throughput_rps')))} | {fmt(num(rr.get('throughput_rps')))} "
          f"| {ratio(num(rr.get('throughput_rps')), num(ee.get('throughput_rps')))} "
          f"| {fmt(num(ee.get('p50_ms')), 2)} / {fmt(num(ee.get('p99_ms')), 2)} "
          f"| {fmt(num(rr.get('p50_ms')), 2)} / {fmt(num(rr.get('p99_ms')), 2)} "
          f"| {ratio(num(rr.get('p99_ms')), num(ee.get('p99_ms')))} | {bad(ee)} / {bad(rr)} |")
w()
w("![throughput against p99 latency, one point per client count](bench.svg)")
w()
w("`docs/bench.svg`: `rolepax-bench plot --out docs/bench.svg runs.csv` over the sweep's CSV.")
w()
mem = {}
for line in open(f"{work}/memory.txt"):
    k, v = line.split()
    mem.setdefault(k, []).append(int(v))
keys, rss = mem["keys"][0], [kb * 1024 for kb in mem["rss_kb"]]
raw = (keys - 1) * (12 + 128)  # 12-byte keys and 128-byte values (the warm-up key aside)
w("## Memory after 1,000,000 keys")
w()
w(f"A fresh cluster; `wrk -t2 -c64 -d120s -s scripts/load-1m-keys.lua LEADER` (longer if that was too short) until the store")
w(f"held every key ({mem['puts'][0]:,} puts, {keys:,} keys counted by a `count_only` range), then 12 s idle;")
w("resident memory from `ps -o rss` of each `rolepax-node`:")
w()
w("| node | RSS | RSS / raw data |")
w("|---|---|---|")
for i, node_rss in enumerate(rss, 1):
    w(f"| {i} | {node_rss / 2**20:.0f} MiB | {node_rss / raw:.2f} |")
w()
w(f"Raw data: {keys - 1:,} × (12-byte key + 128-byte value) = {raw / 2**20:.0f} MiB.")
w()
w("## The targets")
w()
def verdict(ok):
    return "yes" if ok else "**no**"
put64, put1, get64 = r.get("put-c64"), r.get("put-c1"), r.get("get-c64")
e64, e1, eg = e.get("put-c64"), e.get("put-c1"), e.get("get-c64")
rows = []
missing = "no figures: the load gave no output in any round"
if not (put64 and e64):
    rows.append(("put, 64 connections: ≥ 5× etcd's req/s, p99 ≤ etcd's", missing, verdict(False)))
if not (put1 and e1):
    rows.append(("put, 1 connection: p50 ≤ ½ etcd's", missing, verdict(False)))
if not (get64 and eg):
    rows.append(("range, 64 connections: ≥ 5× etcd's req/s", missing, verdict(False)))
if put64 and e64:
    t, l = put64[0] / e64[0], put64[2] / e64[2]
    rows.append(("put, 64 connections: ≥ 5× etcd's req/s, p99 ≤ etcd's",
                 f"{t:.2f}× ({put64[0]:.0f} vs {e64[0]:.0f} req/s), p99 {l:.2f}× ({put64[2]:.2f} vs {e64[2]:.2f} ms)",
                 f"throughput {verdict(t >= 5)}, p99 {verdict(l <= 1)}"))
if put1 and e1:
    l = put1[1] / e1[1]
    rows.append(("put, 1 connection: p50 ≤ ½ etcd's", f"{l:.2f}× ({put1[1]:.2f} vs {e1[1]:.2f} ms)", verdict(l <= 0.5)))
if get64 and eg:
    t = get64[0] / eg[0]
    rows.append(("range, 64 connections: ≥ 5× etcd's req/s", f"{t:.2f}× ({get64[0]:.0f} vs {eg[0]:.0f} req/s)", verdict(t >= 5)))
bad = sum(int(x[3] or 0) for x in r.values()) + sum(
    int(x["errors"]) + int(x["non_2xx"]) for (label, _), x in runs.items() if label.startswith("rolepax"))
rows.append(("no non-2xx responses", f"{bad} non-2xx or failed requests in every rolepax load above", verdict(bad == 0)))
worst = max(rss) / raw
rows.append(("RSS after 1,000,000 keys with 128-byte values < 3× raw data",
             f"{max(rss) / 2**20:.0f} MiB on the largest node, {worst:.2f}× raw", verdict(worst < 3)))
w("Checked by the script against the figures above (wrk loads through `gateway-bench.sh`: the")
w("medians of the rounds).")
w()
w("| target | measured | met? |")
w("|---|---|---|")
for row in rows:
    w("| " + " | ".join(row) + " |")
w()
w(open("docs/benchmark-notes.md").read().rstrip())
print("\n".join(out))
PY
ok=1
echo "bench-report: wrote docs/BENCHMARK.md and docs/bench.svg" >&2
