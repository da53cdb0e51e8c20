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
import time

from local_cluster import LocalCluster, status_mb  # beside this script


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--keys", type=int, default=1_000_000)
    args = ap.parse_args()
    with LocalCluster(args.bin, "kvdown-") as c:
        c.start_all()
        c.wait_healthy()
        c.stop(3)
        c.kvbench("--clients", "64", "--conns", "8", "--total", str(args.keys), "put",
                  endpoints=c.endpoints_of((1, 2)))
        time.sleep(1)
        print("node 3 down, after the load: RSS " +
              ", ".join(f"node {i} {status_mb(c.procs[i].pid):.0f} MB" for i in (1, 2)))
        started = time.monotonic()
        c.start(3)
        while True:
            s = c.status()
            target = max((x.get("commit", 0) for i, x in s.items() if i != 3), default=0)
            if 3 in s and target > 0 and s[3].get("applied", 0) >= target:
                break
            if time.monotonic() - started > 300:
                raise SystemExit("node 3 did not catch up within 300 s")
            time.sleep(0.2)
        took = time.monotonic() - started
        print(f"node 3 back: applied the leader's commit index in {took:.1f} s; RSS "
              f"{status_mb(c.procs[3].pid):.0f} MB, peak "
              f"{status_mb(c.procs[3].pid, 'VmHWM'):.0f} MB")


if __name__ == "__main__":
    main()
