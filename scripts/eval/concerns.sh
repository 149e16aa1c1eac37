#!/usr/bin/env bash
# The separation-of-concerns evidence of docs/EVALUATION.md: writes docs/eval/concerns.md
# (a fragment starting with "## Separation of concerns") and docs/eval/concerns.csv
# (code lines per side, file and concern), after measuring messages and fsyncs per
# committed command on 3-node clusters of each engine (docs/eval/concerns-measured.csv).
#
#   scripts/eval/concerns.sh                 check the table, measure every engine, report
#   scripts/eval/concerns.sh --no-measure    check and report from the measurements on disk
#   ENGINES="paxos raft" REQUESTS_1=2000 REQUESTS_64=20000 scripts/eval/concerns.sh
#
# Needs python3 (stdlib only) and, to measure, cargo: it builds the release rolepax-node
# and rolepax-bench in $CARGO_TARGET_DIR (default ./target). An engine that does not start
# (the raft engine before it is wired) is reported and skipped; its earlier figures, if
# any, stay. The classification lives in scripts/eval/concerns_table.txt; the counting and
# the report in scripts/eval/concerns.py (see its header for what counts as a line).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
py=scripts/eval/concerns.py
measure=1
case "${1:-}" in
  --no-measure) measure=0 ;;
  "") ;;
  *) echo "usage: scripts/eval/concerns.sh [--no-measure]" >&2; exit 2 ;;
esac

python3 "$py" check

if [ "$measure" = 1 ]; then
  target=${CARGO_TARGET_DIR:-$(pwd)/target}
  echo "concerns: building the release rolepax-node and rolepax-bench" >&2
  cargo build --release --quiet --bin rolepax-node --bin rolepax-bench
  for engine in ${ENGINES:-paxos raft}; do
    echo "concerns: measuring the $engine engine" >&2
    python3 "$py" measure --engine "$engine" \
      --node "$target/release/rolepax-node" --bench "$target/release/rolepax-bench" \
      --requests-1 "${REQUESTS_1:-2000}" --requests-64 "${REQUESTS_64:-20000}" \
      || echo "concerns: the $engine engine was not measured (see above)" >&2
  done
fi

python3 "$py" report
