#!/usr/bin/env bash
# Before/after: is a change within noise for users? Builds rolepax at REV (in a temporary
# git worktree) and the working tree, starts the reference 3-member etcd
# (../shared/bench/etcd-cluster.sh) and two local 3-node rolepax clusters, one of each build,
# then runs ../shared/bench/gateway-bench.sh (wrk: put c1, put c64, range c64) against etcd,
# rolepax@REV and rolepax@working-tree in alternating rounds (REV and the working tree
# taking turns to go first), and prints the medians of the
# rounds and the ratios: REV/etcd, now/etcd and now/REV.
#   scripts/bench-compare.sh REV [SECONDS_PER_LOAD]     (default 5; ROUNDS=N rounds, default 5)
# Ports: 7101-7103 and 7201-7203 (the working tree's cluster, config/local-3.toml),
# 7301-7303 and 7401-7403 (REV's), and etcd's. Stops everything it started on exit.
set -euo pipefail
rev=${1:?usage: scripts/bench-compare.sh REV [SECONDS_PER_LOAD]}
secs=${2:-5}
rounds=${ROUNDS:-5}
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init compare
cleanup_more() {
  "$shared/etcd-cluster.sh" stop "$work/etcd" >/dev/null 2>&1 || true
  git worktree remove --force "$work/rev" >/dev/null 2>&1 || true
}
bench_ports_free 7201 7202 7203 7401 7402 7403

rev_name="$(git rev-parse --short "$rev")"
now_name="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo '+changes')"
echo "== building rolepax at $rev_name and at $now_name (release)" >&2
git worktree add --detach "$work/rev" "$rev" >/dev/null
# One target directory: the dependencies are built once for both.
(cd "$work/rev" && CARGO_TARGET_DIR=$target cargo build --release --quiet --bin rolepax-node)
cp "$target/release/rolepax-node" "$work/rolepax-node-rev"
cargo build --release --quiet --bin rolepax-node
cp "$target/release/rolepax-node" "$work/rolepax-node-now"
# REV's cluster on ports 730N (peers) and 740N (HTTP).
sed -e 's/:710/:730/g' -e 's/:720/:740/g' config/local-3.toml >"$work/rev-3.toml"

echo "== starting etcd" >&2
mapfile -t etcd_urls < <("$shared/etcd-cluster.sh" start "$work/etcd")
etcd=${etcd_urls[0]}

# start_cluster NAME BINARY CONFIG HTTP_PREFIX: starts 3 nodes and sets $url to the
# leader's URL (not in a subshell: $pids must keep the nodes, for cleanup).
start_cluster() {
  for id in 1 2 3; do
    RUST_LOG=${RUST_LOG:-warn} "$2" --config "$3" --id "$id" --data-dir "$work/$1/node-$id" \
      >"$work/$1-$id.log" 2>&1 &
    pids+=("$!")
  done
  for _ in $(seq 1 300); do
    for id in 1 2 3; do
      leader=$(curl -sf "http://127.0.0.1:$4$id/status" 2>/dev/null \
        | python3 -c 'import json,sys; l=json.load(sys.stdin).get("leader_id"); print(l if l else "")' 2>/dev/null || true)
      if [ -n "$leader" ]; then
        url="http://127.0.0.1:$4$leader"
        for _ in $(seq 1 100); do
          curl -sf -X POST "$url/v3/kv/put" -d '{"key":"d2FybQ==","value":"eA=="}' >/dev/null && break
          sleep 0.2
        done
        return
      fi
    done
    sleep 0.2
  done
  echo "bench-compare: cluster $1 elected no leader in 60 s" >&2; exit 1
}
start_cluster rev "$work/rolepax-node-rev" "$work/rev-3.toml" 740
rev_url=$url
start_cluster now "$work/rolepax-node-now" config/local-3.toml 720
now_url=$url
echo "etcd $etcd, rolepax@$rev_name $rev_url, rolepax@$now_name $now_url" >&2

for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds (${secs}s per load)" >&2
  "$shared/gateway-bench.sh" "$etcd" "$secs" | tee "$work/etcd-$round.txt" >&2
  # REV and now take turns going first, so that neither always runs right after etcd.
  order="rev now"; [ $((round % 2)) = 0 ] && order="now rev"
  for name in $order; do
    url=$rev_url; [ "$name" = now ] && url=$now_url
    echo "-- rolepax@$name" >&2
    "$shared/gateway-bench.sh" "$url" "$secs" | tee "$work/$name-$round.txt" >&2
  done
done

python3 - "$work" "$rounds" "$rev_name" "$now_name" "$secs" <<'PY'
import re, sys
from statistics import median
work, rounds, rev, now, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]

def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m[1]) * {"us": 0.001, "ms": 1, "s": 1000}[m[2]] if m else None

def load(name, r):
    rows = {}
    for line in open(f"{work}/{name}-{r}.txt"):
        m = re.match(r"(\S+)\s+req/s=(\S+)\s+p50=(\S+)\s+p99=(\S+)\s+non2xx=(\S+)", line)
        if m:
            rows[m[1]] = (float(m[2]), ms(m[3]), ms(m[4]), int(m[5]))
    return rows

data = {n: [load(n, r) for r in range(1, rounds + 1)] for n in ("etcd", "rev", "now")}
print(f"scripts/bench-compare.sh {rev} {secs}: medians of {rounds} alternating rounds "
      f"(gateway-bench.sh), etcd vs rolepax@{rev} vs rolepax@{now}")
print()
print(f"| load | etcd req/s | {rev} req/s | {now} req/s | {rev}/etcd | {now}/etcd | {now}/{rev} | p99 ms etcd / {rev} / {now} | non-2xx {rev} / {now} |")
print("|---|---|---|---|---|---|---|---|---|")
for load_name in ("put-c1", "put-c64", "get-c64"):
    med = {}
    for n in data:
        rows = [d[load_name] for d in data[n] if load_name in d]
        med[n] = (median(r[0] for r in rows), median(r[2] for r in rows if r[2] is not None), sum(r[3] for r in rows))
    e, a, b = med["etcd"], med["rev"], med["now"]
    print(f"| {load_name} | {e[0]:.0f} | {a[0]:.0f} | {b[0]:.0f} | {a[0]/e[0]:.2f} | {b[0]/e[0]:.2f} | "
          f"{b[0]/a[0]:.2f} | {e[1]:.2f} / {a[1]:.2f} / {b[1]:.2f} | {a[2]} / {b[2]} |")
print()
print("Per-round ratios now/REV (req/s):")
for load_name in ("put-c1", "put-c64", "get-c64"):
    per = [f"{data['now'][r][load_name][0] / data['rev'][r][load_name][0]:.2f}" for r in range(rounds)]
    print(f"  {load_name}: {' '.join(per)}")
PY
ok=1
