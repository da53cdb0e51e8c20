#!/usr/bin/env python3
"""The benchmark suite behind `./dev bench` (tests/bench/run.sh calls it).

    bench.py --build DIR --workdir TMP --out docs/BENCHMARKS.md [--only a,b] [--quick]

Parts, in order (--only picks some): matrix (kvbench put/get on a fresh 3-node cluster),
tls (the same kvbench runs, and kvctl's whole-command time, on a plaintext and a TLS
cluster side by side), failover (20 leader kills under light write load), wal
(walbench), sim (kvsim), memory (node RSS after loading up to 1M keys of 256 B into a
second fresh cluster). Every node
and load process is started in its own session and killed at exit, also on failure or
SIGTERM; their pids are also written to WORKDIR/pids so run.sh's trap can reap them if
this process itself dies. Results go to WORKDIR/results.json and, rendered against the
issue's targets, to --out."""
import argparse
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import report

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
import tls_certs  # noqa: E402  (tests/cluster/tls_certs.py: certificates made by openssl)

ARGS = None
PROCS = []  # every Popen started here, for cleanup


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchFailure(Exception):
    pass


def track(p):
    PROCS.append(p)
    with open(os.path.join(ARGS.workdir, "pids"), "a") as f:
        f.write(f"{p.pid}\n")
    return p


def kill_everything():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tool(name):
    return os.path.join(ARGS.build, name)


