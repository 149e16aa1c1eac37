#!/usr/bin/env bash
# Issue #16's membership benchmark, in one sitting (see "Membership change" in
# docs/BENCHMARK.md):
#  1. Bringing in a new member. A fresh 3-node cluster is loaded with KEYS keys (default
#     1,000,000; 160-byte values, about 200 MB of state) by `rolepax-bench --fill`. Then,
#     for 1, 2 and 3 sources: a new node starts with `--join`, `rolepax member add`
#     brings it in pulling the state from that many old members in parallel (`--from`),
#     and the time until the command returns (the new member holds the state up to the
#     StopSign and has applied it) is recorded; the node is then removed again.
#  2. The longest client-visible pause. An open-loop load (RATE puts/s, default 200, from
#     16 connections, 25 s, the change starting 3 s in) runs while the operator adds a member, removes it, and removes the
#     leader (the hardest case: the leader hands over to the next configuration); each
#     load's worst latency is the longest any request waited through that change. The
#     goal is one election timeout (the default: 300-600 ms).
#   scripts/bench-membership.sh [KEYS]
# Ports 7611-7616 (peers) and 7711-7716 (HTTP), checked free first. Data and logs live in a
# temporary directory, removed on exit (kept when something fails); the report is also
# copied to $CARGO_TARGET_DIR/bench-membership (or target/bench-membership).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init membership
keys=${1:-1000000}
rate=${RATE:-200}
case "$keys$rate" in
  *[!0-9]*) echo "usage: [RATE=N] scripts/bench-membership.sh [KEYS]" >&2; exit 2 ;;
esac
bench_ports_free 7611 7612 7613 7614 7615 7616 7711 7712 7713 7714 7715 7716

echo "== building rolepax (release)" >&2
built="rolepax $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' plus uncommitted changes')"
cargo build --release --quiet --bins
bin=$target/release
results=$target/bench-membership
mkdir -p "$results"
config=$work/cluster.toml
sed -e 's/:710/:761/g' -e 's/:720/:771/g' config/local-3.toml >"$config"

declare -A node_pid
# start_node ID: one of the three first members.
start_node() {
  env RUST_LOG="${RUST_LOG:-warn}" "$bin/rolepax-node" --config "$config" --id "$1" \
    --data-dir "$work/node-$1" >>"$work/node-$1.log" 2>&1 &
  pids+=("$!")
  node_pid[$1]=$!
}
# join_node ID: a new node (4-6), joining through nodes 1-3.
join_node() {
  rm -rf "$work/node-$1"
  env RUST_LOG="${RUST_LOG:-warn}" "$bin/rolepax-node" --id "$1" --peer-addr "127.0.0.1:761$1" \
    --http-addr "127.0.0.1:771$1" --data-dir "$work/node-$1" \
    --join http://127.0.0.1:7711,http://127.0.0.1:7712,http://127.0.0.1:7713 >>"$work/node-$1.log" 2>&1 &
  pids+=("$!")
  node_pid[$1]=$!
}
stop_node() {
  kill -TERM "${node_pid[$1]}" 2>/dev/null || true
  wait "${node_pid[$1]}" 2>/dev/null || true
}
status_of() {
  curl -sf --max-time 5 "http://127.0.0.1:771$1/status" 2>/dev/null \
    | python3 -c "import json,sys; s=json.load(sys.stdin); v=$2; print('' if v is None else v)" 2>/dev/null || true
}
endpoints=http://127.0.0.1:7711,http://127.0.0.1:7712,http://127.0.0.1:7713
member() { "$bin/rolepax" --endpoints "$endpoints" --timeout 600 member "$@"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

for id in 1 2 3; do start_node "$id"; done
leader=""
for _ in $(seq 1 300); do
  leader=$(status_of 1 's.get("leader_id")')
  [ -n "$leader" ] && break
  sleep 0.2
done
[ -n "$leader" ] || { echo "$bench_name: no leader in 60 s (logs: $work)" >&2; exit 1; }

echo "== loading $keys keys" >&2
t0=$(now)
"$bin/rolepax-bench" --endpoints "http://127.0.0.1:771$leader" --clients 64 --keys "$keys" --value-size 160 \
  --fill --warmup 0 --requests "$keys" --timeout 30 --label load --json "$work/load.json" >&2
load_s=$(since "$t0")
snap_mb=$(( $(stat -c %s "$work/node-1/snapshot.bin" 2>/dev/null || echo 0) >> 20 ))

: >"$work/join.txt"
for sources in 1 2 3; do
  from=$(seq -s, 1 "$sources")
  id=$((3 + sources))
  echo "== adding node $id, pulling from $from" >&2
  join_node "$id"
  t0=$(now)
  member add "$id" --peer-addr "127.0.0.1:761$id" --http-addr "127.0.0.1:771$id" --from "$from" >>"$work/member.log" 2>&1
  took=$(since "$t0")
  got_mb=$(( $(stat -c %s "$work/node-$id/snapshot.bin" 2>/dev/null || echo 0) >> 20 ))
  printf '  %d source(s) (%s): %6s s   (its snapshot.bin: %d MiB)\n' "$sources" "$from" "$took" "$got_mb" >>"$work/join.txt"
  member remove "$id" >>"$work/member.log" 2>&1
  stop_node "$id"
done

# pause LABEL CMD...: the worst latency of an open-loop load running while CMD runs.
: >"$work/pause.txt"
pause() {
  local label=$1 load
  shift
  "$bin/rolepax-bench" --endpoints "$endpoints" --clients 16 --keys 1000 --value-size 160 --rate "$rate" \
    --warmup 0 --duration 25 --timeout 30 --label "$label" --json "$work/pause-$label.json" >>"$work/pause.log" 2>&1 &
  load=$!
  pids+=("$load")
  sleep 3
  "$@" >>"$work/member.log" 2>&1
  wait "$load" || { echo "$bench_name: the load during $label failed (see $work/pause.log)" >&2; exit 1; }
  python3 - "$work/pause-$label.json" "$label" >>"$work/pause.txt" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
lat = r["latency"] or {}
print(f"  {sys.argv[2]:<24} worst wait {lat.get('max_ms', 0):8.1f} ms   p99 {lat.get('p99_ms', 0):7.1f} ms   ({r['ok']} puts, {r['errors']} errors)")
PY
}
join_node 4
pause add-node-4 member add 4 --peer-addr 127.0.0.1:7614 --http-addr 127.0.0.1:7714 --from 1,2
pause remove-node-4 member remove 4
stop_node 4
leader=$(status_of 1 's.get("leader_id")')
pause "remove-leader-$leader" member remove "$leader"

{
  echo "scripts/bench-membership.sh $keys   ($(date -u '+%Y-%m-%d %H:%M UTC'), $built, $(nproc) cores)"
  echo "state: $keys keys of 160-byte values loaded in $load_s s; node 1's snapshot.bin $snap_mb MiB"
  echo
  echo "Bringing in a new member (rolepax member add ... --from SOURCES, until it returns):"
  cat "$work/join.txt"
  echo
  echo "Longest client-visible pause (open loop, $rate puts/s, during the change):"
  cat "$work/pause.txt"
} | tee "$results/report.txt"
ok=1
