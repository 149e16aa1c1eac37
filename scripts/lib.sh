# shellcheck shell=bash
# The prologue the benchmark scripts share. Source it after `set -euo pipefail`:
#   . "$(dirname "$0")/lib.sh"; bench_init NAME
# bench_init moves to the repository's root and sets
#   $here    the repository       $shared  ../shared/bench (the etcd and wrk scripts)
#   $target  cargo's target dir   $work    a fresh temporary directory (rolepax-NAME.XXXXXX)
#   $pids    processes to stop on exit (append every background process you start)
#   $ok      set it to 1 at the end of a good run: $work is then removed, else kept for its logs
# Messages name the script ($bench_name). It traps EXIT (stop $pids, then the script's
# own `cleanup_more` if it defines one) and INT/TERM (exit 130, which runs the same).

# shellcheck disable=SC2034 # the variables are for the scripts that source this
bench_init() {
  bench_name=$(basename "$0" .sh)
  cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
  here=$(pwd)
  shared=$here/../shared/bench
  target=${CARGO_TARGET_DIR:-$here/target}
  work=$(mktemp -d "${TMPDIR:-/tmp}/rolepax-$1.XXXXXX")
  pids=()
  ok=0
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if declare -F cleanup_more >/dev/null; then cleanup_more; fi
  if [ "$ok" = 1 ]; then rm -rf "$work"; else echo "$bench_name: logs kept in $work" >&2; fi
}

# bench_ports_free PORT...: exits 2, naming the port, when something on this machine
# accepts connections on one of them (a cluster already running?).
bench_ports_free() {
  for port in "$@"; do
    if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$bench_name: port $port is in use (a cluster running?); stop it first" >&2
      exit 2
    fi
  done
}
