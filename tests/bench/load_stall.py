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
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stop_all(procs, work):
    """SIGTERM to each process group, SIGKILL after 10 s; then removes `work`."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    shutil.rmtree(work, ignore_errors=True)


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024 / 1e6
    except (OSError, AttributeError):
        return 0.0


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

    work = tempfile.mkdtemp(prefix="kvload-")
    ports = free_ports(6)
    cluster = ",".join(f"{i}=127.0.0.1:{ports[2 + i]}" for i in (1, 2, 3))
    endpoints = ",".join(f"127.0.0.1:{ports[i - 1]}" for i in (1, 2, 3))
    procs = {}
    try:
        for i in (1, 2, 3):
            log = open(os.path.join(work, f"node{i}.log"), "w")
            procs[i] = subprocess.Popen(
                [os.path.join(args.bin, "kvnode"), "--id", str(i), "--data-dir",
                 os.path.join(work, f"node{i}"), "--client-addr", f"127.0.0.1:{ports[i - 1]}",
                 "--raft-addr", f"127.0.0.1:{ports[2 + i]}", "--cluster", cluster] +
                (["--snapshot-entries", str(args.snapshot_entries)]
                 if args.snapshot_entries is not None else []) + args.node_arg,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while subprocess.run([os.path.join(args.bin, "kvctl"), "--endpoints", endpoints,
                              "health"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                sys.exit("no healthy cluster within 30 s")
            time.sleep(0.1)
        peak = {i: 0.0 for i in procs}
        log_peak = {}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for i, p in procs.items():
                    peak[i] = max(peak[i], rss_mb(p.pid))
                st = subprocess.run([os.path.join(args.bin, "kvctl"), "--endpoints", endpoints,
                                     "--timeout", "500", "--json", "status"],
                                    capture_output=True, text=True)
                try:
                    for s in json.loads(st.stdout):
                        n = s["lastIndex"] - s["snapshotIndex"]
                        log_peak[s["id"]] = max(log_peak.get(s["id"], 0), n)
                except (ValueError, KeyError, TypeError):
                    pass
                time.sleep(0.2)

        t = threading.Thread(target=sample)
        t.start()
        started = time.monotonic()
        out = subprocess.run(
            [os.path.join(args.bin, "kvbench"), "--endpoints", endpoints, "--clients",
             str(args.clients), "--conns", str(args.conns), "--total", str(args.keys),
             "--key-size", "8", "--val-size", "256", "put", "--json"],
            capture_output=True, text=True)
        elapsed = time.monotonic() - started
        time.sleep(1)
        stop.set()
        t.join()
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        result = {"keys": args.keys, "seconds": round(elapsed, 1), "kvbench": summary,
                  "rss_mb": {i: round(rss_mb(p.pid)) for i, p in procs.items()},
                  "peak_rss_mb": {i: round(v) for i, v in peak.items()},
                  "peak_log_entries": dict(sorted(log_peak.items()))}
        print(json.dumps(result))
    finally:
        stop_all(procs.values(), work)


if __name__ == "__main__":
    main()