def wait_until(what, predicate, timeout_s, interval_s=0.02):
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchFailure(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class Cluster:
    """Three kvnode processes with default timeouts and fsync on, in WORKDIR/NAME."""

    def __init__(self, name, size=3, node_flags=(), client_flags=()):
        self.root = os.path.join(ARGS.workdir, name)
        os.makedirs(self.root)
        self.size = size
        self.node_flags = list(node_flags)
        self.client_flags = list(client_flags)  # kvctl and kvbench (--cacert)
        self.procs = {}
        ports = free_ports(2 * size)
        self.client_ports = {i + 1: ports[i] for i in range(size)}
        self.raft_ports = {i + 1: ports[size + i] for i in range(size)}

    def endpoints(self):
        return ",".join(f"127.0.0.1:{self.client_ports[i]}" for i in sorted(self.client_ports))

    def command(self, i):
        cluster = ",".join(f"{j}=127.0.0.1:{self.raft_ports[j]}" for j in sorted(self.raft_ports))
        return [tool("bin/kvnode"), "--id", str(i), "--data-dir", os.path.join(self.root, f"node{i}"),
                "--client-addr", f"127.0.0.1:{self.client_ports[i]}",
                "--raft-addr", f"127.0.0.1:{self.raft_ports[i]}", "--cluster", cluster] + \
            self.node_flags

    def start_node(self, i):
        out = open(os.path.join(self.root, f"node{i}.log"), "a")
        self.procs[i] = track(subprocess.Popen(self.command(i), stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True))
        out.close()

    def start(self):
        for i in range(1, self.size + 1):
            self.start_node(i)
        time.sleep(0.2)
        dead = [i for i, p in self.procs.items() if p.poll() is not None]
        if dead:
            raise BenchFailure(f"nodes {dead} exited at start; logs in {self.root}")
        self.wait_healthy()

    def kill9(self, i):
        os.killpg(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def kvctl(self, *args, timeout_ms=1000):
        r = subprocess.run([tool("bin/kvctl"), "--endpoints", self.endpoints(), "--timeout",
                            str(timeout_ms)] + self.client_flags + list(args), capture_output=True,
                           timeout=timeout_ms / 1000 + 10)
        return r.returncode, r.stdout.decode(errors="replace")

    def status(self):
        rc, out = self.kvctl("--json", "status")
        try:
            return json.loads(out)
        except ValueError:
            return []

    def leader(self):
        best = None
        for s in self.status():
            if s.get("role") == "leader" and (best is None or s["term"] > best["term"]):
                best = s
        return best["id"] if best else None

    def wait_healthy(self, timeout_s=20):
        wait_until("a healthy cluster", lambda: self.kvctl("health")[0] == 0, timeout_s, 0.05)
        return wait_until("a leader", self.leader, 5)

    def rss_kb(self, i, field="VmRSS"):
        with open(f"/proc/{self.procs[i].pid}/status") as f:
            m = re.search(field + r":\s+(\d+) kB", f.read())
        return int(m.group(1))

    def cpu_seconds(self):
        """User + system CPU time the nodes have used so far, summed (/proc/PID/stat)."""
        total = 0
        for p in self.procs.values():
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / os.sysconf("SC_CLK_TCK")


def kvbench(cluster, mode, clients, conns, total, extra=(), label=None):
    cmd = [tool("bin/kvbench"), "--endpoints", cluster.endpoints(), "--clients", str(clients),
           "--conns", str(conns), "--total", str(total), "--key-size", "8", "--val-size", "256"]
    cmd += list(extra) + [mode, "--json"]
    shown = " ".join(["build/bin/kvbench", "--endpoints", "$ENDPOINTS"] + cmd[3:])
    if cluster.client_flags:
        cmd += cluster.client_flags
        shown += " --cacert CA"
    log(f"{label or mode}: {shown}")
    p = track(subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True))
    out, _ = p.communicate(timeout=600)
    lines = out.decode(errors="replace").strip().splitlines()
    for line in lines[:-1]:
        log("  " + line)
    if not lines or not lines[-1].startswith("{"):
        raise BenchFailure(f"kvbench printed no JSON (exit {p.returncode})")
    result = json.loads(lines[-1])
    result["command"] = shown
    log(f"  -> {result['rps']:.0f} req/s, p50 {result['latency_ms']['p50']:.2f} ms, "
        f"p99 {result['latency_ms']['p99']:.2f} ms, errors {result['errors']}")
    return result


def part_matrix(results):
    q = ARGS.quick
    c = Cluster("matrix")
    c.start()
    log(f"matrix cluster up at {c.endpoints()}")
    m = {}
    for clients, conns, total in [(1, 1, 5000), (16, 4, 30000), (64, 8, 60000), (256, 16, 80000)]:
        # CPU per put, every process together: the nodes' from /proc, kvbench's from the
        # resource usage of reaped children.
        nodes_before = c.cpu_seconds()
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = kvbench(c, "put", clients, conns, total // (10 if q else 1),
                    label=f"put {clients}/{conns}")
        kids_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_s = (kids_after.ru_utime - kids.ru_utime) + (kids_after.ru_stime - kids.ru_stime)
        nodes_s = c.cpu_seconds() - nodes_before
        if r["total"]:
            r["cpu_us_per_request"] = (nodes_s + client_s) / r["total"] * 1e6
            r["node_cpu_us_per_request"] = nodes_s / r["total"] * 1e6
            log(f"  -> CPU {r['cpu_us_per_request']:.0f} us per put "
                f"({r['node_cpu_us_per_request']:.0f} in the nodes)")
        m[f"put_{clients}_{conns}"] = r
    keys = ["--key-space", "10000"]
    m["get_64_8"] = kvbench(c, "get", 64, 8, 60000 // (10 if q else 1), keys, "linearizable get 64/8")
    m["stale_get_64_8"] = kvbench(c, "get", 64, 8, 60000 // (10 if q else 1), keys + ["--stale"],
                                  "stale get 64/8")
    c.stop()
    results["matrix"] = m


def kvctl_seconds(cluster, runs):
    """Median wall time of a whole `kvctl get` process (start, connect, handshake, one
    linearizable read, exit) against the cluster's first node, over `runs` runs."""
    times = []
    for _ in range(runs):
        t = time.monotonic()
        r = subprocess.run([tool("bin/kvctl"), "--endpoints", cluster.endpoints().split(",")[0]] +
                           cluster.client_flags + ["get", "tls-probe"], capture_output=True,
                           timeout=30)
        times.append(time.monotonic() - t)
        if r.returncode not in (0, 1):
            raise BenchFailure(f"kvctl get failed: {r.stderr.decode(errors='replace')}")
    times.sort()
    return times[len(times) // 2]


def part_tls(results):
    """The cost of TLS: the same runs against a plaintext and a TLS cluster (all three
    nodes with --tls-cert/--tls-key/--tls-ca, peers on mutual TLS, kvbench --cacert),
    one cluster at a time, each run twice in alternation so that a change in the
    machine's load hits both sides alike."""
    q = ARGS.quick
    certs = tls_certs.make_certs(os.path.join(ARGS.workdir, "certs"))
    tls_node = ["--tls-cert", certs["node_cert"], "--tls-key", certs["node_key"],
                "--tls-ca", certs["ca"]]
    sides = {"plain": ([], []), "tls": (tls_node, ["--cacert", certs["ca"]])}
    runs = [("put_64_8", "put", 64, 8, 60000, []),
            ("put_1_1", "put", 1, 1, 5000, []),
            ("get_64_8", "get", 64, 8, 60000, ["--key-space", "10000"])]
    t = {"plain": {}, "tls": {}}
    for rep in range(1 if q else 2):
        for side, (node_flags, client_flags) in sides.items():
            c = Cluster(f"tls-{side}-{rep}", node_flags=node_flags, client_flags=client_flags)
            c.start()
            log(f"tls part: {side} cluster up at {c.endpoints()} (round {rep + 1})")
            for key, mode, clients, conns, total, extra in runs:
                r = kvbench(c, mode, clients, conns, total // (10 if q else 2), extra,
                            f"{side} {mode} {clients}/{conns}")
                t[side].setdefault(key, []).append(r)
            t[side].setdefault("kvctl_s", []).append(kvctl_seconds(c, 5 if q else 15))
            c.stop()
    results["tls"] = t


def read_new_acks(path, state):
    """Appends (sent_s, acked_s) of acknowledged writes added to path since the last call."""
    try:
        with open(path) as f:
            f.seek(state["offset"])
            data = f.read()
    except OSError:
        return
    end = data.rfind("\n")
    if end < 0:
        return
    state["offset"] += len(data[:end + 1].encode())
    for line in data[:end].split("\n"):
        parts = line.split(" ", 4)
        if len(parts) >= 4 and parts[0] == "ack":
            state["acks"].append((float(parts[1]) / 1000, float(parts[2]) / 1000))


def part_failover(results):
    rounds = 5 if ARGS.quick else 20
    c = Cluster("failover")
    c.start()
    acks = os.path.join(c.root, "acks.txt")
    stop = os.path.join(c.root, "stop")
    load_cmd = [tool("tests/cluster/loadgen"), "write", "--endpoints", c.endpoints(), "--out", acks,
                "--clients", "4", "--channels", "2", "--stop-file", stop, "--timeout", "15000"]
    load = track(subprocess.Popen(load_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True))
    state = {"offset": 0, "acks": []}
    times = []
    for r in range(rounds):
        leader = c.wait_healthy()
        # The load must be flowing before the kill.
        before = len(state["acks"])
        wait_until("writes before the kill",
                   lambda: read_new_acks(acks, state) or len(state["acks"]) >= before + 50, 20)
        leader = c.leader()
        killed_at = time.time()
        c.kill9(leader)

        def first_ack_after():
            read_new_acks(acks, state)
            later = [a[1] for a in state["acks"] if a[0] >= killed_at]
            return min(later) if later else None
        first = wait_until("a write acknowledged after the kill", first_ack_after, 30, 0.01)
        ms = (first - killed_at) * 1000
        times.append(ms)
        log(f"failover {r + 1}/{rounds}: killed leader node {leader}, first write acked "
            f"after {ms:.0f} ms")
        c.start_node(leader)
        c.wait_healthy()
        time.sleep(0.5)  # let the restarted node catch up before the next kill
    open(stop, "w").close()
    load.wait(30)
    c.stop()
    times.sort()
    results["failover"] = {
        "rounds": rounds, "ms": times,
        "p50": times[len(times) // 2], "p99": times[min(len(times) - 1, int(len(times) * 0.99))],
        "max": times[-1],
        "command": " ".join(["build/tests/cluster/loadgen"] + load_cmd[1:3] + ["$ENDPOINTS"] +
                            load_cmd[4:5] + ["ACKS"] + load_cmd[6:11] + ["STOP"] + load_cmd[12:]),
    }


def part_wal(results):
    seconds = "1" if ARGS.quick else "2"
    d = os.path.join(ARGS.workdir, "wal")
    cmd = [tool("tests/disk/walbench"), d, seconds]
    log("wal: " + " ".join(["build/tests/disk/walbench", "DIR", seconds]))
    out = subprocess.run(cmd, capture_output=True, timeout=300, check=True).stdout.decode()
    w = {"command": f"build/tests/disk/walbench DIR {seconds}", "output": out.strip()}
    for line in out.splitlines():
        log("  " + line)
        m = re.match(r"group commit\s+(\d+) records/flush:\s+(\d+) records/s", line)
        if m:
            w[f"per_flush_{m.group(1)}"] = int(m.group(2))
        m = re.match(r"raw floor: (\d+) fdatasyncs/s", line)
        if m:
            w["raw_fdatasyncs"] = int(m.group(1))
    results["wal"] = w


def part_sim(results):
    seeds = "1..5" if ARGS.quick else "1..20"
    cmd = [tool("bin/kvsim"), "--seeds", seeds, "--nodes", "5", "--clients", "16", "--ops", "2000",
           "--faults", "all", "--json"]
    shown = " ".join(["build/bin/kvsim"] + cmd[1:])
    log("sim: " + shown)
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    last = r.stdout.decode().strip().splitlines()[-1]
    s = json.loads(last)
    s["command"] = shown
    log(f"  -> {s['events_per_second']:.0f} events/s, {s['seeds_per_minute']:.0f} seeds/min, "
        f"{s['failures']} failures")
    results["sim"] = s


KIB_TO_MB = 1024 / 1e6


def part_memory(results):
    target_keys = 100_000 if ARGS.quick else 1_000_000
    budget_s = 20 if ARGS.quick else 170
    chunk = 50_000
    c = Cluster("memory")
    c.start()
    leader = c.leader()
    base = {i: c.rss_kb(i) for i in c.procs}
    log(f"memory: RSS at start {base} kB; loading up to {target_keys} keys of 8+256 B "
        f"(budget {budget_s} s)")
    started = time.monotonic()
    loaded = 0
    commands = []
    chunks = []
    while loaded < target_keys and time.monotonic() - started < budget_s:
        n = min(chunk, target_keys - loaded)
        r = kvbench(c, "put", 64, 8, n, ["--first-key", str(loaded), "--key-space", str(n)],
                    label=f"memory load {loaded}..{loaded + n}")
        commands.append(r["command"])
        chunks.append(r)
        if r["errors"]:
            raise BenchFailure(f"loading keys failed {r['errors']} times")
        loaded += n
    elapsed = time.monotonic() - started
    time.sleep(1)  # followers apply the tail
    leader_now = c.leader()
    rss = {i: c.rss_kb(i) for i in c.procs}
    peak = {i: c.rss_kb(i, "VmHWM") for i in c.procs}
    log(f"memory: {loaded} keys in {elapsed:.0f} s; RSS {rss} kB, peak {peak} kB "
        f"(leader node {leader_now})")
    c.stop()
    raw_mb = loaded * (8 + 256) / 1e6
    # /proc's "kB" are KiB; the raw size and the targets are in MB (10^6 bytes).
    worst = max(rss.values()) * KIB_TO_MB
    base_mb = max(base.values()) * KIB_TO_MB
    scale = target_keys / loaded
    results["memory"] = {
        "loaded": loaded, "target": target_keys, "seconds": elapsed, "rss_kb": rss,
        "base_rss_kb": base, "leader": leader_now or leader, "raw_mb": raw_mb,
        "worst_rss_mb": worst,
        "peak_rss_kb": peak, "worst_peak_rss_mb": max(peak.values()) * KIB_TO_MB,
        # The load itself: keys over the time kvbench ran, the worst chunk's p99, the max.
        "load_rps": loaded / max(sum(x["seconds"] for x in chunks), 1e-9),
        "load_p99_ms": max(x["latency_ms"]["p99"] for x in chunks),
        "load_max_ms": max(x["latency_ms"]["max"] for x in chunks),
        "extrapolated": loaded < target_keys,
        # Extrapolated linearly from the growth over the start-up footprint.
        "rss_mb_at_target": base_mb + (worst - base_mb) * scale,
        "raw_mb_at_target": target_keys * (8 + 256) / 1e6,
        "command": f"64 clients/8 conns, {chunk}-key chunks: " + commands[0].replace("--first-key 0", "--first-key F"),
    }


PARTS = {"matrix": part_matrix, "tls": part_tls, "failover": part_failover, "wal": part_wal,
         "sim": part_sim, "memory": part_memory}


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--only", default=",".join(PARTS))
    p.add_argument("--quick", action="store_true", help="small runs, to try the script")
    ARGS = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(BenchFailure("SIGTERM")))
    signal.signal(signal.SIGINT, lambda *_: (_ for _ in ()).throw(BenchFailure("interrupted")))
    results = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": ARGS.quick}
    results_path = os.path.join(ARGS.workdir, "results.json")
    started = time.monotonic()
    ok = True
    try:
        for name in ARGS.only.split(","):
            t = time.monotonic()
            load_before = open("/proc/loadavg").read().split()[0]
            PARTS[name](results)
            results.setdefault("seconds", {})[name] = round(time.monotonic() - t, 1)
            # Other work on the machine skews every figure: keep the load next to them.
            results.setdefault("loadavg", {})[name] = [
                float(load_before), float(open("/proc/loadavg").read().split()[0])]
            with open(results_path, "w") as f:
                json.dump(results, f, indent=1)
    except (BenchFailure, subprocess.SubprocessError) as e:
        log(f"FAILED: {e}")
        ok = False
    finally:
        kill_everything()
    results["total_seconds"] = round(time.monotonic() - started, 1)
    with open(results_path, "w") as f:
        json.dump(results, f, indent=1)
    if ok:
        with open(ARGS.out, "w") as f:
            f.write(report.render(results))
        log(f"wrote {ARGS.out} ({results['total_seconds']:.0f} s in all)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
