#!/usr/bin/env python3
"""CPU and context switches per put, process by process.

    python3 tests/bench/cpu_split.py BINDIR [N] [--clients 64] [--conns 8]

Starts a fresh local 3-node cluster from BINDIR (kvnode, kvctl, kvbench; fsync on) in a
temp dir, writes 10,000 keys to warm it up, then runs kvbench put with N requests
(default 40,000) and prints, for each node (the leader starred) and for kvbench, the
user and system CPU microseconds per put (/proc/PID/stat around the run; kvbench's from
its own resource usage) and the context switches per put (every thread's, from
/proc/PID/task/*/status). bench.py gives the total; this says where it goes. Every
process it starts is stopped at the end.
"""
import argparse
import json
import os
import resource

from local_cluster import LocalCluster  # beside this script

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """(user, system) seconds of a live process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def context_switches(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches" in line:
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass  # a thread that ended meanwhile
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bindir")
    ap.add_argument("total", nargs="?", type=int, default=40_000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--conns", type=int, default=8)
    args = ap.parse_args()
    with LocalCluster(args.bindir, "cpusplit-") as c:
        c.start_all()
        c.wait_healthy()
        leader = next(i for i, s in c.status().items() if s["role"] == "leader")
        procs = [c.procs[i] for i in (1, 2, 3)]
        shape = ["--clients", str(args.clients), "--conns", str(args.conns)]
        c.kvbench(*shape, "--total", "10000", "put")
        before = [(cpu_seconds(p.pid), context_switches(p.pid)) for p in procs]
        child_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = c.kvbench(*shape, "--total", str(args.total), "put", "--json")
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = [(cpu_seconds(p.pid), context_switches(p.pid)) for p in procs]
        n = args.total
        total = 0.0
        for i, p in enumerate(procs):
            (u0, s0), c0 = before[i]
            (u1, s1), c1 = after[i]
            u, s = (u1 - u0) * 1e6 / n, (s1 - s0) * 1e6 / n
            total += u + s
            star = "*" if i + 1 == leader else " "
            print(f"node {i + 1}{star}  user {u:5.1f}  system {s:5.1f} µs/put  "
                  f"context switches {(c1 - c0) / n:.2f}/put")
        u = (child.ru_utime - child_before.ru_utime) * 1e6 / n
        s = (child.ru_stime - child_before.ru_stime) * 1e6 / n
        cs = (child.ru_nvcsw + child.ru_nivcsw - child_before.ru_nvcsw -
              child_before.ru_nivcsw) / n
        total += u + s
        print(f"kvbench  user {u:5.1f}  system {s:5.1f} µs/put  context switches {cs:.2f}/put")
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        lat = summary["latency_ms"]
        print(f"total {total:.1f} µs/put; {summary['rps']:.0f} puts/s, p50 {lat['p50']} ms, "
              f"p99 {lat['p99']} ms; 1-min load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
