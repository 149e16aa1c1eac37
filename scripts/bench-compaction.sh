#!/usr/bin/env bash
# Issue #15's long run, in one sitting (see "Long runs" in docs/BENCHMARK.md):
#  1. Disk and memory. PUTS puts (default 5,000,000) over 100,000 keys, 128-byte values,
#     64 connections, fsync on (the default), against the leader of a fresh 3-node cluster,
#     once with compaction on and once off (fresh data each time; ROUNDS=N pairs, default 1,
#     taking turns to go first). `rolepax-bench sample` records every node's data directory,
#     snapshot.bin and RSS each second; `rolepax-bench plot-disk` checks every sample
#     against 3 x snapshot + 64 MiB and draws them (docs/compaction-disk.svg: the first
#     "on" run).
#  2. Catch-up. A fresh cluster; a follower (node 3 unless it leads) is stopped (SIGTERM)
#     before CATCHUP_PUTS puts (default PUTS) and started after them: the time until it
#     has applied up to the leader's commit, and until a linearizable read through it
#     answers the last written value. Then the same with its data directory wiped first.
#   scripts/bench-compaction.sh [PUTS]
# Ports 7601-7603 (peers) and 7701-7703 (HTTP), checked free first. Data, logs and samples
# live in a temporary directory, removed on exit (kept when something fails); the report,
# samples and plots are also copied to $CARGO_TARGET_DIR/bench-compaction (or
# target/bench-compaction). A build without the `compaction` switch refuses
# ROLEPAX_COMPACTION: then the "off" run is a second "on" run, and the report says so.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init compaction
puts=${1:-5000000}
rounds=${ROUNDS:-1}
catchup_puts=${CATCHUP_PUTS:-$puts}
case "$puts$rounds$catchup_puts" in
  *[!0-9]*) echo "usage: [ROUNDS=N] [CATCHUP_PUTS=N] scripts/bench-compaction.sh [PUTS]" >&2; exit 2 ;;
esac
bench_ports_free 7601 7602 7603 7701 7702 7703

