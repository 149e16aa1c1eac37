#!/usr/bin/env bash
# Regenerates docs/EVALUATION.md (issue #17: the Paxos roles against Raft, and etcd) in one
# command: builds the release binaries once, starts the reference etcd
# (../shared/bench/etcd-cluster.sh; skipped with a note when etcd is not installed), runs
# the five experiments of `rolepax-bench experiment` against clusters of rolepax-node
# processes it starts on 127.0.0.1 (ephemeral ports, temporary data directories), then
# `rolepax-bench report`. Raw CSV and SVG plots land in docs/eval/ (concerns.md and
# answer.md there are kept and included).
#
#   scripts/evaluate.sh                 # the full run: about 15 minutes on 2 cores
#   EVAL_QUICK=1 scripts/evaluate.sh    # a smoke run with tiny knobs: about 3 minutes
#
# Knobs (environment):
#   EVAL_ENGINES=paxos,raft   engines to compare (etcd is added when it runs)
#   EVAL_ETCD=0               do not start etcd
#   EVAL_ONLY="mix headline"  run only these experiments (the others' CSVs are kept)
#   EVAL_OUT=DIR              where CSV and SVG go (default docs/eval; the report then
#                             goes to DIR/../EVALUATION.md)
#   EVAL_TRIALS, EVAL_DURATION, EVAL_ROUNDS, EVAL_SIZES override the chosen knobs.
# Exit code: 0 when every run succeeded, 1 when some rows failed (the report names them).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init evaluate

engines=${EVAL_ENGINES:-paxos,raft}
out=${EVAL_OUT:-$here/docs/eval}
mkdir -p "$out"
report_md=$(cd "$out/.." && pwd)/EVALUATION.md
only=${EVAL_ONLY:-headline mix size stragglers failover}
# The commit the run measured, taken before it writes anything.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- . ':(exclude)docs/eval' ':(exclude)docs/EVALUATION.md' 2>/dev/null)" ]; then
  commit="$commit+changes"
fi

if [ "${EVAL_QUICK:-0}" = 1 ]; then
  trials=${EVAL_TRIALS:-2}; duration=${EVAL_DURATION:-1.5}; warmup=0.5; rounds=${EVAL_ROUNDS:-1}
  sizes=${EVAL_SIZES:-3,5}; mix_keys=2000; label="EVAL_QUICK=1 scripts/evaluate.sh"
else
  trials=${EVAL_TRIALS:-20}; duration=${EVAL_DURATION:-5}; warmup=1; rounds=${EVAL_ROUNDS:-3}
  sizes=${EVAL_SIZES:-3,5,7,9,11}; mix_keys=10000; label="scripts/evaluate.sh"
fi

start_all=$(date +%s)
echo "$bench_name: building release binaries" >&2
cargo build --release --quiet --bin rolepax-node --bin rolepax-bench
bench=$target/release/rolepax-bench
node=$target/release/rolepax-node

etcd_urls=""
etcd_dir=$work/etcd
cleanup_more() { [ -z "$etcd_urls" ] || "$shared/etcd-cluster.sh" stop "$etcd_dir" 2>/dev/null || true; }
if [ "${EVAL_ETCD:-1}" = 1 ] && command -v etcd >/dev/null && [ -x "$shared/etcd-cluster.sh" ]; then
  case " $only " in
  *" mix "* | *" headline "*)
    if urls=$("$shared/etcd-cluster.sh" start "$etcd_dir"); then
      etcd_urls=$(echo "$urls" | paste -sd, -)
      echo "$bench_name: etcd at $etcd_urls" >&2
    else
      echo "$bench_name: etcd did not start; its column is skipped" >&2
    fi ;;
  esac
else
  echo "$bench_name: etcd not installed (or EVAL_ETCD=0): its column is skipped" >&2
fi

status=0
timings=$out/timings.csv
[ -f "$timings" ] && [ "$only" = "headline mix size stragglers failover" ] && rm -f "$timings"
[ -f "$timings" ] || echo "step,seconds" >"$timings"
run() { # run NAME ARGS...: one experiment, fresh CSV, timed
  local name=$1; shift
  rm -f "$out/$name.csv"
  local t0; t0=$(date +%s)
  echo "$bench_name: experiment $name" >&2
  local rc=0
  "$bench" experiment "$name" --node-bin "$node" --out-dir "$out" "$@" || rc=$?
  echo "$name,$(( $(date +%s) - t0 ))" >>"$timings"
  echo "$bench_name: $name took $(( $(date +%s) - t0 )) s (exit $rc)" >&2
  [ "$rc" = 0 ] || status=1
}
with_etcd=$engines
[ -z "$etcd_urls" ] || with_etcd="$engines,etcd"
etcd_arg=()
[ -z "$etcd_urls" ] || etcd_arg=(--etcd "$etcd_urls")
rest=$only
for exp in $only; do
  case $exp in
  headline) run headline --engines "$with_etcd" "${etcd_arg[@]}" --rounds "$rounds" --duration "$duration" --warmup "$warmup" ;;
  mix) run mix --engines "$with_etcd" "${etcd_arg[@]}" --keys "$mix_keys" --duration "$duration" --warmup "$warmup" ;;
  size) run size --engines "$engines" --sizes "$sizes" --duration "$duration" --warmup "$warmup" ;;
  stragglers) run stragglers --engines "$engines" --duration "$duration" --warmup "$warmup" ;;
  failover) run failover --engines "$engines" --trials "$trials" ;;
  *) echo "$bench_name: unknown experiment $exp" >&2; exit 2 ;;
  esac
  # etcd serves only mix and headline: once neither is left, stop it so it idles on no core.
  rest=${rest#"$exp"}; rest=${rest# }
  case " $rest " in *" mix "* | *" headline "*) ;; *)
    if [ -n "$etcd_urls" ]; then "$shared/etcd-cluster.sh" stop "$etcd_dir" || true; etcd_urls=""; fi ;;
  esac
done
echo "total,$(( $(date +%s) - start_all ))" >>"$timings"

"$bench" report --dir "$out" --out "$report_md" --command "$label" --commit "$commit"
echo "$bench_name: wrote $report_md in $(( $(date +%s) - start_all )) s" >&2
ok=1
exit "$status"
