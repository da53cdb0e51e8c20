#!/bin/bash
# Allocations per request: a fresh local 3-node cluster from BINDIR (kvnode, kvctl,
# kvbench), every process under an LD_PRELOAD malloc counter (malloc_count.c), 10,000
# warm-up puts, then N requests of 64 clients over 8 connections; prints malloc calls per
# request on each node (between two snapshots of its counter) and in the whole kvbench.
#
#   bash tests/bench/allocs.sh BINDIR put|get|stale [N]
set -u
B=$1; MODE=$2; N=${3:-30000}
W=$(mktemp -d /tmp/alloc-XXXX)
gcc -O2 -shared -fPIC -o $W/mcount.so "$(dirname "$0")/malloc_count.c"
read -r -a P <<<"$(python3 -c "
import socket
ss=[socket.socket() for _ in range(6)]
[s.bind(('127.0.0.1',0)) for s in ss]
print(' '.join(str(s.getsockname()[1]) for s in ss))")"
C="1=127.0.0.1:${P[3]},2=127.0.0.1:${P[4]},3=127.0.0.1:${P[5]}"
E="127.0.0.1:${P[0]},127.0.0.1:${P[1]},127.0.0.1:${P[2]}"
PIDS=()
for i in 1 2 3; do
  LD_PRELOAD=$W/mcount.so $B/kvnode --id $i --data-dir $W/n$i --client-addr 127.0.0.1:${P[$((i-1))]} --raft-addr 127.0.0.1:${P[$((i+2))]} --cluster $C > $W/node$i.log 2>&1 &
  PIDS+=($!)
done
until $B/kvctl --endpoints $E --timeout 1000 health >/dev/null 2>&1; do sleep 0.1; done
L=$($B/kvctl --endpoints $E --json status | python3 -c "import json,sys; print([s['id'] for s in json.load(sys.stdin) if s['role']=='leader'][0])")
EXTRA=""
[ "$MODE" = put ] || EXTRA="--key-space 10000"
[ "$MODE" = stale ] && EXTRA="$EXTRA --stale"
M=$MODE; [ "$MODE" = put ] || M=get
# warm up (also fills the keys for gets)
$B/kvbench --endpoints $E --clients 64 --conns 8 --total 10000 --key-size 8 --val-size 256 put >/dev/null 2>&1
for p in "${PIDS[@]}"; do kill -USR2 $p; done; sleep 0.3
declare -A before
for i in 1 2 3; do before[$i]=$(grep mallocs $W/node$i.log | tail -1 | awk '{print $2}'); done
LD_PRELOAD=$W/mcount.so $B/kvbench --endpoints $E --clients 64 --conns 8 --total $N --key-size 8 --val-size 256 $EXTRA $M 2>$W/bench.err | grep "Requests/s"
for p in "${PIDS[@]}"; do kill -USR2 $p; done; sleep 0.3
for i in 1 2 3; do
  a=$(grep mallocs $W/node$i.log | tail -1 | awk '{print $2}')
  role=follower; [ $i = $L ] && role=leader
  echo "node $i ($role): $(( (a - ${before[$i]}) / N )) mallocs/request"
done
c=$(grep mallocs $W/bench.err | tail -1 | awk '{print $2}')
echo "client (kvbench, whole process): $(( c / N )) mallocs/request"
for p in "${PIDS[@]}"; do kill $p; done; wait
rm -rf $W
