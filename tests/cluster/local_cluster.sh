#!/usr/bin/env bash
# Starts a local 3-node cluster on loopback in the foreground and stops it on Ctrl-C.
#
#   bash tests/cluster/local_cluster.sh [--bin DIR] [--data DIR]
#
# Nodes keep their data under ./data/node1..3 (so a restart recovers it), clients talk to
# ports 7001-7003 and nodes to each other on 7101-7103; if any of those is taken, the
# script picks free ports instead. Binaries come from build/bin/ (./dev build).
set -euo pipefail

BIN=build/bin
DATA=./data
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "local_cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done

for b in kvnode kvctl; do
  if [ ! -x "$BIN/$b" ]; then
    echo "local_cluster: $BIN/$b not found; build first (./dev build)" >&2
    exit 2
  fi
done

# port_free PORT: true if nothing listens on 127.0.0.1:PORT.
port_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# free_ports N: N distinct ports the kernel currently considers free.
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

CLIENT_PORTS=(7001 7002 7003)
RAFT_PORTS=(7101 7102 7103)
all_free=1
for p in "${CLIENT_PORTS[@]}" "${RAFT_PORTS[@]}"; do
  port_free "$p" || all_free=0
done
if [ "$all_free" = 0 ]; then
  read -r -a picked <<<"$(free_ports 6)"
  CLIENT_PORTS=("${picked[@]:0:3}")
  RAFT_PORTS=("${picked[@]:3:3}")
  echo "local_cluster: default ports busy; using client ports ${CLIENT_PORTS[*]}," \
       "raft ports ${RAFT_PORTS[*]}" >&2
fi

CLUSTER="1=127.0.0.1:${RAFT_PORTS[0]},2=127.0.0.1:${RAFT_PORTS[1]},3=127.0.0.1:${RAFT_PORTS[2]}"
ENDPOINTS="127.0.0.1:${CLIENT_PORTS[0]},127.0.0.1:${CLIENT_PORTS[1]},127.0.0.1:${CLIENT_PORTS[2]}"

PIDS=()
stop_all() {
  trap - INT TERM EXIT
  if [ ${#PIDS[@]} -gt 0 ]; then
    echo >&2
    echo "local_cluster: stopping nodes (pids ${PIDS[*]})" >&2
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  fi
}
trap 'stop_all; exit 130' INT TERM
trap stop_all EXIT

mkdir -p "$DATA"
for id in 1 2 3; do
  mkdir -p "$DATA/node$id"
  "$BIN/kvnode" --id "$id" --data-dir "$DATA/node$id" \
      --client-addr "127.0.0.1:${CLIENT_PORTS[$((id - 1))]}" \
      --raft-addr "127.0.0.1:${RAFT_PORTS[$((id - 1))]}" \
      --cluster "$CLUSTER" 2> >(sed -u "s/^/[node$id] /" >&2) &
  PIDS+=($!)
done

echo "local_cluster: started nodes 1-3 (pids ${PIDS[*]}); waiting for a leader..." >&2
ok=0
for _ in $(seq 100); do
  if "$BIN/kvctl" --endpoints "$ENDPOINTS" --timeout 500 health >/dev/null 2>&1; then
    ok=1
    break
  fi
  for pid in "${PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "local_cluster: node pid $pid exited during startup; see its log above" >&2
      exit 1
    fi
  done
  sleep 0.1
done
if [ "$ok" = 0 ]; then
  echo "local_cluster: no leader after 10 s" >&2
  "$BIN/kvctl" --endpoints "$ENDPOINTS" status >&2 || true
  exit 1
fi

K="$BIN/kvctl --endpoints $ENDPOINTS"
"$BIN/kvctl" --endpoints "$ENDPOINTS" status
cat <<EOF

Cluster is up. Data under $DATA/node1..3. Try, in another terminal:

  $K put hello world
  $K get hello
  $K cas hello world there
  $K cas fresh --absent 1
  $K range a z --limit 10
  $K del hello
  $K --json status
  $K health
  $BIN/kvctl --endpoints 127.0.0.1:${CLIENT_PORTS[1]} put any node   # any one node is enough
  $BIN/kvctl --endpoints 127.0.0.1:${CLIENT_PORTS[1]} --stale get hello   # node 2's local state

Kill the leader (see status) with kill -9 and watch a new one take over.
Press Ctrl-C to stop every node.
EOF

# Stay in the foreground until Ctrl-C or until every node has exited.
while true; do
  alive=0
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  [ "$alive" = 1 ] || { echo "local_cluster: all nodes exited" >&2; break; }
  sleep 1
done
