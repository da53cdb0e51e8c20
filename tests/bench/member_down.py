#!/usr/bin/env python3
"""Memory while a member is down, and its catch-up when it is back.

    python3 tests/bench/member_down.py [--bin build/bin] [--keys 1000000]

Starts a fresh local 3-node cluster (fsync on) in a temp dir, stops node 3 once the
cluster is healthy, loads --keys keys of 8+256 B through nodes 1 and 2 (kvbench put, 64
clients over 8 connections), prints the RSS of the two live nodes, then starts node 3
again and prints how long it took to apply what the leader had committed, and its RSS
and peak RSS, in MB (10^6 bytes). Every process it starts is stopped at the end.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import tempfile
import time

from load_stall import free_ports, stop_all  # beside this script


def status_mb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) * 1024 / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--keys", type=int, default=1_000_000)
    args = ap.parse_args()
    b = args.bin
    work = tempfile.mkdtemp(prefix="kvdown-")
    ports = free_ports(6)
    cluster = ",".join(f"{i}=127.0.0.1:{ports[2 + i]}" for i in (1, 2, 3))
    endpoints = ",".join(f"127.0.0.1:{ports[i]}" for i in range(3))
    procs = {}

    def start(i):
        procs[i] = subprocess.Popen(
            [f"{b}/kvnode", "--id", str(i), "--data-dir", f"{work}/n{i}",
             "--client-addr", f"127.0.0.1:{ports[i - 1]}",
             "--raft-addr", f"127.0.0.1:{ports[2 + i]}", "--cluster", cluster],
            stdout=open(f"{work}/node{i}.log", "a"), stderr=subprocess.STDOUT,
            start_new_session=True)

    def status():
        out = subprocess.run([f"{b}/kvctl", "--endpoints", endpoints, "--timeout", "500",
                              "--json", "status"], capture_output=True, text=True).stdout
        try:
            return {s["id"]: s for s in json.loads(out) if s.get("reachable", True)}
        except (ValueError, KeyError, TypeError):
            return {}

    try:
        for i in (1, 2, 3):
            start(i)
        deadline = time.monotonic() + 30
        while subprocess.run([f"{b}/kvctl", "--endpoints", endpoints, "--timeout", "1000",
                              "health"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("no healthy cluster within 30 s")
            time.sleep(0.1)
        os.killpg(procs[3].pid, signal.SIGTERM)
        procs[3].wait()
        live = ",".join(f"127.0.0.1:{ports[i]}" for i in range(2))
        subprocess.run([f"{b}/kvbench", "--endpoints", live, "--clients", "64", "--conns", "8",
                        "--total", str(args.keys), "--key-size", "8", "--val-size", "256",
                        "put"], capture_output=True, check=True)
        time.sleep(1)
        print("node 3 down, after the load: RSS " +
              ", ".join(f"node {i} {status_mb(procs[i].pid, 'VmRSS'):.0f} MB" for i in (1, 2)))
        started = time.monotonic()
        start(3)
        while True:
            s = status()
            target = max((x.get("commit", 0) for i, x in s.items() if i != 3), default=0)
            if 3 in s and target > 0 and s[3].get("applied", 0) >= target:
                break
            if time.monotonic() - started > 300:
                raise SystemExit("node 3 did not catch up within 300 s")
            time.sleep(0.2)
        took = time.monotonic() - started
        print(f"node 3 back: applied the leader's commit index in {took:.1f} s; RSS "
              f"{status_mb(procs[3].pid, 'VmRSS'):.0f} MB, peak "
              f"{status_mb(procs[3].pid, 'VmHWM'):.0f} MB")
    finally:
        stop_all(procs.values(), work)


if __name__ == "__main__":
    main()
