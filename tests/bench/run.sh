#!/usr/bin/env bash
# The benchmark suite: `./dev bench` (which builds build/ with debugoptimized first).
#
#   bash tests/bench/run.sh [--build DIR] [--out FILE] [--only matrix,tls,failover,wal,sim,memory]
#                           [--quick] [--keep]
#
# Starts fresh local 3-node clusters (fsync on, default timeouts) on free loopback ports
# in a temp dir, runs the kvbench matrix, kvbench on a plaintext and a TLS cluster side by
# side, 20 leader kills, walbench, kvsim and a memory load, and writes docs/BENCHMARKS.md
# (each figure next to its target). Takes about 12 minutes on 2 cores. Every process it
# starts is stopped at the end, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=build
OUT=docs/BENCHMARKS.md
PASS=()
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --only) PASS+=(--only "$2"); shift 2 ;;
    --quick) PASS+=(--quick); shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ ! -f "$BUILD/build.ninja" ]; then
  echo "bench: $BUILD is not a configured build dir; run ./dev build first" >&2
  exit 2
fi
# ./dev builds everything; when run by hand, build just what the suite needs.
ninja -C "$BUILD" bin/kvnode bin/kvctl bin/kvbench bin/kvsim tests/disk/walbench \
    tests/cluster/loadgen >&2

WORK=$(mktemp -d /tmp/kvbench-XXXXXX)
DRIVER=
cleanup() {
  trap - EXIT INT TERM
  # The driver first: on SIGTERM it kills what it started itself.
  if [ -n "$DRIVER" ] && kill -0 "$DRIVER" 2>/dev/null; then
    kill -TERM "$DRIVER" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DRIVER" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DRIVER" 2>/dev/null || true
  fi
  # bench.py kills what it started; this catches anything left if it died itself.
  if [ -f "$WORK/pids" ]; then
    while read -r pid; do
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done <"$WORK/pids"
  fi
  if [ "$KEEP" = 1 ]; then
    echo "bench: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$(dirname "$OUT")"
status=0
# In the background with `wait`, so that a signal runs the trap at once (bash defers traps
# while a foreground child runs).
python3 tests/bench/bench.py --build "$BUILD" --workdir "$WORK" --out "$OUT" ${PASS[@]+"${PASS[@]}"} &
DRIVER=$!
wait "$DRIVER" || status=$?
# The raw figures, to re-render with tests/bench/report.py after editing its text.
cp "$WORK/results.json" "$BUILD/bench-results.json" 2>/dev/null || true
exit $status
