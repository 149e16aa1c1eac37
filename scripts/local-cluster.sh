#!/usr/bin/env bash
# Builds rolepax and runs a local 3-node cluster from config/local-3.toml: three
# rolepax-node processes on loopback, data under ./data/node-N, logs under ./data/.
# Ctrl-C stops all three.
# Usage: scripts/local-cluster.sh [--fresh] [--engine paxos|raft]
#   --fresh          wipes ./data first
#   --engine raft    the same cluster on the Raft engine (openraft), data under ./data/raft/
set -euo pipefail
cd "$(dirname "$0")/.."
config=config/local-3.toml
engine=paxos
data=data
while [ $# -gt 0 ]; do
  case "$1" in
    --fresh) rm -rf data ;;
    --engine) engine=${2:?--engine needs paxos or raft}; shift ;;
    --engine=*) engine=${1#--engine=} ;;
    *) echo "usage: scripts/local-cluster.sh [--fresh] [--engine paxos|raft]" >&2; exit 2 ;;
  esac
  shift
done
case "$engine" in
  paxos) ;;
  raft) data=data/raft ;;
  *) echo "--engine: paxos or raft, not $engine" >&2; exit 2 ;;
esac
mkdir -p "$data"

echo "building rolepax (release; the first build takes a few minutes)..."
cargo build --release --quiet --bins
bin=${CARGO_TARGET_DIR:-target}/release

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "stopping the cluster..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped. Data is kept in ./$data (scripts/local-cluster.sh --fresh starts over)."
}
trap stop INT TERM EXIT

for id in 1 2 3; do
  RUST_LOG=${RUST_LOG:-info} "$bin/rolepax-node" --config "$config" --id "$id" --engine "$engine" \
    --data-dir "$data/node-$id" >"$data/node-$id.log" 2>&1 &
  pids+=("$!")
done

# Wait until the cluster has a leader (polling, up to a minute).
for _ in $(seq 1 300); do
  if "$bin/rolepax" status 2>/dev/null | grep -q ' \* '; then break; fi
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then echo "a node exited early; see $data/node-*.log" >&2; exit 1; fi
  done
  sleep 0.2
done

cat <<MSG

rolepax: 3 nodes running, $engine engine (logs: $data/node-{1,2,3}.log)
  HTTP: http://127.0.0.1:7201  http://127.0.0.1:7202  http://127.0.0.1:7203

$("$bin/rolepax" status 2>&1 || true)

Try:
  $bin/rolepax put greeting hello
  $bin/rolepax get greeting
  curl -s -X PUT --data-binary world http://127.0.0.1:7202/v1/kv/greeting
  curl -s http://127.0.0.1:7203/v1/kv/greeting
  curl -s http://127.0.0.1:7201/status

Ctrl-C stops the cluster.
MSG
wait
