#!/usr/bin/env python3
"""The 1M-key load of issue 10 in one kvbench run, with the nodes' RSS sampled.

    python3 tests/bench/load_stall.py [--bin build/bin] [--keys 1000000] [--clients 64]
                                      [--conns 8] [--snapshot-entries N] [--node-arg ARG]...

Starts a fresh local 3-node cluster (fsync on) in a temp dir, loads --keys keys of 8+256 B
in key order with kvbench put (64 clients over 8 connections), samples every node's RSS
every 0.2 s, and prints one JSON object: kvbench's summary (throughput, p50/p99/p99.9/max
latency in ms), the RSS of each node at the end and the peak sampled RSS, in MB (10^6
bytes), and the most log entries each node was seen holding past its snapshot (sampled
with `kvctl status` every 0.2 s). Every process it starts is stopped at the end.
"""
import argparse
import json
import threading
import time

from local_cluster import LocalCluster, status_mb  # beside this script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--snapshot-entries", type=int, default=None,
                    help="kvnode --snapshot-entries (default: kvnode's own)")
    ap.add_argument("--node-arg", action="append", default=[],
                    help="one more kvnode argument (repeat for several)")
    args = ap.parse_args()

    node_args = (["--snapshot-entries", str(args.snapshot_entries)]
                 if args.snapshot_entries is not None else []) + args.node_arg
    with LocalCluster(args.bin, "kvload-", node_args) as c:
        c.start_all()
        c.wait_healthy()
        peak = {i: 0.0 for i in c.procs}
        log_peak = {}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for i, p in c.procs.items():
                    peak[i] = max(peak[i], status_mb(p.pid))
                for i, s in c.status().items():
                    n = s["lastIndex"] - s["snapshotIndex"]
                    log_peak[i] = max(log_peak.get(i, 0), n)
                time.sleep(0.2)

        t = threading.Thread(target=sample)
        t.start()
        started = time.monotonic()
        out = c.kvbench("--clients", str(args.clients), "--conns", str(args.conns), "--total",
                        str(args.keys), "put", "--json", check=False)
        elapsed = time.monotonic() - started
        time.sleep(1)
        stop.set()
        t.join()
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        result = {"keys": args.keys, "seconds": round(elapsed, 1), "kvbench": summary,
                  "rss_mb": {i: round(status_mb(p.pid)) for i, p in c.procs.items()},
                  "peak_rss_mb": {i: round(v) for i, v in peak.items()},
                  "peak_log_entries": dict(sorted(log_peak.items()))}
        print(json.dumps(result))

if __name__ == "__main__":
    main()