echo "== building rolepax (release)" >&2
built="rolepax $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' plus uncommitted changes')"
cargo build --release --quiet --bins
bin=$target/release
results=$target/bench-compaction
mkdir -p "$results"
rm -f "$results"/*.csv "$results"/*.json "$results"/*.svg "$results"/*.txt
config=$work/cluster.toml
sed -e 's/:710/:760/g' -e 's/:720/:770/g' config/local-3.toml >"$config"

# Does this build know the switch? An unknown ROLEPAX_ key is refused, naming it, before
# the node id is looked at; a known one lets the check reach the (missing) id 999.
probe=$(ROLEPAX_COMPACTION=false "$bin/rolepax-node" --config "$config" --id 999 2>&1 || true)
if [[ $probe == *ROLEPAX_COMPACTION* ]]; then
  off_env=()
  no_switch=" (a build without compaction)"
  switch="no: this build has no compaction switch (ROLEPAX_COMPACTION is refused), so the \"off\" run is a second \"on\" run"
else
  off_env=(ROLEPAX_COMPACTION=false)
  no_switch=""
  switch="yes (ROLEPAX_COMPACTION=false for the \"off\" runs)"
fi

declare -A node_pid
# start_node RUN ID [VAR=VALUE...]: starts node ID of cluster RUN (data in $work/RUN/node-ID).
start_node() {
  local run=$1 id=$2
  shift 2
  env RUST_LOG="${RUST_LOG:-warn}" "$@" "$bin/rolepax-node" --config "$config" --id "$id" \
    --data-dir "$work/$run/node-$id" >>"$work/$run-$id.log" 2>&1 &
  pids+=("$!")
  node_pid[$id]=$!
}

# stop_node ID: SIGTERM, then waits for it to exit.
stop_node() {
  kill -TERM "${node_pid[$1]}" 2>/dev/null || true
  wait "${node_pid[$1]}" 2>/dev/null || true
}

# JSON field of a node's /status (a Python expression over `s`); empty when it does not answer.
status_of() {
  curl -sf --max-time 5 "http://127.0.0.1:770$1/status" 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin); v=$2; print('' if v is None else v)" 2>/dev/null || true
}

# start_cluster RUN [VAR=VALUE...]: three nodes; sets $leader (its id) and $url once the
# leader has answered a put.
start_cluster() {
  local run=$1 id
  shift
  for id in 1 2 3; do start_node "$run" "$id" "$@"; done
  leader=""
  for _ in $(seq 1 300); do
    for id in 1 2 3; do
      leader=$(status_of "$id" 's.get("leader_id")')
      if [ -n "$leader" ]; then break 2; fi
    done
    sleep 0.2
  done
  [ -n "$leader" ] || { echo "$bench_name: cluster $run elected no leader in 60 s (logs: $work/$run-*.log)" >&2; exit 1; }
  url=http://127.0.0.1:770$leader
  for _ in $(seq 1 100); do
    curl -sf -X POST "$url/v3/kv/put" -d '{"key":"d2FybQ==","value":"eA=="}' >/dev/null && return
    sleep 0.2
  done
  echo "$bench_name: the leader of $run answers no put" >&2
  exit 1
}

# load RUN N: N puts against the leader; the run's summary goes to $work/RUN.json.
load() {
  "$bin/rolepax-bench" --endpoints "$url" --clients 64 --keys 100000 --value-size 128 \
    --warmup 0 --requests "$2" --timeout 30 --label "$1" --json "$work/$1.json" --csv "$results/runs.csv" >&2
}

# throughput FILE.json: the run's puts per second.
throughput() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$1"
}

# disk_run NAME [VAR=VALUE...]: a fresh cluster, sampled every second while it takes $puts puts.
disk_run() {
  local name=$1 sampler
  shift
  echo "== $name: $puts puts, compaction ${name%%-*}" >&2
  start_cluster "$name" "$@"
  "$bin/rolepax-bench" sample --dirs "$work/$name/node-1,$work/$name/node-2,$work/$name/node-3" \
    --pids "${node_pid[1]},${node_pid[2]},${node_pid[3]}" --interval-ms 1000 --out "$work/$name.csv" &
  sampler=$!
  pids+=("$sampler")
  load "$name" "$puts"
  sleep 5 # the state after the load: snapshots and compaction still running
  kill -TERM "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  for id in 1 2 3; do stop_node "$id"; done
  "$bin/rolepax-bench" plot-disk --title "$(sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$puts") puts, compaction ${name%%-*}$no_switch, $name" \
    --out "$work/$name.svg" "$work/$name.csv" >"$work/$name-disk.txt"
  cp "$work/$name.csv" "$work/$name.svg" "$work/$name.json" "$results/"
}

# catch_up NAME keep|wipe: the stopped-follower measurement; prints one report line.
catch_up() {
  local name=$1 mode=$2 lag key value t0 times
  echo "== $name: a follower misses $catchup_puts puts, then catches up ($mode its data)" >&2
  start_cluster "$name"
  lag=3
  if [ "$leader" = 3 ]; then lag=2; fi
  stop_node "$lag"
  load "$name" "$catchup_puts"
  key=catchup-last
  value=$name-$(date +%s%N)
  curl -sf -X POST "$url/v3/kv/put" \
    -d "{\"key\":\"$(printf %s "$key" | base64)\",\"value\":\"$(printf %s "$value" | base64)\"}" >/dev/null
  if [ "$mode" = wipe ]; then rm -rf "$work/$name/node-$lag"; fi
  t0=$(date +%s.%N)
  start_node "$name" "$lag"
  times=$(python3 - "$lag" "$leader" "$key" "$value" "$t0" <<'PY'
import base64, json, sys, time, urllib.request
lag, leader, key, value, t0 = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])

def call(node, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:770{node}{path}", data, timeout=10) as r:
        return json.load(r)

applied = read = None
while time.time() < t0 + 3600 and (applied is None or read is None):
    try:
        if applied is None:
            mine = call(lag, "/status")["state_machine"]["applied"]
            if mine >= call(leader, "/status")["learner"]["commit"]:
                applied = time.time() - t0
        if read is None:
            kvs = call(lag, "/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()}).get("kvs") or []
            if kvs and base64.b64decode(kvs[0].get("value", "")).decode() == value:
                read = time.time() - t0
    except (OSError, ValueError, KeyError):
        pass  # not up yet, or answering 503 while it catches up
    time.sleep(0.05)
show = lambda t: "never (1 h)" if t is None else f"{t:.2f} s"
print(f"applied the leader's commit after {show(applied)}, linearizable read of the last put after {show(read)}")
PY
)
  local dir=$work/$name/node-$lag snap
  snap=$(stat -c %s "$dir/snapshot.bin" 2>/dev/null || echo 0)
  printf '%-13s node %s: %s; its data %s MiB, snapshot.bin %s MiB\n' "$mode data" "$lag" "$times" \
    "$(du -sm "$dir" | cut -f1)" "$((snap >> 20))" >>"$work/catchup.txt"
  for id in 1 2 3; do stop_node "$id"; done
}

for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) = 1 ]; then
    disk_run "on-$round"
    disk_run "off-$round" "${off_env[@]}"
  else
    disk_run "off-$round" "${off_env[@]}"
    disk_run "on-$round"
  fi
done
cp "$work/on-1.svg" docs/compaction-disk.svg
: >"$work/catchup.txt"
catch_up catchup-keep keep
catch_up catchup-wipe wipe

{
  echo "scripts/bench-compaction.sh $puts   ($(date -u '+%Y-%m-%d %H:%M UTC'), $built, $(nproc) cores)"
  echo "$puts puts over 100000 keys, 128-byte values, 64 connections, fsync on, ROUNDS=$rounds"
  echo "compaction switch: $switch"
  echo
  echo "Throughput (puts/s, measured from the first put to the last):"
  ratios=()
  for round in $(seq 1 "$rounds"); do
    on=$(throughput "$work/on-$round.json")
    off=$(throughput "$work/off-$round.json")
    ratio=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.3f}')" "$on" "$off")
    ratios+=("$ratio")
    echo "  round $round: on $on, off $off, on/off $ratio"
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | python3 -c "import sys; v=[float(x) for x in sys.stdin]; print(f'{v[len(v)//2] if len(v)%2 else (v[len(v)//2-1]+v[len(v)//2])/2:.3f}')")
  verdict=FAIL
  if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.9 else 1)" "$median"; then verdict=PASS; fi
  echo "  median on/off: $median   (target: at least 0.90): $verdict"
  for round in $(seq 1 "$rounds"); do
    for mode in on off; do
      echo
      echo "Disk (every second: data directory below 3 x snapshot.bin + 64 MiB?) and RSS, $mode-$round:"
      sed 's/^/  /' "$work/$mode-$round-disk.txt"
    done
  done
  echo
  echo "Catch-up after $catchup_puts puts missed (times from the follower's start):"
  sed 's/^/  /' "$work/catchup.txt"
  echo
  echo "Plot of on-1: docs/compaction-disk.svg; samples, plots and this report: $results"
} | tee "$results/report.txt"
ok=1
